"""shim/network.py: what is read from a pod's namespace (iproute2's JSON, genuine output below), what the
guest is told (UpdateInterface/UpdateRoutes in the agent's JSON shape), and the tc-filter wiring in a
namespace the test creates, with a tap of its own standing in for the one QEMU would create."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shim import network
from shim.network import V4, Address, NetworkError, PodNetwork, Route

# `ip -j addr show` and `ip -j -4 route show` in a namespace holding a veth pair, one end addressed
LINKS = json.loads(
    '[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK"],"mtu":65536,"link_type":"loopback",'
    '"address":"00:00:00:00:00:00","addr_info":[]},'
    '{"ifindex":2,"link":"eth0","ifname":"vpeer","flags":["UP"],"mtu":1500,"link_type":"ether",'
    '"address":"02:8c:4d:c6:73:fe","addr_info":[{"family":"inet6","local":"fe80::8c:4dff:fec6:73fe",'
    '"prefixlen":64,"scope":"link"}]},'
    '{"ifindex":3,"link":"vpeer","ifname":"eth0","flags":["UP"],"mtu":1450,"link_type":"ether",'
    '"address":"4e:dc:cc:79:ef:c3","addr_info":[{"family":"inet","local":"10.231.0.5","prefixlen":24,'
    '"scope":"global","label":"eth0"},{"family":"inet6","local":"fe80::4cdc:ccff:fe79:efc3","prefixlen":64,'
    '"scope":"link"}]}]')
ROUTES = json.loads(
    '[{"dst":"default","gateway":"10.231.0.1","dev":"eth0","flags":[]},'
    '{"dst":"10.231.0.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"10.231.0.5"},'
    '{"dst":"10.9.0.0/16","dev":"eth0","scope":"link"},'
    '{"type":"multicast","dst":"224.0.0.0/4","dev":"eth0"},'
    '{"dst":"192.168.7.0/24","dev":"vpeer","scope":"link"}]')


def test_the_addressed_ethernet_interface_is_the_pods() -> None:
    net = network.parse_links(LINKS, "/run/netns/p")
    assert net == PodNetwork("/run/netns/p", "eth0", "4e:dc:cc:79:ef:c3", 1450, [Address(V4, "10.231.0.5", 24)])
    assert network.parse_links(LINKS[:2], "/run/netns/p") is None  # link-local only: no pod network


def test_routes_skip_what_the_guest_kernel_makes_itself() -> None:
    routes = network.parse_routes(ROUTES, "eth0", V4)
    assert routes == [Route("", "10.231.0.1", 0, V4), Route("10.9.0.0/16", "", 253, V4)]


def test_requests_in_the_agents_shape() -> None:
    net = PodNetwork("/n", "eth0", "4e:dc:cc:79:ef:c3", 1450, [Address(V4, "10.231.0.5", 24)],
                     network.parse_routes(ROUTES, "eth0", V4))
    assert net.interface_request() == {"interface": {
        "device": "eth0", "name": "eth0", "mtu": 1450, "hwAddr": "4e:dc:cc:79:ef:c3",
        "IPAddresses": [{"family": 0, "address": "10.231.0.5", "mask": "24"}]}}
    # the link route first: a gateway route needs its gateway reachable when it is added
    assert net.routes_request()["routes"]["Routes"] == [
        {"dest": "10.9.0.0/16", "gateway": "", "device": "eth0", "scope": 253, "family": 0},
        {"dest": "", "gateway": "10.231.0.1", "device": "eth0", "scope": 0, "family": 0}]


@pytest.mark.parametrize(("links", "message"), [
    ([{"link_type": "ether", "ifname": "eth0", "address": "zz", "mtu": 1500}], "unusable MAC"),
    ([{"link_type": "ether", "ifname": "eth0", "address": "4e:dc:cc:79:ef:c3", "mtu": 10}], "MTU"),
    ([{"link_type": "ether", "ifname": "eth0", "address": "4e:dc:cc:79:ef:c3", "mtu": 1500,
       "addr_info": [{"scope": "global", "local": "10.0.0.300", "prefixlen": 24}]}], "unusable address"),
    ([{"link_type": "ether", "ifname": "eth0", "address": "4e:dc:cc:79:ef:c3", "mtu": 1500,
       "addr_info": [{"scope": "global", "local": "10.0.0.3", "prefixlen": 33}]}], "prefix length"),
])
def test_unusable_interfaces_are_refused(links: list[Any], message: str) -> None:
    with pytest.raises(NetworkError, match=message):
        network.parse_links(links, "/n")


@pytest.mark.parametrize(("routes", "message"), [
    ([{"dst": "10.0.0.0/33", "dev": "eth0"}], "not an address"),
    ([{"dst": "default", "gateway": "gw", "dev": "eth0"}], "not an address"),
    ([{"dst": "10.0.0.0/8", "dev": "eth0", "scope": "galaxy"}], "unknown scope"),
])
def test_unusable_routes_are_refused(routes: list[Any], message: str) -> None:
    with pytest.raises(NetworkError, match=message):
        network.parse_routes(routes, "eth0", V4)


def test_the_spec_names_the_namespace() -> None:
    spec = {"linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/var/run/netns/cni-1"}]}}
    assert network.netns_of(spec) == "/var/run/netns/cni-1"
    assert network.netns_of({"linux": {"namespaces": [{"type": "network"}]}}) is None
    assert network.netns_of({"linux": "x"}) is None and network.netns_of({}) is None


JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-5, 70000) | st.sampled_from(
    ["ether", "eth0", "global", "link", "kernel", "default", "4e:dc:cc:79:ef:c3", "10.0.0.1", "10.0.0.0/8",
     "fe80::1", "unicast", "x"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["link_type", "ifname", "address", "mtu", "addr_info", "scope", "local", "prefixlen", "dst", "dev",
         "gateway", "type", "protocol"]), inner, max_size=8), max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(st.lists(JSONISH, max_size=4))
def test_any_ip_output_parses_or_is_a_network_error(doc: list[Any]) -> None:
    try:
        net = network.parse_links(doc, "/n")
    except NetworkError:
        net = None
    if net is not None:  # what is taken is usable as it stands
        assert net.device and net.device != network.TAP and 68 <= net.mtu <= 65535 and net.addresses
        assert all(0 <= a.prefix <= (32 if a.family == V4 else 128) for a in net.addresses)
    try:
        routes = network.parse_routes(doc, "eth0", V4)
    except NetworkError:
        return
    assert all(r.scope in network.SCOPES.values() and r.family == V4 for r in routes)
    assert len(routes) <= sum(1 for r in doc if isinstance(r, dict) and r.get("dev") == "eth0")


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def pod_netns() -> Iterator[str]:
    if shutil.which("tc") is None or shutil.which("nsenter") is None:
        pytest.skip("iproute2's tc and util-linux's nsenter are needed")
    name = f"cocoon-t-{uuid.uuid4().hex[:8]}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "vpeer")
        ip("-n", name, "addr", "add", "10.231.0.5/24", "dev", "eth0")
        for dev in ("eth0", "vpeer", "lo"):
            ip("-n", name, "link", "set", dev, "up")
        ip("-n", name, "route", "add", "default", "via", "10.231.0.1")
        yield f"/run/netns/{name}"
    finally:
        ip("netns", "del", name)


def test_a_namespace_is_read_and_wired_to_the_tap_both_ways(pod_netns: str) -> None:
    net = network.discover(pod_netns)
    assert net is not None and net.device == "eth0" and net.addresses == [Address(V4, "10.231.0.5", 24)]
    assert net.routes == [Route("", "10.231.0.1", 0, V4)]
    with pytest.raises(NetworkError, match="did not create tap0_kata"):
        network.connect(net, timeout=0.3)
    # QEMU would create the tap; the test does it the same way (a tun/tap device in the pod's namespace)
    subprocess.run(["nsenter", f"--net={pod_netns}", "--", "ip", "tuntap", "add", network.TAP, "mode", "tap"],
                   check=True)
    network.connect(net, timeout=5)
    for src, dst in (("eth0", network.TAP), (network.TAP, "eth0")):
        shown = subprocess.run(["nsenter", f"--net={pod_netns}", "--", "tc", "filter", "show", "dev", src,
                                "ingress"], check=True, capture_output=True, text=True).stdout
        assert "mirred" in shown and f"to device {dst}" in shown, shown
    network.connect(net, timeout=5)  # again (a retried Create): replaced, not doubled
    network.disconnect(net)
    qdiscs = subprocess.run(["nsenter", f"--net={pod_netns}", "--", "tc", "qdisc", "show", "dev", "eth0"],
                            check=True, capture_output=True, text=True).stdout
    assert "ingress" not in qdiscs
    network.disconnect(net)  # twice is fine


def test_a_namespace_with_only_loopback_has_no_network(tmp_path: Any) -> None:
    if shutil.which("nsenter") is None:
        pytest.skip("util-linux's nsenter is needed")
    name = f"cocoon-t-{uuid.uuid4().hex[:8]}"
    ip("netns", "add", name)
    try:
        assert network.discover(f"/run/netns/{name}") is None
    finally:
        ip("netns", "del", name)
    with pytest.raises(NetworkError, match="in /run/netns/"):
        network.discover(f"/run/netns/{name}")
