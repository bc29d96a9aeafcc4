"""TDX CC event logs for tests, built here from the TCG PC Client PFP layouts (TCG_PCR_EVENT with a
TCG_EfiSpecIDEventStruct, then TCG_PCR_EVENT2 records) independently of verifier/ccel.py, and replayed
with hashlib alone, so the parser and its replay are checked against code that shares nothing with them.
Also the genuine OVMF log's events trustee publishes (tests/data/tdx-ovmf-ccel-events.json), rebuilt."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Sequence
from pathlib import Path

SHA384 = 0x000C
SHA256 = 0x000B
SHA1 = 0x0004
NO_ACTION = 3
# TCG PC Client PFP "Events" table: the types the genuine OVMF log uses
TYPES = {"EV_SEPARATOR": 0x4, "EV_EVENT_TAG": 0x6, "EV_PLATFORM_CONFIG_FLAGS": 0xA,
         "EV_EFI_VARIABLE_DRIVER_CONFIG": 0x80000001, "EV_EFI_VARIABLE_BOOT": 0x80000002,
         "EV_EFI_BOOT_SERVICES_APPLICATION": 0x80000003, "EV_EFI_ACTION": 0x80000007,
         "EV_EFI_PLATFORM_FIRMWARE_BLOB2": 0x8000000A, "EV_EFI_HANDOFF_TABLES2": 0x8000000B}
DATA = Path(__file__).resolve().parent.parent / "data"

Record = tuple[int, int, Sequence[tuple[int, bytes]], bytes]  # index, type, (algorithm, digest)s, data


def spec_id(algorithms: Sequence[tuple[int, int]] = ((SHA384, 48),), index: int = 1, vendor: bytes = b"",
            major: int = 2, uintn: int = 2, signature: bytes = b"Spec ID Event03\0") -> bytes:
    """The first event: EV_NO_ACTION, a zero SHA-1 digest, the Spec ID structure as its data."""
    body = (signature + struct.pack("<IBBBBI", 0, 0, major, 0, uintn, len(algorithms))
            + b"".join(struct.pack("<HH", alg, size) for alg, size in algorithms) + bytes([len(vendor)]) + vendor)
    return struct.pack("<II", index, NO_ACTION) + bytes(20) + struct.pack("<I", len(body)) + body


def record(index: int, etype: int, digests: Sequence[tuple[int, bytes]], data: bytes) -> bytes:
    return (struct.pack("<III", index, etype, len(digests)) + b"".join(struct.pack("<H", a) + d for a, d in digests)
            + struct.pack("<I", len(data)) + data)


def log(records: Sequence[Record], head: bytes | None = None, area: int = 0, filler: bytes = b"\xff") -> bytes:
    """A log area: the Spec ID event, the records, then ``filler`` up to ``area`` bytes."""
    raw = (spec_id() if head is None else head) + b"".join(record(*r) for r in records)
    return raw + filler * max(0, area - len(raw))


def sha384_records(events: Sequence[tuple[int, int, bytes]]) -> list[Record]:
    """(index, type, data) -> records whose one digest is SHA-384 of the data."""
    return [(i, t, [(SHA384, hashlib.sha384(d).digest())], d) for i, t, d in events]


def replay(records: Sequence[Record]) -> list[bytes]:
    """RTMR0..3 from CC MR indices 1..4, SHA-384 digests, EV_NO_ACTION extending nothing."""
    regs = [bytes(48)] * 4
    for index, etype, digests, _ in records:
        if etype == NO_ACTION or not 1 <= index <= 4:
            continue
        digest = dict(digests)[SHA384]
        regs[index - 1] = hashlib.sha384(regs[index - 1] + digest).digest()
    return regs


def trustee_ovmf() -> tuple[bytes, list[bytes]]:
    """The genuine TDVF log trustee ships as CCEL_data_ovmf, rebuilt from its published events into a
    64 KiB area as TDVF leaves it (Spec ID event at index 1, SHA-384 only, 0xFF filler), and the RTMRs
    trustee's test expects of it."""
    doc = json.loads((DATA / "tdx-ovmf-ccel-events.json").read_text())
    records: list[Record] = [(e["index"], TYPES[e["type_name"]], [(SHA384, bytes.fromhex(e["digest"]))],
                              base64.b64decode(e["event"])) for e in doc["events"]]
    return log(records, area=doc["log_area_size"]), [bytes.fromhex(r) for r in doc["published_rtmrs"]]
