"""Sealed secrets in a container's environment, unsealed in the guest before the container starts, as
Kata's agent does with the confidential data hub (guest-components confidential-data-hub
docs/SEALED_SECRET.md and hub/src/secret/, facts only).

A value ``sealed.<header>.<payload>.<signature>`` is a JWS in compact form (RFC 7515) behind ``sealed.``,
signed as upstream signs it (hub/src/secret/mod.rs ``from_signed_base64_string``): the protected header
is ``{"alg": "ES256", "kid": "kbs:///<repo>/<type>/<tag>"}``, the kid names the KBS resource holding the
signer's public key, ES256 is the only algorithm upstream verifies (and so the only one here), and
upstream's signature check is on unless cdh.toml sets ``skip_sealed_secret_verification``. Here, before
the payload is read at all, the form is checked strictly (three unpadded canonical base64url parts, a
header of strict JSON with ``alg``, ``kid`` and at most ``typ``, a 64-byte r||s signature), the public key
is fetched with this TEE's evidence exactly as a vault secret is (so the broker's resource policy also
decides who may learn which signer is trusted), it must be an EC P-256 public key, as a JWK (upstream's
form) or a PEM SubjectPublicKeyInfo, and jwcrypto checks the signature over ``<header>.<payload>`` with
ES256 alone, whatever the header says. ``alg: none`` (an empty signature) is accepted only when the
measured initdata's cdh.toml sets ``skip_sealed_secret_verification = true`` (upstream's key, read by
agent/kbs_client.py into the client's KbsConfig): the pod's owner can choose it, the host never can,
since nothing but the initdata makes that config. Even then a signed value is verified.

The payload is JSON of one of two types:

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
policy decides on the secret (vault) or the key (envelope); the signature says who sealed the value, so
a host that swaps one sealed value for another it saw elsewhere (another pod's, or one naming another
resource) is refused unless that value was signed by a key this pod's broker vouches for. The plaintext
exists only in the container's environment (or the UnsealSecret answer). A value that cannot be unsealed
(malformed, unsigned, badly signed, no KBS in the initdata, the broker refusing, a key that does not open
it) fails CreateContainer with the reason: the container never starts with a sealed string where its
secret should be.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from agent import strictjson
from agent.errors import AgentError
from agent.kbs_client import SEGMENT, KbsClientError, KbsConfig

PREFIX = "sealed."
MAX_SEALED = 64 << 10
MAX_KEY = 16 << 10  # a signing key resource: a JWK or PEM of a P-256 key is a few hundred bytes
VERSION = "0.1.0"
KEY_BYTES = 32  # the KEK and the data key: AES-256
IV_BYTES = 12  # A256GCM's iv (upstream deps/crypto symmetric.rs)
TAG_BYTES = 16
WRAPPED_KEY_BYTES = KEY_BYTES + 8  # RFC 3394 adds one 64-bit block
ENVELOPE_FIELDS = ("version", "type", "provider", "key_id", "encrypted_key", "encrypted_data", "wrap_type",
                   "iv", "provider_settings", "annotations")
ALGORITHMS = {"ES256": ("EC", "P-256", 64)}  # alg: key type, curve, r||s bytes (upstream verifies only ES256)
CURVE_NAMES = {"P-256": "secp256r1"}  # JWA's curve names, cryptography's
HEADER_FIELDS = ("alg", "kid", "typ")
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")  # RFC 7518 6.2.2, 6.3.2, 6.4.1
CLIENT: Any = None  # the data hub's KbsClient, once the agent is READY with a KBS in its initdata
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class SealedSecretError(AgentError):
    """A sealed value that could not be unsealed."""


class SigningKeyUnavailable(SealedSecretError, KbsClientError):
    """The broker did not hand out the signing key. Still the broker's refusal (its variant and status), so
    the data hub answers a denied signing key as it answers a denied secret."""


@dataclass(frozen=True)
class Jws:
    """A sealed value's JWS with its form checked and nothing verified or read yet."""
    alg: str  # one of ALGORITHMS, or "none" (unsigned)
    key: str | None  # repo/type/tag of the public key (the kid); None when unsigned
    compact: str  # <header>.<payload>.<signature> as sent


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
    """RFC 7515's base64url: no padding, and canonical (one text for one value), so the text the signature
    covers and the bytes read from it cannot be told apart by any reader."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise SealedSecretError(f"sealed secret: {what} is not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise SealedSecretError(f"sealed secret: {what} is not base64url") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        raise SealedSecretError(f"sealed secret: {what} is not canonical base64url")
    return raw


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


def split(value: str) -> Jws:
    """The JWS of a sealed value, its form checked (nothing fetched, the payload not read)."""
    if len(value) > MAX_SEALED:
        raise SealedSecretError(f"sealed secret of {len(value)} bytes, more than {MAX_SEALED}")
    if not value.startswith(PREFIX):
        raise SealedSecretError("not a sealed secret (sealed.<header>.<payload>.<signature>)")
    compact = value[len(PREFIX):]
    parts = compact.split(".")
    if len(parts) != 3:
        raise SealedSecretError("sealed secret is not sealed.<header>.<payload>.<signature>")
    try:
        header = strictjson.loads(_b64url(parts[0], "the JWS header"))
    except RecursionError:
        raise SealedSecretError("sealed secret: the JWS header is not JSON (nested too deep)") from None
    except ValueError as exc:  # UnicodeDecodeError among them
        raise SealedSecretError(f"sealed secret: the JWS header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise SealedSecretError("sealed secret: the JWS header is not a JSON object")
    for field in header:  # crit, b64, jwk, jku, x5u, ...: nothing that could change what is checked
        if field not in HEADER_FIELDS:
            raise SealedSecretError(f"sealed secret: JWS header field {strictjson.name(field)} is not supported "
                                    f"({', '.join(HEADER_FIELDS)})")
    if not isinstance(header.get("typ", ""), str):
        raise SealedSecretError("sealed secret: JWS header field typ is not a string")
    _b64url(parts[1], "the payload")  # its form now, its bytes only once the signature verified
    signature = _b64url(parts[2], "the JWS signature")
    alg = header.get("alg")
    if alg == "none":
        if header.get("kid", "") != "" or signature:
            raise SealedSecretError("sealed secret: an unsigned value (alg none) has a kid or a signature")
        return Jws("none", None, compact)
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise SealedSecretError(f"sealed secret: JWS alg {_shown(alg)} is not supported ({', '.join(ALGORITHMS)})")
    if "kid" not in header:
        raise SealedSecretError("sealed secret: the JWS header has no kid (kbs:///<repo>/<type>/<tag> of the "
                                "signing key)")
    key = _kbs_path(header["kid"], "kid")
    size = ALGORITHMS[alg][2]
    if len(signature) != size:
        raise SealedSecretError(f"sealed secret: the JWS signature is {len(signature)} bytes, not {size} ({alg})")
    return Jws(alg, key, compact)


def public_key(raw: bytes, alg: str, resource: str) -> Any:
    """The jwcrypto key in resource ``raw``: a public JWK or a PEM public key (SubjectPublicKeyInfo) of the
    type ``alg`` needs, nothing else. A private or symmetric key is refused: a broker that hands the
    signing key to every attested pod lets any of them seal (and a shared secret would make the "public"
    key an HMAC key, the classic confusion)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from jwcrypto import jwk
    from jwcrypto.common import JWException

    what = f"sealed secret: the signing key {resource}"
    kty, crv = ALGORITHMS[alg][:2]

    def wrong_kind(got: str) -> SealedSecretError:
        return SealedSecretError(f"{what} is a {got} key, not {kty} {crv} ({alg})")

    if len(raw) > MAX_KEY:
        raise SealedSecretError(f"{what} is more than {MAX_KEY} bytes")
    if raw.lstrip().startswith(b"-----BEGIN"):
        if b"PRIVATE KEY-----" in raw:
            raise SealedSecretError(f"{what} is a private key, not a public key")
        try:
            pem = load_pem_public_key(raw)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise SealedSecretError(f"{what} is not a PEM public key") from None
        if not isinstance(pem, ec.EllipticCurvePublicKey):  # every alg allowed is ECDSA
            raise wrong_kind(type(pem).__name__.removesuffix("PublicKey"))
        if pem.curve.name != CURVE_NAMES[crv]:
            raise wrong_kind(f"EC {pem.curve.name}")
        key = jwk.JWK.from_pyca(pem)
    else:
        try:
            doc = strictjson.loads(raw)
        except (ValueError, RecursionError):
            raise SealedSecretError(f"{what} is neither a JWK (JSON) nor a PEM public key") from None
        if not isinstance(doc, dict):
            raise SealedSecretError(f"{what} is not a JWK (a JSON object)")
        if doc.get("kty") == "oct" or any(m in doc for m in PRIVATE_MEMBERS):
            raise SealedSecretError(f"{what} is a private or symmetric key, not a public key")
        if (doc.get("kty"), doc.get("crv")) != (kty, crv):
            raise wrong_kind(f"{_shown(doc.get('kty'))} {_shown(doc.get('crv'))}")
        for member, want in (("alg", alg), ("use", "sig")):
            if member in doc and doc[member] != want:
                raise SealedSecretError(f"{what} has {member} {_shown(doc[member])}, not {want!r}")
        if "key_ops" in doc and (not isinstance(doc["key_ops"], list) or "verify" not in doc["key_ops"]):
            raise SealedSecretError(f"{what} has key_ops without verify")
        try:
            key = jwk.JWK(**doc)
        except (JWException, ValueError, TypeError, KeyError) as exc:
            raise SealedSecretError(f"{what} is not a usable JWK: {_shown(str(exc))}") from None
    try:
        if key.has_private:
            raise SealedSecretError(f"{what} is a private key, not a public key")
        key.get_op_key("verify")  # the point itself: one off the curve is refused here
    except (JWException, ValueError, TypeError, KeyError) as exc:
        raise SealedSecretError(f"{what} is not a usable {alg} key: {_shown(str(exc))}") from None
    return key


def verify_compact(compact: str, alg: str, key: Any, name: str = "its key") -> bytes:
    """The payload of the compact JWS ``compact`` once jwcrypto verified its signature under ``key`` with
    ``alg``, the only algorithm allowed for the call: the header cannot pick another. jwcrypto signs over
    its own re-encoding of the parts it decoded, so each part must be canonical first: otherwise a text the
    signer never wrote (other trailing bits, padding) would verify as the one it did."""
    from jwcrypto import jws
    from jwcrypto.common import JWException

    parts = compact.split(".")
    if len(parts) != 3:
        raise SealedSecretError("sealed secret is not sealed.<header>.<payload>.<signature>")
    for part, what in zip(parts, ("the JWS header", "the payload", "the JWS signature"), strict=True):
        _b64url(part, what)
    token = jws.JWS()
    token.allowed_algs = [alg]
    try:
        token.deserialize(compact)
        token.verify(key, alg=alg)
        return bytes(token.payload)
    except (JWException, ValueError, TypeError):
        raise SealedSecretError(f"sealed secret: the JWS signature does not verify with {name}") from None


def verified_payload(sealed: Jws, getter: Any, allow_unsigned: bool) -> bytes:
    """The payload's bytes, only once the signature verified with the key ``getter`` (the KBS client) fetched
    from the kid's resource; an unsigned value's only when ``allow_unsigned`` (the initdata's opt-out)."""
    if sealed.key is None:
        if not allow_unsigned:
            raise SealedSecretError("sealed secret is unsigned (alg none), and the initdata does not accept that "
                                    "(cdh.toml skip_sealed_secret_verification = true)")
        return _b64url(sealed.compact.split(".")[1], "the payload")
    try:
        raw = bytes(getter.get_resource(sealed.key))
    except SealedSecretError:
        raise
    except KbsClientError as exc:
        raise SigningKeyUnavailable(f"sealed secret: fetching the signing key {sealed.key} failed: {exc}",
                                    exc.variant, exc.status) from None
    except AgentError as exc:
        raise SealedSecretError(f"sealed secret: fetching the signing key {sealed.key} failed: {exc}") from None
    key = public_key(raw, sealed.alg, sealed.key)
    return verify_compact(sealed.compact, sealed.alg, key, f"the signing key {sealed.key}")


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


def read(raw: bytes) -> Vault | Envelope:
    """What a (verified) payload says, every field checked."""
    try:
        payload = strictjson.loads(raw)
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


def parse(value: str, getter: Any, allow_unsigned: bool = False) -> Vault | Envelope:
    """What a sealed value says once its signature verified (the key fetched with ``getter``)."""
    return read(verified_payload(split(value), getter, allow_unsigned))


def unsigned_allowed(client: Any) -> bool:
    """Whether the client's initdata accepts unsigned values: only a KbsConfig (which only
    config_from_initdata makes in the guest) can say so."""
    config = getattr(client, "config", None)
    return isinstance(config, KbsConfig) and config.skip_sealed_secret_verification is True


def resource_of(value: str, getter: Any, allow_unsigned: bool = False) -> str:
    """The ``repo/type/tag`` a vault value names. An envelope names its key, not its secret: asking for that
    here is an error, so no caller hands the key out in the secret's place."""
    secret = parse(value, getter, allow_unsigned)
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
    return open_secret(parse(value, client, unsigned_allowed(client)), client)


def unseal_env(env: list[str]) -> list[str]:
    """``env`` with every ``NAME=sealed.…`` replaced by its plaintext."""
    out = []
    for entry in env:
        name, sep, value = entry.partition("=")
        if not sep or not value.startswith(PREFIX):
            out.append(entry)
            continue
        try:
            sealed = split(value)  # junk is said as such, with a KBS or without
        except SealedSecretError as exc:
            raise SealedSecretError(f"env {name}: {exc}") from None
        if CLIENT is None:
            raise SealedSecretError(f"env {name} is sealed, but the initdata names no KBS to unseal it with")
        try:
            secret = read(verified_payload(sealed, CLIENT, unsigned_allowed(CLIENT)))
        except SealedSecretError as exc:
            raise SealedSecretError(f"env {name}: {exc}") from None
        what = secret.resource if isinstance(secret, Vault) else f"with the key {secret.resource}"
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


# --- the sealing side (the host's `cocoon kbs seal`, and tests) -----------------------------------------

@dataclass(frozen=True)
class Signer:
    """An EC P-256 private key (ES256, the algorithm upstream verifies) and the kid naming the resource
    where the broker holds its public half (``public_jwk``)."""
    key: Any  # jwcrypto JWK
    kid: str  # kbs:///<repo>/<type>/<tag>

    def __post_init__(self) -> None:
        _kbs_path(self.kid, "kid")
        if not self.key.has_private or (self.key.get("kty"), self.key.get("crv")) != ("EC", "P-256"):
            raise SealedSecretError("the signing key is not an EC P-256 private key (ES256)")

    @classmethod
    def generate(cls, kid: str) -> Signer:
        from jwcrypto import jwk

        return cls(jwk.JWK.generate(kty="EC", crv="P-256"), kid)

    @classmethod
    def from_pem(cls, pem: bytes, kid: str) -> Signer:
        from jwcrypto import jwk
        from jwcrypto.common import JWException

        try:
            key = jwk.JWK.from_pem(pem)
        except (ValueError, TypeError, JWException):
            raise SealedSecretError("the signing key is not a PEM private key") from None
        return cls(key, kid)

    def public_jwk(self) -> bytes:
        """What the broker serves at the kid: the public JWK, as upstream's ``secret keygen`` writes it."""
        doc = {**json.loads(self.key.export_public()), "alg": "ES256", "use": "sig", "kid": self.kid}
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    def sign(self, payload: bytes) -> str:
        from jwcrypto import jws

        token = jws.JWS(payload)
        token.add_signature(self.key, protected=json.dumps({"alg": "ES256", "kid": self.kid},
                                                           separators=(",", ":")))
        return str(token.serialize(compact=True))


def _jws(payload: dict[str, Any], signer: Signer | None) -> str:
    """The compact JWS of ``payload`` behind ``sealed.``: signed, or with ``signer`` None the unsigned form
    (alg none, no signature) that a guest takes only when its initdata opts out."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    if signer is not None:
        return PREFIX + signer.sign(body)

    def enc(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return PREFIX + enc(b'{"alg":"none"}') + "." + enc(body) + "."


def seal(resource: str, *, signer: Signer | None) -> str:
    """A sealed value naming ``kbs:///<resource>`` (a vault secret)."""
    return _jws({"version": VERSION, "type": "vault", "provider": "kbs", "name": f"kbs:///{resource}",
                 "provider_settings": {}, "annotations": {}}, signer)


def seal_envelope(key_resource: str, kek: bytes, plaintext: bytes, *, signer: Signer | None) -> str:
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
                 "iv": b64(iv), "provider_settings": {}, "annotations": {}}, signer)
