"""Intel TDX TDREPORT and Quote v4: parse with exact length checks.

TDREPORT (1024 bytes, ``TDX_CMD_GET_REPORT0``): REPORTMACSTRUCT at 0 (256),
TEE_TCB_INFO at 256, TDINFO at 512, offsets from Intel's TDX module ABI as
guest-components ``attester/src/tdx/report.rs`` lays them out. Quote v4:
48-byte header, 584-byte TD report body (0x30-0x278), u32 signature-data
size at 0x278, then the ECDSA-256 quote signature data (Intel TDX DCAP
Quoting Library API, appendix "Quote format"; offsets as go-tdx-guest
``abi/abi.go``). The MAC of a TDREPORT is only checkable by the CPU, so a
TDREPORT serves the local HOSTDATA-style check, never a remote verifier.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Any

from agent.errors import ReportError

TDREPORT_SIZE = 1024
QUOTE_HEADER_SIZE = 0x30
QUOTE_BODY_END = 0x278
QUOTE_V4 = 4
TEE_TYPE_TDX = 0x81
ATT_KEY_ECDSA_P256 = 2
MAX_QUOTE = 32 * 1024  # configfs-tsm TSM_OUTBLOB_MAX
QE_REPORT_CERT_DATA = 6
PCK_CHAIN_CERT_DATA = 5
QE_REPORT_SIZE = 384

# Fields of the TD report body shared by TDINFO (TDREPORT) and the quote body: name -> size.
_MEASUREMENTS = ("mrtd", "mrconfigid", "mrowner", "mrownerconfig", "rtmr0", "rtmr1", "rtmr2", "rtmr3")


def _json(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, bytes):
            value = value.hex()
        elif hasattr(value, "__dataclass_fields__"):
            value = _json(value)
        out[f.name] = value
    return out


@dataclass(frozen=True)
class TdReport:
    """A TDREPORT: the MAC'd local report."""

    report_type: bytes
    cpu_svn: bytes
    tee_tcb_info_hash: bytes
    tee_td_info_hash: bytes
    report_data: bytes
    mac: bytes
    tee_tcb_info: bytes
    attributes: int
    xfam: int
    mrtd: bytes
    mrconfigid: bytes
    mrowner: bytes
    mrownerconfig: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    servtd_hash: bytes

    @property
    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        return (self.rtmr0, self.rtmr1, self.rtmr2, self.rtmr3)

    def to_json(self) -> dict[str, Any]:
        return _json(self)


def parse_tdreport(data: bytes) -> TdReport:
    data = _bytes(data, "TDREPORT")
    if len(data) != TDREPORT_SIZE:
        raise ReportError(f"TDREPORT must be exactly {TDREPORT_SIZE} bytes, got {len(data)}")
    if data[0] != 0x81:
        raise ReportError(f"TDREPORT type 0x{data[0]:02x} is not TDX (0x81)")
    td = 512
    mr = {name: data[td + 16 + 48 * i : td + 16 + 48 * (i + 1)] for i, name in enumerate(_MEASUREMENTS)}
    return TdReport(
        report_type=data[0:4],
        cpu_svn=data[16:32],
        tee_tcb_info_hash=data[32:80],
        tee_td_info_hash=data[80:128],
        report_data=data[128:192],
        mac=data[224:256],
        tee_tcb_info=data[256:495],
        attributes=int.from_bytes(data[td : td + 8], "little"),
        xfam=int.from_bytes(data[td + 8 : td + 16], "little"),
        servtd_hash=data[td + 400 : td + 448],
        **mr,
    )


@dataclass(frozen=True)
class QuoteBody:
    """The TD quote body (TD 1.0 report body, 584 bytes)."""

    tee_tcb_svn: bytes
    mrseam: bytes
    mrsignerseam: bytes
    seam_attributes: int
    td_attributes: int
    xfam: int
    mrtd: bytes
    mrconfigid: bytes
    mrowner: bytes
    mrownerconfig: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes


@dataclass(frozen=True)
class QeCertification:
    """Certification data of type 6: the QE report that vouches for the attestation key, and the PCK chain."""

    qe_report: bytes
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_cert_type: int
    pck_cert_data: bytes


@dataclass(frozen=True)
class Quote:
    """A TDX Quote v4 with its ECDSA-256 signature data split out."""

    version: int
    attestation_key_type: int
    tee_type: int
    pce_svn: int
    qe_svn: int
    qe_vendor_id: bytes
    user_data: bytes
    body: QuoteBody
    signature: bytes
    attestation_key: bytes
    cert_data_type: int
    cert_data: bytes
    qe_certification: QeCertification | None
    signed_bytes: bytes

    @property
    def mrconfigid(self) -> bytes:
        return self.body.mrconfigid

    @property
    def report_data(self) -> bytes:
        return self.body.report_data

    def to_json(self) -> dict[str, Any]:
        out = _json(self)
        out.pop("signed_bytes", None)
        return out


def _bytes(data: Any, what: str) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ReportError(f"{what} must be bytes, got {type(data).__name__}")
    return bytes(data)


def _take(data: bytes, pos: int, size: int, what: str) -> tuple[bytes, int]:
    if size < 0 or pos + size > len(data):
        raise ReportError(f"TDX quote: {what} at offset {pos} needs {size} bytes, only {len(data) - pos} remain")
    return data[pos : pos + size], pos + size


def _parse_body(b: bytes) -> QuoteBody:
    mr = {name: b[0xB8 + 48 * i : 0xB8 + 48 * (i + 1)] for i, name in enumerate(_MEASUREMENTS)}
    return QuoteBody(
        tee_tcb_svn=b[0x30:0x40],
        mrseam=b[0x40:0x70],
        mrsignerseam=b[0x70:0xA0],
        seam_attributes=int.from_bytes(b[0xA0:0xA8], "little"),
        td_attributes=int.from_bytes(b[0xA8:0xB0], "little"),
        xfam=int.from_bytes(b[0xB0:0xB8], "little"),
        report_data=b[0x238:0x278],
        **mr,
    )


def parse_quote(data: bytes) -> Quote:
    """Parse a Quote v4; the signature data must fill the rest of the quote exactly."""
    data = _bytes(data, "TDX quote")
    if len(data) > MAX_QUOTE:
        raise ReportError(f"TDX quote is {len(data)} bytes, more than {MAX_QUOTE}")
    if len(data) < QUOTE_BODY_END + 4:
        raise ReportError(f"TDX quote is {len(data)} bytes, shorter than header + body ({QUOTE_BODY_END + 4})")
    version, key_type, tee_type, pce_svn, qe_svn = struct.unpack_from("<HHIHH", data, 0)
    if version != QUOTE_V4:
        raise ReportError(f"TDX quote version {version} is not supported (4)")
    if tee_type != TEE_TYPE_TDX:
        raise ReportError(f"TDX quote TEE type 0x{tee_type:x} is not TDX (0x81)")
    if key_type != ATT_KEY_ECDSA_P256:
        raise ReportError(f"TDX quote attestation key type {key_type} is not ECDSA-256 (2)")
    (sig_size,) = struct.unpack_from("<I", data, QUOTE_BODY_END)
    pos = QUOTE_BODY_END + 4
    if pos + sig_size != len(data):
        raise ReportError(
            f"TDX quote signature data size {sig_size} at 0x{QUOTE_BODY_END:x} does not match "
            f"the {len(data) - pos} bytes that follow"
        )
    signature, pos = _take(data, pos, 64, "quote signature")
    att_key, pos = _take(data, pos, 64, "attestation key")
    raw, pos = _take(data, pos, 6, "certification data header")
    cert_type, cert_size = struct.unpack("<HI", raw)
    cert_data, pos = _take(data, pos, cert_size, "certification data")
    if pos != len(data):
        raise ReportError(f"TDX quote: {len(data) - pos} bytes after the certification data")
    qe = _parse_qe_cert(cert_data) if cert_type == QE_REPORT_CERT_DATA else None
    return Quote(
        version=version,
        attestation_key_type=key_type,
        tee_type=tee_type,
        pce_svn=pce_svn,
        qe_svn=qe_svn,
        qe_vendor_id=data[0x0C:0x1C],
        user_data=data[0x1C:0x30],
        body=_parse_body(data),
        signature=signature,
        attestation_key=att_key,
        cert_data_type=cert_type,
        cert_data=cert_data,
        qe_certification=qe,
        signed_bytes=data[:QUOTE_BODY_END],
    )


def trim_padding(data: bytes) -> bytes:
    """Drop zero padding after the declared signature data (QGS/configfs buffers carry it); nothing else."""
    data = _bytes(data, "TDX quote")
    if len(data) < QUOTE_BODY_END + 4:
        return data
    (sig_size,) = struct.unpack_from("<I", data, QUOTE_BODY_END)
    end = QUOTE_BODY_END + 4 + sig_size
    if end < len(data) and not any(data[end:]):
        return data[:end]
    return data


def _parse_qe_cert(data: bytes) -> QeCertification:
    qe_report, pos = _take(data, 0, QE_REPORT_SIZE, "QE report")
    qe_sig, pos = _take(data, pos, 64, "QE report signature")
    raw, pos = _take(data, pos, 2, "QE auth data size")
    auth, pos = _take(data, pos, struct.unpack("<H", raw)[0], "QE auth data")
    raw, pos = _take(data, pos, 6, "PCK certification data header")
    pck_type, pck_size = struct.unpack("<HI", raw)
    pck, pos = _take(data, pos, pck_size, "PCK certification data")
    if pos != len(data):
        raise ReportError(f"TDX quote: {len(data) - pos} bytes after the PCK certification data")
    return QeCertification(qe_report, qe_sig, auth, pck_type, pck)


def build_quote(body_fields: dict[str, Any], signature: bytes = bytes(64), attestation_key: bytes = bytes(64),
                cert_type: int = PCK_CHAIN_CERT_DATA, cert_data: bytes = b"", pce_svn: int = 0,
                qe_svn: int = 0) -> bytes:
    """A syntactically valid quote; tests and the verifier's fixtures build on it."""
    out = bytearray(QUOTE_BODY_END)
    struct.pack_into("<HHIHH", out, 0, QUOTE_V4, ATT_KEY_ECDSA_P256, TEE_TYPE_TDX, pce_svn, qe_svn)
    offsets = {"tee_tcb_svn": (0x30, 16), "mrseam": (0x40, 48), "mrsignerseam": (0x70, 48),
               "seam_attributes": (0xA0, 8), "td_attributes": (0xA8, 8), "xfam": (0xB0, 8),
               "report_data": (0x238, 64)}
    offsets.update({name: (0xB8 + 48 * i, 48) for i, name in enumerate(_MEASUREMENTS)})
    for name, value in body_fields.items():
        if name not in offsets:
            raise ReportError(f"unknown TDX quote body field {name}")
        off, size = offsets[name]
        raw = value.to_bytes(size, "little") if isinstance(value, int) else bytes(value)
        if len(raw) != size:
            raise ReportError(f"TDX quote field {name} must be {size} bytes")
        out[off : off + size] = raw
    sig = signature + attestation_key + struct.pack("<HI", cert_type, len(cert_data)) + cert_data
    return bytes(out) + struct.pack("<I", len(sig)) + sig


def build_tdreport(report_data: bytes, mrconfigid: bytes = bytes(48), mrtd: bytes = bytes(48)) -> bytes:
    """A TDREPORT with the given fields (what the kernel double returns)."""
    out = bytearray(TDREPORT_SIZE)
    out[0] = 0x81
    out[128:192] = report_data
    out[528:576] = mrtd
    out[576:624] = mrconfigid
    return bytes(out)
