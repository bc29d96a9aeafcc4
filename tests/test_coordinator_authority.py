"""The coordinator's authority core (issue 21): manifests, who may change them, recovery, mesh identities.

No network here: the tests call coordinator.authority directly with the caller's key digest, as the gRPC
layer will after aTLS.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509 import verification
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator import authority as authority_mod
from coordinator import store as store_mod
from coordinator.authority import (
    Authority,
    CoordinatorError,
    FailedPrecondition,
    InvalidArgument,
    Manifests,
    NeedsRecovery,
    PermissionDenied,
    StateCorrupted,
)
from coordinator.ca import root_certificate, split_sans
from coordinator.seed import (
    SEED_SIZE,
    SeedEngine,
    SeedShareDocument,
    decrypt_share,
    owner_digest,
    public_key_digest,
)
from generator.manifest import snp_values

SEEDSHARE_KEY = rsa.generate_private_key(65537, 2048)
OTHER_RSA = rsa.generate_private_key(65537, 2048)
OWNER_KEY = ec.generate_private_key(ec.SECP384R1())
STRANGER_KEY = ec.generate_private_key(ec.SECP384R1())


def rsa_hex(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1).hex()


def ec_digest(key: ec.EllipticCurvePrivateKey) -> str:
    """Contrast's workload-owner digest: sha256 of the PKIX DER public key."""
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


OWNER = ec_digest(OWNER_KEY)
assert public_key_digest(OWNER_KEY.public_key()) == OWNER
STRANGER = ec_digest(STRANGER_KEY)
RECOVERER = owner_digest(rsa_hex(SEEDSHARE_KEY))
assert public_key_digest(SEEDSHARE_KEY.public_key()) == RECOVERER


def initdata(name: str) -> bytes:
    return f'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"pod" = "{name}"\n'.encode()


def manifest(pods: dict[str, dict[str, Any]], *, owners: list[str] | None = None,
             seedshare: list[str] | None = None, **extra: Any) -> tuple[bytes, list[bytes]]:
    """(manifest bytes, policy blobs) for pods named -> their policy entry."""
    blobs = [initdata(name) for name in pods]
    doc = {"Policies": {hashlib.sha256(b).hexdigest(): entry for b, entry in zip(blobs, pods.values(), strict=True)},
           "ReferenceValues": {"snp": snp_values({"snp": {"measurements": [{"measurement": "ab" * 48}]}}, "sim")},
           "WorkloadOwnerKeyDigests": [OWNER] if owners is None else owners,
           "SeedshareOwnerPubKeys": [rsa_hex(SEEDSHARE_KEY)] if seedshare is None else seedshare, **extra}
    return json.dumps(doc, indent=2).encode(), blobs


def host_data(name: str) -> str:
    return hashlib.sha256(initdata(name)).hexdigest()


WEB: dict[str, dict[str, Any]] = {
    "web": {"SANs": ["web", "10.0.0.1", "spiffe://cocoon/web"], "WorkloadSecretID": "apps/v1/Deployment/default/web"}}
BOTH: dict[str, dict[str, Any]] = {
    **WEB, "api": {"SANs": ["api"], "WorkloadSecretID": "apps/v1/Deployment/default/api"}}


def pod_key() -> ec.EllipticCurvePublicKey:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


def started(path: Path, pods: dict[str, dict[str, Any]] = WEB) -> tuple[Authority, SeedShareDocument]:
    auth = Authority(str(path))
    raw, blobs = manifest(pods)
    result = auth.set_manifest(raw, blobs, None)
    assert result.seed_shares is not None
    return auth, result.seed_shares


def seed_of(doc: SeedShareDocument) -> tuple[bytes, bytes]:
    return decrypt_share(SEEDSHARE_KEY, doc.shares[0]), doc.salt


def certs(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


# first manifest, updates, refusals


def test_first_manifest_creates_the_seed_and_returns_the_shares_once(tmp_path: Path) -> None:
    auth, shares = started(tmp_path)
    assert len(shares.shares) == 1 and shares.shares[0].public_key == rsa_hex(SEEDSHARE_KEY)
    seed, salt = seed_of(shares)
    assert len(seed) == SEED_SIZE and len(salt) == 32
    got = auth.get_manifests()
    assert got.manifests == [manifest(WEB)[0]] and got.policies == [initdata("web")]
    assert got.root_ca_pem == root_certificate(SeedEngine(seed, salt)).public_bytes(serialization.Encoding.PEM)
    raw, blobs = manifest(BOTH)
    assert auth.set_manifest(raw, blobs, OWNER).seed_shares is None


def test_an_authorised_update_extends_the_history(tmp_path: Path) -> None:
    auth, _ = started(tmp_path)
    before = auth.get_manifests()
    raw, blobs = manifest(BOTH)
    result = auth.set_manifest(raw, blobs, OWNER.upper())
    after = auth.get_manifests()
    assert after.manifests == [*before.manifests, raw]
    assert sorted(after.policies) == sorted([initdata("web"), initdata("api")])
    assert result.root_ca_pem == before.root_ca_pem == after.root_ca_pem
    assert result.mesh_ca_pem == after.mesh_ca_pem != before.mesh_ca_pem
    assert auth.current_manifest() == json.loads(raw)


@pytest.mark.parametrize("signer", [None, STRANGER, ""])
def test_an_update_from_a_key_not_in_the_current_manifest_is_refused(tmp_path: Path, signer: str | None) -> None:
    auth, _ = started(tmp_path)
    before = auth.get_manifests()
    raw, blobs = manifest(BOTH, owners=[STRANGER])  # the NEW manifest naming the signer does not count
    with pytest.raises(PermissionDenied, match="not in the current manifest's WorkloadOwnerKeyDigests"):
        auth.set_manifest(raw, blobs, signer)
    assert auth.get_manifests() == before


def test_an_empty_owner_list_disables_updates(tmp_path: Path) -> None:
    auth = Authority(str(tmp_path))
    raw, blobs = manifest(WEB, owners=[])
    auth.set_manifest(raw, blobs, None)
    before = auth.get_manifests()
    raw, blobs = manifest(BOTH)
    with pytest.raises(PermissionDenied, match="setting manifest is disabled"):
        auth.set_manifest(raw, blobs, OWNER)
    assert auth.get_manifests() == before


@pytest.mark.parametrize("seedshare", [[], [rsa_hex(OTHER_RSA)], [rsa_hex(SEEDSHARE_KEY), rsa_hex(OTHER_RSA)]])
def test_seed_share_owners_cannot_change(tmp_path: Path, seedshare: list[str]) -> None:
    auth, _ = started(tmp_path)
    before = auth.get_manifests()
    raw, blobs = manifest(BOTH, seedshare=seedshare)
    with pytest.raises(PermissionDenied, match="changes to seedshare owners are not allowed"):
        auth.set_manifest(raw, blobs, OWNER)
    assert auth.get_manifests() == before


def test_policy_blobs_must_match_the_manifest(tmp_path: Path) -> None:
    auth, _ = started(tmp_path)
    before = auth.get_manifests()
    raw, blobs = manifest(BOTH)
    with pytest.raises(InvalidArgument, match=f"no policy provided for hash {host_data('api')}"):
        auth.set_manifest(raw, blobs[:1], OWNER)
    with pytest.raises(InvalidArgument, match=f"no policy provided for hash {host_data('api')}"):
        auth.set_manifest(raw, [blobs[0], blobs[1] + b"\n"], OWNER)  # a changed blob: another hash
    with pytest.raises(InvalidArgument, match="is not in the manifest's Policies"):
        auth.set_manifest(raw, [*blobs, b"stray"], OWNER)
    assert auth.get_manifests() == before


def _valid_doc() -> dict[str, Any]:
    return json.loads(manifest(WEB)[0])  # type: ignore[no-any-return]


MALFORMED: list[tuple[bytes, str]] = [
    (b"", "not valid JSON"),
    (b"[]", "expected a JSON object"),
    (b'{"Policies": {}, "Policies": {}}', "duplicate key"),
    (b'{"Policies": NaN}', "NaN is not JSON"),
    (json.dumps({**_valid_doc(), "Polices": {}}).encode(), "unknown key 'Polices'"),
    (json.dumps({**_valid_doc(), "Policies": {"AB" * 32: {}}}).encode(), "lower-case hex"),
    (json.dumps({**_valid_doc(), "Policies": {"ab" * 32: {"SAN": []}}}).encode(), "unknown key 'SAN'"),
    (json.dumps({**_valid_doc(), "Policies": {"ab" * 32: {"Role": "boss"}}}).encode(), "Role"),
    (json.dumps({**_valid_doc(), "Policies": {"ab" * 32: {"SANs": [1]}}}).encode(), "SANs"),
    (json.dumps({**_valid_doc(), "Policies": {"ab" * 32: {"SANs": ["ü.example"]}}}).encode(), "printable ASCII"),
    (json.dumps({**_valid_doc(), "Policies": {"ab" * 32: {"SANs": [""]}}}).encode(), "SANs"),
    (json.dumps({**_valid_doc(), "WorkloadOwnerKeyDigests": ["xyz"]}).encode(), "WorkloadOwnerKeyDigests"),
    (json.dumps({**_valid_doc(), "SeedshareOwnerPubKeys": ["00"]}).encode(), "SeedshareOwnerPubKeys"),
    (json.dumps({**_valid_doc(), "SeedshareOwnerPubKeys": [7]}).encode(), "SeedshareOwnerPubKeys"),
    (json.dumps({**_valid_doc(), "ReferenceValues": {"snp": [{}]}}).encode(), "ReferenceValues"),
    (json.dumps({**_valid_doc(), "ReferenceValues": {"sev": []}}).encode(), "ReferenceValues"),
]


@pytest.mark.parametrize(("raw", "why"), MALFORMED)
def test_malformed_manifests_are_refused_saying_why(tmp_path: Path, raw: bytes, why: str) -> None:
    auth = Authority(str(tmp_path))
    with pytest.raises(InvalidArgument, match=why):
        auth.set_manifest(raw, [], None)
    assert not auth.needs_recovery
    with pytest.raises(FailedPrecondition, match="no manifest"):
        auth.get_manifests()
    assert not os.path.exists(tmp_path / "latest")


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=3), max_leaves=8)
FIELDS = st.sampled_from(["Policies", "ReferenceValues", "WorkloadOwnerKeyDigests", "SeedshareOwnerPubKeys"])


def test_random_input_never_crashes_and_never_changes_the_state(tmp_path: Path) -> None:
    """A refusal leaves the state as it was; what is accepted (a mutation may still be a valid manifest, e.g.
    empty Policies) is appended whole."""
    auth, _ = started(tmp_path)
    state = [auth.get_manifests()]
    valid = _valid_doc()

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.one_of(st.binary(max_size=200),
                     st.builds(lambda k, v: json.dumps({**valid, k: v}).encode(), FIELDS, JSON),
                     st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(FIELDS, JSON))),
           st.lists(st.binary(max_size=20), max_size=2), st.sampled_from([OWNER, STRANGER, None]))
    def attempt(raw: bytes, blobs: list[bytes], signer: str | None) -> None:
        before = state[0]
        try:
            auth.set_manifest(raw, blobs, signer)
        except CoordinatorError:
            assert auth.get_manifests() == before
            return
        after = auth.get_manifests()
        assert signer == OWNER and after.manifests == [*before.manifests, raw]
        assert after.root_ca_pem == before.root_ca_pem
        state[0] = after

    attempt()


# restart and recovery


def test_a_restarted_coordinator_refuses_until_recovered_then_is_what_it_was(tmp_path: Path) -> None:
    auth, shares = started(tmp_path)
    raw, blobs = manifest(BOTH)
    auth.set_manifest(raw, blobs, OWNER)
    before = auth.get_manifests()
    seed, salt = seed_of(shares)

    again = Authority(str(tmp_path))
    assert again.needs_recovery
    for call in (again.get_manifests, again.current_manifest, lambda: again.mesh_identity(host_data("web"),
                                                                                         pod_key())):
        with pytest.raises(NeedsRecovery, match="needs recovery"):
            call()
    with pytest.raises(NeedsRecovery, match="recovery mode"):
        again.set_manifest(raw, blobs, OWNER)
    with pytest.raises(PermissionDenied, match="not one of the current manifest's SeedshareOwnerPubKeys"):
        again.recover(seed, salt, owner_digest(rsa_hex(OTHER_RSA)))
    with pytest.raises(PermissionDenied, match="does not verify with this seed"):
        again.recover(os.urandom(SEED_SIZE), salt, RECOVERER)
    with pytest.raises(InvalidArgument, match="the seed is 3 bytes"):
        again.recover(b"abc", salt, RECOVERER)
    assert again.needs_recovery

    again.recover(seed, salt, RECOVERER)
    after = again.get_manifests()
    assert after.manifests == before.manifests and after.policies == before.policies
    assert after.root_ca_pem == before.root_ca_pem and after.latest_transition == before.latest_transition
    assert after.mesh_ca_pem == before.mesh_ca_pem  # derived from the seed and the history, not stored
    with pytest.raises(FailedPrecondition, match="does not need recovery"):
        again.recover(seed, salt, RECOVERER)
    # it goes on from where it was
    raw3, blobs3 = manifest(WEB)
    again.set_manifest(raw3, blobs3, OWNER)
    assert again.get_manifests().manifests == [*before.manifests, raw3]


def _recovered(path: Path, shares: SeedShareDocument) -> Manifests:
    auth = Authority(str(path))
    auth.recover(*seed_of(shares), RECOVERER)
    return auth.get_manifests()


def test_pods_certified_before_and_after_a_restart_trust_each_other(tmp_path: Path) -> None:
    auth, shares = started(tmp_path)
    before = auth.mesh_identity(host_data("web"), pod_key())
    again = Authority(str(tmp_path))
    again.recover(*seed_of(shares), RECOVERER)
    after = again.mesh_identity(host_data("web"), pod_key())
    assert (after.mesh_ca_pem, after.root_ca_pem) == (before.mesh_ca_pem, before.root_ca_pem)
    assert certs(after.cert_chain_pem)[1] == certs(before.cert_chain_pem)[1]  # the same intermediate
    for identity, anchor in ((before, after), (after, before)):
        certs(identity.cert_chain_pem)[0].verify_directly_issued_by(certs(anchor.mesh_ca_pem)[0])


@pytest.mark.parametrize("kind", ["manifests", "policies", "transitions"])
def test_a_flipped_byte_in_a_stored_object_is_caught_on_recovery(tmp_path: Path, kind: str) -> None:
    _, shares = started(tmp_path)
    (stored,) = (tmp_path / kind).iterdir()
    data = bytearray(stored.read_bytes())
    data[5] ^= 1
    stored.write_bytes(bytes(data))
    with pytest.raises(StateCorrupted, match=f"{kind}/{stored.name} does not match its hash"):
        _recovered(tmp_path, shares)


def test_a_second_coordinator_on_the_same_directory_cannot_overwrite_the_first(tmp_path: Path) -> None:
    first, shares = started(tmp_path)
    second = Authority(str(tmp_path))
    second.recover(*seed_of(shares), RECOVERER)
    raw, blobs = manifest(BOTH)
    second.set_manifest(raw, blobs, OWNER)
    before = first.get_manifests()
    with pytest.raises(FailedPrecondition, match="pointer moved"):
        first.set_manifest(*manifest({"api": BOTH["api"]}), OWNER)
    assert first.get_manifests() == before
    assert _recovered(tmp_path, shares).manifests == [manifest(WEB)[0], raw]


def test_a_missing_policy_is_caught_on_recovery(tmp_path: Path) -> None:
    _, shares = started(tmp_path)
    (tmp_path / "policies" / host_data("web")).unlink()
    with pytest.raises(StateCorrupted, match="missing"):
        _recovered(tmp_path, shares)


def test_a_rewritten_latest_pointer_is_caught_on_recovery(tmp_path: Path) -> None:
    auth, shares = started(tmp_path)
    raw, blobs = manifest(BOTH)
    auth.set_manifest(raw, blobs, OWNER)
    latest = tmp_path / "latest"
    good = latest.read_bytes()
    # a host that forges a history of its own: a transition to a manifest it wrote, signed with its own key
    forged = store_mod.Store(tmp_path)
    first = forged.history(good[:32])[0][0]
    evil = manifest(BOTH, owners=[STRANGER])[0]
    transition = forged.put_transition(forged.put_manifest(evil), first)
    signature = authority_mod._sign(SeedEngine.generate(), transition)
    for pointer in (transition + signature, first + good[32:], good[:32] + bytes(len(good) - 32), good[:32]):
        latest.write_bytes(pointer)
        with pytest.raises(CoordinatorError, match=r"signature|no signature"):
            _recovered(tmp_path, shares)
    latest.write_bytes(good)
    assert len(_recovered(tmp_path, shares).manifests) == 2


# mesh identities


def test_the_mesh_ca_rotates_on_every_manifest_and_the_root_stays(tmp_path: Path) -> None:
    auth, _ = started(tmp_path)
    old = auth.mesh_identity(host_data("web"), pod_key())
    raw, blobs = manifest(BOTH)
    auth.set_manifest(raw, blobs, OWNER)
    new = auth.mesh_identity(host_data("web"), pod_key())
    assert old.root_ca_pem == new.root_ca_pem and old.mesh_ca_pem != new.mesh_ca_pem
    same = auth.get_manifests().manifests[-1]
    assert auth.set_manifest(same, manifest(BOTH)[1], OWNER).mesh_ca_pem != new.mesh_ca_pem  # even unchanged
    (root,) = certs(new.root_ca_pem)
    old_leaf, old_intermediate = certs(old.cert_chain_pem)
    new_leaf, new_intermediate = certs(new.cert_chain_pem)

    def verifies(anchor: bytes, leaf: x509.Certificate, intermediate: x509.Certificate) -> bool:
        verifier = (verification.PolicyBuilder().store(verification.Store(certs(anchor)))
                    .build_server_verifier(x509.DNSName("web")))
        try:
            verifier.verify(leaf, [intermediate])
        except verification.VerificationError:
            return False
        return True

    assert verifies(old.mesh_ca_pem, old_leaf, old_intermediate)
    assert verifies(new.mesh_ca_pem, new_leaf, new_intermediate)
    assert not verifies(new.mesh_ca_pem, old_leaf, old_intermediate)  # certified under manifest N, not N+1
    assert not verifies(old.mesh_ca_pem, new_leaf, new_intermediate)
    assert verifies(new.root_ca_pem, old_leaf, old_intermediate)  # the root trusts every manifest's pods
    assert verifies(new.root_ca_pem, new_leaf, new_intermediate)
    with pytest.raises(InvalidSignature):
        old_leaf.verify_directly_issued_by(certs(new.mesh_ca_pem)[0])
    new_intermediate.verify_directly_issued_by(root)


def test_a_mesh_certificate_carries_the_pods_key_and_sans(tmp_path: Path) -> None:
    auth, _ = started(tmp_path)
    key = pod_key()
    identity = auth.mesh_identity(host_data("web").upper(), key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    leaf = certs(identity.cert_chain_pem)[0]
    assert leaf.public_key() == key
    assert leaf.subject.rfc4514_string() == "CN=web"
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(sans) == split_sans(WEB["web"]["SANs"])
    assert [type(n).__name__ for n in sans] == ["DNSName", "IPAddress", "UniformResourceIdentifier"]
    with pytest.raises(InvalidArgument, match="SubjectPublicKeyInfo"):
        auth.mesh_identity(host_data("web"), b"not a key")


@pytest.mark.parametrize("sans", [[], ["a" * 65, "b"], ["10.0.0.1"], ["spiffe://x/y"], ["a" * 200]])
def test_any_accepted_san_list_gives_a_certificate(tmp_path: Path, sans: list[str]) -> None:
    auth, _ = started(tmp_path, {"web": {"SANs": sans}})
    leaf = certs(auth.mesh_identity(host_data("web"), pod_key()).cert_chain_pem)[0]
    cn = leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert [a.value for a in cn] == [s for s in sans if len(s) <= 64 and s[0].isalpha() and "/" not in s][:1]


def test_random_sans_are_refused_at_set_manifest_or_certified(tmp_path: Path) -> None:
    auth, _ = started(tmp_path)
    key = pod_key()

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.text(max_size=70) | st.from_regex(r"[a-z0-9.:/*-]{1,80}", fullmatch=True), max_size=4))
    def attempt(sans: list[str]) -> None:
        try:
            auth.set_manifest(*manifest({"web": {"SANs": sans}}), OWNER)
        except InvalidArgument:
            return
        assert certs(auth.mesh_identity(host_data("web"), key).cert_chain_pem)[0].public_key() == key

    attempt()


def test_a_pod_whose_policy_is_not_in_the_manifest_is_refused_by_hash(tmp_path: Path) -> None:
    auth, _ = started(tmp_path)
    with pytest.raises(PermissionDenied, match=f"policy hash {host_data('api')} not found in manifest"):
        auth.mesh_identity(host_data("api"), pod_key())
    with pytest.raises(FailedPrecondition, match="no manifest"):
        Authority(str(tmp_path / "fresh")).mesh_identity(host_data("web"), pod_key())


def test_workload_secrets_are_deterministic_per_seed_and_id(tmp_path: Path) -> None:
    auth, shares = started(tmp_path, {**WEB, "anon": {"SANs": []}})
    seed, salt = seed_of(shares)
    engine = SeedEngine(seed, salt)
    sid = WEB["web"]["WorkloadSecretID"]
    # the derivation as Contrast's seedengine documents it, spelt out with the library's HKDF
    pod_state = HKDF(hashes.SHA256(), 64, salt, b"POD STATE SECRET").derive(seed)
    expected = HKDF(hashes.SHA256(), 64, salt, f"WORKLOAD SECRET ID: {sid}".encode()).derive(pod_state)
    assert engine.workload_secret(sid) == SeedEngine(seed, salt).workload_secret(sid) == expected
    assert engine.workload_secret(sid + "x") != expected
    assert SeedEngine.generate().workload_secret(sid) != expected
    assert auth.mesh_identity(host_data("web"), pod_key()).workload_secret == expected
    assert auth.mesh_identity(host_data("anon"), pod_key()).workload_secret == b""
    again = Authority(str(tmp_path))
    again.recover(seed, salt, RECOVERER)
    assert again.mesh_identity(host_data("web"), pod_key()).workload_secret == expected


def test_the_root_ca_is_a_function_of_the_seed() -> None:
    engine = SeedEngine.generate()
    der = root_certificate(engine).public_bytes(serialization.Encoding.DER)
    assert root_certificate(SeedEngine(engine.seed, engine.salt)).public_bytes(serialization.Encoding.DER) == der
    assert root_certificate(SeedEngine.generate()).public_bytes(serialization.Encoding.DER) != der
    with pytest.raises(ValueError, match="salt is 31 bytes"):
        SeedEngine(engine.seed, engine.salt[:31])


# crash consistency

UPDATES = [manifest(WEB), manifest(BOTH), manifest({"api": BOTH["api"]}), manifest(BOTH)]


def _run(path: Path) -> tuple[list[bytes], SeedShareDocument | None]:
    """Apply UPDATES in order, each failure transient; the manifests that were accepted, and the shares."""
    auth = Authority(str(path))
    accepted: list[bytes] = []
    shares = None
    for raw, blobs in UPDATES:
        try:
            result = auth.set_manifest(raw, blobs, OWNER)
        except CoordinatorError as exc:
            assert exc.code == "INTERNAL"
            continue
        accepted.append(raw)
        shares = shares or result.seed_shares
    return accepted, shares


def _replaces(path: Path) -> int:
    calls = []
    real = os.replace

    def counting(src: Any, dst: Any) -> None:
        calls.append(dst)
        real(src, dst)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "replace", counting)
        _run(path)
    return len(calls)


def _failing_at(k: int, after: bool) -> Any:
    """os.replace that fails at its k-th call, before renaming or (``after``) once the rename is done."""
    calls = [0]
    real = os.replace

    def failing(src: Any, dst: Any) -> None:
        calls[0] += 1
        if calls[0] == k and not after:
            raise OSError(5, "simulated crash before the rename")
        real(src, dst)
        if calls[0] == k:
            raise OSError(5, "simulated crash after the rename")

    return failing


@pytest.mark.parametrize("after", [False, True], ids=["before-rename", "after-rename"])
def test_a_crash_at_any_write_leaves_a_prefix_of_the_accepted_history(tmp_path: Path, after: bool) -> None:
    total = _replaces(tmp_path / "count")
    # per update: each new policy, the manifest (unless stored already), its transition, latest: 4+4+3+2
    assert total == 13
    for k in range(1, total + 1):
        path = tmp_path / f"k{k}"
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(os, "replace", _failing_at(k, after))
            accepted, shares = _run(path)
        assert len(accepted) >= len(UPDATES) - 1
        assert not any(p.name.startswith(".tmp-") for d in path.rglob("*") if d.is_dir() for p in d.iterdir())
        (path / "manifests" / ".tmp-killed").write_bytes(b"half")  # what kill -9 mid-write leaves
        restarted = Authority(str(path))
        assert not (path / "manifests" / ".tmp-killed").exists()
        if shares is None:  # the first manifest failed and nothing else was accepted
            assert not restarted.needs_recovery and accepted == []
            continue
        assert _recovered(path, shares).manifests == accepted, f"crash at write {k}"


STORM = """
import hashlib, sys
sys.path.insert(0, "tests")
import test_coordinator_authority as t
from coordinator.authority import Authority

auth = Authority(sys.argv[1])
for i in range(100000):
    raw, blobs = t.manifest({**t.WEB, f"p{i}": {"SANs": [f"p{i}"]}})
    result = auth.set_manifest(raw, blobs, t.OWNER if i else None)
    if result.seed_shares is not None:
        seed, salt = t.seed_of(result.seed_shares)
        print("seed", seed.hex(), salt.hex(), t.RECOVERER, flush=True)
    print("ok", hashlib.sha256(raw).hexdigest(), flush=True)
"""


@pytest.mark.parametrize("lines", [2, 5, 11])
def test_kill_9_during_a_set_manifest_storm_loses_nothing_accepted(tmp_path: Path, lines: int) -> None:
    """A real SIGKILL at some point of a stream of updates: the recovered history is exactly the updates the
    process reported accepted, plus at most the one it committed but was killed before reporting."""
    root = Path(__file__).resolve().parent.parent
    child = subprocess.Popen([sys.executable, "-c", STORM, str(tmp_path / "state")], cwd=root, text=True,
                             stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(root)})
    assert child.stdout is not None
    out = [child.stdout.readline() for _ in range(lines)]
    time.sleep(0.005 * lines)
    child.send_signal(signal.SIGKILL)
    out += child.stdout.readlines()
    child.wait()
    assert child.returncode == -signal.SIGKILL
    seed_line, *oks = [line.split() for line in out if line.strip()]
    assert seed_line[0] == "seed" and all(ok[0] == "ok" for ok in oks)
    auth = Authority(str(tmp_path / "state"))
    auth.recover(bytes.fromhex(seed_line[1]), bytes.fromhex(seed_line[2]), seed_line[3])
    history = [hashlib.sha256(m).hexdigest() for m in auth.get_manifests().manifests]
    reported = [ok[1] for ok in oks]
    assert history[:len(reported)] == reported and len(history) - len(reported) in (0, 1)


@pytest.mark.parametrize("platform", ["sim", "snp", "tdx"])
def test_a_manifest_cocoon_generate_writes_is_accepted(tmp_path: Path, platform: str) -> None:
    from generator.manifest import dumps, reference_values, update

    refs = {"snp": {"measurements": [{"measurement": "ab" * 48, "vcpu_type": "EPYC-Genoa"}]},
            "tdx": {"mrtd": {"ovmf": "11" * 48}, "rtmr": {"rtmr1": "22" * 48, "rtmr2": ["33" * 48, "44" * 48]},
                    "xfam": "0x00000000000602e7"}}
    doc = update({"SeedshareOwnerPubKeys": [rsa_hex(SEEDSHARE_KEY)]}, reference_values(refs, platform),
                 {host_data("web"): ("apps/v1/Deployment/default/web", ["web", "*"])})
    auth = Authority(str(tmp_path))
    auth.set_manifest(dumps(doc), [initdata("web")], None)
    assert auth.current_manifest() == doc


def test_identities_issued_during_updates_are_consistent(tmp_path: Path) -> None:
    """Threads asking for certificates while manifests change: each answer's certificate verifies under the
    mesh CA in the same answer (one manifest's state, never a mix)."""
    from concurrent.futures import ThreadPoolExecutor

    auth, _ = started(tmp_path)
    key = pod_key()

    def ask(_: int) -> None:
        identity = auth.mesh_identity(host_data("web"), key)
        leaf, intermediate = certs(identity.cert_chain_pem)
        leaf.verify_directly_issued_by(certs(identity.mesh_ca_pem)[0])
        intermediate.verify_directly_issued_by(certs(identity.root_ca_pem)[0])

    with ThreadPoolExecutor(8) as pool:
        asked = [pool.submit(ask, i) for i in range(80)]
        for _ in range(5):
            auth.set_manifest(*manifest(WEB), OWNER)
        for future in asked:
            future.result()
    assert len(auth.get_manifests().manifests) == 6
