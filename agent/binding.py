"""The startup sequence: TEE -> initdata -> fresh report -> digest comparison -> policy -> READY.

This is the one promise the agent makes: it obeys only the policy the
hardware measured. Every step either succeeds or yields deny-all with a
reason; nothing here raises, so there is no path on which a failure turns
into "no policy, allow". The comparison uses the report's own field (HOSTDATA
/ MRCONFIGID) from a report requested with fresh random REPORT_DATA, so a
replayed or cached report is noticed.

A TEE without such a launch-fixed field (Azure's vTPM: the host sets
HOST_DATA) binds by measurement instead (``ExtendBinding``): the agent,
itself measured, extends the initdata digest into a register once, and the
verifier compares the register with that one extend. The step is then
TEE -> initdata -> extend once (the register must be zero before and read
back as the extend after) -> policy -> READY; there is no report to compare.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from typing import Protocol, TypeGuard

from agent.errors import AgentError, TeeError
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


class ExtendBinding(TeeProvider, Protocol):
    """A TEE that binds initdata by extending a measurement register, not by a field fixed at launch.

    Such a provider says so with ``binds_by_extend = True`` (every other provider binds by ``bound_value``,
    the report's launch-fixed field); ``bound_field`` names the register. ``bind_initdata`` extends it
    exactly once and returns its value, raising TeeError when it was not in its reset state before or does
    not read back as ``extended_value(digest)`` after; ``initdata_register`` reads it; ``digest_algorithm``
    is the only initdata algorithm the register takes."""

    binds_by_extend: bool
    digest_algorithm: str

    def bind_initdata(self, digest: bytes) -> bytes: ...

    def initdata_register(self) -> bytes: ...

    def extended_value(self, digest: bytes) -> bytes: ...


def binds_by_extend(tee: TeeProvider) -> TypeGuard[ExtendBinding]:
    """Whether ``tee`` binds by measurement (``ExtendBinding``); absent means by its launch-fixed field."""
    return getattr(tee, "binds_by_extend", False) is True


def _extend_once(tee: ExtendBinding, initdata: Initdata) -> str:
    """Extend the register with the initdata digest; how the binding reads in the READY reason.

    A digest of another algorithm is refused, not truncated or hashed into shape: guest-components'
    az-snp-vtpm attester refuses anything but 32 bytes ("expected sha256 digest"), trustee's verifier and
    cocoon's (``az.tpm.pcr8.initdata``) compare PCR 8 with the extend of a 32-byte digest, so no shape of a
    SHA-384 digest would ever be admitted."""
    if initdata.algorithm != tee.digest_algorithm:
        raise TeeError(f"{tee.bound_field} of {tee.name} binds a {tee.digest_algorithm} initdata digest, but "
                       f"{initdata.source} says algorithm = {initdata.algorithm!r}; a digest of another "
                       f"algorithm is not cut or hashed to fit (no verifier would admit it)")
    value = tee.bind_initdata(initdata.digest)
    return f"{tee.bound_field} {value.hex()} (extended once with the digest {initdata.digest.hex()})"


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
    if binds_by_extend(tee):
        try:
            bound_by = _extend_once(tee, initdata)
        except AgentError as exc:
            return discard(f"initdata not bound by extending {tee.bound_field}: {exc}", tee=tee, initdata=initdata)
        timings["extend"] = time.perf_counter() - t0
    else:
        nonce = os.urandom(64)
        try:
            evidence = tee.report(nonce)
            if not hmac.compare_digest(tee.report_data_of(evidence), nonce):
                return discard("the TEE report does not carry the fresh REPORT_DATA requested; refusing a stale "
                               "report", tee=tee, initdata=initdata)
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
        bound_by = f"{tee.bound_field} {expected.hex()}"
    if initdata.policy is None:
        return discard(f"initdata {initdata.source} has no 'policy.rego' entry", tee=tee, initdata=initdata)
    compiling.join()
    result = compiled[0] if compiled else AgentError("policy compilation did not finish")
    if not isinstance(result, Policy):
        return _deny(f"policy from initdata: {result}", tee=tee, initdata=initdata)
    timings["policy"] = time.perf_counter() - t0
    reason = f"policy bound to {tee.name} {bound_by} ({initdata.algorithm} of {initdata.source})"
    log.info("ready: %s", reason)
    return Binding(READY, reason, tee=tee, initdata=initdata, policy=result, timings=timings)


def bind_safely(open_tee, read_initdata) -> Binding:  # type: ignore[no-untyped-def]
    """``bind`` with a last line of defence: a bug in a parser still ends in deny-all, never in allow."""
    try:
        return bind(open_tee, read_initdata)
    except Exception as exc:  # deliberately broad: fail closed on our own bugs
        log.exception("startup failed unexpectedly")
        return _deny(f"internal error during startup: {type(exc).__name__}: {exc}")
