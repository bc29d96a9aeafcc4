"""The resource policy: Rego (regorus, the engine Kata's agent and Trustee use) deciding ``data.policy.allow``
over the attestation token's claims (``input``) and the request (``data.plugin``, ``data["resource-path"]``,
``data.query``), as Trustee's resource policies do. A policy that does not compile is refused when set;
an evaluation error or a result that is not ``true`` is a denial (fail closed).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from coordinator.kbs.errors import KbsError

# Our own default: release only to evidence the verifier affirmed, and never to simulated evidence (a sim
# deployment says so with a policy of its own).
DEFAULT = """package policy

default allow := false

allow if {
	data.plugin == "resource"
	cpu0 := input.submods.cpu0
	cpu0["ear.status"] == "affirming"
	not simulated(cpu0["ear.veraison.annotated-evidence"])
}

simulated(evidence) if {
	some tee, claims in evidence
	is_object(claims)
	claims.simulated == true
}
"""
MAX_POLICY = 256 << 10
T = TypeVar("T")


def _retire(worker: concurrent.futures.ThreadPoolExecutor, holder: dict[str, Any]) -> None:
    with contextlib.suppress(RuntimeError):  # at interpreter exit the worker may be gone already
        worker.submit(holder.clear)
    worker.shutdown(wait=False)


class ResourcePolicy:
    """regorus engines are bound to the thread that made them (pyo3 ``unsendable``), so one worker thread
    owns the engine: it compiles, evaluates and drops it; callers wait on its answers."""

    def __init__(self, text: str = DEFAULT) -> None:
        self.worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rego")
        self.text = text
        self.holder: dict[str, Any] = {}  # "engine": touched by the worker thread only
        try:
            self._run(lambda: self._install(text))
        except BaseException:
            self.worker.shutdown(wait=False)  # a policy that does not load leaves no thread behind
            raise
        # however this object goes, the engine is dropped on its own thread
        self.close = weakref.finalize(self, _retire, self.worker, self.holder)

    def _run(self, fn: Callable[[], T]) -> T:
        return self.worker.submit(fn).result()

    def _install(self, text: str) -> None:
        import regorus

        if len(text.encode()) > MAX_POLICY:
            raise KbsError("ParsePolicyError", f"a resource policy is at most {MAX_POLICY} bytes")
        engine = regorus.Engine()
        try:
            package = engine.add_policy("resource.rego", text)
            problem = None if package == "data.policy" else \
                f"the resource policy's package is {package!r}, not 'policy'"
        except Exception as exc:  # regorus raises RuntimeError/ValueError with a located message
            problem = f"the resource policy does not compile: {exc}"
        if problem is not None:
            del engine  # here, on its thread: the error's traceback goes to the caller's
            raise KbsError("ParsePolicyError", problem)
        self.holder["engine"], self.text = engine, text

    def replace(self, text: str) -> None:
        self._run(lambda: self._install(text))

    def allows(self, claims: dict[str, Any], segments: list[str], query: dict[str, str] | None = None) -> bool:
        data = json.dumps({"plugin": "resource", "resource-path": list(segments), "query": dict(query or {})})
        claims_json = json.dumps(claims)

        def decide() -> Any:
            try:
                engine = self.holder["engine"]
                engine.clear_data()
                engine.add_data_json(data)
                engine.set_input_json(claims_json)
                return engine.eval_rule("data.policy.allow")
            except Exception as exc:
                raise KbsError("PolicyEngineError", f"the resource policy failed: {exc}") from None

        return self._run(decide) is True
