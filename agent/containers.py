"""The backend that acts once the policy allowed: containers through an OCI runtime (runc/crun).

Each RPC method has the service's shape ``(request, context) -> response``
and raises AgentError subclasses for refusals (the service turns them into
FAILED_PRECONDITION with the message). Container processes are children of
the agent (subreaper) and are waited for through the Reaper; their stdio are
pipes drained into bounded buffers (agent/stdio.py): a slow reader makes the
container block on write (back-pressure) instead of losing output.

Nothing is kept for a process longer than its owner needs it (issue 19): its stdin
and terminal fds go when it exits (or at CloseStdin), its output fds at EOF, and its
record once WaitProcess returned the status *and* both outputs were read to EOF, in
either order (Kata's shim reads to EOF and then waits; Kata's agent drops the process
in ``do_wait_process``, src/agent/src/rpc.rs). A waited process whose output nobody
reads is dropped LINGER_SECONDS after its wait (or beyond LINGER_MAX of them). RemoveContainer,
DestroySandbox and shutdown release everything a container or the sandbox holds.
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
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from google.protobuf import empty_pb2

import agent
from agent.errors import AgentError
from agent.guest_components import CONTAINER_SOURCES
from agent.ocispec import _process, network_sysctls, to_config
from agent.protocols import agent_pb2
from agent.reaper import ProcessError, Reaper
from agent.stdio import EndOfStream, IoLoop, OutputStream
from agent.storage import ANNOUNCED, Mounted, Storage, StorageError, bind_source
from agent.sysctl import apply_network

if TYPE_CHECKING:
    from agent.network import Network
    from agent.protocols import types_pb2

CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: The pause rootfs in the measured root image (image/pause.py); --pause-rootfs for host tests.
PAUSE_ROOTFS = "/usr/share/cocoon/pause"
PAUSE_ARGS = ["/pause"]
#: How a CRI runtime marks the sandbox (pause) container; the keys Kata's agent reads
#: (src/agent/src/confidential_data_hub/image.rs K8S_CONTAINER_TYPE_KEYS, is_sandbox).
CONTAINER_TYPE_KEYS = ("io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType")
# A waited process whose output is not read to EOF is kept (for a client that waits first and reads
# after) until LINGER_SECONDS after its wait, or while fewer than LINGER_MAX such processes are kept.
LINGER_SECONDS = 30.0
LINGER_MAX = 256
__all__ = ["Backend", "ContainerError", "EndOfStream"]


class ContainerError(AgentError):
    """A container operation that cannot be done (unknown id, runtime failure, bad request)."""


@dataclass(eq=False)
class Proc:
    """One process of a container and what the agent holds for it."""

    exec_id: str
    pid: int
    stdin: int | None
    stdout: OutputStream
    stderr: OutputStream
    tty: int | None = None  # the pty master, for TtyWinResize
    status: int | None = None
    waited: bool = False  # WaitProcess returned the status
    cond: threading.Condition = field(default_factory=threading.Condition)

    def exited(self, status: int) -> None:
        """The reaper's report (its thread: nothing here blocks). Stdin and the terminal are of no use now."""
        with self.cond:
            self.status = status
            self._close_inputs()
            self.cond.notify_all()
        self.stdout.process_exited()
        self.stderr.process_exited()

    def wait(self, timeout: float | None = None) -> int | None:
        with self.cond:
            self.cond.wait_for(lambda: self.status is not None, timeout)
            return self.status

    def _close_inputs(self) -> None:  # with self.cond held
        for fd in (self.stdin, self.tty):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.stdin = self.tty = None

    def close_stdin(self) -> None:
        with self.cond:
            if self.stdin is not None:
                with contextlib.suppress(OSError):
                    os.close(self.stdin)
                self.stdin = None

    def drained(self) -> bool:
        return self.stdout.delivered and self.stderr.delivered

    def release(self) -> None:
        with self.cond:
            self._close_inputs()
        self.stdout.close()
        self.stderr.close()


@dataclass(eq=False)
class Container:
    cid: str
    bundle: str
    init: Proc
    mounted: Mounted
    procs: dict[str, Proc] = field(default_factory=dict)
    started: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    spawning: set[str] = field(default_factory=set)  # exec ids being started
    lingering: deque[tuple[float, Proc]] = field(default_factory=deque)  # (when waited, process), output unread
    serial: int = 0  # names this container's exec spec files
    removed: bool = False
    oom: tuple[int, threading.Thread] | None = None  # the `runtime events` follower: pidfd, thread


class Backend:
    """Containers, their storages (agent/storage.py) and, handed on, the network RPCs (agent/network.py)."""

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
        self.io = IoLoop()
        self.sandbox_mounted = Mounted()  # CreateSandbox's storages (shm), released by DestroySandbox
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
        return self._find(cid, exec_id)[1]

    def _find(self, cid: str, exec_id: str) -> tuple[Container, Proc]:
        c = self._container(cid)
        if not exec_id or exec_id == c.init.exec_id:
            return c, c.init
        with c.lock:
            p = c.procs.get(exec_id)
        if p is None:
            raise ContainerError(f"process {exec_id!r} does not exist in container {cid!r}")
        return c, p

    def _settle(self, c: Container, p: Proc) -> None:
        """Drop ``p``'s record once it was waited for and its output read to EOF (see the module doc)."""
        if not p.waited or p is c.init:  # the init process's record goes with its container
            return
        drop: list[Proc] = []
        with c.lock:
            if c.procs.get(p.exec_id) is not p:
                return
            now = time.monotonic()
            if p.drained():
                del c.procs[p.exec_id]
                c.lingering = deque(item for item in c.lingering if item[1] is not p)
                drop.append(p)
            elif all(q is not p for _, q in c.lingering):
                c.lingering.append((now, p))
            while c.lingering and (len(c.lingering) > LINGER_MAX or now - c.lingering[0][0] > LINGER_SECONDS):
                _, old = c.lingering.popleft()
                if c.procs.get(old.exec_id) is old:
                    del c.procs[old.exec_id]
                    drop.append(old)
        for q in drop:
            q.release()

    def _spawn_with_pipes(self, argv: list[str], exec_id: str, pid_file: str, terminal: bool = False) -> Proc:
        """Run ``runtime create|exec`` with pipes (or a console socket for terminal processes).

        Every fd opened here is closed on every failure path; a failure after the runtime
        succeeded also removes what it started (the created container, or the exec'd process).
        """
        opened: list[int] = []
        streams: list[OutputStream] = []
        console = None
        sock_path = pid_file + ".console"
        pid = None
        started = False
        try:
            if terminal:
                console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                console.bind(sock_path)
                console.listen(1)
                argv = _insert_after_command(argv, ["--console-socket", sock_path])
            for _ in range(3):
                opened += os.pipe2(os.O_CLOEXEC)
            in_r, in_w, out_r, out_w, err_r, err_w = opened
            helper = self.reaper.spawn(argv, in_r, out_w, err_w)
            for fd in (in_r, out_w, err_w):
                opened.remove(fd)
                os.close(fd)
            for fd in (out_r, err_r):
                opened.remove(fd)
                streams.append(self.io.stream(fd))
            stdout, stderr = streams
            status = self.reaper.wait(helper, 120)
            if status is None:  # hung: it must not stay behind
                with contextlib.suppress(ProcessLookupError):
                    os.kill(helper, signal.SIGKILL)
                self.reaper.wait(helper, 10)
            if status != 0:
                detail = _runtime_error(pid_file) or stderr.read(4096, 2).decode(errors="replace").strip()
                raise ContainerError(f"{os.path.basename(argv[0])} {argv[3] if len(argv) > 3 else ''} failed "
                                     f"(status {status}): {detail or 'no message'}")
            started = True
            try:
                with open(pid_file, encoding="ascii") as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError) as exc:
                raise ContainerError(f"runtime left no usable pid file: {exc}") from None
            if console is None:
                proc = Proc(exec_id, pid, in_w, stdout, stderr)
                opened.remove(in_w)
            else:
                opened.remove(in_w)
                os.close(in_w)
                master = self._receive_terminal(console)
                opened.append(master)
                stdin, tty = os.dup(master), os.dup(master)
                opened += [stdin, tty]
                empty_r, empty_w = os.pipe2(os.O_CLOEXEC)
                os.close(empty_w)  # stderr of a terminal process is the terminal: an empty stream here
                opened.append(empty_r)
                for s in streams:  # the runtime's own pipes: the process writes to the terminal
                    s.close()
                streams = [self.io.stream(master), self.io.stream(empty_r)]
                opened = [fd for fd in opened if fd not in (master, empty_r)]
                proc = Proc(exec_id, pid, stdin, streams[0], streams[1], tty=tty)
                opened = [fd for fd in opened if fd not in (stdin, tty)]
            streams = []
            self.reaper.watch(pid, proc.exited)
            return proc
        except BaseException:
            for fd in opened:
                with contextlib.suppress(OSError):
                    os.close(fd)
            for s in streams:
                s.close()
            if started:
                self._undo_start(argv, pid)
            raise
        finally:
            if console is not None:
                console.close()
                with contextlib.suppress(OSError):
                    os.unlink(sock_path)

    def _receive_terminal(self, console: socket.socket) -> int:
        """The pty master the runtime sends over the console socket (any other fd it sends is closed)."""
        try:
            console.settimeout(10)
            conn, _ = console.accept()
            with conn:
                _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 4)
        except OSError as exc:
            raise ContainerError(f"runtime sent no terminal: {exc}") from None
        for extra in fds[1:]:
            os.close(extra)
        if not fds:
            raise ContainerError("runtime sent no terminal file descriptor")
        os.set_inheritable(fds[0], False)
        return fds[0]

    def _undo_start(self, argv: list[str], pid: int | None) -> None:
        """The runtime started something the agent will not keep: a created container, an exec'd process."""
        if "create" in argv:
            self.reaper.run(self._rt("delete", "--force", argv[-1]))  # the container id is the last word
        elif pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # --- sandbox -----------------------------------------------------------------------------
    def CreateSandbox(self, req: agent_pb2.CreateSandboxRequest, ctx: Any) -> empty_pb2.Empty:
        self.hostname = req.hostname
        self.sandbox_pidns = req.sandbox_pidns
        self._drop_pidns()
        undo = self.sandbox_mounted  # kept: DestroySandbox and shutdown unmount it
        self.storage.add_sandbox_storages(req.storages, undo)
        return empty_pb2.Empty()

    def DestroySandbox(self, req: Any, ctx: Any) -> empty_pb2.Empty:
        self.shutdown()
        return empty_pb2.Empty()

    def shutdown(self, timeout: int = 5) -> None:
        """Stop and remove every container: no process, mount or loop device outlives the agent."""
        for cid in list(self.containers):
            with contextlib.suppress(AgentError):
                self.RemoveContainer(agent_pb2.RemoveContainerRequest(container_id=cid, timeout=timeout), None)
        self.storage.release(self.sandbox_mounted)
        self._drop_pidns()
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
            layers = self.storage.add_container_storages(req.storages, cid, mounted)
            rootfs, readonly = self._rootfs(req, cid, bundle, layers, mounted)
            for m in req.OCI.Mounts:
                if m.type == "bind" or "bind" in m.options or "rbind" in m.options:
                    # host paths outside the shared dirs, and any guest path but the guest sockets': refused
                    bind_source(m.source, m.options, self.storage.prefixes, CONTAINER_SOURCES)
            pid_ns = self._pid_namespace(req)
            network = network_sysctls(req.OCI)
            config = to_config(req.OCI, rootfs, f"/cocoon/{cid}", readonly=readonly, pid_ns=pid_ns)
            env = config.get("process", {}).get("env") or []
            if any(e.partition("=")[2].startswith("sealed.") for e in env):
                from agent import sealed

                config["process"]["env"] = sealed.unseal_env(env)  # after the policy saw the sealed values
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
        self._watch_oom(c)
        return empty_pb2.Empty()

    def ExecProcess(self, req: agent_pb2.ExecProcessRequest, ctx: Any) -> empty_pb2.Empty:
        c = self._container(req.container_id)
        with c.lock:
            if (not req.exec_id or req.exec_id in c.procs or req.exec_id in c.spawning
                    or req.exec_id == c.init.exec_id):
                raise ContainerError(f"exec id {req.exec_id!r} is empty or in use")
            c.spawning.add(req.exec_id)
            serial, c.serial = c.serial, c.serial + 1
        spec_path = os.path.join(c.bundle, f"exec-{serial}.json")
        pid_file = spec_path[:-5] + ".pid"
        try:
            with open(spec_path, "w", encoding="utf-8") as f:
                json.dump(_process(req.process), f)
            proc = self._spawn_with_pipes(
                self._rt("exec", "--detach", "--pid-file", pid_file, "--process", spec_path, c.cid),
                req.exec_id, pid_file, terminal=req.process.Terminal)
        finally:
            for path in (spec_path, pid_file):  # read by the runtime and by the spawn: not needed any more
                with contextlib.suppress(OSError):
                    os.unlink(path)
            with c.lock:
                c.spawning.discard(req.exec_id)
        with c.lock:
            removed = c.removed
            if not removed:
                c.procs[req.exec_id] = proc
        if removed:  # RemoveContainer ran meanwhile: the runtime's delete killed the process
            proc.release()
            raise ContainerError(f"container {c.cid!r} was removed")
        return empty_pb2.Empty()

    def WaitProcess(self, req: agent_pb2.WaitProcessRequest, ctx: Any) -> agent_pb2.WaitProcessResponse:
        c, p = self._find(req.container_id, req.exec_id)
        status = p.wait()
        p.waited = True
        self._settle(c, p)
        return agent_pb2.WaitProcessResponse(status=status if status is not None else 255)

    def SignalProcess(self, req: agent_pb2.SignalProcessRequest, ctx: Any) -> empty_pb2.Empty:
        if not 0 < req.signal < 65:
            raise ContainerError(f"signal {req.signal} is not valid")
        p = self._proc(req.container_id, req.exec_id)
        with p.cond:  # the reaper reports the exit under this lock: a reported pid is never signalled
            if p.status is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, req.signal)
        return empty_pb2.Empty()

    def RemoveContainer(self, req: agent_pb2.RemoveContainerRequest, ctx: Any) -> empty_pb2.Empty:
        c = self._container(req.container_id)
        timeout = req.timeout or None
        with c.lock:
            c.removed = True
            procs = [c.init, *c.procs.values()]
        for p in procs:
            with p.cond:
                if p.status is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p.pid, signal.SIGTERM if timeout else signal.SIGKILL)
        deadline = None if timeout is None else time.monotonic() + timeout
        for p in procs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if p.wait(left) is None:  # did not go in time: kill it
                with p.cond:
                    if p.status is None:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(p.pid, signal.SIGKILL)
                p.wait(30)
        self._stop_oom(c)
        self.reaper.run(self._rt("delete", "--force", c.cid))
        self.storage.release(c.mounted)
        with c.lock:
            procs = [c.init, *c.procs.values()]
            c.procs.clear()
            c.lingering.clear()
        for p in procs:
            p.release()
        shutil.rmtree(c.bundle, ignore_errors=True)
        with self.lock:
            self.containers.pop(c.cid, None)
        return empty_pb2.Empty()

    # --- stdio -------------------------------------------------------------------------------
    def _read(self, req: agent_pb2.ReadStreamRequest, stderr: bool) -> agent_pb2.ReadStreamResponse:
        c, p = self._find(req.container_id, req.exec_id)
        try:
            data = (p.stderr if stderr else p.stdout).read(req.len)
        except EndOfStream:
            self._settle(c, p)
            raise
        return agent_pb2.ReadStreamResponse(data=data)

    def ReadStdout(self, req: agent_pb2.ReadStreamRequest, ctx: Any) -> agent_pb2.ReadStreamResponse:
        return self._read(req, stderr=False)

    def ReadStderr(self, req: agent_pb2.ReadStreamRequest, ctx: Any) -> agent_pb2.ReadStreamResponse:
        return self._read(req, stderr=True)

    def WriteStdin(self, req: agent_pb2.WriteStreamRequest, ctx: Any) -> agent_pb2.WriteStreamResponse:
        p = self._proc(req.container_id, req.exec_id)
        if not req.data:  # EOF of stdin, as Kata's do_write_stream reads it (runtime-rs sends no CloseStdin)
            p.close_stdin()
            return agent_pb2.WriteStreamResponse(len=0)
        with p.cond:  # a copy: the process's exit (or CloseStdin) may close the original meanwhile
            fd = None if p.stdin is None else os.dup(p.stdin)
        if fd is None:
            raise ContainerError("stdin is closed")
        view = memoryview(req.data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            raise ContainerError(f"writing stdin: {exc.strerror}") from None
        finally:
            os.close(fd)
        return agent_pb2.WriteStreamResponse(len=len(req.data))

    def CloseStdin(self, req: agent_pb2.CloseStdinRequest, ctx: Any) -> empty_pb2.Empty:
        self._proc(req.container_id, req.exec_id).close_stdin()
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
        with p.cond:  # the exit closes the terminal under this lock
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

    def _watch_oom(self, c: Container) -> None:
        """Follow `runtime events` for one container; OOM events go to the GetOOMEvent queue.

        The follower (its process, pipe and thread) is the container's: RemoveContainer ends it.
        """
        if c.oom is not None:
            return
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        try:
            pid = self.reaper.spawn(self._rt("events", c.cid), None, out_w, None)
        except ProcessError:
            os.close(out_r)
            return
        finally:
            os.close(out_w)
        try:
            pidfd = os.pidfd_open(pid)  # signals this process even if its pid is reused once it is gone
        except ProcessLookupError:
            # Already exited and reaped: a container that ends at once ends its `events` follower at once
            # too (seen under load). No OOM can follow; claim the status so the reaper forgets the pid.
            self.reaper.wait(pid, timeout=5)
            os.close(out_r)
            return
        except OSError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self.reaper.wait(pid, timeout=5)
            os.close(out_r)
            return

        def follow() -> None:
            try:
                with os.fdopen(out_r, "rb") as f:
                    for line in f:
                        with contextlib.suppress(ValueError, AttributeError):
                            if json.loads(line).get("type") == "oom":
                                self.oom_events.put(c.cid)
            finally:
                self.reaper.wait(pid)

        t = threading.Thread(target=follow, daemon=True, name=f"oom-{c.cid}")
        c.oom = (pidfd, t)
        t.start()

    def _stop_oom(self, c: Container) -> None:
        if c.oom is None:
            return
        pidfd, t = c.oom
        c.oom = None
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        t.join(30)
        os.close(pidfd)

    # --- network: agent/network.py, imported when the first network RPC arrives ---------------
    def _network(self) -> Network:
        from agent.network import Network

        return Network()

    def UpdateInterface(self, req: agent_pb2.UpdateInterfaceRequest, ctx: Any) -> types_pb2.Interface:
        return self._network().UpdateInterface(req, ctx)

    def UpdateRoutes(self, req: agent_pb2.UpdateRoutesRequest, ctx: Any) -> agent_pb2.Routes:
        return self._network().UpdateRoutes(req, ctx)

    def ListInterfaces(self, req: agent_pb2.ListInterfacesRequest, ctx: Any) -> agent_pb2.Interfaces:
        return self._network().ListInterfaces(req, ctx)

    def ListRoutes(self, req: agent_pb2.ListRoutesRequest, ctx: Any) -> agent_pb2.Routes:
        return self._network().ListRoutes(req, ctx)

    def AddARPNeighbors(self, req: agent_pb2.AddARPNeighborsRequest, ctx: Any) -> Any:
        return self._network().AddARPNeighbors(req, ctx)

    # --- guest -------------------------------------------------------------------------------
    def GetGuestDetails(self, req: agent_pb2.GuestDetailsRequest, ctx: Any) -> agent_pb2.GuestDetailsResponse:
        size = 0
        if req.mem_block_size:
            with contextlib.suppress(OSError, ValueError), open("/sys/devices/system/memory/block_size_bytes") as f:
                size = int(f.read().strip(), 16)
        return agent_pb2.GuestDetailsResponse(
            mem_block_size_bytes=size,
            support_mem_hotplug_probe=os.path.exists("/sys/devices/system/memory/probe"),
            agent_details=agent_pb2.AgentDetails(version=agent.__version__, init_daemon=os.getpid() == 1,
                                                 storage_handlers=ANNOUNCED),
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
