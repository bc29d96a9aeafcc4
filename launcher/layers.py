"""Busybox trees and erofs layers with an appended dm-verity tree (the demo pod, tests, bench/containers.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

APPLETS = ("sh", "echo", "cat", "sleep", "true", "false", "ls", "stty", "head", "tr", "wc", "readlink")


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def busybox_tree(root: Path, applets: Iterable[str] = APPLETS, busybox: str = "/usr/bin/busybox") -> Path:
    """A minimal root at ``root``: the usual top directories, ``busybox`` and a symlink per applet."""
    for d in ("bin", "proc", "dev", "sys", "tmp", "etc"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy(busybox, root / "bin" / "busybox")
    for applet in applets:
        if not (root / "bin" / applet).exists():
            os.symlink("busybox", root / "bin" / applet)
    return root


def verity_layer(tree: Path, img: Path) -> tuple[str, int]:
    """erofs of ``tree`` at ``img`` with the verity tree appended (veritysetup, random salt); returns (root hash
    hex, hash offset)."""
    run("mkfs.erofs", "-T0", str(img), str(tree))
    size = img.stat().st_size
    out = run("veritysetup", "format", str(img), str(img), f"--hash-offset={size}", f"--data-blocks={size // 4096}")
    return next(line.split()[-1] for line in out.splitlines() if line.startswith("Root hash")), size


def attach(img: Path) -> str:
    """A read-only loop device for ``img`` (needs root)."""
    return run("losetup", "--find", "--show", "--read-only", str(img)).strip()


def detach(loop: str) -> None:
    subprocess.run(["losetup", "-d", loop], check=False)
