"""A real OCI registry for tests: Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1.

Why a real one: the client must meet the registry's own answers (challenges, error bodies, media types,
TLS), not a double's idea of them. The registry runs from a config file written here
(``docker-registry serve CONFIG.yml``), stores into a temp dir the test may tamper with, optionally
serves TLS with a CA made here (``cryptography``) and optionally asks for htpasswd basic auth (bcrypt
hashes made with the PyPI ``bcrypt`` package: Debian's registry has no hash command and ``htpasswd`` is
not installed). ``Registry.start()`` returns once ``/v2/`` answers; ``stop()`` kills it and removes
everything it made; ``push(image, name, tag)`` publishes a tests/support/ociimage.py image there.

Config keys are distribution's (docs/configuration.md of distribution/distribution 2.8).
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from support.ociimage import BuiltImage

REGISTRY_BIN = Path("/usr/bin/docker-registry")


@dataclass(frozen=True)
class TestCA:
    """A CA and a server certificate for 127.0.0.1 / localhost signed by it (PEM files in ``directory``)."""

    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_ca(directory: Path) -> TestCA:
    """A throwaway CA (EC P-256) and a server certificate with IP SAN 127.0.0.1 and DNS SAN localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cocoon test registry CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out = TestCA(directory, directory / "ca.crt", directory / "server.crt", directory / "server.key")
    out.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    out.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.server_key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return out


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (closed again: the registry binds it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Registry:
    """One registry process. ``host`` is ``127.0.0.1:PORT``; ``url`` has the scheme it serves."""

    def __init__(self, *, tls: bool = False, users: dict[str, str] | None = None, workdir: Path | None = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="cocoon-registry-")) if workdir is None else workdir
        self.storage = self.workdir / "storage"
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.ca: TestCA | None = make_ca(self.workdir / "tls") if tls else None
        self.url = f"{'https' if tls else 'http'}://{self.host}"
        self.users = dict(users or {})
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: {self.host}",
        ]
        if self.ca is not None:
            lines += ["  tls:", f"    certificate: {self.ca.server_cert}", f"    key: {self.ca.server_key}"]
        if self.users:
            import bcrypt  # test extra (pyproject): the only bcrypt the registry's htpasswd reader accepts

            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text(
                "".join(
                    f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
                    for user, pw in self.users.items()
                )
            )
            lines += ["auth:", "  htpasswd:", "    realm: cocoon-test", f"    path: {htpasswd}"]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 20.0) -> Registry:
        if not REGISTRY_BIN.exists():
            raise RuntimeError(f"{REGISTRY_BIN} missing: run `make setup` (Debian package docker-registry)")
        config = self.workdir / "config.yml"
        config.write_text(self._config())
        self._log = open(self.workdir / "registry.log", "wb")  # noqa: SIM115 - lives as long as the process
        self._proc = subprocess.Popen(
            [str(REGISTRY_BIN), "serve", str(config)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                log = (self.workdir / "registry.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"docker-registry exited ({self._proc.returncode}): {log[-2000:]}")
            if self._answers():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"docker-registry did not answer on {self.url}/v2/ within {timeout} s")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            if self.ca is not None:
                ctx = ssl.create_default_context(cafile=str(self.ca.ca_cert))
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    "127.0.0.1", self.port, timeout=2, context=ctx
                )
            else:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/v2/")
                return conn.getresponse().status in (200, 401)
            finally:
                conn.close()
        except (OSError, http.client.HTTPException):
            return False

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        if getattr(self, "_log", None) is not None:
            self._log.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- what tests poke at

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob (distribution's storage/paths.go layout)."""
        algorithm, hexdigest = digest.split(":", 1)
        return self.storage / "docker/registry/v2/blobs" / algorithm / hexdigest[:2] / hexdigest / "data"

    def push(self, image: BuiltImage | Path, name: str, tag: str, *, docker: bool = False) -> str:
        """Push a test image here (with this registry's CA and first user); returns ``host/name:tag``."""
        from support.ociimage import push

        ca = self.ca.ca_cert if self.ca is not None else None
        push(image, self.host, name, tag, ca_file=ca, creds=self.creds, docker=docker)
        return f"{self.host}/{name}:{tag}"

    @property
    def creds(self) -> str | None:
        """``user:password`` of the first user (skopeo's --dest-creds form), or None without auth."""
        for user, pw in self.users.items():
            return f"{user}:{pw}"
        return None


@contextmanager
def running_registry(*, tls: bool = False, users: dict[str, str] | None = None) -> Iterator[Registry]:
    """Start a registry for the ``with`` body; nothing of it is left afterwards (process, files)."""
    registry = Registry(tls=tls, users=users).start()
    try:
        yield registry
    finally:
        registry.stop()
