"""``cocoon generate`` and ``cocoon manifest diff``: from Kubernetes YAML to what a confidential pod needs.

    cocoon generate --platform sim --reference-values out/reference-values-sim.json [--out DIR] FILES|DIRS
    cocoon manifest diff OLD.json NEW.json [--json]

generate pins every image to a digest, converts its layers to erofs + dm-verity (cached by digest in
``~/.cache/cocoon/layers``), writes each pod's policy into its initdata annotation and the runtime class
into the YAML (in place, or ``--yaml-out DIR``), and writes ``manifest.json``, ``layers.json`` and
``layers/`` into ``--out``. Progress goes to stderr; ``--json`` prints what was generated on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "generate", help="Kubernetes YAML -> pinned images, verity layers, policies in initdata, manifest.json",
        description="For every pod template in the YAML (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, "
                    "CronJob): pin each image to a digest, convert its layers to erofs + dm-verity, generate the "
                    "pod's Rego policy, pack it into CoCo initdata and write the annotation "
                    "io.katacontainers.config.hypervisor.cc_init_data, the runtimeClassName and the pinned images "
                    "back into the YAML. Re-running on the output changes nothing. Nothing is written on error.",
        epilog="images: registries by name (host:port/repo:tag or @sha256:...); --image REF=oci:DIR[:TAG] or "
               "REF=docker-archive:FILE takes one from a local OCI layout or docker-archive instead.")
    p.add_argument("paths", nargs="+", metavar="FILES|DIRS", help="YAML files, or directories of *.yaml/*.yml")
    p.add_argument("--platform", choices=("sim", "snp", "tdx"), default="sim",
                   help="which launch the manifest's ReferenceValues describe (default sim)")
    p.add_argument("--reference-values", metavar="FILE",
                   help="cocoon reference values for the guest image (out/reference-values-sim.json for sim, "
                        "out/reference-values.json for snp/tdx)")
    p.add_argument("--out", type=Path, default=Path("."), metavar="DIR",
                   help="where manifest.json (updated if present), layers.json and layers/ go (default .)")
    p.add_argument("--yaml-out", type=Path, metavar="DIR",
                   help="write the annotated YAML into this directory, not in place")
    p.add_argument("--settings", metavar="FILE", help="policy defaults to use instead of generator/settings.json")
    p.add_argument("--cache", type=Path, metavar="DIR",
                   help="layer cache (default ~/.cache/cocoon, or $XDG_CACHE_HOME/cocoon)")
    p.add_argument("--image", action="append", type=_kv, default=[], metavar="REF=SOURCE",
                   help="take image REF from oci:DIR[:TAG] or docker-archive:FILE (repeatable)")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST:PORT",
                   help="plain HTTP for this registry (loopback addresses only)")
    p.add_argument("--registry-ca", action="append", type=_kv, default=[], metavar="HOST:PORT=PEM",
                   help="verify this registry's TLS certificate against PEM")
    p.add_argument("--auth", metavar="FILE", help="registry credentials, docker config.json format ({\"auths\": ...})")
    p.add_argument("--allow-privileged", action="store_true", help="admit privileged containers (refused by default)")
    p.add_argument("--allow-host-path", action="store_true", help="admit hostPath volumes (refused by default)")
    p.add_argument("--add-initializer", metavar="IMAGE", help="give every pod the coordinator's initializer (this "
                   "image, running `cocoon initializer`) as its first init container, with /contrast shared")
    p.add_argument("--coordinator", metavar="HOST:PORT", help="with --add-initializer: the coordinator's mesh API")
    p.add_argument("--initdata", metavar="FILE", help="an initdata TOML whose [data] entries (aa.toml, cdh.toml: "
                   "the KBS and its certificate) every pod's initdata carries next to its generated policy.rego")
    p.add_argument("--json", action="store_true", help="print what was generated as JSON on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=_generate)

    m = sub.add_parser("manifest", help="inspect manifests", description="Inspect manifest.json files.")
    msub = m.add_subparsers(dest="manifest_command", metavar="COMMAND")
    msub.required = True
    d = msub.add_parser("diff", help="what an update of the manifest changes",
                        description="Say in plain words what NEW trusts that OLD did not and the other way round: "
                                    "pod policies, their names and secrets, launch measurements, owner keys. "
                                    "Exit status 0 when they trust the same, 1 when they differ.")
    d.add_argument("old", metavar="OLD")
    d.add_argument("new", metavar="NEW")
    d.add_argument("--json", action="store_true", help="the changes as JSON")
    d.set_defaults(handler=_diff)


def _generate(args: argparse.Namespace) -> int:
    from generator import generate, images

    sources = images.ImageSources(local=dict(args.image), insecure=frozenset(args.insecure_registry),
                                  ca_files=dict(args.registry_ca), auth_file=args.auth)
    options = generate.Options(platform=args.platform, reference_values=args.reference_values, out=args.out,
                               yaml_out=args.yaml_out, settings=args.settings,
                               allow_privileged=args.allow_privileged, allow_host_path=args.allow_host_path,
                               sources=sources, initializer_image=args.add_initializer,
                               coordinator=args.coordinator, initdata=args.initdata,
                               **({"cache": args.cache} if args.cache else {}))

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"cocoon generate: {msg}", file=sys.stderr, flush=True)

    result = generate.run(args.paths, options, progress)
    if args.json:
        print(json.dumps(generate.summary(result), indent=2))
    else:
        for pod in result.pods:
            print(f"{pod.where}: initdata {pod.initdata_digest}")
        def n(count: int, what: str) -> str:
            return f"{count} {what}{'' if count == 1 else 's'}"

        print(f"{n(len(result.pods), 'pod')}, {n(len(result.layers), 'layer')} ({result.converted} converted), "
              f"manifest {args.out / 'manifest.json'}")
    return 0


def _read_manifest(path: str) -> dict[str, Any]:
    from generator import manifest
    from generator.errors import GenerateError

    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise GenerateError(f"cannot read {path}: {exc.strerror}") from None
    return manifest.load(raw, path)


def _diff(args: argparse.Namespace) -> int:
    from generator import manifest_diff

    changes = manifest_diff.diff(_read_manifest(args.old), _read_manifest(args.new))
    if args.json:
        print(json.dumps(changes, indent=2))
    else:
        for line in manifest_diff.describe(changes) or ["no change: both manifests trust the same pods and launches"]:
            print(line)
    return 1 if any(changes.values()) else 0
