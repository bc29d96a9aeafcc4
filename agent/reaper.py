"""Child processes of the agent: spawn, reap every one, hand exit statuses to whoever waits.

The agent is a subreaper (PR_SET_CHILD_SUBREAPER): container processes that
runc leaves behind become its children, and so does anything they orphan. A
single thread reaps every child with waitid(P_ALL) and records the status, so
there are no zombies and no two waiters race for one pid. Because that
thread reaps everything, the agent must not use subprocess.Popen's own
waiting; every child goes through ``Reaper.spawn``/``Reaper.run``.
Statuses follow the shell convention: exit code, or 128 + signal number.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.errors import AgentError

PR_SET_CHILD_SUBREAPER = 36
# systemd's per-service variables are the agent's, not its children's: runc would otherwise try to
# forward sd_notify to a socket that expects only the agent.
PRIVATE_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
UNCLAIMED_TTL = 300.0  # seconds an exit status of a pid nobody asked about is kept

log = logging.getLogger("cocoon.agent")


class ProcessError(AgentError):
    """A helper process failed to start or finished badly."""


@dataclass
class Result:
    status: int
    stdout: bytes
    stderr: bytes


def set_subreaper() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def _status(info: os.waitid_result) -> int:
    if info.si_code == os.CLD_EXITED:
        return info.si_status
    return 128 + info.si_status


class Reaper:
    def __init__(self) -> None:
        set_subreaper()
        self._cond = threading.Condition()
        self._exited: dict[int, tuple[int, float]] = {}
        self._watchers: dict[int, Callable[[int], None]] = {}
        self._thread = threading.Thread(target=self._loop, daemon=True, name="reaper")
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED)
            except ChildProcessError:
                with self._cond:
                    self._cond.wait(0.2)  # no children yet; spawn() notifies
                continue
            except InterruptedError:
                continue
            except OSError:  # never let the reaper die: every later child would become a zombie
                time.sleep(0.05)
                continue
            if info is None:
                continue
            now = time.monotonic()
            with self._cond:
                watcher = self._watchers.pop(info.si_pid, None)
                if watcher is None:
                    self._exited[info.si_pid] = (_status(info), now)
                for pid, (_, when) in list(self._exited.items()):
                    if now - when > UNCLAIMED_TTL:
                        del self._exited[pid]
                self._cond.notify_all()
            if watcher is not None:
                self._notify(watcher, _status(info))

    @staticmethod
    def _notify(watcher: Callable[[int], None], status: int) -> None:
        try:
            watcher(status)
        except Exception:  # a watcher's bug must not stop the reaping of every later child
            log.exception("exit watcher failed")

    def watch(self, pid: int, watcher: Callable[[int], None]) -> None:
        """Hand ``pid``'s exit status to ``watcher`` (on the reaper thread, so it must not block), once.

        Why not ``wait``: a container process may exit long before anyone asks (and the status of a
        pid nobody claimed is dropped after UNCLAIMED_TTL); its owner keeps the status instead.
        """
        with self._cond:
            item = self._exited.pop(pid, None)
            if item is None:
                self._watchers[pid] = watcher
                return
        self._notify(watcher, item[0])

    def spawn(self, argv: list[str], stdin: int | None = None, stdout: int | None = None,
              stderr: int | None = None, env: dict[str, str] | None = None) -> int:
        """Start ``argv`` with the given fds as 0/1/2 (default /dev/null); returns the pid."""
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            actions = [(os.POSIX_SPAWN_DUP2, fd if fd is not None else null, target)
                       for target, fd in enumerate((stdin, stdout, stderr))]
            try:
                child_env = env if env is not None else {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
                pid = os.posix_spawnp(argv[0], argv, child_env,
                                      file_actions=actions, setsigdef=(15, 2, 13))
            except OSError as exc:
                raise ProcessError(f"cannot start {argv[0]}: {exc.strerror}") from None
        finally:
            os.close(null)
        with self._cond:
            self._cond.notify_all()
        return pid

    def wait(self, pid: int, timeout: float | None = None) -> int | None:
        """The exit status of ``pid`` (claimed: a second wait for it returns None), or None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while pid not in self._exited:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining if remaining is not None else 1.0)
            return self._exited.pop(pid)[0]

    def peek(self, pid: int) -> int | None:
        with self._cond:
            item = self._exited.get(pid)
            return None if item is None else item[0]

    def run(self, argv: list[str], timeout: float = 60.0, input: bytes = b"") -> Result:
        """Run a helper to completion, capturing its output (bounded to 1 MiB each)."""
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
        try:
            pid = self.spawn(argv, in_r, out_w, err_w)
        finally:
            for fd in (out_w, err_w, in_r):
                os.close(fd)
        bufs: dict[int, bytearray] = {out_r: bytearray(), err_r: bytearray()}

        def drain(fd: int) -> None:
            while chunk := os.read(fd, 65536):
                if len(bufs[fd]) < 1 << 20:
                    bufs[fd] += chunk

        readers = [threading.Thread(target=drain, args=(fd,), daemon=True) for fd in (out_r, err_r)]
        for t in readers:
            t.start()
        with contextlib.suppress(OSError):
            if input:
                os.write(in_w, input)
        os.close(in_w)
        status = self.wait(pid, timeout)
        if status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
            self.wait(pid, 10)
            for t in readers:
                t.join(5)
            os.close(out_r)
            os.close(err_r)
            raise ProcessError(f"{argv[0]} did not finish within {timeout:.0f} s")
        for t in readers:
            t.join(10)
        os.close(out_r)
        os.close(err_r)
        return Result(status, bytes(bufs[out_r]), bytes(bufs[err_r]))

    def check(self, argv: list[str], timeout: float = 60.0) -> Result:
        r = self.run(argv, timeout)
        if r.status != 0:
            msg = (r.stderr or r.stdout).decode(errors="replace").strip().splitlines()
            raise ProcessError(f"{' '.join(argv[:3])} failed ({r.status}): {msg[-1] if msg else 'no output'}")
        return r
