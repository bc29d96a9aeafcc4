"""CopyFile confinement, chunking, atomic rename, symlink safety."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent.files import CopyFileError, copy_file
from agent.protocols import agent_pb2


def req(path: str, data: bytes = b"", mode: int = stat.S_IFREG | 0o644, size: int | None = None,
        offset: int = 0, uid: int = -1, gid: int = -1) -> agent_pb2.CopyFileRequest:
    return agent_pb2.CopyFileRequest(path=path, data=data, file_mode=mode, dir_mode=0o750,
                                     file_size=len(data) if size is None else size, offset=offset, uid=uid, gid=gid)


def test_regular_file_in_chunks_appears_atomically(tmp_path) -> None:  # type: ignore[no-untyped-def]
    shared = str(tmp_path / "shared")
    target = f"{shared}/c1-abc-hosts"
    copy_file(shared, req(target, b"127.0.0.1 ", size=20))
    assert not os.path.exists(target)  # half written: not visible under its name
    copy_file(shared, req(target, b"localhost\n", size=20, offset=10, uid=1000, gid=1000))
    assert Path(target).read_bytes() == b"127.0.0.1 localhost\n"
    st = os.stat(target)
    assert stat.S_IMODE(st.st_mode) == 0o644 and (st.st_uid, st.st_gid) == (1000, 1000)
    copy_file(shared, req(target, b"new\n"))  # replaced whole
    assert Path(target).read_bytes() == b"new\n"


def test_directories_and_symlinks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    shared = str(tmp_path / "shared")
    copy_file(shared, req(f"{shared}/c1-abc-vol/..data", mode=stat.S_IFDIR | 0o755))
    copy_file(shared, req(f"{shared}/c1-abc-vol/..data/token", b"secret"))
    copy_file(shared, req(f"{shared}/c1-abc-vol/token", b"..data/token", mode=stat.S_IFLNK | 0o777))
    assert os.readlink(f"{shared}/c1-abc-vol/token") == "..data/token"
    assert Path(f"{shared}/c1-abc-vol/token").read_text() == "secret"
    assert stat.S_IMODE(os.stat(f"{shared}/c1-abc-vol").st_mode) == 0o750  # created with dir_mode


def test_a_symlink_on_the_way_is_not_followed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    shared = tmp_path / "shared"
    outside = tmp_path / "outside"
    outside.mkdir()
    shared.mkdir()
    os.symlink(str(outside), shared / "escape")
    with pytest.raises(CopyFileError, match="not a plain directory"):
        copy_file(str(shared), req(f"{shared}/escape/pwned", b"x"))
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("path", ["/etc/passwd", "relative/x", "{s}/../x", "{s}/a/../../x", "{s}/a//b", "{s}/",
                                  "{s}/./x"])
def test_paths_outside_or_unclean_are_refused(tmp_path, path: str) -> None:  # type: ignore[no-untyped-def]
    shared = str(tmp_path / "shared")
    with pytest.raises(CopyFileError):
        copy_file(shared, req(path.format(s=shared), b"x"))


def test_sizes_and_types(tmp_path) -> None:  # type: ignore[no-untyped-def]
    shared = str(tmp_path / "shared")
    with pytest.raises(CopyFileError, match="exceeds"):
        copy_file(shared, req(f"{shared}/f", b"toolong", size=3))
    with pytest.raises(CopyFileError, match="not a file, directory or symlink"):
        copy_file(shared, req(f"{shared}/fifo", mode=stat.S_IFIFO | 0o644))
    with pytest.raises(CopyFileError, match="not UTF-8"):
        copy_file(shared, req(f"{shared}/l", b"\xff", mode=stat.S_IFLNK | 0o777))
