"""The attestation agent's and confidential data hub's ttRPC services on their usual unix sockets, for
clients written against CoCo's guest-components (a container bind-mounting the socket, a sidecar):

    /run/confidential-containers/attestation-agent/attestation-agent.sock
        attestation_agent.AttestationAgentService: GetEvidence, GetAdditionalEvidence, GetToken,
        ExtendRuntimeMeasurement (agent/eventlog.py), BindInitData, GetTeeType
    /run/confidential-containers/cdh.sock
        api.GetResourceService: GetResource(kbs:///repo/type/tag); api.SealedSecretService: UnsealSecret

Both are cocoon's ttRPC server (agent/ttrpc.py) over the same KBS client as the REST door
(agent/datahub.py): one TEE key, one token. Every handler has the same shape: check the request, act,
answer; a failure is an RpcError with the reason (PERMISSION_DENIED when the broker's policy refused).

A container reaches the sockets through a read-only bind mount of one of ``CONTAINER_SOURCES`` (a pod asks
with a hostPath volume naming it, which ``cocoon generate`` pins; agent/storage.py ``bind_source`` is the
agent's own check). Only these guest paths: the attestation agent's socket directory (Kata's
AA_UNIX_SOCKET_DIR, which holds nothing else) and the two socket files; never the data hub's directory
/run/confidential-containers itself, which in CoCo's guests also holds the initdata and the KBS credentials.
"""

from __future__ import annotations

import json
import os
import threading
from typing import TYPE_CHECKING, Any

from agent.errors import AgentError
from agent.kbs_client import KbsClient, KbsClientError, evidence_json
from agent.protocols import attestation_agent_pb2 as aa
from agent.protocols import confidential_data_hub_pb2 as cdh
from agent.rpc import Code, Method, Registry, RpcError, Service

if TYPE_CHECKING:
    from agent.binding import ExtendBinding
    from agent.eventlog import EventlogConfig, RuntimeLog

AA_SOCKET = "/run/confidential-containers/attestation-agent/attestation-agent.sock"
CDH_SOCKET = "/run/confidential-containers/cdh.sock"
AA_SOCKET_DIR = os.path.dirname(AA_SOCKET)
#: The guest paths a container's bind mount may name as its source, besides the shared directories, and the
#: kind of file each must be when the container is created.
CONTAINER_SOURCES: dict[str, str] = {AA_SOCKET_DIR: "directory", AA_SOCKET: "socket", CDH_SOCKET: "socket"}
MAX_RUNTIME_DATA = 64
EVENTLOG_PATH = "/run/attestation-agent/eventlog"  # agent/eventlog.py EVENTLOG_PATH (imported when first used)


def _fail(exc: AgentError) -> RpcError:
    if isinstance(exc, KbsClientError) and exc.variant == "PolicyDeny":
        return RpcError(Code.PERMISSION_DENIED, str(exc))
    if isinstance(exc, KbsClientError) and exc.status == 400:
        return RpcError(Code.INVALID_ARGUMENT, str(exc))
    return RpcError(Code.UNAVAILABLE if isinstance(exc, KbsClientError) else Code.INVALID_ARGUMENT, str(exc))


class GuestComponents:
    def __init__(self, client: KbsClient, initdata_digest: bytes | None, *,
                 eventlog_path: str = EVENTLOG_PATH) -> None:
        self.client = client
        self.tee = client.tee
        self.initdata_digest = initdata_digest
        self.eventlog_path = eventlog_path
        self._eventlog_config: EventlogConfig | None = None
        self._runtime_log: RuntimeLog | None = None
        self._runtime_lock = threading.Lock()

    # --- attestation agent ------------------------------------------------------------------------------
    def get_evidence(self, req: Any, ctx: Any) -> aa.GetEvidenceResponse:
        if len(req.RuntimeData) > MAX_RUNTIME_DATA:
            raise RpcError(Code.INVALID_ARGUMENT, f"RuntimeData is {len(req.RuntimeData)} bytes, at most "
                                                  f"{MAX_RUNTIME_DATA}")
        try:
            evidence = self.tee.report(bytes(req.RuntimeData).ljust(64, b"\0"))
            return aa.GetEvidenceResponse(Evidence=json.dumps(evidence_json(evidence)).encode())
        except AgentError as exc:
            raise _fail(exc) from None

    def get_additional_evidence(self, req: Any, ctx: Any) -> aa.GetEvidenceResponse:
        return aa.GetEvidenceResponse(Evidence=b"")  # no devices beside the CPU TEE

    def get_token(self, req: Any, ctx: Any) -> aa.GetTokenResponse:
        if req.TokenType != "kbs":
            raise RpcError(Code.INVALID_ARGUMENT, f"token type {req.TokenType!r}: only kbs")
        try:
            body = {"token": self.client.get_token(), "tee_keypair": self.client.keypair_pem()}
        except AgentError as exc:
            raise _fail(exc) from None
        return aa.GetTokenResponse(Token=json.dumps(body).encode())

    def extend_runtime_measurement(self, req: Any, ctx: Any) -> aa.ExtendRuntimeMeasurementResponse:
        """Upstream's ``extend_runtime_measurement`` (attestation-agent/src/lib.rs): NOT_SUPPORTED without
        runtime registers (SNP, sim, a TDX kernel without the RTMR interface: asked first, so those answer
        alike whatever the initdata), NOT_ENABLED unless the measured aa.toml says ``[eventlog_config]
        enable_eventlog = true``, else the event is logged and measured (agent/eventlog.py) in the register
        RegisterIndex names, or ``init_pcr``, or the TEE's default. A refused request changes nothing."""
        from agent import eventlog

        registers = eventlog.runtime_registers(self.tee)
        if registers is None:
            return aa.ExtendRuntimeMeasurementResponse(Result=aa.NOT_SUPPORTED)
        try:
            if self._eventlog_config is None:
                self._eventlog_config = eventlog.eventlog_config(self.client.initdata)
            config = self._eventlog_config
        except AgentError as exc:
            raise RpcError(Code.FAILED_PRECONDITION, str(exc)) from None
        if not config.enabled:
            return aa.ExtendRuntimeMeasurementResponse(Result=aa.NOT_ENABLED)
        index = req.RegisterIndex if req.HasField("RegisterIndex") else config.init_pcr
        with self._runtime_lock:
            if self._runtime_log is None:
                self._runtime_log = eventlog.RuntimeLog(registers, self.eventlog_path)
            log = self._runtime_log
        try:
            log.extend(req.Domain, req.Operation, req.Content,
                       index if index is not None else registers.default_runtime_index)
        except eventlog.EventRefused as exc:
            raise RpcError(Code.INVALID_ARGUMENT, str(exc)) from None
        except eventlog.EventLogFull as exc:
            raise RpcError(Code.RESOURCE_EXHAUSTED, str(exc)) from None
        except eventlog.RegisterError as exc:
            raise RpcError(Code.UNAVAILABLE, str(exc)) from None
        except AgentError as exc:
            raise RpcError(Code.FAILED_PRECONDITION, str(exc)) from None
        return aa.ExtendRuntimeMeasurementResponse(Result=aa.OK)

    def bind_init_data(self, req: Any, ctx: Any) -> aa.BindInitDataResponse:
        """The launch must have bound exactly this digest (padded or truncated to the platform field); a TEE
        that binds by extending a register (agent/binding.py ``ExtendBinding``) must hold exactly this digest's
        one extend there."""
        from agent.binding import binds_by_extend
        from agent.initdata import digest_for_field

        if binds_by_extend(self.tee):
            return self._bind_by_extend(self.tee, bytes(req.Digest))
        try:
            evidence = self.tee.report(bytes(64))
            bound = self.tee.bound_value(evidence)
        except AgentError as exc:
            raise _fail(exc) from None
        if digest_for_field(bytes(req.Digest), len(bound)) != bound:
            raise RpcError(Code.FAILED_PRECONDITION, f"the launch bound {bound.hex()} ({self.tee.bound_field}), "
                                                     f"not the digest {bytes(req.Digest).hex()}")
        return aa.BindInitDataResponse()

    def _bind_by_extend(self, tee: ExtendBinding, digest: bytes) -> aa.BindInitDataResponse:
        """Upstream's attester extends PCR 8 on every call; here the register is extended once per boot (the
        agent did so at start-up), so a call for that digest answers that it is bound and any other digest is
        refused. Only when the register is still in its reset state, and for this pod's own initdata digest,
        is the extend done here: a foreign digest would have the TPM vouch for initdata the agent does not
        enforce."""
        if len(digest) != 32:
            raise RpcError(Code.INVALID_ARGUMENT, f"{tee.bound_field} of {tee.name} binds a SHA-256 digest "
                                                  f"(32 bytes), not {len(digest)} bytes")
        try:
            now = tee.initdata_register()
        except AgentError as exc:
            raise _fail(exc) from None
        if now == tee.extended_value(digest):
            return aa.BindInitDataResponse()  # already bound, as the agent bound it
        if not any(now) and digest == self.initdata_digest:
            try:
                tee.bind_initdata(digest)
            except AgentError as exc:
                raise RpcError(Code.FAILED_PRECONDITION, str(exc)) from None
            return aa.BindInitDataResponse()
        raise RpcError(Code.FAILED_PRECONDITION, f"{tee.bound_field} holds {now.hex()}, not the one extend with the "
                                                 f"digest {digest.hex()}; it is extended once per boot")

    def get_tee_type(self, req: Any, ctx: Any) -> aa.GetTeeTypeResponse:
        """The TEE's name as kbs-types' ``Tee`` serializes it, quotes trimmed (guest-components ttrpc-aa
        server.rs ``get_tee_type``): "az-snp-vtpm" since kbs-types renamed it (older releases wrote
        "azsnpvtpm"); the same name the KBS client sends in its request (agent/kbs_client.py ``_tee``)."""
        return aa.GetTeeTypeResponse(tee=self.tee.name if self.tee.name in ("tdx", "az-snp-vtpm") else "snp")

    # --- confidential data hub --------------------------------------------------------------------------
    def get_resource(self, req: Any, ctx: Any) -> cdh.GetResourceResponse:
        uri = req.ResourcePath
        if not uri.startswith("kbs:///"):
            raise RpcError(Code.INVALID_ARGUMENT, f"resource {uri!r} is not kbs:///<repo>/<type>/<tag>")
        try:
            return cdh.GetResourceResponse(Resource=self.client.get_resource(uri[len("kbs:///"):]))
        except AgentError as exc:
            raise _fail(exc) from None

    def unseal_secret(self, req: Any, ctx: Any) -> cdh.UnsealSecretOutput:
        from agent import sealed

        try:
            value = bytes(req.secret).decode()
        except UnicodeDecodeError:
            raise RpcError(Code.INVALID_ARGUMENT, "the sealed secret is not text") from None
        if not value.startswith(sealed.PREFIX):
            raise RpcError(Code.INVALID_ARGUMENT, "not a sealed secret (sealed.<header>.<payload>.<signature>)")
        try:
            return cdh.UnsealSecretOutput(plaintext=sealed.unseal(value, self.client))  # vault or envelope
        except AgentError as exc:
            raise _fail(exc) from None

    def registries(self) -> tuple[Registry, Registry]:
        agent_svc = Service("attestation_agent.AttestationAgentService")
        for name, req, resp, fn in (
                ("GetEvidence", aa.GetEvidenceRequest, aa.GetEvidenceResponse, self.get_evidence),
                ("GetAdditionalEvidence", aa.GetAdditionalEvidenceRequest, aa.GetEvidenceResponse,
                 self.get_additional_evidence),
                ("GetToken", aa.GetTokenRequest, aa.GetTokenResponse, self.get_token),
                ("ExtendRuntimeMeasurement", aa.ExtendRuntimeMeasurementRequest, aa.ExtendRuntimeMeasurementResponse,
                 self.extend_runtime_measurement),
                ("BindInitData", aa.BindInitDataRequest, aa.BindInitDataResponse, self.bind_init_data),
                ("GetTeeType", aa.GetTeeTypeRequest, aa.GetTeeTypeResponse, self.get_tee_type)):
            agent_svc.add(Method(name, req, resp, fn))
        resource = Service("api.GetResourceService")
        resource.add(Method("GetResource", cdh.GetResourceRequest, cdh.GetResourceResponse, self.get_resource))
        unseal = Service("api.SealedSecretService")
        unseal.add(Method("UnsealSecret", cdh.UnsealSecretInput, cdh.UnsealSecretOutput, self.unseal_secret))
        return Registry([agent_svc]), Registry([resource, unseal])


def serve(client: KbsClient, initdata_digest: bytes | None, aa_socket: str | None = AA_SOCKET,
          cdh_socket: str | None = CDH_SOCKET, eventlog_path: str = EVENTLOG_PATH) -> list[Any]:
    """Start the servers whose socket is given; the servers (``stop()`` at shutdown)."""
    from agent.transport import parse
    from agent.ttrpc import TtrpcServer

    servers = []
    components = GuestComponents(client, initdata_digest, eventlog_path=eventlog_path)
    for registry, path in zip(components.registries(), (aa_socket, cdh_socket), strict=True):
        if path is None:
            continue
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        server = TtrpcServer(registry, workers=8)
        server.listen(parse(f"unix://{path}"))
        servers.append(server)
        # connect(2) needs write permission on the socket, and its mode comes from the umask (0755): a container
        # running as another user than root could not call. Who reaches the socket at all is decided by the
        # bind mount the pod's policy admits, not by the mode.
        os.chmod(path, 0o666)
    return servers
