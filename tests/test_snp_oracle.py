"""SNP launch digests side by side with sev-snp-measure 0.0.13 (an independent implementation)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sevsnpmeasure import guest as ssm_guest
from sevsnpmeasure import vcpu_types as ssm_vcpu
from sevsnpmeasure.sev_mode import SevMode
from sevsnpmeasure.vmm_types import VMMType

from igvm import ovmf
from igvm.errors import FirmwareError
from igvm.snp.cpu import VCPU_SIGNATURES, vcpu_signature
from igvm.snp.hashes import from_files
from igvm.snp.launch import SnpLaunch, digests_per_vcpu_count, ovmf_digest, snp_digest
from igvm.snp.vmsa import Vmm
from launcher.fwgen import DEFAULT_SEV, make_firmware


def oracle(fw: Path, vcpus: int, vcpu_type: str, features: int, *, kernel: str | None = None,
           initrd: str | None = None, append: str | None = None, vmm: VMMType = VMMType.QEMU) -> str:
    return str(ssm_guest.calc_launch_digest(SevMode.SEV_SNP, vcpus, ssm_vcpu.CPU_SIGS[vcpu_type], str(fw),
                                        kernel, initrd, append, features, vmm_type=vmm).hex())


@pytest.mark.parametrize("features", [0x1, 0x21])
@pytest.mark.parametrize("vcpu_type", ["EPYC-v4", "EPYC-Milan", "EPYC-Genoa"])
@pytest.mark.parametrize("vcpus", [1, 2, 4, 64])
def test_debian_ovmf_matches_sev_snp_measure(debian_ovmf: Path, vcpus: int, vcpu_type: str, features: int) -> None:
    fw = ovmf.load(debian_ovmf)
    ours = snp_digest(fw, SnpLaunch(vcpus, vcpu_signature(vcpu_type), features))
    assert ours.hex() == oracle(debian_ovmf, vcpus, vcpu_type, features)


def test_known_debian_vector(debian_ovmf: Path) -> None:
    # measure.md §6.2: sev-snp-measure --vcpus 2 --vcpu-type EPYC-Milan on bookworm's OVMF.fd
    fw = ovmf.load(debian_ovmf)
    assert snp_digest(fw, SnpLaunch(2, vcpu_signature("EPYC-Milan"))).hex() == (
        "a175292a4a09fcfb760c5bd80c93ed667dbaafce6247d0f21fc06638658b3ebf"
        "2804d3019e2abed05cb6a9efe0a7464e")


@pytest.mark.parametrize("vmm,ssm_vmm", [(Vmm.EC2, VMMType.ec2), (Vmm.GCE, VMMType.gce)])
def test_other_vmm_types(debian_ovmf: Path, vmm: Vmm, ssm_vmm: VMMType) -> None:
    fw = ovmf.load(debian_ovmf)
    ours = snp_digest(fw, SnpLaunch(4, vcpu_signature("EPYC-Milan"), 0x1, vmm))
    assert ours.hex() == oracle(debian_ovmf, 4, "EPYC-Milan", 0x1, vmm=ssm_vmm)


def test_signatures_match_sev_snp_measure() -> None:
    assert {k: v for k, v in VCPU_SIGNATURES.items()} == dict(ssm_vcpu.CPU_SIGS)


@pytest.mark.parametrize("vcpus", [1, 2, 4])
@pytest.mark.parametrize("append", [None, "", "console=ttyS0 root=/dev/mapper/root roothash=ab"])
@pytest.mark.parametrize("with_initrd", [False, True])
def test_kernel_hashes_match_sev_snp_measure(tmp_path: Path, vcpus: int, append: str | None,
                                             with_initrd: bool) -> None:
    fw_path = tmp_path / "amdsev.fd"
    fw_path.write_bytes(make_firmware())
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"MZ" + bytes(range(256)) * 300)
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"070701" * 5000)
    initrd_arg = str(initrd) if with_initrd else None
    fw = ovmf.load(fw_path)
    hashes = from_files(kernel, initrd_arg, append)
    ours = snp_digest(fw, SnpLaunch(vcpus, vcpu_signature("EPYC-Genoa"), 0x1, kernel_hashes=hashes))
    assert ours.hex() == oracle(fw_path, vcpus, "EPYC-Genoa", 0x1, kernel=str(kernel), initrd=initrd_arg,
                                append=append)


def test_kernel_without_hashes_section_is_refused(debian_ovmf: Path, tmp_path: Path) -> None:
    kernel = tmp_path / "k"
    kernel.write_bytes(b"kernel")
    fw = ovmf.load(debian_ovmf)
    with pytest.raises(FirmwareError, match="SNP_KERNEL_HASHES"):
        snp_digest(fw, SnpLaunch(1, 0x800F12, kernel_hashes=from_files(kernel, None, None)))


def test_synthetic_firmware_without_kernel(tmp_path: Path) -> None:
    path = tmp_path / "fw.fd"
    path.write_bytes(make_firmware(seed=7, sev_sections=[*DEFAULT_SEV, (9437184, 8192, 4)]))
    fw = ovmf.load(path)
    assert snp_digest(fw, SnpLaunch(3, vcpu_signature("EPYC-Milan"), 0x21)).hex() == \
        oracle(path, 3, "EPYC-Milan", 0x21)


def test_ovmf_hash_seed_and_vcpu_sweep(debian_ovmf: Path) -> None:
    fw = ovmf.load(debian_ovmf)
    launch = SnpLaunch(1, vcpu_signature("EPYC-Milan"))
    seeded = snp_digest(fw, SnpLaunch(4, launch.vcpu_signature), ovmf_hash=ovmf_digest(fw).ld)
    assert seeded == snp_digest(fw, SnpLaunch(4, launch.vcpu_signature))
    sweep = digests_per_vcpu_count(fw, launch, [1, 3, 8])
    for n, digest in sweep.items():
        assert digest == snp_digest(fw, SnpLaunch(n, launch.vcpu_signature)), n
