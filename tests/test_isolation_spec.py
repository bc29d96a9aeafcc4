"""What config.json says about isolation, whatever the spec asks: PID namespace, network, sysctls (no runtime).

The runc-backed checks of the same guarantees are in test_containers.py.
"""

from __future__ import annotations

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.ocispec import network_sysctls, to_config
from agent.protocols import oci_pb2
from agent.sysctl import SysctlError, per_netns, split

NS_TYPES = ("pid", "network", "ipc", "uts", "mount", "cgroup", "user")


def spec(namespaces: list[dict[str, str]], sysctl: dict[str, str] | None = None) -> oci_pb2.Spec:
    return json_format.ParseDict({"Process": {"Args": ["/pause"]},
                                  "Linux": {"Namespaces": namespaces, "Sysctl": sysctl or {}}}, oci_pb2.Spec())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries({"Type": st.sampled_from(NS_TYPES),
                                       "Path": st.sampled_from(["", "/proc/1/ns/pid", "/proc/self/ns/net"])}),
                max_size=8),
       st.sampled_from(["", "/proc/4242/fd/7"]))
def test_exactly_one_pid_namespace_the_agents_choice(namespaces, pid_ns) -> None:  # type: ignore[no-untyped-def]
    ns = to_config(spec(namespaces), "/r", "/c", pid_ns=pid_ns)["linux"]["namespaces"]
    pids = [n for n in ns if n["type"] == "pid"]
    assert pids == [{"type": "pid", "path": pid_ns} if pid_ns else {"type": "pid"}]
    assert all(n["type"] != "network" for n in ns)
    assert all("path" not in n for n in ns if n["type"] != "pid")  # host-supplied paths never pass


def test_network_sysctls_never_reach_the_runtime() -> None:
    s = spec([{"Type": "ipc"}, {"Type": "uts"}], {"net.ipv4.ip_unprivileged_port_start": "0",
                                                  "kernel.shmmni": "4096", "kernel.domainname": "pod"})
    assert to_config(s, "/r", "/c")["linux"]["sysctl"] == {"kernel.shmmni": "4096", "kernel.domainname": "pod"}
    assert network_sysctls(s) == {"net.ipv4.ip_unprivileged_port_start": "0"}


@pytest.mark.parametrize(("sysctls", "namespaces", "message"), [
    ({"kernel.msgmax": "1"}, set(), "IPC namespace"),
    ({"fs.mqueue.msg_max": "1"}, {"uts"}, "IPC namespace"),
    ({"kernel.domainname": "x"}, {"ipc"}, "UTS namespace"),
    ({"kernel.hostname": "x"}, {"uts"}, "Hostname"),
    ({"kernel.panic": "1"}, {"ipc", "uts"}, "not namespaced"),
    ({"net/ipv4/ip_forward": "1"}, set(), "malformed"),
    ({"net.ipv4..ip_forward": "1"}, set(), "malformed"),
    ({"net.ipv4.conf.all.forwarding/..": "1"}, set(), "malformed"),
    ({"net." + "a" * 300: "1"}, set(), "malformed"),
    ({"net.ipv4.ip_forward": "1\n"}, set(), "malformed value"),
])
def test_sysctls_a_container_may_not_set(sysctls, namespaces, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SysctlError, match=message):
        split(sysctls, namespaces)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=40), st.text(max_size=40), max_size=4),
       st.sets(st.sampled_from(NS_TYPES)))
def test_split_refuses_cleanly_or_returns_checked_keys(sysctls, namespaces) -> None:  # type: ignore[no-untyped-def]
    try:
        runtime, network = split(sysctls, namespaces)
    except SysctlError:
        return
    assert set(runtime) | set(network) == set(sysctls) and not set(runtime) & set(network)
    for key in [*runtime, *network]:
        assert "/" not in key and ".." not in key and "\0" not in key and not key.startswith(".")
    assert all(k.startswith("net.") for k in network)


def test_the_kernel_says_which_net_keys_are_per_namespace() -> None:
    assert per_netns("net.ipv4.ip_unprivileged_port_start")
    assert not per_netns("net.core.netdev_max_backlog")  # a global key: the whole guest's
    assert not per_netns("net.ipv4.no_such_key")


COMPONENTS = st.sampled_from(["a", "b", "..", ".", "", "link", "file", "x\0y", "c,d", "lo:w"])


@settings(max_examples=300, deadline=None)
@given(st.lists(COMPONENTS, max_size=6))
def test_open_dir_stays_below_its_prefix_or_refuses(tmp_path_factory, parts) -> None:  # type: ignore[no-untyped-def]
    """Any path: a StorageError, or a directory that really is below the prefix (no symlink followed)."""
    import os

    from agent.storage import StorageError, open_dir

    base = tmp_path_factory.mktemp("od")
    prefix, outside = base / "shared", base / "outside"
    prefix.mkdir()
    outside.mkdir()
    (prefix / "link").symlink_to(outside)
    (prefix / "file").write_text("")
    try:
        fd = open_dir(str(prefix) + "/" + "/".join(parts), (str(prefix),))
    except StorageError:
        return
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    assert real == str(prefix) or real.startswith(str(prefix) + "/")
    assert list(outside.iterdir()) == []
