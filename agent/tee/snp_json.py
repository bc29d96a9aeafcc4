"""An SNP ATTESTATION_REPORT as Trustee's ``snp`` evidence carries it, and back to the bytes it was signed as.

Trustee's ``primary_evidence`` for ``snp`` is ``{"attestation_report": <the report as virtee/sev's serde
writes it>, "cert_chain": [{"cert_type": "VCEK"|"VLEK"|"ASK"|"ARK", "data": [DER bytes as ints]}] | null}``
(trustee attestation-service/tests/e2e/evidence.json; kbs-types). Byte fields are arrays of integers,
TCB versions objects ``{fmc, bootloader, tee, snp, microcode}`` (fmc null before Turin), the firmware
versions ``{major, minor, build}``, the signature ``{r, s}`` as 72-byte little-endian arrays. The layout
itself is agent/tee/snp_report.py's LAYOUT, so the bytes rebuilt here are the bytes the PSP signed, and the
verifier checks the signature over exactly them; a JSON report that does not rebuild to a well-formed
report (a key missing or unknown, a value out of range) is refused (ReportError).

Here in agent/ because the guest writes this shape (its attestation agent's evidence) and the key broker
(coordinator/kbs) reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.errors import ReportError
from agent.tee import snp_report
from agent.tee.snp_report import LAYOUT, TcbVersion

TCB_FIELDS = ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb")
VERSION_GROUPS = {"current": ("current_major", "current_minor", "current_build"),
                  "committed": ("committed_major", "committed_minor", "committed_build")}
RENAMED = {"signature_algo": "sig_algo", "platform_info": "plat_info", "signer_info": "key_info"}
OPTIONAL = frozenset({"cpuid_fam_id", "cpuid_mod_id", "cpuid_step", "launch_mit_vector", "current_mit_vector"})
TURIN_FAMILY = 0x1A  # CPUID family of Turin: its TCB_VERSION has an FMC byte (SNP ABI 1.58)
CERT_TYPES = {"VCEK": "vcek", "VLEK": "vlek", "ASK": "ask", "ARK": "ark"}
_COMPONENT = 72


def _product(values: Mapping[str, Any]) -> str:
    return "turin" if values.get("cpuid_fam_id") == TURIN_FAMILY else "milan"


def to_json(report: bytes) -> dict[str, Any]:
    """The report (raw bytes, well-formed) in Trustee's shape."""
    rep = snp_report.parse(report)
    values = {name: getattr(rep, name) for name, *_ in LAYOUT}
    product = _product(values)
    out: dict[str, Any] = {}
    for name, _, _, kind in LAYOUT:
        value = values[name]
        if name in TCB_FIELDS:
            tcb = TcbVersion.from_u64(value, product)
            out[name] = {"fmc": tcb.fmc, "bootloader": tcb.bootloader, "tee": tcb.tee, "snp": tcb.snp,
                         "microcode": tcb.microcode}
        elif any(name in group for group in VERSION_GROUPS.values()) or value is None:
            continue
        else:
            out[RENAMED.get(name, name)] = list(value) if kind == "bytes" else value
    for group, names in VERSION_GROUPS.items():
        out[group] = {"major": values[names[0]], "minor": values[names[1]], "build": values[names[2]]}
    out["signature"] = {"r": list(rep.signature_r.to_bytes(_COMPONENT, "little")),
                        "s": list(rep.signature_s.to_bytes(_COMPONENT, "little"))}
    return out


def _int(value: Any, bits: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise ReportError(f"snp attestation_report.{where} is not a {bits}-bit unsigned integer")
    return value


def _bytes(value: Any, size: int, where: str) -> bytes:
    if not isinstance(value, list) or len(value) != size:
        raise ReportError(f"snp attestation_report.{where} is not an array of {size} bytes")
    return bytes(_int(b, 8, where) for b in value)


def _object(doc: Any, keys: tuple[str, ...], where: str, nullable: frozenset[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(doc, dict) or set(doc) != set(keys):
        raise ReportError(f"snp attestation_report.{where} must have exactly {', '.join(keys)}")
    return {k: (None if k in nullable and doc[k] is None else _int(doc[k], 8, f"{where}.{k}")) for k in keys}


def from_json(doc: Any) -> bytes:
    """The raw report from Trustee's shape; every key checked, the result parsed as a report once more."""
    if not isinstance(doc, dict):
        raise ReportError("snp attestation_report is not an object")
    names = {RENAMED.get(n, n): n for n, *_ in LAYOUT if not any(n in g for g in VERSION_GROUPS.values())}
    allowed = set(names) | set(VERSION_GROUPS) | {"signature"}
    required = allowed - {RENAMED.get(n, n) for n in OPTIONAL}
    if required - doc.keys() or doc.keys() - allowed:
        raise ReportError(f"snp attestation_report keys: missing {sorted(required - doc.keys())}, "
                                           f"unknown {sorted(doc.keys() - allowed)[:8]}")
    values: dict[str, Any] = {}
    for name, _, size, kind in LAYOUT:
        key = RENAMED.get(name, name)
        if any(name in g for g in VERSION_GROUPS.values()) or key not in doc:
            continue
        if name in TCB_FIELDS:
            continue
        values[name] = _bytes(doc[key], size, key) if kind == "bytes" else _int(doc[key], 8 * size, key)
    product = _product(values)
    for name in TCB_FIELDS:
        tcb = _object(doc[name], ("fmc", "bootloader", "tee", "snp", "microcode"), name, frozenset({"fmc"}))
        if (tcb["fmc"] is not None) != (product == "turin"):
            raise ReportError(f"snp attestation_report.{name}.fmc is set only for Turin reports")
        values[name] = TcbVersion(tcb["bootloader"], tcb["tee"], tcb["snp"], tcb["microcode"], tcb["fmc"]).to_u64()
    for group, fields in VERSION_GROUPS.items():
        v = _object(doc[group], ("major", "minor", "build"), group)
        values.update(zip(fields, (v["major"], v["minor"], v["build"]), strict=True))
    sig = doc["signature"]
    if not isinstance(sig, dict) or set(sig) != {"r", "s"}:
        raise ReportError("snp attestation_report.signature must have exactly r and s")
    r = int.from_bytes(_bytes(sig["r"], _COMPONENT, "signature.r"), "little")
    s = int.from_bytes(_bytes(sig["s"], _COMPONENT, "signature.s"), "little")
    try:
        report = snp_report.assemble(snp_report.build_body(**values), r, s)
        snp_report.parse(report)
    except ReportError as exc:
        raise ReportError(f"snp attestation_report: {exc}") from None
    return report


def cert_table(chain: Any) -> dict[str, bytes]:
    """The evidence's certificates by role (vcek, vlek, ask, ark), DER; null or [] is none."""
    if chain is None:
        return {}
    if not isinstance(chain, list) or len(chain) > 8:
        raise ReportError("snp cert_chain is not a list of at most 8 certificates")
    out: dict[str, bytes] = {}
    for i, entry in enumerate(chain):
        if not isinstance(entry, dict) or set(entry) != {"cert_type", "data"}:
            raise ReportError(f"snp cert_chain[{i}] must have exactly cert_type and data")
        role = CERT_TYPES.get(entry["cert_type"]) if isinstance(entry["cert_type"], str) else None
        if role is None:
            raise ReportError(f"snp cert_chain[{i}].cert_type {entry['cert_type']!r} is not "
                                               f"one of {', '.join(CERT_TYPES)}")
        data = entry["data"]
        if not isinstance(data, list) or not 0 < len(data) <= 16384:
            raise ReportError(f"snp cert_chain[{i}].data is not a DER certificate's bytes")
        if role in out:
            raise ReportError(f"snp cert_chain has two {entry['cert_type']} certificates")
        out[role] = _bytes(data, len(data), f"cert_chain[{i}].data")
    return out


def chain_json(certs: Mapping[str, bytes]) -> list[dict[str, Any]]:
    """The other direction (clients): certificates by role as Trustee's cert_chain."""
    names = {v: k for k, v in CERT_TYPES.items()}
    return [{"cert_type": names[role], "data": list(der)} for role, der in certs.items() if role in names]
