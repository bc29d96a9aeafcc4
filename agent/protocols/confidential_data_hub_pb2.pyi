from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class UnsealSecretInput(_message.Message):
    __slots__ = ("secret",)
    SECRET_FIELD_NUMBER: _ClassVar[int]
    secret: bytes
    def __init__(self, secret: _Optional[bytes] = ...) -> None: ...

class UnsealSecretOutput(_message.Message):
    __slots__ = ("plaintext",)
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    plaintext: bytes
    def __init__(self, plaintext: _Optional[bytes] = ...) -> None: ...

class GetResourceRequest(_message.Message):
    __slots__ = ("ResourcePath",)
    RESOURCEPATH_FIELD_NUMBER: _ClassVar[int]
    ResourcePath: str
    def __init__(self, ResourcePath: _Optional[str] = ...) -> None: ...

class GetResourceResponse(_message.Message):
    __slots__ = ("Resource",)
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    Resource: bytes
    def __init__(self, Resource: _Optional[bytes] = ...) -> None: ...
