"""The ``cocoon`` command as a user runs it: outputs, JSON, and clean errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sevsnpmeasure import guest as ssm_guest
from sevsnpmeasure import vcpu_types as ssm_vcpu
from sevsnpmeasure.sev_mode import SevMode

from launcher.fwgen import make_firmware


def cocoon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cocoon", *args], capture_output=True, text=True)


def test_measure_snp_prints_hex(debian_ovmf: Path) -> None:
    res = cocoon("measure", "snp", "--ovmf", str(debian_ovmf), "--vcpus", "4", "--vcpu-type", "EPYC-Genoa",
                 "--guest-features", "0x21")
    assert res.returncode == 0, res.stderr
    expected = ssm_guest.calc_launch_digest(SevMode.SEV_SNP, 4, ssm_vcpu.CPU_SIGS["EPYC-Genoa"], str(debian_ovmf),
                                            None, None, None, 0x21).hex()
    assert res.stdout.strip() == expected


def test_measure_json_and_tdx(debian_ovmf: Path) -> None:
    res = cocoon("measure", "tdx", "--ovmf", str(debian_ovmf), "--json")
    doc = json.loads(res.stdout)
    assert doc["platform"] == "tdx" and doc["page_add_order"] == "single-pass"
    assert doc["measurement"].startswith("4c7206f0")


def test_igvm_build_inspect_measure(debian_ovmf: Path, tmp_path: Path) -> None:
    out = tmp_path / "fw.igvm"
    res = cocoon("igvm", "build", "--platform", "snp", "--ovmf", str(debian_ovmf), "--vcpus", "2",
                 "--vcpu-type", "EPYC-Milan", "-o", str(out), "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    native = cocoon("measure", "igvm", str(out), "--zero-pages", "native")
    assert native.stdout.strip() == summary["measurement_qemu_ovmf"]
    inspect = json.loads(cocoon("igvm", "inspect", str(out), "--json").stdout)
    types = [h["type"] for h in inspect["headers"]]
    assert types[:2] == ["SUPPORTED_PLATFORM", "GUEST_POLICY"] and types.count("VP_CONTEXT") == 2
    text = cocoon("igvm", "inspect", str(out))
    assert "platform_type=SEV_SNP" in text.stdout


def test_reference_values(tmp_path: Path) -> None:
    fw = tmp_path / "amdsev.fd"
    fw.write_bytes(make_firmware(tdvf_sections=[(0x4000, 0x1000, 0xFFFF0000, 0x1000, 0, 1)]))
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k" * 5000)
    out = tmp_path / "rv.json"
    res = cocoon("reference-values", "--ovmf", str(fw), "--kernel", str(kernel), "--append", "console=ttyS0",
                 "--vcpus", "1,2", "--vcpu-types", "EPYC-Milan", "-o", str(out))
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "cocoon.reference-values/v1"
    entries = doc["snp"]["measurements"]
    assert [(e["vcpus"], e["vcpu_type"]) for e in entries] == [(1, "EPYC-Milan"), (2, "EPYC-Milan")]
    expected = ssm_guest.calc_launch_digest(SevMode.SEV_SNP, 2, ssm_vcpu.CPU_SIGS["EPYC-Milan"], str(fw),
                                            str(kernel), None, "console=ttyS0", 0x1).hex()
    assert entries[1]["measurement"] == expected
    assert len(doc["tdx"]["mrtd"]["single_pass"]) == 96


def test_errors_are_one_line_exit_2(tmp_path: Path, debian_ovmf: Path) -> None:
    bad = tmp_path / "bad.igvm"
    bad.write_bytes(b"NOPE" + bytes(40))
    res = cocoon("measure", "igvm", str(bad))
    assert res.returncode == 2
    assert "bad magic" in res.stderr and "Traceback" not in res.stderr
    res = cocoon("measure", "snp", "--ovmf", str(debian_ovmf), "--vcpu-type", "Pentium")
    assert res.returncode == 2 and "unknown vCPU type" in res.stderr
    res = cocoon("measure", "snp", "--ovmf", str(tmp_path / "missing.fd"), "--vcpu-type", "EPYC")
    assert res.returncode == 2 and "cannot read" in res.stderr
    kernel = tmp_path / "k"
    kernel.write_bytes(b"k")
    res = cocoon("measure", "snp", "--ovmf", str(debian_ovmf), "--vcpu-type", "EPYC", "--kernel", str(kernel))
    assert res.returncode == 2 and "SNP_KERNEL_HASHES" in res.stderr
    res = cocoon("measure", "snp", "--ovmf", str(debian_ovmf), "--vcpus", "x")
    assert res.returncode == 2 and "not an integer" in res.stderr


def test_help_lists_commands() -> None:
    res = cocoon("--help")
    assert res.returncode == 0
    for word in ("measure", "igvm", "reference-values"):
        assert word in res.stdout


def test_subcommand_table_matches_what_the_subsystems_register() -> None:
    """`cocoon X` imports only X's subsystem, so the table naming them must list every command exactly."""
    import argparse

    from cocoon import cli as top

    actions = [a for a in top.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    registered = set(actions[0].choices)
    assert registered == {c for commands in top.SUBSYSTEMS.values() for c in commands}
    for module, commands in top.SUBSYSTEMS.items():
        only = [a for a in top.build_parser(commands[0])._actions if isinstance(a, argparse._SubParsersAction)]
        assert set(only[0].choices) == set(commands), module


def test_measure_does_not_import_the_agent() -> None:
    code = ("import sys; from cocoon.cli import main\n"
            "try:\n    main(['measure', 'snp', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('agent', 'verifier', 'launcher', 'grpc')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
