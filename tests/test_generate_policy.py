"""cocoon generate's policy stage, end to end on the agent's own engine.

For sample pods (two containers, ConfigMap and Secret env, volumes, exec probes, security contexts, images
with Env/Entrypoint/Cmd/WorkingDir/User and two layers each) the generated policy must admit exactly the
requests launcher/cri.py builds for that pod (built from the pod spec and image config, never from
policy_data), evaluated as the agent evaluates them (agent.policy.Policy on serde JSON); a change to any one
field of those requests must be denied with a reason naming the field.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from agent.policy import Decision, Policy
from agent.policy.serde import to_json
from agent.protocols import agent_pb2
from generator.errors import PolicyGenError
from generator.model import ImageInfo, Layer, PodTemplate
from generator.policy import policy_data, render
from generator.settings import Settings, SettingsError
from launcher import cri

SANDBOX_ID = "5a" * 32
SETTINGS = Settings.load()


def layer(n: int) -> Layer:
    root = f"{n:02x}" * 32
    return Layer(digest="sha256:" + f"{n + 100:02x}" * 32, diff_id="sha256:" + f"{n + 150:02x}" * 32,
                 root_hash=root, hash_offset=4096 * (n + 3), size=4096 * (n + 4), file=f"{n}.img")


WEB = ImageInfo(
    reference="127.0.0.1:5000/web:1.0", pinned="127.0.0.1:5000/web@sha256:" + "a1" * 32,
    config={"config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "WEB_MODE=image", "LANG=C.UTF-8"],
                       "Entrypoint": ["/bin/web"], "Cmd": ["--port", "8080"], "WorkingDir": "/srv",
                       "User": "1000:1000"}},
    layers=(layer(1), layer(2)))
SIDE = ImageInfo(
    reference="127.0.0.1:5000/side:2", pinned="127.0.0.1:5000/side@sha256:" + "b2" * 32,
    config={"config": {"Env": ["SIDE=1"], "Cmd": ["/bin/side"], "User": "2000"}},
    layers=(layer(3), layer(4)))
IMAGES = {WEB.reference: WEB, SIDE.reference: SIDE}
DEVICES = {layer(n).root_hash: f"/dev/disk/by-id/virtio-layer{n - 1}" for n in range(1, 5)}


def sample_spec() -> dict[str, Any]:
    return {
        "runtimeClassName": "cocoon",
        "securityContext": {"runAsNonRoot": True, "supplementalGroups": [3000], "fsGroup": 4000},
        "volumes": [{"name": "cache", "emptyDir": {}}, {"name": "conf", "configMap": {"name": "web-conf"}},
                    {"name": "creds", "secret": {"secretName": "web-secret"}}],
        "containers": [
            {"name": "web", "image": WEB.reference,
             "args": ["--port", "$(PORT)", "--mode=$(MODE)"],
             "env": [{"name": "PORT", "value": "9090"},
                     {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "web-conf", "key": "mode"}}},
                     {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "web-secret", "key": "token"}}},
                     {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                     {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                     {"name": "WEB_MODE", "value": "yaml"}],
             "envFrom": [{"configMapRef": {"name": "web-conf"}, "prefix": "CONF_"}],
             "volumeMounts": [{"name": "cache", "mountPath": "/cache"},
                              {"name": "conf", "mountPath": "/etc/web"},
                              {"name": "creds", "mountPath": "/run/creds", "readOnly": True}],
             "livenessProbe": {"exec": {"command": ["/bin/web", "--health"]}},
             "readinessProbe": {"exec": {"command": ["cat", "/srv/ready"]}},
             "securityContext": {"allowPrivilegeEscalation": False,
                                 "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]}}},
            {"name": "side", "image": SIDE.reference,
             "command": ["/bin/side", "--watch"],
             "workingDir": "/work",
             "volumeMounts": [{"name": "cache", "mountPath": "/cache", "readOnly": True}],
             "startupProbe": {"exec": {"command": ["/bin/side", "--ready"]}},
             "securityContext": {"runAsUser": 2001, "runAsGroup": 2002, "readOnlyRootFilesystem": True,
                                 "capabilities": {"drop": ["ALL"]}}},
        ],
    }


def sample_pod(spec: dict[str, Any] | None = None, **kw: Any) -> PodTemplate:
    args: dict[str, Any] = {
        "source": "pod.yaml", "index": 0, "kind": "Pod", "name": "web-pod", "namespace": "shop",
        "metadata": {"name": "web-pod", "annotations": {"io.cocoon.exec": '[["/bin/sh", "-c", "date"]]'}},
        "spec": sample_spec() if spec is None else spec,
        "config_maps": {"web-conf": {"mode": "fast", "level": "3", "bad-key!": "x"}},
        "secrets": {"web-secret": {"token": "s3cr3t"}},
    }
    args.update(kw)
    return PodTemplate(**args)


@pytest.fixture(scope="module")
def rendered() -> str:
    return render(policy_data(sample_pod(), IMAGES, SETTINGS))


@pytest.fixture(scope="module")
def requests() -> list[tuple[str, agent_pb2.CreateContainerRequest]]:
    return cri.container_requests(sample_pod(), IMAGES, SETTINGS, SANDBOX_ID, DEVICES)


def decide(policy: Policy, endpoint: str, msg: Message | dict[str, Any], cls: type[Message] | None = None) -> Decision:
    if isinstance(msg, dict):
        assert cls is not None
        msg = json_format.ParseDict(msg, cls())
    return policy.evaluate(endpoint, to_json(msg))


def fresh(text: str) -> Iterator[Policy]:
    p = Policy(text)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def policy(rendered: str) -> Iterator[Policy]:
    yield from fresh(rendered)


def as_dict(msg: Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def test_the_pods_own_requests_are_allowed(policy: Policy, requests: list[tuple[str, Any]]) -> None:
    d = decide(policy, "CreateSandboxRequest", cri.sandbox_request(sample_pod(), SETTINGS, SANDBOX_ID))
    assert d.allowed, d.prints
    assert [name for name, _ in requests] == ["pause", "web", "side"]
    for name, req in requests:
        d = decide(policy, "CreateContainerRequest", req)
        assert d.allowed, (name, d.prints)
    for name, req in requests[1:]:
        c = next(c for c in sample_spec()["containers"] if c["name"] == name)
        for argv in [*cri.probe_commands(c), ["/bin/sh", "-c", "date"]]:
            d = decide(policy, "ExecProcessRequest", cri.exec_request(req, argv))
            assert d.allowed, (name, argv, d.prints)
