"""TDX provider: a quote through configfs-tsm, else the TDREPORT from /dev/tdx_guest.

The TDREPORT path is enough for the agent's own MRCONFIGID check (it comes
from the TDX module over a TDCALL the host cannot intercept) but gives no
remotely verifiable evidence; ``kind`` tells a verifier which one it holds.
"""

from __future__ import annotations

import agent.tee.tdx_report as tdx_report
from agent.errors import TeeError
from agent.tee.base import Evidence, check_report_data
from agent.tee.configfs import DEFAULT_ROOT, FsOps, TsmReport
from agent.tee.ioctl import Ioctl, TdxGuest


class TdxProvider:
    name = "tdx"
    bound_field = "MRCONFIGID"
    bound_size = 48

    def __init__(self, configfs_root: str = DEFAULT_ROOT, device: str = "/dev/tdx_guest",
                 fs: FsOps | None = None, ioctl: Ioctl | None = None) -> None:
        self.tsm = TsmReport("tdx_guest", configfs_root, fs)
        self.device = TdxGuest(device, ioctl)

    def available(self) -> bool:
        return self.tsm.available() or self.device.available()

    def report(self, report_data: bytes) -> Evidence:
        report_data = check_report_data(report_data)
        if self.tsm.available():
            quote, _ = self.tsm.request(report_data, aux=False)
            tdx_report.parse_quote(quote)
            return Evidence(tee=self.name, kind="tdx-quote", report=quote, source="configfs-tsm")
        if self.device.available():
            report = self.device.get_report0(report_data)
            tdx_report.parse_tdreport(report)
            return Evidence(tee=self.name, kind="tdx-report", report=report, source="tdx-guest-ioctl")
        raise TeeError(f"no TDX report interface: neither {self.tsm.root} nor {self.device.path} exists")

    @staticmethod
    def _parsed(evidence: Evidence) -> tdx_report.Quote | tdx_report.TdReport:
        if evidence.kind == "tdx-quote":
            return tdx_report.parse_quote(evidence.report)
        return tdx_report.parse_tdreport(evidence.report)

    def bound_value(self, evidence: Evidence) -> bytes:
        return self._parsed(evidence).mrconfigid

    def report_data_of(self, evidence: Evidence) -> bytes:
        return self._parsed(evidence).report_data
