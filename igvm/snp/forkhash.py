"""Content hashes of long page runs, computed in forked worker processes.

Why processes and not threads: hashlib holds the GIL for everything but the
compression itself (OpenSSL 3 fetches the digest and builds a context on
every call, a few microseconds per 4 KiB page), so hashing threads and the
serial PAGE_INFO chain mostly take turns. A forked child reads its own pages
(``os.pread`` on the inherited descriptor moves no shared offset) and sends
back only the 48-byte digests through a pipe, so the parent's chain runs
while the children hash, on separate cores.

Fork is used only where it is safe and pays: a POSIX system with more than
one CPU, a process with no other threads (a child of a threaded process may
inherit a lock another thread held), and runs long enough to repay the fork.
Everything else takes the thread pool in ``pageinfo``. A worker that fails
(an unreadable page, a killed child) makes the parent hash that batch itself,
so the error the caller sees is the one the read raises in the parent.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

PAGE = 4096
DIGEST = 48

Batch = TypeVar("Batch", bound=Sequence[object])


def usable() -> bool:
    """Whether forking hashing workers is possible and safe in this process now."""
    return hasattr(os, "fork") and (os.cpu_count() or 1) > 1 and threading.active_count() == 1


def workers() -> int:
    return min(4, os.cpu_count() or 1)


def hash_pages(data: bytes) -> bytes:
    """The SHA-384 of each 4 KiB page of ``data``, concatenated."""
    view = memoryview(data)
    sha384 = hashlib.sha384
    return b"".join([sha384(view[off:off + PAGE]).digest() for off in range(0, len(view), PAGE)])


def hash_batches(read: Callable[[Batch], bytes], batches: Sequence[Batch], procs: int) -> Iterator[list[bytes]]:
    """Per-page digests of every batch, in order; child ``k`` hashes batches k, k + procs, ..."""
    pipes: list[int] = []
    pids: list[int] = []
    try:
        for k in range(procs):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: hash, write, and leave without running any of the parent's clean-up
                status = 1
                try:
                    os.close(r)
                    for other in pipes:
                        os.close(other)
                    for batch in batches[k::procs]:
                        _write_all(w, hash_pages(read(batch)))
                    status = 0
                finally:
                    os._exit(status)
            os.close(w)
            pipes.append(r)
            pids.append(pid)
        for i, batch in enumerate(batches):
            blob = _read_exact(pipes[i % procs], DIGEST * len(batch))
            if blob is None:  # that worker is gone: hash here, so a read error surfaces as itself
                blob = hash_pages(read(batch))
            yield [blob[off:off + DIGEST] for off in range(0, len(blob), DIGEST)]
    finally:
        for r in pipes:
            os.close(r)  # a child still writing gets EPIPE and exits
        for pid in pids:
            os.waitpid(pid, 0)


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
