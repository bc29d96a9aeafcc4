"""verifier.x509check: validity windows and CRLs, on certificates and CRLs made here."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from agent.errors import ReportError
from verifier import x509check

T0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(key, issuer_key, cn: str, issuer: str, serial: int = 7, days: int = 365):  # type: ignore[no-untyped-def]
    return (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(issuer))
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(T0).not_valid_after(T0 + datetime.timedelta(days=days))
            .sign(issuer_key, hashes.SHA256()))


def _crl(issuer_key, issuer: str, revoked: list[int], last=T0, nxt=T0 + datetime.timedelta(days=30)):  # type: ignore[no-untyped-def]
    b = x509.CertificateRevocationListBuilder().issuer_name(_name(issuer)).last_update(last).next_update(nxt)
    for s in revoked:
        b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(s).revocation_date(last).build())
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki():  # type: ignore[no-untyped-def]
    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(ca_key, ca_key, "ca", "ca", serial=1, days=3650)
    leaf = _cert(leaf_key, ca_key, "leaf", "ca", serial=7)
    return ca_key, ca, leaf


def test_validity_window(pki) -> None:  # type: ignore[no-untyped-def]
    _, _, leaf = pki
    x509check.check_validity(leaf, T0 + datetime.timedelta(days=10), "leaf")
    x509check.check_validity(leaf, T0, "leaf")  # notBefore itself is inside
    with pytest.raises(ReportError, match="expired on 2024-12-31"):
        x509check.check_validity(leaf, T0 + datetime.timedelta(days=366), "leaf")
    with pytest.raises(ReportError, match="not valid yet"):
        x509check.check_validity(leaf, T0 - datetime.timedelta(seconds=1), "leaf")
    with pytest.raises(ReportError, match="expired"):
        x509check.check_validity(leaf, None, "leaf")  # now (2026 or later) is past its end


def test_parse_time() -> None:
    assert x509check.parse_time("2025-06-01") == datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC)
    assert x509check.parse_time("2025-06-01T02:00:00+02:00") == datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC)
    with pytest.raises(ReportError, match="ISO 8601"):
        x509check.parse_time("yesterday")
    for edge in ("9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"):  # before: OverflowError (traceback)
        with pytest.raises(ReportError, match="outside the years UTC"):
            x509check.parse_time(edge)


def test_crl_revokes_and_must_be_genuine_and_current(pki) -> None:  # type: ignore[no-untyped-def]
    ca_key, ca, leaf = pki
    at = T0 + datetime.timedelta(days=1)
    clean = _crl(ca_key, "ca", [3])
    x509check.check_revocation(leaf, ca, [clean], at, "leaf")
    with pytest.raises(ReportError, match=r"serial 0x7\) is revoked"):
        x509check.check_revocation(leaf, ca, [_crl(ca_key, "ca", [7])], at, "leaf")
    with pytest.raises(ReportError, match="stale"):
        x509check.check_revocation(leaf, ca, [clean], T0 + datetime.timedelta(days=31), "leaf")
    with pytest.raises(ReportError, match="issued after"):
        x509check.check_revocation(leaf, ca, [clean], T0 - datetime.timedelta(days=1), "leaf")
    forger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ReportError, match="not signed"):
        x509check.check_revocation(leaf, ca, [_crl(forger, "ca", [])], at, "leaf")
    x509check.check_revocation(leaf, ca, [_crl(forger, "someone else", [7])], at, "leaf")  # not this issuer's


def test_rsa_pss_crl() -> None:
    """AMD signs its KDS CRLs with RSA-PSS/SHA-384, which the generic check does not cover."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    ca = (x509.CertificateBuilder().subject_name(_name("ark")).issuer_name(_name("ark")).public_key(key.public_key())
          .serial_number(1).not_valid_before(T0).not_valid_after(T0 + datetime.timedelta(days=9000))
          .sign(key, hashes.SHA384(), rsa_padding=pss))
    leaf = _cert(ec.generate_private_key(ec.SECP384R1()), key, "ask", "ark", serial=9)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(_name("ark")).last_update(T0)
           .next_update(T0 + datetime.timedelta(days=30))
           .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(9).revocation_date(T0).build())
           .sign(key, hashes.SHA384(), rsa_padding=pss))
    with pytest.raises(ReportError, match="revoked"):
        x509check.check_revocation(leaf, ca, [crl], T0 + datetime.timedelta(days=1), "ASK")


def test_load_crls(pki) -> None:  # type: ignore[no-untyped-def]
    ca_key, _, _ = pki
    a, b = _crl(ca_key, "ca", [1]), _crl(ca_key, "ca", [2])
    pem = a.public_bytes(serialization.Encoding.PEM) + b.public_bytes(serialization.Encoding.PEM)
    crls = x509check.load_crls(pem)
    assert [c.get_revoked_certificate_by_serial_number(2) is not None for c in crls] == [False, True]
    assert len(x509check.load_crls(a.public_bytes(serialization.Encoding.DER))) == 1
    for bad in (b"", b"junk", b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"):
        with pytest.raises(ReportError, match=r"not an X\.509 CRL"):
            x509check.load_crls(bad)


def test_a_damaged_crl_is_bad_input_when_loaded() -> None:
    """Before: the genuine Intel Root CA CRL with its issuer's SEQUENCE tag zeroed loaded, then raised ValueError
    where the issuer was first compared; with its version INTEGER zeroed, load raised InvalidVersion."""
    from pathlib import Path

    from cryptography.hazmat.primitives.serialization import Encoding

    pem = (Path(__file__).parent / "data" / "intel-sgx-root-ca-2023.crl.pem").read_bytes()
    genuine = x509.load_pem_x509_crl(pem)
    der = genuine.public_bytes(Encoding.DER)
    assert len(x509check.load_crls(der)) == 1 and len(x509check.load_crls(pem)) == 1
    bad_issuer = bytearray(der)
    bad_issuer[der.index(genuine.issuer.public_bytes())] = 0
    bad_version = bytearray(der)
    assert der[7:10] == b"\x02\x01\x01"  # TBSCertList.version v2 (INTEGER 1)
    bad_version[9] = 0
    for bad in (bad_issuer, bad_version):
        with pytest.raises(ReportError, match=r"is not an X\.509 CRL"):
            x509check.load_crls(bytes(bad), "CRL x")
