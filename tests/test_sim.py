"""The sim TEE: SNP-layout reports signed by a launcher-made chain."""

from __future__ import annotations

import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from agent.errors import ReportError, TeeError
from agent.tee import certtable, open_provider, snp_report
from agent.tee.sim import SimProvider, parse_config

HOST = bytes(range(32))
RD = b"\x5a" * 64


def _pss_verify(issuer: x509.Certificate, cert: x509.Certificate) -> None:
    key = issuer.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(
        cert.signature, cert.tbs_certificate_bytes,
        padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48), hashes.SHA384(),
    )


def test_sim_report_is_signed_by_the_chain_it_ships(sim_tee) -> None:  # type: ignore[no-untyped-def]
    tee = open_provider("sim", sim_config=sim_tee(HOST, b"\x42" * 48))
    ev = tee.report(RD)
    rep = snp_report.parse(ev.report)
    assert rep.version == 3 and rep.host_data == HOST and rep.report_data == RD
    assert rep.measurement == b"\x42" * 48 and rep.vmpl == 0 and rep.policy == 0x30000
    certs = {k: x509.load_der_x509_certificate(v) for k, v in certtable.parse(ev.aux).items()}
    assert set(certs) == {"vcek", "ask", "ark"}
    snp_report.verify_signature(rep, certs["vcek"].public_key())
    _pss_verify(certs["ark"], certs["ark"])
    _pss_verify(certs["ark"], certs["ask"])
    _pss_verify(certs["ask"], certs["vcek"])
    assert "SIMULATED" in certs["ark"].subject.rfc4514_string()
    assert tee.bound_value(ev) == HOST and tee.report_data_of(ev) == RD
    # two reports differ in REPORT_ID: each is fresh
    assert snp_report.parse(tee.report(RD).report).report_id != rep.report_id


def test_sim_report_with_foreign_key_fails_verification(sim_tee, sim_chain) -> None:  # type: ignore[no-untyped-def]
    from launcher.simca import make_chain

    other = make_chain(rsa_bits=2048)
    ev = open_provider("sim", sim_config=sim_tee(HOST)).report(RD)
    foreign_vcek = x509.load_pem_x509_certificate(other.vcek_pem)
    with pytest.raises(ReportError, match="does not verify"):
        snp_report.verify_signature(snp_report.parse(ev.report), foreign_vcek.public_key())


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("host_data"), "host_data must be a hex string"),
    (lambda d: d.update(host_data="00"), "host_data must be 32 bytes"),
    (lambda d: d.update(measurement="zz"), "measurement is not hex"),
    (lambda d: d.update(policy=-1), "policy must be an unsigned 64-bit"),
    (lambda d: d.update(schema="x"), "schema"),
    (lambda d: d.update(vcek_private_key="00" * 48), "bad vcek_private_key"),
    (lambda d: d.update(vcek_private_key="00"), "must be 48 bytes"),
    (lambda d: d["certificates"].update(vcek="garbage"), "not one PEM CERTIFICATE"),
])
def test_sim_config_errors(sim_tee, tmp_path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    with open(sim_tee(HOST)) as f:
        doc = json.load(f)
    edit(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TeeError, match=message):
        SimProvider(str(path))


def test_sim_config_missing_and_garbage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TeeError, match="No such file"):
        SimProvider(str(tmp_path / "absent"))
    with pytest.raises(TeeError, match="not JSON"):
        parse_config(b"\xff\xfe")


def test_chain_and_signature_helpers(sim_tee, sim_chain) -> None:  # type: ignore[no-untyped-def]
    from launcher.simca import make_chain
    from verifier import snp_chain

    ev = open_provider("sim", sim_config=sim_tee(HOST)).report(RD)
    rep = snp_chain.verify_evidence(ev.report, ev.aux, sim_chain.ark_pem)
    assert rep.host_data == HOST
    other = make_chain(rsa_bits=2048)
    with pytest.raises(ReportError, match="not the trusted ARK"):
        snp_chain.verify_evidence(ev.report, ev.aux, other.ark_pem)
    certs = certtable.parse(ev.aux)
    # a VCEK from another chain, under the trusted ARK/ASK: the ASK did not sign it
    foreign_vcek = x509.load_pem_x509_certificate(other.vcek_pem).public_bytes(serialization.Encoding.DER)
    forged = certtable.build({**certs, "vcek": foreign_vcek})
    with pytest.raises(ReportError, match="VCEK: RSA-PSS/SHA-384 signature does not verify"):
        snp_chain.verify_evidence(ev.report, forged, sim_chain.ark_pem)
    tampered = bytearray(ev.report)
    tampered[0x90] ^= 1  # measurement
    with pytest.raises(ReportError, match="does not verify with the given VCEK"):
        snp_chain.verify_evidence(bytes(tampered), ev.aux, sim_chain.ark_pem)
    with pytest.raises(ReportError, match="lacks ark, ask"):
        snp_chain.verify_evidence(ev.report, certtable.build({"vcek": certs["vcek"]}), sim_chain.ark_pem)


def test_libcrypto_signatures_verify_with_cryptography() -> None:
    import hashlib

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from agent.tee import simsign

    key = ec.generate_private_key(ec.SECP384R1())
    scalar = key.private_numbers().private_value.to_bytes(48, "big")
    body = b"report body" * 40
    sigs = {simsign.sign_digest(scalar, hashlib.sha384(body).digest()) for _ in range(3)}
    assert len(sigs) == 3  # a fresh nonce each time
    for r, s in sigs:
        key.public_key().verify(encode_dss_signature(r, s), body, ec.ECDSA(hashes.SHA384()))
        with pytest.raises(InvalidSignature):
            key.public_key().verify(encode_dss_signature(r, s), body + b"x", ec.ECDSA(hashes.SHA384()))
    for bad in (bytes(48), b"\xff" * 48, b"\x01" * 47):
        with pytest.raises(TeeError, match="P-384 private scalar"):
            simsign.sign_digest(bad, bytes(48))


def test_sim_signs_without_loading_cryptography(sim_tee) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    code = ("import sys; from agent.tee import open_provider; "
            f"e = open_provider('sim', sim_config={sim_tee(HOST)!r}).report(bytes(64)); "
            "assert len(e.report) == 1184; print(sorted(m for m in sys.modules if m.startswith('cryptography')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_sim_falls_back_to_cryptography_without_libcrypto(sim_tee, sim_chain, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from agent.tee import simsign
    from verifier.snp_chain import verify_evidence

    def missing() -> None:
        raise TeeError("libcrypto not found")

    monkeypatch.setattr(simsign, "_libcrypto", missing)
    ev = open_provider("sim", sim_config=sim_tee(HOST)).report(bytes(64))
    verify_evidence(ev.report, ev.aux, sim_chain.ark_pem)  # raises if the signature is wrong
