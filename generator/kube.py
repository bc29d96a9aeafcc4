"""Kubernetes YAML in and out: find every pod template, and write what the generator decided back into it.

The documents are loaded with ruamel.yaml's round-trip loader, so what goes back out keeps the user's
comments, key order and quoting; only the three things the generator owns change (the initdata
annotation, the runtime class, the pinned images). A repeated key in a mapping is an error, as every
JSON from outside is: two readers of the same file must not see two different pods.

``KINDS`` is the one table of what the generator understands: where each workload kind keeps its pod
template. Kinds that carry no pod pass through untouched; anything else is refused, because a pod the
generator did not see would run without a policy.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from generator.errors import GenerateError
from generator.model import PodTemplate

#: kind -> path from the document to its pod template ("" = the document is the pod)
KINDS: Mapping[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
#: kinds with no pod in them: kept as they are
PASS_THROUGH = frozenset({
    "ConfigMap", "Secret", "Service", "ServiceAccount", "Namespace", "PersistentVolumeClaim", "PersistentVolume",
    "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "Ingress", "NetworkPolicy", "RuntimeClass",
    "PodDisruptionBudget", "HorizontalPodAutoscaler", "LimitRange", "ResourceQuota", "StorageClass", "Endpoints",
    "EndpointSlice", "PriorityClass",
})
#: annotation holding the pod's initdata (Kata's KATA_ANNO_CFG_HYPERVISOR_INIT_DATA, genpolicy yaml.rs)
INITDATA_ANNOTATION = "io.katacontainers.config.hypervisor.cc_init_data"
# Contrast's pod-role annotation (its generate reads it to mark the coordinator's pod): the manifest entry of
# that pod's policy gets ``Role: coordinator``, and a relying party finds the coordinator's initdata there.
ROLE_ANNOTATION = "contrast.edgeless.systems/pod-role"
ROLES = ("coordinator",)
CONTAINER_LISTS = ("initContainers", "containers")
SUFFIXES = (".yaml", ".yml")


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.allow_duplicate_keys = False
    y.width = 4096  # never fold a long line (a base64 annotation) differently from run to run
    return y


@dataclass
class YamlFile:
    """One input file: its documents (live ruamel nodes) and the text they were read from."""

    path: Path
    text: str
    documents: list[Any]

    def render(self) -> str:
        out = io.StringIO()
        y = _yaml()
        y.explicit_start = self.text.lstrip().startswith("---")
        y.dump_all(self.documents, out)
        return out.getvalue()


def expand(paths: Sequence[str]) -> list[Path]:
    """FILES|DIRS -> the YAML files, directories walked in sorted order (so two runs see the same sequence)."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                found += [Path(root) / f for f in sorted(files) if f.endswith(SUFFIXES)]
        elif p.is_file():
            found.append(p)
        else:
            raise GenerateError(f"{raw}: no such file or directory")
    if not found:
        raise GenerateError(f"no YAML files (*.yaml, *.yml) in {', '.join(paths)}")
    unique: dict[Path, Path] = {}
    for f in found:  # a file named twice (directly and through its directory) is read once
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


def load(path: Path) -> YamlFile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GenerateError(f"{path}: cannot read: {exc}") from None
    return parse(text, path)


def parse(text: str, path: Path) -> YamlFile:
    """The documents of ``text`` (read from ``path``), each a mapping, or a GenerateError naming the file."""
    try:
        docs = list(_yaml().load_all(text))
    except YAMLError as exc:
        raise GenerateError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    except (ValueError, TypeError, RecursionError) as exc:  # the constructor's own complaints (bad tags, ...)
        raise GenerateError(f"{path}: not valid YAML: {exc}") from None
    except (IndexError, KeyError, AttributeError) as exc:  # ruamel's constructor stumbling (e.g. "+_" as an int)
        raise GenerateError(f"{path}: not valid YAML: the loader failed on it ({type(exc).__name__}: {exc})") from None
    kept = [d for d in docs if d is not None]
    for i, doc in enumerate(kept):
        if not isinstance(doc, Mapping):
            raise GenerateError(f"{path}: document {i}: expected a Kubernetes object (a mapping), got {_kind_of(doc)}")
        _no_surrogates(doc, f"{path}: document {i}")
    return YamlFile(path, text, kept)


def _no_surrogates(doc: Any, where: str) -> None:
    """A "\\ud800" escape loads as a lone surrogate, which no UTF-8 output (policy, initdata) can hold: refused
    here, naming the document, rather than failing as an encoding error once everything is computed. Each node
    is visited once (aliases share nodes), without recursion."""
    seen: set[int] = set()
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise GenerateError(f"{where}: the string {node[:40]!r} holds a lone surrogate (a \\uD800-\\uDFFF "
                                    "escape), which is not text") from None
        elif isinstance(node, Mapping | list | tuple | set) and id(node) not in seen:
            seen.add(id(node))
            stack.extend([*node.keys(), *node.values()] if isinstance(node, Mapping) else node)


def _kind_of(value: Any) -> str:
    for kind, label in ((bool, "a boolean"), (str, "a string"), (int, "a number"), (float, "a number"),
                        (list, "a list"), (Mapping, "a mapping")):
        if isinstance(value, kind):  # ruamel's CommentedSeq is a list, its ScalarFloat a float, ...
            return label
    return type(value).__name__


def _get(doc: Any, path: Sequence[str], where: str) -> Any:
    node = doc
    for i, key in enumerate(path):
        if not isinstance(node, Mapping) or key not in node:
            raise GenerateError(f"{where}: missing {'.'.join(path[:i + 1])}")
        node = node[key]
    if not isinstance(node, Mapping):
        raise GenerateError(f"{where}: {'.'.join(path) or 'document'} must be a mapping, got {_kind_of(node)}")
    return node


def _str_field(node: Mapping[str, Any], key: str, where: str, field: str, default: str | None = None) -> str:
    value = node.get(key, default)
    if not isinstance(value, str) or not value:
        raise GenerateError(f"{where}: {field} must be a non-empty string")
    return value


def _header(doc: Mapping[str, Any], source: Path, index: int) -> tuple[str, str, str]:
    where = f"{source}: document {index}"
    kind = doc.get("kind")
    if not isinstance(kind, str) or not kind:
        raise GenerateError(f"{where}: missing kind")
    if not isinstance(doc.get("apiVersion"), str):
        raise GenerateError(f"{where} ({kind}): missing apiVersion")
    meta = doc.get("metadata")
    if not isinstance(meta, Mapping):
        raise GenerateError(f"{where} ({kind}): missing metadata")
    name = _str_field(meta, "name", f"{where} ({kind})", "metadata.name")
    namespace = _str_field(meta, "namespace", f"{where} ({kind} {name})", "metadata.namespace", "default")
    return kind, name, namespace


def _data(doc: Mapping[str, Any], kind: str, where: str) -> dict[str, str]:
    """A ConfigMap's or Secret's values as text (Secret ``data`` is base64)."""
    out: dict[str, str] = {}
    for key in ("data", "stringData") if kind == "Secret" else ("data",):
        section = doc.get(key)
        if section is None:
            continue
        if not isinstance(section, Mapping):
            raise GenerateError(f"{where}: {key} must be a mapping")
        for k, v in section.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise GenerateError(f"{where}: {key}.{k}: values must be strings")
            if kind == "Secret" and key == "data":
                try:
                    v = base64.b64decode(v, validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    raise GenerateError(f"{where}: data.{k}: not base64 of UTF-8 text") from None
            out[k] = v
    return out


def pods(files: Sequence[YamlFile]) -> list[PodTemplate]:
    """Every pod template in ``files``, with the ConfigMaps and Secrets of its namespace (from any input file)."""
    config_maps: dict[str, dict[str, dict[str, str]]] = {}
    secrets: dict[str, dict[str, dict[str, str]]] = {}
    found: list[tuple[YamlFile, int, str, str, str, Any, str]] = []
    for f in files:
        for i, doc in enumerate(f.documents):
            kind, name, namespace = _header(doc, f.path, i)
            where = f"{f.path}: document {i} ({kind} {namespace}/{name})"
            if kind in ("ConfigMap", "Secret"):
                table = config_maps if kind == "ConfigMap" else secrets
                table.setdefault(namespace, {})[name] = _data(doc, kind, where)
            elif kind in KINDS:
                found.append((f, i, kind, name, namespace, _get(doc, KINDS[kind], where), doc["apiVersion"]))
            elif kind not in PASS_THROUGH:
                raise GenerateError(f"{where}: unknown kind {kind!r}: cocoon generate knows the pod kinds "
                                    f"{', '.join(KINDS)} and passes through {', '.join(sorted(PASS_THROUGH))}")
    out: list[PodTemplate] = []
    for f, i, kind, name, namespace, template, api_version in found:
        where = f"{f.path}: document {i} ({kind} {namespace}/{name})"
        prefix = ".".join(KINDS[kind])
        spec = template.get("spec")
        if not isinstance(spec, Mapping):
            raise GenerateError(f"{where}: missing {prefix + '.' if prefix else ''}spec")
        if kind != "Pod":
            if template.get("metadata") is None:
                template["metadata"] = {}
            if not isinstance(template["metadata"], Mapping):
                raise GenerateError(f"{where}: {prefix}.metadata must be a mapping")
        containers = spec.get("containers")
        if not isinstance(containers, list) or not containers:
            raise GenerateError(f"{where}: {prefix + '.' if prefix else ''}spec.containers must be a non-empty list")
        out.append(PodTemplate(str(f.path), i, kind, name, namespace, template["metadata"], spec,
                               config_maps.get(namespace, {}), secrets.get(namespace, {}), api_version))
    return out


def containers(pod: PodTemplate) -> Iterator[tuple[str, int, Any]]:
    """(list name, index, container mapping) for every container of the pod, init containers first."""
    for key in CONTAINER_LISTS:
        entries = pod.spec.get(key) or []
        if not isinstance(entries, list):
            raise GenerateError(f"{pod.where}: spec.{key} must be a list")
        for i, c in enumerate(entries):
            if not isinstance(c, Mapping):
                raise GenerateError(f"{pod.where}: spec.{key}[{i}] must be a mapping")
            yield key, i, c


def role(pod: PodTemplate) -> str:
    """The pod's role from ROLE_ANNOTATION: "" (a workload) or one of ROLES; anything else is refused."""
    annotations = (pod.metadata or {}).get("annotations") or {}
    value = annotations.get(ROLE_ANNOTATION, "") if isinstance(annotations, Mapping) else ""
    if value and value not in ROLES:
        raise GenerateError(f"{pod.where}: annotation {ROLE_ANNOTATION} is {str(value)[:40]!r}; "
                            f"the roles are: {', '.join(ROLES)}")
    return str(value)


def images(pod: PodTemplate) -> list[tuple[str, str]]:
    """(field path, image reference) of every container, in order."""
    out = []
    for key, i, c in containers(pod):
        image = c.get("image")
        if not isinstance(image, str) or not image.strip():
            raise GenerateError(f"{pod.where}: spec.{key}[{i}].image must be a non-empty string")
        out.append((f"spec.{key}[{i}].image", image))
    return out


def annotate(pod: PodTemplate, initdata_b64: str, runtime_class: str, pinned: Mapping[str, str]) -> None:
    """Write the generator's three decisions into the pod template (in place, in the loaded document)."""
    if pod.metadata.get("annotations") is None:
        pod.metadata["annotations"] = {}
    annotations = pod.metadata["annotations"]
    if not isinstance(annotations, MutableMapping):
        raise GenerateError(f"{pod.where}: metadata.annotations must be a mapping")
    annotations[INITDATA_ANNOTATION] = initdata_b64
    pod.spec["runtimeClassName"] = runtime_class
    for _, _, c in containers(pod):
        c["image"] = pinned[c["image"]]


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` whole or not at all (same directory temp file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.cocoon-tmp-{os.getpid()}")
    try:
        # a name anyone could guess: never follow or reuse what is there (a symlink planted at it would make
        # this write land wherever it points)
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise GenerateError(f"{path}: cannot write: {exc.strerror or exc}") from None
