"""The coordinator's one secret: a 64-byte seed and a 32-byte salt, and everything derived from them.

Everything long-lived is derived from the seed, so a seed-share owner who holds the seed can bring a
restarted coordinator back with exactly the keys it had: the root CA key (pods certified under any manifest
keep chaining to the same root), the key that signs the state directory's ``latest`` pointer (a host that
rewrites the directory is caught on recovery), every manifest's mesh CA key (from the seed and the
transition that made the manifest current) and every workload secret.

Sizes, HKDF info strings and the seed-share encryption follow Contrast (research/coordinator-kbs.md 1.2,
1.4, 1.7; contrast ``coordinator/internal/seedengine/seedengine.go``, ``internal/manifest/crypto.go``,
``internal/constants``): seed 64 bytes, salt 32 bytes; ``HKDF-SHA256(seed, salt, info)`` with 64 bytes of
output for ``"POD STATE SECRET"``, ``"TRANSACTION SIGNING SECRET"`` and ``"ROOT CA SEED"``; workload secret
``HKDF-SHA256(pod state secret, salt, "WORKLOAD SECRET ID: <id>")``, 64 bytes; seed shares RSA-OAEP with
SHA-256 (MGF1 SHA-256) and label ``"seedshare"``.

Where cocoon differs: Contrast turns a derived secret into a P-384 key with ``filippo.io/keygen.ECDSA``;
here the key's scalar is ``int.from_bytes(secret, "big") % (n - 1) + 1`` (``secret`` the 64-byte HKDF output
above, ``n`` the P-384 group order; 512 bits reduced mod a 384-bit order, bias below 2^-128), built with
``ec.derive_private_key``. The same seed gives the same keys here every time, but not Contrast's keys.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEED_SIZE = 64
SALT_SIZE = 32
SECRET_SIZE = 64
#: HKDF info strings (Contrast's)
INFO_POD_STATE = b"POD STATE SECRET"
INFO_TRANSACTION = b"TRANSACTION SIGNING SECRET"
INFO_ROOT_CA = b"ROOT CA SEED"
WORKLOAD_SECRET_PREFIX = "WORKLOAD SECRET ID: "
#: cocoon's own: the root CA certificate's serial number (so recovery reproduces the same certificate bytes)
INFO_ROOT_SERIAL = b"cocoon ROOT CA SERIAL"
#: cocoon's own, followed by the 32-byte transition hash: one manifest's mesh CA key and certificate serials
INFO_MESH_KEY = b"cocoon MESH CA KEY "
INFO_MESH_SERIAL = b"cocoon MESH CA SERIAL "
SEEDSHARE_LABEL = b"seedshare"
#: order of the P-384 group (SEC 2 v2, section 2.5.1; FIPS 186-4 D.1.2.4)
P384_ORDER = int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973", 16)


def _hkdf(secret: bytes, salt: bytes, info: bytes, length: int = SECRET_SIZE) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(secret)


def _p384(secret: bytes) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(secret, "big") % (P384_ORDER - 1) + 1, ec.SECP384R1())


def oaep() -> padding.OAEP:
    """The seed-share padding: OAEP, SHA-256 for both hash and MGF1, label "seedshare" (Contrast's)."""
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=SEEDSHARE_LABEL)


def load_rsa_public(hex_der: str) -> rsa.RSAPublicKey:
    """A ``SeedshareOwnerPubKeys`` entry: hex of a PKCS#1 DER RSA public key (SubjectPublicKeyInfo also read)."""
    try:
        key = serialization.load_der_public_key(bytes.fromhex(hex_der))
    except ValueError as exc:
        raise ValueError(f"seed-share owner key {hex_der[:24]}...: not a hex DER RSA public key ({exc})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"seed-share owner key {hex_der[:24]}...: not an RSA key")
    return key


def owner_digest(hex_der: str) -> str:
    """What a seed-share owner is known by: hex SHA-256 of its PKCS#1 DER public key (as Contrast's Recover)."""
    return public_key_digest(load_rsa_public(hex_der))


def public_key_digest(key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> str:
    """How the coordinator knows a caller by its TLS key (Contrast's userapi): hex SHA-256 of the PKIX DER of an
    ECDSA key (workload owners) or of the PKCS#1 DER of an RSA key (seed-share owners)."""
    if isinstance(key, rsa.RSAPublicKey):
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    else:
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class SeedShare:
    """The seed encrypted to one owner; ``public_key`` is the manifest's entry (hex PKCS#1 DER)."""

    public_key: str
    encrypted_seed: bytes


@dataclass(frozen=True)
class SeedShareDocument:
    """What the first SetManifest returns once: one share per owner and the salt (Contrast's SeedShareDocument)."""

    shares: list[SeedShare]
    salt: bytes


def decrypt_share(private_key: rsa.RSAPrivateKey, share: SeedShare) -> bytes:
    """The owner's side of a share: the seed back."""
    return private_key.decrypt(share.encrypted_seed, oaep())


@dataclass(frozen=True)
class SeedEngine:
    """A seed and salt and the keys they determine; equal inputs give equal keys (that is what recovery needs)."""

    seed: bytes = field(repr=False)
    salt: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_SIZE:
            raise ValueError(f"the seed is {len(self.seed)} bytes; it must be {SEED_SIZE}")
        if len(self.salt) != SALT_SIZE:
            raise ValueError(f"the salt is {len(self.salt)} bytes; it must be {SALT_SIZE}")

    @classmethod
    def generate(cls) -> SeedEngine:
        return cls(os.urandom(SEED_SIZE), os.urandom(SALT_SIZE))

    def derive(self, info: bytes, length: int = SECRET_SIZE) -> bytes:
        return _hkdf(self.seed, self.salt, info, length)

    def root_ca_key(self) -> ec.EllipticCurvePrivateKey:
        return _p384(self.derive(INFO_ROOT_CA))

    def transaction_key(self) -> ec.EllipticCurvePrivateKey:
        """Signs the state's ``latest`` pointer."""
        return _p384(self.derive(INFO_TRANSACTION))

    def root_ca_serial(self) -> int:
        """A positive serial below 2^127 (RFC 5280 4.1.2.2: at most 20 octets, positive)."""
        return int.from_bytes(self.derive(INFO_ROOT_SERIAL, 16), "big") >> 1 | 1

    def mesh_ca_key(self, transition: bytes) -> ec.EllipticCurvePrivateKey:
        """The mesh key of the manifest that ``transition`` (its 32-byte hash) made current.

        A new key for every SetManifest (each transition hash is new: it covers the previous one), which no
        one without the seed can predict, yet one a recovered coordinator derives again, so pods certified
        before a restart and after it trust each other. Contrast's RFC 004 (``rfc/004-recovery.md``) asks
        for exactly this ("derived from the seed, the history of transactions and the active manifest").
        """
        return _p384(self.derive(INFO_MESH_KEY + transition))

    def mesh_ca_serials(self, transition: bytes) -> tuple[int, int]:
        """Serials of that manifest's intermediate and mesh CA certificates."""
        raw = self.derive(INFO_MESH_SERIAL + transition, 32)
        return int.from_bytes(raw[:16], "big") >> 1 | 1, int.from_bytes(raw[16:], "big") >> 1 | 1

    def workload_secret(self, secret_id: str) -> bytes:
        pod_state = self.derive(INFO_POD_STATE)
        return _hkdf(pod_state, self.salt, (WORKLOAD_SECRET_PREFIX + secret_id).encode())

    def shares(self, owner_keys: list[str]) -> SeedShareDocument:
        """The seed encrypted to each owner key (hex PKCS#1 DER RSA), in the manifest's order."""
        return SeedShareDocument([SeedShare(k, load_rsa_public(k).encrypt(self.seed, oaep())) for k in owner_keys],
                                 self.salt)

