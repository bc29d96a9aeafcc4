"""Guest network configuration RPCs with pyroute2 (imported lazily: most agents never need it).

Shapes and enums are Kata's ``types.proto``: Interface{device, name,
IPAddresses[{family v4=0|v6=1, address, mask (prefix length)}], mtu, hwAddr,
type, raw_flags}, Route{dest "a.b.c.d/len" or "" for default, gateway,
device, source, scope, family, flags, mtu (0: none; a route metric, as Kata's
agent sets it)}, ARPNeighbor{toIPAddress, device,
lladdr, state, flags}. As in Kata's agent, UpdateInterface finds the link by
its MAC address (the host knows MACs, not guest names), then renames it,
sets the MTU, replaces its addresses and brings it up; UpdateRoutes replaces
the routes on the links it names.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, TypeVar

from agent.errors import AgentError
from agent.protocols import agent_pb2, types_pb2

T = TypeVar("T")

V4, V6 = types_pb2.v4, types_pb2.v6
MAIN_TABLE = 254
RTPROT_KERNEL = 2


class NetworkError(AgentError):
    """A network change the kernel refused or the request did not describe."""


def _ipr() -> Any:
    try:
        from pyroute2 import IPRoute
    except ImportError as exc:
        raise NetworkError(f"pyroute2 is not installed: {exc}") from None
    return IPRoute()


def _family(f: int) -> int:
    return socket.AF_INET6 if f == V6 else socket.AF_INET


def _prefix(mask: str, family: int) -> int:
    try:
        n = int(mask)
    except ValueError:
        raise NetworkError(f"mask {mask!r} is not a prefix length") from None
    if not 0 <= n <= (128 if family == V6 else 32):
        raise NetworkError(f"prefix length {n} out of range")
    return n


def _netlink(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # pyroute2 raises NetlinkError (an OSError) and ValueError
        raise NetworkError(f"{what}: {exc}") from None


def _interface(ipr: Any, link: Any) -> types_pb2.Interface:
    index = link["index"]
    addrs = []
    for a in ipr.get_addr(index=index):
        addrs.append(types_pb2.IPAddress(family=V6 if a["family"] == socket.AF_INET6 else V4,
                                         address=a.get("address") or "", mask=str(a["prefixlen"])))
    kind = ""
    info = link.get("linkinfo") or link.get("IFLA_LINKINFO")
    if info is not None:
        kind = info.get("kind") or info.get("IFLA_INFO_KIND") or ""
    return types_pb2.Interface(device=link.get("ifname") or "", name=link.get("ifname") or "", IPAddresses=addrs,
                               mtu=link.get("mtu") or 0, hwAddr=link.get("address") or "", type=kind,
                               raw_flags=link["flags"])


class Network:
    def UpdateInterface(self, req: agent_pb2.UpdateInterfaceRequest, ctx: Any) -> types_pb2.Interface:
        want = req.interface
        if not want.hwAddr:
            raise NetworkError("UpdateInterface needs hwAddr to find the link")
        with _ipr() as ipr:
            found = ipr.link_lookup(address=want.hwAddr.lower())
            if not found:
                raise NetworkError(f"no link with MAC address {want.hwAddr}")
            index = found[0]
            _netlink("link down", ipr.link, "set", index=index, state="down")
            changes: dict[str, Any] = {}
            if want.name:
                changes["ifname"] = want.name
            if want.mtu:
                changes["mtu"] = want.mtu
            if changes:
                _netlink(f"configure link {want.name}", ipr.link, "set", index=index, **changes)
            for a in ipr.get_addr(index=index):
                _netlink("remove old address", ipr.addr, "del", index=index, address=a.get("address"),
                         prefixlen=a["prefixlen"])
            for addr in want.IPAddresses:
                _netlink(f"add address {addr.address}/{addr.mask}", ipr.addr, "add", index=index,
                         address=addr.address, prefixlen=_prefix(addr.mask, addr.family))
            _netlink("link up", ipr.link, "set", index=index, state="up")
            return _interface(ipr, ipr.get_links(index)[0])

    def UpdateRoutes(self, req: agent_pb2.UpdateRoutesRequest, ctx: Any) -> agent_pb2.Routes:
        routes = list(req.routes.Routes)
        with _ipr() as ipr:
            index: dict[str, int] = {}
            for r in routes:
                if r.device not in index:
                    found = ipr.link_lookup(ifname=r.device)
                    if not found:
                        raise NetworkError(f"route names unknown device {r.device!r}")
                    index[r.device] = found[0]
            for idx in set(index.values()):  # replace: drop what is not the kernel's own
                for old in ipr.get_routes(table=MAIN_TABLE, oif=idx):
                    if old["proto"] != RTPROT_KERNEL:
                        _netlink("remove old route", ipr.route, "del", **_route_key(old))
            # routes without a gateway first: a gateway must be reachable when its route is added
            for r in sorted(routes, key=lambda r: bool(r.gateway)):
                spec: dict[str, Any] = {"oif": index[r.device], "family": _family(r.family), "table": MAIN_TABLE}
                if r.dest and r.dest != "default":
                    dst, _, plen = r.dest.partition("/")
                    spec["dst"] = dst
                    spec["dst_len"] = int(plen) if plen else (128 if r.family == V6 else 32)
                if r.gateway:
                    spec["gateway"] = r.gateway
                if r.source:
                    spec["prefsrc"] = r.source
                if r.scope:
                    spec["scope"] = r.scope
                if r.mtu:
                    spec["metrics"] = {"mtu": r.mtu}
                _netlink(f"add route {r.dest or 'default'} via {r.gateway or r.device}", ipr.route, "add", **spec)
        return self.ListRoutes(agent_pb2.ListRoutesRequest(), ctx)

    def ListInterfaces(self, req: Any, ctx: Any) -> agent_pb2.Interfaces:
        with _ipr() as ipr:
            return agent_pb2.Interfaces(Interfaces=[_interface(ipr, link) for link in ipr.get_links()])

    def ListRoutes(self, req: Any, ctx: Any) -> agent_pb2.Routes:
        out = []
        with _ipr() as ipr:
            names = {link["index"]: link.get("ifname") for link in ipr.get_links()}
            for family in (socket.AF_INET, socket.AF_INET6):
                for r in ipr.get_routes(family=family, table=MAIN_TABLE):
                    dst = r.get("dst")
                    out.append(types_pb2.Route(
                        dest=f"{dst}/{r['dst_len']}" if dst else "", gateway=r.get("gateway") or "",
                        device=names.get(r.get("oif"), "") or "", source=r.get("prefsrc") or "",
                        scope=r["scope"], family=V6 if family == socket.AF_INET6 else V4, flags=r["flags"],
                        mtu=_route_mtu(r)))
        return agent_pb2.Routes(Routes=out)

    def AddARPNeighbors(self, req: agent_pb2.AddARPNeighborsRequest, ctx: Any) -> Any:
        from google.protobuf import empty_pb2

        with _ipr() as ipr:
            for n in req.neighbors.ARPNeighbors:
                found = ipr.link_lookup(ifname=n.device)
                if not found:
                    raise NetworkError(f"neighbor names unknown device {n.device!r}")
                _netlink(f"add neighbor {n.toIPAddress.address}", ipr.neigh, "replace", dst=n.toIPAddress.address,
                         lladdr=n.lladdr, ifindex=found[0], state=n.state or 0x80, flags=n.flags,
                         family=_family(n.toIPAddress.family))
        return empty_pb2.Empty()


def _route_mtu(r: Any) -> int:
    metrics = r.get_attr("RTA_METRICS")
    mtu = metrics.get_attr("RTAX_MTU") if metrics is not None else None
    return int(mtu or 0)


def _route_key(r: Any) -> dict[str, Any]:
    key = {"table": MAIN_TABLE, "family": r["family"], "dst_len": r["dst_len"], "oif": r.get("oif")}
    if r.get("dst"):
        key["dst"] = r.get("dst")
    if r.get("gateway"):
        key["gateway"] = r.get("gateway")
    return key
