"""Our dm-verity hash-tree writer against veritysetup (cryptsetup), byte for byte."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from agent.verity import format_hash_area

pytestmark = pytest.mark.skipif(not shutil.which("veritysetup"), reason="needs cryptsetup-bin")


@pytest.mark.parametrize("blocks", [1, 2, 128, 129, 16385])
def test_hash_area_identical_to_veritysetup(tmp_path, blocks: int) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data.img"
    data.write_bytes(os.urandom(4096 * blocks))
    salt, uid = os.urandom(32), os.urandom(16)
    root, area = format_hash_area(str(data), salt, uid)
    ref = tmp_path / "hash.img"
    out = subprocess.run(["veritysetup", "format", str(data), str(ref), "--salt", salt.hex(),
                          "--uuid", str(uuid.UUID(bytes=uid))], check=True, capture_output=True, text=True).stdout
    assert next(line.split()[-1] for line in out.splitlines() if line.startswith("Root hash")) == root.hex()
    assert ref.read_bytes() == area


def test_appended_area_verifies_with_veritysetup(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "root.img"
    data.write_bytes(os.urandom(4096 * 300))
    root, area = format_hash_area(str(data), b"\x01" * 32, b"\x02" * 16)
    size = data.stat().st_size
    with data.open("ab") as f:
        f.write(area)
    ok = subprocess.run(["veritysetup", "verify", str(data), str(data), root.hex(), f"--hash-offset={size}"],
                        capture_output=True)
    assert ok.returncode == 0, ok.stderr
    blob = bytearray(data.read_bytes())
    blob[5000] ^= 1
    data.write_bytes(bytes(blob))
    bad = subprocess.run(["veritysetup", "verify", str(data), str(data), root.hex(), f"--hash-offset={size}"],
                         capture_output=True)
    assert bad.returncode != 0
