"""cocoon policy eval / hash."""

from __future__ import annotations

import json

from google.protobuf import json_format

from agent.service import request_json
from cocoon.cli import main
from launcher.podspec import web_request

POLICY = "tests/policies/pod.rego"


def write(tmp_path, name: str, doc) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


def test_denial_is_explained_with_the_failing_condition(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = write(tmp_path, "bad.json", request_json(web_request("c0ffee00c0ffee00", OCI__Process__Args=["/bin/sh"])))
    assert main(["policy", "eval", "--policy", POLICY, "--request", "CreateContainer", "--input", bad]) == 1
    out = capsys.readouterr().out
    assert out.startswith("CreateContainerRequest: DENIED")
    assert 'process args ["/bin/sh"] are not ["/bin/web","--port","8080"]' in out
    assert "evaluation stopped at" in out and "idx := create_match" in out


def test_allowed_request_and_state(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    ok = write(tmp_path, "ok.json", request_json(web_request("c0ffee00c0ffee00")))
    assert main(["policy", "eval", "--policy", POLICY, "--request", "CreateContainerRequest", "--input", ok,
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["allowed"] and result["state"] == {"pstate": {"c0ffee00c0ffee00": 1}}
    exec_in = write(tmp_path, "exec.json", {"container_id": "c0ffee00c0ffee00", "exec_id": "e",
                                            "process": {"Args": ["cat", "/etc/hostname"], "Cwd": "/",
                                                        "NoNewPrivileges": True, "User": {"UID": 1000, "GID": 1000}}})
    # without the state the container is unknown; with it the probe command is allowed
    assert main(["policy", "eval", "--policy", POLICY, "--request", "ExecProcess", "--input", exec_in,
                 "--proto"]) == 1
    assert "was not created under this policy" in capsys.readouterr().out
    state = write(tmp_path, "state.json", result["state"])
    assert main(["policy", "eval", "--policy", POLICY, "--request", "ExecProcess", "--input", exec_in,
                 "--proto", "--state", state]) == 0


def test_policy_from_initdata_and_hash_matches_pack(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    img = str(tmp_path / "initdata.img")
    assert main(["initdata", "pack", "--policy", POLICY, "-o", img, "--json"]) == 0
    packed = json.loads(capsys.readouterr().out)
    assert main(["policy", "hash", POLICY, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["snp_host_data"] == packed["snp_host_data"]
    req = json_format.MessageToDict(web_request("c0ffee00c0ffee00"), preserving_proto_field_name=True)
    proto = write(tmp_path, "proto.json", req)
    assert main(["policy", "eval", "--policy", img, "--request", "CreateContainer", "--input", proto,
                 "--proto"]) == 0


def test_errors(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["policy", "eval", "--policy", str(tmp_path / "none.rego"), "--request", "X",
                 "--input", "/dev/null"]) == 2
    assert "cannot read" in capsys.readouterr().err
    broken = tmp_path / "broken.rego"
    broken.write_text("package agent_policy\nx := {\n")
    inp = write(tmp_path, "in.json", {})
    assert main(["policy", "eval", "--policy", str(broken), "--request", "X", "--input", inp]) == 2
    assert "does not compile" in capsys.readouterr().err
    assert main(["policy", "eval", "--policy", POLICY, "--request", "NoSuchRequest", "--input", inp]) == 2
    assert "0 results" in capsys.readouterr().err
