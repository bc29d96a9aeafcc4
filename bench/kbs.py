#!/usr/bin/env python3
"""Key broker throughput: complete RCAR flows per second (auth + attest + resource; sim SNP evidence made
per session and fully verified) from 32 concurrent clients against `cocoon kbs`'s server on 127.0.0.1,
as a ratio to `cocoon verify`'s verifications per second of the same kind of evidence, measured in the
same run with the same concurrency (goal >= 0.4). p50/p99 flow latency printed.

    .venv/bin/python -m bench.kbs [--flows 256] [--clients 32] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from agent.initdata import render_document
from agent.tee import certtable, open_provider, snp_json
from bench.parallel import parallel
from coordinator.kbs.broker import Broker, Config
from coordinator.kbs.client import RcarClient
from coordinator.kbs.server import KbsHttpServer
from launcher.simca import make_chain, make_config
from verifier.api import verify

MEASUREMENT = b"\x42" * 48
REFS = {"snp": {"guest_policy": "0x30000", "measurements": [{"measurement": MEASUREMENT.hex()}]}}
POLICY = 'package policy\ndefault allow := false\nallow if input.submods.cpu0["ear.status"] == "affirming"\n'


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=256)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-kbs-") as tmp:
        work = Path(tmp)
        chain = make_chain()
        digest = hashlib.sha256(render_document({"x": "y"})).digest()
        (work / "sim.json").write_text(make_config(chain, MEASUREMENT, digest).to_json())
        (work / "trust.pem").write_bytes(chain.trust_pem)
        tee = open_provider("sim", sim_config=str(work / "sim.json"))

        def evidence(report_data: bytes) -> dict[str, Any]:
            ev = tee.report(report_data)
            return {"attestation_report": snp_json.to_json(ev.report),
                    "cert_chain": snp_json.chain_json(certtable.parse(ev.aux))}

        # baseline: `cocoon verify`'s check of fresh sim evidence (made the same way), same concurrency
        nonce = b"\x07" * 48

        def one_verify() -> None:
            ev = tee.report(nonce + bytes(16))
            result = verify("snp", ev.report, ev.aux, REFS, initdata_digest=digest, nonce=nonce,
                            trust_sim=str(work / "trust.pem"))
            assert result.ok, result.table()

        base_s, _ = parallel(args.flows, args.clients, lambda: one_verify)
        broker = Broker(Config(work / "state", REFS, trust_sim=str(work / "trust.pem")))
        broker.put_resource(["default", "key", "db-password"], b"s3cret")
        broker.set_policy(POLICY)
        server = KbsHttpServer(("127.0.0.1", 0), broker).start()
        try:
            def one_flow() -> None:
                client = RcarClient(server.url, "snp", evidence)
                try:
                    client.attest()
                    assert client.resource("default/key/db-password") == b"s3cret"
                finally:
                    client.close()

            flows_s, latencies = parallel(args.flows, args.clients, lambda: one_flow)
        finally:
            server.stop()
            broker.close()
    verify_rate, flow_rate = args.flows / base_s, args.flows / flows_s
    q = statistics.quantiles(latencies, n=100)
    figures = {"flows_per_s": round(flow_rate, 2), "verify_per_s": round(verify_rate, 2),
               "ratio": round(flow_rate / verify_rate, 3), "goal": ">= 0.4", "p50_ms": round(q[49] * 1000, 1),
               "p99_ms": round(q[98] * 1000, 1), "clients": args.clients, "flows": args.flows}
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"KBS flows (auth+attest+resource, {args.clients} clients): {flow_rate:.1f}/s; "
              f"cocoon verify: {verify_rate:.1f}/s; ratio {figures['ratio']} (goal >= 0.4); "
              f"p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
