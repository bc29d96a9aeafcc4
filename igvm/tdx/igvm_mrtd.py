"""TDX MRTD of an IGVM file (microsoft/igvm ``measurement/tdx.rs``).

The MRTD of the page events of the TDX platform (:mod:`igvm.directives`), in
order: every page is PAGE.ADDed at its GPA, then, unless it is unmeasured,
MR.EXTENDed over its 4 KiB (zeros when it has no data). A parameter area's
pages are added without extending. SECRETS/CPUID data types mean nothing to
TDX. There is no VP context (the events refuse one: its reset state is
architectural).
"""

from __future__ import annotations

from ..defs import PAGE_SIZE, PlatformType
from ..directives import DataPage, FilePages, ParameterPages, page_events, read_pages
from ..file import IgvmFile
from .mrtd import ZERO_PAGE, Mrtd


def measure(igvm: IgvmFile) -> bytes:
    m = Mrtd()
    for event in page_events(igvm, PlatformType.TDX):
        if isinstance(event, FilePages):
            view = memoryview(read_pages(igvm, event.offsets))
            for i, gpa in enumerate(event.gpas):
                m.page_add(gpa)
                m.extend(gpa, view[i * PAGE_SIZE:(i + 1) * PAGE_SIZE])
        elif isinstance(event, DataPage):
            for off in range(0, event.size, PAGE_SIZE):
                gpa = event.gpa + off
                m.page_add(gpa)
                if not event.unmeasured:
                    page = event.data[off:off + PAGE_SIZE] if event.data is not None else ZERO_PAGE
                    m.extend(gpa, page + bytes(PAGE_SIZE - len(page)))
        elif isinstance(event, ParameterPages):
            for off in range(0, event.size, PAGE_SIZE):
                m.page_add(event.gpa + off)
        else:
            raise AssertionError(f"page_events gave TDX a VP context at {event.gpa:#x}")
    return m.digest()
