"""A TPM 2.0 quote: the TPMS_ATTEST a TPM2_Quote signs, its PCR digest and its RSASSA signature.

Layout from the TPM 2.0 Library, Part 2 "Structures" (TPMS_ATTEST, TPMS_CLOCK_INFO, TPMS_QUOTE_INFO,
TPML_PCR_SELECTION), all integers big-endian, every TPM2B a u16 size then the bytes:

- magic u32 = TPM_GENERATED_VALUE 0xff544347, type u16 = TPM_ST_ATTEST_QUOTE 0x8018;
- qualifiedSigner TPM2B_NAME, extraData TPM2B_DATA (the caller's qualifying data: the nonce);
- clockInfo: clock u64, resetCount u32, restartCount u32, safe u8; firmwareVersion u64;
- TPMS_QUOTE_INFO: pcrSelect (count u32, then per bank: hash u16, sizeofSelect u8, that many bitmap bytes,
  bit i of byte j selecting PCR 8j+i), pcrDigest TPM2B_DIGEST.

Part 3, TPM2_Quote: pcrDigest is the hash, with the signing scheme's hash, of the selected PCR values
concatenated in selection order. Azure's vTPM quotes all 24 SHA-256 PCRs with its RSA AK under
RSASSA-PKCS1-v1_5/SHA-256 (kinvolk/azure-cvm-tooling ``az-cvm-vtpm/src/vtpm/mod.rs`` get_quote and
``vtpm/verify.rs``, commit e4e44074), so that is the only scheme accepted here; the evidence carries the raw
signature bytes (the TPMT_SIGNATURE's inner TPM2B), not the TPMT_SIGNATURE.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from agent.errors import ReportError

TPM_GENERATED = 0xFF544347
TPM_ST_ATTEST_QUOTE = 0x8018
TPM_ALG_SHA256 = 0x000B
PCR_COUNT = 24
MAX_BANKS = 16  # TPML_PCR_SELECTION holds at most HASH_COUNT entries; no TPM has more banks than this


@dataclass(frozen=True)
class Quote:
    qualified_signer: bytes
    extra_data: bytes
    clock: int
    reset_count: int
    restart_count: int
    safe: int
    firmware_version: int
    selection: tuple[tuple[int, tuple[int, ...]], ...]  # (hash algorithm, selected PCR indices ascending)
    pcr_digest: bytes


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, size: int, what: str) -> bytes:
        if self.at + size > len(self.data):
            raise ReportError(f"TPM quote ends inside its {what} (byte {self.at} of {len(self.data)})")
        out = self.data[self.at:self.at + size]
        self.at += size
        return out

    def int(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def tpm2b(self, what: str) -> bytes:
        return self.take(self.int(2, f"{what} size"), what)


def parse(message: bytes) -> Quote:
    """The TPMS_ATTEST of a quote, every byte accounted for; ReportError if it is anything else."""
    r = _Reader(message)
    magic, kind = r.int(4, "magic"), r.int(2, "type")
    if magic != TPM_GENERATED:
        raise ReportError(f"TPM attest magic is {magic:#010x}, not TPM_GENERATED {TPM_GENERATED:#x}")
    if kind != TPM_ST_ATTEST_QUOTE:
        raise ReportError(f"TPM attest type is {kind:#06x}, not TPM_ST_ATTEST_QUOTE {TPM_ST_ATTEST_QUOTE:#x}")
    signer, extra = r.tpm2b("qualifiedSigner"), r.tpm2b("extraData")
    clock, resets, restarts, safe = r.int(8, "clock"), r.int(4, "resetCount"), r.int(4, "restartCount"), \
        r.int(1, "safe")
    firmware = r.int(8, "firmwareVersion")
    count = r.int(4, "pcrSelect count")
    if count > MAX_BANKS:
        raise ReportError(f"TPM quote selects {count} PCR banks; at most {MAX_BANKS}")
    banks = []
    for _ in range(count):
        alg, size = r.int(2, "pcrSelect hash"), r.int(1, "sizeofSelect")
        bitmap = r.take(size, "pcrSelect bitmap")
        banks.append((alg, tuple(8 * j + i for j, byte in enumerate(bitmap) for i in range(8) if byte >> i & 1)))
    digest = r.tpm2b("pcrDigest")
    if r.at != len(message):
        raise ReportError(f"TPM quote has {len(message) - r.at} bytes after its TPMS_QUOTE_INFO")
    return Quote(signer, extra, clock, resets, restarts, safe, firmware, tuple(banks), digest)


def pcr_digest(quote: Quote, pcrs: list[bytes]) -> bytes:
    """SHA-256 over the selected SHA-256 PCR values, ``pcrs`` being all 24 by index (as Azure's evidence
    lists them). Another bank, or a PCR beyond 23, is refused: the evidence has no values for it."""
    selected: list[bytes] = []
    for alg, indices in quote.selection:
        if alg != TPM_ALG_SHA256:
            raise ReportError(f"TPM quote selects PCR bank {alg:#06x}; only SHA-256 ({TPM_ALG_SHA256:#06x}) values "
                              "are in the evidence")
        if any(i >= len(pcrs) for i in indices):
            raise ReportError(f"TPM quote selects PCR {max(indices)}, the evidence carries {len(pcrs)} values")
        selected.extend(pcrs[i] for i in indices)
    return hashlib.sha256(b"".join(selected)).digest()


def verify_signature(message: bytes, signature: bytes, key: rsa.RSAPublicKey) -> None:
    """RSASSA-PKCS1-v1_5 with SHA-256 over the TPMS_ATTEST bytes, by the AK; ReportError if not."""
    try:
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise ReportError("the TPM quote's signature does not verify under the AK "
                          "(RSASSA-PKCS1-v1_5, SHA-256)") from None


def extend(pcr: bytes, digest: bytes) -> bytes:
    """TPM2_PCR_Extend on a SHA-256 bank: the new value is SHA-256(old || digest)."""
    return hashlib.sha256(pcr + digest).digest()
