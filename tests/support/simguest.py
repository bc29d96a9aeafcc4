"""A sim-TEE guest for unit tests of the broker and the data hub: its launch bound to an initdata document
(the sim PSP document that says so) and the sim root a broker is told to trust."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SimGuest:
    sim_config: Path  # the sim TEE's document: measurement and HOSTDATA = the initdata digest
    trust: Path  # the sim ARK + ASK, for --trust-sim
    digest: bytes  # SHA-256 of the initdata document


def sim_guest(tmp: Path, chain: Any, document: bytes, measurement: bytes) -> SimGuest:
    from launcher.simca import make_config

    digest = hashlib.sha256(document).digest()
    sim = tmp / "sim.json"
    sim.write_text(make_config(chain, measurement, digest).to_json())
    trust = tmp / "trust.pem"
    trust.write_bytes(chain.trust_pem)
    return SimGuest(sim, trust, digest)
