"""Policy input JSON equals hand-written golden files (serde rules in agent/policy/serde.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import empty_pb2, json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.policy.serde import to_dict, to_json
from agent.protocols import agent_pb2, types_pb2
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
    # Fields and RPCs Kata added after our first transcription (tests/support/kata_wire.py names the commit):
    # Storage.shared, Route.mtu, GetDiagnosticDataRequest, AddSwapPathRequest.
    "create_sandbox": agent_pb2.CreateSandboxRequest,
    "update_routes": agent_pb2.UpdateRoutesRequest,
    "get_diagnostic_data": agent_pb2.GetDiagnosticDataRequest,
    "add_swap_path": agent_pb2.AddSwapPathRequest,
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


# A policy that judges sandbox storages as Kata's genpolicy rules do (allow_sandbox_storage, rules.rego
# at kata main @7c6ba40c: the request's storage must equal one of the policy's, whole), fed through
# the service's real path: request -> serde -> engine.
WHOLE_STORAGE_RULES = """package agent_policy
import future.keywords.every
import future.keywords.if
import future.keywords.in

default CreateSandboxRequest := false
CreateSandboxRequest if {
    every i in input.storages {
        some p in policy_data.sandbox.storages
        i == p
    }
}
"""


def _sandbox_policy(shared: object) -> str:
    """policy_data listing the two golden storages; the block one's ``shared`` as given (None: left out)."""
    storages = json.loads((GOLDEN / "create_sandbox.policy.json").read_text())["storages"]
    if shared is None:
        del storages[1]["shared"]
    else:
        storages[1]["shared"] = shared
    return WHOLE_STORAGE_RULES + "policy_data := " + json.dumps({"sandbox": {"storages": storages}}) + "\n"


@pytest.mark.parametrize(("shared", "allowed"), [(True, True), (False, False), (None, False)],
                         ids=["data-shared-true", "data-shared-false", "data-without-shared"])
def test_create_sandbox_is_judged_with_storage_shared(shared: object, allowed: bool) -> None:
    from agent.binding import READY, Binding
    from agent.policy import Policy
    from agent.rpc import Code, Context, RpcError
    from agent.service import Agent

    calls: list[str] = []

    class Backend:
        def CreateSandbox(self, req, ctx):  # type: ignore[no-untyped-def]
            calls.append(req.storages[1].mount_point)
            return empty_pb2.Empty()

    policy = Policy(_sandbox_policy(shared))
    try:
        agent = Agent(Binding(READY, "test", policy=policy), Backend())
        method = agent.registry().lookup("grpc.AgentService", "CreateSandbox")
        req: Any = json_format.Parse((GOLDEN / "create_sandbox.input.json").read_text(), method.request())
        assert req.storages[1].shared is True
        if allowed:
            method.handler(req, Context("test"))
            assert calls == ["/run/kata-containers/sandbox/storage/scratch"]
        else:
            with pytest.raises(RpcError) as err:
                method.handler(req, Context("test"))
            assert err.value.code == Code.PERMISSION_DENIED
            assert calls == []
    finally:
        policy.close()


_TEXT = st.text(max_size=8)


@settings(max_examples=200, deadline=None)
@given(driver=_TEXT, opts=st.lists(_TEXT, max_size=3), shared=st.booleans(),
       mtu=st.integers(0, 2**32 - 1), flags=st.integers(0, 2**32 - 1))
def test_new_fields_always_present_with_their_value(driver: str, opts: list[str], shared: bool,
                                                    mtu: int, flags: int) -> None:
    """Kata's serde writes every field, defaults included: `shared` and `mtu` are never missing."""
    storage = agent_pb2.Storage(driver=driver, options=opts, shared=shared)
    got = to_dict(agent_pb2.CreateSandboxRequest(storages=[storage]))["storages"][0]
    assert list(got) == ["driver", "driver_options", "source", "fstype", "options", "mount_point", "fs_group",
                         "shared"]
    assert got["shared"] is shared and got["options"] == opts and got["fs_group"] is None
    route = types_pb2.Route(device=driver, mtu=mtu, flags=flags)
    r = json.loads(to_json(agent_pb2.UpdateRoutesRequest(routes=agent_pb2.Routes(Routes=[route]))))
    assert r["routes"]["Routes"][0]["mtu"] == mtu and list(r["routes"]["Routes"][0])[-2:] == ["flags", "mtu"]
