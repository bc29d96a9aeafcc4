"""Content hashes of IGVM page data, computed in forked worker processes.

Why processes and not threads: hashlib holds the GIL for everything but the
compression itself (OpenSSL 3's per-call set-up, the context copy in
``digest()``), so hashing threads and the serial PAGE_INFO chain mostly take
turns. A forked worker reads its own pages (``os.pread`` on the inherited
descriptor moves no shared offset) and sends back only 48-byte digests, so
the parent's chain runs while the workers hash, on other cores.

The workers are forked once, before the parent walks the headers, and are
sent file offsets (8 bytes a page) through a pipe: forking later, from a
parent that then touches its whole header list, would copy much of that
heap page by page. Round-robin assignment and a bounded number of batches in
flight per worker keep both pipes below their capacity, so neither side can
block the other.

Fork is used only where it is safe and pays: a POSIX system with more than
one CPU, a process with no other threads (a child of a threaded process may
inherit a lock another thread held). A worker that fails (an unreadable page,
a killed child) makes the parent read and hash that batch itself, so the
error the caller sees is the one the read raises in the parent.
"""

from __future__ import annotations

import contextlib
import gc
import os
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from .pageinfo import hash_pages, page_digests

DIGEST = 48
#: batches in flight per worker: requests (8 B/page) and replies (48 B/page) for 256-page batches stay
#: far below a pipe's 64 KiB, so the parent never blocks writing while a worker blocks replying
IN_FLIGHT = 3
_COUNT = struct.Struct("<I")

Reader = Callable[[Sequence[int]], bytes]  # file offsets of pages -> their data, concatenated


def usable() -> bool:
    """Whether forking hashing workers is possible and safe in this process now."""
    return hasattr(os, "fork") and (os.cpu_count() or 1) > 1 and threading.active_count() == 1


class ForkedPageHasher:
    """Worker processes that hash pages by file offset; results come back in submission order."""

    def __init__(self, read: Reader, procs: int | None = None) -> None:
        self.read = read
        self.procs = procs or min(4, os.cpu_count() or 1)
        self._workers: list[tuple[int, int, int]] = []  # (pid, request fd, reply fd)
        self._pending: deque[tuple[int, list[int]]] = deque()  # (worker index, offsets)
        self._next = 0
        try:
            for _ in range(self.procs):
                self._workers.append(self._spawn())
        except BaseException:
            self.close()
            raise

    def _spawn(self) -> tuple[int, int, int]:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: serve until the request pipe closes, never run the parent's clean-up
            status = 1
            try:
                gc.disable()  # a collection would write to every object's header and copy the shared heap
                os.close(req_w)
                os.close(rep_r)
                for _, w, r in self._workers:
                    os.close(w)
                    os.close(r)
                _serve(self.read, req_r, rep_w)
                status = 0
            finally:
                os._exit(status)
        os.close(req_r)
        os.close(rep_w)
        return pid, req_w, rep_r

    def submit(self, offsets: list[int]) -> Iterator[list[bytes]]:
        """Queue one batch; yield the digests of earlier batches that had to complete to make room."""
        k = self._next
        self._next = (k + 1) % len(self._workers)
        if sum(1 for w, _ in self._pending if w == k) >= IN_FLIGHT:
            while self._pending:
                yield self._take()
                if sum(1 for w, _ in self._pending if w == k) < IN_FLIGHT:
                    break
        with contextlib.suppress(OSError):  # a worker that is gone: _take hashes its batches here
            _write_all(self._workers[k][1], _COUNT.pack(len(offsets)) + struct.pack(f"<{len(offsets)}Q", *offsets))
        self._pending.append((k, offsets))

    def drain(self) -> Iterator[list[bytes]]:
        while self._pending:
            yield self._take()

    def _take(self) -> list[bytes]:
        k, offsets = self._pending.popleft()
        blob = _read_exact(self._workers[k][2], DIGEST * len(offsets))
        if blob is None:
            return hash_pages(self.read(offsets))
        return [blob[off:off + DIGEST] for off in range(0, len(blob), DIGEST)]

    def close(self) -> None:
        for pid, w, r in self._workers:
            os.close(w)  # the worker sees EOF and exits; one still writing gets EPIPE
            os.close(r)
            os.waitpid(pid, 0)
        self._workers = []

    def __enter__(self) -> ForkedPageHasher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(read: Reader, requests: int, replies: int) -> None:
    while True:
        head = _read_exact(requests, _COUNT.size)
        if head is None:
            return
        (count,) = _COUNT.unpack(head)
        body = _read_exact(requests, 8 * count)
        if body is None:
            return
        _write_all(replies, page_digests(read(struct.unpack(f"<{count}Q", body))))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, size: int) -> bytes | None:
    parts: list[bytes] = []
    left = size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)
