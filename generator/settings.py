"""The generator's settings: facts about the runtime stack a user may have to change (genpolicy-settings.json's role).

``generator/settings.json`` holds the defaults: the shared directory Kata's runtime copies files into
(``common.cpath``), the regex building blocks the rules expand, the capability sets containerd grants, the
pause container, the sandbox's shm storage, the mounts containerd and Kata's runtime add to every container,
the storages emptyDir volumes become, the verity layer storages' fixed fields, the request defaults, the
runtime class and the annotation that adds exec allow-list entries. ``--settings FILE`` replaces the whole
document (no merging: what the policy admits is then read from one file). The file is read strictly (duplicate
keys refused) and every key is checked here, so a typo is an error naming the key, not a silently weaker
policy.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.errors import GenerateError
from verifier import strictjson

DEFAULT_FILE = Path(__file__).resolve().parent / "settings.json"


class SettingsError(GenerateError):
    """A settings file that does not parse or does not have the expected shape."""


Check = Callable[[Any, str], None]


def _fail(where: str, what: str) -> None:
    raise SettingsError(f"settings {where}: {what}")


def _str(value: Any, where: str) -> None:
    if not isinstance(value, str):
        _fail(where, f"must be a string, not {type(value).__name__}")


def _regex(value: Any, where: str) -> None:
    _str(value, where)
    try:
        re.compile(re.sub(r"\$\([a-z_-]+\)", "", value))
    except re.error as exc:
        _fail(where, f"is not a regular expression: {exc}")


def _top_level_branch(pattern: str) -> bool:
    """Does ``pattern`` have a ``|`` outside every group and class (so ``^a|b$`` is ``(^a)|(b$)``)?"""
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            i += 2 if pattern[i + 1:i + 2] == "]" else 3 if pattern[i + 1:i + 3] == "^]" else 1
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            return True
        i += 1
    return False


def _block(value: Any, where: str) -> None:
    """A regex the rules splice into others ($(name)): no top-level alternation, which would unanchor them."""
    _regex(value, where)
    if _top_level_branch(value):
        _fail(where, "has a top-level '|': wrap the alternatives in a group, (a|b)")


def _prefix(value: Any, where: str) -> None:
    """An allow-list regex matched as a prefix: anchored at its start."""
    _block(value, where)
    if not value.startswith(("^", "$(sfprefix)")):
        _fail(where, "must start with '^' (an allow-list pattern is anchored)")


def _anchored(value: Any, where: str) -> None:
    """An allow-list regex matched whole: ^...$, so it admits exactly what it says."""
    _prefix(value, where)
    if not value.endswith("$") or value.endswith("\\$"):
        _fail(where, "must end with '$' (an allow-list pattern is anchored)")


def _env_entry(value: Any, where: str) -> None:
    _str(value, where)
    if "=" not in value or value.startswith("="):
        _fail(where, "must be NAME=value")


def _int(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        _fail(where, "must be an integer from 0 to 2^32-1")


def _bool(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        _fail(where, "must be true or false")


def _list(item: Check) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, list):
            _fail(where, "must be a list")
        for i, v in enumerate(value):
            item(v, f"{where}[{i}]")

    return check


def _map(item: Check) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            _fail(where, "must be an object")
        for k, v in value.items():
            item(v, f"{where}.{k}")

    return check


def _object(fields: Mapping[str, Check], optional: Mapping[str, Check] | None = None) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            _fail(where, "must be an object")
        allowed = {**fields, **(optional or {})}
        for key in value:
            if key not in allowed:
                _fail(f"{where}.{key}", "is not a known setting")
        for key, sub in fields.items():
            if key not in value:
                _fail(f"{where}.{key}", "is missing")
            sub(value[key], f"{where}.{key}")
        for key, sub in (optional or {}).items():
            if key in value:
                sub(value[key], f"{where}.{key}")

    return check


def _null(value: Any, where: str) -> None:
    if value is not None:
        _fail(where, "must be null")


def _any_json(value: Any, where: str) -> None:
    """request_defaults entries are handed to the rules as they are; only their JSON-ness is checked."""


_STRS = _list(_str)
_MOUNT = _object({"destination": _str, "type": _str, "source": _str, "options": _STRS})
_STORAGE = _object({"driver": _str, "driver_options": _STRS, "source": _str, "fstype": _str, "options": _STRS,
                    "mount_point": _str}, {"fs_group": _null})
_VOLUME = _object({"driver": _str, "source": _str, "fstype": _str, "options": _STRS, "mount_point": _str})
_SCHEMA = _object({
    "runtime_class_name": _str,
    "exec_annotation": _str,
    "oci_version": _str,
    "common": _object({"cpath": _str, "sfprefix": _prefix, "ip_p": _block, "ipv4_a": _block, "svc_name": _block,
                       "dns_label": _block, "default_caps": _STRS, "privileged_caps": _STRS,
                       "free_annotations": _list(_prefix)}),
    "layers": _object({"driver": _str, "source": _anchored, "fstype": _str, "options": _STRS, "mount_point": _prefix}),
    "pause_container": _object({"image": _str, "args": _STRS, "env": _list(_env_entry), "uid": _int, "gid": _int,
                                "sysctls": _map(_str)}),
    "default_env": _list(_env_entry),
    "namespaces": _STRS,
    "masked_paths": _STRS,
    "readonly_paths": _STRS,
    "default_mounts": _object({"both": _list(_MOUNT), "pause": _list(_MOUNT), "container": _list(_MOUNT)}),
    "volumes": _object({"emptyDir": _VOLUME, "emptyDir_memory": _VOLUME}),
    "sandbox": _object({"storages": _list(_STORAGE)}),
    "request_defaults": _object({
        "CreateContainerRequest": _object({"allow_env_regex": _list(_anchored)}),
        "CopyFileRequest": _list(_prefix),
        "ExecProcessRequest": _object({"allowed_commands": _list(_STRS), "regex": _list(_anchored)}),
        "UpdateInterfaceRequest": _any_json, "UpdateRoutesRequest": _any_json, "AddARPNeighborsRequest": _any_json,
        "ListInterfacesRequest": _bool, "ListRoutesRequest": _bool, "CloseStdinRequest": _bool,
        "ReadStreamRequest": _bool, "WriteStreamRequest": _bool, "SetPolicyRequest": _bool,
    }),
})


@dataclass(frozen=True)
class Settings:
    """A validated settings document; ``doc`` is the JSON as read (copy before changing it)."""

    doc: Mapping[str, Any]
    source: str

    @classmethod
    def parse(cls, text: str | bytes, source: str) -> Settings:
        try:
            doc = strictjson.loads(text)
        except (ValueError, RecursionError) as exc:
            raise SettingsError(f"settings {source}: not strict JSON: {exc}") from None
        _SCHEMA(doc, source)
        return cls(doc, source)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Settings:
        """The defaults (``path`` None), or the file a ``--settings FILE`` option names."""
        p = Path(path) if path is not None else DEFAULT_FILE
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise SettingsError(f"settings {p}: cannot read: {exc.strerror}") from None
        return cls.parse(data, str(p))

    def __getitem__(self, key: str) -> Any:
        return copy.deepcopy(self.doc[key])

    @property
    def cpath(self) -> str:
        return str(self.doc["common"]["cpath"])
