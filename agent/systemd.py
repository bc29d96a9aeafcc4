"""systemd integration: sd_notify (READY/STATUS/WATCHDOG) and journald fields.

Uses systemd-python when it is importable (the image ships Debian's
python3-systemd); sd_notify falls back to writing the datagram itself, since
the protocol is one sendto on $NOTIFY_SOCKET. Outside systemd (no
$NOTIFY_SOCKET, no $JOURNAL_STREAM) notifications are no-ops and logs go to
stderr as plain lines.
"""

from __future__ import annotations

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
    try:
        from systemd import daemon

        return bool(daemon.notify(state))
    except ImportError:
        pass
    except OSError:  # systemd went away (or a test's socket closed): nothing to tell
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
    """journald with structured fields under systemd, plain stderr otherwise."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler | None = None
    if os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"):
        try:
            from systemd.journal import JournalHandler

            handler = JournalHandler(SYSLOG_IDENTIFIER="cocoon-agent")
        except ImportError:
            handler = None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Plain())
    root.addHandler(handler)
