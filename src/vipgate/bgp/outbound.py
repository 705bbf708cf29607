"""Outbound routes, sans-I/O: the Adj-RIB-Out and what each session is sent.

Rules this module keeps
-----------------------
1. It never does I/O, has no clock and imports no asyncio.  :class:`AdjRibOut` (one per speaker,
   shared by its sessions) returns the route changes each call makes; :class:`OutboundSession`
   (one per peer) is fed *events* (:class:`RoutesChanged`, :class:`SessionUp`,
   :class:`RouteRefresh`, :class:`SessionDown`, :class:`CapabilitiesRefused`) through
   :meth:`OutboundSession.handle`, which returns *actions* in order: ``fsm.SendUpdates`` (wire
   :class:`~vipgate.bgp.wire.Update` objects for the session's fsm to encode and send) and
   :class:`NotAnnounced` (an error the owner logs).
2. Every prefix of the Adj-RIB-Out has one wanted :class:`RouteState`; a WITHDRAWN prefix leaves
   the table.  A prefix is announced ANNOUNCED or DEPREFERRED (its node fails its health check
   and the gate keeps the route as a fallback: :meth:`AdjRibOut.announce` with ``state``).
   The table's *mode* (:attr:`AdjRibOut.mode`) overrides that: GRACEFUL_SHUTDOWN while the
   speaker drains before a planned stop (RFC 8326 section 4) -- routes announced meanwhile are
   marked too; back in mode ANNOUNCED each route returns to its own state.  Closing withdraws
   everything.
3. Path attributes per state come from one table, :data:`STATE_POLICY` (state -> transformation
   of the session's base :class:`~vipgate.bgp.wire.OutboundPolicy`, None: withdrawn).  The base
   policy is the session's: eBGP AS_PATH [local AS], iBGP empty AS_PATH and LOCAL_PREF 100,
   ORIGIN IGP.  DEPREFERRED and GRACEFUL_SHUTDOWN both take
   :meth:`~vipgate.bgp.wire.OutboundPolicy.depreferred`: 65535:0 and, on eBGP, our AS
   prepended 3 more times, on iBGP LOCAL_PREF 0.  Routers compare LOCAL_PREF and then AS_PATH
   length before they consider paths equal for multipath (RFC 4271 9.1.2.2), so such a path
   leaves the router's multipath set while a plain one exists -- with no router policy -- and
   stays usable when none does.  A new state is one entry of that table.
4. A route is sent only on an Established session that negotiated its family (RFC 4760) and
   has a next hop of the route's family (:data:`FAMILIES`): the session's local address when it
   is of that family (for IPv6: a global one, never link-local or IPv4-mapped, which routers
   discard), else the MP-BGP next hop of the peer's settings (kube-vip's ``mpbgp_nexthop``).
   IPv4 routes go in the NLRI field with NEXT_HOP, IPv6 routes in MP_REACH_NLRI.  Otherwise the
   route is not sent and :class:`NotAnnounced` says why -- once per family and session --
   unless the configuration sends that family over another session
   (:attr:`OutboundSettings.elsewhere`: a dual-stack VIP over one session per family).
   Withdrawals of a family the session did not negotiate are not sent (nothing was announced).
5. One group of UPDATEs per family (IPv4 first) and state (in :class:`RouteState` order), each
   UPDATE packed full up to 4096 octets (RFC 4271 4), prefixes in Adj-RIB-Out order.
6. Session up: the whole Adj-RIB-Out.  ROUTE-REFRESH (RFC 2918): the whole Adj-RIB-Out of that
   family.  Session down: nothing is sent until the next session up.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Final, TypeAlias, cast

from vipgate.bgp import fsm, wire
from vipgate.bgp.wire import AFI_IPV4, AFI_IPV6, SAFI_UNICAST

__all__ = [
    "FAMILIES",
    "STATE_POLICY",
    "AdjRibOut",
    "CapabilitiesRefused",
    "NotAnnounced",
    "OutboundAction",
    "OutboundEvent",
    "OutboundSession",
    "OutboundSettings",
    "RouteRefresh",
    "RouteState",
    "RoutesChanged",
    "SessionDown",
    "SessionUp",
]

IPAddress: TypeAlias = IPv4Address | IPv6Address
Prefix: TypeAlias = IPv4Network | IPv6Network
Changes: TypeAlias = tuple[tuple[Prefix, "RouteState"], ...]
Build: TypeAlias = Callable[[Sequence[Prefix]], wire.Update]


class RouteState(enum.Enum):
    """The wanted state of one prefix on every session (order: the order UPDATEs are sent)."""

    ANNOUNCED = "announced"
    DEPREFERRED = "depreferred"  # a fallback path: 65535:0 and prepended (eBGP) / LOCAL_PREF 0
    GRACEFUL_SHUTDOWN = "graceful_shutdown"  # RFC 8326 drain: the same path attributes
    WITHDRAWN = "withdrawn"


PolicyOf: TypeAlias = Callable[[wire.OutboundPolicy], wire.OutboundPolicy]

# state -> the path attributes of its routes (from the session's base policy); None: withdrawn.
STATE_POLICY: Final[dict[RouteState, PolicyOf | None]] = {
    RouteState.ANNOUNCED: lambda policy: policy,
    RouteState.DEPREFERRED: lambda policy: policy.depreferred(),
    RouteState.GRACEFUL_SHUTDOWN: lambda policy: policy.depreferred(),
    RouteState.WITHDRAWN: None,
}


# ------------------------------------------------------------------------- the Adj-RIB-Out


class AdjRibOut:
    """The speaker's routes and their wanted state (rule 2); each call returns the changes."""

    def __init__(self) -> None:
        self.routes: dict[Prefix, RouteState] = {}  # what the sessions are sent
        self.mode = RouteState.ANNOUNCED
        self._own: dict[Prefix, RouteState] = {}  # each route's own state (mode aside)

    def announce(self, prefix: Prefix, state: RouteState = RouteState.ANNOUNCED) -> Changes:
        """Announce `prefix` in `state` (ANNOUNCED or DEPREFERRED), or move it there."""
        if state not in _OWN_STATES:
            raise ValueError(f"{state.name} is not a state of an announced route")
        self._own[prefix] = state
        sent = self.mode if self.mode is RouteState.GRACEFUL_SHUTDOWN else state
        if self.routes.get(prefix) is sent:
            return ()
        self.routes[prefix] = sent
        return ((prefix, sent),)

    def withdraw(self, prefix: Prefix) -> Changes:
        self._own.pop(prefix, None)
        if self.routes.pop(prefix, None) is None:
            return ()
        return ((prefix, RouteState.WITHDRAWN),)

    def set_mode(self, mode: RouteState) -> Changes:
        """Every announced route, and every route announced from now on, in `mode`."""
        if mode not in (RouteState.ANNOUNCED, RouteState.GRACEFUL_SHUTDOWN):
            raise ValueError(f"{mode.name} is not a mode of announced routes")
        if mode is self.mode:
            return ()
        self.mode = mode
        for prefix in self.routes:
            self.routes[prefix] = (
                mode if mode is RouteState.GRACEFUL_SHUTDOWN else self._own[prefix]
            )
        return tuple(self.routes.items())

    def withdraw_all(self) -> Changes:
        out = tuple((prefix, RouteState.WITHDRAWN) for prefix in self.routes)
        self.routes.clear()
        self._own.clear()
        return out


_OWN_STATES: Final = frozenset({RouteState.ANNOUNCED, RouteState.DEPREFERRED})


# ----------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class RoutesChanged:
    changes: Changes


@dataclass(frozen=True, slots=True)
class SessionUp:
    info: fsm.SessionInfo


@dataclass(frozen=True, slots=True)
class RouteRefresh:
    afi: int
    safi: int = SAFI_UNICAST


@dataclass(frozen=True, slots=True)
class SessionDown:
    pass


@dataclass(frozen=True, slots=True)
class CapabilitiesRefused:
    """Capabilities the peer refused (NOTIFICATION 2/7) that later OPENs leave out."""

    dropped: tuple[wire.Capability, ...]


OutboundEvent: TypeAlias = (
    RoutesChanged | SessionUp | RouteRefresh | SessionDown | CapabilitiesRefused
)


# ---------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class NotAnnounced:
    """Routes of IP `version` are not sent on this session, because `why` (rule 4)."""

    version: int
    why: str

    @property
    def text(self) -> str:
        return f"IPv{self.version} prefixes NOT announced: {self.why}"


OutboundAction: TypeAlias = fsm.SendUpdates | NotAnnounced


# --------------------------------------------------------------------------------- families


def _local_v4(local: IPAddress) -> IPAddress | None:
    return local if isinstance(local, IPv4Address) else None


def _local_v6(local: IPAddress) -> IPAddress | None:
    usable = isinstance(local, IPv6Address) and not local.is_link_local and not local.ipv4_mapped
    return local if usable else None


def _announce_v4(
    attrs: Sequence[wire.PathAttribute], nh: IPAddress, nets: Sequence[Prefix]
) -> wire.Update:
    assert isinstance(nh, IPv4Address)
    # By type code: ORIGIN, AS_PATH, NEXT_HOP (3), then MED, LOCAL_PREF, COMMUNITIES, AS4_PATH.
    with_nh = (*attrs[:2], wire.NextHop(nh), *attrs[2:])
    return wire.Update(attributes=with_nh, nlri=cast(tuple[IPv4Network, ...], tuple(nets)))


def _announce_v6(
    attrs: Sequence[wire.PathAttribute], nh: IPAddress, nets: Sequence[Prefix]
) -> wire.Update:
    # MP_REACH_NLRI (14) after ORIGIN .. COMMUNITIES, before AS4_PATH (17).
    pre = tuple(a for a in attrs if not isinstance(a, wire.As4Path))
    post = tuple(a for a in attrs if isinstance(a, wire.As4Path))
    mp = wire.MpReachNlri(AFI_IPV6, SAFI_UNICAST, (nh,), tuple(nets))
    return wire.Update(attributes=(*pre, mp, *post))


def _withdraw_v4(nets: Sequence[Prefix]) -> wire.Update:
    return wire.Update(withdrawn=cast(tuple[IPv4Network, ...], tuple(nets)))


def _withdraw_v6(nets: Sequence[Prefix]) -> wire.Update:
    return wire.Update(attributes=(wire.MpUnreachNlri(AFI_IPV6, SAFI_UNICAST, tuple(nets)),))


@dataclass(frozen=True, slots=True)
class Family:
    """How routes of one IP version are sent (rule 4)."""

    afi: int
    # the session's local address if it is a usable next hop for this family, else None
    local_next_hop: Callable[[IPAddress], IPAddress | None]
    no_next_hop: str  # NotAnnounced.why when there is no next hop
    announce: Callable[[Sequence[wire.PathAttribute], IPAddress, Sequence[Prefix]], wire.Update]
    withdraw: Callable[[Sequence[Prefix]], wire.Update]


FAMILIES: Final[dict[int, Family]] = {
    4: Family(
        AFI_IPV4,
        _local_v4,
        "no IPv4 next hop (set mpbgp_nexthop for this IPv6 peer)",
        _announce_v4,
        _withdraw_v4,
    ),
    6: Family(
        AFI_IPV6,
        _local_v6,
        "no global IPv6 next hop (set mpbgp_nexthop for this peer)",
        _announce_v6,
        _withdraw_v6,
    ),
}
_VERSION_OF_AFI: Final = {f.afi: version for version, f in FAMILIES.items()}


# ------------------------------------------------------------------------------ one session


@dataclass(frozen=True, slots=True)
class OutboundSettings:
    """What the peer's settings decide: the families offered, the MP-BGP next hops, the IP
    versions another session carries (not offered here, and not said to be NOT announced)."""

    offered: frozenset[tuple[int, int]]
    next_hop_v4: IPv4Address | None = None
    next_hop_v6: IPv6Address | None = None
    elsewhere: frozenset[int] = frozenset()

    def mpbgp_next_hop(self, version: int) -> IPAddress | None:
        return self.next_hop_v4 if version == 4 else self.next_hop_v6


class OutboundSession:
    """What one peer is sent, from the shared Adj-RIB-Out.  See the module docstring."""

    def __init__(self, settings: OutboundSettings, rib: Mapping[Prefix, RouteState]) -> None:
        self.settings = settings
        self.rib = rib
        self.info: fsm.SessionInfo | None = None
        self.refused: set[wire.Capability] = set()
        self._warned: set[int] = set()
        self._actions: list[OutboundAction] = []
        self._updates: list[wire.Update] = []
        self._builders: dict[tuple[int, RouteState], tuple[Build | None, int]] = {}

    def handle(self, event: OutboundEvent) -> list[OutboundAction]:
        self._actions, self._updates = [], []
        if isinstance(event, SessionUp):
            self.info = event.info
            self._warned.clear()
            self._builders.clear()
            self._send(self.rib.items())
        elif isinstance(event, RoutesChanged):
            self._send(event.changes)
        elif isinstance(event, RouteRefresh):
            version = _VERSION_OF_AFI.get(event.afi)
            self._send((p, s) for p, s in self.rib.items() if p.version == version)
        elif isinstance(event, SessionDown):
            self.info = None
        else:
            self.refused.update(event.dropped)
        if self._updates:
            self._actions.append(fsm.SendUpdates(tuple(self._updates)))
        return self._actions

    # -------------------------------------------------------------------------- decisions

    def next_hop(self, version: int) -> IPAddress | None:
        """The next hop of this session's routes of IP `version` (rule 4), or None."""
        assert self.info is not None
        local = FAMILIES[version].local_next_hop(self.info.local)
        return local if local is not None else self.settings.mpbgp_next_hop(version)

    def not_negotiated(self, afi: int) -> str:
        name = wire.family_name(afi, SAFI_UNICAST)
        if (afi, SAFI_UNICAST) not in self.settings.offered:
            return f"{name} is not offered on this session (set mpbgp_nexthop for this peer)"
        if wire.MultiprotocolCapability(afi, SAFI_UNICAST) in self.refused:
            return f"the router refused {name} (NOTIFICATION Unsupported Capability)"
        return f"the router did not offer {name} (activate it for this neighbor)"

    # ---------------------------------------------------------------------------- sending

    def _send(self, changes: Iterable[tuple[Prefix, RouteState]]) -> None:
        if self.info is None:
            return
        groups: dict[RouteState, tuple[list[Prefix], list[Prefix]]] = {}
        last: RouteState | None = None
        v4: list[Prefix] = []
        v6: list[Prefix] = []
        for prefix, state in changes:
            if state is not last:  # runs of one state are the rule: look the group up once
                v4, v6 = groups.setdefault(state, ([], []))
                last = state
            (v4 if isinstance(prefix, IPv4Network) else v6).append(prefix)
        states = list(groups) if len(groups) == 1 else [s for s in RouteState if s in groups]
        for index, version in enumerate(FAMILIES):  # IPv4, then IPv6; states in enum order
            for state in states:
                nets = groups[state][index]
                if nets:
                    self._send_group(version, state, nets)

    def _send_group(self, version: int, state: RouteState, nets: list[Prefix]) -> None:
        assert self.info is not None
        fam = FAMILIES[version]
        if (fam.afi, SAFI_UNICAST) not in self.info.families:
            if STATE_POLICY[state] is not None and version not in self.settings.elsewhere:
                self._warn(version, self.not_negotiated(fam.afi))
            return
        build, empty_len = self._builder(version, state)
        if build is None:
            self._warn(version, fam.no_next_hop)
            return
        for group in _pack(nets, wire.MAX_MESSAGE_LEN - empty_len):
            self._updates.append(build(group))

    def _builder(self, version: int, state: RouteState) -> tuple[Build | None, int]:
        """How UPDATEs of `state` for `version` are built on this session, and the length of
        one without prefixes (cached per session); None: this family has no next hop here."""
        key = (version, state)
        cached = self._builders.get(key)
        if cached is None:
            assert self.info is not None
            fam = FAMILIES[version]
            policy_of = STATE_POLICY[state]
            nh = self.next_hop(version)
            build: Build | None = None
            if policy_of is None:
                build = fam.withdraw
            elif nh is not None:
                build = functools.partial(
                    fam.announce, policy_of(self.info.policy).attributes(), nh
                )
            size = 0 if build is None else len(wire.encode(build(()), self.info.policy.ctx))
            cached = self._builders[key] = (build, size)
        return cached

    def _warn(self, version: int, why: str) -> None:
        if version not in self._warned:
            self._warned.add(version)
            self._actions.append(NotAnnounced(version, why))


def _pack(nets: Sequence[Prefix], budget: int) -> list[tuple[Prefix, ...]]:
    """Consecutive groups of `nets` whose encoded prefixes (a length octet and the prefix's
    significant octets) fit in `budget` octets each."""
    groups: list[tuple[Prefix, ...]] = []
    start = size = 0
    for i, plen in enumerate([n.prefixlen for n in nets]):
        n = 1 + (plen + 7) // 8
        if size + n > budget and i > start:
            groups.append(tuple(nets[start:i]))
            start, size = i, 0
        size += n
    if start < len(nets):
        groups.append(tuple(nets[start:]))
    return groups
