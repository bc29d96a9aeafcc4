"""A client of the OCI distribution API v2, as much as pulling needs: manifests and blobs of one repository.

Why our own (stdlib http.client + ssl): pulling is two GETs and an auth dance; what matters is that
nothing the registry says is trusted — documents are bounded and hashed by the caller (generator.oci),
redirects go nowhere but the same host, TLS is always verified (a CA file may be given, verification is
never turned off), plain HTTP only to a loopback host the user named, and every failure is an ImageError
naming registry, repository and reference.

Wire facts: distribution/distribution docs/spec/api.md (``GET /v2/<name>/manifests/<reference>``,
``GET /v2/<name>/blobs/<digest>``, the ``{"errors": [{"code", "message"}]}`` body) and docs/spec/auth/token.md
(the ``WWW-Authenticate: Bearer realm=,service=,scope=`` challenge, the token endpoint's ``token`` /
``access_token`` answer); RFC 6750 section 3 and RFC 7617 for the two schemes.
"""

from __future__ import annotations

import base64
import http.client
import re
import socket
import ssl
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from generator.errors import ImageError
from generator.model import Blob
from generator.oci import MANIFEST_ACCEPT, MAX_DOCUMENT
from verifier import strictjson

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 3
_MAX_ERROR_BODY = 64 * 1024
_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s"]*)\s*(?:,|$)')


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def split_host(host: str) -> tuple[str, int | None]:
    """``host[:port]`` / ``[v6][:port]`` -> (hostname, port or None); ImageError if it is not one."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::([0-9]{1,5}))?|([^:\[\]/\s]+)(?::([0-9]{1,5}))?", host)
    if not m:
        raise ImageError(f"registry {host!r}: not host[:port]")
    name = m.group(1) or m.group(3)
    port = m.group(2) or m.group(4)
    if port is not None and not 0 < int(port) < 65536:
        raise ImageError(f"registry {host!r}: port out of range")
    return name, int(port) if port is not None else None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Scheme k=v, k="v"`` -> (scheme lowercased, params). Malformed params end the list (ignored)."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params.setdefault(m.group(1).lower(), value)
        pos = m.end()
    return scheme.lower(), params


def registry_error_text(body: bytes) -> str:
    """The ``errors`` of a distribution error body as ``CODE: message; ...``, or '' when it is not one."""
    try:
        doc = strictjson.loads(body)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(doc, dict) or not isinstance(doc.get("errors"), list):
        return ""
    parts = []
    for err in doc["errors"][:5]:
        if isinstance(err, dict):
            code, message = err.get("code"), err.get("message")
            parts.append(": ".join(str(x)[:200] for x in (code, message) if isinstance(x, str)))
    return "; ".join(p for p in parts if p)


class RegistryClient:
    """One registry (``host[:port]`` as the reference wrote it) and how to reach it.

    ``ca_files`` maps ``host:port`` to a PEM CA bundle for TLS (the realm of a bearer token server is
    looked up there too, falling back to the registry's); ``insecure`` lists the ``host:port`` allowed
    plain HTTP, honoured only for loopback hosts.
    """

    def __init__(
        self,
        host: str,
        *,
        ca_files: Mapping[str, str] | None = None,
        insecure: frozenset[str] = frozenset(),
        credentials: Credentials | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.host = host
        self._hostname, self._port = split_host(host)
        self._ca_files = dict(ca_files or {})
        self._insecure = insecure
        self._credentials = credentials
        self._timeout = timeout
        self._scheme = self._scheme_for(host, self._hostname)
        self._authorization: str | None = None

    def _scheme_for(self, host: str, hostname: str) -> str:
        if host in self._insecure:
            if hostname not in LOOPBACK:
                raise ImageError(
                    f"registry {host}: plain HTTP is allowed only to a loopback host (127.0.0.1, localhost, [::1])"
                )
            return "http"
        return "https"

    # -- connections

    def _connect(self, scheme: str, hostname: str, port: int | None, host: str) -> http.client.HTTPConnection:
        if scheme == "http":
            return http.client.HTTPConnection(hostname, port, timeout=self._timeout)
        ca = self._ca_files.get(host) or self._ca_files.get(self.host)
        try:
            ctx = ssl.create_default_context(cafile=ca)
        except (OSError, ssl.SSLError) as e:
            raise ImageError(f"registry {host}: CA file {ca}: {e}") from None
        return http.client.HTTPSConnection(hostname, port, timeout=self._timeout, context=ctx)

    def _send(
        self, scheme: str, host: str, target: str, headers: Mapping[str, str], what: str
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        hostname, port = split_host(host)
        conn = self._connect(scheme, hostname, port, host)
        try:
            conn.request("GET", target, headers=dict(headers))
            return conn, conn.getresponse()
        except ssl.SSLCertVerificationError as e:
            conn.close()
            raise ImageError(
                f"registry {host}: {what}: TLS certificate not trusted ({e.verify_message}); "
                "give the registry's CA file"
            ) from None
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            if isinstance(e, socket.timeout | TimeoutError):
                raise ImageError(f"registry {host}: {what}: timed out after {self._timeout} s") from None
            raise ImageError(f"registry {host}: {what}: {scheme}://{host} unreachable: {e}") from None

    def _fail(self, resp: http.client.HTTPResponse, what: str) -> ImageError:
        try:
            body = resp.read(_MAX_ERROR_BODY)
        except (OSError, http.client.HTTPException):
            body = b""
        detail = registry_error_text(body)
        reason = {401: "unauthorized", 403: "forbidden", 404: "not found"}.get(resp.status, resp.reason)
        return ImageError(
            f"registry {self.host}: {what}: HTTP {resp.status} {reason}" + (f": {detail}" if detail else "")
        )

    def _token(self, params: Mapping[str, str], scope: str, what: str) -> str:
        realm = params.get("realm", "")
        url = urllib.parse.urlsplit(realm)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ImageError(f"registry {self.host}: {what}: bearer realm {realm[:100]!r} is not an http(s) URL")
        if url.scheme == "http" and self._scheme_for(url.netloc, split_host(url.netloc)[0]) != "http":
            raise ImageError(f"registry {self.host}: {what}: bearer realm {realm[:100]} is plain HTTP and not allowed")
        query = [(k, v) for k, v in urllib.parse.parse_qsl(url.query)]
        if "service" in params:
            query.append(("service", params["service"]))
        query.append(("scope", params.get("scope") or scope))
        target = (url.path or "/") + "?" + urllib.parse.urlencode(query)
        headers = {"Authorization": self._credentials.basic()} if self._credentials else {}
        conn, resp = self._send(url.scheme, url.netloc, target, headers, f"{what}: token from {url.netloc}")
        try:
            if resp.status != 200:
                raise ImageError(f"registry {self.host}: {what}: token server {url.netloc} answered HTTP {resp.status}")
            body = resp.read(MAX_DOCUMENT + 1)
        except (OSError, http.client.HTTPException) as e:
            raise ImageError(f"registry {self.host}: {what}: token server {url.netloc}: {e}") from None
        finally:
            conn.close()
        try:
            doc: Any = strictjson.loads(body) if len(body) <= MAX_DOCUMENT else None
        except (ValueError, RecursionError):
            doc = None
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token or any(c in token for c in "\r\n"):
            raise ImageError(f"registry {self.host}: {what}: token server {url.netloc} gave no token")
        return token

    def _authorize(self, resp: http.client.HTTPResponse, scope: str, what: str) -> None:
        """Answer a 401's challenge (once): Basic with our credentials, or Bearer via the token server."""
        challenge = resp.headers.get("WWW-Authenticate", "")
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self._credentials is None:
                raise ImageError(
                    f"registry {self.host}: {what}: the registry asks for credentials and none are configured"
                )
            self._authorization = self._credentials.basic()
        elif scheme == "bearer":
            self._authorization = "Bearer " + self._token(params, scope, what)
        else:
            raise ImageError(f"registry {self.host}: {what}: HTTP 401 with unsupported challenge {challenge[:80]!r}")

    @contextmanager
    def get(self, path: str, accept: str | None, scope: str, what: str) -> Iterator[http.client.HTTPResponse]:
        """GET ``path`` (answering one auth challenge, following same-host redirects); yields the 200 response."""
        scheme, host, target = self._scheme, self.host, path
        retried = False  # one fresh answer to a challenge (a cached token may have expired)
        for _ in range(_MAX_REDIRECTS + 2):
            headers = {"Accept": accept} if accept else {}
            if self._authorization and host == self.host:
                headers["Authorization"] = self._authorization
            conn, resp = self._send(scheme, host, target, headers, what)
            try:
                if resp.status == 401 and not retried:
                    retried = True
                    resp.read(_MAX_ERROR_BODY)
                    self._authorize(resp, scope, what)
                    continue
                if resp.status == 401:
                    raise ImageError(
                        f"registry {self.host}: {what}: HTTP 401 unauthorized: the credentials were refused"
                    )
                if resp.status in _REDIRECTS:
                    location = urllib.parse.urlsplit(
                        urllib.parse.urljoin(f"{scheme}://{host}{target}", resp.headers.get("Location", ""))
                    )
                    if (location.scheme, location.netloc) != (self._scheme, self.host):
                        raise ImageError(
                            f"registry {self.host}: {what}: redirect to another host refused "
                            f"({location.scheme}://{location.netloc[:100]})"
                        )
                    target = location.path + (f"?{location.query}" if location.query else "")
                    continue
                if resp.status != 200:
                    raise self._fail(resp, what)
                yield resp
                return
            finally:
                conn.close()
        raise ImageError(f"registry {self.host}: {what}: too many redirects")


class RegistryStore:
    """One repository of a registry as a generator.oci.Store."""

    def __init__(self, client: RegistryClient, repository: str) -> None:
        self.client = client
        self.repository = repository
        self.where = f"registry {client.host} repository {repository}"
        self._scope = f"repository:{repository}:pull"

    def manifest(self, ref: str) -> tuple[bytes, str | None]:
        what = f"repository {self.repository}: manifest {ref}"
        path = f"/v2/{self.repository}/manifests/{urllib.parse.quote(ref, safe=':')}"
        with self.client.get(path, MANIFEST_ACCEPT, self._scope, what) as resp:
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > MAX_DOCUMENT:
                raise ImageError(
                    f"registry {self.client.host}: {what}: {length} bytes, more than {MAX_DOCUMENT} allowed"
                )
            try:
                data = resp.read(MAX_DOCUMENT + 1)
            except (OSError, http.client.HTTPException) as e:
                raise ImageError(f"registry {self.client.host}: {what}: reading failed: {e}") from None
            if len(data) > MAX_DOCUMENT:
                raise ImageError(f"registry {self.client.host}: {what}: more than {MAX_DOCUMENT} bytes")
            return data, resp.headers.get("Content-Type")

    @contextmanager
    def blob(self, blob: Blob) -> Iterator[BinaryIO]:
        what = f"repository {self.repository}: blob {blob.digest}"
        with self.client.get(f"/v2/{self.repository}/blobs/{blob.digest}", None, self._scope, what) as resp:
            length = resp.headers.get("Content-Length")
            if length is not None and (not length.isdigit() or int(length) != blob.size):
                raise ImageError(
                    f"registry {self.client.host}: {what}: size mismatch: expected {blob.size} bytes, "
                    f"the registry announces {length[:20]}"
                )
            yield resp
