"""The SNP firmware that binds the kernel (image/firmware.py): pinned sources, measurements, refusal, reproducibility.

The slow tests build edk2's AmdSevX64 once (cached in ~/.cache/cocoon/firmware
afterwards; the image build does the same) and need root-free tools only,
but they take minutes: COCOON_SKIP_IMAGE=1 skips them with the image tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.built import guest_kernel

from image import firmware

ROOT = Path(__file__).resolve().parent.parent
slow = pytest.mark.skipif(os.environ.get("COCOON_SKIP_IMAGE") == "1" or not shutil.which("nasm")
                          or not shutil.which("qemu-system-x86_64"),
                          reason="builds edk2 (minutes) and boots QEMU; COCOON_SKIP_IMAGE=1 skips")
GRUB_SH = '''GRUB_MODULES="
            linux
            reboot
            sevsecret
            "
rm -f -- "${basedir}/disk.fat"
mkfs.msdos -C -- "${basedir}/disk.fat" 64
mcopy -i "${basedir}/disk.fat" -- "${basedir}/grub.cfg" ::grub.cfg
'''


def test_grub_script_patch_drops_sevsecret_and_pins_the_memdisk() -> None:
    out = firmware.patch_grub_script(GRUB_SH, 1700000000)
    assert "sevsecret" not in out and "            reboot\n" in out
    assert 'touch -d @1700000000 -- "${basedir}/grub.cfg"' in out
    assert "mkfs.msdos --invariant -i 0x0 -C" in out and 'mcopy -m -i "${basedir}/disk.fat"' in out


def test_grub_script_patch_fails_when_upstream_changed() -> None:
    with pytest.raises(firmware.FirmwareError, match=r"grub\.sh changed"):
        firmware.patch_grub_script(GRUB_SH.replace("mcopy -i", "mcopy -s -i"), 0)


def test_a_source_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    for name, (_, size) in firmware.SOURCES.items():
        (tmp_path / name).write_bytes(b"\0" * size)  # right size, wrong bytes: no download attempted
    with pytest.raises(firmware.FirmwareError, match="is not the pinned"):
        firmware.fetch_sources(tmp_path)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("fw")
    subprocess.run([sys.executable, "-m", "image.firmware", "--out", str(out)], cwd=ROOT, check=True)
    info = json.loads((out / "firmware.json").read_text())
    print(f"firmware: {'built' if info['built'] else 'cached'} in {info['seconds']} s (goal <= 20 min clean, "
          "0 when cached)")
    return Path(out)


@slow
def test_three_implementations_agree_on_the_kernel_bound_digest(built: Path, tmp_path: Path) -> None:
    """sev-snp-measure accepts the firmware with --kernel/--initrd/--append and agrees with cocoon measure snp
    and with the measurement of an IGVM file cocoon packs from the same inputs."""
    from sevsnpmeasure import guest
    from sevsnpmeasure import vcpu_types as ssm_vcpu
    from sevsnpmeasure.sev_mode import SevMode

    fw = built / firmware.OUTPUT
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd"
    kernel.write_bytes(b"MZ" + hashlib.sha256(b"kernel").digest() * 1000)  # hashed, not parsed
    initrd.write_bytes(hashlib.sha256(b"initrd").digest() * 500)
    append = "console=ttyS0 quiet cocoon.roothash=" + "ab" * 32
    oracle = guest.calc_launch_digest(SevMode.SEV_SNP, 2, ssm_vcpu.CPU_SIGS["EPYC-Milan"], str(fw), str(kernel),
                                      str(initrd), append, 0x1).hex()
    common = ["--ovmf", str(fw), "--kernel", str(kernel), "--initrd", str(initrd), "--append", append,
              "--vcpus", "2", "--vcpu-type", "EPYC-Milan"]
    ours = json.loads(subprocess.run([sys.executable, "-m", "cocoon", "measure", "snp", *common, "--json"],
                                     check=True, capture_output=True, text=True).stdout)
    igvm = tmp_path / "g.igvm"
    subprocess.run([sys.executable, "-m", "cocoon", "igvm", "build", "--platform", "snp", *common, "-o", str(igvm)],
                   check=True, capture_output=True)
    # Pages without data measured as native ZERO pages, as QEMU's own OVMF launch measures SNP_SEC_MEM
    # (QEMU's IGVM loader measures them as NORMAL zero pages instead: the other, documented digest).
    packed = json.loads(subprocess.run([sys.executable, "-m", "cocoon", "measure", "igvm", str(igvm), "--zero-pages",
                                        "native", "--json"], check=True, capture_output=True, text=True).stdout)
    assert oracle == digest_of(ours) == digest_of(packed)
    # And the kernel really is bound: one changed command-line byte, another digest.
    other = guest.calc_launch_digest(SevMode.SEV_SNP, 2, ssm_vcpu.CPU_SIGS["EPYC-Milan"], str(fw), str(kernel),
                                     str(initrd), append.replace("ab", "ac", 1), 0x1).hex()
    assert other != oracle


def digest_of(doc: object) -> str:
    """The hex digest in a `cocoon measure --json` document (first 96-hex-digit string value)."""
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and len(item) == 96:
            return item
    raise AssertionError(f"no 48-byte digest in {doc}")


def boots(bios: str, image: Path, log: Path, seconds: float) -> bool:
    """Whether the kernel printed its banner on the serial console within ``seconds`` (TCG, no SEV)."""
    log.write_bytes(b"")
    proc = subprocess.Popen(["qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-cpu", "max", "-m", "1024",
                             "-display", "none", "-no-reboot", "-serial", f"file:{log}", "-monitor", "none",
                             "-bios", bios, "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"),
                             "-append", "console=ttyS0 panic=-1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if b"Linux version" in log.read_bytes():
                return True
            if proc.poll() is not None:
                return False
            time.sleep(1)
        return False
    finally:
        proc.kill()
        proc.wait(timeout=30)


@slow
def test_firmware_refuses_a_kernel_no_hashes_table_vouches_for(built: Path, tmp_path: Path) -> None:
    """Under TCG without SEV there is no hashes table: the AmdSev firmware must not start -kernel
    (BlobVerifierLibSevHashes), while Debian's OVMF boots the very same kernel."""
    image = tmp_path / "img"
    image.mkdir()
    # The guest kernel from the image test's build (this module runs after tests/test_image.py).
    kernel = guest_kernel()
    if kernel is None:
        pytest.skip("no guest kernel built yet (run tests/test_image.py or make image first)")
    shutil.copy(kernel, image / "vmlinuz")
    (image / "initrd.img").write_bytes(b"")
    assert boots("/usr/share/ovmf/OVMF.fd", image, tmp_path / "debian.log", 240), "control: Debian's OVMF must boot"
    assert not boots(str(built / firmware.OUTPUT), image, tmp_path / "amdsev.log", 120)
    # ... and that is the firmware's refusal, not a machine that never started: it ran and fell back to its grub.
    log = (tmp_path / "amdsev.log").read_bytes()
    assert b"BdsDxe" in log and b"GRUB" in log, log[-2000:]


@slow
@pytest.mark.skipif(os.environ.get("COCOON_REPRO") != "1", reason="set COCOON_REPRO=1 for a second clean build")
def test_two_firmware_builds_are_identical(built: Path, tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "image.firmware", "--fresh", "--out", str(tmp_path),
                    "--cache", str(tmp_path / "cache")], cwd=ROOT, check=True)
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    a = json.loads((built / "firmware.json").read_text())
    b = json.loads((tmp_path / "firmware.json").read_text())
    print(f"clean firmware build: {b['seconds']} s")
    assert a["sha256"] == b["sha256"]
