"""kube-vip's ``bgp_peers`` grammar: ``address:AS:password:multihop:port:mpbgp:bfd``.

Source: kube-vip ``pkg/kubevip/config_bgp.go`` ``ParseBGPPeerConfig`` (v1.2). Rules this module
keeps:

* Entries are comma-separated; an empty entry is skipped; IPv6 addresses are written in brackets.
* Fields 2-5 split on ':' as kube-vip does (a password is anything without ':' or ','); fields
  6-7 split on ':' outside brackets, so the 6th can hold ``mpbgp_ipv6=[2001:db8::11]``.
* An error names the entry by position (``bgp_peers entry 2``) and at most the address and AS
  that parsed, never the entry's text: a password may hold ':' and shift into any later field
  (a password that begins with ':' fills the multihop field), hold ',' and start a new entry,
  or be written in the AS's place (the AS forgotten, the fields swapped), so not even an AS
  that does not parse is shown; what a space or a ':' in it would mean is said instead.
* A ':' in a password shifts it into the later fields (kube-vip splits the entry at every ':'
  and cannot carry one); peers separated by spaces instead of ',' run into the next entry's
  fields. The errors of those fields say so: the field count against the format's seven, and
  that peers are separated by ','.
* Only the peer's own fields are parsed here; the global ``mpbgp_*`` settings and the checks of
  peers against the rest of the configuration are :mod:`vipgate.config.rules`'.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum

from vipgate.config.values import (
    AS_TRANS,
    AS_TRANS_WHY,
    BOOL_HELP,
    PASSWORD_HELP,
    REDACTED,
    ConfigError,
    IPAddress,
    Raw,
    parse_bool,
    password_problem,
)

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

    The MP-BGP fields are the effective ones after :func:`vipgate.config.load` (the peer's 6th
    field, else the global ``mpbgp_*`` settings, as kube-vip's ``SetMpbgpOptions``);
    :func:`parse_peers` alone gives the peer's own. ``bfd`` is None when the 7th field is
    absent or empty.
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


class PeerError(Exception):
    """A bad bgp_peers entry: what is wrong and what is accepted (the caller adds where)."""


def _peer_address(text: str) -> IPAddress:
    if "%" in text:
        raise PeerError(
            "the address has an IPv6 scope id (%zone), which vipgate does not support; "
            f"accepted: {PEER_FORM}"
        )
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise PeerError(
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
            raise PeerError(f"MP-BGP field (6th): an option is not key=value; accepted: {accepted}")
        if key not in _MPBGP_KEYS:
            # The unknown key is not echoed: a password with ':' can shift into this field.
            raise PeerError(f"MP-BGP field (6th): unknown option; accepted: {accepted}")
        if key in out:
            raise PeerError(f"MP-BGP field (6th): {key} given twice; accepted: {accepted}")
        out[key] = value
    return out


def nexthop_mode(value: str, what: str) -> NextHopMode | None:
    if value == "":
        return None
    try:
        return NextHopMode(value)
    except ValueError:
        raise PeerError(
            f"{what} is not a next-hop mode; accepted: {_NEXTHOP_MODES} (or empty)"
        ) from None


def nexthop_v4(value: str, what: str) -> ipaddress.IPv4Address | None:
    if value == "":
        return None
    accepted = "a unicast IPv4 address of this node, e.g. 192.0.2.11 (or empty)"
    try:
        a = ipaddress.IPv4Address(value)
    except ValueError:
        raise PeerError(f"{what} is not an IPv4 address; accepted: {accepted}") from None
    if (
        a.is_unspecified
        or a.is_multicast
        or a.is_loopback
        or a == ipaddress.IPv4Address("255.255.255.255")
    ):
        raise PeerError(f"{what} is not a usable next hop; accepted: {accepted}")
    return a


def nexthop_v6(value: str, what: str) -> ipaddress.IPv6Address | None:
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
        raise PeerError(f"{what} is not an IPv6 address; accepted: {accepted}") from None
    if (
        a.scope_id is not None
        or a.is_unspecified
        or a.is_multicast
        or a.is_loopback
        or a.is_link_local
        or a.ipv4_mapped is not None
    ):
        raise PeerError(f"{what} is not a usable next hop; accepted: {accepted}")
    return a


def _bfd_field(text: str) -> Bfd:
    parts = text.split(";")
    if len(parts) != 4:
        raise PeerError(f"BFD field (7th): needs 4 parts; accepted: {_BFD_FORM}")
    enabled = parse_bool(parts[0])
    if enabled is None:
        raise PeerError(f"BFD field (7th): enable is not a boolean; accepted: {_BFD_FORM}")
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
            raise PeerError(f"BFD field (7th): {name} is not {lo}-{hi}; accepted: {_BFD_FORM}")
        nums.append(int(text_n))
    return Bfd(enabled, nums[0], nums[1], nums[2])


def _entry_address(entry: str, where: list[str]) -> tuple[IPAddress, str]:
    """The address of an entry and the text after its ``:`` (fields 2-7)."""
    if entry.startswith("unnumbered:"):
        raise PeerError(
            "unnumbered peers (unnumbered:<interface>) are not supported by vipgate; "
            f"accepted: {PEER_FORM}"
        )
    if entry.startswith("["):
        end = entry.find("]")
        if end == -1:
            raise PeerError(f"no closing ] for the IPv6 address; accepted: {PEER_FORM}")
        addr = _peer_address(entry[1:end])
        rest = entry[end + 1 :]
        where.append(f"[{addr}]")
        if not rest.startswith(":"):
            raise PeerError(f"missing :AS after the address; accepted: {PEER_FORM}")
        return addr, rest[1:]
    parts = entry.split(":")
    if _unbracketed_v6(parts):
        raise PeerError(f"an IPv6 address must be written in brackets; accepted: {PEER_FORM}")
    addr = _peer_address(parts[0])
    where.append(str(addr))
    return addr, entry[len(parts[0]) + 1 :] if len(parts) > 1 else ""


_SHIFTED = (
    "a ':' in the password shifts the rest of it into the later fields: the entry is split at "
    "every ':', as kube-vip splits it, so a password cannot hold one"
)
_SPACED = "peers are separated by ',', not by spaces"


def _entry_fields(rest: str, where: list[str]) -> tuple[int, list[str]]:
    """The AS and fields 3-7 (password, multihop, port, mpbgp, bfd; empty when absent).

    Fields 2-5 split on ':' as kube-vip does (the password is anything without ':' or ',');
    fields 6-7 split on ':' outside brackets, so field 6 can hold mpbgp_ipv6=[2001:db8::11]
    (kube-vip cannot take an IPv6 address there at all).
    """
    head = rest.split(":", 4) if rest else []
    fields = head[:4] + (_split_outside_brackets(head[4]) if len(head) == 5 else [])
    if not fields or fields[0] == "":
        raise PeerError(f"missing AS number; accepted: {PEER_FORM}")
    asn_text = fields[0]
    if not (asn_text.isascii() and asn_text.isdigit()) or not 1 <= int(asn_text) <= 4294967295:
        spaced = f" (it holds a space: {_SPACED})" if any(c.isspace() for c in asn_text) else ""
        raise PeerError(f"the AS is not a number 1-4294967295{spaced}; accepted: {PEER_FORM}")
    asn = int(asn_text)
    if asn == AS_TRANS:
        raise PeerError(f"the AS is {AS_TRANS_WHY}; accepted: {PEER_FORM}")
    where.append(f"AS {asn}")
    if len(fields) > 6:
        raise PeerError(
            f"too many fields: {len(fields) + 1}, the format has 7 (address:AS:password:"
            f"multihop:port:mpbgp:bfd): {_SHIFTED}; or an IPv6 address in the 6th field is "
            f"without brackets; or two peers run together ({_SPACED}); accepted: {PEER_FORM}"
        )
    return asn, fields[1:] + [""] * (6 - len(fields))


def _field_error(what: str, value: str, accepted: str) -> PeerError:
    """A later field that does not parse: never shown (it may be a piece of the password), but
    what a space in it, or a ':' in the password, would mean."""
    spaced = f"; it holds a space: {_SPACED}" if any(c.isspace() for c in value) else ""
    return PeerError(
        f"{what} (not shown: it may be part of the password; {_SHIFTED}){spaced}; "
        f"accepted: {accepted}"
    )


def _parse_entry(entry: str, where: list[str]) -> Peer:
    """One bgp_peers entry. ``where`` gets the parsed address and AS as they become known.

    Nothing of the entry's text is ever put into an error: only values that parsed, and only
    those before the password (the address, the AS). A password may hold ':' and shift into
    any later field, and a malformed entry has no reliable field boundaries at all.
    """
    addr, rest = _entry_address(entry, where)
    asn, (password, mh_text, port_text, mpbgp_text, bfd_text) = _entry_fields(rest, where)
    multihop = False
    if mh_text != "":
        mh = parse_bool(mh_text)
        if mh is None:
            raise _field_error("multihop (4th field) is not a boolean", mh_text, BOOL_HELP)
        multihop = mh
    port = 179
    if port_text != "":
        if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
            raise _field_error("port (5th field) is not 1-65535", port_text, PEER_FORM)
        port = int(port_text)
    opts = _mpbgp_field(mpbgp_text) if mpbgp_text != "" else {}
    what = "MP-BGP field (6th): "
    return Peer(
        addr,
        asn,
        password,
        multihop,
        port,
        mpbgp_nexthop=nexthop_mode(opts.get("mpbgp_nexthop", ""), what + "mpbgp_nexthop"),
        mpbgp_ipv4=nexthop_v4(opts.get("mpbgp_ipv4", ""), what + "mpbgp_ipv4"),
        mpbgp_ipv6=nexthop_v6(opts.get("mpbgp_ipv6", ""), what + "mpbgp_ipv6"),
        bfd=_bfd_field(bfd_text) if bfd_text != "" else None,
    )


def parse_peers(raw: Raw) -> tuple[Peer, ...]:
    """kube-vip's bgp_peers: ``address:AS:password:multihop:port:mpbgp:bfd``, IPv6 in brackets.

    Source: kube-vip ``pkg/kubevip/config_bgp.go`` ``ParseBGPPeerConfig`` (v1.2). Returns the
    peers' own fields (no global MP-BGP settings applied). Raises :class:`ConfigError` naming the
    entry by position ("bgp_peers entry 2") and at most its address and AS, never its text.
    """
    return tuple(p for _, p in parse_peers_numbered(raw))


def parse_peers_numbered(raw: Raw) -> list[tuple[int, Peer]]:
    """The peers of ``bgp_peers`` with their 1-based position among the comma-separated entries."""
    peers: list[tuple[int, Peer]] = []
    for n, entry in enumerate(raw.value.split(","), start=1):
        if entry.strip() == "":
            continue
        where: list[str] = []
        try:
            peer = _parse_entry(entry, where)
            problem = password_problem(peer.password)
            if problem:
                raise PeerError(f"{problem}; accepted: {PASSWORD_HELP}")
        except PeerError as e:
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
