"""The RCAR messages (KBS protocol 0.4.0) read strictly, and the rule that binds evidence to a session.

Shapes (trustee kbs/docs/kbs_attestation_protocol.md, kbs-types): the client's Request
``{"version", "tee", "extra-params"}``; the broker's Challenge ``{"nonce": base64(32 bytes),
"extra-params": ""}``; the client's Attestation ``{"init-data"?, "runtime-data": {"nonce", "tee-pubkey"},
"tee-evidence": {"primary_evidence", "additional_evidence"}}`` (kebab-case outside, snake-case in the
evidence, as upstream). Every body is JSON read by verifier.strictjson (a duplicate key, NaN: refused);
an unknown key is refused too, since a key this broker ignores is one a client may think it checks.

The binding (trustee kbs/src/attestation/backend.rs, guest-components rcar_client.rs): REPORT_DATA =
SHA-384 of the RFC 8785 canonical JSON of ``{"additional-evidence", "nonce", "tee-pubkey"}``, zero-padded
to 64 bytes. Both sides canonicalise the JWK as sent, so a client cannot bind one key and present another.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import rfc8785
from jwcrypto import jwk

from coordinator.kbs.errors import KbsError
from verifier import strictjson

VERSION = "0.4.0"
# kbs-types Tee names; the broker verifies the ones in VERIFIED and refuses the rest with their name
KNOWN_TEES = frozenset({"az-snp-vtpm", "az-tdx-vtpm", "nvidia", "sgx", "snp", "tdx", "cca", "csv", "se",
                        "hygondcu", "dpu", "tpm", "sample", "sampledevice"})
VERIFIED = frozenset({"snp", "tdx", "az-snp-vtpm"})
NONCE_SIZE = 32
REPORT_DATA_SIZE = 64
MAX_BODY = 1 << 20  # an attestation with a certificate chain is some KiB; a MiB is not evidence
MAX_INITDATA = 256 << 10  # agent/initdata.py's bound on the document
KEY_ALGS = {"EC": frozenset({"ECDH-ES+A256KW"}), "RSA": frozenset({"RSA-OAEP-256"})}
EC_CURVES = frozenset({"P-256", "P-521"})
MIN_RSA_BITS = 2048
KEY_MEMBERS = {"EC": frozenset({"kty", "alg", "crv", "x", "y"}), "RSA": frozenset({"kty", "alg", "n", "e"})}


@dataclasses.dataclass(frozen=True)
class Request:
    version: str
    tee: str
    extra_params: Any


@dataclasses.dataclass(frozen=True)
class Attestation:
    nonce: str
    tee_pubkey: dict[str, Any]
    primary_evidence: Any
    additional_evidence: str
    initdata: str | None  # the TOML text, when the client sent it


def _object(raw: bytes, what: str) -> dict[str, Any]:
    if len(raw) > MAX_BODY:
        raise KbsError("HTTPFailed", f"{what}: {len(raw)} bytes, more than {MAX_BODY}", status=413)
    try:
        doc = strictjson.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise KbsError("SerdeError", f"{what} is not JSON: {exc}") from None
    except RecursionError:
        raise KbsError("SerdeError", f"{what} is nested too deeply") from None
    if not isinstance(doc, dict):
        raise KbsError("SerdeError", f"{what} is not a JSON object")
    return doc


def _keys(doc: Mapping[str, Any], what: str, required: set[str], optional: frozenset[str] | set[str] = frozenset()
          ) -> None:
    missing = required - doc.keys()
    unknown = doc.keys() - required - optional
    if missing:
        raise KbsError("SerdeError", f"{what} lacks {', '.join(sorted(missing))}")
    if unknown:
        raise KbsError("SerdeError", f"{what} has unknown keys {', '.join(sorted(map(strictjson.name, unknown)))}")


def _str(doc: Mapping[str, Any], key: str, what: str) -> str:
    value = doc[key]
    if not isinstance(value, str):
        raise KbsError("SerdeError", f"{what}.{key} is not a string")
    return value


def parse_request(raw: bytes) -> Request:
    """The /auth body; a version other than 0.4.0 or a TEE this broker does not verify is refused by name."""
    doc = _object(raw, "the auth request")
    _keys(doc, "the auth request", {"version", "tee"}, {"extra-params"})
    version, tee = _str(doc, "version", "request"), _str(doc, "tee", "request")
    if version != VERSION:
        raise KbsError("RcarAuthFailed", f"protocol version {version!r} is not supported: this broker speaks {VERSION}")
    if tee not in KNOWN_TEES:
        raise KbsError("RcarAuthFailed", f"TEE {tee!r} is not one the KBS protocol knows")
    if tee not in VERIFIED:
        raise KbsError("RcarAuthFailed", f"TEE {tee!r} is not verified by this broker (it verifies "
                                         f"{', '.join(sorted(VERIFIED))})")
    return Request(version, tee, doc.get("extra-params", ""))


def challenge(nonce: bytes) -> bytes:
    import json

    return json.dumps({"nonce": base64.b64encode(nonce).decode(), "extra-params": ""}).encode()


def check_tee_pubkey(key: Any) -> dict[str, Any]:
    """A public JWK the broker can wrap a resource to: EC P-256/P-521 with ECDH-ES+A256KW, or RSA (at least
    2048 bits) with RSA-OAEP-256. Only the members a public key of that type has (plus ``kid``), all strings:
    no private material, no ``use``/``key_ops`` that would forbid wrapping, nothing jwcrypto would act on
    (its ``generate`` member makes a key)."""
    if not isinstance(key, dict):
        raise KbsError("RcarAttestFailed", "runtime-data.tee-pubkey is not a JWK object")
    kty, alg = key.get("kty"), key.get("alg")
    if kty not in KEY_ALGS or alg not in KEY_ALGS[kty]:
        raise KbsError("RcarAttestFailed", f"tee-pubkey kty {kty!r} with alg {alg!r} is not supported "
                                           "(EC with ECDH-ES+A256KW, RSA with RSA-OAEP-256)")
    members = KEY_MEMBERS[kty]
    extra = set(key) - members - {"kid"}
    if extra:
        raise KbsError("RcarAttestFailed", f"tee-pubkey has members a public {kty} key does not: "
                                           f"{', '.join(sorted(map(strictjson.name, extra)))}")
    if set(members) - set(key) or not all(isinstance(v, str) and len(v) <= 4096 for v in key.values()):
        raise KbsError("RcarAttestFailed", f"tee-pubkey needs {', '.join(sorted(members))}, all strings")
    if kty == "EC" and key["crv"] not in EC_CURVES:
        raise KbsError("RcarAttestFailed", f"tee-pubkey curve {key['crv']!r} is not P-256 or P-521")
    try:
        parsed = jwk.JWK(**key)
        public = parsed.get_op_key("wrapKey")  # loads the point (on the curve) or the modulus
    except Exception as exc:  # jwcrypto's and cryptography's own errors for a key that is not one
        raise KbsError("RcarAttestFailed", f"tee-pubkey is not a valid {kty} public key: {exc}") from None
    if kty == "RSA" and int(getattr(public, "key_size", 0)) < MIN_RSA_BITS:
        raise KbsError("RcarAttestFailed", f"tee-pubkey RSA modulus is shorter than {MIN_RSA_BITS} bits")
    return key


def parse_attestation(raw: bytes) -> Attestation:
    """The /attest body, shapes checked; the evidence itself is evidence.py's."""
    doc = _object(raw, "the attestation")
    _keys(doc, "the attestation", {"runtime-data", "tee-evidence"}, {"init-data"})
    rd, te = doc["runtime-data"], doc["tee-evidence"]
    if not isinstance(rd, dict) or not isinstance(te, dict):
        raise KbsError("SerdeError", "runtime-data and tee-evidence must be objects")
    _keys(rd, "runtime-data", {"nonce", "tee-pubkey"})
    _keys(te, "tee-evidence", {"primary_evidence"}, {"additional_evidence"})
    additional = te.get("additional_evidence", "")
    if not isinstance(additional, str):
        raise KbsError("SerdeError", "tee-evidence.additional_evidence is not a string")
    initdata = None
    if "init-data" in doc and doc["init-data"] is not None:
        ini = doc["init-data"]
        if not isinstance(ini, dict):
            raise KbsError("SerdeError", "init-data is not an object")
        _keys(ini, "init-data", {"format", "body"})
        if ini["format"] != "toml":
            raise KbsError("RcarAttestFailed", f"init-data format {ini['format']!r} is not toml")
        initdata = _str(ini, "body", "init-data")
        try:
            size = len(initdata.encode())
        except UnicodeEncodeError:
            raise KbsError("RcarAttestFailed", "init-data is not valid Unicode text") from None
        if size > MAX_INITDATA:
            raise KbsError("RcarAttestFailed", f"init-data is larger than {MAX_INITDATA} bytes")
    return Attestation(_str(rd, "nonce", "runtime-data"), check_tee_pubkey(rd["tee-pubkey"]),
                       te["primary_evidence"], additional, initdata)


def decode_nonce(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KbsError("RcarAttestFailed", "runtime-data.nonce is not base64") from None


def report_data(nonce: str, tee_pubkey: Mapping[str, Any], additional_evidence: str = "") -> bytes:
    """REPORT_DATA for the primary evidence: SHA-384(JCS(runtime data)), zero-padded to 64 bytes."""
    runtime: dict[str, Any] = {"additional-evidence": additional_evidence, "nonce": nonce,
                               "tee-pubkey": dict(tee_pubkey)}
    try:
        canonical = rfc8785.dumps(runtime)
    except (rfc8785.CanonicalizationError, ValueError) as exc:  # a surrogate, a number JSON cannot carry
        raise KbsError("RcarAttestFailed", f"the runtime data has no canonical JSON: {exc}") from None
    return hashlib.sha384(canonical).digest().ljust(REPORT_DATA_SIZE, b"\0")
