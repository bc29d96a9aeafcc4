"""Busybox trees and erofs layers with an appended dm-verity tree (the demo pod, tests, bench/containers.py)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

APPLETS = ("sh", "echo", "cat", "sleep", "true", "false", "ls", "stty", "head", "tr", "wc", "readlink")
# Mounts and namespaces a container's spec usually lists (as containerd's default spec has them).
PROC_MOUNT = {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}
DEV_MOUNT = {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755"]}
DEVPTS_MOUNT = {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}
NAMESPACES = ("pid", "ipc", "uts", "mount", "network")


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


def container_request(cid: str, args: list[str], device: str, root_hash: str, hash_offset: int, shared: str,
                      mounts: Sequence[Mapping[str, Any]], namespaces: Iterable[str],
                      process: Mapping[str, Any] | None = None, **oci: Any) -> dict[str, Any]:
    """CreateContainerRequest JSON (proto field names) for ``args`` run from one erofs layer on ``device`` under
    dm-verity (``root_hash``, hash tree at ``hash_offset``), its directories under ``shared`` as Kata's runtime
    names them. ``process`` adds to the process (PATH=/bin, cwd /), ``oci`` to the spec (e.g. Hostname)."""
    return {
        "container_id": cid, "exec_id": cid,
        "storages": [{"driver": "blk", "source": device, "fstype": "erofs", "options": ["ro"],
                      "driver_options": [f"cocoon.verity.roothash={root_hash}",
                                         f"cocoon.verity.hashoffset={hash_offset}"],
                      "mount_point": f"{shared}/{cid}/layers/0"}],
        "OCI": {"Version": "1.1.0",
                "Process": {"Args": args, "Env": ["PATH=/bin"], "Cwd": "/", **(process or {})},
                "Root": {"Path": f"{shared}/{cid}/rootfs"},
                **oci,
                "Mounts": copy.deepcopy(list(mounts)),  # the caller may edit a request: never the constants
                "Linux": {"Namespaces": [{"Type": t} for t in namespaces]}},
    }
