"""The sealed value's JWS signature (agent/sealed.py): ES256 over ``<header>.<payload>`` with the public key
the kid names, fetched from the KBS, checked before the payload is read; checked against RFC 7515's ES256
example, against upstream's own test key, and against a signer that is cryptography's ECDSA rather than
jwcrypto (tests/support/sealing.py). Everything else, from a flipped byte to the HS256 key confusion, is
refused with the module's own error naming what failed."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st
from support.sealing import (
    KEY_PATH,
    KID,
    PRIVATE,
    FakeClient,
    b64url,
    private_pem,
    public_jwk,
    public_pem,
    sign,
    signer,
    unsigned,
)

from agent import sealed
from agent.errors import AgentError
from agent.kbs_client import KbsConfig, config_from_initdata

SIGNER = signer()
VAULT = {"version": "0.1.0", "type": "vault", "provider": "kbs", "name": "kbs:///default/key/db",
         "provider_settings": {}, "annotations": {}}
SECRET = b"hunter2"
OPTED_OUT = KbsConfig("https://kbs:1", None, True)

# RFC 7515 appendix A.3: the ES256 example (its P-256 key's public part, and the JWS it prints)
RFC7515_A3_KEY = {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                  "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
RFC7515_A3_JWS = ("eyJhbGciOiJFUzI1NiJ9"
                  ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
                  ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q")
RFC7515_A3_PAYLOAD = b'{"iss":"joe",\r\n "exp":1300819380,\r\n "http://example.com/is_root":true}'
# guest-components confidential-data-hub/hub/src/secret/tests/test-key.json: upstream's own signing key,
# with the members its keygen writes (kid, use, alg)
UPSTREAM_KEY = {"kty": "EC", "d": "7baJLiTk68NcLgYPv05jJvElqoAhbzi1ZWx4OyILUtA", "use": "sig", "crv": "P-256",
                "kid": "test-key", "x": "QT3_slJmispaOwnAo6hxebXGLRuiveFuRCLpS4j4S4k",
                "y": "jcDn4N4nRBQ-a7_D3qjqtb6hwOAXh_ve1wvibPSi1G0", "alg": "ES256"}


def _int(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def _noncanonical_header() -> str:
    """A signed value whose header's last character differs from the canonical one only in a bit that is
    not data (a 2-character tail carries 8 bits in 12): it decodes to the same header."""
    value = sign(VAULT, {"alg": "ES256", "kid": KID, "typ": "x"})
    head, rest = value[len("sealed."):].split(".", 1)
    assert len(head) % 4 == 2
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    bumped = head[:-1] + alphabet[alphabet.index(head[-1]) ^ 1]
    assert bumped != head and base64.urlsafe_b64decode(bumped + "==") == base64.urlsafe_b64decode(head + "==")
    return f"sealed.{bumped}.{rest}"


def open_vault(value: str, client: FakeClient | None = None) -> bytes:
    return sealed.unseal(value, client or FakeClient({"default/key/db": SECRET}))


def test_rfc7515_es256_example_verifies() -> None:
    from jwcrypto import jwk

    key = sealed.public_key(json.dumps(RFC7515_A3_KEY).encode(), "ES256", "rfc")
    assert sealed.verify_compact(RFC7515_A3_JWS, "ES256", key) == RFC7515_A3_PAYLOAD
    head, body, sig = RFC7515_A3_JWS.split(".")
    for tampered in (f"{head}.{_flip(body, 20)}.{sig}", f"{head}.{body}.{_flip(sig, 0)}",
                     f"{_flip(head, 3)}.{body}.{sig}"):
        with pytest.raises(sealed.SealedSecretError, match="does not verify"):
            sealed.verify_compact(tampered, "ES256", key)
    # "fQ" and "fR" decode alike (the last character's low bits are not data), and jwcrypto verifies over
    # its own re-encoding: only the canonical text is the one signed
    assert body.endswith("fQ")
    with pytest.raises(sealed.SealedSecretError, match="the payload is not canonical base64url"):
        sealed.verify_compact(f"{head}.{body[:-1]}R.{sig}", "ES256", key)
    with pytest.raises(sealed.SealedSecretError, match="the payload is not base64url"):
        sealed.verify_compact(f"{head}.{body}==.{sig}", "ES256", key)
    with pytest.raises(sealed.SealedSecretError, match="does not verify"):  # the key, not the header, is trusted
        sealed.verify_compact(RFC7515_A3_JWS, "ES256", jwk.JWK.generate(kty="EC", crv="P-256"))


def test_upstreams_test_key_signs_and_its_public_jwk_verifies() -> None:
    """Upstream's key as its keygen writes the public half for Trustee (kid, use, alg kept, d dropped)."""
    private = ec.derive_private_key(_int(UPSTREAM_KEY["d"]), ec.SECP256R1())
    assert private.public_key().public_numbers().x == _int(UPSTREAM_KEY["x"])
    public = json.dumps({k: v for k, v in UPSTREAM_KEY.items() if k != "d"}).encode()
    value = sign(VAULT, key=private)
    assert open_vault(value, FakeClient({KEY_PATH: public, "default/key/db": SECRET})) == SECRET
    with pytest.raises(sealed.SealedSecretError, match="is a private or symmetric key"):  # upstream's file as is
        open_vault(value, FakeClient({KEY_PATH: json.dumps(UPSTREAM_KEY).encode(), "default/key/db": SECRET}))


@pytest.mark.parametrize("served", [public_jwk(), public_pem(), public_jwk(alg="ES256", use="sig", kid="x"),
                                    public_jwk(key_ops=["verify"])], ids=["jwk", "pem", "jwk-members", "key-ops"])
def test_signed_values_open_with_the_right_key(served: bytes) -> None:
    client = FakeClient({KEY_PATH: served, "default/key/db": SECRET})
    assert open_vault(sign(VAULT), client) == SECRET  # signed by cryptography's ECDSA
    assert open_vault(sealed.seal("default/key/db", signer=SIGNER), client) == SECRET  # by jwcrypto
    assert client.asked == [KEY_PATH, "default/key/db"] * 2
    kek = bytes(range(32))
    envelope = sealed.seal_envelope("default/key/kek", kek, b"enveloped", signer=SIGNER)
    assert sealed.unseal(envelope, FakeClient({KEY_PATH: served, "default/key/kek": kek})) == b"enveloped"


def test_what_cocoon_signs_is_upstreams_layout_checked_independently() -> None:
    """The header is upstream's two members, the signature RFC 7518's r||s over the first two parts, and
    cryptography's own ECDSA verification agrees."""
    head, body, sig = sealed.seal("default/key/db", signer=SIGNER)[len("sealed."):].split(".")
    assert json.loads(base64.urlsafe_b64decode(head + "==")) == {"alg": "ES256", "kid": KID}
    assert json.loads(base64.urlsafe_b64decode(body + "==")) == VAULT
    raw = base64.urlsafe_b64decode(sig + "==")
    assert len(raw) == 64 and "=" not in head + body + sig
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    PRIVATE.public_key().verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
    assert json.loads(SIGNER.public_jwk()) == {**json.loads(public_jwk()), "alg": "ES256", "use": "sig", "kid": KID}


def _flip(text: str, at: int) -> str:
    swap = "B" if text[at] == "A" else "A"
    return text[:at] + swap + text[at + 1:]


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_changed_character_anywhere_is_refused(data: st.DataObject) -> None:
    """Any one character of header, payload or signature changed: never opens, and the secret is not asked
    for (the payload is not read before the signature verified)."""
    value = sign(VAULT)
    at = data.draw(st.integers(len("sealed."), len(value) - 1).filter(lambda i: value[i] != "."))
    client = FakeClient({"default/key/db": SECRET})
    with pytest.raises(sealed.SealedSecretError):
        open_vault(_flip(value, at), client)
    assert "default/key/db" not in client.asked


@pytest.mark.parametrize(("value", "words"), [
    (sign(VAULT, key=ec.generate_private_key(ec.SECP256R1())), "does not verify with the signing key "
                                                                "default/signing-key/1"),
    (sign(b"not json", key=ec.generate_private_key(ec.SECP256R1())), "does not verify"),  # never read
    (sign(VAULT, {"alg": "ES256", "kid": "kbs:///default/signing-key/2"}),
     "fetching the signing key default/signing-key/2 failed: .*PolicyDeny"),
    (unsigned(VAULT), "unsigned .alg none., and the initdata does not accept that"),
    (sign(VAULT, {"alg": "none"}), "an unsigned value .alg none. has a kid or a signature"),
    (unsigned(VAULT).replace("eyJhbGciOiJub25lIn0", b64url(b'{"alg":"none","kid":"kbs:///a/b/c"}')),
     "has a kid or a signature"),
    (sign(VAULT, {"alg": "ES384", "kid": KID}), "alg 'ES384' is not supported .ES256."),
    (sign(VAULT, {"alg": "RS256", "kid": KID}), "alg 'RS256' is not supported"),
    (sign(VAULT, {"alg": None, "kid": KID}), "alg None is not supported"),
    (sign(VAULT, {"kid": KID}), "alg None is not supported"),
    (sign(VAULT, {"alg": "ES256"}), "the JWS header has no kid"),
    (sign(VAULT, {"alg": "ES256", "kid": "default/signing-key/1"}), "kid 'default/signing-key/1' is not kbs:///"),
    (sign(VAULT, {"alg": "ES256", "kid": "kbs:///default/../1"}), "kid 'kbs:///default/../1' is not"),
    (sign(VAULT, {"alg": "ES256", "kid": "test-key"}), "kid 'test-key' is not kbs:///"),  # upstream's local kid
    (sign(VAULT, {"alg": "ES256", "kid": 1}), "kid 1 is not kbs:///"),
    (sign(VAULT, {"alg": "ES256", "kid": KID, "crit": ["b64"], "b64": False}), "header field crit is not supported"),
    (sign(VAULT, {"alg": "ES256", "kid": KID, "jwk": json.loads(public_jwk())}), "header field jwk is not"),
    (sign(VAULT, {"alg": "ES256", "kid": KID, "typ": 7}), "header field typ is not a string"),
    (sign(VAULT, '{"alg":"ES256","kid":"kbs:///a/b/c","kid":"' + KID + '"}'), "header is not JSON: duplicate key kid"),
    (sign(VAULT, "[]"), "header is not a JSON object"),
    (sign(VAULT, b"\xff"), "header is not JSON"),
    (sign(VAULT, "{}" * 3), "header is not JSON"),
    (sign(VAULT) + "=", "signature is not base64url"),
    (sign(VAULT) + "AA", "signature is 66 bytes, not 64"),
    # a '+' (standard base64, not base64url) in the signature: put there, not hoped for (a random signature
    # need not hold a '-' to replace)
    ("sealed." + ".".join(p if i < 2 else "+" + p[1:] for i, p in enumerate(sign(VAULT)[7:].split("."))),
     "signature is not base64url"),
    ("sealed.eyJhbGciOiJFUzI1NiJ9=.e30.", "header is not base64url"),
    (_noncanonical_header(), "header is not canonical base64url"),
    ("sealed.a.b.c.d", "is not sealed.<header>.<payload>.<signature>"),
])
def test_every_bad_seal_is_refused_naming_what(value: str, words: str) -> None:
    client = FakeClient({"default/key/db": SECRET})
    with pytest.raises(sealed.SealedSecretError, match=words):
        open_vault(value, client)
    assert "default/key/db" not in client.asked


def test_hs256_with_the_public_key_as_hmac_secret_is_refused() -> None:
    """The classic confusion: a verifier that lets the header pick the algorithm would take the public key's
    bytes as an HMAC secret. Refused at the header (only ES256), and the key is never an HMAC key either."""
    for secret in (public_pem(), public_jwk()):
        head = b64url(json.dumps({"alg": "HS256", "kid": KID}).encode())
        body = b64url(json.dumps(VAULT).encode())
        mac = hmac.HMAC(secret, hashes.SHA256())
        mac.update(f"{head}.{body}".encode())
        forged = f"sealed.{head}.{body}.{b64url(mac.finalize())}"
        with pytest.raises(sealed.SealedSecretError, match="alg 'HS256' is not supported"):
            open_vault(forged, FakeClient({KEY_PATH: secret, "default/key/db": SECRET}))
        as_es256 = forged.replace(head, b64url(json.dumps({"alg": "ES256", "kid": KID}).encode()))
        with pytest.raises(sealed.SealedSecretError, match="signature is 32 bytes, not 64"):
            open_vault(as_es256, FakeClient({KEY_PATH: secret}))
    oct_key = json.dumps({"kty": "oct", "k": b64url(public_pem())}).encode()
    with pytest.raises(sealed.SealedSecretError, match="private or symmetric key"):
        open_vault(sign(VAULT), FakeClient({KEY_PATH: oct_key}))


def _pem(key: Any) -> bytes:
    return bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo))


@pytest.mark.parametrize(("served", "words"), [
    (json.dumps({**json.loads(public_jwk()), "d": "AAAA"}).encode(), "is a private or symmetric key"),
    (private_pem(), "is a private key, not a public key"),
    (_pem(ec.generate_private_key(ec.SECP384R1())), "is a EC secp384r1 key, not EC P-256"),
    (public_jwk(crv="P-384"), "is a 'EC' 'P-384' key, not EC P-256"),
    (_pem(rsa.generate_private_key(65537, 2048)), "is a RSA key, not EC P-256"),
    (_pem(ed25519.Ed25519PrivateKey.generate()), "is a Ed25519 key, not EC P-256"),
    (public_jwk(alg="RS256"), "has alg 'RS256', not 'ES256'"),
    (public_jwk(use="enc"), "has use 'enc', not 'sig'"),
    (public_jwk(key_ops=["sign"]), "has key_ops without verify"),
    (public_jwk(key_ops="verify"), "has key_ops without verify"),
    (json.dumps({**json.loads(public_jwk()), "y": RFC7515_A3_KEY["y"]}).encode(), "not a usable ES256 key"),
    (json.dumps({**json.loads(public_jwk()), "x": 5}).encode(), "not a usable JWK"),
    (json.dumps({"kty": "EC"}).encode(), "is a 'EC' None key"),
    (json.dumps({"keys": [json.loads(public_jwk())]}).encode(), "is a None None key"),
    (json.dumps({**json.loads(public_jwk()), "kty": "RSA"}).encode(), "is a 'RSA' 'P-256' key"),
    (b'{"kty":"EC","kty":"EC"}', "neither a JWK .JSON. nor a PEM public key"),
    (b"[]", "is not a JWK"),
    (b"\xff\xfe", "neither a JWK"),
    (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "is not a PEM public key"),
    (b" " * (17 << 10), "is more than 16384 bytes"),
])
def test_a_signing_key_resource_that_is_not_a_p256_public_key_is_refused(served: bytes, words: str) -> None:
    with pytest.raises(sealed.SealedSecretError, match=f"the signing key default/signing-key/1 .*({words})"):
        open_vault(sign(VAULT), FakeClient({KEY_PATH: served, "default/key/db": SECRET}))


def test_the_opt_out_is_the_initdatas_alone() -> None:
    """Only a KbsConfig the initdata made says unsigned values are fine; a signed value is verified all
    the same."""
    assert open_vault(unsigned(VAULT), FakeClient({"default/key/db": SECRET}, OPTED_OUT)) == SECRET
    old_form = unsigned(VAULT).replace("eyJhbGciOiJub25lIn0", b64url(b'{"alg":"none","kid":""}'))  # cocoon's old header
    assert open_vault(old_form, FakeClient({"default/key/db": SECRET}, OPTED_OUT)) == SECRET
    lookalike = type("Lookalike", (), {"skip_sealed_secret_verification": True})()
    for config in (None, KbsConfig("https://kbs:1"), lookalike):
        with pytest.raises(sealed.SealedSecretError, match="unsigned"):
            open_vault(unsigned(VAULT), FakeClient({"default/key/db": SECRET}, config))
    with pytest.raises(sealed.SealedSecretError, match="does not verify"):
        open_vault(sign(VAULT, key=ec.generate_private_key(ec.SECP256R1())), FakeClient({}, OPTED_OUT))
    cdh = '[kbc]\nurl = "https://kbs:1"\n'
    assert config_from_initdata({"cdh.toml": cdh}) == KbsConfig("https://kbs:1")
    assert config_from_initdata({"cdh.toml": "skip_sealed_secret_verification = true\n" + cdh}) == OPTED_OUT
    assert config_from_initdata({"cdh.toml": "skip_sealed_secret_verification = true\n",
                                 "aa.toml": '[token_configs.kbs]\nurl = "https://kbs:1"\n'}) == OPTED_OUT
    assert config_from_initdata({"aa.toml": 'skip_sealed_secret_verification = true\n[token_configs.kbs]\n'
                                            'url = "https://kbs:1"\n'}) == KbsConfig("https://kbs:1")
    for bad in ('"true"', "1"):
        with pytest.raises(AgentError, match="skip_sealed_secret_verification is not true or false"):
            config_from_initdata({"cdh.toml": f"skip_sealed_secret_verification = {bad}\n" + cdh})


def test_the_environment_path_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sealed, "CLIENT", FakeClient({"default/key/db": SECRET}))
    assert sealed.unseal_env(["DB=" + sign(VAULT)]) == ["DB=hunter2"]
    with pytest.raises(sealed.SealedSecretError, match="env DB: sealed secret is unsigned"):
        sealed.unseal_env(["DB=" + unsigned(VAULT)])
    with pytest.raises(sealed.SealedSecretError, match="env DB: sealed secret: the JWS signature does not verify"):
        sealed.unseal_env(["DB=" + sign(VAULT, key=ec.generate_private_key(ec.SECP256R1()))])
    with pytest.raises(sealed.SealedSecretError, match=r"env DB: sealed secret: fetching the signing key "
                                                       r"default/signing-key/2 failed: .*PolicyDeny"):
        sealed.unseal_env(["DB=" + sign(VAULT, {"alg": "ES256", "kid": "kbs:///default/signing-key/2"})])
    monkeypatch.setattr(sealed, "CLIENT", None)
    with pytest.raises(sealed.SealedSecretError, match="env DB: sealed secret: JWS alg 'HS256'"):
        sealed.unseal_env(["DB=" + sign(VAULT, {"alg": "HS256", "kid": KID})])  # junk is said even without a KBS


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)
HEADERS = st.fixed_dictionaries({}, optional={"alg": st.sampled_from(["ES256", "none", "HS256", "ES384", ""]) | JSON,
                                              "kid": st.sampled_from([KID, "", "kbs:///a/b", "x"]) | JSON,
                                              "typ": JSON, "crit": JSON})


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="AEIQgw_-.=+/eyJ0 \n\u00e9", max_size=200))
def test_junk_after_the_prefix_is_the_modules_own_error(junk: str) -> None:
    with pytest.raises(sealed.SealedSecretError):
        open_vault("sealed." + junk)


@settings(max_examples=300, deadline=None)
@given(HEADERS, st.binary(max_size=80), st.binary(max_size=80), st.booleans())
def test_any_header_payload_and_signature_is_the_modules_own_error(header: dict[str, Any], payload: bytes,
                                                                   signature: bytes, opted: bool) -> None:
    value = f"sealed.{b64url(json.dumps(header).encode())}.{b64url(payload)}.{b64url(signature)}"
    with pytest.raises(sealed.SealedSecretError):
        open_vault(value, FakeClient({"default/key/db": SECRET}, OPTED_OUT if opted else None))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), JSON.map(lambda doc: json.dumps(doc).encode()),
                 st.dictionaries(st.sampled_from(["kty", "crv", "x", "y", "alg", "use", "key_ops", "kid", "n", "e"]),
                                 JSON | st.sampled_from(["EC", "P-256", "ES256", "sig", "AQAB"]), max_size=6)
                 .map(lambda doc: json.dumps(doc).encode())))
def test_any_key_resource_is_the_modules_own_error(served: bytes) -> None:
    """Junk, or a JWK-like document that is not the signer's key: refused, never verified."""
    with pytest.raises(sealed.SealedSecretError):
        open_vault(sign(VAULT), FakeClient({KEY_PATH: served, "default/key/db": SECRET}))


# --- `cocoon kbs seal` ----------------------------------------------------------------------------------


def seal_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from cocoon.cli import main

    code = main(["kbs", "seal", *args])
    out = capsys.readouterr()
    return code, out.out.strip(), out.err


def test_cocoon_kbs_seal_signs_or_says_unsigned_explicitly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "signer.pem").write_bytes(private_pem())
    signing = ("--signing-key", str(tmp_path / "signer.pem"), "--kid", KID)
    code, value, err = seal_cli(capsys, *signing, "kbs:///default/key/db")
    assert code == 0, err
    assert open_vault(value) == SECRET  # the guest's check with the public JWK at the kid
    head, body, sig = value[len("sealed."):].split(".")
    raw = base64.urlsafe_b64decode(sig + "==")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    PRIVATE.public_key().verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
    code, value, err = seal_cli(capsys, "--unsigned", "kbs:///default/key/db")
    assert code == 0, err
    assert value == unsigned(json.dumps(VAULT, separators=(",", ":")))
    assert open_vault(value, FakeClient({"default/key/db": SECRET}, OPTED_OUT)) == SECRET
    (tmp_path / "ed.pem").write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "junk.pem").write_bytes(b"junk")
    for args, words in (
            ((), "seal takes --signing-key PEM and --kid"),
            (("--signing-key", str(tmp_path / "signer.pem")), "seal takes --signing-key PEM and --kid"),
            (("--kid", KID), "seal takes --signing-key PEM and --kid"),
            (("--unsigned", *signing), "--unsigned takes no --signing-key or --kid"),
            (("--signing-key", str(tmp_path / "signer.pem"), "--kid", "default/signing-key/1"), "is not kbs:///"),
            (("--signing-key", str(tmp_path / "signer.pem"), "--kid", "kbs:///a/../b"), "is not <repo>/<type>/<tag>"),
            (("--signing-key", str(tmp_path / "ed.pem"), "--kid", KID), "not an EC P-256 private key"),
            (("--signing-key", str(tmp_path / "junk.pem"), "--kid", KID), "not a PEM private key"),
            (("--signing-key", str(tmp_path / "none.pem"), "--kid", KID), "none.pem: No such file")):
        code, _, err = seal_cli(capsys, *args, "kbs:///default/key/db")
        assert code == 2 and words in err and "Traceback" not in err, (args, err)
    (tmp_path / "kek").write_bytes(bytes(32))
    code, _, err = seal_cli(capsys, "--envelope", "--key-id", "kbs:///default/key/kek", "--kek", str(tmp_path / "kek"),
                            "--plaintext", str(tmp_path / "kek"))
    assert code == 2 and "seal takes --signing-key PEM and --kid" in err, err
