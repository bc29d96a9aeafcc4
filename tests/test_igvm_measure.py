"""IGVM measurement semantics, checked against sev-snp-measure's independent PAGE_INFO chain."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sevsnpmeasure import guest as ssm_guest
from sevsnpmeasure import vcpu_types as ssm_vcpu
from sevsnpmeasure.gctx import GCTX
from sevsnpmeasure.sev_mode import SevMode

from igvm import build, ovmf
from igvm import file as igf
from igvm.defs import PageDataFlags, PageDataType, PlatformType
from igvm.errors import IgvmError
from igvm.file import make
from igvm.snp.cpu import vcpu_signature
from igvm.snp.hashes import from_files
from igvm.snp.igvm_measure import ZeroPages, measure
from igvm.tdx.igvm_mrtd import measure as tdx_measure
from igvm.tdx.mrtd import tdvf_mrtd
from launcher.fwgen import make_firmware


def ssm(fw: Path, vcpus: int, vcpu_type: str, kernel: str | None = None, initrd: str | None = None,
        append: str | None = None) -> str:
    digest: bytes = ssm_guest.calc_launch_digest(SevMode.SEV_SNP, vcpus, ssm_vcpu.CPU_SIGS[vcpu_type], str(fw),
                                                 kernel, initrd, append, 0x1)
    return digest.hex()


@pytest.mark.parametrize("vcpus", [1, 4])
def test_built_igvm_equals_sev_snp_measure_debian(debian_ovmf: Path, tmp_path: Path, vcpus: int) -> None:
    fw = ovmf.load(debian_ovmf)
    out = tmp_path / "snp.igvm"
    with open(out, "wb") as fh:
        igf.write(build.snp_headers(fw, build.SnpBuild(vcpus, vcpu_signature("EPYC-Milan"))), fh)
    parsed = igf.read(out)
    native = measure(parsed, zero_pages=ZeroPages.NATIVE)
    assert native.hex() == ssm(debian_ovmf, vcpus, "EPYC-Milan")
    # QEMU's IGVM loader measures data-less pages as NORMAL zeros: a different, documented digest
    assert measure(parsed) != native


@pytest.mark.parametrize("append", [None, "console=ttyS0"])
def test_built_igvm_with_kernel_equals_sev_snp_measure(tmp_path: Path, append: str | None) -> None:
    fw_path = tmp_path / "amdsev.fd"
    fw_path.write_bytes(make_firmware(seed=3))
    kernel, initrd = tmp_path / "k", tmp_path / "i"
    kernel.write_bytes(b"kernel" * 1000)
    initrd.write_bytes(b"initrd" * 1000)
    hashes = from_files(kernel, initrd, append)
    headers = build.snp_headers(ovmf.load(fw_path), build.SnpBuild(2, vcpu_signature("EPYC-Genoa"),
                                                                   kernel_hashes=hashes))
    parsed = igf.read(igf.to_bytes(headers))
    assert measure(parsed, zero_pages=ZeroPages.NATIVE).hex() == ssm(fw_path, 2, "EPYC-Genoa", str(kernel),
                                                                    str(initrd), append)


def test_build_is_deterministic(debian_ovmf: Path) -> None:
    fw = ovmf.load(debian_ovmf)
    spec = build.SnpBuild(2, vcpu_signature("EPYC-Milan"))
    assert igf.to_bytes(build.snp_headers(fw, spec)) == igf.to_bytes(build.snp_headers(fw, spec))


def test_tdx_igvm_mrtd_equals_firmware_mrtd(debian_ovmf: Path) -> None:
    fw = ovmf.load(debian_ovmf)
    parsed = igf.read(igf.to_bytes(build.tdx_headers(fw)))
    assert tdx_measure(parsed) == tdvf_mrtd(fw)
    with pytest.raises(IgvmError, match="SEV_SNP"):
        measure(parsed)


def _platform() -> list[igf.Header]:
    return [make("SUPPORTED_PLATFORM", compatibility_mask=1, platform_type=PlatformType.SEV_SNP,
                 platform_version=1),
            make("SUPPORTED_PLATFORM", compatibility_mask=2, platform_type=PlatformType.TDX, platform_version=1),
            make("GUEST_POLICY", policy=0x30000, compatibility_mask=1)]


def test_page_semantics_against_gctx() -> None:
    """Every directive kind, expected chain built with sev-snp-measure's GCTX."""
    page = bytes(range(256)) * 16
    vmsa = b"\x42" * 4096
    headers = [
        *_platform(),
        make("PAGE_DATA", data=page, gpa=0x1000, compatibility_mask=3),
        make("PAGE_DATA", gpa=0x2000, compatibility_mask=1),  # no data
        make("PAGE_DATA", data=b"short", gpa=0x3000, compatibility_mask=1),  # zero-padded
        make("PAGE_DATA", data=page, gpa=0x4000, compatibility_mask=1, flags=PageDataFlags.SHARED),
        make("PAGE_DATA", data=page, gpa=0x5000, compatibility_mask=1, flags=PageDataFlags.UNMEASURED),
        make("PAGE_DATA", gpa=0x6000, compatibility_mask=1, data_type=PageDataType.SECRETS),
        make("PAGE_DATA", gpa=0x7000, compatibility_mask=1, data_type=PageDataType.CPUID_DATA),
        make("PAGE_DATA", gpa=0x8000, compatibility_mask=1, data_type=PageDataType.CPUID_XF),
        make("PAGE_DATA", data=page, gpa=0x9000, compatibility_mask=2),  # TDX only: not measured for SNP
        make("PARAMETER_AREA", number_of_bytes=0x3000, parameter_area_index=0),
        make("PARAMETER_INSERT", gpa=0x10000, compatibility_mask=1, parameter_area_index=0),
        make("VP_CONTEXT", data=vmsa, gpa=0xABC000, compatibility_mask=1),
    ]
    parsed = igf.read(igf.to_bytes(headers))
    for zero_mode in ZeroPages:
        g = GCTX()
        g.update_normal_pages(0x1000, page)
        if zero_mode is ZeroPages.NATIVE:
            g.update_zero_pages(0x2000, 4096)
        else:
            g.update_normal_pages(0x2000, bytes(4096))
        g.update_normal_pages(0x3000, b"short" + bytes(4091))
        g.update_unmeasured_pages(0x5000, 4096)
        g.update_secrets_page(0x6000)
        g.update_cpuid_page(0x7000)
        g.update_cpuid_page(0x8000)
        g.update_unmeasured_pages(0x10000, 0x3000)
        g._update(0x02, 0xABC000, hashlib.sha384(vmsa).digest())
        assert measure(parsed, zero_pages=zero_mode) == g.ld(), zero_mode


def test_two_mib_page_and_large_runs() -> None:
    big = bytes(range(256)) * (2 * 1024 * 1024 // 256)
    pages = [bytes([i % 251]) * 4096 for i in range(700)]  # crosses batch boundaries
    headers = [
        *_platform(),
        make("PAGE_DATA", data=big, gpa=0x200000, compatibility_mask=1, flags=PageDataFlags.IS_2MB_PAGE),
        *[make("PAGE_DATA", data=p, gpa=0x1000000 + i * 4096, compatibility_mask=1) for i, p in enumerate(pages)],
    ]
    parsed = igf.read(igf.to_bytes(headers))
    g = GCTX()
    g.update_normal_pages(0x200000, big)
    g.update_normal_pages(0x1000000, b"".join(pages))
    assert measure(parsed, workers=1) == g.ld()
    assert measure(parsed, workers=2) == g.ld()


def test_tdx_igvm_semantics() -> None:
    page = b"\x11" * 4096
    headers = [make("SUPPORTED_PLATFORM", compatibility_mask=2, platform_type=PlatformType.TDX, platform_version=1),
               make("PAGE_DATA", data=page, gpa=0x1000, compatibility_mask=2),
               make("PAGE_DATA", gpa=0x2000, compatibility_mask=2),
               make("PAGE_DATA", data=page, gpa=0x3000, compatibility_mask=2, flags=PageDataFlags.UNMEASURED),
               make("PAGE_DATA", data=page, gpa=0x4000, compatibility_mask=2, flags=PageDataFlags.SHARED),
               make("PARAMETER_AREA", number_of_bytes=0x2000, parameter_area_index=0),
               make("PARAMETER_INSERT", gpa=0x8000, compatibility_mask=2, parameter_area_index=0)]
    parsed = igf.read(igf.to_bytes(headers))

    def add(gpa: int) -> bytes:
        return b"MEM.PAGE.ADD".ljust(16, b"\0") + gpa.to_bytes(8, "little") + bytes(104)

    def ext(gpa: int, data: bytes) -> bytes:
        return b"".join(b"MR.EXTEND".ljust(16, b"\0") + (gpa + i).to_bytes(8, "little") + bytes(104)
                        + data[i:i + 256] for i in range(0, 4096, 256))

    expected = hashlib.sha384(add(0x1000) + ext(0x1000, page) + add(0x2000) + ext(0x2000, bytes(4096))
                              + add(0x3000) + add(0x8000) + add(0x9000)).digest()
    assert tdx_measure(parsed) == expected


def test_large_files_hash_in_forked_workers_with_the_same_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    from igvm.snp import forkhash, igvm_measure

    npages = igvm_measure.FORK_MIN_BYTES // 4096 + 37  # a ragged last batch
    pages = [(i * 2654435761 % 2**32).to_bytes(4, "little") * 1024 for i in range(npages)]
    headers = [*_platform(), *[make("PAGE_DATA", data=p, gpa=0x4000000 + i * 4096, compatibility_mask=1)
                               for i, p in enumerate(pages)],
               make("PAGE_DATA", gpa=0x100000, compatibility_mask=1)]  # a page after the run waits for it
    parsed = igf.read(igf.to_bytes(headers))
    g = GCTX()
    g.update_normal_pages(0x4000000, b"".join(pages))
    g.update_normal_pages(0x100000, bytes(4096))
    made: list[int] = []
    real = forkhash.ForkedPageHasher

    def counted(*a: Any) -> forkhash.ForkedPageHasher:
        made.append(1)
        return real(*a)

    monkeypatch.setattr(forkhash, "ForkedPageHasher", counted)
    monkeypatch.setattr(forkhash, "usable", lambda: True)
    assert measure(parsed) == g.ld()
    assert made == [1]
    assert measure(parsed, workers=1) == g.ld() and made == [1]  # one worker: no fork, same digest
    monkeypatch.setattr(forkhash, "usable", lambda: False)
    assert measure(parsed) == g.ld() and made == [1]


def test_a_failing_worker_surfaces_the_parents_own_error() -> None:
    from igvm.snp import forkhash

    parent = os.getpid()

    def read(offsets: Sequence[int]) -> bytes:
        if offsets[0] == 3 and os.getpid() != parent:
            os._exit(9)  # the worker dies mid-way; the parent must not hang or trust a short answer
        if offsets[0] == 4:
            raise IgvmError(0x4000, "file data truncated")
        return bytes([offsets[0]]) * 4096 * len(offsets)

    got = []
    with pytest.raises(IgvmError, match="truncated"), forkhash.ForkedPageHasher(read, 2) as hasher:
        for i in range(8):
            got += list(hasher.submit([i]))
        for digests in hasher.drain():
            got.append(digests)
    assert got == [[hashlib.sha384(bytes([i]) * 4096).digest()] for i in range(4)]
