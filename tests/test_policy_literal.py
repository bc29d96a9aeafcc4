"""genpolicy's data literal compiled through json.unmarshal (agent/policy/literal.py) means what it says.

The rewrite is only worth having if it can never change a decision, so each
test compares against regorus reading the original text: the value of
``policy_data`` for arbitrary JSON documents, the cases that must be left
alone, and errors reported from the original text.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import regorus
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent.errors import PolicyError
from agent.policy import Policy, literal
from agent.policy.engine import MAX_COL, MAX_FILE_BYTES, MAX_LINES
from launcher.podspec import POLICY_TEXT

HEAD = "package agent_policy\n\ndefault Allowed := false\nAllowed if { policy_data.allow == true }\n\n"


def value_of_policy_data(text: str) -> Any:
    """What regorus itself makes of ``data.agent_policy.policy_data`` in ``text``."""
    engine = regorus.Engine()
    engine.set_rego_v0(True)
    engine.set_policy_length_config(max_col=MAX_COL, max_file_bytes=MAX_FILE_BYTES, max_lines=MAX_LINES)
    engine.add_policy("policy.rego", text)
    engine.add_data_json('{"pstate": {}}')
    result = engine.eval_query("data.agent_policy.policy_data")
    return result["result"][0]["expressions"][0]["value"]


def test_the_genpolicy_shaped_policy_is_rewritten_line_for_line_and_means_the_same() -> None:
    fast = literal.rewrite(POLICY_TEXT)
    assert fast is not None and fast != POLICY_TEXT
    assert fast.count("\n") == POLICY_TEXT.count("\n")
    changed = [a != b for a, b in zip(fast.splitlines(), POLICY_TEXT.splitlines(), strict=True)]
    assert changed.count(True) == 2  # the rule's first line and the literal's last
    assert value_of_policy_data(fast) == value_of_policy_data(POLICY_TEXT)


json_scalars = (st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
                | st.text(st.characters(exclude_categories=["Cs"]), max_size=12))
json_docs = st.dictionaries(st.text(max_size=8), st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20), max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=json_docs, ascii_only=st.booleans(), indent=st.sampled_from([None, 2]))
def test_any_json_document_gets_the_value_regorus_gives_the_literal(doc: dict[str, Any], ascii_only: bool,
                                                                     indent: int | None) -> None:
    literal_text = json.dumps(doc, ensure_ascii=ascii_only, indent=indent)
    assume("`" not in literal_text)
    try:
        literal_text.encode("utf-8")
    except UnicodeEncodeError:
        assume(False)
    text = f"{HEAD}policy_data := {literal_text}\n"
    fast = literal.rewrite(text)
    assert fast is not None
    assert value_of_policy_data(fast) == value_of_policy_data(text) == doc


@pytest.mark.parametrize(("tail", "why"), [
    ('{"a": 1.5}', "a float"),
    ('{"a": 1e3}', "an exponent"),
    ('{"a": 9007199254740993}', "an integer beyond 2**53"),
    ('{"a": NaN}', "NaN"),
    ('{"a": 1, "a": 2}', "a duplicate key"),
    ('{"a": "\\ud800"}', "a lone surrogate"),
    ('{"a": "`"}', "a backtick"),
    ('[1, 2]', "not an object"),
    ('{"a": 1}\nx := 1', "rules after the literal"),
    ('{"a": 1} # the data', "a comment after the literal"),
    ('{"a": input.x}', "a reference, not JSON"),
    ('{"a": {1, 2}}', "a set, not JSON"),
])
def test_literals_outside_the_agreed_subset_are_left_alone(tail: str, why: str) -> None:
    assert literal.rewrite(f"{HEAD}policy_data := {tail}\n") is None, why


def test_only_a_line_starting_rule_is_rewritten() -> None:
    assert literal.rewrite(f"{HEAD}  policy_data := {{}}\n") is None
    assert literal.rewrite(f"{HEAD}default policy_data := {{}}\n") is None
    assert literal.rewrite(f"{HEAD}policy_data := {{}}\n") == f"{HEAD}policy_data := json.unmarshal(`{{}}`)\n"


def test_a_policy_that_does_not_compile_reports_the_original_error(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = HEAD.replace("Allowed if {", "Allowed if {{") + 'policy_data := {"allow": true}\n'
    assert literal.rewrite(broken) is not None
    with pytest.raises(PolicyError) as fast:
        Policy(broken)
    monkeypatch.setattr(literal, "rewrite", lambda text: None)
    with pytest.raises(PolicyError) as slow:
        Policy(broken)
    assert str(fast.value) == str(slow.value)


def test_a_rewritten_policy_decides() -> None:
    p = Policy(f'{HEAD}policy_data := {{"allow": true}}\n')
    try:
        assert p.evaluate("Allowed", "{}").allowed
    finally:
        p.close()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.text(alphabet='{}[]":,`0123456789.eE-+ \n\\uatrfnlsp', max_size=80))
def test_arbitrary_text_never_raises(head: str, tail: str) -> None:
    out = literal.rewrite(f"{head}\npolicy_data := {tail}")
    assert out is None or out.count("\n") == f"{head}\npolicy_data := {tail}".count("\n")
