"""The ``az-snp-vtpm`` TEE: evidence from an Azure confidential VM's vTPM, in the shape Trustee's KBS takes.

An Azure SEV-SNP guest runs above a paravisor (the HCL, at VMPL 0) and sees no SNP guest device, only a
vTPM the paravisor runs. The paravisor asks the PSP for an SNP report whose REPORT_DATA is the SHA-256 of
its "runtime data" (a JSON document naming the vTPM's attestation key, AK) and stores report and runtime
data in NV index 0x01400001 (the HCL report: verifier/hcl.py has the layout). The guest's part, as
guest-components' az-snp-vtpm attester does it (attestation-agent/attester/src/az_snp_vtpm/mod.rs, evidence
version 2, and kinvolk/azure-cvm-tooling az-cvm-vtpm/src/vtpm/mod.rs for the TPM calls, commit e4e44074):

1. write the report data to NV index 0x01400002 (defined by the guest when missing, owner read/write,
   SHA-256 name, the data's size), so the paravisor makes a fresh HCL report whose runtime data carries
   it as "user-data"; upstream then sleeps 3 s and reads, here the index is polled until the report
   carries this user data and reads the same twice (so neither a stale nor a half-rewritten report is sent);
2. read the HCL report with owner authorization (an empty password);
3. quote all 24 SHA-256 PCRs with the AK at persistent handle 0x81000003, the report data as qualifying
   data, with the key's own scheme (RSASSA/SHA-256), then read the PCR values; the quote's pcrDigest must
   match them, else (a PCR moved in between) both are taken again, a bounded number of times;
4. the VCEK certificate from Azure's instance metadata service (THIM: ``vcekCert``, PEM, sent as DER).

Evidence (trustee deps/verifier/src/az_snp_vtpm/compat.rs, EvidenceV2): ``{"version": 2, "tpm_quote":
{"signature": hex, "message": hex, "pcrs": [24 x hex]}, "hcl_report": base64url, "vcek": base64url of the
DER}``; version 1 is the same without step 1 (the runtime data's user-data then stays zero).

The 64-byte REPORT_DATA and the quote: a TPM2B_DATA holds at most one digest of the TPM's largest hash
(Azure's vTPM has no SHA-512 bank, so less than 64 bytes), and every RCAR client binds a SHA-384 digest
zero-padded to 64 bytes. So when the last 16 bytes are zero the quote carries the first 48 (what
guest-components' attester and cocoon's broker put and expect there), else all 64; ``report_data_of``
pads the quote's extraData back to 64, which gives the same 64 bytes either way.

Initdata: Azure's host, not the pod's owner, sets HOST_DATA, so there is no launch-fixed field; a CoCo
guest extends the initdata digest into PCR 8 itself (attester ``bind_init_data``: ``INIT_DATA_PCR = 8``,
the digest must be 32 bytes, "expected sha256 digest") and the verifier checks PCR 8 = SHA-256(32 zero
bytes || digest) (trustee ``verify_init_data``; here ``az.tpm.pcr8.initdata``). So this provider binds by
extending (``binds_by_extend``, agent/binding.py ``ExtendBinding``): the measured agent extends PCR 8 once
at start-up (``bind_initdata``), fail-closed when PCR 8 was not zero before or does not read back as that
one extend after; ``bound_value`` refuses.

Runtime measurements (agent/eventlog.py): upstream's attester extends the SHA-256 bank of the PCR the
request names (``extend_pcr_sync``, any 0-23, the event digest must be SHA-256), with PCR 17 by default
(attestation-agent config ``DEFAULT_PCR_INDEX``). Here only PCR 16 (debug) and 23 (application support),
the two the TCG PC Client profile lets locality 0 extend that no boot component owns: 0-7 are the
firmware's, 8 holds the initdata binding, 9-15 the loader's, kernel's, IMA's and systemd's (Linux TPM PCR
Registry), and 17-22 are the DRTM's, which a PC Client TPM refuses to extend from locality 0 (swtpm answers
TPM_RC_LOCALITY: upstream's default fails there). The default is 23.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import agent.tee.tpm as tpm
from agent import strictjson
from agent.errors import TeeError
from agent.tee.base import Evidence, check_report_data

NAME = "az-snp-vtpm"
HCL_REPORT_INDEX = 0x0140_0001
USER_DATA_INDEX = 0x0140_0002
AK_HANDLE = 0x8100_0003
USER_DATA_SIZE = 64
QUOTE_DIGEST_SIZE = 48  # a SHA-384 digest: what RCAR clients bind
EVIDENCE_VERSION = 2
INITDATA_PCR = 8
RUNTIME_PCRS = (16, 23)
DEFAULT_RUNTIME_PCR = 23
IMDS_URL = "http://169.254.169.254/metadata/THIM/amd/certification"  # az-cvm-vtpm az-snp-vtpm/src/imds.rs
MAX_IMDS_REPLY = 64 << 10
QUOTE_ATTEMPTS = 3
# HCL report layout (verifier/hcl.py, from az-cvm-vtpm src/hcl/mod.rs): the runtime data's size is the last
# u32 of the IGVM request data at 0x4C0, the runtime data itself starts at 0x4D4
_HCL_VAR_SIZE_AT = 0x4C0 + 16
_HCL_VAR_DATA_AT = 0x4D4


def quote_data(report_data: bytes) -> bytes:
    """The qualifying data for REPORT_DATA (module docstring): the SHA-384 digest when the rest is padding."""
    return report_data[:QUOTE_DIGEST_SIZE] if not any(report_data[QUOTE_DIGEST_SIZE:]) else report_data


def hcl_user_data(blob: bytes) -> bytes:
    """The runtime data's "user-data" (hex in the JSON) of an HCL report; TeeError when there is none.

    Only for deciding that the paravisor has written the report asked for: the verifier reads the report
    in full (verifier/hcl.py), the guest trusts nothing in it."""
    if len(blob) < _HCL_VAR_DATA_AT or blob[:4] != b"HCLA":
        raise TeeError(f"NV index {HCL_REPORT_INDEX:#010x} holds {len(blob)} bytes that are no HCL report")
    size = int.from_bytes(blob[_HCL_VAR_SIZE_AT:_HCL_VAR_SIZE_AT + 4], "little")
    if _HCL_VAR_DATA_AT + size > len(blob):
        raise TeeError(f"the HCL report's runtime data ({size} bytes) does not fit its {len(blob)} bytes")
    try:
        doc = strictjson.loads(blob[_HCL_VAR_DATA_AT:_HCL_VAR_DATA_AT + size])
        value = doc.get("user-data") if isinstance(doc, dict) else None
        if not isinstance(value, str):
            raise TeeError("the HCL report's runtime data has no \"user-data\" string")
        return bytes.fromhex(value)
    except (ValueError, RecursionError) as exc:
        raise TeeError(f"the HCL report's runtime data is not JSON with hex user-data: {exc}") from None


def _pem_certificate(pem: str) -> bytes:
    """The DER of the first PEM CERTIFICATE block (strict base64)."""
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = pem.find(begin)
    stop = pem.find(end, start + len(begin)) if start >= 0 else -1
    if stop < 0:
        raise TeeError("the VCEK is not a PEM CERTIFICATE")
    try:
        return base64.b64decode("".join(pem[start + len(begin):stop].split()), validate=True)
    except (binascii.Error, ValueError):
        raise TeeError("the VCEK PEM has bad base64") from None


def imds_vcek(url: str = IMDS_URL, timeout: float = 10.0) -> bytes:
    """The VCEK (DER) Azure's instance metadata service hands this VM (``Metadata: true``, JSON
    ``vcekCert``). Its authenticity is the verifier's business: it must chain to AMD's ARK."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise TeeError(f"IMDS url {url!r} is not http://host[:port]/path")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/", headers={"Metadata": "true"})
        reply = conn.getresponse()
        raw = reply.read(MAX_IMDS_REPLY + 1)
        status = reply.status
    except (OSError, http.client.HTTPException) as exc:
        raise TeeError(f"IMDS {url}: {exc}") from None
    finally:
        conn.close()
    if status != 200 or len(raw) > MAX_IMDS_REPLY:
        raise TeeError(f"IMDS {url}: HTTP {status}, {len(raw)} bytes; no VCEK")
    try:
        doc = strictjson.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise TeeError(f"IMDS {url}: not JSON: {exc}") from None
    pem = doc.get("vcekCert") if isinstance(doc, dict) else None
    if not isinstance(pem, str):
        raise TeeError(f"IMDS {url}: the answer has no vcekCert string")
    return _pem_certificate(pem)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()  # padded, as serde_with's Base64<UrlSafe> writes it


class AzVtpmProvider:
    """Evidence from the vTPM (``connect`` opens it for each report) and the VCEK (``vcek``, DER, fetched
    once). ``user_data`` False sends evidence version 1 (no fresh HCL report: freshness rests on the quote
    alone). ``settle_s`` bounds the wait for the paravisor's new report, polled every ``poll_s``."""

    name = NAME
    bound_field = "PCR8"
    bound_size = 32
    binds_by_extend = True
    digest_algorithm = "sha256"  # PCR 8 of the SHA-256 bank takes a SHA-256 digest, nothing else
    runtime_algorithm = "sha256"
    runtime_indices = RUNTIME_PCRS
    default_runtime_index = DEFAULT_RUNTIME_PCR

    def __init__(self, connect: Callable[[], tpm.Transport] | None = None, *,
                 vcek: Callable[[], bytes] = imds_vcek, user_data: bool = True, settle_s: float = 10.0,
                 poll_s: float = 0.2, source: str = "/dev/tpmrm0") -> None:
        self.connect = connect or (lambda: tpm.DeviceTransport(source))
        self.source = source
        self._vcek_source = vcek
        self._vcek: bytes | None = None
        self.user_data, self.settle_s, self.poll_s = user_data, settle_s, poll_s
        # One TPM conversation at a time: a report writes the user data, waits for the HCL report carrying
        # it and quotes; two interleaved ones would overwrite each other's user data (the data hub, the
        # ttRPC services and the KBS client all ask for evidence) and each would time out.
        self._lock = threading.Lock()

    def available(self) -> bool:
        try:
            self.connect().close()
        except TeeError:
            return False
        return True

    def report(self, report_data: bytes) -> Evidence:
        report_data = check_report_data(report_data)
        qualifying = quote_data(report_data)
        with self._lock:
            device = tpm.Tpm(self.connect())
            try:
                hcl = self._fresh_hcl(device, report_data) if self.user_data else device.nv_read(HCL_REPORT_INDEX)
                message, signature, pcrs = self._quote(device, qualifying)
            finally:
                device.close()
        doc = {"version": EVIDENCE_VERSION if self.user_data else 1,
               "tpm_quote": {"signature": signature.hex(), "message": message.hex(), "pcrs": [p.hex() for p in pcrs]},
               "hcl_report": _b64url(hcl), "vcek": _b64url(self.vcek())}
        return Evidence(tee=NAME, kind=NAME, report=json.dumps(doc, separators=(",", ":")).encode(),
                        source=f"vtpm:{self.source}")

    def vcek(self) -> bytes:
        if self._vcek is None:
            self._vcek = self._vcek_source()
        return self._vcek

    def _fresh_hcl(self, device: tpm.Tpm, report_data: bytes) -> bytes:
        """Hand the paravisor the user data and wait (bounded) for the HCL report that carries it."""
        self._user_data_index(device)
        device.nv_write(USER_DATA_INDEX, report_data)
        deadline = time.monotonic() + self.settle_s
        previous: bytes | None = None
        problem = "it still carries other user data"
        for _ in range(int(self.settle_s / max(self.poll_s, 1e-3)) + 3):  # the deadline ends it sooner
            blob = device.nv_read(HCL_REPORT_INDEX)
            try:
                carries = hcl_user_data(blob)[:USER_DATA_SIZE] == report_data
            except TeeError as exc:
                carries, problem = False, str(exc)
            if carries and blob == previous:
                return blob  # read twice alike: not a report rewritten under a chunked read
            previous = blob if carries else None
            if time.monotonic() >= deadline:
                break
            if not carries:
                time.sleep(self.poll_s)
        raise TeeError(f"the paravisor did not put the user data into the HCL report (NV index "
                       f"{HCL_REPORT_INDEX:#010x}) within {self.settle_s:g} s: {problem}")

    @staticmethod
    def _user_data_index(device: tpm.Tpm) -> None:
        """NV index 0x01400002 of exactly 64 bytes, owner read/write, as az-cvm-vtpm defines it."""
        wanted = tpm.NvPublic(USER_DATA_INDEX, tpm.TPM_ALG_SHA256, tpm.NV_OWNERWRITE | tpm.NV_OWNERREAD, b"",
                              USER_DATA_SIZE)
        try:
            public = device.nv_read_public(USER_DATA_INDEX)
        except tpm.TpmError as exc:
            if exc.code != tpm.RC_HANDLE:
                raise
        else:
            if public.size == USER_DATA_SIZE:
                return
            device.nv_undefine_space(USER_DATA_INDEX)
        device.nv_define_space(wanted)

    @staticmethod
    def _quote(device: tpm.Tpm, qualifying: bytes) -> tuple[bytes, bytes, list[bytes]]:
        """Quote, then the PCR values, which must be the ones the quote's pcrDigest covers."""
        everything = tuple(range(tpm.PCR_COUNT))
        for _ in range(QUOTE_ATTEMPTS):
            message, signature = device.quote(AK_HANDLE, qualifying, everything)
            attest = tpm.parse_attest(message)
            if attest.extra_data != qualifying or attest.selection != ((tpm.TPM_ALG_SHA256, everything),):
                raise tpm.TpmError("the vTPM quoted other qualifying data or other PCRs than asked for")
            try:
                _, pcrs = device.pcr_read(everything)
            except tpm.PcrsChanged:
                continue
            if tpm.pcr_digest(pcrs) == attest.pcr_digest:
                return message, signature, pcrs
        raise TeeError(f"the PCRs kept changing between the quote and reading them ({QUOTE_ATTEMPTS} attempts)")

    def bind_initdata(self, digest: bytes) -> bytes:
        """Extend PCR 8 with the initdata digest exactly once; PCR 8's value after, which is then
        ``extended_value(digest)``. TeeError, extending nothing, when PCR 8 is not all zeros before (it was
        extended already: by an earlier bind this boot, or by something else in the boot chain); TeeError when
        it does not read back as that one extend (something extended it in between)."""
        if len(digest) != tpm.SHA256_SIZE:
            raise TeeError(f"PCR {INITDATA_PCR} binds a SHA-256 initdata digest (32 bytes), not {len(digest)} bytes")
        expected = self.extended_value(digest)
        with self._lock:
            device = tpm.Tpm(self.connect())
            try:
                (before,) = device.pcr_read((INITDATA_PCR,))[1]
                if any(before):
                    raise TeeError(f"PCR {INITDATA_PCR} was already extended before the initdata was bound: it "
                                   f"holds {before.hex()}, not 32 zero bytes, so it cannot attest this initdata; it "
                                   "is extended once per boot, refusing to extend it again")
                device.pcr_extend(INITDATA_PCR, digest)
                (after,) = device.pcr_read((INITDATA_PCR,))[1]
            finally:
                device.close()
        if after != expected:
            raise TeeError(f"PCR {INITDATA_PCR} reads {after.hex()} after extending it with the initdata digest "
                           f"{digest.hex()}, not SHA-256(32 zero bytes || digest) = {expected.hex()}: something "
                           "else extended it meanwhile")
        return after

    def initdata_register(self) -> bytes:
        """PCR 8 as it is now."""
        device = tpm.Tpm(self.connect())
        try:
            return device.pcr_read((INITDATA_PCR,))[1][0]
        finally:
            device.close()

    @staticmethod
    def extended_value(digest: bytes) -> bytes:
        """PCR 8 after the one extend with ``digest`` from zero: what the verifier expects there."""
        return tpm.extended(bytes(tpm.SHA256_SIZE), digest)

    # --- runtime measurements (agent/eventlog.py RuntimeRegisters) -------------------------------------
    @staticmethod
    def runtime_measurement_available() -> bool:
        return True

    @staticmethod
    def runtime_register(index: int) -> int:
        if index not in RUNTIME_PCRS:
            raise TeeError(f"PCR {index} takes no runtime events (only {RUNTIME_PCRS})")
        return index

    def read_runtime(self, register: int) -> bytes:
        """The PCR's SHA-256 value, in a TPM conversation of its own (the provider's lock)."""
        self.runtime_register(register)
        with self._lock:
            device = tpm.Tpm(self.connect())
            try:
                return device.pcr_read((register,))[1][0]
            finally:
                device.close()

    def extend_runtime(self, register: int, digest: bytes) -> None:
        """PCR_Extend of the SHA-256 bank; never PCR 8 or any other than RUNTIME_PCRS."""
        self.runtime_register(register)
        if len(digest) != tpm.SHA256_SIZE:
            raise TeeError(f"PCR {register} is extended with a SHA-256 digest, not {len(digest)} bytes")
        with self._lock:
            device = tpm.Tpm(self.connect())
            try:
                device.pcr_extend(register, digest)
            finally:
                device.close()

    def bound_value(self, evidence: Evidence) -> bytes:
        raise TeeError("az-snp-vtpm has no launch-fixed initdata field (Azure's host sets HOST_DATA); the "
                       "initdata digest is bound in PCR 8 by the guest (bind_initdata), judged by the verifier")

    def report_data_of(self, evidence: Evidence) -> bytes:
        """The quote's extraData, padded back to the 64 bytes it stands for (``quote_data``)."""
        message = evidence_document(evidence)["tpm_quote"]["message"]
        try:
            raw = bytes.fromhex(message)
        except ValueError:
            raise TeeError("az-snp-vtpm evidence: the quote message is not hex") from None
        return tpm.parse_attest(raw).extra_data.ljust(64, b"\0")


def evidence_document(evidence: Evidence) -> dict[str, Any]:
    """The evidence JSON the provider made (its ``report`` bytes), read back strictly."""
    try:
        doc = strictjson.loads(evidence.report)
        if not isinstance(doc, dict) or not isinstance(doc.get("tpm_quote"), dict) or \
                not isinstance(doc["tpm_quote"].get("message"), str):
            raise ValueError("not az-snp-vtpm evidence")
        return doc
    except (ValueError, RecursionError) as exc:
        raise TeeError(f"az-snp-vtpm evidence: {exc}") from None


def open_device(path: str = "/dev/tpmrm0") -> AzVtpmProvider:
    """The provider on this VM's vTPM; TeeError when there is none to open."""
    provider = AzVtpmProvider(source=path)
    provider.connect().close()
    return provider
