"""An Azure-like vTPM for tests: a real swtpm, provisioned as Azure's paravisor (HCL) provisions the guest's.

What the paravisor does, as far as the guest can tell (kinvolk/azure-cvm-tooling az-cvm-vtpm, trustee's
genuine evidence in tests/data/az-snp-vtpm):

- an RSA-2048 restricted signing key, RSASSA/SHA-256, persistent at 0x81000003: the attestation key (AK);
- NV index 0x01400001 holding the HCL report ("HCLA" header, the SNP report, the IGVM request data, the
  runtime data JSON naming the AK as the JWK ``HCLAkPub`` and the guest's ``user-data`` as upper-case hex,
  zero padding to the index size), defined by the platform hierarchy so the guest may read it (owner read)
  but not write it;
- when the guest writes NV index 0x01400002, a fresh report whose user-data is what it wrote. Azure does
  that asynchronously (guest-components waits 3 s); ``SimParavisor`` does it after a number of further
  TPM commands, so a test can make the guest see the old report first, or see the new one arrive between
  the chunks of one NV read, without any timing.

The SNP report inside is the sim TEE's (agent/tee/sim.py: signed with the launcher's sim VCEK), REPORT_DATA
= SHA-256(runtime data) then 32 zero bytes, as the paravisor asks the PSP for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import agent.tee.az_vtpm as az_vtpm
import agent.tee.tpm as tpm
from agent.tee.sim import SimProvider

SWTPM_START_S = 10.0
TPM_RH_ENDORSEMENT = 0x4000_000B
CC_EVICT_CONTROL = 0x0000_0120
CC_CREATE_PRIMARY = 0x0000_0131
CC_FLUSH_CONTEXT = 0x0000_0165
TPM_ALG_RSA = 0x0001
# fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | restricted | sign (Part 2 §8.3)
AK_ATTRIBUTES = (1 << 1) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 16) | (1 << 18)
HCL_INDEX_SIZE = 2048  # swtpm's MAX_NV_INDEX_SIZE; Azure's index is larger (2600 bytes in trustee's data)
HCL_INDEX_ATTRIBUTES = (tpm.NV_PPWRITE | tpm.NV_PPREAD | tpm.NV_OWNERREAD | tpm.NV_AUTHREAD | tpm.NV_NO_DA
                        | tpm.NV_PLATFORMCREATE)


@contextlib.contextmanager
def swtpm(state: Path) -> Iterator[str]:
    """A TPM 2.0 swtpm on a unix socket in ``state`` (started, not needing init); its data socket's path.
    The wait for the socket is bounded, and the process is ended by its pid whatever happens."""
    if shutil.which("swtpm") is None:
        raise RuntimeError("swtpm is not installed (make setup)")
    state.mkdir(parents=True, exist_ok=True)
    data, ctrl = state / "data.sock", state / "ctrl.sock"
    proc = subprocess.Popen(["swtpm", "socket", "--tpm2", "--server", f"type=unixio,path={data}",
                             "--ctrl", f"type=unixio,path={ctrl}", "--flags", "not-need-init,startup-clear",
                             "--tpmstate", f"dir={state}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + SWTPM_START_S
        while not data.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"swtpm did not open {data}: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.02)
        yield str(data)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()


def _rsa_public(out_public: bytes) -> tuple[int, int]:
    """(n, e) of a TPMT_PUBLIC of an RSA key whose symmetric algorithm is NULL (a signing key)."""
    r = tpm.Reader(out_public, "TPMT_PUBLIC")
    if r.u16("type") != TPM_ALG_RSA:
        raise tpm.TpmError("not an RSA key")
    r.u16("nameAlg")
    r.u32("objectAttributes")
    r.tpm2b("authPolicy")
    if r.u16("symmetric") != tpm.TPM_ALG_NULL:
        raise tpm.TpmError("a key with a symmetric algorithm is not a signing key")
    if r.u16("scheme") != tpm.TPM_ALG_NULL:
        r.u16("scheme hash")
    r.u16("keyBits")
    exponent = r.u32("exponent") or 65537
    n = int.from_bytes(r.tpm2b("unique"), "big")
    r.done()
    return n, exponent


def create_ak(device: tpm.Tpm, handle: int = az_vtpm.AK_HANDLE) -> tuple[int, int]:
    """An Azure-like AK made persistent at ``handle``; its (n, e)."""
    template = (struct.pack(">HHI", TPM_ALG_RSA, tpm.TPM_ALG_SHA256, AK_ATTRIBUTES) + tpm.tpm2b(b"")
                + struct.pack(">HHHHI", tpm.TPM_ALG_NULL, tpm.TPM_ALG_RSASSA, tpm.TPM_ALG_SHA256, 2048, 0)
                + tpm.tpm2b(b""))
    params = tpm.tpm2b(tpm.tpm2b(b"") + tpm.tpm2b(b"")) + tpm.tpm2b(template) + tpm.tpm2b(b"") + \
        struct.pack(">I", 0)
    (transient,), out = device.call("CreatePrimary", CC_CREATE_PRIMARY, [TPM_RH_ENDORSEMENT], params, sessions=1,
                                    out_handles=1)
    key = _rsa_public(tpm.Reader(out, "CreatePrimary").tpm2b("outPublic"))
    device.call("EvictControl", CC_EVICT_CONTROL, [tpm.TPM_RH_OWNER, transient], struct.pack(">I", handle),
                sessions=1)
    device.call("FlushContext", CC_FLUSH_CONTEXT, params=struct.pack(">I", transient))
    return key


def _b64url_int(value: int) -> str:
    import base64

    return base64.urlsafe_b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


def runtime_data(ak: tuple[int, int], user_data: bytes) -> bytes:
    """The runtime data JSON as Azure's paravisor writes it (compact, user-data as upper-case hex)."""
    n, e = ak
    doc = {"keys": [{"kid": "HCLAkPub", "key_ops": ["sign"], "kty": "RSA", "e": _b64url_int(e), "n": _b64url_int(n)}],
           "vm-configuration": {"console-enabled": False, "secure-boot": True, "tpm-enabled": True,
                                "vmUniqueId": "C0C00000-0000-4000-8000-000000000001"},
           "user-data": user_data.hex().upper()}
    return json.dumps(doc, separators=(",", ":")).encode()


def hcl_report(snp_report: bytes, var_data: bytes, size: int = HCL_INDEX_SIZE) -> bytes:
    """HCLA header (version 2, report_size, request type 2, status 0), the report, the IGVM request data
    (data_size, version 1, report type 2 = SNP, hash type 1 = SHA-256, runtime data size), the runtime data."""
    header = struct.pack("<4sIIII12x", b"HCLA", 2, 0x4D4 + len(var_data), 2, 0)
    request = struct.pack("<5I", 20 + len(var_data), 1, 2, 1, len(var_data))
    blob = header + snp_report + request + var_data
    assert len(snp_report) == 1184 and len(blob) <= size
    return blob.ljust(size, b"\0")


class SimParavisor:
    """Provisions the swtpm at ``socket_path`` and, through the connections it hands out, answers the guest's
    user-data writes with fresh HCL reports ``delay`` TPM commands later (never, with ``regenerate`` False).
    ``named_ak`` puts another key than the AK into the runtime data (a paravisor naming a key it does not
    hold, or a report spliced from another VM)."""

    def __init__(self, socket_path: str, sim: SimProvider, *, delay: int = 0, regenerate: bool = True) -> None:
        self.socket_path, self.sim, self.delay, self.regenerate = socket_path, sim, delay, regenerate
        self.ak: tuple[int, int] = (0, 0)
        self.named_ak: tuple[int, int] | None = None
        self.pending: int | None = None
        self.reports = 0

    def provision(self) -> None:
        with contextlib.closing(tpm.Tpm(tpm.SocketTransport(self.socket_path))) as device:
            self.ak = create_ak(device)
            device.nv_define_space(tpm.NvPublic(az_vtpm.HCL_REPORT_INDEX, tpm.TPM_ALG_SHA256,
                                                HCL_INDEX_ATTRIBUTES, b"", HCL_INDEX_SIZE), auth=tpm.TPM_RH_PLATFORM)
            self.write_report(device, bytes(64))

    def write_report(self, device: tpm.Tpm, user_data: bytes) -> None:
        var = runtime_data(self.named_ak or self.ak, user_data)
        snp = self.sim.report(hashlib.sha256(var).digest() + bytes(32)).report
        device.nv_write(az_vtpm.HCL_REPORT_INDEX, hcl_report(snp, var), auth=tpm.TPM_RH_PLATFORM)
        self.reports += 1

    def connect(self) -> _Connection:
        return _Connection(self, tpm.SocketTransport(self.socket_path))

    def raw(self) -> tpm.Tpm:
        """A plain client, as the test's own independent view of the TPM (PCRs, the AK)."""
        return tpm.Tpm(tpm.SocketTransport(self.socket_path))


class _Connection:
    """The guest's connection; the paravisor acts between its commands, as the HCL would between the
    guest's TPM accesses."""

    def __init__(self, paravisor: SimParavisor, inner: tpm.SocketTransport) -> None:
        self.paravisor, self.inner = paravisor, inner

    def transact(self, command: bytes) -> bytes:
        p = self.paravisor
        response = self.inner.transact(command)
        if p.pending is not None:
            p.pending -= 1
        cc = int.from_bytes(command[6:10], "big")
        index = int.from_bytes(command[14:18], "big") if len(command) >= 18 else 0
        ok = len(response) >= 10 and int.from_bytes(response[6:10], "big") == 0
        if cc == tpm.CC_NV_WRITE and index == az_vtpm.USER_DATA_INDEX and ok and p.regenerate:
            p.pending = p.delay
        if p.pending is not None and p.pending <= 0:
            p.pending = None
            device = tpm.Tpm(self.inner)
            p.write_report(device, device.nv_read(az_vtpm.USER_DATA_INDEX))
        return response

    def close(self) -> None:
        self.inner.close()


def sim_tee(sim_chain: Any, measurement: bytes = b"\x42" * 48) -> SimProvider:
    """The sim PSP the paravisor asks for reports (HOST_DATA zero: Azure's host sets it, nobody checks it)."""
    from launcher.simca import make_config

    return SimProvider(raw=make_config(sim_chain, measurement, bytes(32)).to_json().encode())

