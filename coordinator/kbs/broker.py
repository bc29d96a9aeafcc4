"""The broker's decisions, without HTTP: a session per /auth, the evidence appraised once per session, an
EAR token, and each resource request decided by the resource policy over the token.

Sessions (trustee kbs/src/attestation/session.rs): the ``kbs-session-id`` cookie is 32 hex digits of
randomness; a session lives ``session_timeout_s`` from /auth; its nonce is spent by the first /attest (a
second /attest with a valid token gets that token again, as Trustee does; one that failed leaves the
session unusable), so evidence for a nonce can never be replayed into another session. The table is bounded;
expired sessions go before new ones are refused.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from jwcrypto import jwk

from coordinator.kbs import evidence, jwe, protocol
from coordinator.kbs import token as tokens
from coordinator.kbs.errors import KbsError
from coordinator.kbs.policy import ResourcePolicy
from coordinator.kbs.store import Store, resource_path

SESSION_TIMEOUT_S = 300
TOKEN_LIFETIME_S = 300
MAX_SESSIONS = 4096
KEY_FILE = "token-key.json"
PUBLIC_KEY_FILE = "token-key.pub.pem"  # what `cocoon verify --ear --broker-key` pins
POLICY_FILE = "resource-policy.rego"


@dataclasses.dataclass
class Session:
    tee: str
    nonce: str  # base64, as the challenge said it
    expires: float
    token: str | None = None
    spent: bool = False


@dataclasses.dataclass
class Config:
    state: Path
    reference_values: Any
    trust_sim: str | None = None
    session_timeout_s: int = SESSION_TIMEOUT_S
    token_lifetime_s: int = TOKEN_LIFETIME_S
    max_sessions: int = MAX_SESSIONS


class Broker:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store(config.state)
        self.sessions: dict[str, Session] = {}
        self.lock = threading.Lock()
        self.policy_lock = threading.Lock()
        self.signing_key = self._signing_key()
        text = self.store.read_text(POLICY_FILE)
        self.policy = ResourcePolicy() if text is None else ResourcePolicy(text)

    def _signing_key(self) -> jwk.JWK:
        """The token key, kept in the state so tokens outlive a restart; made once."""
        text = self.store.read_text(KEY_FILE)
        if text is None:
            key = jwk.JWK.generate(kty="EC", crv="P-256")
            self.store.write_text(KEY_FILE, key.export_private())
            self.store.write_text(PUBLIC_KEY_FILE, bytes(key.export_to_pem()).decode())  # for relying parties
            return key
        try:
            return jwk.JWK.from_json(text)
        except Exception as exc:
            raise KbsError("StorageBackendInitialization", f"{KEY_FILE}: {exc}") from None

    def close(self) -> None:
        self.policy.close()

    # --- RCAR --------------------------------------------------------------------------------------------
    def auth(self, body: bytes, now: float | None = None) -> tuple[str, bytes]:
        """(session id, Challenge body) for a Request."""
        request = protocol.parse_request(body)
        now = time.time() if now is None else now
        nonce = secrets.token_bytes(protocol.NONCE_SIZE)
        sid = secrets.token_hex(16)
        with self.lock:
            if len(self.sessions) >= self.config.max_sessions:
                for old in [k for k, s in self.sessions.items() if s.expires <= now]:
                    del self.sessions[old]
            if len(self.sessions) >= self.config.max_sessions:  # the oldest session that never attested goes
                waiting = [k for k, s in self.sessions.items() if s.token is None]
                if not waiting:
                    raise KbsError("RcarAuthFailed", f"{len(self.sessions)} attested sessions are open; try "
                                                     "again later", status=503)
                del self.sessions[min(waiting, key=lambda k: self.sessions[k].expires)]
            challenge = protocol.challenge(nonce)
            self.sessions[sid] = Session(request.tee, json.loads(challenge)["nonce"],
                                         now + self.config.session_timeout_s)
        return sid, challenge

    def _session(self, sid: str | None, now: float) -> Session:
        if not sid:
            raise KbsError("UnAuthenticatedCookie", "no kbs-session-id cookie: POST /kbs/v0/auth first")
        with self.lock:
            session = self.sessions.get(sid)
            if session is None:
                raise KbsError("UnAuthenticatedCookie", "the kbs-session-id cookie names no session of this broker")
            if session.expires <= now:
                del self.sessions[sid]
                raise KbsError("ExpiredCookie", "the session has expired: POST /kbs/v0/auth again")
        return session

    def attest(self, sid: str | None, body: bytes, now: float | None = None) -> str:
        """The token for a session's Attestation; the session's nonce is spent by the first try."""
        now = time.time() if now is None else now
        session = self._session(sid, now)
        with self.lock:
            if session.token is not None:
                return session.token
            if session.spent:
                raise KbsError("RcarAttestFailed", "this session's nonce was spent on a failed attestation: "
                                                   "POST /kbs/v0/auth again")
            session.spent = True
        att = protocol.parse_attestation(body)
        if att.nonce != session.nonce:
            raise KbsError("RcarAttestFailed", "runtime-data.nonce is not this session's challenge")
        appraisal = evidence.appraise(session.tee, att, self.config.reference_values,
                                      trust_sim=self.config.trust_sim)
        if not appraisal.ok:
            failed = "; ".join(f"{c.name}: {c.detail}" for c in appraisal.result.failed)
            raise KbsError("RcarAttestFailed", f"the evidence did not verify: {failed}")
        claims = tokens.claims(appraisal, att.tee_pubkey, att.nonce, self.config.token_lifetime_s, now)
        token = tokens.issue(claims, self.signing_key)
        with self.lock:
            session.token = token
        return token

    def resource(self, segments: list[str], sid: str | None = None, bearer: str | None = None,
                 query: dict[str, str] | None = None, now: float | None = None) -> bytes:
        """The JWE of a resource for a session's token or a bearer token the policy accepts."""
        now = time.time() if now is None else now
        resource_path(segments)
        if bearer is not None:
            text = bearer
        elif sid:
            session = self._session(sid, now)
            if session.token is None:
                raise KbsError("TokenNotFound", "this session has not attested: POST /kbs/v0/attest first")
            text = session.token
        else:
            raise KbsError("TokenNotFound", "no attestation token: a kbs-session-id cookie or a bearer token")
        claims = tokens.verify(text, self.signing_key, now)
        if not self.policy.allows(claims, segments, query):
            raise KbsError("PolicyDeny", f"the resource policy denies {'/'.join(segments)} to this attestation")
        data = self.store.get(segments)
        return jwe.wrap(data, tokens.tee_pubkey(claims))

    # --- admin -------------------------------------------------------------------------------------------
    def put_resource(self, segments: list[str], data: bytes) -> None:
        self.store.put(segments, data)

    def set_policy(self, text: str) -> None:
        with self.policy_lock:  # memory and disk hold the same policy, whoever sets one at the same time
            self.policy.replace(text)  # compiles first: a bad policy changes nothing
            self.store.write_text(POLICY_FILE, text)
