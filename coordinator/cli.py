"""``cocoon coordinator``, ``cocoon set``, ``cocoon verify --coordinator``: run the coordinator, hand it a
manifest, check a deployment through it.

    cocoon coordinator serve --state DIR [--listen 0.0.0.0:1313] [--tee sim --sim-config sim.json]
    cocoon set -c HOST:1313 -m deploy/manifest.json --reference-values refs.json \\
        [--coordinator-initdata coordinator.toml] [--owner-key workload-owner.pem] POLICY.toml|DIR ...
    cocoon verify --coordinator HOST:1313 -m deploy/manifest.json --reference-values refs.json [...]
    cocoon initializer --coordinator HOST:7777 --out /contrast     # in a pod: its mesh identity

The client attests the coordinator first (cocoon's verifier over its aTLS certificate: the reference
values, REPORT_DATA bound to a fresh nonce and the TLS key, and the coordinator's own initdata when
given) and sends nothing to one that does not pass. ``set`` writes what the first manifest returns once
(``seed-shares.json``) and the CAs beside the manifest; ``verify`` writes ``verify/`` (the CAs, every
manifest of the history, every policy) and fails unless the coordinator's current manifest is ours.
Connecting is retried (every 2 s, up to ``--wait``) while the coordinator starts, saying why.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from coordinator.client import CoordinatorClient, CoordinatorClientError, verifier_check


class CliError(Exception):
    pass


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror}") from None


def expectation(args: argparse.Namespace) -> tuple[dict[str, Any], bytes | None]:
    """(reference values, coordinator initdata digest or None) the coordinator must match. They come from the
    command line or, when not given there, from the manifest: its ReferenceValues (the image's launch
    measurements) and its ``Role: coordinator`` policy (the coordinator pod's initdata digest), so `cocoon
    verify -c HOST -m manifest.json` needs nothing more, as Contrast's verify does with the policy its CLI
    knows."""
    from agent import initdata
    from generator.errors import GenerateError
    from generator.manifest import coordinator_digest, to_cocoon_refs
    from generator.manifest import load as load_manifest
    from verifier.refs import ReferenceValuesError, load, validate

    doc: dict[str, Any] | None = None
    if getattr(args, "manifest", None):
        try:
            doc = load_manifest(_read(args.manifest, "manifest"), str(args.manifest))
        except GenerateError as exc:
            raise CliError(str(exc)) from None
    if args.reference_values:
        refs = load(args.reference_values)
    elif doc is not None and doc.get("ReferenceValues"):
        try:
            refs = validate(to_cocoon_refs(doc["ReferenceValues"]))
        except (ReferenceValuesError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise CliError(f"{args.manifest}: its ReferenceValues do not convert to reference values: {exc}") \
                from None
    else:
        raise CliError("no reference values: give --reference-values, or a manifest (-m) that has ReferenceValues")
    digest = initdata.parse_document(_read(args.coordinator_initdata, "coordinator initdata")).digest \
        if args.coordinator_initdata else None
    if digest is None and doc is not None:
        try:
            digest = coordinator_digest(doc)
        except GenerateError as exc:
            raise CliError(f"{args.manifest}: {exc}") from None
    return refs, digest


def _connect(args: argparse.Namespace) -> CoordinatorClient:
    """Attest the coordinator (against ``expectation``) before anything is sent; retried while it starts."""
    refs, digest = expectation(args)
    if digest is None:
        # every pod of the deployment runs the same image, so the reference values alone would let any of
        # them (or one the host launched with initdata of its own) answer as the coordinator: it would then
        # choose the CAs a relying party trusts, and `recover` would hand it the seed
        if not getattr(args, "insecure_any_coordinator", False):
            raise CliError("nothing pins the coordinator's initdata: the manifest has no Role: coordinator policy "
                           "and no --coordinator-initdata was given (any pod of this image could answer as the "
                           "coordinator; --insecure-any-coordinator accepts that, except for recover)")
        print("cocoon: warning: --insecure-any-coordinator: any pod of this image could answer as the coordinator",
              file=sys.stderr)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            return CoordinatorClient(args.coordinator, verifier_check(refs, initdata_digest=digest,
                                                                      trust_sim=args.trust_sim))
        except CoordinatorClientError as exc:
            if "failed verification" in str(exc) or time.monotonic() >= deadline:
                raise CliError(str(exc)) from None
            print(f"cocoon: waiting for the coordinator at {args.coordinator}: {exc}", file=sys.stderr)
            time.sleep(2)


def _policies(paths: list[str]) -> list[bytes]:
    out: list[bytes] = []
    for given in paths:
        p = Path(given)
        files = sorted(p.glob("*.toml")) if p.is_dir() else [p]
        out += [_read(f, "policy") for f in files]
    return out


def _owner_key(path: str | None) -> Any:
    if not path:
        return None
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(_read(path, "owner key"), password=None)
    except (ValueError, TypeError) as exc:
        raise CliError(f"{path}: not a PEM private key: {exc}") from None


def cmd_set(args: argparse.Namespace) -> int:
    manifest = _read(args.manifest, "manifest")
    policies = _policies(args.policies)
    with _connect(args) as client:
        result = client.set_manifest(manifest, policies, _owner_key(args.owner_key))
    where = Path(args.manifest).parent
    (where / "coordinator-root-ca.pem").write_bytes(result.RootCA)
    (where / "mesh-ca.pem").write_bytes(result.MeshCA)
    shares = [{"PublicKey": s.PublicKey, "EncryptedSeed": base64.b64encode(s.EncryptedSeed).decode()}
              for s in result.SeedSharesDoc.SeedShares]
    if shares:
        doc = {"SeedShares": shares, "salt": base64.b64encode(result.SeedSharesDoc.salt).decode()}
        (where / "seed-shares.json").write_text(json.dumps(doc, indent=1) + "\n")
    info = {"manifest": str(args.manifest), "policies": len(policies), "seed_shares": len(shares),
            "root_ca": str(where / "coordinator-root-ca.pem"), "mesh_ca": str(where / "mesh-ca.pem")}
    if args.json:
        print(json.dumps(info))
    else:
        kept = f"; seed shares in {where / 'seed-shares.json'} (keep them: they are returned once)" if shares else ""
        print(f"manifest set ({len(policies)} policies); CAs in {where}{kept}")
    return 0


def verify_coordinator(args: argparse.Namespace) -> int:
    ours = _read(args.manifest, "manifest")
    with _connect(args) as client:
        got = client.get_manifests()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "coordinator-root-ca.pem").write_bytes(got.RootCA)
    (out / "mesh-ca.pem").write_bytes(got.MeshCA)
    for i, m in enumerate(got.Manifests):
        (out / f"manifest.{i}.json").write_bytes(m)
    for p in got.Policies:
        (out / f"policy.{hashlib.sha256(p).hexdigest()}.rego").write_bytes(p)
    current = got.Manifests[-1] if got.Manifests else b""
    same = json.loads(current) == json.loads(ours) if current else False
    if args.json:
        print(json.dumps({"verified": same, "manifests": len(got.Manifests), "policies": len(got.Policies),
                          "output": str(out)}))
    else:
        print(f"coordinator attested; {len(got.Manifests)} manifests, {len(got.Policies)} policies written to {out}")
        print("its current manifest is ours" if same else f"its current manifest is NOT {args.manifest}")
    return 0 if same else 1


def cmd_recover(args: argparse.Namespace) -> int:
    """A seed-share owner brings a restarted coordinator back: its share decrypted here, the seed sent signed."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from coordinator.seed import SeedShare, decrypt_share, owner_digest

    key = _owner_key(args.seedshare_key)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CliError(f"{args.seedshare_key}: a seed-share owner's key is RSA")
    try:
        doc = json.loads(_read(args.seed_shares, "seed shares"))
        salt = base64.b64decode(doc["salt"], validate=True)
        shares = [SeedShare(s["PublicKey"], base64.b64decode(s["EncryptedSeed"], validate=True))
                  for s in doc["SeedShares"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise CliError(f"{args.seed_shares}: not a seed-shares document: {exc}") from None
    from coordinator.seed import public_key_digest

    mine = public_key_digest(key.public_key())
    share = next((s for s in shares if owner_digest(s.public_key) == mine), None)
    if share is None:
        raise CliError(f"{args.seed_shares} holds no share for the key in {args.seedshare_key}")
    try:
        seed = decrypt_share(key, share)
    except ValueError:
        raise CliError(f"the share does not decrypt with {args.seedshare_key}") from None
    with _connect(args) as client:
        client.recover(seed, salt, key)
    print(f"coordinator at {args.coordinator} recovered")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading
    from types import SimpleNamespace

    from agent.tee import open_provider
    from coordinator.authority import Authority
    from coordinator.front import AtlsGrpcServer
    from coordinator.meshapi import MeshApi
    from coordinator.userapi import UserApi

    logging.basicConfig(level=logging.INFO, format="cocoon-coordinator %(asctime)s %(levelname)s %(message)s")
    if args.tee == "guest":  # run as a confidential pod: the guest's attestation agent makes the evidence
        from coordinator.guest_tee import GuestTee

        tee: Any = GuestTee(args.evidence_url)
    else:
        tee = open_provider(args.tee, sim_config=args.sim_config)
    authority = Authority(args.state)
    binding = SimpleNamespace(ready=True, tee=tee)
    server = AtlsGrpcServer([UserApi(authority).handler()], binding, args.listen, Path(args.state) / "run").start()
    mesh = AtlsGrpcServer([MeshApi(authority, trust_sim=args.trust_sim).handler()], binding, args.mesh_listen,
                          Path(args.state) / "run-mesh").start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    state = "needs recovery" if authority.needs_recovery else "serving"
    print(f"cocoon coordinator: {state} on atls://{server.address} (user API), atls://{mesh.address} (mesh API) "
          f"(state {args.state}, TEE {tee.name}{', sim pods trusted' if args.trust_sim else ''})", flush=True)
    stop.wait()
    mesh.stop()
    server.stop()
    return 0


def cmd_initializer(args: argparse.Namespace) -> int:
    from coordinator import initializer

    if args.tee:
        from agent.tee import open_provider

        evidence = initializer.provider_evidence(open_provider(args.tee, sim_config=args.sim_config))
    else:
        evidence = initializer.agent_evidence(args.evidence_url)
    got = initializer.run(args.coordinator, evidence, Path(args.out), args.wait,
                          log=lambda line: print(line, file=sys.stderr))
    print(f"mesh identity in {args.out}/tls-config" + (" and a workload secret" if got.WorkloadSecret else ""))
    return 0


def _guarded(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        from agent.errors import AgentError

        try:
            return int(fn(args))
        except (CliError, CoordinatorClientError, AgentError) as exc:
            print(f"cocoon {args.command}: error: {exc}", file=sys.stderr)
            return 2
    return run


def _client_args(p: argparse.ArgumentParser, short: bool = True) -> None:
    names = ["-c", "--coordinator"] if short else ["--coordinator"]
    p.add_argument(*names, required=short, metavar="HOST:PORT", help="the coordinator's user API (port 1313)")
    p.add_argument("-m", "--manifest", required=short, metavar="FILE", help="the manifest (cocoon generate's)")
    p.add_argument("--coordinator-initdata", metavar="FILE", help="the coordinator pod's initdata document: only "
                   "the coordinator launched with it is trusted")
    p.add_argument("--trust-sim", metavar="PEM", help="also accept sim-TEE evidence under this sim chain")
    p.add_argument("--wait", type=float, default=60.0, metavar="S", help="retry connecting this long (60 s)")
    p.add_argument("--insecure-any-coordinator", action="store_true", help="accept any pod of the image as the "
                   "coordinator when nothing pins its initdata (tests only)")
    p.add_argument("--json", action="store_true")


def register(sub: Any) -> None:
    c = sub.add_parser("coordinator", help="run the coordinator (attests pods, holds the manifest)")
    csub = c.add_subparsers(dest="coordinator_command", metavar="ACTION")
    csub.required = True
    s = csub.add_parser("serve", help="serve the user API behind aTLS until SIGTERM")
    s.add_argument("--state", required=True, help="the state directory (manifests, transitions, policies)")
    s.add_argument("--listen", default="127.0.0.1:1313", help="HOST:PORT (default 127.0.0.1:1313)")
    s.add_argument("--tee", default="auto", help="the TEE whose evidence the certificate carries: guest (as a "
                   "confidential pod: the guest's attestation agent), auto, snp, tdx, or sim for tests")
    s.add_argument("--evidence-url", default="http://127.0.0.1:8006", help="the attestation agent (--tee guest)")
    s.add_argument("--sim-config", metavar="FILE", help="the sim TEE's document")
    s.add_argument("--mesh-listen", default="127.0.0.1:7777", help="the mesh API's HOST:PORT (default 127.0.0.1:7777)")
    s.add_argument("--trust-sim", metavar="PEM", help="accept pods' sim-TEE evidence under this sim chain (tests)")
    s.set_defaults(handler=_guarded(cmd_serve))
    i = sub.add_parser("initializer", help="a pod's init container: get its mesh certificate from the coordinator")
    i.add_argument("--coordinator", required=True, metavar="HOST:PORT", help="the mesh API (port 7777)")
    i.add_argument("--out", default="/contrast", help="the shared volume (default /contrast)")
    i.add_argument("--evidence-url", default="http://127.0.0.1:8006", help="the guest's attestation agent")
    i.add_argument("--tee", help="take evidence from this process's TEE provider instead (sim in tests)")
    i.add_argument("--sim-config", metavar="FILE")
    i.add_argument("--wait", type=float, default=300.0, metavar="S", help="retry while unreachable (300 s)")
    i.set_defaults(handler=_guarded(cmd_initializer))
    p = sub.add_parser("set", help="attest the coordinator and set the manifest (and the pods' policies)")
    _client_args(p)
    p.add_argument("--reference-values", metavar="FILE", help="reference values of the image (default: the "
                   "manifest's ReferenceValues)")
    p.add_argument("--owner-key", metavar="PEM", help="the workload owner's private key (every update)")
    p.add_argument("policies", nargs="*", metavar="POLICY.toml|DIR", help="the pods' initdata documents")
    p.set_defaults(handler=_guarded(cmd_set))
    r = sub.add_parser("recover", help="attest a restarted coordinator and recover it with a seed share")
    r.add_argument("-c", "--coordinator", required=True, metavar="HOST:PORT", help="the coordinator's user API")
    r.add_argument("--seed-shares", required=True, metavar="FILE", help="seed-shares.json (written by the first set)")
    r.add_argument("--seedshare-key", required=True, metavar="PEM", help="the seed-share owner's RSA private key")
    r.add_argument("-m", "--manifest", metavar="FILE", help="the deployment's manifest: the coordinator's "
                   "reference values and Role: coordinator policy, when not given below")
    r.add_argument("--reference-values", metavar="FILE", help="reference values of the image")
    r.add_argument("--coordinator-initdata", metavar="FILE", help="the coordinator pod's initdata document")
    r.add_argument("--trust-sim", metavar="PEM", help="also accept sim-TEE evidence under this sim chain")
    r.add_argument("--wait", type=float, default=60.0, metavar="S", help="retry connecting this long (60 s)")
    r.set_defaults(handler=_guarded(cmd_recover))
