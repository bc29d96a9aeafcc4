"""Image references in, pinned images out: the generator's image stage.

``resolve(reference, sources)`` turns what a pod spec names (``web:1.0``, ``127.0.0.1:5000/web@sha256:...``)
into a ``ResolvedImage``: the digest the reference resolved to (the index's when a tag names an index), the
linux/amd64 manifest, the image config and the layer blobs, bottom first. Blobs are read later, through
``ResolvedImage.open_blob``, each checked against its digest while it streams, so a converter never sees
a byte that was not verified by the time it reaches EOF.

Why a front of its own: where an image comes from (a registry over TLS or loopback HTTP, an OCI layout
directory, a docker archive) is configuration (``ImageSources``); what is checked is the same for all
(generator.oci). There is no default registry: Docker's ``docker.io`` is not reachable from where cocoon
runs its tests and silently pulling from it would pin whatever it serves, so a reference without a
registry host must be mapped to a local source.

Reference grammar: distribution/distribution reference/regexp.go (name components, domain, tag, digest,
255-character names) and reference/normalize.go (a first component is a registry host when it contains
``.`` or ``:`` or is ``localhost``).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

from generator import oci
from generator.errors import ImageError
from generator.model import Blob
from generator.ocilayout import open_docker_archive, open_layout
from generator.registry import Credentials, RegistryClient, RegistryStore
from verifier import strictjson

NAME_MAX = 255
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_ANY_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")


@dataclass(frozen=True)
class Reference:
    """A parsed image reference. ``registry`` is ``host[:port]`` or None (no host written)."""

    registry: str | None
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def parse_reference(text: str) -> Reference:
    """Parse as Docker/OCI do; ImageError naming the reference and the part that is wrong."""
    if not isinstance(text, str) or not text or len(text) > 1024:
        raise ImageError(f"image reference {str(text)[:80]!r}: empty or too long")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.rsplit("@", 1)
        if not _ANY_DIGEST.fullmatch(digest):
            raise ImageError(f"image reference {text!r}: {digest[:80]!r} is not a digest")
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise ImageError(f"image reference {text!r}: only sha256 digests (64 lowercase hex) are supported")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise ImageError(f"image reference {text!r}: {tag[:80]!r} is not a valid tag")
    if not rest:
        raise ImageError(f"image reference {text!r}: no repository name")
    registry, path = None, rest
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        registry, path = first, remainder
        if not _DOMAIN.fullmatch(registry):
            raise ImageError(f"image reference {text!r}: {registry[:80]!r} is not a registry host[:port]")
    for component in path.split("/"):
        if not _COMPONENT.fullmatch(component):
            raise ImageError(
                f"image reference {text!r}: repository component {component[:80]!r} is not lowercase "
                "letters, digits and separators"
            )
    if len(rest) > NAME_MAX:
        raise ImageError(f"image reference {text!r}: name longer than {NAME_MAX} characters")
    return Reference(registry, path, tag, digest)


def parse_auth_config(data: bytes, where: str) -> dict[str, Credentials]:
    """A docker-style ``config.json``: ``{"auths": {"host:port": {"auth": base64("user:pass")}}}`` (or
    ``username``/``password`` fields). Keys may carry a scheme and path (``https://host:port/v1/``), as
    docker writes them. Credential helpers (``credsStore``, ``credHelpers``) are not run."""
    doc = oci.load_json(data, where)
    auths = doc.get("auths", {})
    if not isinstance(auths, dict):
        raise ImageError(f"{where}: field auths is not an object")
    out: dict[str, Credentials] = {}
    for key, entry in auths.items():
        at = f"{where}: auths[{strictjson.name(key)}]"
        host = re.sub(r"^[a-z]+://", "", key).split("/", 1)[0]
        if not isinstance(entry, dict):
            raise ImageError(f"{at}: not an object")
        auth = entry.get("auth")
        if isinstance(auth, str) and auth:
            try:
                user, sep, password = base64.b64decode(auth, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, ValueError):  # ValueError: non-ASCII text (UnicodeDecodeError is one)
                raise ImageError(f"{at}: auth is not base64 of user:password") from None
            if not sep:
                raise ImageError(f"{at}: auth is not base64 of user:password")
        else:
            named, secret = entry.get("username"), entry.get("password")
            if not isinstance(named, str) or not isinstance(secret, str):
                continue  # an entry without credentials (docker leaves {} for helper-managed hosts)
            user, password = named, secret
        if not user or any(c in user + password for c in "\r\n\0"):
            raise ImageError(f"{at}: empty user name or control characters")
        if host in out:
            raise ImageError(f"{at}: host {host} named twice")
        out[host] = Credentials(user, password)
    return out


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class ImageSources:
    """Where images come from and how to reach them (keys are ``host:port`` as references write them).

    - ``ca_files``: PEM CA bundle per registry (TLS is always verified; without an entry, the system's CAs)
    - ``insecure``: registries allowed plain HTTP; honoured only for 127.0.0.1, localhost and [::1]
    - ``auth_file``: a docker-style config.json; ``credentials``: (user, password) per registry, which win
    - ``local``: reference -> ``oci:DIR[:TAG]`` or ``docker-archive:FILE``; a key matches the reference as
      written, its ``name:tag``, or its name (then the reference's tag picks the image in the layout)
    """

    ca_files: Mapping[str, str] = field(default_factory=dict)
    insecure: frozenset[str] = frozenset()
    auth_file: str | None = None
    credentials: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    local: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ca_files", _frozen({k: str(v) for k, v in self.ca_files.items()}))
        object.__setattr__(self, "insecure", frozenset(self.insecure))
        object.__setattr__(self, "credentials", _frozen(self.credentials))
        object.__setattr__(self, "local", _frozen(self.local))

    def credentials_for(self, host: str) -> Credentials | None:
        if host in self.credentials:
            user, password = self.credentials[host]
            return Credentials(user, password)
        if self.auth_file is None:
            return None
        try:
            data = Path(self.auth_file).read_bytes()
        except OSError as e:
            raise ImageError(f"auth file {self.auth_file}: {e.strerror}") from None
        return parse_auth_config(data, f"auth file {self.auth_file}").get(host)

    def local_source(self, ref: Reference, text: str) -> str | None:
        for key in (text, f"{ref.name}:{ref.tag or 'latest'}", ref.name):
            if key in self.local:
                return self.local[key]
        if ref.digest is not None:  # a pinned reference (cocoon generate's own output): a source of that name
            for key, spec in sorted(self.local.items()):  # serves it; the digest is verified on the way in
                try:
                    if parse_reference(key).name == ref.name:
                        return spec
                except ImageError:
                    continue
        return None


@dataclass(frozen=True)
class ResolvedImage:
    """An image pinned: ``pinned`` is ``repository@<digest the reference resolved to>`` (an index's digest when
    the tag names one); ``manifest_digest`` is the linux/amd64 image manifest's."""

    reference: str
    pinned: str
    manifest_digest: str
    config: dict[str, Any]
    config_digest: str
    layers: tuple[Blob, ...]
    _store: oci.Store = field(repr=False, compare=False)
    _progress: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    def open_blob(self, blob: Blob) -> AbstractContextManager[BinaryIO]:
        """A stream of one of this image's blobs. read() hashes as it goes and raises ImageError at EOF when
        the size or digest is not the manifest's; leaving the ``with`` normally reads (and checks) whatever
        the caller left unread, so a blob is never used unverified."""
        return self._open(blob)

    @contextmanager
    def _open(self, blob: Blob) -> Iterator[BinaryIO]:
        if blob not in self.layers:
            raise ImageError(f"{self.reference}: blob {blob.digest} is not a layer of this image")
        if self._progress is not None:
            self._progress(f"{self.reference}: reading layer {blob.digest} ({blob.size} bytes)")
        with self._store.blob(blob) as raw:
            reader = oci.DigestReader(raw, blob, self.reference)
            yield io.BufferedReader(reader, buffer_size=oci.BUFFER)
            reader.drain()


def _store_for(ref: Reference, text: str, sources: ImageSources) -> tuple[oci.Store, str]:
    """The store an image comes from and the ref (tag or digest) to ask it for."""
    ask = ref.digest or ref.tag or "latest"
    spec = sources.local_source(ref, text)
    if spec is not None:
        if spec.startswith("oci:"):
            path, tag = spec[4:], None
            head, sep, tail = path.rpartition(":")
            if sep and "/" not in tail and _TAG.fullmatch(tail):
                path, tag = head, tail
            store: oci.Store = open_layout(Path(path), tag or ref.tag)
        elif spec.startswith("docker-archive:"):
            store = open_docker_archive(Path(spec[len("docker-archive:") :]), f"{ref.name}:{ref.tag or 'latest'}")
        else:
            raise ImageError(f"{text}: local source {spec[:100]!r} is neither oci:DIR[:TAG] nor docker-archive:FILE")
        return store, ask  # a layout picks by its own tag (chosen when opened) unless ``ask`` is a digest
    if ref.registry is None:
        raise ImageError(
            f"{text}: no registry host in the reference and no local source for it "
            "(docker.io is not a default here: write host[:port]/name, or map it to oci:DIR / docker-archive:FILE)"
        )
    client = RegistryClient(
        ref.registry,
        ca_files=sources.ca_files,
        insecure=sources.insecure,
        credentials=sources.credentials_for(ref.registry),
        timeout=sources.timeout,
    )
    return RegistryStore(client, ref.repository), ask


def resolve_store(
    text: str, name: str, store: oci.Store, ask: str, progress: Callable[[str], None] | None = None
) -> ResolvedImage:
    """Walk one store from ``ask`` (a tag, or a digest that is then verified) to the amd64 image."""
    say = progress or (lambda _msg: None)
    where = f"{text} ({store.where})"
    data, media_type = store.manifest(ask)
    top = oci.digest_of(data)
    if ask.startswith("sha256:") and top != ask:
        raise ImageError(f"{where}: manifest digest mismatch: expected {ask}, got {top}")
    doc = oci.parse_document(data, media_type, f"{where}: manifest {ask}")
    manifest_digest = top
    if isinstance(doc, oci.Index):
        entry = oci.pick_platform(doc, f"{where}: index {top}")
        data, media_type = store.manifest(entry.digest)
        got = oci.digest_of(data)
        if got != entry.digest or len(data) != entry.size:
            raise ImageError(
                f"{where}: manifest digest mismatch: the index names {entry.digest} ({entry.size} bytes), "
                f"got {got} ({len(data)} bytes)"
            )
        doc = oci.parse_document(data, entry.media_type, f"{where}: manifest {entry.digest}")
        if not isinstance(doc, oci.Manifest):
            raise ImageError(f"{where}: index {top} names another index for linux/amd64 (nested indexes unsupported)")
        manifest_digest = entry.digest
    say(f"{text}: {name}@{top}" + (f" (linux/amd64 manifest {manifest_digest})" if manifest_digest != top else ""))
    with store.blob(doc.config) as raw:
        config_bytes = oci.read_document(raw, doc.config, f"{where}: config")
    config = oci.load_json(config_bytes, f"{where}: config {doc.config.digest}")
    oci.check_config(config, doc, f"{where}: config {doc.config.digest}")
    return ResolvedImage(text, f"{name}@{top}", manifest_digest, config, doc.config.digest, doc.layers, store, progress)


def resolve(reference: str, sources: ImageSources, progress: Callable[[str], None] | None = None) -> ResolvedImage:
    """Pin ``reference``: fetch (by tag or verified digest) its manifest, pick linux/amd64, read its config."""
    ref = parse_reference(reference)
    store, ask = _store_for(ref, reference, sources)
    return resolve_store(reference, ref.name, store, ask, progress)
