"""The CI size of bench/bench_chaos.py's other modes (bench/README.md, "dual-stack,
router-initiated sessions, routing-table mode"): the same 75 s of random overlapping faults as
tests/e2e/test_chaos.py, with each mode's invariant checked every 0.1 s. The seed is printed
(``VG_CHAOS_SEED`` replays it); a failure shows the timeline around each violation.
"""

from __future__ import annotations

import os

import pytest

from bench.bench_chaos import NODES, ChaosResult, Settings, run

pytestmark = pytest.mark.lab

SECONDS = 75


def chaos(
    *, dual_stack: bool = False, router_dials: bool = False, routing_table: bool = False
) -> tuple[ChaosResult, str]:
    """The run, its report printed, and what every mode asserts (as tests/e2e/test_chaos.py)."""
    seed = os.environ.get("VG_CHAOS_SEED")  # replay a failed run's seed
    s = Settings(
        seconds=SECONDS,
        seed=int(seed) if seed else None,
        dual_stack=dual_stack,
        router_dials=router_dials,
        routing_table=routing_table,
    )
    res, report = run(s)
    print(report)
    assert res.ok, report
    assert sum(res.faults.values()) >= 20, report  # the faults did happen, several kinds
    assert len(res.faults) >= 5, report
    assert res.checks_present > 0 and res.checks_absent > 0, report
    # every node (each family) back and checked present once all was healed
    assert len(res.healed_present) == len(NODES) * len(s.families), report
    return res, report


def test_chaos_dual_stack_router_dials_75s() -> None:
    """An IPv4 and an IPv6 VIP, a session of each family per node, and vipgate's own dials
    refused (its peer port is one where nothing listens): the node's next hop of each family
    is at the router iff its apiserver is healthy and its session of that family is up, and
    every session -- the first ones and those after BIRD's restarts, vipgate's restarts and
    the link's returns -- is one the router opened to vipgate's listener."""
    res, report = chaos(dual_stack=True, router_dials=True)
    assert res.checks_by_family.get("4", 0) > 0 and res.checks_by_family.get("6", 0) > 0, report
    # 2 nodes x 2 families at the start; more came back after the faults, all through the
    # listener
    assert res.sessions_established > 4, report
    assert res.sessions_via_listener == res.sessions_established, report


def test_chaos_routing_table_75s() -> None:
    """kube-vip's routing-table mode: vipgate writes table 198 (no BGP session of its own) and
    a BIRD on each node exports it to the router; one more fault restarts that node daemon."""
    res, report = chaos(routing_table=True)
    assert res.faults.get("daemon_restart", 0) > 0, report
    assert res.sessions_established == 0, report  # the sessions are the node daemons'
