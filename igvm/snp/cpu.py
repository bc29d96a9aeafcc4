"""vCPU models and SEV features: the inputs that change the VMSA.

The CPUID Fn0000_0001_EAX signature (family/model/stepping encoding of AMD
publication #25481) lands in RDX of every initial VMSA, so the launch digest
depends on the vCPU model QEMU was given. Models and their family/model/
stepping are those of QEMU's ``builtin_x86_defs`` (as listed by
sev-snp-measure ``vcpu_types.py``).
"""

from __future__ import annotations

from ..errors import InputError


def cpu_signature(family: int, model: int, stepping: int) -> int:
    """Encode family/model/stepping as CPUID Fn0000_0001_EAX."""
    base_family, ext_family = (0xF, (family - 0xF) & 0xFF) if family > 0xF else (family, 0)
    return (ext_family << 20) | ((model >> 4) & 0xF) << 16 | base_family << 8 | (model & 0xF) << 4 | (stepping & 0xF)


_FMS = {
    "EPYC": (23, 1, 2),
    "EPYC-Rome": (23, 49, 0),
    "EPYC-Milan": (25, 1, 1),
    "EPYC-Genoa": (25, 17, 0),
    "EPYC-Turin": (26, 0, 0),
}
_ALIASES = {
    "EPYC": ("EPYC-v1", "EPYC-v2", "EPYC-IBPB", "EPYC-v3", "EPYC-v4"),
    "EPYC-Rome": ("EPYC-Rome-v1", "EPYC-Rome-v2", "EPYC-Rome-v3"),
    "EPYC-Milan": ("EPYC-Milan-v1", "EPYC-Milan-v2"),
    "EPYC-Genoa": ("EPYC-Genoa-v1",),
}

VCPU_SIGNATURES: dict[str, int] = {}
for _name, _fms in _FMS.items():
    VCPU_SIGNATURES[_name] = cpu_signature(*_fms)
    for _alias in _ALIASES.get(_name, ()):
        VCPU_SIGNATURES[_alias] = VCPU_SIGNATURES[_name]


def vcpu_signature(vcpu_type: str | None = None, *, family: int | None = None, model: int | None = None,
                   stepping: int | None = None, signature: int | None = None) -> int:
    """Resolve a vCPU type name (or explicit F/M/S, or a raw signature)."""
    if signature is not None:
        return signature
    if family is not None or model is not None or stepping is not None:
        if family is None or model is None or stepping is None:
            raise InputError("--vcpu-family, --vcpu-model and --vcpu-stepping go together")
        return cpu_signature(family, model, stepping)
    if vcpu_type is None:
        raise InputError("a vCPU type is needed (e.g. --vcpu-type EPYC-Milan)")
    try:
        return VCPU_SIGNATURES[vcpu_type]
    except KeyError:
        raise InputError(f"unknown vCPU type {vcpu_type!r}; known: {', '.join(VCPU_SIGNATURES)}") from None


#: SEV_FEATURES bits (AMD APM vol. 2 "SEV_FEATURES"; igvm snp_defs.rs SevFeatures)
SEV_FEATURES = {
    0: "SNPActive", 1: "vTOM", 2: "ReflectVC", 3: "RestrictedInjection", 4: "AlternateInjection",
    5: "DebugSwap", 6: "PreventHostIBS", 7: "BTBIsolation", 8: "VmplSSS", 9: "SecureTSC",
    10: "VmgexitParameter", 12: "IbsVirtualization", 14: "VmsaRegProt", 15: "SmtProtection",
}
#: sev-snp-measure >= 0.0.10 default: SNPActive only. Host kernels 6.6-6.10
#: with DebugSwap enabled report 0x21 instead (AMDESE/AMDSEV#195).
DEFAULT_GUEST_FEATURES = 0x1
