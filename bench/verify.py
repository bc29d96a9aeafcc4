#!/usr/bin/env python3
"""SNP evidence verifications per second (chain + signature + every claim), vs parsing alone.

Evidence comes from the sim TEE (SNP report layout, RSA-4096 ARK/ASK chain,
P-384 VCEK), verified with the same code path as `cocoon verify`. The ratio
to parse-only shows what the cryptography costs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

from agent.tee import open_provider, snp_report
from launcher.simca import make_chain, make_config
from verifier.api import verify


def rate(fn, seconds: float) -> float:  # type: ignore[no-untyped-def]
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    chain = make_chain()
    digest = hashlib.sha256(b"initdata").digest()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "sim.json"
        cfg.write_text(make_config(chain, b"\x42" * 48, digest).to_json())
        trust = Path(tmp) / "trust.pem"
        trust.write_bytes(chain.trust_pem)
        ev = open_provider("sim", sim_config=str(cfg)).report(b"\x01" * 64)
        refs = {"snp": {"guest_policy": "0x30000", "measurements": [{"measurement": "42" * 48}]}}

        def full() -> None:
            r = verify("snp", ev.report, ev.aux, refs, initdata_digest=digest, nonce=b"\x01" * 64,
                       trust_sim=str(trust))
            assert r.ok

        verified = rate(full, args.seconds)
        parsed = rate(lambda: snp_report.parse(ev.report), args.seconds)
    result = {"verifications_per_s": round(verified, 1), "parses_per_s": round(parsed),
              "ratio": round(verified / parsed, 4)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"SNP evidence: {verified:.1f} full verifications/s (chain + signature + claims)")
        print(f"              {parsed:.0f} parses/s; ratio {verified / parsed:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
