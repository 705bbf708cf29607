"""A dual-stack control-plane VIP, as kube-vip runs it (docs/configuration.md, "Dual stack"):
``address=203.0.113.100,2001:db8:100::100`` with ``vip_subnet=32,128``, against BIRD and FRR.

node1 peers with the router over an IPv4 and an IPv6 session (each carries the VIP of its own
family); node2 over one IPv4 session with ``mpbgp_nexthop=fixed`` and its IPv6 address as
``mpbgp_ipv6`` (the IPv6 route rides the IPv4 session, RFC 4760). At kube-vip's default cadence
(period 5 s, timeout 3 s, threshold 3) with vipgate's 0.2 s fast period:

- both routes are in the router's RIB with both nodes' next hops, both addresses on each node's
  lo, one metrics series per prefix;
- node1's apiserver is killed: both of node1's next hops leave within a second (one gate, one
  health check for the pair), and both addresses leave node1's lo with the routes;
- node2 gets SIGTERM: both routes are re-announced with GRACEFUL_SHUTDOWN (local preference 0 on
  the router), then withdrawn; vipgate exits 0 and both addresses are off lo.
"""

from __future__ import annotations

import functools
import time

import pytest

from lab.cluster import Cluster
from lab.netns import Lab
from lab.routers import RibPath
from lab.topology import ROUTER_AS, ROUTER_IP4, ROUTER_IP6, VIP4, VIP4_ADDR, VIP6, VIP6_ADDR, Node
from lab.wait import wait_for
from tests.e2e.conftest import FIGURES

pytestmark = pytest.mark.lab

PERIOD, TIMEOUT, THRESHOLD = 5.0, 3.0, 3  # kube-vip's defaults
DRAIN = 1.5  # bgp_graceful_shutdown_seconds, short for the test
KILL_BOUND = 1.0  # s: both next hops gone after the apiserver's crash


def drained(hop: str, paths: list[RibPath]) -> bool:
    """The path via `hop` is there with GRACEFUL_SHUTDOWN's local preference 0 (RFC 8326)."""
    return any(p.next_hop == hop and p.local_pref == 0 for p in paths)


def on_lo(lab: Lab, node: Node) -> set[str]:
    """The VIPs among the addresses on node's lo."""
    out = lab.ip_json(node.ns, "addr", "show", "dev", "lo")
    found = {a.get("local") for link in out for a in link.get("addr_info", [])}
    return found & {VIP4_ADDR, VIP6_ADDR}


@pytest.mark.parametrize("kind", ["bird", "frr"])
def test_dual_stack_vip(kind: str, lab: Lab) -> None:
    c = Cluster.create(
        lab, 2, router_kind=kind, ipv6_sessions=True, metrics=True, graceful_shutdown=DRAIN,
        period=PERIOD, timeout=TIMEOUT, threshold=THRESHOLD,
        extra_env={"address": f"{VIP4_ADDR}, {VIP6_ADDR}", "vip_subnet": "32,128"},
    )  # fmt: skip
    router = c.topo.router
    assert router is not None
    n1, n2 = c.topo.nodes
    v4 = f"{ROUTER_IP4}:{ROUTER_AS}::false"
    c.start("node1", {"bgp_peers": f"{v4},[{ROUTER_IP6}]:{ROUTER_AS}::false"})
    c.start("node2", {"bgp_peers": f"{v4}::mpbgp_nexthop=fixed;mpbgp_ipv6=[{n2.ip6}]"})
    try:
        router.wait_multipath(VIP4, {n1.ip4, n2.ip4}, timeout=30.0)
        router.wait_multipath(VIP6, {n1.ip6, n2.ip6}, timeout=10.0)
        if kind == "bird":  # BIRD exports to the kernel (FRR's lab bgpd runs without zebra)
            c.wait_nexthops({n1.ip4, n2.ip4}, prefix=VIP4, timeout=5.0)
            c.wait_nexthops({n1.ip6, n2.ip6}, prefix=VIP6, timeout=5.0)
        assert on_lo(lab, n1) == on_lo(lab, n2) == {VIP4_ADDR, VIP6_ADDR}
        for prefix in (VIP4, VIP6):
            assert c.metric("node2", "vipgate_prefix_announced", prefix=prefix) == 1.0
        assert "NOT announced" not in c.log("node1") + c.log("node2")

        # One health check gates both: the crash takes both of node1's next hops away.
        time.sleep(0.3)  # the first checks settle into their keep-alive connections
        tk = c.apiservers["node1"].kill()
        wait_for(
            lambda: router.next_hops(VIP4) == {n2.ip4} and router.next_hops(VIP6) == {n2.ip6},
            5.0, 0.005, what="node1's IPv4 and IPv6 next hops gone",
            describe=lambda: f"{router.rib(VIP4)} {router.rib(VIP6)}\n{c.log('node1')[-2000:]}",
        )  # fmt: skip
        gone = time.monotonic() - tk
        assert gone < KILL_BOUND, f"{gone:.3f} s"
        # Both addresses follow the withdrawal off the node (docs/configuration.md, "Unhealthy:
        # withdraw or de-prefer"): node1's own clients of either VIP go through the router.
        wait_for(lambda: on_lo(lab, n1) == set(), 1.0, 0.01, what="both VIPs off node1's lo")

        # SIGTERM: both drained (GRACEFUL_SHUTDOWN: local preference 0), then both withdrawn.
        ew = c.watch_exit("node2")
        c.signal("node2")
        for prefix, hop in ((VIP4, n2.ip4), (VIP6, n2.ip6)):
            router.wait_rib(prefix, functools.partial(drained, hop), timeout=DRAIN)
        for prefix in (VIP4, VIP6):
            router.wait_rib(prefix, lambda ps: not ps, timeout=DRAIN + 3.0)
        code, _ = ew.wait(DRAIN + 5.0)
        assert code == 0, c.log("node2")
        assert on_lo(lab, n2) == set()
        assert c.stop("node1") == 0, c.log("node1")
        assert on_lo(lab, n1) == set()
    finally:
        for name in list(c.vipgates):
            c.stop(name)
    FIGURES[f"dual-stack VIP ({kind}): apiserver killed -> both next hops gone"] = (
        f"{gone * 1000:.0f} ms"
    )
