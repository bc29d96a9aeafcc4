"""Images from files: OCI image layout directories and ``docker save`` tarballs, as generator.oci Stores.

Why: a developer often has the image on disk (built by buildah/umoci, saved by docker) and no registry;
the generator must pin and convert it the same way, with the same checks. Both sources hand out the
same documents and blobs a registry would, so generator.images treats them alike.

Formats: OCI image-spec image-layout.md (``oci-layout`` with ``imageLayoutVersion``, ``index.json``,
``blobs/<alg>/<hex>``, tags as the ``org.opencontainers.image.ref.name`` annotation) and Docker's
``docker save`` format (moby image/spec: ``manifest.json`` = ``[{"Config", "RepoTags", "Layers"}]``,
paths inside the tar; layers uncompressed tars). A docker archive has no manifest of its own, so one is
derived (Docker schema 2, canonical JSON: sorted keys, no spaces) from the digests of its members; its digest
is what such an image is pinned to. Archives that carry an OCI layout (Docker 25+ writes ``index.json``
and ``oci-layout`` too) are read as that layout. Archives must be uncompressed tars (what ``docker save``
writes), so a blob is a slice of the file, read without unpacking anything.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from generator.errors import ImageError
from generator.model import Blob
from generator.oci import DOCKER_CONFIG, DOCKER_MANIFEST, MAX_DOCUMENT, check_digest, digest_of, load_json

REF_NAME = "org.opencontainers.image.ref.name"
_GZIP, _ZSTD = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"


class _Files(Protocol):
    where: str

    def read(self, name: str) -> bytes: ...  # a small file, at most MAX_DOCUMENT bytes

    def open(self, name: str) -> Any: ...  # context manager yielding a binary stream


def safe_member(name: str, where: str) -> str:
    """A relative path without ``..``, NUL or an absolute start, normalised; ImageError otherwise."""
    if not name or "\0" in name or name.startswith("/") or "\\" in name:
        raise ImageError(f"{where}: unsafe path {name[:100]!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ImageError(f"{where}: unsafe path {name[:100]!r}")
    return "/".join(parts)


class _Directory:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = f"OCI layout {root}"

    def _path(self, name: str) -> Path:
        path = self.root / safe_member(name, self.where)
        try:
            st = path.stat()
        except OSError:
            raise ImageError(f"{self.where}: {name} is missing") from None
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"{self.where}: {name} is not a regular file")
        return path

    def read(self, name: str) -> bytes:
        path = self._path(name)
        with path.open("rb") as f:
            data = f.read(MAX_DOCUMENT + 1)
        if len(data) > MAX_DOCUMENT:
            raise ImageError(f"{self.where}: {name}: more than {MAX_DOCUMENT} bytes")
        return data

    @contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        with self._path(name).open("rb") as f:
            yield f


class _Slice(io.RawIOBase):
    """``size`` bytes of ``f`` from where it stands."""

    def __init__(self, f: io.BufferedIOBase, size: int) -> None:
        super().__init__()
        self._f, self._left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")[: self._left]
        n = self._f.readinto(view) or 0 if len(view) else 0
        self._left -= n
        return n


class _Tar:
    """An uncompressed tar read by member offsets (indexed once; every member name checked)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = f"archive {path}"
        self._members: dict[str, tarfile.TarInfo] = {}
        try:
            with path.open("rb") as f:
                head = f.read(4)
                if head[:2] == _GZIP or head == _ZSTD:
                    raise ImageError(f"{self.where}: compressed; give the uncompressed tar `docker save` writes")
            with tarfile.open(path, mode="r:") as tar:
                for info in tar:
                    if info.isdir() and info.name in (".", "./"):
                        continue  # the archive's root, as `tar -C DIR .` writes it
                    name = safe_member(info.name, f"{self.where}: member")
                    if name in self._members:
                        raise ImageError(f"{self.where}: member {name} appears twice")
                    self._members[name] = info
        except (OSError, tarfile.TarError, UnicodeError) as e:
            raise ImageError(f"{self.where}: not a readable tar: {e}") from None

    def _member(self, name: str) -> tarfile.TarInfo:
        """The regular member at ``name``, through at most 8 links inside the archive (docker save links a
        layer another image of the same archive already has)."""
        path = safe_member(name, self.where)
        for _ in range(8):
            info = self._members.get(path)
            if info is None:
                raise ImageError(f"{self.where}: {name} is missing")
            if info.issym():
                path = safe_member(
                    posixpath.normpath(posixpath.join(posixpath.dirname(path), info.linkname)), self.where
                )
            elif info.islnk():
                path = safe_member(info.linkname, self.where)
            else:
                break
        else:
            raise ImageError(f"{self.where}: {name}: too many links")
        if not info.isreg() or info.sparse is not None:
            raise ImageError(f"{self.where}: {name} is not a regular file")
        return info

    def has(self, name: str) -> bool:
        return name in self._members

    def read(self, name: str) -> bytes:
        if self._member(name).size > MAX_DOCUMENT:
            raise ImageError(f"{self.where}: {name}: more than {MAX_DOCUMENT} bytes")
        with self.open(name) as f:
            data: bytes = f.read()
            return data

    @contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        info = self._member(name)
        with self.path.open("rb") as f:
            f.seek(info.offset_data)
            yield io.BufferedReader(_Slice(f, info.size), buffer_size=1 << 20)


@dataclass(frozen=True)
class _Entry:
    digest: str
    media_type: str
    size: int
    tag: str | None


class OciLayoutStore:
    """An OCI image layout (a directory, or inside a docker archive) as a Store; ``tag`` picks the entry of
    index.json (by its ref.name annotation; without a tag, or when the only entry has no tag, the only one)."""

    def __init__(self, files: _Files, tag: str | None) -> None:
        self._files = files
        self.where = files.where
        self.tag = tag
        layout = load_json(files.read("oci-layout"), f"{self.where}: oci-layout")
        if not isinstance(layout.get("imageLayoutVersion"), str):
            raise ImageError(f"{self.where}: oci-layout has no imageLayoutVersion")
        index = load_json(files.read("index.json"), f"{self.where}: index.json")
        entries = index.get("manifests")
        if not isinstance(entries, list):
            raise ImageError(f"{self.where}: index.json: field 'manifests' is missing or not a list")
        self._entries = [self._entry(e, i) for i, e in enumerate(entries)]

    def _entry(self, doc: object, i: int) -> _Entry:
        where = f"{self.where}: index.json manifests[{i}]"
        if not isinstance(doc, dict):
            raise ImageError(f"{where}: not an object")
        media_type, size, annotations = doc.get("mediaType"), doc.get("size"), doc.get("annotations", {})
        if not isinstance(media_type, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ImageError(f"{where}: mediaType/size missing or malformed")
        if not isinstance(annotations, dict):
            raise ImageError(f"{where}: annotations is not an object")
        tag = annotations.get(REF_NAME)
        return _Entry(check_digest(doc.get("digest"), where), media_type, size, tag if isinstance(tag, str) else None)

    def _pick(self) -> _Entry:
        if self.tag is None:
            if len(self._entries) != 1:
                raise ImageError(f"{self.where}: {len(self._entries)} images in index.json; name one by tag")
            return self._entries[0]
        found = [e for e in self._entries if e.tag == self.tag]
        if not found and len(self._entries) == 1 and self._entries[0].tag is None:
            return self._entries[0]  # one untagged image: unambiguous, whatever tag the reference wrote
        if len(found) != 1:
            tags = ", ".join(sorted({e.tag for e in self._entries if e.tag})) or "none"
            raise ImageError(
                f"{self.where}: tag {self.tag!r} names {len(found)} images in index.json (tags present: {tags})"
            )
        return found[0]

    def _blob_name(self, digest: str) -> str:
        return "blobs/sha256/" + check_digest(digest, self.where).split(":", 1)[1]

    def manifest(self, ref: str) -> tuple[bytes, str | None]:
        if ref.startswith("sha256:"):
            known = [e.media_type for e in self._entries if e.digest == ref]
            return self._files.read(self._blob_name(ref)), known[0] if known else None
        entry = self._pick()
        data = self._files.read(self._blob_name(entry.digest))
        if len(data) != entry.size or digest_of(data) != entry.digest:
            raise ImageError(f"{self.where}: blob {entry.digest} does not match its digest/size in index.json")
        return data, entry.media_type

    def blob(self, blob: Blob) -> Any:
        return self._files.open(self._blob_name(blob.digest))


class DockerArchiveStore:
    """A ``docker save`` tarball as a Store. ``repo_tag`` (``name:tag``) picks among several images."""

    def __init__(self, tar: _Tar, repo_tag: str | None) -> None:
        self._tar = tar
        self.where = tar.where
        doc: Any = None
        try:
            from verifier import strictjson

            doc = strictjson.loads(tar.read("manifest.json"))
        except (ValueError, RecursionError) as e:
            raise ImageError(f"{self.where}: manifest.json: not valid JSON: {e}") from None
        if not isinstance(doc, list) or not doc:
            raise ImageError(f"{self.where}: manifest.json is not a non-empty list")
        entry = self._pick(doc, repo_tag)
        config_name = entry.get("Config")
        layer_names = entry.get("Layers")
        if not isinstance(config_name, str) or not isinstance(layer_names, list):
            raise ImageError(f"{self.where}: manifest.json: Config/Layers missing or malformed")
        self._names: dict[str, str] = {}
        config = self._describe(config_name, DOCKER_CONFIG)
        layers = [self._describe(n, None) for n in layer_names]
        doc_out = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": config.media_type, "digest": config.digest, "size": config.size},
            "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in layers],
        }
        self._manifest = json.dumps(doc_out, sort_keys=True, separators=(",", ":")).encode()

    def _pick(self, doc: list[Any], repo_tag: str | None) -> Mapping[str, Any]:
        if len(doc) == 1 and isinstance(doc[0], dict):
            return doc[0]
        found = [e for e in doc if isinstance(e, dict) and repo_tag in (e.get("RepoTags") or [])]
        if repo_tag is None or len(found) != 1:
            raise ImageError(f"{self.where}: {len(doc)} images in manifest.json and {repo_tag!r} names {len(found)}")
        return found[0]

    def _describe(self, name: object, media_type: str | None) -> Blob:
        """Digest a member (streamed) and remember which member has that digest."""
        import hashlib

        if not isinstance(name, str):
            raise ImageError(f"{self.where}: manifest.json: a path is not a string")
        member = safe_member(name, f"{self.where}: manifest.json path")
        h, size, head = hashlib.sha256(), 0, b""
        with self._tar.open(member) as f:
            while chunk := f.read(1 << 20):
                if not head:
                    head = chunk[:4]
                h.update(chunk)
                size += len(chunk)
        if media_type is None:
            suffix = ".gzip" if head[:2] == _GZIP else ".zstd" if head == _ZSTD else ""
            media_type = "application/vnd.docker.image.rootfs.diff.tar" + suffix
        digest = "sha256:" + h.hexdigest()
        self._names[digest] = member
        return Blob(digest, media_type, size)

    def manifest(self, ref: str) -> tuple[bytes, str | None]:
        return self._manifest, DOCKER_MANIFEST

    def blob(self, blob: Blob) -> Any:
        member = self._names.get(blob.digest)
        if member is None:
            raise ImageError(f"{self.where}: no member has digest {blob.digest}")
        return self._tar.open(member)


def open_layout(path: Path, tag: str | None) -> OciLayoutStore:
    """An OCI layout directory (``oci:DIR[:TAG]``)."""
    if not path.is_dir():
        raise ImageError(f"OCI layout {path}: not a directory")
    return OciLayoutStore(_Directory(path), tag)


def open_docker_archive(path: Path, repo_tag: str | None) -> OciLayoutStore | DockerArchiveStore:
    """A ``docker save`` tarball (``docker-archive:FILE``); one carrying an OCI layout is read as that."""
    if not os.path.isfile(path):
        raise ImageError(f"archive {path}: not a file")
    tar = _Tar(path)
    if tar.has("oci-layout") and tar.has("index.json"):
        tag = repo_tag.rsplit(":", 1)[1] if repo_tag and ":" in posixpath.basename(repo_tag) else None
        return OciLayoutStore(tar, tag)
    return DockerArchiveStore(tar, repo_tag)
