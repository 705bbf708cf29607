"""BFD end to end: ``vipgate manager`` with kube-vip's 7th bgp_peers field against BIRD.

Two nodes announce the VIP with BFD 300 ms x 3 (BIRD configured the same). node1 made silent
(every packet dropped in its namespace, nothing closed) loses its next hop well within the
hold time (9 s); its metrics then count a BFD Down by detection time, and when it speaks again
BFD, BGP and the route come back.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from lab.routemon import exactly
from lab.silence import silence, unsilence
from lab.topology import ROUTER_AS, ROUTER_IP4
from lab.wait import wait_for
from tests.e2e.conftest import HOLD, MakeCluster

pytestmark = pytest.mark.lab

BFD = (300, 300, 3)
BOUND = 3.0  # seconds; the detection time is 0.9 s, the hold time 9 s


def test_manager_bfd_silent_node_leaves_ecmp_fast(make_cluster: MakeCluster) -> None:
    cluster, watch = make_cluster(n_nodes=2)
    router = cluster.topo.router
    assert router is not None
    router.neighbors = [dataclasses.replace(nb, bfd=BFD) for nb in router.neighbors]
    router.restart()
    peers = f"{ROUTER_IP4}:{ROUTER_AS}::false:::true;{BFD[0]};{BFD[1]};{BFD[2]}"
    cluster.start_all({"bgp_peers": peers})
    n1, n2 = (cluster.ip(n) for n in ("node1", "node2"))
    watch.wait(exactly({n1, n2}), 30.0, "both next hops")
    wait_for(
        lambda: cluster.metric("node1", "vipgate_bfd_session_state", peer=ROUTER_IP4) == 4,
        10.0,
        0.2,
        what="node1's BFD session Up in its metrics",
    )
    # BIRD's side of node2's session goes Up when node2's first Up packet arrives, which can be
    # after node1's metric shows Up (nothing above waited for node2): wait for both at the router.
    wait_for(
        lambda: router.bfd_sessions() == {n1: "Up", n2: "Up"},
        10.0,
        0.2,
        what="both BFD sessions Up at the router",
        describe=router.bfd_sessions,
    )

    t0 = time.monotonic()
    silence(cluster.lab, cluster.topo.node("node1").ns)
    gone = watch.first(exactly({n2}), t0, HOLD + 2, "node1's next hop gone") - t0
    print(f"silent node's next hop gone after {gone:.3f} s (hold time {HOLD} s)")
    assert gone < BOUND, watch.describe(t0)

    unsilence(cluster.lab, cluster.topo.node("node1").ns)
    watch.wait(exactly({n1, n2}), 30.0, "node1 back")
    down = cluster.metric(
        "node1",
        "vipgate_bfd_state_changes_total",
        peer=ROUTER_IP4,
        state="down",
        diag="control_detection_time_expired",
    )
    assert down is not None and down >= 1
    log = cluster.log("node1")
    assert "BFD Down" in log and "BFD Up: starting the session" in log
    for name in ("node1", "node2"):
        assert cluster.stop(name) == 0
