#!/usr/bin/env python3
"""``cocoon generate`` figures. Prints ratios to baselines measured in the same run.

(1) Cold layer conversion: a >= 100 MiB image of several gzip layers (many small files, some big ones,
    symlinks, hard links, a whiteout and an opaque directory) through ``generator.layers.convert`` into an
    empty cache, vs the same work by the tools alone: ``tar -x`` of each layer, ``mkfs.erofs``, ``veritysetup
    format`` (goal: ratio <= 1.2). Also the peak RSS of the converting process (goal < 200 MB), measured in
    a fresh interpreter (``getrusage(RUSAGE_SELF)`` there; mkfs.erofs is counted apart, as RUSAGE_CHILDREN).

More figures plug in as functions of ``FIGURES``: each takes the built image (``Built``: its layer files,
blobs and diff_ids) and a scratch directory and returns a dict of figures.

(2) ``cocoon generate`` (generator.generate.run, in process) on a 10-pod YAML whose image comes from an OCI
    layout of the same blobs, every layer already in the cache (goal <= 2 s), and on one pod: what a
    re-run costs per pod, beyond what every run pays (reading the layout, checking the cache).

Each figure is the best of several runs, ours and the baseline alternating; machines here are noisy.
Needs root (conversion writes owners, whiteout devices and trusted xattrs).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.model import Blob

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class Built:
    """The bench image: one gzip blob file per layer, bottom first."""

    files: tuple[Path, ...]
    blobs: tuple[Blob, ...]
    diff_ids: tuple[str, ...]
    uncompressed: int


def _layer(rng: random.Random, index: int, small: int, big_mib: int) -> bytes:
    """One layer's tar: ``small`` files of 0.5-16 KiB in a few hundred directories, one big file, links."""
    buf = io.BytesIO()
    words = [rng.randbytes(8).hex() for _ in range(512)]
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add(name: str, data: bytes | None = None, kind: bytes = tarfile.REGTYPE, **kw: object) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mtime, info.mode = kind, 1_700_000_000 + index, 0o755 if kind == tarfile.DIRTYPE else 0o644
            for key, value in kw.items():
                setattr(info, key, value)
            if data is not None:
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if data is not None else None)

        for d in range(small // 64 + 1):
            add(f"l{index}/d{d:04}", kind=tarfile.DIRTYPE)
        for i in range(small):
            # text-like content (compresses like real files) with some random bytes
            n = rng.randint(512, 16384)
            text = " ".join(rng.choice(words) for _ in range(n // 17)).encode()[: n // 2]
            add(f"l{index}/d{i // 64:04}/f{i:06}", text + rng.randbytes(n - len(text)), uid=rng.choice([0, 1000]))
        add(f"l{index}/big.bin", b"".join(rng.randbytes(1 << 20) for _ in range(big_mib)))
        add(f"l{index}/link", kind=tarfile.SYMTYPE, linkname="big.bin")
        add(f"l{index}/hard", kind=tarfile.LNKTYPE, linkname=f"l{index}/d0000/f000000")
        add(f"l{index}/caps", b"\x7fELF", mode=0o4755,
            pax_headers={"SCHILY.xattr.security.capability": "\x01\x00\x00\x02" + "\0" * 16})
        if index:
            add(f"l{index - 1}/.wh.big.bin", b"")
            add(f"l{index - 1}/d0001/.wh..wh..opq", b"")
    return buf.getvalue()


def build(tmp: Path, layers: int = 4, small: int = 3000, big_mib: int = 20, seed: int = 20) -> Built:
    rng = random.Random(seed)
    files, blobs, diff_ids, total = [], [], [], 0
    for i in range(layers):
        raw = _layer(rng, i, small, big_mib)
        total += len(raw)
        data = gzip.compress(raw, compresslevel=6, mtime=0)
        path = tmp / f"layer{i}.tar.gz"
        path.write_bytes(data)
        files.append(path)
        blobs.append(Blob("sha256:" + hashlib.sha256(data).hexdigest(), GZIP, len(data)))
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    return Built(tuple(files), tuple(blobs), tuple(diff_ids), total)


# --- the conversion, in a fresh interpreter (its RSS is the converter's alone) -----------------------------------


def _child(spec: str) -> int:
    from generator.layers import convert

    job = json.loads(spec)
    cache = Path(job["cache"])
    start = time.perf_counter()
    roots = []
    for path, blob, diff_id in zip(job["files"], job["blobs"], job["diff_ids"], strict=True):
        with open(path, "rb") as f:
            roots.append(convert(Blob(**blob), f, cache, diff_id=diff_id).root_hash)
    import resource

    # VmHWM, not RUSAGE_SELF: ru_maxrss survives execve, so it would count the parent that forked us
    with open("/proc/self/status", encoding="ascii") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    print(json.dumps({"seconds": time.perf_counter() - start, "roots": roots, "rss_mib": hwm / 1024,
                      "tool_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
    return 0


def ours(built: Built, cache: Path) -> dict[str, Any]:
    shutil.rmtree(cache, ignore_errors=True)
    spec = json.dumps({"cache": str(cache), "files": [str(f) for f in built.files],
                       "blobs": [b.__dict__ for b in built.blobs], "diff_ids": list(built.diff_ids)})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                                        os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "bench.generate", "--child", spec], check=True, capture_output=True,
                         text=True, timeout=3600, env=env).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def tools(built: Built, work: Path) -> float:
    """The same work by the tools alone: tar -x, mkfs.erofs, pad, veritysetup format, per layer."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    start = time.perf_counter()
    for i, path in enumerate(built.files):
        tree, img = work / f"t{i}", work / f"l{i}.img"
        tree.mkdir()
        subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-xzf", str(path), "-C", str(tree)], check=True,
                       timeout=3600)
        subprocess.run(["mkfs.erofs", "--quiet", str(img), str(tree)], check=True, timeout=3600)
        shutil.rmtree(tree)
        size = img.stat().st_size
        if size % 4096:
            os.truncate(img, size + 4096 - size % 4096)
            size += 4096 - size % 4096
        subprocess.run(["veritysetup", "format", str(img), str(img), f"--hash-offset={size}"], check=True,
                       capture_output=True, timeout=3600)
    return time.perf_counter() - start


def figure_cold(built: Built, tmp: Path, repeat: int) -> dict[str, float]:
    best_ours, best_tools, rss, tool_rss = float("inf"), float("inf"), 0.0, 0.0
    roots: list[str] | None = None
    for _ in range(repeat):
        best_tools = min(best_tools, tools(built, tmp / "tools"))
        shutil.rmtree(tmp / "tools", ignore_errors=True)
        run = ours(built, tmp / "cache")
        if roots is not None and run["roots"] != roots:
            raise SystemExit("two cold conversions gave different root hashes")
        roots = run["roots"]
        best_ours = min(best_ours, run["seconds"])
        rss, tool_rss = max(rss, run["rss_mib"]), max(tool_rss, run["tool_rss_mib"])
        shutil.rmtree(tmp / "cache", ignore_errors=True)
    return {"image_mib": built.uncompressed / 2**20, "layers": len(built.files),
            "cold_seconds": best_ours, "tools_seconds": best_tools, "cold_ratio": best_ours / best_tools,
            "peak_rss_mib": rss, "mkfs_peak_rss_mib": tool_rss}


def _layout(built: Built, dest: Path) -> Path:
    """An OCI layout of the bench image (its gzip blobs as they are), tag ``1``, for ``--image`` sources."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for f, b in zip(built.files, built.blobs, strict=True):
        shutil.copyfile(f, blobs / b.digest.split(":", 1)[1])

    def put(doc: dict[str, Any]) -> tuple[str, int]:
        raw = json.dumps(doc, sort_keys=True).encode()
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        (blobs / digest.split(":", 1)[1]).write_bytes(raw)
        return digest, len(raw)

    config = {"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/bin"], "Cmd": ["sleep", "3600"]},
              "rootfs": {"type": "layers", "diff_ids": list(built.diff_ids)}}
    cdigest, csize = put(config)
    mdigest, msize = put({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest,
                                     "size": csize},
                          "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size}
                                     for b in built.blobs]})
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest, "size": msize,
         "annotations": {"org.opencontainers.image.ref.name": "1"}}]}))
    return dest


def _pods(n: int) -> str:
    return "".join(f"""---
apiVersion: v1
kind: Pod
metadata: {{name: pod-{i}}}
spec:
  containers:
  - name: main
    image: bench/app:1
    env: [{{name: INDEX, value: "{i}"}}]
  - name: side
    image: bench/app:1
    command: [sleep, "60"]
    readinessProbe: {{exec: {{command: [cat, /etc/hostname]}}}}
""" for i in range(n))


def figure_cached_rerun(built: Built, tmp: Path, repeat: int) -> dict[str, float]:
    """(2) ``cocoon generate`` on a 10-pod YAML with every layer in the cache (goal <= 2 s), and the same for
    one pod (the baseline: what is paid per run, whatever the pod count)."""
    from generator import generate, images

    layout = _layout(built, tmp / "layout")
    refs = tmp / "refs.json"
    refs.write_text(json.dumps({"snp": {"measurements": [{"measurement": "ab" * 48}]}}))
    cache = tmp / "rerun-cache"
    sources = images.ImageSources(local={"bench/app:1": f"oci:{layout}:1"})
    times: dict[int, float] = {}
    for n in (10, 1):
        work = tmp / f"rerun-{n}"
        work.mkdir()
        yaml = work / "pods.yaml"
        yaml.write_text(_pods(n))
        options = generate.Options(platform="sim", reference_values=str(refs), out=work / "out", cache=cache,
                                   sources=sources)
        generate.run([str(yaml)], options)  # converts into the cache once (shared by both sizes)
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = generate.run([str(yaml)], options)
            best = min(best, time.perf_counter() - t0)
            assert result.converted == 0
        times[n] = best
    return {"rerun_10_pods_s": times[10], "rerun_1_pod_s": times[1], "rerun_10_over_1": times[10] / times[1]}


FIGURES: dict[str, Callable[[Built, Path, int], dict[str, float]]] = {"cold": figure_cold,
                                                                       "rerun": figure_cached_rerun}


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        return _child(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--small", type=int, default=3000, help="small files per layer")
    ap.add_argument("--big-mib", type=int, default=20, help="size of each layer's big file")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--only", choices=sorted(FIGURES), action="append")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                    help="scratch directory for blobs, trees and caches (default tmpfs: disk noise hits both sides "
                         "but not equally)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench.generate needs root (layer conversion writes owners, whiteouts, trusted xattrs)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cocoon-bench-generate-", dir=args.dir) as tmp:
        built = build(Path(tmp), args.layers, args.small, args.big_mib)
        if built.uncompressed < 100 << 20:
            print(f"note: the image is only {built.uncompressed / 2**20:.0f} MiB (figure 1 wants >= 100)",
                  file=sys.stderr)
        results = {name: FIGURES[name](built, Path(tmp), args.repeat) for name in (args.only or FIGURES)}
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    cold = results.get("cold")
    if cold:
        print(f"(1) cold conversion of a {cold['image_mib']:.0f} MiB image in {cold['layers']:.0f} gzip layers: "
              f"{cold['cold_seconds']:.2f} s vs tar -x + mkfs.erofs + veritysetup format {cold['tools_seconds']:.2f} s"
              f" -> ratio {cold['cold_ratio']:.2f} (goal <= 1.2)")
        print(f"    peak RSS of the converting process {cold['peak_rss_mib']:.0f} MiB (goal < 200); "
              f"mkfs.erofs <= {cold['mkfs_peak_rss_mib']:.0f} MiB (children's ru_maxrss counts the fork)")
    rerun = results.get("rerun")
    if rerun:
        print(f"(2) cocoon generate again, every layer cached: 10 pods {rerun['rerun_10_pods_s']:.2f} s (goal <= 2 s), "
              f"1 pod {rerun['rerun_1_pod_s']:.2f} s -> 10 pods / 1 pod {rerun['rerun_10_over_1']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
