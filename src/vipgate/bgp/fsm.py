"""BGP session state machine, sans-I/O (RFC 4271 section 8, with collision detection, 6.8).

Rules this module keeps
-----------------------
1. It never does I/O and has no clock.  The owner feeds it *events* (:class:`Start`,
   :class:`TcpConnected`, :class:`TcpAccepted`, :class:`TcpClosed`, :class:`BytesReceived`,
   :class:`TimerFired`, :class:`SendUpdates`, :class:`Stop`, :class:`PeerReachable`) through
   :meth:`Session.handle`, which returns a list of *actions* to carry out in order
   (:class:`OpenConnection`, :class:`AcceptConnection`, :class:`RefuseConnection`,
   :class:`SendBytes`, :class:`ArmTimer`, :class:`CancelTimer`, :class:`CloseConnection`,
   :class:`StateChanged`, :class:`SessionUp`, :class:`SessionDown`, :class:`MessageReceived`,
   :class:`MessageSent`, :class:`RoutesReceived`, :class:`ResendAdjRibOut`,
   :class:`CapabilitiesRefused`, :class:`CollisionResolved`, :class:`ProtocolWarning`).
   Events and actions are small frozen dataclasses.
2. Two connections at most, named by role (:class:`Conn`): ACTIVE, the one we dial
   (:class:`OpenConnection`, then :class:`TcpConnected`; outside Connect that event is a bug in
   the owner and raises :class:`LocalProtocolError`), and PASSIVE, the one the peer opened
   (:class:`TcpAccepted`, answered by :class:`AcceptConnection` or :class:`RefuseConnection`).
   Bytes, closes, sends and closes carry the role; events of a connection no longer in use are
   ignored.  The Active state is never used: in Idle (not stopped) or Connect the peer's
   connection is taken at once and a dial in progress dropped.  Collisions (RFC 4271 6.8): the
   connection opened by the speaker with the higher BGP identifier, compared as unsigned 32-bit
   numbers, survives (equal identifiers, eBGP: the higher AS, RFC 6286 2.3); the other gets
   Cease/Connection Collision Resolution (6/7).  The identifier is known from the first OPEN on
   either connection: while ours is in OpenSent without it, the peer's waits beside it as the
   *candidate* (:attr:`Session.candidate`, our OPEN sent on it) and the first OPEN decides; in
   OpenConfirm the decision is made when the connection arrives; an Established session always
   wins over a new connection.  Ours wins such a decision in OpenSent once: RFC 4271 6.8
   examines connections in OpenConfirm, and ours has brought no OPEN, so when a second
   connection of the peer's brings one while ours still waits, ours is taken for dead (a
   half-open connection: the peer's reset lost while the link was down, nothing of ours left
   to send that would draw another) and the session goes on with the peer's; else the peer,
   not knowing ours, dials and is closed with 6/7 until ours is found dead (the TCP keepalive
   the adapter keeps on every connection until Established, :mod:`vipgate.bgp.peer`: a
   ``TcpClosed`` within seconds of the path being back; else the 4 minutes of our OpenSent
   hold timer).  A new connection of the peer's replaces an earlier one of its
   own that is not Established (the peer gave that one up).  If ours fails while a candidate
   waits, the session goes on with the candidate, without backoff.
3. Anything the peer sends that is wrong ends in the NOTIFICATION the RFCs name for it (via
   :class:`~vipgate.bgp.wire.BgpError`), a close and a reconnect with backoff -- never an
   exception out of :meth:`Session.handle`.  UPDATE errors for which RFC 7606 asks for
   treat-as-withdraw or attribute-discard only produce a :class:`ProtocolWarning` (we never install
   routes, so "withdraw" just means not counting them) and the session stays up.
4. Timers are armed with a generation number; a :class:`TimerFired` whose generation is not the
   current one for that timer is stale and ignored, so the owner need not worry about races
   between cancelling a timer and it firing.
5. Received routes are parsed, validated and counted (the Adj-RIB-In is a set of prefixes),
   never installed.
6. We offer exactly the address families of :attr:`SessionConfig.families` (one Multiprotocol
   capability each, RFC 4760), Route Refresh and 4-octet AS.  A NOTIFICATION OPEN Message Error /
   Unsupported Capability (2/7) names the capabilities the peer refuses (RFC 5492 section 3):
   every later OPEN of this :class:`Session` leaves them out (:attr:`Session.refused`), and
   :class:`CapabilitiesRefused` tells the owner which ones, decoded.  A family is used only if
   both sides offered it (without any Multiprotocol capability IPv4 unicast is implied); 4-octet
   AS numbers only if both sides sent the capability (RFC 6793).
7. Our OPEN uses RFC 4271's optional parameters encoding -- until the peer has sent an OPEN in
   RFC 9072's extended encoding: from then on ours is extended too (:attr:`Session.extended_open`;
   RFC 9072 lets configuration force it, and such a peer must accept it).  FRR 8.4 with
   ``neighbor X extended-optional-parameters`` misreads a standard OPEN (it takes the first
   parameter type for the Non-Ext OP Type) and answers NOTIFICATION 2/0, so a session with it
   comes up on the second attempt.  The encoding is learnt from any OPEN the peer sends, also
   on a connection a collision closes.  After a 2/0 answered our OPEN before any OPEN of the
   peer's told its encoding, the next connections, ours or the peer's, hold our OPEN until the
   peer's arrives and answer in its encoding (RFC 4271 8.1.1's DelayOpen, only then: the state
   is OpenSent, our OPEN held, with :attr:`Timer.DELAY_OPEN` running); if none comes within
   ``DELAY_OPEN_TIME`` ours goes out as before.  Every other OPEN is sent at once, as always.
8. NOTIFICATIONs we send: for our own reasons only a Cease (code 6) -- Administrative Shutdown
   (6/2, with the RFC 9003 message) on a stop, BFD Down (6/10, RFC 9384) from the BFD coupling,
   Connection Collision Resolution (6/7) for the connection a collision closes, Unspecific
   (6/0) when our own decoder fails.  We end a session for no other reason of ours: a 2/7
   answer from the peer is followed by a plain close and a new OPEN, a family or next hop we
   cannot use only means routes not sent.  Routers do not punish a Cease, while any other
   NOTIFICATION, sent or received, costs the next session BIRD's ``error wait time`` (60 s
   doubling to 300 s by default; docs/routers.md).  Other codes are only the answers RFC 4271
   6 and its updates prescribe to the peer's errors: Message Header (1), OPEN (2), UPDATE (3;
   RFC 7606 keeps most of them from ending the session), Hold Timer Expired (4/0: the peer fell
   silent), Finite State Machine (5).
9. Retries (:meth:`Session.backoff_delay`): after an Established session is lost the peer is
   probably coming back, so for ``fast_retry_window`` seconds (:attr:`Timer.FAST_RETRY`) each
   retry follows ``fast_retry_min..fast_retry_max`` seconds later (jittered: nodes that lost the
   same router do not dial in step); then the bounded exponential backoff, from its first step.
   Established resets both; :class:`PeerReachable` (the kernel reports the route or link back)
   retries at once from Idle, and dials anew from Connect.  A dial the peer's host refuses
   (:attr:`TcpClosed.refused`: a TCP RST, the host is up and its BGP speaker not listening --
   a router restarting, or still loading its configuration) is retried at the fast cadence
   whatever the window, and the backoff starts from its first step again once dials fail
   otherwise: how long the router was down must not add to the wait after it listens again
   (docs/routers.md, router restarts).  The cost is a SYN and a RST every 0.5-1 s.

Theory of operation
-------------------
``Start`` in Idle moves to Connect and asks for a connection (``OpenConnection``) with the
connect-retry timer as a connect timeout.  ``TcpConnected`` (carrying the local and remote
addresses) sends our OPEN and moves to OpenSent with a large hold timer (RFC 4271: 4 minutes;
a connection the peer's host has forgotten is found sooner, by the adapter's TCP keepalive
probes drawing its reset, :mod:`vipgate.bgp.peer`: a peer that only listens never dials to
tell us).
The peer's OPEN is checked (version, hold time 1/2, identifier 0 in the codec; peer AS, and for
iBGP an identifier equal to ours, here: RFC 6286 2.1 allows an eBGP peer to share our
identifier), the hold time negotiated (the smaller of both, 0 = no keepalives)
and the keepalive derived (configured keepalive scaled by negotiated/configured hold, else
hold/3); we answer KEEPALIVE and move to OpenConfirm.  The peer's KEEPALIVE moves us to
Established and yields ``SessionUp`` with a :class:`SessionInfo`: the owner then sends its whole
Adj-RIB-Out through ``SendUpdates`` (wire UPDATE objects from :mod:`vipgate.bgp.outbound`,
encoded here in the session's context, one ``MessageSent`` each).  In Established, UPDATEs
yield ``RoutesReceived``,
ROUTE-REFRESH yields ``ResendAdjRibOut``; every message received restarts the hold timer, every
KEEPALIVE/UPDATE sent restarts the keepalive timer.  Hold-timer expiry sends NOTIFICATION 4/0.

Every way down (error, NOTIFICATION received, TCP closed, hold timer) goes to Idle and arms the
connect-retry timer (rule 9: in the fast-retry window ``min + (max - min) * rng()``, else
bounded exponential backoff with jitter, ``delay = min(cap, first * 2**n) * (0.5 + rng()/2)``,
n = failures since the last Established or the window's end); its expiry reconnects.
``Stop(message)`` sends Cease/Administrative Shutdown with the RFC 8203 message if a connection
is open, closes, and stays in Idle until the next ``Start``.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Final, TypeAlias

from vipgate.bgp import wire
from vipgate.bgp.wire import (
    AFI_IPV4,
    AFI_IPV6,
    AS_TRANS,
    SAFI_UNICAST,
    SHUTDOWN_SUBCODES,
    BgpError,
    CeaseSubcode,
    ErrorCode,
    FsmError,
    Handling,
    Notification,
    OpenError,
    SessionContext,
    UpdateError,
)

__all__ = [
    "AcceptConnection",
    "ArmTimer",
    "BytesReceived",
    "CancelTimer",
    "CapabilitiesRefused",
    "CloseConnection",
    "CollisionResolved",
    "Conn",
    "LocalProtocolError",
    "MessageReceived",
    "MessageSent",
    "OpenConnection",
    "PeerReachable",
    "ProtocolWarning",
    "RefuseConnection",
    "ResendAdjRibOut",
    "RoutesReceived",
    "SendBytes",
    "SendUpdates",
    "Session",
    "SessionConfig",
    "SessionDown",
    "SessionInfo",
    "SessionUp",
    "Start",
    "State",
    "StateChanged",
    "Stop",
    "TcpAccepted",
    "TcpClosed",
    "TcpConnected",
    "Timer",
    "TimerFired",
]

IPAddress: TypeAlias = IPv4Address | IPv6Address
Prefix: TypeAlias = IPv4Network | IPv6Network

OPEN_SENT_HOLD: Final = 240.0  # RFC 4271 8.2.2: "a large value (suggested 4 minutes)"
# Rule 7: how long a held OPEN waits for the peer's (routers send theirs on connecting).
DELAY_OPEN_TIME: Final = 3.0


class LocalProtocolError(Exception):
    """The owner used the state machine wrongly (a bug in our code, not the peer's)."""


class State(enum.Enum):
    IDLE = "Idle"
    CONNECT = "Connect"
    OPEN_SENT = "OpenSent"
    OPEN_CONFIRM = "OpenConfirm"
    ESTABLISHED = "Established"


class Timer(enum.Enum):
    CONNECT_RETRY = "connect-retry"
    HOLD = "hold"
    KEEPALIVE = "keepalive"
    FAST_RETRY = "fast-retry"  # the window of quick retries after a session loss (rule 9)
    DELAY_OPEN = "delay-open"  # our OPEN held for the peer's (rule 7, RFC 4271 8.1.1)


class Conn(enum.Enum):
    """A connection's role: ACTIVE is the one we dial, PASSIVE the one the peer opened."""

    ACTIVE = "active"
    PASSIVE = "passive"


# ------------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class Start:
    pass


@dataclass(frozen=True, slots=True)
class TcpConnected:
    local: IPAddress
    remote: IPAddress


@dataclass(frozen=True, slots=True)
class TcpAccepted:
    """The peer opened a connection to us (the listener checked its source address)."""

    local: IPAddress
    remote: IPAddress


@dataclass(frozen=True, slots=True)
class TcpClosed:
    """The connection attempt failed, or the open connection was closed or reset.

    ``refused``: our dial was answered with a TCP RST (ECONNREFUSED; rule 9)."""

    reason: str = "connection closed"
    conn: Conn = Conn.ACTIVE
    refused: bool = False


@dataclass(frozen=True, slots=True)
class BytesReceived:
    data: bytes
    conn: Conn = Conn.ACTIVE


@dataclass(frozen=True, slots=True)
class PeerReachable:
    """The kernel reports the route or link towards the peer back: retry at once."""

    reason: str = "route to the peer back"


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer: Timer
    generation: int


@dataclass(frozen=True, slots=True)
class SendUpdates:
    """UPDATE messages the owner wants sent, in order (dropped unless Established)."""

    updates: tuple[wire.Update, ...]


@dataclass(frozen=True, slots=True)
class Stop:
    """Cease: 2 Administrative Shutdown with `message` (RFC 9003), 10 BFD Down (RFC 9384)."""

    message: str = ""
    subcode: CeaseSubcode = CeaseSubcode.ADMINISTRATIVE_SHUTDOWN


Event: TypeAlias = (
    Start
    | TcpConnected
    | TcpAccepted
    | TcpClosed
    | BytesReceived
    | TimerFired
    | SendUpdates
    | Stop
    | PeerReachable
)


# ----------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class OpenConnection:
    pass


@dataclass(frozen=True, slots=True)
class SendBytes:
    data: bytes
    conn: Conn = Conn.ACTIVE


@dataclass(frozen=True, slots=True)
class ArmTimer:
    timer: Timer
    delay: float
    generation: int


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer: Timer


@dataclass(frozen=True, slots=True)
class CloseConnection:
    conn: Conn = Conn.ACTIVE


@dataclass(frozen=True, slots=True)
class AcceptConnection:
    """Take the connection of the last :class:`TcpAccepted` as the PASSIVE one."""


@dataclass(frozen=True, slots=True)
class RefuseConnection:
    """Write ``data`` (a NOTIFICATION, or nothing) on the connection of the last
    :class:`TcpAccepted` and close it: it never becomes one of the session's."""

    data: bytes = b""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CollisionResolved:
    """Two connections to the peer (RFC 4271 6.8): ``kept`` goes on, the other was closed."""

    kept: Conn
    reason: str


@dataclass(frozen=True, slots=True)
class StateChanged:
    old: State
    new: State
    reason: str


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What the session negotiated: what :mod:`vipgate.bgp.outbound` builds UPDATEs from."""

    local: IPAddress
    remote: IPAddress
    local_as: int
    peer_as: int
    peer_id: IPv4Address
    as4: bool
    families: frozenset[tuple[int, int]]
    route_refresh: bool
    hold_time: int
    keepalive: int

    @property
    def ebgp(self) -> bool:
        return self.local_as != self.peer_as

    @property
    def policy(self) -> wire.OutboundPolicy:
        return wire.OutboundPolicy(local_as=self.local_as, ebgp=self.ebgp, as4=self.as4)


@dataclass(frozen=True, slots=True)
class SessionUp:
    info: SessionInfo


@dataclass(frozen=True, slots=True)
class SessionDown:
    reason: str
    sent: Notification | None = None
    received: Notification | None = None


@dataclass(frozen=True, slots=True)
class MessageReceived:
    type_name: str


@dataclass(frozen=True, slots=True)
class MessageSent:
    type_name: str


@dataclass(frozen=True, slots=True)
class RoutesReceived:
    announced: tuple[Prefix, ...]
    withdrawn: tuple[Prefix, ...]


@dataclass(frozen=True, slots=True)
class ResendAdjRibOut:
    afi: int
    safi: int


@dataclass(frozen=True, slots=True)
class CapabilitiesRefused:
    """The peer answered our OPEN with NOTIFICATION 2/7 (Unsupported Capability).

    ``named``: the capabilities its data lists (RFC 5492 section 3), decoded; ``undecodable``:
    data bytes that did not decode; ``dropped``: those of ours that every later OPEN leaves out
    (empty: the NOTIFICATION names nothing we can leave out, so the next OPEN is the same);
    ``families``: the (AFI, SAFI) pairs the next OPEN still offers.
    """

    named: tuple[wire.Capability, ...]
    undecodable: bytes
    dropped: tuple[wire.Capability, ...]
    families: frozenset[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class ProtocolWarning:
    text: str
    error: BgpError | None = None


Action: TypeAlias = (
    OpenConnection
    | AcceptConnection
    | RefuseConnection
    | CollisionResolved
    | SendBytes
    | ArmTimer
    | CancelTimer
    | CloseConnection
    | StateChanged
    | SessionUp
    | SessionDown
    | MessageReceived
    | MessageSent
    | RoutesReceived
    | ResendAdjRibOut
    | CapabilitiesRefused
    | ProtocolWarning
)


# ------------------------------------------------------------------------------------ config


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """``families``: the (AFI, SAFI) pairs we offer (one Multiprotocol capability each)."""

    local_as: int
    router_id: IPv4Address
    peer_as: int
    hold_time: int = 30
    keepalive: int = 10
    families: frozenset[tuple[int, int]] = frozenset(
        {(AFI_IPV4, SAFI_UNICAST), (AFI_IPV6, SAFI_UNICAST)}
    )
    connect_timeout: float = 5.0
    backoff_first: float = 1.0
    backoff_cap: float = 30.0
    # Rule 9: after an Established session is lost, retry every fast_retry_min..max seconds
    # (jittered) for fast_retry_window seconds, then back off as above; 0: no such window.
    fast_retry_window: float = 30.0
    fast_retry_min: float = 0.5
    fast_retry_max: float = 1.0

    def __post_init__(self) -> None:
        if self.hold_time != 0 and self.hold_time < 3:
            raise ValueError("hold time must be 0 or at least 3 seconds")
        if not 1 <= self.local_as <= 0xFFFFFFFF or not 1 <= self.peer_as <= 0xFFFFFFFF:
            raise ValueError("AS numbers are 1..4294967295")
        if int(self.router_id) == 0:
            raise ValueError("router id must not be 0.0.0.0")
        if self.keepalive < 0:
            raise ValueError("keepalive must not be negative")
        if not 0 < self.backoff_first <= self.backoff_cap:
            raise ValueError("backoff: 0 < first <= cap")
        if self.fast_retry_window < 0 or not 0 < self.fast_retry_min <= self.fast_retry_max:
            raise ValueError("fast retry: window >= 0, 0 < min <= max")


def negotiate_timers(ours: int, keepalive: int, theirs: int) -> tuple[int, int]:
    """(hold, keepalive): the smaller hold; keepalive scaled to it (or hold/3); 0 = none."""
    hold = min(ours, theirs)
    if hold == 0:
        return 0, 0
    ka = keepalive * hold // ours if keepalive else hold // 3
    return hold, max(1, min(ka, hold))


# ---------------------------------------------------------------------------- state machine

_UNEXPECTED_SUBCODE: Final = {
    State.OPEN_SENT: FsmError.UNEXPECTED_IN_OPEN_SENT,
    State.OPEN_CONFIRM: FsmError.UNEXPECTED_IN_OPEN_CONFIRM,
    State.ESTABLISHED: FsmError.UNEXPECTED_IN_ESTABLISHED,
}
_COLLISION: Final = Notification(ErrorCode.CEASE, CeaseSubcode.CONNECTION_COLLISION_RESOLUTION)


@dataclass(slots=True)
class _Candidate:
    """The peer's connection, our OPEN sent on it, while ours waits for the peer's OPEN."""

    local: IPAddress
    remote: IPAddress
    decoder: wire.Decoder
    offered: tuple[wire.Capability, ...]
    held: bool = False  # our OPEN not sent on it yet (rule 7)


_Handler: TypeAlias = Callable[["Session", object], None]


class Session:
    """One BGP session towards one peer.  See the module docstring."""

    def __init__(self, config: SessionConfig, rng: Callable[[], float] = random.random) -> None:
        self.config = config
        self._rng = rng
        self.state = State.IDLE
        self.decoder = wire.Decoder()
        self._generation: dict[Timer, int] = dict.fromkeys(Timer, 0)
        self._armed: set[Timer] = set()
        self._actions: list[Action] = []
        self.failures = 0  # consecutive failed attempts since the last Established
        self._backoff_from = 0  # `failures` when the fast-retry window ended (rule 9)
        self.conn = Conn.ACTIVE  # the connection the state machine runs on
        # The peer's connection while ours is in OpenSent without its OPEN yet (rule 2).
        self.candidate: _Candidate | None = None
        self.stopped = True
        self.local: IPAddress | None = None
        self.remote: IPAddress | None = None
        self.peer_open: wire.Open | None = None
        self.info: SessionInfo | None = None
        self.hold_time = 0
        self.keepalive = 0
        self.adj_rib_in: set[Prefix] = set()
        self.updates_received = 0
        self.update_errors = 0
        # Capabilities the peer refused with 2/7: left out of every later OPEN (RFC 5492 3).
        self.refused: set[wire.Capability] = set()
        self.offered: tuple[wire.Capability, ...] = ()  # in the OPEN of this connection
        self.extended_open = False  # the peer sent an RFC 9072 extended OPEN: so do we
        # A 2/0 answered our OPEN before the peer's encoding was known: hold ours (rule 7).
        self.delay_open = False
        self.open_held = False  # our OPEN on the session's connection is held (rule 7)
        # The peer's connections closed by a collision while ours waits for its OPEN (rule 2).
        self.outvoted = 0

    # ----------------------------------------------------------------------- public API

    @property
    def as4(self) -> bool:
        return self.decoder.ctx.as4

    @property
    def ctx(self) -> SessionContext:
        return self.decoder.ctx

    def handle(self, event: Event) -> list[Action]:
        """Process one event; return the actions to carry out, in order."""
        self._actions = []
        key: object = event.timer if isinstance(event, TimerFired) else type(event)
        if isinstance(event, TimerFired) and (
            event.timer not in self._armed or event.generation != self._generation[event.timer]
        ):
            return []  # stale
        if isinstance(event, TimerFired):
            self._armed.discard(event.timer)
        if isinstance(event, BytesReceived | TcpClosed) and event.conn is not self.conn:
            if self.candidate is not None:  # else: late, from a connection already closed
                CANDIDATE_TRANSITIONS[type(event)](self, event)
            return self._actions
        handler = TRANSITIONS.get((self.state, key))
        if handler is None:
            if isinstance(event, TcpConnected):
                raise LocalProtocolError(f"TcpConnected in state {self.state.value}")
            return []  # event irrelevant in this state (e.g. late bytes after a close)
        handler(self, event)
        return self._actions

    def capabilities(self) -> tuple[wire.Capability, ...]:
        """What our next OPEN offers: the configured families, Route Refresh, 4-octet AS --
        less what the peer refused."""
        cfg = self.config
        caps: list[wire.Capability] = [
            wire.MultiprotocolCapability(afi, safi) for afi, safi in sorted(cfg.families)
        ]
        caps += [wire.RouteRefreshCapability(), wire.FourOctetAsCapability(cfg.local_as)]
        return tuple(c for c in caps if c not in self.refused)

    def offered_families(self) -> frozenset[tuple[int, int]]:
        """(AFI, SAFI) of our next OPEN; none announced means IPv4 unicast (RFC 4760 1)."""
        return wire.Open(0, 0, IPv4Address(1), self.capabilities()).families

    def backoff_delay(self, refused: bool = False) -> float:
        """Delay before the next attempt: in the fast-retry window after a session loss, or
        after a refused dial, uniform in [fast_retry_min, fast_retry_max] (rule 9); else
        bounded exponential, counted from the window's end or the last refusal, with jitter in
        [50%, 100%]."""
        cfg = self.config
        if refused or Timer.FAST_RETRY in self._armed:
            return cfg.fast_retry_min + (cfg.fast_retry_max - cfg.fast_retry_min) * self._rng()
        n = max(0, self.failures - self._backoff_from - 1)
        base = min(cfg.backoff_cap, cfg.backoff_first * (2.0 ** min(n, 30)))
        return base * (0.5 + 0.5 * self._rng())

    # -------------------------------------------------------------------------- helpers

    def _emit(self, action: Action) -> None:
        self._actions.append(action)

    def _set_state(self, new: State, reason: str) -> None:
        if new is not self.state:
            self._emit(StateChanged(self.state, new, reason))
            self.state = new

    def _arm(self, timer: Timer, delay: float) -> None:
        self._generation[timer] += 1
        self._armed.add(timer)
        self._emit(ArmTimer(timer, delay, self._generation[timer]))

    def _cancel(self, timer: Timer) -> None:
        if timer in self._armed:
            self._armed.discard(timer)
            self._generation[timer] += 1
            self._emit(CancelTimer(timer))

    def _send(self, msg: wire.Message, conn: Conn | None = None) -> None:
        self._emit(SendBytes(wire.encode(msg, self.ctx), conn or self.conn))
        self._emit(MessageSent(msg.type_name))

    def _restart_hold(self) -> None:
        if self.hold_time:
            self._arm(Timer.HOLD, float(self.hold_time))

    def _restart_keepalive(self) -> None:
        if self.keepalive:
            self._arm(Timer.KEEPALIVE, float(self.keepalive))

    def _fresh_connection(self, conn: Conn) -> None:
        self.conn = conn
        self.decoder = wire.Decoder()
        self.local = self.remote = None
        self.peer_open = None
        self.info = None
        self.hold_time = self.keepalive = 0
        self.adj_rib_in.clear()
        self.open_held = False
        self.outvoted = 0

    def _connect(self, reason: str) -> None:
        self._fresh_connection(Conn.ACTIVE)
        self._set_state(State.CONNECT, reason)
        self._emit(OpenConnection())
        self._arm(Timer.CONNECT_RETRY, self.config.connect_timeout)

    def _down(
        self,
        reason: str,
        *,
        sent: Notification | None = None,
        received: Notification | None = None,
        reconnect: bool = True,
        refused: bool = False,
    ) -> None:
        """Leave the session: optional NOTIFICATION, close, Idle, backoff unless stopping --
        or, if the peer's connection is pending (rule 2), go on with that one."""
        was_up = self.state is State.ESTABLISHED
        if sent is not None:
            self._send(sent)
            if "NOTIFICATION" not in reason:
                reason += f"; sent NOTIFICATION {sent.name}"
        self._cancel(Timer.HOLD)
        self._cancel(Timer.KEEPALIVE)
        self._cancel(Timer.CONNECT_RETRY)
        self._cancel(Timer.DELAY_OPEN)
        self._emit(CloseConnection(self.conn))
        if self.candidate is not None:
            if reconnect and not self.stopped:
                self._promote_candidate(f"{reason}; going on with the peer's connection")
                return
            self._drop_candidate(sent)
        self._set_state(State.IDLE, reason)
        if was_up:
            self._emit(SessionDown(reason, sent, received))
        self.info = None
        self.adj_rib_in.clear()
        if reconnect and not self.stopped:
            self.failures += 1
            if refused:
                self._backoff_from = self.failures  # the backoff from its first step again
            if was_up and self.config.fast_retry_window > 0:
                self._arm(Timer.FAST_RETRY, self.config.fast_retry_window)
            self._arm(Timer.CONNECT_RETRY, self.backoff_delay(refused))

    def _error(self, err: BgpError) -> None:
        self._down(
            f"sent NOTIFICATION {err.notification().name}: {err.reason}", sent=err.notification()
        )

    # ------------------------------------------------------------------------- handlers

    def _on_start(self, _ev: object) -> None:
        self.stopped = False
        self.failures = self._backoff_from = 0
        self._cancel(Timer.FAST_RETRY)
        self._connect("start")

    def _on_retry(self, _ev: object) -> None:
        self._connect(f"retry after {self.failures} failed attempt(s)")

    def _on_connect_timeout(self, _ev: object) -> None:
        self._down(f"TCP connect timed out after {self.config.connect_timeout:g} s")

    def _on_connect_failed(self, ev: object) -> None:
        assert isinstance(ev, TcpClosed)
        self._down(f"TCP connect failed: {ev.reason}", refused=ev.refused)

    def _on_closed(self, ev: object) -> None:
        assert isinstance(ev, TcpClosed)
        self._down(f"TCP connection lost in {self.state.value}: {ev.reason}")

    def _on_connected(self, ev: object) -> None:
        assert isinstance(ev, TcpConnected)
        self._cancel(Timer.CONNECT_RETRY)
        self.local, self.remote = ev.local, ev.remote
        self._open_or_hold()
        self._set_state(State.OPEN_SENT, f"TCP connected {ev.local} -> {ev.remote}")
        self._arm(Timer.HOLD, OPEN_SENT_HOLD)

    def _open_or_hold(self) -> None:
        """Our OPEN on the session's connection -- or held for the peer's (rule 7)."""
        if self.delay_open:
            self.open_held = True
            self._arm(Timer.DELAY_OPEN, DELAY_OPEN_TIME)
        else:
            self.offered = self._send_open(self.conn)

    def _release_open(self) -> None:
        """Send the held OPEN(s), in the encoding learnt meanwhile if any (rule 7)."""
        self._cancel(Timer.DELAY_OPEN)
        if self.open_held:
            self.open_held = False
            self.offered = self._send_open(self.conn)
        cand = self.candidate
        if cand is not None and cand.held:
            cand.held = False
            cand.offered = self._send_open(Conn.PASSIVE)

    def _learn_encoding(self, msg: wire.Open) -> None:
        """Rule 7: any OPEN of the peer's tells its encoding; no OPEN is held from then on."""
        self.extended_open = self.extended_open or msg.extended
        self.delay_open = False

    def _send_open(self, conn: Conn) -> tuple[wire.Capability, ...]:
        """Send our OPEN on `conn`; return the capabilities it offers."""
        cfg = self.config
        offered = self.capabilities()
        my_as = cfg.local_as if cfg.local_as <= 0xFFFF else AS_TRANS
        msg = wire.Open(my_as, cfg.hold_time, cfg.router_id, offered)
        if self.extended_open:
            self._emit(SendBytes(wire.encode_open_extended(msg), conn))
            self._emit(MessageSent(msg.type_name))
        else:
            self._send(msg, conn)
        return offered

    def _on_hold_expired(self, _ev: object) -> None:
        self._down(
            f"hold timer expired ({self.hold_time or OPEN_SENT_HOLD:g} s without a message)",
            sent=Notification(ErrorCode.HOLD_TIMER_EXPIRED),
        )

    def _on_keepalive_timer(self, _ev: object) -> None:
        self._send(wire.Keepalive())
        self._restart_keepalive()

    def _on_send_updates(self, ev: object) -> None:
        assert isinstance(ev, SendUpdates)
        if ev.updates:
            ctx = self.ctx
            self._emit(SendBytes(b"".join(wire.encode(u, ctx) for u in ev.updates), self.conn))
            for u in ev.updates:
                self._emit(MessageSent(u.type_name))
            self._restart_keepalive()

    def _on_stop(self, ev: object) -> None:
        assert isinstance(ev, Stop)
        self.stopped = True
        self._cancel(Timer.CONNECT_RETRY)
        self._cancel(Timer.FAST_RETRY)
        if self.state is State.IDLE:
            return
        sent = None
        if self.state is not State.CONNECT:
            sent = (
                Notification.shutdown(ev.message, ev.subcode)
                if ev.subcode in SHUTDOWN_SUBCODES
                else Notification(ErrorCode.CEASE, ev.subcode)
            )
        reason = "stopped" + (f": {ev.message}" if ev.message else "")
        self._down(reason, sent=sent, reconnect=False)

    def _on_bytes(self, ev: object) -> None:
        assert isinstance(ev, BytesReceived)
        self.decoder.feed(ev.data)
        received = False
        while self.state in _UNEXPECTED_SUBCODE:
            try:
                msg = self.decoder.next_message()
            except BgpError as err:
                if err.fatal:
                    self._error(err)
                    return
                received = True
                self._emit(MessageReceived("UPDATE"))
                self._update_error(err)
                continue
            except Exception as exc:  # a bug in the codec must not take the process down;
                # our reason, so a Cease (rule 8)
                self._error(
                    BgpError(
                        ErrorCode.CEASE,
                        CeaseSubcode.UNSPECIFIC,
                        b"",
                        f"undecodable message ({exc!r})",
                    )
                )
                return
            if msg is None:
                break
            received = True
            self._emit(MessageReceived(msg.type_name))
            if isinstance(msg, wire.Open):
                self._learn_encoding(msg)
            handler = MESSAGE_TRANSITIONS.get((self.state, type(msg)))
            if handler is None:
                sub = _UNEXPECTED_SUBCODE[self.state]
                self._error(BgpError(ErrorCode.FSM_ERROR, sub, b"", f"unexpected {msg.type_name}"))
                return
            handler(self, msg)
        if received and self.state in _UNEXPECTED_SUBCODE:
            self._restart_hold()

    # ---------------------------------------------- the peer's connections (rules 2 and 9)

    def _on_accepted(self, ev: object) -> None:
        """Idle or Connect: go on with the peer's connection (a dial in progress is dropped);
        refused while stopped."""
        assert isinstance(ev, TcpAccepted)
        if self.stopped:
            self._emit(RefuseConnection(b"", "the session is stopped"))
            return
        if self.state is State.CONNECT:
            self._emit(CloseConnection(Conn.ACTIVE))
        self._cancel(Timer.CONNECT_RETRY)
        self._adopt(ev, f"TCP connection from the peer {ev.remote} -> {ev.local}")

    def _on_accepted_open_sent(self, ev: object) -> None:
        """OpenSent, no OPEN from the peer yet: the peer's connection waits beside ours (the
        candidate; a newer one replaces it) until the first OPEN on either decides.  A session
        on an earlier connection of the peer's: the peer gave that one up, the new one replaces
        it."""
        assert isinstance(ev, TcpAccepted)
        if self.conn is Conn.PASSIVE:
            self._replace_main(ev, "the peer opened a new connection")
            return
        self._drop_candidate(_COLLISION, "the peer opened a newer connection")
        self._emit(AcceptConnection())
        held = self.delay_open
        offered = () if held else self._send_open(Conn.PASSIVE)
        self.candidate = _Candidate(ev.local, ev.remote, wire.Decoder(), offered, held)
        if held and Timer.DELAY_OPEN not in self._armed:
            self._arm(Timer.DELAY_OPEN, DELAY_OPEN_TIME)

    def _on_accepted_open_confirm(self, ev: object) -> None:
        """OpenConfirm: the peer's identifier is known, RFC 4271 6.8 decides at once."""
        assert isinstance(ev, TcpAccepted) and self.peer_open is not None
        peer_id = self.peer_open.bgp_id
        if self.conn is Conn.ACTIVE and self._dominant(peer_id):
            why = f"our BGP identifier {self.config.router_id} is above the peer's {peer_id}"
            self._refuse(why)
        else:
            self._replace_main(ev, self._collision_reason(peer_id))

    def _on_accepted_established(self, _ev: object) -> None:
        """RFC 4271 6.8: an Established session wins over a new connection."""
        self._refuse("the session is Established")

    def _refuse(self, why: str) -> None:
        self._emit(RefuseConnection(wire.encode(_COLLISION, self.ctx), why))
        self._emit(MessageSent(_COLLISION.type_name))
        self._emit(CollisionResolved(self.conn, f"the peer's new connection closed: {why}"))

    def _adopt(self, ev: TcpAccepted, reason: str) -> None:
        """The connection of `ev` becomes the session's: our OPEN on it, OpenSent."""
        self._emit(AcceptConnection())
        self._fresh_connection(Conn.PASSIVE)
        self.local, self.remote = ev.local, ev.remote
        self._open_or_hold()
        self._set_state(State.OPEN_SENT, reason)
        self._arm(Timer.HOLD, OPEN_SENT_HOLD)

    def _close_main(self) -> None:
        """Close the session's connection with Cease/7 (not a way down: no backoff)."""
        self._send(_COLLISION)
        self._cancel(Timer.HOLD)
        self._cancel(Timer.KEEPALIVE)
        self._cancel(Timer.DELAY_OPEN)
        self._emit(CloseConnection(self.conn))

    def _replace_main(self, ev: TcpAccepted, reason: str) -> None:
        self._close_main()
        self._emit(CollisionResolved(Conn.PASSIVE, reason))
        self._adopt(ev, reason)

    def _dominant(self, peer_id: IPv4Address) -> bool:
        """RFC 4271 6.8: the connection opened by the speaker with the higher BGP identifier
        (unsigned 32-bit) survives; equal identifiers (eBGP): the higher AS (RFC 6286 2.3)."""
        ours, theirs = int(self.config.router_id), int(peer_id)
        if ours != theirs:
            return ours > theirs
        return self.config.local_as > self.config.peer_as

    def _collision_reason(self, peer_id: IPv4Address) -> str:
        if self._dominant(peer_id):
            return f"our BGP identifier {self.config.router_id} is above the peer's {peer_id}"
        return f"the peer's BGP identifier {peer_id} is above ours {self.config.router_id}"

    def _promote_candidate(self, reason: str) -> None:
        """The candidate becomes the session's connection (our OPEN was sent on it)."""
        cand, self.candidate = self.candidate, None
        assert cand is not None
        self._fresh_connection(Conn.PASSIVE)
        self.decoder = cand.decoder
        self.local, self.remote, self.offered = cand.local, cand.remote, cand.offered
        self.open_held = cand.held
        if cand.held:
            self._arm(Timer.DELAY_OPEN, DELAY_OPEN_TIME)
        self._set_state(State.OPEN_SENT, reason)
        self._arm(Timer.HOLD, OPEN_SENT_HOLD)
        self._emit(CollisionResolved(Conn.PASSIVE, reason))

    def _drop_candidate(self, sent: Notification | None, reason: str | None = None) -> None:
        if self.candidate is None:
            return
        self.candidate = None
        if sent is not None:
            self._send(sent, Conn.PASSIVE)
        self._emit(CloseConnection(Conn.PASSIVE))
        if reason is not None:
            self._emit(CollisionResolved(self.conn, f"the peer's connection closed: {reason}"))

    def _cand_closed(self, ev: object) -> None:
        assert isinstance(ev, TcpClosed)
        self._drop_candidate(None, f"TCP: {ev.reason}")

    def _cand_bytes(self, ev: object) -> None:
        """The candidate's first message: an OPEN decides the collision; else it is closed."""
        assert isinstance(ev, BytesReceived) and self.candidate is not None
        decoder = self.candidate.decoder
        decoder.feed(ev.data)
        try:
            msg = decoder.next_message()
        except BgpError as err:
            sent = (
                err.notification()
                if err.fatal
                else Notification(ErrorCode.FSM_ERROR, FsmError.UNEXPECTED_IN_OPEN_SENT)
            )
            self._drop_candidate(sent, f"sent NOTIFICATION {sent.name}: {err.reason}")
            return
        except Exception as exc:  # a bug in the codec: our reason, so a Cease (rule 8)
            self._drop_candidate(
                Notification(ErrorCode.CEASE, CeaseSubcode.UNSPECIFIC),
                f"undecodable message ({exc!r})",
            )
            return
        if msg is None:
            return
        self._emit(MessageReceived(msg.type_name))
        if isinstance(msg, wire.Open):
            self._learn_encoding(msg)
            self._candidate_open(msg)
        elif isinstance(msg, Notification):
            self._note_open_rejected(msg)
            self._drop_candidate(None, f"received NOTIFICATION {msg.describe()}")
        else:
            sent = Notification(ErrorCode.FSM_ERROR, FsmError.UNEXPECTED_IN_OPEN_SENT)
            self._drop_candidate(sent, f"unexpected {msg.type_name} in OpenSent")

    def _candidate_open(self, msg: wire.Open) -> None:
        reason = self._collision_reason(msg.bgp_id)
        if self._dominant(msg.bgp_id):
            if self.outvoted == 0:
                self.outvoted = 1
                self._drop_candidate(_COLLISION, reason)
                return
            reason = (
                "ours has brought no OPEN while a second connection of the peer's did: "
                "taken for dead (RFC 4271 6.8 examines connections in OpenConfirm)"
            )
        self._close_main()
        self._promote_candidate(reason)
        self._release_open()
        self._msg_open(msg)
        if self.state is State.OPEN_CONFIRM:
            self._restart_hold()
            self._on_bytes(BytesReceived(b"", self.conn))  # what followed the OPEN

    def _msg_open_sent(self, msg: object) -> None:
        """The peer's OPEN on our connection; with a candidate, RFC 4271 6.8 decides first."""
        assert isinstance(msg, wire.Open)
        if self.candidate is not None:
            reason = self._collision_reason(msg.bgp_id)
            if not self._dominant(msg.bgp_id):
                self._close_main()
                self._promote_candidate(reason)  # its OPEN is still to come
                return
            self._drop_candidate(_COLLISION, reason)
        self._release_open()
        self._msg_open(msg)

    def _on_reachable_idle(self, ev: object) -> None:
        assert isinstance(ev, PeerReachable)
        if not self.stopped and Timer.CONNECT_RETRY in self._armed:
            self._cancel(Timer.CONNECT_RETRY)
            self._connect(ev.reason)

    def _on_reachable_connect(self, ev: object) -> None:
        """The dial may wait for SYN retransmissions sent while the path was down: dial anew."""
        assert isinstance(ev, PeerReachable)
        self._emit(CloseConnection(Conn.ACTIVE))
        self._cancel(Timer.CONNECT_RETRY)
        self._connect(ev.reason)

    def _on_fast_retry_over(self, _ev: object) -> None:
        self._backoff_from = self.failures  # the backoff starts at backoff_first again

    # -------------------------------------------------------------------- message handlers

    def _msg_notification(self, msg: object) -> None:
        assert isinstance(msg, Notification)
        self._down(f"received NOTIFICATION {msg.describe()}", received=msg)

    def _msg_notification_open(self, msg: object) -> None:
        """A NOTIFICATION before Established: some answer our OPEN (NOTIFICATION_TRANSITIONS)."""
        assert isinstance(msg, Notification)
        NOTIFICATION_TRANSITIONS.get((msg.code, msg.subcode), Session._msg_notification)(self, msg)

    def _msg_open_rejected(self, msg: object) -> None:
        """2/0 in OpenSent: perhaps our OPEN's encoding misread (rule 7); then as any other."""
        assert isinstance(msg, Notification)
        self._note_open_rejected(msg)
        self._msg_notification(msg)

    def _note_open_rejected(self, msg: Notification) -> None:
        unspecific = (msg.code, msg.subcode) == (ErrorCode.OPEN_MESSAGE_ERROR, 0)
        if unspecific and not self.extended_open and self.peer_open is None:
            self.delay_open = True

    def _on_delay_open_over(self, _ev: object) -> None:
        self._release_open()

    def _msg_unsupported_capability(self, msg: object) -> None:
        """2/7: leave out what the peer names and retry (RFC 5492 section 3)."""
        assert isinstance(msg, Notification)
        named, undecodable = wire.unsupported_capabilities(msg.data)
        dropped = tuple(c for c in self.offered if any(_same_capability(c, n) for n in named))
        self.refused.update(dropped)
        families = self.offered_families()
        self._emit(CapabilitiesRefused(named, undecodable, dropped, families))
        if dropped:
            why = "; the next OPEN leaves out " + ", ".join(map(wire.capability_name, dropped))
        else:
            why = "; it names nothing our OPEN can leave out"
        self._down(f"received NOTIFICATION {msg.describe()}{why}", received=msg)

    def _msg_open(self, msg: object) -> None:
        assert isinstance(msg, wire.Open)
        cfg = self.config
        if msg.asn != cfg.peer_as or (not msg.four_octet_as and cfg.peer_as > 0xFFFF):
            self._error(
                BgpError(
                    ErrorCode.OPEN_MESSAGE_ERROR,
                    OpenError.BAD_PEER_AS,
                    b"",
                    f"peer AS {msg.asn}, expected {cfg.peer_as}",
                )
            )
            return
        if msg.bgp_id == cfg.router_id and msg.asn == cfg.local_as:
            self._error(
                BgpError(
                    ErrorCode.OPEN_MESSAGE_ERROR,
                    OpenError.BAD_BGP_IDENTIFIER,
                    b"",
                    f"iBGP peer's BGP identifier {msg.bgp_id} is ours",
                )
            )
            return
        self.peer_open = msg
        self.decoder.ctx = SessionContext(as4=msg.four_octet_as and self._offered_as4)
        self.hold_time, self.keepalive = negotiate_timers(
            cfg.hold_time, cfg.keepalive, msg.hold_time
        )
        self._send(wire.Keepalive())
        self._set_state(
            State.OPEN_CONFIRM,
            f"OPEN from AS {msg.asn} id {msg.bgp_id}, hold {self.hold_time} s"
            + (" (RFC 9072 extended parameters)" if msg.extended else ""),
        )
        self._cancel(Timer.HOLD)
        self._restart_keepalive()

    def _msg_keepalive_confirm(self, _msg: object) -> None:
        assert self.peer_open is not None and self.local is not None and self.remote is not None
        peer = self.peer_open
        self.failures = self._backoff_from = 0
        self._cancel(Timer.FAST_RETRY)
        self.info = SessionInfo(
            local=self.local,
            remote=self.remote,
            local_as=self.config.local_as,
            peer_as=peer.asn,
            peer_id=peer.bgp_id,
            as4=self.as4,
            families=wire.Open(0, 0, IPv4Address(1), self.offered).families & peer.families,
            route_refresh=peer.route_refresh,
            hold_time=self.hold_time,
            keepalive=self.keepalive,
        )
        self._set_state(State.ESTABLISHED, "KEEPALIVE received in OpenConfirm")
        self._emit(SessionUp(self.info))

    @property
    def _offered_as4(self) -> bool:
        return any(isinstance(c, wire.FourOctetAsCapability) for c in self.offered)

    def _msg_keepalive(self, _msg: object) -> None:
        pass  # the hold timer was restarted already

    def _msg_update(self, msg: object) -> None:
        assert isinstance(msg, wire.Update)
        self.updates_received += 1
        err = self._check_update(msg)
        if err is not None:
            err.update = msg
            self._update_error(err)
            return
        self._routes(msg.announced(), msg.withdrawals())

    def _msg_route_refresh(self, msg: object) -> None:
        assert isinstance(msg, wire.RouteRefresh)
        if self.info is not None and (msg.afi, msg.safi) in self.info.families:
            self._emit(ResendAdjRibOut(msg.afi, msg.safi))
        else:
            self._emit(
                ProtocolWarning(f"ROUTE-REFRESH for unnegotiated AFI {msg.afi} SAFI {msg.safi}")
            )

    def _check_update(self, msg: wire.Update) -> BgpError | None:
        """Checks that need the session (RFC 4271 6.3 / RFC 7606 treat-as-withdraw)."""
        if self.info is None or not self.info.ebgp or not msg.announced():
            return None
        path = msg.get(wire.AsPath)
        first = path.segments[0] if path is not None and path.segments else None
        if first is None or first.type != 2 or first.asns[0] not in (self.info.peer_as, AS_TRANS):
            return BgpError(
                ErrorCode.UPDATE_MESSAGE_ERROR,
                UpdateError.MALFORMED_AS_PATH,
                b"",
                "eBGP AS_PATH does not start with the peer's AS",
                Handling.TREAT_AS_WITHDRAW,
            )
        return None

    def _update_error(self, err: BgpError) -> None:
        self.update_errors += 1
        self._emit(ProtocolWarning(f"UPDATE error {err.notification().name}: {err.reason}", err))
        upd = err.update
        if upd is None:
            return
        if err.handling is Handling.TREAT_AS_WITHDRAW:
            self._routes([], upd.announced() + upd.withdrawals())
        else:  # attribute discard: the rest of the UPDATE stands
            self._routes(upd.announced(), upd.withdrawals())

    def _routes(self, announced: list[Prefix], withdrawn: list[Prefix]) -> None:
        if not announced and not withdrawn:
            return
        self.adj_rib_in.difference_update(withdrawn)
        self.adj_rib_in.update(announced)
        self._emit(RoutesReceived(tuple(announced), tuple(withdrawn)))


def _same_capability(ours: wire.Capability, named: wire.Capability) -> bool:
    """Does a capability a 2/7 names mean this one of ours?  Multiprotocol: the same AFI/SAFI;
    any other: the same code (the value the peer echoes may differ, e.g. a 4-octet AS)."""
    if isinstance(ours, wire.MultiprotocolCapability):
        return ours == named
    return wire.capability_code(ours) == wire.capability_code(named)


S = State
TRANSITIONS: Final[dict[tuple[State, object], _Handler]] = {
    (S.IDLE, Start): Session._on_start,
    (S.IDLE, TcpAccepted): Session._on_accepted,
    (S.CONNECT, TcpAccepted): Session._on_accepted,
    (S.OPEN_SENT, TcpAccepted): Session._on_accepted_open_sent,
    (S.OPEN_CONFIRM, TcpAccepted): Session._on_accepted_open_confirm,
    (S.ESTABLISHED, TcpAccepted): Session._on_accepted_established,
    (S.IDLE, PeerReachable): Session._on_reachable_idle,
    (S.CONNECT, PeerReachable): Session._on_reachable_connect,
    **{(s, Timer.FAST_RETRY): Session._on_fast_retry_over for s in S},
    (S.IDLE, Timer.CONNECT_RETRY): Session._on_retry,
    (S.CONNECT, Timer.CONNECT_RETRY): Session._on_connect_timeout,
    (S.CONNECT, TcpConnected): Session._on_connected,
    (S.CONNECT, TcpClosed): Session._on_connect_failed,
    (S.CONNECT, Stop): Session._on_stop,
    (S.IDLE, Stop): Session._on_stop,
    **{
        (s, ev): h
        for s in (S.OPEN_SENT, S.OPEN_CONFIRM, S.ESTABLISHED)
        for ev, h in (
            (BytesReceived, Session._on_bytes),
            (TcpClosed, Session._on_closed),
            (Timer.HOLD, Session._on_hold_expired),
            (Stop, Session._on_stop),
        )
    },
    (S.OPEN_SENT, Timer.DELAY_OPEN): Session._on_delay_open_over,
    (S.OPEN_CONFIRM, Timer.KEEPALIVE): Session._on_keepalive_timer,
    (S.ESTABLISHED, Timer.KEEPALIVE): Session._on_keepalive_timer,
    (S.ESTABLISHED, SendUpdates): Session._on_send_updates,
}

MESSAGE_TRANSITIONS: Final[dict[tuple[State, type], _Handler]] = {
    (S.OPEN_SENT, wire.Open): Session._msg_open_sent,
    (S.OPEN_SENT, Notification): Session._msg_notification_open,
    (S.OPEN_CONFIRM, wire.Keepalive): Session._msg_keepalive_confirm,
    (S.OPEN_CONFIRM, Notification): Session._msg_notification_open,
    (S.ESTABLISHED, wire.Keepalive): Session._msg_keepalive,
    (S.ESTABLISHED, wire.Update): Session._msg_update,
    (S.ESTABLISHED, wire.RouteRefresh): Session._msg_route_refresh,
    (S.ESTABLISHED, Notification): Session._msg_notification,
}

# NOTIFICATIONs that answer our OPEN (in OpenSent/OpenConfirm) and change the next one; any
# other goes down with backoff (Session._msg_notification).
NOTIFICATION_TRANSITIONS: Final[dict[tuple[int, int], _Handler]] = {
    (ErrorCode.OPEN_MESSAGE_ERROR, OpenError.UNSUPPORTED_CAPABILITY): (
        Session._msg_unsupported_capability
    ),  # RFC 5492 section 3
    (ErrorCode.OPEN_MESSAGE_ERROR, 0): Session._msg_open_rejected,  # rule 7
}

# Events on the candidate connection (Session.candidate, rule 2).
CANDIDATE_TRANSITIONS: Final[dict[type, _Handler]] = {
    BytesReceived: Session._cand_bytes,
    TcpClosed: Session._cand_closed,
}
del S
