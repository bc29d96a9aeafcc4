"""TDX MRTD: the build-time measurement the TDX module accumulates.

MRTD is one SHA-384 stream over 128-byte records (Intel TDX module ABI,
TDH.MEM.PAGE.ADD and TDH.MR.EXTEND): PAGE.ADD hashes ``"MEM.PAGE.ADD"``
zero-padded to 16 bytes, the page GPA (u64) and 104 zero bytes; MR.EXTEND does
the same with ``"MR.EXTEND"`` and the GPA of each 256-byte chunk, followed by
those 256 bytes. TDH.MR.FINALIZE outputs the digest. (edgelesssys/contrast
``tools/tdx-measure/mrtd``, microsoft/igvm ``measurement/tdx.rs``,
dstack-mr ``tdvf.rs``; measure.md §3.1.)

QEMU >= 9 (KVM_TDX_INIT_MEM_REGION with the measure flag) adds and extends
page by page ("single pass"); the QEMU 8.x TDX trees added every page of a
section before extending any ("two pass"). A flag picks.
"""

from __future__ import annotations

import hashlib
import struct

from ..errors import FirmwareError
from ..ovmf import Ovmf, TdvfSection

PAGE = 4096
CHUNK = 256
_ADD = b"MEM.PAGE.ADD".ljust(16, b"\0")
_EXTEND = b"MR.EXTEND".ljust(16, b"\0")
_GPA = struct.Struct("<Q")
_PAD = bytes(104)
ZERO_PAGE = bytes(PAGE)


class Mrtd:
    __slots__ = ("_h",)

    def __init__(self) -> None:
        self._h = hashlib.sha384()

    def page_add(self, gpa: int) -> None:
        self._h.update(_ADD + _GPA.pack(gpa) + _PAD)

    def extend(self, gpa: int, page: bytes | memoryview) -> None:
        """MR.EXTEND the 16 chunks of one 4 KiB page."""
        if len(page) != PAGE:
            raise ValueError("MR.EXTEND takes whole 4 KiB pages")
        view = memoryview(page)
        pack = _GPA.pack
        self._h.update(b"".join(
            b"".join((_EXTEND, pack(gpa + off), _PAD, view[off:off + CHUNK])) for off in range(0, PAGE, CHUNK)))

    def digest(self) -> bytes:
        return self._h.digest()


def tdvf_mrtd(fw: Ovmf, *, two_pass: bool = False) -> bytes:
    """MRTD of a TD launched from this TDVF/OVMF image."""
    if not fw.tdvf_sections:
        raise FirmwareError("firmware has no TDVF metadata (e47a6535-...): it cannot launch a TD")
    m = Mrtd()
    for s in fw.tdvf_sections:
        pages = range(s.memory_address, s.memory_address + s.memory_data_size, PAGE)

        def page_data(gpa: int, s: TdvfSection = s) -> bytes:
            off = gpa - s.memory_address
            chunk = fw.data[s.data_offset + off:s.data_offset + min(off + PAGE, s.raw_data_size)] \
                if off < s.raw_data_size else b""
            return chunk + bytes(PAGE - len(chunk))

        if two_pass:
            if not s.page_aug:
                for gpa in pages:
                    m.page_add(gpa)
            if s.extend:
                for gpa in pages:
                    m.extend(gpa, page_data(gpa))
        else:
            for gpa in pages:
                if not s.page_aug:
                    m.page_add(gpa)
                if s.extend:
                    m.extend(gpa, page_data(gpa))
    return m.digest()
