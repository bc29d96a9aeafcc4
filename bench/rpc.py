#!/usr/bin/env python3
"""Unary round trips per second over a unix socket: cocoon's ttRPC vs grpcio, same handlers.

The server runs in its own process (so client and server do not share a
GIL) and serves Health.Check on both transports; the client makes
sequential calls on one connection. Prints both rates and ttRPC/gRPC.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVER = """
import sys
from agent.binding import Binding
from agent.service import Agent
from agent.ttrpc import TtrpcServer
from agent.grpc_server import GrpcServer
from agent.transport import parse
reg = Agent(Binding("deny-all", "bench")).registry()
t = TtrpcServer(reg); t.listen(parse("unix://{tmp}/t.sock"))
g = GrpcServer(reg); g.listen(parse("unix://{tmp}/g.sock")); g.start()
print("up", flush=True)
sys.stdin.read()
"""


def rate(client, seconds: float) -> float:  # type: ignore[no-untyped-def]
    for _ in range(50):
        client.call("Check")
    n = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            client.call("Check")
        n += 50
    return n / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from launcher.client import Client

    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen([sys.executable, "-c", SERVER.format(tmp=tmp)], cwd=ROOT,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "up"
            with Client(f"unix://{tmp}/t.sock") as c:
                ttrpc_rate = rate(c, args.seconds)
            with Client(f"unix://{tmp}/g.sock", use_grpc=True) as c:
                grpc_rate = rate(c, args.seconds)
        finally:
            server.terminate()
            server.wait(timeout=30)
    result = {"ttrpc_rps": round(ttrpc_rate), "grpc_rps": round(grpc_rate), "ratio": round(ttrpc_rate / grpc_rate, 2),
              "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"unary Health.Check over a unix socket, {args.seconds:.0f} s each, sequential, one connection:")
        print(f"  ttRPC (cocoon): {ttrpc_rate:8.0f} calls/s")
        print(f"  gRPC (grpcio):  {grpc_rate:8.0f} calls/s")
        print(f"  ratio ttRPC/gRPC: {ttrpc_rate / grpc_rate:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
