"""SNP launch digest of an OVMF (+ kernel, initrd, cmdline) launch, as QEMU does it.

Order (QEMU ``target/i386/sev.c`` with ``-bios``; sev-snp-measure
``guest.py snp_calc_launch_digest``): the whole flash image as NORMAL pages
ending at 4 GiB; then OVMF's SEV metadata sections in table order
(SEC_MEM and SVSM_CAA -> ZERO, SECRETS -> SECRETS, CPUID -> CPUID,
KERNEL_HASHES -> the hashes page as NORMAL, or ZERO when no kernel is
given); finally one VMSA per vCPU at the KVM VMSA GPA. EC2 measures CPUID
pages after all other sections; GCE measures SEC_MEM as UNMEASURED.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FirmwareError, InputError
from ..ovmf import Ovmf, SevSectionType
from . import vmsa
from .hashes import KernelHashes
from .pageinfo import LaunchDigest, PageType


@dataclass(frozen=True)
class SnpLaunch:
    """Everything besides the firmware that the digest depends on."""

    vcpus: int
    vcpu_signature: int
    guest_features: int = 0x1
    vmm: vmsa.Vmm = vmsa.Vmm.QEMU
    kernel_hashes: KernelHashes | None = None


def ovmf_digest(fw: Ovmf) -> LaunchDigest:
    """The chain after the flash image alone (sev-snp-measure's ``snp:ovmf-hash``)."""
    if fw.size % 4096:
        raise FirmwareError(f"firmware size {fw.size:#x} is not a multiple of 4 KiB")
    ld = LaunchDigest()
    ld.add_normal(fw.gpa, fw.data)
    return ld


def metadata_pages(ld: LaunchDigest, fw: Ovmf, launch: SnpLaunch) -> None:
    """Extend ``ld`` with OVMF's SEV metadata sections."""
    if not fw.sev_sections:
        raise FirmwareError("firmware has no SEV metadata (OVMF_SEV_META_DATA): it cannot launch SNP guests")
    if launch.kernel_hashes is not None and not fw.has_sev_section(SevSectionType.SNP_KERNEL_HASHES):
        raise FirmwareError("a kernel was given but the firmware has no SNP_KERNEL_HASHES section; "
                            "build OVMF from OvmfPkg/AmdSev (make firmware)")
    for section in fw.sev_sections:
        kind = section.type
        if kind is SevSectionType.SNP_SEC_MEM:
            page_type = PageType.UNMEASURED if launch.vmm is vmsa.Vmm.GCE else PageType.ZERO
            ld.add_empty(page_type, section.gpa, section.size)
        elif kind is SevSectionType.SNP_SECRETS:
            ld.update(PageType.SECRETS, section.gpa)
        elif kind is SevSectionType.CPUID:
            if launch.vmm is not vmsa.Vmm.EC2:
                ld.update(PageType.CPUID, section.gpa)
        elif kind is SevSectionType.SVSM_CAA:
            ld.add_empty(PageType.ZERO, section.gpa, section.size)
        elif kind is SevSectionType.SNP_KERNEL_HASHES:
            if launch.kernel_hashes is None:
                ld.add_empty(PageType.ZERO, section.gpa, section.size)
            else:
                ld.add_normal(section.gpa, hashes_page(fw, launch.kernel_hashes, section.size))
    if launch.vmm is vmsa.Vmm.EC2:
        for section in fw.sev_sections:
            if section.type is SevSectionType.CPUID:
                ld.update(PageType.CPUID, section.gpa)


def hashes_page(fw: Ovmf, hashes: KernelHashes, section_size: int = 4096) -> bytes:
    table_gpa = fw.sev_hashes_table_gpa
    if not table_gpa:
        raise FirmwareError("firmware has no SEV hash table entry (7255371f-...) in its footer table")
    if section_size != 4096:
        raise FirmwareError(f"SNP_KERNEL_HASHES section is {section_size:#x} bytes; QEMU fills exactly one page")
    return hashes.page(table_gpa & 0xFFF)


def vmsa_pages(fw: Ovmf, launch: SnpLaunch) -> list[bytes]:
    return vmsa.pages(launch.vcpus, fw.sev_es_reset_eip or 0, launch.guest_features,
                      launch.vcpu_signature, launch.vmm)


def snp_digest(fw: Ovmf, launch: SnpLaunch, *, ovmf_hash: bytes | None = None) -> bytes:
    """The 48-byte MEASUREMENT an SNP guest launched this way reports."""
    if launch.vcpus < 1:
        raise InputError("need at least one vCPU")
    ld = LaunchDigest(ovmf_hash) if ovmf_hash is not None else ovmf_digest(fw)
    metadata_pages(ld, fw, launch)
    for page in vmsa_pages(fw, launch):
        ld.add_vmsa(page)
    return ld.ld


def digests_per_vcpu_count(fw: Ovmf, launch: SnpLaunch, counts: list[int]) -> dict[int, bytes]:
    """Digests for several vCPU counts, sharing the firmware prefix (one pass)."""
    base = ovmf_digest(fw)
    metadata_pages(base, fw, launch)
    pages = vmsa.pages(max(counts), fw.sev_es_reset_eip or 0, launch.guest_features,
                       launch.vcpu_signature, launch.vmm)
    out: dict[int, bytes] = {}
    ld = LaunchDigest(base.ld)
    for n, page in enumerate(pages, start=1):
        ld.add_vmsa(page)
        if n in counts:
            out[n] = ld.ld
    return out
