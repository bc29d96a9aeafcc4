"""The demo pod: one busybox layer under dm-verity, a policy that pins it, and the requests a runtime sends.

What Kata's runtime and genpolicy would produce for a one-container pod,
cut to what shows the guarantees: the layer's verity root hash is in the
policy (a host that swaps the disk gets a mount error, one that names
another hash gets a denial), a container runs only as the policy describes
it and an exec only as its container runs (every field Kata's rules
compare, not just the command), and everything the pod does not need
(CopyFile, SetPolicy, network changes, ...) is denied by default. The
policy's ``print`` lines are what a denial says: each names the field.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import AgentError
from launcher import layers

SHARED = "/run/kata-containers/shared/containers"
APPLETS = ("sh", "echo", "cat", "sleep", "kill", "pidof", "uname", "ls", "true")
MAIN_COMMAND = ["sh", "-c", "echo hello from a verified layer; uname -sr"]
SERVICE_COMMAND = ["sleep", "3600"]  # a long-running container to exec into
PROBE_COMMAND = ["echo", "probe ok"]
# Only with chaos=True (the QEMU tests): a container that hunts for the agent and tries to kill it. It runs in a
# PID namespace of its own (the agent gives every container one, whatever the request lists), so it finds
# nothing: it prints "no agent in sight" and "pid 1", and the agent keeps serving.
KILL_AGENT_COMMAND = ["sh", "-c", "if pidof python3; then kill -9 $(pidof python3); else echo no agent in sight; fi; "
                                  "kill -9 -1; echo pid $$"]
KILL_AGENT_OUTPUT = b"no agent in sight\npid 1\n"
# Allowed whatever they ask (RemoveContainer also forgets the container in pstate: the rules below).
ALLOWED = ("DestroySandbox", "StartContainer", "WaitProcess", "ReadStream",
           "SignalProcess", "GetOOMEvent", "GuestDetails", "StatsContainer", "CloseStdin", "WriteStream")


class PodError(AgentError):
    """The demo pod's layer or policy could not be made."""


@dataclass(frozen=True)
class Layer:
    path: Path
    root_hash: str
    hash_offset: int


def build_layer(dest: Path, busybox: str = "/usr/bin/busybox") -> Layer:
    """A busybox erofs image with its dm-verity tree appended (fixed salt: same inputs, same root hash)."""
    from agent.verity import format_hash_area

    if not os.path.exists(busybox) or not shutil.which("mkfs.erofs"):
        raise PodError(f"the demo layer needs {busybox} (busybox-static) and mkfs.erofs (erofs-utils): make setup")
    tree = dest.with_suffix(".tree")
    shutil.rmtree(tree, ignore_errors=True)
    layers.busybox_tree(tree, APPLETS, busybox)
    (tree / "etc" / "motd").write_text("this file comes from a dm-verity protected erofs layer\n")
    data = dest.with_suffix(".erofs")
    subprocess.run(["mkfs.erofs", "-T0", "-U", "00000000-0000-4000-8000-000000000000", "--all-root", "-x-1",
                    str(data), str(tree)], check=True, capture_output=True)
    shutil.rmtree(tree)
    size = data.stat().st_size
    if size % 4096:
        with data.open("ab") as f:
            f.write(bytes(4096 - size % 4096))
        size = data.stat().st_size
    salt = hashlib.sha256(b"cocoon demo layer salt").digest()
    root_hash, area = format_hash_area(str(data), salt, salt[:16])
    with data.open("ab") as f:
        f.write(area)
    data.rename(dest)
    return Layer(dest, root_hash.hex(), size)


# Where the runtime puts a container's files: named after its id, which the policy substitutes.
BUNDLE_ID = "$(bundle-id)"
# Any virtio layer disk may back the layer: dm-verity, with the root hash the policy pins, checks its bytes.
LAYER_SOURCE = "^/dev/disk/by-id/virtio-layer[0-9]+$"
NO_USER = {"UID": 0, "GID": 0, "AdditionalGids": [], "Username": ""}  # an unset User: what the agent runs as
CAP_SETS = ("Bounding", "Effective", "Inheritable", "Permitted", "Ambient")
# The sandbox's /dev/shm as Kata's runtime asks for it in CreateSandbox (genpolicy's sandbox.storages).
SHM_STORAGE = {"driver": "ephemeral", "driver_options": [], "source": "shm", "fstype": "tmpfs",
               "options": ["noexec", "nosuid", "nodev", "mode=1777", "size=67108864"],
               "mount_point": "/run/kata-containers/sandbox/shm"}


def expected_container(args: list[str], layer: Layer, exec_commands: list[list[str]], **kw: Any) -> dict[str, Any]:
    """One entry of the policy's ``pod.containers``: the fields of the demo's own request that the rules compare.

    Taken from ``container_request`` as the agent's policy input shows it (agent.policy.serde), so the
    policy admits exactly what the demo sends, the way genpolicy derives a policy from the pod's spec.
    """
    from google.protobuf import json_format

    from agent.policy.serde import to_dict
    from agent.protocols import agent_pb2

    req = json_format.ParseDict(container_request(BUNDLE_ID, args, layer, **kw), agent_pb2.CreateContainerRequest())
    doc = to_dict(req)
    oci, proc, linux = doc["OCI"], doc["OCI"]["Process"], doc["OCI"]["Linux"]
    return {
        "OCI": {
            "Version": oci["Version"], "Root": oci["Root"], "Annotations": oci["Annotations"],
            "Process": {"Terminal": proc["Terminal"], "Args": proc["Args"], "Env": proc["Env"], "Cwd": proc["Cwd"],
                        "User": proc["User"] or NO_USER,
                        "Capabilities": proc["Capabilities"] or {key: [] for key in CAP_SETS},
                        "NoNewPrivileges": proc["NoNewPrivileges"]},
            "Mounts": oci["Mounts"],
            "Linux": {k: linux[k] for k in ("Namespaces", "MaskedPaths", "ReadonlyPaths", "Sysctl", "Devices")},
        },
        "storages": [dict(s, source=LAYER_SOURCE) for s in doc["storages"]],
        "sandbox_pidns": doc["sandbox_pidns"],
        "exec_commands": exec_commands,
    }


def policy(layer: Layer, chaos: bool = False) -> str:
    """The pod's Rego policy (Kata's agent_policy package; regorus evaluates it as Kata's agent does)."""
    containers = [expected_container(MAIN_COMMAND, layer, []),
                  expected_container(SERVICE_COMMAND, layer, [PROBE_COMMAND])]
    if chaos:
        containers.append(expected_container(KILL_AGENT_COMMAND, layer, []))
    defaults = "\n".join([*(f"default {name}Request := true" for name in ALLOWED),
                          *(f"default {name} := false" for name in _denied_requests())])
    document = {"sandbox_storages": [SHM_STORAGE], "containers": containers}
    return POLICY_RULES.replace("@DEFAULTS@", defaults) + "pod := " + json.dumps(document, indent=2) + "\n"


def _denied_requests() -> list[str]:
    """Every other AgentService request: denied by a rule of its own, so the agent answers PERMISSION_DENIED
    (an endpoint the policy leaves undefined is an engine error, INTERNAL, which says nothing about why)."""
    from agent.protocols import agent_pb2

    ruled = {f"{name}Request" for name in ALLOWED} | {
        "CreateSandboxRequest", "CreateContainerRequest", "ExecProcessRequest", "RemoveContainerRequest"}
    methods = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].methods
    return sorted({m.input_type.name for m in methods} - ruled)


def initdata_document(layer: Layer, chaos: bool = False) -> bytes:
    from agent.initdata import render_document

    return render_document({"policy.rego": policy(layer, chaos)})


def container_request(cid: str, args: list[str], layer: Layer,
                      device: str = "/dev/disk/by-id/virtio-layer0") -> dict[str, Any]:
    """CreateContainerRequest JSON (proto field names) for a container of the demo pod.

    Root.Path is what Kata's runtime sends; the agent does not use it (the root is the layer's overlay).
    """
    caps = ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]
    return layers.container_request(
        cid, args, device, layer.root_hash, layer.hash_offset, SHARED,
        mounts=[layers.PROC_MOUNT, layers.DEV_MOUNT],
        namespaces=["ipc", "uts", "mount", "network", "pid"],
        process={"NoNewPrivileges": True, "Capabilities": {k: caps for k in ("Bounding", "Effective", "Permitted")}},
        Hostname="demo-pod")


def exec_request(cid: str, exec_id: str, args: list[str]) -> dict[str, Any]:
    """ExecProcessRequest JSON: an exec runs with its container's cwd, user, env and no_new_privileges and names
    no capabilities (it gets the container's): what Kata's rules and the pod's policy ask of it."""
    proc = container_request(cid, args, Layer(Path(), "00" * 32, 0))["OCI"]["Process"]
    process = {k: v for k, v in proc.items() if k not in ("Capabilities", "Terminal", "ConsoleSize")}
    return {"container_id": cid, "exec_id": exec_id, "process": process | {"Args": args}}


# The demo policy's rules (our own Rego); policy() fills in the defaults and appends the pod document.
POLICY_RULES = r"""package agent_policy

import future.keywords.contains
import future.keywords.every
import future.keywords.if
import future.keywords.in

# cocoon demo pod: generated by launcher/pod.py from the requests the demo sends. Requests not
# named here are denied; CreateSandbox is checked as Kata's rule checks it. A container is
# created only as `pod.containers` describes it, in every field Kata's genpolicy rules compare
# (kata-containers src/tools/genpolicy/rules.rego: process args, env, cwd, user, capabilities,
# no_new_privileges, terminal, mounts, namespaces, storages with the layer's dm-verity root
# hash, devices, sysctls, masked/read-only paths); an exec only runs a listed command, in a
# container created under this policy, with that container's cwd, user, env, no_new_privileges
# and terminal and no capabilities of its own. Each denial prints what did not match.
@DEFAULTS@
default CreateSandboxRequest := false
default CreateContainerRequest := {"allowed": false}
default ExecProcessRequest := false
default RemoveContainerRequest := {"allowed": true, "ops": []}

# --- CreateSandbox (Kata: CreateSandboxRequest): no guest hooks, no kernel modules, no shared PID
# namespace, and only the pod's sandbox storages (the agent mounts each one where it says)

CreateSandboxRequest if count(sandbox_faults) == 0

CreateSandboxRequest := false if {
	some fault in sandbox_faults
	print("sandbox refused:", fault)
}

sandbox_faults contains "guest_hook_path is not allowed" if not same(field(input, "guest_hook_path"), "")

sandbox_faults contains "kernel_modules are not allowed" if not same(size(field(input, "kernel_modules")), 0)

sandbox_faults contains "sandbox_pidns is not allowed" if not same(field(input, "sandbox_pidns"), false)

sandbox_faults contains msg if {
	some s in input.storages
	not sandbox_storage_allowed(s)
	msg := sprintf("storage %s is not the pod's", [show(s)])
}

sandbox_storage_allowed(s) if {
	some ps in pod.sandbox_storages
	every key, value in ps {
		s[key] == value
	}
	object.get(s, "fs_group", null) == null
	object.get(s, "shared", false) == false
}

# --- CreateContainer: one of pod.containers, recorded in pstate (container id -> index)

CreateContainerRequest := {"allowed": true, "ops": [op]} if {
	idx := create_match
	op := {"op": "add", "path": concat("/", ["/pstate", input.container_id]), "value": idx}
}

CreateContainerRequest := {"allowed": false} if {
	not create_match
	some fault in create_faults
	print("container", text(field(input, "container_id")), "is not this pod's:", fault)
}

RemoveContainerRequest := {"allowed": true, "ops": [{"op": "remove", "path": path}]} if {
	data.pstate[input.container_id]
	path := concat("/", ["/pstate", input.container_id])
}

create_match := min(ok) if {
	count(request_faults) == 0
	ok := candidates - {f[0] | some f in container_faults}
	count(ok) > 0
}

create_faults := request_faults | {f[1] | some f in container_faults}

# The pod's containers differ by their command: a request is compared with those it names.
candidates contains idx if {
	some idx, p in pod.containers
	p.OCI.Process.Args == input.OCI.Process.Args
}

request_faults contains "the request has no OCI spec" if not is_object(input.OCI)

request_faults contains msg if {
	some key in ["Process", "Root", "Linux", "Annotations"]
	not is_object(field(input.OCI, key))
	msg := sprintf("the OCI spec has no %s", [key])
}

request_faults contains msg if {
	is_object(input.OCI.Process)
	count(candidates) == 0
	msg := sprintf("command %s is not one of the pod's", [show(field(input.OCI.Process, "Args"))])
}

request_faults contains msg if {
	data.pstate[input.container_id]
	msg := "its id is already in use"
}

request_faults contains "shared_mounts are not allowed" if not same(count(input.shared_mounts), 0)

request_faults contains "string_user is not allowed" if not is_null(input.string_user)

request_faults contains msg if {
	some key in ["Hooks", "Solaris", "Windows"]
	not is_null(field(input.OCI, key))
	msg := sprintf("OCI %s are not allowed", [key])
}

request_faults contains msg if {
	some key in ["UIDMappings", "GIDMappings"]
	not same(count(input.OCI.Linux[key]), 0)
	msg := sprintf("Linux %s are not allowed", [key])
}

request_faults contains msg if {
	some key in ["Seccomp", "IntelRdt"]
	not is_null(field(input.OCI.Linux, key))
	msg := sprintf("Linux %s is not allowed", [key])
}

request_faults contains msg if {
	some key in ["RootfsPropagation", "MountLabel"]
	not same(field(input.OCI.Linux, key), "")
	msg := sprintf("Linux %s is not allowed", [key])
}

request_faults contains "Linux Resources Devices, BlockIO, Network or Pids are not allowed" if {
	not resources_plain(field(input.OCI.Linux, "Resources"))
}

request_faults contains msg if {
	some key in ["SelinuxLabel", "ApparmorProfile"]
	not same(field(input.OCI.Process, key), "")
	msg := sprintf("process %s is not allowed", [key])
}

resources_plain(r) if is_null(r)

resources_plain(r) if {
	count(r.Devices) == 0
	is_null(r.BlockIO)
	is_null(r.Network)
	is_null(r.Pids)
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := pod.containers[idx]
	some key in ["sandbox_pidns"]
	not same(p[key], field(input, key))
	msg := sprintf("%s %s is not %s", [key, show(field(input, key)), show(p[key])])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := pod.containers[idx]
	not same(p.OCI.Version, field(input.OCI, "Version"))
	msg := sprintf("OCI Version %s is not %s", [show(field(input.OCI, "Version")), show(p.OCI.Version)])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := pod.containers[idx]
	want := {"Path": for_id(p.OCI.Root.Path), "Readonly": p.OCI.Root.Readonly}
	some key, value in want
	not same(value, field(input.OCI.Root, key))
	msg := sprintf("Root.%s %s is not %s", [key, show(field(input.OCI.Root, key)), show(value)])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := pod.containers[idx]
	some key, value in input.OCI.Annotations
	not same(p.OCI.Annotations[key], value)
	msg := sprintf("annotation %s is not allowed", [text(key)])
}

# --- process

container_faults contains [idx, msg] if {
	some idx in candidates
	some msg in process_faults(pod.containers[idx].OCI.Process, input.OCI.Process)
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p_proc := pod.containers[idx].OCI.Process
	not same(p_proc.Terminal, field(input.OCI.Process, "Terminal"))
	msg := sprintf("process Terminal %s is not %s", [show(field(input.OCI.Process, "Terminal")), show(p_proc.Terminal)])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p_caps := pod.containers[idx].OCI.Process.Capabilities
	i_caps := field(input.OCI.Process, "Capabilities")
	some set in ["Bounding", "Effective", "Inheritable", "Permitted", "Ambient"]
	some msg in caps_faults(set, field(p_caps, set), field(i_caps, set))
}

# What a container's process and an exec into it must both match.
process_faults(p_proc, i_proc) := plain | user | env if {
	plain := {msg |
		some key in ["Cwd", "NoNewPrivileges"]
		not same(p_proc[key], field(i_proc, key))
		msg := sprintf("process %s %s is not %s", [key, show(field(i_proc, key)), show(p_proc[key])])
	}
	i_user := user_of(i_proc)
	user := {msg |
		some key in ["UID", "GID", "Username"]
		not same(field(p_proc.User, key), field(i_user, key))
		msg := sprintf("process User.%s %s is not %s", [key, show(field(i_user, key)), show(field(p_proc.User, key))])
	} | {msg |
		not same_set(p_proc.User.AdditionalGids, field(i_user, "AdditionalGids"))
		msg := sprintf("process User.AdditionalGids %s are not %s",
			[show(field(i_user, "AdditionalGids")), show(p_proc.User.AdditionalGids)])
	}
	env := {msg |
		some var in i_proc.Env
		not var in p_proc.Env
		msg := sprintf("environment variable %s is not allowed", [text(var)])
	}
}

# An unset User runs as uid 0, gid 0.
user_of(i_proc) := {"UID": 0, "GID": 0, "AdditionalGids": [], "Username": ""} if is_null(field(i_proc, "User"))

user_of(i_proc) := field(i_proc, "User") if not is_null(field(i_proc, "User"))

# Each set exactly the pod's: none added, none missing.
caps_faults(set, p_caps, i_caps) := added | missing if {
	is_array(i_caps)
	added := {msg |
		some cap in i_caps
		not cap in p_caps
		msg := sprintf("capability %s in %s is not allowed", [text(cap), set])
	}
	lost := [cap | some cap in p_caps; not cap in i_caps]
	missing := {msg |
		count(lost) > 0
		msg := sprintf("capabilities %s in %s are missing", [show(lost), set])
	}
}

caps_faults(set, _, i_caps) := {sprintf("capabilities %s are missing", [set])} if not is_array(i_caps)

# --- mounts: each one of the pod's, none twice

container_faults contains [idx, msg] if {
	some idx in candidates
	p := pod.containers[idx]
	some m in input.OCI.Mounts
	not m in p.OCI.Mounts
	msg := sprintf("mount %s from %s (%s, options %s) is not allowed", [
		text(field(m, "destination")), text(field(m, "source")),
		text(field(m, "type_")), show(field(m, "options")),
	])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	some dest in {m.destination | some m in input.OCI.Mounts}
	count([m | some m in input.OCI.Mounts; m.destination == dest]) > 1
	msg := sprintf("mount %s appears more than once", [text(dest)])
}

# --- storages: the pinned dm-verity layer, every field; `shared` (Storage field 8) and fs_group
# read as false / null when absent

container_faults contains [idx, msg] if {
	some idx in candidates
	p := pod.containers[idx]
	not same(count(p.storages), count(input.storages))
	msg := sprintf("%s storages, the pod has %d", [text(size(field(input, "storages"))), count(p.storages)])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := pod.containers[idx]
	some s in input.storages
	not any_storage_matches(p.storages, s)
	msg := sprintf("storage %s is not the pod's layer (driver, source, options, mount point or root hash)", [show(s)])
}

any_storage_matches(ps_list, s) if {
	some ps in ps_list
	ps.driver == s.driver
	ps.driver_options == s.driver_options
	ps.fstype == s.fstype
	ps.options == s.options
	object.get(ps, "fs_group", null) == object.get(s, "fs_group", null)
	object.get(ps, "shared", false) == object.get(s, "shared", false)
	regex.match(ps.source, str(s.source))
	for_id(ps.mount_point) == s.mount_point
}

# --- devices, namespaces, masked and read-only paths, sysctls

container_faults contains [idx, msg] if {
	some idx in candidates
	some d in input.devices
	msg := sprintf("device %s is not allowed", [show(d)])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := pod.containers[idx]
	some d in input.OCI.Linux.Devices
	not field(d, "Path") in {x.Path | some x in p.OCI.Linux.Devices}
	msg := sprintf("Linux device %s is not allowed", [show(d)])
}

# The pod's namespaces, none missing, none added, none joined by path; the network namespace is
# the VM's whatever its path says (the agent ignores it), cgroup is not compared (as in Kata).
container_faults contains [idx, msg] if {
	some idx in candidates
	p := pod.containers[idx]
	want := {ns.Type | some ns in p.OCI.Linux.Namespaces; not ns.Type in {"network", "cgroup"}}
	have := {ns.Type | some ns in input.OCI.Linux.Namespaces; not ns.Type in {"network", "cgroup"}}
	some t in want - have
	msg := sprintf("namespace %s is missing", [t])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := pod.containers[idx]
	some ns in input.OCI.Linux.Namespaces
	not field(ns, "Type") in {x.Type | some x in p.OCI.Linux.Namespaces}
	not field(ns, "Type") == "cgroup"
	msg := sprintf("namespace %s is not allowed", [show(ns)])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	some ns in input.OCI.Linux.Namespaces
	not field(ns, "Type") == "network"
	not same(field(ns, "Path"), "")
	msg := sprintf("namespace %s joins a path", [show(ns)])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := pod.containers[idx]
	some path in p.OCI.Linux.MaskedPaths
	not path in input.OCI.Linux.MaskedPaths
	msg := sprintf("masked path %s is not masked", [path])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := pod.containers[idx]
	some path in p.OCI.Linux.ReadonlyPaths
	not path in input.OCI.Linux.ReadonlyPaths
	not path in input.OCI.Linux.MaskedPaths
	msg := sprintf("read-only path %s is neither read-only nor masked", [path])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := pod.containers[idx]
	some name, value in input.OCI.Linux.Sysctl
	not same(field(p.OCI.Linux.Sysctl, name), value)
	msg := sprintf("sysctl %s=%s is not allowed", [text(name), show(value)])
}

# --- ExecProcess: a listed command in a container created under this policy, with its settings

ExecProcessRequest if count(exec_faults) == 0

ExecProcessRequest := false if {
	not data.pstate[input.container_id]
	print("exec into", text(field(input, "container_id")), "refused: the container was not created under this policy")
}

ExecProcessRequest := false if {
	data.pstate[input.container_id]
	not exec_listed
	print("exec of", field(input.process, "Args"), "is not in the pod's allow list")
}

ExecProcessRequest := false if {
	exec_listed
	some fault in exec_faults
	print("exec of", field(input.process, "Args"), "into", text(field(input, "container_id")), "refused:", fault)
}

exec_container := pod.containers[data.pstate[input.container_id]]

exec_listed if input.process.Args in exec_container.exec_commands

exec_faults contains "the command is not listed" if not exec_listed

exec_faults contains "the container was not created under this policy" if not data.pstate[input.container_id]

exec_faults contains "the request has no process" if not is_object(input.process)

exec_faults contains "string_user is not allowed" if not is_null(input.string_user)

exec_faults contains msg if {
	some key in ["SelinuxLabel", "ApparmorProfile"]
	not same(field(input.process, key), "")
	msg := sprintf("process %s is not allowed", [key])
}

exec_faults contains msg if {
	not same(exec_container.OCI.Process.Terminal, field(input.process, "Terminal"))
	msg := sprintf("process Terminal %s is not %s",
		[show(field(input.process, "Terminal")), show(exec_container.OCI.Process.Terminal)])
}

exec_faults contains msg if {
	not is_null(field(input.process, "Capabilities"))
	msg := sprintf("process Capabilities %s: an exec gets its container's and may not name any",
		[show(field(input.process, "Capabilities"))])
}

exec_faults contains msg if {
	some msg in process_faults(exec_container.OCI.Process, input.process)
}

# --- helpers

same(a, b) if a == b

same_set(a, b) if {x | some x in a} == {x | some x in b}

# obj[key], or null when absent or obj is not an object: total, so a fault built on it is never
# undefined (an undefined fault would read as "no fault").
field(obj, key) := object.get(obj, key, null) if is_object(obj)

field(obj, _) := null if not is_object(obj)

show(x) := json.marshal(x)

text(x) := x if is_string(x)

# A string as it is, anything else as "": regex.match and replace raise on a non-string.
str(x) := x if is_string(x)

str(x) := "" if not is_string(x)

# How many elements, or "no" for a non-array (count raises on null).
size(x) := count(x) if is_array(x)

size(x) := "no" if not is_array(x)

text(x) := json.marshal(x) if not is_string(x)

# The runtime names a container's directories after its id.
for_id(s) := replace(s, "$(bundle-id)", str(input.container_id))

"""
