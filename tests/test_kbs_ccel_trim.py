"""The guest sends its CC event log without the log area's filler (agent/kbs_client.py ``trim_ccel``).

The genuine logs (trustee's OVMF area, tdx-tools' direct-boot capture) lose exactly their filler and still
replay to their published RTMRs; a td-shim area of a full MiB of zeros, whose last event ends in zero bytes,
becomes evidence the broker's request limit takes. For generated logs (tests/support/ccelgen.py, written
without either parser) the trimmed area is exactly the log; for any bytes at all, the verifier's parser
(verifier/ccel.py) reads the trimmed area as it reads the whole one: the same events, or a refusal."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ccelgen
from support.ccelgen import SHA256, SHA384, log, sha384_records, spec_id
from test_tdx_rtmr import PUBLISHED_RTMR0, PUBLISHED_RTMR1, real_log

from agent import kbs_client
from agent.kbs_client import MAX_CCEL, trim_ccel
from coordinator.kbs.protocol import MAX_BODY
from verifier import ccel
from verifier.ccel import CcelError


def test_the_genuine_ovmf_area_loses_exactly_its_filler() -> None:
    raw, published = ccelgen.trustee_ovmf()
    trimmed = trim_ccel(raw)
    assert len(raw) == 0x10000 and trimmed == raw[:0x848]  # 20 events end at 0x848, 0xFF to the end
    assert list(ccel.rtmrs(trimmed)) == published


def test_the_genuine_direct_boot_log_loses_exactly_its_filler() -> None:
    raw = real_log()
    trimmed = trim_ccel(raw)
    assert trimmed == raw[:-256] and raw[-256:] == b"\xff" * 256
    r = ccel.rtmrs(trimmed)
    assert (r[0].hex(), r[1].hex()) == (PUBLISHED_RTMR0, PUBLISHED_RTMR1)


TD_SHIM = sha384_records([(0, 0x80000001, b"td-shim payload"), (1, 0x8000000A, b"kernel" + bytes(8)),
                          (2, 0x6, b"cmdline\0"), (1, 0x4, b"\0\0\0\0")])  # ends in an EV_SEPARATOR's zeros


def test_a_td_shim_area_of_a_mib_of_zeros_fits_the_brokers_request(tmp_path: Path) -> None:
    body = log(TD_SHIM, head=spec_id(index=0, vendor=b"td-shim"))
    area = log(TD_SHIM, head=spec_id(index=0, vendor=b"td-shim"), area=MAX_CCEL, filler=b"\0")
    (tmp_path / "CCEL").write_bytes(area)
    sent = kbs_client._cc_eventlog(str(tmp_path / "CCEL"))
    assert sent is not None and base64.b64decode(sent) == body  # the separator's four zeros kept
    assert len(sent) < 1024 and len(base64.b64encode(area)) > MAX_BODY  # whole, it would not fit
    assert ccel.rtmrs(base64.b64decode(sent)) == ccel.rtmrs(area) == tuple(ccelgen.replay(TD_SHIM))
    (tmp_path / "CCEL").write_bytes(area + b"\0")  # more than the verifier takes: nothing is sent, as before
    assert kbs_client._cc_eventlog(str(tmp_path / "CCEL")) is None


def test_a_plain_strip_would_cut_into_the_last_event() -> None:
    """Why the walk: the bytes a strip of trailing zeros would keep are not a log the verifier reads."""
    area = log(TD_SHIM, area=4096, filler=b"\0")
    try:
        ccel.parse(area.rstrip(b"\0"))
    except CcelError as exc:
        assert "needs" in str(exc)
    else:
        raise AssertionError("the stripped log parsed")
    assert ccel.parse(trim_ccel(area)).events == ccel.parse(area).events


EVENTS = st.lists(st.tuples(st.integers(0, 4), st.sampled_from([3, 4, 6, 0x80000001]),
                            st.binary(max_size=24) | st.sampled_from([b"\0" * 4, b"\xff" * 4, b"x\0", b"x\xff"])),
                  max_size=12)


@settings(max_examples=150, deadline=None)
@given(EVENTS, st.sampled_from([b"\xff", b"\0"]), st.integers(0, 300), st.booleans(), st.binary(max_size=8))
def test_a_generated_area_is_trimmed_to_exactly_its_log(events: list[tuple[int, int, bytes]], filler: bytes,
                                                        pad: int, two_banks: bool, vendor: bytes) -> None:
    if two_banks:
        records: list[ccelgen.Record] = [
            (i, t, [(SHA256, hashlib.sha256(d).digest()), (SHA384, hashlib.sha384(d).digest())], d)
            for i, t, d in events]
        head = spec_id(((SHA256, 32), (SHA384, 48)), vendor=vendor)
    else:
        records, head = sha384_records(events), spec_id(vendor=vendor)
    body = log(records, head=head)
    assert trim_ccel(body + filler * pad) == body
    assert trim_ccel(body) == body


def _same_reading(raw: bytes) -> None:
    trimmed = trim_ccel(raw)
    assert raw.startswith(trimmed)
    assert len(set(raw[len(trimmed):])) <= 1 and set(raw[len(trimmed):]) <= {0, 0xFF}  # only filler goes
    try:
        whole = ccel.parse(raw)
    except CcelError:
        whole = None
    try:
        cut = ccel.parse(trimmed)
    except CcelError:
        cut = None
    assert (whole is None) == (cut is None), (raw.hex(), trimmed.hex())
    if whole is not None and cut is not None:
        assert cut.events == whole.events and cut.algorithms == whole.algorithms


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=128), st.integers(0, 0x848 + 63), st.integers(0, 255), st.integers(0, 0x848 + 64),
       st.sampled_from([b"", b"\xff" * 40, b"\0" * 40, b"\xff" * 20 + b"\0" * 20]))
def test_the_verifier_reads_a_trimmed_area_as_the_whole_one(junk: bytes, at: int, value: int, cut: int,
                                                            tail: bytes) -> None:
    genuine = ccelgen.trustee_ovmf()[0][: 0x848 + 64]
    mutated = bytearray(genuine)
    mutated[at] = value
    for blob in (junk, bytes(mutated), bytes(mutated) + tail, genuine[:cut] + tail, genuine[:cut] + junk + tail,
                 spec_id() + junk + tail, log(TD_SHIM) + junk + tail):
        _same_reading(blob)


def test_runtime_events_follow_the_firmware_log_and_replay_to_rtmr3(tmp_path: Path) -> None:
    """ExtendRuntimeMeasurement's records (agent/eventlog.py, CC MR index 4 = RTMR3) go after the firmware's
    events, as upstream's attester appends its AAEL, so the verifier replays RTMR3 from the evidence; after an
    area whose end is not found they are left out (behind filler they would read as junk)."""
    from agent import eventlog

    raw, published = ccelgen.trustee_ovmf()
    area = tmp_path / "CCEL"
    area.write_bytes(raw)
    runtime = tmp_path / "eventlog"
    entries = [eventlog.make_entry(4, "sha384", eventlog.event_text("github.com/confidential-containers", op, arg))
               for op, arg in (("PullImage", "docker.io/library/busybox@sha256:" + "ab" * 32), ("Mount", "/data"))]
    runtime.write_bytes(b"".join(e.encode() for e in entries))
    sent = base64.b64decode(kbs_client._cc_eventlog(str(area), str(runtime)) or "")
    assert sent == raw[:0x848] + runtime.read_bytes()
    rtmr = ccel.rtmrs(sent)
    assert list(rtmr[:3]) == published[:3]
    assert rtmr[3] == eventlog.replay(entries, 4, "sha384", initial=published[3]) != published[3]
    # independently: RTMR3' = SHA-384(RTMR3 || digest), digest = SHA-384(the tagged event)
    expect = published[3]
    for e in entries:
        assert e.digest == hashlib.sha384(eventlog.tagged_event(e.text)).digest()
        expect = hashlib.sha384(expect + e.digest).digest()
    assert rtmr[3] == expect
    assert base64.b64decode(kbs_client._cc_eventlog(str(area), str(tmp_path / "absent")) or "") == raw[:0x848]
    junk = raw[:0x848] + b"\x01\x02" + b"\xff" * 64  # an end the walk cannot find: the area as it is, nothing after
    area.write_bytes(junk)
    assert base64.b64decode(kbs_client._cc_eventlog(str(area), str(runtime)) or "") == junk
