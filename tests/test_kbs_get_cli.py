"""`cocoon kbs get`: a resource as an attested client gets it (Trustee's `kbs-client get-resource`), here with
the sim TEE against a real broker on 127.0.0.1: the value when the resource policy admits the evidence, the
broker's refusal (its error variant, exit 2) when it does not, and a clear error for a bad path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from support.simguest import sim_guest

from agent.initdata import render_document
from coordinator.kbs.broker import Broker, Config
from coordinator.kbs.server import KbsHttpServer

ROOT = Path(__file__).resolve().parent.parent
MEASUREMENT = b"\x42" * 48
REFS = {"snp": {"guest_policy": "0x30000", "measurements": [{"measurement": MEASUREMENT.hex()}]}}
SECRET = b"\x00binary secret\xff"


def test_get_prints_the_resource_only_when_the_policy_admits_the_evidence(tmp_path: Path, sim_chain: Any) -> None:
    guest = sim_guest(tmp_path, sim_chain, render_document({"x": "y"}), MEASUREMENT)
    broker = Broker(Config(tmp_path / "state", REFS, trust_sim=str(guest.trust)))
    broker.put_resource(["default", "key", "db"], SECRET)
    server = KbsHttpServer(("127.0.0.1", 0), broker).start()

    def get(*extra: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "cocoon", "kbs", "get", "--url", server.url, "--tee", "sim",
                               "--sim-config", str(guest.sim_config), *extra], capture_output=True, timeout=120,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})

    try:
        refused = get("default/key/db")  # the default policy refuses simulated evidence
        assert refused.returncode == 2 and b"PolicyDeny" in refused.stderr and not refused.stdout, refused
        broker.set_policy('package policy\ndefault allow := false\nallow if {\n'
                          '\tinput.submods.cpu0["ear.status"] == "affirming"\n'
                          f'\tinput.submods.cpu0["ear.veraison.annotated-evidence"].init_data == '
                          f'"{guest.digest.hex()}"\n}}\n')
        got = get("default/key/db")
        assert got.returncode == 0 and got.stdout == SECRET, got
        out = tmp_path / "value.bin"
        to_file = get("default/key/db", "-o", str(out))
        assert to_file.returncode == 0 and out.read_bytes() == SECRET and (out.stat().st_mode & 0o777) == 0o600
        missing = get("default/key/none")
        assert missing.returncode == 2 and b"default/key/none" in missing.stderr, missing
        bad = get("../etc/passwd")
        assert bad.returncode != 0 and b"Traceback" not in bad.stderr, bad
    finally:
        server.stop()
        broker.close()
