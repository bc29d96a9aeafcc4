"""The verifier's X.509 helpers: loading certificates from evidence, validity periods and revocation.

Certificates from evidence are parsed whole at once (``load_certificate``,
``parsed``), so a malformed field fails as bad evidence, never mid-walk.
Validity and revocation are checked at one moment for every certificate a
chain walk touches.

A signature proves who issued a certificate, not that it still holds: an
expired TCB-signing certificate or a revoked ASK must fail even though every
signature checks. Every chain the verifier walks (ARK/ASK/VCEK, ASVK/VLEK,
the PCK chain, the collateral issuer chain) goes through ``check_validity``
at the same moment: now, or the ``--at`` time an auditor names to judge old
evidence as it stood then. CRLs (AMD KDS's ``/vcek/v1/<product>/crl``, Intel
PCS's PCK CRL) are optional inputs; one that applies must be signed by the
certificate's issuer and current at that moment, or verification fails
(a stale or forged CRL is no evidence of non-revocation).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from agent.errors import ReportError


def moment(at: datetime.datetime | None = None) -> datetime.datetime:
    """``at`` as an aware UTC time (naive times are taken as UTC); now when None."""
    if at is None:
        return datetime.datetime.now(datetime.UTC)
    return at.replace(tzinfo=datetime.UTC) if at.tzinfo is None else at.astimezone(datetime.UTC)


def parse_time(text: str) -> datetime.datetime:
    """An ISO 8601 time (``2025-06-01``, ``2025-06-01T12:00:00Z``) for ``--at``; UTC unless it says otherwise."""
    try:
        return moment(datetime.datetime.fromisoformat(text.strip()))
    except ValueError:
        raise ReportError(f"time {text!r} is not ISO 8601 (e.g. 2025-06-01T12:00:00Z)") from None
    except OverflowError:  # year 9999 west of UTC, year 1 east of it
        raise ReportError(f"time {text!r} falls outside the years UTC can express (1 to 9999)") from None


def load_certificate(der_or_pem: bytes, what: str) -> Any:
    """PEM or DER. AMD's KDS issues VCEKs with serial number 0, which RFC 5280 forbids and
    ``cryptography`` warns about; that is AMD's practice, so the warning is silenced here."""
    import warnings

    from cryptography import x509

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*serial number.*")
            if der_or_pem.lstrip().startswith(b"-----BEGIN"):
                cert = x509.load_pem_x509_certificate(der_or_pem)
            else:
                cert = x509.load_der_x509_certificate(der_or_pem)
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion (a v2 certificate) is no ValueError
        raise ReportError(f"{what} is not an X.509 certificate: {exc}") from None
    return parsed(cert, what)


def parsed(cert: Any, what: str) -> Any:
    """``cert`` with every field a check reads parsed now. ``cryptography`` parses names, extensions and the
    key on first use, so a certificate from the evidence with a malformed issuer would otherwise raise
    ValueError in the middle of a chain walk (or of the message naming it) instead of failing as bad evidence."""
    import warnings

    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*serial number.*")
            _ = (cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), list(cert.extensions),
                 cert.public_key(), cert.not_valid_before_utc, cert.not_valid_after_utc, cert.serial_number)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ReportError(f"{what} does not parse: {exc}") from None
    return cert


def label(role: str, cert: Any) -> str:
    """``VCEK (SEV-VCEK)``, ``PCK certificate (Intel SGX PCK Certificate)``: a message names the certificate by
    its role and by its own common name, so a reader sees which one."""
    from cryptography.x509.oid import NameOID

    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return f"{role} ({cns[0].value})" if cns else role


def check_validity(cert: Any, at: datetime.datetime | None, what: str) -> None:
    """Raise unless ``at`` lies within the certificate's notBefore..notAfter (inclusive, RFC 5280 4.1.2.5)."""
    when = moment(at)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if when < start:
        raise ReportError(f"{what} is not valid yet at {when:%Y-%m-%dT%H:%M:%SZ} (valid from {start:%Y-%m-%d})")
    if when > end:
        raise ReportError(f"{what} expired on {end:%Y-%m-%d} (checked at {when:%Y-%m-%dT%H:%M:%SZ})")


def load_crls(data: bytes, what: str = "CRL") -> list[Any]:
    """Every CRL in ``data``: one DER CRL, or any number of PEM blocks."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        if b"-----BEGIN" in data:
            marker = b"-----BEGIN X509 CRL-----"
            blocks = [marker + part for part in data.split(marker)[1:]]
            if not blocks:
                raise ValueError("no X509 CRL PEM block")
            crls = [x509.load_pem_x509_crl(b) for b in blocks]
        else:
            crls = [x509.load_der_x509_crl(data)]
        for crl in crls:  # parsed lazily by cryptography: read now what check_revocation reads, so it cannot raise
            _ = (crl.issuer.rfc4514_string(), crl.last_update_utc, crl.next_update_utc, crl.signature_hash_algorithm,
                 [entry.serial_number for entry in crl])
    except (ValueError, TypeError, x509.InvalidVersion, UnsupportedAlgorithm) as exc:
        raise ReportError(f"{what} is not an X.509 CRL: {exc}") from None
    return crls


def _crl_signed_by(crl: Any, issuer: Any) -> bool:
    """RSA-PSS (AMD signs its CRLs as it signs its certificates) or whatever ``cryptography`` verifies itself."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = issuer.public_key()
    if crl.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.10" and isinstance(key, rsa.RSAPublicKey):
        algorithm = crl.signature_hash_algorithm or hashes.SHA384()
        try:
            key.verify(crl.signature, crl.tbs_certlist_bytes,
                       padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size), algorithm)
        except InvalidSignature:
            return False
        return True
    try:
        return bool(crl.is_signature_valid(key))
    except (TypeError, ValueError):
        return False


def check_revocation(cert: Any, issuer: Any, crls: Iterable[Any], at: datetime.datetime | None, what: str) -> None:
    """Raise if a CRL from ``cert``'s issuer lists it; a CRL from that issuer must verify and be current."""
    when = moment(at)
    for crl in crls:
        if crl.issuer != issuer.subject:
            continue
        name = issuer.subject.rfc4514_string()
        if not _crl_signed_by(crl, issuer):
            raise ReportError(f"the CRL of {name} is not signed by its issuer's key")
        if crl.next_update_utc is not None and when > crl.next_update_utc:
            raise ReportError(f"the CRL of {name} is stale: its next update was due {crl.next_update_utc:%Y-%m-%d}")
        if when < crl.last_update_utc:
            raise ReportError(f"the CRL of {name} was issued after {when:%Y-%m-%dT%H:%M:%SZ}")
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise ReportError(f"{what} (serial {cert.serial_number:#x}) is revoked by {name}")
