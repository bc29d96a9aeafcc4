"""Canonical xattr order in an erofs image that mkfs.erofs 1.5 built: the one byte-level fix determinism needs.

Why: mkfs.erofs 1.5 writes an inode's xattrs in the order ``llistxattr`` returns them, and that order is
the host filesystem's (ext4 keeps insertion order in the inode but sorts its xattr block, tmpfs lists its
tree in reverse name order, btrfs by hash). A file with two or more xattrs would then give other bytes on
another machine. ``layers`` builds with every xattr inline (no shared table, ``-x`` above any count), and
this module rewrites each inode's inline entries in one order (name index, then name) in place: the
region keeps its size, so nothing else moves; the superblock checksum is recomputed when block 0 changed.

Layout facts (kernel ``fs/erofs/erofs_fs.h``, erofs-utils ``include/erofs_fs.h``): superblock at 1024
(magic 0xE0F5E1E2, checksum at +4 = crc32c without final inversion over the rest of block 0 with the field
zeroed, ``feature_compat`` bit 0 = has checksum, ``blkszbits`` at +12, ``root_nid`` at +14,
``meta_blkaddr`` at +40); inode ``nid`` at ``meta_blkaddr * block + nid * 32``; compact inodes 32 bytes,
extended 64 (``i_format`` bit 0), data layout ``i_format >> 1 & 7`` (0 flat, 2 flat with an inline tail);
the xattr ibody (12-byte header, ``h_shared_count`` at +4, shared ids, then 4-byte-aligned entries
``name_len u8, name_index u8, value_size le16, name, value``) follows the inode and is
``12 + 4 * (i_xattr_icount - 1)`` bytes; directory blocks are 12-byte dirents (nid le64, nameoff le16,
file_type u8) then names, the first nameoff giving the count; file_type 2 is a directory.
"""

from __future__ import annotations

import os
import struct
from collections import deque

from generator.errors import LayerError

MAGIC = 0xE0F5E1E2
SB_OFFSET = 1024
FT_DIR = 2
FLAT_PLAIN, FLAT_INLINE = 0, 2
MAX_DIRS = 10_000_000


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c_raw(data: bytes, crc: int = 0xFFFFFFFF) -> int:
    """CRC-32C (Castagnoli) as the kernel's ``crc32c(~0, ...)``: seeded with ~0, no final inversion."""
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def _sort_entries(body: bytes, where: str) -> bytes:
    """An inline xattr ibody with its shared ids and its entries in canonical order."""
    shared = body[4]
    head, ids_end = body[:12], 12 + 4 * shared
    if ids_end > len(body):
        raise LayerError(f"{where}: xattr ibody shorter than its shared ids")
    ids = sorted(struct.unpack_from(f"<{shared}I", body, 12))
    entries: list[tuple[tuple[int, bytes], bytes]] = []
    at = ids_end
    while at < len(body):
        if at + 4 > len(body):
            raise LayerError(f"{where}: truncated xattr entry")
        name_len, index, value_size = struct.unpack_from("<BBH", body, at)
        end = at + 4 + name_len + value_size
        padded = end + (-end % 4)
        if padded > len(body):
            raise LayerError(f"{where}: xattr entry runs past the ibody")
        entries.append(((index, body[at + 4:at + 4 + name_len]), body[at:padded]))
        at = padded
    entries.sort(key=lambda e: e[0])
    return head + struct.pack(f"<{shared}I", *ids) + b"".join(raw for _key, raw in entries)


def canonical_xattrs(path: str) -> int:
    """Rewrite every inode's inline xattrs of the image at ``path`` in canonical order; returns how many
    inodes changed. Only images as ``layers`` builds them (uncompressed, flat directories) are accepted;
    anything else is a LayerError."""
    try:
        return _canonical(path)
    except (struct.error, ValueError, OverflowError, OSError) as e:
        raise LayerError(f"{path}: not an erofs image this build can read: {e}") from None


def _canonical(path: str) -> int:
    changed = 0
    with open(path, "r+b") as f:
        fd = f.fileno()
        sb = os.pread(fd, 128, SB_OFFSET)
        magic, _csum, compat, bits = struct.unpack_from("<IIIB", sb)
        if magic != MAGIC or bits != 12:
            raise LayerError(f"{path}: not an erofs image with 4096-byte blocks")
        bs = 1 << bits
        root_nid = struct.unpack_from("<H", sb, 14)[0]
        meta = struct.unpack_from("<I", sb, 40)[0] * bs
        block0_dirty = False
        queue = deque([root_nid])
        seen = {root_nid}
        for _ in range(MAX_DIRS):
            if not queue:
                break
            nid = queue.popleft()
            base = meta + nid * 32
            raw = os.pread(fd, 64, base)
            fmt, icount = struct.unpack_from("<HH", raw)
            extended = fmt & 1
            layout = (fmt >> 1) & 7
            isize = 64 if extended else 32
            size = struct.unpack_from("<Q" if extended else "<I", raw, 8)[0]
            blkaddr = struct.unpack_from("<I", raw, 16)[0]
            xsize = 12 + 4 * (icount - 1) if icount else 0
            children = _dirents(fd, path, base + isize + xsize, layout, size, blkaddr, bs)
            for child, ftype in children:
                if ftype == FT_DIR:
                    if child not in seen:
                        seen.add(child)
                        queue.append(child)
                elif _fix_inode(fd, path, meta, child):
                    changed += 1
                    block0_dirty |= meta + child * 32 < bs
            if xsize and _fix_at(fd, path, base, isize, xsize):
                changed += 1
                block0_dirty |= base < bs
        else:
            raise LayerError(f"{path}: more than {MAX_DIRS} directories")
        if block0_dirty and compat & 1:
            block = bytearray(os.pread(fd, bs - SB_OFFSET, SB_OFFSET))
            block[4:8] = bytes(4)
            os.pwrite(fd, struct.pack("<I", crc32c_raw(bytes(block))), SB_OFFSET + 4)
    return changed


def _fix_inode(fd: int, path: str, meta: int, nid: int) -> bool:
    base = meta + nid * 32
    raw = os.pread(fd, 4, base)
    fmt, icount = struct.unpack_from("<HH", raw)
    if not icount:
        return False
    return _fix_at(fd, path, base, 64 if fmt & 1 else 32, 12 + 4 * (icount - 1))


def _fix_at(fd: int, path: str, base: int, isize: int, xsize: int) -> bool:
    body = os.pread(fd, xsize, base + isize)
    fixed = _sort_entries(body, f"{path}: inode at {base}")
    if fixed == body:
        return False
    os.pwrite(fd, fixed, base + isize)
    return True


def _dirents(fd: int, path: str, tail_at: int, layout: int, size: int, blkaddr: int,
             bs: int) -> list[tuple[int, int]]:
    """(nid, file_type) of a directory's entries, without ``.`` and ``..``; [] for a non-directory is
    impossible to tell here, so callers pass only directories (the root, and dirents typed as dirs)."""
    if layout not in (FLAT_PLAIN, FLAT_INLINE):
        raise LayerError(f"{path}: directory data layout {layout} is not flat")
    out: list[tuple[int, int]] = []
    nblocks = -(-size // bs)
    for i in range(nblocks):
        length = min(bs, size - i * bs)
        if layout == FLAT_INLINE and i == nblocks - 1:
            block = os.pread(fd, length, tail_at)
        else:
            block = os.pread(fd, length, (blkaddr + i) * bs)
        if len(block) < 12:
            raise LayerError(f"{path}: directory block too short")
        count = struct.unpack_from("<H", block, 8)[0] // 12
        if count == 0 or count * 12 > len(block):
            raise LayerError(f"{path}: malformed directory block")
        offs = [struct.unpack_from("<QHB", block, 12 * k) for k in range(count)]
        for k, (nid, nameoff, ftype) in enumerate(offs):
            end = offs[k + 1][1] if k + 1 < count else len(block)
            name = block[nameoff:end].rstrip(b"\0")
            if name not in (b".", b".."):
                out.append((nid, ftype))
    return out
