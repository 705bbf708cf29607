"""The demo's numbers: per-phase request counts, the expectations, the summary table (pure).

Everything here works on plain records (times are ``time.monotonic()`` values, shared by every
process on the machine) so it can be checked without a lab.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


class RequestLike(Protocol):
    """What the demo needs of one client request (``lab.client.Request`` has it)."""

    @property
    def t(self) -> float: ...
    @property
    def outcome(self) -> str: ...
    @property
    def latency(self) -> float: ...
    @property
    def detail(self) -> str: ...
    @property
    def node(self) -> str | None: ...


@dataclass
class Phase:
    """One phase of the scenario, filled in while it runs."""

    number: int
    title: str
    start: float
    end: float = 0.0
    event: str = ""  # what we did, e.g. "stopped node1's kube-apiserver"
    event_t: float | None = None  # when we did it
    measure: str = ""  # "detection", "recovery", "route gone" (empty: nothing measured)
    route_t: float | None = None  # when the router's route changed in response
    route_prev: float | None = None  # the router look just before that (bounds the moment)
    nexthops_end: tuple[str, ...] = ()  # node names at the end of the phase
    exit_code: int | None = None  # phase 4: the stopped vipgate's exit status
    notes: list[str] = field(default_factory=list)
    # node name -> its route state at the end (vipgate_prefix_route_state: announced,
    # depreferred, withdrawn; "stopped" when its vipgate no longer runs)
    route_states_end: dict[str, str] = field(default_factory=dict)
    # phase 5: the route states and next hops while every apiserver failed
    fault_states: dict[str, str] = field(default_factory=dict)
    fault_nexthops: tuple[str, ...] = ()
    # every change of the router's next-hop set during the phase (phase 5: the nodes reach
    # their threshold at different ticks, so the set changes more than once)
    route_changes: list[float] = field(default_factory=list)

    @property
    def measured(self) -> float | None:
        """Seconds from the event to the route change (None if it never happened)."""
        if self.event_t is None or self.route_t is None:
            return None
        return self.route_t - self.event_t


@dataclass(frozen=True)
class PhaseStats:
    total: int
    ok: int
    failed: int
    outcomes: dict[str, int]  # failed requests by outcome
    per_node: dict[str, int]  # ok requests per answering node
    failed_after_route: int  # failures among requests started after the route change
    last_failure_t: float | None
    rehashed: int = 0  # resets of connections in flight when the ECMP next-hop set changed
    answered: dict[str, int] = field(default_factory=dict)  # non-200 HTTP answers by outcome


def reached_apiserver(outcome: str) -> bool:
    """The request got an HTTP answer (200 or not): it reached an apiserver."""
    return outcome == "ok" or outcome.startswith("http_")


def phase_stats(phase: Phase, requests: Iterable[RequestLike]) -> PhaseStats:
    """Counts for the requests that *ended* in [phase.start, phase.end).

    A request belongs to the phase in which its outcome was known: one in flight when a fault
    is injected, and failing because of it, counts for the fault's phase. `failed_after_route`
    counts the failures among requests that *started* after the route change.
    """
    mine = [r for r in requests if phase.start <= r.t + r.latency < phase.end]
    # an HTTP answer that is not 200 (phase 5's 401s) reached an apiserver: not failed
    failed = [r for r in mine if not reached_apiserver(r.outcome)]
    answered = collections.Counter(r.outcome for r in mine if r.outcome.startswith("http_"))
    per_node = collections.Counter(r.node for r in mine if r.outcome == "ok" and r.node)
    after = 0
    if phase.route_t is not None:
        after = sum(1 for r in failed if r.t >= phase.route_t)
    return PhaseStats(
        total=len(mine),
        ok=len(mine) - len(failed) - sum(answered.values()),
        failed=len(failed),
        outcomes=dict(collections.Counter(r.outcome for r in failed)),
        per_node=dict(sorted(per_node.items())),
        failed_after_route=after,
        last_failure_t=max((r.t for r in failed), default=None),
        rehashed=sum(1 for r in failed if r.outcome == "reset" and near_route_change(r, phase)),
        answered=dict(sorted(answered.items())),
    )


@dataclass(frozen=True)
class Expectation:
    what: str
    ok: bool
    detail: str = ""


def request_expectations(phase: Phase, st: PhaseStats, nodes: Sequence[str]) -> list[Expectation]:
    """What the requests of `phase` must show (the scenario's phases 1-4)."""
    per_node = ", ".join(f"{k} {v}" for k, v in st.per_node.items()) or "none"
    failed = f"{st.failed} failed" + (
        " (" + ", ".join(f"{k} {v}" for k, v in sorted(st.outcomes.items())) + ")"
        if st.failed
        else ""
    )
    if phase.number == 1:
        return [
            Expectation(
                "every node answered requests",
                all(st.per_node.get(n, 0) > 0 for n in nodes),
                per_node,
            ),
            Expectation("no failed requests", st.failed == 0, failed),
        ]
    if phase.number == 2:
        return [
            Expectation(
                "requests failed only until the router dropped node1's next hop",
                phase.route_t is not None and st.failed_after_route == 0,
                f"{st.failed - st.failed_after_route} failed before it, "
                f"{st.failed_after_route} after",
            )
        ]
    if phase.number == 3:
        back = st.per_node.get("node1", 0)
        return [Expectation("node1 answers requests again", back > 0, f"{back} requests")]
    if phase.number == 4:
        # The router's stateless ECMP may move a connection that is in flight at the moment the
        # next-hop set changes to another node, which resets it: the router's doing, not
        # vipgate's (BIRD's kernel routes cannot use resilient nexthop groups). Those resets are
        # reported and excepted; any other failure fails the drain.
        other = st.failed - st.rehashed
        note = (
            f" ({st.rehashed} reset in flight at the route change: ECMP rehash)"
            if (st.rehashed)
            else ""
        )
        return [Expectation("no failed requests (graceful drain)", other == 0, failed + note)]
    if phase.number == 5:
        answered = sum(st.answered.values())
        states = phase.route_states_end
        running = [n for n, v in phase.fault_states.items() if v != "stopped"]
        # resets in flight at a change of the next-hop set are the router's ECMP rehash, as in
        # phase 4; anything else (refused, timeout, unreachable) did not reach an apiserver
        note = (
            f" ({st.rehashed} reset in flight at a route change: ECMP rehash)"
            if st.rehashed
            else ""
        )
        return [
            Expectation(
                "every request reached an apiserver (the VIP failed open)",
                st.failed - st.rehashed == 0 and answered > 0,
                f"{answered} answered {'/'.join(k[5:] for k in st.answered) or '-'}, "
                f"{failed}{note}",
            ),
            Expectation(
                "every announcing node de-preferred and in the router's ECMP route",
                bool(running)
                and all(phase.fault_states[n] == "depreferred" for n in running)
                and set(phase.fault_nexthops) == set(running),
                ", ".join(f"{k} {v}" for k, v in sorted(phase.fault_states.items()))
                + f"; next hops {' '.join(phase.fault_nexthops) or 'none'}",
            ),
            Expectation(
                "announced plainly again when healthy",
                all(states.get(n) == "announced" for n in running),
                ", ".join(f"{k} {v}" for k, v in sorted(states.items())),
            ),
        ]
    return []


NEAR_ROUTE_CHANGE = 0.1  # seconds: the router look and the client's clock reading are not exact


def near_route_change(r: RequestLike, phase: Phase) -> bool:
    """Was `r` in flight (give or take NEAR_ROUTE_CHANGE) when the phase's route changed?"""
    times = [t for t in (phase.route_t, *phase.route_changes) if t is not None]
    return any(r.t - NEAR_ROUTE_CHANGE <= t <= r.t + r.latency + NEAR_ROUTE_CHANGE for t in times)


def describe_failure(r: RequestLike, phase: Phase, event: str) -> str:
    """One line about a failed request, timed against the phase's event and route change."""

    def rel(dt: float, what: str) -> str:
        return f"{fmt_seconds(abs(dt))} {'before' if dt < 0 else 'after'} {what}"

    parts = [f"{r.outcome} after {fmt_seconds(r.latency)}"]
    if phase.event_t is not None:
        parts.append("started " + rel(r.t - phase.event_t, event))
    if phase.route_t is not None:
        parts.append("ended " + rel(r.t + r.latency - phase.route_t, "the route change was seen"))
    text = ", ".join(parts)
    if r.detail:
        text += f" ({r.detail[:80]})"
    return text


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "never"
    if abs(s) < 1.0:
        return f"{s * 1000:.0f} ms"
    return f"{s:.2f} s"


def measured_text(p: Phase) -> str:
    if not p.measure:
        return "-"
    text = f"{p.measure} {fmt_seconds(p.measured)}"
    if p.exit_code is not None:
        text += f", exit {p.exit_code}"
    return text


_SHORT = {"announced": "ann", "depreferred": "DEPREF", "withdrawn": "wdr", "stopped": "off"}


def format_table(phases: Sequence[Phase], stats: Sequence[PhaseStats]) -> str:
    """The summary table (plain text, fixed width, readable in a CI log)."""
    head = (
        "phase",
        "measured",
        "requests ok",
        "failed",
        "next hops at the end",
        "other answers",
        "route states",
    )
    rows = [
        (
            f"{p.number} {p.title}",
            measured_text(p),
            str(s.ok),
            str(s.failed),
            " ".join(p.nexthops_end) or "(none)",
            " ".join(f"{v} x {k[5:]}" for k, v in s.answered.items()) or "-",
            " ".join(f"{n}:{_SHORT.get(v, v)}" for n, v in sorted(p.route_states_end.items()))
            or "-",
        )
        for p, s in zip(phases, stats, strict=True)
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    right = {2, 3}

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, c in enumerate(cells):
            out.append(c.rjust(widths[i]) if i in right else c.ljust(widths[i]))
        return "| " + " | ".join(out) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(r) for r in rows)])


def summary_json(
    phases: Sequence[Phase],
    stats: Sequence[PhaseStats],
    expectations: Sequence[Expectation],
    t0: float,
    **extra: Any,
) -> dict[str, Any]:
    """Machine-readable summary (times relative to the demo's start `t0`)."""

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - t0, 4)

    out_phases = []
    for p, s in zip(phases, stats, strict=True):
        d = asdict(p)
        for k in ("start", "end", "event_t", "route_t", "route_prev"):
            d[k] = rel(d[k])
        d["measured_s"] = None if p.measured is None else round(p.measured, 4)
        d["nexthops_end"] = list(p.nexthops_end)
        d["requests"] = asdict(s)
        d["requests"]["last_failure_t"] = rel(s.last_failure_t)
        out_phases.append(d)
    return {
        "phases": out_phases,
        "expectations": [asdict(e) for e in expectations],
        "ok": all(e.ok for e in expectations),
        **extra,
    }
