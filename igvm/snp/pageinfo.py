"""The SNP launch digest: a SHA-384 chain over PAGE_INFO structures.

Every page added with SNP_LAUNCH_UPDATE extends the digest with
``LD = SHA-384(PAGE_INFO)``; PAGE_INFO is 0x70 bytes: current digest (48),
contents hash (48; zero for non-NORMAL/VMSA pages), length u16 = 0x70, page
type u8, IMI u8, four VMPL permission bytes (zero for KVM/QEMU launches), GPA
u64. AMD SEV-SNP firmware ABI spec, "PAGE_INFO" (Table 67 in rev 1.55);
cross-checked with sev-snp-measure ``gctx.py`` and igvm ``measurement/snp.rs``.

Content hashes of pages are independent, so long runs of NORMAL pages are
hashed on a small thread pool (hashlib drops the GIL for buffers >= 2 KiB)
while the chain itself stays serial.
"""

from __future__ import annotations

import enum
import hashlib
import importlib
import os
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

PAGE = 4096
ZEROS48 = bytes(48)
#: SHA-384 of a 4 KiB page of zeros (a NORMAL page with no file data)
ZERO_PAGE_SHA384 = hashlib.sha384(bytes(PAGE)).digest()
#: GPA the RMP records for VMSA pages under KVM: (u64)-1, page-aligned, bits
#: above 51 cleared (sev-snp-measure gctx.py; coconut igvmmeasure --check-kvm).
VMSA_GPA = 0xFFFFFFFFF000

_TAIL = struct.Struct("<HBB4sQ")


def _small_sha384() -> Callable[[bytes], Any]:
    """SHA-384 for the 112-byte PAGE_INFO: CPython's own implementation when present.

    Each chain step hashes two blocks, where OpenSSL 3's per-call set-up
    (provider fetch, context copy in digest()) costs more than the hashing;
    the built-in module (``_sha2`` from 3.12, ``_sha512`` before) has none of
    it and is ~30% faster per call here. Page contents (4 KiB) keep OpenSSL's
    assembly. Any implementation gives the same digest.
    """
    for name in ("_sha2", "_sha512"):
        try:
            sha384: Callable[[bytes], Any] = importlib.import_module(name).sha384
            return sha384
        except (ImportError, AttributeError):
            continue
    return hashlib.sha384


_chain_sha384 = _small_sha384()


class PageType(enum.IntEnum):
    """SNP_LAUNCH_UPDATE page types (KVM_SEV_SNP_PAGE_TYPE_*)."""

    NORMAL = 1
    VMSA = 2
    ZERO = 3
    UNMEASURED = 4
    SECRETS = 5
    CPUID = 6


class LaunchDigest:
    """A running SNP launch digest (the guest context's LD)."""

    __slots__ = ("ld",)

    def __init__(self, seed: bytes = ZEROS48) -> None:
        if len(seed) != 48:
            raise ValueError(f"an SNP launch digest is 48 bytes, got {len(seed)}")
        self.ld = seed

    def update(self, page_type: int, gpa: int, contents: bytes = ZEROS48) -> None:
        """Extend with one PAGE_INFO; ``contents`` is the page's SHA-384 or zeros."""
        self.ld = _chain_sha384(self.ld + contents + _TAIL.pack(0x70, page_type, 0, b"\0\0\0\0", gpa)).digest()

    def add_hashed(self, gpa: int, digests: Iterable[bytes], page_type: int = PageType.NORMAL) -> None:
        """Extend with consecutive pages whose content hashes are already known."""
        sha384 = _chain_sha384
        pack = _TAIL.pack
        ld = self.ld
        for digest in digests:
            ld = sha384(ld + digest + pack(0x70, page_type, 0, b"\0\0\0\0", gpa)).digest()
            gpa += PAGE
        self.ld = ld

    def add_pages(self, gpas: list[int], digests: list[bytes]) -> None:
        """Extend with NORMAL pages at arbitrary GPAs whose content hashes are known."""
        sha384 = _chain_sha384
        pack = _TAIL.pack
        ld = self.ld
        for gpa, digest in zip(gpas, digests, strict=True):
            ld = sha384(ld + digest + pack(0x70, 1, 0, b"\0\0\0\0", gpa)).digest()
        self.ld = ld

    def add_normal(self, gpa: int, data: bytes | memoryview) -> None:
        """NORMAL pages over ``data`` (a multiple of 4 KiB) starting at ``gpa``."""
        if len(data) % PAGE:
            raise ValueError(f"page data of {len(data)} bytes is not a multiple of 4 KiB")
        self.add_hashed(gpa, hash_pages(data))

    def add_empty(self, page_type: int, gpa: int, size: int) -> None:
        """ZERO / UNMEASURED / SECRETS / CPUID pages: contents field is zeros."""
        if size % PAGE:
            raise ValueError(f"region of {size:#x} bytes is not a multiple of 4 KiB")
        for off in range(0, size, PAGE):
            self.update(page_type, gpa + off)

    def add_vmsa(self, vmsa: bytes, gpa: int = VMSA_GPA) -> None:
        self.update(PageType.VMSA, gpa, hashlib.sha384(vmsa).digest())

    def hex(self) -> str:
        return self.ld.hex()


def _multi_buffer() -> Callable[[bytes | memoryview], bytes] | None:
    """The AVX-512 page hasher (``_sha384mb.c``, eight pages per pass, ~3x OpenSSL's one-buffer SHA-384
    per core) when it was built and this CPU has AVX-512; else None and hashlib does the work."""
    try:
        from . import _sha384mb
    except ImportError:
        return None
    return _sha384mb.sha384_pages if _sha384mb.LANES > 1 else None


_sha384_pages = _multi_buffer()
#: which page hasher this process uses (the benchmark prints it)
PAGE_HASHER = "avx512 x8" if _sha384_pages is not None else "hashlib"


def hash_pages(data: bytes | memoryview) -> list[bytes]:
    """SHA-384 of each 4 KiB page of ``data``."""
    if _sha384_pages is not None:
        blob = _sha384_pages(data)
        return [blob[off:off + 48] for off in range(0, len(blob), 48)]
    if len(data) % PAGE:  # the C hasher raises this same error itself
        raise ValueError(f"page data of {len(data)} bytes is not a multiple of 4 KiB")
    view = memoryview(data)
    sha384 = hashlib.sha384
    return [sha384(view[off:off + PAGE]).digest() for off in range(0, len(view), PAGE)]


def page_digests(data: bytes | memoryview) -> bytes:
    """The digests of ``hash_pages``, concatenated (what a hashing worker sends back)."""
    if _sha384_pages is not None:
        return _sha384_pages(data)
    return b"".join(hash_pages(data))


class ParallelPageHasher:
    """Hash batches of pages on worker threads, in order, a few batches ahead.

    ``submit`` takes the file offsets of a batch's pages (``read`` fetches
    them) and returns immediately; it yields digests of earlier batches in
    submission order when the bounded look-ahead is full, which keeps memory
    flat. The same interface as ``forkhash.ForkedPageHasher``.
    """

    def __init__(self, read: Callable[[Sequence[int]], bytes], workers: int | None = None, depth: int = 8) -> None:
        self.read = read
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.depth = depth
        self._pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None
        self._pending: deque[Future[list[bytes]] | list[bytes]] = deque()

    def submit(self, offsets: Sequence[int]) -> Iterator[list[bytes]]:
        """Queue a batch; yield any batches that had to complete to make room."""
        data = self.read(offsets)
        if self._pool is None:
            self._pending.append(hash_pages(data))
        else:
            self._pending.append(self._pool.submit(hash_pages, data))
        while len(self._pending) > self.depth:
            yield self._take()

    def drain(self) -> Iterator[list[bytes]]:
        while self._pending:
            yield self._take()

    def _take(self) -> list[bytes]:
        item = self._pending.popleft()
        return item if isinstance(item, list) else item.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ParallelPageHasher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
