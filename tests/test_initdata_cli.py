"""cocoon initdata / sim-tee / ctl from the command line."""

from __future__ import annotations

import hashlib
import json
import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from agent import initdata
from agent.initdata import render_document
from agent.tee import open_provider, snp_report
from cocoon.cli import main


def test_pack_digest_round_trip(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    policy = tmp_path / "policy.rego"
    text = 'package agent_policy\n# quotes " and \\ and tabs\t and """ survive\ndefault X := false\n'
    policy.write_text(text)
    out = tmp_path / "initdata.img"
    assert main(["initdata", "pack", "--policy", str(policy), "-o", str(out), "--toml", str(tmp_path / "d.toml"),
                 "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    raw = (tmp_path / "d.toml").read_bytes()
    assert info["digest"] == hashlib.sha256(raw).hexdigest()
    assert info["snp_host_data"] == info["digest"] and info["tdx_mrconfigid"] == info["digest"] + "00" * 16
    parsed = initdata.read_path(str(out))
    assert parsed.policy == text and tomllib.loads(raw.decode())["data"]["policy.rego"] == text
    assert main(["initdata", "digest", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["digest"] == info["digest"]
    assert render_document({"policy.rego": text}) == raw  # deterministic: same input, same bytes


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), st.text(max_size=200), max_size=3))
def test_rendered_initdata_round_trips_any_text(data: dict[str, str]) -> None:
    doc = render_document(data)
    assert tomllib.loads(doc.decode())["data"] == data


def test_policies_are_written_as_literal_strings_unless_they_cannot_be() -> None:
    q3 = "'" * 3
    policy = "package agent_policy\ndefault X := true\n"
    assert q3 + "\n" + policy + q3 in render_document({"policy.rego": policy}).decode()
    for awkward in ("ends with a quote'", f"has {q3} inside", "bare\rcarriage"):
        doc = render_document({"policy.rego": awkward}).decode()
        assert q3 + "\n" not in doc and tomllib.loads(doc)["data"]["policy.rego"] == awkward


def test_sim_tee_config_binds_the_initdata(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    img = tmp_path / "initdata.img"
    img.write_bytes(initdata.encode_block(render_document({"policy.rego": "package agent_policy\n"})))
    sim = tmp_path / "sim.json"
    assert main(["sim-tee", "config", "--initdata", str(img), "--measurement", "ab" * 48,
                 "--chain-dir", str(tmp_path / "chain"), "-o", str(sim)]) == 0
    assert "QEMU: -fw_cfg name=opt/io.cocoon/sim" in capsys.readouterr().out
    rep = snp_report.parse(open_provider("sim", sim_config=str(sim)).report(bytes(64)).report)
    assert rep.host_data == initdata.read_path(str(img)).bound(32) and rep.measurement == b"\xab" * 48
    ark = (tmp_path / "chain" / "ark.pem").read_bytes()
    assert main(["sim-tee", "config", "--host-data", "00" * 32, "--measurement", "00" * 48,
                 "--chain-dir", str(tmp_path / "chain"), "-o", str(sim)]) == 0
    assert (tmp_path / "chain" / "ark.pem").read_bytes() == ark  # the chain is reused, not remade


def test_cli_errors_are_one_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["initdata", "digest", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cocoon initdata: error: cannot open initdata") and "Traceback" not in err
    assert main(["sim-tee", "config", "--host-data", "zz", "--measurement", "00", "--chain-dir", str(tmp_path),
                 "-o", str(tmp_path / "x")]) == 2
    assert "must be hex" in capsys.readouterr().err
    assert main(["ctl", "--address", f"unix://{tmp_path}/none.sock", "Check"]) == 1
    assert "cannot reach" in capsys.readouterr().err
    assert main(["ctl", "--address", "unix:///x", "NoSuchRpc"]) == 2
    assert main(["ctl", "--address", "unix:///x", "Check", "[1]"]) == 2
    assert "bad request" in capsys.readouterr().err


def test_sim_tee_config_refuses_reference_values_with_duplicate_keys(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Reference values come from outside: a repeated key (which readers resolve differently) is bad input."""
    refs = tmp_path / "refs.json"
    refs.write_text('{"schema": "cocoon.reference-values/v1", "schema": "x"}')
    sim = tmp_path / "sim.json"
    assert main(["sim-tee", "config", "--host-data", "00" * 32, "--reference-values", str(refs),
                 "--chain-dir", str(tmp_path / "chain"), "-o", str(sim)]) == 2
    err = capsys.readouterr().err
    assert "duplicate key" in err and len(err.strip().splitlines()) == 1
    assert not sim.exists()
