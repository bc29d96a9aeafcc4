"""TDX event logs and RTMR prediction: a real log replays to its published RTMRs; our event digests are the
ones firmware logs; Authenticode agrees with LIEF on the guest kernel; parsers fail closed."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.built import guest_kernel

from igvm.tdx import eventlog, rtmr
from igvm.tdx.eventlog import EventLogError
from igvm.tdx.rtmr import PeError

DATA = Path(__file__).resolve().parent / "data"
ROOT = Path(__file__).resolve().parent.parent
# RTMR0 and RTMR1 as printed by tdx-tools' replay next to the log (doc/measure_log_direct_boot.txt).
PUBLISHED_RTMR0 = ("b416976c5db5780d4c94f302fc3e030bf9e5d8fdca4eb6714cb2093c67858bbe"
                   "45c805db5979057246309c2e449db28d")
PUBLISHED_RTMR1 = ("2939f8c86719ebdcec9ab3c4bc6d8fdf9b545daa806ac9ab078263d140e9b3ca"
                   "40992ba58eac485f1fc96f7f4555b9ff")


def real_log() -> bytes:
    blob, expected = bytearray(), None
    for line in (DATA / "tdx-direct-boot-ccel.hex").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        addr, _, hexes = line.partition("  ")
        if expected is not None:
            assert int(addr, 16) == expected, "the hex transcription has a gap"
        chunk = bytes.fromhex(hexes)
        blob += chunk
        expected = int(addr, 16) + len(chunk)
    return bytes(blob) + b"\xff" * 256  # the rest of the firmware's log area


def test_real_log_replays_to_the_published_rtmrs() -> None:
    events = eventlog.parse_log(real_log())
    assert len(events) == 19
    rtmrs = eventlog.replay(events)
    assert rtmrs[0].hex() == PUBLISHED_RTMR0
    assert rtmrs[1].hex() == PUBLISHED_RTMR1
    assert rtmrs[2] == rtmrs[3] == bytes(48)  # that guest kernel predates the stub's cmdline/initrd measurement


def test_our_fixed_rtmr1_events_are_the_ones_firmware_logs() -> None:
    """Every RTMR1 event we predict except the kernel's is a constant: the real log carries the same digests,
    in the same order (its extra EV_EFI_VARIABLE_BOOT events come from an older TDVF that logged boot
    variables into RTMR1; newer ones log them into RTMR0)."""
    events = [e for e in eventlog.parse_log(real_log()) if e.rtmr == 1]
    kernel_event = events[0]
    assert kernel_event.type == eventlog.EV_EFI_BOOT_SERVICES_APPLICATION
    logged = [e.digests[eventlog.TPM_ALG_SHA384] for e in events if e.type != 0x80000002][1:]
    assert logged == _fixed_rtmr1()


def _fixed_rtmr1() -> list[bytes]:
    return [hashlib.sha384(x).digest() for x in (rtmr.CALLING_EFI_APPLICATION, rtmr.SEPARATOR,
                                                 rtmr.EXIT_BOOT_SERVICES, rtmr.EXIT_BOOT_SERVICES_OK)]


def test_authenticode_agrees_with_lief_on_the_guest_kernel() -> None:
    lief = pytest.importorskip("lief")
    kernel = guest_kernel()
    if kernel is None:
        pytest.skip("no guest kernel built yet")
    data = kernel.read_bytes()
    want = lief.PE.parse(str(kernel)).authentihash(lief.PE.ALGORITHMS.SHA_384)
    assert rtmr.authenticode_sha384(data) == bytes(want)
    # The certificate table is not hashed: replacing the signature bytes leaves the digest alone.
    nt = struct.unpack_from("<I", data, 0x3C)[0]
    entry = nt + 24 + 112 + 8 * 4
    off, size = struct.unpack_from("<II", data, entry)
    if size:
        changed = bytearray(data)
        changed[off + size - 8 : off + size] = b"\xaa" * 8
        assert rtmr.authenticode_sha384(bytes(changed)) == rtmr.authenticode_sha384(data)
    changed = bytearray(data)
    changed[len(data) // 2] ^= 1  # a code byte is hashed
    assert rtmr.authenticode_sha384(bytes(changed)) != rtmr.authenticode_sha384(data)


def test_prediction_replays_the_documented_sequence() -> None:
    kernel = guest_kernel()
    if kernel is None:
        pytest.skip("no guest kernel built yet")
    k = kernel.read_bytes()
    p = rtmr.predict(k, b"initrd bytes", "console=ttyS0")
    events = [rtmr.authenticode_sha384(k), *_fixed_rtmr1()]
    assert p["rtmr1"] == rtmr.replay_digests(events).hex()
    cmd = "console=ttyS0 initrd=initrd".encode("utf-16-le") + b"\0\0"
    assert p["rtmr2"] == rtmr.replay_digests([hashlib.sha384(cmd).digest(),
                                              hashlib.sha384(b"initrd bytes").digest()]).hex()
    assert rtmr.predict(k, None, "x")["rtmr2"] == rtmr.replay_digests(
        [hashlib.sha384("x".encode("utf-16-le") + b"\0\0").digest()]).hex()


def test_ccel_table() -> None:
    body = bytearray(b"CCEL" + struct.pack("<I", 56) + b"\x01\x00" + b"INTEL " + b"EDK2    " + bytes(4) +
                     b"    " + bytes(4) + bytes([2, 0, 0, 0]) + struct.pack("<QQ", 0x10000, 0x7CBA7000))
    body[9] = (-sum(body)) % 256
    t = eventlog.parse_ccel_table(bytes(body))
    assert (t.cc_type, t.log_length, t.log_address) == (2, 0x10000, 0x7CBA7000)
    body[9] ^= 1
    with pytest.raises(EventLogError, match="checksum"):
        eventlog.parse_ccel_table(bytes(body))
    with pytest.raises(EventLogError, match="signature"):
        eventlog.parse_ccel_table(b"XCEL" + bytes(60))


def test_malformed_logs_name_the_offset() -> None:
    log = real_log()
    with pytest.raises(EventLogError, match="Spec ID"):
        eventlog.parse_log(log[:32] + b"Spec ID Event02\0" + log[48:])
    with pytest.raises(EventLogError, match=r"offset 0x41"):
        eventlog.parse_log(log[:0x41 + 8] + struct.pack("<I", 2) + log[0x41 + 12:])  # two digests declared
    with pytest.raises(EventLogError, match="needs"):
        eventlog.parse_log(log[:0x100])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512), st.integers(min_value=0, max_value=0x923), st.integers(0, 255))
def test_log_parser_fails_closed(junk: bytes, at: int, value: int) -> None:
    log = bytearray(real_log())
    log[at] = value
    for blob in (bytes(log), junk, bytes(log[:at]) + junk):
        try:
            rtmrs = eventlog.replay(eventlog.parse_log(blob))
        except EventLogError as exc:
            assert "offset" in str(exc) or "Spec ID" in str(exc) or "needs" in str(exc), exc
        else:  # what parses replays to four SHA-384 registers
            assert [len(r) for r in rtmrs] == [48] * 4


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_pe_parser_fails_closed(junk: bytes) -> None:
    for blob in (junk, b"MZ" + junk, b"MZ" + bytes(0x3A) + struct.pack("<I", 0x40) + b"PE\0\0" + junk):
        try:
            digest = rtmr.authenticode_sha384(blob)
        except PeError as exc:
            assert str(exc), "a PeError says what is wrong"
        else:
            assert len(digest) == 48


def test_cli_replays_a_log_and_refuses_junk(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    log = tmp_path / "CCEL"
    log.write_bytes(real_log())
    out = subprocess.run([sys.executable, "-m", "cocoon", "measure", "eventlog", str(log), "--json"],
                         capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    assert (doc["rtmr0"], doc["rtmr1"]) == (PUBLISHED_RTMR0, PUBLISHED_RTMR1)
    log.write_bytes(b"\x01\x00\x00\x00" + bytes(60))
    bad = subprocess.run([sys.executable, "-m", "cocoon", "measure", "eventlog", str(log)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "EV_NO_ACTION" in bad.stderr and "Traceback" not in bad.stderr


def test_a_modern_tdvf_log_has_the_event_sequence_we_predict() -> None:
    """A newer TDVF + EFI-stub log (no kernel or initrd published with it, so digests of those cannot be
    compared): RTMR1 carries the kernel then exactly our fixed events of the no-separator variant, and
    RTMR2 the stub's two tagged events in our order, load options then initrd (Linux efistub tag ids
    0x8F3B22ED LOAD_OPTIONS and 0x8F3B22EC INITRD)."""
    import base64
    import json

    doc = json.loads((Path(__file__).parent / "data" / "tdx-ovmf-modern-rtmr-events.json").read_text())
    rtmr1 = [bytes.fromhex(e["digest"]) for e in doc["events"] if e["index"] == 2]
    rtmr2 = [e for e in doc["events"] if e["index"] == 3]
    no_separator = [hashlib.sha384(x).digest() for x in (rtmr.CALLING_EFI_APPLICATION, rtmr.EXIT_BOOT_SERVICES,
                                                         rtmr.EXIT_BOOT_SERVICES_OK)]
    assert rtmr1[1:] == no_separator
    tags = []
    for e in rtmr2:
        raw = base64.b64decode(e["event"])
        tag, size = struct.unpack_from("<II", raw)
        tags.append((tag, raw[8 : 8 + size].rstrip(b"\0").decode()))
    assert tags == [(0x8F3B22ED, "LOADED_IMAGE::LoadOptions"), (0x8F3B22EC, "Linux initrd")]
    assert len(rtmr.rtmr2_events("console=ttyS0", b"initrd")) == len(rtmr2)


def test_reference_values_carry_recorded_rtmr0_candidates(tmp_path: Path) -> None:
    """RTMR0 is not predicted; reference values list it as recorded from trusted launches, here replayed
    from the real log (its RTMR0 is the published one) and given as hex."""
    import json
    import subprocess
    import sys

    log = tmp_path / "CCEL"
    log.write_bytes(real_log())
    other = "ab" * 48
    out = subprocess.run([sys.executable, "-m", "cocoon", "reference-values", "--ovmf", "/usr/share/ovmf/OVMF.fd",
                          "--vcpus", "1", "--vcpu-types", "EPYC-Milan", "--rtmr0-eventlog", str(log),
                          "--rtmr0", other], capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["tdx"]["rtmr"] == {"rtmr0": sorted([PUBLISHED_RTMR0, other])}
    bad = subprocess.run([sys.executable, "-m", "cocoon", "reference-values", "--ovmf", "/usr/share/ovmf/OVMF.fd",
                          "--rtmr0", "abc"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--rtmr0" in bad.stderr and "Traceback" not in bad.stderr
    junk = tmp_path / "junk"
    junk.write_bytes(b"\0" * 64)
    bad = subprocess.run([sys.executable, "-m", "cocoon", "reference-values", "--ovmf", "/usr/share/ovmf/OVMF.fd",
                          "--rtmr0-eventlog", str(junk)], capture_output=True, text=True)
    assert bad.returncode == 2 and "EV_NO_ACTION" in bad.stderr and "Traceback" not in bad.stderr
