"""verify(): evidence + reference values + initdata + nonce -> Result. The CLI and aTLS clients use it."""

from __future__ import annotations

import datetime
import struct
from collections.abc import Iterable
from typing import Any

from agent.errors import ReportError
from agent.evidence import MAX_NONCE, bind_report_data
from verifier.az_snp_vtpm import loads as az_loads
from verifier.az_snp_vtpm import verify_az_snp_vtpm
from verifier.claims import Result
from verifier.refs import validate
from verifier.snp import verify_snp
from verifier.tdx import verify_tdx
from verifier.trust import SnpAnchor, amd_anchors, intel_root, sim_anchor

# Intel TDX DCAP Quoting Library API, "Quote Header": version u16 at 0 (4; 5 for the v5 quote), attestation
# key type u16 at 2 (2 ECDSA-256-with-P-256, 3 ECDSA-384-with-P-384), TEE type u32 at 4 (0x81 TDX, 0 SGX).
QUOTE_VERSIONS = (3, 4, 5)  # 3 is SGX's; the TDX parser then names what is wrong with it
QUOTE_KEY_TYPES = (2, 3)
# AMD SEV-SNP ABI (56860), "ATTESTATION_REPORT Structure": VERSION u32 at 0x00 (2, 3, 5 so far). Its upper
# half is zero, where a quote has its attestation key type, so the two headers cannot be confused.
SNP_MAX_VERSION = 0xFF


def evidence_kind(data: bytes) -> str:
    """``snp`` or ``tdx-quote``, decided by the format's own header, never by the size.

    A short or long SNP report must reach the SNP parser (which says what is wrong with its length), not be
    called a TDX quote of some odd version; anything that is neither format is bad input.
    """
    if len(data) >= 8:
        version, key_type = struct.unpack_from("<HH", data, 0)
        if version in QUOTE_VERSIONS and key_type in QUOTE_KEY_TYPES:
            return "tdx-quote"
    if len(data) >= 4 and 1 <= int.from_bytes(data[:4], "little") <= SNP_MAX_VERSION:
        return "snp"
    raise ReportError(f"{len(data)} bytes that are neither an SNP ATTESTATION_REPORT (VERSION u32 at 0: 2, 3, 5) "
                      "nor a TDX quote (version 4 or 5, key type 2 or 3, TEE type 0x81): name it with --type")


def _sim(path: str) -> SnpAnchor:
    """The sim anchor, refused as bad input when its ARK does not parse (it would only ever fail sim evidence)."""
    from verifier.x509check import load_certificate

    anchor = sim_anchor(path)
    load_certificate(anchor.ark_pem, f"sim ARK in {path}")
    return anchor


def verify(kind: str, report: bytes, aux: bytes, reference_values: Any, *,
           initdata_digest: bytes | None = None, nonce: bytes | None = None, public_key: bytes | None = None,
           trust_sim: str | None = None, tdx_root_pem: bytes | None = None, tee: str = "",
           collateral: Any = None, vcek_pem: bytes | None = None, at: datetime.datetime | None = None,
           crls: Iterable[Any] = (), cc_eventlog: bytes | None = None) -> Result:
    """Check one piece of evidence; ``initdata_digest`` is the raw digest (padded/truncated per TEE here).

    ``reference_values`` is validated against verifier/refs.py's schema first (ReferenceValuesError names the
    JSON path that does not fit), so the checks read only the types they were promised. ``vcek_pem`` is the
    SNP signing key's certificate (PEM or DER, as AMD's KDS serves it) for evidence whose auxblob carries
    none; without an ASK in the evidence the shipped one for the product is used. ``trust_sim`` adds the sim
    root to AMD's anchors (a fleet may verify both); only evidence that chains to it is SIMULATED. ``at`` is
    the moment certificates and collateral are judged at (None: now); ``crls`` are X.509 CRLs to apply.

    Kind ``az-snp-vtpm``: ``report`` is Azure vTPM evidence, the JSON document Trustee's KBS takes (its VCEK
    inside; ``aux`` and ``vcek_pem`` unused). The quote's extraData must be the nonce itself, or with
    ``public_key`` SHA-512(key || nonce) as for SNP; the initdata digest (SHA-256) is checked in PCR 8.

    ``cc_eventlog`` (kind ``tdx-quote``): the guest's CC event log area, replayed against the quote's RTMRs
    (verifier/ccel.py); None when the guest sent none (``tdx.ccel`` is then skipped).
    """
    refs = validate(reference_values)
    if nonce is not None and not 1 <= len(nonce) <= MAX_NONCE:
        raise ReportError(f"the nonce is {len(nonce)} bytes; evidence binds 1 to {MAX_NONCE}")
    report_data = bind_report_data(nonce, public_key) if nonce is not None else None
    crls = list(crls)
    if kind == "snp":
        anchors: list[SnpAnchor] = amd_anchors() + ([_sim(trust_sim)] if trust_sim else [])
        result = Result("snp")
        if tee == "sim" and not trust_sim:
            result.add("tee.simulated", False, "sim evidence is accepted only with --trust-sim")
            return result
        host = None
        if initdata_digest is not None:
            host = (initdata_digest + bytes(32))[:32]
        verify_snp(result, report, aux, anchors, refs.get("snp", {}), host, report_data,
                   vcek_pem=vcek_pem, at=at, crls=crls)
        if result.simulated:
            result.add("tee.simulated", True, "evidence from the sim TEE, trusted because --trust-sim was given")
        return result
    if kind == "az-snp-vtpm":
        result = Result("az-snp-vtpm")
        expected = report_data if public_key else nonce
        verify_az_snp_vtpm(result, az_loads(report), refs, nonce=expected, initdata_digest=initdata_digest,
                           anchors=amd_anchors() + ([_sim(trust_sim)] if trust_sim else []), at=at, crls=crls)
        if result.simulated:
            result.add("tee.simulated", True, "evidence under the sim chain, trusted because --trust-sim was given")
        return result
    if kind in ("tdx-quote",):
        result = Result("tdx")
        mrconfig = None if initdata_digest is None else (initdata_digest + bytes(48))[:48]
        from agent.tee.tdx_report import trim_padding

        verify_tdx(result, trim_padding(report), tdx_root_pem or intel_root(), refs.get("tdx", {}),
                   mrconfig, report_data, collateral, at=at, crls=crls, cc_eventlog=cc_eventlog)
        return result
    if kind == "tdx-report":
        result = Result("tdx")
        result.add("tdx.quote.format", False, "a TDREPORT is only locally verifiable; ask the agent for a quote")
        return result
    raise ReportError(f"unknown evidence kind {kind!r}")
