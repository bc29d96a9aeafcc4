"""Startup binding with the sim TEE: ready only when the hardware-bound digest matches."""

from __future__ import annotations

import hashlib

import pytest

from agent import initdata
from agent.binding import DENY_ALL, READY, bind, bind_safely
from agent.errors import TeeError
from agent.tee import open_provider

POLICY = """package agent_policy
import future.keywords.if
default CreateContainerRequest := false
CreateContainerRequest if { input.container_id == "good" }
default ExecProcessRequest := false
"""


def make_doc(policy: str = POLICY, algorithm: str = "sha256") -> bytes:
    escaped = policy.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return f'algorithm = "{algorithm}"\nversion = "0.1.0"\n\n[data]\n"policy.rego" = """\n{escaped}"""\n'.encode()


@pytest.fixture
def setup(tmp_path, sim_tee):  # type: ignore[no-untyped-def]
    def make(doc: bytes, host_doc: bytes | None = None, block: bool = True):  # type: ignore[no-untyped-def]
        path = tmp_path / "initdata.img"
        path.write_bytes(initdata.encode_block(doc) if block else doc)
        bound = hashlib.sha256(host_doc if host_doc is not None else doc).digest()
        cfg = sim_tee(bound)
        return (lambda: open_provider("sim", sim_config=cfg)), (lambda: initdata.read_path(str(path)))
    return make


def test_ready_and_policy_enforced(setup) -> None:  # type: ignore[no-untyped-def]
    b = bind(*setup(make_doc()))
    assert b.state == READY and b.ready, b.reason
    assert b.check("CreateContainerRequest", '{"container_id": "good"}').allowed
    assert not b.check("CreateContainerRequest", '{"container_id": "evil"}').allowed
    assert not b.check("ExecProcessRequest", "{}").allowed
    assert "HOSTDATA" in b.reason


def test_one_changed_byte_is_deny_all_with_both_digests(setup) -> None:  # type: ignore[no-untyped-def]
    doc = make_doc()
    tampered = doc.replace(b"good", b"goot")
    b = bind(*setup(tampered, host_doc=doc))
    assert b.state == DENY_ALL and not b.ready
    expected_hw = hashlib.sha256(doc).hexdigest()
    actual = hashlib.sha256(tampered).hexdigest()
    assert "initdata digest mismatch" in b.reason
    assert expected_hw in b.reason and actual in b.reason
    d = b.check("CreateContainerRequest", '{"container_id": "good"}')
    assert not d.allowed and "deny-all" in d.prints[0] and expected_hw in d.prints[0]


@pytest.mark.parametrize(("blob", "message"), [
    (b"", "is empty"),
    (b"initd", "too short"),
    (b"initdata" + (64).to_bytes(8, "little") + b"x" * 10, "only 10 do"),
    (b"INITDATA" + bytes(8), "no initdata magic"),
    (b"initdata" + (5).to_bytes(8, "little") + b"hello", "not valid gzip"),
])
def test_malformed_initdata_device_is_deny_all(tmp_path, sim_tee, blob: bytes, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "dev"
    path.write_bytes(blob)
    cfg = sim_tee(bytes(32))
    b = bind(lambda: open_provider("sim", sim_config=cfg), lambda: initdata.read_path(str(path), "block"))
    assert b.state == DENY_ALL and message in b.reason and b.reason.startswith("initdata:")


@pytest.mark.parametrize(("doc", "message"), [
    (make_doc().replace(b'version = "0.1.0"', b"version = "), "not valid TOML"),
    (make_doc(algorithm="md5"), "not supported"),
])
def test_bad_documents_are_deny_all(setup, doc: bytes, message: str) -> None:  # type: ignore[no-untyped-def]
    b = bind(*setup(doc))
    assert b.state == DENY_ALL and message in b.reason


def test_missing_initdata_and_oversized(tmp_path, sim_tee, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cfg = sim_tee(bytes(32))
    b = bind(lambda: open_provider("sim", sim_config=cfg), lambda: initdata.read_path(str(tmp_path / "none")))
    assert b.state == DENY_ALL and "cannot open initdata" in b.reason
    monkeypatch.setattr(initdata, "MAX_COMPRESSED", 64)
    big = tmp_path / "big"
    big.write_bytes(initdata.encode_block(make_doc() + b"# " + b"x" * 5000 + b"\n"))
    b = bind(lambda: open_provider("sim", sim_config=cfg), lambda: initdata.read_path(str(big)))
    assert b.state == DENY_ALL and "more than 64" in b.reason


def test_policy_that_does_not_compile_is_deny_all(setup) -> None:  # type: ignore[no-untyped-def]
    b = bind(*setup(make_doc("package agent_policy\nallow := {\n")))
    assert b.state == DENY_ALL and "does not compile" in b.reason and "Stack backtrace" not in b.reason
    b = bind(*setup(make_doc("package other\n")))
    assert b.state == DENY_ALL and "package" in b.reason


def test_initdata_without_policy_is_deny_all(setup) -> None:  # type: ignore[no-untyped-def]
    b = bind(*setup(b'algorithm = "sha256"\nversion = "0.1.0"\n[data]\n"aa.toml" = ""\n'))
    assert b.state == DENY_ALL and "no 'policy.rego'" in b.reason


def test_tee_failure_and_stale_report_are_deny_all(setup) -> None:  # type: ignore[no-untyped-def]
    def no_tee():  # type: ignore[no-untyped-def]
        raise TeeError("no SEV-SNP or TDX guest interface found")

    _, read = setup(make_doc())
    b = bind(no_tee, read)
    assert b.state == DENY_ALL and b.reason.startswith("TEE unavailable: no SEV-SNP")

    open_tee, read = setup(make_doc())
    real = open_tee()

    class Replaying:
        name, bound_field, bound_size = real.name, real.bound_field, real.bound_size
        cached = real.report(bytes(64))

        def report(self, rd):  # type: ignore[no-untyped-def]
            return self.cached

        bound_value = staticmethod(real.bound_value)
        report_data_of = staticmethod(real.report_data_of)

    b = bind(Replaying, read)
    assert b.state == DENY_ALL and "stale report" in b.reason


def test_unexpected_bug_still_fails_closed(setup) -> None:  # type: ignore[no-untyped-def]
    open_tee, _ = setup(make_doc())

    def buggy():  # type: ignore[no-untyped-def]
        raise KeyError("oops")

    b = bind_safely(open_tee, buggy)
    assert b.state == DENY_ALL and "internal error" in b.reason and not b.check("X", "{}").allowed
