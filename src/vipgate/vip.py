"""The VIP on the node and the host facts the manager resolves at start, through netlink.

* :func:`ensure_vip` puts the VIP on ``vip_interface`` (host scope on ``lo``, so the node accepts
  traffic for it without answering ARP/ND for it anywhere); an address already present is left
  alone and is not removed at exit. :func:`remove_vip` removes only what vipgate added. A VIP
  vipgate adds carries a mark -- IPv4: the address label ``<ifname>:vipgate``; IPv6: the address
  protocol IFA_PROTO :data:`VIP_PROTO` (Linux >= 5.18; older kernels ignore it) -- so a run after
  one that died without cleaning up (SIGKILL) recognises the address as its own and removes it
  at exit.
* :func:`default_interface` is kube-vip's default for ``vip_interface``.
* :func:`resolve_router_id`: the explicit id, else the first IPv4 address of
  ``bgp_routerinterface``, else the first global IPv4 address of the host -- never 0.0.0.0.
* :func:`lan_overlap_warning`: a VIP inside a LAN subnet makes every node answer ARP for it.
* :func:`mpbgp_next_hops`: kube-vip's MP-BGP next hops of one peer (``mpbgp_nexthop`` = fixed,
  auto_sourceip, auto_sourceif); :func:`check_next_hops` refuses to start (:class:`HostError`,
  exit 2) when a peer of the other family has no next hop of a VIP's family.
* :func:`host_setup` does all of it at start, the VIPs last (a dual-stack pair: both), and
  returns :class:`HostFacts`; :func:`remove_vips` undoes them at exit.
  :func:`stated_facts` gives the facts the configuration states, without the host (to build
  the daemon's parts where the host is not to be touched: tests, the fuzzer).
* :func:`isolated` runs any of these in a short-lived forked child: importing pyroute2 costs
  about 13 MB of resident memory for the life of a process (measured: 19 -> 32 MB), a third of
  the daemon's budget, for work done once at start and once at exit. So the daemon never
  imports it; the child does, does the work, sends the result back over a pipe and exits.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import pickle
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from vipgate.config import Config, IPAddress, NextHopMode, Peer, RouterIdSource

if TYPE_CHECKING:
    from pyroute2 import IPRoute

log = logging.getLogger("vipgate.vip")

RT_SCOPE_UNIVERSE = 0
RT_SCOPE_HOST = 254


class HostError(RuntimeError):
    """A fact about the host the configuration needs is missing (interface, address)."""


T = TypeVar("T")


def isolated(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a forked child; its result or exception comes back through a pipe.

    Call it outside the event loop. The child shares nothing back but the pickled outcome
    (our own process, so unpickling is safe) and leaves through ``os._exit``.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        outcome: tuple[bool, object]
        try:
            outcome = (True, fn(*args))
        except BaseException as e:
            outcome = (False, e)
        try:
            data = pickle.dumps(outcome)
        except Exception as e:  # an unpicklable exception: keep its text
            data = pickle.dumps((False, RuntimeError(f"{type(e).__name__}: {e}")))
        with os.fdopen(w, "wb") as f:
            f.write(data)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise HostError(f"netlink helper process failed (wait status {status})")
    ok, value = pickle.loads(data)
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[no-any-return]


def defer_stop_signals(early: list[signal.Signals]) -> None:
    """While the host work runs outside the event loop, SIGTERM/SIGINT only append to `early`
    (in the forked child too, which finishes its work): the caller undoes the setup and exits
    0 rather than dying half-way with the VIP left on the interface."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda n, _f: early.append(signal.Signals(n)))


def _iproute() -> IPRoute:
    from pyroute2 import IPRoute

    return IPRoute()


@dataclass(frozen=True)
class VipHandle:
    """What :func:`ensure_vip` did, so :func:`remove_vip` can undo exactly that."""

    address: IPAddress
    prefixlen: int
    interface: str
    index: int
    added: bool


def _index(ipr: IPRoute, name: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise HostError(f"interface {name!r} does not exist on this host")
    return int(found[0])


def default_interface() -> str:
    """The interface of the IPv4 (else IPv6) default route."""
    with _iproute() as ipr:
        for family in (socket.AF_INET, socket.AF_INET6):
            for route in ipr.route("dump", family=family, table=254):
                if route["dst_len"] == 0 and route.get("oif"):
                    links = ipr.get_links(route.get("oif"))
                    if links:
                        return str(links[0].get("ifname"))
    raise HostError("vip_interface is empty and the host has no default route to take it from")


def _addresses(ipr: IPRoute, family: int, index: int | None = None) -> list[tuple[str, int, int]]:
    """(address, prefixlen, ifindex) of the host's addresses of one family."""
    return [(a, plen, i) for a, plen, i, _ in _labelled(ipr, family, index)]


def _labelled(
    ipr: IPRoute, family: int, index: int | None = None
) -> list[tuple[str, int, int, str]]:
    """(address, prefixlen, ifindex, mark) of the host's addresses of one family; mark is the
    IPv4 label, or for IPv6 ``proto:<IFA_PROTO>`` ("" when none)."""
    kw = {"family": family}
    if index is not None:
        kw["index"] = index
    out = []
    for a in ipr.get_addr(**kw):
        mark = str(a.get("label") or "")
        if family == socket.AF_INET6 and a.get("proto"):
            mark = f"proto:{a.get('proto')}"
        out.append((str(a.get("address")), int(a["prefixlen"]), int(a["index"]), mark))
    return out


VIP_PROTO = 0x76
"""IFA_PROTO (address protocol, Linux >= 5.18; 0-3 are the kernel's own) of an IPv6 VIP
vipgate added: IPv6 addresses have no label, so this is how a later run knows it is ours."""


def vip_label(interface: str, version: int = 4) -> str:
    """The mark of a VIP vipgate added: IPv4 the label ``<ifname>:vipgate`` (IFA_LABEL),
    IPv6 ``proto:118`` (:data:`VIP_PROTO`), as :func:`_labelled` reports them."""
    return f"{interface}:vipgate"[:15] if version == 4 else f"proto:{VIP_PROTO}"


def ensure_vip(address: IPAddress, prefixlen: int, interface: str) -> VipHandle:
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with _iproute() as ipr:
        index = _index(ipr, interface)
        for a, plen, _, label in _labelled(ipr, family, index):
            if ipaddress.ip_address(a) != address:
                continue
            if label == vip_label(interface, address.version):
                # Left by an earlier vipgate that could not clean up (SIGKILL, OOM): ours.
                log.info(
                    "VIP %s/%d on %s was added by an earlier vipgate run: adopted "
                    "(removed at exit)",
                    address,
                    plen,
                    interface,
                )
                return VipHandle(address, plen, interface, index, added=True)
            log.info(
                "VIP %s/%d already on %s: left alone (and kept at exit)",
                address,
                plen,
                interface,
            )
            return VipHandle(address, plen, interface, index, added=False)
        scope = RT_SCOPE_HOST if interface == "lo" else RT_SCOPE_UNIVERSE
        kwargs: dict[str, object] = {
            "index": index,
            "address": str(address),
            "prefixlen": prefixlen,
            "scope": scope,
        }
        if address.version == 4:
            kwargs["label"] = vip_label(interface)  # how a later run knows it is ours
        else:
            kwargs["flags"] = 0x02  # IFA_F_NODAD: usable at once
            kwargs["proto"] = VIP_PROTO  # IFA_PROTO: how a later run knows it is ours
        ipr.addr("add", **kwargs)
    log.info("VIP %s/%d added to %s", address, prefixlen, interface)
    return VipHandle(address, prefixlen, interface, index, added=True)


def remove_vips(handles: tuple[VipHandle, ...]) -> None:
    """Remove every VIP vipgate added (a dual-stack pair: both), in reverse order."""
    for handle in reversed(handles):
        remove_vip(handle)


def remove_vip(handle: VipHandle) -> None:
    if not handle.added:
        return
    try:
        with _iproute() as ipr:
            ipr.addr(
                "del", index=handle.index, address=str(handle.address), prefixlen=handle.prefixlen
            )
        log.info("VIP %s/%d removed from %s", handle.address, handle.prefixlen, handle.interface)
    except Exception as e:  # already gone, interface gone: nothing left to undo
        if getattr(e, "code", None) == errno.EADDRNOTAVAIL:  # taken off while running
            log.info("VIP %s was not on %s any more", handle.address, handle.interface)
            return
        log.warning("VIP %s on %s not removed: %s", handle.address, handle.interface, e)


def resolve_router_id(source: RouterIdSource) -> ipaddress.IPv4Address:
    if source.explicit is not None:
        return source.explicit
    with _iproute() as ipr:
        if source.interface:
            index = _index(ipr, source.interface)
            for a, _, _ in _addresses(ipr, socket.AF_INET, index):
                return ipaddress.IPv4Address(a)
            raise HostError(
                f"bgp_routerinterface={source.interface!r} has no IPv4 address to use as router id"
            )
        candidates = [
            ipaddress.IPv4Address(a)
            for a, _, _ in _addresses(ipr, socket.AF_INET)
            if not ipaddress.IPv4Address(a).is_loopback
        ]
    if not candidates:
        raise HostError("no IPv4 address on this host to use as BGP router id: set bgp_routerid")
    return candidates[0]


def lan_overlap_warning(address: IPAddress, interface: str) -> str | None:
    """A warning when the VIP lies inside a subnet of a non-loopback interface."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with _iproute() as ipr:
        names = {int(link["index"]): str(link.get("ifname")) for link in ipr.get_links()}
        for a, plen, index in _addresses(ipr, family):
            name = names.get(index, "?")
            if name == "lo" or plen >= address.max_prefixlen:
                continue
            net = ipaddress.ip_network(f"{a}/{plen}", strict=False)
            if address in net and interface != "lo":
                return (
                    f"the VIP {address} lies inside {net} on {name} and vip_interface={interface}: "
                    "every node will answer ARP/ND for it on that LAN; in BGP mode put the VIP "
                    "on lo (vip_interface=lo)"
                )
    return None


class NextHops(NamedTuple):
    """The MP-BGP next hops of one peer: of IPv4 routes and of IPv6 routes (None: none)."""

    ipv4: ipaddress.IPv4Address | None = None
    ipv6: ipaddress.IPv6Address | None = None


def _global_addresses(
    ipr: IPRoute, index: int, family: int, vips: tuple[IPAddress, ...]
) -> list[IPAddress]:
    """Global-scope addresses of one interface in kernel order, the VIPs left out.

    kube-vip takes "the first non link-local" address (``utils.GetNonLinkLocalIP``); scope
    global leaves out link-local and host-scope ones (a VIP on lo) alike.
    """
    out: list[IPAddress] = []
    for a in ipr.get_addr(family=family, index=index):
        addr = ipaddress.ip_address(str(a.get("address")))
        if (
            int(a.get("scope", 0)) == RT_SCOPE_UNIVERSE
            and addr not in vips
            and not addr.is_loopback
        ):
            out.append(addr)
    return out


def _interface_of(ipr: IPRoute, address: IPAddress) -> int:
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    for a, _, index in _addresses(ipr, family):
        if ipaddress.ip_address(a) == address:
            return index
    raise HostError(f"bgp_sourceip={address} is not an address of this host")


def mpbgp_next_hops(
    peer: Peer, sourceip: IPAddress | None, sourceif: str, vips: tuple[IPAddress, ...]
) -> NextHops:
    """The next hops ``peer.mpbgp_nexthop`` gives (kube-vip ``BGPPeer.FindMpbgpAddresses``).

    fixed: ``mpbgp_ipv4`` / ``mpbgp_ipv6``; auto_sourceip: the first global address of the other
    family on the interface that holds ``bgp_sourceip``; auto_sourceif: the first global IPv4
    and IPv6 addresses of ``bgp_sourceif``.  Raises :class:`HostError` when the source is missing.
    """
    mode = peer.mpbgp_nexthop
    if mode is None:
        return NextHops()
    if mode is NextHopMode.FIXED:
        return NextHops(peer.mpbgp_ipv4, peer.mpbgp_ipv6)
    with _iproute() as ipr:
        if mode is NextHopMode.AUTO_SOURCEIP:
            if sourceip is None:
                raise HostError("mpbgp_nexthop=auto_sourceip needs bgp_sourceip")
            index = _interface_of(ipr, sourceip)
            if sourceip.version == 4:
                v6 = _global_addresses(ipr, index, socket.AF_INET6, vips)
                return NextHops(ipv6=ipaddress.IPv6Address(v6[0]) if v6 else None)
            v4 = _global_addresses(ipr, index, socket.AF_INET, vips)
            return NextHops(ipv4=ipaddress.IPv4Address(v4[0]) if v4 else None)
        if not sourceif:
            raise HostError("mpbgp_nexthop=auto_sourceif needs bgp_sourceif")
        index = _index(ipr, sourceif)
        v4 = _global_addresses(ipr, index, socket.AF_INET, vips)
        v6 = _global_addresses(ipr, index, socket.AF_INET6, vips)
    return NextHops(
        ipaddress.IPv4Address(v4[0]) if v4 else None,
        ipaddress.IPv6Address(v6[0]) if v6 else None,
    )


def check_next_hops(
    peers: tuple[Peer, ...],
    hops: tuple[NextHops, ...],
    vips: tuple[IPAddress, ...],
    sourceip: IPAddress | None,
    sourceif: str,
) -> None:
    """Refuse (:class:`HostError`) a peer of the other family than a VIP without a next hop
    of the VIP's family, naming the setting that supplies one -- unless the peer has no
    ``mpbgp_nexthop`` and carries the VIP of its own family (a dual-stack VIP over one session
    per family: the configuration checked that each VIP has a session)."""
    versions = {vip.version for vip in vips}
    for vip in vips:
        for peer, nh in zip(peers, hops, strict=True):
            if peer.address.version == vip.version:
                continue  # the session's own local address is the next hop
            if (nh.ipv4 if vip.version == 4 else nh.ipv6) is not None:
                continue
            if peer.mpbgp_nexthop is None and peer.address.version in versions:
                continue  # it carries its own family's VIP only
            _no_next_hop(peer, vip, sourceip, sourceif)


def _no_next_hop(peer: Peer, vip: IPAddress, sourceip: IPAddress | None, sourceif: str) -> None:
    fam = f"IPv{vip.version}"
    what = f"BGP peer {peer.address} (AS {peer.asn}) is IPv{peer.address.version}"
    key = f"mpbgp_ipv{vip.version}"
    if peer.mpbgp_nexthop is NextHopMode.AUTO_SOURCEIP:
        where = f"the interface holding bgp_sourceip={sourceip} has no global {fam} address"
    elif peer.mpbgp_nexthop is NextHopMode.AUTO_SOURCEIF:
        where = f"bgp_sourceif={sourceif} has no global {fam} address"
    elif peer.mpbgp_nexthop is NextHopMode.FIXED:
        where = f"mpbgp_nexthop=fixed without {key}"
    else:
        where = "no mpbgp_nexthop is set"
    raise HostError(
        f"{what} and the VIP {vip} is {fam}: a route needs a next hop of its own family, "
        f"and {where}; set mpbgp_nexthop=fixed with {key} (a global {fam} address of this "
        "node), or auto_sourceip / auto_sourceif with an interface that has one "
        "(in the 6th bgp_peers field or the global mpbgp_* settings)"
    )


@dataclass(frozen=True)
class HostFacts:
    """What :func:`host_setup` resolved: ``next_hops`` lines up with ``config.peers``."""

    interface: str
    router_id: ipaddress.IPv4Address
    vips: tuple[VipHandle, ...]  # one per VIP, in address's order
    warning: str | None
    next_hops: tuple[NextHops, ...]


def host_setup(config: Config) -> HostFacts:
    """Resolve the interface, router id and MP-BGP next hops, then put the VIPs on: the netlink
    work at start.  Raises :class:`HostError` (exit 2) before a VIP is added; a VIP that cannot
    be added takes off the ones added before it."""
    addresses, prefixes = config.addresses, config.interface_prefixes
    assert addresses
    interface = config.vip_interface or default_interface()
    warnings = [w for a in addresses if (w := lan_overlap_warning(a, interface)) is not None]
    router_id = resolve_router_id(config.router_id_source)
    src_ip, src_if = config.bgp_sourceip, config.bgp_sourceif
    hops = tuple(mpbgp_next_hops(p, src_ip, src_if, addresses) for p in config.peers)
    check_next_hops(config.peers, hops, addresses, src_ip, src_if)
    handles: list[VipHandle] = []
    try:
        for address, prefix in zip(addresses, prefixes, strict=True):
            handles.append(ensure_vip(address, prefix.prefixlen, interface))
    except BaseException:
        remove_vips(tuple(handles))
        raise
    return HostFacts(interface, router_id, tuple(handles), "; ".join(warnings) or None, hops)


STATED_ROUTER_ID = ipaddress.IPv4Address("192.0.2.11")
"""The router id :func:`stated_facts` assumes when the configuration names none (RFC 5737)."""


def stated_facts(config: Config) -> HostFacts:
    """:class:`HostFacts` as far as the configuration states them, without asking the host: the
    explicit router id (else :data:`STATED_ROUTER_ID`), ``vip_interface`` (else ``lo``), the
    configured MP-BGP next hops standing in for what the host would give, the VIPs not added."""
    assert config.addresses
    interface = config.vip_interface or "lo"
    hops = tuple(
        NextHops(p.mpbgp_ipv4, p.mpbgp_ipv6) if p.mpbgp_nexthop is not None else NextHops()
        for p in config.peers
    )
    vips = tuple(
        VipHandle(a, p.prefixlen, interface, 0, added=False)
        for a, p in zip(config.addresses, config.interface_prefixes, strict=True)
    )
    return HostFacts(
        interface, config.router_id_source.explicit or STATED_ROUTER_ID, vips, None, hops
    )
