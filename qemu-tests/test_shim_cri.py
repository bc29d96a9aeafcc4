"""kubelet's calls, a real containerd, cocoon's shim, a VM: a pod from Kubernetes YAML runs the way a node
runs it. `cocoon generate` pins the image and writes the pod's initdata; containerd 1.6 (in a network
namespace of the test's own, CNI bridge + host-local) gets RunPodSandbox with the ``cocoon`` handler and the
pod's annotations, then CreateContainer, StartContainer, ContainerStatus and ExecSync, as kubelet sends them
(tests/support/cri.py). The shim boots one VM for the pod, wires CNI's namespace to it through a tap, and
the agent checks every request against the generated policy: the probe's exec is allowed, a shell is not,
and CRI's error carries the policy's reason. StopPodSandbox and RemovePodSandbox leave nothing on the host.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from support import containerd, cri, ociimage
from test_shim_ctr import busybox_layer, host_leftovers, qemu_pids

from generator import kube, settings
from generator.model import PodTemplate
from launcher.qemu import Image
from shim.protocols import cri_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
POD = "cri-e2e"
MAIN = "cat /etc/greeting /etc/cfg/motd; echo scratch-ok > /scratch/f; cat /scratch/f; while :; do sleep 3600; done"
POD_YAML = f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  motd: "from a configmap\\n"
---
apiVersion: v1
kind: Pod
metadata:
  name: {POD}
spec:
  automountServiceAccountToken: false
  containers:
  - name: main
    image: localhost/app:1.0
    command: ["/bin/sh", "-c"]
    args: ["{MAIN}"]
    readinessProbe:
      exec:
        command: ["cat", "/etc/greeting"]
    volumeMounts:
    - {{name: cfg, mountPath: /etc/cfg, readOnly: true}}
    - {{name: scratch, mountPath: /scratch}}
  volumes:
  - name: cfg
    configMap: {{name: settings}}
  - name: scratch
    emptyDir: {{}}
"""


def generated_pod(tmp_path: Path, image: Image, app: ociimage.BuiltImage) -> PodTemplate:
    """`cocoon generate` as a platform team runs it; the pod document it wrote back."""
    (tmp_path / "pod.yaml").write_text(POD_YAML)
    # A platform team's settings for Debian's containerd 1.6: its runtime-spec version, and the sandbox's
    # resolv.conf bind as 1.6 writes it (1.7 adds nosuid,nodev,noexec); the host may read the containers'
    # output (logs, ExecSync's stdout); the rest is the defaults.
    doc = json.loads(json.dumps(settings.Settings.load(None).doc))
    doc["oci_version"] = "1.0.2-dev"
    doc["request_defaults"]["ReadStreamRequest"] = True
    for m in doc["default_mounts"]["pause"]:
        if m["destination"] == "/etc/resolv.conf":
            m["options"] = ["rbind", "ro"]
    (tmp_path / "settings.json").write_text(json.dumps(doc))
    run = subprocess.run([sys.executable, "-m", "cocoon", "generate", "--platform", "sim", "--reference-values",
                          str(image.out / "reference-values-sim.json"), "--out", str(tmp_path / "gen"),
                          "--cache", str(tmp_path / "cache"), "--image", f"localhost/app:1.0=oci:{app.layout}:1.0",
                          "--yaml-out", str(tmp_path / "yaml"), "--settings", str(tmp_path / "settings.json"),
                          str(tmp_path / "pod.yaml")],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    return kube.pods([kube.load(tmp_path / "yaml" / "pod.yaml")])[0]


def ping(netns: str, address: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns, "/usr/bin/busybox", "ping", "-c", "1", "-W", "5", address],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(containerd.available() is not None, reason=str(containerd.available()))
def test_cri_runs_a_generated_pod_in_a_vm_and_the_policy_answers(image: Image, tmp_path: Path,
                                                                  timings: list) -> None:  # type: ignore[type-arg]
    app = ociimage.build_image(tmp_path / "app", [busybox_layer(), {"etc": ociimage.Dir(),
                                                                    "etc/greeting": b"hello over CRI\n"}],
                               tag="1.0", config={"Env": ["PATH=/bin"]})
    generated = generated_pod(tmp_path, image, app)
    annotations = {str(k): str(v) for k, v in generated.metadata["annotations"].items()}
    assert kube.INITDATA_ANNOTATION in annotations and generated.spec["runtimeClassName"]
    spec = generated.spec["containers"][0]
    pinned = str(spec["image"])
    assert "@sha256:" in pinned, pinned

    base = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
    run_dir = base / "run"
    env = {"COCOON_SHIM_IMAGE": str(image.out), "COCOON_SHIM_CACHE": str(tmp_path / "cache"),
           "COCOON_SHIM_RUN": str(run_dir), "PYTHONPATH": str(ROOT)}
    before = host_leftovers(base, run_dir)
    with containerd.running(base, path=[str(containerd.shim_bin(tmp_path / "bin"))], env=env, network=True) as c:
        assert c.netns is not None
        c.import_image(cri.pause_image(tmp_path / "pause"), containerd.PAUSE_IMAGE,
                       namespace=containerd.CRI_NAMESPACE)
        c.import_image(app, "localhost/app:1.0", namespace=containerd.CRI_NAMESPACE)
        # as a pull by the pinned reference records it: by that name alone (CRI resolves a reference by name,
        # and names the container's image in io.kubernetes.cri.image-name by its first, which the policy pins)
        c.ctr("images", "tag", "localhost/app:1.0", pinned, namespace=containerd.CRI_NAMESPACE)
        c.ctr("images", "rm", "localhost/app:1.0", namespace=containerd.CRI_NAMESPACE)
        with cri.Cri(c.cri_address, timeout=120) as api:
            api.wait_ready()
            assert api.image_status(pinned) is not None, pinned
            pod = cri.pod_config(POD, annotations=annotations, log_directory=tmp_path / "logs",
                                 dns=cri.cluster_dns("default"))
            t0 = time.monotonic()
            try:
                pod_id = api.run_pod_sandbox(pod, containerd.HANDLER, timeout=600)
            except cri.CriError as exc:
                raise AssertionError(f"{exc}\n{c.log_tail(8000)}") from None
            timings.append(("shim: CRI RunPodSandbox (boot)", time.monotonic() - t0))
            status = api.pod_sandbox_status(pod_id).status
            assert status.state == pb.SANDBOX_READY and status.network.ip.startswith("10.88.0."), status

            # the node's side of the pod's volumes and files, as kubelet lays them out and mounts them
            pod_dir = tmp_path / "kubelet" / "pods" / pod.metadata.uid
            mounts = [cri.host_mount("/etc/cfg", cri.config_map_volume(pod_dir, "cfg", {"motd": "from a configmap\n"}),
                                     readonly=True),
                      cri.host_mount("/scratch", cri.empty_dir_volume(pod_dir, "scratch")),
                      cri.host_mount("/etc/hosts", cri.etc_hosts(pod_dir, POD, status.network.ip)),
                      cri.host_mount("/dev/termination-log", cri.termination_log(pod_dir, "main"))]
            config = cri.container_config("main", pinned, pod=pod, command=list(spec["command"]),
                                          args=list(spec["args"]), mounts=mounts)
            try:
                cid = api.create_container(pod_id, config, pod, timeout=600)
                api.start_container(cid)
            except cri.CriError as exc:
                raise AssertionError(f"{exc}\n{c.log_tail(8000)}") from None
            running = api.wait_container(cid, [pb.CONTAINER_RUNNING, pb.CONTAINER_EXITED])
            assert running.state == pb.CONTAINER_RUNNING, running

            probe = api.exec_sync(cid, ["cat", "/etc/greeting"])
            assert (probe.exit_code, probe.stdout) == (0, b"hello over CRI\n"), probe
            with pytest.raises(cri.CriError) as shell:
                api.exec_sync(cid, ["sh", "-c", "cat /proc/self/environ"])
            assert "ExecProcessRequest is blocked by policy" in shell.value.details, shell.value

            assert len(qemu_pids(str(run_dir))) == 1  # one VM for the pod, pause and main
            # a container the policy does not describe (an env var more): StartContainer fails with why
            changed = cri.container_config("main", pinned, pod=pod, command=list(spec["command"]),
                                           args=list(spec["args"]), env={"EXTRA": "1"}, attempt=1, mounts=mounts)
            other = api.create_container(pod_id, changed, pod)
            with pytest.raises(cri.CriError) as refused:
                api.start_container(other)
            assert "CreateContainerRequest is blocked by policy" in refused.value.details, refused.value
            assert "EXTRA=1" in refused.value.details, refused.value
            api.remove_container(other)

            got = ping(c.netns, status.network.ip)
            assert got.returncode == 0, (got.stdout, got.stderr)
            log = tmp_path / "logs" / "main" / "0.log"
            lines = [line.split(" ", 3)[-1] for line in log.read_text().splitlines()]  # CRI's "<ts> stdout F <line>"
            assert lines[:3] == ["hello over CRI", "from a configmap", "scratch-ok"], log.read_text()

            api.stop_pod_sandbox(pod_id)
            assert api.container_status(cid).state == pb.CONTAINER_EXITED
            api.remove_pod_sandbox(pod_id)
            assert api.list_pod_sandboxes() == []

            # bad input: each pod is refused by RunPodSandbox with the reason, and leaves nothing
            bad = {"no initdata": ({}, "has no io.katacontainers.config.hypervisor.cc_init_data annotation"),
                   "not base64": ({kube.INITDATA_ANNOTATION: "%%%"}, "is not base64"),
                   "not gzip": ({kube.INITDATA_ANNOTATION: "aGVsbG8="}, "is not gzip'd initdata")}
            for n, (given, why) in enumerate(bad.values()):
                with pytest.raises(cri.CriError) as no_pod:
                    api.run_pod_sandbox(cri.pod_config(f"bad-{n}", annotations=given), containerd.HANDLER,
                                        timeout=600)
                assert why in no_pod.value.details, no_pod.value
            for sandbox in api.list_pod_sandboxes():  # what kubelet does with a pod that failed to start
                api.stop_pod_sandbox(sandbox.id)
                api.remove_pod_sandbox(sandbox.id)
            deadline = time.monotonic() + 30
            while host_leftovers(base, run_dir) != before and time.monotonic() < deadline:
                time.sleep(0.2)
            assert host_leftovers(base, run_dir) == before
    assert containerd.mounts_below(base) == []
