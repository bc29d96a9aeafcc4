"""The built image under QEMU (TCG) with the sim TEE: attest it, run a pod, attack it.

Each test boots its own VM; the one-connection-per-VM rule of a
virtio-serial port is the launcher's (launcher/vm.py). What is asserted is
what a relying party and a platform team depend on: READY only with the
measured policy, evidence that verifies against the build's reference
values, containers only from the layer the policy pins, denials that say
why, and no agent at all when a root byte changed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.rpc import Code, RpcError
from launcher import pod
from launcher.client import Client
from launcher.qemu import Image
from launcher.scenario import Session, denied

ROOT = Path(__file__).resolve().parent.parent


def timed(timings: list, name: str, t0: float) -> float:  # type: ignore[type-arg]
    seconds = time.monotonic() - t0
    timings.append((name, seconds))
    return seconds


def test_pod_lifecycle_attestation_and_agent_isolation(image: Image, tmp_path: Path, timings: list) -> None:  # type: ignore[type-arg]
    s = Session(image, tmp_path, chaos=True)
    facts = s.prepare()
    print(f"kernel boot: {facts['kernel_boot']}")
    assert facts["kernel_boot"].startswith("PVH entry"), facts["kernel_boot"]  # else ~2 s slower, silently
    bad_layer = tmp_path / "layer-flipped.img"
    blob = bytearray(s.layer.path.read_bytes())
    blob[s.layer.hash_offset // 2] ^= 0x01  # one data bit: the policy still names the right root hash
    bad_layer.write_bytes(bytes(blob))
    machine = s.machine("pod")
    machine.layers.append(bad_layer)  # /dev/disk/by-id/virtio-layer1
    from launcher.vm import Vm

    with Vm(machine) as vm:
        t0 = time.monotonic()
        assert vm.call("Check", timeout=300).status == 1
        state, reason, boot = vm.wait_status(60)
        assert state == "ready", reason
        assert f"HOSTDATA {s.digest.hex()}" in reason
        timings.append(("sim boot to READY", boot))
        startup = vm.wait_console(r"cocoon-agent: startup: ([^\r\n]*)", 30).group(1)
        print(f"agent start-up in the guest: {startup}")
        assert startup.endswith("protobuf upb"), startup  # not the pure-Python fallback
        warm = vm.wait_console(r"cocoon-warmup: ([^\r\n]*)", 30).group(1)
        print(f"warm-up in the guest (initrd, before systemd): {warm}")
        assert warm.startswith("ready in "), warm  # else the agent starts cold (~1.5 s later under TCG)

        t0 = time.monotonic()
        result, _ = s.attest(vm)
        timed(timings, "attest (GetEvidence + verify)", t0)
        assert result.ok, result.table()
        assert result.simulated
        names = {c.name for c in result.claims if c.status == "pass"}
        assert {"snp.signature", "snp.chain", "snp.measurement", "snp.host_data", "snp.report_data"} <= names
        # The same evidence against another policy's digest must fail on exactly that claim.
        from verifier.api import verify

        ev = vm.call("GetEvidence", {"nonce": ""})
        other = verify(ev.kind, ev.report, ev.aux, s.references, initdata_digest=b"\x01" * 32, trust_sim=str(s.trust),
                       tee=ev.tee)
        assert [c.name for c in other.failed] == ["snp.host_data"]

        t0 = time.monotonic()
        vm.call("CreateSandbox", {"hostname": "demo-pod", "sandbox_id": "e2e"})
        out, status = s.run_container(vm, "hello", pod.MAIN_COMMAND)
        timed(timings, "container from a verity layer (create..wait)", t0)
        assert status == 0
        assert out.decode().splitlines() == ["hello from a verified layer", f"Linux {image_kernel(image)}"]

        t0 = time.monotonic()
        vm.call("CreateContainer", pod.container_request("svc", pod.SERVICE_COMMAND, s.layer))
        vm.call("StartContainer", {"container_id": "svc"})
        vm.call("ExecProcess", pod.exec_request("svc", "probe", pod.PROBE_COMMAND))
        assert s.read_stream(vm, "ReadStdout", "svc", "probe") == b"probe ok\n"
        assert vm.call("WaitProcess", {"container_id": "svc", "exec_id": "probe"}).status == 0
        err = denied(lambda: vm.call("ExecProcess", pod.exec_request("svc", "shell", ["sh"])))
        timed(timings, "exec allowed + exec denied", t0)
        assert re.fullmatch(r'ExecProcessRequest is blocked by policy: policy\.rego:\d+: exec of \["sh"\] is not in '
                            r"the pod's allow list", err.message), err.message

        # A layer the policy does not pin is denied; the pinned hash over changed bytes fails in dm-verity.
        other_hash = pod.Layer(s.layer.path, "00" * 32, s.layer.hash_offset)
        err = denied(lambda: vm.call("CreateContainer", pod.container_request("x1", pod.MAIN_COMMAND, other_hash)))
        assert "is not this pod's" in err.message
        with pytest.raises(RpcError) as failed:
            vm.call("CreateContainer", pod.container_request(
                "x2", pod.MAIN_COMMAND, s.layer, device="/dev/disk/by-id/virtio-layer1"), timeout=120)
        assert failed.value.code == Code.FAILED_PRECONDITION
        vm.wait_console(r"device-mapper: verity: .*(corrupted|Input/output)", 30)

        # A container the policy admits hunts for the agent to kill it: in a PID namespace of its own it
        # finds nothing, and the same agent (no restart, no second binding) keeps serving and attesting.
        t0 = time.monotonic()
        mark = len(vm.console())
        out, status = s.run_container(vm, "killer", pod.KILL_AGENT_COMMAND)
        assert (out, status) == (pod.KILL_AGENT_OUTPUT, 0)
        assert vm.call("Check", timeout=120).status == 1
        vm.call("ExecProcess", pod.exec_request("svc", "probe2", pod.PROBE_COMMAND))
        assert s.read_stream(vm, "ReadStdout", "svc", "probe2") == b"probe ok\n"
        timed(timings, "killer container runs, agent unharmed", t0)
        result, _ = s.attest(vm)
        assert result.ok, result.table()
        after = vm.console()[mark:]
        assert "cocoon-agent: startup:" not in after and "Traceback" not in vm.console()

        # DestroySandbox ends the agent once answered (as Kata's does); systemd starts a fresh one, which
        # binds the policy again from a new report: the restart path, proved without reaching into the guest.
        t0 = time.monotonic()
        mark = len(vm.console())
        vm.call("DestroySandbox", {}, timeout=120)
        state, reason, _ = vm.wait_status(180, start=mark)
        assert state == "ready", reason
        assert "cocoon-agent: startup:" in vm.console()[mark:]
        assert vm.call("Check", timeout=120).status == 1
        timed(timings, "DestroySandbox -> agent ends -> restarted -> READY", t0)
        result, _ = s.attest(vm)
        assert result.ok, result.table()
        assert "Traceback" not in vm.console()


def image_kernel(image: Image) -> str:
    kernel: str = json.loads((image.out / "manifest.json").read_text())["kernel"]
    return kernel


def test_demo_command_shows_every_step(image: Image, tmp_path: Path, timings: list) -> None:  # type: ignore[type-arg]
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "cocoon", "demo", "--image", str(image.out), "--work", str(tmp_path),
                          "--json"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    timed(timings, "cocoon demo (two boots)", t0)
    assert run.returncode == 0, run.stdout + run.stderr
    steps = {s["step"]: s for s in json.loads(run.stdout)}
    assert list(steps) == ["measure", "boot", "attest", "run", "exec", "deny", "tamper"]
    assert all(s["ok"] for s in steps.values())
    assert "initdata digest mismatch" in steps["tamper"]["data"]["reason"]
    assert "agent is in deny-all mode: initdata digest mismatch" in steps["tamper"]["data"]["message"]
    assert steps["deny"]["data"]["message"].startswith("ExecProcessRequest is blocked by policy")
    timings.append(("demo: boot to READY", steps["boot"]["data"]["boot_to_ready"]))


def test_flipped_root_byte_never_reaches_ready(image: Image, tmp_path: Path, timings: list) -> None:  # type: ignore[type-arg]
    s = Session(image, tmp_path)
    s.prepare()
    with s.boot("flipped", root_image=s.flipped_root()) as vm:
        t0 = time.monotonic()
        vm.wait_console(r"device-mapper: verity: [^\n]*corrupted", 240)
        assert vm.proc is not None
        vm.proc.wait(timeout=120)  # the initrd powers off: there is no root to switch to
        timed(timings, "flipped root byte -> verity error, power off", t0)
        log = vm.console()
        assert "cocoon-agent" not in log and "systemd[1]" not in log
        assert re.search(r"cocoon initrd: .*(root|verity)", log), log[-2000:]


def test_sim_is_never_chosen_by_itself_and_the_port_survives_reconnects(image: Image, tmp_path: Path) -> None:
    """fw_cfg carries a sim PSP document, but the command line asks for auto: the agent must not use
    it. Two successive host connections both get answers (the guest keeps the port open)."""
    s = Session(image, tmp_path)
    s.prepare()
    with s.boot("auto", tee="auto") as vm:
        assert vm.call("Check", timeout=300).status == 1
        state, reason, _ = vm.wait_status(60)
        assert state == "deny-all"
        assert "no SEV-SNP or TDX guest interface" in reason
        vm.client().close()
        vm._client = None
        for _ in range(2):
            with Client(f"unix://{vm.socket}", timeout=10) as c:
                with pytest.raises(RpcError) as err:
                    c.call("GetEvidence", {"nonce": ""}, timeout=60)
                assert err.value.code == Code.PERMISSION_DENIED
                assert "deny-all" in err.value.message
