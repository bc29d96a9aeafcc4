"""launcher/qmp.py against a QMP peer of the test's own on a unix socket: the commands a hotplug sends, in
order, and every way an answer can be wrong ending in QmpError (never an uncaught exception)."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launcher.qemu import Image, LaunchError, Machine, Nic
from launcher.qmp import Qmp, QmpError, hotplug_disk

GREETING = b'{"QMP": {"version": {"qemu": {"major": 8}}, "capabilities": []}}\n'
Answer = Callable[[dict[str, object]], bytes]


class FakeQmp:
    """Serves one client: the greeting, then for each command line what ``answer`` makes of it."""

    def __init__(self, path: Path, answer: Answer, greeting: bytes = GREETING) -> None:
        self.seen: list[dict[str, object]] = []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(str(path))
        self.srv.listen(1)
        self.srv.settimeout(10)
        self.answer, self.greeting = answer, greeting
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.srv.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            conn.sendall(self.greeting)
            buf = b""
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    cmd = json.loads(line)
                    self.seen.append(cmd)
                    reply = self.answer(cmd)
                    if not reply:  # hang up
                        return
                    try:
                        conn.sendall(reply)
                    except OSError:
                        return

    def close(self) -> None:
        self.srv.close()
        self.thread.join(10)


@pytest.fixture
def qmp(tmp_path: Path) -> Iterator[Callable[..., tuple[Path, FakeQmp]]]:
    made: list[FakeQmp] = []

    def start(answer: Answer, greeting: bytes = GREETING) -> tuple[Path, FakeQmp]:
        path = tmp_path / f"qmp{len(made)}.sock"
        made.append(FakeQmp(path, answer, greeting))
        return path, made[-1]

    yield start
    for f in made:
        f.close()


def ok(cmd: dict[str, object]) -> bytes:
    return b'{"event": "DEVICE_ADDED", "data": {}}\n{"return": {}}\n'


def test_hotplug_adds_the_block_node_then_the_device(qmp: Callable[..., tuple[Path, FakeQmp]], tmp_path: Path) -> None:
    path, fake = qmp(ok)
    hotplug_disk(tmp_path / "layer.img", path, "layer3", timeout=5)
    assert [c["execute"] for c in fake.seen] == ["qmp_capabilities", "blockdev-add", "device_add"]
    node = fake.seen[1]["arguments"]
    assert node == {"driver": "raw", "node-name": "hp-layer3", "read-only": True,
                    "file": {"driver": "file", "filename": str(tmp_path / "layer.img"), "read-only": True}}
    assert fake.seen[2]["arguments"] == {"driver": "virtio-blk-pci", "id": "dev-layer3", "drive": "hp-layer3",
                                         "serial": "layer3"}


def test_a_refused_device_gives_its_block_node_back(qmp: Callable[..., tuple[Path, FakeQmp]], tmp_path: Path) -> None:
    def answer(cmd: dict[str, object]) -> bytes:
        if cmd["execute"] == "device_add":
            return b'{"error": {"class": "GenericError", "desc": "Bus \'pci.0\' does not support hotplugging"}}\n'
        return b'{"return": {}}\n'

    path, fake = qmp(answer)
    with pytest.raises(QmpError, match=re.escape("device_add: GenericError: Bus 'pci.0' does not support hotplugging")):
        hotplug_disk(tmp_path / "layer.img", path, "layer1", timeout=5)
    assert [c["execute"] for c in fake.seen][-1] == "blockdev-del"
    assert fake.seen[-1]["arguments"] == {"node-name": "hp-layer1"}


@pytest.mark.parametrize(("greeting", "answer", "message"), [
    (b'{"hello": 1}\n', b"", "no greeting"),
    (GREETING, b"not json\n", "not JSON"),
    (GREETING, b'{"return": {}, "return": {}}\n', "not JSON"),  # duplicate keys refused
    (GREETING, b"[1, 2]\n", "not an object"),
    (GREETING, b'{"what": 1}\n', "unexpected answer"),
    (GREETING, b'{"return": "' + b"x" * (1 << 21), "longer than 1 MiB"),
])
def test_what_is_not_qmp_is_refused(qmp: Callable[..., tuple[Path, FakeQmp]], greeting: bytes, answer: bytes,
                                    message: str) -> None:
    path, _ = qmp(lambda cmd: answer, greeting)
    with pytest.raises(QmpError, match=message):
        Qmp(path, timeout=5)


def test_a_peer_that_hangs_up_is_an_error(qmp: Callable[..., tuple[Path, FakeQmp]]) -> None:
    path, _ = qmp(lambda cmd: b"" if cmd["execute"] == "query-status" else b'{"return": {}}\n')
    with Qmp(path, timeout=5) as q, pytest.raises(QmpError, match="QEMU closed the socket"):
        q.execute("query-status")


def test_no_socket_is_an_error_after_the_timeout(tmp_path: Path) -> None:
    with pytest.raises(QmpError, match=r"QMP socket .*absent\.sock"):
        Qmp(tmp_path / "absent.sock", timeout=0.3)
    assert isinstance(QmpError("x"), LaunchError)  # the shim's handlers catch LaunchError


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_any_answer_is_a_value_or_qmp_error(tmp_path_factory: pytest.TempPathFactory, junk: bytes) -> None:
    path = tmp_path_factory.mktemp("q") / "q.sock"
    fake = FakeQmp(path, lambda cmd: junk + b"\n" if cmd["execute"] == "query-status" else b'{"return": {}}\n')
    try:
        with Qmp(path, timeout=2) as q:
            try:
                got = q.execute("query-status")
            except QmpError:
                return
        # an answer taken must have been one line holding a JSON object with a "return" member
        line = junk.split(b"\n", 1)[0]
        assert json.loads(line)["return"] == got
    finally:
        fake.close()


def test_machine_argv_puts_qemu_in_the_pods_namespace_with_its_nic(tmp_path: Path) -> None:
    (tmp_path / "cmdline").write_text("console=ttyS0")
    m = Machine(Image(tmp_path), sim_config=tmp_path / "sim.json", qmp_socket=tmp_path / "qmp.sock",
                nics=[Nic("tap0_kata", "4e:dc:cc:79:ef:c3")], netns="/run/netns/cni-1")
    argv = m.argv()
    assert argv[:3] == ["nsenter", "--net=/run/netns/cni-1", "--"] and argv[3] == "qemu-system-x86_64"
    assert argv[argv.index("-qmp") + 1] == f"unix:{tmp_path / 'qmp.sock'},server=on,wait=off"
    assert argv[argv.index("-netdev") + 1] == "tap,id=net0,ifname=tap0_kata,script=no,downscript=no"
    assert argv[argv.index("-device", argv.index("-netdev")) + 1] == "virtio-net-pci,netdev=net0,mac=4e:dc:cc:79:ef:c3"
    plain = Machine(Image(tmp_path), sim_config=tmp_path / "sim.json").argv()
    assert plain[0] == "qemu-system-x86_64" and "-qmp" not in plain and "-netdev" not in plain


@pytest.mark.parametrize(("nic", "message"), [
    (Nic("tap0", "4E:DC:CC:79:EF:C3"), "MAC"),
    (Nic("tap0", "4e:dc:cc:79:ef"), "MAC"),
    (Nic("tap0,script=/bin/evil", "4e:dc:cc:79:ef:c3"), "tap name"),
    (Nic("a" * 16, "4e:dc:cc:79:ef:c3"), "tap name"),
])
def test_a_nic_that_would_smuggle_options_is_refused(tmp_path: Path, nic: Nic, message: str) -> None:
    (tmp_path / "cmdline").write_text("console=ttyS0")
    with pytest.raises(LaunchError, match=message):
        Machine(Image(tmp_path), sim_config=tmp_path / "sim.json", nics=[nic]).argv()
