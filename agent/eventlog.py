"""The runtime event log: what ExtendRuntimeMeasurement extended, so a verifier can replay the register.

Upstream's attestation agent (guest-components attestation-agent/src/eventlog, commit 8246e5e0) keeps the
"AAEL" at /run/attestation-agent/eventlog. Since its commit 74cbe4b3 (2025-07) the file holds TCG2
crypto-agile event records, no longer the text lines of the first AAEL version (an "INIT" line, then
"<domain> <operation> <content>" lines): the records are appended to the firmware's CC event log in TDX
evidence (attester/src/utils.rs ``read_eventlog``) and trustee's parser reads them there
(deps/eventlog/src/ccel/event_tag.rs). One record per event, every integer little-endian:

    TCG_PCR_EVENT2   u32 register (the CC MR index on TDX, 4 = RTMR3; the PCR on a vTPM)
                     u32 EV_EVENT_TAG (6), u32 digest count (1), u16 TCG algorithm id, the digest,
                     u32 event size, the event:
    TCG_PCClientTaggedEvent  u32 taggedEventID 0x4141454C ("AAEL"), u32 data size,
                             data = "<domain> <operation> <content>" (UTF-8, no terminator)

The digest is the TEE's hash of the tagged event (the whole event field, ID and size included), and that
digest is what the register is extended with: register' = H(register || digest). Upstream's test vectors
for ("domain", "operation", "content") are SHA-256 46df8dac... and SHA-384 dad5f0e2...; trustee's genuine
Alibaba Cloud log (test_data/CCEL_AAEL_alibabacloud) carries two such records for RTMR3 (both checked in
tests/test_eventlog.py).

Upstream guards the step between extending and logging with a write-ahead file (extend, then log; a crash
in between is completed at the next start). Here the same idea in our own format, in the log's directory
(``.pending_event_entry``): u64 BE offset the record goes to, u16 BE size of the value the register must
hold after, that value, the record. Before the extend it is written; after the record is in the log it is
removed. At the first extend after a (re)start a pending entry is finished: the register already holds the
value (the record is written), or it holds the value before (the extend is done, then the record), or
neither, and then nothing more is extended or logged, because the log could no longer describe the
register.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from typing import Protocol

from agent.errors import AgentError
from agent.record import record

EVENTLOG_PATH = "/run/attestation-agent/eventlog"  # upstream's EVENTLOG_PATH
PENDING_NAME = ".pending_event_entry"
EV_EVENT_TAG = 0x0000_0006  # TCG PC Client PFP §10.4.1
AAEL_TAGGED_EVENT_ID = 0x4141_454C  # ASCII "AAEL" as upstream's u32
#: hash name -> (TCG_ALG_ID, digest size): TPM_ALG_SHA256/384/512 (TCG Algorithm Registry)
ALGORITHMS: dict[str, tuple[int, int]] = {"sha256": (0x000B, 32), "sha384": (0x000C, 48), "sha512": (0x000D, 64)}
_BY_ID = {alg_id: (name, size) for name, (alg_id, size) in ALGORITHMS.items()}
MAX_TEXT = 4096  # bytes of "<domain> <operation> <content>"; a CoCo PullImage event is a few hundred
MAX_LOG = 256 << 10  # the log travels in evidence beside the firmware's log (kbs_client.MAX_CCEL, 1 MiB, for all)
_HEADER = struct.Struct("<IIIH")
_PENDING = struct.Struct(">QH")


class EventLogError(AgentError):
    """The runtime event log cannot take an event (broken, unreadable, the TEE refused)."""


class EventRefused(EventLogError):
    """The request is malformed or names a register requests may not extend; nothing was changed."""


class EventLogFull(EventLogError):
    """The log reached MAX_LOG; nothing was changed."""


class RegisterError(EventLogError):
    """The TEE did not read or extend a register: the log is not broken by it, the next call tries again."""


class RuntimeRegisters(Protocol):
    """What a TEE provider with runtime measurement registers offers (duck-typed: agent/tee/tdx.py,
    agent/tee/az_vtpm.py). ``runtime_indices`` are the request indices (upstream's ``register_index``, a
    PCR number on every TEE) a request may name, ``default_runtime_index`` the one used when it names none;
    ``runtime_register`` maps an admitted index to the register number the log records, which
    ``read_runtime``/``extend_runtime`` take. ``runtime_algorithm`` is the hash the register is extended
    with (a key of ALGORITHMS)."""

    name: str
    runtime_algorithm: str
    runtime_indices: tuple[int, ...]
    default_runtime_index: int

    def runtime_measurement_available(self) -> bool: ...

    def runtime_register(self, index: int) -> int: ...

    def read_runtime(self, register: int) -> bytes: ...

    def extend_runtime(self, register: int, digest: bytes) -> None: ...


def runtime_registers(tee: object) -> RuntimeRegisters | None:
    """``tee`` as RuntimeRegisters when it has registers this guest can extend now, else None (SNP, sim,
    a TDX guest whose kernel offers no RTMR interface)."""
    probe = getattr(tee, "runtime_measurement_available", None)
    if callable(probe) and probe() is True:
        return tee  # type: ignore[return-value]
    return None


@record(frozen=True)
class EventlogConfig:
    """aa.toml ``[eventlog_config]`` (upstream config/mod.rs ``EventlogConfig``): off unless the pod's owner
    turned it on in the measured initdata; ``init_pcr`` the register index for requests that name none
    (None: the TEE's default)."""

    enabled: bool = False
    init_pcr: int | None = None


def eventlog_config(initdata: bytes | None) -> EventlogConfig:
    """The event log settings of an initdata document (raw TOML, as measured); EventLogError when its
    aa.toml or the table is malformed (a typo must not read as "off" without saying so)."""
    import tomllib

    from agent.initdata import parse_document

    if initdata is None:
        return EventlogConfig()
    text = parse_document(initdata, "initdata").data.get("aa.toml")
    if text is None:
        return EventlogConfig()
    try:
        table = tomllib.loads(text).get("eventlog_config", {})
    except tomllib.TOMLDecodeError as exc:
        raise EventLogError(f"initdata aa.toml is not TOML: {exc}") from None
    if not isinstance(table, dict) or set(table) - {"enable_eventlog", "init_pcr"}:
        keys = sorted(set(table) - {"enable_eventlog", "init_pcr"}) if isinstance(table, dict) else table
        raise EventLogError(f"initdata aa.toml [eventlog_config] takes enable_eventlog and init_pcr, not {keys}")
    enabled, init_pcr = table.get("enable_eventlog", False), table.get("init_pcr")
    if not isinstance(enabled, bool):
        raise EventLogError("initdata aa.toml eventlog_config.enable_eventlog is not true or false")
    if init_pcr is not None and (isinstance(init_pcr, bool) or not isinstance(init_pcr, int) or init_pcr < 0):
        raise EventLogError("initdata aa.toml eventlog_config.init_pcr is not a register index")
    return EventlogConfig(enabled, init_pcr)


def _graphic(value: str) -> bool:
    return all("\x21" <= c <= "\x7e" for c in value)


def event_text(domain: str, operation: str, content: str) -> bytes:
    """The event as upstream's ``Event`` displays it, "<domain> <operation> <content>", UTF-8.

    Trustee splits it at the first two spaces (``AaelEventEntry::from_bytes``), so the domain and the
    operation must not hold one; the AAEL spec (trustee kbs/docs/confidential-containers-eventlog.md) asks
    for printable characters. So: domain and operation non-empty printable ASCII without space, the
    content printable text (spaces allowed, as upstream's code and trustee's test log have them; no line
    break, which upstream refuses), all of it at most MAX_TEXT bytes."""
    for field, value in (("Domain", domain), ("Operation", operation), ("Content", content)):
        if not isinstance(value, str):
            raise EventRefused(f"{field} is not text")
    for field, value in (("Domain", domain), ("Operation", operation)):
        if not value or not _graphic(value):
            raise EventRefused(f"{field} {value[:64]!r} must be non-empty printable ASCII without spaces")
    if not content.isprintable():
        raise EventRefused("Content must be printable text (no line breaks or other control characters)")
    text = f"{domain} {operation} {content}".encode()
    if len(text) > MAX_TEXT:
        raise EventRefused(f"the event is {len(text)} bytes, at most {MAX_TEXT}")
    return text


def tagged_event(text: bytes) -> bytes:
    """The TCG_PCClientTaggedEvent that carries the event text; what is hashed."""
    return struct.pack("<II", AAEL_TAGGED_EVENT_ID, len(text)) + text


@record(frozen=True)
class Entry:
    """One record: the register it extended, the algorithm, H(tagged event), the event text."""

    register: int
    algorithm: str
    digest: bytes
    text: bytes

    def encode(self) -> bytes:
        alg_id, _ = ALGORITHMS[self.algorithm]
        event = tagged_event(self.text)
        return (_HEADER.pack(self.register, EV_EVENT_TAG, 1, alg_id) + self.digest + struct.pack("<I", len(event))
                + event)

    def fields(self) -> tuple[str, str, str]:
        """(domain, operation, content), split as trustee splits them."""
        domain, operation, content = self.text.decode().split(" ", 2)
        return domain, operation, content


def make_entry(register: int, algorithm: str, text: bytes) -> Entry:
    if algorithm not in ALGORITHMS:
        raise EventLogError(f"no TCG algorithm id for {algorithm!r}")
    if not 0 <= register <= 0xFFFF_FFFF:
        raise EventLogError(f"register {register} does not fit a TCG_PCR_EVENT2")
    return Entry(register, algorithm, hashlib.new(algorithm, tagged_event(text)).digest(), text)


def _check_text(text: bytes) -> None:
    try:
        parts = text.decode("utf-8").split(" ", 2)
    except UnicodeDecodeError:
        raise EventLogError("an event's text is not UTF-8") from None
    if len(parts) != 3:
        raise EventLogError("an event's text is not '<domain> <operation> <content>'")
    try:
        event_text(*parts)
    except EventRefused as exc:
        raise EventLogError(f"an event in the log is malformed: {exc}") from None


def parse(blob: bytes) -> list[Entry]:
    """Every record of a log, strictly: only AAEL tagged events with one digest of a known algorithm that
    matches the event, sizes exactly filling the blob, the text as ``event_text`` makes it. EventLogError
    on anything else, naming the record's offset."""
    entries: list[Entry] = []
    off = 0
    while off < len(blob):
        where = f"the runtime event log's record at offset {off}"
        if len(blob) - off < _HEADER.size:
            raise EventLogError(f"{where} is cut short")
        register, kind, count, alg_id = _HEADER.unpack_from(blob, off)
        if kind != EV_EVENT_TAG or count != 1 or alg_id not in _BY_ID:
            raise EventLogError(f"{where} is not an EV_EVENT_TAG with one SHA-2 digest (type {kind:#x}, "
                                f"{count} digests, algorithm {alg_id:#06x})")
        algorithm, size = _BY_ID[alg_id]
        at = off + _HEADER.size
        if len(blob) - at < size + 4:
            raise EventLogError(f"{where} is cut short")
        digest = blob[at:at + size]
        (event_size,) = struct.unpack_from("<I", blob, at + size)
        at += size + 4
        if event_size < 8 or event_size > len(blob) - at:
            raise EventLogError(f"{where} says its event is {event_size} bytes; {len(blob) - at} follow")
        event = blob[at:at + event_size]
        tag, text_size = struct.unpack_from("<II", event)
        if tag != AAEL_TAGGED_EVENT_ID or text_size != event_size - 8:
            raise EventLogError(f"{where} is not one AAEL tagged event")
        text = event[8:]
        _check_text(text)
        if hashlib.new(algorithm, event).digest() != digest:
            raise EventLogError(f"{where}: its digest is not the {algorithm} of its event")
        entries.append(Entry(register, algorithm, digest, text))
        off = at + event_size
    return entries


def replay(entries: list[Entry], register: int, algorithm: str, initial: bytes | None = None) -> bytes:
    """The register's value after the entries for it, from ``initial`` (zeros: a register at reset)."""
    value = initial if initial is not None else bytes(ALGORITHMS[algorithm][1])
    for entry in entries:
        if entry.register == register:
            if entry.algorithm != algorithm:
                raise EventLogError(f"register {register} has a {entry.algorithm} entry in a {algorithm} replay")
            value = hashlib.new(algorithm, value + entry.digest).digest()
    return value


def encode_pending(offset: int, expected: bytes, entry: Entry) -> bytes:
    return _PENDING.pack(offset, len(expected)) + expected + entry.encode()


def parse_pending(blob: bytes) -> tuple[int, bytes, Entry]:
    """(offset, the register's value after, the record) of a pending file; EventLogError when it is not
    exactly that."""
    if len(blob) < _PENDING.size:
        raise EventLogError("the pending event entry is cut short")
    offset, size = _PENDING.unpack_from(blob)
    expected = blob[_PENDING.size:_PENDING.size + size]
    entries = parse(blob[_PENDING.size + size:])
    if len(entries) != 1 or len(expected) != size or size != ALGORITHMS[entries[0].algorithm][1]:
        raise EventLogError("the pending event entry is not one value and one record")
    return offset, expected, entries[0]


class RuntimeLog:
    """The guest's one runtime event log over ``tee``'s registers. One extend at a time (the lock): read
    the register, note the pending entry, extend, append the record, drop the note."""

    def __init__(self, tee: RuntimeRegisters, path: str = EVENTLOG_PATH, max_size: int = MAX_LOG) -> None:
        self.tee, self.path, self.max_size = tee, path, max_size
        self.pending = os.path.join(os.path.dirname(path), PENDING_NAME)
        self._lock = threading.Lock()
        self._end: int | None = None  # where the next record goes; None until the log was read (and recovered)
        self._broken: str | None = None

    def extend(self, domain: str, operation: str, content: str, index: int) -> Entry:
        """Log and measure one event in the register ``index`` names; the record."""
        text = event_text(domain, operation, content)
        if index not in self.tee.runtime_indices:
            raise EventRefused(f"register index {index} is not one a runtime event may extend on {self.tee.name}; "
                               f"allowed: {', '.join(map(str, self.tee.runtime_indices))} (the rest belong to "
                               "the boot chain or the initdata binding, or cannot be extended from the guest)")
        entry = make_entry(self.tee.runtime_register(index), self.tee.runtime_algorithm, text)
        record_bytes = entry.encode()
        with self._lock:
            end = self._open()
            if end + len(record_bytes) > self.max_size:
                raise EventLogFull(f"the runtime event log {self.path} holds {end} bytes; this event's "
                                   f"{len(record_bytes)} would pass its limit of {self.max_size}")
            before = self._read(entry.register)
            expected = hashlib.new(entry.algorithm, before + entry.digest).digest()
            self._write_file(self.pending, encode_pending(end, expected, entry))
            self._end = None  # from here until the note is dropped, the next call recovers first
            self._extend(entry.register, entry.digest)
            self._place(end, record_bytes)
            self._drop_pending()
            self._end = end + len(record_bytes)
        return entry

    def entries(self) -> list[Entry]:
        with self._lock:
            return parse(self._read_log())

    # --- the steps ----------------------------------------------------------------------------------------
    def _open(self) -> int:
        if self._broken is not None:
            raise EventLogError(self._broken)
        if self._end is not None:
            return self._end
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
            log = self._read_log()
            if os.path.exists(self.pending):
                log = self._recover(log)
            parse(log)
        except RegisterError:
            raise
        except EventLogError as exc:
            self._broken = f"the runtime event log no longer describes the registers; nothing more is " \
                           f"extended or logged this boot: {exc}"
            raise EventLogError(self._broken) from None
        except OSError as exc:
            raise EventLogError(f"the runtime event log {self.path}: {exc.strerror or exc}") from None
        self._end = len(log)
        return self._end

    def _recover(self, log: bytes) -> bytes:
        """Finish the extend a pending entry notes (module docstring); the log with its record."""
        with open(self.pending, "rb") as f:
            offset, expected, entry = parse_pending(f.read(MAX_TEXT + 1024))
        if offset > len(log):
            raise EventLogError(f"the pending entry's record goes at offset {offset}, past the log's end")
        parse(log[:offset])
        now = self._read(entry.register)
        if now != expected:
            if hashlib.new(entry.algorithm, now + entry.digest).digest() != expected:
                raise EventLogError(f"register {entry.register} holds {now.hex()}, neither the value before nor "
                                    "the one after the pending event: something else extended it")
            self._extend(entry.register, entry.digest)
        record_bytes = entry.encode()
        self._place(offset, record_bytes, truncate=True)
        self._drop_pending()
        return log[:offset] + record_bytes

    def _read(self, register: int) -> bytes:
        try:
            value = self.tee.read_runtime(register)
        except AgentError as exc:
            raise RegisterError(f"reading register {register} failed: {exc}") from None
        if len(value) != ALGORITHMS[self.tee.runtime_algorithm][1]:
            raise RegisterError(f"register {register} reads {len(value)} bytes, not a {self.tee.runtime_algorithm} "
                                "value")
        return value

    def _extend(self, register: int, digest: bytes) -> None:
        try:
            self.tee.extend_runtime(register, digest)
        except AgentError as exc:
            raise RegisterError(f"extending register {register} failed: {exc}") from None

    def _read_log(self) -> bytes:
        try:
            with open(self.path, "rb") as f:
                data = f.read(self.max_size + 1)
        except FileNotFoundError:
            return b""
        if len(data) > self.max_size:
            raise EventLogError(f"{self.path} is larger than {self.max_size} bytes")
        return data

    def _place(self, offset: int, data: bytes, truncate: bool = False) -> None:
        """Write the record at ``offset`` (not O_APPEND: recovery rewrites a half-written one in place)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                if truncate:
                    os.ftruncate(fd, offset)
                view = memoryview(data)
                while view:
                    view = view[os.pwrite(fd, view, offset + len(data) - len(view)):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise EventLogError(f"writing {self.path}: {exc.strerror or exc}") from None

    @staticmethod
    def _write_file(path: str, data: bytes) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise EventLogError(f"writing {path}: {exc.strerror or exc}") from None

    def _drop_pending(self) -> None:
        try:
            os.unlink(self.pending)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise EventLogError(f"removing {self.pending}: {exc.strerror or exc}") from None

