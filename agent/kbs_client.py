"""The guest's side of Trustee's KBS protocol (RCAR 0.4.0): what guest-components' attestation agent and
confidential data hub do to turn this VM's TEE evidence into a resource.

auth -> challenge -> attest with evidence whose REPORT_DATA is SHA-384 of the RFC 8785 canonical JSON of
``{"additional-evidence": "", "nonce", "tee-pubkey"}`` (zero-padded to 64 bytes) -> token -> resource, a
JWE decrypted with the TEE key. The key (EC P-256, ECDH-ES+A256KW, guest-components' default) is made
here, lives in this process's memory only, and is never written anywhere. The broker's URL and its CA
certificate come from the measured initdata (``cdh.toml`` ``[kbc]``, or ``aa.toml``
``[token_configs.kbs]``), never from the host. Evidence: sim and SNP reports in Trustee's ``snp`` shape
(agent/tee/snp_json.py), TDX quotes as ``{"quote", "cc_eventlog"}`` (the log without its area's filler),
Azure vTPM evidence as the provider's ``az-snp-vtpm`` document (agent/tee/az_vtpm.py).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import http.client
import json
import re
import ssl
import struct
import threading
import tomllib
import urllib.parse
from typing import Any

from agent.errors import AgentError

VERSION = "0.4.0"
REPORT_DATA_SIZE = 64
MAX_REPLY = 4 << 20
ERROR_TYPE = "https://github.com/confidential-containers/kbs/errors/"
SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # the broker's rule for a resource path segment


class KbsClientError(AgentError):
    """The broker refused (its error variant and detail) or could not be reached."""

    def __init__(self, message: str, variant: str = "", status: int = 502) -> None:
        super().__init__(message)
        self.variant = variant
        self.status = status


@dataclasses.dataclass(frozen=True)
class KbsConfig:
    url: str
    cert_pem: str | None = None
    # cdh.toml's top-level skip_sealed_secret_verification (upstream's key): unsigned sealed values
    # accepted (agent/sealed.py). Only config_from_initdata sets it, from the measured document.
    skip_sealed_secret_verification: bool = False

    def ssl_context(self) -> ssl.SSLContext:
        """TLS to the broker: its certificate from the initdata, else the system's roots."""
        try:
            if self.cert_pem:
                return ssl.create_default_context(cadata=self.cert_pem)
            return ssl.create_default_context()
        except (ssl.SSLError, ValueError) as exc:
            raise AgentError(f"the KBS certificate from the initdata is not usable: {exc}") from None


def config_from_initdata(data: dict[str, str]) -> KbsConfig | None:
    """The broker to use, from initdata's ``cdh.toml`` (``[kbc] url``, ``kbs_cert``) or ``aa.toml``
    (``[token_configs.kbs] url``, ``cert``); None when neither names one. A document that does not parse is
    an error: a pod that meant to reach a broker must not silently reach none.

    Plain ``http://`` needs ``insecure_http = true`` beside the URL (cocoon's own key): without TLS the
    host on the network path can answer in the broker's place, and a JWE to the TEE's public key is
    something anyone can make, so it could hand the pod any "secret" it likes. The opt-in is measured
    with the rest of the initdata: the pod's owner chose it, never the host; so is cdh.toml's
    ``skip_sealed_secret_verification = true`` (agent/sealed.py), which must be a TOML boolean."""
    skip = False
    for key, table, url_key, cert_key in (("cdh.toml", "kbc", "url", "kbs_cert"),
                                          ("aa.toml", "token_configs", "url", "cert")):
        text = data.get(key)
        if text is None:
            continue
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise AgentError(f"initdata {key}: not TOML: {exc}") from None
        if key == "cdh.toml":
            skip = doc.get("skip_sealed_secret_verification", False)
            if not isinstance(skip, bool):
                raise AgentError("initdata cdh.toml: skip_sealed_secret_verification is not true or false")
        section = doc.get(table, {})
        if table == "token_configs":
            section = section.get("kbs", {}) if isinstance(section, dict) else {}
        if not isinstance(section, dict) or not section.get(url_key):
            continue
        url, cert = section[url_key], section.get(cert_key)
        parts = urllib.parse.urlsplit(str(url))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AgentError(f"initdata {key}: KBS url {url!r} is not http(s)://host[:port]")
        if parts.scheme == "http" and section.get("insecure_http") is not True:
            raise AgentError(f"initdata {key}: KBS url {url!r} is plain http; the host could answer in the "
                             "broker's place (set insecure_http = true beside it to accept that)")
        if cert is not None and not isinstance(cert, str):
            raise AgentError(f"initdata {key}: {cert_key} is not a PEM string")
        config = KbsConfig(str(url).rstrip("/"), cert or None, skip)
        if parts.scheme == "https":
            config.ssl_context()  # a certificate that does not load is an error now, not at the first request
        return config
    return None


def canonical_json(value: Any) -> bytes:
    import rfc8785

    return bytes(rfc8785.dumps(value))


CCEL = "/sys/firmware/acpi/tables/data/CCEL"  # the firmware's CC event log (ACPI CCEL table data)
MAX_CCEL = 1 << 20
SPEC_ID_HEADER = 32  # TCG_PCR_EVENT (SHA-1 layout): u32 index, u32 type, 20-byte digest, u32 size at 28
SPEC_ID_FIXED = 28  # TCG_EfiSpecIDEventStruct up to and with u32 numberOfAlgorithms (at 24)
EVENT2_HEADER = 12  # TCG_PCR_EVENT2: u32 index, u32 type, u32 digest count
CC_MR_INDICES = 5  # TDX: 0 MRTD, 1..4 RTMR0..3 (edk2 CcMeasurement.h TDX_MR_INDEX_*)


RUNTIME_LOG = "/run/attestation-agent/eventlog"  # agent/eventlog.py EVENTLOG_PATH (ExtendRuntimeMeasurement)


def _cc_eventlog(path: str | None = None, runtime_log: str | None = None) -> str | None:
    """The CC event log as guest-components' TDX attester sends it (base64), when the firmware has one:
    the firmware's events without the area's filler (``trim_ccel``), then the runtime events
    ExtendRuntimeMeasurement logged for RTMR3 (upstream's attester/src/utils.rs appends its AAEL the same
    way), so a verifier replays RTMR3 too. The runtime records follow only a log whose end was found: after
    filler they would be read as junk. A record being written while this reads may be cut short; the
    verifier then refuses that evidence, and the next request reads it whole."""
    try:
        with open(path or CCEL, "rb") as f:
            data = f.read(MAX_CCEL + 1)
    except OSError:
        return None
    if not 0 < len(data) <= MAX_CCEL:
        return None
    end = _ccel_end(data)
    if end is None:
        return base64.b64encode(data).decode()
    log = data[:end]
    try:
        with open(runtime_log or RUNTIME_LOG, "rb") as f:
            log += f.read(MAX_CCEL - len(log) + 1)[: MAX_CCEL - len(log)]
    except OSError:
        pass  # no runtime events yet (or the log is off): the firmware's log alone
    return base64.b64encode(log).decode()


def trim_ccel(area: bytes) -> bytes:
    """The CCEL log area up to the end of its last event, or the whole area when that is not plain.

    The firmware reserves the area (LAML bytes: TDVF 64 KiB filled with 0xFF, td-shim up to 1 MiB of
    zeros) and the log is usually a few KiB of it; sent whole, a 1 MiB area is 1.4 MiB of base64, more than
    the broker takes in a request. Stripping trailing 0xFF/0x00 bytes would be wrong: an event may end in
    them (an EV_SEPARATOR's data is four zero bytes), and cutting into it makes the log unreadable. So the
    events are walked by their sizes (TCG PC Client PFP crypto-agile layout: the Spec ID event's digest
    sizes, then each TCG_PCR_EVENT2's digests and data size) until the rest of the area is one filler byte
    to its end, where verifier/ccel.py's parser stops too. Nothing is judged here; at the first thing the
    walk does not expect (a header that is no TDX event, a digest of an algorithm the Spec ID event does not
    list, a record running past the area) the area goes as it is and the verifier says what is wrong with
    it: sending more than needed is always safe, sending less never is."""
    end = _ccel_end(area)
    return area if end is None else area[:end]


def _ccel_end(area: bytes) -> int | None:
    try:
        spec_size: int = struct.unpack_from("<I", area, SPEC_ID_HEADER - 4)[0]
        count: int = struct.unpack_from("<I", area, SPEC_ID_HEADER + SPEC_ID_FIXED - 4)[0]
        if SPEC_ID_FIXED + 4 * count > spec_size:
            return None
        table = SPEC_ID_HEADER + SPEC_ID_FIXED  # {u16 algorithmId, u16 digestSize} per algorithm
        sizes: dict[int, int] = dict(struct.unpack_from("<HH", area, table + 4 * i) for i in range(count))
        off = SPEC_ID_HEADER + spec_size
        # where the trailing run of one filler byte begins (the verifier's parser stops there as well)
        filled = min(len(area.rstrip(b"\xff")), len(area.rstrip(b"\0")))
        while off < filled:  # each record is at least 16 bytes: bounded by the area's size
            index, _, digests = struct.unpack_from("<III", area, off)
            if index >= CC_MR_INDICES or digests != count or count == 0:
                return None
            off += EVENT2_HEADER
            for _ in range(digests):
                alg: int = struct.unpack_from("<H", area, off)[0]
                if alg not in sizes:
                    return None
                off += 2 + sizes[alg]
            size: int = struct.unpack_from("<I", area, off)[0]
            off += 4 + size
            if off > len(area):
                return None
        return min(off, len(area))
    except struct.error:  # a field past the area's end
        return None


def evidence_json(evidence: Any) -> dict[str, Any]:
    """Trustee's primary evidence for this guest's report."""
    if evidence.kind == "snp":
        from agent.tee import certtable, snp_json

        certs = certtable.parse(evidence.aux) if evidence.aux else {}
        return {"attestation_report": snp_json.to_json(evidence.report),
                "cert_chain": snp_json.chain_json(certs) or None}
    if evidence.kind == "tdx-quote":
        return {"quote": base64.b64encode(evidence.report).decode(), "cc_eventlog": _cc_eventlog()}
    if evidence.kind == "az-snp-vtpm":  # the provider made the document itself (agent/tee/az_vtpm.py)
        from agent.tee.az_vtpm import evidence_document

        return evidence_document(evidence)
    raise KbsClientError(f"evidence of kind {evidence.kind} cannot be sent to a KBS")


MAX_QUOTE = 64 << 10


def read_evidence(tee: str, doc: Any) -> tuple[str, bytes, bytes]:
    """The inverse of evidence_json, for whoever judges it (the key broker, the coordinator): (verifier kind,
    report, aux) from ``snp`` ``{"attestation_report", "cert_chain"}`` or ``tdx`` ``{"quote",
    "cc_eventlog"}``; anything else is a ReportError naming what is wrong."""
    from agent.errors import ReportError

    if tee == "snp":
        if not isinstance(doc, dict) or set(doc) - {"attestation_report", "cert_chain"} or \
                "attestation_report" not in doc:
            raise ReportError("snp evidence must be {attestation_report, cert_chain}")
        from agent.tee import certtable, snp_json

        report = snp_json.from_json(doc["attestation_report"])
        certs = snp_json.cert_table(doc.get("cert_chain"))
        return "snp", report, certtable.build(certs) if certs else b""
    if tee == "tdx":
        if not isinstance(doc, dict) or set(doc) - {"quote", "cc_eventlog"} or "quote" not in doc:
            raise ReportError("tdx evidence must be {quote, cc_eventlog}")
        quote = doc["quote"]
        if not isinstance(quote, str) or len(quote) > 2 * MAX_QUOTE:
            raise ReportError("tdx quote is not a base64 string of at most 64 KiB")
        try:
            return "tdx-quote", base64.b64decode(quote, validate=True), b""
        except (binascii.Error, ValueError):
            raise ReportError("tdx quote is not base64") from None
    raise ReportError(f"evidence of TEE {tee!r} is neither snp nor tdx")


def read_cc_eventlog(doc: Any) -> bytes | None:
    """The CC event log area a ``tdx`` evidence document carries (read_evidence has checked its keys),
    decoded; None when it carries none (absent, null or empty). Bounded before decoding: base64 of more than
    MAX_CCEL bytes (what a guest sends at most, and the verifier's parser takes) is a ReportError, and so is
    anything but a base64 string."""
    from agent.errors import ReportError

    value = doc.get("cc_eventlog") if isinstance(doc, dict) else None
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 4 * -(-MAX_CCEL // 3):
        raise ReportError(f"cc_eventlog is not a base64 string of at most {MAX_CCEL} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ReportError("cc_eventlog is not base64") from None


class KbsClient:
    """One TEE key, one token at a time (renewed when the broker says it is missing or stale)."""

    def __init__(self, config: KbsConfig | None, tee: Any, timeout: float = 30.0,
                 initdata: bytes | None = None) -> None:
        """``initdata``: the measured document, sent with the evidence (as guest-components' agent does) so
        the broker checks its digest against the launch's and the token carries its entries."""
        from jwcrypto import jwk

        self.config, self.tee, self.timeout = config, tee, timeout
        self.initdata = initdata
        self.parts = urllib.parse.urlsplit(config.url if config is not None else "")
        self.key = jwk.JWK.generate(kty="EC", crv="P-256")
        self.public = {**json.loads(self.key.export_public()), "alg": "ECDH-ES+A256KW"}
        self.token: str | None = None
        self.lock = threading.Lock()

    def _request(self, method: str, path: str, body: Any = None, cookie: str = "",
                 bearer: str = "") -> tuple[bytes, dict[str, str]]:
        if self.config is None:
            raise KbsClientError("the pod's initdata names no KBS (cdh.toml [kbc] url): no resource can be "
                                 "fetched or unsealed", status=503)
        if self.parts.scheme == "https":
            try:
                ctx = self.config.ssl_context()
            except AgentError as exc:
                raise KbsClientError(str(exc), status=503) from None
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.parts.hostname or "", self.parts.port, timeout=self.timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(self.parts.hostname or "", self.parts.port, timeout=self.timeout)
        headers = {"Content-Type": "application/json"}
        if cookie:
            headers["Cookie"] = cookie
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        try:
            conn.request(method, self.parts.path.rstrip("/") + path,
                         body=json.dumps(body).encode() if body is not None else None, headers=headers)
            reply = conn.getresponse()
            raw = reply.read(MAX_REPLY + 1)
            status = reply.status
            got = {k.lower(): v for k, v in reply.getheaders()}
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            raise KbsClientError(f"KBS {self.config.url}: {exc}", status=503) from None
        finally:
            conn.close()
        if status != 200:
            variant, detail = "", raw[:300].decode(errors="replace")
            try:
                doc = json.loads(raw)
                if isinstance(doc, dict) and str(doc.get("type", "")).startswith(ERROR_TYPE):
                    variant, detail = str(doc["type"])[len(ERROR_TYPE):], str(doc.get("detail", ""))
            except ValueError:
                pass
            raise KbsClientError(f"KBS {path}: {variant or status}: {detail}", variant,
                                 status=403 if variant == "PolicyDeny" else 502)
        return raw, got

    def attest(self) -> str:
        raw, headers = self._request("POST", "/kbs/v0/auth", {"version": VERSION, "tee": self._tee(),
                                                                "extra-params": ""})
        cookie = headers.get("set-cookie", "").split(";")[0]
        try:
            nonce = json.loads(raw)["nonce"]
        except (ValueError, KeyError, TypeError):
            raise KbsClientError("KBS /auth: the challenge has no nonce") from None
        if not isinstance(nonce, str):
            raise KbsClientError("KBS /auth: the challenge's nonce is not a string")
        runtime = {"additional-evidence": "", "nonce": nonce, "tee-pubkey": self.public}
        import hashlib

        report_data = hashlib.sha384(canonical_json(runtime)).digest().ljust(REPORT_DATA_SIZE, b"\0")
        evidence = self.tee.report(report_data)
        if self.tee.report_data_of(evidence) != report_data:
            raise KbsClientError("the TEE returned a report for other REPORT_DATA")
        body: dict[str, Any] = {
            "runtime-data": {"nonce": nonce, "tee-pubkey": self.public},
            "tee-evidence": {"primary_evidence": evidence_json(evidence), "additional_evidence": ""}}
        if self.initdata is not None:
            body["init-data"] = {"format": "toml", "body": self.initdata.decode("utf-8", errors="strict")}
        raw, _ = self._request("POST", "/kbs/v0/attest", body, cookie=cookie)
        try:
            token = str(json.loads(raw)["token"])
        except (ValueError, KeyError, TypeError):
            raise KbsClientError("KBS /attest: the answer has no token") from None
        self.token = token
        return token

    def _tee(self) -> str:
        return self.tee.name if self.tee.name in ("tdx", "az-snp-vtpm") else "snp"  # sim sends snp evidence

    def get_token(self) -> str:
        with self.lock:
            return self.token or self.attest()

    def get_resource(self, path: str) -> bytes:
        """``path`` is ``repo/type/tag`` (a ``kbs:///repo/type/tag`` URI's path)."""
        from jwcrypto import jwe

        segments = path.strip("/").split("/")
        if len(segments) != 3 or not all(SEGMENT.fullmatch(s) and ".." not in s for s in segments):
            raise KbsClientError(f"resource {path!r} is not repo/type/tag of plain names", status=400)
        for attempt in (0, 1):
            token = self.get_token()
            try:
                raw, _ = self._request("GET", f"/kbs/v0/resource/{'/'.join(segments)}", bearer=token)
                break
            except KbsClientError as exc:
                if attempt or exc.variant not in ("TokenVerifierError", "TokenNotFound"):
                    raise
                with self.lock:
                    self.token = None  # expired: attest again, once
        message = jwe.JWE()
        try:
            message.deserialize(raw.decode(), key=self.key)
        except Exception as exc:
            raise KbsClientError(f"the resource does not decrypt with this TEE's key: {exc}") from None
        return bytes(message.payload)

    def keypair_pem(self) -> str:
        return bytes(self.key.export_to_pem(private_key=True, password=None)).decode()
