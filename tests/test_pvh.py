"""The sim launch's PVH kernel: the bzImage's own payload, checked, or a clear reason to boot the bzImage."""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.built import guest_kernel

from launcher import pvh
from launcher.qemu import Image, Machine

ENTRY = 0x1000140


def elf(entry: int | None = ENTRY, name: bytes = b"Xen\0", ntype: int = pvh.PVH_NOTE) -> bytes:
    """A 64-bit ELF with one PT_NOTE segment: a Linux note, then (optionally) the PVH entry note."""
    notes = struct.pack("<III", 6, 4, 1) + b"Linux\0\0\0" + b"6.x\0"
    if entry is not None:
        notes += struct.pack("<III", len(name), 8, ntype) + name.ljust(-(-len(name) // 4) * 4, b"\0")
        notes += struct.pack("<Q", entry)
    phoff, noteoff = 64, 64 + 56
    header = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9) + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, ENTRY, phoff, 0, 0,
                                                                    64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 4, 4, noteoff, 0, 0, len(notes), len(notes), 4)
    return header + phdr + notes


def compress(kind: str, data: bytes) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "bzip2":
        return bz2.compress(data)
    if kind == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    if kind == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_ALONE)
    assert kind == "zstd"
    return subprocess.run(["zstd", "-c", "-q", "-19"], input=data, capture_output=True, check=True).stdout


def bzimage(body: bytes, size: int | None = None, version: int = 0x020F, setup_sects: int = 3) -> bytes:
    """A bzImage shell: setup sectors with the header fields the boot protocol defines, then the payload."""
    payload = body + struct.pack("<I", len(body) if size is None else size)
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, version)
    struct.pack_into("<II", setup, 0x248, 0x40, len(payload))
    return bytes(setup) + bytes(0x40) + payload + bytes(64)


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "lzma", "zstd"])
def test_each_compression_gives_back_the_elf(kind: str) -> None:
    kernel = elf()
    image = bzimage(compress(kind, kernel), size=len(kernel))
    assert pvh.payload(image)[0] == kind
    assert pvh.elf_kernel(image) == kernel
    assert pvh.pvh_entry(kernel) == ENTRY


@pytest.mark.parametrize(("image", "message"), [
    (b"MZ" + bytes(0x400), "no 'HdrS' setup header"),
    (bzimage(gzip.compress(elf()), version=0x0206), "boot protocol 2.6 has no payload fields"),
    (bzimage(b"\x00\x01\x02\x03" * 8), "compression not recognised (starts 000102030001)"),
    (bzimage(b"\x02\x21\x4c\x18" + bytes(16), size=100), "lz4 payloads are not supported"),
    (bzimage(gzip.compress(elf()), size=len(elf()) + 1), "the bzImage says"),
    (bzimage(gzip.compress(elf()), size=1 << 30), "limit"),
    (bzimage(gzip.compress(b"not an elf" * 10), size=100), "not a 64-bit little-endian ELF"),
    (bzimage(gzip.compress(elf(entry=None)), size=len(elf(entry=None))), "no PVH entry note"),
    (bzimage(gzip.compress(elf(name=b"Xeo\0")), size=len(elf())), "no PVH entry note"),
    (bzimage(gzip.compress(elf(ntype=17)), size=len(elf())), "no PVH entry note"),
    (bzimage(gzip.compress(elf())[:-12], size=len(elf())), "ends before its stream does"),
    (bzimage(compress("zstd", elf())[:-6], size=len(elf())), "zstd:"),
])
def test_what_cannot_boot_through_pvh_says_why(image: bytes, message: str) -> None:
    with pytest.raises(pvh.PvhError) as err:
        pvh.elf_kernel(image)
    assert message in str(err.value)


def test_payload_outside_the_file_is_refused() -> None:
    image = bytearray(bzimage(gzip.compress(elf())))
    struct.pack_into("<I", image, 0x24C, len(image))
    with pytest.raises(pvh.PvhError, match="lies outside"):
        pvh.elf_kernel(bytes(image))


def test_note_running_past_its_segment_is_refused() -> None:
    kernel = bytearray(elf())
    struct.pack_into("<I", kernel, 64 + 56 + 20 + 4, 4096)  # the PVH note's descsz
    with pytest.raises(pvh.PvhError, match="overruns its segment"):
        pvh.pvh_entry(bytes(kernel))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_only_raise_pvh_error(data: bytes) -> None:
    try:
        out = pvh.elf_kernel(data)
    except pvh.PvhError as exc:
        assert str(exc)  # refused with a reason
    else:  # (not reachable from random bytes in practice: it would need a valid compressed ELF)
        assert out.startswith(b"\x7fELF") and pvh.pvh_entry(out) >= 0


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_images_only_raise_pvh_error(data: st.DataObject) -> None:
    kernel = elf()
    kind = data.draw(st.sampled_from(["gzip", "xz", "bzip2"]))
    image = bytearray(bzimage(compress(kind, kernel), size=len(kernel)))
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(image) - 1))
        image[at] = data.draw(st.integers(0, 255))
    try:
        out = pvh.elf_kernel(bytes(image))
    except pvh.PvhError:
        return
    assert pvh.pvh_entry(out) >= 0


def test_the_guest_kernel_boots_through_its_pvh_entry(tmp_path: Path) -> None:
    """Debian's kernel: a zstd payload whose ELF has the PVH note and the bzImage's own version banner."""
    kernel = guest_kernel()
    if kernel is None:
        pytest.skip("no guest kernel built yet")
    data = kernel.read_bytes()
    path = pvh.cached_elf_kernel(kernel, tmp_path)
    out = path.read_bytes()
    assert pvh.pvh_entry(out) > 0
    # The setup header's kernel_version field (boot protocol 2.00+: a pointer, minus 0x200, to a string).
    (ptr,) = struct.unpack_from("<H", data, 0x20E)
    version = data[ptr + 0x200:].split(b"\0", 1)[0]
    release = version.split(b" ", 1)[0]
    assert release.startswith(b"6.") and b"Linux version " + release + b" (" in out
    # Cached by the bzImage's digest: the second call neither decompresses nor rewrites.
    mtime = path.stat().st_mtime_ns
    assert pvh.cached_elf_kernel(kernel, tmp_path) == path and path.stat().st_mtime_ns == mtime


def test_sim_kernel_falls_back_to_the_bzimage_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "vmlinuz"
    fake.write_bytes(bzimage(gzip.compress(elf(entry=None)), size=len(elf(entry=None))))
    monkeypatch.setenv("COCOON_CACHE", str(tmp_path / "cache"))
    path, how = pvh.sim_kernel(fake)
    assert path is None and how.startswith("bzImage through SeaBIOS") and "no PVH entry note" in how
    fake.write_bytes(bzimage(gzip.compress(elf()), size=len(elf())))
    path, how = pvh.sim_kernel(fake)
    assert path is not None and path.parent == tmp_path / "cache" / "kernels" and how.startswith("PVH entry")


def test_only_sim_launches_use_the_pvh_kernel(tmp_path: Path) -> None:
    (tmp_path / "cmdline").write_text("console=ttyS0")
    image = Image(tmp_path)
    elf_path = tmp_path / "k.elf"
    sim = Machine(image, platform="sim", sim_config=tmp_path / "sim.json", pvh_kernel=elf_path).argv()
    assert sim[sim.index("-kernel") + 1] == str(elf_path)
    assert ("-bios" in sim) == pvh.QBOOT.is_file()
    snp = Machine(image, platform="snp", initdata_digest=bytes(32), pvh_kernel=elf_path).argv()
    assert snp[snp.index("-kernel") + 1] == str(image.kernel)
    assert snp[snp.index("-bios") + 1].endswith("OVMF-AmdSev.fd")
    plain = Machine(image, platform="sim", sim_config=tmp_path / "sim.json").argv()
    assert plain[plain.index("-kernel") + 1] == str(image.kernel) and "-bios" not in plain
