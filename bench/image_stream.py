#!/usr/bin/env python3
"""Reading a layer blob through ``ResolvedImage.open_blob`` (digest checked while it streams) vs the
least the same check can cost: the file read in 1 MiB chunks into hashlib.sha256.

Why: every byte of every layer passes this reader on its way to the converter, so its overhead adds
directly to the cold conversion figure of issue 20 (<= 1.2x the tools alone). The image is an OCI
layout written here (one uncompressed layer of random bytes); medians of a few runs in one process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from generator.images import ImageSources, resolve

CHUNK = 1 << 20


def _put(root: Path, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (root / "blobs/sha256" / digest[7:]).write_bytes(data)
    return digest, len(data)


def make_layout(root: Path, size: int) -> Path:
    (root / "blobs/sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    layer = root / "layer"
    with layer.open("wb") as f:
        for _ in range(size // CHUNK):
            f.write(os.urandom(CHUNK))
    data = layer.read_bytes()
    layer.unlink()
    layer_digest, layer_size = _put(root, data)
    del data
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}
    cfg_digest, cfg_size = _put(root, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": cfg_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    }
    m_digest, m_size = _put(root, json.dumps(manifest).encode())
    entry = {"mediaType": manifest["mediaType"], "digest": m_digest, "size": m_size}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return root / "blobs/sha256" / layer_digest[7:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cocoon-bench-") as tmp:
        blob_file = make_layout(Path(tmp), args.mib * CHUNK)
        image = resolve("bench:latest", ImageSources(local={"bench": f"oci:{tmp}"}))
        ours, base = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            h = hashlib.sha256()
            with blob_file.open("rb") as f:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
            base.append(time.perf_counter() - start)
            start = time.perf_counter()
            with image.open_blob(image.layers[0]) as stream:
                while stream.read(CHUNK):
                    pass
            ours.append(time.perf_counter() - start)
        b, o = statistics.median(base), statistics.median(ours)
        print(f"layer {args.mib} MiB: file+sha256 {b:.3f} s ({args.mib / b:.0f} MiB/s), open_blob {o:.3f} s")
        print(f"ratio open_blob / file+sha256: {o / b:.2f}")


if __name__ == "__main__":
    main()
