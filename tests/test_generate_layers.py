"""generator.layers: OCI layer blobs -> deterministic erofs + dm-verity images, with the real tools.

Conversions need root (mkfs.erofs 1.5 images a temp tree with real owners, whiteout devices and trusted
xattrs); the overlay and dm-verity checks mount what was converted. Without root those parts skip.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.verity import format_hash_area, kernel_verity_available
from generator import layers as L
from generator.errors import ImageError, LayerError
from generator.model import Blob, Layer

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="layer conversion and mounts need root")
MEDIA = {"none": "application/vnd.oci.image.layer.v1.tar", "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
         "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}


# --- building layers ---------------------------------------------------------------------------------------


def entry(name: str, kind: str = "file", data: bytes = b"", **kw: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "data": data, **kw}


TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "link": tarfile.LNKTYPE,
         "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE}


def make_tar(entries: list[dict[str, Any]], fmt: int = tarfile.PAX_FORMAT, encoding: str = "utf-8") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding=encoding) as t:
        for e in entries:
            info = tarfile.TarInfo(e["name"])
            info.type = TYPES[e["kind"]]
            info.mtime = e.get("mtime", 1_000_000)
            info.mode = e.get("mode", 0o755 if e["kind"] == "dir" else 0o644)
            info.uid, info.gid = e.get("uid", 0), e.get("gid", 0)
            info.linkname = e.get("linkname", "")
            info.pax_headers = e.get("pax", {})
            if e["kind"] == "file":
                info.size = len(e["data"])
                t.addfile(info, io.BytesIO(e["data"]))
            else:
                t.addfile(info)
    return buf.getvalue()


def compress(raw: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(raw, mtime=0)
    if kind == "zstd":
        return zstandard.ZstdCompressor().compress(raw)
    return raw


class Served(io.BytesIO):
    """A blob as the image stage hands it over: it raises ImageError at EOF when the digest was wrong."""

    def __init__(self, data: bytes, bad_digest: bool = False) -> None:
        super().__init__(data)
        self.bad, self.reads = bad_digest, 0

    def read(self, n: int | None = -1, /) -> bytes:
        self.reads += 1
        out = super().read(n)
        if not out and self.bad:
            raise ImageError("blob digest mismatch (test)")
        return out


def blob_of(data: bytes, kind: str = "gzip") -> Blob:
    return Blob("sha256:" + hashlib.sha256(data).hexdigest(), MEDIA[kind], len(data))


def convert(raw: bytes, cache: Path, kind: str = "gzip", **kw: Any) -> Layer:
    data = compress(raw, kind)
    return L.convert(blob_of(data, kind), Served(data), cache, diff_id="sha256:" + hashlib.sha256(raw).hexdigest(),
                     **kw)


def published(cache: Path) -> list[str]:
    """Everything a failed conversion might have left: cache entries and temp trees."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() or p.parent.name == "tmp")


SAMPLE = [
    entry("etc", "dir", mode=0o755, mtime=1234),
    entry("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n", mode=0o4755, uid=5, gid=6,
          pax={"SCHILY.xattr.user.note": "hello", "SCHILY.xattr.security.capability": "\x01\x00\x00\x02" + "\0" * 16}),
    entry("etc/link", "sym", linkname="/etc/passwd", uid=7),
    entry("etc/hard", "link", linkname="etc/passwd"),
    entry("usr/bin/tool", data=os.urandom(3 * 4096 + 17), mode=0o2711, mtime=99),
    entry("run/fifo", "fifo", mode=0o620),
    entry("tmp", "dir", mode=0o1777),
    entry("big", data=bytes(300_000) + b"end"),
]


# --- mounting (root) ----------------------------------------------------------------------------------------


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120).stdout


@contextlib.contextmanager
def verity_mount(layer: Layer, cache: Path, where: Path, name: str) -> Iterator[Path]:
    """The layer opened with ``veritysetup open`` (its root hash, --hash-offset) and mounted read-only, as the
    agent does; on a kernel without device-mapper (this build machine), ``veritysetup verify`` and a read-only
    loop mount of the same file."""
    path = str(L.layer_path(layer, cache))
    where.mkdir(parents=True)
    if not kernel_verity_available():
        run("veritysetup", "verify", path, path, layer.root_hash, f"--hash-offset={layer.hash_offset}")
        run("mount", "-t", "erofs", "-o", "loop,ro", path, str(where))
        try:
            yield where
        finally:
            run("umount", str(where))
        return
    run("veritysetup", "open", path, name, path, layer.root_hash, f"--hash-offset={layer.hash_offset}")
    try:
        run("mount", "-t", "erofs", "-o", "ro", f"/dev/mapper/{name}", str(where))
        try:
            yield where
        finally:
            run("umount", str(where))
    finally:
        subprocess.run(["veritysetup", "close", name], check=False, capture_output=True, timeout=60)


def dm_name(tag: str) -> str:
    return f"cocoon-test-{os.getpid()}-{tag}"


# --- determinism ----------------------------------------------------------------------------------------------


@needs_root
def test_the_same_layer_gives_the_same_bytes_whatever_the_host(tmp_path: Path) -> None:
    raw = make_tar(SAMPLE)
    first = convert(raw, tmp_path / "a")
    old = os.umask(0o077)
    try:
        time.sleep(1.1)  # another second on the clock: mkfs.erofs' build time must not come from it
        shm = Path("/dev/shm")
        other = shm / f"cocoon-layers-{os.getpid()}" if shm.is_dir() else tmp_path / "b"
        try:
            second = convert(raw, other)  # another filesystem (tmpfs): another directory order
            assert second == first
            assert L.layer_path(second, other).read_bytes() == L.layer_path(first, tmp_path / "a").read_bytes()
        finally:
            shutil.rmtree(other, ignore_errors=True)
    finally:
        os.umask(old)
    assert first.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert first.hash_offset % 4096 == 0 and first.size > first.hash_offset
    assert first.file == first.digest[7:] + ".img"


@needs_root
def test_another_layer_digest_gets_another_salt_and_uuid(tmp_path: Path) -> None:
    raw = make_tar(SAMPLE)
    a, b = convert(raw, tmp_path, "none"), convert(raw, tmp_path, "gzip")
    assert a.diff_id == b.diff_id and a.digest != b.digest
    assert a.root_hash != b.root_hash  # salt and UUIDs follow the blob digest
    img_a, img_b = L.layer_path(a, tmp_path).read_bytes(), L.layer_path(b, tmp_path).read_bytes()
    assert img_a[1024 + 48:1024 + 64] != img_b[1024 + 48:1024 + 64]  # erofs superblock uuid


# --- formats, diff_id, stream errors, cache -----------------------------------------------------------------------


@needs_root
@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_every_compression_converts_to_the_same_tree(tmp_path: Path, kind: str) -> None:
    raw = make_tar(SAMPLE)
    layer = convert(raw, tmp_path, kind, progress=lambda _m: None)
    with verity_mount(layer, tmp_path, tmp_path / "m", dm_name(kind)) as m:
        passwd = m / "etc/passwd"
        st_ = passwd.lstat()
        assert (st_.st_uid, st_.st_gid, stat.S_IMODE(st_.st_mode)) == (5, 6, 0o4755)
        assert int(st_.st_mtime) == 1_000_000
        assert os.getxattr(passwd, "user.note") == b"hello"
        assert os.getxattr(passwd, "security.capability") == b"\x01\x00\x00\x02" + bytes(16)
        assert (m / "etc/hard").stat().st_ino == st_.st_ino
        assert os.readlink(m / "etc/link") == "/etc/passwd" and (m / "etc/link").lstat().st_uid == 7
        assert stat.S_IMODE((m / "usr/bin/tool").stat().st_mode) == 0o2711
        assert (m / "usr/bin/tool").read_bytes() == SAMPLE[4]["data"]
        assert int((m / "usr/bin/tool").stat().st_mtime) == 99
        assert stat.S_ISFIFO((m / "run/fifo").lstat().st_mode)
        assert stat.S_IMODE((m / "tmp").stat().st_mode) == 0o1777
        assert int((m / "etc").stat().st_mtime) == 1234  # set after its children were made
        assert int((m / "usr").stat().st_mtime) == 0  # implicit directories: root, 0755, mtime 0
        assert stat.S_IMODE((m / "usr").stat().st_mode) == 0o755
        assert (m / "big").read_bytes()[-3:] == b"end"


@needs_root
def test_a_wrong_diff_id_publishes_nothing(tmp_path: Path) -> None:
    raw = make_tar(SAMPLE)
    data = compress(raw, "gzip")
    with pytest.raises(LayerError, match="diff_id"):
        L.convert(blob_of(data), Served(data), tmp_path, diff_id="sha256:" + "0" * 64)
    assert published(tmp_path) == []
    assert L.cached(blob_of(data).digest, tmp_path) is None


@needs_root
def test_a_digest_error_at_eof_publishes_nothing(tmp_path: Path) -> None:
    data = compress(make_tar(SAMPLE), "zstd")
    with pytest.raises(ImageError, match="digest"):
        L.convert(blob_of(data, "zstd"), Served(data, bad_digest=True), tmp_path)
    assert published(tmp_path) == []


@needs_root
def test_the_compressed_stream_is_read_to_its_eof(tmp_path: Path) -> None:
    """Trailing bytes after the tar's end (padding records) still reach the caller's digest check."""
    raw = make_tar([entry("a", data=b"x")]) + bytes(10240)
    with pytest.raises(ImageError):
        L.convert(blob_of(raw, "none"), Served(raw, bad_digest=True), tmp_path)
    layer = convert(raw, tmp_path, "none")
    assert layer.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()


@needs_root
def test_a_cached_layer_is_returned_without_reading_the_stream(tmp_path: Path) -> None:
    raw = make_tar(SAMPLE)
    layer = convert(raw, tmp_path)
    assert L.cached(layer.digest, tmp_path) == layer
    data = compress(raw, "gzip")
    stream = Served(data)
    assert L.convert(blob_of(data), stream, tmp_path) == layer and stream.reads == 0
    with pytest.raises(LayerError, match="diff_id"):
        L.convert(blob_of(data), Served(data), tmp_path, diff_id="sha256:" + "1" * 64)
    side = tmp_path / "layers" / (layer.digest[7:] + ".json")
    side.write_text(side.read_text().replace('"version": 1', '"version": 1, "version": 1'))
    assert L.cached(layer.digest, tmp_path) is None  # duplicate key: not an entry
    assert convert(raw, tmp_path) == layer and L.cached(layer.digest, tmp_path) == layer
    img = L.layer_path(layer, tmp_path)
    good = img.read_bytes()
    with img.open("ab") as f:
        f.write(b"x")
    assert L.cached(layer.digest, tmp_path) is None  # the image is not the size the sidecar says
    img.write_bytes(good[: layer.hash_offset] + bytes(len(good) - layer.hash_offset))
    assert L.cached(layer.digest, tmp_path) is None  # a lost hash area (a crash before writeback)
    torn = bytearray(good)
    torn[layer.hash_offset + 4096 + 5] ^= 1
    img.write_bytes(bytes(torn))
    assert L.cached(layer.digest, tmp_path) is None  # the top hash block does not give the root hash
    img.write_bytes(good)
    assert L.cached(layer.digest, tmp_path) == layer


def test_cached_refuses_a_digest_that_is_not_one(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="not sha256"):
        L.cached("sha256:../../etc", tmp_path)
    assert L.cached("sha256:" + "a" * 64, tmp_path) is None


def test_bad_blob_records_are_refused_before_anything_is_read(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="media type"):
        L.convert(Blob("sha256:" + "a" * 64, "application/x-tar", 1), Served(b""), tmp_path)
    with pytest.raises(LayerError, match="not sha256"):
        L.convert(Blob("sha256:AB", MEDIA["gzip"], 1), Served(b""), tmp_path)
    with pytest.raises(LayerError, match="diff_id"):
        L.convert(Blob("sha256:" + "a" * 64, MEDIA["gzip"], 1), Served(b""), tmp_path, diff_id="md5:x")


# --- malformed and unsafe layers ------------------------------------------------------------------------------------

UNSAFE = {
    "dotdot": ([entry("a/../../evil", data=b"x")], "a/../../evil", "'..'"),
    "absolute": ([entry("/etc/evil", data=b"x")], "/etc/evil", "absolute"),
    "through a symlink": ([entry("l", "sym", linkname="/etc"), entry("l/passwd", data=b"x")], "l/passwd",
                          "symlink"),
    "through a relative symlink": ([entry("d", "dir"), entry("l", "sym", linkname="d"), entry("l/x", "dir")], "l/x",
                                   "symlink"),
    "through a file": ([entry("f", data=b"x"), entry("f/x", data=b"y")], "f/x", "not a directory"),
    "hard link outside": ([entry("h", "link", linkname="../etc/passwd")], "h", "'..'"),
    "hard link absolute": ([entry("h", "link", linkname="/etc/passwd")], "h", "absolute"),
    "hard link missing": ([entry("h", "link", linkname="nothere")], "h", "not a regular file"),
    "hard link to a dir": ([entry("d", "dir"), entry("h", "link", linkname="d")], "h", "not a regular file"),
    "hard link through a symlink": ([entry("d/f", data=b"x"), entry("l", "sym", linkname="d"),
                                     entry("h", "link", linkname="l/f")], "h", "symlink"),
    "hard link to itself": ([entry("h", "link", linkname="h")], "h", "itself"),
    "char device": ([entry("dev/null", "chr")], "dev/null", "device"),
    "block device": ([entry("dev/sda", "blk")], "dev/sda", "device"),
    "overlay xattr": ([entry("d", "dir", pax={"SCHILY.xattr.trusted.overlay.redirect": "/x"})], "d", "overlay"),
    "unknown xattr namespace": ([entry("f", data=b"", pax={"SCHILY.xattr.bogus.x": "1"})], "f", "namespace"),
    "root is a file": ([entry("./", data=b"x")], "./", "root"),
}


@needs_root
@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_members_are_refused_naming_the_member(tmp_path: Path, case: str) -> None:
    entries, member, why = UNSAFE[case]
    raw = make_tar(entries)
    data = compress(raw, "gzip")
    with pytest.raises(LayerError, match=why) as err:
        L.convert(blob_of(data), Served(data), tmp_path)
    assert blob_of(data).digest in str(err.value) and repr(member) in str(err.value)
    assert published(tmp_path) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("layer ")]  # the reader thread is gone


@needs_root
def test_a_name_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    raw = make_tar([entry("caf\xe9", data=b"x")], fmt=tarfile.GNU_FORMAT, encoding="latin-1")
    assert b"caf\xe9" in raw
    with pytest.raises(LayerError, match="UTF-8") as err:
        convert(raw, tmp_path, "none")
    assert "caf" in str(err.value)


@needs_root
@pytest.mark.parametrize(("kind", "data", "why"), [
    ("gzip", b"not gzip at all", "gzip"),
    ("gzip", gzip.compress(make_tar([entry("a", data=b"x")]))[:-20], "gzip"),
    ("gzip", gzip.compress(make_tar([entry("a", data=b"x")])) + b"garbage", "gzip"),
    ("zstd", b"\x28\xb5\x2f\xfd garbage", "zstd"),
    ("none", b"x" * 2000, "tar"),
    ("none", bytes(100), "tar"),  # ends inside the first header block
    ("none", make_tar([entry("a", data=b"x" * 3000)])[:1500], "ends inside"),
])
def test_streams_that_do_not_decode_are_refused(tmp_path: Path, kind: str, data: bytes, why: str) -> None:
    with pytest.raises(LayerError, match=why):
        L.convert(blob_of(data, kind), Served(data), tmp_path)
    assert published(tmp_path) == []


@needs_root
def test_an_empty_blob_is_an_empty_layer(tmp_path: Path) -> None:
    """As Go's archive/tar (containerd) reads it: a clean end before any header is an archive with no members."""
    layer = convert(b"", tmp_path, "none")
    assert layer.diff_id == "sha256:" + hashlib.sha256(b"").hexdigest()
    assert layer.hash_offset == 4096
    assert L.cached(layer.digest, tmp_path) == layer  # one data block: its hash is the root


@needs_root
def test_multi_member_gzip_is_one_stream(tmp_path: Path) -> None:
    raw = make_tar(SAMPLE)
    data = gzip.compress(raw[:5000], mtime=0) + gzip.compress(raw[5000:], mtime=0)
    layer = L.convert(blob_of(data), Served(data), tmp_path, diff_id="sha256:" + hashlib.sha256(raw).hexdigest())
    assert layer.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()


# --- whiteouts and overlay stacking (root) --------------------------------------------------------------------------


@needs_root
def test_whiteouts_and_opaque_dirs_stack_as_overlayfs(tmp_path: Path) -> None:
    bottom = convert(make_tar([
        entry("a/keep", data=b"keep"), entry("a/gone", data=b"gone"), entry("a/gonedir/x", data=b"x"),
        entry("o/hidden", data=b"h"), entry("o/sub/deep", data=b"d"), entry("rootfile", data=b"r"),
    ]), tmp_path)
    top = convert(make_tar([
        entry("a/.wh.gone"), entry("a/.wh.gonedir"), entry("o/.wh..wh..opq"), entry("o/new", data=b"n"),
        entry(".wh.rootfile"), entry("a/.wh..wh.plnk", "dir"),  # aufs metadata: ignored
        entry(".wh.same"), entry("same", data=b"this layer's"),  # a whiteout hides only lower layers
        entry("x/.wh.y"), entry("x", "dir", mode=0o700),  # a whiteout's directory may come later
    ]), tmp_path)
    with contextlib.ExitStack() as stack:
        lo = stack.enter_context(verity_mount(bottom, tmp_path, tmp_path / "bottom", dm_name("bottom")))
        hi = stack.enter_context(verity_mount(top, tmp_path, tmp_path / "top", dm_name("top")))
        gone = (hi / "a/gone").lstat()
        assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
        assert os.getxattr(hi / "o", "trusted.overlay.opaque") == b"y"
        assert not (hi / "a/.wh..wh.plnk").exists() and (hi / "same").read_bytes() == b"this layer's"
        assert stat.S_IMODE((hi / "x").stat().st_mode) == 0o700
        merged = tmp_path / "merged"
        merged.mkdir()
        run("mount", "-t", "overlay", "overlay", "-o", f"lowerdir={hi}:{lo}", str(merged))  # top first
        stack.callback(run, "umount", str(merged))
        assert (merged / "a/keep").read_bytes() == b"keep"
        assert not os.path.lexists(merged / "a/gone") and not os.path.lexists(merged / "a/gonedir")
        assert not os.path.lexists(merged / "rootfile")
        assert sorted(os.listdir(merged / "o")) == ["new"]  # opaque: the lower's o/ is hidden
        assert sorted(os.listdir(merged / "a")) == ["keep"]
        assert (merged / "same").read_bytes() == b"this layer's"


@needs_root
def test_a_directory_over_its_own_layers_whiteout_hides_the_lower_one(tmp_path: Path) -> None:
    bottom = convert(make_tar([entry("d/old", data=b"old")]), tmp_path)
    top = convert(make_tar([entry(".wh.d"), entry("d/new", data=b"new")]), tmp_path)
    with contextlib.ExitStack() as stack:
        lo = stack.enter_context(verity_mount(bottom, tmp_path, tmp_path / "lo", dm_name("lo")))
        hi = stack.enter_context(verity_mount(top, tmp_path, tmp_path / "hi", dm_name("hi")))
        merged = tmp_path / "merged"
        merged.mkdir()
        run("mount", "-t", "overlay", "overlay", "-o", f"lowerdir={hi}:{lo}", str(merged))
        stack.callback(run, "umount", str(merged))
        assert os.listdir(merged / "d") == ["new"]


@needs_root
def test_later_members_replace_earlier_ones(tmp_path: Path) -> None:
    layer = convert(make_tar([
        entry("p", data=b"file first"), entry("p", "dir", mode=0o711), entry("p/inner", data=b"i"),
        entry("q", "dir"), entry("q/child", data=b"c"), entry("q", data=b"now a file"),
        entry("r", "sym", linkname="x"), entry("r", data=b"plain"),
        entry("s", data=b"one"), entry("s", data=b"two"),
    ]), tmp_path)
    with verity_mount(layer, tmp_path, tmp_path / "m", dm_name("replace")) as m:
        assert stat.S_IMODE((m / "p").stat().st_mode) == 0o711 and (m / "p/inner").read_bytes() == b"i"
        assert (m / "q").read_bytes() == b"now a file"
        assert not (m / "r").is_symlink() and (m / "r").read_bytes() == b"plain"
        assert (m / "s").read_bytes() == b"two"


# --- dm-verity --------------------------------------------------------------------------------------------------------


@needs_root
def test_veritysetup_verifies_the_layer_and_refuses_a_flipped_byte(tmp_path: Path) -> None:
    layer = convert(make_tar(SAMPLE), tmp_path)
    path = str(L.layer_path(layer, tmp_path))
    run("veritysetup", "verify", path, path, layer.root_hash, f"--hash-offset={layer.hash_offset}")
    bad = tmp_path / "bad.img"
    shutil.copy(path, bad)
    with bad.open("r+b") as f:
        f.seek(layer.hash_offset - 1)
        byte = f.read(1)
        f.seek(layer.hash_offset - 1)
        f.write(bytes([byte[0] ^ 1]))
    proc = subprocess.run(["veritysetup", "verify", str(bad), str(bad), layer.root_hash,
                           f"--hash-offset={layer.hash_offset}"], capture_output=True, timeout=60, check=False)
    assert proc.returncode != 0


@needs_root
@pytest.mark.skipif(not kernel_verity_available(), reason="this kernel has no device-mapper (dm-verity)")
def test_veritysetup_open_takes_the_layer_and_its_root_hash(tmp_path: Path) -> None:
    layer = convert(make_tar(SAMPLE), tmp_path)
    path = str(L.layer_path(layer, tmp_path))
    name = dm_name("open")
    run("veritysetup", "open", path, name, path, layer.root_hash, f"--hash-offset={layer.hash_offset}")
    try:
        status = run("veritysetup", "status", name)
        assert "verified" in status
        with open(f"/dev/mapper/{name}", "rb") as f:
            assert f.read() == Path(path).read_bytes()[: layer.hash_offset]
    finally:
        subprocess.run(["veritysetup", "close", name], check=False, capture_output=True, timeout=60)
    bad = subprocess.run(["veritysetup", "open", path, name, path, "00" * 32, f"--hash-offset={layer.hash_offset}"],
                         capture_output=True, timeout=60, check=False)
    subprocess.run(["veritysetup", "close", name], check=False, capture_output=True, timeout=60)
    assert bad.returncode != 0


@needs_root
def test_an_empty_layer_is_one_block_and_still_verifies(tmp_path: Path) -> None:
    layer = convert(make_tar([]), tmp_path)
    path = str(L.layer_path(layer, tmp_path))
    run("veritysetup", "verify", path, path, layer.root_hash, f"--hash-offset={layer.hash_offset}")
    with verity_mount(layer, tmp_path, tmp_path / "m", dm_name("empty")) as m:
        assert os.listdir(m) == [] and stat.S_IMODE(m.stat().st_mode) == 0o755


@pytest.mark.parametrize("blocks", [1, 2, 127, 128, 129, 128 * 128 + 1])
def test_the_streamed_hash_area_is_the_agents_and_veritysetups(tmp_path: Path, blocks: int) -> None:
    data = tmp_path / "data"
    with data.open("wb") as f:
        for i in range(blocks):
            f.write(hashlib.sha256(str(i).encode()).digest() * 128)
    salt, uuid = hashlib.sha256(b"salt").digest(), bytes(range(16))
    want_root, want_area = format_hash_area(str(data), salt, uuid)
    ours = tmp_path / "ours"
    shutil.copy(data, ours)
    root, offset = L.append_verity(str(ours), salt, uuid)
    assert (root, offset) == (want_root.hex(), blocks * 4096)
    assert ours.read_bytes()[offset:] == want_area
    if shutil.which("veritysetup"):
        theirs = tmp_path / "theirs"
        shutil.copy(data, theirs)
        out = run("veritysetup", "format", str(theirs), str(theirs), f"--hash-offset={offset}",
                  f"--salt={salt.hex()}", "--uuid=00010203-0405-0607-0809-0a0b0c0d0e0f")
        assert f"Root hash:      \t{root}" in out
        assert theirs.read_bytes() == ours.read_bytes()


def test_append_verity_pads_to_a_block(tmp_path: Path) -> None:
    f = tmp_path / "odd"
    f.write_bytes(b"x" * 5000)
    _root, offset = L.append_verity(str(f), b"s", bytes(16))
    assert offset == 8192 and f.read_bytes()[5000:8192] == bytes(3192)


# --- property: random tars ---------------------------------------------------------------------------------------

NAMES = st.lists(st.sampled_from(["a", "b", "..", ".", "", ".wh.a", ".wh..wh..opq", ".wh.", "\u00e9", "c d"]),
                 min_size=1, max_size=3).map("/".join)
ENTRIES = st.lists(st.fixed_dictionaries({
    "name": NAMES, "kind": st.sampled_from(sorted(TYPES)), "data": st.binary(max_size=5000),
    "linkname": NAMES | st.sampled_from(["/abs", "a/../..", "a"]), "mode": st.integers(0, 0o7777),
    "uid": st.integers(0, 70000), "mtime": st.integers(-10, 2**33),
}), max_size=8)


@needs_root
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=ENTRIES, kind=st.sampled_from(["none", "gzip", "zstd"]), cut=st.integers(0, 3))
def test_random_tars_convert_or_raise_layer_error(tmp_path: Path, entries: list[dict[str, Any]], kind: str,
                                                  cut: int) -> None:
    raw = make_tar(entries)
    data = compress(raw, kind)
    if cut:  # a damaged blob
        data = data[: len(data) * cut // 4]
    cache = tmp_path / f"c{hashlib.sha256(data).hexdigest()[:12]}"
    try:
        layer = L.convert(blob_of(data, kind), Served(data), cache)
    except LayerError:
        assert not any((cache / "layers").glob("*.img")) if (cache / "layers").exists() else True
    else:
        assert L.cached(layer.digest, cache) == layer
        assert not any((cache / "tmp").iterdir())
    finally:
        shutil.rmtree(cache, ignore_errors=True)


# --- layer index ------------------------------------------------------------------------------------------------------


def layer(n: int) -> Layer:
    hexd = hashlib.sha256(str(n).encode()).hexdigest()
    return Layer(f"sha256:{hexd}", "sha256:" + "d" * 64, "ab" * 32, 4096 * (n + 1), 4096 * (n + 2), f"{hexd}.img")


def test_the_index_round_trips_sorted_and_deduplicated(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "index.json"
    items = [layer(3), layer(1), layer(2), layer(1)]
    L.write_index(items, path)
    back = L.read_index(path)
    assert back == sorted(set(items), key=lambda x: x.digest)
    doc = json.loads(path.read_text())
    assert doc["version"] == L.INDEX_VERSION and len(doc["layers"]) == 3
    L.write_index(items[::-1], tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["index.json"]  # no temp file left


def test_the_index_refuses_two_conversions_of_one_digest(tmp_path: Path) -> None:
    other = Layer(**{**layer(1).__dict__, "root_hash": "cd" * 32})
    with pytest.raises(LayerError, match="two different"):
        L.write_index([layer(1), other], tmp_path / "i.json")
    assert not (tmp_path / "i.json").exists()


GOOD: dict[str, Any] = {"version": 1, "layers": [L._layer_doc(layer(1))]}


@pytest.mark.parametrize(("text", "why"), [
    ('{"version": 1, "version": 1, "layers": []}', "duplicate"),
    ('{"version": 2, "layers": []}', "version"),
    ('{"version": true, "layers": []}', "version"),
    ('{"version": 1, "layers": {}}', "not a list"),
    ('{"version": 1, "layers": [], "x": 1}', "exactly"),
    ('[]', "exactly"),
    ('{"version": 1, "layers": [NaN]}', "not JSON"),
    (json.dumps({**GOOD, "layers": GOOD["layers"] * 2}), "sorted"),
    (json.dumps({**GOOD, "layers": [{**GOOD["layers"][0], "extra": 1}]}), "exactly the fields"),
    (json.dumps({**GOOD, "layers": [{**GOOD["layers"][0], "size": 4096}]}), "inconsistent"),
    (json.dumps({**GOOD, "layers": [{**GOOD["layers"][0], "file": "../x.img"}]}), "is not"),
    (json.dumps({**GOOD, "layers": [{**GOOD["layers"][0], "root_hash": "AB" * 32}]}), "root_hash"),
    (json.dumps({**GOOD, "layers": [{**GOOD["layers"][0], "hash_offset": "4096"}]}), "positive integer"),
    (json.dumps({**GOOD, "layers": [{**GOOD["layers"][0], "digest": "sha256:1"}]}), "not sha256"),
])
def test_a_malformed_index_is_refused_naming_the_file(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "index.json"
    path.write_text(text)
    with pytest.raises(LayerError, match=why) as err:
        L.read_index(path)
    assert str(path) in str(err.value)


JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-5, 2**40) | st.text(max_size=70),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                           st.sampled_from(["version", "layers", *L._LAYER_FIELDS, "x"]), inner, max_size=7),
                       max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=JSONISH | st.just(GOOD), garbage=st.binary(max_size=40))
def test_read_index_takes_any_file_and_only_raises_layer_error(tmp_path: Path, doc: Any, garbage: bytes) -> None:
    path = tmp_path / "index.json"
    for text in (json.dumps(doc).encode(), garbage):
        path.write_bytes(text)
        try:
            out = L.read_index(path)
        except LayerError:
            continue
        assert all(isinstance(x, Layer) for x in out)


# --- erofs: canonical xattr order -------------------------------------------------------------------------------------


def test_crc32c_is_the_kernels() -> None:
    from generator.erofs import crc32c_raw

    assert crc32c_raw(b"123456789") ^ 0xFFFFFFFF == 0xE3069283  # the CRC-32C check value (RFC 3720 B.4)


CAP = b"\x01\x00\x00\x02" + bytes(16)  # VFS_CAP_REVISION_2, no capabilities


def _xattr_tree(root: Path) -> None:
    for name in ("f", "g", "h"):
        p = root / "d" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(name.encode())
        for key in (["trusted.b", "user.z", "security.capability", "user.a"] if name != "h" else ["user.only"]):
            os.setxattr(p, key, CAP if key == "security.capability" else key.encode() * 3)
        os.utime(p, (7, 7))
    os.setxattr(root / "d", "trusted.overlay.opaque", b"y")
    os.setxattr(root / "d", "user.dir", b"1")
    for d in (root / "d", root):
        os.utime(d, (7, 7))


@needs_root
def test_xattr_order_no_longer_depends_on_the_host_filesystem(tmp_path: Path) -> None:
    from generator.erofs import canonical_xattrs

    images: list[bytes] = []
    for base in (tmp_path, Path("/dev/shm")):
        work = base / f"xattr-order-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            _xattr_tree(work / "t")
            img = tmp_path / f"{len(images)}.img"
            subprocess.run(["mkfs.erofs", "--quiet", "-x2147483647", "-U00000000-0000-4000-8000-000000000000",
                            str(img), str(work / "t")], env={**os.environ, "SOURCE_DATE_EPOCH": "7"}, check=True,
                           capture_output=True, timeout=60)
            canonical_xattrs(str(img))
            assert canonical_xattrs(str(img)) == 0  # idempotent
            images.append(img.read_bytes())
        finally:
            shutil.rmtree(work, ignore_errors=True)
    assert images[0] == images[1]
    m = tmp_path / "m"
    m.mkdir()
    run("mount", "-t", "erofs", "-o", "loop,ro", str(tmp_path / "0.img"), str(m))  # checksum still right
    try:
        assert os.listxattr(m / "d/f") == ["user.a", "user.z", "trusted.b", "security.capability"]
        assert os.getxattr(m / "d/g", "user.z") == b"user.z" * 3
        assert os.getxattr(m / "d", "trusted.overlay.opaque") == b"y"
    finally:
        run("umount", str(m))


@needs_root
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(1024, 8191), st.integers(1, 255)), min_size=1, max_size=6))
def test_a_damaged_image_gives_layer_error_or_nothing_else(tmp_path: Path, flips: list[tuple[int, int]]) -> None:
    from generator.erofs import canonical_xattrs

    good = tmp_path / "good.img"
    if not good.exists():
        work = tmp_path / "t"
        _xattr_tree(work)
        subprocess.run(["mkfs.erofs", "--quiet", "-x2147483647", str(good), str(work)], check=True,
                       capture_output=True, timeout=60)
    data = bytearray(good.read_bytes())
    for at, x in flips:
        if at < len(data):
            data[at] ^= x
    bad = tmp_path / "bad.img"
    bad.write_bytes(bytes(data))
    with contextlib.suppress(LayerError):
        assert canonical_xattrs(str(bad)) >= 0


# --- the tar reader --------------------------------------------------------------------------------------------------


def read_all_members(data: bytes, piece: int) -> list[tuple[Any, ...]]:
    from generator.tarstream import TarReader

    f = io.BytesIO(data)
    reader = TarReader(lambda n: f.read(min(n, piece)))  # short reads, as the decompressing stream gives them
    out = []
    for m in reader.members():
        body = b""
        if m.isreg():
            for _ in range(m.size + 1):
                chunk = reader.data(1 << 20)
                if not chunk:
                    break
                body += chunk
        out.append((m.name, m.kind, m.size, m.mode, m.uid, m.gid, int(m.mtime), m.linkname, body,
                    sorted(m.pax_headers.items())))
    return out


def tarfile_members(data: bytes) -> list[tuple[Any, ...]]:
    kinds = {v: k for k, v in TYPES.items()}
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8", errors="surrogateescape") as t:
        for m in t:
            body = t.extractfile(m).read() if m.isreg() else b""  # type: ignore[union-attr]
            out.append((m.name, kinds.get(m.type, "file"), m.size if m.isreg() else 0, m.mode, m.uid, m.gid,
                        int(m.mtime), m.linkname, body,
                        sorted((k, v) for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr."))))
    return out


TAR_NAMES = st.text(st.sampled_from("ab/.é-_ "), min_size=1, max_size=30) | st.text(
    st.sampled_from("xyz/"), min_size=100, max_size=300)  # long names: ustar prefix, GNU L, PAX path
TAR_ENTRIES = st.lists(st.fixed_dictionaries({
    "name": TAR_NAMES.filter(lambda n: n.strip("/")), "kind": st.sampled_from(["file", "dir", "sym", "link", "fifo"]),
    "data": st.binary(max_size=3000), "linkname": TAR_NAMES, "mode": st.integers(0, 0o7777),
    "uid": st.integers(0, 2**21 - 1) | st.integers(2**21, 2**32 - 2), "mtime": st.integers(0, 2**33),
    "pax": st.dictionaries(st.sampled_from(["SCHILY.xattr.user.a", "SCHILY.xattr.security.x"]),
                           st.text(max_size=20), max_size=2),
}), max_size=6)


@settings(max_examples=300, deadline=None)
@given(entries=TAR_ENTRIES, fmt=st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT]),
       piece=st.sampled_from([1, 7, 512, 4096, 1 << 20]))
def test_the_tar_reader_reads_what_tarfile_reads(entries: list[dict[str, Any]], fmt: int, piece: int) -> None:
    from generator.tarstream import TarFormatError

    if fmt != tarfile.PAX_FORMAT:
        for e in entries:
            e["pax"] = {}
    try:
        data = make_tar(entries, fmt=fmt)
    except ValueError:  # ustar cannot hold that name or number
        return
    try:
        ours = read_all_members(data, piece)
    except TarFormatError as e:
        raise AssertionError(f"refused a tar tarfile writes: {e}") from None
    def same(members: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:  # "a/" and "a" are one path to a layer
        return [(m[0].rstrip("/") or m[0], *m[1:]) for m in members]

    assert same(ours) == same(tarfile_members(data))


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=3000) | TAR_ENTRIES.map(make_tar).flatmap(
    lambda t: st.tuples(st.integers(0, max(len(t) - 1, 0)), st.integers(1, 255)).map(
        lambda f: t[:f[0]] + bytes([t[f[0]] ^ f[1]]) + t[f[0] + 1:] if t else t)))
def test_the_tar_reader_takes_any_bytes_and_raises_only_its_error(data: bytes) -> None:
    from generator.tarstream import TarFormatError

    try:
        members = read_all_members(data, 999)
    except TarFormatError:
        return
    for name, _kind, size, _mode, uid, gid, _mtime, _link, body, _pax in members:
        assert isinstance(name, str) and name and size >= 0 and uid >= 0 and gid >= 0
        assert len(body) <= size  # never more data than the header declared


def test_the_tar_reader_refuses_what_layers_do_not_use() -> None:
    from generator.tarstream import TarFormatError

    sparse = bytearray(make_tar([entry("s", data=b"x")], fmt=tarfile.GNU_FORMAT))
    sparse[156:157] = b"S"
    sparse[148:156] = b"%06o\0 " % (sum(sparse[:148]) + sum(sparse[156:512]) + 256)
    with pytest.raises(TarFormatError, match="not supported"):
        read_all_members(bytes(sparse), 512)
    with pytest.raises(TarFormatError, match="sparse"):
        read_all_members(make_tar([entry("s", data=b"x", pax={"GNU.sparse.major": "1"})]), 512)
    with pytest.raises(TarFormatError, match="chksum"):
        read_all_members(b"x" * 512, 512)
    bad = bytearray(make_tar([entry("a", data=b"x")]))
    bad[0] ^= 1
    with pytest.raises(TarFormatError, match="checksum mismatch"):
        read_all_members(bytes(bad), 512)


@needs_root
def test_the_bench_runs_and_its_conversions_agree(tmp_path: Path) -> None:
    from bench import generate as bench

    built = bench.build(tmp_path, layers=2, small=30, big_mib=1)
    figures = bench.figure_cold(built, tmp_path, repeat=2)  # two cold runs must give the same root hashes
    assert figures["layers"] == 2 and figures["cold_ratio"] > 0 and figures["peak_rss_mib"] > 0
