"""De-preferred paths against real routers in their default configuration.

Three nodes announce the VIP with vipgate's speaker (``python -m lab.speaker_driver``) to a router
that has no GRACEFUL_SHUTDOWN policy of its own (``graceful_shutdown=False``: no BIRD import
filter, no GoBGP import policy, no FRR route-map; FRR still applies RFC 8326 to eBGP paths by
itself, which cannot be turned off). A de-preferred path (``deprefer P on``: eBGP our AS
prepended 3 more times and 65535:0; iBGP LOCAL_PREF 0 and 65535:0) must leave the router's
multipath set while any plain path exists, stay in the RIB (not withdrawn), and be in the set
when every path is de-preferred: routers compare LOCAL_PREF and AS_PATH length before they
consider paths equal for multipath (RFC 4271 9.1.2.2; docs/routers.md). The stop drain's
GRACEFUL_SHUTDOWN path carries the same de-preference, so it leaves the set at once too.

The multipath set is, per router: BIRD's kernel route (``merge paths on``), FRR's best and
multipath-flagged paths, GoBGP's best path and the paths tied with it on LOCAL_PREF and AS_PATH
length. Run these alone for timing (2 cores shared).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from lab.netns import Lab
from lab.routers import Router
from lab.speaker import SpeakerProc
from lab.topology import NODE_AS, ROUTER_AS, ROUTER_IP4, VIP4, Topology, build_topology

pytestmark = pytest.mark.lab

CASES = [("bird", False), ("frr", False), ("gobgp", False), ("bird", True)]
IDS = ["bird-ebgp", "frr-ebgp", "gobgp-ebgp", "bird-ibgp"]


@contextmanager
def three_nodes(
    kind: str, ibgp: bool
) -> Iterator[tuple[Topology, Router, list[SpeakerProc], list[str]]]:
    asn = ROUTER_AS if ibgp else NODE_AS
    with Lab() as lab, ExitStack() as stack:
        topo = build_topology(
            lab,
            3,
            kind,
            client=False,
            neighbor_kwargs={"asn": asn},
            router_kwargs={"graceful_shutdown": False},
        )
        router = topo.router
        assert router is not None
        sps = []
        for n in topo.nodes:
            sp = SpeakerProc(lab, n, [f"{ROUTER_IP4}:{ROUTER_AS}::false"], local_as=asn,
                             announce=[VIP4])  # fmt: skip
            stack.callback(lab.stop, sp.proc, 3.0)
            sps.append(sp)
        hops = [n.ip4 for n in topo.nodes]
        router.wait_multipath(VIP4, set(hops), timeout=30)
        yield topo, router, sps, hops


def _expect_depreferred(router: Router, hop: str, ibgp: bool, kind: str) -> None:
    """The path from `hop` is still in the RIB, de-preferred as sent."""
    paths = {p.next_hop: p for p in router.rib(VIP4)}
    assert hop in paths, paths
    p = paths[hop]
    if ibgp:
        assert p.local_pref == 0, p
    else:
        assert len(p.as_path) == 4 and set(p.as_path) == {NODE_AS}, p
        if kind == "frr":  # FRR's own RFC 8326 handling of eBGP paths
            assert p.local_pref == 0, p


@pytest.mark.parametrize(("kind", "ibgp"), CASES, ids=IDS)
def test_depreferred_leaves_the_set_and_all_depreferred_share_it(kind: str, ibgp: bool) -> None:
    with three_nodes(kind, ibgp) as (_topo, router, (sp1, sp2, sp3), (n1, n2, n3)):
        # one node unhealthy: out of the multipath set, not withdrawn
        sp1.deprefer(VIP4, True)
        router.wait_multipath(VIP4, {n2, n3})
        assert {p.next_hop for p in router.rib(VIP4)} == {n1, n2, n3}
        _expect_depreferred(router, n1, ibgp, kind)
        # all three unhealthy: all three in the set (the VIP fails open)
        sp2.deprefer(VIP4, True)
        router.wait_multipath(VIP4, {n3})
        sp3.deprefer(VIP4, True)
        router.wait_multipath(VIP4, {n1, n2, n3})
        for hop in (n1, n2, n3):
            _expect_depreferred(router, hop, ibgp, kind)
        # one recovers: only that one
        sp2.deprefer(VIP4, False)
        router.wait_multipath(VIP4, {n2})
        # all recover
        sp1.deprefer(VIP4, False)
        sp3.deprefer(VIP4, False)
        router.wait_multipath(VIP4, {n1, n2, n3})
        for sp in (sp1, sp2, sp3):
            sp.close()


@pytest.mark.parametrize(("kind", "ibgp"), CASES, ids=IDS)
def test_stop_drain_leaves_the_set_at_once_without_router_policy(kind: str, ibgp: bool) -> None:
    with three_nodes(kind, ibgp) as (_topo, router, (sp1, sp2, sp3), (n1, n2, n3)):
        t0 = sp1.graceful(True)  # the stop drain's re-announcement
        router.wait_multipath(VIP4, {n2, n3}, timeout=5.0, interval=0.005)
        out = time.monotonic() - t0
        _expect_depreferred(router, n1, ibgp, kind)
        assert out < 1.0, f"{kind}: the draining path left the set after {out:.3f} s"
        sp1.close("planned stop")
        router.wait_rib(VIP4, lambda ps: {p.next_hop for p in ps} == {n2, n3})
        assert router.multipath_next_hops(VIP4) == {n2, n3}
        sp2.close()
        sp3.close()


@pytest.mark.parametrize(
    ("kind", "policy", "out"),
    [("frr", False, True), ("gobgp", False, False), ("gobgp", True, True)],
    ids=["frr-as-path-ignore", "gobgp-ignore-as-path-length", "gobgp-ignore-with-policy"],
)
def test_a_router_ignoring_as_path_length(kind: str, policy: bool, out: bool) -> None:
    """The trade-off of ``deprefer`` (docs/routers.md): a router that ignores AS_PATH length and
    does not honour 65535:0 keeps a de-preferred eBGP path -- GoBGP with
    ``ignore-as-path-length`` even picks it as its best path; its RFC 8326 import policy moves
    it out again. FRR 8.4 with ``bgp bestpath as-path ignore`` still moves it out: it gives
    65535:0 paths from eBGP peers local preference 0 by itself."""
    with Lab() as lab, ExitStack() as stack:
        topo = build_topology(
            lab,
            3,
            kind,
            client=False,
            router_kwargs={"graceful_shutdown": policy, "ignore_as_path_length": True},
        )
        router = topo.router
        assert router is not None
        for n in topo.nodes:
            sp = SpeakerProc(lab, n, [f"{ROUTER_IP4}:{ROUTER_AS}::false"], announce=[VIP4])
            stack.callback(lab.stop, sp.proc, 3.0)
            if n.name == "node1":
                sp1 = sp
        n1, n2, n3 = (n.ip4 for n in topo.nodes)
        router.wait_multipath(VIP4, {n1, n2, n3}, timeout=30)
        sp1.deprefer(VIP4, True)
        router.wait_rib(VIP4, lambda ps: any(len(p.as_path) == 4 for p in ps), timeout=5)
        if out:
            router.wait_multipath(VIP4, {n2, n3})
        else:
            time.sleep(1.0)  # give it every chance to move the path out
            assert n1 in router.multipath_next_hops(VIP4), router.rib(VIP4)
            assert router.multipath_next_hops(VIP4) == {n1, n2, n3}, router.rib(VIP4)
