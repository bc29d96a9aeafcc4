"""The seed's tutorial under QEMU: a coordinator VM, two app VMs and the relying party, on a bridge in a
network namespace the test makes (cocoon/meshdemo.py runs the flow; `cocoon mesh-demo` is the same code).

The coordinator runs as a container of its own confidential pod, its evidence made by its guest; `cocoon
set` attests it before uploading the manifest; each app pod's initializer attests the pod to it and gets
the mesh identity; web calls voting over mutual TLS; `cocoon verify` and `openssl s_client` check from the
host. The key broker runs as a pod too and releases voting's secret only to voting's initdata. An update
(a SAN for web) rotates the mesh CA, so a restarted web and the old voting no longer trust
each other until voting restarts too, and a pod whose initdata is not in the manifest gets nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from cocoon import meshdemo
from launcher.qemu import Image


def test_emojivoto_mesh_of_attested_pods(image: Image, tmp_path: Path, timings: list) -> None:  # type: ignore[type-arg]
    seen = meshdemo.run(image, tmp_path / "mesh", say=print)
    timings.extend(seen["timings"])
    failed = {name for name, ok in meshdemo.judge(seen).items() if not ok}
    assert not failed, (failed, json.dumps({k: v for k, v in seen.items() if k != "timings"}, default=str)[-6000:])
    # what each check rests on, said exactly
    assert seen["vote"] == (200, "web -> voting (mutual TLS): doughnut 1\n"), seen["vote"]
    assert seen["vote2"] == (200, "web -> voting (mutual TLS): doughnut 2\n"), seen["vote2"]
    assert "certificate" in seen["direct"][1].lower() or seen["direct"][0] == 0, seen["direct"]
    assert seen["new_web_old_voting"][0] == 502 and "refused the mesh" in seen["new_web_old_voting"][1]
    assert seen["after_restart"] == (200, "web -> voting (mutual TLS): cat 1\n"), seen["after_restart"]
    code, listing = seen["verify"][0], seen["verify"][2]
    assert code == 0 and {"coordinator-root-ca.pem", "mesh-ca.pem", "manifest.0.json"} <= set(listing), seen["verify"]
    assert any(n.startswith("policy.") and n.endswith(".rego") for n in listing), listing
    assert seen["secret"] == f"voting: secret kbs:///{meshdemo.SECRET_PATH} sha256 {seen['secret_expected']}"
    (status, err), = seen["tampered"].values()
    assert status != 0 and "not found in manifest" in err, err
