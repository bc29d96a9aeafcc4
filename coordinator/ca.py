"""The coordinator's certificate hierarchy, in Contrast's shape (research/coordinator-kbs.md 1.6; contrast
``internal/ca/ca.go``, ``docs/docs/architecture/components/service-mesh.md``).

- Root CA: self-signed, CN ``system:coordinator:root``, key derived from the seed. Stable: trusting it
  means trusting the deployment under every manifest it will ever have.
- Per manifest a FRESH P-384 mesh key (derived from the seed and the transition hash, see
  ``SeedEngine.mesh_ca_key``), and two certificates for it with the same subject
  (CN ``system:coordinator:intermediate``): the intermediate, signed by the root, and the mesh CA,
  self-signed. A workload certificate is signed by the mesh key, so it verifies both under the mesh CA
  (trust only this manifest's pods: an update rotates the key, and pods certified before it are no longer
  trusted by pods certified after) and under the root through the intermediate (trust all manifests).
- Workload certificate: for the pod's own key, SANs from the manifest entry split into IP addresses,
  URIs and DNS names; CN = the first DNS name; one year; serverAuth + clientAuth.

The CA certificates are pure functions of the seed (and, for the mesh CA and intermediate, the transition
hash): serials are derived, validity is fixed (``ROOT_NOT_BEFORE`` to 9999-12-31T23:59:59Z, RFC 5280
4.1.2.5's "no well-defined expiration"), and they are signed with deterministic ECDSA (RFC 6979), so a
recovered coordinator serves the very same bytes a relying party pinned before the restart. (Contrast's
root is valid for 10 years from its creation; cocoon cannot reproduce "its creation" from the seed alone,
hence the fixed dates.) Workload certificates are not reproduced: random serial, validity from now.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from coordinator.seed import SeedEngine

ROOT_CN = "system:coordinator:root"
MESH_CN = "system:coordinator:intermediate"
ROOT_NOT_BEFORE = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
NO_EXPIRY = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
WORKLOAD_LIFETIME = datetime.timedelta(days=365)
#: tolerated clock difference between the coordinator and the pods that check its certificates
BACKDATE = datetime.timedelta(hours=1)
#: a URI SAN has a scheme and an authority (``spiffe://...``, ``https://...``); ``host:port`` stays a DNS name
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
CERT_KEY_TYPES = (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _random_serial() -> int:
    return secrets.randbits(127) | 1


def _ca_extensions(builder: x509.CertificateBuilder, public_key: ec.EllipticCurvePublicKey,
                   path_length: int | None) -> x509.CertificateBuilder:
    return (builder
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def root_certificate(engine: SeedEngine) -> x509.Certificate:
    """The root CA certificate; the same seed gives the same DER, byte for byte."""
    key = engine.root_ca_key()
    builder = (x509.CertificateBuilder()
               .subject_name(_name(ROOT_CN)).issuer_name(_name(ROOT_CN))
               .public_key(key.public_key()).serial_number(engine.root_ca_serial())
               .not_valid_before(ROOT_NOT_BEFORE).not_valid_after(NO_EXPIRY))
    return _ca_extensions(builder, key.public_key(), None).sign(key, hashes.SHA384(), ecdsa_deterministic=True)


def split_sans(sans: list[str]) -> list[x509.GeneralName]:
    """Manifest SANs as X.509 names: an IP address if it parses as one, a URI if it has ``scheme://``, else DNS."""
    names: list[x509.GeneralName] = []
    for san in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
            continue
        except ValueError:
            pass
        names.append(x509.UniformResourceIdentifier(san) if _URI.match(san) else x509.DNSName(san))
    return names


def load_public_key(public_key: bytes | CertificatePublicKeyTypes) -> CertificatePublicKeyTypes:
    """The pod's key as the TLS layer has it: DER or PEM SubjectPublicKeyInfo, or a key object."""
    if not isinstance(public_key, bytes):
        return public_key
    try:
        if public_key.lstrip().startswith(b"-----"):
            key = serialization.load_pem_public_key(public_key)
        else:
            key = serialization.load_der_public_key(public_key)
    except ValueError as exc:
        raise ValueError(f"the pod's public key is not a DER or PEM SubjectPublicKeyInfo: {exc}") from None
    if not isinstance(key, CERT_KEY_TYPES):
        raise ValueError(f"the pod's public key is a {type(key).__name__}, which a certificate cannot carry")
    return key


@dataclass(frozen=True)
class MeshCA:
    """One manifest's mesh key and its two certificates (intermediate under the root, self-signed mesh CA)."""

    key: ec.EllipticCurvePrivateKey
    intermediate: x509.Certificate
    mesh_ca: x509.Certificate

    @classmethod
    def create(cls, engine: SeedEngine, root: x509.Certificate, transition: bytes) -> MeshCA:
        """The mesh CA of the manifest ``transition`` made current; the same inputs give the same bytes."""
        key = engine.mesh_ca_key(transition)
        public = key.public_key()
        intermediate_serial, mesh_serial = engine.mesh_ca_serials(transition)

        def base(issuer: x509.Name, serial: int) -> x509.CertificateBuilder:
            builder = (x509.CertificateBuilder().subject_name(_name(MESH_CN)).issuer_name(issuer)
                       .public_key(public).serial_number(serial)
                       .not_valid_before(ROOT_NOT_BEFORE).not_valid_after(NO_EXPIRY))
            return _ca_extensions(builder, public, 0)

        root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        intermediate = (base(root.subject, intermediate_serial)
                        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
                                       critical=False)
                        .sign(engine.root_ca_key(), hashes.SHA384(), ecdsa_deterministic=True))
        mesh_ca = base(_name(MESH_CN), mesh_serial).sign(key, hashes.SHA384(), ecdsa_deterministic=True)
        return cls(key, intermediate, mesh_ca)

    def issue(self, public_key: bytes | CertificatePublicKeyTypes, sans: list[str],
              now: datetime.datetime | None = None) -> x509.Certificate:
        """A workload certificate for the pod's key with the manifest entry's SANs."""
        now = now or datetime.datetime.now(datetime.UTC)
        names = split_sans(sans)
        # CN = the first DNS name that fits one (RFC 5280 ub-common-name: 64 characters)
        dns = [n.value for n in names if isinstance(n, x509.DNSName) and 1 <= len(n.value) <= 64]
        builder = (x509.CertificateBuilder()
                   .subject_name(_name(dns[0]) if dns else x509.Name([]))
                   .issuer_name(self.mesh_ca.subject)
                   .public_key(load_public_key(public_key)).serial_number(_random_serial())
                   .not_valid_before(now - BACKDATE).not_valid_after(now + WORKLOAD_LIFETIME)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                                content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                         ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                                  critical=False))
        if names:
            # critical when the subject is empty (RFC 5280 4.2.1.6)
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=not dns)
        return builder.sign(self.key, hashes.SHA384())

    def chain_pem(self, cert: x509.Certificate) -> bytes:
        """What the pod presents: its certificate, then the intermediate (so peers trusting the root accept it)."""
        return pem(cert) + pem(self.intermediate)
