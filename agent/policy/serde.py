"""Protobuf messages to the JSON Kata's agent feeds its policy (serde of rust-protobuf structs).

The rules (research kata-agent.md 2.2, from kata ``src/libs/protocols``
build.rs and serde_config.rs): keys are proto field names verbatim; a field
named ``type`` is ``type_`` (rust-protobuf's keyword rename); every field is
present with its default; an unset message field is ``null``; enums are
integers; 64-bit integers are JSON numbers; ``bytes`` are arrays of numbers;
maps are objects; a proto3 ``optional`` scalar is ``null`` when unset; a
oneof is one key named after the oneof holding ``{field: value}`` or
``null`` (serde's externally tagged enum). Policies written by genpolicy
match on exactly this shape, so any drift here silently changes verdicts;
tests compare against hand-written golden files.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

RUST_KEYWORDS = frozenset({"type", "match", "ref", "mod", "use", "impl", "fn", "loop", "move", "self", "super",
                           "where", "async", "await", "dyn", "crate", "trait", "unsafe", "extern", "box"})
_MESSAGE = FieldDescriptor.TYPE_MESSAGE
_BYTES = FieldDescriptor.TYPE_BYTES


def rust_name(name: str) -> str:
    return f"{name}_" if name in RUST_KEYWORDS else name


@cache
def _plan(descriptor: Descriptor) -> tuple[tuple[str, str, Any], ...]:
    """Per message type: (json key, kind, detail) in declaration order, oneofs folded into one key."""
    plan: list[tuple[str, str, Any]] = []
    seen_oneofs: set[str] = set()
    for f in descriptor.fields:
        oneof = f.containing_oneof
        if oneof is not None and not _synthetic(oneof):
            if oneof.name not in seen_oneofs:
                seen_oneofs.add(oneof.name)
                plan.append((rust_name(oneof.name), "oneof", oneof))
            continue
        key = rust_name(f.name)
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            plan.append((key, "map", f))
        elif _is_repeated(f):
            plan.append((key, "repeated", f))
        elif f.type == _MESSAGE:
            plan.append((key, "message", f))
        elif oneof is not None:  # proto3 optional (synthetic oneof): presence tracked
            plan.append((key, "optional", f))
        else:
            plan.append((key, "scalar", f))
    return tuple(plan)


def _synthetic(oneof: Any) -> bool:
    return bool(getattr(oneof, "is_synthetic", False)) or (
        len(oneof.fields) == 1 and oneof.name == f"_{oneof.fields[0].name}"
    )


def _is_repeated(f: FieldDescriptor) -> bool:
    is_repeated = getattr(f, "is_repeated", None)
    # protobuf >= 5.28 has is_repeated; older runtimes only label (absent from newer stubs)
    label = getattr(f, "label", None)
    return bool(is_repeated) if is_repeated is not None else label == FieldDescriptor.LABEL_REPEATED


def _scalar(f: FieldDescriptor, value: Any) -> Any:
    if f.type == _BYTES:
        return list(value)
    return value


def _value(f: FieldDescriptor, value: Any) -> Any:
    return to_dict(value) if f.type == _MESSAGE else _scalar(f, value)


def to_dict(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, kind, f in _plan(msg.DESCRIPTOR):
        if kind == "scalar":
            out[key] = _scalar(f, getattr(msg, f.name))
        elif kind == "message":
            out[key] = to_dict(getattr(msg, f.name)) if msg.HasField(f.name) else None
        elif kind == "repeated":
            items = getattr(msg, f.name)
            out[key] = [to_dict(i) for i in items] if f.type == _MESSAGE else [_scalar(f, i) for i in items]
        elif kind == "map":
            value_field = f.message_type.fields_by_name["value"]
            out[key] = {k: _value(value_field, v) for k, v in getattr(msg, f.name).items()}
        elif kind == "optional":
            out[key] = _scalar(f, getattr(msg, f.name)) if msg.HasField(f.name) else None
        else:  # oneof
            which = msg.WhichOneof(f.name)
            if which is None:
                out[key] = None
            else:
                # the upb runtime's descriptor class, which the stubs type apart from the Python one
                member = cast(FieldDescriptor, msg.DESCRIPTOR.fields_by_name[which])
                out[key] = {rust_name(which): _value(member, getattr(msg, which))}
    return out


def to_json(msg: Message) -> str:
    return json.dumps(to_dict(msg), separators=(",", ":"), ensure_ascii=False)
