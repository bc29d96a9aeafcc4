"""The requests a cocoon VM's agent receives for a pod, as the kubelet, containerd 1.6 and Kata's runtime build them.

This is the runtime's side of the policy, built from the pod spec and the image config alone: never from the
generated policy_data (generator/policy.py), so the acceptance test that runs these requests through the
generated policy can fail when the two disagree. Facts, each from where it is decided:

* kubelet (pkg/kubelet/kuberuntime, pkg/kubelet/kubelet_pods.go): env from envFrom, then env with ``$(VAR)``
  expansion, then the ``kubernetes`` service's variables; command/args expanded against that env; exec probes'
  commands; run-as user/group container over pod; supplemental groups plus fsGroup; no_new_privs only for an
  explicit ``allowPrivilegeEscalation: false``; /etc/hosts and /dev/termination-log mounts; configMap,
  secret, projected and downwardAPI volumes mounted read-only.
* containerd 1.6 (pkg/cri/server/container_create_linux.go, pkg/cri/opts/spec_linux.go, oci/spec.go): the
  default spec's PATH, mounts, masked and read-only paths, capabilities; HOSTNAME first, image env, then the
  CRI env, each replacing an earlier one of the same name in place; command replaces Entrypoint and drops Cmd,
  args replace Cmd; working dir from the CRI config, else the image's; /etc/hostname, /etc/resolv.conf
  (read-only with a read-only root) and /dev/shm; bind options rbind, rprivate, ro|rw; the
  ``io.kubernetes.cri.*`` annotations; the sandbox's sysctls and read-only root.
* Kata's runtime (src/runtime/virtcontainers/kata_agent.go): files behind bind mounts copied into the shared
  directory as ``<container id>-<16 hex>-<basename>``; /dev/shm bound to the sandbox's shm storage; emptyDir
  volumes as ``local`` storages; network and cgroup namespaces dropped and paths emptied; Root.Path
  ``<shared>/<id>/rootfs``; ``io.katacontainers.pkg.oci.*`` annotations.
* cocoon (agent/storage.py, launcher): the image's layers as ``blk`` storages on the disks with serial
  ``layer<N>`` (``/dev/disk/by-id/virtio-layer<N>``), mounted at ``<shared>/<id>/layers/<i>``, bottom first,
  pinning ``cocoon.verity.roothash`` and ``cocoon.verity.hashoffset``.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from google.protobuf import json_format

from agent.protocols import agent_pb2


# The records this module reads, by shape: generator.model's PodTemplate, ImageInfo and Layer and
# generator.settings' Settings fit them. launcher/ sits below generator/ (which may use launcher's layer
# builders), so it names no generator module; and the runtime's side knowing nothing of the generator is
# the point of this module.
class PodTemplate(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def metadata(self) -> Any: ...
    @property
    def spec(self) -> Any: ...
    @property
    def config_maps(self) -> Mapping[str, Mapping[str, str]]: ...
    @property
    def secrets(self) -> Mapping[str, Mapping[str, str]]: ...


class Layer(Protocol):
    @property
    def digest(self) -> str: ...
    @property
    def root_hash(self) -> str: ...
    @property
    def hash_offset(self) -> int: ...


class ImageInfo(Protocol):
    @property
    def reference(self) -> str: ...
    @property
    def pinned(self) -> str: ...
    @property
    def config(self) -> Mapping[str, Any]: ...
    @property
    def layers(self) -> Sequence[Layer]: ...


class Settings(Protocol):
    @property
    def doc(self) -> Mapping[str, Any]: ...
    @property
    def cpath(self) -> str: ...

# containerd oci/spec.go populateDefaultUnixSpec
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
                "CAP_KILL", "CAP_AUDIT_WRITE"]
# every capability the kernel knows (containerd's cap.Known() on a 5.9+ kernel), for privileged and add ALL
ALL_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
            "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
            "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
            "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
            "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
            "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
            "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
            "CAP_CHECKPOINT_RESTORE"]
MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
SPEC_MOUNTS = [
    ("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
    ("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
    ("/dev/pts", "devpts", "devpts", ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
    ("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
    ("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
    ("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
]
# containerd pkg/cri/server/sandbox_run_linux.go: the pause container's sysctls and resolv.conf mount
SANDBOX_SYSCTLS = {"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647"}
PAUSE_ARGS = ["/pause"]
PAUSE_USER = 65535
# Kata: kataGuestSandboxDir()/shm, and emptyDir volumes below the sandbox directory
SANDBOX_DIR = "/run/kata-containers/sandbox"
SHM_SIZE = 67108864
# the kubernetes service's variables (kubelet getServiceEnvVarMap), with a typical cluster IP
KUBERNETES_SERVICE = ["KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443",
                      "KUBERNETES_SERVICE_PORT_HTTPS=443", "KUBERNETES_PORT=tcp://10.96.0.1:443",
                      "KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP_PROTO=tcp",
                      "KUBERNETES_PORT_443_TCP_PORT=443", "KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1"]
# what a node fills in for downward API fields the pod spec cannot know
NODE_NAME = "node-1"
POD_IP = "10.244.1.7"
HOST_IP = "192.168.10.4"
POD_UID = "3f1c2b9e-7a4d-4e2b-9c1a-5d6e7f8a9b0c"
_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


class CriError(ValueError):
    """A pod the runtime could not build requests for (a device for a layer missing, no image for a container)."""


def _hex(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def container_id(sandbox_id: str, name: str) -> str:
    """containerd's ids are 64 hex digits; these are derived so a test can name them."""
    return _hex(sandbox_id, "container", name)


def pod_name(pod: PodTemplate) -> str:
    """The pod's name on the node: a Pod's own, a workload's generated one (ReplicaSet hash and suffix)."""
    return pod.name if pod.kind == "Pod" else f"{pod.name}-6d4cf56db6-x7k2p"


def _shared(cid: str, dest: str, seq: int) -> str:
    """Kata's name for a file it copies into the shared directory (random bytes; derived here)."""
    return f"{cid}-{_hex(cid, dest, str(seq))[:16]}-{posixpath.basename(dest.rstrip('/'))}"


def _mount(dest: str, typ: str, source: str, options: list[str]) -> dict[str, Any]:
    return {"destination": dest, "type": typ, "source": source, "options": list(options)}


def _annotations(pod: PodTemplate, sandbox_id: str, kind: str, cid: str) -> dict[str, str]:
    return {
        "io.kubernetes.cri.container-type": kind,
        "io.kubernetes.cri.sandbox-id": sandbox_id,
        "io.kubernetes.cri.sandbox-name": pod_name(pod),
        "io.kubernetes.cri.sandbox-namespace": pod.namespace,
        "io.katacontainers.pkg.oci.container_type": "pod_sandbox" if kind == "sandbox" else "pod_container",
        "io.katacontainers.pkg.oci.bundle_path": f"/run/containerd/io.containerd.runtime.v2.task/k8s.io/{cid}",
    }


def _replace_or_append(env: list[str], more: list[str]) -> list[str]:
    """containerd oci.WithEnv: a variable already set is replaced where it stands, a new one appended."""
    out = list(env)
    for e in more:
        name = e.split("=", 1)[0]
        for i, old in enumerate(out):
            if old.split("=", 1)[0] == name:
                out[i] = e
                break
        else:
            out.append(e)
    return out


def _expand(value: str, env: Mapping[str, str]) -> str:
    return _REF.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


def _downward(pod: PodTemplate, field_path: str) -> str:
    meta = pod.metadata if isinstance(pod.metadata, Mapping) else {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", field_path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    values = {"metadata.name": pod_name(pod), "metadata.namespace": pod.namespace, "metadata.uid": POD_UID,
              "spec.nodeName": NODE_NAME, "spec.serviceAccountName": pod.spec.get("serviceAccountName") or "default",
              "status.hostIP": HOST_IP, "status.podIP": POD_IP, "status.hostIPs": HOST_IP, "status.podIPs": POD_IP}
    if field_path not in values:
        raise CriError(f"downward API field {field_path!r} is not known")
    return str(values[field_path])


def _kubelet_env(pod: PodTemplate, c: Mapping[str, Any]) -> list[tuple[str, str]]:
    """kubelet makeEnvironmentVariables: envFrom, then env (expanded against what came before), then services."""
    env: dict[str, str] = {}
    for ef in c.get("envFrom") or []:
        prefix = ef.get("prefix") or ""
        for kind, store in (("configMapRef", pod.config_maps), ("secretRef", pod.secrets)):
            if kind in ef:
                for k, v in sorted((store.get(ef[kind]["name"]) or {}).items()):
                    if _ENV_NAME.fullmatch(prefix + k):
                        env[prefix + k] = v
    for ev in c.get("env") or []:
        vf = ev.get("valueFrom")
        if vf is None:
            env[ev["name"]] = _expand(ev.get("value") or "", env)
            continue
        got: str | None = None
        for kind, store in (("configMapKeyRef", pod.config_maps), ("secretKeyRef", pod.secrets)):
            if kind in vf:
                got = (store.get(vf[kind]["name"]) or {}).get(vf[kind]["key"])
        if "fieldRef" in vf:
            got = _downward(pod, vf["fieldRef"]["fieldPath"])
        if "resourceFieldRef" in vf:
            got = "1"
        if got is not None:
            env[ev["name"]] = got
    for e in KUBERNETES_SERVICE:
        name, value = e.split("=", 1)
        env.setdefault(name, value)
    return list(env.items())


def _image_config(image: ImageInfo) -> Mapping[str, Any]:
    cfg = image.config.get("config")
    return cfg if isinstance(cfg, Mapping) else {}


def _user(pod: PodTemplate, c: Mapping[str, Any], image: ImageInfo) -> dict[str, Any]:
    pod_sc = pod.spec.get("securityContext") or {}
    sc = c.get("securityContext") or {}
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    # containerd: WithUser(runAsUser if set, else the image's User), then runAsGroup if set
    user, _, group = (_image_config(image).get("User") or "").partition(":") if uid is None else ("", "", "")
    if uid is None:
        uid = int(user) if user else 0
    if gid is None:
        gid = int(group) if group else 0  # no /etc/passwd entry for a bare uid: group 0 (containerd WithUserID)
    groups = [gid] + [g for g in pod_sc.get("supplementalGroups") or [] if g != gid]
    if pod_sc.get("fsGroup") is not None and pod_sc["fsGroup"] not in groups:
        groups.append(pod_sc["fsGroup"])
    return {"UID": uid, "GID": gid, "AdditionalGids": groups}


def _caps(c: Mapping[str, Any]) -> dict[str, list[str]]:
    """containerd WithCapabilities: default set + add - drop, on bounding, effective and permitted."""
    caps_cfg = (c.get("securityContext") or {}).get("capabilities") or {}
    if (c.get("securityContext") or {}).get("privileged"):
        return {"Bounding": ALL_CAPS, "Effective": ALL_CAPS, "Permitted": ALL_CAPS}
    caps = list(DEFAULT_CAPS)
    if "ALL" in (caps_cfg.get("add") or []):
        caps = list(ALL_CAPS)
    for cap in caps_cfg.get("add") or []:
        if cap == "ALL":
            continue
        name = cap if cap.startswith("CAP_") else f"CAP_{cap}"
        if name not in caps:
            caps.append(name)
    drop = {cap if cap.startswith("CAP_") else f"CAP_{cap}" for cap in caps_cfg.get("drop") or []}
    caps = [] if "CAP_ALL" in drop else [cap for cap in caps if cap not in drop]
    return {"Bounding": caps, "Effective": caps, "Permitted": caps}


def _volume_mounts(pod: PodTemplate, c: Mapping[str, Any], cid: str) -> tuple[list[dict[str, Any]],
                                                                              list[dict[str, Any]]]:
    volumes = {v["name"]: v for v in pod.spec.get("volumes") or []}
    mounts: list[dict[str, Any]] = []
    storages: list[dict[str, Any]] = []
    for n, vm in enumerate(c.get("volumeMounts") or []):
        vol = volumes[vm["name"]]
        rw = "ro" if vm.get("readOnly") else "rw"
        if "emptyDir" in vol:
            memory = (vol.get("emptyDir") or {}).get("medium") == "Memory"
            point = f"{SANDBOX_DIR}/{'ephemeral' if memory else 'local'}/{vm['name']}"
            if not any(s["mount_point"] == point for s in storages):
                storages.append({"driver": "ephemeral", "source": "tmpfs", "fstype": "tmpfs", "options": [],
                                 "mount_point": point} if memory else
                                {"driver": "local", "source": "local", "fstype": "local", "options": ["mode=0777"],
                                 "mount_point": point})
            mounts.append(_mount(vm["mountPath"], "bind", point, ["rbind", "rprivate", rw]))
        elif "hostPath" in vol:
            mounts.append(_mount(vm["mountPath"], "bind", vol["hostPath"]["path"], ["rbind", "rprivate", rw]))
        else:  # configMap, secret, projected, downwardAPI: read-only, copied into the shared directory
            mounts.append(_mount(vm["mountPath"], "bind", "", ["rbind", "rprivate", "ro"]))
            mounts[-1]["source"] = f"{{cpath}}/{_shared(cid, vm['mountPath'], n)}"
    return mounts, storages


def _container_spec(pod: PodTemplate, c: Mapping[str, Any], image: ImageInfo, settings: Settings, sandbox_id: str,
                    cid: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    cpath = settings.cpath
    cfg = _image_config(image)
    sc = c.get("securityContext") or {}
    readonly = bool(sc.get("readOnlyRootFilesystem"))
    hostname = pod.spec.get("hostname") or pod_name(pod)
    kube_env = _kubelet_env(pod, c)
    env = _replace_or_append([DEFAULT_PATH], [f"HOSTNAME={hostname}"])
    env = _replace_or_append(env, list(cfg.get("Env") or []))
    env = _replace_or_append(env, [f"{k}={v}" for k, v in kube_env])
    lookup = dict(kube_env)
    command = [_expand(a, lookup) for a in c.get("command") or []]
    args = [_expand(a, lookup) for a in c.get("args") or []]
    if not command:
        command = list(cfg.get("Entrypoint") or [])
        if not args:
            args = list(cfg.get("Cmd") or [])
    ro_rw = "ro" if readonly else "rw"
    # kubelet's mounts (volumes, hosts, termination log) + containerd's (hostname, resolv.conf, shm)
    vol_mounts, vol_storages = _volume_mounts(pod, c, cid)
    cri_mounts = list(vol_mounts)
    if pod.spec.get("automountServiceAccountToken", True) is not False:
        cri_mounts.append(_mount("/var/run/secrets/kubernetes.io/serviceaccount", "bind",
                                 f"{cpath}/{_shared(cid, 'serviceaccount', 100)}", ["rbind", "rprivate", "ro"]))
    tml = c.get("terminationMessagePath") or "/dev/termination-log"
    for n, (dest, opts) in enumerate([("/etc/hosts", "rw"), (tml, "rw"), ("/etc/hostname", ro_rw),
                                      ("/etc/resolv.conf", ro_rw)]):
        cri_mounts.append(_mount(dest, "bind", f"{cpath}/{_shared(cid, dest, 200 + n)}", ["rbind", "rprivate", opts]))
    cri_mounts.append(_mount("/dev/shm", "bind", f"{SANDBOX_DIR}/shm", ["rbind"]))  # Kata's handleShm
    cri_mounts.append(_mount("/sys/fs/cgroup", "cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime", "ro"]))
    for m in cri_mounts:
        m["source"] = m["source"].replace("{cpath}", cpath)
    dests = {m["destination"] for m in cri_mounts}
    mounts = [_mount(*m) for m in SPEC_MOUNTS if m[0] not in dests] + sorted(
        cri_mounts, key=lambda m: len(m["destination"].rstrip("/").split("/")))
    spec = {
        "Version": settings.doc["oci_version"],
        "Process": {"Terminal": bool(c.get("tty")), "User": _user(pod, c, image), "Args": command + args, "Env": env,
                    "Cwd": c.get("workingDir") or cfg.get("WorkingDir") or "/", "Capabilities": _caps(c),
                    "NoNewPrivileges": sc.get("allowPrivilegeEscalation") is False},
        "Root": {"Path": f"{cpath}/{cid}/rootfs", "Readonly": readonly},
        "Mounts": mounts,
        "Annotations": {**_annotations(pod, sandbox_id, "container", cid),
                        "io.kubernetes.cri.container-name": c["name"],
                        "io.kubernetes.cri.image-name": image.pinned},
        "Linux": {"Namespaces": [{"Type": t, "Path": ""} for t in ("pid", "ipc", "uts", "mount")],
                  "MaskedPaths": [] if sc.get("privileged") else list(MASKED),
                  "ReadonlyPaths": [] if sc.get("privileged") else list(READONLY),
                  "CgroupsPath": f"/kubepods/{sandbox_id[:12]}/{cid}"},
    }
    return spec, vol_storages


def _layer_storages(image: ImageInfo, cid: str, cpath: str, layer_devices: Mapping[str, str]) -> list[dict[str, Any]]:
    out = []
    for i, layer in enumerate(image.layers):
        device = layer_devices.get(layer.root_hash)
        if device is None:
            raise CriError(f"image {image.reference}: no disk attached for layer {layer.digest}")
        out.append({"driver": "blk", "source": device, "fstype": "erofs", "options": ["ro"],
                    "driver_options": [f"cocoon.verity.roothash={layer.root_hash}",
                                       f"cocoon.verity.hashoffset={layer.hash_offset}"],
                    "mount_point": f"{cpath}/{cid}/layers/{i}"})
    return out


def sandbox_request(pod: PodTemplate, settings: Settings, sandbox_id: str) -> agent_pb2.CreateSandboxRequest:
    """CreateSandbox as Kata's runtime sends it: the hostname, the shm storage, no hooks, no modules."""
    body = {"hostname": pod.spec.get("hostname") or pod_name(pod), "sandbox_id": sandbox_id, "sandbox_pidns": False,
            "storages": [{"driver": "ephemeral", "source": "shm", "fstype": "tmpfs",
                          "options": ["noexec", "nosuid", "nodev", "mode=1777", f"size={SHM_SIZE}"],
                          "mount_point": f"{SANDBOX_DIR}/shm"}]}
    return json_format.ParseDict(body, agent_pb2.CreateSandboxRequest())


def _pause_request(pod: PodTemplate, settings: Settings, sandbox_id: str) -> agent_pb2.CreateContainerRequest:
    pod_sc = pod.spec.get("securityContext") or {}
    sysctls = {**SANDBOX_SYSCTLS, **{s["name"]: str(s["value"]) for s in pod_sc.get("sysctls") or []}}
    groups = [PAUSE_USER] + [g for g in pod_sc.get("supplementalGroups") or [] if g != PAUSE_USER]
    cpath = settings.cpath
    mounts = [_mount(*m) for m in SPEC_MOUNTS if m[0] != "/dev/shm"] + [
        _mount("/dev/shm", "bind", f"{SANDBOX_DIR}/shm", ["rbind"]),
        _mount("/etc/resolv.conf", "bind", f"{cpath}/{_shared(sandbox_id, '/etc/resolv.conf', 0)}",
               ["rbind", "ro", "nosuid", "nodev", "noexec"])]
    spec = {
        "Version": settings.doc["oci_version"],
        "Hostname": pod.spec.get("hostname") or pod_name(pod),
        "Process": {"Terminal": False, "User": {"UID": PAUSE_USER, "GID": PAUSE_USER, "AdditionalGids": groups},
                    "Args": PAUSE_ARGS, "Env": [DEFAULT_PATH], "Cwd": "/", "NoNewPrivileges": True,
                    "Capabilities": {"Bounding": DEFAULT_CAPS, "Effective": DEFAULT_CAPS, "Permitted": DEFAULT_CAPS}},
        "Root": {"Path": f"{cpath}/{sandbox_id}/rootfs", "Readonly": True},
        "Mounts": mounts,
        "Annotations": {**_annotations(pod, sandbox_id, "sandbox", sandbox_id),
                        "io.kubernetes.cri.sandbox-log-directory":
                            f"/var/log/pods/{pod.namespace}_{pod_name(pod)}_{POD_UID}"},
        "Linux": {"Namespaces": [{"Type": t, "Path": ""} for t in ("pid", "ipc", "uts", "mount")],
                  "MaskedPaths": list(MASKED), "ReadonlyPaths": list(READONLY), "Sysctl": sysctls,
                  "CgroupsPath": f"/kubepods/{sandbox_id[:12]}/{sandbox_id}"},
    }
    body = {"container_id": sandbox_id, "exec_id": sandbox_id, "OCI": spec, "storages": []}
    return json_format.ParseDict(body, agent_pb2.CreateContainerRequest())


def _pod_containers(pod: PodTemplate) -> list[Mapping[str, Any]]:
    return [*(pod.spec.get("initContainers") or []), *(pod.spec.get("containers") or [])]


def container_requests(pod: PodTemplate, images: Mapping[str, ImageInfo], settings: Settings, sandbox_id: str,
                       layer_devices: Mapping[str, str]) -> list[tuple[str, agent_pb2.CreateContainerRequest]]:
    """(name, CreateContainerRequest) for the pause container ("pause") and then each container in order.

    ``images`` is keyed by the reference the YAML writes; ``layer_devices`` maps a layer's root hash to the
    guest device its disk appears as (``/dev/disk/by-id/virtio-layer<N>``)."""
    out = [("pause", _pause_request(pod, settings, sandbox_id))]
    for c in _pod_containers(pod):
        image = images.get(c["image"])
        if image is None:
            raise CriError(f"no image for container {c['name']} ({c['image']})")
        cid = container_id(sandbox_id, c["name"])
        spec, vol_storages = _container_spec(pod, c, image, settings, sandbox_id, cid)
        storages = _layer_storages(image, cid, settings.cpath, layer_devices) + vol_storages
        body = {"container_id": cid, "exec_id": cid, "OCI": spec, "storages": storages}
        out.append((c["name"], json_format.ParseDict(body, agent_pb2.CreateContainerRequest())))
    return out


def probe_commands(c: Mapping[str, Any]) -> list[list[str]]:
    """The exec probes' commands, as the kubelet runs them (startup, liveness, readiness)."""
    out = []
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        cmd = ((c.get(probe) or {}).get("exec") or {}).get("command")
        if cmd:
            out.append(list(cmd))
    return out


def exec_request(create: agent_pb2.CreateContainerRequest, argv: list[str], exec_id: str = "probe",
                 tty: bool = False) -> agent_pb2.ExecProcessRequest:
    """ExecProcess for a command in a created container: containerd's execInternal takes the container's
    process and replaces args and terminal; Kata's runtime sends no capabilities (the agent uses the
    container's)."""
    proc = create.OCI.Process
    body = {"container_id": create.container_id, "exec_id": exec_id,
            "process": {"Terminal": tty, "Args": list(argv), "Env": list(proc.Env), "Cwd": proc.Cwd,
                        "User": json_format.MessageToDict(proc.User, preserving_proto_field_name=True),
                        "NoNewPrivileges": proc.NoNewPrivileges}}
    return json_format.ParseDict(body, agent_pb2.ExecProcessRequest())


# What a node writes into the files behind a container's bind mounts (kubelet's managed /etc/hosts, the
# sandbox's hostname and resolv.conf as containerd writes them); cluster DNS values are a typical cluster's.
CLUSTER_DNS = "10.96.0.10"
FILE_MOUNTS = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")


def _file_content(pod: PodTemplate, dest: str) -> bytes:
    hostname = pod.spec.get("hostname") or pod_name(pod)
    if dest == "/etc/hosts":
        return (f"# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"
                f"{POD_IP}\t{hostname}\n").encode()
    if dest == "/etc/hostname":
        return f"{hostname}\n".encode()
    if dest == "/etc/resolv.conf":
        ns = pod.namespace
        return (f"search {ns}.svc.cluster.local svc.cluster.local cluster.local\nnameserver {CLUSTER_DNS}\n"
                "options ndots:5\n").encode()
    return b""  # the termination log starts empty


def shared_files(pod: PodTemplate, create: agent_pb2.CreateContainerRequest,
                 settings: Settings) -> list[agent_pb2.CopyFileRequest]:
    """The CopyFile requests Kata's runtime sends before ``create`` (kata_agent.go ``copyFile``, for guests
    without a shared file system): one per bind mount whose source is in the shared directory, a regular file
    for the node's files (hosts, hostname, resolv.conf, the termination log) and a directory for a volume
    (its files are the runtime's to fill; cocoon's shim does, issue 23). Root-owned, as the node's files are."""
    cpath = settings.cpath.rstrip("/") + "/"
    name = create.OCI.Annotations.get("io.kubernetes.cri.container-name", "")
    container = next((c for c in _pod_containers(pod) if c.get("name") == name), {})
    files = {*FILE_MOUNTS, container.get("terminationMessagePath") or "/dev/termination-log"}
    out = []
    for m in create.OCI.Mounts:
        if m.type != "bind" or not m.source.startswith(cpath):
            continue
        if m.destination in files:
            data = _file_content(pod, m.destination)
            out.append(agent_pb2.CopyFileRequest(path=m.source, file_size=len(data), file_mode=0o100644,
                                                 dir_mode=0o755, uid=0, gid=0, offset=0, data=data))
        else:
            out.append(agent_pb2.CopyFileRequest(path=m.source, file_mode=0o040755, dir_mode=0o755, uid=0, gid=0))
    return out
