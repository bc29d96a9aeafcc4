"""The ``sim`` TEE: SNP-format reports signed by a launcher-made VCEK, for machines without SEV/TDX.

Everything a real PSP would decide comes from the launcher, never from the
guest: launch measurement, HOSTDATA, policy, chip id, TCB, and the VCEK
private key. QEMU passes it with ``-fw_cfg name=opt/io.cocoon/sim,file=...``
and the guest reads it at ``/sys/firmware/qemu_fw_cfg/by_name/opt/io.cocoon/
sim/raw``; tests pass a file. A verifier accepts such evidence only when told
to trust the sim chain, so a sim VM can never pass for real hardware.

The document (schema ``cocoon.sim-tee/v1``) is JSON written by
``launcher.simca``: ``measurement`` (48 bytes hex), ``host_data`` (32
hex), ``policy``, ``chip_id`` (64 hex), ``tcb`` (u64), ``vcek_private_key``
(the 48-byte EC P-384 scalar, hex: loading it needs no ASN.1/PEM machinery,
which keeps agent startup short) and ``certificates`` (PEM of vcek, ask,
ark; handed on as DER in the certificate table, not parsed here).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import agent.tee.certtable as certtable
import agent.tee.simsign as simsign
import agent.tee.snp_report as snp_report
from agent.errors import TeeError
from agent.record import record
from agent.tee.base import Evidence, check_report_data

SCHEMA = "cocoon.sim-tee/v1"
FW_CFG_NAME = "opt/io.cocoon/sim"
DEFAULT_PATH = f"/sys/firmware/qemu_fw_cfg/by_name/{FW_CFG_NAME}/raw"
MAX_CONFIG = 256 * 1024
SIM_REPORT_VERSION = 3
# Milan, as a real Milan PSP reports it in v3 reports (family 0x19, model 0x01, stepping 0x01).
SIM_CPUID = (0x19, 0x01, 0x01)


@record(frozen=True)
class SimConfig:
    measurement: bytes
    host_data: bytes
    policy: int
    chip_id: bytes
    tcb: int
    vcek_private_key: bytes  # 48-byte P-384 scalar
    certificates: dict[str, bytes]  # name -> PEM

    def to_json(self) -> str:
        return json.dumps({
            "schema": SCHEMA,
            "measurement": self.measurement.hex(),
            "host_data": self.host_data.hex(),
            "policy": self.policy,
            "chip_id": self.chip_id.hex(),
            "tcb": self.tcb,
            "vcek_private_key": self.vcek_private_key.hex(),
            "certificates": {k: v.decode() for k, v in self.certificates.items()},
        }, indent=1, sort_keys=True) + "\n"


def _hex(doc: dict[str, Any], key: str, size: int) -> bytes:
    value = doc.get(key)
    if not isinstance(value, str):
        raise TeeError(f"sim TEE config: {key} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise TeeError(f"sim TEE config: {key} is not hex") from None
    if len(raw) != size:
        raise TeeError(f"sim TEE config: {key} must be {size} bytes, got {len(raw)}")
    return raw


def _int(doc: dict[str, Any], key: str, bits: int) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << bits:
        raise TeeError(f"sim TEE config: {key} must be an unsigned {bits}-bit integer")
    return value


def parse_config(raw: bytes) -> SimConfig:
    if len(raw) > MAX_CONFIG:
        raise TeeError(f"sim TEE config is {len(raw)} bytes, more than {MAX_CONFIG}")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TeeError(f"sim TEE config is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise TeeError(f"sim TEE config must be a JSON object with schema {SCHEMA!r}")
    certs = doc.get("certificates")
    if not isinstance(certs, dict) or not all(isinstance(v, str) for v in certs.values()):
        raise TeeError("sim TEE config: certificates must map names to PEM strings")
    return SimConfig(
        measurement=_hex(doc, "measurement", 48),
        host_data=_hex(doc, "host_data", 32),
        policy=_int(doc, "policy", 64),
        chip_id=_hex(doc, "chip_id", 64),
        tcb=_int(doc, "tcb", 64),
        vcek_private_key=_hex(doc, "vcek_private_key", 48),
        certificates={k: v.encode() for k, v in certs.items()},
    )


def pem_to_der(pem: bytes, name: str) -> bytes:
    """The DER inside one PEM CERTIFICATE block (strict base64; nothing else in the text)."""
    import base64
    import binascii

    lines = pem.strip().splitlines()
    if len(lines) < 3 or lines[0] != b"-----BEGIN CERTIFICATE-----" or lines[-1] != b"-----END CERTIFICATE-----":
        raise TeeError(f"sim TEE config: certificate {name} is not one PEM CERTIFICATE block")
    try:
        return base64.b64decode(b"".join(lines[1:-1]), validate=True)
    except binascii.Error:
        raise TeeError(f"sim TEE config: certificate {name} has bad base64") from None


class SimProvider:
    """Reports exactly like an SNP PSP would, signed by the launcher's sim VCEK."""

    name = "sim"
    bound_field = "HOSTDATA"
    bound_size = 32

    def __init__(self, config_path: str = DEFAULT_PATH, raw: bytes | None = None) -> None:
        """Read the document at ``config_path``, or take it as ``raw`` (``config_path`` then only names
        it in evidence: agent.warmup runs this code with a document of its own)."""
        self.config_path = config_path
        if raw is None:
            try:
                with open(config_path, "rb") as f:
                    raw = f.read(MAX_CONFIG + 1)
            except OSError as exc:
                raise TeeError(f"sim TEE config {config_path}: {exc.strerror or exc}") from None
        self.config = parse_config(raw)
        scalar = int.from_bytes(self.config.vcek_private_key, "big")
        if not 0 < scalar < simsign.P384_ORDER:
            raise TeeError("sim TEE config: bad vcek_private_key: not a P-384 private scalar")
        der = {name: pem_to_der(pem, name) for name, pem in self.config.certificates.items()}
        self._aux = certtable.build(der)

    def available(self) -> bool:
        return True

    def report(self, report_data: bytes) -> Evidence:
        report_data = check_report_data(report_data)
        c = self.config
        fam, model, step = SIM_CPUID
        body = snp_report.build_body(
            version=SIM_REPORT_VERSION,
            policy=c.policy,
            vmpl=0,
            signature_algo=snp_report.SIG_ALGO_ECDSA_P384_SHA384,
            current_tcb=c.tcb,
            reported_tcb=c.tcb,
            committed_tcb=c.tcb,
            launch_tcb=c.tcb,
            report_data=report_data,
            measurement=c.measurement,
            host_data=c.host_data,
            report_id=os.urandom(32),
            report_id_ma=b"\xff" * 32,  # no migration agent
            chip_id=c.chip_id,
            cpuid_fam_id=fam,
            cpuid_mod_id=model,
            cpuid_step=step,
        )
        report = snp_report.assemble(body, *self._sign(body))
        return Evidence(tee=self.name, kind="snp", report=report, aux=self._aux, source=f"sim:{self.config_path}")

    def _sign(self, body: bytes) -> tuple[int, int]:
        """ECDSA P-384 over SHA-384 of the body: libcrypto via ctypes, else ``cryptography`` (simsign says why)."""
        key = self.config.vcek_private_key
        try:
            return simsign.sign_digest(key, hashlib.sha384(body).digest())
        except (TeeError, OSError, AttributeError):
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

            private = ec.derive_private_key(int.from_bytes(key, "big"), ec.SECP384R1())
            return decode_dss_signature(private.sign(body, ec.ECDSA(hashes.SHA384())))

    def bound_value(self, evidence: Evidence) -> bytes:
        return snp_report.parse(evidence.report).host_data

    def report_data_of(self, evidence: Evidence) -> bytes:
        return snp_report.parse(evidence.report).report_data
