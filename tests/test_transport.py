"""Addresses and the virtio-serial listener (a pty stands in for /dev/virtio-ports/NAME)."""

from __future__ import annotations

import os
import pty
import threading
import tty
from typing import Any

import pytest

from agent.binding import Binding
from agent.protocols import health_pb2, ttrpc_pb2
from agent.service import Agent
from agent.transport import AddressError, parse
from agent.ttrpc import HEADER, TtrpcServer, read_frame


@pytest.mark.parametrize(("text", "scheme", "host", "port", "path"), [
    ("vsock://-1:1024", "vsock", "-1", 1024, ""),
    ("vsock://3:1024", "vsock", "3", 1024, ""),
    ("unix:///run/agent.sock", "unix", "", 0, "/run/agent.sock"),
    ("tcp://127.0.0.1:0", "tcp", "127.0.0.1", 0, ""),
    ("tcp://[::1]:8080", "tcp", "::1", 8080, ""),
    ("serial:///dev/virtio-ports/agent", "serial", "", 0, "/dev/virtio-ports/agent"),
])
def test_parse(text: str, scheme: str, host: str, port: int, path: str) -> None:
    a = parse(text)
    assert (a.scheme, a.host, a.port, a.path) == (scheme, host, port, path)


@pytest.mark.parametrize("bad", ["agent.sock", "http://x:1", "tcp://host", "tcp://h:99999", "vsock://x:1",
                                 "unix://", "vsock://-2:1"])
def test_parse_errors(bad: str) -> None:
    with pytest.raises(AddressError):
        parse(bad)


def test_serial_port_serves_ttrpc() -> None:
    """The agent opens the port by path, as it would /dev/virtio-ports/NAME; the host side talks on the master."""
    master, slave = pty.openpty()
    tty.setraw(slave)  # a virtio port is a plain byte pipe; the agent also sets raw mode when it sees a tty
    port_path = os.ttyname(slave)
    server = TtrpcServer(Agent(Binding("deny-all", "serial test")).registry())
    server.listen(parse(f"serial://{port_path}"))
    try:
        body = ttrpc_pb2.Request(service="grpc.Health", method="Check",
                                 payload=health_pb2.CheckRequest().SerializeToString()).SerializeToString()
        os.write(master, HEADER.pack(len(body), 1, 1, 0) + body)

        class MasterStream:
            def recv_into(self, buf, n=0):  # type: ignore[no-untyped-def]
                data = os.read(master, n or len(buf))
                buf[: len(data)] = data
                return len(data)

            def sendall(self, data: bytes) -> None:
                raise AssertionError("the reader only reads")

            def close(self) -> None:
                pass

        result: list[Any] = []
        reader = threading.Thread(target=lambda: result.append(read_frame(MasterStream())), daemon=True)
        reader.start()
        reader.join(timeout=20)
        assert result, "no response on the serial port"
        sid, mtype, _flags, data = result[0]
        resp = ttrpc_pb2.Response()
        resp.ParseFromString(data)
        assert sid == 1 and mtype == 2 and resp.status.code == 0
        assert health_pb2.HealthCheckResponse.FromString(resp.payload).status == 1
    finally:
        server.stop()
        os.close(master)
        os.close(slave)


def test_missing_serial_port_is_an_address_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = TtrpcServer(Agent(Binding("deny-all", "x")).registry())
    with pytest.raises(AddressError, match="does not exist"):
        server.listen(parse(f"serial://{tmp_path}/nope"))
    server.stop()


def test_vsock_listener_binds_any_cid() -> None:
    """The Kata default address; this machine has AF_VSOCK but no transport to connect through."""
    import socket

    if not hasattr(socket, "AF_VSOCK"):
        pytest.skip("no AF_VSOCK in this Python")
    from agent.transport import Listener

    listener = Listener(parse("vsock://-1:47301"))
    try:
        assert listener.sock is not None and listener.sock.family == socket.AF_VSOCK
        assert listener.sock.getsockname() == (0xFFFFFFFF, 47301)
        assert listener.bound == "vsock://-1:47301"
    finally:
        listener.close()
