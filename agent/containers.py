"""The backend that acts once the policy allowed: containers through an OCI runtime (runc/crun).

Each RPC method has the service's shape ``(request, context) -> response``
and raises AgentError subclasses for refusals (the service turns them into
FAILED_PRECONDITION with the message). Container processes are children of
the agent (subreaper) and are waited for through the Reaper; their stdio are
pipes drained into bounded buffers: a slow reader makes the container block
on write (back-pressure) instead of losing output.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import re
import shutil
import signal
import socket
import struct
import termios
import threading
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import empty_pb2

from agent.errors import AgentError
from agent.ocispec import _process, network_sysctls, to_config
from agent.protocols import agent_pb2
from agent.reaper import ProcessError, Reaper
from agent.storage import Mounted, Storage, StorageError, confined, layer_spec, make_dir
from agent.sysctl import apply_network

CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: The pause rootfs in the measured root image (image/pause.py); --pause-rootfs for host tests.
PAUSE_ROOTFS = "/usr/share/cocoon/pause"
PAUSE_ARGS = ["/pause"]
#: How a CRI runtime marks the sandbox (pause) container; the keys Kata's agent reads
#: (src/agent/src/confidential_data_hub/image.rs K8S_CONTAINER_TYPE_KEYS, is_sandbox).
CONTAINER_TYPE_KEYS = ("io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType")
BUFFER_LIMIT = 1 << 20
VERSION = "0.1.0"


class ContainerError(AgentError):
    """A container operation that cannot be done (unknown id, runtime failure, bad request)."""


class EndOfStream(ContainerError):
    """The process closed this stream and everything buffered was read."""


class OutputPump:
    """Drains one pipe into a bounded buffer; stops reading while the buffer is full."""

    def __init__(self, fd: int, limit: int = BUFFER_LIMIT) -> None:
        self.fd = fd
        self.limit = limit
        self.buf = bytearray()
        self.eof = False
        self.cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True, name=f"pump-{fd}").start()

    def _pump(self) -> None:
        try:
            while True:
                with self.cond:
                    while len(self.buf) >= self.limit:
                        self.cond.wait()
                data = os.read(self.fd, 65536)
                with self.cond:
                    if not data:
                        break
                    self.buf += data
                    self.cond.notify_all()
        except OSError:
            pass
        finally:
            with self.cond:
                self.eof = True
                self.cond.notify_all()
            with contextlib.suppress(OSError):
                os.close(self.fd)

    def read(self, n: int, timeout: float | None = None) -> bytes:
        n = n or 65536
        with self.cond:
            if not self.cond.wait_for(lambda: self.buf or self.eof, timeout):
                return b""
            if not self.buf:
                raise EndOfStream("EOF")
            out = bytes(self.buf[:n])
            del self.buf[:n]
            self.cond.notify_all()
            return out


@dataclass
class Proc:
    exec_id: str
    pid: int
    stdin: int | None
    stdout: OutputPump
    stderr: OutputPump
    status: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    tty: int | None = None  # the pty master, for TtyWinResize


@dataclass
class Container:
    cid: str
    bundle: str
    init: Proc
    mounted: Mounted
    procs: dict[str, Proc] = field(default_factory=dict)
    started: bool = False


class Backend:
    """Containers, and (by delegation) the network RPCs."""

    def __getattr__(self, rpc: str) -> Any:
        if rpc in ("UpdateInterface", "UpdateRoutes", "ListInterfaces", "ListRoutes", "AddARPNeighbors"):
            from agent.network import Network

            return getattr(Network(), rpc)
        raise AttributeError(rpc)

    def __init__(self, runtime: str = "runc", state_dir: str = "/run/cocoon",
                 shared_dir: str = "/run/kata-containers/shared/containers",
                 sandbox_dir: str = "/run/kata-containers/sandbox", reaper: Reaper | None = None,
                 pause_rootfs: str = PAUSE_ROOTFS) -> None:
        self.runtime = runtime
        self.pause_rootfs = pause_rootfs
        self.sandbox_pidns = False  # CreateSandboxRequest.sandbox_pidns: every container joins the pod's
        self.pidns: tuple[str, int] | None = None  # (holder container id, fd of its PID namespace)
        self.state_dir = state_dir
        self.shared_dir = shared_dir
        self.sandbox_dir = sandbox_dir
        self.reaper = reaper or Reaper()
        self.storage = Storage(self.reaper, state_dir, (shared_dir, sandbox_dir))
        self.containers: dict[str, Container] = {}
        self.lock = threading.Lock()
        self.hostname = ""
        self.oom_events: queue.Queue[str] = queue.Queue()
        os.makedirs(os.path.join(state_dir, "containers"), exist_ok=True)

    # --- helpers -----------------------------------------------------------------------------
    def _rt(self, *args: str, log: str | None = None) -> list[str]:
        argv = [self.runtime, "--root", os.path.join(self.state_dir, "runtime")]
        if log:
            argv += ["--log", log, "--log-format", "json"]
        return [*argv, *args]

    def _container(self, cid: str) -> Container:
        with self.lock:
            c = self.containers.get(cid)
        if c is None:
            raise ContainerError(f"container {cid!r} does not exist")
        return c

    def _proc(self, cid: str, exec_id: str) -> Proc:
        c = self._container(cid)
        if not exec_id or exec_id == c.init.exec_id:
            return c.init
        p = c.procs.get(exec_id)
        if p is None:
            raise ContainerError(f"process {exec_id!r} does not exist in container {cid!r}")
        return p

    def _spawn_with_pipes(self, argv: list[str], exec_id: str, pid_file: str, terminal: bool = False) -> Proc:
        """Run ``runtime create|exec`` with pipes (or a console socket for terminal processes)."""
        console = None
        if terminal:
            sock_path = pid_file + ".console"
            console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            console.bind(sock_path)
            console.listen(1)
            argv = _insert_after_command(argv, ["--console-socket", sock_path])
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            helper = self.reaper.spawn(argv, in_r, out_w, err_w)
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        stdout, stderr = OutputPump(out_r), OutputPump(err_r)
        status = self.reaper.wait(helper, 120)
        if status != 0:
            os.close(in_w)
            if console is not None:
                console.close()
            detail = _runtime_error(pid_file) or stderr.read(4096, 2).decode(errors="replace").strip()
            raise ContainerError(f"{os.path.basename(argv[0])} {argv[3] if len(argv) > 3 else ''} failed "
                                 f"(status {status}): {detail or 'no message'}")
        try:
            with open(pid_file, encoding="ascii") as f:
                pid = int(f.read().strip())
        except (OSError, ValueError) as exc:
            os.close(in_w)
            raise ContainerError(f"runtime left no usable pid file: {exc}") from None
        if console is None:
            return Proc(exec_id, pid, in_w, stdout, stderr)
        os.close(in_w)
        try:
            console.settimeout(10)
            conn, _ = console.accept()
            with conn:
                _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
        except OSError as exc:
            raise ContainerError(f"runtime sent no terminal: {exc}") from None
        finally:
            console.close()
        if not fds:
            raise ContainerError("runtime sent no terminal file descriptor")
        master = fds[0]
        os.set_inheritable(master, False)
        closed = os.pipe2(os.O_CLOEXEC)
        os.close(closed[1])  # stderr of a terminal process is the terminal: an empty stream here
        return Proc(exec_id, pid, os.dup(master), OutputPump(master), OutputPump(closed[0]), tty=os.dup(master))

    # --- sandbox -----------------------------------------------------------------------------
    def CreateSandbox(self, req: agent_pb2.CreateSandboxRequest, ctx: Any) -> empty_pb2.Empty:
        self.hostname = req.hostname
        self.sandbox_pidns = req.sandbox_pidns
        self._drop_pidns()
        undo = Mounted()
        for s in req.storages:
            if s.driver == "ephemeral":
                self.storage.tmpfs(s.mount_point, undo, ",".join(o for o in s.options if "=" in o) or "mode=1777")
        return empty_pb2.Empty()

    def DestroySandbox(self, req: Any, ctx: Any) -> empty_pb2.Empty:
        self.shutdown()
        return empty_pb2.Empty()

    def shutdown(self, timeout: int = 5) -> None:
        """Stop and remove every container: no process, mount or loop device outlives the agent."""
        for cid in list(self.containers):
            with contextlib.suppress(AgentError):
                self.RemoveContainer(agent_pb2.RemoveContainerRequest(container_id=cid, timeout=timeout), None)
        self.storage.close()

    # --- containers --------------------------------------------------------------------------
    def CreateContainer(self, req: agent_pb2.CreateContainerRequest, ctx: Any) -> empty_pb2.Empty:
        cid = req.container_id
        if not CONTAINER_ID.match(cid):
            raise ContainerError(f"container id {cid!r} is not valid")
        with self.lock:
            if cid in self.containers:
                raise ContainerError(f"container {cid!r} already exists")
        bundle = os.path.join(self.state_dir, "containers", cid)
        mounted = Mounted()
        try:
            os.makedirs(bundle, exist_ok=False)
            layers: list[str] = []
            for i, s in enumerate(req.storages):
                if s.driver in ("blk", "virtio-blk"):
                    spec = layer_spec(list(s.driver_options), s.source, s.mount_point)
                    if spec is None:
                        raise StorageError(f"block storage {s.source} has no pinned verity root hash")
                    self.storage.open_layer(spec, f"{cid}-{i}", mounted)
                    layers.append(confined(s.mount_point, self.storage.prefixes))
                elif s.driver == "ephemeral":
                    self.storage.tmpfs(s.mount_point, mounted)
                elif s.driver == "local":
                    make_dir(s.mount_point, self.storage.prefixes)  # no symlink on the way is followed
                else:
                    raise StorageError(f"storage driver {s.driver!r} is not supported")
            rootfs, readonly = self._rootfs(req, cid, bundle, layers, mounted)
            for m in req.OCI.Mounts:
                if m.type == "bind" or "bind" in m.options or "rbind" in m.options:
                    confined(m.source, self.storage.prefixes)  # host paths outside the shared dirs: refused
            pid_ns = self._pid_namespace(req)
            network = network_sysctls(req.OCI)
            config = to_config(req.OCI, rootfs, f"/cocoon/{cid}", readonly=readonly, pid_ns=pid_ns)
            apply_network(network)  # the pod's network namespace is the agent's (ocispec drops "network")
            with open(os.path.join(bundle, "config.json"), "w", encoding="utf-8") as f:
                json.dump(config, f)
            pid_file = os.path.join(bundle, "init.pid")
            init = self._spawn_with_pipes(
                self._rt("create", "--bundle", bundle, "--pid-file", pid_file, cid,
                         log=os.path.join(bundle, "runtime.log")),
                req.exec_id or cid, pid_file, terminal=req.OCI.Process.Terminal)
        except AgentError:
            self.storage.release(mounted)
            shutil.rmtree(bundle, ignore_errors=True)
            raise
        with self.lock:
            self.containers[cid] = Container(cid, bundle, init, mounted)
        if self.pidns is None and not pid_ns:
            self._hold_pidns(cid, init.pid)
        return empty_pb2.Empty()

    def _rootfs(self, req: agent_pb2.CreateContainerRequest, cid: str, bundle: str, layers: list[str],
                mounted: Mounted) -> tuple[str, bool | None]:
        """Where the container's root comes from: its pinned verity layers, or the image's pause rootfs.

        Never from the host: ``Root.Path`` is not read, not mounted on and not run (a host could have
        filled it through CopyFile); the root is mounted in the agent's own bundle directory. A
        container with no layer is refused unless it is the pod's sandbox container, which runs the
        pause tree shipped in the measured root image, read-only, and only its ``/pause``.
        Returns (rootfs path, readonly override or None for the spec's).
        """
        rootfs = os.path.join(bundle, "rootfs")
        scratch = os.path.join(bundle, "scratch")
        if layers:
            self.storage.overlay(layers, rootfs, scratch, mounted)
            return rootfs, None
        if not is_sandbox(req.OCI):
            raise StorageError(f"container {cid} has no pinned verity layer: a container's root filesystem comes "
                               "from its pinned layers (or, for the sandbox container, the image's pause rootfs), "
                               f"never from the host's Root.Path {req.OCI.Root.Path!r}")
        if list(req.OCI.Process.Args) != PAUSE_ARGS:
            raise StorageError(f"sandbox container {cid} has no layer, so it runs the image's pause rootfs, whose "
                               f"only program is {PAUSE_ARGS[0]}: args {list(req.OCI.Process.Args)} refused")
        pause = os.path.join(self.pause_rootfs, "pause")
        if not os.path.isfile(pause) or not os.access(pause, os.X_OK):
            raise StorageError(f"this image has no pause rootfs ({pause} is not an executable file)")
        self.storage.overlay([self.pause_rootfs], rootfs, scratch, mounted)  # mount points go to the tmpfs upper
        return rootfs, True

    def _pid_namespace(self, req: agent_pb2.CreateContainerRequest) -> str:
        """The path of the PID namespace the container joins, or "" for a fresh one; never the agent's.

        Kata's rules (rpc.rs ``update_container_namespaces``, sandbox.rs ``update_shared_pidns``): the
        spec's own pid entry is ignored; with ``sandbox_pidns`` (in this request or in CreateSandbox)
        the container joins the namespace of the pod's first container, the sandbox; if there is
        none yet this one gets a fresh namespace and becomes it; if that container is gone the
        request is refused (Kata: "Sandbox does not have sandbox_pidns"). The namespace is held by
        an open descriptor, so a reused pid can never redirect a container elsewhere.
        """
        if not (req.sandbox_pidns or self.sandbox_pidns):
            return ""
        with self.lock:
            holder = self.pidns
            alive = holder is not None and holder[0] in self.containers
            empty = not self.containers
        if holder is None:
            if empty:
                return ""
            raise ContainerError("sandbox_pidns: the pod has no shared PID namespace (it was not the first "
                                 "container's to share)")
        if not alive:
            raise ContainerError(f"sandbox_pidns: the pod's PID namespace went with its sandbox container "
                                 f"{holder[0]!r}")
        if _same_file(holder[1], "/proc/self/ns/pid"):
            raise ContainerError("internal: the pod's PID namespace is the agent's; refused")
        return f"/proc/{os.getpid()}/fd/{holder[1]}"

    def _hold_pidns(self, cid: str, pid: int) -> None:
        """Keep the first container's (fresh) PID namespace open: the pod's, for sandbox_pidns."""
        try:
            fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return  # it exited already: nothing to share, later sandbox_pidns requests are refused
        if _same_file(fd, "/proc/self/ns/pid"):
            os.close(fd)
            return
        with self.lock:
            if self.pidns is None:
                self.pidns = (cid, fd)
                return
        os.close(fd)

    def _drop_pidns(self) -> None:
        with self.lock:
            held, self.pidns = self.pidns, None
        if held is not None:
            with contextlib.suppress(OSError):
                os.close(held[1])

    def StartContainer(self, req: agent_pb2.StartContainerRequest, ctx: Any) -> empty_pb2.Empty:
        c = self._container(req.container_id)
        try:
            self.reaper.check(self._rt("start", c.cid))
        except ProcessError as exc:
            raise ContainerError(str(exc)) from None
        c.started = True
        self._watch_oom(c.cid)
        return empty_pb2.Empty()

    def ExecProcess(self, req: agent_pb2.ExecProcessRequest, ctx: Any) -> empty_pb2.Empty:
        c = self._container(req.container_id)
        if not req.exec_id or req.exec_id in c.procs or req.exec_id == c.init.exec_id:
            raise ContainerError(f"exec id {req.exec_id!r} is empty or in use")
        spec_path = os.path.join(c.bundle, f"exec-{len(c.procs)}.json")
        with open(spec_path, "w", encoding="utf-8") as f:
            json.dump(_process(req.process), f)
        pid_file = spec_path[:-5] + ".pid"
        proc = self._spawn_with_pipes(
            self._rt("exec", "--detach", "--pid-file", pid_file, "--process", spec_path, c.cid),
            req.exec_id, pid_file, terminal=req.process.Terminal)
        c.procs[req.exec_id] = proc
        return empty_pb2.Empty()

    def WaitProcess(self, req: agent_pb2.WaitProcessRequest, ctx: Any) -> agent_pb2.WaitProcessResponse:
        p = self._proc(req.container_id, req.exec_id)
        with p.lock:
            if p.status is None:
                p.status = self.reaper.wait(p.pid)
        return agent_pb2.WaitProcessResponse(status=p.status if p.status is not None else 255)

    def SignalProcess(self, req: agent_pb2.SignalProcessRequest, ctx: Any) -> empty_pb2.Empty:
        c = self._container(req.container_id)
        if not 0 < req.signal < 65:
            raise ContainerError(f"signal {req.signal} is not valid")
        p = self._proc(req.container_id, req.exec_id)
        if p.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, req.signal)
        del c
        return empty_pb2.Empty()

    def RemoveContainer(self, req: agent_pb2.RemoveContainerRequest, ctx: Any) -> empty_pb2.Empty:
        c = self._container(req.container_id)
        timeout = req.timeout or None
        procs = [c.init, *c.procs.values()]
        for p in procs:
            if p.status is None and self.reaper.peek(p.pid) is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM if timeout else signal.SIGKILL)
        for p in procs:
            with p.lock:
                if p.status is None:
                    p.status = self.reaper.wait(p.pid, timeout)
                if p.status is None:  # did not go in time: kill it
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p.pid, signal.SIGKILL)
                    p.status = self.reaper.wait(p.pid, 30)
        self.reaper.run(self._rt("delete", "--force", c.cid))
        self.storage.release(c.mounted)
        for p in procs:
            for fd in (p.stdin, p.tty):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
        shutil.rmtree(c.bundle, ignore_errors=True)
        with self.lock:
            self.containers.pop(c.cid, None)
        return empty_pb2.Empty()

    # --- stdio -------------------------------------------------------------------------------
    def ReadStdout(self, req: agent_pb2.ReadStreamRequest, ctx: Any) -> agent_pb2.ReadStreamResponse:
        return agent_pb2.ReadStreamResponse(data=self._proc(req.container_id, req.exec_id).stdout.read(req.len))

    def ReadStderr(self, req: agent_pb2.ReadStreamRequest, ctx: Any) -> agent_pb2.ReadStreamResponse:
        return agent_pb2.ReadStreamResponse(data=self._proc(req.container_id, req.exec_id).stderr.read(req.len))

    def WriteStdin(self, req: agent_pb2.WriteStreamRequest, ctx: Any) -> agent_pb2.WriteStreamResponse:
        p = self._proc(req.container_id, req.exec_id)
        if p.stdin is None:
            raise ContainerError("stdin is closed")
        view = memoryview(req.data)
        try:
            while view:
                view = view[os.write(p.stdin, view) :]
        except OSError as exc:
            raise ContainerError(f"writing stdin: {exc.strerror}") from None
        return agent_pb2.WriteStreamResponse(len=len(req.data))

    def CloseStdin(self, req: agent_pb2.CloseStdinRequest, ctx: Any) -> empty_pb2.Empty:
        p = self._proc(req.container_id, req.exec_id)
        if p.stdin is not None:
            os.close(p.stdin)
            p.stdin = None
        return empty_pb2.Empty()

    # --- lifecycle extras ----------------------------------------------------------------------
    def PauseContainer(self, req: agent_pb2.PauseContainerRequest, ctx: Any) -> empty_pb2.Empty:
        return self._runtime_op("pause", req.container_id)

    def ResumeContainer(self, req: agent_pb2.ResumeContainerRequest, ctx: Any) -> empty_pb2.Empty:
        return self._runtime_op("resume", req.container_id)

    def _runtime_op(self, op: str, cid: str, *extra: str, stdin: bytes = b"") -> empty_pb2.Empty:
        c = self._container(cid)
        r = self.reaper.run(self._rt(op, *extra, c.cid), input=stdin)
        if r.status != 0:
            raise ContainerError(f"{op} {c.cid}: {r.stderr.decode(errors='replace').strip() or r.status}")
        return empty_pb2.Empty()

    def UpdateContainer(self, req: agent_pb2.UpdateContainerRequest, ctx: Any) -> empty_pb2.Empty:
        from agent.ocispec import _resources

        return self._runtime_op("update", req.container_id, "--resources", "-",
                                stdin=json.dumps(_resources(req.resources)).encode())

    def StatsContainer(self, req: agent_pb2.StatsContainerRequest, ctx: Any) -> agent_pb2.StatsContainerResponse:
        c = self._container(req.container_id)
        r = self.reaper.run(self._rt("events", "--stats", c.cid))
        if r.status != 0:
            raise ContainerError(f"stats {c.cid}: {r.stderr.decode(errors='replace').strip() or r.status}")
        try:
            data = json.loads(r.stdout).get("data", {})
        except ValueError:
            raise ContainerError(f"stats {c.cid}: runtime printed no JSON") from None
        cpu, mem, pids = data.get("cpu", {}), data.get("memory", {}), data.get("pids", {})
        usage = cpu.get("usage", {})
        stats = agent_pb2.CgroupStats(
            cpu_stats=agent_pb2.CpuStats(cpu_usage=agent_pb2.CpuUsage(
                total_usage=usage.get("total", 0), percpu_usage=usage.get("percpu", []) or [],
                usage_in_kernelmode=usage.get("kernel", 0), usage_in_usermode=usage.get("user", 0))),
            memory_stats=agent_pb2.MemoryStats(
                cache=mem.get("cache", 0),
                usage=agent_pb2.MemoryData(usage=mem.get("usage", {}).get("usage", 0),
                                           max_usage=mem.get("usage", {}).get("max", 0),
                                           failcnt=mem.get("usage", {}).get("failcnt", 0),
                                           limit=mem.get("usage", {}).get("limit", 0))),
            pids_stats=agent_pb2.PidsStats(current=pids.get("current", 0), limit=pids.get("limit", 0)),
        )
        return agent_pb2.StatsContainerResponse(cgroup_stats=stats)

    def TtyWinResize(self, req: agent_pb2.TtyWinResizeRequest, ctx: Any) -> empty_pb2.Empty:
        p = self._proc(req.container_id, req.exec_id)
        if p.tty is None:
            raise ContainerError(f"process {p.exec_id!r} has no terminal")
        try:
            fcntl.ioctl(p.tty, termios.TIOCSWINSZ, struct.pack("HHHH", req.row, req.column, 0, 0))
        except OSError as exc:
            raise ContainerError(f"resizing the terminal: {exc.strerror}") from None
        return empty_pb2.Empty()

    def CopyFile(self, req: agent_pb2.CopyFileRequest, ctx: Any) -> empty_pb2.Empty:
        from agent.files import copy_file

        copy_file(self.shared_dir, req)
        return empty_pb2.Empty()

    def GetOOMEvent(self, req: agent_pb2.GetOOMEventRequest, ctx: Any) -> agent_pb2.OOMEvent:
        """Long poll: blocks until a container's cgroup reports an OOM kill."""
        return agent_pb2.OOMEvent(container_id=self.oom_events.get())

    def _watch_oom(self, cid: str) -> None:
        """Follow `runtime events` for one container; OOM events go to the GetOOMEvent queue."""
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        try:
            pid = self.reaper.spawn(self._rt("events", cid), None, out_w, None)
        except ProcessError:
            os.close(out_r)
            return
        finally:
            os.close(out_w)

        def follow() -> None:
            with os.fdopen(out_r, "rb") as f:
                for line in f:
                    with contextlib.suppress(ValueError, AttributeError):
                        if json.loads(line).get("type") == "oom":
                            self.oom_events.put(cid)
            self.reaper.wait(pid, 5)

        threading.Thread(target=follow, daemon=True, name=f"oom-{cid}").start()

    # --- guest -------------------------------------------------------------------------------
    def GetGuestDetails(self, req: agent_pb2.GuestDetailsRequest, ctx: Any) -> agent_pb2.GuestDetailsResponse:
        size = 0
        if req.mem_block_size:
            with contextlib.suppress(OSError, ValueError), open("/sys/devices/system/memory/block_size_bytes") as f:
                size = int(f.read().strip(), 16)
        return agent_pb2.GuestDetailsResponse(
            mem_block_size_bytes=size,
            support_mem_hotplug_probe=os.path.exists("/sys/devices/system/memory/probe"),
            agent_details=agent_pb2.AgentDetails(version=VERSION, init_daemon=os.getpid() == 1,
                                                 storage_handlers=["blk", "ephemeral", "local"]),
        )


def is_sandbox(spec: Any) -> bool:
    """Is this the pod's sandbox (pause) container? The CRI annotation, as Kata's agent reads it."""
    return any(spec.Annotations.get(k) == "sandbox" for k in CONTAINER_TYPE_KEYS)


def _same_file(fd: int, path: str) -> bool:
    """Does descriptor ``fd`` name the same namespace (device and inode) as ``path``?"""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return True  # cannot tell: treat as the same, the caller refuses
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _runtime_error(pid_file: str) -> str:
    """The last error runc/crun logged next to the bundle (JSON log lines)."""
    log = os.path.join(os.path.dirname(pid_file), "runtime.log")
    with contextlib.suppress(OSError):
        with open(log, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
        for line in reversed(lines):
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("level") in ("error", "fatal"):
                    return str(entry.get("msg", ""))
    return ""


def _insert_after_command(argv: list[str], extra: list[str]) -> list[str]:
    """Put ``extra`` right after the runtime subcommand (create/exec), before its other arguments."""
    for i, word in enumerate(argv):
        if word in ("create", "exec"):
            return [*argv[: i + 1], *extra, *argv[i + 1 :]]
    raise ContainerError("internal: no create/exec in the runtime command line")
