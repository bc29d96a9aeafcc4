"""cocoon's containerd shim without a VM: the runtime v2 handshake (start prints an address containerd can
speak ttRPC to, one shim per pod, delete prints a DeleteResponse), events as containerd's ``publish`` reads
them, the OCI spec as the agent receives it, bad input refused with its reason, and a real containerd
refusing ``ctr run`` of a pod whose initdata annotation is corrupt with the shim's reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    assert [m.destination for m in req.OCI.Mounts] == ["/proc"]  # host bind mounts do not reach the guest
    assert [n.Type for n in req.OCI.Linux.Namespaces] == ["pid", "mount"]
    assert (req.OCI.Process.User.UID, req.OCI.Process.User.GID) == (1000, 5)
    assert req.OCI.Process.NoNewPrivileges and list(req.OCI.Process.Capabilities.Bounding) == ["CAP_KILL"]
    assert not req.OCI.Linux.HasField("Seccomp") and list(req.OCI.Linux.MaskedPaths) == ["/proc/kcore"]
    with pytest.raises(specmod.SpecError, match="no process"):
        specmod.create_request({"root": {}}, "c1", [])


@pytest.mark.skipif(containerd.available() is not None, reason=str(containerd.available()))
def test_ctr_run_with_a_corrupt_annotation_fails_with_the_reason(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "containerd-shim-cocoon-v2"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} -m shim.main \"$@\"\n")
    script.chmod(0o755)
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
