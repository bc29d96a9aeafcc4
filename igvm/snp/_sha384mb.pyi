# Types of the C extension _sha384mb.c (built in place by the editable install; absent without a compiler).
LANES: int

def sha384_pages(data: bytes | memoryview, /) -> bytes: ...
