#!/usr/bin/env python3
"""Container create + start + wait of busybox `true`: through the agent vs runc directly.

Agent path: CreateContainer (verity check of the erofs layer, overlay rootfs,
`runc create`), StartContainer, WaitProcess over ttRPC to an agent process.
Direct path: the same lifecycle by hand, `runc create` + `runc start` + wait
for the container process, on an already unpacked rootfs: what the runtime
alone costs for the calls Kata's protocol makes. `runc run` (one process for
everything) is printed for reference. Medians over the same run; goal: agent
overhead <= 1.3x. The agent keeps verified layers (per device and pinned
root hash), so the figure is for a layer in use before (restarts, several
containers per layer); the first, cold create including verification is
printed too. Needs root, runc, busybox-static, erofs-utils, veritysetup.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.initdata import render_document
from agent.ocispec import to_config
from launcher.client import Client
from launcher.layers import attach, busybox_tree, container_request, detach, verity_layer
from launcher.localagent import agent_argv, allow_policy, spawn, write_inputs
from launcher.simca import make_chain

POLICY = allow_policy("CreateContainer", "StartContainer", "WaitProcess", "RemoveContainer")


def request(cid: str, shared: str, device: str, root_hash: str, offset: int) -> dict[str, Any]:
    return container_request(cid, ["true"], device, root_hash, offset, shared,
                             mounts=[{"destination": "/proc", "type": "proc", "source": "proc"}],
                             namespaces=("pid", "ipc", "uts", "mount"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/containers.py needs root (mounts, loop devices, runc)", file=sys.stderr)
        return 2
    from google.protobuf import json_format

    from agent.protocols import agent_pb2

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        tree = busybox_tree(tmp / "tree")
        root_hash, offset = verity_layer(tree, tmp / "layer.img")
        loop = attach(tmp / "layer.img")
        dev, sim = write_inputs(tmp, make_chain(2048), render_document({"policy.rego": POLICY}))
        agent = spawn(agent_argv(tmp, dev, sim), tmp, dev, stderr=subprocess.DEVNULL)
        shared = agent.shared
        # direct: a bundle with the same spec on the unpacked tree
        bundle = tmp / "bundle"
        bundle.mkdir()
        spec = json_format.ParseDict(request("x", shared, loop, root_hash, offset)["OCI"],
                                     agent_pb2.CreateContainerRequest().OCI)
        (bundle / "config.json").write_text(json.dumps(to_config(spec, str(tree), "/cocoon-bench/direct")))
        via_agent, direct, phases, run_times = [], [], [], []
        from agent.reaper import set_subreaper

        set_subreaper()
        try:
            with Client(agent.address) as c:
                for i in range(args.runs + 1):
                    cid = f"bench{i}"
                    t0 = time.perf_counter()
                    c.call("CreateContainer", request(cid, shared, loop, root_hash, offset))
                    tc = time.perf_counter()
                    c.call("StartContainer", {"container_id": cid})
                    ts = time.perf_counter()
                    status = c.call("WaitProcess", {"container_id": cid, "exec_id": cid}).status
                    t1 = time.perf_counter()
                    c.call("RemoveContainer", {"container_id": cid})
                    assert status == 0
                    t2 = time.perf_counter()
                    rt = ["runc", "--root", str(tmp / "direct-state")]
                    pid_file = tmp / f"direct{i}.pid"
                    subprocess.run([*rt, "create", "--bundle", str(bundle), "--pid-file", str(pid_file),
                                    f"direct{i}"], check=True, stdout=subprocess.DEVNULL)
                    subprocess.run([*rt, "start", f"direct{i}"], check=True)
                    os.waitpid(int(pid_file.read_text()), 0)  # we are the subreaper: the init is our child
                    t3 = time.perf_counter()
                    subprocess.run([*rt, "delete", f"direct{i}"], check=True)
                    t4 = time.perf_counter()
                    subprocess.run([*rt, "run", "--bundle", str(bundle), f"run{i}"], check=True,
                                   stdout=subprocess.DEVNULL)
                    t5 = time.perf_counter()
                    if not i:
                        cold = t1 - t0
                    if i:  # first round warms caches
                        phases.append((tc - t0, ts - tc, t1 - ts))
                        via_agent.append(t1 - t0)
                        direct.append(t3 - t2)
                        run_times.append(t5 - t4)
        finally:
            agent.stop()
            detach(loop)
    a, d, rr = statistics.median(via_agent), statistics.median(direct), statistics.median(run_times)
    result = {"agent_ms": round(a * 1000, 1), "runc_ms": round(d * 1000, 1), "runc_run_ms": round(rr * 1000, 1),
              "cold_agent_ms": round(cold * 1000, 1), "ratio": round(a / d, 2),
              "goal": 1.3, "goal_met": a / d <= 1.3}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"busybox `true`, create+start+wait, median of {args.runs}:")
        print(f"  through the agent (verity layer, overlay, runc create/start): {a * 1000:.1f} ms")
        print(f"  runc create + start + wait on an unpacked rootfs:             {d * 1000:.1f} ms")
        print(f"  (runc run, one process for all of it:                         {rr * 1000:.1f} ms)")
        create, start, wait = (statistics.median(p[k] for p in phases) * 1000 for k in range(3))
        print(f"  first container, layer verified cold:                         {cold * 1000:.1f} ms")
        print(f"  agent phases (median): create {create:.1f} ms, start {start:.1f} ms, wait {wait:.1f} ms")
        print(f"  ratio {a / d:.2f} (goal <= 1.3: {'met' if a / d <= 1.3 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
