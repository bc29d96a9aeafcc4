"""dm-verity layers: the kernel's dm-verity when it is there, a verified in-memory copy when not.

On-disk format (cryptsetup's VERITY superblock, ``lib/verity/verity.c``, and
the kernel's ``Documentation/admin-guide/device-mapper/verity.rst``): a
512-byte superblock at the hash offset, signature ``verity\\0\\0``, version
1, hash_type 1 (salt prepended to every hashed block), algorithm name,
data/hash block sizes, data block count, salt. Each data block hashes to
H(salt || block); hashes are packed into hash blocks (zero-padded) and
hashed again level by level; the root hash is H(salt || top block).

Two openers behind one interface: ``KernelVerity`` (veritysetup open, then a
full read so a corrupted block fails here and not in the middle of a
container's life) and ``CopyVerity`` for kernels without device-mapper (this
build machine): it recomputes the tree while copying the data into guest
memory and serves that copy, so the host cannot change the bytes after
they were checked. Both refuse a layer whose root hash differs from the
one the policy pinned.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass

from agent.errors import AgentError

SUPERBLOCK = struct.Struct("<8sII16s32sIIQH6s256s168s")
assert SUPERBLOCK.size == 512
SIGNATURE = b"verity\0\0"
MAX_DATA = 16 << 30


class VerityError(AgentError):
    """A layer that does not match its pinned root hash, or a malformed verity area."""


@dataclass(frozen=True)
class Superblock:
    version: int
    hash_type: int
    algorithm: str
    data_block_size: int
    hash_block_size: int
    data_blocks: int
    salt: bytes


def parse_superblock(raw: bytes) -> Superblock:
    if len(raw) < SUPERBLOCK.size:
        raise VerityError("verity superblock is truncated")
    sig, version, hash_type, _uuid, alg, dbs, hbs, blocks, salt_size, _p1, salt, _p2 = SUPERBLOCK.unpack(
        raw[: SUPERBLOCK.size])
    if sig != SIGNATURE:
        raise VerityError("no verity superblock at the hash offset")
    if version != 1 or hash_type != 1:
        raise VerityError(f"verity superblock version {version} / hash type {hash_type} not supported (1/1)")
    algorithm = alg.rstrip(b"\0").decode("ascii", "replace")
    if algorithm not in ("sha256", "sha512"):
        raise VerityError(f"verity hash algorithm {algorithm!r} not supported")
    for size in (dbs, hbs):
        if size < 512 or size > 65536 or size & (size - 1):
            raise VerityError(f"verity block size {size} is not a power of two in 512..65536")
    if salt_size > 256:
        raise VerityError("verity salt longer than 256 bytes")
    if blocks == 0 or blocks * dbs > MAX_DATA:
        raise VerityError(f"verity data size {blocks * dbs} out of range")
    return Superblock(version, hash_type, algorithm, dbs, hbs, blocks, salt[:salt_size])


def hash_tree(read_chunk, sb: Superblock, sink=None, chunk_blocks: int = 256) -> tuple[bytes, list[list[bytes]]]:  # type: ignore[no-untyped-def]
    """Root hash and the hash blocks level by level (bottom level first) of the data.

    ``read_chunk(offset, size)`` supplies the data in chunks of
    ``chunk_blocks`` blocks (one syscall per MiB, not per block); every chunk
    also goes to ``sink``. A single data block has no hash levels: its hash
    is the root (veritysetup does the same).
    """
    new = getattr(hashlib, sb.algorithm)
    salt = sb.salt
    bs = sb.data_block_size
    per_block = sb.hash_block_size // new().digest_size
    level: list[bytes] = []
    for first in range(0, sb.data_blocks, chunk_blocks):
        count = min(chunk_blocks, sb.data_blocks - first)
        chunk = read_chunk(first * bs, count * bs)
        if len(chunk) != count * bs:
            raise VerityError(f"layer ends inside data block {first + len(chunk) // bs} of {sb.data_blocks}")
        if sink is not None:
            sink(chunk)
        view = memoryview(chunk)
        for i in range(count):
            h = new(salt)
            h.update(view[i * bs : (i + 1) * bs])
            level.append(h.digest())
    if len(level) == 1:
        return level[0], []
    levels: list[list[bytes]] = []
    while True:
        blocks = []
        for i in range(0, len(level), per_block):
            packed = b"".join(level[i : i + per_block])
            blocks.append(packed + bytes(sb.hash_block_size - len(packed)))
        levels.append(blocks)
        if len(blocks) == 1:
            return new(salt + blocks[0]).digest(), levels
        level = [new(salt + b).digest() for b in blocks]


def root_hash_of(read_chunk, sb: Superblock, sink=None, chunk_blocks: int = 256) -> bytes:  # type: ignore[no-untyped-def]
    return hash_tree(read_chunk, sb, sink, chunk_blocks)[0]


def build_superblock(sb: Superblock, uuid: bytes) -> bytes:
    """The 512-byte VERITY superblock cryptsetup writes (version 1)."""
    return SUPERBLOCK.pack(SIGNATURE, sb.version, sb.hash_type, uuid, sb.algorithm.encode(), sb.data_block_size,
                           sb.hash_block_size, sb.data_blocks, len(sb.salt), bytes(6),
                           sb.salt + bytes(256 - len(sb.salt)), bytes(168))


def format_hash_area(data_path: str, salt: bytes, uuid: bytes, block_size: int = 4096) -> tuple[bytes, bytes]:
    """(root hash, hash area) for a data file whose size is a multiple of ``block_size``.

    The hash area is what ``veritysetup format --hash-offset=<data size>``
    appends: the superblock padded to one hash block, then the hash levels,
    top level first. Salt and UUID are parameters, so a build that derives
    them from its seed gets the same bytes every time.
    """
    size = os.path.getsize(data_path)
    if size == 0 or size % block_size:
        raise VerityError(f"{data_path}: size {size} is not a positive multiple of {block_size}")
    sb = Superblock(1, 1, "sha256", block_size, block_size, size // block_size, salt)
    with open(data_path, "rb") as f:
        root, levels = hash_tree(lambda off, n: os.pread(f.fileno(), n, off), sb)
    header = build_superblock(sb, uuid)
    area = header + bytes(block_size - len(header))
    for blocks in reversed(levels):
        area += b"".join(blocks)
    return root, area


def kernel_verity_available() -> bool:
    try:
        with open("/proc/misc", encoding="ascii") as f:
            return any(line.split()[-1] == "device-mapper" for line in f if line.strip())
    except OSError:
        return False


def copy_verify(device: str, hash_offset: int, root_hash: bytes, out_path: str) -> Superblock:
    """Verify ``device`` against ``root_hash`` while copying its data to ``out_path`` (read-only; no fsync:
    the copy lives in /run, i.e. memory, and only while mounted)."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise VerityError(f"cannot open layer {device}: {exc.strerror}") from None
    try:
        sb = parse_superblock(os.pread(fd, SUPERBLOCK.size, hash_offset))
        if sb.data_blocks * sb.data_block_size > hash_offset:
            raise VerityError(f"layer {device}: data ({sb.data_blocks} blocks) overlaps the hash area")
        out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o400)
        try:
            computed = root_hash_of(lambda off, size: _pread_full(fd, size, off), sb,
                                    sink=lambda chunk: _write_full(out, chunk))
        finally:
            os.close(out)
    except OSError as exc:
        raise VerityError(f"reading layer {device}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if computed != root_hash:
        os.unlink(out_path)
        raise VerityError(f"layer {device}: dm-verity root hash is {computed.hex()}, the policy pins "
                          f"{root_hash.hex()}; the layer's bytes were changed")
    return sb


def _pread_full(fd: int, size: int, offset: int) -> bytes:
    parts = []
    while size:
        data = os.pread(fd, size, offset)
        if not data:
            break
        parts.append(data)
        size -= len(data)
        offset += len(data)
    return b"".join(parts)


def _write_full(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
