"""``cocoon initdata`` and ``cocoon sim-tee``: what a launcher prepares for the agent.

    cocoon initdata pack --policy policy.rego -o initdata.img     # the block device + its digests
    cocoon initdata digest initdata.img                            # HOSTDATA / MRCONFIGID values
    cocoon sim-tee config --initdata initdata.img --measurement HEX -o sim.json --chain-dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from agent.errors import AgentError


def _print(args: argparse.Namespace, doc: dict[str, Any], lines: list[str]) -> None:
    if args.json:
        print(json.dumps(doc, indent=1, sort_keys=True))
    else:
        print("\n".join(lines))


def _digests(d: Any) -> dict[str, Any]:
    return {"algorithm": d.algorithm, "digest": d.digest.hex(), "snp_host_data": d.bound(32).hex(),
            "tdx_mrconfigid": d.bound(48).hex(), "entries": sorted(d.data)}


def cmd_pack(args: argparse.Namespace) -> int:
    from agent import initdata

    data: dict[str, str] = {}
    for item in [f"policy.rego={args.policy}"] * bool(args.policy) + list(args.data):
        key, sep, path = item.partition("=")
        if not sep:
            raise AgentError(f"--data wants KEY=FILE, got {item!r}")
        try:
            with open(path, encoding="utf-8") as f:
                data[key] = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentError(f"cannot read {path}: {exc}") from None
    doc = initdata.render_document(data, args.algorithm)
    parsed = initdata.parse_document(doc, "<packed>")  # what the agent will accept, or an error now
    blob = initdata.encode_block(doc)
    tmp = f"{args.output}.tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, args.output)
    if args.toml:
        with open(args.toml, "wb") as f:
            f.write(doc)
    info = {"output": args.output, "bytes": len(blob), **_digests(parsed)}
    _print(args, info, [f"wrote {args.output} ({len(blob)} bytes, {len(data)} entries)",
                        f"{parsed.algorithm}: {info['digest']}",
                        f"SNP HOSTDATA:   {info['snp_host_data']}",
                        f"TDX MRCONFIGID: {info['tdx_mrconfigid']}"])
    return 0


def cmd_digest(args: argparse.Namespace) -> int:
    from agent import initdata

    d = initdata.read_path(args.file, args.layout)
    info = {"file": args.file, **_digests(d)}
    _print(args, info, [f"{d.algorithm}: {info['digest']}", f"SNP HOSTDATA:   {info['snp_host_data']}",
                        f"TDX MRCONFIGID: {info['tdx_mrconfigid']}", f"entries: {', '.join(info['entries'])}"])
    return 0


def cmd_sim_config(args: argparse.Namespace) -> int:
    from agent import initdata
    from launcher.simca import SimChain, make_chain, make_config

    if args.initdata:
        host_data = initdata.read_path(args.initdata).bound(32)
    else:
        try:
            host_data = bytes.fromhex(args.host_data)
        except ValueError:
            raise AgentError("--host-data must be hex") from None
    if args.reference_values:
        from launcher.qemu import snp_measurement
        from verifier import strictjson

        try:
            with open(args.reference_values, "rb") as f:
                refs = strictjson.loads(f.read())  # from outside: duplicate keys refused
        except (OSError, ValueError, RecursionError) as exc:
            raise AgentError(f"cannot read {args.reference_values}: {exc}") from None
        if not isinstance(refs, dict):
            raise AgentError(f"{args.reference_values} is not a reference-values document")
        measurement = snp_measurement(refs, args.vcpus, args.vcpu_type)
    else:
        try:
            measurement = bytes.fromhex(args.measurement)
        except ValueError:
            raise AgentError("--measurement must be hex") from None
    if len(measurement) != 48 or len(host_data) != 32:
        raise AgentError("--measurement must be 48 bytes and HOSTDATA 32 bytes")
    os.makedirs(args.chain_dir, exist_ok=True)
    names = ("ark.pem", "ask.pem", "vcek.pem", "vcek-key.pem")
    paths = [os.path.join(args.chain_dir, n) for n in names]
    if all(os.path.exists(p) for p in paths):
        blobs = []
        for p in paths:
            with open(p, "rb") as f:
                blobs.append(f.read())
        chain = SimChain(*blobs)
    else:
        chain = make_chain()
        for p, blob in zip(paths, (chain.ark_pem, chain.ask_pem, chain.vcek_pem, chain.vcek_key_pem), strict=True):
            with open(p, "wb") as f:
                f.write(blob)
        with open(os.path.join(args.chain_dir, "trust.pem"), "wb") as f:
            f.write(chain.trust_pem)
    config = make_config(chain, measurement, host_data, policy=args.policy)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(config.to_json())
    info = {"output": args.output, "host_data": host_data.hex(), "measurement": measurement.hex(),
            "trust": os.path.join(args.chain_dir, "trust.pem")}
    _print(args, info, [f"wrote {args.output}: sim PSP reports HOSTDATA {host_data.hex()}",
                        f"verifiers trust the sim chain with --trust-sim {info['trust']}",
                        f"QEMU: -fw_cfg name=opt/io.cocoon/sim,file={args.output}"])
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("initdata", help="pack CoCo initdata and print the digests the TEE must carry")
    s = p.add_subparsers(dest="initdata_command", metavar="ACTION")
    s.required = True
    pack = s.add_parser("pack", help="write an initdata block device image",
                        description="Write the initdata device image Kata would attach, and print its digests.")
    pack.add_argument("--policy", metavar="FILE", help="Rego policy (stored as policy.rego)")
    pack.add_argument("--data", metavar="KEY=FILE", action="append", default=[], help="further entries")
    pack.add_argument("--algorithm", default="sha256", choices=("sha256", "sha384", "sha512"))
    pack.add_argument("-o", "--output", required=True, help="image to write")
    pack.add_argument("--toml", metavar="FILE", help="also write the raw TOML document here")
    pack.add_argument("--json", action="store_true", help="machine-readable output")
    pack.set_defaults(handler=cmd_pack)
    dig = s.add_parser("digest", help="print the digests of an initdata image or TOML file")
    dig.add_argument("file")
    dig.add_argument("--layout", default="auto", choices=("auto", "block", "toml"))
    dig.add_argument("--json", action="store_true")
    dig.set_defaults(handler=cmd_digest)

    p = sub.add_parser("sim-tee", help="prepare the sim TEE (no SEV/TDX hardware): chain and PSP config")
    s = p.add_subparsers(dest="sim_command", metavar="ACTION")
    s.required = True
    cfg = s.add_parser("config", help="write the document the sim PSP reads (via QEMU fw_cfg)")
    src = cfg.add_mutually_exclusive_group(required=True)
    src.add_argument("--initdata", metavar="FILE", help="HOSTDATA = this initdata's digest")
    src.add_argument("--host-data", metavar="HEX", help="HOSTDATA, 32 bytes hex")
    launch = cfg.add_mutually_exclusive_group(required=True)
    launch.add_argument("--measurement", metavar="HEX", help="launch measurement, 48 bytes hex")
    launch.add_argument("--reference-values", metavar="FILE",
                        help="take the launch measurement from a build's reference values (what hardware "
                             "would report for --vcpus x --vcpu-type); for `cocoon launch --platform sim`, "
                             "out/reference-values-sim.json (its command line carries cocoon.tee=sim)")
    cfg.add_argument("--vcpus", type=int, default=2, help="with --reference-values (default 2)")
    cfg.add_argument("--vcpu-type", default="EPYC-Milan", help="with --reference-values (default EPYC-Milan)")
    cfg.add_argument("--policy", type=lambda v: int(v, 0), default=0x30000, help="guest policy (default 0x30000)")
    cfg.add_argument("--chain-dir", required=True, help="sim ARK/ASK/VCEK (made if absent, reused if present)")
    cfg.add_argument("-o", "--output", required=True)
    cfg.add_argument("--json", action="store_true")
    cfg.set_defaults(handler=cmd_sim_config)

