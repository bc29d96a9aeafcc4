"""A TPM 2.0 client for the az-snp-vtpm provider: the few commands it needs, marshalled here.

Why not a library: tpm2-pytss wraps libtss2 (a C library the guest image does not carry) and ships no
manylinux wheel, and the guest takes only those. What the provider needs is small: read an NV index's
public area and its data in chunks, define and write one NV index, read and extend SHA-256 PCRs, and ask
the attestation key for a quote, every authorization an empty password (TPM_RS_PW), as the paravisor
sets them up. So the marshalling is written out, strict both ways: a response must be exactly the
shape its command answers (every byte accounted for), else TpmError; a TPM response code becomes a
TpmError that names it.

Wire format from the TPM 2.0 Library spec, all integers big-endian: Part 1 §18 (command and response
header: tag u16, size u32, code u32; handles; with sessions, parameterSize u32 after the response
handles and the authorization area after the parameters), Part 2 (structures, TPM_RC layout §6.6, TPMA_NV
§13.4), Part 3 (each command's handles and parameters). Command codes and constants are Part 2 §6.

Transports: the kernel's resource manager /dev/tpmrm0 (one write of the whole command, one read of the
whole response) in the guest, or swtpm's unix socket (the same bytes as a stream) in tests.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import time
from collections.abc import Iterable, Sequence
from typing import Protocol

from agent.errors import TeeError
from agent.record import record

# Part 2 §6.9 structure tags, §6.5 command codes, §7 handles, §6.3 algorithms
TPM_ST_NO_SESSIONS = 0x8001
TPM_ST_SESSIONS = 0x8002
TPM_ST_ATTEST_QUOTE = 0x8018
TPM_GENERATED_VALUE = 0xFF544347
CC_NV_UNDEFINE_SPACE = 0x0000_0122
CC_NV_DEFINE_SPACE = 0x0000_012A
CC_NV_WRITE = 0x0000_0137
CC_NV_READ = 0x0000_014E
CC_QUOTE = 0x0000_0158
CC_NV_READ_PUBLIC = 0x0000_0169
CC_GET_CAPABILITY = 0x0000_017A
CC_PCR_READ = 0x0000_017E
CC_PCR_EXTEND = 0x0000_0182
TPM_RH_OWNER = 0x4000_0001
TPM_RS_PW = 0x4000_0009
TPM_RH_PLATFORM = 0x4000_000C
TPM_ALG_RSASSA = 0x0014
TPM_ALG_SHA256 = 0x000B
TPM_ALG_NULL = 0x0010
TPM_CAP_TPM_PROPERTIES = 6
TPM_PT_NV_BUFFER_MAX = 0x100 + 44  # PT_FIXED + 44
# TPMA_NV bits (Part 2 §13.4)
NV_PPWRITE = 1 << 0
NV_OWNERWRITE = 1 << 1
NV_PPREAD = 1 << 16
NV_OWNERREAD = 1 << 17
NV_AUTHREAD = 1 << 18
NV_NO_DA = 1 << 25
NV_PLATFORMCREATE = 1 << 30

HEADER = 10
MAX_RESPONSE = 4096  # the kernel's TPM_BUFSIZE, and TPM_PT_MAX_RESPONSE_SIZE of swtpm and Azure's vTPM
PCR_COUNT = 24
SHA256_SIZE = 32
MAX_NV_SIZE = 1 << 16  # NV index sizes are u16 (TPMS_NV_PUBLIC.dataSize)

# Part 2 §6.6.3 TPM_RC names, for the messages (format-zero and warning codes by value, format-one by number)
_RC_VER1 = {0x00: "INITIALIZE", 0x01: "FAILURE", 0x03: "SEQUENCE", 0x19: "HMAC", 0x20: "DISABLED",
            0x21: "EXCLUSIVE", 0x24: "AUTH_TYPE", 0x25: "AUTH_MISSING", 0x26: "POLICY", 0x27: "PCR",
            0x28: "PCR_CHANGED", 0x2D: "UPGRADE", 0x2E: "TOO_MANY_CONTEXTS", 0x2F: "AUTH_UNAVAILABLE",
            0x30: "REBOOT", 0x31: "UNBALANCED", 0x42: "COMMAND_SIZE", 0x43: "COMMAND_CODE", 0x44: "AUTHSIZE",
            0x45: "AUTH_CONTEXT", 0x46: "NV_RANGE", 0x47: "NV_SIZE", 0x48: "NV_LOCKED",
            0x49: "NV_AUTHORIZATION", 0x4A: "NV_UNINITIALIZED", 0x4B: "NV_SPACE", 0x4C: "NV_DEFINED",
            0x50: "BAD_CONTEXT", 0x51: "CPHASH", 0x52: "PARENT", 0x53: "NEEDS_TEST", 0x54: "NO_RESULT",
            0x55: "SENSITIVE"}
_RC_FMT1 = {0x01: "ASYMMETRIC", 0x02: "ATTRIBUTES", 0x03: "HASH", 0x04: "VALUE", 0x05: "HIERARCHY",
            0x07: "KEY_SIZE", 0x08: "MGF", 0x09: "MODE", 0x0A: "TYPE", 0x0B: "HANDLE", 0x0C: "KDF",
            0x0D: "RANGE", 0x0E: "AUTH_FAIL", 0x0F: "NONCE", 0x10: "PP", 0x12: "SCHEME", 0x15: "SIZE",
            0x16: "SYMMETRIC", 0x17: "TAG", 0x18: "SELECTOR", 0x1A: "INSUFFICIENT", 0x1B: "SIGNATURE",
            0x1C: "KEY", 0x1D: "POLICY_FAIL", 0x1F: "INTEGRITY", 0x20: "TICKET", 0x21: "RESERVED_BITS",
            0x22: "BAD_AUTH", 0x23: "EXPIRED", 0x24: "POLICY_CC", 0x25: "BINDING", 0x26: "CURVE",
            0x27: "ECC_POINT"}
_RC_WARN = {0x01: "CONTEXT_GAP", 0x02: "OBJECT_MEMORY", 0x03: "SESSION_MEMORY", 0x04: "MEMORY",
            0x05: "SESSION_HANDLES", 0x06: "OBJECT_HANDLES", 0x07: "LOCALITY", 0x08: "YIELDED",
            0x09: "CANCELED", 0x0A: "TESTING", 0x20: "NV_RATE", 0x21: "LOCKOUT", 0x22: "RETRY",
            0x23: "NV_UNAVAILABLE"}
RC_HANDLE = 0x08B  # TPM_RC_HANDLE, format one: what NV_ReadPublic answers for an index nobody defined
# "try again" warnings: the TPM did not start the command (an RSA key's first use on swtpm answers RETRY).
# The kernel retries RETRY itself for its own commands, ESYS retries all three; so does Tpm.call, bounded.
RETRY_CODES = frozenset({0x922, 0x908, 0x90A})  # TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING
RETRIES = 6


class TpmError(TeeError):
    """The TPM refused a command (``rc`` is its response code), or answered with bytes that do not fit."""

    def __init__(self, message: str, rc: int | None = None) -> None:
        super().__init__(message)
        self.rc = rc

    @property
    def code(self) -> int | None:
        """The response code without the handle/parameter/session number (format one), for comparisons."""
        return None if self.rc is None else rc_code(self.rc)


class PcrsChanged(TpmError):
    """A PCR was extended between two PCR_Read commands of one reading (pcrUpdateCounter moved)."""


def rc_code(rc: int) -> int:
    """Format-one codes carry which handle, parameter or session failed in bits 6-11; this drops them."""
    return (rc & 0x0BF) if rc & 0x080 else rc


def rc_text(rc: int) -> str:
    """TPM_RC_<NAME> and, for format one, which handle/parameter/session (Part 2 §6.6.2)."""
    if rc & 0x080:  # format one: bits 0-5 the error, bit 6 parameter, else bit 11 session, else handle
        name = _RC_FMT1.get(rc & 0x3F, f"{rc & 0x3F:#x}")
        n = (rc >> 8) & 0xF
        where = f"parameter {n}" if rc & 0x40 else (f"session {n & 7}" if n & 8 else f"handle {n}")
        return f"TPM_RC_{name} ({where}, {rc:#x})"
    if rc & 0x100:  # format zero, TPM 2.0: bit 11 warning, bit 10 vendor
        if rc & 0x400:
            return f"vendor-defined response code {rc:#x}"
        table = _RC_WARN if rc & 0x800 else _RC_VER1
        return f"TPM_RC_{table.get(rc & 0x7F, hex(rc & 0x7F))} ({rc:#x})"
    return f"TPM 1.2 response code {rc:#x}"


class Transport(Protocol):
    """One command in, its whole response out; the TPM decides nothing here."""

    def transact(self, command: bytes) -> bytes: ...

    def close(self) -> None: ...


class DeviceTransport:
    """The kernel's TPM character device: /dev/tpmrm0 (the resource manager) in the guest."""

    def __init__(self, path: str = "/dev/tpmrm0") -> None:
        self.path = path
        try:
            self.fd: int | None = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise TpmError(f"cannot open the TPM {path}: {exc.strerror or exc}") from None

    def transact(self, command: bytes) -> bytes:
        if self.fd is None:
            raise TpmError(f"the TPM {self.path} is closed")
        try:
            if os.write(self.fd, command) != len(command):
                raise TpmError(f"the TPM {self.path} took a partial command")
            return os.read(self.fd, MAX_RESPONSE + 1)
        except OSError as exc:
            raise TpmError(f"TPM {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class SocketTransport:
    """swtpm's data channel (``--server type=unixio,path=...``): the command and response bytes as a stream."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.sock: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        except OSError as exc:
            self.close()
            raise TpmError(f"cannot reach the TPM at {path}: {exc.strerror or exc}") from None

    def _read(self, size: int) -> bytes:
        assert self.sock is not None
        out = b""
        while len(out) < size:  # each pass reads at least one byte or ends: bounded by size
            chunk = self.sock.recv(size - len(out))
            if not chunk:
                raise TpmError(f"the TPM at {self.path} closed the connection mid-response")
            out += chunk
        return out

    def transact(self, command: bytes) -> bytes:
        if self.sock is None:
            raise TpmError(f"the TPM at {self.path} is closed")
        try:
            self.sock.sendall(command)
            head = self._read(HEADER)
            size = int.from_bytes(head[2:6], "big")
            if not HEADER <= size <= MAX_RESPONSE:
                raise TpmError(f"the TPM at {self.path} announced a {size}-byte response")
            return head + self._read(size - HEADER)
        except OSError as exc:
            raise TpmError(f"TPM at {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Reader:
    """Big-endian reads that must stay inside the buffer; ``done`` insists every byte was read."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.at, self.what = data, 0, what

    def take(self, size: int, field: str) -> bytes:
        if self.at + size > len(self.data):
            raise TpmError(f"{self.what} ends inside its {field} (byte {self.at} of {len(self.data)})")
        out = self.data[self.at:self.at + size]
        self.at += size
        return out

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        return int.from_bytes(self.take(2, field), "big")

    def u32(self, field: str) -> int:
        return int.from_bytes(self.take(4, field), "big")

    def u64(self, field: str) -> int:
        return int.from_bytes(self.take(8, field), "big")

    def tpm2b(self, field: str) -> bytes:
        return self.take(self.u16(f"{field} size"), field)

    def done(self) -> None:
        if self.at != len(self.data):
            raise TpmError(f"{self.what} has {len(self.data) - self.at} bytes after its last field")


def tpm2b(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise TpmError(f"{len(data)} bytes do not fit a TPM2B")
    return struct.pack(">H", len(data)) + data


def pcr_selection(indices: Iterable[int], bank: int = TPM_ALG_SHA256) -> bytes:
    """TPML_PCR_SELECTION of one bank: count 1, hash, sizeofSelect 3, bit i of byte j selects PCR 8j+i."""
    bitmap = bytearray(3)
    for i in indices:
        if not 0 <= i < PCR_COUNT:
            raise TpmError(f"PCR {i} is not one of 0 to {PCR_COUNT - 1}")
        bitmap[i // 8] |= 1 << (i % 8)
    return struct.pack(">IHB", 1, bank, 3) + bytes(bitmap)


def parse_selection(r: Reader) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """TPML_PCR_SELECTION as (bank, selected PCR indices ascending) pairs."""
    count = r.u32("pcrSelect count")
    if count > 16:  # HASH_COUNT: no TPM has more banks
        raise TpmError(f"{r.what} selects {count} PCR banks")
    banks = []
    for _ in range(count):
        bank, size = r.u16("pcrSelect hash"), r.u8("sizeofSelect")
        bitmap = r.take(size, "pcrSelect bitmap")
        banks.append((bank, tuple(8 * j + i for j, byte in enumerate(bitmap) for i in range(8) if byte >> i & 1)))
    return tuple(banks)


def password_sessions(count: int) -> bytes:
    """The authorization area: ``count`` TPMS_AUTH_COMMAND of TPM_RS_PW with an empty password."""
    one = struct.pack(">IHBH", TPM_RS_PW, 0, 0, 0)  # handle, nonce (empty), attributes, hmac (empty)
    return struct.pack(">I", len(one) * count) + one * count


def build_command(cc: int, handles: Sequence[int] = (), params: bytes = b"", sessions: int = 0) -> bytes:
    body = b"".join(struct.pack(">I", h) for h in handles)
    body += password_sessions(sessions) if sessions else b""
    body += params
    tag = TPM_ST_SESSIONS if sessions else TPM_ST_NO_SESSIONS
    return struct.pack(">HII", tag, HEADER + len(body), cc) + body


def parse_response(raw: bytes, what: str, handles: int = 0, sessions: int = 0) -> tuple[tuple[int, ...], bytes]:
    """(response handles, parameters) of a successful response; TpmError naming the code otherwise.

    ``sessions`` is how many authorizations the command carried: the response then has parameterSize and
    one TPMS_AUTH_RESPONSE (nonce, attributes, hmac) per session after the parameters."""
    if len(raw) < HEADER or len(raw) > MAX_RESPONSE:
        raise TpmError(f"{what}: the TPM answered {len(raw)} bytes, not a response")
    tag, size, rc = struct.unpack_from(">HII", raw)
    if size != len(raw):
        raise TpmError(f"{what}: the response says it is {size} bytes but is {len(raw)}")
    if rc != 0:
        if tag != TPM_ST_NO_SESSIONS or size != HEADER:
            raise TpmError(f"{what}: an error response ({rc:#x}) with a body or tag {tag:#x}", rc)
        raise TpmError(f"{what}: the TPM refused: {rc_text(rc)}", rc)
    want = TPM_ST_SESSIONS if sessions else TPM_ST_NO_SESSIONS
    if tag != want:
        raise TpmError(f"{what}: response tag {tag:#x}, expected {want:#x}")
    r = Reader(raw[HEADER:], f"{what} response")
    out = tuple(r.u32("handle") for _ in range(handles))
    if not sessions:
        return out, r.take(len(r.data) - r.at, "parameters")
    params = r.take(r.u32("parameterSize"), "parameters")
    for _ in range(sessions):
        r.tpm2b("session nonce")
        r.u8("session attributes")
        r.tpm2b("session hmac")
    r.done()
    return out, params


@record(frozen=True)
class NvPublic:
    """TPMS_NV_PUBLIC: what NV_ReadPublic says about an index (its name comes with it)."""

    index: int
    name_alg: int
    attributes: int
    auth_policy: bytes
    size: int

    def marshal(self) -> bytes:
        return tpm2b(struct.pack(">IHI", self.index, self.name_alg, self.attributes) + tpm2b(self.auth_policy)
                     + struct.pack(">H", self.size))


def parse_nv_public(params: bytes) -> tuple[NvPublic, bytes]:
    """NV_ReadPublic's parameters: TPM2B_NV_PUBLIC, then TPM2B_NAME."""
    r = Reader(params, "NV_ReadPublic")
    inner = Reader(r.tpm2b("nvPublic"), "TPMS_NV_PUBLIC")
    public = NvPublic(inner.u32("nvIndex"), inner.u16("nameAlg"), inner.u32("attributes"),
                      inner.tpm2b("authPolicy"), inner.u16("dataSize"))
    inner.done()
    name = r.tpm2b("nvName")
    r.done()
    return public, name


@record(frozen=True)
class Attest:
    """The parts of a quote's TPMS_ATTEST the provider checks before sending it."""

    extra_data: bytes
    selection: tuple[tuple[int, tuple[int, ...]], ...]
    pcr_digest: bytes


def parse_attest(message: bytes) -> Attest:
    """TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE (Part 2 §10.12.12), every byte accounted for."""
    r = Reader(message, "TPMS_ATTEST")
    magic, kind = r.u32("magic"), r.u16("type")
    if magic != TPM_GENERATED_VALUE or kind != TPM_ST_ATTEST_QUOTE:
        raise TpmError(f"the TPM's attestation is magic {magic:#x} type {kind:#x}, not a quote")
    r.tpm2b("qualifiedSigner")
    extra = r.tpm2b("extraData")
    r.take(8 + 4 + 4 + 1, "clockInfo")
    r.u64("firmwareVersion")
    selection = parse_selection(r)
    digest = r.tpm2b("pcrDigest")
    r.done()
    return Attest(extra, selection, digest)


def parse_quote(params: bytes) -> tuple[bytes, bytes]:
    """Quote's parameters: TPM2B_ATTEST and a TPMT_SIGNATURE, which must be RSASSA over SHA-256 (the
    scheme of Azure's AK, the only one the verifier takes); (message, raw signature)."""
    r = Reader(params, "Quote")
    message = r.tpm2b("quoted")
    alg = r.u16("sigAlg")
    if alg != TPM_ALG_RSASSA:
        raise TpmError(f"the quote is signed with algorithm {alg:#06x}, not RSASSA ({TPM_ALG_RSASSA:#06x}): "
                       "the attestation key is not an RSA signing key")
    digest = r.u16("signature hash")
    if digest != TPM_ALG_SHA256:
        raise TpmError(f"the quote's signature hashes with {digest:#06x}, not SHA-256")
    signature = r.tpm2b("signature")
    r.done()
    return message, signature


def parse_pcr_read(params: bytes) -> tuple[int, tuple[tuple[int, tuple[int, ...]], ...], list[bytes]]:
    """PCR_Read's parameters: (pcrUpdateCounter, selection read, the values in selection order)."""
    r = Reader(params, "PCR_Read")
    counter = r.u32("pcrUpdateCounter")
    selection = parse_selection(r)
    count = r.u32("pcrValues count")
    if count > 8:  # TPML_DIGEST holds at most 8 (Part 2 §10.9.2)
        raise TpmError(f"PCR_Read returned {count} digests, a TPML_DIGEST holds at most 8")
    values = [r.tpm2b("pcr value") for _ in range(count)]
    r.done()
    if sum(len(indices) for _, indices in selection) != count:
        raise TpmError(f"PCR_Read returned {count} values for a selection of "
                       f"{sum(len(i) for _, i in selection)} PCRs")
    return counter, selection, values


def parse_property(params: bytes, prop: int) -> int:
    """GetCapability(TPM_CAP_TPM_PROPERTIES, prop, 1)'s answer: the value of exactly that property."""
    r = Reader(params, "GetCapability")
    r.u8("moreData")
    cap, count = r.u32("capability"), r.u32("count")
    if cap != TPM_CAP_TPM_PROPERTIES or count != 1:
        raise TpmError(f"GetCapability answered capability {cap} with {count} properties, not one TPM property")
    got, value = r.u32("property"), r.u32("value")
    r.done()
    if got != prop:
        raise TpmError(f"GetCapability answered property {got:#x}, not {prop:#x} (the TPM does not report it)")
    return value


class Tpm:
    """The commands, each checked end to end; every authorization is an empty password."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._nv_chunk: int | None = None

    def close(self) -> None:
        self.transport.close()

    def call(self, what: str, cc: int, handles: Sequence[int] = (), params: bytes = b"", sessions: int = 0,
             out_handles: int = 0) -> tuple[tuple[int, ...], bytes]:
        command = build_command(cc, handles, params, sessions)
        for attempt in range(RETRIES):
            try:
                return parse_response(self.transport.transact(command), what, out_handles, sessions)
            except TpmError as exc:
                if exc.rc not in RETRY_CODES or attempt == RETRIES - 1:
                    raise
            time.sleep(0.02 * 2 ** attempt)
        raise AssertionError("unreachable")

    def nv_buffer_max(self) -> int:
        """TPM_PT_NV_BUFFER_MAX: the largest NV_Read/NV_Write, learnt once (1024 on swtpm)."""
        if self._nv_chunk is None:
            _, params = self.call("GetCapability", CC_GET_CAPABILITY,
                                  params=struct.pack(">III", TPM_CAP_TPM_PROPERTIES, TPM_PT_NV_BUFFER_MAX, 1))
            value = parse_property(params, TPM_PT_NV_BUFFER_MAX)
            if not 64 <= value <= MAX_RESPONSE - 64:
                raise TpmError(f"the TPM's NV buffer is {value} bytes: not a size to read with")
            self._nv_chunk = value
        return self._nv_chunk

    def nv_read_public(self, index: int) -> NvPublic:
        _, params = self.call(f"NV_ReadPublic({index:#010x})", CC_NV_READ_PUBLIC, [index])
        public, _ = parse_nv_public(params)
        if public.index != index:
            raise TpmError(f"NV_ReadPublic({index:#010x}) describes index {public.index:#010x}")
        return public

    def nv_read(self, index: int, auth: int = TPM_RH_OWNER) -> bytes:
        """The whole index, read in chunks of the TPM's NV buffer size."""
        size = self.nv_read_public(index).size
        chunk = self.nv_buffer_max()
        out = b""
        while len(out) < size:  # each pass adds a full chunk or raises: bounded by size / chunk
            want = min(chunk, size - len(out))
            _, params = self.call(f"NV_Read({index:#010x}, offset {len(out)})", CC_NV_READ, [auth, index],
                                  struct.pack(">HH", want, len(out)), sessions=1)
            r = Reader(params, "NV_Read")
            data = r.tpm2b("data")
            r.done()
            if len(data) != want:
                raise TpmError(f"NV_Read({index:#010x}) returned {len(data)} bytes, {want} were asked for")
            out += data
        return out

    def nv_write(self, index: int, data: bytes, auth: int = TPM_RH_OWNER) -> None:
        chunk = self.nv_buffer_max()
        for offset in range(0, len(data), chunk):
            _, params = self.call(f"NV_Write({index:#010x}, offset {offset})", CC_NV_WRITE, [auth, index],
                                  tpm2b(data[offset:offset + chunk]) + struct.pack(">H", offset), sessions=1)
            Reader(params, "NV_Write").done()

    def nv_define_space(self, public: NvPublic, auth: int = TPM_RH_OWNER) -> None:
        """An index with an empty authValue and ``public``'s attributes, size and name algorithm."""
        _, params = self.call(f"NV_DefineSpace({public.index:#010x})", CC_NV_DEFINE_SPACE, [auth],
                              tpm2b(b"") + public.marshal(), sessions=1)
        Reader(params, "NV_DefineSpace").done()

    def nv_undefine_space(self, index: int, auth: int = TPM_RH_OWNER) -> None:
        _, params = self.call(f"NV_UndefineSpace({index:#010x})", CC_NV_UNDEFINE_SPACE, [auth, index],
                              sessions=1)
        Reader(params, "NV_UndefineSpace").done()

    def pcr_read(self, indices: Sequence[int] = tuple(range(PCR_COUNT))) -> tuple[int, list[bytes]]:
        """(pcrUpdateCounter, SHA-256 values of ``indices`` in ascending order). A TPM answers at most 8
        values per PCR_Read, so this asks again for the rest; the counter must not move in between."""
        wanted = sorted(set(indices))
        values: dict[int, bytes] = {}
        counter: int | None = None
        for _ in range(PCR_COUNT + 1):  # each pass reads at least one PCR or raises
            rest = [i for i in wanted if i not in values]
            if not rest:
                break
            _, params = self.call("PCR_Read", CC_PCR_READ, params=pcr_selection(rest))
            now, selection, got = parse_pcr_read(params)
            if counter is not None and now != counter:
                raise PcrsChanged("the PCRs changed while they were read (pcrUpdateCounter moved)")
            counter = now
            read = [i for bank, idx in selection if bank == TPM_ALG_SHA256 for i in idx]
            if len(read) != len(got) or not read or not set(read) <= set(rest):
                raise TpmError(f"PCR_Read answered PCRs {read} for a request of {rest}: the TPM has no "
                               "SHA-256 bank with them")
            for i, value in zip(read, got, strict=True):
                if len(value) != SHA256_SIZE:
                    raise TpmError(f"SHA-256 PCR {i} is {len(value)} bytes")
                values[i] = value
        assert counter is not None
        return counter, [values[i] for i in wanted]

    def pcr_extend(self, index: int, digest: bytes) -> None:
        """TPM2_PCR_Extend of the SHA-256 bank (what a CoCo guest does with its initdata digest in PCR 8)."""
        if len(digest) != SHA256_SIZE or not 0 <= index < PCR_COUNT:
            raise TpmError("PCR_Extend takes a PCR 0-23 and a 32-byte SHA-256 digest")
        _, params = self.call(f"PCR_Extend({index})", CC_PCR_EXTEND, [index],
                              struct.pack(">IH", 1, TPM_ALG_SHA256) + digest, sessions=1)
        Reader(params, "PCR_Extend").done()

    def quote(self, key: int, qualifying: bytes, indices: Sequence[int] = tuple(range(PCR_COUNT))) -> \
            tuple[bytes, bytes]:
        """(TPMS_ATTEST bytes, RSASSA signature) over the SHA-256 PCRs ``indices``, with the key's own
        scheme (TPM_ALG_NULL asks for it) and ``qualifying`` as extraData."""
        _, params = self.call(f"Quote({key:#010x})", CC_QUOTE, [key],
                              tpm2b(qualifying) + struct.pack(">H", TPM_ALG_NULL) + pcr_selection(indices),
                              sessions=1)
        return parse_quote(params)


def extended(value: bytes, digest: bytes) -> bytes:
    """A SHA-256 PCR after TPM2_PCR_Extend of ``digest``: SHA-256(old value || digest) (Part 3 PCR_Extend)."""
    return hashlib.sha256(value + digest).digest()


def pcr_digest(values: Sequence[bytes]) -> bytes:
    """A quote's pcrDigest over SHA-256 PCR values, in selection order (Part 3 §18.4, TPM2_Quote)."""
    return hashlib.sha256(b"".join(values)).digest()
