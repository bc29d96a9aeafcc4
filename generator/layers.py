"""OCI layer blobs -> deterministic erofs images with their dm-verity hash tree appended, cached by digest.

Why this shape: the policy pins a root hash per layer, so the same layer digest must give the same bytes on
any machine, today or in a year. Nothing in the output comes from the clock, the umask, the host's
filesystem or directory order:

* mtimes come from the tar (clamped to 0..2**31-1 so every host filesystem stores them alike); directories
  the tar does not list get mtime 0. mkfs.erofs 1.5 takes its superblock build time from the clock unless
  ``SOURCE_DATE_EPOCH`` is set, and then *clamps* every file's mtime to it (checked on 1.5: ``-T`` would
  overwrite all mtimes, ``--ignore-mtime`` uses the clock). We set it to the newest mtime in the layer, so
  the clamp changes nothing and the build time is a fact of the layer.
* the filesystem UUID, the verity salt and the verity UUID are hashes of the layer digest.
* no compression (lz4hc would be deterministic too but costs time on every cold conversion; the layers sit
  on virtio disks, not on the wire).

* xattr order: mkfs.erofs 1.5 writes an inode's xattrs in the host filesystem's ``listxattr`` order, so
  every xattr is kept inline and ``generator.erofs`` rewrites the entries in one order afterwards.

mkfs.erofs 1.5 has no tar input, so each layer is extracted into a private temp tree under the cache
(same filesystem, removed on every path out) and imaged from there; that needs root (ownership, the 0:0
whiteout devices, ``trusted.*`` xattrs). Extraction walks every parent with ``O_NOFOLLOW|O_DIRECTORY``
directory descriptors, so a symlink in the layer can never redirect a write. The blob is decompressed and
hashed in a reader thread, a bounded queue ahead of the extraction, and the tar is read by
``generator.tarstream`` (member data straight to the file, never a whole member in memory): peak RSS stays
near 40 MB whatever the layer size (bench/generate.py).

Decisions (fail closed, every refusal is a LayerError naming the layer digest and the member):
* refused: absolute names, ``..`` components, names or link targets that are not valid UTF-8, paths
  through a symlink or a non-directory, hard links to missing, non-regular or same-named targets, char and
  block devices, unknown member types, xattrs outside ``user.``/``security.``/``trusted.`` (and the two
  POSIX ACL names), ``trusted.overlay.*`` xattrs set by the layer itself (only whiteouts may make them).
* kept: FIFOs (harmless to the guest), uid/gid/mode including setuid/setgid/sticky, SCHILY.xattr.* PAX
  xattrs. ``LIBARCHIVE.xattr.*`` duplicates and aufs ``.wh..wh.*`` metadata entries are ignored. A later
  member replaces an earlier one of the same name (tar semantics); an empty blob is an empty layer (as
  Go's archive/tar, which containerd uses, reads it). GNU sparse files are refused (``tarstream``).
* whiteouts (OCI image-spec layer.md "Whiteouts"): ``.wh.NAME`` -> a 0:0 character device NAME (overlayfs'
  whiteout), unless NAME is also in this layer (a whiteout only hides lower layers); ``.wh..wh..opq`` ->
  ``trusted.overlay.opaque=y`` on its directory (kernel Documentation/filesystems/overlayfs.rst). A
  directory this layer creates over its own whiteout is made opaque, so the lower one stays hidden.

The hash tree is cryptsetup's VERITY format v1 (``agent.verity`` documents it), written here level by level
straight into the image file, so memory stays flat whatever the layer size; ``format_hash_area`` and
``veritysetup`` give the same bytes (tests compare).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import queue
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import uuid as uuidlib
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from agent.verity import SUPERBLOCK, Superblock, VerityError, build_superblock, parse_superblock
from generator.erofs import canonical_xattrs
from generator.errors import LayerError
from generator.model import LAYER_MEDIA_TYPES, Blob, Layer
from generator.tarstream import Member, TarFormatError, TarReader
from verifier import strictjson

__all__ = ["INDEX_VERSION", "append_verity", "cached", "convert", "default_cache_dir", "layer_path", "read_index",
           "write_index"]

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
HEX64 = re.compile(r"[0-9a-f]{64}")
BLOCK = 4096
CHUNK = 1 << 20
MAX_MTIME = 2**31 - 1
MAX_MEMBERS = 10_000_000
MAX_ID = 2**32 - 2
ZSTD_MAX_WINDOW = 1 << 27  # zstd's default decoder limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT): 128 MiB of window
MKFS_TIMEOUT = 3600
QUEUE_CHUNKS = 8
WAIT_LIMIT = 24 * 3600  # seconds a conversion waits for the blob's next bytes
INDEX_VERSION = 1
SIDECAR_VERSION = 1
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
XATTR_PREFIXES = ("user.", "security.", "trusted.")
ACL_XATTRS = ("system.posix_acl_access", "system.posix_acl_default")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LAYER_FIELDS = ("digest", "diff_id", "root_hash", "hash_offset", "size", "file")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cocoon`` or ``~/.cache/cocoon``: where ``cocoon generate`` keeps converted layers."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cocoon"


def layer_path(layer: Layer, cache_dir: Path) -> Path:
    """The image file of a converted layer (``Layer.file`` is relative to the cache's ``layers`` directory)."""
    return cache_dir / "layers" / layer.file


def _hex(digest: str, what: str = "layer digest") -> str:
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise LayerError(f"{what} {digest!r} is not sha256:<64 lowercase hex>")
    return digest[7:]


def _derived(digest: str, purpose: str) -> bytes:
    """32 bytes that depend only on the layer digest and what they are for (salt, UUIDs)."""
    return hashlib.sha256(f"cocoon layer {purpose}\0{digest}".encode()).digest()


def _uuid(digest: str, purpose: str) -> uuidlib.UUID:
    return uuidlib.UUID(bytes=_derived(digest, purpose)[:16], version=4)


# --- cache ---------------------------------------------------------------------------------------


def _sidecar(cache_dir: Path, hexd: str) -> Path:
    return cache_dir / "layers" / f"{hexd}.json"


def _layer_from(doc: Any, where: str) -> Layer:
    if not isinstance(doc, dict) or set(doc) != set(_LAYER_FIELDS):
        raise LayerError(f"{where}: a layer entry needs exactly the fields {', '.join(_LAYER_FIELDS)}")
    for key in ("digest", "diff_id", "root_hash", "file"):
        if not isinstance(doc[key], str):
            raise LayerError(f"{where}: field {key} is not a string")
    for key in ("hash_offset", "size"):
        if type(doc[key]) is not int or doc[key] <= 0:
            raise LayerError(f"{where}: field {key} is not a positive integer")
    hexd = _hex(doc["digest"], f"{where}: digest")
    _hex(doc["diff_id"], f"{where}: diff_id")
    if not HEX64.fullmatch(doc["root_hash"]):
        raise LayerError(f"{where}: root_hash is not 64 lowercase hex")
    if doc["file"] != f"{hexd}.img":
        raise LayerError(f"{where}: file {doc['file']!r} is not {hexd}.img")
    if doc["hash_offset"] % BLOCK or doc["size"] <= doc["hash_offset"]:
        raise LayerError(f"{where}: hash_offset {doc['hash_offset']} / size {doc['size']} are inconsistent")
    return Layer(**{key: doc[key] for key in _LAYER_FIELDS})


def _layer_doc(layer: Layer) -> dict[str, Any]:
    return {key: getattr(layer, key) for key in _LAYER_FIELDS}


def cached(digest: str, cache_dir: Path) -> Layer | None:
    """The converted layer for ``digest`` if the cache has a complete entry (sidecar and image of the recorded
    size), else None: then the caller downloads and calls ``convert``, which overwrites any partial entry."""
    hexd = _hex(digest)
    side = _sidecar(cache_dir, hexd)
    try:
        doc = strictjson.loads(side.read_bytes())
        if not isinstance(doc, dict) or doc.get("version") != SIDECAR_VERSION:
            return None
        layer = _layer_from(doc.get("layer"), str(side))
        if layer.digest != digest or not _consistent(layer_path(layer, cache_dir), layer):
            return None
        return layer
    except (OSError, ValueError, RecursionError, LayerError, VerityError):
        return None


def _consistent(path: Path, layer: Layer) -> bool:
    """The image is the sidecar's size and its verity superblock and top hash block give the sidecar's root
    hash. Entries are published by rename without fsync (on ext4 an fsync flushes the whole image: seconds
    per layer on slow disks), so after a crash an image can be short or torn; this catches a short file and
    a lost hash area for the price of two block reads. Torn data blocks are caught where it matters: the
    guest's dm-verity refuses them (fail closed), and ``convert`` over the entry rewrites it."""
    with open(path, "rb") as f:
        fd = f.fileno()
        if os.fstat(fd).st_size != layer.size:
            return False
        sb = parse_superblock(os.pread(fd, SUPERBLOCK.size, layer.hash_offset))
        if sb.data_blocks * sb.data_block_size != layer.hash_offset or sb.data_block_size != BLOCK:
            return False
        top_at = layer.hash_offset + BLOCK if sb.data_blocks > 1 else 0
        top = hashlib.sha256(sb.salt)
        top.update(os.pread(fd, BLOCK, top_at))
        return top.hexdigest() == layer.root_hash


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --- layer index -----------------------------------------------------------------------------------


def write_index(layers: Sequence[Layer], path: Path) -> None:
    """Write the layer index (which file holds which digest and root hash) atomically, sorted by digest.

    The same digest listed twice must describe the same conversion; anything else is a LayerError."""
    by_digest: dict[str, Layer] = {}
    for layer in layers:
        _layer_from(_layer_doc(layer), f"layer index entry {layer.digest!r}")
        seen = by_digest.setdefault(layer.digest, layer)
        if seen != layer:
            raise LayerError(f"layer index: two different conversions of {layer.digest}")
    doc = {"version": INDEX_VERSION, "layers": [_layer_doc(by_digest[d]) for d in sorted(by_digest)]}
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


def read_index(path: Path) -> list[Layer]:
    """The layers of an index ``write_index`` wrote; anything malformed is a LayerError naming the file."""
    try:
        doc = strictjson.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as e:
        raise LayerError(f"layer index {path}: {e}") from None
    if not isinstance(doc, dict) or set(doc) != {"version", "layers"}:
        raise LayerError(f"layer index {path}: needs exactly the fields version and layers")
    if doc["version"] != INDEX_VERSION or type(doc["version"]) is not int:
        raise LayerError(f"layer index {path}: version {doc['version']!r} is not {INDEX_VERSION}")
    if not isinstance(doc["layers"], list):
        raise LayerError(f"layer index {path}: layers is not a list")
    out = [_layer_from(entry, f"layer index {path}: layers[{i}]") for i, entry in enumerate(doc["layers"])]
    digests = [layer.digest for layer in out]
    if digests != sorted(set(digests)):
        raise LayerError(f"layer index {path}: layers are not sorted by digest without repeats")
    return out


# --- decompression -----------------------------------------------------------------------------------


class _Uncompressed:
    """The uncompressed tar as a stream read in bounded pieces (at most ~1 MiB per piece and QUEUE_CHUNKS
    pieces ahead, so a decompression bomb costs time, not memory), hashing every byte for the diff_id check."""

    def __init__(self, raw: BinaryIO, kind: str, where: str) -> None:
        self.raw, self.kind, self.where = raw, kind, where
        self.sha = hashlib.sha256()
        self.cur, self.pos = b"", 0
        self.done = False
        self.zlib: Any = zlib.decompressobj(wbits=31) if kind == "gzip" else None
        self.zstd: Any = None
        if kind == "zstd":
            import zstandard

            self._zstd_error: type[Exception] = zstandard.ZstdError
            self.zstd = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(
                raw, read_size=CHUNK, read_across_frames=True, closefd=False)
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name=f"layer {where[7:19]}", daemon=True)
        self._thread.start()

    def _more(self) -> bytes:
        if self.kind == "none":
            return self.raw.read(CHUNK)
        if self.kind == "zstd":
            try:
                return bytes(self.zstd.read(CHUNK))
            except self._zstd_error as e:
                raise LayerError(f"layer {self.where}: zstd: {e}") from None
        return self._gunzip()

    def _gunzip(self) -> bytes:
        """Multi-member gzip (as Go's reader accepts it); bytes after a member that are not gzip are refused."""
        for _ in range(1 << 20):
            d = self.zlib
            try:
                if d.unconsumed_tail:
                    out = d.decompress(d.unconsumed_tail, CHUNK)
                elif d.eof:
                    rest = d.unused_data or self.raw.read(CHUNK)
                    if not rest:
                        return b""
                    self.zlib = zlib.decompressobj(wbits=31)
                    out = self.zlib.decompress(rest, CHUNK)
                else:
                    data = self.raw.read(CHUNK)
                    if not data:
                        raise LayerError(f"layer {self.where}: gzip stream ends inside a member")
                    out = d.decompress(data, CHUNK)
            except zlib.error as e:
                raise LayerError(f"layer {self.where}: gzip: {e}") from None
            if out:
                return bytes(out)
        raise LayerError(f"layer {self.where}: gzip stream makes no progress")

    def _put(self, item: bytes | BaseException | None) -> bool:
        for _ in range(WAIT_LIMIT):
            if self._stop.is_set():
                return False
            try:
                self._queue.put(item, timeout=1.0)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        """The reader thread: decompress and hash ahead of the extraction (zlib, zstd and sha256 let go of
        the GIL), like ``tar -xz`` piping through gzip; then read the blob to its EOF."""
        try:
            for _ in range(1 << 40):
                more = self._more()
                if not more:
                    break
                self.sha.update(more)
                if not self._put(more):
                    return
            for _ in range(1 << 40):
                if self._stop.is_set() or not self.raw.read(CHUNK):
                    break
            self._put(None)
        except BaseException as e:  # handed to the reading thread, which raises it
            self._put(e)

    def _get(self) -> bytes | BaseException | None:
        for _ in range(WAIT_LIMIT):
            try:
                return self._queue.get(timeout=1.0)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise LayerError(f"layer {self.where}: the reader thread stopped") from None
        raise LayerError(f"layer {self.where}: no data for {WAIT_LIMIT} s")

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes from the current piece (short reads are fine for the tar reader): no copy when
        the reader takes a whole piece."""
        n = CHUNK if n < 0 else n
        for _ in range(WAIT_LIMIT):
            if self.pos < len(self.cur) or self.done:
                break
            item = self._get()
            if item is None:
                self.done = True
            elif isinstance(item, BaseException):
                self.done = True
                raise item
            else:
                self.cur, self.pos = item, 0
        out = self.cur[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def finish(self) -> str:
        """Read the rest (tar padding, trailing records) and, in the reader thread, the compressed stream to
        its EOF, where the caller's stream checks the blob digest; returns the diff_id."""
        for _ in range(1 << 40):
            if not self.read(CHUNK):
                break
        self._thread.join(timeout=60)
        return "sha256:" + self.sha.hexdigest()

    def close(self) -> None:
        """Stop the reader thread (on every path out of a conversion)."""
        self._stop.set()
        for _ in range(QUEUE_CHUNKS + 1):
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5)


# --- extraction ---------------------------------------------------------------------------------------


def _utf8(text: str, what: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid UTF-8") from None
    return text


def _parts(name: str, what: str = "name") -> tuple[str, ...]:
    """A member name as path components under the layer root; refuses absolute names and ``..``."""
    _utf8(name, what)
    if name.startswith("/"):
        raise ValueError(f"{what} is an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ValueError(f"{what} has a '..' component")
    return parts


def _clamp_mtime(mtime: float) -> int:
    return min(max(int(mtime), 0), MAX_MTIME)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


class _Tree:
    """The private extraction tree, written only through directory descriptors opened without following
    symlinks. Directory mtimes are set at the end (creating children changes them)."""

    def __init__(self, root: str) -> None:
        self.root = os.open(root, _DIR_FLAGS)
        self.dir_mtimes: dict[tuple[str, ...], int] = {(): 0}
        self.newest = 0
        self.reorder = False  # an inode may hold two xattrs: their order must be made canonical
        self._xattr_seen = self._opaque_seen = False
        foreign = os.listxattr(self.root)
        if foreign:
            os.close(self.root)
            raise ValueError(f"the cache filesystem labels new files with xattrs {foreign} (SELinux?): they would "
                             "end up in the image; put the cache on a filesystem that does not")
        self._cached: tuple[tuple[str, ...], int] | None = None

    def close(self) -> None:
        self._drop_cache()
        os.close(self.root)

    def _drop_cache(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def _stat(self, fd: int, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _walk(self, parts: tuple[str, ...], create: bool) -> int:
        """A descriptor of directory ``parts`` (owned by the cache; do not close). Missing directories are
        made (root-owned 0755, mtime 0) when ``create``; a symlink or non-directory on the way is refused."""
        if self._cached is not None and self._cached[0] == parts:
            return self._cached[1]
        self._drop_cache()
        fd = os.dup(self.root)
        try:
            for i, name in enumerate(parts):
                try:
                    nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise ValueError(f"{'/'.join(parts[: i + 1])} does not exist") from None
                    self._mkdir(fd, name, parts[: i + 1], opaque=False)
                    nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    st = self._stat(fd, name)
                    if create and st is not None and _is_whiteout(st):  # this layer's own whiteout
                        os.unlink(name, dir_fd=fd)
                        self._mkdir(fd, name, parts[: i + 1], opaque=True)
                        nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
                    else:
                        kind = "a symlink" if st is not None and stat.S_ISLNK(st.st_mode) else "not a directory"
                        raise ValueError(f"path goes through {'/'.join(parts[: i + 1])}, which is {kind}") from None
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        self._cached = (parts, fd)
        return fd

    def _mkdir(self, fd: int, name: str, parts: tuple[str, ...], opaque: bool) -> None:
        os.mkdir(name, 0o755, dir_fd=fd)
        os.chmod(name, 0o755, dir_fd=fd)  # not the umask's (a directory we just made: no link to follow)
        self.dir_mtimes[parts] = 0
        if opaque:
            os.setxattr(f"/proc/self/fd/{fd}/{name}", OPAQUE_XATTR, b"y", follow_symlinks=False)
            self._note_xattrs(0, True)

    def _clear(self, fd: int, name: str, parts: tuple[str, ...], keep_dir: bool) -> os.stat_result | None:
        """Make room for a new entry: a later member replaces an earlier one (tar semantics)."""
        st = self._stat(fd, name)
        if st is None:
            return None
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return st
            shutil.rmtree(name, dir_fd=fd)
            n = len(parts)
            for key in [k for k in self.dir_mtimes if k[:n] == parts]:
                del self.dir_mtimes[key]
        else:
            os.unlink(name, dir_fd=fd)
        return st

    def add(self, m: Member, data: Callable[[int], bytes] | None) -> None:
        parts = _parts(m.name)
        mtime = _clamp_mtime(m.mtime)
        self.newest = max(self.newest, mtime)
        if parts and parts[-1].startswith(WHITEOUT):
            return self._whiteout(parts)
        if not 0 <= m.uid <= MAX_ID or not 0 <= m.gid <= MAX_ID:
            raise ValueError(f"uid/gid {m.uid}/{m.gid} out of range")
        xattrs = _xattrs(m)
        mode = m.mode & 0o7777
        if not parts:  # "./": the layer's root directory
            if not m.isdir():
                raise ValueError("the layer root is not a directory")
            return self._meta(self.root, m.uid, m.gid, mode, xattrs, (), mtime)
        pfd = self._walk(parts[:-1], create=True)
        name = parts[-1]
        if m.isdir():
            old = self._clear(pfd, name, parts, keep_dir=True)
            if old is None or not stat.S_ISDIR(old.st_mode):
                os.mkdir(name, 0o700, dir_fd=pfd)
            if old is not None and _is_whiteout(old):  # over this layer's own whiteout: hide the lower dir
                os.setxattr(f"/proc/self/fd/{pfd}/{name}", OPAQUE_XATTR, b"y", follow_symlinks=False)
                self._note_xattrs(0, True)
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
            try:
                self._meta(fd, m.uid, m.gid, mode, xattrs, parts, mtime)
            finally:
                os.close(fd)
        elif m.isreg():
            if data is None:
                raise ValueError("regular file without data")
            self._clear(pfd, name, parts, keep_dir=False)
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=pfd)
            try:
                for _ in range(m.size + 1):
                    chunk = data(CHUNK)
                    if not chunk:
                        break
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                self._meta(fd, m.uid, m.gid, mode, xattrs, None, mtime)
            finally:
                os.close(fd)
        elif m.issym():
            target = _utf8(m.linkname, "symlink target")
            if not target or "\0" in target:
                raise ValueError("empty symlink target")
            self._clear(pfd, name, parts, keep_dir=False)
            os.symlink(target, name, dir_fd=pfd)
            self._meta_at(pfd, name, m.uid, m.gid, None, xattrs, mtime)
        elif m.islnk():
            self._hardlink(pfd, name, parts, m.linkname)
        elif m.isfifo():
            self._clear(pfd, name, parts, keep_dir=False)
            os.mkfifo(name, 0o600, dir_fd=pfd)
            self._meta_at(pfd, name, m.uid, m.gid, mode, xattrs, mtime)
        elif m.ischr() or m.isblk():
            raise ValueError(f"device node {m.devmajor}:{m.devminor} refused (only whiteouts become devices)")
        else:
            raise ValueError(f"member type {m.type!r} is not supported")
        return None

    def _whiteout(self, parts: tuple[str, ...]) -> None:
        base = parts[-1]
        pfd = self._walk(parts[:-1], create=True)
        if base == OPAQUE:
            os.setxattr(pfd, OPAQUE_XATTR, b"y")
            self._note_xattrs(0, True)
            return
        name = base[len(WHITEOUT):]
        if name.startswith(WHITEOUT) or name in ("", ".", ".."):
            return  # aufs metadata (.wh..wh.plnk, ...): no meaning for overlayfs
        if self._stat(pfd, name) is not None:
            return  # the same layer has NAME: a whiteout hides only lower layers
        os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)

    def _hardlink(self, pfd: int, name: str, parts: tuple[str, ...], linkname: str) -> None:
        tparts = _parts(linkname, "hard link target")
        if not tparts or tparts == parts:
            raise ValueError(f"hard link to {linkname!r} (itself or the root)")
        tfd = os.dup(self._walk(tparts[:-1], create=False))
        try:
            st = self._stat(tfd, tparts[-1])
            if st is None or not stat.S_ISREG(st.st_mode):
                raise ValueError(f"hard link target {linkname!r} is not a regular file earlier in this layer")
            pfd = self._walk(parts[:-1], create=True)
            self._clear(pfd, name, parts, keep_dir=False)
            os.link(tparts[-1], name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    def _note_xattrs(self, count: int, opaque: bool) -> None:
        self._xattr_seen |= count > 0
        self._opaque_seen |= opaque
        self.reorder |= count > 1 or (self._xattr_seen and self._opaque_seen)

    def _meta(self, fd: int, uid: int, gid: int, mode: int, xattrs: dict[str, bytes],
              dir_parts: tuple[str, ...] | None, mtime: int) -> None:
        self._note_xattrs(len(xattrs), False)
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)  # after chown, which clears setuid/setgid
        for key, value in xattrs.items():  # after chown, which drops security.capability
            os.setxattr(fd, key, value)
        if dir_parts is None:
            os.utime(fd, ns=(mtime * 10**9, mtime * 10**9))
        else:
            self.dir_mtimes[dir_parts] = mtime

    def _meta_at(self, pfd: int, name: str, uid: int, gid: int, mode: int | None, xattrs: dict[str, bytes],
                 mtime: int) -> None:
        self._note_xattrs(len(xattrs), False)
        os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        if mode is not None:
            os.chmod(name, mode, dir_fd=pfd)  # a FIFO we just made: no link to follow
        for key, value in xattrs.items():
            os.setxattr(f"/proc/self/fd/{pfd}/{name}", key, value, follow_symlinks=False)
        os.utime(name, dir_fd=pfd, ns=(mtime * 10**9, mtime * 10**9), follow_symlinks=False)

    def finish(self) -> None:
        """Directory mtimes, deepest first, once nothing more is created in them."""
        self._drop_cache()
        for parts in sorted(self.dir_mtimes, key=len, reverse=True):
            mtime = self.dir_mtimes[parts]
            fd = os.dup(self.root) if not parts else os.dup(self._walk(parts, create=False))
            try:
                os.utime(fd, ns=(mtime * 10**9, mtime * 10**9))
            finally:
                os.close(fd)
        self._drop_cache()


def _xattrs(m: Member) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key in sorted(m.pax_headers):
        if not key.startswith("SCHILY.xattr."):
            continue
        name = _utf8(key[len("SCHILY.xattr."):], "xattr name")
        if not (name.startswith(XATTR_PREFIXES) or name in ACL_XATTRS) or name in XATTR_PREFIXES:
            raise ValueError(f"xattr {name!r} is not in a namespace erofs stores (user., security., trusted.)")
        if name.startswith("trusted.overlay."):
            raise ValueError(f"xattr {name!r}: overlayfs metadata comes from whiteouts, not from the layer")
        out[name] = m.pax_headers[key].encode("utf-8", "surrogateescape")
    return out


def _extract(src: _Uncompressed, root: str, where: str) -> tuple[int, bool]:
    """Extract the tar into ``root``; returns the newest mtime (mkfs.erofs' build time) and whether an inode
    may hold two xattrs (then their order in the image is made canonical)."""
    try:
        tree = _Tree(root)
    except (ValueError, OSError) as e:
        raise LayerError(f"layer {where}: {e}") from None
    try:
        os.chmod(tree.root, 0o755)
        reader = TarReader(src.read)
        members = reader.members()
        for _ in range(MAX_MEMBERS + 1):
            try:
                m = next(members, None)
            except TarFormatError as e:
                raise LayerError(f"layer {where}: not a tar archive this converter reads: {e}") from None
            if m is None:
                break
            try:
                tree.add(m, reader.data if m.isreg() else None)
            except (ValueError, OSError) as e:
                shown = m.name.encode("utf-8", "backslashreplace").decode()
                raise LayerError(f"layer {where}: member {shown!r}: {e}") from None
            except TarFormatError as e:
                raise LayerError(f"layer {where}: member {m.name!r}: tar: {e}") from None
        try:
            tree.finish()
        except (ValueError, OSError) as e:
            raise LayerError(f"layer {where}: setting directory times: {e}") from None
        return tree.newest, tree.reorder
    finally:
        tree.close()


# --- erofs + verity ------------------------------------------------------------------------------------


def _mkfs(tree: str, out: str, digest: str, epoch: int, reorder: bool) -> None:
    """mkfs.erofs 1.5 with every xattr inline (``-x`` above any count: a shared table's order would be the
    host's), then the inline entries put in canonical order when an inode may hold two."""
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "SOURCE_DATE_EPOCH": str(epoch),
           "LC_ALL": "C"}
    argv = ["mkfs.erofs", "--quiet", f"-x{2**31 - 1}", f"-U{_uuid(digest, 'erofs uuid')}", out, tree]
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, timeout=MKFS_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LayerError(f"layer {digest}: mkfs.erofs: {e}") from None
    if proc.returncode != 0:
        raise LayerError(f"layer {digest}: mkfs.erofs failed: {proc.stderr.decode(errors='replace').strip()[-500:]}")
    if reorder:
        canonical_xattrs(out)


def _level_sizes(data_blocks: int, per_block: int) -> list[int]:
    """Hash blocks per level, bottom first (none for a single data block: its hash is the root)."""
    sizes: list[int] = []
    n = data_blocks
    while n > 1:
        n = -(-n // per_block)
        sizes.append(n)
    return sizes


def append_verity(path: str, salt: bytes, uuid: bytes) -> tuple[str, int]:
    """Pad ``path`` to 4096 and append its dm-verity hash area (what ``veritysetup format --hash-offset=<data
    size>`` writes, same bytes as ``agent.verity.format_hash_area``) computed level by level through the file,
    so memory stays flat. Returns (root hash hex, hash offset)."""
    with open(path, "r+b") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        if size % BLOCK:
            os.pwrite(fd, bytes(BLOCK - size % BLOCK), size)
            size += BLOCK - size % BLOCK
        if size == 0:
            raise LayerError(f"{path}: empty erofs image")
        sb = Superblock(1, 1, "sha256", BLOCK, BLOCK, size // BLOCK, salt)
        header = build_superblock(sb, uuid)
        assert len(header) == SUPERBLOCK.size
        os.pwrite(fd, header + bytes(BLOCK - len(header)), size)
        per_block = BLOCK // 32
        sizes = _level_sizes(sb.data_blocks, per_block)
        starts: list[int] = []  # block offset of each level (bottom first); levels are stored top first
        at = size + BLOCK
        for n in reversed(sizes):
            starts.insert(0, at)
            at += n * BLOCK
        base = hashlib.sha256(salt)
        src_at, src_blocks = 0, sb.data_blocks
        for level, count_here in enumerate(sizes):
            pending: list[bytes] = []
            written = 0
            for first in range(0, src_blocks, CHUNK // BLOCK):
                count = min(CHUNK // BLOCK, src_blocks - first)
                chunk = os.pread(fd, count * BLOCK, src_at + first * BLOCK)
                if len(chunk) != count * BLOCK:
                    raise LayerError(f"{path}: short read while hashing")
                view = memoryview(chunk)
                for i in range(count):
                    h = base.copy()
                    h.update(view[i * BLOCK:(i + 1) * BLOCK])
                    pending.append(h.digest())
                while len(pending) >= per_block:
                    os.pwrite(fd, b"".join(pending[:per_block]), starts[level] + written * BLOCK)
                    del pending[:per_block]
                    written += 1
            if pending:
                packed = b"".join(pending)
                os.pwrite(fd, packed + bytes(BLOCK - len(packed)), starts[level] + written * BLOCK)
                written += 1
            if written != count_here:
                raise AssertionError(f"verity level {level}: {written} hash blocks, expected {count_here}")
            src_at, src_blocks = starts[level], count_here
        top = base.copy()
        top.update(os.pread(fd, BLOCK, src_at))  # the top hash block, or the only data block
        root = top.digest()
    return root.hex(), size


# --- the conversion ---------------------------------------------------------------------------------------


def convert(blob: Blob, stream: BinaryIO, cache_dir: Path, *, diff_id: str | None = None,
            progress: Callable[[str], None] | None = None) -> Layer:
    """Convert one layer blob (``stream``: compressed, as the registry serves it) into the cache and return it.

    A complete cache entry is returned without reading ``stream`` (callers that can should ask ``cached``
    first and not download). Otherwise the stream is read to EOF, where the caller checks the blob digest
    (an ImageError from it propagates), the tar's sha256 is checked against ``diff_id`` when given, and only
    then is the entry published: image first, then its sidecar, each by an atomic rename."""
    hexd = _hex(blob.digest)
    if diff_id is not None:
        _hex(diff_id, f"layer {blob.digest}: diff_id")
    kind = LAYER_MEDIA_TYPES.get(blob.media_type)
    if kind is None:
        raise LayerError(f"layer {blob.digest}: media type {blob.media_type!r} is not a layer this converter reads")
    hit = cached(blob.digest, cache_dir)
    if hit is not None:
        if diff_id is not None and hit.diff_id != diff_id:
            raise LayerError(f"layer {blob.digest}: uncompressed sha256 {hit.diff_id} (cached) is not the config's "
                             f"diff_id {diff_id}")
        return hit
    say = progress or (lambda _msg: None)
    layers_dir, tmp_dir = cache_dir / "layers", cache_dir / "tmp"
    layers_dir.mkdir(parents=True, exist_ok=True)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise LayerError(f"layer {blob.digest}: converting layers needs root (file owners, whiteout devices and "
                         "trusted.* xattrs go through a temp tree, as mkfs.erofs 1.5 has no tar input)")
    work = tempfile.mkdtemp(dir=tmp_dir, prefix=f"{hexd[:16]}.")
    try:
        tree = os.path.join(work, "tree")
        os.mkdir(tree, 0o700)
        say(f"{blob.digest}: extracting")
        src = _Uncompressed(stream, kind, blob.digest)
        try:
            newest, reorder = _extract(src, tree, blob.digest)
            got = src.finish()
        finally:
            src.close()
        if diff_id is not None and got != diff_id:
            raise LayerError(f"layer {blob.digest}: uncompressed sha256 {got} is not the config's diff_id {diff_id}")
        say(f"{blob.digest}: mkfs.erofs")
        img = os.path.join(work, "layer.img")
        _mkfs(tree, img, blob.digest, newest, reorder)
        shutil.rmtree(tree)
        say(f"{blob.digest}: dm-verity")
        root_hash, offset = append_verity(img, _derived(blob.digest, "verity salt"),
                                          _uuid(blob.digest, "verity uuid").bytes)
        os.chmod(img, 0o644)
        layer = Layer(digest=blob.digest, diff_id=got, root_hash=root_hash, hash_offset=offset,
                      size=os.path.getsize(img), file=f"{hexd}.img")
        os.replace(img, layers_dir / layer.file)
        _atomic_write(_sidecar(cache_dir, hexd), (json.dumps(
            {"version": SIDECAR_VERSION, "layer": _layer_doc(layer)}, indent=2, sort_keys=True) + "\n").encode())
        say(f"{blob.digest}: root hash {root_hash}")
        return layer
    finally:
        shutil.rmtree(work, ignore_errors=True)
