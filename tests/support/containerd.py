"""A real containerd (Debian's 1.6) for the tests: its own root, state and sockets in a temp dir, nothing shared
with a system containerd, and nothing left behind when it stops.

The config (containerd's version 2 format, `containerd config default` names) enables the CRI plugin with a
runtime handler ``cocoon`` whose ``runtime_type`` is ``io.containerd.cocoon.v2``: containerd's runtime v2
turns that type into the binary name ``containerd-shim-cocoon-v2`` and looks it up on its own PATH
(runtime/v2/shim/util.go BinaryName), so a test puts the shim's bin dir first on ``path``. The only network
addresses are unix sockets and, for the CRI streaming server (exec/attach URLs), 127.0.0.1 with a port the
kernel picks.

CRI (kubelet's API, tests/support/cri.py) is served on the same grpc socket (``cri_address``). For it:

- ``sandbox_image`` names the pod's pause image, which the test imports itself (``import_image(...,
  namespace=CRI_NAMESPACE)``: CRI's images live in containerd namespace ``k8s.io``) before the first
  RunPodSandbox; otherwise containerd would try to pull it from a registry.
- the ``cocoon`` handler lists ``pod_annotations``/``container_annotations`` = ``io.katacontainers.*``:
  containerd 1.6 copies into the sandbox's and containers' OCI specs only the pod annotations a runtime
  lists (docs/cri/config.md: "pod_annotations is a list of pod annotations passed to both pod sandbox as
  well as container OCI annotations", golang path.Match patterns), so the policy's
  ``io.katacontainers.config.hypervisor.cc_init_data`` reaches the shim only with that line.
- ``netns_mounts_under_state_dir = true`` puts the pods' network namespace files below ``base/state``
  instead of /var/run/netns, so whatever a failed test leaves is unmounted with the rest of ``base``.
- ``network=True`` runs containerd (and so every CNI plugin and shim it starts) inside a network
  namespace the test creates (``ip netns add cocoon-t-<random>``; containerd started through ``nsenter
  --net``, which enters only the network namespace: the mounts it makes stay visible to the test and to
  the clean-up). The conflist in ``base/cni`` is CNI's ``bridge`` (bridge ``cocoon-br0``, ``isGateway``,
  no ``ipMasq``: no iptables rule anywhere) with ``host-local`` IPAM on CNI_SUBNET (state in
  ``base/cni-ipam``, not /var/lib/cni/networks) plus ``loopback``. The bridge and the pods' veth ends live
  in that namespace, so deleting it at stop leaves no link behind. libcni still caches each ADD's result
  in /var/lib/cni/results/<network>-<id>-<if> (no containerd 1.6 knob moves it); CNI DEL removes it,
  and stop removes any this test's network (named after its namespace) left.
- ``restrict_oom_score_adj``: CRI gives a pod sandbox oom_score_adj -998, and lowering a score needs
  CAP_SYS_RESOURCE, which this machine's root lacks (runc's nsexec fails with "failed to update
  /proc/self/oom_score_adj: Permission denied"); restricted, no score goes below containerd's own.
- ``enable_unprivileged_ports``/``_icmp``: the pod sandbox's sysctls ``net.ipv4.ip_unprivileged_port_start=0``
  and ``net.ipv4.ping_group_range``, containerd 1.7's defaults and what generated policies expect.
- runc's state (``Root``) below ``base/runc``, not /run/containerd/runc/<namespace>.
- runc under CRI needs nothing else on this machine (cgroup v1 hybrid, cgroupfs driver: ``SystemdCgroup``
  stays false; no AppArmor in the kernel, so none is applied).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from support.ociimage import BuiltImage

CONTAINERD = "/usr/bin/containerd"
CTR = "/usr/bin/ctr"
RUNTIME = "io.containerd.cocoon.v2"
HANDLER = "cocoon"
NAMESPACE = "cocoon-test"
CRI_NAMESPACE = "k8s.io"  # where CRI keeps its images and containers (pkg/cri/constants)
START_TIMEOUT = 30.0
PAUSE_IMAGE = "localhost/pause:cocoon"
CNI_SUBNET = "10.88.0.0/24"
CNI_BRIDGE = "cocoon-br0"
CNI_BIN = "/usr/lib/cni"
CNI_CACHE = Path("/var/lib/cni/results")
NETNS_PREFIX = "cocoon-t-"
IP = "/usr/sbin/ip"
NSENTER = "/usr/bin/nsenter"
# the runtime's annotations containerd passes from the pod (and container) config into the OCI specs
PASSED_ANNOTATIONS = ("io.katacontainers.*",)


class ContainerdError(RuntimeError):
    """containerd did not start, did not answer, or a ctr command failed."""


def available() -> str | None:
    """Why the containerd tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "containerd needs root"
    for tool in (CONTAINERD, CTR):
        if not os.access(tool, os.X_OK):
            return f"needs {tool} (make setup installs containerd)"
    return None


def config_toml(base: Path, sandbox_image: str = PAUSE_IMAGE) -> str:
    """containerd's config for a test: every path below ``base``; plugins that would write elsewhere
    (opt's /opt/containerd, the pods' netns files) pointed below it too."""
    annotations = json.dumps(list(PASSED_ANNOTATIONS))
    return f"""\
version = 2
root = "{base}/root"
state = "{base}/state"
oom_score = 0

[grpc]
  address = "{base}/containerd.sock"

[ttrpc]
  address = "{base}/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  restrict_oom_score_adj = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  sandbox_image = "{sandbox_image}"
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{base}/runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{HANDLER}]
      runtime_type = "{RUNTIME}"
      pod_annotations = {annotations}
      container_annotations = {annotations}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{base}/cni"
    max_conf_num = 1
"""


def cni_conflist(base: Path, network: str, subnet: str = CNI_SUBNET, bridge: str = CNI_BRIDGE) -> str:
    """The pods' network: a bridge of our own with host-local addresses from ``subnet`` (IPAM state below
    ``base``), and loopback. ``isGateway`` gives the bridge the subnet's first address (the pods' default
    route); ``ipMasq`` is off, so the plugin adds no iptables rule."""
    doc = {
        "cniVersion": "0.4.0",
        "name": network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": False,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(base / "cni-ipam"),
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "loopback"},
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


@dataclass
class Containerd:
    """One running containerd; ``ctr`` runs its client against this instance's socket and namespace.

    ``network``: run it inside a network namespace of its own with the CNI bridge network (module
    docstring); ``sandbox_image``: the pause image CRI starts every pod sandbox from."""

    base: Path
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)
    network: bool = False
    sandbox_image: str = PAUSE_IMAGE
    netns: str | None = None  # the test's network namespace, once made

    def __post_init__(self) -> None:
        self.log = self.base / "containerd.log"

    @property
    def address(self) -> str:
        return str(self.base / "containerd.sock")

    @property
    def cri_address(self) -> str:
        """CRI's gRPC endpoint (kubelet's ``--container-runtime-endpoint``): containerd serves the CRI
        services on its main grpc socket."""
        return "unix://" + self.address

    @property
    def cni_network(self) -> str:
        """The CNI network's name: the namespace's, unique per test, so stop finds its cache entries."""
        return self.netns or "cocoon-test"

    @property
    def fifo_dir(self) -> Path:
        """Where ``ctr run`` creates the task's stdio FIFOs (default /run/containerd/fifo: outside the test)."""
        return self.base / "fifo"

    def ctr(self, *args: str, timeout: float = 120, check: bool = True,
            input: bytes | None = None, namespace: str = NAMESPACE) -> subprocess.CompletedProcess[bytes]:
        argv = [CTR, "--address", self.address, "--namespace", namespace, *args]
        try:
            run = subprocess.run(argv, capture_output=True, timeout=timeout, input=input,
                                 stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ContainerdError(f"{' '.join(argv)}: no answer within {timeout:.0f} s\n{self.log_tail()}") from None
        if check and run.returncode != 0:
            raise ContainerdError(f"{' '.join(argv)} exited {run.returncode}: {run.stderr.decode(errors='replace')}"
                                  f"\n{self.log_tail()}")
        return run

    def log_tail(self, size: int = 4000) -> str:
        try:
            return "--- containerd log ---\n" + self.log.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def _make_netns(self) -> list[str]:
        """Create the test's network namespace (loopback up: CRI's streaming server listens on 127.0.0.1
        there) and write the CNI conflist; the argv prefix that runs a command inside it."""
        name = NETNS_PREFIX + secrets.token_hex(4)
        _run([IP, "netns", "add", name])
        self.netns = name
        _run([IP, "-n", name, "link", "set", "lo", "up"])
        (self.base / "cni" / "10-cocoon.conflist").write_text(cni_conflist(self.base, self.cni_network))
        return [NSENTER, f"--net=/run/netns/{name}", "--"]

    def start(self, path: Sequence[str] = (), env: dict[str, str] | None = None) -> Containerd:
        """Start containerd with ``path`` before the system PATH (where it finds shims) and wait until it
        answers ``ctr version`` (bounded: START_TIMEOUT)."""
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "cni").mkdir(exist_ok=True)
        self.fifo_dir.mkdir(exist_ok=True)
        config = self.base / "config.toml"
        config.write_text(config_toml(self.base, self.sandbox_image))
        prefix = self._make_netns() if self.network else []
        environ = {**os.environ, **(env or {})}
        environ["PATH"] = os.pathsep.join([*path, environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")])
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([*prefix, CONTAINERD, "--config", str(config)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, env=environ, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise ContainerdError(f"containerd exited with {self.proc.returncode}\n{self.log_tail()}")
            if os.path.exists(self.address) and self.ctr("version", timeout=10, check=False).returncode == 0:
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise ContainerdError(f"containerd did not answer within {START_TIMEOUT:.0f} s\n{self.log_tail()}")
            time.sleep(0.1)

    def import_image(self, image: BuiltImage, name: str, namespace: str = NAMESPACE) -> str:
        """``ctr images import`` of ``image`` as an OCI archive (a tar of its layout) into containerd
        ``namespace`` (CRI_NAMESPACE for images CRI is to see); returns the image name.

        containerd names an OCI archive's images ``<base-name>:<org.opencontainers.image.ref.name>``
        (ctr images import --base-name), so ``name`` is ``repo:tag`` with the tag build_image wrote. The
        import unpacks into the default snapshotter (overlayfs), the one CRI uses, so CreateContainer
        needs no pull."""
        repo, _, tag = name.rpartition(":")
        if tag != image.tag:
            raise ContainerdError(f"{name}: the archive's tag is {image.tag!r}")
        archive = self.base / f"{image.manifest_digest.split(':')[1][:16]}.tar"
        with tarfile.open(archive, "w") as tar:
            for entry in sorted(image.layout.iterdir()):
                tar.add(entry, arcname=entry.name)
        try:
            self.ctr("images", "import", "--base-name", repo, str(archive), namespace=namespace)
        finally:
            archive.unlink()
        return name

    def _remove_pods(self, budget: float = 60.0) -> None:
        """Stop and remove every pod sandbox CRI still has (what kubelet would do before the node goes):
        the sandboxes' netns, CNI allocations and shims go the orderly way first. Best effort, bounded."""
        from support.cri import Cri, CriError  # here: containerd.py stays importable without the CRI protos

        deadline = time.monotonic() + budget
        try:
            with Cri(self.cri_address, timeout=10) as cri:
                for pod in cri.list_pod_sandboxes():
                    for call in (cri.stop_pod_sandbox, cri.remove_pod_sandbox):
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return
                        with contextlib.suppress(CriError):
                            call(pod.id, timeout=min(left, 30.0))
        except CriError:
            return

    def stop(self) -> None:
        """Remove CRI's pods, SIGTERM (then SIGKILL) containerd, unmount whatever is still mounted below
        ``base``, delete the test's network namespace (and with it the bridge) and CNI cache entries."""
        if self.proc is not None and self.proc.poll() is None:
            self._remove_pods()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        # shims outlive containerd by design (runtime v2: a restarted containerd reconnects to them), and so
        # do their VMs: whatever still names this test's directory on its command line goes too
        for pid in processes_naming(self.base):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for target in reversed(mounts_below(self.base)):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)
        if self.netns is not None:
            subprocess.run([IP, "netns", "delete", self.netns], capture_output=True, check=False, timeout=30)
            for cached in CNI_CACHE.glob(f"{self.cni_network}-*"):
                cached.unlink(missing_ok=True)
            self.netns = None


def shim_bin(where: Path) -> Path:
    """A directory with ``containerd-shim-cocoon-v2`` as the console script would be, running this checkout's
    shim with this interpreter; put it first on containerd's ``path``."""
    where.mkdir(parents=True, exist_ok=True)
    script = where / "containerd-shim-cocoon-v2"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} -m shim.main \"$@\"\n")
    script.chmod(0o755)
    return where


def _run(argv: Sequence[str], timeout: float = 30) -> None:
    run = subprocess.run(list(argv), capture_output=True, timeout=timeout, check=False)
    if run.returncode != 0:
        raise ContainerdError(f"{' '.join(argv)} exited {run.returncode}: {run.stderr.decode(errors='replace')}")


def netns_names() -> set[str]:
    """The named network namespaces (``ip netns`` keeps them as files in /run/netns)."""
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def processes_naming(base: Path) -> list[int]:
    """Processes (not this one) whose command line mentions ``base``."""
    marker = str(base).encode()
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmd:
                out.append(int(entry))
    return out


def mounts_below(base: Path) -> list[str]:
    """Mount points at or below ``base`` (from /proc/self/mounts, octal escapes decoded)."""
    prefix = str(base.resolve())
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            target = line.split()[1].encode().decode("unicode_escape")
            if target == prefix or target.startswith(prefix + "/"):
                out.append(target)
    return out


@contextlib.contextmanager
def running(base: Path, path: Sequence[str] = (), env: dict[str, str] | None = None, *, network: bool = False,
            sandbox_image: str = PAUSE_IMAGE) -> Iterator[Containerd]:
    """A started containerd that is stopped (and its directory removed) however the block ends;
    ``network=True``: in a network namespace of its own with the CNI bridge network."""
    c = Containerd(base, network=network, sandbox_image=sandbox_image)
    try:
        yield c.start(path, env)
    finally:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)
