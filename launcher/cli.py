"""``cocoon launch`` and ``cocoon demo``: boot the built image (sim TEE here, SNP/TDX on real hosts)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

LAUNCH_EPILOG = """examples:
  cocoon launch --platform snp --initdata initdata.img --print     # firmware: out/OVMF-AmdSev.fd
  cocoon launch --platform tdx --initdata initdata.img --firmware OVMF-TDX.fd --print
  cocoon sim-tee config --initdata initdata.img --measurement HEX -o sim.json --chain-dir sim-ca
  cocoon launch --platform sim --initdata initdata.img --sim-config sim.json --socket /tmp/agent.sock

SNP passes the initdata digest as sev-snp-guest host-data (QEMU >= 9.1, kernel-hashes=on needs the
AmdSev firmware); TDX as tdx-guest mrconfigid (QEMU >= 10.1). The agent is reached on the host at
--socket (virtio-serial port cocoon.agent): cocoon ctl --address unix://SOCKET Check"""


def cmd_launch(args: argparse.Namespace) -> int:
    from agent import initdata
    from launcher.qemu import Image, LaunchError, Machine, render

    image = Image.load(args.image)
    digest = b""
    if args.initdata:
        digest = initdata.read_path(args.initdata).digest
    elif args.platform != "sim":
        raise LaunchError(f"--platform {args.platform} needs --initdata (its digest is the launch's host data)")
    if args.platform == "sim" and not args.sim_config:
        raise LaunchError("--platform sim needs --sim-config (make one with: cocoon sim-tee config)")
    m = Machine(image, platform=args.platform, initdata=Path(args.initdata) if args.initdata else None,
                layers=[Path(p) for p in args.layer], agent_socket=Path(args.socket),
                console_log=Path(args.console) if args.console else None,
                sim_config=Path(args.sim_config) if args.sim_config else None, initdata_digest=digest,
                memory_mib=args.memory, vcpus=args.vcpus, vcpu_type=args.vcpu_type, accel=args.accel,
                firmware=Path(args.firmware) if args.firmware else None)
    if args.platform == "sim" and args.kernel_boot == "pvh":
        from launcher.pvh import sim_kernel

        m.pvh_kernel, how = sim_kernel(image.kernel)
        if m.pvh_kernel is None:
            print(f"cocoon launch: kernel boot: {how}", file=sys.stderr)
    argv = m.argv()
    if args.print:
        print(render(argv))
        return 0
    print(f"cocoon launch: agent on unix://{args.socket}", file=sys.stderr)
    os.execvp(argv[0], argv)
    return 1  # not reached


def register(sub: Any) -> None:
    p = sub.add_parser("launch", help="boot the built image with QEMU (or --print the command line)",
                       description="Boot out/ with QEMU: the sim TEE under TCG here, SEV-SNP or TDX on real hosts.",
                       epilog=LAUNCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--platform", choices=("sim", "snp", "tdx"), default="sim")
    p.add_argument("--image", default="out", help="build outputs (default: out/, from make image)")
    p.add_argument("--initdata", metavar="FILE", help="initdata disk (cocoon initdata pack)")
    p.add_argument("--layer", metavar="FILE", action="append", default=[],
                   help="container layer disk (erofs + verity), repeatable: /dev/disk/by-id/virtio-layerN")
    p.add_argument("--sim-config", metavar="FILE", help="sim PSP document (platform sim)")
    p.add_argument("--firmware", metavar="FILE", help="SNP: AmdSev OVMF; TDX: TDX-enabled OVMF")
    p.add_argument("--socket", default="/tmp/cocoon-agent.sock", help="host end of the agent port")
    p.add_argument("--console", metavar="FILE", help="write the serial console here (default: stdio)")
    p.add_argument("--vcpus", type=int, default=2)
    p.add_argument("--vcpu-type", default="EPYC-Milan", help="SNP vCPU model (default EPYC-Milan)")
    p.add_argument("--memory", type=int, default=1024, help="MiB (default 1024)")
    p.add_argument("--accel", choices=("tcg", "kvm"), default="tcg", help="sim only (SNP/TDX always use KVM)")
    p.add_argument("--kernel-boot", choices=("pvh", "bzimage"), default="pvh",
                   help="sim only: boot the kernel's ELF through its PVH entry with qboot (default; ~2 s faster "
                        "under TCG, decompressed once into ~/.cache/cocoon/kernels) or the bzImage through SeaBIOS")
    p.add_argument("--print", action="store_true", help="print the QEMU command line instead of running it")
    p.set_defaults(handler=cmd_launch)

    d = sub.add_parser("demo", help="boot the image under QEMU with the sim TEE and show every guarantee",
                       description="Builds the image if out/ lacks it, boots it under QEMU (TCG, sim TEE), then: "
                                   "verifies evidence against reference-values.json, runs a container from a "
                                   "dm-verity layer, shows an allowed and a denied exec, and reboots with one "
                                   "initdata byte changed (deny-all). Exit 0 only if every step held.")
    d.add_argument("--image", default="out", help="build outputs (default: out/; built when missing)")
    d.add_argument("--build", action="store_true", help="rebuild the image first even if out/ has one")
    d.add_argument("--work", metavar="DIR", help="keep keys, disks and console logs here (default: a temp dir)")
    d.add_argument("--accel", choices=("tcg", "kvm"), default="tcg")
    d.add_argument("--json", action="store_true", help="print the steps as JSON instead of the transcript")

    def demo(args: argparse.Namespace) -> int:
        from launcher.demo import cmd_demo

        return cmd_demo(args)

    d.set_defaults(handler=demo)
