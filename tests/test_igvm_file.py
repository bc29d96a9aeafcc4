"""IGVM reading/writing: byte-exact round trips and strict, offset-naming validation."""

from __future__ import annotations

import contextlib
import struct
import zlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from igvm import file as igf
from igvm.defs import HEADER_TYPES, PageDataFlags, PageDataType, PlatformType
from igvm.errors import IgvmError
from igvm.file import make
from igvm.snp.igvm_measure import measure as snp_measure
from igvm.tdx.igvm_mrtd import measure as tdx_measure


def sample_headers() -> list[igf.Header]:
    """A file touching every section and every data-bearing header kind."""
    return [
        make("SUPPORTED_PLATFORM", compatibility_mask=1, platform_type=PlatformType.SEV_SNP, platform_version=1),
        make("SUPPORTED_PLATFORM", compatibility_mask=2, platform_type=PlatformType.TDX, platform_version=1),
        make("GUEST_POLICY", policy=0x30000, compatibility_mask=1),
        make("GUEST_POLICY", policy=0x2, compatibility_mask=2),
        make("CORIM_DOCUMENT", data=b"\xa1\x01\x02 corim", compatibility_mask=1, size_bytes=9),
        make("PAGE_DATA", data=b"A" * 4096, gpa=0x1000, compatibility_mask=3),
        make("PAGE_DATA", data=b"A" * 4096, gpa=0x2000, compatibility_mask=3),  # de-duplicated
        make("PAGE_DATA", data=b"short", gpa=0x3000, compatibility_mask=1),  # padded to 4 KiB
        make("PAGE_DATA", gpa=0x4000, compatibility_mask=1),  # zero page, no data
        make("PAGE_DATA", gpa=0x5000, compatibility_mask=1, data_type=PageDataType.SECRETS),
        make("PAGE_DATA", gpa=0x6000, compatibility_mask=1, data_type=PageDataType.CPUID_DATA),
        make("PAGE_DATA", data=b"U" * 4096, gpa=0x7000, compatibility_mask=3, flags=PageDataFlags.UNMEASURED),
        make("PAGE_DATA", data=b"S" * 4096, gpa=0x8000, compatibility_mask=1, flags=PageDataFlags.SHARED),
        make("PARAMETER_AREA", number_of_bytes=0x2000, parameter_area_index=0),
        make("VP_COUNT_PARAMETER", parameter_area_index=0, byte_offset=0),
        make("COMMAND_LINE", parameter_area_index=0, byte_offset=0x100),
        make("PARAMETER_INSERT", gpa=0x10000, compatibility_mask=3, parameter_area_index=0),
        make("REQUIRED_MEMORY", gpa=0x100000, compatibility_mask=3, number_of_bytes=0x100000),
        make("VP_CONTEXT", data=b"\x01" * 4096, gpa=0xFFFFFFFFF000, compatibility_mask=1, vp_index=0),
        make("ERROR_RANGE", gpa=0x20000, compatibility_mask=1, size_bytes=0x1000),
    ]


def test_round_trip_is_byte_identical() -> None:
    first = igf.to_bytes(sample_headers())
    parsed = igf.read(first)
    second = igf.to_bytes(parsed.with_data().headers)
    assert first == second
    assert igf.read(second).with_data().headers[5].data == b"A" * 4096


def test_layout_facts() -> None:
    data = igf.to_bytes(sample_headers())
    magic, version, vh_offset, vh_size, total, crc = struct.unpack_from("<6I", data)
    assert (magic, version, vh_offset, total) == (0x4D564749, 1, 24, len(data))
    assert crc == zlib.crc32(data[:20] + bytes(4) + data[24:24 + vh_size])
    parsed = igf.read(data)
    pages = [h for h in parsed.headers if h.name == "PAGE_DATA"]
    assert pages[0]["file_offset"] == pages[1]["file_offset"]  # identical data stored once
    assert pages[3]["file_offset"] == 0
    for h in parsed.headers:
        assert h.offset % 8 == 0
    # file data starts right after the variable headers
    assert min(h.int("file_offset") for h in pages if h.int("file_offset")) >= 24 + vh_size


def test_v2_round_trip() -> None:
    data = igf.to_bytes(sample_headers(), version=2)
    parsed = igf.read(data)
    assert parsed.version == 2 and parsed.page_size == 4096
    assert igf.to_bytes(parsed.with_data().headers, version=2) == data


def test_every_table_entry_packs_and_parses() -> None:
    base = [make("SUPPORTED_PLATFORM", compatibility_mask=1, platform_type=2, platform_version=1)]
    for code, kind in HEADER_TYPES.items():
        if code == 0x001:
            continue
        values = {}
        if "compatibility_mask" in kind.field_names:
            values["compatibility_mask"] = 1
        headers = list(base)
        if "parameter_area_index" in kind.field_names and code != 0x301:
            headers.append(make("PARAMETER_AREA", number_of_bytes=4096, parameter_area_index=0))
        data = None
        if kind.data is not None:
            data = b"\x07" * 16
            if "size_bytes" in kind.field_names:
                values["size_bytes"] = 16
        if code == 0x301:
            values["number_of_bytes"] = 4096
        headers.append(make(code, data=data, **values))
        parsed = igf.read(igf.to_bytes(headers))
        assert parsed.headers[-1].code == code
        assert parsed.headers[-1].kind is kind


def _valid() -> bytes:
    return igf.to_bytes(sample_headers())


def _recrc(data: bytearray) -> bytes:
    vh_size = struct.unpack_from("<I", data, 12)[0]
    struct.pack_into("<I", data, 20, 0)
    struct.pack_into("<I", data, 20, zlib.crc32(bytes(data[:24 + vh_size])))
    return bytes(data)


def _patch_header(index: int, field: str, value: int) -> bytes:
    data = bytearray(_valid())
    h = igf.read(bytes(data)).headers[index]
    kind = h.kind
    assert kind is not None
    offset = h.offset + 8
    for name, fmt in kind.fields:
        if name == field:
            struct.pack_into("<" + fmt, data, offset, value)
            break
        offset += struct.calcsize("<" + fmt)
    return _recrc(data)


@pytest.mark.parametrize("mutate,offset,message", [
    (lambda d: b"XGVM" + d[4:], 0, "bad magic"),
    (lambda d: d[:4] + struct.pack("<I", 9) + d[8:], 4, "version"),
    (lambda d: d[:-1], 0x10, "total_file_size"),
    (lambda d: d[:20] + bytes(4) + d[24:], 0x14, "CRC32"),
    (lambda d: d[:10], 0, "shorter"),
    (lambda d: d[:8] + struct.pack("<I", 12) + d[12:], 8, "8-aligned"),
    (lambda d: d[:12] + struct.pack("<I", 1 << 27) + d[16:], 0xC, "past the end"),
])
def test_fixed_header_faults(mutate: Callable[[bytes], bytes], offset: int, message: str) -> None:
    with pytest.raises(IgvmError, match=message) as err:
        igf.read(mutate(_valid()))
    assert err.value.offset == offset
    assert f"{offset:#x}" in str(err.value)


def test_misaligned_gpa_names_its_record() -> None:
    bad = _patch_header(5, "gpa", 0x1234)
    with pytest.raises(IgvmError, match="not 0x1000-aligned") as err:
        igf.read(bad)
    assert err.value.offset == igf.read(_valid()).headers[5].offset


@pytest.mark.parametrize("index,field,value,message", [
    (6, "gpa", 0x1000, "overlaps"),
    (5, "compatibility_mask", 0x4, "not declared"),
    (5, "file_offset", 0xFFFFFF00, "outside the file data"),
    (5, "file_offset", 8, "outside the file data"),
    (5, "flags", 0x80, "reserved bits"),
    (5, "data_type", 9, "data_type"),
    (0, "compatibility_mask", 3, "exactly one bit"),
    (16, "parameter_area_index", 5, "undeclared area"),
    (13, "number_of_bytes", 0x1001, "multiple of 4 KiB"),
    (15, "byte_offset", 0x2000, "outside area"),
    (2, "reserved", 1, "reserved"),
])
def test_cross_record_faults(index: int, field: str, value: int, message: str) -> None:
    with pytest.raises(IgvmError, match=message):
        igf.read(_patch_header(index, field, value))


def _raw_file(records: list[tuple[int, bytes]]) -> bytes:
    body = b""
    for code, payload in records:
        rec = struct.pack("<II", code, len(payload)) + payload
        body += rec + bytes(-len(rec) % 8)
    head = bytearray(struct.pack("<6I", 0x4D564749, 1, 24, len(body), 24 + len(body), 0))
    return _recrc(bytearray(bytes(head) + body))


PLATFORM = (0x001, struct.pack("<IBBHQ", 1, 0, 2, 1, 0))


def test_section_order_is_enforced() -> None:
    policy = (0x101, struct.pack("<QII", 0x30000, 1, 0))
    ok = _raw_file([PLATFORM, policy])
    assert len(igf.read(ok).headers) == 2
    page = (0x302, struct.pack("<QIIIHH", 0x1000, 1, 0, 0, 0, 0))
    with pytest.raises(IgvmError, match="out of order"):
        igf.read(_raw_file([PLATFORM, page, policy]))


def test_unknown_types() -> None:
    with pytest.raises(IgvmError, match="unknown required header type 0x3ff"):
        igf.read(_raw_file([PLATFORM, (0x3FF, b"12345678")]))
    optional = igf.read(_raw_file([PLATFORM, (0x3FF | 1 << 31, b"12345678")]))
    assert optional.headers[1].fields == {"body": b"12345678"}


def test_wrong_length_and_nonzero_padding() -> None:
    with pytest.raises(IgvmError, match="length 12, expected 16"):
        igf.read(_raw_file([(0x001, b"\x01" * 12)]))
    data = bytearray(_raw_file([PLATFORM, (0x3FF | 1 << 31, b"abc")]))
    data[24 + 24 + 8 + 3] = 1  # padding byte after the 3-byte body
    with pytest.raises(IgvmError, match="padding") as err:
        igf.read(_recrc(data))
    assert err.value.offset == 24 + 24 + 8 + 3


def test_truncated_record() -> None:
    data = bytearray(_raw_file([PLATFORM]))
    struct.pack_into("<I", data, 24 + 4, 200)  # length runs past the headers
    with pytest.raises(IgvmError, match="runs past") as err:
        igf.read(_recrc(data))
    assert err.value.offset == 24


VALID = _valid()


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_only_raise_igvm_error(blob: bytes) -> None:
    try:
        parsed = igf.read(blob)
    except IgvmError as exc:
        assert 0 <= exc.offset <= max(len(blob), 0x20)
        return
    assert parsed.total_size == len(blob)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       st.booleans())
def test_mutated_files_only_raise_igvm_error(flips: list[tuple[int, int]], fix_crc: bool) -> None:
    data = bytearray(VALID)
    vh_end = 24 + struct.unpack_from("<I", VALID, 12)[0]
    for pos, value in flips:
        data[pos % vh_end] = value  # aim at the headers, where the parser's logic is
    if fix_crc and len(data) >= 24:
        with contextlib.suppress(struct.error, OverflowError):
            data = bytearray(_recrc(data))
    try:
        parsed = igf.read(bytes(data))
    except IgvmError:
        return
    # whatever parses must re-serialise and measure without crashing
    igf.to_bytes(parsed.with_data().headers)
    for measure in (snp_measure, tdx_measure):
        with contextlib.suppress(IgvmError):
            assert len(measure(parsed)) == 48
