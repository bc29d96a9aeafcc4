# cocoon's test policy rules, written in the shape genpolicy generates (package agent_policy,
# one rule per request message, a policy_data document appended below by launcher/podspec.py).
# They are our own rules, not genpolicy's; they exercise the same mechanisms: request
# defaults, regex placeholders, pstate bookkeeping through JSON-patch ops, exec allow-lists
# tied to the container recorded at creation, and prints that explain a denial. They compare
# what Kata's rules compare for CreateContainer and ExecProcess (see "Containers" below).
package agent_policy

import future.keywords.contains
import future.keywords.every
import future.keywords.if
import future.keywords.in

default AllowRequestsFailingPolicy := false

# Lifecycle calls that cannot change what runs are allowed; everything else must be earned.
default AddARPNeighborsRequest := false
default AddSwapPathRequest := false
default AddSwapRequest := false
default CloseStdinRequest := false
default CopyFileRequest := false
default CreateContainerRequest := {"allowed": false}
default CreateSandboxRequest := false
default DestroySandboxRequest := true
default ExecProcessRequest := false
default GetDiagnosticDataRequest := false
default GetIPTablesRequest := false
default GetMetricsRequest := false
default GetOOMEventRequest := true
default GuestDetailsRequest := true
default ListInterfacesRequest := false
default ListRoutesRequest := false
default MemAgentCompactConfig := false
default MemAgentMemcgConfig := false
default MemHotplugByProbeRequest := false
default OnlineCPUMemRequest := true
default PauseContainerRequest := false
default ReadStreamRequest := false
default RemoveContainerRequest := {"allowed": true, "ops": []}
default RemoveStaleVirtiofsShareMountsRequest := true
default ReseedRandomDevRequest := false
default ResizeVolumeRequest := false
default ResumeContainerRequest := false
default SetGuestDateTimeRequest := false
default SetIPTablesRequest := false
default SetPolicyRequest := false
default SignalProcessRequest := true
default StartContainerRequest := true
default StatsContainerRequest := true
default TtyWinResizeRequest := true
default UpdateContainerRequest := false
default UpdateEphemeralMountsRequest := false
default UpdateInterfaceRequest := false
default UpdateRoutesRequest := false
default VolumeStatsRequest := false
default WaitProcessRequest := true
default WriteStreamRequest := false

ReadStreamRequest := policy_data.request_defaults.ReadStreamRequest
WriteStreamRequest := policy_data.request_defaults.WriteStreamRequest
CloseStdinRequest := policy_data.request_defaults.CloseStdinRequest
SetPolicyRequest := policy_data.request_defaults.SetPolicyRequest

# ---------------------------------------------------------------------------------------------
# Sandbox

# Kata's allow_create_sandbox: no guest hooks, no kernel modules, no shared PID namespace, and only
# the sandbox storages the policy lists (the shm tmpfs). Each fault is printed, naming the field.
CreateSandboxRequest if count(sandbox_faults) == 0

CreateSandboxRequest := false if {
	some fault in sandbox_faults
	print("CreateSandboxRequest:", fault)
}

sandbox_faults contains msg if {
	not same(field(input, "guest_hook_path"), "")
	msg := sprintf("guest_hook_path %s is not allowed", [show(field(input, "guest_hook_path"))])
}

sandbox_faults contains msg if {
	not same(size(field(input, "kernel_modules")), 0)
	msg := sprintf("kernel_modules %s are not allowed", [show(field(input, "kernel_modules"))])
}

sandbox_faults contains msg if {
	not same(field(input, "sandbox_pidns"), false)
	msg := sprintf("sandbox_pidns %s is not false", [show(field(input, "sandbox_pidns"))])
}

sandbox_faults contains "the request's storages are not a list" if not is_array(field(input, "storages"))

sandbox_faults contains msg if {
	some i, s in input.storages
	not any_sandbox_storage(s)
	msg := sprintf("storage %d %s is not one of the sandbox's", [i, show(s)])
}

any_sandbox_storage(s) if {
	some p in policy_data.sandbox.storages
	storage_matches(p, s, "")
}

# ---------------------------------------------------------------------------------------------
# Containers
#
# Which fields are compared, and how, follows Kata's genpolicy rules.rego (kata-containers
# src/tools/genpolicy/rules.rego @7c6ba40c: allow_create_container_input, allow_by_anno,
# allow_by_container_types, allow_by_bundle_or_sandbox_id, allow_process, allow_user, allow_env,
# allow_caps, allow_linux, allow_storages, allow_devices); the rules below are cocoon's own.
# Every check is written as a fault: a request is allowed only when the policy container it
# names has none, and a denial prints each fault, naming the field. A check reads
# `not same(policy, input)`, so a field missing from the input is a fault too (fail closed).

TYPE_KEY := "io.kubernetes.cri.container-type"

KATA_TYPE_KEY := "io.katacontainers.pkg.oci.container_type"

NAME_KEY := "io.kubernetes.cri.container-name"

CreateContainerRequest := {"ops": ops, "allowed": true} if {
	idx := create_match
	ops := [{"op": "add", "path": concat("/", ["/pstate", input.container_id]), "value": idx}]
}

CreateContainerRequest := {"allowed": false} if {
	not create_match
	some fault in create_faults
	print("CreateContainerRequest:", fault)
}

# The first policy container (lowest index) the request matches in every field.
create_match := min(ok) if {
	count(request_faults) == 0
	ok := candidates - {f[0] | some f in container_faults}
	count(ok) > 0
}

create_faults := request_faults | {msg |
	some f in container_faults
	msg := sprintf("%s: %s", [policy_data.containers[f[0]].name, f[1]])
}

same(a, b) if a == b

same_set(a, b) if {x | some x in a} == {x | some x in b}

# The policy containers this request can only be: a "sandbox" (pause) request is matched against
# the policy's sandbox entries, a "container" request against the entries of its name.
candidates contains idx if {
	input.OCI.Annotations[TYPE_KEY] == "container"
	some idx, p in policy_data.containers
	p.OCI.Annotations[TYPE_KEY] == "container"
	p.name == input.OCI.Annotations[NAME_KEY]
}

candidates contains idx if {
	input.OCI.Annotations[TYPE_KEY] == "sandbox"
	some idx, p in policy_data.containers
	p.OCI.Annotations[TYPE_KEY] == "sandbox"
}

# Faults of the request itself, whatever policy container it is compared with.

request_faults contains "the request has no OCI spec" if not is_object(input.OCI)

request_faults contains msg if {
	some key in ["Process", "Root", "Linux", "Annotations"]
	not is_object(field(input.OCI, key))
	msg := sprintf("the request's OCI spec has no %s", [key])
}

request_faults contains msg if {
	not input.OCI.Annotations[TYPE_KEY] in {"sandbox", "container"}
	msg := sprintf("annotation %s %v is neither sandbox nor container", [TYPE_KEY, show(field(input.OCI.Annotations, TYPE_KEY))])
}

request_faults contains msg if {
	input.OCI.Annotations[TYPE_KEY] in {"sandbox", "container"}
	count(candidates) == 0
	msg := sprintf("no %s named %s in the policy", [input.OCI.Annotations[TYPE_KEY], show(field(input.OCI.Annotations, NAME_KEY))])
}

request_faults contains msg if {
	not regex.match(`^[a-z0-9]{8,64}$`, str(field(input, "container_id")))
	msg := sprintf("container id %s is not 8 to 64 lower-case letters and digits", [show(field(input, "container_id"))])
}

request_faults contains msg if {
	data.pstate[input.container_id]
	msg := sprintf("container id %s is already in use", [input.container_id])
}

# Fields a host could use to escape the spec the policy describes (Kata: allow_create_container_input).
request_faults contains "shared_mounts are not allowed" if not same(count(input.shared_mounts), 0)

request_faults contains "string_user is not allowed" if not is_null(input.string_user)

request_faults contains "OCI Hooks are not allowed" if not is_null(input.OCI.Hooks)

request_faults contains "OCI Solaris is not allowed" if not is_null(input.OCI.Solaris)

request_faults contains "OCI Windows is not allowed" if not is_null(input.OCI.Windows)

request_faults contains "Linux UIDMappings are not allowed" if not same(count(input.OCI.Linux.UIDMappings), 0)

request_faults contains "Linux GIDMappings are not allowed" if not same(count(input.OCI.Linux.GIDMappings), 0)

request_faults contains "Linux Seccomp is not allowed" if not is_null(input.OCI.Linux.Seccomp)

request_faults contains "Linux RootfsPropagation is not allowed" if not same(input.OCI.Linux.RootfsPropagation, "")

request_faults contains "Linux MountLabel is not allowed" if not same(input.OCI.Linux.MountLabel, "")

request_faults contains "Linux IntelRdt is not allowed" if not is_null(input.OCI.Linux.IntelRdt)

request_faults contains "Linux Resources Devices, BlockIO, Network or Pids are not allowed" if {
	not resources_plain(input.OCI.Linux.Resources)
}

request_faults contains "process SelinuxLabel is not allowed" if not same(input.OCI.Process.SelinuxLabel, "")

request_faults contains "process ApparmorProfile is not allowed" if not same(input.OCI.Process.ApparmorProfile, "")

request_faults contains "process User.Username is not allowed" if not same(input.OCI.Process.User.Username, "")

resources_plain(r) if is_null(r)

resources_plain(r) if {
	count(r.Devices) == 0
	is_null(r.BlockIO)
	is_null(r.Network)
	is_null(r.Pids)
}

# Faults against one candidate: [index, message].

container_faults contains [idx, msg] if {
	some idx in candidates
	p := policy_data.containers[idx]
	not same(p.sandbox_pidns, field(input, "sandbox_pidns"))
	msg := sprintf("sandbox_pidns %s is not %s", [show(field(input, "sandbox_pidns")), show(p.sandbox_pidns)])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := policy_data.containers[idx]
	not same(p.OCI.Version, field(input.OCI, "Version"))
	msg := sprintf("OCI Version %s is not %s", [show(field(input.OCI, "Version")), show(p.OCI.Version)])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := policy_data.containers[idx]
	not same(p.OCI.Root.Readonly, field(input.OCI.Root, "Readonly"))
	msg := sprintf("Root.Readonly %s is not %s", [show(field(input.OCI.Root, "Readonly")), show(p.OCI.Root.Readonly)])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := policy_data.containers[idx]
	not regex.match(expand_for(p.OCI.Root.Path, input.container_id), str(field(input.OCI.Root, "Path")))
	msg := sprintf("Root.Path %s does not match %s", [show(field(input.OCI.Root, "Path")), expand_for(p.OCI.Root.Path, input.container_id)])
}

# --- annotations (Kata: allow_anno, allow_by_container_types, allow_sandbox_name)

container_faults contains [idx, msg] if {
	some idx in candidates
	p := policy_data.containers[idx]
	some key in [TYPE_KEY, KATA_TYPE_KEY]
	not same(p.OCI.Annotations[key], field(input.OCI.Annotations, key))
	msg := sprintf("annotation %s %s is not %s", [key, show(field(input.OCI.Annotations, key)), show(p.OCI.Annotations[key])])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	some key, want in {
		"io.kubernetes.cri.sandbox-name": policy_data.sandbox.name,
		"io.kubernetes.cri.sandbox-namespace": policy_data.sandbox.namespace,
	}
	not source_matches(want, field(input.OCI.Annotations, key), "")
	msg := sprintf("annotation %s %s is not %s", [key, show(field(input.OCI.Annotations, key)), show(want)])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	not regex.match(`^[a-z0-9]{64}$`, str(field(input.OCI.Annotations, "io.kubernetes.cri.sandbox-id")))
	msg := sprintf("annotation io.kubernetes.cri.sandbox-id %s is not 64 lower-case letters and digits", [show(field(input.OCI.Annotations, "io.kubernetes.cri.sandbox-id"))])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := policy_data.containers[idx]
	p.OCI.Annotations[TYPE_KEY] == "container"
	not same(p.image, field(input.OCI.Annotations, "io.kubernetes.cri.image-name"))
	msg := sprintf("annotation io.kubernetes.cri.image-name %s is not %s", [show(field(input.OCI.Annotations, "io.kubernetes.cri.image-name")), show(p.image)])
}

# A sandbox carries no container name (Kata: allow_sandbox_container_name).
container_faults contains [idx, msg] if {
	some idx in candidates
	policy_data.containers[idx].OCI.Annotations[TYPE_KEY] == "sandbox"
	input.OCI.Annotations[NAME_KEY]
	msg := sprintf("a sandbox may not carry annotation %s", [NAME_KEY])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := policy_data.containers[idx]
	some key, value in input.OCI.Annotations
	not annotation_allowed(p, key, value)
	msg := sprintf("annotation %s is not allowed", [key])
}

annotation_allowed(p, key, value) if p.OCI.Annotations[key] == value

annotation_allowed(_, key, _) if {
	some pattern in policy_data.common.free_annotations
	regex.match(pattern, key)
}

# --- process (Kata: allow_process, allow_process_common, allow_user, allow_env, allow_caps)

container_faults contains [idx, msg] if {
	some idx in candidates
	some msg in process_faults(policy_data.containers[idx].OCI.Process, input.OCI.Process)
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p_proc := policy_data.containers[idx].OCI.Process
	not same(p_proc.Args, field(input.OCI.Process, "Args"))
	msg := sprintf("process args %s are not %s", [show(field(input.OCI.Process, "Args")), show(p_proc.Args)])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p_proc := policy_data.containers[idx].OCI.Process
	not same(p_proc.Terminal, field(input.OCI.Process, "Terminal"))
	msg := sprintf("process Terminal %s is not %s", [show(field(input.OCI.Process, "Terminal")), show(p_proc.Terminal)])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p_caps := policy_data.containers[idx].OCI.Process.Capabilities
	i_caps := field(input.OCI.Process, "Capabilities")
	some set in ["Bounding", "Effective", "Inheritable", "Permitted", "Ambient"]
	some msg in caps_faults(set, expand_caps(p_caps[set]), field(i_caps, set))
}

# Faults shared by CreateContainer and ExecProcess: the fields Kata's allow_process_common compares.
process_faults(p_proc, i_proc) := cwd | nnp | user | env if {
	cwd := {msg |
		not same(p_proc.Cwd, field(i_proc, "Cwd"))
		msg := sprintf("process Cwd %s is not %s", [show(field(i_proc, "Cwd")), show(p_proc.Cwd)])
	}
	nnp := {msg |
		not same(p_proc.NoNewPrivileges, field(i_proc, "NoNewPrivileges"))
		msg := sprintf("process NoNewPrivileges %s is not %s", [show(field(i_proc, "NoNewPrivileges")), show(p_proc.NoNewPrivileges)])
	}
	user := user_faults(field(p_proc, "User"), user_of(i_proc))
	env := {msg |
		some var in i_proc.Env
		not env_var_allowed(p_proc.Env, var)
		msg := sprintf("environment variable %s is not allowed", [text(var)])
	}
}

# A variable the policy pins to a value is in the container's environment: leaving one out changes what the
# process sees as much as changing it would (an exec may carry fewer: a probe's environment is the runtime's).
container_faults contains [idx, msg] if {
	some idx in candidates
	some entry in policy_data.containers[idx].OCI.Process.Env
	pinned_env(entry)
	not entry in env_list(field(input.OCI.Process, "Env"))
	msg := sprintf("environment variable %s is missing", [entry])
}

# A policy Env entry that is one exact variable (not a regex, not the sandbox's name).
pinned_env(entry) if {
	not startswith(entry, "^")
	not endswith(entry, "=$(sandbox-name)")
}

pinned_env_names(p_env) := {split(e, "=")[0] | some e in p_env; pinned_env(e)}

env_list(x) := x if is_array(x)

env_list(x) := [] if not is_array(x)

# An unset User runs as uid 0, gid 0 (the agent's reading of the protobuf default).
user_of(i_proc) := {"UID": 0, "GID": 0, "AdditionalGids": [], "Username": ""} if is_null(field(i_proc, "User"))

user_of(i_proc) := field(i_proc, "User") if not is_null(field(i_proc, "User"))

# obj[key], null when absent or when obj is not an object: total, so a fault function built on it
# is always defined (an undefined fault set would read as "no faults").
field(obj, key) := object.get(obj, key, null) if is_object(obj)

field(obj, _) := null if not is_object(obj)

# A value as JSON, for messages: strings quoted, so an empty one shows.
show(x) := json.marshal(x)

# A string as it is, anything else as "" (which no anchored pattern matches): regex.match and
# replace raise on a non-string, and a raised error would be an INTERNAL error, not a denial.
str(x) := x if is_string(x)

str(x) := "" if not is_string(x)

# How many elements, or "no" for a non-array (count raises on null).
size(x) := count(x) if is_array(x)

size(x) := "no" if not is_array(x)

# A name as it is, anything else as JSON.
text(x) := x if is_string(x)

text(x) := json.marshal(x) if not is_string(x)

user_faults(p_user, i_user) := uid | gid | groups if {
	uid := {msg |
		not same(field(p_user, "UID"), field(i_user, "UID"))
		msg := sprintf("process User.UID %s is not %s", [show(field(i_user, "UID")), show(field(p_user, "UID"))])
	}
	gid := {msg |
		not same(field(p_user, "GID"), field(i_user, "GID"))
		msg := sprintf("process User.GID %s is not %s", [show(field(i_user, "GID")), show(field(p_user, "GID"))])
	}
	groups := {msg |
		not same_set(field(p_user, "AdditionalGids"), field(i_user, "AdditionalGids"))
		msg := sprintf("process User.AdditionalGids %s are not %s", [show(field(i_user, "AdditionalGids")), show(field(p_user, "AdditionalGids"))])
	}
}

# Kata's allow_var: the variable as written, NAME=$(sandbox-name) with the sandbox's name, or a
# request_defaults regex (service links, HOSTNAME).
env_var_allowed(p_env, var) if var in p_env

env_var_allowed(p_env, var) if {
	not var in p_env
	concat("=", [split(var, "=")[0], "$(sandbox-name)"]) in p_env
	var == concat("=", [split(var, "=")[0], policy_data.sandbox.name])
}

# A policy entry starting with "^" is a regex (downward API values the generator cannot know).
env_var_allowed(p_env, var) if {
	not var in p_env
	some p in p_env
	startswith(p, "^")
	regex.match(expand(p), str(var))
}

# ... but never another value for a variable the policy pins (a service-link pattern would otherwise let the
# host replace a pinned DB_SERVICE_HOST=..., say).
env_var_allowed(p_env, var) if {
	not var in p_env
	not split(str(var), "=")[0] in pinned_env_names(p_env)
	some pattern in env_patterns
	regex.match(pattern, str(var))
}

# Expanded once per evaluation, not once per variable.
env_patterns := [expand(p) | some p in policy_data.request_defaults.CreateContainerRequest.allow_env_regex]

# Each set equal to the policy's, as Kata's match_caps: none added, none missing.
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

expand_caps(caps) := policy_data.common.default_caps if caps == ["$(default_caps)"]

expand_caps(caps) := policy_data.common.privileged_caps if caps == ["$(privileged_caps)"]

expand_caps(caps) := caps if {
	caps != ["$(default_caps)"]
	caps != ["$(privileged_caps)"]
}

# --- mounts (Kata: allow_mount, check_mount): each input mount is one of the policy's, and no
# policy mount is used twice (policy mounts have distinct destinations).

container_faults contains [idx, msg] if {
	some idx in candidates
	p := policy_data.containers[idx]
	some m in input.OCI.Mounts
	not any_mount_matches(p.OCI.Mounts, m)
	msg := sprintf("mount %s from %s (%s, options %s) is not allowed", [text(field(m, "destination")), text(field(m, "source")), text(field(m, "type_")), show(field(m, "options"))])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	some dest in {m.destination | some m in input.OCI.Mounts}
	count([m | some m in input.OCI.Mounts; m.destination == dest]) > 1
	msg := sprintf("mount %s appears more than once", [show(dest)])
}

any_mount_matches(p_mounts, m) if {
	some pm in p_mounts
	pm.destination == m.destination
	pm.type_ == m.type_
	pm.options == m.options
	source_matches(pm.source, m.source, input.container_id)
}

# A policy value starting with "^" or "$(sfprefix)" (itself anchored) is a regex (genpolicy's
# convention); anything else must be equal.
source_matches(p_value, i_value, _) if {
	not is_pattern(p_value)
	p_value == i_value
}

source_matches(p_value, i_value, cid) if {
	is_pattern(p_value)
	regex.match(expand_for(p_value, cid), str(i_value))
}

is_pattern(p) if startswith(p, "^")

is_pattern(p) if startswith(p, "$(sfprefix)")

# --- storages (Kata: allow_storages, allow_storage, allow_storage_base), but POSITIONAL: the
# request's storage i is the policy's storage i in every field, and there are as many. Order is
# what the agent stacks (the first verity layer is the overlay's bottom), so a reordered, missing
# or extra layer changes what the container sees and is denied, naming the storage index.
# `shared` (Storage field 8) and `fs_group` are compared when present and read as false / null
# when absent.

container_faults contains [idx, msg] if {
	some idx in candidates
	p := policy_data.containers[idx]
	not same(count(p.storages), size(field(input, "storages")))
	msg := sprintf("%s storages, the policy has %d", [text(size(field(input, "storages"))), count(p.storages)])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := policy_data.containers[idx]
	some i, ps in p.storages
	i >= size(field(input, "storages"))
	msg := sprintf("storage %d (%s at %s) is missing", [i, ps.driver, ps.mount_point])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := policy_data.containers[idx]
	some i, s in input.storages
	i >= count(p.storages)
	msg := sprintf("storage %d %s is extra: the policy has %d", [i, show(s), count(p.storages)])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := policy_data.containers[idx]
	some i, s in input.storages
	i < count(p.storages)
	some msg in storage_faults(i, p.storages[i], s, input.container_id)
}

storage_faults(i, ps, s, cid) := plain | matched | optional | verity if {
	plain := {msg |
		some key in ["driver", "fstype", "options", "driver_options"]
		not same(ps[key], field(s, key))
		msg := sprintf("storage %d %s %s is not %s", [i, key, show(field(s, key)), show(ps[key])])
	}
	matched := {msg |
		some key in ["source", "mount_point"]
		not source_matches(ps[key], field(s, key), cid)
		msg := sprintf("storage %d %s %s does not match %s", [i, key, show(field(s, key)), show(expand_for(ps[key], cid))])
	}
	optional := {msg |
		some key, absent in {"fs_group": null, "shared": false}
		not same(object.get(ps, key, absent), object.get(s, key, absent))
		msg := sprintf("storage %d %s %s is not %s", [i, key, show(object.get(s, key, absent)), show(object.get(ps, key, absent))])
	}
	verity := {msg |
		some name, prefix in {"root hash": "cocoon.verity.roothash=", "hash offset": "cocoon.verity.hashoffset="}
		want := option_values(ps.driver_options, prefix)
		count(want) > 0
		have := option_values(field(s, "driver_options"), prefix)
		not same(want, have)
		msg := sprintf("storage %d layer %s %s is not %s", [i, name, show(have), show(want)])
	}
}

# The values of the options starting with prefix, in order ([] for a non-array).
option_values(opts, prefix) := [substring(o, count(prefix), -1) | some o in opts; startswith(o, prefix)] if is_array(opts)

option_values(opts, _) := [] if not is_array(opts)

storage_matches(ps, s, cid) if {
	ps.driver == s.driver
	ps.fstype == s.fstype
	ps.options == s.options
	ps.driver_options == s.driver_options
	object.get(ps, "fs_group", null) == object.get(s, "fs_group", null)
	object.get(ps, "shared", false) == object.get(s, "shared", false)
	source_matches(ps.source, s.source, cid)
	source_matches(ps.mount_point, s.mount_point, cid)
}

# --- devices (Kata: allow_devices, allow_linux_devices): only those the policy lists.

container_faults contains [idx, msg] if {
	some idx in candidates
	p := policy_data.containers[idx]
	some d in input.devices
	not field(d, "container_path") in {x.container_path | some x in p.devices}
	msg := sprintf("device %s is not allowed", [show(d)])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := policy_data.containers[idx]
	some d in input.OCI.Linux.Devices
	not field(d, "Path") in {x.Path | some x in p.OCI.Linux.Devices}
	msg := sprintf("Linux device %s is not allowed", [show(d)])
}

# --- Linux (Kata: allow_linux, allow_masked_paths, allow_readonly_paths, allow_linux_sysctl)

# The namespaces are the policy's, none missing, none added, none joined by path; the network
# namespace is the VM's whatever its path says (the agent ignores it), cgroup is not compared.
container_faults contains [idx, msg] if {
	some idx in candidates
	p := policy_data.containers[idx]
	want := {ns.Type | some ns in p.OCI.Linux.Namespaces; not ns.Type in {"network", "cgroup"}}
	have := {ns.Type | some ns in input.OCI.Linux.Namespaces; not ns.Type in {"network", "cgroup"}}
	some t in want - have
	msg := sprintf("namespace %s is missing", [t])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := policy_data.containers[idx]
	want := {ns.Type | some ns in p.OCI.Linux.Namespaces}
	some ns in input.OCI.Linux.Namespaces
	not field(ns, "Type") in want
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
	p := policy_data.containers[idx]
	some path in p.OCI.Linux.MaskedPaths
	not path in input.OCI.Linux.MaskedPaths
	msg := sprintf("masked path %s is not masked", [path])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := policy_data.containers[idx]
	some path in p.OCI.Linux.ReadonlyPaths
	not path in input.OCI.Linux.ReadonlyPaths
	not path in input.OCI.Linux.MaskedPaths
	msg := sprintf("read-only path %s is neither read-only nor masked", [path])
}

container_faults contains [idx, msg] if {
	some idx in candidates
	p := policy_data.containers[idx]
	some name, value in input.OCI.Linux.Sysctl
	not same(field(p.OCI.Linux.Sysctl, name), value)
	msg := sprintf("sysctl %s=%s is not allowed", [text(name), show(value)])
}

# $(name) placeholders from policy_data.common, as genpolicy writes them.
expand(s) := out if {
	s1 := replace(s, "$(sfprefix)", policy_data.common.sfprefix)
	s2 := replace(s1, "$(cpath)", policy_data.common.cpath)
	s3 := replace(replace(s2, "$(ipv4_a)", policy_data.common.ipv4_a), "$(ip_p)", object.get(policy_data.common, "ip_p", "[0-9]{1,5}"))
	s4 := replace(s3, "$(svc_name)", policy_data.common.svc_name)
	s5 := replace(s4, "$(dns_label)", policy_data.common.dns_label)
	out := replace(s5, "$(sandbox-name)", policy_data.sandbox.name)
}

# ... and $(bundle-id), which is the container's id: the runtime's bundle is named after it.
expand_for(s, cid) := replace(expand(s), "$(bundle-id)", str(cid))

RemoveContainerRequest := {"allowed": true, "ops": ops} if {
	data.pstate[input.container_id]
	ops := [{"op": "remove", "path": concat("/", ["/pstate", input.container_id])}]
}

# ---------------------------------------------------------------------------------------------
# Exec: only commands the policy lists, into a container created under this policy, with that
# container's process settings (Kata: ExecProcessRequest, allow_exec, allow_interactive_exec,
# allow_probe_process, allow_exec_caps): cwd, no_new_privileges, user and env as the container's,
# no capabilities of its own (it gets the container's), and the container's terminal setting
# unless the command is an interactive one (request_defaults.ExecProcessRequest).

ExecProcessRequest if {
	count(exec_faults) == 0
}

ExecProcessRequest := false if {
	some fault in exec_faults
	print("ExecProcessRequest:", fault)
}

exec_container := policy_data.containers[data.pstate[input.container_id]]

exec_probe if input.process.Args in exec_container.exec_commands

exec_interactive if input.process.Args in policy_data.request_defaults.ExecProcessRequest.allowed_commands

exec_interactive if {
	some pattern in policy_data.request_defaults.ExecProcessRequest.regex
	regex.match(pattern, concat(" ", input.process.Args))
}

exec_faults contains msg if {
	not data.pstate[input.container_id]
	msg := sprintf("container %s was not created under this policy", [show(field(input, "container_id"))])
}

exec_faults contains msg if {
	exec_container
	not exec_probe
	not exec_interactive
	msg := sprintf("command %s is not in the allow list", [show(field(input.process, "Args"))])
}

exec_faults contains "the request has no process" if not is_object(input.process)

exec_faults contains "string_user is not allowed" if not is_null(input.string_user)

exec_faults contains "process SelinuxLabel is not allowed" if not same(input.process.SelinuxLabel, "")

exec_faults contains "process ApparmorProfile is not allowed" if not same(input.process.ApparmorProfile, "")

exec_faults contains "process User.Username is not allowed" if not same(user_of(input.process).Username, "")

# A listed command runs without a terminal, whatever the container's setting: the kubelet's probes
# are ExecSync calls, which never allocate one (an interactive command is the other way in).
exec_faults contains msg if {
	exec_probe
	not exec_interactive
	not same(false, field(input.process, "Terminal"))
	msg := sprintf("process Terminal %s is not false", [show(field(input.process, "Terminal"))])
}

exec_faults contains msg if {
	exec_container
	not is_null(field(input.process, "Capabilities"))
	msg := sprintf("process Capabilities %s: an exec gets its container's and may not name any", [show(field(input.process, "Capabilities"))])
}

exec_faults contains msg if {
	some msg in process_faults(exec_container.OCI.Process, input.process)
}

# ---------------------------------------------------------------------------------------------
# CopyFile: below the shared directory, no traversal, symlinks relative and inside.

CopyFileRequest if {
	not path_traverses(input.path)
	some pattern in policy_data.request_defaults.CopyFileRequest
	regex.match(expand_for(pattern, "[a-z0-9]{8,64}"), str(input.path))
	copy_type_allowed
}

CopyFileRequest := false if {
	path_traverses(input.path)
	print("CopyFileRequest: path", input.path, "climbs out with '..'")
}

path_traverses(path) if contains(concat("", [path, "/"]), "/../")

copy_type_allowed if input.file_type in ["Regular", "Directory"]

copy_type_allowed if {
	input.file_type == "Symlink"
	not startswith(input.symlink_target, "/")
	not contains(concat("", ["/", input.symlink_target, "/"]), "/../")
}

# ---------------------------------------------------------------------------------------------
# Network

UpdateInterfaceRequest if {
	i := input.interface
	not i.name in policy_data.request_defaults.UpdateInterfaceRequest.forbidden_names
	not i.hwAddr in policy_data.request_defaults.UpdateInterfaceRequest.forbidden_hw_addrs
	bits.and(i.raw_flags, bits.negate(policy_data.request_defaults.UpdateInterfaceRequest.allow_raw_flags)) == 0
}

UpdateInterfaceRequest := false if {
	input.interface.name in policy_data.request_defaults.UpdateInterfaceRequest.forbidden_names
	print("UpdateInterfaceRequest: interface", input.interface.name, "may not be changed")
}

UpdateRoutesRequest if {
	every r in input.routes.Routes {
		not r.device in policy_data.request_defaults.UpdateRoutesRequest.forbidden_device_names
		not source_forbidden(r.source)
	}
}

UpdateRoutesRequest := false if {
	some r in input.routes.Routes
	r.device in policy_data.request_defaults.UpdateRoutesRequest.forbidden_device_names
	print("UpdateRoutesRequest: routes on", r.device, "may not be changed")
}

source_forbidden(source) if {
	some pattern in policy_data.request_defaults.UpdateRoutesRequest.forbidden_source_regex
	regex.match(pattern, source)
}

ListInterfacesRequest := policy_data.request_defaults.ListInterfacesRequest
ListRoutesRequest := policy_data.request_defaults.ListRoutesRequest

AddARPNeighborsRequest if {
	every n in input.neighbors.ARPNeighbors {
		not n.device in policy_data.request_defaults.AddARPNeighborsRequest.forbidden_device_names
		n.state in policy_data.request_defaults.AddARPNeighborsRequest.allowed_states
		bits.and(n.flags, bits.negate(136)) == 0
		not startswith(n.toIPAddress.address, "127.")
	}
}

policy_data := {
  "containers": [
    {
      "name": "pause",
      "image": "pause:3.9",
      "OCI": {
        "Version": "1.1.0",
        "Root": {
          "Path": "^$(cpath)/$(bundle-id)/rootfs$",
          "Readonly": true
        },
        "Annotations": {
          "io.kubernetes.cri.container-type": "sandbox",
          "io.katacontainers.pkg.oci.container_type": "pod_sandbox"
        },
        "Process": {
          "Terminal": false,
          "Args": [
            "/pause"
          ],
          "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
          ],
          "Cwd": "/",
          "User": {
            "UID": 65535,
            "GID": 65535,
            "AdditionalGids": []
          },
          "NoNewPrivileges": true,
          "Capabilities": {
            "Bounding": [
              "$(default_caps)"
            ],
            "Effective": [
              "$(default_caps)"
            ],
            "Permitted": [
              "$(default_caps)"
            ],
            "Inheritable": [],
            "Ambient": []
          }
        },
        "Mounts": [
          {
            "destination": "/proc",
            "source": "proc",
            "type_": "proc",
            "options": [
              "nosuid",
              "noexec",
              "nodev"
            ]
          },
          {
            "destination": "/dev",
            "source": "tmpfs",
            "type_": "tmpfs",
            "options": [
              "nosuid",
              "strictatime",
              "mode=755",
              "size=65536k"
            ]
          },
          {
            "destination": "/sys",
            "source": "sysfs",
            "type_": "sysfs",
            "options": [
              "nosuid",
              "noexec",
              "nodev",
              "ro"
            ]
          },
          {
            "destination": "/etc/hosts",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-hosts$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/hostname",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-hostname$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/resolv.conf",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-resolv.conf$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/dev/termination-log",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-termination-log$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          }
        ],
        "Linux": {
          "Namespaces": [
            {
              "Type": "ipc"
            },
            {
              "Type": "uts"
            },
            {
              "Type": "mount"
            },
            {
              "Type": "pid"
            },
            {
              "Type": "network"
            }
          ],
          "MaskedPaths": [
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware"
          ],
          "ReadonlyPaths": [
            "/proc/asound",
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
          ],
          "Sysctl": {
            "net.ipv4.ip_unprivileged_port_start": "0",
            "net.ipv4.ping_group_range": "0 2147483647"
          },
          "Devices": []
        }
      },
      "storages": [],
      "devices": [],
      "exec_commands": [],
      "sandbox_pidns": false
    },
    {
      "name": "web",
      "image": "registry.example/web@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
      "OCI": {
        "Version": "1.1.0",
        "Root": {
          "Path": "^$(cpath)/$(bundle-id)/rootfs$",
          "Readonly": false
        },
        "Annotations": {
          "io.kubernetes.cri.container-type": "container",
          "io.katacontainers.pkg.oci.container_type": "pod_container"
        },
        "Process": {
          "Terminal": false,
          "Args": [
            "/bin/web",
            "--port",
            "8080"
          ],
          "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=$(sandbox-name)",
            "WEB_SETTING_000=value-000-",
            "WEB_SETTING_001=value-001-x",
            "WEB_SETTING_002=value-002-xx",
            "WEB_SETTING_003=value-003-xxx",
            "WEB_SETTING_004=value-004-xxxx",
            "WEB_SETTING_005=value-005-xxxxx",
            "WEB_SETTING_006=value-006-xxxxxx",
            "WEB_SETTING_007=value-007-xxxxxxx",
            "WEB_SETTING_008=value-008-xxxxxxxx",
            "WEB_SETTING_009=value-009-xxxxxxxxx",
            "WEB_SETTING_010=value-010-xxxxxxxxxx",
            "WEB_SETTING_011=value-011-xxxxxxxxxxx",
            "WEB_SETTING_012=value-012-xxxxxxxxxxxx",
            "WEB_SETTING_013=value-013-xxxxxxxxxxxxx",
            "WEB_SETTING_014=value-014-xxxxxxxxxxxxxx",
            "WEB_SETTING_015=value-015-xxxxxxxxxxxxxxx",
            "WEB_SETTING_016=value-016-xxxxxxxxxxxxxxxx",
            "WEB_SETTING_017=value-017-xxxxxxxxxxxxxxxxx",
            "WEB_SETTING_018=value-018-xxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_019=value-019-xxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_020=value-020-xxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_021=value-021-xxxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_022=value-022-xxxxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_023=value-023-xxxxxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_024=value-024-xxxxxxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_025=value-025-xxxxxxxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_026=value-026-xxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_027=value-027-xxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_028=value-028-xxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_029=value-029-xxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_030=value-030-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_031=value-031-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_032=value-032-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_033=value-033-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_034=value-034-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_035=value-035-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_036=value-036-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_037=value-037-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_038=value-038-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WEB_SETTING_039=value-039-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
          ],
          "Cwd": "/",
          "User": {
            "UID": 1000,
            "GID": 1000,
            "AdditionalGids": []
          },
          "NoNewPrivileges": true,
          "Capabilities": {
            "Bounding": [
              "$(default_caps)"
            ],
            "Effective": [
              "$(default_caps)"
            ],
            "Permitted": [
              "$(default_caps)"
            ],
            "Inheritable": [],
            "Ambient": []
          }
        },
        "Mounts": [
          {
            "destination": "/proc",
            "source": "proc",
            "type_": "proc",
            "options": [
              "nosuid",
              "noexec",
              "nodev"
            ]
          },
          {
            "destination": "/dev",
            "source": "tmpfs",
            "type_": "tmpfs",
            "options": [
              "nosuid",
              "strictatime",
              "mode=755",
              "size=65536k"
            ]
          },
          {
            "destination": "/sys",
            "source": "sysfs",
            "type_": "sysfs",
            "options": [
              "nosuid",
              "noexec",
              "nodev",
              "ro"
            ]
          },
          {
            "destination": "/etc/hosts",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-hosts$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/hostname",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-hostname$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/resolv.conf",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-resolv.conf$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/dev/termination-log",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-termination-log$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          }
        ],
        "Linux": {
          "Namespaces": [
            {
              "Type": "ipc"
            },
            {
              "Type": "uts"
            },
            {
              "Type": "mount"
            },
            {
              "Type": "pid"
            },
            {
              "Type": "network"
            }
          ],
          "MaskedPaths": [
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware"
          ],
          "ReadonlyPaths": [
            "/proc/asound",
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
          ],
          "Sysctl": {},
          "Devices": []
        }
      },
      "storages": [
        {
          "driver": "blk",
          "driver_options": [
            "cocoon.verity.roothash=5b1e8f0c0a7f3d9a6c2b4e8d1f0a3c5e7b9d2f4a6c8e0b1d3f5a7c9e1b3d5f70",
            "cocoon.verity.hashoffset=1048576"
          ],
          "source": "^/dev/vd[b-z]$",
          "fstype": "erofs",
          "options": [
            "ro"
          ],
          "mount_point": "^$(cpath)/$(bundle-id)/layers/0$",
          "shared": false
        }
      ],
      "devices": [],
      "exec_commands": [
        [
          "/bin/ls",
          "/"
        ],
        [
          "cat",
          "/etc/hostname"
        ]
      ],
      "sandbox_pidns": false
    },
    {
      "name": "sidecar",
      "image": "registry.example/sidecar@sha256:b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2",
      "OCI": {
        "Version": "1.1.0",
        "Root": {
          "Path": "^$(cpath)/$(bundle-id)/rootfs$",
          "Readonly": false
        },
        "Annotations": {
          "io.kubernetes.cri.container-type": "container",
          "io.katacontainers.pkg.oci.container_type": "pod_container"
        },
        "Process": {
          "Terminal": false,
          "Args": [
            "/bin/sidecar"
          ],
          "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=$(sandbox-name)",
            "SIDECAR_SETTING_000=value-000-",
            "SIDECAR_SETTING_001=value-001-x",
            "SIDECAR_SETTING_002=value-002-xx",
            "SIDECAR_SETTING_003=value-003-xxx",
            "SIDECAR_SETTING_004=value-004-xxxx",
            "SIDECAR_SETTING_005=value-005-xxxxx",
            "SIDECAR_SETTING_006=value-006-xxxxxx",
            "SIDECAR_SETTING_007=value-007-xxxxxxx",
            "SIDECAR_SETTING_008=value-008-xxxxxxxx",
            "SIDECAR_SETTING_009=value-009-xxxxxxxxx",
            "SIDECAR_SETTING_010=value-010-xxxxxxxxxx",
            "SIDECAR_SETTING_011=value-011-xxxxxxxxxxx",
            "SIDECAR_SETTING_012=value-012-xxxxxxxxxxxx",
            "SIDECAR_SETTING_013=value-013-xxxxxxxxxxxxx",
            "SIDECAR_SETTING_014=value-014-xxxxxxxxxxxxxx",
            "SIDECAR_SETTING_015=value-015-xxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_016=value-016-xxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_017=value-017-xxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_018=value-018-xxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_019=value-019-xxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_020=value-020-xxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_021=value-021-xxxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_022=value-022-xxxxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_023=value-023-xxxxxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_024=value-024-xxxxxxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_025=value-025-xxxxxxxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_026=value-026-xxxxxxxxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_027=value-027-xxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_028=value-028-xxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_029=value-029-xxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_030=value-030-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_031=value-031-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_032=value-032-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_033=value-033-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_034=value-034-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_035=value-035-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_036=value-036-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_037=value-037-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_038=value-038-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "SIDECAR_SETTING_039=value-039-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
          ],
          "Cwd": "/",
          "User": {
            "UID": 1000,
            "GID": 1000,
            "AdditionalGids": []
          },
          "NoNewPrivileges": false,
          "Capabilities": {
            "Bounding": [
              "$(default_caps)"
            ],
            "Effective": [
              "$(default_caps)"
            ],
            "Permitted": [
              "$(default_caps)"
            ],
            "Inheritable": [],
            "Ambient": []
          }
        },
        "Mounts": [
          {
            "destination": "/proc",
            "source": "proc",
            "type_": "proc",
            "options": [
              "nosuid",
              "noexec",
              "nodev"
            ]
          },
          {
            "destination": "/dev",
            "source": "tmpfs",
            "type_": "tmpfs",
            "options": [
              "nosuid",
              "strictatime",
              "mode=755",
              "size=65536k"
            ]
          },
          {
            "destination": "/sys",
            "source": "sysfs",
            "type_": "sysfs",
            "options": [
              "nosuid",
              "noexec",
              "nodev",
              "ro"
            ]
          },
          {
            "destination": "/etc/hosts",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-hosts$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/hostname",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-hostname$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/resolv.conf",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-resolv.conf$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/dev/termination-log",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-termination-log$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          }
        ],
        "Linux": {
          "Namespaces": [
            {
              "Type": "ipc"
            },
            {
              "Type": "uts"
            },
            {
              "Type": "mount"
            },
            {
              "Type": "pid"
            },
            {
              "Type": "network"
            }
          ],
          "MaskedPaths": [
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware"
          ],
          "ReadonlyPaths": [
            "/proc/asound",
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
          ],
          "Sysctl": {},
          "Devices": []
        }
      },
      "storages": [],
      "devices": [],
      "exec_commands": [
        [
          "/bin/sidecar",
          "--health"
        ]
      ],
      "sandbox_pidns": false
    },
    {
      "name": "worker-0",
      "image": "registry.example/worker-0@sha256:0000000000000000000000000000000000000000000000000000000000000000",
      "OCI": {
        "Version": "1.1.0",
        "Root": {
          "Path": "^$(cpath)/$(bundle-id)/rootfs$",
          "Readonly": false
        },
        "Annotations": {
          "io.kubernetes.cri.container-type": "container",
          "io.katacontainers.pkg.oci.container_type": "pod_container"
        },
        "Process": {
          "Terminal": false,
          "Args": [
            "/bin/worker",
            "--shard=0"
          ],
          "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=$(sandbox-name)",
            "WORKER0_SETTING_000=value-000-",
            "WORKER0_SETTING_001=value-001-x",
            "WORKER0_SETTING_002=value-002-xx",
            "WORKER0_SETTING_003=value-003-xxx",
            "WORKER0_SETTING_004=value-004-xxxx",
            "WORKER0_SETTING_005=value-005-xxxxx",
            "WORKER0_SETTING_006=value-006-xxxxxx",
            "WORKER0_SETTING_007=value-007-xxxxxxx",
            "WORKER0_SETTING_008=value-008-xxxxxxxx",
            "WORKER0_SETTING_009=value-009-xxxxxxxxx",
            "WORKER0_SETTING_010=value-010-xxxxxxxxxx",
            "WORKER0_SETTING_011=value-011-xxxxxxxxxxx",
            "WORKER0_SETTING_012=value-012-xxxxxxxxxxxx",
            "WORKER0_SETTING_013=value-013-xxxxxxxxxxxxx",
            "WORKER0_SETTING_014=value-014-xxxxxxxxxxxxxx",
            "WORKER0_SETTING_015=value-015-xxxxxxxxxxxxxxx",
            "WORKER0_SETTING_016=value-016-xxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_017=value-017-xxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_018=value-018-xxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_019=value-019-xxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_020=value-020-xxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_021=value-021-xxxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_022=value-022-xxxxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_023=value-023-xxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_024=value-024-xxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_025=value-025-xxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_026=value-026-xxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_027=value-027-xxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_028=value-028-xxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_029=value-029-xxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_030=value-030-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_031=value-031-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_032=value-032-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_033=value-033-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_034=value-034-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_035=value-035-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_036=value-036-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_037=value-037-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_038=value-038-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER0_SETTING_039=value-039-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
          ],
          "Cwd": "/",
          "User": {
            "UID": 1000,
            "GID": 1000,
            "AdditionalGids": []
          },
          "NoNewPrivileges": true,
          "Capabilities": {
            "Bounding": [
              "$(default_caps)"
            ],
            "Effective": [
              "$(default_caps)"
            ],
            "Permitted": [
              "$(default_caps)"
            ],
            "Inheritable": [],
            "Ambient": []
          }
        },
        "Mounts": [
          {
            "destination": "/proc",
            "source": "proc",
            "type_": "proc",
            "options": [
              "nosuid",
              "noexec",
              "nodev"
            ]
          },
          {
            "destination": "/dev",
            "source": "tmpfs",
            "type_": "tmpfs",
            "options": [
              "nosuid",
              "strictatime",
              "mode=755",
              "size=65536k"
            ]
          },
          {
            "destination": "/sys",
            "source": "sysfs",
            "type_": "sysfs",
            "options": [
              "nosuid",
              "noexec",
              "nodev",
              "ro"
            ]
          },
          {
            "destination": "/etc/hosts",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-hosts$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/hostname",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-hostname$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/resolv.conf",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-resolv.conf$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/dev/termination-log",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-termination-log$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          }
        ],
        "Linux": {
          "Namespaces": [
            {
              "Type": "ipc"
            },
            {
              "Type": "uts"
            },
            {
              "Type": "mount"
            },
            {
              "Type": "pid"
            },
            {
              "Type": "network"
            }
          ],
          "MaskedPaths": [
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware"
          ],
          "ReadonlyPaths": [
            "/proc/asound",
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
          ],
          "Sysctl": {},
          "Devices": []
        }
      },
      "storages": [],
      "devices": [],
      "exec_commands": [
        [
          "/bin/worker",
          "--health"
        ]
      ],
      "sandbox_pidns": false
    },
    {
      "name": "worker-1",
      "image": "registry.example/worker-1@sha256:0101010101010101010101010101010101010101010101010101010101010101",
      "OCI": {
        "Version": "1.1.0",
        "Root": {
          "Path": "^$(cpath)/$(bundle-id)/rootfs$",
          "Readonly": false
        },
        "Annotations": {
          "io.kubernetes.cri.container-type": "container",
          "io.katacontainers.pkg.oci.container_type": "pod_container"
        },
        "Process": {
          "Terminal": false,
          "Args": [
            "/bin/worker",
            "--shard=1"
          ],
          "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=$(sandbox-name)",
            "WORKER1_SETTING_000=value-000-",
            "WORKER1_SETTING_001=value-001-x",
            "WORKER1_SETTING_002=value-002-xx",
            "WORKER1_SETTING_003=value-003-xxx",
            "WORKER1_SETTING_004=value-004-xxxx",
            "WORKER1_SETTING_005=value-005-xxxxx",
            "WORKER1_SETTING_006=value-006-xxxxxx",
            "WORKER1_SETTING_007=value-007-xxxxxxx",
            "WORKER1_SETTING_008=value-008-xxxxxxxx",
            "WORKER1_SETTING_009=value-009-xxxxxxxxx",
            "WORKER1_SETTING_010=value-010-xxxxxxxxxx",
            "WORKER1_SETTING_011=value-011-xxxxxxxxxxx",
            "WORKER1_SETTING_012=value-012-xxxxxxxxxxxx",
            "WORKER1_SETTING_013=value-013-xxxxxxxxxxxxx",
            "WORKER1_SETTING_014=value-014-xxxxxxxxxxxxxx",
            "WORKER1_SETTING_015=value-015-xxxxxxxxxxxxxxx",
            "WORKER1_SETTING_016=value-016-xxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_017=value-017-xxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_018=value-018-xxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_019=value-019-xxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_020=value-020-xxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_021=value-021-xxxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_022=value-022-xxxxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_023=value-023-xxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_024=value-024-xxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_025=value-025-xxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_026=value-026-xxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_027=value-027-xxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_028=value-028-xxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_029=value-029-xxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_030=value-030-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_031=value-031-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_032=value-032-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_033=value-033-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_034=value-034-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_035=value-035-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_036=value-036-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_037=value-037-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_038=value-038-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER1_SETTING_039=value-039-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
          ],
          "Cwd": "/",
          "User": {
            "UID": 1000,
            "GID": 1000,
            "AdditionalGids": []
          },
          "NoNewPrivileges": true,
          "Capabilities": {
            "Bounding": [
              "$(default_caps)"
            ],
            "Effective": [
              "$(default_caps)"
            ],
            "Permitted": [
              "$(default_caps)"
            ],
            "Inheritable": [],
            "Ambient": []
          }
        },
        "Mounts": [
          {
            "destination": "/proc",
            "source": "proc",
            "type_": "proc",
            "options": [
              "nosuid",
              "noexec",
              "nodev"
            ]
          },
          {
            "destination": "/dev",
            "source": "tmpfs",
            "type_": "tmpfs",
            "options": [
              "nosuid",
              "strictatime",
              "mode=755",
              "size=65536k"
            ]
          },
          {
            "destination": "/sys",
            "source": "sysfs",
            "type_": "sysfs",
            "options": [
              "nosuid",
              "noexec",
              "nodev",
              "ro"
            ]
          },
          {
            "destination": "/etc/hosts",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-hosts$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/hostname",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-hostname$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/resolv.conf",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-resolv.conf$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/dev/termination-log",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-termination-log$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          }
        ],
        "Linux": {
          "Namespaces": [
            {
              "Type": "ipc"
            },
            {
              "Type": "uts"
            },
            {
              "Type": "mount"
            },
            {
              "Type": "pid"
            },
            {
              "Type": "network"
            }
          ],
          "MaskedPaths": [
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware"
          ],
          "ReadonlyPaths": [
            "/proc/asound",
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
          ],
          "Sysctl": {},
          "Devices": []
        }
      },
      "storages": [],
      "devices": [],
      "exec_commands": [
        [
          "/bin/worker",
          "--health"
        ]
      ],
      "sandbox_pidns": false
    },
    {
      "name": "worker-2",
      "image": "registry.example/worker-2@sha256:0202020202020202020202020202020202020202020202020202020202020202",
      "OCI": {
        "Version": "1.1.0",
        "Root": {
          "Path": "^$(cpath)/$(bundle-id)/rootfs$",
          "Readonly": false
        },
        "Annotations": {
          "io.kubernetes.cri.container-type": "container",
          "io.katacontainers.pkg.oci.container_type": "pod_container"
        },
        "Process": {
          "Terminal": false,
          "Args": [
            "/bin/worker",
            "--shard=2"
          ],
          "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=$(sandbox-name)",
            "WORKER2_SETTING_000=value-000-",
            "WORKER2_SETTING_001=value-001-x",
            "WORKER2_SETTING_002=value-002-xx",
            "WORKER2_SETTING_003=value-003-xxx",
            "WORKER2_SETTING_004=value-004-xxxx",
            "WORKER2_SETTING_005=value-005-xxxxx",
            "WORKER2_SETTING_006=value-006-xxxxxx",
            "WORKER2_SETTING_007=value-007-xxxxxxx",
            "WORKER2_SETTING_008=value-008-xxxxxxxx",
            "WORKER2_SETTING_009=value-009-xxxxxxxxx",
            "WORKER2_SETTING_010=value-010-xxxxxxxxxx",
            "WORKER2_SETTING_011=value-011-xxxxxxxxxxx",
            "WORKER2_SETTING_012=value-012-xxxxxxxxxxxx",
            "WORKER2_SETTING_013=value-013-xxxxxxxxxxxxx",
            "WORKER2_SETTING_014=value-014-xxxxxxxxxxxxxx",
            "WORKER2_SETTING_015=value-015-xxxxxxxxxxxxxxx",
            "WORKER2_SETTING_016=value-016-xxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_017=value-017-xxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_018=value-018-xxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_019=value-019-xxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_020=value-020-xxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_021=value-021-xxxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_022=value-022-xxxxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_023=value-023-xxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_024=value-024-xxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_025=value-025-xxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_026=value-026-xxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_027=value-027-xxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_028=value-028-xxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_029=value-029-xxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_030=value-030-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_031=value-031-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_032=value-032-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_033=value-033-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_034=value-034-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_035=value-035-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_036=value-036-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_037=value-037-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_038=value-038-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER2_SETTING_039=value-039-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
          ],
          "Cwd": "/",
          "User": {
            "UID": 1000,
            "GID": 1000,
            "AdditionalGids": []
          },
          "NoNewPrivileges": true,
          "Capabilities": {
            "Bounding": [
              "$(default_caps)"
            ],
            "Effective": [
              "$(default_caps)"
            ],
            "Permitted": [
              "$(default_caps)"
            ],
            "Inheritable": [],
            "Ambient": []
          }
        },
        "Mounts": [
          {
            "destination": "/proc",
            "source": "proc",
            "type_": "proc",
            "options": [
              "nosuid",
              "noexec",
              "nodev"
            ]
          },
          {
            "destination": "/dev",
            "source": "tmpfs",
            "type_": "tmpfs",
            "options": [
              "nosuid",
              "strictatime",
              "mode=755",
              "size=65536k"
            ]
          },
          {
            "destination": "/sys",
            "source": "sysfs",
            "type_": "sysfs",
            "options": [
              "nosuid",
              "noexec",
              "nodev",
              "ro"
            ]
          },
          {
            "destination": "/etc/hosts",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-hosts$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/hostname",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-hostname$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/resolv.conf",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-resolv.conf$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/dev/termination-log",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-termination-log$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          }
        ],
        "Linux": {
          "Namespaces": [
            {
              "Type": "ipc"
            },
            {
              "Type": "uts"
            },
            {
              "Type": "mount"
            },
            {
              "Type": "pid"
            },
            {
              "Type": "network"
            }
          ],
          "MaskedPaths": [
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware"
          ],
          "ReadonlyPaths": [
            "/proc/asound",
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
          ],
          "Sysctl": {},
          "Devices": []
        }
      },
      "storages": [],
      "devices": [],
      "exec_commands": [
        [
          "/bin/worker",
          "--health"
        ]
      ],
      "sandbox_pidns": false
    },
    {
      "name": "worker-3",
      "image": "registry.example/worker-3@sha256:0303030303030303030303030303030303030303030303030303030303030303",
      "OCI": {
        "Version": "1.1.0",
        "Root": {
          "Path": "^$(cpath)/$(bundle-id)/rootfs$",
          "Readonly": false
        },
        "Annotations": {
          "io.kubernetes.cri.container-type": "container",
          "io.katacontainers.pkg.oci.container_type": "pod_container"
        },
        "Process": {
          "Terminal": false,
          "Args": [
            "/bin/worker",
            "--shard=3"
          ],
          "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=$(sandbox-name)",
            "WORKER3_SETTING_000=value-000-",
            "WORKER3_SETTING_001=value-001-x",
            "WORKER3_SETTING_002=value-002-xx",
            "WORKER3_SETTING_003=value-003-xxx",
            "WORKER3_SETTING_004=value-004-xxxx",
            "WORKER3_SETTING_005=value-005-xxxxx",
            "WORKER3_SETTING_006=value-006-xxxxxx",
            "WORKER3_SETTING_007=value-007-xxxxxxx",
            "WORKER3_SETTING_008=value-008-xxxxxxxx",
            "WORKER3_SETTING_009=value-009-xxxxxxxxx",
            "WORKER3_SETTING_010=value-010-xxxxxxxxxx",
            "WORKER3_SETTING_011=value-011-xxxxxxxxxxx",
            "WORKER3_SETTING_012=value-012-xxxxxxxxxxxx",
            "WORKER3_SETTING_013=value-013-xxxxxxxxxxxxx",
            "WORKER3_SETTING_014=value-014-xxxxxxxxxxxxxx",
            "WORKER3_SETTING_015=value-015-xxxxxxxxxxxxxxx",
            "WORKER3_SETTING_016=value-016-xxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_017=value-017-xxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_018=value-018-xxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_019=value-019-xxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_020=value-020-xxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_021=value-021-xxxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_022=value-022-xxxxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_023=value-023-xxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_024=value-024-xxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_025=value-025-xxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_026=value-026-xxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_027=value-027-xxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_028=value-028-xxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_029=value-029-xxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_030=value-030-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_031=value-031-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_032=value-032-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_033=value-033-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_034=value-034-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_035=value-035-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_036=value-036-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_037=value-037-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_038=value-038-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER3_SETTING_039=value-039-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
          ],
          "Cwd": "/",
          "User": {
            "UID": 1000,
            "GID": 1000,
            "AdditionalGids": []
          },
          "NoNewPrivileges": true,
          "Capabilities": {
            "Bounding": [
              "$(default_caps)"
            ],
            "Effective": [
              "$(default_caps)"
            ],
            "Permitted": [
              "$(default_caps)"
            ],
            "Inheritable": [],
            "Ambient": []
          }
        },
        "Mounts": [
          {
            "destination": "/proc",
            "source": "proc",
            "type_": "proc",
            "options": [
              "nosuid",
              "noexec",
              "nodev"
            ]
          },
          {
            "destination": "/dev",
            "source": "tmpfs",
            "type_": "tmpfs",
            "options": [
              "nosuid",
              "strictatime",
              "mode=755",
              "size=65536k"
            ]
          },
          {
            "destination": "/sys",
            "source": "sysfs",
            "type_": "sysfs",
            "options": [
              "nosuid",
              "noexec",
              "nodev",
              "ro"
            ]
          },
          {
            "destination": "/etc/hosts",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-hosts$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/hostname",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-hostname$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/resolv.conf",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-resolv.conf$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/dev/termination-log",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-termination-log$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          }
        ],
        "Linux": {
          "Namespaces": [
            {
              "Type": "ipc"
            },
            {
              "Type": "uts"
            },
            {
              "Type": "mount"
            },
            {
              "Type": "pid"
            },
            {
              "Type": "network"
            }
          ],
          "MaskedPaths": [
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware"
          ],
          "ReadonlyPaths": [
            "/proc/asound",
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
          ],
          "Sysctl": {},
          "Devices": []
        }
      },
      "storages": [],
      "devices": [],
      "exec_commands": [
        [
          "/bin/worker",
          "--health"
        ]
      ],
      "sandbox_pidns": false
    },
    {
      "name": "worker-4",
      "image": "registry.example/worker-4@sha256:0404040404040404040404040404040404040404040404040404040404040404",
      "OCI": {
        "Version": "1.1.0",
        "Root": {
          "Path": "^$(cpath)/$(bundle-id)/rootfs$",
          "Readonly": false
        },
        "Annotations": {
          "io.kubernetes.cri.container-type": "container",
          "io.katacontainers.pkg.oci.container_type": "pod_container"
        },
        "Process": {
          "Terminal": false,
          "Args": [
            "/bin/worker",
            "--shard=4"
          ],
          "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=$(sandbox-name)",
            "WORKER4_SETTING_000=value-000-",
            "WORKER4_SETTING_001=value-001-x",
            "WORKER4_SETTING_002=value-002-xx",
            "WORKER4_SETTING_003=value-003-xxx",
            "WORKER4_SETTING_004=value-004-xxxx",
            "WORKER4_SETTING_005=value-005-xxxxx",
            "WORKER4_SETTING_006=value-006-xxxxxx",
            "WORKER4_SETTING_007=value-007-xxxxxxx",
            "WORKER4_SETTING_008=value-008-xxxxxxxx",
            "WORKER4_SETTING_009=value-009-xxxxxxxxx",
            "WORKER4_SETTING_010=value-010-xxxxxxxxxx",
            "WORKER4_SETTING_011=value-011-xxxxxxxxxxx",
            "WORKER4_SETTING_012=value-012-xxxxxxxxxxxx",
            "WORKER4_SETTING_013=value-013-xxxxxxxxxxxxx",
            "WORKER4_SETTING_014=value-014-xxxxxxxxxxxxxx",
            "WORKER4_SETTING_015=value-015-xxxxxxxxxxxxxxx",
            "WORKER4_SETTING_016=value-016-xxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_017=value-017-xxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_018=value-018-xxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_019=value-019-xxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_020=value-020-xxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_021=value-021-xxxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_022=value-022-xxxxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_023=value-023-xxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_024=value-024-xxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_025=value-025-xxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_026=value-026-xxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_027=value-027-xxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_028=value-028-xxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_029=value-029-xxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_030=value-030-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_031=value-031-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_032=value-032-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_033=value-033-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_034=value-034-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_035=value-035-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_036=value-036-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_037=value-037-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_038=value-038-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "WORKER4_SETTING_039=value-039-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
          ],
          "Cwd": "/",
          "User": {
            "UID": 1000,
            "GID": 1000,
            "AdditionalGids": []
          },
          "NoNewPrivileges": true,
          "Capabilities": {
            "Bounding": [
              "$(default_caps)"
            ],
            "Effective": [
              "$(default_caps)"
            ],
            "Permitted": [
              "$(default_caps)"
            ],
            "Inheritable": [],
            "Ambient": []
          }
        },
        "Mounts": [
          {
            "destination": "/proc",
            "source": "proc",
            "type_": "proc",
            "options": [
              "nosuid",
              "noexec",
              "nodev"
            ]
          },
          {
            "destination": "/dev",
            "source": "tmpfs",
            "type_": "tmpfs",
            "options": [
              "nosuid",
              "strictatime",
              "mode=755",
              "size=65536k"
            ]
          },
          {
            "destination": "/sys",
            "source": "sysfs",
            "type_": "sysfs",
            "options": [
              "nosuid",
              "noexec",
              "nodev",
              "ro"
            ]
          },
          {
            "destination": "/etc/hosts",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-hosts$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/hostname",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-hostname$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/resolv.conf",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-resolv.conf$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/dev/termination-log",
            "source": "^$(cpath)/$(bundle-id)-[a-z0-9]{16}-termination-log$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          }
        ],
        "Linux": {
          "Namespaces": [
            {
              "Type": "ipc"
            },
            {
              "Type": "uts"
            },
            {
              "Type": "mount"
            },
            {
              "Type": "pid"
            },
            {
              "Type": "network"
            }
          ],
          "MaskedPaths": [
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware"
          ],
          "ReadonlyPaths": [
            "/proc/asound",
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
          ],
          "Sysctl": {},
          "Devices": []
        }
      },
      "storages": [],
      "devices": [],
      "exec_commands": [
        [
          "/bin/worker",
          "--health"
        ]
      ],
      "sandbox_pidns": false
    }
  ],
  "common": {
    "cpath": "/run/kata-containers/shared/containers",
    "sfprefix": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-",
    "ipv4_a": "100(\\.\\d{1,3}){3}",
    "svc_name": "[A-Z_\\.\\-]+",
    "dns_label": "[a-zA-Z0-9_\\.\\-]+",
    "default_caps": [
      "CAP_CHOWN",
      "CAP_DAC_OVERRIDE",
      "CAP_FSETID",
      "CAP_FOWNER",
      "CAP_MKNOD",
      "CAP_NET_RAW",
      "CAP_SETGID",
      "CAP_SETUID",
      "CAP_SETFCAP",
      "CAP_SETPCAP",
      "CAP_NET_BIND_SERVICE",
      "CAP_SYS_CHROOT",
      "CAP_KILL",
      "CAP_AUDIT_WRITE"
    ],
    "privileged_caps": [
      "CAP_CHOWN",
      "CAP_DAC_OVERRIDE",
      "CAP_FSETID",
      "CAP_FOWNER",
      "CAP_MKNOD",
      "CAP_NET_RAW",
      "CAP_SETGID",
      "CAP_SETUID",
      "CAP_SETFCAP",
      "CAP_SETPCAP",
      "CAP_NET_BIND_SERVICE",
      "CAP_SYS_CHROOT",
      "CAP_KILL",
      "CAP_AUDIT_WRITE",
      "CAP_SYS_ADMIN",
      "CAP_NET_ADMIN",
      "CAP_SYS_PTRACE",
      "CAP_SYS_MODULE",
      "CAP_SYS_RAWIO",
      "CAP_BPF",
      "CAP_PERFMON"
    ],
    "free_annotations": [
      "^io\\.kubernetes\\.cri\\.",
      "^io\\.katacontainers\\.pkg\\.oci\\."
    ]
  },
  "sandbox": {
    "name": "demo-pod",
    "namespace": "default",
    "storages": [
      {
        "driver": "ephemeral",
        "driver_options": [],
        "source": "^shm$",
        "fstype": "tmpfs",
        "options": [
          "noexec",
          "nosuid",
          "nodev",
          "mode=1777",
          "size=67108864"
        ],
        "mount_point": "^/run/kata-containers/sandbox/shm$",
        "shared": false
      }
    ]
  },
  "request_defaults": {
    "CreateContainerRequest": {
      "allow_env_regex": [
        "^HOSTNAME=$(dns_label)$",
        "^$(svc_name)_PORT_\\d+_TCP=tcp://$(ipv4_a):\\d+$",
        "^$(svc_name)_SERVICE_HOST=$(ipv4_a)$",
        "^$(svc_name)_SERVICE_PORT=\\d+$"
      ]
    },
    "CopyFileRequest": [
      "$(sfprefix)"
    ],
    "ExecProcessRequest": {
      "allowed_commands": [],
      "regex": []
    },
    "UpdateInterfaceRequest": {
      "allow_raw_flags": 128,
      "forbidden_names": [
        "lo"
      ],
      "forbidden_hw_addrs": [
        "00:00:00:00:00:00"
      ]
    },
    "UpdateRoutesRequest": {
      "forbidden_device_names": [
        "lo"
      ],
      "forbidden_source_regex": [
        "^127\\."
      ]
    },
    "AddARPNeighborsRequest": {
      "forbidden_device_names": [
        "lo"
      ],
      "allowed_states": [
        2,
        128
      ]
    },
    "ListInterfacesRequest": true,
    "ListRoutesRequest": true,
    "CloseStdinRequest": false,
    "ReadStreamRequest": true,
    "WriteStreamRequest": false,
    "SetPolicyRequest": false
  }
}
