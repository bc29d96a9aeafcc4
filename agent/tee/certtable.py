"""The SNP extended-report certificate table (configfs-tsm ``auxblob``, SNP_GET_EXT_REPORT).

GHCB specification, "SNP Extended Guest Request": entries of {GUID 16 bytes,
u32 offset, u32 length} terminated by an all-zero entry, offsets relative to
the start of the table, certificates DER. GUIDs as go-sev-guest ``abi`` names
them; on the wire the GUID bytes are in the order the text is written (what
``uuid_parse`` / Go's ``uuid.Parse`` give), i.e. Python's ``UUID.bytes``. Kept as
bytes and hex text here rather than ``uuid.UUID``: the sim TEE builds a table on
every agent start, and importing ``uuid`` (and ``platform`` with it) was a few
milliseconds of that start, seconds under emulation.
"""

from __future__ import annotations

import struct

from agent.errors import ReportError

ENTRY_SIZE = 24
MAX_TABLE = 1 << 20  # the kernel caps certificate buffers far below this


def guid_bytes(text: str) -> bytes:
    """The 16 wire bytes of a GUID written 8-4-4-4-12 (the order the text is written)."""
    parts = text.split("-")
    try:
        raw = bytes.fromhex("".join(parts))
    except ValueError:
        raw = b""
    if [len(x) for x in parts] != [8, 4, 4, 4, 12] or len(raw) != 16:
        raise ReportError(f"{text!r} is neither a certificate name nor a GUID")
    return raw


def guid_text(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


GUIDS: dict[bytes, str] = {
    guid_bytes("63da758d-e664-4564-adc5-f4b93be8accd"): "vcek",
    guid_bytes("a8074bc2-a25a-483e-aae6-39c045a0b8a1"): "vlek",
    guid_bytes("4ab7b379-bbac-4fe4-a02f-05aef327c782"): "ask",
    guid_bytes("c0b406a4-a803-4952-9743-3fb6014cd0ae"): "ark",
    guid_bytes("92f81bc3-5811-4d3d-97ff-d19f88dc67ea"): "crl",
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
        guid = table[pos : pos + 16]
        offset, length = struct.unpack_from("<II", table, pos + 16)
        if not any(guid):
            if offset or length:
                raise ReportError(f"SNP certificate table: terminator at offset {pos} is not all zero")
            return out
        name = GUIDS.get(guid) or guid_text(guid)
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
        guid = _BY_NAME.get(name) or guid_bytes(name)
        index += guid + struct.pack("<II", start + len(blobs), len(der))
        blobs += der
    return bytes(index + bytes(ENTRY_SIZE) + blobs)
