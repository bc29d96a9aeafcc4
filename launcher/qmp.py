"""QEMU's machine protocol (QMP), just enough to hotplug a disk into a running VM.

A pod's first container boots its VM; the pod's later containers bring layers the VM did not boot with,
and Kata's runtime hotplugs those as block devices (virtcontainers/qemu.go hotplugAddBlockDevice:
``blockdev-add`` then ``device_add``). QMP is line-delimited JSON over the ``-qmp`` unix socket
(QEMU docs/interop/qmp-spec.rst): a greeting, ``qmp_capabilities`` to leave negotiation mode, then one
``{"execute": ...}`` at a time, each answered by ``{"return": ...}`` or ``{"error": {"class", "desc"}}``;
asynchronous ``{"event": ...}`` lines may come in between and are skipped. Answers are parsed strictly
(duplicate keys refused) and bounded in size: the socket is QEMU's, but a parser takes nothing on trust.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path
from typing import Any

from launcher.qemu import LaunchError
from verifier import strictjson

MAX_LINE = 1 << 20


class QmpError(LaunchError):
    """QMP said no, said something that is not QMP, or did not answer in time."""


class Qmp:
    """One QMP session (QEMU serves one client per ``-qmp`` socket at a time: connect, act, close)."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.buf = b""
        deadline = time.monotonic() + timeout
        while True:  # QEMU creates the socket early in its start; a client may be a moment ahead
            try:
                self.sock.connect(str(path))
                break
            except OSError as exc:
                if time.monotonic() >= deadline:
                    self.sock.close()
                    raise QmpError(f"QMP socket {path}: {exc.strerror or exc}") from None
                time.sleep(0.05)
        try:
            greeting = self._read()
            if "QMP" not in greeting:
                raise QmpError(f"QMP socket {path}: no greeting, got {sorted(greeting)}")
            self.execute("qmp_capabilities")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Qmp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _read(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                raise QmpError("QMP answer longer than 1 MiB")
            try:
                chunk = self.sock.recv(65536)
            except OSError as exc:
                raise QmpError(f"QMP: {exc}") from None
            if not chunk:
                raise QmpError("QMP: QEMU closed the socket")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            doc = strictjson.loads(line)
        except (ValueError, RecursionError) as exc:
            raise QmpError(f"QMP: not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise QmpError("QMP: an answer that is not an object")
        return doc

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run one command; its ``return`` value, or QmpError with QEMU's class and description."""
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        try:
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
        except OSError as exc:
            raise QmpError(f"QMP {command}: {exc}") from None
        while True:
            doc = self._read()
            if "event" in doc:
                continue
            if "return" in doc:
                return doc["return"]
            err = doc.get("error")
            if isinstance(err, dict):
                raise QmpError(f"QMP {command}: {err.get('class', 'Error')}: {err.get('desc', '')}")
            raise QmpError(f"QMP {command}: unexpected answer {sorted(doc)}")


def hotplug_disk(path: Path, qmp_socket: Path, serial: str, timeout: float = 30.0) -> None:
    """Attach ``path`` read-only as a virtio-blk disk with ``serial`` (the guest's
    /dev/disk/by-id/virtio-<serial>), the way launcher/qemu.disk attaches boot-time disks. A failed
    device_add takes its block node back, so a retry starts clean."""
    node = f"hp-{serial}"
    with Qmp(qmp_socket, timeout) as q:
        q.execute("blockdev-add", {"driver": "raw", "node-name": node, "read-only": True,
                                   "file": {"driver": "file", "filename": str(path), "read-only": True}})
        try:
            q.execute("device_add", {"driver": "virtio-blk-pci", "id": f"dev-{serial}", "drive": node,
                                     "serial": serial})
        except QmpError:
            with contextlib.suppress(QmpError):
                q.execute("blockdev-del", {"node-name": node})
            raise
