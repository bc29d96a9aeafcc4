"""The coordinator's authority: which manifest is in force, who may change it, and what a pod gets.

A pure library (no network): the gRPC/aTLS layer authenticates the caller (the digest of its TLS key),
verifies a pod's evidence with verifier.api against ``current_manifest()``'s reference values, and then
calls this. Rules are Contrast's (research/coordinator-kbs.md 1.2, 1.3; contrast
``coordinator/internal/authority/userapi.go``, ``meshapi.go``):

- The first manifest creates the seed; the seed shares (the seed encrypted to each seed-share owner) are
  returned by that call and never again.
- A later manifest needs a signer whose key digest is in the CURRENT manifest's ``WorkloadOwnerKeyDigests``
  (an empty list disables updates); ``SeedshareOwnerPubKeys`` cannot change.
- Every key of ``Policies`` must come with its policy blob (blob sha256 = key), and every blob must be one
  of them.
- Every manifest gets a fresh mesh CA; the root CA stays (it is derived from the seed).
- A coordinator started on an existing state directory serves nothing until a seed-share owner recovers it
  with the seed and salt; the history, checked hash by hash and against the signed ``latest`` pointer, and
  the root CA and the current mesh CA are then exactly what they were (both are derived from the seed and
  the history, nothing secret is on disk), so pods certified before and after the restart trust each other.

Every refusal leaves the state as it was; each kind is its own CoordinatorError subclass whose ``code``
is the gRPC status name the network layer answers with.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from coordinator.ca import MeshCA, pem, root_certificate, split_sans
from coordinator.seed import SeedEngine, SeedShareDocument, load_rsa_public, owner_digest
from coordinator.store import ZERO_HASH, StateError, Store, sha256

MANIFEST_KEYS = ("Policies", "ReferenceValues", "WorkloadOwnerKeyDigests", "SeedshareOwnerPubKeys")
POLICY_KEYS = ("SANs", "WorkloadSecretID", "Role")
ROLES = ("", "coordinator")
_HEX = frozenset("0123456789abcdef")


class CoordinatorError(Exception):
    """A refusal; ``code`` names the gRPC status it maps to."""

    code = "UNKNOWN"


class InvalidArgument(CoordinatorError):
    """The request itself is wrong (malformed manifest, missing or mismatching policy blob, bad seed size)."""

    code = "INVALID_ARGUMENT"


class PermissionDenied(CoordinatorError):
    """The caller may not do this (not a workload owner, updates disabled, unknown policy, wrong seed)."""

    code = "PERMISSION_DENIED"


class FailedPrecondition(CoordinatorError):
    """Not now: no manifest yet, or already recovered."""

    code = "FAILED_PRECONDITION"


class NeedsRecovery(FailedPrecondition):
    """The coordinator restarted on existing state and waits for a seed-share owner's ``recover``."""


class StateCorrupted(CoordinatorError):
    """The state directory does not check out (hash mismatch, missing object, unreadable manifest)."""

    code = "DATA_LOSS"


class Internal(CoordinatorError):
    """Persisting failed (disk error); nothing was committed."""

    code = "INTERNAL"


class SetManifestResult(NamedTuple):
    root_ca_pem: bytes
    mesh_ca_pem: bytes
    seed_shares: SeedShareDocument | None


class Manifests(NamedTuple):
    manifests: list[bytes]
    policies: list[bytes]
    root_ca_pem: bytes
    mesh_ca_pem: bytes
    #: (TransitionHash, Signature) of ``latest``, as GetManifests' LatestTransition
    latest_transition: tuple[bytes, bytes]


class MeshIdentity(NamedTuple):
    cert_chain_pem: bytes
    mesh_ca_pem: bytes
    root_ca_pem: bytes
    #: empty when the policy entry has no WorkloadSecretID
    workload_secret: bytes


@dataclass(frozen=True)
class _Entry:
    transition: bytes
    raw: bytes
    doc: dict[str, Any]


@dataclass(frozen=True)
class _State:
    """Everything one committed manifest determines; replaced whole, never changed in place."""

    engine: SeedEngine
    root: x509.Certificate
    history: tuple[_Entry, ...]
    policies: Mapping[str, bytes]
    mesh: MeshCA
    latest: tuple[bytes, bytes]

    @property
    def current(self) -> dict[str, Any]:
        return self.history[-1].doc


def _sign(engine: SeedEngine, transition: bytes) -> bytes:
    """ECDSA over the 32-byte transition hash itself (no second hash, as Contrast's SignASN1)."""
    return engine.transaction_key().sign(transition, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def _signature_ok(engine: SeedEngine, transition: bytes, signature: bytes) -> bool:
    try:
        engine.transaction_key().public_key().verify(signature, transition, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    except InvalidSignature:
        return False
    return True


def _is_digest(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def validate_manifest(raw: bytes, source: str = "in the request") -> dict[str, Any]:
    """The manifest as a dict if SetManifest could accept it; InvalidArgument saying what is wrong otherwise.

    generator.manifest.load reads it strictly (no repeated keys) and checks the four sections' types; on top,
    unknown keys are refused (a misspelt field would otherwise silently mean "absent"), owner keys must parse,
    and the reference values must convert to a cocoon reference-values document the verifier accepts, so a
    manifest that is accepted can also be verified against.
    """
    from generator.errors import GenerateError
    from generator.manifest import load, to_cocoon_refs
    from verifier.refs import ReferenceValuesError, validate

    try:
        doc = load(raw, source)
    except GenerateError as exc:
        raise InvalidArgument(str(exc)) from None
    unknown = sorted(set(doc) - set(MANIFEST_KEYS))
    if unknown:
        raise InvalidArgument(f"manifest {source}: unknown key {unknown[0][:60]!r} (keys: {', '.join(MANIFEST_KEYS)})")
    for digest, entry in (doc.get("Policies") or {}).items():
        extra = sorted(set(entry) - set(POLICY_KEYS))
        if extra:
            raise InvalidArgument(f"manifest {source}: Policies.{digest}: unknown key {extra[0][:60]!r} "
                                  f"(keys: {', '.join(POLICY_KEYS)})")
        if entry.get("Role", "") not in ROLES:
            raise InvalidArgument(f"manifest {source}: Policies.{digest}.Role must be \"coordinator\" or absent")
        _check_sans(entry.get("SANs") or [], f"manifest {source}: Policies.{digest}.SANs")
    for i, d in enumerate(doc.get("WorkloadOwnerKeyDigests") or []):
        if not _is_digest(d):
            raise InvalidArgument(f"manifest {source}: WorkloadOwnerKeyDigests[{i}] must be 64 lower-case hex "
                                  "digits (sha256 of the owner's public key)")
    for i, k in enumerate(doc.get("SeedshareOwnerPubKeys") or []):
        if not isinstance(k, str):
            raise InvalidArgument(f"manifest {source}: SeedshareOwnerPubKeys[{i}] must be a hex string")
        try:
            load_rsa_public(k)
        except ValueError as exc:
            raise InvalidArgument(f"manifest {source}: SeedshareOwnerPubKeys[{i}]: {exc}") from None
    try:
        validate(to_cocoon_refs(doc.get("ReferenceValues") or {}))
    except ReferenceValuesError as exc:
        raise InvalidArgument(f"manifest {source}: ReferenceValues do not convert to reference values: {exc}") \
            from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise InvalidArgument(f"manifest {source}: ReferenceValues: an entry lacks or mistypes a field "
                              f"({type(exc).__name__}: {str(exc)[:80]})") from None
    return doc


def _check_sans(sans: list[str], where: str) -> None:
    """A SAN a certificate can carry: printable ASCII (IDNA A-labels for international names), no spaces."""
    for i, san in enumerate(sans):
        if not san or not all(0x21 <= ord(c) <= 0x7E for c in san):
            raise InvalidArgument(f"{where}[{i}] {san[:40]!r}: a SAN must be non-empty printable ASCII without "
                                  "spaces (encode international names as IDNA A-labels)")
    try:
        split_sans(sans)
    except ValueError as exc:
        raise InvalidArgument(f"{where}: {exc}") from None


def _policy_blobs(doc: Mapping[str, Any], blobs: list[bytes]) -> dict[str, bytes]:
    """Policies hash -> blob; every hash must have its blob and every blob a hash."""
    by_hash = {hashlib.sha256(b).hexdigest(): b for b in blobs}
    wanted = doc.get("Policies") or {}
    for digest in wanted:
        if digest not in by_hash:
            raise InvalidArgument(f"no policy provided for hash {digest}")
    for digest in by_hash:
        if digest not in wanted:
            raise InvalidArgument(f"policy blob with sha256 {digest} is not in the manifest's Policies "
                                  "(a blob must match the hash it is listed under)")
    return by_hash


def _owners(doc: Mapping[str, Any]) -> set[str]:
    return {k.lower() for k in doc.get("SeedshareOwnerPubKeys") or []}


class Authority:
    """The coordinator's state machine over one state directory; safe to call from many threads."""

    def __init__(self, state_dir: str) -> None:
        self._store = Store(state_dir)
        self._lock = threading.Lock()
        self._state: _State | None = None
        self._needs_recovery = self._store.has_state()

    # queries

    @property
    def needs_recovery(self) -> bool:
        return self._needs_recovery

    def _serving(self) -> _State:
        if self._needs_recovery:  # read before _state: recover() sets _state first, then clears this
            raise NeedsRecovery("the coordinator restarted on existing state and needs recovery: "
                                "a seed-share owner must run recover")
        state = self._state
        if state is None:
            raise FailedPrecondition("no manifest has been set")
        return state

    def current_manifest(self) -> dict[str, Any]:
        """The manifest in force (the network layer builds its evidence checks from its ReferenceValues)."""
        return self._serving().current

    def get_manifests(self) -> Manifests:
        """The history oldest -> newest, every policy any of it names, the root CA and the current mesh CA."""
        state = self._serving()
        policies: dict[str, bytes] = {}
        for entry in state.history:
            for digest in entry.doc.get("Policies") or {}:
                policies.setdefault(digest, state.policies[digest])
        return Manifests([e.raw for e in state.history], list(policies.values()), pem(state.root),
                         pem(state.mesh.mesh_ca), state.latest)

    def mesh_identity(self, host_data_hex: str,
                      pod_public_key: bytes | CertificatePublicKeyTypes) -> MeshIdentity:
        """A certificate for an (already verified) pod whose HOSTDATA is ``host_data_hex``."""
        state = self._serving()
        digest = host_data_hex.lower()
        entry = (state.current.get("Policies") or {}).get(digest)
        if entry is None:
            raise PermissionDenied(f"policy hash {digest} not found in manifest")
        try:
            cert = state.mesh.issue(pod_public_key, list(entry.get("SANs") or []))
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        secret_id = entry.get("WorkloadSecretID") or ""
        secret = state.engine.workload_secret(secret_id) if secret_id else b""
        return MeshIdentity(state.mesh.chain_pem(cert), pem(state.mesh.mesh_ca), pem(state.root), secret)

    # changes

    def set_manifest(self, manifest: bytes, policies: list[bytes],
                     signer_key_digest: str | None) -> SetManifestResult:
        """Make ``manifest`` the one in force; the seed shares only when it is the first."""
        with self._lock:
            if self._needs_recovery:
                raise NeedsRecovery("the coordinator is in recovery mode: a seed-share owner must run recover "
                                    "before a manifest can be set")
            doc = validate_manifest(manifest)
            blobs = _policy_blobs(doc, policies)
            old = self._state
            if old is not None:
                self._authorise_update(old.current, doc, signer_key_digest)
                engine, root, shares = old.engine, old.root, None
            else:
                engine = SeedEngine.generate()
                root = root_certificate(engine)
                shares = engine.shares(list(doc.get("SeedshareOwnerPubKeys") or []))
            previous = old.latest[0] if old is not None else ZERO_HASH
            transition = sha256(sha256(manifest) + previous)
            mesh = MeshCA.create(engine, root, transition)
            signature = self._commit(engine, manifest, blobs, previous, transition)
            merged = dict(old.policies) if old is not None else {}
            merged.update(blobs)
            history = (old.history if old is not None else ()) + (_Entry(transition, manifest, doc),)
            self._state = _State(engine, root, history, merged, mesh, (transition, signature))
            return SetManifestResult(pem(root), pem(mesh.mesh_ca), shares)

    @staticmethod
    def _authorise_update(current: Mapping[str, Any], new: Mapping[str, Any], signer: str | None) -> None:
        allowed = {d.lower() for d in current.get("WorkloadOwnerKeyDigests") or []}
        if not allowed:
            raise PermissionDenied("setting manifest is disabled: the current manifest has no "
                                   "WorkloadOwnerKeyDigests")
        if signer is None or signer.lower() not in allowed:
            raise PermissionDenied(f"the caller's key (sha256 {signer or 'none presented'}) is not in the current "
                                   "manifest's WorkloadOwnerKeyDigests")
        if _owners(current) != _owners(new):
            raise PermissionDenied("changes to seedshare owners are not allowed (SeedshareOwnerPubKeys differs "
                                   "from the current manifest's)")

    def _commit(self, engine: SeedEngine, manifest: bytes, blobs: Mapping[str, bytes], previous: bytes,
                transition: bytes) -> bytes:
        """Objects first, ``latest`` last; on a disk error, committed iff ``latest`` names the new transition.
        The signature stored in ``latest``."""
        signature = _sign(engine, transition)
        try:
            self._store.put_policies(list(blobs.values()))
            self._store.put_transition(self._store.put_manifest(manifest), previous)
            self._store.set_latest(transition, signature, None if previous == ZERO_HASH else previous)
        except StateError as exc:
            raise FailedPrecondition(f"nothing changed: {exc}") from None
        except OSError as exc:
            try:
                committed = self._store.latest()[0] == transition
            except StateError:
                committed = False
            if not committed:
                raise Internal(f"persisting the manifest failed, nothing changed: {exc}") from None
        return signature

    def recover(self, seed: bytes, salt: bytes, requester_key_digest: str) -> None:
        """Bring a restarted coordinator back: the seed must sign ``latest``, the requester own a seed share."""
        with self._lock:
            if not self._needs_recovery:
                raise FailedPrecondition("the coordinator does not need recovery"
                                         + (" (it has no state yet)" if self._state is None else ""))
            try:
                engine = SeedEngine(seed, salt)
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from None
            try:
                transition, signature = self._store.latest()
                if not _signature_ok(engine, transition, signature):
                    raise PermissionDenied("the latest-transition signature does not verify with this seed and "
                                           "salt: wrong seed, or the state directory's latest pointer was rewritten")
                history, policies = self._load_history(transition)
            except StateError as exc:
                raise StateCorrupted(f"the state directory does not check out: {exc}") from None
            digests = {owner_digest(k) for k in history[-1].doc.get("SeedshareOwnerPubKeys") or []}
            if requester_key_digest.lower() not in digests:
                raise PermissionDenied(f"the requester's key (sha256 {requester_key_digest}) is not one of the "
                                       "current manifest's SeedshareOwnerPubKeys")
            root = root_certificate(engine)
            self._state = _State(engine, root, tuple(history), policies, MeshCA.create(engine, root, transition),
                                 (transition, signature))
            self._needs_recovery = False

    def _load_history(self, latest: bytes) -> tuple[list[_Entry], dict[str, bytes]]:
        history: list[_Entry] = []
        policies: dict[str, bytes] = {}
        for transition, manifest_hash in self._store.history(latest):
            raw = self._store.read("manifests", manifest_hash)
            try:
                doc = validate_manifest(raw, f"manifests/{manifest_hash.hex()}")
            except InvalidArgument as exc:
                raise StateError(str(exc)) from None
            for digest in doc.get("Policies") or {}:
                if digest not in policies:
                    policies[digest] = self._store.read("policies", bytes.fromhex(digest))
            history.append(_Entry(transition, raw, doc))
        return history, policies
