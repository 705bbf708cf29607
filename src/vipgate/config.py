"""vipgate's configuration: kube-vip's env variables and flags, parsed once, validated, frozen.

Rules this module keeps:

* Names, flags and defaults are kube-vip's (DESIGN.md section 2), so a kube-vip manifest works
  unchanged. Environment variables win over flags; an empty environment variable counts as unset
  (as in kube-vip, which tests ``os.Getenv(x) != ""``).
* Nothing else in vipgate reads ``os.environ``: :func:`load` takes the environment and the parsed
  flags as arguments and returns one frozen :class:`Config`.
* Every bad value raises :class:`ConfigError` naming the variable (or flag), the value and what is
  accepted. Secrets (BGP passwords) are never part of an error, a warning or a ``repr``.
* Derived values have one home, here: the announced prefix (:attr:`Config.prefix`), the keepalive
  interval (:attr:`Config.keepalive`), the router id source (:attr:`Config.router_id_source`).

Loading never opens a socket and never touches the network; things that need the host's
interfaces (the default-route interface, a router id from the interfaces) are resolved by the
manager at start.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import stat
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

REDACTED = "***"

STOP_AFTER_DRAIN = 3.0
"""Seconds a stop takes at most after the drain (``bgp_graceful_shutdown_seconds``): BGP
withdraw + Cease + close (2 s even with a silent peer), the probes and the metrics server (0.2 s
each), the VIP's removal. The manifests' ``terminationGracePeriodSeconds`` leaves room for it."""


class ConfigError(ValueError):
    """An invalid setting: the message names the variable, the value and what is accepted."""


class Source(Enum):
    DEFAULT = "default"
    FLAG = "flag"
    ENV = "env"


@dataclass(frozen=True)
class Setting:
    """One kube-vip setting: its environment names (first is canonical), flags and default."""

    key: str
    env: tuple[str, ...]
    flags: tuple[str, ...]
    default: str
    help: str
    kind: str = "string"  # string | bool | int | seconds | list
    secret: bool = False

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
) -> Setting:
    envs = (env,) if isinstance(env, str) else env
    fl = (flags,) if isinstance(flags, str) else flags
    return Setting(envs[0], envs, fl, default, help, kind, secret)


# The table is the reference: `vipgate --help`, `vipgate config`, the README table and the manifest
# generator all read it. Order is the order of `vipgate config`.
SETTINGS: tuple[Setting, ...] = (
    _s(
        ("address", "vip_address"),
        ("--address", "--vip"),
        "",
        "the VIP to announce (vip_address / --vip are kube-vip's older names)",
    ),
    _s(
        "vip_subnet",
        "--vipSubnet",
        "",
        "prefix length of the VIP (empty: 32 for IPv4, 128 for IPv6)",
        "int",
    ),
    _s(
        "vip_interface",
        "--interface",
        "",
        "interface that carries the VIP (empty: interface of the default route; lo is typical)",
    ),
    _s("cp_enable", "--controlplane", "false", "control-plane VIP mode", "bool"),
    _s("bgp_enable", "--bgp", "false", "BGP mode (the only mode vipgate implements)", "bool"),
    _s("bgp_as", "--localAS", "65000", "our AS number (1..4294967295)", "int"),
    _s("bgp_routerid", "--bgpRouterID", "", "BGP identifier (IPv4); wins over bgp_routerinterface"),
    _s(
        "bgp_routerinterface", (), "", "take the router id from this interface's first IPv4 address"
    ),
    _s(
        "bgp_peers",
        "--bgppeers",
        "",
        "peers: address:AS:password:multihop:port:mpbgp:bfd (fields after AS optional), "
        "comma-separated, IPv6 in [brackets]",
        "list",
        secret=True,
    ),
    _s("bgp_peeraddress", "--peerAddress", "", "one more peer: its address"),
    _s("bgp_peeras", "--peerAS", "65000", "one more peer: its AS", "int"),
    _s("bgp_peerpass", "--peerPass", "", "one more peer: its TCP MD5 password", secret=True),
    _s("bgp_multihop", "--multihop", "false", "one more peer: eBGP multihop", "bool"),
    _s("bgp_sourceip", "--sourceIP", "", "source address of the BGP sessions"),
    _s("bgp_sourceif", "--sourceIF", "", "source interface of the BGP sessions"),
    # kube-vip reads these three from the environment only (config_environment.go): no flags.
    _s(
        "mpbgp_nexthop",
        (),
        "",
        "next hop of routes of the other family than the session: fixed, auto_sourceip or "
        "auto_sourceif (empty: none; a peer's 6th bgp_peers field wins)",
    ),
    _s("mpbgp_ipv4", (), "", "fixed IPv4 next hop (with mpbgp_nexthop=fixed)"),
    _s("mpbgp_ipv6", (), "", "fixed IPv6 next hop (with mpbgp_nexthop=fixed)"),
    _s("bgp_hold_time", "--bgpHoldTimer", "30", "BGP hold time in seconds (0 or >= 3)", "int"),
    _s(
        "bgp_graceful_shutdown_seconds",
        "--bgpGracefulShutdownSeconds",
        "3",
        "vipgate extension: on SIGTERM/SIGINT, seconds the route stays announced with the "
        "GRACEFUL_SHUTDOWN community (RFC 8326) before it is withdrawn (0: withdraw at once)",
        "seconds",
    ),
    _s(
        "bgp_keepalive_interval",
        "--bgpKeepAliveInterval",
        "10",
        "BGP keepalive interval in seconds (< hold time)",
        "int",
    ),
    _s(
        "control_plane_health_check_address",
        "--controlPlaneHealthCheckAddress",
        "",
        "health URL, e.g. https://localhost:6443/livez (empty: no health check)",
    ),
    _s(
        "control_plane_health_check_period_seconds",
        "--controlPlaneHealthCheckPeriodSeconds",
        "5",
        "seconds between checks",
        "seconds",
    ),
    _s(
        "control_plane_health_check_timeout_seconds",
        "--controlPlaneHealthCheckTimeoutSeconds",
        "3",
        "per-check timeout: connect, TLS handshake and response headers",
        "seconds",
    ),
    _s(
        "control_plane_health_check_failure_threshold",
        "--controlPlaneHealthCheckFailureThreshold",
        "3",
        "consecutive failures that withdraw the route",
        "int",
    ),
    _s(
        "control_plane_health_check_fast_period_seconds",
        "--controlPlaneHealthCheckFastPeriodSeconds",
        "0.2",
        "vipgate extension: seconds to the next check after a refused, reset or closed "
        "connection and while rising (0: off, kube-vip's cadence; below the period)",
        "seconds",
    ),
    _s(
        "control_plane_health_check_success_threshold",
        "--controlPlaneHealthCheckSuccessThreshold",
        "1",
        "vipgate extension: consecutive successes that announce the route again (1-1000)",
        "int",
    ),
    _s(
        "control_plane_health_check_shutdown_address",
        "--controlPlaneHealthCheckShutdownAddress",
        "",
        "vipgate extension: readiness URL read for the apiserver's announced shutdown (empty: "
        "the health URL with /readyz for /livez, else off; off: disabled)",
    ),
    _s(
        "control_plane_health_check_shutdown_period_seconds",
        "--controlPlaneHealthCheckShutdownPeriodSeconds",
        "1",
        "vipgate extension: seconds between readiness reads",
        "seconds",
    ),
    _s(
        "control_plane_health_check_ca_path",
        "--controlPlaneHealthCheckCAPath",
        "",
        "CA file (PEM) to verify the health URL (empty: system trust store)",
    ),
    _s(
        "control_plane_health_check_server_name",
        "--controlPlaneHealthCheckServerName",
        "",
        "vipgate extension: name the certificate is verified against (empty: the URL's host)",
    ),
    _s(
        "control_plane_health_check_client_cert_path",
        "--controlPlaneHealthCheckClientCertPath",
        "",
        "client certificate (PEM) the health check presents, for apiservers without anonymous "
        "access (with the key; may hold the key too)",
    ),
    _s(
        "control_plane_health_check_client_key_path",
        "--controlPlaneHealthCheckClientKeyPath",
        "",
        "private key (PEM, unencrypted) of the client certificate",
    ),
    _s(
        "vip_leaderelection",
        "--leaderElection",
        "false",
        "leader election (not implemented: ignored with a warning)",
        "bool",
    ),
    _s(
        "lb_enable",
        "--enableLoadBalancer",
        "false",
        "IPVS load balancer (not implemented: ignored with a warning)",
        "bool",
    ),
    _s(
        "svc_enable",
        "--services",
        "false",
        "Service type LoadBalancer mode (not implemented: ignored with a warning)",
        "bool",
    ),
    _s(
        "prometheus_server",
        "--prometheusHTTPServer",
        ":2112",
        "metrics listen address host:port (empty: disabled)",
    ),
    _s(
        "vip_loglevel",
        "--log",
        "info",
        "log level: debug, info, warning, error (or kube-vip's numbers 0-6)",
    ),
)

SETTINGS_BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}


# True since vipgate implements BFD (vipgate.bfd, issue 10). False refuses a bgp_peers entry
# that enables BFD (load() checks it in one place); a disabled BFD field is always accepted.
BFD_SUPPORTED = True

# BFD field bounds (milliseconds; RFC 5880 section 4.1 carries them in microseconds in 32 bits,
# the multiplier in 8 bits, and forbids a zero multiplier).
BFD_INTERVAL_MS = (10, 60000)
BFD_MULTIPLIER = (1, 255)
# kube-vip's defaults for empty parts of the BFD field (config_bgp.go).
BFD_DEFAULT_MS = 300
BFD_DEFAULT_MULTIPLIER = 3


class NextHopMode(Enum):
    """kube-vip's ``mpbgp_nexthop``: where the next hop of the other address family comes from.

    ``fixed``: ``mpbgp_ipv4`` / ``mpbgp_ipv6``; ``auto_sourceip``: the other family's
    non-link-local address of the interface holding ``bgp_sourceip``; ``auto_sourceif``: the
    non-link-local addresses of ``bgp_sourceif`` (kube-vip ``BGPPeer.FindMpbgpAddresses``).
    """

    FIXED = "fixed"
    AUTO_SOURCEIP = "auto_sourceip"
    AUTO_SOURCEIF = "auto_sourceif"


@dataclass(frozen=True)
class Bfd:
    """The 7th ``bgp_peers`` field ``enable;rx;tx;mult``. Intervals in milliseconds.

    kube-vip's docs give milliseconds (GoBGP reads the numbers as microseconds; vipgate keeps
    the documented unit). Bounds: :data:`BFD_INTERVAL_MS`, :data:`BFD_MULTIPLIER`.
    """

    enabled: bool
    rx_ms: int = BFD_DEFAULT_MS  # required minimum receive interval
    tx_ms: int = BFD_DEFAULT_MS  # desired minimum transmit interval
    multiplier: int = BFD_DEFAULT_MULTIPLIER  # detect multiplier

    def __str__(self) -> str:
        return f"{str(self.enabled).lower()};{self.rx_ms};{self.tx_ms};{self.multiplier}"


@dataclass(frozen=True)
class Peer:
    """One BGP peer from ``bgp_peers`` or the single-peer variables.

    The MP-BGP fields are the effective ones after :func:`load` (the peer's 6th field, else the
    global ``mpbgp_*`` settings, as kube-vip's ``SetMpbgpOptions``); :func:`parse_peers` alone
    gives the peer's own. ``bfd`` is None when the 7th field is absent or empty.
    """

    address: IPAddress
    asn: int
    password: str = field(repr=False, default="")
    multihop: bool = False
    port: int = 179
    mpbgp_nexthop: NextHopMode | None = None
    mpbgp_ipv4: ipaddress.IPv4Address | None = None
    mpbgp_ipv6: ipaddress.IPv6Address | None = None
    bfd: Bfd | None = None

    @property
    def mpbgp_field(self) -> str:
        """The 6th field as kube-vip writes it (``key=value;...``), empty when nothing is set."""
        opts = []
        if self.mpbgp_nexthop is not None:
            opts.append(f"mpbgp_nexthop={self.mpbgp_nexthop.value}")
        if self.mpbgp_ipv4 is not None:
            opts.append(f"mpbgp_ipv4={self.mpbgp_ipv4}")
        if self.mpbgp_ipv6 is not None:
            opts.append(f"mpbgp_ipv6=[{self.mpbgp_ipv6}]")
        return ";".join(opts)

    def __str__(self) -> str:
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        fields = [
            host,
            str(self.asn),
            REDACTED if self.password else "",
            str(self.multihop).lower(),
            str(self.port) if self.port != 179 else "",
            self.mpbgp_field,
            str(self.bfd) if self.bfd is not None else "",
        ]
        while len(fields) > 4 and fields[-1] == "":
            fields.pop()
        return ":".join(fields)


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
    """The effective, validated configuration. Build it with :func:`load`."""

    address: IPAddress | None
    vip_subnet: int | None
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
    # Global MP-BGP settings (kube-vip env only); the peers carry the effective values.
    mpbgp_nexthop: NextHopMode | None = None
    mpbgp_ipv4: ipaddress.IPv4Address | None = None
    mpbgp_ipv6: ipaddress.IPv6Address | None = None
    health_fast_period: float = 0.2
    health_success_threshold: int = 1
    health_shutdown_address: str = ""
    health_shutdown_period: float = 1.0
    bgp_graceful_shutdown: float = 3.0
    # Client certificate and key the health check presents ("" = none; both or neither).
    health_client_cert_path: str = ""
    health_client_key_path: str = ""
    # Where each setting came from, and the warnings found while loading (for `vipgate config`
    # and the manager's start-up log). Not part of equality.
    sources: Mapping[str, Source] = field(default_factory=dict, compare=False, repr=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def prefix(self) -> IPNetwork | None:
        """The prefix announced over BGP: the VIP with ``vip_subnet`` (default host length)."""
        if self.address is None:
            return None
        length = self.vip_subnet if self.vip_subnet is not None else self.address.max_prefixlen
        return ipaddress.ip_network(f"{self.address}/{length}", strict=False)

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
        if not self.bgp_enable:
            return (
                "bgp_enable is not true: vipgate implements BGP mode only (set bgp_enable=true "
                "and bgp_peers)"
            )
        if self.address is None:
            return "no VIP: set address (or vip_address)"
        return None

    @property
    def health_enabled(self) -> bool:
        return bool(self.health_url)

    @property
    def stop_budget(self) -> float:
        """Worst-case seconds from SIGTERM to exit: the drain plus :data:`STOP_AFTER_DRAIN`."""
        return self.bgp_graceful_shutdown + STOP_AFTER_DRAIN

    @property
    def readiness_url(self) -> str:
        """The URL read for the apiserver's announced shutdown ("" = off): the setting, else
        the health URL with ``/livez`` replaced by ``/readyz`` when its path is ``/livez``."""
        return readiness_url(self.health_url, self.health_shutdown_address)

    @property
    def prometheus_listen(self) -> tuple[str, int] | None:
        """(host, port) for the metrics server, or None when disabled. Host "" means all."""
        return _parse_listen(self.prometheus_server) if self.prometheus_server else None


# --------------------------------------------------------------------------------------------
# Raw values: environment over flags over defaults
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    value: str = field(repr=False)  # may be a secret
    source: Source
    name: str  # the env var or flag that gave the value (for error messages)


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
# Value parsers: each raises ConfigError with the accepted form
# --------------------------------------------------------------------------------------------

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_BOOL_HELP = "one of 1 t T TRUE true True 0 f F FALSE false False"


def _show(raw: Raw, secret: bool = False) -> str:
    return f"{raw.name}={REDACTED if secret else repr(raw.value)}"


def parse_bool(value: str) -> bool | None:
    """Go's strconv.ParseBool: the accepted spellings, else None."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


def _bool(raw: Raw) -> bool:
    b = parse_bool(raw.value)
    if b is None:
        raise ConfigError(f"{_show(raw)}: not a boolean; accepted: {_BOOL_HELP}")
    return b


def _int(raw: Raw, lo: int, hi: int, what: str) -> int:
    v = raw.value.strip()
    if not (v.isascii() and (v.isdigit() or (v[:1] == "-" and v[1:].isdigit()))):
        raise ConfigError(f"{_show(raw)}: not an integer; accepted: {what}")
    n = int(v)
    if not lo <= n <= hi:
        raise ConfigError(f"{_show(raw)}: out of range; accepted: {what}")
    return n


# RFC 6793 section 2: AS_TRANS stands in for a 4-octet AS in 2-octet fields; a router refuses an
# OPEN whose 4-octet AS capability carries it (FRR: Bad Peer AS).
AS_TRANS = 23456
_AS_TRANS_WHY = "23456, AS_TRANS (RFC 6793), which no BGP speaker may use as its AS"


def _asn(raw: Raw) -> int:
    n = _int(raw, 1, 4294967295, "an AS number 1-4294967295 other than 23456")
    if n == AS_TRANS:
        raise ConfigError(f"{_show(raw)}: {_AS_TRANS_WHY}; accepted: an AS number 1-4294967295")
    return n


def _seconds(raw: Raw) -> float:
    accepted = "a positive number of seconds, without unit (e.g. 5 or 0.5)"
    try:
        v = float(raw.value.strip())
    except ValueError:
        raise ConfigError(f"{_show(raw)}: not a number; accepted: {accepted}") from None
    if not (v > 0 and v <= 86400):
        raise ConfigError(f"{_show(raw)}: must be > 0 and <= 86400; accepted: {accepted}")
    return v


def _seconds0(raw: Raw, below: float | None = None, below_name: str = "") -> float:
    accepted = "0 (off) or a positive number of seconds, without unit (e.g. 0.2)"
    if below is not None:
        accepted += f", below {below_name}={below:g}"
    try:
        v = float(raw.value.strip())
    except ValueError:
        raise ConfigError(f"{_show(raw)}: not a number; accepted: {accepted}") from None
    if not (v >= 0 and v <= 3600):
        raise ConfigError(f"{_show(raw)}: must be >= 0 and <= 3600; accepted: {accepted}")
    if below is not None and v >= below:
        raise ConfigError(
            f"{_show(raw)}: must be below {below_name}={below:g}; accepted: {accepted}"
        )
    return v


def readiness_url(health_url: str, setting: str) -> str:
    """``control_plane_health_check_shutdown_address`` in effect: "" when off."""
    if setting.strip().lower() == "off" or not health_url:
        return ""
    if setting:
        return setting
    parts = urllib.parse.urlsplit(health_url)
    if parts.path.rstrip("/") != "/livez":
        return ""
    return urllib.parse.urlunsplit(parts._replace(path="/readyz"))


def _ip(raw: Raw, what: str = "an IPv4 or IPv6 address") -> IPAddress:
    v = raw.value.strip()
    if "%" in v:
        raise ConfigError(
            f"{_show(raw)}: an IPv6 scope id (%zone) is not supported; accepted: {what}"
        )
    try:
        return ipaddress.ip_address(v)
    except ValueError:
        raise ConfigError(f"{_show(raw)}: not an IP address; accepted: {what}") from None


# Linux limits (include/uapi/linux/if.h, net/core/dev.c dev_valid_name): an interface name is
# 1 to IFNAMSIZ-1 bytes, not "." or "..", without '/', ':' or whitespace.
IFNAMSIZ = 16
# TCP MD5 key length limit (include/uapi/linux/tcp.h TCP_MD5SIG_MAXKEYLEN).
TCP_MD5SIG_MAXKEYLEN = 80
_IFNAME_HELP = (
    f"an interface name of 1-{IFNAMSIZ - 1} bytes (Linux IFNAMSIZ) without '/', ':' or "
    "whitespace, not '.' or '..'"
)


def _ifname(raw: Raw, extra: str = "") -> str:
    """An interface name the kernel can hold (or empty). Existence is checked at start."""
    v = raw.value.strip()
    if v == "":
        return v
    try:
        n = len(v.encode())
    except UnicodeEncodeError:
        n = 0
    if (
        not 1 <= n < IFNAMSIZ
        or v in (".", "..")
        or any(c in "/:" or c.isspace() or not c.isprintable() for c in v)
    ):
        raise ConfigError(
            f"{_show(raw)}: not a valid interface name; accepted: {_IFNAME_HELP}{extra}"
        )
    return v


def _password_problem(password: str) -> str | None:
    """Why the kernel or the router cannot use this TCP MD5 password (never echoing it)."""
    try:
        n = len(password.encode())
    except UnicodeEncodeError:
        return "the password is not valid UTF-8"
    if n > TCP_MD5SIG_MAXKEYLEN:
        return (
            f"the password is longer than {TCP_MD5SIG_MAXKEYLEN} bytes (Linux TCP_MD5SIG_MAXKEYLEN)"
        )
    if any(not c.isprintable() and c != " " for c in password):
        return (
            "the password contains a control character or another non-printing character "
            "(a trailing newline from a Secret or file?)"
        )
    return None


_PASSWORD_HELP = (
    f"a TCP MD5 password of 1-{TCP_MD5SIG_MAXKEYLEN} bytes of printable UTF-8, or empty for none"
)


def _usable_unicast(a: IPAddress) -> str | None:
    """Why ``a`` cannot be a unicast address on the wire (a peer, a source), else None."""
    if a.is_unspecified:
        return "is unspecified"
    if a.is_multicast:
        return "is multicast"
    if a == ipaddress.IPv4Address("255.255.255.255"):
        return "is the broadcast address"
    if isinstance(a, ipaddress.IPv6Address):
        if a.ipv4_mapped is not None:
            return "is IPv4-mapped (write the IPv4 address)"
        if a.is_link_local:
            return "is IPv6 link-local (it needs a %zone, which vipgate does not support)"
    return None


def _parse_listen(value: str) -> tuple[str, int]:
    """Go's host:port listen syntax: ":2112", "0.0.0.0:2112", "[::1]:2112", "localhost:2112"."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("bad port")
    if "%" in host:
        raise ValueError("scope id")
    if host.startswith("[") and host.endswith("]"):
        ipaddress.IPv6Address(host[1:-1])
        host = host[1:-1]
    elif host and host != "localhost":
        # A host name could fail to resolve on the node, long after `vipgate config` said yes.
        ipaddress.IPv4Address(host)
    return host, int(port)


def _listen(raw: Raw) -> str:
    v = raw.value.strip()
    try:
        _parse_listen(v)
    except ValueError:
        raise ConfigError(
            f"{_show(raw)}: not a listen address; accepted: [host]:port with port 1-65535 and "
            "host an IP address (IPv6 in brackets, no %zone), localhost or empty for all, "
            "e.g. :2112, 127.0.0.1:2112, [::1]:2112, or empty to disable metrics"
        ) from None
    return v


def _host_problem(host: str) -> str | None:
    """Why ``host`` (an IP literal or DNS name) cannot be connected to or verified, else None."""
    if "%" in host:
        return "an IPv6 scope id (%zone) is not supported"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    try:
        encoded = host.encode("idna")  # what the connection and the TLS SNI will send
    except UnicodeError:
        return "not a DNS name (each label 1-63 characters)"
    labels = encoded.decode("ascii").rstrip(".").split(".")
    if len(encoded.rstrip(b".")) > 253 or any(
        not label or not all(c.isalnum() or c in "-_" for c in label) for label in labels
    ):
        return "not a DNS name (letters, digits, '-' and '.', at most 253 characters)"
    return None


def _url(raw: Raw) -> str:
    v = raw.value
    accepted = (
        "an http:// or https:// URL with a host and no user:password@, "
        "e.g. https://localhost:6443/livez"
    )
    try:
        netloc = urllib.parse.urlsplit(v).netloc
    except ValueError:
        netloc = v
    # user:password@host would be logged with the URL: refuse it and never echo the value.
    shown = f"{raw.name}=(a URL with user info, not shown)" if "@" in netloc else _show(raw)
    if "@" in netloc:
        raise ConfigError(
            f"{shown}: credentials in the URL are not supported; accepted: {accepted}"
        )
    if v != v.strip() or any(c.isspace() for c in v):
        raise ConfigError(f"{shown}: contains whitespace; accepted: {accepted}")
    try:
        u = urllib.parse.urlsplit(v)
        port = u.port  # raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{shown}: not a valid URL; accepted: {accepted}") from None
    if u.scheme not in ("http", "https"):
        raise ConfigError(f"{shown}: scheme {u.scheme!r} not supported; accepted: {accepted}")
    if not u.hostname:
        raise ConfigError(f"{shown}: no host; accepted: {accepted}")
    if port == 0:
        raise ConfigError(f"{shown}: port 0; accepted: {accepted}")
    problem = _host_problem(u.hostname)
    if problem:
        raise ConfigError(f"{shown}: the host is {problem}; accepted: {accepted}")
    if not (u.path + u.query).isascii() or not all(c.isprintable() for c in v):
        raise ConfigError(
            f"{shown}: the path or query has non-ASCII or control characters; accepted: "
            f"{accepted}, other characters %-encoded"
        )
    return v


def _ca_path(raw: Raw) -> str:
    path = raw.value
    accepted = (
        "a readable PEM file holding at least one CA certificate, or empty for the system "
        "trust store"
    )
    data = _read_pem(raw, accepted)
    if (
        b"-----BEGIN CERTIFICATE-----" not in data
        and b"-----BEGIN TRUSTED CERTIFICATE-----" not in data
    ):
        raise ConfigError(f"{_show(raw)}: PEM without a certificate; accepted: {accepted}")
    try:
        ssl.create_default_context(cadata=data.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as e:
        raise ConfigError(
            f"{_show(raw)}: certificate does not load ({e}); accepted: {accepted}"
        ) from None
    return path


_CLIENT_CERT = "control_plane_health_check_client_cert_path"
_CLIENT_KEY = "control_plane_health_check_client_key_path"


def _no_password() -> bytes:
    raise ValueError("encrypted private key")  # never prompt: vipgate has no password to give


def _read_pem(raw: Raw, accepted: str) -> bytes:
    """The file's bytes (4 MiB at most) if it exists, is readable and holds PEM."""
    try:
        st = os.stat(raw.value)
    except FileNotFoundError:
        raise ConfigError(f"{_show(raw)}: no such file; accepted: {accepted}") from None
    except OSError as e:
        raise ConfigError(
            f"{_show(raw)}: cannot stat ({e.strerror}); accepted: {accepted}"
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{_show(raw)}: is a directory; accepted: {accepted}")
    try:
        with open(raw.value, "rb") as f:
            data = f.read(4 * 1024 * 1024)
    except OSError as e:
        raise ConfigError(
            f"{_show(raw)}: cannot read ({e.strerror}); accepted: {accepted}"
        ) from None
    if b"-----BEGIN" not in data:
        raise ConfigError(f"{_show(raw)}: not PEM; accepted: {accepted}")
    return data


def check_client_pair(cert: Raw, key: Raw) -> bool:
    """Both client-certificate settings or neither (no file is read). True when both are set."""
    if bool(cert.value) == bool(key.value):
        return bool(cert.value)
    given, missing = (cert, key) if cert.value else (key, cert)
    name = missing.name  # the unset one: its canonical env name, or its flag next to a flag
    if given.source is Source.FLAG and name in SETTINGS_BY_KEY:
        name = SETTINGS_BY_KEY[name].flags[0]
    raise ConfigError(
        f"{_show(given)} without {name}: set both the client certificate and its key "
        f"(the same file if it holds both, like kubelet's kubelet-client-current.pem), or neither"
    )


def _client_cert(cert: Raw, key: Raw) -> tuple[str, str]:
    """Validate the health check's client certificate and key: both or neither, readable PEM
    files, a certificate in the one and an unencrypted private key in the other, the key
    matching the certificate (``ssl.SSLContext.load_cert_chain``). Key material is never
    part of an error."""
    if not check_client_pair(cert, key):
        return "", ""
    accepted_cert = "a readable PEM file holding the client certificate (signed by a CA the "
    accepted_cert += "apiserver's --client-ca-file trusts)"
    accepted_key = "a readable PEM file holding the certificate's unencrypted private key"
    if b"-----BEGIN CERTIFICATE-----" not in _read_pem(cert, accepted_cert):
        raise ConfigError(f"{_show(cert)}: PEM without a certificate; accepted: {accepted_cert}")
    if b"PRIVATE KEY-----" not in _read_pem(key, accepted_key):
        raise ConfigError(f"{_show(key)}: PEM without a private key; accepted: {accepted_key}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_cert_chain(cert.value, key.value, password=_no_password)
    except ValueError:
        raise ConfigError(
            f"{_show(key)}: the private key is encrypted; accepted: {accepted_key}"
        ) from None
    except ssl.SSLError as e:
        reason = e.reason or ""
        if reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                f"{_show(key)}: this key does not belong to the certificate {_show(cert)}; "
                f"accepted: the private key of that certificate"
            ) from None
        raise ConfigError(
            f"{_show(cert)} with {_show(key)}: does not load ({reason or 'SSL error'}); "
            f"accepted: {accepted_cert}, and {accepted_key}"
        ) from None
    return cert.value, key.value


PEER_FORM = (
    "address:AS[:password[:multihop[:port[:mpbgp[:bfd]]]]] comma-separated, IPv6 in brackets "
    "(e.g. 192.0.2.1:65001::false or [2001:db8::1]:65001::false), a password without ':' or ','"
)
_MPBGP_KEYS = ("mpbgp_nexthop", "mpbgp_ipv4", "mpbgp_ipv6")
_NEXTHOP_MODES = ", ".join(m.value for m in NextHopMode)
_BFD_FORM = (
    f"enable;rx;tx;mult, e.g. true;300;300;3 (rx and tx in ms {BFD_INTERVAL_MS[0]}-"
    f"{BFD_INTERVAL_MS[1]}, mult {BFD_MULTIPLIER[0]}-{BFD_MULTIPLIER[1]}; an empty part "
    "takes kube-vip's default 300;300;3)"
)


class _PeerError(Exception):
    """A bad bgp_peers entry: what is wrong and what is accepted (the caller adds where)."""


def _peer_address(text: str) -> IPAddress:
    if "%" in text:
        raise _PeerError(
            "the address has an IPv6 scope id (%zone), which vipgate does not support; "
            f"accepted: {PEER_FORM}"
        )
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise _PeerError(
            f"the address is not an IP address (host names are not accepted); accepted: {PEER_FORM}"
        ) from None


def _mpbgp_field(text: str) -> dict[str, str]:
    """Field 6, ``key=value;...``: kube-vip's keys, each at most once; empty value = unset."""
    accepted = (
        f"key=value pairs separated by ';' with keys {', '.join(_MPBGP_KEYS)}, "
        "e.g. mpbgp_nexthop=fixed;mpbgp_ipv6=[2001:db8::11] (IPv6 in brackets)"
    )
    out: dict[str, str] = {}
    for item in text.split(";"):
        key, sep, value = item.partition("=")
        if not sep:
            raise _PeerError(
                f"MP-BGP field (6th): an option is not key=value; accepted: {accepted}"
            )
        if key not in _MPBGP_KEYS:
            # The unknown key is not echoed: a password with ':' can shift into this field.
            raise _PeerError(f"MP-BGP field (6th): unknown option; accepted: {accepted}")
        if key in out:
            raise _PeerError(f"MP-BGP field (6th): {key} given twice; accepted: {accepted}")
        out[key] = value
    return out


def _nexthop_mode(value: str, what: str) -> NextHopMode | None:
    if value == "":
        return None
    try:
        return NextHopMode(value)
    except ValueError:
        raise _PeerError(
            f"{what} is not a next-hop mode; accepted: {_NEXTHOP_MODES} (or empty)"
        ) from None


def _nexthop_v4(value: str, what: str) -> ipaddress.IPv4Address | None:
    if value == "":
        return None
    accepted = "a unicast IPv4 address of this node, e.g. 192.0.2.11 (or empty)"
    try:
        a = ipaddress.IPv4Address(value)
    except ValueError:
        raise _PeerError(f"{what} is not an IPv4 address; accepted: {accepted}") from None
    if (
        a.is_unspecified
        or a.is_multicast
        or a.is_loopback
        or a == ipaddress.IPv4Address("255.255.255.255")
    ):
        raise _PeerError(f"{what} is not a usable next hop; accepted: {accepted}")
    return a


def _nexthop_v6(value: str, what: str) -> ipaddress.IPv6Address | None:
    if value == "":
        return None
    accepted = (
        "a global unicast IPv6 address of this node, e.g. 2001:db8::11 (not link-local, "
        "not IPv4-mapped, no %zone) (or empty)"
    )
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    try:
        a = ipaddress.IPv6Address(value)
    except ValueError:
        raise _PeerError(f"{what} is not an IPv6 address; accepted: {accepted}") from None
    if (
        a.scope_id is not None
        or a.is_unspecified
        or a.is_multicast
        or a.is_loopback
        or a.is_link_local
        or a.ipv4_mapped is not None
    ):
        raise _PeerError(f"{what} is not a usable next hop; accepted: {accepted}")
    return a


def _bfd_field(text: str) -> Bfd:
    parts = text.split(";")
    if len(parts) != 4:
        raise _PeerError(f"BFD field (7th): needs 4 parts; accepted: {_BFD_FORM}")
    enabled = parse_bool(parts[0])
    if enabled is None:
        raise _PeerError(f"BFD field (7th): enable is not a boolean; accepted: {_BFD_FORM}")
    nums: list[int] = []
    for name, text_n, default, (lo, hi) in (
        ("rx", parts[1], BFD_DEFAULT_MS, BFD_INTERVAL_MS),
        ("tx", parts[2], BFD_DEFAULT_MS, BFD_INTERVAL_MS),
        ("mult", parts[3], BFD_DEFAULT_MULTIPLIER, BFD_MULTIPLIER),
    ):
        if text_n == "":
            nums.append(default)
            continue
        if not (text_n.isascii() and text_n.isdigit()) or not lo <= int(text_n) <= hi:
            raise _PeerError(f"BFD field (7th): {name} is not {lo}-{hi}; accepted: {_BFD_FORM}")
        nums.append(int(text_n))
    return Bfd(enabled, nums[0], nums[1], nums[2])


def _parse_entry(entry: str, where: list[str]) -> Peer:
    """One bgp_peers entry. ``where`` gets the parsed address and AS as they become known.

    Nothing of the entry's text is ever put into an error: only values that parsed, and only
    those before the password (the address, the AS). A password may hold ':' and shift into
    any later field, and a malformed entry has no reliable field boundaries at all.
    """
    if entry.startswith("unnumbered:"):
        raise _PeerError(
            "unnumbered peers (unnumbered:<interface>) are not supported by vipgate; "
            f"accepted: {PEER_FORM}"
        )
    if entry.startswith("["):
        end = entry.find("]")
        if end == -1:
            raise _PeerError(f"no closing ] for the IPv6 address; accepted: {PEER_FORM}")
        addr = _peer_address(entry[1:end])
        rest = entry[end + 1 :]
        where.append(f"[{addr}]")
        if not rest.startswith(":"):
            raise _PeerError(f"missing :AS after the address; accepted: {PEER_FORM}")
        rest = rest[1:]
    else:
        parts = entry.split(":")
        if _unbracketed_v6(parts):
            raise _PeerError(f"an IPv6 address must be written in brackets; accepted: {PEER_FORM}")
        addr = _peer_address(parts[0])
        where.append(str(addr))
        rest = entry[len(parts[0]) + 1 :] if len(parts) > 1 else ""
    # Fields 2-5 split on ':' as kube-vip does (the password is anything without ':' or ',');
    # fields 6-7 split on ':' outside brackets, so field 6 can hold mpbgp_ipv6=[2001:db8::11]
    # (kube-vip cannot take an IPv6 address there at all).
    head = rest.split(":", 4) if rest else []
    fields = head[:4] + (_split_outside_brackets(head[4]) if len(head) == 5 else [])
    if not fields or fields[0] == "":
        raise _PeerError(f"missing AS number; accepted: {PEER_FORM}")
    asn_text = fields[0]
    if not (asn_text.isascii() and asn_text.isdigit()) or not 1 <= int(asn_text) <= 4294967295:
        raise _PeerError(f"the AS is not a number 1-4294967295; accepted: {PEER_FORM}")
    asn = int(asn_text)
    if asn == AS_TRANS:
        raise _PeerError(f"the AS is {_AS_TRANS_WHY}; accepted: {PEER_FORM}")
    where.append(f"AS {asn}")
    if len(fields) > 6:
        raise _PeerError(
            "too many fields (a ':' in the password, or an IPv6 address in the 6th field "
            f"without brackets?); accepted: {PEER_FORM}"
        )
    fields += [""] * (6 - len(fields))
    _, password, mh_text, port_text, mpbgp_text, bfd_text = fields
    multihop = False
    if mh_text != "":
        mh = parse_bool(mh_text)
        if mh is None:
            raise _PeerError(f"multihop (4th field) is not a boolean; accepted: {_BOOL_HELP}")
        multihop = mh
    port = 179
    if port_text != "":
        if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
            raise _PeerError(f"port (5th field) is not 1-65535; accepted: {PEER_FORM}")
        port = int(port_text)
    opts = _mpbgp_field(mpbgp_text) if mpbgp_text != "" else {}
    what = "MP-BGP field (6th): "
    return Peer(
        addr,
        asn,
        password,
        multihop,
        port,
        mpbgp_nexthop=_nexthop_mode(opts.get("mpbgp_nexthop", ""), what + "mpbgp_nexthop"),
        mpbgp_ipv4=_nexthop_v4(opts.get("mpbgp_ipv4", ""), what + "mpbgp_ipv4"),
        mpbgp_ipv6=_nexthop_v6(opts.get("mpbgp_ipv6", ""), what + "mpbgp_ipv6"),
        bfd=_bfd_field(bfd_text) if bfd_text != "" else None,
    )


def parse_peers(raw: Raw) -> tuple[Peer, ...]:
    """kube-vip's bgp_peers: ``address:AS:password:multihop:port:mpbgp:bfd``, IPv6 in brackets.

    Source: kube-vip ``pkg/kubevip/config_bgp.go`` ``ParseBGPPeerConfig`` (v1.2). Returns the
    peers' own fields (no global MP-BGP settings applied). Raises :class:`ConfigError` naming the
    entry by position ("bgp_peers entry 2") and at most its address and AS, never its text.
    """
    return tuple(p for _, p in _parse_peers_numbered(raw))


def _parse_peers_numbered(raw: Raw) -> list[tuple[int, Peer]]:
    """The peers of ``bgp_peers`` with their 1-based position among the comma-separated entries."""
    peers: list[tuple[int, Peer]] = []
    for n, entry in enumerate(raw.value.split(","), start=1):
        if entry.strip() == "":
            continue
        where: list[str] = []
        try:
            peer = _parse_entry(entry, where)
            problem = _password_problem(peer.password)
            if problem:
                raise _PeerError(f"{problem}; accepted: {_PASSWORD_HELP}")
        except _PeerError as e:
            known = f" ({', '.join(where)})" if where else ""
            raise ConfigError(f"{raw.name} entry {n}{known}: {e}") from None
        peers.append((n, peer))
    return peers


def _split_outside_brackets(text: str) -> list[str]:
    """``text.split(":")``, except for colons inside ``[...]``."""
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    for c in text:
        if c == "[":
            depth += 1
        elif c == "]" and depth:
            depth -= 1
        if c == ":" and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    out.append("".join(cur))
    return out


def _unbracketed_v6(parts: list[str]) -> bool:
    """True when the entry starts with an IPv6 address written without brackets."""
    try:
        ipaddress.IPv4Address(parts[0])
        return False
    except ValueError:
        pass
    for k in range(min(len(parts), 8), 1, -1):
        try:
            ipaddress.IPv6Address(":".join(parts[:k]).split("%", 1)[0])
            return True
        except ValueError:
            continue
    return False


_LOG_LEVELS = {
    "panic": "error",
    "fatal": "error",
    "error": "error",
    "warn": "warning",
    "warning": "warning",
    "info": "info",
    "debug": "debug",
    "trace": "debug",
}
_LOGRUS = ("error", "error", "error", "warning", "info", "debug", "debug")


def _log_level(raw: Raw) -> str:
    v = raw.value.strip()
    if v.isdigit() and int(v) < len(_LOGRUS):
        return _LOGRUS[int(v)]
    if v.lower() in _LOG_LEVELS:
        return _LOG_LEVELS[v.lower()]
    raise ConfigError(
        f"{_show(raw)}: unknown log level; accepted: debug, info, warning, error, or 0-6 (kube-vip)"
    )


# --------------------------------------------------------------------------------------------
# load(): raw values -> Config
# --------------------------------------------------------------------------------------------


def _host(a: IPAddress) -> str:
    return f"[{a}]" if a.version == 6 else str(a)


def _vip_problem(a: IPAddress) -> str | None:
    """Why ``a`` cannot be announced as a VIP, else None."""
    problem = _usable_unicast(a)
    if problem:
        return problem
    if a.is_loopback:
        return "is a loopback address (routers drop it)"
    if a.is_link_local:
        return "is link-local (routers do not forward it)"
    return None


def _check_peers(
    named: list[tuple[str, Peer]],
    address: IPAddress | None,
    prefix: IPNetwork | None,
    sourceip: IPAddress | None,
    r: Callable[[str], Raw],
) -> None:
    """What the kernel and the wire need of each peer, and of the peers together.

    Addresses a TCP connection can reach, one session per (address, port), the source address
    of the session's family, BFD (:data:`BFD_SUPPORTED`), and a next hop of the VIP's family
    (kube-vip's MP-BGP settings) for a session of the other family.
    """
    seen: dict[tuple[IPAddress, int], str] = {}
    bfd_seen: dict[tuple[IPAddress, bool], tuple[str, Bfd]] = {}
    for where, p in named:
        problem = _usable_unicast(p.address)
        if problem:
            raise ConfigError(
                f"{where}: the peer address {problem}; accepted: a unicast address of the router"
            )
        if address is not None and p.address == address:
            raise ConfigError(
                f"{where}: the peer address is the VIP ({_show(r('address'))}); accepted: the "
                "router's address"
            )
        if prefix is not None and p.address in prefix:
            raise ConfigError(
                f"{where}: the peer address is inside the announced prefix {prefix} "
                f"({_show(r('address'))}, vip_subnet): the VIP's own route would cover the "
                "router (on lo it makes the whole prefix local); accepted: a smaller vip_subnet, "
                "or a router outside the prefix"
            )
        if sourceip is not None and p.address == sourceip:
            raise ConfigError(
                f"{where}: the peer address is bgp_sourceip, this node's own address; "
                "accepted: the router's address"
            )
        if sourceip is not None and sourceip.version != p.address.version:
            raise ConfigError(
                f"{where} is IPv{p.address.version} but {_show(r('bgp_sourceip'))} is "
                f"IPv{sourceip.version}: a session cannot use a source address of the other "
                "family; accepted: peers of bgp_sourceip's family, or bgp_sourceif instead"
            )
        key = (p.address, p.port)
        if key in seen:
            raise ConfigError(
                f"{where}: the same peer address and port as {seen[key]}; accepted: one entry "
                "per router"
            )
        seen[key] = where
        if p.bfd is not None and p.bfd.enabled and not BFD_SUPPORTED:
            raise ConfigError(
                f"{where}: BFD is not yet supported by vipgate; accepted: a 7th field that "
                "disables it (false;...) or none"
            )
        if p.bfd is not None and p.bfd.enabled:
            # One BFD session per address and hop kind (RFC 5881/5883 demultiplex by address):
            # two entries for one router (other ports) share it, so they must agree.
            other = bfd_seen.setdefault((p.address, p.multihop), (where, p.bfd))
            if other[1] != p.bfd:
                raise ConfigError(
                    f"{where}: BFD field {p.bfd} differs from {other[0]}'s {other[1]} for the "
                    "same router (one BFD session per address); accepted: the same 7th field"
                )
        _check_nexthop(where, p, address, sourceip, r)
        for hop in (p.mpbgp_ipv4, p.mpbgp_ipv6):
            if prefix is not None and hop is not None and hop in prefix:
                raise ConfigError(
                    f"{where}: the fixed next hop mpbgp_ipv{hop.version}={hop} is inside the "
                    f"announced prefix {prefix} (a next hop reached through its own route); "
                    "accepted: this node's own address, outside the VIP prefix"
                )


def _check_nexthop(
    where: str,
    p: Peer,
    address: IPAddress | None,
    sourceip: IPAddress | None,
    r: Callable[[str], Raw],
) -> None:
    """A usable next hop of the VIP's family for this peer (kube-vip ``FindMpbgpAddresses``)."""
    mode = p.mpbgp_nexthop
    if mode is NextHopMode.AUTO_SOURCEIP and sourceip is None:
        raise ConfigError(
            f"{where}: mpbgp_nexthop=auto_sourceip takes the next hop from the interface of "
            "bgp_sourceip, which is not set; accepted: set bgp_sourceip, or another mode"
        )
    if mode is NextHopMode.AUTO_SOURCEIF and not r("bgp_sourceif").value.strip():
        raise ConfigError(
            f"{where}: mpbgp_nexthop=auto_sourceif takes the next hop from bgp_sourceif, which "
            "is not set; accepted: set bgp_sourceif, or another mode"
        )
    if mode is NextHopMode.FIXED and p.mpbgp_ipv4 is None and p.mpbgp_ipv6 is None:
        raise ConfigError(
            f"{where}: mpbgp_nexthop=fixed without mpbgp_ipv4 or mpbgp_ipv6; accepted: "
            "set the fixed next hop of the VIP's family"
        )
    if address is None:
        return
    fam = address.version
    fixed = p.mpbgp_ipv4 if fam == 4 else p.mpbgp_ipv6
    setting = f"mpbgp_ipv{fam}"
    example = "192.0.2.11" if fam == 4 else "[2001:db8::11]"
    # A route of the session's own family goes with the session's local address (bgp/peer.py),
    # whatever the mode: only a session of the other family needs the fixed address.
    if mode is NextHopMode.FIXED and fixed is None and p.address.version != fam:
        raise ConfigError(
            f"{where}: mpbgp_nexthop=fixed but no {setting} for the IPv{fam} VIP {address}; "
            f"accepted: set {setting} (globally, or in the entry's 6th field, e.g. "
            f"mpbgp_nexthop=fixed;{setting}={example})"
        )
    if mode is None and p.address.version != fam:
        raise ConfigError(
            f"{where}: the session is IPv{p.address.version} but the VIP {address} is "
            f"IPv{fam}, and no next hop of IPv{fam} is configured (a route with a next hop of "
            "the other family is discarded by the router); accepted: set mpbgp_nexthop=fixed "
            f"and {setting}=<this node's IPv{fam} address> (globally, or in the entry's 6th "
            f"field, e.g. mpbgp_nexthop=fixed;{setting}={example}), or mpbgp_nexthop="
            "auto_sourceip / auto_sourceif, or a peer of the VIP's family"
        )


def _mpbgp_globals(
    r: Callable[[str], Raw],
) -> tuple[NextHopMode | None, ipaddress.IPv4Address | None, ipaddress.IPv6Address | None]:
    """The global ``mpbgp_nexthop`` / ``mpbgp_ipv4`` / ``mpbgp_ipv6`` (kube-vip: env only)."""
    try:
        mode = _nexthop_mode(r("mpbgp_nexthop").value.strip(), _show(r("mpbgp_nexthop")))
        v4 = _nexthop_v4(r("mpbgp_ipv4").value.strip(), _show(r("mpbgp_ipv4")))
        v6 = _nexthop_v6(r("mpbgp_ipv6").value.strip(), _show(r("mpbgp_ipv6")))
    except _PeerError as e:
        raise ConfigError(str(e)) from None
    return mode, v4, v6


def load(env: Mapping[str, str], flags: Mapping[str, str | None] | None = None) -> Config:
    """Parse and validate. Raises ConfigError on the first bad value."""
    raw = collect(env, flags or {})
    r = raw.__getitem__

    address: IPAddress | None = None
    # kube-vip accepts `vip_address` alone (the reference manifest sets it without vip_subnet).
    if r("address").value.strip():
        address = _ip(r("address"))
        problem = _vip_problem(address)
        if problem:
            raise ConfigError(
                f"{_show(r('address'))}: the VIP {problem}; accepted: a unicast IPv4 or global "
                "IPv6 address, e.g. 203.0.113.100 or 2001:db8:100::100"
            )
    vip_subnet: int | None = None
    if r("vip_subnet").value.strip():
        hi = address.max_prefixlen if address is not None else 128
        what = f"0-{hi}" + (f" for the IPv{address.version} address {address}" if address else "")
        vip_subnet = _int(r("vip_subnet"), 0, hi, what)

    bgp_as = _asn(r("bgp_as"))
    routerid: ipaddress.IPv4Address | None = None
    if r("bgp_routerid").value.strip():
        rid = _ip(r("bgp_routerid"), "a non-zero IPv4 address, e.g. 192.0.2.11")
        if not isinstance(rid, ipaddress.IPv4Address) or int(rid) == 0:
            raise ConfigError(
                f"{_show(r('bgp_routerid'))}: accepted: a non-zero IPv4 address, e.g. 192.0.2.11"
            )
        routerid = rid

    # Each peer with the words that name it in an error (never its password).
    named: list[tuple[str, Peer]] = [
        (f"{r('bgp_peers').name} entry {n} ({_host(p.address)}, AS {p.asn})", p)
        for n, p in _parse_peers_numbered(r("bgp_peers"))
    ]
    if r("bgp_peeraddress").value.strip():
        paddr = _ip(r("bgp_peeraddress"))
        pas = _asn(r("bgp_peeras"))
        peer = Peer(paddr, pas, r("bgp_peerpass").value, _bool(r("bgp_multihop")))
        named.append((_show(r("bgp_peeraddress")), peer))
    else:
        # Validate them anyway: a typo must not pass silently.
        _asn(r("bgp_peeras"))
        _bool(r("bgp_multihop"))
    problem = _password_problem(r("bgp_peerpass").value)
    if problem:
        raise ConfigError(
            f"{_show(r('bgp_peerpass'), True)}: {problem}; accepted: {_PASSWORD_HELP}"
        )

    mpbgp_nexthop, mpbgp_ipv4, mpbgp_ipv6 = _mpbgp_globals(r)
    named = [
        (
            where,
            replace(
                p,
                mpbgp_nexthop=p.mpbgp_nexthop or mpbgp_nexthop,
                mpbgp_ipv4=p.mpbgp_ipv4 or mpbgp_ipv4,
                mpbgp_ipv6=p.mpbgp_ipv6 or mpbgp_ipv6,
            ),
        )
        for where, p in named
    ]

    sourceip: IPAddress | None = None
    if r("bgp_sourceip").value.strip():
        sourceip = _ip(r("bgp_sourceip"))
        problem = _usable_unicast(sourceip)
        if problem:
            raise ConfigError(
                f"{_show(r('bgp_sourceip'))}: {problem}; accepted: a unicast address of this "
                "node, of the peers' address family"
            )
    sourceif = _ifname(r("bgp_sourceif"))
    if sourceip is not None and sourceif:
        raise ConfigError(
            f"{_show(r('bgp_sourceip'))} and {_show(r('bgp_sourceif'))}: "
            "set one or the other, not both"
        )
    prefix: IPNetwork | None = None
    if address is not None:
        length = vip_subnet if vip_subnet is not None else address.max_prefixlen
        prefix = ipaddress.ip_network(f"{address}/{length}", strict=False)
        if sourceip is not None and sourceip in prefix:
            raise ConfigError(
                f"{_show(r('bgp_sourceip'))}: inside the announced prefix {prefix} (the VIP's "
                "address moves between nodes, a session from it breaks); accepted: this node's "
                "own address, outside the VIP prefix"
            )
    _check_peers(named, address, prefix, sourceip, r)
    peers = [p for _, p in named]

    hold = _int(r("bgp_hold_time"), 0, 65535, "0 (no keepalives) or 3-65535 seconds (RFC 4271)")
    if hold in (1, 2):
        raise ConfigError(
            f"{_show(r('bgp_hold_time'))}: RFC 4271 forbids 1 and 2; accepted: 0 or 3-65535 seconds"
        )
    keepalive = _int(r("bgp_keepalive_interval"), 0, 21845, "0-21845 seconds, below the hold time")
    if hold and keepalive >= hold:
        raise ConfigError(
            f"{_show(r('bgp_keepalive_interval'))}: must be below bgp_hold_time={hold}; "
            f"accepted: 0 (hold/3) to {hold - 1} seconds (one third of the hold time is usual)"
        )

    url = r("control_plane_health_check_address").value
    if url != "":
        url = _url(r("control_plane_health_check_address"))
    period = _seconds(r("control_plane_health_check_period_seconds"))
    timeout = _seconds(r("control_plane_health_check_timeout_seconds"))
    threshold = _int(
        r("control_plane_health_check_failure_threshold"), 1, 1000, "an integer 1-1000"
    )
    fast_raw = r("control_plane_health_check_fast_period_seconds")
    if fast_raw.source is Source.DEFAULT and float(fast_raw.value) >= period:
        fast_period = 0.0  # a period this short needs no fast period; an explicit one must fit
    else:
        fast_period = _seconds0(fast_raw, period, "control_plane_health_check_period_seconds")
    success_threshold = _int(
        r("control_plane_health_check_success_threshold"), 1, 1000, "an integer 1-1000"
    )
    shutdown_address = r("control_plane_health_check_shutdown_address").value
    if shutdown_address != "" and shutdown_address.strip().lower() != "off":
        shutdown_address = _url(r("control_plane_health_check_shutdown_address"))
    shutdown_period = _seconds(r("control_plane_health_check_shutdown_period_seconds"))
    graceful = _seconds0(r("bgp_graceful_shutdown_seconds"))
    ca_path = r("control_plane_health_check_ca_path").value
    if ca_path != "":
        ca_path = _ca_path(r("control_plane_health_check_ca_path"))
    client_cert, client_key = _client_cert(r(_CLIENT_CERT), r(_CLIENT_KEY))
    server_name = r("control_plane_health_check_server_name").value.strip()
    if server_name and (
        any(c.isspace() or c in "/:@" for c in server_name) or _host_problem(server_name)
    ):
        raise ConfigError(
            f"{_show(r('control_plane_health_check_server_name'))}: not a host name; "
            "accepted: a DNS name or IP address the certificate names, e.g. kubernetes"
        )

    bools = {
        k: _bool(r(k))
        for k in ("cp_enable", "bgp_enable", "vip_leaderelection", "lb_enable", "svc_enable")
    }
    prom = r("prometheus_server").value
    if prom.strip() != "":
        prom = _listen(r("prometheus_server"))
    log_level = _log_level(r("vip_loglevel"))

    if bools["bgp_enable"] and not peers:
        raise ConfigError(
            "bgp_enable=true but no BGP peer is configured: set bgp_peers "
            "(address:AS:password:multihop, e.g. 192.0.2.1:65001::false) or bgp_peeraddress"
        )

    warnings: list[str] = []
    for key, what in (
        ("vip_leaderelection", "leader election"),
        ("lb_enable", "the IPVS load balancer"),
        ("svc_enable", "Service type LoadBalancer mode"),
    ):
        if bools[key]:
            warnings.append(
                f"{key}=true: vipgate does not implement {what}; it is ignored: every node "
                "announces the VIP over BGP, gated by the health check "
                "(control_plane_health_check_address) when one is set"
            )
    if address is not None and not url:
        warnings.append(
            "control_plane_health_check_address is empty: the VIP is announced "
            "unconditionally, whether this node's kube-apiserver answers or not (set it to "
            "https://localhost:6443/livez, as kube-vip's manifest does)"
        )
    if url and timeout >= period:
        warnings.append(
            f"control_plane_health_check_timeout_seconds={timeout:g} >= "
            f"control_plane_health_check_period_seconds={period:g}: a check that times out "
            "runs into the next tick, so checks will run back to back"
        )
    env_addr = [n for n in ("address", "vip_address") if env.get(n, "") != ""]
    if len(env_addr) == 2 and env["address"].strip() != env["vip_address"].strip():
        warnings.append("both address and vip_address are set and differ: address wins")

    return Config(
        address=address,
        vip_subnet=vip_subnet,
        vip_interface=_ifname(r("vip_interface")),
        cp_enable=bools["cp_enable"],
        bgp_enable=bools["bgp_enable"],
        bgp_as=bgp_as,
        bgp_routerid=routerid,
        bgp_routerinterface=_ifname(r("bgp_routerinterface")),
        peers=tuple(peers),
        bgp_sourceip=sourceip,
        bgp_sourceif=sourceif,
        bgp_hold_time=hold,
        bgp_keepalive_interval=keepalive,
        health_url=url,
        health_period=period,
        health_timeout=timeout,
        health_threshold=threshold,
        health_ca_path=ca_path,
        health_server_name=server_name,
        health_client_cert_path=client_cert,
        health_client_key_path=client_key,
        leader_election=bools["vip_leaderelection"],
        lb_enable=bools["lb_enable"],
        svc_enable=bools["svc_enable"],
        prometheus_server=prom.strip(),
        log_level=log_level,
        mpbgp_nexthop=mpbgp_nexthop,
        mpbgp_ipv4=mpbgp_ipv4,
        mpbgp_ipv6=mpbgp_ipv6,
        health_fast_period=fast_period,
        health_success_threshold=success_threshold,
        health_shutdown_address=shutdown_address,
        health_shutdown_period=shutdown_period,
        bgp_graceful_shutdown=graceful,
        sources={k: v.source for k, v in raw.items()},
        warnings=tuple(warnings),
    )


def describe(
    config: Config, env: Mapping[str, str], flags: Mapping[str, str | None]
) -> list[tuple[str, str, str]]:
    """(setting, shown value, source) for every setting: what `vipgate config` prints.

    Secrets are shown as ``***``; peers with their passwords redacted.
    """
    raw = collect(env, flags)
    rows: list[tuple[str, str, str]] = []
    for s in SETTINGS:
        rv = raw[s.key]
        if s.key == "bgp_peers":
            shown = ",".join(str(p) for p in parse_peers(rv))
        elif s.secret:
            shown = REDACTED if rv.value else ""
        else:
            shown = rv.value
        source = rv.source.value if rv.source is Source.DEFAULT else f"{rv.source.value} {rv.name}"
        # A value from bytes that are not UTF-8 (a path, say) must still print.
        shown = shown.encode("utf-8", "backslashreplace").decode()
        rows.append((s.key, shown, source))
    prefix = config.prefix
    rows.append(("(announced prefix)", str(prefix) if prefix else "", "derived"))
    rows.append(("(peers in effect)", ",".join(str(p) for p in config.peers), "derived"))
    rows.append(("(keepalive in effect)", str(config.keepalive), "derived"))
    rows.append(("(router id)", config.router_id_source.describe(), "derived"))
    rows.append(("(readiness read)", config.readiness_url or "off", "derived"))
    return rows
