"""Read-only loop devices through the kernel's ioctls (no losetup process per layer).

``include/uapi/linux/loop.h``: LOOP_CTL_GET_FREE (0x4C82) on /dev/loop-control
hands out a free index; LOOP_CONFIGURE (0x4C0A, Linux >= 5.8) binds a file
and sets flags in one call; struct loop_config is {u32 fd, u32 block_size,
struct loop_info64 (232 bytes), u64 reserved[8]} = 304 bytes. LO_FLAGS_
READ_ONLY (1) makes the device refuse writes. Detaching is explicit
(LOOP_CLR_FD after the unmount; on a device still busy the kernel turns it
into auto-clear). Another process may take the free index first (EBUSY):
then ask again.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os

from agent.errors import AgentError

LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LOOP_CLR_FD = 0x4C01
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4


class LoopInfo64(ctypes.Structure):
    _fields_ = (
        ("lo_device", ctypes.c_uint64), ("lo_inode", ctypes.c_uint64), ("lo_rdevice", ctypes.c_uint64),
        ("lo_offset", ctypes.c_uint64), ("lo_sizelimit", ctypes.c_uint64), ("lo_number", ctypes.c_uint32),
        ("lo_encrypt_type", ctypes.c_uint32), ("lo_encrypt_key_size", ctypes.c_uint32),
        ("lo_flags", ctypes.c_uint32), ("lo_file_name", ctypes.c_uint8 * 64),
        ("lo_crypt_name", ctypes.c_uint8 * 64), ("lo_encrypt_key", ctypes.c_uint8 * 32),
        ("lo_init", ctypes.c_uint64 * 2),
    )


class LoopConfig(ctypes.Structure):
    _fields_ = (("fd", ctypes.c_uint32), ("block_size", ctypes.c_uint32), ("info", LoopInfo64),
                ("reserved", ctypes.c_uint64 * 8))


assert ctypes.sizeof(LoopInfo64) == 232 and ctypes.sizeof(LoopConfig) == 304


class LoopError(AgentError):
    """No loop device could be attached."""


def attach_read_only(path: str, attempts: int = 8) -> str:
    """A read-only loop device backed by ``path``; returns /dev/loopN."""
    try:
        ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise LoopError(f"/dev/loop-control: {exc.strerror}") from None
    try:
        backing = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        os.close(ctl)
        raise LoopError(f"cannot open {path}: {exc.strerror}") from None
    try:
        for _ in range(attempts):
            index = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
            dev = f"/dev/loop{index}"
            try:
                fd = os.open(dev, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                os.mknod(dev, 0o660 | 0o060000, os.makedev(7, index))  # containers may lack the node
                fd = os.open(dev, os.O_RDONLY | os.O_CLOEXEC)
            try:
                config = LoopConfig(fd=backing)
                # no AUTOCLEAR here: it would fire when this fd closes, before the mount holds the device
                config.info.lo_flags = LO_FLAGS_READ_ONLY
                fcntl.ioctl(fd, LOOP_CONFIGURE, config)
                return dev
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise LoopError(f"{dev}: LOOP_CONFIGURE failed: {exc.strerror}") from None
            finally:
                os.close(fd)
        raise LoopError("every free loop device was taken before it could be configured")
    finally:
        os.close(backing)
        os.close(ctl)


def detach(dev: str) -> None:
    """Clear ``dev`` now (auto-clear would also do it when its mount goes)."""
    try:
        fd = os.open(dev, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.ioctl(fd, LOOP_CLR_FD)
    except OSError:
        pass  # already cleared by autoclear, or busy until the lazy unmount completes
    finally:
        os.close(fd)
