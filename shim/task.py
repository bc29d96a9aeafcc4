"""containerd's ``containerd.task.v2.Task`` service, served over cocoon's ttRPC, backed by one VM per pod.

The sandbox's container (for ``ctr run``: the container itself; under CRI: the one whose
``io.kubernetes.cri.container-type`` is ``sandbox``) boots the VM; containers naming the same
``io.kubernetes.cri.sandbox-id`` join it, as with Kata. Every task operation is an agent request:
Create -> CreateSandbox + CreateContainer, Start -> StartContainer (an exec: ExecProcess), Kill ->
SignalProcess, Wait -> the exit WaitProcess reported, Delete -> RemoveContainer (the sandbox: the VM stops).
stdio goes through the FIFOs containerd names in the requests: the agent's ReadStdout/ReadStderr are written
to them until EOF, stdin is sent with WriteStream and closed with CloseStdin. A process's exit is recorded
only after its output reached the FIFOs: containerd's client waits for the copy to end after the exit
(client/task.go Delete: io.Wait), so no byte is lost. Errors are answered with the reason (the agent's
policy denial, the VM's deny-all reason), never swallowed.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import empty_pb2, timestamp_pb2
from google.protobuf.message import Message

from agent.rpc import Code, Context, Method, RpcError, Service
from shim import spec as specmod
from shim.protocols import events_pb2, task_pb2

log = logging.getLogger("cocoon.shim")

SERVICE = "containerd.task.v2.Task"
INITDATA_ANNOTATION = "io.katacontainers.config.hypervisor.cc_init_data"  # Kata's, as cocoon generate writes it
SANDBOX_ID = "io.kubernetes.cri.sandbox-id"
CONTAINER_TYPE = "io.kubernetes.cri.container-type"
FOREVER = 10 * 365 * 86400.0


def _now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


@dataclass
class Process:
    cid: str
    exec_id: str  # the agent's exec id: the container id for the init process
    stdin: str
    stdout: str
    stderr: str
    terminal: bool
    request: Any = None  # an exec's ExecProcessRequest until Start
    status: int = task_pb2.CREATED
    exit_status: int = 0
    exited_at: timestamp_pb2.Timestamp | None = None
    exited: threading.Event = field(default_factory=threading.Event)
    pumps: list[threading.Thread] = field(default_factory=list)


@dataclass
class Container:
    cid: str
    bundle: str
    init: Process
    execs: dict[str, Process] = field(default_factory=dict)
    sandbox: bool = False


class Publisher:
    """Task events to containerd through its ``publish`` subcommand (runtime/v2/shim/publisher.go in 1.6
    runs ``<publish-binary> --address <address> publish --topic <topic> --namespace <ns>`` with a
    google.protobuf.Any on stdin whose type URL is the event's full name). In order, off the RPC threads."""

    def __init__(self, binary: str, address: str, namespace: str) -> None:
        import queue

        self.binary, self.address, self.namespace = binary, address, namespace
        self.queue: queue.Queue[tuple[str, Message] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True, name="publisher")
        self.thread.start()

    def publish(self, topic: str, event: Message) -> None:
        self.queue.put((topic, event))

    def _run(self) -> None:
        import subprocess

        from google.protobuf import any_pb2

        while (item := self.queue.get()) is not None:
            topic, event = item
            if not self.binary:
                continue
            payload = any_pb2.Any(type_url=event.DESCRIPTOR.full_name, value=event.SerializeToString())
            try:
                run = subprocess.run([self.binary, "--address", self.address, "publish", "--topic", topic,
                                      "--namespace", self.namespace], input=payload.SerializeToString(),
                                     capture_output=True, timeout=30, check=False)
                if run.returncode != 0:
                    log.warning("publish %s failed: %s", topic, run.stderr.decode(errors="replace").strip())
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.warning("publish %s failed: %s", topic, exc)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=35)


def decode_initdata(value: str) -> bytes:
    """The annotation's document: base64 of gzip of the initdata TOML (Kata's cc_init_data; cocoon generate
    writes it so). A value that is neither is refused: a pod never runs under a policy it did not send."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RpcError(Code.INVALID_ARGUMENT, f"annotation {INITDATA_ANNOTATION} is not base64") from None
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError):
        raise RpcError(Code.INVALID_ARGUMENT, f"annotation {INITDATA_ANNOTATION} is not gzip'd initdata") from None


class TaskService:
    """The Task service of one shim (one pod sandbox). ``pod_factory`` boots the VM (shim.pod.PodVm)."""

    def __init__(self, namespace: str, address: str, publisher: Publisher, pod_factory: Callable[..., Any],
                 shutdown: threading.Event) -> None:
        self.namespace, self.address = namespace, address
        self.publisher = publisher
        self.pod_factory = pod_factory
        self.shutdown_event = shutdown
        self.pod: Any = None
        self.containers: dict[str, Container] = {}
        self.lock = threading.RLock()

    # --- plumbing -------------------------------------------------------------------------------------
    def service(self) -> Service:
        svc = Service(SERVICE)
        table: list[tuple[str, type[Message], type[Message], bool]] = [
            ("State", task_pb2.StateRequest, task_pb2.StateResponse, False),
            ("Create", task_pb2.CreateTaskRequest, task_pb2.CreateTaskResponse, True),
            ("Start", task_pb2.StartRequest, task_pb2.StartResponse, True),
            ("Delete", task_pb2.DeleteRequest, task_pb2.DeleteResponse, True),
            ("Pids", task_pb2.PidsRequest, task_pb2.PidsResponse, False),
            ("Pause", task_pb2.PauseRequest, empty_pb2.Empty, False),
            ("Resume", task_pb2.ResumeRequest, empty_pb2.Empty, False),
            ("Checkpoint", task_pb2.CheckpointTaskRequest, empty_pb2.Empty, False),
            ("Kill", task_pb2.KillRequest, empty_pb2.Empty, False),
            ("Exec", task_pb2.ExecProcessRequest, empty_pb2.Empty, False),
            ("ResizePty", task_pb2.ResizePtyRequest, empty_pb2.Empty, False),
            ("CloseIO", task_pb2.CloseIORequest, empty_pb2.Empty, False),
            ("Update", task_pb2.UpdateTaskRequest, empty_pb2.Empty, False),
            ("Wait", task_pb2.WaitRequest, task_pb2.WaitResponse, True),
            ("Stats", task_pb2.StatsRequest, task_pb2.StatsResponse, False),
            ("Connect", task_pb2.ConnectRequest, task_pb2.ConnectResponse, False),
            ("Shutdown", task_pb2.ShutdownRequest, empty_pb2.Empty, False),
        ]
        for name, req, resp, long in table:
            svc.add(Method(name, req, resp, self._logged(name, getattr(self, name.lower())), long_running=long))
        return svc

    @staticmethod
    def _logged(name: str, handler: Callable[[Any, Context], Any]) -> Callable[[Any, Context], Any]:
        """Every call and every refusal in the shim's log (containerd copies it into its own)."""

        def run(req: Any, ctx: Context) -> Any:
            what = f"{name} {getattr(req, 'id', '')}/{getattr(req, 'exec_id', '')}".rstrip("/")
            log.info("%s", what)
            try:
                return handler(req, ctx)
            except RpcError as exc:
                log.warning("%s refused: %s", what, exc)
                raise

        return run

    def _container(self, cid: str) -> Container:
        c = self.containers.get(cid)
        if c is None:
            raise RpcError(Code.NOT_FOUND, f"container {cid} is not in this shim")
        return c

    def _process(self, cid: str, exec_id: str) -> Process:
        c = self._container(cid)
        if not exec_id:
            return c.init
        p = c.execs.get(exec_id)
        if p is None:
            raise RpcError(Code.NOT_FOUND, f"exec {exec_id} of container {cid} does not exist")
        return p

    def _pid(self) -> int:
        return int(self.pod.pid) if self.pod is not None else 0

    def _agent(self, rpc: str, request: Any, timeout: float | None = 120) -> Any:
        if self.pod is None:
            raise RpcError(Code.FAILED_PRECONDITION, "the pod's VM is not running")
        return self.pod.call(rpc, request, timeout)

    # --- Task -----------------------------------------------------------------------------------------
    def create(self, req: task_pb2.CreateTaskRequest, ctx: Context) -> task_pb2.CreateTaskResponse:
        try:
            spec = json.loads((Path(req.bundle) / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise RpcError(Code.INVALID_ARGUMENT, f"bundle {req.bundle}: no readable config.json: {exc}") from None
        annotations = spec.get("annotations") or {}
        sandbox = annotations.get(CONTAINER_TYPE, "sandbox") == "sandbox"
        with self.lock:
            if req.id in self.containers:
                raise RpcError(Code.ALREADY_EXISTS, f"container {req.id} exists")
            if sandbox:
                if self.pod is not None:
                    raise RpcError(Code.ALREADY_EXISTS, "this shim's pod already has its sandbox")
                value = annotations.get(INITDATA_ANNOTATION)
                document = decode_initdata(value) if value is not None else None
                self.pod = self.pod_factory(req.id, document, Path(req.bundle))
                try:
                    self.pod.boot(req.id, spec)
                except BaseException:
                    self.pod.stop()
                    self.pod = None
                    raise
            elif self.pod is None:
                raise RpcError(Code.FAILED_PRECONDITION, f"container {req.id}: its sandbox "
                                                         f"{annotations.get(SANDBOX_ID)} is not in this shim")
            try:
                self.pod.create_container(req.id, spec, req.bundle)
            except BaseException:
                if sandbox:
                    self.pod.stop()
                    self.pod = None
                raise
            init = Process(req.id, req.id, req.stdin, req.stdout, req.stderr, req.terminal)
            self.containers[req.id] = Container(req.id, req.bundle, init, sandbox=sandbox)
            if sandbox:
                threading.Thread(target=self._oom_events, daemon=True, name="oom events").start()
        pid = self._pid()
        self.publisher.publish("/tasks/create", events_pb2.TaskCreate(
            container_id=req.id, bundle=req.bundle, rootfs=req.rootfs, pid=pid,
            io=events_pb2.TaskIO(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, terminal=req.terminal)))
        return task_pb2.CreateTaskResponse(pid=pid)

    def start(self, req: task_pb2.StartRequest, ctx: Context) -> task_pb2.StartResponse:
        p = self._process(req.id, req.exec_id)
        if p.status != task_pb2.CREATED:
            raise RpcError(Code.FAILED_PRECONDITION, f"{req.id}/{req.exec_id or 'init'} is not in state created")
        if req.exec_id:
            self._agent("ExecProcess", p.request)
        else:
            self._agent("StartContainer", {"container_id": req.id})
        p.status = task_pb2.RUNNING
        pid = self._pid()
        # the start event goes out before the waiter can publish the exit: a quick process must not
        # appear to containerd as exited before it started
        if req.exec_id:
            self.publisher.publish("/tasks/exec-started", events_pb2.TaskExecStarted(
                container_id=req.id, exec_id=req.exec_id, pid=pid))
        else:
            self.publisher.publish("/tasks/start", events_pb2.TaskStart(container_id=req.id, pid=pid))
        self._io(p)
        threading.Thread(target=self._wait, args=(p,), daemon=True, name=f"wait {p.cid}/{p.exec_id}").start()
        return task_pb2.StartResponse(pid=pid)

    def _io(self, p: Process) -> None:
        for rpc, path in (("ReadStdout", p.stdout), ("ReadStderr", p.stderr)):
            if path and not (p.terminal and rpc == "ReadStderr"):
                t = threading.Thread(target=self._pump_out, args=(p, rpc, path), daemon=True,
                                     name=f"{rpc} {p.cid}/{p.exec_id}")
                t.start()
                p.pumps.append(t)
        if p.stdin:
            threading.Thread(target=self._pump_in, args=(p,), daemon=True, name=f"stdin {p.cid}").start()

    def _pump_out(self, p: Process, rpc: str, path: str) -> None:
        """Agent output -> containerd's FIFO, until the agent says EOF (or the VM is gone)."""
        try:
            with open(path, "wb", buffering=0) as fifo:
                while True:
                    try:
                        data = self._agent(rpc, {"container_id": p.cid, "exec_id": p.exec_id, "len": 65536},
                                           FOREVER).data
                    except RpcError as exc:
                        if exc.code == Code.PERMISSION_DENIED:  # the pod's policy keeps its output from the host
                            log.warning("%s of %s/%s: %s", rpc, p.cid, p.exec_id, exc)
                        elif "EOF" not in exc.message:
                            log.info("%s of %s/%s ended: %s", rpc, p.cid, p.exec_id, exc)
                        return
                    if not data:
                        return
                    fifo.write(data)
        except OSError as exc:
            log.warning("%s of %s/%s: %s: %s", rpc, p.cid, p.exec_id, path, exc)

    def _pump_in(self, p: Process) -> None:
        """containerd's stdin FIFO -> WriteStream; its EOF -> CloseStdin."""
        try:
            with open(p.stdin, "rb", buffering=0) as fifo:
                while chunk := fifo.read(65536):
                    self._agent("WriteStream", {"container_id": p.cid, "exec_id": p.exec_id, "data":
                                                base64.b64encode(chunk).decode()})
            self._agent("CloseStdin", {"container_id": p.cid, "exec_id": p.exec_id})
        except (OSError, RpcError) as exc:
            log.info("stdin of %s/%s ended: %s", p.cid, p.exec_id, exc)

    def _wait(self, p: Process) -> None:
        try:
            status = int(self._agent("WaitProcess", {"container_id": p.cid, "exec_id": p.exec_id}, FOREVER).status)
        except RpcError as exc:
            log.warning("WaitProcess %s/%s: %s", p.cid, p.exec_id, exc)
            status = 255  # the VM or agent went away under a running task: an exit, with its reason logged
        for t in p.pumps:
            t.join(timeout=30)
        self._exited(p, status)

    def _oom_events(self) -> None:
        """The agent's OOM events (GetOOMEvent, a long poll, as Kata's shim watches them) -> TaskOOM. Ends with
        the VM, or at once when the pod's policy denies the request (then no OOM is reported, and the log says
        why)."""
        while self.pod is not None and self.pod.alive():
            try:
                event = self._agent("GetOOMEvent", {}, FOREVER)
            except RpcError as exc:
                log.info("OOM events end: %s", exc)
                return
            if event.container_id:
                self.publisher.publish("/tasks/oom", events_pb2.TaskOOM(container_id=event.container_id))
            else:
                time.sleep(0.5)  # an agent that answers at once with no event must not make this spin

    def _exited(self, p: Process, status: int) -> None:
        if p.exited.is_set():
            return
        p.exit_status, p.exited_at, p.status = status, _now(), task_pb2.STOPPED
        p.exited.set()
        self.publisher.publish("/tasks/exit", events_pb2.TaskExit(
            container_id=p.cid, id=p.exec_id if p.exec_id != p.cid else p.cid, pid=self._pid(),
            exit_status=status, exited_at=p.exited_at))

    def delete(self, req: task_pb2.DeleteRequest, ctx: Context) -> task_pb2.DeleteResponse:
        p = self._process(req.id, req.exec_id)
        if p.status == task_pb2.RUNNING:
            raise RpcError(Code.FAILED_PRECONDITION, f"{req.id}/{req.exec_id or 'init'} is running: kill it first")
        pid = self._pid()
        with self.lock:
            c = self._container(req.id)
            if req.exec_id:
                c.execs.pop(req.exec_id, None)
            else:
                if self.pod is not None and not c.sandbox:
                    with contextlib.suppress(RpcError):
                        self._agent("RemoveContainer", {"container_id": req.id})
                del self.containers[req.id]
                if c.sandbox and self.pod is not None:
                    self.pod.stop()
        if not req.exec_id:
            self.publisher.publish("/tasks/delete", events_pb2.TaskDelete(
                container_id=req.id, pid=pid, exit_status=p.exit_status, exited_at=p.exited_at or _now(),
                id=req.id))
        return task_pb2.DeleteResponse(pid=pid, exit_status=p.exit_status, exited_at=p.exited_at or _now())

    def state(self, req: task_pb2.StateRequest, ctx: Context) -> task_pb2.StateResponse:
        p = self._process(req.id, req.exec_id)
        c = self._container(req.id)
        return task_pb2.StateResponse(id=req.id, bundle=c.bundle, pid=self._pid(), status=p.status,  # type: ignore[arg-type]
                                      stdin=p.stdin, stdout=p.stdout, stderr=p.stderr, terminal=p.terminal,
                                      exit_status=p.exit_status, exited_at=p.exited_at, exec_id=req.exec_id)

    def pids(self, req: task_pb2.PidsRequest, ctx: Context) -> task_pb2.PidsResponse:
        self._container(req.id)
        return task_pb2.PidsResponse(processes=[task_pb2.ProcessInfo(pid=self._pid())])

    def pause(self, req: task_pb2.PauseRequest, ctx: Context) -> empty_pb2.Empty:
        self._agent("PauseContainer", {"container_id": req.id})
        self._container(req.id).init.status = task_pb2.PAUSED
        return empty_pb2.Empty()

    def resume(self, req: task_pb2.ResumeRequest, ctx: Context) -> empty_pb2.Empty:
        self._agent("ResumeContainer", {"container_id": req.id})
        self._container(req.id).init.status = task_pb2.RUNNING
        return empty_pb2.Empty()

    def checkpoint(self, req: task_pb2.CheckpointTaskRequest, ctx: Context) -> empty_pb2.Empty:
        raise RpcError(Code.UNIMPLEMENTED, "a confidential VM's memory is not checkpointed")

    def kill(self, req: task_pb2.KillRequest, ctx: Context) -> empty_pb2.Empty:
        p = self._process(req.id, req.exec_id)
        if p.exited.is_set():
            return empty_pb2.Empty()
        if p.status == task_pb2.CREATED:  # never started: nothing runs in the guest yet
            self._exited(p, 128 + req.signal)
            return empty_pb2.Empty()
        try:
            self._agent("SignalProcess", {"container_id": p.cid, "exec_id": "" if req.all else p.exec_id,
                                          "signal": req.signal or signal.SIGTERM})
        except RpcError as exc:
            if self.pod is None or not self.pod.alive():
                self._exited(p, 128 + req.signal)
                return empty_pb2.Empty()
            raise RpcError(exc.code, f"kill {req.id}/{req.exec_id or 'init'}: {exc.message}") from None
        return empty_pb2.Empty()

    def exec(self, req: task_pb2.ExecProcessRequest, ctx: Context) -> empty_pb2.Empty:
        c = self._container(req.id)
        if req.exec_id in c.execs:
            raise RpcError(Code.ALREADY_EXISTS, f"exec {req.exec_id} exists")
        try:
            proc = json.loads(req.spec.value)
            request = specmod.exec_request(req.id, req.exec_id, proc)
        except (ValueError, specmod.SpecError) as exc:
            raise RpcError(Code.INVALID_ARGUMENT, f"exec {req.exec_id}: {exc}") from None
        p = Process(req.id, req.exec_id, req.stdin, req.stdout, req.stderr, req.terminal, request=request)
        c.execs[req.exec_id] = p
        self.publisher.publish("/tasks/exec-added", events_pb2.TaskExecAdded(container_id=req.id,
                                                                             exec_id=req.exec_id))
        return empty_pb2.Empty()

    def resizepty(self, req: task_pb2.ResizePtyRequest, ctx: Context) -> empty_pb2.Empty:
        p = self._process(req.id, req.exec_id)
        if p.terminal and p.status == task_pb2.RUNNING:
            self._agent("TtyWinResize", {"container_id": p.cid, "exec_id": p.exec_id, "row": req.height,
                                         "column": req.width})
        return empty_pb2.Empty()

    def closeio(self, req: task_pb2.CloseIORequest, ctx: Context) -> empty_pb2.Empty:
        p = self._process(req.id, req.exec_id)
        if req.stdin and p.status == task_pb2.RUNNING:
            self._agent("CloseStdin", {"container_id": p.cid, "exec_id": p.exec_id})
        return empty_pb2.Empty()

    def update(self, req: task_pb2.UpdateTaskRequest, ctx: Context) -> empty_pb2.Empty:
        raise RpcError(Code.UNIMPLEMENTED, "updating a running pod's resources is not supported by cocoon's shim")

    def wait(self, req: task_pb2.WaitRequest, ctx: Context) -> task_pb2.WaitResponse:
        p = self._process(req.id, req.exec_id)
        p.exited.wait()
        return task_pb2.WaitResponse(exit_status=p.exit_status, exited_at=p.exited_at)

    def stats(self, req: task_pb2.StatsRequest, ctx: Context) -> task_pb2.StatsResponse:
        raise RpcError(Code.UNIMPLEMENTED, "task stats are not supported by cocoon's shim yet")

    def connect(self, req: task_pb2.ConnectRequest, ctx: Context) -> task_pb2.ConnectResponse:
        return task_pb2.ConnectResponse(shim_pid=os.getpid(), task_pid=self._pid(), version="cocoon-shim 1")

    def shutdown(self, req: task_pb2.ShutdownRequest, ctx: Context) -> empty_pb2.Empty:
        """containerd calls this after each Delete; the shim goes only once no container is left (or now)."""
        with self.lock:
            if self.containers and not req.now:
                return empty_pb2.Empty()
        ctx.after_reply.append(self.shutdown_event.set)
        return empty_pb2.Empty()

    def close(self) -> None:
        with self.lock:
            if self.pod is not None:
                self.pod.stop()
                self.pod = None
        deadline = time.monotonic() + 5
        while not self.publisher.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
