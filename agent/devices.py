"""Device names udev would create, found from sysfs when udev has not (or does not run).

The image runs no udev, as Kata's guests do not: under emulation udevd and
its coldplug of every device cost seconds of CPU during boot, and the agent
needs only two of its names: ``/dev/virtio-ports/NAME`` (a virtio-serial
port's name, from ``/sys/class/virtio-ports/vportXpY/name``) and
``/dev/disk/by-id/virtio-SERIAL`` (a virtio-blk disk's serial, from
``/sys/block/vdX/serial``). Both are what udev's own rules read
(systemd ``rules.d/50-udev-default.rules`` for the ports,
``60-persistent-storage.rules`` for the disks). A path that exists is
returned unchanged, so a guest with udev behaves as before.
"""

from __future__ import annotations

import os

PORTS_DIR = "/dev/virtio-ports/"
DISK_BY_ID = "/dev/disk/by-id/virtio-"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def resolve(path: str, sys_root: str = "/sys", dev_root: str = "/dev") -> str:
    """``path``, or the kernel's node for the udev name it spells when the link does not exist."""
    if os.path.exists(path):
        return path
    if path.startswith(PORTS_DIR):
        wanted, table = path[len(PORTS_DIR):], os.path.join(sys_root, "class", "virtio-ports")
        leaf = "name"
    elif path.startswith(DISK_BY_ID):
        wanted, table = path[len(DISK_BY_ID):], os.path.join(sys_root, "block")
        leaf = "serial"
    else:
        return path
    if not wanted or "/" in wanted:
        return path
    try:
        entries = sorted(os.listdir(table))
    except OSError:
        return path
    for entry in entries:
        value = _read(os.path.join(table, entry, leaf))
        # udev's link name has each run of whitespace as one "_" (util_replace_whitespace)
        if value is not None and wanted in (value, "_".join(value.split())):
            return os.path.join(dev_root, entry)
    return path


def await_node(path: str, timeout: float, sys_root: str = "/sys", dev_root: str = "/dev") -> str:
    """``resolve(path)`` once its node exists, waiting up to ``timeout`` seconds for it.

    A disk the runtime hotplugs (a container's layer, added after boot as Kata's runtime adds block
    devices) appears in the guest a moment after the host's device_add returned: the guest kernel probes
    it on the ACPI hotplug event, and no udev here tells anyone. Kata's agent waits for the device's
    uevent with a timeout (``hotplug_timeout``); this polls sysfs, which names the same thing. A name
    that never appears returns unresolved, and opening it fails with the path in the error.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        found = resolve(path, sys_root, dev_root)
        if os.path.exists(found) or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)
