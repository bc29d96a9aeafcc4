"""``containerd-shim-cocoon-v2``: containerd's runtime v2 shim binary for cocoon.

containerd runs the binary (found on its PATH from the runtime name ``io.containerd.cocoon.v2``) as, in 1.6
(runtime/v2/shim/util.go Command, runtime/v2/binary.go):

    containerd-shim-cocoon-v2 -namespace NS -address CONTAINERD_SOCK -publish-binary CONTAINERD \\
        -id ID [-bundle DIR] [-debug] start|delete

with the bundle as the working directory. ``start`` spawns the long-running shim (``serve``), waits until
it listens, writes its ttRPC address to the bundle's ``address`` file (what containerd reads back after a
restart) and prints it; containerd then speaks ``containerd.task.v2.Task`` to it over ttRPC. A pod's
containers share one shim: the socket is named after the pod's sandbox id (the
``io.kubernetes.cri.sandbox-id`` annotation, else the container's own id), so ``start`` for a container
of a running pod prints the running shim's address, as Kata's shim does. ``delete`` is containerd's cleanup
after a shim died: it kills what that shim left (the VM), removes its files and prints a DeleteResponse.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

START_TIMEOUT = 10.0
SOCKET_DIR = Path(os.environ.get("COCOON_SHIM_RUN", "/run/cocoon-shim"))


def parse(argv: list[str]) -> argparse.Namespace:
    # Go's flag package: single-dash long flags, "-flag value" or "-flag=value"
    p = argparse.ArgumentParser(prog="containerd-shim-cocoon-v2", description=__doc__.splitlines()[0])
    p.add_argument("-namespace", default="")
    p.add_argument("-address", default="")
    p.add_argument("-publish-binary", dest="publish_binary", default="")
    p.add_argument("-id", default="")
    p.add_argument("-bundle", default="")
    p.add_argument("-socket", default="", help=argparse.SUPPRESS)  # serve: where to listen (start picks it)
    p.add_argument("-debug", action="store_true")
    p.add_argument("-v", action="store_true", help="print the version")
    p.add_argument("action", nargs="?", choices=["start", "delete", "serve"])
    return p.parse_args(argv)


def sandbox_of(bundle: Path, cid: str) -> str:
    try:
        spec = json.loads((bundle / "config.json").read_text())
        return str((spec.get("annotations") or {}).get("io.kubernetes.cri.sandbox-id") or cid)
    except (OSError, ValueError):
        return cid


def socket_path(namespace: str, sandbox_id: str) -> Path:
    """Short and per pod (unix socket paths end at 108 bytes; containerd's own are /run/containerd/s/<hash>)."""
    return SOCKET_DIR / f"{hashlib.sha256(f'{namespace}/{sandbox_id}'.encode()).hexdigest()[:32]}.sock"


def _listening(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def start(args: argparse.Namespace) -> int:
    bundle = Path(args.bundle or os.getcwd())
    sock = socket_path(args.namespace, sandbox_of(bundle, args.id))
    address = f"unix://{sock}"
    if not _listening(sock):
        SOCKET_DIR.mkdir(parents=True, exist_ok=True, mode=0o711)
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        log = _log_sink(bundle)
        argv = [sys.executable, "-m", "shim.main", "-namespace", args.namespace, "-address", args.address,
                "-publish-binary", args.publish_binary, "-id", args.id, "-bundle", str(bundle),
                "-socket", str(sock), *(["-debug"] if args.debug else []), "serve"]
        proc = subprocess.Popen(argv, cwd=bundle, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not _listening(sock):
            if proc.poll() is not None:
                print(f"cocoon shim exited with {proc.returncode} before listening", file=sys.stderr)
                return 1
            if time.monotonic() > deadline:
                proc.kill()
                print(f"cocoon shim did not listen on {sock} within {START_TIMEOUT:.0f} s", file=sys.stderr)
                return 1
            time.sleep(0.05)
        (bundle / "shim.pid").write_text(str(proc.pid))
    (bundle / "address").write_text(address)
    sys.stdout.write(address)
    sys.stdout.flush()
    return 0


def _log_sink(bundle: Path) -> int:
    """containerd's ``log`` FIFO in the bundle (it copies what arrives into its own log), else a file."""
    fifo = bundle / "log"
    with contextlib.suppress(OSError):
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.set_blocking(fd, True)
        return fd
    return os.open(bundle / "shim.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def delete(args: argparse.Namespace) -> int:
    """Cleanup after a shim that is gone: kill it and its VM if still there, remove the VM's files."""
    import shutil

    from shim.pod import work_dir
    from shim.protocols import task_pb2

    bundle = Path(args.bundle or os.getcwd())
    sandbox = sandbox_of(bundle, args.id)
    # containerd runs `delete` for every container whose shim connection ended, also for a container that
    # joined a pod whose shim lives on (runtime/v2 cleanupAfterDeadShim): then the pod is not ours to end
    if sandbox == args.id or not _listening(socket_path(args.namespace, sandbox)):
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((bundle / "shim.pid").read_text()), signal.SIGKILL)
        work = work_dir(args.namespace, sandbox)
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((work / "qemu.pid").read_text()), signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            socket_path(args.namespace, sandbox).unlink()
    from google.protobuf import timestamp_pb2

    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    sys.stdout.buffer.write(task_pb2.DeleteResponse(pid=0, exit_status=128 + signal.SIGKILL,
                                                    exited_at=ts).SerializeToString())
    sys.stdout.flush()
    return 0


def serve(args: argparse.Namespace) -> int:
    from agent.rpc import Registry
    from agent.transport import parse as parse_address
    from agent.ttrpc import TtrpcServer
    from shim.pod import PodVm
    from shim.task import Publisher, TaskService

    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="cocoon-shim %(asctime)s %(levelname)s %(message)s")
    done = threading.Event()
    publisher = Publisher(args.publish_binary, args.address, args.namespace)

    def pod(cid: str, document: bytes | None, bundle: Path) -> PodVm:
        return PodVm(cid, document, bundle, address=args.address, namespace=args.namespace)

    service = TaskService(args.namespace, args.address, publisher, pod, done)
    server = TtrpcServer(Registry([service.service()]))
    server.listen(parse_address(f"unix://{args.socket}"))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    service.close()
    publisher.close()
    server.stop()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.socket)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.v:
        print("containerd-shim-cocoon-v2 (cocoon)")
        return 0
    if args.action == "start":
        return start(args)
    if args.action == "delete":
        return delete(args)
    if args.action == "serve":
        return serve(args)
    print("containerd-shim-cocoon-v2: start, delete (run by containerd)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
