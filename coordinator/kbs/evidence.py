"""The primary evidence of an attestation, checked by cocoon's verifier: reference values, the signature
chain, REPORT_DATA bound to the session (protocol.report_data) and, when the client sent its initdata, the
platform field that must hold its digest (SNP HOST_DATA, TDX MRCONFIGID).

Formats (trustee deps/verifier, guest-components attesters): ``snp`` is ``{"attestation_report",
"cert_chain"}`` (agent/tee/snp_json.py); ``tdx`` is ``{"quote": base64 of the TD quote, "cc_eventlog": base64 |
null}``; ``az-snp-vtpm`` is Azure's vTPM evidence (verifier/az_snp_vtpm.py: the HCL report binding the
vTPM's key, the TPM quote over the PCRs carrying the binding digest, initdata in PCR 8). Sim evidence (an
SNP report chained to cocoon's sim root) passes only when the broker was started with ``--trust-sim``; the
token then says so (``simulated``) and the default resource policy refuses it.

A TDX ``cc_eventlog`` is replayed against the quote's RTMRs (verifier/ccel.py): a log that is not one, or
that does not replay, is a refusal. Without one (null, or the empty string Trustee also takes for none:
deps/verifier/src/tdx/mod.rs) only the quote is checked, as Trustee does; the token's annotated evidence
says which (``tdx.cc_eventlog_replayed``), so a resource policy can require a replayed log.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from agent.errors import AgentError
from agent.initdata import parse_document
from agent.kbs_client import read_cc_eventlog, read_evidence
from coordinator.kbs.errors import KbsError
from coordinator.kbs.protocol import Attestation, report_data
from verifier.api import verify
from verifier.claims import Result


@dataclasses.dataclass(frozen=True)
class Appraisal:
    """What the verifier found, as the token's annotated evidence carries it."""

    tee: str
    result: Result
    report_data: bytes
    host_data: bytes  # SNP HOST_DATA or TDX MRCONFIGID: the initdata digest the launch bound
    measurement: bytes
    initdata: dict[str, str] | None  # the document's data, when the client sent it and it matched
    cc_eventlog_replayed: bool | None = None  # TDX: whether a CC event log replayed to the RTMRs; else None

    @property
    def ok(self) -> bool:
        return self.result.ok


def appraise(tee: str, att: Attestation, reference_values: Any, *, trust_sim: str | None = None) -> Appraisal:
    """Verify ``att``'s primary evidence for ``tee``; a failed claim is not an error here (the token says
    ``contraindicated`` and no resource is released), malformed evidence is."""
    bound = report_data(att.nonce, att.tee_pubkey, att.additional_evidence)
    replayed: bool | None = None
    document = None
    digest = None
    if att.initdata is not None:
        try:
            document = parse_document(att.initdata.encode(), "init-data")
        except AgentError as exc:
            raise KbsError("RcarAttestFailed", f"init-data: {exc}") from None
        except RecursionError:
            raise KbsError("RcarAttestFailed", "init-data is nested too deeply") from None
        digest = document.digest
    try:
        if tee == "snp":
            _, report, aux = read_evidence("snp", att.primary_evidence)
            result = verify("snp", report, aux, reference_values, initdata_digest=digest, nonce=bound[:48],
                            trust_sim=trust_sim)
            from agent.tee import snp_report

            rep = snp_report.parse(report)
            host, measurement = rep.host_data, rep.measurement
        elif tee == "tdx":
            _, quote, _ = read_evidence("tdx", att.primary_evidence)
            log = _cc_eventlog(att.primary_evidence)
            result = verify("tdx-quote", quote, b"", reference_values, initdata_digest=digest, nonce=bound[:48],
                            cc_eventlog=log)
            from agent.tee.tdx_report import parse_quote, trim_padding

            body = parse_quote(trim_padding(quote)).body
            host, measurement = body.mrconfigid, body.mrtd
            replayed = any(c.name == "tdx.ccel" and c.status == "pass" for c in result.claims)
        elif tee == "az-snp-vtpm":
            from agent.tee import snp_report
            from verifier import az_snp_vtpm, hcl

            doc = att.primary_evidence
            if not isinstance(doc, dict):
                raise KbsError("RcarAttestFailed", "az-snp-vtpm evidence is not an object")
            # the quote's extraData carries the binding digest itself (the vTPM signs it, the HCL report
            # binds the vTPM's key); the initdata digest is checked in PCR 8
            result = verify("az-snp-vtpm", json.dumps(doc).encode(), b"", reference_values,
                            initdata_digest=digest, nonce=bound[:48], trust_sim=trust_sim)
            rep = snp_report.parse(hcl.parse(az_snp_vtpm.parse(doc).hcl_report).snp_report)
            pcr8_ok = any(c.name == "az.tpm.pcr8.initdata" and c.status == "pass" for c in result.claims)
            host, measurement = (digest if digest is not None and pcr8_ok else b""), rep.measurement
        else:
            raise KbsError("RcarAttestFailed", f"TEE {tee!r} is not verified by this broker")
    except AgentError as exc:
        raise KbsError("RcarAttestFailed", f"{tee} evidence: {exc}") from None
    return Appraisal(tee, result, bound, host, measurement, document.data if document is not None else None,
                     replayed)


def _cc_eventlog(doc: Any) -> bytes | None:
    """The log area a ``tdx`` evidence carries (read_evidence has checked the object's keys)."""
    try:
        return read_cc_eventlog(doc)
    except AgentError as exc:
        raise KbsError("RcarAttestFailed", f"tdx evidence: {exc}") from None
