"""The broker's persistent state: resources by ``<repo>/<type>/<tag>``, the resource policy, the token
signing key. Every write is a whole file written to a temporary name, synced, renamed over the old one and
the directory synced, so a broker killed at any instant restarts with each resource either as it was or as
it was set, never half written; a name is three plain path segments, never a way out of the directory.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from agent.kbs_client import SEGMENT  # one rule for a resource path segment, guest and broker
from coordinator.kbs.errors import KbsError
from coordinator.store import atomic_write_many

MAX_RESOURCE = 1 << 20


def resource_path(segments: list[str] | tuple[str, ...]) -> tuple[str, str, str]:
    """``[repo, type, tag]`` checked: three segments of letters, digits, ``.``, ``_``, ``-`` (no ``..``)."""
    if len(segments) != 3 or not all(isinstance(s, str) and SEGMENT.fullmatch(s) and ".." not in s
                                     for s in segments):
        raise KbsError("InvalidRequestPath", f"resource path {'/'.join(map(str, segments))!r} is not "
                                             "<repo>/<type>/<tag> of plain names", status=404)
    return segments[0], segments[1], segments[2]


def write_atomically(path: Path, data: bytes) -> None:
    """The coordinator's atomic write (temp + fsync, rename, directory fsync), for one file (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_many(path.parent, {path.name: data})


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stale in root.rglob(".tmp-*"):  # a write a crash interrupted: never renamed, so never real
            with contextlib.suppress(OSError):
                stale.unlink()

    def _resource(self, segments: list[str] | tuple[str, ...]) -> Path:
        repo, kind, tag = resource_path(segments)
        return self.root / "resources" / repo / kind / tag

    def put(self, segments: list[str] | tuple[str, ...], data: bytes) -> None:
        if len(data) > MAX_RESOURCE:
            raise KbsError("PluginInternalError", f"a resource is at most {MAX_RESOURCE} bytes")
        path = self._resource(segments)
        with self.lock:
            write_atomically(path, data)

    def get(self, segments: list[str] | tuple[str, ...]) -> bytes:
        path = self._resource(segments)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise KbsError("PluginInternalError", f"no resource {'/'.join(segments)}") from None

    def names(self) -> list[str]:
        base = self.root / "resources"
        return sorted(str(p.relative_to(base)) for p in base.glob("*/*/*") if p.is_file()) if base.exists() else []

    def read_text(self, name: str) -> str | None:
        try:
            return (self.root / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def write_text(self, name: str, text: str) -> None:
        with self.lock:
            write_atomically(self.root / name, text.encode())
