"""cocoon generate's YAML front end: which documents hold pods, what is refused, what is written back."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator import kube
from generator.errors import GenerateError

WORKLOADS = """\
# the app (this comment must survive)
apiVersion: v1
kind: Pod
metadata:
  name: solo
  namespace: team
spec:
  containers:
  - name: main
    image: 127.0.0.1:5000/app:1.0   # pinned by generate
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    metadata:
      labels: {app: web}
    spec:
      initContainers:
      - {name: init, image: "127.0.0.1:5000/init:1"}
      containers:
      - {name: web, image: "127.0.0.1:5000/web:1"}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - {name: job, image: "127.0.0.1:5000/job:1"}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {mode: fast}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
data: {token: aHVudGVyMg==}
stringData: {plain: text}
"""


def write(tmp_path: Path, text: str, name: str = "app.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_every_pod_kind_is_found_with_its_namespace_config_maps_and_secrets(tmp_path: Path) -> None:
    f = kube.load(write(tmp_path, WORKLOADS))
    pods = kube.pods([f])
    assert [(p.kind, p.namespace, p.name) for p in pods] == [
        ("Pod", "team", "solo"), ("Deployment", "default", "web"), ("CronJob", "default", "nightly")]
    web = pods[1]
    assert web.api_version == "apps/v1"
    assert web.config_maps == {"cfg": {"mode": "fast"}}
    assert web.secrets == {"creds": {"token": "hunter2", "plain": "text"}}
    assert pods[0].config_maps == {}  # another namespace's ConfigMaps are not this pod's
    assert [img for _, img in kube.images(web)] == ["127.0.0.1:5000/init:1", "127.0.0.1:5000/web:1"]
    assert [path for path, _ in kube.images(web)] == ["spec.initContainers[0].image", "spec.containers[0].image"]


def test_annotations_go_back_and_nothing_else_changes(tmp_path: Path) -> None:
    f = kube.load(write(tmp_path, WORKLOADS))
    pods = kube.pods([f])
    pinned = {ref: ref.split(":", 2)[0] + ":" + ref.split(":")[1].split("/")[0] + "/x@sha256:" + "ab" * 32
              for p in pods for _, ref in kube.images(p)}
    for p in pods:
        kube.annotate(p, "H4sIAAAA", "cocoon", pinned)
    out = f.render()
    assert "# the app (this comment must survive)" in out and "# pinned by generate" in out
    again = kube.load(write(tmp_path, out, "again.yaml"))
    pods2 = kube.pods([again])
    for p in pods2:
        assert p.metadata["annotations"][kube.INITDATA_ANNOTATION] == "H4sIAAAA"
        assert p.spec["runtimeClassName"] == "cocoon"
        assert all("@sha256:" in img for _, img in kube.images(p))
    assert pods2[1].metadata["labels"] == {"app": "web"}
    # the same decisions on the output give the same bytes (re-running changes nothing)
    for p in pods2:
        kube.annotate(p, "H4sIAAAA", "cocoon", {v: v for v in pinned.values()})
    assert again.render() == out


@pytest.mark.parametrize(("text", "message"), [
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nmetadata: {name: b}\nspec: {}\n", "duplicate key"),
    ("apiVersion: v1\nkind: Widget\nmetadata: {name: w}\n", "document 0 (Widget default/w): unknown kind 'Widget'"),
    ("apiVersion: v1\nmetadata: {name: w}\n", "document 0: missing kind"),
    ("kind: Pod\nmetadata: {name: w}\n", "(Pod): missing apiVersion"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {}\nspec: {}\n", "metadata.name must be a non-empty string"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", "missing spec"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n",
     "spec.containers must be a non-empty list"),
    ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n", "missing spec.template"),
    ("- a\n- b\n", "document 0: expected a Kubernetes object (a mapping), got a list"),
    ("a: [1,\n", "not valid YAML"),
    ("+_", "not valid YAML"),  # ruamel's int constructor raised IndexError here (hypothesis found it)
    ("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: '!!notbase64'}\n", "data.k: not base64"),
])
def test_bad_documents_are_refused_naming_file_document_and_field(tmp_path: Path, text: str, message: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(GenerateError) as err:
        kube.pods([kube.load(p)])
    assert str(p) in str(err.value) and message in str(err.value), err.value


def test_container_without_image_is_named(tmp_path: Path) -> None:
    p = write(tmp_path, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a}\n")
    with pytest.raises(GenerateError, match=r"Pod default/p\): spec.containers\[0\].image must be a non-empty"):
        kube.images(kube.pods([kube.load(p)])[0])


def test_directories_are_walked_in_sorted_order_and_files_read_once(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    write(tmp_path / "b", "x: 1\n", "z.yaml")
    write(tmp_path, "x: 1\n", "a.yml")
    write(tmp_path, "not yaml", "notes.txt")
    found = kube.expand([str(tmp_path), str(tmp_path / "a.yml")])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.yml", "b/z.yaml"]
    with pytest.raises(GenerateError, match="no such file"):
        kube.expand([str(tmp_path / "missing.yaml")])


def test_atomic_write_replaces_whole_and_keeps_the_mode(tmp_path: Path) -> None:
    p = write(tmp_path, "old\n")
    p.chmod(0o640)
    kube.atomic_write(p, b"new\n")
    assert p.read_text() == "new\n" and p.stat().st_mode & 0o777 == 0o640
    assert [x.name for x in tmp_path.iterdir()] == ["app.yaml"]  # no temporary file left
    with pytest.raises(GenerateError, match="cannot write"):
        kube.atomic_write(tmp_path / "no" / "dir.yaml", b"x")


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))
yaml_values = st.recursive(yaml_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(
    st.sampled_from(["kind", "apiVersion", "metadata", "name", "spec", "containers", "image", "template", "data"]),
    c, max_size=4), max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=yaml_values, raw=st.binary(max_size=200))
def test_random_documents_give_pods_or_a_generate_error(tmp_path: Path, doc: object, raw: bytes) -> None:
    import json

    for text in (json.dumps(doc), raw.decode("utf-8", "replace"), base64.b64encode(raw).decode()):
        p = write(tmp_path, text, "fuzz.yaml")
        try:
            for pod in kube.pods([kube.load(p)]):
                kube.images(pod)
        except GenerateError:
            pass
