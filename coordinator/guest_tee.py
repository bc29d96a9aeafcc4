"""The TEE of the guest a cocoon service runs in as a container: its attestation agent (agent/datahub.py's
REST door, http://127.0.0.1:8006/aa/evidence), behind the TeeProvider interface the aTLS server uses.

Why: a container has no TEE device (the agent keeps /dev/sev-guest, the TDX device and configfs-tsm to
itself), so the coordinator, run as a confidential pod, asks its guest for evidence the way a CoCo
workload does, and the evidence is the guest's own: its HOSTDATA / MRCONFIGID is the pod's initdata digest.
The answer is read with the one reader of that JSON (agent/kbs_client.read_evidence) and checked to carry
the REPORT_DATA asked for, so a confused endpoint cannot make the certificate carry stale evidence.
"""

from __future__ import annotations

import base64
import http.client
import urllib.parse

from agent.errors import ReportError, TeeError
from agent.kbs_client import read_evidence
from agent.strictjson import loads
from agent.tee import snp_report, tdx_report
from agent.tee.base import Evidence, check_report_data

MAX_ANSWER = 1 << 20


class GuestTee:
    """Evidence from the guest's attestation agent at ``url``."""

    name = "guest"
    bound_field = "HOSTDATA or MRCONFIGID"
    bound_size = 32

    def __init__(self, url: str = "http://127.0.0.1:8006", timeout: float = 60.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise TeeError(f"the attestation agent's URL {url!r} is not http://HOST[:PORT]")
        self.url, self.host, self.port, self.timeout = url, parts.hostname, parts.port or 8006, timeout

    def report(self, report_data: bytes) -> Evidence:
        check_report_data(report_data)
        query = urllib.parse.urlencode({"runtime_data": base64.b64encode(report_data).decode(), "encoding": "base64"})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("GET", f"/aa/evidence?{query}")
            reply = conn.getresponse()
            body = reply.read(MAX_ANSWER + 1)
        except (OSError, http.client.HTTPException) as exc:  # a reply that is not HTTP is an error too
            raise TeeError(f"the attestation agent at {self.url}: {type(exc).__name__}: {exc}") from None
        finally:
            conn.close()
        if reply.status != 200:
            raise TeeError(f"the attestation agent refused ({reply.status}): {body[:300].decode(errors='replace')}")
        if len(body) > MAX_ANSWER:
            raise TeeError(f"the attestation agent's answer is over {MAX_ANSWER} bytes")
        try:
            doc = loads(body)
            tee = "tdx" if isinstance(doc, dict) and "quote" in doc else "snp"
            kind, raw, aux = read_evidence(tee, doc)
        except (ValueError, RecursionError, ReportError) as exc:
            raise TeeError(f"the attestation agent's evidence is malformed: {exc}") from None
        evidence = Evidence(tee=tee, kind=kind, report=raw, aux=aux, source=self.url)
        if self.report_data_of(evidence) != report_data:
            raise TeeError("the attestation agent's evidence carries other REPORT_DATA than asked for")
        return evidence

    def bound_value(self, evidence: Evidence) -> bytes:
        if evidence.kind == "snp":
            return snp_report.parse(evidence.report).host_data
        return tdx_report.parse_quote(evidence.report).mrconfigid

    def report_data_of(self, evidence: Evidence) -> bytes:
        try:
            if evidence.kind == "snp":
                return snp_report.parse(evidence.report).report_data
            return tdx_report.parse_quote(evidence.report).report_data
        except ReportError as exc:
            raise TeeError(f"the attestation agent's report does not parse: {exc}") from None
