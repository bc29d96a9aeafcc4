"""SNP ID block and ID authentication structure (SNP_LAUNCH_FINISH).

A guest owner signs the expected launch digest and policy with an ID key
(ECDSA P-384, SHA-384), optionally certified by an author key; the firmware
refuses to finish a launch whose digest differs, and the attestation report
carries SHA-384 digests of both public keys (ID_KEY_DIGEST at 0xE0,
AUTHOR_KEY_DIGEST at 0x110). Layouts from the SEV-SNP firmware ABI spec
("ID_BLOCK", "ID_AUTH_INFO"), as in sev-snp-measure ``id_block.py`` and
coconut ``igvmmeasure/src/id_block.rs`` (measure.md §2.4).

Signatures are RFC 6979 deterministic so an ID block is reproducible from
(digest, policy, keys): auditors can rebuild it byte for byte.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from ..errors import InputError

ID_BLOCK = struct.Struct("<48s16s16sIIQ")  # 96 bytes
ALGO_ECDSA_P384_SHA384 = 1
CURVE_P384 = 2
KEY_SIZE = 0x404
SIG_SIZE = 0x200
COMPONENT = 72  # r, s, qx, qy: little-endian, zero-extended to 72 bytes
DEFAULT_POLICY = 0x30000


@dataclass(frozen=True)
class IdBlock:
    ld: bytes
    family_id: bytes = bytes(16)
    image_id: bytes = bytes(16)
    version: int = 1
    guest_svn: int = 0
    policy: int = DEFAULT_POLICY

    def pack(self) -> bytes:
        if len(self.ld) != 48:
            raise InputError(f"launch digest must be 48 bytes, got {len(self.ld)}")
        if len(self.family_id) != 16 or len(self.image_id) != 16:
            raise InputError("family and image IDs are 16 bytes each")
        return ID_BLOCK.pack(self.ld, self.family_id, self.image_id, self.version, self.guest_svn, self.policy)


def load_key(path: str) -> ec.EllipticCurvePrivateKey:
    try:
        with open(path, "rb") as fh:
            key = serialization.load_pem_private_key(fh.read(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"cannot load private key {path!r}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP384R1):
        raise InputError(f"{path!r} is not an ECDSA P-384 private key (SNP accepts only P-384)")
    return key


def public_key_blob(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """The 0x404-byte SEV public key: curve u32, Qx, Qy (72-byte LE), reserved."""
    pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    nums = pub.public_numbers()
    blob = struct.pack("<I", CURVE_P384) + nums.x.to_bytes(COMPONENT, "little") + nums.y.to_bytes(COMPONENT, "little")
    return blob + bytes(KEY_SIZE - len(blob))


def key_digest(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """SHA-384 of the 0x404-byte key: what the report's ID/AUTHOR_KEY_DIGEST holds."""
    return hashlib.sha384(public_key_blob(key)).digest()


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> tuple[bytes, bytes]:
    """Deterministic ECDSA P-384/SHA-384; (r, s) as 72-byte little-endian."""
    der = key.sign(data, ec.ECDSA(hashes.SHA384(), deterministic_signing=True))
    r, s = utils.decode_dss_signature(der)
    return r.to_bytes(COMPONENT, "little"), s.to_bytes(COMPONENT, "little")


def _sig_blob(r: bytes, s: bytes) -> bytes:
    return r + s + bytes(SIG_SIZE - 2 * COMPONENT)


@dataclass(frozen=True)
class SignedIdBlock:
    block: bytes  # 96 bytes
    auth: bytes  # 4096 bytes
    id_key_digest: bytes
    author_key_digest: bytes | None
    block_sig: tuple[bytes, bytes]
    id_key_sig: tuple[bytes, bytes] | None
    id_key: bytes  # 0x404
    author_key: bytes | None


def make(block: IdBlock, id_key: ec.EllipticCurvePrivateKey,
         author_key: ec.EllipticCurvePrivateKey | None = None) -> SignedIdBlock:
    packed = block.pack()
    id_pub = public_key_blob(id_key)
    block_sig = sign(id_key, packed)
    auth = bytearray(4096)
    struct.pack_into("<II", auth, 0, ALGO_ECDSA_P384_SHA384, ALGO_ECDSA_P384_SHA384 if author_key else 0)
    auth[0x040:0x240] = _sig_blob(*block_sig)
    auth[0x240:0x644] = id_pub
    id_key_sig = None
    author_pub = None
    if author_key is not None:
        author_pub = public_key_blob(author_key)
        id_key_sig = sign(author_key, id_pub)
        auth[0x680:0x880] = _sig_blob(*id_key_sig)
        auth[0x880:0xC84] = author_pub
    return SignedIdBlock(packed, bytes(auth), key_digest(id_key),
                         key_digest(author_key) if author_key else None,
                         block_sig, id_key_sig, id_pub, author_pub)


def verify(signed: SignedIdBlock) -> None:
    """Check both signatures; raise InputError if either is wrong."""
    from cryptography.exceptions import InvalidSignature

    def pub_of(blob: bytes) -> ec.EllipticCurvePublicKey:
        x = int.from_bytes(blob[4:4 + COMPONENT], "little")
        y = int.from_bytes(blob[4 + COMPONENT:4 + 2 * COMPONENT], "little")
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP384R1()).public_key()

    def check(blob: bytes, sig: tuple[bytes, bytes], data: bytes, what: str) -> None:
        der = utils.encode_dss_signature(int.from_bytes(sig[0], "little"), int.from_bytes(sig[1], "little"))
        try:
            pub_of(blob).verify(der, data, ec.ECDSA(hashes.SHA384()))
        except InvalidSignature:
            raise InputError(f"{what} signature does not verify") from None

    check(signed.id_key, signed.block_sig, signed.block, "ID block")
    if signed.author_key is not None and signed.id_key_sig is not None:
        check(signed.author_key, signed.id_key_sig, signed.id_key, "ID key")


def igvm_fields(signed: SignedIdBlock, block: IdBlock, mask: int) -> dict[str, int | bytes]:
    """Fields of an IGVM SNP_ID_BLOCK header (its public keys carry an extra reserved u32)."""
    def key_fields(prefix: str, blob: bytes | None) -> dict[str, int | bytes]:
        blob = blob or bytes(KEY_SIZE)
        return {f"{prefix}_curve": CURVE_P384 if any(blob) else 0, f"{prefix}_reserved": 0,
                f"{prefix}_qx": blob[4:4 + COMPONENT], f"{prefix}_qy": blob[4 + COMPONENT:4 + 2 * COMPONENT]}

    no_sig = (bytes(COMPONENT), bytes(COMPONENT))
    author_sig = signed.id_key_sig or no_sig
    return {
        "compatibility_mask": mask, "author_key_enabled": 1 if signed.author_key else 0,
        "reserved": bytes(3), "ld": block.ld, "family_id": block.family_id, "image_id": block.image_id,
        "version": block.version, "guest_svn": block.guest_svn,
        "id_key_algorithm": ALGO_ECDSA_P384_SHA384,
        "author_key_algorithm": ALGO_ECDSA_P384_SHA384 if signed.author_key else 0,
        "id_key_signature_r_comp": signed.block_sig[0], "id_key_signature_s_comp": signed.block_sig[1],
        **key_fields("id_public_key", signed.id_key),
        "author_key_signature_r_comp": author_sig[0], "author_key_signature_s_comp": author_sig[1],
        **key_fields("author_public_key", signed.author_key),
    }
