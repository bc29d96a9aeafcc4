"""containerd's OCI spec (the bundle's config.json) as the agent's CreateContainer and ExecProcess requests.

What Kata's runtime does with the spec before sending it (src/runtime/virtcontainers/kata_agent.go
constrainGRPCSpec and friends), as facts: the network and cgroup namespaces are dropped and the remaining
namespaces' paths emptied (they name host namespaces); devices, seccomp, resources and hooks are not passed
(the guest's own); Root.Path becomes ``<shared>/<id>/rootfs``. Bind mounts of host paths cannot reach a guest
without a shared file system, so they are dropped, never followed. The spec's JSON names (``uid``,
``noNewPrivileges``) map to the agent's proto names (``UID``, ``NoNewPrivileges``) by the proto's own
descriptors, case-insensitively; a key the proto does not have is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from agent.protocols import agent_pb2, oci_pb2

# Kata's kataGuestSharedDir()/containers: where the guest keeps a container's directories (generator's cpath)
SHARED = "/run/kata-containers/shared/containers"
DROP_NAMESPACES = {"network", "cgroup"}
KEEP_LINUX = ("Sysctl", "Namespaces", "MaskedPaths", "ReadonlyPaths", "CgroupsPath")
KEEP_PROCESS = ("Terminal", "ConsoleSize", "User", "Args", "Env", "Cwd", "Capabilities", "Rlimits",
                "NoNewPrivileges", "OOMScoreAdj")
GUEST_MOUNT_TYPES = {"proc", "tmpfs", "devpts", "mqueue", "sysfs", "cgroup", "cgroup2"}


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


def guest_spec(spec: Mapping[str, Any], cid: str) -> dict[str, Any]:
    """The spec as the agent receives it (proto names)."""
    if not isinstance(spec.get("process"), Mapping):
        raise SpecError("the bundle's config.json has no process")
    body = _to_proto_names(spec, oci_pb2.Spec.DESCRIPTOR)
    linux = body.get("Linux", {})
    linux = {k: linux[k] for k in KEEP_LINUX if k in linux}
    linux["Namespaces"] = [{"Type": ns.get("Type", ""), "Path": ""} for ns in linux.get("Namespaces", [])
                           if ns.get("Type") not in DROP_NAMESPACES]
    mounts = [m for m in body.get("Mounts", []) if m.get("type") in GUEST_MOUNT_TYPES]
    out = {"Version": body.get("Version", "1.0.2"), "Process": process(spec["process"]),
           "Root": {"Path": f"{SHARED}/{cid}/rootfs", "Readonly": bool(body.get("Root", {}).get("Readonly"))},
           "Mounts": mounts, "Annotations": body.get("Annotations", {}), "Linux": linux}
    if body.get("Hostname"):
        out["Hostname"] = body["Hostname"]
    return out


def layer_storages(layers: Sequence[Any], cid: str, first_disk: int = 0) -> list[dict[str, Any]]:
    """The image's layers as ``blk`` storages on ``/dev/disk/by-id/virtio-layer<N>``, bottom first, pinning
    each layer's dm-verity root hash (agent/storage.py; the same shape launcher/cri.py builds)."""
    return [{"driver": "blk", "source": f"/dev/disk/by-id/virtio-layer{first_disk + i}", "fstype": "erofs",
             "options": ["ro"], "driver_options": [f"cocoon.verity.roothash={lay.root_hash}",
                                                   f"cocoon.verity.hashoffset={lay.hash_offset}"],
             "mount_point": f"{SHARED}/{cid}/layers/{i}"} for i, lay in enumerate(layers)]


def create_request(spec: Mapping[str, Any], cid: str, layers: Sequence[Any],
                   first_disk: int = 0) -> agent_pb2.CreateContainerRequest:
    body = {"container_id": cid, "exec_id": cid, "OCI": guest_spec(spec, cid),
            "storages": layer_storages(layers, cid, first_disk)}
    try:
        return json_format.ParseDict(body, agent_pb2.CreateContainerRequest())
    except json_format.ParseError as exc:
        raise SpecError(f"the bundle's spec does not fit the agent's: {exc}") from None


def exec_request(cid: str, exec_id: str, proc: Mapping[str, Any]) -> agent_pb2.ExecProcessRequest:
    """ExecProcess from the process spec containerd sends with Exec (its JSON, typeurl'd as
    ``types.containerd.io/opencontainers/runtime-spec/1/Process``)."""
    body = {"container_id": cid, "exec_id": exec_id, "process": process(proc)}
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
