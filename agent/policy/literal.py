"""Compile genpolicy's ``policy_data`` literal through JSON instead of through the Rego parser.

genpolicy appends the pod's data to the rules as one Rego object literal,
``policy_data := {...}``, ~55 KB of a ~70 KB policy. regorus parses a literal
of that size in 45-70 ms (of ~70 ms for the whole policy) and holds the GIL
while it does: the largest single piece of the agent's start-up, and several
seconds of a boot under emulation. The same value written as
``policy_data := json.unmarshal(`...`)`` compiles in ~3 ms (a raw string is
copied, not tokenised), and evaluating a CreateContainer request costs the
same (measured: ~7 ms either way; regorus caches rule values between data
changes).

This is a pure rewrite of the text handed to the engine, never of what was
measured (the initdata digest covers the original text) and never of the
policy's meaning. It is applied only when the two forms provably denote the
same value:

* the literal starts a line as ``policy_data := `` and is the rest of the
  file, and that rest is one strict JSON object (Python's ``json`` with
  duplicate keys, NaN/Infinity, floats, integers beyond +-2**53 and lone
  surrogates all rejected: the cases where a Rego literal and JSON could be
  read differently or where one of them refuses what the other takes);
* it contains no backtick (a raw string cannot hold one);
* the rewritten text keeps every line where it was, so error locations,
  prints and coverage line numbers are the original's.

Anything else returns None and the original text is compiled as is. If the
rewritten text does not compile, the engine compiles the original, so a
broken policy reports the original's error (engine.Policy._load).
"""

from __future__ import annotations

import json
import re

#: The rule genpolicy writes (src/tools/genpolicy/src/policy.rs appends ``policy_data := `` + the JSON).
_HEAD = re.compile(r"^policy_data := (?=\{)", re.MULTILINE)
_SAFE_INT = 2**53


class _Ineligible(ValueError):
    """The literal is valid JSON but not in the subset where both readings provably agree."""


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Ineligible("duplicate key")
    return obj


def _int(text: str) -> int:
    value = int(text)
    if not -_SAFE_INT < value < _SAFE_INT:
        raise _Ineligible("integer outside the exactly representable range")
    return value


def _reject(text: str) -> object:
    raise _Ineligible(f"{text} is not a JSON number both readers agree on")


def _check_strings(value: object) -> None:
    """Lone surrogates (from ``\\ud800`` escapes) are where decoders disagree; refuse them."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise _Ineligible("lone surrogate in a string") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def rewrite(text: str) -> str | None:
    """``text`` with a trailing ``policy_data := <JSON object>`` read through ``json.unmarshal``, or None."""
    matches = list(_HEAD.finditer(text))
    if not matches:
        return None
    match = matches[-1]
    literal = text[match.end():]
    if "`" in literal:
        return None
    try:
        value = json.loads(literal, object_pairs_hook=_no_duplicates, parse_int=_int,
                           parse_float=_reject, parse_constant=_reject)
        _check_strings(value)
    except (ValueError, RecursionError):  # JSONDecodeError and _Ineligible are ValueErrors
        return None
    if not isinstance(value, dict):
        return None
    body = literal.rstrip()
    return f"{text[:match.end()]}json.unmarshal(`{body}`){literal[len(body):]}"
