"""TDX MRTD of an IGVM file (microsoft/igvm ``measurement/tdx.rs``).

For every PAGE_DATA of the TDX platform that is not shared: PAGE.ADD at its
GPA, then, unless it is unmeasured, MR.EXTEND over its 4 KiB (zeros when it
has no data). A PARAMETER_INSERT adds each page of its area without
extending. SECRETS/CPUID data types mean nothing to TDX. Single pass, in
directive order. TDX has no VP_CONTEXT: the reset state is architectural.
"""

from __future__ import annotations

from ..defs import PAGE_SIZE, PAGE_SIZE_2M, PageDataFlags, PlatformType
from ..errors import IgvmError
from ..file import IgvmFile
from .mrtd import ZERO_PAGE, Mrtd


def measure(igvm: IgvmFile) -> bytes:
    mask = igvm.mask_for(PlatformType.TDX)
    m = Mrtd()
    areas: dict[int, int] = {}
    for h in igvm.headers:
        code = h.code & 0x7FFFFFFF
        if code == 0x301:
            areas[h.int("parameter_area_index")] = h.int("number_of_bytes")
            continue
        if code not in (0x302, 0x303, 0x304) or not h.int("compatibility_mask") & mask:
            continue
        if code == 0x304:
            raise IgvmError(h.offset, "VP_CONTEXT is not valid for TDX (its reset state is architectural)")
        if code == 0x303:
            gpa = h.int("gpa")
            for off in range(0, areas[h.int("parameter_area_index")], PAGE_SIZE):
                m.page_add(gpa + off)
            continue
        flags = h.int("flags")
        if flags & PageDataFlags.SHARED:
            continue
        size = PAGE_SIZE_2M if flags & PageDataFlags.IS_2MB_PAGE else PAGE_SIZE
        data = None if flags & PageDataFlags.UNMEASURED else igvm.read_data(h)
        for off in range(0, size, PAGE_SIZE):
            gpa = h.int("gpa") + off
            m.page_add(gpa)
            if not flags & PageDataFlags.UNMEASURED:
                page = data[off:off + PAGE_SIZE] if data is not None else ZERO_PAGE
                m.extend(gpa, page + bytes(PAGE_SIZE - len(page)))
    return m.digest()
