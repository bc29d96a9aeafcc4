"""The runtime event log (agent/eventlog.py): upstream's record format, checked against upstream's digest
vectors and trustee's genuine Alibaba Cloud records, read back by the verifier's own CC event log parser
(verifier/ccel.py), and the log's extend/recovery sequence against a register model that hashes with
hashlib independently of the module."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import eventlog
from agent.errors import AgentError
from agent.eventlog import EventLogError, EventRefused, RuntimeLog
from agent.initdata import render_document

DATA = Path(__file__).parent / "data"


def genuine_records() -> bytes:
    return bytes.fromhex("".join(DATA.joinpath("aael-alibabacloud-rtmr3.hex").read_text().split()))


class Registers:
    """A register file as the kernel or TPM keeps it: value' = H(value || digest), from zeros."""

    def __init__(self, algorithm: str = "sha384", indices: tuple[int, ...] = (17, 23)) -> None:
        self.name = "model"
        self.runtime_algorithm = algorithm
        self.runtime_indices = indices
        self.default_runtime_index = indices[0]
        self.size = hashlib.new(algorithm).digest_size
        self.values: dict[int, bytes] = {}
        self.extends: list[tuple[int, bytes]] = []
        self.fail_extend: Exception | None = None
        self.fail_read: Exception | None = None

    def runtime_measurement_available(self) -> bool:
        return True

    def runtime_register(self, index: int) -> int:
        return index + 100  # the log records another number than the request's, as TDX does (17 -> 4)

    def read_runtime(self, register: int) -> bytes:
        if self.fail_read is not None:
            raise self.fail_read
        return self.values.get(register, bytes(self.size))

    def extend_runtime(self, register: int, digest: bytes) -> None:
        if self.fail_extend is not None:
            raise self.fail_extend
        self.extends.append((register, digest))
        self.values[register] = hashlib.new(self.runtime_algorithm, self.read_runtime(register) + digest).digest()


def aael_digest(algorithm: str, text: bytes) -> bytes:
    """Upstream's digest, written out: H(u32le 0x4141454C || u32le len || text)."""
    return hashlib.new(algorithm, b"LEAA" + len(text).to_bytes(4, "little") + text).digest()


# --- the format ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("algorithm", "expected"), [
    ("sha256", "46df8dacf00a07d34a83cdf56d7978697790787cf2ba1432ef7c38f22cd96351"),
    ("sha384", "dad5f0e226318ffa9839b75a472c6aa7fdb5834949d0a0a22990cf04d5692440fb00f3aa0609db7e49cd8d793f670d02"),
])
def test_digest_matches_upstreams_vectors(algorithm: str, expected: str) -> None:
    # guest-components attestation-agent/src/eventlog/mod.rs test_event_digest, commit 8246e5e0
    entry = eventlog.make_entry(4, algorithm, eventlog.event_text("domain", "operation", "content"))
    assert entry.digest.hex() == expected


def test_records_are_byte_identical_to_trustees_genuine_log() -> None:
    genuine = genuine_records()
    ours = b"".join(eventlog.make_entry(4, "sha384", eventlog.event_text("coco.com", "some-operation", c)).encode()
                    for c in ("some-content", '{"key": "value", "nested-key": {"sub-key": "value"}}'))
    assert ours == genuine
    parsed = eventlog.parse(genuine)
    assert [e.fields() for e in parsed] == [("coco.com", "some-operation", "some-content"),
                                            ("coco.com", "some-operation",
                                             '{"key": "value", "nested-key": {"sub-key": "value"}}')]
    assert [e.digest.hex()[:16] for e in parsed] == ["2330183d89750c6a", "82b3e7dd09cbe557"]  # trustee's _out.json


def test_the_verifiers_ccel_parser_reads_our_records_and_replays_rtmr3() -> None:
    """Appended to a CC event log as upstream's attester does, the records replay to RTMR3 in
    verifier/ccel.py exactly as the register model extended it."""
    from verifier import ccel

    regs = Registers("sha384", (17,))
    regs.runtime_register = lambda index: 4  # type: ignore[method-assign]
    log = RuntimeLog(regs, "/nonexistent/unused")
    log._end = 0
    log._place = lambda offset, data, truncate=False: written.append(data)  # type: ignore[method-assign]
    log._write_file = lambda path, data: None  # type: ignore[method-assign]
    log._drop_pending = lambda: None  # type: ignore[method-assign]
    written: list[bytes] = []
    for content in ("a", "b b", "{}"):
        log.extend("github.com/confidential-containers", "PullImage", content, 17)
    spec = b"Spec ID Event03\0" + struct.pack("<IBBBBI", 0, 0, 2, 2, 2, 1) + struct.pack("<HH", 0x000C, 48) + b"\0"
    header = struct.pack("<II", 1, 3) + bytes(20) + struct.pack("<I", len(spec)) + spec
    area = header + b"".join(written) + b"\xff" * 64
    assert ccel.rtmrs(area)[3] == regs.values[4]
    assert ccel.rtmrs(area)[:3] == (bytes(48),) * 3


@pytest.mark.parametrize(("domain", "operation", "content", "why"), [
    ("", "op", "c", "Domain"),
    ("do main", "op", "c", "Domain"),
    ("d\u00e9", "op", "c", "Domain"),
    ("d", "", "c", "Operation"),
    ("d", "o\tp", "c", "Operation"),
    ("d", "op", "line\nbreak", "Content"),
    ("d", "op", "nul\0", "Content"),
    ("d", "op", "\u2028", "Content"),
    ("d", "op", "x" * eventlog.MAX_TEXT, "bytes"),
])
def test_malformed_events_are_refused(domain: str, operation: str, content: str, why: str) -> None:
    with pytest.raises(EventRefused, match=why):
        eventlog.event_text(domain, operation, content)


def test_content_may_hold_spaces_and_be_empty() -> None:
    assert eventlog.event_text("d", "o", "a b  c") == b"d o a b  c"
    assert eventlog.event_text("d", "o", "") == b"d o "
    assert eventlog.parse(eventlog.make_entry(1, "sha256", b"d o ").encode())[0].fields() == ("d", "o", "")


def _mutations() -> list[tuple[str, Any]]:
    one = eventlog.make_entry(4, "sha384", b"d o c").encode()
    return [
        ("cut", one[:-1]),
        ("type", one[:4] + (3).to_bytes(4, "little") + one[8:]),
        ("two digests", one[:8] + (2).to_bytes(4, "little") + one[12:]),
        ("algorithm", one[:12] + b"\x04\x00" + one[14:]),
        ("digest", one[:14] + bytes(48) + one[62:]),
        ("tag", one[:66] + b"XXXX" + one[70:]),
        ("size", one[:62] + (99).to_bytes(4, "little") + one[66:]),
        ("inner size", one[:70] + (4).to_bytes(4, "little") + one[74:]),
        ("trailing", one + b"\0"),
    ]


@pytest.mark.parametrize(("what", "blob"), _mutations())
def test_parser_refuses_each_broken_field(what: str, blob: bytes) -> None:
    with pytest.raises(EventLogError):
        eventlog.parse(blob)


def test_parser_refuses_a_record_whose_text_breaks_the_rules() -> None:
    text = b"d o line\nbreak"
    event = eventlog.tagged_event(text)
    blob = (struct.pack("<IIIH", 4, 6, 1, 0x000C) + hashlib.sha384(event).digest() + struct.pack("<I", len(event))
            + event)
    with pytest.raises(EventLogError, match="malformed"):
        eventlog.parse(blob)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 260), st.binary(min_size=1, max_size=8))
def test_parser_only_raises_its_own_error(noise: bytes, pos: int, patch: bytes) -> None:
    for blob in (noise, genuine_records()[:pos] + patch + genuine_records()[pos + len(patch):]):
        try:
            entries = eventlog.parse(blob)
        except EventLogError:
            continue
        assert b"".join(e.encode() for e in entries) == blob  # what parses is exactly what it encodes to


@settings(max_examples=100, deadline=None)
@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20),
       st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20),
       st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Cf", "Co", "Cn")), max_size=60),
       st.sampled_from(["sha256", "sha384"]), st.integers(0, 2**32 - 1))
def test_round_trip(domain: str, operation: str, content: str, algorithm: str, register: int) -> None:
    if not content.isprintable():
        return
    entry = eventlog.make_entry(register, algorithm, eventlog.event_text(domain, operation, content))
    assert eventlog.parse(entry.encode()) == [entry]
    assert entry.fields() == (domain, operation, content)
    assert entry.digest == aael_digest(algorithm, f"{domain} {operation} {content}".encode())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_pending_parser_only_raises_its_own_error(blob: bytes) -> None:
    with pytest.raises(EventLogError):
        eventlog.parse_pending(blob)


def test_pending_round_trip_and_mismatched_value_size() -> None:
    entry = eventlog.make_entry(4, "sha384", b"d o c")
    assert eventlog.parse_pending(eventlog.encode_pending(7, b"\1" * 48, entry)) == (7, b"\1" * 48, entry)
    with pytest.raises(EventLogError):
        eventlog.parse_pending(eventlog.encode_pending(7, b"\1" * 32, entry))


# --- the log --------------------------------------------------------------------------------------------
def test_two_extends_chain_in_the_register_and_the_log(tmp_path: Path) -> None:
    regs = Registers()
    path = tmp_path / "aa" / "eventlog"
    log = RuntimeLog(regs, str(path))
    first = log.extend("example.com", "start", "one", 17)
    second = log.extend("example.com", "start", "two", 17)
    other = log.extend("example.com", "other", "{}", 23)
    d1, d2 = aael_digest("sha384", b"example.com start one"), aael_digest("sha384", b"example.com start two")
    assert (first.digest, second.digest) == (d1, d2)
    expected = hashlib.sha384(hashlib.sha384(bytes(48) + d1).digest() + d2).digest()
    assert regs.values[117] == expected
    assert regs.values[123] == hashlib.sha384(bytes(48) + aael_digest("sha384", b"example.com other {}")).digest()
    on_disk = path.read_bytes()
    assert on_disk == first.encode() + second.encode() + other.encode()
    assert eventlog.replay(eventlog.parse(on_disk), 117, "sha384") == expected
    assert not (tmp_path / "aa" / eventlog.PENDING_NAME).exists()
    # a new agent (restart) appends to the same log
    RuntimeLog(regs, str(path)).extend("example.com", "start", "three", 17)
    assert eventlog.replay(eventlog.parse(path.read_bytes()), 117, "sha384") == regs.values[117]


def test_refusals_change_nothing(tmp_path: Path) -> None:
    regs = Registers()
    log = RuntimeLog(regs, str(tmp_path / "eventlog"))
    with pytest.raises(EventRefused, match="register index 8"):
        log.extend("d", "o", "c", 8)
    with pytest.raises(EventRefused, match="Domain"):
        log.extend("d d", "o", "c", 17)
    assert regs.extends == [] and not (tmp_path / "eventlog").exists()


def test_a_full_log_refuses_before_extending(tmp_path: Path) -> None:
    regs = Registers()
    log = RuntimeLog(regs, str(tmp_path / "eventlog"), max_size=200)
    log.extend("d", "o", "c", 17)
    with pytest.raises(eventlog.EventLogFull):
        log.extend("d", "o", "c" * 200, 17)
    assert len(regs.extends) == 1


def _crash_after_extend(regs: Registers, path: Path) -> bytes:
    """An agent that extended and died before the record reached the log; the register's value."""
    log = RuntimeLog(regs, str(path))
    log.extend("d", "o", "first", 17)

    def die(offset: int, data: bytes, truncate: bool = False) -> None:
        with open(path, "ab") as f:
            f.write(data[:10])  # half a record, then the crash
        raise EventLogError("crash")

    log._place = die  # type: ignore[method-assign]
    with pytest.raises(EventLogError):
        log.extend("d", "o", "second", 17)
    return regs.values[117]


def test_restart_after_a_crash_between_extend_and_log_completes_the_record(tmp_path: Path) -> None:
    regs = Registers()
    path = tmp_path / "eventlog"
    value = _crash_after_extend(regs, path)
    assert (tmp_path / eventlog.PENDING_NAME).exists()
    RuntimeLog(regs, str(path)).extend("d", "o", "third", 17)
    entries = eventlog.parse(path.read_bytes())
    assert [e.fields()[2] for e in entries] == ["first", "second", "third"]
    assert len(regs.extends) == 3  # "second" was not extended twice
    assert eventlog.replay(entries, 117, "sha384") == regs.values[117] != value
    assert not (tmp_path / eventlog.PENDING_NAME).exists()


def test_restart_after_a_crash_before_the_extend_does_the_extend(tmp_path: Path) -> None:
    regs = Registers()
    path = tmp_path / "eventlog"
    log = RuntimeLog(regs, str(path))
    regs.fail_extend = AgentError("the TDCALL failed")
    with pytest.raises(eventlog.RegisterError, match="TDCALL"):
        log.extend("d", "o", "first", 17)
    assert regs.extends == [] and (tmp_path / eventlog.PENDING_NAME).exists()
    with pytest.raises(eventlog.RegisterError):  # still failing: not broken for good
        log.extend("d", "o", "second", 17)
    regs.fail_extend = None
    log.extend("d", "o", "second", 17)  # the same agent recovers first, then goes on
    entries = eventlog.parse(path.read_bytes())
    assert [e.fields()[2] for e in entries] == ["first", "second"]
    assert eventlog.replay(entries, 117, "sha384") == regs.values[117]


def test_a_register_extended_behind_the_logs_back_breaks_it_for_good(tmp_path: Path) -> None:
    regs = Registers()
    path = tmp_path / "eventlog"
    _crash_after_extend(regs, path)
    regs.extend_runtime(117, bytes(48))  # someone else extended it meanwhile
    log = RuntimeLog(regs, str(path))
    for _ in range(2):
        with pytest.raises(EventLogError, match="something else extended it"):
            log.extend("d", "o", "third", 17)
    assert len(regs.extends) == 3


def test_an_unreadable_log_is_not_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "eventlog"
    path.write_bytes(b"garbage")
    regs = Registers()
    with pytest.raises(EventLogError, match="no longer describes"):
        RuntimeLog(regs, str(path)).extend("d", "o", "c", 17)
    assert regs.extends == [] and path.read_bytes() == b"garbage"


def test_a_register_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    regs = Registers()
    regs.read_runtime = lambda register: bytes(32)  # type: ignore[method-assign]
    with pytest.raises(eventlog.RegisterError, match="32 bytes"):
        RuntimeLog(regs, str(tmp_path / "eventlog")).extend("d", "o", "c", 17)
    assert regs.extends == []


# --- the settings ---------------------------------------------------------------------------------------
def _initdata(aa_toml: str | None) -> bytes:
    return render_document({"policy.rego": "package agent_policy\n", **({"aa.toml": aa_toml} if aa_toml else {})})


@pytest.mark.parametrize(("aa_toml", "expected"), [
    (None, eventlog.EventlogConfig()),
    ("[token_configs.kbs]\nurl = 'https://kbs'\n", eventlog.EventlogConfig()),
    ("[eventlog_config]\nenable_eventlog = true\n", eventlog.EventlogConfig(True, None)),
    ("[eventlog_config]\nenable_eventlog = true\ninit_pcr = 23\n", eventlog.EventlogConfig(True, 23)),
    ("[eventlog_config]\ninit_pcr = 17\n", eventlog.EventlogConfig(False, 17)),
])
def test_eventlog_config(aa_toml: str | None, expected: eventlog.EventlogConfig) -> None:
    assert eventlog.eventlog_config(_initdata(aa_toml)) == expected
    assert eventlog.eventlog_config(None) == eventlog.EventlogConfig()


@pytest.mark.parametrize("aa_toml", [
    "[eventlog_config]\nenable_eventlog = 'yes'\n",
    "[eventlog_config]\nenable_event_log = true\n",
    "[eventlog_config]\ninit_pcr = -1\n",
    "[eventlog_config]\ninit_pcr = true\n",
    "eventlog_config = 1\n",
    "not toml [",
])
def test_eventlog_config_refuses_malformed_settings(aa_toml: str) -> None:
    with pytest.raises(EventLogError):
        eventlog.eventlog_config(_initdata(aa_toml))


def test_the_default_path_is_upstreams_and_the_handlers() -> None:
    from agent import guest_components

    assert eventlog.EVENTLOG_PATH == guest_components.EVENTLOG_PATH == "/run/attestation-agent/eventlog"
    assert os.path.dirname(eventlog.EVENTLOG_PATH) == "/run/attestation-agent"
