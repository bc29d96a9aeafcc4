"""cocoon's own RCAR client, host side: what a guest's attestation agent does, with the evidence supplied by
a callable (a sim TEE in tests and bench; the guest's agent has its own). One client, one session: auth,
attest (evidence bound to the challenge and this client's TEE key), then resources decrypted with that key.
HTTP over http.client, never a proxy; every refusal is the broker's KbsError (variant and detail).
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Callable
from typing import Any

from jwcrypto import jwe, jwk

from coordinator.kbs import protocol
from coordinator.kbs.errors import KbsError, parse_error_body


class RcarClient:
    def __init__(self, url: str, tee: str, evidence: Callable[[bytes], Any], key: jwk.JWK | None = None,
                 timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise KbsError("HTTPFailed", f"{url!r} is not an http(s) URL")
        self.parts, self.tee, self.evidence, self.timeout = parts, tee, evidence, timeout
        self.key = key or jwk.JWK.generate(kty="EC", crv="P-256")
        alg = "RSA-OAEP-256" if self.key.get("kty") == "RSA" else "ECDH-ES+A256KW"
        self.public = {**json.loads(self.key.export_public()), "alg": alg}
        self.cookie = ""
        self.token = ""
        self.conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            cls = http.client.HTTPSConnection if self.parts.scheme == "https" else http.client.HTTPConnection
            self.conn = cls(self.parts.hostname or "", self.parts.port, timeout=self.timeout)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _call(self, method: str, path: str, body: Any = None, bearer: bool = False) -> tuple[bytes, dict[str, str]]:
        headers = {"Content-Type": "application/json"}
        if bearer:
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.cookie:
            headers["Cookie"] = self.cookie
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (0, 1):  # a kept-alive connection the server closed: once more on a fresh one
            conn = self._connection()
            try:
                conn.request(method, self.parts.path.rstrip("/") + path, body=data, headers=headers)
                reply = conn.getresponse()
                raw = reply.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt:
                    raise KbsError("HTTPFailed", f"{self.parts.geturl()}: the connection failed") from None
            except OSError as exc:
                self.close()
                raise KbsError("HTTPFailed", f"{self.parts.geturl()}: {exc.strerror or exc}") from None
        if reply.status != 200:
            raise KbsError(*parse_error_body(raw))
        return raw, {k.lower(): v for k, v in reply.getheaders()}

    def attest(self) -> str:
        raw, headers = self._call("POST", "/kbs/v0/auth", {"version": protocol.VERSION, "tee": self.tee,
                                                             "extra-params": ""})
        self.cookie = headers.get("set-cookie", "").split(";")[0]
        nonce = json.loads(raw)["nonce"]
        evidence = self.evidence(protocol.report_data(nonce, self.public))
        raw, _ = self._call("POST", "/kbs/v0/attest", {
            "runtime-data": {"nonce": nonce, "tee-pubkey": self.public},
            "tee-evidence": {"primary_evidence": evidence, "additional_evidence": ""}})
        self.token = str(json.loads(raw)["token"])
        return self.token

    def resource(self, path: str, bearer: bool = False) -> bytes:
        raw, _ = self._call("GET", f"/kbs/v0/resource/{path}", bearer=bearer)
        message = jwe.JWE()
        try:
            message.deserialize(raw.decode(), key=self.key)
        except Exception as exc:
            raise KbsError("JweError", f"the resource does not decrypt with this client's key: {exc}") from None
        return bytes(message.payload)
