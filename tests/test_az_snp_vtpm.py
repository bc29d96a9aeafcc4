"""Azure SEV-SNP vTPM evidence: genuine evidence from Azure verifies every claim, and each link fails alone.

The evidence files are Trustee's (tests/data/README.md says where from); the nonces are the ones Trustee's
own tests expect (deps/verifier/src/az_snp_vtpm/mod.rs: "challenge", EVIDENCE_V2_REPORT_DATA and the Genoa
test's report_data), read back here from each quote's extraData.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import ReportError
from cocoon.cli import main
from verifier import az_snp_vtpm, hcl, tpm_quote
from verifier.api import verify
from verifier.claims import Result
from verifier.x509check import load_certificate

DATA = Path(__file__).parent / "data" / "az-snp-vtpm"
AT = datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC)  # inside every VCEK's validity (from 2025-01-28)
V2_NONCE = bytes.fromhex("982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9a"
                         "a398f647caa2338748cd0fd9f5f819ef")
GENOA_NONCE = bytes.fromhex("0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938c"
                            "a05475f8b46094de6b64270ea35d950f")
NONCES = {"evidence-v1.json": b"challenge", "evidence-v2.json": V2_NONCE, "evidence-genoa.json": GENOA_NONCE}
PCR0 = {  # trustee's tests assert these PCR0 values for the same files
    "evidence-v1.json": "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced",
    "evidence-v2.json": "84275b2f4312cd4fc6cbe6b152ad3c3683e513d9f1e23c34fca160c8cca7a6a7",
    "evidence-genoa.json": "afd689d0bb1c5f36f023fbaf574135f555a28a10c1f6b938d2a25e70c7783338",
}
PRODUCT = {"evidence-v1.json": "milan", "evidence-v2.json": "milan", "evidence-genoa.json": "genoa"}
ALWAYS = {"az.tpm.quote.signature", "az.tpm.quote.nonce", "az.tpm.pcr_digest", "az.tpm.pcrs", "az.hcl.report_data",
          "snp.report.format", "snp.chain", "snp.validity", "snp.signature", "snp.vcek.tcb", "snp.vcek.chip_id",
          "snp.policy.debug", "snp.policy.migration_agent", "snp.policy.smt", "snp.policy.abi", "snp.vmpl",
          "snp.measurement"}


def raw(name: str) -> bytes:
    return (DATA / name).read_bytes()


def doc(name: str) -> dict[str, Any]:
    return az_snp_vtpm.loads(raw(name))


def refs_for(name: str, **tpm: list[str]) -> dict[str, Any]:
    """The genuine report's own policy and measurement, and the given PCRs, as reference values."""
    ev = az_snp_vtpm.parse(doc(name))
    report = hcl.parse(ev.hcl_report).snp_report
    policy = int.from_bytes(report[8:16], "little")
    out: dict[str, Any] = {"snp": {"guest_policy": hex(policy),
                                   "measurements": [{"measurement": report[0x90:0xC0].hex()}]}}
    if tpm:
        out["tpm"] = {"pcrs": tpm}
    return out


def check(document: dict[str, Any], name: str = "evidence-v2.json", nonce: bytes | None = None,
          refs: dict[str, Any] | None = None, initdata: bytes | None = None,
          at: datetime.datetime = AT) -> Result:
    return verify("az-snp-vtpm", json.dumps(document).encode(), b"", refs or refs_for(name),
                  nonce=NONCES[name] if nonce is None else nonce, initdata_digest=initdata, at=at)


def failed(result: Result) -> set[str]:
    return {c.name for c in result.failed}


def status(result: Result) -> dict[str, str]:
    return {c.name: c.status for c in result.claims}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


@pytest.mark.parametrize("name", sorted(NONCES))
def test_genuine_azure_evidence_verifies_every_claim(name: str) -> None:
    quote = tpm_quote.parse(az_snp_vtpm.parse(doc(name)).message)
    assert quote.extra_data == NONCES[name]  # the nonce Trustee's tests expect is the one the quote carries
    pcr0 = az_snp_vtpm.parse(doc(name)).pcrs[0].hex()
    assert pcr0 == PCR0[name]
    r = verify("az-snp-vtpm", raw(name), b"", refs_for(name, pcr00=[pcr0]), nonce=NONCES[name], at=AT)
    assert r.ok and not r.simulated, r.table()
    passed = {c.name for c in r.claims if c.status == "pass"}
    assert passed >= ALWAYS, r.table()
    assert f"({PRODUCT[name]})" in next(c.detail for c in r.claims if c.name == "snp.chain")
    assert status(r)["az.hcl.user_data"] == ("pass" if name == "evidence-v2.json" else "skip")
    assert status(r)["az.tpm.pcr8.initdata"] == "skip" and status(r)["snp.host_data"] == "skip"


def test_the_binding_rules_hold_in_the_genuine_data() -> None:
    """REPORT_DATA is SHA-256(runtime data) then 32 zero bytes; the quote covers all 24 SHA-256 PCRs."""
    for name in NONCES:
        ev = az_snp_vtpm.parse(doc(name))
        report = hcl.parse(ev.hcl_report)
        assert report.snp_report[0x50:0x90] == hashlib.sha256(report.var_data).digest() + bytes(32)
        assert tpm_quote.parse(ev.message).selection == ((tpm_quote.TPM_ALG_SHA256, tuple(range(24))),)


def test_a_flipped_quote_byte_fails_the_signature_alone() -> None:
    d = doc("evidence-v2.json")
    message = bytearray.fromhex(d["tpm_quote"]["message"])
    message[0x60] ^= 1  # inside clockInfo: the quote still parses and keeps its nonce and digest
    d["tpm_quote"]["message"] = message.hex()
    assert failed(check(d)) == {"az.tpm.quote.signature"}
    d = doc("evidence-v2.json")
    signature = bytearray.fromhex(d["tpm_quote"]["signature"])
    signature[0] ^= 1
    d["tpm_quote"]["signature"] = signature.hex()
    assert failed(check(d)) == {"az.tpm.quote.signature"}


def test_another_nonce_fails_the_nonce_claims() -> None:
    other = bytes(48)
    assert failed(check(doc("evidence-v2.json"), nonce=other)) == {"az.tpm.quote.nonce", "az.hcl.user_data"}
    assert failed(check(doc("evidence-v1.json"), "evidence-v1.json", nonce=b"challengf")) == {"az.tpm.quote.nonce"}
    # without a nonce nothing is claimed about freshness, and the rest still verifies
    r = verify("az-snp-vtpm", raw("evidence-v2.json"), b"", refs_for("evidence-v2.json"), at=AT)
    assert r.ok and status(r)["az.tpm.quote.nonce"] == "skip" and status(r)["az.hcl.user_data"] == "skip"


def test_a_changed_pcr_fails_the_digest_alone() -> None:
    d = doc("evidence-v2.json")
    d["tpm_quote"]["pcrs"][7] = "00" * 32
    assert failed(check(d)) == {"az.tpm.pcr_digest"}


def test_pcr_reference_values() -> None:
    name = "evidence-v2.json"
    pcr4 = az_snp_vtpm.parse(doc(name)).pcrs[4].hex()
    assert check(doc(name), refs=refs_for(name, pcr04=["11" * 32, pcr4])).ok
    r = check(doc(name), refs=refs_for(name, pcr04=["11" * 32]))
    assert failed(r) == {"az.tpm.pcrs"}
    assert next(c for c in r.claims if c.name == "az.tpm.pcrs").actual == {"pcr04": pcr4}


def test_changed_runtime_data_fails_report_data_alone() -> None:
    d = doc("evidence-v2.json")
    report = hcl.parse(base64.urlsafe_b64decode(d["hcl_report"]))
    blob = base64.urlsafe_b64decode(d["hcl_report"])
    at = blob.index(b"7DF7B373")  # the vmUniqueId: parses the same, hashes differently
    assert hcl.VAR_DATA_OFFSET <= at < hcl.VAR_DATA_OFFSET + len(report.var_data)
    d["hcl_report"] = b64url(blob[:at] + b"8" + blob[at + 1:])
    assert failed(check(d)) == {"az.hcl.report_data"}


def test_another_ak_fails_report_data_and_the_signature() -> None:
    """An attacker's AK in the runtime data breaks the SNP binding, the genuine AK would not sign the quote."""
    d, other = doc("evidence-v2.json"), doc("evidence-genoa.json")
    blob = bytearray(base64.urlsafe_b64decode(d["hcl_report"]))
    mine = hcl.runtime_data(hcl.parse(bytes(blob)).var_data).ak.public_numbers().n
    theirs = hcl.runtime_data(hcl.parse(bytes(other["report"])).var_data).ak.public_numbers().n
    old, new = (base64.urlsafe_b64encode(n.to_bytes(256, "big")).rstrip(b"=") for n in (mine, theirs))
    assert len(old) == len(new) and old in blob
    d["hcl_report"] = b64url(bytes(blob).replace(old, new))
    assert failed(check(d)) == {"az.hcl.report_data", "az.tpm.quote.signature"}


def test_a_flipped_snp_report_byte_fails_its_signature() -> None:
    d = doc("evidence-v2.json")
    blob = bytearray(base64.urlsafe_b64decode(d["hcl_report"]))
    blob[hcl.HEADER_SIZE + 0x140] ^= 1  # REPORT_ID: signed, judged by nothing else
    d["hcl_report"] = b64url(bytes(blob))
    assert failed(check(d)) == {"snp.signature"}


def test_the_snp_claims_judge_the_embedded_report() -> None:
    name = "evidence-v2.json"
    other = refs_for(name)
    other["snp"]["measurements"] = [{"measurement": "00" * 48}]
    assert failed(check(doc(name), refs=other)) == {"snp.measurement"}
    late = datetime.datetime(2033, 1, 1, tzinfo=datetime.UTC)
    assert failed(check(doc(name), at=late)) == {"snp.validity"}
    d = doc(name)  # another chip's VCEK (Genoa's, genuine and chaining to AMD) did not sign this report
    genoa = load_certificate(doc("evidence-genoa.json")["vcek"].encode(), "VCEK")
    d["vcek"] = b64url(genoa.public_bytes(serialization.Encoding.DER))
    assert failed(check(d)) == {"snp.signature"}


def test_initdata_is_bound_in_pcr8() -> None:
    # trustee's test vector: sha256(0x00 * 32 || 8505...) == bdda...
    digest = bytes.fromhex("8505e4e25e50a27c5dc8147af88efbece627fbea55291911eff832d9ee127781")
    assert az_snp_vtpm.initdata_pcr(digest).hex() == \
        "bddaccb9c52249e97a31baea61b7d91be8221a16e703d92148d04fb8e9c1dfdd"
    # Azure's genuine guests were no CoCo guests: their PCR 8 binds no initdata, so any digest fails alone
    assert failed(check(doc("evidence-v2.json"), initdata=digest)) == {"az.tpm.pcr8.initdata"}
    assert failed(check(doc("evidence-v2.json"), initdata=bytes(48))) == {"az.tpm.pcr8.initdata"}
    # a PCR 8 that holds the binding passes the claim (the quote's digest then no longer covers it)
    d = doc("evidence-v2.json")
    d["tpm_quote"]["pcrs"][8] = az_snp_vtpm.initdata_pcr(digest).hex()
    r = check(d, initdata=digest)
    assert status(r)["az.tpm.pcr8.initdata"] == "pass" and failed(r) == {"az.tpm.pcr_digest"}


def test_the_cli_verifies_az_evidence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refs = tmp_path / "refs.json"
    refs.write_text(json.dumps(refs_for("evidence-v2.json")))
    args = ["verify", "--report", str(DATA / "evidence-v2.json"), "--type", "az-snp-vtpm", "--reference-values",
            str(refs), "--nonce", V2_NONCE.hex(), "--at", "2025-06-01T00:00:00Z"]
    assert main(args) == 0, capsys.readouterr().out
    assert "az-snp-vtpm: VERIFIED" in capsys.readouterr().out
    assert main([*args[:-3], "00" * 48, *args[-2:]]) == 1


@pytest.mark.parametrize("mutate", [
    lambda d: d.pop("vcek"),
    lambda d: d.update(extra=1),
    lambda d: d.update(version=3),
    lambda d: d.update(version=True),
    lambda d: d.update(version=2.0),
    lambda d: d.update(hcl_report=b64url(base64.urlsafe_b64decode(d["hcl_report"])[:1300])),  # inside var_data
    lambda d: d.update(hcl_report=d["hcl_report"][:-3]),
    lambda d: d.update(hcl_report="*" + d["hcl_report"][1:]),
    lambda d: d["tpm_quote"].update(message=d["tpm_quote"]["message"] + "00"),
    lambda d: d["tpm_quote"].update(message="ab"),
    lambda d: d["tpm_quote"].update(pcrs=d["tpm_quote"]["pcrs"][:23]),
    lambda d: d["tpm_quote"]["pcrs"].__setitem__(0, "00"),
    lambda d: d["tpm_quote"].update(signature="x"),
])
def test_malformed_evidence_is_a_report_error(mutate: Any) -> None:
    d = doc("evidence-v2.json")
    mutate(d)
    with pytest.raises(ReportError):
        check(d)


def test_duplicate_keys_are_refused() -> None:
    text = raw("evidence-v2.json").replace(b'"version": 2,', b'"version": 2, "version": 1,')
    assert text != raw("evidence-v2.json")
    with pytest.raises(ReportError, match="duplicate"):
        verify("az-snp-vtpm", text, b"", refs_for("evidence-v2.json"), at=AT)


def _judge(data: bytes) -> str:
    """How the verifier took ``data``: "refused" (ReportError), "rejected" (a claim failed) or "passed";
    anything else it raises escapes, and fails the test."""
    try:
        r = verify("az-snp-vtpm", data, b"", refs_for("evidence-v2.json"), nonce=V2_NONCE, at=AT)
    except ReportError:
        return "refused"
    return "passed" if r.ok else "rejected"


def test_the_judge_tells_genuine_from_junk() -> None:
    """The property tests below lean on _judge; it must say "passed" for the genuine evidence."""
    assert _judge(raw("evidence-v2.json")) == "passed"
    assert _judge(b"{}") == "refused"


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                   max_size=4), max_leaves=12)
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SLOW
@given(st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()))
def test_junk_documents_raise_report_error(data: bytes) -> None:
    assert _judge(data) in ("refused", "rejected")


@SLOW
@given(st.sampled_from(["version", "tpm_quote", "hcl_report", "vcek", "tpm_quote.signature", "tpm_quote.message",
                        "tpm_quote.pcrs"]), JSON)
def test_junk_fields_raise_report_error(where: str, value: Any) -> None:
    d = doc("evidence-v2.json")
    *path, key = where.split(".")
    (d[path[0]] if path else d)[key] = value
    assert _judge(json.dumps(d).encode()) in ("refused", "rejected")


@SLOW
@given(st.sampled_from(["quote", "report", "vcek", "quote.signature", "quote.message", "quote.pcrs", "version"]),
       JSON)
def test_junk_fields_of_v0_evidence_raise_report_error(where: str, value: Any) -> None:
    d = doc("evidence-genoa.json")
    *path, key = where.split(".")
    (d[path[0]] if path else d)[key] = value
    try:
        r = verify("az-snp-vtpm", json.dumps(d).encode(), b"", refs_for("evidence-genoa.json"), nonce=GENOA_NONCE,
                   at=AT)
    except ReportError:
        return
    assert not r.ok, r.table()


@SLOW
@given(st.sampled_from(["signed", "var_data", "message", "signature"]), st.data())
def test_a_changed_authenticated_byte_never_passes(part: str, data: st.DataObject) -> None:
    d = doc("evidence-v2.json")
    blob = bytearray(base64.urlsafe_b64decode(d["hcl_report"]))
    var_size = len(hcl.parse(bytes(blob)).var_data)
    span = {"signed": (hcl.HEADER_SIZE, hcl.REQUEST_OFFSET),
            "var_data": (hcl.VAR_DATA_OFFSET, hcl.VAR_DATA_OFFSET + var_size)}
    if part in span:
        at = data.draw(st.integers(span[part][0], span[part][1] - 1))
        blob[at] ^= data.draw(st.integers(1, 255))
        d["hcl_report"] = b64url(bytes(blob))
    else:
        field = bytearray.fromhex(d["tpm_quote"][part])
        at = data.draw(st.integers(0, len(field) - 1))
        field[at] ^= data.draw(st.integers(1, 255))
        d["tpm_quote"][part] = field.hex()
    assert _judge(json.dumps(d).encode()) in ("refused", "rejected")
