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
from collections.abc import Iterator

from ..defs import PAGE_SIZE, PAGE_SIZE_2M, PageDataFlags, PageDataType, PlatformType
from ..file import Header, IgvmFile
from . import forkhash
from .pageinfo import ZERO_PAGE_SHA384, LaunchDigest, PageType, ParallelPageHasher

#: pages per batch handed to a hashing thread or process (1 MiB)
BATCH_PAGES = 256
#: runs of at least this many batches are hashed in forked processes when that is safe (forkhash.py)
FORK_MIN_BATCHES = 16


class ZeroPages(enum.Enum):
    NORMAL = "normal"  # QEMU IGVM loader, igvm crate, igvmmeasure default
    NATIVE = "native"  # Google Vanadium, igvmmeasure --native-zero, QEMU's -bios SEC_MEM


def measure(igvm: IgvmFile, *, zero_pages: ZeroPages = ZeroPages.NORMAL, workers: int | None = None) -> bytes:
    """The SNP MEASUREMENT of launching ``igvm``."""
    mask = igvm.mask_for(PlatformType.SEV_SNP)
    ld = LaunchDigest()
    areas: dict[int, int] = {}
    run: list[tuple[int, int]] = []  # (gpa, file_offset) of consecutive NORMAL data pages awaiting hashing
    with ParallelPageHasher(workers) as hasher:
        def flush() -> None:
            if run:
                for pages, digests in _hash_run(igvm, run, hasher):
                    ld.add_pages([gpa for gpa, _ in pages], digests)
                run.clear()

        for h in igvm.headers:
            code = h.code & 0x7FFFFFFF
            if code == 0x302:
                gpa, hmask, file_offset, flags, dtype, _ = h.values
                if not hmask & mask or flags & _SHARED:
                    continue
                if dtype == 0 and not flags & (_UNMEASURED | _LARGE) and file_offset:
                    run.append((gpa, file_offset))  # type: ignore[arg-type]
                    if len(run) >= BATCH_PAGES * 64:
                        flush()
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


def _hash_run(igvm: IgvmFile, run: list[tuple[int, int]], hasher: ParallelPageHasher
              ) -> Iterator[tuple[list[tuple[int, int]], list[bytes]]]:
    """Read ``run``'s pages in coalesced batches and hash them in worker processes or on the pool, in order."""
    batches = [run[start:start + BATCH_PAGES] for start in range(0, len(run), BATCH_PAGES)]
    if len(batches) >= FORK_MIN_BATCHES and forkhash.usable():
        yield from zip(batches, forkhash.hash_batches(lambda b: _read_batch(igvm, b), batches, forkhash.workers()),
                       strict=True)
        return
    queued: deque[list[tuple[int, int]]] = deque()
    for batch in batches:
        queued.append(batch)
        for digests in hasher.submit(_read_batch(igvm, batch)):
            yield queued.popleft(), digests
    for digests in hasher.drain():
        yield queued.popleft(), digests


def _read_batch(igvm: IgvmFile, batch: list[tuple[int, int]]) -> bytes:
    """The batch's page data, one read per contiguous stretch of the file."""
    read = igvm.pread
    parts: list[bytes] = []
    first = prev = batch[0][1]
    for _, off in batch[1:]:
        if off != prev + PAGE_SIZE:
            parts.append(read(first, prev + PAGE_SIZE - first))
            first = off
        prev = off
    parts.append(read(first, prev + PAGE_SIZE - first))
    return parts[0] if len(parts) == 1 else b"".join(parts)
