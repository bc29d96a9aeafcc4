"""Initial VMSA pages (SEV-ES save area) as a VMM hands them to SNP_LAUNCH_UPDATE.

Layout: Linux ``struct sev_es_save_area`` (arch/x86/include/asm/svm.h, AMD APM
vol. 2 table B-4), padded to 4 KiB. Only the fields a reset vCPU has non-zero
are written; their offsets are the struct's. Initial values per VMM are those
sev-snp-measure 0.0.13 models (``vmsa.py``), which match host kernels >= 6.10
(mxcsr/fcw set by KVM, sev-snp-measure CHANGELOG 0.0.10).
"""

from __future__ import annotations

import enum
import struct

from ..errors import FirmwareError, InputError

BSP_EIP = 0xFFFFFFF0


class Vmm(enum.Enum):
    """Which hypervisor builds the VMSA: they differ in a few reset values."""

    QEMU = "qemu"
    EC2 = "ec2"
    GCE = "gce"


# byte offsets in sev_es_save_area
_SEGMENTS = {"es": 0x00, "cs": 0x10, "ss": 0x20, "ds": 0x30, "fs": 0x40, "gs": 0x50,
             "gdtr": 0x60, "ldtr": 0x70, "idtr": 0x80, "tr": 0x90}
_U64 = {"efer": 0xD0, "cr4": 0x148, "cr0": 0x158, "dr7": 0x160, "dr6": 0x168, "rflags": 0x170,
        "rip": 0x178, "g_pat": 0x268, "rdx": 0x310, "sev_features": 0x3B0, "xcr0": 0x3E8}
_MXCSR = 0x408  # u32
_X87_FCW = 0x410  # u16
_SEG = struct.Struct("<HHIQ")  # selector, attrib, limit, base (struct vmcb_seg)


def build(eip: int, sev_features: int, vcpu_signature: int, vmm: Vmm = Vmm.QEMU) -> bytes:
    """The 4 KiB VMSA of a vCPU that starts at ``eip``."""
    if not 0 <= eip < 1 << 32:
        raise InputError(f"reset EIP {eip:#x} is not a 32-bit address")
    cs_attr, ss_attr, tr_attr = 0x9B, 0x93, 0x8B
    g_pat, rdx, mxcsr, fcw = 0x0007040600070406, vcpu_signature, 0x1F80, 0x37F
    if vmm is Vmm.EC2:
        cs_attr = 0x9A if eip == BSP_EIP else 0x9B
        ss_attr, tr_attr, rdx, mxcsr, fcw = 0x92, 0x83, 0x600, 0, 0
    elif vmm is Vmm.GCE:
        g_pat, rdx, mxcsr, fcw = 0x00070106, 0x600, 0, 0
    page = bytearray(4096)
    segments = {
        "es": (0, 0x93, 0xFFFF, 0), "cs": (0xF000, cs_attr, 0xFFFF, eip & 0xFFFF0000),
        "ss": (0, ss_attr, 0xFFFF, 0), "ds": (0, 0x93, 0xFFFF, 0), "fs": (0, 0x93, 0xFFFF, 0),
        "gs": (0, 0x93, 0xFFFF, 0), "gdtr": (0, 0, 0xFFFF, 0), "ldtr": (0, 0x82, 0xFFFF, 0),
        "idtr": (0, 0, 0xFFFF, 0), "tr": (0, tr_attr, 0xFFFF, 0),
    }
    for name, value in segments.items():
        _SEG.pack_into(page, _SEGMENTS[name], *value)
    registers = {
        "efer": 0x1000,  # EFER.SVME, set by KVM
        "cr4": 0x40,  # CR4.MCE, set by KVM
        "cr0": 0x10, "dr7": 0x400, "dr6": 0xFFFF0FF0, "rflags": 0x2, "rip": eip & 0xFFFF,
        "g_pat": g_pat, "rdx": rdx, "sev_features": sev_features, "xcr0": 0x1,
    }
    for name, register in registers.items():
        struct.pack_into("<Q", page, _U64[name], register)
    struct.pack_into("<I", page, _MXCSR, mxcsr)
    struct.pack_into("<H", page, _X87_FCW, fcw)
    return bytes(page)


def pages(vcpus: int, ap_eip: int, sev_features: int, vcpu_signature: int, vmm: Vmm = Vmm.QEMU) -> list[bytes]:
    """VMSAs for ``vcpus`` vCPUs: the BSP at the reset vector, APs at OVMF's AP EIP."""
    if vcpus < 1:
        raise InputError(f"need at least one vCPU, got {vcpus}")
    bsp = build(BSP_EIP, sev_features, vcpu_signature, vmm)
    if vcpus == 1:
        return [bsp]
    if not ap_eip:
        raise FirmwareError("firmware has no SEV-ES reset block (00f771de-...), so APs cannot be measured")
    ap = build(ap_eip, sev_features, vcpu_signature, vmm)
    return [bsp] + [ap] * (vcpus - 1)
