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

from lab.client import LoadClient, Request
from lab.cluster import Cluster, vip_on_lo
from lab.routemon import RouteWatch
from lab.topology import VIP4_ADDR
from lab.wait import wait_for
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


def local_requests(c: Cluster, n: int = 20) -> list[Request]:
    """`n` requests from node1 itself to the VIP (a kubelet pointed at the control-plane
    endpoint), GET /version; returns when all have ended."""
    lc = LoadClient(
        c.lab, c.topo.node("node1").ns, c.pki.ca_cert, path="/version", rate=20, duration=3.0,
        max_requests=n, name=f"local-{time.monotonic_ns()}",
    )  # fmt: skip
    lc.start()
    assert lc.proc is not None
    lc.proc.wait(10.0)
    return lc.records()


def test_withdraw_takes_the_vip_off_the_node_and_puts_it_back(make_cluster: MakeCluster) -> None:
    c, w = make_cluster(router_kwargs={"graceful_shutdown": False})
    start(c, w)
    node1 = c.topo.node("node1")
    assert vip_on_lo(c.lab, node1)
    t0 = c.apiservers["node1"].set_mode("refuse")  # as after a SIGKILL
    w.wait(lambda h: h == {N2, N3}, DETECT, "node1 withdrawn", t0)
    wait_for(lambda: not vip_on_lo(c.lab, node1), 2.0, 0.01, what="VIP off node1's lo")
    reqs = local_requests(c)
    assert len(reqs) == 20 and all(r.ok for r in reqs), [(r.outcome, r.detail) for r in reqs]
    assert {r.node for r in reqs} <= {"node2", "node3"}, {r.node for r in reqs}
    log1 = c.log("node1")
    assert "removed from lo while the route is withdrawn" in log1
    # back: the address first, then the announcement
    t1 = c.apiservers["node1"].set_mode("healthy")
    w.wait(lambda h: h == ALL, DETECT, "node1 back", t1)
    assert vip_on_lo(c.lab, node1)
    log1 = c.log("node1")
    assert log1.index("back on lo") < log1.rindex("announcing the VIP"), log1[-2000:]
    assert all(r.ok and r.node == "node1" for r in local_requests(c, 5))
    # the stop: the address goes with the exit, as before
    assert c.stop("node1") == 0
    assert not vip_on_lo(c.lab, node1)


def test_deprefer_and_a_foreign_address_keep_the_vip_on_the_node(
    make_cluster: MakeCluster,
) -> None:
    c, w = make_cluster(extra_env={ACTION: "deprefer"}, router_kwargs={"graceful_shutdown": False})
    node2 = c.topo.node("node2")
    c.lab.run(node2.ns, ["ip", "addr", "add", f"{VIP4_ADDR}/32", "dev", "lo"])  # not vipgate's
    c.start_all()
    w.wait(lambda h: h == ALL, STARTUP, "all three announced")
    t0 = c.apiservers["node1"].set_mode("refuse")
    w.wait(lambda h: h == {N2, N3}, DETECT, "node1 de-preferred", t0)
    time.sleep(PERIOD)
    assert vip_on_lo(c.lab, c.topo.node("node1"))  # announced (de-preferred): the address stays
    # node2's address was there before vipgate: a withdrawal (the apiserver's shutdown) leaves it
    t1 = c.apiservers["node2"].shutdown(60.0)
    w.wait(lambda h: h == {N3}, DETECT, "node2 withdrawn on its announced shutdown", t1)
    time.sleep(0.5)
    assert vip_on_lo(c.lab, node2)
    assert "removed from lo" not in c.log("node2")
