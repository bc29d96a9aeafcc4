"""OVMF firmware images: the GUIDed footer table, SEV metadata and TDVF metadata.

edk2's ResetVector places a table of ``[data][u16 size][GUID]`` entries that
ends 32 bytes before the end of the image, terminated (at its highest
address) by the footer GUID whose entry size covers the whole table. Entries
are read backwards. Facts from edk2 ``OvmfPkg/ResetVector/Ia16/
ResetVectorVtf0.asm`` and ``X64/OvmfSevMetadata.asm``, cross-checked with
sev-snp-measure ``ovmf.py`` and dstack-mr ``tdvf.rs`` (measure.md §2.2, §3.1).
"""

from __future__ import annotations

import enum
import os
import struct
import uuid
from dataclasses import dataclass, field

from .errors import FirmwareError

FOUR_GB = 1 << 32
FOOTER_GUID = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d")
SEV_ES_RESET_BLOCK_GUID = uuid.UUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e")
SEV_HASH_TABLE_RV_GUID = uuid.UUID("7255371f-3a3b-4b04-927b-1da6efa8d454")
SEV_SECRET_BLOCK_GUID = uuid.UUID("4c2eb361-7d9b-4cc3-8081-127c90d3d294")
SEV_METADATA_GUID = uuid.UUID("dc886566-984a-4798-a75e-5585a7bf67cc")
TDX_METADATA_GUID = uuid.UUID("e47a6535-984a-4798-865e-4685a7bf8ec2")

_ENTRY_TAIL = 18  # u16 size + 16-byte GUID
_SEV_HEADER = struct.Struct("<4sIII")  # "ASEV", size, version, num_items
_SEV_ITEM = struct.Struct("<III")  # gpa, size, type
_TDVF_HEADER = struct.Struct("<4sIII")  # "TDVF", length, version, count
_TDVF_SECTION = struct.Struct("<IIQQII")


class SevSectionType(enum.IntEnum):
    """OVMF SEV metadata section types (OvmfSevMetadata.asm)."""

    SNP_SEC_MEM = 1
    SNP_SECRETS = 2
    CPUID = 3
    SVSM_CAA = 4
    SNP_KERNEL_HASHES = 0x10


class TdvfSectionType(enum.IntEnum):
    """TDVF metadata section types (Intel TDVF design guide, table 1.1-1)."""

    BFV = 0
    CFV = 1
    TD_HOB = 2
    TEMP_MEM = 3
    PERM_MEM = 4
    PAYLOAD = 5
    PAYLOAD_PARAM = 6


#: Largest section we accept. Real firmware declares kilobytes to a few MiB of
#: metadata memory; a bound keeps a hostile image from making a measurement
#: loop for hours (found by the property tests).
MAX_SECTION_BYTES = 1 << 30

TDVF_ATTR_MR_EXTEND = 0x1
TDVF_ATTR_PAGE_AUG = 0x2


@dataclass(frozen=True)
class SevSection:
    gpa: int
    size: int
    type: SevSectionType


@dataclass(frozen=True)
class TdvfSection:
    data_offset: int
    raw_data_size: int
    memory_address: int
    memory_data_size: int
    type: int
    attributes: int

    @property
    def extend(self) -> bool:
        return bool(self.attributes & TDVF_ATTR_MR_EXTEND)

    @property
    def page_aug(self) -> bool:
        return bool(self.attributes & TDVF_ATTR_PAGE_AUG)


@dataclass
class Ovmf:
    """A parsed firmware image. ``data`` is the whole file (a few MiB)."""

    data: bytes
    table: dict[uuid.UUID, bytes] = field(default_factory=dict)
    sev_sections: list[SevSection] = field(default_factory=list)
    tdvf_sections: list[TdvfSection] = field(default_factory=list)
    path: str = ""

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def gpa(self) -> int:
        """Where QEMU maps the flash image: it ends at 4 GiB."""
        return FOUR_GB - len(self.data)

    def _u32_entry(self, guid: uuid.UUID, what: str) -> int | None:
        entry = self.table.get(guid)
        if entry is None:
            return None
        if len(entry) < 4:
            raise FirmwareError(f"{what} entry of the OVMF footer table is {len(entry)} bytes, need 4")
        return int(struct.unpack_from("<I", entry)[0])

    @property
    def sev_es_reset_eip(self) -> int | None:
        """AP reset EIP for SEV-ES/SNP (first u32 of the SEV-ES reset block)."""
        return self._u32_entry(SEV_ES_RESET_BLOCK_GUID, "SEV-ES reset block")

    @property
    def sev_hashes_table_gpa(self) -> int | None:
        return self._u32_entry(SEV_HASH_TABLE_RV_GUID, "SEV hash table")

    def has_sev_section(self, kind: SevSectionType) -> bool:
        return any(s.type is kind for s in self.sev_sections)


def load(path: str | os.PathLike[str]) -> Ovmf:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise FirmwareError(f"cannot read firmware {os.fspath(path)!r}: {exc.strerror}") from None
    fw = parse(data)
    fw.path = os.fspath(path)
    return fw


def parse(data: bytes) -> Ovmf:
    """Parse footer table, SEV and TDVF metadata; raise FirmwareError if malformed."""
    fw = Ovmf(bytes(data))
    fw.table = _footer_table(fw.data)
    fw.sev_sections = _sev_metadata(fw)
    fw.tdvf_sections = _tdvf_metadata(fw)
    return fw


def _footer_table(data: bytes) -> dict[uuid.UUID, bytes]:
    end = len(data) - 32
    if end < _ENTRY_TAIL:
        raise FirmwareError(f"firmware of {len(data)} bytes is too small to hold a footer table")
    size, guid = struct.unpack_from("<H16s", data, end - _ENTRY_TAIL)
    if uuid.UUID(bytes_le=guid) != FOOTER_GUID:
        return {}  # no table: plain (non-confidential) firmware
    if size < _ENTRY_TAIL or size > end:
        raise FirmwareError(f"footer table size {size} is impossible for a {len(data)}-byte image")
    table: dict[uuid.UUID, bytes] = {}
    start = end - size
    pos = end - _ENTRY_TAIL  # the footer entry's own tail; entries precede it
    while pos - start >= _ENTRY_TAIL:
        entry_size, raw_guid = struct.unpack_from("<H16s", data, pos - _ENTRY_TAIL)
        if entry_size < _ENTRY_TAIL or entry_size > pos - start:
            raise FirmwareError(f"footer table entry at image offset {pos - _ENTRY_TAIL:#x} has "
                                f"invalid size {entry_size}")
        guid_value = uuid.UUID(bytes_le=raw_guid)
        if guid_value in table:
            raise FirmwareError(f"footer table lists {guid_value} twice")
        table[guid_value] = data[pos - entry_size:pos - _ENTRY_TAIL]
        pos -= entry_size
    return table


def _metadata_start(fw: Ovmf, guid: uuid.UUID, what: str) -> int | None:
    offset_from_end = fw._u32_entry(guid, what)
    if offset_from_end is None:
        return None
    if not 16 <= offset_from_end <= len(fw.data):
        raise FirmwareError(f"{what} offset {offset_from_end:#x} points outside the image")
    return len(fw.data) - offset_from_end


def _sev_metadata(fw: Ovmf) -> list[SevSection]:
    start = _metadata_start(fw, SEV_METADATA_GUID, "SEV metadata")
    if start is None:
        return []
    sig, size, version, count = _SEV_HEADER.unpack_from(fw.data, start)
    if sig != b"ASEV":
        raise FirmwareError(f"SEV metadata at image offset {start:#x} has signature {sig!r}, expected b'ASEV'")
    if version != 1:
        raise FirmwareError(f"SEV metadata version {version} is not 1")
    needed = _SEV_HEADER.size + count * _SEV_ITEM.size
    if size < needed or start + size > len(fw.data):
        raise FirmwareError(f"SEV metadata of {count} sections does not fit its size {size}")
    sections = []
    for i in range(count):
        gpa, length, kind = _SEV_ITEM.unpack_from(fw.data, start + _SEV_HEADER.size + i * _SEV_ITEM.size)
        try:
            stype = SevSectionType(kind)
        except ValueError:
            raise FirmwareError(f"SEV metadata section {i} has unknown type {kind:#x}") from None
        if length > MAX_SECTION_BYTES or gpa + length > FOUR_GB:
            raise FirmwareError(f"SEV metadata section {i} ({stype.name}) at {gpa:#x}+{length:#x} is implausibly "
                                f"large or crosses 4 GiB")
        if gpa % 4096 or length % 4096 or length == 0:
            raise FirmwareError(f"SEV metadata section {i} ({stype.name}) at {gpa:#x}+{length:#x} "
                                f"is not page-aligned")
        sections.append(SevSection(gpa, length, stype))
    return sections


def _tdvf_metadata(fw: Ovmf) -> list[TdvfSection]:
    start = _metadata_start(fw, TDX_METADATA_GUID, "TDVF metadata")
    if start is None:
        return []
    sig, length, version, count = _TDVF_HEADER.unpack_from(fw.data, start)
    if sig != b"TDVF":
        raise FirmwareError(f"TDVF metadata at image offset {start:#x} has signature {sig!r}")
    if version != 1:
        raise FirmwareError(f"TDVF metadata version {version} is not 1")
    if length < _TDVF_HEADER.size + count * _TDVF_SECTION.size or start + length > len(fw.data):
        raise FirmwareError(f"TDVF metadata of {count} sections does not fit its length {length}")
    sections = []
    for i in range(count):
        s = TdvfSection(*_TDVF_SECTION.unpack_from(fw.data, start + _TDVF_HEADER.size + i * _TDVF_SECTION.size))
        where = f"TDVF section {i} (type {s.type})"
        if s.memory_address % 4096 or s.memory_data_size % 4096:
            raise FirmwareError(f"{where} at {s.memory_address:#x}+{s.memory_data_size:#x} is not page-aligned")
        if s.memory_data_size > MAX_SECTION_BYTES or s.memory_address + s.memory_data_size > 1 << 52:
            raise FirmwareError(f"{where} at {s.memory_address:#x}+{s.memory_data_size:#x} is implausibly large")
        if s.raw_data_size > s.memory_data_size:
            raise FirmwareError(f"{where} has more raw data ({s.raw_data_size:#x}) than memory")
        if s.data_offset + s.raw_data_size > len(fw.data):
            raise FirmwareError(f"{where} data [{s.data_offset:#x}+{s.raw_data_size:#x}] is outside the image")
        sections.append(s)
    return sections
