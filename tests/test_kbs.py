"""The key broker (coordinator/kbs) over real HTTP on 127.0.0.1, driven by a client written here from the KBS
protocol description (trustee kbs/docs/kbs_attestation_protocol.md), not from the broker's code: raw JSON
bodies, the cookie, the RFC 8785 binding, and jwcrypto's own JWE decryption of the resource.

Evidence is the sim TEE's SNP report (cocoon's sim chain, accepted because the broker is told to trust it),
carried in Trustee's ``snp`` shape. Every refusal is checked for Trustee's error body and for leaving the
broker's store as it was.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from jwcrypto import jwe, jwk

from agent.errors import ReportError
from agent.initdata import render_document
from agent.tee import certtable, open_provider, snp_json
from coordinator.kbs.broker import Broker, Config
from coordinator.kbs.errors import ERROR_TYPE, KbsError
from coordinator.kbs.server import KbsHttpServer, admin_token
from launcher.simca import make_config

MEASUREMENT = b"\x42" * 48
REFS = {"snp": {"guest_policy": "0x30000", "measurements": [{"measurement": MEASUREMENT.hex()}]}}
INITDATA = render_document({"aa.toml": 'url = "http://127.0.0.1"\n'})
DIGEST = hashlib.sha256(INITDATA).digest()
SECRET = b"correct horse battery staple"
# a deployment on the sim TEE says so in its policy: affirmed evidence, simulated or not
SIM_POLICY = """package policy

default allow := false

allow if {
	data.plugin == "resource"
	input.submods.cpu0["ear.status"] == "affirming"
	input.submods.cpu0["ear.veraison.annotated-evidence"].init_data == data_digest
}

data_digest := "DIGEST"
""".replace("DIGEST", DIGEST.hex())


class Kbs:
    """A running broker and what a test needs around it."""

    def __init__(self, tmp: Path, chain: Any, host_data: bytes = DIGEST, **config: Any) -> None:
        self.tmp = tmp
        self.chain = chain
        self.trust = tmp / "trust.pem"
        self.trust.write_bytes(chain.trust_pem)
        self.sim = tmp / f"sim-{os.urandom(4).hex()}.json"
        self.sim.write_text(make_config(chain, MEASUREMENT, host_data).to_json())
        self.admin = jwk.JWK.generate(kty="OKP", crv="Ed25519")
        self.config = Config(tmp / "state", REFS, trust_sim=str(self.trust), **config)
        self.port = 0
        self.start()

    def start(self) -> None:
        self.broker = Broker(self.config)
        self.server = KbsHttpServer(("127.0.0.1", self.port), self.broker,
                                    jwk.JWK.from_json(self.admin.export_public())).start()
        self.port = int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.stop()
        self.broker.close()

    def evidence(self, report_data: bytes) -> dict[str, Any]:
        """Trustee's ``snp`` primary evidence for a fresh sim report with this REPORT_DATA."""
        ev = open_provider("sim", sim_config=str(self.sim)).report(report_data)
        return {"attestation_report": snp_json.to_json(ev.report),
                "cert_chain": snp_json.chain_json(certtable.parse(ev.aux))}


# --- the client, from the protocol description ------------------------------------------------------------


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)

    def error(self) -> str:
        doc = self.json()
        assert set(doc) == {"type", "detail"} and doc["type"].startswith(ERROR_TYPE), doc
        return str(doc["type"][len(ERROR_TYPE):])


def call(port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
         raw: bytes | None = None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    out = Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    conn.close()
    return out


def binding(nonce: str, key: dict[str, Any], additional: str = "") -> bytes:
    """REPORT_DATA: SHA-384 of the JCS of the runtime data, padded to 64 bytes."""
    runtime: dict[str, Any] = {"nonce": nonce, "tee-pubkey": key, "additional-evidence": additional}
    return hashlib.sha384(rfc8785.dumps(runtime)).digest() + bytes(16)


class Client:
    """One guest's session: its own TEE key (EC P-256 unless given), the cookie the broker set."""

    def __init__(self, kbs: Kbs, key: jwk.JWK | None = None, alg: str = "ECDH-ES+A256KW") -> None:
        self.kbs = kbs
        self.key = key or jwk.JWK.generate(kty="EC", crv="P-256")
        self.public = {**json.loads(self.key.export_public()), "alg": alg}
        self.cookie = ""
        self.nonce = ""
        self.token = ""

    def auth(self, tee: str = "snp", version: str = "0.4.0") -> Reply:
        reply = call(self.kbs.port, "POST", "/kbs/v0/auth",
                     {"version": version, "tee": tee, "extra-params": {"supported-hash-algorithms": ["sha384"]}})
        if reply.status == 200:
            self.cookie = reply.headers["set-cookie"].split(";")[0]
            self.nonce = reply.json()["nonce"]
        return reply

    def attestation(self, nonce: str | None = None, key: dict[str, Any] | None = None,
                    initdata: bytes | None = INITDATA, bind_key: dict[str, Any] | None = None) -> dict[str, Any]:
        nonce = self.nonce if nonce is None else nonce
        key = self.public if key is None else key
        doc: dict[str, Any] = {
            "runtime-data": {"nonce": nonce, "tee-pubkey": key},
            "tee-evidence": {"primary_evidence": self.kbs.evidence(binding(nonce, bind_key or key)),
                             "additional_evidence": ""}}
        if initdata is not None:
            doc["init-data"] = {"format": "toml", "body": initdata.decode()}
        return doc

    def attest(self, body: Any = None, cookie: str | None = None) -> Reply:
        reply = call(self.kbs.port, "POST", "/kbs/v0/attest", self.attestation() if body is None else body,
                     {"Cookie": self.cookie if cookie is None else cookie})
        if reply.status == 200:
            self.token = reply.json()["token"]
        return reply

    def resource(self, path: str = "default/key/db-password", bearer: bool = False) -> Reply:
        headers = {"Authorization": f"Bearer {self.token}"} if bearer else {"Cookie": self.cookie}
        return call(self.kbs.port, "GET", f"/kbs/v0/resource/{path}", headers=headers)

    def decrypt(self, reply: Reply) -> bytes:
        message = jwe.JWE()
        message.deserialize(reply.body.decode(), key=self.key)
        return bytes(message.payload)


def admin(kbs: Kbs, method: str, path: str, raw: bytes, key: jwk.JWK | None = None) -> Reply:
    token = admin_token(key or kbs.admin)
    return call(kbs.port, method, path, raw=raw, headers={"Authorization": f"Bearer {token}"})


def set_sim_policy(kbs: Kbs) -> None:
    text = base64.urlsafe_b64encode(SIM_POLICY.encode()).rstrip(b"=").decode()
    assert admin(kbs, "POST", "/kbs/v0/resource-policy", json.dumps({"policy": text}).encode()).status == 200


@pytest.fixture
def kbs(tmp_path, sim_chain):  # type: ignore[no-untyped-def]
    k = Kbs(tmp_path, sim_chain)
    assert admin(k, "POST", "/kbs/v0/resource/default/key/db-password", SECRET).status == 200
    set_sim_policy(k)
    yield k
    k.stop()


def stored(kbs: Kbs) -> dict[str, bytes]:
    base = kbs.config.state
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


# --- the flow ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kty", ["EC", "RSA"])
def test_auth_attest_resource_releases_the_secret_wrapped_to_the_tee_key(kbs: Kbs, kty: str) -> None:
    key = jwk.JWK.generate(kty="RSA", size=2048) if kty == "RSA" else None
    c = Client(kbs, key, alg="RSA-OAEP-256" if kty == "RSA" else "ECDH-ES+A256KW")
    reply = c.auth()
    assert reply.status == 200, reply.body
    assert set(reply.json()) == {"nonce", "extra-params"} and reply.json()["extra-params"] == ""
    assert len(base64.b64decode(c.nonce, validate=True)) == 32
    assert c.cookie.startswith("kbs-session-id=") and len(c.cookie.split("=")[1]) == 32
    reply = c.attest()
    assert reply.status == 200, reply.body
    header, payload, _ = c.token.split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "=="))["alg"] == "ES256"
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    cpu0 = claims["submods"]["cpu0"]
    assert cpu0["ear.status"] == "affirming" and claims["eat_profile"].endswith("confidential-containers/Trustee")
    evidence = cpu0["ear.veraison.annotated-evidence"]
    assert evidence["init_data"] == DIGEST.hex() and evidence["snp"]["simulated"] is True
    assert evidence["runtime_data_claims"]["tee-pubkey"] == c.public
    got = c.resource()
    assert got.status == 200, got.body
    doc = json.loads(got.body)
    assert set(doc) == {"protected", "encrypted_key", "iv", "ciphertext", "tag"}
    protected = json.loads(base64.urlsafe_b64decode(doc["protected"] + "=="))
    assert protected["enc"] == "A256GCM" and protected["alg"] == c.public["alg"]
    assert ("epk" in protected) == (kty == "EC")  # Trustee's clients read the epk from the protected header
    assert c.decrypt(got) == SECRET
    assert c.decrypt(c.resource(bearer=True)) == SECRET  # a token alone, no session
    assert c.attest().json()["token"] == c.token  # attested once: the same token again


def test_the_default_policy_refuses_simulated_evidence(tmp_path: Path, sim_chain: Any) -> None:
    k = Kbs(tmp_path, sim_chain)
    try:
        admin(k, "POST", "/kbs/v0/resource/default/key/db-password", SECRET)
        c = Client(k)
        c.auth()
        assert c.attest().status == 200
        reply = c.resource()
        assert (reply.status, reply.error()) == (401, "PolicyDeny"), reply.body
    finally:
        k.stop()


def test_tampered_initdata_gets_no_token_and_no_secret(kbs: Kbs) -> None:
    c = Client(kbs)
    c.auth()
    other = render_document({"aa.toml": 'url = "http://127.0.0.1:9"\n'})
    reply = c.attest(c.attestation(initdata=other))
    assert (reply.status, reply.error()) == (401, "RcarAttestFailed")
    assert "snp.host_data" in reply.json()["detail"]
    assert c.resource().error() == "TokenNotFound"


def test_a_launch_with_other_initdata_is_refused_by_the_policy(tmp_path: Path, sim_chain: Any) -> None:
    """The same image launched with other initdata, sent honestly: the evidence verifies, the token
    says which initdata, and the resource policy (pinning the deployment's) refuses."""
    other = render_document({"aa.toml": 'url = "http://127.0.0.1:9"\n'})
    k = Kbs(tmp_path, sim_chain, host_data=hashlib.sha256(other).digest())
    try:
        admin(k, "POST", "/kbs/v0/resource/default/key/db-password", SECRET)
        set_sim_policy(k)
        c = Client(k)
        c.auth()
        assert c.attest(c.attestation(initdata=other)).status == 200
        assert (c.resource().status, c.resource().error()) == (401, "PolicyDeny")
    finally:
        k.stop()


# --- refusals ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "variant", "words"), [
    ({"version": "0.3.0", "tee": "snp"}, "RcarAuthFailed", "version '0.3.0' is not supported"),
    ({"version": "0.4.0", "tee": "quantum"}, "RcarAuthFailed", "'quantum' is not one the KBS protocol knows"),
    ({"version": "0.4.0", "tee": "sample"}, "RcarAuthFailed", "not verified by this broker"),
    ({"version": "0.4.0"}, "SerdeError", "lacks tee"),
    ({"version": "0.4.0", "tee": "snp", "extra": 1}, "SerdeError", "unknown keys extra"),
    (b'{"version": "0.4.0", "tee": "snp", "tee": "tdx"}', "SerdeError", "duplicate key tee"),
    (b"\xff\xfe not json", "SerdeError", "not JSON"),
    ([1, 2], "SerdeError", "not a JSON object"),
])
def test_bad_auth_requests_are_refused_with_trustees_error(kbs: Kbs, body: Any, variant: str, words: str) -> None:
    before = stored(kbs)
    reply = call(kbs.port, "POST", "/kbs/v0/auth", raw=body if isinstance(body, bytes) else json.dumps(body).encode())
    assert (reply.status, reply.error()) == (401, variant), reply.body
    assert words in reply.json()["detail"]
    assert "set-cookie" not in reply.headers and stored(kbs) == before


def test_oversize_and_lengthless_bodies_are_refused(kbs: Kbs) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", kbs.port), timeout=10) as s:  # refused before any body is read
        s.sendall(b"POST /kbs/v0/auth HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{" % ((1 << 20) + 2))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 413 ") and b"HTTPFailed" in data, data
    conn = http.client.HTTPConnection("127.0.0.1", kbs.port, timeout=10)
    conn.putrequest("POST", "/kbs/v0/auth")
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 411 and json.loads(resp.read())["type"].endswith("HTTPFailed")
    conn.close()


def test_replayed_nonce_other_key_and_other_session_are_refused(kbs: Kbs) -> None:
    a, b = Client(kbs), Client(kbs)
    a.auth()
    b.auth()
    before = stored(kbs)
    # a's evidence (a's nonce) replayed in b's session
    replay = b.attest(a.attestation())
    assert replay.error() == "RcarAttestFailed" and "not this session's challenge" in replay.json()["detail"]
    # evidence bound to one key, another key presented
    c = Client(kbs)
    c.auth()
    other = {**json.loads(jwk.JWK.generate(kty="EC", crv="P-256").export_public()), "alg": "ECDH-ES+A256KW"}
    swapped = c.attest(c.attestation(key=other, bind_key=c.public))
    assert swapped.error() == "RcarAttestFailed" and "snp.report_data" in swapped.json()["detail"]
    # a spent nonce is not a second chance
    retry = c.attest()
    assert retry.error() == "RcarAttestFailed" and "spent" in retry.json()["detail"]
    # a's session attests; b's cookie gets nothing from it; a made-up cookie names no session
    assert a.attest().status == 200
    assert b.resource().error() == "TokenNotFound"
    assert call(kbs.port, "GET", "/kbs/v0/resource/default/key/db-password",
                headers={"Cookie": "kbs-session-id=" + "0" * 32}).error() == "UnAuthenticatedCookie"
    assert call(kbs.port, "POST", "/kbs/v0/attest", a.attestation()).error() == "UnAuthenticatedCookie"
    assert stored(kbs) == before


def test_expired_session_and_token_are_refused(kbs: Kbs) -> None:
    c = Client(kbs)
    c.auth()
    assert c.attest().status == 200
    sid = c.cookie.split("=")[1]
    later = time.time() + kbs.config.token_lifetime_s + 1
    with pytest.raises(KbsError) as token_expired:
        kbs.broker.resource(["default", "key", "db-password"], bearer=c.token, now=later)
    assert token_expired.value.variant == "TokenVerifierError" and "expired" in token_expired.value.detail
    d = Client(kbs)
    d.auth()
    with pytest.raises(KbsError) as session_expired:
        kbs.broker.attest(d.cookie.split("=")[1], json.dumps(d.attestation()).encode(),
                          now=time.time() + kbs.config.session_timeout_s + 1)
    assert session_expired.value.variant == "ExpiredCookie"
    with pytest.raises(KbsError) as gone:
        kbs.broker.resource(["default", "key", "db-password"], sid=sid, now=later + kbs.config.session_timeout_s)
    assert gone.value.variant == "ExpiredCookie"


def test_forged_and_foreign_tokens_are_refused(kbs: Kbs) -> None:
    c = Client(kbs)
    c.auth()
    c.attest()
    header, payload, sig = c.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["submods"]["cpu0"]["ear.status"] = "affirming"
    claims["exp"] += 3600
    forged = ".".join([header, base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode(), sig])
    for token in (forged, "not.a.token", "x"):
        c.token = token
        reply = c.resource(bearer=True)
        assert (reply.status, reply.error()) == (401, "TokenVerifierError"), token


@pytest.mark.parametrize("path", ["/kbs/v0/resource/default/key", "/kbs/v0/resource/a/../b",
                                  "/kbs/v0/resource/default/key/db-password/more", "/kbs/v1/auth", "/other"])
def test_bad_paths_are_404(kbs: Kbs, path: str) -> None:
    c = Client(kbs)
    c.auth()
    c.attest()
    reply = call(kbs.port, "GET", path, headers={"Cookie": c.cookie})
    assert (reply.status, reply.error()) == (404, "InvalidRequestPath"), reply.body


def test_admin_calls_need_the_admin_key(kbs: Kbs) -> None:
    before = stored(kbs)
    path = "/kbs/v0/resource/default/key/other"
    assert call(kbs.port, "POST", path, raw=b"x").error() == "AdminAuthAccess"
    stranger = jwk.JWK.generate(kty="OKP", crv="Ed25519")
    assert admin(kbs, "POST", path, b"x", key=stranger).error() == "AdminAuthAccess"
    assert stored(kbs) == before
    bad_policy = base64.urlsafe_b64encode(b"package policy\nallow if {").decode()
    reply = admin(kbs, "POST", "/kbs/v0/resource-policy", json.dumps({"policy": bad_policy}).encode())
    assert reply.error() == "ParsePolicyError"
    assert stored(kbs) == before and kbs.broker.policy.text == SIM_POLICY
    assert admin(kbs, "GET", "/kbs/v0/resource-policy", b"").body.decode() == SIM_POLICY


def test_a_restarted_broker_keeps_resources_policy_and_token_key(kbs: Kbs) -> None:
    c = Client(kbs)
    c.auth()
    c.attest()
    kbs.stop()
    kbs.start()
    assert c.decrypt(c.resource(bearer=True)) == SECRET  # the old token, the same policy, the stored secret
    assert c.resource().error() == "UnAuthenticatedCookie"  # sessions are memory only


def test_sixty_four_sessions_twenty_requests_each_across_a_restart(kbs: Kbs) -> None:
    """64 guests attest, then each asks 20 times; half-way the broker is restarted on the same state and
    port. Clients retry a refused connection (bounded), as a guest does: no request fails, no secret is lost."""
    clients = [Client(kbs) for _ in range(64)]
    for c in clients:
        assert c.auth().status == 200 and c.attest().status == 200
    errors: list[str] = []
    done = [0]
    lock = threading.Lock()

    def run(c: Client) -> None:
        for _ in range(20):
            for _attempt in range(100):
                try:
                    reply = c.resource(bearer=True)
                    break
                except (ConnectionError, http.client.HTTPException, OSError):
                    time.sleep(0.05)
            else:
                errors.append("no connection after 100 tries")
                continue
            if reply.status != 200 or c.decrypt(reply) != SECRET:
                errors.append(f"{reply.status} {reply.body[:100]!r}")
            with lock:
                done[0] += 1

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while done[0] < 640 and time.monotonic() < deadline:
        time.sleep(0.01)
    kbs.stop()
    kbs.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and done[0] == 64 * 20


# --- the parsers -------------------------------------------------------------------------------------------


def test_snp_json_round_trips_a_report(kbs: Kbs) -> None:
    ev = open_provider("sim", sim_config=str(kbs.sim)).report(b"\x01" * 64)
    doc = snp_json.to_json(ev.report)
    assert snp_json.from_json(json.loads(json.dumps(doc))) == ev.report
    assert len(doc["signature"]["r"]) == 72 and doc["current_tcb"]["fmc"] is None


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                               max_size=5), max_leaves=30))
def test_evidence_and_attestation_parsers_refuse_junk_with_their_own_error(junk: Any) -> None:
    from coordinator.kbs import protocol

    for parse in (lambda: snp_json.from_json(junk), lambda: snp_json.cert_table(junk),
                  lambda: protocol.parse_attestation(json.dumps(junk).encode()),
                  lambda: protocol.parse_request(json.dumps(junk).encode()),
                  lambda: protocol.check_tee_pubkey(junk)):
        with contextlib.suppress(KbsError, ReportError):  # the broker's and the evidence format's own errors
            parse()


def test_the_binding_is_trustees() -> None:
    """Trustee's own vector for the canonical JSON digest (attestation-service/src/lib.rs)."""
    from coordinator.kbs import protocol

    assert hashlib.sha384(rfc8785.dumps({"b": 1, "a": "test", "c": {"d": "e"}})).hexdigest() == (
        "e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c4597480a186427c813ca941da78870c3")
    key = {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": "a", "y": "b"}
    assert protocol.report_data("bm9uY2U=", key) == binding("bm9uY2U=", key)


# --- the command line --------------------------------------------------------------------------------------


def test_cocoon_kbs_serve_put_policy(tmp_path: Path, sim_chain: Any) -> None:
    """The operator's commands against a broker started as `cocoon kbs serve` (port chosen by the kernel):
    admin-keygen, put, policy; then a guest's flow gets the value; bad input is one line and exit 2."""
    import subprocess
    import sys

    def cocoon(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cocoon", "kbs", *args], capture_output=True, text=True,
                              timeout=60, input=stdin.decode() if stdin is not None else None)

    assert cocoon("admin-keygen", "-o", str(tmp_path / "admin.pem")).returncode == 0
    assert (tmp_path / "admin.pem").stat().st_mode & 0o777 == 0o600
    refs = tmp_path / "refs.json"
    refs.write_text(json.dumps(REFS))
    (tmp_path / "k").mkdir()
    k = Kbs(tmp_path / "k", sim_chain)
    k.stop()  # only its sim TEE and trust file are used; the broker under test is the command's
    serve = subprocess.Popen([sys.executable, "-m", "cocoon", "kbs", "serve", "--state", str(tmp_path / "state"),
                              "--reference-values", str(refs), "--trust-sim", str(k.trust), "--admin-key",
                              str(tmp_path / "admin.pub.pem"), "--listen", "127.0.0.1:0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()
        assert "serving http://127.0.0.1:" in line and "sim evidence trusted" in line, line
        url = line.split()[3].removesuffix("/kbs/v0")
        k.port = int(url.rsplit(":", 1)[1])
        admin_args = ("--url", url, "--admin-key", str(tmp_path / "admin.pem"))
        put = cocoon("put", *admin_args, "default/key/db-password", "-", "--json", stdin=SECRET)
        assert put.returncode == 0 and json.loads(put.stdout) == {"resource": "default/key/db-password",
                                                                  "bytes": len(SECRET)}, put.stderr
        (tmp_path / "p.rego").write_text(SIM_POLICY)
        assert cocoon("policy", *admin_args, str(tmp_path / "p.rego")).returncode == 0
        assert cocoon("policy", *admin_args).stdout == SIM_POLICY
        c = Client(k)
        c.auth()
        assert c.attest().status == 200
        assert c.decrypt(c.resource()) == SECRET
        (tmp_path / "bad.rego").write_text("package other\n")
        bad = cocoon("policy", *admin_args, str(tmp_path / "bad.rego"))
        assert bad.returncode == 2 and "package is 'data.other'" in bad.stderr and "ParsePolicyError" in bad.stderr
        wrong = cocoon("put", *admin_args, "default/../x", "-", stdin=b"x")
        assert wrong.returncode == 2 and "is not <repo>/<type>/<tag>" in wrong.stderr
        stranger = cocoon("put", "--url", url, "--admin-key", str(tmp_path / "admin.pub.pem"), "a/b/c", "-", stdin=b"")
        assert stranger.returncode == 2 and "not an Ed25519 private key" in stranger.stderr
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    assert serve.returncode == 0
    sealed_value = cocoon("seal", "--unsigned", "kbs:///default/key/db-password")  # signing: test_sealed_jws.py
    from agent.sealed import resource_of

    assert sealed_value.returncode == 0
    assert resource_of(sealed_value.stdout.strip(), None, allow_unsigned=True) == "default/key/db-password"
    assert cocoon("seal", "kbs:///../x").returncode == 2
    missing = cocoon("serve", "--state", str(tmp_path / "s2"), "--reference-values", str(tmp_path / "none.json"))
    assert missing.returncode == 2 and "none.json" in missing.stderr and "Traceback" not in missing.stderr


def test_cocoon_verify_checks_a_brokers_ear_token(kbs: Kbs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cocoon.cli import main

    c = Client(kbs)
    c.auth()
    c.attest()
    token = tmp_path / "token.jwt"
    token.write_text(c.token + "\n")
    key = kbs.config.state / "token-key.pub.pem"
    assert main(["verify", "--ear", str(token), "--broker-key", str(key)]) == 0
    out = capsys.readouterr().out
    assert "affirming" in out and DIGEST.hex() in out and MEASUREMENT.hex() in out
    assert main(["verify", "--ear", str(token), "--broker-key", str(key), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["submods"]["cpu0"]["ear.status"] == "affirming"
    other = tmp_path / "other.pem"
    other.write_bytes(jwk.JWK.generate(kty="EC", crv="P-256").export_to_pem())
    assert main(["verify", "--ear", str(token), "--broker-key", str(other)]) == 1
    assert "not this broker's" in capsys.readouterr().err
    assert main(["verify", "--ear", str(token)]) == 2
    assert "needs --broker-key" in capsys.readouterr().err


def test_a_broker_killed_while_writing_keeps_every_resource_whole(tmp_path: Path) -> None:
    """A process setting resources in a loop is SIGKILLed; the store, reopened, holds every resource either
    as it was or as it was set, never part of a value, and no temporary file."""
    import signal
    import subprocess
    import sys

    script = f"""
import sys
from pathlib import Path
from coordinator.kbs.store import Store
s = Store(Path({str(tmp_path / 'state')!r}))
i = 0
print("started", flush=True)
while True:
    s.put(["r", "k", f"t{{i % 5}}"], (f"value-{{i}}-".encode() * 4096)[:65536])
    i += 1
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "started\n"
    time.sleep(0.8)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    from coordinator.kbs.store import Store

    store = Store(tmp_path / "state")
    names = store.names()
    assert names and set(names) <= {f"r/k/t{i}" for i in range(5)}
    for name in names:
        value = store.get(name.split("/"))
        prefix = b"-".join(value.split(b"-")[:2]) + b"-"  # value-<i>-: which write this file holds
        assert value == (prefix * 4096)[:65536], name  # all of it
    assert not list((tmp_path / "state").rglob(".tmp-*"))


# --- what an independent review found (each once a 500, a stray key accepted, or a request smuggled) ------


@pytest.mark.parametrize("key", [
    {"kty": "RSA", "alg": "RSA-OAEP-256", "generate": "RSA", "size": 16384},  # jwcrypto would make a key
    {"kty": "EC", "alg": "ECDH-ES+A256KW", "crv": "P-256", "x": "AA", "y": "AA"},  # not on the curve
    {"kty": "EC", "alg": "ECDH-ES+A256KW", "crv": "P-256", "x": "AA", "y": "AA", "use": "sig"},
    {"kty": "EC", "alg": "ECDH-ES+A256KW", "crv": "P-256", "x": "AA", "y": "AA", "key_ops": ["verify"]},
    {"kty": "EC", "alg": "ECDH-ES+A256KW", "crv": "P-256", "x": 1, "y": "AA"},
    {"kty": "oct", "alg": "A256KW", "k": "AA"},
])
def test_tee_keys_with_odd_members_are_refused_before_any_work(kbs: Kbs, key: dict[str, Any]) -> None:
    c = Client(kbs)
    c.auth()
    doc = c.attestation()
    doc["runtime-data"]["tee-pubkey"] = key
    t0 = time.monotonic()
    reply = c.attest(doc)
    assert (reply.status, reply.error()) == (401, "RcarAttestFailed"), reply.body
    assert time.monotonic() - t0 < 5  # no 16384-bit key was generated


@pytest.mark.parametrize("case", ["deep", "surrogate-initdata", "surrogate-kid"])
def test_bodies_without_a_canonical_form_are_refused(kbs: Kbs, case: str) -> None:
    c = Client(kbs)
    c.auth()
    doc = c.attestation()
    if case == "deep":
        raw = b'{"runtime-data": ' * 2000 + b"1" + b"}" * 2000  # deeper than the parser goes
    else:
        if case == "surrogate-initdata":
            doc["init-data"]["body"] = "\ud800"
        else:
            doc["runtime-data"]["tee-pubkey"] = {**c.public, "kid": "\ud800"}  # no canonical JSON for it
        raw = json.dumps(doc).encode()
    reply = call(kbs.port, "POST", "/kbs/v0/attest", raw=raw, headers={"Cookie": c.cookie})
    assert reply.status == 401 and reply.error() in ("SerdeError", "RcarAttestFailed"), reply.body


def test_an_error_closes_the_connection_so_its_body_is_never_a_request(kbs: Kbs) -> None:
    import socket

    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", kbs.port), timeout=10) as s:
        s.sendall(b"POST /kbs/v0/resource/a/b/c HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                  % len(smuggled) + smuggled)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 ") == 1 and b"AdminAuthAccess" in data and b'"status":"ok"' not in data
    conn = http.client.HTTPConnection("127.0.0.1", kbs.port, timeout=10)
    conn.putrequest("POST", "/kbs/v0/auth")
    conn.putheader("Content-Length", "\u00b2".encode("latin-1").decode("latin-1"))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 411 and json.loads(resp.read())["type"].endswith("HTTPFailed")
    conn.close()


def test_a_token_signed_by_its_own_header_key_is_refused(kbs: Kbs) -> None:
    from coordinator.kbs import token as tokens

    attacker = jwk.JWK.generate(kty="EC", crv="P-256")
    c = Client(kbs)
    forged = tokens.issue({"exp": int(time.time()) + 600, "submods": {"cpu0": {
        "ear.status": "affirming", "ear.veraison.annotated-evidence": {
            "init_data": DIGEST.hex(), "runtime_data_claims": {"tee-pubkey": c.public}}}}}, attacker)
    c.token = forged
    reply = c.resource(bearer=True)
    assert (reply.status, reply.error()) == (401, "TokenVerifierError")


def test_admin_tokens_expired_or_too_long_lived_are_refused(kbs: Kbs) -> None:
    from jwcrypto import jws

    for exp in (int(time.time()) - 1, int(time.time()) + 7200):
        signed = jws.JWS(json.dumps({"iat": int(time.time()), "exp": exp}))
        signed.add_signature(kbs.admin, alg="EdDSA", protected=json.dumps({"alg": "EdDSA"}))
        reply = call(kbs.port, "POST", "/kbs/v0/resource/a/b/c", raw=b"x",
                     headers={"Authorization": f"Bearer {signed.serialize(compact=True)}"})
        assert reply.error() == "AdminAuthAccess" and "expired" in reply.json()["detail"]


def test_genuine_azure_vtpm_evidence_reaches_the_verifier_and_fails_only_on_this_sessions_nonce(
        tmp_path: Path, sim_chain: Any) -> None:
    """Trustee's genuine az-snp-vtpm evidence (tests/data/az-snp-vtpm) sent to a session of ours: every link
    is checked (the VCEK chain, the report signature, the HCL binding, the quote signature, the PCR digest)
    and only the quote's nonce fails, since the genuine quote carries Trustee's nonce, not this challenge."""
    from test_az_snp_vtpm import doc, refs_for

    k = Kbs(tmp_path, sim_chain)
    k.stop()
    k.config = Config(tmp_path / "az-state", refs_for("evidence-v2.json"))
    k.start()
    try:
        c = Client(k)
        assert c.auth(tee="az-snp-vtpm").status == 200
        body = {"runtime-data": {"nonce": c.nonce, "tee-pubkey": c.public},
                "tee-evidence": {"primary_evidence": doc("evidence-v2.json"), "additional_evidence": ""}}
        reply = c.attest(body)
        assert (reply.status, reply.error()) == (401, "RcarAttestFailed"), reply.body
        detail = reply.json()["detail"]
        claims = detail.removeprefix("the evidence did not verify: ").split(";")
        failed = {part.split(":")[0].strip() for part in claims}
        assert "az.tpm.quote.nonce" in failed and not failed & {"snp.signature", "az.tpm.quote.signature",
                                                                "az.tpm.pcr_digest", "az.hcl.report_data"}, detail
    finally:
        k.stop()


def test_a_full_session_table_drops_the_oldest_session_that_never_attested(tmp_path: Path, sim_chain: Any) -> None:
    k = Kbs(tmp_path, sim_chain, max_sessions=3)
    try:
        attested = Client(k)
        attested.auth()
        assert attested.attest().status == 200
        waiting = [Client(k) for _ in range(2)]
        for c in waiting:
            c.auth()
        late = Client(k)
        assert late.auth().status == 200  # the table was full: the oldest waiting session made room
        assert waiting[0].attest().error() == "UnAuthenticatedCookie"
        assert attested.attest().status == 200 and late.attest().status == 200
    finally:
        k.stop()
