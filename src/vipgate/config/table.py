"""The settings table: every kube-vip setting vipgate reads, with how it is read.

Each :class:`Setting` carries its environment names (the first is canonical), its flags, its
default, its kind (the CLI's metavar), its help, whether it is a secret, its parser and the
:class:`~vipgate.config.model.Config` attribute it fills. ``vipgate --help``, ``vipgate config``,
docs/configuration.md's settings table, the manifest generator and :func:`vipgate.config.load`
all read this one table; its order is the order of ``vipgate config`` and of parsing.

A parser takes the setting's raw value and the values parsed before it (by setting key: a
setting may depend only on settings above it) and returns the typed value or raises
:class:`ConfigError`. Checks between settings are :mod:`vipgate.config.rules`'.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vipgate.config import values as v
from vipgate.config import vips
from vipgate.config.peers import (
    NextHopMode,
    Peer,
    PeerError,
    nexthop_mode,
    nexthop_v4,
    nexthop_v6,
    parse_peers_numbered,
)
from vipgate.config.values import ConfigError, IPAddress, Raw, Source, show
from vipgate.health.gate import UnhealthyAction

Parser = Callable[[Raw, Mapping[str, Any]], Any]


def _text(raw: Raw, got: Mapping[str, Any]) -> str:
    return raw.value


@dataclass(frozen=True)
class Setting:
    """One kube-vip setting: its names, default, help, and how its value is read."""

    key: str
    env: tuple[str, ...]
    flags: tuple[str, ...]
    default: str
    help: str
    kind: str = "string"  # string | bool | int | seconds | list (the CLI's metavar)
    secret: bool = False
    parse: Parser = _text
    attr: str | None = None  # the Config attribute it fills (None: it feeds a derived one)

    @property
    def is_bool(self) -> bool:
        return self.kind == "bool"


def _s(
    env: str | tuple[str, ...],
    flags: str | tuple[str, ...],
    default: str,
    help: str,
    kind: str = "string",
    secret: bool = False,
    *,
    parse: Parser = _text,
    attr: str | None = "",
) -> Setting:
    """A table row; ``attr`` "" means the Config attribute of the setting's own name."""
    envs = (env,) if isinstance(env, str) else env
    fl = (flags,) if isinstance(flags, str) else flags
    return Setting(
        envs[0], envs, fl, default, help, kind, secret, parse, envs[0] if attr == "" else attr
    )


# --------------------------------------------------------------------------------------------
# Parsers of single settings (given the settings above them)
# --------------------------------------------------------------------------------------------


def _bool(raw: Raw, got: Mapping[str, Any]) -> bool:
    return v.as_bool(raw)


def _asn(raw: Raw, got: Mapping[str, Any]) -> int:
    return v.as_asn(raw)


def _ifname(raw: Raw, got: Mapping[str, Any]) -> str:
    return v.ifname(raw)


def _seconds(raw: Raw, got: Mapping[str, Any]) -> float:
    return v.seconds(raw)


def _seconds0(raw: Raw, got: Mapping[str, Any]) -> float:
    return v.seconds0(raw)


def _count(raw: Raw, got: Mapping[str, Any]) -> int:
    return v.as_int(raw, 1, 1000, "an integer 1-1000")


# Routing-table mode (kube-vip's pkg/kubevip/config_envvar.go, cmd/kube-vip.go). Kernel values
# from include/uapi/linux/rtnetlink.h: tables 0 (unspec) and 253-255 (default, main, local) are
# the kernel's own; route protocols 0-3 (unspec, redirect, kernel, boot) are the kernel's and
# iproute2's own ("values of protocol >= RTPROT_STATIC are not interpreted by kernel").
RESERVED_TABLES = {0: "unspec", 253: "default", 254: "main", 255: "local"}
RESERVED_PROTOCOLS = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot"}
TABLE_TYPES = {"unicast": 1, "local": 2}  # RTN_UNICAST, RTN_LOCAL
TABLE_ID_HELP = "a routing table id 1-252 (253-255 are the kernel's default, main and local)"
PROTOCOL_HELP = "a route protocol 4-255 (0-3 are the kernel's: unspec, redirect, kernel, boot)"
TABLE_TYPE_HELP = "unicast or local (or kube-vip's numbers: 1 = unicast, 2 = local)"


def _table_id(raw: Raw, got: Mapping[str, Any]) -> int:
    n = v.as_int(raw, 0, 2**32 - 1, TABLE_ID_HELP)
    if n in RESERVED_TABLES or n > 252:
        name = RESERVED_TABLES.get(n)
        why = f"table {n} is the kernel's {name} table" if name else "out of range"
        raise ConfigError(f"{show(raw)}: {why}; accepted: {TABLE_ID_HELP}")
    return n


def _table_type(raw: Raw, got: Mapping[str, Any]) -> int:
    value = raw.value.strip().lower()
    if value in TABLE_TYPES:
        return TABLE_TYPES[value]
    if value in ("1", "2"):
        return int(value)
    raise ConfigError(f"{show(raw)}: not a route type vipgate writes; accepted: {TABLE_TYPE_HELP}")


def _protocol(raw: Raw, got: Mapping[str, Any]) -> int:
    n = v.as_int(raw, 0, 255, PROTOCOL_HELP)
    if n in RESERVED_PROTOCOLS:
        raise ConfigError(
            f"{show(raw)}: protocol {n} is the kernel's ({RESERVED_PROTOCOLS[n]}); "
            f"accepted: {PROTOCOL_HELP}"
        )
    return n


def _address(raw: Raw, got: Mapping[str, Any]) -> tuple[IPAddress, ...]:
    # kube-vip accepts `vip_address` alone (the reference manifest sets it without vip_subnet).
    return vips.parse_addresses(raw)


def _vip_subnet(raw: Raw, got: Mapping[str, Any]) -> tuple[int, ...]:
    return vips.parse_subnet(raw, got["address"])


def _routerid(raw: Raw, got: Mapping[str, Any]) -> ipaddress.IPv4Address | None:
    if not raw.value.strip():
        return None
    rid = v.as_ip(raw, "a non-zero IPv4 address, e.g. 192.0.2.11")
    if not isinstance(rid, ipaddress.IPv4Address) or int(rid) == 0:
        raise ConfigError(f"{show(raw)}: accepted: a non-zero IPv4 address, e.g. 192.0.2.11")
    return rid


def _host(a: IPAddress) -> str:
    return f"[{a}]" if a.version == 6 else str(a)


def _peers(raw: Raw, got: Mapping[str, Any]) -> list[tuple[str, Peer]]:
    """Each peer of ``bgp_peers`` with the words that name it in an error (never its password)."""
    return [
        (f"{raw.name} entry {n} ({_host(p.address)}, AS {p.asn})", p)
        for n, p in parse_peers_numbered(raw)
    ]


def _optional_ip(raw: Raw, got: Mapping[str, Any]) -> IPAddress | None:
    return v.as_ip(raw) if raw.value.strip() else None


def _password(raw: Raw, got: Mapping[str, Any]) -> str:
    problem = v.password_problem(raw.value)
    if problem:
        raise ConfigError(f"{show(raw, True)}: {problem}; accepted: {v.PASSWORD_HELP}")
    return raw.value


def _sourceip(raw: Raw, got: Mapping[str, Any]) -> IPAddress | None:
    if not raw.value.strip():
        return None
    sourceip = v.as_ip(raw)
    problem = v.usable_unicast(sourceip)
    if problem:
        raise ConfigError(
            f"{show(raw)}: {problem}; accepted: a unicast address of this "
            "node, of the peers' address family"
        )
    return sourceip


def _mpbgp_nexthop(raw: Raw, got: Mapping[str, Any]) -> NextHopMode | None:
    try:
        return nexthop_mode(raw.value.strip(), show(raw))
    except PeerError as e:
        raise ConfigError(str(e)) from None


def _mpbgp_ipv4(raw: Raw, got: Mapping[str, Any]) -> ipaddress.IPv4Address | None:
    try:
        return nexthop_v4(raw.value.strip(), show(raw))
    except PeerError as e:
        raise ConfigError(str(e)) from None


def _mpbgp_ipv6(raw: Raw, got: Mapping[str, Any]) -> ipaddress.IPv6Address | None:
    try:
        return nexthop_v6(raw.value.strip(), show(raw))
    except PeerError as e:
        raise ConfigError(str(e)) from None


def _hold(raw: Raw, got: Mapping[str, Any]) -> int:
    hold = v.as_int(raw, 0, 65535, "0 (no keepalives) or 3-65535 seconds (RFC 4271)")
    if hold in (1, 2):
        raise ConfigError(f"{show(raw)}: RFC 4271 forbids 1 and 2; accepted: 0 or 3-65535 seconds")
    return hold


def _keepalive(raw: Raw, got: Mapping[str, Any]) -> int:
    hold: int = got["bgp_hold_time"]
    keepalive = v.as_int(raw, 0, 21845, "0-21845 seconds, below the hold time")
    if hold and keepalive >= hold:
        raise ConfigError(
            f"{show(raw)}: must be below bgp_hold_time={hold}; "
            f"accepted: 0 (hold/3) to {hold - 1} seconds (one third of the hold time is usual)"
        )
    return keepalive


def _health_url(raw: Raw, got: Mapping[str, Any]) -> str:
    return v.url(raw) if raw.value != "" else ""


def _fast_period(raw: Raw, got: Mapping[str, Any]) -> float:
    period: float = got["control_plane_health_check_period_seconds"]
    if raw.source is Source.DEFAULT and float(raw.value) >= period:
        return 0.0  # a period this short needs no fast period; an explicit one must fit
    return v.seconds0(raw, period, "control_plane_health_check_period_seconds")


def _shutdown_address(raw: Raw, got: Mapping[str, Any]) -> str:
    if raw.value != "" and raw.value.strip().lower() != "off":
        return v.url(raw)
    return raw.value


def _ca_path(raw: Raw, got: Mapping[str, Any]) -> str:
    return v.ca_path(raw) if raw.value != "" else ""


def _server_name(raw: Raw, got: Mapping[str, Any]) -> str:
    name = raw.value.strip()
    if name and (any(c.isspace() or c in "/:@" for c in name) or v.host_problem(name)):
        raise ConfigError(
            f"{show(raw)}: not a host name; "
            "accepted: a DNS name or IP address the certificate names, e.g. kubernetes"
        )
    return name


def _prometheus(raw: Raw, got: Mapping[str, Any]) -> str:
    return v.listen(raw) if raw.value.strip() != "" else raw.value.strip()


def _unhealthy_action(raw: Raw, got: Mapping[str, Any]) -> UnhealthyAction:
    try:
        return UnhealthyAction(raw.value.strip())
    except ValueError:
        accepted = ", ".join(a.value for a in UnhealthyAction)
        raise ConfigError(f"{show(raw)} is not an unhealthy action; accepted: {accepted}") from None


def _log_level(raw: Raw, got: Mapping[str, Any]) -> str:
    return v.log_level(raw)


# The table (see the module's rules). Order is the order of `vipgate config` and of parsing.
SETTINGS: tuple[Setting, ...] = (
    _s(
        ("address", "vip_address"),
        ("--address", "--vip"),
        "",
        "the VIP to announce, or an IPv4 and an IPv6 VIP comma-separated (dual stack; "
        "vip_address / --vip are kube-vip's older names)",
        "list",
        parse=_address,
        attr="addresses",
    ),
    _s(
        "vip_subnet",
        "--vipSubnet",
        "",
        "prefix length of the VIP's address on vip_interface (empty: 32 for IPv4, 128 for "
        "IPv6); dual stack: the IPv4 and the IPv6 one comma-separated (32,128); one value "
        "applies to every VIP. The route announced is the VIP's /32 or /128 whatever it says, "
        "as in kube-vip",
        "list",
        parse=_vip_subnet,
    ),
    _s(
        "vip_interface",
        "--interface",
        "",
        "interface that carries the VIP (empty: interface of the default route; lo is typical)",
        parse=_ifname,
    ),
    _s("cp_enable", "--controlplane", "false", "control-plane VIP mode", "bool", parse=_bool),
    _s(
        "bgp_enable",
        "--bgp",
        "false",
        "BGP mode: vipgate's own BGP sessions announce the VIP (or vip_routingtable)",
        "bool",
        parse=_bool,
    ),
    _s(
        "vip_routingtable",
        "--table",
        "false",
        "routing-table mode: the VIP route goes into a kernel table (vip_routingtableid) while "
        "healthy, for the node's own BGP daemon to export; no BGP session of vipgate's",
        "bool",
        parse=_bool,
    ),
    _s(
        "vip_routingtableid",
        "--tableID",
        "198",
        "routing-table mode: the kernel table of the VIP route (1-252)",
        "int",
        parse=_table_id,
    ),
    _s(
        "vip_routingtabletype",
        "--tableType",
        "unicast",
        "routing-table mode: the route type, unicast or local (kube-vip's numbers 1, 2)",
        parse=_table_type,
    ),
    _s(
        "vip_routingprotocol",
        "--routingProtocol",
        "248",
        "routing-table mode: the route protocol that marks vipgate's routes (4-255)",
        "int",
        parse=_protocol,
    ),
    _s(
        "vip_cleanroutingtable",
        "--cleanRoutingTable",
        "false",
        "routing-table mode: at start, delete routes of that table and protocol that match no "
        "configured VIP",
        "bool",
        parse=_bool,
    ),
    _s("bgp_as", "--localAS", "65000", "our AS number (1..4294967295)", "int", parse=_asn),
    _s(
        "bgp_routerid",
        "--bgpRouterID",
        "",
        "BGP identifier (IPv4); wins over bgp_routerinterface",
        parse=_routerid,
    ),
    _s(
        "bgp_routerinterface",
        (),
        "",
        "take the router id from this interface's first IPv4 address",
        parse=_ifname,
    ),
    _s(
        "bgp_peers",
        "--bgppeers",
        "",
        "peers: address:AS:password:multihop:port:mpbgp:bfd (fields after AS optional), "
        "comma-separated, IPv6 in [brackets]",
        "list",
        secret=True,
        parse=_peers,
        attr=None,
    ),
    _s(
        "bgp_peeraddress",
        "--peerAddress",
        "",
        "one more peer: its address",
        parse=_optional_ip,
        attr=None,
    ),
    _s("bgp_peeras", "--peerAS", "65000", "one more peer: its AS", "int", parse=_asn, attr=None),
    _s(
        "bgp_peerpass",
        "--peerPass",
        "",
        "one more peer: its TCP MD5 password",
        secret=True,
        parse=_password,
        attr=None,
    ),
    _s(
        "bgp_multihop",
        "--multihop",
        "false",
        "one more peer: eBGP multihop",
        "bool",
        parse=_bool,
        attr=None,
    ),
    _s("bgp_sourceip", "--sourceIP", "", "source address of the BGP sessions", parse=_sourceip),
    _s("bgp_sourceif", "--sourceIF", "", "source interface of the BGP sessions", parse=_ifname),
    # kube-vip reads these three from the environment only (config_environment.go): no flags.
    _s(
        "mpbgp_nexthop",
        (),
        "",
        "next hop of routes of the other family than the session: fixed, auto_sourceip or "
        "auto_sourceif (empty: none; a peer's 6th bgp_peers field wins)",
        parse=_mpbgp_nexthop,
    ),
    _s("mpbgp_ipv4", (), "", "fixed IPv4 next hop (with mpbgp_nexthop=fixed)", parse=_mpbgp_ipv4),
    _s("mpbgp_ipv6", (), "", "fixed IPv6 next hop (with mpbgp_nexthop=fixed)", parse=_mpbgp_ipv6),
    _s(
        "bgp_hold_time",
        "--bgpHoldTimer",
        "30",
        "BGP hold time in seconds (0 or >= 3)",
        "int",
        parse=_hold,
    ),
    _s(
        "bgp_graceful_shutdown_seconds",
        "--bgpGracefulShutdownSeconds",
        "3",
        "vipgate extension: on SIGTERM/SIGINT, seconds the route stays announced with the "
        "GRACEFUL_SHUTDOWN community (RFC 8326) before it is withdrawn (0: withdraw at once)",
        "seconds",
        parse=_seconds0,
        attr="bgp_graceful_shutdown",
    ),
    _s(
        "bgp_keepalive_interval",
        "--bgpKeepAliveInterval",
        "10",
        "BGP keepalive interval in seconds (< hold time)",
        "int",
        parse=_keepalive,
    ),
    _s(
        "bgp_listen",
        "--bgpListen",
        "true",
        "vipgate extension: accept the routers' BGP connections on TCP 179 of each session's "
        "local address, from configured peers only (false: only dial, as kube-vip)",
        "bool",
        parse=_bool,
    ),
    _s(
        "control_plane_health_check_address",
        "--controlPlaneHealthCheckAddress",
        "",
        "health URL, e.g. https://localhost:6443/livez (empty: no health check)",
        parse=_health_url,
        attr="health_url",
    ),
    _s(
        "control_plane_health_check_period_seconds",
        "--controlPlaneHealthCheckPeriodSeconds",
        "5",
        "seconds between checks",
        "seconds",
        parse=_seconds,
        attr="health_period",
    ),
    _s(
        "control_plane_health_check_timeout_seconds",
        "--controlPlaneHealthCheckTimeoutSeconds",
        "3",
        "per-check timeout: connect, TLS handshake and response headers",
        "seconds",
        parse=_seconds,
        attr="health_timeout",
    ),
    _s(
        "control_plane_health_check_failure_threshold",
        "--controlPlaneHealthCheckFailureThreshold",
        "3",
        "consecutive failures that withdraw the route",
        "int",
        parse=_count,
        attr="health_threshold",
    ),
    _s(
        "control_plane_health_check_fast_period_seconds",
        "--controlPlaneHealthCheckFastPeriodSeconds",
        "0.2",
        "vipgate extension: seconds to the next check after a refused, reset or closed "
        "connection, while rising, and after any failed check while the route is withdrawn or "
        "de-preferred, for 5 minutes (0: off, kube-vip's cadence; below the period)",
        "seconds",
        parse=_fast_period,
        attr="health_fast_period",
    ),
    _s(
        "control_plane_health_check_success_threshold",
        "--controlPlaneHealthCheckSuccessThreshold",
        "1",
        "vipgate extension: consecutive successes that announce the route again (1-1000)",
        "int",
        parse=_count,
        attr="health_success_threshold",
    ),
    _s(
        "control_plane_health_check_unhealthy_action",
        "--controlPlaneHealthCheckUnhealthyAction",
        "withdraw",
        "vipgate extension: what the failure threshold does to the route: withdraw (kube-vip) "
        "or deprefer (announce it with a worse path, so the VIP fails open when every node "
        "fails)",
        parse=_unhealthy_action,
        attr="health_unhealthy_action",
    ),
    _s(
        "control_plane_health_check_shutdown_address",
        "--controlPlaneHealthCheckShutdownAddress",
        "",
        "vipgate extension: readiness URL read for the apiserver's announced shutdown (empty: "
        "the health URL with /readyz for /livez, else off; off: disabled)",
        parse=_shutdown_address,
        attr="health_shutdown_address",
    ),
    _s(
        "control_plane_health_check_shutdown_period_seconds",
        "--controlPlaneHealthCheckShutdownPeriodSeconds",
        "1",
        "vipgate extension: seconds between readiness reads",
        "seconds",
        parse=_seconds,
        attr="health_shutdown_period",
    ),
    _s(
        "control_plane_health_check_ca_path",
        "--controlPlaneHealthCheckCAPath",
        "",
        "CA file (PEM) to verify the health URL (empty: system trust store)",
        parse=_ca_path,
        attr="health_ca_path",
    ),
    _s(
        "control_plane_health_check_server_name",
        "--controlPlaneHealthCheckServerName",
        "",
        "vipgate extension: name the certificate is verified against (empty: the URL's host)",
        parse=_server_name,
        attr="health_server_name",
    ),
    _s(
        "control_plane_health_check_client_cert_path",
        "--controlPlaneHealthCheckClientCertPath",
        "",
        "client certificate (PEM) the health check presents, for apiservers without anonymous "
        "access (with the key; may hold the key too)",
        parse=_text,
        attr="health_client_cert_path",
    ),
    _s(
        "control_plane_health_check_client_key_path",
        "--controlPlaneHealthCheckClientKeyPath",
        "",
        "private key (PEM, unencrypted) of the client certificate",
        parse=_text,
        attr="health_client_key_path",
    ),
    _s(
        "vip_leaderelection",
        "--leaderElection",
        "false",
        "leader election (not implemented: ignored with a warning)",
        "bool",
        parse=_bool,
        attr="leader_election",
    ),
    _s(
        "lb_enable",
        "--enableLoadBalancer",
        "false",
        "IPVS load balancer (not implemented: ignored with a warning)",
        "bool",
        parse=_bool,
    ),
    _s(
        "svc_enable",
        "--services",
        "false",
        "Service type LoadBalancer mode (not implemented: ignored with a warning)",
        "bool",
        parse=_bool,
    ),
    _s(
        "prometheus_enable",
        "--prometheusEnable",
        "true",
        "vipgate extension: serve the metrics on prometheus_server (false: no metrics server; "
        "the way to turn it off from the environment, where an empty prometheus_server is "
        "unset)",
        "bool",
        parse=_bool,
    ),
    _s(
        "prometheus_server",
        "--prometheusHTTPServer",
        ":2112",
        "metrics listen address host:port (an empty flag: no metrics server; an empty "
        "environment variable is unset: the flag or :2112)",
        parse=_prometheus,
    ),
    _s(
        "vip_loglevel",
        "--log",
        "info",
        "log level: debug, info, warning, error (or kube-vip's numbers 0-6)",
        parse=_log_level,
        attr="log_level",
    ),
)

SETTINGS_BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}


def collect(env: Mapping[str, str], flags: Mapping[str, str | None]) -> dict[str, Raw]:
    """Pick each setting's raw string: env (first non-empty name) > flag > default.

    ``flags`` maps setting keys to the string given on the command line (None: not given).
    """
    out: dict[str, Raw] = {}
    for s in SETTINGS:
        raw: Raw | None = None
        for name in s.env:
            value = env.get(name, "")
            if value != "":
                raw = Raw(value, Source.ENV, name)
                break
        if raw is None:
            flag_value = flags.get(s.key)
            if flag_value is not None:
                raw = Raw(flag_value, Source.FLAG, s.flags[0] if s.flags else s.key)
        if raw is None:
            raw = Raw(s.default, Source.DEFAULT, s.key)
        out[s.key] = raw
    return out


def environment() -> Mapping[str, str]:
    """The process environment: the one place vipgate reads ``os.environ``."""
    return dict(os.environ)


# --------------------------------------------------------------------------------------------
# kube-vip settings vipgate does not implement: name -> what vipgate does instead
# --------------------------------------------------------------------------------------------
# Every name of kube-vip's pkg/kubevip/config_envvar.go is either an env name of SETTINGS or a
# key here (tests/unit/test_config_names.py checks it), plus two names kube-vip's manifests
# still carry: vip_cidr and vip_configmap. vipgate ignores these, with one warning each
# (vipgate.config.names).

_BGP_ONLY = "vipgate announces the VIP over BGP only (no ARP/NDP announcements)"
_NO_ELECTION = (
    "vipgate has no leader election: every node announces the VIP over BGP, gated by its own "
    "health check"
)
_NO_SERVICES = (
    "vipgate implements the control-plane VIP only (no Service type LoadBalancer mode, svc_enable)"
)
_NO_K8S_API = "vipgate never talks to the Kubernetes API (no kubeconfig, no node labels)"
_NO_ZEBRA = "vipgate has no Zebra integration: it speaks BGP to the peers itself"
_NO_DNS = "vipgate takes the VIP as an IP address only (address), no DNS name or DHCP lease"

NOT_IMPLEMENTED: dict[str, str] = {
    # ARP mode and the VIP on the interface
    "vip_arp": _BGP_ONLY,
    "vip_arpRate": _BGP_ONLY,
    "vip_interfaceloglobal": "vipgate puts the VIP on lo with host scope, on another "
    "interface with global scope",
    "vip_allow_interface_not_up": "vipgate puts the VIP on vip_interface whatever its state",
    "vip_skipdad": "vipgate adds an IPv6 VIP without duplicate address detection (IFA_F_NODAD)",
    "vip_cidr": "a former kube-vip name, read by no current kube-vip: vipgate reads vip_subnet "
    "(empty: a host prefix)",
    "port": "vipgate announces the VIP's prefix; it listens on no port for the VIP "
    "(no control-plane load balancer)",
    "instance_name": "vipgate names no host-wide resources per instance: run one per node",
    # Leader election
    "vip_leasename": _NO_ELECTION,
    "vip_leaseduration": _NO_ELECTION,
    "vip_renewdeadline": _NO_ELECTION,
    "vip_retryperiod": _NO_ELECTION,
    "vip_leaseannotations": _NO_ELECTION,
    "vip_loseleadership": _NO_ELECTION,
    "vip_loseleadership_timeout_seconds": _NO_ELECTION,
    "vip_preserve_on_leadership_loss": _NO_ELECTION,
    "vip_startleader": _NO_ELECTION,
    "vip_singlenode": _NO_ELECTION,
    "vip_nodename": _NO_ELECTION,
    # DNS and DHCP addresses
    "vip_ddns": _NO_DNS,
    "dns_mode": _NO_DNS,
    "dhcp_mode": _NO_DNS,
    "dhcp_backoff_attempts": _NO_DNS,
    # Other announcers
    "vip_wireguard": "vipgate has no WireGuard mode: it announces the VIP over BGP",
    "zebra_enable": _NO_ZEBRA,
    "zebra_url": _NO_ZEBRA,
    "zebra_version": _NO_ZEBRA,
    "zebra_software_name": _NO_ZEBRA,
    "bgp_attach_ip_to_interface": _NO_SERVICES,
    # Control-plane discovery and the Kubernetes API
    "cp_namespace": _NO_K8S_API,
    "cp_detect": "vipgate checks the apiserver at control_plane_health_check_address; it does "
    "not look for it",
    "kubernetes_addr": "vipgate checks the apiserver at control_plane_health_check_address",
    "k8s_config_file": _NO_K8S_API,
    "enable_node_labeling": _NO_K8S_API,
    "annotation": "vipgate reads its BGP settings from its environment and flags, not from "
    "node annotations",
    "config_file": "vipgate reads its environment and flags only, no configuration file",
    "health_check_port": "vipgate serves no health endpoint of its own; prometheus_server "
    "serves its metrics",
    "enable_upnp": "vipgate has no UPnP: it announces the VIP over BGP",
    # Services, the load balancer and egress
    "vip_servicesinterface": _NO_SERVICES,
    "vip_configmap": _NO_SERVICES,
    "svc_namespace": _NO_SERVICES,
    "svc_election": _NO_SERVICES,
    "svc_leasename": _NO_SERVICES,
    "per_service_election_on_demand": _NO_SERVICES,
    "lb_class_only": _NO_SERVICES,
    "lb_class_name": _NO_SERVICES,
    "lb_class_legacy_handling": _NO_SERVICES,
    "lb_port": "vipgate has no IPVS load balancer (lb_enable): the router spreads traffic "
    "over the nodes that announce the VIP",
    "lb_fwdmethod": "vipgate has no IPVS load balancer (lb_enable): the router spreads traffic "
    "over the nodes that announce the VIP",
    "backend_health_check_interval": "vipgate has no IPVS load balancer (lb_enable): each node "
    "checks its own apiserver (control_plane_health_check_*)",
    "enable_service_security": _NO_SERVICES,
    "disable_service_updates": _NO_SERVICES,
    "enable_endpoints": _NO_SERVICES,
    "mirror_dest_interface": _NO_SERVICES,
    "debounce_time": _NO_SERVICES,
    "egress_podcidr": _NO_SERVICES,
    "egress_servicecidr": _NO_SERVICES,
    "egress_withnftables": _NO_SERVICES,
    "egress_enableinternalsnat": _NO_SERVICES,
    "egress_clean": _NO_SERVICES,
    "iptables_backend": _NO_SERVICES,
}
