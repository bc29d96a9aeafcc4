"""Initdata: block layout, document rules, digests, limits."""

from __future__ import annotations

import gzip
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import initdata
from agent.errors import InitdataError

DOC = b'algorithm = "sha256"\nversion = "0.1.0"\n\n[data]\n"policy.rego" = """\npackage agent_policy\n"""\n'


def test_block_round_trip_and_digest() -> None:
    blob = initdata.encode_block(DOC)
    assert blob[:8] == b"initdata" and len(blob) % 512 == 0
    d = initdata.parse_block(blob, "dev")
    assert d.raw == DOC and d.algorithm == "sha256" and d.policy == "package agent_policy\n"
    assert d.digest == hashlib.sha256(DOC).digest()
    assert d.bound(32) == hashlib.sha256(DOC).digest()
    assert d.bound(48) == hashlib.sha256(DOC).digest() + bytes(16)  # TDX MRCONFIGID: zero-padded


@pytest.mark.parametrize(("algorithm", "name"), [("sha384", "sha384"), ("sha512", "sha512"), ("sha-256", "sha256")])
def test_algorithms_truncate_or_pad(algorithm: str, name: str) -> None:
    raw = DOC.replace(b'"sha256"', f'"{algorithm}"'.encode())
    d = initdata.parse_document(raw)
    full = hashlib.new(name, raw).digest()
    assert d.bound(32) == full[:32]
    assert d.bound(48) == (full[:48] if len(full) >= 48 else full + bytes(48 - len(full)))


@pytest.mark.parametrize(("blob", "message"), [
    (b"", "too short"),
    (b"initdat", "too short"),
    (b"INITDATA" + bytes(8), "no initdata magic"),
    (b"initdata" + bytes(8), "length is 0"),
    (b"initdata" + (100).to_bytes(8, "little") + b"x" * 10, "only 10 do"),
    (b"initdata" + (2**40).to_bytes(8, "little"), "more than"),
    (b"initdata" + (5).to_bytes(8, "little") + b"hello", "not valid gzip"),
])
def test_block_errors(blob: bytes, message: str) -> None:
    with pytest.raises(InitdataError, match=message):
        initdata.parse_block(blob, "dev")


def test_truncated_and_trailing_gzip() -> None:
    payload = gzip.compress(DOC, mtime=0)
    cut = payload[:-6]
    with pytest.raises(InitdataError, match="truncated"):
        initdata.parse_block(b"initdata" + len(cut).to_bytes(8, "little") + cut)
    extra = payload + b"junk"
    with pytest.raises(InitdataError, match="follow the gzip stream"):
        initdata.parse_block(b"initdata" + len(extra).to_bytes(8, "little") + extra)


def test_gzip_bomb_is_refused_without_inflating_it_all() -> None:
    bomb = gzip.compress(bytes(initdata.MAX_DOCUMENT + 1024), mtime=0)
    with pytest.raises(InitdataError, match="inflates beyond"):
        initdata.parse_block(b"initdata" + len(bomb).to_bytes(8, "little") + bomb)


@pytest.mark.parametrize(("doc", "message"), [
    (b"\xff\xfe", "not UTF-8"),
    (b"version = ", "not valid TOML"),
    (b'version = "0.2.0"\nalgorithm = "sha256"\n', "version is '0.2.0'"),
    (b'version = "0.1.0"\nalgorithm = "md5"\n', "algorithm 'md5' is not supported"),
    (b'version = "0.1.0"\n', "algorithm None"),
    (b'version = "0.1.0"\nalgorithm = "sha256"\nextra = 1\n', "unknown top-level keys: extra"),
    (b'version = "0.1.0"\nalgorithm = "sha256"\ndata = 3\n', "must be a table"),
    (b'version = "0.1.0"\nalgorithm = "sha256"\n[data]\nx = 1\n', "'x' must be a string"),
])
def test_document_errors(doc: bytes, message: str) -> None:
    with pytest.raises(InitdataError, match=message):
        initdata.parse_document(doc, "doc")


def test_read_path_file_block_and_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plain = tmp_path / "initdata.toml"
    plain.write_bytes(DOC)
    assert initdata.read_path(str(plain)).raw == DOC
    block = tmp_path / "initdata.img"
    block.write_bytes(initdata.encode_block(DOC))
    assert initdata.read_path(str(block)).raw == DOC
    with pytest.raises(InitdataError, match="cannot open"):
        initdata.read_path(str(tmp_path / "missing"))
    with pytest.raises(InitdataError, match="neither a regular file"):
        initdata.read_path(str(tmp_path))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_block_parser_only_raises_initdata_error(data: bytes) -> None:
    for blob in (data, b"initdata" + len(data).to_bytes(8, "little") + data):
        try:
            d = initdata.parse_block(blob)
        except InitdataError as exc:
            assert str(exc)
        else:
            assert d.algorithm in ("sha256", "sha384", "sha512")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_document_parser_only_raises_initdata_error(text: str) -> None:
    try:
        d = initdata.parse_document(text.encode())
    except InitdataError as exc:
        assert str(exc)
    else:
        assert d.version == "0.1.0"
