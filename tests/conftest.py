from __future__ import annotations

import os
from pathlib import Path

import pytest

DEBIAN_OVMF = Path("/usr/share/ovmf/OVMF.fd")


@pytest.fixture(scope="session")
def debian_ovmf() -> Path:
    if not DEBIAN_OVMF.exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's ovmf package is missing: run `make setup`")
        pytest.skip("Debian's ovmf package is not installed (make setup)")
    return DEBIAN_OVMF


@pytest.fixture(scope="session")
def sim_chain():  # type: ignore[no-untyped-def]
    """One sim ARK/ASK/VCEK chain per session: RSA-4096 key generation costs about a second."""
    from launcher.simca import make_chain

    return make_chain()


@pytest.fixture
def sim_tee(tmp_path, sim_chain):  # type: ignore[no-untyped-def]
    """Factory: write a sim TEE config for the given HOSTDATA and return its path."""
    from launcher.simca import make_config

    def make(host_data: bytes, measurement: bytes = b"\x42" * 48) -> str:
        path = tmp_path / f"sim-{host_data.hex()[:8]}.json"
        path.write_text(make_config(sim_chain, measurement, host_data).to_json())
        return str(path)

    return make
