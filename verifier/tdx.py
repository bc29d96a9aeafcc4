"""TDX Quote v4 checks (Intel TDX DCAP Quoting Library API, "ECDSA 256-bit Quote Signature Data").

The chain of trust: Intel SGX Root CA -> PCK chain -> PCK leaf key signs the
Quoting Enclave's report; the QE report's REPORTDATA binds the attestation
key (SHA-256(attestation key || QE auth data), zero-padded to 64 bytes); the
attestation key signs the quote header and TD report body. Then the TD's own
fields: MRTD, RTMRs, MRCONFIGID (initdata digest), attributes (no debug),
REPORTDATA (nonce). Collateral (TCB info, QE identity) is checked when the
relying party gives it as files (verifier/collateral.py; nothing is fetched);
without it the result says it was skipped. The CC event log, when given, must
replay to the quote's RTMRs (verifier/ccel.py): only then do its events say
what the RTMRs hold. Without one, ``tdx.ccel`` is skipped, so a relying party
(a resource policy) can tell a replayed log from none.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from typing import Any

from agent.errors import ReportError
from agent.tee import tdx_report
from verifier import ccel
from verifier.claims import BOUND_TO_NONCE, NO_INITDATA, NO_NONCE, Result
from verifier.intel_chain import chain_revocation, chain_validity, ecdsa_signature, ecdsa_verify, walk_chain

QE_REPORT_DATA = 320  # offset of REPORTDATA in the 384-byte SGX report body
TD_ATTR_DEBUG = 1


def _p256_key(raw: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw)


def verify_tdx(result: Result, quote_bytes: bytes, trusted_root: bytes, refs: dict[str, Any],
               mrconfigid: bytes | None, report_data: bytes | None, collateral: Any = None, *,
               at: datetime.datetime | None = None, crls: Sequence[Any] = (), cc_eventlog: bytes | None = None) -> None:
    """Every claim of one quote. ``at`` is the moment certificates and collateral are judged at (now if None:
    an auditor names a past moment to judge old evidence as it stood then); ``crls`` are X.509 CRLs (Intel's
    PCK CRL, the Root CA CRL; any others are ignored) applied to the PCK chain and the collateral's chain.
    ``cc_eventlog`` is the guest's CCEL log area (None: it sent none)."""
    try:
        q = tdx_report.parse_quote(quote_bytes)
    except ReportError as exc:
        result.add("tdx.quote.format", False, str(exc))
        return
    result.add("tdx.quote.format", True, "Quote v4, ECDSA-256 attestation key")
    qe = q.qe_certification
    if qe is None or qe.pck_cert_type != tdx_report.PCK_CHAIN_CERT_DATA:
        result.add("tdx.pck_chain", False, "quote carries no QE report with a PCK certificate chain")
        return
    try:
        certs = walk_chain(qe.pck_cert_data, trusted_root)
    except ReportError as exc:
        result.add("tdx.pck_chain", False, str(exc))
        return
    result.add("tdx.pck_chain", True, "PCK <- intermediate <- Intel SGX Root CA")
    pck_cert, pck_key = certs[0], certs[0].public_key()
    roles = ["PCK certificate"] + ["PCK CA"] * (len(certs) - 2) + ["root CA"]
    chain_validity(result, "tdx.pck_chain.validity", certs, roles, at)
    chain_revocation(result, "tdx.pck_chain.revocation", certs, roles, crls, at)
    qe_signed = ecdsa_verify(pck_key, ecdsa_signature(qe.qe_report_signature), qe.qe_report)
    if not result.add("tdx.qe_report.signature", qe_signed, "QE report signed by the PCK key"):
        return
    binding = hashlib.sha256(q.attestation_key + qe.qe_auth_data).digest() + bytes(32)
    actual = qe.qe_report[QE_REPORT_DATA : QE_REPORT_DATA + 64]
    if not result.add("tdx.qe_report.binding", actual == binding, "QE report binds the attestation key",
                      binding.hex(), actual.hex()):
        return
    try:
        att_key = _p256_key(q.attestation_key)
    except ValueError:
        result.add("tdx.quote.signature", False, "attestation key is not a P-256 point")
        return
    quote_signed = ecdsa_verify(att_key, ecdsa_signature(q.signature), q.signed_bytes)
    if not result.add("tdx.quote.signature", quote_signed, "header + TD report signed by the attestation key"):
        return
    body = q.body
    if collateral is None:
        result.skip("tdx.collateral", "TCB info / QE identity not checked (no Intel PCS collateral given)")
    else:
        from verifier.collateral import check

        check(result, collateral, trusted_root, pck_cert, qe.qe_report, body, at, crls=crls)
    result.add("tdx.attributes.debug", not body.td_attributes & TD_ATTR_DEBUG, "TD not debuggable", 0,
               body.td_attributes & TD_ATTR_DEBUG)
    mrtds = {v for v in (refs.get("mrtd") or {}).values() if v}
    result.add("tdx.mrtd", body.mrtd.hex() in mrtds, "one of the reference MRTDs", sorted(mrtds), body.mrtd.hex())
    rtmr = refs.get("rtmr")
    if isinstance(rtmr, dict) and not any(rtmr.get(f"rtmr{i}") for i in range(4)):
        result.skip("tdx.rtmr", f"reference values carry no RTMRs: {rtmr.get('unavailable', 'none given')}")
    elif rtmr:
        for i, want in enumerate(rtmr if isinstance(rtmr, list) else [rtmr.get(f"rtmr{i}") for i in range(4)]):
            if want:
                got = getattr(body, f"rtmr{i}").hex()
                wants = [str(w) for w in want] if isinstance(want, list) else [str(want)]
                result.add(f"tdx.rtmr{i}", got in wants, f"RTMR{i} as built" + (
                    f" (one of {len(wants)} candidates)" if len(wants) > 1 else ""), wants if len(wants) > 1 else want,
                    got)
            elif i == 0:
                result.skip("tdx.rtmr0", "no RTMR0 recorded in the reference values (it depends on RAM, ACPI "
                                         "tables and variables: record it with reference-values --rtmr0-eventlog)")
    else:
        result.skip("tdx.rtmr", "reference values carry no RTMRs")
    if refs.get("xfam") is not None:
        result.add("tdx.xfam", body.xfam == int(str(refs["xfam"]), 0), "XFAM as expected", refs["xfam"],
                   hex(body.xfam))
    _replay(result, body, cc_eventlog)
    result.bound("tdx.mrconfigid", mrconfigid, body.mrconfigid, "initdata digest", NO_INITDATA)
    result.bound("tdx.report_data", report_data, body.report_data, BOUND_TO_NONCE, NO_NONCE)


def _replay(result: Result, body: tdx_report.QuoteBody, cc_eventlog: bytes | None) -> None:
    """``tdx.ccel`` (skip: no log; fail: not a log) and, for a log, ``tdx.ccel.rtmrN``: the replay of each
    RTMR against the signed quote's, so a refusal names the register that does not replay."""
    if cc_eventlog is None:
        result.skip("tdx.ccel", "no CC event log given: the RTMRs were not replayed")
        return
    try:
        log = ccel.parse(cc_eventlog)
        replayed = ccel.replay(log)
    except ccel.CcelError as exc:
        result.add("tdx.ccel", False, str(exc))
        return
    result.add("tdx.ccel", True, f"CC event log of {len(log.events)} events, replayed")
    for i, value in enumerate(replayed):
        quoted = getattr(body, f"rtmr{i}")
        result.add(f"tdx.ccel.rtmr{i}", value == quoted, f"RTMR{i} replays from the CC event log" if value == quoted
                   else f"RTMR{i} does not replay from the CC event log", quoted.hex(), value.hex())
