"""Test doubles for the kernel's TEE interfaces, modelled on the kernel's behaviour.

``KernelTsm`` follows drivers/virt/coco/tsm.c (configfs-tsm): mkdir creates a
report with generation 0; every inblob write bumps the generation; a write
over TSM_INBLOB_MAX (64) fails with EFBIG; the SNP provider refuses an
outblob read unless the inblob was exactly 64 bytes (EINVAL, as
``sev_report_new``); ``auxblob`` is absent (ENOENT) for providers without
one. ``SevGuestDriver`` and ``TdxGuestDriver`` stand in for the ioctl
handlers: they read the request through the user addresses in it and write
the response back, as copy_from_user/copy_to_user would.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from typing import Any

from agent.tee import snp_report, tdx_report
from agent.tee.ioctl import (
    SNP_GET_EXT_REPORT,
    SNP_GET_REPORT,
    TDX_CMD_GET_REPORT0,
    SnpExtReportReq,
    SnpGuestRequestIoctl,
    SnpReportReq,
    TdxReportReq,
)


def snp_report_for(key, report_data: bytes, host_data: bytes, version: int = 3) -> bytes:  # type: ignore[no-untyped-def]
    body = snp_report.build_body(version=version, signature_algo=1, report_data=report_data,
                                 host_data=host_data, measurement=b"\x11" * 48, policy=0x30000)
    return snp_report.sign(body, key)


class KernelTsm:
    """In-memory configfs-tsm with the kernel's rules."""

    def __init__(self, root: str, provider: str, make_outblob: Callable[[bytes], bytes], auxblob: bytes | None = None):
        self.root = root
        self.provider = provider
        self.make_outblob = make_outblob
        self.auxblob = auxblob
        self.reports: dict[str, dict[str, Any]] = {}
        self.on_outblob: Callable[[dict[str, Any]], None] | None = None
        self.removed: list[str] = []

    def _entry(self, path: str) -> tuple[dict[str, Any], str]:
        directory, attr = os.path.split(path)
        if directory not in self.reports:
            raise OSError(errno.ENOENT, "No such file or directory")
        return self.reports[directory], attr

    def isdir(self, path: str) -> bool:
        return path == self.root or path in self.reports

    def mkdir(self, path: str) -> None:
        if os.path.dirname(path) != self.root:
            raise OSError(errno.ENOENT, "No such file or directory")
        if path in self.reports:
            raise OSError(errno.EEXIST, "File exists")
        self.reports[path] = {"generation": 0, "inblob": b"", "outblob": None}

    def rmdir(self, path: str) -> None:
        if path not in self.reports:
            raise OSError(errno.ENOENT, "No such file or directory")
        del self.reports[path]
        self.removed.append(path)

    def write(self, path: str, data: bytes) -> None:
        entry, attr = self._entry(path)
        if attr != "inblob":
            raise OSError(errno.EACCES, "Permission denied")
        if len(data) > 64:
            raise OSError(errno.EFBIG, "File too large")
        entry["inblob"] = bytes(data)
        entry["outblob"] = None
        entry["generation"] += 1

    def read(self, path: str) -> bytes:
        entry, attr = self._entry(path)
        if attr == "provider":
            return f"{self.provider}\n".encode()
        if attr == "generation":
            return f"{entry['generation']}\n".encode()
        if attr == "outblob":
            if self.provider == "sev_guest" and len(entry["inblob"]) != 64:
                raise OSError(errno.EINVAL, "Invalid argument")
            if self.on_outblob:
                self.on_outblob(entry)
            out: bytes | None = entry["outblob"]
            if out is None:
                out = entry["outblob"] = self.make_outblob(entry["inblob"])
            return out
        if attr == "auxblob":
            if self.auxblob is None:
                raise OSError(errno.ENOENT, "No such file or directory")
            return self.auxblob
        raise OSError(errno.ENOENT, "No such file or directory")


class SevGuestDriver:
    """The /dev/sev-guest ioctl handler: reads requests via their user addresses."""

    def __init__(self, make_report: Callable[[bytes], bytes], certs: bytes | None = b"", fw_status: int = 0):
        self.make_report = make_report
        self.certs = certs  # None: the host supports no extended report (kernel answers ENOTTY-like)
        self.fw_status = fw_status
        self.calls: list[str] = []
        self.vmpls: list[int] = []

    def __call__(self, fd: int, request: int, arg, mutate: bool) -> int:  # type: ignore[no-untyped-def]
        assert mutate
        if request not in (SNP_GET_REPORT, SNP_GET_EXT_REPORT):
            raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
        guest = SnpGuestRequestIoctl.from_buffer_copy(bytes(arg))
        if guest.msg_version != 1:
            raise OSError(errno.EINVAL, "Invalid argument")
        if request == SNP_GET_EXT_REPORT:
            self.calls.append("ext")
            if self.certs is None:
                raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
            req = SnpExtReportReq.from_buffer_copy(ctypes.string_at(guest.req_data, ctypes.sizeof(SnpExtReportReq)))
            data = req.data
            needed = -(-len(self.certs) // 4096) * 4096
            if req.certs_len < needed:
                req.certs_len = needed
                ctypes.memmove(guest.req_data, bytes(req), ctypes.sizeof(req))
                arg.exitinfo2 = 1 << 32  # vmm_error = SNP_GUEST_VMM_ERR_INVALID_LEN
                raise OSError(errno.EIO, "Input/output error")
            ctypes.memmove(req.certs_address, self.certs, len(self.certs))
        else:
            self.calls.append("report")
            data = SnpReportReq.from_buffer_copy(ctypes.string_at(guest.req_data, ctypes.sizeof(SnpReportReq)))
        if any(data.rsvd):
            raise OSError(errno.EINVAL, "Invalid argument")
        self.vmpls.append(data.vmpl)
        report = self.make_report(bytes(data.user_data))
        resp = self.fw_status.to_bytes(4, "little") + len(report).to_bytes(4, "little") + bytes(24) + report
        ctypes.memmove(guest.resp_data, resp + bytes(4000 - len(resp)), 4000)
        return 0


class TdxGuestDriver:
    """The /dev/tdx_guest TDX_CMD_GET_REPORT0 handler: report written into the caller's struct."""

    def __init__(self, mrconfigid: bytes):
        self.mrconfigid = mrconfigid

    def __call__(self, fd: int, request: int, arg, mutate: bool) -> int:  # type: ignore[no-untyped-def]
        if request != TDX_CMD_GET_REPORT0 or ctypes.sizeof(arg) != ctypes.sizeof(TdxReportReq):
            raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
        report = tdx_report.build_tdreport(bytes(arg.reportdata), mrconfigid=self.mrconfigid)
        ctypes.memmove(arg.tdreport, report, len(report))
        return 0
