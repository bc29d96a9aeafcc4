"""TDX collateral from files (verifier/collateral.py): every check passes on consistent collateral and each
fails alone when one thing changes; the PCK certificate's SGX extension parses on a genuine certificate."""

from __future__ import annotations

import base64
import datetime
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from tdxgen import PckChain, _raw_sig, make_quote

from agent.tee import tdx_report
from verifier import collateral as col
from verifier.claims import Result
from verifier.tdx import verify_tdx
from verifier.trust import intel_root

SGX = col.SGX_EXTENSION
FMSPC = bytes.fromhex("00806f050000")
DATA = Path(__file__).resolve().parent / "data"


def der(tag: int, value: bytes) -> bytes:
    n = len(value)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + value


def oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytes([parts[0] * 40 + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        body += bytes(reversed(chunk))
    return der(0x06, body)


def pair(dotted: str, value: bytes) -> bytes:
    return der(0x30, oid(dotted) + value)


def sgx_extension(svns: list[int], pcesvn: int, fmspc: bytes = FMSPC) -> bytes:
    comps = b"".join(pair(f"{SGX}.2.{i + 1}", der(0x02, bytes([v]))) for i, v in enumerate(svns))
    comps += pair(f"{SGX}.2.17", der(0x02, bytes([pcesvn]))) + pair(f"{SGX}.2.18", der(0x04, bytes(svns)))
    return der(0x30, pair(f"{SGX}.1", der(0x04, bytes(16))) + pair(f"{SGX}.2", der(0x30, comps))
               + pair(f"{SGX}.3", der(0x04, b"\0\0")) + pair(f"{SGX}.4", der(0x04, fmspc)))


def cert(subject: str, key: Any, issuer: str, issuer_key: Any, ca: bool, ext: bytes | None = None,
         window: tuple[datetime.datetime, datetime.datetime] | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    start, end = window or (now - datetime.timedelta(days=1), now + datetime.timedelta(days=30))
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # noqa: E731
    b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
         .public_key(key.public_key()).serial_number(int.from_bytes(os.urandom(8), "big"))
         .not_valid_before(start).not_valid_after(end)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ext is not None:
        b = b.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX), ext), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def stamp(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


PEM = serialization.Encoding.PEM


class World:
    """A test Intel: root, PCK chain with an SGX extension, TCB signing key, and collateral documents.

    Everything is valid around ``base`` (now unless given): certificates from 30 days before to a year after,
    the documents issued the day before and current for 200 days; ``signing_window`` overrides the TCB
    signing certificate's validity."""

    def __init__(self, svns: list[int] | None = None, pcesvn: int = 11, base: datetime.datetime | None = None,
                 signing_window: tuple[datetime.datetime, datetime.datetime] | None = None) -> None:
        self.root_k, self.inter_k, self.leaf_k, self.sign_k = (ec.generate_private_key(ec.SECP256R1())
                                                               for _ in range(4))
        base = base or datetime.datetime.now(datetime.UTC)
        window = (base - datetime.timedelta(days=30), base + datetime.timedelta(days=365))
        self.root = cert("TEST SGX Root CA", self.root_k, "TEST SGX Root CA", self.root_k, True, window=window)
        self.inter = cert("TEST PCK Platform CA", self.inter_k, "TEST SGX Root CA", self.root_k, True, window=window)
        self.svns = svns or [3] * 16
        self.leaf = cert("TEST PCK Certificate", self.leaf_k, "TEST PCK Platform CA", self.inter_k, False,
                         sgx_extension(self.svns, pcesvn), window=window)
        self.signing = cert("TEST TCB Signing", self.sign_k, "TEST SGX Root CA", self.root_k, False,
                            window=signing_window or window)
        self.root_pem = self.root.public_bytes(PEM)
        self.pck = PckChain(self.root_pem, b"".join(c.public_bytes(PEM) for c in (self.leaf, self.inter, self.root)),
                            self.leaf_k)
        self.chain_pem = self.signing.public_bytes(PEM) + self.root_pem
        issued, later = stamp(base - datetime.timedelta(days=1)), stamp(base + datetime.timedelta(days=200))
        comps = lambda v: [{"svn": v} for _ in range(16)]  # noqa: E731
        self.tcb_info: dict[str, Any] = {
            "id": "TDX", "version": 3, "issueDate": issued, "nextUpdate": later,
            "fmspc": FMSPC.hex(), "pceId": "0000", "tcbType": 0, "tcbEvaluationDataNumber": 17,
            "tcbLevels": [
                {"tcb": {"sgxtcbcomponents": comps(3), "pcesvn": 11, "tdxtcbcomponents": comps(0)},
                 "tcbDate": "2026-08-01T00:00:00Z", "tcbStatus": "UpToDate"},
                {"tcb": {"sgxtcbcomponents": comps(2), "pcesvn": 10, "tdxtcbcomponents": comps(0)},
                 "tcbDate": "2025-08-01T00:00:00Z", "tcbStatus": "OutOfDate"}],
            # SEAM module identities (Intel's real documents list MRSIGNER 0 for Intel-signed modules)
            "tdxModule": {"mrsigner": "00" * 48, "attributes": "0000000000000000",
                          "attributesMask": "FFFFFFFFFFFFFFFF"},
            "tdxModuleIdentities": [
                {"id": "TDX_01", "mrsigner": "00" * 48, "attributes": "0000000000000000",
                 "attributesMask": "FFFFFFFFFFFFFFFF",
                 "tcbLevels": [{"tcb": {"isvsvn": 4}, "tcbDate": "2026-08-01T00:00:00Z", "tcbStatus": "UpToDate"},
                               {"tcb": {"isvsvn": 2}, "tcbDate": "2025-08-01T00:00:00Z", "tcbStatus": "OutOfDate"}]}]}
        self.qe_identity: dict[str, Any] = {
            "id": "TD_QE", "version": 2, "issueDate": issued, "nextUpdate": later,
            "miscselect": "00000000", "miscselectMask": "FFFFFFFF", "attributes": "00" * 16,
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000", "mrsigner": "00" * 32, "isvprodid": 0,
            "tcbLevels": [{"tcb": {"isvsvn": 0}, "tcbDate": "2026-08-01T00:00:00Z", "tcbStatus": "UpToDate"}]}

    def signed(self, key: str, obj: dict[str, Any], flip: bool = False) -> bytes:
        text = json.dumps(obj, separators=(",", ":"))
        sig = bytearray(_raw_sig(self.sign_k, text.encode()))
        if flip:
            sig[5] ^= 1
        return ('{"' + key + '":' + text + ',"signature":"' + sig.hex() + '"}').encode()

    def collateral(self, flip_tcb: bool = False, chain: bytes | None = None) -> col.Collateral:
        return col.load(self.signed("tcbInfo", self.tcb_info, flip_tcb), self.signed("enclaveIdentity",
                        self.qe_identity), chain or self.chain_pem)

    def verify(self, c: col.Collateral | None = None, at: datetime.datetime | None = None,
               crls: tuple[Any, ...] = (), **body: object) -> Result:
        r = Result("tdx")
        verify_tdx(r, make_quote(self.pck, **body), self.root_pem, {}, None, None, c or self.collateral(),
                   at=at, crls=crls)
        return r


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
    svn = lambda svn, major: bytes([svn, major]) + bytes(14)  # noqa: E731
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
