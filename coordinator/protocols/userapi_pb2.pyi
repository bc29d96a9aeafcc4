from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SetManifestRequest(_message.Message):
    __slots__ = ("Manifest", "Policies", "CallerPublicKey", "Signature")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    CALLERPUBLICKEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    Manifest: bytes
    Policies: _containers.RepeatedScalarFieldContainer[bytes]
    CallerPublicKey: bytes
    Signature: bytes
    def __init__(self, Manifest: _Optional[bytes] = ..., Policies: _Optional[_Iterable[bytes]] = ..., CallerPublicKey: _Optional[bytes] = ..., Signature: _Optional[bytes] = ...) -> None: ...

class SeedShare(_message.Message):
    __slots__ = ("PublicKey", "EncryptedSeed")
    PUBLICKEY_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTEDSEED_FIELD_NUMBER: _ClassVar[int]
    PublicKey: str
    EncryptedSeed: bytes
    def __init__(self, PublicKey: _Optional[str] = ..., EncryptedSeed: _Optional[bytes] = ...) -> None: ...

class SeedShareDocument(_message.Message):
    __slots__ = ("SeedShares", "salt")
    SEEDSHARES_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    SeedShares: _containers.RepeatedCompositeFieldContainer[SeedShare]
    salt: bytes
    def __init__(self, SeedShares: _Optional[_Iterable[_Union[SeedShare, _Mapping]]] = ..., salt: _Optional[bytes] = ...) -> None: ...

class SetManifestResponse(_message.Message):
    __slots__ = ("RootCA", "MeshCA", "SeedSharesDoc")
    ROOTCA_FIELD_NUMBER: _ClassVar[int]
    MESHCA_FIELD_NUMBER: _ClassVar[int]
    SEEDSHARESDOC_FIELD_NUMBER: _ClassVar[int]
    RootCA: bytes
    MeshCA: bytes
    SeedSharesDoc: SeedShareDocument
    def __init__(self, RootCA: _Optional[bytes] = ..., MeshCA: _Optional[bytes] = ..., SeedSharesDoc: _Optional[_Union[SeedShareDocument, _Mapping]] = ...) -> None: ...

class GetManifestsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LatestTransition(_message.Message):
    __slots__ = ("TransitionHash", "Signature")
    TRANSITIONHASH_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    TransitionHash: bytes
    Signature: bytes
    def __init__(self, TransitionHash: _Optional[bytes] = ..., Signature: _Optional[bytes] = ...) -> None: ...

class GetManifestsResponse(_message.Message):
    __slots__ = ("Manifests", "Policies", "RootCA", "MeshCA", "LatestTransition")
    MANIFESTS_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    ROOTCA_FIELD_NUMBER: _ClassVar[int]
    MESHCA_FIELD_NUMBER: _ClassVar[int]
    LATESTTRANSITION_FIELD_NUMBER: _ClassVar[int]
    Manifests: _containers.RepeatedScalarFieldContainer[bytes]
    Policies: _containers.RepeatedScalarFieldContainer[bytes]
    RootCA: bytes
    MeshCA: bytes
    LatestTransition: LatestTransition
    def __init__(self, Manifests: _Optional[_Iterable[bytes]] = ..., Policies: _Optional[_Iterable[bytes]] = ..., RootCA: _Optional[bytes] = ..., MeshCA: _Optional[bytes] = ..., LatestTransition: _Optional[_Union[LatestTransition, _Mapping]] = ...) -> None: ...

class RecoverRequest(_message.Message):
    __slots__ = ("Seed", "Salt", "Force", "CallerPublicKey", "Signature")
    SEED_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    CALLERPUBLICKEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    Seed: bytes
    Salt: bytes
    Force: bool
    CallerPublicKey: bytes
    Signature: bytes
    def __init__(self, Seed: _Optional[bytes] = ..., Salt: _Optional[bytes] = ..., Force: _Optional[bool] = ..., CallerPublicKey: _Optional[bytes] = ..., Signature: _Optional[bytes] = ...) -> None: ...

class RecoverResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
