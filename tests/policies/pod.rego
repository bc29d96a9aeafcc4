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

policy_data := {
  "containers": [
    {
      "name": "pause",
      "image": "pause:3.9",
      "OCI": {
        "Version": "1.1.0",
        "Root": {
          "Path": "$(cpath)/$(bundle-id)",
          "Readonly": false
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
            "GID": 65535
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
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-hosts$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/hostname",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-hostname$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/resolv.conf",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-resolv.conf$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/dev/termination-log",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-termination-log$",
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
          ]
        }
      },
      "storages": [],
      "exec_commands": [],
      "sandbox_pidns": false
    },
    {
      "name": "web",
      "image": "registry.example/web@sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
      "OCI": {
        "Version": "1.1.0",
        "Root": {
          "Path": "$(cpath)/$(bundle-id)",
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
            "GID": 1000
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
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-hosts$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/hostname",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-hostname$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/resolv.conf",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-resolv.conf$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/dev/termination-log",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-termination-log$",
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
          ]
        }
      },
      "storages": [
        {
          "driver": "blk",
          "driver_options": [
            "cocoon.verity.roothash=5b1e8f0c0a7f3d9a6c2b4e8d1f0a3c5e7b9d2f4a6c8e0b1d3f5a7c9e1b3d5f70"
          ],
          "source": "^/dev/vd[b-z]$",
          "fstype": "erofs",
          "options": [
            "ro"
          ],
          "mount_point": "^$(cpath)/[a-z0-9]{8,64}/layers/0$"
        }
      ],
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
          "Path": "$(cpath)/$(bundle-id)",
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
            "GID": 1000
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
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-hosts$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/hostname",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-hostname$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/resolv.conf",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-resolv.conf$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/dev/termination-log",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-termination-log$",
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
          ]
        }
      },
      "storages": [],
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
          "Path": "$(cpath)/$(bundle-id)",
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
            "GID": 1000
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
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-hosts$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/hostname",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-hostname$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/resolv.conf",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-resolv.conf$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/dev/termination-log",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-termination-log$",
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
          ]
        }
      },
      "storages": [],
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
          "Path": "$(cpath)/$(bundle-id)",
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
            "GID": 1000
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
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-hosts$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/hostname",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-hostname$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/resolv.conf",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-resolv.conf$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/dev/termination-log",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-termination-log$",
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
          ]
        }
      },
      "storages": [],
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
          "Path": "$(cpath)/$(bundle-id)",
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
            "GID": 1000
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
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-hosts$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/hostname",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-hostname$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/resolv.conf",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-resolv.conf$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/dev/termination-log",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-termination-log$",
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
          ]
        }
      },
      "storages": [],
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
          "Path": "$(cpath)/$(bundle-id)",
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
            "GID": 1000
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
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-hosts$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/hostname",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-hostname$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/resolv.conf",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-resolv.conf$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/dev/termination-log",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-termination-log$",
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
          ]
        }
      },
      "storages": [],
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
          "Path": "$(cpath)/$(bundle-id)",
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
            "GID": 1000
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
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-hosts$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/hostname",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-hostname$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/etc/resolv.conf",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-resolv.conf$",
            "type_": "bind",
            "options": [
              "rbind",
              "rprivate",
              "rw"
            ]
          },
          {
            "destination": "/dev/termination-log",
            "source": "^$(cpath)/[a-z0-9]{8,64}-[a-z0-9]{16}-termination-log$",
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
          ]
        }
      },
      "storages": [],
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
        "mount_point": "^/run/kata-containers/sandbox/shm$"
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
