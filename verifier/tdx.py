"""TDX Quote v4 checks (Intel TDX DCAP Quoting Library API, "ECDSA 256-bit Quote Signature Data").

The chain of trust: Intel SGX Root CA -> PCK chain -> PCK leaf key signs the
Quoting Enclave's report; the QE report's REPORTDATA binds the attestation
key (SHA-256(attestation key || QE auth data), zero-padded to 64 bytes); the
attestation key signs the quote header and TD report body. Then the TD's own
fields: MRTD, RTMRs, MRCONFIGID (initdata digest), attributes (no debug),
REPORTDATA (nonce). Collateral (TCB info, QE identity) is checked when the
relying party gives it as files (verifier/collateral.py; nothing is fetched);
without it the result says it was skipped.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
from collections.abc import Sequence
from typing import Any

from agent.errors import ReportError
from agent.tee import tdx_report
from agent.tee.snp_chain import parsed
from verifier import x509check
from verifier.claims import Result

QE_REPORT_DATA = 320  # offset of REPORTDATA in the 384-byte SGX report body
TD_ATTR_DEBUG = 1


def _ecdsa_p256(raw_sig: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    return encode_dss_signature(int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:64], "big"))


def _p256_key(raw: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw)


def _verify(key: Any, sig_der: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key.verify(sig_der, data, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def _chain(pem: bytes, trusted_root: bytes, what: str = "PCK chain", minimum: int = 2) -> list[Any]:
    """The certificates of a PEM chain (leaf first) each signed by the next, ending in ``trusted_root``.

    Signatures only: when the certificates hold (validity, revocation) is judged by chain_validity and
    chain_revocation, each its own claim, at the moment verification is for."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certs = x509.load_pem_x509_certificates(pem.rstrip(b"\0"))
        root = x509.load_pem_x509_certificate(trusted_root)
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is no ValueError
        raise ReportError(f"{what} is not PEM certificates: {exc}") from None
    if len(certs) < minimum:
        raise ReportError(f"{what} has {len(certs)} certificate(s); expected at least {minimum}, ending in the root")
    der = serialization.Encoding.DER
    for n, cert in enumerate(certs):
        parsed(cert, f"{what}: certificate {n + 1} of {len(certs)}")
    if certs[-1].public_bytes(der) != root.public_bytes(der):
        raise ReportError(f"{what} does not end in the trusted Intel SGX Root CA")
    if _is_ca(certs[0]):  # a PCK or TCB signing certificate; a chain missing its leaf would start at a CA
        raise ReportError(f"{what}: its first certificate, {certs[0].subject.rfc4514_string()}, is a CA, "
                          "not the end-entity certificate that signs")
    for below, (cert, issuer) in enumerate(itertools.pairwise(certs)):
        _may_issue(issuer, below, what)
        try:
            cert.verify_directly_issued_by(issuer)
        except Exception as exc:  # InvalidSignature, ValueError, TypeError
            raise ReportError(f"{what}: {cert.subject.rfc4514_string()} is not signed by "
                              f"{issuer.subject.rfc4514_string()} ({type(exc).__name__})") from None
    return certs


def _is_ca(cert: Any) -> bool:
    from cryptography import x509

    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _may_issue(ca: Any, below: int, what: str) -> None:
    """RFC 5280 6.1.4 (k)-(n): only a CA (basicConstraints cA, keyCertSign if it states a key usage) issues
    certificates, with at most its pathLenConstraint CAs below it. Without this a PCK key, hardware-held but
    extractable on an out-of-date platform (the case TCB status exists for), could issue itself a "PCK
    certificate" naming any FMSPC and SVNs, one level below the genuine one, and be judged UpToDate."""
    from cryptography import x509

    name = ca.subject.rfc4514_string()
    if not _is_ca(ca):
        raise ReportError(f"{what}: {name} is not a CA (no basicConstraints cA) yet issues a certificate")
    limit = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    if limit is not None and below > limit:
        raise ReportError(f"{what}: {name} allows a path length of {limit}, but {below} CA(s) follow it")
    try:
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.key_cert_sign:
        raise ReportError(f"{what}: {name} issues a certificate, but its keyUsage lacks keyCertSign")


def _label(role: str, cert: Any) -> str:
    """``PCK certificate (Intel SGX PCK Certificate)``: a message names the certificate by role and by name."""
    from cryptography.x509.oid import NameOID

    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return f"{role} ({cns[0].value})" if cns else role


def chain_validity(result: Result, claim: str, certs: list[Any], roles: list[str],
                   at: datetime.datetime | None) -> bool:
    """Every certificate of the chain, root included, within its notBefore..notAfter at ``at`` (now if None)."""
    when = x509check.moment(at)
    problems = []
    for role, cert in zip(roles, certs, strict=True):
        try:
            x509check.check_validity(cert, when, _label(role, cert))
        except ReportError as exc:
            problems.append(str(exc))
    stamp = f"{when:%Y-%m-%dT%H:%M:%SZ}" + (" (--at)" if at is not None else " (now)")
    return result.add(claim, not problems, "; ".join(problems) or f"{', '.join(roles)} valid at {stamp}")


def chain_revocation(result: Result, claim: str, certs: list[Any], roles: list[str], crls: Sequence[Any],
                     at: datetime.datetime | None) -> bool:
    """Each certificate against the CRLs its issuer signed (Intel's PCK CRL for the PCK leaf, the Root CA
    CRL for the CAs and the TCB signing certificate). A CRL that names a CA of this chain as its issuer must
    verify under that CA and be current (x509check), or the claim fails; with no such CRL it is skipped."""
    subjects = {cert.subject for cert in certs}
    applicable = [crl for crl in crls if crl.issuer in subjects]
    if not applicable:
        result.skip(claim, "no CRL given: revocation not checked" if not crls else
                    f"none of the {len(crls)} CRL(s) is from a CA of this chain: revocation not checked")
        return True
    problems = []
    for role, cert, issuer in zip(roles, certs, [*certs[1:], certs[-1]], strict=True):  # the root issues itself
        try:
            x509check.check_revocation(cert, issuer, applicable, at, _label(role, cert))
        except ReportError as exc:
            problems.append(str(exc))
    problems = list(dict.fromkeys(problems))
    issuers = sorted({crl.issuer.rfc4514_string() for crl in applicable})
    return result.add(claim, not problems, "; ".join(problems) or
                      f"not revoked: checked against the CRL(s) of {'; '.join(issuers)}")


def verify_tdx(result: Result, quote_bytes: bytes, trusted_root: bytes, refs: dict[str, Any],
               mrconfigid: bytes | None, report_data: bytes | None, collateral: Any = None, *,
               at: datetime.datetime | None = None, crls: Sequence[Any] = ()) -> None:
    """Every claim of one quote. ``at`` is the moment certificates and collateral are judged at (now if None:
    an auditor names a past moment to judge old evidence as it stood then); ``crls`` are X.509 CRLs (Intel's
    PCK CRL, the Root CA CRL; any others are ignored) applied to the PCK chain and the collateral's chain."""
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
        certs = _chain(qe.pck_cert_data, trusted_root)
    except ReportError as exc:
        result.add("tdx.pck_chain", False, str(exc))
        return
    result.add("tdx.pck_chain", True, "PCK <- intermediate <- Intel SGX Root CA")
    pck_cert, pck_key = certs[0], certs[0].public_key()
    roles = ["PCK certificate"] + ["PCK CA"] * (len(certs) - 2) + ["root CA"]
    chain_validity(result, "tdx.pck_chain.validity", certs, roles, at)
    chain_revocation(result, "tdx.pck_chain.revocation", certs, roles, crls, at)
    if not result.add("tdx.qe_report.signature", _verify(pck_key, _ecdsa_p256(qe.qe_report_signature), qe.qe_report),
                      "QE report signed by the PCK key"):
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
    if not result.add("tdx.quote.signature", _verify(att_key, _ecdsa_p256(q.signature), q.signed_bytes),
                      "header + TD report signed by the attestation key"):
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
    if mrconfigid is None:
        result.skip("tdx.mrconfigid", "no initdata given")
    else:
        result.add("tdx.mrconfigid", body.mrconfigid == mrconfigid, "initdata digest", mrconfigid.hex(),
                   body.mrconfigid.hex())
    if report_data is None:
        result.skip("tdx.report_data", "no nonce given: freshness not checked")
    else:
        result.add("tdx.report_data", body.report_data == report_data, "bound to the nonce (and key)",
                   report_data.hex(), body.report_data.hex())
