"""containerd's own client against cocoon's shim: Debian's containerd 1.6 started by the test with the
runtime ``io.containerd.cocoon.v2``, an OCI archive imported, and ``ctr run`` of it printing the container's
output and returning its exit code, from a VM the shim booted (sim TEE, TCG) with the image's layers
converted from containerd's content store. Afterwards no QEMU process and no shim file is left.
"""

from __future__ import annotations

import base64
import gzip
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from support import containerd, ociimage

from agent.initdata import render_document
from agent.protocols import agent_pb2
from launcher.qemu import Image

ROOT = Path(__file__).resolve().parent.parent
BUSYBOX = Path("/usr/bin/busybox")
# every agent request allowed: this test is about the engine, not the policy (test_generate_e2e is)
ALLOW_ALL = "package agent_policy\n" + "".join(
    f"default {m.input_type.name} := true\n"
    for m in sorted(agent_pb2.DESCRIPTOR.services_by_name["AgentService"].methods, key=lambda m: m.name))


def busybox_layer() -> dict[str, Any]:
    base: dict[str, Any] = {"bin": ociimage.Dir(), "bin/busybox": ociimage.File(BUSYBOX.read_bytes(), 0o755),
                            "etc": ociimage.Dir(), "tmp": ociimage.Dir(0o1777)}
    for applet in ("sh", "echo", "cat", "sleep", "false", "id", "test", "["):
        base[f"bin/{applet}"] = ociimage.Symlink("busybox")
    return base


def qemu_pids(marker: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"qemu-system" in cmd and marker.encode() in cmd:
                out.append(int(pid))
    return out


def shim_pids(marker: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"shim.main" in cmd and b"serve" in cmd and any(marker.encode() in a for a in cmd):
                out.append(int(pid))
    return out


@pytest.mark.skipif(containerd.available() is not None, reason=str(containerd.available()))
def test_ctr_run_prints_output_and_returns_exit_code(image: Image, tmp_path: Path, timings: list) -> None:  # type: ignore[type-arg]
    import time

    app = ociimage.build_image(tmp_path / "app", [busybox_layer(), {"etc": ociimage.Dir(),
                                                                    "etc/greeting": b"hello from a layer\n"}],
                               tag="1.0", config={"Env": ["PATH=/bin"], "Cmd": ["sh"]})
    base = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
    run_dir = base / "run"
    env = {"COCOON_SHIM_IMAGE": str(image.out), "COCOON_SHIM_CACHE": str(tmp_path / "cache"),
           "COCOON_SHIM_RUN": str(run_dir), "PYTHONPATH": str(ROOT)}
    initdata = base64.b64encode(gzip.compress(render_document({"policy.rego": ALLOW_ALL}))).decode()
    with containerd.running(base, path=[str(containerd.shim_bin(tmp_path / "bin"))], env=env) as c:
        name = c.import_image(app, "localhost/app:1.0")
        t0 = time.monotonic()
        run = c.ctr("run", "--runtime", containerd.RUNTIME, "--fifo-dir", str(c.fifo_dir), "--annotation",
                    f"io.katacontainers.config.hypervisor.cc_init_data={initdata}", name, "c1",
                    "sh", "-c", "cat /etc/greeting; echo out-$((6*7)); echo err >&2; exit 3",
                    timeout=600, check=False)
        timings.append(("shim: ctr run (boot, convert, run)", time.monotonic() - t0))
        assert run.returncode == 3, (run.stdout, run.stderr, c.log_tail(8000))
        assert run.stdout.decode().splitlines() == ["hello from a layer", "out-42"], (run.stdout, run.stderr)
        assert b"err" in run.stderr
        c.ctr("containers", "delete", "c1")
        deadline = time.monotonic() + 30
        while qemu_pids(str(run_dir)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert qemu_pids(str(run_dir)) == []
        while shim_pids(str(run_dir)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert shim_pids(str(run_dir)) == []  # containerd's Shutdown after the last Delete ends the shim
        assert not run_dir.exists() or not any(p for p in run_dir.iterdir() if p.is_dir()), list(run_dir.iterdir())


@pytest.mark.skipif(containerd.available() is not None, reason=str(containerd.available()))
def test_ctr_exec_ps_kill_delete_leave_nothing(image: Image, tmp_path: Path, timings: list) -> None:  # type: ignore[type-arg]
    """A detached task: `ctr task exec` runs in its VM with its own output and exit code, `ps` lists it,
    `kill` ends it with the signal's code, and `delete` leaves no QEMU process and no shim file; every task
    event the shim published reached containerd (its log has no publish failure)."""
    import time

    app = ociimage.build_image(tmp_path / "app", [busybox_layer()], tag="1.0",
                               config={"Env": ["PATH=/bin"], "Cmd": ["sh"]})
    base = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
    run_dir = base / "run"
    env = {"COCOON_SHIM_IMAGE": str(image.out), "COCOON_SHIM_CACHE": str(tmp_path / "cache"),
           "COCOON_SHIM_RUN": str(run_dir), "PYTHONPATH": str(ROOT)}
    initdata = base64.b64encode(gzip.compress(render_document({"policy.rego": ALLOW_ALL}))).decode()
    with containerd.running(base, path=[str(containerd.shim_bin(tmp_path / "bin"))], env=env) as c:
        name = c.import_image(app, "localhost/app:1.0")
        t0 = time.monotonic()
        c.ctr("run", "-d", "--runtime", containerd.RUNTIME, "--fifo-dir", str(c.fifo_dir), "--annotation",
              f"io.katacontainers.config.hypervisor.cc_init_data={initdata}", name, "c2", "sleep", "600",
              timeout=600)
        timings.append(("shim: ctr run -d (boot, convert)", time.monotonic() - t0))
        assert len(qemu_pids(str(run_dir))) == 1
        tasks = c.ctr("task", "ls").stdout.decode()
        assert "c2" in tasks and "RUNNING" in tasks, tasks
        run = c.ctr("task", "exec", "--exec-id", "e1", "--fifo-dir", str(c.fifo_dir), "c2",
                    "sh", "-c", "echo exec-out; exit 5", check=False)
        assert (run.returncode, run.stdout) == (5, b"exec-out\n"), (run, c.log_tail(8000))
        ps = c.ctr("task", "ps", "c2").stdout.decode()
        assert ps.split("\n", 1)[1].strip(), ps
        c.ctr("task", "kill", "-s", "SIGKILL", "c2")
        deadline = time.monotonic() + 60
        while "STOPPED" not in c.ctr("task", "ls").stdout.decode():
            assert time.monotonic() < deadline, c.ctr("task", "ls").stdout
            time.sleep(0.2)
        deleted = c.ctr("task", "delete", "c2", check=False)
        assert b"exit code 137" in deleted.stderr, deleted  # ctr reports the exit the shim returned
        c.ctr("containers", "delete", "c2")
        deadline = time.monotonic() + 30
        while qemu_pids(str(run_dir)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert qemu_pids(str(run_dir)) == []
        while shim_pids(str(run_dir)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert shim_pids(str(run_dir)) == []
        assert not run_dir.exists() or not any(p.is_dir() for p in run_dir.iterdir()), list(run_dir.iterdir())
        assert "publish" not in c.log.read_text(), c.log_tail(8000)


@pytest.mark.skipif(containerd.available() is not None, reason=str(containerd.available()))
def test_pod_without_initdata_is_refused_with_the_agents_reason(image: Image, tmp_path: Path) -> None:
    """No cc_init_data annotation: the VM boots without an initdata disk, its agent comes up deny-all, and
    `ctr run` fails with that reason; the VM is gone afterwards. The shim's log reaches containerd's."""
    app = ociimage.build_image(tmp_path / "app", [busybox_layer()], tag="1.0", config={"Env": ["PATH=/bin"]})
    base = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
    run_dir = base / "run"
    env = {"COCOON_SHIM_IMAGE": str(image.out), "COCOON_SHIM_CACHE": str(tmp_path / "cache"),
           "COCOON_SHIM_RUN": str(run_dir), "PYTHONPATH": str(ROOT)}
    with containerd.running(base, path=[str(containerd.shim_bin(tmp_path / "bin"))], env=env) as c:
        name = c.import_image(app, "localhost/app:1.0")
        run = c.ctr("run", "--runtime", containerd.RUNTIME, "--fifo-dir", str(c.fifo_dir), name, "c3", "true",
                    timeout=600, check=False)
        err = run.stderr.decode()
        assert run.returncode != 0
        assert "no io.katacontainers.config.hypervisor.cc_init_data annotation" in err, (err, c.log_tail(8000))
        assert "deny-all" in err, err
        c.ctr("containers", "delete", "c3")
        assert qemu_pids(str(run_dir)) == []
        assert "cocoon-shim" in c.log.read_text(), c.log_tail(8000)


@pytest.mark.skipif(containerd.available() is not None, reason=str(containerd.available()))
def test_vm_killed_under_a_task_and_shim_killed_are_cleaned_up(image: Image, tmp_path: Path) -> None:
    """Two pods. Pod A's QEMU is killed under its running task: containerd sees the task
    exit (255, the shim logs why). Pod B's shim is killed with -9: containerd's cleanup runs the shim's
    `delete`, which kills the VM it left. Nothing of either stays."""
    import signal
    import time

    app = ociimage.build_image(tmp_path / "app", [busybox_layer()], tag="1.0", config={"Env": ["PATH=/bin"]})
    base = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
    run_dir = base / "run"
    env = {"COCOON_SHIM_IMAGE": str(image.out), "COCOON_SHIM_CACHE": str(tmp_path / "cache"),
           "COCOON_SHIM_RUN": str(run_dir), "PYTHONPATH": str(ROOT)}
    initdata = base64.b64encode(gzip.compress(render_document({"policy.rego": ALLOW_ALL}))).decode()
    with containerd.running(base, path=[str(containerd.shim_bin(tmp_path / "bin"))], env=env) as c:
        name = c.import_image(app, "localhost/app:1.0")
        c.ctr("images", "ls")

        def run(cid: str) -> None:
            c.ctr("run", "-d", "--runtime", containerd.RUNTIME, "--fifo-dir", str(c.fifo_dir), "--annotation",
                  f"io.katacontainers.config.hypervisor.cc_init_data={initdata}", name, cid, "sleep", "600",
                  timeout=600)

        run("a")
        run("b")
        assert len(qemu_pids(str(run_dir))) == 2, c.ctr("task", "ls").stdout
        qemu_a = int(c.ctr("task", "ls").stdout.decode().split("\na ", 1)[1].split()[0])
        os.kill(qemu_a, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            line = next(x for x in c.ctr("task", "ls").stdout.decode().splitlines() if x.startswith("a "))
            if "STOPPED" in line:
                break
            assert time.monotonic() < deadline, line
            time.sleep(0.2)
        deleted = c.ctr("task", "delete", "a", check=False)
        assert b"exit code 255" in deleted.stderr, deleted  # the VM went away: 255, the reason in the shim's log
        assert "WaitProcess a/a" in c.log.read_text(), c.log_tail()
        c.ctr("containers", "delete", "a")

        shims = shim_pids(str(run_dir))
        assert len(shims) == 1, shims
        os.kill(shims[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while qemu_pids(str(run_dir)):
            assert time.monotonic() < deadline, c.log_tail()
            time.sleep(0.2)
        c.ctr("task", "delete", "b", check=False)
        c.ctr("containers", "delete", "b")
        assert qemu_pids(str(run_dir)) == [] and shim_pids(str(run_dir)) == []
        assert not run_dir.exists() or not any(p.is_dir() for p in run_dir.iterdir()), list(run_dir.iterdir())


@pytest.mark.skipif(containerd.available() is not None, reason=str(containerd.available()))
def test_a_container_joins_its_pods_sandbox(image: Image, tmp_path: Path) -> None:
    """Kata's grouping, driven through ctr with the annotations containerd's CRI plugin sets: a sandbox
    container boots the pod's VM; a container naming it in ``io.kubernetes.cri.sandbox-id`` gets the same shim
    (start prints the running shim's address) and runs in the same VM, from an image with a layer the VM
    did not boot with (hotplugged over QMP, as Kata's runtime adds block devices). Deleting it leaves the
    pod running; deleting the sandbox stops the VM and the shim."""
    import time

    app = ociimage.build_image(tmp_path / "app", [busybox_layer()], tag="1.0", config={"Env": ["PATH=/bin"]})
    more = ociimage.build_image(tmp_path / "more", [busybox_layer(), {"etc": ociimage.Dir(),
                                                                      "etc/second": b"from a hotplugged layer\n"}],
                                tag="1.0", config={"Env": ["PATH=/bin"]})
    base = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
    run_dir = base / "run"
    env = {"COCOON_SHIM_IMAGE": str(image.out), "COCOON_SHIM_CACHE": str(tmp_path / "cache"),
           "COCOON_SHIM_RUN": str(run_dir), "PYTHONPATH": str(ROOT)}
    initdata = base64.b64encode(gzip.compress(render_document({"policy.rego": ALLOW_ALL}))).decode()
    with containerd.running(base, path=[str(containerd.shim_bin(tmp_path / "bin"))], env=env) as c:
        name = c.import_image(app, "localhost/app:1.0")
        common = ["--runtime", containerd.RUNTIME, "--fifo-dir", str(c.fifo_dir),
                  "--annotation", "io.kubernetes.cri.sandbox-id=pod1"]
        c.ctr("run", "-d", *common, "--annotation", "io.kubernetes.cri.container-type=sandbox", "--annotation",
              f"io.katacontainers.config.hypervisor.cc_init_data={initdata}", name, "pod1", "sleep", "600",
              timeout=600)
        run = c.ctr("run", *common, "--annotation", "io.kubernetes.cri.container-type=container", name, "app1",
                    "sh", "-c", "echo in-the-pod; exit 4", timeout=300, check=False)
        assert (run.returncode, run.stdout) == (4, b"in-the-pod\n"), (run, c.log_tail(6000))
        assert len(qemu_pids(str(run_dir))) == 1 and len(shim_pids(str(run_dir))) == 1
        c.ctr("containers", "delete", "app1")
        other = c.import_image(more, "localhost/more:1.0")
        run = c.ctr("run", *common, "--annotation", "io.kubernetes.cri.container-type=container", other, "app2",
                    "cat", "/etc/second", timeout=300, check=False)
        assert (run.returncode, run.stdout) == (0, b"from a hotplugged layer\n"), (run, c.log_tail(6000))
        assert len(qemu_pids(str(run_dir))) == 1
        c.ctr("containers", "delete", "app2")
        assert len(qemu_pids(str(run_dir))) == 1  # the pod lives on
        c.ctr("task", "kill", "-s", "SIGKILL", "pod1")
        deadline = time.monotonic() + 60
        while "STOPPED" not in c.ctr("task", "ls").stdout.decode():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        c.ctr("task", "delete", "pod1")
        c.ctr("containers", "delete", "pod1")
        while (qemu_pids(str(run_dir)) or shim_pids(str(run_dir))) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert qemu_pids(str(run_dir)) == [] and shim_pids(str(run_dir)) == []


def host_leftovers(base: Path, run_dir: Path) -> dict[str, object]:
    """What a pod could leave on the host: QEMU and shim processes, mounts below the test's directory,
    loop devices, tap devices, the shim's work directories."""
    import subprocess

    loops = subprocess.run(["losetup", "-n", "-O", "NAME"], capture_output=True, text=True).stdout.split()
    taps = [name for name in os.listdir("/sys/class/net") if name.startswith("tap")]
    work = sorted(p.name for p in run_dir.iterdir() if p.is_dir()) if run_dir.exists() else []
    return {"qemu": qemu_pids(str(run_dir)), "shims": shim_pids(str(run_dir)),
            "mounts": containerd.mounts_below(base), "loops": loops, "taps": taps, "work": work}


@pytest.mark.skipif(containerd.available() is not None, reason=str(containerd.available()))
def test_twenty_pods_one_after_another_leave_nothing_behind(image: Image, tmp_path: Path,
                                                           timings: list) -> None:  # type: ignore[type-arg]
    """20 `ctr run --rm` pods in a row, each its own VM and shim: afterwards the host is as it was before
    the first (no QEMU, shim, mount, loop device, tap or work directory) and containerd holds no more file
    descriptors than after the first pod (a leak of one per pod would show as 19)."""
    import time

    app = ociimage.build_image(tmp_path / "app", [busybox_layer()], tag="1.0", config={"Env": ["PATH=/bin"]})
    base = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
    run_dir = base / "run"
    env = {"COCOON_SHIM_IMAGE": str(image.out), "COCOON_SHIM_CACHE": str(tmp_path / "cache"),
           "COCOON_SHIM_RUN": str(run_dir), "PYTHONPATH": str(ROOT)}
    initdata = base64.b64encode(gzip.compress(render_document({"policy.rego": ALLOW_ALL}))).decode()
    before = host_leftovers(base, run_dir)
    with containerd.running(base, path=[str(containerd.shim_bin(tmp_path / "bin"))], env=env) as c:
        name = c.import_image(app, "localhost/app:1.0")
        assert c.proc is not None
        fds: list[int] = []
        t0 = time.monotonic()
        for i in range(20):
            run = c.ctr("run", "--rm", "--runtime", containerd.RUNTIME, "--fifo-dir", str(c.fifo_dir),
                        "--annotation", f"io.katacontainers.config.hypervisor.cc_init_data={initdata}", name,
                        f"p{i}", "echo", f"pod-{i}", timeout=600, check=False)
            assert (run.returncode, run.stdout) == (0, f"pod-{i}\n".encode()), (i, run, c.log_tail(6000))
            deadline = time.monotonic() + 30
            while (qemu_pids(str(run_dir)) or shim_pids(str(run_dir))) and time.monotonic() < deadline:
                time.sleep(0.1)
            fds.append(len(os.listdir(f"/proc/{c.proc.pid}/fd")))
        timings.append(("shim: 20 pods one after another", time.monotonic() - t0))
        assert c.ctr("containers", "ls", "-q").stdout.strip() == b""
        after = host_leftovers(base, run_dir)
        assert after == before, (before, after)
        assert fds[-1] <= fds[0] + 2, fds
