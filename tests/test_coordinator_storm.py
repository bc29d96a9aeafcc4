"""kill -9 during a SetManifest storm, through the API, with a real process (issue 21 acceptance).

`cocoon coordinator serve` runs as a subprocess on a state directory; four threads, each over its own
attested connection, send signed SetManifest updates (each a distinct manifest) as fast as it answers;
at a seeded random point the server gets SIGKILL. Restarted on the same directory it serves nothing until
a seed-share owner recovers it; then GetManifests must be exactly what was accepted: the history before
the kill, then, per thread, its acknowledged updates in its own order plus at most the one it had in
flight, each byte for byte one that was sent, never a half-applied one (the store's claim, store.py:
objects first, the signed ``latest`` pointer renamed last). Three kill/restart cycles in one test.

tests/test_coordinator_authority.py kills a process that drives the Authority directly; this one goes
through aTLS, gRPC and the request signatures, with the server's own threads committing concurrently.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from test_coordinator_authority import OWNER_KEY, SEEDSHARE_KEY, WEB, manifest
from test_coordinator_userapi import DIGEST, MEASUREMENT, REFS

from coordinator.client import CoordinatorClient, CoordinatorClientError, verifier_check
from coordinator.protocols import userapi_pb2 as pb
from coordinator.seed import SeedEngine, SeedShare, decrypt_share
from launcher.simca import make_config

ROOT = Path(__file__).resolve().parent.parent
#: the kill points are drawn from this; a failure message names it, COCOON_STORM_SEED replays another
SEED = int(os.environ.get("COCOON_STORM_SEED", "21"))
THREADS = 4
CYCLES = 3
#: a cycle's storm ends at the kill; these bound it if acknowledgements are slow to come
MAX_ATTEMPTS = 200  # per thread and cycle
STORM_S = 10.0

pytestmark = pytest.mark.timeout(300)


@dataclass
class Attempt:
    """One SetManifest a storm thread sent, and what became of it."""

    thread: int
    index: int
    raw: bytes
    blobs: list[bytes]
    sent: float = 0.0
    done: float = 0.0
    response: pb.SetManifestResponse | None = None
    #: (gRPC status or None, message, whether the kill had been decided when it failed)
    failure: tuple[Any, str, bool] | None = None


class Server:
    """`cocoon coordinator serve` in its own session (so the kill can be checked to leave no process behind)."""

    def __init__(self, tmp: Path, sim: Path, n: int) -> None:
        self.log = tmp / f"serve-{n}.log"
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cocoon", "coordinator", "serve", "--state", str(tmp / "state"), "--listen",
                 "127.0.0.1:0", "--mesh-listen", "127.0.0.1:0", "--tee", "sim", "--sim-config", str(sim)],
                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True, cwd=tmp,
                env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        self.line = self.proc.stdout.readline() if ready else ""
        self.proc.stdout.close()  # the one line is all it prints there
        assert "on atls://127.0.0.1:" in self.line, (self.line, self.log_tail())
        self.address = self.line.split("atls://")[1].split()[0]

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


def session_members(sid: int) -> list[int]:
    """Pids whose session is ``sid`` (the server's children too, whoever reaped or adopted them)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp session ...
        if int(fields[3]) == sid:
            out.append(int(entry.name))
    return out


def temp_files(state: Path) -> list[str]:
    return sorted(str(p.relative_to(state)) for p in state.rglob(".tmp-*"))


def storm(t: int, cycle: int, client: CoordinatorClient, attempts: list[Attempt], killed: threading.Event,
          acks: list[int], cond: threading.Condition) -> None:
    """Signed updates back to back until one fails (the kill) or the bound; each attempt recorded first."""
    for i in range(MAX_ATTEMPTS):
        if killed.is_set():
            return
        name = f"c{cycle}t{t}n{i}"
        raw, blobs = manifest({**WEB, name: {"SANs": [name, f"{name}.storm.example"], "WorkloadSecretID": name}})
        a = Attempt(t, i, raw, blobs)
        attempts.append(a)
        a.sent = time.monotonic()
        try:
            a.response = client.set_manifest(raw, blobs, OWNER_KEY)
        except CoordinatorClientError as exc:
            a.failure = (exc.code, str(exc), killed.is_set())
            return
        except Exception as exc:  # anything else is a finding as well: recorded, judged by the test
            a.failure = (None, repr(exc), killed.is_set())
            return
        a.done = time.monotonic()
        with cond:
            acks[0] += 1
            cond.notify_all()


def storm_until_killed(server: Server, cycle: int, target: int, pause: float,
                       clients: list[CoordinatorClient]) -> list[Attempt]:
    """One storm thread per client; SIGKILL ``pause`` seconds after the ``target``-th acknowledgement (or
    when the storm ends or STORM_S passes); every attempt, once all threads have seen the kill."""
    attempts: list[Attempt] = []
    killed = threading.Event()
    acks = [0]
    cond = threading.Condition()
    workers = [threading.Thread(target=storm, args=(t, cycle, c, attempts, killed, acks, cond), name=f"storm {t}")
               for t, c in enumerate(clients)]
    for w in workers:
        w.start()
    with cond:
        cond.wait_for(lambda: acks[0] >= target or not any(w.is_alive() for w in workers), timeout=STORM_S)
    time.sleep(pause)  # somewhere inside the next commits
    killed.set()  # before the signal: a failure seen after this may be the kill's
    server.kill()
    assert server.proc.returncode == -signal.SIGKILL, server.log_tail()
    assert session_members(server.proc.pid) == [], "the killed coordinator left processes behind"
    for w in workers:
        w.join(timeout=60)
    assert not any(w.is_alive() for w in workers)
    return attempts


def check_history(got: pb.GetManifestsResponse, before: list[bytes], attempts: list[Attempt],
                  known_blobs: dict[str, bytes], root_ca: bytes, engine: SeedEngine) -> list[bytes]:
    """The recovered history is ``before`` then what this cycle's storm had accepted; the new history."""
    history = list(got.Manifests)
    assert history[:len(before)] == before, "the history before this cycle's storm changed"
    new = history[len(before):]
    by_raw = {a.raw: a for a in attempts}
    assert len(by_raw) == len(attempts)  # every attempt distinct, so an entry names exactly one
    assert len(set(new)) == len(new), "an update appears twice"
    strangers = [m[:200] for m in new if m not in by_raw]
    assert not strangers, f"entries that are not byte for byte any manifest sent: {strangers}"
    for t in sorted({a.thread for a in attempts}):
        mine = [a for a in attempts if a.thread == t]
        acked = [a for a in mine if a.response is not None]
        assert acked == mine[:len(acked)], f"thread {t} went on after a failure"
        seen = [by_raw[m] for m in new if by_raw[m].thread == t]
        assert seen[:len(acked)] == acked, (f"thread {t}: its acknowledged updates {[a.index for a in acked]} are "
                                            f"not the start of what the history holds {[a.index for a in seen]}")
        assert len(seen) - len(acked) in (0, 1), f"thread {t}: more than its one in-flight update was applied"
        for extra in seen[len(acked):]:
            assert extra.response is None and extra.failure is not None  # the one the kill cut short
    # an update acknowledged before another was sent comes before it (the ack is sent after the commit)
    position = {m: i for i, m in enumerate(new)}
    for a in attempts:
        if a.response is None:
            continue
        for b in attempts:
            if b.raw in position and b.sent > a.done:
                assert position[a.raw] < position[b.raw], (a.thread, a.index, b.thread, b.index)
    # every policy any manifest of the history names, byte for byte, once
    named = {d for m in history for d in json.loads(m)["Policies"]}
    assert len(got.Policies) == len(named) and {hashlib.sha256(p).hexdigest() for p in got.Policies} == named
    assert all(known_blobs[hashlib.sha256(p).hexdigest()] == p for p in got.Policies)
    assert got.RootCA == root_ca, "the root CA changed across the kill"
    # LatestTransition is the chain over exactly these manifests, signed with the seed's transaction key
    chain = bytes(32)
    for m in history:
        chain = hashlib.sha256(hashlib.sha256(m).digest() + chain).digest()
    assert got.LatestTransition.TransitionHash == chain
    engine.transaction_key().public_key().verify(got.LatestTransition.Signature, chain,
                                                 ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    last = by_raw.get(history[-1])
    if last is not None and last.response is not None:  # the mesh CA is the one its acknowledgement named
        assert got.MeshCA == last.response.MeshCA
    return history


def test_kill_9_during_a_set_manifest_storm_over_the_api_loses_nothing_accepted(tmp_path: Path,
                                                                                 sim_chain: Any) -> None:
    rng = random.Random(SEED)
    sim = tmp_path / "coordinator-sim.json"
    sim.write_text(make_config(sim_chain, MEASUREMENT, DIGEST).to_json())
    trust = tmp_path / "trust.pem"
    trust.write_bytes(sim_chain.trust_pem)
    check = verifier_check(REFS, initdata_digest=DIGEST, trust_sim=str(trust))
    state = tmp_path / "state"
    servers: list[Server] = []
    clients: list[CoordinatorClient] = []
    report: list[str] = []
    started = time.monotonic()

    def connect(server: Server) -> CoordinatorClient:
        c = CoordinatorClient(server.address, check, timeout=30)
        clients.append(c)
        return c

    try:
        servers.append(Server(tmp_path, sim, 0))
        assert "serving on" in servers[0].line
        first, first_blobs = manifest(WEB)
        with connect(servers[0]) as c:
            done = c.set_manifest(first, first_blobs)
        shares = done.SeedSharesDoc
        assert len(shares.SeedShares) == 1
        seed = decrypt_share(SEEDSHARE_KEY, SeedShare(shares.SeedShares[0].PublicKey,
                                                      shares.SeedShares[0].EncryptedSeed))
        engine = SeedEngine(seed, shares.salt)
        root_ca = done.RootCA
        history = [first]
        known_blobs = {hashlib.sha256(b).hexdigest(): b for b in first_blobs}

        for cycle in range(CYCLES):
            server = servers[-1]
            target, pause = rng.randint(4, 30), rng.uniform(0, 0.05)
            attempts = storm_until_killed(server, cycle, target, pause, [connect(server) for _ in range(THREADS)])
            for c in clients:
                c.close()
            clients.clear()
            early = [(a.thread, a.index, a.failure) for a in attempts if a.failure and not a.failure[2]]
            assert not early, f"updates refused before the kill (seed {SEED}): {early}"
            late = [a.failure for a in attempts if a.failure]
            assert all(f[0] == grpc.StatusCode.UNAVAILABLE for f in late), late
            for a in attempts:
                known_blobs.update({hashlib.sha256(b).hexdigest(): b for b in a.blobs})
                if a.response is not None:
                    assert a.response.RootCA == root_ca and not a.response.SeedSharesDoc.SeedShares
            acked = sum(a.response is not None for a in attempts)
            in_flight = sum(a.failure is not None for a in attempts)
            left = len(temp_files(state))

            servers.append(Server(tmp_path, sim, cycle + 1))
            restarted = servers[-1]
            assert "needs recovery on" in restarted.line, restarted.line
            assert temp_files(state) == []  # what the kill left half-written is gone, nothing else was
            with connect(restarted) as c:
                with pytest.raises(CoordinatorClientError) as waiting:
                    c.get_manifests()
                assert waiting.value.code == grpc.StatusCode.FAILED_PRECONDITION and "recover" in str(waiting.value)
                with pytest.raises(CoordinatorClientError) as waiting:
                    c.set_manifest(*manifest(WEB), OWNER_KEY)
                assert waiting.value.code == grpc.StatusCode.FAILED_PRECONDITION and "recover" in str(waiting.value)
                c.recover(seed, shares.salt, SEEDSHARE_KEY)
                got = c.get_manifests()
            new = check_history(got, history, attempts, known_blobs, root_ca, engine)
            report.append(f"cycle {cycle}: target {target}, {acked} acknowledged, {in_flight} failed at the kill, "
                          f"{len(new) - len(history) - acked} of those applied, {left} temp files at the kill")
            history = new
            assert temp_files(state) == []

        # the last recovered coordinator takes updates again, and stops cleanly
        raw, blobs = manifest({**WEB, "after": {"SANs": ["after"]}})
        with connect(servers[-1]) as c:
            assert c.set_manifest(raw, blobs, OWNER_KEY).RootCA == root_ca
            assert list(c.get_manifests().Manifests) == [*history, raw]
        clients.clear()
        servers[-1].proc.send_signal(signal.SIGTERM)
        servers[-1].proc.wait(timeout=30)
        assert servers[-1].proc.returncode == 0, servers[-1].log_tail()
        assert temp_files(state) == []
    finally:
        for c in clients:
            c.close()
        for s in servers:
            s.kill()
    for s in servers:
        assert s.proc.returncode is not None and session_members(s.proc.pid) == []
    report.append(f"seed {SEED}, {time.monotonic() - started:.1f} s")
    print("\n".join(report))


def test_the_history_check_refuses_what_a_lossy_or_torn_store_would_answer() -> None:
    """check_history, against answers a broken coordinator could give: each one it must refuse."""
    engine = SeedEngine.generate()
    first, first_blobs = manifest(WEB)
    attempts: list[Attempt] = []
    clock = 0.0
    for i in range(3):  # thread 0: three acknowledged, then one the kill cut short; thread 1: one, then cut
        for t in (0, 1):
            if t == 1 and i == 2:
                continue
            raw, blobs = manifest({**WEB, f"t{t}n{i}": {"SANs": [f"t{t}n{i}"]}})
            a = Attempt(t, i, raw, blobs, sent=clock, done=clock + 1)
            clock += 2
            if (t, i) in ((0, 2), (1, 1)):
                a.failure = (grpc.StatusCode.UNAVAILABLE, "killed", True)
            else:
                a.response = pb.SetManifestResponse(RootCA=b"root", MeshCA=f"mesh {t} {i}".encode())
            attempts.append(a)
    by = {(a.thread, a.index): a for a in attempts}
    known = {hashlib.sha256(b).hexdigest(): b for a in attempts for b in [*a.blobs, *first_blobs]}
    stranger, stranger_blobs = manifest({**WEB, "never": {"SANs": ["never"]}})  # a manifest no thread sent
    everything = {**known, **{hashlib.sha256(b).hexdigest(): b for b in stranger_blobs}}

    def answer(entries: list[bytes], policies: list[bytes] | None = None, root: bytes = b"root",
               chain_of: list[bytes] | None = None, mesh: bytes | None = None) -> pb.GetManifestsResponse:
        chain = bytes(32)
        for m in [first, *(entries if chain_of is None else chain_of)]:
            chain = hashlib.sha256(hashlib.sha256(m).digest() + chain).digest()
        if policies is None:
            named = {d for m in [first, *entries] for d in json.loads(m)["Policies"]}
            policies = [everything[d] for d in sorted(named)]
        last = next((a for a in attempts if entries and a.raw == entries[-1]), None)
        return pb.GetManifestsResponse(
            Manifests=[first, *entries], Policies=policies, RootCA=root,
            MeshCA=mesh if mesh is not None else (last.response.MeshCA if last and last.response else b""),
            LatestTransition=pb.LatestTransition(TransitionHash=chain, Signature=engine.transaction_key().sign(
                chain, ec.ECDSA(utils.Prehashed(hashes.SHA256())))))

    good = [by[0, 0].raw, by[1, 0].raw, by[0, 1].raw]
    assert check_history(answer(good), [first], attempts, known, b"root", engine) == [first, *good]
    with_one_in_flight = [*good, by[1, 1].raw]
    assert check_history(answer(with_one_in_flight), [first], attempts, known, b"root", engine)[-1] == by[1, 1].raw
    reformatted = json.dumps(json.loads(by[0, 1].raw)).encode()  # the same manifest, not the same bytes
    refused = {
        "an acknowledged update lost": [by[0, 0].raw, by[0, 1].raw],
        "a thread's own order swapped": [by[1, 0].raw, by[0, 1].raw, by[0, 0].raw],
        "an update applied twice": [*good, by[0, 1].raw],
        "not byte for byte": [by[0, 0].raw, by[1, 0].raw, reformatted],
        "a manifest never sent": [*good, stranger],
        "after its ack, an update sent later placed before it": [by[1, 0].raw, by[0, 0].raw, by[0, 1].raw],
    }
    for why, entries in refused.items():
        with pytest.raises(AssertionError):
            check_history(answer(entries), [first], attempts, known, b"root", engine)
            pytest.fail(why)
    two_in_flight = [*with_one_in_flight, by[0, 2].raw]
    check_history(answer(two_in_flight), [first], attempts, known, b"root", engine)  # one per thread is allowed
    for why, bad in {
        "a policy missing": answer(good, policies=[first_blobs[0]]),
        "the root CA changed": answer(good, root=b"another root"),
        "the signed pointer names a shorter chain": answer(good, chain_of=good[:-1]),
        "the mesh CA is not the last acknowledged one": answer(good, mesh=b"mesh 0 0"),
        "the history before the cycle changed": answer(good),
    }.items():
        before = [first, b"{}"] if why.startswith("the history before") else [first]
        with pytest.raises(AssertionError):
            check_history(bad, before, attempts, known, b"root", engine)
            pytest.fail(why)
    forged = answer(good)
    forged.LatestTransition.Signature = SeedEngine.generate().transaction_key().sign(
        forged.LatestTransition.TransitionHash, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    with pytest.raises(InvalidSignature):
        check_history(forged, [first], attempts, known, b"root", engine)

