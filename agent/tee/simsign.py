"""ECDSA P-384 signatures for the sim TEE, made by the libcrypto the interpreter already has mapped.

The sim PSP signs one report at start-up. Loading ``cryptography`` for that
costs its Rust extension (megabytes read cold from the dm-verity root): in
the emulated guest that was ~3 of the agent's ~8 s to READY, a cost no real
TEE has (there the PSP or the TDX module signs). CPython's ``hashlib``
already links OpenSSL's libcrypto, so the signature comes from the same
OpenSSL through ctypes: ``EC_KEY`` with the scalar, ``ECDSA_do_sign`` over
the SHA-384 digest (OpenSSL picks the nonce), R and S read back. Where that
library cannot be found the caller falls back to ``cryptography``.
Verification never comes here: verifiers use ``cryptography``.
"""

from __future__ import annotations

import ctypes
from typing import Any

from agent.errors import TeeError

NID_SECP384R1 = 715  # OpenSSL obj_mac.h
P384_ORDER = int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973", 16)
_SIZE = 48

_lib: Any = None


def _libcrypto() -> Any:
    global _lib
    if _lib is None:
        import _hashlib  # noqa: F401  (maps libcrypto; the dlopen below then only finds it)

        lib = None
        for name in ("libcrypto.so.3", "libcrypto.so"):
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if lib is None:
            raise TeeError("libcrypto not found")
        vp, cp, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        for fn, res, args in (
            ("EC_KEY_new_by_curve_name", vp, [ci]), ("EC_KEY_set_private_key", ci, [vp, vp]),
            ("EC_KEY_free", None, [vp]), ("BN_bin2bn", vp, [cp, ci, vp]), ("BN_clear_free", None, [vp]),
            ("BN_bn2binpad", ci, [vp, cp, ci]), ("ECDSA_do_sign", vp, [cp, ci, vp]),
            ("ECDSA_SIG_get0", None, [vp, ctypes.POINTER(vp), ctypes.POINTER(vp)]), ("ECDSA_SIG_free", None, [vp]),
        ):
            f = getattr(lib, fn)
            f.restype, f.argtypes = res, args
        _lib = lib
    return _lib


def sign_digest(scalar: bytes, digest: bytes) -> tuple[int, int]:
    """(R, S) of an ECDSA P-384 signature of ``digest`` (already SHA-384) under private key ``scalar``."""
    if len(scalar) != _SIZE or not 0 < int.from_bytes(scalar, "big") < P384_ORDER:
        raise TeeError("sim VCEK key is not a P-384 private scalar")
    lib = _libcrypto()
    key = lib.EC_KEY_new_by_curve_name(NID_SECP384R1)
    bn = lib.BN_bin2bn(scalar, _SIZE, None)
    sig = None
    try:
        if not key or not bn or lib.EC_KEY_set_private_key(key, bn) != 1:
            raise TeeError("libcrypto refused the sim VCEK key")
        sig = lib.ECDSA_do_sign(digest, len(digest), key)
        if not sig:
            raise TeeError("libcrypto could not sign")
        r, s = ctypes.c_void_p(), ctypes.c_void_p()
        lib.ECDSA_SIG_get0(sig, ctypes.byref(r), ctypes.byref(s))
        out = []
        for bnum in (r, s):
            buf = ctypes.create_string_buffer(_SIZE)
            if lib.BN_bn2binpad(bnum, buf, _SIZE) != _SIZE:
                raise TeeError("libcrypto returned an oversized signature component")
            out.append(int.from_bytes(buf.raw, "big"))
        return out[0], out[1]
    finally:
        if sig:
            lib.ECDSA_SIG_free(sig)
        if bn:
            lib.BN_clear_free(bn)
        if key:
            lib.EC_KEY_free(key)
