"""BFD session state machine, sans-I/O (RFC 5880 section 6; asynchronous mode, active role).

Rules this module keeps
-----------------------
1. It never does I/O and has no clock.  Every event carries ``now`` (seconds on the owner's
   monotonic clock, e.g. ``loop.time()``); :meth:`Session.handle` returns the actions to carry
   out in order: :class:`Send` (a Control packet, already encoded), :class:`ArmTimer` (an absolute
   deadline on the same clock), :class:`CancelTimer`, :class:`StateChanged`, :class:`Discarded`.
   Events and actions are small frozen dataclasses.  Randomness (jitter) comes from the ``rng``
   passed in (a callable returning floats in [0, 1)).
2. Intervals are microseconds, as on the wire (RFC 5880 4.1); times in events/actions are seconds.
3. State changes come from two tables: :data:`EVENTS` (local events per state) and
   :data:`RECEIVED` (RFC 5880 6.8.6 "the state machine": our state x the peer's state ->
   new state and diagnostic).  Anything the peer sends that is wrong is a :class:`Discarded`
   action, never an exception.
4. Timers carry a generation; a :class:`TimerFired` with a stale generation is ignored.  Every
   valid packet re-arms the detection timer at its new deadline: moving a timer costs far less
   than a wake-up of the owner's event loop, which a lazily re-armed timer would cost once per
   detection time.
5. Authentication and Demand mode are never used by us (bfd.AuthType = 0, bfd.DemandMode = 0);
   the peer's Demand mode is honoured (6.8.7: no periodic packets while both are Up).

Theory of operation
-------------------
A session starts in AdminDown; :class:`Start` moves it to Down and starts periodic transmission.
While not Up, bfd.DesiredMinTxInterval is at least :attr:`SessionConfig.slow_tx` (1 s, RFC 5880
6.8.3).  The three-way handshake (Down -> Init -> Up) follows :data:`RECEIVED`.  On Up the
configured Desired Min TX is advertised and a Poll sequence starts (6.8.3: a change while Up);
a decrease takes effect at once, an increase only when the peer's Final arrives.  Likewise a
reduced Required Min RX keeps the old value in the detection time until the Final.

Transmit interval (6.8.7): ``max(DesiredMinTx in use, bfd.RemoteMinRxInterval)`` times a random
factor in [0.75, 1.0] ([0.75, 0.9] when our Detect Mult is 1); nothing periodic while the peer's
Required Min RX is 0.  A received Poll is answered at once with a Final, outside the schedule.
After each periodic packet the session keeps a window for the next one: :attr:`Session.tx_earliest`
(0.75 x the interval after it) and :attr:`Session.next_tx_at` (the jittered deadline its TX timer
is armed at, never later than 1.0 x, or 0.9 x with Detect Mult 1).  An owner that is awake anyway
(another session's transmit timer, a received packet) may offer :class:`TxOpportunity`: the
periodic packet then goes at once if the window is open (``now >= tx_earliest``), and the next
window starts from it.  Every interval thus stays within the RFC's bounds and random (it ends at
this session's random deadline or at an earlier random event of another session), while the
sessions of one owner share wake-ups instead of each waking it on its own schedule.

Detection time (6.8.4): the peer's Detect Mult x ``max(RequiredMinRx in use, the peer's last
Desired Min TX)``.  When it passes without a valid packet in Init or Up, the session goes Down
with diagnostic 1 (Control Detection Time Expired); bfd.RemoteDiscr is reset to 0 in any state.
:class:`AdminDown` sends AdminDown with diagnostic 7 at once and keeps sending it slowly until the
owner stops driving the session.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

from vipgate.bfd.wire import ControlPacket, Diag, State, encode

__all__ = [
    "EVENTS",
    "RECEIVED",
    "SLOW_TX_US",
    "AdminDown",
    "ArmTimer",
    "CancelTimer",
    "ChangeTimers",
    "Discarded",
    "PacketReceived",
    "Send",
    "Session",
    "SessionConfig",
    "Start",
    "State",
    "StateChanged",
    "Timer",
    "TimerFired",
    "TxOpportunity",
    "jitter_factor",
]

SLOW_TX_US: Final = 1_000_000  # RFC 5880 6.8.3: not less than one second while not Up
JITTER_MIN: Final = 0.75  # RFC 5880 6.8.7: an interval is reduced by at most 25 %
_US: Final = 1e-6


class Timer(enum.Enum):
    TX = "tx"
    DETECT = "detect"

    # Members are singletons: hash by identity in C (Enum's own __hash__ is Python code, and
    # timers are dict keys on every packet).
    __hash__ = object.__hash__


# ------------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class Start:
    now: float


@dataclass(frozen=True, slots=True)
class AdminDown:
    now: float


@dataclass(frozen=True, slots=True)
class PacketReceived:
    """A packet that passed :func:`vipgate.bfd.wire.decode` and was demultiplexed to us."""

    packet: ControlPacket
    now: float


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer: Timer
    generation: int
    now: float


@dataclass(frozen=True, slots=True)
class ChangeTimers:
    """New configured intervals (microseconds); a Poll sequence announces them while Up."""

    desired_min_tx: int
    required_min_rx: int
    now: float


@dataclass(frozen=True, slots=True)
class TxOpportunity:
    """The owner is awake at ``now`` anyway: send the next periodic packet now if its window is
    open (``now >= Session.tx_earliest``), else nothing (RFC 5880 6.8.7 bounds)."""

    now: float


Event: TypeAlias = Start | AdminDown | PacketReceived | TimerFired | ChangeTimers | TxOpportunity


# ----------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Send:
    packet: ControlPacket
    data: bytes


@dataclass(frozen=True, slots=True)
class ArmTimer:
    timer: Timer
    at: float
    generation: int


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer: Timer


@dataclass(frozen=True, slots=True)
class StateChanged:
    old: State
    new: State
    diag: Diag
    reason: str


@dataclass(frozen=True, slots=True)
class Discarded:
    rule: str
    reason: str


Action: TypeAlias = Send | ArmTimer | CancelTimer | StateChanged | Discarded


# ------------------------------------------------------------------------------------ config


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Our side's parameters (RFC 5880 6.8.1).  Intervals in microseconds.

    ``local_discr`` must be unique among the owner's sessions and non-zero.
    """

    local_discr: int
    desired_min_tx: int = 300_000
    required_min_rx: int = 300_000
    detect_mult: int = 3
    slow_tx: int = SLOW_TX_US

    def __post_init__(self) -> None:
        if not 1 <= self.local_discr <= 0xFFFFFFFF:
            raise ValueError("local discriminator is 1..2**32-1")
        if not 1 <= self.desired_min_tx <= 0xFFFFFFFF:
            raise ValueError("desired min tx is 1..2**32-1 microseconds")
        if not 0 <= self.required_min_rx <= 0xFFFFFFFF:
            raise ValueError("required min rx is 0..2**32-1 microseconds")
        if not 1 <= self.detect_mult <= 255:
            raise ValueError("detect multiplier is 1..255")
        if self.slow_tx < SLOW_TX_US:
            raise ValueError("slow transmit interval must be at least 1 s (RFC 5880 6.8.3)")


def jitter_factor(rng_value: float, detect_mult: int) -> float:
    """RFC 5880 6.8.7: reduce the interval by 0-25 % (10-25 % when Detect Mult is 1)."""
    top = 0.90 if detect_mult == 1 else 1.0
    return JITTER_MIN + (top - JITTER_MIN) * rng_value


_Handler: TypeAlias = Callable[["Session", object], None]

# RFC 5880 6.8.6, the state machine: (bfd.SessionState, received State) -> (new state, diag).
# Pairs not listed leave the state alone (e.g. Down + Up, Init + Down, Up + Init/Up).
RECEIVED: Final[dict[tuple[State, State], tuple[State, Diag]]] = {
    (State.DOWN, State.DOWN): (State.INIT, Diag.NONE),
    (State.DOWN, State.INIT): (State.UP, Diag.NONE),
    (State.INIT, State.INIT): (State.UP, Diag.NONE),
    (State.INIT, State.UP): (State.UP, Diag.NONE),
    (State.UP, State.DOWN): (State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN),
    (State.INIT, State.ADMIN_DOWN): (State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN),
    (State.UP, State.ADMIN_DOWN): (State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN),
}


class Session:
    """One BFD session towards one peer.  See the module docstring."""

    def __init__(self, config: SessionConfig, rng: Callable[[], float] = random.random) -> None:
        self.config = config
        self._rng = rng
        # RFC 5880 6.8.1 state variables
        self.state = State.ADMIN_DOWN
        self.remote_state = State.DOWN
        self.remote_discr = 0
        self.local_diag = Diag.NONE
        self.remote_min_rx = 1  # bfd.RemoteMinRxInterval, initial 1 us
        self.remote_desired_min_tx = 0  # last Desired Min TX received
        self.remote_detect_mult = 0
        self.remote_demand = False
        # what we advertise, and what is in force (they differ during a Poll sequence)
        self.desired_min_tx = max(config.desired_min_tx, config.slow_tx)
        self.required_min_rx = config.required_min_rx
        self._configured = (config.desired_min_tx, config.required_min_rx)
        self.tx_in_use = self.desired_min_tx
        self.rx_in_use = self.required_min_rx
        self.polling = False
        self._poll_restart = False
        self.detect_deadline: float | None = None
        self.next_tx_at: float | None = None  # the TX timer's deadline (latest next packet)
        self.tx_earliest: float | None = None  # earliest next periodic packet (TxOpportunity)
        self._armed_at: dict[Timer, float] = {}
        self._generation: dict[Timer, int] = dict.fromkeys(Timer, 0)
        self._actions: list[Action] = []
        self.packets_received = 0
        self.packets_sent = 0

    # ----------------------------------------------------------------------- public API

    @property
    def up(self) -> bool:
        return self.state is State.UP

    @property
    def detect_mult(self) -> int:
        return self.config.detect_mult

    def tx_interval_us(self) -> int:
        """Interval before jitter: max(Desired Min TX in use, peer's Required Min RX)."""
        return max(self.tx_in_use, self.remote_min_rx)

    def detection_time(self) -> float | None:
        """Seconds (RFC 5880 6.8.4), or None before the first packet from the peer."""
        if self.remote_detect_mult == 0:
            return None
        return self.remote_detect_mult * max(self.rx_in_use, self.remote_desired_min_tx) * _US

    def tx_due(self, now: float) -> bool:
        """True if a :class:`TxOpportunity` at ``now`` would send the next periodic packet."""
        return (
            self.tx_earliest is not None
            and now >= self.tx_earliest
            and Timer.TX in self._armed_at
            and self._periodic_allowed()
        )

    def handle(self, event: Event) -> list[Action]:
        """Process one event; return the actions to carry out, in order."""
        self._actions = []
        key: object = type(event)
        if isinstance(event, TimerFired):
            if (
                event.timer not in self._armed_at
                or event.generation != self._generation[event.timer]
            ):
                return []  # stale
            del self._armed_at[event.timer]
            key = event.timer
        handler = EVENTS.get((self.state, key))
        if handler is not None:
            handler(self, event)
        elif isinstance(event, PacketReceived):
            self._emit(Discarded("admin_down", "session is AdminDown"))
        return self._actions

    # -------------------------------------------------------------------------- helpers

    def _emit(self, action: Action) -> None:
        self._actions.append(action)

    def _arm(self, timer: Timer, at: float) -> None:
        self._generation[timer] += 1
        self._armed_at[timer] = at
        self._emit(ArmTimer(timer, at, self._generation[timer]))

    def _cancel(self, timer: Timer) -> None:
        if timer in self._armed_at:
            del self._armed_at[timer]
            self._generation[timer] += 1
            self._emit(CancelTimer(timer))

    def _packet(self, *, final: bool = False) -> ControlPacket:
        return ControlPacket(
            state=self.state,
            my_discr=self.config.local_discr,
            your_discr=self.remote_discr,
            detect_mult=self.config.detect_mult,
            desired_min_tx=self.desired_min_tx,
            required_min_rx=self.required_min_rx,
            diag=int(self.local_diag),
            poll=self.polling and not final,
            final=final,
        )

    def _send(self, *, final: bool = False) -> None:
        p = self._packet(final=final)
        self.packets_sent += 1
        self._emit(Send(p, encode(p)))

    def _periodic_allowed(self) -> bool:
        if self.remote_min_rx == 0:
            return False  # 6.8.7: the peer asked for no periodic packets
        return not (
            self.remote_demand
            and self.state is State.UP
            and self.remote_state is State.UP
            and not self.polling
        )

    def _schedule_tx(self, now: float) -> None:
        base = self.tx_interval_us() * _US
        self.tx_earliest = now + base * JITTER_MIN
        self.next_tx_at = now + base * jitter_factor(self._rng(), self.detect_mult)
        self._arm(Timer.TX, self.next_tx_at)

    def _transmit(self, now: float) -> None:
        """Send a periodic packet now (if allowed) and schedule the next one."""
        if self._periodic_allowed():
            self._send()
        self._schedule_tx(now)

    def _set_state(self, new: State, diag: Diag, reason: str, now: float) -> None:
        old = self.state
        if new is old:
            return
        self.state = new
        self.local_diag = diag
        self._emit(StateChanged(old, new, diag, reason))
        if new is State.UP:
            self._set_intervals(*self._configured, now)
        elif old is State.UP:
            # leaving Up: the slow rate again, at once (no Poll needed while not Up)
            self.desired_min_tx = self.tx_in_use = max(self._configured[0], self.config.slow_tx)
            self.rx_in_use = self.required_min_rx
            self.polling = self._poll_restart = False

    def _set_intervals(self, tx: int, rx: int, now: float) -> None:
        """New advertised values (6.8.3): at once while not Up, else with a Poll sequence."""
        if self.state is not State.UP:
            tx = max(tx, self.config.slow_tx)
            self.desired_min_tx = self.tx_in_use = tx
            self.required_min_rx = self.rx_in_use = rx
            return
        if (tx, rx) == (self.desired_min_tx, self.required_min_rx):
            return
        self.desired_min_tx, self.required_min_rx = tx, rx
        self.tx_in_use = min(self.tx_in_use, tx)  # a decrease now, an increase after the Final
        self.rx_in_use = max(self.rx_in_use, rx)  # an increase now, a decrease after the Final
        if self.polling:
            self._poll_restart = True
        self.polling = True
        self._send()  # the first Poll at once; periodic packets carry P until the Final
        self._reschedule_if_sooner(now)

    def _reschedule_if_sooner(self, now: float) -> None:
        if Timer.TX not in self._armed_at:
            return
        latest = now + self.tx_interval_us() * _US
        if self.next_tx_at is not None and self.next_tx_at > latest:
            self._schedule_tx(now)

    def _restart_detection(self, now: float) -> None:
        dt = self.detection_time()
        if dt is None:
            return
        self.detect_deadline = now + dt
        self._arm(Timer.DETECT, self.detect_deadline)

    # ------------------------------------------------------------------------- handlers

    def _on_start(self, ev: object) -> None:
        assert isinstance(ev, Start)
        self.remote_discr = 0
        self.remote_detect_mult = 0
        self.remote_min_rx = 1
        self.detect_deadline = None
        self._set_state(State.DOWN, Diag.NONE, "start", ev.now)
        self._transmit(ev.now)

    def _on_admin_down(self, ev: object) -> None:
        assert isinstance(ev, AdminDown)
        self._set_state(State.ADMIN_DOWN, Diag.ADMINISTRATIVELY_DOWN, "admin down", ev.now)
        self._cancel(Timer.DETECT)
        self.detect_deadline = None
        self._send()  # at once; periodic AdminDown packets follow while the owner drives us
        self._schedule_tx(ev.now)

    def _on_admin_tx(self, ev: object) -> None:
        assert isinstance(ev, TimerFired)
        if self.remote_min_rx != 0:
            self._send()
        self._schedule_tx(ev.now)

    def _on_tx(self, ev: object) -> None:
        assert isinstance(ev, TimerFired)
        self._transmit(ev.now)

    def _on_tx_opportunity(self, ev: object) -> None:
        assert isinstance(ev, TxOpportunity)
        if self.tx_due(ev.now):
            if self.state is State.ADMIN_DOWN:
                self._send()
                self._schedule_tx(ev.now)
            else:
                self._transmit(ev.now)

    def _on_detect(self, ev: object) -> None:
        assert isinstance(ev, TimerFired)
        if self.detect_deadline is not None and ev.now < self.detect_deadline:
            self._arm(Timer.DETECT, self.detect_deadline)  # packets came since it was armed
            return
        dt = self.detection_time()
        self.detect_deadline = None
        self.remote_discr = 0
        if self.state in (State.INIT, State.UP):
            self._set_state(
                State.DOWN,
                Diag.CONTROL_DETECTION_TIME_EXPIRED,
                f"no packet for the detection time ({(dt or 0) * 1000:.0f} ms)",
                ev.now,
            )

    def _on_change_timers(self, ev: object) -> None:
        assert isinstance(ev, ChangeTimers)
        SessionConfig(  # same checks as the configuration
            self.config.local_discr, ev.desired_min_tx, ev.required_min_rx, self.detect_mult
        )
        self._configured = (ev.desired_min_tx, ev.required_min_rx)
        self._set_intervals(ev.desired_min_tx, ev.required_min_rx, ev.now)

    def _on_packet(self, ev: object) -> None:
        assert isinstance(ev, PacketReceived)
        p, now = ev.packet, ev.now
        if p.your_discr != 0 and p.your_discr != self.config.local_discr:
            self._emit(Discarded("your_discriminator", f"Your Discriminator {p.your_discr:#x}"))
            return
        self.packets_received += 1
        # 6.8.6, in the RFC's order
        self.remote_discr = p.my_discr
        self.remote_state = p.state
        self.remote_demand = p.demand
        old_tx = self.tx_interval_us()
        self.remote_min_rx = p.required_min_rx
        self.remote_desired_min_tx = p.desired_min_tx
        self.remote_detect_mult = p.detect_mult
        if p.final and self.polling:
            if self._poll_restart:
                self._poll_restart = False  # answered a Poll older than the latest change
            else:
                self.polling = False
                self.tx_in_use = self.desired_min_tx
                self.rx_in_use = self.required_min_rx
        self._restart_detection(now)
        new = RECEIVED.get((self.state, p.state))
        if new is not None:
            state, diag = new
            why = "peer is AdminDown" if p.state is State.ADMIN_DOWN else f"peer is {p.state.label}"
            self._set_state(state, diag, why, now)
        if p.poll:
            self._send(final=True)  # 6.8.7: at once, without respect to the schedule
        if self.tx_interval_us() < old_tx:
            self._reschedule_if_sooner(now)


S = State
EVENTS: Final[dict[tuple[State, object], _Handler]] = {
    (S.ADMIN_DOWN, Start): Session._on_start,
    (S.ADMIN_DOWN, Timer.TX): Session._on_admin_tx,
    (S.ADMIN_DOWN, ChangeTimers): Session._on_change_timers,
    (S.ADMIN_DOWN, TxOpportunity): Session._on_tx_opportunity,
    **{
        (s, ev): h
        for s in (S.DOWN, S.INIT, S.UP)
        for ev, h in (
            (PacketReceived, Session._on_packet),
            (Timer.TX, Session._on_tx),
            (Timer.DETECT, Session._on_detect),
            (AdminDown, Session._on_admin_down),
            (ChangeTimers, Session._on_change_timers),
            (TxOpportunity, Session._on_tx_opportunity),
        )
    },
}
del S
