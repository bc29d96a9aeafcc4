"""Test TDX quotes with a generated PCK chain (root -> intermediate -> leaf, ECDSA P-256), shaped like Intel's,
and a whole test Intel (World: PCK chain with an SGX extension, TCB signing key, PCS-shaped collateral)."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from agent.tee import tdx_report
from verifier import collateral as col
from verifier.claims import Result
from verifier.tdx import verify_tdx

SGX = col.SGX_EXTENSION
FMSPC = bytes.fromhex("00806f050000")


@dataclass
class PckChain:
    root_pem: bytes
    chain_pem: bytes  # leaf, intermediate, root
    leaf_key: ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pck_chain() -> PckChain:
    root_k, inter_k, leaf_k = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = cert("TEST SGX Root CA", root_k, "TEST SGX Root CA", root_k, True)
    inter = cert("TEST SGX PCK Platform CA", inter_k, "TEST SGX Root CA", root_k, True)
    leaf = cert("TEST SGX PCK Certificate", leaf_k, "TEST SGX PCK Platform CA", inter_k, False)
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
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(int.from_bytes(os.urandom(8), "big"))
         .not_valid_before(start).not_valid_after(end)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ext is not None:
        b = b.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX), ext), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _comps(svn: int) -> list[dict[str, int]]:
    return [{"svn": svn} for _ in range(16)]


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
        self.tcb_info: dict[str, Any] = {
            "id": "TDX", "version": 3, "issueDate": issued, "nextUpdate": later,
            "fmspc": FMSPC.hex(), "pceId": "0000", "tcbType": 0, "tcbEvaluationDataNumber": 17,
            "tcbLevels": [
                {"tcb": {"sgxtcbcomponents": _comps(3), "pcesvn": 11, "tdxtcbcomponents": _comps(0)},
                 "tcbDate": "2026-08-01T00:00:00Z", "tcbStatus": "UpToDate"},
                {"tcb": {"sgxtcbcomponents": _comps(2), "pcesvn": 10, "tdxtcbcomponents": _comps(0)},
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
