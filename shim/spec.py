"""containerd's OCI spec (the bundle's config.json) as the agent's CreateContainer and ExecProcess requests.

What Kata's runtime does with the spec before sending it (src/runtime/virtcontainers/kata_agent.go
constrainGRPCSpec and friends), as facts: the network and cgroup namespaces are dropped and the remaining
namespaces' paths emptied (they name host namespaces); devices, seccomp, resources and hooks are not passed
(the guest's own); Root.Path becomes ``<shared>/<id>/rootfs``. Bind mounts of host paths cannot reach a guest
without a shared file system, so they are dropped, never followed. The spec's JSON names (``uid``,
``noNewPrivileges``) map to the agent's proto names (``UID``, ``NoNewPrivileges``) by the proto's own
descriptors, case-insensitively; a key the proto does not have is dropped.

Mounts, as Kata's runtime treats them for a guest without a shared file system (kata_agent.go handleShm,
container.go mountSharedDirMounts, copyFile): every ``/dev/shm`` becomes a bind of the sandbox's shm storage
(containerd gives a sandbox both a tmpfs and a bind there; one is kept); a bind mount of a host regular file
(the node's /etc/hosts, hostname, resolv.conf, the termination log) is copied into the guest's shared
directory as ``<id>-<16 random hex>-<basename>`` (``FileShare``; the caller sends CopyFile) and the mount's
source rewritten to it, and so is a host directory (kubelet's ConfigMap, Secret, projected volumes: their
files and relative symlinks, bounded); a kubelet emptyDir becomes Kata's ``local`` storage (``ephemeral``
tmpfs when the node's is tmpfs, medium Memory) below the sandbox directory; any other bind mount (a device,
/proc, /sys) is dropped. One kind of bind mount names a guest path, not a node path, and goes through as it
is: exactly one of the guest's attestation-agent / data-hub socket paths (agent/guest_components.py
``CONTAINER_SOURCES``, a pod's hostPath volume asks for it and ``cocoon generate`` pins it), read-only, as
Kata's runtime leaves a guest path for the agent to bind. Annotations: the
runtime's own ``io.katacontainers.config.*`` (the VM's initdata and other hypervisor settings, consumed by
the shim) are not the container's and are dropped; Kata's ``io.katacontainers.pkg.oci.container_type`` and
``bundle_path`` are added. The OCI version is the bundle's (containerd 1.6 writes ``1.0.2-dev``).
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import secrets
import stat
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from agent.guest_components import CONTAINER_SOURCES
from agent.protocols import agent_pb2, oci_pb2

# Kata's kataGuestSharedDir()/containers: where the guest keeps a container's directories (generator's cpath)
SHARED = "/run/kata-containers/shared/containers"
DROP_NAMESPACES = {"network", "cgroup"}
KEEP_LINUX = ("Sysctl", "Namespaces", "MaskedPaths", "ReadonlyPaths", "CgroupsPath")
KEEP_PROCESS = ("Terminal", "ConsoleSize", "User", "Args", "Env", "Cwd", "Capabilities", "Rlimits",
                "NoNewPrivileges", "OOMScoreAdj")
EXEC_PROCESS = ("Terminal", "ConsoleSize", "User", "Args", "Env", "Cwd", "NoNewPrivileges")
GUEST_MOUNT_TYPES = {"proc", "tmpfs", "devpts", "mqueue", "sysfs", "cgroup", "cgroup2"}
SANDBOX_SHM = "/run/kata-containers/sandbox/shm"  # Kata's kataGuestSandboxDir()/shm (pod.py's SHM storage)
RUNTIME_ANNOTATIONS = "io.katacontainers.config."  # the runtime's settings (Kata's: hypervisor, runtime...)
KATA_CONTAINER_TYPE = "io.katacontainers.pkg.oci.container_type"
KATA_BUNDLE_PATH = "io.katacontainers.pkg.oci.bundle_path"
CRI_CONTAINER_TYPE = "io.kubernetes.cri.container-type"
MAX_SHARED_FILE = 1 << 20  # a node file larger than this is not a hosts file: refused, not streamed
MAX_SHARED_TOTAL = 16 << 20  # a copied volume (Kubernetes caps a ConfigMap at 1 MiB)
MAX_SHARED_ENTRIES = 1024
SANDBOX_DIR = "/run/kata-containers/sandbox"
EMPTY_DIR = "kubernetes.io~empty-dir"  # kubelet's volume plugin directory for emptyDir
SYSTEM_SOURCES = ("/proc", "/sys", "/dev")  # Kata's isSystemMount / isHostDevice: never copied


PAUSE_ARGS = ["/pause"]  # the sandbox image's entrypoint (agent/containers.py runs its own pause for it)


class SpecError(ValueError):
    """A spec the shim will not send (no process, args that are not strings...)."""


def _to_proto_names(value: Any, desc: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"{desc.name} is not an object")
    fields = {f.name.lower(): f for f in desc.fields}
    out: dict[str, Any] = {}
    for key, item in value.items():
        field = fields.get(str(key).lower())
        if field is None or item is None:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out[field.name] = {str(k): str(v) for k, v in dict(item).items()}
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if isinstance(item, list):  # a repeated message field (the spec's arrays)
                out[field.name] = [_to_proto_names(x, field.message_type) for x in item]
            else:
                out[field.name] = _to_proto_names(item, field.message_type)
        else:
            out[field.name] = item
    return out


def process(proc: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's process in proto names, with the fields the agent takes."""
    body = _to_proto_names(proc, oci_pb2.Process.DESCRIPTOR)
    args = body.get("Args")
    if not args or not all(isinstance(a, str) for a in args):
        raise SpecError("the spec's process has no args (or args that are not strings)")
    return {k: body[k] for k in KEEP_PROCESS if k in body}


@dataclasses.dataclass(frozen=True)
class FileShare:
    """A host file or directory a bind mount names, and where its copy goes in the guest (the mount's new
    source)."""

    host: str
    guest: str


def shared_name(cid: str, destination: str) -> str:
    """Kata's name for a file it copies into the shared directory: ``<id>-<16 random hex>-<basename>``."""
    return f"{SHARED}/{cid}-{secrets.token_hex(8)}-{posixpath.basename(destination.rstrip('/'))}"


def _mount_fstype(path: str) -> str | None:
    """The file system type mounted exactly at ``path`` (/proc/self/mountinfo, the last one wins), if any."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    found = None
    for line in lines:
        head, sep, tail = line.partition(" - ")
        fields = head.split()
        if sep and len(fields) >= 5:
            point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            if point == (path.rstrip("/") or "/"):
                found = tail.split()[0] if tail.split() else None
    return found


def empty_dir_storage(source: str) -> dict[str, Any] | None:
    """Kata's storage for a kubelet emptyDir (``.../volumes/kubernetes.io~empty-dir/<name>``): ``ephemeral``
    tmpfs when the node backs it with tmpfs (medium Memory), else a ``local`` directory of the sandbox; None
    for any other path."""
    parts = source.rstrip("/").split("/")
    if len(parts) < 2 or parts[-2] != EMPTY_DIR:
        return None
    name = parts[-1]
    if _mount_fstype(source) == "tmpfs":
        return {"driver": "ephemeral", "source": "tmpfs", "fstype": "tmpfs", "options": [],
                "mount_point": f"{SANDBOX_DIR}/ephemeral/{name}"}
    return {"driver": "local", "source": "local", "fstype": "local", "options": ["mode=0777"],
            "mount_point": f"{SANDBOX_DIR}/local/{name}"}


def guest_socket_mount(m: Mapping[str, Any]) -> dict[str, Any]:
    """A bind mount whose source is exactly one of the guest's socket paths (``CONTAINER_SOURCES``), as it
    is: the guest's file, which the agent binds (agent/storage.py ``bind_source``), never a node file to copy.
    containerd's CRI plugin (WithMounts) has by then created an empty directory of that name on the node when
    the node had none, and resolved the node's symlinks in the source, so the node's file system says nothing
    about it; only the exact string counts here, as in the policy and the agent. A hostPath mount is
    ``rbind``, the propagation (``rprivate``), then ``ro`` or ``rw``; anything but read-only is refused here
    with the reason (the generator refuses such a pod, the policy and the agent such a request) rather than
    sent to be denied."""
    source, opts = str(m.get("source", "")), m.get("options") or []
    if not isinstance(opts, list) or not all(isinstance(o, str) for o in opts):
        raise SpecError(f"bind mount of the guest's {source}: options {opts!r} are not a list of strings")
    if "ro" not in opts or "rw" in opts:
        raise SpecError(f"bind mount of the guest's {source} at {m.get('destination', '')}: only read-only "
                        f"(readOnly: true in the pod; options {opts}: ro and no rw)")
    return dict(m)


def guest_mounts(mounts: Sequence[Mapping[str, Any]],
                 cid: str) -> tuple[list[dict[str, Any]], list[FileShare], list[dict[str, Any]]]:
    """The spec's mounts as the guest gets them, the host files and directories to copy for them, and the
    storages they need (emptyDir volumes); module docstring."""
    out: list[dict[str, Any]] = []
    shares: list[FileShare] = []
    storages: list[dict[str, Any]] = []
    for m in mounts:
        dest, kind, source = str(m.get("destination", "")), m.get("type"), str(m.get("source", ""))
        if dest == "/dev/shm":
            shm = {"destination": dest, "type": "bind", "source": SANDBOX_SHM, "options": ["rbind"]}
            if shm not in out:
                out.append(shm)
        elif kind == "bind" and source in CONTAINER_SOURCES:
            out.append(guest_socket_mount(m))
        elif kind == "bind":
            storage = empty_dir_storage(source)
            if storage is not None:
                if storage not in storages:
                    storages.append(storage)
                out.append({**m, "source": storage["mount_point"]})
            elif os.path.isfile(source) or (os.path.isdir(source) and not source.startswith(SYSTEM_SOURCES)):
                share = FileShare(source, shared_name(cid, dest))
                shares.append(share)
                out.append({**m, "source": share.guest})
        elif kind in GUEST_MOUNT_TYPES:
            out.append(dict(m))
    return out, shares, storages


def guest_spec(spec: Mapping[str, Any], cid: str,
               bundle: str = "") -> tuple[dict[str, Any], list[FileShare], list[dict[str, Any]]]:
    """The spec as the agent receives it (proto names), the host files its mounts need in the guest, and the
    storages for its volumes."""
    if not isinstance(spec.get("process"), Mapping):
        raise SpecError("the bundle's config.json has no process")
    body = _to_proto_names(spec, oci_pb2.Spec.DESCRIPTOR)
    linux = body.get("Linux", {})
    linux = {k: linux[k] for k in KEEP_LINUX if k in linux}
    linux["Namespaces"] = [{"Type": ns.get("Type", ""), "Path": ""} for ns in linux.get("Namespaces", [])
                           if ns.get("Type") not in DROP_NAMESPACES]
    mounts, shares, storages = guest_mounts(body.get("Mounts", []), cid)
    annotations = {k: v for k, v in body.get("Annotations", {}).items() if not k.startswith(RUNTIME_ANNOTATIONS)}
    annotations[KATA_CONTAINER_TYPE] = "pod_sandbox" if annotations.get(CRI_CONTAINER_TYPE, "sandbox") == "sandbox" \
        else "pod_container"
    if bundle:
        annotations[KATA_BUNDLE_PATH] = bundle
    version = spec.get("ociVersion")
    out = {"Version": version if isinstance(version, str) and version else "1.0.2", "Process": process(spec["process"]),
           "Root": {"Path": f"{SHARED}/{cid}/rootfs", "Readonly": bool(body.get("Root", {}).get("Readonly"))},
           "Mounts": mounts, "Annotations": annotations, "Linux": linux}
    if body.get("Hostname"):
        out["Hostname"] = body["Hostname"]
    return out, shares, storages


def _copy_one(host: str, guest: str, st: os.stat_result) -> agent_pb2.CopyFileRequest:
    mode = st.st_mode
    req = agent_pb2.CopyFileRequest(path=guest, dir_mode=0o755, uid=0, gid=0, offset=0)
    if stat.S_ISDIR(mode):
        req.file_mode = stat.S_IFDIR | (mode & 0o7777)
    elif stat.S_ISLNK(mode):
        target = os.readlink(host)
        if target.startswith("/"):
            raise SpecError(f"bind mount source {host}: symlink to an absolute path ({target}) is not copied")
        req.file_mode, req.data = stat.S_IFLNK | 0o777, target.encode()
        req.file_size = len(req.data)
    elif not stat.S_ISREG(mode):
        raise SpecError(f"bind mount source {host}: not a regular file, directory or symlink")
    elif st.st_size > MAX_SHARED_FILE:
        raise SpecError(f"bind mount source {host}: {st.st_size} bytes; more than a node file "
                        f"({MAX_SHARED_FILE} bytes) is not copied into the guest")
    else:
        with open(host, "rb") as f:
            req.data = f.read(MAX_SHARED_FILE + 1)
        req.file_mode, req.file_size = stat.S_IFREG | (mode & 0o7777), len(req.data)
    return req


def copy_requests(share: FileShare) -> list[agent_pb2.CopyFileRequest]:
    """CopyFile for a shared host file, or for a directory and everything below it (parents first; symlinks
    as symlinks, as kubelet's ConfigMap and Secret volumes are built of them), each file in one piece. Bounded:
    a tree of more than MAX_SHARED_ENTRIES entries or MAX_SHARED_TOTAL bytes is refused, not copied."""
    out: list[agent_pb2.CopyFileRequest] = []
    total = 0
    try:
        top = os.lstat(share.host)
        out.append(_copy_one(share.host, share.guest, top))
        if stat.S_ISDIR(top.st_mode):
            for root, dirs, files in os.walk(share.host, onerror=_raise):
                dirs.sort()
                rel = os.path.relpath(root, share.host)
                for name in [*dirs, *sorted(files)]:
                    host = os.path.join(root, name)
                    guest = posixpath.normpath(posixpath.join(share.guest, rel, name))
                    out.append(_copy_one(host, guest, os.lstat(host)))
                    total += len(out[-1].data)
                    if len(out) > MAX_SHARED_ENTRIES or total > MAX_SHARED_TOTAL:
                        raise SpecError(f"bind mount source {share.host}: more than {MAX_SHARED_ENTRIES} entries or "
                                        f"{MAX_SHARED_TOTAL} bytes; a volume that large is not copied into the guest")
    except OSError as exc:
        raise SpecError(f"bind mount source {share.host}: {exc.strerror or exc}") from None
    return out


def _raise(exc: OSError) -> None:
    raise exc


def copy_file_request(share: FileShare) -> agent_pb2.CopyFileRequest:
    """CopyFile of one shared host file (``copy_requests`` for a directory)."""
    requests = copy_requests(share)
    if len(requests) != 1:
        raise SpecError(f"bind mount source {share.host} is a directory")
    return requests[0]


def layer_storages(layers: Sequence[Any], cid: str, first_disk: int = 0) -> list[dict[str, Any]]:
    """The image's layers as ``blk`` storages on ``/dev/disk/by-id/virtio-layer<N>``, bottom first, pinning
    each layer's dm-verity root hash (agent/storage.py; the same shape launcher/cri.py builds)."""
    return [{"driver": "blk", "source": f"/dev/disk/by-id/virtio-layer{first_disk + i}", "fstype": "erofs",
             "options": ["ro"], "driver_options": [f"cocoon.verity.roothash={lay.root_hash}",
                                                   f"cocoon.verity.hashoffset={lay.hash_offset}"],
             "mount_point": f"{SHARED}/{cid}/layers/{i}"} for i, lay in enumerate(layers)]


def create_request(spec: Mapping[str, Any], cid: str, layers: Sequence[Any], first_disk: int = 0,
                   bundle: str = "") -> agent_pb2.CreateContainerRequest:
    return create_requests(spec, cid, layers, first_disk, bundle)[0]


def create_requests(spec: Mapping[str, Any], cid: str, layers: Sequence[Any], first_disk: int = 0,
                    bundle: str = "") -> tuple[agent_pb2.CreateContainerRequest, list[FileShare]]:
    """CreateContainer (the layers' storages first, then the volumes'), and the host files to CopyFile into
    the guest before it (as Kata's runtime does)."""
    oci, shares, volumes = guest_spec(spec, cid, bundle)
    body = {"container_id": cid, "exec_id": cid, "OCI": oci,
            "storages": [*layer_storages(layers, cid, first_disk), *volumes]}
    try:
        return json_format.ParseDict(body, agent_pb2.CreateContainerRequest()), shares
    except json_format.ParseError as exc:
        raise SpecError(f"the bundle's spec does not fit the agent's: {exc}") from None


def exec_request(cid: str, exec_id: str, proc: Mapping[str, Any]) -> agent_pb2.ExecProcessRequest:
    """ExecProcess from the process spec containerd sends with Exec (its JSON, typeurl'd as
    ``types.containerd.io/opencontainers/runtime-spec/1/Process``). As Kata's runtime: no capabilities,
    rlimits or OOM score (the agent gives the exec the container's)."""
    body = {"container_id": cid, "exec_id": exec_id,
            "process": {k: v for k, v in process(proc).items() if k in EXEC_PROCESS}}
    try:
        return json_format.ParseDict(body, agent_pb2.ExecProcessRequest())
    except json_format.ParseError as exc:
        raise SpecError(f"the exec's process does not fit the agent's: {exc}") from None


def is_pause(spec: Mapping[str, Any]) -> bool:
    """A CRI pod's sandbox container: marked ``sandbox`` by containerd and running ``/pause``. Its root is
    the pause tree of the guest's measured image (as for CoCo's guest-pulled pods), so the sandbox image's
    layers never reach the VM; the generated policy's first container is exactly this one, with no storage."""
    annotations = spec.get("annotations")
    proc = spec.get("process")
    return (isinstance(annotations, Mapping) and annotations.get("io.kubernetes.cri.container-type") == "sandbox"
            and isinstance(proc, Mapping) and proc.get("args") == PAUSE_ARGS)
