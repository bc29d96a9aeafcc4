"""An image's layers from containerd's content store, converted for the guest: never the host's snapshot.

containerd's gRPC API (the same socket the shim's ``-address`` names) gives the container's image name
(containers.v1 Get), the image's target descriptor (images.v1 Get) and blobs by digest (content.v1 Read);
the namespace travels as the ``containerd-namespace`` gRPC metadata (containerd namespaces/grpc.go). Each
layer blob is read to a temp file, its sha256 checked against its digest, and converted by the generator's
deterministic erofs + dm-verity converter into its cache (a cached layer is not read at all).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator import layers
from generator.model import LAYER_MEDIA_TYPES, Blob, Layer
from shim.protocols import store_pb2

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
PLATFORM = ("linux", "amd64")
MAX_JSON = 4 << 20  # a manifest or config larger than this is not one


class StoreError(Exception):
    """The image, a manifest or a layer could not be had from containerd (the message says which)."""


@dataclass(frozen=True)
class ImageLayers:
    name: str
    manifest: str
    config: dict[str, Any]
    layers: tuple[Layer, ...]


class Store:
    """A gRPC client of containerd's containers, images and content services, for one namespace."""

    def __init__(self, address: str, namespace: str) -> None:
        import grpc

        self._grpc = grpc
        self.channel = grpc.insecure_channel(f"unix://{address}")
        self.metadata = (("containerd-namespace", namespace),)

    def close(self) -> None:
        self.channel.close()

    def _unary(self, path: str, request: Any, response: type[Any]) -> Any:
        call = self.channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=response.FromString)
        try:
            return call(request, metadata=self.metadata, timeout=30)
        except self._grpc.RpcError as exc:
            raise StoreError(f"containerd {path}: {exc.details()}") from None

    def container_image(self, cid: str) -> str:
        resp = self._unary("/containerd.services.containers.v1.Containers/Get",
                           store_pb2.GetContainerRequest(id=cid), store_pb2.GetContainerResponse)
        if not resp.container.image:
            raise StoreError(f"container {cid} names no image: the shim runs images' layers, never a host rootfs")
        return str(resp.container.image)

    def image_target(self, name: str) -> store_pb2.Descriptor:
        resp = self._unary("/containerd.services.images.v1.Images/Get", store_pb2.GetImageRequest(name=name),
                           store_pb2.GetImageResponse)
        target: store_pb2.Descriptor = resp.image.target
        return target

    def read(self, digest: str, sink: Any, limit: int | None = None) -> None:
        """Stream blob ``digest`` into ``sink`` (a binary file), checking its sha256."""
        call = self.channel.unary_stream("/containerd.services.content.v1.Content/Read",
                                         request_serializer=lambda m: m.SerializeToString(),
                                         response_deserializer=store_pb2.ReadContentResponse.FromString)
        h = hashlib.sha256()
        size = 0
        try:
            for chunk in call(store_pb2.ReadContentRequest(digest=digest), metadata=self.metadata, timeout=3600):
                h.update(chunk.data)
                size += len(chunk.data)
                if limit is not None and size > limit:
                    raise StoreError(f"blob {digest} is larger than {limit} bytes")
                sink.write(chunk.data)
        except self._grpc.RpcError as exc:
            raise StoreError(f"containerd content {digest}: {exc.details()}") from None
        if f"sha256:{h.hexdigest()}" != digest:
            raise StoreError(f"blob {digest}: containerd's content has sha256:{h.hexdigest()}")

    def json(self, digest: str) -> Any:
        import io

        buf = io.BytesIO()
        self.read(digest, buf, MAX_JSON)
        try:
            return json.loads(buf.getvalue())
        except ValueError as exc:
            raise StoreError(f"blob {digest} is not JSON: {exc}") from None

    def image_layers(self, cid: str, cache: Path) -> ImageLayers:
        """The container's image as converted layers (bottom first), converting what the cache lacks."""
        name = self.container_image(cid)
        target = self.image_target(name)
        digest, media = target.digest, target.media_type
        doc = self.json(digest)
        if media in (OCI_INDEX, DOCKER_LIST) or "manifests" in doc:
            pick = [m for m in doc.get("manifests", [])
                    if (m.get("platform", {}).get("os"), m.get("platform", {}).get("architecture")) == PLATFORM]
            if not pick:
                raise StoreError(f"image {name}: its index has no {'/'.join(PLATFORM)} manifest")
            digest = pick[0]["digest"]
            doc = self.json(digest)
        try:
            config = self.json(doc["config"]["digest"])
            diff_ids = list(config["rootfs"]["diff_ids"])
            blobs = [Blob(b["digest"], b["mediaType"], int(b["size"])) for b in doc["layers"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"image {name}: manifest {digest} or its config lacks {exc}") from None
        if len(diff_ids) != len(blobs):
            raise StoreError(f"image {name}: {len(blobs)} layers but {len(diff_ids)} diff_ids")
        out = []
        for blob, diff_id in zip(blobs, diff_ids, strict=True):
            hit = layers.cached(blob.digest, cache)
            if hit is None:
                if blob.media_type not in LAYER_MEDIA_TYPES:
                    raise StoreError(f"image {name}: layer {blob.digest} has media type {blob.media_type!r}, "
                                     "which the converter does not read")
                (cache / "tmp").mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryFile(dir=cache / "tmp") as f:
                    self.read(blob.digest, f)
                    f.seek(0)
                    hit = layers.convert(blob, f, cache, diff_id=diff_id)
            out.append(hit)
        return ImageLayers(name, digest, config, tuple(out))


def default_cache() -> Path:
    """COCOON_SHIM_CACHE, else the converter's own default (shared with ``cocoon generate``)."""
    given = os.environ.get("COCOON_SHIM_CACHE")
    return Path(given) if given else layers.default_cache_dir()
