"""``cocoon mesh-demo``: Contrast's emojivoto tutorial in miniature, every part real except the sim TEE.

What a platform team and a relying party do (seeds 000-002), on one machine:

1. build cocoon's container image (image/runtime_image.py) and ``cocoon generate`` the coordinator's pod
   and the two app pods (``web``, ``voting``), the apps with the coordinator's initializer added;
2. boot the coordinator's VM and run the coordinator in it as a container (its evidence is its guest's);
3. ``cocoon set`` the manifest (attesting the coordinator first: its image's reference values and its
   pod's initdata);
4. boot the app VMs: each initializer attests its pod to the coordinator and gets the mesh identity;
   web calls voting over mutual TLS with those certificates;
5. ``cocoon verify`` from the host writes verify/; ``openssl s_client -CAfile verify/mesh-ca.pem`` checks
   web's certificate;
6. a manifest update (a SAN added to web) rotates the mesh CA: a restarted web is refused by the old
   voting, and both restarted talk again;
7. a voting pod whose initdata was changed gets no certificate, with the coordinator's reason.

The VMs sit on a bridge inside a network namespace made here (10.99.1.0/24; nothing else is addressed);
each NIC is configured in the guest with UpdateInterface, as a Kata runtime does. Every VM's requests are
built by launcher/cri.py as kubelet, containerd and Kata's runtime would build them, and the generated
policies decide them. One sim chain stands for the one vendor root all machines share.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import dataclasses
import gzip
import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from agent.errors import AgentError
from agent.initdata import render_document
from agent.rpc import RpcError
from launcher.qemu import Image, LaunchError, Nic
from launcher.scenario import Session
from launcher.vm import Vm

ROOT_DIR = Path(__file__).resolve().parent.parent
IMAGE = "cocoon.local/cocoon:1.0"
SUBNET = "10.99.1"
BRIDGE = "br-mesh"
COORDINATOR_IP, WEB_IP, VOTING_IP, KBS_IP = f"{SUBNET}.2", f"{SUBNET}.3", f"{SUBNET}.4", f"{SUBNET}.5"
KBS_PORT = 8080
SECRET_PATH = "default/key/voting-salt"
APP_PORT = 8443
PY = ["/usr/bin/python3", "-S", "-B", "-m"]


class DemoError(Exception):
    """A step of the mesh demo did not hold; the message says which and why."""


COORDINATOR_YAML = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: sim-trust
data:
  trust.pem: |
{trust}
---
apiVersion: v1
kind: Pod
metadata:
  name: coordinator
  annotations:
    contrast.edgeless.systems/pod-role: coordinator
spec:
  automountServiceAccountToken: false
  containers:
  - name: coordinator
    image: {image}
    args: ["coordinator", "serve", "--tee", "guest", "--state", "/state", "--listen", "0.0.0.0:1313",
           "--mesh-listen", "0.0.0.0:7777", "--trust-sim", "/etc/cocoon-sim/trust.pem"]
    volumeMounts:
    - {{name: state, mountPath: /state}}
    - {{name: sim-trust, mountPath: /etc/cocoon-sim, readOnly: true}}
  volumes:
  - name: state
    emptyDir: {{}}
  - name: sim-trust
    configMap: {{name: sim-trust}}
"""

KBS_YAML = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: kbs-config
data:
  reference-values.json: |
{refs}
  admin.pub.pem: |
{admin}
---
apiVersion: v1
kind: Pod
metadata:
  name: kbs
spec:
  automountServiceAccountToken: false
  containers:
  - name: kbs
    image: {image}
    args: ["kbs", "serve", "--state", "/state", "--reference-values", "/etc/cocoon-kbs/reference-values.json",
           "--trust-sim", "/etc/cocoon-sim/trust.pem", "--admin-key", "/etc/cocoon-kbs/admin.pub.pem",
           "--listen", "0.0.0.0:{port}"]
    volumeMounts:
    - {{name: state, mountPath: /state}}
    - {{name: kbs-config, mountPath: /etc/cocoon-kbs, readOnly: true}}
    - {{name: sim-trust, mountPath: /etc/cocoon-sim, readOnly: true}}
  volumes:
  - name: state
    emptyDir: {{}}
  - name: kbs-config
    configMap: {{name: kbs-config}}
  - name: sim-trust
    configMap: {{name: sim-trust}}
"""

APPS_YAML = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  automountServiceAccountToken: false
  containers:
  - name: web
    image: {image}
    command: {web}
---
apiVersion: v1
kind: Pod
metadata:
  name: voting
spec:
  automountServiceAccountToken: false
  containers:
  - name: voting
    image: {image}
    command: {voting}
"""


def _run(argv: list[str], timeout: float = 600, netns: str | None = None) -> subprocess.CompletedProcess[str]:
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT_DIR,
                          env={**os.environ, "PYTHONPATH": str(ROOT_DIR)})


def _ip(*args: str) -> None:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if out.returncode:
        raise DemoError(f"ip {' '.join(args)}: {out.stderr.strip()}")


@contextlib.contextmanager
def network() -> Iterator[str]:
    """A network namespace with the mesh's bridge (the host's end is 10.99.1.1); deleted at the end."""
    netns = "cocoon-mesh-" + secrets.token_hex(3)
    _ip("netns", "add", netns)
    try:
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "link", "add", BRIDGE, "type", "bridge")
        _ip("-n", netns, "addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
        _ip("-n", netns, "link", "set", BRIDGE, "up")
        yield netns
    finally:
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True, timeout=30)


@dataclasses.dataclass
class Generated:
    """One `cocoon generate` run: its pods (by name) with their initdata documents, and how to reach images."""

    pods: dict[str, Any]
    documents: dict[str, bytes]
    infos: dict[str, Any]
    disks: list[Path]
    devices: dict[str, str]
    out: Path
    settings: Any


@dataclasses.dataclass
class PodVm:
    name: str
    vm: Vm
    session: Session
    requests: dict[str, Any]
    init_output: dict[str, tuple[int, str]]


class MeshDemo:
    def __init__(self, image: Image, work: Path, say: Callable[[str], None] = print,
                 cache: Path | None = None) -> None:
        from launcher.simca import make_chain

        self.image, self.work, self.say = image, work, say
        self.cache = cache or Path(os.environ.get("COCOON_CACHE", Path.home() / ".cache" / "cocoon")) / "layers"
        self.chain = make_chain()
        self.trust = work / "sim-trust.pem"
        work.mkdir(parents=True, exist_ok=True)
        self.trust.write_bytes(self.chain.trust_pem)
        self.refs = work / "reference-values-sim.json"
        self.refs.write_text(json.dumps(image.reference_values(sim=True)))
        self.netns = ""
        self.vms: list[PodVm] = []
        self.timings: list[tuple[str, float]] = []

    # --- generate ------------------------------------------------------------------------------
    def build_image(self) -> Path:
        from image import runtime_image

        tree = runtime_image.tree_of(self.image.out)
        layout = self.work / "oci"
        built = runtime_image.build(tree, layout, tag="1.0")
        self.say(f"  cocoon's container image: {built.manifest_digest} ({layout})")
        return layout

    def generate(self, name: str, yaml_text: str, layout: Path, *extra: str) -> Generated:
        from generator import images as images_mod
        from generator import kube, layers, settings
        from generator.model import ImageInfo

        where = self.work / name
        where.mkdir(parents=True, exist_ok=True)
        (where / "pods.yaml").write_text(yaml_text)
        doc = json.loads(json.dumps(settings.Settings.load(None).doc))
        doc["request_defaults"]["ReadStreamRequest"] = True  # the demo reads the initializers' output
        (where / "settings.json").write_text(json.dumps(doc))
        run = _run([sys.executable, "-m", "cocoon", "generate", "--platform", "sim", "--reference-values",
                    str(self.refs), "--out", str(where / "out"), "--cache", str(self.cache), "--image",
                    f"{IMAGE}=oci:{layout}:1.0", "--settings", str(where / "settings.json"), "--yaml-out",
                    str(where / "yaml"), *extra, str(where / "pods.yaml")])
        if run.returncode:
            raise DemoError(f"cocoon generate ({name}) failed:\n{run.stdout}{run.stderr}")
        pods = {p.name: p for p in kube.pods([kube.load(where / "yaml" / "pods.yaml")])}
        documents = {n: gzip.decompress(base64.b64decode(p.metadata["annotations"][kube.INITDATA_ANNOTATION]))
                     for n, p in pods.items()}
        sources = images_mod.ImageSources(local={IMAGE.rsplit(":", 1)[0]: f"oci:{layout}"})
        infos: dict[str, Any] = {}
        for pod in pods.values():
            for _, ref in kube.images(pod):
                if ref in infos:
                    continue
                resolved = images_mod.resolve(ref, sources)
                converted = []
                for blob, diff_id in zip(resolved.layers, resolved.config["rootfs"]["diff_ids"], strict=True):
                    cached = layers.cached(blob.digest, self.cache)
                    if cached is None:
                        with resolved.open_blob(blob) as stream:
                            cached = layers.convert(blob, stream, self.cache, diff_id=diff_id)
                    converted.append(cached)
                infos[ref] = ImageInfo(ref, resolved.pinned, resolved.config, tuple(converted))
        index = layers.read_index(where / "out" / "layers.json")
        disks = [where / "out" / "layers" / lay.file for lay in index]
        devices = {lay.root_hash: f"/dev/disk/by-id/virtio-layer{i}" for i, lay in enumerate(index)}
        for n, d in documents.items():
            (where / f"{n}.initdata.toml").write_bytes(d)
        return Generated(pods, documents, infos, disks, devices, where / "out",
                         settings.Settings.load(where / "settings.json"))

    # --- VMs -----------------------------------------------------------------------------------
    def boot(self, gen: Generated, pod_name: str, ip: str, tap: str, document: bytes | None = None,
             start_main: bool = True) -> PodVm:
        """Boot ``pod_name``'s VM on the bridge, run its init containers to the end and start its containers."""
        from launcher import cri

        t0 = time.monotonic()
        pod = gen.pods[pod_name]
        session = Session(self.image, self.work / "vms" / f"{tap}", chain=self.chain)
        session.prepare_pod(document or gen.documents[pod_name], gen.disks)
        mac = f"52:54:00:99:01:{int(ip.rsplit('.', 1)[1]):02x}"
        machine = dataclasses.replace(session.machine(pod_name), netns=f"/run/netns/{self.netns}", nics=[Nic(tap, mac)])
        vm = Vm(machine).start()
        pvm = PodVm(pod_name, vm, session, {}, {})
        self.vms.append(pvm)
        deadline = time.monotonic() + 60
        while subprocess.run(["ip", "-n", self.netns, "link", "show", tap], capture_output=True).returncode:
            vm._alive()
            if time.monotonic() > deadline:
                raise DemoError(f"{pod_name}: QEMU made no tap {tap}")
            time.sleep(0.1)
        _ip("-n", self.netns, "link", "set", tap, "master", BRIDGE)
        _ip("-n", self.netns, "link", "set", tap, "up")
        if vm.call("Check", timeout=300).status != 1:
            raise DemoError(f"{pod_name}: the agent is not serving")
        state, reason, _ = vm.wait_status(60)
        if state != "ready":
            raise DemoError(f"{pod_name}: the agent came up {state}: {reason}")
        vm.call("UpdateInterface", {"interface": {"device": "eth0", "name": "eth0", "mtu": 1500, "hwAddr": mac,
                                                  "IPAddresses": [{"family": 0, "address": ip, "mask": "24"}]}},
                timeout=60)
        sandbox_id = hashlib.sha256(f"{pod_name}-{tap}".encode()).hexdigest()
        vm.call("CreateSandbox", cri.sandbox_request(pod, gen.settings, sandbox_id), timeout=120)
        requests = dict(cri.container_requests(pod, gen.infos, gen.settings, sandbox_id, gen.devices))
        pvm.requests = requests
        inits = {c["name"] for c in pod.spec.get("initContainers") or []}
        for name, req in requests.items():
            if name not in inits and name != "pause" and not start_main:
                continue
            for copy in [*cri.shared_files(pod, req, gen.settings), *self._config_map_files(pod, name, req)]:
                vm.call("CopyFile", copy, timeout=60)
            vm.call("CreateContainer", req, timeout=300)
            vm.call("StartContainer", {"container_id": req.container_id}, timeout=60)
            if name not in inits and name != "pause":
                for rpc in ("ReadStdout", "ReadStderr"):
                    self._drain(vm, rpc, req.container_id, session.work / f"{name}.{rpc[4:].lower()}.log")
            if name in inits:  # kubelet starts the next container only when an init container succeeded
                cid = req.container_id
                err = session.read_stream(vm, "ReadStderr", cid, cid, timeout=400)
                status = vm.call("WaitProcess", {"container_id": cid, "exec_id": cid}, timeout=120).status
                pvm.init_output[name] = (status, err.decode(errors="replace"))
                (session.work / f"{name}.init.log").write_bytes(err)
                if status != 0:
                    self.timings.append((f"{pod_name}: boot, init refused", time.monotonic() - t0))
                    return pvm
        self.timings.append((f"{pod_name}: boot, init, start", time.monotonic() - t0))
        return pvm

    @staticmethod
    def _config_map_files(pod: Any, container: str, req: Any) -> list[Any]:
        """The files of the container's configMap volumes, which a runtime copies into the directories
        launcher/cri.py's CopyFile requests made (the shim does the same with kubelet's atomic-writer layout)."""
        from agent.protocols import agent_pb2

        spec = next((c for c in pod.spec.get("containers") or [] if c.get("name") == container), None)
        if spec is None:
            return []
        volumes = {v["name"]: v["configMap"]["name"] for v in pod.spec.get("volumes") or [] if "configMap" in v}
        at = {m["mountPath"]: volumes[m["name"]] for m in spec.get("volumeMounts") or [] if m["name"] in volumes}
        out = []
        for m in req.OCI.Mounts:
            for key, value in sorted((pod.config_maps.get(at.get(m.destination, "")) or {}).items()):
                data = value.encode()
                out.append(agent_pb2.CopyFileRequest(path=f"{m.source}/{key}", file_size=len(data), file_mode=0o100644,
                                                     dir_mode=0o755, uid=0, gid=0, offset=0, data=data))
        return out

    @staticmethod
    def _drain(vm: Vm, rpc: str, cid: str, dest: Path) -> None:
        """Copy a running container's stream into ``dest`` (what `kubectl logs` shows) until it ends."""

        def loop() -> None:
            with dest.open("ab") as f:
                while True:
                    try:
                        f.write(vm.call(rpc, {"container_id": cid, "exec_id": cid, "len": 65536}, timeout=None).data)
                        f.flush()
                    except Exception:  # EOF, the VM stopped, the connection closed: the stream is over
                        return

        threading.Thread(target=loop, name=f"drain-{cid[:8]}-{rpc}", daemon=True).start()

    def log(self, pvm: PodVm, container: str) -> str:
        """What a container printed so far (stdout then stderr)."""
        return "".join((pvm.session.work / f"{container}.{s}.log").read_text(errors="replace")
                       if (pvm.session.work / f"{container}.{s}.log").exists() else "" for s in ("stdout", "stderr"))

    def wait_log(self, pvm: PodVm, container: str, prefix: str, timeout: float = 180) -> str:
        """The first line of ``container``'s output starting with ``prefix`` (waited for, bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log(pvm, container).splitlines():
                if line.startswith(prefix):
                    return line
            pvm.vm._alive()
            if time.monotonic() > deadline:
                raise DemoError(f"{pvm.name}/{container} printed no {prefix!r} line in {timeout:.0f} s:\n"
                                f"{self.log(pvm, container)[-2000:]}")
            time.sleep(1)

    def stop(self, pvm: PodVm) -> None:
        pvm.vm.stop()
        if pvm in self.vms:
            self.vms.remove(pvm)

    def close(self) -> None:
        for pvm in list(self.vms):
            self.stop(pvm)

    # --- the relying party's side (in the mesh's namespace) --------------------------------------
    def cocoon(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return _run([sys.executable, "-m", "cocoon", *args], timeout=timeout, netns=self.netns)

    def wait_port(self, ip: str, port: int, timeout: float = 300) -> None:
        """Until something accepts TCP on ``ip:port`` in the mesh (a container's server has started)."""
        probe = (f"import socket,sys\ntry:\n socket.create_connection(('{ip}',{port}),timeout=2).close()\n"
                 "except OSError: sys.exit(1)\n")
        deadline = time.monotonic() + timeout
        while _run([sys.executable, "-c", probe], timeout=30, netns=self.netns).returncode:
            for pvm in self.vms:
                pvm.vm._alive()
            if time.monotonic() > deadline:
                logs = "".join(f"\n--- {p.name}: {c} ---\n{self.log(p, c)[-3000:]}" for p in self.vms
                               for c in p.requests if c != "pause")
                raise DemoError(f"nothing listens on {ip}:{port} after {timeout:.0f} s{logs}")
            time.sleep(1)

    def https_get(self, ip: str, path: str, ca: Path) -> tuple[int, str]:
        """GET https://ip:8443/path from the host's end, trusting only ``ca`` (verify/mesh-ca.pem)."""
        code = (f"import http.client,ssl,sys\nctx=ssl.create_default_context(cafile={str(ca)!r})\n"
                "ctx.check_hostname=False\n"
                f"c=http.client.HTTPSConnection({ip!r},{APP_PORT},timeout=60,context=ctx)\n"
                f"c.request('GET',{path!r})\nr=c.getresponse()\nprint(r.status)\n"
                "sys.stdout.write(r.read().decode())\n")
        out = _run([sys.executable, "-c", code], timeout=120, netns=self.netns)
        if out.returncode:
            return 0, out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"
        status, _, body = out.stdout.partition("\n")
        return int(status), body

    def s_client(self, ip: str, ca: Path) -> str:
        out = subprocess.run(["ip", "netns", "exec", self.netns, "openssl", "s_client", "-connect",
                              f"{ip}:{APP_PORT}", "-CAfile", str(ca), "-verify_return_error"],
                             input="", capture_output=True, text=True, timeout=60)
        return out.stdout + out.stderr


def _workload_owner(key_path: Path, manifest: Path) -> Path:
    """The workload owner's key (EC P-256, as Contrast's `generate` makes it) and its digest in the manifest's
    WorkloadOwnerKeyDigests, so the owner, and no one else, may update the deployment later."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    doc = json.loads(manifest.read_text())
    doc["WorkloadOwnerKeyDigests"] = [hashlib.sha256(der).hexdigest()]
    manifest.write_text(json.dumps(doc, indent=2) + "\n")
    return key_path


def _yaml_list(argv: list[str]) -> str:
    return json.dumps(argv)


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


def run(image: Image, work: Path, say: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole flow; returns what each step saw (the QEMU test asserts on it). DemoError on a step that
    could not run at all; what a step saw is returned for the caller to judge."""
    seen: dict[str, Any] = {}
    demo = MeshDemo(image, work, say)
    try:
        with network() as netns:
            demo.netns = netns
            return _flow(demo, seen)
    finally:
        demo.close()
        seen["timings"] = demo.timings


def _flow(demo: MeshDemo, seen: dict[str, Any]) -> dict[str, Any]:
    say = demo.say
    t0 = time.monotonic()
    layout = demo.build_image()
    web_cmd = [*PY, "cocoon.demo_apps", "web", "--voting", f"{VOTING_IP}:{APP_PORT}"]
    voting_cmd = [*PY, "cocoon.demo_apps", "voting", "--secret", SECRET_PATH]
    admin = demo.work / "kbs-admin.pem"
    keygen = _run([sys.executable, "-m", "cocoon", "kbs", "admin-keygen", "-o", str(admin)])
    if keygen.returncode:
        raise DemoError(f"cocoon kbs admin-keygen failed: {keygen.stderr}")
    # what every pod's initdata carries besides its policy: the broker (plain http on the demo's own bridge)
    base = demo.work / "initdata-base.toml"
    base.write_bytes(render_document({"cdh.toml": f'[kbc]\nname = "cc_kbc"\nurl = "http://{KBS_IP}:{KBS_PORT}"\n'
                                                  'insecure_http = true\n'}))
    # one run, as a platform team generates its deployment: the coordinator's pod (its pod-role annotation
    # makes its manifest entry Role: coordinator, and keeps the initializer out of it), the key broker's
    # pod and the two apps
    yaml = (COORDINATOR_YAML.format(trust=_indent(demo.trust.read_text(), 4), image=IMAGE) + "---\n"
            + KBS_YAML.format(refs=_indent(demo.refs.read_text(), 4),
                              admin=_indent(admin.with_name(admin.stem + ".pub.pem").read_text(), 4),
                              image=IMAGE, port=KBS_PORT) + "---\n"
            + APPS_YAML.format(image=IMAGE, web=_yaml_list(web_cmd), voting=_yaml_list(voting_cmd)))
    apps = demo.generate("deploy", yaml, layout, "--add-initializer", IMAGE, "--coordinator", f"{COORDINATOR_IP}:7777",
                         "--initdata", str(base))
    demo.timings.append(("generate: image, coordinator, kbs, apps", time.monotonic() - t0))
    say(f"  generated: coordinator {hashlib.sha256(apps.documents['coordinator']).hexdigest()[:16]}… (Role: "
        f"coordinator), kbs, web and voting with the initializer; manifest {apps.out / 'manifest.json'}")
    manifest = apps.out / "manifest.json"
    owner_key = _workload_owner(demo.work / "workload-owner.pem", manifest)
    policies = [str(demo.work / "deploy" / f"{n}.initdata.toml") for n in ("coordinator", "kbs", "web", "voting")]
    # what the coordinator must be comes from the manifest (its ReferenceValues and Role: coordinator
    # policy); the sim root is the one thing a relying party must be told to accept here
    client_args = ["--trust-sim", str(demo.trust)]
    owner = ["--owner-key", str(owner_key)]

    demo.boot(apps, "coordinator", COORDINATOR_IP, "tap-coord")
    demo.wait_port(COORDINATOR_IP, 1313)
    say(f"  coordinator VM up, serving on {COORDINATOR_IP}:1313 / :7777")
    t0 = time.monotonic()
    set_run = demo.cocoon("set", "-c", f"{COORDINATOR_IP}:1313", "-m", str(manifest), *client_args, *owner,
                          "--json", *policies)
    seen["set"] = (set_run.returncode, set_run.stdout + set_run.stderr)
    if set_run.returncode:
        raise DemoError(f"cocoon set failed: {set_run.stdout}{set_run.stderr}")
    demo.timings.append(("cocoon set (attest + upload)", time.monotonic() - t0))
    say("  cocoon set: coordinator attested, manifest set")

    # the key broker, a confidential pod too: the relying party gives it the secret and the policy that
    # releases it only to voting's attested initdata (the default policy refuses sim evidence)
    demo.boot(apps, "kbs", KBS_IP, "tap-kbs")
    demo.wait_port(KBS_IP, KBS_PORT)
    secret = secrets.token_bytes(32)
    (demo.work / "voting-salt.bin").write_bytes(secret)
    voting_digest = hashlib.sha256(apps.documents["voting"]).hexdigest()
    # (sim-only: it does not refuse simulated evidence as the broker's default policy does; a real
    # deployment's policy keeps that refusal)
    rego = demo.work / "resource-policy.rego"
    rego.write_text('package policy\ndefault allow := false\nallow if {\n\tdata.plugin == "resource"\n'
                    '\tinput.submods.cpu0["ear.status"] == "affirming"\n'
                    f'\tinput.submods.cpu0["ear.veraison.annotated-evidence"].init_data == "{voting_digest}"\n}}\n')
    url = ["--url", f"http://{KBS_IP}:{KBS_PORT}", "--admin-key", str(admin)]
    for what, argv in (("put", ["kbs", "put", *url, SECRET_PATH, str(demo.work / "voting-salt.bin")]),
                       ("policy", ["kbs", "policy", *url, str(rego)])):
        done = demo.cocoon(*argv)
        if done.returncode:
            raise DemoError(f"cocoon kbs {what} failed: {done.stdout}{done.stderr}")
    seen["secret_expected"] = hashlib.sha256(secret).hexdigest()
    say(f"  kbs VM up on {KBS_IP}:{KBS_PORT}: {SECRET_PATH} and a policy for voting's initdata set")

    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # two VMs boot at once, as two nodes would
        web_f = pool.submit(demo.boot, apps, "web", WEB_IP, "tap-web")
        voting_f = pool.submit(demo.boot, apps, "voting", VOTING_IP, "tap-voting")
        web, voting = web_f.result(), voting_f.result()
    seen["init"] = {"web": web.init_output, "voting": voting.init_output}
    for pvm in (web, voting):
        for name, (status, err) in pvm.init_output.items():
            if status:
                raise DemoError(f"{pvm.name}: init container {name} exited {status}:\n{err[-3000:]}")
    verify_dir = demo.work / "verify"
    t0 = time.monotonic()
    ver = demo.cocoon("verify", "-c", f"{COORDINATOR_IP}:1313", "-m", str(manifest), *client_args,
                      "--output", str(verify_dir))
    demo.timings.append(("cocoon verify", time.monotonic() - t0))
    seen["verify"] = (ver.returncode, ver.stdout + ver.stderr, sorted(p.name for p in verify_dir.glob("*")))
    say(f"  cocoon verify: exit {ver.returncode}; {ver.stdout.strip().splitlines()[-1] if ver.stdout.strip() else ''}")
    mesh_ca = demo.work / "mesh-ca.1.pem"
    mesh_ca.write_bytes((verify_dir / "mesh-ca.pem").read_bytes())
    demo.wait_port(WEB_IP, APP_PORT)
    demo.wait_port(VOTING_IP, APP_PORT)
    seen["vote"] = demo.https_get(WEB_IP, "/vote/doughnut", mesh_ca)
    seen["vote2"] = demo.https_get(WEB_IP, "/vote/doughnut", mesh_ca)
    seen["direct"] = demo.https_get(VOTING_IP, "/results", mesh_ca)  # no client certificate: refused
    seen["s_client"] = demo.s_client(WEB_IP, mesh_ca)
    seen["secret"] = demo.wait_log(voting, "voting", "voting: secret ")
    say(f"  voting's secret from the kbs: {seen['secret']}")
    say(f"  web -> voting over the mesh: {seen['vote2']}")

    # the update: a SAN more for web; the mesh CA rotates
    doc = json.loads(manifest.read_text())
    web_digest = hashlib.sha256(apps.documents["web"]).hexdigest()
    doc["Policies"][web_digest]["SANs"].append("web.emojivoto.example")
    manifest.write_text(json.dumps(doc, indent=2) + "\n")
    upd = demo.cocoon("set", "-c", f"{COORDINATOR_IP}:1313", "-m", str(manifest), *client_args, *owner, *policies)
    if upd.returncode:
        raise DemoError(f"the manifest update was refused: {upd.stdout}{upd.stderr}")
    seen["update"] = (upd.returncode, upd.stdout + upd.stderr)
    ver2 = demo.cocoon("verify", "-c", f"{COORDINATOR_IP}:1313", "-m", str(manifest), *client_args,
                       "--output", str(verify_dir))
    seen["verify2"] = (ver2.returncode, ver2.stdout + ver2.stderr)
    mesh_ca2 = demo.work / "mesh-ca.2.pem"
    mesh_ca2.write_bytes((verify_dir / "mesh-ca.pem").read_bytes())
    seen["rotated"] = mesh_ca.read_bytes() != mesh_ca2.read_bytes()
    say(f"  manifest updated (a SAN for web) by its owner: mesh CA rotated: {seen['rotated']}")
    demo.stop(web)
    web = demo.boot(apps, "web", WEB_IP, "tap-web2")
    demo.wait_port(WEB_IP, APP_PORT)
    seen["new_web_old_voting"] = demo.https_get(WEB_IP, "/vote/cat", mesh_ca2)
    seen["old_ca_new_web"] = demo.https_get(WEB_IP, "/results", mesh_ca)
    demo.stop(voting)
    voting = demo.boot(apps, "voting", VOTING_IP, "tap-voting2")
    demo.wait_port(VOTING_IP, APP_PORT)
    seen["after_restart"] = demo.https_get(WEB_IP, "/vote/cat", mesh_ca2)
    say(f"  restarted web and voting talk under the new mesh CA: {seen['after_restart']}")
    demo.stop(voting)

    # a pod whose initdata is not the manifest's: the same pod, one line more in its document
    tampered = apps.documents["voting"] + b"\n# one line more: another digest\n"
    bad = demo.boot(apps, "voting", VOTING_IP, "tap-tampered", document=tampered)
    seen["tampered"] = bad.init_output
    say(f"  a voting pod with other initdata: initializer {bad.init_output}")
    return seen


def register(sub: Any) -> None:
    import argparse

    p = sub.add_parser("mesh-demo", help="the emojivoto flow: coordinator, two pods, mesh, verify (QEMU, sim TEE)",
                       description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", default="out", help="the built image's out/ directory (its build tree beside it)")
    p.add_argument("--json", action="store_true", help="print the checks and what each step saw as JSON")
    p.set_defaults(handler=lambda args: main(args.image, args.json))


def main(image_dir: str, json_out: bool = False) -> int:
    """``cocoon mesh-demo``: run the flow, print each step, exit 0 only if every check held."""
    if os.geteuid() != 0:
        print("cocoon mesh-demo: needs root (network namespaces, taps, loop devices)", file=sys.stderr)
        return 1
    try:
        image = Image.load(Path(image_dir))
    except (LaunchError, OSError) as exc:
        print(f"cocoon demo --mesh: {exc}", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="cocoon-mesh-"))
    quiet = json_out
    try:
        seen = run(image, work, (lambda _s: None) if quiet else print)
    except (DemoError, AgentError, RpcError, LaunchError, OSError, subprocess.SubprocessError) as exc:
        print(f"[FAIL] mesh demo: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if os.environ.get("COCOON_KEEP") != "1":
            subprocess.run(["rm", "-rf", str(work)], check=False)
    checks = judge(seen)
    if json_out:
        print(json.dumps({"checks": checks, "seen": {k: v for k, v in seen.items() if k != "timings"}}, default=str))
    else:
        for name, ok in checks.items():
            print(f"[{'PASS' if ok else 'FAIL'}] {name}")
    return 0 if all(checks.values()) else 1


def judge(seen: dict[str, Any]) -> dict[str, bool]:
    """What must hold, by name (the QEMU test asserts the same on what it sees)."""
    init_ok = all(out[0] == 0 for pod in seen.get("init", {}).values() for out in pod.values())
    tampered = list(seen.get("tampered", {}).values())
    return {
        "cocoon set attests the coordinator and sets the manifest": seen.get("set", (1,))[0] == 0,
        "both initializers got their mesh identity": bool(seen.get("init")) and init_ok,
        "cocoon verify: the coordinator's manifest is ours": seen.get("verify", (1,))[0] == 0,
        "web calls voting over mutual TLS": seen.get("vote2", (0, ""))[0] == 200
                                             and "doughnut 2" in seen.get("vote2", (0, ""))[1],
        "voting refuses a client without a mesh certificate": seen.get("direct", (200,))[0] != 200,
        "openssl s_client verifies web under verify/mesh-ca.pem": "Verify return code: 0 (ok)"
                                                                   in seen.get("s_client", ""),
        "an update rotates the mesh CA": seen.get("update", (1,))[0] == 0 and bool(seen.get("rotated")),
        "a restarted web is refused by voting of the old mesh CA": seen.get("new_web_old_voting", (200,))[0] == 502,
        "the old mesh CA no longer verifies the new web": seen.get("old_ca_new_web", (200,))[0] == 0,
        "restarted under the new mesh CA, they talk again": seen.get("after_restart", (0,))[0] == 200,
        "the kbs pod releases voting's secret to voting": bool(seen.get("secret_expected"))
            and seen.get("secret", "").endswith(f"sha256 {seen.get('secret_expected')}"),
        "a pod with other initdata gets no certificate": bool(tampered) and tampered[0][0] != 0
                                                          and "not found in manifest" in tampered[0][1],
    }


