"""image/lock.py: the image's packages must be the locked ones, and a difference names the package."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from image import lock

ROWS = [{"name": "base-files", "version": "12.4+deb12u15", "architecture": "amd64", "sha256": "aa" * 32},
        {"name": "crun", "version": "1.8.1-1+deb12u1", "architecture": "amd64", "sha256": "bb" * 32}]


def write(tmp: Path, packages: list[dict[str, str]]) -> tuple[Path, Path]:
    manifest = tmp / "root.manifest"
    manifest.write_text(json.dumps({"packages": [{k: v for k, v in p.items() if k != "sha256"} | {"type": "deb"}
                                                 for p in packages]}))
    lockfile = tmp / "packages.lock"
    lockfile.write_text(json.dumps({"schema": "cocoon.packages-lock/v1", "packages": ROWS}))
    return manifest, lockfile


def test_the_committed_lock_covers_every_package_once() -> None:
    rows = json.loads(lock.LOCK.read_text())["packages"]
    names = [r["name"] for r in rows]
    assert len(names) == len(set(names)) > 50
    assert {"systemd", "python3", "crun", "cryptsetup-bin"} <= set(names)
    assert all(len(r["sha256"]) == 64 for r in rows)


def test_compare_names_changed_added_and_removed_packages() -> None:
    assert lock.compare(ROWS, ROWS) == []
    changed = [ROWS[0], {**ROWS[1], "version": "1.8.1-1+deb12u2", "sha256": "cc" * 32},
               {"name": "sshd", "version": "1", "architecture": "amd64", "sha256": "dd" * 32}]
    diff = lock.compare(ROWS, changed)
    assert diff[0].startswith("crun: locked 1.8.1-1+deb12u1") and "serves 1.8.1-1+deb12u2" in diff[0]
    assert diff[1] == "sshd: 1 is in the image but not in the lock"
    assert lock.compare(ROWS, ROWS[:1]) == ["crun: locked 1.8.1-1+deb12u1, no longer in the image"]


def test_check_fails_naming_the_package_the_archive_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = {(r["name"], r["version"], r["architecture"]): r["sha256"] for r in ROWS}
    monkeypatch.setattr(lock, "index", lambda cache: served)
    manifest, lockfile = write(tmp_path, ROWS)
    assert "2 packages match" in lock.check(manifest, tmp_path, lock=lockfile)
    served[("crun", "1.8.1-1+deb12u1", "amd64")] = "ee" * 32  # same version, other bytes
    with pytest.raises(lock.LockError, match=r"crun: locked 1\.8\.1-1\+deb12u1 \(bbbbbbbbbbbb\)"):
        lock.check(manifest, tmp_path, lock=lockfile)
    newer = [ROWS[0], {**ROWS[1], "version": "9"}]
    manifest, _ = write(tmp_path, newer)
    served[("crun", "9", "amd64")] = "ff" * 32
    with pytest.raises(lock.LockError, match="--update"):
        lock.check(manifest, tmp_path, lock=lockfile)
    assert "wrote" in lock.check(manifest, tmp_path, update=True, lock=lockfile)
    assert json.loads(lockfile.read_text())["packages"][1]["version"] == "9"


def test_offline_check_of_a_saved_tree(tmp_path: Path) -> None:
    manifest, lockfile = write(tmp_path, ROWS)
    lock.check_versions(manifest, lockfile)
    manifest, _ = write(tmp_path, [ROWS[0]])
    with pytest.raises(lock.LockError, match="crun"):
        lock.check_versions(manifest, lockfile)


def test_a_package_no_index_lists_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock, "index", lambda cache: {})
    manifest, lockfile = write(tmp_path, ROWS)
    with pytest.raises(lock.LockError, match="in no index"):
        lock.check(manifest, tmp_path, lock=lockfile)


def test_report_mode_builds_through_an_update_but_never_through_other_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = {(r["name"], r["version"], r["architecture"]): r["sha256"] for r in ROWS}
    served[("crun", "9", "amd64")] = "ff" * 32
    monkeypatch.setattr(lock, "index", lambda cache: served)
    manifest, lockfile = write(tmp_path, [ROWS[0], {**ROWS[1], "version": "9"}])
    warning = lock.check(manifest, tmp_path, lock=lockfile, mode="report")
    assert warning.startswith("WARNING: 1 packages differ") and "crun: locked 1.8.1-1+deb12u1" in warning
    assert json.loads(lockfile.read_text())["packages"] == ROWS  # a warning never rewrites the lock
    manifest, _ = write(tmp_path, ROWS)
    served[("crun", "1.8.1-1+deb12u1", "amd64")] = "ee" * 32  # same version, other bytes: tampering
    with pytest.raises(lock.LockError, match=r"(?s)other bytes for a locked version.*crun: locked 1\.8\.1-1\+deb12u1"):
        lock.check(manifest, tmp_path, lock=lockfile, mode="report")
    with pytest.raises(lock.LockError, match="lock mode 'lax'"):
        lock.check(manifest, tmp_path, lock=lockfile, mode="lax")


def test_a_saved_tree_that_differs_names_versions_only(tmp_path: Path) -> None:
    manifest, lockfile = write(tmp_path, [ROWS[0], {**ROWS[1], "version": "9"}])
    with pytest.raises(lock.LockError) as exc:
        lock.check_versions(manifest, lockfile)
    # the manifest has no sha256: no empty "()" after either version, and no claim about the archive
    assert "crun: locked 1.8.1-1+deb12u1, the saved tree has 9" in str(exc.value)
    assert "()" not in str(exc.value)


def test_a_saved_tree_the_lock_moved_past_is_rebuilt_not_refused(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # A commit that accepted a Debian update leaves machines with a saved tree of the old versions: a strict
    # build must run mkosi again rather than stop (and a report-mode build may reuse the tree with a warning).
    from image import build

    stale, lockfile = write(tmp_path, [ROWS[0], {**ROWS[1], "version": "0.1"}])
    monkeypatch.delenv("COCOON_LOCK", raising=False)
    assert build.saved_tree_locked(stale, lockfile) is False
    monkeypatch.setenv("COCOON_LOCK", "report")
    assert build.saved_tree_locked(stale, lockfile) is True
    monkeypatch.delenv("COCOON_LOCK")
    (tmp_path / "current").mkdir()
    current, _ = write(tmp_path / "current", ROWS)
    assert build.saved_tree_locked(current, lockfile) is True

    cache = tmp_path / "cache"
    saved = cache / f"tree-{build.mkosi_inputs_digest()}"
    (saved / "root").mkdir(parents=True)
    (saved / "root" / "old").write_text("old tree")
    (saved / "root.manifest").write_text(stale.read_text())
    ran: list[Path] = []

    def fake_mkosi(out: Path, epoch: int) -> Path:
        ran.append(out)
        (out / "mkosi" / "root").mkdir(parents=True, exist_ok=True)
        (out / "mkosi" / "root" / "new").write_text("fresh tree")
        (out / "mkosi" / "root.manifest").write_text(current.read_text())
        return out / "mkosi"

    checked: list[Path] = []
    monkeypatch.setattr(build, "mkosi", fake_mkosi)
    monkeypatch.setattr(build, "locked", lambda manifest, cache: checked.append(manifest))
    real = build.saved_tree_locked
    monkeypatch.setattr(build, "saved_tree_locked", lambda manifest: real(manifest, lockfile))
    out = build.root_tree(tmp_path / "build", 1700000000, cache, reuse=True)
    assert ran and checked == [out / "root.manifest"]
    assert (out / "root" / "new").is_file() and not (out / "root" / "old").exists()
    assert (saved / "root" / "new").is_file()  # the fresh tree replaced the stale one in the cache
