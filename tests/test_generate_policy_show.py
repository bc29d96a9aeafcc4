"""`cocoon policy show`: policy_data read from every form a policy comes in, patterns said in words, bad input
refused with the module's own error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.initdata import render_document
from generator import policy_show
from generator.errors import GenerateError

RULES = "package agent_policy\n\ndefault CreateContainerRequest := false\n"
DATA = ('{"containers": [{"OCI": {"Process": {"Args": ["/pause"], "Env": ["HOSTNAME=$(sandbox-name)"]}}},'
        ' {"name": "web", "OCI": {"Process": {"Args": ["/bin/web", "--port", "80"], "Cwd": "/srv",'
        ' "Env": ["PATH=/bin", "^SVC_[A-Z]+=.*$"], "User": {"UID": 1000, "GID": 1000}}},'
        ' "storages": [{"driver": "blk", "driver_options": ["cocoon.verity.roothash=' + "ab" * 32 + '"]}],'
        ' "exec_commands": [["cat", "/etc/ready"]]}],'
        ' "sandbox": {"name": "web-pod", "namespace": "prod"},'
        ' "request_defaults": {"ReadStreamRequest": true, "CopyFileRequest": ["$(sfprefix)"]}}')
POLICY = RULES + "\npolicy_data := " + DATA + "\n"


@pytest.mark.parametrize(("value", "said"), [
    ("$(sandbox-name)", "<the pod's name>"),
    ("$(sfprefix)resolv\\.conf$", "<runtime's copy of> resolv.conf"),
    ("^$(cpath)/$(bundle-id)/layers/0$", "<shared directory>/<container id>/layers/0"),
    ("^foo.*$", "^foo.*$"),  # a real pattern stays a pattern
    ("/plain/path", "/plain/path"),
])
def test_patterns_in_words(value: str, said: str) -> None:
    assert policy_show.words(value) == said


def test_rego_and_initdata_give_the_same_reading() -> None:
    from_rego = policy_show.from_document(POLICY.encode(), "pod.rego")
    from_initdata = policy_show.from_document(render_document({"policy.rego": POLICY}), "initdata.toml")
    assert [d for _, d in from_rego] == [d for _, d in from_initdata]
    text = "\n".join(policy_show.render(from_rego))
    assert "pod prod/web-pod: 2 containers" in text
    assert "runs        /bin/web --port 80" in text and "in          /srv, as uid 1000 gid 1000" in text
    assert "1 dm-verity layer\n" in text + "\n" or "1 dm-verity layer " in text
    assert "ab" * 32 in text and "cat /etc/ready" in text
    assert "any variable matching ^SVC_[A-Z]+=.*$" in text
    assert "read containers' output: yes" in text
    summary = policy_show.summary(from_rego[0][1])
    assert summary["containers"][1]["layers"] == ["ab" * 32]


@pytest.mark.parametrize(("raw", "message"), [
    (b"package agent_policy\n", "neither a policy"),  # Rego without policy_data reads as (bad) YAML
    (RULES.encode() + b"\npolicy_data := {1: 2}\n", "policy_data is not valid JSON"),
    (RULES.encode() + b'\npolicy_data := {"a": 1, "a": 2}\n', "duplicate key"),
    (RULES.encode() + b"\npolicy_data := [1]\n", "not a JSON object"),
    (b"\xff\xfe", "not UTF-8"),
    (b'algorithm = "sha256"\nversion = "0.1.0"\n\n[data]\n', "initdata without policy.rego"),
    (b"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: x}]}\n",
     "no io.katacontainers.config.hypervisor.cc_init_data annotation"),
])
def test_bad_input_is_refused(raw: bytes, message: str) -> None:
    with pytest.raises(GenerateError, match=message):
        policy_show.from_document(raw, "input")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: (RULES + "\npolicy_data := " + t).encode()))
def test_random_input_reads_or_is_refused(raw: bytes) -> None:
    try:
        for _, data in policy_show.from_document(raw, "fuzz"):
            policy_show.describe(data)
    except GenerateError:
        pass
