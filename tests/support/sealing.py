"""Signed sealed values for tests, made without the module under test: ES256 as RFC 7515 (compact form) and
RFC 7518 3.4 (r and s, 32 bytes each, big-endian) say, with cryptography's ECDSA directly, so what the guest
accepts is checked against a signer that is not jwcrypto. The same key also backs a sealed.Signer, for the
paths that seal with agent/sealed.py itself."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from agent.kbs_client import KbsClientError

KEY_PATH = "default/signing-key/1"
KID = "kbs:///" + KEY_PATH
PRIVATE = ec.generate_private_key(ec.SECP256R1())


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(key: ec.EllipticCurvePrivateKey = PRIVATE, **extra: Any) -> bytes:
    """RFC 7518 6.2.1 from the key's numbers: x and y as 32-byte big-endian base64url."""
    numbers = key.public_key().public_numbers()
    doc = {"kty": "EC", "crv": "P-256", "x": b64url(numbers.x.to_bytes(32, "big")),
           "y": b64url(numbers.y.to_bytes(32, "big")), **extra}
    return json.dumps(doc).encode()


def public_pem(key: ec.EllipticCurvePrivateKey = PRIVATE) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def private_pem(key: ec.EllipticCurvePrivateKey = PRIVATE) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _bytes(doc: dict[str, Any] | str | bytes) -> bytes:
    if isinstance(doc, bytes):
        return doc
    return (doc if isinstance(doc, str) else json.dumps(doc)).encode()


def es256(signing_input: bytes, key: ec.EllipticCurvePrivateKey = PRIVATE) -> bytes:
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sign(payload: dict[str, Any] | str | bytes, header: dict[str, Any] | str | bytes | None = None,
         key: ec.EllipticCurvePrivateKey = PRIVATE) -> str:
    """``sealed.`` + the compact JWS of ``payload`` (a dict as JSON, text or bytes as they are) under
    ``header`` (upstream's ``{"alg": "ES256", "kid": KID}`` by default)."""
    head = b64url(_bytes(header if header is not None else {"alg": "ES256", "kid": KID}))
    body = b64url(_bytes(payload))
    return f"sealed.{head}.{body}.{b64url(es256(f'{head}.{body}'.encode(), key))}"


def unsigned(payload: dict[str, Any] | str | bytes) -> str:
    return "sealed." + b64url(b'{"alg":"none"}') + "." + b64url(_bytes(payload)) + "."


def signer() -> Any:
    """agent/sealed.py's Signer with the same key and kid."""
    from jwcrypto import jwk

    from agent.sealed import Signer

    return Signer(jwk.JWK.from_pyca(PRIVATE), KID)


class FakeClient:
    """The KBS client's get_resource over a dict, the signing key's public JWK served at KEY_PATH unless
    ``values`` says otherwise; a missing resource is the broker's PolicyDeny."""

    def __init__(self, values: dict[str, bytes], config: Any = None) -> None:
        self.values = {KEY_PATH: public_jwk(), **values}
        self.asked: list[str] = []
        self.config = config

    def get_resource(self, path: str) -> bytes:
        self.asked.append(path)
        if path not in self.values:
            raise KbsClientError("KBS /kbs/v0/resource: PolicyDeny: denied", "PolicyDeny", 403)
        return self.values[path]
