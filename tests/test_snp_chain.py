"""SNP chains as the verifier judges them: validity at a moment, AMD-style CRLs, VLEK <- ASVK <- ARK.

Generated chains (keys held here, RSA-PSS like AMD's) break one certificate at a time; the genuine
VLEK-signed report from AWS (tests/data/README.md) proves the VLEK path against AMD's shipped ASVK.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import ReportError
from agent.tee import certtable, snp_report
from verifier import x509check
from verifier.claims import Result
from verifier.snp import verify_snp
from verifier.snp_chain import walk_chain
from verifier.trust import SnpAnchor, amd_anchors
from verifier.x509check import load_certificate

DATA = Path(__file__).parent / "data"
VLEK_REPORT = bytes.fromhex((DATA / "snp-milan-aws-vlek.report.hex").read_text())
VLEK = (DATA / "snp-milan-aws-vlek.der").read_bytes()
VLEK_REFS = {"measurements": [{"measurement": VLEK_REPORT[0x90:0xC0].hex()}]}
IN_VLEK_WINDOW = datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC)  # the VLEK is valid 2024-12-10..2025-12-10

T0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)
MEASUREMENT = b"\x42" * 48
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cocoon test PKI"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: Any, issuer: str, issuer_key: Any, serial: int, start: datetime.datetime,
          end: datetime.datetime) -> x509.Certificate:
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
            .public_key(key.public_key()).serial_number(serial).not_valid_before(start).not_valid_after(end)
            .sign(issuer_key, hashes.SHA384(), rsa_padding=PSS))


@dataclass
class Pki:
    """An AMD-shaped chain whose keys the test holds, so it can sign CRLs and reports."""

    ark_key: Any
    mid_key: Any
    leaf_key: Any
    ark: x509.Certificate
    mid: x509.Certificate
    leaf: x509.Certificate
    signer: str

    def anchor(self) -> SnpAnchor:
        pem = serialization.Encoding.PEM
        ark, mid = self.ark.public_bytes(pem), self.mid.public_bytes(pem)
        return SnpAnchor("test", ark, simulated=True, **({"asvk_pem": mid} if self.signer == "vlek" else
                                                         {"ask_pem": mid}))

    def report(self, signing_key: int | None = None) -> bytes:
        signer_info = (1 if self.signer == "vlek" else 0) if signing_key is None else signing_key
        signer_info <<= 2  # SIGNING_KEY is SIGNER_INFO bits 2-4
        return snp_report.sign(snp_report.build_body(version=3, policy=0x30000, signature_algo=1, vmpl=0,
                                                     signer_info=signer_info, measurement=MEASUREMENT),
                               self.leaf_key)

    def crl(self, issuer: str, revoked: list[int], last: datetime.datetime = T0,
            nxt: datetime.datetime = T0 + 30 * DAY, key: Any = None) -> x509.CertificateRevocationList:
        """An AMD-style CRL: RSA-PSS/SHA-384 by the ARK (or the intermediate, for leaves)."""
        cert, own_key = (self.ark, self.ark_key) if issuer == "ark" else (self.mid, self.mid_key)
        b = x509.CertificateRevocationListBuilder().issuer_name(cert.subject).last_update(last).next_update(nxt)
        for serial in revoked:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(last).build())
        return b.sign(key or own_key, hashes.SHA384(), rsa_padding=PSS)


def make_pki(signer: str = "vcek", windows: dict[str, tuple[datetime.datetime, datetime.datetime]] | None = None,
             product: str = "Milan") -> Pki:
    span = {"ark": (T0 - DAY, T0 + 9000 * DAY), "mid": (T0 - DAY, T0 + 9000 * DAY), "leaf": (T0, T0 + 365 * DAY)}
    span.update(windows or {})
    ark_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    mid_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf_key = ec.generate_private_key(ec.SECP384R1())
    ark_cn = f"TEST-ARK-{product}"
    mid_cn, leaf_cn = (f"TEST-SEV-VLEK-{product}", "TEST-SEV-VLEK") if signer == "vlek" else (f"TEST-SEV-{product}",
                                                                                              "TEST-SEV-VCEK")
    ark = _cert(ark_cn, ark_key, ark_cn, ark_key, 0x10000, *span["ark"])
    mid = _cert(mid_cn, mid_key, ark_cn, ark_key, 0x10001, *span["mid"])
    leaf = _cert(leaf_cn, leaf_key, mid_cn, mid_key, 0x77, *span["leaf"])
    return Pki(ark_key, mid_key, leaf_key, ark, mid, leaf, signer)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture(scope="module")
def vlek_pki() -> Pki:
    return make_pki("vlek")


def run(p: Pki, at: datetime.datetime | None = T0 + 10 * DAY, crls: tuple[Any, ...] = (), aux: bytes | None = None,
        anchors: list[SnpAnchor] | None = None) -> Result:
    der = serialization.Encoding.DER
    if aux is None:
        aux = certtable.build({p.signer: p.leaf.public_bytes(der), "ask": p.mid.public_bytes(der),
                               "ark": p.ark.public_bytes(der)})
    result = Result("snp")
    verify_snp(result, p.report(), aux, anchors or [p.anchor()], {"measurements": [{"measurement": MEASUREMENT.hex()}]},
               None, None, at=at, crls=crls)
    return result


def failed(result: Result) -> set[str]:
    return {c.name for c in result.failed}


def claim(result: Result, name: str) -> Any:
    return next(c for c in result.claims if c.name == name)


# --- validity ---------------------------------------------------------------------------------------

def test_generated_chain_verifies_inside_every_window(pki: Pki, vlek_pki: Pki) -> None:
    for p, names in ((pki, "ARK, ASK, VCEK"), (vlek_pki, "ARK, ASVK, VLEK")):
        r = run(p)
        assert r.ok, r.table()
        assert claim(r, "snp.validity").detail == f"{names} within their validity at 2024-01-11T00:00:00Z (--at)"
        assert claim(r, "snp.revocation").status == "skip"


@pytest.mark.parametrize(("which", "name"), [("ark", "ARK (TEST-ARK-Milan)"), ("mid", "ASK (TEST-SEV-Milan)"),
                                             ("leaf", "VCEK (TEST-SEV-VCEK)")])
def test_each_certificate_expires_and_starts_alone(which: str, name: str) -> None:
    p = make_pki(windows={which: (T0 + 5 * DAY, T0 + 20 * DAY)})
    assert run(p, at=T0 + 10 * DAY).ok
    expired = run(p, at=T0 + 21 * DAY)
    assert failed(expired) == {"snp.validity"}, expired.table()
    assert claim(expired, "snp.validity").detail == f"{name} expired on 2024-01-21 (checked at 2024-01-22T00:00:00Z)"
    early = run(p, at=T0 + 4 * DAY)
    assert failed(early) == {"snp.validity"}
    assert claim(early, "snp.validity").detail.startswith(f"{name} is not valid yet at 2024-01-05")
    # every other claim is still judged: a relying party sees the signature held
    assert claim(early, "snp.signature").status == "pass"


def test_validity_is_judged_now_unless_told(pki: Pki) -> None:
    r = run(pki, at=None)  # the leaf expired at the end of 2024; the clock says later
    assert failed(r) == {"snp.validity"} and "VCEK (TEST-SEV-VCEK) expired on 2024-12-31" in r.failed[0].detail
    assert "(--at)" not in r.failed[0].detail
    # a naive time is UTC; an aware one is converted
    assert run(pki, at=datetime.datetime(2024, 6, 1)).ok
    assert run(pki, at=datetime.datetime(2024, 6, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))).ok


def test_vlek_chain_certificates_expire(vlek_pki: Pki) -> None:
    p = make_pki("vlek", windows={"mid": (T0, T0 + 2 * DAY)})
    r = run(p, at=T0 + 3 * DAY)
    assert failed(r) == {"snp.validity"} and "ASVK (TEST-SEV-VLEK-Milan) expired" in r.failed[0].detail


# --- revocation -------------------------------------------------------------------------------------

def test_amd_style_crl_revokes_the_ask_or_the_vcek(pki: Pki) -> None:
    clean = pki.crl("ark", [0x1234])
    r = run(pki, crls=(clean,))
    assert r.ok and claim(r, "snp.revocation").detail == "not revoked: ARK, ASK, VCEK checked against 1 CRL(s)"
    revoked = run(pki, crls=(pki.crl("ark", [pki.mid.serial_number]),))
    assert failed(revoked) == {"snp.revocation"}
    assert revoked.failed[0].detail == ("ASK (TEST-SEV-Milan) (serial 0x10001) is revoked by "
                                        "CN=TEST-ARK-Milan,O=cocoon test PKI")
    leaf = run(pki, crls=(clean, pki.crl("mid", [pki.leaf.serial_number])))
    assert failed(leaf) == {"snp.revocation"}
    assert "VCEK (TEST-SEV-VCEK) (serial 0x77) is revoked" in leaf.failed[0].detail
    # the same file read back the ways a relying party passes it (DER as KDS serves it, or PEM)
    der = pki.crl("ark", [pki.mid.serial_number]).public_bytes(serialization.Encoding.DER)
    assert failed(run(pki, crls=tuple(x509check.load_crls(der)))) == {"snp.revocation"}


def test_crl_must_be_genuine_and_current(pki: Pki) -> None:
    stale = run(pki, at=T0 + 31 * DAY, crls=(pki.crl("ark", []),))
    assert failed(stale) == {"snp.revocation"} and "stale" in stale.failed[0].detail
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = run(pki, crls=(pki.crl("ark", [], key=forger),))  # ARK's name, someone else's key
    assert failed(forged) == {"snp.revocation"} and "not signed by its issuer's key" in forged.failed[0].detail
    # an auditor's moment before the CRL was issued: it cannot speak for that time
    early = run(pki, crls=(pki.crl("ark", [], last=T0 + 20 * DAY, nxt=T0 + 50 * DAY),))
    assert failed(early) == {"snp.revocation"} and "issued after" in early.failed[0].detail


def test_crl_of_another_chain_is_not_evidence(pki: Pki) -> None:
    other = make_pki(product="Genoa")  # a fleet passes every product's CRL; Genoa's says nothing of Milan's ASK
    r = run(pki, crls=(other.crl("ark", [pki.mid.serial_number]),))
    assert r.ok
    assert claim(r, "snp.revocation").status == "skip" and "none of the 1 CRL(s)" in claim(r, "snp.revocation").detail


def test_revoked_asvk(vlek_pki: Pki) -> None:
    r = run(vlek_pki, crls=(vlek_pki.crl("ark", [vlek_pki.mid.serial_number]),))
    assert failed(r) == {"snp.revocation"} and r.failed[0].detail.startswith("ASVK (TEST-SEV-VLEK-Milan)")


# --- VLEK: roles and the genuine AWS report ---------------------------------------------------------

def test_an_ask_never_vouches_for_a_vlek_nor_an_asvk_for_a_vcek(pki: Pki, vlek_pki: Pki) -> None:
    pem = serialization.Encoding.PEM
    ark, mid, leaf = (c.public_bytes(pem) for c in (pki.ark, pki.mid, pki.leaf))
    with pytest.raises(ReportError, match="is an ASK, but the report is signed by a VLEK, which only an ASVK issues"):
        walk_chain(ark, ark, mid, leaf, "vlek")
    ark, mid, leaf = (c.public_bytes(pem) for c in (vlek_pki.ark, vlek_pki.mid, vlek_pki.leaf))
    with pytest.raises(ReportError, match="is an ASVK, but the report is signed by a VCEK"):
        walk_chain(ark, ark, mid, leaf, "vcek")
    milan = next(a for a in amd_anchors() if a.name == "milan")
    with pytest.raises(ReportError, match="is an ASK, but"):
        walk_chain(milan.ark_pem, milan.ark_pem, milan.ask_pem, VLEK, "vlek")
    assert walk_chain(milan.ark_pem, milan.ark_pem, milan.asvk_pem, VLEK, "vlek").names == ("ARK", "ASVK", "VLEK")


@pytest.mark.parametrize(("field", "name"), [(7, "none"), (2, "reserved")])
def test_a_report_signed_by_no_key_fails_the_chain(pki: Pki, field: int, name: str) -> None:
    """The VCEK's signature over a report whose SIGNING_KEY says no key (or a reserved value) signed it."""
    der = serialization.Encoding.DER
    aux = certtable.build({"vcek": pki.leaf.public_bytes(der), "ask": pki.mid.public_bytes(der),
                           "ark": pki.ark.public_bytes(der)})
    result = Result("snp")
    verify_snp(result, pki.report(signing_key=field), aux, [pki.anchor()], {}, None, None, at=T0 + 10 * DAY)
    assert failed(result) == {"snp.chain"} and f"SIGNING_KEY is {name}" in result.failed[0].detail


def test_a_root_without_an_asvk_says_so(vlek_pki: Pki) -> None:
    anchor = vlek_pki.anchor()
    bare = SnpAnchor(anchor.name, anchor.ark_pem, simulated=True)  # e.g. the sim root: no ASVK shipped
    der = serialization.Encoding.DER
    r = run(vlek_pki, aux=certtable.build({"vlek": vlek_pki.leaf.public_bytes(der)}), anchors=[bare])
    assert failed(r) == {"snp.chain"} and "no ASVK in the evidence and none shipped" in r.failed[0].detail


def _genuine(report: bytes = VLEK_REPORT, at: datetime.datetime | None = IN_VLEK_WINDOW,
             anchors: list[SnpAnchor] | None = None) -> Result:
    result = Result("snp")
    verify_snp(result, report, b"", anchors or amd_anchors(), VLEK_REFS, None, None, vcek_pem=VLEK, at=at)
    return result


def test_genuine_vlek_report_verifies_vlek_asvk_ark() -> None:
    assert snp_report.parse(VLEK_REPORT).signing_key == "vlek"
    r = _genuine()
    # AWS's guest ran at VMPL 1 (under an SVSM); cocoon's guests report from VMPL 0, so that claim alone fails
    assert failed(r) == {"snp.vmpl"}, r.table()
    passed = {c.name: c.detail for c in r.claims if c.status == "pass"}
    assert passed["snp.chain"] == "VLEK <- ASVK <- ARK (milan)"
    assert passed["snp.signature"] == "ECDSA P-384 by the VLEK over bytes 0x000-0x29f"
    assert "cc-us-east-2.amazonaws.com" in passed["snp.vlek.tcb"]
    assert passed["snp.validity"] == "ARK, ASVK, VLEK within their validity at 2025-06-01T00:00:00Z (--at)"
    assert not any("vcek" in c.name or "VCEK" in c.detail for c in r.claims)
    # today the VLEK (a one-year certificate) has expired: the same evidence fails for that too
    now = _genuine(at=None)
    assert failed(now) == {"snp.vmpl", "snp.validity"}
    assert claim(now, "snp.validity").detail.startswith("VLEK (SEV-VLEK) expired on 2025-12-10")
    # Genoa's and Turin's ASVKs do not vouch for a Milan VLEK
    others = [a for a in amd_anchors() if a.name != "milan"]
    assert failed(_genuine(anchors=others)) == {"snp.chain"}


def test_genuine_vlek_report_fails_on_any_flipped_signed_byte() -> None:
    milan = [a for a in amd_anchors() if a.name == "milan"]
    for pos in range(snp_report.SIGNED_SIZE):
        bad = bytearray(VLEK_REPORT)
        bad[pos] ^= 1 << (pos % 8)
        r = _genuine(bytes(bad), anchors=milan)
        # a flip the parser refuses (version, reserved bytes), one that renames the signing key, or the signature
        assert failed(r) & {"snp.report.format", "snp.chain", "snp.signature"}, (pos, r.table())
    wrong = bytearray(VLEK_REPORT)
    wrong[0x90] ^= 1
    r = _genuine(bytes(wrong), anchors=milan)
    assert failed(r) >= {"snp.signature"}
    assert claim(r, "snp.signature").detail == "SNP report signature does not verify with the given VLEK"


# --- report size ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("size", "how"), [(1183, "1 too short"), (1185, "1 too long"), (0, "1184 too short")])
def test_a_wrong_sized_snp_report_says_so(size: int, how: str) -> None:
    data = (VLEK_REPORT + bytes(8))[:size]
    with pytest.raises(ReportError, match=f"^SNP report of the wrong size: {size} bytes is {how}; "
                                          r"an ATTESTATION_REPORT is exactly 1184 \(0x4a0\) bytes$"):
        snp_report.parse(data)
    result = Result("snp")
    verify_snp(result, data, b"", amd_anchors(), VLEK_REFS, None, None)
    assert failed(result) == {"snp.report.format"} and "SNP report of the wrong size" in result.failed[0].detail


def test_sim_vcek_validity_is_sensible(sim_chain) -> None:  # type: ignore[no-untyped-def]
    vcek = x509.load_pem_x509_certificate(sim_chain.vcek_pem)
    now = datetime.datetime.now(datetime.UTC)
    assert vcek.not_valid_before_utc <= now <= vcek.not_valid_after_utc
    assert vcek.not_valid_after_utc - vcek.not_valid_before_utc >= datetime.timedelta(days=365)


def test_a_host_supplied_ask_whose_issuer_does_not_parse_fails_the_chain() -> None:
    """Before: ValueError (``cryptography`` parses names on first use) escaped verify_snp from the host's table."""
    der = serialization.Encoding.DER
    anchor = next(a for a in amd_anchors() if a.name == "genoa")
    ask = x509.load_pem_x509_certificate(anchor.ask_pem)
    raw = bytearray(ask.public_bytes(der))
    name = ask.issuer.public_bytes()
    at = raw.index(name) + 11
    assert raw[at] == 0x0C  # the UTF8String tag of the issuer's first attribute value
    raw[at] = 0
    vcek = load_certificate((DATA / "snp-genoa-azure.vcek.pem").read_bytes(), "VCEK")  # serial 0, as AMD issues
    aux = certtable.build({"ask": bytes(raw), "vcek": vcek.public_bytes(der)})
    report = bytes.fromhex((DATA / "snp-genoa-azure.report.hex").read_text())
    refs = {"measurements": [{"measurement": report[0x90:0xC0].hex()}]}
    for trusted, verdict in ((anchor, "pass"), (SnpAnchor("genoa", anchor.ark_pem), "fail")):
        result = Result("snp")  # with the shipped ASK the host's bad copy costs nothing; without, it fails
        verify_snp(result, report, aux, [trusted], refs, None, None)
        assert claim(result, "snp.chain").status == verdict
    assert "ASK does not parse" in claim(result, "snp.chain").detail


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["ark", "ask", "vcek"]), st.integers(0, 2000), st.integers(0, 255))
def test_any_byte_of_a_host_supplied_certificate_is_a_claim(which: str, index: int, value: int) -> None:
    """The host writes the certificate table: a byte changed anywhere in any of its certificates is a claim,
    never an exception, and the chain holds only while what the issuer signed (the TBS and its signature) is
    the genuine one. The outer signatureAlgorithm is not signed (X.509), and the PSS check does not read it."""
    der = serialization.Encoding.DER
    anchor = next(a for a in amd_anchors() if a.name == "genoa")
    vcek = load_certificate((DATA / "snp-genoa-azure.vcek.pem").read_bytes(), "VCEK")
    table = {"ark": load_certificate(anchor.ark_pem, "ARK").public_bytes(der),
             "ask": load_certificate(anchor.ask_pem, "ASK").public_bytes(der), "vcek": vcek.public_bytes(der)}
    raw, genuine_bytes = bytearray(table[which]), table[which]
    raw[index % len(raw)] = value
    try:
        genuine = load_certificate(table[which], which)
        mutant = load_certificate(bytes(raw), which)
        changed = (mutant.tbs_certificate_bytes, mutant.signature) != (genuine.tbs_certificate_bytes, genuine.signature)
    except ReportError:
        changed = True
    table[which] = bytes(raw)
    report = bytes.fromhex((DATA / "snp-genoa-azure.report.hex").read_text())
    result = Result("snp")
    verify_snp(result, report, certtable.build(table), [SnpAnchor("genoa", anchor.ark_pem)],
               {"measurements": [{"measurement": report[0x90:0xC0].hex()}]}, None, None)
    held = claim(result, "snp.chain").status == "pass"
    assert not (held and changed)  # a forged or damaged chain never holds
    assert held or bytes(raw) != genuine_bytes  # the genuine table always does (the ARK must be byte-identical)
