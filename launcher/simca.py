"""Launcher side of the sim TEE: a sim ARK -> ASK -> VCEK chain and the config the guest reads.

The chain has AMD's shape (RSA-4096 ARK and ASK signing with RSA-PSS/SHA-384,
an EC P-384 VCEK) so the verifier walks it with the same code as a real one;
every subject says SIMULATED so no one mistakes it for AMD's.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.errors import TeeError
from agent.tee.sim import SimConfig
from agent.tee.snp_report import TcbVersion
from verifier.vcek import extension_values

if TYPE_CHECKING:  # imported where used: cryptography loads only when a chain is made
    from cryptography.hazmat.primitives.asymmetric import padding

DEFAULT_POLICY = 0x30000  # SMT allowed, reserved bit 17 set; debug and migration off
# Milan-like TCB: bootloader 3, TEE 0, SNP 8, microcode 115 (byte layout of kds.DecomposeTCBVersion).
DEFAULT_TCB = int.from_bytes(bytes([3, 0, 0, 0, 0, 0, 8, 115]), "little")


@dataclass(frozen=True)
class SimChain:
    ark_pem: bytes
    ask_pem: bytes
    vcek_pem: bytes
    vcek_key_pem: bytes

    @property
    def chip_id(self) -> bytes | None:
        """The hwID the sim VCEK was issued for (None for chains made before it carried one)."""
        from verifier.vcek import extensions
        from verifier.x509check import load_certificate

        return extensions(load_certificate(self.vcek_pem, "sim VCEK")).hwid

    @property
    def trust_pem(self) -> bytes:
        """What a verifier is told to trust with --trust-sim: ARK then ASK."""
        return self.ark_pem + self.ask_pem


def _pss() -> padding.PSS:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)


def make_chain(rsa_bits: int = 4096, tcb: int = DEFAULT_TCB, chip_id: bytes | None = None) -> SimChain:
    """A fresh chain whose VCEK, like KDS's, names the TCB and chip (random unless given) it is for."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)

    def name(cn: str) -> x509.Name:
        return x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cocoon SIMULATED TEE (not AMD)"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ])

    def cert(subject: str, key, issuer: str, issuer_key, ca: bool, amd=()) -> x509.Certificate:  # type: ignore[no-untyped-def]
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(int.from_bytes(os.urandom(16), "big") >> 1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        for oid, value in amd:
            builder = builder.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), False)
        return builder.sign(issuer_key, hashes.SHA384(), rsa_padding=_pss())

    ark_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    ask_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    vcek_key = ec.generate_private_key(ec.SECP384R1())
    ark = cert("SIM-ARK-Milan", ark_key, "SIM-ARK-Milan", ark_key, True)
    ask = cert("SIM-SEV-Milan", ask_key, "SIM-ARK-Milan", ark_key, True)
    amd = extension_values(TcbVersion.from_u64(tcb).as_dict(), chip_id if chip_id is not None else os.urandom(64),
                           "Milan")
    vcek = cert("SIM-SEV-VCEK", vcek_key, "SIM-SEV-Milan", ask_key, False, amd)
    pem = serialization.Encoding.PEM
    return SimChain(
        ark_pem=ark.public_bytes(pem),
        ask_pem=ask.public_bytes(pem),
        vcek_pem=vcek.public_bytes(pem),
        vcek_key_pem=vcek_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def _scalar(key_pem: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp384r1":
        raise TeeError("sim VCEK key must be EC P-384")
    return key.private_numbers().private_value.to_bytes(48, "big")


def make_config(chain: SimChain, measurement: bytes, host_data: bytes, policy: int = DEFAULT_POLICY,
                chip_id: bytes | None = None, tcb: int = DEFAULT_TCB) -> SimConfig:
    """The document the launcher hands the guest: what the sim PSP will put in every report.

    CHIP_ID defaults to the hwID the chain's VCEK was issued for, as on a real chip; ``tcb`` must
    match the VCEK's TCB for the evidence to verify (a different one models a stale VCEK)."""
    if len(measurement) != 48 or len(host_data) != 32:
        raise TeeError("sim TEE: measurement must be 48 bytes and host_data 32 bytes")
    return SimConfig(
        measurement=measurement,
        host_data=host_data,
        policy=policy,
        chip_id=chip_id if chip_id is not None else (chain.chip_id or os.urandom(64)),
        tcb=tcb,
        vcek_private_key=_scalar(chain.vcek_key_pem),
        certificates={"vcek": chain.vcek_pem, "ask": chain.ask_pem, "ark": chain.ark_pem},
    )
