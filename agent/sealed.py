"""Sealed secrets in a container's environment, unsealed in the guest before the container starts, as
Kata's agent does with the confidential data hub (guest-components confidential-data-hub
docs/SEALED_SECRET.md and hub/src/secret/, facts only).

A value ``sealed.<header>.<payload>.<signature>`` (a JWS in compact form behind ``sealed.``) carries a JSON
payload of one of two types:

``vault``
    ``{"version": "0.1.0", "type": "vault", "provider": "kbs", "name": "kbs:///<repo>/<type>/<tag>",
    "provider_settings": {}, "annotations": {}}``: the secret's value is that KBS resource.
``envelope`` (provider ``kbs``: cocoon's own, see below)
    ``{"version": "0.1.0", "type": "envelope", "provider": "kbs", "key_id": "kbs:///<repo>/<type>/<tag>",
    "encrypted_key": B64, "encrypted_data": B64, "wrap_type": "A256GCM", "iv": B64, "provider_settings": {},
    "annotations": {}}``: the field names, ``A256GCM`` (12-byte iv, ciphertext then 16-byte tag, no AAD)
    and standard padded base64 are upstream's (hub/src/secret/layout/envelope.rs, deps/crypto
    symmetric.rs). Upstream unwraps ``encrypted_key`` with a KMS "decrypter", and its ``kbs`` provider is
    only a getter; here ``key_id`` is a KBS resource holding a 32-byte key-encryption key and
    ``encrypted_key`` is the 32-byte data key wrapped under it with AES key wrap (RFC 3394, JWA's A256KW:
    40 bytes, its integrity check says whether the KEK is the right one). Every field must be there, none
    may be added, and the kbs provider takes no settings or annotations.

Either way the resource is fetched with this TEE's evidence (agent/kbs_client.py), so the broker's resource
policy decides on the secret (vault) or the key (envelope). The JWS header and signature are not read, as
upstream's documentation allows ("signatures for secrets are not yet implemented"; its code checks ES256
unless SKIP_SEALED_SECRET_VERIFICATION): what the value yields is whatever the broker releases to this
attested TEE, and the policy decided on the request as sent, sealed value included. The plaintext exists
only in the container's environment (or the UnsealSecret answer). A value that cannot be unsealed
(malformed, no KBS in the initdata, the broker refusing, a key that does not open it) fails CreateContainer
with the reason: the container never starts with a sealed string where its secret should be.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from typing import Any

from agent import strictjson
from agent.errors import AgentError
from agent.kbs_client import SEGMENT

PREFIX = "sealed."
MAX_SEALED = 64 << 10
VERSION = "0.1.0"
KEY_BYTES = 32  # the KEK and the data key: AES-256
IV_BYTES = 12  # A256GCM's iv (upstream deps/crypto symmetric.rs)
TAG_BYTES = 16
WRAPPED_KEY_BYTES = KEY_BYTES + 8  # RFC 3394 adds one 64-bit block
ENVELOPE_FIELDS = ("version", "type", "provider", "key_id", "encrypted_key", "encrypted_data", "wrap_type",
                   "iv", "provider_settings", "annotations")
CLIENT: Any = None  # the data hub's KbsClient, once the agent is READY with a KBS in its initdata


class SealedSecretError(AgentError):
    """A sealed value that could not be unsealed."""


@dataclass(frozen=True)
class Vault:
    resource: str  # repo/type/tag: the secret


@dataclass(frozen=True)
class Envelope:
    resource: str  # repo/type/tag: the key-encryption key
    encrypted_key: bytes
    encrypted_data: bytes
    iv: bytes


def use(client: Any) -> None:
    global CLIENT
    CLIENT = client


def _b64url(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise SealedSecretError(f"sealed secret: {what} is not base64url") from None


def _shown(value: Any) -> str:
    """A field's value in a message, cut short: the message goes to the host in CreateContainer's answer."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _b64(doc: dict[str, Any], field: str) -> bytes:
    """Standard base64 with its padding, canonical: one text for one value."""
    text = doc[field]
    if not isinstance(text, str):
        raise SealedSecretError(f"sealed secret: envelope field {field} is not a string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SealedSecretError(f"sealed secret: envelope field {field} is not base64") from None
    if base64.b64encode(raw).decode() != text:
        raise SealedSecretError(f"sealed secret: envelope field {field} is not canonical base64")
    return raw


def _kbs_path(uri: Any, field: str) -> str:
    if not isinstance(uri, str) or not uri.startswith("kbs:///"):
        raise SealedSecretError(f"sealed secret {field} {_shown(uri)} is not kbs:///<repo>/<type>/<tag>")
    path = uri[len("kbs:///"):]
    segments = path.split("/")
    if len(segments) != 3 or not all(SEGMENT.fullmatch(s) and ".." not in s for s in segments):
        raise SealedSecretError(f"sealed secret {field} {_shown(uri)} is not kbs:///<repo>/<type>/<tag> of plain "
                                "names")
    return path


def _envelope(payload: dict[str, Any]) -> Envelope:
    for field in ENVELOPE_FIELDS:
        if field not in payload:
            raise SealedSecretError(f"sealed secret: envelope field {field} is missing")
    for field in payload:
        if field not in ENVELOPE_FIELDS:
            raise SealedSecretError(f"sealed secret: {strictjson.name(field)} is not an envelope field")
    if payload["provider"] != "kbs":
        raise SealedSecretError(f"sealed secret: envelope provider {_shown(payload['provider'])} is not supported "
                                "(kbs)")
    if payload["wrap_type"] != "A256GCM":  # upstream's A256CTR is not authenticated: refused
        raise SealedSecretError(f"sealed secret: envelope wrap_type {_shown(payload['wrap_type'])} is not "
                                "supported (A256GCM)")
    for field in ("provider_settings", "annotations"):
        if not isinstance(payload[field], dict) or payload[field]:
            raise SealedSecretError(f"sealed secret: envelope field {field} is not {{}} (the kbs provider takes "
                                    "none)")
    resource = _kbs_path(payload["key_id"], "key_id")
    encrypted_key, encrypted_data, iv = (_b64(payload, f) for f in ("encrypted_key", "encrypted_data", "iv"))
    if len(encrypted_key) != WRAPPED_KEY_BYTES:
        raise SealedSecretError(f"sealed secret: envelope field encrypted_key is {len(encrypted_key)} bytes, not "
                                f"{WRAPPED_KEY_BYTES} (a {KEY_BYTES}-byte key wrapped with RFC 3394)")
    if len(iv) != IV_BYTES:
        raise SealedSecretError(f"sealed secret: envelope field iv is {len(iv)} bytes, not {IV_BYTES}")
    if len(encrypted_data) < TAG_BYTES:
        raise SealedSecretError(f"sealed secret: envelope field encrypted_data is {len(encrypted_data)} bytes, "
                                f"shorter than its {TAG_BYTES}-byte tag")
    return Envelope(resource, encrypted_key, encrypted_data, iv)


def parse(value: str) -> Vault | Envelope:
    """What a sealed value says, every field checked; nothing fetched."""
    if len(value) > MAX_SEALED:
        raise SealedSecretError(f"sealed secret of {len(value)} bytes, more than {MAX_SEALED}")
    if not value.startswith(PREFIX):
        raise SealedSecretError("not a sealed secret (sealed.<header>.<payload>.<signature>)")
    parts = value[len(PREFIX):].split(".")
    if len(parts) != 3:
        raise SealedSecretError("sealed secret is not sealed.<header>.<payload>.<signature>")
    try:
        payload = strictjson.loads(_b64url(parts[1], "the payload"))
    except UnicodeDecodeError:
        raise SealedSecretError("sealed secret: the payload is not JSON (not UTF-8)") from None
    except RecursionError:
        raise SealedSecretError("sealed secret: the payload is not JSON (nested too deep)") from None
    except ValueError as exc:
        raise SealedSecretError(f"sealed secret: the payload is not JSON: {exc}") from None
    if not isinstance(payload, dict) or payload.get("version") != VERSION:
        raise SealedSecretError(f"sealed secret: payload version is not {VERSION}")
    kind = payload.get("type")
    if kind == "envelope":
        return _envelope(payload)
    if kind != "vault":
        raise SealedSecretError(f"sealed secret type {_shown(kind)} is not supported (vault, envelope)")
    if payload.get("provider") != "kbs":
        raise SealedSecretError(f"sealed secret provider {_shown(payload.get('provider'))} is not kbs")
    return Vault(_kbs_path(payload.get("name"), "name"))


def resource_of(value: str) -> str:
    """The ``repo/type/tag`` a vault value names. An envelope names its key, not its secret: asking for that
    here is an error, so no caller hands the key out in the secret's place."""
    secret = parse(value)
    if isinstance(secret, Envelope):
        raise SealedSecretError("sealed secret: an envelope names its key, not its secret (use unseal)")
    return secret.resource


def open_secret(secret: Vault | Envelope, client: Any) -> bytes:
    """The plaintext: the vault resource, or the envelope opened with its KEK from the broker. The client's
    own errors (KbsClientError: a refusal, the broker down) come through as they are."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

    fetched = bytes(client.get_resource(secret.resource))
    if isinstance(secret, Vault):
        return fetched
    if len(fetched) != KEY_BYTES:  # the length itself is not said: the error reaches the host
        raise SealedSecretError(f"sealed secret: the key {secret.resource} is not {KEY_BYTES} bytes")
    try:
        data_key = aes_key_unwrap(fetched, secret.encrypted_key)
    except InvalidUnwrap:
        raise SealedSecretError(f"sealed secret: encrypted_key does not unwrap under the key {secret.resource}"
                                ) from None
    try:
        return AESGCM(data_key).decrypt(secret.iv, secret.encrypted_data, None)
    except InvalidTag:
        raise SealedSecretError("sealed secret: encrypted_data does not decrypt under its key (tag mismatch)"
                                ) from None


def unseal(value: str, client: Any) -> bytes:
    return open_secret(parse(value), client)


def unseal_env(env: list[str]) -> list[str]:
    """``env`` with every ``NAME=sealed.…`` replaced by its plaintext."""
    out = []
    for entry in env:
        name, sep, value = entry.partition("=")
        if not sep or not value.startswith(PREFIX):
            out.append(entry)
            continue
        secret = parse(value)
        what = secret.resource if isinstance(secret, Vault) else f"with the key {secret.resource}"
        if CLIENT is None:
            raise SealedSecretError(f"env {name} is sealed, but the initdata names no KBS to unseal it with")
        try:
            plain = open_secret(secret, CLIENT)
        except SealedSecretError as exc:
            raise SealedSecretError(f"env {name}: {exc}") from None
        except AgentError as exc:
            raise SealedSecretError(f"env {name}: unsealing {what} failed: {exc}") from None
        try:
            text = plain.decode()
        except UnicodeDecodeError:
            raise SealedSecretError(f"env {name}: the secret {what} is not UTF-8 text") from None
        if "\0" in text:
            raise SealedSecretError(f"env {name}: the secret {what} contains a NUL byte")
        out.append(f"{name}={text}")
    return out


def _jws(payload: dict[str, Any]) -> str:
    """An unsigned compact JWS of ``payload`` behind ``sealed.`` (the signature is not checked here)."""
    def enc(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).rstrip(b"=").decode()

    return PREFIX + enc({"alg": "none", "kid": ""}) + "." + enc(payload) + "."


def seal(resource: str) -> str:
    """A sealed value naming ``kbs:///<resource>`` (a vault secret)."""
    return _jws({"version": VERSION, "type": "vault", "provider": "kbs", "name": f"kbs:///{resource}",
                 "provider_settings": {}, "annotations": {}})


def seal_envelope(key_resource: str, kek: bytes, plaintext: bytes) -> str:
    """An envelope of ``plaintext`` for the KEK stored at ``kbs:///<key_resource>``: a fresh data key and iv
    each time, so two seals of one secret share nothing but the key id."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap

    if len(kek) != KEY_BYTES:
        raise SealedSecretError(f"the key-encryption key is {len(kek)} bytes, not {KEY_BYTES}")
    data_key, iv = AESGCM.generate_key(bit_length=256), os.urandom(IV_BYTES)

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return _jws({"version": VERSION, "type": "envelope", "provider": "kbs", "key_id": f"kbs:///{key_resource}",
                 "encrypted_key": b64(aes_key_wrap(kek, data_key)),
                 "encrypted_data": b64(AESGCM(data_key).encrypt(iv, plaintext, None)), "wrap_type": "A256GCM",
                 "iv": b64(iv), "provider_settings": {}, "annotations": {}})
