#!/usr/bin/env python3
"""Agent startup: median time from exec to sd_notify READY=1, as a ratio to `python3 -c pass`.

The agent runs with the sim TEE, a ~70 KB genpolicy-shaped policy
(tests/policies/pod.rego) in block-layout initdata, and a unix listener,
exactly the startup path of the image minus the kernel. It runs the way the
image runs it: a copy of agent/ with hash-based .pyc files (as image/build.py
compiles them) on PYTHONPATH next to the installed packages, started as
``python3 -S -P .../agent/__main__.py`` like image/cocoon-agent.service (no
site initialisation, no runpy; the development venv's site would also run
setuptools' editable-install finder and the machine's .pth files, and with
PYTHONDONTWRITEBYTECODE a source tree would be recompiled on every start).
The baseline is the same interpreter with ``-S -c pass``.
Goal: READY within 200 ms median. Both figures come from the same run; the
ratio is what to compare across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import site
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.initdata import render_document
from launcher.localagent import agent_argv, spawn, write_inputs
from launcher.podspec import POLICY_TEXT
from launcher.simca import make_chain

ROOT = Path(__file__).resolve().parent.parent


def stage_agent(tmp: str) -> dict[str, str]:
    """agent/ laid out and compiled as in the image; the environment that runs it from there."""
    lib = os.path.join(tmp, "lib")
    shutil.copytree(ROOT / "agent", os.path.join(lib, "agent"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "generate.py"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
                    lib], check=True, stdout=subprocess.DEVNULL)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([lib, *site.getsitepackages()])}


def time_ready(cmd: list[str], tmp: Path, dev: Path, env: dict[str, str]) -> float:
    # cwd outside the source tree, whatever the interpreter does with it
    agent = spawn(cmd, tmp, dev, env=env, stderr=subprocess.DEVNULL, cwd=tmp)
    agent.stop(timeout=30)
    return agent.ready_seconds


def time_exit(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    policy = POLICY_TEXT
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        dev, sim = write_inputs(tmp, make_chain(rsa_bits=2048), render_document({"policy.rego": policy}))
        env = stage_agent(tmp_s)
        main_py = os.path.join(env["PYTHONPATH"].split(os.pathsep)[0], "agent", "__main__.py")
        agent = agent_argv(tmp, dev, sim, command=[sys.executable, "-S", "-P", main_py], runtime=None)
        base = [sys.executable, "-S", "-c", "pass"]
        ready, baseline = [], []
        time_ready(agent, tmp, dev, env)  # warm the page cache
        for _ in range(args.runs):
            baseline.append(time_exit(base))
            ready.append(time_ready(agent, tmp, dev, env))
    med, med_base = statistics.median(ready), statistics.median(baseline)
    result = {"policy_bytes": len(policy), "ready_median_ms": round(med * 1000, 1),
              "python_pass_median_ms": round(med_base * 1000, 1), "ratio": round(med / med_base, 2),
              "goal_ms": 200, "goal_met": med <= 0.2}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"agent exec -> READY (policy {len(policy)} B): median {med * 1000:.1f} ms over {args.runs} runs")
        print(f"python3 -S -c pass:                       median {med_base * 1000:.1f} ms")
        print(f"ratio {result['ratio']:.2f}; goal READY <= 200 ms: {'met' if result['goal_met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
