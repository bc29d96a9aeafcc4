"""Trust anchors shipped as data, and the sim chain a caller may choose to trust.

AMD ARK/ASK for Milan and Genoa (from AMD's KDS, kdsintf.amd.com/vcek/v1/
<product>/cert_chain) and Intel's SGX Provisioning Certification Root CA
(certificates.trustedservices.intel.com, SHA-256 of the DER
44a0196b...74d3). tests/test_verifier.py checks every shipped certificate's
self-signature and the ASK -> ARK signatures, so a corrupted file fails
there, not at a relying party. Turin's chain is not shipped yet (no source
of its PEM could be read).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.errors import ReportError

HERE = Path(__file__).resolve().parent / "trust"
AMD_PRODUCTS = ("milan", "genoa")
INTEL_ROOT_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"


@dataclass(frozen=True)
class SnpAnchor:
    name: str
    ark_pem: bytes
    simulated: bool = False


def amd_anchors() -> list[SnpAnchor]:
    return [SnpAnchor(p, (HERE / f"amd-{p}-ark.pem").read_bytes()) for p in AMD_PRODUCTS]


def sim_anchor(path: str) -> SnpAnchor:
    """The sim ARK (first certificate of the launcher's trust.pem)."""
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise ReportError(f"cannot read sim trust file {path}: {exc.strerror}") from None
    end = b"-----END CERTIFICATE-----"
    if end not in text:
        raise ReportError(f"{path} holds no PEM certificate")
    return SnpAnchor("sim", text[: text.index(end) + len(end)] + b"\n", simulated=True)


def intel_root() -> bytes:
    return (HERE / "intel-sgx-root-ca.pem").read_bytes()
