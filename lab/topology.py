"""The standard vipgate lab topology (docs/design.md, "The lab").

::

      client (198.51.100.10/24, 2001:db8:0:2::10/64)
         | eth0 -- c0
      router namespace: br0 192.0.2.1/24 2001:db8:0:1::1/64, c0 198.51.100.1/24 2001:db8:0:2::1/64
         | n1 .. nN (bridge ports)                  | m0 (bridge port, multihop variant only)
      node1..N: eth0 192.0.2.11.., 2001:db8:0:1::11..   mid: eth0 192.0.2.2, far0 203.0.113.129/26
                                                       |
                                                   farK: eth0 203.0.113.130.. (2 hops from router)

The router namespace forwards (IPv4 and IPv6) and hashes multipath per flow
(``fib_multipath_hash_policy=1``). Nodes and the client route everything via the router;
nothing in the lab has a route to the outside and nothing touches the host namespace.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from lab.netns import Lab, python_cmd
from lab.routers import Neighbor, Router, make_router

VIP4 = "203.0.113.100/32"
VIP6 = "2001:db8:100::100/128"
VIP4_ADDR = "203.0.113.100"
VIP6_ADDR = "2001:db8:100::100"
ROUTER_AS = 65001
NODE_AS = 65000
ROUTER_IP4 = "192.0.2.1"
ROUTER_IP6 = "2001:db8:0:1::1"
ROUTER_CLIENT_IP4 = "198.51.100.1"
ROUTER_CLIENT_IP6 = "2001:db8:0:2::1"
CLIENT_IP4 = "198.51.100.10"
CLIENT_IP6 = "2001:db8:0:2::10"
MID_IP4 = "192.0.2.2"
MID_IP6 = "2001:db8:0:1::2"
FAR_NET4 = "203.0.113.128/26"
FAR_NET6 = "2001:db8:0:3::/64"
FAR_GW4 = "203.0.113.129"
FAR_GW6 = "2001:db8:0:3::1"


@dataclass(frozen=True)
class Node:
    """One control-plane node namespace."""

    name: str  # "node1" (also the certificate's node name)
    ns: str  # namespace name
    ip4: str  # 192.0.2.11
    ip6: str  # 2001:db8:0:1::11
    ifname: str = "eth0"
    multihop: bool = False  # behind the intermediate router (2 hops from the router)


def node_ip4(i: int) -> str:
    return f"192.0.2.{10 + i}"


def node_ip6(i: int) -> str:
    return f"2001:db8:0:1::{10 + i}"


@dataclass
class Topology:
    lab: Lab
    router_ns: str
    client_ns: str
    nodes: list[Node]
    router: Router | None = None
    mid_ns: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def node(self, name_or_index: str | int) -> Node:
        """node("node2") or node(2) (1-based)."""
        if isinstance(name_or_index, int):
            return self.nodes[name_or_index - 1]
        for n in self.nodes:
            if n.name == name_or_index:
                return n
        raise KeyError(name_or_index)

    def add_vip(self, node: Node, vip: str = VIP4) -> None:
        """Put the VIP on the node's lo (host scope), as vipgate would."""
        self.lab.ip(node.ns, "addr", "replace", vip, "dev", "lo", "scope", "host")

    def kernel_nexthops(self, prefix: str = VIP4) -> set[str]:
        from lab.routers import kernel_nexthops

        return kernel_nexthops(self.lab, self.router_ns, prefix)

    def ping(self, ns: str, address: str, count: int = 1, timeout: float = 2.0) -> bool:
        """One bounded ping from namespace `ns`; True if answered."""
        cmd = python_cmd("lab.ping", address, "-c", str(count), "-W", str(timeout))
        return self.lab.run(ns, cmd, check=False, timeout=timeout * count + 10).returncode == 0


def build_topology(
    lab: Lab,
    n_nodes: int = 3,
    router_kind: str | None = "bird",
    *,
    start_router: bool = True,
    ipv4_sessions: bool = True,
    ipv6_sessions: bool = False,
    n_multihop: int = 0,
    neighbor_kwargs: dict[str, Any] | None = None,
    router_kwargs: dict[str, Any] | None = None,
    client: bool = True,
) -> Topology:
    """Build the standard lab in `lab`; optionally configure and start the router.

    router_kind: "bird" (default, kernel ECMP), "frr", "gobgp" or None (no router daemon).
    Neighbors: one per node and address family (node AS 65000, router AS 65001); routers also
    connect actively unless neighbor_kwargs={"passive": True}. `neighbor_kwargs` apply to every
    neighbor (password, hold_time, as4, ...). `n_multihop` adds nodes far0..farK behind an
    intermediate router namespace; their neighbors get multihop=2.
    """
    if not 1 <= n_nodes + n_multihop <= 60:
        raise ValueError("between 1 and 60 nodes")
    r = lab.add_netns("r")
    lab.sysctl(
        r,
        {
            "net.ipv4.ip_forward": "1",
            "net.ipv6.conf.all.forwarding": "1",
            "net.ipv4.fib_multipath_hash_policy": "1",
        },
    )
    lab.sysctl(r, {"net.ipv6.fib_multipath_hash_policy": "1"}, check=False)
    lab.bridge(r, "br0")
    lab.addr(r, "br0", f"{ROUTER_IP4}/24")
    lab.addr(r, "br0", f"{ROUTER_IP6}/64")
    links: list[tuple[str, str]] = []
    nodes: list[Node] = []
    for i in range(1, n_nodes + 1):
        name = f"node{i}"
        ns = lab.add_netns(name)
        lab.veth(r, f"n{i}", ns, "eth0")
        lab.set_master(r, f"n{i}", "br0")
        lab.addr(ns, "eth0", f"{node_ip4(i)}/24")
        lab.addr(ns, "eth0", f"{node_ip6(i)}/64")
        lab.route(ns, "default", "via", ROUTER_IP4)
        lab.route(ns, "default", "via", ROUTER_IP6)
        links += [(r, f"n{i}"), (ns, "eth0")]
        nodes.append(Node(name=name, ns=ns, ip4=node_ip4(i), ip6=node_ip6(i)))
    mid: str | None = None
    if n_multihop:
        mid, mid_links, far_nodes = _add_multihop(lab, r, n_multihop)
        links += mid_links
        nodes += far_nodes
    c = ""
    if client:
        c = lab.add_netns("client")
        links += _link_client(lab, r, c)
    lab.wait_carrier(links)
    topo = Topology(lab=lab, router_ns=r, client_ns=c, nodes=nodes, mid_ns=mid)
    if router_kind is not None:
        topo.router = make_standard_router(
            topo,
            router_kind,
            ipv4_sessions=ipv4_sessions,
            ipv6_sessions=ipv6_sessions,
            neighbor_kwargs=neighbor_kwargs,
            **(router_kwargs or {}),
        )
        if start_router:
            topo.router.start()
    return topo


def _add_multihop(
    lab: Lab, r: str, n_multihop: int
) -> tuple[str, list[tuple[str, str]], list[Node]]:
    """The intermediate router namespace and nodes far0..farK behind it (2 hops from `r`)."""
    links: list[tuple[str, str]] = []
    nodes: list[Node] = []
    mid = lab.add_netns("mid")
    lab.sysctl(mid, {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"})
    lab.veth(r, "m0", mid, "eth0")
    lab.set_master(r, "m0", "br0")
    lab.addr(mid, "eth0", f"{MID_IP4}/24")
    lab.addr(mid, "eth0", f"{MID_IP6}/64")
    lab.route(mid, "default", "via", ROUTER_IP4)
    lab.route(mid, "default", "via", ROUTER_IP6)
    lab.bridge(mid, "br1")
    lab.addr(mid, "br1", f"{FAR_GW4}/26")
    lab.addr(mid, "br1", f"{FAR_GW6}/64")
    lab.route(r, FAR_NET4, "via", MID_IP4)
    lab.route(r, FAR_NET6, "via", MID_IP6)
    links += [(r, "m0"), (mid, "eth0")]
    for k in range(n_multihop):
        name = f"far{k}"
        ns = lab.add_netns(name)
        lab.veth(mid, f"f{k}", ns, "eth0")
        lab.set_master(mid, f"f{k}", "br1")
        ip4 = str(ipaddress.ip_address(FAR_GW4) + 1 + k)
        ip6 = str(ipaddress.ip_address(FAR_GW6) + 1 + k)
        lab.addr(ns, "eth0", f"{ip4}/26")
        lab.addr(ns, "eth0", f"{ip6}/64")
        lab.route(ns, "default", "via", FAR_GW4)
        lab.route(ns, "default", "via", FAR_GW6)
        links += [(mid, f"f{k}"), (ns, "eth0")]
        nodes.append(Node(name=name, ns=ns, ip4=ip4, ip6=ip6, multihop=True))
    return mid, links, nodes


def _link_client(lab: Lab, r: str, c: str) -> list[tuple[str, str]]:
    """The client namespace `c` on its own segment behind the router `r`."""
    lab.veth(r, "c0", c, "eth0")
    lab.addr(r, "c0", f"{ROUTER_CLIENT_IP4}/24")
    lab.addr(r, "c0", f"{ROUTER_CLIENT_IP6}/64")
    lab.addr(c, "eth0", f"{CLIENT_IP4}/24")
    lab.addr(c, "eth0", f"{CLIENT_IP6}/64")
    lab.route(c, "default", "via", ROUTER_CLIENT_IP4)
    lab.route(c, "default", "via", ROUTER_CLIENT_IP6)
    return [(r, "c0"), (c, "eth0")]


def node_neighbors(
    topo: Topology,
    *,
    ipv4_sessions: bool = True,
    ipv6_sessions: bool = False,
    neighbor_kwargs: dict[str, Any] | None = None,
) -> list[Neighbor]:
    """The router's neighbor list for the topology's nodes."""
    kw = dict(neighbor_kwargs or {})
    out: list[Neighbor] = []
    for n in topo.nodes:
        nkw = dict(kw)
        if n.multihop:
            nkw.setdefault("multihop", 2)
        if ipv4_sessions:
            out.append(Neighbor(n.ip4, nkw.pop("asn", NODE_AS), **nkw))
            nkw = dict(kw)
            if n.multihop:
                nkw.setdefault("multihop", 2)
        if ipv6_sessions:
            out.append(Neighbor(n.ip6, nkw.pop("asn", NODE_AS), **nkw))
    return out


def make_standard_router(
    topo: Topology,
    kind: str = "bird",
    *,
    ipv4_sessions: bool = True,
    ipv6_sessions: bool = False,
    neighbor_kwargs: dict[str, Any] | None = None,
    name: str = "router",
    **kwargs: Any,
) -> Router:
    """A router driver for the router namespace, peering with every node (not started)."""
    neighbors = node_neighbors(
        topo,
        ipv4_sessions=ipv4_sessions,
        ipv6_sessions=ipv6_sessions,
        neighbor_kwargs=neighbor_kwargs,
    )
    static: list[tuple[str, str]] = []
    if topo.mid_ns is not None:
        static = [(FAR_NET4, MID_IP4), (FAR_NET6, MID_IP6)]
    kwargs.setdefault("asn", ROUTER_AS)
    kwargs.setdefault("router_id", ROUTER_IP4)
    if kind == "bird":
        kwargs.setdefault("static_routes", static)
    return make_router(kind, topo.lab, topo.router_ns, neighbors=neighbors, name=name, **kwargs)


def add_peer_router(
    topo: Topology,
    kind: str = "bird",
    index: int = 1,
    *,
    start: bool = True,
    ipv4_sessions: bool = True,
    ipv6_sessions: bool = False,
    neighbor_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Router:
    """One more router on the node segment, in its own namespace ``rtr<index>``.

    Addresses 192.0.2.(4+index)/24 and 2001:db8:0:1::(4+index)/64 (index 1..9), AS 65001 unless
    given, peering with every node like the main router. For "several routers at once" tests;
    the node's default route stays via the main router. The driver is returned (started unless
    start=False); it is also stored in topo.extra["routers"].
    """
    if not 1 <= index <= 9:
        raise ValueError("index 1..9")
    lab = topo.lab
    ns = lab.add_netns(f"rtr{index}")
    lab.veth(topo.router_ns, f"p{index}", ns, "eth0")
    lab.set_master(topo.router_ns, f"p{index}", "br0")
    ip4, ip6 = peer_router_ip4(index), peer_router_ip6(index)
    lab.addr(ns, "eth0", f"{ip4}/24")
    lab.addr(ns, "eth0", f"{ip6}/64")
    lab.wait_carrier([(topo.router_ns, f"p{index}"), (ns, "eth0")])
    neighbors = node_neighbors(
        topo,
        ipv4_sessions=ipv4_sessions,
        ipv6_sessions=ipv6_sessions,
        neighbor_kwargs=neighbor_kwargs,
    )
    kwargs.setdefault("asn", ROUTER_AS)
    kwargs.setdefault("router_id", ip4)
    r = make_router(kind, lab, ns, neighbors=neighbors, name=f"rtr{index}-{kind}", **kwargs)
    if start:
        r.start()
    topo.extra.setdefault("routers", []).append(r)
    return r


def peer_router_ip4(index: int) -> str:
    return f"192.0.2.{4 + index}"


def peer_router_ip6(index: int) -> str:
    return f"2001:db8:0:1::{4 + index}"


def node_speaker(
    topo: Topology,
    node: Node,
    kind: str = "bird",
    *,
    asn: int = NODE_AS,
    peer_as: int = ROUTER_AS,
    peers: tuple[str, ...] = (ROUTER_IP4,),
    originate: tuple[str, ...] = (VIP4,),
    ipv6: bool = False,
    start: bool = True,
    name: str | None = None,
    **neighbor_kwargs: Any,
) -> Router:
    """A reference BGP speaker (BIRD or GoBGP) in a node namespace announcing `originate`.

    A stand-in for vipgate's speaker: proves routers accept sessions, and serves as the
    benchmark reference. With ipv6=True it also peers with the router's IPv6 address; that
    neighbor is multihop so BIRD sends only the global IPv6 next hop (as vipgate does; FRR
    without zebra cannot use a link-local one). GoBGP announces `originate` after start.
    """
    neighbors = [Neighbor(a, peer_as, **neighbor_kwargs) for a in peers]
    if ipv6:
        neighbors.append(Neighbor(ROUTER_IP6, peer_as, **{"multihop": 2, **neighbor_kwargs}))
    kw: dict[str, Any] = {}
    if kind == "bird":
        kw["kernel_export"] = False
    r = make_router(
        kind,
        topo.lab,
        node.ns,
        asn=asn,
        router_id=node.ip4,
        name=name or f"speaker-{node.name}",
        neighbors=neighbors,
        originate=originate,
        **kw,
    )
    if start:
        r.start()
    return r


def node_daemon(
    topo: Topology,
    node: Node,
    kind: str,
    table: int,
    *,
    ipv6: bool = False,
    name: str | None = None,
    start: bool = True,
    **neighbor_kwargs: Any,
) -> Router:
    """The node's own BGP daemon beside vipgate in routing-table mode (docs/routers.md, "Node
    daemon"): it peers with the router from the node's address and exports the routes vipgate
    writes into kernel table `table`. `neighbor_kwargs` go to each :class:`Neighbor` (its
    timers: hold_time, keepalive).

    BIRD 2 learns the table (IPv4 and IPv6) and exports through the metric filter; with
    ipv6=True it also peers with the router's IPv6 address (multihop, so BIRD sends the global
    next hop, as :func:`node_speaker` does). FRR 8.4 imports the table (IPv4 only) and
    redistributes the VIP's connected route beside it.
    """
    if kind == "bird":
        neighbors = [Neighbor(ROUTER_IP4, ROUTER_AS, **neighbor_kwargs)]
        if ipv6:
            neighbors.append(Neighbor(ROUTER_IP6, ROUTER_AS, **{"multihop": 2, **neighbor_kwargs}))
        kw: dict[str, Any] = {"kernel_export": False, "learn_table": table}
    elif kind == "frr":
        if ipv6:
            raise ValueError("FRR 8.4 cannot import an IPv6 kernel table")
        neighbors = [Neighbor(ROUTER_IP4, ROUTER_AS, **{"families": (4,), **neighbor_kwargs})]
        kw = {"import_table": table, "export_connected": (VIP4,)}
    else:
        raise ValueError(f"node daemon {kind!r}: bird or frr")
    r = make_router(
        kind,
        topo.lab,
        node.ns,
        asn=NODE_AS,
        router_id=node.ip4,
        neighbors=neighbors,
        name=name or f"{kind}-{node.name}",
        graceful_shutdown=False,
        **kw,
    )
    if start:
        r.start()
    return r
