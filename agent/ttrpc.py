"""containerd's ttRPC, server and client, small enough to read in one sitting.

Wire format (containerd/ttrpc PROTOCOL.md): a frame is a 10-byte header
(u32 big-endian data length, u32 big-endian stream id, u8 type, u8 flags)
and at most 4 MiB of data. Type 1 Request carries ttrpc.Request{service,
method, payload, timeout_nano, metadata}; type 2 Response carries
ttrpc.Response{google.rpc.Status status, payload}. Clients use odd stream
ids, one unary call per stream; many calls are in flight on one connection.

Failure handling, as ttrpc-go does it: an oversized frame is drained and
answered RESOURCE_EXHAUSTED on its stream; an even stream id, an undecodable
Request or payload is answered INVALID_ARGUMENT; frames of other types are
ignored; a connection that ends mid-frame is closed. Nothing a peer sends
can raise out of the connection thread.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from google.protobuf.message import DecodeError, Message

from agent.protocols import ttrpc_pb2
from agent.rpc import Code, Context, Method, Registry, RpcError, run_after_reply
from agent.transport import Address, Listener, Stream, connect

log = logging.getLogger("cocoon.ttrpc")

HEADER = struct.Struct(">IIBB")
HEADER_SIZE = HEADER.size  # 10
MAX_DATA = 4 << 20
TYPE_REQUEST = 0x1
TYPE_RESPONSE = 0x2
TYPE_DATA = 0x3


class ProtocolError(Exception):
    """The byte stream is not ttRPC (or ended mid-frame): the connection is closed."""


def read_exact(stream: Stream, size: int) -> bytes:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = stream.recv_into(view[got:], size - got)
        if n == 0:
            raise ProtocolError(f"connection closed after {got} of {size} bytes")
        got += n
    return bytes(buf)


def _drain(stream: Stream, size: int) -> None:
    chunk = bytearray(min(size, 1 << 16))
    while size:
        n = stream.recv_into(memoryview(chunk), min(size, len(chunk)))
        if n == 0:
            raise ProtocolError("connection closed while discarding an oversized frame")
        size -= n


def read_frame(stream: Stream) -> tuple[int, int, int, bytes | None]:
    """(stream id, type, flags, data); data is None for an oversized frame (already drained)."""
    length, sid, mtype, flags = HEADER.unpack(read_exact(stream, HEADER_SIZE))
    if length > MAX_DATA:
        _drain(stream, length)
        return sid, mtype, flags, None
    return sid, mtype, flags, read_exact(stream, length) if length else b""


def encode_frame(sid: int, mtype: int, data: bytes, flags: int = 0) -> bytes:
    if len(data) > MAX_DATA:
        raise RpcError(Code.RESOURCE_EXHAUSTED, f"message of {len(data)} bytes exceeds the ttRPC limit of {MAX_DATA}")
    return HEADER.pack(len(data), sid, mtype, flags) + data


def _status_response(code: Code, message: str) -> bytes:
    return ttrpc_pb2.Response(status=ttrpc_pb2.Status(code=int(code), message=message)).SerializeToString()


class _Connection:
    """One client connection: a reader loop, handlers on a pool, serialized writes."""

    def __init__(self, server: TtrpcServer, stream: Stream, peer: str) -> None:
        self.server = server
        self.stream = stream
        self.peer = peer
        self.write_lock = threading.Lock()
        self.closed = False

    def send(self, sid: int, payload: bytes) -> None:
        try:
            frame = encode_frame(sid, TYPE_RESPONSE, payload)
        except RpcError as exc:
            frame = encode_frame(sid, TYPE_RESPONSE, _status_response(exc.code, exc.message))
        with self.write_lock:
            if self.closed:
                return
            try:
                self.stream.sendall(frame)
            except OSError:
                self.closed = True

    def serve(self) -> None:
        try:
            handshake = getattr(self.stream, "do_handshake", None)
            if handshake is not None:
                handshake()  # TLS (aTLS): mint the evidence certificate on this thread, not the accept loop
            while not self.server.stopping:
                sid, mtype, _flags, data = read_frame(self.stream)
                if mtype != TYPE_REQUEST:
                    continue  # responses/data from a client mean nothing to a unary server
                if data is None:
                    self.send(sid, _status_response(Code.RESOURCE_EXHAUSTED,
                                                    f"request exceeds the ttRPC limit of {MAX_DATA} bytes"))
                    continue
                if sid % 2 == 0:
                    self.send(sid, _status_response(Code.INVALID_ARGUMENT,
                                                    "stream id must be odd for client-initiated streams"))
                    continue
                self.dispatch(sid, data)
        except (ProtocolError, OSError):
            pass
        finally:
            with self.write_lock:
                self.closed = True
            with contextlib.suppress(OSError):
                self.stream.close()

    def dispatch(self, sid: int, data: bytes) -> None:
        req = ttrpc_pb2.Request()
        try:
            req.ParseFromString(data)
            method = self.server.registry.lookup(req.service, req.method)
        except DecodeError:
            self.send(sid, _status_response(Code.INVALID_ARGUMENT, "request frame is not a ttrpc.Request"))
            return
        except RpcError as exc:
            self.send(sid, _status_response(exc.code, exc.message))
            return
        ctx = Context("ttrpc", self.peer, req.timeout_nano / 1e9 if req.timeout_nano > 0 else None,
                      {kv.key: kv.value for kv in req.metadata})
        args = (self, sid, method, req.payload, ctx)
        if method.long_running:
            threading.Thread(target=self.server.call, args=args, daemon=True, name=f"ttrpc-{method.name}").start()
        else:
            self.server.pool.submit(self.server.call, *args)


class TtrpcServer:
    """Serves a Registry on any number of listeners; one thread per connection, a pool for calls."""

    def __init__(self, registry: Registry, workers: int = 32) -> None:
        self.registry = registry
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ttrpc-call")
        self.listeners: list[Listener] = []
        self.stopping = False
        self._threads: list[threading.Thread] = []
        self._conns: set[_Connection] = set()
        self._lock = threading.Lock()

    def call(self, conn: _Connection, sid: int, method: Method, payload: bytes, ctx: Context) -> None:
        try:
            request = method.request()
            try:
                request.ParseFromString(payload)
            except DecodeError:
                raise RpcError(Code.INVALID_ARGUMENT, f"payload is not a valid {method.request.__name__}") from None
            response = method.handler(request, ctx)
            body = ttrpc_pb2.Response(status=ttrpc_pb2.Status(code=0), payload=response.SerializeToString())
            conn.send(sid, body.SerializeToString())
            run_after_reply(ctx)
        except RpcError as exc:
            conn.send(sid, _status_response(exc.code, exc.message))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a handler bug (even a native panic) answers INTERNAL; the connection lives
            log.exception("handler %s failed", method.name)
            conn.send(sid, _status_response(Code.INTERNAL, f"{method.name} failed: {type(exc).__name__}: {exc}"))

    def listen(self, address: Address) -> Listener:
        listener = Listener(address)
        self.add_listener(listener)
        return listener

    def add_listener(self, listener: Any) -> Any:
        """Serve on anything with accept()/released()/close() (a Listener, or aTLS around one)."""
        self.listeners.append(listener)
        t = threading.Thread(target=self._accept_loop, args=(listener,), daemon=True,
                             name=f"ttrpc-accept {listener.address}")
        t.start()
        self._threads.append(t)
        return listener

    def _accept_loop(self, listener: Any) -> None:
        while not self.stopping:
            try:
                stream, peer = listener.accept()
            except OSError:
                if self.stopping:
                    return
                time.sleep(0.1)
                continue
            conn = _Connection(self, stream, peer)
            with self._lock:
                self._conns.add(conn)

            def run(c: _Connection = conn) -> None:
                try:
                    c.serve()
                finally:
                    listener.released(c.stream)
                    with self._lock:
                        self._conns.discard(c)

            threading.Thread(target=run, daemon=True, name=f"ttrpc-conn {peer}").start()

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def stop(self) -> None:
        self.stopping = True
        for listener in self.listeners:
            listener.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.stream.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
        self.pool.shutdown(wait=True, cancel_futures=True)


class TtrpcClient:
    """A thread-safe client: concurrent calls share one connection, matched by stream id."""

    def __init__(self, address: Address | str, timeout: float | None = 10.0, sock: Any = None) -> None:
        """Connect to ``address``, or speak over ``sock`` (e.g. an aTLS stream already verified)."""
        from agent.transport import parse

        self.address = parse(address) if isinstance(address, str) else address
        self.sock = sock if sock is not None else connect(self.address, timeout)
        self._next = 1
        self._pending: dict[int, Future[ttrpc_pb2.Response]] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed: Exception | None = None
        self._reader = threading.Thread(target=self._read_loop, daemon=True, name="ttrpc-client")
        self._reader.start()

    def _read_loop(self) -> None:
        try:
            while True:
                sid, mtype, _flags, data = read_frame(self.sock)
                if mtype != TYPE_RESPONSE:
                    continue
                with self._lock:
                    fut = self._pending.pop(sid, None)
                if fut is None:
                    continue
                resp = ttrpc_pb2.Response()
                try:
                    if data is None:
                        raise DecodeError("oversized response")
                    resp.ParseFromString(data)
                except DecodeError as exc:
                    fut.set_exception(RpcError(Code.INTERNAL, f"undecodable response: {exc}"))
                    continue
                fut.set_result(resp)
        except (ProtocolError, OSError) as exc:
            self._fail_all(exc)

    def _fail_all(self, exc: Exception) -> None:
        with self._lock:
            self._closed = exc
            pending, self._pending = self._pending, {}
        for fut in pending.values():
            fut.set_exception(RpcError(Code.UNAVAILABLE, f"connection lost: {exc}"))

    def call(self, service: str, method: str, request: Message, response_type: type[Any],
             timeout: float | None = 60.0) -> Any:
        fut: Future[ttrpc_pb2.Response] = Future()
        with self._lock:
            if self._closed is not None:
                raise RpcError(Code.UNAVAILABLE, f"connection lost: {self._closed}")
            sid = self._next
            self._next += 2
            self._pending[sid] = fut
        req = ttrpc_pb2.Request(service=service, method=method, payload=request.SerializeToString(),
                                timeout_nano=int(timeout * 1e9) if timeout else 0)
        frame = encode_frame(sid, TYPE_REQUEST, req.SerializeToString())
        try:
            with self._write_lock:
                self.sock.sendall(frame)
        except OSError as exc:
            with self._lock:
                self._pending.pop(sid, None)
            raise RpcError(Code.UNAVAILABLE, f"send failed: {exc}") from None
        try:
            resp = fut.result(timeout)
        except TimeoutError:
            with self._lock:
                self._pending.pop(sid, None)
            raise RpcError(Code.DEADLINE_EXCEEDED, f"{service}/{method} timed out after {timeout}s") from None
        if resp.status.code != 0:
            raise RpcError(Code(resp.status.code) if resp.status.code in Code._value2member_map_ else Code.UNKNOWN,
                           resp.status.message)
        out = response_type()
        try:
            out.ParseFromString(resp.payload)
        except DecodeError:
            raise RpcError(Code.INTERNAL, f"response payload is not a {response_type.__name__}") from None
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._reader.join(timeout=5)

    def __enter__(self) -> TtrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
