"""The test containerd (tests/support/containerd.py): Debian's containerd 1.6 starts with the test's own config,
answers, imports an OCI archive built by tests/support/ociimage.py, knows the ``cocoon`` CRI handler, and
stops leaving no process, mount or directory behind."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from support import containerd, ociimage


@pytest.mark.skipif(containerd.available() is not None, reason=str(containerd.available()))
def test_containerd_starts_imports_and_stops_clean(tmp_path: Path) -> None:
    image = ociimage.build_image(tmp_path / "img", [{"etc": ociimage.Dir(), "etc/hello": b"hi\n"}], tag="1.0")
    base = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
    with containerd.running(base) as c:
        assert c.proc is not None
        pid = c.proc.pid
        name = c.import_image(image, "localhost/hello:1.0")
        listed = c.ctr("images", "ls", "-q").stdout.decode().split()
        assert name in listed
        plugins = c.ctr("plugins", "ls").stdout.decode()
        assert any("cri" in line and "ok" in line for line in plugins.splitlines()), plugins
        # the handler is in the CRI plugin's effective config (ctr has no CRI client; the config is ours)
        assert 'runtime_type = "io.containerd.cocoon.v2"' in (base / "config.toml").read_text()
        # only unix sockets: the config names no TCP address but the CRI streaming server's loopback one
        assert json.dumps(containerd.config_toml(base)).count("127.0.0.1") == 1
    assert not os.path.exists(f"/proc/{pid}")
    assert containerd.processes_naming(base) == []
    assert not base.exists()
    assert containerd.mounts_below(base) == []
