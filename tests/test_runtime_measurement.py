"""ExtendRuntimeMeasurement end to end: the attestation agent's handler (agent/guest_components.py) over
the TDX provider against a model of Linux 6.16's RTMR sysfs files, and over the az-snp-vtpm provider
against swtpm. Register values are computed here with hashlib from upstream's record layout and read back
by the test's own TPM client, never taken from the code under test."""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import eventlog
from agent.errors import AgentError
from agent.guest_components import GuestComponents
from agent.initdata import render_document
from agent.kbs_client import KbsClient
from agent.protocols import attestation_agent_pb2 as aa
from agent.rpc import Code, RpcError
from agent.tee.tdx import MEASUREMENTS_ROOT, TdxProvider

ENABLED = "[eventlog_config]\nenable_eventlog = true\n"


def initdata(aa_toml: str | None = ENABLED) -> bytes:
    return render_document({"policy.rego": "package agent_policy\n", **({"aa.toml": aa_toml} if aa_toml else {})})


def aael_digest(algorithm: str, text: bytes) -> bytes:
    return hashlib.new(algorithm, b"LEAA" + len(text).to_bytes(4, "little") + text).digest()


def request(domain: str = "github.com/confidential-containers", operation: str = "PullImage",
            content: str = '{"image":"alpine"}', index: int | None = None) -> Any:
    req = aa.ExtendRuntimeMeasurementRequest(Domain=domain, Operation=operation, Content=content)
    if index is not None:
        req.RegisterIndex = index
    return req


class TdxSysfs:
    """/sys/devices/virtual/misc/tdx_guest/measurements as the tdx-guest driver behaves
    (sysfs-devices-virtual-misc-tdx_guest): rtmr[0-3]:sha384 read their value and take a write of exactly
    48 bytes as an extend, any other size is EINVAL; mrconfigid and friends are read-only."""

    def __init__(self, root: str = MEASUREMENTS_ROOT) -> None:
        self.root = root
        self.rtmrs = [bytes(48)] * 4
        self.writes: list[tuple[str, bytes]] = []

    def _name(self, path: str) -> str:
        if os.path.dirname(path) != self.root:
            raise FileNotFoundError(errno.ENOENT, path)
        return os.path.basename(path)

    def isdir(self, path: str) -> bool:
        return path == self.root

    def read(self, path: str) -> bytes:
        name = self._name(path)
        if name in (f"rtmr{i}:sha384" for i in range(4)):
            return self.rtmrs[int(name[4])]
        if name in ("mrconfigid", "mrowner", "mrownerconfig", "mrtd:sha384"):
            return bytes(48)
        raise FileNotFoundError(errno.ENOENT, path)

    def write(self, path: str, data: bytes) -> None:
        name = self._name(path)
        self.writes.append((name, data))
        if name not in (f"rtmr{i}:sha384" for i in range(4)):
            raise PermissionError(errno.EACCES, path)
        if len(data) != 48:
            raise OSError(errno.EINVAL, "partial write")
        i = int(name[4])
        self.rtmrs[i] = hashlib.sha384(self.rtmrs[i] + data).digest()

    def mkdir(self, path: str) -> None:
        raise PermissionError(errno.EPERM, path)

    def rmdir(self, path: str) -> None:
        raise PermissionError(errno.EPERM, path)


def tdx(tmp_path: Path, sysfs: TdxSysfs | None) -> TdxProvider:
    return TdxProvider(str(tmp_path / "no-configfs"), str(tmp_path / "no-tdx_guest"),
                       measurements_fs=sysfs or TdxSysfs("/nonexistent"))


def components(tee: Any, tmp_path: Path, aa_toml: str | None = ENABLED) -> GuestComponents:
    return GuestComponents(KbsClient(None, tee, initdata=initdata(aa_toml)), None,
                           eventlog_path=str(tmp_path / "run" / "eventlog"))


def extend(gc: GuestComponents, req: Any) -> int:
    return int(gc.extend_runtime_measurement(req, None).Result)


# --- TDX -------------------------------------------------------------------------------------------------
def test_tdx_extends_rtmr3_and_logs_the_record(tmp_path: Path) -> None:
    sysfs = TdxSysfs()
    gc = components(tdx(tmp_path, sysfs), tmp_path)
    assert extend(gc, request(content="one")) == aa.OK  # no RegisterIndex: upstream's default PCR 17
    assert extend(gc, request(content="two", index=23)) == aa.OK
    d1 = aael_digest("sha384", b"github.com/confidential-containers PullImage one")
    d2 = aael_digest("sha384", b"github.com/confidential-containers PullImage two")
    assert sysfs.writes == [("rtmr3:sha384", d1), ("rtmr3:sha384", d2)]
    assert sysfs.rtmrs[3] == hashlib.sha384(hashlib.sha384(bytes(48) + d1).digest() + d2).digest()
    assert sysfs.rtmrs[:3] == [bytes(48)] * 3
    log = (tmp_path / "run" / "eventlog").read_bytes()
    first = (4).to_bytes(4, "little") + (6).to_bytes(4, "little") + (1).to_bytes(4, "little") + b"\x0c\x00" + d1
    assert log.startswith(first)  # CC MR 4 (RTMR3), EV_EVENT_TAG, one SHA-384 digest, upstream's layout
    assert eventlog.replay(eventlog.parse(log), 4, "sha384") == sysfs.rtmrs[3]


@pytest.mark.parametrize("index", [0, 1, 2, 7, 8, 15, 24, 2**63])
def test_tdx_refuses_registers_of_the_boot_chain_and_beyond(tmp_path: Path, index: int) -> None:
    sysfs = TdxSysfs()
    gc = components(tdx(tmp_path, sysfs), tmp_path)
    with pytest.raises(RpcError) as refused:
        extend(gc, request(index=index))
    assert refused.value.code == Code.INVALID_ARGUMENT and f"register index {index}" in refused.value.message
    assert sysfs.writes == [] and not (tmp_path / "run" / "eventlog").exists()


def test_tdx_provider_itself_extends_nothing_but_rtmr3(tmp_path: Path) -> None:
    sysfs = TdxSysfs()
    provider = tdx(tmp_path, sysfs)
    for register in (0, 1, 2, 3, 5):
        with pytest.raises(AgentError, match="RTMR3"):
            provider.extend_runtime(register, bytes(48))
    with pytest.raises(AgentError, match="48 bytes"):
        provider.extend_runtime(4, bytes(32))
    assert sysfs.writes == []


def test_tdx_kernel_refusal_is_a_clear_error_and_changes_nothing(tmp_path: Path) -> None:
    sysfs = TdxSysfs()

    def refuse(path: str, data: bytes) -> None:
        raise OSError(errno.EIO, "TDCALL failed")

    sysfs.write = refuse  # type: ignore[method-assign]
    gc = components(tdx(tmp_path, sysfs), tmp_path)
    with pytest.raises(RpcError) as failed:
        extend(gc, request())
    assert failed.value.code == Code.UNAVAILABLE and "RTMR3" in failed.value.message
    assert sysfs.rtmrs[3] == bytes(48)
    assert not (tmp_path / "run" / "eventlog").exists()


def test_tdx_without_the_kernel_interface_is_not_supported(tmp_path: Path) -> None:
    # Debian's 6.12 guest kernel: no measurements directory, no extend ioctl
    assert extend(components(tdx(tmp_path, None), tmp_path), request()) == aa.NOT_SUPPORTED


@pytest.mark.parametrize("req", [
    request(domain=""), request(domain="two words"), request(operation=""), request(content="a\nb"),
    request(content="x" * 5000),
])
def test_malformed_requests_are_invalid_arguments(tmp_path: Path, req: Any) -> None:
    sysfs = TdxSysfs()
    with pytest.raises(RpcError) as refused:
        extend(components(tdx(tmp_path, sysfs), tmp_path), req)
    assert refused.value.code == Code.INVALID_ARGUMENT
    assert sysfs.writes == []


def test_not_enabled_unless_the_measured_initdata_says_so(tmp_path: Path) -> None:
    sysfs = TdxSysfs()
    for aa_toml in (None, "[eventlog_config]\nenable_eventlog = false\n"):
        assert extend(components(tdx(tmp_path, sysfs), tmp_path, aa_toml), request()) == aa.NOT_ENABLED
    with pytest.raises(RpcError) as bad:
        extend(components(tdx(tmp_path, sysfs), tmp_path, "[eventlog_config]\nenable = true\n"), request())
    assert bad.value.code == Code.FAILED_PRECONDITION and "eventlog_config" in bad.value.message
    assert sysfs.writes == []


def test_init_pcr_is_the_default_and_is_held_to_the_same_rules(tmp_path: Path) -> None:
    sysfs = TdxSysfs()
    gc = components(tdx(tmp_path, sysfs), tmp_path, ENABLED + "init_pcr = 8\n")
    with pytest.raises(RpcError) as refused:
        extend(gc, request())
    assert refused.value.code == Code.INVALID_ARGUMENT and "register index 8" in refused.value.message
    assert extend(gc, request(index=16)) == aa.OK


def test_sim_and_snp_have_no_runtime_registers(tmp_path: Path, sim_tee: Any) -> None:
    from agent.tee.sim import SimProvider
    from agent.tee.snp import SnpProvider

    for tee in (SimProvider(sim_tee(bytes(32))), SnpProvider(str(tmp_path / "none"), str(tmp_path / "none"))):
        for req in (request(), request(index=8), request(domain="")):
            assert extend(components(tee, tmp_path), req) == aa.NOT_SUPPORTED
        assert not (tmp_path / "run").exists()


def test_over_ttrpc(tmp_path: Path) -> None:
    from agent import guest_components
    from agent.ttrpc import TtrpcClient

    sysfs = TdxSysfs()
    client = KbsClient(None, tdx(tmp_path, sysfs), initdata=initdata())
    servers = guest_components.serve(client, None, str(tmp_path / "aa" / "aa.sock"), None,
                                     eventlog_path=str(tmp_path / "run" / "eventlog"))
    try:
        svc = "attestation_agent.AttestationAgentService"
        with TtrpcClient(f"unix://{tmp_path / 'aa' / 'aa.sock'}", timeout=60) as c:
            got = c.call(svc, "ExtendRuntimeMeasurement", request(content="x", index=17),
                         aa.ExtendRuntimeMeasurementResponse)
            assert got.Result == aa.OK
            with pytest.raises(RpcError) as refused:
                c.call(svc, "ExtendRuntimeMeasurement", request(index=2), aa.ExtendRuntimeMeasurementResponse)
            assert refused.value.code == Code.INVALID_ARGUMENT
    finally:
        for server in servers:
            server.stop()
    digest = aael_digest("sha384", b"github.com/confidential-containers PullImage x")
    assert sysfs.rtmrs[3] == hashlib.sha384(bytes(48) + digest).digest()


# --- az-snp-vtpm against swtpm ----------------------------------------------------------------------------
@pytest.fixture
def paravisor(tmp_path: Path, sim_chain: Any) -> Iterator[Any]:
    import shutil

    if shutil.which("swtpm") is None:
        pytest.skip("needs swtpm (make setup)")
    from support import vtpm

    with vtpm.swtpm(tmp_path / "tpm") as socket_path:
        p = vtpm.SimParavisor(socket_path, vtpm.sim_tee(sim_chain))
        p.provision()
        yield p


def vtpm_provider(paravisor: Any) -> Any:
    from agent.tee import az_vtpm

    return az_vtpm.AzVtpmProvider(paravisor.connect, vcek=lambda: b"vcek", poll_s=0.001)


def pcrs(paravisor: Any) -> list[bytes]:
    with contextlib.closing(paravisor.raw()) as device:
        return list(device.pcr_read()[1])


def test_vtpm_extends_pcr23_and_logs_the_record(tmp_path: Path, paravisor: Any) -> None:
    gc = components(vtpm_provider(paravisor), tmp_path)
    before = pcrs(paravisor)
    assert extend(gc, request(content="one")) == aa.OK  # default: PCR 23
    assert extend(gc, request(content="two", index=23)) == aa.OK
    assert extend(gc, request(content="three", index=16)) == aa.OK
    d = [aael_digest("sha256", f"github.com/confidential-containers PullImage {c}".encode())
         for c in ("one", "two", "three")]
    after = pcrs(paravisor)
    assert after[23] == hashlib.sha256(hashlib.sha256(bytes(32) + d[0]).digest() + d[1]).digest()
    assert after[16] == hashlib.sha256(bytes(32) + d[2]).digest()
    assert [i for i in range(24) if after[i] != before[i]] == [16, 23]
    entries = eventlog.parse((tmp_path / "run" / "eventlog").read_bytes())
    assert [(e.register, e.algorithm) for e in entries] == [(23, "sha256"), (23, "sha256"), (16, "sha256")]
    assert eventlog.replay(entries, 23, "sha256") == after[23]


@pytest.mark.parametrize("index", [0, 7, 8, 9, 15, 17, 22, 24])
def test_vtpm_refuses_the_initdata_pcr_the_boot_chains_and_the_drtms(tmp_path: Path, paravisor: Any,
                                                                     index: int) -> None:
    gc = components(vtpm_provider(paravisor), tmp_path)
    before = pcrs(paravisor)
    with pytest.raises(RpcError) as refused:
        extend(gc, request(index=index))
    assert refused.value.code == Code.INVALID_ARGUMENT and f"register index {index}" in refused.value.message
    assert pcrs(paravisor) == before


def test_vtpm_provider_itself_never_extends_pcr8(paravisor: Any) -> None:
    provider = vtpm_provider(paravisor)
    with pytest.raises(AgentError, match="PCR 8"):
        provider.extend_runtime(8, bytes(32))
    with pytest.raises(AgentError, match="SHA-256"):
        provider.extend_runtime(23, bytes(48))
    assert pcrs(paravisor)[8] == bytes(32)


def test_vtpm_extends_and_reports_at_once(tmp_path: Path, paravisor: Any) -> None:
    """Extends and reports from many threads: every extend is logged once, the log replays to the PCR the
    test's own client reads, and each report's quoted PCR 23 is the replay of some prefix of the log (a
    report never sees a half-done extend, nor a PCR the log cannot explain)."""
    from agent.kbs_client import evidence_json

    provider = vtpm_provider(paravisor)
    gc = components(provider, tmp_path)

    def work(i: int) -> Any:
        if i % 3 == 0:
            doc = evidence_json(provider.report(hashlib.sha384(f"nonce {i}".encode()).digest() + bytes(16)))
            return bytes.fromhex(doc["tpm_quote"]["pcrs"][23])
        return extend(gc, request(content=f"event-{i}"))

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(work, range(18)))
    assert [r for i, r in enumerate(results) if i % 3] == [aa.OK] * 12
    entries = eventlog.parse((tmp_path / "run" / "eventlog").read_bytes())
    assert sorted(e.fields()[2] for e in entries) == sorted(f"event-{i}" for i in range(18) if i % 3)
    prefixes = [eventlog.replay(entries[:n], 23, "sha256") for n in range(len(entries) + 1)]
    assert prefixes[-1] == pcrs(paravisor)[23]
    quoted = [r for i, r in enumerate(results) if i % 3 == 0]
    assert all(q in prefixes for q in quoted)
