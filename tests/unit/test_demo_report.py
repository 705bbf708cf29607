"""The demo's pure parts: requests counted per phase, expectations, the summary table, route
intervals, metrics and log parsing, failures timed against the route change, and how a stop
signal ends it (the demo itself: tests/e2e/test_demo.py)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from demo import run as demo_run
from demo.netns_io import parse_metrics
from demo.report import (
    Phase,
    describe_failure,
    format_table,
    near_route_change,
    phase_stats,
    request_expectations,
)
from demo.run import log_message
from lab.routemon import RouteSample, intervals


@dataclass(frozen=True)
class Req:
    t: float
    outcome: str
    node: str | None
    latency: float = 0.005
    detail: str = ""


def test_requests_count_in_the_phase_in_which_they_ended() -> None:
    p1 = Phase(1, "all healthy", start=0.0, end=10.0)
    p2 = Phase(2, "killed", start=10.0, end=20.0, event_t=10.0, route_t=12.5)
    reqs = [
        Req(9.0, "ok", "node1"),
        Req(9.999, "reset", None, latency=0.01),  # in flight at the kill: phase 2's failure
        Req(11.0, "refused", None),
        Req(12.4, "refused", None),
        Req(12.6, "ok", "node2"),
    ]
    s1, s2 = phase_stats(p1, reqs), phase_stats(p2, reqs)
    assert (s1.ok, s1.failed) == (1, 0)
    assert (s2.ok, s2.failed, s2.failed_after_route) == (1, 3, 0)
    assert s2.outcomes == {"reset": 1, "refused": 2}
    assert s2.per_node == {"node2": 1}
    [e] = request_expectations(p2, s2, ["node1", "node2"])
    assert e.ok and "3 failed before it, 0 after" in e.detail
    late = phase_stats(p2, [*reqs, Req(13.0, "refused", None)])
    [e] = request_expectations(p2, late, ["node1", "node2"])
    assert not e.ok and late.failed_after_route == 1


def test_phase_expectations_fail_when_they_should() -> None:
    p1 = Phase(1, "all healthy", start=0.0, end=10.0)
    st = phase_stats(p1, [Req(1.0, "ok", "node1"), Req(2.0, "ok", "node2")])
    every, none_failed = request_expectations(p1, st, ["node1", "node2", "node3"])
    assert not every.ok and none_failed.ok
    p4 = Phase(4, "sigterm", start=0.0, end=10.0)
    [drain] = request_expectations(p4, phase_stats(p4, [Req(1.0, "timeout", None)]), ["node1"])
    assert not drain.ok and "timeout 1" in drain.detail
    # A reset of a connection in flight at the route change is the router's ECMP rehash:
    # reported, excepted; a reset long after it is not.
    p4r = Phase(4, "sigterm", start=0.0, end=10.0, event_t=5.0, route_t=5.02)
    rehash = Req(4.99, "reset", None, latency=0.016)
    [drain] = request_expectations(p4r, phase_stats(p4r, [rehash]), ["node1"])
    assert drain.ok and "ECMP rehash" in drain.detail
    [drain] = request_expectations(
        p4r, phase_stats(p4r, [rehash, Req(7.0, "reset", None, latency=0.01)]), ["node1"]
    )
    assert not drain.ok
    p2 = Phase(2, "killed", start=0.0, end=10.0, event_t=0.0)  # never withdrawn
    [e] = request_expectations(p2, phase_stats(p2, []), ["node1"])
    assert not e.ok


def test_summary_table_shape() -> None:
    p = Phase(2, "node1's kube-apiserver killed", start=0, end=10, event_t=1.0, route_t=3.53)
    p.measure = "detection"
    p.nexthops_end = ("node2", "node3")
    q = Phase(4, "sigterm", start=10, end=20, event_t=11.0, route_t=11.012, exit_code=0)
    q.measure = "route gone"
    reqs = [Req(2.0, "refused", None), Req(5.0, "ok", "node2")]
    text = format_table([p, q], [phase_stats(p, reqs), phase_stats(q, reqs)])
    lines = text.splitlines()
    assert len({len(ln) for ln in lines}) == 1, "columns not aligned"
    assert "detection 2.53 s" in lines[2] and "route gone 12 ms, exit 0" in lines[3]
    assert lines[2].split("|")[3].strip() == "1" and lines[2].split("|")[4].strip() == "1"
    assert "node2 node3" in lines[2] and "(none)" in lines[3]


def test_route_intervals_from_changes() -> None:
    a, b = "192.0.2.11", "192.0.2.12"
    changes = [
        RouteSample(1.0, frozenset({a, b}), prev=0.99),
        RouteSample(5.0, frozenset({b}), prev=4.99),
        RouteSample(7.0, frozenset({a, b}), prev=6.99),
    ]
    assert intervals(changes, a, 10.0) == [(1.0, 5.0), (7.0, 10.0)]
    assert intervals(changes, b, 10.0) == [(1.0, 10.0)]
    assert intervals(changes, "192.0.2.13", 10.0) == []


def test_metrics_and_log_parsing() -> None:
    text = (
        "# HELP vipgate_probe_consecutive_failures Failed health checks in a row.\n"
        "vipgate_probe_consecutive_failures 2.0\n"
        'vipgate_probe_results_total{outcome="refused"} 2.0\n'
    )
    m = parse_metrics(text)
    assert m["vipgate_probe_consecutive_failures"] == 2.0
    assert m['vipgate_probe_results_total{outcome="refused"}'] == 2.0
    line = "2026-11-26 09:48:52,030 WARNING vipgate.manager: health check failed, 3 consecutive"
    assert log_message(line) == "WARNING health check failed, 3 consecutive"
    assert log_message("something else") == "something else"


def test_failures_are_timed_against_the_route_change() -> None:
    p = Phase(4, "sigterm", start=0.0, end=10.0, event_t=5.0, route_t=5.02)
    hit = Req(4.99, "reset", None, latency=0.016, detail="ConnectionResetError: reset")
    later = Req(7.0, "timeout", None, latency=1.0)
    assert near_route_change(hit, p) and not near_route_change(later, p)
    text = describe_failure(hit, p, "SIGTERM")
    assert text.startswith("reset after 16 ms, started 10 ms before SIGTERM, ended ")
    assert "before the route change was seen" in text and "ConnectionResetError" in text
    assert not near_route_change(hit, Phase(1, "healthy", start=0.0, end=10.0))


def test_phase5_every_request_reached_an_apiserver() -> None:
    """Phase 5 (every /livez answers 401): a 401 answer reached an apiserver, a refused or
    reset connection did not; the announcing nodes must have been de-preferred and in the ECMP
    route during the fault, and announced plainly at the end."""
    p5 = Phase(5, "every node's /livez answers 401", start=0.0, end=30.0, event_t=0.0)
    p5.fault_states = {"node1": "depreferred", "node2": "stopped", "node3": "depreferred"}
    p5.fault_nexthops = ("node1", "node3")
    p5.route_states_end = {"node1": "announced", "node2": "stopped", "node3": "announced"}
    reqs = [Req(1.0, "ok", "node1"), Req(2.0, "http_401", "node3"), Req(3.0, "http_401", None)]
    st = phase_stats(p5, reqs)
    assert (st.ok, st.failed, st.answered) == (1, 0, {"http_401": 2})
    reached, depref, plain = request_expectations(p5, st, ["node1", "node2", "node3"])
    assert reached.ok and "2 answered 401" in reached.detail
    assert depref.ok and "next hops node1 node3" in depref.detail
    assert plain.ok
    # a refused connection is a failure; a node withdrawn or out of the route fails the phase
    bad = phase_stats(p5, [*reqs, Req(4.0, "refused", None)])
    assert not request_expectations(p5, bad, [])[0].ok
    p5.fault_states = {"node1": "withdrawn", "node2": "stopped", "node3": "depreferred"}
    assert not request_expectations(p5, st, [])[1].ok
    p5.fault_states = {"node1": "depreferred", "node2": "stopped", "node3": "depreferred"}
    p5.fault_nexthops = ("node3",)
    assert not request_expectations(p5, st, [])[1].ok
    p5.route_states_end = {"node1": "depreferred", "node2": "stopped", "node3": "announced"}
    assert not request_expectations(p5, st, [])[2].ok


def test_table_shows_other_answers_and_route_states() -> None:
    p = Phase(5, "every node's /livez answers 401", start=0.0, end=10.0)
    p.route_states_end = {"node1": "depreferred", "node2": "stopped", "node3": "announced"}
    st = phase_stats(p, [Req(1.0, "ok", "node1"), Req(2.0, "http_401", "node1")])
    row = format_table([p], [st]).splitlines()[2]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "1" and cells[3] == "0" and cells[5] == "1 x 401"
    assert cells[6] == "node1:DEPREF node2:off node3:ann"


def test_route_state_intervals_for_the_picture() -> None:
    from demo.timeline import state_intervals

    log = [
        (1.0, "node1", "announced"),
        (1.0, "node2", "announced"),
        (5.0, "node1", "depreferred"),
        (8.0, "node1", "announced"),
        (9.0, "node2", "depreferred"),
    ]
    assert state_intervals(log, "node1", "depreferred", 20.0) == [(5.0, 8.0)]
    assert state_intervals(log, "node2", "depreferred", 20.0) == [(9.0, 20.0)]
    assert state_intervals(log, "node3", "depreferred", 20.0) == []


def test_phase5_resets_at_a_route_change_are_ecmp_rehashes() -> None:
    p5 = Phase(5, "every node's /livez answers 401", start=0.0, end=30.0, event_t=0.0)
    p5.fault_states = {"node1": "depreferred", "node3": "depreferred"}
    p5.fault_nexthops = ("node1", "node3")
    p5.route_states_end = {"node1": "announced", "node3": "announced"}
    p5.route_changes = [12.0, 14.5]  # node1 de-preferred (set shrinks), node3 too (all back)
    reqs = [Req(2.0, "http_401", "node3"), Req(14.49, "reset", None, latency=0.02)]
    st = phase_stats(p5, reqs)
    assert (st.failed, st.rehashed) == (1, 1)
    reached = request_expectations(p5, st, [])[0]
    assert reached.ok and "ECMP rehash" in reached.detail
    far = phase_stats(p5, [*reqs, Req(20.0, "reset", None)])  # no route change near it
    assert not request_expectations(p5, far, [])[0].ok


@pytest.mark.parametrize(
    ("sig", "status", "says"),
    [
        (signal.SIGINT, 130, "interrupted: lab torn down (0 namespaces of this run left)"),
        (signal.SIGTERM, 143, "stopped by SIGTERM: lab torn down (0 namespaces of this run left)"),
    ],
)
def test_a_stop_signal_ends_the_demo_with_a_line_and_its_status(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    sig: signal.Signals,
    status: int,
    says: str,
) -> None:
    """README, "The demo": 130 on Ctrl-C, 143 on SIGTERM, each with its line (no lab here)."""

    def run(self: demo_run.Demo) -> int:
        os.kill(os.getpid(), sig)
        raise AssertionError(f"{sig.name} did not stop the demo")

    def left_at_its_default(signum: int, frame: object) -> None:
        raise AssertionError("the demo did not take SIGTERM over (it would die by it)")

    monkeypatch.setattr(demo_run.Demo, "run", run)
    before = signal.signal(signal.SIGTERM, left_at_its_default)
    try:
        assert demo_run.main(["--no-color", "--out-dir", str(tmp_path)]) == status
    finally:
        signal.signal(signal.SIGTERM, before)
    assert says in capsys.readouterr().out
