"""OCI/Docker image documents read strictly, and blob streams checked against their digests.

Why one module: a registry, an OCI layout directory and a docker-archive tarball hand out the same
documents (indexes, manifests, configs) and the same content-addressed blobs; the parsing and the digest
checks must be one code path, so a source cannot be more trusting than another. Every document comes from
outside: strict JSON (duplicate keys refused), sizes bounded, media types and digests checked, anything
else is an ``ImageError`` naming the image and what is wrong.

Media type names: OCI image-spec (media-types.md, manifest.md, image-index.md, config.md) and Docker's
image manifest v2 schema 2 (distribution/distribution docs/spec/manifest-v2-2.md).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import re
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from generator.errors import ImageError
from generator.model import LAYER_MEDIA_TYPES, Blob
from verifier import strictjson

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
#: what a client asks a registry for (the Accept header): every kind of document we can read
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))

#: bound on manifests, indexes and configs (real ones are a few KiB; distribution caps manifests at 4 MiB)
MAX_DOCUMENT = 4 * 1024 * 1024
#: the only platform cocoon's guests run
PLATFORM = ("linux", "amd64")

#: read size between a source and the digest check (large reads keep the per-call cost small)
BUFFER = 1 << 20

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(value: object, where: str) -> str:
    """A ``sha256:<64 lowercase hex>`` digest, or ImageError (other algorithms are not supported)."""
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise ImageError(f"{where}: digest {str(value)[:80]!r} is not sha256:<64 lowercase hex>")
    return value


@dataclass(frozen=True)
class Descriptor:
    """An entry of an index: a manifest for one platform."""

    media_type: str
    digest: str
    size: int
    platform: tuple[str, str, str] | None  # (os, architecture, variant or "")

    @property
    def platform_name(self) -> str:
        if self.platform is None:
            return "(no platform)"
        os_, arch, variant = self.platform
        return f"{os_}/{arch}" + (f"/{variant}" if variant else "")


@dataclass(frozen=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Blob
    layers: tuple[Blob, ...]


def _field(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ImageError(f"{where}: field {key!r} is missing or not a {getattr(kind, '__name__', kind)}")
    return value


def _size(doc: Mapping[str, Any], where: str) -> int:
    size = _field(doc, "size", int, where)
    if size < 0:
        raise ImageError(f"{where}: field 'size' is negative")
    return int(size)


def _blob(doc: object, where: str) -> Blob:
    if not isinstance(doc, dict):
        raise ImageError(f"{where}: not a JSON object")
    media_type = _field(doc, "mediaType", str, where)
    return Blob(check_digest(doc.get("digest"), where), media_type, _size(doc, where))


def load_json(data: bytes, where: str) -> dict[str, Any]:
    """Strict JSON object (duplicate keys, NaN and non-UTF-8 refused) of at most MAX_DOCUMENT bytes."""
    if len(data) > MAX_DOCUMENT:
        raise ImageError(f"{where}: {len(data)} bytes, more than the {MAX_DOCUMENT} allowed")
    try:
        doc = strictjson.loads(data)
    except (ValueError, RecursionError) as e:
        raise ImageError(f"{where}: not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ImageError(f"{where}: not a JSON object")
    return doc


def parse_document(data: bytes, media_type: str | None, where: str) -> Index | Manifest:
    """An index/manifest list or an image manifest. ``media_type`` is what the transport said (Content-Type,
    the descriptor that pointed here); the document's own ``mediaType`` must agree with it when both are
    known kinds. Without either, the shape decides (OCI makes ``mediaType`` optional)."""
    doc = load_json(data, where)
    if doc.get("schemaVersion") != 2 or isinstance(doc.get("schemaVersion"), bool):
        raise ImageError(
            f"{where}: schemaVersion {str(doc.get('schemaVersion'))[:20]} is not 2 (schema 1 is not supported)"
        )
    own = doc.get("mediaType")
    if own is not None and not isinstance(own, str):
        raise ImageError(f"{where}: field 'mediaType' is not a string")
    known = INDEX_TYPES | MANIFEST_TYPES
    hint = media_type.split(";", 1)[0].strip() if media_type else None
    if own is not None and hint in known and own != hint:
        raise ImageError(f"{where}: document says mediaType {own!r} but was served as {hint!r}")
    kind = own or (hint if hint in known else None)
    if kind is None:
        kind = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if kind in INDEX_TYPES:
        entries = _field(doc, "manifests", list, where)
        out = []
        for i, entry in enumerate(entries):
            at = f"{where}: manifests[{i}]"
            blob = _blob(entry, at)
            platform = entry.get("platform")
            plat: tuple[str, str, str] | None = None
            if platform is not None:
                if not isinstance(platform, dict):
                    raise ImageError(f"{at}: field 'platform' is not an object")
                variant = platform.get("variant", "")
                if not isinstance(variant, str):
                    raise ImageError(f"{at}: platform field 'variant' is not a string")
                plat = (_field(platform, "os", str, at), _field(platform, "architecture", str, at), variant)
            out.append(Descriptor(blob.media_type, blob.digest, blob.size, plat))
        return Index(kind, tuple(out))
    if kind not in MANIFEST_TYPES:
        raise ImageError(f"{where}: unsupported manifest media type {kind!r}")
    config = _blob(doc.get("config"), f"{where}: config")
    if config.media_type not in CONFIG_TYPES:
        raise ImageError(f"{where}: config media type {config.media_type!r} is not an image config (an artifact?)")
    layers = []
    for i, entry in enumerate(_field(doc, "layers", list, where)):
        blob = _blob(entry, f"{where}: layers[{i}]")
        if blob.media_type not in LAYER_MEDIA_TYPES:
            raise ImageError(f"{where}: layers[{i}] ({blob.digest}): unsupported layer media type {blob.media_type!r}")
        layers.append(blob)
    return Manifest(kind, config, tuple(layers))


def pick_platform(index: Index, where: str) -> Descriptor:
    """The linux/amd64 image manifest of an index (the first one, any variant), or an error listing what is there."""
    for entry in index.manifests:
        if entry.platform is not None and entry.platform[:2] == PLATFORM and entry.media_type in MANIFEST_TYPES:
            return entry
    present = ", ".join(sorted({e.platform_name for e in index.manifests})) or "none"
    raise ImageError(f"{where}: no linux/amd64 image in the index (platforms present: {present})")


def check_config(config: Mapping[str, Any], manifest: Manifest, where: str) -> None:
    """The config must be an amd64 Linux image's and name one diff_id per layer."""
    os_, arch = config.get("os"), config.get("architecture")
    if (os_, arch) != PLATFORM:
        raise ImageError(f"{where}: the image is {str(os_)[:20]}/{str(arch)[:20]}, not linux/amd64")
    rootfs = config.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers" or not isinstance(rootfs.get("diff_ids"), list):
        raise ImageError(f"{where}: field rootfs is not {{type: layers, diff_ids: [...]}}")
    diff_ids = rootfs["diff_ids"]
    for i, d in enumerate(diff_ids):
        check_digest(d, f"{where}: rootfs.diff_ids[{i}]")
    if len(diff_ids) != len(manifest.layers):
        raise ImageError(f"{where}: {len(diff_ids)} rootfs.diff_ids for {len(manifest.layers)} layers")
    try:  # a "\ud800" escape parses to a lone surrogate, which the policy (UTF-8) cannot hold
        json.dumps(config, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ImageError(f"{where}: a string in the config holds a lone surrogate (a \\uD800-\\uDFFF escape), "
                         "which is not text") from None


class Store(Protocol):
    """Where an image's documents and blobs come from (a registry repository, a layout, an archive)."""

    where: str  # names the source in messages ("registry 127.0.0.1:5000 repository web")

    def manifest(self, ref: str) -> tuple[bytes, str | None]:
        """The bytes of the document a tag or digest names (at most MAX_DOCUMENT) and its media type if told."""
        ...

    def blob(self, blob: Blob) -> AbstractContextManager[BinaryIO]:
        """A raw stream of the blob's bytes (not yet checked)."""
        ...


class DigestReader(io.RawIOBase):
    """Hashes what is read; at EOF the byte count and digest must be the blob's, else ImageError.

    Reading past the declared size fails at once (a registry cannot make us swallow an endless blob).
    Transport errors while reading (timeouts, truncated bodies) become ImageError too.
    """

    def __init__(self, raw: BinaryIO, blob: Blob, image: str) -> None:
        super().__init__()
        self._raw, self._blob, self._image = raw, blob, image
        self._hash = hashlib.sha256()
        self._count = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._read_into(buffer)

    def _read_into(self, buffer: Any) -> int:  # readinto, also after close() (for drain)
        if self._done:
            return 0
        view = memoryview(buffer).cast("B")
        # at most one byte past the declared size is asked for: enough to notice an overlong blob
        view = view[: max(1, min(len(view), self._blob.size - self._count + 1))]
        try:
            readinto = getattr(self._raw, "readinto", None)
            if readinto is not None:  # files and HTTP responses: no copy
                n = readinto(view) or 0
            else:
                data = self._raw.read(len(view))
                n = len(data)
                view[:n] = data
        except (OSError, http.client.HTTPException, EOFError) as e:
            raise ImageError(f"{self._image}: blob {self._blob.digest}: reading failed: {e}") from None
        if n == 0:
            self._finish()
            return 0
        self._count += n
        if self._count > self._blob.size:
            raise ImageError(f"{self._image}: blob {self._blob.digest}: more than the expected {self._blob.size} bytes")
        self._hash.update(view[:n])
        return n

    def drain(self) -> None:
        """Read (and check) whatever the consumer left, straight from the source: bytes already buffered
        above this reader were hashed when they passed, so every byte counts exactly once."""
        chunk = bytearray(1 << 20)
        while not self._done:
            self._read_into(chunk)

    def _finish(self) -> None:
        got = "sha256:" + self._hash.hexdigest()
        if self._count != self._blob.size:
            raise ImageError(
                f"{self._image}: blob {self._blob.digest}: size mismatch: expected {self._blob.size} bytes, "
                f"got {self._count}"
            )
        if got != self._blob.digest:
            raise ImageError(f"{self._image}: blob digest mismatch: expected {self._blob.digest}, got {got}")
        self._done = True


def verified_stream(raw: BinaryIO, blob: Blob, image: str) -> BinaryIO:
    """``raw`` wrapped: buffered reads of any size, every byte counted into the digest check."""
    return io.BufferedReader(DigestReader(raw, blob, image), buffer_size=BUFFER)


def read_document(raw: BinaryIO, blob: Blob, image: str) -> bytes:
    """A small blob (a config) read whole and verified, refused beyond MAX_DOCUMENT."""
    if blob.size > MAX_DOCUMENT:
        raise ImageError(f"{image}: blob {blob.digest}: {blob.size} bytes, more than the {MAX_DOCUMENT} allowed")
    return verified_stream(raw, blob, image).read()
