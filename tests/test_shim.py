"""cocoon's containerd shim without a VM: the runtime v2 handshake (start prints an address containerd can
speak ttRPC to, one shim per pod, delete prints a DeleteResponse), events as containerd's ``publish`` reads
them, the OCI spec as the agent receives it, bad input refused with its reason, and a real containerd
refusing ``ctr run`` of a pod whose initdata annotation is corrupt with the shim's reason."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import any_pb2, empty_pb2
from support import containerd, ociimage

from agent.rpc import Code, RpcError
from agent.ttrpc import TtrpcClient
from shim import spec as specmod
from shim import task
from shim.protocols import events_pb2, generate, task_pb2

ROOT = Path(__file__).resolve().parent.parent


def shim(args: list[str], run: Path, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "COCOON_SHIM_RUN": str(run), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "shim.main", *args], cwd=cwd, env=env, capture_output=True,
                          timeout=60, check=False)


def test_protos_are_current() -> None:
    assert generate.main(["--check"]) == 0


def test_start_connect_shutdown_delete(tmp_path: Path) -> None:
    run = Path(tempfile.mkdtemp(prefix="shim-", dir="/tmp"))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"process": {"args": ["true"]}}))
    flags = ["-namespace", "ns", "-address", str(tmp_path / "none.sock"), "-publish-binary", "", "-id", "c1"]
    try:
        started = shim([*flags, "start"], run, bundle)
        assert started.returncode == 0, started.stderr
        address = started.stdout.decode()
        assert address.startswith("unix://") and (bundle / "address").read_text() == address
        again = shim([*flags, "start"], run, bundle)  # the same pod: the running shim's address
        assert again.stdout.decode() == address
        with TtrpcClient(address) as client:
            conn = client.call(task.SERVICE, "Connect", task_pb2.ConnectRequest(id="c1"), task_pb2.ConnectResponse)
            assert conn.shim_pid == int((bundle / "shim.pid").read_text())
            with pytest.raises(RpcError) as err:
                client.call(task.SERVICE, "State", task_pb2.StateRequest(id="nope"), task_pb2.StateResponse)
            assert err.value.code == Code.NOT_FOUND
            client.call(task.SERVICE, "Shutdown", task_pb2.ShutdownRequest(id="c1", now=True),
                        empty_pb2.Empty)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{conn.shim_pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(address.removeprefix("unix://")).exists()
        deleted = shim([*flags, "-bundle", str(bundle), "delete"], run, bundle)
        assert deleted.returncode == 0, deleted.stderr
        resp = task_pb2.DeleteResponse.FromString(deleted.stdout)
        assert resp.exit_status == 137 and resp.exited_at.seconds > 0
    finally:
        subprocess.run(["rm", "-rf", str(run)], check=False)


def test_events_reach_the_publish_binary(tmp_path: Path) -> None:
    record = tmp_path / "calls"
    fake = tmp_path / "containerd"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {record}.args\ncat > {record}.$$\n")
    fake.chmod(0o755)
    pub = task.Publisher(str(fake), "/run/c.sock", "ns1")
    pub.publish("/tasks/exit", events_pb2.TaskExit(container_id="c1", id="c1", pid=7, exit_status=3))
    pub.close()
    assert (tmp_path / "calls.args").read_text().split() == ["--address", "/run/c.sock", "publish", "--topic",
                                                             "/tasks/exit", "--namespace", "ns1"]
    payload = next(p for p in tmp_path.iterdir() if p.name.startswith("calls.") and p.suffix != ".args")
    event = any_pb2.Any.FromString(payload.read_bytes())
    assert event.type_url == "containerd.events.TaskExit"  # containerd's typeurl: the message's full name
    assert events_pb2.TaskExit.FromString(event.value).exit_status == 3


def test_initdata_annotation_must_decode() -> None:
    with pytest.raises(RpcError, match="not base64"):
        task.decode_initdata("%%%")
    with pytest.raises(RpcError, match="not gzip"):
        task.decode_initdata("aGVsbG8=")


def test_spec_as_the_agent_receives_it() -> None:
    spec = {"ociVersion": "1.0.2-dev", "hostname": "h",
            "process": {"args": ["sh"], "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 1000, "gid": 5},
                        "noNewPrivileges": True, "capabilities": {"bounding": ["CAP_KILL"]}},
            "root": {"path": "/host/snapshot/rootfs", "readonly": True},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                       {"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts", "options": ["rbind"]}],
            "linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/proc/1/ns/net"},
                                     {"type": "mount"}, {"type": "cgroup"}],
                      "maskedPaths": ["/proc/kcore"], "seccomp": {"defaultAction": "SCMP_ACT_ERRNO"},
                      "resources": {"devices": [{"allow": False, "access": "rwm"}]}}}
    req = specmod.create_request(spec, "c1", [])
    assert req.OCI.Root.Path == f"{specmod.SHARED}/c1/rootfs" and req.OCI.Root.Readonly  # never the host's
    assert req.OCI.Version == "1.0.2-dev"  # the bundle's, which the policy's oci_version pins
    assert [m.destination for m in req.OCI.Mounts] == ["/proc", "/etc/hosts"]
    assert re.fullmatch(rf"{specmod.SHARED}/c1-[0-9a-f]{{16}}-hosts", req.OCI.Mounts[1].source)  # a copy
    assert [n.Type for n in req.OCI.Linux.Namespaces] == ["pid", "mount"]
    assert (req.OCI.Process.User.UID, req.OCI.Process.User.GID) == (1000, 5)
    assert req.OCI.Process.NoNewPrivileges and list(req.OCI.Process.Capabilities.Bounding) == ["CAP_KILL"]
    assert not req.OCI.Linux.HasField("Seccomp") and list(req.OCI.Linux.MaskedPaths) == ["/proc/kcore"]
    with pytest.raises(specmod.SpecError, match="no process"):
        specmod.create_request({"root": {}}, "c1", [])


def test_mounts_and_annotations_as_katas_runtime_sends_them(tmp_path: Path) -> None:
    """containerd's sandbox spec has /dev/shm twice (tmpfs and a bind of the host's shm): the guest gets one
    bind of the sandbox's shm storage. A host file behind a bind mount is copied (CopyFile with its bytes and
    mode) under Kata's shared name, so is a directory; a host device never reaches the guest. The runtime's own
    io.katacontainers.config.* annotations are dropped, Kata's container type and bundle path added."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.96.0.10\n")
    resolv.chmod(0o644)
    spec: dict[str, Any] = {"ociVersion": "1.0.2-dev", "process": {"args": ["/pause"]},
            "annotations": {"io.kubernetes.cri.container-type": "sandbox",
                            "io.katacontainers.config.hypervisor.cc_init_data": "H4sI...",
                            "io.kubernetes.cri.sandbox-name": "p"},
            "mounts": [{"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["size=65536k"]},
                       {"destination": "/dev/shm", "type": "bind", "source": str(tmp_path), "options": ["rbind"]},
                       {"destination": "/etc/resolv.conf", "type": "bind", "source": str(resolv),
                        "options": ["rbind", "ro"]},
                       {"destination": "/data", "type": "bind", "source": str(tmp_path), "options": ["rbind"]},
                       {"destination": "/dev/null", "type": "bind", "source": "/dev/null", "options": ["rbind"]}]}
    req, shares = specmod.create_requests(spec, "s1", [], bundle="/run/b/s1")
    mounts = [(m.destination, m.type, m.source, list(m.options)) for m in req.OCI.Mounts]
    assert mounts[0] == ("/dev/shm", "bind", specmod.SANDBOX_SHM, ["rbind"])
    assert [m[0] for m in mounts] == ["/dev/shm", "/etc/resolv.conf", "/data"]  # /dev/null: never
    assert mounts[1][2] == shares[0].guest and mounts[1][3] == ["rbind", "ro"]
    assert [s.host for s in shares] == [str(resolv), str(tmp_path)]
    copy = specmod.copy_file_request(shares[0])
    assert (copy.path, copy.data, copy.file_size, copy.file_mode) == (shares[0].guest, resolv.read_bytes(),
                                                                      len(resolv.read_bytes()), 0o100644)
    assert dict(req.OCI.Annotations) == {"io.kubernetes.cri.container-type": "sandbox",
                                         "io.kubernetes.cri.sandbox-name": "p",
                                         specmod.KATA_CONTAINER_TYPE: "pod_sandbox",
                                         specmod.KATA_BUNDLE_PATH: "/run/b/s1"}
    spec["annotations"]["io.kubernetes.cri.container-type"] = "container"
    again, again_shares = specmod.create_requests(spec, "c2", [])
    assert again.OCI.Annotations[specmod.KATA_CONTAINER_TYPE] == "pod_container"
    assert again_shares[0].guest != shares[0].guest  # Kata's names carry random bytes: never reused
    big = tmp_path / "big"
    big.write_bytes(b"x" * (specmod.MAX_SHARED_FILE + 1))
    with pytest.raises(specmod.SpecError, match="is not copied into the guest"):
        specmod.copy_file_request(specmod.FileShare(str(big), f"{specmod.SHARED}/c-x-big"))
    resolv.unlink()
    with pytest.raises(specmod.SpecError, match=r"resolv\.conf"):
        specmod.copy_file_request(shares[0])


def test_volumes_as_katas_runtime_sends_them(tmp_path: Path) -> None:
    """A ConfigMap volume as kubelet's atomic writer lays it out (files in a timestamped directory, relative
    symlinks to them) is copied in whole, symlinks as symlinks, parents first; an emptyDir becomes Kata's
    local storage in the sandbox directory; an absolute symlink or an oversize tree is refused."""
    pod = tmp_path / "pods" / "uid-1" / "volumes"
    cfg = pod / "kubernetes.io~configmap" / "cfg"
    stamp = cfg / "..2026_12_04_00_00_00.000000001"
    stamp.mkdir(parents=True)
    (stamp / "motd").write_text("from a configmap\n")
    (cfg / "..data").symlink_to(stamp.name)
    (cfg / "motd").symlink_to("..data/motd")
    scratch = pod / "kubernetes.io~empty-dir" / "scratch"
    scratch.mkdir(parents=True)
    spec = {"ociVersion": "1.0.2-dev", "process": {"args": ["sh"]},
            "annotations": {"io.kubernetes.cri.container-type": "container"},
            "mounts": [{"destination": "/etc/cfg", "type": "bind", "source": str(cfg),
                        "options": ["rbind", "rprivate", "ro"]},
                       {"destination": "/scratch", "type": "bind", "source": str(scratch),
                        "options": ["rbind", "rprivate", "rw"]}]}
    req, shares = specmod.create_requests(spec, "c1", [])
    by_dest = {m.destination: m for m in req.OCI.Mounts}
    assert by_dest["/scratch"].source == f"{specmod.SANDBOX_DIR}/local/scratch"
    assert [(st.driver, st.source, st.fstype, list(st.options), st.mount_point) for st in req.storages] == [
        ("local", "local", "local", ["mode=0777"], f"{specmod.SANDBOX_DIR}/local/scratch")]
    assert [sh.host for sh in shares] == [str(cfg)] and by_dest["/etc/cfg"].source == shares[0].guest
    copies = specmod.copy_requests(shares[0])
    got = [(c.path.removeprefix(shares[0].guest), oct(c.file_mode), c.data) for c in copies]
    assert got == [("", oct(0o040000 | (cfg.stat().st_mode & 0o7777)), b""),
                   (f"/{stamp.name}", oct(0o040000 | (stamp.stat().st_mode & 0o7777)), b""),
                   ("/..data", oct(0o120777), stamp.name.encode()),
                   ("/motd", oct(0o120777), b"..data/motd"),
                   (f"/{stamp.name}/motd", oct(0o100000 | ((stamp / "motd").stat().st_mode & 0o7777)),
                    b"from a configmap\n")], got
    (cfg / "escape").symlink_to("/etc/shadow")
    with pytest.raises(specmod.SpecError, match="symlink to an absolute path"):
        specmod.copy_requests(shares[0])
    (cfg / "escape").unlink()
    for i in range(specmod.MAX_SHARED_ENTRIES):
        (stamp / f"f{i}").write_bytes(b"")
    with pytest.raises(specmod.SpecError, match="a volume that large is not copied"):
        specmod.copy_requests(shares[0])


def test_exec_request_carries_no_capabilities() -> None:
    """Kata's runtime sends an exec no capabilities or rlimits: the agent gives it the container's (and the
    generated policy refuses an exec that names its own)."""
    req = specmod.exec_request("c1", "e1", {"args": ["cat", "/etc/greeting"], "env": ["PATH=/bin"], "cwd": "/",
                                            "user": {"uid": 0, "gid": 0}, "capabilities": {"bounding": ["CAP_KILL"]},
                                            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 1}]})
    assert list(req.process.Args) == ["cat", "/etc/greeting"] and list(req.process.Env) == ["PATH=/bin"]
    assert not req.process.HasField("Capabilities") and not req.process.Rlimits


@pytest.mark.skipif(containerd.available() is not None, reason=str(containerd.available()))
def test_ctr_run_with_a_corrupt_annotation_fails_with_the_reason(tmp_path: Path) -> None:
    bindir = containerd.shim_bin(tmp_path / "bin")
    image = ociimage.build_image(tmp_path / "img", [{"etc": ociimage.Dir()}], tag="1.0")
    base = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
    env = {"COCOON_SHIM_RUN": str(base / "run"), "PYTHONPATH": str(ROOT)}
    with containerd.running(base, path=[str(bindir)], env=env) as c:
        name = c.import_image(image, "localhost/bad:1.0")
        run = c.ctr("run", "--runtime", containerd.RUNTIME, "--fifo-dir", str(c.fifo_dir), "--annotation",
                    f"{task.INITDATA_ANNOTATION}=not-base64!", name, "bad", "true", check=False)
        assert run.returncode != 0
        assert f"annotation {task.INITDATA_ANNOTATION} is not base64" in run.stderr.decode(), run.stderr
        c.ctr("containers", "delete", "bad")


def _relabel_layers(image: ociimage.BuiltImage, media_type: str) -> None:
    """Rewrite the layout's manifest so its layers claim ``media_type`` (the blobs stay as they are)."""
    index = json.loads((image.layout / "index.json").read_text())
    top = index["manifests"][0]
    blobs = image.layout / "blobs" / "sha256"
    manifest = json.loads((blobs / top["digest"].split(":", 1)[1]).read_bytes())
    for layer in manifest["layers"]:
        layer["mediaType"] = media_type
    data = json.dumps(manifest).encode()
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    top.update(digest=f"sha256:{digest}", size=len(data))
    (image.layout / "index.json").write_text(json.dumps(index))


@pytest.mark.skipif(containerd.available() is not None, reason=str(containerd.available()))
def test_ctr_run_of_an_image_with_an_unsupported_layer_type_fails_with_the_reason(tmp_path: Path) -> None:
    """containerd unpacks a non-distributable gzip layer; the shim's converter reads only the OCI and Docker
    tar types, so the pod is refused before any VM boots, with the layer and its type in ctr's error."""
    bindir = containerd.shim_bin(tmp_path / "bin")
    image = ociimage.build_image(tmp_path / "img", [{"etc": ociimage.Dir(), "etc/x": b"x\n"}], tag="1.0")
    odd = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    _relabel_layers(image, odd)
    base = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
    env = {"COCOON_SHIM_RUN": str(base / "run"), "COCOON_SHIM_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT)}
    initdata = base64.b64encode(gzip.compress(b"version = \"0.1.0\"\n")).decode()
    with containerd.running(base, path=[str(bindir)], env=env) as c:
        name = c.import_image(image, "localhost/odd:1.0")
        run = c.ctr("run", "--runtime", containerd.RUNTIME, "--fifo-dir", str(c.fifo_dir), "--annotation",
                    f"{task.INITDATA_ANNOTATION}={initdata}", name, "odd", "true", check=False)
        assert run.returncode != 0
        assert f"has media type {odd!r}, which the converter does not read" in run.stderr.decode(), run.stderr
        c.ctr("containers", "delete", "odd")
    assert not (base / "run").exists() or not any((base / "run").iterdir())


class FakePod:
    """The agent side of a pod, in memory: a started process prints its args' first word and the stdin it
    got, then exits with the status in its args (or 128+signal when killed)."""

    pid = 4242

    def __init__(self) -> None:
        import threading
        from types import SimpleNamespace

        self.ns = SimpleNamespace
        self.lock = threading.Lock()
        self.out: dict[str, list[bytes]] = {}
        self.done: dict[str, threading.Event] = {}
        self.status: dict[str, int] = {}
        self.args: dict[str, list[str]] = {}
        self.stdin: dict[str, bytes] = {}
        self.calls: list[str] = []
        self.stopped = False
        self.stop_event = threading.Event()

    def boot(self, cid: str, spec: dict) -> None:  # type: ignore[type-arg]
        self.calls.append("boot")

    def create_container(self, cid: str, spec: dict, bundle: str = "") -> None:  # type: ignore[type-arg]
        self.args[cid] = spec["process"]["args"]

    def alive(self) -> bool:
        return not self.stopped

    def stop(self) -> None:
        self.stopped = True
        self.stop_event.set()

    def _run(self, key: str, args: list[str]) -> None:
        import threading

        self.out[key] = [f"{args[0]}\n".encode()]
        self.done[key] = threading.Event()
        if args[-1].isdigit():
            self.status[key] = int(args[-1])
            self.done[key].set()

    def call(self, rpc: str, req: Any, timeout: float | None) -> Any:
        if rpc == "GetOOMEvent":  # a long poll that ends with the VM
            self.stop_event.wait()
            raise RpcError(Code.UNAVAILABLE, "connection lost")
        self.calls.append(rpc)
        if rpc == "StartContainer":
            self._run(req["container_id"], self.args[req["container_id"]])
        elif rpc == "ExecProcess":
            self._run(req.exec_id, list(req.process.Args))
        elif rpc in ("ReadStdout", "ReadStderr"):
            key = req["exec_id"]
            if rpc == "ReadStdout" and self.out[key]:
                return self.ns(data=self.out[key].pop(0))
            self.done[key].wait()
            if rpc == "ReadStdout" and key in self.stdin:
                data = self.stdin.pop(key)
                return self.ns(data=data)
            raise RpcError(Code.UNKNOWN, "EOF")
        elif rpc == "WriteStream":
            import base64

            self.stdin[req["exec_id"]] = self.stdin.get(req["exec_id"], b"") + base64.b64decode(req["data"])
        elif rpc == "WaitProcess":
            self.done[req["exec_id"]].wait()
            return self.ns(status=self.status[req["exec_id"]])
        elif rpc == "SignalProcess":
            key = req["exec_id"] or req["container_id"]
            self.status[key] = 128 + req["signal"]
            self.done[key].set()
        return self.ns()


def settle(got: list[bytes]) -> None:
    """The FIFO reader thread has seen EOF (the shim closed its end) and stored what it read."""
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)


def test_task_service_lifecycle_with_fifos(tmp_path: Path) -> None:
    """Create/Start/Wait/Kill/Delete/Exec in containerd's order: output reaches the FIFOs before Wait answers,
    stdin goes to the process, exit codes and events are as containerd expects them."""
    import threading

    from agent.rpc import Context

    events: list[tuple[str, Any]] = []

    class Pub:
        queue = __import__("queue").Queue()

        def publish(self, topic: str, event: Any) -> None:
            events.append((topic, event))

    pod = FakePod()
    svc = task.TaskService("ns", "/x.sock", Pub(), lambda cid, doc, bundle: pod, threading.Event())  # type: ignore[arg-type]
    ctx = Context("test")
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"process": {"args": ["hello", "3"]}}))

    def fifo(name: str) -> tuple[str, list[bytes]]:
        path = str(tmp_path / name)
        os.mkfifo(path)
        got: list[bytes] = []

        def read() -> None:
            with open(path, "rb") as f:
                got.append(f.read())

        threading.Thread(target=read, daemon=True).start()
        return path, got

    out, got = fifo("out")
    err, _ = fifo("err")
    created = svc.create(task_pb2.CreateTaskRequest(id="c1", bundle=str(bundle), stdout=out, stderr=err), ctx)
    assert created.pid == FakePod.pid and pod.calls == ["boot"]
    assert svc.state(task_pb2.StateRequest(id="c1"), ctx).status == task_pb2.CREATED
    svc.start(task_pb2.StartRequest(id="c1"), ctx)
    waited = svc.wait(task_pb2.WaitRequest(id="c1"), ctx)
    assert waited.exit_status == 3
    settle(got)
    assert got == [b"hello\n"]  # all output was written (and the FIFO closed) by the time Wait answered
    with pytest.raises(RpcError, match="not in state created"):
        svc.start(task_pb2.StartRequest(id="c1"), ctx)

    # an exec with stdin, then killed
    inp = str(tmp_path / "in")
    os.mkfifo(inp)
    eout, egot = fifo("eout")
    spec = any_pb2.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/Process",
                       value=json.dumps({"args": ["cat"], "cwd": "/"}).encode())
    svc.exec(task_pb2.ExecProcessRequest(id="c1", exec_id="e1", stdin=inp, stdout=eout, spec=spec), ctx)
    svc.start(task_pb2.StartRequest(id="c1", exec_id="e1"), ctx)
    with open(inp, "wb") as f:
        f.write(b"typed\n")
    deadline = time.monotonic() + 5
    while "CloseStdin" not in pod.calls and time.monotonic() < deadline:
        time.sleep(0.02)
    svc.kill(task_pb2.KillRequest(id="c1", exec_id="e1", signal=9), ctx)
    assert svc.wait(task_pb2.WaitRequest(id="c1", exec_id="e1"), ctx).exit_status == 137
    settle(egot)
    assert egot == [b"cat\ntyped\n"]
    assert svc.delete(task_pb2.DeleteRequest(id="c1", exec_id="e1"), ctx).exit_status == 137
    deleted = svc.delete(task_pb2.DeleteRequest(id="c1"), ctx)
    assert deleted.exit_status == 3 and pod.stopped
    topics = [t for t, _ in events]
    assert topics == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/exec-added", "/tasks/exec-started",
                      "/tasks/exit", "/tasks/delete"], topics
    assert events[2][1].exit_status == 3 and events[5][1].id == "e1"
    with pytest.raises(RpcError) as exc:
        svc.state(task_pb2.StateRequest(id="c1"), ctx)
    assert exc.value.code == Code.NOT_FOUND
