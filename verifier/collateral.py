"""TDX collateral from files: Intel PCS TCB info and QE identity, checked offline against a quote.

Inputs are what Intel's PCS v4 API returns, saved by the relying party:
`GET /tdx/certification/v4/tcb?fmspc=...` (body `{"tcbInfo": {...}, "signature": hex}`),
`GET /tdx/certification/v4/qe/identity` (body `{"enclaveIdentity": {...}, "signature": hex}`),
and the `TCB-Info-Issuer-Chain` header (URL-decoded PEM: TCB signing cert, root). The signature
is ECDSA P-256, r||s, over the exact bytes of the signed object as the body carries them. The body
is read strictly (one JSON object with exactly its two members, no duplicate key at any depth, no
NaN, nothing after it), the signed member's value is taken as its byte span, the signature is checked
over those bytes, and the object judged is parsed from the same bytes: nothing beside, inside or after
the signed text (a second ``tcbInfo``, one spelled ``\u0074cbInfo``, a nested copy) can be judged instead.
Signed fields are read by type (an SVN is a non-negative integer, never a default), every level before
any is matched. Freshness (issueDate..nextUpdate) and the issuer chain are judged at one moment: now,
or the ``at`` an auditor names.

TCB level selection follows Intel's DCAP quote verification: the first level (levels are
ordered newest first) whose SGX components and PCESVN are at most the PCK certificate's, and
whose TDX components are at most the TD report's TEE_TCB_SVN (from index 2 when the TDX module's
major version, TEE_TCB_SVN[1], is non-zero: the first two then identify the module).
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.errors import ReportError
from verifier import strictjson
from verifier.claims import Result
from verifier.intel_chain import chain_revocation, chain_validity, ecdsa_signature, ecdsa_verify, walk_chain
from verifier.x509check import moment

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
    """The signed objects' exact bytes and signatures; the objects judged are parsed from those bytes."""

    tcb_info_text: bytes
    tcb_info_sig: bytes
    qe_identity_text: bytes
    qe_identity_sig: bytes
    issuer_chain_pem: bytes

    @property
    def tcb_info(self) -> dict[str, Any]:
        return strict_object(self.tcb_info_text, "TCB info")

    @property
    def qe_identity(self) -> dict[str, Any]:
        return strict_object(self.qe_identity_text, "QE identity")


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
# Intel PCS v4 bodies are one JSON object with exactly these two members (the API spec's response
# schemas for /tdx/certification/v4/tcb and /tdx/certification/v4/qe/identity).
SIGNATURE_KEY = "signature"
_SIGNATURE_HEX = re.compile(r"[0-9a-fA-F]{128}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_JSON_WS = " \t\n\r"  # RFC 8259 section 2: the only insignificant whitespace


# Strict: a repeated key anywhere (whatever its escaping, as keys compare decoded) and NaN/Infinity fail.
_DECODER = strictjson.DECODER


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _JSON_WS:
        i += 1
    return i


def _members(text: str, what: str) -> dict[str, tuple[int, int]]:
    """The outer object's members as key -> (start, end) of the value's text; every value parsed strictly.

    A walk over the one top-level object rather than a search for a key's spelling, so the span taken for
    ``tcbInfo`` is the value that member has, and nothing before, beside or after the object can supply it.
    """
    i = _skip_ws(text, 0)
    if text[i : i + 1] != "{":
        raise CollateralError(f"{what}: the body is not one JSON object (starts with {text[i : i + 1]!r})")
    spans: dict[str, tuple[int, int]] = {}
    i = _skip_ws(text, i + 1)
    if text[i : i + 1] == "}":
        i += 1
    else:
        while True:
            if text[i : i + 1] != '"':
                raise CollateralError(f"{what}: expected a member name at character {i}")
            key, i = json.decoder.scanstring(text, i + 1, True)  # type: ignore[attr-defined]
            i = _skip_ws(text, i)
            if text[i : i + 1] != ":":
                raise CollateralError(f"{what}: expected ':' at character {i}")
            start = _skip_ws(text, i + 1)
            _, end = _DECODER.raw_decode(text, start)
            if key in spans:
                raise CollateralError(f"{what}: duplicate key {key!r}")
            spans[key] = (start, end)
            i = _skip_ws(text, end)
            if text[i : i + 1] == ",":
                i = _skip_ws(text, i + 1)
                continue
            if text[i : i + 1] == "}":
                i += 1
                break
            raise CollateralError(f"{what}: expected ',' or '}}' at character {i}")
    if _skip_ws(text, i) != len(text):
        raise CollateralError(f"{what}: data after the JSON object at character {i}")
    return spans


def strict_object(data: bytes, what: str) -> dict[str, Any]:
    """One JSON object from UTF-8 bytes, duplicate keys (at any depth) and NaN refused."""
    try:
        value = _DECODER.decode(data.decode("utf-8", errors="strict"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CollateralError(f"{what}: not strict JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CollateralError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def _signed_object(body: bytes, key: str, what: str) -> tuple[bytes, bytes]:
    """(exact bytes of the signed object, 64-byte r||s) from a PCS body ``{"<key>": {...}, "signature": hex}``.

    The signature is verified over these bytes and the object judged is parsed from the same bytes, so what
    is judged is exactly what Intel signed.
    """
    if not isinstance(body, bytes):
        raise CollateralError(f"{what}: expected bytes, got {type(body).__name__}")
    try:
        text = body.decode("utf-8", errors="strict")  # a BOM is not JSON (RFC 8259 8.1): it fails as text
        spans = _members(text, what)
    except CollateralError:
        raise
    except (ValueError, RecursionError) as exc:
        raise CollateralError(f"{what}: not strict JSON: {exc}") from None
    if set(spans) != {key, SIGNATURE_KEY}:
        raise CollateralError(f"{what}: expected exactly {{\"{key}\": {{...}}, \"{SIGNATURE_KEY}\": \"hex\"}}, "
                              f"got members {sorted(spans)}")
    start, end = spans[key]
    signed = text[start:end].encode("utf-8")  # strict decoding makes this the body's own bytes
    strict_object(signed, f"{what}: {key}")
    sig_text = _DECODER.decode(text[slice(*spans[SIGNATURE_KEY])])
    if not isinstance(sig_text, str) or not _SIGNATURE_HEX.fullmatch(sig_text):
        raise CollateralError(f"{what}: signature must be 128 hex digits (ECDSA P-256 r||s)")
    return signed, bytes.fromhex(sig_text)


def load(tcb_info: bytes, qe_identity: bytes, issuer_chain_pem: bytes) -> Collateral:
    t_text, t_sig = _signed_object(tcb_info, "tcbInfo", "TCB info")
    q_text, q_sig = _signed_object(qe_identity, "enclaveIdentity", "QE identity")
    return Collateral(t_text, t_sig, q_text, q_sig, issuer_chain_pem)


def _when(value: object, what: str) -> datetime.datetime:
    """An ISO 8601 time with its zone (Intel writes ``...Z``); a zoneless one is not a moment."""
    try:
        if not isinstance(value, str):
            raise ValueError
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CollateralError(f"{what} is not an ISO 8601 time: {value!r}") from None
    if when.tzinfo is None:
        raise CollateralError(f"{what} has no time zone: {value!r}")
    return when


# --- strict field readers: signed content of the wrong type is unreadable, never a default ------------
def _get(obj: object, key: str, what: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise CollateralError(f"{what} lacks {key!r}")
    return obj[key]


def _int(obj: object, key: str, what: str) -> int:
    value = _get(obj, key, what)
    if type(value) is not int or value < 0:
        raise CollateralError(f"{what}.{key} is not a non-negative integer: {value!r}")
    return value


def _str(obj: object, key: str, what: str) -> str:
    value = _get(obj, key, what)
    if not isinstance(value, str):
        raise CollateralError(f"{what}.{key} is not a string: {value!r}")
    return value


def _list(obj: object, key: str, what: str) -> list[Any]:
    value = _get(obj, key, what)
    if not isinstance(value, list):
        raise CollateralError(f"{what}.{key} is not a list")
    return value


def _hex(obj: object, key: str, what: str, size: int) -> bytes:
    value = _str(obj, key, what)
    if len(value) != 2 * size or not _HEX.fullmatch(value):
        raise CollateralError(f"{what}.{key} is not {size} bytes of hex: {value!r}")
    return bytes.fromhex(value)


def _tcb_levels(tcb_info: dict[str, Any]) -> list[tuple[list[int], int, list[int], str]]:
    """(sgx svns, pcesvn, tdx svns, tcbStatus) of every level, all read before any is matched: a document
    with one malformed level is malformed, whichever level the platform happens to reach."""
    out = []
    for n, level in enumerate(_list(tcb_info, "tcbLevels", "TCB info")):
        what = f"TCB info tcbLevels[{n}]"
        tcb = _get(level, "tcb", what)
        sgx = [_int(c, "svn", f"{what}.tcb.sgxtcbcomponents") for c in _list(tcb, "sgxtcbcomponents", what)]
        tdx = [_int(c, "svn", f"{what}.tcb.tdxtcbcomponents") for c in _list(tcb, "tdxtcbcomponents", what)]
        if len(sgx) != 16 or len(tdx) != 16:
            raise CollateralError(f"{what} lacks 16 sgxtcbcomponents / tdxtcbcomponents")
        out.append((sgx, _int(tcb, "pcesvn", what), tdx, _str(level, "tcbStatus", what)))
    return out


def _tdx_level(tcb_info: dict[str, Any], pck: PckTcb, tee_tcb_svn: bytes) -> tuple[int, str] | None:
    """(index, tcbStatus) of the first level (newest first) the platform reaches."""
    start = 2 if tee_tcb_svn[1] > 0 else 0
    for n, (sgx, pcesvn, tdx, status) in enumerate(_tcb_levels(tcb_info)):
        if all(p >= s for p, s in zip(pck.sgx_svns, sgx, strict=True)) and pck.pcesvn >= pcesvn \
                and all(tee_tcb_svn[i] >= tdx[i] for i in range(start, 16)):
            return n, status
    return None


def check(result: Result, c: Collateral, trusted_root: bytes, pck_cert: Any, qe_report: bytes, body: Any,
          at: datetime.datetime | None = None, *, crls: Sequence[Any] = ()) -> None:
    """Claims tdx.collateral.* and tdx.tcb / tdx.qe_identity for one quote (``body``: its TD report), at ``at``."""
    if not check_documents(result, c, trusted_root, at, crls=crls):
        return
    try:
        pck = pck_tcb(pck_cert)
    except CollateralError as exc:
        result.add("tdx.collateral.format", False, str(exc))
        return
    tcb_info = c.tcb_info
    try:
        fmspc = _hex(tcb_info, "fmspc", "TCB info", 6).hex()
    except CollateralError as exc:
        result.add("tdx.tcb.fmspc", False, str(exc))
        return
    if not result.add("tdx.tcb.fmspc", fmspc == pck.fmspc.hex(), "TCB info is for this platform's FMSPC",
                      pck.fmspc.hex(), fmspc):
        return
    try:
        level = _tdx_level(tcb_info, pck, body.tee_tcb_svn)
    except CollateralError as exc:
        result.add("tdx.tcb.status", False, f"TCB info unreadable: {exc}")
        return
    status = None if level is None else level[1]
    detail = "no TCB level matches the PCK and TEE_TCB_SVN" if status is None else f"TCB level {status}"
    if status in ACCEPTABLE_WITH_NOTE:
        detail += " (acceptable; advisories apply)"
    result.add("tdx.tcb.status", status in ACCEPTABLE | ACCEPTABLE_WITH_NOTE, detail, "UpToDate", status)
    tdx_module(result, tcb_info, body)
    _qe_identity(result, c.qe_identity, qe_report)


# PCS v4: a TDX TCB info says "id": "TDX" and the TD quoting enclave's identity "id": "TD_QE"; Intel signs
# SGX TCB infos and the SGX QE's identity with the same key, so the kind must be checked, not assumed.
KINDS = {"tcb_info": "TDX", "qe_identity": "TD_QE"}


def check_documents(result: Result, c: Collateral, trusted_root: bytes, at: datetime.datetime | None = None, *,
                    crls: Sequence[Any] = ()) -> bool:
    """The collateral itself: the issuer chain (signatures, validity at ``at``, CRLs), both signatures, and
    each document current at ``at`` (issued by then, not past its nextUpdate). True if all of it holds."""
    when = moment(at)
    try:
        certs = walk_chain(c.issuer_chain_pem, trusted_root, what="TCB signing chain", minimum=2)
    except ReportError as exc:
        result.add("tdx.collateral.chain", False, str(exc))
        return False
    if len(certs) != 2:
        # Intel PCS API v4, TCB-Info-Issuer-Chain / SGX-Enclave-Identity-Issuer-Chain: the TCB signing
        # certificate and the Root CA, nothing between. A longer chain is how a PCK key (issued by a PCK CA)
        # would sign a TCB info calling its own platform UpToDate.
        result.add("tdx.collateral.chain", False, f"the chain has {len(certs)} certificates: the TCB signing "
                   "certificate must be issued by the root itself (TCB signing certificate, Intel SGX Root CA)")
        return False
    result.add("tdx.collateral.chain", True, "TCB signing certificate <- Intel SGX Root CA")
    roles = ["TCB signing certificate"] + ["intermediate CA"] * (len(certs) - 2) + ["root CA"]
    ok_chain = chain_validity(result, "tdx.collateral.chain.validity", certs, roles, at)
    ok_chain &= chain_revocation(result, "tdx.collateral.chain.revocation", certs, roles, crls, at)
    signer = certs[0].public_key()
    ok_t = result.add("tdx.collateral.tcb_info.signature",
                      ecdsa_verify(signer, ecdsa_signature(c.tcb_info_sig), c.tcb_info_text), "TCB info signed")
    ok_q = result.add("tdx.collateral.qe_identity.signature",
                      ecdsa_verify(signer, ecdsa_signature(c.qe_identity_sig), c.qe_identity_text),
                      "QE identity signed")
    if not (ok_t and ok_q):
        return False
    ok = ok_chain
    try:
        for name, doc in (("tcb_info", c.tcb_info), ("qe_identity", c.qe_identity)):
            kind = _get(doc, "id", name)
            if kind != KINDS[name]:
                raise CollateralError(f"{name} is for {kind!r}, not {KINDS[name]!r}")
            issued = _when(_get(doc, "issueDate", name), f"{name}.issueDate")
            nxt = _when(_get(doc, "nextUpdate", name), f"{name}.nextUpdate")
            current = issued <= when <= nxt
            detail = (f"issued {issued:%Y-%m-%dT%H:%M:%SZ}, next update {nxt:%Y-%m-%dT%H:%M:%SZ}: "
                      + ("current" if current else "not yet issued" if when < issued else "past its nextUpdate")
                      + f" at {when:%Y-%m-%dT%H:%M:%SZ}")
            ok &= result.add(f"tdx.collateral.{name}.fresh", current, detail,
                             f"{issued.isoformat()} .. {nxt.isoformat()}", when.isoformat())
    except CollateralError as exc:
        result.add("tdx.collateral.format", False, str(exc))
        return False
    return bool(ok)


def _identity(obj: object, what: str) -> tuple[bytes, bytes, bytes]:
    """MRSIGNER (48), attributes (8) and attributesMask (8) of a TDX module identity."""
    return _hex(obj, "mrsigner", what, 48), _hex(obj, "attributes", what, 8), _hex(obj, "attributesMask", what, 8)


Module = tuple[bytes, bytes, bytes, list[tuple[int, str]] | None]


def _modules(tcb_info: dict[str, Any]) -> dict[str, Module]:
    """``tdxModule`` (required in a TDX TCB info) and every ``tdxModuleIdentities`` entry by id, each read
    whole (MRSIGNER, attributes, mask, levels) whichever one this quote's module needs."""
    out: dict[str, Module] = {"tdxModule": (*_identity(_get(tcb_info, "tdxModule", "TCB info"), "tdxModule"), None)}
    if "tdxModuleIdentities" in tcb_info:
        for m in _list(tcb_info, "tdxModuleIdentities", "TCB info"):
            key = _str(m, "id", "TCB info tdxModuleIdentities[]").upper()
            if key in out:
                raise CollateralError(f"TCB info lists TDX module identity {key} twice")
            levels = [(_int(_get(lv, "tcb", f"{key}.tcbLevels[{n}]"), "isvsvn", f"{key}.tcbLevels[{n}].tcb"),
                       _str(lv, "tcbStatus", f"{key}.tcbLevels[{n}]"))
                      for n, lv in enumerate(_list(m, "tcbLevels", key))]
            out[key] = (*_identity(m, key), levels)
    return out


def tdx_module(result: Result, tcb_info: dict[str, Any], body: Any) -> None:
    """The TDX module (SEAM) that produced the report, against the TCB info's module identities.

    Intel's QVL (TdxModuleCheck.cpp): TEE_TCB_SVN[1] is the module's major version and [0] its SVN.
    Version 0 is checked against ``tdxModule`` alone; otherwise the identity ``TDX_<major, 2 hex>``
    gives MRSIGNER, attributes (under a mask) and, by the first level whose ``isvsvn`` the SVN
    reaches, the module's TCB status.
    """
    svn, major = body.tee_tcb_svn[0], body.tee_tcb_svn[1]
    name = "tdxModule" if major == 0 else f"TDX_{major:02X}"
    try:
        modules = _modules(tcb_info)
    except CollateralError as exc:
        result.add("tdx.tcb.module", False, f"TCB info's TDX module identity unreadable: {exc}")
        return
    if name not in modules:
        result.add("tdx.tcb.module", False, f"TCB info has no TDX module identity {name}", name, None)
        return
    mrsigner, attributes, mask, levels = modules[name]
    status = None if levels is None else next((st for isvsvn, st in levels if svn >= isvsvn), "no level matches")
    seam_attrs = body.seam_attributes.to_bytes(8, "little")
    same_attrs = all(a & m == e & m for a, e, m in zip(seam_attrs, attributes, mask, strict=True))
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
    what = "QE identity"
    try:
        mrsigner = _hex(ident, "mrsigner", what, 32)
        misc = int.from_bytes(_hex(ident, "miscselect", what, 4), "big")
        misc_mask = int.from_bytes(_hex(ident, "miscselectMask", what, 4), "big")
        attrs, attrs_mask = _hex(ident, "attributes", what, 16), _hex(ident, "attributesMask", what, 16)
        prodid = _int(ident, "isvprodid", what)
        levels = [(_int(_get(lv, "tcb", f"{what} tcbLevels[{n}]"), "isvsvn", f"{what} tcbLevels[{n}].tcb"),
                   _str(lv, "tcbStatus", f"{what} tcbLevels[{n}]"))
                  for n, lv in enumerate(_list(ident, "tcbLevels", what))]
    except CollateralError as exc:
        result.add("tdx.qe_identity", False, f"QE identity unreadable: {exc}")
        return
    report_misc = int.from_bytes(qe[16:20], "little")
    masked = bytes(a & m for a, m in zip(qe[48:64], attrs_mask, strict=True))
    same = (qe[128:160] == mrsigner and int.from_bytes(qe[256:258], "little") == prodid
            and report_misc & misc_mask == misc and masked == attrs)
    if not result.add("tdx.qe_identity", same, "QE is Intel's TD quoting enclave (MRSIGNER, ISVPRODID, masks)",
                      mrsigner.hex(), qe[128:160].hex()):
        return
    isvsvn = int.from_bytes(qe[258:260], "little")
    status = next((st for level_svn, st in levels if isvsvn >= level_svn), None)
    result.add("tdx.qe_identity.tcb", status == "UpToDate", f"QE ISVSVN {isvsvn}: {status or 'no level matches'}",
               "UpToDate", status)
