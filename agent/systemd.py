"""systemd integration: sd_notify (READY/STATUS/WATCHDOG) and journald fields.

Both protocols are a datagram on a unix socket, written here rather than
through python-systemd: importing ``systemd.journal`` (its C modules link
libsystemd, libgcrypt and friends, and it imports uuid and datetime) took
~20 ms natively, a second or more of a TCG boot, on the agent's start-up path.
sd_notify is one sendto on $NOTIFY_SOCKET (sd_notify(3)); a journal entry is
one sendto on /run/systemd/journal/socket in the native protocol (systemd's
"Native Journal Protocol" document): ``KEY=value\n`` per field, or
``KEY\n`` + 64-bit little-endian length + value + ``\n`` when the value
holds a newline; an entry too large for a datagram travels as a sealed
memfd passed with SCM_RIGHTS. Outside systemd (no $NOTIFY_SOCKET) notifications
are no-ops; without a journal socket (outside systemd, or in the cocoon image,
which runs no journald) logs go to stderr as plain lines.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import sys
import threading


def notify(state: str) -> bool:
    """Send ``state`` (e.g. "READY=1\\nSTATUS=...") to systemd; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    """Half of WatchdogSec (systemd's advice), if systemd asked this process for pings."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6 / 2
    except ValueError:
        return None


def start_watchdog(stop: threading.Event) -> threading.Thread | None:
    interval = watchdog_interval()
    if interval is None:
        return None

    def ping() -> None:
        while not stop.wait(interval):
            notify("WATCHDOG=1")

    t = threading.Thread(target=ping, daemon=True, name="sd-watchdog")
    t.start()
    return t


class _Plain(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"cocoon-agent: {record.levelname.lower()}: {record.getMessage()}"


def setup_logging(level: str = "info") -> None:
    """journald with structured fields under systemd when a journal runs, plain stderr otherwise
    (the cocoon image runs no journald: its console is where the agent's lines go)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler
    under_systemd = os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID")
    if under_systemd and os.path.exists(JOURNAL_SOCKET):
        handler = JournalHandler("cocoon-agent")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Plain())
    root.addHandler(handler)


JOURNAL_SOCKET = "/run/systemd/journal/socket"
#: syslog priorities (RFC 5424) of the logging levels, as journald's PRIORITY= field wants them
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}
#: LogRecord attributes that are never journal fields (``extra=`` keys in capitals are)
_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def journal_fields(record: logging.LogRecord, identifier: str) -> list[tuple[str, str]]:
    """The journal entry of one record: message and priority, where it came from, and the caller's
    ``extra=`` fields whose names journald accepts (capitals, digits, ``_``, not leading ``_``)."""
    message = record.getMessage()
    if record.exc_info:
        import traceback

        message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
    fields = [("MESSAGE", message), ("PRIORITY", str(_PRIORITY.get(record.levelno, 6))),
              ("SYSLOG_IDENTIFIER", identifier), ("LOGGER", record.name), ("THREAD_NAME", str(record.threadName)),
              ("CODE_FILE", record.pathname), ("CODE_LINE", str(record.lineno)), ("CODE_FUNC", record.funcName)]
    for key, value in record.__dict__.items():
        if key not in _RECORD_KEYS and _field_name_ok(key):
            fields.append((key, str(value)))
    return fields


def _field_name_ok(name: str) -> bool:
    return 0 < len(name) <= 64 and not name.startswith("_") and all(
        c == "_" or "A" <= c <= "Z" or "0" <= c <= "9" for c in name)


def encode_entry(fields: list[tuple[str, str]]) -> bytes:
    """Fields in the native journal protocol: ``KEY=value\n``, or the length-prefixed form for
    values with a newline."""
    out = bytearray()
    for key, value in fields:
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalHandler(logging.Handler):
    """logging to journald with structured fields; lines on stderr if the journal cannot be reached."""

    def __init__(self, identifier: str, path: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.identifier = identifier
        self.path = path
        self._sock: socket.socket | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = encode_entry(journal_fields(record, self.identifier))
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            try:
                self._sock.sendto(entry, self.path)
            except OSError as exc:
                if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                    raise
                self._send_memfd(entry)
        except OSError:  # no journald (yet, or any more): the line still goes somewhere
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # logging must never take the agent down
            self.handleError(record)

    def _send_memfd(self, entry: bytes) -> None:
        """An entry too large for one datagram: a sealed memfd, as the protocol prescribes."""
        assert self._sock is not None
        fd = os.memfd_create("journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.write(fd, entry)
            os.lseek(fd, 0, os.SEEK_SET)  # the receiver shares this offset; journald maps the file, a reader need not
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
                        | fcntl.F_SEAL_SEAL)
            self._sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))], 0,
                               self.path)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        super().close()
