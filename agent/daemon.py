"""cocoon-agent: bind the policy to the TEE, then serve Kata's agent protocol.

    cocoon-agent --tee sim --sim-config sim.json --initdata initdata.img --listen unix:///run/agent.sock

Settings come from the command line, else the kernel command line
(``cocoon.tee=``, ``cocoon.initdata=``, ``cocoon.sim=``, ``cocoon.listen=``, ``cocoon.runtime=``),
else defaults (TEE auto-detected among snp/tdx, never sim; initdata device discovered;
``vsock://-1:1024``), one row each in ``OPTIONS``. Whatever happens at startup the agent ends
up serving: READY with the verified policy, or deny-all naming the reason.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple

from agent import cmdline, initdata
from agent.binding import Binding, bind_safely
from agent.lazybackend import LazyBackend
from agent.systemd import notify, setup_logging, start_watchdog
from agent.tee import NAMES, open_provider
from agent.transport import DEFAULT_ADDRESS, AddressError, parse

if TYPE_CHECKING:
    import argparse

    from agent.containers import Backend
    from agent.tee import TeeProvider

log = logging.getLogger("cocoon.agent")


class Option(NamedTuple):
    """One daemon option. Its value is the flag, else (for a ``key``) the kernel command line's
    ``cocoon.<key>=`` (every one for an "append" option, else the last), else ``default``: see ``settle``."""

    flag: str
    kind: str  # "value", "append" or "flag"
    default: object
    choices: tuple[str, ...] | None
    metavar: str | None
    help: str
    key: str | None = None  # the kernel command line's cocoon.<key>=

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    def parsed_default(self) -> object:
        """What the parsers give when the flag is absent: None for a keyed option (the command line is next)."""
        if self.key is not None:
            return None
        return list(self.default) if isinstance(self.default, tuple) else self.default


#: The daemon's options, one row each. This table drives the argparse parser (--help, errors),
#: ``quick_parse``, the kernel command line keys read and ``settle``.
OPTIONS: tuple[Option, ...] = (
    Option("--tee", "value", "auto", NAMES, None,
           "TEE to use (default: cocoon.tee= on the kernel command line, else auto: snp or tdx; sim only when named)",
           key="tee"),
    Option("--sim-config", "value", None, None, "PATH", "sim TEE document (default: fw_cfg opt/io.cocoon/sim)",
           key="sim"),
    Option("--initdata", "value", None, None, "PATH", "initdata device or file (default: discovered)",
           key="initdata"),
    Option("--initdata-layout", "value", "auto", ("auto", "block", "toml"), None,
           "how to read --initdata (default: auto)"),
    Option("--listen", "append", (DEFAULT_ADDRESS,), None, "ADDR",
           f"ttRPC address, repeatable (default: {DEFAULT_ADDRESS}); "
           "vsock://CID:PORT, unix://PATH, tcp://HOST:PORT, serial:///dev/virtio-ports/NAME", key="listen"),
    Option("--grpc-listen", "append", (), None, "ADDR", "also serve gRPC here (unix://, tcp://, vsock://), repeatable"),
    Option("--atls-listen", "append", (), None, "ADDR",
           "also serve ttRPC over aTLS here (tcp:// or vsock://): the TLS certificate carries "
           "evidence bound to the client's nonce (sent as SNI <hex>.atls.cocoon)"),
    Option("--runtime", "value", None, None, None,
           "OCI runtime binary (default: cocoon.runtime= or crun if present, else runc)", key="runtime"),
    Option("--state-dir", "value", "/run/cocoon", None, None, "bundles, verified layer copies (default /run/cocoon)"),
    Option("--shared-dir", "value", "/run/kata-containers/shared/containers", None, None,
           "container directory the runtime's paths point into (mount points must be below it)"),
    Option("--sandbox-dir", "value", "/run/kata-containers/sandbox", None, None, "sandbox-wide mounts (shm)"),
    Option("--pause-rootfs", "value", "/usr/share/cocoon/pause", None, "DIR",
           "the sandbox container's rootfs, holding /pause (default: the image's /usr/share/cocoon/pause)"),
    Option("--datahub-listen", "value", "127.0.0.1:8006", None, "HOST:PORT",
           "the pod's attestation-agent and data hub REST endpoint, when initdata names a KBS "
           "(default 127.0.0.1:8006; off: none)"),
    Option("--aa-socket", "value", "/run/confidential-containers/attestation-agent/attestation-agent.sock", None,
           "PATH", "the attestation agent's ttRPC socket, with the data hub (off: none)"),
    Option("--cdh-socket", "value", "/run/confidential-containers/cdh.sock", None, "PATH",
           "the confidential data hub's ttRPC socket, with the data hub (off: none)"),
    Option("--kernel-cmdline", "value", "/proc/cmdline", None, "PATH",
           "where to read cocoon.* settings (default: /proc/cmdline)"),
    Option("--log-level", "value", "info", ("debug", "info", "warning", "error"), None, "log level"),
    Option("--exit-after-ready", "flag", False, None, None, ""),  # bench/startup.py; hidden
)
CMDLINE_KEYS = tuple(o.key for o in OPTIONS if o.key is not None)


def build_parser() -> argparse.ArgumentParser:
    import argparse

    p = argparse.ArgumentParser(
        prog="cocoon-agent",
        description="Guest agent for confidential containers: binds the pod policy (initdata) to the TEE report, "
                    "then serves Kata's AgentService over ttRPC (and gRPC), deny-all on any failure.",
    )
    for o in OPTIONS:
        if o.kind == "flag":
            p.add_argument(o.flag, action="store_true", help=o.help or argparse.SUPPRESS)
        else:
            p.add_argument(o.flag, action="append" if o.kind == "append" else "store", default=o.parsed_default(),
                           choices=o.choices, metavar=o.metavar, help=o.help)
    return p


def quick_parse(argv: Sequence[str]) -> SimpleNamespace | None:
    """The options argparse would give for the plain forms (``--opt value``, ``--opt=value``, flags), or
    None for anything else (help, unknown or abbreviated options, bad choices), which argparse then
    handles. Why: argparse's import alone is ~20 ms of a ~200 ms start, seconds under emulation."""
    spec = {o.flag: o for o in OPTIONS}
    values = {o.dest: o.parsed_default() for o in OPTIONS}
    i = 0
    while i < len(argv):
        flag, eq, value = argv[i].partition("=")
        o = spec.get(flag)
        if o is None:
            return None
        if o.kind == "flag":
            if eq:
                return None
            values[o.dest] = True
            i += 1
            continue
        if not eq:
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                return None
            value = argv[i + 1]
            i += 1
        i += 1
        if o.choices is not None and value not in o.choices:
            return None
        if o.kind == "append":
            before = values[o.dest]
            values[o.dest] = [*(before if isinstance(before, list) else []), value]
        else:
            values[o.dest] = value
    return SimpleNamespace(**values)


def parse_args(argv: Sequence[str]) -> argparse.Namespace | SimpleNamespace:
    return quick_parse(argv) or build_parser().parse_args(argv)


def settle(args: argparse.Namespace | SimpleNamespace, kernel: dict[str, list[str]]) -> SimpleNamespace:
    """The settings in effect, by one precedence: the flag, else the kernel command line, else the default."""
    values = dict(vars(args))
    for o in OPTIONS:
        if o.key is None or values[o.dest]:
            continue
        found = kernel.get(o.key)
        if found:
            values[o.dest] = list(found) if o.kind == "append" else found[-1]
        else:
            values[o.dest] = list(o.default) if isinstance(o.default, tuple) else o.default
    return SimpleNamespace(**values)


def startup(settings: SimpleNamespace) -> Binding:
    def open_tee() -> TeeProvider:
        return open_provider(settings.tee, sim_config=settings.sim_config)

    def read_initdata() -> initdata.Initdata:
        return initdata.read_path(settings.initdata or initdata.discover(), settings.initdata_layout)

    return bind_safely(open_tee, read_initdata)


def signal_pipe() -> int:
    """Route SIGTERM/SIGINT into a pipe; returns its read end (see ``wait_for_signal``).

    Installed first thing, so a stop request during startup is honoured once
    the agent is up instead of killing it half-initialised.
    """
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    os.set_blocking(r, True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    return r


def wait_for_signal(r: int) -> int:
    """Block until SIGTERM or SIGINT arrives; returns the signal number.

    The Python-level handlers do nothing: the interpreter's C handler writes
    the signal number to the pipe and this thread reads it. An Event.set()
    inside a handler would deadlock when the signal lands while this thread
    sits in Event.wait() holding the Event's own lock (seen in bench runs).
    """
    while True:
        for num in os.read(r, 16):
            if num in (signal.SIGTERM, signal.SIGINT):
                return num


def process_start() -> float | None:
    """When this process was exec'd, on CLOCK_BOOTTIME (seconds), from /proc (interpreter start-up included)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime, in clock ticks since boot
    except (OSError, ValueError, IndexError):
        return None


#: CLOCK_BOOTTIME when the first line of agent/__main__.py ran (set there): the interpreter's own start ends
script_started: float | None = None


def startup_timings(binding: Binding, t0: float) -> str:
    """One line on where start-up time went (the QEMU harness prints it: slow guests show here first)."""
    started = process_start()
    now = time.clock_gettime(time.CLOCK_BOOTTIME)
    main_ms = (time.perf_counter() - t0) * 1000
    if started is None:
        parts = ["serving"]
    else:
        parts = [f"serving {(now - started) * 1000:.0f} ms after exec"]
        if script_started is not None:  # exec -> our first line -> main() -> serving
            imports_ms = (now - script_started) * 1000 - main_ms
            parts.append(f"interpreter {(script_started - started) * 1000:.0f} ms, imports {imports_ms:.0f} ms")
    parts.append(f"main() {main_ms:.0f} ms")
    parts += [f"{k} +{v * 1000:.0f}" for k, v in binding.timings.items()]
    # The protobuf backend: pure Python (a missing C++ runtime makes upb fail to load silently) is
    # correct but several times slower, and shows here first.
    impl = sys.modules.get("google.protobuf.internal.api_implementation")
    if impl is not None:
        parts.append(f"protobuf {impl.Type()}")
    return ", ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    t0 = time.perf_counter()
    signals = signal_pipe()
    setup_logging(args.log_level)
    settings = settle(args, cmdline.read(args.kernel_cmdline, CMDLINE_KEYS))
    try:
        listen = [parse(a) for a in settings.listen]
        grpc_listen = [parse(a) for a in settings.grpc_listen]
        atls_listen = [parse(a) for a in settings.atls_listen]
        for a in atls_listen:
            if a.scheme not in ("tcp", "vsock"):
                raise AddressError(f"aTLS listens on tcp:// or vsock://, not {a}")
    except AddressError as exc:
        print(f"cocoon-agent: error: {exc}", file=sys.stderr)
        return 2
    # Bind on a helper thread while this one imports the protocol stack: the policy compile inside
    # the binding releases the GIL, so the two overlap. Nothing is served before the binding is done.
    result: list[Binding] = []
    binder = threading.Thread(target=lambda: result.append(startup(settings)), name="bind")
    binder.start()
    from agent.service import Agent
    from agent.ttrpc import TtrpcServer

    binder.join()
    binding = result[0]

    backend = None
    if binding.ready:
        runtime = settings.runtime

        def load_backend() -> Backend:
            import shutil

            from agent.containers import Backend

            return Backend(runtime or ("crun" if shutil.which("crun") else "runc"),
                           settings.state_dir, settings.shared_dir, settings.sandbox_dir,
                           pause_rootfs=settings.pause_rootfs)

        backend = LazyBackend(load_backend)
    # DestroySandbox ends the agent, as Kata's does (rpc.rs destroy_sandbox signals its main loop): the
    # same stop as SIGTERM, after the answer is sent; in the image systemd then starts a fresh agent.
    agent = Agent(binding, backend, on_destroyed=lambda: os.kill(os.getpid(), signal.SIGTERM))
    registry = agent.registry()
    server = TtrpcServer(registry)
    grpc_server = None
    try:
        bound = [server.listen(a).bound for a in listen]
        if atls_listen:
            from agent.atls import AtlsListener
            from agent.transport import Listener

            bound += [server.add_listener(AtlsListener(Listener(a), binding)).bound for a in atls_listen]
        if grpc_listen:
            from agent.grpc_server import GrpcServer

            grpc_server = GrpcServer(registry)
            bound += [f"grpc+{grpc_server.listen(a)}" for a in grpc_listen]
            grpc_server.start()
    except (AddressError, OSError) as exc:
        log.error("cannot listen: %s", exc)
        notify(f"STATUS=cannot listen: {exc}")
        server.stop()
        return 1
    state = "ready" if binding.ready else "deny-all"
    log.info("serving on %s (%s) after %.0f ms", ", ".join(bound), state, (time.perf_counter() - t0) * 1000)
    notify(f"READY=1\nSTATUS={binding.status_line()}\nCOCOON_STATE={state}")
    print(f"cocoon-agent: {state}: {binding.reason}", file=sys.stderr, flush=True)
    print(f"cocoon-agent: startup: {startup_timings(binding, t0)}", file=sys.stderr, flush=True)
    if backend is not None:
        backend.start()  # after READY: nothing container-related is needed to answer until a request comes
    datahub = start_datahub(binding, settings.datahub_listen, settings.aa_socket, settings.cdh_socket)
    if settings.exit_after_ready:
        server.stop()
        return 0

    stop = threading.Event()
    start_watchdog(stop)
    wait_for_signal(signals)
    stop.set()
    notify("STOPPING=1")
    stop_serving(server, backend)
    if grpc_server is not None:
        grpc_server.stop()
    for service in datahub:
        service.stop()
    return 0


def start_datahub(binding: Binding, listen: str, aa_socket: str = "off", cdh_socket: str = "off") -> list[Any]:
    """The pod's attestation-agent and data hub endpoints (agent/datahub.py REST, agent/guest_components.py
    ttRPC sockets), when the agent is READY; resources and sealed secrets only when the measured initdata
    names a KBS (without one the pod still gets evidence, e.g. for the coordinator's initializer). A KBS
    setting that does not parse is logged and serves nothing: the pod's requests for secrets then fail,
    they are never sent anywhere else."""
    if not binding.ready or binding.initdata is None or listen == "off" or binding.tee is None:
        return []
    from agent.errors import AgentError
    from agent.kbs_client import config_from_initdata

    try:
        config = config_from_initdata(binding.initdata.data)
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise AgentError(f"--datahub-listen {listen!r} is not HOST:PORT")
        from agent.datahub import DataHub

        hub = DataHub(config, binding.tee, (host, int(port)), initdata=binding.initdata.raw).start()
        from agent import sealed

        if config is not None:
            sealed.use(hub.client)  # sealed env values are unsealed with the same TEE key and token
        services: list[Any] = [hub]
        from agent import guest_components

        sockets = [p if p != "off" else None for p in (aa_socket, cdh_socket)]
        try:
            services += guest_components.serve(hub.client, binding.initdata.digest, sockets[0], sockets[1])
        except (AgentError, OSError):
            sealed.use(None)
            hub.stop()
            raise
    except (AgentError, OSError) as exc:
        log.error("no data hub: %s", exc)
        return []
    log.info("data hub on %s:%s and ttRPC on %s, %s", host, port, ", ".join(p for p in sockets if p) or "no socket",
             f"for the KBS at {config.url}" if config is not None else "no KBS in the initdata")
    return services


#: seconds the calls in flight get to finish on SIGTERM before the containers they may wait on are removed
DRAIN_CALLS = 10.0


def stop_serving(server: Any, backend: Any) -> None:
    """Stop taking requests, then remove every container and the sandbox's mounts, then end the calls.

    ``server.stop`` closes the listeners and connections and then waits for the calls in flight; a
    call blocked on a container (a WriteStdin to a process that never reads) would hold it for ever,
    and systemd's SIGKILL would then leave every mount and loop device behind. So the backend shuts
    down once the calls had DRAIN_CALLS seconds, which ends whatever they were waiting on.
    """
    stopper = threading.Thread(target=server.stop, name="stop-serving")
    stopper.start()
    stopper.join(DRAIN_CALLS)
    if backend is not None:
        backend.shutdown()
    stopper.join()


if __name__ == "__main__":
    raise SystemExit(main())
