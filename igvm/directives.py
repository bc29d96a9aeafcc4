"""Directives -> page events: what a loader puts into guest memory for one platform, in order.

The one walk over an IGVM file's directives that both launch measurements
consume (SNP: :mod:`igvm.snp.igvm_measure`; TDX: :mod:`igvm.tdx.igvm_mrtd`),
with the igvm crate's semantics (microsoft/igvm ``measurement/snp.rs`` and
``tdx.rs``; measure.md §2.3): directives in file order whose compatibility
mask covers the platform; shared PAGE_DATA places nothing; PARAMETER_AREA
only declares an area's size; a PARAMETER_INSERT places its area, which the
loader fills; a VP_CONTEXT places the VMSA at the GPA its header names. What a
page *means* (SECRETS, CPUID, unmeasured, a page without data) is the hasher's
to decide, so a page event says what the file says.

Pure: the file is read, never written, and nothing else is touched. Events are
produced lazily, so a 1 GiB image is walked in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .defs import (
    OPTIONAL_BIT,
    PAGE_DATA,
    PAGE_SIZE,
    PAGE_SIZE_2M,
    PARAMETER_AREA,
    PARAMETER_INSERT,
    VP_CONTEXT,
    PageDataFlags,
    PageValues,
    PlatformType,
)
from .errors import IgvmError
from .file import IgvmFile

#: pages per FilePages event at most (1 MiB: one batch for a hashing worker)
RUN_PAGES = 256


@dataclass(frozen=True, slots=True)
class FilePages:
    """Measured 4 KiB NORMAL pages whose bytes are in the file, the common case (a run of
    consecutive such PAGE_DATA, at most ``RUN_PAGES``): the page at ``gpas[i]`` holds the
    4 KiB at file offset ``offsets[i]`` (read them with :func:`read_pages`)."""

    gpas: list[int]
    offsets: list[int]


@dataclass(frozen=True, slots=True)
class DataPage:
    """Any other PAGE_DATA: ``size`` bytes (4 KiB or 2 MiB) at ``gpa`` of ``data_type``
    (:class:`igvm.defs.PageDataType`). ``data`` is the file data (None when the header
    has none, or when it is unmeasured, whose contents no measurement reads)."""

    gpa: int
    size: int
    data_type: int
    unmeasured: bool
    data: bytes | None


@dataclass(frozen=True, slots=True)
class ParameterPages:
    """A PARAMETER_INSERT: the ``size`` bytes of a parameter area at ``gpa``, filled by the loader."""

    gpa: int
    size: int


@dataclass(frozen=True, slots=True)
class VpContext:
    """A VP_CONTEXT: the 4 KiB VMSA page (zero-padded) at ``gpa``."""

    gpa: int
    vmsa: bytes


PageEvent = FilePages | DataPage | ParameterPages | VpContext

_SHARED = int(PageDataFlags.SHARED)
_UNMEASURED = int(PageDataFlags.UNMEASURED)
_LARGE = int(PageDataFlags.IS_2MB_PAGE)


def page_events(igvm: IgvmFile, platform: PlatformType) -> Iterator[PageEvent]:
    """The page events of launching ``igvm`` on ``platform``, in directive order.

    Raises :class:`IgvmError` if the file declares no such platform, or has a
    directive for it that its header type's row says is not valid there.
    """
    mask = igvm.mask_for(platform)
    areas: dict[int, int] = {}
    gpas: list[int] = []
    offsets: list[int] = []
    page, area, insert, vp = PAGE_DATA.code, PARAMETER_AREA.code, PARAMETER_INSERT.code, VP_CONTEXT.code
    # locals: this loop runs once a page
    required, shared, special, run = ~OPTIONAL_BIT, _SHARED, _UNMEASURED | _LARGE, RUN_PAGES
    for h in igvm.headers:
        code = h.code & required
        if code == page:
            values: PageValues = h.values  # type: ignore[assignment]  # PAGE_DATA's layout; cast() costs a call per page
            gpa, hmask, file_offset, flags, dtype, _ = values
            if not hmask & mask or flags & shared:
                continue
            if dtype == 0 and not flags & special and file_offset:
                gpas.append(gpa)
                offsets.append(file_offset)
                if len(offsets) >= run:
                    yield FilePages(gpas, offsets)
                    gpas, offsets = [], []
                continue
            if offsets:
                yield FilePages(gpas, offsets)
                gpas, offsets = [], []
            unmeasured = bool(flags & _UNMEASURED)
            yield DataPage(gpa, PAGE_SIZE_2M if flags & _LARGE else PAGE_SIZE, dtype, unmeasured,
                           None if unmeasured else igvm.read_data(h))
        elif code == area:
            areas[h.int("parameter_area_index")] = h.int("number_of_bytes")
        elif code in (insert, vp) and h.int("compatibility_mask") & mask:
            kind = h.kind
            assert kind is not None
            reason = kind.not_for.get(platform)
            if reason is not None:
                raise IgvmError(h.offset, f"{kind.name} is not valid for {platform.name} ({reason})")
            if offsets:
                yield FilePages(gpas, offsets)
                gpas, offsets = [], []
            if code == insert:
                yield ParameterPages(h.int("gpa"), areas[h.int("parameter_area_index")])
            else:
                vmsa = igvm.read_data(h) or b""
                yield VpContext(h.int("gpa"), vmsa + bytes(PAGE_SIZE - len(vmsa)))
    if offsets:
        yield FilePages(gpas, offsets)


def read_pages(igvm: IgvmFile, offsets: Sequence[int]) -> bytes:
    """The 4 KiB pages at these file offsets, one read per contiguous stretch of the file."""
    read = igvm.pread
    parts: list[bytes] = []
    first = prev = offsets[0]
    for off in offsets[1:]:
        if off != prev + PAGE_SIZE:
            parts.append(read(first, prev + PAGE_SIZE - first))
            first = off
        prev = off
    parts.append(read(first, prev + PAGE_SIZE - first))
    return parts[0] if len(parts) == 1 else b"".join(parts)
