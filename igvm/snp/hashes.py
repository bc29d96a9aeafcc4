"""The SEV kernel-hashes table QEMU writes into OVMF's SNP_KERNEL_HASHES page.

With ``kernel-hashes=on`` QEMU (``target/i386/sev.c``, ``SevHashTable``) puts
SHA-256 of the command line (with its NUL; a lone NUL when empty), of the
initrd (empty when absent) and of the kernel into a GUIDed table, padded to
16 bytes, at ``hashes_table_gpa & 0xfff`` of a zero page. OVMF's
BlobVerifierLibSevHashes then refuses blobs that do not match.
Layout: header GUID + u16 length (168), three entries of GUID + u16 length
(50) + 32-byte digest, in the order cmdline, initrd, kernel.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import uuid
from dataclasses import dataclass

from ..errors import InputError

TABLE_GUID = uuid.UUID("9438d606-4f22-4cc9-b479-a793d411fd21")
CMDLINE_GUID = uuid.UUID("97d02dd8-bd20-4c94-aa78-e7714d36ab2a")
INITRD_GUID = uuid.UUID("44baf731-3a2f-4bd7-9af1-41e29169781d")
KERNEL_GUID = uuid.UUID("4de79437-abd2-427f-b835-d5b172d2045b")
_ENTRY = struct.Struct("<16sH32s")
_HEADER = struct.Struct("<16sH")
TABLE_LENGTH = _HEADER.size + 3 * _ENTRY.size  # 168
PADDED_LENGTH = (TABLE_LENGTH + 15) & ~15  # 176
_CHUNK = 8 << 20


@dataclass(frozen=True)
class KernelHashes:
    kernel: bytes
    initrd: bytes
    cmdline: bytes

    def table(self) -> bytes:
        entries = b"".join(_ENTRY.pack(guid.bytes_le, _ENTRY.size, digest) for guid, digest in (
            (CMDLINE_GUID, self.cmdline), (INITRD_GUID, self.initrd), (KERNEL_GUID, self.kernel)))
        table = _HEADER.pack(TABLE_GUID.bytes_le, TABLE_LENGTH) + entries
        return table + bytes(PADDED_LENGTH - len(table))

    def page(self, offset_in_page: int) -> bytes:
        if not 0 <= offset_in_page <= 4096 - PADDED_LENGTH:
            raise InputError(f"hashes table at page offset {offset_in_page:#x} does not fit in the page")
        table = self.table()
        return bytes(offset_in_page) + table + bytes(4096 - offset_in_page - len(table))


def sha256_file(path: str | os.PathLike[str] | None) -> bytes:
    """Streamed SHA-256 of a file (empty input when ``path`` is None)."""
    digest = hashlib.sha256()
    if path is not None:
        try:
            with open(path, "rb") as fh:
                try:  # hash the page cache in place (no copy); pipes and empty files cannot be mapped
                    with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
                        digest.update(view)
                except (ValueError, OSError):
                    while chunk := fh.read(_CHUNK):
                        digest.update(chunk)
        except OSError as exc:
            raise InputError(f"cannot read {os.fspath(path)!r}: {exc.strerror}") from None
    return digest.digest()


def from_files(kernel: str | os.PathLike[str], initrd: str | os.PathLike[str] | None,
               cmdline: str | None) -> KernelHashes:
    # The two files hash concurrently: hashlib releases the GIL on large buffers.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        initrd_digest = pool.submit(sha256_file, initrd)
        kernel_digest = sha256_file(kernel)
        return KernelHashes(
            kernel=kernel_digest,
            initrd=initrd_digest.result(),
            cmdline=hashlib.sha256((cmdline or "").encode() + b"\0").digest(),
        )
