"""Storages of a container: verity layers, overlay rootfs, tmpfs (ephemeral), local directories.

Every mount point must lie below one of the agent's allowed prefixes (the
shared container directory and the sandbox directory): a host that names
``/etc`` as a mount point gets an error, not a mount. The check is not on
the string alone: the host can plant symlinks under the shared directory
(CopyFile makes them), so mount points are reached component by component
with ``O_NOFOLLOW`` directory descriptors, created on the way if missing,
and the mount goes onto the descriptor (``/proc/self/fd/N``), not a path
the kernel would resolve again. A bind mount's source is held to the same
directories, with one narrow exception (``bind_source``): the guest's own
attestation-agent and data-hub sockets, by exact path and read-only. Layers are ``blk``
storages whose driver options pin ``cocoon.verity.roothash=<hex>`` and
``cocoon.verity.hashoffset=<bytes>`` (the hash area follows the erofs data
on the same device); they are mounted read-only and combined with overlayfs
under a writable tmpfs upper layer. ``STORAGE_HANDLERS`` (as Kata's agent names
it) is the one list of drivers: what is accepted, how each is mounted, what
GetGuestDetails announces.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import stat
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent import verity
from agent.devices import await_node, resolve
from agent.errors import AgentError
from agent.reaper import Reaper

if TYPE_CHECKING:
    from agent.protocols import agent_pb2

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_BIND = 4096
MNT_DETACH = 2
ROOTHASH = "cocoon.verity.roothash="
HASHOFFSET = "cocoon.verity.hashoffset="
# how long a layer disk the runtime hotplugged may take to appear (Kata: hotplug_timeout, 3 s on KVM;
# a TCG guest probes slower)
HOTPLUG_TIMEOUT = 20.0
IDLE_LAYERS = 8  # verified layers kept mounted with no container using them

_libc = ctypes.CDLL(None, use_errno=True)


class StorageError(AgentError):
    """A storage the agent cannot or will not mount."""


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode() or None) != 0:
        err = ctypes.get_errno()
        raise StorageError(f"mount {fstype} {source} on {target}: {os.strerror(err)}")


def umount(target: str) -> None:
    _libc.umount2(target.encode(), MNT_DETACH)


def open_dir(path: str, prefixes: tuple[str, ...]) -> int:
    """An O_PATH descriptor of directory ``path`` (created if missing) below one of ``prefixes``, reached
    without following any symlink below the prefix: what a mount may go onto."""
    norm = confined(path, prefixes)
    prefix = max((p.rstrip("/") or "/" for p in prefixes
                  if norm == p.rstrip("/") or norm.startswith(p.rstrip("/") + "/")), key=len)
    os.makedirs(prefix, mode=0o755, exist_ok=True)  # the agent's own directory, from its configuration
    fd = os.open(prefix, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for comp in [c for c in norm[len(prefix):].split("/") if c]:
            try:
                os.mkdir(comp, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            except OSError as exc:
                raise StorageError(f"path {path}: cannot create {comp!r}: {exc.strerror}") from None
            try:
                nxt = os.open(comp, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError:
                raise StorageError(f"path {path}: {comp!r} on the way is not a plain directory "
                                   "(a symlink is never followed)") from None
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def mount_confined(source: str, target: str, prefixes: tuple[str, ...], fstype: str, flags: int = 0,
                   data: str = "") -> str:
    """``mount`` onto directory ``target`` reached by ``open_dir``; returns the normalised target."""
    fd = open_dir(target, prefixes)
    try:
        if _libc.mount(source.encode(), f"/proc/self/fd/{fd}".encode(), fstype.encode(), flags,
                       data.encode() or None) != 0:
            err = ctypes.get_errno()
            raise StorageError(f"mount {fstype} {source} on {target}: {os.strerror(err)}")
    finally:
        os.close(fd)
    return os.path.normpath(target)


def make_dir(path: str, prefixes: tuple[str, ...]) -> str:
    """Directory ``path`` below ``prefixes`` exists (created without following symlinks)."""
    os.close(open_dir(path, prefixes))
    return os.path.normpath(path)


def confined(path: str, prefixes: tuple[str, ...]) -> str:
    """``path`` normalised, if it lies below one of ``prefixes`` (no '..' escapes)."""
    if not path.startswith("/"):
        raise StorageError(f"path {path!r} is not absolute")
    if "\0" in path:
        raise StorageError(f"path {path!r} has a NUL byte")
    norm = os.path.normpath(path)
    if not any(norm == p or norm.startswith(p.rstrip("/") + "/") for p in prefixes):
        raise StorageError(f"path {path} is outside the allowed directories ({', '.join(prefixes)})")
    return norm


def bind_source(source: str, options: Sequence[str], prefixes: tuple[str, ...], guest: Mapping[str, str]) -> str:
    """The source of a container's bind mount, if the agent will bind it: below ``prefixes`` (what the host
    shares with the guest), or exactly one of the guest-owned paths ``guest`` lists (path -> "directory" or
    "socket": agent/guest_components.py CONTAINER_SOURCES), mounted read-only.

    A source below ``prefixes`` must stay there once its symlinks are resolved, as the runtime resolves them:
    CopyFile can plant symlinks in the shared directory. (A host racing a CopyFile against the runtime's
    mount is not closed by a check here.)

    A guest path is matched as a whole string, never normalised and never as a prefix, so no other spelling
    of it and nothing below it passes: a host-chosen source cannot reach another guest file through it. It
    must also be what it is meant to be when the container is created: no symlink anywhere on it (its
    realpath is itself) and the listed kind of file. Read-only, because the container only connects: it may
    not unlink the guest's socket, plant another one in its place or fill the directory.
    """
    kind = guest.get(source)
    if kind is None:
        # the runtime mounts the string as given, so the kernel follows a planted symlink *before* a '..'
        # after it; normalising first would judge another path than the one mounted: only normal spellings
        if os.path.normpath(source) != source:
            raise StorageError(f"bind mount source {source[:200]!r} is not in normal form (no '.', '..', '//' or "
                               "trailing '/')")
        norm = confined(source, prefixes)
        real = os.path.realpath(norm)  # the runtime follows symlinks in a bind source: so does this check
        if real != norm:
            try:
                confined(real, tuple(os.path.realpath(p) for p in prefixes))
            except StorageError:
                raise StorageError(f"bind mount source {source}: a symlink on the way leads to {real}, outside the "
                                   f"allowed directories ({', '.join(prefixes)})") from None
        return norm
    opts = list(options)
    if "ro" not in opts or "rw" in opts:
        raise StorageError(f"bind mount of the guest's {source}: only read-only (options {opts}: ro and no rw)")
    try:
        st = os.lstat(source)
    except OSError as exc:
        raise StorageError(f"bind mount of the guest's {source}: {exc.strerror} (the attestation agent and data "
                           "hub serve their sockets only when the measured initdata lets the data hub start)") from None
    is_kind = stat.S_ISDIR(st.st_mode) if kind == "directory" else stat.S_ISSOCK(st.st_mode)
    if not is_kind or os.path.realpath(source) != source:
        raise StorageError(f"bind mount of the guest's {source}: not a {kind} reached without symlinks; refused")
    return source


@dataclass
class Mounted:
    """What one container's storages left behind, to undo in reverse order."""

    mounts: list[str] = field(default_factory=list)
    loops: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)  # root hashes of shared verified layers held


@dataclass
class _SharedLayer:
    """One verified layer, mounted once and bound into every container that names its root hash."""

    mnt: str
    undo: Mounted
    refs: int = 0


@dataclass(frozen=True)
class LayerSpec:
    device: str
    root_hash: bytes
    hash_offset: int
    mount_point: str


def layer_spec(driver_options: list[str], source: str, mount_point: str) -> LayerSpec | None:
    opts = {o.split("=", 1)[0] + "=": o.split("=", 1)[1] for o in driver_options if "=" in o}
    if ROOTHASH not in opts and HASHOFFSET not in opts:
        return None
    try:
        root = bytes.fromhex(opts[ROOTHASH])
        offset = int(opts[HASHOFFSET])
    except (KeyError, ValueError):
        raise StorageError(f"layer {source}: needs {ROOTHASH}<hex> and {HASHOFFSET}<bytes>") from None
    if len(root) not in (32, 64) or offset <= 0 or offset % 4096:
        raise StorageError(f"layer {source}: bad verity root hash or hash offset")
    return LayerSpec(resolve(source), root, offset, mount_point)  # no udev in the image: by-id names via sysfs


class Storage:
    def __init__(self, reaper: Reaper, state_dir: str, prefixes: tuple[str, ...]) -> None:
        self.reaper = reaper
        self.state_dir = state_dir
        self.prefixes = prefixes
        self._layers: dict[str, _SharedLayer] = {}
        self._layer_lock = threading.Lock()
        os.makedirs(os.path.join(state_dir, "layers"), exist_ok=True)

    def _losetup(self, image: str, undo: Mounted) -> str:
        from agent.loopdev import LoopError, attach_read_only

        try:
            loop = attach_read_only(image)
        except LoopError as exc:
            raise StorageError(str(exc)) from None
        undo.loops.append(loop)
        return loop

    def open_layer(self, spec: LayerSpec, name: str, undo: Mounted) -> None:
        """Mount a verified layer at the spec's mount point.

        Verified layers are kept per (device, pinned root hash): the first
        container naming them pays for verification, later ones (and
        restarts) get a bind mount of the same verified, read-only tree, so
        what was checked is what they see. Another device is checked on its
        own, even when it claims the same hash.
        """
        target = confined(spec.mount_point, self.prefixes)
        key = f"{spec.root_hash.hex()}-{_device_id(spec.device)}"
        with self._layer_lock:
            layer = self._layers.get(key)
            if layer is None:
                layer = self._verify_and_mount(spec, key)
                self._layers[key] = layer
            layer.refs += 1
        try:
            mount_confined(layer.mnt, target, self.prefixes, "", MS_BIND)
        except StorageError:
            self._drop_layer(key)
            raise
        undo.mounts.append(target)
        undo.layers.append(key)

    def _verify_and_mount(self, spec: LayerSpec, key: str) -> _SharedLayer:
        undo = Mounted()
        mnt = os.path.join(self.state_dir, "layers", key, "mnt")
        os.makedirs(mnt, exist_ok=True)
        try:
            if verity.kernel_verity_available():
                dm = f"cocoon-{key[:24]}-{key[-12:]}"
                self.reaper.check(["veritysetup", "open", spec.device, dm, spec.device, spec.root_hash.hex(),
                                   f"--hash-offset={spec.hash_offset}"])
                undo.loops.append(f"dm:{dm}")
                device = f"/dev/mapper/{dm}"
                _read_all(device)  # a corrupted block fails now, not inside a running container
            else:
                copy = os.path.join(self.state_dir, "layers", key, "data.img")
                verity.copy_verify(spec.device, spec.hash_offset, spec.root_hash, copy)
                undo.files.append(copy)
                device = self._losetup(copy, undo)
            mount(device, mnt, "erofs", MS_RDONLY | MS_NODEV)
            undo.mounts.append(mnt)
        except AgentError:
            self.release(undo)
            raise
        return _SharedLayer(mnt, undo)

    def _drop_layer(self, key: str) -> None:
        """One user fewer; idle layers stay mounted (a restarted container reuses them) up to a bound."""
        evict: list[_SharedLayer] = []
        with self._layer_lock:
            layer = self._layers.get(key)
            if layer is None:
                return
            layer.refs -= 1
            idle = [k for k, v in self._layers.items() if v.refs <= 0]
            for k in idle[: max(0, len(idle) - IDLE_LAYERS)]:  # oldest idle first (dicts keep order)
                evict.append(self._layers.pop(k))
        for old in evict:
            self._unmount_layer(old)

    def _unmount_layer(self, layer: _SharedLayer) -> None:
        self.release(layer.undo)
        with contextlib.suppress(OSError):
            os.rmdir(layer.mnt)

    def close(self) -> None:
        """Unmount every cached layer (agent shutdown)."""
        with self._layer_lock:
            layers, self._layers = list(self._layers.values()), {}
        for layer in layers:
            self._unmount_layer(layer)

    def tmpfs(self, target: str, undo: Mounted, options: str = "mode=0755") -> None:
        target = mount_confined("tmpfs", target, (*self.prefixes, self.state_dir), "tmpfs", MS_NOSUID | MS_NODEV,
                                options)
        undo.mounts.append(target)

    def overlay(self, lowers: list[str], target: str, scratch: str, undo: Mounted) -> None:
        """Layers (bottom first) + a writable tmpfs upper, mounted at ``target`` (an agent-owned path)."""
        allowed = (*self.prefixes, self.state_dir)
        confined(target, allowed)
        self.tmpfs(scratch, undo)
        upper, work = os.path.join(scratch, "upper"), os.path.join(scratch, "work")
        os.makedirs(upper)
        os.makedirs(work)
        if any("," in p or ":" in p for p in (*lowers, upper, work)):
            raise StorageError("overlay: a layer path with ',' or ':' cannot be named in the mount options")
        lowerdir = ":".join(reversed(lowers))  # overlayfs lists the top layer first
        target = mount_confined("overlay", target, allowed, "overlay", 0,
                                f"lowerdir={lowerdir},upperdir={upper},workdir={work}")
        undo.mounts.append(target)

    def release(self, undo: Mounted) -> None:
        for target in reversed(undo.mounts):
            umount(target)
        for key in undo.layers:
            self._drop_layer(key)
        for loop in reversed(undo.loops):
            if loop.startswith("dm:"):
                self.reaper.run(["veritysetup", "close", loop[3:]])
            else:
                from agent.loopdev import detach

                detach(loop)
        for f in undo.files:
            with contextlib.suppress(OSError):
                os.unlink(f)
        undo.mounts.clear()
        undo.loops.clear()
        undo.files.clear()
        undo.layers.clear()


    def add_container_storages(self, storages: Sequence[agent_pb2.Storage], cid: str, undo: Mounted) -> list[str]:
        """Mount a container's storages; returns its verity layers' mount points (the overlay's lowers)."""
        layers: list[str] = []
        for i, s in enumerate(storages):
            driver = STORAGE_HANDLERS.get(s.driver)
            if driver is None:
                raise StorageError(f"storage driver {s.driver!r} is not supported")
            lower = driver.container(self, s, f"{cid}-{i}", undo)
            if lower is not None:
                layers.append(lower)
        return layers

    def add_sandbox_storages(self, storages: Sequence[agent_pb2.Storage], undo: Mounted) -> None:
        """CreateSandbox's storages: the drivers with a sandbox handler (shm); the others are left alone."""
        for s in storages:
            driver = STORAGE_HANDLERS.get(s.driver)
            if driver is not None and driver.sandbox is not None:
                driver.sandbox(self, s, "", undo)


#: (storage, the request's storage, a name unique to it, what to undo) -> a layer to stack, or None
StorageHandler = Callable[[Storage, "agent_pb2.Storage", str, Mounted], "str | None"]


def _verity_layer(storage: Storage, s: agent_pb2.Storage, name: str, undo: Mounted) -> str | None:
    spec = layer_spec(list(s.driver_options), s.source, s.mount_point)
    if spec is None:
        raise StorageError(f"block storage {s.source} has no pinned verity root hash")
    if not os.path.exists(spec.device):  # hotplugged a moment ago: the guest may still be probing it
        spec = dataclasses.replace(spec, device=await_node(s.source, HOTPLUG_TIMEOUT))
        if not os.path.exists(spec.device):
            raise StorageError(f"block storage {s.source} did not appear within {HOTPLUG_TIMEOUT:.0f} s")
    storage.open_layer(spec, name, undo)
    return confined(s.mount_point, storage.prefixes)


def _tmpfs(storage: Storage, s: agent_pb2.Storage, name: str, undo: Mounted) -> str | None:
    storage.tmpfs(s.mount_point, undo)
    return None


def _sandbox_tmpfs(storage: Storage, s: agent_pb2.Storage, name: str, undo: Mounted) -> str | None:
    storage.tmpfs(s.mount_point, undo, ",".join(o for o in s.options if "=" in o) or "mode=1777")
    return None


def _local_dir(storage: Storage, s: agent_pb2.Storage, name: str, undo: Mounted) -> str | None:
    make_dir(s.mount_point, storage.prefixes)  # no symlink on the way is followed
    return None


@dataclass(frozen=True)
class Driver:
    container: StorageHandler  # a CreateContainer storage
    sandbox: StorageHandler | None = None  # a CreateSandbox storage (None: left alone there)
    announced: bool = True  # listed in GetGuestDetails' storage_handlers


#: Storage driver name -> handler, as Kata's agent's STORAGE_HANDLERS; a driver not named here is refused.
STORAGE_HANDLERS: dict[str, Driver] = {
    "blk": Driver(_verity_layer),
    "virtio-blk": Driver(_verity_layer, announced=False),
    "ephemeral": Driver(_tmpfs, sandbox=_sandbox_tmpfs),
    "local": Driver(_local_dir),
}
ANNOUNCED = [name for name, driver in STORAGE_HANDLERS.items() if driver.announced]


def _read_all(device: str) -> None:
    try:
        with open(device, "rb", buffering=0) as f:
            while f.read(1 << 20):
                pass
    except OSError as exc:
        raise verity.VerityError(f"layer {device} fails dm-verity verification: {exc.strerror}") from None


def _device_id(path: str) -> str:
    """Which device (or file) a storage names, independent of the path used to name it."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise StorageError(f"layer {path}: {exc.strerror}") from None
    return f"{st.st_rdev:x}" if st.st_rdev else f"{st.st_dev:x}.{st.st_ino:x}"
