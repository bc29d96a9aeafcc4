"""Predicted RTMR1 and RTMR2 for a TDX guest that OVMF/TDVF boots directly (QEMU -kernel/-initrd/-append).

RTMR1 (what TDVF measures to boot the kernel; edk2's DxeTpm2MeasureBootLib and
the TCG PC Client event conventions):
  1. EV_EFI_BOOT_SERVICES_APPLICATION: the kernel's Authenticode SHA-384,
  2. EV_EFI_ACTION "Calling EFI Application from Boot Option",
  3. EV_SEPARATOR (four zero bytes) - only in edk2 with commit efaf893,
     which moved the ReadyToBoot separator to RTMR1 (virtee/tdx-measure#52),
  4. EV_EFI_ACTION "Exit Boot Services Invocation",
  5. EV_EFI_ACTION "Exit Boot Services Returned with Success".
QEMU before 10.1 patched the kernel's setup header before OVMF saw it (so the
Authenticode hash of the file on disk is not what was measured); QEMU >= 10.1
does not (edgelesssys/contrast#1991). cocoon predicts for QEMU >= 10.1.

RTMR2 (the Linux EFI stub, kernel >= 6.9, measures into PCR 9 = RTMR2):
  1. the load options: the command line OVMF builds, "<cmdline> initrd=initrd"
     when an initrd is given (edk2 X86QemuLoadImageLib), as UTF-16LE with
     its NUL terminator,
  2. the initrd's SHA-384.
RTMR0 depends on RAM size (TD HOB), ACPI tables and EFI variables; it is not
predicted here (see docs/decisions.md).

Checked against real firmware (tests/test_tpm_measured_boot.py): Debian's OVMF
with a vTPM runs the same measurement code for PCR 4/5 (-> RTMR1) and the EFI
stub for PCR 9 (-> RTMR2); PCR 9 equals our RTMR2, the EV_EFI_ACTION digests
are ours, and the firmware's digest of the kernel file is our Authenticode.
"""

from __future__ import annotations

import hashlib
import struct

from igvm.errors import MeasureError
from igvm.tdx.eventlog import extend

CALLING_EFI_APPLICATION = b"Calling EFI Application from Boot Option"
EXIT_BOOT_SERVICES = b"Exit Boot Services Invocation"
EXIT_BOOT_SERVICES_OK = b"Exit Boot Services Returned with Success"
SEPARATOR = b"\0\0\0\0"
CERT_TABLE = 4  # data directory index of the attribute certificate table


class PeError(MeasureError):
    """The kernel is not a PE/COFF image OVMF could measure; the message names the offset."""


def authenticode_sha384(pe: bytes) -> bytes:
    """Authenticode digest (Microsoft PE/COFF spec, "Authenticode PE image hash"): the headers without the
    checksum and the certificate-table entry, the sections in file order, then trailing data except the
    certificate table."""
    def u16(off: int) -> int:
        if off + 2 > len(pe):
            raise PeError(f"truncated at offset {off:#x}")
        return int(struct.unpack_from("<H", pe, off)[0])

    def u32(off: int) -> int:
        if off + 4 > len(pe):
            raise PeError(f"truncated at offset {off:#x}")
        return int(struct.unpack_from("<I", pe, off)[0])

    if pe[:2] != b"MZ":
        raise PeError("no MZ header at offset 0x0")
    nt = u32(0x3C)
    if pe[nt : nt + 4] != b"PE\0\0":
        raise PeError(f"no PE signature at offset {nt:#x}")
    coff = nt + 4
    nsections, opt_size = u16(coff + 2), u16(coff + 16)
    opt = coff + 20
    magic = u16(opt)
    if magic == 0x20B:
        dirs, count_off = opt + 112, opt + 108
    elif magic == 0x10B:
        dirs, count_off = opt + 96, opt + 92
    else:
        raise PeError(f"optional header magic {magic:#x} at offset {opt:#x} is neither PE32 nor PE32+")
    header_size = u32(opt + 60)
    if header_size > len(pe) or opt + opt_size > header_size:
        raise PeError(f"SizeOfHeaders {header_size:#x} does not fit the file or the headers")
    ndirs = u32(count_off)
    checksum = opt + 64
    h = hashlib.sha384()
    h.update(pe[:checksum])
    cert_off = cert_size = 0
    if ndirs > CERT_TABLE and dirs + 8 * CERT_TABLE + 8 <= opt + opt_size:
        entry = dirs + 8 * CERT_TABLE
        cert_off, cert_size = u32(entry), u32(entry + 4)
        h.update(pe[checksum + 4 : entry])
        h.update(pe[entry + 8 : header_size])
    else:
        h.update(pe[checksum + 4 : header_size])
    sections = []
    table = opt + opt_size
    for i in range(nsections):
        s = table + 40 * i
        raw_size, raw_ptr = u32(s + 16), u32(s + 20)
        if raw_size:
            if raw_ptr + raw_size > len(pe):
                raise PeError(f"section {i} (header at {s:#x}) raw data {raw_ptr:#x}+{raw_size:#x} beyond the file")
            sections.append((raw_ptr, raw_size))
    hashed = header_size
    for ptr, size in sorted(sections):
        h.update(pe[ptr : ptr + size])
        hashed += size
    end = len(pe) - cert_size if cert_size and cert_off + cert_size <= len(pe) else len(pe)
    if end > hashed:
        h.update(pe[hashed:end])
    return h.digest()


def rtmr1_events(kernel: bytes, separator: bool = True) -> list[bytes]:
    """The SHA-384 event digests TDVF extends into RTMR1 to start ``kernel``."""
    events = [authenticode_sha384(kernel), hashlib.sha384(CALLING_EFI_APPLICATION).digest()]
    if separator:
        events.append(hashlib.sha384(SEPARATOR).digest())
    events += [hashlib.sha384(EXIT_BOOT_SERVICES).digest(), hashlib.sha384(EXIT_BOOT_SERVICES_OK).digest()]
    return events


def load_options(cmdline: str, with_initrd: bool) -> bytes:
    """The UTF-16LE load options (NUL-terminated) OVMF hands the kernel, as the stub measures them."""
    text = f"{cmdline} initrd=initrd" if with_initrd and cmdline else ("initrd=initrd" if with_initrd else cmdline)
    return text.encode("utf-16-le") + b"\0\0"


def rtmr2_events(cmdline: str, initrd: bytes | None) -> list[bytes]:
    events = [hashlib.sha384(load_options(cmdline, initrd is not None)).digest()]
    if initrd is not None:
        events.append(hashlib.sha384(initrd).digest())
    return events


def replay_digests(digests: list[bytes]) -> bytes:
    register = bytes(48)
    for d in digests:
        register = extend(register, d)
    return register


def predict(kernel: bytes, initrd: bytes | None, cmdline: str, separator: bool = True) -> dict[str, str]:
    """RTMR1 and RTMR2 (hex) for a direct boot of these inputs."""
    return {"rtmr1": replay_digests(rtmr1_events(kernel, separator)).hex(),
            "rtmr2": replay_digests(rtmr2_events(cmdline, initrd)).hex()}
