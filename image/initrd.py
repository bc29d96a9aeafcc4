"""cocoon's initrd: load the few modules, open the dm-verity root with the pinned hash, switch_root.

Deterministic by construction: a newc cpio written here (sorted entries,
inode numbers in order, owner root, mtime SOURCE_DATE_EPOCH), gzip with
mtime 0. Contents come from the image's own root tree (busybox-static,
dmsetup and the libraries it needs, the kernel's modules), so the
initrd changes only when the tree does. It also loads, on the other vCPU
while it opens the root, the drivers the agent needs before it binds (the TEE
guest drivers optionally), reads ahead in the background what systemd and the
agent's interpreter will need first (``prefetch_list``), and runs the agent's
start-up once on inputs of its own (agent/warmup.py). The init script fails closed: on
any error it prints why on the console and powers the VM off; there is no
shell to fall into.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

# What opens the root, in the foreground. crc32c_generic first: libcrc32c (needed by erofs) only asks
# for "crc32c" at load time (a softdep).
ROOT_MODULES = ("crc32c_generic", "virtio_pci", "virtio_blk", "dm_mod", "dm_verity", "erofs")
# What the agent needs before it can bind, so that it need not wait for systemd-modules-load (~2 s
# later under TCG): its virtio-serial port, fw_cfg (the sim PSP's document), configfs (configfs-tsm
# reports) and the virtio vsock transport (Kata's default agent address). Loaded on the other vCPU
# while the root opens (~0.7 s of insmods under TCG), waited for before switch_root.
AGENT_MODULES = ("virtio_console", "qemu_fw_cfg", "configfs", "vmw_vsock_virtio_transport")
MODULES = ROOT_MODULES + AGENT_MODULES
# The TEE guest drivers, after the agent's; each fails with ENODEV on other hardware, which is fine
# (busybox's insmod then tries a second time, by image: four wasted loads under sim, all in the
# background).
OPTIONAL_MODULES = ("sev_guest", "tdx_guest")
APPLETS = ("sh", "mount", "insmod", "switch_root", "mkdir", "cat", "sleep", "echo", "poweroff", "ls",
           "chroot")


def _unit_pythonpath() -> str:
    """The agent's PYTHONPATH as its unit sets it: the warm-up and the read-ahead list run the same code
    the same way, and the unit is the one place it is written."""
    unit = (Path(__file__).resolve().parent / "cocoon-agent.service").read_text()
    found = re.search(r"^Environment=PYTHONPATH=(\S+)$", unit, re.MULTILINE)
    if found is None:
        raise SystemExit("image: cocoon-agent.service sets no PYTHONPATH")
    return found.group(1)


AGENT_PYTHONPATH = _unit_pythonpath()
INIT = r"""#!/bin/sh
# cocoon initrd: dm-verity root from cocoon.roothash= / cocoon.hashoffset=, then systemd.
export PATH=/bin:/usr/sbin DM_DISABLE_UDEV=1
fail() { echo "cocoon initrd: $*" >/dev/console; sleep 2; poweroff -f; }
mount -t proc proc /proc && mount -t sysfs sysfs /sys && mount -t devtmpfs devtmpfs /dev || fail "no /proc /sys /dev"
mount -t tmpfs -o mode=0755 tmpfs /run || fail "no /run"
load() { for m in $(cat "$1"); do insmod "/lib/modules/$m.ko" || { echo "module $m did not load"; return 1; }; done; }
# The agent's drivers on the other vCPU meanwhile (image/initrd.py AGENT_MODULES); waited for below.
(load /etc/modules.agent >/modules.agent.err 2>&1 || exit 1
 for m in $(cat /etc/modules.optional); do insmod "/lib/modules/$m.ko" 2>/dev/null; done; exit 0) &
agent_modules=$!
why=$(load /etc/modules.order 2>&1) || fail "$why"
roothash=; offset=; salt=; disk=/dev/vda
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    cocoon.roothash=*) roothash="${arg#*=}" ;;
    cocoon.hashoffset=*) offset="${arg#*=}" ;;
    cocoon.verity.salt=*) salt="${arg#*=}" ;;
    cocoon.rootdisk=*) disk="${arg#*=}" ;;
  esac
done
[ -n "$roothash" ] && [ -n "$offset" ] && [ -n "$salt" ] || \
  fail "cocoon.roothash=, cocoon.hashoffset= and cocoon.verity.salt= are required"
i=0; while [ ! -b "$disk" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
[ -b "$disk" ] || fail "root disk $disk did not appear"
# The data area is the first $offset bytes; the hash area (a veritysetup superblock, then the tree) follows.
blocks=$((offset / 4096))
dmsetup create root --readonly --table \
  "0 $((blocks * 8)) verity 1 $disk $disk 4096 4096 $blocks $((blocks + 1)) sha256 $roothash $salt" \
  || fail "dm-verity refused the root disk"
mkdir -p /sysroot && mount -t erofs -o ro /dev/mapper/root /sysroot || fail "root filesystem does not mount"
# Read ahead, on the other vCPU, what systemd and the agent's interpreter will fault in page by page
# (the list: image/initrd.py prefetch_list). Through dm-verity like any read; the output is discarded.
(cd /sysroot && cat $(cat /etc/prefetch.list) >/dev/null 2>&1) &
# Run the agent's start-up code once on inputs of its own (agent/warmup.py): under TCG the agent then
# finds its code already translated (QEMU keeps translations per physical page, and shared text is
# the page cache's). Nothing from the host, nothing written but its one line on the console.
(PYTHONPATH=@AGENT_PYTHONPATH@ chroot /sysroot /usr/bin/python3 -S -P \
  /usr/lib/cocoon/agent/warmup.py >/dev/console 2>&1) &
wait $agent_modules || fail "$(cat /modules.agent.err)"
# configfs (configfs-tsm reports; the agent's unit is ordered after sys-kernel-config.mount) is mounted
# here, and the API filesystems move to the root rather than being unmounted: systemd adopts what is
# already mounted, so the agent does not wait for PID 1 to fork mount(8) for it.
mount -t configfs configfs /sys/kernel/config || fail "configfs does not mount"
for fs in /dev /run /proc /sys; do mount --move "$fs" "/sysroot$fs" || fail "cannot move $fs to the root"; done
exec switch_root /sysroot /sbin/init
"""


class Cpio:
    """newc archive writer; entries sorted by path, parents before children."""

    def __init__(self, mtime: int) -> None:
        self.mtime = mtime
        self.entries: dict[str, tuple[int, bytes]] = {}

    def dir(self, path: str) -> None:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            self.entries.setdefault("/".join(parts[:i]), (stat.S_IFDIR | 0o755, b""))

    def _parent(self, path: str) -> None:
        if "/" in path.strip("/"):
            self.dir(os.path.dirname(path.strip("/")))

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._parent(path)
        self.entries[path.strip("/")] = (stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        self._parent(path)
        self.entries[path.strip("/")] = (stat.S_IFLNK | 0o777, target.encode())

    def archive(self) -> bytes:
        out = io.BytesIO()
        for ino, name in enumerate(sorted(self.entries), start=1):
            mode, data = self.entries[name]
            self._entry(out, name, ino, mode, data)
        self._entry(out, "TRAILER!!!", 0, 0, b"", nlink=1)
        return out.getvalue()

    def _entry(self, out: io.BytesIO, name: str, ino: int, mode: int, data: bytes, nlink: int | None = None) -> None:
        nb = name.encode() + b"\0"
        links = nlink if nlink is not None else (2 if stat.S_ISDIR(mode) else 1)
        fields = (ino, mode, 0, 0, links, self.mtime if name != "TRAILER!!!" else 0, len(data), 0, 0, 0, 0,
                  len(nb), 0)
        out.write(b"070701" + b"".join(f"{v:08x}".encode() for v in fields) + nb)
        out.write(bytes(-(110 + len(nb)) % 4))
        out.write(data)
        out.write(bytes(-len(data) % 4))


def _libs(tree: Path, binary: str) -> list[str]:
    """The shared libraries ``binary`` loads, resolved inside the tree (its own ldd, chrooted)."""
    text = subprocess.run(["chroot", str(tree), "/usr/bin/ldd", binary], check=True, capture_output=True,
                          text=True).stdout
    libs = []
    for line in text.splitlines():
        m = re.search(r"=> (/\S+)", line) or re.match(r"\s*(/\S+ld-linux\S*)", line)
        if m:
            libs.append(m.group(1))
    return libs


def _resolve_in(tree: Path, path: str) -> Path:
    """``path`` inside ``tree``, following symlinks as the tree's own root would (never onto the host)."""
    parts = [p for p in path.split("/") if p]
    current: list[str] = []
    hops = 0
    while parts:
        current.append(parts.pop(0))
        here = tree.joinpath(*current)
        if here.is_symlink():
            hops += 1
            if hops > 40:
                raise OSError(f"symlink loop at {path}")
            target = os.readlink(here)
            current.pop()
            if target.startswith("/"):
                current = []
            parts = [p for p in target.split("/") if p] + parts
        if current and current[-1] == "..":
            current = current[:-2]
    return tree.joinpath(*current)


def _module_order(tree: Path, kver: str, wanted: tuple[str, ...],
                  skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    mdir = tree / "usr/lib/modules" / kver
    deps: dict[str, list[str]] = {}
    paths: dict[str, str] = {}

    def norm(p: str) -> str:
        return re.sub(r"\.ko(\.xz|\.zst|\.gz)?$", "", os.path.basename(p)).replace("-", "_")

    for line in (mdir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        paths[norm(path)] = path
        deps[norm(path)] = [norm(d) for d in rest.split()]
    order: list[str] = []

    def visit(m: str) -> None:
        if m in order or m not in paths:
            return
        for d in deps[m]:
            visit(d)
        order.append(m)

    for m in wanted:
        visit(m)
    return [(m, paths[m]) for m in order if m not in skip]


#: What the agent imports before READY, asked of the image's own interpreter (nothing is written: no .pyc)
_AGENT_IMPORTS = """
import sys
import agent.daemon, agent.service, agent.ttrpc
for name in sorted(sys.modules):
    path = getattr(sys.modules[name], "__cached__", None) or getattr(sys.modules[name], "__file__", None)
    if path:
        print(path)
"""


def prefetch_list(tree: Path) -> list[str]:
    """Files to read ahead in the initrd, in the order they are needed: systemd and its libraries, the
    interpreter and its libraries, then the standard-library modules the agent imports before READY
    (the agent reads its own modules and packages ahead itself: agent/__main__.py)."""
    wanted: dict[str, None] = {}
    for binary in ("/usr/lib/systemd/systemd", "/usr/bin/python3"):
        for path in (binary, *_libs(tree, binary)):
            wanted[str(_resolve_in(tree, path).relative_to(tree))] = None
    env = {"PATH": "/usr/bin", "PYTHONPATH": AGENT_PYTHONPATH, "PYTHONDONTWRITEBYTECODE": "1"}
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    run = subprocess.run([chroot, str(tree), "/usr/bin/python3", "-S", "-P", "-c", _AGENT_IMPORTS], env=env,
                         check=False, capture_output=True, text=True)
    if run.returncode != 0:  # the agent cannot even import with the image's own interpreter: stop here
        raise SystemExit(f"image: the image's python3 cannot import the agent:\n{run.stderr.strip()}")
    out = run.stdout
    modules = [p for p in sorted(out.split()) if p.startswith("/usr/lib/python3.") and p.endswith((".pyc", ".so"))]
    for path in modules:  # (frozen modules name their .py, which is never read: left out)
        wanted[path.lstrip("/")] = None
    for path in modules:
        if path.endswith(".so"):  # what the extension modules link (libcrypto for _hashlib, libffi for _ctypes)
            for lib in _libs(tree, path):
                wanted[str(_resolve_in(tree, lib).relative_to(tree))] = None
    return list(wanted)


def check_background_modules(tree: Path, kver: str, root: tuple[str, ...] = ROOT_MODULES,
                             background: tuple[str, ...] = AGENT_MODULES + OPTIONAL_MODULES) -> None:
    """The background lists load while the root's still do: one needing a module of the root's could
    find it half-loaded (unknown symbols) at boot. Such a tree is refused here instead."""
    shared = {n for n, _ in _module_order(tree, kver, background)} & {n for n, _ in _module_order(tree, kver, root)}
    if shared:
        raise SystemExit(f"image: the agent's modules depend on the root's ({', '.join(sorted(shared))}); "
                         "load them in the foreground (image/initrd.py ROOT_MODULES)")


def build_initrd(tree: Path, kver: str, out: Path, mtime: int) -> None:
    cpio = Cpio(mtime)
    for d in ("bin", "dev", "proc", "sys", "run", "sysroot", "etc", "lib/modules", "usr/sbin"):
        cpio.dir(d)
    cpio.file("init", INIT.replace("@AGENT_PYTHONPATH@", AGENT_PYTHONPATH).encode(), 0o755)
    cpio.file("etc/prefetch.list", ("\n".join(prefetch_list(tree)) + "\n").encode())
    busybox = tree / "usr/bin/busybox"
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in APPLETS:
        cpio.symlink(f"bin/{applet}", "busybox")
    # dmsetup with the table rather than veritysetup: the same kernel target, without loading
    # libcryptsetup and libcrypto (seconds of dynamic linking under emulation).
    cpio.file("usr/sbin/dmsetup", (tree / "usr/sbin/dmsetup").read_bytes(), 0o755)
    for lib in _libs(tree, "/usr/sbin/dmsetup"):
        cpio.file(lib.lstrip("/"), _resolve_in(tree, lib).read_bytes(), 0o755)
    root = _module_order(tree, kver, ROOT_MODULES)
    check_background_modules(tree, kver)
    # Each module is loaded once, by the first list that needs it; an optional module's dependencies
    # (tsm for both) load as optional too, after what is required.
    agent = _module_order(tree, kver, AGENT_MODULES, skip=tuple(name for name, _ in root))
    optional = _module_order(tree, kver, OPTIONAL_MODULES, skip=tuple(name for name, _ in root + agent))
    for listing, modules in (("etc/modules.order", root), ("etc/modules.agent", agent),
                             ("etc/modules.optional", optional)):
        for name, rel in modules:
            raw = (tree / "usr/lib/modules" / kver / rel).read_bytes()
            if rel.endswith(".xz"):
                raw = lzma.decompress(raw)
            cpio.file(f"lib/modules/{name}.ko", raw)
        cpio.file(listing, ("\n".join(name for name, _ in modules) + "\n").encode())
    out.write_bytes(gzip.compress(cpio.archive(), compresslevel=9, mtime=0))
