"""Reference values: the launch measurements a verifier should accept.

The document is versioned (``schema``) and every value says which inputs and
which launch path produced it, so an auditor can regenerate it from the build
outputs with the same command. Format: docs/reference-values.md.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from . import ovmf as ovmf_mod
from .snp import cpu
from .snp.hashes import KernelHashes, from_files
from .snp.launch import SnpLaunch, digests_per_vcpu_count
from .tdx.mrtd import tdvf_mrtd

SCHEMA = "cocoon.reference-values/v1"
DEFAULT_VCPUS = [1, 2, 4, 8]
DEFAULT_VCPU_TYPES = ["EPYC-Milan", "EPYC-Genoa"]
DEFAULT_GUEST_FEATURES = [0x1]


@dataclass
class Inputs:
    ovmf: str
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    tdx_ovmf: str | None = None
    snp_policy: int = 0x30000
    vcpus: list[int] = field(default_factory=lambda: list(DEFAULT_VCPUS))
    vcpu_types: list[str] = field(default_factory=lambda: list(DEFAULT_VCPU_TYPES))
    guest_features: list[int] = field(default_factory=lambda: list(DEFAULT_GUEST_FEATURES))
    #: RTMR0 values (hex) recorded from trusted launches of the same VM shape (see _rtmrs)
    rtmr0: list[str] = field(default_factory=list)


def _file_ref(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            digest.update(chunk)
    return {"path": os.path.basename(path), "sha256": digest.hexdigest(), "size": os.path.getsize(path)}


def _rtmrs(inputs: Inputs) -> dict[str, Any] | None:
    """RTMR0-2 for a direct kernel boot (QEMU >= 10.1, Linux >= 6.9), each a list of candidates.

    RTMR1/RTMR2 are predicted from the kernel, initrd and command line (with and without the RTMR1
    separator, which depends on the firmware's generation). RTMR0 covers the TD HOB (RAM size), the
    ACPI tables QEMU generates for the device topology and the EFI variables: no input here
    determines it, so it is a list of values recorded from trusted launches of the same VM shape
    (``--rtmr0``, or ``--rtmr0-eventlog`` with the CCEL of such a launch), empty when none was given.
    """
    rtmr0 = sorted(set(inputs.rtmr0))
    if inputs.kernel is None:
        return {"rtmr0": rtmr0} if rtmr0 else None
    from .tdx.rtmr import PeError, predict

    with open(inputs.kernel, "rb") as fh:
        kernel = fh.read()
    initrd = None
    if inputs.initrd is not None:
        with open(inputs.initrd, "rb") as fh:
            initrd = fh.read()
    try:
        with_sep = predict(kernel, initrd, inputs.cmdline or "", separator=True)
    except PeError as exc:  # SNP binds any kernel blob; TDVF only starts (and measures) PE images
        return {"unavailable": f"kernel is not a PE/COFF image TDVF could start: {exc}"}
    without = predict(kernel, initrd, inputs.cmdline or "", separator=False)
    recorded = f"rtmr0 as recorded from {len(rtmr0)} trusted launch(es)" if rtmr0 else "rtmr0 not recorded"
    return {"rtmr0": rtmr0, "rtmr1": [with_sep["rtmr1"], without["rtmr1"]], "rtmr2": [with_sep["rtmr2"]],
            "boot": f"qemu>=10.1 direct kernel boot, linux>=6.9 efi stub; {recorded}"}


def generate(inputs: Inputs) -> dict[str, Any]:
    """Compute every reference value the inputs determine."""
    fw = ovmf_mod.load(inputs.ovmf)
    hashes: KernelHashes | None = None
    if inputs.kernel is not None:
        hashes = from_files(inputs.kernel, inputs.initrd, inputs.cmdline)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "inputs": {
            "ovmf": _file_ref(inputs.ovmf),
            "kernel": _file_ref(inputs.kernel),
            "initrd": _file_ref(inputs.initrd),
            "cmdline": inputs.cmdline,
        },
    }
    if fw.sev_sections:
        entries = []
        for vcpu_type in inputs.vcpu_types:
            signature = cpu.vcpu_signature(vcpu_type)
            for features in inputs.guest_features:
                launch = SnpLaunch(1, signature, features, kernel_hashes=hashes)
                for n, digest in digests_per_vcpu_count(fw, launch, sorted(set(inputs.vcpus))).items():
                    entries.append({"vcpus": n, "vcpu_type": vcpu_type, "vcpu_signature": f"{signature:#x}",
                                    "guest_features": f"{features:#x}", "measurement": digest.hex()})
        doc["snp"] = {
            "launch": "qemu-ovmf" + ("-kernel-hashes" if hashes else ""),
            "guest_policy": f"{inputs.snp_policy:#x}",
            "measurements": entries,
            "kernel_hashes": None if hashes is None else {
                "kernel_sha256": hashes.kernel.hex(), "initrd_sha256": hashes.initrd.hex(),
                "cmdline_sha256": hashes.cmdline.hex()},
        }
    tdx_fw = ovmf_mod.load(inputs.tdx_ovmf) if inputs.tdx_ovmf else fw
    if tdx_fw.tdvf_sections:
        doc["tdx"] = {
            "firmware": _file_ref(inputs.tdx_ovmf or inputs.ovmf),
            "mrtd": {"single_pass": tdvf_mrtd(tdx_fw).hex(), "two_pass": tdvf_mrtd(tdx_fw, two_pass=True).hex()},
            "rtmr": _rtmrs(inputs),
        }
    if "snp" not in doc and "tdx" not in doc:
        from .errors import FirmwareError

        raise FirmwareError("firmware has neither SEV nor TDVF metadata: nothing confidential to measure")
    return doc
