"""cocoon's test pod in genpolicy's shape: its policy (tests/policies/pod.rego) and the requests it allows.

    python -m launcher.podspec   # rewrite tests/policies/pod.rego: generator/rules.rego + policy_data (deterministic)

The pod ("demo-pod" in "default"): the pause container, "web" (runs from a
dm-verity erofs layer whose root hash the policy pins, may exec two probe
commands), "sidecar" and the workers. Five "worker-N"
containers make the document as large as genpolicy's output for a real pod
(~70 KB), so the startup and policy benchmarks pay for a realistic size.
``web_request`` is a CreateContainerRequest for "web" as the Kata runtime would
send it (tests and bench/policy.py).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from agent.protocols import agent_pb2

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "tests" / "policies"
RULES = ROOT / "generator" / "rules.rego"
WEB_LAYER_ROOT_HASH = "5b1e8f0c0a7f3d9a6c2b4e8d1f0a3c5e7b9d2f4a6c8e0b1d3f5a7c9e1b3d5f70"
WEB_LAYER_HASH_OFFSET = 1 << 20  # the erofs data size: the hash tree follows it on the layer's disk
WEB_LAYER_OPTIONS = [f"cocoon.verity.roothash={WEB_LAYER_ROOT_HASH}",
                     f"cocoon.verity.hashoffset={WEB_LAYER_HASH_OFFSET}"]
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
                "CAP_KILL", "CAP_AUDIT_WRITE"]
PRIVILEGED_CAPS = [*DEFAULT_CAPS, "CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE",
                   "CAP_SYS_RAWIO", "CAP_BPF", "CAP_PERFMON"]


def env(prefix: str, n: int) -> list[str]:
    base = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=$(sandbox-name)"]
    return base + [f"{prefix}_SETTING_{i:03d}=value-{i:03d}-" + "x" * (i % 40) for i in range(n)]


def caps(kind: str) -> dict[str, list[str]]:
    return {k: [kind] for k in ("Bounding", "Effective", "Permitted")} | {"Inheritable": [], "Ambient": []}


def mounts() -> list[dict[str, object]]:
    out: list[dict[str, object]] = [
        {"destination": "/proc", "source": "proc", "type_": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "source": "tmpfs", "type_": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/sys", "source": "sysfs", "type_": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    ]
    for name in ("hosts", "hostname", "resolv.conf", "termination-log"):
        out.append({"destination": f"/etc/{name}" if name != "termination-log" else "/dev/termination-log",
                    "source": f"^$(cpath)/$(bundle-id)-[a-z0-9]{{16}}-{name}$", "type_": "bind",
                    "options": ["rbind", "rprivate", "rw"]})
    return out


def container(name: str, image: str, args: list[str], env_list: list[str], cap_kind: str,
              storages: list[dict[str, object]], exec_commands: list[list[str]]) -> dict[str, object]:
    return {
        "name": name,
        "image": image,
        "OCI": {
            "Version": "1.1.0",
            "Root": {"Path": "^$(cpath)/$(bundle-id)/rootfs$", "Readonly": name == "pause"},
            "Annotations": {
                "io.kubernetes.cri.container-type": "container" if name != "pause" else "sandbox",
                "io.katacontainers.pkg.oci.container_type": "pod_container" if name != "pause" else "pod_sandbox",
            },
            "Process": {
                "Terminal": False, "Args": args, "Env": env_list, "Cwd": "/",
                "User": {"UID": 65535 if name == "pause" else 1000, "GID": 65535 if name == "pause" else 1000,
                         "AdditionalGids": []},
                "NoNewPrivileges": name != "sidecar",
                "Capabilities": caps(cap_kind),
            },
            "Mounts": mounts(),
            "Linux": {"Namespaces": [{"Type": t} for t in ("ipc", "uts", "mount", "pid", "network")],
                      "MaskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                                      "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                                      "/proc/scsi", "/sys/firmware"],
                      "ReadonlyPaths": ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                        "/proc/sysrq-trigger"],
                      # the sysctls containerd gives a pause container (genpolicy-settings.json's pause_container)
                      "Sysctl": {"net.ipv4.ip_unprivileged_port_start": "0",
                                 "net.ipv4.ping_group_range": "0 2147483647"} if name == "pause" else {},
                      "Devices": []},
        },
        "storages": storages,
        "devices": [],
        "exec_commands": exec_commands,
        "sandbox_pidns": False,
    }


def policy_data() -> dict[str, Any]:
    layer = {"driver": "blk", "driver_options": WEB_LAYER_OPTIONS,
             "source": "^/dev/vd[b-z]$", "fstype": "erofs", "options": ["ro"],
             "mount_point": "^$(cpath)/$(bundle-id)/layers/0$", "shared": False}
    return {
        "containers": [
            container("pause", "pause:3.9", ["/pause"], ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"],
                      "$(default_caps)", [], []),
            container("web", "registry.example/web@sha256:" + "a1" * 32, ["/bin/web", "--port", "8080"],
                      env("WEB", 40), "$(default_caps)", [layer],
                      [["/bin/ls", "/"], ["cat", "/etc/hostname"]]),
            container("sidecar", "registry.example/sidecar@sha256:" + "b2" * 32, ["/bin/sidecar"],
                      env("SIDECAR", 40), "$(default_caps)", [], [["/bin/sidecar", "--health"]]),
            *(container(f"worker-{n}", f"registry.example/worker-{n}@sha256:" + f"{n:02x}" * 32,
                        ["/bin/worker", f"--shard={n}"], env(f"WORKER{n}", 40), "$(default_caps)", [],
                        [["/bin/worker", "--health"]]) for n in range(5)),
        ],
        "common": {
            "cpath": "/run/kata-containers/shared/containers",
            "sfprefix": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-",
            "ipv4_a": "100(\\.\\d{1,3}){3}",
            "svc_name": "[A-Z_\\.\\-]+",
            "dns_label": "[a-zA-Z0-9_\\.\\-]+",
            "default_caps": DEFAULT_CAPS,
            "privileged_caps": PRIVILEGED_CAPS,
            "free_annotations": ["^io\\.kubernetes\\.cri\\.", "^io\\.katacontainers\\.pkg\\.oci\\."],
        },
        "sandbox": {
            "name": "demo-pod",
            "namespace": "default",
            "storages": [{"driver": "ephemeral", "driver_options": [], "source": "^shm$", "fstype": "tmpfs",
                          "options": ["noexec", "nosuid", "nodev", "mode=1777", "size=67108864"],
                          "mount_point": "^/run/kata-containers/sandbox/shm$", "shared": False}],
        },
        "request_defaults": {
            "CreateContainerRequest": {"allow_env_regex": [
                "^HOSTNAME=$(dns_label)$",
                "^$(svc_name)_PORT_\\d+_TCP=tcp://$(ipv4_a):\\d+$",
                "^$(svc_name)_SERVICE_HOST=$(ipv4_a)$",
                "^$(svc_name)_SERVICE_PORT=\\d+$",
            ]},
            "CopyFileRequest": ["$(sfprefix)"],
            "ExecProcessRequest": {"allowed_commands": [], "regex": []},
            "UpdateInterfaceRequest": {"allow_raw_flags": 128, "forbidden_names": ["lo"],
                                       "forbidden_hw_addrs": ["00:00:00:00:00:00"]},
            "UpdateRoutesRequest": {"forbidden_device_names": ["lo"], "forbidden_source_regex": ["^127\\."]},
            "AddARPNeighborsRequest": {"forbidden_device_names": ["lo"], "allowed_states": [2, 128]},
            "ListInterfacesRequest": True,
            "ListRoutesRequest": True,
            "CloseStdinRequest": False,
            "ReadStreamRequest": True,
            "WriteStreamRequest": False,
            "SetPolicyRequest": False,
        },
    }


def render() -> str:
    rules = RULES.read_text()
    return rules + "\npolicy_data := " + json.dumps(policy_data(), indent=2) + "\n"


# --- the requests it allows ------------------------------------------------------------------------------

CPATH = "/run/kata-containers/shared/containers"
POLICY_TEXT = (HERE / "pod.rego").read_text()


def web_spec(container_id: str) -> dict[str, Any]:
    data = policy_data()
    web = data["containers"][1]
    oci: dict[str, Any] = copy.deepcopy(web["OCI"])
    oci["Root"] = {"Path": f"{CPATH}/{container_id}/rootfs", "Readonly": False}
    oci["Annotations"] = {
        **oci["Annotations"],
        "io.kubernetes.cri.image-name": web["image"],
        "io.kubernetes.cri.container-name": "web",
        "io.kubernetes.cri.sandbox-name": "demo-pod",
        "io.kubernetes.cri.sandbox-namespace": "default",
        "io.kubernetes.cri.sandbox-id": "f" * 64,
    }
    proc = oci["Process"]
    proc["Env"] = ["HOSTNAME=demo-pod" if e == "HOSTNAME=$(sandbox-name)" else e for e in proc["Env"]]
    proc["Env"].append("WEB_SERVICE_HOST=100.64.0.10")
    proc["Capabilities"] = {k: (DEFAULT_CAPS if v else []) for k, v in proc["Capabilities"].items()}
    mounts = []
    for m in oci["Mounts"]:
        source = m["source"]
        if source.startswith("^"):  # a regex in the policy: the runtime's concrete path
            source = f"{CPATH}/{container_id}-0123456789abcdef-{m['destination'].rsplit('/', 1)[-1]}"
        mounts.append({"destination": m["destination"], "source": source, "type": m["type_"],
                       "options": m["options"]})
    oci["Mounts"] = mounts
    oci["Linux"]["Namespaces"] = [{"Type": ns["Type"], "Path": ""} for ns in oci["Linux"]["Namespaces"]]
    return oci


def web_request(container_id: str = "c0ffee00c0ffee00", **edits: Any) -> agent_pb2.CreateContainerRequest:
    """A CreateContainerRequest the test policy allows; ``edits`` are applied to its JSON first."""
    body: dict[str, Any] = {
        "container_id": container_id,
        "exec_id": container_id,
        "storages": [{
            "driver": "blk",
            "driver_options": list(WEB_LAYER_OPTIONS),
            "source": "/dev/vdb", "fstype": "erofs", "options": ["ro"],
            "mount_point": f"{CPATH}/{container_id}/layers/0",
        }],
        "OCI": web_spec(container_id),
    }
    for path, value in edits.items():
        node = body
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return json_format.ParseDict(body, agent_pb2.CreateContainerRequest())


if __name__ == "__main__":
    out = HERE / "pod.rego"
    out.write_text(render())
    print(f"wrote {out} ({out.stat().st_size} bytes)")
