"""Synthetic OVMF-like firmware images for tests.

Debian's OVMF has no SNP_KERNEL_HASHES section, so tests that bind a kernel
build their own image: pseudo-random body, a GUIDed footer table ending 32
bytes before the end, SEV ("ASEV") and TDVF metadata blocks. Layout facts as
in igvm/ovmf.py; written independently of it so the parser is tested against
a second encoding.
"""

from __future__ import annotations

import random
import struct
import uuid

FOOTER = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d")
RESET_BLOCK = uuid.UUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e")
HASH_TABLE = uuid.UUID("7255371f-3a3b-4b04-927b-1da6efa8d454")
SEV_META = uuid.UUID("dc886566-984a-4798-a75e-5585a7bf67cc")
TDX_META = uuid.UUID("e47a6535-984a-4798-865e-4685a7bf8ec2")

DEFAULT_SEV = [(0x800000, 0x9000, 1), (0x809000, 0x1000, 2), (0x80A000, 0x1000, 3),
               (0x80B000, 0x1000, 0x10), (0x80C000, 0x4000, 1)]


def _entry(guid: uuid.UUID, data: bytes) -> bytes:
    return data + struct.pack("<H", len(data) + 18) + guid.bytes_le


def make_firmware(size: int = 0x40000, *, seed: int = 1, sev_sections: list[tuple[int, int, int]] | None = None,
                  reset_eip: int | None = 0xFFFFF004, hashes_gpa: int | None = 0x80B000 + 0x400,
                  tdvf_sections: list[tuple[int, int, int, int, int, int]] | None = None) -> bytes:
    """Build an image; ``sev_sections`` are (gpa, size, type), TDVF ones the 6 raw fields."""
    rng = random.Random(seed)
    body = bytearray(rng.randbytes(size))
    entries = b""
    meta_at = 0x1000  # metadata blocks live in the body at fixed offsets
    if sev_sections is None:
        sev_sections = DEFAULT_SEV
    if sev_sections:
        items = b"".join(struct.pack("<III", *s) for s in sev_sections)
        block = struct.pack("<4sIII", b"ASEV", 16 + len(items), 1, len(sev_sections)) + items
        body[meta_at:meta_at + len(block)] = block
        entries += _entry(SEV_META, struct.pack("<I", size - meta_at))
    if tdvf_sections:
        at = 0x2000
        items = b"".join(struct.pack("<IIQQII", *s) for s in tdvf_sections)
        block = struct.pack("<4sIII", b"TDVF", 16 + len(items), 1, len(tdvf_sections)) + items
        body[at:at + len(block)] = block
        entries += _entry(TDX_META, struct.pack("<I", size - at))
    if hashes_gpa is not None:
        entries += _entry(HASH_TABLE, struct.pack("<II", hashes_gpa, 0x400))
    if reset_eip is not None:
        entries += _entry(RESET_BLOCK, struct.pack("<I", reset_eip))
    table = entries + struct.pack("<H", len(entries) + 18) + FOOTER.bytes_le
    end = size - 32
    body[end - len(table):end] = table
    return bytes(body)
