"""ttRPC framing, server robustness and concurrency over real unix sockets."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.binding import Binding
from agent.protocols import health_pb2, ttrpc_pb2
from agent.rpc import Code, RpcError
from agent.service import Agent
from agent.transport import parse
from agent.ttrpc import HEADER, MAX_DATA, TtrpcClient, TtrpcServer, read_frame


@pytest.fixture
def server(tmp_path):  # type: ignore[no-untyped-def]
    srv = TtrpcServer(Agent(Binding("deny-all", "test binding")).registry())
    path = tmp_path / "agent.sock"
    srv.listen(parse(f"unix://{path}"))
    yield srv, f"unix://{path}"
    srv.stop()


def raw_conn(address: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(address.removeprefix("unix://"))
    s.settimeout(10)
    return s


def check_request(sid: int = 1) -> bytes:
    body = ttrpc_pb2.Request(service="grpc.Health", method="Check",
                             payload=health_pb2.CheckRequest().SerializeToString()).SerializeToString()
    return HEADER.pack(len(body), sid, 1, 0) + body


def response(sock: socket.socket) -> tuple[int, ttrpc_pb2.Response]:
    sid, mtype, _flags, data = read_frame(sock)
    assert mtype == 2 and data is not None
    r = ttrpc_pb2.Response()
    r.ParseFromString(data)
    return sid, r


def test_header_layout_is_big_endian_10_bytes() -> None:
    assert HEADER.size == 10
    assert HEADER.pack(5, 3, 1, 0) == b"\x00\x00\x00\x05\x00\x00\x00\x03\x01\x00"


def test_health_and_denials_over_a_socket(server) -> None:  # type: ignore[no-untyped-def]
    _, address = server
    with TtrpcClient(address) as c:
        resp = c.call("grpc.Health", "Check", health_pb2.CheckRequest(), health_pb2.HealthCheckResponse)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        from google.protobuf import empty_pb2

        from agent.protocols import agent_pb2

        with pytest.raises(RpcError) as err:
            c.call("grpc.AgentService", "CreateContainer", agent_pb2.CreateContainerRequest(container_id="x"),
                   empty_pb2.Empty)
        assert err.value.code == Code.PERMISSION_DENIED
        assert "CreateContainerRequest is blocked by policy: agent is in deny-all mode: test binding" in str(err.value)
        with pytest.raises(RpcError) as err:
            c.call("grpc.Nope", "X", health_pb2.CheckRequest(), health_pb2.HealthCheckResponse)
        assert err.value.code == Code.UNIMPLEMENTED


def test_garbage_frames_get_statuses_and_server_survives(server) -> None:  # type: ignore[no-untyped-def]
    _, address = server
    s = raw_conn(address)
    s.sendall(HEADER.pack(7, 1, 1, 0) + b"\xff" * 7)  # not a Request
    sid, r = response(s)
    assert sid == 1 and r.status.code == Code.INVALID_ARGUMENT
    s.sendall(check_request(sid=2))  # even stream id
    sid, r = response(s)
    assert sid == 2 and r.status.code == Code.INVALID_ARGUMENT and "odd" in r.status.message
    big = MAX_DATA + 1
    s.sendall(HEADER.pack(big, 3, 1, 0))
    s.sendall(bytes(big))  # drained, not buffered whole
    sid, r = response(s)
    assert sid == 3 and r.status.code == Code.RESOURCE_EXHAUSTED
    s.sendall(HEADER.pack(3, 5, 0x7F, 0) + b"abc")  # unknown type: ignored
    body = ttrpc_pb2.Request(service="grpc.Health", method="Check", payload=b"\xff\xff").SerializeToString()
    s.sendall(HEADER.pack(len(body), 7, 1, 0) + body)  # bad payload for the method
    sid, r = response(s)
    assert sid == 7 and r.status.code == Code.INVALID_ARGUMENT
    s.sendall(check_request(sid=9))
    sid, r = response(s)
    assert sid == 9 and r.status.code == 0
    s.sendall(b"\x00\x00\x00")  # short header, then hang up
    s.close()
    with TtrpcClient(address) as c:  # the server still serves others
        assert c.call("grpc.Health", "Check", health_pb2.CheckRequest(), health_pb2.HealthCheckResponse).status == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 255), st.integers(0, 255),
                          st.binary(max_size=64)), max_size=6),
       st.binary(max_size=64))
def test_random_frames_never_kill_the_server(server, frames, tail) -> None:  # type: ignore[no-untyped-def]
    _, address = server
    s = raw_conn(address)
    for sid, mtype, flags, data in frames:
        s.sendall(HEADER.pack(len(data), sid, mtype, flags) + data)
    s.sendall(tail)
    s.close()
    with TtrpcClient(address) as c:
        assert c.call("grpc.Health", "Check", health_pb2.CheckRequest(), health_pb2.HealthCheckResponse).status == 1


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _conn_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(("ttrpc-conn", "ttrpc-client")))


def test_64_clients_200_requests_no_leaks(server) -> None:  # type: ignore[no-untyped-def]
    """Two rounds of 64 clients x 200 calls: no errors, and nothing grows from round one to two."""
    srv, address = server
    errors: list[BaseException] = []

    def client() -> None:
        try:
            with TtrpcClient(address) as c:
                for _ in range(200):
                    r = c.call("grpc.Health", "Check", health_pb2.CheckRequest(), health_pb2.HealthCheckResponse)
                    assert r.status == 1
        except BaseException as exc:
            errors.append(exc)

    def round_() -> tuple[int, int]:
        workers = [threading.Thread(target=client) for _ in range(64)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        deadline = time.time() + 10
        while time.time() < deadline and (srv.connections or _conn_threads()):
            time.sleep(0.05)
        return _fds(), sum(1 for t in threading.enumerate() if not t.name.startswith("ttrpc-call"))

    base_fds = _fds()
    base_threads = sum(1 for t in threading.enumerate() if not t.name.startswith("ttrpc-call"))
    fds1, threads1 = round_()
    fds2, threads2 = round_()
    assert errors == []
    assert srv.connections == 0 and _conn_threads() == 0
    assert fds1 <= base_fds and fds2 <= base_fds
    assert threads1 <= base_threads and threads2 <= base_threads  # only the bounded call pool remains
    assert sum(1 for t in threading.enumerate() if t.name.startswith("ttrpc-call")) <= srv.pool._max_workers


def test_many_calls_in_flight_on_one_connection(server) -> None:  # type: ignore[no-untyped-def]
    _, address = server
    s = raw_conn(address)
    s.sendall(b"".join(check_request(sid) for sid in range(1, 200, 2)))
    seen = {response(s)[0] for _ in range(100)}
    assert seen == set(range(1, 200, 2))
    s.close()


def test_client_reports_connection_loss(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "s"
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(str(path))
    lsock.listen(1)
    c = TtrpcClient(f"unix://{path}")
    conn, _ = lsock.accept()
    conn.close()
    with pytest.raises(RpcError) as err:
        c.call("grpc.Health", "Check", health_pb2.CheckRequest(), health_pb2.HealthCheckResponse, timeout=5)
    assert err.value.code == Code.UNAVAILABLE
    c.close()
    lsock.close()
    assert struct.calcsize(">IIBB") == 10
