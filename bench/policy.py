#!/usr/bin/env python3
"""Policy decision cost for CreateContainer with a ~70 KB genpolicy-shaped policy.

Prints the median time of the agent's full decision (serde of the protobuf
request + hand-off to the engine thread + regorus evaluation + pstate patch
and data reload) and, inside the same calls, the time regorus' eval_query
took; the figure is the part spent outside regorus as a ratio of regorus
alone (goal <= 0.2). A bare engine evaluating the same inputs without state
changes is printed for reference: regorus caches rule values until data
changes, and Kata's semantics change data after every allowed
CreateContainer, so the in-agent regorus time is the fair denominator.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from agent.policy import Policy
from agent.policy.engine import MAX_COL, MAX_FILE_BYTES, MAX_LINES
from agent.policy.serde import to_json
from launcher.podspec import POLICY_TEXT, web_request


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import regorus

    policy = Policy(POLICY_TEXT)
    bare = regorus.Engine()
    bare.set_rego_v0(True)
    bare.set_policy_length_config(max_col=MAX_COL, max_file_bytes=MAX_FILE_BYTES, max_lines=MAX_LINES)
    bare.set_gather_prints(True)
    bare.add_policy("policy.rego", POLICY_TEXT)
    bare.add_data_json(json.dumps({"pstate": {}}))
    requests = [web_request(f"c0ffee00{i:08x}") for i in range(args.runs + 5)]
    inputs = [to_json(r) for r in requests]

    full, alone, bare_times = [], [], []
    for i, (req, doc) in enumerate(zip(requests, inputs, strict=True)):
        policy.load_state({"pstate": {}})
        t0 = time.perf_counter()
        d = policy.evaluate("CreateContainerRequest", to_json(req))
        t1 = time.perf_counter()
        assert d.allowed, d.prints
        in_agent = policy.last_eval_seconds
        bare.set_input_json(doc)
        t2 = time.perf_counter()
        r = bare.eval_query("data.agent_policy.CreateContainerRequest")
        t3 = time.perf_counter()
        bare.take_prints()
        assert r["result"][0]["expressions"][0]["value"]["allowed"] is True
        if i >= 5:  # warm-up
            full.append(t1 - t0)
            alone.append(in_agent)
            bare_times.append(t3 - t2)
    policy.close()
    f, a, b = statistics.median(full), statistics.median(alone), statistics.median(bare_times)
    overhead = (f - a) / a
    result = {"policy_bytes": len(POLICY_TEXT), "full_median_ms": round(f * 1000, 3),
              "regorus_median_ms": round(a * 1000, 3), "bare_engine_median_ms": round(b * 1000, 3),
              "overhead_ratio": round(overhead, 3), "goal": 0.2,
              "goal_met": overhead <= 0.2}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"CreateContainer decision, policy {len(POLICY_TEXT)} B, {len(full)} runs:")
        print(f"  agent (serde + regorus + patch): median {f * 1000:.3f} ms")
        print(f"  of which regorus eval_query:     median {a * 1000:.3f} ms")
        print(f"  (bare engine, data never changes: median {b * 1000:.3f} ms)")
        print(f"  overhead ratio {overhead:.3f} (goal <= 0.2: {'met' if overhead <= 0.2 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
