"""vipgate's BFD against BIRD 2 and FRR 8.4 (bfdd) in lab namespaces: IPv4 and IPv6, single hop
(node1, on the router's segment) and multihop (far0, behind the intermediate router).

Sessions come Up and the route is there; a node made silent (every packet dropped in its
namespace by nftables, nothing closed) loses its next hops at the router within BFD's detection
time (300 ms x 3) -- asserted as "under 3 s" while the BGP hold time is 9 s, so only BFD can
explain it; made audible again, BFD comes Up, BGP follows and the next hops come back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from lab.netns import Lab
from lab.routers import Neighbor, Router, make_router
from lab.silence import silence, unsilence
from lab.speaker import SpeakerProc
from lab.topology import (
    FAR_NET4,
    FAR_NET6,
    MID_IP4,
    MID_IP6,
    NODE_AS,
    ROUTER_AS,
    ROUTER_IP4,
    ROUTER_IP6,
    VIP4,
    VIP6,
    Node,
    Topology,
    build_topology,
)
from lab.wait import wait_for

pytestmark = pytest.mark.lab

BFD = (300, 300, 3)  # rx ms, tx ms, multiplier: detection time 900 ms on both sides
HOLD = 9
BOUND = 3.0  # seconds: generous for a 0.9 s detection time, a third of the hold time


def bfd_router(topo: Topology, kind: str) -> Router:
    """The router peering over IPv4 and IPv6 with every node, BFD on each neighbor."""
    neighbors: list[Neighbor] = []
    for n in topo.nodes:
        for addr, local in ((n.ip4, ROUTER_IP4), (n.ip6, ROUTER_IP6)):
            mh = {"multihop": 2, "local_address": local} if n.multihop else {}
            neighbors.append(Neighbor(addr, NODE_AS, bfd=BFD, hold_time=HOLD, **mh))  # type: ignore[arg-type]
    kw = {"static_routes": [(FAR_NET4, MID_IP4), (FAR_NET6, MID_IP6)]} if kind == "bird" else {}
    return make_router(
        kind,
        topo.lab,
        topo.router_ns,
        asn=ROUTER_AS,
        router_id=ROUTER_IP4,
        neighbors=neighbors,
        **kw,
    )


def peers(node: Node) -> list[str]:
    field7 = ";".join(["true", *map(str, BFD)])
    mh = str(node.multihop).lower()
    return [
        f"{ROUTER_IP4}:{ROUTER_AS}::{mh}:::{field7}",
        f"[{ROUTER_IP6}]:{ROUTER_AS}::{mh}:::{field7}",
    ]


@contextmanager
def speakers(lab: Lab, nodes: list[Node]) -> Iterator[dict[str, SpeakerProc]]:
    with ExitStack() as stack:
        out: dict[str, SpeakerProc] = {}
        for n in nodes:
            sp = SpeakerProc(lab, n, peers(n), announce=[VIP4, VIP6], hold=HOLD, keepalive=3)
            stack.callback(lab.stop, sp.proc, 3.0)
            out[n.name] = sp
        yield out


@pytest.mark.parametrize("kind", ["bird", "frr"])
def test_bfd_route_follows_silent_node(kind: str) -> None:
    with Lab() as lab:
        topo = build_topology(lab, 1, None, n_multihop=1, client=False)
        node1, far0 = topo.nodes
        router = bfd_router(topo, kind)
        router.start()
        all_addrs = {node1.ip4, node1.ip6, far0.ip4, far0.ip6}
        with speakers(lab, [node1, far0]) as sps:
            wait_for(
                lambda: router.bfd_sessions() == dict.fromkeys(all_addrs, "Up"),
                20.0,
                0.1,
                what=f"{kind}: 4 BFD sessions Up",
                describe=lambda: f"{router.bfd_sessions()}\n{router.describe()}",
            )
            router.wait_next_hops(VIP4, {node1.ip4, far0.ip4}, timeout=20.0)
            router.wait_next_hops(VIP6, {node1.ip6, far0.ip6}, timeout=10.0)

            # single hop, then multihop: silent node -> its next hops gone within the bound
            silence(lab, node1.ns)
            t4 = router.wait_next_hops(VIP4, {far0.ip4}, timeout=HOLD + 2)
            t6 = router.wait_next_hops(VIP6, {far0.ip6}, timeout=HOLD + 2)
            assert t4 < BOUND and t4 + t6 < BOUND, (t4, t6)
            silence(lab, far0.ns)
            t = router.wait_rib(VIP4, lambda ps: ps == [], timeout=HOLD + 2)
            t += router.wait_rib(VIP6, lambda ps: ps == [], timeout=HOLD + 2)
            assert t < BOUND, t
            # our side saw it too: BFD Down by detection time, BGP torn down with it
            for sp in sps.values():
                wait_for(
                    lambda s=sp: "control_detection_time_expired" in s.log(),  # type: ignore[misc]
                    5.0,
                    0.1,
                    what="vipgate's BFD Down",
                )
                assert "session torn down" in sp.log()

            # audible again: BFD Up, then BGP, then the route
            unsilence(lab, node1.ns)
            unsilence(lab, far0.ns)
            router.wait_next_hops(VIP4, {node1.ip4, far0.ip4}, timeout=30.0)
            router.wait_next_hops(VIP6, {node1.ip6, far0.ip6}, timeout=10.0)
            assert router.bfd_sessions() == dict.fromkeys(all_addrs, "Up")
            for sp in sps.values():
                assert "BFD Up: starting the session" in sp.log()
                sp.close()
