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
- SIGTERM: route and address removed, exit 0, gone at the router.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from lab.cluster import Cluster, vip_on_lo
from lab.routers import Neighbor, Router, make_router
from lab.topology import NODE_AS, ROUTER_AS, ROUTER_IP4, VIP4_ADDR
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


def node_bird(c: Cluster, name: str) -> Router:
    node = c.topo.node(name)
    r = make_router(
        "bird",
        c.lab,
        node.ns,
        asn=NODE_AS,
        router_id=node.ip4,
        neighbors=[Neighbor(ROUTER_IP4, ROUTER_AS)],
        name=f"bird-{name}",
        kernel_export=False,
        learn_table=TABLE,
        graceful_shutdown=False,
    )
    r.start()
    return r


def table_routes(c: Cluster, name: str) -> list[dict[str, object]]:
    out = c.lab.run(
        c.topo.node(name).ns, ["ip", "-j", "route", "show", "table", str(TABLE)], check=False
    ).stdout
    return list(json.loads(out or "[]"))


def test_bird_on_the_node_exports_the_gated_route(make_cluster: MakeCluster) -> None:
    c, w = make_cluster(n_nodes=2, extra_env=TABLE_ENV)
    for name in ("node1", "node2"):
        node_bird(c, name)
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
    t_restart = time.monotonic()
    c.start("node1")
    wait_for(lambda: c.log("node1").count("announcing the VIP") >= 3, 10.0, what="announced")
    log = c.log("node1")
    assert "found at start: adopted" in log, log
    assert log.count("written to table") == 2, log  # the first run's two, none by the second
    assert not w.violations(lambda h: h == BOTH, t_restart, time.monotonic()), w.describe(tk)

    # SIGTERM: route and address gone, exit 0, and gone at the router.
    ex = c.watch_exit("node2")
    ts = c.signal("node2")
    code, te = ex.wait(5.0)
    assert code == 0, c.log("node2")
    tr = w.wait(lambda h: h == frozenset({N1}), 10.0, "node2 gone after SIGTERM", ts)
    assert table_routes(c, "node2") == []
    assert not vip_on_lo(c.lab, c.topo.node("node2"))
    FIGURES["routing-table mode, BIRD on the node"] = (
        f"apiserver SIGKILL -> gone at the router {tg - tk:.3f} s; listening -> back "
        f"{tb - tl:.3f} s; SIGTERM -> exit {te - ts:.3f} s, gone at the router {tr - ts:.3f} s"
    )
    print(FIGURES["routing-table mode, BIRD on the node"])


def node_frr(c: Cluster, name: str) -> Router:
    """FRR 8.4 on the node: zebra imports table 198 (IPv4), bgpd redistributes it and the VIP's
    connected route (FRR 8.4 selects the connected route while the address is on lo)."""
    node = c.topo.node(name)
    r = make_router(
        "frr",
        c.lab,
        node.ns,
        asn=NODE_AS,
        router_id=node.ip4,
        neighbors=[Neighbor(ROUTER_IP4, ROUTER_AS, families=(4,))],
        name=f"frr-{name}",
        import_table=TABLE,
        export_connected=(f"{VIP4_ADDR}/32",),
        graceful_shutdown=False,
    )
    r.start()
    return r


def test_frr_84_on_the_node_exports_the_gated_route(make_cluster: MakeCluster) -> None:
    c, w = make_cluster(n_nodes=2, extra_env=TABLE_ENV)
    for name in ("node1", "node2"):
        node_frr(c, name)
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
