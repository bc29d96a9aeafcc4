"""aTLS: a TLS endpoint whose certificate carries TEE evidence bound to the client's nonce.

The construction follows Contrast (``internal/atls``): the server makes a
fresh key per handshake, asks the TEE for a report with REPORT_DATA =
SHA-512(SubjectPublicKeyInfo DER || client nonce), and puts the evidence in
a self-signed certificate's extension, OID 1.3.9901.2.1 for SNP (and sim)
or 1.3.9901.2.2 for TDX. A client that checks the evidence knows the TLS
key lives in the attested VM and that the certificate is fresh.

Transport of the nonce differs from Contrast's ALPN trick because Python's
ssl module cannot see the client's ALPN list before choosing a certificate;
it can see SNI. The client sends the nonce as the server name:
hex(nonce) split into DNS labels, followed by ``.atls.cocoon``. No nonce, no
certificate: a handshake without one fails, since an unbound certificate
could be replayed. The extension's value is a ``cocoon.GetEvidenceResponse``
protobuf. After the handshake the connection speaks ttRPC.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import select
import socket
import ssl
import threading
from typing import Any

from agent.errors import AgentError
from agent.evidence import MAX_NONCE, collect

OID_SNP = "1.3.9901.2.1"
OID_TDX = "1.3.9901.2.2"
SUFFIX = ".atls.cocoon"
LABEL = 60


class AtlsError(AgentError):
    """A nonce or certificate that is not valid aTLS."""


def encode_server_name(nonce: bytes) -> str:
    if not 1 <= len(nonce) <= MAX_NONCE:
        raise AtlsError(f"aTLS nonce must be 1 to {MAX_NONCE} bytes, got {len(nonce)}")
    text = nonce.hex()
    return ".".join(text[i : i + LABEL] for i in range(0, len(text), LABEL)) + SUFFIX


def decode_server_name(name: str | None) -> bytes:
    if not name or not name.endswith(SUFFIX):
        raise AtlsError("client sent no aTLS nonce (expected SNI <hex nonce>.atls.cocoon)")
    try:
        nonce = bytes.fromhex(name[: -len(SUFFIX)].replace(".", ""))
    except ValueError:
        raise AtlsError("aTLS nonce in the server name is not hex") from None
    if not 1 <= len(nonce) <= MAX_NONCE:
        raise AtlsError(f"aTLS nonce must be 1 to {MAX_NONCE} bytes")
    return nonce


def make_certificate(tee: Any, nonce: bytes) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) with evidence for ``nonce`` in the extension."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from agent.protocols import cocoon_pb2

    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ev = collect(tee, nonce, spki)
    payload = cocoon_pb2.GetEvidenceResponse(kind=ev.kind, report=ev.report, aux=ev.aux, tee=ev.tee)
    oid = OID_TDX if ev.kind.startswith("tdx") else OID_SNP
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cocoon aTLS")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(os.urandom(16), "big") >> 1)
        .not_valid_before(now - datetime.timedelta(hours=2))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), payload.SerializeToString()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def evidence_from_certificate(der: bytes) -> Any:
    """The GetEvidenceResponse inside an aTLS certificate (after checking its self-signature)."""
    from cryptography import x509
    from google.protobuf.message import DecodeError

    from agent.protocols import cocoon_pb2

    try:
        cert = x509.load_der_x509_certificate(der)
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError) as exc:
        raise AtlsError(f"not a self-signed aTLS certificate: {exc}") from None
    except Exception as exc:  # cryptography's InvalidSignature
        raise AtlsError(f"aTLS certificate signature does not verify: {type(exc).__name__}") from None
    for ext in cert.extensions:
        if ext.oid.dotted_string in (OID_SNP, OID_TDX):
            msg = cocoon_pb2.GetEvidenceResponse()
            try:
                msg.ParseFromString(ext.value.value)
            except DecodeError:
                raise AtlsError("aTLS evidence extension is not a GetEvidenceResponse") from None
            return msg
    raise AtlsError("certificate has no aTLS evidence extension")


def _load_pair(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """ssl wants files; memfds keep the key off any filesystem."""
    fds = []
    try:
        for blob in (cert_pem, key_pem):
            fd = os.memfd_create("cocoon-atls", os.MFD_CLOEXEC)
            os.write(fd, blob)
            fds.append(fd)
        ctx.load_cert_chain(f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}")
    finally:
        for fd in fds:
            os.close(fd)


def server_context(binding: Any) -> ssl.SSLContext:
    """A TLS server context that mints an evidence certificate per handshake from the SNI nonce."""
    base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    base.minimum_version = ssl.TLSVersion.TLSv1_3

    def on_sni(sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> int | None:
        if not binding.ready or binding.tee is None:
            return ssl.ALERT_DESCRIPTION_ACCESS_DENIED
        try:
            nonce = decode_server_name(server_name)
            cert_pem, key_pem = make_certificate(binding.tee, nonce)
        except AgentError:
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        _load_pair(ctx, cert_pem, key_pem)
        sslobj.context = ctx
        return None

    base.sni_callback = on_sni
    return base


class AtlsListener:
    """Wraps a TCP/vsock Listener; each accepted stream is TLS with an evidence certificate."""

    def __init__(self, inner: Any, binding: Any) -> None:
        self.inner = inner
        self.address = inner.address
        self.context = server_context(binding)

    @property
    def bound(self) -> str:
        inner: str = self.inner.bound
        return "atls+" + inner

    def accept(self) -> tuple[Any, str]:
        sock, peer = self.inner.accept()
        _no_delay(sock)
        # The handshake runs on the connection's thread (do_handshake before the first read).
        return TlsStream(self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)), peer

    def released(self, stream: Any) -> None:
        self.inner.released(stream)

    def close(self) -> None:
        self.inner.close()


def _no_delay(sock: Any) -> None:
    """TCP_NODELAY on a TCP connection: RPCs over aTLS are small request/answer exchanges, and Nagle's
    algorithm holding back a write until the peer's delayed ACK cost 40 ms per call (measured: a mesh
    certificate took 49 ms over aTLS and 5 ms in process)."""
    if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def client_context() -> ssl.SSLContext:
    """A client context that leaves certificate checks to the caller (evidence, not a CA, is the trust)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _ready(sock: ssl.SSLSocket, events: int, timeout_ms: int = 1000) -> bool:
    """Whether ``sock`` has any of ``events`` (or an error/hang-up) within the timeout."""
    poller = select.poll()
    poller.register(sock, events)
    return bool(poller.poll(timeout_ms))


class TlsStream:
    """A TLS socket used by one reader thread and other writer threads.

    OpenSSL does not allow SSL_read and SSL_write on one connection at the
    same time: a reader blocked inside SSL_read stalled every write (seen as
    a client that never got an answer). The reader therefore waits in
    poll() and enters SSL_read only when bytes (or buffered plaintext) are
    there; a lock keeps reads and writes from overlapping. poll, not select:
    the unit's LimitNOFILE lets descriptors pass 1024, which select() refuses.
    """

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        self._lock = threading.Lock()

    def recv_into(self, buffer: memoryview, nbytes: int = 0) -> int:
        while True:
            with self._lock:
                if self.sock.pending():
                    return self.sock.recv_into(buffer, nbytes)
            try:
                readable = _ready(self.sock, select.POLLIN)
            except (ValueError, OSError):  # closed by another thread (fd -1): the stream has ended
                return 0
            if readable:
                with self._lock:
                    try:
                        return self.sock.recv_into(buffer, nbytes)
                    except ssl.SSLWantReadError:
                        continue  # a TLS record not complete yet, or a post-handshake message

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        with self._lock:
            while view:
                try:
                    sent = self.sock.send(view)
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    _ready(self.sock, select.POLLIN | select.POLLOUT)
                    continue
                view = view[sent:]

    def do_handshake(self) -> None:
        self.sock.do_handshake()
        self.sock.setblocking(False)  # reads happen only after poll() said so

    def shutdown(self, how: int) -> None:
        self.sock.shutdown(how)

    def close(self) -> None:
        self.sock.close()


def connect_verified(address: str, check, timeout: float = 20.0, nonce: bytes | None = None):  # type: ignore[no-untyped-def]
    """Open aTLS to ``address`` (tcp://HOST:PORT) and return the TLS socket only if ``check`` accepts.

    ``check(evidence, nonce, public_key_der)`` gets the GetEvidenceResponse
    from the server's certificate, the nonce we sent and the certificate's
    SubjectPublicKeyInfo; it returns a verdict object with ``ok`` (and is
    expected to explain failures). Nothing is sent before it said yes.
    """
    import socket

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from agent.transport import parse

    addr = parse(address)
    if addr.scheme != "tcp":
        raise AtlsError(f"aTLS clients connect to tcp://HOST:PORT, not {address}")
    nonce = nonce if nonce is not None else os.urandom(32)
    raw = socket.create_connection((addr.host, addr.port), timeout=timeout)
    _no_delay(raw)
    try:
        tls = client_context().wrap_socket(raw, server_hostname=encode_server_name(nonce))
    except (OSError, ssl.SSLError) as exc:
        raw.close()
        raise AtlsError(f"aTLS handshake with {address} failed: {exc}") from None
    der = tls.getpeercert(binary_form=True)
    if der is None:
        tls.close()
        raise AtlsError(f"aTLS server {address} sent no certificate")
    evidence = evidence_from_certificate(der)
    spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    verdict = check(evidence, nonce, spki)
    if not getattr(verdict, "ok", False):
        tls.close()
        raise AtlsError(f"aTLS peer {address} failed verification")
    tls.setblocking(False)
    return TlsStream(tls), verdict
