"""The VIPs: ``address`` as kube-vip's comma-separated list, ``vip_subnet`` and its selection.

Rules this module keeps (kube-vip ``pkg/vip/util.go`` ``Split`` and ``pkg/vip/address.go``
``SelectSubnet``, as ``pkg/cluster/cluster.go`` ``startNetworking`` applies them to the
control-plane VIP):

* ``address`` (or ``vip_address``) is split at every comma and each part trimmed of spaces; each
  part is one VIP. An empty part, a repeated address, or two addresses of one family are
  refused: vipgate runs one IPv4 and/or one IPv6 VIP (kube-vip's dual-stack control plane), see
  docs/configuration.md, "Dual stack".
* ``vip_subnet`` is one or two prefix lengths, ``32``, ``128`` or ``32,128``. An IPv4 VIP takes
  the first; an IPv6 VIP the second when there are two, else the first. Empty: a host prefix
  (/32, /128). More than two values, and ``auto`` (kube-vip: services only), are refused, and
  so is a length longer than the VIP's address.
* The length is the VIP address's prefix on ``vip_interface``, as kube-vip puts it there
  (``pkg/vip/address.go`` ``SetMask``). The route announced is the VIP's host route (/32,
  /128) whatever ``vip_subnet`` says, as kube-vip's BGP mode announces it (``pkg/bgp/peers.go``
  ``getPath``): :func:`host_route`.
* An IPv6 VIP that takes a single value shorter than :data:`SHARED_IPV6_MIN` is refused: that
  is an IPv4 length (kube-vip's IPv4 manifests carry ``vip_subnet=32``) applied to IPv6, which
  would put the VIP on the interface as a block of IPv6 networks (/32: an ISP's allocation),
  and the node would route that whole block to the interface. kube-vip documents the value as
  a tuple for IPv4,IPv6. Two values are taken as given: each family's length is then explicit.

Pure functions of strings: no socket, no host.
"""

from __future__ import annotations

import ipaddress

from vipgate.config import values as v
from vipgate.config.values import ConfigError, IPAddress, IPNetwork, Raw, show

EXAMPLE = "e.g. 203.0.113.100, 2001:db8:100::100, or both: 203.0.113.100,2001:db8:100::100"
ACCEPTED = f"one unicast IPv4 and/or one global IPv6 address, comma-separated ({EXAMPLE})"
SUBNET_ACCEPTED = (
    "one prefix length for every VIP (32), or the IPv4 and the IPv6 one, comma-separated (32,128)"
)
# The shortest prefix an IPv6 VIP takes from a single, shared vip_subnet value: /64 is an IPv6
# subnet (RFC 4291 section 2.5.4: 64-bit interface identifiers), anything shorter a block of them.
SHARED_IPV6_MIN = 64


def split(value: str) -> list[str]:
    """kube-vip's ``Split``: the parts between commas, each trimmed of spaces."""
    return [part.strip() for part in value.split(",")]


def select_subnet(address: IPAddress, lengths: tuple[int, ...]) -> int:
    """kube-vip's ``SelectSubnet``: the prefix length of ``address`` given ``vip_subnet``'s
    lengths (empty: the host length)."""
    if not lengths:
        return address.max_prefixlen
    if address.version == 4 or len(lengths) == 1:
        return lengths[0]
    return lengths[1]


def interface_prefix(address: IPAddress, lengths: tuple[int, ...]) -> IPNetwork:
    """The prefix of ``address`` on its interface: the VIP with its selected length."""
    return ipaddress.ip_network(f"{address}/{select_subnet(address, lengths)}", strict=False)


def host_route(address: IPAddress) -> IPNetwork:
    """The route announced for ``address``: its host prefix (/32, /128), whatever
    ``vip_subnet`` says (kube-vip ``pkg/bgp/peers.go`` ``getPath``)."""
    return ipaddress.ip_network(address)


def vip_problem(a: IPAddress) -> str | None:
    """Why ``a`` cannot be announced as a VIP, else None."""
    problem = v.usable_unicast(a)
    if problem:
        return problem
    if a.is_loopback:
        return "is a loopback address (routers drop it)"
    if a.is_link_local:
        return "is link-local (routers do not forward it)"
    return None


def _one(raw: Raw, part: str, where: str) -> IPAddress:
    """One part of the list; ``where`` names it in a list of more than one ("" for one)."""
    if not part:
        raise ConfigError(f"{show(raw)}: {where or 'the list'} is empty; accepted: {ACCEPTED}")
    try:
        address = v.as_ip(Raw(part, raw.source, raw.name))
    except ConfigError as e:
        if not where:
            raise
        raise ConfigError(f"{show(raw)}: {where}: {str(e).split(': ', 1)[1]}") from None
    problem = vip_problem(address)
    if problem:
        raise ConfigError(
            f"{show(raw)}: the VIP {where + ' ' if where else ''}{problem}; accepted: a unicast "
            "IPv4 or global IPv6 address, e.g. 203.0.113.100 or 2001:db8:100::100"
        )
    return address


def parse_addresses(raw: Raw) -> tuple[IPAddress, ...]:
    """``address``: the VIPs in the order given (empty: none)."""
    if not raw.value.strip():
        return ()
    parts = split(raw.value)
    many = len(parts) > 1
    out: list[IPAddress] = []
    for n, part in enumerate(parts, 1):
        address = _one(raw, part, f"entry {n} ({part!r})" if many else "")
        for other in out:
            if other == address:
                raise ConfigError(
                    f"{show(raw)}: {address} is listed twice; accepted: each VIP once"
                )
            if other.version == address.version:
                raise ConfigError(
                    f"{show(raw)}: two IPv{address.version} VIPs ({other}, {address}); "
                    f"accepted: {ACCEPTED} -- one health check gates every VIP, so a second "
                    "VIP of one family would be a second name for the same apiservers"
                )
        out.append(address)
    return tuple(out)


def parse_subnet(raw: Raw, addresses: tuple[IPAddress, ...]) -> tuple[int, ...]:
    """``vip_subnet``: its one or two lengths, each checked against the VIPs that take it."""
    if not raw.value.strip():
        return ()
    parts = split(raw.value)
    if len(parts) > 2:
        raise ConfigError(f"{show(raw)}: more than two prefix lengths; accepted: {SUBNET_ACCEPTED}")
    if "auto" in parts:
        raise ConfigError(
            f"{show(raw)}: auto (a subnet found on the interface) is kube-vip's for services "
            f"only; accepted: {SUBNET_ACCEPTED}"
        )
    lengths: list[int] = []
    for n, part in enumerate(parts, 1):
        where = f"value {n} ({part!r}) " if len(parts) > 1 else ""
        if not (part.isascii() and part.isdigit()):
            raise ConfigError(
                f"{show(raw)}: {where}not a prefix length; accepted: 0-32 for IPv4, 0-128 for "
                f"IPv6: {SUBNET_ACCEPTED}"
            )
        if int(part) > 128:
            raise ConfigError(f"{show(raw)}: {where}out of range; accepted: 0-128 for IPv6")
        lengths.append(int(part))
    for a in addresses:
        length = select_subnet(a, tuple(lengths))
        if length > a.max_prefixlen:
            raise ConfigError(
                f"{show(raw)}: /{length} is longer than the IPv{a.version} address {a} "
                f"({a.max_prefixlen} bits); accepted: 0-{a.max_prefixlen} for it, "
                f"{SUBNET_ACCEPTED}"
            )
    _shared_value_fits_ipv6(raw, addresses, lengths)
    return tuple(lengths)


def _shared_value_fits_ipv6(raw: Raw, addresses: tuple[IPAddress, ...], lengths: list[int]) -> None:
    """A single value that gives an IPv6 VIP a prefix shorter than :data:`SHARED_IPV6_MIN` is
    refused (see the module's rules)."""
    v6 = next((a for a in addresses if a.version == 6), None)
    if len(lengths) != 1 or lengths[0] >= SHARED_IPV6_MIN or v6 is None:
        return
    if any(a.version == 4 for a in addresses):
        fix = (
            "one value per address, the IPv4 length then the IPv6 one "
            f"(e.g. vip_subnet={lengths[0]},128)"
        )
    else:
        fix = (
            f"{SHARED_IPV6_MIN}-128 for an IPv6 VIP alone (vip_subnet=128: a host "
            "address), or one value per address, the IPv4 length then the IPv6 one "
            "(vip_subnet=32,128)"
        )
    raise ConfigError(
        f"{show(raw)}: this one value applies to every VIP, so the IPv6 VIP {v6} would be put "
        f"on the interface as {interface_prefix(v6, (lengths[0],))}, a block of IPv6 networks "
        f"the node would route there (an IPv4 length such as 32 is a /32 in IPv6); "
        f"accepted: {fix}"
    )
