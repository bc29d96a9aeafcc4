"""What a manifest update changes, in the terms a relying party decides on.

A manifest is a list of things trusted: pod policies (by initdata digest, with the names their
certificates carry and the secret they get), launch measurements, and the keys allowed to change or
recover the deployment. The diff is over those sets, not over JSON text: a re-ordered list is no
change, a policy that moved to a new digest under the same WorkloadSecretID is one "changed" entry
(the pod's policy was regenerated) rather than a removal and an unrelated addition.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _policies(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: dict(v) for k, v in (doc.get("Policies") or {}).items()}


def _measurements(doc: Mapping[str, Any]) -> set[tuple[str, str]]:
    values = doc.get("ReferenceValues") or {}
    out = {("snp", str(e.get("TrustedMeasurement", ""))) for e in values.get("snp") or []}
    out |= {("tdx", "/".join([str(e.get("MrTd", "")), *map(str, e.get("Rtmrs") or [])]))
            for e in values.get("tdx") or []}
    return out


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Changes from ``old`` to ``new``, each list empty when that part is the same."""
    po, pn = _policies(old), _policies(new)
    by_id_old = {v.get("WorkloadSecretID"): k for k, v in po.items()}
    changed, added, removed = [], [], []
    matched_old: set[str] = set()
    for digest, entry in sorted(pn.items()):
        if digest in po:
            matched_old.add(digest)
            if po[digest] != entry:
                changed.append({"workload": entry.get("WorkloadSecretID"), "policy": digest,
                                "from": po[digest], "to": entry})
            continue
        was = by_id_old.get(entry.get("WorkloadSecretID"))
        if was is not None and was not in pn:
            matched_old.add(was)
            changed.append({"workload": entry.get("WorkloadSecretID"), "policy_from": was, "policy": digest,
                            "from": po[was], "to": entry})
        else:
            added.append({"workload": entry.get("WorkloadSecretID"), "policy": digest, "entry": entry})
    for digest, entry in sorted(po.items()):
        if digest not in matched_old:
            removed.append({"workload": entry.get("WorkloadSecretID"), "policy": digest, "entry": entry})
    mo, mn = _measurements(old), _measurements(new)
    keys: dict[str, list[dict[str, Any]]] = {"owner_keys_added": [], "owner_keys_removed": [],
                                             "seedshare_keys_added": [], "seedshare_keys_removed": []}
    for field, label in (("WorkloadOwnerKeyDigests", "owner_keys"), ("SeedshareOwnerPubKeys", "seedshare_keys")):
        a, b = set(old.get(field) or []), set(new.get(field) or [])
        keys[f"{label}_added"] = [{"key": k} for k in sorted(b - a)]
        keys[f"{label}_removed"] = [{"key": k} for k in sorted(a - b)]
    return {
        "policies_added": added, "policies_removed": removed, "policies_changed": changed,
        "measurements_added": [{"platform": p, "value": v} for p, v in sorted(mn - mo)],
        "measurements_removed": [{"platform": p, "value": v} for p, v in sorted(mo - mn)],
        **keys,
    }


def _short(digest: str) -> str:
    return digest[:16] + "…"


def describe(changes: Mapping[str, list[dict[str, Any]]]) -> list[str]:
    """The changes as sentences, most consequential first."""
    lines: list[str] = []
    for c in changes.get("policies_changed", []):
        if "policy_from" in c:
            lines.append(f"pod {c['workload']}: its policy changed ({_short(c['policy_from'])} -> "
                         f"{_short(c['policy'])}): pods started with the old policy are no longer trusted")
        if c["from"].get("SANs") != c["to"].get("SANs"):
            lines.append(f"pod {c['workload']}: certificate names {c['from'].get('SANs')} -> {c['to'].get('SANs')}")
        if c["from"].get("WorkloadSecretID") != c["to"].get("WorkloadSecretID"):
            lines.append(f"policy {_short(c['policy'])}: workload secret ID {c['from'].get('WorkloadSecretID')!r} -> "
                         f"{c['to'].get('WorkloadSecretID')!r} (the pod gets a different secret)")
        if c["from"].get("Role") != c["to"].get("Role"):
            lines.append(f"policy {_short(c['policy'])}: role {c['from'].get('Role')!r} -> {c['to'].get('Role')!r}")
    lines += [f"pod {c['workload']}: newly trusted (policy {_short(c['policy'])}, names {c['entry'].get('SANs')})"
              for c in changes.get("policies_added", [])]
    lines += [f"pod {c['workload']}: no longer trusted (policy {_short(c['policy'])})"
              for c in changes.get("policies_removed", [])]
    lines += [f"{c['platform']} launch measurement newly accepted: {c['value']}"
              for c in changes.get("measurements_added", [])]
    lines += [f"{c['platform']} launch measurement no longer accepted: {c['value']}"
              for c in changes.get("measurements_removed", [])]
    for label, who in (("owner_keys", "workload owner key (may update the manifest)"),
                       ("seedshare_keys", "seed-share owner key (may recover the coordinator)")):
        lines += [f"{who} added: {c['key'][:32]}…" for c in changes.get(f"{label}_added", [])]
        lines += [f"{who} removed: {c['key'][:32]}…" for c in changes.get(f"{label}_removed", [])]
    return lines
