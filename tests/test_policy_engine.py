"""Policy engine semantics (Kata's): verdict shapes, pstate patches, errors, JSON patch."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import PolicyError
from agent.policy import Policy, jsonpatch

RULES = """package agent_policy
import future.keywords.in
import future.keywords.if

default CreateContainerRequest := {"allowed": false}
CreateContainerRequest := {"allowed": true, "ops": [op]} if {
    op := {"op": "add", "path": concat("", ["/pstate/", input.container_id]), "value": input.idx}
    print("checking", input.container_id)
    input.idx >= 0
}
default ExecProcessRequest := false
ExecProcessRequest if { data.pstate[input.container_id] == 0 }
RemoveContainerRequest := {"allowed": true, "ops": [{"op": "remove", "path": path}]} if {
    path := concat("", ["/pstate/", input.container_id])
}
Weird := 3
"""


def test_object_results_patch_state_and_bool_results_read_it() -> None:
    p = Policy(RULES)
    assert not p.evaluate("ExecProcessRequest", '{"container_id": "c1"}').allowed
    d = p.evaluate("CreateContainerRequest", '{"container_id": "c1", "idx": 0}')
    assert d.allowed and p.state == {"pstate": {"c1": 0}}
    assert any("checking c1" in line for line in d.prints)
    assert p.evaluate("ExecProcessRequest", '{"container_id": "c1"}').allowed
    denied = p.evaluate("CreateContainerRequest", '{"container_id": "c2", "idx": -1}')
    assert not denied.allowed and p.state == {"pstate": {"c1": 0}}  # ops of a denial are not applied
    assert denied.reason("CreateContainerRequest").startswith("CreateContainerRequest is blocked by policy:")
    assert p.evaluate("RemoveContainerRequest", '{"container_id": "c1"}').allowed
    assert p.state == {"pstate": {}}
    assert not p.evaluate("ExecProcessRequest", '{"container_id": "c1"}').allowed


def test_errors_are_policy_errors() -> None:
    p = Policy(RULES)
    with pytest.raises(PolicyError, match="0 results"):
        p.evaluate("UndefinedRequest", "{}")
    with pytest.raises(PolicyError, match="neither a boolean"):
        p.evaluate("Weird", "{}")
    with pytest.raises(PolicyError, match="does not compile"):
        Policy("package agent_policy\nx := {")
    with pytest.raises(PolicyError, match="expected 'package agent_policy'"):
        Policy("package nope\n")


def test_allow_requests_failing_policy_is_honoured() -> None:
    p = Policy("package agent_policy\nAllowRequestsFailingPolicy := true\ndefault ExecProcessRequest := false\n")
    d = p.evaluate("ExecProcessRequest", "{}")
    assert d.allowed and d.forced


def test_long_lines_load() -> None:
    """genpolicy emits lines up to 64 KiB (env values); regorus' default limit is 1 KiB."""
    long = "x" * 60000
    p = Policy(f'package agent_policy\nS := "{long}"\ndefault A := false\nA {{ count(S) == 60000 }}\n')
    assert p.evaluate("A", "{}").allowed


def test_json_patch_rfc6902_examples() -> None:
    doc = {"foo": ["bar", "baz"], "x": {"y": 1}}
    assert jsonpatch.apply(doc, [{"op": "add", "path": "/foo/1", "value": "qux"}])["foo"] == ["bar", "qux", "baz"]
    assert jsonpatch.apply(doc, [{"op": "add", "path": "/foo/-", "value": "e"}])["foo"][-1] == "e"
    assert jsonpatch.apply(doc, [{"op": "remove", "path": "/x/y"}])["x"] == {}
    assert jsonpatch.apply(doc, [{"op": "replace", "path": "/x/y", "value": 2}])["x"] == {"y": 2}
    assert jsonpatch.apply(doc, [{"op": "move", "from": "/x/y", "path": "/z"}]) == {"foo": ["bar", "baz"], "x": {},
                                                                                   "z": 1}
    assert jsonpatch.apply(doc, [{"op": "copy", "from": "/x", "path": "/w"}])["w"] == {"y": 1}
    escaped = [{"op": "remove", "path": "/a~1b"}, {"op": "remove", "path": "/m~0n"}]
    assert jsonpatch.apply({"a/b": 1, "m~n": 2}, escaped) == {}
    with pytest.raises(PolicyError, match="test failed"):
        jsonpatch.apply(doc, [{"op": "test", "path": "/x/y", "value": 5}])
    with pytest.raises(PolicyError):
        jsonpatch.apply(doc, [{"op": "remove", "path": "/nope"}])
    assert doc == {"foo": ["bar", "baz"], "x": {"y": 1}}  # the input is never modified
    # Copies are deep: the copy, the added value and the result share no container with their sources.
    value = {"k": [1]}
    out = jsonpatch.apply(doc, [{"op": "copy", "from": "/x", "path": "/w"}, {"op": "add", "path": "/v",
                                                                           "value": value}])
    out["w"]["y"] = 9
    out["v"]["k"].append(2)
    out["foo"].append("q")
    assert out["x"] == {"y": 1} and value == {"k": [1]} and doc == {"foo": ["bar", "baz"], "x": {"y": 1}}


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                           max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(json_values, st.lists(st.dictionaries(st.sampled_from(["op", "path", "from", "value"]),
                                              st.sampled_from(["add", "remove", "replace", "move", "copy", "test",
                                                               "", "/", "/a", "/0", "/-", "/a/b", "x"]) | json_values,
                                              max_size=4), max_size=4))
def test_json_patch_only_raises_policy_error(doc, ops) -> None:  # type: ignore[no-untyped-def]
    import copy

    before = copy.deepcopy(doc)
    try:
        jsonpatch.apply(doc, ops)
    except PolicyError as exc:
        assert str(exc)
    assert doc == before
