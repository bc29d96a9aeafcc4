from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class GetEvidenceRequest(_message.Message):
    __slots__ = ("nonce", "public_key")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    nonce: bytes
    public_key: bytes
    def __init__(self, nonce: _Optional[bytes] = ..., public_key: _Optional[bytes] = ...) -> None: ...

class GetEvidenceResponse(_message.Message):
    __slots__ = ("kind", "report", "aux", "tee", "report_data")
    KIND_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    AUX_FIELD_NUMBER: _ClassVar[int]
    TEE_FIELD_NUMBER: _ClassVar[int]
    REPORT_DATA_FIELD_NUMBER: _ClassVar[int]
    kind: str
    report: bytes
    aux: bytes
    tee: str
    report_data: bytes
    def __init__(self, kind: _Optional[str] = ..., report: _Optional[bytes] = ..., aux: _Optional[bytes] = ..., tee: _Optional[str] = ..., report_data: _Optional[bytes] = ...) -> None: ...
