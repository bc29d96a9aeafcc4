"""The guest's attestation agent and data hub (agent/datahub.py, agent/kbs_client.py) against the key broker
(coordinator/kbs), both on 127.0.0.1 here: a container's GET of /cdh/resource/... runs the whole KBS flow
with the sim TEE's evidence and returns the plaintext; a denial comes back as 403 with the broker's reason."""

from __future__ import annotations

import hashlib
import http.client
import json
from pathlib import Path
from typing import Any

import pytest
from support.simguest import sim_guest

from agent.errors import AgentError
from agent.initdata import render_document
from agent.kbs_client import KbsConfig, config_from_initdata
from agent.tee import open_provider
from coordinator.kbs.broker import Broker, Config
from coordinator.kbs.server import KbsHttpServer
from launcher.simca import make_config

MEASUREMENT = b"\x42" * 48
REFS = {"snp": {"guest_policy": "0x30000", "measurements": [{"measurement": MEASUREMENT.hex()}]}}
SECRET = b"db-password-value"


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path)
    reply = conn.getresponse()
    out = reply.status, reply.read()
    conn.close()
    return out


@pytest.fixture
def hub(tmp_path: Path, sim_chain: Any):  # type: ignore[no-untyped-def]
    from agent.datahub import DataHub

    document = render_document({"cdh.toml": '[kbc]\nname = "cc_kbc"\nurl = "http://127.0.0.1:1"\n'})
    guest = sim_guest(tmp_path, sim_chain, document, MEASUREMENT)
    sim, digest = guest.sim_config, guest.digest
    broker = Broker(Config(tmp_path / "state", REFS, trust_sim=str(guest.trust)))
    broker.put_resource(["default", "key", "db-password"], SECRET)
    broker.set_policy('package policy\ndefault allow := false\n'
                      'allow if { input.submods.cpu0["ear.status"] == "affirming"; '
                      'data["resource-path"][2] == "db-password" }\n')
    server = KbsHttpServer(("127.0.0.1", 0), broker).start()
    datahub = DataHub(KbsConfig(server.url), open_provider("sim", sim_config=str(sim)), ("127.0.0.1", 0)).start()
    yield datahub, broker, digest
    datahub.stop()
    server.stop()
    broker.close()


def test_a_container_gets_a_resource_through_the_data_hub(hub: Any) -> None:
    datahub, broker, _ = hub
    port = datahub.server_address[1]
    assert get(port, "/cdh/resource/default/key/db-password") == (200, SECRET)
    assert get(port, "/cdh/resource/default/key/db-password") == (200, SECRET)  # the token is reused
    broker.put_resource(["default", "key", "other"], b"not for this pod")
    status, body = get(port, "/cdh/resource/default/key/other")
    assert status == 403 and b"PolicyDeny" in body, body
    status, body = get(port, "/cdh/resource/default/../x")
    assert status == 400 and b"is not repo/type/tag" in body
    status, body = get(port, "/aa/token?token_type=kbs")
    doc = json.loads(body)
    assert status == 200 and doc["token"].count(".") == 2 and "PRIVATE KEY" in doc["tee_keypair"]
    status, body = get(port, "/aa/evidence?runtime_data=hello")
    report = json.loads(body)["attestation_report"]
    assert status == 200 and bytes(report["report_data"]) == b"hello".ljust(64, b"\0")
    assert get(port, "/aa/evidence?runtime_data=" + "x" * 65)[0] == 400
    import base64
    import urllib.parse

    encoded = urllib.parse.quote(base64.b64encode(bytes(range(64))).decode(), safe="")
    status, body = get(port, "/aa/evidence?encoding=base64&runtime_data=" + encoded)
    assert status == 200 and bytes(json.loads(body)["attestation_report"]["report_data"]) == bytes(range(64))
    assert get(port, "/aa/evidence?encoding=base64&runtime_data=%%%")[0] == 400
    assert json.loads(get(port, "/info")[1])["kbs"].startswith("http://127.0.0.1:")
    assert get(port, "/nothing")[0] == 404


def test_a_broker_that_is_down_is_a_clear_error(tmp_path: Path, sim_chain: Any) -> None:
    from agent.datahub import DataHub

    sim = tmp_path / "sim.json"
    sim.write_text(make_config(sim_chain, MEASUREMENT, bytes(32)).to_json())
    datahub = DataHub(KbsConfig("http://127.0.0.1:9"), open_provider("sim", sim_config=str(sim)),
                      ("127.0.0.1", 0)).start()
    try:
        status, body = get(datahub.server_address[1], "/cdh/resource/default/key/db-password")
        assert status == 503 and b"KBS http://127.0.0.1:9" in body, body
    finally:
        datahub.stop()


def test_the_broker_is_named_only_by_the_initdata() -> None:
    assert config_from_initdata({}) is None
    assert config_from_initdata({"policy.rego": "package agent_policy"}) is None
    cdh = config_from_initdata({"cdh.toml": '[kbc]\nname = "cc_kbc"\nurl = "https://kbs.example:8080/"\n'})
    assert cdh == KbsConfig("https://kbs.example:8080")
    aa = config_from_initdata({"aa.toml": '[token_configs.kbs]\nurl = "http://10.0.0.1:8080"\ninsecure_http = true\n'})
    assert aa == KbsConfig("http://10.0.0.1:8080")
    with pytest.raises(AgentError, match="plain http; the host could answer in the broker's place"):
        config_from_initdata({"cdh.toml": '[kbc]\nurl = "http://10.0.0.1:8080"\n'})
    with pytest.raises(AgentError, match="KBS certificate from the initdata is not usable"):
        config_from_initdata({"cdh.toml": '[kbc]\nurl = "https://kbs:1"\nkbs_cert = "-----BEGIN CERTIFICATE-----"\n'})
    for bad in ('[kbc]\nurl = "ftp://x"\n', "[kbc\n", '[kbc]\nurl = "http://x"\ninsecure_http = true\nkbs_cert = 3\n'):
        with pytest.raises(AgentError):
            config_from_initdata({"cdh.toml": bad})


def test_the_guests_canonical_json_is_rfc8785() -> None:
    """The guest binds with the same library the broker checks with; spot-check it on a JWK with a
    non-ASCII and a control character (where naive JSON would differ)."""
    import rfc8785

    from agent.kbs_client import canonical_json

    doc: dict[str, Any] = {"nonce": "n\u00e9\u0001", "tee-pubkey": {"y": "b", "x": "a", "kty": "EC"},
                           "additional-evidence": ""}
    assert canonical_json(doc) == rfc8785.dumps(doc)
    assert canonical_json(doc).startswith(b'{"additional-evidence":"","nonce":"n\xc3\xa9\\u0001"')


def test_the_attestation_agent_and_data_hub_ttrpc_services(hub: Any, tmp_path: Path) -> None:
    """guest-components' services, methods and fields over cocoon's ttRPC on unix sockets."""
    from agent import guest_components, sealed
    from agent.protocols import attestation_agent_pb2 as aa
    from agent.protocols import confidential_data_hub_pb2 as cdh
    from agent.rpc import Code, RpcError
    from agent.ttrpc import TtrpcClient

    datahub, broker, digest = hub
    servers = guest_components.serve(datahub.client, digest, str(tmp_path / "aa" / "aa.sock"),
                                     str(tmp_path / "cdh.sock"))
    try:
        agent_svc, resource_svc = "attestation_agent.AttestationAgentService", "api.GetResourceService"
        with TtrpcClient(f"unix://{tmp_path / 'aa' / 'aa.sock'}", timeout=60) as c:
            assert c.call(agent_svc, "GetTeeType", aa.GetTeeTypeRequest(), aa.GetTeeTypeResponse).tee == "snp"
            ev = c.call(agent_svc, "GetEvidence", aa.GetEvidenceRequest(RuntimeData=b"abc"), aa.GetEvidenceResponse)
            assert bytes(json.loads(ev.Evidence)["attestation_report"]["report_data"]) == b"abc".ljust(64, b"\0")
            token = json.loads(c.call(agent_svc, "GetToken", aa.GetTokenRequest(TokenType="kbs"),
                                      aa.GetTokenResponse).Token)
            assert token["token"].count(".") == 2
            c.call(agent_svc, "BindInitData", aa.BindInitDataRequest(Digest=digest), aa.BindInitDataResponse)
            with pytest.raises(RpcError) as unbound:
                c.call(agent_svc, "BindInitData", aa.BindInitDataRequest(Digest=bytes(32)), aa.BindInitDataResponse)
            assert unbound.value.code == Code.FAILED_PRECONDITION and digest.hex() in unbound.value.message
            got = c.call(agent_svc, "ExtendRuntimeMeasurement", aa.ExtendRuntimeMeasurementRequest(Domain="d"),
                         aa.ExtendRuntimeMeasurementResponse)
            assert got.Result == aa.NOT_SUPPORTED
            with pytest.raises(RpcError) as big:
                c.call(agent_svc, "GetEvidence", aa.GetEvidenceRequest(RuntimeData=bytes(65)), aa.GetEvidenceResponse)
            assert big.value.code == Code.INVALID_ARGUMENT
        with TtrpcClient(f"unix://{tmp_path / 'cdh.sock'}", timeout=60) as c:
            r = c.call(resource_svc, "GetResource", cdh.GetResourceRequest(ResourcePath="kbs:///default/key/db-password"),
                       cdh.GetResourceResponse)
            assert r.Resource == SECRET
            signer = sealed.Signer.generate("kbs:///default/signing-key/db-password")  # a tag the policy releases
            broker.put_resource(["default", "signing-key", "db-password"], signer.public_jwk())
            out = c.call("api.SealedSecretService", "UnsealSecret",
                         cdh.UnsealSecretInput(secret=sealed.seal("default/key/db-password", signer=signer).encode()),
                         cdh.UnsealSecretOutput)
            assert out.plaintext == SECRET
            broker.put_resource(["default", "key", "other"], b"x")
            with pytest.raises(RpcError) as denied:
                c.call(resource_svc, "GetResource", cdh.GetResourceRequest(ResourcePath="kbs:///default/key/other"),
                       cdh.GetResourceResponse)
            assert denied.value.code == Code.PERMISSION_DENIED and "PolicyDeny" in denied.value.message
            with pytest.raises(RpcError) as bad:
                c.call(resource_svc, "GetResource", cdh.GetResourceRequest(ResourcePath="https://elsewhere/x"),
                       cdh.GetResourceResponse)
            assert bad.value.code == Code.INVALID_ARGUMENT
    finally:
        for server in servers:
            server.stop()


def test_without_a_kbs_the_pod_still_gets_evidence_and_a_clear_refusal_for_secrets(tmp_path: Path,
                                                                                  sim_chain: Any) -> None:
    from agent.datahub import DataHub

    sim = tmp_path / "sim.json"
    sim.write_text(make_config(sim_chain, MEASUREMENT, bytes(32)).to_json())
    datahub = DataHub(None, open_provider("sim", sim_config=str(sim)), ("127.0.0.1", 0)).start()
    try:
        port = datahub.server_address[1]
        status, body = get(port, "/aa/evidence?runtime_data=x")
        assert status == 200 and "attestation_report" in json.loads(body)
        status, body = get(port, "/cdh/resource/default/key/db-password")
        assert status == 503 and b"names no KBS" in body
        assert json.loads(get(port, "/info")[1])["kbs"] is None
    finally:
        datahub.stop()


def test_tdx_evidence_carries_the_cc_event_log_when_the_firmware_has_one(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import base64
    from types import SimpleNamespace

    from agent import kbs_client

    ev = SimpleNamespace(kind="tdx-quote", report=b"\x04\x00quote")
    monkeypatch.setattr(kbs_client, "CCEL", str(tmp_path / "absent"))
    assert kbs_client.evidence_json(ev) == {"quote": base64.b64encode(ev.report).decode(), "cc_eventlog": None}
    (tmp_path / "CCEL").write_bytes(b"\x01\x02event log")
    monkeypatch.setattr(kbs_client, "CCEL", str(tmp_path / "CCEL"))
    assert kbs_client.evidence_json(ev)["cc_eventlog"] == base64.b64encode(b"\x01\x02event log").decode()


def test_a_pod_with_a_generated_size_policy_still_gets_its_resource(tmp_path: Path, sim_chain: Any) -> None:
    """A generated policy.rego is tens of KiB; the token carries the initdata's entries and rides in every
    resource request's Authorization header, which servers bound to 64 KiB per line. Long entries go into the
    token as their digest, so such a pod gets its resource, and the token still says which policy it runs."""
    from agent.kbs_client import KbsClient
    from coordinator.kbs.token import MAX_CLAIM_TEXT

    policy = "package agent_policy\n" + "".join(f"# rule {i:05d} " + "x" * 60 + "\n" for i in range(1500))
    assert len(policy) > 100 << 10
    document = render_document({"policy.rego": policy, "cdh.toml": '[kbc]\nname = "cc_kbc"\n'
                                                                   'url = "http://127.0.0.1:1"\n'})
    guest = sim_guest(tmp_path, sim_chain, document, MEASUREMENT)
    sim, digest = guest.sim_config, guest.digest
    broker = Broker(Config(tmp_path / "state", REFS, trust_sim=str(guest.trust)))
    broker.put_resource(["default", "key", "db-password"], SECRET)
    broker.set_policy('package policy\ndefault allow := false\nallow if {\n'
                      '\tinput.submods.cpu0["ear.status"] == "affirming"\n'
                      f'\tinput.submods.cpu0["ear.veraison.annotated-evidence"].init_data == "{digest.hex()}"\n}}\n')
    server = KbsHttpServer(("127.0.0.1", 0), broker).start()
    try:
        client = KbsClient(KbsConfig(server.url), open_provider("sim", sim_config=str(sim)), initdata=document)
        assert client.get_resource("default/key/db-password") == SECRET
        token = client.get_token()
    finally:
        server.stop()
        broker.close()
    import base64 as b64

    body = json.loads(b64.urlsafe_b64decode(token.split(".")[1] + "=="))
    claims = body["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["init_data_claims"]
    assert claims["policy.rego"] == {"sha256": hashlib.sha256(policy.encode()).hexdigest()}
    assert claims["cdh.toml"].startswith("[kbc]") and len(claims["cdh.toml"]) <= MAX_CLAIM_TEXT
    assert len(token) < 16 << 10
