"""Azure SEV-SNP vTPM evidence ("az-snp-vtpm", as Trustee's KBS takes it): a TPM quote vouched for by SNP.

An Azure confidential VM's guest sees no SNP device, only a vTPM run by the paravisor (HCL) at VMPL 0. The
evidence chains three things, each a claim here:

1. the SNP report inside the HCL report is genuine (AMD ARK -> ASK -> VCEK -> report: verifier/snp.py, the
   ``snp.*`` claims) and its REPORT_DATA is SHA-256(runtime data) then 32 zero bytes (``az.hcl.report_data``);
2. the runtime data names the vTPM's attestation key (AK), which signed the TPM quote
   (``az.tpm.quote.signature``);
3. the quote's extraData is the relying party's nonce (``az.tpm.quote.nonce``; evidence v2 also repeats it at
   the start of the runtime data's "user-data", ``az.hcl.user_data``), its pcrDigest covers the PCR values
   the evidence lists (``az.tpm.pcr_digest``), which may then be compared with reference values
   (``az.tpm.pcrs``) and with the initdata, which a CoCo guest extends into PCR 8 once:
   PCR8 = SHA-256(32 zero bytes || initdata digest) (``az.tpm.pcr8.initdata``).

These are the checks of trustee ``deps/verifier/src/az_snp_vtpm/mod.rs`` (commit 78962cd4); the evidence
shapes are its ``compat.rs``: v0 ``{"quote": {"signature", "message", "pcrs"} as byte arrays, "report": byte
array, "vcek": PEM}``, v1 and v2 ``{"version", "tpm_quote": {"signature": hex, "message": hex, "pcrs": [hex]},
"hcl_report": base64url, "vcek": base64url DER}``. Unknown keys are refused here (serde ignores them), so a
field cocoon does not check cannot ride along unnoticed. Trustee ignores HOST_DATA for this TEE; so does
this module (the host, not the guest owner, sets it on Azure).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.errors import ReportError
from verifier import hcl, strictjson, tpm_quote
from verifier.claims import NO_INITDATA, NO_NONCE, Result
from verifier.snp import verify_snp
from verifier.trust import SnpAnchor

VERSIONS = (0, 1, 2)
INITDATA_PCR = 8
MAX_FIELD = 1 << 16  # bytes: a quote is ~160, a signature 256, an HCL report 2600, a VCEK ~1400
_KEYS = {0: {"quote", "report", "vcek"}, 1: {"version", "tpm_quote", "hcl_report", "vcek"},
         2: {"version", "tpm_quote", "hcl_report", "vcek"}}
_QUOTE_KEYS = {"signature", "message", "pcrs"}
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


@dataclass(frozen=True)
class Evidence:
    version: int
    signature: bytes
    message: bytes
    pcrs: tuple[bytes, ...]  # the 24 SHA-256 PCR values, by index
    hcl_report: bytes
    vcek: bytes  # PEM (v0) or DER (v1, v2)


def loads(data: bytes) -> dict[str, Any]:
    """The evidence JSON, read with verifier.strictjson (a repeated key is an error, not a choice)."""
    try:
        doc = strictjson.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ReportError(f"az-snp-vtpm evidence is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ReportError("az-snp-vtpm evidence is not a JSON object")
    return doc


def _hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * MAX_FIELD or not _HEX.fullmatch(value):
        raise ReportError(f"az-snp-vtpm evidence: {what} is not hex")
    return bytes.fromhex(value)


def _b64url(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * MAX_FIELD or not _B64URL.fullmatch(value):
        raise ReportError(f"az-snp-vtpm evidence: {what} is not base64url")
    body = value.rstrip("=")
    if len(body) % 4 == 1 or (value != body and len(value) % 4):
        raise ReportError(f"az-snp-vtpm evidence: {what} is not base64url (bad length or padding)")
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def _byte_array(value: Any, what: str) -> bytes:
    if not isinstance(value, list) or len(value) > MAX_FIELD or \
            not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value):
        raise ReportError(f"az-snp-vtpm evidence: {what} is not an array of bytes")
    return bytes(value)


def _object(value: Any, keys: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != keys:
        got = ", ".join(sorted(strictjson.name(str(k)) for k in value)) if isinstance(value, dict) else "no object"
        raise ReportError(f"az-snp-vtpm evidence: {what} must have exactly {', '.join(sorted(keys))} (got {got})")
    return value


def parse(doc: dict[str, Any]) -> Evidence:
    """The evidence's fields as bytes, by version (no "version": v0); ReportError for any other shape."""
    if not isinstance(doc, dict):
        raise ReportError("az-snp-vtpm evidence is not a JSON object")
    version = doc.get("version", 0)
    explicit_zero = "version" in doc and version == 0
    if not isinstance(version, int) or isinstance(version, bool) or version not in VERSIONS or explicit_zero:
        raise ReportError(f"az-snp-vtpm evidence version {strictjson.name(str(version))[:20]} is not 1 or 2 "
                          "(or absent, v0)")
    _object(doc, _KEYS[version], f"v{version} evidence")
    if version == 0:
        quote = _object(doc["quote"], _QUOTE_KEYS, "quote")
        decode = _byte_array
        report = _byte_array(doc["report"], "report")
        vcek = doc["vcek"]
        if not isinstance(vcek, str) or len(vcek) > 2 * MAX_FIELD or not vcek.isascii():
            raise ReportError("az-snp-vtpm evidence: vcek is not a PEM string")
        vcek_bytes = vcek.encode()
    else:
        quote = _object(doc["tpm_quote"], _QUOTE_KEYS, "tpm_quote")
        decode = _hex
        report = _b64url(doc["hcl_report"], "hcl_report")
        vcek_bytes = _b64url(doc["vcek"], "vcek")
    pcrs = quote["pcrs"]
    if not isinstance(pcrs, list) or len(pcrs) != tpm_quote.PCR_COUNT:
        raise ReportError(f"az-snp-vtpm evidence: pcrs must list the {tpm_quote.PCR_COUNT} SHA-256 PCRs")
    values = tuple(decode(p, f"pcrs[{i}]") for i, p in enumerate(pcrs))
    if any(len(v) != 32 for v in values):
        raise ReportError("az-snp-vtpm evidence: a PCR value is not 32 bytes (SHA-256)")
    return Evidence(version, decode(quote["signature"], "signature"), decode(quote["message"], "message"), values,
                    report, vcek_bytes)


def initdata_pcr(initdata_digest: bytes) -> bytes:
    """PCR 8 of a CoCo guest that extended it once with its initdata digest (trustee's verify_init_data)."""
    return tpm_quote.extend(bytes(32), initdata_digest)


def verify_az_snp_vtpm(result: Result, evidence: dict[str, Any], refs: dict[str, Any], *, nonce: bytes | None,
                       initdata_digest: bytes | None, anchors: list[SnpAnchor],
                       at: datetime.datetime | None = None, crls: Sequence[Any] = ()) -> None:
    """Every claim for one az-snp-vtpm evidence object; ``refs`` is the validated reference-values document
    (its "snp" part judges the SNP report, its "tpm" part the PCRs). ``nonce`` is what the quote's extraData
    must be, byte for byte (Trustee's KBS puts its report_data digest there). Malformed evidence raises
    ReportError before any claim is added; what parses is judged claim by claim."""
    ev = parse(evidence)
    report = hcl.parse(ev.hcl_report)
    runtime = hcl.runtime_data(report.var_data)
    quote = tpm_quote.parse(ev.message)

    try:
        tpm_quote.verify_signature(ev.message, ev.signature, runtime.ak)
        result.add("az.tpm.quote.signature", True, f"RSASSA-PKCS1-v1_5/SHA-256 by the HCL's AK "
                                                   f"(RSA-{runtime.ak.key_size})")
    except ReportError as exc:
        result.add("az.tpm.quote.signature", False, str(exc))
    result.bound("az.tpm.quote.nonce", nonce, quote.extra_data, "the quote's extraData is the nonce", NO_NONCE)
    _user_data(result, ev.version, runtime.user_data, nonce)

    selected = {i for alg, indices in quote.selection if alg == tpm_quote.TPM_ALG_SHA256 for i in indices}
    try:
        digest = tpm_quote.pcr_digest(quote, list(ev.pcrs))
        result.add("az.tpm.pcr_digest", digest == quote.pcr_digest, f"SHA-256 of the {len(selected)} selected PCRs",
                   quote.pcr_digest.hex(), digest.hex())
    except ReportError as exc:
        result.add("az.tpm.pcr_digest", False, str(exc))
    _pcr_refs(result, ev.pcrs, selected, refs.get("tpm", {}).get("pcrs", {}))
    _initdata(result, ev.pcrs, selected, initdata_digest)

    bound = hashlib.sha256(report.var_data).digest() + bytes(32)
    verify_snp(result, report.snp_report, b"", anchors, refs.get("snp", {}), None, bound, vcek_pem=ev.vcek, at=at,
               crls=crls, report_data_claim=("az.hcl.report_data",
                                             "SHA-256 of the HCL runtime data (holding the AK), then 32 zero bytes"))
    for claim in result.claims:
        if claim.name == "snp.host_data":  # verify_snp's words would say no initdata was given
            claim.detail = "not checked: on Azure the host sets HOST_DATA; initdata is bound in PCR 8"


def _user_data(result: Result, version: int, user_data: bytes | None, nonce: bytes | None) -> None:
    """Evidence v2 puts the nonce at the start of the runtime data's user-data too (trustee verify_user_data);
    earlier versions leave it zero, so the claim is skipped for them."""
    if version < 2:
        result.skip("az.hcl.user_data", f"evidence v{version} does not repeat the nonce in the HCL user-data")
    elif nonce is None:
        result.skip("az.hcl.user_data", NO_NONCE)
    else:
        prefix = (user_data or b"")[:len(nonce)]
        result.add("az.hcl.user_data", prefix == nonce, "the HCL user-data starts with the nonce", nonce.hex(),
                   None if user_data is None else user_data.hex())


def _pcr_refs(result: Result, pcrs: tuple[bytes, ...], selected: set[int], allowed: dict[str, list[str]]) -> None:
    """Each PCR the reference values name must hold one of its listed values and be covered by the quote."""
    if not allowed:
        result.skip("az.tpm.pcrs", "reference values name no PCR")
        return
    wrong: dict[str, str] = {}
    for name, values in sorted(allowed.items()):
        index = int(name[3:])
        if index not in selected:
            wrong[name] = "not in the quote"
        elif pcrs[index].hex() not in values:
            wrong[name] = pcrs[index].hex()
    result.add("az.tpm.pcrs", not wrong, f"{len(allowed)} PCR(s) hold a reference value" if not wrong else
               f"{len(wrong)} of {len(allowed)} PCR(s) differ", {k: allowed[k] for k in wrong} or None, wrong or None)


def _initdata(result: Result, pcrs: tuple[bytes, ...], selected: set[int], digest: bytes | None) -> None:
    if digest is None:
        result.skip("az.tpm.pcr8.initdata", NO_INITDATA)
    elif len(digest) != 32:
        result.add("az.tpm.pcr8.initdata", False, f"the initdata digest is {len(digest)} bytes; PCR 8 of a SHA-256 "
                                                  "bank binds a SHA-256 digest (32 bytes)")
    elif INITDATA_PCR not in selected:
        result.add("az.tpm.pcr8.initdata", False, "the quote does not cover PCR 8")
    else:
        expected = initdata_pcr(digest)
        result.add("az.tpm.pcr8.initdata", pcrs[INITDATA_PCR] == expected,
                   "PCR 8 = SHA-256(32 zero bytes || initdata digest)", expected.hex(), pcrs[INITDATA_PCR].hex())
