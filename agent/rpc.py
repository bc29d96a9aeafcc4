"""Transport-neutral RPC plumbing shared by the ttRPC and gRPC servers.

A ``Method`` knows its request/response classes and a handler that takes a
decoded request and returns a response message or raises ``RpcError``.
Both transports decode, call, encode; neither knows what a handler does, so
a policy check can never depend on which transport carried the request.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.record import factory, record

if TYPE_CHECKING:
    from google.protobuf.message import Message


class Code(enum.IntEnum):
    """google.rpc.Code (the same numbers gRPC and ttRPC use)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class RpcError(Exception):
    """A status to send back; the message is what the caller (and kubelet) shows."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = Code(code)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


@record
class Context:
    """Per-call facts a handler may use: which transport, the peer, the deadline.

    ``after_reply``: what to run once the answer is on its way (Kata's agent answers DestroySandbox and
    then exits: acting first would cut the connection the answer travels on).
    """

    transport: str
    peer: str = ""
    timeout: float | None = None
    metadata: dict[str, str] = factory(dict)
    after_reply: list[Callable[[], None]] = factory(list)


def run_after_reply(ctx: Context) -> None:
    """Run a call's after-reply actions; one that fails is logged, never raised into the transport."""
    import logging

    for fn in ctx.after_reply:
        try:
            fn()
        except Exception:
            logging.getLogger("cocoon.agent").exception("after-reply action failed")


Handler = Callable[[Any, Context], Any]


@record(frozen=True)
class Method:
    name: str
    request: type[Message]
    response: type[Message]
    handler: Handler
    long_running: bool = False  # blocks for a long time (long polls): gets its own thread


@record
class Service:
    name: str  # fully qualified, e.g. "grpc.AgentService"
    methods: dict[str, Method] = factory(dict)

    def add(self, method: Method) -> None:
        self.methods[method.name] = method


class Registry:
    """All services one agent serves, looked up by (service, method)."""

    def __init__(self, services: list[Service] | None = None) -> None:
        self.services: dict[str, Service] = {}
        for s in services or []:
            self.add(s)

    def add(self, service: Service) -> None:
        self.services[service.name] = service

    def lookup(self, service: str, method: str) -> Method:
        svc = self.services.get(service)
        if svc is None:
            raise RpcError(Code.UNIMPLEMENTED, f"service {service} is not served here")
        m = svc.methods.get(method)
        if m is None:
            raise RpcError(Code.UNIMPLEMENTED, f"method {service}/{method} is not served here")
        return m
