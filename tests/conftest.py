from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

DEBIAN_OVMF = Path("/usr/share/ovmf/OVMF.fd")


@pytest.fixture(scope="session")
def debian_ovmf() -> Path:
    if not DEBIAN_OVMF.exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's ovmf package is missing: run `make setup`")
        pytest.skip("Debian's ovmf package is not installed (make setup)")
    return DEBIAN_OVMF
