"""SNP certificate chains and report signature checks: ARK -> ASK -> VCEK, or ARK -> ASVK -> VLEK.

AMD's chain (go-sev-guest ``verify/verify.go``): the ARK is self-signed, the
ARK signs the ASK (which signs VCEKs, one per chip and TCB) and the ASVK
(which signs VLEKs, one per cloud provider), all RSA-PSS with SHA-384 and a
48-byte salt; the VCEK or VLEK is an EC P-384 key that signs the report.
The report's SIGNER_INFO says which of the two signed it. The trust anchor
is an ARK the caller supplies (AMD's for a product line, or the launcher's
sim ARK when told to trust sim evidence): the chain's own ARK must be
byte-identical to it, so a self-consistent chain under some other root
never passes. The walk returns the certificates it checked, so the verifier
judges their validity periods and revocation without walking it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.errors import ReportError
from agent.tee import certtable, snp_report
from verifier.x509check import load_certificate


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


# The signing key's role names its issuer's: AMD's KDS calls the VLEK's issuer "SEV-VLEK-<product>" (the
# ASVK) and the VCEK's "SEV-<product>" (the ASK); an ASK must never vouch for a VLEK-signed report, nor the
# reverse, so the intermediate's common name must agree with the role the report claims.
ROLES = {"vcek": ("ASK", "VCEK"), "vlek": ("ASVK", "VLEK")}


@dataclass(frozen=True)
class Chain:
    """The certificates a successful walk checked, root first, with the names messages use for them."""

    ark: Any
    intermediate: Any
    leaf: Any
    signer: str  # "vcek" or "vlek"

    @property
    def names(self) -> tuple[str, str, str]:
        return ("ARK", *ROLES[self.signer])

    @property
    def certificates(self) -> tuple[tuple[str, Any], ...]:
        return tuple(zip(self.names, (self.ark, self.intermediate, self.leaf), strict=True))

    @property
    def public_key(self) -> Any:
        return self.leaf.public_key()


def _common_name(cert: Any) -> str:
    from cryptography.x509.oid import NameOID

    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def walk_chain(trusted_ark: bytes, ark: bytes, intermediate: bytes, leaf: bytes, signer: str = "vcek") -> Chain:
    """Check ARK == trusted, ARK self-signed, ARK -> ASK -> VCEK (or ARK -> ASVK -> VLEK); the certificates."""
    if signer not in ROLES:
        raise ReportError(f"unknown SNP signing key {signer!r} (VCEK or VLEK)")
    mid_name, leaf_name = ROLES[signer]
    anchor, ark_c, mid_c, leaf_c = (load_certificate(b, w) for b, w in
                                    ((trusted_ark, "trusted ARK"), (ark, "ARK"), (intermediate, mid_name),
                                     (leaf, leaf_name)))
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    der = serialization.Encoding.DER
    if ark_c.public_bytes(der) != anchor.public_bytes(der):
        raise ReportError("the evidence's ARK is not the trusted ARK")
    _pss_signed_by(ark_c, ark_c, "ARK")
    is_asvk = "VLEK" in _common_name(mid_c).upper()
    if is_asvk != (signer == "vlek"):
        raise ReportError(f"{mid_name}: {_common_name(mid_c)!r} is an {'ASVK' if is_asvk else 'ASK'}, but the "
                          f"report is signed by a {leaf_name}, which only an {mid_name} issues")
    _pss_signed_by(mid_c, ark_c, mid_name)
    _pss_signed_by(leaf_c, mid_c, leaf_name)
    key = leaf_c.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise ReportError(f"{leaf_name} key is not EC P-384")
    return Chain(ark_c, mid_c, leaf_c, signer)


def verify_chain(trusted_ark: bytes, ark: bytes, ask: bytes, vcek: bytes, signer: str = "vcek") -> Any:
    """``walk_chain``'s signing key alone, for callers that need nothing else."""
    return walk_chain(trusted_ark, ark, ask, vcek, signer).public_key


def verify_evidence(report: bytes, aux: bytes, trusted_ark: bytes) -> snp_report.SnpReport:
    """Parse, walk the chain in the certificate table, check the report signature; the parsed report."""
    rep = snp_report.parse(report)
    certs = certtable.parse(aux)
    signer = "vlek" if rep.signing_key == "vlek" else "vcek"
    missing = [n for n in ("ark", "ask") if n not in certs] + ([] if ("vcek" in certs or "vlek" in certs)
                                                               else [signer])
    if missing:
        raise ReportError(f"certificate table lacks {', '.join(missing)}")
    if signer not in certs:
        raise ReportError(f"report is signed by the {signer.upper()} but the table has none")
    # The table's ASK entry holds the ASVK for a VLEK chain (go-sev-guest abi: "Used for the ASVK as well").
    key = verify_chain(trusted_ark, certs["ark"], certs["ask"], certs[signer], signer)
    snp_report.verify_signature(rep, key)
    return rep
