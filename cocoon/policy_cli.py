"""``cocoon policy``: evaluate a request against a policy the way the agent would, and explain it.

    cocoon policy eval --policy pod.rego --request CreateContainerRequest --input req.json [--state s.json]
    cocoon policy hash pod.rego
    cocoon policy show POLICY|INITDATA|YAML [--json]

``--policy`` takes Rego text or an initdata image/TOML (its ``policy.rego`` is
used). ``--input`` is the policy input as Kata's agent builds it (serde JSON,
as in genpolicy's testcases); ``--proto`` reads protobuf JSON of the request
message instead and serialises it with the agent's own serde.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from agent.errors import PolicyError


def _read_policy(path: str) -> str:
    from agent import initdata

    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise PolicyError(f"cannot read {path}: {exc.strerror}") from None
    if head.startswith(initdata.MAGIC) or (path.endswith(".toml")):
        d = initdata.read_path(path)
        if d.policy is None:
            raise PolicyError(f"initdata {path} has no policy.rego")
        return d.policy
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read {path}: {exc}") from None


def _endpoint(name: str) -> str:
    """Accept the message name or the RPC name (ReadStdout -> ReadStreamRequest)."""
    from launcher.client import catalog

    rpcs = catalog()
    if name in rpcs:
        return rpcs[name].request.DESCRIPTOR.name
    return name


def _load_json(path: str, what: str) -> Any:
    from verifier import strictjson

    try:
        with open(path, encoding="utf-8") as f:
            return strictjson.loads(f.read())  # a repeated key means two different requests to two readers
    except (OSError, ValueError) as exc:
        raise PolicyError(f"cannot read {what} {path}: {exc}") from None


def cmd_eval(args: argparse.Namespace) -> int:
    from agent.policy import Policy
    from cocoon.policy_explain import render, stops

    endpoint = _endpoint(args.request)
    doc = _load_json(args.input, "input")
    if args.proto:
        from google.protobuf import json_format

        from agent.service import request_json
        from launcher.client import catalog

        msgs = {r.request.DESCRIPTOR.name: r.request for r in catalog().values()}
        if endpoint not in msgs:
            raise PolicyError(f"--proto: unknown request message {endpoint}")
        try:
            doc = request_json(json_format.ParseDict(doc, msgs[endpoint]()))
        except json_format.ParseError as exc:
            raise PolicyError(f"--proto: {exc}") from None
    policy = Policy(_read_policy(args.policy))
    try:
        if args.state:
            state = _load_json(args.state, "state")
            policy.load_state(state if "pstate" in state else {"pstate": state})
        decision, coverage = policy.evaluate_with_coverage(endpoint, json.dumps(doc))
        found = stops(coverage, doc) if not decision.allowed else []
        if args.json:
            print(json.dumps({
                "request": endpoint, "allowed": decision.allowed, "prints": decision.prints, "ops": decision.ops,
                "state": policy.state, "forced": decision.forced,
                "stopped_at": [{"file": s.file, "line": s.line, "source": s.source, "inputs": s.inputs}
                               for s in found],
            }, indent=1))
        else:
            print(render(endpoint, decision.allowed, decision.prints, found))
            if decision.allowed and decision.ops:
                print(f"state after: {json.dumps(policy.state)}")
    finally:
        policy.close()
    return 0 if decision.allowed else 1


def cmd_hash(args: argparse.Namespace) -> int:
    from agent import initdata
    from agent.initdata import render_document

    text = _read_policy(args.policy)
    d = initdata.parse_document(render_document({"policy.rego": text}, args.algorithm), args.policy)
    info = {"algorithm": d.algorithm, "digest": d.digest.hex(), "snp_host_data": d.bound(32).hex(),
            "tdx_mrconfigid": d.bound(48).hex()}
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        print(f"initdata {d.algorithm} (as `cocoon initdata pack --policy` renders it): {info['digest']}")
        print(f"SNP HOSTDATA:   {info['snp_host_data']}")
        print(f"TDX MRCONFIGID: {info['tdx_mrconfigid']}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from generator import policy_show
    from generator.errors import GenerateError

    try:
        with open(args.policy, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise PolicyError(f"cannot read {args.policy}: {exc.strerror}") from None
    try:
        items = policy_show.from_document(raw, args.policy)
    except GenerateError as exc:
        raise PolicyError(str(exc)) from None
    if args.json:
        print(json.dumps([{"source": label, **policy_show.summary(data)} for label, data in items], indent=1))
    else:
        print("\n".join(policy_show.render(items)))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("policy", help="evaluate and explain agent policies; print their digests",
                       description=__doc__.split("\n\n")[0])
    s = p.add_subparsers(dest="policy_command", metavar="ACTION")
    s.required = True
    ev = s.add_parser("eval", help="evaluate one request; exit 0 allowed, 1 denied, 2 error",
                      description="Evaluate one request as the agent would (same engine, same semantics) and, "
                                  "on denial, show where the policy stopped and the input values it looked at.")
    ev.add_argument("--policy", required=True, help="Rego file, or initdata image/TOML holding policy.rego")
    ev.add_argument("--request", required=True, help="request message (CreateContainerRequest) or RPC name")
    ev.add_argument("--input", required=True, help="policy input JSON (Kata's serde shape)")
    ev.add_argument("--proto", action="store_true", help="--input is protobuf JSON of the request message")
    ev.add_argument("--state", help="pstate JSON to start from ({\"pstate\": {...}} or the bare map)")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(handler=cmd_eval)
    h = s.add_parser("hash", help="initdata digests (HOSTDATA / MRCONFIGID) for a policy")
    h.add_argument("policy")
    h.add_argument("--algorithm", default="sha256", choices=("sha256", "sha384", "sha512"))
    h.add_argument("--json", action="store_true")
    h.set_defaults(handler=cmd_hash)
    sh = s.add_parser("show", help="what a pod policy admits, in plain words",
                      description="Print what a generated policy lets the pod run (images by digest, commands, "
                                  "env, user, capabilities, layers, mounts) and what the host may do to it (exec, "
                                  "copy files, read output). POLICY is Rego text, an initdata image/TOML, or "
                                  "Kubernetes YAML annotated by cocoon generate (every pod in it).")
    sh.add_argument("policy", metavar="POLICY|INITDATA|YAML")
    sh.add_argument("--json", action="store_true", help="the same as JSON")
    sh.set_defaults(handler=cmd_show)

