"""Requests for cocoon's test pod (tests/policies/make_policy.py), as the Kata runtime would send them."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from agent.protocols import agent_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent / "policies"))
import make_policy

CPATH = "/run/kata-containers/shared/containers"
POLICY_TEXT = (Path(__file__).resolve().parent / "policies" / "pod.rego").read_text()


def web_spec(container_id: str) -> dict[str, Any]:
    data = make_policy.policy_data()
    web = data["containers"][1]  # type: ignore[index]
    oci = copy.deepcopy(web["OCI"])
    oci["Root"] = {"Path": f"{CPATH}/{container_id}/rootfs", "Readonly": False}
    oci["Annotations"] = {
        **oci["Annotations"],
        "io.kubernetes.cri.image-name": web["image"],
        "io.kubernetes.cri.container-name": "web",
        "io.kubernetes.cri.sandbox-name": "demo-pod",
        "io.kubernetes.cri.sandbox-namespace": "default",
        "io.kubernetes.cri.sandbox-id": "f" * 64,
    }
    proc = oci["Process"]
    proc["Env"] = ["HOSTNAME=demo-pod" if e == "HOSTNAME=$(sandbox-name)" else e for e in proc["Env"]]
    proc["Env"].append("WEB_SERVICE_HOST=100.64.0.10")
    proc["Capabilities"] = {k: (make_policy.DEFAULT_CAPS if v else []) for k, v in proc["Capabilities"].items()}
    mounts = []
    for m in oci["Mounts"]:
        source = m["source"]
        if source.startswith("^"):  # a regex in the policy: the runtime's concrete path
            source = f"{CPATH}/{container_id}-0123456789abcdef-{m['destination'].rsplit('/', 1)[-1]}"
        mounts.append({"destination": m["destination"], "source": source, "type": m["type_"],
                       "options": m["options"]})
    oci["Mounts"] = mounts
    oci["Linux"]["Namespaces"] = [{"Type": ns["Type"], "Path": ""} for ns in oci["Linux"]["Namespaces"]]
    return oci


def web_request(container_id: str = "c0ffee00c0ffee00", **edits: Any) -> agent_pb2.CreateContainerRequest:
    """A CreateContainerRequest the test policy allows; ``edits`` are applied to its JSON first."""
    body: dict[str, Any] = {
        "container_id": container_id,
        "exec_id": container_id,
        "storages": [{
            "driver": "blk",
            "driver_options": [f"cocoon.verity.roothash={make_policy.WEB_LAYER_ROOT_HASH}"],
            "source": "/dev/vdb", "fstype": "erofs", "options": ["ro"],
            "mount_point": f"{CPATH}/{container_id}/layers/0",
        }],
        "OCI": web_spec(container_id),
    }
    for path, value in edits.items():
        node = body
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return json_format.ParseDict(body, agent_pb2.CreateContainerRequest())
