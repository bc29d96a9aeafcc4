"""The az-snp-vtpm guest provider against a real TPM (swtpm) provisioned as Azure's paravisor would, judged
by the verifier (verifier/az_snp_vtpm.py) with the sim SNP root trusted.

The TPM, the AK and the quote are swtpm's (libtpms), not this repo's; the SNP report is the sim PSP's
(tests/support/vtpm.py says how the paravisor is modelled). Each link is then broken alone: another nonce,
a changed PCR or quote byte, a runtime data naming another key than the AK, a stale PCR reference. The PCR
reference values are read from the TPM by a separate client, not taken from the evidence.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from support import vtpm

import agent.tee.az_vtpm as az_vtpm
import agent.tee.tpm as tpm
from agent.errors import TeeError
from agent.kbs_client import KbsClient, evidence_json
from agent.tee import NAMES, open_provider
from verifier.az_snp_vtpm import verify_az_snp_vtpm
from verifier.claims import Result
from verifier.refs import validate
from verifier.trust import amd_anchors, sim_anchor
from verifier.x509check import load_certificate

MEASUREMENT = b"\x42" * 48
pytestmark = pytest.mark.skipif(shutil.which("swtpm") is None, reason="needs swtpm (make setup)")


class Vm:
    """One Azure-like VM: a fresh swtpm, the paravisor that provisioned it, the sim trust file."""

    def __init__(self, tmp: Path, chain: Any, socket_path: str, **paravisor: Any) -> None:
        self.chain = chain
        self.trust = tmp / "trust.pem"
        self.trust.write_bytes(chain.trust_pem)
        self.paravisor = vtpm.SimParavisor(socket_path, vtpm.sim_tee(chain, MEASUREMENT), **paravisor)
        self.paravisor.provision()
        self.vcek_der = load_certificate(chain.vcek_pem, "sim VCEK").public_bytes(serialization.Encoding.DER)

    def provider(self, **kw: Any) -> az_vtpm.AzVtpmProvider:
        kw.setdefault("poll_s", 0.001)
        return az_vtpm.AzVtpmProvider(self.paravisor.connect, vcek=lambda: self.vcek_der, **kw)

    def pcrs(self) -> list[bytes]:
        """The SHA-256 PCRs as the test's own client reads them."""
        with contextlib.closing(self.paravisor.raw()) as device:
            return device.pcr_read()[1]

    def extend(self, index: int, data: bytes) -> None:
        with contextlib.closing(self.paravisor.raw()) as device:
            device.pcr_extend(index, hashlib.sha256(data).digest())

    def refs(self, **pcrs: bytes) -> dict[str, Any]:
        policy = vtpm.sim_tee(self.chain).config.policy
        doc: dict[str, Any] = {"snp": {"guest_policy": hex(policy),
                                       "measurements": [{"measurement": MEASUREMENT.hex()}]}}
        if pcrs:
            doc["tpm"] = {"pcrs": {name: [value.hex()] for name, value in pcrs.items()}}
        return validate(doc)

    def judge(self, doc: dict[str, Any], nonce: bytes, refs: dict[str, Any] | None = None, *,
              initdata: bytes | None = None, trust_sim: bool = True) -> Result:
        result = Result("az-snp-vtpm")
        anchors = [sim_anchor(str(self.trust))] if trust_sim else amd_anchors()
        verify_az_snp_vtpm(result, doc, refs if refs is not None else self.refs(), nonce=nonce,
                           initdata_digest=initdata, anchors=anchors)
        return result


@pytest.fixture
def vm(tmp_path: Path, sim_chain: Any) -> Iterator[Any]:
    """Factory: a provisioned VM per call, every swtpm ended when the test ends."""
    with contextlib.ExitStack() as stack:
        def make(**paravisor: Any) -> Vm:
            state = tmp_path / f"tpm-{os.urandom(3).hex()}"
            return Vm(tmp_path, sim_chain, stack.enter_context(vtpm.swtpm(state)), **paravisor)
        yield make


def failed(result: Result) -> set[str]:
    return {c.name for c in result.failed}


def status(result: Result) -> dict[str, str]:
    return {c.name: c.status for c in result.claims}


NONCE = hashlib.sha384(b"a KBS challenge").digest()
REPORT_DATA = NONCE + bytes(16)  # what an RCAR client asks for: a SHA-384 digest padded to 64 bytes


def test_provider_evidence_passes_every_claim_with_pcr_references_read_from_the_tpm(vm: Any) -> None:
    v = vm(delay=3)  # the new HCL report appears only after the guest has read the old one once
    pcrs = v.pcrs()
    evidence = v.provider().report(REPORT_DATA)
    doc = evidence_json(evidence)
    assert set(doc) == {"version", "tpm_quote", "hcl_report", "vcek"} and doc["version"] == 2
    assert set(doc["tpm_quote"]) == {"signature", "message", "pcrs"} and len(doc["tpm_quote"]["pcrs"]) == 24
    assert base64.urlsafe_b64decode(doc["vcek"]) == v.vcek_der
    assert [bytes.fromhex(p) for p in doc["tpm_quote"]["pcrs"]] == pcrs
    r = v.judge(doc, NONCE, v.refs(pcr00=pcrs[0], pcr07=pcrs[7], pcr23=pcrs[23]))
    assert r.ok and r.simulated, r.table()
    passed = {c.name for c in r.claims if c.status == "pass"}
    assert passed >= {"az.tpm.quote.signature", "az.tpm.quote.nonce", "az.hcl.user_data", "az.tpm.pcr_digest",
                      "az.tpm.pcrs", "az.hcl.report_data", "snp.chain", "snp.signature", "snp.measurement"}, r.table()
    assert v.paravisor.reports == 2  # the provisioning one, and the one carrying this report data


def test_the_quote_is_swtpm_signing_with_the_ak_it_holds(vm: Any) -> None:
    """Checked without the verifier: the AK the paravisor created signed the message, RSASSA/SHA-256."""
    v = vm()
    doc = evidence_json(v.provider().report(REPORT_DATA))
    n, e = v.paravisor.ak
    rsa.RSAPublicNumbers(e, n).public_key().verify(bytes.fromhex(doc["tpm_quote"]["signature"]),
                                                   bytes.fromhex(doc["tpm_quote"]["message"]), padding.PKCS1v15(),
                                                   hashes.SHA256())


def test_report_data_round_trips_through_the_quote(vm: Any) -> None:
    v = vm()
    provider = v.provider()
    evidence = provider.report(REPORT_DATA)
    quote = tpm.parse_attest(bytes.fromhex(evidence_json(evidence)["tpm_quote"]["message"]))
    assert quote.extra_data == NONCE  # the digest alone, as the broker expects and Azure's vTPM can hold
    assert provider.report_data_of(evidence) == REPORT_DATA
    other = os.urandom(64)  # a full 64 bytes fits swtpm's TPM2B_DATA (it has a SHA-512 bank)
    evidence = provider.report(other)
    assert provider.report_data_of(evidence) == other
    assert v.judge(evidence_json(evidence), other).ok


def test_another_nonce_fails_the_nonce_claims_alone(vm: Any) -> None:
    v = vm()
    doc = evidence_json(v.provider().report(REPORT_DATA))
    assert failed(v.judge(doc, hashlib.sha384(b"another challenge").digest())) == {"az.tpm.quote.nonce",
                                                                                   "az.hcl.user_data"}


def test_a_changed_pcr_or_quote_byte_fails(vm: Any) -> None:
    v = vm()
    doc = evidence_json(v.provider().report(REPORT_DATA))
    changed = json.loads(json.dumps(doc))
    changed["tpm_quote"]["pcrs"][4] = "11" * 32
    assert failed(v.judge(changed, NONCE)) == {"az.tpm.pcr_digest"}
    changed = json.loads(json.dumps(doc))
    message = bytearray.fromhex(doc["tpm_quote"]["message"])
    message[-40] ^= 1  # inside the pcrDigest: still a quote, no longer the one signed
    changed["tpm_quote"]["message"] = message.hex()
    assert failed(v.judge(changed, NONCE)) == {"az.tpm.quote.signature", "az.tpm.pcr_digest"}


def test_an_extended_pcr_fails_the_reference_taken_before(vm: Any) -> None:
    v = vm()
    before = v.pcrs()
    v.extend(10, b"a measurement after the references were taken")
    r = v.judge(evidence_json(v.provider().report(REPORT_DATA)), NONCE, v.refs(pcr10=before[10]))
    assert failed(r) == {"az.tpm.pcrs"}
    assert v.judge(evidence_json(v.provider().report(REPORT_DATA)), NONCE, v.refs(pcr10=v.pcrs()[10])).ok


def test_an_hcl_report_naming_another_key_fails_the_quote_signature(vm: Any) -> None:
    v = vm()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
    v.paravisor.named_ak = (other.n, other.e)
    r = v.judge(evidence_json(v.provider().report(REPORT_DATA)), NONCE)
    assert failed(r) == {"az.tpm.quote.signature"}, r.table()  # the SNP report binds that runtime data


def test_sim_evidence_does_not_pass_for_amds(vm: Any) -> None:
    v = vm()
    r = v.judge(evidence_json(v.provider().report(REPORT_DATA)), NONCE, trust_sim=False)
    assert not r.ok and "snp.chain" in failed(r) and not r.simulated


def test_initdata_extended_into_pcr8_passes_its_claim(vm: Any) -> None:
    v = vm()
    digest = hashlib.sha256(b"initdata document").digest()
    provider = v.provider()
    provider.bind_initdata(digest)
    doc = evidence_json(provider.report(REPORT_DATA))
    assert status(v.judge(doc, NONCE, initdata=digest))["az.tpm.pcr8.initdata"] == "pass"
    assert failed(v.judge(doc, NONCE, initdata=hashlib.sha256(b"other").digest())) == {"az.tpm.pcr8.initdata"}


def test_a_report_rewritten_between_chunks_is_not_sent_torn(vm: Any) -> None:
    """The new report lands between the first and second chunk of a read: the guest reads again."""
    v = vm(delay=2)  # NV_ReadPublic, the first 1024-byte chunk, then the paravisor writes
    r = v.judge(evidence_json(v.provider().report(REPORT_DATA)), NONCE)
    assert r.ok, r.table()


def test_a_paravisor_that_never_writes_the_user_data_is_an_error(vm: Any) -> None:
    v = vm(regenerate=False)
    with pytest.raises(TeeError, match="did not put the user data"):
        v.provider(settle_s=0.05, poll_s=0.01).report(REPORT_DATA)


def test_version_1_evidence_skips_the_user_data(vm: Any) -> None:
    v = vm(regenerate=False)
    doc = evidence_json(v.provider(user_data=False).report(REPORT_DATA))
    assert doc["version"] == 1
    r = v.judge(doc, NONCE)
    assert r.ok and status(r)["az.hcl.user_data"] == "skip", r.table()


def test_a_user_data_index_of_another_size_is_redefined(vm: Any) -> None:
    v = vm()
    with contextlib.closing(v.paravisor.raw()) as device:
        device.nv_define_space(tpm.NvPublic(az_vtpm.USER_DATA_INDEX, tpm.TPM_ALG_SHA256,
                                            tpm.NV_OWNERWRITE | tpm.NV_OWNERREAD, b"", 48))
    assert v.judge(evidence_json(v.provider().report(REPORT_DATA)), NONCE).ok
    with contextlib.closing(v.paravisor.raw()) as device:
        assert device.nv_read_public(az_vtpm.USER_DATA_INDEX).size == 64


def test_tpm_refusals_are_named(vm: Any) -> None:
    v = vm()
    with contextlib.closing(v.paravisor.raw()) as device:
        with pytest.raises(tpm.TpmError, match="TPM_RC_HANDLE") as exc:
            device.nv_read_public(0x01400099)
        assert exc.value.code == tpm.RC_HANDLE
        with pytest.raises(tpm.TpmError, match=r"Quote\(0x81000099\).*TPM_RC_"):
            device.quote(0x81000099, b"n")
        with pytest.raises(tpm.TpmError, match="TPM_RC_"):  # the guest's owner cannot write the HCL report
            device.nv_write(az_vtpm.HCL_REPORT_INDEX, b"forged")


def test_the_kbs_client_names_the_tee_and_sends_the_document(vm: Any) -> None:
    v = vm()
    client = KbsClient(None, v.provider())
    assert client._tee() == "az-snp-vtpm"
    evidence = client.tee.report(REPORT_DATA)
    assert evidence_json(evidence) == json.loads(evidence.report)


def test_the_provider_is_chosen_by_name_only() -> None:
    assert "az-snp-vtpm" in NAMES
    if not os.path.exists("/dev/tpmrm0"):
        with pytest.raises(TeeError, match="/dev/tpmrm0"):
            open_provider("az-snp-vtpm")


class _ExtendsAfter:
    """The guest's connection, with something extending PCR 5 right after each of the first ``times``
    commands ``cc`` (a quote; or a PCR_Read, so the next PCR_Read of the same reading sees it moved)."""

    def __init__(self, inner: Any, cc: int, times: int) -> None:
        self.inner, self.cc, self.times = inner, cc, times

    def transact(self, command: bytes) -> bytes:
        out: bytes = self.inner.transact(command)
        if int.from_bytes(command[6:10], "big") == self.cc and self.times > 0:
            self.times -= 1
            tpm.Tpm(self.inner.inner).pcr_extend(5, hashlib.sha256(b"a late measurement").digest())
        return out

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("cc", [tpm.CC_QUOTE, tpm.CC_PCR_READ])
def test_a_pcr_extended_while_quoting_makes_the_provider_quote_again(vm: Any, cc: int) -> None:
    v = vm()
    provider = az_vtpm.AzVtpmProvider(lambda: _ExtendsAfter(v.paravisor.connect(), cc, 1), vcek=lambda: v.vcek_der)
    doc = evidence_json(provider.report(REPORT_DATA))
    assert v.judge(doc, NONCE, v.refs(pcr05=v.pcrs()[5])).ok
    provider = az_vtpm.AzVtpmProvider(lambda: _ExtendsAfter(v.paravisor.connect(), cc, 99), vcek=lambda: v.vcek_der)
    with pytest.raises(TeeError, match="kept changing"):
        provider.report(REPORT_DATA)


def test_the_guests_kbs_client_gets_a_resource_with_this_evidence(vm: Any, tmp_path: Path) -> None:
    """The broker flow end to end: the agent's KBS client, this provider, the broker on 127.0.0.1 trusting the
    sim root. The quote carries the session's binding and the HCL report its user data, as the broker computes
    them, so the token is issued; the broker's default policy still refuses simulated evidence, and a
    deployment's policy that admits it releases the resource."""
    from jwcrypto import jwk

    from agent.kbs_client import KbsClientError, KbsConfig
    from coordinator.kbs.broker import Broker, Config
    from coordinator.kbs.server import KbsHttpServer

    v = vm()
    refs = {"snp": {"guest_policy": hex(vtpm.sim_tee(v.chain).config.policy),
                    "measurements": [{"measurement": MEASUREMENT.hex()}]}}
    broker = Broker(Config(tmp_path / "kbs", refs, trust_sim=str(v.trust)))
    broker.put_resource(["default", "key", "db-password"], b"azure secret")
    admin = jwk.JWK.generate(kty="OKP", crv="Ed25519")
    server = KbsHttpServer(("127.0.0.1", 0), broker, jwk.JWK.from_json(admin.export_public())).start()
    try:
        client = KbsClient(KbsConfig(f"http://127.0.0.1:{server.server_address[1]}"), v.provider())
        token = client.attest()
        with pytest.raises(KbsClientError) as exc:
            client.get_resource("default/key/db-password")
        broker.set_policy('package policy\ndefault allow := false\nallow if {\n\tdata.plugin == "resource"\n'
                          '\tinput.submods.cpu0["ear.status"] == "affirming"\n}\n')
        got = client.get_resource("default/key/db-password")
    finally:
        server.stop()
        broker.close()
    assert token.count(".") == 2, token
    assert exc.value.variant == "PolicyDeny", exc.value
    assert got == b"azure secret"


def test_concurrent_reports_each_carry_their_own_nonce(vm: Any) -> None:
    """The data hub, the ttRPC services and the KBS client may ask at once: each report's user-data write,
    HCL refresh and quote is one TPM conversation, so each evidence is bound to its own caller's nonce."""
    import concurrent.futures

    v = vm()
    provider = v.provider()
    nonces = [hashlib.sha384(f"caller {i}".encode()).digest() for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        docs = list(pool.map(lambda n: evidence_json(provider.report(n + bytes(16))), nonces))
    for nonce, doc in zip(nonces, docs, strict=True):
        result = v.judge(doc, nonce)
        assert result.ok, result.table()
    assert not v.judge(docs[0], nonces[1]).ok
