"""The same Registry on grpcio, for gRPC clients (Kata's agent speaks both).

Handlers are the transport-neutral ones from ``agent.rpc``; only decoding,
status mapping and the listener differ. Addresses: ``unix://PATH``,
``tcp://HOST:PORT``, ``vsock://CID:PORT`` (grpc core's ``vsock:`` scheme).
"""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc

from agent.rpc import Code, Context, Method, Registry, RpcError, run_after_reply
from agent.transport import Address


def _target(address: Address) -> str:
    if address.scheme == "unix":
        return f"unix:{address.path}"
    if address.scheme == "tcp":
        return f"{address.host}:{address.port}"
    if address.scheme == "vsock":
        return f"vsock:{int(address.host) & 0xFFFFFFFF}:{address.port}"
    raise RpcError(Code.INVALID_ARGUMENT, f"gRPC cannot listen on {address}")


def _wrap(method: Method) -> Any:  # a grpc.RpcMethodHandler (grpc publishes no types)
    def call(request: Any, context: grpc.ServicerContext) -> Any:
        remaining = context.time_remaining()
        ctx = Context("grpc", context.peer(), remaining if remaining is not None and remaining < 1e9 else None,
                      {k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        context.add_callback(lambda: run_after_reply(ctx))  # grpc runs it when the call has ended
        try:
            return method.handler(request, ctx)
        except RpcError as exc:
            context.abort(grpc.StatusCode[exc.code.name], exc.message)
        except Exception as exc:  # same contract as ttRPC: a handler bug is INTERNAL, never a crash
            context.abort(grpc.StatusCode.INTERNAL, f"{method.name} failed: {type(exc).__name__}: {exc}")

    return grpc.unary_unary_rpc_method_handler(
        call,
        request_deserializer=method.request.FromString,
        response_serializer=lambda m: m.SerializeToString(),
    )


class GrpcServer:
    def __init__(self, registry: Registry, workers: int = 32) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc-call"),
                                  options=[("grpc.max_receive_message_length", 4 << 20)])
        handlers = [
            grpc.method_handlers_generic_handler(svc.name, {name: _wrap(m) for name, m in svc.methods.items()})
            for svc in registry.services.values()
        ]
        self.server.add_generic_rpc_handlers(handlers)
        self.bound: list[str] = []

    def listen(self, address: Address) -> str:
        target = _target(address)
        port = self.server.add_insecure_port(target)
        if port == 0:
            raise RpcError(Code.UNAVAILABLE, f"gRPC cannot bind {address}")
        bound = f"tcp://{address.host}:{port}" if address.scheme == "tcp" else str(address)
        self.bound.append(bound)
        return bound

    def start(self) -> None:
        self.server.start()

    def stop(self, grace: float = 1.0) -> None:
        self.server.stop(grace).wait()
