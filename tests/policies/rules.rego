# cocoon's test policy rules, written in the shape genpolicy generates (package agent_policy,
# one rule per request message, a policy_data document appended below by make_policy.py).
# They are our own rules, not genpolicy's; they exercise the same mechanisms: request
# defaults, regex placeholders, pstate bookkeeping through JSON-patch ops, exec allow-lists
# tied to the container recorded at creation, and prints that explain a denial.
package agent_policy

import future.keywords.every
import future.keywords.if
import future.keywords.in

default AllowRequestsFailingPolicy := false

# Lifecycle calls that cannot change what runs are allowed; everything else must be earned.
default AddARPNeighborsRequest := false
default AddSwapRequest := false
default CloseStdinRequest := false
default CopyFileRequest := false
default CreateContainerRequest := {"allowed": false}
default CreateSandboxRequest := false
default DestroySandboxRequest := true
default ExecProcessRequest := false
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

CreateSandboxRequest if {
	input.guest_hook_path == ""
	count(input.kernel_modules) == 0
	input.sandbox_pidns == false
	every s in input.storages {
		some p in policy_data.sandbox.storages
		storage_matches(p, s)
	}
}

# ---------------------------------------------------------------------------------------------
# Containers

CreateContainerRequest := {"ops": ops, "allowed": true} if {
	create_input_is_plain
	valid_container_id(input.container_id)
	not data.pstate[input.container_id]
	some idx, p in policy_data.containers
	container_matches(p, input)
	ops := [{"op": "add", "path": concat("/", ["/pstate", input.container_id]), "value": idx}]
}

valid_container_id(id) if regex.match(`^[a-z0-9]{8,64}$`, id)

# Fields a host could use to escape the spec the policy describes.
create_input_is_plain if {
	count(input.shared_mounts) == 0
	is_null(input.string_user)
	oci := input.OCI
	is_null(oci.Hooks)
	is_null(oci.Solaris)
	is_null(oci.Windows)
	count(oci.Linux.UIDMappings) == 0
	count(oci.Linux.GIDMappings) == 0
	is_null(oci.Linux.Seccomp)
	oci.Linux.RootfsPropagation == ""
	oci.Linux.MountLabel == ""
	is_null(oci.Linux.IntelRdt)
	oci.Process.SelinuxLabel == ""
	oci.Process.User.Username == ""
}

create_input_is_plain := false if {
	count(input.shared_mounts) > 0
	print("CreateContainerRequest: shared_mounts are not allowed")
}

create_input_is_plain := false if {
	not is_null(input.OCI.Hooks)
	print("CreateContainerRequest: OCI hooks are not allowed")
}

container_matches(p, i) if {
	p_oci := p.OCI
	i_oci := i.OCI
	p_oci.Version == i_oci.Version
	p_oci.Root.Readonly == i_oci.Root.Readonly
	annotations_match(p, i_oci)
	process_matches(p_oci.Process, i_oci.Process)
	mounts_match(p_oci, i_oci)
	storages_match(p, i)
	namespaces_match(p_oci, i_oci)
}

annotations_match(p, i_oci) if {
	i_oci.Annotations["io.kubernetes.cri.image-name"] == p.image
	i_oci.Annotations["io.kubernetes.cri.container-name"] == p.name
	i_oci.Annotations["io.kubernetes.cri.sandbox-name"] == policy_data.sandbox.name
	i_oci.Annotations["io.kubernetes.cri.sandbox-namespace"] == policy_data.sandbox.namespace
	every key, value in i_oci.Annotations {
		annotation_allowed(p, key, value)
	}
}

annotation_allowed(p, key, value) if p.OCI.Annotations[key] == value

annotation_allowed(_, key, _) if {
	some pattern in policy_data.common.free_annotations
	regex.match(pattern, key)
}

process_matches(p_proc, i_proc) if {
	p_proc.Terminal == i_proc.Terminal
	p_proc.Args == i_proc.Args
	p_proc.Cwd == i_proc.Cwd
	p_proc.NoNewPrivileges == i_proc.NoNewPrivileges
	p_proc.User.UID == i_proc.User.UID
	p_proc.User.GID == i_proc.User.GID
	env_matches(p_proc.Env, i_proc.Env)
	capabilities_match(p_proc.Capabilities, i_proc.Capabilities)
}

process_matches(p_proc, i_proc) := false if {
	p_proc.Args != i_proc.Args
	print("CreateContainerRequest: process args", i_proc.Args, "are not", p_proc.Args)
}

env_matches(p_env, i_env) if {
	every var in i_env {
		env_var_allowed(p_env, var)
	}
}

env_matches(p_env, i_env) := false if {
	some var in i_env
	not env_var_allowed(p_env, var)
	print("CreateContainerRequest: environment variable", var, "is not allowed")
}

env_var_allowed(p_env, var) if var in p_env

env_var_allowed(p_env, var) if {
	not var in p_env
	some pattern in env_patterns
	regex.match(pattern, var)
}

# Expanded once per evaluation, not once per variable.
env_patterns := [expand(p) | some p in policy_data.request_defaults.CreateContainerRequest.allow_env_regex]

capabilities_match(p_caps, i_caps) if {
	every set in ["Bounding", "Effective", "Inheritable", "Permitted", "Ambient"] {
		every cap in i_caps[set] {
			cap in expand_caps(p_caps[set])
		}
	}
}

capabilities_match(p_caps, i_caps) := false if {
	some set in ["Bounding", "Effective", "Inheritable", "Permitted", "Ambient"]
	some cap in i_caps[set]
	not cap in expand_caps(p_caps[set])
	print("CreateContainerRequest: capability", cap, "in", set, "is not allowed")
}

expand_caps(caps) := policy_data.common.default_caps if caps == ["$(default_caps)"]

expand_caps(caps) := policy_data.common.privileged_caps if caps == ["$(privileged_caps)"]

expand_caps(caps) := caps if {
	caps != ["$(default_caps)"]
	caps != ["$(privileged_caps)"]
}

mounts_match(p_oci, i_oci) if {
	every m in i_oci.Mounts {
		some pm in p_oci.Mounts
		mount_matches(pm, m)
	}
}

mounts_match(p_oci, i_oci) := false if {
	some m in i_oci.Mounts
	not any_mount_matches(p_oci.Mounts, m)
	print("CreateContainerRequest: mount", m.destination, "from", m.source, "is not allowed")
}

any_mount_matches(p_mounts, m) if {
	some pm in p_mounts
	mount_matches(pm, m)
}

mount_matches(pm, m) if {
	pm.destination == m.destination
	pm.type_ == m.type_
	pm.options == m.options
	regex.match(expand(pm.source), m.source)
}

storages_match(p, i) if {
	count(p.storages) == count(i.storages)
	every s in i.storages {
		some ps in p.storages
		storage_matches(ps, s)
	}
}

storages_match(p, i) := false if {
	some s in i.storages
	not any_storage_matches(p.storages, s)
	print("CreateContainerRequest: storage", s.source, "->", s.mount_point, "does not match the policy (layer hash?)")
}

any_storage_matches(ps_list, s) if {
	some ps in ps_list
	storage_matches(ps, s)
}

storage_matches(ps, s) if {
	ps.driver == s.driver
	ps.fstype == s.fstype
	ps.options == s.options
	ps.driver_options == s.driver_options
	regex.match(expand(ps.source), s.source)
	regex.match(expand(ps.mount_point), s.mount_point)
}

namespaces_match(p_oci, i_oci) if {
	every ns in i_oci.Linux.Namespaces {
		ns.Path == ""
		some pns in p_oci.Linux.Namespaces
		pns.Type == ns.Type
	}
}

# $(name) placeholders from policy_data.common, as genpolicy writes them.
expand(s) := out if {
	s1 := replace(s, "$(sfprefix)", policy_data.common.sfprefix)
	s2 := replace(s1, "$(cpath)", policy_data.common.cpath)
	s3 := replace(s2, "$(ipv4_a)", policy_data.common.ipv4_a)
	s4 := replace(s3, "$(svc_name)", policy_data.common.svc_name)
	s5 := replace(s4, "$(dns_label)", policy_data.common.dns_label)
	out := replace(s5, "$(sandbox-name)", policy_data.sandbox.name)
}

RemoveContainerRequest := {"allowed": true, "ops": ops} if {
	data.pstate[input.container_id]
	ops := [{"op": "remove", "path": concat("/", ["/pstate", input.container_id])}]
}

# ---------------------------------------------------------------------------------------------
# Exec: only commands the policy lists, for the container created under that id.

ExecProcessRequest if {
	exec_input_is_plain
	some command in policy_data.request_defaults.ExecProcessRequest.allowed_commands
	command == input.process.Args
}

ExecProcessRequest if {
	exec_input_is_plain
	idx := data.pstate[input.container_id]
	some command in policy_data.containers[idx].exec_commands
	command == input.process.Args
}

ExecProcessRequest if {
	exec_input_is_plain
	some pattern in policy_data.request_defaults.ExecProcessRequest.regex
	regex.match(pattern, concat(" ", input.process.Args))
}

ExecProcessRequest := false if {
	not exec_listed
	not data.pstate[input.container_id]
	print("ExecProcessRequest: container", input.container_id, "was not created under this policy")
}

ExecProcessRequest := false if {
	not exec_listed
	data.pstate[input.container_id]
	print("ExecProcessRequest: command", input.process.Args, "is not in the allow list")
}

exec_listed if {
	idx := data.pstate[input.container_id]
	input.process.Args in policy_data.containers[idx].exec_commands
}

exec_listed if input.process.Args in policy_data.request_defaults.ExecProcessRequest.allowed_commands

exec_listed if {
	some pattern in policy_data.request_defaults.ExecProcessRequest.regex
	regex.match(pattern, concat(" ", input.process.Args))
}

exec_input_is_plain if {
	is_null(input.string_user)
	input.process.SelinuxLabel == ""
	input.process.ApparmorProfile == ""
}

# ---------------------------------------------------------------------------------------------
# CopyFile: below the shared directory, no traversal, symlinks relative and inside.

CopyFileRequest if {
	not path_traverses(input.path)
	some pattern in policy_data.request_defaults.CopyFileRequest
	regex.match(expand(pattern), input.path)
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
