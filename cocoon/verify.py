"""``cocoon verify``: check evidence the way a relying party must, claim by claim.

    cocoon verify --address unix:///run/agent.sock --reference-values out/reference-values.json \\
                  --initdata out/initdata.img [--trust-sim sim-chain/trust.pem] [--json]
    cocoon verify --evidence evidence.json --nonce HEX --reference-values ... --initdata ...
    cocoon verify --report report.bin --vcek vcek.der --reference-values ... [--nonce HEX] [--type snp|tdx]
    cocoon verify --ear token.jwt --broker-key kbs-state/token-key.pub.pem [--json]
    cocoon verify --coordinator HOST:1313 -m manifest.json [--output verify]   (the manifest says what it must be)

With ``--address`` a fresh random nonce is sent and checked; with
``--evidence`` (the JSON ``cocoon ctl GetEvidence`` prints) pass the nonce
you sent (1 to 64 bytes, hex). ``--report`` takes a raw SNP
ATTESTATION_REPORT (as ``snpguest report`` writes it) or a raw TDX quote,
told apart by their headers (or by ``--type``); give the VCEK that KDS
serves for it with ``--vcek``. ``--trust-sim`` trusts the sim root besides
AMD's (sim evidence passes only with it, and says SIMULATED). ``--at TIME``
judges certificate validity and collateral freshness at that moment (ISO
8601, UTC unless it says otherwise) instead of now; ``--crl FILE`` (repeatable,
DER or PEM: AMD KDS's, Intel PCS's) rejects revoked certificates. The
reference values are checked against their schema (docs/reference-values.md);
every JSON input refuses duplicate keys. ``--ear`` checks an attestation token a
key broker (``cocoon kbs``) issued instead: its ES256 signature under the
broker's public key (never the one in the token's header), its expiry, and
that the broker affirmed the evidence; the claims are printed. Exit status: 0
verified, 1 rejected, 2 bad input (one line on stderr naming what is wrong).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
from typing import Any

from agent.errors import AgentError

KINDS = {"snp": "snp", "tdx": "tdx-quote", "az-snp-vtpm": "az-snp-vtpm"}  # --type -> evidence kind


def _read_bytes(path: str, what: str = "") -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise AgentError(f"cannot read {what + ' ' if what else ''}{path}: {exc.strerror}") from None


def _nonce(text: str | None) -> bytes | None:
    """The hex nonce the evidence must be bound to: 1 to 64 bytes, as the agent binds them."""
    from agent.evidence import MAX_NONCE

    if text is None:
        return None
    try:
        nonce = bytes.fromhex(text)
    except ValueError:
        raise AgentError("--nonce must be hex digits, two per byte") from None
    if not 1 <= len(nonce) <= MAX_NONCE:
        raise AgentError(f"--nonce is {len(nonce)} bytes; evidence binds 1 to {MAX_NONCE}")
    return nonce


def _public_key(path: str | None) -> bytes | None:
    """SubjectPublicKeyInfo DER as REPORT_DATA binds it (PEM converted); anything else is bad input, not a mismatch."""
    if path is None:
        return None
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    data = _read_bytes(path, "public key")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return serialization.load_pem_public_key(data).public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        serialization.load_der_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise AgentError(f"--public-key {path} is not a SubjectPublicKeyInfo (DER or PEM): {exc}") from None
    return data


def _evidence(path: str) -> tuple[str, bytes, bytes, str]:
    """(kind, report, aux, tee) from the JSON ``cocoon ctl GetEvidence`` prints; other keys are ignored."""
    from verifier.refs import read_json

    doc = read_json(path, "evidence")
    if not isinstance(doc, dict):
        raise AgentError(f"evidence {path} is not GetEvidence JSON: expected an object")
    out = []
    for key, required in (("kind", True), ("report", True), ("aux", False), ("tee", False)):
        value = doc.get(key, "")
        if not isinstance(value, str) or (required and not value):
            raise AgentError(f"evidence {path}: {key!r} must be a{' non-empty' if required else ''} string")
        out.append(value)
    kind, report, aux, tee = out
    try:
        return kind, base64.b64decode(report, validate=True), base64.b64decode(aux, validate=True), tee
    except (binascii.Error, ValueError) as exc:
        raise AgentError(f"evidence {path}: report/aux is not base64: {exc}") from None


def run_ear(args: argparse.Namespace) -> int:
    """An EAR token from a key broker, under the broker's pinned public key."""
    from jwcrypto import jwk

    from coordinator.kbs.errors import KbsError
    from coordinator.kbs.token import verify as verify_token

    if not args.broker_key:
        raise AgentError("--ear needs --broker-key (the broker's token-key.pub.pem): a token's own header "
                         "key proves nothing")
    try:
        key = jwk.JWK.from_pem(_read_bytes(args.broker_key, "broker key"))
    except (ValueError, TypeError) as exc:
        raise AgentError(f"--broker-key {args.broker_key}: not a PEM public key: {exc}") from None
    text = _read_bytes(args.ear, "token").decode(errors="replace").strip()
    try:
        claims = verify_token(text, key)
    except KbsError as exc:
        print(f"cocoon verify: token rejected: {exc.detail}", file=sys.stderr)
        return 1
    cpu0 = (claims.get("submods") or {}).get("cpu0") or {}
    status = cpu0.get("ear.status")
    evidence = cpu0.get("ear.veraison.annotated-evidence") or {}
    if args.json:
        print(json.dumps(claims, indent=1, sort_keys=True))
    else:
        tee = next((k for k, v in evidence.items() if isinstance(v, dict) and "measurement" in v), "?")
        rows = [("issuer", claims.get("iss")), ("status", status), ("tee", tee),
                ("measurement", (evidence.get(tee) or {}).get("measurement")),
                ("init_data", evidence.get("init_data")),
                ("simulated", (evidence.get(tee) or {}).get("simulated")),
                ("expires", claims.get("exp"))]
        print("\n".join(f"{k:12} {v}" for k, v in rows))
    return 0 if status == "affirming" else 1


def run(args: argparse.Namespace) -> int:
    from agent import initdata

    if args.ear:
        return run_ear(args)
    if args.coordinator:
        from coordinator.cli import CliError, verify_coordinator
        from coordinator.client import CoordinatorClientError

        if not args.manifest:
            raise AgentError("--coordinator needs --manifest (its ReferenceValues and Role: coordinator policy "
                             "say what the coordinator must be; --reference-values/--coordinator-initdata override)")
        try:
            return verify_coordinator(args)
        except (CliError, CoordinatorClientError) as exc:
            print(f"cocoon verify: error: {exc}", file=sys.stderr)
            return 2
    if not args.reference_values:
        raise AgentError("--reference-values is required to verify evidence")
    from verifier.api import evidence_kind, verify
    from verifier.refs import load
    from verifier.x509check import load_crls, parse_time

    if args.type and not args.report:
        raise AgentError("--type applies to --report (evidence from an agent says its own kind)")
    refs = load(args.reference_values)
    digest = initdata.read_path(args.initdata).digest if args.initdata else None
    public_key = _public_key(args.public_key)
    vcek_pem = _read_bytes(args.vcek, "VCEK") if args.vcek else None
    nonce = _nonce(args.nonce)
    at = parse_time(args.at) if args.at else None
    crls = [crl for path in args.crl for crl in load_crls(_read_bytes(path, "CRL"), f"CRL {path}")]
    collateral = None
    given = [args.tcb_info, args.qe_identity, args.collateral_chain]
    if any(given):
        if not all(given):
            raise AgentError("TDX collateral needs all three: --tcb-info, --qe-identity, --collateral-chain")
        from verifier.collateral import load as load_collateral

        collateral = load_collateral(*(_read_bytes(path) for path in given))
    if args.address:
        from agent.rpc import RpcError
        from launcher.client import Client

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
        report, aux, tee = _read_bytes(args.report, "report"), b"", ""
        kind = KINDS[args.type] if args.type else evidence_kind(report)
    else:
        kind, report, aux, tee = _evidence(args.evidence)
    result = verify(kind, report, aux, refs, initdata_digest=digest, nonce=nonce, public_key=public_key,
                    trust_sim=args.trust_sim, tee=tee, collateral=collateral, vcek_pem=vcek_pem, at=at, crls=crls)
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
    src.add_argument("--report", metavar="FILE", help="a raw SNP report or TDX quote (told apart by its header)")
    src.add_argument("--ear", metavar="FILE", help="an EAR attestation token a key broker issued (cocoon kbs)")
    src.add_argument("--coordinator", "-c", metavar="HOST:PORT", help="attest a coordinator and check that its "
                     "current manifest is --manifest; writes --output (verify/)")
    p.add_argument("-m", "--manifest", metavar="FILE", help="--coordinator: the manifest it must hold")
    p.add_argument("--coordinator-initdata", metavar="FILE", help="--coordinator: the coordinator's initdata")
    p.add_argument("--insecure-any-coordinator", action="store_true", help="--coordinator: accept any pod of the "
                   "image as the coordinator when nothing pins its initdata (tests only)")
    p.add_argument("--output", default="verify", metavar="DIR", help="--coordinator: where to write (verify/)")
    p.add_argument("--wait", type=float, default=60.0, metavar="S", help="--coordinator: retry this long (60 s)")
    p.add_argument("--broker-key", metavar="PEM", help="--ear: the broker's token public key (token-key.pub.pem)")
    p.add_argument("--type", choices=sorted(KINDS), help="--report: the evidence type, instead of its header")
    p.add_argument("--reference-values", metavar="FILE",
                   help="reference-values JSON (schema: docs/reference-values.md)")
    p.add_argument("--initdata", metavar="FILE", help="initdata image/TOML whose digest HOSTDATA/MRCONFIGID must be")
    p.add_argument("--nonce", metavar="HEX", help="the nonce the evidence must be bound to (1 to 64 bytes)")
    p.add_argument("--public-key", metavar="FILE", help="SubjectPublicKeyInfo (DER or PEM) bound with the nonce")
    p.add_argument("--vcek", metavar="FILE", help="SNP: the VCEK/VLEK certificate (PEM or DER) when the "
                   "evidence carries none")
    p.add_argument("--trust-sim", metavar="PEM", help="also accept sim-TEE evidence under this sim chain "
                   "(trust.pem); AMD's roots stay trusted")
    p.add_argument("--at", metavar="TIME", help="judge certificate validity and collateral freshness at this "
                   "ISO 8601 time (default: now), to audit old evidence")
    p.add_argument("--crl", metavar="FILE", action="append", default=[],
                   help="a CRL (DER or PEM; AMD KDS or Intel PCS) whose revoked certificates fail; repeatable")
    p.add_argument("--tcb-info", metavar="FILE", help="TDX: Intel PCS TCB info JSON for the platform's FMSPC")
    p.add_argument("--qe-identity", metavar="FILE", help="TDX: Intel PCS QE identity JSON")
    p.add_argument("--collateral-chain", metavar="PEM",
                   help="TDX: the TCB-Info-Issuer-Chain (TCB signing cert, Intel SGX Root CA)")
    p.add_argument("--json", action="store_true", help="EAR-style JSON result")
    p.set_defaults(handler=run)
