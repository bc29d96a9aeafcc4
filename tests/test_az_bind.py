"""Start-up binding by measurement on the az-snp-vtpm TEE: the agent extends PCR 8 with the initdata digest
once, against a real TPM (swtpm) provisioned as Azure's paravisor would (tests/support/vtpm.py).

What PCR 8 should hold is computed here with hashlib and with the verifier's own function, and read back by
a separate TPM client, not taken from the agent. The evidence the provider makes after binding is judged by
the verifier's ``az.tpm.pcr8.initdata`` claim with the sim SNP root trusted, as tests/test_az_vtpm.py does.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st
from support import vtpm

import agent.tee.az_vtpm as az_vtpm
import agent.tee.tpm as tpm
from agent import initdata
from agent.binding import DENY_ALL, READY, Binding, bind, binds_by_extend
from agent.errors import TeeError
from agent.guest_components import GuestComponents
from agent.kbs_client import KbsClient, evidence_json
from agent.protocols import attestation_agent_pb2 as aa
from agent.rpc import Code, RpcError
from agent.tee import open_provider
from verifier import tpm_quote
from verifier.az_snp_vtpm import initdata_pcr, verify_az_snp_vtpm
from verifier.claims import Result
from verifier.refs import validate
from verifier.trust import sim_anchor
from verifier.x509check import load_certificate

MEASUREMENT = b"\x42" * 48
REPORT_DATA = hashlib.sha384(b"a KBS challenge").digest() + bytes(16)
POLICY = """package agent_policy
import future.keywords.if
default CreateContainerRequest := false
CreateContainerRequest if { input.container_id == "good" }
"""
needs_swtpm = pytest.mark.skipif(shutil.which("swtpm") is None, reason="needs swtpm (make setup)")


def make_doc(algorithm: str = "sha256", policy: str = POLICY) -> bytes:
    return f'algorithm = "{algorithm}"\nversion = "0.1.0"\n\n[data]\n"policy.rego" = """\n{policy}"""\n'.encode()


class Vm:
    """One Azure-like VM: a fresh swtpm and the paravisor that provisioned it."""

    def __init__(self, tmp: Path, chain: Any, socket_path: str) -> None:
        self.tmp, self.chain = tmp, chain
        self.paravisor = vtpm.SimParavisor(socket_path, vtpm.sim_tee(chain, MEASUREMENT))
        self.paravisor.provision()
        self.vcek_der = load_certificate(chain.vcek_pem, "sim VCEK").public_bytes(serialization.Encoding.DER)

    def provider(self, connect: Callable[[], Any] | None = None) -> az_vtpm.AzVtpmProvider:
        return az_vtpm.AzVtpmProvider(connect or self.paravisor.connect, vcek=lambda: self.vcek_der, poll_s=0.001)

    def pcr8(self) -> bytes:
        """PCR 8 as the test's own client reads it."""
        with contextlib.closing(self.paravisor.raw()) as device:
            return device.pcr_read((8,))[1][0]

    def bind(self, doc: bytes, provider: az_vtpm.AzVtpmProvider | None = None) -> Binding:
        """The agent's start-up binding (what agent/daemon.py ``startup`` runs) with this VM's vTPM."""
        path = self.tmp / f"initdata-{os.urandom(3).hex()}.img"
        path.write_bytes(initdata.encode_block(doc))
        tee = provider or self.provider()
        return bind(lambda: tee, lambda: initdata.read_path(str(path)))

    def judge(self, doc: dict[str, Any], initdata_digest: bytes) -> Result:
        trust = self.tmp / "trust.pem"
        trust.write_bytes(self.chain.trust_pem)
        refs = validate({"snp": {"guest_policy": hex(vtpm.sim_tee(self.chain).config.policy),
                                 "measurements": [{"measurement": MEASUREMENT.hex()}]}})
        result = Result("az-snp-vtpm")
        verify_az_snp_vtpm(result, doc, refs, nonce=REPORT_DATA[:48], initdata_digest=initdata_digest,
                           anchors=[sim_anchor(str(trust))])
        return result


@pytest.fixture
def vm(tmp_path: Path, sim_chain: Any) -> Iterator[Callable[[], Vm]]:
    """Factory: a provisioned VM per call, every swtpm ended when the test ends."""
    with contextlib.ExitStack() as stack:
        def make() -> Vm:
            state = tmp_path / f"tpm-{os.urandom(3).hex()}"
            return Vm(tmp_path, sim_chain, stack.enter_context(vtpm.swtpm(state)))
        yield make


def once(digest: bytes) -> bytes:
    """PCR 8 after one extend from zero, written out independently of agent/ and verifier/."""
    return hashlib.sha256(bytes(32) + digest).digest()


@needs_swtpm
def test_the_binding_extends_pcr8_once_and_goes_ready(vm: Callable[[], Vm]) -> None:
    v = vm()
    doc = make_doc()
    digest = hashlib.sha256(doc).digest()
    assert v.pcr8() == bytes(32)  # a TPM resets PCR 8 to zeros at start-up
    b = v.bind(doc)
    assert b.state == READY and b.ready, b.reason
    assert v.pcr8() == once(digest) == initdata_pcr(digest)
    assert "PCR8" in b.reason and once(digest).hex() in b.reason and digest.hex() in b.reason
    assert b.check("CreateContainerRequest", '{"container_id": "good"}').allowed
    assert not b.check("CreateContainerRequest", '{"container_id": "evil"}').allowed
    assert "extend" in b.timings and "report" not in b.timings  # no launch-fixed field to read from a report


@needs_swtpm
def test_a_second_bind_is_refused_and_leaves_pcr8_as_it_was(vm: Callable[[], Vm]) -> None:
    v = vm()
    doc = make_doc()
    digest = hashlib.sha256(doc).digest()
    assert v.bind(doc).ready
    again = v.bind(doc)  # the agent started a second time in the same boot, with the same initdata
    assert again.state == DENY_ALL and not again.ready
    assert "already extended" in again.reason and once(digest).hex() in again.reason, again.reason
    assert not again.check("CreateContainerRequest", '{"container_id": "good"}').allowed
    with pytest.raises(TeeError, match="already extended"):
        v.provider().bind_initdata(digest)
    assert v.pcr8() == once(digest)


@needs_swtpm
def test_a_pre_extended_pcr8_is_deny_all_with_the_reason(vm: Callable[[], Vm]) -> None:
    v = vm()
    doc = make_doc()
    earlier = hashlib.sha256(b"someone else's initdata").digest()
    with contextlib.closing(v.paravisor.raw()) as device:
        device.pcr_extend(8, earlier)
    b = v.bind(doc)
    assert b.state == DENY_ALL and b.policy is None
    assert b.reason.startswith("initdata not bound by extending PCR8: PCR 8 was already extended"), b.reason
    assert once(earlier).hex() in b.reason and "not 32 zero bytes" in b.reason
    assert v.pcr8() == once(earlier)  # nothing extended on top


class _ExtendsPcr8After:
    """The guest's connection, with something else extending PCR 8 right after the first PCR_Read."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.done = inner, False

    def transact(self, command: bytes) -> bytes:
        out: bytes = self.inner.transact(command)
        if int.from_bytes(command[6:10], "big") == tpm.CC_PCR_READ and not self.done:
            self.done = True
            tpm.Tpm(self.inner.inner).pcr_extend(8, hashlib.sha256(b"a racing extend").digest())
        return out

    def close(self) -> None:
        self.inner.close()


@needs_swtpm
def test_an_extend_in_between_is_noticed_on_the_read_back(vm: Callable[[], Vm]) -> None:
    v = vm()
    doc = make_doc()
    b = v.bind(doc, v.provider(lambda: _ExtendsPcr8After(v.paravisor.connect())))
    assert b.state == DENY_ALL and "something else extended it meanwhile" in b.reason, b.reason
    assert hashlib.sha256(doc).digest().hex() in b.reason
    assert v.pcr8() != once(hashlib.sha256(doc).digest())


@needs_swtpm
@pytest.mark.parametrize("algorithm", ["sha384", "sha512"])
def test_a_longer_digest_is_refused_without_extending(vm: Callable[[], Vm], algorithm: str) -> None:
    """Neither cut to 32 bytes nor hashed: the verifier admits only the extend of a SHA-256 digest."""
    v = vm()
    b = v.bind(make_doc(algorithm))
    assert b.state == DENY_ALL and "binds a sha256 initdata digest" in b.reason and repr(algorithm) in b.reason
    assert v.pcr8() == bytes(32)


@needs_swtpm
def test_evidence_after_binding_passes_the_pcr8_claim_and_fails_it_for_other_initdata(vm: Callable[[], Vm]) -> None:
    v = vm()
    doc = make_doc()
    digest = hashlib.sha256(doc).digest()
    b = v.bind(doc)
    assert b.ready and b.tee is not None, b.reason
    evidence = evidence_json(b.tee.report(REPORT_DATA))
    r = v.judge(evidence, digest)
    assert r.ok and {c.name: c.status for c in r.claims}["az.tpm.pcr8.initdata"] == "pass", r.table()
    other = hashlib.sha256(make_doc(policy=POLICY.replace("good", "evil"))).digest()
    assert {c.name for c in v.judge(evidence, other).failed} == {"az.tpm.pcr8.initdata"}
    # what a truncating guest would have bound for a SHA-384 document is no digest the verifier takes
    longer = hashlib.sha384(doc).digest()
    assert {c.name for c in v.judge(evidence, longer).failed} == {"az.tpm.pcr8.initdata"}


@needs_swtpm
def test_bind_init_data_answers_bound_for_the_agents_digest_only(vm: Callable[[], Vm]) -> None:
    v = vm()
    doc = make_doc()
    digest = hashlib.sha256(doc).digest()
    b = v.bind(doc)
    assert b.ready and b.tee is not None
    gc = GuestComponents(KbsClient(None, b.tee), digest)
    gc.bind_init_data(aa.BindInitDataRequest(Digest=digest), None)  # already bound: answered, not extended
    assert v.pcr8() == once(digest)
    with pytest.raises(RpcError) as other:
        gc.bind_init_data(aa.BindInitDataRequest(Digest=hashlib.sha256(b"other").digest()), None)
    assert other.value.code == Code.FAILED_PRECONDITION and once(digest).hex() in other.value.message
    with pytest.raises(RpcError) as longer:
        gc.bind_init_data(aa.BindInitDataRequest(Digest=hashlib.sha384(doc).digest()), None)
    assert longer.value.code == Code.INVALID_ARGUMENT and "48 bytes" in longer.value.message
    assert v.pcr8() == once(digest)


@needs_swtpm
def test_bind_init_data_extends_an_unbound_pcr8_for_the_pods_own_digest_only(vm: Callable[[], Vm]) -> None:
    v = vm()
    digest = hashlib.sha256(make_doc()).digest()
    gc = GuestComponents(KbsClient(None, v.provider()), digest)
    with pytest.raises(RpcError) as foreign:
        gc.bind_init_data(aa.BindInitDataRequest(Digest=hashlib.sha256(b"foreign").digest()), None)
    assert foreign.value.code == Code.FAILED_PRECONDITION and v.pcr8() == bytes(32)
    gc.bind_init_data(aa.BindInitDataRequest(Digest=digest), None)
    assert v.pcr8() == once(digest)
    gc.bind_init_data(aa.BindInitDataRequest(Digest=digest), None)  # the second call extends nothing
    assert v.pcr8() == once(digest)


@needs_swtpm
def test_get_tee_type_names_the_tee_as_the_kbs_request_does(vm: Callable[[], Vm], sim_tee: Any) -> None:
    client = KbsClient(None, vm().provider())
    assert GuestComponents(client, None).get_tee_type(aa.GetTeeTypeRequest(), None).tee == "az-snp-vtpm"
    assert client._tee() == "az-snp-vtpm"
    sim = KbsClient(None, open_provider("sim", sim_config=sim_tee(bytes(32))))
    assert GuestComponents(sim, None).get_tee_type(aa.GetTeeTypeRequest(), None).tee == sim._tee() == "snp"


def test_only_the_vtpm_provider_binds_by_extending(sim_tee: Any) -> None:
    assert binds_by_extend(az_vtpm.AzVtpmProvider(lambda: None))  # type: ignore[arg-type, return-value]
    assert not binds_by_extend(open_provider("sim", sim_config=sim_tee(bytes(32))))


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_the_guests_extend_is_the_verifiers(value: bytes, digest: bytes) -> None:
    assert tpm.extended(value, digest) == tpm_quote.extend(value, digest) == hashlib.sha256(value + digest).digest()
    assert az_vtpm.AzVtpmProvider.extended_value(digest) == initdata_pcr(digest)
