"""SIGTERM with a silent peer: vipgate still exits 0 within 3 s (DESIGN 3.7, issue 4)."""

from __future__ import annotations

import signal
import time

import pytest

from lab.cluster import Cluster, vip_on_lo
from lab.netns import Lab

pytestmark = pytest.mark.lab


def test_sigterm_with_silent_peer_exits_within_3s() -> None:
    with Lab() as lab:
        c = Cluster.create(lab, n_nodes=1, period=0.5, timeout=0.5)
        c.start_all()
        c.wait_nexthops({c.ip("node1")}, timeout=20)
        # The router's port to node1 goes down: nothing we send is acknowledged any more, so the
        # withdraw and the Cease stay in our send queue (a frozen router would not do: its
        # kernel still acknowledges).
        lab.link_down(c.topo.router_ns, "n1")
        t0 = c.signal("node1")
        rc = c.wait_exit("node1", timeout=10)
        elapsed = time.monotonic() - t0
        assert rc == 0, c.log("node1")
        assert elapsed < 3.0, f"exit took {elapsed:.2f}s\n{c.log('node1')}"
        assert not vip_on_lo(lab, c.topo.node("node1"))
        # The scenario really was a silent peer: the withdrawal was never acknowledged.
        assert "not acknowledged" in c.log("node1"), c.log("node1")


def test_vip_left_by_a_killed_run_is_adopted_and_removed() -> None:
    with Lab() as lab:
        c = Cluster.create(lab, n_nodes=1, period=0.5, timeout=0.5)
        node = c.topo.node("node1")
        c.start_all()
        c.wait_nexthops({c.ip("node1")}, timeout=20)
        c.signal("node1", signal.SIGKILL)
        c.wait_exit("node1")
        assert vip_on_lo(lab, node)  # nobody could clean up
        labels = {
            a.get("label")
            for link in lab.ip_json(node.ns, "-4", "addr", "show", "dev", "lo")
            for a in link.get("addr_info", [])
            if a.get("local") == "203.0.113.100"
        }
        assert labels == {"lo:vipgate"}
        c.start("node1")
        c.wait_nexthops({c.ip("node1")}, timeout=20)
        assert "adopted" in c.log("node1")
        c.signal("node1")
        assert c.wait_exit("node1") == 0
        assert not vip_on_lo(lab, node), c.log("node1")
