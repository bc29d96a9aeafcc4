"""The pod's own door to attestation and secrets, as CoCo's guest-components offer it to containers: the
REST front end of the attestation agent and the confidential data hub (api-server-rest), on 127.0.0.1:8006
inside the VM, which the pod's containers share (they run in the guest's network namespace; the host has
no way in).

    GET /cdh/resource/<repo>/<type>/<tag>      the resource from the KBS (kbs:///repo/type/tag), plaintext
    GET /aa/token?token_type=kbs               {"token": <EAR JWT>, "tee_keypair": <PEM>}
    GET /aa/evidence?runtime_data=<text>[&encoding=base64]   this TEE's evidence (Trustee's JSON), up to 64
                                               bytes of data
    GET /info                                  which services and which broker

The broker comes from the measured initdata (agent/kbs_client.py; without one, evidence is still served
and resource requests are refused saying so); errors are plain text with the reason
(403 when the broker's policy denied, 502 when it failed, 400 for a bad request), never a traceback.
"""

from __future__ import annotations

import base64
import binascii
import http.server
import json
import logging
import socketserver
import threading
import urllib.parse
from typing import Any

from agent.kbs_client import KbsClient, KbsClientError, KbsConfig, evidence_json

log = logging.getLogger("cocoon-agent.datahub")
ADDRESS = ("127.0.0.1", 8006)
MAX_RUNTIME_DATA = 64


class _Handler(http.server.BaseHTTPRequestHandler):
    server: DataHub
    protocol_version = "HTTP/1.1"
    timeout = 30
    # headers and body are separate writes: without TCP_NODELAY the body waits for the client's delayed ACK
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def _send(self, status: int, body: bytes, content_type: str = "application/octet-stream") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        client = self.server.client
        try:
            if url.path.startswith("/cdh/resource/"):
                data = client.get_resource(urllib.parse.unquote(url.path[len("/cdh/resource/"):]))
                log.info("resource %s released by the KBS (%d bytes)", url.path[len("/cdh/resource/"):], len(data))
                self._send(200, data)
            elif url.path == "/aa/token":
                if query.get("token_type", "kbs") != "kbs":
                    raise KbsClientError(f"token_type {query.get('token_type')!r}: only kbs", status=400)
                body = {"token": client.get_token(), "tee_keypair": client.keypair_pem()}
                self._send(200, json.dumps(body).encode(), "application/json")
            elif url.path == "/aa/evidence":
                runtime = query.get("runtime_data", "").encode()
                if query.get("encoding") == "base64":
                    try:
                        runtime = base64.b64decode(query.get("runtime_data", ""), validate=True)
                    except (binascii.Error, ValueError):
                        raise KbsClientError("runtime_data is not base64", status=400) from None
                if len(runtime) > MAX_RUNTIME_DATA:
                    raise KbsClientError(f"runtime_data is {len(runtime)} bytes, at most {MAX_RUNTIME_DATA}",
                                         status=400)
                evidence = client.tee.report(runtime.ljust(64, b"\0"))
                self._send(200, json.dumps(evidence_json(evidence)).encode(), "application/json")
            elif url.path == "/info":
                kbs = client.config.url if client.config is not None else None
                self._send(200, json.dumps({"services": ["aa", "cdh"], "kbs": kbs}).encode(),
                           "application/json")
            else:
                self._send(404, f"{url.path}: not an attestation-agent or data hub path\n".encode(), "text/plain")
        except KbsClientError as exc:
            log.warning("%s: %s", url.path, exc)
            self._send(exc.status, f"{exc}\n".encode(), "text/plain")
        except Exception as exc:  # the TEE or a library failed: say so to the container, keep serving
            log.exception("%s failed", url.path)
            self._send(500, f"{type(exc).__name__}: {exc}\n".encode(), "text/plain")


class DataHub(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, config: KbsConfig | None, tee: Any, address: tuple[str, int] = ADDRESS,
                 initdata: bytes | None = None) -> None:
        super().__init__(address, _Handler)
        self.client = KbsClient(config, tee, initdata=initdata)

    def start(self) -> DataHub:
        threading.Thread(target=self.serve_forever, daemon=True, name="datahub").start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
