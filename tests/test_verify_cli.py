"""``cocoon verify`` inputs: evidence type by header, bad input one line and exit 2, --trust-sim adds, --at/--crl."""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import ReportError
from agent.tee import open_provider
from cocoon.cli import main
from launcher.simca import make_config
from verifier import api
from verifier.api import evidence_kind, verify

DATA = Path(__file__).parent / "data"
GENOA_REPORT = bytes.fromhex((DATA / "snp-genoa-azure.report.hex").read_text())
GENOA_VCEK = (DATA / "snp-genoa-azure.vcek.pem").read_bytes()
GENOA_REFS = {"snp": {"guest_policy": "0x30000", "measurements": [{"measurement": GENOA_REPORT[0x90:0xC0].hex()}]}}
GCP_QUOTE = base64.b64decode((DATA / "tdx-v4-gcp.quote.b64").read_text().strip())


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["verify", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "report.bin").write_bytes(GENOA_REPORT)
    (tmp_path / "vcek.pem").write_bytes(GENOA_VCEK)
    (tmp_path / "refs.json").write_text(json.dumps(GENOA_REFS))
    return {name: str(tmp_path / name) for name in ("report.bin", "vcek.pem", "refs.json")}


# --- 10: the evidence type from the format's own header -------------------------------------------------
def test_evidence_type_comes_from_the_header_not_the_size() -> None:
    assert evidence_kind(GENOA_REPORT) == "snp" and evidence_kind(GCP_QUOTE) == "tdx-quote"
    for cut in (GENOA_REPORT[:-1], GENOA_REPORT + b"\0", GENOA_REPORT[:0x2A0], GENOA_REPORT[:4]):
        assert evidence_kind(cut) == "snp"  # short or long, an SNP report is still one
    assert evidence_kind(GCP_QUOTE[:0x4A0]) == "tdx-quote"  # a quote cut to an SNP report's size is still a quote
    for junk in (b"", b"\x02\0", bytes(0x4A0), b"\xff" * 0x4A0, b"%PDF-1.7" + bytes(2000)):
        with pytest.raises(ReportError, match="that are neither an SNP ATTESTATION_REPORT"):
            evidence_kind(junk)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64) | st.tuples(st.sampled_from([GENOA_REPORT, GCP_QUOTE]), st.integers(0, 6000),
                                        st.binary(max_size=8)).map(lambda t: t[0][: t[1]] + t[2]))
def test_any_bytes_are_one_of_the_two_kinds_or_the_modules_error(data: bytes) -> None:
    """Prefixes of genuine evidence keep their kind at any length; whatever is routed, the parsers refuse as a claim."""
    try:
        kind = evidence_kind(data)
    except ReportError:
        assert data[:4] != GENOA_REPORT[:4] and (data[:4] != GCP_QUOTE[:4] or len(data) < 8)
        return
    if data[:4] == GCP_QUOTE[:4] and len(data) >= 8:
        assert kind == "tdx-quote"
    elif data[:4] == GENOA_REPORT[:4]:
        assert kind == "snp"
    result = verify(kind, data, b"", GENOA_REFS, vcek_pem=GENOA_VCEK)
    assert result.ok == (data == GENOA_REPORT)


def test_a_short_or_long_snp_report_reaches_the_snp_parser(files: dict[str, str], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Before: 1183 or 1185 bytes were taken for a TDX quote ("TDX quote version 2 is not supported")."""
    for name, blob in (("short", GENOA_REPORT[:-1]), ("long", GENOA_REPORT + b"\0")):
        path = tmp_path / f"{name}.bin"
        path.write_bytes(blob)
        code, out, err = run(capsys, "--report", str(path), "--vcek", files["vcek.pem"], "--reference-values",
                             files["refs.json"], "--json")
        claims = json.loads(out)["submods"]["snp"]["claims"]
        assert code == 1 and claims["snp.report.format"]["status"] == "fail", (out, err)
        assert "TDX" not in out and str(len(blob)) in claims["snp.report.format"]["detail"]


def test_raw_tdx_quote_and_explicit_type(files: dict[str, str], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from agent.tee import tdx_report

    quote = tmp_path / "quote.bin"
    quote.write_bytes(GCP_QUOTE)
    mrtd = tdx_report.parse_quote(tdx_report.trim_padding(GCP_QUOTE)).body.mrtd.hex()
    refs = tmp_path / "tdx.json"
    refs.write_text(json.dumps({"tdx": {"mrtd": {"single_pass": mrtd}}}))
    assert run(capsys, "--report", str(quote), "--reference-values", str(refs))[0] == 0
    code, out, _ = run(capsys, "--report", str(quote), "--type", "snp", "--reference-values", str(refs), "--json")
    assert code == 1 and json.loads(out)["submods"]["snp"]["claims"]["snp.report.format"]["status"] == "fail"
    assert run(capsys, "--report", files["report.bin"], "--type", "snp", "--vcek", files["vcek.pem"],
               "--reference-values", files["refs.json"])[0] == 0
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\xff" * 0x4A0)
    code, _, err = run(capsys, "--report", str(junk), "--reference-values", files["refs.json"])
    assert code == 2 and "neither an SNP ATTESTATION_REPORT" in err and "--type" in err


# --- 11: malformed input is one line and exit 2 ----------------------------------------------------------
BAD_REFS = [
    ("[]", "expected a reference-values object"),
    ('{"snp": "x"}', 'snp: expected an object, got "x"'),
    ('{"snp": {"measurements": [1]}}', 'snp.measurements[0]: expected an object with "measurement" (96 hex digits)'),
    ('{"snp": {"guest_policy": "0xzz"}}', "snp.guest_policy: expected"),
    ('{"tdx": {"xfam": "zz"}}', "tdx.xfam: expected"),
    ('{"snp": {"minimum_tcb": {"snp": "x"}}}', "snp.minimum_tcb.snp: expected an integer 0..255"),
    ('{"tdx": {"mrtd": ["00"]}}', "tdx.mrtd: expected an object mapping labels"),
    ('{"snp": {}, "snp": {"measurements": []}}', "duplicate key snp"),
    ('{"snp": {"guest_policy": NaN}}', "NaN is not JSON"),
    ("{", "is not valid JSON"),
]


@pytest.mark.parametrize(("text", "message"), BAD_REFS)
def test_malformed_reference_values_are_one_line_exit_2(files: dict[str, str], text: str, message: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    Path(files["refs.json"]).write_text(text)
    code, out, err = run(capsys, "--report", files["report.bin"], "--vcek", files["vcek.pem"],
                         "--reference-values", files["refs.json"])
    assert code == 2 and not out and err.count("\n") == 1 and message in err, err
    assert err.startswith(f"cocoon verify: error: reference values {files['refs.json']}")


def _evidence(tmp_path: Path, text: str) -> str:
    path = tmp_path / f"ev-{os.urandom(4).hex()}.json"
    path.write_text(text)
    return str(path)


def _report(f: dict[str, str]) -> list[str]:
    return ["--report", f["report.bin"], "--vcek", f["vcek.pem"], "--reference-values", f["refs.json"]]


def _ev(text: str) -> Callable[[dict[str, str], Path], list[str]]:
    """``--evidence`` with a document of this text, beside the good report's other arguments."""
    return lambda f, t: ["--evidence", _evidence(t, text), *_report(f)[2:]]


#: (arguments made from the ``files`` fixture and tmp_path, what the one line on stderr must say)
OTHER_BAD_INPUT: list[tuple[Callable[[dict[str, str], Path], list[str]], str]] = [
    (lambda f, t: [*_report(f), "--nonce", "00" * 65], "--nonce is 65 bytes; evidence binds 1 to 64"),
    (lambda f, t: [*_report(f), "--nonce", "abc"], "--nonce must be hex digits"),
    (lambda f, t: [*_report(f), "--nonce", "zz"], "--nonce must be hex digits"),
    (lambda f, t: [*_report(f), "--nonce", ""], "--nonce is 0 bytes"),
    (lambda f, t: [*_report(f), "--public-key", str(t / "garbage")], "is not a SubjectPublicKeyInfo"),
    (lambda f, t: [*_report(f), "--public-key", str(t / "missing")], "cannot read public key"),
    (lambda f, t: [*_report(f)[:2], "--vcek", str(t / "missing"), *_report(f)[4:]], "cannot read VCEK"),
    (lambda f, t: [*_report(f), "--initdata", str(t / "missing")], "cannot open initdata"),
    (lambda f, t: [*_report(f), "--initdata", str(t)], "neither a regular file"),
    (lambda f, t: [*_report(f), "--at", "yesterday"], "is not ISO 8601"),
    (lambda f, t: [*_report(f), "--crl", str(t / "garbage")], "is not an X.509 CRL"),
    (lambda f, t: [*_report(f), "--crl", str(t / "missing")], "cannot read CRL"),
    (lambda f, t: [*_report(f), "--trust-sim", str(t / "missing")], "cannot read sim trust file"),
    (lambda f, t: [*_report(f), "--trust-sim", str(t / "badpem")], "sim ARK in"),
    (lambda f, t: [*_report(f), "--tcb-info", f["refs.json"]], "needs all three"),
    (lambda f, t: ["--report", str(t / "missing"), *_report(f)[2:]], "cannot read report"),
    (lambda f, t: ["--evidence", f["refs.json"], *_report(f)[2:], "--type", "snp"], "--type applies to --report"),
    (_ev('{"kind": "snp", "kind": "tdx-quote", "report": ""}'), "duplicate key kind"),
    (_ev("[1]"), "expected an object"),
    (_ev('{"kind": 5, "report": "AA=="}'), "'kind' must be"),
    (_ev('{"kind": "snp", "report": "***"}'), "is not base64"),
    (_ev('{"kind": "x", "report": "AA=="}'), "unknown evidence kind"),
    (_ev("[" * 50_000), "is not valid JSON"),
]


@pytest.mark.parametrize(("args", "message"), OTHER_BAD_INPUT, ids=[m for _, m in OTHER_BAD_INPUT])
def test_every_other_bad_input_is_one_line_exit_2(files: dict[str, str], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  args: Callable[[dict[str, str], Path], list[str]],
                                                  message: str) -> None:
    (tmp_path / "garbage").write_bytes(b"not a key or a list\n")
    (tmp_path / "badpem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    argv = args(files, tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2, (argv, code, out, err)
    assert not out, out
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("cocoon verify: ") and message in lines[0], err


def test_a_good_evidence_document_verifies_on_the_same_path(files: dict[str, str], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    good_ev = json.dumps({"kind": "snp", "report": base64.b64encode(GENOA_REPORT).decode()})
    code, _, err = run(capsys, *_ev(good_ev)(files, tmp_path))
    assert code == 0, err


def test_a_real_process_prints_no_traceback(files: dict[str, str]) -> None:
    Path(files["refs.json"]).write_text('{"snp": {"measurements": [1]}}')
    res = subprocess.run([sys.executable, "-m", "cocoon", "verify", "--report", files["report.bin"], "--nonce",
                          "00" * 65, "--reference-values", files["refs.json"]], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr and res.stderr.count("\n") == 1, res.stderr


def test_help_documents_the_options() -> None:
    res = subprocess.run([sys.executable, "-m", "cocoon", "verify", "--help"], capture_output=True, text=True)
    for word in ("--type", "--at TIME", "--crl FILE", "besides", "AMD's", "duplicate keys", "2 bad input"):
        assert word in res.stdout, word


# --- 12: --trust-sim adds the sim root to AMD's ------------------------------------------------------------
def test_trust_sim_adds_the_sim_root_and_a_genuine_report_still_verifies(sim_chain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trust = tmp_path / "trust.pem"
    trust.write_bytes(sim_chain.trust_pem)
    genuine = verify("snp", GENOA_REPORT, b"", GENOA_REFS, vcek_pem=GENOA_VCEK, trust_sim=str(trust))
    assert genuine.ok and not genuine.simulated, genuine.table()  # before: "not the trusted ARK" (sim only)
    assert "(genoa)" in next(c.detail for c in genuine.claims if c.name == "snp.chain")
    assert "SIMULATED" not in genuine.table()
    measurement, host, nonce = b"\x42" * 48, b"\x01" * 32, os.urandom(32)
    cfg = tmp_path / "sim.json"
    cfg.write_text(make_config(sim_chain, measurement, host).to_json())
    ev = open_provider("sim", sim_config=str(cfg)).report(nonce + bytes(32))
    refs = {"snp": {"measurements": [{"measurement": measurement.hex()}]}}
    sim = verify("snp", ev.report, ev.aux, refs, nonce=nonce, initdata_digest=host, trust_sim=str(trust), tee="sim")
    assert sim.ok and sim.simulated and "SIMULATED" in sim.table()
    assert "(sim)" in next(c.detail for c in sim.claims if c.name == "snp.chain")
    # without --trust-sim: refused as sim evidence, and (claimed as real) its chain reaches no AMD root
    assert not verify("snp", ev.report, ev.aux, refs, nonce=nonce, initdata_digest=host, tee="sim").ok
    r = verify("snp", ev.report, ev.aux, refs, nonce=nonce, initdata_digest=host)
    assert {c.name for c in r.failed} == {"snp.chain"}


# --- plumbing for --at and --crl --------------------------------------------------------------------------
def _crl(tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.UTC)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(name).last_update(now)
           .next_update(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    path = tmp_path / "ca.crl"
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM) * 2)  # two PEM blocks: two CRLs
    return path


def test_at_and_crl_reach_both_checkers(files: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, Any, Any]] = []

    def fake(name: str):  # type: ignore[no-untyped-def]
        def check(result, *args: Any, at: Any = None, crls: Any = None, **kw: Any) -> None:  # type: ignore[no-untyped-def]
            seen.append((name, at, crls))
            result.add(f"{result.tee}.fake", True, "recorded")
        return check

    monkeypatch.setattr(api, "verify_snp", fake("snp"))
    monkeypatch.setattr(api, "verify_tdx", fake("tdx"))
    crl = _crl(tmp_path)
    quote = tmp_path / "quote.bin"
    quote.write_bytes(GCP_QUOTE)
    for path in (files["report.bin"], str(quote)):
        assert run(capsys, "--report", path, "--reference-values", files["refs.json"], "--at", "2025-06-01T12:00:00",
                   "--crl", str(crl), "--crl", str(crl))[0] == 0
    assert [s[0] for s in seen] == ["snp", "tdx"]
    for _, at, crls in seen:
        assert at == datetime.datetime(2025, 6, 1, 12, tzinfo=datetime.UTC)
        assert len(crls) == 4 and all(isinstance(c, x509.CertificateRevocationList) for c in crls)
    seen.clear()
    assert run(capsys, "--report", files["report.bin"], "--reference-values", files["refs.json"])[0] == 0
    assert seen == [("snp", None, [])]  # no --at: now (the checkers' default), no CRLs


def test_ctl_atls_checks_the_reference_values_before_it_connects(files: dict[str, str], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The aTLS client reads reference values through the same schema (before: a traceback, after connecting)."""
    Path(files["refs.json"]).write_text('{"tdx": {"mrtd": ["00"]}}')
    (tmp_path / "init.toml").write_text('version = "0.1.0"\nalgorithm = "sha256"\n[data]\n')
    code = main(["ctl", "--address", "tcp://127.0.0.1:9", "--atls", "--reference-values", files["refs.json"],
                 "--initdata", str(tmp_path / "init.toml"), "Check"])
    err = capsys.readouterr().err
    assert code == 2 and "tdx.mrtd: expected an object mapping labels" in err and err.count("\n") == 1, err
    code = main(["ctl", "--address", "tcp://127.0.0.1:9", "--atls", "--reference-values", str(tmp_path / "none"),
                 "--initdata", str(tmp_path / "init.toml"), "Check"])
    assert code == 2 and "cannot read reference values" in capsys.readouterr().err


def _claims(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run(capsys, *args, "--json")
    assert out, err
    submods = json.loads(out)["submods"]
    return code, next(iter(submods.values()))["claims"]


def test_at_judges_the_genuine_snp_chain_at_that_moment(files: dict[str, str],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """End to end through verify_snp: the Genoa VCEK is valid 2025-01-24..2032-01-24."""
    args = ["--report", files["report.bin"], "--vcek", files["vcek.pem"], "--reference-values", files["refs.json"]]
    code, claims = _claims(capsys, *args, "--at", "2026-01-01T00:00:00Z")
    assert code == 0 and claims["snp.validity"]["status"] == "pass"
    for at, words in (("2099-01-01", "expired on 2032-01-24"), ("2024-06-01", "not valid yet")):
        code, claims = _claims(capsys, *args, "--at", at)
        assert code == 1 and claims["snp.validity"]["status"] == "fail" and words in claims["snp.validity"]["detail"]


def test_crl_and_at_reach_the_tdx_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Intel's root CA CRL (tests/data) was current until 2024-04-02: stale now, current at --at 2024-03-15."""
    quote = tmp_path / "quote.bin"
    quote.write_bytes(GCP_QUOTE)
    refs = tmp_path / "refs.json"
    refs.write_text("{}")
    crl = str(DATA / "intel-sgx-root-ca-2023.crl.pem")
    args = ["--report", str(quote), "--reference-values", str(refs), "--crl", crl]
    _, claims = _claims(capsys, *args)
    revocation = claims["tdx.pck_chain.revocation"]
    assert revocation["status"] == "fail" and "stale" in revocation["detail"]
    _, claims = _claims(capsys, *args, "--at", "2024-03-15")
    assert claims["tdx.pck_chain.revocation"]["status"] == "pass"
    assert "not valid yet" in claims["tdx.pck_chain.validity"]["detail"]  # the PCK was issued 2025-03-06
    _, claims = _claims(capsys, *args[:4])
    assert "tdx.pck_chain.revocation" not in claims or claims["tdx.pck_chain.revocation"]["status"] != "fail"
