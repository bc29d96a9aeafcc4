"""aTLS: the certificate verifies, carries evidence bound to the client's nonce, and the channel speaks ttRPC."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent import initdata
from agent.atls import (
    AtlsError,
    AtlsListener,
    client_context,
    decode_server_name,
    encode_server_name,
    evidence_from_certificate,
)
from agent.binding import Binding, bind
from agent.protocols import health_pb2, ttrpc_pb2
from agent.service import Agent
from agent.tee import certtable, open_provider, snp_report
from agent.transport import Listener, parse
from agent.ttrpc import HEADER, TtrpcServer, read_frame

DOC = b'algorithm = "sha256"\nversion = "0.1.0"\n[data]\n"policy.rego" = "package agent_policy\\n"\n'


@pytest.fixture
def atls_server(tmp_path, sim_tee):  # type: ignore[no-untyped-def]
    path = tmp_path / "initdata.toml"
    path.write_bytes(DOC)
    cfg = sim_tee(hashlib.sha256(DOC).digest())
    binding = bind(lambda: open_provider("sim", sim_config=cfg), lambda: initdata.read_path(str(path)))
    assert binding.ready, binding.reason
    servers = []

    def start(b: Binding):  # type: ignore[no-untyped-def]
        srv = TtrpcServer(Agent(b).registry())
        listener = srv.add_listener(AtlsListener(Listener(parse("tcp://127.0.0.1:0")), b))
        servers.append(srv)
        host, port = listener.inner.sock.getsockname()[:2]
        return host, port

    yield start, binding
    for s in servers:
        s.stop()


def handshake(host: str, port: int, nonce: bytes | None) -> ssl.SSLSocket:
    raw = socket.create_connection((host, port), timeout=20)
    name = encode_server_name(nonce) if nonce is not None else None
    return client_context().wrap_socket(raw, server_hostname=name)


def test_certificate_carries_evidence_bound_to_nonce(atls_server) -> None:  # type: ignore[no-untyped-def]
    start, binding = atls_server
    host, port = start(binding)
    nonce = os.urandom(48)
    with handshake(host, port, nonce) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        ev = evidence_from_certificate(der)
        cert = x509.load_der_x509_certificate(der)
        spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        rep = snp_report.parse(ev.report)
        assert rep.report_data == hashlib.sha512(spki + nonce).digest()
        assert rep.host_data == hashlib.sha256(DOC).digest()
        vcek = x509.load_der_x509_certificate(certtable.parse(ev.aux)["vcek"])
        snp_report.verify_signature(rep, vcek.public_key())
        assert cert.extensions[0].oid.dotted_string == "1.3.9901.2.1"
        # and the channel speaks ttRPC
        body = ttrpc_pb2.Request(service="grpc.Health", method="Check",
                                 payload=health_pb2.CheckRequest().SerializeToString()).SerializeToString()
        tls.sendall(HEADER.pack(len(body), 1, 1, 0) + body)
        sid, mtype, _, data = read_frame(tls)
        resp = ttrpc_pb2.Response()
        resp.ParseFromString(data or b"")
        assert sid == 1 and mtype == 2 and resp.status.code == 0
    with handshake(host, port, os.urandom(8)) as tls2:  # a second client gets a different, fresh certificate
        assert tls2.getpeercert(binary_form=True) != der


def test_no_nonce_or_deny_all_means_no_certificate(atls_server) -> None:  # type: ignore[no-untyped-def]
    start, binding = atls_server
    host, port = start(binding)
    with pytest.raises(ssl.SSLError):
        handshake(host, port, None)
    host2, port2 = start(Binding("deny-all", "initdata digest mismatch"))
    with pytest.raises(ssl.SSLError):
        handshake(host2, port2, os.urandom(16))


def test_server_name_codec() -> None:
    for n in (b"\x00", os.urandom(32), os.urandom(64)):
        name = encode_server_name(n)
        assert all(len(label) <= 63 for label in name.split(".")) and decode_server_name(name) == n
    for bad in (None, "example.com", "zz.atls.cocoon", ".atls.cocoon"):
        with pytest.raises(AtlsError):
            decode_server_name(bad)
    with pytest.raises(AtlsError):
        encode_server_name(bytes(65))


def test_tampered_certificate_is_rejected(atls_server) -> None:  # type: ignore[no-untyped-def]
    start, binding = atls_server
    host, port = start(binding)
    with handshake(host, port, b"n") as tls:
        raw = tls.getpeercert(binary_form=True)
        assert raw is not None
        der = bytearray(raw)
    der[-10] ^= 1  # inside the signature
    with pytest.raises(AtlsError):
        evidence_from_certificate(bytes(der))


def test_ctl_verifies_before_sending(tmp_path, sim_chain, capsys) -> None:  # type: ignore[no-untyped-def]
    """`cocoon ctl --atls` sends its RPC only after the certificate's evidence verified."""
    import json

    from agent.initdata import render_document
    from cocoon.cli import main
    from launcher.simca import make_config

    doc = render_document({"policy.rego": "package agent_policy\n"})
    img = tmp_path / "initdata.img"
    img.write_bytes(initdata.encode_block(doc))
    cfg = tmp_path / "sim.json"
    cfg.write_text(make_config(sim_chain, b"\x42" * 48, hashlib.sha256(doc).digest()).to_json())
    trust = tmp_path / "trust.pem"
    trust.write_bytes(sim_chain.trust_pem)
    refs = tmp_path / "refs.json"
    refs.write_text(json.dumps({"snp": {"guest_policy": "0x30000", "measurements": [{"measurement": "42" * 48}]}}))
    b = bind(lambda: open_provider("sim", sim_config=str(cfg)), lambda: initdata.read_path(str(img)))
    server = TtrpcServer(Agent(b).registry())
    listener = server.add_listener(AtlsListener(Listener(parse("tcp://127.0.0.1:0")), b))
    port = listener.inner.sock.getsockname()[1]
    try:
        base = ["ctl", "--address", f"tcp://127.0.0.1:{port}", "--atls", "--reference-values", str(refs)]
        assert main([*base, "--initdata", str(img), "--trust-sim", str(trust), "Check"]) == 0
        out = capsys.readouterr()
        assert '"status": "SERVING"' in out.out and "VERIFIED" in out.err
        assert main([*base, "--initdata", str(img), "Check"]) == 1  # sim evidence without --trust-sim
        assert "nothing was sent" in capsys.readouterr().err
        other = tmp_path / "other.toml"
        other.write_bytes(render_document({"policy.rego": "package agent_policy\ndefault X := true\n"}))
        assert main([*base, "--initdata", str(other), "--trust-sim", str(trust), "Check"]) == 1
        err = capsys.readouterr().err
        assert "snp.host_data" in err and "nothing was sent" in err
    finally:
        server.stop()


def test_concurrent_calls_over_one_atls_connection(atls_server) -> None:  # type: ignore[no-untyped-def]
    """Reads and writes interleave on one TLS connection from many threads (OpenSSL forbids overlap)."""
    import threading

    from agent.atls import connect_verified
    from agent.ttrpc import TtrpcClient

    start, binding = atls_server
    host, port = start(binding)

    class Accept:
        ok = True

    sock, _ = connect_verified(f"tcp://{host}:{port}", lambda ev, nonce, spki: Accept())
    client = TtrpcClient(f"tcp://{host}:{port}", sock=sock)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(50):
                r = client.call("grpc.Health", "Check", health_pb2.CheckRequest(), health_pb2.HealthCheckResponse,
                                timeout=20)
                assert r.status == 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    assert errors == []


def test_atls_serves_descriptors_past_1024(atls_server) -> None:  # type: ignore[no-untyped-def]
    """The unit's LimitNOFILE admits fds past FD_SETSIZE, where select() raises: both ends must still work."""
    import resource

    from agent.atls import connect_verified
    from agent.ttrpc import TtrpcClient

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below 2048")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    filler: list[Any] = []
    try:
        while len(filler) < 1100:
            filler.append(os.open("/dev/null", os.O_RDONLY))
        start, binding = atls_server
        host, port = start(binding)

        class Accept:
            ok = True

        sock, _ = connect_verified(f"tcp://{host}:{port}", lambda ev, nonce, spki: Accept())
        assert getattr(sock, "sock", sock).fileno() > 1024
        client = TtrpcClient(f"tcp://{host}:{port}", sock=sock)
        try:
            r = client.call("grpc.Health", "Check", health_pb2.CheckRequest(), health_pb2.HealthCheckResponse,
                            timeout=20)
            assert r.status == 1
        finally:
            client.close()
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
