"""The SNP extended-report certificate table (configfs-tsm ``auxblob``, SNP_GET_EXT_REPORT).

GHCB specification, "SNP Extended Guest Request": entries of {GUID 16 bytes,
u32 offset, u32 length} terminated by an all-zero entry, offsets relative to
the start of the table, certificates DER. GUIDs as go-sev-guest ``abi`` names
them; on the wire the GUID bytes are in the order the text is written (what
``uuid_parse`` / Go's ``uuid.Parse`` give), i.e. Python's ``UUID.bytes``.
"""

from __future__ import annotations

import struct
import uuid

from agent.errors import ReportError

ENTRY_SIZE = 24
MAX_TABLE = 1 << 20  # the kernel caps certificate buffers far below this
GUIDS: dict[uuid.UUID, str] = {
    uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd"): "vcek",
    uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1"): "vlek",
    uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782"): "ask",
    uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae"): "ark",
    uuid.UUID("92f81bc3-5811-4d3d-97ff-d19f88dc67ea"): "crl",
}
_BY_NAME = {name: guid for guid, name in GUIDS.items()}


def parse(table: bytes) -> dict[str, bytes]:
    """Map of entry name (vcek/vlek/ask/ark/crl, or the GUID text) to its bytes.

    An empty blob is an empty table (hosts need not provide certificates).
    Overlapping entries are allowed (the spec does not forbid sharing) but
    every entry must lie inside the blob, and a GUID may appear once.
    """
    table = bytes(table)
    if not table:
        return {}
    if len(table) > MAX_TABLE:
        raise ReportError(f"SNP certificate table is {len(table)} bytes, more than the {MAX_TABLE} allowed")
    out: dict[str, bytes] = {}
    pos = 0
    while True:
        if pos + ENTRY_SIZE > len(table):
            raise ReportError(f"SNP certificate table: entry at offset {pos} runs past the end (no terminator)")
        guid = uuid.UUID(bytes=table[pos : pos + 16])
        offset, length = struct.unpack_from("<II", table, pos + 16)
        if guid.int == 0:
            if offset or length:
                raise ReportError(f"SNP certificate table: terminator at offset {pos} is not all zero")
            return out
        name = GUIDS.get(guid, str(guid))
        if name in out:
            raise ReportError(f"SNP certificate table: {name} appears twice")
        if length == 0 or offset + length > len(table) or offset < pos + ENTRY_SIZE:
            raise ReportError(
                f"SNP certificate table: {name} entry (offset {offset}, length {length}) lies outside "
                f"the {len(table)}-byte table or inside its index"
            )
        out[name] = table[offset : offset + length]
        pos += ENTRY_SIZE


def build(certs: dict[str, bytes]) -> bytes:
    """A table holding ``certs`` (names as in ``parse``), terminator included; for sim and tests."""
    index = bytearray()
    blobs = bytearray()
    start = ENTRY_SIZE * (len(certs) + 1)
    for name, der in certs.items():
        guid = _BY_NAME.get(name) or uuid.UUID(name)
        index += guid.bytes + struct.pack("<II", start + len(blobs), len(der))
        blobs += der
    return bytes(index + bytes(ENTRY_SIZE) + blobs)
