"""The verifier: every check passes on good evidence and each fails alone, naming its claim."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from support.tdxgen import PckChain, make_pck_chain, make_quote

from agent.errors import ReportError
from agent.tee import certtable, open_provider
from cocoon.cli import main
from launcher.localagent import start_agent
from launcher.simca import make_chain, make_config
from verifier.api import verify
from verifier.claims import Result
from verifier.trust import AMD_PRODUCTS, AMD_SHA256, HERE, INTEL_ROOT_SHA256, amd_anchors

MEASUREMENT = b"\x42" * 48
DOC_DIGEST = hashlib.sha256(b"initdata document").digest()
NONCE = b"\x07" * 32
SNP_REFS = {"snp": {"guest_policy": "0x30000", "measurements": [{"measurement": MEASUREMENT.hex()}]}}


def test_shipped_trust_anchors_are_intact() -> None:
    from verifier.snp_chain import _pss_signed_by
    from verifier.x509check import load_certificate

    assert AMD_PRODUCTS == ("milan", "genoa", "turin")
    for product in AMD_PRODUCTS:
        ark = load_certificate((HERE / f"amd-{product}-ark.pem").read_bytes(), "ARK")
        ask = load_certificate((HERE / f"amd-{product}-ask.pem").read_bytes(), "ASK")
        asvk = load_certificate((HERE / f"amd-{product}-asvk.pem").read_bytes(), "ASVK")
        _pss_signed_by(ark, ark, "ARK")
        _pss_signed_by(ask, ark, "ASK")
        _pss_signed_by(asvk, ark, "ASVK")
        assert ark.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == f"ARK-{product.title()}"
        assert ask.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == f"SEV-{product.title()}"
        assert asvk.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == f"SEV-VLEK-{product.title()}"
        for name, cert in (("ark", ark), ("ask", ask), ("asvk", asvk)):
            digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
            assert digest == AMD_SHA256[f"{product}-{name}"], (product, name)
    assert set(AMD_SHA256) == {f"{p}-{n}" for p in AMD_PRODUCTS for n in ("ark", "ask", "asvk")}
    # every anchor carries its ASVK, so a VLEK-signed report needs nothing more from the caller
    assert all(a.asvk_pem and a.intermediate("vlek") == a.asvk_pem for a in amd_anchors())
    intel = x509.load_pem_x509_certificate((HERE / "intel-sgx-root-ca.pem").read_bytes())
    intel.verify_directly_issued_by(intel)
    assert hashlib.sha256(intel.public_bytes(serialization.Encoding.DER)).hexdigest() == INTEL_ROOT_SHA256


#: make(**config) -> (report, aux) of a fresh sim report, and the sim trust anchor path
SnpEvidence = tuple[Callable[..., tuple[bytes, bytes]], str]


@pytest.fixture
def snp_evidence(tmp_path, sim_chain):  # type: ignore[no-untyped-def]
    def make(policy: int = 0x30000, host_data: bytes = DOC_DIGEST, chain=sim_chain, **more):  # type: ignore[no-untyped-def]
        cfg = tmp_path / f"sim-{os.urandom(4).hex()}.json"
        cfg.write_text(make_config(chain, MEASUREMENT, host_data, policy=policy, **more).to_json())
        ev = open_provider("sim", sim_config=str(cfg)).report(NONCE + bytes(32))
        return ev.report, ev.aux
    trust = tmp_path / "trust.pem"
    trust.write_bytes(sim_chain.trust_pem)
    return make, str(trust)


def snp(report: bytes, aux: bytes, trust: str | None, refs: Any = SNP_REFS, digest: bytes = DOC_DIGEST,
        nonce: bytes = NONCE) -> Result:
    return verify("snp", report, aux, refs, initdata_digest=digest, nonce=nonce, trust_sim=trust,
                  tee="sim" if trust is None else "")


def failed(result) -> set[str]:  # type: ignore[no-untyped-def]
    return {c.name for c in result.failed}


def test_good_sim_evidence_verifies_and_says_simulated(snp_evidence: SnpEvidence) -> None:
    make, trust = snp_evidence
    r = snp(*make(), trust)
    assert r.ok and r.simulated, r.table()
    assert {c.name for c in r.claims if c.status == "pass"} >= {
        "snp.chain", "snp.signature", "snp.vcek.tcb", "snp.vcek.chip_id", "snp.measurement", "snp.host_data",
        "snp.report_data", "snp.policy.debug", "snp.vmpl", "tee.simulated"}
    assert "SIMULATED" in r.table()
    assert r.to_json()["submods"]["snp"]["ear.status"] == "affirming"


def test_each_snp_claim_fails_alone(snp_evidence: SnpEvidence, tmp_path: Path) -> None:
    make, trust = snp_evidence
    report, aux = make()
    other_refs = {"snp": {**SNP_REFS["snp"], "measurements": [{"measurement": "00" * 48}]}}
    assert failed(snp(report, aux, trust, refs=other_refs)) == {"snp.measurement"}
    assert failed(snp(report, aux, trust, digest=hashlib.sha256(b"other").digest())) == {"snp.host_data"}
    assert failed(snp(report, aux, trust, nonce=b"\x08" * 32)) == {"snp.report_data"}
    bad = bytearray(report)
    bad[0x2A0] ^= 1  # one signature byte
    assert failed(snp(bytes(bad), aux, trust)) == {"snp.signature"}
    certs = certtable.parse(aux)
    other = make_chain(rsa_bits=2048)
    foreign = x509.load_pem_x509_certificate(other.vcek_pem).public_bytes(serialization.Encoding.DER)
    assert failed(snp(report, certtable.build({**certs, "vcek": foreign}), trust)) == {"snp.chain"}
    assert failed(snp(*make(policy=0x30000 | 1 << 19), trust)) == {"snp.policy.debug"}
    assert failed(snp(*make(policy=0x30000 | 1 << 18), trust)) == {"snp.policy.migration_agent"}
    tcb_refs = {"snp": {**SNP_REFS["snp"], "minimum_tcb": {"snp": 99}}}
    assert failed(snp(report, aux, trust, refs=tcb_refs)) == {"snp.tcb.reported", "snp.tcb.committed",
                                                               "snp.tcb.launch"}
    # a report claiming a newer TCB than its VCEK was issued for; a VCEK of another chip
    newer = int.from_bytes(bytes([3, 0, 0, 0, 0, 0, 9, 115]), "little")
    r = snp(*make(tcb=newer), trust)
    assert failed(r) == {"snp.vcek.tcb"} and r.failed[0].actual["snp"] == 8 and r.failed[0].expected["snp"] == 9
    assert failed(snp(*make(chip_id=os.urandom(64)), trust)) == {"snp.vcek.chip_id"}


def test_vcek_without_amd_extensions_fails_unless_sim(sim_chain) -> None:  # type: ignore[no-untyped-def]
    from agent.tee import snp_report
    from verifier.claims import Result
    from verifier.snp import _key_identity

    bare = sim_chain.ark_pem  # a certificate with no AMD extensions
    rep = snp_report.parse(GENOA_REPORT)
    for simulated, status in ((False, "fail"), (True, "skip")):
        result = Result("snp")
        _key_identity(result, rep, bare, "vcek", simulated)
        assert [(c.name, c.status) for c in result.claims] == [("snp.vcek.tcb", status), ("snp.vcek.chip_id", status)]


# A genuine Genoa report and its VCEK (tests/data/README.md says where they come from).
DATA = Path(__file__).parent / "data"
GENOA_REPORT = bytes.fromhex((DATA / "snp-genoa-azure.report.hex").read_text())
GENOA_VCEK = (DATA / "snp-genoa-azure.vcek.pem").read_bytes()
GENOA_REFS = {"snp": {"guest_policy": "0x30000", "minimum_tcb": {"bootloader": 10, "snp": 23, "microcode": 84},
                      "measurements": [{"measurement": GENOA_REPORT[0x90:0xC0].hex()}]}}


def test_genuine_genoa_report_verifies_under_amds_chain() -> None:
    r = verify("snp", GENOA_REPORT, b"", GENOA_REFS, vcek_pem=GENOA_VCEK)
    assert r.ok and not r.simulated, r.table()
    passed = {c.name for c in r.claims if c.status == "pass"}
    assert {"snp.chain", "snp.signature", "snp.vcek.tcb", "snp.vcek.chip_id", "snp.measurement", "snp.vmpl",
            "snp.tcb.reported", "snp.policy.debug"} <= passed
    assert "(genoa)" in next(c.detail for c in r.claims if c.name == "snp.chain")
    # the same report without its VCEK cannot verify; one flipped byte breaks the signature alone
    assert failed(verify("snp", GENOA_REPORT, b"", GENOA_REFS)) == {"snp.chain"}
    bad = bytearray(GENOA_REPORT)
    bad[0x90] ^= 0x80
    assert failed(verify("snp", bytes(bad), b"", GENOA_REFS, vcek_pem=GENOA_VCEK)) == {"snp.signature"}
    # the launch's ID key (Azure's) is checked when the reference values list ID/author keys
    id_key = GENOA_REPORT[0xE0:0x110].hex()
    with_keys = {"snp": {**GENOA_REFS["snp"], "id_key_digests": [id_key.upper()]}}
    assert verify("snp", GENOA_REPORT, b"", with_keys, vcek_pem=GENOA_VCEK).ok
    other = {"snp": {**GENOA_REFS["snp"], "id_key_digests": ["00" * 48]}}
    assert failed(verify("snp", GENOA_REPORT, b"", other, vcek_pem=GENOA_VCEK)) == {"snp.id_key"}
    author = {"snp": {**GENOA_REFS["snp"], "author_key_digests": [id_key]}}
    r = verify("snp", GENOA_REPORT, b"", author, vcek_pem=GENOA_VCEK)
    assert failed(r) == {"snp.author_key"} and "no author key" in r.failed[0].detail
    # Milan's ARK/ASK do not vouch for it: drop Genoa and it fails the chain
    from verifier.snp import verify_snp

    result = Result("snp")
    verify_snp(result, GENOA_REPORT, b"", [a for a in amd_anchors() if a.name == "milan"], GENOA_REFS["snp"],
               None, None, vcek_pem=GENOA_VCEK)
    assert failed(result) == {"snp.chain"}
    # auditing at a moment: the VCEK (2025-01-24..2032-01-24) did not exist in 2024 and will have expired by 2033
    for at, why in ((datetime.datetime(2024, 6, 1), "VCEK (SEV-VCEK) is not valid yet"),
                    (datetime.datetime(2033, 1, 1), "VCEK (SEV-VCEK) expired on 2032-01-24")):
        result = Result("snp")
        verify_snp(result, GENOA_REPORT, b"", amd_anchors(), GENOA_REFS["snp"], None, None, vcek_pem=GENOA_VCEK,
                   at=at)
        assert failed(result) == {"snp.validity"} and result.failed[0].detail.startswith(why), result.table()
    result = Result("snp")
    verify_snp(result, GENOA_REPORT, b"", amd_anchors(), GENOA_REFS["snp"], None, None, vcek_pem=GENOA_VCEK,
               at=datetime.datetime(2031, 1, 1))
    assert result.ok, result.table()


def test_genuine_milan_report_from_a_debug_guest_is_rejected_for_that_alone() -> None:
    report = bytes.fromhex((DATA / "snp-milan-gsg.report.hex").read_text())
    vcek_der = (DATA / "snp-milan-gsg.vcek.der").read_bytes()
    refs = {"snp": {"measurements": [{"measurement": report[0x90:0xC0].hex()}]}}
    r = verify("snp", report, b"", refs, vcek_pem=vcek_der)
    assert failed(r) == {"snp.policy.debug"}, r.table()
    assert {"snp.chain", "snp.signature", "snp.vcek.tcb", "snp.vcek.chip_id"} <= {
        c.name for c in r.claims if c.status == "pass"}
    assert "(milan)" in next(c.detail for c in r.claims if c.name == "snp.chain")


def test_genuine_turin_vcek_chains_to_the_shipped_turin_anchor() -> None:
    from verifier.snp_chain import verify_chain

    turin = next(a for a in amd_anchors() if a.name == "turin")
    vcek_der = (DATA / "snp-turin-virtee.vcek.der").read_bytes()
    assert verify_chain(turin.ark_pem, turin.ark_pem, turin.ask_pem, vcek_der).curve.name == "secp384r1"
    genoa = next(a for a in amd_anchors() if a.name == "genoa")
    with pytest.raises(ReportError, match="VCEK: issuer name"):
        verify_chain(genoa.ark_pem, genoa.ark_pem, genoa.ask_pem, vcek_der)


def test_cli_verifies_a_raw_report_with_a_vcek_file(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "report.bin").write_bytes(GENOA_REPORT)
    (tmp_path / "vcek.pem").write_bytes(GENOA_VCEK)
    (tmp_path / "refs.json").write_text(json.dumps(GENOA_REFS))
    args = ["verify", "--report", str(tmp_path / "report.bin"), "--reference-values", str(tmp_path / "refs.json")]
    assert main([*args, "--vcek", str(tmp_path / "vcek.pem"), "--json"]) == 0
    ear = json.loads(capsys.readouterr().out)["submods"]["snp"]
    assert ear["ear.status"] == "affirming" and ear["claims"]["snp.vcek.chip_id"]["status"] == "pass"
    assert main(args) == 1
    assert "no VCEK" in capsys.readouterr().out


def test_sim_evidence_needs_explicit_trust(snp_evidence: SnpEvidence) -> None:
    make, _ = snp_evidence
    report, aux = make()
    assert failed(snp(report, aux, None)) == {"tee.simulated"}
    r = verify("snp", report, aux, SNP_REFS, initdata_digest=DOC_DIGEST, nonce=NONCE)  # AMD anchors only
    assert failed(r) == {"snp.chain"} and "not the trusted ARK" in r.failed[0].detail


@pytest.fixture(scope="module")
def pck():  # type: ignore[no-untyped-def]
    return make_pck_chain()


TDX_MRTD = b"\x11" * 48
TDX_REFS = {"tdx": {"mrtd": {"single_pass": TDX_MRTD.hex(), "two_pass": None}}}


def tdx(quote: bytes, pck, refs=TDX_REFS, digest=DOC_DIGEST, nonce=NONCE):  # type: ignore[no-untyped-def]
    return verify("tdx-quote", quote, b"", refs, initdata_digest=digest, nonce=nonce, tdx_root_pem=pck.root_pem)


def good_quote(pck: PckChain, **overrides: object) -> bytes:
    body = {"mrtd": TDX_MRTD, "mrconfigid": DOC_DIGEST + bytes(16), "report_data": NONCE + bytes(32),
            "td_attributes": 1 << 28}
    body.update(overrides)
    return make_quote(pck, **body)


def test_good_tdx_quote_verifies(pck) -> None:  # type: ignore[no-untyped-def]
    r = tdx(good_quote(pck), pck)
    assert r.ok, r.table()
    assert {"tdx.pck_chain", "tdx.qe_report.signature", "tdx.qe_report.binding", "tdx.quote.signature",
            "tdx.mrtd", "tdx.mrconfigid", "tdx.report_data"} <= {c.name for c in r.claims if c.status == "pass"}


def test_each_tdx_claim_fails_alone(pck) -> None:  # type: ignore[no-untyped-def]
    q = good_quote(pck)
    assert failed(tdx(q, pck, refs={"tdx": {"mrtd": {"single_pass": "00" * 48}}})) == {"tdx.mrtd"}
    assert failed(tdx(q, pck, digest=hashlib.sha256(b"x").digest())) == {"tdx.mrconfigid"}
    assert failed(tdx(q, pck, nonce=b"\x09" * 32)) == {"tdx.report_data"}
    assert failed(tdx(good_quote(pck, td_attributes=1), pck)) == {"tdx.attributes.debug"}
    bad = bytearray(q)
    bad[0x27C] ^= 1  # first byte of the quote signature
    assert failed(tdx(bytes(bad), pck)) == {"tdx.quote.signature"}
    bad = bytearray(q)
    bad[0x27C + 128 + 6 + 320] ^= 1  # QE report data: breaks both its signature and the binding; signature first
    assert failed(tdx(bytes(bad), pck)) == {"tdx.qe_report.signature"}
    assert failed(verify("tdx-quote", q, b"", TDX_REFS, initdata_digest=DOC_DIGEST, nonce=NONCE)) == {
        "tdx.pck_chain"}  # the real Intel root does not anchor a test chain


def test_tdx_rtmrs_against_candidates_and_rtmr0_only_when_recorded(pck) -> None:  # type: ignore[no-untyped-def]
    q = good_quote(pck, rtmr0=b"\x30" * 48, rtmr1=b"\x31" * 48, rtmr2=b"\x32" * 48)
    rtmr = {"rtmr0": [("30" * 48)], "rtmr1": ["ff" * 48, "31" * 48], "rtmr2": ["32" * 48]}
    r = tdx(q, pck, refs={"tdx": {**TDX_REFS["tdx"], "rtmr": rtmr}})
    assert r.ok and {"tdx.rtmr0", "tdx.rtmr1", "tdx.rtmr2"} <= {c.name for c in r.claims if c.status == "pass"}
    assert failed(tdx(q, pck, refs={"tdx": {**TDX_REFS["tdx"], "rtmr": {**rtmr, "rtmr0": ["00" * 48]}}})) == {
        "tdx.rtmr0"}
    assert failed(tdx(q, pck, refs={"tdx": {**TDX_REFS["tdx"], "rtmr": {**rtmr, "rtmr2": ["00" * 48]}}})) == {
        "tdx.rtmr2"}
    unrecorded = tdx(q, pck, refs={"tdx": {**TDX_REFS["tdx"], "rtmr": {**rtmr, "rtmr0": []}}})
    assert unrecorded.ok and [c.status for c in unrecorded.claims if c.name == "tdx.rtmr0"] == ["skip"]


def test_cli_with_a_running_agent_and_with_a_file(tmp_path, sim_chain, capsys) -> None:  # type: ignore[no-untyped-def]
    """End to end: agent (sim) -> `cocoon verify --address`, and the JSON `cocoon ctl GetEvidence` prints."""
    (tmp_path / "trust.pem").write_bytes(sim_chain.trust_pem)
    refs = tmp_path / "refs.json"
    refs.write_text(json.dumps(SNP_REFS))
    proc = start_agent(tmp_path, sim_chain, "package agent_policy\n")
    img = proc.initdata
    try:
        common = ["--reference-values", str(refs), "--initdata", str(img)]
        assert main(["verify", "--address", proc.address, *common,
                     "--trust-sim", str(tmp_path / "trust.pem")]) == 0
        assert "snp: VERIFIED — SIMULATED TEE" in capsys.readouterr().out
        assert main(["verify", "--address", proc.address, *common]) == 1  # no --trust-sim
        assert "tee.simulated" in capsys.readouterr().out
        nonce = os.urandom(16)
        assert main(["ctl", "--address", proc.address, "GetEvidence",
                     json.dumps({"nonce": base64.b64encode(nonce).decode()})]) == 0
        (tmp_path / "ev.json").write_text(capsys.readouterr().out)
        assert main(["verify", "--evidence", str(tmp_path / "ev.json"), "--nonce", nonce.hex(), *common,
                     "--trust-sim", str(tmp_path / "trust.pem"), "--json"]) == 0
        ear = json.loads(capsys.readouterr().out)
        assert ear["submods"]["snp"]["ear.status"] == "affirming" and ear["submods"]["snp"]["simulated"]
        assert main(["verify", "--evidence", str(tmp_path / "ev.json"), "--nonce", "00" * 16, *common,
                     "--trust-sim", str(tmp_path / "trust.pem")]) == 1
        assert "snp.report_data" in capsys.readouterr().out
    finally:
        proc.stop()


def test_genuine_gcp_tdx_quote_verifies_against_intels_root() -> None:
    """A real quote (tests/data/README.md): every cryptographic check passes with the shipped Intel root."""
    from pathlib import Path

    from agent.tee import tdx_report

    raw = base64.b64decode((Path(__file__).parent / "data" / "tdx-v4-gcp.quote.b64").read_text().strip())
    mrtd = tdx_report.parse_quote(tdx_report.trim_padding(raw)).body.mrtd.hex()
    r = verify("tdx-quote", raw, b"", {"tdx": {"mrtd": {"single_pass": mrtd}}})
    assert r.ok, r.table()
    passed = {c.name for c in r.claims if c.status == "pass"}
    assert {"tdx.pck_chain", "tdx.qe_report.signature", "tdx.qe_report.binding", "tdx.quote.signature"} <= passed
    tampered = bytearray(raw)
    tampered[0xB8] ^= 1  # one MRTD bit
    assert failed(verify("tdx-quote", bytes(tampered), b"", {"tdx": {"mrtd": {"x": mrtd}}})) == {
        "tdx.quote.signature"}
    padded_badly = raw + b"\x01"
    assert failed(verify("tdx-quote", padded_badly, b"", {"tdx": {"mrtd": {"x": mrtd}}})) == {"tdx.quote.format"}


def test_an_empty_key_allowlist_accepts_no_key() -> None:
    """docs/reference-values.md: an empty list fails the claims that need it. Before: ``"id_key_digests": []``
    (or ``author_key_digests``) set no constraint at all, so an allowlist emptied by its writer allowed any key."""
    for key, claim in (("id_key_digests", "snp.id_key"), ("author_key_digests", "snp.author_key")):
        r = verify("snp", GENOA_REPORT, b"", {"snp": {**GENOA_REFS["snp"], key: []}}, vcek_pem=GENOA_VCEK)
        assert failed(r) == {claim}
