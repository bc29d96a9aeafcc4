"""Concurrency for the throughput benches (bench/kbs.py, bench/coordinator.py): ``n`` calls spread over
``clients`` threads, each thread with a worker of its own (its own connection), and every call's latency."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def parallel(n: int, clients: int, make_worker: Callable[[], Callable[[], None]]) -> tuple[float, list[float]]:
    """(wall seconds for all ``n`` calls, per-call latencies)."""
    todo = list(range(n))
    lock = threading.Lock()
    latencies: list[float] = []

    def run() -> None:
        work = make_worker()
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            t0 = time.perf_counter()
            work()
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies
