#!/usr/bin/env python3
"""Coordinator throughput: mesh certificates per second (GetNonce + NewMeshCert, the pod's sim SNP evidence
made per request and fully verified against the manifest) from 32 concurrent pods over aTLS, as a ratio to
`cocoon verify`'s verifications per second of the same evidence in the same run (goal >= 0.5); p50/p99
printed. Also: SetManifest of a manifest with 100 policies (goal < 1 s).

    .venv/bin/python -m bench.coordinator [--requests 256] [--clients 32] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agent.tee import open_provider
from bench.parallel import parallel
from coordinator.authority import Authority
from coordinator.client import CoordinatorClient, accept_any
from coordinator.front import AtlsGrpcServer
from coordinator.initializer import provider_evidence
from coordinator.meshapi import SERVICE, MeshApi
from coordinator.protocols import meshapi_pb2 as mpb
from generator.manifest import snp_values
from launcher.simca import make_chain, make_config
from verifier.api import verify

MEASUREMENT = b"\x42" * 48
REFS = {"snp": {"guest_policy": "0x30000", "measurements": [{"measurement": MEASUREMENT.hex()}]}}


def manifest(blobs: list[bytes]) -> bytes:
    seedshare = rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1).hex()
    return json.dumps({
        "Policies": {hashlib.sha256(b).hexdigest(): {"SANs": [f"pod{i}"], "WorkloadSecretID": f"pod{i}"}
                     for i, b in enumerate(blobs)},
        "ReferenceValues": {"snp": snp_values(REFS, "sim")}, "WorkloadOwnerKeyDigests": [],
        "SeedshareOwnerPubKeys": [seedshare]}).encode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-coord-") as tmp:
        work = Path(tmp)
        chain = make_chain()
        blobs = [f'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"pod" = "{i}"\n'.encode() for i in range(100)]
        pod_sim, coord_sim = work / "pod.json", work / "coord.json"
        pod_sim.write_text(make_config(chain, MEASUREMENT, hashlib.sha256(blobs[0]).digest()).to_json())
        coord_sim.write_text(make_config(chain, MEASUREMENT, bytes(32)).to_json())
        (work / "trust.pem").write_bytes(chain.trust_pem)
        trust = str(work / "trust.pem")
        authority = Authority(str(work / "state"))
        t0 = time.perf_counter()
        authority.set_manifest(manifest(blobs), blobs, None)
        set_s = time.perf_counter() - t0
        evidence = provider_evidence(open_provider("sim", sim_config=str(pod_sim)))
        spki = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        tee = open_provider("sim", sim_config=str(pod_sim))

        def one_verify() -> None:  # what `cocoon verify` does with such evidence, in process
            nonce = b"\x07" * 32
            ev = tee.report(hashlib.sha512(spki + nonce).digest())
            result = verify("snp", ev.report, ev.aux, REFS, nonce=nonce, public_key=spki, trust_sim=trust)
            assert result.ok, result.table()

        base_s, _ = parallel(args.requests, args.clients, lambda: one_verify)
        server = AtlsGrpcServer([MeshApi(authority, trust_sim=trust).handler()],
                                SimpleNamespace(ready=True, tee=open_provider("sim", sim_config=str(coord_sim))),
                                "127.0.0.1:0", work / "run").start()
        try:
            clients: list[CoordinatorClient] = []

            def connect() -> Any:
                client = CoordinatorClient(server.address, accept_any, timeout=120)
                clients.append(client)

                def one_cert() -> None:
                    nonce = client._call("GetNonce", mpb.GetNonceRequest(), mpb.GetNonceResponse, SERVICE).Nonce
                    kind, doc = evidence(hashlib.sha512(spki + nonce).digest())
                    got = client._call("NewMeshCert", mpb.NewMeshCertRequest(Nonce=nonce, PublicKey=spki,
                                                                            Evidence=doc, Tee=kind),
                                       mpb.NewMeshCertResponse, SERVICE)
                    assert got.CertChain
                return one_cert

            certs_s, latencies = parallel(args.requests, args.clients, connect)
            for client in clients:
                client.close()
        finally:
            server.stop()
    verify_rate, cert_rate = args.requests / base_s, args.requests / certs_s
    q = statistics.quantiles(latencies, n=100)
    figures = {"certs_per_s": round(cert_rate, 2), "verify_per_s": round(verify_rate, 2),
               "ratio": round(cert_rate / verify_rate, 3), "goal": ">= 0.5", "p50_ms": round(q[49] * 1000, 1),
               "p99_ms": round(q[98] * 1000, 1), "set_manifest_100_policies_s": round(set_s, 3),
               "set_manifest_goal": "< 1 s", "clients": args.clients, "requests": args.requests}
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"mesh certificates ({args.clients} pods): {cert_rate:.1f}/s; cocoon verify: {verify_rate:.1f}/s; "
              f"ratio {figures['ratio']} (goal >= 0.5); p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms; "
              f"SetManifest with 100 policies: {set_s:.3f} s (goal < 1 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
