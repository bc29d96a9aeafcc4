"""SNP evidence checks, each a named claim (the order a relying party should care about)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from agent.errors import ReportError
from agent.tee import certtable, snp_report
from verifier import vcek, x509check
from verifier.claims import BOUND_TO_NONCE, NO_INITDATA, NO_NONCE, Result
from verifier.snp_chain import ROLES, Chain, walk_chain
from verifier.trust import SnpAnchor

POLICY_SMT = 1 << 16
POLICY_MIGRATE_MA = 1 << 18
POLICY_DEBUG = 1 << 19
SIGNER_AUTHOR_KEY_EN = 1 << 0  # SIGNER_INFO bit 0
SIGNER_MASK_CHIP_ID = 1 << 1  # SIGNER_INFO bit 1 (SNP ABI "ATTESTATION_REPORT" 0x48)


def _tcb(value: int, product: str) -> dict[str, int]:
    return snp_report.TcbVersion.from_u64(value, product).as_dict()


def verify_snp(result: Result, report: bytes, aux: bytes, anchors: list[SnpAnchor], refs: dict[str, Any],
               host_data: bytes | None, report_data: bytes | None, vcek_pem: bytes | None = None, *,
               at: datetime.datetime | None = None, crls: Sequence[Any] = (),
               report_data_claim: tuple[str, str] = ("snp.report_data", BOUND_TO_NONCE)) -> None:
    """Every SNP claim for one report. ``vcek_pem`` is the signing key's certificate (VCEK or VLEK) when the
    evidence carries none; ``at`` is the moment certificates and CRLs are judged at (now if None: an auditor
    names a past one for old evidence); ``crls`` are AMD KDS CRLs (``cryptography`` CRL objects).
    ``report_data_claim`` names the REPORT_DATA claim and says what binds it: a paravisor's report (Azure's
    HCL, verifier/az_snp_vtpm.py) carries a digest of its runtime data there, not the relying party's nonce."""
    try:
        rep = snp_report.parse(report)
    except ReportError as exc:
        result.add("snp.report.format", False, str(exc))
        return
    result.add("snp.report.format", True, f"ATTESTATION_REPORT v{rep.version}")

    # chain + signature: the evidence's ARK must be one of the trusted ones
    try:
        certs = certtable.parse(aux) if aux else {}
    except ReportError as exc:
        result.add("snp.chain", False, f"certificate table: {exc}")
        return
    if rep.signing_key not in ("vcek", "vlek"):
        result.add("snp.chain", False, f"SIGNER_INFO's SIGNING_KEY is {rep.signing_key}: neither a VCEK nor a VLEK "
                                       "signed the report", "vcek or vlek", rep.signing_key)
        return
    signer = rep.signing_key
    what = signer.upper()
    issuer_name = ROLES[signer][0]
    leaf = certs.get(signer) or vcek_pem
    chain = None
    product = "milan"
    errors = []
    if not leaf:
        result.add("snp.chain", False, f"no {what}: the evidence carries none and none was given")
        return
    for anchor in anchors:
        # The table's ASK entry carries the ASVK for a VLEK (GHCB has one GUID for both); the shipped one is
        # tried too, so a host that put the wrong issuer in its table costs nothing when the root is trusted.
        candidates = [c for c in dict.fromkeys((certs.get("ask", b""), anchor.intermediate(signer))) if c]
        if not candidates:
            errors.append(f"{anchor.name}: no {issuer_name} in the evidence and none shipped for this root")
        for intermediate in candidates:
            try:
                chain = walk_chain(anchor.ark_pem, certs.get("ark", anchor.ark_pem), intermediate, leaf, signer)
                break
            except ReportError as exc:
                errors.append(f"{anchor.name}: {exc}")
        if chain is not None:
            result.simulated = anchor.simulated
            product = anchor.name  # the chain that vouched says which TCB layout the report uses
            result.add("snp.chain", True, f"{what} <- {issuer_name} <- ARK ({anchor.name})")
            break
    if chain is None:
        result.add("snp.chain", False, "; ".join(dict.fromkeys(errors)) or "no trust anchor")
        return
    _validity(result, chain, at)
    _revocation(result, chain, crls, at)
    try:
        snp_report.verify_signature(rep, chain.public_key)
        result.add("snp.signature", True, f"ECDSA P-384 by the {what} over bytes 0x000-0x29f")
    except ReportError as exc:
        result.add("snp.signature", False, str(exc))
        return
    _key_identity(result, rep, leaf, signer, result.simulated, product)

    minimum = refs.get("minimum_tcb")
    if minimum:
        for name, value in (("reported", rep.reported_tcb), ("committed", rep.committed_tcb),
                            ("launch", rep.launch_tcb)):
            actual = _tcb(value, product)
            low = {k: actual.get(k, 0) for k in minimum if actual.get(k, 0) < int(minimum[k])}
            result.add(f"snp.tcb.{name}", not low, "at least the minimum TCB" if not low else f"below: {low}",
                       minimum, actual)
    else:
        result.skip("snp.tcb", "reference values set no minimum TCB")

    ref_policy = int(str(refs.get("guest_policy", "0x30000")), 0)
    result.add("snp.policy.debug", not rep.policy & POLICY_DEBUG, "debugging disallowed", 0,
               int(bool(rep.policy & POLICY_DEBUG)))
    result.add("snp.policy.migration_agent", not rep.policy & POLICY_MIGRATE_MA, "no migration agent", 0,
               int(bool(rep.policy & POLICY_MIGRATE_MA)))
    smt_ok = not (rep.policy & POLICY_SMT) or bool(ref_policy & POLICY_SMT)
    result.add("snp.policy.smt", smt_ok, "SMT as the reference policy allows",
               int(bool(ref_policy & POLICY_SMT)), int(bool(rep.policy & POLICY_SMT)))
    abi, ref_abi = (rep.policy >> 8) & 0xFF, (ref_policy >> 8) & 0xFF
    abi_minor, ref_minor = rep.policy & 0xFF, ref_policy & 0xFF
    result.add("snp.policy.abi", (abi, abi_minor) >= (ref_abi, ref_minor), "ABI at least the reference's",
               f"{ref_abi}.{ref_minor}", f"{abi}.{abi_minor}")
    result.add("snp.vmpl", rep.vmpl == 0, "report from VMPL 0", 0, rep.vmpl)

    allowed = sorted({m["measurement"] for m in refs.get("measurements", []) if "measurement" in m})
    result.add("snp.measurement", rep.measurement.hex() in allowed,
               f"one of {len(allowed)} reference launch measurements", allowed[:4], rep.measurement.hex())
    result.bound("snp.host_data", host_data, rep.host_data, "initdata digest", NO_INITDATA)
    result.bound(report_data_claim[0], report_data, rep.report_data, report_data_claim[1], NO_NONCE)
    # Optional: which ID key signed the launch's ID block, and which author key signed that key.
    # A listed allowlist is a constraint even when empty (it then accepts no key): docs/reference-values.md.
    id_keys = [str(k).lower() for k in refs.get("id_key_digests") or []]
    if "id_key_digests" in refs:
        result.add("snp.id_key", rep.id_key_digest.hex() in id_keys, "ID key digest allowed", id_keys,
                   rep.id_key_digest.hex())
    author_keys = [str(k).lower() for k in refs.get("author_key_digests") or []]
    if "author_key_digests" in refs:
        enabled = bool(rep.signer_info & SIGNER_AUTHOR_KEY_EN)
        result.add("snp.author_key", enabled and rep.author_key_digest.hex() in author_keys,
                   "author key digest allowed" if enabled else "the launch used no author key (AUTHOR_KEY_EN clear)",
                   author_keys, rep.author_key_digest.hex() if enabled else None)


def _validity(result: Result, chain: Chain, at: datetime.datetime | None) -> None:
    """Every certificate of the chain that vouched must be within its validity period at the moment judged."""
    when = x509check.moment(at)
    stamp = f"{when:%Y-%m-%dT%H:%M:%SZ}" + (" (--at)" if at is not None else "")
    problems = []
    for name, cert in chain.certificates:
        try:
            x509check.check_validity(cert, when, x509check.label(name, cert))
        except ReportError as exc:
            problems.append(str(exc))
    names = ", ".join(n for n, _ in chain.certificates)
    result.add("snp.validity", not problems, "; ".join(problems) or f"{names} within their validity at {stamp}")


def _revocation(result: Result, chain: Chain, crls: Sequence[Any], at: datetime.datetime | None) -> None:
    """AMD's KDS CRL (per product, signed by the ARK) lists revoked ASKs/ASVKs; any CRL from an issuer in this
    chain is applied, and must itself verify and be current (x509check), or the claim fails."""
    if not crls:
        result.skip("snp.revocation", "no CRL given: revocation not checked")
        return
    issuers = {chain.ark.subject, chain.intermediate.subject}
    applicable = [c for c in crls if c.issuer in issuers]
    if not applicable:
        result.skip("snp.revocation", f"none of the {len(crls)} CRL(s) is from this chain's ARK or "
                                      f"{chain.names[1]}: revocation not checked")
        return
    problems = []
    issued_by = (chain.ark, chain.ark, chain.intermediate)  # the ARK is self-issued; its CRL may list the ARK too
    for (name, cert), issuer in zip(chain.certificates, issued_by, strict=True):
        try:
            x509check.check_revocation(cert, issuer, applicable, at, x509check.label(name, cert))
        except ReportError as exc:
            problems.append(str(exc))
    problems = list(dict.fromkeys(problems))
    result.add("snp.revocation", not problems, "; ".join(problems) or
               f"not revoked: {', '.join(chain.names)} checked against {len(applicable)} CRL(s)")


def _key_identity(result: Result, rep: snp_report.SnpReport, leaf: bytes, signer: str, simulated: bool,
                  product: str = "milan") -> None:
    """The signing key's certificate must be for this report's TCB (and, for a VCEK, this chip).

    Claims are named for the key that signed (``snp.vcek.tcb`` or ``snp.vlek.tcb``): a VLEK is not chip-bound,
    so a VLEK-signed report has no chip claim, and a reader must not take one for the other."""
    what = signer.upper()
    claim = f"snp.{signer}.tcb"
    try:
        ext = vcek.extensions(x509check.load_certificate(leaf, what), what)
    except ReportError as exc:
        result.add(claim, False, str(exc))
        return
    reported = _tcb(rep.reported_tcb, product)
    if ext.tcb is None:
        # AMD's KDS always writes them; only the sim chain (trusted explicitly) may lack them.
        if simulated:
            result.skip(claim, f"sim {what} carries no TCB extensions")
        else:
            result.add(claim, False, f"{what} carries no TCB extensions", reported, None)
    else:
        to = f" (issued to {ext.csp_id})" if ext.csp_id else ""
        result.add(claim, ext.tcb == reported, f"{what}{to} issued for the REPORTED_TCB", reported, ext.tcb)
    if signer != "vcek":
        return  # a VLEK is issued per cloud provider, not per chip
    if rep.signer_info & SIGNER_MASK_CHIP_ID:
        result.skip("snp.vcek.chip_id", "the report masks CHIP_ID (MASK_CHIP_ID set)")
    elif ext.hwid is None:
        if simulated:
            result.skip("snp.vcek.chip_id", "sim VCEK carries no hwID extension")
        else:
            result.add("snp.vcek.chip_id", False, "VCEK carries no hwID extension", rep.chip_id.hex(), None)
    else:
        result.add("snp.vcek.chip_id", vcek.chip_matches(ext.hwid, rep.chip_id), "VCEK issued for the report's CHIP_ID",
                   rep.chip_id.hex(), ext.hwid.hex())

