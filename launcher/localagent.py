"""The one way to run the agent as a local process on the host, bound to a policy through the sim TEE.

Tests, bench/ and anything else that wants a real agent without a VM start it here: initdata in
block layout and a sim PSP document whose HOSTDATA is the document's digest (``write_inputs``),
the agent's command line (``agent_argv``), and a start that returns once the agent said READY=1
over sd_notify (``spawn``). ``start_agent`` does all three for a policy.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from agent import initdata
from agent.initdata import render_document
from launcher.simca import SimChain, make_config

MEASUREMENT = b"\x42" * 48
SOCKET = "agent.sock"


def allow_policy(*rpcs: str) -> str:
    """A policy allowing exactly these requests (``CreateSandbox`` -> ``CreateSandboxRequest``), nothing else."""
    return "package agent_policy\n" + "".join(f"default {rpc}Request := true\n" for rpc in rpcs)


@dataclass
class LocalAgent:
    proc: subprocess.Popen[str]
    address: str
    tmp: Path
    initdata: Path
    notes: list[str]  # the sd_notify messages up to READY=1
    ready_seconds: float  # from just before exec to READY=1

    @property
    def shared(self) -> str:
        return str(self.tmp / "shared")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 60) -> str:
        """SIGTERM, wait, and return what the agent wrote to stderr (empty unless it was piped)."""
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=timeout)
        return err or ""


def write_inputs(tmp: Path, chain: SimChain, document: bytes, bound: bytes | None = None,
                 measurement: bytes = MEASUREMENT) -> tuple[Path, Path]:
    """``tmp/initdata.img`` holding ``document`` and ``tmp/sim.json`` reporting sha256(``bound``, by default the
    document) as HOSTDATA; returns both paths."""
    dev = tmp / "initdata.img"
    dev.write_bytes(initdata.encode_block(document))
    sim = tmp / "sim.json"
    digest = hashlib.sha256(document if bound is None else bound).digest()
    sim.write_text(make_config(chain, measurement, digest).to_json())
    return dev, sim


def agent_argv(tmp: Path, dev: Path, sim: Path, command: Sequence[str] = (sys.executable, "-m", "agent"),
               wrapper: Sequence[str] = (), runtime: str | None = "runc", extra: Sequence[str] = ()) -> list[str]:
    """The agent's command line: sim TEE, a unix listener at ``tmp/agent.sock``, its directories under ``tmp``."""
    return [*wrapper, *command, "--tee", "sim", "--sim-config", str(sim), "--initdata", str(dev),
            "--listen", f"unix://{tmp}/{SOCKET}", "--kernel-cmdline", "/dev/null",
            *(["--runtime", runtime] if runtime else []), "--state-dir", str(tmp / "state"),
            "--shared-dir", str(tmp / "shared"), "--sandbox-dir", str(tmp / "sandbox"),
            # the pod's attestation endpoints are the guest's: on the host they would be the host's ports
            "--datahub-listen", "off", "--aa-socket", "off", "--cdh-socket", "off", *extra]


def spawn(argv: Sequence[str], tmp: Path, dev: Path, env: Mapping[str, str] | None = None,
          stderr: int | IO[Any] | None = subprocess.PIPE, cwd: Path | str | None = None,
          timeout: float = 60) -> LocalAgent:
    """Start ``argv`` with NOTIFY_SOCKET at ``tmp/notify``; returns once it sent READY=1."""
    path = tmp / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(path))
        notify.settimeout(timeout)
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env={**(os.environ if env is None else env), "NOTIFY_SOCKET": str(path)},
                                stderr=stderr, text=True, cwd=cwd)
        notes: list[str] = []
        try:
            while not any("READY=1" in n for n in notes):
                notes.append(notify.recv(65536).decode())
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            path.unlink()
        ready = time.perf_counter() - start
    return LocalAgent(proc, f"unix://{tmp}/{SOCKET}", tmp, dev, notes, ready)


def start_agent(tmp: Path, chain: SimChain, policy: str, wrapper: Sequence[str] = (),
                extra: Sequence[str] = ()) -> LocalAgent:
    """An agent on unix://tmp/agent.sock enforcing ``policy``, READY before this returns; runc backend in tmp."""
    dev, sim = write_inputs(tmp, chain, render_document({"policy.rego": policy}))
    return spawn(agent_argv(tmp, dev, sim, wrapper=wrapper, extra=extra), tmp, dev)
