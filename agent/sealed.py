"""Sealed secrets in a container's environment, unsealed in the guest before the container starts, as
Kata's agent does with the confidential data hub (guest-components confidential-data-hub
docs/SEALED_SECRET.md, facts only).

A value ``sealed.<header>.<payload>.<signature>`` (a JWS in compact form behind ``sealed.``) carries a JSON
payload ``{"version": "0.1.0", "type": "vault", "provider": "kbs", "name": "kbs:///<repo>/<type>/<tag>",
"provider_settings": {}, "annotations": {}}``: the secret's value is that KBS resource, fetched with this
TEE's evidence (agent/kbs_client.py). The policy decided on the request as sent, sealed value included;
the plaintext exists only in the container's environment. A value that cannot be unsealed (malformed, an
``envelope`` secret, no KBS in the initdata, the broker refusing) fails CreateContainer with the reason:
the container never starts with a sealed string where its secret should be.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from agent import strictjson
from agent.errors import AgentError
from agent.kbs_client import SEGMENT

PREFIX = "sealed."
MAX_SEALED = 64 << 10
CLIENT: Any = None  # the data hub's KbsClient, once the agent is READY with a KBS in its initdata


class SealedSecretError(AgentError):
    """A sealed value that could not be unsealed."""


def use(client: Any) -> None:
    global CLIENT
    CLIENT = client


def _b64url(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise SealedSecretError(f"sealed secret: {what} is not base64url") from None


def resource_of(value: str) -> str:
    """The ``repo/type/tag`` a sealed value names (every field checked)."""
    if len(value) > MAX_SEALED:
        raise SealedSecretError(f"sealed secret of {len(value)} bytes, more than {MAX_SEALED}")
    parts = value[len(PREFIX):].split(".")
    if len(parts) != 3:
        raise SealedSecretError("sealed secret is not sealed.<header>.<payload>.<signature>")
    try:
        payload = strictjson.loads(_b64url(parts[1], "the payload"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise SealedSecretError("sealed secret: the payload is not JSON (or repeats a key)") from None
    if not isinstance(payload, dict) or payload.get("version") != "0.1.0":
        raise SealedSecretError("sealed secret: payload version is not 0.1.0")
    if payload.get("type") != "vault":
        raise SealedSecretError(f"sealed secret type {payload.get('type')!r} is not supported (vault)")
    if payload.get("provider") != "kbs":
        raise SealedSecretError(f"sealed secret provider {payload.get('provider')!r} is not kbs")
    name = payload.get("name")
    if not isinstance(name, str) or not name.startswith("kbs:///"):
        raise SealedSecretError(f"sealed secret name {name!r} is not kbs:///<repo>/<type>/<tag>")
    path = name[len("kbs:///"):]
    segments = path.split("/")
    if len(segments) != 3 or not all(SEGMENT.fullmatch(s) and ".." not in s for s in segments):
        raise SealedSecretError(f"sealed secret name {name!r} is not kbs:///<repo>/<type>/<tag> of plain names")
    return path


def unseal_env(env: list[str]) -> list[str]:
    """``env`` with every ``NAME=sealed.…`` replaced by its plaintext."""
    out = []
    for entry in env:
        name, sep, value = entry.partition("=")
        if not sep or not value.startswith(PREFIX):
            out.append(entry)
            continue
        path = resource_of(value)
        if CLIENT is None:
            raise SealedSecretError(f"env {name} is sealed, but the initdata names no KBS to unseal it with")
        try:
            plain = CLIENT.get_resource(path)
        except AgentError as exc:
            raise SealedSecretError(f"env {name}: unsealing {path} failed: {exc}") from None
        try:
            text = plain.decode()
        except UnicodeDecodeError:
            raise SealedSecretError(f"env {name}: the secret {path} is not UTF-8 text") from None
        if "\0" in text:
            raise SealedSecretError(f"env {name}: the secret {path} contains a NUL byte")
        out.append(f"{name}={text}")
    return out


def seal(resource: str) -> str:
    """A sealed value naming ``kbs:///<resource>`` (a vault secret; the signature is not checked here)."""
    def enc(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).rstrip(b"=").decode()

    payload = {"version": "0.1.0", "type": "vault", "provider": "kbs", "name": f"kbs:///{resource}",
               "provider_settings": {}, "annotations": {}}
    return PREFIX + enc({"alg": "none", "kid": ""}) + "." + enc(payload) + "."
