"""A running guest: QEMU started from a Machine, its console log, one agent connection.

A virtio-serial port is a single byte stream, so the host keeps one
connection for the VM's life, as Kata's runtime does: the first call simply
waits until the agent inside opens the port and answers. Whether the agent
came up READY or in deny-all (and why) is read from the console, where the
agent's unit writes its one status line.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from launcher.qemu import LaunchError, Machine

# the whole line: the console log is read while QEMU writes it, so a match must wait for the line's end
STATUS = re.compile(r"cocoon-agent: (ready|deny-all): ([^\r\n]*)\r?\n")


class Vm:
    def __init__(self, machine: Machine) -> None:
        if machine.console_log is None or machine.agent_socket is None:
            raise LaunchError("a managed VM needs console_log and agent_socket set")
        self.machine = machine
        self.console_log: Path = machine.console_log
        self.socket: Path = machine.agent_socket
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self._client: Any = None

    def start(self) -> Vm:
        self.console_log.write_bytes(b"")
        self.socket.unlink(missing_ok=True)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.machine.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        return self

    def __enter__(self) -> Vm:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def console(self) -> str:
        try:
            return self.console_log.read_text(errors="replace")
        except OSError:
            return ""

    def qemu_output(self) -> str:
        """What QEMU itself printed (only once it exited)."""
        if self.proc is None or self.proc.poll() is None or self.proc.stdout is None:
            return ""
        return self.proc.stdout.read().decode(errors="replace")

    def _alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise LaunchError(f"QEMU exited with status {self.proc.returncode}: {self.qemu_output().strip()[-2000:]}"
                              f"\n--- console tail ---\n{self.console()[-3000:]}")

    def wait_console(self, pattern: str | re.Pattern[str], timeout: float, start: int = 0) -> re.Match[str]:
        """The first match of ``pattern`` in the console log (from offset ``start``), waiting for it."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.console(), start)
            if m is not None:
                return m
            self._alive()
            if time.monotonic() > deadline:
                raise LaunchError(f"no {rx.pattern!r} on the console after {timeout:.0f} s\n"
                                  f"--- console tail ---\n{self.console()[-3000:]}")
            time.sleep(0.2)

    def wait_status(self, timeout: float = 240, start: int = 0) -> tuple[str, str, float]:
        """(ready|deny-all, reason, seconds since QEMU started) of the next agent start."""
        m = self.wait_console(STATUS, timeout, start)
        return m.group(1), m.group(2).strip(), time.monotonic() - self.started

    def client(self, timeout: float = 240) -> Any:
        """The VM's one agent connection (made on first use, once QEMU created the socket)."""
        if self._client is None:
            from launcher.client import Client

            deadline = time.monotonic() + timeout
            while True:
                self._alive()
                try:
                    self._client = Client(f"unix://{self.socket}", timeout=5)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise LaunchError(f"QEMU never opened {self.socket}") from None
                    time.sleep(0.1)
        return self._client

    def call(self, rpc: str, request: Any = None, timeout: float | None = 60) -> Any:
        return self.client().call(rpc, request, timeout=timeout)

    def stop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
