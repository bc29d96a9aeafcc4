"""The TDX CC event log parser and replay (verifier/ccel.py) and the verifier's replay claims.

Genuine logs: trustee's OVMF log, rebuilt from its published events byte for byte (its git blob id is
checked), replays to the four RTMRs trustee's own test expects; the tdx-tools direct-boot log replays to its
published RTMR0/1. Generated logs come from tests/support/ccelgen.py, written from the TCG layouts without
the parser, and are replayed with hashlib alone and with igvm/tdx/eventlog.py (the measurement side's own,
separately written reader). Every refusal is the module's CcelError naming what is wrong, fuzzed."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ccelgen
from support.ccelgen import SHA1, SHA256, SHA384, log, sha384_records, spec_id
from support.tdxgen import PckChain, make_pck_chain, make_quote
from test_tdx_rtmr import PUBLISHED_RTMR0, PUBLISHED_RTMR1, real_log

from igvm.tdx import eventlog
from verifier import ccel
from verifier.api import verify
from verifier.ccel import CcelError

TRUSTEE_OVMF_BLOB = "3639a25ac1e719006badca09cc47074ae56b8775"  # git blob id of trustee's CCEL_data_ovmf


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# --- genuine logs -------------------------------------------------------------------------------------------


def test_trustees_ovmf_log_is_rebuilt_exactly_and_replays_to_its_published_rtmrs() -> None:
    raw, published = ccelgen.trustee_ovmf()
    assert _blob_id(raw) == TRUSTEE_OVMF_BLOB  # the transcription and the builder give trustee's very file
    parsed = ccel.parse(raw)
    assert len(parsed.events) == 20 and parsed.algorithms == {SHA384: 48} and parsed.spec_index == 1
    assert parsed.end == 0x848 and raw[parsed.end :] == b"\xff" * (len(raw) - 0x848)
    assert list(ccel.replay(parsed)) == published
    assert published[2] != bytes(48)  # RTMR2 (the EFI stub's command line and initrd) is replayed too


def test_the_tdx_tools_direct_boot_log_replays_to_its_published_rtmrs() -> None:
    r = ccel.rtmrs(real_log())
    assert (r[0].hex(), r[1].hex(), r[2], r[3]) == (PUBLISHED_RTMR0, PUBLISHED_RTMR1, bytes(48), bytes(48))


def test_a_td_shim_style_log_with_zero_filler_and_vendor_info() -> None:
    """td-shim writes the Spec ID event at index 0 with vendor info and leaves the area zero; MRTD events
    (index 0) extend no RTMR."""
    records = sha384_records([(0, 0x80000001, b"mrtd event"), (1, 0x4, b"\0" * 4), (2, 0x8000000A, b"kernel")])
    raw = log(records, head=spec_id(index=0, vendor=b"td-shim"), area=4096, filler=b"\0")
    parsed = ccel.parse(raw)
    assert parsed.vendor_info == b"td-shim" and [e.rtmr for e in parsed.events] == [None, 0, 1]
    assert list(ccel.replay(parsed)) == ccelgen.replay(records)


def test_the_guest_sends_no_more_than_the_parser_takes() -> None:
    from agent.kbs_client import MAX_CCEL

    assert ccel.MAX_LOG == MAX_CCEL


# --- generated logs against two other replays ----------------------------------------------------------------

EVENTS = st.lists(st.tuples(st.integers(0, 4), st.sampled_from([3, 4, 6, 0xD, 0x80000001, 0x80000007]),
                            st.binary(max_size=40)), max_size=24)


@settings(max_examples=150, deadline=None)
@given(EVENTS, st.sampled_from([b"\xff", b"\0"]), st.integers(0, 64), st.booleans())
def test_generated_logs_round_trip_and_replay_as_hashlib_and_igvm_do(
        events: list[tuple[int, int, bytes]], filler: bytes, pad: int, two_banks: bool) -> None:
    if two_banks:  # SHA-256 and SHA-384 banks, in that order: the replay takes the SHA-384 digest
        records: list[ccelgen.Record] = [
            (i, t, [(SHA256, hashlib.sha256(d).digest()), (SHA384, hashlib.sha384(d).digest())], d)
            for i, t, d in events]
        head = spec_id(((SHA256, 32), (SHA384, 48)))
    else:
        records, head = sha384_records(events), spec_id()
    body = log(records, head=head)
    raw = body + filler * pad
    parsed = ccel.parse(raw)
    assert [(e.mr_index, e.type, e.data) for e in parsed.events] == [(i, t, d) for i, t, d in events]
    assert [e.digests for e in parsed.events] == [dict(r[2]) for r in records]
    assert list(ccel.replay(parsed)) == ccelgen.replay(records) == eventlog.replay(eventlog.parse_log(raw))
    assert parsed.end <= len(body)  # where the filler begins (an event's own trailing filler bytes aside)


def test_no_action_events_extend_nothing() -> None:
    """EV_NO_ACTION is informational (TCG PFP): trustee's GKE log has such events and its published RTMRs
    are what the other events alone give."""
    plain = sha384_records([(1, 0x4, b"a"), (2, 0x4, b"b")])
    with_info = [*plain[:1], (1, 3, [(SHA384, bytes(48))], b"SP800-155 Event3"), *plain[1:]]
    assert ccel.rtmrs(log(with_info)) == ccel.rtmrs(log(plain))


# --- refusals --------------------------------------------------------------------------------------------------

ONE = sha384_records([(1, 0x4, b"\0\0\0\0")])
GOOD = log(ONE)
REC = len(spec_id())  # where the first record begins in GOOD


def _set(raw: bytes, at: int, value: bytes) -> bytes:
    return raw[:at] + value + raw[at + len(value) :]


REFUSALS: list[tuple[str, Callable[[], bytes], str]] = [
    ("first event type", lambda: _set(GOOD, 4, struct.pack("<I", 4)), "not EV_NO_ACTION"),
    ("Spec ID index", lambda: log(ONE, head=spec_id(index=2)), "index 2, not 0 or 1"),
    ("SHA-1 digest not zero", lambda: _set(GOOD, 8, b"\x01"), "SHA-1 digest"),
    ("signature", lambda: log(ONE, head=spec_id(signature=b"Spec ID Event02\0")), "'Spec ID Event03'"),
    ("short Spec ID", lambda: _set(GOOD, 28, struct.pack("<I", 20)), "'Spec ID Event03'"),
    ("spec version", lambda: log(ONE, head=spec_id(major=1)), "major 1"),
    ("uintnSize", lambda: log(ONE, head=spec_id(uintn=3)), "uintnSize 3"),
    ("no algorithms", lambda: log([], head=spec_id(())), "lists 0 algorithms"),
    ("absurd algorithm count", lambda: _set(GOOD, 32 + 24, struct.pack("<I", 0xFFFFFFFF)), "lists 4294967295"),
    ("more algorithms than fit", lambda: _set(GOOD, 32 + 24, struct.pack("<I", 3)), "needs 4 bytes"),
    ("unknown algorithm", lambda: log([], head=spec_id(((0x0099, 48),))), "unknown algorithm 0x0099"),
    ("wrong digest size", lambda: log([], head=spec_id(((SHA384, 32),))), "SHA-384 digests are 48 bytes"),
    ("algorithm listed twice", lambda: log([], head=spec_id(((SHA384, 48), (SHA384, 48)))), "SHA-384 twice"),
    ("Spec ID size vs contents", lambda: log([], head=_set(spec_id(), 28, struct.pack("<I", 34)) + b"\x07"),
     "its contents"),
    ("vendor info cut short", lambda: spec_id(vendor=b"td-shim")[:-2], "needs"),
    ("event index", lambda: log([(5, 4, [(SHA384, bytes(48))], b"")]), "index 5"),
    ("event digest count", lambda: log([(1, 4, [(SHA384, bytes(48)), (SHA384, bytes(48))], b"")]),
     "carries 2 digests"),
    ("absurd digest count", lambda: _set(GOOD, REC + 8, struct.pack("<I", 0xFFFFFFFF)), "carries 4294967295"),
    ("event algorithm not listed", lambda: log([(1, 4, [(SHA256, bytes(32))], b"")]),
     "0x000b at offset"),
    ("event algorithm twice", lambda: log([(1, 4, [(SHA384, bytes(48)), (SHA384, bytes(48))], b"")],
                                         head=spec_id(((SHA1, 20), (SHA384, 48)))), "SHA-384 twice"),
    ("absurd event size", lambda: _set(GOOD, REC + 12 + 2 + 48, struct.pack("<I", 0xFFFFFFFF)), "needs 4294967295"),
    ("truncated digest", lambda: GOOD[: REC + 12 + 2 + 20], "a digest at offset"),
    ("truncated header", lambda: GOOD + b"\x01\x02\x03", "needs 12 bytes, 3 left"),
    ("mixed filler", lambda: GOOD + b"\xff" * 16 + b"\0" * 16,
     f"offset {len(GOOD):#x} in bytes that are neither an event nor filler: 0xff up to offset "
     f"{len(GOOD) + 16:#x}, then 0x00"),
    ("zeros then 0xFF", lambda: GOOD + b"\0" * 16 + b"\xff" * 16, "neither an event nor filler: 0x00 up to"),
    ("mixed filler, short", lambda: GOOD + b"\xff" * 8 + b"\0" * 2, "neither an event nor filler: 0xff up to"),
    ("mixed within a header", lambda: GOOD + b"\0\0" + b"\xff" * 30, "neither an event nor filler: 0x00 up to"),
    ("junk after the filler", lambda: GOOD + b"\xff" * 16 + b"junk" + b"\xff" * 16,
     f"neither an event nor filler: 0xff up to offset {len(GOOD) + 16:#x}, then 0x6a"),
    ("junk after zero filler", lambda: GOOD + b"\0" * 64 + b"\x07", "neither an event nor filler: 0x00 up to"),
    ("junk right after the log", lambda: GOOD + b"\x07" * 16, "index 117901063"),  # an event as far as anyone can tell
    ("too large", lambda: GOOD + b"\xff" * ccel.MAX_LOG, "more than 1048576"),
    ("empty", lambda: b"", "needs 32 bytes, 0 left"),
]


@pytest.mark.parametrize(("case", "make", "words"), REFUSALS, ids=[c for c, _, _ in REFUSALS])
def test_malformed_logs_are_refused_with_what_is_wrong(case: str, make: Callable[[], bytes], words: str) -> None:
    with pytest.raises(CcelError, match=r"^CC event log: ") as err:
        ccel.parse(make())
    assert words in str(err.value), (case, str(err.value))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"\xff", b"\0"]), max_size=40),
       st.sampled_from([GOOD, ccelgen.trustee_ovmf()[0][:0x848]]))
def test_a_tail_of_filler_bytes_is_filler_or_said_to_be_neither(tail: list[bytes], body: bytes) -> None:
    """After the last event, 0xFF and 0x00 bytes are filler when they are one byte to the end, and otherwise
    refused as neither an event nor filler, at the offset where the log ends."""
    raw = body + b"".join(tail)
    if len(set(tail)) <= 1:
        assert ccel.parse(raw).events == ccel.parse(body).events
        return
    with pytest.raises(CcelError) as err:
        ccel.parse(raw)
    assert f"the log ends at offset {len(body):#x} in bytes that are neither an event nor filler" in str(err.value)


def test_a_log_without_a_sha384_bank_parses_but_does_not_replay() -> None:
    records = [(1, 4, [(SHA256, bytes(32))], b"")]
    parsed = ccel.parse(log(records, head=spec_id(((SHA256, 32),))))
    with pytest.raises(CcelError, match="no SHA-384 digests \\(its algorithms: SHA-256\\)"):
        ccel.replay(parsed)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=256), st.integers(0, 0x848 + 63), st.integers(0, 255), st.integers(0, 0x848 + 64))
def test_the_parser_fails_closed(junk: bytes, at: int, value: int, cut: int) -> None:
    genuine = ccelgen.trustee_ovmf()[0][: 0x848 + 64]
    mutated = bytearray(genuine)
    mutated[at] = value
    for blob in (junk, bytes(mutated), genuine[:cut], genuine[:cut] + junk, spec_id() + junk):
        try:
            parsed = ccel.parse(blob)
        except CcelError as exc:
            assert str(exc).startswith("CC event log: "), exc
            continue
        try:
            replayed = ccel.replay(parsed)
        except CcelError as exc:
            assert "SHA-384" in str(exc)
        else:
            assert [len(r) for r in replayed] == [48] * 4


# --- the verifier's claims -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pck() -> PckChain:
    return make_pck_chain()


MRTD = b"\x11" * 48
REFS = {"tdx": {"mrtd": {"test": MRTD.hex()}}}


def _verify(pck: PckChain, rtmrs: list[bytes], cc_eventlog: bytes | None) -> dict[str, tuple[str, str]]:
    quote = make_quote(pck, mrtd=MRTD, **{f"rtmr{i}": r for i, r in enumerate(rtmrs)})
    result = verify("tdx-quote", quote, b"", REFS, tdx_root_pem=pck.root_pem, cc_eventlog=cc_eventlog)
    return {c.name: (c.status, c.detail) for c in result.claims if c.name.startswith("tdx.ccel")}


def test_a_log_that_replays_passes_each_rtmr(pck: PckChain) -> None:
    raw, published = ccelgen.trustee_ovmf()
    claims = _verify(pck, published, raw)
    assert {k: v[0] for k, v in claims.items()} == {"tdx.ccel": "pass", **{f"tdx.ccel.rtmr{i}": "pass"
                                                                             for i in range(4)}}
    assert "20 events" in claims["tdx.ccel"][1]


def test_a_tampered_digest_fails_the_rtmr_it_extends(pck: PckChain) -> None:
    raw, published = ccelgen.trustee_ovmf()
    at = raw.index(bytes.fromhex("4230f84885a6f3f3"))  # the first RTMR2 event's digest
    tampered = raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1 :]
    claims = _verify(pck, published, tampered)
    failed = {k for k, v in claims.items() if v[0] == "fail"}
    assert failed == {"tdx.ccel.rtmr2"} and claims["tdx.ccel.rtmr2"][1] == "RTMR2 does not replay from the CC " \
                                                                            "event log"


def test_no_log_skips_and_a_malformed_one_fails(pck: PckChain) -> None:
    published = ccelgen.trustee_ovmf()[1]
    assert _verify(pck, published, None) == {"tdx.ccel": ("skip", "no CC event log given: the RTMRs were not "
                                                                  "replayed")}
    bad = _verify(pck, published, b"\x01\x00\x00\x00" + bytes(60))
    assert list(bad) == ["tdx.ccel"] and bad["tdx.ccel"][0] == "fail" and "EV_NO_ACTION" in bad["tdx.ccel"][1]
