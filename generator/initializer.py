"""`cocoon generate --add-initializer IMAGE --coordinator HOST:7777`: every pod gets the coordinator's
initializer as its first init container, with the shared volume Contrast's pods use (``contrast-secrets``
at ``/contrast``, read-only in the pod's own containers), so it starts with its mesh identity.

The change is made in the pod template itself before the policy is generated, so the policy pins the
initializer (its image, command and mount) like any container, and re-running `cocoon generate` on its
output changes nothing (a pod that has the initializer is left as it is).
"""

from __future__ import annotations

import re
from typing import Any

from generator.errors import GenerateError
from generator.model import PodTemplate

NAME = "coordinator-initializer"
VOLUME = "contrast-secrets"  # Contrast's shared volume name (docs/architecture/components/service-mesh.md)
MOUNT = "/contrast"
_HOST_PORT = re.compile(r"[A-Za-z0-9.-]+:[0-9]{1,5}")


def _list(pod: PodTemplate, key: str) -> list[Any]:
    """``spec.<key>``, made an empty list when absent; GenerateError when it is something else."""
    spec: Any = pod.spec
    value = spec.get(key)
    if value is None:
        value = spec[key] = []
    if not isinstance(value, list):
        raise GenerateError(f"{pod.where}: spec.{key} must be a list")
    return value


def add(pod: PodTemplate, image: str, coordinator: str) -> bool:
    """Add the initializer to ``pod`` unless it has one; whether it was added."""
    if not image:
        raise GenerateError("--add-initializer needs the initializer's image")
    if not _HOST_PORT.fullmatch(coordinator):
        raise GenerateError(f"--coordinator {coordinator!r} is not HOST:PORT (the mesh API, port 7777)")
    spec: Any = pod.spec
    inits = _list(pod, "initContainers")
    if any(isinstance(c, dict) and c.get("name") == NAME for c in inits):
        return False
    volumes = _list(pod, "volumes")
    if any(isinstance(v, dict) and v.get("name") == VOLUME for v in volumes):
        raise GenerateError(f"{pod.where}: the pod already has a volume {VOLUME!r} of its own")
    volumes.append({"name": VOLUME, "emptyDir": {}})
    inits.insert(0, {"name": NAME, "image": image,
                     "command": ["cocoon", "initializer", "--coordinator", coordinator, "--out", MOUNT],
                     "volumeMounts": [{"name": VOLUME, "mountPath": MOUNT}]})
    for c in spec.get("containers") or []:
        if isinstance(c, dict):
            mounts = c.get("volumeMounts")
            if mounts is None:
                mounts = c["volumeMounts"] = []
            if isinstance(mounts, list):
                mounts.append({"name": VOLUME, "mountPath": MOUNT, "readOnly": True})
    return True
