"""Kata's protobuf OCI Spec to the OCI runtime-spec JSON (config.json) runc/crun read.

Field names map from Kata's capitalised proto names to the runtime-spec's
camelCase ones (opencontainers/runtime-spec config.md, config-linux.md).
Unset messages are left out rather than written as empty objects, because
for runc an empty ``seccomp`` or ``resources`` object is not the same as
none. Host-supplied namespace paths are dropped: the agent decides which
namespaces a container joins (Kata does the same, research 4.1 item 5).
Whatever the spec lists, a container never runs in the agent's PID
namespace: the spec's ``pid`` entry is replaced by the agent's own, a fresh
namespace or the pod's shared one (Kata's rpc.rs
``update_container_namespaces`` always appends such an entry too). Sysctls
are split by agent/sysctl.py: the ``net.*`` ones are the agent's to apply
and never reach config.json.
"""

from __future__ import annotations

from typing import Any

from agent.errors import AgentError
from agent.protocols import oci_pb2
from agent.sysctl import split


class SpecError(AgentError):
    """An OCI spec the agent will not run."""


def _nonempty(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, [], {}, "")}


def _user(u: oci_pb2.User) -> dict[str, Any]:
    out: dict[str, Any] = {"uid": u.UID, "gid": u.GID}
    if u.AdditionalGids:
        out["additionalGids"] = list(u.AdditionalGids)
    if u.Username:
        out["username"] = u.Username
    return out


def _process(p: oci_pb2.Process) -> dict[str, Any]:
    out: dict[str, Any] = {
        "terminal": p.Terminal,
        "user": _user(p.User),
        "args": list(p.Args),
        "env": list(p.Env),
        "cwd": p.Cwd or "/",
        "noNewPrivileges": p.NoNewPrivileges,
    }
    if p.HasField("ConsoleSize"):
        out["consoleSize"] = {"height": p.ConsoleSize.Height, "width": p.ConsoleSize.Width}
    if p.HasField("Capabilities"):
        c = p.Capabilities
        out["capabilities"] = {"bounding": list(c.Bounding), "effective": list(c.Effective),
                               "inheritable": list(c.Inheritable), "permitted": list(c.Permitted),
                               "ambient": list(c.Ambient)}
    if p.Rlimits:
        out["rlimits"] = [{"type": r.Type, "hard": r.Hard, "soft": r.Soft} for r in p.Rlimits]
    if p.ApparmorProfile:
        out["apparmorProfile"] = p.ApparmorProfile
    if p.OOMScoreAdj:
        out["oomScoreAdj"] = p.OOMScoreAdj
    if p.SelinuxLabel:
        out["selinuxLabel"] = p.SelinuxLabel
    if not out["args"]:
        raise SpecError("process has no args")
    return out


def _resources(r: oci_pb2.LinuxResources) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.Devices:
        out["devices"] = [_nonempty({"allow": d.Allow, "type": d.Type, "major": d.Major or None,
                                     "minor": d.Minor or None, "access": d.Access}) | {"allow": d.Allow}
                          for d in r.Devices]
    if r.HasField("Memory"):
        m = r.Memory
        out["memory"] = _nonempty({"limit": m.Limit or None, "reservation": m.Reservation or None,
                                   "swap": m.Swap or None, "swappiness": m.Swappiness or None,
                                   "disableOOMKiller": m.DisableOOMKiller or None})
    if r.HasField("CPU"):
        c = r.CPU
        out["cpu"] = _nonempty({"shares": c.Shares or None, "quota": c.Quota or None, "period": c.Period or None,
                                "realtimeRuntime": c.RealtimeRuntime or None,
                                "realtimePeriod": c.RealtimePeriod or None, "cpus": c.Cpus, "mems": c.Mems})
    if r.HasField("Pids") and r.Pids.Limit:
        out["pids"] = {"limit": r.Pids.Limit}
    if r.HugepageLimits:
        out["hugepageLimits"] = [{"pageSize": h.Pagesize, "limit": h.Limit} for h in r.HugepageLimits]
    return out


def _seccomp(s: oci_pb2.LinuxSeccomp) -> dict[str, Any]:
    syscalls = []
    for sc in s.Syscalls:
        item: dict[str, Any] = {"names": list(sc.Names), "action": sc.Action}
        if sc.WhichOneof("ErrnoRet") is not None:
            item["errnoRet"] = sc.errnoret
        if sc.Args:
            item["args"] = [{"index": a.Index, "value": a.Value, "valueTwo": a.ValueTwo, "op": a.Op}
                            for a in sc.Args]
        syscalls.append(item)
    return _nonempty({"defaultAction": s.DefaultAction, "architectures": list(s.Architectures),
                      "flags": list(s.Flags), "syscalls": syscalls})


def network_sysctls(spec: oci_pb2.Spec) -> dict[str, str]:
    """The ``net.*`` sysctls of ``spec`` (checked), which the agent writes into the pod's network namespace."""
    return split(dict(spec.Linux.Sysctl), {ns.Type for ns in spec.Linux.Namespaces})[1]


def _linux(x: oci_pb2.Linux, cgroups_path: str, pid_ns: str) -> dict[str, Any]:
    pid: dict[str, str] = {"type": "pid"} | ({"path": pid_ns} if pid_ns else {})
    out: dict[str, Any] = {
        "namespaces": [*({"type": ns.Type} for ns in x.Namespaces if ns.Type not in ("network", "pid")), pid],
        "maskedPaths": list(x.MaskedPaths),
        "readonlyPaths": list(x.ReadonlyPaths),
        "cgroupsPath": cgroups_path,
    }
    if x.UIDMappings or x.GIDMappings:
        raise SpecError("user namespace ID mappings are not supported")
    runtime_sysctls, _network = split(dict(x.Sysctl), {ns.Type for ns in x.Namespaces})
    if runtime_sysctls:
        out["sysctl"] = runtime_sysctls
    if x.HasField("Resources"):
        out["resources"] = _resources(x.Resources)
    if x.Devices:
        out["devices"] = [_nonempty({"path": d.Path, "type": d.Type, "major": d.Major, "minor": d.Minor,
                                     "fileMode": d.FileMode or None, "uid": d.UID, "gid": d.GID})
                          for d in x.Devices]
    if x.HasField("Seccomp"):
        out["seccomp"] = _seccomp(x.Seccomp)
    if x.RootfsPropagation:
        out["rootfsPropagation"] = x.RootfsPropagation
    if x.MountLabel:
        out["mountLabel"] = x.MountLabel
    return out


def to_config(spec: oci_pb2.Spec, rootfs: str, cgroups_path: str, readonly: bool | None = None,
              pid_ns: str = "") -> dict[str, Any]:
    """The config.json for ``spec`` with the agent's rootfs, cgroup path and PID namespace.

    ``pid_ns`` is the path of the pod's shared PID namespace, or empty for a fresh one; never the agent's
    (the caller checks the path it passes).
    """
    if spec.HasField("Hooks") and any(getattr(spec.Hooks, f.name) for f in spec.Hooks.DESCRIPTOR.fields):
        raise SpecError("OCI hooks are not run by this agent")
    if not spec.HasField("Process"):
        raise SpecError("spec has no process")
    config: dict[str, Any] = {
        "ociVersion": spec.Version or "1.1.0",
        "process": _process(spec.Process),
        "root": {"path": rootfs, "readonly": spec.Root.Readonly if readonly is None else readonly},
        "hostname": spec.Hostname,
        "mounts": [_nonempty({"destination": m.destination, "source": m.source, "type": m.type,
                              "options": list(m.options)}) for m in spec.Mounts],
        "annotations": dict(spec.Annotations),
        "linux": _linux(spec.Linux, cgroups_path, pid_ns),
    }
    return config
