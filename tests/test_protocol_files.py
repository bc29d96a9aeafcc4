"""The committed protobuf modules are what protoc makes of the committed .proto files."""

from __future__ import annotations

import subprocess
import sys


def test_generated_modules_are_current() -> None:
    out = subprocess.run([sys.executable, "-m", "agent.protocols.generate", "--check"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
