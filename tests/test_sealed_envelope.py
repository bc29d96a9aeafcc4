"""Envelope sealed secrets with the KBS as key holder (agent/sealed.py): the data key is RFC 3394-wrapped under
a KEK the guest fetches as a KBS resource, the secret is AES-256-GCM under the data key. Checked against the
RFC 3394 and GCM specification vectors, field by field for malformed values (always the module's own error,
naming the field), and end to end: sealed by ``cocoon kbs seal --envelope``, opened in the guest through a
real broker, by the env path and by the data hub's UnsealSecret."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from support.sealing import KEY_PATH, KID, FakeClient, private_pem, public_jwk, public_pem, sign, signer, unsigned

from agent import sealed

KEK = bytes(range(32))
SIGNER = signer()
KEY_ID = "default/key/kek"
# RFC 3394 section 4.6: 256 bits of key data wrapped with a 256-bit KEK (000102...1F)
RFC3394_KEY_DATA = bytes.fromhex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
RFC3394_WRAPPED = bytes.fromhex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21")
# The GCM specification (McGrew and Viega), test case 15: 256-bit key, 96-bit IV, no AAD
GCM_KEY = bytes.fromhex("feffe9928665731c6d6a8f9467308308" * 2)
GCM_IV = bytes.fromhex("cafebabefacedbaddecaf888")
GCM_P = bytes.fromhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                      "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255")
GCM_CT = bytes.fromhex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
                       "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad")
GCM_TAG = bytes.fromhex("b094dac5d93471bdec1a502270e3cc6c")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def payload_of(value: str) -> dict[str, Any]:
    body = value.split(".")[2]
    doc: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return doc


def value_of(payload: dict[str, Any] | str) -> str:
    """Signed with the test key (tests/support/sealing.py), so what is refused is the payload, not its seal."""
    return sign(payload)


def envelope(**fields: Any) -> dict[str, Any]:
    """A well-formed payload of the GCM vector (its key wrapped under KEK), with ``fields`` replaced."""
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap

    doc = {"version": "0.1.0", "type": "envelope", "provider": "kbs", "key_id": f"kbs:///{KEY_ID}",
           "encrypted_key": b64(aes_key_wrap(KEK, GCM_KEY)), "encrypted_data": b64(GCM_CT + GCM_TAG),
           "wrap_type": "A256GCM", "iv": b64(GCM_IV), "provider_settings": {}, "annotations": {}}
    doc.update(fields)
    return doc


def test_the_gcm_vector_opens_to_its_plaintext() -> None:
    """The data layout is upstream's A256GCM (ciphertext then tag, 12-byte iv, no AAD), checked on the spec's
    vector rather than on our own encryption."""
    client = FakeClient({KEY_ID: KEK})
    assert sealed.unseal(value_of(envelope()), client) == GCM_P
    assert client.asked == [KEY_PATH, KEY_ID]


def test_the_data_key_is_wrapped_with_rfc3394() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    data = AESGCM(RFC3394_KEY_DATA).encrypt(GCM_IV, b"opened", None)
    value = value_of(envelope(encrypted_key=b64(RFC3394_WRAPPED), encrypted_data=b64(data)))
    assert sealed.unseal(value, FakeClient({KEY_ID: KEK})) == b"opened"
    with pytest.raises(sealed.SealedSecretError, match="encrypted_key does not unwrap under the key default/key/kek"):
        sealed.unseal(value, FakeClient({KEY_ID: bytes(32)}))


def test_seal_envelope_writes_upstreams_fields_and_fresh_keys() -> None:
    one, two = (sealed.seal_envelope(KEY_ID, KEK, b"hunter2", signer=SIGNER) for _ in range(2))
    doc = payload_of(one)
    assert sorted(doc) == sorted(sealed.ENVELOPE_FIELDS)
    assert (doc["version"], doc["type"], doc["provider"], doc["key_id"], doc["wrap_type"]) == \
        ("0.1.0", "envelope", "kbs", "kbs:///default/key/kek", "A256GCM")
    assert (doc["provider_settings"], doc["annotations"]) == ({}, {})
    assert len(base64.b64decode(doc["iv"])) == 12 and len(base64.b64decode(doc["encrypted_key"])) == 40
    other = payload_of(two)
    assert all(doc[f] != other[f] for f in ("encrypted_key", "encrypted_data", "iv"))
    with pytest.raises(sealed.SealedSecretError, match="31 bytes, not 32"):
        sealed.seal_envelope(KEY_ID, KEK[:31], b"x", signer=SIGNER)


def test_envelopes_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeClient({KEY_ID: KEK, "default/key/db": b"vaulted"})
    monkeypatch.setattr(sealed, "CLIENT", client)
    env = ["A=" + sealed.seal_envelope(KEY_ID, KEK, "pässword".encode(), signer=SIGNER),
           "B=" + sealed.seal("default/key/db", signer=SIGNER), "C=c"]
    assert sealed.unseal_env(env) == ["A=pässword", "B=vaulted", "C=c"]
    assert client.asked == [KEY_PATH, KEY_ID, KEY_PATH, "default/key/db"]
    with pytest.raises(sealed.SealedSecretError, match=r"env A: unsealing with the key other/key/kek failed: "
                                                       r".*PolicyDeny"):
        sealed.unseal_env(["A=" + sealed.seal_envelope("other/key/kek", KEK, b"x", signer=SIGNER)])
    with pytest.raises(sealed.SealedSecretError, match="env A: the secret with the key default/key/kek is not UTF-8"):
        sealed.unseal_env(["A=" + sealed.seal_envelope(KEY_ID, KEK, b"\xff", signer=SIGNER)])
    with pytest.raises(sealed.SealedSecretError, match=r"env A: .* contains a NUL byte"):
        sealed.unseal_env(["A=" + sealed.seal_envelope(KEY_ID, KEK, b"a\0b", signer=SIGNER)])
    with pytest.raises(sealed.SealedSecretError, match="env A: sealed secret: encrypted_key does not unwrap"):
        sealed.unseal_env(["A=" + sealed.seal_envelope(KEY_ID, bytes(32), b"x", signer=SIGNER)])
    monkeypatch.setattr(sealed, "CLIENT", None)
    with pytest.raises(sealed.SealedSecretError, match="env A is sealed, but the initdata names no KBS"):
        sealed.unseal_env(env)


def test_an_envelope_never_hands_out_its_key() -> None:
    """resource_of is the vault value's resource; for an envelope it would be the KEK, so it refuses."""
    with pytest.raises(sealed.SealedSecretError, match="an envelope names its key, not its secret"):
        sealed.resource_of(sealed.seal_envelope(KEY_ID, KEK, b"x", signer=SIGNER), FakeClient({}))


def _dup(field: str) -> str:
    text = json.dumps(envelope())
    return text[:-1] + f', "{field}": ' + json.dumps(envelope()[field]) + "}"


@pytest.mark.parametrize(("payload", "kek", "words"), [
    (envelope(encrypted_key="!!!!"), KEK, "encrypted_key is not base64"),
    (envelope(encrypted_data="abc"), KEK, "encrypted_data is not base64"),
    (envelope(iv="zz-_zz-_zz-_zz-_"), KEK, "iv is not base64"),
    (envelope(iv=b64(GCM_IV).rstrip("=") + " "), KEK, "iv is not base64"),
    (envelope(iv="yv66vvrO263eyviI"), KEK, None),  # GCM_IV itself, as a control
    (envelope(iv="yv66vvrO263eyviI="), KEK, "iv is not (canonical )?base64"),
    (envelope(encrypted_data="A" * 21 + "B=="), KEK, "encrypted_data is not canonical base64"),
    (envelope(encrypted_key=b64(bytes(39))), KEK, "encrypted_key is 39 bytes, not 40"),
    (envelope(encrypted_key=b64(bytes(48))), KEK, "encrypted_key is 48 bytes, not 40"),
    (envelope(iv=b64(bytes(16))), KEK, "iv is 16 bytes, not 12"),
    (envelope(iv=b64(b"")), KEK, "iv is 0 bytes, not 12"),
    (envelope(encrypted_data=b64(bytes(15))), KEK, "encrypted_data is 15 bytes, shorter than its 16-byte tag"),
    (envelope(encrypted_data=b64(GCM_CT + bytes(16))), KEK, "encrypted_data does not decrypt .*tag mismatch"),
    (envelope(iv=b64(bytes(12))), KEK, "encrypted_data does not decrypt"),
    (envelope(), bytes(32), "encrypted_key does not unwrap under the key default/key/kek"),
    (envelope(), KEK[:16], "the key default/key/kek is not 32 bytes"),
    (envelope(), KEK + b"\0", "the key default/key/kek is not 32 bytes"),
    (envelope(wrap_type="A256CTR"), KEK, "wrap_type 'A256CTR' is not supported"),
    (envelope(wrap_type=None), KEK, "wrap_type None is not supported"),
    (envelope(provider="aliyun"), KEK, "provider 'aliyun' is not supported"),
    (envelope(provider_settings={"url": "x"}), KEK, "provider_settings is not {}"),
    (envelope(annotations=[]), KEK, "annotations is not {}"),
    (envelope(key_id="kbs:///default/../kek"), KEK, "key_id 'kbs:///default/../kek' is not"),
    (envelope(key_id="https://kms/key"), KEK, "key_id 'https://kms/key' is not kbs:///"),
    (envelope(key_id=7), KEK, "key_id 7 is not kbs:///"),
    (envelope(iv=12), KEK, "iv is not a string"),
    (envelope(extra=1), KEK, "extra is not an envelope field"),
    (envelope(name="kbs:///a/b/c"), KEK, "name is not an envelope field"),
    (envelope(version="0.2.0"), KEK, "version is not 0.1.0"),
    (envelope(type="sealed"), KEK, "type 'sealed' is not supported"),
    *[({k: v for k, v in envelope().items() if k != field}, KEK, f"field {field} is missing")
      for field in sealed.ENVELOPE_FIELDS if field not in ("version", "type")],
    *[(_dup(field), KEK, f"duplicate key {field}") for field in sealed.ENVELOPE_FIELDS],
])
def test_every_malformed_field_is_named(payload: dict[str, Any] | str, kek: bytes, words: str | None) -> None:
    value = value_of(payload)
    if words is None:
        assert sealed.unseal(value, FakeClient({KEY_ID: kek})) == GCM_P
        return
    with pytest.raises(sealed.SealedSecretError, match=words):
        sealed.unseal(value, FakeClient({KEY_ID: kek}))


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=0, max_size=300), st.binary(min_size=32, max_size=32))
def test_what_is_sealed_opens_to_itself(text: str, kek: bytes) -> None:
    plaintext = text.encode()
    client = FakeClient({KEY_ID: kek})
    value = sealed.seal_envelope(KEY_ID, kek, plaintext, signer=SIGNER)
    assert sealed.unseal(value, client) == plaintext
    parsed = sealed.parse(value, client)
    assert isinstance(parsed, sealed.Envelope) and parsed.resource == KEY_ID


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sealed.ENVELOPE_FIELDS), JSON)
def test_any_field_replaced_by_any_json_is_refused(field: str, junk: Any) -> None:
    doc = envelope(**{field: junk})
    try:
        assert sealed.unseal(value_of(doc), FakeClient({KEY_ID: KEK})) == GCM_P
    except sealed.SealedSecretError:
        return
    assert junk == envelope()[field]  # only the field's own value opens it


@settings(max_examples=200, deadline=None)
@given(st.sets(st.sampled_from(sealed.ENVELOPE_FIELDS[2:]), min_size=1),
       st.dictionaries(st.text(max_size=12).filter(lambda k: k not in sealed.ENVELOPE_FIELDS), JSON, max_size=2))
def test_missing_or_extra_fields_are_named(dropped: set[str], extra: dict[str, Any]) -> None:
    doc = {k: v for k, v in envelope().items() if k not in dropped}
    with pytest.raises(sealed.SealedSecretError, match=r"field (\w+) is missing") as missing:
        sealed.parse(value_of(doc), FakeClient({}))
    assert missing.value.args[0].split("field ")[1].split()[0] in dropped
    if extra:
        with pytest.raises(sealed.SealedSecretError, match="is not an envelope field"):
            sealed.parse(value_of({**envelope(), **extra}), FakeClient({}))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(("encrypted_key", "encrypted_data", "iv")), st.data())
def test_a_flipped_bit_anywhere_is_refused(field: str, data: st.DataObject) -> None:
    raw = bytearray(base64.b64decode(envelope()[field]))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(sealed.SealedSecretError, match=r"does not unwrap|does not decrypt"):
        sealed.unseal(value_of(envelope(**{field: b64(bytes(raw))})), FakeClient({KEY_ID: KEK}))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from((*sealed.ENVELOPE_FIELDS, "name", "x")), JSON, max_size=12))
def test_arbitrary_envelope_payloads_are_the_modules_own_error(doc: dict[str, Any]) -> None:
    doc.update(version="0.1.0", type="envelope")
    with pytest.raises(sealed.SealedSecretError):
        sealed.unseal(value_of(doc), FakeClient({KEY_ID: KEK}))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_junk_payload_bytes_are_the_modules_own_error(junk: bytes) -> None:
    value = sign(junk)
    with pytest.raises(sealed.SealedSecretError):
        sealed.unseal(value, FakeClient({KEY_ID: KEK}))


# --- the host's command and the real broker -----------------------------------------------------------------

MEASUREMENT = b"\x42" * 48
REFS = {"snp": {"guest_policy": "0x30000", "measurements": [{"measurement": MEASUREMENT.hex()}]}}


def seal_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from cocoon.cli import main

    code = main(["kbs", "seal", *args])
    out = capsys.readouterr()
    return code, out.out.strip(), out.err


def signing(tmp_path: Path) -> tuple[str, ...]:
    """`cocoon kbs seal`'s signing options with the test key (its PKCS#8 PEM) and kid."""
    (tmp_path / "signer.pem").write_bytes(private_pem())
    return "--signing-key", str(tmp_path / "signer.pem"), "--kid", KID


def test_cocoon_kbs_seal_envelope(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kek").write_bytes(KEK)
    (tmp_path / "secret").write_bytes(b"from a file")
    code, value, err = seal_cli(capsys, *signing(tmp_path), "--envelope", "--key-id", "kbs:///default/key/kek", "--kek",
                                str(tmp_path / "kek"), "--plaintext", str(tmp_path / "secret"))
    assert code == 0, err
    assert sealed.unseal(value, FakeClient({KEY_ID: KEK})) == b"from a file"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin")))
    code, value, err = seal_cli(capsys, *signing(tmp_path), "--envelope", "--key-id", "kbs:///default/key/kek", "--kek",
                                str(tmp_path / "kek"))
    assert code == 0, err
    assert sealed.unseal(value, FakeClient({KEY_ID: KEK})) == b"from stdin"
    (tmp_path / "short").write_bytes(KEK[:31])
    for args, words in (
            (("--key-id", "kbs:///default/key/kek", "--kek", str(tmp_path / "short")), "31 bytes, not 32"),
            (("--key-id", "kbs:///default/../kek", "--kek", str(tmp_path / "kek")), "is not <repo>/<type>/<tag>"),
            (("--key-id", "default/key/kek", "--kek", str(tmp_path / "kek")), "is not kbs:///"),
            (("--key-id", "kbs:///default/key/kek", "--kek", str(tmp_path / "none")), "none: No such file"),
            (("--kek", str(tmp_path / "kek")), "takes --key-id"),
            (("--key-id", "kbs:///a/b/c", "--kek", str(tmp_path / "kek"), "a/b/c"), "and no resource")):
        code, _, err = seal_cli(capsys, *signing(tmp_path), "--envelope", *args)
        assert code == 2 and words in err and "Traceback" not in err, err
    (tmp_path / "big").write_bytes(bytes(60 << 10))
    code, _, err = seal_cli(capsys, *signing(tmp_path), "--envelope", "--key-id", "kbs:///default/key/kek", "--kek",
                            str(tmp_path / "kek"), "--plaintext", str(tmp_path / "big"))
    assert code == 2 and "more than 65536" in err, err
    code, value, _ = seal_cli(capsys, *signing(tmp_path), "kbs:///default/key/db")
    assert code == 0 and sealed.resource_of(value, FakeClient({})) == "default/key/db"
    code, _, err = seal_cli(capsys, *signing(tmp_path), "--kek", str(tmp_path / "kek"), "default/key/db")
    assert code == 2 and "or --envelope with" in err


@pytest.fixture
def broker_client(tmp_path: Path, sim_chain: Any):  # type: ignore[no-untyped-def]
    """A real broker on 127.0.0.1 holding the KEK and the signing key's public half (as upstream's JWK at
    the kid, and as a PEM public key), and the guest's data hub (sim TEE) pointed at it."""
    from support.simguest import sim_guest

    from agent.datahub import DataHub
    from agent.initdata import render_document
    from agent.kbs_client import KbsConfig
    from agent.tee import open_provider
    from coordinator.kbs.broker import Broker, Config
    from coordinator.kbs.server import KbsHttpServer

    document = render_document({"cdh.toml": '[kbc]\nname = "cc_kbc"\nurl = "http://127.0.0.1:1"\n'})
    guest = sim_guest(tmp_path, sim_chain, document, MEASUREMENT)
    sim = guest.sim_config
    broker = Broker(Config(tmp_path / "state", REFS, trust_sim=str(guest.trust)))
    broker.put_resource(["default", "key", "kek"], KEK)
    broker.put_resource(["default", "key", "other-kek"], bytes(32))
    broker.put_resource(KEY_PATH.split("/"), public_jwk())
    broker.put_resource(["default", "signing-key", "pem"], public_pem())
    broker.put_resource(["default", "signing-key", "secret"], public_pem())
    broker.set_policy('package policy\ndefault allow := false\n'
                      'allow if { input.submods.cpu0["ear.status"] == "affirming"; '
                      'data["resource-path"][2] == "kek" }\n'
                      'allow if { input.submods.cpu0["ear.status"] == "affirming"; '
                      'data["resource-path"][1] == "signing-key"; data["resource-path"][2] != "secret" }\n')
    server = KbsHttpServer(("127.0.0.1", 0), broker).start()
    datahub = DataHub(KbsConfig(server.url), open_provider("sim", sim_config=str(sim)), ("127.0.0.1", 0)).start()
    yield datahub.client, guest.digest
    datahub.stop()
    server.stop()
    broker.close()


def test_sealed_on_the_host_opened_through_the_broker(broker_client: Any, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from agent import guest_components
    from agent.protocols import confidential_data_hub_pb2 as cdh
    from agent.rpc import Code, RpcError
    from agent.ttrpc import TtrpcClient

    client, digest = broker_client
    (tmp_path / "kek").write_bytes(KEK)
    (tmp_path / "secret").write_bytes(b"db-password-value")
    code, value, err = seal_cli(capsys, *signing(tmp_path), "--envelope", "--key-id", "kbs:///default/key/kek", "--kek",
                                str(tmp_path / "kek"), "--plaintext", str(tmp_path / "secret"))
    assert code == 0, err
    monkeypatch.setattr(sealed, "CLIENT", client)
    assert sealed.unseal_env(["DB=" + value]) == ["DB=db-password-value"]
    denied = sealed.seal_envelope("default/key/other-kek", bytes(32), b"x", signer=SIGNER)
    with pytest.raises(sealed.SealedSecretError, match=r"env DB: unsealing with the key default/key/other-kek "
                                                       r"failed: .*PolicyDeny"):
        sealed.unseal_env(["DB=" + denied])
    servers = guest_components.serve(client, digest, None, str(tmp_path / "cdh.sock"))
    try:
        with TtrpcClient(f"unix://{tmp_path / 'cdh.sock'}", timeout=60) as c:
            def call(secret: str) -> bytes:
                out = c.call("api.SealedSecretService", "UnsealSecret", cdh.UnsealSecretInput(secret=secret.encode()),
                             cdh.UnsealSecretOutput)
                return bytes(out.plaintext)

            assert call(value) == b"db-password-value"
            with pytest.raises(RpcError) as refused:
                call(denied)
            assert refused.value.code == Code.PERMISSION_DENIED and "PolicyDeny" in refused.value.message
            with pytest.raises(RpcError) as wrong:
                call(sealed.seal_envelope("default/key/kek", bytes(32), b"x", signer=SIGNER))
            assert wrong.value.code == Code.INVALID_ARGUMENT and "does not unwrap" in wrong.value.message
            with pytest.raises(RpcError) as bad:
                call(value_of(envelope(iv=b64(bytes(16)))))
            assert bad.value.code == Code.INVALID_ARGUMENT and "iv is 16 bytes" in bad.value.message
            with pytest.raises(RpcError) as forged:
                call(sign(envelope(), key=ec.generate_private_key(ec.SECP256R1())))
            assert forged.value.code == Code.INVALID_ARGUMENT and "does not verify" in forged.value.message
            with pytest.raises(RpcError) as key_denied:
                call(sign(envelope(), {"alg": "ES256", "kid": "kbs:///default/signing-key/secret"}))
            assert key_denied.value.code == Code.PERMISSION_DENIED, key_denied.value
            assert "fetching the signing key default/signing-key/secret failed" in key_denied.value.message
            with pytest.raises(RpcError) as none:
                call(unsigned(envelope()))
            assert none.value.code == Code.INVALID_ARGUMENT and "unsigned" in none.value.message
    finally:
        for server in servers:
            server.stop()


def test_the_signing_key_comes_from_the_broker(broker_client: Any) -> None:
    """The kid's resource, fetched with the TEE's token like any other: upstream's JWK or a PEM public key
    verifies; another signer, a kid the broker has no resource for, one its policy denies, and an unsigned
    value (this client's config does not opt out) are refused, each naming why. The opt-out, in a client
    whose config says so, takes the unsigned value through the same broker."""
    from agent.kbs_client import KbsClient, KbsConfig

    client, _ = broker_client
    assert sealed.unseal(sign(envelope()), client) == GCM_P
    assert sealed.unseal(sign(envelope(), {"alg": "ES256", "kid": "kbs:///default/signing-key/pem"}), client) == GCM_P
    with pytest.raises(sealed.SealedSecretError, match="does not verify with the signing key default/signing-key/1"):
        sealed.unseal(sign(envelope(), key=ec.generate_private_key(ec.SECP256R1())), client)
    with pytest.raises(sealed.SigningKeyUnavailable, match=r"fetching the signing key default/signing-key/gone "
                                                           r"failed: .*no resource default/signing-key/gone"):
        sealed.unseal(sign(envelope(), {"alg": "ES256", "kid": "kbs:///default/signing-key/gone"}), client)
    with pytest.raises(sealed.SigningKeyUnavailable, match=r"signing-key/secret failed: .*PolicyDeny") as denied:
        sealed.unseal(sign(envelope(), {"alg": "ES256", "kid": "kbs:///default/signing-key/secret"}), client)
    assert denied.value.variant == "PolicyDeny"
    with pytest.raises(sealed.SealedSecretError, match=r"unsigned .*skip_sealed_secret_verification"):
        sealed.unseal(unsigned(envelope()), client)
    opted = KbsClient(KbsConfig(client.config.url, None, True), client.tee)
    assert sealed.unseal(unsigned(envelope()), opted) == GCM_P
    with pytest.raises(sealed.SealedSecretError, match="does not verify"):  # a bad signature is never skipped
        sealed.unseal(sign(envelope(), key=ec.generate_private_key(ec.SECP256R1())), opted)
