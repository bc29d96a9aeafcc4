"""QEMU end-to-end tests: boot the built image (TCG, sim TEE) and drive the agent through its virtio-serial port.

The image comes from COCOON_QEMU_IMAGE (a build's out/ directory) if set, else
it is built into build/qemu-image/out (reusing the mkosi tree a previous
build saved, so after tests/test_image.py this takes ~20 s). Every boot's
console log stays in the test's tmp directory; timings are printed at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the test-only builders (a registry on 127.0.0.1, OCI images) live in tests/support, as for the unit tests
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))
TIMINGS: list[tuple[str, float]] = []


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    reason = None
    if os.environ.get("COCOON_SKIP_IMAGE") == "1":
        reason = "COCOON_SKIP_IMAGE=1"
    elif not shutil.which("qemu-system-x86_64"):
        reason = "needs qemu-system-x86 (make setup)"
    elif not os.environ.get("COCOON_QEMU_IMAGE") and (os.geteuid() != 0 or not shutil.which("mkosi")):
        reason = "building the image needs root and mkosi (make setup), or set COCOON_QEMU_IMAGE=out"
    if reason:
        for item in items:
            if "qemu-tests" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def image_dir() -> Path:
    given = os.environ.get("COCOON_QEMU_IMAGE")
    if given:
        return Path(given).resolve()
    where = ROOT / "build" / "qemu-image"
    subprocess.run([sys.executable, "-m", "image.build", "--out", str(where / "out"), "--build-dir", str(where)],
                   cwd=ROOT, check=True)
    return where / "out"


@pytest.fixture(scope="session")
def image(image_dir: Path) -> Any:
    from launcher.qemu import Image

    return Image.load(image_dir)


@pytest.fixture(scope="session")
def timings() -> list[tuple[str, float]]:
    return TIMINGS


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    if TIMINGS:
        terminalreporter.section("QEMU end-to-end timings (TCG)")
        for name, seconds in TIMINGS:
            goal = "  (goal <= 15 s)" if name.endswith("boot to READY") else ""
            terminalreporter.write_line(f"{name:<48} {seconds:6.1f} s{goal}")
