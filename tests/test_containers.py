"""Containers through the agent process with a real OCI runtime (runc) and verity-checked erofs layers.

Needs root, runc, busybox-static, erofs-utils and cryptsetup-bin (`make setup`
installs them). This kernel has no device-mapper, so layers go through the
agent's verified-copy path; dm-verity proper runs in the guest image. The
agent runs in a network namespace of its own (``unshare --net``): the pod's
network sysctls it applies must not change this host's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support.agentio import read_to_eof

from agent.initdata import render_document
from agent.rpc import Code, RpcError
from image.pause import PAUSE, make_pause_rootfs
from launcher import layers
from launcher.client import Client
from launcher.layers import DEV_MOUNT, DEVPTS_MOUNT, NAMESPACES, PROC_MOUNT, attach, busybox_tree, detach, verity_layer
from launcher.localagent import start_agent

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runc"), reason="needs root and runc")

POLICY = """package agent_policy
import future.keywords.if
import future.keywords.in
default CreateSandboxRequest := true
default CreateContainerRequest := true
default StartContainerRequest := true
default WaitProcessRequest := true
default ReadStreamRequest := true
default WriteStreamRequest := true
default CloseStdinRequest := true
default SignalProcessRequest := true
default RemoveContainerRequest := true
default GuestDetailsRequest := true
default PauseContainerRequest := true
default ResumeContainerRequest := true
default StatsContainerRequest := true
default CopyFileRequest := true
default TtyWinResizeRequest := true
default GetOOMEventRequest := true
default UpdateContainerRequest := true
default ExecProcessRequest := false
ExecProcessRequest if { input.process.Args[0] == "echo" }
"""
DOC = render_document({"policy.rego": POLICY})
BASE_MOUNTS = [PROC_MOUNT, DEV_MOUNT, DEVPTS_MOUNT]
CAPS = ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]


@pytest.fixture(scope="module")
def layer(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A busybox erofs image with its dm-verity tree appended, attached to a read-only loop device."""
    tmp = tmp_path_factory.mktemp("layer")
    img = tmp / "layer.img"
    root_hash, size = verity_layer(busybox_tree(tmp / "root"), img)
    bad = tmp / "bad.img"
    blob = bytearray(img.read_bytes())
    blob[size // 2] ^= 0x01  # one flipped byte in the data
    bad.write_bytes(bytes(blob))
    loops = [attach(img), attach(bad)]
    yield {"device": loops[0], "bad_device": loops[1], "root_hash": root_hash, "offset": size}
    for loop in loops:
        detach(loop)


def pause_agent(tmp: Path, chain, policy: str = POLICY):  # type: ignore[no-untyped-def]
    """An agent in its own network namespace whose pause rootfs is image/pause.py's tree (host busybox)."""
    pause = make_pause_rootfs(tmp / "pause-rootfs")
    return start_agent(tmp, chain, policy, wrapper=["unshare", "--net"], extra=["--pause-rootfs", str(pause)])


@pytest.fixture(scope="module")
def agent(tmp_path_factory, sim_chain):  # type: ignore[no-untyped-def]
    proc = pause_agent(tmp_path_factory.mktemp("agent"), sim_chain)
    yield {"address": proc.address, "shared": proc.shared, "tmp": proc.tmp, "pid": proc.pid}
    err = proc.stop()
    assert "Traceback" not in err, err


def rootfs_of(agent_tmp: Path, cid: str) -> str:
    """Where the agent mounts a container's root: its own bundle, never the request's Root.Path."""
    return f"{agent_tmp}/state/containers/{cid}/rootfs"


def container_request(cid: str, shared: str, layer: dict[str, Any], args: list[str], device: str | None = None,
                      **extra: object) -> dict[str, Any]:
    req = layers.container_request(
        cid, args, device or layer["device"], layer["root_hash"], layer["offset"], shared, BASE_MOUNTS, NAMESPACES,
        {"NoNewPrivileges": True, "Capabilities": {k: CAPS for k in ("Bounding", "Effective", "Permitted")}})
    req.update(extra)
    return req


def read_all(c: Client, rpc: str, cid: str, exec_id: str) -> bytes:
    return read_to_eof(c, cid, exec_id, rpc)


def test_container_runs_from_a_verity_layer(agent, layer) -> None:  # type: ignore[no-untyped-def]
    with Client(agent["address"]) as c:
        c.call("CreateContainer", container_request("c1", agent["shared"], layer,
                                                    ["sh", "-c", "echo hello from the layer; echo oops >&2; exit 3"]))
        c.call("StartContainer", {"container_id": "c1"})
        assert read_all(c, "ReadStdout", "c1", "c1") == b"hello from the layer\n"
        assert read_all(c, "ReadStderr", "c1", "c1") == b"oops\n"
        assert c.call("WaitProcess", {"container_id": "c1", "exec_id": "c1"}).status == 3
        assert os.path.ismount(rootfs_of(agent["tmp"], "c1"))
        assert not os.path.ismount(f"{agent['shared']}/c1/rootfs")  # the host-named Root.Path is not used
        c.call("RemoveContainer", {"container_id": "c1"})
        assert not os.path.ismount(rootfs_of(agent["tmp"], "c1"))


def test_exec_allowed_and_denied_then_remove_kills(agent, layer) -> None:  # type: ignore[no-untyped-def]
    with Client(agent["address"]) as c:
        c.call("CreateContainer", container_request("c2", agent["shared"], layer, ["sleep", "600"]))
        c.call("StartContainer", {"container_id": "c2"})
        c.call("ExecProcess", {"container_id": "c2", "exec_id": "e1", "process": {"Args": ["echo", "exec works"],
                                                                                   "Env": ["PATH=/bin"], "Cwd": "/"}})
        assert read_all(c, "ReadStdout", "c2", "e1") == b"exec works\n"
        assert c.call("WaitProcess", {"container_id": "c2", "exec_id": "e1"}).status == 0
        with pytest.raises(RpcError) as err:
            c.call("ExecProcess", {"container_id": "c2", "exec_id": "e2", "process": {"Args": ["sh"]}})
        assert err.value.code == Code.PERMISSION_DENIED
        c.call("RemoveContainer", {"container_id": "c2", "timeout": 2})  # sleep 600 is killed
        with pytest.raises(RpcError) as err:
            c.call("WaitProcess", {"container_id": "c2", "exec_id": "c2"})
        assert "does not exist" in err.value.message


def test_pause_resume_stats_and_copy_file(agent, layer) -> None:  # type: ignore[no-untyped-def]
    import stat

    with Client(agent["address"]) as c:
        c.call("CreateContainer", container_request("c5", agent["shared"], layer,
                                                    ["sh", "-c", "while true; do sleep 0.1; done"]))
        c.call("StartContainer", {"container_id": "c5"})
        c.call("PauseContainer", {"container_id": "c5"})
        state = subprocess.run(["runc", "--root", str(agent["tmp"] / "state" / "runtime"), "state", "c5"],
                               capture_output=True, text=True, check=True).stdout
        assert '"status": "paused"' in state
        c.call("ResumeContainer", {"container_id": "c5"})
        stats = c.call("StatsContainer", {"container_id": "c5"})
        assert stats.cgroup_stats.pids_stats.current >= 1
        assert stats.cgroup_stats.memory_stats.usage.usage > 0
        target = f"{agent['shared']}/c5-0123456789abcdef-hosts"
        import base64

        c.call("CopyFile", {"path": target, "file_mode": stat.S_IFREG | 0o644, "file_size": 10,
                            "data": base64.b64encode(b"127.0.0.1\n").decode()})
        assert Path(target).read_bytes() == b"127.0.0.1\n"
        with pytest.raises(RpcError) as err:
            c.call("CopyFile", {"path": "/etc/cocoon-test", "file_mode": stat.S_IFREG | 0o644})
        assert err.value.code == Code.FAILED_PRECONDITION and "outside" in err.value.message
        assert not os.path.exists("/etc/cocoon-test")
        c.call("RemoveContainer", {"container_id": "c5", "timeout": 2})


def test_stdin_and_a_slow_reader_lose_nothing(agent, layer) -> None:  # type: ignore[no-untyped-def]
    import base64
    import time

    with Client(agent["address"]) as c:
        c.call("CreateContainer", container_request("c6", agent["shared"], layer, ["cat"]))
        c.call("StartContainer", {"container_id": "c6"})
        c.call("WriteStdin", {"container_id": "c6", "exec_id": "c6", "data": base64.b64encode(b"to cat\n").decode()})
        c.call("CloseStdin", {"container_id": "c6", "exec_id": "c6"})
        assert read_all(c, "ReadStdout", "c6", "c6") == b"to cat\n"
        assert c.call("WaitProcess", {"container_id": "c6", "exec_id": "c6"}).status == 0
        c.call("RemoveContainer", {"container_id": "c6"})
        size = 3 << 20  # three times the agent's buffer: the writer must block, not lose data
        c.call("CreateContainer", container_request("c7", agent["shared"], layer,
                                                    ["sh", "-c", f"head -c {size} /dev/zero | tr '\\0' x"]))
        c.call("StartContainer", {"container_id": "c7"})
        time.sleep(1.0)  # let the buffer fill
        got = 0
        while True:
            try:
                chunk = c.call("ReadStdout", {"container_id": "c7", "exec_id": "c7", "len": 8192}).data
            except RpcError as exc:
                assert "EOF" in exc.message
                break
            assert set(chunk) <= {ord("x")}
            got += len(chunk)
        assert got == size
        assert c.call("WaitProcess", {"container_id": "c7", "exec_id": "c7"}).status == 0
        c.call("RemoveContainer", {"container_id": "c7"})


def test_terminal_process_and_resize(agent, layer) -> None:  # type: ignore[no-untyped-def]
    with Client(agent["address"]) as c:
        req = container_request("c8", agent["shared"], layer, ["sh", "-c", "sleep 1; stty size; echo done"])
        req["OCI"]["Process"]["Terminal"] = True
        c.call("CreateContainer", req)
        c.call("StartContainer", {"container_id": "c8"})
        c.call("TtyWinResize", {"container_id": "c8", "exec_id": "c8", "row": 33, "column": 111})
        out = read_all(c, "ReadStdout", "c8", "c8")
        assert b"33 111" in out and b"done" in out
        assert c.call("WaitProcess", {"container_id": "c8", "exec_id": "c8"}).status == 0
        with pytest.raises(RpcError, match="has no terminal"):
            c.call("CreateContainer", container_request("c10", agent["shared"], layer, ["sleep", "5"]))
            c.call("TtyWinResize", {"container_id": "c10", "exec_id": "c10", "row": 1, "column": 1})
        c.call("RemoveContainer", {"container_id": "c8"})
        c.call("RemoveContainer", {"container_id": "c10", "timeout": 1})


def test_oom_kill_is_reported_by_the_long_poll(agent, layer) -> None:  # type: ignore[no-untyped-def]
    with Client(agent["address"]) as c:
        req = container_request("c11", agent["shared"], layer,
                                ["sh", "-c", "x=$(head -c 134217728 /dev/zero | tr '\\0' a); echo survived"])
        req["OCI"]["Linux"]["Resources"] = {"Memory": {"Limit": 16 << 20}}
        c.call("CreateContainer", req)
        c.call("StartContainer", {"container_id": "c11"})
        assert c.call("GetOOMEvent", {}, timeout=60).container_id == "c11"
        assert c.call("WaitProcess", {"container_id": "c11", "exec_id": "c11"}).status != 0
        c.call("RemoveContainer", {"container_id": "c11"})


def zombie_children(parent: int) -> list[str]:
    """Reapable zombies whose parent is ``parent`` (pid and command name).

    A process whose main thread exited while other threads still run (a Go runtime such as runc
    tearing down) also shows state Z, but no wait() can collect it until its last thread is gone;
    that is the kernel's timing, not a reaping bug, and a loaded machine can stretch it to seconds.
    Such a process is left out: /proc/PID/task still lists its other threads.
    """
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                threads = len(os.listdir(f"/proc/{entry}/task"))
                comm = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == parent and threads <= 1:
                found.append(f"{entry} ({comm})")
    return found


def test_the_zombie_check_sees_an_unreaped_child() -> None:
    """The helper the next test relies on: a child that exited and was not waited for is listed."""
    import time

    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while f"{pid} " not in " ".join(zombie_children(os.getpid())) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(z.startswith(f"{pid} ") for z in zombie_children(os.getpid()))
    finally:
        os.waitpid(pid, 0)
    assert not any(z.startswith(f"{pid} ") for z in zombie_children(os.getpid()))


def test_no_zombies_left(agent) -> None:  # type: ignore[no-untyped-def]
    """Every child the agent had (runtimes, container processes) gets reaped.

    A child that exited a moment ago is a zombie until the reaper thread runs (and a
    multi-threaded one, like runc, until its last thread is gone), so the check allows
    some seconds on a loaded machine; a zombie that stays is the bug.
    """
    import time

    deadline = time.monotonic() + 15
    while zombie_children(agent["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert zombie_children(agent["pid"]) == []


def test_signal_update_storages_and_guest_details(agent, layer) -> None:  # type: ignore[no-untyped-def]
    shared = agent["shared"]
    with Client(agent["address"]) as c:
        req = container_request("c12", shared, layer, ["sh", "-c", "ls /scratch /data; sleep 600"])
        req["storages"] += [{"driver": "ephemeral", "source": "tmpfs", "fstype": "tmpfs",
                             "mount_point": f"{shared}/c12/scratch"},
                            {"driver": "local", "source": "local", "mount_point": f"{shared}/c12/data"}]
        req["OCI"]["Mounts"] = [*BASE_MOUNTS,
                                {"destination": "/scratch", "source": f"{shared}/c12/scratch", "type": "bind",
                                 "options": ["rbind", "rw"]},
                                {"destination": "/data", "source": f"{shared}/c12/data", "type": "bind",
                                 "options": ["rbind", "rw"]}]
        c.call("CreateContainer", req)
        assert os.path.ismount(f"{shared}/c12/scratch") and os.path.isdir(f"{shared}/c12/data")
        c.call("StartContainer", {"container_id": "c12"})
        c.call("UpdateContainer", {"container_id": "c12", "resources": {"Memory": {"Limit": 64 << 20}}})
        limit = c.call("StatsContainer", {"container_id": "c12"}).cgroup_stats.memory_stats.usage.limit
        assert limit == 64 << 20
        c.call("SignalProcess", {"container_id": "c12", "exec_id": "c12", "signal": 9})
        assert c.call("WaitProcess", {"container_id": "c12", "exec_id": "c12"}).status == 128 + 9
        with pytest.raises(RpcError, match="signal 99 is not valid"):
            c.call("SignalProcess", {"container_id": "c12", "exec_id": "c12", "signal": 99})
        c.call("RemoveContainer", {"container_id": "c12"})
        assert not os.path.ismount(f"{shared}/c12/scratch")
        details = c.call("GetGuestDetails", {"mem_block_size": True})
        assert details.agent_details.version and "blk" in details.agent_details.storage_handlers


def test_flipped_byte_layer_never_starts(agent, layer) -> None:  # type: ignore[no-untyped-def]
    with Client(agent["address"]) as c:
        with pytest.raises(RpcError) as err:
            c.call("CreateContainer", container_request("c3", agent["shared"], layer, ["true"],
                                                        device=layer["bad_device"]))
        assert err.value.code == Code.FAILED_PRECONDITION
        assert "root hash" in err.value.message and "changed" in err.value.message
        assert not os.path.ismount(rootfs_of(agent["tmp"], "c3"))


@pytest.mark.parametrize(("edit", "message"), [
    ({"OCI__Hooks": {"Prestart": [{"Path": "/bin/true"}]}}, "hooks"),
    ({"storages__0__mount_point": "/etc/evil"}, "outside the allowed directories"),
    ({"storages__0__driver_options": []}, "no pinned verity root hash"),
    ({"container_id": "../escape"}, "not valid"),
    ({"OCI__Mounts": [*BASE_MOUNTS, {"destination": "/host", "source": "/", "type": "bind",
                                     "options": ["rbind", "rw"]}]}, "outside the allowed directories"),
])
def test_backend_refuses_what_it_cannot_run_safely(agent, layer, edit, message) -> None:  # type: ignore[no-untyped-def]
    req = container_request("c4", agent["shared"], layer, ["true"])
    for path, value in edit.items():
        node = req
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[keys[-1]] = value
    with Client(agent["address"]) as c:
        with pytest.raises(RpcError) as err:
            c.call("CreateContainer", req)
        assert err.value.code == Code.FAILED_PRECONDITION and message in err.value.message


def test_agent_stop_removes_its_containers(tmp_path, sim_chain, layer) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM with a container running: the agent kills it and leaves no mount behind."""
    proc = start_agent(tmp_path, sim_chain, POLICY)
    shared = proc.shared
    with Client(proc.address) as c:
        c.call("CreateContainer", container_request("c9", shared, layer, ["sleep", "600"]))
        c.call("StartContainer", {"container_id": "c9"})
    assert os.path.ismount(rootfs_of(tmp_path, "c9"))
    proc.stop()
    assert proc.proc.returncode == 0
    assert not os.path.ismount(rootfs_of(tmp_path, "c9"))
    assert not os.path.ismount(f"{shared}/c9/layers/0")


# --- isolation: PID namespace, rootfs, sysctls (issue 19) --------------------------------------------------
SANDBOX = {"io.kubernetes.cri.container-type": "sandbox"}


def pause_request(cid: str, shared: str, args: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """The sandbox (pause) container as containerd sends it: no storage, the pause image's /pause."""
    req = container_request(cid, shared, {"device": "", "root_hash": "", "offset": 0}, args or ["/pause"],
                            storages=[], **extra)
    req["OCI"]["Annotations"] = dict(SANDBOX)
    req["OCI"]["Linux"]["Sysctl"] = {"net.ipv4.ip_unprivileged_port_start": "0"}  # containerd's usual one
    return req


def runc_pid(tmp: Path, cid: str) -> int:
    import json

    out = subprocess.run(["runc", "--root", str(tmp / "state" / "runtime"), "state", cid], capture_output=True,
                         text=True, check=True).stdout
    return int(json.loads(out)["pid"])


def run_to_end(c: Client, req: dict[str, Any]) -> tuple[str, int]:
    cid = req["container_id"]
    c.call("CreateContainer", req)
    c.call("StartContainer", {"container_id": cid})
    out = read_all(c, "ReadStdout", cid, cid).decode()
    status = c.call("WaitProcess", {"container_id": cid, "exec_id": cid}).status
    c.call("RemoveContainer", {"container_id": cid})
    return out, status


NS_PROBE = 'readlink /proc/self/ns/pid; echo "pid $$"; kill -0 {0} 2>/dev/null && echo signalled; ' \
           '[ -e /proc/{0} ] && echo listed; true'


@pytest.mark.parametrize("namespaces", [("pid", "ipc", "uts", "mount"), ("ipc", "uts", "mount")],
                         ids=["spec-asks-pid", "spec-omits-pid"])
def test_a_container_never_shares_the_agents_pid_namespace(agent, layer, namespaces) -> None:  # type: ignore[no-untyped-def]
    """Whatever the spec lists, the container is PID 1 of a fresh namespace: the agent is out of its sight."""
    req = container_request("ns1", agent["shared"], layer, ["sh", "-c", NS_PROBE.format(agent["pid"])])
    req["OCI"]["Linux"]["Namespaces"] = [{"Type": t, "Path": "/proc/1/ns/" + t} for t in namespaces]
    with Client(agent["address"]) as c:
        out, status = run_to_end(c, req)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith("pid:[") and lines[0] != os.readlink(f"/proc/{agent['pid']}/ns/pid")
    assert lines[1:] == ["pid 1"]  # neither "signalled" nor "listed": the agent cannot be seen or signalled


def test_sandbox_pidns_shares_the_pods_namespace_never_the_agents(tmp_path, sim_chain, layer) -> None:  # type: ignore[no-untyped-def]
    proc = pause_agent(tmp_path, sim_chain)
    agent_ns = os.readlink(f"/proc/{proc.pid}/ns/pid")
    try:
        with Client(proc.address) as c:
            c.call("CreateSandbox", {"hostname": "pod", "sandbox_id": "s1", "sandbox_pidns": True})
            c.call("CreateContainer", pause_request("pause", proc.shared))
            c.call("StartContainer", {"container_id": "pause"})
            pause_ns = os.readlink(f"/proc/{runc_pid(tmp_path, 'pause')}/ns/pid")
            seen = []
            for cid in ("a1", "a2"):
                req = container_request(cid, proc.shared, layer, ["sh", "-c", "readlink /proc/self/ns/pid; "
                                                                  "cat /proc/1/cmdline; echo; echo $$"])
                out, status = run_to_end(c, req)
                assert status == 0
                seen.append(out.splitlines())
            assert seen[0][0] == seen[1][0] == pause_ns != agent_ns
            assert all(s[1] == "/bin/sh\0/pause\0" and s[2] != "1" for s in seen)  # PID 1 is the pod's pause
            c.call("SignalProcess", {"container_id": "pause", "exec_id": "pause", "signal": 15})
            assert c.call("WaitProcess", {"container_id": "pause", "exec_id": "pause"}).status == 0
            c.call("RemoveContainer", {"container_id": "pause"})
            with pytest.raises(RpcError) as err:  # its namespace went with it: refused, not the agent's
                c.call("CreateContainer", container_request("a3", proc.shared, layer, ["true"]))
            assert err.value.code == Code.FAILED_PRECONDITION and "went with its sandbox container" in err.value.message
    finally:
        assert "Traceback" not in proc.stop()


def test_a_host_written_root_path_without_a_layer_is_refused(agent) -> None:  # type: ignore[no-untyped-def]
    """The host CopyFile'd a whole busybox tree to Root.Path: it never runs, whatever the policy allowed."""
    host_dir = busybox_tree(Path(agent["shared"]) / "h1" / "rootfs")
    req = container_request("h1", agent["shared"], {"device": "", "root_hash": "", "offset": 0},
                            ["sh", "-c", "echo host code"], storages=[])
    assert (host_dir / "bin" / "sh").exists()
    with Client(agent["address"]) as c, pytest.raises(RpcError) as err:
        c.call("CreateContainer", req)
    assert err.value.code == Code.FAILED_PRECONDITION
    assert "h1 has no pinned verity layer" in err.value.message
    assert f"never from the host's Root.Path '{host_dir}'" in err.value.message


def test_the_sandbox_container_runs_the_images_pause_read_only(agent) -> None:  # type: ignore[no-untyped-def]
    """A "sandbox" annotation with a host-filled Root.Path: the container runs the agent's pause tree."""
    host_dir = busybox_tree(Path(agent["shared"]) / "p1" / "rootfs")
    (host_dir / "pause").write_text("#!/bin/sh\necho smuggled > /tmp/smuggled\nsleep 600\n")
    os.chmod(host_dir / "pause", 0o755)
    (host_dir / "host-marker").write_text("from the host\n")
    with Client(agent["address"]) as c:
        c.call("CreateContainer", pause_request("p1", agent["shared"]))
        c.call("StartContainer", {"container_id": "p1"})
        pid = runc_pid(agent["tmp"], "p1")
        root = Path(f"/proc/{pid}/root")
        assert (root / "pause").read_text() == PAUSE
        assert not (root / "host-marker").exists() and not (root / "tmp" / "smuggled").exists()
        assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"/bin/sh\0/pause\0"
        with pytest.raises(OSError) as ro:
            (root / "written").write_text("x")
        assert ro.value.errno == 30  # EROFS: the pause tree is mounted read-only
        c.call("SignalProcess", {"container_id": "p1", "exec_id": "p1", "signal": 15})
        assert c.call("WaitProcess", {"container_id": "p1", "exec_id": "p1"}).status == 0  # /pause exits on TERM
        c.call("RemoveContainer", {"container_id": "p1"})


@pytest.mark.parametrize(("annotations", "args", "message"), [
    ({"io.kubernetes.cri.container-type": "container"}, ["/pause"], "has no pinned verity layer"),
    ({"io.katacontainers.pkg.oci.container_type": "pod_sandbox"}, ["/pause"], "has no pinned verity layer"),
    (SANDBOX, ["/bin/sh", "-c", "echo host code"], "whose only program is /pause"),
    (SANDBOX, ["/pause", "--extra"], "whose only program is /pause"),
])
def test_a_sandbox_annotation_smuggles_nothing_in(agent, annotations, args, message) -> None:  # type: ignore[no-untyped-def]
    busybox_tree(Path(agent["shared"]) / "p2" / "rootfs")
    req = pause_request("p2", agent["shared"], args)
    req["OCI"]["Annotations"] = annotations
    with Client(agent["address"]) as c, pytest.raises(RpcError) as err:
        c.call("CreateContainer", req)
    assert err.value.code == Code.FAILED_PRECONDITION and message in err.value.message


def test_namespaced_sysctls_are_applied_in_the_pods_namespaces(agent, layer) -> None:  # type: ignore[no-untyped-def]
    """containerd's net.ipv4.ip_unprivileged_port_start=0 (runc alone refuses it: "not allowed in host network
    namespace") reaches the pod's network namespace, the IPC key the container's own; the host's are untouched."""
    host_before = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text()
    req = container_request("s1", agent["shared"], layer, [
        "sh", "-c", "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shm_rmid_forced"])
    req["OCI"]["Linux"]["Sysctl"] = {"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shm_rmid_forced": "1"}
    with Client(agent["address"]) as c:
        out, status = run_to_end(c, req)
    assert (out, status) == ("0\n1\n", 0)
    assert Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text() == host_before


@pytest.mark.parametrize(("sysctl", "message"), [
    ({"kernel.panic": "1"}, "kernel.panic is not namespaced"),
    ({"vm.overcommit_memory": "1"}, "is not namespaced"),
    ({"kernel.hostname": "x"}, "the spec's Hostname is"),
    ({"net.core.netdev_max_backlog": "10"}, "is not per network namespace"),
    ({"net.ipv4.no_such_key": "1"}, "is not per network namespace"),
    ({"net.ipv4/../../kernel.panic": "1"}, "is malformed"),
    ({"net..ipv4.ip_forward": "1"}, "is malformed"),
    ({"net.ipv4.ip_forward": "1\n0"}, "malformed value"),
    ({"net.ipv4.ip_forward": ""}, "malformed value"),
])
def test_sysctls_that_are_not_the_pods_are_refused(agent, layer, sysctl, message) -> None:  # type: ignore[no-untyped-def]
    req = container_request("s2", agent["shared"], layer, ["true"])
    req["OCI"]["Linux"]["Sysctl"] = sysctl
    with Client(agent["address"]) as c, pytest.raises(RpcError) as err:
        c.call("CreateContainer", req)
    assert err.value.code == Code.FAILED_PRECONDITION and message in err.value.message, err.value.message


def test_an_ipc_sysctl_needs_an_ipc_namespace(agent, layer) -> None:  # type: ignore[no-untyped-def]
    req = container_request("s3", agent["shared"], layer, ["true"])
    req["OCI"]["Linux"]["Namespaces"] = [{"Type": t} for t in ("pid", "uts", "mount")]
    req["OCI"]["Linux"]["Sysctl"] = {"kernel.shmmni": "4096"}
    with Client(agent["address"]) as c, pytest.raises(RpcError) as err:
        c.call("CreateContainer", req)
    assert "belongs to the IPC namespace" in err.value.message


@pytest.mark.parametrize("where", ["ephemeral", "local", "layer"])
def test_a_planted_symlink_never_redirects_a_mount(agent, layer, tmp_path, where) -> None:  # type: ignore[no-untyped-def]
    """CopyFile can make symlinks in the shared directory; a storage mount point through one is refused
    instead of mounting (or creating directories) where it points."""
    import base64
    import stat

    outside = tmp_path / "outside"
    outside.mkdir()
    shared = agent["shared"]
    cid = f"sy-{where}"
    req = container_request(cid, shared, layer, ["true"])
    evil = f"{shared}/{cid}-evil"
    with Client(agent["address"]) as c:
        c.call("CopyFile", {"path": evil, "file_mode": stat.S_IFLNK | 0o777,
                            "data": base64.b64encode(str(outside).encode()).decode()})
        assert os.readlink(evil) == str(outside)
        if where == "layer":
            req["storages"][0]["mount_point"] = f"{evil}/layers/0"
        else:
            req["storages"].append({"driver": where, "source": where, "fstype": "tmpfs", "mount_point": f"{evil}/x"})
        with pytest.raises(RpcError) as err:
            c.call("CreateContainer", req)
    assert err.value.code == Code.FAILED_PRECONDITION
    assert "is not a plain directory (a symlink is never followed)" in err.value.message, err.value.message
    assert list(outside.iterdir()) == [] and not os.path.ismount(outside)


def test_a_containers_layers_stack_bottom_first_with_whiteouts(agent, layer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """storages[0] is the bottom layer: busybox, then two layers `cocoon generate` converted from OCI tars (a
    file, a directory made opaque, a whiteout), stacked by the agent as one read-only overlay."""
    import hashlib
    import io
    import tarfile

    from generator import layers as gen
    from generator.model import Blob, Layer

    def oci_layer(members: list[tuple[str, bytes]]) -> Layer:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                t.addfile(info, io.BytesIO(data))
        raw = buf.getvalue()
        blob = Blob("sha256:" + hashlib.sha256(raw).hexdigest(), "application/vnd.oci.image.layer.v1.tar", len(raw))
        return gen.convert(blob, io.BytesIO(raw), tmp_path / "cache")

    middle = oci_layer([("data/keep", b"kept\n"), ("data/gone", b"x"), ("opq/old", b"o"), ("bin/x", b"")])
    top = oci_layer([("data/.wh.gone", b""), ("opq/.wh..wh..opq", b""), ("opq/new", b"n"), ("bin/.wh.x", b"")])
    loops = [attach(gen.layer_path(x, tmp_path / "cache")) for x in (middle, top)]
    try:
        req = container_request("stack", agent["shared"], layer, [
            "sh", "-c", "cat /data/keep; ls /data; ls /opq; test -e /data/gone || echo no gone; test -e /bin/x || "
            "echo no x; test -x /bin/sh && echo busybox below"])
        base = req["storages"][0]
        for i, (x, loop) in enumerate(zip((middle, top), loops, strict=True), start=1):
            req["storages"].append({**base, "source": loop, "mount_point": f"{agent['shared']}/stack/layers/{i}",
                                    "driver_options": [f"cocoon.verity.roothash={x.root_hash}",
                                                       f"cocoon.verity.hashoffset={x.hash_offset}"]})
        with Client(agent["address"]) as c:
            c.call("CreateContainer", req)
            c.call("StartContainer", {"container_id": "stack"})
            out = read_all(c, "ReadStdout", "stack", "stack")
            assert c.call("WaitProcess", {"container_id": "stack", "exec_id": "stack"}).status == 0
            c.call("RemoveContainer", {"container_id": "stack"})
        assert out == b"kept\nkeep\nnew\nno gone\nno x\nbusybox below\n"
    finally:
        for loop in loops:
            detach(loop)


def test_a_container_that_exits_at_once_still_starts(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Its `runtime events` follower ends at once too and may be reaped before pidfd_open: StartContainer must
    not fail on the vanished pid (seen under load in CI: ProcessLookupError from StartContainer)."""
    import queue
    from types import SimpleNamespace

    from agent import containers as containers_mod

    class GoneReaper:
        def __init__(self) -> None:
            self.waited: list[int] = []

        def spawn(self, argv: list[str], stdin: Any, stdout: Any, stderr: Any) -> int:
            return 2**22 + 12345  # above pid_max's default: no such process

        def wait(self, pid: int, timeout: float | None = None) -> int:
            self.waited.append(pid)
            return 0

    def gone(pid: int) -> int:
        raise ProcessLookupError(3, "No such process")

    monkeypatch.setattr("agent.containers.os.pidfd_open", gone)
    reaper = GoneReaper()
    backend = SimpleNamespace(reaper=reaper, _rt=lambda *args: ["true", *args], oom_events=queue.Queue())
    c = SimpleNamespace(cid="quick", oom=None)
    containers_mod.Backend._watch_oom(backend, c)  # type: ignore[arg-type]
    assert c.oom is None and reaper.waited == [2**22 + 12345]
