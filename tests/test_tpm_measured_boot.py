"""Our RTMR event digests against what real firmware and a real kernel measure, for the same files.

No TDX hardware here, but the measurements TDVF extends into RTMR1/RTMR2 are
made by the same edk2 and Linux code that, without TDX, extends TPM PCRs:
DxeTpm2MeasureBootLib measures the booted image (PCR 4 <-> RTMR1), the Linux
EFI stub measures its load options and initrd (PCR 9 <-> RTMR2; the TCG->CC
mapping is PCR 2-6 -> RTMR1, 8-15 -> RTMR2, UEFI 2.10 §38.4.1). So Debian's
OVMF boots the guest kernel under QEMU TCG with swtpm (SHA-384 bank active),
a busybox initrd prints the firmware's event log and the TPM's PCR values,
and the test checks, digest by digest:

- ``-kernel/-initrd/-append`` (the direct boot cocoon's TDX launch uses):
  PCR 9 = our predicted RTMR2 for that cmdline and initrd (load options as
  OVMF builds them, "<cmdline> initrd=initrd" in UTF-16LE, then the initrd's
  SHA-384), and the fixed EV_EFI_ACTION events equal ours;
- the kernel started from a FAT disk by the UEFI shell (so no VMM touches
  its bytes): the firmware's EV_EFI_BOOT_SERVICES_APPLICATION digest equals
  our Authenticode SHA-384 of the file;
- every log replays to the PCR values the TPM itself reports.

Two TCG boots (~15 s and ~40 s); skipped with COCOON_SKIP_IMAGE=1 or without
swtpm/QEMU/a built guest kernel.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from support.built import guest_kernel

from igvm.tdx import eventlog, rtmr
from image.initrd import Cpio

OVMF = Path("/usr/share/ovmf/OVMF.fd")
TPM_ALG_SHA384 = 0x000C
CMDLINE = "console=ttyS0 quiet"
INIT = b"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t securityfs securityfs /sys/kernel/security
for i in 4 9; do echo "PCR$i=$(/bin/busybox cat /sys/class/tpm/tpm0/pcr-sha384/$i)"; done
echo BEGIN-LOG
/bin/busybox base64 /sys/kernel/security/tpm0/binary_bios_measurements
echo END-LOG
/bin/busybox poweroff -f
"""

pytestmark = pytest.mark.skipif(
    os.environ.get("COCOON_SKIP_IMAGE") == "1" or not shutil.which("swtpm") or not shutil.which("swtpm_setup")
    or not shutil.which("qemu-system-x86_64") or not shutil.which("mcopy") or not OVMF.is_file()
    or not Path("/bin/busybox").is_file(),
    reason="needs swtpm, QEMU, mtools, Debian's OVMF and busybox-static (make setup); COCOON_SKIP_IMAGE=1 skips")


@pytest.fixture(autouse=True)
def _kernel_built() -> None:
    # Looked for when a test runs, not when the file is collected: on a cold machine `make test` builds
    # the kernel in test_image.py, which runs first; a collection-time check skipped these tests there.
    if guest_kernel() is None:
        pytest.skip("needs a built guest kernel (make image, or test_image.py earlier in the run)")


def busybox_initrd() -> bytes:
    cpio = Cpio(mtime=0)
    for d in ("proc", "sys", "dev"):
        cpio.dir(d)
    cpio.file("bin/busybox", Path("/bin/busybox").read_bytes(), 0o755)
    cpio.file("init", INIT, 0o755)
    return gzip.compress(cpio.archive(), mtime=0)


class Boot:
    """What the guest printed: the PCR values the TPM reports and the firmware's parsed event log."""

    def __init__(self, console: str) -> None:
        self.pcrs = {int(i): bytes.fromhex(v) for i, v in re.findall(r"PCR(\d+)=([0-9A-Fa-f]{96})", console)}
        if "END-LOG" not in console:
            raise AssertionError(f"the guest printed no event log; console tail:\n{console[-2000:]}")
        b64 = console.split("BEGIN-LOG", 1)[1].split("END-LOG", 1)[0]
        self.events = eventlog.parse_log(base64.b64decode("".join(b64.split())))[1:]

    def digests(self, pcr: int, etype: int | None = None) -> list[bytes]:
        return [e.digests[TPM_ALG_SHA384] for e in self.events
                if e.mr_index == pcr and e.type != eventlog.EV_NO_ACTION and etype in (None, e.type)]

    def replay(self, pcr: int) -> bytes:
        return rtmr.replay_digests(self.digests(pcr))


def boot(tmp: Path, name: str, guest_args: list[str], timeout: float) -> Boot:
    state, sock, console = tmp / f"{name}-tpm", tmp / f"{name}-tpm.sock", tmp / f"{name}-console.log"
    state.mkdir()
    subprocess.run(["swtpm_setup", "--tpm2", "--tpmstate", str(state), "--pcr-banks", "sha256,sha384",
                    "--overwrite"], check=True, capture_output=True)
    tpm = subprocess.Popen(["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}", "--ctrl",
                            f"type=unixio,path={sock}", "--terminate"])
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert tpm.poll() is None and time.monotonic() < deadline, "swtpm did not open its socket"
            time.sleep(0.05)
        subprocess.run(["qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-no-reboot", "-nic", "none",
                        "-display", "none", "-monitor", "none", "-serial", f"file:{console}",
                        "-bios", str(OVMF), "-chardev", f"socket,id=tpm,path={sock}",
                        "-tpmdev", "emulator,id=tpm0,chardev=tpm", "-device", "tpm-tis,tpmdev=tpm0", *guest_args],
                       check=True, timeout=timeout, capture_output=True)
    finally:
        tpm.kill()
        tpm.wait()
    return Boot(console.read_text(errors="replace"))


def qemu_version() -> tuple[int, int]:
    out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def test_direct_boot_pcr9_is_our_rtmr2_and_the_log_replays_to_the_tpm(tmp_path: Path) -> None:
    kernel = guest_kernel()
    assert kernel is not None
    initrd = tmp_path / "initrd.gz"
    initrd.write_bytes(busybox_initrd())
    got = boot(tmp_path, "direct", ["-kernel", str(kernel), "-initrd", str(initrd), "-append", CMDLINE], 600)
    assert got.pcrs.keys() == {4, 9}
    for pcr, value in got.pcrs.items():
        assert got.replay(pcr) == value, f"PCR{pcr}: the log does not replay to the TPM's value"

    predicted = rtmr.predict(kernel.read_bytes(), initrd.read_bytes(), CMDLINE)
    assert got.digests(9) == rtmr.rtmr2_events(CMDLINE, initrd.read_bytes())
    assert got.pcrs[9].hex() == predicted["rtmr2"]

    actions = [hashlib.sha384(t).digest() for t in (rtmr.CALLING_EFI_APPLICATION, rtmr.EXIT_BOOT_SERVICES,
                                                    rtmr.EXIT_BOOT_SERVICES_OK)]
    measured_actions = [d for pcr in (4, 5) for d in got.digests(pcr, eventlog.EV_EFI_ACTION)]
    assert measured_actions == actions

    # QEMU < 10.1 hands OVMF a kernel whose setup header it has patched, so the measured image is not the
    # file (why RTMR1 is predicted for QEMU >= 10.1, see igvm/tdx/rtmr.py); from 10.1 on it is the file.
    [app] = got.digests(4, eventlog.EV_EFI_BOOT_SERVICES_APPLICATION)
    assert (app == rtmr.authenticode_sha384(kernel.read_bytes())) == (qemu_version() >= (10, 1))


def test_firmware_measures_the_kernel_file_as_our_authenticode(tmp_path: Path) -> None:
    kernel = guest_kernel()
    assert kernel is not None
    esp = tmp_path / "esp.img"
    subprocess.run(["mkfs.vfat", "-C", str(esp), str(40 * 1024)], check=True, capture_output=True)
    (tmp_path / "initrd.gz").write_bytes(busybox_initrd())
    (tmp_path / "startup.nsh").write_bytes(f"fs0:\r\n\\vmlinuz {CMDLINE} initrd=\\initrd.gz\r\n".encode())
    for name, src in (("vmlinuz", kernel), ("initrd.gz", tmp_path / "initrd.gz"),
                      ("startup.nsh", tmp_path / "startup.nsh")):
        subprocess.run(["mcopy", "-i", str(esp), str(src), f"::/{name}"], check=True, capture_output=True)
    got = boot(tmp_path, "disk", ["-drive", f"file={esp},format=raw,if=virtio"], 900)
    for pcr, value in got.pcrs.items():
        assert got.replay(pcr) == value, f"PCR{pcr}: the log does not replay to the TPM's value"
    # The shell is measured first, then the kernel it starts.
    assert rtmr.authenticode_sha384(kernel.read_bytes()) in got.digests(4, eventlog.EV_EFI_BOOT_SERVICES_APPLICATION)
