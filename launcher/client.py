"""Host-side client library for the agent: call any RPC by name over ttRPC or gRPC.

The library under ``cocoon ctl`` (cocoon/ctl.py), the launcher's VM handle and
``cocoon verify --address``; it lives on the host side because the guest never
calls itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from agent.rpc import Code, RpcError


@dataclass(frozen=True)
class Rpc:
    service: str
    name: str
    request: type[Message]
    response: type[Message]


def catalog() -> dict[str, Rpc]:
    from google.protobuf import message_factory

    from agent.protocols import agent_pb2, cocoon_pb2, health_pb2

    out: dict[str, Rpc] = {}
    for module, service in ((agent_pb2, "AgentService"), (health_pb2, "Health"), (cocoon_pb2, "Attestation")):
        desc = module.DESCRIPTOR.services_by_name[service]
        for m in desc.methods:
            out[m.name] = Rpc(desc.full_name, m.name, message_factory.GetMessageClass(m.input_type),
                              message_factory.GetMessageClass(m.output_type))
    return out


class Client:
    """One connection to an agent; ``call("CreateContainer", request)`` by RPC name."""

    def __init__(self, address: str, use_grpc: bool = False, timeout: float = 10.0, sock: Any = None) -> None:
        self.rpcs = catalog()
        self.use_grpc = use_grpc
        if use_grpc:
            import grpc

            from agent.grpc_server import _target
            from agent.transport import parse

            self.channel = grpc.insecure_channel(_target(parse(address)))
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        else:
            from agent.ttrpc import TtrpcClient

            self.ttrpc = TtrpcClient(address, timeout, sock=sock)

    def call(self, rpc: str, request: Any = None, timeout: float | None = 60.0) -> Any:
        spec = self.rpcs.get(rpc)
        if spec is None:
            raise RpcError(Code.UNIMPLEMENTED, f"unknown RPC {rpc!r}")
        if request is None:
            request = spec.request()
        elif isinstance(request, dict):
            from google.protobuf import json_format

            request = json_format.ParseDict(request, spec.request())
        if not self.use_grpc:
            return self.ttrpc.call(spec.service, spec.name, request, spec.response, timeout)
        import grpc

        stub = self.channel.unary_unary(f"/{spec.service}/{spec.name}",
                                        request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=spec.response.FromString)
        try:
            return stub(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise RpcError(Code[exc.code().name], exc.details() or "") from None

    def close(self) -> None:
        if self.use_grpc:
            self.channel.close()
        else:
            self.ttrpc.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
