"""An IPv6 VIP over IPv4 sessions to BIRD: kube-vip's MP-BGP next hops (docs/routers.md,
"BGP sessions").

The route must carry a next hop of its own family that the router can use: with
``mpbgp_nexthop=fixed`` the configured ``mpbgp_ipv6``, with ``auto_sourceif`` the global IPv6
address of ``bgp_sourceif``, with ``auto_sourceip`` that of the interface holding
``bgp_sourceip``.  Without one vipgate refuses to start (exit 2) and adds no VIP.
"""

from __future__ import annotations

import pytest

from lab.cluster import Cluster
from lab.netns import Lab
from lab.topology import ROUTER_AS, ROUTER_IP4, VIP6, VIP6_ADDR, Node

pytestmark = pytest.mark.lab

PEER = f"{ROUTER_IP4}:{ROUTER_AS}::false"


def vip6_on_lo(lab: Lab, node: Node) -> bool:
    out = lab.ip_json(node.ns, "-6", "addr", "show", "dev", "lo")
    return any(a.get("local") == VIP6_ADDR for link in out for a in link.get("addr_info", []))


def test_ipv6_vip_over_ipv4_sessions_bird() -> None:
    with Lab() as lab:
        env = {"address": VIP6_ADDR, "control_plane_health_check_address": ""}
        c = Cluster.create(lab, n_nodes=3, extra_env=env)
        n1, n2, n3 = c.topo.nodes
        c.start("node1", {"bgp_peers": f"{PEER}::mpbgp_nexthop=fixed;mpbgp_ipv6=[{n1.ip6}]"})
        c.start(
            "node2", {"bgp_peers": f"{PEER}::mpbgp_nexthop=auto_sourceif", "bgp_sourceif": "eth0"}
        )
        # Without an MP-BGP setting: refused by the configuration (exit 2), nothing touched.
        c.start("node3")
        assert c.wait_exit("node3") == 2, c.log("node3")
        assert "mpbgp" in c.log("node3") and not vip6_on_lo(lab, n3)
        # auto_sourceif on an interface without a global IPv6 address: refused at start, before
        # the VIP goes on (the host facts are looked up first).
        lab.run(n3.ns, ["ip", "-6", "addr", "del", f"{n3.ip6}/64", "dev", "eth0"])
        c.start(
            "node3", {"bgp_peers": f"{PEER}::mpbgp_nexthop=auto_sourceif", "bgp_sourceif": "eth0"}
        )
        assert c.wait_exit("node3") == 2, c.log("node3")
        assert "bgp_sourceif=eth0 has no global IPv6 address" in c.log("node3")
        assert not vip6_on_lo(lab, n3)
        # auto_sourceip: the IPv6 address of the interface that holds bgp_sourceip.
        lab.run(n3.ns, ["ip", "-6", "addr", "add", f"{n3.ip6}/64", "dev", "eth0", "nodad"])
        auto_ip = {"bgp_peers": f"{PEER}::mpbgp_nexthop=auto_sourceip", "bgp_sourceip": n3.ip4}
        c.start("node3", auto_ip)
        # BIRD installs the route with the three IPv6 next hops (its kernel route: ECMP).
        c.wait_nexthops({n1.ip6, n2.ip6, n3.ip6}, prefix=VIP6, timeout=20)
        router = c.topo.router
        assert router is not None
        assert router.next_hops(VIP6) == {n1.ip6, n2.ip6, n3.ip6}
        assert "mismatched address family" not in router.log()
        for name in ("node1", "node2", "node3"):
            assert c.stop(name) == 0, c.log(name)
        c.wait_nexthops(set(), prefix=VIP6, timeout=5)
