"""Network RPCs inside a network namespace the test creates (ip netns, veth)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from agent.rpc import Code, RpcError
from launcher.client import Client
from launcher.localagent import start_agent

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and iproute2")
NS = f"cocoon-test-{os.getpid()}"
MAC = "02:42:ac:11:00:02"
POLICY = """package agent_policy
import future.keywords.if
import future.keywords.in
default UpdateInterfaceRequest := false
UpdateInterfaceRequest if { input.interface.name != "lo" }
default UpdateRoutesRequest := true
default ListInterfacesRequest := true
default ListRoutesRequest := true
default AddARPNeighborsRequest := true
"""


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def agent(tmp_path_factory, sim_chain):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("net")
    ip("netns", "add", NS)
    try:
        ip("link", "add", "cocoon-h0", "type", "veth", "peer", "name", "ceth0", "netns", NS)
        ip("-n", NS, "link", "set", "ceth0", "address", MAC)
        proc = start_agent(tmp, sim_chain, POLICY, wrapper=["ip", "netns", "exec", NS])
        yield proc.address
        err = proc.stop()
        assert "Traceback" not in err, err
    finally:
        subprocess.run(["ip", "link", "del", "cocoon-h0"], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", NS], check=False)


def test_interface_routes_and_neighbors(agent) -> None:  # type: ignore[no-untyped-def]
    with Client(agent) as c:
        iface = c.call("UpdateInterface", {"interface": {
            "name": "eth0", "hwAddr": MAC, "mtu": 1400,
            "IPAddresses": [{"family": "v4", "address": "10.20.0.2", "mask": "24"},
                            {"family": "v6", "address": "fd00:20::2", "mask": "64"}]}})
        assert iface.name == "eth0" and iface.mtu == 1400 and iface.hwAddr == MAC
        assert {(a.address, a.mask) for a in iface.IPAddresses} >= {("10.20.0.2", "24"), ("fd00:20::2", "64")}
        links = json.loads(ip("-j", "-n", NS, "addr", "show", "eth0"))
        assert links[0]["mtu"] == 1400 and "UP" in links[0]["flags"]
        assert {a["local"] for a in links[0]["addr_info"]} >= {"10.20.0.2", "fd00:20::2"}

        routes = c.call("UpdateRoutes", {"routes": {"Routes": [
            {"dest": "", "gateway": "10.20.0.1", "device": "eth0"},
            {"dest": "10.30.0.0/16", "gateway": "10.20.0.1", "device": "eth0", "mtu": 1300}]}})
        dests = {(r.dest, r.gateway, r.device, r.mtu) for r in routes.Routes}
        assert ("", "10.20.0.1", "eth0", 0) in dests and ("10.30.0.0/16", "10.20.0.1", "eth0", 1300) in dests
        table = ip("-n", NS, "route", "show")
        assert "default via 10.20.0.1 dev eth0" in table
        ours = next(line for line in table.splitlines() if line.startswith("10.30.0.0/16 via 10.20.0.1 dev eth0"))
        assert ours.split()[-2:] == ["mtu", "1300"]  # Route.mtu (Kata 492329fc), a route metric

        c.call("AddARPNeighbors", {"neighbors": {"ARPNeighbors": [
            {"toIPAddress": {"address": "10.20.0.1", "mask": "32"}, "device": "eth0",
             "lladdr": "02:42:ac:11:00:01", "state": 128}]}})
        assert "10.20.0.1 dev eth0 lladdr 02:42:ac:11:00:01 PERMANENT" in ip("-n", NS, "neigh", "show")

        listed = c.call("ListInterfaces")
        assert {i.name for i in listed.Interfaces} == {"lo", "eth0"}
        eth0 = next(i for i in listed.Interfaces if i.name == "eth0")
        assert eth0.type == "veth" and eth0.mtu == 1400
        assert any(r.dest == "10.30.0.0/16" for r in c.call("ListRoutes").Routes)


def test_refusals(agent) -> None:  # type: ignore[no-untyped-def]
    with Client(agent) as c:
        with pytest.raises(RpcError) as err:
            c.call("UpdateInterface", {"interface": {"name": "lo", "hwAddr": "00:00:00:00:00:00"}})
        assert err.value.code == Code.PERMISSION_DENIED
        with pytest.raises(RpcError) as err:
            c.call("UpdateInterface", {"interface": {"name": "eth9", "hwAddr": "02:00:00:00:00:99"}})
        assert err.value.code == Code.FAILED_PRECONDITION and "no link with MAC" in err.value.message
        with pytest.raises(RpcError) as err:
            c.call("UpdateRoutes", {"routes": {"Routes": [{"dest": "10.0.0.0/8", "device": "nope0"}]}})
        assert "unknown device" in err.value.message
