"""The chaos run's CI size (bench/bench_chaos.py): 75 s of random overlapping faults on a
2-node cluster -- apiserver refuse/hang/500/slow/shutdown, BIRD restart and SIGSTOP/SIGCONT,
the node's link down/up, packet loss on it, vipgate SIGTERM and restart -- and the invariant
(next hop at the router iff apiserver healthy and session up, within the settings' bounds)
checked every 0.1 s. The seed is printed; a failure shows the timeline around each violation.
"""

from __future__ import annotations

import os

import pytest

from bench.bench_chaos import NODES, Settings, run

pytestmark = pytest.mark.lab


def test_chaos_75s() -> None:
    seed = os.environ.get("VG_CHAOS_SEED")  # replay a failed run's seed
    res, report = run(Settings(seconds=75, seed=int(seed) if seed else None))
    print(report)
    assert res.ok, report
    assert sum(res.faults.values()) >= 20, report  # the faults did happen, several kinds
    assert len(res.faults) >= 5, report
    assert res.checks_present > 0 and res.checks_absent > 0, report
    assert len(res.healed_present) == len(NODES), report  # back, checked present at the end


def test_chaos_deprefer_75s() -> None:
    """The same faults with control_plane_health_check_unhealthy_action=deprefer: an unhealthy
    node's path is at the router (de-preferred) only while no node has a plain one."""
    seed = os.environ.get("VG_CHAOS_SEED")
    s = Settings(seconds=75, seed=int(seed) if seed else None, unhealthy_action="deprefer")
    res, report = run(s)
    print(report)
    assert res.ok, report
    assert sum(res.faults.values()) >= 20 and len(res.faults) >= 5, report
    assert res.checks_present > 0 and res.checks_absent > 0, report
    assert len(res.healed_present) == len(NODES), report  # back, checked present at the end
