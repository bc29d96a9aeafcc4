"""TDX collateral from files: Intel PCS TCB info and QE identity, checked offline against a quote.

Inputs are what Intel's PCS v4 API returns, saved by the relying party:
`GET /tdx/certification/v4/tcb?fmspc=...` (body `{"tcbInfo": {...}, "signature": hex}`),
`GET /tdx/certification/v4/qe/identity` (body `{"enclaveIdentity": {...}, "signature": hex}`),
and the `TCB-Info-Issuer-Chain` header (URL-decoded PEM: TCB signing cert, root). The signature
is ECDSA P-256, r||s, over the exact bytes of the signed object as the body carries them, so the
object's text is cut from the file rather than re-serialised.

TCB level selection follows Intel's DCAP quote verification: the first level (levels are
ordered newest first) whose SGX components and PCESVN are at most the PCK certificate's, and
whose TDX components are at most the TD report's TEE_TCB_SVN (from index 2 when the TDX module's
major version, TEE_TCB_SVN[1], is non-zero: the first two then identify the module).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

from agent.errors import ReportError
from verifier.claims import Result

SGX_EXTENSION = "1.2.840.113741.1.13.1"
ACCEPTABLE = {"UpToDate"}
ACCEPTABLE_WITH_NOTE = {"SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"}


class CollateralError(ReportError):
    """Collateral files or a PCK certificate extension that cannot be read."""


@dataclass(frozen=True)
class PckTcb:
    fmspc: bytes
    pce_id: bytes
    sgx_svns: tuple[int, ...]  # 16 components
    pcesvn: int


@dataclass(frozen=True)
class Collateral:
    tcb_info: dict[str, Any]
    tcb_info_text: bytes
    tcb_info_sig: bytes
    qe_identity: dict[str, Any]
    qe_identity_text: bytes
    qe_identity_sig: bytes
    issuer_chain_pem: bytes


# --- a DER reader just big enough for the SGX extension ------------------------------------------
def _tlv(data: bytes, off: int) -> tuple[int, bytes, int]:
    if off + 2 > len(data):
        raise CollateralError(f"SGX extension: truncated at offset {off}")
    tag, first = data[off], data[off + 1]
    off += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or off + n > len(data):
            raise CollateralError(f"SGX extension: bad length at offset {off - 1}")
        length = int.from_bytes(data[off : off + n], "big")
        off += n
    if off + length > len(data):
        raise CollateralError(f"SGX extension: value at offset {off} runs past the end")
    return tag, data[off : off + length], off + length


def _children(data: bytes) -> list[tuple[int, bytes]]:
    out, off = [], 0
    while off < len(data):
        tag, value, off = _tlv(data, off)
        out.append((tag, value))
    return out


def _oid(value: bytes) -> str:
    if not value:
        raise CollateralError("SGX extension: empty OID")
    parts = [value[0] // 40, value[0] % 40]
    n = 0
    for b in value[1:]:
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(n)
            n = 0
    return ".".join(map(str, parts))


def _pairs(seq: bytes) -> dict[str, tuple[int, bytes]]:
    """SEQUENCE OF SEQUENCE {OID, value} -> {oid: (tag, value)}."""
    out = {}
    for tag, item in _children(seq):
        if tag != 0x30:
            raise CollateralError("SGX extension: expected SEQUENCE {OID, value}")
        kids = _children(item)
        if len(kids) != 2 or kids[0][0] != 0x06:
            raise CollateralError("SGX extension: entry is not {OID, value}")
        out[_oid(kids[0][1])] = kids[1]
    return out


def pck_tcb(cert: Any) -> PckTcb:
    """FMSPC, PCE-ID, the 16 SGX TCB component SVNs and PCESVN from a PCK certificate (cryptography x509)."""
    from cryptography import x509

    try:
        raw = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION)).value.value
    except (x509.ExtensionNotFound, AttributeError):
        raise CollateralError("PCK certificate has no SGX extension (1.2.840.113741.1.13.1)") from None
    tag, top, _ = _tlv(raw, 0)
    if tag != 0x30:
        raise CollateralError("SGX extension is not a SEQUENCE")
    fields = _pairs(top)
    try:
        _, tcb = fields[SGX_EXTENSION + ".2"]
        fmspc = fields[SGX_EXTENSION + ".4"][1]
        pce_id = fields[SGX_EXTENSION + ".3"][1]
    except KeyError as exc:
        raise CollateralError(f"SGX extension lacks {exc.args[0]}") from None
    comps = _pairs(tcb)
    svns = []
    for i in range(1, 18):
        entry = comps.get(f"{SGX_EXTENSION}.2.{i}")
        if entry is None or entry[0] != 0x02:
            raise CollateralError(f"SGX extension: TCB component {i} missing or not an INTEGER")
        svns.append(int.from_bytes(entry[1], "big"))
    if len(fmspc) != 6:
        raise CollateralError(f"SGX extension: FMSPC is {len(fmspc)} bytes, expected 6")
    return PckTcb(fmspc, pce_id, tuple(svns[:16]), svns[16])


# --- collateral files ------------------------------------------------------------------------------
def _signed_object(text: bytes, key: str, what: str) -> tuple[dict[str, Any], bytes, bytes]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise CollateralError(f"{what}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get(key), dict) or not isinstance(doc.get("signature"), str):
        raise CollateralError(f"{what}: expected {{\"{key}\": {{...}}, \"signature\": \"hex\"}}")
    s = text.decode("utf-8", errors="strict")
    at = s.find(f'"{key}"')
    start = s.find("{", at)
    try:
        _, end = json.JSONDecoder().raw_decode(s, start)
        sig = bytes.fromhex(doc["signature"])
    except ValueError as exc:
        raise CollateralError(f"{what}: {exc}") from None
    if len(sig) != 64:
        raise CollateralError(f"{what}: signature is {len(sig)} bytes, expected 64 (r||s)")
    return doc[key], s[start:end].encode(), sig


def load(tcb_info: bytes, qe_identity: bytes, issuer_chain_pem: bytes) -> Collateral:
    t, t_text, t_sig = _signed_object(tcb_info, "tcbInfo", "TCB info")
    q, q_text, q_sig = _signed_object(qe_identity, "enclaveIdentity", "QE identity")
    return Collateral(t, t_text, t_sig, q, q_text, q_sig, issuer_chain_pem)


def _when(value: object, what: str) -> datetime.datetime:
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise CollateralError(f"{what} is not an ISO 8601 time: {value!r}") from None


def _tdx_level(levels: list[dict[str, Any]], pck: PckTcb, tee_tcb_svn: bytes) -> dict[str, Any] | None:
    start = 2 if tee_tcb_svn[1] > 0 else 0
    for level in levels:
        tcb = level.get("tcb") or {}
        sgx = [int(c.get("svn", 0)) for c in tcb.get("sgxtcbcomponents", [])]
        tdx = [int(c.get("svn", 0)) for c in tcb.get("tdxtcbcomponents", [])]
        if len(sgx) != 16 or len(tdx) != 16:
            raise CollateralError("TCB info: a TCB level lacks 16 sgxtcbcomponents / tdxtcbcomponents")
        if all(p >= s for p, s in zip(pck.sgx_svns, sgx, strict=True)) and pck.pcesvn >= int(tcb.get("pcesvn", 0)) \
                and all(tee_tcb_svn[i] >= tdx[i] for i in range(start, 16)):
            return level
    return None


def check(result: Result, c: Collateral, trusted_root: bytes, pck_cert: Any, qe_report: bytes,
          body: Any, now: datetime.datetime | None = None) -> None:
    """Claims tdx.collateral.* and tdx.tcb / tdx.qe_identity for one quote (``body``: its TD report)."""
    if not check_documents(result, c, trusted_root, now):
        return
    try:
        pck = pck_tcb(pck_cert)
    except CollateralError as exc:
        result.add("tdx.collateral.format", False, str(exc))
        return
    fmspc = str(c.tcb_info.get("fmspc", "")).lower()
    if not result.add("tdx.tcb.fmspc", fmspc == pck.fmspc.hex(), "TCB info is for this platform's FMSPC",
                      pck.fmspc.hex(), fmspc):
        return
    try:
        level = _tdx_level(list(c.tcb_info.get("tcbLevels") or []), pck, body.tee_tcb_svn)
    except (CollateralError, TypeError, ValueError, AttributeError) as exc:
        result.add("tdx.tcb.status", False, f"TCB info unreadable: {exc}")
        return
    status = None if level is None else str(level.get("tcbStatus"))
    detail = "no TCB level matches the PCK and TEE_TCB_SVN" if status is None else f"TCB level {status}"
    if status in ACCEPTABLE_WITH_NOTE:
        detail += " (acceptable; advisories apply)"
    result.add("tdx.tcb.status", status in ACCEPTABLE | ACCEPTABLE_WITH_NOTE, detail, "UpToDate", status)
    tdx_module(result, c.tcb_info, body)
    _qe_identity(result, c.qe_identity, qe_report)


def check_documents(result: Result, c: Collateral, trusted_root: bytes, now: datetime.datetime | None = None) -> bool:
    """The collateral itself: signing chain to the trusted root, both signatures, freshness."""
    from verifier.tdx import _ecdsa_p256, _pck_chain, _verify

    now = now or datetime.datetime.now(datetime.UTC)
    try:
        signer = _pck_chain(c.issuer_chain_pem, trusted_root, what="TCB signing chain", minimum=2).public_key()
    except ReportError as exc:
        result.add("tdx.collateral.chain", False, str(exc))
        return False
    result.add("tdx.collateral.chain", True, "TCB signing certificate <- Intel SGX Root CA")
    ok_t = result.add("tdx.collateral.tcb_info.signature", _verify(signer, _ecdsa_p256(c.tcb_info_sig),
                                                                   c.tcb_info_text), "TCB info signed")
    ok_q = result.add("tdx.collateral.qe_identity.signature", _verify(signer, _ecdsa_p256(c.qe_identity_sig),
                                                                      c.qe_identity_text), "QE identity signed")
    if not (ok_t and ok_q):
        return False
    try:
        for name, doc in (("tcb_info", c.tcb_info), ("qe_identity", c.qe_identity)):
            nxt = _when(doc.get("nextUpdate"), f"{name}.nextUpdate")
            result.add(f"tdx.collateral.{name}.fresh", now <= nxt, "not past its nextUpdate",
                       f">= {now.isoformat()}", nxt.isoformat())
    except CollateralError as exc:
        result.add("tdx.collateral.format", False, str(exc))
        return False
    return True


def tdx_module(result: Result, tcb_info: dict[str, Any], body: Any) -> None:
    """The TDX module (SEAM) that produced the report, against the TCB info's module identities.

    Intel's QVL (TdxModuleCheck.cpp): TEE_TCB_SVN[1] is the module's major version and [0] its SVN.
    Version 0 is checked against ``tdxModule`` alone; otherwise the identity ``TDX_<major, 2 hex>``
    gives MRSIGNER, attributes (under a mask) and, by the first level whose ``isvsvn`` the SVN
    reaches, the module's TCB status.
    """
    svn, major = body.tee_tcb_svn[0], body.tee_tcb_svn[1]
    try:
        if major == 0:
            ident, name, status = tcb_info["tdxModule"], "tdxModule", None
        else:
            name = f"TDX_{major:02X}"
            ident = next((m for m in tcb_info.get("tdxModuleIdentities") or []
                          if str(m.get("id", "")).upper() == name), None)
            if ident is None:
                result.add("tdx.tcb.module", False, f"TCB info has no TDX module identity {name}", name, None)
                return
            level = next((lv for lv in ident.get("tcbLevels") or [] if svn >= int((lv.get("tcb") or {})["isvsvn"])),
                         None)
            status = "no level matches" if level is None else str(level.get("tcbStatus"))
        mrsigner = bytes.fromhex(str(ident["mrsigner"]))
        attributes = bytes.fromhex(str(ident["attributes"]))
        mask = bytes.fromhex(str(ident.get("attributesMask", "ff" * len(attributes))))
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        result.add("tdx.tcb.module", False, f"TCB info's TDX module identity unreadable: {exc!r}")
        return
    seam_attrs = body.seam_attributes.to_bytes(8, "little")
    same_attrs = len(attributes) == len(mask) == 8 and all(
        a & m == e & m for a, e, m in zip(seam_attrs, attributes, mask, strict=True))
    result.add("tdx.tcb.module", body.mrsignerseam == mrsigner and same_attrs,
               f"TDX module {name} (SVN {svn}): MRSIGNERSEAM and SEAM attributes as Intel lists them",
               {"mrsigner": mrsigner.hex(), "attributes": attributes.hex()},
               {"mrsigner": body.mrsignerseam.hex(), "attributes": seam_attrs.hex()})
    if status is not None:
        result.add("tdx.tcb.module.status", status in ACCEPTABLE | ACCEPTABLE_WITH_NOTE,
                   f"TDX module {name} SVN {svn}: {status}", "UpToDate", status)


def _qe_identity(result: Result, ident: dict[str, Any], qe: bytes) -> None:
    """The QE report (SGX report body) against the identity: MRSIGNER, ISVPRODID, masked MISCSELECT and
    ATTRIBUTES, and the ISVSVN's TCB level."""
    try:
        mrsigner = bytes.fromhex(str(ident["mrsigner"]))
        misc, misc_mask = int(str(ident["miscselect"]), 16), int(str(ident["miscselectMask"]), 16)
        attrs, attrs_mask = bytes.fromhex(str(ident["attributes"])), bytes.fromhex(str(ident["attributesMask"]))
        prodid = int(ident["isvprodid"])
        levels = list(ident.get("tcbLevels") or [])
    except (KeyError, ValueError, TypeError) as exc:
        result.add("tdx.qe_identity", False, f"QE identity unreadable: {exc}")
        return
    report_misc = int.from_bytes(qe[16:20], "little")
    report_attrs = qe[48:64]
    masked = bytes(a & m for a, m in zip(report_attrs, attrs_mask, strict=False))
    same = (qe[128:160] == mrsigner and int.from_bytes(qe[256:258], "little") == prodid
            and report_misc & misc_mask == misc and masked == attrs[: len(masked)])
    if not result.add("tdx.qe_identity", same, "QE is Intel's TD quoting enclave (MRSIGNER, ISVPRODID, masks)",
                      mrsigner.hex(), qe[128:160].hex()):
        return
    isvsvn = int.from_bytes(qe[258:260], "little")
    status = next((str(lv.get("tcbStatus")) for lv in levels if isvsvn >= int((lv.get("tcb") or {}).get("isvsvn", 0))),
                  None)
    result.add("tdx.qe_identity.tcb", status == "UpToDate", f"QE ISVSVN {isvsvn}: {status or 'no level matches'}",
               "UpToDate", status)
