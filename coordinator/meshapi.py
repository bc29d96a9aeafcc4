"""The mesh API's handlers: a pod's initializer gets a nonce, then presents evidence bound to it and to its
TLS key; the coordinator verifies the evidence with cocoon's verifier against the *current* manifest's
ReferenceValues, looks up ``Policies[HOSTDATA]`` (TDX: MRCONFIGID's first 32 bytes) and answers with a
certificate for that key, the mesh CA, the root CA and the workload secret (authority.mesh_identity).

Nonces are single use and live NONCE_TTL_S; the table is bounded (the oldest goes first). Evidence comes
as the attestation agent's JSON (agent/tee/snp_json.py for SNP, ``{"quote", "cc_eventlog"}`` for TDX),
REPORT_DATA = SHA-512(PublicKey || Nonce) as cocoon's aTLS binds (agent/evidence.py). A TDX pod's CC event
log is replayed against its quote's RTMRs (verifier/ccel.py), as the key broker does: a log that is not one,
or does not replay, is a refusal; without one only the quote is checked. Sim evidence passes only when the
coordinator was started with ``--trust-sim``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import grpc

from agent.errors import AgentError
from agent.kbs_client import MAX_CCEL
from coordinator.authority import Authority, CoordinatorError
from coordinator.protocols import meshapi_pb2 as pb
from coordinator.userapi import Refused

SERVICE = "meshapi.MeshAPI"
NONCE_TTL_S = 60.0
MAX_NONCES = 4096
# a report or quote with its certificates is some KiB; a TDX pod's CC event log may add up to MAX_CCEL, base64
MAX_EVIDENCE = (64 << 10) + 4 * -(-MAX_CCEL // 3)


def evidence_doc(raw: bytes) -> dict[str, Any]:
    """The attestation agent's evidence JSON object (duplicate keys refused)."""
    from agent import strictjson

    try:
        doc = strictjson.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "Evidence is not JSON") from None
    if not isinstance(doc, dict):
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "Evidence is not a JSON object")
    return doc


def evidence_parts(tee: str, raw: bytes) -> tuple[str, bytes, bytes]:
    """(verifier kind, report, aux) from the attestation agent's evidence JSON (agent/kbs_client.py)."""
    return _parts(tee, evidence_doc(raw))


def _parts(tee: str, doc: dict[str, Any]) -> tuple[str, bytes, bytes]:
    from agent.kbs_client import read_evidence

    try:
        return read_evidence(tee, doc)
    except AgentError as exc:
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"{tee} Evidence: {exc}") from None


def evidence_eventlog(kind: str, doc: dict[str, Any]) -> bytes | None:
    """The CC event log area TDX evidence carries (None: none sent, or not TDX)."""
    from agent.kbs_client import read_cc_eventlog

    if kind != "tdx-quote":
        return None
    try:
        return read_cc_eventlog(doc)
    except AgentError as exc:
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"tdx Evidence: {exc}") from None


class MeshApi:
    def __init__(self, authority: Authority, trust_sim: str | None = None) -> None:
        self.authority = authority
        self.trust_sim = trust_sim
        self.nonces: dict[bytes, float] = {}
        self.lock = threading.Lock()

    def get_nonce(self, req: pb.GetNonceRequest, context: grpc.ServicerContext) -> pb.GetNonceResponse:
        nonce = os.urandom(32)
        now = time.monotonic()
        with self.lock:
            for old in [n for n, t in self.nonces.items() if t <= now]:
                del self.nonces[old]
            while len(self.nonces) >= MAX_NONCES:
                del self.nonces[min(self.nonces, key=self.nonces.__getitem__)]
            self.nonces[nonce] = now + NONCE_TTL_S
        return pb.GetNonceResponse(Nonce=nonce)

    def _spend(self, nonce: bytes) -> None:
        with self.lock:
            expires = self.nonces.pop(nonce, None)
        if expires is None or expires <= time.monotonic():
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, "the nonce is not one this coordinator gave out (or was "
                                                             "used, or expired): GetNonce first")

    def _identity(self, req: pb.NewMeshCertRequest) -> pb.NewMeshCertResponse:
        from cryptography.hazmat.primitives import serialization

        from generator.manifest import to_cocoon_refs
        from verifier.api import verify

        if len(req.Evidence) > MAX_EVIDENCE or len(req.PublicKey) > 4096:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "Evidence or PublicKey is too large")
        self._spend(bytes(req.Nonce))  # spent whatever follows: evidence for it is good once
        try:
            key = serialization.load_der_public_key(bytes(req.PublicKey))
        except (ValueError, TypeError):
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "PublicKey is not a DER SubjectPublicKeyInfo") from None
        doc = evidence_doc(bytes(req.Evidence))
        kind, report, aux = _parts(req.Tee, doc)
        log = evidence_eventlog(kind, doc)
        refs = to_cocoon_refs(self.authority.current_manifest().get("ReferenceValues") or {})
        try:
            result = verify(kind, report, aux, refs, nonce=bytes(req.Nonce), public_key=bytes(req.PublicKey),
                            trust_sim=self.trust_sim, cc_eventlog=log)
        except AgentError as exc:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"the evidence could not be checked: {exc}") from None
        if not result.ok:
            failed = "; ".join(f"{c.name}: {c.detail}" for c in result.failed)
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, f"the pod's evidence did not verify: {failed}")
        host = self._bound(kind, report)
        identity = self.authority.mesh_identity(host.hex(), key)  # type: ignore[arg-type]
        return pb.NewMeshCertResponse(MeshCACert=identity.mesh_ca_pem, CertChain=identity.cert_chain_pem,
                                      RootCACert=identity.root_ca_pem, WorkloadSecret=identity.workload_secret)

    @staticmethod
    def _bound(kind: str, report: bytes) -> bytes:
        """HOSTDATA (SNP) or MRCONFIGID's first 32 bytes (TDX), as Contrast looks policies up."""
        if kind == "snp":
            from agent.tee import snp_report

            return bytes(snp_report.parse(report).host_data)
        from agent.tee.tdx_report import parse_quote, trim_padding

        return bytes(parse_quote(trim_padding(report)).body.mrconfigid[:32])

    def new_mesh_cert(self, req: pb.NewMeshCertRequest, context: grpc.ServicerContext) -> pb.NewMeshCertResponse:
        try:
            return self._identity(req)
        except Refused as exc:
            context.abort(exc.code, exc.message)
        except CoordinatorError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code, grpc.StatusCode.UNKNOWN), str(exc))
        raise AssertionError("unreachable")  # context.abort raises

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(fn: Any, req: Any, resp: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=req.FromString,
                                                       response_serializer=resp.SerializeToString)
        return grpc.method_handlers_generic_handler(SERVICE, {
            "GetNonce": unary(self.get_nonce, pb.GetNonceRequest, pb.GetNonceResponse),
            "NewMeshCert": unary(self.new_mesh_cert, pb.NewMeshCertRequest, pb.NewMeshCertResponse),
        })
