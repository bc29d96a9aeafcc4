"""Intel's PKI for TDX: PEM chains ending in the Intel SGX Root CA, and ECDSA P-256 signatures.

Two chains end in that root: the PCK chain a quote carries (PCK certificate
<- PCK CA <- root; the PCK key signs the Quoting Enclave's report) and the
issuer chain of Intel PCS collateral (TCB signing certificate <- root; it
signs the TCB info and the QE identity). ``verifier.tdx`` walks the first,
``verifier.collateral`` the second, with the same checks: signatures and
CA constraints here (``walk_chain``), validity and revocation each its own
claim (``chain_validity``, ``chain_revocation``, through ``x509check``).
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Sequence
from typing import Any

from agent.errors import ReportError
from verifier import x509check
from verifier.claims import Result


def ecdsa_signature(raw_sig: bytes) -> bytes:
    """Intel's raw 64-byte r || s (big-endian) as the DER signature ``cryptography`` verifies."""
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    return encode_dss_signature(int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:64], "big"))


def ecdsa_verify(key: Any, sig_der: bytes, data: bytes) -> bool:
    """True when ``sig_der`` is ``key``'s ECDSA/SHA-256 signature over ``data``; any failure is False."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key.verify(sig_der, data, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def walk_chain(pem: bytes, trusted_root: bytes, what: str = "PCK chain", minimum: int = 2) -> list[Any]:
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
        x509check.parsed(cert, f"{what}: certificate {n + 1} of {len(certs)}")
    if certs[-1].public_bytes(der) != root.public_bytes(der):
        raise ReportError(f"{what} does not end in the trusted Intel SGX Root CA")
    if is_ca(certs[0]):  # a PCK or TCB signing certificate; a chain missing its leaf would start at a CA
        raise ReportError(f"{what}: its first certificate, {certs[0].subject.rfc4514_string()}, is a CA, "
                          "not the end-entity certificate that signs")
    for below, (cert, issuer) in enumerate(itertools.pairwise(certs)):
        may_issue(issuer, below, what)
        try:
            cert.verify_directly_issued_by(issuer)
        except Exception as exc:  # InvalidSignature, ValueError, TypeError
            raise ReportError(f"{what}: {cert.subject.rfc4514_string()} is not signed by "
                              f"{issuer.subject.rfc4514_string()} ({type(exc).__name__})") from None
    return certs


def is_ca(cert: Any) -> bool:
    from cryptography import x509

    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def may_issue(ca: Any, below: int, what: str) -> None:
    """RFC 5280 6.1.4 (k)-(n): only a CA (basicConstraints cA, keyCertSign if it states a key usage) issues
    certificates, with at most its pathLenConstraint CAs below it. Without this a PCK key, hardware-held but
    extractable on an out-of-date platform (the case TCB status exists for), could issue itself a "PCK
    certificate" naming any FMSPC and SVNs, one level below the genuine one, and be judged UpToDate."""
    from cryptography import x509

    name = ca.subject.rfc4514_string()
    if not is_ca(ca):
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


def chain_validity(result: Result, claim: str, certs: list[Any], roles: list[str],
                   at: datetime.datetime | None) -> bool:
    """Every certificate of the chain, root included, within its notBefore..notAfter at ``at`` (now if None)."""
    when = x509check.moment(at)
    problems = []
    for role, cert in zip(roles, certs, strict=True):
        try:
            x509check.check_validity(cert, when, x509check.label(role, cert))
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
            x509check.check_revocation(cert, issuer, applicable, at, x509check.label(role, cert))
        except ReportError as exc:
            problems.append(str(exc))
    problems = list(dict.fromkeys(problems))
    issuers = sorted({crl.issuer.rfc4514_string() for crl in applicable})
    return result.add(claim, not problems, "; ".join(problems) or
                      f"not revoked: checked against the CRL(s) of {'; '.join(issuers)}")
