"""A pod's Rego policy: what the agent may be asked to run for it, derived from the pod spec and its images.

``policy_data`` reads one PodTemplate (and the images its containers name, converted to verity layers) and
writes the document ``generator/rules.rego`` judges requests against, in genpolicy's schema where the concepts
coincide (kata-containers src/tools/genpolicy: ``containers[0]`` is the pause container, then each container
with its expected ``OCI`` spec, ``storages``, ``exec_commands``, ``sandbox_pidns``; ``common``, ``sandbox``,
``request_defaults``), so a reader who knows genpolicy's output can read ours. What it adds is the layers: a
container's storages are its image's verity layers, in the manifest's order, each pinning a root hash and a
hash offset, and the rules compare them position by position.

The values follow what the kubelet, containerd 1.6's CRI plugin and Kata's runtime would put in the request
(the same facts launcher/cri.py builds the requests from, independently): args from command/args vs the
image's Entrypoint/Cmd, env image-then-container with ``$(VAR)`` expansion, working directory, user and
groups, capabilities, mounts per volume type. Whatever the pod asks for that the policy cannot pin or will not
admit (privileged, hostPath, a user name, a missing ConfigMap, a subPath) is a PolicyGenError naming the
document and the field. One hostPath is not the node's: a volume naming the guest's attestation-agent or
data-hub socket (agent/guest_components.py) is pinned as a read-only bind of that guest path.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.guest_components import CONTAINER_SOURCES
from generator.errors import PolicyGenError
from generator.model import ImageInfo, Layer, PodTemplate
from generator.settings import Settings
from verifier import strictjson

RULES = Path(__file__).resolve().parent / "rules.rego"
TYPE_KEY = "io.kubernetes.cri.container-type"
KATA_TYPE_KEY = "io.katacontainers.pkg.oci.container_type"
ROOTHASH = "cocoon.verity.roothash="  # agent/storage.py reads these two driver options
HASHOFFSET = "cocoon.verity.hashoffset="
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # kubelet's token mount point
#: Kubernetes' env var name rule for envFrom keys (kubelet skips others): C identifier-like, dots and dashes allowed
ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_VAR_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


class _Ctx:
    """One pod's generation: the template, the settings, and how to say where a bad field is."""

    def __init__(self, pod: PodTemplate, settings: Settings, allow_privileged: bool, allow_host_path: bool) -> None:
        self.pod = pod
        self.settings = settings
        self.allow_privileged = allow_privileged
        self.allow_host_path = allow_host_path

    def fail(self, path: str, what: str) -> PolicyGenError:
        return PolicyGenError(f"{self.pod.where}: {path}: {what}")


# --- small readers: the YAML is live, untyped mappings; every access is checked ----------------------------

def _get(ctx: _Ctx, obj: Any, key: str, path: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    if obj is None:
        return default
    value = obj.get(key) if isinstance(obj, Mapping) else None
    if value is None:
        return default
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ctx.fail(f"{path}.{key}", f"must be a {names}, not {type(value).__name__}")
    return value


def _strs(ctx: _Ctx, obj: Any, key: str, path: str) -> list[str] | None:
    value = _get(ctx, obj, key, path, list)
    if value is None:
        return None
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise ctx.fail(f"{path}.{key}[{i}]", f"must be a string, not {type(v).__name__}")
    return list(value)


def _id(ctx: _Ctx, obj: Any, key: str, path: str) -> int | None:
    value = _get(ctx, obj, key, path, int)
    if value is not None and not 0 <= value < 2**32:
        raise ctx.fail(f"{path}.{key}", f"{value} is not a valid id (0 to 2^32-1)")
    return int(value) if value is not None else None


def _anchor(regex_body: str) -> str:
    return f"^{regex_body}$"


# --- the pod -----------------------------------------------------------------------------------------------

def sandbox_name(pod: PodTemplate) -> str:
    """The pod's name as the runtime sees it: a Pod's own name, a workload's pods' generated names as a regex."""
    if pod.kind == "Pod":
        return pod.name
    return _anchor(re.escape(pod.name) + "-[a-z0-9]+(-[a-z0-9]+)?")


def _containers(ctx: _Ctx) -> list[tuple[str, Any]]:
    spec = ctx.pod.spec
    if not isinstance(spec, Mapping):
        raise ctx.fail("spec", "must be a mapping")
    out: list[tuple[str, Any]] = []
    for key in ("initContainers", "containers"):
        items = _get(ctx, spec, key, "spec", list, [])
        for i, c in enumerate(items):
            if not isinstance(c, Mapping):
                raise ctx.fail(f"spec.{key}[{i}]", "must be a mapping")
            out.append((f"spec.{key}[{i}]", c))
    if not any(p.startswith("spec.containers") for p, _ in out):
        raise ctx.fail("spec.containers", "the pod has no containers")
    names = [str(c.get("name")) for _, c in out]
    for (path, c), name in zip(out, names, strict=True):
        if not isinstance(c.get("name"), str) or not c["name"]:
            raise ctx.fail(f"{path}.name", "a container needs a name")
        if names.count(name) > 1:
            raise ctx.fail(f"{path}.name", f"container name {name!r} is used twice")
    spec_ephemeral = spec.get("ephemeralContainers")
    if spec_ephemeral:
        raise ctx.fail("spec.ephemeralContainers", "ephemeral containers are not supported")
    return out


def _check_pod(ctx: _Ctx) -> None:
    spec = ctx.pod.spec
    # The policy compares the sandbox's name and namespace with source_matches, which reads a value starting
    # with "^" as a regex: only the names Kubernetes accepts (DNS-1123), which are never patterns.
    for what, value, rule, limit in (("metadata.name", ctx.pod.name, DNS_SUBDOMAIN, 253),
                                     ("metadata.namespace", ctx.pod.namespace, DNS_LABEL, 63)):
        if len(value) > limit or not rule.fullmatch(value):
            raise ctx.fail(what, f"{value!r} is not a valid Kubernetes name (lower-case letters, digits, '-'"
                                 f"{', ' + repr('.') if rule is DNS_SUBDOMAIN else ''}; at most {limit})")
    for key in ("hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"):
        if _get(ctx, spec, key, "spec", bool, False):
            raise ctx.fail(f"spec.{key}", "is not supported in a confidential pod (the VM is its own host)")
    want = ctx.settings.doc["runtime_class_name"]
    rc = _get(ctx, spec, "runtimeClassName", "spec", str)
    if rc is not None and rc != want:
        raise ctx.fail("spec.runtimeClassName", f"is {rc!r}; this policy is for the {want!r} runtime class")


# --- process ------------------------------------------------------------------------------------------------

def expand_refs(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion (k8s.io/kubernetes third_party/forked/golang/expansion): a defined name is
    replaced, an undefined one stays as written, ``$$`` is one ``$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _VAR_REF.sub(sub, value)


def _image_cfg(image: ImageInfo) -> Mapping[str, Any]:
    cfg = image.config.get("config") if isinstance(image.config, Mapping) else None
    return cfg if isinstance(cfg, Mapping) else {}


def _image_strs(ctx: _Ctx, image: ImageInfo, key: str) -> list[str]:
    value = _image_cfg(image).get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyGenError(f"{ctx.pod.where}: image {image.reference}: config {key} is not a list of strings")
    return list(value)


def _env(ctx: _Ctx, c: Any, path: str, image: ImageInfo) -> tuple[list[str], dict[str, str]]:
    """(policy Env entries, the container's own variables, against which kubelet expands command and args)."""
    entries: dict[str, str] = {}  # name -> policy entry ("NAME=value" or a regex)
    pod = ctx.pod

    def put(name: str, value: str) -> None:
        if name.startswith("^"):  # the rules read an entry starting with "^" as a regex: never a literal one
            raise PolicyGenError(f"{pod.where}: env var name {name!r} starts with '^', which the policy would read "
                                 "as a pattern")
        entries[name] = f"{name}={value}"

    for e in ctx.settings.doc["default_env"]:
        put(*e.split("=", 1))
    put("HOSTNAME", "$(sandbox-name)")  # containerd: HOSTNAME=<the sandbox's hostname>, matched by the regex too
    for e in _image_strs(ctx, image, "Env"):
        if "=" not in e:
            raise PolicyGenError(f"{pod.where}: image {image.reference}: config Env entry {e!r} has no '='")
        put(*e.split("=", 1))
    k8s: dict[str, str] = {}  # the container's own variables, for $(VAR) (kubelet expands against these only)
    regexed: set[str] = set()
    for i, ef in enumerate(_get(ctx, c, "envFrom", path, list, [])):
        p = f"{path}.envFrom[{i}]"
        prefix = _get(ctx, ef, "prefix", p, str, "")
        for kind, store, label in (("configMapRef", pod.config_maps, "ConfigMap"),
                                   ("secretRef", pod.secrets, "Secret")):
            ref = _get(ctx, ef, kind, p, Mapping)
            if ref is None:
                continue
            data = _lookup(ctx, store, ref, f"{p}.{kind}", label)
            for key in sorted(data or {}):
                if ENV_NAME.fullmatch(prefix + key):
                    k8s[prefix + key] = data[key] if data else ""
    for i, ev in enumerate(_get(ctx, c, "env", path, list, [])):
        p = f"{path}.env[{i}]"
        name = _get(ctx, ev, "name", p, str)
        if not name:
            raise ctx.fail(f"{p}.name", "an env var needs a name")
        if not ENV_NAME.fullmatch(name):
            raise ctx.fail(f"{p}.name", f"{name!r} is not a valid env var name (letters, digits, '_', '-', '.', "
                                        "not starting with a digit)")
        if "value" in ev and ev.get("valueFrom") is not None:
            raise ctx.fail(p, "has both value and valueFrom")
        vf = _get(ctx, ev, "valueFrom", p, Mapping)
        if vf is None:
            value = _get(ctx, ev, "value", p, str, "")
            check_refs(ctx, value, k8s, f"{p}.value")
            k8s[name] = expand_refs(value, k8s)
            regexed.discard(name)
            continue
        got = _value_from(ctx, vf, f"{p}.valueFrom", name)
        if got is None:  # an optional reference that is not there: kubelet leaves the variable out
            continue
        value, is_regex = got
        if is_regex:
            regexed.add(name)
            entries.pop(name, None)
            k8s.pop(name, None)
            entries[name] = value
        else:
            regexed.discard(name)
            k8s[name] = value
    for name, value in k8s.items():
        entries.pop(name, None)
        put(name, value)
    return list(entries.values()), k8s


def check_refs(ctx: _Ctx, value: str, defined: Mapping[str, str], where: str) -> None:
    """A $(VAR) the kubelet would expand to something the policy cannot know (a downward API field's value, a
    service's address) cannot be pinned: refused rather than left for the request to fill in."""
    for m in _VAR_REF.finditer(value):
        if m.group(1) is not None and m.group(1) not in defined:
            raise ctx.fail(where, f"refers to $({m.group(1)}), which is not one of the container's own literal "
                                  "variables defined before it (a downward API or service value cannot be pinned)")


def _lookup(ctx: _Ctx, store: Mapping[str, Mapping[str, str]], ref: Any, path: str,
            kind: str) -> Mapping[str, str] | None:
    name = _get(ctx, ref, "name", path, str)
    if not name:
        raise ctx.fail(f"{path}.name", f"names no {kind}")
    optional = _get(ctx, ref, "optional", path, bool, False)
    if name not in store:
        if optional:
            return None
        raise ctx.fail(f"{path}.name", f"{kind} {name!r} is not among the documents given (namespace "
                                       f"{ctx.pod.namespace}); add it, or mark the reference optional")
    return store[name]


def _value_from(ctx: _Ctx, vf: Any, path: str, name: str) -> tuple[str, bool] | None:
    """(value, is_regex) of a valueFrom, or None for a missing optional key."""
    pod = ctx.pod
    for kind, store, label in (("configMapKeyRef", pod.config_maps, "ConfigMap"),
                               ("secretKeyRef", pod.secrets, "Secret")):
        ref = _get(ctx, vf, kind, path, Mapping)
        if ref is None:
            continue
        data = _lookup(ctx, store, ref, f"{path}.{kind}", label)
        key = _get(ctx, ref, "key", f"{path}.{kind}", str)
        if not key:
            raise ctx.fail(f"{path}.{kind}.key", "names no key")
        if data is None:
            return None
        if key not in data:
            if _get(ctx, ref, "optional", f"{path}.{kind}", bool, False):
                return None
            raise ctx.fail(f"{path}.{kind}.key", f"{label} {ref['name']!r} has no key {key!r}")
        return data[key], False
    ref = _get(ctx, vf, "fieldRef", path, Mapping)
    if ref is not None:
        fp = _get(ctx, ref, "fieldPath", f"{path}.fieldRef", str, "")
        meta = pod.metadata if isinstance(pod.metadata, Mapping) else {}
        m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", fp)
        if fp == "metadata.name":
            sname = sandbox_name(pod)
            return (sname, False) if pod.kind == "Pod" else (_anchor(re.escape(name) + "=" + sname[1:-1]), True)
        if fp == "metadata.namespace":
            return pod.namespace, False
        if fp == "metadata.uid":
            return _anchor(re.escape(name) + "=" + UUID), True
        if m:
            values = meta.get(m.group(1)) or {}
            if not isinstance(values, Mapping) or not isinstance(values.get(m.group(2), ""), str):
                raise ctx.fail(f"{path}.fieldRef.fieldPath", f"metadata.{m.group(1)} is not a map of strings")
            return str(values.get(m.group(2), "")), False
        if fp == "spec.nodeName":
            return _anchor(re.escape(name) + "=$(dns_label)"), True
        if fp == "spec.serviceAccountName":
            return str(_get(ctx, pod.spec, "serviceAccountName", "spec", str, "default")), False
        if fp in ("status.hostIP", "status.podIP"):
            return _anchor(re.escape(name) + "=$(ipv4_a)"), True
        if fp in ("status.hostIPs", "status.podIPs"):
            return _anchor(re.escape(name) + "=[0-9a-fA-F.:,]*"), True
        raise ctx.fail(f"{path}.fieldRef.fieldPath", f"{fp!r} is not a downward API field this generator knows")
    if _get(ctx, vf, "resourceFieldRef", path, Mapping) is not None:
        return _anchor(re.escape(name) + "=[0-9]+"), True
    raise ctx.fail(path, "names none of configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef")


def _args(ctx: _Ctx, c: Any, path: str, image: ImageInfo, env: Mapping[str, str]) -> list[str]:
    """Kubernetes' rule (kubelet/containerd): command replaces Entrypoint and drops Cmd; args replace Cmd."""
    command = _strs(ctx, c, "command", path)
    args = _strs(ctx, c, "args", path)
    for key, values in (("command", command), ("args", args)):
        for i, a in enumerate(values or []):
            check_refs(ctx, a, env, f"{path}.{key}[{i}]")
    if command:
        argv = command + (args or [])
    else:  # containerd: an empty args list reads as none (the image's Cmd)
        argv = _image_strs(ctx, image, "Entrypoint") + (args or _image_strs(ctx, image, "Cmd"))
    if not argv:
        raise ctx.fail(f"{path}.command", f"neither the container nor image {image.reference} names a command")
    return [expand_refs(a, env) for a in argv]


def _sec(ctx: _Ctx, c: Any, path: str) -> tuple[Any, Any]:
    pod_sc = _get(ctx, ctx.pod.spec, "securityContext", "spec", Mapping, {})
    sc = _get(ctx, c, "securityContext", path, Mapping, {})
    return pod_sc, sc


def _user(ctx: _Ctx, c: Any, path: str, image: ImageInfo) -> dict[str, Any]:
    pod_sc, sc = _sec(ctx, c, path)
    uid = _id(ctx, sc, "runAsUser", f"{path}.securityContext")
    if uid is None:
        uid = _id(ctx, pod_sc, "runAsUser", "spec.securityContext")
    gid = _id(ctx, sc, "runAsGroup", f"{path}.securityContext")
    if gid is None:
        gid = _id(ctx, pod_sc, "runAsGroup", "spec.securityContext")
    image_user = _image_cfg(image).get("User") or ""
    if not isinstance(image_user, str):
        raise PolicyGenError(f"{ctx.pod.where}: image {image.reference}: config User is not a string")
    # containerd: the user string is runAsUser if set (the image's group then unused), else the image's User
    name, _, group = image_user.partition(":") if uid is None else ("", "", "")
    if uid is None:
        if name and not name.isdigit():
            raise ctx.fail(f"{path}.securityContext.runAsUser",
                           f"image {image.reference} runs as user name {name!r}, which needs the image's /etc/passwd; "
                           "set runAsUser (and runAsGroup) to numbers")
        uid = int(name) if name else 0
        if uid >= 2**32:
            raise PolicyGenError(f"{ctx.pod.where}: image {image.reference}: config User {image_user!r} is too large")
    if gid is None:
        if group and not group.isdigit():
            raise ctx.fail(f"{path}.securityContext.runAsGroup",
                           f"image {image.reference} names group {group!r}, which needs the image's /etc/group; "
                           "set runAsGroup to a number")
        # containerd reads the gid from the image's /etc/passwd for a bare uid; cocoon does not read it: 0
        gid = int(group) if group else 0
        if gid >= 2**32:
            raise PolicyGenError(f"{ctx.pod.where}: image {image.reference}: config User {image_user!r} is too large")
    groups = {gid}
    for i, g in enumerate(_get(ctx, pod_sc, "supplementalGroups", "spec.securityContext", list, [])):
        if isinstance(g, bool) or not isinstance(g, int) or not 0 <= g < 2**32:
            raise ctx.fail(f"spec.securityContext.supplementalGroups[{i}]", "must be a group id")
        groups.add(g)
    fs_group = _id(ctx, pod_sc, "fsGroup", "spec.securityContext")
    if fs_group is not None:
        groups.add(fs_group)
    return {"UID": uid, "GID": gid, "AdditionalGids": sorted(groups)}


def cap_name(name: str) -> str:
    return name if name.startswith("CAP_") else f"CAP_{name}"


def _caps(ctx: _Ctx, c: Any, path: str) -> list[str]:
    """containerd's WithCapabilities: the default set, plus add, minus drop (ALL: every / none)."""
    _, sc = _sec(ctx, c, path)
    caps_obj = _get(ctx, sc, "capabilities", f"{path}.securityContext", Mapping, {})
    p = f"{path}.securityContext.capabilities"
    add = [cap_name(x) for x in (_strs(ctx, caps_obj, "add", p) or [])]
    drop = [cap_name(x) for x in (_strs(ctx, caps_obj, "drop", p) or [])]
    common = ctx.settings.doc["common"]
    caps = list(common["default_caps"])
    if "CAP_ALL" in add:
        caps = list(common["privileged_caps"])
    else:
        for cap in add:
            if cap not in caps:
                caps.append(cap)
    if "CAP_ALL" in drop:
        return []
    return [cap for cap in caps if cap not in drop]


def _cap_sets(caps: list[str]) -> dict[str, list[str]]:
    return {"Bounding": caps, "Effective": caps, "Inheritable": [], "Permitted": caps, "Ambient": []}


# --- mounts and storages -----------------------------------------------------------------------------------

def _policy_mount(m: Mapping[str, Any]) -> dict[str, Any]:
    """A settings mount as the rules compare it: ``$(shared)`` is a file Kata's runtime copies into the shared
    directory, named ``<container id>-<16 hex>-<basename of the destination>``."""
    source = str(m["source"])
    if source == "$(shared)":
        source = "$(sfprefix)" + re.escape(posixpath.basename(str(m["destination"]))) + "$"
    return {"destination": m["destination"], "source": source, "type_": m["type"], "options": list(m["options"])}


def _volume_mounts(ctx: _Ctx, c: Any, path: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(mounts, storages) the container's volumeMounts become."""
    volumes: dict[str, tuple[str, Any]] = {}
    for i, v in enumerate(_get(ctx, ctx.pod.spec, "volumes", "spec", list, [])):
        vname = _get(ctx, v, "name", f"spec.volumes[{i}]", str)
        if not vname:
            raise ctx.fail(f"spec.volumes[{i}].name", "a volume needs a name")
        if len(vname) > 63 or not DNS_LABEL.fullmatch(vname):  # it names a directory: no '/', no '..'
            raise ctx.fail(f"spec.volumes[{i}].name", f"{vname!r} is not a valid volume name (a DNS-1123 label)")
        volumes[vname] = (f"spec.volumes[{i}]", v)
    mounts: list[dict[str, Any]] = []
    storages: list[dict[str, Any]] = []
    seen_storages: set[str] = set()
    seen_dests: set[str] = set()
    settings_vols = ctx.settings.doc["volumes"]
    for i, vm in enumerate(_get(ctx, c, "volumeMounts", path, list, [])):
        p = f"{path}.volumeMounts[{i}]"
        vname = _get(ctx, vm, "name", p, str)
        dest = _get(ctx, vm, "mountPath", p, str)
        if not dest or not dest.startswith("/"):
            raise ctx.fail(f"{p}.mountPath", "must be an absolute path")
        if vname not in volumes:
            raise ctx.fail(f"{p}.name", f"no volume named {vname!r} in spec.volumes")
        if _get(ctx, vm, "subPath", p, str) or _get(ctx, vm, "subPathExpr", p, str):
            raise ctx.fail(f"{p}.subPath", "subPath mounts are not supported")
        if dest in seen_dests:
            raise ctx.fail(f"{p}.mountPath", f"{dest} is mounted twice")
        seen_dests.add(dest)
        ro = _get(ctx, vm, "readOnly", p, bool, False)
        vpath, vol = volumes[vname]
        rw = "ro" if ro else "rw"
        if "emptyDir" in vol:
            ed = _get(ctx, vol, "emptyDir", vpath, Mapping, {})
            medium = _get(ctx, ed, "medium", f"{vpath}.emptyDir", str, "")
            if medium not in ("", "Memory"):
                raise ctx.fail(f"{vpath}.emptyDir.medium", f"medium {medium!r} is not supported")
            s = settings_vols["emptyDir_memory" if medium == "Memory" else "emptyDir"]
            point = s["mount_point"] + vname
            if vname not in seen_storages:
                seen_storages.add(vname)
                storages.append({"driver": s["driver"], "driver_options": [], "source": s["source"],
                                 "fstype": s["fstype"], "options": list(s["options"]), "mount_point": point,
                                 "fs_group": None, "shared": False})
            mounts.append({"destination": dest, "source": point, "type_": "bind", "options": ["rbind", "rprivate", rw]})
        elif any(k in vol for k in ("configMap", "secret", "projected", "downwardAPI")):
            for kind, store, key, label in (("configMap", ctx.pod.config_maps, "name", "ConfigMap"),
                                            ("secret", ctx.pod.secrets, "secretName", "Secret")):
                if kind in vol:
                    ref = _get(ctx, vol, kind, vpath, Mapping, {})
                    _lookup(ctx, store, {"name": ref.get(key), "optional": ref.get("optional")}, f"{vpath}.{kind}",
                            label)
            # kubelet mounts these read-only (atomic writer volumes); Kata's runtime copies them to the shared dir
            source = "$(sfprefix)" + re.escape(posixpath.basename(dest.rstrip("/"))) + "$"
            mounts.append({"destination": dest, "source": source, "type_": "bind",
                           "options": ["rbind", "rprivate", "ro"]})
        elif "hostPath" in vol and _host_path(ctx, vol, vpath) in CONTAINER_SOURCES:
            mounts.append(_guest_socket_mount(ctx, vm, p, vol, vpath, dest))
        elif "hostPath" in vol:
            if not ctx.allow_host_path:
                raise ctx.fail(f"{vpath}.hostPath", "a hostPath volume exposes the host's files to the pod; "
                                                    "refused (allow with --allow-host-path)")
            hp = _get(ctx, _get(ctx, vol, "hostPath", vpath, Mapping, {}), "path", f"{vpath}.hostPath", str, "")
            if not hp.startswith("/"):  # also: a source starting with "^" or "$(sfprefix)" would read as a regex
                raise ctx.fail(f"{vpath}.hostPath.path", f"{hp!r} is not an absolute path")
            mounts.append({"destination": dest, "source": hp, "type_": "bind", "options": ["rbind", "rprivate", rw]})
        else:
            kinds = sorted(k for k in vol if k != "name")
            raise ctx.fail(vpath, f"volume type {', '.join(kinds) or '(none)'} is not supported")
    return mounts, storages


def _host_path(ctx: _Ctx, vol: Any, vpath: str) -> str:
    return str(_get(ctx, _get(ctx, vol, "hostPath", vpath, Mapping, {}), "path", f"{vpath}.hostPath", str, ""))


def _guest_socket_mount(ctx: _Ctx, vm: Any, p: str, vol: Any, vpath: str, dest: str) -> dict[str, Any]:
    """A hostPath volume naming one of the guest's attestation-agent / data-hub socket paths
    (agent/guest_components.py CONTAINER_SOURCES) is the guest's, not the node's: Kata's runtime leaves a
    guest path such as /dev/... or /sys/... as it is, and genpolicy pins such a source literally, which is
    what this does. No --allow-host-path is needed (no host file reaches the pod). The mount is pinned
    exactly: that source, that destination, a private read-only bind; the agent binds nothing else of the
    guest's. A client only connects, so anything but ``readOnly: true`` and the default propagation is refused;
    so is a ``type``, which the kubelet would check against the node's file system."""
    hp_doc = _get(ctx, vol, "hostPath", vpath, Mapping, {})
    source = _host_path(ctx, vol, vpath)
    kind = CONTAINER_SOURCES[source]
    got_type = _get(ctx, hp_doc, "type", f"{vpath}.hostPath", str, "")
    if got_type:
        raise ctx.fail(f"{vpath}.hostPath.type", f"{got_type!r}: leave the type out; {source} is the guest's {kind}, "
                                                 "and the kubelet would check the type on the node, which has none")
    if _get(ctx, vm, "readOnly", p, bool, False) is not True:
        raise ctx.fail(f"{p}.readOnly", f"the guest's {source} is only mounted read-only (readOnly: true): a "
                                        "container connects to the socket, it never changes it")
    propagation = _get(ctx, vm, "mountPropagation", p, str, "None")
    if propagation != "None":
        raise ctx.fail(f"{p}.mountPropagation", f"{propagation!r}: the guest's {source} is mounted with the default "
                                                "propagation (None) only")
    return {"destination": dest, "source": source, "type_": "bind", "options": ["rbind", "rprivate", "ro"]}


def _mounts(ctx: _Ctx, c: Any, path: str, extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Defaults, then the container's own; a later mount at the same destination replaces an earlier one (as
    containerd's WithMounts drops a default mount the CRI config names)."""
    dm = ctx.settings.doc["default_mounts"]
    by_dest: dict[str, dict[str, Any]] = {}
    _, sc = _sec(ctx, c, path)
    readonly = _get(ctx, sc, "readOnlyRootFilesystem", f"{path}.securityContext", bool, False)
    for m in [*dm["both"], *dm["container"]]:
        pm = _policy_mount(m)
        if readonly and pm["destination"] in ("/etc/hostname", "/etc/resolv.conf"):
            # containerd's containerMounts: the sandbox's hostname and resolv.conf are read-only with the root
            pm["options"] = ["ro" if o == "rw" else o for o in pm["options"]]
        by_dest[pm["destination"]] = pm
    tml = _get(ctx, c, "terminationMessagePath", path, str)
    if tml and tml != "/dev/termination-log":
        pm = by_dest.pop("/dev/termination-log")
        by_dest[tml] = pm | {"destination": tml, "source": "$(sfprefix)" + re.escape(posixpath.basename(tml)) + "$"}
    if _get(ctx, ctx.pod.spec, "automountServiceAccountToken", "spec", bool, True):
        by_dest[SERVICE_ACCOUNT_DIR] = {"destination": SERVICE_ACCOUNT_DIR, "source": "$(sfprefix)serviceaccount$",
                                        "type_": "bind", "options": ["rbind", "rprivate", "ro"]}
    for m in extra:
        by_dest[m["destination"]] = m
    return list(by_dest.values())


def layer_storages(layers: Sequence[Layer], settings: Settings) -> list[dict[str, Any]]:
    """The image's layers as the storages a container must name, bottom first (the overlay's order)."""
    ls = settings.doc["layers"]
    return [{"driver": ls["driver"],
             "driver_options": [f"{ROOTHASH}{layer.root_hash}", f"{HASHOFFSET}{layer.hash_offset}"],
             "source": ls["source"], "fstype": ls["fstype"], "options": list(ls["options"]),
             "mount_point": f"{ls['mount_point']}{i}$", "fs_group": None, "shared": False}
            for i, layer in enumerate(layers)]


# --- exec allow-lists --------------------------------------------------------------------------------------

def _probe_commands(ctx: _Ctx, c: Any, path: str) -> list[list[str]]:
    out: list[list[str]] = []
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        pr = _get(ctx, c, probe, path, Mapping)
        ex = _get(ctx, pr, "exec", f"{path}.{probe}", Mapping)
        cmd = _strs(ctx, ex, "command", f"{path}.{probe}.exec")
        if ex is not None and not cmd:
            raise ctx.fail(f"{path}.{probe}.exec.command", "an exec probe needs a command")
        if cmd and cmd not in out:
            out.append(cmd)
    return out


def _annotation_commands(ctx: _Ctx) -> list[list[str]]:
    key = ctx.settings.doc["exec_annotation"]
    annotations = ctx.pod.metadata.get("annotations") if isinstance(ctx.pod.metadata, Mapping) else None
    raw = annotations.get(key) if isinstance(annotations, Mapping) else None
    if raw is None:
        return []
    where = f"metadata.annotations[{key}]"
    if not isinstance(raw, str):
        raise ctx.fail(where, "must be a string holding a JSON list of argv lists")
    try:
        value = strictjson.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ctx.fail(where, f"is not strict JSON: {exc}") from None
    if (not isinstance(value, list) or
            not all(isinstance(a, list) and a and all(isinstance(s, str) for s in a) for a in value)):
        raise ctx.fail(where, 'must be a JSON list of non-empty argv lists, e.g. [["/bin/sh", "-c", "date"]]')
    return [list(a) for a in value]


# --- containers --------------------------------------------------------------------------------------------

def _linux(ctx: _Ctx, sysctls: Mapping[str, str], privileged: bool) -> dict[str, Any]:
    doc = ctx.settings.doc
    return {"Namespaces": [{"Type": t} for t in doc["namespaces"]],
            "MaskedPaths": [] if privileged else list(doc["masked_paths"]),
            "ReadonlyPaths": [] if privileged else list(doc["readonly_paths"]),
            "Sysctl": dict(sysctls), "Devices": []}


def _pod_sysctls(ctx: _Ctx) -> dict[str, str]:
    pod_sc = _get(ctx, ctx.pod.spec, "securityContext", "spec", Mapping, {})
    out: dict[str, str] = {}
    for i, s in enumerate(_get(ctx, pod_sc, "sysctls", "spec.securityContext", list, [])):
        p = f"spec.securityContext.sysctls[{i}]"
        name = _get(ctx, s, "name", p, str)
        if not name:
            raise ctx.fail(f"{p}.name", "a sysctl needs a name")
        out[name] = str(_get(ctx, s, "value", p, (str, int), ""))
    return out


def _pause(ctx: _Ctx) -> dict[str, Any]:
    pc = ctx.settings.doc["pause_container"]
    dm = ctx.settings.doc["default_mounts"]
    pod_sc = _get(ctx, ctx.pod.spec, "securityContext", "spec", Mapping, {})
    groups = {pc["gid"], *[g for g in _get(ctx, pod_sc, "supplementalGroups", "spec.securityContext", list, [])
                           if isinstance(g, int)]}
    return {
        "name": "pause",
        "image": pc["image"],
        "OCI": {
            "Version": ctx.settings.doc["oci_version"],
            "Root": {"Path": "^$(cpath)/$(bundle-id)/rootfs$", "Readonly": True},
            "Annotations": {TYPE_KEY: "sandbox", KATA_TYPE_KEY: "pod_sandbox"},
            "Process": {"Terminal": False, "Args": list(pc["args"]), "Env": list(pc["env"]), "Cwd": "/",
                        "User": {"UID": pc["uid"], "GID": pc["gid"], "AdditionalGids": sorted(groups)},
                        "NoNewPrivileges": True,
                        "Capabilities": _cap_sets(list(ctx.settings.doc["common"]["default_caps"]))},
            "Mounts": [_policy_mount(m) for m in [*dm["both"], *dm["pause"]]],
            "Linux": _linux(ctx, {**pc["sysctls"], **_pod_sysctls(ctx)}, False),
        },
        "storages": [],
        "devices": [],
        "exec_commands": [],
        "sandbox_pidns": False,
    }


def _container(ctx: _Ctx, c: Any, path: str, images: Mapping[str, ImageInfo],
               extra_exec: list[list[str]]) -> dict[str, Any]:
    ref = _get(ctx, c, "image", path, str)
    if not ref:
        raise ctx.fail(f"{path}.image", "a container needs an image")
    image = images.get(ref)
    if image is None:
        raise ctx.fail(f"{path}.image", f"image {ref!r} was not resolved (no ImageInfo for it)")
    if not image.layers:
        raise ctx.fail(f"{path}.image", f"image {ref!r} has no layers: a container's root comes from its layers")
    _, sc = _sec(ctx, c, path)
    privileged = _get(ctx, sc, "privileged", f"{path}.securityContext", bool, False)
    if privileged and not ctx.allow_privileged:
        raise ctx.fail(f"{path}.securityContext.privileged", "a privileged container can reach the guest kernel "
                                                             "and the agent; refused (allow with --allow-privileged)")
    env, own = _env(ctx, c, path, image)
    args = _args(ctx, c, path, image, own)
    cwd = _get(ctx, c, "workingDir", path, str) or _image_cfg(image).get("WorkingDir") or "/"
    if not isinstance(cwd, str):
        raise PolicyGenError(f"{ctx.pod.where}: image {image.reference}: config WorkingDir is not a string")
    ape = _get(ctx, sc, "allowPrivilegeEscalation", f"{path}.securityContext", bool)
    caps = list(ctx.settings.doc["common"]["privileged_caps"]) if privileged else _caps(ctx, c, path)
    vol_mounts, vol_storages = _volume_mounts(ctx, c, path)
    probes = _probe_commands(ctx, c, path)
    return {
        "name": c["name"],
        "image": image.pinned,
        "OCI": {
            "Version": ctx.settings.doc["oci_version"],
            "Root": {"Path": "^$(cpath)/$(bundle-id)/rootfs$",
                     "Readonly": _get(ctx, sc, "readOnlyRootFilesystem", f"{path}.securityContext", bool, False)},
            "Annotations": {TYPE_KEY: "container", KATA_TYPE_KEY: "pod_container"},
            "Process": {"Terminal": _get(ctx, c, "tty", path, bool, False), "Args": args, "Env": env, "Cwd": cwd,
                        "User": _user(ctx, c, path, image),
                        "NoNewPrivileges": ape is False,  # kubelet: only an explicit false sets no_new_privs
                        "Capabilities": _cap_sets(caps)},
            "Mounts": _mounts(ctx, c, path, vol_mounts),
            "Linux": _linux(ctx, {}, privileged),
        },
        "storages": layer_storages(image.layers, ctx.settings) + vol_storages,
        "devices": [],
        "exec_commands": probes + [a for a in extra_exec if a not in probes],
        "sandbox_pidns": False,
    }


def policy_data(pod: PodTemplate, images: Mapping[str, ImageInfo], settings: Settings, *,
                allow_privileged: bool = False, allow_host_path: bool = False) -> dict[str, Any]:
    """The policy_data document for one pod; ``images`` is keyed by the reference as the YAML writes it."""
    ctx = _Ctx(pod, settings, allow_privileged, allow_host_path)
    _check_pod(ctx)
    extra = _annotation_commands(ctx)
    containers = [_pause(ctx)] + [_container(ctx, c, path, images, extra) for path, c in _containers(ctx)]
    return {
        "containers": containers,
        "common": settings["common"],
        "sandbox": {"name": sandbox_name(pod), "namespace": pod.namespace, "storages": settings["sandbox"]["storages"]},
        "request_defaults": settings["request_defaults"],
    }


def render(policy_data: Mapping[str, Any]) -> str:
    """The policy text: the rules, then ``policy_data :=`` and the document as deterministic JSON."""
    body = json.dumps(policy_data, indent=2, sort_keys=True, ensure_ascii=False)
    return RULES.read_text(encoding="utf-8") + "\npolicy_data := " + body + "\n"
