"""The health gate: decides from probe results whether the VIP is announced, and when to look.

A pure state machine, in the style of h11: no I/O, no clock of its own (every call takes
``now``), no logging. Events go in -- a /livez check ended (:meth:`Gate.feed`), a readiness
read ended (:meth:`Gate.feed_readiness`), the server closed the idle keep-alive connection
(:meth:`Gate.connection_closed`), vipgate was told to stop (:meth:`Gate.stop`), the caller
started a check or read (:meth:`Gate.begin`), time passed (:meth:`Gate.tick`) -- and a
:class:`Step` comes out: an :class:`Action` (ANNOUNCE, ANNOUNCE_DEPREFERRED,
ANNOUNCE_GRACEFUL_SHUTDOWN, WITHDRAW or nothing), what to do with the VIP address
(:class:`Address`, rule 13), a :class:`Transition` record, at most one :class:`Advice`, when
the next /livez check, the next readiness read and the end of the drain are due, when the
caller must wake up next (rule 14), and the step's effects in the order the caller carries them
out (:class:`Effect`: the address back on, the route, the metrics, the log lines at their
:class:`Level`, the address off, the routing table's refresh after a check). The gate decides
the cadence, the stop sequence's timing and that order; the manager only carries them out.

The rules it keeps (docs/design.md, "Where each rule lives")
------------------------------------------------------------
1. Disabled when the health-check URL is empty: :meth:`Gate.start` announces at once,
   unconditionally, and the gate takes no results.
2. Startup: the first check is due immediately (at the start time); nothing is announced until
   ``success_threshold`` consecutive checks succeed.
3. A check succeeds only on HTTP status exactly 200 within the timeout. The probe classifies;
   the gate trusts ``ProbeResult.ok`` and nothing else.
4. Each success resets the consecutive-failure counter. While not announced (or announced
   de-preferred, rule 12), ``R = success_threshold`` consecutive successes announce (default 1:
   the first success); a failure resets the success counter.
5. Each failure increments the counter; when it reaches ``threshold`` the route is withdrawn.
6. Cadence. Normally checks run on a fixed grid measured from the start (tick ``k`` at
   ``start + k * period``, computed from the start, so no drift accumulates); a check never
   overlaps the next. After a grid check that was due at tick ``k`` and ends at ``now``, the
   next is due at tick ``k + 1``, or, when that has already passed, at the latest tick that has
   passed -- at once, taking one overdue tick and never a burst of them. So a check that ran
   late (a hung readiness read held the connection) or long (timeout >= period) costs no
   period: a hung apiserver is withdrawn when the threshold-th timed-out check ends, at most
   ``period + (threshold - 1) * max(period, timeout) + timeout`` after the hang began
   (18 s at kube-vip's defaults 5/3/3; bench_detect), with or without readiness reads.
7. Fast period. With ``fast_period > 0`` the next check is due ``fast_period`` after
   the end of a check, instead of on the grid, when
   a. the check failed with REFUSED or RESET (nothing serves the port, or the server closed or
      reset the connection): until a check succeeds -- the failure threshold still decides the
      withdrawal, and the fast period is kept after it while the failures stay of that kind,
      so a restarted apiserver is announced within a fast period of its first 200 (a refused
      connection costs microseconds). Timeouts and non-200 answers keep the grid: they can be
      transient (load, a post-start hook) and ``threshold x period`` is the operator's flake
      tolerance for them;
   b. the route is rising: not announced (or de-preferred), the last check succeeded, fewer
      than ``R`` in a row;
   c. vipgate is draining (rule 11);
   d. while withdrawn, look often: the route is not announced because checks failed (DOWN),
      the apiserver announced its shutdown (APISERVER_SHUTDOWN) or no check has passed yet
      (STARTING) -- or it is de-preferred (DEPREFERRED, rule 12) -- and the check failed,
      whatever the kind (a 403 or 500 of an apiserver starting up, a timeout included): the
      route returns within a fast period of the first 200 (of the ``R``-th, rule 4).
      Withdrawing is not at stake there, so rule 5's flake tolerance (the grid while UP) is
      untouched. Bound: for :data:`LOOK_OFTEN_FOR` (300 s) from the moment the route stopped
      being announced plainly (the start, the withdrawal, the de-preference or the shutdown
      read; a later shutdown or CLEAR read keeps the moment), then back to the grid. Five
      minutes outlast an apiserver's start-up (seconds: 403 until its RBAC rules are loaded,
      500 until its post-start hooks are done), an etcd restart or a static-pod swap many
      times over, and cap what an apiserver that stays broken (anonymous access removed, etcd
      gone) receives at one quick check per fast period for five minutes (about 1,500 at
      0.2 s), then the grid's 12 a minute. Rule 7a's REFUSED and RESET stay fast unbounded
      (nothing answers; a refused connection costs microseconds).
   ``fast_period == 0`` turns rules 7a, b and d off (kube-vip's cadence for failing checks;
   the check on a server close, rule 8, stays; rule 11 then uses the grid).
8. Event-driven check. When the server closes the probe's idle keep-alive connection
   (:meth:`Gate.connection_closed`) a check is due at once, and a readiness read too when they
   are on. The close itself is not a failure (an idle timeout is harmless); the check decides.
9. Apiserver shutdown. With ``shutdown_period > 0`` the apiserver's readiness is read
   on its own grid (``start + k * shutdown_period``; after a read, the first tick at or after its
   end: reads never catch up). A read
   is SHUTDOWN when ``ProbeResult.shutdown`` (status 500 with ``[-]shutdown failed`` in the
   body), CLEAR when it shows that no shutdown is under way (status 200, a 500 without that
   line -- etcd, informer sync -- or a refused connection: the process that announced it is
   gone), and tells nothing otherwise (timeout, reset, TLS, 429, 403...). SHUTDOWN enters
   APISERVER_SHUTDOWN at once (an announcement, not a failure: no threshold), withdrawing if
   announced. The /livez checks go on at their cadence but change nothing there. The first
   CLEAR read leaves it for DOWN with the success counter reset and a check due at once: the
   route returns on the first check(s) after it that pass rule 4. Reads are made only while
   no /livez failure is counting: a failing or hung apiserver is rules 5-7's business, and
   reads that each run into the timeout between the checks would stretch the detection of a
   hung apiserver from ``threshold x timeout + period`` to about twice that. A read due
   meanwhile is made after the next passing check.
10. Stop without drain. :meth:`Gate.stop` with ``graceful_shutdown == 0``, or when the route is
    not announced, enters STOPPED: withdraw if announced. A second :meth:`Gate.stop` while
    draining is a stop without drain.
11. Drain (RFC 8326). :meth:`Gate.stop` while announced with ``graceful_shutdown > 0``
    enters DRAINING: ANNOUNCE_GRACEFUL_SHUTDOWN (the route again, with the GRACEFUL_SHUTDOWN
    community, so the routers move traffic away while this path still works), checks at the
    fast period, and the drain ends at ``now + graceful_shutdown`` (:attr:`Step.drain_until`;
    the caller calls :meth:`Gate.tick` then). It ends earlier, withdrawing at once, on any
    failed check (no threshold), a SHUTDOWN read, or a second stop. Either way STOPPED follows
    with WITHDRAW; the caller then closes the BGP sessions (Cease / Administrative Shutdown
    with :attr:`Gate.cease_message`) and exits. STOPPED is terminal: it takes no results.
12. Unhealthy action: de-prefer instead of withdraw (``unhealthy_action=DEPREFER``; default
    WITHDRAW, kube-vip's behaviour). Where rule 5 withdraws an announced route (UP reaches the
    threshold) the gate enters DEPREFERRED with ANNOUNCE_DEPREFERRED: the route stays announced
    with a worse path (the outbound core prepends our AS on eBGP, LOCAL_PREF 0 on iBGP, and adds
    GRACEFUL_SHUTDOWN 65535:0), so routers keep it out of the multipath set while any node
    announces the plain path, and use it when none does: the VIP fails open when every node
    fails at once. Rule 4 applies unchanged: ``R`` successes in a row announce the route plainly
    again (ANNOUNCE). What rule 12 does not touch: a route never announced stays unannounced
    (STARTING reaching the threshold is DOWN, rule 2); the apiserver's announced shutdown
    (rule 9) and vipgate's own stop (rules 10, 11) withdraw -- those nodes are leaving. A stop
    while DEPREFERRED withdraws at once: the route already carries GRACEFUL_SHUTDOWN.
13. The VIP address follows the route while vipgate runs. A WITHDRAW that leaves vipgate
    running (rule 5, rule 9) comes with :attr:`Address.REMOVE`: take the address off the
    interface after the withdrawal, so the node's own clients of the VIP reach a healthy node
    through the router instead of the local unhealthy apiserver (kube-vip's routing-table mode
    does the same). The next ANNOUNCE after such a removal comes with :attr:`Address.ADD`: put
    it back before the announcement. At start the address is already on (the manager adds it
    before the gate starts); at the stop the manager removes it after the sessions close. The
    caller acts only on an address it added itself. Under rule 12 a failing node keeps its
    route, and so its address.
14. One clock. The gate is the caller's only source of "when": every :class:`Step` carries
    ``wake_at`` (also :attr:`Gate.wake_at`), the earliest of the next check, the next read and
    the drain's end; the caller sleeps until then or until an event, feeds the event, and asks
    :meth:`Gate.due` what to do. When it starts the check or read :meth:`Gate.due` named, it
    says so (:meth:`Gate.begin`): until that result is fed nothing else is due -- one look at a
    time, on one connection; a check or read due meanwhile waits for it -- and the only wake-up
    left is the drain's end. So a check that outlives the drain does not hold it: at the
    drain's end :meth:`Gate.due` says TICK, :meth:`Gate.tick` withdraws on time, and the late
    result finds STOPPED. Without a drain under way a check in flight leaves no wake-up at all
    (``wake_at`` None): its result, or another event, wakes the caller.

Theory of operation
-------------------
The state is :class:`GateState` plus two counters (consecutive failures, consecutive
successes). Each event is reduced to a :class:`_Signal` and the pair (state, signal) is looked
up in ``_TRANSITIONS``, the only place where state changes are decided. A change of state
yields a :class:`Transition` (one log line, one metrics increment, labelled by its ``reason``).

    STARTING --R successes--> UP (ANNOUNCE)     UP --threshold--> DOWN (WITHDRAW)
    STARTING --threshold--> DOWN (nothing)      DOWN --R successes--> UP (ANNOUNCE)
    STARTING/DOWN --SHUTDOWN read--> APISERVER_SHUTDOWN (nothing)
    UP --SHUTDOWN read--> APISERVER_SHUTDOWN (WITHDRAW)
    APISERVER_SHUTDOWN --CLEAR read--> DOWN (nothing; a check at once)
    UP/DISABLED --stop, drain > 0--> DRAINING (ANNOUNCE_GRACEFUL_SHUTDOWN)
    DRAINING --drain over / failure / SHUTDOWN read / stop--> STOPPED (WITHDRAW)
    UP/DISABLED --stop, drain 0--> STOPPED (WITHDRAW)   others --stop--> STOPPED (nothing)
    DISABLED: announced at start; only a stop leaves it.
  With unhealthy_action=DEPREFER (rule 12) one entry differs, and DEPREFERRED is reachable:
    UP --threshold--> DEPREFERRED (ANNOUNCE_DEPREFERRED)
    DEPREFERRED --R successes--> UP (ANNOUNCE)
    DEPREFERRED --SHUTDOWN read--> APISERVER_SHUTDOWN (WITHDRAW)
    DEPREFERRED --stop--> STOPPED (WITHDRAW)

The pace after a check is looked up the same way, in ``_CADENCE``: (state after the check,
outcome) -> the fast period, the grid, or the fast period within rule 7d's bound (rule 7; the
outcome is OK, GONE -- REFUSED or RESET -- or FAILED, any other failure):

    state after the check     OK          GONE        FAILED
    STARTING, DOWN            fast (7b)   fast (7a)   fast for 300 s, then grid (7d)
    DEPREFERRED               fast (7b)   fast (7a)   fast for 300 s, then grid (7d)
    APISERVER_SHUTDOWN        grid (9)    fast (7a)   fast for 300 s, then grid (7d)
    UP                        grid        fast (7a)   grid (rule 5's flake tolerance)
    DRAINING                  fast (7c)   fast (7c)   fast (7c)

STARTING -> DOWN carries no action (nothing was announced) but is a transition all the same, so
that a check failing from the start is logged once with its reason -- a wrong CA or a hostname
mismatch must not be silent.

Teaching (``health/advice.py``, its rules 1-5 and table ``_SAY``; the gate owns its
:class:`Teacher` and puts its :class:`Advice` in the step): a failure *episode* is a run of
consecutive failures (a success ends it). Within an episode each kind of :class:`Advice` -- TLS
hostname mismatch, untrusted certificate, 401/403 -- is given once, at its first occurrence,
however many checks fail the same way; a 401/403 during the apiserver's start-up (after a
refused or closed connection, or since vipgate started, until its first 200 or 3 answers and
10 s) is not advised, and a 500 then is named once at INFO with its failed checks. A readiness
URL that answers 401, 403 or 404 (it can never show a shutdown: e.g. ``/readyz/shutdown``, 403
to anonymous clients) is taught once per gate.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from vipgate.health.advice import Advice, AdviceKind, AdviceLevel, Level, Teacher, advice_for
from vipgate.health.probe import ErrorKind, ProbeResult

__all__ = [
    "Action",
    "Address",
    "Advice",
    "AdviceKind",
    "AdviceLevel",
    "Due",
    "Effect",
    "Gate",
    "GateError",
    "GateState",
    "Level",
    "Step",
    "Transition",
    "UnhealthyAction",
    "advice_for",
    "readiness_signal",
]


FAST_KINDS = frozenset({ErrorKind.REFUSED, ErrorKind.RESET})
"""Failures that show nothing serves the port (rule 7a): checked again at the fast period."""

LOOK_OFTEN_FOR = 300.0
"""Rule 7d's bound: seconds after the route stopped being announced plainly during which
failed checks are followed by the fast period (then the grid)."""


class GateError(RuntimeError):
    """The gate was driven wrongly (fed before start, or fed while disabled)."""


class GateState(enum.Enum):
    DISABLED = "disabled"  # no health check: announced unconditionally
    STARTING = "starting"  # no check has succeeded yet, threshold not reached; not announced
    UP = "up"  # announced (failures below the threshold may be counting)
    DEPREFERRED = "depreferred"  # announced de-preferred: threshold reached (rule 12)
    DOWN = "down"  # not announced: threshold reached, or rising again after a shutdown
    APISERVER_SHUTDOWN = "apiserver_shutdown"  # the apiserver announced its shutdown; withdrawn
    DRAINING = "draining"  # vipgate stopping: announced with GRACEFUL_SHUTDOWN until the drain ends
    STOPPED = "stopped"  # vipgate stopping: withdrawn; the sessions close next. Terminal.


class Action(enum.Enum):
    ANNOUNCE = "announce"
    ANNOUNCE_GRACEFUL_SHUTDOWN = "announce_graceful_shutdown"  # RFC 8326: 65535:0
    ANNOUNCE_DEPREFERRED = "announce_depreferred"  # rule 12: a worse path, and 65535:0
    WITHDRAW = "withdraw"


class UnhealthyAction(enum.Enum):
    """What reaching the failure threshold does to an announced route (rule 12)."""

    WITHDRAW = "withdraw"  # kube-vip's behaviour
    DEPREFER = "deprefer"


class Address(enum.Enum):
    """What to do with the VIP address on the interface (rule 13)."""

    ADD = "add"  # put it back before the step's ANNOUNCE
    REMOVE = "remove"  # take it off after the step's WITHDRAW


class _Signal(enum.Enum):
    SUCCESS = "success"  # a check succeeded and the success counter reached R
    RISE = "rise"  # a check succeeded, success counter below R
    FAILURE = "failure"  # a check failed, failure counter below the threshold
    THRESHOLD = "threshold"  # a check failed, failure counter at or above the threshold
    SHUTDOWN = "shutdown"  # a readiness read reported the apiserver's shutdown
    CLEAR = "clear"  # a readiness read showed no shutdown under way
    STOP = "stop"  # vipgate told to stop, drain configured
    STOP_NOW = "stop_now"  # vipgate told to stop, no drain (0 s, or a second stop)
    DRAINED = "drained"  # the drain time is over


_S, _G = GateState, _Signal
_ANNOUNCED = frozenset({_S.UP, _S.DEPREFERRED, _S.DISABLED, _S.DRAINING})
_ANY_CHECK = (_G.SUCCESS, _G.RISE, _G.FAILURE, _G.THRESHOLD)
_PLAIN = frozenset({_S.UP, _S.DISABLED, _S.DRAINING})  # announced without de-preference


class _Outcome(enum.Enum):
    """A check's outcome as rule 7 sees it."""

    OK = "ok"
    GONE = "gone"  # REFUSED or RESET: nothing serves the port (rule 7a)
    FAILED = "failed"  # any other failure: an answer other than 200, a timeout, TLS...


class _Pace(enum.Enum):
    """When the next check comes (rules 6, 7)."""

    GRID = "grid"  # the next grid tick (rule 6)
    FAST = "fast"  # the fast period after the check's end
    LOOK_OFTEN = "look_often"  # FAST within LOOK_OFTEN_FOR of the route going off, else GRID


def _cadence() -> dict[tuple[GateState, _Outcome], _Pace]:
    o, p = _Outcome, _Pace
    c: dict[tuple[GateState, _Outcome], _Pace] = {}
    for s in (_S.STARTING, _S.DOWN, _S.DEPREFERRED):
        c[s, o.OK] = p.FAST  # 7b: rising (a success that announces leaves the state)
        c[s, o.GONE] = p.FAST  # 7a
        c[s, o.FAILED] = p.LOOK_OFTEN  # 7d
    c[_S.APISERVER_SHUTDOWN, o.OK] = p.GRID  # rule 9: the reads decide
    c[_S.APISERVER_SHUTDOWN, o.GONE] = p.FAST  # 7a
    c[_S.APISERVER_SHUTDOWN, o.FAILED] = p.LOOK_OFTEN  # 7d
    c[_S.UP, o.OK] = p.GRID
    c[_S.UP, o.GONE] = p.FAST  # 7a
    c[_S.UP, o.FAILED] = p.GRID  # rule 5's flake tolerance
    for k in o:
        c[_S.DRAINING, k] = p.FAST  # 7c
        c[_S.STOPPED, k] = p.GRID  # (a failure ended the drain: no more checks)
    return c


# Rule 7: (state after a check, its outcome) -> the pace of the next check. DISABLED takes no
# checks.
_CADENCE: Mapping[tuple[GateState, _Outcome], _Pace] = MappingProxyType(_cadence())


def _table() -> dict[tuple[GateState, _Signal], tuple[GateState, Action | None]]:
    t: dict[tuple[GateState, _Signal], tuple[GateState, Action | None]] = {}
    # rules 2, 4, 5: the health check
    t[_S.STARTING, _G.SUCCESS] = (_S.UP, Action.ANNOUNCE)
    t[_S.STARTING, _G.RISE] = (_S.STARTING, None)
    t[_S.STARTING, _G.FAILURE] = (_S.STARTING, None)
    t[_S.STARTING, _G.THRESHOLD] = (_S.DOWN, None)
    t[_S.UP, _G.SUCCESS] = (_S.UP, None)
    t[_S.UP, _G.RISE] = (_S.UP, None)
    t[_S.UP, _G.FAILURE] = (_S.UP, None)
    t[_S.UP, _G.THRESHOLD] = (_S.DOWN, Action.WITHDRAW)
    t[_S.DOWN, _G.SUCCESS] = (_S.UP, Action.ANNOUNCE)
    t[_S.DOWN, _G.RISE] = (_S.DOWN, None)
    t[_S.DOWN, _G.FAILURE] = (_S.DOWN, None)  # after a shutdown episode the count starts low
    t[_S.DOWN, _G.THRESHOLD] = (_S.DOWN, None)
    # rule 9: the apiserver's announced shutdown
    t[_S.STARTING, _G.SHUTDOWN] = (_S.APISERVER_SHUTDOWN, None)
    t[_S.UP, _G.SHUTDOWN] = (_S.APISERVER_SHUTDOWN, Action.WITHDRAW)
    t[_S.DOWN, _G.SHUTDOWN] = (_S.APISERVER_SHUTDOWN, None)
    for s in (_S.STARTING, _S.UP, _S.DOWN):
        t[s, _G.CLEAR] = (s, None)
    for g in _ANY_CHECK:
        t[_S.APISERVER_SHUTDOWN, g] = (_S.APISERVER_SHUTDOWN, None)
    t[_S.APISERVER_SHUTDOWN, _G.SHUTDOWN] = (_S.APISERVER_SHUTDOWN, None)
    t[_S.APISERVER_SHUTDOWN, _G.CLEAR] = (_S.DOWN, None)
    # rules 10, 11: vipgate's own stop
    for s in (_S.UP, _S.DISABLED):
        t[s, _G.STOP] = (_S.DRAINING, Action.ANNOUNCE_GRACEFUL_SHUTDOWN)
        t[s, _G.STOP_NOW] = (_S.STOPPED, Action.WITHDRAW)
    for s in (_S.STARTING, _S.DOWN, _S.APISERVER_SHUTDOWN):
        t[s, _G.STOP] = (_S.STOPPED, None)
        t[s, _G.STOP_NOW] = (_S.STOPPED, None)
    for g in (_G.SUCCESS, _G.RISE, _G.CLEAR):
        t[_S.DRAINING, g] = (_S.DRAINING, None)
    for g in (_G.FAILURE, _G.THRESHOLD, _G.SHUTDOWN, _G.STOP, _G.STOP_NOW, _G.DRAINED):
        t[_S.DRAINING, g] = (_S.STOPPED, Action.WITHDRAW)
    for g in _G:
        t[_S.STOPPED, g] = (_S.STOPPED, None)
    # DRAINED outside DRAINING: nothing to end
    for s in (_S.STARTING, _S.UP, _S.DOWN, _S.APISERVER_SHUTDOWN, _S.DISABLED):
        t[s, _G.DRAINED] = (s, None)
    # rule 12: de-preferred (reached only through _DEPREFER_ENTRIES)
    t[_S.DEPREFERRED, _G.SUCCESS] = (_S.UP, Action.ANNOUNCE)
    for g in (_G.RISE, _G.FAILURE, _G.THRESHOLD, _G.CLEAR, _G.DRAINED):
        t[_S.DEPREFERRED, g] = (_S.DEPREFERRED, None)
    t[_S.DEPREFERRED, _G.SHUTDOWN] = (_S.APISERVER_SHUTDOWN, Action.WITHDRAW)
    t[_S.DEPREFERRED, _G.STOP] = (_S.STOPPED, Action.WITHDRAW)
    t[_S.DEPREFERRED, _G.STOP_NOW] = (_S.STOPPED, Action.WITHDRAW)
    return t


_Table = Mapping[tuple[GateState, _Signal], tuple[GateState, Action | None]]

# The only place where state changes are decided: (state, signal) -> (new state, action).
# DISABLED takes no check or read (GateError), so those pairs are absent.
_TRANSITIONS: _Table = MappingProxyType(_table())

# Rule 12: the entries in which unhealthy_action=DEPREFER differs from _TRANSITIONS.
_DEPREFER_ENTRIES: _Table = MappingProxyType(
    {(_S.UP, _G.THRESHOLD): (_S.DEPREFERRED, Action.ANNOUNCE_DEPREFERRED)}
)

_TABLES: Mapping[UnhealthyAction, _Table] = MappingProxyType(
    {
        UnhealthyAction.WITHDRAW: _TRANSITIONS,
        UnhealthyAction.DEPREFER: MappingProxyType({**_TRANSITIONS, **_DEPREFER_ENTRIES}),
    }
)

REASON_DISABLED = "disabled"
REASON_HEALTHY = "healthy"
REASON_SHUTDOWN = "apiserver_shutdown"  # a readiness read reported the shutdown
REASON_SHUTDOWN_OVER = "apiserver_shutdown_over"  # a readiness read no longer reports it
REASON_STOP = "stop"  # vipgate's own stop (signal)
REASON_DRAINED = "drained"  # the drain time ran out


class Due(enum.Enum):
    """What the caller must do now (:meth:`Gate.due`); a READ or CHECK it starts it tells the
    gate of with :meth:`Gate.begin` (rule 14)."""

    READ = "read"  # a readiness read (before a check due at the same time: rule 9)
    CHECK = "check"  # a /livez check
    TICK = "tick"  # the drain is over: call :meth:`Gate.tick`


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of gate state, with everything one log line and the metrics need.

    ``reason`` is a bounded label: "disabled", "healthy", an :class:`ErrorKind` value,
    "apiserver_shutdown", "apiserver_shutdown_over", "stop" or "drained".
    ``consecutive_failures`` is the counter after the event (0 after a success);
    ``failures_before`` the length of the failure run a success ended. For stop transitions
    ``text`` is the cause (e.g. "SIGTERM") and ``drain`` the drain time in seconds.
    """

    at: float
    old: GateState
    new: GateState
    action: Action | None
    reason: str
    status: int | None
    error: ErrorKind
    text: str
    consecutive_failures: int
    threshold: int
    failures_before: int = 0
    success_threshold: int = 1
    drain: float = 0.0

    @property
    def level(self) -> Level:
        """WARNING when the route is withdrawn or de-preferred, else INFO."""
        warn = self.action in (Action.WITHDRAW, Action.ANNOUNCE_DEPREFERRED)
        return Level.WARNING if warn else Level.INFO

    @property
    def message(self) -> str:
        """One human line (no secrets: URLs and certificate names only)."""
        new, old = self.new, self.old
        if new is GateState.DISABLED:
            return (
                "health check disabled (control_plane_health_check_address is empty): "
                "announcing the VIP unconditionally"
            )
        if new is GateState.UP:
            again = f" after {self.failures_before} failed checks" if self.failures_before else ""
            rise = f", {self.success_threshold} in a row" if self.success_threshold > 1 else ""
            plain = " without de-preference" if old is GateState.DEPREFERRED else ""
            return (
                f"health check passed (HTTP {self.status}){again}{rise}: announcing the VIP{plain}"
            )
        if new is GateState.APISERVER_SHUTDOWN:
            then = "withdrawing the VIP" if self.action is Action.WITHDRAW else "VIP not announced"
            return (
                "the apiserver announced its shutdown (readiness: [-]shutdown failed): "
                f"{then} until it no longer does"
            )
        if new is GateState.DOWN and old is GateState.APISERVER_SHUTDOWN:
            return (
                f"the apiserver no longer reports a shutdown ({self.text or 'readiness read'}): "
                "checking at once; the VIP returns with the next healthy check"
            )
        if new is GateState.DRAINING:
            return (
                f"stopping ({self.text}): announcing the VIP with GRACEFUL_SHUTDOWN (65535:0) for "
                f"{self.drain:g} s so the routers move traffic away, then withdrawing it"
            )
        if new is GateState.STOPPED:
            return "stopping: " + self._stop_why()
        what = f"{self.error.value}: {self.text}" if self.text else self.error.value
        count = (
            f"{self.consecutive_failures} consecutive failed checks (threshold {self.threshold})"
        )
        if old is GateState.STARTING:
            return f"health check failing since start, {count}, last {what}: VIP not announced"
        if new is GateState.DEPREFERRED:
            return (
                f"health check failed, {count}, last {what}: announcing the VIP de-preferred "
                "(control_plane_health_check_unhealthy_action=deprefer: the routers prefer "
                "healthy nodes and use this one only if no node announces a plain path)"
            )
        return f"health check failed, {count}, last {what}: withdrawing the VIP"

    @property
    def cease_message(self) -> str:
        """The BGP Cease / Administrative Shutdown message (RFC 9003) of a stop: why we go."""
        return "vipgate shutting down: " + self._stop_why()

    def _stop_why(self) -> str:
        if self.old is GateState.DRAINING:
            if self.reason == REASON_DRAINED:
                return f"VIP withdrawn after a {self.drain:g} s GRACEFUL_SHUTDOWN drain"
            if self.reason == REASON_STOP:
                return f"{self.text} again: VIP withdrawn before the drain ended"
            if self.reason == REASON_SHUTDOWN:
                return "the apiserver announced its shutdown during the drain: VIP withdrawn"
            return f"health check failed during the drain ({self.error.value}): VIP withdrawn"
        if self.old is GateState.DEPREFERRED:
            return f"{self.text}: VIP withdrawn (it was de-preferred: health check failing)"
        if self.action is Action.WITHDRAW:
            return f"{self.text}: VIP withdrawn (no drain: bgp_graceful_shutdown_seconds=0)"
        return f"{self.text}: VIP was not announced (gate {self.old.value})"


class Effect(enum.Enum):
    """What the caller does for a step, in the order :attr:`Step.effects` lists them."""

    ADDRESS_ADD = "address_add"  # rule 13: the VIP address back on, before the announcement
    ROUTE = "route"  # the step's action on every prefix
    RECORD = "record"  # the metrics: the gate's state (every step)
    LOG = "log"  # the transition's line, at its level
    ADVICE = "advice"  # the advice's line, at its level
    ADDRESS_REMOVE = "address_remove"  # rule 13: off after the withdrawal and its log line
    REFRESH = "refresh"  # after a /livez check: the announcer puts back a route that was lost


# The order of a step's effects: the route first (nothing waits for it but the address it
# needs), its log line before the address leaves (a reader that sees the route gone finds the
# line written, and the netlink call does not hold either up), the routing table's refresh
# after each check last.
_EFFECT_ORDER = (
    Effect.ADDRESS_ADD,
    Effect.ROUTE,
    Effect.RECORD,
    Effect.LOG,
    Effect.ADVICE,
    Effect.ADDRESS_REMOVE,
    Effect.REFRESH,
)


@dataclass(frozen=True, slots=True)
class Step:
    """What the caller must do after an event: the action, and when to look next.

    ``next_check_at`` / ``next_read_at``: when the next /livez check / readiness read is due
    (None: none will be); ``drain_until``: when the drain ends (None unless DRAINING);
    ``address``: what to do with the VIP address (rule 13: ADD before the action, REMOVE after).
    ``wake_at``: when the caller must look again at the latest, if no event comes first (None:
    only an event; rule 14). ``effects``: what the caller does, in that order (:class:`Effect`).
    """

    action: Action | None
    transition: Transition | None
    advice: Advice | None
    next_check_at: float | None
    next_read_at: float | None = None
    drain_until: float | None = None
    address: Address | None = None
    wake_at: float | None = None
    effects: tuple[Effect, ...] = ()


def _effects(
    action: Action | None,
    t: Transition | None,
    advice: Advice | None,
    address: Address | None,
    refresh: bool,
) -> tuple[Effect, ...]:
    """A step's effects, in :data:`_EFFECT_ORDER`."""
    wanted = {
        Effect.ADDRESS_ADD: address is Address.ADD,
        Effect.ROUTE: action is not None,
        Effect.RECORD: True,
        Effect.LOG: t is not None,
        Effect.ADVICE: advice is not None,
        Effect.ADDRESS_REMOVE: address is Address.REMOVE,
        Effect.REFRESH: refresh,
    }
    return tuple(e for e in _EFFECT_ORDER if wanted[e])


def readiness_signal(result: ProbeResult) -> str | None:
    """Rule 9's reading of a readiness result: "shutdown", "clear" or None (tells nothing)."""
    if result.shutdown:
        return _G.SHUTDOWN.value
    if result.ok or result.status == 500 or result.error is ErrorKind.REFUSED:
        return _G.CLEAR.value
    return None


class Gate:
    """The health gate for one VIP.

    ``Gate(url, threshold, period, *, fast_period=0, success_threshold=1, shutdown_period=0,
    graceful_shutdown=0, unhealthy_action=WITHDRAW)``; seconds everywhere. The gate is enabled
    iff ``url`` is not empty (rule 1); ``fast_period`` 0 turns rule 7 off, ``shutdown_period`` 0
    turns readiness reads off (rule 9), ``graceful_shutdown`` 0 stops without drain (rule 10),
    ``unhealthy_action`` DEPREFER turns rule 12 on, ``look_often_for`` is rule 7d's bound
    (:data:`LOOK_OFTEN_FOR`; the tests shorten it). Call :meth:`start` once, then feed it
    events; ask :meth:`due` / :attr:`wake_at` (or the step's ``wake_at``) what to do and when,
    and say when a check or read starts (:meth:`begin`). All
    times are the caller's monotonic clock (e.g. ``loop.time()``). Raises ValueError on bad
    parameters (``config.py`` validates the settings first).
    """

    def __init__(
        self,
        url: str,
        threshold: int,
        period: float,
        *,
        fast_period: float = 0.0,
        success_threshold: int = 1,
        shutdown_period: float = 0.0,
        graceful_shutdown: float = 0.0,
        readiness_url: str = "",
        unhealthy_action: UnhealthyAction = UnhealthyAction.WITHDRAW,
        look_often_for: float = LOOK_OFTEN_FOR,
    ) -> None:
        if threshold < 1:
            raise ValueError("failure threshold must be >= 1")
        if success_threshold < 1:
            raise ValueError("success threshold must be >= 1")
        if not period > 0:
            raise ValueError("period must be > 0")
        if not 0 <= fast_period < period:
            raise ValueError("fast period must be >= 0 and below the period")
        if shutdown_period < 0 or graceful_shutdown < 0:
            raise ValueError("shutdown period and graceful shutdown must be >= 0")
        self.url = url
        self.threshold = threshold
        self.success_threshold = success_threshold
        self.period = float(period)
        self.fast_period = float(fast_period)
        self.look_often_for = float(look_often_for)  # rule 7d's bound
        self.shutdown_period = float(shutdown_period)
        self.readiness_url = readiness_url  # for messages only
        self._readiness_advised = False
        self.graceful_shutdown = float(graceful_shutdown)
        self.unhealthy_action = unhealthy_action
        self._table = _TABLES[unhealthy_action]
        self._address_removed = False  # rule 13: a WITHDRAW took the address off
        self._address: Address | None = None  # the address action of the event being applied
        self.enabled = bool(url)
        self.state = GateState.STARTING
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        self.cease_message = "vipgate shutting down"
        self._started_at: float | None = None
        self._tick = 0  # index of the last grid tick scheduled (rule 6)
        self._due: float | None = None  # next /livez check
        self._on_grid = True  # the next check is on a grid tick (else fast or event-driven)
        self._off_since: float | None = None  # rule 7d: the route not announced plainly since
        self._read_tick = 0
        self._read_due: float | None = None
        self._drain_until: float | None = None
        self._looking: Due | None = None  # the check or read in flight (rule 14)
        self._teacher = Teacher(url)  # the advice (health/advice.py)
        self._counts: dict[str, int] = {}

    # ------------------------------------------------------------------ read-only views
    @property
    def announced(self) -> bool:
        return self.state in _ANNOUNCED

    @property
    def route_state(self) -> str:
        """The route as the routers see it: "announced" (a plain path), "depreferred" (rule 12,
        and the drain's GRACEFUL_SHUTDOWN path of rule 11) or "withdrawn"."""
        if self.state in (GateState.DEPREFERRED, GateState.DRAINING):
            return "depreferred"
        return "announced" if self.announced else "withdrawn"

    @property
    def depreferred(self) -> bool:
        """The route is announced de-preferred (rule 12)."""
        return self.state is GateState.DEPREFERRED

    @property
    def next_check_at(self) -> float | None:
        if self._started_at is None or not self.enabled or self.state is GateState.STOPPED:
            return None
        return self._due

    @property
    def next_read_at(self) -> float | None:
        if self._started_at is None or not self.enabled or self.state is GateState.STOPPED:
            return None
        if self.consecutive_failures > 0:  # rule 9: no reads while failures count
            return None
        return self._read_due

    @property
    def drain_until(self) -> float | None:
        return self._drain_until if self.state is GateState.DRAINING else None

    @property
    def wake_at(self) -> float | None:
        """The earliest of the next check, the next read and the end of the drain; while a
        check or read is in flight only the end of the drain (rule 14)."""
        if self._looking is not None:
            return self.drain_until
        times = [
            t for t in (self.next_check_at, self.next_read_at, self.drain_until) if t is not None
        ]
        return min(times) if times else None

    @property
    def check_interval(self) -> float:
        """The spacing of the checks now: the fast period (rule 7) or the period."""
        return self.period if self._on_grid else self.fast_period

    @property
    def transition_counts(self) -> Mapping[str, int]:
        """Transitions so far by reason (a live read-only view, for metrics)."""
        return MappingProxyType(self._counts)

    def due(self, now: float) -> Due | None:
        """What is due at ``now``: the drain's end first; then, when both are due, a read first
        while the route is not announced (a check must not announce a route the apiserver is
        withdrawing) and a check first while it is (a read that hangs must not delay the
        failure count: rule 9). While a check or read is in flight, only the drain's end
        (rule 14)."""
        until = self.drain_until
        if until is not None and now >= until:
            return Due.TICK
        if self._looking is not None:
            return None
        read = self.next_read_at
        check = self.next_check_at
        read_due = read is not None and now >= read
        check_due = check is not None and now >= check
        if check_due and (self.announced or not read_due):
            return Due.CHECK
        return Due.READ if read_due else None

    # ------------------------------------------------------------------ events
    def start(self, now: float) -> Step:
        """Start the gate. Disabled: ANNOUNCE now. Enabled: the first check is due at ``now``."""
        if self._started_at is not None:
            raise GateError("gate already started")
        self._started_at = now
        self._teacher.started(now)
        if self.state is GateState.STOPPED:  # stopped before it started: nothing to do
            return self._step(None, None, None)
        if not self.enabled:
            t = self._transition(now, GateState.DISABLED, Action.ANNOUNCE, REASON_DISABLED)
            self._enter(t)
            return self._step(Action.ANNOUNCE, t, None)
        self._due = now
        self._off_since = now  # rule 7d: nothing announced yet
        if self.shutdown_period > 0:
            self._read_due = now
        return self._step(None, None, None)

    def feed(self, result: ProbeResult, now: float) -> Step:
        """Take the result of a /livez check that ended at ``now`` (rules 2-8, 11)."""
        self._check_fed()
        self._looking = None
        if self.state is GateState.STOPPED:
            return self._step(None, None, None, refresh=True)
        failures_before = self.consecutive_failures
        advice = self._teacher.feed(result, now)
        if result.ok:
            self.consecutive_failures = 0
            self.consecutive_successes += 1
            ok = self.consecutive_successes >= self.success_threshold
            signal = _G.SUCCESS if ok else _G.RISE
            reason = REASON_HEALTHY
        else:
            self.consecutive_failures += 1
            self.consecutive_successes = 0
            signal = _G.THRESHOLD if self.consecutive_failures >= self.threshold else _G.FAILURE
            reason = result.error.value
        action, transition = self._apply(
            signal,
            now,
            reason,
            status=result.status,
            error=result.error,
            text=result.text,
            failures_before=failures_before if result.ok else 0,
        )
        self._schedule_check(now, result)
        return self._step(action, transition, advice, refresh=True)

    def feed_readiness(self, result: ProbeResult, now: float) -> Step:
        """Take the result of a readiness read that ended at ``now`` (rule 9)."""
        self._check_fed()
        if self.shutdown_period <= 0:
            raise GateError("readiness reads are off (shutdown_period 0)")
        self._looking = None
        if self.state is GateState.STOPPED:
            return self._step(None, None, None)
        assert self._started_at is not None
        elapsed = (now - self._started_at) / self.shutdown_period
        self._read_tick = max(self._read_tick + 1, math.ceil(elapsed))
        self._read_due = self._started_at + self._read_tick * self.shutdown_period
        word = readiness_signal(result)
        if word is None:
            return self._step(None, None, self._readiness_advice(result))
        signal = _Signal(word)
        reason = REASON_SHUTDOWN if signal is _G.SHUTDOWN else REASON_SHUTDOWN_OVER
        old = self.state
        action, transition = self._apply(
            signal, now, reason, status=result.status, error=result.error, text=result.text
        )
        if old is not self.state and GateState.APISERVER_SHUTDOWN in (old, self.state):
            self.consecutive_successes = 0  # the old process's answers do not count
            if self.state is GateState.DOWN:  # rule 9: the route returns on the next check
                self._due, self._on_grid = now, False
        return self._step(action, transition, None)

    def connection_closed(self, now: float) -> Step:
        """The server closed the idle keep-alive connection: check (and read) at once (rule 8)."""
        self._check_fed()
        self._teacher.closed(now)
        if self.state is not GateState.STOPPED:
            if self._due is None or self._due > now:
                self._due, self._on_grid = now, False
            if self._read_due is not None and self._read_due > now:
                self._read_due = now
        return self._step(None, None, None)

    def stop(self, now: float, cause: str = "SIGTERM") -> Step:
        """vipgate was told to stop (rules 10, 11). Works before :meth:`start` too."""
        drain = self.graceful_shutdown > 0 and self.state is not GateState.DRAINING
        signal = _G.STOP if drain else _G.STOP_NOW
        action, transition = self._apply(signal, now, REASON_STOP, text=cause)
        if self.state is GateState.DRAINING:
            self._drain_until = now + self.graceful_shutdown
            if self.enabled and self.fast_period > 0 and self._due is not None:
                self._due, self._on_grid = min(self._due, now + self.fast_period), False
        return self._step(action, transition, None)

    def begin(self, due: Due, now: float) -> Step:
        """The caller started the check or read :meth:`due` named (rule 14): until its result
        is fed, nothing else is due and the only wake-up is the drain's end."""
        self._check_fed()
        if due is Due.TICK:
            raise GateError("the drain's end is not a check or read: call tick()")
        if self._looking is not None:
            raise GateError(f"a {self._looking.value} is already in flight")
        self._looking = due
        return self._step(None, None, None)

    def tick(self, now: float) -> Step:
        """Time passed: ends the drain when it is over (rule 11); else nothing."""
        until = self.drain_until
        if until is None or now < until:
            return self._step(None, None, None)
        action, transition = self._apply(_G.DRAINED, now, REASON_DRAINED)
        return self._step(action, transition, None)

    # ------------------------------------------------------------------ internals
    def _readiness_advice(self, result: ProbeResult) -> Advice | None:
        """Teaching (once per gate): a readiness URL answering 401/403/404 never shows a
        shutdown -- typically a per-check path such as /readyz/shutdown (403 to anonymous)."""
        if self._readiness_advised or result.status not in (401, 403, 404):
            return None
        self._readiness_advised = True
        where = self.readiness_url or "the readiness URL"
        return Advice(
            AdviceKind.READINESS_UNREADABLE,
            f"the readiness read of {where} answers HTTP {result.status}: vipgate cannot see "
            "the apiserver's announced shutdown there. Anonymous clients may read /livez, "
            "/readyz, /healthz and /version only (per-check paths such as /readyz/shutdown "
            "answer 403): set control_plane_health_check_shutdown_address to the /readyz URL, "
            "or to off",
        )

    def _check_fed(self) -> None:
        if self._started_at is None:
            raise GateError("event before start()")
        if not self.enabled:
            raise GateError("the gate is disabled: it takes no probe results")

    def _apply(
        self,
        signal: _Signal,
        now: float,
        reason: str,
        *,
        status: int | None = None,
        error: ErrorKind = ErrorKind.NONE,
        text: str = "",
        failures_before: int = 0,
    ) -> tuple[Action | None, Transition | None]:
        new, action = self._table[(self.state, signal)]
        if new is self.state:
            return action, None
        self._address = self._address_rule(new, action)
        t = self._transition(
            now, new, action, reason, status, error, text, failures_before=failures_before
        )
        self._enter(t)
        if new is GateState.STOPPED:
            self.cease_message = t.cease_message
        return action, t

    def _transition(
        self,
        now: float,
        new: GateState,
        action: Action | None,
        reason: str,
        status: int | None = None,
        error: ErrorKind = ErrorKind.NONE,
        text: str = "",
        *,
        failures_before: int = 0,
    ) -> Transition:
        return Transition(
            at=now,
            old=self.state,
            new=new,
            action=action,
            reason=reason,
            status=status,
            error=error,
            text=text,
            consecutive_failures=self.consecutive_failures,
            threshold=self.threshold,
            failures_before=failures_before,
            success_threshold=self.success_threshold,
            drain=self.graceful_shutdown,
        )

    def _address_rule(self, new: GateState, action: Action | None) -> Address | None:
        """Rule 13: the address leaves after a withdrawal while vipgate runs, and returns
        before the next announcement."""
        if action is Action.WITHDRAW and new is not GateState.STOPPED:
            self._address_removed = True
            return Address.REMOVE
        if action is Action.ANNOUNCE and self._address_removed:
            self._address_removed = False
            return Address.ADD
        return None

    def _enter(self, t: Transition) -> None:
        self.state = t.new
        if t.new in _PLAIN:
            self._off_since = None
        elif self._off_since is None:  # rule 7d: the route just stopped being plainly announced
            self._off_since = t.at
        self._counts[t.reason] = self._counts.get(t.reason, 0) + 1

    def _step(
        self,
        action: Action | None,
        t: Transition | None,
        advice: Advice | None,
        *,
        refresh: bool = False,
    ) -> Step:
        """The step of an event; ``refresh`` after a /livez check (:attr:`Effect.REFRESH`)."""
        address, self._address = self._address, None
        return Step(
            action,
            t,
            advice,
            self.next_check_at,
            self.next_read_at,
            self.drain_until,
            address,
            self.wake_at,
            _effects(action, t, advice, address, refresh),
        )

    def _schedule_check(self, now: float, result: ProbeResult) -> None:
        """Rules 6 and 7: the fast period, else the next grid tick (``_CADENCE``)."""
        assert self._started_at is not None
        if result.ok:
            outcome = _Outcome.OK
        else:
            outcome = _Outcome.GONE if result.error in FAST_KINDS else _Outcome.FAILED
        pace = _CADENCE[self.state, outcome] if self.fast_period > 0 else _Pace.GRID
        if pace is _Pace.LOOK_OFTEN:
            since = self._off_since
            fast = since is not None and now - since < self.look_often_for
            pace = _Pace.FAST if fast else _Pace.GRID
        if pace is _Pace.FAST:
            self._due, self._on_grid = now + self.fast_period, False
            return
        elapsed = (now - self._started_at) / self.period
        if self._on_grid:  # the next tick, or the latest one already passed (rule 6)
            self._tick = max(self._tick + 1, math.floor(elapsed))
        else:  # after a fast or event-driven check: the next tick after it
            self._tick = max(self._tick, math.floor(elapsed) + 1)
        self._due, self._on_grid = self._started_at + self._tick * self.period, True
