"""SNP certificate chain and report signature checks: ARK -> ASK -> VCEK -> report.

AMD's chain (go-sev-guest ``verify/verify.go``): the ARK is self-signed, the
ARK signs the ASK, the ASK signs the VCEK (or VLEK), all RSA-PSS with
SHA-384 and a 48-byte salt; the VCEK is an EC P-384 key that signs the
report. The trust anchor is an ARK the caller supplies (AMD's for a product
line, or the launcher's sim ARK when told to trust sim evidence): the
chain's own ARK must be byte-identical to it, so a self-consistent chain
under some other root never passes.
"""

from __future__ import annotations

from typing import Any

from agent.errors import ReportError
from agent.tee import certtable, snp_report


def load_certificate(der_or_pem: bytes, what: str) -> Any:
    """PEM or DER. AMD's KDS issues VCEKs with serial number 0, which RFC 5280 forbids and
    ``cryptography`` warns about; that is AMD's practice, so the warning is silenced here."""
    import warnings

    from cryptography import x509

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*serial number.*")
            if der_or_pem.lstrip().startswith(b"-----BEGIN"):
                return x509.load_pem_x509_certificate(der_or_pem)
            return x509.load_der_x509_certificate(der_or_pem)
    except ValueError as exc:
        raise ReportError(f"{what} is not an X.509 certificate: {exc}") from None


def _pss_signed_by(cert: Any, issuer: Any, what: str) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ReportError(f"{what}: issuer key is not RSA")
    if cert.issuer != issuer.subject:
        raise ReportError(f"{what}: issuer name {cert.issuer.rfc4514_string()} is not "
                          f"{issuer.subject.rfc4514_string()}")
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes,
                   padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48), hashes.SHA384())
    except InvalidSignature:
        raise ReportError(f"{what}: RSA-PSS/SHA-384 signature does not verify") from None


def verify_chain(trusted_ark: bytes, ark: bytes, ask: bytes, vcek: bytes) -> Any:
    """Check ARK == trusted, ARK self-signed, ARK -> ASK -> VCEK; return the VCEK public key."""
    anchor, ark_c, ask_c, vcek_c = (load_certificate(b, w) for b, w in
                                    ((trusted_ark, "trusted ARK"), (ark, "ARK"), (ask, "ASK"), (vcek, "VCEK")))
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    der = serialization.Encoding.DER
    if ark_c.public_bytes(der) != anchor.public_bytes(der):
        raise ReportError("the evidence's ARK is not the trusted ARK")
    _pss_signed_by(ark_c, ark_c, "ARK")
    _pss_signed_by(ask_c, ark_c, "ASK")
    _pss_signed_by(vcek_c, ask_c, "VCEK")
    key = vcek_c.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise ReportError("VCEK key is not EC P-384")
    return key


def verify_evidence(report: bytes, aux: bytes, trusted_ark: bytes) -> snp_report.SnpReport:
    """Parse, walk the chain in the certificate table, check the report signature; the parsed report."""
    rep = snp_report.parse(report)
    certs = certtable.parse(aux)
    missing = [n for n in ("ark", "ask") if n not in certs] + ([] if ("vcek" in certs or "vlek" in certs)
                                                               else ["vcek"])
    if missing:
        raise ReportError(f"certificate table lacks {', '.join(missing)}")
    signer = "vlek" if rep.signing_key == "vlek" else "vcek"
    if signer not in certs:
        raise ReportError(f"report is signed by the {signer.upper()} but the table has none")
    key = verify_chain(trusted_ark, certs["ark"], certs["ask"], certs[signer])
    snp_report.verify_signature(rep, key)
    return rep
