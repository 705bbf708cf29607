"""Our own UPDATEs (RFC 4271 4.3, RFC 4760), built on bytes: as many prefixes as fit into each
4096-octet message, path attributes in type-code order.

An :class:`OutboundPolicy` says how we describe our routes to one peer; :func:`announce_ipv4`,
:func:`announce_ipv6` and the withdraw builders return whole messages ready to send.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from vipgate.bgp.wire.attributes import (
    A_MP_REACH,
    A_MP_UNREACH,
    AS_TRANS,
    F_EXTENDED,
    F_OPTIONAL,
    GRACEFUL_SHUTDOWN,
    As4Path,
    AsPath,
    AsPathSegment,
    Communities,
    LocalPref,
    Med,
    NextHop,
    Origin,
    PathAttribute,
    SessionContext,
    encode_attribute,
    prefix_bytes,
)
from vipgate.bgp.wire.capabilities import AFI_IPV6, SAFI_UNICAST
from vipgate.bgp.wire.messages import HEADER_LEN, MARKER, MAX_MESSAGE_LEN, T_UPDATE

__all__ = [
    "DEPREFER_PREPEND",
    "OutboundPolicy",
    "announce_ipv4",
    "announce_ipv6",
    "announce_mp",
    "withdraw_ipv4",
    "withdraw_ipv6",
    "withdraw_mp",
]


DEPREFER_PREPEND = 3
"""How many more times a de-preferred eBGP path carries our AS (``OutboundPolicy.depreferred``)."""
MAX_PREPEND = 10


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """How we describe our routes to one peer.

    eBGP: AS_PATH = [local_as] (AS_TRANS + AS4_PATH towards a 2-octet peer if local_as > 65535),
    with local_as ``prepend`` more times on a de-preferred path.
    iBGP: empty AS_PATH and LOCAL_PREF 100.  ORIGIN IGP always.
    """

    local_as: int
    ebgp: bool
    as4: bool
    local_pref: int = 100
    med: int | None = None
    communities: tuple[int, ...] = field(default=())
    prepend: int = 0  # eBGP: extra copies of local_as in AS_PATH (a longer path loses)

    @property
    def ctx(self) -> SessionContext:
        return SessionContext(as4=self.as4)

    def graceful_shutdown(self) -> OutboundPolicy:
        """This policy while the routes drain before a planned stop (RFC 8326 section 4): the
        GRACEFUL_SHUTDOWN community 65535:0 appended and, towards iBGP peers, LOCAL_PREF 0 (so
        an iBGP router prefers any other path without a policy of its own)."""
        comms = self.communities
        if GRACEFUL_SHUTDOWN not in comms:
            comms = (*comms, GRACEFUL_SHUTDOWN)
        return replace(self, communities=comms, local_pref=0 if not self.ebgp else self.local_pref)

    def depreferred(self, prepend: int = DEPREFER_PREPEND) -> OutboundPolicy:
        """This policy for a path every router should use only when no better one exists: the
        GRACEFUL_SHUTDOWN marking (:meth:`graceful_shutdown`: 65535:0, LOCAL_PREF 0 on iBGP)
        and, towards eBGP peers, our AS prepended ``prepend`` more times. Routers compare
        LOCAL_PREF and then AS_PATH length before they consider paths equal for multipath
        (RFC 4271 9.1.2.2 a-b), so such a path leaves the multipath set while a plain one
        exists, on a router with no policy of its own, and is used when none does."""
        if not 0 <= prepend <= MAX_PREPEND:
            raise ValueError(f"prepend must be 0-{MAX_PREPEND}")
        return replace(self.graceful_shutdown(), prepend=prepend if self.ebgp else 0)

    def attributes(self) -> list[PathAttribute]:
        """Path attributes common to every route (no NEXT_HOP / MP_REACH), by type code."""
        out: list[PathAttribute] = [Origin(Origin.IGP)]
        as4_path: As4Path | None = None
        if self.ebgp:
            n = 1 + self.prepend
            if self.as4 or self.local_as <= 0xFFFF:
                out.append(
                    AsPath((AsPathSegment(AsPathSegment.AS_SEQUENCE, (self.local_as,) * n),))
                )
            else:
                out.append(AsPath((AsPathSegment(AsPathSegment.AS_SEQUENCE, (AS_TRANS,) * n),)))
                as4_path = As4Path(
                    (AsPathSegment(AsPathSegment.AS_SEQUENCE, (self.local_as,) * n),)
                )
        else:
            out.append(AsPath(()))
        if self.med is not None:
            out.append(Med(self.med))
        if not self.ebgp:
            out.append(LocalPref(self.local_pref))
        if self.communities:
            out.append(Communities(self.communities))
        if as4_path is not None:
            out.append(as4_path)
        return out

    def encoded_attributes(self, next_hop: IPv4Address | None = None) -> bytes:
        attrs = self.attributes()
        if next_hop is not None:
            attrs.insert(2, NextHop(next_hop))
        return b"".join(encode_attribute(a, self.ctx) for a in attrs)


def _pack(chunks: Sequence[bytes], budget: int) -> list[bytes]:
    """Group encoded prefixes so each group's total length stays within budget."""
    groups: list[bytes] = []
    cur: list[bytes] = []
    size = 0
    for c in chunks:
        if size + len(c) > budget and cur:
            groups.append(b"".join(cur))
            cur, size = [], 0
        cur.append(c)
        size += len(c)
    if cur:
        groups.append(b"".join(cur))
    return groups


_UPDATE_FIXED = HEADER_LEN + 4  # header + withdrawn length + total attribute length


def _update_bytes(withdrawn: bytes, attrs: bytes, nlri: bytes) -> bytes:
    length = _UPDATE_FIXED + len(withdrawn) + len(attrs) + len(nlri)
    return b"".join(
        (
            MARKER,
            struct.pack("!HBH", length, T_UPDATE, len(withdrawn)),
            withdrawn,
            struct.pack("!H", len(attrs)),
            attrs,
            nlri,
        )
    )


def announce_ipv4(
    prefixes: Iterable[IPv4Network], next_hop: IPv4Address, policy: OutboundPolicy
) -> list[bytes]:
    """UPDATEs announcing IPv4 prefixes in the NLRI field with NEXT_HOP, packed full."""
    attrs = policy.encoded_attributes(next_hop)
    budget = MAX_MESSAGE_LEN - _UPDATE_FIXED - len(attrs)
    return [
        _update_bytes(b"", attrs, g) for g in _pack([prefix_bytes(p) for p in prefixes], budget)
    ]


def withdraw_ipv4(prefixes: Iterable[IPv4Network]) -> list[bytes]:
    """UPDATEs withdrawing IPv4 prefixes (Withdrawn Routes field), packed full."""
    budget = MAX_MESSAGE_LEN - _UPDATE_FIXED
    return [_update_bytes(g, b"", b"") for g in _pack([prefix_bytes(p) for p in prefixes], budget)]


def announce_mp(
    prefixes: Iterable[IPv4Network | IPv6Network],
    afi: int,
    next_hops: Sequence[IPv4Address | IPv6Address],
    policy: OutboundPolicy,
) -> list[bytes]:
    """UPDATEs announcing prefixes of one family via MP_REACH_NLRI."""
    common = policy.attributes()
    head = encode_attribute(common[0], policy.ctx) + encode_attribute(common[1], policy.ctx)
    tail = b"".join(encode_attribute(a, policy.ctx) for a in common[2:])
    nh = b"".join(a.packed for a in next_hops)
    mp_fixed = struct.pack("!HBB", afi, SAFI_UNICAST, len(nh)) + nh + b"\x00"
    budget = MAX_MESSAGE_LEN - _UPDATE_FIXED - len(head) - len(tail) - 4 - len(mp_fixed)
    out = []
    for g in _pack([prefix_bytes(p) for p in prefixes], budget):
        value = mp_fixed + g
        mp = struct.pack("!BBH", F_OPTIONAL | F_EXTENDED, A_MP_REACH, len(value)) + value
        # Attribute order by type code: ORIGIN, AS_PATH, [MED, LOCAL_PREF, COMMUNITIES] MP_REACH
        # (14) comes after those and before AS4_PATH (17).
        pre = [a for a in common[2:] if not isinstance(a, As4Path)]
        post = [a for a in common[2:] if isinstance(a, As4Path)]
        attrs = (
            head
            + b"".join(encode_attribute(a, policy.ctx) for a in pre)
            + mp
            + b"".join(encode_attribute(a, policy.ctx) for a in post)
        )
        out.append(_update_bytes(b"", attrs, b""))
    return out


def announce_ipv6(
    prefixes: Iterable[IPv6Network],
    next_hop: IPv6Address,
    policy: OutboundPolicy,
    link_local: IPv6Address | None = None,
) -> list[bytes]:
    """UPDATEs announcing IPv6 prefixes via MP_REACH_NLRI (global [+ link-local] next hop)."""
    hops: list[IPv4Address | IPv6Address] = [next_hop]
    if link_local is not None:
        hops.append(link_local)
    return announce_mp(prefixes, AFI_IPV6, hops, policy)


def withdraw_mp(prefixes: Iterable[IPv4Network | IPv6Network], afi: int) -> list[bytes]:
    fixed = struct.pack("!HB", afi, SAFI_UNICAST)
    budget = MAX_MESSAGE_LEN - _UPDATE_FIXED - 4 - len(fixed)
    out = []
    for g in _pack([prefix_bytes(p) for p in prefixes], budget):
        value = fixed + g
        attr = struct.pack("!BBH", F_OPTIONAL | F_EXTENDED, A_MP_UNREACH, len(value)) + value
        out.append(_update_bytes(b"", attr, b""))
    return out


def withdraw_ipv6(prefixes: Iterable[IPv6Network]) -> list[bytes]:
    """UPDATEs withdrawing IPv6 prefixes via MP_UNREACH_NLRI."""
    return withdraw_mp(prefixes, AFI_IPV6)
