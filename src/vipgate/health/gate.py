"""The health gate: decides from probe results whether the VIP is announced.

A pure state machine, in the style of h11: no I/O, no clock of its own (every call takes
``now``), no logging. Probe results go in; an :class:`Action` (ANNOUNCE / WITHDRAW / nothing), a
:class:`Transition` record and at most one :class:`Advice` come out, inside a :class:`Step`.

The rules it keeps (DESIGN.md section 3, rules 1-6)
--------------------------------------------------
1. Disabled when the health-check URL is empty: :meth:`Gate.start` announces at once,
   unconditionally, and the gate takes no results.
2. Startup: the first check is due immediately (at the start time); nothing is announced until a
   check succeeds.
3. A check succeeds only on HTTP status exactly 200 within the timeout. The probe classifies;
   the gate trusts ``ProbeResult.ok`` and nothing else.
4. Each success resets the consecutive-failure counter and announces if not announced.
5. Each failure increments the counter; when it reaches the threshold the route is withdrawn.
6. Checks run on a fixed cadence measured from the start (tick ``k`` is at
   ``start + k * period``, computed from the start, so no drift accumulates); a check never
   overlaps the next: after a check that ends at ``now``, the next is due at the first tick at or
   after ``now`` that is later than the tick just used. A check that ends less than
   :data:`TICK_SLACK` of a period after a tick still takes that tick, starting at once: with
   timeout == period a hung check times out a few milliseconds after the next tick, and skipping
   a whole period for those milliseconds would stretch the detection of a hung apiserver from
   ``threshold`` to ``2 * threshold`` periods. A check that ran further past a tick waits for the
   next one.

Theory of operation
-------------------
The state is :class:`GateState` plus the consecutive-failure counter. Each result is reduced to
a :class:`_Signal` -- SUCCESS, FAILURE (below the threshold) or THRESHOLD (the counter has
reached it) -- and the pair (state, signal) is looked up in ``_TRANSITIONS``, the only place
where state changes are decided. A change of state yields a :class:`Transition` (one log line,
one metrics increment, labelled by its ``reason``).

    STARTING --success--> UP (ANNOUNCE)        UP --threshold--> DOWN (WITHDRAW)
    STARTING --threshold--> DOWN (nothing)     DOWN --success--> UP (ANNOUNCE)
    DISABLED: announced at start; terminal.

STARTING -> DOWN carries no action (nothing was announced) but is a transition all the same, so
that a check failing from the start is logged once with its reason -- a wrong CA or a hostname
mismatch must not be silent.

Teaching: a failure *episode* is a run of consecutive failures (a success ends it). Within an
episode each kind of :class:`Advice` -- TLS hostname mismatch, untrusted certificate, 401/403 --
is given once, at its first occurrence, however many checks fail the same way.
"""

from __future__ import annotations

import enum
import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import urlsplit

from vipgate.health.probe import ErrorKind, ProbeResult

__all__ = [
    "Action",
    "Advice",
    "AdviceKind",
    "Gate",
    "GateError",
    "GateState",
    "Step",
    "Transition",
]


TICK_SLACK = 0.05
"""Fraction of a period by which a check may overrun a tick and still take it (rule 6)."""


class GateError(RuntimeError):
    """The gate was driven wrongly (fed before start, or fed while disabled)."""


class GateState(enum.Enum):
    DISABLED = "disabled"  # no health check: announced unconditionally
    STARTING = "starting"  # no check has succeeded yet, threshold not reached; not announced
    UP = "up"  # announced (failures below the threshold may be counting)
    DOWN = "down"  # threshold reached; not announced


class Action(enum.Enum):
    ANNOUNCE = "announce"
    WITHDRAW = "withdraw"


class AdviceKind(enum.Enum):
    TLS_HOSTNAME = "tls_hostname"
    TLS_VERIFY = "tls_verify"
    ACCESS_DENIED = "access_denied"


class _Signal(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"  # counter below the threshold
    THRESHOLD = "threshold"  # counter at or above the threshold


# The only place where state changes are decided: (state, signal) -> (new state, action).
_TRANSITIONS: Mapping[tuple[GateState, _Signal], tuple[GateState, Action | None]] = {
    (GateState.STARTING, _Signal.SUCCESS): (GateState.UP, Action.ANNOUNCE),
    (GateState.STARTING, _Signal.FAILURE): (GateState.STARTING, None),
    (GateState.STARTING, _Signal.THRESHOLD): (GateState.DOWN, None),
    (GateState.UP, _Signal.SUCCESS): (GateState.UP, None),
    (GateState.UP, _Signal.FAILURE): (GateState.UP, None),
    (GateState.UP, _Signal.THRESHOLD): (GateState.DOWN, Action.WITHDRAW),
    (GateState.DOWN, _Signal.SUCCESS): (GateState.UP, Action.ANNOUNCE),
    (GateState.DOWN, _Signal.FAILURE): (GateState.DOWN, None),  # unreachable: DOWN => >= threshold
    (GateState.DOWN, _Signal.THRESHOLD): (GateState.DOWN, None),
}

REASON_DISABLED = "disabled"
REASON_HEALTHY = "healthy"


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of gate state, with everything one log line and the metrics need.

    ``reason`` is a bounded label: "disabled", "healthy" or an :class:`ErrorKind` value.
    ``consecutive_failures`` is the counter after the result (0 after a success);
    ``failures_before`` the length of the failure run a success ended.
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

    @property
    def message(self) -> str:
        """One human line (no secrets: URLs and certificate names only)."""
        if self.new is GateState.DISABLED:
            return (
                "health check disabled (control_plane_health_check_address is empty): "
                "announcing the VIP unconditionally"
            )
        if self.new is GateState.UP:
            again = f" after {self.failures_before} failed checks" if self.failures_before else ""
            return f"health check passed (HTTP {self.status}){again}: announcing the VIP"
        what = f"{self.error.value}: {self.text}" if self.text else self.error.value
        count = (
            f"{self.consecutive_failures} consecutive failed checks (threshold {self.threshold})"
        )
        if self.old is GateState.STARTING:
            return f"health check failing since start, {count}, last {what}: VIP not announced"
        return f"health check failed, {count}, last {what}: withdrawing the VIP"


@dataclass(frozen=True, slots=True)
class Advice:
    """A teaching log line: what the failure means and what to do. Once per episode and kind."""

    kind: AdviceKind
    message: str


@dataclass(frozen=True, slots=True)
class Step:
    """What the caller must do after :meth:`Gate.start` or :meth:`Gate.feed`."""

    action: Action | None
    transition: Transition | None
    advice: Advice | None
    next_check_at: float | None  # None when the gate is disabled


_NOTHING_ADVISED: frozenset[AdviceKind] = frozenset()


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _suggest_name(names: tuple[str, ...]) -> str:
    """The server name to recommend: kubeadm's "kubernetes", else the first plain DNS name."""
    if "kubernetes" in names:
        return "kubernetes"
    for n in names:
        if not n.startswith("*") and not _is_ip(n):
            return n
    return names[0] if names else "kubernetes"


def advice_for(result: ProbeResult, url: str = "") -> Advice | None:
    """The teaching message a failed result calls for, if any (pure; exposed for tests)."""
    where = url or "the health-check URL"
    path = (urlsplit(url).path or "/") if url else "/livez"
    if result.error is ErrorKind.TLS_HOSTNAME:
        host = result.verified_name or "the URL's host"
        if result.cert_names:
            listed = ", ".join(result.cert_names)
            msg = (
                f"the apiserver certificate names {listed} but not {host}: set "
                f"control_plane_health_check_server_name={_suggest_name(result.cert_names)}, "
                f"or use an address the certificate names in {where}"
            )
        else:
            msg = (
                f"the apiserver certificate does not name {host}: set "
                "control_plane_health_check_server_name to a name it carries (kubeadm: "
                f"kubernetes), or use an address the certificate names in {where}"
            )
        return Advice(AdviceKind.TLS_HOSTNAME, msg)
    if result.error is ErrorKind.TLS_VERIFY:
        trust = f"the CA file {result.ca_path}" if result.ca_path else "the system trust store"
        return Advice(
            AdviceKind.TLS_VERIFY,
            f"the apiserver certificate is not trusted by {trust}: set "
            "control_plane_health_check_ca_path to the cluster CA that signed it "
            "(kubeadm: /etc/kubernetes/pki/ca.crt)",
        )
    if result.error is ErrorKind.HTTP_STATUS and result.status in (401, 403):
        return Advice(
            AdviceKind.ACCESS_DENIED,
            f"the apiserver refuses anonymous access to {path} (HTTP {result.status} from "
            f"{where}): this is an access problem, not the apiserver being down; allow "
            f"unauthenticated GET of {path} (kube-apiserver --anonymous-auth=true, kubeadm's "
            "default, and the "
            "system:public-info-viewer ClusterRoleBinding for system:unauthenticated)",
        )
    return None


class Gate:
    """The health gate for one VIP.

    ``Gate(url, threshold, period)``: the gate is enabled iff ``url`` is not empty (rule 1).
    Call :meth:`start` once, then :meth:`feed` with each probe result. All times are the
    caller's monotonic clock (e.g. ``loop.time()``).
    """

    def __init__(self, url: str, threshold: int, period: float) -> None:
        if threshold < 1:
            raise ValueError("failure threshold must be >= 1")
        if not period > 0:
            raise ValueError("period must be > 0")
        self.url = url
        self.threshold = threshold
        self.period = float(period)
        self.enabled = bool(url)
        self.state = GateState.STARTING
        self.consecutive_failures = 0
        self.checks = 0
        self._started_at: float | None = None
        self._tick = 0  # index of the tick the next check is due at
        self._advised: frozenset[AdviceKind] = _NOTHING_ADVISED
        self._counts: dict[str, int] = {}

    # ------------------------------------------------------------------ read-only views
    @property
    def announced(self) -> bool:
        return self.state in (GateState.UP, GateState.DISABLED)

    @property
    def next_check_at(self) -> float | None:
        if self._started_at is None or not self.enabled:
            return None
        return self._started_at + self._tick * self.period

    @property
    def transition_counts(self) -> Mapping[str, int]:
        """Transitions so far by reason (a live read-only view, for metrics)."""
        return MappingProxyType(self._counts)

    # ------------------------------------------------------------------ events
    def start(self, now: float) -> Step:
        """Start the gate. Disabled: ANNOUNCE now. Enabled: the first check is due at ``now``."""
        if self._started_at is not None:
            raise GateError("gate already started")
        self._started_at = now
        if not self.enabled:
            t = Transition(
                at=now,
                old=self.state,
                new=GateState.DISABLED,
                action=Action.ANNOUNCE,
                reason=REASON_DISABLED,
                status=None,
                error=ErrorKind.NONE,
                text="",
                consecutive_failures=0,
                threshold=self.threshold,
            )
            self._enter(t)
            return Step(Action.ANNOUNCE, t, None, None)
        return Step(None, None, None, now)

    def feed(self, result: ProbeResult, now: float) -> Step:
        """Take the result of the check that was due at :attr:`next_check_at`, ended at ``now``."""
        if self._started_at is None:
            raise GateError("feed() before start()")
        if not self.enabled:
            raise GateError("the gate is disabled: it takes no probe results")
        self.checks += 1
        failures_before = self.consecutive_failures
        advice: Advice | None = None
        if result.ok:
            self.consecutive_failures = 0
            self._advised = _NOTHING_ADVISED  # the episode is over
            signal = _Signal.SUCCESS
            reason = REASON_HEALTHY
        else:
            self.consecutive_failures += 1
            signal = (
                _Signal.THRESHOLD
                if self.consecutive_failures >= self.threshold
                else _Signal.FAILURE
            )
            reason = result.error.value
            candidate = advice_for(result, self.url)
            if candidate is not None and candidate.kind not in self._advised:
                self._advised = self._advised | {candidate.kind}
                advice = candidate

        new, action = _TRANSITIONS[(self.state, signal)]
        transition: Transition | None = None
        if new is not self.state:
            transition = Transition(
                at=now,
                old=self.state,
                new=new,
                action=action,
                reason=reason,
                status=result.status,
                error=result.error,
                text=result.text,
                consecutive_failures=self.consecutive_failures,
                threshold=self.threshold,
                failures_before=failures_before if result.ok else 0,
            )
            self._enter(transition)
        self._advance(now)
        return Step(action, transition, advice, self.next_check_at)

    # ------------------------------------------------------------------ internals
    def _enter(self, t: Transition) -> None:
        self.state = t.new
        self._counts[t.reason] = self._counts.get(t.reason, 0) + 1

    def _advance(self, now: float) -> None:
        """Rule 6: the next tick strictly after the one just used, and not before ``now``."""
        assert self._started_at is not None
        elapsed_ticks = (now - self._started_at) / self.period
        due = math.ceil(elapsed_ticks - TICK_SLACK)  # just past a tick: that tick, late
        self._tick = max(self._tick + 1, due)
