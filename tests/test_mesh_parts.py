"""The parts the mesh demo is made of, without VMs: the coordinator's guest TEE (evidence from the guest's
attestation agent), cocoon's container image (reproducible, what a container needs), and the two demo apps
over real mutual TLS with certificates from the coordinator's CA."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import ssl
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import TeeError
from agent.tee import open_provider
from coordinator.guest_tee import GuestTee
from image import runtime_image
from launcher.simca import make_config
from verifier.api import verify

MEASUREMENT = bytes(range(48))
DIGEST = hashlib.sha256(b"the coordinator pod's initdata").digest()


@pytest.fixture
def hub(tmp_path: Path, sim_chain: Any) -> Iterator[tuple[str, Path]]:
    from agent.datahub import DataHub

    sim = tmp_path / "sim.json"
    sim.write_text(make_config(sim_chain, MEASUREMENT, DIGEST).to_json())
    trust = tmp_path / "trust.pem"
    trust.write_bytes(sim_chain.trust_pem)
    datahub = DataHub(None, open_provider("sim", sim_config=str(sim)), ("127.0.0.1", 0)).start()
    yield f"http://127.0.0.1:{datahub.server_address[1]}", trust
    datahub.stop()


def test_the_guest_tee_gives_the_guests_evidence_for_the_report_data_asked(hub: tuple[str, Path]) -> None:
    url, trust = hub
    tee = GuestTee(url)
    report_data = hashlib.sha512(b"a TLS key and a nonce").digest()
    ev = tee.report(report_data)
    assert ev.kind == "snp" and tee.report_data_of(ev) == report_data and tee.bound_value(ev) == DIGEST
    refs = {"snp": {"measurements": [{"measurement": MEASUREMENT.hex()}], "guest_policy": "0x30000"}}
    result = verify(ev.kind, ev.report, ev.aux, refs, initdata_digest=DIGEST, trust_sim=str(trust), tee=ev.tee)
    assert result.ok and result.simulated, result.table()


class _Canned(http.server.BaseHTTPRequestHandler):
    status = 200
    body = b""

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[Any]:
    """An attestation agent that answers whatever the test sets (a confused or hostile endpoint)."""
    handler = type("H", (_Canned,), {})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def test_the_guest_tee_refuses_stale_malformed_and_refused_answers(hub: tuple[str, Path], canned: Any) -> None:
    url, _ = hub
    stale = GuestTee(url).report(bytes(64))  # valid evidence, but for other REPORT_DATA
    from agent.kbs_client import evidence_json

    canned.body = json.dumps(evidence_json(stale)).encode()
    with pytest.raises(TeeError, match="other REPORT_DATA"):
        GuestTee(canned.url).report(b"\x01" * 64)
    for body, status, message in ((b'{"attestation_report": 1, "attestation_report": 2}', 200, "malformed"),
                                  (b"not json", 200, "malformed"), (b"[]", 200, "malformed"),
                                  (b"the TEE failed", 500, "refused \\(500\\)")):
        canned.body, canned.status = body, status
        with pytest.raises(TeeError, match=message):
            GuestTee(canned.url).report(bytes(64))
    with pytest.raises(TeeError, match="not http"):
        GuestTee("https://127.0.0.1:8006")
    with pytest.raises(TeeError, match="the attestation agent at"):
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
        free.close()
        GuestTee(f"http://127.0.0.1:{port}").report(bytes(64))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=300), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["attestation_report", "cert_chain", "quote", "cc_eventlog", "x"]), inner, max_size=3),
    max_leaves=8).map(lambda d: json.dumps(d).encode())))
def test_any_answer_is_evidence_or_a_tee_error(canned: Any, body: bytes) -> None:
    canned.body, canned.status = body, 200
    try:
        GuestTee(canned.url).report(bytes(64))
    except TeeError:
        return
    raise AssertionError(f"{body!r} was taken as evidence")


def _tree(root: Path) -> Path:
    """A minimal stand-in for the guest's root tree: the paths runtime_image takes, a link among them."""
    for rel in runtime_image.RUNTIME_PATHS:
        p = root / rel
        if rel in ("bin", "lib", "lib64", "sbin"):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.symlink_to(f"usr/{rel}")
        elif rel.startswith("usr/bin/"):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"\x7fELF interpreter")
            p.chmod(0o755)
        else:
            (p / "__pycache__").mkdir(parents=True)
            (p / "__pycache__" / "x.pyc").write_bytes(b"stale")
            (p / "mod.py").write_text("X = 1\n")
    return root


def test_the_container_image_is_reproducible_and_holds_what_a_cocoon_process_needs(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "root")
    a = runtime_image.build(tree, tmp_path / "a", tag="1.0", epoch=1700000000)
    b = runtime_image.build(tree, tmp_path / "b", tag="1.0", epoch=1700000000)
    assert a.manifest_digest == b.manifest_digest
    assert runtime_image.build(tree, tmp_path / "c", tag="1.0", epoch=1700000001).manifest_digest != a.manifest_digest
    index = json.loads((a.layout / "index.json").read_text())
    manifest = json.loads((a.layout / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_text())
    config = json.loads((a.layout / "blobs" / "sha256" / manifest["config"]["digest"][7:]).read_text())
    assert config["config"]["Entrypoint"] == runtime_image.ENTRYPOINT
    names: dict[str, tarfile.TarInfo] = {}
    for layer in manifest["layers"]:
        data = (a.layout / "blobs" / "sha256" / layer["digest"][7:]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == layer["digest"][7:]
        with tarfile.open(fileobj=__import__("io").BytesIO(data)) as tar:
            members = tar.getmembers()
        assert [m.name for m in members] == sorted(m.name for m in members)
        assert all(m.uid == 0 and m.gid == 0 and m.mtime == 1700000000 for m in members)
        names.update({m.name: m for m in members})
    assert names["lib64"].issym() and names["usr/bin/python3"].mode == 0o755
    assert "usr/lib/python3.11/mod.py" in names and not any("__pycache__" in n for n in names)
    assert names["usr/bin/cocoon"].mode == 0o755 and "usr/lib/cocoon/app/coordinator/guest_tee.py" in names
    assert "usr/lib/cocoon/app/generator/rules.rego" in names  # data files ride along with the code
    with pytest.raises(runtime_image.RuntimeImageError, match="not a cocoon guest root tree"):
        runtime_image.build(tmp_path / "nothing", tmp_path / "d")


def _mesh_identity(tmp: Path, name: str, ca_key: Any, ca_cert: Any) -> Path:
    """tls-config/ as the initializer writes it, for ``name``, under ``ca`` (a stand-in mesh CA)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    tls = tmp / name / "tls-config"
    tls.mkdir(parents=True)
    (tls / "certChain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tls / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    (tls / "mesh-ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return tls


def _ca(name: str) -> tuple[Any, Any]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    return key, cert


def _serve(app: Any, ctx: ssl.SSLContext) -> tuple[Any, int]:
    from http.server import ThreadingHTTPServer

    from cocoon import demo_apps

    handler = type("Handler", (demo_apps._Handler,), {"app": app})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def _get(port: int, path: str, ca: Path) -> tuple[int, str]:
    import http.client

    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=ctx)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        return reply.status, reply.read().decode()
    finally:
        conn.close()


def test_web_calls_voting_only_within_one_mesh(tmp_path: Path) -> None:
    """voting takes only clients under its mesh CA; web presents its mesh certificate and checks voting's
    name; a web of another mesh (a rotated CA) is refused, and web says so instead of failing silently."""
    from cocoon import demo_apps

    ca = _ca("mesh CA 1")
    voting_tls, web_tls = _mesh_identity(tmp_path, "voting", *ca), _mesh_identity(tmp_path, "web", *ca)
    voting, vport = _serve(demo_apps.Voting(), demo_apps.server_context(voting_tls, require_client=True))
    web, wport = _serve(demo_apps.Web(f"127.0.0.1:{vport}", "voting", web_tls),
                        demo_apps.server_context(web_tls, require_client=False))
    other = _ca("mesh CA 2")
    new_web_tls = _mesh_identity(tmp_path / "new", "web", *other)
    new_web, nport = _serve(demo_apps.Web(f"127.0.0.1:{vport}", "voting", new_web_tls),
                            demo_apps.server_context(new_web_tls, require_client=False))
    impostor, iport = _serve(demo_apps.Web(f"127.0.0.1:{vport}", "not-voting", web_tls),
                             demo_apps.server_context(web_tls, require_client=False))
    try:
        ca1 = web_tls / "mesh-ca.pem"
        assert _get(wport, "/vote/doughnut", ca1) == (200, "web -> voting (mutual TLS): doughnut 1\n")
        assert _get(wport, "/vote/doughnut", ca1) == (200, "web -> voting (mutual TLS): doughnut 2\n")
        assert _get(wport, "/results", ca1) == (200, 'web -> voting (mutual TLS): {"doughnut": 2}\n')
        assert _get(wport, "/vote/nope", ca1)[0] == 404
        with pytest.raises(ssl.SSLError):  # no client certificate: voting refuses the handshake
            _get(vport, "/results", voting_tls / "mesh-ca.pem")
        status, body = _get(nport, "/vote/cat", new_web_tls / "mesh-ca.pem")
        assert status == 502 and "refused the mesh" in body, body
        status, body = _get(iport, "/vote/cat", web_tls / "mesh-ca.pem")  # voting's cert does not name that
        assert status == 502 and "refused the mesh" in body, body
        with pytest.raises(ssl.SSLError):  # the old mesh CA does not verify the new web
            _get(nport, "/results", web_tls / "mesh-ca.pem")
        assert _get(wport, "/results", web_tls / "mesh-ca.pem")[1].endswith('{"doughnut": 2}\n')  # nothing counted
    finally:
        for s in (voting, web, new_web, impostor):
            s.shutdown()
            s.server_close()
