"""The container backend loads after READY; RPCs that come first wait, a failed load answers with its reason."""

from __future__ import annotations

import threading
import time

import pytest

from agent.errors import AgentError
from agent.lazybackend import LazyBackend
from agent.rpc import Code, RpcError
from agent.service import Agent


class Slow:
    def __init__(self, gate: threading.Event) -> None:
        gate.wait(5)
        self.shut = False

    def Ping(self, req: object, ctx: object) -> str:
        return "pong"

    def shutdown(self) -> None:
        self.shut = True


def test_a_call_before_the_load_finishes_waits_for_it() -> None:
    gate = threading.Event()
    lazy = LazyBackend(lambda: Slow(gate))
    lazy.start()
    answers: list[str] = []
    caller = threading.Thread(target=lambda: answers.append(lazy.Ping(None, None)))
    caller.start()
    time.sleep(0.1)
    assert answers == []  # still loading
    gate.set()
    caller.join(5)
    assert answers == ["pong"]
    with pytest.raises(AttributeError):
        lazy.NoSuchRpc  # noqa: B018  (an RPC the backend lacks stays an AttributeError -> UNIMPLEMENTED)
    backend = lazy.get()
    lazy.shutdown()
    assert backend.shut


def test_a_failed_load_answers_every_backend_rpc_with_its_reason() -> None:
    def broken() -> object:
        raise OSError("no runtime")

    lazy = LazyBackend(broken)
    with pytest.raises(AgentError, match="container backend unavailable: OSError: no runtime"):
        lazy.get()  # starts the load itself when nobody did
    agent = Agent.__new__(Agent)
    agent.backend = lazy
    with pytest.raises(RpcError) as err:
        agent._act("CreateContainer", None, None)
    assert err.value.code == Code.UNAVAILABLE and "no runtime" in str(err.value)
    lazy.shutdown()  # nothing to shut down; must not raise
