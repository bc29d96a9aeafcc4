"""``cocoon igvm build``: pack firmware (+ kernel hashes) into an IGVM file.

SNP: the flash image as PAGE_DATA ending at 4 GiB, then OVMF's SEV metadata
sections in table order (SEC_MEM and SVSM_CAA as data-less pages, SECRETS and
CPUID as their page data types, the kernel-hashes page as data when a kernel
is given), then one VP_CONTEXT (VMSA) per vCPU at the KVM VMSA GPA. This
mirrors what QEMU does with ``-bios``, so measuring the result with native
zero pages reproduces sev-snp-measure's digest.

TDX: TDVF sections in metadata order; pages of sections without MR_EXTEND are
marked unmeasured (PAGE.ADD only), PAGE_AUG sections are left to the guest.
Its MRTD equals the single-pass MRTD of the firmware.

Output is deterministic: no timestamps, no randomness (ID-block signatures
are RFC 6979).
"""

from __future__ import annotations

from dataclasses import dataclass

from .defs import PAGE_SIZE, PageDataFlags, PageDataType, PlatformType
from .errors import FirmwareError
from .file import Header, make
from .ovmf import Ovmf, SevSectionType
from .snp import id_block as idb
from .snp import vmsa
from .snp.hashes import KernelHashes
from .snp.launch import hashes_page
from .snp.pageinfo import VMSA_GPA

SNP_MASK = 0x1
TDX_MASK = 0x2
DEFAULT_SNP_POLICY = 0x30000  # SMT allowed + reserved-must-be-one; debug and migration off
DEFAULT_TDX_POLICY = 0x2  # sept_ve_disable; Linux TD guests refuse to run without it


@dataclass(frozen=True)
class SnpBuild:
    vcpus: int
    vcpu_signature: int
    guest_features: int = 0x1
    policy: int = DEFAULT_SNP_POLICY
    kernel_hashes: KernelHashes | None = None


def _platform(mask: int, ptype: PlatformType) -> Header:
    return make("SUPPORTED_PLATFORM", compatibility_mask=mask, platform_type=ptype, platform_version=1)


def _firmware_pages(fw: Ovmf, mask: int) -> list[Header]:
    data = fw.data
    return [make("PAGE_DATA", data=data[off:off + PAGE_SIZE], gpa=fw.gpa + off, compatibility_mask=mask)
            for off in range(0, len(data), PAGE_SIZE)]


def snp_headers(fw: Ovmf, spec: SnpBuild, signed: tuple[idb.SignedIdBlock, idb.IdBlock] | None = None
                ) -> list[Header]:
    if fw.size % PAGE_SIZE:
        raise FirmwareError(f"firmware size {fw.size:#x} is not a multiple of 4 KiB")
    if not fw.sev_sections:
        raise FirmwareError("firmware has no SEV metadata: it cannot launch SNP guests")
    if spec.kernel_hashes is not None and not fw.has_sev_section(SevSectionType.SNP_KERNEL_HASHES):
        raise FirmwareError("a kernel was given but the firmware has no SNP_KERNEL_HASHES section; "
                            "only firmware built from OvmfPkg/AmdSev can bind a kernel (make firmware)")
    m = SNP_MASK
    headers = [_platform(m, PlatformType.SEV_SNP), make("GUEST_POLICY", policy=spec.policy, compatibility_mask=m)]
    headers += _firmware_pages(fw, m)
    for s in fw.sev_sections:
        pages = range(s.gpa, s.gpa + s.size, PAGE_SIZE)
        if s.type is SevSectionType.SNP_SECRETS:
            headers += [make("PAGE_DATA", gpa=g, compatibility_mask=m, data_type=PageDataType.SECRETS) for g in pages]
        elif s.type is SevSectionType.CPUID:
            headers += [make("PAGE_DATA", gpa=g, compatibility_mask=m, data_type=PageDataType.CPUID_DATA)
                        for g in pages]
        elif s.type is SevSectionType.SNP_KERNEL_HASHES and spec.kernel_hashes is not None:
            headers.append(make("PAGE_DATA", data=hashes_page(fw, spec.kernel_hashes, s.size), gpa=s.gpa,
                                compatibility_mask=m))
        else:  # SEC_MEM, SVSM_CAA, KERNEL_HASHES without a kernel: zero pages
            headers += [make("PAGE_DATA", gpa=g, compatibility_mask=m) for g in pages]
    for index, page in enumerate(vmsa.pages(spec.vcpus, fw.sev_es_reset_eip or 0, spec.guest_features,
                                            spec.vcpu_signature)):
        headers.append(make("VP_CONTEXT", data=page, gpa=VMSA_GPA, compatibility_mask=m, vp_index=index))
    if signed is not None:
        headers.append(make("SNP_ID_BLOCK", None, **idb.igvm_fields(signed[0], signed[1], m)))
    return headers


def tdx_headers(fw: Ovmf, policy: int = DEFAULT_TDX_POLICY) -> list[Header]:
    if not fw.tdvf_sections:
        raise FirmwareError("firmware has no TDVF metadata: it cannot launch a TD")
    m = TDX_MASK
    headers = [_platform(m, PlatformType.TDX), make("GUEST_POLICY", policy=policy, compatibility_mask=m)]
    for s in fw.tdvf_sections:
        if s.page_aug:
            continue
        flags = 0 if s.extend else PageDataFlags.UNMEASURED
        for off in range(0, s.memory_data_size, PAGE_SIZE):
            data = fw.data[s.data_offset + off:s.data_offset + min(off + PAGE_SIZE, s.raw_data_size)] \
                if off < s.raw_data_size else None
            headers.append(make("PAGE_DATA", data=data, gpa=s.memory_address + off, compatibility_mask=m,
                                flags=flags))
    return headers
