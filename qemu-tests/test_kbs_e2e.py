"""Secrets only for attested pods, end to end: the booted guest's container asks its data hub
(127.0.0.1:8006 in the VM) for ``kbs:///default/key/db-password``; the agent runs the KBS protocol with the
sim TEE's evidence against `cocoon kbs serve`, which verifies it against the image's reference values and
releases the value wrapped to the guest's TEE key. The container prints the value's digest; a second
container gets it as a sealed env value, unsealed by the agent before it starts.

The VM and the broker meet on a tap inside a network namespace the test creates (10.99.0.0/24, nothing
else); the broker's URL comes from the pod's measured initdata (``cdh.toml``). A second boot of the same
image and container with other initdata (the same broker named, one entry more) gets a refusal: the
evidence verifies, but the broker's resource policy pins the deployment's initdata, and the sealed
container is not created, with the broker's reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.initdata import render_document
from agent.protocols import agent_pb2
from agent.rpc import RpcError
from agent.sealed import Signer, seal
from coordinator.kbs.broker import Broker, Config
from launcher import layers
from launcher.qemu import Image, Nic
from launcher.scenario import Session
from launcher.vm import Vm
from shim.network import TAP

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"the database password: " + b"x" * 16
SIGNER = Signer.generate("kbs:///default/signing-key/1")  # the sealed env value's signer; the broker serves its key
BROKER_IP, GUEST_IP = "10.99.0.1", "10.99.0.2"
MAC = "52:54:00:99:00:02"
ALLOW_ALL = "package agent_policy\n" + "".join(
    f"default {m.input_type.name} := true\n"
    for m in sorted(agent_pb2.DESCRIPTOR.services_by_name["AgentService"].methods, key=lambda m: m.name))
FETCH = ("wget -q -O /tmp/secret http://127.0.0.1:8006/cdh/resource/default/key/db-password "
         "&& sha256sum /tmp/secret || echo refused")
SHM = {"driver": "ephemeral", "source": "shm", "fstype": "tmpfs",
       "options": ["noexec", "nosuid", "nodev", "mode=1777", "size=67108864"],
       "mount_point": "/run/kata-containers/sandbox/shm"}


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def policy(digest: bytes) -> str:
    """The deployment's resource policy: affirmed evidence (sim accepted: the broker trusts the sim root)
    from a launch whose initdata is the deployment's."""
    return ('package policy\ndefault allow := false\nallow if {\n\tdata.plugin == "resource"\n'
            '\tinput.submods.cpu0["ear.status"] == "affirming"\n'
            f'\tinput.submods.cpu0["ear.veraison.annotated-evidence"].init_data == "{digest.hex()}"\n}}\n')


def test_a_container_gets_a_kbs_secret_and_tampered_initdata_gets_none(image: Image, tmp_path: Path,
                                                                          timings: list) -> None:  # type: ignore[type-arg]
    tree = layers.busybox_tree(tmp_path / "tree", ("sh", "wget", "sha256sum", "echo", "cat"))
    root_hash, offset = layers.verity_layer(tree, tmp_path / "layer.img")
    layer = (tmp_path / "layer.img", root_hash, offset)
    # plain http on the test's own tap: the pod's owner accepts that in the measured initdata
    cdh = f'[kbc]\nname = "cc_kbc"\nurl = "http://{BROKER_IP}:8080"\ninsecure_http = true\n'
    document = render_document({"policy.rego": ALLOW_ALL, "cdh.toml": cdh})
    netns = "cocoon-kbs-" + secrets.token_hex(3)
    ip("netns", "add", netns)
    serve = None
    try:
        ip("-n", netns, "link", "set", "lo", "up")
        # the broker's state before it serves: the secret, and the deployment's policy
        state = tmp_path / "kbs-state"
        refs = tmp_path / "reference-values-sim.json"
        refs.write_text(json.dumps(image.reference_values(sim=True)))
        broker = Broker(Config(state, image.reference_values(sim=True)))
        broker.put_resource(["default", "key", "db-password"], SECRET)
        broker.put_resource(["default", "signing-key", "1"], SIGNER.public_jwk())
        broker.set_policy(policy(hashlib.sha256(document).digest()))
        broker.close()
        t0 = time.monotonic()
        out: dict[str, bytes] = {}
        logs: dict[str, str] = {}
        for name, doc in (("deployed", document),
                          ("tampered", render_document({"policy.rego": ALLOW_ALL, "cdh.toml": cdh, "extra": "x"}))):
            work = tmp_path / name
            session = Session(image, work)
            session.prepare_pod(doc, [layer[0]])

            def start_broker(trust: Path = session.trust) -> subprocess.Popen[str]:
                """Each boot's Session makes its own sim chain: the broker trusts that one."""
                nonlocal serve
                serve = subprocess.Popen(
                    ["ip", "netns", "exec", netns, sys.executable, "-m", "cocoon", "kbs", "serve", "--state",
                     str(state), "--reference-values", str(refs), "--trust-sim", str(trust),
                     "--listen", f"{BROKER_IP}:8080"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)})
                return serve

            out[name] = fetch_in_guest(session, layer, netns, start_broker)
            assert serve is not None and serve.stdout is not None
            serve.terminate()
            logs[name] = serve.stdout.read()
            serve.wait(timeout=30)
            serve = None
        timings.append(("kbs: two boots, attest, release / refuse", time.monotonic() - t0))
        digest = hashlib.sha256(SECRET).hexdigest()
        assert out["deployed"].decode().split() == [digest, "/tmp/secret", digest, "-"], out
        fetched, _, sealed = out["tampered"].decode().partition("sealed: ")
        assert fetched.strip() == "refused", out
        # the guest asks for the signing key first (the signature before the payload): that is refused
        assert "env DB: sealed secret: fetching the signing key default/signing-key/1 failed" in sealed, sealed
        assert "PolicyDeny" in sealed, sealed
        assert "PolicyDeny" not in logs["deployed"], logs["deployed"]
        assert "refused: PolicyDeny: the resource policy denies default/key/db-password" in logs["tampered"], logs
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(timeout=30)
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True, timeout=30)


def fetch_in_guest(session: Session, layer: Any, netns: str,
                   start_broker: Callable[[], subprocess.Popen[str]]) -> bytes:
    """Boot the bound session on the test's tap, start the broker behind it (its address is the tap's),
    configure the guest's NIC as a runtime does (UpdateInterface), run the fetching container, return its
    output."""
    machine = dataclasses.replace(session.machine("kbs"), netns=f"/run/netns/{netns}", nics=[Nic(TAP, MAC)])
    with Vm(machine) as vm:
        deadline = time.monotonic() + 60
        while subprocess.run(["ip", "-n", netns, "link", "show", TAP], capture_output=True).returncode:
            assert time.monotonic() < deadline, "QEMU made no tap"
            time.sleep(0.1)
        ip("-n", netns, "addr", "add", f"{BROKER_IP}/24", "dev", TAP)
        ip("-n", netns, "link", "set", TAP, "up")
        serve = start_broker()
        assert serve.stdout is not None
        line = serve.stdout.readline()
        assert "serving" in line, line + (serve.stdout.read() if serve.poll() is not None else "")
        assert vm.call("Check", timeout=300).status == 1
        state, reason, _ = vm.wait_status(60)
        assert state == "ready", reason
        vm.call("UpdateInterface", {"interface": {"device": "eth0", "name": "eth0", "mtu": 1500, "hwAddr": MAC,
                                                  "IPAddresses": [{"family": 0, "address": GUEST_IP, "mask": "24"}]}},
                timeout=60)
        vm.call("CreateSandbox", {"hostname": "kbs-pod", "sandbox_id": "kbs", "sandbox_pidns": False,
                                  "storages": [SHM]}, timeout=120)
        request = layers.container_request("fetch", ["sh", "-c", FETCH], "/dev/disk/by-id/virtio-layer0",
                                           layer[1], layer[2], "/run/kata-containers/shared/containers",
                                           mounts=[layers.PROC_MOUNT, layers.DEV_MOUNT],
                                           namespaces=["ipc", "uts", "mount", "pid"])  # the guest's network
        vm.call("CreateContainer", request, timeout=180)
        vm.call("StartContainer", {"container_id": "fetch"}, timeout=60)
        out = session.read_stream(vm, "ReadStdout", "fetch", "fetch", timeout=120)
        assert vm.call("WaitProcess", {"container_id": "fetch", "exec_id": "fetch"}, timeout=60).status == 0
        # the same secret as a sealed env value: unsealed before the container starts, or no container
        sealed_req = layers.container_request("sealed", ["sh", "-c", 'echo -n "$DB" | sha256sum'],
                                              "/dev/disk/by-id/virtio-layer0", layer[1], layer[2],
                                              "/run/kata-containers/shared/containers",
                                              mounts=[layers.PROC_MOUNT, layers.DEV_MOUNT],
                                              namespaces=["ipc", "uts", "mount", "pid"])
        sealed_req["OCI"]["Process"]["Env"].append("DB=" + seal("default/key/db-password", signer=SIGNER))
        try:
            vm.call("CreateContainer", sealed_req, timeout=180)
        except RpcError as exc:
            return out + b"sealed: " + exc.message.encode()
        vm.call("StartContainer", {"container_id": "sealed"}, timeout=60)
        out += session.read_stream(vm, "ReadStdout", "sealed", "sealed", timeout=120)
        assert vm.call("WaitProcess", {"container_id": "sealed", "exec_id": "sealed"}, timeout=60).status == 0
        return out
