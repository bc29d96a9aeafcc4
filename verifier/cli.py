"""``cocoon verify``: check evidence the way a relying party must, claim by claim.

    cocoon verify --address unix:///run/agent.sock --reference-values out/reference-values.json \\
                  --initdata out/initdata.img [--trust-sim sim-chain/trust.pem] [--json]
    cocoon verify --evidence evidence.json --nonce HEX --reference-values ... --initdata ...
    cocoon verify --report report.bin --vcek vcek.der --reference-values ... [--nonce HEX]

With ``--address`` a fresh random nonce is sent and checked; with
``--evidence`` (the JSON ``cocoon ctl GetEvidence`` prints) pass the nonce
you sent. ``--report`` takes a raw SNP ATTESTATION_REPORT (1184 bytes, as
``snpguest report`` writes it) or a raw TDX quote; give the VCEK that KDS
serves for it with ``--vcek``. Exit status: 0 verified, 1 rejected, 2 bad input.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from typing import Any

from agent.errors import AgentError


def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise AgentError(f"cannot read {what} {path}: {exc}") from None


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise AgentError(f"cannot read {path}: {exc.strerror}") from None


def run(args: argparse.Namespace) -> int:
    from agent import initdata
    from verifier.api import verify

    refs = _read_json(args.reference_values, "reference values")
    digest = initdata.read_path(args.initdata).digest if args.initdata else None
    public_key = _read_bytes(args.public_key) if args.public_key else None
    vcek_pem = _read_bytes(args.vcek) if args.vcek else None
    try:
        nonce = bytes.fromhex(args.nonce) if args.nonce else None
    except ValueError:
        raise AgentError("--nonce must be hex") from None
    if args.address:
        from agent.ctl import Client
        from agent.rpc import RpcError

        nonce = nonce if nonce is not None else os.urandom(32)
        body: dict[str, Any] = {"nonce": base64.b64encode(nonce).decode()}
        if public_key:
            body["public_key"] = base64.b64encode(public_key).decode()
        try:
            with Client(args.address) as c:
                ev = c.call("GetEvidence", body)
        except (RpcError, OSError) as exc:
            print(f"cocoon verify: cannot get evidence from {args.address}: {exc}", file=sys.stderr)
            return 2
        kind, report, aux, tee = ev.kind, ev.report, ev.aux, ev.tee
    elif args.report:
        report, aux, tee = _read_bytes(args.report), b"", ""
        kind = "snp" if len(report) == 0x4A0 else "tdx-quote"
    else:
        doc = _read_json(args.evidence, "evidence")
        try:
            kind, tee = doc["kind"], doc.get("tee", "")
            report = base64.b64decode(doc["report"], validate=True)
            aux = base64.b64decode(doc.get("aux", ""), validate=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise AgentError(f"evidence {args.evidence} is not GetEvidence JSON: {exc}") from None
    collateral = None
    given = [args.tcb_info, args.qe_identity, args.collateral_chain]
    if any(given):
        if not all(given):
            raise AgentError("TDX collateral needs all three: --tcb-info, --qe-identity, --collateral-chain")
        from verifier.collateral import load

        collateral = load(*(_read_bytes(path) for path in given))
    result = verify(kind, report, aux, refs, initdata_digest=digest, nonce=nonce, public_key=public_key,
                    trust_sim=args.trust_sim, tee=tee, collateral=collateral, vcek_pem=vcek_pem)
    if args.json:
        print(json.dumps(result.to_json(), indent=1))
    else:
        print(result.table())
    return 0 if result.ok else 1


def register(sub: Any) -> None:
    p = sub.add_parser("verify", help="verify SNP/TDX evidence against reference values and initdata",
                       description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--evidence", metavar="FILE", help="GetEvidence JSON (as `cocoon ctl GetEvidence` prints)")
    src.add_argument("--address", metavar="ADDR", help="ask a running agent (fresh nonce)")
    src.add_argument("--report", metavar="FILE", help="a raw SNP report (1184 bytes) or TDX quote")
    p.add_argument("--reference-values", required=True, metavar="FILE")
    p.add_argument("--initdata", metavar="FILE", help="initdata image/TOML whose digest HOSTDATA/MRCONFIGID must be")
    p.add_argument("--nonce", metavar="HEX", help="the nonce the evidence must be bound to")
    p.add_argument("--public-key", metavar="DER", help="SubjectPublicKeyInfo bound with the nonce")
    p.add_argument("--vcek", metavar="FILE", help="SNP: the VCEK/VLEK certificate (PEM or DER) when the "
                   "evidence carries none")
    p.add_argument("--trust-sim", metavar="PEM", help="accept sim-TEE evidence under this sim chain (trust.pem)")
    p.add_argument("--tcb-info", metavar="FILE", help="TDX: Intel PCS TCB info JSON for the platform's FMSPC")
    p.add_argument("--qe-identity", metavar="FILE", help="TDX: Intel PCS QE identity JSON")
    p.add_argument("--collateral-chain", metavar="PEM",
                   help="TDX: the TCB-Info-Issuer-Chain (TCB signing cert, Intel SGX Root CA)")
    p.add_argument("--json", action="store_true", help="EAR-style JSON result")
    p.set_defaults(handler=run)
