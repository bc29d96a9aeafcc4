"""Sealed env values (agent/sealed.py): parsed strictly, unsealed through the KBS client, never passed on
sealed or half-read; junk is the module's own error."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.sealing import KEY_PATH, FakeClient, sign, signer

from agent import sealed

SIGNER = signer()


def _payload(**doc: Any) -> str:
    return sign(doc)


def test_vault_secrets_are_unsealed_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeClient({"default/key/db": b"hunter2"})
    monkeypatch.setattr(sealed, "CLIENT", client)
    env = ["PATH=/bin", "DB=" + sealed.seal("default/key/db", signer=SIGNER), "PLAIN=sealed"]
    assert sealed.unseal_env(env) == ["PATH=/bin", "DB=hunter2", "PLAIN=sealed"]
    assert client.asked == [KEY_PATH, "default/key/db"]


def test_unsealing_failures_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sealed, "CLIENT", None)
    with pytest.raises(sealed.SealedSecretError, match="env DB is sealed, but the initdata names no KBS"):
        sealed.unseal_env(["DB=" + sealed.seal("a/b/c", signer=SIGNER)])
    monkeypatch.setattr(sealed, "CLIENT", FakeClient({"a/b/bin": b"\xff", "a/b/nul": b"a\0b"}))
    with pytest.raises(sealed.SealedSecretError, match=r"env DB: unsealing a/b/c failed: .*PolicyDeny"):
        sealed.unseal_env(["DB=" + sealed.seal("a/b/c", signer=SIGNER)])
    with pytest.raises(sealed.SealedSecretError, match="not UTF-8"):
        sealed.unseal_env(["DB=" + sealed.seal("a/b/bin", signer=SIGNER)])
    with pytest.raises(sealed.SealedSecretError, match="NUL"):
        sealed.unseal_env(["DB=" + sealed.seal("a/b/nul", signer=SIGNER)])


@pytest.mark.parametrize(("value", "words"), [
    ("sealed.a.b", "is not sealed.<header>.<payload>.<signature>"),
    ("sealed.a.!!!.c", "not base64url"),
    (sign(b"not json"), "the payload is not JSON"),
    (_payload(version="0.2.0", type="vault", provider="kbs", name="kbs:///a/b/c"), "version is not 0.1.0"),
    (_payload(version="0.1.0", type="envelope", provider="kbs", name="kbs:///a/b/c"),
     "envelope field key_id is missing"),
    (_payload(version="0.1.0", type="secret", provider="kbs", name="kbs:///a/b/c"), "'secret' is not supported"),
    (_payload(version="0.1.0", type="vault", provider="kbs", name="kbs:///" + "a" * 200),
     r"name 'kbs:///a+\.\.\. is not"),
    (sign('{"version":"0.1.0","version":"0.1.0"}'), "not JSON: duplicate key version"),
    (_payload(version="0.1.0", type="vault", provider="aliyun", name="kbs:///a/b/c"), "provider 'aliyun'"),
    (_payload(version="0.1.0", type="vault", provider="kbs", name="https://x/a"), "is not kbs:///"),
    ("sealed." + "a" * (70 << 10), "more than"),
])
def test_malformed_sealed_values_are_refused(value: str, words: str) -> None:
    with pytest.raises(sealed.SealedSecretError, match=words):
        sealed.resource_of(value, FakeClient({}))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_junk_is_the_modules_own_error(junk: str) -> None:
    with contextlib.suppress(sealed.SealedSecretError):
        sealed.resource_of("sealed." + junk, FakeClient({}))
