"""The coordinator's mesh API for a TDX pod: its CC event log is replayed against its quote's RTMRs before a
mesh certificate is issued, as the key broker does (tests/test_kbs_ccel.py).

The handler is called directly (tests/test_coordinator_userapi.py runs it over aTLS with sim evidence). The
quotes are made here (tests/support/tdxgen.py: a generated PCK chain trusted in Intel's place) with the RTMRs
trustee's test expects of the genuine TDVF log it publishes (tests/support/ccelgen.py), bound to the nonce
and key as an initializer binds them, MRCONFIGID carrying the pod's initdata digest."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support import ccelgen
from support.tdxgen import PckChain, make_pck_chain, make_quote
from test_coordinator_authority import WEB, host_data, manifest

from agent.kbs_client import trim_ccel
from coordinator.authority import Authority
from coordinator.meshapi import MAX_EVIDENCE, MeshApi
from coordinator.protocols import meshapi_pb2 as pb
from coordinator.userapi import Refused
from generator.manifest import reference_values

MRTD = b"\x5a" * 48
LOG, RTMRS = ccelgen.trustee_ovmf()


@pytest.fixture(scope="module")
def pck() -> PckChain:
    return make_pck_chain()


@pytest.fixture
def api(tmp_path: Path, pck: PckChain, monkeypatch: pytest.MonkeyPatch) -> Iterator[MeshApi]:
    monkeypatch.setattr("verifier.api.intel_root", lambda: pck.root_pem)  # the test PCK root in Intel's place
    raw, blobs = manifest(WEB)
    doc = json.loads(raw)
    doc["ReferenceValues"] = reference_values({"tdx": {"mrtd": {"test": MRTD.hex()}}}, "tdx")
    authority = Authority(str(tmp_path / "state"))
    authority.set_manifest(json.dumps(doc).encode(), blobs, None)
    yield MeshApi(authority)


def ask(api: MeshApi, pck: PckChain, cc_eventlog: Any, rtmrs: list[bytes] = RTMRS,
        drop_log: bool = False) -> pb.NewMeshCertResponse:
    """NewMeshCert for the "web" pod with this ``cc_eventlog`` field (absent with ``drop_log``)."""
    nonce = api.get_nonce(pb.GetNonceRequest(), None).Nonce
    spki = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    quote = make_quote(pck, mrtd=MRTD, mrconfigid=bytes.fromhex(host_data("web")) + bytes(16),
                       report_data=hashlib.sha512(spki + nonce).digest(),
                       **{f"rtmr{i}": r for i, r in enumerate(rtmrs)})
    evidence: dict[str, Any] = {"quote": base64.b64encode(quote).decode()}
    if not drop_log:
        evidence["cc_eventlog"] = cc_eventlog
    req = pb.NewMeshCertRequest(Nonce=nonce, PublicKey=spki, Evidence=json.dumps(evidence).encode(), Tee="tdx")
    return api._identity(req)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def refused(api: MeshApi, pck: PckChain, cc_eventlog: Any) -> Refused:
    with pytest.raises(Refused) as err:
        ask(api, pck, cc_eventlog)
    return err.value


@pytest.mark.parametrize("log", [LOG, trim_ccel(LOG)], ids=["the whole area", "as the guest sends it"])
def test_a_log_that_replays_gets_the_pod_its_certificate(api: MeshApi, pck: PckChain, log: bytes) -> None:
    got = ask(api, pck, b64(log))
    leaf = x509.load_pem_x509_certificates(got.CertChain)[0]
    assert "web" in leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)


def test_a_tampered_event_is_refused_naming_the_rtmr(api: MeshApi, pck: PckChain) -> None:
    at = LOG.index(bytes.fromhex("77a0dab2312b4e1e"))  # "Calling EFI Application": an RTMR1 event's digest
    tampered = LOG[:at] + bytes([LOG[at] ^ 0x80]) + LOG[at + 1 :]
    err = refused(api, pck, b64(tampered))
    assert err.code == grpc.StatusCode.PERMISSION_DENIED, err.message
    assert "tdx.ccel.rtmr1: RTMR1 does not replay from the CC event log" in err.message, err.message
    assert not any(f"rtmr{i}" in err.message for i in (0, 2, 3)), err.message


def test_rtmrs_the_log_does_not_give_are_refused(api: MeshApi, pck: PckChain) -> None:
    with pytest.raises(Refused) as err:
        ask(api, pck, b64(LOG), rtmrs=[RTMRS[0], RTMRS[1], b"\x01" * 48, RTMRS[3]])
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "tdx.ccel.rtmr2" in err.value.message and "rtmr1" not in err.value.message, err.value.message


@pytest.mark.parametrize(("field", "code", "words"), [
    (b64(LOG[:0x100]), grpc.StatusCode.PERMISSION_DENIED, "tdx.ccel: CC event log: an event's data at offset"),
    (b64(b"\x01\x00\x00\x00" + bytes(60)), grpc.StatusCode.PERMISSION_DENIED, "not EV_NO_ACTION"),
    ("not base64!", grpc.StatusCode.INVALID_ARGUMENT, "tdx Evidence: cc_eventlog is not base64"),
    (7, grpc.StatusCode.INVALID_ARGUMENT, "cc_eventlog is not a base64 string of at most 1048576 bytes"),
])
def test_a_malformed_log_is_refused_with_what_is_wrong(api: MeshApi, pck: PckChain, field: Any,
                                                       code: grpc.StatusCode, words: str) -> None:
    err = refused(api, pck, field)
    assert err.code == code and words in err.message, err.message


@pytest.mark.parametrize("absent", [None, "", "drop"])
def test_without_a_log_only_the_quote_is_checked(api: MeshApi, pck: PckChain, absent: Any) -> None:
    got = ask(api, pck, absent, rtmrs=[b"\x01" * 48] * 4, drop_log=absent == "drop")  # nothing to replay
    assert got.CertChain


def test_evidence_with_a_log_as_large_as_a_guest_sends_is_taken(api: MeshApi, pck: PckChain) -> None:
    """An untrimmed 1 MiB area (as guest-components sends one) still fits the request bound."""
    area = LOG + b"\xff" * ((1 << 20) - len(LOG))
    assert len(json.dumps({"quote": "A" * 8192, "cc_eventlog": b64(area)})) < MAX_EVIDENCE
    assert ask(api, pck, b64(area)).CertChain
