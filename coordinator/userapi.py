"""The user API's handlers: each one checks the request (sizes, the caller's signature), acts through the
Authority (authority.py decides everything Contrast's coordinator decides) and answers; a refusal is the
Authority's CoordinatorError mapped to its gRPC status, with its message. No state changes on a refusal.

A caller is known by the SHA-256 of its public key as Contrast computes it (seed.public_key_digest); since
cocoon's aTLS is one-way, the key and a signature over the request's content come in the request
(userapi.proto fields 100, 101): an update needs a signature over SHA-256(Manifest) by a key in the
current manifest's WorkloadOwnerKeyDigests; Recover one over SHA-256(Seed || Salt) by a seed-share owner.
"""

from __future__ import annotations

import hashlib
from typing import Any

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from coordinator.authority import Authority, CoordinatorError
from coordinator.protocols import userapi_pb2 as pb
from coordinator.seed import public_key_digest

SERVICE = "edgelesssys.contrast.userapi.UserAPI"
MAX_MESSAGE = 64 << 20  # a manifest and its 100s of policies; gRPC refuses more before any handler runs
MAX_KEY = 16 << 10


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _caller(public_key: bytes, signature: bytes, content: bytes) -> str | None:
    """The digest of the key that signed ``content``; None when no key was given; Refused when it did not."""
    if not public_key:
        return None
    if len(public_key) > MAX_KEY or len(signature) > MAX_KEY:
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "the caller's key or signature is too large")
    try:
        key = serialization.load_der_public_key(public_key)
    except (ValueError, TypeError):
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "CallerPublicKey is not a DER SubjectPublicKeyInfo") from None
    digest = hashlib.sha256(content).digest()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, digest, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, digest, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "CallerPublicKey is neither ECDSA nor RSA")
    except InvalidSignature:
        raise Refused(grpc.StatusCode.PERMISSION_DENIED, "the request's signature does not verify with "
                                                        "CallerPublicKey") from None
    return public_key_digest(key)


def sign(private_key: Any, content: bytes) -> bytes:
    """The client's side of _caller."""
    digest = hashlib.sha256(content).digest()
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return bytes(private_key.sign(digest, ec.ECDSA(hashes.SHA256())))
    return bytes(private_key.sign(digest, padding.PKCS1v15(), hashes.SHA256()))


class UserApi:
    def __init__(self, authority: Authority) -> None:
        self.authority = authority

    def _run(self, fn: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn()
        except Refused as exc:
            context.abort(exc.code, exc.message)
        except CoordinatorError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code, grpc.StatusCode.UNKNOWN), str(exc))

    def set_manifest(self, req: pb.SetManifestRequest, context: grpc.ServicerContext) -> pb.SetManifestResponse:
        def act() -> pb.SetManifestResponse:
            signer = _caller(req.CallerPublicKey, req.Signature, req.Manifest)
            result = self.authority.set_manifest(req.Manifest, list(req.Policies), signer)
            out = pb.SetManifestResponse(RootCA=result.root_ca_pem, MeshCA=result.mesh_ca_pem)
            if result.seed_shares is not None:
                out.SeedSharesDoc.salt = result.seed_shares.salt
                for share in result.seed_shares.shares:
                    out.SeedSharesDoc.SeedShares.add(PublicKey=share.public_key, EncryptedSeed=share.encrypted_seed)
            return out
        return self._run(act, context)  # type: ignore[no-any-return]

    def get_manifests(self, req: pb.GetManifestsRequest, context: grpc.ServicerContext) -> pb.GetManifestsResponse:
        def act() -> pb.GetManifestsResponse:
            m = self.authority.get_manifests()
            return pb.GetManifestsResponse(Manifests=m.manifests, Policies=m.policies, RootCA=m.root_ca_pem,
                                           MeshCA=m.mesh_ca_pem, LatestTransition=pb.LatestTransition(
                                               TransitionHash=m.latest_transition[0],
                                               Signature=m.latest_transition[1]))
        return self._run(act, context)  # type: ignore[no-any-return]

    def recover(self, req: pb.RecoverRequest, context: grpc.ServicerContext) -> pb.RecoverResponse:
        def act() -> pb.RecoverResponse:
            caller = _caller(req.CallerPublicKey, req.Signature, req.Seed + req.Salt)
            if caller is None:
                raise Refused(grpc.StatusCode.PERMISSION_DENIED, "Recover needs a seed-share owner's key and "
                                                                 "signature (CallerPublicKey, Signature)")
            self.authority.recover(req.Seed, req.Salt, caller)
            return pb.RecoverResponse()
        return self._run(act, context)  # type: ignore[no-any-return]

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(fn: Any, req: Any, resp: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=req.FromString,
                                                       response_serializer=resp.SerializeToString)
        return grpc.method_handlers_generic_handler(SERVICE, {
            "SetManifest": unary(self.set_manifest, pb.SetManifestRequest, pb.SetManifestResponse),
            "GetManifests": unary(self.get_manifests, pb.GetManifestsRequest, pb.GetManifestsResponse),
            "Recover": unary(self.recover, pb.RecoverRequest, pb.RecoverResponse),
        })
