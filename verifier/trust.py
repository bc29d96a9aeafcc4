"""Trust anchors shipped as data, and the sim chain a caller may choose to trust.

AMD ARK/ASK for Milan, Genoa and Turin (AMD's KDS serves them at
kdsintf.amd.com/vcek/v1/<product>/cert_chain), AMD's ASVKs, which sign the
VLEKs cloud providers load instead of chip-bound VCEKs (KDS
/vlek/v1/<product>/cert_chain, ASVK + the same ARK), and Intel's SGX
Provisioning Certification Root CA (certificates.trustedservices.intel.com).
Each file's SHA-256 over its DER is pinned below; the values agree with
fingerprints or copies that other projects published independently from
their own KDS fetches (cited in docs/decisions.md). tests/test_verifier.py
checks the pins, every self-signature and the ASK -> ARK and ASVK -> ARK
signatures, so a corrupted or swapped file fails there, not at a relying
party.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.errors import ReportError

HERE = Path(__file__).resolve().parent / "trust"
AMD_PRODUCTS = ("milan", "genoa", "turin")
AMD_SHA256 = {  # SHA-256 of the DER of each shipped certificate
    "milan-ark": "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    "milan-ask": "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
    "genoa-ark": "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    "genoa-ask": "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
    "turin-ark": "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    "turin-ask": "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
    "milan-asvk": "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5",
    "genoa-asvk": "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372",
    "turin-asvk": "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c",
}
INTEL_ROOT_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"


@dataclass(frozen=True)
class SnpAnchor:
    name: str
    ark_pem: bytes
    simulated: bool = False
    ask_pem: bytes = b""  # used when the evidence carries only a VCEK (or none: --vcek)
    asvk_pem: bytes = b""  # the same for a VLEK-signed report; empty: this root vouches for no VLEK

    def intermediate(self, signer: str) -> bytes:
        """The shipped issuer of a ``signer`` ("vcek" or "vlek") key under this root."""
        return self.asvk_pem if signer == "vlek" else self.ask_pem


def amd_anchors() -> list[SnpAnchor]:
    return [SnpAnchor(p, (HERE / f"amd-{p}-ark.pem").read_bytes(), ask_pem=(HERE / f"amd-{p}-ask.pem").read_bytes(),
                      asvk_pem=(HERE / f"amd-{p}-asvk.pem").read_bytes())
            for p in AMD_PRODUCTS]


def sim_anchor(path: str) -> SnpAnchor:
    """The sim ARK and ASK (the launcher's trust.pem holds them in that order)."""
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise ReportError(f"cannot read sim trust file {path}: {exc.strerror}") from None
    end = b"-----END CERTIFICATE-----"
    if end not in text:
        raise ReportError(f"{path} holds no PEM certificate")
    cut = text.index(end) + len(end)
    rest = text[cut:]
    ask = rest[: rest.index(end) + len(end)].strip() + b"\n" if end in rest else b""
    return SnpAnchor("sim", text[:cut] + b"\n", simulated=True, ask_pem=ask)


def intel_root() -> bytes:
    return (HERE / "intel-sgx-root-ca.pem").read_bytes()
