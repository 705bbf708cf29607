"""Stopping vipgate: a silent peer (exit 0 within 3 s: docs/design.md, "The manager"), a SIGTERM
during host setup, and the VIP a SIGKILLed run left behind (IPv4 and IPv6: adopted, removed)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from lab.cluster import Cluster, vip_on_lo
from lab.netns import Lab, netns_pids
from lab.topology import ROUTER_AS, ROUTER_IP6, VIP6_ADDR, Node
from lab.wait import wait_for
from vipgate.vip import VIP_PROTO

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


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_sigterm_during_host_setup_leaves_nothing_and_exits_0() -> None:
    """The host setup runs in a forked child before the event loop. The test freezes that child
    (SIGSTOP) the moment it appears, so the SIGTERM surely arrives during the setup; then lets
    it finish (SIGCONT). vipgate must undo the setup (the VIP the child added), never open a
    BGP session and exit 0."""
    with Lab() as lab:
        c = Cluster.create(lab, n_nodes=1, period=0.5, timeout=0.4)
        node = c.topo.node("node1")
        router = c.topo.router
        assert router is not None
        child = None
        for _attempt in range(5):  # the child lives ~0.1-0.3 s; polling catches it at once
            vp = c.start("node1")
            assert vp.proc is not None
            deadline = time.monotonic() + 20
            while child is None and vp.proc.poll() is None and time.monotonic() < deadline:
                kids = _children(vp.proc.pid)
                if kids:
                    try:
                        os.kill(kids[0], signal.SIGSTOP)
                        child = kids[0]
                    except ProcessLookupError:
                        break  # gone before we could freeze it: start again
                time.sleep(0.001)
            if child is not None:
                break
            c.stop("node1")
        assert child is not None, "never caught the host-setup child"
        try:
            c.signal("node1", signal.SIGTERM)
            time.sleep(0.3)  # the parent has the signal while the child is frozen
            assert c.running("node1")
        finally:
            os.kill(child, signal.SIGCONT)
        assert c.wait_exit("node1", timeout=10) == 0, c.log("node1")
        log = c.log("node1")
        assert "SIGTERM during host setup" in log, log
        assert "VIP 203.0.113.100/32 added to lo" in log, log  # the child did finish...
        assert "VIP 203.0.113.100/32 removed from lo" in log, log  # ...and it was undone
        assert not vip_on_lo(lab, node)
        assert "Established" not in router.sessions().values()
        assert "peer(s):" not in log, log  # the event loop (and BGP) never started
        pids = set(netns_pids(node.ns))
        assert pids == {c.apiservers["node1"].pid}, pids  # nothing of vipgate left running


def _vip6_marks(lab: Lab, node: Node) -> list[int]:
    """IFA_PROTO of each copy of the IPv6 VIP on the node's lo (pyroute2: iproute2 6.1 does
    not print it)."""
    script = (
        "import socket; from pyroute2 import IPRoute\n"
        "with IPRoute() as i:\n"
        "    x = i.link_lookup(ifname='lo')[0]\n"
        "    for a in i.get_addr(family=socket.AF_INET6, index=x):\n"
        f"        if a.get('address') == '{VIP6_ADDR}': print(a.get('proto') or 0)\n"
    )
    out = lab.run(node.ns, [sys.executable, "-c", script]).stdout
    return [int(x) for x in out.split()]


def test_ipv6_vip_left_by_a_killed_run_is_adopted_and_removed_foreign_one_kept() -> None:
    with Lab() as lab:
        c = Cluster.create(
            lab,
            n_nodes=1,
            period=0.5,
            timeout=0.4,
            extra_env={
                "address": VIP6_ADDR,
                "bgp_peers": f"[{ROUTER_IP6}]:{ROUTER_AS}::false",  # no session needed here
            },
        )
        node = c.topo.node("node1")
        added = f"VIP {VIP6_ADDR}/128 added to lo"

        def started(text: str) -> None:
            wait_for(lambda: text in c.log("node1"), 20, 0.05, what=text)

        c.start("node1")
        started(added)
        assert _vip6_marks(lab, node) == [VIP_PROTO]
        c.signal("node1", signal.SIGKILL)
        c.wait_exit("node1")
        assert _vip6_marks(lab, node) == [VIP_PROTO]  # nobody could clean up
        c.start("node1")
        started("added by an earlier vipgate run: adopted")
        c.signal("node1")
        assert c.wait_exit("node1") == 0, c.log("node1")
        assert _vip6_marks(lab, node) == [], c.log("node1")

        # An address someone else put there (no mark) is left alone, also at exit.
        lab.ip(node.ns, "-6", "addr", "add", f"{VIP6_ADDR}/128", "dev", "lo", "nodad")
        c.start("node1")
        started("already on lo: left alone")
        c.signal("node1")
        assert c.wait_exit("node1") == 0, c.log("node1")
        assert _vip6_marks(lab, node) == [0], c.log("node1")
