"""The pause rootfs the image ships at /usr/share/cocoon/pause: what a pod's sandbox container runs.

A sandbox (pause) container only holds the pod's namespaces; its root
filesystem must not come from the host (a host-written directory would be
an unmeasured program inside the pod), so the agent runs this tree, part of
the measured root, instead (Kata's guest ships /pause_bundle for the same
reason). Its content: the Debian busybox-static binary the image already
installs (pinned in image/packages.lock) and ``/pause``, a shell script that
waits until SIGTERM or SIGINT. As PID 1 of a shared PID namespace it also
reaps what is reparented to it: busybox ash's ``wait`` collects any child,
not only its own job. Everything is written with fixed content and modes,
so the tree is the same bytes on every build.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

IMAGE_PATH = "usr/share/cocoon/pause"
APPLETS = ("sh", "sleep")
PAUSE = """#!/bin/sh
# cocoon pause: hold the pod's namespaces until SIGTERM or SIGINT. As PID 1 of the pod's PID namespace it
# reaps orphans too: busybox ash's wait collects every child that exits, not only the job it waits for.
trap 'exit 0' TERM INT
while :; do
    sleep 2147483647 &
    wait $!
done
"""


def make_pause_rootfs(dest: Path, busybox: str = "/usr/bin/busybox") -> Path:
    """Write the pause tree at ``dest`` (replacing what is there) from a static ``busybox``."""
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    (dest / "bin").mkdir(parents=True)
    shutil.copyfile(busybox, dest / "bin" / "busybox")
    os.chmod(dest / "bin" / "busybox", 0o755)
    for applet in APPLETS:
        os.symlink("busybox", dest / "bin" / applet)
    (dest / "pause").write_text(PAUSE)
    os.chmod(dest / "pause", 0o755)
    for d in (dest, dest / "bin"):
        os.chmod(d, 0o755)
    return dest
