"""SEV-SNP provider: configfs-tsm first, /dev/sev-guest ioctls when configfs is absent."""

from __future__ import annotations

import agent.tee.snp_report as snp_report
from agent.errors import TeeError
from agent.tee.base import Evidence, check_report_data
from agent.tee.configfs import DEFAULT_ROOT, FsOps, TsmReport
from agent.tee.ioctl import Ioctl, SevGuest


class SnpProvider:
    name = "snp"
    bound_field = "HOSTDATA"
    bound_size = 32

    def __init__(self, configfs_root: str = DEFAULT_ROOT, device: str = "/dev/sev-guest",
                 fs: FsOps | None = None, ioctl: Ioctl | None = None) -> None:
        self.tsm = TsmReport("sev_guest", configfs_root, fs)
        self.device = SevGuest(device, ioctl)

    def available(self) -> bool:
        return self.tsm.available() or self.device.available()

    def report(self, report_data: bytes) -> Evidence:
        report_data = check_report_data(report_data)
        if self.tsm.available():
            report, aux = self.tsm.request(report_data, aux=True)
            source = "configfs-tsm"
        elif self.device.available():
            report, aux = self.device.report(report_data)
            source = "sev-guest-ioctl"
        else:
            raise TeeError(f"no SNP report interface: neither {self.tsm.root} nor {self.device.path} exists")
        snp_report.parse(report)  # a report we cannot parse is not evidence
        return Evidence(tee=self.name, kind="snp", report=report, aux=aux, source=source)

    def bound_value(self, evidence: Evidence) -> bytes:
        return snp_report.parse(evidence.report).host_data

    def report_data_of(self, evidence: Evidence) -> bytes:
        return snp_report.parse(evidence.report).report_data
