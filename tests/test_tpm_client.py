"""The guest's TPM 2.0 client (agent/tee/tpm.py) and the az-snp-vtpm provider's parsers, without a TPM.

Every parser meets arbitrary bytes (hypothesis) and must answer or raise its own error; the quote parser is
compared with the verifier's independent one (verifier/tpm_quote.py) on Trustee's genuine Azure quotes and
on every mutation of them. Scripted transports drive the client through the answers a TPM could give:
warnings to retry, a PCR bank that moves between reads, PCRs nobody asked for. The real TPM is in
tests/test_az_vtpm.py (swtpm).
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agent.tee.az_vtpm as az_vtpm
import agent.tee.tpm as tpm
from agent.errors import ReportError, TeeError
from agent.tee.base import Evidence
from verifier import az_snp_vtpm, tpm_quote

DATA = Path(__file__).parent / "data" / "az-snp-vtpm"
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def genuine_messages() -> list[bytes]:
    return [az_snp_vtpm.parse(az_snp_vtpm.loads((DATA / n).read_bytes())).message
            for n in ("evidence-v1.json", "evidence-v2.json", "evidence-genoa.json")]


def response(params: bytes = b"", *, handles: tuple[int, ...] = (), sessions: int = 0, rc: int = 0) -> bytes:
    """A TPM response as Part 1 §18 frames it (an error is the bare header)."""
    if rc:
        return struct.pack(">HII", tpm.TPM_ST_NO_SESSIONS, 10, rc)
    body = b"".join(struct.pack(">I", h) for h in handles)
    if sessions:
        body += struct.pack(">I", len(params)) + params + struct.pack(">HBH", 0, 1, 0) * sessions
    else:
        body += params
    tag = tpm.TPM_ST_SESSIONS if sessions else tpm.TPM_ST_NO_SESSIONS
    return struct.pack(">HII", tag, 10 + len(body), 0) + body


class Scripted:
    """A transport that answers from a list (or a function of the command) and records the commands."""

    def __init__(self, answers: list[bytes] | Callable[[bytes], bytes]) -> None:
        self.answers = answers
        self.commands: list[bytes] = []

    def transact(self, command: bytes) -> bytes:
        self.commands.append(command)
        return self.answers(command) if callable(self.answers) else self.answers.pop(0)

    def close(self) -> None:
        pass


# --- response codes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rc", "text"), [
    (0x18B, "TPM_RC_HANDLE (handle 1, 0x18b)"),  # NV_ReadPublic of an index nobody defined (swtpm's answer)
    (0x1C4, "TPM_RC_VALUE (parameter 1, 0x1c4)"),
    (0x98E, "TPM_RC_AUTH_FAIL (session 1, 0x98e)"),
    (0x143, "TPM_RC_COMMAND_CODE (0x143)"),
    (0x14A, "TPM_RC_NV_UNINITIALIZED (0x14a)"),
    (0x921, "TPM_RC_LOCKOUT (0x921)"),
    (0x922, "TPM_RC_RETRY (0x922)"),
    (0x0A5, "TPM_RC_BINDING (handle 0, 0xa5)"),
])
def test_response_codes_are_named(rc: int, text: str) -> None:
    assert tpm.rc_text(rc) == text
    with pytest.raises(tpm.TpmError, match=r"TPM_RC_") as exc:
        tpm.parse_response(response(rc=rc), "X")
    assert exc.value.rc == rc


def test_format_one_codes_compare_without_their_position() -> None:
    assert tpm.rc_code(0x18B) == tpm.rc_code(0x28B) == tpm.RC_HANDLE
    assert tpm.rc_code(0x14A) == 0x14A


@given(st.integers(0, 2**32 - 1))
def test_every_response_code_has_a_text(rc: int) -> None:
    assert isinstance(tpm.rc_text(rc), str)


# --- framing ----------------------------------------------------------------------------------------------


def test_a_response_must_be_the_shape_its_command_answers() -> None:
    ok = response(b"\x00\x02ab", sessions=1)
    assert tpm.parse_response(ok, "X", sessions=1) == ((), b"\x00\x02ab")
    with pytest.raises(tpm.TpmError, match="tag"):
        tpm.parse_response(ok, "X")  # sessions answered to a command without any
    longer = ok[:2] + struct.pack(">I", len(ok) + 1) + ok[6:] + b"\0"
    with pytest.raises(tpm.TpmError, match="after its last field"):
        tpm.parse_response(longer, "X", sessions=1)  # a byte after the session's authorization
    with pytest.raises(tpm.TpmError, match="says it is"):
        tpm.parse_response(ok[:-1], "X", sessions=1)
    with pytest.raises(tpm.TpmError, match="with a body"):
        tpm.parse_response(struct.pack(">HIIB", tpm.TPM_ST_NO_SESSIONS, 11, 0x101, 0), "X")
    assert tpm.parse_response(response(b"", handles=(0x80000001,)), "X", handles=1) == ((0x80000001,), b"")


@FUZZ
@given(st.binary(max_size=64), st.integers(0, 2), st.integers(0, 2))
def test_random_responses_parse_or_raise_tpm_error(raw: bytes, handles: int, sessions: int) -> None:
    try:
        out, params = tpm.parse_response(raw, "X", handles, sessions)
    except tpm.TpmError:
        return
    # accepted only as a whole, well-framed success: its size field is its length, the handles asked for
    assert struct.unpack(">I", raw[2:6])[0] == len(raw) and struct.unpack(">I", raw[6:10])[0] == 0
    assert len(out) == handles and params in raw and len(params) <= len(raw) - 10 - 4 * handles


@FUZZ
@given(st.sampled_from([tpm.TPM_ST_NO_SESSIONS, tpm.TPM_ST_SESSIONS]), st.binary(max_size=80),
       st.integers(0, 2), st.integers(0, 2))
def test_well_framed_random_bodies_parse_or_raise_tpm_error(tag: int, body: bytes, handles: int,
                                                             sessions: int) -> None:
    raw = struct.pack(">HII", tag, 10 + len(body), 0) + body
    try:
        out, params = tpm.parse_response(raw, "X", handles, sessions)
    except tpm.TpmError:
        return
    assert len(out) == handles and len(params) <= len(body)


@FUZZ
@given(st.binary(max_size=200))
def test_parameter_parsers_answer_or_raise_tpm_error(data: bytes) -> None:
    """Whatever a parser accepts, what it hands back was read out of the bytes given (no value invented)."""
    with contextlib.suppress(tpm.TpmError):
        public, name = tpm.parse_nv_public(data)
        assert name in data and public.auth_policy in data and public.marshal() in data
    with contextlib.suppress(tpm.TpmError):
        attest = tpm.parse_attest(data)
        assert attest.extra_data in data and len(attest.extra_data) <= len(data)
    with contextlib.suppress(tpm.TpmError):
        message, signature = tpm.parse_quote(data)
        assert message in data and signature in data
    with contextlib.suppress(tpm.TpmError):
        counter, _selection, values = tpm.parse_pcr_read(data)
        assert 0 <= counter < 1 << 32 and all(v in data for v in values)
    with contextlib.suppress(tpm.TpmError):
        value = tpm.parse_property(data, tpm.TPM_PT_NV_BUFFER_MAX)
        assert 0 <= value < 1 << 32 and value.to_bytes(4, "big") in data


def test_nv_public_round_trips() -> None:
    public = tpm.NvPublic(0x01400002, tpm.TPM_ALG_SHA256, tpm.NV_OWNERREAD | tpm.NV_OWNERWRITE, b"p" * 32, 64)
    assert tpm.parse_nv_public(public.marshal() + tpm.tpm2b(b"name")) == (public, b"name")


# --- the quote parser, against the verifier's -------------------------------------------------------------


def test_genuine_azure_quotes_read_alike_by_both_parsers() -> None:
    for message in genuine_messages():
        mine, theirs = tpm.parse_attest(message), tpm_quote.parse(message)
        assert (mine.extra_data, mine.selection, mine.pcr_digest) == \
            (theirs.extra_data, theirs.selection, theirs.pcr_digest)
        assert mine.selection == ((tpm.TPM_ALG_SHA256, tuple(range(24))),)


@FUZZ
@given(st.sampled_from(range(3)), st.data())
def test_mutated_quotes_are_taken_or_refused_alike(which: int, data: st.DataObject) -> None:
    """Differential: a byte changed, cut or added; the guest's parser and the verifier's agree."""
    message = bytearray(genuine_messages()[which])
    how = data.draw(st.sampled_from(["flip", "cut", "add"]))
    at = data.draw(st.integers(0, len(message) - 1))
    if how == "flip":
        message[at] ^= data.draw(st.integers(1, 255))
    elif how == "cut":
        del message[at:]
    else:
        message[at:at] = data.draw(st.binary(min_size=1, max_size=4))
    try:
        mine: Any = tpm.parse_attest(bytes(message))
    except tpm.TpmError:
        mine = None
    try:
        theirs: Any = tpm_quote.parse(bytes(message))
    except ReportError:
        theirs = None
    assert (mine is None) == (theirs is None)
    if mine is not None:
        assert (mine.extra_data, mine.selection, mine.pcr_digest) == \
            (theirs.extra_data, theirs.selection, theirs.pcr_digest)


# --- the client over scripted TPMs ------------------------------------------------------------------------


def test_retry_warnings_are_retried_a_bounded_number_of_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.tee.tpm.time.sleep", lambda s: None)
    ok = response(struct.pack(">BIIII", 0, tpm.TPM_CAP_TPM_PROPERTIES, 1, tpm.TPM_PT_NV_BUFFER_MAX, 1024))
    t = Scripted([response(rc=0x922), response(rc=0x908), ok])
    assert tpm.Tpm(t).nv_buffer_max() == 1024 and len(t.commands) == 3
    t = Scripted(lambda c: response(rc=0x922))
    with pytest.raises(tpm.TpmError, match="TPM_RC_RETRY"):
        tpm.Tpm(t).nv_buffer_max()
    assert len(t.commands) == tpm.RETRIES
    t = Scripted([response(rc=0x18B)])  # an error is not retried
    with pytest.raises(tpm.TpmError, match="TPM_RC_HANDLE"):
        tpm.Tpm(t).nv_read_public(1)
    assert len(t.commands) == 1


def pcr_answer(counter: int, indices: list[int], bank: int = tpm.TPM_ALG_SHA256, size: int = 32) -> bytes:
    values = b"".join(tpm.tpm2b(bytes([i]) * size) for i in indices)
    return response(struct.pack(">I", counter) + tpm.pcr_selection(indices, bank) +
                    struct.pack(">I", len(indices)) + values)


def test_pcr_read_asks_again_for_the_rest() -> None:
    t = Scripted([pcr_answer(7, list(range(8))), pcr_answer(7, list(range(8, 16))), pcr_answer(7, list(range(16, 24)))])
    counter, values = tpm.Tpm(t).pcr_read()
    assert counter == 7 and values == [bytes([i]) * 32 for i in range(24)] and len(t.commands) == 3


@pytest.mark.parametrize(("answers", "match"), [
    ([pcr_answer(7, list(range(8))), pcr_answer(8, list(range(8, 16)))], "changed while they were read"),
    ([pcr_answer(7, [])], "no SHA-256 bank"),
    ([pcr_answer(7, [0, 1], bank=0x000C)], "no SHA-256 bank"),
    ([pcr_answer(7, [0, 1], size=48)], "is 48 bytes"),
])
def test_pcr_read_refuses_answers_that_do_not_fit(answers: list[bytes], match: str) -> None:
    with pytest.raises(tpm.TpmError, match=match) as exc:
        tpm.Tpm(Scripted(answers)).pcr_read()
    assert isinstance(exc.value, tpm.PcrsChanged) == ("changed" in match)  # the provider quotes again then


def test_a_quote_signed_otherwise_than_rsassa_sha256_is_refused() -> None:
    attest = genuine_messages()[0]
    for sig, match in ((struct.pack(">HH", 0x0018, tpm.TPM_ALG_SHA256), "not RSASSA"),  # ECDSA
                       (struct.pack(">HH", tpm.TPM_ALG_RSASSA, 0x000C), "not SHA-256")):
        with pytest.raises(tpm.TpmError, match=match):
            tpm.parse_quote(tpm.tpm2b(attest) + sig + tpm.tpm2b(b"s" * 256))
    ok = tpm.tpm2b(attest) + struct.pack(">HH", tpm.TPM_ALG_RSASSA, tpm.TPM_ALG_SHA256) + tpm.tpm2b(b"s" * 256)
    assert tpm.parse_quote(ok) == (attest, b"s" * 256)


# --- transports -------------------------------------------------------------------------------------------


@pytest.fixture
def unix_server(tmp_path: Path) -> Iterator[Callable[[bytes], str]]:
    """A one-shot unix server that answers any command with the given bytes, then closes."""
    servers: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def serve(answer: bytes) -> str:
        path = str(tmp_path / f"s{len(servers)}.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(1)
        srv.settimeout(10)
        servers.append(srv)

        def run() -> None:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(answer)

        threads.append(threading.Thread(target=run, daemon=True))
        threads[-1].start()
        return path

    yield serve
    for srv in servers:
        srv.close()
    for th in threads:
        th.join(timeout=10)


@pytest.mark.parametrize(("answer", "match"), [
    (struct.pack(">HII", 0x8001, 5000, 0), "5000-byte response"),
    (struct.pack(">HII", 0x8001, 4, 0), "4-byte response"),
    (struct.pack(">HII", 0x8001, 20, 0) + b"short", "mid-response"),
    (b"\x80", "mid-response"),
])
def test_the_socket_transport_refuses_bad_framing(unix_server: Callable[[bytes], str], answer: bytes,
                                                  match: str) -> None:
    t = tpm.SocketTransport(unix_server(answer))
    try:
        with pytest.raises(tpm.TpmError, match=match):
            t.transact(tpm.build_command(tpm.CC_GET_CAPABILITY))
    finally:
        t.close()


def test_missing_tpms_are_tpm_errors(tmp_path: Path) -> None:
    with pytest.raises(tpm.TpmError, match="cannot open"):
        tpm.DeviceTransport(str(tmp_path / "tpmrm0"))
    with pytest.raises(tpm.TpmError, match="cannot reach"):
        tpm.SocketTransport(str(tmp_path / "none.sock"))


# --- provider parsers and the VCEK ------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=1400))
def test_hcl_user_data_answers_or_raises_tee_error(blob: bytes) -> None:
    try:
        got = az_vtpm.hcl_user_data(b"HCLA" + blob)
    except TeeError:
        return
    assert isinstance(got, bytes) and 2 * len(got) <= len(blob)  # hex text inside the report's runtime data


def test_hcl_user_data_reads_genuine_reports() -> None:
    for name, nonce in (("evidence-v2.json", "982f5c6e"), ("evidence-v1.json", "00000000")):
        blob = az_snp_vtpm.parse(az_snp_vtpm.loads((DATA / name).read_bytes())).hcl_report
        assert az_vtpm.hcl_user_data(blob).hex().startswith(nonce) and len(az_vtpm.hcl_user_data(blob)) == 64


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)


@FUZZ
@given(st.binary(max_size=100) | JSON.map(lambda v: json.dumps(v).encode()) |
       st.text(max_size=40).map(lambda m: json.dumps({"tpm_quote": {"message": m}}).encode()))
def test_report_data_of_answers_or_raises_tee_error(report: bytes) -> None:
    provider = az_vtpm.AzVtpmProvider(lambda: Scripted([]))
    try:
        got = provider.report_data_of(Evidence(tee="az-snp-vtpm", kind="az-snp-vtpm", report=report))
    except TeeError:
        return
    assert len(got) == 64 and got.rstrip(b"\0").hex() in report.decode(errors="replace").lower()


@pytest.mark.parametrize(("report_data", "quoted"), [
    (b"\x01" * 48 + bytes(16), b"\x01" * 48),
    (b"\x01" * 64, b"\x01" * 64),
    (bytes(64), bytes(48)),
    (b"\x01" * 48 + bytes(15) + b"\x01", b"\x01" * 48 + bytes(15) + b"\x01"),
])
def test_quote_data_keeps_the_64_bytes_recoverable(report_data: bytes, quoted: bytes) -> None:
    assert az_vtpm.quote_data(report_data) == quoted and quoted.ljust(64, b"\0") == report_data


class _Imds(http.server.BaseHTTPRequestHandler):
    answer: ClassVar[tuple[int, bytes]] = (200, b"")
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Metadata"))
        status, body = self.answer
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def imds() -> Iterator[tuple[str, type[_Imds]]]:
    handler = type("Handler", (_Imds,), {"seen": []})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metadata/THIM/amd/certification", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_vcek_comes_from_imds_as_der(imds: tuple[str, type[_Imds]], sim_chain: Any) -> None:
    url, handler = imds
    pem = sim_chain.vcek_pem.decode()
    handler.answer = (200, json.dumps({"vcekCert": pem, "certificateChain": "", "tcbm": "x"}).encode())
    der = az_vtpm.imds_vcek(url)
    assert der == base64.b64decode("".join(pem.strip().splitlines()[1:-1])) and handler.seen == ["true"]


@pytest.mark.parametrize(("answer", "match"), [
    ((404, b"{}"), "HTTP 404"),
    ((200, b"not json"), "not JSON"),
    ((200, b'{"vcekCert": "a", "vcekCert": "b"}'), "duplicate"),
    ((200, b'{"certificateChain": ""}'), "no vcekCert"),
    ((200, b'{"vcekCert": "-----BEGIN CERTIFICATE-----\\n!!\\n-----END CERTIFICATE-----"}'), "bad base64"),
    ((200, b'{"vcekCert": "junk"}'), "not a PEM"),
])
def test_bad_imds_answers_are_tee_errors(imds: tuple[str, type[_Imds]], answer: tuple[int, bytes],
                                         match: str) -> None:
    url, handler = imds
    handler.answer = answer
    with pytest.raises(TeeError, match=match):
        az_vtpm.imds_vcek(url)
