"""IGVM format constants and the table of variable-header layouts.

One declarative table (``HEADER_TYPES``) drives parsing, serialising,
validation, measurement and ``cocoon igvm inspect``, so adding a header type is
one entry: each row holds the type's code (named nowhere else), name, packed
layout, section, file data, reserved fields, the platforms it means nothing for,
and its own validator.

Facts from microsoft/igvm ``igvm_defs/src/lib.rs`` (crate 0.4.0, commit
e6c3ff1c, 2026-06-09) as summarised in ``shared/research/measure.md`` §1; the
CoRIM layout from microsoft/openvmm's CoRIM patcher (mask, file_offset,
size_bytes, reserved). All structures are packed little-endian.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, cast

from .errors import IgvmError

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


FieldValue = int | bytes

#: Parameter areas hold ACPI tables, memory maps and command lines: a few
#: pages. The bound keeps a hostile file from making measurement loop.
MAX_PARAMETER_AREA = 64 * 1024 * 1024


class Record(Protocol):
    """What a validator reads of a decoded header (``igvm.file.Header``)."""

    code: int
    offset: int
    values: tuple[FieldValue, ...]

    def get(self, key: str, default: FieldValue | None = None) -> FieldValue | None: ...

    def __getitem__(self, key: str) -> FieldValue: ...

    def int(self, key: str) -> int: ...


@dataclass
class Validation:
    """What the cross-record checks have seen so far, walking the headers in file order."""

    headers: Sequence[Record]
    data_start: int  # first byte of the file-data region
    size: int  # of the whole file
    platform_masks: dict[int, int] = field(default_factory=dict)  # mask -> platform type
    declared: int = 0  # union of the declared platform masks
    areas: dict[int, int] = field(default_factory=dict)  # parameter area index -> bytes
    inserted: set[int] = field(default_factory=set)  # parameter areas already inserted
    pages: set[int] = field(default_factory=set)  # page number * 32 + mask bit, per PAGE_DATA seen


#: a table row's own check of one record, after the checks its facts imply
Validator = Callable[[Record, "HeaderType", Validation], None]
#: a quick check of the common case: True if the record is fine, False to run the full checks
QuickCheck = Callable[[Record, Validation], bool]


@dataclass(frozen=True)
class HeaderType:
    """One variable-header type: its code, name, packed body layout and the facts checked of it.

    The checks a record gets follow from the row: reserved fields zero; a
    compatibility mask naming only declared platforms (outside the platform
    section, which declares them); a page-aligned ``gpa`` (``aligned``); the
    row's own ``validate``; file data inside the file-data region (``data``).
    """

    code: int
    name: str
    fields: tuple[tuple[str, str], ...]
    data: Data | None = None
    #: names of fields that must be zero (reserved)
    reserved: tuple[str, ...] = ()
    #: ``gpa`` must be aligned to the page it describes (4 KiB, or 2 MiB for a large PAGE_DATA)
    aligned: bool = False
    validate: Validator | None = None
    quick: QuickCheck | None = None
    #: platforms this header is meaningless for once it applies to them, and why (measurement refuses it)
    not_for: Mapping[PlatformType, str] = field(default_factory=dict, compare=False)
    #: packed size the research brief checked with ctypes (measure.md §1.3)
    checked_size: int | None = None

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

    def data_size(self, h: Record) -> int | None:
        """Bytes of file data the record refers to, or None if this type refers to none."""
        if self.data is None:
            return None
        if self.data is Data.PAGE:
            return _page_bytes(h)
        if self.data is Data.VMSA:
            return PAGE_SIZE
        if self.data is Data.AREA:
            return h.int("number_of_bytes")
        return h.int("size_bytes")

    @cached_property
    def checks(self) -> tuple[Validator, ...]:
        """The checks of one record, in the order their errors take precedence."""
        steps: list[Validator] = []
        if self.reserved:
            steps.append(_check_reserved)
        if "compatibility_mask" in self.index and self.section is not Section.PLATFORM:
            steps.append(_check_mask)
        if self.aligned:
            steps.append(_check_gpa)
        if self.validate is not None:
            steps.append(self.validate)
        if self.data is not None:
            steps.append(_check_data)
        return tuple(steps)


def _page_bytes(h: Record) -> int:
    return PAGE_SIZE_2M if h.int("flags") & PageDataFlags.IS_2MB_PAGE else PAGE_SIZE


# -- checks every row gets from its facts


def _check_reserved(h: Record, kind: HeaderType, v: Validation) -> None:
    for name in kind.reserved:
        value = h[name]
        if value != 0 and not (isinstance(value, bytes) and not any(value)):
            raise IgvmError(h.offset, f"{kind.name}.{name} is reserved and must be zero")


def _check_mask(h: Record, kind: HeaderType, v: Validation) -> None:
    mask = h.int("compatibility_mask")
    if mask == 0 or mask & ~v.declared:
        raise IgvmError(h.offset, f"{kind.name} mask {mask:#x} names platforms not declared ({v.declared:#x})")


def _check_gpa(h: Record, kind: HeaderType, v: Validation) -> None:
    gpa = h.int("gpa")
    align = _page_bytes(h) if kind.data is Data.PAGE else PAGE_SIZE
    if gpa % align:
        raise IgvmError(h.offset, f"{kind.name} gpa {gpa:#x} is not {align:#x}-aligned")


def _check_data(h: Record, kind: HeaderType, v: Validation) -> None:
    offset = h.int("file_offset")
    nbytes = kind.data_size(h)
    assert nbytes is not None
    if offset and (offset < v.data_start or offset + nbytes > v.size):
        raise IgvmError(h.offset, f"{kind.name} data [{offset:#x}, {offset + nbytes:#x}) lies outside "
                                  f"the file data region [{v.data_start:#x}, {v.size:#x})")
    if not offset and kind.data is Data.SIZED and nbytes:
        raise IgvmError(h.offset, f"{kind.name} has {nbytes} bytes of data but file_offset 0")


# -- the rows' own checks


def _declare_platform(h: Record, kind: HeaderType, v: Validation) -> None:
    mask = h.int("compatibility_mask")
    if mask == 0 or mask & (mask - 1):
        raise IgvmError(h.offset, f"SUPPORTED_PLATFORM mask {mask:#x} must have exactly one bit set")
    if mask in v.platform_masks:
        raise IgvmError(h.offset, f"compatibility mask {mask:#x} declared twice")
    v.platform_masks[mask] = h.int("platform_type")
    v.declared |= mask


def _check_policy(h: Record, kind: HeaderType, v: Validation) -> None:
    if v.platform_masks.get(h.int("compatibility_mask")) is None:
        raise IgvmError(h.offset, "GUEST_POLICY mask must name exactly one declared platform")


def _declare_area(h: Record, kind: HeaderType, v: Validation) -> None:
    nbytes, index = h.int("number_of_bytes"), h.int("parameter_area_index")
    if nbytes == 0 or nbytes % PAGE_SIZE:
        raise IgvmError(h.offset, f"PARAMETER_AREA size {nbytes:#x} is not a non-zero multiple of 4 KiB")
    if nbytes > MAX_PARAMETER_AREA:
        raise IgvmError(h.offset, f"PARAMETER_AREA size {nbytes:#x} exceeds {MAX_PARAMETER_AREA:#x}")
    if index in v.areas:
        raise IgvmError(h.offset, f"parameter area {index} declared twice")
    v.areas[index] = nbytes


_PAGE_FLAGS = int(PageDataFlags.IS_2MB_PAGE | PageDataFlags.UNMEASURED | PageDataFlags.SHARED)


def _check_page(h: Record, kind: HeaderType, v: Validation) -> None:
    flags = h.int("flags")
    if flags & ~_PAGE_FLAGS:
        raise IgvmError(h.offset, f"PAGE_DATA flags {flags:#x} has reserved bits set")
    if h.int("data_type") not in PageDataType._value2member_map_:
        raise IgvmError(h.offset, f"PAGE_DATA data_type {h.int('data_type')} is unknown")
    first = h.int("gpa") // PAGE_SIZE
    mask = h.int("compatibility_mask")
    bits = [i for i in range(32) if mask >> i & 1]
    for page in range(first, first + _page_bytes(h) // PAGE_SIZE):
        for bit in bits:
            key = page * 32 + bit
            if key in v.pages:
                prior = _first_page_at(kind, v.headers, page, 1 << bit)
                raise IgvmError(h.offset, f"PAGE_DATA at gpa {page * PAGE_SIZE:#x} overlaps the one at "
                                          f"offset {prior:#x}")
            v.pages.add(key)


#: PAGE_DATA values as decoded: gpa, compatibility_mask, file_offset, flags, data_type, reserved
PageValues = tuple[int, int, int, int, int, int]


def _plain_page(h: Record, v: Validation) -> bool:
    """Check an ordinary 4 KiB PAGE_DATA quickly; False sends it through the full checks.

    A 1 GiB image has 262144 of these, so they are checked with plain tuple
    and integer operations; the full path gives the precise error message.
    """
    gpa, mask, file_offset, flags, data_type, reserved = cast(PageValues, h.values)
    if reserved or flags & ~0x6 or data_type > 3 or gpa & 0xFFF or mask & (mask - 1) or not mask & v.declared:
        return False
    if file_offset and (file_offset < v.data_start or file_offset + PAGE_SIZE > v.size):
        return False
    key = (gpa >> 12) * 32 + mask.bit_length() - 1
    if key in v.pages:
        return False
    v.pages.add(key)
    return True


def _first_page_at(kind: HeaderType, headers: Sequence[Record], page: int, bit: int) -> int:
    """Offset of the first PAGE_DATA covering ``page`` for platform ``bit`` (error path only)."""
    for h in headers:
        if h.code & ~OPTIONAL_BIT == kind.code and h.int("compatibility_mask") & bit:
            first = h.int("gpa") // PAGE_SIZE
            if first <= page < first + _page_bytes(h) // PAGE_SIZE:
                return h.offset
    return 0


def _open_area(h: Record, v: Validation, undeclared: str, inserted: str) -> int:
    """The parameter area ``h`` names, which must be declared and not yet inserted (the
    messages are templates over ``index``)."""
    index = h.int("parameter_area_index")
    if index not in v.areas:
        raise IgvmError(h.offset, undeclared.format(index=index))
    if index in v.inserted:
        raise IgvmError(h.offset, inserted.format(index=index))
    return index


def _check_insert(h: Record, kind: HeaderType, v: Validation) -> None:
    v.inserted.add(_open_area(h, v, "PARAMETER_INSERT of undeclared area {index}",
                              "parameter area {index} inserted twice"))


def _check_vp_context(h: Record, kind: HeaderType, v: Validation) -> None:
    if not h.int("file_offset"):
        raise IgvmError(h.offset, "VP_CONTEXT has no VMSA data (file_offset 0)")


def _check_parameter_use(h: Record, kind: HeaderType, v: Validation) -> None:
    index = _open_area(h, v, kind.name + " uses undeclared parameter area {index}",
                       kind.name + " uses parameter area {index} after it was inserted")
    if h.int("byte_offset") >= v.areas[index]:
        raise IgvmError(h.offset, f"{kind.name} byte_offset {h.int('byte_offset'):#x} is outside area {index}")


_PARAMETER = (("parameter_area_index", "I"), ("byte_offset", "I"))
_CORIM = (("compatibility_mask", "I"), ("file_offset", "I"), ("size_bytes", "I"), ("reserved", "I"))
_SNP_SIG = (("r_comp", "72s"), ("s_comp", "72s"))
_SNP_KEY = (("curve", "I"), ("reserved", "I"), ("qx", "72s"), ("qy", "72s"))


def _prefixed(prefix: str, fields: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}_{name}", fmt) for name, fmt in fields)


def _parameter_use(code: int, name: str) -> HeaderType:
    """A parameter-usage header: it asks the loader to write a table into a parameter area."""
    return HeaderType(code, name, _PARAMETER, validate=_check_parameter_use, checked_size=8)


# The rows other modules name (measurement, the reader) get a name of their own.
SUPPORTED_PLATFORM = HeaderType(0x001, "SUPPORTED_PLATFORM", (
    ("compatibility_mask", "I"), ("highest_vtl", "B"), ("platform_type", "B"),
    ("platform_version", "H"), ("shared_gpa_boundary", "Q")), validate=_declare_platform, checked_size=16)
PARAMETER_AREA = HeaderType(0x301, "PARAMETER_AREA", (
    ("number_of_bytes", "Q"), ("parameter_area_index", "I"), ("file_offset", "I")), Data.AREA,
    validate=_declare_area, checked_size=16)
PAGE_DATA = HeaderType(0x302, "PAGE_DATA", (
    ("gpa", "Q"), ("compatibility_mask", "I"), ("file_offset", "I"), ("flags", "I"),
    ("data_type", "H"), ("reserved", "H")), Data.PAGE, reserved=("reserved",), aligned=True,
    validate=_check_page, quick=_plain_page, checked_size=24)
PARAMETER_INSERT = HeaderType(0x303, "PARAMETER_INSERT", (
    ("gpa", "Q"), ("compatibility_mask", "I"), ("parameter_area_index", "I")), aligned=True,
    validate=_check_insert, checked_size=16)
VP_CONTEXT = HeaderType(0x304, "VP_CONTEXT", (
    ("gpa", "Q"), ("compatibility_mask", "I"), ("file_offset", "I"), ("vp_index", "H"),
    ("reserved", "H")), Data.VMSA, reserved=("reserved",), aligned=True, validate=_check_vp_context,
    not_for={PlatformType.TDX: "its reset state is architectural"}, checked_size=20)

_TYPES = [
    SUPPORTED_PLATFORM,
    HeaderType(0x101, "GUEST_POLICY", (
        ("policy", "Q"), ("compatibility_mask", "I"), ("reserved", "I")), reserved=("reserved",),
        validate=_check_policy, checked_size=16),
    HeaderType(0x102, "RELOCATABLE_REGION", (
        ("compatibility_mask", "I"), ("vp_index", "H"), ("vtl", "B"), ("flags", "B"),
        ("relocation_alignment", "Q"), ("relocation_region_gpa", "Q"),
        ("relocation_region_size", "Q"), ("minimum_relocation_gpa", "Q"),
        ("maximum_relocation_gpa", "Q")), checked_size=48),
    HeaderType(0x103, "PAGE_TABLE_RELOCATION_REGION", (
        ("compatibility_mask", "I"), ("vp_index", "H"), ("vtl", "B"), ("reserved", "B"),
        ("gpa", "Q"), ("size", "Q"), ("used_size", "Q")), reserved=("reserved",), checked_size=32),
    HeaderType(0x104, "CORIM_DOCUMENT", _CORIM, Data.SIZED, reserved=("reserved",), checked_size=16),
    HeaderType(0x105, "CORIM_SIGNATURE", _CORIM, Data.SIZED, reserved=("reserved",)),
    PARAMETER_AREA,
    PAGE_DATA,
    PARAMETER_INSERT,
    VP_CONTEXT,
    HeaderType(0x305, "REQUIRED_MEMORY", (
        ("gpa", "Q"), ("compatibility_mask", "I"), ("number_of_bytes", "I"), ("flags", "I"),
        ("reserved", "I")), reserved=("reserved",), aligned=True, checked_size=24),
    _parameter_use(0x307, "VP_COUNT_PARAMETER"),
    _parameter_use(0x308, "SRAT"),
    _parameter_use(0x309, "MADT"),
    _parameter_use(0x30A, "MMIO_RANGES"),
    HeaderType(0x30B, "SNP_ID_BLOCK", (
        ("compatibility_mask", "I"), ("author_key_enabled", "B"), ("reserved", "3s"),
        ("ld", "48s"), ("family_id", "16s"), ("image_id", "16s"), ("version", "I"),
        ("guest_svn", "I"), ("id_key_algorithm", "I"), ("author_key_algorithm", "I"),
        *_prefixed("id_key_signature", _SNP_SIG), *_prefixed("id_public_key", _SNP_KEY),
        *_prefixed("author_key_signature", _SNP_SIG), *_prefixed("author_public_key", _SNP_KEY)),
        checked_size=696),
    _parameter_use(0x30C, "MEMORY_MAP"),
    HeaderType(0x30D, "ERROR_RANGE", (("gpa", "Q"), ("compatibility_mask", "I"), ("size_bytes", "I")),
               aligned=True, checked_size=16),
    _parameter_use(0x30E, "COMMAND_LINE"),
    _parameter_use(0x30F, "SLIT"),
    _parameter_use(0x310, "PPTT"),
    HeaderType(0x311, "VBS_MEASUREMENT", (
        ("compatibility_mask", "I"), ("version", "I"), ("product_id", "I"), ("module_id", "I"),
        ("security_version", "I"), ("policy_flags", "I"), ("boot_digest_algo", "I"),
        ("signing_algo", "I"), ("boot_measurement_digest", "64s"), ("signature", "256s"),
        ("public_key", "512s")), checked_size=864),
    _parameter_use(0x312, "DEVICE_TREE"),
    _parameter_use(0x313, "ENVIRONMENT_INFO_PARAMETER"),
]

HEADER_TYPES: dict[int, HeaderType] = {t.code: t for t in _TYPES}
BY_NAME: dict[str, HeaderType] = {t.name: t for t in _TYPES}

#: Type codes that exist but whose body we keep opaque (layout not pinned
#: down from a source we could read: CCA_POLICY, unstable in igvm_defs).
OPAQUE_TYPES = {0x106: "CCA_POLICY", 0x306: "RESERVED_DO_NOT_USE"}

#: Parameter-usage headers: they write into a parameter area.
PARAMETER_TYPES = frozenset(t.code for t in _TYPES if t.fields == _PARAMETER)

for _kind in _TYPES:
    assert _kind.checked_size in (None, _kind.size), (hex(_kind.code), _kind.size)


def align8(n: int) -> int:
    return (n + 7) & ~7


def type_name(code: int) -> str:
    base = code & ~OPTIONAL_BIT
    known = HEADER_TYPES.get(base)
    name = known.name if known else OPAQUE_TYPES.get(base, f"UNKNOWN_{base:#x}")
    return name + ("|OPTIONAL" if code & OPTIONAL_BIT else "")
