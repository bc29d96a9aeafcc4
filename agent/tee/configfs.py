"""configfs-tsm: the kernel's one ABI for SNP and TDX reports (Linux >= 6.7).

Sequence per request (Documentation/ABI/testing/configfs-tsm; guest-
components ``attester/src/tsm_report``): mkdir a report directory, check
``provider`` names the driver we expect, read ``generation``, write
``inblob`` (SNP's driver takes exactly 64 bytes), read ``outblob`` and
``auxblob``, re-read ``generation``: it must have grown by exactly our
writes, otherwise another writer raced us and the outblob may answer their
inblob. Always rmdir. File access goes through ``FsOps`` so tests can put a
model of the kernel's behaviour in place of configfs.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import Protocol

from agent.errors import TeeError

DEFAULT_ROOT = "/sys/kernel/config/tsm/report"
INBLOB_MAX = 64  # TSM_INBLOB_MAX
OUTBLOB_MAX = 32 * 1024  # TSM_OUTBLOB_MAX


class FsOps(Protocol):
    def mkdir(self, path: str) -> None: ...
    def rmdir(self, path: str) -> None: ...
    def read(self, path: str) -> bytes: ...
    def write(self, path: str, data: bytes) -> None: ...
    def isdir(self, path: str) -> bool: ...


class RealFs:
    """configfs through the ordinary file API; one open/write/close per attribute write."""

    def mkdir(self, path: str) -> None:
        os.mkdir(path)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def read(self, path: str) -> bytes:
        with open(path, "rb", buffering=0) as f:
            chunks = []
            while chunk := f.read(OUTBLOB_MAX + 1):
                chunks.append(chunk)
                if sum(map(len, chunks)) > OUTBLOB_MAX * 2:
                    raise OSError(errno.EFBIG, "attribute larger than any report")
            return b"".join(chunks)

    def write(self, path: str, data: bytes) -> None:
        with open(path, "wb", buffering=0) as f:
            f.write(data)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)


def _why(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc)


class TsmReport:
    """One provider's view of configfs-tsm."""

    def __init__(self, provider: str, root: str = DEFAULT_ROOT, fs: FsOps | None = None) -> None:
        self.provider = provider
        self.root = root
        self.fs = fs or RealFs()

    def available(self) -> bool:
        return self.fs.isdir(self.root)

    def request(self, inblob: bytes, *, aux: bool) -> tuple[bytes, bytes]:
        """Return (outblob, auxblob) for ``inblob``; TeeError on any kernel refusal or race."""
        if len(inblob) > INBLOB_MAX:
            raise TeeError(f"configfs-tsm inblob is {len(inblob)} bytes, at most {INBLOB_MAX}")
        path = os.path.join(self.root, f"cocoon-{os.getpid()}-{os.urandom(6).hex()}")
        try:
            self.fs.mkdir(path)
        except OSError as exc:
            raise TeeError(f"configfs-tsm: cannot create {path}: {_why(exc)}") from None
        try:
            return self._request_in(path, inblob, aux)
        finally:
            # a failed rmdir must not mask the real answer; the kernel frees the entry at reboot anyway
            with contextlib.suppress(OSError):
                self.fs.rmdir(path)

    def _attr(self, path: str, name: str) -> bytes:
        try:
            return self.fs.read(os.path.join(path, name))
        except OSError as exc:
            raise TeeError(f"configfs-tsm: reading {name} failed: {_why(exc)}") from None

    def _generation(self, path: str) -> int:
        raw = self._attr(path, "generation")
        try:
            return int(raw.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            raise TeeError(f"configfs-tsm: generation is not a number: {raw[:32]!r}") from None

    def _request_in(self, path: str, inblob: bytes, aux: bool) -> tuple[bytes, bytes]:
        provider = self._attr(path, "provider").decode("ascii", "replace").strip()
        if provider != self.provider:
            raise TeeError(f"configfs-tsm provider is {provider!r}, expected {self.provider!r}")
        before = self._generation(path)
        try:
            self.fs.write(os.path.join(path, "inblob"), inblob)
        except OSError as exc:
            raise TeeError(f"configfs-tsm: writing inblob failed: {_why(exc)}") from None
        outblob = self._attr(path, "outblob")
        auxblob = b""
        if aux:
            try:
                auxblob = self.fs.read(os.path.join(path, "auxblob"))
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.EOPNOTSUPP, errno.ENXIO):
                    raise TeeError(f"configfs-tsm: reading auxblob failed: {_why(exc)}") from None
        after = self._generation(path)
        if after != before + 1:
            raise TeeError(
                f"configfs-tsm: generation went from {before} to {after} around one write; "
                "another writer used the report directory, refusing a report that may answer their request"
            )
        if not outblob:
            raise TeeError("configfs-tsm: empty outblob")
        if len(outblob) > OUTBLOB_MAX:
            raise TeeError(f"configfs-tsm: outblob is {len(outblob)} bytes, more than {OUTBLOB_MAX}")
        return outblob, auxblob
