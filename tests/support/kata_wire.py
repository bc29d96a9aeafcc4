"""Kata's wire contract, transcribed field by field from upstream, to check our .proto files against.

Sources (kata-containers/kata-containers, src/libs/protocols/protos/), all read at main
@7c6ba40c54ea29b459b4997cff948caaba4e658b (2026-08-22): agent.proto (last changed there in
64c139208fe25820b653b3f964f077cf99a6a030: Storage.shared, GetDiagnosticData and AddSwapPath
are new since the 74a17f96 this table was first written from), types.proto (last changed in
492329fc02c82edfa7ebb31acab2ec959a36a975: Route.mtu), oci.proto, health.proto and csi.proto
(no wire change since 8e8a5e25, 4bca10b7 and 4e00c237).

Format: ``Message: name=number type; ...`` with ``repeated``, ``map<k,v>`` and
``optional`` spelled as in the .proto; ``oneof X`` fields marked ``oneof:X``.
"""

RPCS = """
CreateContainer CreateContainerRequest Empty
StartContainer StartContainerRequest Empty
RemoveContainer RemoveContainerRequest Empty
ExecProcess ExecProcessRequest Empty
SignalProcess SignalProcessRequest Empty
WaitProcess WaitProcessRequest WaitProcessResponse
UpdateContainer UpdateContainerRequest Empty
UpdateEphemeralMounts UpdateEphemeralMountsRequest Empty
StatsContainer StatsContainerRequest StatsContainerResponse
PauseContainer PauseContainerRequest Empty
ResumeContainer ResumeContainerRequest Empty
RemoveStaleVirtiofsShareMounts RemoveStaleVirtiofsShareMountsRequest Empty
GetDiagnosticData GetDiagnosticDataRequest GetDiagnosticDataResponse
WriteStdin WriteStreamRequest WriteStreamResponse
ReadStdout ReadStreamRequest ReadStreamResponse
ReadStderr ReadStreamRequest ReadStreamResponse
CloseStdin CloseStdinRequest Empty
TtyWinResize TtyWinResizeRequest Empty
UpdateInterface UpdateInterfaceRequest Interface
UpdateRoutes UpdateRoutesRequest Routes
ListInterfaces ListInterfacesRequest Interfaces
ListRoutes ListRoutesRequest Routes
AddARPNeighbors AddARPNeighborsRequest Empty
GetIPTables GetIPTablesRequest GetIPTablesResponse
SetIPTables SetIPTablesRequest SetIPTablesResponse
GetMetrics GetMetricsRequest Metrics
MemAgentMemcgSet MemAgentMemcgConfig Empty
MemAgentCompactSet MemAgentCompactConfig Empty
CreateSandbox CreateSandboxRequest Empty
DestroySandbox DestroySandboxRequest Empty
OnlineCPUMem OnlineCPUMemRequest Empty
ReseedRandomDev ReseedRandomDevRequest Empty
GetGuestDetails GuestDetailsRequest GuestDetailsResponse
MemHotplugByProbe MemHotplugByProbeRequest Empty
SetGuestDateTime SetGuestDateTimeRequest Empty
CopyFile CopyFileRequest Empty
GetOOMEvent GetOOMEventRequest OOMEvent
AddSwap AddSwapRequest Empty
AddSwapPath AddSwapPathRequest Empty
GetVolumeStats VolumeStatsRequest VolumeStatsResponse
ResizeVolume ResizeVolumeRequest Empty
SetPolicy SetPolicyRequest Empty
"""

HEALTH_RPCS = """
Check CheckRequest HealthCheckResponse
Version CheckRequest VersionCheckResponse
"""

MESSAGES = """
CreateContainerRequest: container_id=1 string; exec_id=2 string; string_user=3 StringUser; devices=4 repeated Device; storages=5 repeated Storage; OCI=6 Spec; sandbox_pidns=7 bool; shared_mounts=8 repeated SharedMount; stdin_port=9 uint32; stdout_port=10 uint32; stderr_port=11 uint32
StartContainerRequest: container_id=1 string
RemoveContainerRequest: container_id=1 string; timeout=2 uint32
ExecProcessRequest: container_id=1 string; exec_id=2 string; string_user=3 StringUser; process=4 Process; stdin_port=5 uint32; stdout_port=6 uint32; stderr_port=7 uint32
SignalProcessRequest: container_id=1 string; exec_id=2 string; signal=3 uint32
WaitProcessRequest: container_id=1 string; exec_id=2 string
WaitProcessResponse: status=1 int32
UpdateContainerRequest: container_id=1 string; resources=2 LinuxResources
StatsContainerRequest: container_id=1 string
PauseContainerRequest: container_id=1 string
ResumeContainerRequest: container_id=1 string
CpuUsage: total_usage=1 uint64; percpu_usage=2 repeated uint64; usage_in_kernelmode=3 uint64; usage_in_usermode=4 uint64
ThrottlingData: periods=1 uint64; throttled_periods=2 uint64; throttled_time=3 uint64
CpuStats: cpu_usage=1 CpuUsage; throttling_data=2 ThrottlingData
PidsStats: current=1 uint64; limit=2 uint64
MemoryData: usage=1 uint64; max_usage=2 uint64; failcnt=3 uint64; limit=4 uint64
MemoryStats: cache=1 uint64; usage=2 MemoryData; swap_usage=3 MemoryData; kernel_usage=4 MemoryData; use_hierarchy=5 bool; stats=6 map<string,uint64>
BlkioStatsEntry: major=1 uint64; minor=2 uint64; op=3 string; value=4 uint64
BlkioStats: io_service_bytes_recursive=1 repeated BlkioStatsEntry; io_serviced_recursive=2 repeated BlkioStatsEntry; io_queued_recursive=3 repeated BlkioStatsEntry; io_service_time_recursive=4 repeated BlkioStatsEntry; io_wait_time_recursive=5 repeated BlkioStatsEntry; io_merged_recursive=6 repeated BlkioStatsEntry; io_time_recursive=7 repeated BlkioStatsEntry; sectors_recursive=8 repeated BlkioStatsEntry
HugetlbStats: usage=1 uint64; max_usage=2 uint64; failcnt=3 uint64
CgroupStats: cpu_stats=1 CpuStats; memory_stats=2 MemoryStats; pids_stats=3 PidsStats; blkio_stats=4 BlkioStats; hugetlb_stats=5 map<string,HugetlbStats>
NetworkStats: name=1 string; rx_bytes=2 uint64; rx_packets=3 uint64; rx_errors=4 uint64; rx_dropped=5 uint64; tx_bytes=6 uint64; tx_packets=7 uint64; tx_errors=8 uint64; tx_dropped=9 uint64
StatsContainerResponse: cgroup_stats=1 CgroupStats; network_stats=2 repeated NetworkStats
WriteStreamRequest: container_id=1 string; exec_id=2 string; data=3 bytes
WriteStreamResponse: len=1 uint32
ReadStreamRequest: container_id=1 string; exec_id=2 string; len=3 uint32
ReadStreamResponse: data=1 bytes
CloseStdinRequest: container_id=1 string; exec_id=2 string
TtyWinResizeRequest: container_id=1 string; exec_id=2 string; row=3 uint32; column=4 uint32
KernelModule: name=1 string; parameters=2 repeated string
CreateSandboxRequest: hostname=1 string; dns=2 repeated string; storages=3 repeated Storage; sandbox_pidns=4 bool; sandbox_id=5 string; guest_hook_path=6 string; kernel_modules=7 repeated KernelModule
DestroySandboxRequest:
RemoveStaleVirtiofsShareMountsRequest:
Interfaces: Interfaces=1 repeated Interface
Routes: Routes=1 repeated Route
UpdateInterfaceRequest: interface=1 Interface
UpdateRoutesRequest: routes=1 Routes
UpdateEphemeralMountsRequest: storages=1 repeated Storage
ListInterfacesRequest:
ListRoutesRequest:
ARPNeighbors: ARPNeighbors=1 repeated ARPNeighbor
AddARPNeighborsRequest: neighbors=1 ARPNeighbors
GetIPTablesRequest: is_ipv6=1 bool
GetIPTablesResponse: data=1 bytes
SetIPTablesRequest: is_ipv6=1 bool; data=2 bytes
SetIPTablesResponse: data=1 bytes
OnlineCPUMemRequest: wait=1 bool; nb_cpus=2 uint32; cpu_only=3 bool
ReseedRandomDevRequest: data=2 bytes
AgentDetails: version=1 string; init_daemon=2 bool; device_handlers=3 repeated string; storage_handlers=4 repeated string; supports_seccomp=5 bool; extra_features=6 repeated string
GuestDetailsRequest: mem_block_size=1 bool; mem_hotplug_probe=2 bool
GuestDetailsResponse: mem_block_size_bytes=1 uint64; agent_details=2 AgentDetails; support_mem_hotplug_probe=3 bool
MemHotplugByProbeRequest: memHotplugProbeAddr=1 repeated uint64
SetGuestDateTimeRequest: Sec=1 int64; Usec=2 int64
FSGroup: group_id=2 uint32; group_change_policy=3 FSGroupChangePolicy
SharedMount: name=1 string; src_ctr=2 string; src_path=3 string; dst_ctr=4 string; dst_path=5 string
Storage: driver=1 string; driver_options=2 repeated string; source=3 string; fstype=4 string; options=5 repeated string; mount_point=6 string; fs_group=7 FSGroup; shared=8 bool
Device: id=1 string; type=2 string; vm_path=3 string; container_path=4 string; options=5 repeated string
StringUser: uid=1 string; gid=2 string; additionalGids=3 repeated string
CopyFileRequest: path=1 string; file_size=2 int64; file_mode=3 uint32; dir_mode=4 uint32; uid=5 int32; gid=6 int32; offset=7 int64; data=8 bytes
GetOOMEventRequest:
OOMEvent: container_id=1 string
AddSwapRequest: PCIPath=1 repeated uint32
AddSwapPathRequest: path=1 string
GetMetricsRequest:
Metrics: metrics=1 string
VolumeStatsRequest: volume_guest_path=1 string
ResizeVolumeRequest: volume_guest_path=1 string; size=2 uint64
SetPolicyRequest: policy=1 string
GetDiagnosticDataRequest: log_type=1 string; container_id=2 string
GetDiagnosticDataResponse: data=1 string
MemAgentMemcgConfig: disabled=1 optional bool; swap=2 optional bool; swappiness_max=3 optional uint32; period_secs=4 optional uint64; period_psi_percent_limit=5 optional uint32; eviction_psi_percent_limit=6 optional uint32; eviction_run_aging_count_min=7 optional uint64
MemAgentCompactConfig: disabled=1 optional bool; period_secs=2 optional uint64; period_psi_percent_limit=3 optional uint32; compact_psi_percent_limit=4 optional uint32; compact_sec_max=5 optional int64; compact_order=6 optional uint32; compact_threshold=7 optional uint64; compact_force_times=8 optional uint64
Spec: Version=1 string; Process=2 Process; Root=3 Root; Hostname=4 string; Mounts=5 repeated Mount; Hooks=6 Hooks; Annotations=7 map<string,string>; Linux=8 Linux; Solaris=9 Solaris; Windows=10 Windows
Process: Terminal=1 bool; ConsoleSize=2 Box; User=3 User; Args=4 repeated string; Env=5 repeated string; Cwd=6 string; Capabilities=7 LinuxCapabilities; Rlimits=8 repeated POSIXRlimit; NoNewPrivileges=9 bool; ApparmorProfile=10 string; OOMScoreAdj=11 int64; SelinuxLabel=12 string
Box: Height=1 uint32; Width=2 uint32
User: UID=1 uint32; GID=2 uint32; AdditionalGids=3 repeated uint32; Username=4 string
LinuxCapabilities: Bounding=1 repeated string; Effective=2 repeated string; Inheritable=3 repeated string; Permitted=4 repeated string; Ambient=5 repeated string
POSIXRlimit: Type=1 string; Hard=2 uint64; Soft=3 uint64
Mount: destination=1 string; source=2 string; type=3 string; options=4 repeated string
Root: Path=1 string; Readonly=2 bool
Hooks: Prestart=1 repeated Hook; Poststart=2 repeated Hook; Poststop=3 repeated Hook; CreateRuntime=4 repeated Hook; CreateContainer=5 repeated Hook; StartContainer=6 repeated Hook
Hook: Path=1 string; Args=2 repeated string; Env=3 repeated string; Timeout=4 int64
Linux: UIDMappings=1 repeated LinuxIDMapping; GIDMappings=2 repeated LinuxIDMapping; Sysctl=3 map<string,string>; Resources=4 LinuxResources; CgroupsPath=5 string; Namespaces=6 repeated LinuxNamespace; Devices=7 repeated LinuxDevice; Seccomp=8 LinuxSeccomp; RootfsPropagation=9 string; MaskedPaths=10 repeated string; ReadonlyPaths=11 repeated string; MountLabel=12 string; IntelRdt=13 LinuxIntelRdt
Windows: dummy=1 string
Solaris: dummy=1 string
LinuxIDMapping: HostID=1 uint32; ContainerID=2 uint32; Size=3 uint32
LinuxNamespace: Type=1 string; Path=2 string
LinuxDevice: Path=1 string; Type=2 string; Major=3 int64; Minor=4 int64; FileMode=5 uint32; UID=6 uint32; GID=7 uint32
LinuxResources: Devices=1 repeated LinuxDeviceCgroup; Memory=2 LinuxMemory; CPU=3 LinuxCPU; Pids=4 LinuxPids; BlockIO=5 LinuxBlockIO; HugepageLimits=6 repeated LinuxHugepageLimit; Network=7 LinuxNetwork
LinuxMemory: Limit=1 int64; Reservation=2 int64; Swap=3 int64; Kernel=4 int64; KernelTCP=5 int64; Swappiness=6 uint64; DisableOOMKiller=7 bool
LinuxCPU: Shares=1 uint64; Quota=2 int64; Period=3 uint64; RealtimeRuntime=4 int64; RealtimePeriod=5 uint64; Cpus=6 string; Mems=7 string
LinuxWeightDevice: Major=1 int64; Minor=2 int64; Weight=3 uint32; LeafWeight=4 uint32
LinuxThrottleDevice: Major=1 int64; Minor=2 int64; Rate=3 uint64
LinuxBlockIO: Weight=1 uint32; LeafWeight=2 uint32; WeightDevice=3 repeated LinuxWeightDevice; ThrottleReadBpsDevice=4 repeated LinuxThrottleDevice; ThrottleWriteBpsDevice=5 repeated LinuxThrottleDevice; ThrottleReadIOPSDevice=6 repeated LinuxThrottleDevice; ThrottleWriteIOPSDevice=7 repeated LinuxThrottleDevice
LinuxPids: Limit=1 int64
LinuxDeviceCgroup: Allow=1 bool; Type=2 string; Major=3 int64; Minor=4 int64; Access=5 string
LinuxNetwork: ClassID=1 uint32; Priorities=2 repeated LinuxInterfacePriority
LinuxHugepageLimit: Pagesize=1 string; Limit=2 uint64
LinuxInterfacePriority: Name=1 string; Priority=2 uint32
LinuxSeccomp: DefaultAction=1 string; Architectures=2 repeated string; Flags=3 repeated string; Syscalls=4 repeated LinuxSyscall
LinuxSeccompArg: Index=1 uint64; Value=2 uint64; ValueTwo=3 uint64; Op=4 string
LinuxSyscall: Names=1 repeated string; Action=2 string; errnoret=3 oneof:ErrnoRet uint32; Args=4 repeated LinuxSeccompArg
LinuxIntelRdt: L3CacheSchema=1 string
IPAddress: family=1 IPFamily; address=2 string; mask=3 string
Interface: device=1 string; name=2 string; IPAddresses=3 repeated IPAddress; mtu=4 uint64; hwAddr=5 string; devicePath=6 string; type=7 string; raw_flags=8 uint32
Route: dest=1 string; gateway=2 string; device=3 string; source=4 string; scope=5 uint32; family=6 IPFamily; flags=7 uint32; mtu=8 uint32
ARPNeighbor: toIPAddress=1 IPAddress; device=2 string; lladdr=3 string; state=4 int32; flags=5 int32
CheckRequest: service=1 string
HealthCheckResponse: status=1 ServingStatus
VersionCheckResponse: grpc_version=1 string; agent_version=2 string
VolumeStatsResponse: usage=1 repeated VolumeUsage; volume_condition=2 VolumeCondition
VolumeUsage: available=1 uint64; total=2 uint64; used=3 uint64; unit=4 Unit
VolumeCondition: abnormal=1 bool; message=2 string
"""

ENUMS = """
IPFamily: v4=0; v6=1
FSGroupChangePolicy: Always=0; OnRootMismatch=1
ServingStatus: UNKNOWN=0; SERVING=1; NOT_SERVING=2
Unit: UNKNOWN=0; BYTES=1; INODES=2
"""
