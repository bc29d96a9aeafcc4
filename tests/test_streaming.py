"""Measuring a 1 GiB IGVM file streams it: the measuring process stays under 200 MB RSS."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

from igvm import file as igf
from igvm.defs import PlatformType
from igvm.file import make

GIB = 1 << 30


def _page(i: int) -> bytes:
    return struct.pack("<Q", i) + bytes(4088)  # distinct pages, so nothing de-duplicates


def write_big_igvm(path: Path, size: int = GIB) -> None:
    headers = [make("SUPPORTED_PLATFORM", compatibility_mask=1, platform_type=PlatformType.SEV_SNP,
                    platform_version=1),
               make("GUEST_POLICY", policy=0x30000, compatibility_mask=1)]
    headers += [make("PAGE_DATA", data=lambda i=i: _page(i), gpa=0x100000000 + i * 4096, compatibility_mask=1)
                for i in range(size // 4096)]
    with open(path, "wb") as fh:
        igf.write(headers, fh)


# A small parent spawns the measurer, so the child's peak RSS is its own (a vfork
# from the big pytest process would charge the parent's high-water mark to it).
_PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
         "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(r.stdout, end=''); "
         "print(r.stderr, file=sys.stderr, end='')")


def test_one_gib_igvm_measures_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.igvm"
    subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                    f"from test_streaming import write_big_igvm; from pathlib import Path; "
                    f"write_big_igvm(Path({str(path)!r}))"], check=True)
    assert path.stat().st_size > GIB
    res = subprocess.run([sys.executable, "-c", _PEAK, sys.executable, "-m", "cocoon", "measure", "igvm", str(path)],
                         capture_output=True, text=True, check=True)
    status, peak_kib = (int(x) for x in res.stdout.splitlines()[0].split())
    assert status == 0, res.stderr
    assert 0 < peak_kib < 200 * 1024, f"peak RSS {peak_kib} KiB"
    digest = bytes.fromhex(res.stdout.splitlines()[1])
    assert len(digest) == 48
