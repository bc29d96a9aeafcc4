"""The values that flow between the generator's stages: YAML -> pod templates -> images -> layers -> policy.

Each stage is a module of its own (kube, images, layers, policy, manifest); they share only these
frozen records, so a stage can be tested with hand-made inputs and replaced without touching the others.
Digests are always ``sha256:<64 hex>`` strings (OCI's form); root hashes are bare hex.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: media types of layer blobs the converter reads (OCI image spec, and Docker's schema 2 names for the same)
LAYER_MEDIA_TYPES: Mapping[str, str] = {
    "application/vnd.oci.image.layer.v1.tar": "none",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar": "none",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd": "zstd",
}


@dataclass(frozen=True)
class Blob:
    """A content-addressed blob as a manifest names it."""

    digest: str
    media_type: str
    size: int


@dataclass(frozen=True)
class Layer:
    """One converted layer: an erofs image with its dm-verity hash tree appended, at ``file`` (cache-relative
    name ``<hex of digest>.img``). ``hash_offset`` is the byte offset of the hash tree (= erofs data size, a
    multiple of 4096); ``root_hash`` is what the policy pins and the agent hands to dm-verity."""

    digest: str  # the layer blob's digest (compressed, as the manifest lists it)
    diff_id: str  # sha256 of the uncompressed tar (the image config's rootfs.diff_ids entry)
    root_hash: str
    hash_offset: int
    size: int  # bytes of the whole file (data + hash tree)
    file: str


@dataclass(frozen=True)
class ImageInfo:
    """An image resolved and converted: what the policy and the annotated YAML need of it."""

    reference: str  # as the YAML wrote it ("web:1.0", "127.0.0.1:5000/web@sha256:...")
    pinned: str  # repository@sha256:<digest of the manifest (or index) the reference resolved to>
    config: Mapping[str, Any]  # the OCI image config JSON ({"config": {"Env": [...], ...}, "rootfs": ...})
    layers: tuple[Layer, ...]  # bottom first, as the manifest lists them


@dataclass(frozen=True)
class PodTemplate:
    """One pod to generate for: a Pod document, or the pod template inside a workload document.

    ``metadata`` and ``spec`` are the live mappings inside the loaded YAML document (kube.py writes the
    annotations and pinned images back into them); ``where`` names the document for error messages.
    """

    source: str  # file the document came from
    index: int  # document number in that file (0-based)
    kind: str  # Pod, Deployment, ...
    name: str  # the workload's name (metadata.name of the document)
    namespace: str
    metadata: Any  # the pod template's metadata mapping (annotations live here)
    spec: Any  # the PodSpec mapping
    config_maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # name -> data, same namespace
    secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # name -> decoded data
    api_version: str = "v1"  # the document's apiVersion (the manifest's default WorkloadSecretID names it)

    @property
    def where(self) -> str:
        return f"{self.source}: document {self.index} ({self.kind} {self.namespace}/{self.name})"
