"""Run the agent's start-up code once, early, with inputs of its own: a warm-up for emulated guests.

Under TCG, QEMU translates guest code the first time it runs, and the
translation is kept per guest-physical page: a shared library's text lives
in the page cache, so every process that maps it runs the translation the
first one paid for. Most of the agent's cold start (~3 s of ~5.5 s to READY
under TCG; ~2.3 s when restarted warm) is that first translation and the
first reads through dm-verity. The initrd starts this script in the
background right after it mounts the verity root (image/initrd.py), so the
work happens on the second vCPU while systemd starts on the first; the agent
then finds its code translated and its files read. On hardware (KVM) the
translation does not exist and this only reads ahead.

It runs the real sequence (``binding.bind``: initdata parse, policy compile
on its helper thread, a sim report signed through libcrypto, the digest
comparison; then the service's registry and the ttRPC server object) on a
document and a sim configuration made here. It takes nothing from the host
(no disk, no fw_cfg, no command line), writes nothing, opens no socket, and
its key signs only its own throwaway report. It prints one line (how long
it took, or why it failed) and nothing else; a failure changes nothing, since
this is advice, like a read-ahead, and the agent does all of it again for real.
"""

from __future__ import annotations

import json
import logging
import time

#: A small policy in the shape the agent's real ones have (package, request defaults, helpers,
#: ``every``/``some``, regex and string builtins, prints), so the compile walks the same code.
POLICY = r"""package agent_policy

import future.keywords.every
import future.keywords.if
import future.keywords.in

default AllowRequestsFailingPolicy := false
default CreateContainerRequest := {"allowed": false}
default ExecProcessRequest := false
default StartContainerRequest := true

CreateContainerRequest := {"allowed": true, "ops": ops} if {
    every arg in input.OCI.Process.Args {
        allowed_arg(arg)
    }
    some env in input.OCI.Process.Env
    startswith(env, "PATH=")
    count(input.OCI.Mounts) < 8
    ops := [{"op": "add", "path": "/pstate/warm", "value": object.get(input, "container_id", "")}]
}

ExecProcessRequest if {
    print("exec", concat(" ", input.process.Args))
    regex.match(`^[a-z/]+$`, input.process.Args[0])
}

allowed_arg(arg) if {
    not contains(arg, "..")
    lower(arg) == arg
}
"""

#: A throwaway P-384 scalar: it signs only this script's own report, which nothing ever sees.
_WARMUP_SCALAR = (0x6B6F636F6F6E).to_bytes(48, "big")


def document() -> bytes:
    from agent.initdata import render_document

    return render_document({"policy.rego": POLICY})


def sim_config(host_data: bytes) -> bytes:
    from agent.tee.sim import SCHEMA

    return json.dumps({
        "schema": SCHEMA, "measurement": "00" * 48, "host_data": host_data.hex(), "policy": 0x30000,
        "chip_id": "00" * 64, "tcb": 0, "vcek_private_key": _WARMUP_SCALAR.hex(), "certificates": {},
    }).encode()


def run() -> bool:
    """The start-up sequence on this module's inputs; True when it ended ready (the tests' check)."""
    from agent import binding, initdata
    from agent.service import Agent
    from agent.tee.sim import SimProvider
    from agent.ttrpc import TtrpcServer

    raw = document()
    parsed = initdata.parse_document(raw, "<warm-up>")
    config = sim_config(parsed.bound(SimProvider.bound_size))
    bound = binding.bind(lambda: SimProvider("<warm-up>", raw=config), lambda: parsed)
    try:
        TtrpcServer(Agent(bound, None).registry())
        if bound.policy is not None:
            bound.policy.evaluate("ExecProcessRequest", json.dumps({"process": {"Args": ["/bin/true"]}}))
        return bound.ready
    finally:
        if bound.policy is not None:
            bound.policy.close()


def main() -> int:
    """One line on the console either way (the QEMU tests look for it); exit status 0 when ready."""
    logging.disable(logging.CRITICAL)  # the binding logs "ready"/"deny-all": not this process's to say
    start = time.perf_counter()
    try:
        ready = run()
    except Exception as exc:  # advice only: the agent does all of this again and reports its errors
        print(f"cocoon-warmup: failed after {(time.perf_counter() - start) * 1000:.0f} ms: {exc!r}", flush=True)
        return 1
    finally:
        logging.disable(logging.NOTSET)
    outcome = "ready" if ready else "not ready (the agent will say why, if it is the same)"
    print(f"cocoon-warmup: {outcome} in {(time.perf_counter() - start) * 1000:.0f} ms", flush=True)
    return 0 if ready else 1


if __name__ == "__main__":
    raise SystemExit(main())
