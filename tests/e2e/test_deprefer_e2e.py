"""End-to-end: control_plane_health_check_unhealthy_action=deprefer against BIRD in its default
configuration (no GRACEFUL_SHUTDOWN import filter: ``graceful_shutdown=False``).

Three vipgates announce the VIP; the router's kernel route (``merge paths on``) is the ECMP set.
A node whose apiserver answers 401 (anonymous access removed) is announced de-preferred (our AS
prepended): it leaves the set while a healthy node announces a plain path; when every apiserver
answers 401 every node is in the set (the VIP fails open); a node that recovers is alone in it.
The control: with the default ``withdraw`` the same fault on every node leaves no route at all.
Timing as in test_failover (period 1 s, threshold 3).
"""

from __future__ import annotations

import time

import pytest

from lab.cluster import Cluster
from lab.routemon import RouteWatch
from tests.e2e.conftest import PERIOD, THRESHOLD, MakeCluster

pytestmark = pytest.mark.lab

N1, N2, N3 = "192.0.2.11", "192.0.2.12", "192.0.2.13"
ALL = frozenset({N1, N2, N3})
STARTUP = 10.0
# the threshold-th failed check ends at most THRESHOLD periods after the fault, plus noise
DETECT = (THRESHOLD + 1) * PERIOD + 1.0
ACTION = "control_plane_health_check_unhealthy_action"
PFX = "203.0.113.100/32"


def start(c: Cluster, w: RouteWatch) -> None:
    t = time.monotonic()
    c.start_all()
    w.wait(lambda h: h == ALL, STARTUP, "all three nodes announced", t)


def route_state(c: Cluster, name: str) -> str:
    for state in ("announced", "depreferred", "withdrawn"):
        if c.metric(name, "vipgate_prefix_route_state", prefix=PFX, state=state) == 1:
            return state
    raise AssertionError(f"{name}: no route state in the metrics")


def test_deprefer_fails_open_when_every_node_fails(make_cluster: MakeCluster) -> None:
    c, w = make_cluster(extra_env={ACTION: "deprefer"}, router_kwargs={"graceful_shutdown": False})
    start(c, w)
    # one node fails: out of the ECMP set, still announced
    t0 = c.apiservers["node1"].set_mode("unauthorized")
    w.wait(lambda h: h == {N2, N3}, DETECT, "node1 de-preferred", t0)
    assert route_state(c, "node1") == "depreferred"
    assert c.metric("node1", "vipgate_prefix_announced", prefix=PFX) == 1
    assert "announcing the VIP de-preferred" in c.log("node1")
    # every node fails: all three in the set again, and it stays so
    t1 = time.monotonic()
    for name in ("node2", "node3"):
        c.apiservers[name].set_mode("unauthorized")
    w.first(lambda h: h == ALL, t1 + PERIOD, 2 * DETECT, "every node de-preferred", t1)
    time.sleep(2 * PERIOD)
    assert not w.violations(lambda h: h == ALL, t1 + DETECT, time.monotonic()), w.describe(t1)
    assert [route_state(c, n) for n in ("node1", "node2", "node3")] == ["depreferred"] * 3
    # one recovers: only that one
    t2 = c.apiservers["node2"].set_mode("healthy")
    w.wait(lambda h: h == {N2}, DETECT, "node2 alone", t2)
    assert route_state(c, "node2") == "announced"
    assert "without de-preference" in c.log("node2")
    # all recover
    for name in ("node1", "node3"):
        c.apiservers[name].set_mode("healthy")
    w.wait(lambda h: h == ALL, DETECT, "all three back", t2)


def test_withdraw_goes_dark_when_every_node_fails(make_cluster: MakeCluster) -> None:
    c, w = make_cluster(router_kwargs={"graceful_shutdown": False})
    start(c, w)
    t0 = time.monotonic()
    for name in ("node1", "node2", "node3"):
        c.apiservers[name].set_mode("unauthorized")
    w.wait(lambda h: h == set(), DETECT, "every node withdrawn", t0)
    assert [route_state(c, n) for n in ("node1", "node2", "node3")] == ["withdrawn"] * 3
