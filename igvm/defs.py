"""IGVM format constants and the table of variable-header layouts.

One declarative table (``HEADER_TYPES``) drives parsing, serialising,
validation and ``cocoon igvm inspect``, so adding a header type is one entry.

Facts from microsoft/igvm ``igvm_defs/src/lib.rs`` (crate 0.4.0, commit
e6c3ff1c, 2026-06-09) as summarised in ``shared/research/measure.md`` §1; the
CoRIM layout from microsoft/openvmm's CoRIM patcher (mask, file_offset,
size_bytes, reserved). All structures are packed little-endian.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from functools import cached_property

MAGIC = 0x4D564749  # b"IGVM" little-endian
FORMAT_V1 = 1
FORMAT_V2 = 2
FIXED_HEADER_V1 = struct.Struct("<6I")  # magic, version, vh_offset, vh_size, total, crc
FIXED_HEADER_V2 = struct.Struct("<8I")  # ... + architecture, page_size
VARIABLE_HEADER = struct.Struct("<II")  # type, length (body only)
PAGE_SIZE = 4096
PAGE_SIZE_2M = 2 * 1024 * 1024
OPTIONAL_BIT = 1 << 31

ARCH_X64 = 0
ARCH_AARCH64 = 1


class Section(enum.IntEnum):
    """Variable headers come in this order; a file may never go back."""

    PLATFORM = 1
    INITIALIZATION = 2
    DIRECTIVE = 3


def section_of(code: int) -> Section | None:
    """The section a type code belongs to (optional bit ignored), if any."""
    code &= ~OPTIONAL_BIT
    if 0x1 <= code <= 0x100:
        return Section.PLATFORM
    if 0x101 <= code <= 0x200:
        return Section.INITIALIZATION
    if 0x301 <= code <= 0x400:
        return Section.DIRECTIVE
    return None


class PlatformType(enum.IntEnum):
    NATIVE = 0
    VSM_ISOLATION = 1
    SEV_SNP = 2
    TDX = 3
    SEV = 4
    SEV_ES = 5
    CCA = 6


class PageDataType(enum.IntEnum):
    NORMAL = 0
    SECRETS = 1
    CPUID_DATA = 2
    CPUID_XF = 3


class PageDataFlags(enum.IntFlag):
    IS_2MB_PAGE = 0x1
    UNMEASURED = 0x2
    SHARED = 0x4


class Data(enum.Enum):
    """How a header's ``file_offset`` field is sized in the file-data region."""

    PAGE = "page"  # 4 KiB (2 MiB with IS_2MB_PAGE); page data is padded to it
    AREA = "area"  # ``number_of_bytes`` of a parameter area
    VMSA = "vmsa"  # one 4 KiB page (SNP VMSA, padded)
    SIZED = "sized"  # ``size_bytes`` field (CoRIM payloads)


@dataclass(frozen=True)
class HeaderType:
    """One variable-header type: its code, name and packed body layout."""

    code: int
    name: str
    fields: tuple[tuple[str, str], ...]
    data: Data | None = None
    #: names of fields that must be zero (reserved)
    reserved: tuple[str, ...] = ()

    @cached_property
    def struct(self) -> struct.Struct:
        return struct.Struct("<" + "".join(fmt for _, fmt in self.fields))

    @cached_property
    def size(self) -> int:
        return self.struct.size

    @property
    def section(self) -> Section:
        section = section_of(self.code)
        assert section is not None, self.code
        return section

    @cached_property
    def field_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.fields)

    @cached_property
    def index(self) -> dict[str, int]:
        return {name: i for i, (name, _) in enumerate(self.fields)}


_PARAMETER = (("parameter_area_index", "I"), ("byte_offset", "I"))
_CORIM = (("compatibility_mask", "I"), ("file_offset", "I"), ("size_bytes", "I"), ("reserved", "I"))
_SNP_SIG = (("r_comp", "72s"), ("s_comp", "72s"))
_SNP_KEY = (("curve", "I"), ("reserved", "I"), ("qx", "72s"), ("qy", "72s"))


def _prefixed(prefix: str, fields: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}_{name}", fmt) for name, fmt in fields)


_TYPES = [
    HeaderType(0x001, "SUPPORTED_PLATFORM", (
        ("compatibility_mask", "I"), ("highest_vtl", "B"), ("platform_type", "B"),
        ("platform_version", "H"), ("shared_gpa_boundary", "Q"))),
    HeaderType(0x101, "GUEST_POLICY", (
        ("policy", "Q"), ("compatibility_mask", "I"), ("reserved", "I")), reserved=("reserved",)),
    HeaderType(0x102, "RELOCATABLE_REGION", (
        ("compatibility_mask", "I"), ("vp_index", "H"), ("vtl", "B"), ("flags", "B"),
        ("relocation_alignment", "Q"), ("relocation_region_gpa", "Q"),
        ("relocation_region_size", "Q"), ("minimum_relocation_gpa", "Q"),
        ("maximum_relocation_gpa", "Q"))),
    HeaderType(0x103, "PAGE_TABLE_RELOCATION_REGION", (
        ("compatibility_mask", "I"), ("vp_index", "H"), ("vtl", "B"), ("reserved", "B"),
        ("gpa", "Q"), ("size", "Q"), ("used_size", "Q")), reserved=("reserved",)),
    HeaderType(0x104, "CORIM_DOCUMENT", _CORIM, Data.SIZED, reserved=("reserved",)),
    HeaderType(0x105, "CORIM_SIGNATURE", _CORIM, Data.SIZED, reserved=("reserved",)),
    HeaderType(0x301, "PARAMETER_AREA", (
        ("number_of_bytes", "Q"), ("parameter_area_index", "I"), ("file_offset", "I")), Data.AREA),
    HeaderType(0x302, "PAGE_DATA", (
        ("gpa", "Q"), ("compatibility_mask", "I"), ("file_offset", "I"), ("flags", "I"),
        ("data_type", "H"), ("reserved", "H")), Data.PAGE, reserved=("reserved",)),
    HeaderType(0x303, "PARAMETER_INSERT", (
        ("gpa", "Q"), ("compatibility_mask", "I"), ("parameter_area_index", "I"))),
    HeaderType(0x304, "VP_CONTEXT", (
        ("gpa", "Q"), ("compatibility_mask", "I"), ("file_offset", "I"), ("vp_index", "H"),
        ("reserved", "H")), Data.VMSA, reserved=("reserved",)),
    HeaderType(0x305, "REQUIRED_MEMORY", (
        ("gpa", "Q"), ("compatibility_mask", "I"), ("number_of_bytes", "I"), ("flags", "I"),
        ("reserved", "I")), reserved=("reserved",)),
    HeaderType(0x307, "VP_COUNT_PARAMETER", _PARAMETER),
    HeaderType(0x308, "SRAT", _PARAMETER),
    HeaderType(0x309, "MADT", _PARAMETER),
    HeaderType(0x30A, "MMIO_RANGES", _PARAMETER),
    HeaderType(0x30B, "SNP_ID_BLOCK", (
        ("compatibility_mask", "I"), ("author_key_enabled", "B"), ("reserved", "3s"),
        ("ld", "48s"), ("family_id", "16s"), ("image_id", "16s"), ("version", "I"),
        ("guest_svn", "I"), ("id_key_algorithm", "I"), ("author_key_algorithm", "I"),
        *_prefixed("id_key_signature", _SNP_SIG), *_prefixed("id_public_key", _SNP_KEY),
        *_prefixed("author_key_signature", _SNP_SIG), *_prefixed("author_public_key", _SNP_KEY))),
    HeaderType(0x30C, "MEMORY_MAP", _PARAMETER),
    HeaderType(0x30D, "ERROR_RANGE", (("gpa", "Q"), ("compatibility_mask", "I"), ("size_bytes", "I"))),
    HeaderType(0x30E, "COMMAND_LINE", _PARAMETER),
    HeaderType(0x30F, "SLIT", _PARAMETER),
    HeaderType(0x310, "PPTT", _PARAMETER),
    HeaderType(0x311, "VBS_MEASUREMENT", (
        ("compatibility_mask", "I"), ("version", "I"), ("product_id", "I"), ("module_id", "I"),
        ("security_version", "I"), ("policy_flags", "I"), ("boot_digest_algo", "I"),
        ("signing_algo", "I"), ("boot_measurement_digest", "64s"), ("signature", "256s"),
        ("public_key", "512s"))),
    HeaderType(0x312, "DEVICE_TREE", _PARAMETER),
    HeaderType(0x313, "ENVIRONMENT_INFO_PARAMETER", _PARAMETER),
]

HEADER_TYPES: dict[int, HeaderType] = {t.code: t for t in _TYPES}
BY_NAME: dict[str, HeaderType] = {t.name: t for t in _TYPES}

#: Type codes that exist but whose body we keep opaque (layout not pinned
#: down from a source we could read: CCA_POLICY, unstable in igvm_defs).
OPAQUE_TYPES = {0x106: "CCA_POLICY", 0x306: "RESERVED_DO_NOT_USE"}

#: Parameter-usage headers: they write into a parameter area.
PARAMETER_TYPES = frozenset(t.code for t in _TYPES if t.fields == _PARAMETER)

# Sizes the research brief checked with packed ctypes (measure.md §1.3).
_EXPECTED_SIZES = {0x001: 16, 0x101: 16, 0x102: 48, 0x103: 32, 0x104: 16, 0x301: 16, 0x302: 24,
                   0x303: 16, 0x304: 20, 0x305: 24, 0x307: 8, 0x30B: 696, 0x30D: 16, 0x311: 864}
for _code, _size in _EXPECTED_SIZES.items():
    assert HEADER_TYPES[_code].size == _size, (hex(_code), HEADER_TYPES[_code].size)


def align8(n: int) -> int:
    return (n + 7) & ~7


def type_name(code: int) -> str:
    base = code & ~OPTIONAL_BIT
    known = HEADER_TYPES.get(base)
    name = known.name if known else OPAQUE_TYPES.get(base, f"UNKNOWN_{base:#x}")
    return name + ("|OPTIONAL" if code & OPTIONAL_BIT else "")
