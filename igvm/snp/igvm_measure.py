"""SNP launch digest of an IGVM file, with the igvm crate's semantics.

Walking the directives in file order and keeping those whose compatibility
mask covers the SNP platform (microsoft/igvm ``measurement/snp.rs``;
measure.md §2.3): shared PAGE_DATA is skipped; SECRETS and CPUID data types
become SECRETS/CPUID pages; the unmeasured flag gives UNMEASURED; everything
else is NORMAL with the SHA-384 of the (zero-padded) page; a PARAMETER_INSERT
is one UNMEASURED page per 4 KiB of its area; a VP_CONTEXT is a VMSA page at
the GPA its header names.

A page with no file data is where loaders differ: QEMU's IGVM loader and the
igvm crate measure a NORMAL page of zeros; Google's VMM and coconut's
``igvmmeasure --native-zero`` use the native ZERO page type (which is also how
QEMU measures OVMF's SEC_MEM sections when it launches OVMF with ``-bios``).
``zero_pages`` chooses; the default is QEMU's IGVM behaviour.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from typing import cast

from ..defs import PAGE_SIZE, PAGE_SIZE_2M, PageDataFlags, PageDataType, PlatformType
from ..file import Header, IgvmFile
from . import forkhash
from .pageinfo import ZERO_PAGE_SHA384, LaunchDigest, PageType, ParallelPageHasher

#: pages per batch handed to a hashing thread or process (1 MiB)
BATCH_PAGES = 256
#: files at least this large are hashed in forked worker processes when that is safe (forkhash.py)
FORK_MIN_BYTES = 16 << 20


class ZeroPages(enum.Enum):
    NORMAL = "normal"  # QEMU IGVM loader, igvm crate, igvmmeasure default
    NATIVE = "native"  # Google Vanadium, igvmmeasure --native-zero, QEMU's -bios SEC_MEM


def measure(igvm: IgvmFile, *, zero_pages: ZeroPages = ZeroPages.NORMAL, workers: int | None = None) -> bytes:
    """The SNP MEASUREMENT of launching ``igvm``.

    NORMAL pages with file data go to a hasher in batches of ``BATCH_PAGES``
    file offsets (worker processes for large files, else threads) and their
    digests come back in order into the serial chain; any other header first
    waits for every batch before it.
    """
    mask = igvm.mask_for(PlatformType.SEV_SNP)
    ld = LaunchDigest()
    areas: dict[int, int] = {}
    batch_gpas: list[int] = []
    batch_offsets: list[int] = []
    queued: deque[list[int]] = deque()  # GPAs of the batches in the hasher, in order
    with _hasher(igvm, workers) as hasher:
        def submit() -> None:
            if batch_offsets:
                for digests in hasher.submit(batch_offsets.copy()):
                    ld.add_pages(queued.popleft(), digests)
                queued.append(batch_gpas.copy())
                batch_gpas.clear()
                batch_offsets.clear()

        def flush() -> None:
            submit()
            for digests in hasher.drain():
                ld.add_pages(queued.popleft(), digests)

        for h in igvm.headers:
            code = h.code & 0x7FFFFFFF
            if code == 0x302:
                # PAGE_DATA's six fields are all integers (its defs.py layout)
                gpa, hmask, file_offset, flags, dtype, _ = cast("tuple[int, int, int, int, int, int]", h.values)
                if not hmask & mask or flags & _SHARED:
                    continue
                if dtype == 0 and not flags & (_UNMEASURED | _LARGE) and file_offset:
                    batch_gpas.append(gpa)
                    batch_offsets.append(file_offset)
                    if len(batch_offsets) >= BATCH_PAGES:
                        submit()
                    continue
                flush()
                _page_data(ld, igvm, h, zero_pages)
            elif code == 0x301:
                areas[h.int("parameter_area_index")] = h.int("number_of_bytes")
            elif code == 0x303 and h.int("compatibility_mask") & mask:
                flush()
                ld.add_empty(PageType.UNMEASURED, h.int("gpa"), areas[h.int("parameter_area_index")])
            elif code == 0x304 and h.int("compatibility_mask") & mask:
                flush()
                vmsa = igvm.read_data(h) or b""
                ld.add_vmsa(vmsa + bytes(PAGE_SIZE - len(vmsa)), h.int("gpa"))
        flush()
    return ld.ld


def _hasher(igvm: IgvmFile, workers: int | None) -> ParallelPageHasher | forkhash.ForkedPageHasher:
    """Worker processes for files large enough to repay the forks (when forking is safe here), else threads."""
    def read(offsets: Sequence[int]) -> bytes:
        return _read_pages(igvm, offsets)

    if igvm.total_size >= FORK_MIN_BYTES and (workers is None or workers > 1) and forkhash.usable():
        return forkhash.ForkedPageHasher(read, workers)
    return ParallelPageHasher(read, workers)


_SHARED = int(PageDataFlags.SHARED)
_UNMEASURED = int(PageDataFlags.UNMEASURED)
_LARGE = int(PageDataFlags.IS_2MB_PAGE)


def _page_data(ld: LaunchDigest, igvm: IgvmFile, h: Header, zero_pages: ZeroPages) -> None:
    flags, dtype, gpa = h.int("flags"), h.int("data_type"), h.int("gpa")
    size = PAGE_SIZE_2M if flags & PageDataFlags.IS_2MB_PAGE else PAGE_SIZE
    if dtype == PageDataType.SECRETS:
        ld.add_empty(PageType.SECRETS, gpa, size)
    elif dtype in (PageDataType.CPUID_DATA, PageDataType.CPUID_XF):
        ld.add_empty(PageType.CPUID, gpa, size)
    elif flags & PageDataFlags.UNMEASURED:
        ld.add_empty(PageType.UNMEASURED, gpa, size)
    else:
        data = igvm.read_data(h)
        if data is None:
            if zero_pages is ZeroPages.NATIVE:
                ld.add_empty(PageType.ZERO, gpa, size)
            else:
                ld.add_hashed(gpa, [ZERO_PAGE_SHA384] * (size // PAGE_SIZE))
        else:
            ld.add_normal(gpa, data)


def _read_pages(igvm: IgvmFile, offsets: Sequence[int]) -> bytes:
    """The pages at these file offsets, one read per contiguous stretch of the file."""
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
