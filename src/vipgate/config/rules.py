"""Rules between settings: small named checks run after every setting has parsed.

Each rule takes the :class:`Loaded` values and raises :class:`ConfigError` naming the settings
involved, their values (never a secret) and what is accepted; each warning rule returns the
warnings it finds. :data:`RULES` and :data:`WARNINGS` list them in the order they run. A peer is
checked by each of :data:`PEER_RULES` in turn, the peers in their order.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from vipgate.config.names import closest, looks_like_a_setting
from vipgate.config.peers import Bfd, NextHopMode, Peer
from vipgate.config.table import SETTINGS_BY_KEY
from vipgate.config.values import (
    ConfigError,
    IPAddress,
    IPNetwork,
    Raw,
    Source,
    _no_password,
    read_pem,
    show,
    usable_unicast,
)
from vipgate.config.vips import interface_prefix, split

_HEALTH_ADDRESS = "control_plane_health_check_address"
_CLIENT_CERT = "control_plane_health_check_client_cert_path"
_CLIENT_KEY = "control_plane_health_check_client_key_path"


@dataclass
class Loaded:
    """The raw and parsed values of every setting (by key), and what is derived from them."""

    raw: Mapping[str, Raw]
    got: Mapping[str, Any]
    env: Mapping[str, str]
    peers: list[tuple[str, Peer]] = field(default_factory=list)  # (words naming it, peer)
    prefixes: tuple[IPNetwork, ...] = ()  # each VIP's on vip_interface, in address's order
    # State of the rules between peers: the first entry of each (address, port), and the BFD
    # field of each (address, hop kind).
    seen: dict[tuple[IPAddress, int], str] = field(default_factory=dict)
    bfd_seen: dict[tuple[IPAddress, bool], tuple[str, Bfd]] = field(default_factory=dict)

    @property
    def addresses(self) -> tuple[IPAddress, ...]:
        addresses: tuple[IPAddress, ...] = self.got["address"]
        return addresses

    def covering(self, a: IPAddress) -> IPNetwork | None:
        """The VIP's prefix on the interface (``address``, ``vip_subnet``) that holds ``a``,
        or None."""
        return next((p for p in self.prefixes if a in p), None)

    @property
    def sourceip(self) -> IPAddress | None:
        sourceip: IPAddress | None = self.got["bgp_sourceip"]
        return sourceip


def loaded(raw: Mapping[str, Raw], got: Mapping[str, Any], env: Mapping[str, str]) -> Loaded:
    """The values with the peers in effect (``bgp_peers`` and the single peer, each with the
    global ``mpbgp_*`` settings where its own 6th field has none, as kube-vip's
    ``SetMpbgpOptions``) and the VIPs' prefixes on the interface."""
    named: list[tuple[str, Peer]] = list(got["bgp_peers"])
    if got["bgp_peeraddress"] is not None:
        single = Peer(
            got["bgp_peeraddress"], got["bgp_peeras"], got["bgp_peerpass"], got["bgp_multihop"]
        )
        named.append((show(raw["bgp_peeraddress"]), single))
    mode, v4, v6 = got["mpbgp_nexthop"], got["mpbgp_ipv4"], got["mpbgp_ipv6"]
    peers = [
        (
            where,
            replace(
                p,
                mpbgp_nexthop=p.mpbgp_nexthop or mode,
                mpbgp_ipv4=p.mpbgp_ipv4 or v4,
                mpbgp_ipv6=p.mpbgp_ipv6 or v6,
            ),
        )
        for where, p in named
    ]
    prefixes = tuple(interface_prefix(a, got["vip_subnet"]) for a in got["address"])
    return Loaded(raw, got, env, peers, prefixes)


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------


def sourceip_or_sourceif(c: Loaded) -> None:
    if c.sourceip is not None and c.got["bgp_sourceif"]:
        raise ConfigError(
            f"{show(c.raw['bgp_sourceip'])} and {show(c.raw['bgp_sourceif'])}: "
            "set one or the other, not both"
        )


def sourceip_outside_prefix(c: Loaded) -> None:
    prefix = None if c.sourceip is None else c.covering(c.sourceip)
    if prefix is not None:
        raise ConfigError(
            f"{show(c.raw['bgp_sourceip'])}: inside the VIP's prefix {prefix} (the VIP's "
            "address moves between nodes, a session from it breaks); accepted: this node's "
            "own address, outside the VIP prefix"
        )


def each_peer(c: Loaded) -> None:
    """What the kernel and the wire need of each peer, and of the peers together."""
    for where, p in c.peers:
        for rule in PEER_RULES:
            rule(where, p, c)


def check_client_pair(cert: Raw, key: Raw) -> bool:
    """Both client-certificate settings or neither (no file is read). True when both are set."""
    if bool(cert.value) == bool(key.value):
        return bool(cert.value)
    given, missing = (cert, key) if cert.value else (key, cert)
    name = missing.name  # the unset one: its canonical env name, or its flag next to a flag
    if given.source is Source.FLAG and name in SETTINGS_BY_KEY:
        name = SETTINGS_BY_KEY[name].flags[0]
    raise ConfigError(
        f"{show(given)} without {name}: set both the client certificate and its key "
        f"(the same file if it holds both, like kubelet's kubelet-client-current.pem), or neither"
    )


def client_certificate(c: Loaded) -> None:
    """The health check's client certificate and key: both or neither, readable PEM files, a
    certificate in the one and an unencrypted private key in the other, the key matching the
    certificate (``ssl.SSLContext.load_cert_chain``). Key material is never part of an error."""
    cert, key = c.raw[_CLIENT_CERT], c.raw[_CLIENT_KEY]
    if not check_client_pair(cert, key):
        return
    accepted_cert = "a readable PEM file holding the client certificate (signed by a CA the "
    accepted_cert += "apiserver's --client-ca-file trusts)"
    accepted_key = "a readable PEM file holding the certificate's unencrypted private key"
    if b"-----BEGIN CERTIFICATE-----" not in read_pem(cert, accepted_cert):
        raise ConfigError(f"{show(cert)}: PEM without a certificate; accepted: {accepted_cert}")
    if b"PRIVATE KEY-----" not in read_pem(key, accepted_key):
        raise ConfigError(f"{show(key)}: PEM without a private key; accepted: {accepted_key}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_cert_chain(cert.value, key.value, password=_no_password)
    except ValueError:
        raise ConfigError(
            f"{show(key)}: the private key is encrypted; accepted: {accepted_key}"
        ) from None
    except ssl.SSLError as e:
        reason = e.reason or ""
        if reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                f"{show(key)}: this key does not belong to the certificate {show(cert)}; "
                f"accepted: the private key of that certificate"
            ) from None
        raise ConfigError(
            f"{show(cert)} with {show(key)}: does not load ({reason or 'SSL error'}); "
            f"accepted: {accepted_cert}, and {accepted_key}"
        ) from None


def every_vip_has_a_session(c: Loaded) -> None:
    """Each VIP of a dual-stack pair goes over a session of its family, or over one with
    ``mpbgp_nexthop`` (MP-BGP, RFC 4760): a VIP no session can carry is refused."""
    for address in c.addresses if c.peers else ():
        if any(p.address.version == address.version or p.mpbgp_nexthop for _, p in c.peers):
            continue
        fam, other = address.version, 10 - address.version
        raise ConfigError(
            f"{show(c.raw['address'])}: no BGP session can carry the IPv{fam} VIP {address}: "
            f"every peer is IPv{other} without mpbgp_nexthop; accepted: a peer of IPv{fam} as "
            f"well (one session per family), or mpbgp_nexthop with mpbgp_ipv{fam} on the "
            f"IPv{other} peers (IPv{fam} routes over an IPv{other} session)"
        )


def bgp_needs_a_peer(c: Loaded) -> None:
    if c.got["bgp_enable"] and not c.peers:
        raise ConfigError(
            "bgp_enable=true but no BGP peer is configured: set bgp_peers "
            "(address:AS:password:multihop, e.g. 192.0.2.1:65001::false) or bgp_peeraddress"
        )


# --------------------------------------------------------------------------------------------
# Rules of one peer (``where`` names it: "bgp_peers entry 2 (192.0.2.2, AS 65001)")
# --------------------------------------------------------------------------------------------


def peer_is_unicast(where: str, p: Peer, c: Loaded) -> None:
    problem = usable_unicast(p.address)
    if problem:
        raise ConfigError(
            f"{where}: the peer address {problem}; accepted: a unicast address of the router"
        )


def peer_is_not_the_vip(where: str, p: Peer, c: Loaded) -> None:
    if p.address in c.addresses:
        raise ConfigError(
            f"{where}: the peer address is the VIP ({show(c.raw['address'])}); accepted: the "
            "router's address"
        )


def peer_outside_prefix(where: str, p: Peer, c: Loaded) -> None:
    prefix = c.covering(p.address)
    if prefix is not None:
        raise ConfigError(
            f"{where}: the peer address is inside the VIP's prefix {prefix} "
            f"({show(c.raw['address'])}, vip_subnet): the VIP's address on its interface would "
            "cover the router (on lo it makes the whole prefix local); accepted: a smaller "
            "vip_subnet, or a router outside the prefix"
        )


def peer_is_not_the_source(where: str, p: Peer, c: Loaded) -> None:
    if c.sourceip is not None and p.address == c.sourceip:
        raise ConfigError(
            f"{where}: the peer address is bgp_sourceip, this node's own address; "
            "accepted: the router's address"
        )


def peer_of_the_source_family(where: str, p: Peer, c: Loaded) -> None:
    sourceip = c.sourceip
    if sourceip is not None and sourceip.version != p.address.version:
        raise ConfigError(
            f"{where} is IPv{p.address.version} but {show(c.raw['bgp_sourceip'])} is "
            f"IPv{sourceip.version}: a session cannot use a source address of the other "
            "family; accepted: peers of bgp_sourceip's family, or bgp_sourceif instead"
        )


def peer_is_unique(where: str, p: Peer, c: Loaded) -> None:
    key = (p.address, p.port)
    if key in c.seen:
        raise ConfigError(
            f"{where}: the same peer address and port as {c.seen[key]}; accepted: one entry "
            "per router"
        )
    c.seen[key] = where


def peer_bfd_agrees(where: str, p: Peer, c: Loaded) -> None:
    """One BFD session per address and hop kind (RFC 5881/5883 demultiplex by address): two
    entries for one router (other ports) share it, so their BFD fields must agree."""
    if p.bfd is None or not p.bfd.enabled:
        return
    other = c.bfd_seen.setdefault((p.address, p.multihop), (where, p.bfd))
    if other[1] != p.bfd:
        raise ConfigError(
            f"{where}: BFD field {p.bfd} differs from {other[0]}'s {other[1]} for the "
            "same router (one BFD session per address); accepted: the same 7th field"
        )


def peer_nexthop_mode_has_its_source(where: str, p: Peer, c: Loaded) -> None:
    """What each ``mpbgp_nexthop`` mode takes its address from is set (kube-vip
    ``FindMpbgpAddresses``)."""
    mode = p.mpbgp_nexthop
    if mode is NextHopMode.AUTO_SOURCEIP and c.sourceip is None:
        raise ConfigError(
            f"{where}: mpbgp_nexthop=auto_sourceip takes the next hop from the interface of "
            "bgp_sourceip, which is not set; accepted: set bgp_sourceip, or another mode"
        )
    if mode is NextHopMode.AUTO_SOURCEIF and not c.raw["bgp_sourceif"].value.strip():
        raise ConfigError(
            f"{where}: mpbgp_nexthop=auto_sourceif takes the next hop from bgp_sourceif, which "
            "is not set; accepted: set bgp_sourceif, or another mode"
        )
    if mode is NextHopMode.FIXED and p.mpbgp_ipv4 is None and p.mpbgp_ipv6 is None:
        raise ConfigError(
            f"{where}: mpbgp_nexthop=fixed without mpbgp_ipv4 or mpbgp_ipv6; accepted: "
            "set the fixed next hop of the VIP's family"
        )


def peer_has_a_nexthop_of_the_vip_family(where: str, p: Peer, c: Loaded) -> None:
    """A route of the session's own family goes with the session's local address (bgp/peer.py),
    whatever the mode: only a VIP of the other family needs a next hop of its own. Without
    ``mpbgp_nexthop`` a session carries its own family only, which is right for a dual-stack
    VIP over one session per family (:func:`every_vip_has_a_session`) and refused when the
    session would carry no VIP at all."""
    carries_own = any(a.version == p.address.version for a in c.addresses)
    for address in c.addresses:
        if p.address.version != address.version:
            _other_family_nexthop(where, p, address, carries_own)


def _other_family_nexthop(where: str, p: Peer, address: IPAddress, carries_own: bool) -> None:
    fam = address.version
    fixed = p.mpbgp_ipv4 if fam == 4 else p.mpbgp_ipv6
    setting = f"mpbgp_ipv{fam}"
    example = "192.0.2.11" if fam == 4 else "[2001:db8::11]"
    if p.mpbgp_nexthop is NextHopMode.FIXED and fixed is None:
        raise ConfigError(
            f"{where}: mpbgp_nexthop=fixed but no {setting} for the IPv{fam} VIP {address}; "
            f"accepted: set {setting} (globally, or in the entry's 6th field, e.g. "
            f"mpbgp_nexthop=fixed;{setting}={example})"
        )
    if p.mpbgp_nexthop is None and not carries_own:
        raise ConfigError(
            f"{where}: the session is IPv{p.address.version} but the VIP {address} is "
            f"IPv{fam}, and no next hop of IPv{fam} is configured (a route with a next hop of "
            "the other family is discarded by the router); accepted: set mpbgp_nexthop=fixed "
            f"and {setting}=<this node's IPv{fam} address> (globally, or in the entry's 6th "
            f"field, e.g. mpbgp_nexthop=fixed;{setting}={example}), or mpbgp_nexthop="
            "auto_sourceip / auto_sourceif, or a peer of the VIP's family"
        )


def peer_fixed_nexthop_outside_prefix(where: str, p: Peer, c: Loaded) -> None:
    for hop in (p.mpbgp_ipv4, p.mpbgp_ipv6):
        prefix = None if hop is None else c.covering(hop)
        if hop is not None and prefix is not None:
            raise ConfigError(
                f"{where}: the fixed next hop mpbgp_ipv{hop.version}={hop} is inside the "
                f"VIP's prefix {prefix} (on every node's interface, no one node's address); "
                "accepted: this node's own address, outside the VIP prefix"
            )


PEER_RULES: tuple[Callable[[str, Peer, Loaded], None], ...] = (
    peer_is_unicast,
    peer_is_not_the_vip,
    peer_outside_prefix,
    peer_is_not_the_source,
    peer_of_the_source_family,
    peer_is_unique,
    peer_bfd_agrees,
    peer_nexthop_mode_has_its_source,
    peer_has_a_nexthop_of_the_vip_family,
    peer_fixed_nexthop_outside_prefix,
)

RULES: tuple[Callable[[Loaded], None], ...] = (
    sourceip_or_sourceif,
    sourceip_outside_prefix,
    each_peer,
    every_vip_has_a_session,
    client_certificate,
    bgp_needs_a_peer,
)


# --------------------------------------------------------------------------------------------
# Warnings: the configuration loads, but something in it is probably not what was meant
# --------------------------------------------------------------------------------------------


def not_implemented_modes(c: Loaded) -> list[str]:
    return [
        f"{key}=true: vipgate does not implement {what}; it is ignored: every node "
        "announces the VIP over BGP, gated by the health check "
        "(control_plane_health_check_address) when one is set"
        for key, what in (
            ("vip_leaderelection", "leader election"),
            ("lb_enable", "the IPVS load balancer"),
            ("svc_enable", "Service type LoadBalancer mode"),
        )
        if c.got[key]
    ]


def no_health_check(c: Loaded) -> list[str]:
    """The health gate is off. First of :data:`WARNINGS` (``vipgate config`` prints the
    configuration's warnings before the names it ignores): a kube-vip manifest brings a dozen
    ignored names that would bury it. Still a warning, not an error: kube-vip starts without."""
    if not c.addresses or c.got["control_plane_health_check_address"]:
        return []
    typos = [n for n in sorted(c.env) if c.env[n] != "" and _typo_of_health_address(n)]
    typo = f" ({typos[0]} is set: a typo of it?)" if typos else ""
    return [
        "health gate OFF: control_plane_health_check_address is empty"
        f"{typo}, so the VIP is announced unconditionally, whether this node's kube-apiserver "
        "answers or not (set it to https://localhost:6443/livez, as kube-vip's manifest does)"
    ]


def _typo_of_health_address(name: str) -> bool:
    """An environment name vipgate warns of as unknown whose closest known name is the health
    check's address (:mod:`vipgate.config.names`)."""
    return looks_like_a_setting(name) and closest(name) == _HEALTH_ADDRESS


def timeout_over_period(c: Loaded) -> list[str]:
    period = c.got["control_plane_health_check_period_seconds"]
    timeout = c.got["control_plane_health_check_timeout_seconds"]
    if not c.got["control_plane_health_check_address"] or timeout < period:
        return []
    return [
        f"control_plane_health_check_timeout_seconds={timeout:g} >= "
        f"control_plane_health_check_period_seconds={period:g}: a check that times out "
        "runs into the next tick, so checks will run back to back"
    ]


def address_and_vip_address_differ(c: Loaded) -> list[str]:
    env_addr = [n for n in ("address", "vip_address") if c.env.get(n, "") != ""]
    if len(env_addr) == 2 and split(c.env["address"]) != split(c.env["vip_address"]):
        return ["both address and vip_address are set and differ: address wins"]
    return []


def metrics_off_but_an_address_given(c: Loaded) -> list[str]:
    server = c.raw["prometheus_server"]
    if c.got["prometheus_enable"] or server.source is Source.DEFAULT or not server.value.strip():
        return []
    return [
        f"{show(server)} is not served: {show(c.raw['prometheus_enable'])} turns the metrics "
        "server off"
    ]


WARNINGS: tuple[Callable[[Loaded], list[str]], ...] = (
    no_health_check,
    not_implemented_modes,
    timeout_over_period,
    address_and_vip_address_differ,
    metrics_off_but_an_address_given,
)
