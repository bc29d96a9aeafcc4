"""A streaming reader of the tar formats OCI layers use (ustar, GNU long names, PAX), one member at a time.

Why not ``tarfile``: its stream mode copies every member's data through two buffers and costs ~60 us of
header parsing per member; a layer conversion is mostly that loop (bench/generate.py). This reader hands
out member data straight from the decompressed pieces and parses a header with one ``struct`` call.
It reads only what layers need and refuses the rest, so nothing is guessed at:

* types: regular ('0', NUL, contiguous '7'), hard link '1', symlink '2', char '3', block '4', directory
  '5', FIFO '6'; PAX 'x' (per member) and 'g' (global) records, GNU 'L'/'K' long names. GNU sparse ('S', or
  PAX GNU.sparse.*), multi-volume and other types are refused.
* numbers: octal, or GNU base-256 (first byte 0x80 / 0xff); the header checksum is checked (unsigned or
  signed sum, as POSIX and old tars write it).
* names: ustar prefix + name, then GNU long names, then PAX ``path``/``linkpath``; bytes that are not
  UTF-8 survive as surrogate escapes (the caller refuses them).
* end: the first all-zero block (as tarfile without ignore_zeros); the rest is left to the caller.

Facts from POSIX.1-2001 pax (``ustar`` header layout, extended header records ``"<len> key=value\\n"``)
and GNU tar's manual (``L``/``K`` long names, base-256 numbers).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from generator.errors import LayerError

BLOCK = 512
MAX_META = 1 << 20  # bytes of a PAX record set or GNU long name: names and xattrs, not data
MAX_MEMBERS = 10_000_000
HEADER = struct.Struct("100s8s8s8s12s12s8s1s100s6s2s32s32s8s8s155s12x")
assert HEADER.size == BLOCK
TYPES = {b"0": "file", b"\0": "file", b"7": "file", b"1": "link", b"2": "sym", b"3": "chr", b"4": "blk",
         b"5": "dir", b"6": "fifo"}

Read = Callable[[int], bytes]


class TarFormatError(LayerError):
    """The stream is not a tar this reader accepts (the message says where and why)."""


@dataclass
class Member:
    """One member's header, with the attribute names tarfile's TarInfo uses for the same facts."""

    name: str
    kind: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float
    linkname: str
    devmajor: int
    devminor: int
    pax_headers: dict[str, str] = field(default_factory=dict)

    def isreg(self) -> bool:
        return self.kind == "file"

    def isdir(self) -> bool:
        return self.kind == "dir"

    def issym(self) -> bool:
        return self.kind == "sym"

    def islnk(self) -> bool:
        return self.kind == "link"

    def isfifo(self) -> bool:
        return self.kind == "fifo"

    def ischr(self) -> bool:
        return self.kind == "chr"

    def isblk(self) -> bool:
        return self.kind == "blk"

    @property
    def type(self) -> str:
        return self.kind


def _number(raw: bytes, what: str) -> int:
    if raw and raw[0] in (0x80, 0xFF):  # GNU base-256, big-endian two's complement
        value = int.from_bytes(raw[1:], "big")
        return value - (1 << (8 * (len(raw) - 1))) if raw[0] == 0xFF else value
    text = raw.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarFormatError(f"header field {what} {raw!r} is not a number") from None


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax(data: bytes) -> dict[str, str]:
    """PAX extended header records: ``"<decimal length> <key>=<value>\\n"``, the length counting itself."""
    out: dict[str, str] = {}
    at = 0
    for _ in range(len(data) + 1):
        if at >= len(data) or data[at] == 0:
            return out
        space = data.find(b" ", at, at + 21)
        if space < 0 or not data[at:space].isdigit():
            raise TarFormatError("malformed PAX record length")
        length = int(data[at:space])
        end = at + length
        if length <= space - at + 1 or end > len(data) or data[end - 1:end] != b"\n":
            raise TarFormatError("PAX record runs past its header")
        key, eq, value = data[space + 1:end - 1].partition(b"=")
        if not eq or not key:
            raise TarFormatError("PAX record without key=value")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        at = end
    raise TarFormatError("PAX records do not end")


def _pax_int(pax: dict[str, str], key: str, default: int) -> int:
    value = pax.get(key)
    if value is None:
        return default
    if len(value) > 40 or not value.lstrip("-").isdigit():
        raise TarFormatError(f"PAX {key} {value!r} is not an integer")
    return int(value)


def _pax_time(value: str | None, default: float) -> float:
    if value is None:
        return default
    whole = value.split(".", 1)[0]
    if len(value) > 60 or not whole.lstrip("-").isdigit():
        raise TarFormatError(f"PAX mtime {value!r} is not a time")
    return float(int(whole))


class TarReader:
    """Members of the tar that ``read(n)`` (up to n bytes; b"" at EOF) supplies, each with its data read
    through ``data(n)`` before the next member is asked for (unread data is skipped)."""

    def __init__(self, read: Read) -> None:
        self._read = read
        self._buf = b""
        self._left = 0  # data bytes of the current member not yet read
        self._pad = 0

    def _exact(self, n: int) -> bytes:
        parts, have = [], 0
        if self._buf:
            take = self._buf[:n]
            self._buf = self._buf[n:]
            parts.append(take)
            have = len(take)
        for _ in range(n + 1):
            if have >= n:
                break
            piece = self._read(n - have)
            if not piece:
                raise TarFormatError(f"the archive ends inside a member ({have} of {n} bytes)")
            if len(piece) > n - have:
                self._buf = piece[n - have:]
                piece = piece[:n - have]
            parts.append(piece)
            have += len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def data(self, n: int) -> bytes:
        """Up to ``n`` bytes of the current member's data; b"" at its end."""
        n = min(n, self._left)
        if n <= 0:
            return b""
        if self._buf:
            out = self._buf[:n]
            self._buf = self._buf[n:]
        else:
            out = self._read(n)
            if not out:
                raise TarFormatError(f"the archive ends inside a member ({self._left} bytes missing)")
            if len(out) > n:
                self._buf, out = out[n:], out[:n]
        self._left -= len(out)
        return out

    def _skip_rest(self) -> None:
        for _ in range(self._left + 1):
            if self._left <= 0:
                break
            self.data(1 << 20)
        if self._pad:
            self._exact(self._pad)
            self._pad = 0

    def _block_data(self, size: int) -> bytes:
        if size > MAX_META:
            raise TarFormatError(f"extended header of {size} bytes (at most {MAX_META})")
        data = self._exact(size)
        self._exact(-size % BLOCK)
        return data

    def members(self) -> Iterator[Member]:
        glob: dict[str, str] = {}
        local: dict[str, str] = {}
        long_name = long_link = None
        for _ in range(MAX_MEMBERS):
            self._skip_rest()
            head = self._exact_or_end()
            if head is None or head == bytes(BLOCK):
                return
            (name, mode, uid, gid, size, mtime, chksum, typeflag, linkname, magic, _version, _uname, _gname,
             devmajor, devminor, prefix) = HEADER.unpack(head)
            want = _number(chksum, "chksum")
            unsigned = sum(head) - sum(head[148:156]) + 8 * 32  # the field itself counts as spaces
            if want != unsigned:
                high = sum(1 for b in head[:148] + head[156:] if b >= 128)
                if want != unsigned - 256 * high:  # signed chars, as some old tars summed
                    raise TarFormatError("header checksum mismatch (not a tar archive, or a damaged one)")
            length = _number(size, "size")
            if length < 0:
                raise TarFormatError("negative member size")
            if typeflag in (b"x", b"g"):
                records = _pax(self._block_data(length))
                (local if typeflag == b"x" else glob).update(records)
                continue
            if typeflag in (b"L", b"K"):
                text = _text(self._block_data(length))
                if typeflag == b"L":
                    long_name = text
                else:
                    long_link = text
                continue
            kind = TYPES.get(typeflag)
            if kind is None:
                raise TarFormatError(f"member type {typeflag!r} is not supported (sparse, volume, ...)")
            pax = {**glob, **local}
            if any(k.startswith("GNU.sparse.") for k in pax):
                raise TarFormatError("GNU sparse members are not supported")
            path = _text(name)
            if magic == b"ustar\0" and prefix[:1] != b"\0":
                path = _text(prefix) + "/" + path
            path = pax.get("path", long_name if long_name is not None else path)
            link = pax.get("linkpath", long_link if long_link is not None else _text(linkname))
            length = _pax_int(pax, "size", length)
            if length < 0:
                raise TarFormatError("negative member size")
            m = Member(name=path, kind=kind, size=length if kind == "file" else 0,
                       mode=_number(mode, "mode"), uid=_pax_int(pax, "uid", _number(uid, "uid")),
                       gid=_pax_int(pax, "gid", _number(gid, "gid")),
                       mtime=_pax_time(pax.get("mtime"), float(_number(mtime, "mtime"))), linkname=link,
                       devmajor=_number(devmajor, "devmajor"), devminor=_number(devminor, "devminor"),
                       pax_headers={k: v for k, v in pax.items() if k.startswith("SCHILY.xattr.")})
            if kind == "dir":
                m.name = m.name.rstrip("/") or m.name  # as tarfile: "etc/" is "etc" (and "./" stays the root)
            local, long_name, long_link = {}, None, None
            # hard links and others may carry data in odd tars: it is skipped, never written
            self._left, self._pad = length, -length % BLOCK
            yield m
        raise TarFormatError(f"more than {MAX_MEMBERS} members")

    def _exact_or_end(self) -> bytes | None:
        """The next header block, or None at a clean end of the stream (no end-of-archive blocks)."""
        if not self._buf:
            piece = self._read(BLOCK)
            if not piece:
                return None
            self._buf = piece
        return self._exact(BLOCK)
