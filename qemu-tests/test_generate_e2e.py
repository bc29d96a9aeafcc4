"""A pod from Kubernetes YAML, all the way: `cocoon generate` against a real registry on 127.0.0.1, then the
generated initdata and layers in the built image under QEMU, driven with the requests a runtime sends.

One boot: the two-container pod runs from its pinned layers (the top layer's whiteout hides a file of the
bottom one), its probe may be exec'd, and the same pod with one thing changed (an env var, another image's
layers, an extra capability) is refused with a reason naming what changed.
"""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from support import ociimage
from support.registry import running_registry

from agent.protocols import agent_pb2
from generator import images as images_mod
from generator import kube, layers, settings
from generator.model import ImageInfo
from launcher import cri
from launcher.qemu import Image
from launcher.scenario import Session, denied
from launcher.vm import Vm

ROOT = Path(__file__).resolve().parent.parent
BUSYBOX = Path("/usr/bin/busybox")
MAIN_SCRIPT = 'echo "greeting=$GREETING"; cat /etc/greeting; if [ -e /bin/false ]; then echo false-visible; ' \
              'else echo whiteout-ok; fi; id -u'


def busybox_layer() -> dict[str, Any]:
    base: dict[str, Any] = {"bin": ociimage.Dir(), "bin/busybox": ociimage.File(BUSYBOX.read_bytes(), 0o755),
                            "etc": ociimage.Dir(), "tmp": ociimage.Dir(0o1777)}
    for applet in ("sh", "echo", "cat", "sleep", "false", "id", "test", "["):
        base[f"bin/{applet}"] = ociimage.Symlink("busybox")
    return base


def pod_yaml(host: str) -> str:
    return f"""\
apiVersion: v1
kind: Pod
metadata:
  name: gen-e2e
spec:
  containers:
  - name: main
    image: {host}/app:1.0
    command: ["/bin/sh", "-c"]
    args: [{json.dumps(MAIN_SCRIPT)}]
    env:
    - {{name: GREETING, value: from-yaml}}
  - name: side
    image: {host}/app:1.0
    command: ["sleep", "3600"]
    readinessProbe:
      exec:
        command: ["cat", "/etc/greeting"]
"""


def test_generated_pod_runs_and_changed_pods_are_refused(image: Image, tmp_path: Path, timings: list) -> None:  # type: ignore[type-arg]
    t0 = time.monotonic()
    with running_registry() as reg:
        top: dict[str, Any] = {"etc": ociimage.Dir(), "etc/greeting": b"hello from the top layer\n",
                               "bin": ociimage.Dir(), "bin/.wh.false": b""}
        app = ociimage.build_image(tmp_path / "app", [busybox_layer(), top], tag="1.0",
                                   config={"Env": ["PATH=/bin"], "User": "1000:1000"}, compression=["gzip", "zstd"])
        ociimage.push(app, reg.host, "app", "1.0")
        other = ociimage.build_image(tmp_path / "other", [busybox_layer(), {"etc": ociimage.Dir(),
                                                                            "etc/greeting": b"impostor\n"}],
                                     tag="1.0", config={"Env": ["PATH=/bin"], "User": "1000:1000"})
        ociimage.push(other, reg.host, "other", "1.0")
        yaml = tmp_path / "pod.yaml"
        yaml.write_text(pod_yaml(reg.host))
        out, cache = tmp_path / "out", tmp_path / "cache"
        # A platform team's settings: the defaults, plus the host may read the containers' output (kubectl logs).
        defaults = json.loads(json.dumps(settings.Settings.load(None).doc))
        defaults["request_defaults"]["ReadStreamRequest"] = True
        (tmp_path / "settings.json").write_text(json.dumps(defaults))
        run = subprocess.run([sys.executable, "-m", "cocoon", "generate", "--platform", "sim", "--reference-values",
                              str(image.out / "reference-values-sim.json"), "--out", str(out), "--cache", str(cache),
                              "--settings", str(tmp_path / "settings.json"), "--insecure-registry", reg.host,
                              str(yaml)], capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert run.returncode == 0, run.stdout + run.stderr
        sources = images_mod.ImageSources(insecure=frozenset({reg.host}))
        pod = kube.pods([kube.load(yaml)])[0]
        infos: dict[str, ImageInfo] = {}
        for ref in {r for _, r in kube.images(pod)} | {f"{reg.host}/other:1.0"}:
            resolved = images_mod.resolve(ref, sources)
            converted = []
            for blob, diff_id in zip(resolved.layers, resolved.config["rootfs"]["diff_ids"], strict=True):
                cached = layers.cached(blob.digest, cache)
                if cached is None:
                    with resolved.open_blob(blob) as stream:
                        cached = layers.convert(blob, stream, cache, diff_id=diff_id)
                converted.append(cached)
            infos[ref] = ImageInfo(ref, resolved.pinned, resolved.config, tuple(converted))
    timings.append(("generate: registry, images, convert", time.monotonic() - t0))

    annotation = pod.metadata["annotations"][kube.INITDATA_ANNOTATION]
    document = gzip.decompress(base64.b64decode(annotation))
    index = layers.read_index(out / "layers.json")
    other_layers = [lay for lay in infos[f"{reg.host}/other:1.0"].layers if lay.digest not in {x.digest for x in index}]
    disks = [out / "layers" / lay.file for lay in index] + [layers.layer_path(lay, cache) for lay in other_layers]
    devices = {lay.root_hash: f"/dev/disk/by-id/virtio-layer{i}" for i, lay in enumerate([*index, *other_layers])}
    cfg = settings.Settings.load(tmp_path / "settings.json")

    s = Session(image, tmp_path / "vm")
    s.prepare_pod(document, disks)
    with Vm(s.machine("generated")) as vm:
        assert vm.call("Check", timeout=300).status == 1
        state, reason, _ = vm.wait_status(60)
        assert state == "ready", reason
        result, _ = s.attest(vm)
        assert result.ok, result.table()

        t0 = time.monotonic()
        sandbox_id = "e2e0" * 16
        vm.call("CreateSandbox", cri.sandbox_request(pod, cfg, sandbox_id), timeout=120)
        requests = dict(cri.container_requests(pod, infos, cfg, sandbox_id, devices))
        for name in requests:  # pause, main, side: the runtime copies the node's files, then creates
            for copy in cri.shared_files(pod, requests[name], cfg):
                vm.call("CopyFile", copy, timeout=60)
            vm.call("CreateContainer", requests[name], timeout=180)
            vm.call("StartContainer", {"container_id": requests[name].container_id}, timeout=60)
        main = requests["main"].container_id
        output = s.read_stream(vm, "ReadStdout", main, main, timeout=120)
        assert output.decode().splitlines() == ["greeting=from-yaml", "hello from the top layer", "whiteout-ok",
                                                "1000"], output
        assert vm.call("WaitProcess", {"container_id": main, "exec_id": main}, timeout=60).status == 0
        side = requests["side"].container_id
        probe = cri.exec_request(requests["side"], ["cat", "/etc/greeting"], "probe")
        vm.call("ExecProcess", probe, timeout=60)
        assert s.read_stream(vm, "ReadStdout", side, "probe") == b"hello from the top layer\n"
        err = denied(lambda: vm.call("ExecProcess", cri.exec_request(requests["side"], ["sh"], "shell")))
        assert "ExecProcessRequest is blocked by policy" in err.message
        timings.append(("generated pod: sandbox, 3 containers, exec", time.monotonic() - t0))

        def mutated(name: str, edit: Any) -> agent_pb2.CreateContainerRequest:
            body = json_format.MessageToDict(requests[name], preserving_proto_field_name=True)
            body["container_id"] = body["exec_id"] = "x" + body["container_id"][1:]
            for st in body.get("storages", []):
                st["mount_point"] = st["mount_point"].replace(requests[name].container_id, body["container_id"])
            body["OCI"]["Root"]["Path"] = body["OCI"]["Root"]["Path"].replace(requests[name].container_id,
                                                                              body["container_id"])
            edit(body)
            return json_format.ParseDict(body, agent_pb2.CreateContainerRequest())

        def env(body: dict[str, Any]) -> None:
            body["OCI"]["Process"]["Env"] = [e.replace("GREETING=from-yaml", "GREETING=changed")
                                             for e in body["OCI"]["Process"]["Env"]]

        def cap(body: dict[str, Any]) -> None:
            for key in ("Bounding", "Effective", "Permitted"):
                body["OCI"]["Process"]["Capabilities"].setdefault(key, []).append("CAP_SYS_ADMIN")

        other_request = dict(cri.container_requests(pod, {**infos, **{
            r: infos[f"{reg.host}/other:1.0"] for _, r in kube.images(pod)}}, cfg, sandbox_id, devices))["main"]

        def image_swap(body: dict[str, Any]) -> None:
            swapped = json_format.MessageToDict(other_request, preserving_proto_field_name=True)
            body["storages"] = [dict(st, mount_point=st["mount_point"].replace(other_request.container_id,
                                                                                  body["container_id"]))
                                for st in swapped["storages"]]

        for what, edit, field in (("env", env, "env"), ("capability", cap, "capabilit"),
                                  ("image", image_swap, "storage")):
            err = denied(lambda edit=edit: vm.call("CreateContainer", mutated("main", edit), timeout=120))
            assert "CreateContainerRequest is blocked by policy" in err.message, (what, err.message)
            assert field in err.message.lower(), (what, err.message)
        assert "Traceback" not in vm.console()
