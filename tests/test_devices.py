"""udev's names for virtio ports and disks, found from sysfs (agent/devices.py): the image runs no udev."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from agent.devices import await_node, resolve


def fake_sys(tmp: Path) -> tuple[str, str]:
    sysfs, dev = tmp / "sys", tmp / "dev"
    for entry, name in (("vport1p1", "org.qemu.guest_agent.0"), ("vport2p1", "cocoon.agent")):
        (sysfs / "class" / "virtio-ports" / entry).mkdir(parents=True)
        (sysfs / "class" / "virtio-ports" / entry / "name").write_text(name + "\n")
    for entry, serial in (("vda", ""), ("vdb", "initdata"), ("vdc", "layer0"), ("vdd", " my  disk ")):
        (sysfs / "block" / entry).mkdir(parents=True)
        (sysfs / "block" / entry / "serial").write_text(serial)
    (sysfs / "block" / "loop0").mkdir()  # no serial file at all
    dev.mkdir()
    return str(sysfs), str(dev)


def test_names_resolve_to_the_kernel_nodes(tmp_path: Path) -> None:
    sysfs, dev = fake_sys(tmp_path)
    assert resolve("/dev/virtio-ports/cocoon.agent", sysfs, dev) == f"{dev}/vport2p1"
    assert resolve("/dev/disk/by-id/virtio-initdata", sysfs, dev) == f"{dev}/vdb"
    assert resolve("/dev/disk/by-id/virtio-layer0", sysfs, dev) == f"{dev}/vdc"
    assert resolve("/dev/disk/by-id/virtio-my_disk", sysfs, dev) == f"{dev}/vdd"  # udev's whitespace rule


def test_unknown_names_and_other_paths_are_returned_unchanged(tmp_path: Path) -> None:
    sysfs, dev = fake_sys(tmp_path)
    for path in ("/dev/virtio-ports/nope", "/dev/disk/by-id/virtio-", "/dev/disk/by-id/virtio-../vdb",
                 "/dev/disk/by-id/virtio-a/b", "/dev/disk/by-id/ata-layer0", "/dev/vdz", "relative"):
        assert resolve(path, sysfs, dev) == path
    assert resolve("/dev/disk/by-id/virtio-layer0", str(tmp_path / "no-sysfs"), dev) == "/dev/disk/by-id/virtio-layer0"


def test_an_existing_path_wins_over_sysfs(tmp_path: Path) -> None:
    sysfs, dev = fake_sys(tmp_path)
    link = tmp_path / "port"
    link.write_text("")
    assert resolve(str(link), sysfs, dev) == str(link)


_FAKE_ROOT = Path(tempfile.mkdtemp(prefix="cocoon-devices-"))  # module-level: the hypothesis tests share it
atexit.register(shutil.rmtree, _FAKE_ROOT, True)  # and it goes with the test run
_SYS, _DEV = fake_sys(_FAKE_ROOT)
KNOWN = {
    "/dev/virtio-ports/cocoon.agent": f"{_DEV}/vport2p1",
    "/dev/virtio-ports/org.qemu.guest_agent.0": f"{_DEV}/vport1p1",
    "/dev/disk/by-id/virtio-initdata": f"{_DEV}/vdb",
    "/dev/disk/by-id/virtio-layer0": f"{_DEV}/vdc",
    "/dev/disk/by-id/virtio-my_disk": f"{_DEV}/vdd",
    "/dev/disk/by-id/virtio-my  disk": f"{_DEV}/vdd",
}


@given(st.sampled_from(["/dev/virtio-ports/", "/dev/disk/by-id/virtio-"]),
       st.text(max_size=30) | st.sampled_from(["cocoon.agent", "initdata", "layer0", "", "vda"]))
def test_only_an_exact_name_resolves(prefix: str, name: str) -> None:
    path = prefix + name
    assert resolve(path, _SYS, _DEV) == KNOWN.get(path, path)


def test_a_hotplugged_disk_is_awaited_until_its_node_exists(tmp_path: Path) -> None:
    """The runtime's device_add returns before the guest probed the disk: the agent waits (bounded) for
    its sysfs entry and node, and a disk that never comes returns unresolved once the time is up."""
    import threading
    import time

    sysfs, dev = fake_sys(tmp_path)

    def plug() -> None:
        time.sleep(0.3)
        (Path(sysfs) / "block" / "vde").mkdir()
        (Path(sysfs) / "block" / "vde" / "serial").write_text("layer7")
        time.sleep(0.2)
        (Path(dev) / "vde").write_bytes(b"")

    t = threading.Thread(target=plug)
    t.start()
    start = time.monotonic()
    assert await_node("/dev/disk/by-id/virtio-layer7", 10, sysfs, dev) == f"{dev}/vde"
    assert 0.4 < time.monotonic() - start < 9
    t.join()
    start = time.monotonic()
    assert await_node("/dev/disk/by-id/virtio-layer8", 0.3, sysfs, dev) == "/dev/disk/by-id/virtio-layer8"
    assert time.monotonic() - start >= 0.3
