"""The user API's client: an aTLS connection to the coordinator, checked by the caller before anything is
sent (``check(evidence, nonce, public_key_der)`` -> a verdict with ``ok``), and a gRPC channel through it
(the reverse of front.py: an abstract unix socket of the client's own, piped to the TLS stream).

``verifier_check(reference_values, ...)`` is the check a relying party runs: cocoon's verifier over the
certificate's evidence, REPORT_DATA bound to our nonce and the certificate's key, and, when given, the
coordinator's own initdata digest (so only the coordinator pod the CLI expects is talked to).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Callable
from typing import Any

import grpc

from coordinator.front import MAX_MESSAGE, pipe
from coordinator.protocols import userapi_pb2 as pb
from coordinator.userapi import SERVICE


class CoordinatorClientError(Exception):
    """The coordinator could not be reached, did not attest, or refused (``code``: the gRPC status)."""

    def __init__(self, message: str, code: Any = None) -> None:
        super().__init__(message)
        self.code = code


def verifier_check(reference_values: Any, *, initdata_digest: bytes | None = None,
                   trust_sim: str | None = None) -> Callable[[Any, bytes, bytes], Any]:
    from verifier.api import verify

    def check(evidence: Any, nonce: bytes, public_key: bytes) -> Any:
        return verify(evidence.kind, evidence.report, evidence.aux, reference_values, initdata_digest=initdata_digest,
                      nonce=nonce, public_key=public_key, trust_sim=trust_sim, tee=evidence.tee)

    return check


class CoordinatorClient:
    def __init__(self, address: str, check: Callable[[Any, bytes, bytes], Any], timeout: float = 30.0) -> None:
        from agent.atls import AtlsError, connect_verified

        self.timeout = timeout
        try:
            stream, self.verdict = connect_verified(f"tcp://{address}", check, timeout=timeout)
        except AtlsError as exc:
            raise CoordinatorClientError(str(exc)) from None
        except OSError as exc:
            raise CoordinatorClientError(f"cannot reach the coordinator at {address}: {exc.strerror or exc}") from None
        # an abstract unix socket: nothing on any file system to clean up, whatever happens to this process
        name = f"cocoon-coord-{os.getpid()}-{secrets.token_hex(8)}"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind("\0" + name)
        self.listener.listen(1)

        def bridge() -> None:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                stream.close()
                return
            pipe(conn, stream)  # one connection: the attested one

        threading.Thread(target=bridge, daemon=True, name="coordinator bridge").start()
        self.channel = grpc.insecure_channel(f"unix-abstract:{name}", options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)])

    def close(self) -> None:
        self.channel.close()
        self.listener.close()

    def __enter__(self) -> CoordinatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: Any, response: Any, service: str = SERVICE) -> Any:
        stub = self.channel.unary_unary(f"/{service}/{method}", request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=response.FromString)
        try:
            return stub(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
            raise CoordinatorClientError(f"{method}: {getattr(code, 'name', code)}: {details}", code) from None

    def set_manifest(self, manifest: bytes, policies: list[bytes], owner_key: Any = None) -> pb.SetManifestResponse:
        """``owner_key``: the workload owner's private key (ECDSA or RSA), needed for every update."""
        from cryptography.hazmat.primitives import serialization

        from coordinator.userapi import sign

        req = pb.SetManifestRequest(Manifest=manifest, Policies=policies)
        if owner_key is not None:
            req.CallerPublicKey = owner_key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            req.Signature = sign(owner_key, manifest)
        out: pb.SetManifestResponse = self._call("SetManifest", req, pb.SetManifestResponse)
        return out

    def get_manifests(self) -> pb.GetManifestsResponse:
        out: pb.GetManifestsResponse = self._call("GetManifests", pb.GetManifestsRequest(), pb.GetManifestsResponse)
        return out

    def recover(self, seed: bytes, salt: bytes, owner_key: Any) -> None:
        from cryptography.hazmat.primitives import serialization

        from coordinator.userapi import sign

        req = pb.RecoverRequest(Seed=seed, Salt=salt, CallerPublicKey=owner_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
            Signature=sign(owner_key, seed + salt))
        self._call("Recover", req, pb.RecoverResponse)


def accept_any(evidence: Any, nonce: bytes, public_key: bytes) -> Any:
    """For the mesh API, as Contrast's initializer: the coordinator is not judged by its evidence here (the
    pod trusts what it gets through the root CA it is given, which a relying party verified)."""
    from types import SimpleNamespace

    return SimpleNamespace(ok=True)
