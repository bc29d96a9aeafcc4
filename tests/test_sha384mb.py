"""The AVX-512 multi-buffer page hasher (igvm/snp/_sha384mb.c) against hashlib, and the fallback without it.

hashlib (OpenSSL) is the independent implementation: every digest the vector kernel returns must be
the one hashlib gives for the same page, for every lane count (a partial last pass of 1..7 pages hashes
the first page in the idle lanes and must not store them), any alignment of the buffer, and contents
that exercise every byte of every message word.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igvm.snp import pageinfo

PAGE = 4096


def cpu_has_avx512() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512f" in flags and "avx512bw" in flags


def reference(data: bytes) -> bytes:
    return b"".join(hashlib.sha384(data[off:off + PAGE]).digest() for off in range(0, len(data), PAGE))


try:
    from igvm.snp import _sha384mb as mb
except ImportError:  # built optionally: no compiler, or not x86-64
    mb = None  # type: ignore[assignment]  # the skip marks below read None as "not built"
needs_lanes = pytest.mark.skipif(mb is None or mb.LANES < 2, reason="no C page hasher or no AVX-512 here")


def test_built_and_used_wherever_the_cpu_has_avx512() -> None:
    # a silent fall-back to hashlib (a failed optional build, a wrong CPU check) would keep every digest
    # right and lose the throughput: on an AVX-512 machine (CI's) it must be there and in use
    if cpu_has_avx512():
        assert mb is not None, "igvm/snp/_sha384mb.c was not built: is gcc installed? (make setup)"
        assert mb.LANES == 8
        assert pageinfo._sha384_pages is mb.sha384_pages
    else:
        assert pageinfo._sha384_pages is None


@needs_lanes
@pytest.mark.parametrize("pages", [0, 1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65])
def test_every_lane_count_equals_hashlib(pages: int) -> None:
    data = os.urandom(pages * PAGE)
    assert mb.sha384_pages(data) == reference(data)


@needs_lanes
@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=20), st.integers(0, 63))
def test_structured_pages_at_any_alignment_equal_hashlib(seeds: list[bytes], shift: int) -> None:
    # pages built from short repeated patterns (zeros, 0xff runs, single bytes) as firmware images have,
    # read from an unaligned view into a larger buffer
    pages = b"".join((seed * (PAGE // len(seed) + 1))[:PAGE] for seed in seeds)
    buffer = bytearray(os.urandom(shift)) + bytearray(pages) + bytearray(7)
    view = memoryview(buffer)[shift:shift + len(pages)]
    assert mb.sha384_pages(view) == reference(pages)


@needs_lanes
def test_edge_words_equal_hashlib() -> None:
    # all-ones words carry through every 64-bit addition; a byte-swap mistake shows on asymmetric words
    pages = [bytes(PAGE), b"\xff" * PAGE, bytes(range(256)) * 16, (b"\x80" + bytes(7)) * 512,
             (bytes(7) + b"\x01") * 512, hashlib.shake_256(b"cocoon").digest(PAGE)]
    data = b"".join(pages)
    assert mb.sha384_pages(data) == reference(data)


@needs_lanes
@pytest.mark.parametrize("bad", [b"x", bytes(PAGE + 1), bytes(PAGE - 1)])
def test_partial_pages_are_refused(bad: bytes) -> None:
    with pytest.raises(ValueError, match="not a multiple of 4 KiB"):
        mb.sha384_pages(bad)


@needs_lanes
@pytest.mark.parametrize("bad", [None, 4096, "a" * PAGE, [bytes(PAGE)]])
def test_non_buffers_are_refused(bad: object) -> None:
    with pytest.raises(TypeError):
        mb.sha384_pages(bad)  # type: ignore[arg-type]  # wrong types are what is under test


@needs_lanes
def test_threads_hashing_at_once_agree() -> None:
    from concurrent.futures import ThreadPoolExecutor

    chunks = [os.urandom(64 * PAGE) for _ in range(8)]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(mb.sha384_pages, chunks)) == [reference(c) for c in chunks]


def test_hash_pages_falls_back_to_hashlib_with_the_same_digests(monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(11 * PAGE)
    fast, fast_blob = pageinfo.hash_pages(data), pageinfo.page_digests(data)
    monkeypatch.setattr(pageinfo, "_sha384_pages", None)
    assert pageinfo.hash_pages(data) == fast == [hashlib.sha384(data[o:o + PAGE]).digest()
                                                  for o in range(0, len(data), PAGE)]
    assert pageinfo.page_digests(data) == fast_blob == reference(data)
    for fn in (pageinfo.hash_pages, pageinfo.page_digests):
        with pytest.raises(ValueError, match="not a multiple"):
            fn(bytes(100))
