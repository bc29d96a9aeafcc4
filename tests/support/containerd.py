"""A real containerd (Debian's 1.6) for the tests: its own root, state and sockets in a temp dir, nothing shared
with a system containerd, and nothing left behind when it stops.

The config (containerd's version 2 format, `containerd config default` names) enables the CRI plugin with a
runtime handler ``cocoon`` whose ``runtime_type`` is ``io.containerd.cocoon.v2``: containerd's runtime v2
turns that type into the binary name ``containerd-shim-cocoon-v2`` and looks it up on its own PATH
(runtime/v2/shim/util.go BinaryName), so a test puts the shim's bin dir first on ``path``. The only network
addresses are unix sockets and, for the CRI streaming server (exec/attach URLs), 127.0.0.1 with a port the
kernel picks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
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
START_TIMEOUT = 30.0


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


def config_toml(base: Path) -> str:
    """containerd's config for a test: every path below ``base``; plugins that would write elsewhere
    (opt's /opt/containerd) pointed below it too."""
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
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{HANDLER}]
      runtime_type = "{RUNTIME}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{base}/cni"
"""


@dataclass
class Containerd:
    """One running containerd; ``ctr`` runs its client against this instance's socket and namespace."""

    base: Path
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.base / "containerd.log"

    @property
    def address(self) -> str:
        return str(self.base / "containerd.sock")

    @property
    def fifo_dir(self) -> Path:
        """Where ``ctr run`` creates the task's stdio FIFOs (default /run/containerd/fifo: outside the test)."""
        return self.base / "fifo"

    def ctr(self, *args: str, timeout: float = 120, check: bool = True,
            input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        argv = [CTR, "--address", self.address, "--namespace", NAMESPACE, *args]
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

    def start(self, path: Sequence[str] = (), env: dict[str, str] | None = None) -> Containerd:
        """Start containerd with ``path`` before the system PATH (where it finds shims) and wait until it
        answers ``ctr version`` (bounded: START_TIMEOUT)."""
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "cni").mkdir(exist_ok=True)
        self.fifo_dir.mkdir(exist_ok=True)
        config = self.base / "config.toml"
        config.write_text(config_toml(self.base))
        environ = {**os.environ, **(env or {})}
        environ["PATH"] = os.pathsep.join([*path, environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")])
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([CONTAINERD, "--config", str(config)], stdin=subprocess.DEVNULL,
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

    def import_image(self, image: BuiltImage, name: str) -> str:
        """``ctr images import`` of ``image`` as an OCI archive (a tar of its layout); returns the image name.

        containerd names an OCI archive's images ``<base-name>:<org.opencontainers.image.ref.name>``
        (ctr images import --base-name), so ``name`` is ``repo:tag`` with the tag build_image wrote."""
        repo, _, tag = name.rpartition(":")
        if tag != image.tag:
            raise ContainerdError(f"{name}: the archive's tag is {image.tag!r}")
        archive = self.base / f"{image.manifest_digest.split(':')[1][:16]}.tar"
        with tarfile.open(archive, "w") as tar:
            for entry in sorted(image.layout.iterdir()):
                tar.add(entry, arcname=entry.name)
        self.ctr("images", "import", "--base-name", repo, str(archive))
        archive.unlink()
        return name

    def stop(self) -> None:
        """SIGTERM (then SIGKILL) containerd, unmount whatever is still mounted below ``base``."""
        if self.proc is not None and self.proc.poll() is None:
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
def running(base: Path, path: Sequence[str] = (), env: dict[str, str] | None = None) -> Iterator[Containerd]:
    """A started containerd that is stopped (and its directory removed) however the block ends."""
    c = Containerd(base)
    try:
        yield c.start(path, env)
    finally:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)
