"""Certificates expire and are revoked: the PCK chain and the collateral's issuer chain are judged at one
moment (now, or the ``at`` an auditor names), every certificate within its validity and, given CRLs, none
revoked by a CRL its issuer signed. Generated Intel-shaped chains break one thing at a time; the genuine
GCP quote's chain and Intel's genuine Root CA CRL are judged at moments inside and outside their windows."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from support.tdxgen import World

from agent.errors import ReportError
from agent.tee import tdx_report
from verifier import x509check
from verifier.claims import Result
from verifier.intel_chain import chain_revocation
from verifier.tdx import verify_tdx
from verifier.trust import intel_root

DATA = Path(__file__).resolve().parent / "data"
UTC = datetime.UTC
BASE = datetime.datetime(2025, 3, 1, tzinfo=UTC)
EXPIRED_2025 = (datetime.datetime(2024, 6, 30, tzinfo=UTC), datetime.datetime(2025, 6, 30, tzinfo=UTC))
CHAIN_CLAIMS = ("tdx.pck_chain", "tdx.collateral", "tdx.tcb", "tdx.qe_identity")


def failed(r: Result) -> list[str]:
    return [c.name for c in r.failed if c.name.startswith(CHAIN_CLAIMS)]


def status(r: Result, name: str) -> str:
    return {c.name: c.status for c in r.claims}[name]


def detail(r: Result, name: str) -> str:
    return {c.name: c.detail for c in r.claims}[name]


def crl(issuer: str, key: Any, revoked: tuple[int, ...] = (), last: datetime.datetime | None = None,
        days: int = 30) -> x509.CertificateRevocationList:
    last = last or datetime.datetime.now(UTC) - datetime.timedelta(days=1)
    b = (x509.CertificateRevocationListBuilder()
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
         .last_update(last).next_update(last + datetime.timedelta(days=days)))
    for serial in revoked:
        b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                      .revocation_date(last).build())
    return b.sign(key, hashes.SHA256())


def test_an_expired_tcb_signing_certificate_fails() -> None:
    """The issue's example: a TCB signing certificate that expired in 2025 passed on main."""
    r = World(signing_window=EXPIRED_2025).verify()
    assert failed(r) == ["tdx.collateral.chain.validity"]
    assert "TCB signing certificate (TEST TCB Signing) expired on 2025-06-30" in detail(
        r, "tdx.collateral.chain.validity")


def test_at_judges_old_evidence_as_it_stood_then() -> None:
    w = World(base=BASE, signing_window=EXPIRED_2025)
    r = w.verify(at=BASE)  # inside every window: an auditor's verdict on 2025-03-01
    assert failed(r) == [] and status(r, "tdx.pck_chain.validity") == "pass"
    assert "(--at)" in detail(r, "tdx.pck_chain.validity")
    r = w.verify(at=datetime.datetime(2025, 7, 15, tzinfo=UTC))  # the TCB signing certificate has expired
    assert failed(r) == ["tdx.collateral.chain.validity"]
    r = w.verify()  # now: every certificate and both documents are long past
    assert {"tdx.pck_chain.validity", "tdx.collateral.chain.validity"} <= set(failed(r))
    assert "PCK certificate (TEST PCK Certificate) expired" in detail(r, "tdx.pck_chain.validity")
    r = w.verify(at=datetime.datetime(2025, 1, 1, tzinfo=UTC))  # before the PCK chain was issued
    assert "not valid yet" in detail(r, "tdx.pck_chain.validity")


def test_collateral_freshness_is_judged_at_the_same_moment() -> None:
    w = World(base=BASE)
    assert failed(w.verify(at=BASE)) == []
    assert failed(w.verify(at=BASE - datetime.timedelta(days=2))) == [  # before the documents were issued
        "tdx.collateral.tcb_info.fresh", "tdx.collateral.qe_identity.fresh"]
    r = w.verify(at=BASE + datetime.timedelta(days=201))  # past nextUpdate, certificates still valid
    assert failed(r) == ["tdx.collateral.tcb_info.fresh", "tdx.collateral.qe_identity.fresh"]
    assert "past its nextUpdate" in detail(r, "tdx.collateral.tcb_info.fresh")


def test_a_revoked_pck_fails() -> None:
    w = World()
    clean = crl("TEST PCK Platform CA", w.inter_k, (12345,))
    r = w.verify(crls=(clean,))
    assert failed(r) == [] and status(r, "tdx.pck_chain.revocation") == "pass"
    r = w.verify(crls=(crl("TEST PCK Platform CA", w.inter_k, (w.leaf.serial_number,)),))
    assert failed(r) == ["tdx.pck_chain.revocation"]
    assert "PCK certificate (TEST PCK Certificate)" in detail(r, "tdx.pck_chain.revocation")
    assert "revoked by CN=TEST PCK Platform CA" in detail(r, "tdx.pck_chain.revocation")


def test_the_root_ca_crl_revokes_the_pck_ca_and_the_tcb_signing_certificate() -> None:
    w = World()
    r = w.verify(crls=(crl("TEST SGX Root CA", w.root_k, (w.inter.serial_number,)),))
    assert failed(r) == ["tdx.pck_chain.revocation"] and "PCK CA (TEST PCK Platform CA)" in detail(
        r, "tdx.pck_chain.revocation")
    r = w.verify(crls=(crl("TEST SGX Root CA", w.root_k, (w.signing.serial_number,)),))
    assert failed(r) == ["tdx.collateral.chain.revocation"]
    assert status(r, "tdx.pck_chain.revocation") == "pass"  # the same CRL, consulted for the PCK chain too


def test_a_crl_not_signed_by_its_issuer_fails() -> None:
    w = World()
    forger = ec.generate_private_key(ec.SECP256R1())
    r = w.verify(crls=(crl("TEST PCK Platform CA", forger),))
    assert failed(r) == ["tdx.pck_chain.revocation"]
    assert "not signed by its issuer's key" in detail(r, "tdx.pck_chain.revocation")
    r = w.verify(crls=(crl("TEST SGX Root CA", forger),))
    assert set(failed(r)) == {"tdx.pck_chain.revocation", "tdx.collateral.chain.revocation"}


def test_stale_and_unrelated_crls() -> None:
    w = World()
    stale = crl("TEST PCK Platform CA", w.inter_k, last=datetime.datetime.now(UTC) - datetime.timedelta(days=40))
    r = w.verify(crls=(stale,))
    assert failed(r) == ["tdx.pck_chain.revocation"] and "stale" in detail(r, "tdx.pck_chain.revocation")
    other = World()
    r = w.verify(crls=(crl("TEST PCK Platform CA", other.inter_k),))  # same name, another CA's key
    assert failed(r) == ["tdx.pck_chain.revocation"]
    r = w.verify(crls=(crl("Some AMD ARK", ec.generate_private_key(ec.SECP256R1())),))
    assert failed(r) == [] and status(r, "tdx.pck_chain.revocation") == "skip"
    assert "none of the 1 CRL(s)" in detail(r, "tdx.pck_chain.revocation")
    assert status(w.verify(), "tdx.pck_chain.revocation") == "skip"


# --- genuine evidence -------------------------------------------------------------------------------------
def gcp_quote() -> bytes:
    return tdx_report.trim_padding(base64.b64decode((DATA / "tdx-v4-gcp.quote.b64").read_text()))


def gcp_chain() -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pck_pem(gcp_quote()).rstrip(b"\0"))


def pck_pem(quote: bytes) -> bytes:
    certification = tdx_report.parse_quote(quote).qe_certification
    assert certification is not None
    return certification.pck_cert_data


def verify_gcp(**kw: Any) -> Result:
    r = Result("tdx")
    verify_tdx(r, gcp_quote(), intel_root(), {}, None, None, **kw)
    return r


def test_genuine_pck_chain_at_moments_inside_and_outside_its_validity() -> None:
    """PCK certificate 2025-03-06..2032-03-06, PCK Platform CA 2018..2033, Intel SGX Root CA 2018..2049."""
    assert status(verify_gcp(at=datetime.datetime(2026, 1, 1, tzinfo=UTC)), "tdx.pck_chain.validity") == "pass"
    r = verify_gcp(at=datetime.datetime(2024, 12, 1, tzinfo=UTC))
    assert "PCK certificate (Intel SGX PCK Certificate) is not valid yet" in detail(r, "tdx.pck_chain.validity")
    r = verify_gcp(at=datetime.datetime(2033, 6, 1, tzinfo=UTC))
    assert "PCK CA (Intel SGX PCK Platform CA) expired on 2033-05-21" in detail(r, "tdx.pck_chain.validity")


def test_genuine_intel_root_ca_crl() -> None:
    """Intel's Root CA CRL of 2023-04-03 (next update 2024-04-02) verifies under the shipped root and lists
    nothing: the PCK Platform CA passes while it is current; judged later, it is stale and fails closed."""
    crls = x509check.load_crls((DATA / "intel-sgx-root-ca-2023.crl.pem").read_bytes())
    chain = gcp_chain()
    roles = ["PCK certificate", "PCK CA", "root CA"]
    r = Result("tdx")
    assert chain_revocation(r, "x", chain, roles, crls, datetime.datetime(2023, 6, 1, tzinfo=UTC))
    assert "CN=Intel SGX Root CA" in detail(r, "x")
    r = verify_gcp(crls=crls, at=datetime.datetime(2026, 1, 1, tzinfo=UTC))
    assert status(r, "tdx.pck_chain.revocation") == "fail" and "stale" in detail(r, "tdx.pck_chain.revocation")


# --- CA constraints: a PCK key is hardware-held but extractable on an out-of-date platform (the very case TCB
# status exists for); it must not be able to issue a PCK certificate claiming a newer TCB, nor sign collateral.
def _pem(*certs: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def test_a_pck_key_cannot_issue_a_pck_certificate() -> None:
    """Before: [fake leaf <- real PCK leaf (cA false) <- CA <- root] passed tdx.pck_chain, the fake leaf's SGX
    extension (any FMSPC and SVNs) then judged against the TCB info as UpToDate."""
    from support.tdxgen import PckChain, cert, make_quote, sgx_extension

    w = World()
    fake_k = ec.generate_private_key(ec.SECP256R1())
    fake = cert("TEST PCK Certificate", fake_k, "TEST PCK Certificate", w.leaf_k, False, sgx_extension([9] * 16, 11))
    pck = PckChain(w.root_pem, _pem(fake, w.leaf, w.inter, w.root), fake_k)
    r = Result("tdx")
    verify_tdx(r, make_quote(pck), w.root_pem, {}, None, None, w.collateral())
    assert status(r, "tdx.pck_chain") == "fail" and "not a CA" in detail(r, "tdx.pck_chain")


def test_path_length_and_key_usage_of_a_ca_are_honoured() -> None:
    from support.tdxgen import cert

    from verifier.intel_chain import walk_chain as _chain

    w = World()
    sub_k = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(UTC)
    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


    def issue(subject: str, key: Any, issuer: str, issuer_key: Any, path: int | None, sign: bool) -> x509.Certificate:
        usage = x509.KeyUsage(True, False, False, False, False, sign, False, False, False)
        return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                .public_key(key.public_key()).serial_number(7).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=9))
                .add_extension(x509.BasicConstraints(ca=True, path_length=path), critical=True)
                .add_extension(usage, critical=True).sign(issuer_key, hashes.SHA256()))

    ca0 = issue("TEST PCK Platform CA", w.inter_k, "TEST SGX Root CA", w.root_k, 0, True)
    sub = issue("TEST Sub CA", sub_k, "TEST PCK Platform CA", w.inter_k, None, True)
    end = cert("TEST PCK Certificate", w.leaf_k, "TEST Sub CA", sub_k, False)
    with pytest.raises(ReportError, match="path length of 0, but 1 CA"):
        _chain(_pem(end, sub, ca0, w.root), w.root_pem)
    no_sign = issue("TEST PCK Platform CA", w.inter_k, "TEST SGX Root CA", w.root_k, None, False)
    with pytest.raises(ReportError, match="lacks keyCertSign"):
        _chain(_pem(w.leaf, no_sign, w.root), w.root_pem)
    assert len(_chain(_pem(w.leaf, ca0, w.root), w.root_pem)) == 3
    with pytest.raises(ReportError, match="is a CA, not the end-entity"):  # the leaf dropped: the CA would sign
        _chain(_pem(ca0, w.root), w.root_pem)


def test_collateral_signed_by_a_pck_key_fails() -> None:
    """Before: a collateral chain [PCK certificate, PCK CA, root] passed, so an (extracted) PCK key could sign a
    TCB info calling its own platform UpToDate. Intel's TCB-Info-Issuer-Chain is the TCB signing certificate
    issued by the root itself."""
    import json

    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    from verifier import collateral as col

    w = World()

    def signed(key: str, obj: dict[str, Any]) -> bytes:
        text = json.dumps(obj, separators=(",", ":"))
        r, s = decode_dss_signature(w.leaf_k.sign(text.encode(), ec.ECDSA(hashes.SHA256())))
        return ('{"' + key + '":' + text + ',"signature":"' + (r.to_bytes(32, "big") + s.to_bytes(32, "big")).hex()
                + '"}').encode()

    c = col.load(signed("tcbInfo", w.tcb_info), signed("enclaveIdentity", w.qe_identity), w.pck.chain_pem)
    r = w.verify(c)
    assert status(r, "tdx.collateral.chain") == "fail" and "issued by the root" in detail(r, "tdx.collateral.chain")
    assert not r.ok


def test_a_certificate_with_a_malformed_name_in_the_pck_chain_is_a_claim_not_a_traceback() -> None:
    """Before: ValueError (a lazily parsed subject) escaped while _chain wrote its error message. One base64
    character of the genuine quote's PCK Platform CA (found by fuzzing) leaves a certificate whose subject
    does not parse."""
    quote = bytearray(base64.b64decode((DATA / "tdx-v4-gcp.quote.b64").read_text().strip()))
    assert quote[3340:3341] == b"C"
    quote[3340] = ord("+")
    r = Result("tdx")
    verify_tdx(r, tdx_report.trim_padding(bytes(quote)), intel_root(), {}, None, None)
    assert status(r, "tdx.pck_chain") == "fail" and "does not parse" in detail(r, "tdx.pck_chain")


def test_a_pck_certificate_of_an_unknown_x509_version_is_a_claim() -> None:
    """Before: cryptography's InvalidVersion (not a ValueError) escaped verify_tdx from the quote's chain."""
    from cryptography.hazmat.primitives.serialization import Encoding
    from support.tdxgen import PckChain, make_quote

    w = World()
    der = bytearray(w.leaf.public_bytes(Encoding.DER))
    at = der.index(b"\xa0\x03\x02\x01\x02")  # [0] EXPLICIT INTEGER 2 (v3)
    der[at + 4] = 1
    pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(bytes(der)) + b"-----END CERTIFICATE-----\n"
    r = Result("tdx")
    verify_tdx(r, make_quote(PckChain(w.root_pem, pem + _pem(w.inter, w.root), w.leaf_k)), w.root_pem, {}, None, None)
    assert status(r, "tdx.pck_chain") == "fail" and "not PEM certificates" in detail(r, "tdx.pck_chain")


GCP_QUOTE = tdx_report.trim_padding(base64.b64decode((DATA / "tdx-v4-gcp.quote.b64").read_text().strip()))
GCP_PEM = pck_pem(GCP_QUOTE)
GCP_PEM_AT = GCP_QUOTE.index(GCP_PEM)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(GCP_PEM) - 1), st.sampled_from(b"+/=-\n AZaz09\x00\xff"))
def test_any_character_of_the_quotes_pck_chain_is_a_claim(index: int, value: int) -> None:
    """The quote's PCK chain is the platform's to write: a character changed anywhere in its PEM is a claim,
    never an exception, and the chain holds only while every certificate is the genuine one."""
    quote = bytearray(GCP_QUOTE)
    quote[GCP_PEM_AT + index] = value
    r = Result("tdx")
    verify_tdx(r, bytes(quote), intel_root(), {}, None, None, at=datetime.datetime(2025, 6, 1, tzinfo=UTC))
    if status(r, "tdx.pck_chain") == "pass":
        chain = pck_pem(bytes(quote))
        assert x509.load_pem_x509_certificates(chain.rstrip(b"\0")) == x509.load_pem_x509_certificates(GCP_PEM)
