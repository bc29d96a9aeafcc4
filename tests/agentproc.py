"""Start the agent as a process bound to a policy through the sim TEE (what several tests need)."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from agent import initdata
from agent.cli import render_document

MEASUREMENT = b"\x42" * 48


def read_to_eof(client, cid: str, exec_id: str, rpc: str = "ReadStdout") -> bytes:  # type: ignore[no-untyped-def]
    """Everything a process wrote to one stream, until the agent reports EOF."""
    from agent.rpc import RpcError

    out = b""
    while True:
        try:
            out += client.call(rpc, {"container_id": cid, "exec_id": exec_id, "len": 65536}).data
        except RpcError as exc:
            assert "EOF" in exc.message, exc
            return out


def allow_policy(*rpcs: str) -> str:
    """A policy allowing exactly these requests (``CreateSandbox`` -> ``CreateSandboxRequest``), nothing else."""
    return "package agent_policy\n" + "".join(f"default {rpc}Request := true\n" for rpc in rpcs)


@dataclass
class AgentProcess:
    proc: subprocess.Popen  # type: ignore[type-arg]
    address: str
    tmp: Path
    initdata: Path

    @property
    def shared(self) -> str:
        return str(self.tmp / "shared")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> str:
        """SIGTERM, wait, and return what the agent wrote to stderr."""
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=60)
        return err or ""


def start_agent(tmp: Path, chain, policy: str, wrapper: list[str] | None = None,  # type: ignore[no-untyped-def]
                extra: list[str] | None = None) -> AgentProcess:
    """An agent on unix://tmp/agent.sock, READY (sd_notify) before this returns; runc backend in tmp."""
    from agent.tee.simca import make_config

    doc = render_document({"policy.rego": policy})
    dev = tmp / "initdata.img"
    dev.write_bytes(initdata.encode_block(doc))
    sim = tmp / "sim.json"
    sim.write_text(make_config(chain, MEASUREMENT, hashlib.sha256(doc).digest()).to_json())
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp / "notify"))
    notify.settimeout(60)
    argv = [*(wrapper or []), sys.executable, "-m", "agent", "--tee", "sim", "--sim-config", str(sim),
            "--initdata", str(dev), "--listen", f"unix://{tmp}/agent.sock", "--kernel-cmdline", "/dev/null",
            "--runtime", "runc", "--state-dir", str(tmp / "state"), "--shared-dir", str(tmp / "shared"),
            "--sandbox-dir", str(tmp / "sandbox"), *(extra or [])]
    proc = subprocess.Popen(argv, env={**os.environ, "NOTIFY_SOCKET": str(tmp / "notify")},
                            stderr=subprocess.PIPE, text=True)
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
    finally:
        notify.close()
    return AgentProcess(proc, f"unix://{tmp}/agent.sock", tmp, dev)
