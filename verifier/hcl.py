"""Azure's HCL report: the paravisor's wrapper around an SEV-SNP ATTESTATION_REPORT and its runtime data.

On an Azure confidential VM the guest cannot ask the PSP for a report itself; the HCL (the paravisor at
VMPL 0) does, and stores the result in the vTPM's NV index 0x01400001. The layout, as the az-cvm-vtpm
crate reads it (kinvolk/azure-cvm-tooling ``az-cvm-vtpm/src/hcl/mod.rs``, commit e4e44074), all integers
little-endian:

- 0x000 attestation header, eight u32: signature ("HCLA"), version, report_size, request_type, status,
  three reserved;
- 0x020 the hardware report, 1184 bytes (an SNP ATTESTATION_REPORT; a TDREPORT is shorter and padded);
- 0x4C0 IGVM request data, five u32: data_size, version, report_type (2 SNP, 4 TDX), report_data_hash_type
  (1 SHA-256, 2 SHA-384, 3 SHA-512), variable_data_size;
- 0x4D4 the variable ("runtime") data, variable_data_size bytes of JSON, then zero padding to the NV size.

The paravisor asks for the SNP report with REPORT_DATA = hash(runtime data), so the runtime data, which
carries the vTPM's attestation key, is as genuine as the report's signature (trustee
``deps/verifier/src/az_snp_vtpm/mod.rs`` checks the first 32 bytes; the rest are zero in every genuine
report published, so verifier/az_snp_vtpm.py requires 32 zero bytes there).

The header's version, request_type and status, and the request data's version, are neither signed nor
hashed: they only steer parsing, so nothing is concluded from them. The crate checks none of the sizes
against each other; here data_size and report_size must agree with the
layout (they do in every genuine report in trustee's test data), so a truncated or spliced report is refused.
"""

from __future__ import annotations

import base64
import re
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from agent.errors import ReportError
from verifier import strictjson

SIGNATURE = b"HCLA"
HEADER_SIZE = 32
HW_REPORT_SIZE = 1184  # an SNP ATTESTATION_REPORT (0x4A0); az-cvm-vtpm's SNP_REPORT_SIZE
REQUEST_OFFSET = HEADER_SIZE + HW_REPORT_SIZE
REQUEST_SIZE = 20
VAR_DATA_OFFSET = REQUEST_OFFSET + REQUEST_SIZE
REPORT_TYPE_SNP = 2
REPORT_TYPE_TDX = 4
HASH_SHA256 = 1  # IgvmHashType: 0 invalid, 1 SHA-256, 2 SHA-384, 3 SHA-512
AK_KID = "HCLAkPub"  # the vTPM attestation key's "kid" in the runtime data's JWK set
MAX_RUNTIME_DATA = 1 << 16  # the NV index is a few KiB; a larger claim is not a genuine report
MIN_AK_BITS = 2048
MAX_AK_BITS = 16384  # a TPM's RSA keys are 2048 to 4096 bits; more only costs the verifier time
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


@dataclass(frozen=True)
class HclReport:
    version: int
    report_type: int
    hash_type: int
    snp_report: bytes  # the 1184-byte ATTESTATION_REPORT, for verifier/snp.py
    var_data: bytes  # the runtime data exactly as hashed into REPORT_DATA


@dataclass(frozen=True)
class RuntimeData:
    """What the relying party reads from the runtime data: the AK and (evidence v2) the user data."""

    ak: rsa.RSAPublicKey
    user_data: bytes | None


def parse(data: bytes) -> HclReport:
    """The HCL report's parts; ReportError for anything that does not fit the layout above."""
    if len(data) < VAR_DATA_OFFSET:
        raise ReportError(f"HCL report is {len(data)} bytes, shorter than its fixed part ({VAR_DATA_OFFSET})")
    signature, version, report_size, _request_type, _status = struct.unpack_from("<4sIIII", data, 0)
    if signature != SIGNATURE:
        raise ReportError(f"HCL report signature is {signature!r}, not {SIGNATURE!r}")
    data_size, _req_version, report_type, hash_type, var_size = struct.unpack_from("<5I", data, REQUEST_OFFSET)
    if report_type != REPORT_TYPE_SNP:
        what = "a TDX report" if report_type == REPORT_TYPE_TDX else f"report type {report_type}"
        raise ReportError(f"HCL report holds {what}, not an SEV-SNP report (type {REPORT_TYPE_SNP})")
    if hash_type != HASH_SHA256:
        raise ReportError(f"HCL report hashes its runtime data with type {hash_type}; only SHA-256 "
                          f"({HASH_SHA256}) is known to bind the SNP REPORT_DATA")
    if var_size > MAX_RUNTIME_DATA or VAR_DATA_OFFSET + var_size > len(data):
        raise ReportError(f"HCL runtime data of {var_size} bytes does not fit a {len(data)}-byte report")
    if data_size != REQUEST_SIZE + var_size:
        raise ReportError(f"HCL request data_size {data_size} is not {REQUEST_SIZE} + the runtime data's {var_size}")
    if report_size != VAR_DATA_OFFSET + var_size:
        raise ReportError(f"HCL report_size {report_size} is not {VAR_DATA_OFFSET} + the runtime data's {var_size}")
    return HclReport(version, report_type, hash_type, bytes(data[HEADER_SIZE:REQUEST_OFFSET]),
                     bytes(data[VAR_DATA_OFFSET:VAR_DATA_OFFSET + var_size]))


def _b64url_int(value: Any, what: str) -> int:
    """A JWK big-endian integer (RFC 7518 §6.3.1: base64url, no padding)."""
    if not isinstance(value, str) or not value or not _B64URL.fullmatch(value) or len(value) % 4 == 1:
        raise ReportError(f"HCL runtime data: the AK's {what} is not base64url")
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def _ak(keys: Any) -> rsa.RSAPublicKey:
    if not isinstance(keys, list):
        raise ReportError("HCL runtime data: \"keys\" is not a list")
    found = [k for k in keys if isinstance(k, dict) and k.get("kid") == AK_KID]
    if len(found) != 1:
        raise ReportError(f"HCL runtime data holds {len(found)} keys with kid {AK_KID!r}, not one")
    jwk = found[0]
    if jwk.get("kty") != "RSA":
        raise ReportError(f"HCL runtime data: the AK's kty is {strictjson.name(str(jwk.get('kty')))}, not RSA")
    n, e = _b64url_int(jwk.get("n"), "modulus n"), _b64url_int(jwk.get("e"), "exponent e")
    if not MIN_AK_BITS <= n.bit_length() <= MAX_AK_BITS or not 3 <= e < 1 << 64:
        raise ReportError(f"HCL runtime data: the AK (RSA-{n.bit_length()}, e of {e.bit_length()} bits) is not an "
                          f"RSA-{MIN_AK_BITS} to RSA-{MAX_AK_BITS} key with a usable exponent")
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise ReportError(f"HCL runtime data: the AK is not an RSA public key: {exc}") from None


def runtime_data(var_data: bytes) -> RuntimeData:
    """The AK (the JWK with kid "HCLAkPub") and the hex "user-data", read with verifier.strictjson."""
    try:
        doc = strictjson.loads(var_data)
    except (ValueError, RecursionError) as exc:
        raise ReportError(f"HCL runtime data is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ReportError("HCL runtime data is not a JSON object")
    user = doc.get("user-data")
    if user is not None and (not isinstance(user, str) or not _HEX.fullmatch(user)):
        raise ReportError("HCL runtime data: \"user-data\" is not hex")
    return RuntimeData(_ak(doc.get("keys")), None if user is None else bytes.fromhex(user))
