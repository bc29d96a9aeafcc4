"""`cocoon generate` end to end on the host: a real registry on 127.0.0.1, images built here, YAML in,
annotated YAML, initdata, layers and manifest out; re-runs change nothing; bad input changes nothing."""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ociimage
from support.registry import Registry, running_registry

from agent import initdata
from generator import kube

ROOT = Path(__file__).resolve().parent.parent

BUSYBOX = Path("/usr/bin/busybox")
REFS = {"snp": {"measurements": [{"vcpus": 2, "vcpu_type": "EPYC-Milan", "measurement": "ab" * 48}]}}


def app_layers() -> list[dict[str, Any]]:
    base: dict[str, Any] = {"bin": ociimage.Dir(), "bin/busybox": ociimage.File(BUSYBOX.read_bytes(), 0o755),
                            "etc": ociimage.Dir(), "tmp": ociimage.Dir(0o1777)}
    for applet in ("sh", "echo", "cat", "sleep", "false", "test", "env"):
        base[f"bin/{applet}"] = ociimage.Symlink("busybox")
    top: dict[str, Any] = {"etc": ociimage.Dir(), "etc/greeting": b"hello from the top layer\n",
                           "bin": ociimage.Dir(), "bin/.wh.false": b""}
    return [base, top]


APP_CONFIG = {"Env": ["PATH=/bin", "FROM_IMAGE=yes"], "Entrypoint": ["/bin/sh", "-c"],
              "Cmd": ["cat /etc/greeting"], "WorkingDir": "/tmp", "User": "1000:1000"}


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    missing = [t for t in ("docker-registry", "skopeo", "mkfs.erofs") if shutil.which(t) is None]
    if os.geteuid() != 0:
        missing.append("root (layer conversion writes owners and whiteout devices)")
    if missing:  # `make setup` installs them: in CI their absence is a failure, elsewhere a skip
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"needs {', '.join(missing)} (make setup)")
    with running_registry() as reg:
        yield reg


@pytest.fixture(scope="module")
def images(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("images")
    app = ociimage.build_image(work / "app", app_layers(), tag="1.0", config=APP_CONFIG,
                               compression=["gzip", "zstd"])
    ociimage.push(app, registry.host, "app", "1.0")
    tool = ociimage.build_image(work / "tool", [app_layers()[0]], tag="2", config={"Env": ["PATH=/bin"],
                                                                                  "Cmd": ["sleep", "3600"]},
                                compression="none")
    return {"app": app, "tool": tool, "tool_dir": work / "tool"}


def pod_yaml(host: str, extra: str = "") -> str:
    return f"""\
# a two-container pod and a deployment sharing its image
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: main
    image: {host}/app:1.0
    env:
    - name: GREETING
      value: hi
    - name: MODE
      valueFrom:
        configMapKeyRef: {{name: settings, key: mode}}
  - name: side
    image: local/tool:2
    readinessProbe:
      exec:
        command: [cat, /etc/hostname]
{extra}---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: workers
spec:
  replicas: 2
  template:
    spec:
      containers:
      - name: worker
        image: {host}/app:1.0
        args: ["echo working"]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data: {{mode: fast}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec: {{ports: [{{port: 80}}]}}
"""


def generate(work: Path, registry: Registry, images: dict[str, Any], *paths: str, cache: Path | None = None,
             expect: int = 0) -> subprocess.CompletedProcess[str]:
    refs = work / "refs.json"
    refs.write_text(json.dumps(REFS))
    argv = [sys.executable, "-m", "cocoon", "generate", "--platform", "sim", "--reference-values", str(refs),
            "--out", str(work / "out"), "--cache", str(cache or work / "cache"),
            "--insecure-registry", registry.host, "--image", f"local/tool:2=oci:{images['tool_dir']}:2",
            "--json", *paths]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == expect, run.stdout + run.stderr
    return run


def outputs(work: Path, yaml: Path) -> dict[str, bytes]:
    out = {"yaml": yaml.read_bytes()}
    for p in sorted((work / "out").rglob("*")):
        if p.is_file():
            out[p.relative_to(work).as_posix()] = p.read_bytes()
    return out


def decode(annotation: str) -> initdata.Initdata:
    return initdata.parse_document(gzip.decompress(base64.b64decode(annotation)), "annotation")


def test_generate_pins_converts_annotates_and_reruns_to_the_same_bytes(
        registry: Registry, images: dict[str, Any], tmp_path: Path) -> None:
    yaml = tmp_path / "pod.yaml"
    yaml.write_text(pod_yaml(registry.host))
    first = json.loads(generate(tmp_path, registry, images, str(yaml)).stdout)
    assert len(first["pods"]) == 2 and first["converted"] == 3  # app's two layers, tool's one (shared by digest)
    docs = kube.pods([kube.load(yaml)])
    web = docs[0]
    assert web.spec["runtimeClassName"] == "cocoon"
    app_pinned = f"{registry.host}/app@{images['app'].top_digest}"
    assert [img for _, img in kube.images(web)] == [app_pinned, f"local/tool@{images['tool'].top_digest}"]
    assert "# a two-container pod" in yaml.read_text()  # comments survive

    doc = decode(web.metadata["annotations"][kube.INITDATA_ANNOTATION])
    assert doc.policy is not None and "package agent_policy" in doc.policy
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert set(manifest["Policies"]) == {p["initdata_digest"] for p in first["pods"]}
    assert doc.digest.hex() in manifest["Policies"]
    assert manifest["Policies"][doc.digest.hex()]["WorkloadSecretID"] == "v1/Pod/default/web"
    assert manifest["ReferenceValues"]["snp"][0]["TrustedMeasurement"] == "ab" * 48

    index = json.loads((tmp_path / "out" / "layers.json").read_text())
    files = {p.name for p in (tmp_path / "out" / "layers").iterdir()}
    assert {entry["file"] for entry in index["layers"]} == files and len(files) == 3
    for entry in index["layers"]:  # the web pod runs both images: every converted layer is pinned in its policy
        assert f"cocoon.verity.roothash={entry['root_hash']}" in doc.policy

    before = outputs(tmp_path, yaml)
    again = json.loads(generate(tmp_path, registry, images, str(yaml)).stdout)
    assert again["converted"] == 0
    assert outputs(tmp_path, yaml) == before  # re-running on its own output changes nothing

    # Another machine: a fresh cache and workspace from the original YAML give the same bytes.
    other = tmp_path / "other"
    other.mkdir()
    (other / "pod.yaml").write_text(pod_yaml(registry.host))
    generate(other, registry, images, str(other / "pod.yaml"))
    assert outputs(other, other / "pod.yaml") == before


@pytest.mark.parametrize(("extra", "message"), [
    ("    securityContext: {privileged: true}\n", "spec.containers[1].securityContext.privileged"),
    ("    volumeMounts:\n    - {name: host, mountPath: /host}\n"
     "  volumes:\n  - name: host\n    hostPath: {path: /etc}\n", "hostPath"),
])
def test_refused_pods_leave_every_file_as_it_was(registry: Registry, images: dict[str, Any], tmp_path: Path,
                                                 extra: str, message: str) -> None:
    yaml = tmp_path / "pod.yaml"
    yaml.write_text(pod_yaml(registry.host, extra))
    before = yaml.read_bytes()
    run = generate(tmp_path, registry, images, str(yaml), expect=2)
    assert run.stdout == "" and message in run.stderr, run.stderr
    assert run.stderr.count("error:") == 1 and str(yaml) in run.stderr
    assert yaml.read_bytes() == before and not (tmp_path / "out" / "manifest.json").exists()


def test_missing_image_names_the_document_and_field(registry: Registry, images: dict[str, Any],
                                                    tmp_path: Path) -> None:
    yaml = tmp_path / "pod.yaml"
    yaml.write_text(pod_yaml(registry.host).replace("/app:1.0", "/nothere:1.0", 1))
    run = generate(tmp_path, registry, images, str(yaml), expect=2)
    assert "document 0 (Pod default/web): spec.containers[0].image" in run.stderr, run.stderr
    assert "nothere" in run.stderr
    assert yaml.read_text() == pod_yaml(registry.host).replace("/app:1.0", "/nothere:1.0", 1)


def test_policy_show_reads_the_annotated_yaml(registry: Registry, images: dict[str, Any], tmp_path: Path) -> None:
    yaml = tmp_path / "pod.yaml"
    yaml.write_text(pod_yaml(registry.host))
    generate(tmp_path, registry, images, str(yaml))
    run = subprocess.run([sys.executable, "-m", "cocoon", "policy", "show", str(yaml)], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    text = run.stdout
    assert "container main" in text and "container side" in text and "container worker" in text
    assert "GREETING=hi" in text and "MODE=fast" in text
    assert "cat /etc/hostname" in text  # the probe the host may exec
    shown = json.loads(subprocess.run([sys.executable, "-m", "cocoon", "policy", "show", "--json", str(yaml)],
                                      capture_output=True, text=True, timeout=120, cwd=ROOT, check=True).stdout)
    main = next(c for c in shown[0]["containers"] if c["name"] == "main")
    index = {e["digest"]: e for e in json.loads((tmp_path / "out" / "layers.json").read_text())["layers"]}
    assert main["layers"] == [index[b.digest]["root_hash"] for b in images["app"].layers]


def test_add_initializer_puts_the_coordinators_initializer_in_every_pod(registry: Registry, images: dict[str, Any],
                                                                        tmp_path: Path) -> None:
    """--add-initializer: every pod's first init container runs `cocoon initializer` against the coordinator,
    /contrast is shared (read-only in the pod's containers), the policy pins it all, and a re-run changes
    nothing."""
    yaml = tmp_path / "pod.yaml"
    yaml.write_text(pod_yaml(registry.host))
    extra = ["--add-initializer", "local/tool:2", "--coordinator", "coordinator.default:7777"]
    generate(tmp_path, registry, images, *extra, str(yaml))
    for pod in kube.pods([kube.load(yaml)]):
        init = pod.spec["initContainers"][0]
        assert init["name"] == "coordinator-initializer" and init["image"].startswith("local/tool@sha256:")
        assert list(init["command"]) == ["cocoon", "initializer", "--coordinator", "coordinator.default:7777",
                                         "--out", "/contrast"]
        assert {"name": "contrast-secrets", "emptyDir": {}} in [dict(v) for v in pod.spec["volumes"]]
        for c in pod.spec["containers"]:
            assert {"name": "contrast-secrets", "mountPath": "/contrast", "readOnly": True} in \
                [dict(m) for m in c["volumeMounts"]]
        policy = decode(pod.metadata["annotations"][kube.INITDATA_ANNOTATION]).policy
        assert policy is not None and '"coordinator-initializer"' in policy and "/contrast" in policy
    before = outputs(tmp_path, yaml)
    generate(tmp_path, registry, images, *extra, str(yaml))
    assert outputs(tmp_path, yaml) == before
    bad = generate(tmp_path, registry, images, "--add-initializer", "local/tool:2", "--coordinator", "nope", str(yaml),
                   expect=2)
    assert "is not HOST:PORT" in bad.stderr


def test_the_coordinators_pod_role_marks_its_manifest_entry_and_keeps_the_initializer_out(
        registry: Registry, images: dict[str, Any], tmp_path: Path) -> None:
    """Contrast's pod-role annotation: the coordinator's policy is the manifest's Role: coordinator entry (what
    `cocoon verify -c` attests against), and --add-initializer leaves that pod alone; any other role is refused."""
    coordinator = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: coordinator
  annotations:
    {kube.ROLE_ANNOTATION}: coordinator
spec:
  containers:
  - name: coordinator
    image: local/tool:2
    args: ["coordinator", "serve"]
---
"""
    yaml = tmp_path / "pods.yaml"
    yaml.write_text(coordinator + pod_yaml(registry.host))
    result = json.loads(generate(tmp_path, registry, images, "--add-initializer", "local/tool:2", "--coordinator",
                                 "10.0.0.2:7777", str(yaml)).stdout)
    pods = {p.name: p for p in kube.pods([kube.load(yaml)])}
    assert "initContainers" not in pods["coordinator"].spec
    assert pods["web"].spec["initContainers"][0]["name"] == "coordinator-initializer"
    doc = json.loads((tmp_path / "out" / "manifest.json").read_text())
    digest = next(p["initdata_digest"] for p in result["pods"] if p["name"] == "coordinator")
    assert doc["Policies"][digest]["Role"] == "coordinator"
    assert [d for d, e in doc["Policies"].items() if "Role" in e] == [digest]
    from generator.manifest import coordinator_digest

    assert coordinator_digest(doc) == bytes.fromhex(digest)
    yaml.write_text(coordinator.replace(f"{kube.ROLE_ANNOTATION}: coordinator", f"{kube.ROLE_ANNOTATION}: boss")
                    + pod_yaml(registry.host))
    bad = generate(tmp_path, registry, images, str(yaml), expect=2)
    assert "contrast.edgeless.systems/pod-role is 'boss'" in bad.stderr, bad.stderr
