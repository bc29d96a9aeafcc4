"""Claims and results: one entry per check, pass/fail/skip, expected vs actual.

The JSON form follows the shape of an EAR (IETF RATS "EAT Attestation
Result"): a verifier id, an overall status, and per-claim appraisal entries;
we keep the claim names our own and put expected/actual next to each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, SKIP = "pass", "fail", "skip"
# The words of the claims both TEEs make about the fields the relying party fixes (Result.bound).
NO_INITDATA = "no initdata given"
NO_NONCE = "no nonce given: freshness not checked"
BOUND_TO_NONCE = "bound to the nonce (and key)"


@dataclass
class Claim:
    name: str
    status: str
    detail: str = ""
    expected: Any = None
    actual: Any = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.detail:
            out["detail"] = self.detail
        if self.expected is not None:
            out["expected"] = self.expected
        if self.actual is not None:
            out["actual"] = self.actual
        return out


@dataclass
class Result:
    tee: str
    claims: list[Claim] = field(default_factory=list)
    simulated: bool = False

    def add(self, name: str, ok: bool, detail: str = "", expected: Any = None, actual: Any = None) -> bool:
        self.claims.append(Claim(name, PASS if ok else FAIL, detail, expected, actual))
        return ok

    def skip(self, name: str, detail: str) -> None:
        self.claims.append(Claim(name, SKIP, detail))

    def bound(self, name: str, expected: bytes | None, actual: bytes, detail: str, unknown: str) -> None:
        """A field the report must carry exactly (initdata digest, REPORT_DATA); skipped, saying ``unknown``,
        when the relying party gave nothing to compare it with."""
        if expected is None:
            self.skip(name, unknown)
        else:
            self.add(name, actual == expected, detail, expected.hex(), actual.hex())

    @property
    def ok(self) -> bool:
        return bool(self.claims) and all(c.status != FAIL for c in self.claims)

    @property
    def failed(self) -> list[Claim]:
        return [c for c in self.claims if c.status == FAIL]

    def to_json(self) -> dict[str, Any]:
        return {
            "eat_profile": "tag:cocoon,2026:ear/v1",
            "iat": int(time.time()),
            "ear.verifier-id": {"developer": "cocoon", "build": "cocoon verify"},
            "submods": {self.tee: {
                "ear.status": "affirming" if self.ok else "contraindicated",
                "simulated": self.simulated,
                "claims": {c.name: c.to_json() for c in self.claims},
            }},
        }

    def table(self) -> str:
        width = max((len(c.name) for c in self.claims), default=10)
        lines = [f"{'claim':<{width}}  result  detail"]
        for c in self.claims:
            detail = c.detail
            if c.status == FAIL and c.expected is not None:
                detail = f"{detail} (expected {c.expected}, got {c.actual})".strip()
            lines.append(f"{c.name:<{width}}  {c.status.upper():<6}  {detail}")
        verdict = "VERIFIED" if self.ok else f"REJECTED ({len(self.failed)} claim(s) failed)"
        sim = " — SIMULATED TEE, not hardware" if self.simulated else ""
        lines.append(f"{self.tee}: {verdict}{sim}")
        return "\n".join(lines)
