"""The pod's network: CNI's interface in the pod's network namespace, mirrored to the VM through a tap.

Kata's tc-filter model (virtcontainers/network_linux.go, ``tcfilter``), as facts: CNI has put a veth end
(``eth0``) with the pod's address into the namespace containerd created for the pod; the runtime adds a tap
device next to it, redirects every frame arriving on one to the other with a ``u32 match u8 0 0`` filter
and ``mirred egress redirect`` on each ingress qdisc, and gives the guest's NIC the veth's MAC address.
The guest then gets the veth's addresses, MTU and routes through UpdateInterface and UpdateRoutes (the
agent finds the NIC by that MAC, agent/network.py). The pod's address so ends up inside the VM, and the
host namespace keeps none of it.

QEMU runs inside the pod's namespace (``nsenter --net``) and creates the tap itself (no ``script``): a
tap QEMU created disappears when QEMU exits, however it exits, so nothing is left behind even when a
shim is killed. The shim waits for it to appear, then adds the filters. What is read from the namespace
comes from iproute2's JSON output, and is checked before anything is built from it.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TAP = "tap0_kata"  # Kata's name for the first endpoint's tap
SCOPES = {"universe": 0, "global": 0, "site": 200, "link": 253, "host": 254}  # rtnetlink RT_SCOPE_*
V4, V6 = 0, 1  # Kata types.proto IPFamily
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_IFNAME = re.compile(r"[A-Za-z0-9_.@-]{1,15}")


class NetworkError(RuntimeError):
    """The pod's namespace could not be read or wired to the VM."""


@dataclass(frozen=True)
class Address:
    family: int
    address: str
    prefix: int


@dataclass(frozen=True)
class Route:
    dest: str  # "" for the default route
    gateway: str
    scope: int
    family: int


@dataclass(frozen=True)
class PodNetwork:
    """What CNI set up in the pod's namespace, for one interface."""

    netns: str
    device: str
    mac: str
    mtu: int
    addresses: list[Address] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)

    def interface_request(self) -> dict[str, Any]:
        """UpdateInterface (Kata's types.Interface): the guest NIC renamed to the veth's name."""
        return {"interface": {"device": self.device, "name": self.device, "mtu": self.mtu, "hwAddr": self.mac,
                              "IPAddresses": [{"family": a.family, "address": a.address, "mask": str(a.prefix)}
                                              for a in self.addresses]}}

    def routes_request(self) -> dict[str, Any]:
        """UpdateRoutes: the namespace's routes on this interface, link routes first (a gateway needs one)."""
        ordered = sorted(self.routes, key=lambda r: (r.gateway != "", r.dest == ""))
        return {"routes": {"Routes": [{"dest": r.dest, "gateway": r.gateway, "device": self.device,
                                       "scope": r.scope, "family": r.family} for r in ordered]}}


def netns_of(spec: Mapping[str, Any]) -> str | None:
    """The network namespace path the spec names (CRI: the pod's, from CNI); None: none given."""
    linux = spec.get("linux")
    namespaces = linux.get("namespaces") if isinstance(linux, Mapping) else None
    for ns in namespaces if isinstance(namespaces, list) else []:
        if isinstance(ns, Mapping) and ns.get("type") == "network" and isinstance(ns.get("path"), str):
            return str(ns["path"]) or None
    return None


def _in_netns(netns: str, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    try:
        run = subprocess.run(["nsenter", f"--net={netns}", "--", *argv], capture_output=True, text=True,
                             timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetworkError(f"{' '.join(argv)} in {netns}: {exc}") from None
    if check and run.returncode != 0:
        raise NetworkError(f"{' '.join(argv)} in {netns}: {run.stderr.strip() or f'exit {run.returncode}'}")
    return run


def _json(netns: str, *argv: str) -> list[Any]:
    out = _in_netns(netns, "ip", "-j", *argv).stdout
    try:
        doc = json.loads(out or "[]")
    except ValueError as exc:
        raise NetworkError(f"ip -j {' '.join(argv)}: not JSON: {exc}") from None
    if not isinstance(doc, list):
        raise NetworkError(f"ip -j {' '.join(argv)}: not a list")
    return doc


def parse_links(links: list[Any], netns: str) -> PodNetwork | None:
    """The first Ethernet interface with a global address (CNI's ``eth0``), from ``ip -j addr show``."""
    for link in links:
        if not isinstance(link, Mapping) or link.get("link_type") != "ether":
            continue
        name, mac, mtu = link.get("ifname"), link.get("address"), link.get("mtu")
        if not (isinstance(name, str) and _IFNAME.fullmatch(name) and name != TAP):
            continue
        if not (isinstance(mac, str) and _MAC.fullmatch(mac)) or not isinstance(mtu, int) or not 68 <= mtu <= 65535:
            raise NetworkError(f"interface {name!r}: unusable MAC {mac!r} or MTU {mtu!r}")
        addresses = []
        for a in link.get("addr_info") or []:
            if not isinstance(a, Mapping) or a.get("scope") != "global":
                continue
            try:
                ip = ipaddress.ip_address(str(a.get("local")))
                prefix = int(a.get("prefixlen", -1))
            except ValueError:
                raise NetworkError(f"interface {name}: unusable address {a.get('local')!r}") from None
            if not 0 <= prefix <= ip.max_prefixlen:
                raise NetworkError(f"interface {name}: prefix length {prefix} out of range")
            addresses.append(Address(V6 if ip.version == 6 else V4, str(ip), prefix))
        if addresses:
            return PodNetwork(netns, name.split("@", 1)[0], mac, mtu, addresses)
    return None


def parse_routes(routes: list[Any], device: str, family: int) -> list[Route]:
    """The routes on ``device`` from ``ip -j route show``, without those the kernel made for an address
    (the guest's kernel makes the same when UpdateInterface adds it) and without multicast or local ones."""
    out = []
    for r in routes:
        if not isinstance(r, Mapping) or r.get("dev") != device or r.get("type", "unicast") != "unicast":
            continue
        if r.get("protocol") == "kernel":
            continue
        dst, gw = str(r.get("dst", "")), str(r.get("gateway", ""))
        try:
            dest = "" if dst == "default" else str(ipaddress.ip_network(dst, strict=False))
            gateway = str(ipaddress.ip_address(gw)) if gw else ""
        except ValueError:
            raise NetworkError(f"route {dst} via {gw!r} on {device}: not an address") from None
        scope = SCOPES.get(str(r.get("scope", "universe")))
        if scope is None:
            raise NetworkError(f"route {dst} on {device}: unknown scope {r.get('scope')!r}")
        out.append(Route(dest, gateway, scope, family))
    return out


def discover(netns: str) -> PodNetwork | None:
    """The pod's interface, addresses and routes (None: the namespace has only loopback: no network)."""
    net = parse_links(_json(netns, "addr", "show"), netns)
    if net is None:
        return None
    routes = parse_routes(_json(netns, "-4", "route", "show"), net.device, V4)
    routes += parse_routes(_json(netns, "-6", "route", "show"), net.device, V6)
    return PodNetwork(net.netns, net.device, net.mac, net.mtu, net.addresses, routes)


def connect(net: PodNetwork, timeout: float = 30) -> None:
    """Once QEMU created the tap: bring it up and mirror frames between it and the veth, both ways."""
    deadline = time.monotonic() + timeout
    while _in_netns(net.netns, "ip", "link", "show", TAP, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise NetworkError(f"QEMU did not create {TAP} in {net.netns} within {timeout:.0f} s")
        time.sleep(0.1)
    _in_netns(net.netns, "ip", "link", "set", TAP, "mtu", str(net.mtu), "up")
    for src, dst in ((net.device, TAP), (TAP, net.device)):
        _in_netns(net.netns, "tc", "qdisc", "replace", "dev", src, "ingress")
        _in_netns(net.netns, "tc", "filter", "replace", "dev", src, "parent", "ffff:", "protocol", "all", "u32",
                  "match", "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev", dst)


def disconnect(net: PodNetwork) -> None:
    """The veth's ingress qdisc goes (the tap went with QEMU); a namespace already gone is fine."""
    _in_netns(net.netns, "tc", "qdisc", "del", "dev", net.device, "ingress", check=False)
