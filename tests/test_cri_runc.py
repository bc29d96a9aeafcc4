"""kubelet's CRI calls against the test containerd with runc (no VM): the client (tests/support/cri.py), the
CNI bridge network in a namespace of the test's own and the orderly clean-up are checked here, where a failure
costs seconds, so that the cocoon scenario (qemu-tests/test_shim_cri.py) fails only for the shim's reasons."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from support import containerd, cri

from shim.protocols import cri_pb2 as pb


@pytest.mark.skipif(containerd.available() is not None, reason=str(containerd.available()))
def test_runc_pod_through_cri_gets_an_address_runs_execs_and_goes(tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
    before = containerd.netns_names()
    with containerd.running(base, network=True) as c:
        c.import_image(cri.pause_image(tmp_path / "pause"), containerd.PAUSE_IMAGE, namespace=containerd.CRI_NAMESPACE)
        app = c.import_image(cri.busybox_image(tmp_path / "app", tag="1.0"), "localhost/app:1.0",
                             namespace=containerd.CRI_NAMESPACE)
        with cri.Cri(c.cri_address) as api:
            assert api.wait_ready().runtime_name == "containerd"
            assert api.image_status(app) is not None
            assert api.image_status("localhost/absent:1.0") is None
            pod = cri.pod_config("runc-pod", log_directory=tmp_path / "logs")
            pod_id = api.run_pod_sandbox(pod)
            status = api.pod_sandbox_status(pod_id, verbose=True)
            assert status.status.state == pb.SANDBOX_READY
            ip = status.status.network.ip
            assert ip.startswith("10.88.0."), status
            info = json.loads(status.info["info"])
            assert info["runtimeHandler"] == ""
            cid = api.create_container(pod_id, cri.container_config("main", app, pod=pod,
                                                                    command=["sh", "-c", "echo hi; sleep 600"]),
                                       pod)
            api.start_container(cid)
            api.wait_container(cid, [pb.CONTAINER_RUNNING])
            got = api.exec_sync(cid, ["sh", "-c", "ip -4 -o addr show eth0; exit 4"])
            assert got.exit_code == 4 and ip in got.stdout.decode(), got
            with pytest.raises(cri.CriError) as denied:
                api.exec_sync("no-such-container", ["true"])
            assert "not found" in denied.value.details, denied.value
            api.stop_pod_sandbox(pod_id)
            assert api.container_status(cid).state == pb.CONTAINER_EXITED
            api.remove_pod_sandbox(pod_id)
            assert api.list_pod_sandboxes() == []
        netns = c.netns
    assert netns is not None and netns not in containerd.netns_names()
    assert containerd.netns_names() <= before
    assert not list(containerd.CNI_CACHE.glob(f"{netns}-*")), "CNI's result cache keeps an entry of this test's"
    assert containerd.processes_naming(base) == []
    assert containerd.mounts_below(base) == []
    assert not base.exists()
