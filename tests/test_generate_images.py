"""cocoon generate's image stage against a real registry (Debian's docker-registry on 127.0.0.1, images built
here and pushed with skopeo), OCI layouts and docker archives; property tests of every parser it has."""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import re
import shutil
import socket
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from support.ociimage import (
    BuiltImage,
    Device,
    Dir,
    Entry,
    File,
    Hardlink,
    Symlink,
    build_image,
    docker_archive,
    layer_tar,
    push,
)
from support.registry import Registry, running_registry

from generator import oci
from generator.errors import ImageError
from generator.images import ImageSources, ResolvedImage, parse_auth_config, parse_reference, resolve
from generator.model import LAYER_MEDIA_TYPES, Blob
from generator.ocilayout import safe_member
from generator.registry import parse_challenge, registry_error_text, split_host

pytestmark = pytest.mark.timeout(300)

USERS = {"alice": "s3cret"}


def _decompress(data: bytes, media_type: str) -> bytes:
    kind = {"none": None, "gzip": gzip.decompress, "zstd": zstandard.ZstdDecompressor().decompress}[
        LAYER_MEDIA_TYPES[media_type]
    ]
    return data if kind is None else kind(data)


def _read_all(image: ResolvedImage) -> list[bytes]:
    out = []
    for blob in image.layers:
        with image.open_blob(blob) as f:
            out.append(f.read())
    return out


def _check_layers(image: ResolvedImage) -> None:
    """Every blob reads whole, matches its digest, and decompresses to the config's diff_id."""
    diff_ids = image.config["rootfs"]["diff_ids"]
    for blob, data, diff_id in zip(image.layers, _read_all(image), diff_ids, strict=True):
        assert oci.digest_of(data) == blob.digest
        assert oci.digest_of(_decompress(data, blob.media_type)) == diff_id


# -- images and registries shared by the session


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltImage]:
    root = tmp_path_factory.mktemp("images")
    base: dict[str, Entry] = {"etc": Dir(), "etc/os-release": b"ID=cocoon-test\n", "bin/sh": Symlink("busybox")}
    app: dict[str, Entry] = {"app/run": b"#!/bin/sh\necho hi\n", "app/data": bytes(range(256)) * 64}
    return {
        "plain": build_image(root / "plain", [base, app], tag="1.0", config={"Env": ["A=1"], "Cmd": ["/app/run"]}),
        "mixed": build_image(
            root / "mixed", [base, app, {"z/zz": b"zstd" * 100}], tag="2.0", compression=["gzip", "zstd", "none"]
        ),
        "multi": build_image(
            root / "multi", [base], tag="m", platforms=[("linux", "arm64"), ("linux", "amd64"), ("windows", "amd64")]
        ),
        "noamd64": build_image(root / "noamd64", [base], tag="n", platforms=[("linux", "arm64"), ("linux", "s390x")]),
    }


def _require_tools() -> None:
    """docker-registry and skopeo come with `make setup`; missing in CI is a failure, elsewhere a skip."""
    missing = [tool for tool in ("docker-registry", "skopeo") if shutil.which(tool) is None]
    try:
        import bcrypt  # noqa: F401 - the test extra that hashes htpasswd entries
    except ImportError:
        missing.append("bcrypt (pip, test extra)")
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"missing {', '.join(missing)}: run `make setup`")
        pytest.skip(f"missing {', '.join(missing)} (make setup)")


@pytest.fixture(scope="session")
def plain_registry(images: dict[str, BuiltImage]) -> Iterator[Registry]:
    _require_tools()
    with running_registry() as registry:
        push(images["plain"], registry.host, "web", "1.0")
        push(images["mixed"], registry.host, "mixed", "2.0")
        push(images["multi"], registry.host, "multi", "m")
        push(images["noamd64"], registry.host, "noamd64", "n")
        yield registry


@pytest.fixture(scope="session")
def secure_registry(images: dict[str, BuiltImage]) -> Iterator[Registry]:
    """TLS with a CA made for the test, and htpasswd basic auth."""
    _require_tools()
    with running_registry(tls=True, users=USERS) as registry:
        assert registry.ca is not None
        push(images["plain"], registry.host, "team/web", "1.0", ca_file=registry.ca.ca_cert, creds=registry.creds)
        yield registry


def _loopback(registry: Registry) -> ImageSources:
    return ImageSources(insecure=frozenset({registry.host}), timeout=10)


def _secure(registry: Registry, **kw: Any) -> ImageSources:
    assert registry.ca is not None
    return ImageSources(ca_files={registry.host: str(registry.ca.ca_cert)}, timeout=10, **kw)


# -- registry: tags, digests, indexes, compressions


def test_by_tag(plain_registry: Registry, images: dict[str, BuiltImage]) -> None:
    built = images["plain"]
    seen: list[str] = []
    image = resolve(f"{plain_registry.host}/web:1.0", _loopback(plain_registry), progress=seen.append)
    assert image.pinned == f"{plain_registry.host}/web@{built.manifest_digest}"
    assert image.manifest_digest == built.manifest_digest
    assert image.config_digest == built.config_digest
    assert [(b.digest, b.media_type, b.size) for b in image.layers] == [
        (b.digest, b.media_type, b.size) for b in built.layers
    ]
    assert image.config["config"] == {"Env": ["A=1"], "Cmd": ["/app/run"]}
    assert any(built.manifest_digest in line for line in seen)
    _check_layers(image)
    assert sum(built.layers[0].digest in line for line in seen) == 1  # one line per layer read


def test_by_digest(plain_registry: Registry, images: dict[str, BuiltImage]) -> None:
    digest = images["plain"].manifest_digest
    for ref in (f"{plain_registry.host}/web@{digest}", f"{plain_registry.host}/web:1.0@{digest}"):
        image = resolve(ref, _loopback(plain_registry))
        assert image.pinned == f"{plain_registry.host}/web@{digest}"
        assert image.reference == ref
        _check_layers(image)


def test_unknown_digest_and_tag_are_clear_404s(plain_registry: Registry) -> None:
    sources = _loopback(plain_registry)
    with pytest.raises(
        ImageError, match=r"registry 127\.0\.0\.1:\d+: repository web: manifest nope: HTTP 404.*MANIFEST_UNKNOWN"
    ):
        resolve(f"{plain_registry.host}/web:nope", sources)
    with pytest.raises(ImageError, match=r"HTTP 404.*(NAME_UNKNOWN|MANIFEST_UNKNOWN)"):
        resolve(f"{plain_registry.host}/nothere:1.0", sources)
    with pytest.raises(ImageError, match="HTTP 404"):
        resolve(f"{plain_registry.host}/web@sha256:{'0' * 64}", sources)


def test_index_picks_linux_amd64(plain_registry: Registry, images: dict[str, BuiltImage]) -> None:
    built = images["multi"]
    image = resolve(f"{plain_registry.host}/multi:m", _loopback(plain_registry))
    assert built.index_digest is not None
    assert image.pinned == f"{plain_registry.host}/multi@{built.index_digest}"
    assert image.manifest_digest == built.manifests["linux/amd64"] != built.manifests["linux/arm64"]
    assert (image.config["os"], image.config["architecture"]) == ("linux", "amd64")
    by_digest = resolve(f"{plain_registry.host}/multi@{built.index_digest}", _loopback(plain_registry))
    assert by_digest.manifest_digest == image.manifest_digest


def test_index_without_amd64_lists_platforms(plain_registry: Registry) -> None:
    with pytest.raises(ImageError, match=r"no linux/amd64 image.*linux/arm64, linux/s390x"):
        resolve(f"{plain_registry.host}/noamd64:n", _loopback(plain_registry))


def test_gzip_zstd_and_uncompressed_layers(plain_registry: Registry, images: dict[str, BuiltImage]) -> None:
    image = resolve(f"{plain_registry.host}/mixed:2.0", _loopback(plain_registry))
    assert [LAYER_MEDIA_TYPES[b.media_type] for b in image.layers] == ["gzip", "zstd", "none"]
    _check_layers(image)


def test_docker_schema2_manifest_and_list(plain_registry: Registry, images: dict[str, BuiltImage]) -> None:
    """skopeo converts to Docker's media types on the way in; the same layers come out."""
    single = resolve(plain_registry.push(images["plain"], "dockerweb", "1", docker=True), _loopback(plain_registry))
    assert single.pinned == f"{plain_registry.host}/dockerweb@{single.manifest_digest}"
    assert [b.media_type for b in single.layers] == ["application/vnd.docker.image.rootfs.diff.tar.gzip"] * 2
    assert [b.digest for b in single.layers] == [b.digest for b in images["plain"].layers]
    _check_layers(single)
    listed = resolve(plain_registry.push(images["multi"], "dockermulti", "1", docker=True), _loopback(plain_registry))
    assert listed.pinned != f"{plain_registry.host}/dockermulti@{listed.manifest_digest}"  # pinned to the list
    assert listed.config["architecture"] == "amd64"
    _check_layers(listed)


# -- transport: plain HTTP only when asked and only to loopback; TLS with a CA; basic auth


def test_plain_http_only_when_asked(plain_registry: Registry) -> None:
    with pytest.raises(ImageError, match=r"https://127\.0\.0\.1:\d+ unreachable"):
        resolve(f"{plain_registry.host}/web:1.0", ImageSources(timeout=10))


def test_plain_http_refused_for_non_loopback_hosts() -> None:
    sources = ImageSources(insecure=frozenset({"registry.example:5000"}))
    with pytest.raises(ImageError, match="plain HTTP is allowed only to a loopback host"):
        resolve("registry.example:5000/web:1.0", sources)  # refused before any connection


def test_tls_with_ca_and_basic_auth(secure_registry: Registry, images: dict[str, BuiltImage]) -> None:
    sources = _secure(secure_registry, credentials={secure_registry.host: ("alice", "s3cret")})
    image = resolve(f"{secure_registry.host}/team/web:1.0", sources)
    assert image.pinned == f"{secure_registry.host}/team/web@{images['plain'].manifest_digest}"
    _check_layers(image)


def test_auth_file(secure_registry: Registry, tmp_path: Path) -> None:
    auth = base64.b64encode(b"alice:s3cret").decode()
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {f"https://{secure_registry.host}": {"auth": auth}}}))
    image = resolve(f"{secure_registry.host}/team/web:1.0", _secure(secure_registry, auth_file=str(path)))
    assert image.layers


def test_missing_or_malformed_auth_file(tmp_path: Path) -> None:
    host = "127.0.0.1:1"
    with pytest.raises(ImageError, match=r"auth file .*nothere\.json: No such file"):
        resolve(f"{host}/web:1", ImageSources(auth_file=str(tmp_path / "nothere.json")))
    bad = tmp_path / "bad.json"
    bad.write_text('{"auths": {"a": {}}, "auths": {}}')
    with pytest.raises(ImageError, match="duplicate key auths"):
        resolve(f"{host}/web:1", ImageSources(auth_file=str(bad)))


def test_wrong_password_and_no_credentials(secure_registry: Registry) -> None:
    wrong = _secure(secure_registry, credentials={secure_registry.host: ("alice", "guess")})
    with pytest.raises(
        ImageError, match=r"registry 127\.0\.0\.1:\d+: .*HTTP 401 unauthorized: the credentials were refused"
    ):
        resolve(f"{secure_registry.host}/team/web:1.0", wrong)
    with pytest.raises(ImageError, match="asks for credentials and none are configured"):
        resolve(f"{secure_registry.host}/team/web:1.0", _secure(secure_registry))


def test_tls_without_ca_is_refused(secure_registry: Registry) -> None:
    sources = ImageSources(credentials={secure_registry.host: ("alice", "s3cret")}, timeout=10)
    with pytest.raises(ImageError, match="TLS certificate not trusted"):
        resolve(f"{secure_registry.host}/team/web:1.0", sources)
    # asking for plain HTTP does not get around TLS either: the registry only speaks TLS
    with pytest.raises(ImageError, match="HTTP 400"):  # Go answers plain HTTP on a TLS port with 400
        resolve(f"{secure_registry.host}/team/web:1.0", ImageSources(insecure=frozenset({secure_registry.host})))


# -- tampering: the registry's storage is the test's


def test_tampered_blob_fails_while_streaming(plain_registry: Registry, tmp_path: Path) -> None:
    built = build_image(tmp_path / "t", [{"f": b"original content " * 50}, {"g": b"second " * 40}], tag="t")
    push(built, plain_registry.host, "tampered", "t")
    target = built.layers[0]
    path = plain_registry.blob_path(target.digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the digest can tell
    path.write_bytes(bytes(data))
    image = resolve(f"{plain_registry.host}/tampered:t", _loopback(plain_registry))
    with pytest.raises(ImageError) as err, image.open_blob(image.layers[0]) as f:
        f.read()
    message = str(err.value)
    assert "tampered:t" in message and f"expected {target.digest}" in message
    assert "got sha256:" + hashlib.sha256(bytes(data)).hexdigest() in message
    with image.open_blob(image.layers[1]) as f:  # the other layer is untouched and reads fine
        assert oci.digest_of(f.read()) == image.layers[1].digest


def test_truncated_blob_is_a_size_mismatch(plain_registry: Registry, tmp_path: Path) -> None:
    built = build_image(tmp_path / "s", [{"f": b"will be cut " * 60}], tag="s")
    push(built, plain_registry.host, "short", "s")
    path = plain_registry.blob_path(built.layers[0].digest)
    path.write_bytes(path.read_bytes()[:-10])
    image = resolve(f"{plain_registry.host}/short:s", _loopback(plain_registry))
    with pytest.raises(ImageError, match="size mismatch"), image.open_blob(image.layers[0]) as f:
        f.read()


def test_tampered_manifest_fetched_by_digest(plain_registry: Registry, tmp_path: Path) -> None:
    built = build_image(tmp_path / "m", [{"f": b"manifest tamper"}], tag="m")
    push(built, plain_registry.host, "tamperedmanifest", "m")
    path = plain_registry.blob_path(built.manifest_digest)
    path.write_bytes(path.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion": 2'))
    with pytest.raises(ImageError, match=f"manifest digest mismatch: expected {built.manifest_digest}"):
        resolve(f"{plain_registry.host}/tamperedmanifest@{built.manifest_digest}", _loopback(plain_registry))


def test_unread_rest_is_checked_on_exit(plain_registry: Registry, tmp_path: Path) -> None:
    """A reader that stops early (tar's end marker) still gets the digest checked when it leaves the block."""
    built = build_image(tmp_path / "u", [{"f": bytes(100_000)}], tag="u", compression="none")
    push(built, plain_registry.host, "unread", "u")
    path = plain_registry.blob_path(built.layers[0].digest)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    image = resolve(f"{plain_registry.host}/unread:u", _loopback(plain_registry))
    with pytest.raises(ImageError, match="digest mismatch"), image.open_blob(image.layers[0]) as f:
        assert len(f.read(512)) == 512


# -- bearer tokens and redirects: a small front on 127.0.0.1 before the plain registry


class _Front(http.server.BaseHTTPRequestHandler):
    backend: str
    token = "tok-123"
    issued: list[str]

    def log_message(self, *_args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        host = self.headers["Host"]
        if self.path.startswith("/token?"):
            if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"alice:s3cret").decode():
                self._send(401)
                return
            self.issued.append(self.path)
            self._send(200, json.dumps({"access_token": self.token}).encode(), {"Content-Type": "application/json"})
            return
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            challenge = f'Bearer realm="http://{host}/token",service="front",scope="repository:web:pull"'
            self._send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token"}]}', {"WWW-Authenticate": challenge})
            return
        if self.path.startswith("/v2/denied/"):
            self._send(403, b'{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}')
            return
        if self.path.startswith("/v2/broken/"):
            self._send(503, b'{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}')
            return
        if "/blobs/" in self.path and self.path.startswith("/v2/evil/"):
            self._send(307, headers={"Location": "http://127.0.0.2:9/elsewhere"})
            return
        path = self.path.replace("/v2/evil/", "/v2/web/")
        conn = http.client.HTTPConnection(self.backend, timeout=10)
        try:
            conn.request("GET", path, headers={"Accept": self.headers.get("Accept", "*/*")})
            resp = conn.getresponse()
            body = resp.read()
            keep = {k: v for k, v in resp.getheaders() if k.lower() in ("content-type", "docker-content-digest")}
            self._send(resp.status, body, keep)
        finally:
            conn.close()


@pytest.fixture
def front(plain_registry: Registry) -> Iterator[tuple[str, list[str]]]:
    issued: list[str] = []
    handler = type("Front", (_Front,), {"backend": plain_registry.host, "issued": issued})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", issued
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_bearer_token_flow(front: tuple[str, list[str]], images: dict[str, BuiltImage]) -> None:
    host, issued = front
    sources = ImageSources(insecure=frozenset({host}), credentials={host: ("alice", "s3cret")}, timeout=10)
    image = resolve(f"{host}/web:1.0", sources)
    assert image.manifest_digest == images["plain"].manifest_digest
    _check_layers(image)
    assert issued and "service=front" in issued[0] and "scope=repository%3Aweb%3Apull" in issued[0]


def test_bearer_token_refused(front: tuple[str, list[str]]) -> None:
    host, _ = front
    sources = ImageSources(insecure=frozenset({host}), credentials={host: ("alice", "wrong")}, timeout=10)
    with pytest.raises(ImageError, match=r"token server 127\.0\.0\.1:\d+ answered HTTP 401"):
        resolve(f"{host}/web:1.0", sources)


def test_redirect_to_another_host_is_refused(front: tuple[str, list[str]]) -> None:
    host, _ = front
    sources = ImageSources(insecure=frozenset({host}), credentials={host: ("alice", "s3cret")}, timeout=10)
    with pytest.raises(ImageError, match="redirect to another host refused"):
        resolve(f"{host}/evil:1.0", sources)  # the config blob is the first blob read


def test_server_errors_carry_the_registry_error_body(front: tuple[str, list[str]]) -> None:
    host, _ = front
    sources = ImageSources(insecure=frozenset({host}), credentials={host: ("alice", "s3cret")}, timeout=10)
    with pytest.raises(
        ImageError, match=r"repository broken: manifest 1\.0: HTTP 503 Service Unavailable: UNAVAILABLE: try later"
    ):
        resolve(f"{host}/broken:1.0", sources)
    with pytest.raises(
        ImageError, match=r"repository denied: manifest 1\.0: HTTP 403 forbidden: DENIED: requested access"
    ):
        resolve(f"{host}/denied:1.0", sources)


def test_a_silent_registry_times_out() -> None:
    with socket.socket() as listener:  # accepts (the kernel's backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        host = f"127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(ImageError, match=r"timed out after 0\.5 s"):
            resolve(f"{host}/web:1", ImageSources(insecure=frozenset({host}), timeout=0.5))


# -- local sources


def test_no_registry_and_no_local_source() -> None:
    with pytest.raises(ImageError, match=r"web:1\.0: no registry host.*docker\.io is not a default"):
        resolve("web:1.0", ImageSources())


def test_oci_layout(images: dict[str, BuiltImage]) -> None:
    built = images["mixed"]
    for local in ({"web:2.0": f"oci:{built.layout}"}, {"web": f"oci:{built.layout}:2.0"}):
        image = resolve("web:2.0", ImageSources(local=local))
        assert image.pinned == f"web@{built.manifest_digest}"
        _check_layers(image)
    pinned = resolve(f"web@{built.manifest_digest}", ImageSources(local={"web": f"oci:{built.layout}"}))
    assert pinned.manifest_digest == built.manifest_digest
    with pytest.raises(ImageError, match=r"tag '3\.0' names 0 images.*tags present: 2\.0"):
        resolve("web:3.0", ImageSources(local={"web": f"oci:{built.layout}"}))
    with pytest.raises(ImageError, match="schemaVersion None is not 2"):  # a blob, but not a manifest
        resolve(f"web@{built.config_digest}", ImageSources(local={"web": f"oci:{built.layout}"}))
    with pytest.raises(ImageError, match=f"blobs/sha256/{'f' * 64} is missing"):
        resolve(f"web@sha256:{'f' * 64}", ImageSources(local={"web": f"oci:{built.layout}"}))


def test_oci_layout_index_and_tampered_blob(images: dict[str, BuiltImage], tmp_path: Path) -> None:
    multi = images["multi"]
    image = resolve("multi:m", ImageSources(local={"multi": f"oci:{multi.layout}"}))
    assert image.pinned == f"multi@{multi.index_digest}"
    assert image.manifest_digest == multi.manifests["linux/amd64"]
    built = build_image(tmp_path / "l", [{"a": b"layout blob " * 30}], tag="x")
    blob = built.layout / "blobs/sha256" / built.layers[0].digest.split(":")[1]
    blob.write_bytes(gzip.compress(b"not the layer", mtime=0).ljust(built.layers[0].size, b"\0"))
    image = resolve("l:x", ImageSources(local={"l": f"oci:{built.layout}"}))
    with pytest.raises(ImageError, match="blob digest mismatch"), image.open_blob(image.layers[0]) as f:
        f.read()


def test_layout_blob_longer_or_shorter_than_declared(tmp_path: Path) -> None:
    built = build_image(tmp_path / "l", [{"a": b"sized " * 100}], tag="x")
    blob = built.layout / "blobs/sha256" / built.layers[0].digest.split(":")[1]
    original = blob.read_bytes()
    image = resolve("l:x", ImageSources(local={"l": f"oci:{built.layout}"}))
    for data, message in ((original + b"x", "more than the expected"), (original[:-1], "size mismatch")):
        blob.write_bytes(data)
        with pytest.raises(ImageError, match=message), image.open_blob(image.layers[0]) as f:
            f.read()


def test_docker_archive(images: dict[str, BuiltImage], tmp_path: Path) -> None:
    _require_tools()
    built = images["plain"]
    archive = docker_archive(built, tmp_path / "web.tar", "web:1.0")
    image = resolve("web:1.0", ImageSources(local={"web:1.0": f"docker-archive:{archive}"}))
    assert image.pinned.startswith("web@sha256:")
    assert [b.media_type for b in image.layers] == ["application/vnd.docker.image.rootfs.diff.tar"] * 2
    assert [b.digest for b in image.layers] == list(built.diff_ids)  # uncompressed: blob digest is the diff_id
    _check_layers(image)
    again = resolve(image.pinned, ImageSources(local={"web": f"docker-archive:{archive}"}))
    assert again.pinned == image.pinned  # the derived manifest is deterministic, so it pins


def test_oci_layout_inside_an_archive(images: dict[str, BuiltImage], tmp_path: Path) -> None:
    """Archives that carry an OCI layout (as Docker 25+ writes them) are read as that layout."""
    built = images["mixed"]
    archive = tmp_path / "oci.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(built.layout.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(built.layout).as_posix())
    image = resolve("web:2.0", ImageSources(local={"web": f"docker-archive:{archive}"}))
    assert image.pinned == f"web@{built.manifest_digest}"
    _check_layers(image)


def _tar(path: Path, members: dict[str, bytes | Symlink]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(data, Symlink):
                info.type, info.linkname = tarfile.SYMTYPE, data.target
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _legacy_archive(path: Path, link: str) -> Path:
    """A hand-made docker save archive whose second layer is a symlink to ``link`` (as docker writes a
    layer shared with another image of the archive)."""
    layer = _tar(path.with_suffix(".layer"), {"hello": b"hi"}).read_bytes()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [oci.digest_of(layer)] * 2},
    }
    manifest = [{"Config": "c.json", "RepoTags": ["web:1"], "Layers": ["a/layer.tar", "b/layer.tar"]}]
    members: dict[str, bytes | Symlink] = {
        "manifest.json": json.dumps(manifest).encode(),
        "c.json": json.dumps(config).encode(),
        "a/layer.tar": layer,
        "b/layer.tar": Symlink(link),
    }
    return _tar(path, members)


def test_docker_archive_linked_layers(tmp_path: Path) -> None:
    image = resolve(
        "web:1", ImageSources(local={"web": f"docker-archive:{_legacy_archive(tmp_path / 'a.tar', '../a/layer.tar')}"})
    )
    assert image.layers[0] == image.layers[1]
    _check_layers(image)
    escaping = _legacy_archive(tmp_path / "b.tar", "../../etc/passwd")
    with pytest.raises(ImageError, match="unsafe path"):
        resolve("web:1", ImageSources(local={"web": f"docker-archive:{escaping}"}))
    looping = _legacy_archive(tmp_path / "c.tar", "../b/layer.tar")
    with pytest.raises(ImageError, match="too many links"):
        resolve("web:1", ImageSources(local={"web": f"docker-archive:{looping}"}))


def test_closed_early_is_still_checked(tmp_path: Path) -> None:
    built = build_image(tmp_path / "l", [{"a": bytes(200_000)}], tag="x", compression="none")
    blob = built.layout / "blobs/sha256" / built.layers[0].digest.split(":")[1]
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    image = resolve("l:x", ImageSources(local={"l": f"oci:{built.layout}"}))
    with pytest.raises(ImageError, match="blob digest mismatch"), image.open_blob(image.layers[0]) as f:
        f.read(1000)
        f.close()


def test_docker_archive_path_traversal(tmp_path: Path) -> None:
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["web:1"], "Layers": ["../../etc/passwd"]}]).encode()
    bad_path = _tar(tmp_path / "a.tar", {"manifest.json": manifest, "c.json": b"{}"})
    with pytest.raises(ImageError, match=re.escape("unsafe path '../../etc/passwd'")):
        resolve("web:1", ImageSources(local={"web:1": f"docker-archive:{bad_path}"}))
    bad_member = _tar(tmp_path / "b.tar", {"manifest.json": manifest, "../evil": b"x"})
    with pytest.raises(ImageError, match=re.escape("unsafe path '../evil'")):
        resolve("web:1", ImageSources(local={"web:1": f"docker-archive:{bad_member}"}))
    compressed = tmp_path / "c.tar.gz"
    compressed.write_bytes(gzip.compress(bad_path.read_bytes()))
    with pytest.raises(ImageError, match="compressed"):
        resolve("web:1", ImageSources(local={"web:1": f"docker-archive:{compressed}"}))


def test_bad_local_spec() -> None:
    with pytest.raises(ImageError, match="neither oci:DIR"):
        resolve("web:1", ImageSources(local={"web": "dir:/x"}))
    with pytest.raises(ImageError, match="not a directory"):
        resolve("web:1", ImageSources(local={"web": "oci:/nonexistent/layout"}))


def test_open_blob_refuses_foreign_blobs(images: dict[str, BuiltImage]) -> None:
    image = resolve("web:1.0", ImageSources(local={"web": f"oci:{images['plain'].layout}"}))
    with (
        pytest.raises(ImageError, match="not a layer of this image"),
        image.open_blob(Blob(image.config_digest, oci.OCI_CONFIG, 10)),
    ):
        pass


# -- parsers: examples, then properties (random input never escapes as anything but ImageError)


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("web", None, "web", None, None),
        ("web:1.0", None, "web", "1.0", None),
        ("library/web:1.0", None, "library/web", "1.0", None),
        ("localhost/web", "localhost", "web", None, None),
        ("127.0.0.1:5000/a/b-c__d.e:v_1", "127.0.0.1:5000", "a/b-c__d.e", "v_1", None),
        (f"127.0.0.1:5000/web:1@sha256:{'a' * 64}", "127.0.0.1:5000", "web", "1", f"sha256:{'a' * 64}"),
        (f"web@sha256:{'b' * 64}", None, "web", None, f"sha256:{'b' * 64}"),
        ("[::1]:5000/web:x", "[::1]:5000", "web", "x", None),
        ("Registry.Example/web", "Registry.Example", "web", None, None),
    ],
)
def test_parse_reference_examples(
    text: str, registry: str | None, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert str(ref) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("Web:1", "not lowercase"),
        ("web:", "not a valid tag"),
        ("web:-x", "not a valid tag"),
        ("web@sha256:abc", "not a digest"),
        (f"web@sha512:{'a' * 128}", "only sha256"),
        (f"web@sha256:{'A' * 64}", "only sha256"),
        ("-bad.host:5000/web", "not a registry host"),
        ("host:5000/", "repository component"),
        ("a//b", "repository component"),
        ("web/" + "a" * 260, "longer than 255"),
    ],
)
def test_parse_reference_rejects(text: str, why: str) -> None:
    with pytest.raises(ImageError, match=why):
        parse_reference(text)


_component = st.from_regex(r"[a-z0-9]{1,5}(?:(?:[._]|__|-{1,2})[a-z0-9]{1,5}){0,2}", fullmatch=True)
_plain_component = st.from_regex(r"[a-z0-9]{1,5}(?:(?:_|__|-{1,2})[a-z0-9]{1,5}){0,2}", fullmatch=True)


@st.composite
def _references(draw: st.DrawFn) -> str:
    """Valid references; without a host the first component has no '.' (it would name a registry host)."""
    host = draw(st.one_of(st.none(), st.sampled_from(["127.0.0.1:5000", "localhost", "reg.example", "[::1]:443"])))
    parts = [draw(_component if host else _plain_component), *draw(st.lists(_component, max_size=2))]
    tag = draw(st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)))
    digest = draw(st.one_of(st.none(), st.from_regex(r"[0-9a-f]{64}", fullmatch=True)))
    return (
        (f"{host}/" if host else "")
        + "/".join(parts)
        + (f":{tag}" if tag else "")
        + (f"@sha256:{digest}" if digest else "")
    )


@settings(max_examples=300, deadline=None)
@given(_references())
def test_parse_reference_round_trips(text: str) -> None:
    assert str(parse_reference(text)) == text


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80) | st.text(alphabet="ab:/@.-_9sha256[]", max_size=80))
def test_parse_reference_never_crashes(text: str) -> None:
    try:
        ref = parse_reference(text)
    except ImageError:
        return
    assert str(ref) == text  # nothing is normalised away: what is accepted is what was written


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**40) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
_descriptor: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "mediaType": st.sampled_from([*LAYER_MEDIA_TYPES, oci.OCI_MANIFEST, oci.OCI_CONFIG, "x"]),
        "digest": st.sampled_from([f"sha256:{'c' * 64}", "sha256:zz", 5]),
        "size": st.sampled_from([0, 7, -1, True, "3"]),
    },
    optional={
        "platform": st.fixed_dictionaries(
            {"os": st.sampled_from(["linux", 1]), "architecture": st.sampled_from(["amd64", "arm64"])}
        )
    },
)
_documents = st.fixed_dictionaries(
    {"schemaVersion": st.sampled_from([2, 1, "2", True])},
    optional={
        "mediaType": st.sampled_from([oci.OCI_INDEX, oci.OCI_MANIFEST, oci.DOCKER_LIST, oci.DOCKER_MANIFEST, "x", 3]),
        "manifests": st.lists(_descriptor, max_size=3) | _json,
        "config": _descriptor | _json,
        "layers": st.lists(_descriptor, max_size=3) | _json,
    },
)


@settings(max_examples=500, deadline=None)
@given(_documents | _json, st.sampled_from([None, oci.OCI_INDEX, oci.DOCKER_MANIFEST, "text/plain"]))
def test_parse_document_never_crashes(doc: Any, hint: str | None) -> None:
    try:
        result = oci.parse_document(json.dumps(doc).encode(), hint, "doc")
    except ImageError:
        return
    if isinstance(result, oci.Index):
        try:
            entry = oci.pick_platform(result, "doc")
        except ImageError:
            return
        assert entry.platform is not None and entry.platform[:2] == ("linux", "amd64")
    else:
        assert all(layer.media_type in LAYER_MEDIA_TYPES for layer in result.layers)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_parse_document_bytes_never_crash(data: bytes) -> None:
    try:
        doc = oci.parse_document(data, None, "doc")
    except ImageError:
        return
    assert isinstance(doc, (oci.Index, oci.Manifest))


def test_parse_document_refusals() -> None:
    layer = {
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "digest": f"sha256:{'d' * 64}",
        "size": 1,
    }
    config = {"mediaType": oci.OCI_CONFIG, "digest": f"sha256:{'e' * 64}", "size": 2}
    doc = {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "config": config, "layers": [layer]}
    with pytest.raises(ImageError, match="unsupported layer media type"):
        oci.parse_document(json.dumps(doc).encode(), None, "m")
    with pytest.raises(ImageError, match="served as"):
        oci.parse_document(json.dumps({**doc, "layers": []}).encode(), oci.OCI_INDEX, "m")
    with pytest.raises(ImageError, match="duplicate key"):
        oci.parse_document(b'{"schemaVersion": 2, "schemaVersion": 2}', None, "m")
    with pytest.raises(ImageError, match="more than"):
        oci.parse_document(b" " * (oci.MAX_DOCUMENT + 1), None, "m")
    artifact = {**doc, "config": {**config, "mediaType": "application/vnd.cncf.helm.config.v1+json"}, "layers": []}
    with pytest.raises(ImageError, match="not an image config"):
        oci.parse_document(json.dumps(artifact).encode(), None, "m")


@settings(max_examples=300, deadline=None)
@given(
    _json
    | st.fixed_dictionaries(
        {
            "auths": st.dictionaries(
                st.text(max_size=10), _json | st.fixed_dictionaries({"auth": st.text(max_size=12)}), max_size=3
            )
        }
    )
)
def test_parse_auth_config_never_crashes(doc: Any) -> None:
    try:
        out = parse_auth_config(json.dumps(doc).encode(), "auth")
    except ImageError:
        return
    assert all(c.username for c in out.values())


def test_parse_auth_config_examples() -> None:
    auth = base64.b64encode(b"bob:pa:ss").decode()
    doc = {
        "auths": {
            "https://127.0.0.1:5000/v1/": {"auth": auth},
            "localhost:1": {"username": "u", "password": "p"},
            "x": {},
        }
    }
    out = parse_auth_config(json.dumps(doc).encode(), "auth")
    assert (out["127.0.0.1:5000"].username, out["127.0.0.1:5000"].password) == ("bob", "pa:ss")
    assert out["localhost:1"].password == "p" and "x" not in out
    with pytest.raises(ImageError, match="not base64"):
        parse_auth_config(b'{"auths": {"h": {"auth": "!!"}}}', "auth")


def test_parse_challenge_examples() -> None:
    scheme, params = parse_challenge('Bearer realm="https://a/token",service="reg",scope="repository:x:pull,push"')
    assert scheme == "bearer"
    assert params == {"realm": "https://a/token", "service": "reg", "scope": "repository:x:pull,push"}
    assert parse_challenge('Basic realm="r"') == ("basic", {"realm": "r"})


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=100), st.binary(max_size=100))
def test_header_and_error_parsers_never_crash(header: str, body: bytes) -> None:
    scheme, params = parse_challenge(header)
    assert scheme == scheme.lower() and all(isinstance(v, str) for v in params.values())
    assert isinstance(registry_error_text(body), str)
    assert registry_error_text(b'{"errors":[{"code":"X","message":"y"}]}') == "X: y"


@settings(max_examples=200, deadline=None)
@given(_json, _json)
def test_layout_and_archive_indexes_never_crash(index: Any, manifest: Any) -> None:
    """Random index.json (OCI layout) and manifest.json (docker archive): an ImageError or an image."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "layout/blobs/sha256").mkdir(parents=True)
        (root / "layout/oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        (root / "layout/index.json").write_text(json.dumps(index))
        archive = _tar(root / "a.tar", {"manifest.json": json.dumps(manifest).encode(), "c": b"{}", "l": b""})
        for spec in (f"oci:{root / 'layout'}", f"docker-archive:{archive}"):
            try:
                image = resolve("web:1", ImageSources(local={"web": spec}))
            except ImageError:
                continue
            assert re.fullmatch(r"web@sha256:[0-9a-f]{64}", image.pinned), image.pinned
            assert all(layer.media_type in LAYER_MEDIA_TYPES for layer in image.layers)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab./\\\0", max_size=20))
def test_safe_member(name: str) -> None:
    try:
        out = safe_member(name, "archive")
    except ImageError:
        return
    assert not out.startswith("/") and ".." not in out.split("/") and "" not in out.split("/")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789abc.:[]/ -", max_size=30))
def test_split_host_never_crashes(text: str) -> None:
    try:
        name, port = split_host(text)
    except ImageError:
        return
    assert name and (port is None or 0 < port < 65536)
    if port is None:
        assert text in (name, f"[{name}]")
    else:
        host, _, digits = text.rpartition(":")
        assert host in (name, f"[{name}]") and int(digits) == port


def test_builder_layers_are_deterministic_and_say_what_they_were_given(tmp_path: Path) -> None:
    spec: dict[str, Entry] = {
        "d": Dir(0o700, uid=5),
        "d/f": File(b"x", 0o600, gid=7),
        "d/.wh.gone": b"",
        "l": Hardlink("d/f"),
        "dev": Device("char", 1, 3),
        "../escape": b"!",
    }
    first = build_image(tmp_path / "a", [spec], tag="d")
    again = build_image(tmp_path / "b", [dict(reversed(list(spec.items())))], tag="d")
    assert first.manifest_digest == again.manifest_digest and first.layers == again.layers
    with tarfile.open(fileobj=io.BytesIO(layer_tar(spec))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == sorted(spec)
    assert (members["d"].mode, members["d"].uid, members["d/f"].gid) == (0o700, 5, 7)
    assert (
        members["l"].islnk() and members["dev"].ischr() and (members["dev"].devmajor, members["dev"].devminor) == (1, 3)
    )
    assert {m.mtime for m in members.values()} == {0}
