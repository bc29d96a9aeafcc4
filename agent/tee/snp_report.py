"""AMD SEV-SNP ATTESTATION_REPORT: parse, build and check the signature.

Layout from AMD's SEV-SNP Firmware ABI specification (Table "ATTESTATION_
REPORT structure"), as mirrored by go-sev-guest ``abi/abi.go`` and the
research brief (kata-agent.md section 3.3). All integers little-endian; the
report is 0x4A0 bytes; bytes 0x000-0x29F are signed with ECDSA P-384/SHA-384
by the VCEK (or VLEK); R and S are stored as 72-byte little-endian integers.

Versions 2, 3 and 5 are accepted (go-sev-guest knows no version 4 layout):
v3 added the CPUID family/model/stepping at 0x188, v5 the mitigation
vectors at 0x1F8/0x200. Fields a version does not define must be zero.
"""

from __future__ import annotations

from typing import Any

from agent.errors import ReportError
from agent.record import fields, record

REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
SUPPORTED_VERSIONS = (2, 3, 5)
SIG_ALGO_ECDSA_P384_SHA384 = 1
_COMPONENT = 72  # bytes per R/S, little-endian, zero-extended

# name, offset, size, kind ("u32", "u64", "bytes"); one table drives parse and build.
LAYOUT: tuple[tuple[str, int, int, str], ...] = (
    ("version", 0x000, 4, "u32"),
    ("guest_svn", 0x004, 4, "u32"),
    ("policy", 0x008, 8, "u64"),
    ("family_id", 0x010, 16, "bytes"),
    ("image_id", 0x020, 16, "bytes"),
    ("vmpl", 0x030, 4, "u32"),
    ("signature_algo", 0x034, 4, "u32"),
    ("current_tcb", 0x038, 8, "u64"),
    ("platform_info", 0x040, 8, "u64"),
    ("signer_info", 0x048, 4, "u32"),
    ("report_data", 0x050, 64, "bytes"),
    ("measurement", 0x090, 48, "bytes"),
    ("host_data", 0x0C0, 32, "bytes"),
    ("id_key_digest", 0x0E0, 48, "bytes"),
    ("author_key_digest", 0x110, 48, "bytes"),
    ("report_id", 0x140, 32, "bytes"),
    ("report_id_ma", 0x160, 32, "bytes"),
    ("reported_tcb", 0x180, 8, "u64"),
    ("cpuid_fam_id", 0x188, 1, "u8"),
    ("cpuid_mod_id", 0x189, 1, "u8"),
    ("cpuid_step", 0x18A, 1, "u8"),
    ("chip_id", 0x1A0, 64, "bytes"),
    ("committed_tcb", 0x1E0, 8, "u64"),
    ("current_build", 0x1E8, 1, "u8"),
    ("current_minor", 0x1E9, 1, "u8"),
    ("current_major", 0x1EA, 1, "u8"),
    ("committed_build", 0x1EC, 1, "u8"),
    ("committed_minor", 0x1ED, 1, "u8"),
    ("committed_major", 0x1EE, 1, "u8"),
    ("launch_tcb", 0x1F0, 8, "u64"),
    ("launch_mit_vector", 0x1F8, 8, "u64"),
    ("current_mit_vector", 0x200, 8, "u64"),
)
_V3_FIELDS = frozenset({"cpuid_fam_id", "cpuid_mod_id", "cpuid_step"})
_V5_FIELDS = frozenset({"launch_mit_vector", "current_mit_vector"})
# Reserved ranges that must be zero (outside the table and the signature).
_RESERVED = ((0x04C, 0x050), (0x18B, 0x1A0), (0x1EB, 0x1EC), (0x1EF, 0x1F0), (0x208, 0x2A0))

# POLICY bits (SNP ABI "Guest Policy"), used by the verifier and by humans reading output.
POLICY_SMT = 1 << 16
POLICY_RESERVED_1 = 1 << 17
POLICY_MIGRATE_MA = 1 << 18
POLICY_DEBUG = 1 << 19
POLICY_SINGLE_SOCKET = 1 << 20


@record(frozen=True)
class TcbVersion:
    """TCB_VERSION: security patch levels by byte; the layout depends on the product line.

    Milan/Genoa: bootloader, tee, 4 reserved, snp, microcode. Turin adds an FMC SPL and packs
    them as fmc, bootloader, tee, snp, 3 reserved, microcode (go-sev-guest kds.DecomposeTCBVersion
    and the Turin layout of AMD's SNP ABI 1.58 "TCB_VERSION")."""

    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None  # Turin and later

    @classmethod
    def from_u64(cls, value: int, product: str = "milan") -> TcbVersion:
        b = value.to_bytes(8, "little")
        if product.lower() == "turin":
            return cls(bootloader=b[1], tee=b[2], snp=b[3], microcode=b[7], fmc=b[0])
        return cls(bootloader=b[0], tee=b[1], snp=b[6], microcode=b[7])

    def to_u64(self) -> int:
        if self.fmc is not None:
            return int.from_bytes(bytes([self.fmc, self.bootloader, self.tee, self.snp, 0, 0, 0, self.microcode]),
                                  "little")
        return int.from_bytes(bytes([self.bootloader, self.tee, 0, 0, 0, 0, self.snp, self.microcode]), "little")

    def as_dict(self) -> dict[str, int]:
        out = {"bootloader": self.bootloader, "tee": self.tee, "snp": self.snp, "microcode": self.microcode}
        if self.fmc is not None:
            out["fmc"] = self.fmc
        return out


@record(frozen=True)
class SnpReport:
    """Every field of the report, plus the signature components and the signed bytes."""

    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: int
    platform_info: int
    signer_info: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: int
    cpuid_fam_id: int | None
    cpuid_mod_id: int | None
    cpuid_step: int | None
    chip_id: bytes
    committed_tcb: int
    current_build: int
    current_minor: int
    current_major: int
    committed_build: int
    committed_minor: int
    committed_major: int
    launch_tcb: int
    launch_mit_vector: int | None
    current_mit_vector: int | None
    signature_r: int
    signature_s: int
    signed_bytes: bytes

    @property
    def signing_key(self) -> str:
        """Which key signed: bits 2-4 of signer info (0 VCEK, 1 VLEK, 7 none)."""
        return {0: "vcek", 1: "vlek", 7: "none"}.get((self.signer_info >> 2) & 7, "reserved")

    def to_json(self) -> dict[str, Any]:
        """Hex for byte strings, numbers as numbers: what `--json` outputs print."""
        out: dict[str, Any] = {}
        for name in fields(self):
            if name == "signed_bytes":
                continue
            value = getattr(self, name)
            out[name] = value.hex() if isinstance(value, bytes) else value
        return out


def _read(data: bytes, offset: int, size: int, kind: str) -> int | bytes:
    chunk = data[offset : offset + size]
    return bytes(chunk) if kind == "bytes" else int.from_bytes(chunk, "little")


def parse(data: bytes) -> SnpReport:
    """Parse a raw report; any deviation from the layout is a ReportError naming it."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ReportError(f"SNP report must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) != REPORT_SIZE:
        # Said as an SNP report's problem, not "unknown evidence": callers decide SNP vs TDX by an explicit type
        # or the header, so a truncated or padded SNP report must still read as one.
        how = "short" if len(data) < REPORT_SIZE else "long"
        raise ReportError(f"SNP report of the wrong size: {len(data)} bytes is {abs(len(data) - REPORT_SIZE)} too "
                          f"{how}; an ATTESTATION_REPORT is exactly {REPORT_SIZE} (0x{REPORT_SIZE:x}) bytes")
    version = int.from_bytes(data[0:4], "little")
    if version not in SUPPORTED_VERSIONS:
        raise ReportError(f"SNP report version {version} is not supported (supported: 2, 3, 5)")
    values: dict[str, Any] = {}
    for name, offset, size, kind in LAYOUT:
        value: int | bytes | None = _read(data, offset, size, kind)
        if (name in _V3_FIELDS and version < 3) or (name in _V5_FIELDS and version < 5):
            if value:
                raise ReportError(f"SNP report v{version}: field {name} at 0x{offset:x} is reserved but not zero")
            value = None
        values[name] = value
    for start, end in _RESERVED:
        if any(data[start:end]):
            raise ReportError(f"SNP report: reserved bytes 0x{start:x}-0x{end - 1:x} are not zero")
    sig = data[SIGNED_SIZE:]
    if any(sig[2 * _COMPONENT :]):
        raise ReportError("SNP report: signature area beyond R and S is not zero")
    values["signature_r"] = int.from_bytes(sig[:_COMPONENT], "little")
    values["signature_s"] = int.from_bytes(sig[_COMPONENT : 2 * _COMPONENT], "little")
    values["signed_bytes"] = data[:SIGNED_SIZE]
    return SnpReport(**values)


def build_body(**values: Any) -> bytes:
    """The 0x2A0 signed bytes from field values (missing fields zero); used by the sim TEE and tests."""
    body = bytearray(SIGNED_SIZE)
    known = {name for name, *_ in LAYOUT}
    unknown = set(values) - known
    if unknown:
        raise ReportError(f"unknown SNP report fields: {', '.join(sorted(unknown))}")
    for name, offset, size, kind in LAYOUT:
        value = values.get(name)
        if value is None:
            continue
        if kind == "bytes":
            raw = bytes(value)
            if len(raw) != size:
                raise ReportError(f"SNP report field {name} must be {size} bytes, got {len(raw)}")
            body[offset : offset + size] = raw
        else:
            body[offset : offset + size] = int(value).to_bytes(size, "little")
    return bytes(body)


def assemble(body: bytes, r: int, s: int) -> bytes:
    """Append the signature area (R, S little-endian in 72 bytes each, rest zero)."""
    if len(body) != SIGNED_SIZE:
        raise ReportError(f"SNP report body must be {SIGNED_SIZE} bytes, got {len(body)}")
    sig = r.to_bytes(_COMPONENT, "little") + s.to_bytes(_COMPONENT, "little")
    return body + sig + bytes(REPORT_SIZE - SIGNED_SIZE - len(sig))


def sign(body: bytes, private_key: Any) -> bytes:
    """Sign a body with an EC P-384 key the way the PSP does (ECDSA, SHA-384 over 0x000-0x29F)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    der = private_key.sign(body, ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    return assemble(body, r, s)


def verify_signature(report: SnpReport, public_key: Any) -> None:
    """Raise ReportError unless ``public_key`` (EC P-384) signed ``report``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    if report.signature_algo != SIG_ALGO_ECDSA_P384_SHA384:
        raise ReportError(f"SNP report signature algorithm {report.signature_algo} is not ECDSA P-384 (1)")
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name != "secp384r1":
        raise ReportError("SNP report signing key must be an EC P-384 public key")
    if not (0 < report.signature_r < 2**384 and 0 < report.signature_s < 2**384):
        raise ReportError("SNP report signature R/S out of range")
    try:
        public_key.verify(
            encode_dss_signature(report.signature_r, report.signature_s),
            report.signed_bytes,
            ec.ECDSA(hashes.SHA384()),
        )
    except InvalidSignature:
        key = "VLEK" if report.signing_key == "vlek" else "VCEK"
        raise ReportError(f"SNP report signature does not verify with the given {key}") from None
