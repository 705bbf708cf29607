"""Routing-table mode's core: the VIP routes wanted vs the kernel's, as the fewest changes (pure).

In routing-table mode (kube-vip's ``vip_routingtable``) vipgate speaks no BGP: it writes the VIP
route into a kernel table (``vip_routingtableid``, 198) with its own route protocol
(``vip_routingprotocol``, 248) while the health gate says so, and the node's own BGP daemon
(BIRD's ``protocol kernel { kernel table 198; learn; }``, FRR's ``ip import-table``) exports it.
The shape of the route is kube-vip's (``pkg/vip/address.go``, ``PrepareRoute``): ``dev
vip_interface``, that table and protocol, type unicast (scope universe) or local (scope link);
its prefix is the VIP's host route (/32, /128) as kube-vip's BGP mode announces it, where
kube-vip's table takes the address's length on the interface (``vip_subnet``; the same at
``32,128``). This module compares what the gate wants for each VIP prefix with what netlink reports
and returns the changes to make; :mod:`vipgate.routing.announcer` reads the kernel and carries
them out.

The rules it keeps (docs/configuration.md, "Routing-table mode")
----------------------------------------------------------------
1. Ours is only a route of table ``vip_routingtableid`` with protocol ``vip_routingprotocol``.
   Nothing else -- another table, another protocol, an address that is not the VIP's -- is ever
   in a change.
2. The route state maps to a route metric (RTA_PRIORITY), so the node daemon's export filter
   can turn it into a BGP de-preference (docs/routers.md, "Node daemon"): announced
   :data:`METRIC_ANNOUNCED` (kube-vip's route: no metric; IPv6 reports the kernel's 1024),
   de-preferred :data:`METRIC_DEPREFERRED`, the drain on stop (RFC 8326)
   :data:`METRIC_GRACEFUL_SHUTDOWN`; withdrawn: no route.
3. No churn: a prefix whose route is in the table exactly as wanted gets no change at all
   (a node daemon sees an event only when something differs).
4. Make before break: a wanted route that differs is added (create-or-replace: the kernel
   replaces a route of the same prefix and metric in place), then our other routes of that
   prefix (another metric) are deleted, so the table never lacks the prefix in between.
5. A route of ours for a configured prefix found at start -- left by a vipgate that was killed
   -- is adopted: while the gate has not decided yet (``None``) it stays as it is; an
   announcement that wants it unchanged changes nothing; a withdrawal or the stop deletes it.
6. Withdrawn (``Want.ABSENT``): every route of ours for that prefix is deleted.
7. ``vip_cleanroutingtable`` (``clean=True``): our routes whose prefix is no configured VIP are
   deleted (every VIP of a dual-stack list counts, kube-vip compares ``address`` only); without
   it they are left alone.
8. The VIP address is on the interface only while its route is in the table (kube-vip's
   routing-table mode does the same): it is added before the route, and deleted after the
   route is gone. Only an address vipgate made (its mark: :func:`vipgate.vip.vip_label`) is
   deleted; an address put there by someone else is left alone.
9. Order: address additions, route additions, route deletions, address deletions.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from types import MappingProxyType
from typing import TypeAlias

__all__ = [
    "METRIC_ANNOUNCED",
    "METRIC_DEPREFERRED",
    "METRIC_GRACEFUL_SHUTDOWN",
    "AddressChange",
    "KernelAddress",
    "KernelRoute",
    "RouteChange",
    "TableSettings",
    "Vip",
    "Want",
    "plan",
    "wanted_route",
]

Prefix: TypeAlias = IPv4Network | IPv6Network
IPAddress: TypeAlias = IPv4Address | IPv6Address

RTN_UNICAST = 1
RTN_LOCAL = 2
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
IP6_RT_PRIO_USER = 1024  # what an IPv6 route added with metric 0 reports (net/ipv6/route.c)

METRIC_ANNOUNCED = 0
METRIC_DEPREFERRED = 1000
METRIC_GRACEFUL_SHUTDOWN = 65535


class Want(enum.Enum):
    """What the gate wants for one VIP prefix (rule 2)."""

    ANNOUNCED = "announced"
    DEPREFERRED = "depreferred"
    GRACEFUL_SHUTDOWN = "graceful_shutdown"
    ABSENT = "absent"


METRICS: Mapping[Want, int] = MappingProxyType(
    {
        Want.ANNOUNCED: METRIC_ANNOUNCED,
        Want.DEPREFERRED: METRIC_DEPREFERRED,
        Want.GRACEFUL_SHUTDOWN: METRIC_GRACEFUL_SHUTDOWN,
    }
)
"""Rule 2: the metric of each state with a route (ABSENT has none)."""


@dataclass(frozen=True)
class TableSettings:
    """Where and how the routes are written: the settings plus the interface's index."""

    table: int
    protocol: int
    type: int  # RTN_UNICAST or RTN_LOCAL
    interface: str
    index: int

    @property
    def scope(self) -> int:
        return RT_SCOPE_LINK if self.type == RTN_LOCAL else RT_SCOPE_UNIVERSE


@dataclass(frozen=True)
class Vip:
    """One configured VIP: its address with its length on the interface (``vip_subnet``), and
    the prefix of its route in the table, the host route (/32, /128) whatever that length."""

    address: IPAddress
    prefixlen: int

    @property
    def prefix(self) -> Prefix:
        return ip_network(self.address)


@dataclass(frozen=True)
class KernelRoute:
    """A route as netlink reports it (the fields vipgate compares)."""

    prefix: Prefix
    table: int
    protocol: int
    type: int
    scope: int
    oif: int
    metric: int


@dataclass(frozen=True)
class KernelAddress:
    """An address on the VIP's interface; ``ours`` when it carries vipgate's mark."""

    address: IPAddress
    prefixlen: int
    index: int
    ours: bool


@dataclass(frozen=True)
class RouteChange:
    add: bool  # create-or-replace (True) or delete
    route: KernelRoute
    why: str


@dataclass(frozen=True)
class AddressChange:
    add: bool
    vip: Vip
    why: str


Change: TypeAlias = RouteChange | AddressChange


def wanted_route(s: TableSettings, prefix: Prefix, want: Want) -> KernelRoute:
    """The route rule 2 wants for `prefix` in state `want` (not ABSENT), as the kernel
    reports it."""
    metric = METRICS[want]
    if prefix.version == 6 and metric == 0:
        metric = IP6_RT_PRIO_USER
    return KernelRoute(prefix, s.table, s.protocol, s.type, s.scope, s.index, metric)


def plan(
    s: TableSettings,
    vips: Iterable[Vip],
    wants: Mapping[Prefix, Want | None],
    routes: Iterable[KernelRoute],
    addresses: Iterable[KernelAddress],
    *,
    clean: bool = False,
) -> list[Change]:
    """The changes that bring the kernel to `wants` (rules 1-9); [] when it is there.

    `wants` maps each configured prefix to its state, or None while the gate has not decided
    (rule 5). `routes` may hold any route: only ours (rule 1) are looked at."""
    ours = [r for r in routes if r.table == s.table and r.protocol == s.protocol]
    vip_list = list(vips)
    configured = {v.prefix for v in vip_list}
    addr_add: list[Change] = []
    route_add: list[Change] = []
    route_del: list[Change] = []
    addr_del: list[Change] = []
    have_addr = {(a.address, a.index): a for a in addresses if a.index == s.index}
    for vip in vip_list:
        want = wants.get(vip.prefix)
        if want is None:  # rule 5: undecided, leave it as found
            continue
        mine = [r for r in ours if r.prefix == vip.prefix]
        addr = have_addr.get((vip.address, s.index))
        if want is Want.ABSENT:  # rules 6 and 8
            route_del += [RouteChange(False, r, "withdrawn") for r in mine]
            if addr is not None and addr.ours:
                addr_del.append(AddressChange(False, vip, "its route is withdrawn"))
            continue
        route = wanted_route(s, vip.prefix, want)
        if addr is None:  # rule 8
            addr_add.append(AddressChange(True, vip, f"its route is {want.value}"))
        if route not in mine:  # rules 3 and 4
            route_add.append(RouteChange(True, route, want.value))
        route_del += [
            RouteChange(False, r, f"replaced ({want.value})")
            for r in mine
            if r.metric != route.metric
        ]
    if clean:  # rule 7
        route_del += [
            RouteChange(False, r, "no configured VIP (vip_cleanroutingtable)")
            for r in ours
            if r.prefix not in configured
        ]
    return addr_add + route_add + route_del + addr_del
