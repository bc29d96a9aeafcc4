"""The agent as a process: sd_notify READY/STATUS, ttRPC + gRPC, policy, evidence, deny-all."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.rpc import Code, RpcError
from agent.tee import certtable, snp_report
from launcher.client import Client
from launcher.localagent import agent_argv, spawn, write_inputs

POLICY = """package agent_policy
import future.keywords.if
default CreateContainerRequest := false
CreateContainerRequest if { input.container_id == "allowed" }
default ExecProcessRequest := false
ExecProcessRequest if {
    print("exec of", input.process.Args, "is not in the allow list")
    false
}
"""
DOC = ('algorithm = "sha256"\nversion = "0.1.0"\n\n[data]\n"policy.rego" = """\n' + POLICY + '"""\n').encode()


class Agent:
    def __init__(self, proc: subprocess.Popen, ttrpc: str, grpc: str, notes: list[str]):  # type: ignore[type-arg]
        self.proc, self.ttrpc, self.grpc, self.notes = proc, ttrpc, grpc, notes


@pytest.fixture
def start_agent(tmp_path, sim_chain):  # type: ignore[no-untyped-def]
    started: list[subprocess.Popen] = []  # type: ignore[type-arg]

    def start(doc: bytes, bound_doc: bytes | None = None) -> Agent:
        dev, sim = write_inputs(tmp_path, sim_chain, doc, bound=bound_doc)
        gsock = tmp_path / "agent-grpc.sock"
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        env.pop("INVOCATION_ID", None)
        agent = spawn(agent_argv(tmp_path, dev, sim, extra=["--grpc-listen", f"unix://{gsock}"]), tmp_path, dev,
                      env=env)
        started.append(agent.proc)
        return Agent(agent.proc, agent.address, f"unix://{gsock}", agent.notes)

    yield start
    for proc in started:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        assert "Traceback" not in err, err
        assert proc.returncode == 0, err


def test_ready_agent_enforces_policy_over_ttrpc_and_grpc(start_agent) -> None:  # type: ignore[no-untyped-def]
    agent = start_agent(DOC)
    note = agent.notes[-1]
    assert "COCOON_STATE=ready" in note and "STATUS=ready: policy bound to sim HOSTDATA" in note
    assert hashlib.sha256(DOC).hexdigest() in note
    for use_grpc, address in ((False, agent.ttrpc), (True, agent.grpc)):
        with Client(address, use_grpc=use_grpc) as c:
            assert c.call("Check").status == 1
            with pytest.raises(RpcError) as err:  # allowed by policy, then refused by the backend: no rootfs
                c.call("CreateContainer", {"container_id": "allowed"})
            assert err.value.code == Code.FAILED_PRECONDITION and "has no pinned verity layer" in err.value.message
            with pytest.raises(RpcError) as err:
                c.call("CreateContainer", {"container_id": "evil"})
            assert err.value.code == Code.PERMISSION_DENIED
            assert err.value.message.startswith("CreateContainerRequest is blocked by policy")
            with pytest.raises(RpcError) as err:
                c.call("ExecProcess", {"container_id": "allowed", "process": {"Args": ["sh"]}})
            assert err.value.code == Code.PERMISSION_DENIED and "exec of" in err.value.message
            with pytest.raises(RpcError) as err:
                c.call("SetPolicy", {"policy": "package agent_policy\ndefault ExecProcessRequest := true\n"})
            # SetPolicyRequest is undefined in this policy: Kata treats the empty result as an engine error
            assert err.value.code == Code.INTERNAL and "0 results for SetPolicyRequest" in err.value.message


def test_evidence_is_bound_to_nonce_and_key(start_agent) -> None:  # type: ignore[no-untyped-def]
    agent = start_agent(DOC)
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    nonce = os.urandom(32)
    with Client(agent.ttrpc) as c:
        ev = c.call("GetEvidence", {"nonce": base64.b64encode(nonce).decode(),
                                    "public_key": base64.b64encode(spki).decode()})
        plain = c.call("GetEvidence", {"nonce": base64.b64encode(nonce).decode()})
        with pytest.raises(RpcError) as err:
            c.call("GetEvidence", {"nonce": base64.b64encode(bytes(65)).decode()})
        assert err.value.code == Code.INVALID_ARGUMENT
        with pytest.raises(RpcError) as err:
            c.call("GetEvidence", {"nonce": "", "public_key": base64.b64encode(b"junk").decode()})
        assert err.value.code == Code.INVALID_ARGUMENT
    assert ev.kind == "snp" and ev.tee == "sim"
    rep = snp_report.parse(ev.report)
    assert rep.report_data == hashlib.sha512(spki + nonce).digest() == ev.report_data
    assert rep.host_data == hashlib.sha256(DOC).digest()
    vcek = x509.load_der_x509_certificate(certtable.parse(ev.aux)["vcek"])
    snp_report.verify_signature(rep, vcek.public_key())
    assert snp_report.parse(plain.report).report_data == nonce + bytes(32)


def test_changed_initdata_byte_means_deny_all_everywhere(start_agent) -> None:  # type: ignore[no-untyped-def]
    tampered = DOC.replace(b'"allowed"', b'"allowee"')
    agent = start_agent(tampered, bound_doc=DOC)
    note = agent.notes[-1]
    assert "COCOON_STATE=deny-all" in note and "initdata digest mismatch" in note
    assert hashlib.sha256(DOC).hexdigest() in note and hashlib.sha256(tampered).hexdigest() in note
    with Client(agent.ttrpc) as c:
        assert c.call("Check").status == 1  # still answering
        for rpc, body in (("CreateContainer", {"container_id": "allowee"}), ("GetEvidence", {}),
                          ("ListInterfaces", {}), ("SetPolicy", {"policy": "package agent_policy"})):
            with pytest.raises(RpcError) as err:
                c.call(rpc, body)
            assert err.value.code == Code.PERMISSION_DENIED, rpc
            assert "deny-all" in err.value.message and "initdata digest mismatch" in err.value.message


def test_exit_after_ready_reports_startup_time(tmp_path, sim_tee) -> None:  # type: ignore[no-untyped-def]
    dev = tmp_path / "initdata.toml"
    dev.write_bytes(DOC)
    cfg = sim_tee(hashlib.sha256(DOC).digest())
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "agent", "--tee", "sim", "--sim-config", cfg, "--initdata", str(dev),
         "--listen", f"unix://{tmp_path}/a.sock", "--kernel-cmdline", "/dev/null", "--exit-after-ready",
         "--state-dir", str(tmp_path / "state"), "--shared-dir", str(tmp_path / "shared")],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "cocoon-agent: ready: policy bound to sim HOSTDATA" in out.stderr
    assert time.perf_counter() - t0 < 60
    # Where the time went, phase by phase, ending with the protobuf backend (pure Python would show here).
    assert re.search(r"cocoon-agent: startup: serving \d+ ms after exec, interpreter \d+ ms, imports -?\d+ ms, "
                     r"main\(\) \d+ ms, initdata \+\d+, .*, protobuf upb\n", out.stderr), out.stderr


def test_bad_listen_address_is_a_usage_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run([sys.executable, "-m", "agent", "--listen", "http://x", "--kernel-cmdline", "/dev/null"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "unknown scheme 'http'" in out.stderr and "Traceback" not in out.stderr


def test_the_image_invocation_runs_the_daemon(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """image/cocoon-agent.service runs the script with -P (no script directory on sys.path, where
    agent/systemd.py would shadow the systemd package) from any working directory."""
    root = Path(__file__).resolve().parent.parent
    unit = (root / "image" / "cocoon-agent.service").read_text()
    assert "ExecStart=/usr/bin/python3 -S -P /usr/lib/cocoon/agent/__main__.py" in unit
    out = subprocess.run([sys.executable, "-P", str(root / "agent" / "__main__.py"), "--listen", "http://x",
                          "--kernel-cmdline", "/dev/null"], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 2 and "unknown scheme 'http'" in out.stderr and "Traceback" not in out.stderr


def test_watchdog_pings_at_half_the_interval(tmp_path, sim_tee) -> None:  # type: ignore[no-untyped-def]
    dev = tmp_path / "initdata.toml"
    dev.write_bytes(DOC)
    cfg = sim_tee(hashlib.sha256(DOC).digest())
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"}
    proc = subprocess.Popen([sys.executable, "-m", "agent", "--tee", "sim", "--sim-config", cfg, "--initdata",
                             str(dev), "--listen", f"unix://{tmp_path}/a.sock", "--kernel-cmdline", "/dev/null",
                             "--state-dir", str(tmp_path / "state"), "--shared-dir", str(tmp_path / "shared")],
                            env=env, stderr=subprocess.DEVNULL)
    try:
        seen: list[tuple[float, str]] = []
        while sum("WATCHDOG=1" in s for _, s in seen) < 3:
            seen.append((time.monotonic(), notify.recv(65536).decode()))
        pings = [t for t, s in seen if "WATCHDOG=1" in s]
        assert any("READY=1" in s for _, s in seen)
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert all(0.1 < g < 0.4 for g in gaps), gaps  # 0.2 s nominal: within WatchdogSec, not flooding
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        notify.close()


def test_requests_are_logged_with_journal_fields(caplog) -> None:  # type: ignore[no-untyped-def]
    from agent.binding import Binding
    from agent.service import Agent as Service

    svc = Service(Binding("deny-all", "no TEE"))
    with caplog.at_level("INFO", logger="cocoon.agent"), pytest.raises(RpcError):
        svc.authorize("CreateContainerRequest", "{}", "c-42")
    record = next(r for r in caplog.records if getattr(r, "REQUEST", None) == "CreateContainerRequest")
    assert record.VERDICT == "deny" and record.CONTAINER_ID == "c-42"


def test_journald_handler_under_systemd(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import logging

    from agent.systemd import JournalHandler, setup_logging

    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    try:
        monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
        monkeypatch.setattr("os.path.exists", lambda p: p == "/run/systemd/journal/socket")
        setup_logging("info")
        assert any(isinstance(h, JournalHandler) for h in root.handlers)
        # No journal socket (the cocoon image runs no journald): plain lines on stderr.
        monkeypatch.setattr("os.path.exists", lambda p: False)
        setup_logging("info")
        assert not any(isinstance(h, JournalHandler) for h in root.handlers)
        monkeypatch.delenv("JOURNAL_STREAM")
        monkeypatch.delenv("INVOCATION_ID", raising=False)
        setup_logging("info")
        assert not any(isinstance(h, JournalHandler) for h in root.handlers)
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


def parse_journal_entry(data: bytes) -> dict[str, str]:
    """systemd's native journal protocol, read independently of agent/systemd.py."""
    fields: dict[str, str] = {}
    at = 0
    while at < len(data):
        nl = data.index(b"\n", at)
        line = data[at:nl]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            at = nl + 1
        else:
            key = line
            size = int.from_bytes(data[nl + 1:nl + 9], "little")
            value = data[nl + 9:nl + 9 + size]
            assert data[nl + 9 + size:nl + 10 + size] == b"\n"
            at = nl + 10 + size
        fields[key.decode()] = value.decode()
    return fields


def test_journal_entries_follow_the_native_protocol(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import array
    import logging

    from agent.systemd import JournalHandler

    path = str(tmp_path / "journal")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(path)
    sink.settimeout(10)
    handler = JournalHandler("cocoon-agent", path)
    log = logging.getLogger("cocoon.test-journal")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(handler)
    try:
        log.warning("two\nlines %s", "here", extra={"REQUEST": "ExecProcessRequest", "VERDICT": "deny",
                                                       "lower": "not a field", "_TRUSTED": "refused"})
        fields = parse_journal_entry(sink.recv(1 << 16))
        assert fields["MESSAGE"] == "two\nlines here"
        assert fields["PRIORITY"] == "4" and fields["SYSLOG_IDENTIFIER"] == "cocoon-agent"
        assert fields["REQUEST"] == "ExecProcessRequest" and fields["VERDICT"] == "deny"
        assert fields["LOGGER"] == "cocoon.test-journal" and fields["CODE_FUNC"].startswith("test_journal")
        assert "lower" not in fields and "_TRUSTED" not in fields
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
        fields = parse_journal_entry(sink.recv(1 << 16))
        assert fields["PRIORITY"] == "3" and fields["MESSAGE"].startswith("failed\nTraceback")
        assert "ValueError: boom" in fields["MESSAGE"]
        # Larger than any datagram: a sealed memfd passed with SCM_RIGHTS.
        log.info("x" * (4 << 20))
        msg, anc, _, _ = sink.recvmsg(1 << 16, socket.CMSG_SPACE(4))
        assert msg == b"" and anc and anc[0][:2] == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
        fd = array.array("i", anc[0][2][:4])[0]
        with os.fdopen(fd, "rb") as f:
            fields = parse_journal_entry(f.read())
        assert fields["MESSAGE"] == "x" * (4 << 20) and fields["PRIORITY"] == "6"
    finally:
        log.removeHandler(handler)
        handler.close()
        sink.close()


def test_journal_unreachable_falls_back_to_stderr(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import logging

    from agent.systemd import JournalHandler, _Plain

    handler = JournalHandler("cocoon-agent", str(tmp_path / "no-journal"))
    handler.setFormatter(_Plain())
    log = logging.getLogger("cocoon.test-nojournal")
    log.propagate = False
    log.addHandler(handler)
    try:
        log.error("still %s", "seen")
    finally:
        log.removeHandler(handler)
        handler.close()
    assert capsys.readouterr().err == "cocoon-agent: error: still seen\n"
