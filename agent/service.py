"""The services the agent serves: Kata's AgentService and Health, and cocoon's Attestation.

Every AgentService RPC goes through one handler shape, as in Kata's
``rpc.rs``: check policy -> act -> answer. ``ROUTES`` says, for each RPC in
one row, who acts and how its handling differs from that shape. The policy
input is the request serialised the way Kata's agent serialises it
(``agent.policy.serde``), the endpoint is the request *message* name
(ReadStdout and ReadStderr are both ``ReadStreamRequest``). Kata's three
exceptions are columns of that table: ReadStream is read first and blanked on
denial (a denial must not stall the container's pipes), CopyFile is judged on a
description without the data, SetPolicy is acted on by the agent itself (the
policy is replaced only if the current one allows it). Other acts go to a
backend (containers, with storage and network behind it); an RPC the backend
lacks is UNIMPLEMENTED, after the policy had its say. So is a refused RPC,
whatever the backend offers: those cannot be made safe in a confidential
guest, and the answer says why.
"""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

import agent
from agent import evidence as evidence_mod
from agent.binding import Binding
from agent.errors import AgentError, PolicyError, TeeError
from agent.policy import Policy
from agent.policy.serde import to_dict, to_json
from agent.protocols import agent_pb2, cocoon_pb2, health_pb2
from agent.record import record
from agent.rpc import Code, Context, Handler, Method, Registry, RpcError, Service

log = logging.getLogger("cocoon.agent")

def copy_file_policy_input(req: agent_pb2.CopyFileRequest) -> dict[str, Any]:
    """Kata's PolicyCopyFileRequest: the request minus its data, with the file type spelled out."""
    fmt = stat.S_IFMT(req.file_mode)
    file_type = {stat.S_IFREG: "Regular", stat.S_IFDIR: "Directory", stat.S_IFLNK: "Symlink"}.get(fmt, "Unknown")
    target = ""
    if file_type == "Symlink":
        target = bytes(req.data).decode("utf-8", "replace")
    return {
        "path": req.path,
        "file_type": file_type,
        "symlink_target": target,
        "file_size": req.file_size,
        "file_mode": req.file_mode,
        "dir_mode": req.dir_mode,
        "uid": req.uid,
        "gid": req.gid,
        "offset": req.offset,
    }


def _blank_data(resp: Any) -> Any:
    resp.data = b""  # Kata: redact rather than stall the pipes
    return resp


@record(frozen=True)
class Route:
    """How one AgentService RPC is handled: who acts, and where it leaves the plain shape.

    ``act``: the method that acts, on the backend (``agent.containers.Backend``) or, for
    ``by_agent``, on the Agent itself. ``policy_input``: what the policy judges, when not the
    request itself. ``on_denial``: act first, and answer a denial with the answer so redacted.
    ``stops_agent``: the agent stops once the answer is sent. ``refused``: why cocoon never acts.
    """

    act: str
    by_agent: bool = False
    policy_input: Callable[[Any], dict[str, Any]] | None = None
    on_denial: Callable[[Any], Any] | None = None
    long_running: bool = False  # blocks for a long time (long polls): gets its own thread
    stops_agent: bool = False
    refused: str = ""


_SWAP = ("guest memory would be paged out unencrypted and unauthenticated to storage the host provides, "
         "where the host can read it and hand back altered pages")
_DIAGNOSTIC = ("it returns to the host the contents of a guest file at a path the host chose (the termination-log "
               "mount source in the shared directory, which the host can replace with a symlink to any guest file "
               "after the policy admitted the container)")

#: Every AgentService RPC, in agent.proto's order. The refused ones are Kata RPCs no policy can make safe
#: here (docs/decisions.md, "Kata RPCs cocoon refuses"); they are still judged first, so the log shows what
#: the policy thought of the request. DestroySandbox ends the agent as Kata's does (rpc.rs destroy_sandbox).
ROUTES: dict[str, Route] = {
    # containers and their processes (agent/containers.py)
    "CreateContainer": Route("CreateContainer"),
    "StartContainer": Route("StartContainer"),
    "RemoveContainer": Route("RemoveContainer"),
    "ExecProcess": Route("ExecProcess"),
    "SignalProcess": Route("SignalProcess"),
    "WaitProcess": Route("WaitProcess", long_running=True),
    "UpdateContainer": Route("UpdateContainer"),
    "UpdateEphemeralMounts": Route("UpdateEphemeralMounts"),
    "StatsContainer": Route("StatsContainer"),
    "PauseContainer": Route("PauseContainer"),
    "ResumeContainer": Route("ResumeContainer"),
    "RemoveStaleVirtiofsShareMounts": Route("RemoveStaleVirtiofsShareMounts"),
    "GetDiagnosticData": Route("GetDiagnosticData", refused=_DIAGNOSTIC),
    "WriteStdin": Route("WriteStdin"),
    "ReadStdout": Route("ReadStdout", on_denial=_blank_data, long_running=True),
    "ReadStderr": Route("ReadStderr", on_denial=_blank_data, long_running=True),
    "CloseStdin": Route("CloseStdin"),
    "TtyWinResize": Route("TtyWinResize"),
    # network (agent/network.py, through the backend)
    "UpdateInterface": Route("UpdateInterface"),
    "UpdateRoutes": Route("UpdateRoutes"),
    "ListInterfaces": Route("ListInterfaces"),
    "ListRoutes": Route("ListRoutes"),
    "AddARPNeighbors": Route("AddARPNeighbors"),
    "GetIPTables": Route("GetIPTables"),
    "SetIPTables": Route("SetIPTables"),
    # the guest and the sandbox
    "GetMetrics": Route("GetMetrics"),
    "MemAgentMemcgSet": Route("MemAgentMemcgSet"),
    "MemAgentCompactSet": Route("MemAgentCompactSet"),
    "CreateSandbox": Route("CreateSandbox"),
    "DestroySandbox": Route("DestroySandbox", stops_agent=True),
    "OnlineCPUMem": Route("OnlineCPUMem"),
    "ReseedRandomDev": Route("ReseedRandomDev"),
    "GetGuestDetails": Route("GetGuestDetails"),
    "MemHotplugByProbe": Route("MemHotplugByProbe"),
    "SetGuestDateTime": Route("SetGuestDateTime"),
    "CopyFile": Route("CopyFile", policy_input=copy_file_policy_input),
    "GetOOMEvent": Route("GetOOMEvent", long_running=True),
    "AddSwap": Route("AddSwap", refused=_SWAP),
    "AddSwapPath": Route("AddSwapPath", refused=_SWAP),
    "GetVolumeStats": Route("GetVolumeStats"),
    "ResizeVolume": Route("ResizeVolume"),
    # the policy itself
    "SetPolicy": Route("set_policy", by_agent=True),
}
REFUSED: dict[str, str] = {rpc: r.refused for rpc, r in ROUTES.items() if r.refused}
LONG_RUNNING = frozenset(rpc for rpc, r in ROUTES.items() if r.long_running)


class Agent:
    """Policy gate + backend; builds the registry both transports serve."""

    def __init__(self, binding: Binding, backend: Any = None, on_destroyed: Callable[[], None] | None = None) -> None:
        self.binding = binding
        self.backend = backend
        self.on_destroyed = on_destroyed  # the daemon's stop: Kata's agent exits once DestroySandbox answered

    # --- policy -------------------------------------------------------------------------------
    def authorize(self, endpoint: str, input_json: str, container_id: str = "") -> None:
        """Raise PERMISSION_DENIED (denial) or INTERNAL (engine trouble); return when allowed."""
        try:
            decision = self.binding.check(endpoint, input_json)
        except PolicyError as exc:
            log.error("%s: policy error: %s", endpoint, exc,
                      extra={"REQUEST": endpoint, "VERDICT": "error", "CONTAINER_ID": container_id})
            raise RpcError(Code.INTERNAL, f"{endpoint}: policy evaluation failed: {exc}") from None
        verdict = "allow" if decision.allowed else "deny"
        if decision.forced:
            verdict = "allow-failing-policy"
        log.info("%s %s%s", endpoint, verdict, f" ({container_id})" if container_id else "",
                 extra={"REQUEST": endpoint, "VERDICT": verdict, "CONTAINER_ID": container_id})
        if not decision.allowed:
            raise RpcError(Code.PERMISSION_DENIED, decision.reason(endpoint))

    # --- the one handler shape ----------------------------------------------------------------
    def _handler(self, rpc: str) -> Handler:
        route = ROUTES[rpc]

        def handle(req: Any, ctx: Context) -> Any:
            endpoint = req.DESCRIPTOR.name
            container_id = getattr(req, "container_id", "")
            policy_input = to_json(req) if route.policy_input is None else json.dumps(route.policy_input(req))
            if route.on_denial is not None:
                resp = self._act(rpc, req, ctx)
                try:
                    self.authorize(endpoint, policy_input, container_id)
                except RpcError as exc:
                    if exc.code != Code.PERMISSION_DENIED:
                        raise
                    return route.on_denial(resp)
                return resp
            self.authorize(endpoint, policy_input, container_id)
            resp = self._act(rpc, req, ctx)
            if route.stops_agent and self.on_destroyed is not None:
                ctx.after_reply.append(self.on_destroyed)
            return resp

        return handle

    def _act(self, rpc: str, req: Any, ctx: Context | None) -> Any:
        route = ROUTES[rpc]
        if route.refused:
            raise RpcError(Code.UNIMPLEMENTED, f"{rpc} is refused by cocoon: {route.refused}")
        if route.by_agent:
            return getattr(self, route.act)(req, ctx)
        try:
            act = getattr(self.backend, route.act, None) if self.backend is not None else None
        except AgentError as exc:  # the backend failed to load (agent.lazybackend)
            raise RpcError(Code.UNAVAILABLE, f"{rpc}: {exc}") from None
        if act is None:
            raise RpcError(Code.UNIMPLEMENTED, f"{rpc} is not implemented by this agent")
        try:
            return act(req, ctx)
        except AgentError as exc:
            raise RpcError(Code.FAILED_PRECONDITION, f"{rpc}: {exc}") from None

    def set_policy(self, req: agent_pb2.SetPolicyRequest, ctx: Context | None) -> Message:
        from google.protobuf import empty_pb2

        try:
            new = Policy(req.policy)
        except PolicyError as exc:
            raise RpcError(Code.INVALID_ARGUMENT, f"SetPolicy: {exc}") from None
        old, self.binding.policy = self.binding.policy, new
        if old is not None:
            old.close()  # calls still queued on it finish; later ones get a clear error
        log.warning("policy replaced through SetPolicy (allowed by the previous policy)")
        return empty_pb2.Empty()

    # --- Health and Attestation ---------------------------------------------------------------
    def check(self, req: health_pb2.CheckRequest, ctx: Context) -> health_pb2.HealthCheckResponse:
        # SERVING in deny-all too: the agent answers (with denials that say why), and a runtime
        # that gives up at a health check would hide that reason from the user.
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    def version(self, req: health_pb2.CheckRequest, ctx: Context) -> health_pb2.VersionCheckResponse:
        version = agent.__version__
        return health_pb2.VersionCheckResponse(grpc_version=version, agent_version=f"cocoon {version}")

    def get_evidence(self, req: cocoon_pb2.GetEvidenceRequest, ctx: Context) -> cocoon_pb2.GetEvidenceResponse:
        if not self.binding.ready or self.binding.tee is None:
            raise RpcError(Code.PERMISSION_DENIED,
                           f"GetEvidenceRequest is blocked: agent is in deny-all mode: {self.binding.reason}")
        if len(req.nonce) > evidence_mod.MAX_NONCE:
            raise RpcError(Code.INVALID_ARGUMENT, f"nonce is {len(req.nonce)} bytes, at most {evidence_mod.MAX_NONCE}")
        try:
            wanted = evidence_mod.report_data(req.nonce, req.public_key or None)
        except TeeError as exc:
            raise RpcError(Code.INVALID_ARGUMENT, str(exc)) from None
        try:
            ev = evidence_mod.collect(self.binding.tee, req.nonce, req.public_key or None)
        except AgentError as exc:
            raise RpcError(Code.UNAVAILABLE, f"TEE report failed: {exc}") from None
        log.info("evidence served (%s)", ev.kind, extra={"REQUEST": "GetEvidenceRequest", "VERDICT": "allow"})
        return cocoon_pb2.GetEvidenceResponse(kind=ev.kind, report=ev.report, aux=ev.aux, tee=ev.tee,
                                              report_data=wanted)

    # --- registry -----------------------------------------------------------------------------
    def registry(self) -> Registry:
        from google.protobuf import message_factory

        agent_svc = Service("grpc.AgentService")
        for m in agent_pb2.DESCRIPTOR.services_by_name["AgentService"].methods:
            agent_svc.add(Method(m.name, message_factory.GetMessageClass(m.input_type),
                                 message_factory.GetMessageClass(m.output_type),
                                 self._handler(m.name), ROUTES[m.name].long_running))
        health = Service("grpc.Health")
        health.add(Method("Check", health_pb2.CheckRequest, health_pb2.HealthCheckResponse, self.check))
        health.add(Method("Version", health_pb2.CheckRequest, health_pb2.VersionCheckResponse, self.version))
        attestation = Service("cocoon.Attestation")
        attestation.add(Method("GetEvidence", cocoon_pb2.GetEvidenceRequest, cocoon_pb2.GetEvidenceResponse,
                               self.get_evidence))
        return Registry([agent_svc, health, attestation])


#: The route of each request message (the policy's endpoint); ReadStdout and ReadStderr share theirs.
_BY_MESSAGE = {m.input_type.name: ROUTES[m.name] for m in agent_pb2.DESCRIPTOR.services_by_name["AgentService"].methods}


def request_json(req: Message) -> dict[str, Any]:
    """The policy input for a request, as a dict (for `cocoon policy` and tests)."""
    route = _BY_MESSAGE.get(req.DESCRIPTOR.name)
    if route is not None and route.policy_input is not None:
        return route.policy_input(req)
    return to_dict(req)
