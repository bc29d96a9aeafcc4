"""CopyFile: the runtime's way to put files (hosts, resolv.conf, secrets) into the shared directory.

Confinement is by construction, not by string checks alone: the path is
walked component by component from the shared directory with
``O_NOFOLLOW | O_DIRECTORY`` directory descriptors, so a symlink anywhere on
the way (planted by an earlier CopyFile or by a container writing into a
shared volume) stops the walk instead of leading outside. Regular files are
written to a hidden part file at the request's offset and renamed over the
final name only when ``file_size`` bytes are there, so a reader never sees a
half-written file; modes are masked as Kata does (dirs & 0o777, files &
0o7777).
"""

from __future__ import annotations

import contextlib
import os
import stat

from agent.errors import AgentError
from agent.protocols import agent_pb2

MAX_FILE = 256 << 20


class CopyFileError(AgentError):
    """A CopyFile request the agent refuses or cannot carry out."""


def _components(shared_dir: str, path: str) -> list[str]:
    if not path.startswith("/") or "\0" in path:
        raise CopyFileError(f"CopyFile path {path!r} is not absolute")
    root = shared_dir.rstrip("/") + "/"
    if not path.startswith(root):
        raise CopyFileError(f"CopyFile path {path} is outside {shared_dir}")
    parts = path[len(root) :].split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise CopyFileError(f"CopyFile path {path} has empty, '.' or '..' components")
    return parts


def _open_dir(name: str, dirfd: int, mode: int, uid: int, gid: int) -> int:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, dir_fd=dirfd)
    except FileNotFoundError:
        os.mkdir(name, mode & 0o777, dir_fd=dirfd)
        fd = os.open(name, flags, dir_fd=dirfd)
        _chown(fd, uid, gid)
        return fd
    except (NotADirectoryError, OSError) as exc:
        raise CopyFileError(f"CopyFile: {name!r} on the way is not a plain directory ({exc.strerror})") from None


def _chown(fd: int, uid: int, gid: int) -> None:
    if uid >= 0 or gid >= 0:
        os.fchown(fd, uid if uid >= 0 else -1, gid if gid >= 0 else -1)


def copy_file(shared_dir: str, req: agent_pb2.CopyFileRequest) -> None:
    parts = _components(shared_dir, req.path)
    too_big = not 0 <= req.file_size <= MAX_FILE or req.offset < 0
    overflow = stat.S_ISREG(req.file_mode) and req.offset + len(req.data) > req.file_size
    if too_big or overflow:
        raise CopyFileError(f"CopyFile {req.path}: offset {req.offset} + {len(req.data)} bytes exceeds "
                            f"file_size {req.file_size}")
    os.makedirs(shared_dir, mode=0o755, exist_ok=True)
    dirfd = os.open(shared_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for comp in parts[:-1]:
            nxt = _open_dir(comp, dirfd, req.dir_mode or 0o755, req.uid, req.gid)
            os.close(dirfd)
            dirfd = nxt
        name = parts[-1]
        kind = stat.S_IFMT(req.file_mode)
        if kind == stat.S_IFDIR:
            os.close(_open_dir(name, dirfd, req.file_mode & 0o777, req.uid, req.gid))
        elif kind == stat.S_IFLNK:
            target = bytes(req.data).decode("utf-8", "strict")
            part = f".{name}.cocoon-part"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part, dir_fd=dirfd)
            os.symlink(target, part, dir_fd=dirfd)
            os.rename(part, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
        elif kind == stat.S_IFREG:
            part = f".{name}.cocoon-part"
            flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_TRUNC if req.offset == 0 else 0)
            fd = os.open(part, flags, 0o600, dir_fd=dirfd)
            try:
                view = memoryview(req.data)
                pos = req.offset
                while view:
                    n = os.pwrite(fd, view, pos)
                    view, pos = view[n:], pos + n
                if pos >= req.file_size:
                    if os.fstat(fd).st_size != req.file_size:
                        raise CopyFileError(f"CopyFile {req.path}: part file has {os.fstat(fd).st_size} bytes, "
                                            f"expected {req.file_size} (chunks missing)")
                    os.fchmod(fd, req.file_mode & 0o7777)
                    _chown(fd, req.uid, req.gid)
                    os.fsync(fd)
                    os.rename(part, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
            finally:
                os.close(fd)
        else:
            raise CopyFileError(f"CopyFile {req.path}: file type {oct(kind)} is not a file, directory or symlink")
    except UnicodeDecodeError:
        raise CopyFileError(f"CopyFile {req.path}: symlink target is not UTF-8") from None
    except OSError as exc:
        raise CopyFileError(f"CopyFile {req.path}: {exc.strerror}") from None
    finally:
        os.close(dirfd)
