"""JSON from outside, read strictly: one reading for every relying party.

Readers disagree on a repeated key (first wins, last wins, error) and on
NaN/Infinity, so a document that means one thing to its signer or author
can mean another here. Every JSON cocoon takes from outside (the verifier's
reference values, evidence files and PCS collateral, the guest's sealed
secrets) is decoded by ``DECODER``: a
duplicate key at any depth (compared decoded, so ``"\\u0074cbInfo"`` repeats
``tcbInfo``) and the non-JSON constants are errors.
"""

from __future__ import annotations

import json
import re
from typing import Any

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def name(key: str) -> str:
    """A key as a message shows it: bare when it is a plain name, else quoted and escaped (at most 40 chars)."""
    return key if _NAME.fullmatch(key) else json.dumps(key, ensure_ascii=True)[:40]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {name(key)}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


def loads(text: str | bytes) -> Any:
    """Decode strictly; ValueError (JSONDecodeError, UnicodeDecodeError) or RecursionError on bad input."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8")
    return DECODER.decode(text)
