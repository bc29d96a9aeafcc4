"""The startup sequence: TEE -> initdata -> fresh report -> digest comparison -> policy -> READY.

This is the one promise the agent makes: it obeys only the policy the
hardware measured. Every step either succeeds or yields deny-all with a
reason; nothing here raises, so there is no path on which a failure turns
into "no policy, allow". The comparison uses the report's own field (HOSTDATA
/ MRCONFIGID) from a report requested with fresh random REPORT_DATA, so a
replayed or cached report is noticed.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time

from agent.errors import AgentError
from agent.initdata import Initdata
from agent.policy import Decision, Policy
from agent.record import factory, record
from agent.tee import TeeProvider

log = logging.getLogger("cocoon.agent")

READY = "ready"
DENY_ALL = "deny-all"


@record
class Binding:
    """What startup established; ``state`` is READY only with a verified policy loaded."""

    state: str
    reason: str
    tee: TeeProvider | None = None
    initdata: Initdata | None = None
    policy: Policy | None = None
    timings: dict[str, float] = factory(dict)

    @property
    def ready(self) -> bool:
        return self.state == READY and self.policy is not None

    def status_line(self) -> str:
        """What sd_notify STATUS= and logs carry."""
        if self.ready:
            return f"ready: {self.reason}"
        return f"deny-all: {self.reason}"

    def check(self, endpoint: str, input_json: str) -> Decision:
        """Policy verdict, or a denial naming why the agent is in deny-all."""
        if not self.ready or self.policy is None:
            return Decision(False, [f"agent is in deny-all mode: {self.reason}"])
        return self.policy.evaluate(endpoint, input_json)


def _deny(reason: str, **kw: object) -> Binding:
    log.error("deny-all: %s", reason)
    return Binding(DENY_ALL, reason, **kw)  # type: ignore[arg-type]


def _compile_ahead(text: str | None) -> tuple[threading.Thread, list[object]]:
    """Compile the policy on a helper thread while the TEE is asked for a report.

    The compile overlaps the TEE round trip (a hardware report is a wait, not
    work). regorus holds the GIL for most of ``add_policy`` (measured: a
    spinning thread gets ~40% of a CPU meanwhile), so against Python work the
    overlap is small; start-up time is bounded by the sum of GIL-held work,
    which is why the container backend loads after READY (agent.lazybackend). The result is used only
    if the digest comparison succeeds; until then it is just parsed text
    (regorus is memory-safe and the size is bounded), never consulted.
    """
    out: list[object] = []

    def run() -> None:
        if text is None:
            return
        try:
            out.append(Policy(text))
        except AgentError as exc:
            out.append(exc)

    t = threading.Thread(target=run, daemon=True, name="policy-compile")
    t.start()
    return t, out


def bind(open_tee, read_initdata) -> Binding:  # type: ignore[no-untyped-def]
    """Run the sequence with the given factories (they raise AgentError on failure)."""
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    initdata: Initdata | None = None
    initdata_error: AgentError | None = None
    try:
        initdata = read_initdata()
    except AgentError as exc:
        initdata_error = exc
    timings["initdata"] = time.perf_counter() - t0
    compiling, compiled = _compile_ahead(initdata.policy if initdata is not None else None)

    def discard(reason: str, **kw: object) -> Binding:
        compiling.join()
        for item in compiled:
            if isinstance(item, Policy):
                item.close()
        return _deny(reason, **kw)

    try:
        tee: TeeProvider = open_tee()
    except AgentError as exc:
        return discard(f"TEE unavailable: {exc}")
    timings["tee"] = time.perf_counter() - t0
    if initdata is None:
        return discard(f"initdata: {initdata_error}", tee=tee)
    nonce = os.urandom(64)
    try:
        evidence = tee.report(nonce)
        if not hmac.compare_digest(tee.report_data_of(evidence), nonce):
            return discard("the TEE report does not carry the fresh REPORT_DATA requested; refusing a stale report",
                           tee=tee, initdata=initdata)
        bound = tee.bound_value(evidence)
    except AgentError as exc:
        return discard(f"TEE report failed: {exc}", tee=tee, initdata=initdata)
    timings["report"] = time.perf_counter() - t0
    expected = initdata.bound(tee.bound_size)
    if not hmac.compare_digest(bound, expected):
        return discard(
            f"initdata digest mismatch: {tee.bound_field} in the {tee.name} report is {bound.hex()}, "
            f"but the {initdata.algorithm} digest of {initdata.source} is {expected.hex()}",
            tee=tee, initdata=initdata,
        )
    if initdata.policy is None:
        return discard(f"initdata {initdata.source} has no 'policy.rego' entry", tee=tee, initdata=initdata)
    compiling.join()
    result = compiled[0] if compiled else AgentError("policy compilation did not finish")
    if not isinstance(result, Policy):
        return _deny(f"policy from initdata: {result}", tee=tee, initdata=initdata)
    timings["policy"] = time.perf_counter() - t0
    reason = (f"policy bound to {tee.name} {tee.bound_field} {expected.hex()} "
              f"({initdata.algorithm} of {initdata.source})")
    log.info("ready: %s", reason)
    return Binding(READY, reason, tee=tee, initdata=initdata, policy=result, timings=timings)


def bind_safely(open_tee, read_initdata) -> Binding:  # type: ignore[no-untyped-def]
    """``bind`` with a last line of defence: a bug in a parser still ends in deny-all, never in allow."""
    try:
        return bind(open_tee, read_initdata)
    except Exception as exc:  # deliberately broad: fail closed on our own bugs
        log.exception("startup failed unexpectedly")
        return _deny(f"internal error during startup: {type(exc).__name__}: {exc}")
