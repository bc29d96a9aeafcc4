"""TEE providers against kernel doubles, and the SNP/TDX report parsers."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from support.teedouble import KernelTsm, SevGuestDriver, TdxGuestDriver, snp_report_for

from agent.errors import ReportError, TeeError
from agent.tee import certtable, ioctl, open_provider, snp_report, tdx_report
from agent.tee.configfs import TsmReport
from agent.tee.snp import SnpProvider
from agent.tee.tdx import TdxProvider

DATA = Path(__file__).parent / "data"
KEY = ec.generate_private_key(ec.SECP384R1())
HOST = bytes(range(32))
RD = bytes(range(64, 128))


# --- SNP report -----------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [2, 3, 5])
def test_snp_report_round_trip_every_field(version: int) -> None:
    values = {name: (bytes([i + 1]) * size if kind == "bytes" else (i + 1) % 256)
              for i, (name, _off, size, kind) in enumerate(snp_report.LAYOUT)}
    values["version"] = version
    if version < 3:
        for k in ("cpuid_fam_id", "cpuid_mod_id", "cpuid_step"):
            values.pop(k)
    if version < 5:
        values.pop("launch_mit_vector")
        values.pop("current_mit_vector")
    values["signature_algo"] = 1
    raw = snp_report.sign(snp_report.build_body(**values), KEY)
    rep = snp_report.parse(raw)
    for name, value in values.items():
        assert getattr(rep, name) == value, name
    if version < 5:
        assert rep.launch_mit_vector is None
    snp_report.verify_signature(rep, KEY.public_key())
    assert rep.to_json()["host_data"] == bytes(values["host_data"]).hex()


def test_snp_report_fixed_offsets() -> None:
    """Spot-check the table against the offsets AMD's ABI spec gives (research kata-agent.md 3.3)."""
    raw = snp_report_for(KEY, RD, HOST)
    assert raw[0x50:0x90] == RD
    assert raw[0xC0:0xE0] == HOST
    assert raw[0x90:0xC0] == b"\x11" * 48
    assert len(raw) == 0x4A0


def test_snp_signature_rejects_tamper_and_wrong_key() -> None:
    raw = bytearray(snp_report_for(KEY, RD, HOST))
    snp_report.verify_signature(snp_report.parse(bytes(raw)), KEY.public_key())
    raw[0xC0] ^= 1
    with pytest.raises(ReportError, match="does not verify"):
        snp_report.verify_signature(snp_report.parse(bytes(raw)), KEY.public_key())
    other = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ReportError, match="does not verify"):
        snp_report.verify_signature(snp_report.parse(snp_report_for(KEY, RD, HOST)), other.public_key())
    p256 = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ReportError, match="P-384"):
        snp_report.verify_signature(snp_report.parse(snp_report_for(KEY, RD, HOST)), p256.public_key())


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: r[:-1], "exactly 1184"),
    (lambda r: r + b"\0", "exactly 1184"),
    (lambda r: (4).to_bytes(4, "little") + r[4:], "version 4"),
    (lambda r: (1).to_bytes(4, "little") + r[4:], "version 1"),
    (lambda r: r[:0x4C] + b"\1" + r[0x4D:], "reserved"),
    (lambda r: r[:0x400] + b"\1" + r[0x401:], "beyond R and S"),
    (lambda r: r[:0x1F8] + b"\1" + r[0x1F9:], "launch_mit_vector"),
])
def test_snp_report_malformed(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ReportError, match=message):
        snp_report.parse(mutate(snp_report_for(KEY, RD, HOST)))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=0x500), st.integers(0, 0x49F), st.binary(min_size=1, max_size=8))
def test_snp_parser_only_raises_report_error(data: bytes, pos: int, patch: bytes) -> None:
    base = bytearray(snp_report_for(KEY, RD, HOST))
    base[pos : pos + len(patch)] = patch
    for candidate in (data, bytes(base[: 0x4A0])):
        try:
            rep = snp_report.parse(candidate)
        except ReportError as exc:
            assert str(exc)
        else:
            assert rep.version in (2, 3, 5) and len(rep.signed_bytes) == 0x2A0


# --- certificate table ----------------------------------------------------------------------------

def test_cert_table_round_trip_and_errors() -> None:
    certs = {"vcek": b"V" * 100, "ask": b"A" * 50, "ark": b"R" * 70}
    table = certtable.build(certs)
    assert certtable.parse(table) == certs
    assert certtable.parse(b"") == {}
    assert certtable.parse(table + bytes(4096)) == certs  # kernel buffers are page padded
    one = certtable.build({"vcek": b"abcdef"})  # index entry, terminator, then the 6 bytes at offset 48
    unterminated = one[:16] + (24).to_bytes(4, "little") + (6).to_bytes(4, "little") + b"abcdef"
    with pytest.raises(ReportError, match="no terminator"):
        certtable.parse(unterminated)
    bad = bytearray(table)
    bad[20:24] = (10**6).to_bytes(4, "little")  # vcek length beyond the table
    with pytest.raises(ReportError, match="outside"):
        certtable.parse(bytes(bad))
    with pytest.raises(ReportError, match="twice"):
        certtable.parse(certtable.build({"vcek": b"x"})[:24] + certtable.build({"vcek": b"x"}))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_cert_table_parser_only_raises_report_error(data: bytes) -> None:
    try:
        out = certtable.parse(data)
    except ReportError as exc:
        assert str(exc)
    else:
        assert all(isinstance(v, bytes) and v for v in out.values())


# --- TDX ------------------------------------------------------------------------------------------

def test_tdx_quote_fields_and_exact_length() -> None:
    fields = {"mrtd": b"\x01" * 48, "mrconfigid": b"\x02" * 48, "rtmr0": b"\x03" * 48, "rtmr3": b"\x06" * 48,
              "report_data": RD, "td_attributes": 1 << 28, "xfam": 0xE7}
    quote = tdx_report.build_quote(fields, cert_data=b"PCK")
    q = tdx_report.parse_quote(quote)
    assert q.body.mrtd == b"\x01" * 48 and q.mrconfigid == b"\x02" * 48
    assert q.body.rtmr0 == b"\x03" * 48 and q.body.rtmr3 == b"\x06" * 48
    assert q.report_data == RD and q.body.td_attributes == 1 << 28 and q.body.xfam == 0xE7
    assert q.cert_data == b"PCK" and q.qe_certification is None
    # offsets from go-tdx-guest abi: MRTD 0xB8, MRCONFIGID 0xE8, RTMR0 0x178, REPORTDATA 0x238
    assert quote[0xB8:0xE8] == b"\x01" * 48 and quote[0xE8:0x118] == b"\x02" * 48
    assert quote[0x178:0x1A8] == b"\x03" * 48 and quote[0x238:0x278] == RD
    with pytest.raises(ReportError, match="does not match"):
        tdx_report.parse_quote(quote + b"\0")
    with pytest.raises(ReportError, match="does not match"):
        tdx_report.parse_quote(quote[:-1])
    with pytest.raises(ReportError, match="version 3"):
        tdx_report.parse_quote(b"\x03\x00" + quote[2:])
    with pytest.raises(ReportError, match="TEE type"):
        tdx_report.parse_quote(quote[:4] + b"\0\0\0\0" + quote[8:])


def test_tdx_quote_with_qe_certification() -> None:
    inner = bytes(384) + bytes(64) + (3).to_bytes(2, "little") + b"abc" + (5).to_bytes(2, "little") \
        + (4).to_bytes(4, "little") + b"PEMS"
    q = tdx_report.parse_quote(tdx_report.build_quote({}, cert_type=6, cert_data=inner))
    assert q.qe_certification is not None
    assert q.qe_certification.qe_auth_data == b"abc" and q.qe_certification.pck_cert_data == b"PEMS"
    with pytest.raises(ReportError, match="PCK certification data"):
        tdx_report.parse_quote(tdx_report.build_quote({}, cert_type=6, cert_data=inner[:-1]))


def test_tdreport_offsets() -> None:
    raw = tdx_report.build_tdreport(RD, mrconfigid=b"\x07" * 48, mrtd=b"\x08" * 48)
    r = tdx_report.parse_tdreport(raw)
    assert r.report_data == RD and r.mrconfigid == b"\x07" * 48 and r.mrtd == b"\x08" * 48
    assert raw[576:624] == b"\x07" * 48
    with pytest.raises(ReportError, match="exactly 1024"):
        tdx_report.parse_tdreport(raw[:-1])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_tdx_parsers_only_raise_report_error(data: bytes) -> None:
    for parser in (tdx_report.parse_quote, tdx_report.parse_tdreport):
        try:
            parsed = parser(data)
        except ReportError as exc:
            assert str(exc)
        else:
            assert len(parsed.report_data) == 64


# --- configfs-tsm ---------------------------------------------------------------------------------

def _snp_tsm(aux: bytes | None = b"") -> KernelTsm:
    return KernelTsm("/tsm", "sev_guest", lambda inblob: snp_report_for(KEY, inblob, HOST), aux)


def test_configfs_snp_happy_path_cleans_up() -> None:
    table = certtable.build({"vcek": b"cert"})
    kernel = _snp_tsm(table)
    provider = SnpProvider(configfs_root="/tsm", fs=kernel, device="/nonexistent")
    evidence = provider.report(RD)
    assert evidence.source == "configfs-tsm" and evidence.aux == table
    assert provider.report_data_of(evidence) == RD and provider.bound_value(evidence) == HOST
    assert kernel.reports == {} and len(kernel.removed) == 1


def test_configfs_detects_generation_race() -> None:
    kernel = _snp_tsm()

    def other_writer(entry: dict[str, Any]) -> None:
        entry["generation"] += 1
        entry["inblob"] = bytes(64)

    kernel.on_outblob = other_writer
    with pytest.raises(TeeError, match="generation went from 0 to 2"):
        SnpProvider(configfs_root="/tsm", fs=kernel, device="/none").report(RD)
    assert kernel.reports == {}


def test_configfs_wrong_provider_and_kernel_refusals() -> None:
    tdx_kernel = KernelTsm("/tsm", "tdx_guest", lambda b: b"")
    with pytest.raises(TeeError, match="provider is 'tdx_guest', expected 'sev_guest'"):
        SnpProvider(configfs_root="/tsm", fs=tdx_kernel, device="/none").report(RD)
    client = TsmReport("sev_guest", "/tsm", _snp_tsm())
    with pytest.raises(TeeError, match="at most 64"):
        client.request(bytes(65), aux=True)
    with pytest.raises(TeeError, match="outblob failed: Invalid argument"):
        client.request(bytes(32), aux=True)  # the SNP driver wants exactly 64 bytes
    with pytest.raises(TeeError, match="exactly 64"):
        SnpProvider(configfs_root="/tsm", fs=_snp_tsm(), device="/none").report(bytes(32))


def test_configfs_mkdir_failure_is_tee_error() -> None:
    client = TsmReport("sev_guest", "/elsewhere", _snp_tsm())
    with pytest.raises(TeeError, match="cannot create"):
        client.request(RD, aux=False)


def test_configfs_tdx_quote() -> None:
    def quote(inblob: bytes) -> bytes:
        return tdx_report.build_quote({"report_data": inblob, "mrconfigid": b"\x05" * 48})

    kernel = KernelTsm("/tsm", "tdx_guest", quote, auxblob=None)
    provider = TdxProvider(configfs_root="/tsm", fs=kernel, device="/none")
    ev = provider.report(RD)
    assert ev.kind == "tdx-quote" and provider.bound_value(ev) == b"\x05" * 48
    assert provider.report_data_of(ev) == RD


# --- ioctls ---------------------------------------------------------------------------------------

def test_ioctl_struct_sizes_match_kernel() -> None:
    assert ctypes.sizeof(ioctl.SnpGuestRequestIoctl) == 32
    assert ctypes.sizeof(ioctl.SnpReportReq) == 96
    assert ctypes.sizeof(ioctl.SnpReportResp) == 4000
    assert ctypes.sizeof(ioctl.SnpExtReportReq) == 112
    assert ctypes.sizeof(ioctl.TdxReportReq) == 1088
    assert ioctl.SNP_GET_REPORT == 0xC0205300
    assert ioctl.SNP_GET_EXT_REPORT == 0xC0205302
    assert ioctl.TDX_CMD_GET_REPORT0 == 0xC4405401


@pytest.fixture
def device(tmp_path) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path / "sev-guest"
    path.write_bytes(b"")
    return str(path)


def test_sev_guest_ext_report_grows_cert_buffer(device: str) -> None:
    certs = certtable.build({"vcek": b"v" * 20000})
    driver = SevGuestDriver(lambda rd: snp_report_for(KEY, rd, HOST), certs=certs)
    provider = SnpProvider(configfs_root="/none", device=device, ioctl=driver)
    ev = provider.report(RD)
    assert ev.source == "sev-guest-ioctl"
    assert driver.calls == ["ext", "ext"]  # first buffer (16 KiB) too small, retried with the host's size
    assert certtable.parse(ev.aux) == {"vcek": b"v" * 20000}
    assert provider.bound_value(ev) == HOST and provider.report_data_of(ev) == RD
    assert driver.vmpls == [0]


def test_sev_guest_falls_back_to_plain_report(device: str) -> None:
    driver = SevGuestDriver(lambda rd: snp_report_for(KEY, rd, HOST), certs=None)
    ev = SnpProvider(configfs_root="/none", device=device, ioctl=driver).report(RD)
    assert driver.calls == ["ext", "report"] and ev.aux == b""


def test_sev_guest_firmware_error(device: str) -> None:
    driver = SevGuestDriver(lambda rd: snp_report_for(KEY, rd, HOST), fw_status=0x16)
    with pytest.raises(TeeError, match="status 0x16"):
        SnpProvider(configfs_root="/none", device=device, ioctl=driver).report(RD)


def test_tdx_guest_report0(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dev = tmp_path / "tdx_guest"
    dev.write_bytes(b"")
    provider = TdxProvider(configfs_root="/none", device=str(dev), ioctl=TdxGuestDriver(b"\x09" * 48))
    ev = provider.report(RD)
    assert ev.kind == "tdx-report" and provider.bound_value(ev) == b"\x09" * 48
    assert provider.report_data_of(ev) == RD


def test_no_interface_is_a_clear_error() -> None:
    with pytest.raises(TeeError, match="no SNP report interface"):
        SnpProvider(configfs_root="/none", device="/none").report(RD)
    with pytest.raises(TeeError, match="no TDX report interface"):
        TdxProvider(configfs_root="/none", device="/none").report(RD)


def test_auto_never_picks_sim(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(os.path, "exists", lambda p: False)
    with pytest.raises(TeeError, match=r"ask for it explicitly: cocoon\.tee=sim"):
        open_provider("auto", configfs_root="/none")
    with pytest.raises(TeeError, match="unknown TEE"):
        open_provider("sev")


def test_vcek_extension_encoding_round_trips_and_matches_kds() -> None:
    from verifier import vcek
    from verifier.x509check import load_certificate

    cert = load_certificate((DATA / "snp-genoa-azure.vcek.pem").read_bytes(), "VCEK")
    genoa = vcek.extensions(cert)
    assert genoa.product == "Genoa" and genoa.tcb == {"bootloader": 10, "tee": 0, "snp": 23, "microcode": 84}
    assert genoa.hwid == bytes.fromhex((DATA / "snp-genoa-azure.report.hex").read_text())[0x1A0:0x1E0]
    # what we write for a sim VCEK is KDS's encoding: the Genoa certificate's own bytes for the same values
    ours = dict(vcek.extension_values(genoa.tcb, genoa.hwid, "Genoa"))
    theirs = {e.oid.dotted_string: e.value.value for e in cert.extensions if e.oid.dotted_string in ours}
    assert ours == theirs and len(ours) == 6
    assert vcek._der_int(bytes([2, 2, 0, 0xD5]), "x") == 0xD5  # microcode SPLs above 127 take a zero byte


def test_turin_vcek_extensions_and_tcb_layout() -> None:
    from verifier import vcek
    from verifier.x509check import load_certificate

    turin = vcek.extensions(load_certificate((DATA / "snp-turin-virtee.vcek.der").read_bytes(), "VCEK"))
    assert turin.product == "Turin" and turin.tcb == {"bootloader": 0, "tee": 0, "snp": 0, "microcode": 9, "fmc": 0}
    assert turin.hwid == bytes.fromhex("1e550a8ee5cf9f4d")
    assert vcek.chip_matches(turin.hwid, turin.hwid + bytes(56)) and not vcek.chip_matches(turin.hwid, bytes(64))
    # Turin packs fmc, bootloader, tee, snp first; Milan/Genoa put snp in byte 6
    raw = int.from_bytes(bytes([1, 2, 3, 4, 0, 0, 0, 5]), "little")
    t = snp_report.TcbVersion.from_u64(raw, "turin")
    assert t.as_dict() == {"fmc": 1, "bootloader": 2, "tee": 3, "snp": 4, "microcode": 5} and t.to_u64() == raw
    m = snp_report.TcbVersion.from_u64(raw)
    assert (m.bootloader, m.tee, m.snp, m.microcode, m.fmc) == (1, 2, 0, 5, None)


@given(st.binary(max_size=80))
def test_vcek_extension_parsers_only_raise_report_error(data: bytes) -> None:
    from verifier import vcek

    for parse in (lambda d: vcek._der_int(d, "x"), lambda d: vcek._der_ia5(d, "x"), vcek._hwid):
        try:
            value = parse(data)
        except ReportError as exc:
            assert "extension" in str(exc)  # the caller (vcek.extensions) prefixes VCEK or VLEK
        else:
            assert isinstance(value, int | str) or len(value) in (8, 64)
