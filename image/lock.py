"""The package lock: every .deb in the image, by name, version, architecture and sha256, checked on each build.

    python -m image.lock --manifest build/mkosi/root.manifest            # check (what the build does)
    python -m image.lock --manifest build/mkosi/root.manifest --update   # accept what the archive serves now

Debian's snapshot archive cannot be reached here, so packages cannot be
pinned by date; instead the lock (image/packages.lock) says exactly which
bytes the image was built and measured from, and a build whose package set
differs fails, naming each package. The sha256 of each .deb comes from the
archive's Packages index, whose own sha256 comes from the suite's InRelease,
verified with gpgv against Debian's archive keyring: apt checks every .deb it
installs against that same index, so a (name, version) the lock accepts is
exactly one file. A Debian point release or security update therefore stops
the build until someone reviews it and runs --update (the message says so).

``COCOON_LOCK=report`` (what ``make test`` and ``make demo`` use) turns a *newer version*
into a warning, so the test suite tests the code rather than Debian's
publication schedule; the archive keeps only the newest version, so a lock
can go stale between two commits through no change of ours. Same version
with other bytes, or a package no signed index lists, stays fatal in
every mode: that is tampering, not an update.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

LOCK = Path(__file__).resolve().parent / "packages.lock"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# The suites of mkosi.pkgmngr/etc/apt/sources.list.d/mkosi.sources (component main, amd64 + all).
SUITES = (("http://deb.debian.org/debian", "bookworm"), ("http://deb.debian.org/debian", "bookworm-updates"),
          ("http://deb.debian.org/debian", "bookworm-backports"),
          ("http://deb.debian.org/debian-security", "bookworm-security"))


class LockError(Exception):
    """The image's packages are not the locked ones, or the archive's index cannot be trusted."""


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=120) as resp:
            return bytes(resp.read())
    except OSError as exc:
        raise LockError(f"cannot download {url}: {exc}") from None


def _verified_release(base: str, suite: str, workdir: Path) -> str:
    """InRelease of ``suite``, its signature checked with gpgv against Debian's keyring; the signed text."""
    signed = workdir / f"{suite}.InRelease"
    signed.write_bytes(_fetch(f"{base}/dists/{suite}/InRelease"))
    plain = workdir / f"{suite}.Release"
    r = subprocess.run(["gpgv", "--keyring", KEYRING, "--output", str(plain), str(signed)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise LockError(f"{suite} InRelease: signature not valid under {KEYRING}: {r.stderr.strip()[-300:]}")
    return plain.read_text(encoding="utf-8", errors="replace")


def index(cache: Path) -> dict[tuple[str, str, str], str]:
    """(name, version, arch) -> sha256 for every .deb the four suites list (main, amd64)."""
    out: dict[tuple[str, str, str], str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for base, suite in SUITES:
            release = _verified_release(base, suite, Path(tmp))
            m = re.search(r"^SHA256:\n((?: .*\n)+)", release, re.M)
            listed = {parts[2]: parts[0] for parts in (line.split() for line in (m.group(1) if m else "").splitlines())
                      if len(parts) == 3}
            path = "main/binary-amd64/Packages.xz"
            if path not in listed:
                raise LockError(f"{suite} InRelease lists no {path}")
            cached = cache / f"{suite}-{listed[path]}.Packages.xz"
            if not cached.exists():
                cache.mkdir(parents=True, exist_ok=True)
                blob = _fetch(f"{base}/dists/{suite}/{path}")
                cached.write_bytes(blob)
            blob = cached.read_bytes()
            if hashlib.sha256(blob).hexdigest() != listed[path]:
                cached.unlink()
                raise LockError(f"{suite} {path}: sha256 is not the one InRelease lists")
            for stanza in lzma.decompress(blob).decode("utf-8", errors="replace").split("\n\n"):
                fields = dict(re.findall(r"^(Package|Version|Architecture|SHA256): (.*)$", stanza, re.M))
                if len(fields) == 4:
                    out[(fields["Package"], fields["Version"], fields["Architecture"])] = fields["SHA256"]
    return out


def current(manifest: Path, cache: Path) -> list[dict[str, str]]:
    try:
        packages = json.loads(manifest.read_text())["packages"]
    except (OSError, ValueError, KeyError) as exc:
        raise LockError(f"cannot read the mkosi manifest {manifest}: {exc}") from None
    known = index(cache)
    rows = []
    for p in sorted(packages, key=lambda p: p["name"]):
        key = (p["name"], p["version"], p["architecture"])
        sha = known.get(key)
        if sha is None:
            raise LockError(f"{p['name']} {p['version']} ({p['architecture']}) is in the image but in no index of "
                            f"{', '.join(s for _, s in SUITES)}")
        rows.append({"name": key[0], "version": key[1], "architecture": key[2], "sha256": sha})
    return rows


def compare(locked: list[dict[str, str]], now: list[dict[str, str]], source: str = "the archive serves") -> list[str]:
    """One line per package whose name, version or sha256 differs (empty: the lock holds); ``source``
    says where the other version was seen."""
    a = {r["name"]: r for r in locked}
    b = {r["name"]: r for r in now}
    out = []
    for name in sorted(a.keys() | b.keys()):
        if name not in b:
            out.append(f"{name}: locked {a[name]['version']}, no longer in the image")
        elif name not in a:
            out.append(f"{name}: {b[name]['version']} is in the image but not in the lock")
        elif (a[name]["version"], a[name]["sha256"]) != (b[name]["version"], b[name]["sha256"]):
            out.append(f"{name}: locked {_release(a[name])}, {source} {_release(b[name])}")
    return out


def _release(row: dict[str, str]) -> str:
    """A package's version, with the start of its sha256 when known (a saved tree's manifest has none)."""
    return f"{row['version']} ({row['sha256'][:12]})" if row["sha256"] else row["version"]


def tampered(locked: list[dict[str, str]], now: list[dict[str, str]]) -> list[str]:
    """Packages whose locked version is still installed but whose bytes are not the locked ones."""
    a = {r["name"]: r for r in locked}
    return [f"{r['name']}: locked {r['version']} ({a[r['name']]['sha256'][:12]}), the archive serves other bytes "
            f"({r['sha256'][:12]}) for the same version" for r in now
            if r["name"] in a and a[r["name"]]["version"] == r["version"] and a[r["name"]]["sha256"] != r["sha256"]]


MODES = ("strict", "report")


def check(manifest: Path, cache: Path, update: bool = False, lock: Path = LOCK, mode: str = "strict") -> str:
    """Compare the image's packages with the lock; ``mode="report"`` returns version drift as a warning."""
    if mode not in MODES:
        raise LockError(f"lock mode {mode!r}: one of {', '.join(MODES)}")
    now = current(manifest, cache)
    if update or not lock.exists():
        lock.write_text(json.dumps({"schema": "cocoon.packages-lock/v1", "packages": now}, indent=1) + "\n")
        return f"wrote {lock} ({len(now)} packages)"
    try:
        locked = json.loads(lock.read_text())["packages"]
    except (OSError, ValueError, KeyError) as exc:
        raise LockError(f"{lock} is not a package lock: {exc}") from None
    diff = compare(locked, now)
    bad = tampered(locked, now)
    if bad:
        raise LockError("the archive serves other bytes for a locked version (not an update):\n  " +
                        "\n  ".join(bad))
    if diff and mode == "report":
        return (f"WARNING: {len(diff)} packages differ from {lock.name} (COCOON_LOCK=report, building anyway):\n  "
                + "\n  ".join(diff)
                + f"\naccept them after review: python -m image.lock --manifest {manifest} --update")
    if diff:
        raise LockError("the image's packages differ from image/packages.lock:\n  " + "\n  ".join(diff) +
                        "\nreview the changes, then accept them with: python -m image.lock --manifest "
                        f"{manifest} --update")
    return f"{len(now)} packages match {lock.name}"


def check_versions(manifest: Path, lock: Path = LOCK) -> None:
    """Offline: the manifest's (name, version, arch) set equals the lock's (for a reused, already checked tree)."""
    try:
        packages = json.loads(manifest.read_text())["packages"]
        locked = json.loads(lock.read_text())["packages"]
    except (OSError, ValueError, KeyError) as exc:
        raise LockError(f"cannot compare {manifest} with {lock}: {exc}") from None
    now = [{"name": p["name"], "version": p["version"], "architecture": p["architecture"]} for p in packages]
    diff = compare([{**r, "sha256": ""} for r in locked], [{**r, "sha256": ""} for r in now], "the saved tree has")
    if diff:
        raise LockError("the saved tree's packages differ from image/packages.lock:\n  " + "\n  ".join(diff))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", required=True, help="mkosi's root.manifest")
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/cocoon/apt-index"))
    ap.add_argument("--update", action="store_true", help="write the lock from what the archive serves now")
    args = ap.parse_args(argv)
    try:
        print(f"lock: {check(Path(args.manifest), Path(args.cache), args.update)}", file=sys.stderr)
    except LockError as exc:
        print(f"lock: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
