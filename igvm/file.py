"""Reading, validating and writing IGVM files (format v1; v2 read and written).

The reader never trusts the file: every offset, length, alignment, section
transition, compatibility mask and cross-reference is checked before anything
is measured, and each fault raises :class:`IgvmError` naming the byte offset.
File data is read on demand with ``pread`` so a 1 GiB file is measured in
bounded memory.

The writer reproduces the igvm crate's serializer (microsoft/igvm
``igvm/src/lib.rs``): records in platform -> initialization -> directive order,
each on an 8-byte boundary with zero padding, file data appended in header
order right after the variable headers, page data padded to 4 KiB, identical
blobs stored once, CRC32 (IEEE, ``zlib.crc32``) over the fixed header with a
zero checksum plus the variable headers.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from .defs import (
    ARCH_AARCH64,
    ARCH_X64,
    FIXED_HEADER_V1,
    FIXED_HEADER_V2,
    FORMAT_V1,
    FORMAT_V2,
    HEADER_TYPES,
    MAGIC,
    OPAQUE_TYPES,
    OPTIONAL_BIT,
    PAGE_SIZE,
    SUPPORTED_PLATFORM,
    VARIABLE_HEADER,
    Data,
    FieldValue,
    HeaderType,
    PlatformType,
    Section,
    Validation,
    align8,
    section_of,
    type_name,
)
from .errors import IgvmError

DataSource = bytes | Callable[[], bytes]

#: Upper bound on the variable-header region we are willing to hold in memory
#: (a 1 GiB image of 4 KiB pages needs 8 MiB of PAGE_DATA records).
MAX_VARIABLE_HEADER = 256 * 1024 * 1024


class Header:
    """One variable-header record.

    Values are kept as a tuple in the order of :mod:`igvm.defs` (a 1 GiB image
    has a quarter of a million records, so no per-record dict); ``fields``
    gives them by name. A type kept opaque has a single ``body`` field.
    ``data`` is the file data the record points at: bytes, a zero-argument
    callable producing them (so a writer can stream a large image), or
    ``None`` for "no data" (file_offset 0).
    """

    __slots__ = ("code", "data", "offset", "values")

    def __init__(self, code: int, fields: dict[str, FieldValue], data: DataSource | None = None,
                 offset: int = 0) -> None:
        kind = HEADER_TYPES.get(code & ~OPTIONAL_BIT)
        names = kind.field_names if kind is not None else ("body",)
        self.code = code
        self.values: tuple[FieldValue, ...] = tuple(fields[name] for name in names)
        self.data = data
        self.offset = offset

    @classmethod
    def from_values(cls, code: int, values: tuple[FieldValue, ...], offset: int = 0) -> Header:
        header = cls.__new__(cls)
        header.code, header.values, header.data, header.offset = code, values, None, offset
        return header

    @property
    def kind(self) -> HeaderType | None:
        return HEADER_TYPES.get(self.code & ~OPTIONAL_BIT)

    @property
    def name(self) -> str:
        return type_name(self.code)

    @property
    def fields(self) -> dict[str, FieldValue]:
        kind = self.kind
        names = kind.field_names if kind is not None else ("body",)
        return dict(zip(names, self.values, strict=True))

    def get(self, key: str, default: FieldValue | None = None) -> FieldValue | None:
        kind = self.kind
        index = kind.index.get(key) if kind is not None else (0 if key == "body" else None)
        return default if index is None else self.values[index]

    def __getitem__(self, key: str) -> FieldValue:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def int(self, key: str) -> int:
        value = self[key]
        assert isinstance(value, int)
        return value

    def blob(self, key: str) -> bytes:
        value = self[key]
        assert isinstance(value, bytes)
        return value

    def replace(self, **values: FieldValue) -> Header:
        fields = self.fields
        fields.update(values)
        return Header(self.code, fields, self.data, self.offset)

    def body(self) -> bytes:
        kind = self.kind
        if kind is None:
            body = self.values[0]
            assert isinstance(body, bytes)
            return body
        return kind.struct.pack(*self.values)

    def load_data(self) -> bytes | None:
        if self.data is None or isinstance(self.data, bytes):
            return self.data
        return self.data()

    def __repr__(self) -> str:
        return f"Header({self.name}, {self.fields}, offset={self.offset:#x})"


def make(name_or_code: str | int, data: DataSource | None = None, **values: FieldValue) -> Header:
    """Build a header by type name with unspecified fields zero."""
    from .defs import BY_NAME

    kind = BY_NAME[name_or_code] if isinstance(name_or_code, str) else HEADER_TYPES[name_or_code]
    fields: dict[str, FieldValue] = {}
    for fname, fmt in kind.fields:
        fields[fname] = values.pop(fname, b"" if fmt.endswith("s") else 0)
    if values:
        raise TypeError(f"{kind.name} has no fields {sorted(values)}")
    return Header(kind.code, fields, data)


def data_size(header: Header) -> int | None:
    """Bytes of file data the record refers to, or None if it refers to none."""
    kind = header.kind
    return None if kind is None else kind.data_size(header)


# ---------------------------------------------------------------------------
# reading


@dataclass
class IgvmFile:
    """A validated IGVM file. Headers are decoded; file data is read lazily."""

    version: int
    headers: list[Header]
    architecture: int = ARCH_X64
    page_size: int = PAGE_SIZE
    total_size: int = 0
    _read: Callable[[int, int], bytes] | None = field(default=None, repr=False)
    #: the open file behind ``_read`` (kept open as long as this object lives)
    _handle: BinaryIO | None = field(default=None, repr=False)

    def pread(self, offset: int, size: int) -> bytes:
        """Raw bytes of the file (for batched reads of page data)."""
        if self._read is None:
            raise IgvmError(offset, "this IGVM object was built in memory and has no file to read")
        data = self._read(offset, size)
        if len(data) != size:
            raise IgvmError(offset, f"file data truncated: wanted {size} bytes, got {len(data)}")
        return data

    def read_data(self, header: Header) -> bytes | None:
        """The file data of ``header`` (None when its file_offset is 0)."""
        if header.data is not None:
            return header.load_data()
        offset = header.get("file_offset", 0)
        size = data_size(header)
        if not offset or size is None or self._read is None:
            return None
        assert isinstance(offset, int)
        return self._read(offset, size)

    def platforms(self) -> dict[int, int]:
        """compatibility mask -> platform type, from SUPPORTED_PLATFORM."""
        return {h.int("compatibility_mask"): h.int("platform_type")
                for h in self.headers if h.code == SUPPORTED_PLATFORM.code}

    def mask_for(self, platform: PlatformType) -> int:
        for mask, ptype in self.platforms().items():
            if ptype == platform:
                return mask
        raise IgvmError(0, f"file has no SUPPORTED_PLATFORM for {platform.name}")

    def with_data(self) -> IgvmFile:
        """A copy whose headers carry their data (for re-serialising)."""
        headers = [Header(h.code, h.fields, self.read_data(h), h.offset) for h in self.headers]
        return IgvmFile(self.version, headers, self.architecture, self.page_size, self.total_size,
                        self._read, self._handle)


def read(source: str | os.PathLike[str] | bytes | BinaryIO) -> IgvmFile:
    """Parse and validate an IGVM file from a path, bytes, or binary file object."""
    if isinstance(source, bytes | bytearray | memoryview):
        buf = bytes(source)

        def pread(off: int, size: int) -> bytes:
            return buf[off:off + size]

        return _parse(pread, len(buf))
    if isinstance(source, str | os.PathLike):
        fh: BinaryIO = open(source, "rb")  # noqa: SIM115 - lives as long as the IgvmFile
    else:
        fh = source
    try:
        fd = fh.fileno()
    except (AttributeError, io.UnsupportedOperation):
        fh.seek(0)
        return read(fh.read())
    size = os.fstat(fd).st_size

    def pread_fd(off: int, length: int) -> bytes:
        return os.pread(fd, length, off)

    result = _parse(pread_fd, size)
    result._handle = fh
    return result


def _parse(pread: Callable[[int, int], bytes], size: int) -> IgvmFile:
    if size < FIXED_HEADER_V1.size:
        raise IgvmError(0, f"file is {size} bytes, shorter than the {FIXED_HEADER_V1.size}-byte fixed header")
    magic, version, vh_offset, vh_size, total, checksum = FIXED_HEADER_V1.unpack(pread(0, FIXED_HEADER_V1.size))
    if magic != MAGIC:
        raise IgvmError(0, f"bad magic {magic:#010x}, expected {MAGIC:#010x} ('IGVM')")
    if version not in (FORMAT_V1, FORMAT_V2):
        raise IgvmError(4, f"unsupported format version {version}")
    fixed = FIXED_HEADER_V1 if version == FORMAT_V1 else FIXED_HEADER_V2
    architecture, page_size = ARCH_X64, PAGE_SIZE
    if version == FORMAT_V2:
        if size < FIXED_HEADER_V2.size:
            raise IgvmError(0, "file is shorter than the v2 fixed header")
        architecture, page_size = struct.unpack("<II", pread(24, 8))
        if architecture not in (ARCH_X64, ARCH_AARCH64):
            raise IgvmError(0x18, f"unknown architecture {architecture}")
        if page_size != PAGE_SIZE:
            raise IgvmError(0x1C, f"page size {page_size} unsupported (only 4096)")
    if total != size:
        raise IgvmError(0x10, f"total_file_size says {total} bytes but the file has {size}")
    if vh_offset < fixed.size or vh_offset % 8:
        raise IgvmError(8, f"variable_header_offset {vh_offset:#x} is below the fixed header or not 8-aligned")
    if vh_size > MAX_VARIABLE_HEADER:
        raise IgvmError(0xC, f"variable_header_size {vh_size} exceeds the {MAX_VARIABLE_HEADER}-byte limit")
    vh_end = vh_offset + vh_size
    if vh_end > size:
        raise IgvmError(0xC, f"variable headers end at {vh_end:#x}, past the end of the file ({size:#x})")
    head = pread(0, vh_end)
    crc = zlib.crc32(head[:0x14] + b"\0\0\0\0" + head[0x18:])
    if crc != checksum:
        raise IgvmError(0x14, f"CRC32 {checksum:#010x} does not match the headers ({crc:#010x})")
    headers = list(_records(head, vh_offset, vh_end))
    _validate(headers, vh_end, size)
    return IgvmFile(version, headers, architecture, page_size, size, pread)


def _records(buf: bytes, start: int, end: int) -> Iterator[Header]:
    offset = start
    section = Section.PLATFORM
    view = memoryview(buf)
    while offset < end:
        if end - offset < VARIABLE_HEADER.size:
            raise IgvmError(offset, f"{end - offset} trailing bytes cannot hold a variable header")
        code, length = VARIABLE_HEADER.unpack_from(buf, offset)
        body_at = offset + VARIABLE_HEADER.size
        if length > end - body_at:
            raise IgvmError(offset, f"{type_name(code)} of length {length} runs past the variable headers")
        nxt = align8(body_at + length)
        if nxt > end:
            raise IgvmError(offset, f"{type_name(code)} padding runs past the variable headers")
        if any(view[body_at + length:nxt]):
            raise IgvmError(body_at + length, "padding after a variable header is not zero")
        rec_section = section_of(code)
        if rec_section is None:
            raise IgvmError(offset, f"type code {code:#x} is in no section")
        if rec_section < section:
            raise IgvmError(offset, f"{type_name(code)} ({rec_section.name.lower()}) after a "
                                    f"{section.name.lower()} header: sections out of order")
        section = rec_section
        base = code & ~OPTIONAL_BIT
        kind = HEADER_TYPES.get(base)
        if kind is None:
            if base not in OPAQUE_TYPES and not code & OPTIONAL_BIT:
                raise IgvmError(offset, f"unknown required header type {code:#x}")
            yield Header.from_values(code, (bytes(view[body_at:body_at + length]),), offset)
        else:
            if length != kind.size:
                raise IgvmError(offset, f"{kind.name} has length {length}, expected {kind.size}")
            yield Header.from_values(code, kind.struct.unpack_from(buf, body_at), offset)
        offset = nxt


def _validate(headers: Sequence[Header], data_start: int, size: int) -> None:
    """Cross-record checks (masks, alignment, overlaps, parameter areas, data ranges): each
    header type's own, from its row in :data:`igvm.defs.HEADER_TYPES`."""
    seen = Validation(headers, data_start, size)
    quick = {kind.code: kind.quick for kind in HEADER_TYPES.values() if kind.quick is not None}
    for h in headers:
        fast = quick.get(h.code)
        if fast is not None and fast(h, seen):
            continue  # the common record passed; anything unusual takes the full checks
        kind = h.kind
        if kind is not None:
            for check in kind.checks:
                check(h, kind, seen)


# ---------------------------------------------------------------------------
# writing


def write(headers: Sequence[Header], out: BinaryIO, *, version: int = FORMAT_V1,
          architecture: int = ARCH_X64) -> int:
    """Serialise ``headers`` (with their data) to the seekable ``out``; return its size.

    Data is streamed: each blob is produced, de-duplicated by SHA-256 and
    written before the next is asked for, so images larger than memory work.
    """
    fixed = FIXED_HEADER_V1 if version == FORMAT_V1 else FIXED_HEADER_V2
    ordered = sorted(headers, key=lambda h: _section_key(h))
    vh_size = sum(align8(VARIABLE_HEADER.size + len(h.body())) for h in ordered)
    data_start = fixed.size + vh_size
    base = out.tell()
    out.seek(base + data_start)
    position = data_start
    seen: dict[bytes, int] = {}
    bodies = []
    for h in ordered:
        fields = h.fields
        size = data_size(h)
        blob = h.load_data() if size is not None else None
        if size is not None:
            if blob is None:
                fields["file_offset"] = 0
            else:
                if len(blob) > size:
                    raise ValueError(f"{h.name} data is {len(blob)} bytes, more than its {size}")
                if h.kind is not None and h.kind.data is not Data.SIZED:
                    blob = blob + bytes(size - len(blob))
                key = hashlib.sha256(blob).digest()
                if key not in seen:
                    seen[key] = position
                    out.write(blob)
                    position += len(blob)
                fields["file_offset"] = seen[key]
        body = Header(h.code, fields).body()
        record = VARIABLE_HEADER.pack(h.code, len(body)) + body
        bodies.append(record + bytes(align8(len(record)) - len(record)))
    if position >= 1 << 32:
        raise ValueError(f"IGVM file would be {position} bytes; v1 offsets are 32-bit")
    variable = b"".join(bodies)
    head = [MAGIC, version, fixed.size, len(variable), position, 0]
    if version == FORMAT_V2:
        head += [architecture, PAGE_SIZE]
    crc = zlib.crc32(fixed.pack(*head) + variable)
    head[5] = crc
    out.seek(base)
    out.write(fixed.pack(*head) + variable)
    out.seek(base + position)
    return position


def to_bytes(headers: Sequence[Header], *, version: int = FORMAT_V1) -> bytes:
    buf = io.BytesIO()
    write(headers, buf, version=version)
    return buf.getvalue()


def _section_key(h: Header) -> int:
    section = section_of(h.code)
    if section is None:
        raise ValueError(f"header type {h.code:#x} is in no section")
    return int(section)
