"""Routing-table mode with the node's own BGP daemon (docs/routers.md, "Node daemon").

Each node namespace runs BIRD 2 peering with the upstream router and learning kernel table 198
(``protocol kernel { kernel table 198; learn; }``), and vipgate in routing-table mode beside it
(kube-vip's settings: ``vip_routingtable=true``, table 198, protocol 248; no BGP session of
vipgate's). The upstream router's kernel route to the VIP is the observable:

- healthy: the route reaches the router through each node's daemon;
- apiserver SIGKILL: the route leaves the table (the gate's fast detection), the node daemon
  withdraws it: gone at the router within ``CRASH_BOUND`` (detection + BIRD's propagation);
  the address leaves the interface with it; back after the apiserver restarts;
- no churn: a healthy vipgate leaves an unchanged route alone (no netlink event);
- the node daemon's metric filter: with ``unhealthy_action=deprefer`` a crash leaves the route
  in the table with metric 1000, and a SIGTERM with a drain gives it metric 65535; the router
  sees the node's path with our AS prepended and GRACEFUL_SHUTDOWN (local preference 0) and
  drops the node from its ECMP route;
- SIGTERM: route and address removed, exit 0, gone at the router;
- a dual-stack VIP list: both routes in the table and at the router as plain paths, both gone
  on a crash;
- FRR 8.4 on the node (``ip import-table`` and the VIP's connected route): crash, restart, stop.
"""

from __future__ import annotations

import functools
import json
import signal
import time

import pytest

from lab.cluster import Cluster, vip_on_lo
from lab.routers import RibPath
from lab.topology import NODE_AS, VIP4, VIP4_ADDR, VIP6, VIP6_ADDR, node_daemon
from lab.wait import wait_for
from tests.e2e.conftest import FIGURES, MakeCluster

pytestmark = pytest.mark.lab

TABLE = 198
PROTOCOL = 248
N1, N2 = "192.0.2.11", "192.0.2.12"
BOTH = frozenset({N1, N2})
CRASH_BOUND = 2.5  # s: ~0.4 s detection (fast period) + the node daemon's propagation
TABLE_ENV = {
    "bgp_enable": "false",
    "bgp_peers": "",
    "vip_routingtable": "true",
    "bgp_graceful_shutdown_seconds": "0",
}
DRAIN = 1.0  # s: bgp_graceful_shutdown_seconds where a test drains
DEPREF_ENV = {
    "control_plane_health_check_unhealthy_action": "deprefer",
    "bgp_graceful_shutdown_seconds": f"{DRAIN:g}",
}


def depreferred(hop: str, paths: list[RibPath]) -> bool:
    """The path via `hop` is at the router with our AS prepended three times and
    GRACEFUL_SHUTDOWN (local preference 0 from the router's RFC 8326 filter)."""
    return any(
        p.next_hop == hop and p.as_path == (NODE_AS,) * 4 and p.local_pref == 0 for p in paths
    )


def table_routes(c: Cluster, name: str, family: str = "-4") -> list[dict[str, object]]:
    out = c.lab.run(
        c.topo.node(name).ns,
        ["ip", "-j", family, "route", "show", "table", str(TABLE)],
        check=False,
    ).stdout
    return list(json.loads(out or "[]"))


def test_bird_on_the_node_exports_the_gated_route(make_cluster: MakeCluster) -> None:
    c, w = make_cluster(n_nodes=2, extra_env=TABLE_ENV)
    for node in c.topo.nodes:
        node_daemon(c.topo, node, "bird", TABLE)
    t = time.monotonic()
    c.start_all()
    w.wait(lambda h: h == BOTH, 20.0, "both nodes' daemons export the VIP", t)
    (route,) = table_routes(c, "node1")
    assert route["dst"] == VIP4_ADDR and route["dev"] == "lo", route
    assert str(route["protocol"]) == str(PROTOCOL), route
    assert vip_on_lo(c.lab, c.topo.node("node1"))

    # No churn: healthy checks leave the route alone (the monitor sees no event for it).
    mon = c.lab.popen(
        c.topo.node("node1").ns,
        ["ip", "monitor", "route", "table", str(TABLE)],
        log_name="ipmon-node1",
    )
    time.sleep(3.2)  # three checks at the 1 s period
    c.lab.stop(mon)
    assert VIP4_ADDR not in c.lab.read_log("ipmon-node1"), c.lab.read_log("ipmon-node1")

    # apiserver SIGKILL: the route leaves the table and the router, the address leaves lo.
    tk = c.apiservers["node1"].kill()
    tg = w.wait(lambda h: h == frozenset({N2}), 15.0, "node1 withdrawn after the crash", tk)
    assert tg - tk < CRASH_BOUND, w.describe(tk)
    assert table_routes(c, "node1") == []
    assert not vip_on_lo(c.lab, c.topo.node("node1"))

    # Back after the restart, through the node's daemon.
    c.apiservers["node1"].start()
    tl = time.monotonic()
    tb = w.wait(lambda h: h == BOTH, 15.0, "node1 back after the restart", tl)

    # A route deleted behind vipgate's back is put back at the next check.
    c.lab.ip(c.topo.node("node2").ns, "route", "del", f"{VIP4_ADDR}/32", "table", str(TABLE))
    wait_for(lambda: len(table_routes(c, "node2")) == 1, 3.0, 0.02, what="route put back")
    w.wait(lambda h: h == BOTH, 10.0, "node2's route at the router again", time.monotonic())

    # vipgate SIGKILLed: its route stays in the table; the next run adopts it unchanged, so
    # the router never loses node1.
    c.signal("node1", signal.SIGKILL)
    c.wait_exit("node1")
    assert len(table_routes(c, "node1")) == 1
    # It comes back de-preferring and draining (DEPREF_ENV) for the metric filter below.
    t_restart = time.monotonic()
    c.start("node1", DEPREF_ENV)
    wait_for(lambda: c.log("node1").count("announcing the VIP") >= 3, 10.0, what="announced")
    log = c.log("node1")
    assert "found at start: adopted" in log, log
    assert log.count("written to table") == 2, log  # the first run's two, none by the second
    assert not w.violations(lambda h: h == BOTH, t_restart, time.monotonic()), w.describe(tk)

    # The node daemon's metric filter (docs/routers.md, "Node daemon"): metric 1000 (de-preferred)
    # and 65535 (the drain) reach the router as our AS prepended three times and
    # GRACEFUL_SHUTDOWN (the router's RFC 8326 filter: local preference 0), so the router drops
    # node1 from the ECMP route while its path stays in the RIB.
    router = c.topo.router
    assert router is not None
    td = c.apiservers["node1"].kill()
    w.wait(lambda h: h == frozenset({N2}), 15.0, "node1 de-preferred after the crash", td)
    router.wait_rib(VIP4, functools.partial(depreferred, N1), 5.0, what="node1's path prepended")
    assert [r["metric"] for r in table_routes(c, "node1")] == [1000]
    assert vip_on_lo(c.lab, c.topo.node("node1"))  # de-preferred keeps the address
    c.apiservers["node1"].start()
    w.wait(lambda h: h == BOTH, 15.0, "node1 announced plainly again", time.monotonic())
    ts = c.signal("node1")
    w.wait(lambda h: h == frozenset({N2}), 5.0, "node1 out of the ECMP route on the drain", ts)
    assert depreferred(N1, router.rib(VIP4)), router.rib(VIP4)
    assert c.wait_exit("node1", 5.0) == 0, c.log("node1")
    router.wait_rib(VIP4, lambda ps: N1 not in {p.next_hop for p in ps}, 3.0)
    assert "metric 65535 written to table 198" in c.log("node1"), c.log("node1")

    # SIGTERM: route and address gone, exit 0, and gone at the router.
    ex = c.watch_exit("node2")
    ts = c.signal("node2")
    code, te = ex.wait(5.0)
    assert code == 0, c.log("node2")
    tr = w.wait(lambda h: h == frozenset(), 10.0, "node2 gone after SIGTERM", ts)
    assert table_routes(c, "node2") == []
    assert not vip_on_lo(c.lab, c.topo.node("node2"))
    FIGURES["routing-table mode, BIRD on the node"] = (
        f"apiserver SIGKILL -> gone at the router {tg - tk:.3f} s; listening -> back "
        f"{tb - tl:.3f} s; SIGTERM -> exit {te - ts:.3f} s, gone at the router {tr - ts:.3f} s"
    )
    print(FIGURES["routing-table mode, BIRD on the node"])


def test_dual_stack_vips_in_the_table(make_cluster: MakeCluster) -> None:
    """A dual-stack VIP list: both routes in the table and at the router as plain paths (the
    IPv6 route's metric reads 1024, which the filter must not take for a de-preference), both
    gone with their addresses when the apiserver crashes."""
    dual = {"address": f"{VIP4_ADDR},{VIP6_ADDR}", "vip_subnet": "32,128"}
    c, _ = make_cluster(n_nodes=1, ipv6_sessions=True, extra_env={**TABLE_ENV, **dual})
    (node,) = c.topo.nodes
    router = c.topo.router
    assert router is not None
    node_daemon(c.topo, node, "bird", TABLE, ipv6=True)
    c.start_all()
    c.wait_nexthops({node.ip4}, 20.0, VIP4)
    c.wait_nexthops({node.ip6}, 10.0, VIP6)
    routes = table_routes(c, "node1") + table_routes(c, "node1", "-6")
    assert sorted(str(r["dst"]) for r in routes) == [VIP6_ADDR, VIP4_ADDR], routes
    for prefix, hop in ((VIP4, node.ip4), (VIP6, node.ip6)):
        paths = [(p.next_hop, p.as_path, p.local_pref) for p in router.rib(prefix)]
        assert paths == [(hop, (NODE_AS,), 100)], (prefix, paths)
    assert vip_on_lo(c.lab, node) and vip_on_lo(c.lab, node, VIP6_ADDR)

    c.apiservers["node1"].kill()
    c.wait_nexthops(set(), 5.0, VIP4)
    c.wait_nexthops(set(), 5.0, VIP6)
    assert table_routes(c, "node1") == table_routes(c, "node1", "-6") == []
    assert not vip_on_lo(c.lab, node) and not vip_on_lo(c.lab, node, VIP6_ADDR)


def test_frr_84_on_the_node_exports_the_gated_route(make_cluster: MakeCluster) -> None:
    c, w = make_cluster(n_nodes=2, extra_env=TABLE_ENV)
    for node in c.topo.nodes:
        node_daemon(c.topo, node, "frr", TABLE)
    t = time.monotonic()
    c.start_all()
    w.wait(lambda h: h == BOTH, 20.0, "both nodes' FRR export the VIP", t)
    tk = c.apiservers["node1"].kill()
    tg = w.wait(lambda h: h == frozenset({N2}), 15.0, "node1 withdrawn after the crash", tk)
    assert tg - tk < CRASH_BOUND, w.describe(tk)
    assert table_routes(c, "node1") == [] and not vip_on_lo(c.lab, c.topo.node("node1"))
    c.apiservers["node1"].start()
    tl = time.monotonic()
    tb = w.wait(lambda h: h == BOTH, 15.0, "node1 back after the restart", tl)
    ex = c.watch_exit("node2")
    ts = c.signal("node2")
    code, te = ex.wait(5.0)
    assert code == 0, c.log("node2")
    tr = w.wait(lambda h: h == frozenset({N1}), 10.0, "node2 gone after SIGTERM", ts)
    FIGURES["routing-table mode, FRR 8.4 on the node"] = (
        f"apiserver SIGKILL -> gone at the router {tg - tk:.3f} s; listening -> back "
        f"{tb - tl:.3f} s; SIGTERM -> exit {te - ts:.3f} s, gone at the router {tr - ts:.3f} s"
    )
    print(FIGURES["routing-table mode, FRR 8.4 on the node"])
