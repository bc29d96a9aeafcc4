"""Test TDX quotes with a generated PCK chain (root -> intermediate -> leaf, ECDSA P-256), shaped like Intel's."""

from __future__ import annotations

import datetime
import hashlib
import os
import struct
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from agent.tee import tdx_report


@dataclass
class PckChain:
    root_pem: bytes
    chain_pem: bytes  # leaf, intermediate, root
    leaf_key: ec.EllipticCurvePrivateKey


def _cert(subject: str, key, issuer: str, issuer_key, ca: bool) -> x509.Certificate:  # type: ignore[no-untyped-def]
    now = datetime.datetime.now(datetime.UTC)
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # noqa: E731
    return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
            .public_key(key.public_key()).serial_number(int.from_bytes(os.urandom(8), "big"))
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


def make_pck_chain() -> PckChain:
    root_k, inter_k, leaf_k = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("TEST SGX Root CA", root_k, "TEST SGX Root CA", root_k, True)
    inter = _cert("TEST SGX PCK Platform CA", inter_k, "TEST SGX Root CA", root_k, True)
    leaf = _cert("TEST SGX PCK Certificate", leaf_k, "TEST SGX PCK Platform CA", inter_k, False)
    pem = serialization.Encoding.PEM
    return PckChain(root.public_bytes(pem), b"".join(c.public_bytes(pem) for c in (leaf, inter, root)), leaf_k)


def _raw_sig(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def make_quote(pck: PckChain, **body: object) -> bytes:
    """A quote whose every signature and binding is right (tests then break one thing at a time)."""
    att_key = ec.generate_private_key(ec.SECP256R1())
    att_pub = att_key.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint)[1:]
    auth = b"qe-auth-data"
    qe_report = bytearray(384)
    qe_report[320:352] = hashlib.sha256(att_pub + auth).digest()
    qe_sig = _raw_sig(pck.leaf_key, bytes(qe_report))
    cert_data = (bytes(qe_report) + qe_sig + struct.pack("<H", len(auth)) + auth
                 + struct.pack("<HI", tdx_report.PCK_CHAIN_CERT_DATA, len(pck.chain_pem)) + pck.chain_pem)
    unsigned = tdx_report.build_quote(dict(body), cert_type=tdx_report.QE_REPORT_CERT_DATA, cert_data=cert_data)
    signature = _raw_sig(att_key, unsigned[: tdx_report.QUOTE_BODY_END])
    return tdx_report.build_quote(dict(body), signature=signature, attestation_key=att_pub,
                                  cert_type=tdx_report.QE_REPORT_CERT_DATA, cert_data=cert_data)
