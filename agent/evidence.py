"""Evidence bound to a caller's nonce: REPORT_DATA = SHA-512(public key DER || nonce).

The construction is Contrast's aTLS one (``internal/attestation/reportdata``):
binding the caller's nonce gives freshness, binding a public key lets the
caller trust a channel to whoever holds the private key. Without a key the
nonce itself, zero-padded to 64 bytes, is the REPORT_DATA, so a verifier can
check it by eye.
"""

from __future__ import annotations

import hashlib

from agent.errors import TeeError
from agent.tee.base import REPORT_DATA_SIZE, Evidence, TeeProvider

MAX_NONCE = 64
MAX_PUBLIC_KEY = 16 * 1024


def bind_report_data(nonce: bytes, public_key_der: bytes | None = None) -> bytes:
    """The REPORT_DATA rule itself, unchecked: the agent binds with it (``report_data``), the verifier
    recomputes it to check a report (``verifier.api``); each side checks its inputs its own way first."""
    if public_key_der:
        return hashlib.sha512(public_key_der + nonce).digest()
    return nonce + bytes(REPORT_DATA_SIZE - len(nonce))


def report_data(nonce: bytes, public_key_der: bytes | None = None) -> bytes:
    """The REPORT_DATA to ask the TEE for: a nonce of at most 64 bytes, a parseable key of at most 16 KiB."""
    if len(nonce) > MAX_NONCE:
        raise TeeError(f"nonce is {len(nonce)} bytes, at most {MAX_NONCE}")
    if public_key_der:
        if len(public_key_der) > MAX_PUBLIC_KEY:
            raise TeeError(f"public key is {len(public_key_der)} bytes, at most {MAX_PUBLIC_KEY}")
        _check_public_key(public_key_der)
    return bind_report_data(nonce, public_key_der)


def _check_public_key(der: bytes) -> None:
    """Only a parseable SubjectPublicKeyInfo may be bound; anything else binds nothing useful."""
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        load_der_public_key(der)
    except (ValueError, TypeError) as exc:
        raise TeeError(f"public key is not a DER SubjectPublicKeyInfo: {exc}") from None


def collect(tee: TeeProvider, nonce: bytes, public_key_der: bytes | None = None) -> Evidence:
    """Fresh evidence for a caller, checked to carry the REPORT_DATA we asked for."""
    wanted = report_data(nonce, public_key_der)
    evidence = tee.report(wanted)
    if tee.report_data_of(evidence) != wanted:
        raise TeeError("the TEE returned a report whose REPORT_DATA is not the one requested")
    return evidence
