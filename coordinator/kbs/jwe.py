"""A resource wrapped to the TEE's key as Trustee sends it: a flattened JWE, A256GCM content encryption, the
key managed by the tee-pubkey's ``alg`` (ECDH-ES+A256KW with ``epk`` in the *protected* header, or
RSA-OAEP-256), no ``aad`` member; the AEAD's additional data is the protected header's base64url text
(RFC 7516; trustee kbs/src/jwe/mod.rs).

jwcrypto's JWE object puts a recipient's ``epk`` in the unprotected header, which Trustee's clients do not
read; so the message is assembled here from jwcrypto's own algorithm objects (Concat KDF, AES key wrap,
RSA-OAEP, AES-GCM): the cryptography is the library's, only the JSON layout is ours.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jwcrypto import jwa, jwk
from jwcrypto.common import base64url_encode

ENC = "A256GCM"


def wrap(plaintext: bytes, tee_pubkey: Mapping[str, Any]) -> bytes:
    """The JWE (JSON) of ``plaintext`` for ``tee_pubkey`` (checked by protocol.check_tee_pubkey)."""
    alg = str(tee_pubkey["alg"])
    key = jwk.JWK(**{k: v for k, v in tee_pubkey.items() if k != "alg"})
    keymgmt: Any = jwa.JWA.keymgmt_alg(alg)  # the stubs type these as the base class
    enc: Any = jwa.JWA.encryption_alg(ENC)
    header: dict[str, Any] = {"alg": alg, "enc": ENC}
    wrapped = keymgmt.wrap(key, enc.wrap_key_size, None, dict(header))
    header.update(wrapped.get("header") or {})
    protected = base64url_encode(json.dumps(header, separators=(",", ":")))
    iv, ciphertext, tag = enc.encrypt(wrapped["cek"], protected.encode(), plaintext)
    return json.dumps({"protected": protected, "encrypted_key": base64url_encode(wrapped["ek"]),
                       "iv": base64url_encode(iv), "ciphertext": base64url_encode(ciphertext),
                       "tag": base64url_encode(tag)}).encode()
