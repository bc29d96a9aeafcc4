"""The services the agent serves: Kata's AgentService and Health, and cocoon's Attestation.

Every AgentService RPC goes through one handler shape, as in Kata's
``rpc.rs``: check policy -> act -> answer. The policy input is the request
serialised the way Kata's agent serialises it (``agent.policy.serde``), the
endpoint is the request *message* name (ReadStdout and ReadStderr are both
``ReadStreamRequest``). Kata's three exceptions are kept: ReadStream is read
first and blanked on denial (a denial must not stall the container's pipes),
CopyFile is judged on a description without the data, SetPolicy replaces the
policy only if the current one allows it. Acting is delegated to a backend
(containers, storage, network); an RPC the backend lacks is UNIMPLEMENTED,
after the policy had its say. So is an RPC in ``REFUSED``, whatever the backend
offers: those cannot be made safe in a confidential guest, and the answer says why.
"""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import Callable
from typing import Any

from agent import evidence as evidence_mod
from agent.binding import Binding
from agent.errors import AgentError, PolicyError, TeeError
from agent.policy import Policy
from agent.policy.serde import to_dict, to_json
from agent.protocols import agent_pb2, cocoon_pb2, health_pb2
from agent.rpc import Code, Context, Method, Registry, RpcError, Service

log = logging.getLogger("cocoon.agent")

VERSION = "0.1.0"
LONG_RUNNING = frozenset({"WaitProcess", "GetOOMEvent", "ReadStdout", "ReadStderr"})

_SWAP = ("guest memory would be paged out unencrypted and unauthenticated to storage the host provides, "
         "where the host can read it and hand back altered pages")
# Kata RPCs no policy can make safe here (docs/decisions.md, "Kata RPCs cocoon refuses"). They are
# still judged first, so the log shows what the policy thought of the request.
REFUSED: dict[str, str] = {
    "AddSwap": _SWAP,
    "AddSwapPath": _SWAP,
    "GetDiagnosticData": ("it returns to the host the contents of a guest file at a path the host chose (the "
                          "termination-log mount source in the shared directory, which the host can replace "
                          "with a symlink to any guest file after the policy admitted the container)"),
}


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
    def _handler(self, rpc: str):  # type: ignore[no-untyped-def]
        def handle(req: Any, ctx: Context) -> Any:
            endpoint = req.DESCRIPTOR.name
            container_id = getattr(req, "container_id", "")
            if rpc in ("ReadStdout", "ReadStderr"):
                resp = self._act(rpc, req, ctx)
                try:
                    self.authorize(endpoint, to_json(req), container_id)
                except RpcError as exc:
                    if exc.code != Code.PERMISSION_DENIED:
                        raise
                    resp.data = b""  # Kata: redact rather than stall the pipes
                return resp
            if rpc == "CopyFile":
                self.authorize(endpoint, json.dumps(copy_file_policy_input(req)), container_id)
                return self._act(rpc, req, ctx)
            if rpc == "SetPolicy":
                self.authorize(endpoint, to_json(req))
                return self._set_policy(req)
            self.authorize(endpoint, to_json(req), container_id)
            resp = self._act(rpc, req, ctx)
            if rpc == "DestroySandbox" and self.on_destroyed is not None:
                ctx.after_reply.append(self.on_destroyed)
            return resp

        return handle

    def _act(self, rpc: str, req: Any, ctx: Context) -> Any:
        if rpc in REFUSED:
            raise RpcError(Code.UNIMPLEMENTED, f"{rpc} is refused by cocoon: {REFUSED[rpc]}")
        try:
            act = getattr(self.backend, rpc, None) if self.backend is not None else None
        except AgentError as exc:  # the backend failed to load (agent.lazybackend)
            raise RpcError(Code.UNAVAILABLE, f"{rpc}: {exc}") from None
        if act is None:
            raise RpcError(Code.UNIMPLEMENTED, f"{rpc} is not implemented by this agent")
        try:
            return act(req, ctx)
        except AgentError as exc:
            raise RpcError(Code.FAILED_PRECONDITION, f"{rpc}: {exc}") from None

    def _set_policy(self, req: agent_pb2.SetPolicyRequest) -> Any:
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
        return health_pb2.VersionCheckResponse(grpc_version=VERSION, agent_version=f"cocoon {VERSION}")

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
                                 self._handler(m.name), m.name in LONG_RUNNING))
        health = Service("grpc.Health")
        health.add(Method("Check", health_pb2.CheckRequest, health_pb2.HealthCheckResponse, self.check))
        health.add(Method("Version", health_pb2.CheckRequest, health_pb2.VersionCheckResponse, self.version))
        attestation = Service("cocoon.Attestation")
        attestation.add(Method("GetEvidence", cocoon_pb2.GetEvidenceRequest, cocoon_pb2.GetEvidenceResponse,
                               self.get_evidence))
        return Registry([agent_svc, health, attestation])


def request_json(req: Any) -> dict[str, Any]:
    """The policy input for a request, as a dict (for `cocoon policy` and tests)."""
    if req.DESCRIPTOR.name == "CopyFileRequest":
        return copy_file_policy_input(req)
    return to_dict(req)
