"""agent/stdio.py: output streams read by one epoll thread, released at EOF, after the exit, or on close."""

from __future__ import annotations

import os
import time

import pytest

from agent.stdio import IoLoop, OutputStream


@pytest.fixture(scope="module")
def loop() -> IoLoop:
    return IoLoop()


def gone(stream: OutputStream, wait: float = 10.0) -> bool:
    """Whether the I/O thread released the stream's fd (it is the only one that closes it)."""
    deadline = time.monotonic() + wait
    while stream.fd is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    return stream.fd is None


def read_all(stream: OutputStream, n: int = 7) -> bytes:
    out = b""
    while True:
        try:
            out += stream.read(n)
        except Exception as exc:  # EndOfStream
            assert str(exc) == "EOF"
            return out


def test_everything_written_is_read_then_eof_and_the_fd_is_released(loop: IoLoop) -> None:
    r, w = os.pipe2(os.O_CLOEXEC)
    s = loop.stream(r)
    os.write(w, b"hello ")
    assert s.read(6) == b"hello "
    os.write(w, b"world")
    os.close(w)
    assert read_all(s) == b"world" and s.delivered
    assert gone(s)


def test_a_full_buffer_stops_reading_and_loses_nothing(loop: IoLoop) -> None:
    r, w = os.pipe2(os.O_CLOEXEC)
    s = loop.stream(r, limit=16)
    data = bytes(range(256)) * 4
    os.write(w, data)
    os.close(w)
    time.sleep(0.2)  # let the I/O thread fill the buffer; it must stop at the limit
    with s.cond:
        assert 16 <= len(s.buf) < 16 + 65536
    assert read_all(s, 5) == data
    assert gone(s)


def test_after_the_exit_silence_is_eof_even_if_someone_holds_the_pipe(loop: IoLoop) -> None:
    """A background child keeps the write end open: after DRAIN the stream ends and its fd goes."""
    r, w = os.pipe2(os.O_CLOEXEC)
    s = loop.stream(r)
    os.write(w, b"last words")
    s.process_exited()
    assert read_all(s) == b"last words"
    assert gone(s)
    with pytest.raises(BrokenPipeError):  # the holder's next write fails, as in Kata after the wait
        os.write(w, b"more")
    os.close(w)


def test_close_releases_a_stream_nobody_reads(loop: IoLoop) -> None:
    r, w = os.pipe2(os.O_CLOEXEC)
    s = loop.stream(r, limit=8)
    os.write(w, b"x" * 100)
    time.sleep(0.1)
    s.close()
    assert gone(s)
    assert read_all(s) == b""  # buffered output of a dropped process is dropped with it
    os.close(w)


def test_a_read_with_a_timeout_returns_nothing_while_the_process_runs(loop: IoLoop) -> None:
    r, w = os.pipe2(os.O_CLOEXEC)
    s = loop.stream(r)
    assert s.read(10, timeout=0.05) == b""
    os.close(w)
    assert read_all(s) == b""
