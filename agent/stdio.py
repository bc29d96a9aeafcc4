"""Container output streams: one thread (epoll) reads every pipe and terminal into bounded buffers.

Why one thread for all of them: a thread per stream is two threads per exec, and a
thread blocked in read() cannot be told to stop (closing an fd another thread reads is a
reuse race). Here only the I/O thread ever reads or closes a stream's fd, so a stream
can be closed at any moment from any thread by asking that thread. A full buffer stops
reading that fd (back-pressure: the writer blocks, nothing is lost) until a reader drains it.

End of stream follows Kata's agent (src/agent/src/rpc.rs ``do_read_stream``): once the
process has exited, a read that finds nothing waits at most DRAIN seconds for more output
(a background child may hold the pipe open for ever) and then reports EOF and closes it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import threading
import time
from collections import deque
from collections.abc import Callable

from agent.errors import AgentError

BUFFER_LIMIT = 1 << 20
DRAIN = 0.5  # seconds: Kata's DRAIN_DEADLINE_MS (rpc.rs do_read_stream), output awaited after the exit

log = logging.getLogger("cocoon.agent")


class EndOfStream(AgentError):
    """The process closed this stream and everything buffered was read."""


class IoLoop:
    """The one thread that reads every output stream; other threads hand it work through ``call``."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._todo: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()
        threading.Thread(target=self._loop, daemon=True, name="stdio").start()

    def stream(self, fd: int, limit: int = BUFFER_LIMIT) -> OutputStream:
        """Take ownership of ``fd`` (closed at EOF or by ``OutputStream.close``)."""
        os.set_blocking(fd, False)
        s = OutputStream(fd, self, limit)
        self.call(s._start)
        return s

    def call(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._todo.append(fn)
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"\0")

    def _loop(self) -> None:
        while True:
            try:
                events = self._sel.select()
                for key, _ in events:
                    if key.fd == self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 4096)
                        self._run_todo()
                    else:
                        key.data._readable()
            except Exception:  # never let the loop die: every stream would stop
                log.exception("stdio loop")
                time.sleep(0.05)

    def _run_todo(self) -> None:
        while True:
            with self._lock:
                if not self._todo:
                    return
                fn = self._todo.popleft()
            fn()


class OutputStream:
    """One stdout/stderr (or terminal) of a container process, buffered up to ``limit`` bytes."""

    def __init__(self, fd: int, loop: IoLoop, limit: int = BUFFER_LIMIT) -> None:
        self.fd: int | None = fd  # touched on the I/O thread only
        self.loop = loop
        self.limit = limit
        self.buf = bytearray()
        self.eof = False
        self.delivered = False  # a reader was told EOF
        self.exited = False  # the process is gone: a silent stream ends after DRAIN
        self.cond = threading.Condition()
        self._paused = False
        self._resume_asked = False

    # --- the I/O thread -------------------------------------------------------------------------
    def _start(self) -> None:
        if self.fd is not None:
            self.loop._sel.register(self.fd, selectors.EVENT_READ, self)

    def _readable(self) -> None:
        if self.fd is None:
            return
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: every holder of the terminal's other side is gone
            data = b""
        if not data:
            self._finish()
            return
        with self.cond:
            self.buf += data
            self.cond.notify_all()
            if len(self.buf) >= self.limit:
                self._paused = True
        if self._paused:
            self.loop._sel.unregister(self.fd)

    def _resume(self) -> None:
        with self.cond:
            self._resume_asked = False
            resume = self.fd is not None and self._paused and len(self.buf) < self.limit
            if resume:
                self._paused = False
        if resume:
            self.loop._sel.register(self.fd, selectors.EVENT_READ, self)  # type: ignore[arg-type]

    def _finish(self) -> None:
        if self.fd is not None:
            if not self._paused:
                self.loop._sel.unregister(self.fd)
            os.close(self.fd)
            self.fd = None
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    # --- any thread -----------------------------------------------------------------------------
    def process_exited(self) -> None:
        with self.cond:
            self.exited = True
            self.cond.notify_all()

    def close(self) -> None:
        """Drop what is buffered and release the fd (its owner is gone)."""
        with self.cond:
            self.buf.clear()
            self.eof = True
            self.cond.notify_all()
        self.loop.call(self._finish)

    def read(self, n: int, timeout: float | None = None) -> bytes:
        """Up to ``n`` buffered bytes; b"" after ``timeout``; EndOfStream once it ended and all was read."""
        n = n or 65536
        deadline = None if timeout is None else time.monotonic() + timeout
        drain_until: float | None = None
        with self.cond:
            while not self.buf and not self.eof:
                now = time.monotonic()
                waits = []
                if deadline is not None:
                    if now >= deadline:
                        return b""
                    waits.append(deadline - now)
                if self.exited:
                    drain_until = drain_until or now + DRAIN
                    if now >= drain_until:  # exited, and nothing more came: the end (as Kata's agent)
                        self.eof = True
                        self.loop.call(self._finish)
                        break
                    waits.append(drain_until - now)
                self.cond.wait(min(waits) if waits else None)
            if not self.buf:
                self.delivered = True
                raise EndOfStream("EOF")
            out = bytes(self.buf[:n])
            del self.buf[:n]
            ask = self._paused and not self._resume_asked and len(self.buf) < self.limit
            if ask:
                self._resume_asked = True
        if ask:
            self.loop.call(self._resume)
        return out
