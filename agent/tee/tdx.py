"""TDX provider: a quote through configfs-tsm, else the TDREPORT from /dev/tdx_guest.

The TDREPORT path is enough for the agent's own MRCONFIGID check (it comes
from the TDX module over a TDCALL the host cannot intercept) but gives no
remotely verifiable evidence; ``kind`` tells a verifier which one it holds.

Runtime measurements (agent/eventlog.py): RTMR3 only, through the measurement registers Linux 6.16 puts
in sysfs (Documentation/ABI/testing/sysfs-devices-virtual-misc-tdx_guest: ``rtmr[0123]:sha384``, read
gives the register, a write of exactly 48 bytes at offset 0 extends it, anything else EINVAL); the
directory guest-components' TDX attester uses too (``TDX_TSM_SYSFS_PATH``). configfs-tsm has no extend,
and mainline never had an extend ioctl: TDX_CMD_EXTEND_RTMR lived only in Intel's out-of-tree guest
kernels, with two encodings (_IOR and _IOW 'T' 3). The image's kernel (Debian 6.12) has neither, so
there the provider says it has no runtime registers and requests get NOT_SUPPORTED.

Request indices are PCR numbers, mapped as upstream's ``pcr_to_ccmr`` maps them (UEFI 2.11 §38.4.1 for
1-15: PCR 1/7 -> RTMR0, 2-6 -> RTMR1, 8-15 -> RTMR2; the rest -> CC MR 4 = RTMR3). RTMR0-2 hold the
firmware's, the loader's and the kernel's measurements (igvm/tdx predicts RTMR1/RTMR2), and initdata is
bound by MRCONFIGID, so only the PCR numbers 16-23 (RTMR3) are admitted; upstream's default, 17, is one.
"""

from __future__ import annotations

import os

import agent.tee.tdx_report as tdx_report
from agent.errors import TeeError
from agent.tee.base import Evidence, check_report_data
from agent.tee.configfs import DEFAULT_ROOT, FsOps, RealFs, TsmReport
from agent.tee.ioctl import Ioctl, TdxGuest

MEASUREMENTS_ROOT = "/sys/devices/virtual/misc/tdx_guest/measurements"
RTMR_SIZE = 48
RUNTIME_CCMR = 4  # CC MR index of RTMR3, what the event log records (MR index 1..4 = RTMR0..3)
RUNTIME_RTMR = RUNTIME_CCMR - 1


class TdxMeasurements:
    """The ``measurements`` sysfs directory of the tdx_guest device, through ``fs`` (tests: a model)."""

    def __init__(self, root: str = MEASUREMENTS_ROOT, fs: FsOps | None = None) -> None:
        self.root = root
        self.fs = fs or RealFs()

    def _path(self, rtmr: int) -> str:
        return os.path.join(self.root, f"rtmr{rtmr}:sha384")

    def available(self) -> bool:
        return self.fs.isdir(self.root)

    def read_rtmr(self, rtmr: int) -> bytes:
        try:
            value = self.fs.read(self._path(rtmr))
        except OSError as exc:
            raise TeeError(f"reading {self._path(rtmr)} failed: {os.strerror(exc.errno or 0)}") from None
        if len(value) != RTMR_SIZE:
            raise TeeError(f"{self._path(rtmr)} reads {len(value)} bytes, not {RTMR_SIZE}")
        return value

    def extend_rtmr(self, rtmr: int, data: bytes) -> None:
        if len(data) != RTMR_SIZE:
            raise TeeError(f"an RTMR is extended with exactly {RTMR_SIZE} bytes, not {len(data)}")
        try:
            self.fs.write(self._path(rtmr), data)
        except OSError as exc:
            raise TeeError(f"extending RTMR{rtmr} through {self._path(rtmr)} failed: "
                           f"{os.strerror(exc.errno or 0)}") from None


class TdxProvider:
    name = "tdx"
    bound_field = "MRCONFIGID"
    bound_size = 48
    runtime_algorithm = "sha384"
    runtime_indices = tuple(range(16, 24))  # PCR numbers that map to RTMR3 (module docstring)
    default_runtime_index = 17  # upstream's DEFAULT_PCR_INDEX

    def __init__(self, configfs_root: str = DEFAULT_ROOT, device: str = "/dev/tdx_guest",
                 fs: FsOps | None = None, ioctl: Ioctl | None = None,
                 measurements_root: str = MEASUREMENTS_ROOT, measurements_fs: FsOps | None = None) -> None:
        self.tsm = TsmReport("tdx_guest", configfs_root, fs)
        self.device = TdxGuest(device, ioctl)
        self.measurements = TdxMeasurements(measurements_root, measurements_fs)

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

    # --- runtime measurements (agent/eventlog.py RuntimeRegisters) -------------------------------------
    def runtime_measurement_available(self) -> bool:
        return self.measurements.available()

    def runtime_register(self, index: int) -> int:
        if index not in self.runtime_indices:
            raise TeeError(f"PCR {index} does not map to RTMR3")
        return RUNTIME_CCMR

    @staticmethod
    def _rtmr(register: int) -> int:
        if register != RUNTIME_CCMR:  # RTMR0-2 belong to the boot chain, never extended here
            raise TeeError(f"CC MR {register} is not RTMR3 (CC MR {RUNTIME_CCMR}); only RTMR3 takes runtime events")
        return RUNTIME_RTMR

    def read_runtime(self, register: int) -> bytes:
        return self.measurements.read_rtmr(self._rtmr(register))

    def extend_runtime(self, register: int, digest: bytes) -> None:
        self.measurements.extend_rtmr(self._rtmr(register), digest)
