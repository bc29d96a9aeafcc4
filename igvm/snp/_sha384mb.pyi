# Types of the C extension built from _sha384mb.c (make setup); the type checker cannot read the .so.

#: pages hashed per pass: 8 with AVX-512, 1 where the CPU lacks it
LANES: int

def sha384_pages(data: bytes | memoryview, /) -> bytes:
    """The SHA-384 digests (48 bytes each, concatenated) of the 4 KiB pages of ``data``."""
