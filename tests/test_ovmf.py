"""OVMF footer-table / metadata parsing: known layout, and only FirmwareError on bad input."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from igvm import ovmf
from igvm.errors import FirmwareError
from igvm.snp.launch import SnpLaunch, snp_digest
from igvm.tdx.mrtd import tdvf_mrtd
from launcher.fwgen import DEFAULT_SEV, make_firmware


def test_debian_ovmf_layout(debian_ovmf: Path) -> None:
    fw = ovmf.load(debian_ovmf)
    assert fw.gpa == (1 << 32) - fw.size
    assert fw.sev_es_reset_eip == 0x80B004
    assert [s.type for s in fw.sev_sections] == [ovmf.SevSectionType.SNP_SEC_MEM, ovmf.SevSectionType.SNP_SEC_MEM,
                                                 ovmf.SevSectionType.SNP_SECRETS, ovmf.SevSectionType.CPUID,
                                                 ovmf.SevSectionType.SNP_SEC_MEM]
    assert not fw.has_sev_section(ovmf.SevSectionType.SNP_KERNEL_HASHES)
    bfv = fw.tdvf_sections[0]
    assert (bfv.memory_address, bfv.memory_data_size, bfv.extend) == (0xFFE20000, 0x1E0000, True)


def test_synthetic_layout() -> None:
    fw = ovmf.parse(make_firmware())
    assert [(s.gpa, s.size, int(s.type)) for s in fw.sev_sections] == DEFAULT_SEV
    assert fw.sev_hashes_table_gpa == 0x80B400
    assert fw.sev_es_reset_eip == 0xFFFFF004


def test_plain_firmware_has_nothing_confidential() -> None:
    fw = ovmf.parse(bytes(0x10000))
    assert fw.table == {} and fw.sev_sections == [] and fw.tdvf_sections == []
    with pytest.raises(FirmwareError, match="no SEV metadata"):
        snp_digest(fw, SnpLaunch(1, 0x800F12))
    with pytest.raises(FirmwareError, match="no TDVF"):
        tdvf_mrtd(fw)


def test_unknown_section_type_is_an_error() -> None:
    with pytest.raises(FirmwareError, match="unknown type 0x7"):
        ovmf.parse(make_firmware(sev_sections=[(0x800000, 0x1000, 7)]))


def test_tiny_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FirmwareError, match="too small"):
        ovmf.parse(b"\0" * 40)
    with pytest.raises(FirmwareError, match="cannot read"):
        ovmf.load(tmp_path / "nope.fd")


BASE = make_firmware(0x8000, tdvf_sections=[(0x4000, 0x1000, 0xFFFF0000, 0x1000, 0, 1)])


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 0x1FF), st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_tables_only_raise_firmware_error(flips: list[tuple[int, int]]) -> None:
    data = bytearray(BASE)
    for pos, value in flips:
        # the footer table lives in the last 512 bytes; metadata at 0x1000/0x2000
        target = [len(data) - 1 - pos, 0x1000 + pos % 0x60, 0x2000 + pos % 0x40][pos % 3]
        data[target] = value
    try:
        fw = ovmf.parse(bytes(data))
    except FirmwareError:
        return
    def snp() -> bytes:
        return snp_digest(fw, SnpLaunch(2, 0x800F12))

    def tdx() -> bytes:
        return tdvf_mrtd(fw)

    for fn in (snp, tdx):
        with contextlib.suppress(FirmwareError):
            assert len(fn()) == 48


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=600))
def test_random_images_only_raise_firmware_error(blob: bytes) -> None:
    # put a real footer GUID at the right place sometimes, so the table walk is exercised
    data = bytearray(blob)
    if len(data) >= 50 and data[0] & 1:
        struct.pack_into("<H16s", data, len(data) - 50, min(len(data) - 32, data[1] * 4),
                         ovmf.FOOTER_GUID.bytes_le)
    try:
        fw = ovmf.parse(bytes(data))
    except FirmwareError as exc:
        assert str(exc)
        return
    assert fw.size == len(data)
