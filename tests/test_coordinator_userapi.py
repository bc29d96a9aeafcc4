"""The coordinator's user API over its front door: gRPC behind cocoon's aTLS on 127.0.0.1, the coordinator's
TEE the sim one. The client attests the coordinator (evidence bound to its nonce and the TLS key, the
coordinator's own initdata) before it sends anything; updates need the workload owner's signature;
refusals are gRPC statuses with the Authority's reasons, and leave the state as it was."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from test_coordinator_authority import BOTH, OWNER_KEY, SEEDSHARE_KEY, STRANGER_KEY, WEB, manifest

from agent.tee import open_provider
from coordinator.authority import Authority
from coordinator.client import CoordinatorClient, CoordinatorClientError, verifier_check
from coordinator.front import AtlsGrpcServer
from coordinator.seed import SeedShare, decrypt_share
from coordinator.userapi import UserApi
from launcher.simca import make_config

MEASUREMENT = b"\x42" * 48
REFS = {"snp": {"guest_policy": "0x30000", "measurements": [{"measurement": MEASUREMENT.hex()}]}}
COORDINATOR_INITDATA = b'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"role" = "coordinator"\n'
DIGEST = hashlib.sha256(COORDINATOR_INITDATA).digest()


class Coordinator:
    mesh: Any = None  # the mesh API's server, when a test starts one

    def __init__(self, tmp: Path, chain: Any) -> None:
        self.tmp = tmp
        sim = tmp / "coordinator-sim.json"
        sim.write_text(make_config(chain, MEASUREMENT, DIGEST).to_json())
        self.trust = tmp / "trust.pem"
        self.trust.write_bytes(chain.trust_pem)
        self.binding = SimpleNamespace(ready=True, tee=open_provider("sim", sim_config=str(sim)))
        self.start()

    def start(self) -> None:
        self.authority = Authority(str(self.tmp / "state"))
        self.server = AtlsGrpcServer([UserApi(self.authority).handler()], self.binding, "127.0.0.1:0",
                                     self.tmp / "work").start()

    def client(self, digest: bytes = DIGEST, refs: Any = REFS) -> CoordinatorClient:
        return CoordinatorClient(self.server.address, verifier_check(refs, initdata_digest=digest,
                                                                     trust_sim=str(self.trust)))


@pytest.fixture
def coordinator(tmp_path: Path, sim_chain: Any):  # type: ignore[no-untyped-def]
    c = Coordinator(tmp_path, sim_chain)
    yield c
    c.server.stop()


def test_set_get_update_and_refusals_over_atls(coordinator: Coordinator) -> None:
    raw, blobs = manifest(WEB)
    with coordinator.client() as c:
        first = c.set_manifest(raw, blobs)
        assert b"BEGIN CERTIFICATE" in first.RootCA and b"BEGIN CERTIFICATE" in first.MeshCA
        assert len(first.SeedSharesDoc.SeedShares) == 1 and len(first.SeedSharesDoc.salt) == 32
        share = first.SeedSharesDoc.SeedShares[0]
        assert len(decrypt_share(SEEDSHARE_KEY, SeedShare(share.PublicKey, share.EncryptedSeed))) == 64
        got = c.get_manifests()
        assert list(got.Manifests) == [raw] and list(got.Policies) == blobs and got.RootCA == first.RootCA
        update, more = manifest(BOTH)
        for key, why in ((None, "not in the current"), (STRANGER_KEY, "not in the current")):
            with pytest.raises(CoordinatorClientError) as refused:
                c.set_manifest(update, more, key)
            assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED and why in str(refused.value)
        with pytest.raises(CoordinatorClientError) as bad:
            c.set_manifest(b"{not json", [])
        assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert list(c.get_manifests().Manifests) == [raw]  # nothing changed
        second = c.set_manifest(update, more, OWNER_KEY)
        assert second.RootCA == first.RootCA and second.MeshCA != first.MeshCA  # the mesh CA rotates
        assert not second.SeedSharesDoc.SeedShares  # the shares come once
        assert list(c.get_manifests().Manifests) == [raw, update]


def test_a_forged_signature_is_refused(coordinator: Coordinator) -> None:
    from cryptography.hazmat.primitives import serialization

    from coordinator.protocols import userapi_pb2 as pb

    raw, blobs = manifest(WEB)
    with coordinator.client() as c:
        c.set_manifest(raw, blobs)
        update, more = manifest(BOTH)
        req = pb.SetManifestRequest(Manifest=update, Policies=more, Signature=b"\x30\x06\x02\x01\x01\x02\x01\x01",
                                    CallerPublicKey=OWNER_KEY.public_key().public_bytes(
                                        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
        with pytest.raises(CoordinatorClientError) as refused:
            c._call("SetManifest", req, pb.SetManifestResponse)
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED and "does not verify" in str(refused.value)


def test_the_client_refuses_a_coordinator_it_does_not_expect(coordinator: Coordinator) -> None:
    """Another initdata digest or other reference values: nothing is sent, the reason is named."""
    with pytest.raises(CoordinatorClientError, match="failed verification"):
        coordinator.client(digest=bytes(32))
    other = json.loads(json.dumps(REFS))
    other["snp"]["measurements"] = [{"measurement": "00" * 48}]
    with pytest.raises(CoordinatorClientError, match="failed verification"):
        coordinator.client(refs=other)
    assert not (coordinator.tmp / "state" / "manifests").exists() or not any(
        (coordinator.tmp / "state" / "manifests").iterdir())


def test_after_a_restart_only_a_seed_share_owner_recovers_it(coordinator: Coordinator) -> None:
    raw, blobs = manifest(WEB)
    with coordinator.client() as c:
        first = c.set_manifest(raw, blobs)
    share = first.SeedSharesDoc.SeedShares[0]
    seed = decrypt_share(SEEDSHARE_KEY, SeedShare(share.PublicKey, share.EncryptedSeed))
    coordinator.server.stop()
    coordinator.start()
    with coordinator.client() as c:
        with pytest.raises(CoordinatorClientError) as waiting:
            c.get_manifests()
        assert waiting.value.code == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(CoordinatorClientError) as stranger:
            c.recover(seed, first.SeedSharesDoc.salt, STRANGER_KEY)
        assert stranger.value.code == grpc.StatusCode.PERMISSION_DENIED
        c.recover(seed, first.SeedSharesDoc.salt, SEEDSHARE_KEY)
        got = c.get_manifests()
        assert list(got.Manifests) == [raw] and got.RootCA == first.RootCA and got.MeshCA == first.MeshCA


def test_cocoon_coordinator_set_and_verify(tmp_path: Path, sim_chain: Any) -> None:
    """The commands a workload owner and a relying party run, against `cocoon coordinator serve`."""
    import subprocess
    import sys

    c = Coordinator(tmp_path, sim_chain)
    c.server.stop()  # its sim TEE document and trust file serve the command's coordinator
    (tmp_path / "coordinator.toml").write_bytes(COORDINATOR_INITDATA)
    (tmp_path / "refs.json").write_text(json.dumps(REFS))
    serve = subprocess.Popen([sys.executable, "-m", "cocoon", "coordinator", "serve", "--state", str(tmp_path / "s"),
                              "--listen", "127.0.0.1:0", "--mesh-listen", "127.0.0.1:0", "--tee", "sim", "--sim-config",
                              str(tmp_path / "coordinator-sim.json"), "--trust-sim", str(c.trust)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()
        assert "serving on atls://127.0.0.1:" in line, line
        address = line.split("atls://")[1].split()[0]
        mesh_address = line.split("atls://")[2].split()[0]
        deploy = tmp_path / "deploy"
        deploy.mkdir()
        raw, blobs = pod_manifest(WEB)
        (deploy / "manifest.json").write_bytes(raw)
        for i, blob in enumerate(blobs):
            (deploy / f"pod{i}.toml").write_bytes(blob)
        common = ["--reference-values", str(tmp_path / "refs.json"), "--trust-sim", str(c.trust),
                  "--coordinator-initdata", str(tmp_path / "coordinator.toml")]

        def cocoon(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "cocoon", *args], capture_output=True, text=True, timeout=120,
                                  cwd=tmp_path)

        done = cocoon("set", "-c", address, "-m", str(deploy / "manifest.json"), *common, str(deploy), "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["seed_shares"] == 1 and (deploy / "seed-shares.json").exists()
        checked = cocoon("verify", "--coordinator", address, "-m", str(deploy / "manifest.json"), *common)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert (tmp_path / "verify" / "manifest.0.json").read_bytes() == raw
        assert (tmp_path / "verify" / f"policy.{hashlib.sha256(blobs[0]).hexdigest()}.rego").read_bytes() == blobs[0]
        pod_tee(tmp_path, sim_chain, "web")
        init = cocoon("initializer", "--coordinator", mesh_address, "--out", str(tmp_path / "pod"), "--tee", "sim",
                      "--sim-config", str(tmp_path / "pod-web.json"), "--wait", "0")
        assert init.returncode == 0 and (tmp_path / "pod" / "tls-config" / "certChain.pem").exists(), init.stderr
        other, _ = manifest(BOTH)
        (tmp_path / "other.json").write_bytes(other)
        assert cocoon("verify", "--coordinator", address, "-m", str(tmp_path / "other.json"), *common).returncode == 1
        bad = tmp_path / "bad.toml"
        bad.write_bytes(COORDINATOR_INITDATA.replace(b"coordinator", b"impostor"))
        impostor = cocoon("verify", "--coordinator", address, "-m", str(deploy / "manifest.json"),
                          "--reference-values", str(tmp_path / "refs.json"), "--trust-sim", str(c.trust),
                          "--coordinator-initdata", str(bad))
        assert impostor.returncode == 2 and "failed verification" in impostor.stderr
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    assert serve.returncode == 0
    # restarted, the coordinator waits for a seed-share owner: `cocoon recover` brings it back
    key_pem = tmp_path / "seedshare.pem"
    from cryptography.hazmat.primitives import serialization

    key_pem.write_bytes(SEEDSHARE_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    serve = subprocess.Popen([sys.executable, "-m", "cocoon", "coordinator", "serve", "--state", str(tmp_path / "s"),
                              "--listen", "127.0.0.1:0", "--mesh-listen", "127.0.0.1:0", "--tee", "sim", "--sim-config",
                              str(tmp_path / "coordinator-sim.json")], stdout=subprocess.PIPE, text=True)
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()
        assert "needs recovery on atls://" in line, line
        address = line.split("atls://")[1].split()[0]
        rec = cocoon("recover", "-c", address, "--seed-shares", str(deploy / "seed-shares.json"), "--seedshare-key",
                     str(key_pem), *common)
        assert rec.returncode == 0, rec.stderr
        again = cocoon("verify", "--coordinator", address, "-m", str(deploy / "manifest.json"), *common, "--output",
                       str(tmp_path / "verify2"))
        assert again.returncode == 0, again.stderr
        assert (tmp_path / "verify2" / "coordinator-root-ca.pem").read_bytes() == \
            (tmp_path / "verify" / "coordinator-root-ca.pem").read_bytes()
    finally:
        serve.terminate()
        serve.wait(timeout=30)


def test_protos_are_current() -> None:
    from coordinator.protocols import generate

    assert generate.main(["--check"]) == 0


# --- the mesh API and the initializer ------------------------------------------------------------------------


def pod_manifest(pods: dict[str, dict[str, Any]]) -> tuple[bytes, list[bytes]]:
    """A manifest whose ReferenceValues are the sim launch's (test_coordinator_authority's names another)."""
    from generator.manifest import snp_values

    raw, blobs = manifest(pods)
    doc = json.loads(raw)
    doc["ReferenceValues"] = {"snp": snp_values(REFS, "sim")}
    return json.dumps(doc).encode(), blobs


def pod_tee(tmp: Path, chain: Any, name: str) -> Any:
    from test_coordinator_authority import initdata

    sim = tmp / f"pod-{name}.json"
    sim.write_text(make_config(chain, MEASUREMENT, hashlib.sha256(initdata(name)).digest()).to_json())
    return open_provider("sim", sim_config=str(sim))


@pytest.fixture
def mesh(tmp_path: Path, sim_chain: Any):  # type: ignore[no-untyped-def]
    from coordinator.meshapi import MeshApi

    c = Coordinator(tmp_path, sim_chain)
    c.mesh = AtlsGrpcServer([MeshApi(c.authority, trust_sim=str(c.trust)).handler()], c.binding, "127.0.0.1:0",
                            tmp_path / "mesh-work").start()
    yield c
    c.mesh.stop()
    c.server.stop()


def test_an_initializer_gets_its_mesh_identity_and_a_stranger_none(mesh: Any, tmp_path: Path, sim_chain: Any) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from coordinator import initializer

    raw, blobs = pod_manifest(WEB)
    with mesh.client() as c:
        c.set_manifest(raw, blobs)
    out = tmp_path / "contrast"
    got = initializer.run(mesh.mesh.address, initializer.provider_evidence(pod_tee(tmp_path, sim_chain, "web")), out,
                          wait_s=0)
    chain = x509.load_pem_x509_certificates((out / "tls-config" / "certChain.pem").read_bytes())
    leaf = chain[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "web" in sans.get_values_for_type(x509.DNSName)
    mesh_ca = x509.load_pem_x509_certificate((out / "tls-config" / "mesh-ca.pem").read_bytes())
    leaf.verify_directly_issued_by(mesh_ca)
    key = serialization.load_pem_private_key((out / "tls-config" / "key.pem").read_bytes(), None)
    assert key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
        == leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert (out / "tls-config" / "key.pem").stat().st_mode & 0o777 == 0o400
    secret = (out / "secrets" / "workload-secret-seed").read_text()
    assert secret == got.WorkloadSecret.hex() and len(got.WorkloadSecret) == 64
    # a pod whose initdata the manifest does not name gets nothing, and says why
    with pytest.raises(CoordinatorClientError) as stranger:
        initializer.run(mesh.mesh.address, initializer.provider_evidence(pod_tee(tmp_path, sim_chain, "api")),
                        tmp_path / "api", wait_s=0)
    assert stranger.value.code == grpc.StatusCode.PERMISSION_DENIED and "not found in manifest" in str(stranger.value)
    assert not (tmp_path / "api").exists()


def test_mesh_requests_with_a_spent_nonce_or_evidence_for_another_key_are_refused(mesh: Any, tmp_path: Path,
                                                                                  sim_chain: Any) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from coordinator.client import accept_any
    from coordinator.initializer import provider_evidence
    from coordinator.meshapi import SERVICE
    from coordinator.protocols import meshapi_pb2 as mpb

    raw, blobs = pod_manifest(WEB)
    with mesh.client() as c:
        c.set_manifest(raw, blobs)
    evidence = provider_evidence(pod_tee(tmp_path, sim_chain, "web"))

    def spki() -> bytes:
        return ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    with CoordinatorClient(mesh.mesh.address, accept_any) as c:
        nonce = c._call("GetNonce", mpb.GetNonceRequest(), mpb.GetNonceResponse, SERVICE).Nonce
        mine, other = spki(), spki()
        tee, doc = evidence(hashlib.sha512(mine + nonce).digest())
        with pytest.raises(CoordinatorClientError) as swapped:
            c._call("NewMeshCert", mpb.NewMeshCertRequest(Nonce=nonce, PublicKey=other, Evidence=doc, Tee=tee),
                    mpb.NewMeshCertResponse, SERVICE)
        assert swapped.value.code == grpc.StatusCode.PERMISSION_DENIED and "snp.report_data" in str(swapped.value)
        with pytest.raises(CoordinatorClientError) as spent:
            c._call("NewMeshCert", mpb.NewMeshCertRequest(Nonce=nonce, PublicKey=mine, Evidence=doc, Tee=tee),
                    mpb.NewMeshCertResponse, SERVICE)
        assert spent.value.code == grpc.StatusCode.PERMISSION_DENIED and "GetNonce first" in str(spent.value)
        for bad, why in ((b"{", "not JSON"), (b"[]", "not a JSON object"), (b'{"attestation_report": 1}', "snp")):
            fresh = c._call("GetNonce", mpb.GetNonceRequest(), mpb.GetNonceResponse, SERVICE).Nonce
            with pytest.raises(CoordinatorClientError) as junk:
                c._call("NewMeshCert", mpb.NewMeshCertRequest(Nonce=fresh, PublicKey=mine, Evidence=bad, Tee="snp"),
                        mpb.NewMeshCertResponse, SERVICE)
            assert junk.value.code == grpc.StatusCode.INVALID_ARGUMENT and why in str(junk.value)


SLACK = 16  # threads or fds other tests' leftovers may still hold while they wind down


def test_sixty_four_initializers_twenty_requests_each(mesh: Any, tmp_path: Path, sim_chain: Any) -> None:
    """64 concurrent pods, each asking 20 times (two rounds of 10, each over its own aTLS connection): zero
    errors, and the second round leaves no more threads or file descriptors than the first left, within a
    slack for other tests' threads still winding down (the servers' worker pools are bounded; a leak of one
    per connection would show as 64, one per request as 640)."""
    import os
    import threading

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from coordinator.client import accept_any
    from coordinator.initializer import provider_evidence
    from coordinator.meshapi import SERVICE
    from coordinator.protocols import meshapi_pb2 as mpb

    raw, blobs = pod_manifest(WEB)
    with mesh.client() as c:
        c.set_manifest(raw, blobs)
    evidence = provider_evidence(pod_tee(tmp_path, sim_chain, "web"))
    spki = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    issued: list[bytes] = []  # every certificate chain the coordinator answered with

    def one_round(c: CoordinatorClient) -> None:
        nonce = c._call("GetNonce", mpb.GetNonceRequest(), mpb.GetNonceResponse, SERVICE).Nonce
        tee, doc = evidence(hashlib.sha512(spki + nonce).digest())
        got = c._call("NewMeshCert", mpb.NewMeshCertRequest(Nonce=nonce, PublicKey=spki, Evidence=doc, Tee=tee),
                      mpb.NewMeshCertResponse, SERVICE)
        issued.append(got.CertChain)

    errors: list[str] = []

    def pod(rounds: int) -> None:
        try:
            with CoordinatorClient(mesh.mesh.address, accept_any, timeout=120) as c:
                for _ in range(rounds):
                    one_round(c)
        except Exception as exc:  # every failure counts, whatever it is
            errors.append(repr(exc))

    def batch(rounds: int) -> None:
        workers = [threading.Thread(target=pod, args=(rounds,)) for _ in range(64)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(timeout=600)

    import time

    def settled(threads: int, fds: int) -> None:
        deadline = time.monotonic() + 30
        while (threading.active_count() > threads or len(os.listdir("/proc/self/fd")) > fds) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert threading.active_count() <= threads, (threading.active_count(), threads)
        assert len(os.listdir("/proc/self/fd")) <= fds, (len(os.listdir("/proc/self/fd")), fds)

    batch(10)  # the servers' worker pools grow to their bound here
    time.sleep(1)
    threads_before, fds_before = threading.active_count(), len(os.listdir("/proc/self/fd"))
    batch(10)  # 64 x 20 in all
    assert errors == []
    assert len(issued) == 64 * 20 and all(b"BEGIN CERTIFICATE" in chain for chain in issued)
    assert len(set(issued)) == len(issued)  # a fresh certificate (serial) for every request
    settled(threads_before + SLACK, fds_before + SLACK)
    assert threading.active_count() <= threads_before + SLACK, (threads_before, threading.active_count())
    assert len(os.listdir("/proc/self/fd")) <= fds_before + SLACK, (fds_before, len(os.listdir("/proc/self/fd")))


def test_pods_talk_mtls_with_their_mesh_certificates_and_an_update_rotates_the_trust(mesh: Any, tmp_path: Path,
                                                                                      sim_chain: Any) -> None:
    """web and api get their identities; api serves TLS requiring a mesh client certificate, web calls it
    with its own; `openssl s_client -CAfile mesh-ca.pem` verifies api's chain. After a manifest update (a
    SAN added) a restarted web holds a certificate under the new mesh CA, which api (certified under the
    old one, trusting only its mesh CA) refuses, as the seed describes."""
    import socket
    import ssl
    import subprocess
    import threading

    from coordinator import initializer
    from generator.manifest import snp_values

    raw, blobs = pod_manifest(BOTH)
    with mesh.client() as c:
        c.set_manifest(raw, blobs)
    for name in ("web", "api"):
        initializer.run(mesh.mesh.address, initializer.provider_evidence(pod_tee(tmp_path, sim_chain, name)),
                        tmp_path / name, wait_s=0)

    def context(pod: str, server: bool) -> ssl.SSLContext:
        tls = tmp_path / pod / "tls-config"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_cert_chain(tls / "certChain.pem", tls / "key.pem")
        ctx.load_verify_locations(tls / "mesh-ca.pem")
        ctx.verify_mode = ssl.CERT_REQUIRED
        if not server:
            ctx.check_hostname = True
        return ctx

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    served: list[str] = []

    def serve(count: int) -> None:
        ctx = context("api", server=True)
        for _ in range(count):
            conn, _ = listener.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    served.append(tls.recv(64).decode())
                    tls.sendall(b"pong")
            except (ssl.SSLError, OSError) as exc:
                served.append(f"refused: {exc}")

    server = threading.Thread(target=serve, args=(3,), daemon=True)
    server.start()
    with socket.create_connection(("127.0.0.1", port)) as raw_sock, \
            context("web", server=False).wrap_socket(raw_sock, server_hostname="api") as tls:
        tls.sendall(b"ping from web")
        assert tls.recv(64) == b"pong"
    # what a relying party runs against the front end with the mesh CA `cocoon verify` wrote
    check = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile",
                            str(tmp_path / "api" / "tls-config" / "mesh-ca.pem"), "-cert",
                            str(tmp_path / "web" / "tls-config" / "certChain.pem"), "-key",
                            str(tmp_path / "web" / "tls-config" / "key.pem"), "-verify_return_error"],
                           input=b"ping from openssl", capture_output=True, timeout=60)
    assert b"Verify return code: 0 (ok)" in check.stdout, check.stdout[-2000:] + check.stderr[-2000:]
    # an update rotates the mesh CA: web, restarted, is certified under the new one, which api does not trust
    doc = json.loads(raw)
    for entry in doc["Policies"].values():
        entry["SANs"] = [*entry["SANs"], "extra.example"]
    doc["ReferenceValues"] = {"snp": snp_values(REFS, "sim")}
    old_mesh_ca = (tmp_path / "web" / "tls-config" / "mesh-ca.pem").read_bytes()
    with mesh.client() as c:
        c.set_manifest(json.dumps(doc).encode(), blobs, OWNER_KEY)
    initializer.run(mesh.mesh.address, initializer.provider_evidence(pod_tee(tmp_path, sim_chain, "web")),
                    tmp_path / "web", wait_s=0)
    assert (tmp_path / "web" / "tls-config" / "mesh-ca.pem").read_bytes() != old_mesh_ca  # rotated
    with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", port)) as raw_sock, \
            context("web", server=False).wrap_socket(raw_sock, server_hostname="api") as tls:
        tls.sendall(b"ping after the update")
        tls.recv(64)
    server.join(timeout=30)
    assert len(served) == 3 and served[:2] == ["ping from web", "ping from openssl"], served
    assert served[2].startswith("refused:"), served


def test_what_the_coordinator_must_be_comes_from_the_manifest_unless_given(tmp_path: Path) -> None:
    """`cocoon verify -c HOST -m manifest.json` needs nothing more: the manifest's ReferenceValues and its
    Role: coordinator policy say what to expect; the command line overrides; ambiguity is refused."""
    import argparse

    from coordinator.cli import CliError, expectation
    from verifier.refs import validate

    coordinator = hashlib.sha256(COORDINATOR_INITDATA).hexdigest()
    raw, _ = pod_manifest({**WEB, "coordinator": {"SANs": ["coordinator"], "WorkloadSecretID": "c",
                                                  "Role": "coordinator"}})
    doc = json.loads(raw)
    doc["Policies"] = {(coordinator if e.get("Role") else d): e for d, e in doc["Policies"].items()}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(doc))

    def ns(**kw: Any) -> argparse.Namespace:
        return argparse.Namespace(**{"manifest": str(path), "reference_values": None, "coordinator_initdata": None,
                                     **kw})

    refs, digest = expectation(ns())
    assert digest == bytes.fromhex(coordinator)
    assert refs["snp"]["measurements"] == validate(REFS)["snp"]["measurements"]
    (tmp_path / "other.toml").write_bytes(COORDINATOR_INITDATA + b"# another\n")
    other = ns(coordinator_initdata=str(tmp_path / "other.toml"))
    assert expectation(other)[1] == hashlib.sha256(COORDINATOR_INITDATA + b"# another\n").digest()
    (tmp_path / "refs.json").write_text(json.dumps({"snp": {"measurements": [{"measurement": "cd" * 48}]}}))
    assert expectation(ns(reference_values=str(tmp_path / "refs.json")))[0]["snp"]["measurements"][0][
        "measurement"] == "cd" * 48
    doc["Policies"] = {d: {**e, "Role": "coordinator"} for d, e in doc["Policies"].items()}
    path.write_text(json.dumps(doc))
    with pytest.raises(CliError, match="2 coordinator policies"):
        expectation(ns())
    doc["ReferenceValues"] = {}
    path.write_text(json.dumps(doc))
    with pytest.raises(CliError, match="no reference values"):
        expectation(ns(coordinator_initdata=str(tmp_path / "other.toml")))
    path.write_text('{"Policies": {}, "Policies": {}}')
    with pytest.raises(CliError, match="duplicate key"):
        expectation(ns())

    doc["ReferenceValues"] = {"snp": [{"GuestPolicy": {}, "TrustedMeasurement": "ab", "MinimumTCB": "x"}]}
    path.write_text(json.dumps(doc))
    with pytest.raises(CliError, match="do not convert"):
        expectation(ns())


def test_nothing_pinning_the_coordinator_is_refused_unless_asked_and_never_for_recover(tmp_path: Path) -> None:
    """Every pod runs the same image: reference values alone would let any of them answer as the coordinator
    (choosing the CAs we trust, receiving the seed on recover), so that is refused before connecting."""
    import argparse

    from coordinator.cli import CliError, _connect

    raw, _ = pod_manifest(WEB)  # no Role: coordinator entry
    (tmp_path / "manifest.json").write_bytes(raw)
    base = {"manifest": str(tmp_path / "manifest.json"), "reference_values": None, "coordinator_initdata": None,
            "coordinator": "127.0.0.1:1", "trust_sim": None, "wait": 0.0}
    with pytest.raises(CliError, match="nothing pins the coordinator's initdata"):
        _connect(argparse.Namespace(**base))  # set / verify without the flag; recover has no such flag at all
    with pytest.raises(CliError, match="cannot reach the coordinator"):  # with it: refused only by the network
        _connect(argparse.Namespace(**base, insecure_any_coordinator=True))
