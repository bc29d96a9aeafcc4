"""The image's kernel as an ELF with a PVH entry, for sim launches under TCG.

Why: a bzImage starts by decompressing itself (Debian's: ~11 MB of zstd) and
then relocating; under TCG that and the SeaBIOS hand-off cost ~2 s of every
boot before the kernel's first line. The same kernel carries a PVH entry
point (CONFIG_PVH: an ELF note ``Xen``/XEN_ELFNOTE_PHYS32_ENTRY = 18, from
Xen's public ``elfnote.h``), and QEMU's ``-kernel`` boots such an ELF
directly (``pvh.bin`` option ROM), so the launcher decompresses the payload
once, checks that it is that ELF, and caches it by the bzImage's SHA-256.
The code that runs is the bzImage's own payload; what differs is the boot
path (no decompressor, hence no KASLR), which the sim does not measure
anyway: the sim PSP reports the reference measurement of the bzImage launch.
SNP and TDX launches always boot the measured bzImage through firmware.

Layout facts from the Linux x86 boot protocol (Documentation/arch/x86/boot.rst):
``setup_sects`` at 0x1F1 (0 means 4), ``HdrS`` at 0x202, protocol version
at 0x206, ``payload_offset``/``payload_length`` at 0x248/0x24C (protocol >=
2.08, relative to the protected-mode code after the setup sectors). The
kernel's build appends the decompressed size as 4 little-endian bytes to
every compressed payload (``size_append`` in scripts/Makefile.lib).
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from agent.errors import AgentError

#: XEN_ELFNOTE_PHYS32_ENTRY (xen/include/public/elfnote.h): the 32-bit PVH entry QEMU jumps to
PVH_NOTE = 18
#: payloads are at most this large once decompressed (Debian's 6.12 vmlinux is ~57 MB)
MAX_KERNEL = 512 << 20
#: QEMU's minimal firmware: with a PVH kernel it boots in a fraction of SeaBIOS's time under TCG
QBOOT = Path("/usr/share/qemu/qboot.rom")


class PvhError(AgentError):
    """The kernel cannot be booted through its PVH entry (the launcher then boots the bzImage)."""


def payload(bzimage: bytes) -> tuple[str, bytes, int]:
    """(compression, compressed bytes, decompressed size) of a bzImage's kernel payload."""
    if len(bzimage) < 0x250 or bzimage[0x202:0x206] != b"HdrS":
        raise PvhError("not a bzImage: no 'HdrS' setup header at 0x202")
    (version,) = struct.unpack_from("<H", bzimage, 0x206)
    if version < 0x0208:
        raise PvhError(f"boot protocol {version >> 8}.{version & 0xFF} has no payload fields (2.08 needed)")
    setup_sects = bzimage[0x1F1] or 4
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + offset
    end = start + length
    if length < 8 or end > len(bzimage):
        raise PvhError(f"payload at {start:#x}+{length:#x} lies outside the {len(bzimage):#x}-byte file")
    data = bzimage[start:end]
    (size,) = struct.unpack_from("<I", data, len(data) - 4)
    for name, magic in MAGICS:
        if data.startswith(magic):
            return name, data[:-4], size
    raise PvhError(f"payload compression not recognised (starts {data[:6].hex()})")


MAGICS = (("gzip", b"\x1f\x8b"), ("bzip2", b"BZh"), ("xz", b"\xfd7zXZ\x00"), ("lzma", b"\x5d\x00\x00"),
          ("zstd", b"\x28\xb5\x2f\xfd"), ("lz4", b"\x02\x21\x4c\x18"), ("lzo", b"\x89LZO"))


class _Decompressor(Protocol):
    """What zlib's, bz2's and lzma's streaming decompressors have in common."""

    @property
    def eof(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


DECOMPRESSORS: dict[str, Callable[[], _Decompressor]] = {
    "gzip": lambda: zlib.decompressobj(wbits=31),
    "bzip2": bz2.BZ2Decompressor,
    "xz": lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ),
    "lzma": lambda: lzma.LZMADecompressor(format=lzma.FORMAT_ALONE),
}


def decompress(kind: str, data: bytes, size: int) -> bytes:
    """The payload decompressed; exactly ``size`` bytes or an error."""
    if size > MAX_KERNEL:
        raise PvhError(f"payload claims {size} bytes decompressed (limit {MAX_KERNEL})")
    try:
        if kind == "zstd":
            out = _zstd(data, size)
        elif kind in DECOMPRESSORS:
            d = DECOMPRESSORS[kind]()
            out = d.decompress(data, size + 1)
            if not d.eof:
                raise PvhError(f"{kind} payload ends before its stream does (truncated?)")
        else:
            raise PvhError(f"{kind} payloads are not supported (gzip, bzip2, xz, lzma and zstd are)")
    except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError) as exc:
        raise PvhError(f"{kind} payload does not decompress: {exc}") from None
    if len(out) != size:
        raise PvhError(f"{kind} payload gave {len(out)} bytes, the bzImage says {size}")
    return out


def _zstd(data: bytes, size: int) -> bytes:
    """Python 3.11 has no zstd; Debian's ``zstd`` (make setup installs it) does it in ~0.1 s."""
    tool = shutil.which("zstd")
    if tool is None:
        raise PvhError("the zstd tool is not installed (apt-get install zstd)")
    # --long=31: the kernel's payload is compressed with --ultra -22, whose window exceeds zstd's default limit
    proc = subprocess.run([tool, "-d", "-c", "-q", "--long=31"], input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        raise PvhError(f"zstd: {proc.stderr.decode(errors='replace').strip() or f'exit {proc.returncode}'}")
    return proc.stdout  # its size is checked by the caller


def pvh_entry(elf: bytes) -> int:
    """The PVH entry address of a 64-bit little-endian ELF kernel, from its PT_NOTE segments."""
    if len(elf) < 64 or elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise PvhError("the payload is not a 64-bit little-endian ELF")
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    if phentsize < 56 or phoff + phnum * phentsize > len(elf):
        raise PvhError("the ELF's program headers lie outside it")
    for i in range(phnum):
        ptype, _, offset, _, _, filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if ptype != 4:  # PT_NOTE
            continue
        if offset + filesz > len(elf):
            raise PvhError(f"ELF note segment {i} lies outside the file")
        at, end = offset, offset + filesz
        while at + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, at)
            name_at = at + 12
            desc_at = name_at + (-(-namesz // 4) * 4)
            nxt = desc_at + (-(-descsz // 4) * 4)
            if nxt > end:
                raise PvhError(f"ELF note at {at:#x} overruns its segment")
            if elf[name_at:name_at + namesz].rstrip(b"\0") == b"Xen" and ntype == PVH_NOTE and descsz in (4, 8):
                return int.from_bytes(elf[desc_at:desc_at + descsz], "little")
            at = nxt
    raise PvhError("the kernel has no PVH entry note (built without CONFIG_PVH)")


def elf_kernel(bzimage: bytes) -> bytes:
    """The bzImage's payload when it is an ELF kernel QEMU can boot through its PVH entry."""
    kind, data, size = payload(bzimage)
    elf = decompress(kind, data, size)
    pvh_entry(elf)
    return elf


def cache_dir() -> Path:
    """Where derived kernels are kept: $COCOON_CACHE, else ~/.cache/cocoon (as the image build's cache)."""
    return Path(os.environ.get("COCOON_CACHE") or os.path.expanduser("~/.cache/cocoon"))


def cached_elf_kernel(bzimage: Path, cache: Path | None = None) -> Path:
    """``elf_kernel`` of the file, kept under ``cache/kernels`` by the bzImage's SHA-256 (written atomically)."""
    data = bzimage.read_bytes()
    where = (cache or cache_dir()) / "kernels"
    path = where / f"{hashlib.sha256(data).hexdigest()}.pvh.elf"
    if path.is_file():
        return path
    elf = elf_kernel(data)
    where.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=where, prefix=".pvh-")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(elf)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def sim_kernel(bzimage: Path) -> tuple[Path | None, str]:
    """The PVH kernel for a sim launch and how it boots, or None and why the bzImage boots instead."""
    try:
        return cached_elf_kernel(bzimage), "PVH entry of the bzImage's own payload" + (
            " (qboot)" if QBOOT.is_file() else "")
    except (PvhError, OSError) as exc:
        return None, f"bzImage through SeaBIOS ({exc})"
