"""RFC 6902 JSON Patch over plain Python values, for the policy state (``data.pstate``).

Kata's agent applies a policy's ``ops`` with the ``json_patch`` crate to the
engine's data document; the same six operations here. A patch is applied
to a copy and only swapped in when every op succeeded, so a bad op leaves
the state as it was (RFC 6902 section 5: the whole patch fails).
"""

from __future__ import annotations

from typing import Any

from agent.errors import PolicyError


def _tokens(pointer: Any) -> list[str]:
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise PolicyError(f"JSON patch: {pointer!r} is not a JSON pointer")
    if pointer == "":
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container: list[Any], token: str, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PolicyError(f"JSON patch: {token!r} is not an array index")
    i = int(token)
    if i > len(container) or (i == len(container) and not allow_end):
        raise PolicyError(f"JSON patch: index {i} out of range")
    return i


def _parent(doc: Any, tokens: list[str]) -> tuple[Any, str]:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, False)]
        else:
            raise PolicyError(f"JSON patch: path element {token!r} does not exist")
    return node, tokens[-1]


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent, last = _parent(doc, tokens)
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, False)]
    raise PolicyError(f"JSON patch: {last!r} does not exist")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _parent(doc, tokens)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, True), value)
    else:
        raise PolicyError("JSON patch: cannot add below a scalar")
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    if not tokens:
        raise PolicyError("JSON patch: cannot remove the whole document")
    parent, last = _parent(doc, tokens)
    if isinstance(parent, dict) and last in parent:
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, False))
    raise PolicyError(f"JSON patch: cannot remove missing {last!r}")


def _clone(value: Any) -> Any:
    """A deep copy of a JSON value (dicts and lists copied, scalars shared): what copy.deepcopy would
    give for JSON, without importing copy on the agent's start-up path."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def apply(doc: Any, ops: Any) -> Any:
    """The patched copy of ``doc``; PolicyError (and ``doc`` untouched) if any op fails."""
    if not isinstance(ops, list):
        raise PolicyError("JSON patch: ops must be an array")
    out = _clone(doc)
    for op in ops:
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise PolicyError(f"JSON patch: malformed operation {op!r}")
        kind = op["op"]
        path = _tokens(op.get("path"))
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PolicyError(f"JSON patch: {kind} needs a value")
        if kind == "add":
            out = _add(out, path, _clone(op["value"]))
        elif kind == "remove":
            out, _ = _remove(out, path)
        elif kind == "replace":
            _get(out, path)
            out, _ = _remove(out, path) if path else (out, None)
            out = _add(out, path, _clone(op["value"]))
        elif kind in ("move", "copy"):
            source = _tokens(op.get("from"))
            if kind == "move" and path[: len(source)] == source and path != source:
                raise PolicyError("JSON patch: cannot move a value into itself")
            if kind == "move":
                out, value = _remove(out, source)
            else:
                value = _clone(_get(out, source))
            out = _add(out, path, value)
        elif kind == "test":
            if _get(out, path) != op["value"]:
                raise PolicyError(f"JSON patch: test failed at {op.get('path')}")
        else:
            raise PolicyError(f"JSON patch: unknown op {kind!r}")
    return out
