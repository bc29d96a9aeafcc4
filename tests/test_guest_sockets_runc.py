"""A container reaches the guest's attestation agent over its ttRPC socket, through a bind mount the agent made.

The real agent process (sim TEE), real runc, a verity-checked busybox layer that also holds a small static
ttRPC client (tests/support/ttrpc_call.c). The agent serves the attestation agent and the data hub on their
usual paths under /run/confidential-containers: so that this host's /run is not touched, the agent runs in a
mount namespace of its own with a fresh tmpfs on /run (and a network namespace with only loopback, for the
data hub's 127.0.0.1:8006). The policy allows every request: what is refused here is refused by the agent's
own check (agent/storage.py bind_source), whatever a policy says.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from support.agentio import read_to_eof

from agent.guest_components import AA_SOCKET, AA_SOCKET_DIR, CDH_SOCKET
from agent.kbs_client import read_evidence
from agent.protocols import attestation_agent_pb2 as aa
from agent.protocols import confidential_data_hub_pb2 as cdh
from agent.protocols import ttrpc_pb2
from agent.rpc import Code, RpcError
from agent.ttrpc import HEADER, HEADER_SIZE, TYPE_REQUEST, TYPE_RESPONSE, encode_frame
from launcher import layers
from launcher.client import Client
from launcher.layers import APPLETS, DEV_MOUNT, NAMESPACES, PROC_MOUNT, attach, busybox_tree, detach, verity_layer
from launcher.localagent import MEASUREMENT, allow_policy, start_agent
from verifier.snp_chain import verify_evidence

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("runc", "gcc", "unshare", "ip")),
    reason="needs root, runc, gcc (a static test client), unshare and ip")

CLIENT_SOURCE = Path(__file__).parent / "support" / "ttrpc_call.c"
POLICY = allow_policy("CreateContainer", "StartContainer", "WaitProcess", "ReadStream", "WriteStream", "CloseStdin",
                      "SignalProcess", "RemoveContainer", "CopyFile")
# The agent's own /run: a tmpfs in its mount namespace; loopback up in its network namespace.
WRAPPER = ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c",
           'ip link set lo up && mount -t tmpfs -o mode=0755,size=8m cocoon-test-run /run && exec "$@"', "sh"]
SERVE = ["--datahub-listen", "127.0.0.1:8006", "--aa-socket", AA_SOCKET, "--cdh-socket", CDH_SOCKET]
RO = ["rbind", "rprivate", "ro"]
AA_SERVICE = "attestation_agent.AttestationAgentService"


@pytest.fixture(scope="module")
def layer(tmp_path_factory):  # type: ignore[no-untyped-def]
    """busybox and /bin/ttrpc-call in an erofs image with its dm-verity tree, on a read-only loop device."""
    tmp = tmp_path_factory.mktemp("gclayer")
    tree = busybox_tree(tmp / "root", (*APPLETS, "touch", "rm"))
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Werror", "-o", str(tree / "bin" / "ttrpc-call"),
                    str(CLIENT_SOURCE)], check=True)
    img = tmp / "layer.img"
    root_hash, size = verity_layer(tree, img)
    loop = attach(img)
    yield {"device": loop, "root_hash": root_hash, "offset": size}
    detach(loop)


@pytest.fixture(scope="module")
def agent(tmp_path_factory, sim_chain):  # type: ignore[no-untyped-def]
    proc = start_agent(tmp_path_factory.mktemp("gcagent"), sim_chain, POLICY, wrapper=WRAPPER, extra=SERVE)
    root = f"/proc/{proc.pid}/root"  # the agent's mount namespace, seen from here
    try:
        deadline = time.monotonic() + 60  # the data hub starts right after READY
        while not all(os.path.exists(root + p) for p in (AA_SOCKET, CDH_SOCKET)):
            assert proc.proc.poll() is None and time.monotonic() < deadline, "the agent serves no guest socket"
            time.sleep(0.1)
        assert os.stat(root + "/run").st_dev != os.stat("/run").st_dev  # not this host's /run
        yield {"address": proc.address, "shared": proc.shared, "root": root}
    finally:
        err = proc.stop()
    assert "Traceback" not in err, err


def request(cid: str, agent: dict[str, Any], layer: dict[str, Any], args: list[str],
            mounts: list[dict[str, Any]], uid: int = 0) -> dict[str, Any]:
    return layers.container_request(cid, args, layer["device"], layer["root_hash"], layer["offset"], agent["shared"],
                                    [PROC_MOUNT, DEV_MOUNT, *mounts], NAMESPACES, {"User": {"UID": uid, "GID": uid}})


def frame(service: str, method: str, payload: bytes) -> bytes:
    req = ttrpc_pb2.Request(service=service, method=method, payload=payload, timeout_nano=30 * 10**9)
    return encode_frame(1, TYPE_REQUEST, req.SerializeToString())


def run_call(c: Client, cid: str, req: dict[str, Any], stdin: bytes) -> tuple[ttrpc_pb2.Response, str]:
    """Run the container with ``stdin``; (the ttRPC response its client printed, its stderr)."""
    c.call("CreateContainer", req)
    try:
        c.call("StartContainer", {"container_id": cid})
        c.call("WriteStdin", {"container_id": cid, "exec_id": cid, "data": base64.b64encode(stdin).decode()})
        c.call("CloseStdin", {"container_id": cid, "exec_id": cid})
        out = read_to_eof(c, cid, cid, "ReadStdout")
        err = read_to_eof(c, cid, cid, "ReadStderr").decode(errors="replace")
        assert c.call("WaitProcess", {"container_id": cid, "exec_id": cid}).status == 0, err
    finally:
        c.call("RemoveContainer", {"container_id": cid, "timeout": 5})
    length, sid, mtype, _flags = HEADER.unpack(out[:HEADER_SIZE])
    assert (sid, mtype, length) == (1, TYPE_RESPONSE, len(out) - HEADER_SIZE), (out[:64], err)
    return ttrpc_pb2.Response.FromString(out[HEADER_SIZE:]), err


def test_a_container_gets_evidence_through_the_attestation_agents_socket(agent, layer, sim_chain) -> None:  # type: ignore[no-untyped-def]
    """The container mounts the AA socket directory (as a generated policy pins it) and calls GetEvidence: the
    answer is this TEE's signed report, bound to the container's own runtime data. The mount is read-only:
    the container can neither plant a file there nor remove the guest's socket."""
    nonce = os.urandom(32)
    script = (f"ttrpc-call {AA_SOCKET}; echo call=$? >&2; touch {AA_SOCKET_DIR}/planted 2>/dev/null; "
              f"echo touch=$? >&2; rm -f {AA_SOCKET} 2>/dev/null; echo rm=$? >&2")
    mount = {"destination": AA_SOCKET_DIR, "source": AA_SOCKET_DIR, "type": "bind", "options": RO}
    call = frame(AA_SERVICE, "GetEvidence", aa.GetEvidenceRequest(RuntimeData=nonce).SerializeToString())
    with Client(agent["address"]) as c:
        resp, err = run_call(c, "gc1", request("gc1", agent, layer, ["sh", "-c", script], [mount]), call)
    assert resp.status.code == 0, resp.status.message
    assert err.split() == ["call=0", "touch=1", "rm=1"], err
    assert os.path.exists(agent["root"] + AA_SOCKET) and not os.path.exists(agent["root"] + AA_SOCKET_DIR + "/planted")
    evidence = json.loads(aa.GetEvidenceResponse.FromString(resp.payload).Evidence)
    _kind, report, aux = read_evidence("snp", evidence)
    rep = verify_evidence(report, aux, sim_chain.ark_pem)  # signed by the sim PSP's VCEK, chain to its ARK
    assert rep.report_data == nonce.ljust(64, b"\0")
    assert rep.measurement == MEASUREMENT


def test_the_data_hubs_socket_file_answers_too(agent, layer) -> None:  # type: ignore[no-untyped-def]
    """A bind of the socket file itself (CDH's directory holds more than the socket, so only the file), from a
    container that does not run as root: the data hub answers GetResource, here with its reason for having no
    broker."""
    mount = {"destination": "/cdh.sock", "source": CDH_SOCKET, "type": "bind", "options": RO}
    with Client(agent["address"]) as c:
        resp, _ = run_call(c, "gc2", request("gc2", agent, layer, ["ttrpc-call", "/cdh.sock"], [mount], uid=1000),
                           frame("api.GetResourceService", "GetResource",
                                 cdh.GetResourceRequest(ResourcePath="kbs:///default/key/x").SerializeToString()))
    assert resp.status.code == Code.UNAVAILABLE and "names no KBS" in resp.status.message, resp.status


@pytest.mark.parametrize("source,options,why", [
    ("/run/confidential-containers", RO, "outside the allowed directories"),  # the whole data hub directory
    (AA_SOCKET_DIR + "/", RO, "not in normal form"),
    ("/run/confidential-containers/attestation-agent/../attestation-agent", RO, "not in normal form"),
    ("/etc", RO, "outside the allowed directories"),
    ("/", RO, "outside the allowed directories"),
    (AA_SOCKET_DIR, ["rbind", "rprivate", "rw"], "only read-only"),
    (AA_SOCKET_DIR, ["rbind", "rprivate"], "only read-only"),
])
def test_any_other_guest_path_is_refused_though_the_policy_allows_it(  # type: ignore[no-untyped-def]
        agent, layer, source: str, options: list[str], why: str) -> None:
    mount = {"destination": "/mnt/x", "source": source, "type": "bind", "options": options}
    cid = "gc3-" + hashlib.sha256(f"{source} {options}".encode()).hexdigest()[:12]
    with Client(agent["address"]) as c:
        with pytest.raises(RpcError) as err:
            c.call("CreateContainer", request(cid, agent, layer, ["true"], [mount]))
        assert err.value.code == Code.FAILED_PRECONDITION and why in err.value.message, err.value.message
        with pytest.raises(RpcError, match="does not exist"):
            c.call("StartContainer", {"container_id": cid})


def test_a_symlink_the_host_planted_in_the_shared_directory_leads_nowhere(agent, layer) -> None:  # type: ignore[no-untyped-def]
    """CopyFile makes symlinks (Kata's rules refuse absolute targets; this policy does not): a bind source in
    the shared directory that is such a symlink, to the guest's /etc or to its attestation agent's directory,
    is refused, while one that stays inside the shared directory is bound."""
    import stat

    shared = agent["shared"]
    with Client(agent["address"]) as c:
        c.call("CopyFile", {"path": f"{shared}/gc4-0123456789abcdef-inside", "file_mode": stat.S_IFDIR | 0o755})
        for name, target in (("etc", "/etc"), ("aa", AA_SOCKET_DIR), ("up", "../../.."),
                             ("ok", "gc4-0123456789abcdef-inside")):
            c.call("CopyFile", {"path": f"{shared}/gc4-0123456789abcdef-{name}", "file_mode": stat.S_IFLNK | 0o777,
                                "data": base64.b64encode(target.encode()).decode()})
        for name in ("etc", "aa", "up"):
            mount = {"destination": "/mnt/x", "source": f"{shared}/gc4-0123456789abcdef-{name}", "type": "bind",
                     "options": RO}
            with pytest.raises(RpcError) as err:
                c.call("CreateContainer", request(f"gc4-{name}", agent, layer, ["true"], [mount]))
            assert err.value.code == Code.FAILED_PRECONDITION and "symlink" in err.value.message, err.value.message
        mount = {"destination": "/mnt/x", "source": f"{shared}/gc4-0123456789abcdef-ok", "type": "bind", "options": RO}
        c.call("CreateContainer", request("gc4-ok", agent, layer, ["true"], [mount]))
        c.call("RemoveContainer", {"container_id": "gc4-ok"})
