"""The coordinator's front door: aTLS on HOST:PORT (port 1313 by convention), gRPC behind it.

grpcio cannot mint a certificate per handshake from the client's nonce, so the TLS end is cocoon's aTLS
(agent/atls.py: a fresh key per handshake, the TEE's evidence bound to SHA-512(key || nonce) in the
certificate, the nonce sent as the server name) and each decrypted connection is piped to an in-process
gRPC server listening on a unix socket of the coordinator's own work directory. The client does the same
in reverse (client.py). The pipe is bytes only: gRPC's framing, limits and statuses are grpcio's.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

log = logging.getLogger("cocoon-coordinator")
MAX_MESSAGE = 64 << 20
CHUNK = 65536


def pipe(a: Any, b: Any) -> None:
    """Copy both ways between two streams (``recv_into``/``sendall``) until either side ends; close both."""
    done = threading.Event()

    def copy(src: Any, dst: Any) -> None:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        try:
            while not done.is_set():
                n = src.recv_into(view, CHUNK)
                if not n:
                    break
                dst.sendall(bytes(view[:n]))
        except (OSError, ValueError):
            pass
        finally:
            done.set()
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    other = threading.Thread(target=copy, args=(b, a), daemon=True, name="pipe")
    other.start()
    copy(a, b)
    other.join()
    for s in (a, b):
        with contextlib.suppress(OSError):
            s.close()


class AtlsGrpcServer:
    """gRPC ``handlers`` served behind aTLS at ``listen`` (HOST:PORT); ``binding`` has ``ready`` and ``tee``."""

    def __init__(self, handlers: list[grpc.GenericRpcHandler], binding: Any, listen: str, work: Path) -> None:
        from agent.atls import AtlsListener
        from agent.transport import Listener, parse

        work.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.socket_path = work / "grpc.sock"
        self.socket_path.unlink(missing_ok=True)
        self.grpc = grpc.server(ThreadPoolExecutor(max_workers=32, thread_name_prefix="grpc"),
                                options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                                         ("grpc.max_send_message_length", MAX_MESSAGE)])
        self.grpc.add_generic_rpc_handlers(tuple(handlers))
        self.grpc.add_insecure_port(f"unix:{self.socket_path}")
        self.listener = AtlsListener(Listener(parse(f"tcp://{listen}")), binding)
        self.stopping = threading.Event()

    @property
    def address(self) -> str:
        bound: str = self.listener.inner.bound
        return bound.removeprefix("tcp://")

    def start(self) -> AtlsGrpcServer:
        self.grpc.start()
        threading.Thread(target=self._accept, daemon=True, name="atls accept").start()
        return self

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                stream, peer = self.listener.accept()
            except OSError:
                if self.stopping.is_set():
                    return
                continue
            threading.Thread(target=self._serve, args=(stream, peer), daemon=True, name=f"atls {peer}").start()

    def _serve(self, stream: Any, peer: str) -> None:
        try:
            stream.do_handshake()
        except OSError as exc:  # no nonce, a failed TEE report, a client that went away: nothing to serve
            log.info("aTLS handshake with %s failed: %s", peer, exc)
            with contextlib.suppress(OSError):
                stream.close()
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(str(self.socket_path))
        except OSError as exc:
            log.error("the gRPC server is gone: %s", exc)
            stream.close()
            upstream.close()
            return
        pipe(stream, upstream)

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()
        self.grpc.stop(grace=5).wait()
        self.socket_path.unlink(missing_ok=True)
