"""The broker's HTTP front door: Trustee's paths under ``/kbs/v0``, the ``kbs-session-id`` cookie, bearer
tokens, Trustee's error bodies, and an admin API authenticated by a signed token.

Transport only: a request is read (bounded: a body must declare its length, at most protocol.MAX_BODY, and
arrive within the socket timeout), routed, handed to broker.Broker, and its answer or KbsError written
back. Admin calls (``POST /kbs/v0/resource/...``, ``/kbs/v0/resource-policy``) carry ``Authorization:
Bearer <JWT>`` signed EdDSA by the admin key whose public half the broker was started with, as Trustee's
admin API expects, with an ``exp`` at most ADMIN_TOKEN_MAX_S ahead.
"""

from __future__ import annotations

import base64
import binascii
import http.server
import json
import logging
import socketserver
import ssl
import threading
import time
import urllib.parse
from typing import Any

from jwcrypto import jwk, jws

from coordinator.kbs import protocol
from coordinator.kbs.broker import Broker
from coordinator.kbs.errors import KbsError

log = logging.getLogger("cocoon-kbs")
PREFIX = "/kbs/v0/"
COOKIE = "kbs-session-id"
ADMIN_TOKEN_MAX_S = 3600
READ_TIMEOUT_S = 10


def verify_admin(header: str | None, admin_key: jwk.JWK | None, now: float | None = None) -> None:
    if admin_key is None:
        raise KbsError("AdminAuthAccess", "this broker was started without an admin key: admin calls are off")
    if not header or not header.startswith("Bearer "):
        raise KbsError("AdminAuthAccess", "admin calls need Authorization: Bearer <token signed by the admin key>")
    try:
        signed = jws.JWS()
        signed.deserialize(header[len("Bearer "):].strip())
        if signed.jose_header.get("alg") != "EdDSA":
            raise KbsError("AdminAuthAccess", "the admin token is not EdDSA")
        signed.verify(admin_key, alg="EdDSA")
        claims = json.loads(signed.payload)
    except KbsError:
        raise
    except Exception:
        raise KbsError("AdminAuthAccess", "the admin token is not signed by the admin key") from None
    now = time.time() if now is None else now
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if not isinstance(exp, int) or exp <= now or exp > now + ADMIN_TOKEN_MAX_S:
        raise KbsError("AdminAuthAccess", "the admin token has expired (or expires more than an hour ahead)")


def admin_token(private_key: jwk.JWK, lifetime_s: int = 300) -> str:
    """What ``cocoon kbs put`` sends: a short-lived EdDSA JWT over ``{"iat", "exp"}``."""
    now = int(time.time())
    signed = jws.JWS(json.dumps({"iat": now, "exp": now + lifetime_s}))
    signed.add_signature(private_key, alg="EdDSA", protected=json.dumps({"alg": "EdDSA", "typ": "JWT"}))
    return str(signed.serialize(compact=True))


class Handler(http.server.BaseHTTPRequestHandler):
    server: KbsHttpServer
    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT_S
    # headers and body are separate writes: without TCP_NODELAY the body waits for the client's delayed ACK
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            raise KbsError("HTTPFailed", "chunked bodies are not accepted: send Content-Length", status=411)
        if length is None or not (length.isascii() and length.isdigit()):
            raise KbsError("HTTPFailed", "a body needs a Content-Length", status=411)
        size = int(length)
        if size > protocol.MAX_BODY:
            self.close_connection = True
            raise KbsError("HTTPFailed", f"the body is {size} bytes, more than {protocol.MAX_BODY}", status=413)
        return self.rfile.read(size)

    def _cookie(self) -> str | None:
        raw = self.headers.get("Cookie") or ""
        for part in raw.split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                return value
        return None

    def _bearer(self) -> str | None:
        header = self.headers.get("Authorization")
        if header and header.startswith("Bearer "):
            return header[len("Bearer "):].strip()
        return None

    def _route(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/healthz" and method == "GET":
            self._send(200, b'{"status":"ok"}')
            return
        if not url.path.startswith(PREFIX):
            raise KbsError("InvalidRequestPath", f"{url.path} is not under {PREFIX}")
        segments = [urllib.parse.unquote(s) for s in url.path[len(PREFIX):].split("/")]
        broker = self.server.broker
        head = segments[0]
        if head == "auth" and method == "POST" and len(segments) == 1:
            sid, challenge = broker.auth(self._body())
            cookie = f"{COOKIE}={sid}; Max-Age={broker.config.session_timeout_s}; Path=/kbs; HttpOnly"
            self._send(200, challenge, headers={"Set-Cookie": cookie})
        elif head == "attest" and method == "POST" and len(segments) == 1:
            token = broker.attest(self._cookie(), self._body())
            self._send(200, json.dumps({"token": token}).encode())
        elif head == "resource" and method == "GET":
            query = dict(urllib.parse.parse_qsl(url.query))
            self._send(200, broker.resource(segments[1:], sid=self._cookie(), bearer=self._bearer(), query=query))
        elif head == "resource" and method == "POST":
            verify_admin(self.headers.get("Authorization"), self.server.admin_key)
            body = self._body()
            broker.put_resource(segments[1:], body)
            log.info("resource %s set (%d bytes)", "/".join(segments[1:]), len(body))
            self._send(200, b"")
        elif head == "resource-policy" and len(segments) == 1 and method in ("POST", "GET"):
            verify_admin(self.headers.get("Authorization"), self.server.admin_key)
            if method == "GET":
                self._send(200, broker.policy.text.encode(), content_type="text/plain")
                return
            doc = protocol._object(self._body(), "the resource policy request")
            protocol._keys(doc, "the resource policy request", {"policy"})
            encoded = doc["policy"]
            if not isinstance(encoded, str):
                raise KbsError("SerdeError", "policy is not a base64url string")
            try:
                text = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True).decode()
            except (binascii.Error, ValueError):
                raise KbsError("SerdeError", "policy is not base64url of UTF-8 Rego") from None
            broker.set_policy(text)
            log.info("resource policy set (%d bytes)", len(text))
            self._send(200, b"")
        else:
            raise KbsError("InvalidRequestPath", f"{method} {url.path} is not a KBS endpoint")

    def _handle(self, method: str) -> None:
        try:
            self._route(method)
        except KbsError as exc:
            log.info("%s %s refused: %s", method, self.path[:200], exc)
            self.close_connection = True  # the body may be unread: it must never be read as the next request
            self._send(exc.status, exc.body())
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # a bug must still answer as the protocol does, and say where to look
            log.exception("%s %s failed", method, self.path[:200])
            self.close_connection = True
            self._send(500, KbsError("HTTPFailed", f"internal error: {type(exc).__name__}", status=500).body())

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


MAX_CONNECTIONS = 256


class KbsHttpServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """One thread per connection, at most MAX_CONNECTIONS at once (further ones wait in the accept queue)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], broker: Broker, admin_key: jwk.JWK | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        super().__init__(address, Handler)
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.broker = broker
        self.admin_key = admin_key
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that broke off (a failed TLS handshake, a reset): one line, not a traceback."""
        import sys

        log.info("connection from %s ended: %s", client_address, sys.exc_info()[1])

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        scheme = "https" if isinstance(self.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://{host}:{port}"

    def start(self) -> KbsHttpServer:
        threading.Thread(target=self.serve_forever, daemon=True, name="kbs http").start()
        return self

    def stop(self, drain_s: float = 15.0) -> None:
        """Stop accepting, let the requests in flight finish (bounded: a kept-alive idle connection ends at
        its read timeout), then close the socket; the broker may be closed after this."""
        import time

        self.shutdown()
        deadline = time.monotonic() + drain_s
        taken = 0
        while taken < MAX_CONNECTIONS and self.slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            taken += 1
        for _ in range(taken):
            self.slots.release()
        self.server_close()
