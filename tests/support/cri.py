"""A CRI client in kubelet's role, for tests that drive a real containerd the way a Kubernetes node does.

Why our own: the shim's end-to-end tests (issue 23) need the calls kubelet makes, in kubelet's order and
shape (RunPodSandbox with a runtime handler and the pod's annotations, CreateContainer with the sandbox
config again, ExecSync for probes), without crictl or a kubelet on the machine. The messages are
shim/protocols/cri.proto (our subset of Kubernetes' cri-api runtime.v1); calls go by method path over a
generic channel, as launcher/client.py does for the agent.

- ``Cri(address, timeout=...)``: ``address`` is ``unix:///path`` (Containerd.cri_address). Each method has a
  deadline (the client's ``timeout`` unless given); a failed call raises ``CriError`` carrying the gRPC
  status code and containerd's message (``details``): a policy denial's reason is readable from it.
- ``pod_config(...)``/``container_config(...)`` build requests as kubelet fills them: metadata, hostname,
  log directory and path, the io.kubernetes.* labels, the pod's annotations passed through as given,
  namespace options, masked/read-only paths, seccomp Unconfined (kubelet's default without
  SeccompDefault), BestEffort resources.
- ``pause_image(dest)``: the pod sandbox image for runc tests (busybox's sh blocking forever).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from shim.protocols import cri_pb2 as pb
from support import ociimage

RUNTIME_SERVICE = "runtime.v1.RuntimeService"
IMAGE_SERVICE = "runtime.v1.ImageService"
API_VERSION = "v1"
DEFAULT_TIMEOUT = 60.0
BUSYBOX = Path("/usr/bin/busybox")

# kubelet's defaults for a container whose securityContext says nothing (procMount Default):
# k8s.io/kubernetes pkg/securitycontext/util.go defaultMaskedPaths / defaultReadonlyPaths
MASKED_PATHS = ("/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
BESTEFFORT_CPU_SHARES = 2  # kubelet's minimum shares (a BestEffort pod)
BESTEFFORT_OOM_SCORE_ADJ = 1000

R = TypeVar("R", bound=Message)


class CriError(RuntimeError):
    """A CRI call failed: ``code`` is the gRPC status (``grpc.StatusCode``), ``details`` the runtime's
    message (containerd wraps the shim's error, so a policy denial's reason is in it)."""

    def __init__(self, method: str, code: Any, details: str) -> None:
        self.method = method
        self.code = code
        self.details = details
        name = getattr(code, "name", str(code))
        super().__init__(f"{method}: {name}: {details}")


class Cri:
    """kubelet's side of CRI against one runtime endpoint; close it (or use ``with``) to drop the channel."""

    def __init__(self, address: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not address.startswith("unix://"):
            raise ValueError(f"{address}: the tests talk CRI over unix sockets only")
        self.address = address
        self.timeout = timeout
        self.channel = grpc.insecure_channel(address)

    def __enter__(self) -> Cri:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def call(self, service: str, method: str, request: Message, response: type[R],
             timeout: float | None = None) -> R:
        """One unary call by path; a gRPC failure becomes CriError (code and details kept)."""
        path = f"/{service}/{method}"
        stub = self.channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=response.FromString)
        try:
            result: R = stub(request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as e:
            code = e.code() if callable(getattr(e, "code", None)) else None
            details = e.details() if callable(getattr(e, "details", None)) else str(e)
            raise CriError(method, code, details or "") from None
        return result

    def _rt(self, method: str, request: Message, response: type[R], timeout: float | None = None) -> R:
        return self.call(RUNTIME_SERVICE, method, request, response, timeout)

    def _img(self, method: str, request: Message, response: type[R], timeout: float | None = None) -> R:
        return self.call(IMAGE_SERVICE, method, request, response, timeout)

    # --- runtime ---------------------------------------------------------------------------------------

    def version(self, timeout: float | None = None) -> pb.VersionResponse:
        return self._rt("Version", pb.VersionRequest(version=API_VERSION), pb.VersionResponse, timeout)

    def wait_ready(self, deadline_s: float = 30.0) -> pb.VersionResponse:
        """Version until it answers (containerd's CRI plugin starts after its socket exists); bounded."""
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                return self.version(timeout=5)
            except CriError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def run_pod_sandbox(self, config: pb.PodSandboxConfig, runtime_handler: str = "",
                        timeout: float | None = None) -> str:
        """The new sandbox's id. ``runtime_handler`` is the RuntimeClass's handler ("" = the default runtime)."""
        request = pb.RunPodSandboxRequest(config=config, runtime_handler=runtime_handler)
        return self._rt("RunPodSandbox", request, pb.RunPodSandboxResponse, timeout).pod_sandbox_id

    def stop_pod_sandbox(self, pod_id: str, timeout: float | None = None) -> None:
        self._rt("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), pb.StopPodSandboxResponse,
                 timeout)

    def remove_pod_sandbox(self, pod_id: str, timeout: float | None = None) -> None:
        self._rt("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id),
                 pb.RemovePodSandboxResponse, timeout)

    def pod_sandbox_status(self, pod_id: str, verbose: bool = False,
                           timeout: float | None = None) -> pb.PodSandboxStatusResponse:
        """The status (``.status.network.ip`` is the pod's address); ``verbose``: ``.info`` has containerd's
        JSON (``info["info"]``: the sandbox's OCI spec, its netns path, the runtime handler)."""
        request = pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=verbose)
        return self._rt("PodSandboxStatus", request, pb.PodSandboxStatusResponse, timeout)

    def list_pod_sandboxes(self, timeout: float | None = None) -> list[pb.PodSandbox]:
        return list(self._rt("ListPodSandbox", pb.ListPodSandboxRequest(), pb.ListPodSandboxResponse,
                             timeout).items)

    def create_container(self, pod_id: str, config: pb.ContainerConfig, sandbox_config: pb.PodSandboxConfig,
                         timeout: float | None = None) -> str:
        """The new container's id; kubelet sends the pod's sandbox config again with every container."""
        request = pb.CreateContainerRequest(pod_sandbox_id=pod_id, config=config, sandbox_config=sandbox_config)
        return self._rt("CreateContainer", request, pb.CreateContainerResponse, timeout).container_id

    def start_container(self, container_id: str, timeout: float | None = None) -> None:
        self._rt("StartContainer", pb.StartContainerRequest(container_id=container_id), pb.StartContainerResponse,
                 timeout)

    def stop_container(self, container_id: str, grace_s: int = 10, timeout: float | None = None) -> None:
        """SIGTERM, then SIGKILL after ``grace_s`` (the pod's terminationGracePeriodSeconds)."""
        request = pb.StopContainerRequest(container_id=container_id, timeout=grace_s)
        self._rt("StopContainer", request, pb.StopContainerResponse,
                 timeout if timeout is not None else max(self.timeout, grace_s + 30.0))

    def remove_container(self, container_id: str, timeout: float | None = None) -> None:
        self._rt("RemoveContainer", pb.RemoveContainerRequest(container_id=container_id),
                 pb.RemoveContainerResponse, timeout)

    def container_status(self, container_id: str, verbose: bool = False,
                         timeout: float | None = None) -> pb.ContainerStatus:
        request = pb.ContainerStatusRequest(container_id=container_id, verbose=verbose)
        return self._rt("ContainerStatus", request, pb.ContainerStatusResponse, timeout).status

    def container_status_info(self, container_id: str, timeout: float | None = None) -> Mapping[str, str]:
        """The verbose status's ``info`` (``info["info"]``: containerd's JSON with the container's OCI spec)."""
        request = pb.ContainerStatusRequest(container_id=container_id, verbose=True)
        return dict(self._rt("ContainerStatus", request, pb.ContainerStatusResponse, timeout).info)

    def list_containers(self, pod_id: str = "", timeout: float | None = None) -> list[pb.Container]:
        request = pb.ListContainersRequest(filter=pb.ContainerFilter(pod_sandbox_id=pod_id))
        return list(self._rt("ListContainers", request, pb.ListContainersResponse, timeout).containers)

    def exec_sync(self, container_id: str, cmd: Sequence[str], exec_timeout_s: int = 30,
                  timeout: float | None = None) -> pb.ExecSyncResponse:
        """Run ``cmd`` in the container and wait (kubelet's exec probes): stdout, stderr, exit_code.
        The gRPC deadline outlasts ``exec_timeout_s`` so the runtime's own timeout answers first."""
        request = pb.ExecSyncRequest(container_id=container_id, cmd=list(cmd), timeout=exec_timeout_s)
        return self._rt("ExecSync", request, pb.ExecSyncResponse,
                        timeout if timeout is not None else max(self.timeout, exec_timeout_s + 30.0))

    def wait_container(self, container_id: str, states: Iterable[int], deadline_s: float = 60.0,
                       poll_s: float = 0.2) -> pb.ContainerStatus:
        """ContainerStatus until its state is one of ``states`` (bounded by ``deadline_s``)."""
        wanted = set(states)
        deadline = time.monotonic() + deadline_s
        while True:
            status = self.container_status(container_id)
            if status.state in wanted:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"container {container_id}: state {pb.ContainerState.Name(status.state)} "
                                   f"after {deadline_s:.0f} s, wanted {[pb.ContainerState.Name(s) for s in wanted]}")
            time.sleep(poll_s)

    # --- images ----------------------------------------------------------------------------------------

    def pull_image(self, image: str, sandbox_config: pb.PodSandboxConfig | None = None,
                   auth: pb.AuthConfig | None = None, annotations: Mapping[str, str] | None = None,
                   timeout: float | None = None) -> str:
        """The image's reference (its id, ``sha256:<config digest>``) after the runtime pulled it."""
        request = pb.PullImageRequest(image=pb.ImageSpec(image=image, annotations=dict(annotations or {})))
        if sandbox_config is not None:
            request.sandbox_config.CopyFrom(sandbox_config)
        if auth is not None:
            request.auth.CopyFrom(auth)
        return self._img("PullImage", request, pb.PullImageResponse, timeout).image_ref

    def image_status(self, image: str, timeout: float | None = None) -> pb.Image | None:
        """The image as CRI sees it, or None when it has no such image (CRI answers an empty status)."""
        response = self._img("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image=image)),
                             pb.ImageStatusResponse, timeout)
        return response.image if response.HasField("image") else None

    def list_images(self, timeout: float | None = None) -> list[pb.Image]:
        return list(self._img("ListImages", pb.ListImagesRequest(), pb.ListImagesResponse, timeout).images)


# --- kubelet-shaped requests ---------------------------------------------------------------------------


def _security_profile(kind: str) -> pb.SecurityProfile:
    pb.SecurityProfile.ProfileType.Value(kind)  # an unknown name: ValueError here, not a default on the wire
    return pb.SecurityProfile(profile_type=kind)


def cluster_dns(namespace: str, server: str = "10.88.0.10", domain: str = "cluster.local") -> pb.DNSConfig:
    """dnsPolicy ClusterFirst as kubelet writes it (the server only lands in the pod's resolv.conf)."""
    return pb.DNSConfig(servers=[server], searches=[f"{namespace}.svc.{domain}", f"svc.{domain}", domain],
                        options=["ndots:5"])


def pod_config(
    name: str,
    *,
    namespace: str = "default",
    uid: str | None = None,
    attempt: int = 0,
    hostname: str | None = None,
    log_directory: Path | str | None = None,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    dns: pb.DNSConfig | None = None,
    cgroup_parent: str = "",
    run_as_user: int | None = None,
    run_as_group: int | None = None,
    privileged: bool = False,
    seccomp: str = "Unconfined",
    sysctls: Mapping[str, str] | None = None,
) -> pb.PodSandboxConfig:
    """A RunPodSandbox config as kubelet builds it from a pod (pkg/kubelet/kuberuntime
    generatePodSandboxConfig): the pod's annotations go through unchanged (e.g.
    ``io.katacontainers.config.hypervisor.cc_init_data``), labels gain kubelet's io.kubernetes.pod.*,
    the network and IPC namespaces are the pod's, the PID namespace each container's."""
    uid = uid or str(uuid.uuid4())
    config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=attempt),
        hostname=hostname if hostname is not None else name,
        log_directory=str(log_directory) if log_directory is not None else "",
        labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace,
                "io.kubernetes.pod.uid": uid, **(labels or {})},
        annotations=dict(annotations or {}),
    )
    if dns is not None:
        config.dns_config.CopyFrom(dns)
    linux = config.linux
    linux.cgroup_parent = cgroup_parent
    linux.sysctls.update(sysctls or {})
    ctx = linux.security_context
    ctx.namespace_options.CopyFrom(pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))
    ctx.privileged = privileged
    ctx.seccomp.CopyFrom(_security_profile(seccomp))
    if run_as_user is not None:
        ctx.run_as_user.value = run_as_user
    if run_as_group is not None:
        ctx.run_as_group.value = run_as_group
    return config


def container_config(
    name: str,
    image: str,
    *,
    pod: pb.PodSandboxConfig | None = None,
    command: Sequence[str] = (),
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    working_dir: str = "",
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    attempt: int = 0,
    log_path: str | None = None,
    run_as_user: int | None = None,
    run_as_group: int | None = None,
    privileged: bool = False,
    readonly_rootfs: bool = False,
    no_new_privs: bool = False,
    add_capabilities: Sequence[str] = (),
    drop_capabilities: Sequence[str] = (),
    seccomp: str = "Unconfined",
    cpu_shares: int = BESTEFFORT_CPU_SHARES,
    oom_score_adj: int = BESTEFFORT_OOM_SCORE_ADJ,
    memory_limit: int = 0,
    tty: bool = False,
    stdin: bool = False,
    mounts: Sequence[pb.Mount] = (),
) -> pb.ContainerConfig:
    """A CreateContainer config as kubelet builds it (kuberuntime generateContainerConfig): ``command`` is
    the pod spec's command (the image's entrypoint when empty), ``args`` its args; ``log_path`` relative
    to the pod's log directory (kubelet: ``<name>/<attempt>.log``); ``pod`` supplies the io.kubernetes.pod.*
    labels. Resources default to a BestEffort pod's (cpu shares 2, oom_score_adj 1000)."""
    pod_labels = dict(pod.labels) if pod is not None else {}
    config = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name, attempt=attempt),
        image=pb.ImageSpec(image=image),
        command=list(command),
        args=list(args),
        working_dir=working_dir,
        envs=[pb.KeyValue(key=k, value=v) for k, v in (env or {}).items()],
        labels={**{k: v for k, v in pod_labels.items() if k.startswith("io.kubernetes.pod.")},
                "io.kubernetes.container.name": name, **(labels or {})},
        annotations={"io.kubernetes.container.restartCount": str(attempt),
                     "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
                     **(annotations or {})},
        log_path=log_path if log_path is not None else f"{name}/{attempt}.log",
        tty=tty,
        stdin=stdin,
        mounts=list(mounts),
    )
    linux = config.linux
    linux.resources.CopyFrom(pb.LinuxContainerResources(cpu_period=100000, cpu_shares=cpu_shares,
                                                        oom_score_adj=oom_score_adj,
                                                        memory_limit_in_bytes=memory_limit))
    ctx = linux.security_context
    ctx.namespace_options.CopyFrom(pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))
    ctx.privileged = privileged
    ctx.readonly_rootfs = readonly_rootfs
    ctx.no_new_privs = no_new_privs
    ctx.seccomp.CopyFrom(_security_profile(seccomp))
    ctx.capabilities.add_capabilities.extend(add_capabilities)
    ctx.capabilities.drop_capabilities.extend(drop_capabilities)
    if not privileged:
        ctx.masked_paths.extend(MASKED_PATHS)
        ctx.readonly_paths.extend(READONLY_PATHS)
    if run_as_user is not None:
        ctx.run_as_user.value = run_as_user
    if run_as_group is not None:
        ctx.run_as_group.value = run_as_group
    return config


# --- kubelet's files and volumes on the node -------------------------------------------------------------
# Where kubelet keeps a pod's files (pkg/kubelet: <root>/pods/<uid>/etc-hosts, containers/<name>/<id> for the
# termination log, volumes/<plugin>/<name>), and the atomic writer's layout of a ConfigMap volume
# (pkg/volume/util/atomic_writer.go: the files in a timestamped "..<ts>" directory, "..data" -> it, and one
# relative symlink per key), which is what the runtime sees behind the bind mount.


def host_mount(container_path: str, host_path: Path | str, readonly: bool = False) -> pb.Mount:
    return pb.Mount(container_path=container_path, host_path=str(host_path), readonly=readonly)


def etc_hosts(pod_dir: Path, hostname: str, ip: str) -> Path:
    """kubelet's managed /etc/hosts for a pod (ensureHostsFile)."""
    pod_dir.mkdir(parents=True, exist_ok=True)
    path = pod_dir / "etc-hosts"
    path.write_text(f"# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost "
                    f"ip6-loopback\n{ip}\t{hostname}\n")
    return path


def termination_log(pod_dir: Path, container: str) -> Path:
    path = pod_dir / "containers" / container / uuid.uuid4().hex[:8]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def config_map_volume(pod_dir: Path, name: str, data: Mapping[str, str]) -> Path:
    """A ConfigMap volume as kubelet's atomic writer leaves it."""
    volume = pod_dir / "volumes" / "kubernetes.io~configmap" / name
    stamp = volume / "..2026_12_04_00_00_00.000000001"
    stamp.mkdir(parents=True)
    for key, value in data.items():
        (stamp / key).write_text(value)
        (stamp / key).chmod(0o644)
        (volume / key).symlink_to(f"..data/{key}")
    (volume / "..data").symlink_to(stamp.name)
    return volume


def empty_dir_volume(pod_dir: Path, name: str) -> Path:
    volume = pod_dir / "volumes" / "kubernetes.io~empty-dir" / name
    volume.mkdir(parents=True)
    volume.chmod(0o777)
    return volume


# --- images for runc tests -----------------------------------------------------------------------------


def busybox_layer(applets: Iterable[str] = ("sh", "echo", "cat", "sleep", "false", "true", "id", "test", "[",
                                            "hostname", "ip", "ls", "env", "pwd", "exit")) -> dict[str, Any]:
    """A layer with Debian's static busybox and a few applets: a shell image runc can run."""
    layer: dict[str, Any] = {"bin": ociimage.Dir(), "bin/busybox": ociimage.File(BUSYBOX.read_bytes(), 0o755),
                             "etc": ociimage.Dir(), "tmp": ociimage.Dir(0o1777), "proc": ociimage.Dir(),
                             "sys": ociimage.Dir(), "dev": ociimage.Dir()}
    for applet in applets:
        layer[f"bin/{applet}"] = ociimage.Symlink("busybox")
    return layer


PAUSE_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # registry.k8s.io/pause's config
PAUSE_SCRIPT = b"""#!/bin/sh
# the pod sandbox's process: hold the pod's namespaces until told to stop (containerd sends SIGTERM,
# then SIGKILL); sh as PID 1 ignores signals it has no trap for, hence the trap
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
"""


def pause_image(dest: Path, tag: str = "cocoon") -> ociimage.BuiltImage:
    """The pod sandbox image: ``/pause`` blocks until SIGTERM (busybox sh; no registry); user and env as
    registry.k8s.io/pause's config has them (65535:65535, the default PATH), which is what a generated
    policy expects of the sandbox container (generator/settings.json ``pause_container``)."""
    layer = busybox_layer(("sh", "sleep"))
    layer["pause"] = ociimage.File(PAUSE_SCRIPT, 0o755)
    return ociimage.build_image(dest, [layer], tag=tag, config={"Entrypoint": ["/pause"], "User": "65535:65535",
                                                                "Env": [PAUSE_PATH]})


def busybox_image(dest: Path, tag: str = "cocoon", extra: Mapping[str, Any] | None = None,
                  config: Mapping[str, Any] | None = None) -> ociimage.BuiltImage:
    """A busybox image whose default process is ``sleep`` forever (a pod's long-running container)."""
    layers: list[ociimage.LayerSpec] = [busybox_layer()]
    if extra:
        layers.append(dict(extra))
    cfg = {"Cmd": ["/bin/sleep", "2147483647"], "Env": ["PATH=/bin"], **(config or {})}
    return ociimage.build_image(dest, layers, tag=tag, config=cfg)


def first(items: Iterable[R], pred: Callable[[R], bool]) -> R | None:
    """The first item for which ``pred`` holds (a list lookup that reads in a test)."""
    return next((i for i in items if pred(i)), None)
