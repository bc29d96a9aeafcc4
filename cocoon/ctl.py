"""Host-side client: call any agent RPC by name over ttRPC or gRPC (``cocoon ctl``).

    cocoon ctl --address unix:///tmp/agent.sock Check
    cocoon ctl --address unix:///tmp/agent.sock CreateContainer '{"container_id": "c1", ...}'
    cocoon ctl --address unix:///tmp/agent.sock GetEvidence '{"nonce": "<base64>"}'

Requests and responses are protobuf JSON with the proto field names (bytes
as base64); the exit status is 0 on OK, 1 on an RPC error (its code and
message on stderr), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agent.rpc import RpcError
from launcher.client import Client, catalog


def register(sub: Any) -> None:
    p = sub.add_parser("ctl", help="call an agent RPC (ttRPC or gRPC)",
                       description=__doc__.split("\n\n")[0],
                       epilog="RPCs: the AgentService methods (CreateContainer, ExecProcess, ...), "
                              "Check and Version (grpc.Health), GetEvidence (cocoon.Attestation).")
    p.add_argument("--address", required=True, help="unix://PATH, tcp://HOST:PORT, vsock://CID:PORT")
    p.add_argument("--grpc", action="store_true", help="speak gRPC instead of ttRPC")
    p.add_argument("--atls", action="store_true",
                   help="connect with aTLS (tcp://) and send nothing unless the evidence in the server's "
                        "certificate verifies (needs --reference-values and --initdata)")
    p.add_argument("--reference-values", metavar="FILE", help="for --atls")
    p.add_argument("--initdata", metavar="FILE", help="for --atls: initdata the TEE must have bound")
    p.add_argument("--trust-sim", metavar="PEM", help="for --atls: accept sim-TEE evidence under this chain")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument("rpc", help="RPC name, e.g. Check, CreateContainer, GetEvidence")
    p.add_argument("request", nargs="?", default="{}", help="request as JSON (default {}); @FILE reads a file")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    text = args.request
    try:
        if text.startswith("@"):
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        body = json.loads(text)
        if not isinstance(body, dict):
            raise ValueError("the request must be a JSON object")
        spec = catalog().get(args.rpc)
        if spec is None:
            print(f"cocoon ctl: unknown RPC {args.rpc!r}; one of: {', '.join(sorted(catalog()))}", file=sys.stderr)
            return 2
        request = json_format.ParseDict(body, spec.request())
    except (OSError, ValueError, json_format.ParseError) as exc:
        print(f"cocoon ctl: bad request: {exc}", file=sys.stderr)
        return 2
    try:
        sock = None
        if args.atls:
            sock = _atls_socket(args)
            if sock is None:
                return 1
        with Client(args.address, args.grpc, min(args.timeout, 10.0), sock=sock) as client:
            resp = client.call(args.rpc, request, args.timeout)
    except RpcError as exc:
        print(f"cocoon ctl: {args.rpc}: {exc.code.name}: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cocoon ctl: cannot reach {args.address}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(json_format.MessageToDict(resp, preserving_proto_field_name=True), indent=1))
    return 0


def _atls_socket(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """A verified aTLS socket, or None after printing why the server was not trusted."""
    from agent import initdata
    from agent.atls import AtlsError, connect_verified
    from agent.errors import AgentError
    from verifier.api import verify

    if not args.reference_values or not args.initdata:
        raise AgentError("--atls needs --reference-values and --initdata")
    from verifier.refs import load

    refs = load(args.reference_values)  # schema-checked before connecting: a bad file is bad input, exit 2
    digest = initdata.read_path(args.initdata).digest
    results = []

    def check(ev, nonce, spki):  # type: ignore[no-untyped-def]
        r = verify(ev.kind, ev.report, ev.aux, refs, initdata_digest=digest, nonce=nonce, public_key=spki,
                   trust_sim=args.trust_sim, tee=ev.tee)
        results.append(r)
        return r

    try:
        sock, verdict = connect_verified(args.address, check)
    except AtlsError as exc:
        if results:
            print(results[-1].table(), file=sys.stderr)
        print(f"cocoon ctl: {exc}; nothing was sent", file=sys.stderr)
        return None
    print(verdict.table(), file=sys.stderr)
    return sock
