"""SEV-SNP firmware that binds the kernel: edk2's AmdSevX64 OVMF, built reproducibly from Debian's source.

    python -m image.firmware [--out out] [--cache ~/.cache/cocoon] [--fresh]

Debian ships no OVMF with the SNP kernel-hashes metadata section (its
`ovmf` package builds OvmfPkgX64 only, and bookworm's edk2 2022.11 predates
the section), so measured direct boot needs edk2's `OvmfPkg/AmdSev/
AmdSevX64.dsc`. The source is trixie's edk2 2025.02-8+deb13u1: the two
tarballs, pinned by the sha256s trixie's signed Sources index lists, with
Debian's patches applied by quilt. Offline once downloaded; build
dependencies from bookworm (`make setup`).

Two changes to the embedded grub's build script (OvmfPkg/AmdSev/Grub/grub.sh,
a PREBUILD step): Debian's grub has no `sevsecret` module, so it is dropped
(losing only grub's unlock-LUKS-with-an-injected-secret fallback; direct
kernel boot does not go through grub); and the FAT memdisk is made
deterministic (`mkfs.msdos --invariant -i 0x0`, `mcopy -m`, a fixed mtime on
grub.cfg), which as shipped carries a random volume id and the build time.
The build runs in a fixed directory so no path differs between machines.
The result is cached under the cache key of everything that goes in.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

EDK2_VERSION = "2025.02-8+deb13u1"
POOL = "http://deb.debian.org/debian/pool/main/e/edk2/"
# sha256 and size as listed in trixie's main/source/Sources (Checksums-Sha256 of edk2 2025.02-8+deb13u1).
SOURCES = {
    "edk2_2025.02.orig.tar.xz": ("b63b6053d6d89c74d9291f9e96fde1584be99e6fb9c169ba9511505129d6b049", 29646336),
    "edk2_2025.02-8+deb13u1.debian.tar.xz": ("e2a7f6fc58640818416a028d6d5e9dfc255697a7cdc60c14566c236df6bd9b08",
                                            53652),
}
BUILD_DIR = Path("/var/tmp/cocoon-edk2")  # fixed: build paths must not differ between machines
DSC = "OvmfPkg/AmdSev/AmdSevX64.dsc"
PRODUCT = "Build/AmdSev/RELEASE_GCC5/FV/OVMF.fd"
OUTPUT = "OVMF-AmdSev.fd"
TOOLS = ("gcc", "g++", "make", "nasm", "iasl", "quilt", "mkfs.msdos", "mcopy", "grub-mkimage", "python3")


class FirmwareError(Exception):
    """The firmware cannot be fetched or built; the message says what is missing."""


def log(msg: str) -> None:
    print(f"firmware: {msg}", file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_sources(cache: Path) -> dict[str, Path]:
    """The two tarballs, downloaded once, always checked against the pinned sha256."""
    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (digest, size) in SOURCES.items():
        path = cache / name
        if not path.exists():
            url = POOL + name.replace("+", "%2B")
            log(f"downloading {url}")
            tmp = path.with_suffix(".part")
            try:
                with urllib.request.urlopen(url, timeout=120) as resp, tmp.open("wb") as f:
                    shutil.copyfileobj(resp, f, 1 << 20)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise FirmwareError(f"cannot download {url}: {exc}") from None
            tmp.rename(path)
        actual = sha256_file(path)
        if actual != digest or path.stat().st_size != size:
            raise FirmwareError(f"{path}: sha256 {actual} (size {path.stat().st_size}) is not the pinned "
                                f"{digest} ({size}); delete it to download again, or the archive changed")
        out[name] = path
    return out


def patch_grub_script(text: str, epoch: int) -> str:
    """grub.sh without `sevsecret` and with a deterministic memdisk (see the module docstring)."""
    lines = [line for line in text.splitlines() if line.strip() != "sevsecret"]
    text = "\n".join(lines) + "\n"
    replacements = {
        'mkfs.msdos -C -- "${basedir}/disk.fat" 64':
            f'touch -d @{epoch} -- "${{basedir}}/grub.cfg"\n'
            'mkfs.msdos --invariant -i 0x0 -C -- "${basedir}/disk.fat" 64',
        'mcopy -i "${basedir}/disk.fat"': 'mcopy -m -i "${basedir}/disk.fat"',
    }
    for old, new in replacements.items():
        if old not in text:
            raise FirmwareError(f"OvmfPkg/AmdSev/Grub/grub.sh changed: {old!r} not found; update image/firmware.py")
        text = text.replace(old, new)
    return text


def tool_versions() -> dict[str, str]:
    """What the output also depends on: the bookworm toolchain and grub that built it."""
    out = {}
    for pkg in ("gcc-12", "nasm", "acpica-tools", "grub-efi-amd64-bin", "binutils"):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
        out[pkg] = r.stdout.strip() if r.returncode == 0 else "absent"
    return out


def cache_key(versions: dict[str, str]) -> str:
    """Everything the bytes depend on: sources, toolchain, the .dsc, and the code of the two recipe
    functions (not this file's comments, so editing prose does not cost a 4-minute rebuild)."""
    import inspect

    h = hashlib.sha256()
    h.update(json.dumps({"sources": SOURCES, "tools": versions, "dsc": DSC, "dir": str(BUILD_DIR)},
                        sort_keys=True).encode())
    for fn in (patch_grub_script, build):
        h.update(inspect.getsource(fn).encode())
    return h.hexdigest()[:16]


def build(sources: dict[str, Path], epoch: int, jobs: int) -> Path:
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        raise FirmwareError(f"missing build tools: {', '.join(missing)} (make setup installs them)")
    shutil.rmtree(BUILD_DIR, ignore_errors=True)
    BUILD_DIR.mkdir(parents=True)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(BUILD_DIR),
           "PYTHON_COMMAND": "python3",
           "LC_ALL": "C.UTF-8", "TZ": "UTC", "SOURCE_DATE_EPOCH": str(epoch)}

    def run(argv: list[str], cwd: Path, what: str) -> None:
        t0 = time.monotonic()
        r = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise FirmwareError(f"{what} failed (exit {r.returncode}):\n{r.stdout[-4000:]}")
        log(f"{what}: {time.monotonic() - t0:.0f} s")

    run(["tar", "xf", str(sources["edk2_2025.02.orig.tar.xz"])], BUILD_DIR, "unpack edk2")
    src = BUILD_DIR / "edk2-2025.02"
    run(["tar", "xf", str(sources["edk2_2025.02-8+deb13u1.debian.tar.xz"])], src, "unpack debian/")
    env["QUILT_PATCHES"] = "debian/patches"
    run(["quilt", "push", "-a", "-q"], src, "Debian's patches (quilt)")
    grub_sh = src / "OvmfPkg/AmdSev/Grub/grub.sh"
    grub_sh.write_text(patch_grub_script(grub_sh.read_text(), epoch))
    run(["make", "-C", "BaseTools/Source/C", f"-j{jobs}"], src, "BaseTools (C tools)")
    script = (f"export WORKSPACE={src} && . ./edksetup.sh BaseTools >/dev/null && "
              f"build -a X64 -t GCC5 -b RELEASE -n {jobs} -p {DSC}")
    run(["bash", "-c", script], src, f"build {DSC}")
    return src / PRODUCT


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Writes OUT/OVMF-AmdSev.fd and OUT/firmware.json (sha256, sources, "
                                        "toolchain, build seconds).")
    ap.add_argument("--out", default="out")
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/cocoon"))
    ap.add_argument("--fresh", action="store_true", help="build even if the cache holds this firmware")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    out, cache = Path(args.out), Path(args.cache) / "firmware"
    out.mkdir(parents=True, exist_ok=True)
    try:
        sources = fetch_sources(cache)
        versions = tool_versions()
        key = cache_key(versions)
        cached = cache / key / OUTPUT
        built = False
        if args.fresh or not cached.exists():
            cache.mkdir(parents=True, exist_ok=True)
            with (cache / "build.lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time in the fixed build directory
                log(f"building {DSC} from edk2 {EDK2_VERSION} (a few minutes on 2 cores)")
                product = build(sources, epoch=1700000000, jobs=args.jobs)
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(".part")
                shutil.copyfile(product, tmp)
                tmp.rename(cached)
                with contextlib.suppress(OSError):
                    shutil.rmtree(BUILD_DIR)
            built = True
        else:
            log(f"cached: {cached}")
        shutil.copyfile(cached, out / OUTPUT)
    except FirmwareError as exc:
        print(f"firmware: error: {exc}", file=sys.stderr)
        return 2
    digest = sha256_file(out / OUTPUT)
    info = {"firmware": OUTPUT, "sha256": digest, "size": (out / OUTPUT).stat().st_size, "dsc": DSC,
            "edk2": EDK2_VERSION, "sources": {n: d for n, (d, _) in SOURCES.items()}, "toolchain": versions,
            "built": built, "seconds": round(time.monotonic() - t0, 1)}
    (out / "firmware.json").write_text(json.dumps(info, indent=1) + "\n")
    log(f"{OUTPUT} sha256 {digest} ({'built' if built else 'from cache'} in {info['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
