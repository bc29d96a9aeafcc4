"""TDX MRTD from TDVF metadata: both page-add orders, against a straightforward reference loop."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from igvm import ovmf
from igvm.errors import FirmwareError
from igvm.ovmf import TdvfSection
from igvm.tdx.mrtd import tdvf_mrtd
from launcher.fwgen import make_firmware


def reference_mrtd(fw: ovmf.Ovmf, two_pass: bool) -> bytes:
    """One 128-byte record per operation, built the plainest possible way."""
    h = hashlib.sha384()

    def rec(op: bytes, gpa: int) -> bytes:
        buf = bytearray(128)
        buf[:len(op)] = op
        buf[16:24] = gpa.to_bytes(8, "little")
        return bytes(buf)

    for s in fw.tdvf_sections:
        npages = s.memory_data_size // 4096
        raw = fw.data[s.data_offset:s.data_offset + s.raw_data_size].ljust(s.memory_data_size, b"\0")

        def add(p: int, s: TdvfSection = s) -> None:
            if not s.attributes & 2:
                h.update(rec(b"MEM.PAGE.ADD", s.memory_address + p * 4096))

        def extend(p: int, s: TdvfSection = s, raw: bytes = raw) -> None:
            if s.attributes & 1:
                for c in range(16):
                    off = p * 4096 + c * 256
                    h.update(rec(b"MR.EXTEND", s.memory_address + off))
                    h.update(raw[off:off + 256])

        if two_pass:
            for p in range(npages):
                add(p)
            for p in range(npages):
                extend(p)
        else:
            for p in range(npages):
                add(p)
                extend(p)
    return h.digest()


def test_debian_ovmf_known_values(debian_ovmf: Path) -> None:
    # Values the research brief computed for ovmf 2022.11-6+deb12u2 (measure.md §6.2)
    fw = ovmf.load(debian_ovmf)
    assert tdvf_mrtd(fw).hex().startswith("4c7206f0f483c524f12c366c711e9049")
    assert tdvf_mrtd(fw, two_pass=True).hex().startswith("acccbcc870a381adab0d3919d90a7f26")
    assert tdvf_mrtd(fw) == reference_mrtd(fw, False)
    assert tdvf_mrtd(fw, two_pass=True) == reference_mrtd(fw, True)


@pytest.mark.parametrize("two_pass", [False, True])
def test_synthetic_sections(two_pass: bool) -> None:
    size = 0x40000
    sections = [
        (0x10000, 0x3000, 0xFFFF0000, 0x3000, 0, 1),  # BFV, extended
        (0x20000, 0x1000, 0xFFFE0000, 0x2000, 1, 0),  # CFV, raw shorter than memory, not extended
        (0, 0, 0x800000, 0x2000, 2, 0),  # TD_HOB
        (0, 0, 0x900000, 0x4000, 3, 2),  # PAGE_AUG temp memory: not added at build time
        (0x30000, 0x800, 0x700000, 0x1000, 0, 1),  # extended, partial raw data (zero-filled)
    ]
    fw = ovmf.parse(make_firmware(size, sev_sections=[], tdvf_sections=sections, hashes_gpa=None))
    assert len(fw.tdvf_sections) == 5
    assert tdvf_mrtd(fw, two_pass=two_pass) == reference_mrtd(fw, two_pass)
    if not two_pass:
        assert tdvf_mrtd(fw) != tdvf_mrtd(fw, two_pass=True)


def test_no_tdvf_metadata() -> None:
    with pytest.raises(FirmwareError, match="no TDVF metadata"):
        tdvf_mrtd(ovmf.parse(make_firmware()))


def test_bad_tdvf_sections() -> None:
    bad = [(0x10000, 0x3000, 0xFFFF0001, 0x3000, 0, 1)]
    with pytest.raises(FirmwareError, match="not page-aligned"):
        ovmf.parse(make_firmware(sev_sections=[], tdvf_sections=bad))
    too_much_raw = [(0x10000, 0x4000, 0xFFFF0000, 0x3000, 0, 1)]
    with pytest.raises(FirmwareError, match="more raw data"):
        ovmf.parse(make_firmware(sev_sections=[], tdvf_sections=too_much_raw))
    outside = [(0x3F000, 0x3000, 0xFFFF0000, 0x3000, 0, 1)]
    with pytest.raises(FirmwareError, match="outside the image"):
        ovmf.parse(make_firmware(sev_sections=[], tdvf_sections=outside))
