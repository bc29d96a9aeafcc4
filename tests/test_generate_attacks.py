"""Regression tests from a security review of cocoon generate: values from the YAML or an image that the rules
would read as patterns, inputs that crashed instead of failing with a GenerateError, outputs left behind."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format
from test_generate_policy import IMAGES, SANDBOX_ID, SETTINGS, WEB, decide, fresh, sample_pod, sample_spec

from agent.protocols import agent_pb2
from generator.errors import PolicyGenError
from generator.model import ImageInfo
from generator.policy import policy_data, render
from launcher import cri

EVIL = "LD_PRELOAD=/tmp/evil.so"


def _web_request_with_env(extra: str) -> dict[str, Any]:
    reqs = cri.container_requests(sample_pod(), IMAGES, SETTINGS, SANDBOX_ID,
                                  {la.root_hash: f"/dev/disk/by-id/virtio-layer{i}"
                                   for i, la in enumerate([*WEB.layers, *IMAGES["127.0.0.1:5000/side:2"].layers])})
    req = next(r for n, r in reqs if n == "web")
    doc = json_format.MessageToDict(req, preserving_proto_field_name=True)
    doc["OCI"]["Process"]["Env"].append(extra)
    return doc


def test_an_env_name_starting_with_a_caret_is_refused_not_read_as_a_pattern() -> None:
    spec = sample_spec()
    spec["containers"][0]["env"].append({"name": "^.*", "value": ".*"})
    with pytest.raises(PolicyGenError, match=r"env\[6\]\.name"):
        policy_data(sample_pod(spec), IMAGES, SETTINGS)


def test_an_image_env_name_starting_with_a_caret_is_refused() -> None:
    cfg = {"config": {**WEB.config["config"], "Env": [*WEB.config["config"]["Env"], "^.*=.*"]}}
    images = {**IMAGES, WEB.reference: ImageInfo(WEB.reference, WEB.pinned, cfg, WEB.layers)}
    with pytest.raises(PolicyGenError, match="starts with '\\^'"):
        policy_data(sample_pod(), images, SETTINGS)


def test_the_sample_policy_denies_an_extra_env_var() -> None:
    for p in fresh(render(policy_data(sample_pod(), IMAGES, SETTINGS))):
        d = decide(p, "CreateContainerRequest", _web_request_with_env(EVIL), agent_pb2.CreateContainerRequest)
        assert not d.allowed


@pytest.mark.parametrize("field, value", [("name", "^.*$"), ("name", "Web_Pod"), ("name", "a" * 254),
                                          ("namespace", "^shop"), ("namespace", "a.b")])
def test_a_pod_name_or_namespace_kubernetes_would_refuse_is_refused(field: str, value: str) -> None:
    kw: dict[str, Any] = {field: value}
    if field == "name":
        kw["metadata"] = {"name": value}
    with pytest.raises(PolicyGenError, match=f"metadata.{field}"):
        policy_data(sample_pod(**kw), IMAGES, SETTINGS)


def test_a_dotted_pod_name_is_fine() -> None:
    data = policy_data(sample_pod(name="web.pod-1", metadata={"name": "web.pod-1"}), IMAGES, SETTINGS)
    assert data["sandbox"]["name"] == "web.pod-1"  # kept as the literal name, not made a pattern


def test_a_relative_host_path_is_refused_not_read_as_a_pattern() -> None:
    spec = sample_spec()
    spec["volumes"].append({"name": "h", "hostPath": {"path": "^/.*"}})
    spec["containers"][0]["volumeMounts"].append({"name": "h", "mountPath": "/h"})
    with pytest.raises(PolicyGenError, match=r"hostPath\.path"):
        policy_data(sample_pod(spec), IMAGES, SETTINGS, allow_host_path=True)


def _web_request() -> dict[str, Any]:
    doc = _web_request_with_env("X=1")
    doc["OCI"]["Process"]["Env"].pop()
    return doc


def judge(text: str, doc: dict[str, Any]) -> tuple[bool, str]:
    """(allowed, reason) of CreateContainer ``doc`` on a fresh policy (an admitted request is recorded)."""
    for p in fresh(text):
        d = decide(p, "CreateContainerRequest", doc, agent_pb2.CreateContainerRequest)
        return d.allowed, d.reason("CreateContainerRequest")
    raise AssertionError("unreachable")


def test_a_pinned_env_var_left_out_is_denied() -> None:
    text = render(policy_data(sample_pod(), IMAGES, SETTINGS))
    doc = _web_request()
    assert judge(text, doc)[0]
    doc["OCI"]["Process"]["Env"] = [e for e in doc["OCI"]["Process"]["Env"] if not e.startswith("WEB_MODE=")]
    allowed, reason = judge(text, doc)
    assert not allowed
    assert "environment variable WEB_MODE=yaml is missing" in reason


def test_a_pinned_env_var_cannot_be_replaced_through_a_service_link_pattern() -> None:
    spec = sample_spec()
    spec["containers"][0]["env"].append({"name": "DB_SERVICE_HOST", "value": "10.0.0.5"})
    pod = sample_pod(spec)
    text = render(policy_data(pod, IMAGES, SETTINGS))
    reqs = cri.container_requests(pod, IMAGES, SETTINGS, SANDBOX_ID,
                                  {la.root_hash: f"/dev/disk/by-id/virtio-layer{i}"
                                   for i, la in enumerate([*WEB.layers, *IMAGES["127.0.0.1:5000/side:2"].layers])})
    doc = json_format.MessageToDict(next(r for n, r in reqs if n == "web"), preserving_proto_field_name=True)
    assert judge(text, doc)[0]
    env = doc["OCI"]["Process"]["Env"]
    for bad in ([e for e in env if not e.startswith("DB_")] + ["DB_SERVICE_HOST=6.6.6.6"],
                [*env, "DB_SERVICE_HOST=6.6.6.6"]):
        doc["OCI"]["Process"]["Env"] = bad
        allowed, reason = judge(text, doc)
        assert not allowed
        assert "DB_SERVICE_HOST=6.6.6.6 is not allowed" in reason
    # a service link the policy does not pin is still the host's to add
    doc["OCI"]["Process"]["Env"] = [*env, "OTHER_SERVICE_HOST=10.1.2.3"]
    assert judge(text, doc)[0]


@pytest.mark.parametrize("old, new, needle", [
    ('"^HOSTNAME=$(dns_label)$"', '"HOSTNAME=.*"', "allow_env_regex[0]: must start with '^'"),
    ('"^HOSTNAME=$(dns_label)$"', '"^HOSTNAME=.*"', "allow_env_regex[0]: must end with '$'"),
    ('"^HOSTNAME=$(dns_label)$"', '"^HOSTNAME=x|.*$"', "allow_env_regex[0]: has a top-level '|'"),
    ('"regex": []', '"regex": ["/bin/sh.*"]', "ExecProcessRequest.regex[0]: must start with '^'"),
    ('"^/dev/disk/by-id/virtio-layer[0-9]+$"', '"/dev/.*"', "layers.source: must start with '^'"),
    ('"svc_name": "[A-Z_\\\\.\\\\-]+"', '"svc_name": "[A-Z]+|.*"', "common.svc_name: has a top-level '|'"),
    ('"free_annotations": ["^io', '"free_annotations": ["io', "free_annotations[0]: must start with '^'"),
])
def test_allow_list_patterns_in_settings_must_be_anchored(old: str, new: str, needle: str) -> None:
    from generator.settings import DEFAULT_FILE, Settings, SettingsError

    text = DEFAULT_FILE.read_text()
    assert old in text
    with pytest.raises(SettingsError) as err:
        Settings.parse(text.replace(old, new, 1), "s.json")
    assert needle in str(err.value), str(err.value)


def test_grouped_alternatives_and_escapes_are_fine_in_settings() -> None:
    from generator.settings import DEFAULT_FILE, Settings

    text = DEFAULT_FILE.read_text().replace('"regex": []', '"regex": ["^(date|uptime)$", "^echo [|]$"]')
    assert Settings.parse(text, "s.json").doc["request_defaults"]["ExecProcessRequest"]["regex"][0] == "^(date|uptime)$"


POD_YAML = ("apiVersion: v1\nkind: Pod\nmetadata: {name: %s}\n"
            "spec: {containers: [{name: c, image: 127.0.0.1:5000/web:1.0}]}\n")


def test_two_inputs_of_one_name_are_refused_with_yaml_out_not_overwritten(tmp_path: Any) -> None:
    from generator import generate
    from generator.errors import GenerateError

    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "pod.yaml").write_text(POD_YAML % d)
    out = tmp_path / "out"
    with pytest.raises(GenerateError, match="would both be written to"):
        generate.run([str(tmp_path / "a"), str(tmp_path / "b")],
                     generate.Options(out=out, yaml_out=out / "yaml", cache=tmp_path / "cache"))
    assert not out.exists()


def test_policy_show_warns_when_the_rules_are_not_exactly_cocoons() -> None:
    from generator import policy_show

    data = policy_data(sample_pod(), IMAGES, SETTINGS)
    text = render(data)
    [(label, shown)] = policy_show.from_document(text.encode(), "pod.rego")
    assert label == "pod.rego" and shown == data
    # rules that admit everything, with a strict-looking policy_data: the data alone would read as strict
    edited = text.replace('default CreateContainerRequest := {"allowed": false}',
                          'default CreateContainerRequest := {"allowed": true}', 1)
    # a second policy_data in a raw string after the real one: the marker reader would show that one
    decoy = text + "decoy := `\npolicy_data := {\"containers\": []}\n`\n"
    for bad in (edited, decoy):
        [(label, _)] = policy_show.from_document(bad.encode(), "pod.rego")
        assert "WARNING: not exactly cocoon's rules" in label
        assert "WARNING" in policy_show.render(policy_show.from_document(bad.encode(), "pod.rego"))[0]


def test_atomic_write_never_writes_through_a_symlink_at_its_temp_name(tmp_path: Any) -> None:
    import os

    from generator import kube

    victim = tmp_path / "victim"
    victim.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    target = out / "manifest.json"
    (out / f".manifest.json.cocoon-tmp-{os.getpid()}").symlink_to(victim)
    kube.atomic_write(target, b"{}\n")
    assert target.read_bytes() == b"{}\n" and not target.is_symlink()
    assert victim.read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_layer_copies_never_write_through_a_symlink_at_their_temp_name(tmp_path: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from generator import generate
    from generator.model import Layer

    cache = tmp_path / "cache"
    (cache / "layers").mkdir(parents=True)
    (cache / "layers" / "ab.img").write_bytes(b"L" * 4096)
    out = tmp_path / "out"
    (out / "layers").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (out / "layers" / f".ab.img.tmp-{os.getpid()}").symlink_to(victim)
    layer = Layer("sha256:" + "ab" * 32, "sha256:" + "cd" * 32, "ef" * 32, 4096, 4096 * 2, "ab.img")

    def no_link(src: Any, dst: Any, *a: Any, **kw: Any) -> None:  # another file system: the copy path
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    generate._link_layers([layer], generate.Options(out=out, cache=cache))
    assert victim.read_text() == "keep me"
    assert (out / "layers" / "ab.img").read_bytes() == b"L" * 4096
    assert sorted(p.name for p in (out / "layers").iterdir()) == ["ab.img"]


@pytest.mark.parametrize("where", ['metadata: {name: p, labels: {a: "\\ud800"}}\n',
                                   'metadata: {name: p}\nx: {"\\udfff": 1}\n'])
def test_a_lone_surrogate_escape_is_a_generate_error_naming_the_document(where: str, tmp_path: Any) -> None:
    from generator import kube
    from generator.errors import GenerateError

    f = tmp_path / "pod.yaml"
    f.write_text("apiVersion: v1\nkind: Pod\n" + where + "spec: {containers: [{name: c, image: i}]}\n")
    with pytest.raises(GenerateError, match=r"pod.yaml: document 0: .*lone surrogate"):
        kube.load(f)


def test_aliases_are_walked_once(tmp_path: Any) -> None:
    from generator import kube

    rows = ["a: &a [x, x, x, x, x, x, x, x, x, x]"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(8)]
    f = tmp_path / "pod.yaml"
    f.write_text("\n".join(rows) + "\napiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: *i}\n"
                 "spec: {containers: [{name: c, image: i}]}\n")
    assert len(kube.load(f).documents) == 1  # 10^9 strings if expanded: returns at once


def test_an_image_config_with_a_lone_surrogate_is_an_image_error() -> None:
    from generator import oci
    from generator.errors import ImageError
    from generator.model import Blob

    layer = Blob("sha256:" + "ab" * 32, "application/vnd.oci.image.layer.v1.tar", 10)
    m = oci.Manifest(oci.OCI_MANIFEST, Blob("sha256:" + "cd" * 32, oci.OCI_CONFIG, 10), (layer,))
    config = {"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "ef" * 32]},
              "config": {"Env": ["A=\ud800"]}}
    with pytest.raises(ImageError, match="lone surrogate"):
        oci.check_config(config, m, "img")
    config["config"] = {"Env": ["A=b"]}
    oci.check_config(config, m, "img")


@pytest.mark.parametrize("which", ["out", "yaml_out"])
def test_an_out_directory_that_is_a_file_is_a_generate_error_before_any_work(which: str, tmp_path: Any) -> None:
    from generator import generate
    from generator.errors import GenerateError

    (tmp_path / "pod.yaml").write_text(POD_YAML % "p")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    kw: dict[str, Any] = {"out": tmp_path / "out", which: blocker}
    with pytest.raises(GenerateError, match="not a directory"):
        generate.run([str(tmp_path / "pod.yaml")], generate.Options(cache=tmp_path / "cache", **kw))
    assert blocker.read_text() == "x"


def test_an_unreadable_manifest_is_a_generate_error(tmp_path: Any) -> None:
    import json as json_mod

    from generator import generate
    from generator.errors import GenerateError

    (tmp_path / "pod.yaml").write_text(POD_YAML % "p")
    (tmp_path / "out" / "manifest.json").mkdir(parents=True)  # a directory where the manifest goes
    from test_generate_manifest import REFS

    refs = tmp_path / "refs.json"
    refs.write_text(json_mod.dumps(REFS))
    with pytest.raises(GenerateError, match=r"manifest\.json: cannot read"):
        generate.run([str(tmp_path / "pod.yaml")],
                     generate.Options(out=tmp_path / "out", cache=tmp_path / "cache", reference_values=str(refs)))


@pytest.mark.parametrize("doc", ['{"WorkloadOwnerKeyDigests": [5, {}]}', '{"SeedshareOwnerPubKeys": [["ab"]]}'])
def test_owner_key_lists_of_other_things_than_strings_are_refused(doc: str) -> None:
    from generator import manifest
    from generator.errors import GenerateError

    with pytest.raises(GenerateError, match="must be a list of strings"):
        manifest.load(doc.encode(), "m.json")  # manifest diff crashed on these with a TypeError


def test_manifest_diff_of_owner_keys_still_works() -> None:
    from generator import manifest, manifest_diff

    a = manifest.load(b'{"WorkloadOwnerKeyDigests": ["aa"]}', "a")
    b = manifest.load(b'{"WorkloadOwnerKeyDigests": ["bb"]}', "b")
    assert any(manifest_diff.diff(a, b).values())


from hypothesis import given  # noqa: E402
from hypothesis import settings as hsettings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                     lambda inner: (st.lists(inner, max_size=3)
                                    | st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                     max_leaves=12)
_KEYS = ["OCI", "Process", "User", "Capabilities", "Env", "Args", "Mounts", "options", "storages", "driver",
         "driver_options", "exec_commands", "Annotations", "Root", "name", "image", "containers", "sandbox",
         "request_defaults", "ExecProcessRequest", "CreateContainerRequest", "CopyFileRequest", "common"]
_shaped = st.recursive(_json, lambda inner: st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4) |
                       st.lists(inner, max_size=3), max_leaves=25)


@hsettings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_KEYS), _shaped, max_size=5))
def test_policy_show_describes_any_policy_data_or_says_why_not(data: dict[str, Any]) -> None:
    import json as json_mod

    from generator import policy_show
    from generator.errors import GenerateError

    text = "package agent_policy\n\npolicy_data := " + json_mod.dumps(data) + "\n"
    try:
        items = policy_show.from_document(text.encode(), "p.rego")
    except GenerateError:
        return
    lines = policy_show.render(items)
    assert lines[0].startswith("== p.rego (WARNING: not exactly cocoon's rules")  # hand-made rules: said so
    assert all(isinstance(line, str) for line in lines)
    summaries = [policy_show.summary(d) for _, d in items]
    containers = data.get("containers")
    expected = sum(isinstance(c, dict) for c in containers) if isinstance(containers, list) else 0
    assert len(summaries[0]["containers"]) == expected  # every container entry described, none invented
    json_mod.dumps(summaries)


def test_policy_show_of_yaml_with_annotations_not_a_mapping_is_a_generate_error() -> None:
    from generator import policy_show
    from generator.errors import GenerateError

    raw = (b"apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: [1]}\n"
           b"spec: {containers: [{name: c, image: i}]}\n")
    with pytest.raises(GenerateError, match=r"no io\.katacontainers"):
        policy_show.from_document(raw, "pod.yaml")


@pytest.mark.parametrize("name", ["../../../etc", "a/b", "Cache", "x" * 64])
def test_a_volume_name_that_is_not_a_dns_label_is_refused(name: str) -> None:
    spec = sample_spec()
    spec["volumes"][0]["name"] = name
    spec["containers"][0]["volumeMounts"][0]["name"] = name
    spec["containers"][1]["volumeMounts"][0]["name"] = name
    with pytest.raises(PolicyGenError, match=r"spec\.volumes\[0\]\.name"):
        policy_data(sample_pod(spec), IMAGES, SETTINGS)
