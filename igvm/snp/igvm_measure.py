"""SNP launch digest of an IGVM file, with the igvm crate's semantics.

The launch digest of the page events of the SNP platform (:mod:`igvm.directives`;
microsoft/igvm ``measurement/snp.rs``; measure.md §2.3): SECRETS and CPUID
data types become SECRETS/CPUID pages; the unmeasured flag gives UNMEASURED;
everything else is NORMAL with the SHA-384 of the (zero-padded) page; a
parameter area is one UNMEASURED page per 4 KiB; a VP context is a VMSA page.

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

from ..defs import PAGE_SIZE, PageDataType, PlatformType
from ..directives import DataPage, FilePages, ParameterPages, page_events, read_pages
from ..file import IgvmFile
from . import forkhash
from .pageinfo import ZERO_PAGE_SHA384, LaunchDigest, PageType, ParallelPageHasher

#: files at least this large are hashed in forked worker processes when that is safe (forkhash.py)
FORK_MIN_BYTES = 16 << 20


class ZeroPages(enum.Enum):
    NORMAL = "normal"  # QEMU IGVM loader, igvm crate, igvmmeasure default
    NATIVE = "native"  # Google Vanadium, igvmmeasure --native-zero, QEMU's -bios SEC_MEM


def measure(igvm: IgvmFile, *, zero_pages: ZeroPages = ZeroPages.NORMAL, workers: int | None = None) -> bytes:
    """The SNP MEASUREMENT of launching ``igvm``.

    Each run of file pages goes to a hasher as one batch (worker processes for
    large files, else threads) and their digests come back in order into the
    serial chain; any other event first waits for every batch before it.
    """
    ld = LaunchDigest()
    queued: deque[list[int]] = deque()  # GPAs of the batches in the hasher, in order
    with _hasher(igvm, workers) as hasher:
        def flush() -> None:
            for digests in hasher.drain():
                ld.add_pages(queued.popleft(), digests)

        for event in page_events(igvm, PlatformType.SEV_SNP):
            if isinstance(event, FilePages):
                for digests in hasher.submit(event.offsets):
                    ld.add_pages(queued.popleft(), digests)
                queued.append(event.gpas)
                continue
            flush()
            if isinstance(event, DataPage):
                _page_data(ld, event, zero_pages)
            elif isinstance(event, ParameterPages):
                ld.add_empty(PageType.UNMEASURED, event.gpa, event.size)
            else:
                ld.add_vmsa(event.vmsa, event.gpa)
        flush()
    return ld.ld


def _hasher(igvm: IgvmFile, workers: int | None) -> ParallelPageHasher | forkhash.ForkedPageHasher:
    """Worker processes for files large enough to repay the forks (when forking is safe here), else threads."""
    def read(offsets: Sequence[int]) -> bytes:
        return read_pages(igvm, offsets)

    if igvm.total_size >= FORK_MIN_BYTES and (workers is None or workers > 1) and forkhash.usable():
        return forkhash.ForkedPageHasher(read, workers)
    return ParallelPageHasher(read, workers)


def _page_data(ld: LaunchDigest, page: DataPage, zero_pages: ZeroPages) -> None:
    if page.data_type == PageDataType.SECRETS:
        ld.add_empty(PageType.SECRETS, page.gpa, page.size)
    elif page.data_type in (PageDataType.CPUID_DATA, PageDataType.CPUID_XF):
        ld.add_empty(PageType.CPUID, page.gpa, page.size)
    elif page.unmeasured:
        ld.add_empty(PageType.UNMEASURED, page.gpa, page.size)
    elif page.data is None:
        if zero_pages is ZeroPages.NATIVE:
            ld.add_empty(PageType.ZERO, page.gpa, page.size)
        else:
            ld.add_hashed(page.gpa, [ZERO_PAGE_SHA384] * (page.size // PAGE_SIZE))
    else:
        ld.add_normal(page.gpa, page.data)
