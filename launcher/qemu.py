"""QEMU command lines for the built image: the sim TEE under TCG here, SEV-SNP and TDX on real hosts.

Pure functions from the build outputs (``out/``) and a few choices to an
argv list, so ``cocoon launch --print``, the QEMU tests and the demo all
boot the very same machine. How the host hands the guest its policy
differs per platform and is exactly what the measurement binds:

- sim: ``-fw_cfg name=opt/io.cocoon/sim`` carries the sim PSP's document
  (launch measurement, HOSTDATA = initdata digest, VCEK key) and
  ``cocoon.tee=sim`` on the command line selects it (the agent never picks
  sim by itself).
- SNP: ``sev-snp-guest,host-data=`` (base64 of the 32-byte initdata digest,
  QAPI ``SevSnpGuestProperties``); ``kernel-hashes=on`` has QEMU put the
  kernel/initrd/cmdline hashes where the AmdSev firmware measures them.
- TDX: ``tdx-guest,mrconfigid=`` (base64 of the 48-byte digest, QAPI
  ``TdxGuestProperties``, QEMU >= 10.1).

In every case the initdata itself travels as a read-only virtio-blk disk
with serial ``initdata`` (the guest finds it at /dev/disk/by-id/virtio-initdata
or by its magic), and container layers as further read-only disks with
serials ``layer0``, ``layer1``, ...
"""

from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import AgentError
from agent.tee.sim import FW_CFG_NAME
from launcher.pvh import QBOOT
from verifier import strictjson

PLATFORMS = ("sim", "snp", "tdx")
AGENT_PORT = "cocoon.agent"  # the virtio-serial port name the image's cmdline listens on
OUTPUTS = ("vmlinuz", "initrd.img", "root.img", "cmdline", "reference-values.json", "reference-values-sim.json")
# What a sim launch adds to the image's command line (the agent never picks sim by itself). The build
# computes reference-values-sim.json for exactly that command line.
SIM_CMDLINE = "cocoon.tee=sim"
# The CPU TCG emulates for sim launches: QEMU's baseline model. `max` exposes AVX2, SHA-NI and the
# like, which the guest's glibc, OpenSSL and kernel then use and TCG emulates instruction by
# instruction; boot-to-READY was ~2 s (7%) longer with it. Nothing in the guest needs them.
TCG_CPU = "qemu64"


class LaunchError(AgentError):
    """The build outputs or launch options cannot make a bootable machine."""


@dataclass(frozen=True)
class Image:
    """The boot inputs of one build (``make image`` writes them to ``out/``)."""

    out: Path

    @classmethod
    def load(cls, out: str | Path) -> Image:
        path = Path(out)
        missing = [n for n in OUTPUTS if not (path / n).is_file()]
        if missing:
            raise LaunchError(f"{path} lacks {', '.join(missing)}: build the image first (make image)")
        return cls(path)

    @property
    def kernel(self) -> Path:
        return self.out / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.out / "initrd.img"

    @property
    def root(self) -> Path:
        return self.out / "root.img"

    @property
    def cmdline(self) -> str:
        return (self.out / "cmdline").read_text().strip()

    def reference_values(self, sim: bool = False) -> dict[str, object]:
        """The build's reference values; ``sim``: those for a sim launch (command line + SIM_CMDLINE)."""
        path = self.out / ("reference-values-sim.json" if sim else "reference-values.json")
        try:
            doc = strictjson.loads(path.read_bytes())  # from outside: duplicate keys refused
        except (OSError, ValueError, RecursionError) as exc:
            raise LaunchError(f"cannot read {path}: {exc}") from None
        if not isinstance(doc, dict):
            raise LaunchError("reference-values.json is not a JSON object")
        return doc

    def snp_measurement(self, vcpus: int, vcpu_type: str, sim: bool = False) -> bytes:
        """The launch digest the reference values give for this vCPU count and type."""
        return snp_measurement(self.reference_values(sim), vcpus, vcpu_type)


def snp_measurement(reference_values: dict[str, object], vcpus: int, vcpu_type: str) -> bytes:
    """The SNP launch digest a reference-values document lists for ``vcpus`` x ``vcpu_type``."""
    snp = reference_values.get("snp")
    entries = snp.get("measurements", []) if isinstance(snp, dict) else []
    for e in entries:
        if isinstance(e, dict) and e.get("vcpus") == vcpus and e.get("vcpu_type") == vcpu_type:
            try:
                value = bytes.fromhex(str(e.get("measurement")))
            except ValueError:
                value = b""
            if len(value) != 48:
                raise LaunchError(f"reference values: the measurement for {vcpus} x {vcpu_type} is not 48 bytes")
            return value
    raise LaunchError(f"reference values have no SNP measurement for {vcpus} x {vcpu_type}")


@dataclass(frozen=True)
class Nic:
    """A virtio-net NIC on a host tap device QEMU opens by name (in QEMU's own network namespace).

    Kata's tc-filter model: the runtime creates the tap next to the pod's veth and mirrors traffic
    between them, and the guest NIC carries the veth's MAC, by which the agent's UpdateInterface finds
    it. No script runs: QEMU creates the tap itself, so the tap goes when QEMU goes, however it ends.
    """

    tap: str
    mac: str

    def args(self, index: int) -> list[str]:
        if not re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", self.mac):
            raise LaunchError(f"NIC MAC {self.mac!r}: six lowercase hex octets separated by ':'")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", self.tap):
            raise LaunchError(f"tap name {self.tap!r}: 1-15 characters of [A-Za-z0-9_.-]")
        return ["-netdev", f"tap,id=net{index},ifname={self.tap},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=net{index},mac={self.mac}"]


@dataclass
class Machine:
    """One launch: which platform, which extra disks, where the agent and console go."""

    image: Image
    platform: str = "sim"
    initdata: Path | None = None
    layers: list[Path] = field(default_factory=list)
    agent_socket: Path | None = None  # host end of the agent's virtio-serial port
    console_log: Path | None = None
    sim_config: Path | None = None
    initdata_digest: bytes = b""  # SNP host-data / TDX mrconfigid (sim: inside sim_config)
    memory_mib: int = 1024
    vcpus: int = 2
    vcpu_type: str = "EPYC-Milan"
    accel: str = "tcg"
    firmware: Path | None = None  # SNP: AmdSev OVMF; TDX: TDVF (OVMF with TDX support)
    root_image: Path | None = None  # override (the tests flip a byte in a copy)
    pvh_kernel: Path | None = None  # sim only: the kernel's ELF (launcher/pvh.py), booted without firmware detours
    extra_cmdline: str = ""
    qmp_socket: Path | None = None  # QMP (launcher/qmp.py): disks hotplugged after boot
    nics: list[Nic] = field(default_factory=list)
    netns: str | None = None  # QEMU runs in this network namespace (a pod's, where its taps live)

    def cmdline(self) -> str:
        parts = [self.image.cmdline]
        if self.platform == "sim":
            parts.append(SIM_CMDLINE)
        if self.extra_cmdline:
            parts.append(self.extra_cmdline)
        return " ".join(parts)

    def argv(self) -> list[str]:
        if self.platform not in PLATFORMS:
            raise LaunchError(f"platform {self.platform!r}: one of {', '.join(PLATFORMS)}")
        if self.platform == "sim" and self.sim_config is None:
            raise LaunchError("the sim platform needs the sim PSP document (sim_config)")
        if self.platform in ("snp", "tdx") and len(self.initdata_digest) not in (32, 48):
            raise LaunchError(f"{self.platform} needs the initdata digest for the launch (host-data / mrconfigid)")
        argv = ["qemu-system-x86_64", "-no-reboot", "-m", str(self.memory_mib), "-smp", str(self.vcpus)]
        if self.console_log is not None:
            argv += ["-display", "none", "-serial", f"file:{self.console_log}", "-monitor", "none"]
        else:
            argv.append("-nographic")
        argv += self._platform_args()
        kernel = self.image.kernel
        if self.platform == "sim" and self.pvh_kernel is not None:
            kernel = self.pvh_kernel
            if QBOOT.is_file():
                argv += ["-bios", str(QBOOT)]
        argv += ["-kernel", str(kernel), "-initrd", str(self.image.initrd), "-append", self.cmdline()]
        argv += disk(self.root_image or self.image.root, "root")
        if self.initdata is not None:
            argv += disk(self.initdata, "initdata")
        for i, layer in enumerate(self.layers):
            argv += disk(layer, f"layer{i}")
        for i, nic in enumerate(self.nics):
            argv += nic.args(i)
        if self.qmp_socket is not None:
            argv += ["-qmp", f"unix:{self.qmp_socket},server=on,wait=off"]
        sock = str(self.agent_socket) if self.agent_socket else "/run/cocoon-agent.sock"
        argv += ["-device", "virtio-serial-pci", "-chardev", f"socket,id=agent,path={sock},server=on,wait=off",
                 "-device", f"virtserialport,chardev=agent,name={AGENT_PORT}"]
        if self.netns is not None:  # nsenter execs QEMU: same pid, the pod's namespace (unix sockets unaffected)
            argv = ["nsenter", f"--net={self.netns}", "--", *argv]
        return argv

    def _platform_args(self) -> list[str]:
        if self.platform == "sim":
            accel = ["-accel", "kvm", "-cpu", "host"] if self.accel == "kvm" else ["-accel", "tcg", "-cpu", TCG_CPU]
            return [*accel, "-fw_cfg", f"name={FW_CFG_NAME},file={self.sim_config}"]
        if self.platform == "snp":
            b64 = base64.b64encode(self.initdata_digest[:32].ljust(32, b"\0")).decode()
            args = ["-accel", "kvm", "-cpu", self.vcpu_type,
                    "-machine", "q35,confidential-guest-support=sev0,memory-backend=ram0",
                    "-object", f"memory-backend-memfd,id=ram0,size={self.memory_mib}M,share=true",
                    "-object", f"sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on,"
                               f"host-data={b64}"]
            return [*args, "-bios", str(self.firmware or self.image.out / "OVMF-AmdSev.fd")]
        b64 = base64.b64encode(self.initdata_digest[:48].ljust(48, b"\0")).decode()
        return ["-accel", "kvm", "-cpu", "host",
                "-machine", "q35,kernel-irqchip=split,confidential-guest-support=tdx0",
                "-object", f"tdx-guest,id=tdx0,mrconfigid={b64}",
                "-bios", str(self.firmware or "/usr/share/ovmf/OVMF.fd")]


def disk(path: Path, serial: str) -> list[str]:
    """A read-only raw virtio-blk disk whose serial names it in /dev/disk/by-id/virtio-<serial>."""
    return ["-drive", f"file={path},if=none,id={serial},format=raw,readonly=on",
            "-device", f"virtio-blk-pci,drive={serial},serial={serial}"]


def render(argv: list[str]) -> str:
    """A shell-pasteable command line, one option per line."""
    lines, i = [shlex.quote(argv[0])], 1
    while i < len(argv):
        if argv[i].startswith("-") and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            lines.append(f"{argv[i]} {shlex.quote(argv[i + 1])}")
            i += 2
        else:
            lines.append(argv[i])
            i += 1
    return " \\\n  ".join(lines)
