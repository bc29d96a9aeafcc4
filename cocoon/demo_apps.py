"""The mesh demo's two workloads, emojivoto in miniature (Contrast's tutorial app, seed 000):

    python3 -m cocoon.demo_apps voting [--listen 0.0.0.0:8443] [--secret REPO/TYPE/TAG]
    python3 -m cocoon.demo_apps web --voting HOST:PORT [--voting-name voting] [--listen 0.0.0.0:8443]

Both run as containers in cocoon VMs after the coordinator's initializer left the pod's mesh identity in
/contrast/tls-config. ``voting`` keeps the counts and serves only mutual TLS: a client must present a
certificate under the current mesh CA, so only attested pods of the current manifest vote. ``web`` is the
front end: it serves TLS with its mesh certificate (a client certificate is optional, so a relying party
can check it with ``openssl s_client -CAfile verify/mesh-ca.pem``), and calls ``voting`` over mutual TLS,
checking voting's certificate for the name the manifest gave it. With ``--secret``, voting first asks its
guest's data hub for ``kbs:///REPO/TYPE/TAG`` (the key broker releases it only to voting's attested
initdata) and prints the value's SHA-256, never the value.

    GET /vote/<emoji>   web: cast a vote through voting; voting: count it      -> "<emoji> <count>"
    GET /results        the counts as JSON (web asks voting)
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TLS = Path("/contrast/tls-config")
EMOJI = frozenset({"doughnut", "cat", "rocket", "pizza", "unicorn"})


DATA_HUB = ("127.0.0.1", 8006)


def fetch_secret(path: str, wait_s: float = 180.0) -> str:
    """The line voting prints about ``kbs:///path``: its digest, or why the data hub refused it. Retried while
    the data hub or the broker is not there yet (bounded)."""
    import hashlib
    import time

    deadline = time.monotonic() + wait_s
    last = ""
    while True:
        conn = http.client.HTTPConnection(*DATA_HUB, timeout=60)
        try:
            conn.request("GET", f"/cdh/resource/{path}")
            reply = conn.getresponse()
            body = reply.read(1 << 20)
            if reply.status == 200:
                return f"voting: secret kbs:///{path} sha256 {hashlib.sha256(body).hexdigest()}"
            last = f"{reply.status} {body[:200].decode(errors='replace').strip()}"
            if reply.status == 403:  # the broker's policy decided: final
                break
        except (OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        if time.monotonic() >= deadline:
            break
        time.sleep(3)
    return f"voting: secret kbs:///{path} refused: {last}"


def server_context(tls: Path, require_client: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls / "certChain.pem", tls / "key.pem")
    ctx.load_verify_locations(tls / "mesh-ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_OPTIONAL
    return ctx


def client_context(tls: Path) -> ssl.SSLContext:
    """Mutual TLS to a peer of the mesh: our certificate, and only the mesh CA as a trust anchor."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(tls / "certChain.pem", tls / "key.pem")
    ctx.load_verify_locations(tls / "mesh-ca.pem")
    return ctx


class _Handler(BaseHTTPRequestHandler):
    app: Any = None

    def do_GET(self) -> None:
        try:
            status, body = self.app.get(self.path)
        except Exception as exc:  # a demo app must say what failed, not drop the connection
            status, body = 502, f"{type(exc).__name__}: {exc}\n"
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: Any) -> None:
        print(f"{self.app.name}: {self.address_string()} {fmt % args}", flush=True)


class Voting:
    name = "voting"

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()

    def get(self, path: str) -> tuple[int, str]:
        if path.startswith("/vote/"):
            emoji = path[len("/vote/"):]
            if emoji not in EMOJI:
                return 404, f"no emoji {emoji[:40]!r}; choose one of {', '.join(sorted(EMOJI))}\n"
            with self.lock:
                self.counts[emoji] = self.counts.get(emoji, 0) + 1
                return 200, f"{emoji} {self.counts[emoji]}\n"
        if path == "/results":
            with self.lock:
                return 200, json.dumps(self.counts, sort_keys=True) + "\n"
        return 404, "GET /vote/<emoji> or /results\n"


class Web:
    name = "web"

    def __init__(self, voting: str, voting_name: str, tls: Path) -> None:
        host, _, port = voting.rpartition(":")
        self.host, self.port, self.voting_name, self.tls = host, int(port), voting_name, tls

    def _ask(self, path: str) -> tuple[int, str]:
        # the peer's certificate must name voting (the manifest's SAN), whatever address it answers on
        raw = socket.create_connection((self.host, self.port), timeout=30)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.sock = client_context(self.tls).wrap_socket(raw, server_hostname=self.voting_name)
        except BaseException:
            raw.close()
            raise
        try:
            conn.request("GET", path)
            reply = conn.getresponse()
            return reply.status, reply.read(1 << 16).decode(errors="replace")
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, str]:
        if path.startswith("/vote/") or path == "/results":
            try:
                status, body = self._ask(path)
            except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
                return 502, f"web: voting at {self.host}:{self.port} refused the mesh: {exc}\n"
            return status, f"web -> voting (mutual TLS): {body}"
        return 200, "emojivoto web: GET /vote/<emoji> or /results\n"


def serve(app: Any, listen: str, ctx: ssl.SSLContext) -> None:
    host, _, port = listen.rpartition(":")
    handler = type("Handler", (_Handler,), {"app": app})
    server = ThreadingHTTPServer((host, int(port)), handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(f"{app.name}: serving TLS on {listen}", flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m cocoon.demo_apps", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("app", choices=("web", "voting"))
    p.add_argument("--listen", default="0.0.0.0:8443")
    p.add_argument("--voting", help="web: voting's HOST:PORT")
    p.add_argument("--voting-name", default="voting", help="web: the name voting's certificate must carry")
    p.add_argument("--tls", type=Path, default=TLS, help="the initializer's tls-config directory")
    p.add_argument("--secret", metavar="REPO/TYPE/TAG", help="voting: first fetch kbs:///REPO/TYPE/TAG from the "
                   "guest's data hub and print its SHA-256")
    args = p.parse_args(argv)
    try:
        if args.app == "voting":
            if args.secret:
                print(fetch_secret(args.secret), flush=True)
            serve(Voting(), args.listen, server_context(args.tls, require_client=True))
        else:
            if not args.voting:
                p.error("web needs --voting HOST:PORT")
            serve(Web(args.voting, args.voting_name, args.tls), args.listen,
                  server_context(args.tls, require_client=False))
    except (OSError, ssl.SSLError, ValueError) as exc:
        print(f"{args.app}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
