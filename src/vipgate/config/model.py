"""The loaded configuration: :class:`Config`, frozen, with the values derived from it."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from vipgate.config.peers import NextHopMode, Peer
from vipgate.config.values import IPAddress, IPNetwork, Source, parse_listen, readiness_url
from vipgate.config.vips import host_route, interface_prefix
from vipgate.health.gate import UnhealthyAction


@dataclass(frozen=True)
class RouterIdSource:
    """Where the BGP identifier comes from: an explicit id, an interface, or automatic."""

    explicit: ipaddress.IPv4Address | None = None
    interface: str | None = None

    def describe(self) -> str:
        if self.explicit is not None:
            return f"explicit {self.explicit}"
        if self.interface:
            return f"first IPv4 address of {self.interface}"
        return "first global IPv4 address of the host's interfaces (resolved at start)"


@dataclass(frozen=True)
class Config:
    """The effective, validated configuration. Build it with :func:`vipgate.config.load`."""

    addresses: tuple[IPAddress, ...]  # the VIPs: one, or one IPv4 and one IPv6 (dual stack)
    vip_subnet: tuple[int, ...]  # kube-vip's vip_subnet: lengths on the interface (empty: host)
    vip_interface: str
    cp_enable: bool
    bgp_enable: bool
    bgp_as: int
    bgp_routerid: ipaddress.IPv4Address | None
    bgp_routerinterface: str
    peers: tuple[Peer, ...]
    bgp_sourceip: IPAddress | None
    bgp_sourceif: str
    bgp_hold_time: int
    bgp_keepalive_interval: int
    health_url: str
    health_period: float
    health_timeout: float
    health_threshold: int
    health_ca_path: str
    health_server_name: str
    leader_election: bool
    lb_enable: bool
    svc_enable: bool
    prometheus_server: str
    log_level: str
    prometheus_enable: bool = True
    # Global MP-BGP settings (kube-vip env only); the peers carry the effective values.
    mpbgp_nexthop: NextHopMode | None = None
    mpbgp_ipv4: ipaddress.IPv4Address | None = None
    mpbgp_ipv6: ipaddress.IPv6Address | None = None
    health_fast_period: float = 0.2
    health_success_threshold: int = 1
    health_unhealthy_action: UnhealthyAction = UnhealthyAction.WITHDRAW
    health_shutdown_address: str = ""
    health_shutdown_period: float = 1.0
    bgp_graceful_shutdown: float = 3.0
    bgp_listen: bool = True
    # Client certificate and key the health check presents ("" = none; both or neither).
    health_client_cert_path: str = ""
    health_client_key_path: str = ""
    # Routing-table mode (kube-vip's names): the route's table, type (RTN_*), protocol (RTPROT_*).
    vip_routingtable: bool = False
    vip_routingtableid: int = 198
    vip_routingtabletype: int = 1
    vip_routingprotocol: int = 248
    vip_cleanroutingtable: bool = False
    # Where each setting came from, and the warnings found while loading (for `vipgate config`
    # and the manager's start-up log). Not part of equality.
    sources: Mapping[str, Source] = field(default_factory=dict, compare=False, repr=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def prefixes(self) -> tuple[IPNetwork, ...]:
        """The prefixes announced (over BGP, or into the routing table), one per VIP in
        ``address``'s order: each VIP's host route (/32, /128) whatever ``vip_subnet`` says, as
        kube-vip's BGP mode (``pkg/bgp/peers.go`` ``getPath``)."""
        return tuple(host_route(a) for a in self.addresses)

    @property
    def interface_prefixes(self) -> tuple[IPNetwork, ...]:
        """Each VIP as it goes on ``vip_interface``, in ``address``'s order: the address with
        its ``vip_subnet`` length (kube-vip ``SelectSubnet``; default the host length)."""
        return tuple(interface_prefix(a, self.vip_subnet) for a in self.addresses)

    @property
    def keepalive(self) -> int:
        """Keepalive interval to offer: the configured one, or hold/3; 0 when hold time is 0."""
        if self.bgp_hold_time == 0:
            return 0
        return self.bgp_keepalive_interval or max(1, self.bgp_hold_time // 3)

    @property
    def router_id_source(self) -> RouterIdSource:
        if self.bgp_routerid is not None:
            return RouterIdSource(explicit=self.bgp_routerid)
        if self.bgp_routerinterface:
            return RouterIdSource(interface=self.bgp_routerinterface)
        return RouterIdSource()

    @property
    def not_runnable(self) -> str | None:
        """Why ``vipgate manager`` would refuse to run (exit 2), or None. Not a load error:
        ``vipgate check`` and the manifest generator work without a VIP; ``vipgate config``
        reports it with exit 2 as the manager would."""
        if self.bgp_enable and self.vip_routingtable:
            # kube-vip's manager refuses more than one mode ("multiple kube-vip modes detected").
            return (
                "bgp_enable=true and vip_routingtable=true: one mode only, as in kube-vip; "
                "BGP mode (vipgate's own BGP sessions) or routing-table mode (the node's own "
                "BGP daemon exports the route vipgate writes into table vip_routingtableid)"
            )
        if not self.bgp_enable and not self.vip_routingtable:
            return (
                "bgp_enable is not true and vip_routingtable is not true: set bgp_enable=true "
                "and bgp_peers (BGP mode), or vip_routingtable=true (routing-table mode)"
            )
        if not self.addresses:
            return "no VIP: set address (or vip_address)"
        return None

    @property
    def health_enabled(self) -> bool:
        return bool(self.health_url)

    @property
    def readiness_url(self) -> str:
        """The URL read for the apiserver's announced shutdown ("" = off): the setting, else
        the health URL with ``/livez`` replaced by ``/readyz`` when its path is ``/livez``."""
        return readiness_url(self.health_url, self.health_shutdown_address)

    @property
    def prometheus_listen(self) -> tuple[str, int] | None:
        """(host, port) for the metrics server, or None when disabled (``prometheus_enable``
        false, or ``prometheus_server`` empty: an empty flag). Host "" means all."""
        if not self.prometheus_enable or not self.prometheus_server:
            return None
        return parse_listen(self.prometheus_server)
