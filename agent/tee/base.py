"""What every TEE provider offers: a report bound to caller data, and one bound field.

The agent's whole security argument rests on two facts per TEE: the report
is produced by hardware (or, for ``sim``, by the launcher) over a channel the
host cannot forge, and one field of it (SNP HOSTDATA, TDX MRCONFIGID) was
fixed by whoever launched the VM. Providers expose exactly that.
"""

from __future__ import annotations

from typing import Protocol

from agent.record import factory, record

REPORT_DATA_SIZE = 64


@record(frozen=True)
class Evidence:
    """A report as the TEE produced it, plus what a verifier needs next to it.

    ``kind`` names the report format (``snp``: AMD ATTESTATION_REPORT, also
    used by ``sim``; ``tdx-quote``; ``tdx-report``: a TDREPORT, only locally
    verifiable). ``aux`` is the SNP certificate table (auxblob) when the
    platform provides one. ``tee`` names the provider that made it.
    """

    tee: str
    kind: str
    report: bytes
    aux: bytes = b""
    source: str = ""
    extra: dict[str, str] = factory(dict)


class TeeProvider(Protocol):
    """One interface for snp, tdx and sim, so the daemon never branches on hardware."""

    name: str
    bound_field: str
    bound_size: int

    def report(self, report_data: bytes) -> Evidence:
        """Return fresh evidence whose REPORT_DATA is ``report_data`` (exactly 64 bytes)."""
        ...

    def bound_value(self, evidence: Evidence) -> bytes:
        """The launcher-fixed field of ``evidence`` (HOSTDATA or MRCONFIGID)."""
        ...

    def report_data_of(self, evidence: Evidence) -> bytes:
        """The REPORT_DATA the evidence carries, to confirm it is the fresh one asked for."""
        ...


def check_report_data(report_data: bytes) -> bytes:
    """Reject anything but exactly 64 bytes: the SNP driver would, and a short value hides bugs."""
    from agent.errors import TeeError

    if not isinstance(report_data, bytes | bytearray) or len(report_data) != REPORT_DATA_SIZE:
        size = len(report_data) if isinstance(report_data, bytes | bytearray) else type(report_data).__name__
        raise TeeError(f"report data must be exactly {REPORT_DATA_SIZE} bytes, got {size}")
    return bytes(report_data)
