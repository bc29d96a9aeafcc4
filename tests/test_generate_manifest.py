"""manifest.json in Contrast's shape: built from cocoon's reference values, updated keeping what people decide,
read strictly, and compared by `cocoon manifest diff` in terms of what is trusted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generator import manifest, manifest_diff
from generator.errors import GenerateError
from verifier import refs

M1, M2 = "a1" * 48, "b2" * 48
MRTD, R1A, R1B, R2 = "c3" * 48, "d4" * 48, "e5" * 48, "f6" * 48
REFS: dict[str, Any] = refs.validate({
    "snp": {"guest_policy": "0x30000", "minimum_tcb": {"bootloader": 3, "tee": 0, "snp": 22, "microcode": 211},
            "measurements": [{"vcpus": 2, "vcpu_type": "EPYC-Milan", "measurement": M1},
                             {"vcpus": 2, "vcpu_type": "EPYC-Genoa-v1", "measurement": M2},
                             {"vcpus": 4, "vcpu_type": "EPYC-Milan", "measurement": M1.upper()}]},
    "tdx": {"mrtd": {"single_pass": MRTD, "two_pass": None}, "rtmr": {"rtmr1": [R1A, R1B], "rtmr2": [R2]}},
})
P1, P2, P3 = "11" * 32, "22" * 32, "33" * 32


def test_snp_reference_values_follow_contrasts_fields() -> None:
    values = manifest.reference_values(REFS, "snp")
    assert [(e["ProductName"], e["TrustedMeasurement"]) for e in values["snp"]] == [("Genoa", M2), ("Milan", M1)]
    e = values["snp"][1]
    assert e["MinimumTCB"] == {"BootloaderVersion": 3, "TEEVersion": 0, "SNPVersion": 22, "MicrocodeVersion": 211}
    assert e["GuestPolicy"]["SMT"] is True and e["GuestPolicy"]["Debug"] is False
    assert e["GuestPolicy"]["ABIMajor"] == 0 and e["AllowedChipIDs"] == []
    assert manifest.guest_policy_value(e["GuestPolicy"]) == 0x30000
    assert manifest.reference_values(REFS, "sim")["snp"][0]["Platform"] == "QEMU-sim"


def test_tdx_reference_values_list_every_rtmr_combination() -> None:
    values = manifest.reference_values(REFS, "tdx")["tdx"]
    assert [e["Rtmrs"] for e in values] == [["", R1A, R2, ""], ["", R1B, R2, ""]]
    assert {e["MrTd"] for e in values} == {MRTD}
    with pytest.raises(GenerateError, match="no TDX MRTD"):
        manifest.reference_values(refs.validate({"snp": REFS["snp"]}), "tdx")
    with pytest.raises(GenerateError, match="unknown platform"):
        manifest.reference_values(REFS, "sev")


def test_the_inverse_gives_a_document_the_verifier_takes_with_the_same_measurements() -> None:
    back = refs.validate(manifest.to_cocoon_refs({**manifest.reference_values(REFS, "snp"),
                                                  **manifest.reference_values(REFS, "tdx")}))
    assert sorted(m["measurement"] for m in back["snp"]["measurements"]) == sorted([M1, M2])
    assert back["snp"]["minimum_tcb"]["microcode"] == 211
    assert set(back["tdx"]["mrtd"].values()) == {MRTD}
    assert back["tdx"]["rtmr"]["rtmr1"] == sorted([R1A, R1B]) and back["tdx"]["rtmr"]["rtmr0"] == []


def test_update_replaces_what_is_derived_and_keeps_what_people_decide() -> None:
    values = manifest.reference_values(REFS, "snp")
    first = manifest.update(None, values, {P1: ("apps/v1/Deployment/default/web", ["web", "*"]),
                                           P2: ("v1/Pod/default/db", ["db", "*"])})
    assert first["WorkloadOwnerKeyDigests"] == [] and first["SeedshareOwnerPubKeys"] == []
    edited = json.loads(json.dumps(first))
    edited["WorkloadOwnerKeyDigests"] = ["ab" * 32]
    edited["SeedshareOwnerPubKeys"] = ["3082"]
    edited["Policies"][P1]["SANs"] = ["web.example", "10.0.0.1"]
    edited["Policies"][P2]["Role"] = "coordinator"
    edited["ReferenceValues"]["snp"][1]["MinimumTCB"]["SNPVersion"] = 24
    edited["Extra"] = {"kept": True}
    # web's policy changed (P1 -> P3), db's did not
    second = manifest.update(edited, values, {P3: ("apps/v1/Deployment/default/web", ["web", "*"]),
                                              P2: ("v1/Pod/default/db", ["db", "*"])})
    assert set(second["Policies"]) == {P2, P3}  # the old policy is no longer trusted
    assert second["Policies"][P3]["SANs"] == ["web.example", "10.0.0.1"]  # found by its WorkloadSecretID
    assert second["Policies"][P2]["Role"] == "coordinator"
    assert second["WorkloadOwnerKeyDigests"] == ["ab" * 32] and second["SeedshareOwnerPubKeys"] == ["3082"]
    assert second["ReferenceValues"]["snp"][1]["MinimumTCB"]["SNPVersion"] == 24
    assert second["Extra"] == {"kept": True}
    assert manifest.dumps(second) == manifest.dumps(json.loads(manifest.dumps(second)))  # stable text

    changes = manifest_diff.diff(edited, second)
    assert [c["policy_from"] for c in changes["policies_changed"]] == [P1]
    assert not changes["policies_added"] and not changes["policies_removed"]
    text = manifest_diff.describe(changes)
    assert any("apps/v1/Deployment/default/web: its policy changed" in line for line in text)


def test_diff_names_added_and_removed_pods_measurements_and_keys() -> None:
    values = manifest.reference_values(REFS, "snp")
    old = manifest.update(None, values, {P1: ("web", ["web"])})
    new = manifest.update(old, {"snp": values["snp"][:1]}, {P2: ("db", ["db"])})
    new["WorkloadOwnerKeyDigests"] = ["cd" * 32]
    changes = manifest_diff.diff(old, new)
    assert [c["workload"] for c in changes["policies_added"]] == ["db"]
    assert [c["workload"] for c in changes["policies_removed"]] == ["web"]
    assert changes["measurements_removed"] == [{"platform": "snp", "value": M1}]
    assert changes["owner_keys_added"] == [{"key": "cd" * 32}]
    assert manifest_diff.diff(new, json.loads(json.dumps(new))) == {k: [] for k in changes}


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"Policies": {}, "Policies": {}}', "duplicate key Policies"),
    (b"[1]", "expected a JSON object"),
    (b'{"Policies": []}', "Policies must be a JSON object"),
    (b'{"Policies": {"xyz": {}}}', "must be 64 lower-case hex digits"),
    (b'{"Policies": {"' + b"a" * 64 + b'": {"SANs": "web"}}}', "SANs must be a list of strings"),
    (b'{"ReferenceValues": {"sev": []}}', "ReferenceValues.sev must be a list of objects"),
    (b'{"WorkloadOwnerKeyDigests": {}}', "WorkloadOwnerKeyDigests must be a JSON array"),
    (b"\xff", "manifest m.json"),
])
def test_bad_manifests_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(GenerateError, match=message):
        manifest.load(raw, "m.json")


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=70),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(
                        ["Policies", "ReferenceValues", "snp", "tdx", "SANs", "WorkloadSecretID", "a" * 64]), c,
                        max_size=4), max_leaves=10))
def test_random_manifests_load_or_are_refused(doc: object) -> None:
    try:
        loaded = manifest.load(json.dumps(doc).encode(), "fuzz")
    except GenerateError:
        return
    manifest_diff.describe(manifest_diff.diff(loaded, loaded))


def test_cli_manifest_diff_exit_status_and_json(tmp_path: Path) -> None:
    values = manifest.reference_values(REFS, "snp")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_bytes(manifest.dumps(manifest.update(None, values, {P1: ("web", ["web"])})))
    b.write_bytes(manifest.dumps(manifest.update(None, values, {P1: ("web", ["web"]), P2: ("db", ["db"])})))

    def cocoon(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cocoon", "manifest", "diff", *argv], capture_output=True,
                              text=True, timeout=60)

    same = cocoon(str(a), str(a))
    assert (same.returncode, same.stdout.strip()) == (0, "no change: both manifests trust the same pods and launches")
    differ = cocoon(str(a), str(b), "--json")
    assert differ.returncode == 1 and json.loads(differ.stdout)["policies_added"][0]["workload"] == "db"
    (tmp_path / "bad.json").write_text('{"Policies": 1}')
    bad = cocoon(str(a), str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and bad.stdout == "" and len(bad.stderr.splitlines()) == 1
    assert "Policies must be a JSON object" in bad.stderr
