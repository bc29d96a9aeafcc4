"""Our .proto files against Kata's wire contract (tests/support/kata_wire.py, transcribed from upstream)."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import FieldDescriptor
from support.kata_wire import ENUMS, HEALTH_RPCS, MESSAGES, RPCS

from agent.protocols import agent_pb2, csi_pb2, health_pb2, oci_pb2, types_pb2

SCALARS = {
    FieldDescriptor.TYPE_STRING: "string", FieldDescriptor.TYPE_BOOL: "bool", FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_UINT32: "uint32", FieldDescriptor.TYPE_UINT64: "uint64", FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_INT64: "int64",
}
MODULES = (agent_pb2, oci_pb2, types_pb2, health_pb2, csi_pb2)


def _all_messages() -> dict[str, object]:
    out: dict[str, object] = {}

    def walk(desc) -> None:  # type: ignore[no-untyped-def]
        if desc.GetOptions().map_entry:
            return
        out[desc.name] = desc
        for nested in desc.nested_types:
            walk(nested)

    for m in MODULES:
        for d in m.DESCRIPTOR.message_types_by_name.values():
            walk(d)
    return out


def _type(f: FieldDescriptor) -> str:
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        k, v = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
        return f"map<{_type(k)},{_type(v)}>"
    base = f.message_type.name if f.message_type is not None else (
        f.enum_type.name if f.enum_type is not None else SCALARS[f.type])
    repeated = f.is_repeated
    oneof = f.containing_oneof
    if oneof is not None and not oneof.name.startswith("_"):
        return f"oneof:{oneof.name} {base}"
    if oneof is not None:
        return f"optional {base}"
    return f"repeated {base}" if repeated else base


def _table() -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = {}
    for line in MESSAGES.strip().splitlines():
        name, _, body = line.partition(":")
        fields: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in body.split(";"))):
            lhs, _, ftype = part.partition(" ")
            fname, _, number = lhs.partition("=")
            fields[fname] = f"{number} {ftype}"
        table[name] = fields
    return table


TABLE = _table()
OURS = _all_messages()


@pytest.mark.parametrize("message", sorted(TABLE))
def test_message_fields_match_kata(message: str) -> None:
    assert message in OURS, f"{message} is missing from our protos"
    desc = OURS[message]
    ours = {f.name: f"{f.number} {_type(f)}" for f in desc.fields}  # type: ignore[attr-defined]
    assert ours == TABLE[message]


def test_every_message_of_ours_is_in_the_table() -> None:
    kata_packages = {"grpc", "types"}
    ours = {n for n, d in OURS.items() if d.full_name.split(".")[0] in kata_packages}  # type: ignore[attr-defined]
    assert ours - set(TABLE) == set()


def test_enums_match_kata() -> None:
    enums = {}
    for m in MODULES:
        for e in m.DESCRIPTOR.enum_types_by_name.values():
            enums[e.name] = e
    enums["ServingStatus"] = health_pb2.HealthCheckResponse.DESCRIPTOR.enum_types_by_name["ServingStatus"]
    enums["Unit"] = csi_pb2.VolumeUsage.DESCRIPTOR.enum_types_by_name["Unit"]
    for line in ENUMS.strip().splitlines():
        name, _, body = line.partition(":")
        want = {k: int(v) for k, v in (p.strip().split("=") for p in body.split(";"))}
        assert {v.name: v.number for v in enums[name].values} == want, name


@pytest.mark.parametrize(("module", "service", "table"), [
    (agent_pb2, "AgentService", RPCS), (health_pb2, "Health", HEALTH_RPCS)])
def test_services_match_kata(module, service: str, table: str) -> None:  # type: ignore[no-untyped-def]
    desc = module.DESCRIPTOR.services_by_name[service]
    assert desc.full_name == f"grpc.{service}"
    ours = [(m.name, m.input_type.name, m.output_type.name) for m in desc.methods]
    theirs = [tuple(line.split()) for line in table.strip().splitlines()]
    assert ours == theirs  # same names, same types, same order
    for m in desc.methods:
        assert m.input_type.full_name.split(".")[0] in ("grpc", "types")
        assert m.output_type.full_name in (f"grpc.{m.output_type.name}", f"types.{m.output_type.name}",
                                           "google.protobuf.Empty")


def test_protos_cite_the_commit_the_table_was_read_at() -> None:
    """The table and every .proto header name one Kata commit: a partial update shows up here."""
    import re
    from pathlib import Path

    from support import kata_wire

    commits = set(re.findall(r"main\s+@([0-9a-f]{40})", kata_wire.__doc__ or ""))
    assert len(commits) == 1, commits
    here = Path(agent_pb2.__file__).parent
    for name in ("agent", "types", "oci", "health", "csi"):
        head = (here / f"{name}.proto").read_text().split("syntax", 1)[0]
        assert commits <= set(re.findall(r"@([0-9a-f]{40})", head)), name
