"""Rego policy evaluation the way Kata's agent does it, on regorus.

Facts from kata ``src/agent/policy/src/policy.rs`` (research kata-agent.md
2.1): Rego v0 syntax, line limits raised to 64 KiB per line / 16 MiB /
200,000 lines, data initialised to ``{"pstate": {}}``, query
``data.agent_policy.<RequestMessageName>``; exactly one result with one
expression, else an error; a boolean is the verdict; an object is
``{"allowed": bool, "ops": [...]}`` whose ops patch the data when allowed;
``AllowRequestsFailingPolicy`` turns denials into logged allows (debug).

regorus' Python Engine is "unsendable" (pyo3 panics if it is touched from
any thread but the one that made it), and pstate is read-modify-write, so
each Policy owns one thread that creates the engine and runs every call on
it; requests from the RPC pool queue there. That also serialises
evaluations, which Kata's agent does with a mutex.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import agent.policy.jsonpatch as jsonpatch
import agent.policy.literal as literal
from agent.errors import PolicyError
from agent.record import factory, record

T = TypeVar("T")

PACKAGE = "agent_policy"
MAX_COL = 64 * 1024
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_LINES = 200_000


@record(frozen=True)
class Decision:
    allowed: bool
    prints: list[str] = factory(list)
    ops: list[Any] = factory(list)
    forced: bool = False  # allowed only because AllowRequestsFailingPolicy is true

    def reason(self, endpoint: str) -> str:
        """Kata's wording, which runtimes and people grep for."""
        return f"{endpoint} is blocked by policy: {' '.join(self.prints)}".rstrip()


def _clean(exc: Exception) -> str:
    """regorus errors carry a Rust backtrace; keep the part a policy author can use."""
    text = str(exc).split("\nStack backtrace:")[0].strip()
    return text or type(exc).__name__


class _Owner:
    """A thread that owns one engine and runs submitted calls on it, in order."""

    def __init__(self) -> None:
        self.engine: Any = None  # touched only on the owner thread, and dropped there
        self._lock = threading.Lock()
        self._stopped = False
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True, name="policy-engine")
        self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, fut = job
            try:
                fut.set_result(fn())
            except BaseException as exc:  # pyo3 panics are BaseException; hand them to the caller
                # The traceback's frames hold the engine; they must not travel to (and die on) another thread.
                exc.__traceback__ = exc.__context__ = exc.__cause__ = None
                fut.set_exception(exc if isinstance(exc, Exception) else PolicyError(f"engine panic: {exc}"))
            del job, fn, fut
        self.engine = None

    def run(self, fn: Callable[[], T]) -> T:
        if threading.current_thread() is self._thread:
            return fn()
        fut: Future[T] = Future()
        with self._lock:
            if self._stopped:
                raise PolicyError("this policy was replaced or closed")
            self._jobs.put((fn, fut))
        return fut.result()

    def stop(self) -> None:
        with self._lock:
            if not self._stopped:
                self._stopped = True
                self._jobs.put(None)


class Policy:
    """A compiled policy plus its state; one per agent, replaced whole by SetPolicy."""

    def __init__(self, text: str, name: str = "policy.rego") -> None:
        if not isinstance(text, str):
            raise PolicyError("policy text must be a string")
        if len(text.encode()) > MAX_FILE_BYTES:
            raise PolicyError(f"policy is larger than {MAX_FILE_BYTES} bytes")
        self.text = text
        self._owner = _Owner()
        try:
            self._owner.run(lambda: self._load(text, name))
        except BaseException:
            self._owner.stop()
            raise

    def close(self) -> None:
        """Stop the engine thread (the engine is dropped with it)."""
        self._owner.stop()

    def __del__(self) -> None:
        owner = getattr(self, "_owner", None)
        if owner is not None:
            owner.stop()

    @property
    def _engine(self) -> Any:
        return self._owner.engine

    @staticmethod
    def _new_engine(regorus: Any) -> Any:
        engine = regorus.Engine()
        engine.set_rego_v0(True)
        engine.set_policy_length_config(max_col=MAX_COL, max_file_bytes=MAX_FILE_BYTES, max_lines=MAX_LINES)
        engine.set_gather_prints(True)
        return engine

    def _load(self, text: str, name: str) -> None:
        try:
            import regorus
        except ImportError as exc:  # the image must carry it; say so instead of a traceback
            raise PolicyError(f"the Rego engine (regorus) is not installed: {exc}") from None
        engine = self._new_engine(regorus)
        package = None
        fast = literal.rewrite(text)
        if fast is not None:
            try:
                package = engine.add_policy(name, fast)
            except Exception:  # the original's own error is the one to report: compile it as written
                engine = self._new_engine(regorus)
        if package is None:
            try:
                package = engine.add_policy(name, text)
            except Exception as exc:  # regorus raises RuntimeError/ValueError with a located message
                raise PolicyError(f"policy does not compile: {_clean(exc)}") from None
        if package != f"data.{PACKAGE}":
            raise PolicyError(f"policy package is {package!r}, expected 'package {PACKAGE}'")
        self._owner.engine = engine
        self.last_eval_seconds = 0.0  # regorus' own share of the last decision (bench/policy.py)
        self.state: dict[str, Any] = {"pstate": {}}
        self._load_state()
        self.allow_failures = self._probe_allow_failures()

    def _load_state(self) -> None:
        self._engine.clear_data()
        self._engine.add_data_json(json.dumps(self.state))

    def _probe_allow_failures(self) -> bool:
        try:
            value = self._query("AllowRequestsFailingPolicy", "{}")
        except PolicyError:
            return False
        return value is True

    def _query(self, endpoint: str, input_json: str) -> Any:
        engine = self._engine
        try:
            engine.set_input_json(input_json)
            t0 = time.perf_counter()
            result = engine.eval_query(f"data.{PACKAGE}.{endpoint}")
            self.last_eval_seconds = time.perf_counter() - t0
        except Exception as exc:
            engine.take_prints()
            raise PolicyError(f"evaluating {endpoint} failed: {_clean(exc)}") from None
        results = result.get("result") if isinstance(result, dict) else None
        if not isinstance(results, list) or len(results) != 1:
            raise PolicyError(f"policy gave {0 if not results else len(results)} results for {endpoint}, expected 1")
        expressions = results[0].get("expressions") if isinstance(results[0], dict) else None
        if not isinstance(expressions, list) or len(expressions) != 1 or not isinstance(expressions[0], dict):
            raise PolicyError(f"policy result for {endpoint} does not have exactly one expression")
        return expressions[0].get("value")

    def evaluate(self, endpoint: str, input_json: str) -> Decision:
        """Verdict for one request; PolicyError for an engine failure or a result of the wrong shape."""
        return self._owner.run(lambda: self._evaluate(endpoint, input_json))

    def evaluate_with_coverage(self, endpoint: str, input_json: str) -> tuple[Decision, dict[str, Any]]:
        """Verdict plus regorus' line coverage of this one evaluation (for explaining denials)."""

        def run() -> tuple[Decision, dict[str, Any]]:
            engine = self._engine
            engine.set_enable_coverage(True)
            engine.clear_coverage_data()
            try:
                decision = self._evaluate(endpoint, input_json)
                report = json.loads(engine.get_coverage_report_as_json())
            finally:
                engine.set_enable_coverage(False)
            return decision, report

        return self._owner.run(run)

    def load_state(self, state: dict[str, Any]) -> None:
        """Replace the policy state (``{"pstate": {...}}``), e.g. to replay a recorded session."""
        if not isinstance(state, dict) or not isinstance(state.get("pstate", {}), dict):
            raise PolicyError("policy state must be a JSON object like {\"pstate\": {...}}")

        def run() -> None:
            self.state = {"pstate": {}, **state}
            self._load_state()

        self._owner.run(run)

    def _evaluate(self, endpoint: str, input_json: str) -> Decision:
        try:
            value = self._query(endpoint, input_json)
        finally:
            prints = [str(p) for p in self._engine.take_prints()]
        if isinstance(value, bool):
            decision = Decision(value, prints)
        elif isinstance(value, dict) and isinstance(value.get("allowed"), bool):
            ops = value.get("ops", [])
            if not isinstance(ops, list):
                raise PolicyError(f"policy result for {endpoint} has ops that are not an array")
            decision = Decision(value["allowed"], prints, ops)
            if decision.allowed and ops:
                self.state = jsonpatch.apply(self.state, ops)
                self._load_state()
        else:
            if self.allow_failures:
                return Decision(True, prints, forced=True)
            raise PolicyError(f"policy result for {endpoint} is neither a boolean nor {{allowed, ops}}: "
                              f"{json.dumps(value)[:200]}")
        if not decision.allowed and self.allow_failures:
            return Decision(True, prints, forced=True)
        return decision
