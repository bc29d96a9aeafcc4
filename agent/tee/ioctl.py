"""The pre-configfs kernel interfaces: /dev/sev-guest and /dev/tdx_guest ioctls.

Structures from ``include/uapi/linux/sev-guest.h`` and ``tdx-guest.h`` (also
mirrored in go-sev-guest ``client/linuxabi`` and go-tdx-guest); sizes are
asserted at import against the kernel's (32, 96, 4000, 112, 1088 bytes). The
SNP request carries user-space addresses of the request and response
buffers, so the buffers are ctypes objects kept alive across the call. The
``ioctl`` callable is injectable so tests can put a model of the driver that
reads and writes through those addresses, as the kernel's copy_{from,to}_user
would.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from collections.abc import Callable
from typing import Any

from agent.errors import TeeError


def _iowr(kind: str, nr: int, size: int) -> int:
    """Linux _IOWR: dir=3 (read|write) << 30 | size << 16 | type << 8 | nr."""
    return (3 << 30) | (size << 16) | (ord(kind) << 8) | nr


class SnpGuestRequestIoctl(ctypes.Structure):
    _fields_ = (
        ("msg_version", ctypes.c_uint8),
        ("req_data", ctypes.c_uint64),
        ("resp_data", ctypes.c_uint64),
        ("exitinfo2", ctypes.c_uint64),  # low 32 bits fw_error, high 32 bits vmm_error
    )


class SnpReportReq(ctypes.Structure):
    _fields_ = (
        ("user_data", ctypes.c_uint8 * 64),
        ("vmpl", ctypes.c_uint32),
        ("rsvd", ctypes.c_uint8 * 28),
    )


class SnpReportResp(ctypes.Structure):
    _fields_ = (("data", ctypes.c_uint8 * 4000),)


class SnpExtReportReq(ctypes.Structure):
    _fields_ = (
        ("data", SnpReportReq),
        ("certs_address", ctypes.c_uint64),
        ("certs_len", ctypes.c_uint32),
    )


class TdxReportReq(ctypes.Structure):
    _fields_ = (
        ("reportdata", ctypes.c_uint8 * 64),
        ("tdreport", ctypes.c_uint8 * 1024),
    )


KERNEL_SIZES = {
    SnpGuestRequestIoctl: 32,
    SnpReportReq: 96,
    SnpReportResp: 4000,
    SnpExtReportReq: 112,
    TdxReportReq: 1088,
}
for _struct, _size in KERNEL_SIZES.items():
    assert ctypes.sizeof(_struct) == _size, (_struct.__name__, ctypes.sizeof(_struct), _size)

SNP_GET_REPORT = _iowr("S", 0x0, ctypes.sizeof(SnpGuestRequestIoctl))  # 0xC0205300
SNP_GET_EXT_REPORT = _iowr("S", 0x2, ctypes.sizeof(SnpGuestRequestIoctl))  # 0xC0205302
TDX_CMD_GET_REPORT0 = _iowr("T", 0x1, ctypes.sizeof(TdxReportReq))  # 0xC4405401
SNP_MSG_VERSION = 1
SNP_GUEST_VMM_ERR_INVALID_LEN = 1
PAGE = 4096
MAX_CERTS = 64 * PAGE

Ioctl = Callable[[int, int, Any, bool], Any]


def _why(exc: OSError, req: SnpGuestRequestIoctl | None = None) -> str:
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    if req is not None and req.exitinfo2:
        text += f" (fw_error 0x{req.exitinfo2 & 0xFFFFFFFF:x}, vmm_error 0x{req.exitinfo2 >> 32:x})"
    return text


class Device:
    """A character device opened per request, closed on every path."""

    def __init__(self, path: str, ioctl: Ioctl | None = None) -> None:
        self.path = path
        self.ioctl: Ioctl = ioctl or fcntl.ioctl

    def available(self) -> bool:
        return os.path.exists(self.path)

    def _call(self, request: int, arg: ctypes.Structure, what: str, guest_req: Any = None) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise TeeError(f"cannot open {self.path}: {_why(exc)}") from None
        try:
            self.ioctl(fd, request, arg, True)
        except OSError as exc:
            raise _IoctlFailed(exc, f"{self.path} {what} failed: {_why(exc, guest_req)}") from None
        finally:
            os.close(fd)


class _IoctlFailed(TeeError):
    def __init__(self, exc: OSError, message: str) -> None:
        super().__init__(message)
        self.errno = exc.errno


class SevGuest(Device):
    """/dev/sev-guest: SNP_GET_EXT_REPORT for report + certificates, SNP_GET_REPORT without."""

    def __init__(self, path: str = "/dev/sev-guest", ioctl: Ioctl | None = None) -> None:
        super().__init__(path, ioctl)

    @staticmethod
    def _report_from(resp: SnpReportResp) -> bytes:
        raw = bytes(resp.data)
        status = int.from_bytes(raw[0:4], "little")
        size = int.from_bytes(raw[4:8], "little")
        if status != 0:
            raise TeeError(f"SNP firmware answered status 0x{status:x} to the report request")
        if not 0 < size <= len(raw) - 0x20:
            raise TeeError(f"SNP report response claims {size} bytes")
        return raw[0x20 : 0x20 + size]

    def get_report(self, report_data: bytes, vmpl: int = 0) -> bytes:
        req = SnpReportReq(vmpl=vmpl)
        ctypes.memmove(req.user_data, report_data, 64)
        resp = SnpReportResp()
        guest = SnpGuestRequestIoctl(SNP_MSG_VERSION, ctypes.addressof(req), ctypes.addressof(resp), 0)
        self._call(SNP_GET_REPORT, guest, "SNP_GET_REPORT", guest)
        return self._report_from(resp)

    def get_ext_report(self, report_data: bytes, vmpl: int = 0) -> tuple[bytes, bytes]:
        """Report and certificate table; grows the certificate buffer once if the host asks."""
        certs_len = 4 * PAGE
        for _attempt in range(2):
            certs = (ctypes.c_uint8 * certs_len)()
            req = SnpExtReportReq(certs_address=ctypes.addressof(certs), certs_len=certs_len)
            req.data.vmpl = vmpl
            ctypes.memmove(req.data.user_data, report_data, 64)
            resp = SnpReportResp()
            guest = SnpGuestRequestIoctl(SNP_MSG_VERSION, ctypes.addressof(req), ctypes.addressof(resp), 0)
            try:
                self._call(SNP_GET_EXT_REPORT, guest, "SNP_GET_EXT_REPORT", guest)
            except _IoctlFailed:
                if guest.exitinfo2 >> 32 == SNP_GUEST_VMM_ERR_INVALID_LEN and 0 < req.certs_len <= MAX_CERTS:
                    certs_len = req.certs_len  # the kernel wrote back the length the host needs
                    continue
                raise
            return self._report_from(resp), bytes(certs)
        raise TeeError("SNP_GET_EXT_REPORT: host kept asking for a larger certificate buffer")

    def report(self, report_data: bytes) -> tuple[bytes, bytes]:
        """Extended report when the driver supports it, plain report otherwise."""
        try:
            return self.get_ext_report(report_data)
        except _IoctlFailed as exc:
            if exc.errno not in (errno.ENOTTY, errno.EINVAL, errno.EIO, errno.ENOENT):
                raise
        return self.get_report(report_data), b""


class TdxGuest(Device):
    """/dev/tdx_guest: TDX_CMD_GET_REPORT0 gives the TDREPORT for the local binding check."""

    def __init__(self, path: str = "/dev/tdx_guest", ioctl: Ioctl | None = None) -> None:
        super().__init__(path, ioctl)

    def get_report0(self, report_data: bytes) -> bytes:
        req = TdxReportReq()
        ctypes.memmove(req.reportdata, report_data, 64)
        self._call(TDX_CMD_GET_REPORT0, req, "TDX_CMD_GET_REPORT0")
        return bytes(req.tdreport)
