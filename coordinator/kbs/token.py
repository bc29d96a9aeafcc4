"""The attestation token: an EAR (IETF RATS "EAT Attestation Result") JWT signed ES256, as Trustee's
attestation service issues it, so a relying party that reads Trustee's tokens reads these.

Claims (draft-ietf-rats-ear, veraison/rust-ear; Trustee's choices): ``eat_profile``, ``iat``, ``exp``,
``iss``, ``ear.verifier-id``, and ``submods.cpu0`` with ``ear.status`` (affirming / warning /
contraindicated), ``ear.trustworthiness-vector``, ``ear.appraisal-policy-id`` and
``ear.veraison.annotated-evidence`` (the TEE's claims and, for TDX, ``cc_eventlog_replayed``; ``report_data``,
``runtime_data_claims`` with the nonce and the TEE key the resources are wrapped to, ``init_data``). The
header carries the signer's public JWK as Trustee's does, but a verifier here never takes the key from the
header: it is the broker's own.
"""

from __future__ import annotations

import json
import time
from typing import Any

from jwcrypto import jwk, jws, jwt

import agent
from coordinator.kbs.errors import KbsError
from coordinator.kbs.evidence import Appraisal

PROFILE = "tag:github.com,2024:confidential-containers/Trustee"
ISSUER = "cocoon-kbs"
POLICY_ID = "default"
AFFIRMING, CONTRAINDICATED = 2, 96  # trust tiers (rust-ear): [-32, 31] affirming, beyond 95 contraindicated
# which verifier claim speaks to which trustworthiness-vector entry
CATEGORY = (("measurement", "executables"), ("mrtd", "executables"), ("rtmr", "executables"),
            ("ccel", "executables"), ("host_data", "configuration"), ("mrconfigid", "configuration"),
            ("policy", "configuration"), ("report_data", "instance-identity"))


def _category(claim: str) -> str:
    return next((cat for key, cat in CATEGORY if key in claim), "hardware")


def claims(appraisal: Appraisal, tee_pubkey: dict[str, Any], nonce: str, lifetime_s: int,
           now: float | None = None) -> dict[str, Any]:
    issued = int(now if now is not None else time.time())
    vector: dict[str, int] = {}
    for c in appraisal.result.claims:
        if c.status == "skip":
            continue
        cat = _category(c.name)
        value = AFFIRMING if c.status == "pass" else CONTRAINDICATED
        vector[cat] = max(vector.get(cat, AFFIRMING), value)
    status = "affirming" if appraisal.ok and vector and max(vector.values()) < CONTRAINDICATED else "contraindicated"
    annotated: dict[str, Any] = {
        appraisal.tee: {"measurement": appraisal.measurement.hex(), "host_data": appraisal.host_data.hex(),
                        "simulated": appraisal.result.simulated,
                        "claims": {c.name: c.status for c in appraisal.result.claims}},
        "report_data": appraisal.report_data.hex(),
        "runtime_data_claims": {"nonce": nonce, "tee-pubkey": tee_pubkey},
        "init_data": appraisal.host_data.hex(),
    }
    if appraisal.cc_eventlog_replayed is not None:  # TDX: whether the RTMRs were replayed from an event log
        annotated[appraisal.tee]["cc_eventlog_replayed"] = appraisal.cc_eventlog_replayed
    if appraisal.initdata is not None:
        annotated["init_data_claims"] = claims_of_initdata(appraisal.initdata)
    return {
        "eat_profile": PROFILE, "iat": issued, "exp": issued + lifetime_s, "iss": ISSUER,
        "ear.verifier-id": {"developer": "cocoon", "build": f"cocoon-kbs {agent.__version__}"},
        "submods": {"cpu0": {"ear.status": status, "ear.trustworthiness-vector": vector,
                             "ear.appraisal-policy-id": POLICY_ID,
                             "ear.veraison.annotated-evidence": annotated}},
    }


MAX_CLAIM_TEXT = 4096


def claims_of_initdata(data: Any) -> Any:
    """The initdata's entries as the token carries them: an entry longer than MAX_CLAIM_TEXT (a generated
    policy.rego is tens of KiB) as ``{"sha256": hex}`` of its text. The token rides in every resource
    request's Authorization header, which HTTP servers (ours included) bound to 64 KiB per line; a resource
    policy that wants the whole document pins ``init_data``, its digest."""
    import hashlib

    if not isinstance(data, dict):
        return data
    return {k: ({"sha256": hashlib.sha256(v.encode()).hexdigest()} if isinstance(v, str) and len(v) > MAX_CLAIM_TEXT
                else v) for k, v in data.items()}


def issue(body: dict[str, Any], key: jwk.JWK) -> str:
    header = {"alg": "ES256", "typ": "JWT", "jwk": {**json.loads(key.export_public()), "alg": "ES256"}}
    token = jwt.JWT(header=header, claims=body)
    token.make_signed_token(key)
    return str(token.serialize())


def verify(text: str, key: jwk.JWK, now: float | None = None) -> dict[str, Any]:
    """The claims of a token this broker signed and that has not expired; anything else is refused."""
    if not isinstance(text, str) or len(text) > 64 << 10 or text.count(".") != 2:
        raise KbsError("TokenVerifierError", "the token is not a compact JWS")
    try:
        signed = jws.JWS()
        signed.deserialize(text)
        if signed.jose_header.get("alg") != "ES256":
            raise KbsError("TokenVerifierError", "the token is not ES256")
        signed.verify(key, alg="ES256")
        doc = json.loads(signed.payload)
    except KbsError:
        raise
    except (jws.InvalidJWSObject, jws.InvalidJWSSignature, jws.InvalidJWSOperation, ValueError, TypeError):
        raise KbsError("TokenVerifierError", "the token's signature is not this broker's") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("exp"), int):
        raise KbsError("TokenVerifierError", "the token has no expiry")
    if doc["exp"] <= (now if now is not None else time.time()):
        raise KbsError("TokenVerifierError", "the token has expired")
    return doc


def tee_pubkey(doc: dict[str, Any]) -> dict[str, Any]:
    """The TEE key a resource is wrapped to: the token's own claim (Trustee's first built-in path)."""
    try:
        key = doc["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["runtime_data_claims"]["tee-pubkey"]
    except (KeyError, TypeError):
        raise KbsError("TokenVerifierError", "the token names no TEE key") from None
    if not isinstance(key, dict):
        raise KbsError("TokenVerifierError", "the token names no TEE key")
    return key
