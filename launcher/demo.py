"""``cocoon demo``: build what is missing, boot the image under QEMU, and show every guarantee hold.

The transcript says what was measured, what was verified, what ran and
what was denied; the exit status is 0 only if every step held. ``--json``
prints the steps as a JSON array instead (the QEMU tests read it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.errors import AgentError
from agent.rpc import RpcError
from launcher import pod
from launcher.qemu import OUTPUTS, Image, LaunchError
from launcher.scenario import Session, Step, denied
from launcher.vm import Vm

ROOT_DIR = Path(__file__).resolve().parent.parent


STEPS = ("measure", "boot", "attest", "run", "exec", "deny", "tamper")


def held(steps: list[Step]) -> bool:
    """Every step ran (a failure stops the demo early) and held."""
    return [s.name for s in steps] == list(STEPS) and all(s.ok for s in steps)


class Transcript:
    def __init__(self, quiet: bool) -> None:
        self.steps: list[Step] = []
        self.quiet = quiet

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def step(self, name: str, action: Callable[[], tuple[str, dict[str, Any]]]) -> bool:
        """Run one step; its detail line is printed with PASS/FAIL and its duration."""
        t0 = time.monotonic()
        try:
            detail, data = action()
            ok = True
        except (AgentError, RpcError, OSError, subprocess.SubprocessError) as exc:
            ok, detail, data = False, f"{type(exc).__name__}: {exc}", {}
        s = Step(name, ok, detail, time.monotonic() - t0, data)
        self.steps.append(s)
        mark = "PASS" if ok else "FAIL"
        self.say(f"[{mark}] {name:<8} {s.seconds:6.1f} s  {detail}")
        return ok


def ensure_image(out: Path, build: bool, quiet: bool) -> Image:
    import os
    import shutil

    if not shutil.which("qemu-system-x86_64"):
        raise LaunchError("qemu-system-x86_64 is not installed (make setup installs QEMU 10 from bookworm-backports)")
    missing = [n for n in OUTPUTS if not (out / n).exists()]
    if (missing or build) and os.geteuid() != 0:
        raise LaunchError(f"{out} lacks {', '.join(missing) or 'nothing'}; building the image needs root (mkosi, "
                          "mounts): run as root, or point --image at a built out/ directory")
    if missing or build:
        if not quiet:
            print(f"building the image into {out} ({'--build' if build else 'missing: ' + ', '.join(missing)}); "
                  "a cold build takes a few minutes", flush=True)
        built = subprocess.run([sys.executable, "-m", "image.build", "--out", str(out)], cwd=ROOT_DIR,
                               stdout=sys.stderr if not quiet else subprocess.DEVNULL)
        if built.returncode != 0:
            raise LaunchError(f"the image build failed (exit {built.returncode}); see its output above")
    return Image.load(out)


def run_demo(image: Image, work: Path, quiet: bool = False, accel: str = "tcg") -> list[Step]:
    t = Transcript(quiet)
    s = Session(image, work, accel=accel)
    t.say(f"cocoon demo: image {image.out}, work directory {work}")

    def measure() -> tuple[str, dict[str, Any]]:
        facts = s.prepare()
        t.say(f"  launch measurement (reference-values.json, {2} x EPYC-Milan): {facts['measurement']}")
        t.say(f"  HOSTDATA = {facts['initdata_algorithm']}(initdata):          {facts['host_data']}")
        t.say(f"  container layer dm-verity root hash (pinned by the policy): {facts['layer_root_hash']}")
        t.say(f"  kernel boot path (sim only): {facts['kernel_boot']}")
        return "the sim PSP will report exactly the reference measurement and the initdata digest", facts

    vm: Vm | None = None

    def boot() -> tuple[str, dict[str, Any]]:
        nonlocal vm
        vm = s.boot("demo")
        vm.call("Check", timeout=300)
        state, reason, seconds = vm.wait_status(60)
        timing = vm.wait_console(r"cocoon-agent: startup: ([^\r\n]*)", 30).group(1)
        if state != "ready":
            raise LaunchError(f"agent came up {state}: {reason}")
        t.say(f"  agent: {reason}")
        t.say(f"  agent start-up: {timing}")
        return f"agent READY {seconds:.1f} s after QEMU started (TCG)", {"boot_to_ready": seconds}

    def attest() -> tuple[str, dict[str, Any]]:
        assert vm is not None
        result, nonce = s.attest(vm)
        for line in result.table().splitlines():
            t.say(f"  {line}")
        if not result.ok:
            raise LaunchError("evidence rejected: " + ", ".join(c.name for c in result.failed))
        return (f"evidence for nonce {nonce.hex()[:16]}... verified: {len(result.claims)} claims",
                {"claims": [c.name for c in result.claims]})

    def run() -> tuple[str, dict[str, Any]]:
        assert vm is not None
        vm.call("CreateSandbox", {"hostname": "demo-pod", "sandbox_id": "demo"}, timeout=60)
        out, status = s.run_container(vm, "hello", pod.MAIN_COMMAND)
        for line in out.decode(errors="replace").splitlines():
            t.say(f"  hello | {line}")
        if status != 0 or b"hello from a verified layer" not in out:
            raise LaunchError(f"container exited {status} with {out!r}")
        return "container 'hello' ran from the verity layer and exited 0", {"stdout": out.decode(errors="replace")}

    def exec_allowed() -> tuple[str, dict[str, Any]]:
        assert vm is not None
        vm.call("CreateContainer", pod.container_request("svc", pod.SERVICE_COMMAND, s.layer), timeout=120)
        vm.call("StartContainer", {"container_id": "svc"})
        vm.call("ExecProcess", pod.exec_request("svc", "probe", pod.PROBE_COMMAND))
        out = s.read_stream(vm, "ReadStdout", "svc", "probe")
        status = vm.call("WaitProcess", {"container_id": "svc", "exec_id": "probe"}).status
        if status != 0 or out != b"probe ok\n":
            raise LaunchError(f"exec exited {status} with {out!r}")
        return f"exec {pod.PROBE_COMMAND} in 'svc' allowed: {out.decode().strip()!r}", {}

    def deny() -> tuple[str, dict[str, Any]]:
        assert vm is not None
        err = denied(lambda: vm.call("ExecProcess", pod.exec_request("svc", "shell", ["sh"])))
        return f"exec ['sh'] refused: {err.message}", {"message": err.message}

    def tamper() -> tuple[str, dict[str, Any]]:
        nonlocal vm
        assert vm is not None
        vm.stop()
        vm = s.boot("tampered", initdata=s.tampered_initdata())
        vm.call("Check", timeout=300)
        state, reason, _ = vm.wait_status(60)
        if state != "deny-all" or "initdata digest mismatch" not in reason:
            raise LaunchError(f"agent came up {state}: {reason}")
        err = denied(lambda: vm.call("CreateContainer", pod.container_request("hello", pod.MAIN_COMMAND, s.layer)))
        t.say(f"  agent: deny-all: {reason}")
        return f"one changed initdata byte: deny-all; CreateContainer refused: {err.message[:90]}...", \
            {"reason": reason, "message": err.message}

    try:
        actions = {"measure": measure, "boot": boot, "attest": attest, "run": run, "exec": exec_allowed,
                   "deny": deny, "tamper": tamper}
        for name in STEPS:
            action = actions[name]
            if not t.step(name, action):
                if vm is not None:
                    t.say(f"  console log: {vm.console_log}")
                break
    finally:
        if vm is not None:
            vm.stop()
    t.say("cocoon demo: every step held" if held(t.steps) else "cocoon demo: FAILED")
    return t.steps


def cmd_demo(args: argparse.Namespace) -> int:
    image = ensure_image(Path(args.image), args.build, args.json)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="cocoon-demo-"))
    steps = run_demo(image, work, quiet=args.json, accel=args.accel)
    if args.json:
        print(json.dumps([s.to_json() for s in steps], indent=1))
    return 0 if held(steps) else 1
