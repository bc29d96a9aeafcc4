"""AMD's VCEK/VLEK certificate extensions: the TCB and chip a key was issued for.

AMD's KDS issues one VCEK per (chip, TCB); the certificate says which in
private extensions under 1.3.6.1.4.1.3704.1 (AMD spec 57230, "VCEK
Certificate and KDS Interface Specification", table "VCEK Certificate
Extensions"; go-sev-guest ``kds.VcekCertificateExtensions``):

    .1 structVersion  .2 productName (IA5String)
    .3.1 blSPL  .3.2 teeSPL  .3.3 snpSPL  .3.8 ucodeSPL   (DER INTEGER each)
    .3.9 fmcSPL (Turin and later)
    .4 hwID (the CHIP_ID: 64 bytes, 8 on Turin, whose reports put those 8 first;
       VCEK only, VLEKs are not chip-bound)
    .5 csp_id (IA5String, VLEK only: the cloud provider KDS issued it to;
       go-sev-guest ``kds.OidCspID``)

A VLEK carries the same extensions except hwID, so one reader serves both;
``what`` names which key a message is about.

A signature that checks under a genuine VCEK proves only that *some* TCB of
that chip signed; a relying party must also see that the key's TCB is the
report's REPORTED_TCB and its hwID the report's CHIP_ID, or an attacker
holding a key from an old, vulnerable TCB could vouch for a report claiming
a new one. Hence these claims.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.errors import ReportError

ARC = "1.3.6.1.4.1.3704.1"
OID_PRODUCT = f"{ARC}.2"
OID_SPL = {"bootloader": f"{ARC}.3.1", "tee": f"{ARC}.3.2", "snp": f"{ARC}.3.3", "microcode": f"{ARC}.3.8"}
OID_FMC = f"{ARC}.3.9"
OID_HWID = f"{ARC}.4"
OID_CSP_ID = f"{ARC}.5"


@dataclass(frozen=True)
class VcekExtensions:
    product: str | None
    tcb: dict[str, int] | None  # None: the certificate carries no SPL extensions
    hwid: bytes | None
    csp_id: str | None = None  # VLEKs: the cloud service provider's name


def _der_int(raw: bytes, what: str) -> int:
    # A short DER INTEGER: tag 0x02, one length byte, big-endian two's complement (SPLs are 0..255).
    if len(raw) < 3 or raw[0] != 0x02 or raw[1] != len(raw) - 2 or raw[1] > 8:
        raise ReportError(f"extension {what} is not a DER INTEGER: {raw.hex()}")
    return int.from_bytes(raw[2:], "big", signed=True)


def _der_ia5(raw: bytes, what: str) -> str:
    if len(raw) < 2 or raw[0] != 0x16 or raw[1] != len(raw) - 2:
        raise ReportError(f"extension {what} is not a DER IA5String: {raw.hex()}")
    try:
        return raw[2:].decode("ascii")
    except UnicodeDecodeError:
        raise ReportError(f"extension {what} is not ASCII") from None


def _hwid(raw: bytes) -> bytes:
    # KDS puts the raw bytes straight into extnValue; accept a nested OCTET STRING too (as go-sev-guest does).
    if len(raw) in (8, 64):
        return raw
    if len(raw) in (10, 66) and raw[0] == 0x04 and raw[1] == len(raw) - 2:
        return raw[2:]
    raise ReportError(f"hwID extension is {len(raw)} bytes, not an 8- or 64-byte chip ID")


def chip_matches(hwid: bytes, chip_id: bytes) -> bool:
    """Turin's 8-byte hwID is the leading 8 bytes of the report's 64-byte CHIP_ID."""
    return len(hwid) in (8, 64) and chip_id[: len(hwid)] == hwid


def extensions(cert: Any, what: str = "VCEK") -> VcekExtensions:
    """Read the AMD extensions from a cryptography ``x509.Certificate``; absent ones are None."""
    try:
        return _extensions(cert)
    except ReportError as exc:
        raise ReportError(f"{what} {exc}") from None


def _extensions(cert: Any) -> VcekExtensions:
    raw: dict[str, bytes] = {}
    for ext in cert.extensions:
        oid = ext.oid.dotted_string
        if oid.startswith(ARC + "."):
            raw[oid] = getattr(ext.value, "value", b"")
    product = _der_ia5(raw[OID_PRODUCT], "productName") if OID_PRODUCT in raw else None
    spl = {name: _der_int(raw[oid], name) for name, oid in OID_SPL.items() if oid in raw}
    if spl and len(spl) != len(OID_SPL):
        missing = sorted(set(OID_SPL) - set(spl))
        raise ReportError(f"carries some TCB extensions but not {', '.join(missing)}")
    if spl and OID_FMC in raw:
        spl["fmc"] = _der_int(raw[OID_FMC], "fmc")
    csp = _der_ia5(raw[OID_CSP_ID], "csp_id") if OID_CSP_ID in raw else None
    return VcekExtensions(product, spl or None, _hwid(raw[OID_HWID]) if OID_HWID in raw else None, csp)


def extension_values(tcb: dict[str, int] | None = None, hwid: bytes | None = None,
                     product: str | None = None) -> list[tuple[str, bytes]]:
    """(OID, extnValue bytes) pairs in KDS's encoding: what a sim or test VCEK carries."""
    out: list[tuple[str, bytes]] = []
    if product is not None:
        data = product.encode("ascii")
        out.append((OID_PRODUCT, bytes([0x16, len(data)]) + data))
    for name, oid in [*OID_SPL.items(), ("fmc", OID_FMC)]:
        if tcb is not None and name in tcb:
            value = int(tcb[name]).to_bytes(2, "big", signed=True)
            value = value[1:] if value[0] == 0 and not value[1] & 0x80 else value  # minimal DER
            out.append((oid, bytes([0x02, len(value)]) + value))
    if hwid is not None:
        out.append((OID_HWID, hwid))
    return out
