"""TDX collateral from files (verifier/collateral.py): every check passes on consistent collateral and each
fails alone when one thing changes; the PCK certificate's SGX extension parses on a genuine certificate."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st
from support.tdxgen import World, make_quote

from agent.tee import tdx_report
from verifier import collateral as col
from verifier.claims import Result
from verifier.tdx import verify_tdx
from verifier.trust import intel_root

DATA = Path(__file__).resolve().parent / "data"


def claims(r: Result) -> dict[str, str]:
    return {c.name: c.status for c in r.claims if c.name.startswith(("tdx.collateral", "tdx.tcb", "tdx.qe_identity"))}


def failed(r: Result) -> list[str]:
    return [n for n, s in claims(r).items() if s == "fail"]


def test_consistent_collateral_passes_every_check() -> None:
    r = World().verify()
    assert claims(r) == {"tdx.collateral.chain": "pass", "tdx.collateral.chain.validity": "pass",
                         "tdx.collateral.chain.revocation": "skip", "tdx.collateral.tcb_info.signature": "pass",
                         "tdx.collateral.qe_identity.signature": "pass", "tdx.collateral.tcb_info.fresh": "pass",
                         "tdx.collateral.qe_identity.fresh": "pass", "tdx.tcb.fmspc": "pass",
                         "tdx.tcb.status": "pass", "tdx.tcb.module": "pass", "tdx.qe_identity": "pass",
                         "tdx.qe_identity.tcb": "pass"}


def test_each_check_fails_alone() -> None:
    w = World()
    assert failed(w.verify(w.collateral(flip_tcb=True))) == ["tdx.collateral.tcb_info.signature"]
    other = World()
    assert failed(w.verify(w.collateral(chain=other.chain_pem))) == ["tdx.collateral.chain"]
    w.tcb_info["nextUpdate"] = "2020-01-01T00:00:00Z"
    assert failed(w.verify()) == ["tdx.collateral.tcb_info.fresh"]
    w = World()
    w.tcb_info["fmspc"] = "00906ed50000"
    assert failed(w.verify()) == ["tdx.tcb.fmspc"]
    w = World()
    w.tcb_info["tcbLevels"][0]["tcbStatus"] = "OutOfDate"
    r = w.verify()
    assert failed(r) == ["tdx.tcb.status"] and "OutOfDate" in str([c.actual for c in r.claims])
    w = World(svns=[2] * 16, pcesvn=10)  # an older platform: matches the second level, OutOfDate
    assert failed(w.verify()) == ["tdx.tcb.status"]
    w = World(svns=[1] * 16)  # older than every level
    assert failed(w.verify()) == ["tdx.tcb.status"]
    w = World()
    w.qe_identity["mrsigner"] = "ab" * 32
    assert failed(w.verify()) == ["tdx.qe_identity"]
    w = World()
    w.qe_identity["tcbLevels"][0]["tcbStatus"] = "OutOfDate"
    assert failed(w.verify()) == ["tdx.qe_identity.tcb"]
    w = World()
    w.tcb_info["tcbLevels"][0]["tcbStatus"] = "SWHardeningNeeded"
    assert failed(w.verify()) == []  # acceptable, and the detail says advisories apply


def test_tdx_module_identity_checks() -> None:
    w = World()
    # a major-version-1 module: its identity TDX_01 and, by SVN, its TCB level
    def svn(svn: int, major: int) -> bytes:
        return bytes([svn, major]) + bytes(14)

    r = w.verify(tee_tcb_svn=svn(5, 1))
    assert failed(r) == [] and claims(r)["tdx.tcb.module.status"] == "pass"
    r = w.verify(tee_tcb_svn=svn(3, 1))
    assert failed(r) == ["tdx.tcb.module.status"] and "OutOfDate" in str([c.detail for c in r.claims])
    assert failed(w.verify(tee_tcb_svn=svn(1, 1))) == ["tdx.tcb.module.status"]  # below every level
    r = w.verify(tee_tcb_svn=svn(5, 2))
    assert failed(r) == ["tdx.tcb.module"] and "TDX_02" in str([c.detail for c in r.claims])
    assert failed(w.verify(mrsignerseam=b"\x01" * 48)) == ["tdx.tcb.module"]
    assert failed(w.verify(seam_attributes=1)) == ["tdx.tcb.module"]
    w.tcb_info["tdxModule"]["attributesMask"] = "FEFFFFFFFFFFFFFF"  # a masked-out bit may differ
    assert failed(w.verify(seam_attributes=1)) == []
    del w.tcb_info["tdxModule"]
    r = w.verify()
    assert failed(r) == ["tdx.tcb.module"] and "unreadable" in str([c.detail for c in r.claims])


def genuine(qe: str = "intel-td-qe-identity-2025-10.json") -> col.Collateral:
    return col.load((DATA / "intel-tdx-tcb-info-00a06d080000.json").read_bytes(), (DATA / qe).read_bytes(),
                    (DATA / "intel-tcb-signing-chain.pem").read_bytes())


GENUINE_AT = datetime.datetime(2025, 11, 1, tzinfo=datetime.UTC)  # both documents issued and current then


def test_genuine_intel_collateral_verifies_under_the_shipped_root() -> None:
    r = Result("tdx")
    assert col.check_documents(r, genuine(), intel_root(), GENUINE_AT)
    assert {c.name: c.status for c in r.claims} == {
        "tdx.collateral.chain": "pass", "tdx.collateral.chain.validity": "pass",
        "tdx.collateral.chain.revocation": "skip", "tdx.collateral.tcb_info.signature": "pass",
        "tdx.collateral.qe_identity.signature": "pass", "tdx.collateral.tcb_info.fresh": "pass",
        "tdx.collateral.qe_identity.fresh": "pass"}
    r = Result("tdx")
    col.check_documents(r, genuine(), intel_root())  # today: both are long past nextUpdate
    assert {c.name for c in r.failed} == {"tdx.collateral.tcb_info.fresh", "tdx.collateral.qe_identity.fresh"}
    # an older genuine QE identity (current 2025-07-18..08-17): then, the TCB info was not yet issued
    r = Result("tdx")
    col.check_documents(r, genuine("intel-td-qe-identity.json"), intel_root(),
                        datetime.datetime(2025, 8, 10, tzinfo=datetime.UTC))
    assert {c.name for c in r.failed} == {"tdx.collateral.tcb_info.fresh"}
    assert "not yet issued" in str([c.detail for c in r.failed])
    # one changed character of the signed text breaks Intel's signature
    raw = (DATA / "intel-tdx-tcb-info-00a06d080000.json").read_bytes().replace(b'"isvsvn":4', b'"isvsvn":3', 1)
    tampered = col.load(raw, (DATA / "intel-td-qe-identity-2025-10.json").read_bytes(),
                        (DATA / "intel-tcb-signing-chain.pem").read_bytes())
    r = Result("tdx")
    assert not col.check_documents(r, tampered, intel_root(), GENUINE_AT)
    assert {c.name for c in r.failed} == {"tdx.collateral.tcb_info.signature"}


def test_genuine_tdx_module_identities() -> None:
    from types import SimpleNamespace

    tcb_info = genuine().tcb_info
    for svn, major, outcome in ((5, 1, ("pass", "pass")), (3, 1, ("pass", "fail")), (3, 3, ("pass", "pass")),
                                (0, 0, ("pass",)), (3, 2, ("fail",))):
        body = SimpleNamespace(tee_tcb_svn=bytes([svn, major]) + bytes(14), mrsignerseam=bytes(48), seam_attributes=0)
        r = Result("tdx")
        col.tdx_module(r, tcb_info, body)
        assert tuple(c.status for c in r.claims) == outcome, (svn, major, r.table())


def test_without_collateral_the_result_says_it_was_skipped() -> None:
    w = World()
    r = Result("tdx")
    verify_tdx(r, make_quote(w.pck), w.root_pem, {}, None, None)
    assert {c.name: c.status for c in r.claims}["tdx.collateral"] == "skip"


def test_genuine_pck_certificate_sgx_extension() -> None:
    raw = tdx_report.trim_padding(base64.b64decode((DATA / "tdx-v4-gcp.quote.b64").read_text()))
    q = tdx_report.parse_quote(raw)
    assert q.qe_certification is not None
    leaf = x509.load_pem_x509_certificates(q.qe_certification.pck_cert_data.rstrip(b"\0"))[0]
    tcb = col.pck_tcb(leaf)
    assert len(tcb.fmspc) == 6 and len(tcb.sgx_svns) == 16 and len(tcb.pce_id) == 2
    assert 0 < tcb.pcesvn < 256 and max(tcb.sgx_svns) < 256


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"tcbInfo": {}, "signature": "zz"}',
                                  b'{"tcbInfo": {}, "signature": "00"}', b'{"tcbInfo": 1, "signature": ""}'])
def test_malformed_collateral_files_are_refused(body: bytes) -> None:
    w = World()
    with pytest.raises(col.CollateralError):
        col.load(body, w.signed("enclaveIdentity", w.qe_identity), w.chain_pem)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_der_reader_fails_closed(junk: bytes) -> None:
    try:
        pairs = col._pairs(junk)
    except col.CollateralError as exc:
        assert str(exc).startswith("SGX extension"), exc
    else:  # what parses is OID -> (tag, value)
        assert all(isinstance(k, str) and isinstance(v[1], bytes) for k, v in pairs.items())


def test_cli_checks_collateral_files(tmp_path: Path) -> None:
    import subprocess
    import sys

    w = World()
    quote = make_quote(w.pck)
    mrtd = tdx_report.parse_quote(quote).body.mrtd.hex()
    files = {"evidence.json": json.dumps({"kind": "tdx-quote", "report": base64.b64encode(quote).decode()}).encode(),
             "refs.json": json.dumps({"tdx": {"mrtd": {"single_pass": mrtd}}}).encode(),
             "tcb.json": w.signed("tcbInfo", w.tcb_info), "qe.json": w.signed("enclaveIdentity", w.qe_identity),
             "chain.pem": w.chain_pem, "root.pem": w.root_pem}
    for name, blob in files.items():
        (tmp_path / name).write_bytes(blob)
    # The shipped Intel root replaced by the test root, in a child process only.
    base = [sys.executable, "-c", "import sys, verifier.trust as t; root = open(sys.argv[1], 'rb').read(); "
            "t.intel_root = lambda: root; sys.argv = ['cocoon'] + sys.argv[2:]; from cocoon.cli import main; "
            "raise SystemExit(main())",
            str(tmp_path / "root.pem"), "verify", "--evidence", str(tmp_path / "evidence.json"),
            "--reference-values", str(tmp_path / "refs.json")]
    run = subprocess.run([*base, "--tcb-info", str(tmp_path / "tcb.json"), "--qe-identity", str(tmp_path / "qe.json"),
                          "--collateral-chain", str(tmp_path / "chain.pem"), "--json"], capture_output=True, text=True)
    assert run.stdout.startswith("{"), run.stderr[-2000:]
    doc = json.loads(run.stdout)
    got = doc["submods"]["tdx"]["claims"]
    assert got["tdx.tcb.status"]["status"] == "pass" and got["tdx.qe_identity"]["status"] == "pass", run.stdout
    half = subprocess.run([*base, "--tcb-info", str(tmp_path / "tcb.json")], capture_output=True, text=True)
    assert half.returncode == 2 and "needs all three" in half.stderr
