"""cocoon's own container image: the guest's Python with cocoon's host packages, as an OCI image layout.

    python -m image.runtime_image --tree BUILD/mkosi/root --out DIR [--tag TAG]

Why: the coordinator, the initializer and the mesh demo's apps run *as containers* in cocoon VMs, so they
need an image the generator can pin and convert like any other. The interpreter and the wheels are taken
from the guest image's own root tree (one Python, one set of pinned wheels, already reproducible), so the
image adds no download. Two layers, bottom first:

* runtime: ``usr/bin/python3*``, ``usr/lib/python3.11``, the shared libraries (``usr/lib/x86_64-linux-gnu``),
  the loader and the merged-usr links, and the guest's wheels (``usr/lib/cocoon/site``);
* app: cocoon's packages under ``usr/lib/cocoon/app``: the files git tracks, as the working tree has them
  (a clean tree gives the commit's layer; a dirty one is said on stderr, so a developer's image is theirs).

Layers are uncompressed tars (a media type the generator reads) with sorted entries, owner 0:0 and every
mtime set to SOURCE_DATE_EPOCH, so two builds of one commit give the same digests; the demo caches
nothing else. The config's Entrypoint is ``python3 -S -B -m cocoon``: a pod's ``args`` are a cocoon command.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parent.parent
# What of the guest tree a cocoon process needs (relative paths; directories are taken whole).
RUNTIME_PATHS = ("bin", "lib", "lib64", "sbin", "usr/bin/python3", "usr/bin/python3.11", "usr/lib64",
                 "usr/lib/python3.11", "usr/lib/x86_64-linux-gnu", "usr/lib/cocoon/site")
# cocoon's packages a container may run (the coordinator's closure and the CLI that starts it).
APP_PACKAGES = ("agent", "igvm", "verifier", "generator", "coordinator", "cocoon")
APP_DIR = "usr/lib/cocoon/app"
SKIP_DIRS = frozenset({"__pycache__", "test", "tests", "idlelib", "tkinter", "ensurepip", "lib2to3"})
LAYER = "application/vnd.oci.image.layer.v1.tar"
ENV = ["PATH=/usr/bin:/bin", f"PYTHONPATH=/{APP_DIR}:/usr/lib/cocoon/site", "PYTHONDONTWRITEBYTECODE=1"]
ENTRYPOINT = ["/usr/bin/python3", "-S", "-B", "-m", "cocoon"]
# `cocoon` on PATH, for pod specs that name it (the generator's initializer container does)
COCOON_BIN = (b"#!/usr/bin/python3 -SB\n"
              b"import sys\nsys.path[:0] = ['/usr/lib/cocoon/app', '/usr/lib/cocoon/site']\n"
              b"from cocoon.cli import main\nsys.exit(main())\n")


class RuntimeImageError(Exception):
    """The image cannot be made from what was given (no guest tree, a missing path)."""


@dataclass(frozen=True)
class Built:
    layout: Path
    tag: str
    manifest_digest: str


def _epoch() -> int:
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env and env.isdigit():
        return int(env)
    out = subprocess.run(["git", "-C", str(ROOT_DIR), "log", "-1", "--format=%ct"], capture_output=True, text=True)
    return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip().isdigit() else 0


def _walk(base: Path, rel: str) -> list[str]:
    """``rel`` and, for a directory that is not a link, everything under it; sorted, skipped dirs left out."""
    top = base / rel
    if not os.path.lexists(top):
        raise RuntimeImageError(f"{top} is missing: is {base} the guest image's root tree (BUILD/mkosi/root)?")
    out = [rel]
    if top.is_dir() and not top.is_symlink():
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            here = Path(dirpath).relative_to(base)
            out += [str(here / d) for d in dirnames] + [str(here / f) for f in sorted(filenames)]
    return out


def _parents(paths: list[str]) -> list[str]:
    seen: set[str] = set()
    for p in paths:
        parts = p.split("/")
        for i in range(1, len(parts)):
            seen.add("/".join(parts[:i]))
    return sorted(seen - set(paths))


def layer_tar(entries: list[tuple[str, Path | bytes | None]], epoch: int) -> bytes:
    """A tar of (path in the image, source) in sorted path order: a file or link on disk, bytes for a file
    made here, None for a directory. Owner 0:0, no names, every mtime ``epoch``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, src in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
            if src is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(src, bytes):
                info.size, info.mode = len(src), 0o755 if name.startswith("usr/bin/") else 0o644
                tar.addfile(info, io.BytesIO(src))
            else:
                st = os.lstat(src)
                info.mode = stat.S_IMODE(st.st_mode)
                if stat.S_ISLNK(st.st_mode):
                    info.type, info.linkname = tarfile.SYMTYPE, os.readlink(src)
                    tar.addfile(info)
                elif stat.S_ISDIR(st.st_mode):
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif stat.S_ISREG(st.st_mode):
                    info.size = st.st_size
                    with open(src, "rb") as f:
                        tar.addfile(info, f)
                # sockets, fifos and devices have no place in an image: left out
    return buf.getvalue()


def runtime_layer(tree: Path, epoch: int) -> bytes:
    paths: list[str] = []
    for rel in RUNTIME_PATHS:
        paths += _walk(tree, rel)
    entries: list[tuple[str, Path | bytes | None]] = [(p, tree / p) for p in paths]
    entries += [(p, None) for p in _parents(paths)]
    entries += [("tmp", None), ("etc", None), ("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n"),
                ("etc/group", b"root:x:0:\n")]
    return layer_tar(entries, epoch)


def app_files(extra: dict[str, bytes] | None = None) -> list[tuple[str, Path | bytes | None]]:
    """cocoon's tracked files of APP_PACKAGES (the commit, not a developer's stray files), plus ``extra``."""
    out = subprocess.run(["git", "-C", str(ROOT_DIR), "ls-files", "-z", "--", *APP_PACKAGES], capture_output=True)
    if out.returncode != 0:
        raise RuntimeImageError(f"git ls-files failed in {ROOT_DIR}: {out.stderr.decode(errors='replace')}")
    files = [f for f in out.stdout.decode().split("\0") if f and (ROOT_DIR / f).is_file()]
    dirty = subprocess.run(["git", "-C", str(ROOT_DIR), "status", "--porcelain", "--", *APP_PACKAGES],
                           capture_output=True, text=True)
    if dirty.stdout.strip():
        print(f"runtime image: the app layer holds uncommitted changes ({len(dirty.stdout.splitlines())} files): "
              "its digest is not the commit's", file=sys.stderr)
    entries: list[tuple[str, Path | bytes | None]] = [(f"{APP_DIR}/{f}", ROOT_DIR / f) for f in files]
    for name, data in (extra or {}).items():
        entries.append((f"{APP_DIR}/{name}", data))
    entries.append(("usr/bin/cocoon", COCOON_BIN))
    entries += [(p, None) for p in _parents([e[0] for e in entries])]
    return entries


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _canonical(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def build(tree: Path, out: Path, tag: str = "latest", epoch: int | None = None) -> Built:
    """Write the OCI layout ``out`` (replacing its index) with the image tagged ``tag``."""
    if not (tree / "usr" / "lib" / "cocoon" / "site").is_dir():
        raise RuntimeImageError(f"{tree} has no usr/lib/cocoon/site: not a cocoon guest root tree "
                                "(python -m image.build leaves it in BUILD/mkosi/root)")
    when = _epoch() if epoch is None else epoch
    layers = [runtime_layer(tree, when), layer_tar(app_files(), when)]
    out.mkdir(parents=True, exist_ok=True)
    (out / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    descs = [{"mediaType": LAYER, **_blob(out, data)} for data in layers]
    config = {"architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
              "config": {"Env": ENV, "Entrypoint": ENTRYPOINT, "WorkingDir": "/"},
              "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]}}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **_blob(out, _canonical(config))},
                "layers": descs}
    mdesc = _blob(out, _canonical(manifest))
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **mdesc,
                                                "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    tmp = out / "index.json.tmp"
    tmp.write_bytes(_canonical(index))
    os.replace(tmp, out / "index.json")
    return Built(out, tag, str(mdesc["digest"]))


def tree_of(image_out: Path) -> Path:
    """The guest root tree the build of ``image_out`` left: ``--build-dir`` holding ``out`` (the tests' layout,
    BUILD/out next to BUILD/mkosi/root) or the default ``build/`` beside the default ``out/``."""
    out = image_out.resolve()
    candidates = [out.parent / "mkosi" / "root", ROOT_DIR / "build" / "mkosi" / "root"]
    for tree in candidates:
        if (tree / "usr" / "lib" / "cocoon" / "site").is_dir():
            return tree
    raise RuntimeImageError(f"no guest root tree for {out} (looked in {', '.join(map(str, candidates))}); "
                            "python -m image.build leaves it in BUILD/mkosi/root")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m image.runtime_image", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tree", required=True, type=Path, help="the guest image's root tree (BUILD/mkosi/root)")
    p.add_argument("--out", required=True, type=Path, help="the OCI layout directory to write")
    p.add_argument("--tag", default="latest")
    args = p.parse_args(argv)
    try:
        built = build(args.tree, args.out, args.tag)
    except (RuntimeImageError, OSError) as exc:
        print(f"runtime image: {exc}", file=sys.stderr)
        return 1
    print(f"{built.layout}:{built.tag} {built.manifest_digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
