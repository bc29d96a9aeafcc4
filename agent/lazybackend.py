"""The container backend, loaded on a thread once the agent is serving.

Start-up is bound by interpreter work under the GIL: everything imported
before READY delays it. The container subsystem (OCI spec, storage, verity,
reaper: ~25 ms of imports) is needed only when a container RPC arrives, and
none can arrive before the agent listens. So the daemon starts this loader
right after READY; an RPC that comes sooner waits for it (the import is
under way), and a loader failure answers every backend RPC with its reason.
Policy checks never wait: they run before the handler asks the backend.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from agent.errors import AgentError

log = logging.getLogger("cocoon.agent")


class LazyBackend:
    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._done = threading.Event()
        self._backend: Any = None
        self._error: str | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._load, daemon=True, name="backend-load")
        self._thread.start()

    def _load(self) -> None:
        try:
            self._backend = self._factory()
        except Exception as exc:  # reported to every caller; the agent keeps answering
            self._error = f"container backend unavailable: {type(exc).__name__}: {exc}"
            log.error("%s", self._error)
        finally:
            self._done.set()

    def get(self) -> Any:
        if self._thread is None:
            self.start()
        self._done.wait()
        if self._error is not None:
            raise AgentError(self._error)
        return self._backend

    def __getattr__(self, rpc: str) -> Any:
        if rpc.startswith("_"):
            raise AttributeError(rpc)
        backend = self.get()
        return getattr(backend, rpc)

    def shutdown(self) -> None:
        if self._thread is not None and self._done.wait(timeout=30) and self._backend is not None:
            self._backend.shutdown()
