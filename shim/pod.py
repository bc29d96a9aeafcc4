"""One pod's VM: booted through cocoon's launcher with the pod's initdata and its image's layers as disks.

The launcher's Session does what it does for ``cocoon launch`` and the QEMU tests: the sim TEE's PSP
document binds the initdata digest as HOSTDATA, the layers are read-only virtio disks with serials
``layer<N>`` (``/dev/disk/by-id/virtio-layer<N>`` in the guest): the sandbox container's at boot, every
later container's hotplugged over QMP (launcher/qmp.py) as Kata's runtime hotplugs block devices. A CRI
pod's network namespace (CNI's) is wired to the VM's NIC by shim/network.py. A pod without initdata boots
with no initdata disk at all: its agent comes up deny-all and says why on the console, and that reason is
what Create answers (fail closed: nothing runs). Work files (the agent and QMP sockets, the console log)
live in a short directory of their own below RUN_DIR, since a unix socket path must fit 108 bytes and
bundles' do not."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.rpc import Code, RpcError
from launcher.qemu import Image, LaunchError, Nic
from launcher.qmp import hotplug_disk
from launcher.scenario import Session
from launcher.vm import Vm
from shim import network
from shim import spec as specmod
from shim.store import Store, StoreError, default_cache

RUN_DIR = Path(os.environ.get("COCOON_SHIM_RUN", "/run/cocoon-shim"))
BOOT_TIMEOUT = float(os.environ.get("COCOON_SHIM_BOOT_TIMEOUT", "300"))
SHM = {"driver": "ephemeral", "source": "shm", "fstype": "tmpfs",
       "options": ["noexec", "nosuid", "nodev", "mode=1777", "size=67108864"],
       "mount_point": "/run/kata-containers/sandbox/shm"}  # Kata's sandbox shm storage (launcher/cri.py)


def image_dir() -> Image:
    """The guest image the shim boots: COCOON_SHIM_IMAGE (a build's out/ directory), required."""
    given = os.environ.get("COCOON_SHIM_IMAGE")
    if not given:
        raise RpcError(Code.FAILED_PRECONDITION, "COCOON_SHIM_IMAGE is not set in containerd's environment: "
                                                 "the shim has no guest image to boot")
    try:
        return Image.load(given)
    except LaunchError as exc:
        raise RpcError(Code.FAILED_PRECONDITION, f"COCOON_SHIM_IMAGE: {exc}") from None


def work_dir(namespace: str, sandbox_id: str) -> Path:
    return RUN_DIR / hashlib.sha256(f"{namespace}/{sandbox_id}".encode()).hexdigest()[:24]


class PodVm:
    def __init__(self, sandbox_id: str, document: bytes | None, bundle: Path, *, address: str,
                 namespace: str) -> None:
        self.sandbox_id = sandbox_id
        self.document = document
        self.address, self.namespace = address, namespace
        self.work = work_dir(namespace, sandbox_id)
        self.vm: Vm | None = None
        self.disks: list[Path] = []
        self.by_root: dict[str, int] = {}
        self.layers: dict[str, Any] = {}
        self.net: network.PodNetwork | None = None

    @property
    def pid(self) -> int:
        return self.vm.proc.pid if self.vm is not None and self.vm.proc is not None else 0

    def alive(self) -> bool:
        return self.vm is not None and self.vm.proc is not None and self.vm.proc.poll() is None

    def _layers(self, cid: str) -> Any:
        store = Store(self.address, self.namespace)
        try:
            return store.image_layers(cid, default_cache())
        except StoreError as exc:
            raise RpcError(Code.FAILED_PRECONDITION, f"container {cid}: {exc}") from None
        except Exception as exc:  # the converter's LayerError and the like: the reason, not a traceback
            raise RpcError(Code.FAILED_PRECONDITION, f"container {cid}: layer conversion: {exc}") from None
        finally:
            store.close()

    def boot(self, cid: str, spec: Mapping[str, Any]) -> None:
        """Boot with the sandbox container's layers attached (a CRI pod's pause container has none), wired to
        the pod's network namespace when CNI gave it one; wait for the agent's status; configure the guest's
        network; create the sandbox."""
        if not specmod.is_pause(spec):  # the image's layers first: a bad image is refused before any boot
            self._attach(cid, self._layers(cid), hotplug=False)
        image = image_dir()
        netns = network.netns_of(spec)
        try:
            self.net = network.discover(netns) if netns else None
        except network.NetworkError as exc:
            raise RpcError(Code.FAILED_PRECONDITION, f"the pod's network: {exc}") from None
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True, mode=0o700)
        session = Session(image, self.work)
        from agent.initdata import render_document

        # without initdata the sim PSP still needs a document (its HOSTDATA); the guest gets no initdata disk
        session.prepare_pod(self.document if self.document is not None else render_document({}), self.disks)
        machine = dataclasses.replace(session.machine("pod"), qmp_socket=self.qmp_socket)
        if self.document is None:
            machine = dataclasses.replace(machine, initdata=None)
        if self.net is not None:
            machine = dataclasses.replace(machine, netns=self.net.netns, nics=[Nic(network.TAP, self.net.mac)])
        self.vm = Vm(machine).start()
        (self.work / "qemu.pid").write_text(str(self.pid))  # for `shim delete` after a shim died
        try:
            if self.net is not None:
                network.connect(self.net)
            self.vm.client(timeout=BOOT_TIMEOUT).call("Check", None, timeout=BOOT_TIMEOUT)
            state, reason, _ = self.vm.wait_status(60)
        except (LaunchError, RpcError, network.NetworkError) as exc:
            raise RpcError(Code.UNAVAILABLE, f"the pod's VM did not come up: {exc}") from None
        if state != "ready":
            why = "the pod has no io.katacontainers.config.hypervisor.cc_init_data annotation; " \
                if self.document is None else ""
            raise RpcError(Code.FAILED_PRECONDITION, f"{why}the agent runs deny-all: {reason}")
        if self.net is not None:  # as Kata's runtime: the interface, then its routes, before any container
            self.call("UpdateInterface", self.net.interface_request(), 60)
            if self.net.routes:
                self.call("UpdateRoutes", self.net.routes_request(), 60)
        hostname = str(spec.get("hostname") or cid[:63])
        self.call("CreateSandbox", {"hostname": hostname, "sandbox_id": self.sandbox_id, "sandbox_pidns": False,
                                    "storages": [SHM]}, 120)

    @property
    def qmp_socket(self) -> Path:
        return self.work / "qmp.sock"

    def _attach(self, cid: str, got: Any, hotplug: bool) -> None:
        """Give every layer of ``cid`` a disk: one the VM already has for that root hash, else a new one
        (before boot: on the command line; after: hotplugged, as Kata's runtime adds block devices). Disks
        stay for the VM's life, so a disk name never comes to mean another layer."""
        from generator import layers as convert

        self.layers[cid] = got
        for lay in got.layers:
            if lay.root_hash in self.by_root:
                continue
            path = convert.layer_path(lay, default_cache())
            if hotplug:
                try:
                    hotplug_disk(path, self.qmp_socket, f"layer{len(self.disks)}")
                except LaunchError as exc:
                    raise RpcError(Code.UNAVAILABLE, f"container {cid}: layer {lay.digest}: {exc}") from None
            self.by_root[lay.root_hash] = len(self.disks)
            self.disks.append(path)

    def create_container(self, cid: str, spec: Mapping[str, Any], bundle: str = "") -> None:
        """Layers attached, the node files its bind mounts name copied in (CopyFile, each checked by the
        policy), then CreateContainer."""
        if specmod.is_pause(spec):
            layers: list[Any] = []
        else:
            got = self.layers.get(cid) or self._layers(cid)
            self._attach(cid, got, hotplug=True)
            layers = list(got.layers)
        try:
            request, shares = specmod.create_requests(spec, cid, layers, bundle=bundle)
            copies = [copy for share in shares for copy in specmod.copy_requests(share)]
        except specmod.SpecError as exc:
            raise RpcError(Code.INVALID_ARGUMENT, f"container {cid}: {exc}") from None
        for storage, lay in zip(request.storages[:len(layers)], layers, strict=True):  # then the volumes
            storage.source = f"/dev/disk/by-id/virtio-layer{self.by_root[lay.root_hash]}"
        for copy in copies:
            self.call("CopyFile", copy, 60)
        self.call("CreateContainer", request, 180)

    def call(self, rpc: str, request: Any, timeout: float | None) -> Any:
        if self.vm is None or not self.alive():
            raise RpcError(Code.UNAVAILABLE, "the pod's VM is not running")
        return self.vm.client().call(rpc, request, timeout=timeout)

    def stop(self) -> None:
        """QEMU killed and reaped, the work directory removed: nothing of the VM stays behind."""
        if self.vm is not None:
            with contextlib.suppress(Exception):
                self.vm.stop()  # the tap QEMU made goes with it
        if self.net is not None:
            network.disconnect(self.net)
        shutil.rmtree(self.work, ignore_errors=True)
