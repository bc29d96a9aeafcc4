"""TDX CC event logs (the CCEL ACPI table's log): parse, and replay into RTMR0-3.

Format: TCG PC Client Platform Firmware Profile, crypto-agile log. The first
event is a SHA-1-format TCG_PCR_EVENT whose data is the "Spec ID Event03"
structure listing the digest algorithms and their sizes; every later event
is a TCG_PCR_EVENT2 {u32 mr_index, u32 type, u32 digest count,
(u16 alg, digest)*, u32 size, data}. For TDX (CC event log, UEFI spec
EFI_CC_MEASUREMENT_PROTOCOL) mr_index 0 is MRTD and 1..4 are RTMR0..3;
an RTMR extends as SHA-384(RTMR || digest), from zeros. EV_NO_ACTION events
are informational and extend nothing. The log area the firmware reserved is
larger than the log; the rest is 0xFF (or zero) filler.

The kernel exposes the table at /sys/firmware/acpi/tables/CCEL and the log
itself at /sys/firmware/acpi/tables/data/CCEL.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from igvm.errors import MeasureError

EV_NO_ACTION = 0x3
EV_SEPARATOR = 0x4
EV_EFI_ACTION = 0x80000007
EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
TPM_ALG_SHA384 = 0x000C
SPEC_ID = b"Spec ID Event03\0"
MAX_EVENT_DATA = 1 << 24
MAX_EVENTS = 1 << 16


class EventLogError(MeasureError):
    """The bytes are not a CC event log (or a CCEL table); the message names the offset."""


@dataclass(frozen=True)
class Event:
    offset: int
    mr_index: int  # 0 MRTD, 1..4 RTMR0..3
    type: int
    digests: dict[int, bytes]  # algorithm id -> digest
    data: bytes

    @property
    def rtmr(self) -> int | None:
        return self.mr_index - 1 if 1 <= self.mr_index <= 4 else None


@dataclass(frozen=True)
class CcelTable:
    cc_type: int  # 2 = TDX
    cc_subtype: int
    log_length: int
    log_address: int


def parse_ccel_table(raw: bytes) -> CcelTable:
    """The CCEL ACPI table (UEFI 2.10 / ACPI 6.5): 36-byte header, CC type/subtype, reserved, LAML, LASA."""
    if len(raw) < 56:
        raise EventLogError(f"CCEL table: {len(raw)} bytes, need 56")
    if raw[:4] != b"CCEL":
        raise EventLogError(f"CCEL table: signature {raw[:4]!r} at offset 0, expected b'CCEL'")
    length = struct.unpack_from("<I", raw, 4)[0]
    if length < 56 or length > len(raw):
        raise EventLogError(f"CCEL table: length field {length} at offset 4 does not fit {len(raw)} bytes")
    if sum(raw[:length]) % 256:
        raise EventLogError("CCEL table: checksum (offset 9) does not sum to zero")
    cc_type, cc_subtype = raw[36], raw[37]
    laml, lasa = struct.unpack_from("<QQ", raw, 40)
    return CcelTable(cc_type, cc_subtype, laml, lasa)


def _take(raw: bytes, off: int, n: int, what: str) -> bytes:
    if n < 0 or off + n > len(raw):
        raise EventLogError(f"{what} at offset {off:#x}: needs {n} bytes, {max(0, len(raw) - off)} left")
    return raw[off : off + n]


def _filler(rest: bytes) -> bool:
    return not rest.strip(b"\xff") or not rest.strip(b"\0")


def parse_log(raw: bytes) -> list[Event]:
    """Every event of a crypto-agile log, the Spec ID event first; stops at the filler after the last."""
    head = _take(raw, 0, 32, "first event header")
    mr, etype = struct.unpack_from("<II", head, 0)
    if etype != EV_NO_ACTION:
        raise EventLogError(f"first event at offset 0x0 has type {etype:#x}, expected EV_NO_ACTION (Spec ID)")
    size = struct.unpack_from("<I", head, 28)[0]
    spec = _take(raw, 32, size, "Spec ID event data")
    if size < 29 or spec[:16] != SPEC_ID:
        raise EventLogError("first event at offset 0x0 is not a 'Spec ID Event03' (not a crypto-agile log)")
    count = struct.unpack_from("<I", spec, 24)[0]
    if count == 0 or 28 + 4 * count > size:
        raise EventLogError(f"Spec ID event at offset 0x20: {count} algorithms do not fit its {size} bytes")
    sizes = {}
    for i in range(count):
        alg, dsize = struct.unpack_from("<HH", spec, 28 + 4 * i)
        if not 1 <= dsize <= 64:
            raise EventLogError(f"Spec ID event: algorithm {alg:#x} has digest size {dsize}")
        sizes[alg] = dsize
    events = [Event(0, mr, etype, {}, spec)]
    off = 32 + size
    while off < len(raw):
        if len(raw) - off < 8 or _filler(raw[off:]) or raw[off : off + 4] == b"\xff\xff\xff\xff":
            break
        if len(events) > MAX_EVENTS:
            raise EventLogError(f"more than {MAX_EVENTS} events")
        start = off
        mr, etype, ndig = struct.unpack_from("<III", _take(raw, off, 12, "event header"), 0)
        off += 12
        if ndig != len(sizes):
            raise EventLogError(f"event at offset {start:#x}: {ndig} digests, the Spec ID event declares {len(sizes)}")
        digests = {}
        for _ in range(ndig):
            alg = struct.unpack_from("<H", _take(raw, off, 2, "digest algorithm"), 0)[0]
            if alg not in sizes:
                raise EventLogError(f"event at offset {start:#x}: algorithm {alg:#x} not in the Spec ID event")
            digests[alg] = _take(raw, off + 2, sizes[alg], "digest")
            off += 2 + sizes[alg]
        dsize = struct.unpack_from("<I", _take(raw, off, 4, "event size"), 0)[0]
        if dsize > MAX_EVENT_DATA:
            raise EventLogError(f"event at offset {start:#x}: data size {dsize} exceeds {MAX_EVENT_DATA}")
        data = _take(raw, off + 4, dsize, "event data")
        off += 4 + dsize
        events.append(Event(start, mr, etype, digests, data))
    return events


def extend(register: bytes, digest: bytes) -> bytes:
    return hashlib.sha384(register + digest).digest()


def replay(events: list[Event]) -> list[bytes]:
    """RTMR0..3 as the events extend them (SHA-384 bank; EV_NO_ACTION skipped)."""
    rtmrs = [bytes(48)] * 4
    for e in events:
        if e.type == EV_NO_ACTION or e.rtmr is None:
            continue
        digest = e.digests.get(TPM_ALG_SHA384)
        if digest is None or len(digest) != 48:
            raise EventLogError(f"event at offset {e.offset:#x} has no SHA-384 digest to extend RTMR{e.rtmr} with")
        rtmrs[e.rtmr] = extend(rtmrs[e.rtmr], digest)
    return rtmrs
