"""verify(): evidence + reference values + initdata + nonce -> Result. The CLI and aTLS clients use it."""

from __future__ import annotations

from typing import Any

from agent.errors import ReportError
from verifier.claims import Result
from verifier.snp import expected_report_data, verify_snp
from verifier.tdx import verify_tdx
from verifier.trust import SnpAnchor, amd_anchors, intel_root, sim_anchor


def verify(kind: str, report: bytes, aux: bytes, reference_values: dict[str, Any], *,
           initdata_digest: bytes | None = None, nonce: bytes | None = None, public_key: bytes | None = None,
           trust_sim: str | None = None, tdx_root_pem: bytes | None = None, tee: str = "",
           collateral: Any = None, vcek_pem: bytes | None = None) -> Result:
    """Check one piece of evidence; ``initdata_digest`` is the raw digest (padded/truncated per TEE here).

    ``vcek_pem`` is the SNP signing key's certificate (PEM or DER, as AMD's KDS serves it) for evidence
    whose auxblob carries none; without an ASK in the evidence the shipped one for the product is used.
    """
    report_data = expected_report_data(nonce, public_key) if nonce is not None else None
    if kind == "snp":
        anchors: list[SnpAnchor] = [sim_anchor(trust_sim)] if trust_sim else amd_anchors()
        result = Result("snp")
        if tee == "sim" and not trust_sim:
            result.add("tee.simulated", False, "sim evidence is accepted only with --trust-sim")
            return result
        host = None
        if initdata_digest is not None:
            host = (initdata_digest + bytes(32))[:32]
        verify_snp(result, report, aux, anchors, reference_values.get("snp") or {}, host, report_data,
                   vcek_pem=vcek_pem)
        if result.simulated:
            result.add("tee.simulated", True, "evidence from the sim TEE, trusted because --trust-sim was given")
        return result
    if kind in ("tdx-quote",):
        result = Result("tdx")
        mrconfig = None if initdata_digest is None else (initdata_digest + bytes(48))[:48]
        from agent.tee.tdx_report import trim_padding

        verify_tdx(result, trim_padding(report), tdx_root_pem or intel_root(), reference_values.get("tdx") or {},
                   mrconfig, report_data, collateral)
        return result
    if kind == "tdx-report":
        result = Result("tdx")
        result.add("tdx.quote.format", False, "a TDREPORT is only locally verifiable; ask the agent for a quote")
        return result
    raise ReportError(f"unknown evidence kind {kind!r}")
