"""``cocoon initializer``: a pod's init container that gets the pod's mesh identity from the coordinator and
leaves it in the shared volume, where Contrast's initializer leaves it:

    <out>/tls-config/mesh-ca.pem, certChain.pem, key.pem (PKCS#8, 0400), coordinator-root-ca.pem
    <out>/secrets/workload-secret-seed     (hex, 0400; only when the manifest gives the pod a secret ID)

The TLS key is made here (EC P-256) and never leaves the pod. The evidence comes from the guest's
attestation agent (its REST door, http://127.0.0.1:8006/aa/evidence, base64 runtime data) for REPORT_DATA
= SHA-512(key || the coordinator's nonce); tests may name a TEE provider instead. Retried every 5 s until
the coordinator answers (bounded), as Contrast's initializer does.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coordinator.client import CoordinatorClient, CoordinatorClientError, accept_any
from coordinator.meshapi import SERVICE
from coordinator.protocols import meshapi_pb2 as pb

EvidenceSource = Callable[[bytes], tuple[str, bytes]]  # REPORT_DATA -> (tee, evidence JSON)


def agent_evidence(url: str = "http://127.0.0.1:8006") -> EvidenceSource:
    """The guest's attestation agent (agent/datahub.py)."""
    parts = urllib.parse.urlsplit(url)

    def fetch(report_data: bytes) -> tuple[str, bytes]:
        query = urllib.parse.urlencode({"runtime_data": base64.b64encode(report_data).decode(), "encoding": "base64"})
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 8006, timeout=60)
        try:
            conn.request("GET", f"/aa/evidence?{query}")
            reply = conn.getresponse()
            body = reply.read(1 << 20)
        except OSError as exc:
            raise CoordinatorClientError(f"the attestation agent at {url}: {exc}") from None
        finally:
            conn.close()
        if reply.status != 200:
            raise CoordinatorClientError(f"the attestation agent refused: {body[:200].decode(errors='replace')}")
        return ("tdx" if b'"quote"' in body else "snp"), body

    return fetch


def provider_evidence(tee: Any) -> EvidenceSource:
    """A TEE provider of this process (the sim one in tests)."""
    from agent.kbs_client import evidence_json

    def make(report_data: bytes) -> tuple[str, bytes]:
        ev = tee.report(report_data)
        return ("tdx" if ev.kind == "tdx-quote" else "snp"), json.dumps(evidence_json(ev)).encode()

    return make


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def obtain(coordinator: str, evidence: EvidenceSource, out: Path, check: Any = accept_any) -> pb.NewMeshCertResponse:
    """One attempt: nonce, evidence, certificate; the files written. CoordinatorClientError when refused."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with CoordinatorClient(coordinator, check) as client:
        nonce = client._call("GetNonce", pb.GetNonceRequest(), pb.GetNonceResponse, SERVICE).Nonce
        tee, doc = evidence(hashlib.sha512(spki + nonce).digest())
        got: pb.NewMeshCertResponse = client._call(
            "NewMeshCert", pb.NewMeshCertRequest(Nonce=nonce, PublicKey=spki, Evidence=doc, Tee=tee),
            pb.NewMeshCertResponse, SERVICE)
    tls = out / "tls-config"
    _write(tls / "mesh-ca.pem", got.MeshCACert, 0o444)
    _write(tls / "certChain.pem", got.CertChain, 0o444)
    _write(tls / "coordinator-root-ca.pem", got.RootCACert, 0o444)
    _write(tls / "key.pem", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()), 0o400)
    if got.WorkloadSecret:
        _write(out / "secrets" / "workload-secret-seed", got.WorkloadSecret.hex().encode(), 0o400)
    return got


def run(coordinator: str, evidence: EvidenceSource, out: Path, wait_s: float = 300.0,
        log: Callable[[str], None] = print) -> pb.NewMeshCertResponse:
    """``obtain`` until it works or ``wait_s`` passed; a refusal by the coordinator (the pod is not in the
    manifest, its evidence fails) is final, an unreachable coordinator is waited for."""
    import grpc

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return obtain(coordinator, evidence, out)
        except CoordinatorClientError as exc:
            final = exc.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT)
            if final or time.monotonic() >= deadline:
                raise
            log(f"cocoon initializer: waiting for the coordinator at {coordinator}: {exc}")
            time.sleep(5)
