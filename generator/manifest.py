"""manifest.json in Contrast's shape: which launches and which pod policies a deployment trusts.

Contrast's coordinator reads ``ReferenceValues`` (launch measurements per platform), ``Policies``
(hex SHA-256 of each pod's initdata document, i.e. its HOSTDATA, -> the names its mesh certificate
carries and the ID its workload secret is derived from), ``WorkloadOwnerKeyDigests`` (who may update
the manifest) and ``SeedshareOwnerPubKeys`` (who can recover the coordinator). Field names and shapes:
contrast ``internal/manifest/manifest.go`` and ``referencevalues.go`` (research/coordinator-kbs.md 1.4).

cocoon's reference values (docs/reference-values.md) are the source of ``ReferenceValues``; the
mapping is in one place here, both ways, so the coordinator verifies with exactly what the generator
wrote. Updating an existing manifest keeps everything a person decides (owner keys, SANs,
WorkloadSecretIDs, minimum TCBs, allowed chip IDs, unknown keys) and replaces what the generator derives
(the policy hashes and measurements), so a changed pod's old policy is no longer trusted.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from generator.errors import GenerateError

PLATFORMS = ("sim", "snp", "tdx")
#: cocoon minimum_tcb key -> Contrast MinimumTCB key (go-sev-guest TCB parts)
TCB_KEYS = {"bootloader": "BootloaderVersion", "tee": "TEEVersion", "snp": "SNPVersion",
            "microcode": "MicrocodeVersion"}
#: SNP guest policy bits (AMD SEV-SNP ABI spec, table "Guest Policy Structure"), as go-sev-guest names them
GUEST_POLICY_BITS = {"SMT": 16, "MigrateMA": 18, "Debug": 19, "SingleSocket": 20, "CXLAllowed": 21,
                     "MemAES256XTS": 22, "RAPLDis": 23, "CipherTextHidingDRAM": 24, "PageSwapDisable": 25}
PLATFORM_INFO = ("SMTEnabled", "TSMEEnabled", "ECCEnabled", "RAPLDisabled", "CiphertextHidingDRAMEnabled",
                 "AliasCheckComplete", "TIOEnabled")
#: what a person may edit in a reference value entry and an update keeps (matched by ProductName / MrTd)
KEPT_SNP = ("MinimumTCB", "PlatformInfo", "MinimumMitigationVector", "AllowedChipIDs")
KEPT_TDX = ("MrSeam", "Xfam", "AllowedPIIDs", "MinTCBEvaluationDataNumber", "MemoryIntegrity", "SMTDisabled",
            "StaticPlatform")


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def product_name(vcpu_type: str | None) -> str:
    """QEMU's CPU model -> the product the VCEK is issued for (EPYC-Milan-v2 -> Milan)."""
    model = (vcpu_type or "").removeprefix("EPYC-").split("-")[0]
    return model or "Milan"


def guest_policy(value: int) -> dict[str, Any]:
    policy: dict[str, Any] = {"ABIMinor": value & 0xFF, "ABIMajor": (value >> 8) & 0xFF}
    policy.update({name: bool(value >> bit & 1) for name, bit in GUEST_POLICY_BITS.items()})
    return policy


def guest_policy_value(policy: Mapping[str, Any]) -> int:
    value = (1 << 17) | int(policy.get("ABIMinor", 0)) | int(policy.get("ABIMajor", 0)) << 8  # bit 17: must be one
    return value | sum(1 << bit for name, bit in GUEST_POLICY_BITS.items() if policy.get(name))


def snp_values(refs: Mapping[str, Any], platform: str) -> list[dict[str, Any]]:
    snp = refs.get("snp") or {}
    tcb = snp.get("minimum_tcb") or {}
    policy = guest_policy(_int(snp.get("guest_policy", 0x30000)))
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for m in snp.get("measurements") or []:
        product = product_name(m.get("vcpu_type"))
        key = (product, m["measurement"].lower())
        out.setdefault(key, {
            "Platform": "QEMU-sim" if platform == "sim" else "QEMU-SNP",
            "ProductName": product,
            "TrustedMeasurement": key[1],
            "MinimumTCB": {name: int(tcb.get(k, 0)) for k, name in TCB_KEYS.items()},
            "GuestPolicy": policy,
            "PlatformInfo": dict.fromkeys(PLATFORM_INFO, False),
            "MinimumMitigationVector": 0,
            "AllowedChipIDs": [],
        })
    return [out[k] for k in sorted(out)]


def _candidates(value: Any) -> list[str]:
    if value is None:
        return [""]
    values = [value] if isinstance(value, str) else list(value)
    return [v.lower() for v in values] or [""]


def tdx_values(refs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One entry per combination of MRTD and RTMR candidates (Contrast compares each register exactly);
    an RTMR cocoon does not predict (RTMR0 without a recorded launch, RTMR3) is "" and not compared."""
    tdx = refs.get("tdx") or {}
    mrtds = sorted({v.lower() for v in (tdx.get("mrtd") or {}).values() if v})
    rtmr = tdx.get("rtmr") if isinstance(tdx.get("rtmr"), Mapping) else {}
    registers = [_candidates((rtmr or {}).get(f"rtmr{i}")) for i in range(4)]
    xfam = tdx.get("xfam")
    out = []
    for mrtd in mrtds:
        for rtmrs in itertools.product(*registers):
            out.append({"Platform": "QEMU-TDX", "MrTd": mrtd, "MrSeam": "", "Rtmrs": list(rtmrs),
                        "Xfam": f"{_int(xfam):016x}" if xfam is not None else "", "AllowedPIIDs": [],
                        "MinTCBEvaluationDataNumber": 0, "MemoryIntegrity": False, "SMTDisabled": False,
                        "StaticPlatform": False})
    return out


def reference_values(refs: Mapping[str, Any], platform: str) -> dict[str, Any]:
    """Contrast's ``ReferenceValues`` for one platform, from a validated cocoon reference-values document."""
    if platform not in PLATFORMS:
        raise GenerateError(f"unknown platform {platform!r} (one of {', '.join(PLATFORMS)})")
    if platform == "tdx":
        values = tdx_values(refs)
        if not values:
            raise GenerateError("the reference values have no TDX MRTD: measure with a TDVF firmware (--tdx-ovmf)")
        return {"tdx": values}
    values = snp_values(refs, platform)
    if not values:
        raise GenerateError(f"the reference values have no SNP measurements for --platform {platform}")
    return {"snp": values}


def to_cocoon_refs(values: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse: a cocoon reference-values document a verifier takes, from a manifest's ReferenceValues."""
    out: dict[str, Any] = {}
    snp = values.get("snp") or []
    if snp:
        out["snp"] = {"guest_policy": guest_policy_value(snp[0]["GuestPolicy"]),
                      "measurements": [{"measurement": e["TrustedMeasurement"]} for e in snp],
                      # one cocoon document for all entries: the least any entry asks (entries agree when generated)
                      "minimum_tcb": {k: min(int(e["MinimumTCB"].get(name, 0)) for e in snp)
                                      for k, name in TCB_KEYS.items()}}
    tdx = values.get("tdx") or []
    if tdx:
        out["tdx"] = {"mrtd": {f"entry{i}": e["MrTd"] for i, e in enumerate(tdx)},
                      "rtmr": {f"rtmr{i}": sorted({e["Rtmrs"][i] for e in tdx if e["Rtmrs"][i]}) for i in range(4)}}
    return out


def _keep(new: list[dict[str, Any]], old: Sequence[Any], key: str, kept: Sequence[str]) -> list[dict[str, Any]]:
    previous = {e.get(key): e for e in old if isinstance(e, Mapping)}
    for entry in new:
        was = previous.get(entry[key])
        if was is not None:
            entry.update({k: was[k] for k in kept if k in was and was[k] not in ("", None)})
    return new


def secret_id(api_version: str, kind: str, namespace: str, name: str) -> str:
    """The default WorkloadSecretID: the qualified resource name, as Contrast's generate writes it."""
    return f"{api_version}/{kind}/{namespace}/{name}"


def update(existing: Mapping[str, Any] | None, values: Mapping[str, Any],
           policies: Mapping[str, tuple[str, list[str]]], roles: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The manifest after this run: ``policies`` maps initdata digest hex -> (WorkloadSecretID, default SANs);
    ``roles`` digest -> Role for the pods that have one (the coordinator's, from its pod-role annotation)."""
    old = dict(existing or {})
    old_policies = old.get("Policies") or {}
    by_secret = {v.get("WorkloadSecretID"): v for v in old_policies.values() if isinstance(v, Mapping)}
    entries: dict[str, Any] = {}
    for digest, (sid, sans) in sorted(policies.items()):
        was = old_policies.get(digest) or by_secret.get(sid) or {}
        entry = {"SANs": list(was.get("SANs", sans)), "WorkloadSecretID": was.get("WorkloadSecretID", sid)}
        role = (roles or {}).get(digest) or was.get("Role")
        if role:
            entry["Role"] = role
        entries[digest] = entry
    old_values = old.get("ReferenceValues") or {}
    ref: dict[str, Any] = {}
    if "snp" in values:
        ref["snp"] = _keep([dict(e) for e in values["snp"]], old_values.get("snp") or [], "ProductName", KEPT_SNP)
    if "tdx" in values:
        ref["tdx"] = _keep([dict(e) for e in values["tdx"]], old_values.get("tdx") or [], "MrTd", KEPT_TDX)
    out = {k: v for k, v in old.items() if k not in ("Policies", "ReferenceValues")}
    out["Policies"] = entries
    out["ReferenceValues"] = ref
    out.setdefault("WorkloadOwnerKeyDigests", [])
    out.setdefault("SeedshareOwnerPubKeys", [])
    return out


def load(raw: bytes, source: str) -> dict[str, Any]:
    """A manifest from outside: strict JSON (no repeated keys), the four sections of the right types."""
    from verifier.refs import ReferenceValuesError, loads_json

    try:
        doc = loads_json(raw, f"manifest {source}")
    except ReferenceValuesError as exc:
        raise GenerateError(str(exc)) from None
    if not isinstance(doc, dict):
        raise GenerateError(f"manifest {source}: expected a JSON object")
    for key, kind in (("Policies", dict), ("ReferenceValues", dict), ("WorkloadOwnerKeyDigests", list),
                      ("SeedshareOwnerPubKeys", list)):
        if key in doc and doc[key] is not None and not isinstance(doc[key], kind):
            raise GenerateError(f"manifest {source}: {key} must be a JSON {'object' if kind is dict else 'array'}")
    for digest, entry in (doc.get("Policies") or {}).items():
        if not (len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)) or not isinstance(entry, dict):
            raise GenerateError(f"manifest {source}: Policies: key {digest[:70]!r} must be 64 lower-case hex digits "
                                "(an initdata digest) mapping to an object")
        if not isinstance(entry.get("SANs", []), list) or not all(isinstance(s, str) for s in entry.get("SANs", [])):
            raise GenerateError(f"manifest {source}: Policies.{digest}.SANs must be a list of strings")
        if not isinstance(entry.get("WorkloadSecretID", ""), str):
            raise GenerateError(f"manifest {source}: Policies.{digest}.WorkloadSecretID must be a string")
        if not isinstance(entry.get("Role", ""), str):
            raise GenerateError(f"manifest {source}: Policies.{digest}.Role must be a string")
    for key in ("WorkloadOwnerKeyDigests", "SeedshareOwnerPubKeys"):
        if not all(isinstance(k, str) for k in doc.get(key) or []):
            raise GenerateError(f"manifest {source}: {key} must be a list of strings (hex keys or digests)")
    values = doc.get("ReferenceValues") or {}
    for platform, entries in values.items():
        if platform not in ("snp", "tdx") or not isinstance(entries, list) or not all(
                isinstance(e, dict) for e in entries):
            raise GenerateError(f"manifest {source}: ReferenceValues.{platform} must be a list of objects "
                                "(platforms: snp, tdx)")
    return doc


def coordinator_digest(doc: Mapping[str, Any]) -> bytes | None:
    """The initdata digest of the manifest's one ``Role: coordinator`` policy (None without one); two such
    entries make the coordinator ambiguous and are refused."""
    found = [d for d, e in (doc.get("Policies") or {}).items()
             if isinstance(e, Mapping) and e.get("Role") == "coordinator"]
    if len(found) > 1:
        raise GenerateError(f"the manifest names {len(found)} coordinator policies (Role: coordinator); one at most")
    return bytes.fromhex(found[0]) if found else None


def dumps(manifest: Mapping[str, Any]) -> bytes:
    """Deterministic text: sorted keys, two-space indent, a final newline (two runs, identical bytes)."""
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
