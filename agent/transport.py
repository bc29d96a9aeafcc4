"""Addresses and byte streams: vsock, unix, tcp and virtio-serial ports.

``vsock://-1:1024`` (the Kata default; -1 is VMADDR_CID_ANY), ``unix://PATH``,
``tcp://HOST:PORT`` (tests), ``serial:///dev/virtio-ports/NAME`` (a
virtio-serial port: QEMU without vhost-vsock connects it to a unix socket on
the host; it is one byte stream, so one client at a time; the port stays open
across host reconnections).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import stat
import termios
import time
import tty
from typing import Protocol

from agent.devices import resolve
from agent.errors import AgentError
from agent.record import record

VMADDR_CID_ANY = 0xFFFFFFFF
DEFAULT_ADDRESS = "vsock://-1:1024"


class AddressError(AgentError, ValueError):
    """An address string cocoon cannot listen on or connect to."""


class Stream(Protocol):
    def recv_into(self, buffer: memoryview, nbytes: int = 0) -> int: ...
    def sendall(self, data: bytes) -> None: ...
    def close(self) -> None: ...


@record(frozen=True)
class Address:
    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.scheme in ("unix", "serial"):
            return f"{self.scheme}://{self.path}"
        return f"{self.scheme}://{self.host}:{self.port}"


def parse(text: str) -> Address:
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise AddressError(f"address {text!r} has no scheme (vsock://CID:PORT, unix://PATH, tcp://HOST:PORT, "
                           "serial://DEVICE)")
    if scheme in ("unix", "serial"):
        if not rest:
            raise AddressError(f"address {text!r} has no path")
        return Address(scheme, path=rest)
    if scheme in ("vsock", "tcp"):
        host, colon, port = rest.rpartition(":")
        limit = 1 << 16 if scheme == "tcp" else 1 << 32
        if not colon or not port.isdigit() or not 0 <= int(port) < limit:
            raise AddressError(f"address {text!r}: expected {scheme}://HOST:PORT")
        if scheme == "vsock":
            try:
                cid = int(host)
            except ValueError:
                raise AddressError(f"address {text!r}: vsock CID must be a number (-1 for any)") from None
            if not -1 <= cid < 1 << 32:
                raise AddressError(f"address {text!r}: vsock CID out of range")
        return Address(scheme, host=host.strip("[]"), port=int(port))
    raise AddressError(f"address {text!r}: unknown scheme {scheme!r} (vsock, unix, tcp, serial)")


class SerialStream:
    """One host connection over a virtio-serial port (or a pty in tests) as a Stream.

    The port's file descriptor belongs to the Listener and stays open for the
    agent's life: closing and reopening it between host connections drops
    whatever a reconnecting host sent in between (the guest driver discards
    a port's unread data on release). A read of 0 bytes means the host side
    went away; that ends this connection, not the port.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.closed = False

    def recv_into(self, buffer: memoryview, nbytes: int = 0) -> int:
        if self.closed:
            return 0
        data = os.read(self.fd, nbytes or len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def shutdown(self, how: int) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True


def open_serial(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY)
    if os.isatty(fd):  # a real virtio port is not a tty; a test pty must not cook bytes
        tty.setraw(fd, termios.TCSANOW)
    return fd


def wait_for_host(fd: int, poll_interval: float = 0.05) -> None:
    """Block until the host side of a virtio-serial port is connected (or has left data).

    The guest driver reports a port whose host end is closed as POLLHUP, and
    POLLIN too (a read would return 0 at once), so this polls for a state
    change instead of sleeping in poll().
    """
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    while True:
        events = poller.poll()
        if events and not events[0][1] & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
            return
        time.sleep(poll_interval)


class Listener:
    """Accepts Streams; a serial port is one stream, handed out again once the previous host connection ended."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self.sock: socket.socket | None = None
        self._serial_busy = False
        self._serial_fd: int | None = None
        # no udev in the image: a port's name may only be in sysfs
        self.serial_path = resolve(address.path) if address.scheme == "serial" else address.path
        if address.scheme == "serial":
            if not os.path.exists(self.serial_path):
                raise AddressError(f"serial port {address.path} does not exist")
            return
        if address.scheme == "unix":
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(address.path).st_mode):
                    os.unlink(address.path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(address.path)
        elif address.scheme == "tcp":
            sock = socket.create_server((address.host, address.port), reuse_port=False)
        else:
            if not hasattr(socket, "AF_VSOCK"):
                raise AddressError("this Python has no AF_VSOCK support")
            cid = int(address.host)
            sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
            try:
                sock.bind((VMADDR_CID_ANY if cid == -1 else cid, address.port))
            except OSError as exc:
                sock.close()
                raise AddressError(f"cannot listen on {address}: {exc.strerror} (is vsock available?)") from None
        sock.listen(128)
        self.sock = sock

    @property
    def bound(self) -> str:
        if self.sock is not None and self.address.scheme == "tcp":
            host, port = self.sock.getsockname()[:2]
            return f"tcp://{host}:{port}"
        return str(self.address)

    def accept(self) -> tuple[Stream, str]:
        if self.sock is None:
            while self._serial_busy:
                time.sleep(0.05)
            if self._serial_fd is None:
                self._serial_fd = open_serial(self.serial_path)
            wait_for_host(self._serial_fd)
            self._serial_busy = True
            return SerialStream(self._serial_fd), self.address.path
        conn, peer = self.sock.accept()
        return conn, str(peer)

    def released(self, stream: Stream) -> None:
        """The connection on ``stream`` ended (only matters for serial ports)."""
        if self.sock is None:
            self._serial_busy = False

    def close(self) -> None:
        if self._serial_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._serial_fd)
            self._serial_fd = None
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            if self.address.scheme == "unix":
                with contextlib.suppress(OSError):
                    os.unlink(self.address.path)


def connect(address: Address, timeout: float | None = 10.0) -> socket.socket:
    """A client socket to ``address`` (a serial port's host side is a unix socket)."""
    if address.scheme in ("unix", "serial"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: object = address.path
    elif address.scheme == "tcp":
        sock = socket.socket(socket.AF_INET6 if ":" in address.host else socket.AF_INET, socket.SOCK_STREAM)
        target = (address.host, address.port)
    else:
        sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        target = (int(address.host) & 0xFFFFFFFF, address.port)
    sock.settimeout(timeout)
    try:
        sock.connect(target)  # type: ignore[arg-type]
    except OSError:
        sock.close()
        raise
    sock.settimeout(None)
    return sock
