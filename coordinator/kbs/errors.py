"""Trustee's error bodies: every refusal is ``{"type": ".../errors/<Variant>", "detail": "..."}``.

Variant names and status codes are Trustee's (kbs/src/error.rs): InvalidRequestPath and PluginNotFound are
404, everything else 401 (a policy denial too, whatever the protocol document says). A client written for
Trustee can branch on the variant; a person reads the detail.
"""

from __future__ import annotations

import json

ERROR_TYPE = "https://github.com/confidential-containers/kbs/errors/"
NOT_FOUND = frozenset({"InvalidRequestPath", "PluginNotFound"})


class KbsError(Exception):
    """A refusal: ``variant`` is Trustee's error name, ``detail`` why, ``status`` the HTTP code."""

    def __init__(self, variant: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"{variant}: {detail}")
        self.variant = variant
        self.detail = detail
        self.status = status if status is not None else (404 if variant in NOT_FOUND else 401)

    def body(self) -> bytes:
        return json.dumps({"type": ERROR_TYPE + self.variant, "detail": self.detail}).encode()


def parse_error_body(raw: bytes) -> tuple[str, str]:
    """(variant, detail) of an error body, for clients; a body of another shape is itself an error."""
    try:
        doc = json.loads(raw)
        kind, detail = doc["type"], doc["detail"]
    except (ValueError, KeyError, TypeError):
        raise KbsError("HTTPFailed", f"the broker answered with a body that is not an error: {raw[:200]!r}") from None
    if not isinstance(kind, str) or not kind.startswith(ERROR_TYPE) or not isinstance(detail, str):
        raise KbsError("HTTPFailed", f"the broker answered with a body that is not an error: {raw[:200]!r}")
    return kind[len(ERROR_TYPE):], detail
