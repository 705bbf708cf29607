"""Which BFD session a received datagram belongs to, sans-I/O (RFC 5880 6.8.6, RFC 5881 5).

The adapter reads a datagram and hands its facts to :meth:`Demux.classify`: the UDP payload, the
source address as the socket reports it, the hop kind of the port it came in on (3784 single
hop, 4784 multihop), its TTL / Hop Limit (-1 when the kernel gave none) and its arrival time.
The answer is a verdict the adapter carries out: :class:`Deliver` (this packet to this session
at this time) or :class:`Drop` (count it under ``rule``; log ``reason`` at debug level if there
is one).  Nothing here raises on what a peer sends.

Rules, in order; the first that applies decides:

1. TTL (RFC 5881 section 5): on the single-hop port a packet whose TTL / Hop Limit is not 255
   (or unknown) is dropped, rule ``ttl``.  Multihop packets are accepted with any TTL (RFC 5883
   section 5 leaves the check to configuration; vipgate has none).  :data:`REQUIRED_TTL`.
   (Linux's IP_MINTTL / IPV6_MINHOPCOUNT would do it in the kernel, but only for TCP.)
2. The packet itself (RFC 5880 6.8.6, the checks that need no session; :func:`wire.decode`):
   dropped under the rule :class:`~vipgate.bfd.wire.Discard` names.
3. Source: an address that does not parse is dropped, rule ``source``.  An IPv4-mapped IPv6
   address is its IPv4 address; a ``%zone`` suffix is ignored.
4. Your Discriminator non-zero: the session with that local discriminator, only if the packet
   comes from that session's peer address on that session's hop kind; else rule
   ``your_discriminator``.
5. Your Discriminator zero: the session for (source address, hop kind); else rule
   ``no_session``.

Sessions are registered with :meth:`Demux.add` (one per peer address and hop kind, each with
a unique non-zero local discriminator from :meth:`Demux.new_discriminator`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Final, Generic, TypeAlias, TypeVar

from vipgate.bfd import wire

__all__ = ["REQUIRED_TTL", "Deliver", "Demux", "Drop", "Verdict", "parse_source"]

IPAddress: TypeAlias = IPv4Address | IPv6Address
S = TypeVar("S")

# Rule 1: the TTL / Hop Limit a packet must arrive with, by hop kind (multihop: None, any).
REQUIRED_TTL: Final[dict[bool, int | None]] = {False: 255, True: None}
_SOURCE_CACHE: Final = 1024  # source texts remembered at most (peers are few, strangers many)


@dataclass(frozen=True, slots=True)
class Deliver(Generic[S]):
    """Hand ``packet`` to ``session`` as received at ``at`` (None: the adapter's now)."""

    session: S
    packet: wire.ControlPacket
    at: float | None


@dataclass(frozen=True, slots=True)
class Drop:
    """Count the datagram under ``rule``; ``reason``: the debug line's text, if any."""

    rule: str
    reason: str = ""


Verdict: TypeAlias = Deliver[S] | Drop


def parse_source(text: str) -> IPAddress | None:
    """Rule 3: the source address of a datagram as recvmsg() reports it, or None."""
    try:
        src = ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(src, IPv6Address) and src.ipv4_mapped is not None:
        return src.ipv4_mapped
    return src


class Demux(Generic[S]):
    """The sessions of one endpoint, by local discriminator and by (peer, hop kind)."""

    def __init__(self) -> None:
        self._by_discr: dict[int, tuple[S, IPAddress, bool]] = {}
        self._by_peer: dict[tuple[IPAddress, bool], S] = {}
        self._sources: dict[str, IPAddress | None] = {}

    def new_discriminator(self, rng: Callable[[], float]) -> int:
        """A non-zero local discriminator no session has (RFC 5880 6.8.1: unique, non-zero)."""
        discr = 0
        while discr == 0 or discr in self._by_discr:
            discr = int(rng() * 0xFFFFFFFF) & 0xFFFFFFFF
        return discr

    def add(self, session: S, local_discr: int, peer: IPAddress, multihop: bool) -> None:
        if local_discr == 0 or local_discr in self._by_discr:
            raise ValueError(f"local discriminator {local_discr} is zero or taken")
        if (peer, multihop) in self._by_peer:
            raise ValueError(f"a session for {peer} ({'multihop' if multihop else 'single hop'})")
        self._by_discr[local_discr] = (session, peer, multihop)
        self._by_peer[(peer, multihop)] = session

    def session_for(self, peer: IPAddress, multihop: bool) -> S | None:
        return self._by_peer.get((peer, multihop))

    def classify(
        self, payload: bytes, source: str, multihop: bool, ttl: int, at: float | None = None
    ) -> Verdict[S]:
        """The verdict on one datagram (the module's rules, in order)."""
        required = REQUIRED_TTL[multihop]
        if required is not None and ttl != required:
            return Drop("ttl", f"BFD packet from {source} discarded: TTL {ttl}, not {required}")
        try:
            packet = wire.decode(payload)
        except wire.Discard as d:
            return Drop(d.rule, f"BFD packet from {source} discarded: {d}")
        src = self._source(source)
        if src is None:
            return Drop("source")
        if packet.your_discr:
            entry = self._by_discr.get(packet.your_discr)
            if entry is None or entry[1] != src or entry[2] != multihop:
                return Drop("your_discriminator")
            return Deliver(entry[0], packet, at)
        session = self._by_peer.get((src, multihop))
        if session is None:
            return Drop("no_session")
        return Deliver(session, packet, at)

    def _source(self, text: str) -> IPAddress | None:
        if text in self._sources:
            return self._sources[text]
        src = parse_source(text)
        if len(self._sources) > _SOURCE_CACHE:
            self._sources.clear()
        self._sources[text] = src
        return src
