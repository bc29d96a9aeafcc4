#!/usr/bin/env python3
"""``ctr run`` of a busybox pod through containerd and cocoon's shim, as a ratio to the launcher and agent alone.

Shim path: Debian's containerd 1.6, started here with its own root, state and sockets in a temp dir (the CRI
plugin disabled: ``ctr`` does not use it), an OCI archive of one busybox layer imported, and the wall time of
``ctr run --runtime io.containerd.cocoon.v2`` of ``sh -c 'echo ...'`` to its exit: ctr, containerd, the shim
(start + serve), the layer read from containerd's content store and converted (cold) or found in the shim's
cache (warm), the VM booted (sim TEE, TCG) to the agent's READY, CreateSandbox, CreateContainer, Start, the
output through the FIFOs, Wait, and the task's Delete (the VM stopped).
Baseline, in the same run: what the shim asks of cocoon's launcher and agent, driven directly from this
process: the launcher's Session for the same image, initdata and converted layer file (sim chain, PSP
document, PVH kernel), QEMU to READY, CreateSandbox with the shim's storages, CreateContainer of the request
the shim builds (shim.spec from ``ctr oci spec`` with the same args, env and annotation), Start, stdout to
EOF, WaitProcess, the VM stopped.
Cold: the shim's layer cache (COCOON_SHIM_CACHE) emptied before the run; warm: left as the cold run filled
it. Rounds alternate baseline, cold, warm (machines here are noisy); figures are medians. Both paths make
a fresh sim ARK/ASK/VCEK chain per pod (RSA-4096 key generation), which alone varies by a second or more.
Goal: ctr run <= 1.25x the baseline. Needs root, containerd, qemu-system-x86_64 and a built image (--image, default
$COCOON_QEMU_IMAGE, else out/). Everything lives in one temp dir, removed at the end; no containerd, shim or
QEMU process outlives the run (checked).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import gzip
import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONTAINERD, CTR = "/usr/bin/containerd", "/usr/bin/ctr"
RUNTIME = "io.containerd.cocoon.v2"
NAMESPACE = "cocoon-bench"
INITDATA_ANNOTATION = "io.katacontainers.config.hypervisor.cc_init_data"
IMAGE_NAME = "localhost/bench-busybox:1"
ARGS = ["sh", "-c", "echo bench $((6*7))"]
EXPECTED = b"bench 42\n"
GOAL = 1.25
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def progress(text: str) -> None:
    print(f"bench.shim: {text}", file=sys.stderr, flush=True)


def allow_all() -> str:
    """Every agent request allowed (as qemu-tests/test_shim_ctr.py): the figure is the engine's, not the policy's."""
    from agent.protocols import agent_pb2

    methods = sorted(agent_pb2.DESCRIPTOR.services_by_name["AgentService"].methods, key=lambda m: m.name)
    return "package agent_policy\n" + "".join(f"default {m.input_type.name} := true\n" for m in methods)


# --- the image: one deterministic busybox layer in an OCI archive -----------------------------------------------


def busybox_layer() -> bytes:
    """The layer's tar: /bin/busybox and applet links, /etc, /tmp (sorted, mtime 0, owner 0)."""
    buf = io.BytesIO()
    busybox = Path("/usr/bin/busybox").read_bytes()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, 0, link
            info.size = len(data)
            t.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        add("bin", tarfile.DIRTYPE, 0o755)
        add("bin/busybox", tarfile.REGTYPE, 0o755, busybox)
        for applet in ("cat", "echo", "sh", "sleep", "true"):
            add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        add("etc", tarfile.DIRTYPE, 0o755)
        add("tmp", tarfile.DIRTYPE, 0o1777)
    return buf.getvalue()


def oci_archive(dest: Path, tag: str) -> tuple[bytes, str]:
    """An OCI image archive (``ctr images import``) of the busybox layer, gzip, tagged ``tag``; returns the layer
    blob and its diff_id."""
    raw = busybox_layer()
    blob = gzip.compress(raw, compresslevel=6, mtime=0)
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    blobs: dict[str, bytes] = {}

    def put(data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest, len(data)

    layer_digest, layer_size = put(blob)
    config = {"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    cfg_digest, cfg_size = put(json.dumps(config, sort_keys=True).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest,
                           "size": cfg_size},
                "layers": [{"mediaType": GZIP_LAYER, "digest": layer_digest, "size": layer_size}]}
    m_digest, m_size = put(json.dumps(manifest, sort_keys=True).encode())
    index = {"schemaVersion": 2, "manifests": [{"mediaType": manifest["mediaType"], "digest": m_digest,
                                                "size": m_size,
                                                "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": json.dumps(index).encode(),
             **{f"blobs/sha256/{d.split(':', 1)[1]}": data for d, data in blobs.items()}}
    with tarfile.open(dest, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return blob, diff_id


# --- a private containerd ---------------------------------------------------------------------------------------


def config_toml(base: Path) -> str:
    """Every path below ``base``; the CRI plugin (CNI, a streaming server) is not needed by ``ctr``."""
    return f"""\
version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{base}/containerd.sock"

[ttrpc]
  address = "{base}/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"
"""


def processes_naming(marker: Path) -> list[int]:
    """Processes (not this one) whose command line mentions ``marker``: the shim and its QEMU name the run dir."""
    needle, out = str(marker).encode(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmd:
                out.append(int(entry))
    return out


class Containerd:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.log = base / "containerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return str(self.base / "containerd.sock")

    def ctr(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        run = subprocess.run([CTR, "--address", self.address, "--namespace", NAMESPACE, *args], capture_output=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
        if check and run.returncode != 0:
            raise SystemExit(f"ctr {' '.join(args[:2])} exited {run.returncode}: "
                             f"{run.stderr.decode(errors='replace')}\n{self.log_tail()}")
        return run

    def log_tail(self, size: int = 4000) -> str:
        try:
            return "--- containerd log ---\n" + self.log.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def start(self, path: Sequence[str], env: dict[str, str]) -> None:
        (self.base / "fifo").mkdir(parents=True, exist_ok=True)
        config = self.base / "config.toml"
        config.write_text(config_toml(self.base))
        environ = {**os.environ, **env}
        environ["PATH"] = os.pathsep.join([*path, environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")])
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([CONTAINERD, "--config", str(config)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, env=environ, start_new_session=True)
        deadline = time.monotonic() + 30
        while not (os.path.exists(self.address) and self.ctr("version", timeout=10, check=False).returncode == 0):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"containerd did not come up\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """containerd stopped; whatever still names ``base`` (a shim, its QEMU) killed; mounts below it undone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        for pid in processes_naming(self.base):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        prefix = str(self.base.resolve())
        with open("/proc/self/mounts") as f:
            targets = [t for t in (line.split()[1].encode().decode("unicode_escape") for line in f)
                       if t == prefix or t.startswith(prefix + "/")]
        for target in reversed(targets):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)


@contextlib.contextmanager
def running(base: Path, path: Sequence[str], env: dict[str, str]) -> Iterator[Containerd]:
    c = Containerd(base)
    try:
        c.start(path, env)
        yield c
    finally:
        c.stop()


def shim_bin(where: Path) -> Path:
    """containerd-shim-cocoon-v2 as the console script would be, running this checkout's shim."""
    where.mkdir(parents=True, exist_ok=True)
    script = where / "containerd-shim-cocoon-v2"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} -m shim.main \"$@\"\n")
    script.chmod(0o755)
    return where


# --- the two paths ----------------------------------------------------------------------------------------------


def ctr_run(c: Containerd, cid: str, initdata_b64: str, run_dir: Path) -> float:
    """Seconds of ``ctr run`` to its exit; the container deleted and its shim and VM gone afterwards (untimed)."""
    t0 = time.perf_counter()
    run = c.ctr("run", "--runtime", RUNTIME, "--fifo-dir", str(c.base / "fifo"), "--annotation",
                f"{INITDATA_ANNOTATION}={initdata_b64}", IMAGE_NAME, cid, *ARGS, timeout=600, check=False)
    seconds = time.perf_counter() - t0
    if run.returncode != 0 or run.stdout != EXPECTED:
        raise SystemExit(f"ctr run {cid}: exit {run.returncode}, stdout {run.stdout!r}, "
                         f"stderr {run.stderr.decode(errors='replace')}\n{c.log_tail()}")
    c.ctr("containers", "delete", cid)
    deadline = time.monotonic() + 30
    while processes_naming(run_dir):
        if time.monotonic() > deadline:
            raise SystemExit(f"ctr run {cid}: shim or QEMU still running 30 s after the delete")
        time.sleep(0.1)
    return seconds


def baseline(image: Any, work: Path, document: bytes, disk: Path, layer: Any, spec: dict[str, Any],
             cid: str) -> dict[str, float]:
    """The shim's work for one pod, by the launcher and agent directly: seconds of the whole and its phases."""
    from launcher.scenario import Session
    from launcher.vm import Vm
    from shim import spec as specmod
    from shim.pod import SHM

    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    session = Session(image, work)
    session.prepare_pod(document, [disk])
    vm = Vm(session.machine("pod")).start()
    t1 = time.perf_counter()
    try:
        vm.client(timeout=300).call("Check", None, timeout=300)
        state, reason, _ = vm.wait_status(60)
        if state != "ready":
            raise SystemExit(f"baseline VM: the agent came up {state}: {reason}")
        t2 = time.perf_counter()
        vm.call("CreateSandbox", {"hostname": cid, "sandbox_id": cid, "sandbox_pidns": False, "storages": [SHM]},
                timeout=120)
        request = specmod.create_request(spec, cid, [layer])
        request.storages[0].source = "/dev/disk/by-id/virtio-layer0"
        vm.call("CreateContainer", request, timeout=180)
        vm.call("StartContainer", {"container_id": cid}, timeout=60)
        out = Session.read_stream(vm, "ReadStdout", cid, cid)
        status = vm.call("WaitProcess", {"container_id": cid, "exec_id": cid}, timeout=60).status
    finally:
        vm.stop()
    t3 = time.perf_counter()
    shutil.rmtree(work, ignore_errors=True)
    if (out, status) != (EXPECTED, 0):
        raise SystemExit(f"baseline container: exit {status}, stdout {out!r}")
    return {"total": t3 - t0, "prepare": t1 - t0, "boot_to_ready": t2 - t1, "container": t3 - t2}


def missing_prerequisite(image_dir: Path) -> str | None:
    if os.geteuid() != 0:
        return "bench.shim needs root (containerd, its snapshots and mounts)"
    for tool in (CONTAINERD, CTR):
        if not os.access(tool, os.X_OK):
            return f"bench.shim needs {tool} (make setup installs containerd)"
    if not shutil.which("qemu-system-x86_64"):
        return "bench.shim needs qemu-system-x86_64 (make setup)"
    from launcher.qemu import Image, LaunchError

    try:
        Image.load(image_dir)
    except LaunchError as exc:
        return f"bench.shim: {exc} (or set COCOON_QEMU_IMAGE / --image)"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="rounds of baseline, cold ctr run, warm ctr run")
    ap.add_argument("--image", default=os.environ.get("COCOON_QEMU_IMAGE") or str(ROOT / "out"),
                    help="a built image's out/ directory (default $COCOON_QEMU_IMAGE, else out/)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    image_dir = Path(args.image).resolve()
    why = missing_prerequisite(image_dir)
    if why:
        print(why, file=sys.stderr)
        return 2
    from agent.initdata import render_document
    from generator import layers as convert
    from generator.model import Blob
    from launcher import pvh
    from launcher.qemu import Image

    image = Image.load(image_dir)
    document = render_document({"policy.rego": allow_all()})
    initdata_b64 = base64.b64encode(gzip.compress(document)).decode()
    baselines: list[dict[str, float]] = []
    cold: list[float] = []
    warm: list[float] = []
    # /tmp, not /dev/shm or deeper: unix socket paths (containerd's, the shim's, the VM's) end at 108 bytes
    with tempfile.TemporaryDirectory(prefix="cocoon-bench-shim-", dir="/tmp") as tmp_s:
        tmp = Path(tmp_s)
        base, run_dir, cache = tmp / "ctrd", tmp / "run", tmp / "shim-cache"
        os.environ["COCOON_CACHE"] = str(tmp / "cocoon-cache")  # the PVH kernel both paths boot (launcher/pvh.py)
        pvh.sim_kernel(image.kernel)  # derived once here, outside every timing
        blob, diff_id = oci_archive(tmp / "image.tar", IMAGE_NAME.rsplit(":", 1)[1])
        base_cache = tmp / "baseline-cache"
        layer = convert.convert(Blob("sha256:" + hashlib.sha256(blob).hexdigest(), GZIP_LAYER, len(blob)),
                                io.BytesIO(blob), base_cache, diff_id=diff_id)
        disk = convert.layer_path(layer, base_cache)
        spec = json.loads(subprocess.run([CTR, "oci", "spec"], check=True, capture_output=True).stdout)
        env = {"COCOON_SHIM_IMAGE": str(image_dir), "COCOON_SHIM_CACHE": str(cache), "COCOON_SHIM_RUN": str(run_dir),
               "COCOON_CACHE": os.environ["COCOON_CACHE"], "PYTHONPATH": str(ROOT)}
        with running(base, [str(shim_bin(tmp / "bin"))], env) as c:
            c.ctr("images", "import", "--base-name", IMAGE_NAME.rsplit(":", 1)[0], str(tmp / "image.tar"))
            progress(f"containerd up, {IMAGE_NAME} imported; {args.runs} rounds of baseline, cold, warm")
            for i in range(args.runs):
                cid = f"bench{i}"
                bspec = copy.deepcopy(spec)
                bspec["process"]["args"], bspec["process"]["env"] = ARGS, ["PATH=/bin"]
                bspec["annotations"] = {INITDATA_ANNOTATION: initdata_b64}
                baselines.append(baseline(image, tmp / "baseline", document, disk, layer, bspec, cid))
                shutil.rmtree(cache, ignore_errors=True)
                cold.append(ctr_run(c, f"{cid}-cold", initdata_b64, run_dir))
                got = convert.cached(layer.digest, cache)
                if got is None or got.root_hash != layer.root_hash:
                    raise SystemExit("the shim's cache lacks the layer, or has another root hash than the baseline's")
                warm.append(ctr_run(c, f"{cid}-warm", initdata_b64, run_dir))
                progress(f"round {i + 1}/{args.runs}: baseline {baselines[-1]['total']:.2f} s, "
                         f"ctr run cold {cold[-1]:.2f} s, warm {warm[-1]:.2f} s")
        left = processes_naming(tmp)
    if left:
        print(f"bench.shim: processes still name {tmp}: {left}", file=sys.stderr)
        return 1
    b = statistics.median(x["total"] for x in baselines)
    phases = {k: statistics.median(x[k] for x in baselines) for k in ("prepare", "boot_to_ready", "container")}
    cm, wm = statistics.median(cold), statistics.median(warm)
    result = {"runs": args.runs, "baseline_s": round(b, 2), "baseline_prepare_s": round(phases["prepare"], 2),
              "baseline_boot_to_ready_s": round(phases["boot_to_ready"], 2),
              "baseline_container_s": round(phases["container"], 2),
              "ctr_run_cold_s": round(cm, 2), "ctr_run_warm_s": round(wm, 2),
              "cold_ratio": round(cm / b, 2), "warm_ratio": round(wm / b, 2), "goal": GOAL,
              "cold_goal_met": cm / b <= GOAL, "warm_goal_met": wm / b <= GOAL}
    if args.json:
        print(json.dumps(result))
    else:
        met = {True: "met", False: "NOT met"}
        print(f"busybox pod `{shlex.join(ARGS)}` to its exit, median of {args.runs} (TCG, sim TEE):")
        print(f"  baseline, launcher + agent directly:                 {b:6.2f} s")
        print(f"    (session {phases['prepare']:.2f} s, QEMU to READY {phases['boot_to_ready']:.2f} s, "
              f"sandbox + container + stop {phases['container']:.2f} s)")
        print(f"  ctr run, containerd + shim, layer cache empty (cold): {cm:6.2f} s  ratio {cm / b:.2f} "
              f"(goal <= {GOAL}: {met[cm / b <= GOAL]})")
        print(f"  ctr run, containerd + shim, layer cached (warm):      {wm:6.2f} s  ratio {wm / b:.2f} "
              f"(goal <= {GOAL}: {met[wm / b <= GOAL]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
