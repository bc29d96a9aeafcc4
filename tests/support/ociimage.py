"""Test images, built here: OCI layout directories from a few files per layer, and ways to publish them.

Why our own builder: tests need images whose every byte they know (to tamper with a blob, to expect a
digest, to compare a converted layer with its files) without reaching any outside registry. Everything is
deterministic (tar entries sorted, mtime 0, uid/gid 0, gzip mtime 0, no timestamps in the config), so the
same spec gives the same digests on any machine.

API (small on purpose; other helpers use it):

- ``File(data, mode=0o644, uid=0, gid=0)``, ``Dir(mode=0o755, uid=0, gid=0)``, ``Symlink(target)``,
  ``Hardlink(target)``, ``Device("char"|"block"|"fifo", major, minor)``: entries of a layer spec; plain
  ``bytes`` mean ``File(bytes)``. A layer spec is ``{path: entry}`` or a directory tree on disk (``Path``).
- ``build_image(dest, layers, *, tag="latest", compression="gzip", config=None, platforms=None) -> BuiltImage``
  writes an OCI layout at ``dest``. ``compression`` is one of ``gzip``/``zstd``/``none`` or one per layer.
  ``platforms=[("linux", "arm64"), ("linux", "amd64")]`` makes the tag point to an image index with one
  image per platform (same layers, configs differing in architecture).
- ``push(image, registry, name, tag, *, ca_file=None, creds=None, docker=False)`` copies the layout to a
  registry with skopeo (digests preserved, every platform; ``docker=True`` converts to Docker schema 2).
  ``Registry.push`` (tests/support/registry.py) fills in the host, CA and credentials.
- ``docker_archive(image, dest, name_tag)`` writes a ``docker save`` style tarball with skopeo.
- ``layer_tar(spec) -> bytes``: the uncompressed, deterministic tar of one layer spec.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPES = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
REF_NAME = "org.opencontainers.image.ref.name"  # OCI image-spec annotations.md


@dataclass(frozen=True)
class File:
    data: bytes
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Dir:
    mode: int = 0o755
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Symlink:
    target: str


@dataclass(frozen=True)
class Hardlink:
    target: str  # another entry's path in the same layer


@dataclass(frozen=True)
class Device:
    """A device node or FIFO (``kind`` is ``char``, ``block`` or ``fifo``): what a converter must refuse."""

    kind: str
    major: int = 0
    minor: int = 0


Entry = bytes | File | Dir | Symlink | Hardlink | Device
LayerSpec = Mapping[str, Entry] | Path


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    media_type: str
    size: int


@dataclass(frozen=True)
class BuiltImage:
    """What ``build_image`` wrote. ``manifest_digest`` is the linux/amd64 manifest's (or the only one's);
    ``top_digest`` is what the tag points to (the index when there are platforms)."""

    layout: Path
    tag: str
    manifest_digest: str
    config_digest: str
    layers: tuple[BlobInfo, ...]
    diff_ids: tuple[str, ...]
    index_digest: str | None = None
    manifests: Mapping[str, str] = field(default_factory=dict)  # "os/arch" -> manifest digest

    @property
    def top_digest(self) -> str:
        return self.index_digest or self.manifest_digest


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _entries(spec: LayerSpec) -> list[tuple[str, Entry]]:
    if isinstance(spec, Path):
        out: list[tuple[str, Entry]] = []
        for path in sorted(spec.rglob("*")):
            rel = path.relative_to(spec).as_posix()
            if path.is_symlink():
                out.append((rel, Symlink(str(path.readlink()))))
            elif path.is_dir():
                out.append((rel, Dir(path.stat().st_mode & 0o7777)))
            else:
                out.append((rel, File(path.read_bytes(), path.stat().st_mode & 0o7777)))
        return out
    return sorted(spec.items())


_DEVICE_TYPES = {"char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}


def layer_tar(spec: LayerSpec) -> bytes:
    """The layer's uncompressed tar: entries sorted by path, mtime 0, PAX format, owner 0:0 unless given.

    Names are written as given (minus a trailing ``/``): ``../x`` or ``/abs`` make the unsafe layers a
    converter must refuse; OCI whiteouts are plain entries (``dir/.wh.name``, ``dir/.wh..wh..opq``).
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, entry in _entries(spec):
            info = tarfile.TarInfo(name.rstrip("/") or name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if isinstance(entry, Dir):
                info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, entry.mode, entry.uid, entry.gid
                tar.addfile(info)
            elif isinstance(entry, Symlink | Hardlink):
                info.type = tarfile.SYMTYPE if isinstance(entry, Symlink) else tarfile.LNKTYPE
                info.linkname, info.mode = entry.target, 0o777 if isinstance(entry, Symlink) else 0o644
                tar.addfile(info)
            elif isinstance(entry, Device):
                info.type, info.mode = _DEVICE_TYPES[entry.kind], 0o644
                info.devmajor, info.devminor = entry.major, entry.minor
                tar.addfile(info)
            else:
                file = entry if isinstance(entry, File) else File(entry)
                info.size, info.mode, info.uid, info.gid = len(file.data), file.mode, file.uid, file.gid
                tar.addfile(info, io.BytesIO(file.data))
    return buf.getvalue()


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    if compression == "none":
        return data
    raise ValueError(f"unknown compression {compression!r}")


class _Layout:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs/sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def put(self, data: bytes) -> str:
        digest = _digest(data)
        (self.root / "blobs/sha256" / digest.split(":")[1]).write_bytes(data)
        return digest

    def put_json(self, doc: Any) -> tuple[str, int]:
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return self.put(data), len(data)


def build_image(
    dest: Path,
    layers: Sequence[LayerSpec],
    *,
    tag: str = "latest",
    compression: str | Sequence[str] = "gzip",
    config: Mapping[str, Any] | None = None,
    platforms: Sequence[tuple[str, str]] | None = None,
) -> BuiltImage:
    """Write an OCI image layout at ``dest`` (created) whose ``tag`` names the image (or index)."""
    kinds = [compression] * len(layers) if isinstance(compression, str) else list(compression)
    if len(kinds) != len(layers):
        raise ValueError("one compression per layer")
    layout = _Layout(dest)
    blobs: list[BlobInfo] = []
    diff_ids: list[str] = []
    for spec, kind in zip(layers, kinds, strict=True):
        tar = layer_tar(spec)
        diff_ids.append(_digest(tar))
        data = compress(tar, kind)
        blobs.append(BlobInfo(layout.put(data), LAYER_TYPES[kind], len(data)))

    def image(os_: str, arch: str) -> tuple[str, int, str]:
        cfg = {
            "architecture": arch,
            "os": os_,
            "config": dict(config or {}),
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        cfg_digest, cfg_size = layout.put_json(cfg)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cfg_digest, "size": cfg_size},
            "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in blobs],
        }
        digest, size = layout.put_json(manifest)
        return digest, size, cfg_digest

    if not platforms:
        digest, size, cfg_digest = image("linux", "amd64")
        top = {"mediaType": OCI_MANIFEST, "digest": digest, "size": size, "annotations": {REF_NAME: tag}}
        index_digest = None
        manifests = {"linux/amd64": digest}
        amd64 = (digest, cfg_digest)
    else:
        entries = []
        manifests = {}
        found: tuple[str, str] | None = None
        for os_, arch in platforms:
            digest, size, cfg_digest = image(os_, arch)
            manifests[f"{os_}/{arch}"] = digest
            entries.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest,
                    "size": size,
                    "platform": {"os": os_, "architecture": arch},
                }
            )
            if (os_, arch) == ("linux", "amd64"):
                found = (digest, cfg_digest)
        index_digest, index_size = layout.put_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
        top = {"mediaType": OCI_INDEX, "digest": index_digest, "size": index_size, "annotations": {REF_NAME: tag}}
        amd64 = found or (entries[0]["digest"], "")  # type: ignore[assignment]
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]}))
    return BuiltImage(dest, tag, amd64[0], amd64[1], tuple(blobs), tuple(diff_ids), index_digest, manifests)


def _skopeo(*args: str) -> None:
    proc = subprocess.run(
        ["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"skopeo {' '.join(args)} failed: {proc.stderr.strip()}")


def push(
    image: BuiltImage | Path,
    registry: str,
    name: str,
    tag: str,
    *,
    ca_file: Path | None = None,
    creds: str | None = None,
    docker: bool = False,
    src_tag: str | None = None,
) -> None:
    """Copy ``image`` (or an OCI layout dir and its ``src_tag``) to ``registry`` as ``name:tag``, every platform.

    ``registry`` is ``127.0.0.1:PORT`` or a URL of it. Plain HTTP unless ``ca_file`` is given (then TLS
    verified against it); ``creds`` is ``user:password``. Digests are preserved, except with ``docker=True``:
    skopeo then converts to Docker schema 2 manifests (and a manifest list), which changes every digest
    but the layers'.
    """
    host = registry.split("://", 1)[-1].rstrip("/")
    layout, source_tag = (image.layout, image.tag) if isinstance(image, BuiltImage) else (image, src_tag or "latest")
    with tempfile.TemporaryDirectory(prefix="cocoon-skopeo-") as tmp:
        args = ["copy", "--all", "--quiet"]
        args += ["--format", "v2s2"] if docker else ["--preserve-digests"]
        if ca_file is not None:
            shutil.copy(ca_file, Path(tmp) / "ca.crt")  # skopeo reads every *.crt in the dir as a CA
            args += ["--dest-cert-dir", tmp]
        else:
            args += ["--dest-tls-verify=false"]
        if creds is not None:
            args += ["--dest-creds", creds]
        _skopeo(*args, f"oci:{layout}:{source_tag}", f"docker://{host}/{name}:{tag}")


def docker_archive(image: BuiltImage, dest: Path, name_tag: str) -> Path:
    """Write ``image`` (its linux/amd64 part) as a ``docker save`` tarball at ``dest``."""
    _skopeo("copy", "--quiet", f"oci:{image.layout}:{image.tag}", f"docker-archive:{dest}:{name_tag}")
    return dest
