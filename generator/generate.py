"""The generator's one pass: YAML -> pods -> pinned images -> verity layers -> policies -> initdata -> outputs.

Everything is computed before anything is written, and every output is replaced whole (same-directory
temporary file and rename), so a bad document, a registry error or a layer that fails to convert leaves
the input YAML and the previous outputs exactly as they were. Images are resolved once per reference
and layers converted once per digest (and cached across runs by digest), so a YAML with ten pods on
one image pays for one conversion.
"""

from __future__ import annotations

import base64
import errno
import gzip
import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator import kube, manifest
from generator.errors import GenerateError
from generator.model import ImageInfo, Layer, PodTemplate

Progress = Callable[[str], None]


def _default_cache() -> Path:
    from generator.layers import default_cache_dir

    return default_cache_dir()


@dataclass(frozen=True)
class Options:
    """What a run needs besides the YAML; ``cocoon generate``'s flags map onto it one to one."""

    platform: str = "sim"
    reference_values: str | None = None  # cocoon reference-values JSON for the platform
    out: Path = Path(".")  # manifest.json, layers.json and layers/ go here
    yaml_out: Path | None = None  # write the annotated YAML here instead of in place
    cache: Path = field(default_factory=lambda: _default_cache())
    settings: str | None = None
    allow_privileged: bool = False
    allow_host_path: bool = False
    sources: Any = None  # generator.images.ImageSources; None = registries only, defaults
    initializer_image: str | None = None  # add the coordinator's initializer to every pod (generator/initializer.py)
    coordinator: str | None = None  # its mesh API, HOST:PORT
    initdata: str | None = None  # an initdata TOML whose [data] (aa.toml, cdh.toml, ...) every pod's initdata carries


@dataclass
class PodResult:
    where: str
    name: str
    initdata_digest: str
    images: list[str]


@dataclass
class Result:
    pods: list[PodResult]
    layers: list[Layer]
    written: list[str]
    converted: int  # layers converted this run (the rest came from the cache)


def initdata_annotation(document: bytes) -> str:
    """base64(gzip(TOML)), as genpolicy writes the annotation; gzip with mtime 0 so the text is reproducible."""
    return base64.b64encode(gzip.compress(document, compresslevel=9, mtime=0)).decode()


def _resolve_images(pods: Sequence[PodTemplate], options: Options, progress: Progress,
                    counter: list[int]) -> dict[str, ImageInfo]:
    from generator import images, layers

    sources = options.sources if options.sources is not None else images.ImageSources()
    out: dict[str, ImageInfo] = {}
    for pod in pods:
        for path, ref in kube.images(pod):
            if ref in out:
                continue
            try:
                image = images.resolve(ref, sources, progress=progress)
            except GenerateError as exc:
                raise GenerateError(f"{pod.where}: {path}: {exc}") from None
            diff_ids = list((image.config.get("rootfs") or {}).get("diff_ids") or [])
            if len(diff_ids) != len(image.layers):
                raise GenerateError(f"{pod.where}: {path}: image {ref}: the config lists {len(diff_ids)} diff_ids "
                                    f"for {len(image.layers)} layers")
            converted = []
            for blob, diff_id in zip(image.layers, diff_ids, strict=True):
                layer = layers.cached(blob.digest, options.cache)
                if layer is None:
                    progress(f"convert {ref}: layer {blob.digest[:19]} ({blob.size / 1e6:.1f} MB)")
                    with image.open_blob(blob) as stream:
                        layer = layers.convert(blob, stream, options.cache, diff_id=diff_id, progress=progress)
                    counter[0] += 1
                converted.append(layer)
            out[ref] = ImageInfo(ref, image.pinned, image.config, tuple(converted))
    return out


def _link_layers(all_layers: Sequence[Layer], options: Options) -> Path:
    """The layer files beside the index (hard links into the cache; a copy across file systems)."""
    from generator import layers

    target = options.out / "layers"
    target.mkdir(parents=True, exist_ok=True)
    for layer in all_layers:
        src = layers.layer_path(layer, options.cache)
        dst = target / layer.file
        if dst.exists() and dst.stat().st_size == layer.size:
            continue
        tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
        try:
            tmp.unlink(missing_ok=True)  # a guessable name: never write through something planted there
            try:
                os.link(src, tmp)
            except OSError as exc:
                if exc.errno == errno.EEXIST:
                    raise
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
                with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                    shutil.copyfileobj(inp, out, 1 << 20)
            os.replace(tmp, dst)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise GenerateError(f"{dst}: cannot write the layer: {exc.strerror or exc}") from None
    return target


def _base_initdata(path: str | None) -> tuple[dict[str, str], str]:
    """(data, algorithm) of ``--initdata FILE``, as Kata's genpolicy takes ``--initdata-path``: the platform
    team's aa.toml / cdh.toml (the KBS to use, its certificate), measured with each pod's policy. Its own
    ``policy.rego``, if any, is replaced by the generated one, and it is read as strictly as the agent reads
    initdata."""
    if path is None:
        return {}, "sha256"
    from agent.errors import InitdataError
    from agent.initdata import parse_document

    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise GenerateError(f"--initdata {path}: cannot read: {exc.strerror or exc}") from None
    try:
        doc = parse_document(raw, f"--initdata {path}")
    except InitdataError as exc:
        raise GenerateError(str(exc)) from None
    return {k: v for k, v in doc.data.items() if k != "policy.rego"}, doc.algorithm


def run(paths: Sequence[str], options: Options, progress: Progress | None = None) -> Result:
    from agent.initdata import render_document
    from generator import layers, policy, settings
    from verifier import refs as refs_mod

    say = progress or (lambda _msg: None)
    cfg = settings.Settings.load(options.settings)
    files = [kube.load(p) for p in kube.expand(paths)]
    if options.yaml_out:  # every file lands as yaml_out/<its name>: two of one name would overwrite each other
        seen: dict[str, Path] = {}
        for f in files:
            if f.path.name in seen:
                raise GenerateError(f"{f.path} and {seen[f.path.name]} would both be written to "
                                    f"{options.yaml_out / f.path.name}: rename one, or run once for each")
            seen[f.path.name] = f.path
    if options.out.exists() and not options.out.is_dir():  # found now, not after every layer is converted
        raise GenerateError(f"--out {options.out}: not a directory")
    if options.yaml_out and options.yaml_out.exists() and not options.yaml_out.is_dir():
        raise GenerateError(f"--yaml-out {options.yaml_out}: not a directory")
    pods = kube.pods(files)
    if not pods:
        raise GenerateError(f"no pods in {', '.join(paths)} (kinds: {', '.join(kube.KINDS)})")
    if options.platform not in manifest.PLATFORMS:
        raise GenerateError(f"unknown platform {options.platform!r} (one of {', '.join(manifest.PLATFORMS)})")
    if options.reference_values is None:
        raise GenerateError("--reference-values FILE is needed for the manifest (make image writes "
                            "out/reference-values.json and out/reference-values-sim.json)")
    try:
        ref_doc = refs_mod.load(options.reference_values)
    except refs_mod.ReferenceValuesError as exc:
        raise GenerateError(str(exc)) from None
    values = manifest.reference_values(ref_doc, options.platform)
    manifest_path = options.out / "manifest.json"
    existing = None
    if manifest_path.exists():
        try:
            raw_manifest = manifest_path.read_bytes()
        except OSError as exc:
            raise GenerateError(f"{manifest_path}: cannot read: {exc.strerror or exc}") from None
        existing = manifest.load(raw_manifest, str(manifest_path))

    if options.initializer_image is not None:
        from generator import initializer

        for pod in pods:
            if kube.role(pod) != "coordinator":  # the coordinator is where identities come from
                initializer.add(pod, options.initializer_image, options.coordinator or "")
    base_data, base_algorithm = _base_initdata(options.initdata)
    counter = [0]
    infos = _resolve_images(pods, options, say, counter)
    results: list[PodResult] = []
    policies: dict[str, tuple[str, list[str]]] = {}
    roles: dict[str, str] = {}
    for pod in pods:
        data = policy.policy_data(pod, infos, cfg, allow_privileged=options.allow_privileged,
                                  allow_host_path=options.allow_host_path)
        document = render_document({**base_data, "policy.rego": policy.render(data)}, base_algorithm)
        digest = hashlib.sha256(document).hexdigest()
        pinned = {ref: infos[ref].pinned for _, ref in kube.images(pod)}
        kube.annotate(pod, initdata_annotation(document), cfg.doc["runtime_class_name"], pinned)
        policies[digest] = (manifest.secret_id(pod.api_version, pod.kind, pod.namespace, pod.name), [pod.name, "*"])
        if kube.role(pod):
            roles[digest] = kube.role(pod)
        results.append(PodResult(pod.where, pod.name, digest, sorted(set(pinned.values()))))
    if len(policies) != len(pods):
        say("note: some pods have identical policies (same spec and images): one manifest entry each policy")

    all_layers = sorted({layer.digest: layer for info in infos.values() for layer in info.layers}.values(),
                        key=lambda lay: lay.digest)
    new_manifest = manifest.update(existing, values, policies, roles)
    rendered = []
    for f in files:
        dest = (options.yaml_out / f.path.name) if options.yaml_out else f.path
        rendered.append((dest, f.render().encode()))

    # Everything is decided: now write, each file whole.
    for d in (options.out, options.out / "layers", *([options.yaml_out] if options.yaml_out else [])):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GenerateError(f"{d}: cannot make the directory: {exc.strerror or exc}") from None
    layer_dir = _link_layers(all_layers, options)
    try:
        layers.write_index(all_layers, options.out / "layers.json")
    except OSError as exc:
        raise GenerateError(f"{options.out / 'layers.json'}: cannot write: {exc.strerror or exc}") from None
    kube.atomic_write(manifest_path, manifest.dumps(new_manifest))
    written = [str(layer_dir), str(options.out / "layers.json"), str(manifest_path)]
    for dest, text in rendered:
        if not dest.exists() or dest.read_bytes() != text:
            kube.atomic_write(dest, text)
        written.append(str(dest))
    return Result(results, all_layers, written, counter[0])


def summary(result: Result) -> dict[str, Any]:
    return {"pods": [{"where": p.where, "name": p.name, "initdata_digest": p.initdata_digest, "images": p.images}
                     for p in result.pods],
            "layers": [{"digest": lay.digest, "root_hash": lay.root_hash, "file": lay.file} for lay in result.layers],
            "converted": result.converted, "written": result.written}

