"""Reading a process's output from an agent the way the tests assert on it."""

from __future__ import annotations

from agent.rpc import RpcError
from launcher.client import Client


def read_to_eof(client: Client, cid: str, exec_id: str, rpc: str = "ReadStdout") -> bytes:
    """Everything a process wrote to one stream, until the agent reports EOF."""
    out = b""
    while True:
        try:
            out += client.call(rpc, {"container_id": cid, "exec_id": exec_id, "len": 65536}).data
        except RpcError as exc:
            assert "EOF" in exc.message, exc
            return out
