"""CoCo initdata: read the device (or a file), check the document, compute the bound digest.

Block layout (Kata ``prepareInitdataImage``, research kata-agent.md 2.7):
offset 0 the 8-byte magic ``initdata``, offset 8 a little-endian u64 length
of what follows, offset 16 gzip(TOML), zero-padded to 512-byte sectors. The
document is TOML ``{version = "0.1.0", algorithm = "sha256"|"sha384"|
"sha512", data = {name = "text", ...}}``. The digest is the algorithm over
the raw TOML bytes exactly as delivered (the spec: a re-encoding changes the
digest), truncated or zero-padded to the platform field: 32 bytes for SNP
HOSTDATA, 48 for TDX MRCONFIGID (kata-types ``adjust_digest``).

Every size has a limit and every malformation an InitdataError that names
it; a policy is only as trustworthy as the parser that found it.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tomllib

from agent.devices import resolve
from agent.errors import InitdataError
from agent.record import record

MAGIC = b"initdata"
HEADER_SIZE = 16
SECTOR = 512
MAX_COMPRESSED = 16 * 1024 * 1024
MAX_DOCUMENT = 32 * 1024 * 1024
MAX_ENTRIES = 256
VERSION = "0.1.0"
# kata-types SUPPORTED_ALGORITHMS; the IANA spellings the spec text uses are accepted too (Contrast does).
ALGORITHMS = {"sha256": "sha256", "sha384": "sha384", "sha512": "sha512",
              "sha-256": "sha256", "sha-384": "sha384", "sha-512": "sha512"}
DEVICE_BY_ID = "/dev/disk/by-id/virtio-initdata"
POLICY_KEY = "policy.rego"


@record(frozen=True)
class Initdata:
    """A parsed document and the raw bytes its digest covers."""

    raw: bytes
    algorithm: str
    version: str
    data: dict[str, str]
    source: str

    @property
    def digest(self) -> bytes:
        return hashlib.new(self.algorithm, self.raw).digest()

    def bound(self, size: int) -> bytes:
        """The digest as the platform field holds it: truncated, or zero-padded at the end."""
        return digest_for_field(self.digest, size)

    @property
    def policy(self) -> str | None:
        return self.data.get(POLICY_KEY)


def digest_for_field(digest: bytes, size: int) -> bytes:
    return digest[:size] if len(digest) >= size else digest + bytes(size - len(digest))


def parse_document(raw: bytes, source: str = "<bytes>") -> Initdata:
    """Check a TOML initdata document; the digest will cover ``raw`` byte for byte."""
    if len(raw) > MAX_DOCUMENT:
        raise InitdataError(f"{source}: initdata document is {len(raw)} bytes, more than {MAX_DOCUMENT}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InitdataError(f"{source}: initdata is not UTF-8 (byte {exc.start})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InitdataError(f"{source}: initdata is not valid TOML: {exc}") from None
    unknown = set(doc) - {"version", "algorithm", "data"}
    if unknown:
        raise InitdataError(f"{source}: initdata has unknown top-level keys: {', '.join(sorted(unknown))}")
    version = doc.get("version")
    if version != VERSION:
        raise InitdataError(f"{source}: initdata version is {version!r}, only {VERSION!r} is supported")
    algorithm = doc.get("algorithm")
    if not isinstance(algorithm, str) or algorithm.lower() not in ALGORITHMS:
        raise InitdataError(
            f"{source}: initdata algorithm {algorithm!r} is not supported (sha256, sha384, sha512)"
        )
    data = doc.get("data", {})
    if not isinstance(data, dict):
        raise InitdataError(f"{source}: initdata 'data' must be a table of strings")
    if len(data) > MAX_ENTRIES:
        raise InitdataError(f"{source}: initdata has {len(data)} data entries, more than {MAX_ENTRIES}")
    for key, value in data.items():
        if not isinstance(value, str):
            raise InitdataError(f"{source}: initdata data entry {key!r} must be a string, got {type(value).__name__}")
    return Initdata(raw=bytes(raw), algorithm=ALGORITHMS[algorithm.lower()], version=version,
                    data=dict(data), source=source)


def _gunzip(blob: bytes, source: str) -> bytes:
    """Exactly one gzip member, bounded output: a bomb or trailing bytes are errors."""
    import zlib  # only compressed initdata needs it (a shared library to load at start otherwise)

    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(blob, MAX_DOCUMENT + 1)
    except zlib.error as exc:
        raise InitdataError(f"{source}: initdata payload is not valid gzip: {exc}") from None
    if len(out) > MAX_DOCUMENT or d.unconsumed_tail:
        raise InitdataError(f"{source}: initdata document inflates beyond {MAX_DOCUMENT} bytes")
    if not d.eof:
        raise InitdataError(f"{source}: initdata gzip stream is truncated")
    if d.unused_data:
        raise InitdataError(f"{source}: {len(d.unused_data)} bytes follow the gzip stream inside the stated length")
    return out


def parse_block(blob: bytes, source: str = "<bytes>") -> Initdata:
    """Parse the block-device layout from its first bytes (padding after the payload is ignored)."""
    if len(blob) < HEADER_SIZE:
        raise InitdataError(f"{source}: {len(blob)} bytes is too short for the initdata header ({HEADER_SIZE})")
    if blob[:8] != MAGIC:
        raise InitdataError(f"{source}: no initdata magic at offset 0 (found {blob[:8]!r})")
    length = int.from_bytes(blob[8:16], "little")
    if length == 0:
        raise InitdataError(f"{source}: initdata length is 0")
    if length > MAX_COMPRESSED:
        raise InitdataError(f"{source}: initdata length {length} is more than {MAX_COMPRESSED}")
    if HEADER_SIZE + length > len(blob):
        raise InitdataError(
            f"{source}: initdata says {length} bytes follow the header but only {len(blob) - HEADER_SIZE} do"
        )
    return parse_document(_gunzip(blob[HEADER_SIZE : HEADER_SIZE + length], source), source)


def encode_block(document: bytes) -> bytes:
    """The device image Kata's runtime would attach for ``document`` (gzip with mtime 0, sector padded)."""
    import gzip

    payload = gzip.compress(document, mtime=0)
    blob = MAGIC + len(payload).to_bytes(8, "little") + payload
    return blob + bytes(-len(blob) % SECTOR)


# The writer beside the reader: the host packs initdata with it and the guest's warm-up renders one.
TRIPLE_QUOTE = "'" * 3


def _toml_literal_ok(text: str) -> bool:
    """Whether a TOML multi-line literal string holds ``text`` exactly: no triple quote inside, no
    control character but tab and newline (a bare CR would not survive), no quote at the end (it
    would merge with the closing delimiter)."""
    return (TRIPLE_QUOTE not in text and not text.endswith("'")
            and not any((ch < " " and ch not in "\t\n") or ch == "\x7f" for ch in text))


def _toml_string(text: str, multiline: bool = False) -> str:
    """A TOML string that round-trips ``text``.

    Policies go in a multi-line literal string (three single quotes, as CoCo's initdata examples
    write them): a reader copies it with one ``find``, where a basic string with escapes is decoded
    character by character (a 70 KB policy: ~1 ms vs ~9 ms in tomllib, on the agent's start-up
    path). Text a literal string cannot hold falls back to a basic string with escapes.
    """
    if multiline and _toml_literal_ok(text):
        return TRIPLE_QUOTE + "\n" + text + TRIPLE_QUOTE
    out = []
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render_document(data: dict[str, str], algorithm: str = "sha256") -> bytes:
    """The initdata TOML (keys sorted, so the same inputs give the same bytes and digest)."""
    lines = [f'algorithm = "{algorithm}"', 'version = "0.1.0"', "", "[data]"]
    lines += [f"{_toml_string(k)} = {_toml_string(v, multiline=True)}" for k, v in sorted(data.items())]
    return ("\n".join(lines) + "\n").encode()


def read_path(path: str, layout: str = "auto") -> Initdata:
    """A block device or file in the block layout, or a plain TOML file (tests, hand-run agents).

    ``layout`` is ``block``, ``toml`` or ``auto`` (block devices and files
    starting with the magic are block layout, other regular files TOML).
    """
    if layout not in ("auto", "block", "toml"):
        raise InitdataError(f"unknown initdata layout {layout!r} (auto, block, toml)")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InitdataError(f"cannot open initdata {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise InitdataError(f"initdata {path} is neither a regular file nor a block device")
        head = os.pread(fd, HEADER_SIZE, 0)
        if not head:
            raise InitdataError(f"initdata {path} is empty")
        if layout == "block" or (layout == "auto" and (head[:8] == MAGIC or stat.S_ISBLK(st.st_mode))):
            if len(head) < HEADER_SIZE or head[:8] != MAGIC:
                return parse_block(head, path)  # raises the precise header error
            length = int.from_bytes(head[8:16], "little")
            want = HEADER_SIZE + min(length, MAX_COMPRESSED + 1)
            blob = _pread_all(fd, want)
            return parse_block(blob, path)
        if st.st_size > MAX_DOCUMENT:
            raise InitdataError(f"initdata file {path} is {st.st_size} bytes, more than {MAX_DOCUMENT}")
        return parse_document(_pread_all(fd, MAX_DOCUMENT + 1), path)
    except OSError as exc:
        raise InitdataError(f"reading initdata {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _pread_all(fd: int, size: int) -> bytes:
    chunks = []
    pos = 0
    while pos < size:
        chunk = os.pread(fd, min(size - pos, 1 << 20), pos)
        if not chunk:
            break
        chunks.append(chunk)
        pos += len(chunk)
    return b"".join(chunks)


def discover() -> str:
    """Where the initdata device is: the virtio serial name Contrast uses, else the first disk with the magic."""
    by_id = resolve(DEVICE_BY_ID)  # no udev in the image: the serial may only be in sysfs
    if os.path.exists(by_id):
        return by_id
    for dev in sorted(f"/dev/{name}" for name in os.listdir("/dev") if name.startswith(("vd", "sd"))):
        if dev[-1].isdigit():
            continue  # partitions never hold initdata
        try:
            fd = os.open(dev, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if os.pread(fd, 8, 0) == MAGIC:
                    return dev
            finally:
                os.close(fd)
        except OSError:
            continue
    raise InitdataError(
        f"no initdata device: {DEVICE_BY_ID} is absent and no /dev/vd* or /dev/sd* starts with 'initdata'"
    )
