"""TDX CC event logs, strictly parsed and replayed into RTMR0-3, so a verifier can tell whether the log a
guest sent is the one its quote's RTMRs were extended with.

What a guest sends (guest-components ``attester/src/tdx/ccel.rs``; agent/kbs_client.py ``_cc_eventlog``):
the CCEL ACPI table's log area, ``/sys/firmware/acpi/tables/data/CCEL``, LAML bytes long, the log then the
area's filler (guest-components sends it all; cocoon's guest leaves the filler out, ``trim_ccel``).
Format: TCG PC Client Platform Firmware Profile, crypto-agile log:

- first a TCG_PCR_EVENT in the SHA-1 layout, 32-byte header {u32 index, u32 type (EV_NO_ACTION), 20 zero
  bytes, u32 size} whose data is the TCG_EfiSpecIDEventStruct: "Spec ID Event03\\0", u32 platformClass, u8
  specVersionMinor, u8 specVersionMajor (2), u8 specErrata, u8 uintnSize (1: 32-bit, 2: 64-bit), u32
  numberOfAlgorithms, that many {u16 algorithmId, u16 digestSize}, u8 vendorInfoSize, vendorInfo;
- then TCG_PCR_EVENT2 records {u32 index, u32 type, u32 digest count, (u16 algorithm, digest) per
  algorithm the Spec ID event lists, u32 size, data}.

The index is the CC measurement register of the UEFI CC measurement protocol; for TDX (edk2
``MdePkg/Include/Protocol/CcMeasurement.h``, ``TDX_MR_INDEX_*``) 0 is MRTD and 1..4 are RTMR0..3. An
RTMR starts at 48 zero bytes and extends as SHA-384(RTMR || event digest). EV_NO_ACTION events are
informational and extend nothing (TCG PFP; trustee ``deps/eventlog`` replays its published logs to their
RTMRs the same way). TDVF writes the Spec ID event with index 1 (the CC register PCR 0 maps to), td-shim
with 0 (TCG's PCR 0); both are accepted, nothing else.

Algorithm ids and digest sizes are the TCG Algorithm Registry's (SHA-1 0x0004/20, SHA-256 0x000B/32,
SHA-384 0x000C/48, SHA-512 0x000D/64, SM3-256 0x0012/32: the hash algorithms trustee's parser knows).

Strict where the format says exactly: an unknown algorithm, a size other than the registry's, an algorithm
listed twice, a Spec ID event whose size is not its contents', an event that lists other digests than the
Spec ID event, an index outside 0..4, a record cut short, or bytes after the log that are not the area's
uniform filler (all 0xFF, as TDVF leaves it, or all zero, as td-shim does) are a CcelError naming the
offset; bytes that begin as filler but are not that (0xFF then 0x00, junk after the filler) are said to be
neither an event nor filler. Event types are not judged: the replay does not depend on them, save EV_NO_ACTION.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from agent.errors import ReportError

EV_NO_ACTION = 0x3
SPEC_ID = b"Spec ID Event03\0"
TPM_ALG_SHA384 = 0x000C
# TCG Algorithm Registry: algorithm id -> (name, digest size)
ALGORITHMS: dict[int, tuple[str, int]] = {
    0x0004: ("SHA-1", 20), 0x000B: ("SHA-256", 32), 0x000C: ("SHA-384", 48), 0x000D: ("SHA-512", 64),
    0x0012: ("SM3-256", 32)}
MR_INDICES = range(5)  # 0 MRTD, 1..4 RTMR0..3
SPEC_ID_INDICES = (0, 1)  # td-shim (TCG's PCR 0), TDVF (the CC register PCR 0 maps to)
HEADER_SIZE = 32  # the first event's SHA-1-format header
SPEC_FIXED = 28  # signature .. numberOfAlgorithms
MAX_LOG = 1 << 20  # what a guest sends at most (agent/kbs_client.py MAX_CCEL); firmware reserves 64 KiB-1 MiB
RTMR_SIZE = 48


class CcelError(ReportError):
    """The bytes are not a TDX CC event log; the message names the offset of what is wrong."""


@dataclass(frozen=True)
class Event:
    offset: int  # of the record in the log
    mr_index: int  # 0 MRTD, 1..4 RTMR0..3
    type: int
    digests: dict[int, bytes]  # algorithm id -> digest, one per algorithm of the Spec ID event
    data: bytes

    @property
    def rtmr(self) -> int | None:
        return self.mr_index - 1 if self.mr_index >= 1 else None


@dataclass(frozen=True)
class Log:
    algorithms: dict[int, int]  # algorithm id -> digest size, in the Spec ID event's order
    spec_index: int
    uintn_size: int
    vendor_info: bytes
    events: tuple[Event, ...]  # the TCG_PCR_EVENT2 records, in log order
    end: int  # where the log ends and the filler (if any) begins


def _u32(raw: bytes, off: int, what: str) -> int:
    return int(struct.unpack_from("<I", _take(raw, off, 4, what))[0])


def _take(raw: bytes, off: int, n: int, what: str, base: int = 0) -> bytes:
    """``n`` bytes at ``off`` of ``raw``, which starts at ``base`` of the log (for the message)."""
    if off + n > len(raw):
        raise CcelError(f"CC event log: {what} at offset {base + off:#x} needs {n} bytes, "
                        f"{max(0, len(raw) - off)} left")
    return raw[off : off + n]


def _spec_id(raw: bytes) -> tuple[dict[int, int], int, int, bytes, int]:
    """The Spec ID event: which digests every later record carries, and where the first record begins."""
    index, etype = struct.unpack_from("<II", _take(raw, 0, HEADER_SIZE, "the Spec ID event's header"))
    if etype != EV_NO_ACTION:
        raise CcelError(f"CC event log: the first event (offset 0x0) has type {etype:#x}, not EV_NO_ACTION: "
                        "not a crypto-agile log")
    if index not in SPEC_ID_INDICES:
        raise CcelError(f"CC event log: the Spec ID event (offset 0x0) has index {index}, not 0 or 1")
    if raw[8:28] != bytes(20):
        raise CcelError("CC event log: the Spec ID event's SHA-1 digest (offset 0x8) is not zero")
    size = _u32(raw, 28, "the Spec ID event's size")
    spec = _take(raw, HEADER_SIZE, size, "the Spec ID event's data")
    if size < SPEC_FIXED or spec[:16] != SPEC_ID:
        raise CcelError("CC event log: the first event (offset 0x0) is not a 'Spec ID Event03' (not a "
                        "crypto-agile log)")
    major, uintn, count = spec[21], spec[23], struct.unpack_from("<I", spec, 24)[0]
    if major != 2:
        raise CcelError(f"CC event log: Spec ID event at offset 0x20: spec version major {major}, not 2")
    if uintn not in (1, 2):
        raise CcelError(f"CC event log: Spec ID event at offset 0x20: uintnSize {uintn}, not 1 or 2")
    if not 1 <= count <= len(ALGORITHMS):
        raise CcelError(f"CC event log: Spec ID event at offset 0x20 lists {count} algorithms (1 to "
                        f"{len(ALGORITHMS)} are known)")
    algorithms: dict[int, int] = {}
    pos = SPEC_FIXED
    for _ in range(count):
        alg, dsize = struct.unpack_from("<HH", _take(spec, pos, 4, "a Spec ID algorithm", HEADER_SIZE))
        known = ALGORITHMS.get(alg)
        if known is None:
            raise CcelError(f"CC event log: Spec ID event at offset 0x20: unknown algorithm {alg:#06x}")
        if dsize != known[1]:
            raise CcelError(f"CC event log: Spec ID event at offset 0x20: {known[0]} digests are {known[1]} "
                            f"bytes, the event says {dsize}")
        if alg in algorithms:
            raise CcelError(f"CC event log: Spec ID event at offset 0x20 lists {known[0]} twice")
        algorithms[alg] = dsize
        pos += 4
    vendor_size = _take(spec, pos, 1, "the Spec ID vendorInfoSize", HEADER_SIZE)[0]
    if pos + 1 + vendor_size != size:
        raise CcelError(f"CC event log: Spec ID event at offset 0x20 is {size} bytes, its contents "
                        f"{pos + 1 + vendor_size}")
    vendor = spec[pos + 1 :]
    return algorithms, index, uintn, vendor, HEADER_SIZE + size


def _not_filler(raw: bytes, start: int) -> None:
    """Refuse a record whose header is made of filler bytes (only 0xFF and 0x00, which no event header is:
    its index would be 0 or at least 0xFF, its digest count 0 or at least 0xFF) although the filler does not
    run to the area's end: mixed filler, or junk after the filler. Said as that, rather than as an event with
    index 4294967295, or no digests, or a header cut short."""
    head = raw[start : start + 12]
    if not set(head) <= {0x00, 0xFF}:
        return
    byte = head[:1]
    stop = start + len(raw[start:]) - len(raw[start:].lstrip(byte))  # < len(raw): this run is not the filler
    raise CcelError(f"CC event log: the log ends at offset {start:#x} in bytes that are neither an event nor "
                    f"filler: {byte[0]:#04x} up to offset {stop:#x}, then {raw[stop]:#04x} (an area's filler is "
                    "one byte, 0xFF or 0x00, to its end)")


def parse(raw: bytes) -> Log:
    """Every record of a CC event log area (the log, then optional filler to the area's end)."""
    if not isinstance(raw, bytes):
        raise CcelError("CC event log: not bytes")
    if len(raw) > MAX_LOG:
        raise CcelError(f"CC event log: {len(raw)} bytes, more than {MAX_LOG}")
    algorithms, spec_index, uintn, vendor, off = _spec_id(raw)
    # the filler runs from the last byte that is not filler to the end; found once, not per record
    filled = min(len(raw.rstrip(b"\xff")), len(raw.rstrip(b"\0")))
    events: list[Event] = []
    while off < filled:  # what follows the last record is uniform filler, or nothing
        start = off
        _not_filler(raw, start)
        mr, etype, count = struct.unpack_from("<III", _take(raw, off, 12, "an event header"))
        if mr not in MR_INDICES:
            raise CcelError(f"CC event log: event at offset {start:#x} has index {mr}; TDX has MRTD and "
                            "RTMR0-3 (0..4)")
        if count != len(algorithms):
            raise CcelError(f"CC event log: event at offset {start:#x} carries {count} digests, the Spec ID "
                            f"event lists {len(algorithms)} algorithms")
        off += 12
        digests: dict[int, bytes] = {}
        for _ in range(count):
            alg = struct.unpack_from("<H", _take(raw, off, 2, "a digest's algorithm"))[0]
            dsize = algorithms.get(alg)
            if dsize is None:
                raise CcelError(f"CC event log: event at offset {start:#x}: algorithm {alg:#06x} at offset "
                                f"{off:#x} is not one the Spec ID event lists")
            if alg in digests:
                raise CcelError(f"CC event log: event at offset {start:#x} carries {ALGORITHMS[alg][0]} twice")
            digests[alg] = _take(raw, off + 2, dsize, "a digest")
            off += 2 + dsize
        size = _u32(raw, off, "an event's size")
        data = _take(raw, off + 4, size, "an event's data")
        off += 4 + size
        events.append(Event(start, mr, etype, digests, data))
    return Log(algorithms, spec_index, uintn, vendor, tuple(events), off)


def replay(log: Log) -> tuple[bytes, bytes, bytes, bytes]:
    """RTMR0..3 as the log's SHA-384 digests extend them from zero (EV_NO_ACTION and MRTD events skipped)."""
    if TPM_ALG_SHA384 not in log.algorithms:
        names = ", ".join(ALGORITHMS[a][0] for a in log.algorithms)
        raise CcelError(f"CC event log: no SHA-384 digests (its algorithms: {names}); TDX RTMRs are SHA-384")
    rtmrs = [bytes(RTMR_SIZE)] * 4
    for event in log.events:
        if event.type == EV_NO_ACTION or event.rtmr is None:
            continue
        rtmrs[event.rtmr] = hashlib.sha384(rtmrs[event.rtmr] + event.digests[TPM_ALG_SHA384]).digest()
    return rtmrs[0], rtmrs[1], rtmrs[2], rtmrs[3]


def rtmrs(raw: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """The RTMRs a log area replays to (parse, then replay)."""
    return replay(parse(raw))
