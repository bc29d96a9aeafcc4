"""CLI for the measurement core: ``cocoon measure``, ``cocoon igvm``, ``cocoon reference-values``.

Flags follow sev-snp-measure where they overlap (--ovmf --kernel --initrd
--append --vcpus --vcpu-type --vcpu-sig --guest-features --vmm-type
--output-format) so its users need not relearn them.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

from .errors import InputError

if TYPE_CHECKING:  # the subcommands import these when they run (a fast --help)
    from .snp.hashes import KernelHashes
    from .snp.id_block import IdBlock, SignedIdBlock


def _int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r} (use decimal or 0x-hex)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _int_list(text: str) -> list[int]:
    return [_int(part) for part in text.split(",") if part]


def _hex_bytes(length: int) -> Callable[[str], bytes]:
    def parse(text: str) -> bytes:
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not hex: {text!r}") from None
        if len(value) != length:
            raise argparse.ArgumentTypeError(f"expected {length} bytes ({2 * length} hex digits), got {len(value)}")
        return value

    return parse


_hex48 = _hex_bytes(48)
_hex16 = _hex_bytes(16)


def _add_vcpu(p: argparse.ArgumentParser, *, vcpus_default: int | None = 1) -> None:
    p.add_argument("--vcpus", type=_int, default=vcpus_default, help="number of vCPUs (default %(default)s)")
    p.add_argument("--vcpu-type", help="QEMU CPU model, e.g. EPYC-v4, EPYC-Milan, EPYC-Genoa, EPYC-Turin")
    p.add_argument("--vcpu-sig", type=_int, help="raw CPUID Fn0000_0001_EAX signature instead of a type")
    p.add_argument("--vcpu-family", type=_int)
    p.add_argument("--vcpu-model", type=_int)
    p.add_argument("--vcpu-stepping", type=_int)
    p.add_argument("--guest-features", type=_int, default=0x1,
                   help="SEV_FEATURES of the VMSA (default 0x1; 0x21 = with DebugSwap, host kernels 6.6-6.10)")


def _add_kernel(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel", help="kernel bound through OVMF's kernel-hashes table (needs AmdSev firmware)")
    p.add_argument("--initrd", help="initrd (only with --kernel)")
    p.add_argument("--append", help="kernel command line (only with --kernel)")


def _signature(args: argparse.Namespace) -> int:
    from .snp.cpu import vcpu_signature

    return vcpu_signature(args.vcpu_type, family=args.vcpu_family, model=args.vcpu_model,
                          stepping=args.vcpu_stepping, signature=args.vcpu_sig)


def _kernel_hashes(args: argparse.Namespace) -> KernelHashes | None:
    from .snp.hashes import from_files

    if args.kernel is None:
        if args.initrd is not None or args.append is not None:
            raise InputError("--initrd and --append are measured only together with --kernel")
        return None
    return from_files(args.kernel, args.initrd, args.append)


def _emit(args: argparse.Namespace, digest: bytes, extra: dict[str, Any]) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"measurement": digest.hex(), **extra}, indent=2))
    elif getattr(args, "output_format", "hex") == "base64":
        print(base64.b64encode(digest).decode())
    else:
        print(digest.hex())


# ---------------------------------------------------------------- measure


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


def _measure_rtmr(args: argparse.Namespace) -> int:
    from .tdx.rtmr import predict

    initrd = _read(args.initrd) if args.initrd else None
    values = predict(_read(args.kernel), initrd, args.append, separator=not args.no_separator)
    if args.json:
        print(json.dumps(values, indent=2))
    else:
        print(f"RTMR1 {values['rtmr1']}\nRTMR2 {values['rtmr2']}")
    return 0


class _EventRow(TypedDict):
    offset: int
    rtmr: int | None
    type: str
    sha384: str
    data_size: int


def _measure_eventlog(args: argparse.Namespace) -> int:
    from .tdx.eventlog import TPM_ALG_SHA384, parse_log, replay

    events = parse_log(_read(args.file))
    rtmrs = replay(events)
    listed: list[_EventRow] = [{"offset": e.offset, "rtmr": e.rtmr, "type": f"{e.type:#x}",
               "sha384": (e.digests.get(TPM_ALG_SHA384) or b"").hex(), "data_size": len(e.data)} for e in events]
    if args.json:
        print(json.dumps({**{f"rtmr{i}": r.hex() for i, r in enumerate(rtmrs)},
                          **({"events": listed} if args.events else {})}, indent=2))
        return 0
    if args.events:
        for e in listed:
            print(f"{e['offset']:#07x} RTMR{e['rtmr']} type {e['type']:>10} {e['sha384'][:32]}... "
                  f"({e['data_size']} bytes)")
    for i, r in enumerate(rtmrs):
        print(f"RTMR{i} {r.hex()}")
    return 0


def _measure_snp(args: argparse.Namespace) -> int:
    # Hashing kernel and initrd (hundreds of MiB; hashlib drops the GIL) overlaps the imports and the
    # firmware parse instead of following them.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        hashes = pool.submit(_kernel_hashes, args)
        from . import ovmf
        from .snp.launch import SnpLaunch, snp_digest
        from .snp.vmsa import Vmm

        fw = ovmf.load(args.ovmf)
        signature = _signature(args)
        kernel_hashes = hashes.result()
    launch = SnpLaunch(args.vcpus, signature, args.guest_features, Vmm(args.vmm_type), kernel_hashes)
    digest = snp_digest(fw, launch, ovmf_hash=args.ovmf_hash)
    _emit(args, digest, {"platform": "snp", "vcpus": args.vcpus, "vcpu_signature": f"{launch.vcpu_signature:#x}",
                         "guest_features": f"{args.guest_features:#x}", "vmm_type": args.vmm_type})
    return 0


def _measure_ovmf_hash(args: argparse.Namespace) -> int:
    from . import ovmf
    from .snp.launch import ovmf_digest

    _emit(args, ovmf_digest(ovmf.load(args.ovmf)).ld, {"platform": "snp", "what": "ovmf-hash"})
    return 0


def _measure_tdx(args: argparse.Namespace) -> int:
    from . import ovmf
    from .tdx.mrtd import tdvf_mrtd

    digest = tdvf_mrtd(ovmf.load(args.ovmf), two_pass=args.two_pass)
    _emit(args, digest, {"platform": "tdx", "register": "mrtd",
                         "page_add_order": "two-pass" if args.two_pass else "single-pass"})
    return 0


def _measure_igvm(args: argparse.Namespace) -> int:
    from . import file as igvm_file
    from .defs import PlatformType

    try:
        igvm = igvm_file.read(args.file)
    except OSError as exc:
        raise InputError(f"cannot read {args.file!r}: {exc.strerror}") from None
    platform = args.platform
    if platform is None:
        kinds = set(igvm.platforms().values())
        if kinds == {PlatformType.SEV_SNP}:
            platform = "snp"
        elif kinds == {PlatformType.TDX}:
            platform = "tdx"
        else:
            raise InputError("the file supports several or no known platforms; choose one with --platform")
    if platform == "snp":
        from .snp.igvm_measure import ZeroPages, measure

        digest = measure(igvm, zero_pages=ZeroPages(args.zero_pages))
    else:
        from .tdx.igvm_mrtd import measure as measure_tdx

        digest = measure_tdx(igvm)
    _emit(args, digest, {"platform": platform, "zero_pages": args.zero_pages if platform == "snp" else None})
    return 0


# ---------------------------------------------------------------- igvm


def _id_block_from_args(args: argparse.Namespace, ld: bytes, policy: int) -> tuple[SignedIdBlock, IdBlock] | None:
    from .snp import id_block as idb

    if args.id_key is None:
        if args.author_key is not None:
            raise InputError("--author-key needs --id-key")
        return None
    block = idb.IdBlock(ld, args.family_id or bytes(16), args.image_id or bytes(16), 1, args.guest_svn, policy)
    author = idb.load_key(args.author_key) if args.author_key else None
    return idb.make(block, idb.load_key(args.id_key), author), block


def _igvm_build(args: argparse.Namespace) -> int:
    from . import build, ovmf
    from . import file as igvm_file

    fw = ovmf.load(args.ovmf)
    summary: dict[str, Any] = {"platform": args.platform, "output": args.output}
    if args.platform == "snp":
        from .snp.launch import SnpLaunch, snp_digest

        spec = build.SnpBuild(args.vcpus, _signature(args), args.guest_features,
                              build.DEFAULT_SNP_POLICY if args.policy is None else args.policy,
                              _kernel_hashes(args))
        ld = snp_digest(fw, SnpLaunch(spec.vcpus, spec.vcpu_signature, spec.guest_features,
                                      kernel_hashes=spec.kernel_hashes))
        signed = _id_block_from_args(args, ld, spec.policy)
        headers = build.snp_headers(fw, spec, signed)
        summary["measurement_qemu_ovmf"] = ld.hex()
        if signed:
            summary["id_key_digest"] = signed[0].id_key_digest.hex()
    else:
        if args.kernel or args.id_key:
            raise InputError("TDX IGVM files bind no kernel hashes and carry no SNP ID block")
        headers = build.tdx_headers(fw, build.DEFAULT_TDX_POLICY if args.policy is None else args.policy)
    try:
        with open(args.output, "wb") as out:
            size = igvm_file.write(headers, out)
    except OSError as exc:
        raise InputError(f"cannot write {args.output!r}: {exc.strerror}") from None
    summary["size"] = size
    summary["headers"] = len(headers)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"wrote {args.output}: {size} bytes, {len(headers)} headers", file=sys.stderr)
    return 0


def _describe(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return value


def _igvm_inspect(args: argparse.Namespace) -> int:
    from . import file as igvm_file
    from .defs import PageDataType, PlatformType

    try:
        igvm = igvm_file.read(args.file)
    except OSError as exc:
        raise InputError(f"cannot read {args.file!r}: {exc.strerror}") from None
    headers = [{"offset": h.offset, "type": h.name, "code": h.code,
                **{k: _describe(v) for k, v in h.fields.items()}} for h in igvm.headers]
    if args.json:
        print(json.dumps({"format_version": igvm.version, "architecture": igvm.architecture,
                          "total_size": igvm.total_size, "headers": headers}, indent=2))
        return 0
    print(f"IGVM v{igvm.version}, {igvm.total_size} bytes, {len(headers)} headers")
    for h in igvm.headers:
        parts = []
        for k, v in h.fields.items():
            if isinstance(v, bytes):
                parts.append(f"{k}={v.hex()[:32]}{'...' if len(v) > 16 else ''}")
            elif k == "platform_type":
                parts.append(f"{k}={PlatformType(v).name if v in PlatformType._value2member_map_ else v}")
            elif k == "data_type":
                parts.append(f"{k}={PageDataType(v).name if v in PageDataType._value2member_map_ else v}")
            else:
                parts.append(f"{k}={v:#x}")
        print(f"{h.offset:#08x} {h.name:<22} {' '.join(parts)}")
    return 0


def _igvm_id_block(args: argparse.Namespace) -> int:
    signed = _id_block_from_args(args, args.measurement, args.policy)
    if signed is None:
        raise InputError("--id-key is required")
    sib = signed[0]
    out = {"id_block": base64.b64encode(sib.block).decode(), "id_auth": base64.b64encode(sib.auth).decode(),
           "id_key_digest": sib.id_key_digest.hex(),
           "author_key_digest": sib.author_key_digest.hex() if sib.author_key_digest else None}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"id-block={out['id_block']},id-auth={out['id_auth']}")
        print(f"id_key_digest: {out['id_key_digest']}")
        if out["author_key_digest"]:
            print(f"author_key_digest: {out['author_key_digest']}")
    return 0


# ---------------------------------------------------------------- reference values


def _reference_values(args: argparse.Namespace) -> int:
    from .reference_values import Inputs, generate

    if args.kernel is None and (args.initrd or args.append):
        raise InputError("--initrd and --append are measured only together with --kernel")
    rtmr0 = [v.hex() for v in args.rtmr0]
    if args.rtmr0_eventlog:
        from .tdx.eventlog import parse_log, replay

        rtmr0 += [replay(parse_log(_read(path)))[0].hex() for path in args.rtmr0_eventlog]
    inputs = Inputs(args.ovmf, args.kernel, args.initrd, args.append, args.tdx_ovmf, args.policy,
                    args.vcpus, args.vcpu_types.split(","), args.guest_features, rtmr0)
    try:
        doc = generate(inputs)
    except OSError as exc:
        raise InputError(f"cannot read {exc.filename!r}: {exc.strerror}") from None
    text = json.dumps(doc, indent=2) + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        with open(args.output, "w") as fh:
            fh.write(text)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter

    measure = sub.add_parser("measure", help="compute launch measurements (SNP digest, TDX MRTD)")
    msub = measure.add_subparsers(dest="what", metavar="PLATFORM")
    msub.required = True

    snp = msub.add_parser("snp", help="SNP launch digest of OVMF [+ kernel] as QEMU launches it",
                          description="Print the SEV-SNP MEASUREMENT of a QEMU launch with -bios OVMF "
                                      "(and kernel-hashes=on when --kernel is given).")
    snp.add_argument("--ovmf", required=True, help="OVMF firmware image (.fd)")
    _add_kernel(snp)
    _add_vcpu(snp)
    snp.add_argument("--vmm-type", choices=["qemu", "ec2", "gce"], default="qemu")
    snp.add_argument("--ovmf-hash", type=_hex48, help="precomputed digest after the flash pages (skips hashing it)")
    snp.add_argument("--output-format", choices=["hex", "base64"], default="hex")
    snp.add_argument("--json", action="store_true", help="print a JSON object")
    snp.set_defaults(handler=_measure_snp)

    oh = msub.add_parser("ovmf-hash", help="SNP digest after the firmware pages only (for --ovmf-hash)")
    oh.add_argument("--ovmf", required=True)
    oh.add_argument("--output-format", choices=["hex", "base64"], default="hex")
    oh.add_argument("--json", action="store_true")
    oh.set_defaults(handler=_measure_ovmf_hash)

    tdx = msub.add_parser("tdx", help="TDX MRTD of a TDVF/OVMF image")
    tdx.add_argument("--ovmf", required=True)
    tdx.add_argument("--two-pass", action="store_true",
                     help="QEMU 8.x TDX trees: add every page of a section before extending (default: "
                          "single pass, as upstream QEMU >= 9)")
    tdx.add_argument("--output-format", choices=["hex", "base64"], default="hex")
    tdx.add_argument("--json", action="store_true")
    tdx.set_defaults(handler=_measure_tdx)

    rt = msub.add_parser("tdx-rtmr", help="TDX RTMR1/RTMR2 of a direct kernel boot (TDVF, QEMU >= 10.1)")
    rt.add_argument("--kernel", required=True, help="the PE kernel QEMU hands TDVF (-kernel)")
    rt.add_argument("--initrd", help="-initrd")
    rt.add_argument("--append", default="", help="-append (TDVF adds ' initrd=initrd' with an initrd)")
    rt.add_argument("--no-separator", action="store_true",
                    help="edk2 before commit efaf893 logged no separator in RTMR1")
    rt.add_argument("--json", action="store_true")
    rt.set_defaults(handler=_measure_rtmr)

    ev = msub.add_parser("eventlog", help="replay a TDX CC event log (CCEL) into RTMR0-3")
    ev.add_argument("file", help="the log (/sys/firmware/acpi/tables/data/CCEL in the guest)")
    ev.add_argument("--events", action="store_true", help="also list every event")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(handler=_measure_eventlog)

    mig = msub.add_parser("igvm", help="SNP digest or TDX MRTD of an IGVM file", formatter_class=fmt)
    mig.add_argument("file")
    mig.add_argument("--platform", choices=["snp", "tdx"], help="platform to measure (default: the file's only one)")
    mig.add_argument("--zero-pages", choices=["normal", "native"], default="normal",
                     help="how data-less pages are measured: 'normal' = NORMAL page of zeros (QEMU's IGVM "
                          "loader, igvm crate); 'native' = SNP ZERO pages (Google's VMM, igvmmeasure "
                          "--native-zero, and QEMU's own -bios OVMF launch)")
    mig.add_argument("--output-format", choices=["hex", "base64"], default="hex")
    mig.add_argument("--json", action="store_true")
    mig.set_defaults(handler=_measure_igvm)

    igvm = sub.add_parser("igvm", help="build and inspect IGVM files")
    isub = igvm.add_subparsers(dest="what", metavar="ACTION")
    isub.required = True
    b = isub.add_parser("build", help="pack OVMF [+ kernel hashes] into an IGVM file", formatter_class=fmt)
    b.add_argument("--platform", choices=["snp", "tdx"], required=True)
    b.add_argument("--ovmf", required=True)
    _add_kernel(b)
    _add_vcpu(b)
    b.add_argument("--policy", type=_int, help="guest policy (SNP default 0x30000, TDX default 0x2)")
    b.add_argument("--id-key", help="P-384 PEM key to sign an SNP ID block with")
    b.add_argument("--author-key", help="P-384 PEM key certifying the ID key")
    b.add_argument("--family-id", type=_hex16)
    b.add_argument("--image-id", type=_hex16)
    b.add_argument("--guest-svn", type=_int, default=0)
    b.add_argument("-o", "--output", required=True)
    b.add_argument("--json", action="store_true", help="print a JSON summary")
    b.set_defaults(handler=_igvm_build)

    ins = isub.add_parser("inspect", help="show every header of an IGVM file")
    ins.add_argument("file")
    ins.add_argument("--json", action="store_true")
    ins.set_defaults(handler=_igvm_inspect)

    idb = isub.add_parser("id-block", help="sign an SNP ID block for a launch digest (QEMU id-block/id-auth)")
    idb.add_argument("--measurement", type=_hex48, required=True, help="launch digest (hex)")
    idb.add_argument("--id-key", required=True)
    idb.add_argument("--author-key")
    idb.add_argument("--policy", type=_int, default=0x30000)
    idb.add_argument("--family-id", type=_hex16)
    idb.add_argument("--image-id", type=_hex16)
    idb.add_argument("--guest-svn", type=_int, default=0)
    idb.add_argument("--json", action="store_true")
    idb.set_defaults(handler=_igvm_id_block)

    rv = sub.add_parser("reference-values", help="write the reference values a verifier should accept",
                        formatter_class=fmt,
                        description="Compute SNP launch digests (per vCPU count, type and guest features) and "
                                    "TDX MRTD for the given boot chain; see docs/reference-values.md.")
    rv.add_argument("--ovmf", required=True, help="firmware for SNP (and TDX unless --tdx-ovmf)")
    _add_kernel(rv)
    rv.add_argument("--tdx-ovmf", help="separate TDVF firmware for TDX")
    rv.add_argument("--vcpus", type=_int_list, default=[1, 2, 4, 8], help="comma-separated vCPU counts")
    rv.add_argument("--vcpu-types", default="EPYC-Milan,EPYC-Genoa", help="comma-separated vCPU types")
    rv.add_argument("--guest-features", type=_int_list, default=[0x1], help="comma-separated SEV_FEATURES")
    rv.add_argument("--policy", type=_int, default=0x30000, help="SNP guest policy to require")
    rv.add_argument("--rtmr0", type=_hex_bytes(48), action="append", default=[], metavar="HEX",
                    help="a TDX RTMR0 recorded from a trusted launch of the same VM shape (RAM, devices, "
                         "firmware, variables); repeatable. RTMR0 is not predicted from the inputs")
    rv.add_argument("--rtmr0-eventlog", action="append", default=[], metavar="CCEL",
                    help="as --rtmr0, replayed from such a launch's CC event log "
                         "(/sys/firmware/acpi/tables/data/CCEL); repeatable")
    rv.add_argument("-o", "--output", help="output file (default: stdout)")
    rv.set_defaults(handler=_reference_values)
