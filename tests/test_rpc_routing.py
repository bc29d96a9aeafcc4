"""Every AgentService RPC, Health and GetEvidence over both ttRPC and gRPC, on real sockets."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import empty_pb2

from agent.binding import READY, Binding
from agent.grpc_server import GrpcServer
from agent.policy import Policy
from agent.protocols import agent_pb2
from agent.rpc import Code, RpcError
from agent.service import REFUSED, Agent
from agent.transport import parse
from agent.ttrpc import TtrpcServer
from launcher.client import Client, catalog

RPCS = [m for m in agent_pb2.DESCRIPTOR.services_by_name["AgentService"].methods]
ALLOW_ALL = "package agent_policy\n" + "".join(
    f"default {name} := true\n" for name in sorted({m.input_type.name for m in RPCS})
)


class Echo:
    """Backend answering every RPC with an empty message and remembering the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, rpc: str):  # type: ignore[no-untyped-def]
        if rpc.startswith("_"):
            raise AttributeError(rpc)

        def act(req, ctx):  # type: ignore[no-untyped-def]
            self.calls.append((rpc, ctx.transport))
            return empty_pb2.Empty()

        return act


@pytest.fixture(scope="module")
def servers(tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("rpc")
    backend = Echo()
    agent = Agent(Binding(READY, "allow-all test", policy=Policy(ALLOW_ALL)), backend)
    registry = agent.registry()
    t = TtrpcServer(registry)
    t.listen(parse(f"unix://{tmp}/t.sock"))
    g = GrpcServer(registry)
    g.listen(parse(f"unix://{tmp}/g.sock"))
    g.start()
    yield backend, f"unix://{tmp}/t.sock", f"unix://{tmp}/g.sock"
    t.stop()
    g.stop()


def test_there_are_42_rpcs_and_the_catalog_knows_them() -> None:
    assert len(RPCS) == 42
    assert {m.name for m in RPCS} <= set(catalog())


@pytest.mark.parametrize("use_grpc", [False, True], ids=["ttrpc", "grpc"])
def test_every_rpc_is_routed_through_policy_to_the_backend(servers, use_grpc: bool) -> None:  # type: ignore[no-untyped-def]
    backend, t_addr, g_addr = servers
    transport = "grpc" if use_grpc else "ttrpc"
    with Client(g_addr if use_grpc else t_addr, use_grpc=use_grpc) as c:
        assert c.call("Check").status == 1
        assert c.call("Version").agent_version.startswith("cocoon")
        for m in RPCS:
            if m.name == "SetPolicy":
                continue  # replaces the policy: covered in test_policy_matrix
            if m.name in REFUSED:
                continue  # never reaches the backend: test_refused_rpcs_*
            c.call(m.name, {})
            assert backend.calls[-1] == (m.name, transport)
        with pytest.raises(RpcError) as err:  # ready, but this binding has no TEE to ask
            c.call("GetEvidence", {"nonce": ""})
        assert err.value.code == Code.PERMISSION_DENIED


def test_refused_rpcs_are_exactly_the_swap_and_diagnostic_ones() -> None:
    assert set(REFUSED) == {"AddSwap", "AddSwapPath", "GetDiagnosticData"}
    assert set(REFUSED) <= {m.name for m in RPCS}


@pytest.mark.parametrize("use_grpc", [False, True], ids=["ttrpc", "grpc"])
@pytest.mark.parametrize(("rpc", "req", "why"), [
    ("AddSwapPath", {"path": "/dev/vdb"}, "unencrypted"),
    ("AddSwap", {"PCIPath": [2, 1]}, "unencrypted"),
    ("GetDiagnosticData", {"log_type": "termination_log", "container_id": "c"}, "symlink"),
])
def test_refused_rpcs_are_unimplemented_with_a_reason_even_when_allowed(  # type: ignore[no-untyped-def]
        servers, use_grpc: bool, rpc: str, req: dict[str, Any], why: str) -> None:
    backend, t_addr, g_addr = servers
    before = list(backend.calls)
    with Client(g_addr if use_grpc else t_addr, use_grpc=use_grpc) as c, pytest.raises(RpcError) as err:
        c.call(rpc, req)
    assert err.value.code == Code.UNIMPLEMENTED
    assert f"{rpc} is refused by cocoon" in str(err.value) and why in str(err.value)
    assert backend.calls == before  # the backend (which would answer anything) was never asked


@pytest.mark.parametrize("rpc", sorted(REFUSED))
def test_refused_rpcs_are_judged_by_the_policy_first(rpc: str) -> None:
    backend = Echo()
    deny = "package agent_policy\n" + "".join(
        f"default {name} := {'false' if name.startswith(rpc) else 'true'}\n"
        for name in sorted({m.input_type.name for m in RPCS}))
    agent = Agent(Binding(READY, "test", policy=Policy(deny)), backend)
    method = agent.registry().lookup("grpc.AgentService", rpc)
    with pytest.raises(RpcError) as err:
        method.handler(method.request(), None)  # type: ignore[arg-type]  # refused before any context is read
    assert err.value.code == Code.PERMISSION_DENIED
    assert backend.calls == []


@pytest.mark.parametrize("use_grpc", [False, True])
@pytest.mark.parametrize("allowed", [True, False])
def test_destroy_sandbox_stops_the_agent_after_answering(tmp_path, use_grpc: bool, allowed: bool) -> None:  # type: ignore[no-untyped-def]
    """Kata's agent exits once DestroySandbox is answered: the stop runs after the reply, and only if allowed."""
    import threading

    policy = ALLOW_ALL.replace("default DestroySandboxRequest := true",
                               f"default DestroySandboxRequest := {str(allowed).lower()}")
    stopped = threading.Event()
    seen_reply = threading.Event()

    def stop() -> None:
        stopped.set()
        assert seen_reply.wait(10)  # the client had its answer before the stop began

    agent = Agent(Binding(READY, "test", policy=Policy(policy)), Echo(), on_destroyed=stop)
    registry = agent.registry()
    address = f"unix://{tmp_path}/a.sock"
    server = GrpcServer(registry) if use_grpc else TtrpcServer(registry)
    server.listen(parse(address))
    if use_grpc:
        server.start()  # type: ignore[union-attr]
    try:
        with Client(address, use_grpc=use_grpc) as c:
            if allowed:
                c.call("DestroySandbox", {})
                seen_reply.set()
                assert stopped.wait(10)
            else:
                with pytest.raises(RpcError) as err:
                    c.call("DestroySandbox", {})
                assert err.value.code == Code.PERMISSION_DENIED
                c.call("Check", {})  # a round trip later, still no stop
                assert not stopped.is_set()
    finally:
        seen_reply.set()
        server.stop()
