"""RFC 8326 GRACEFUL_SHUTDOWN against real routers configured as docs/routers.md says.

Two nodes announce the VIP with vipgate's speaker (``python -m lab.speaker_driver``); node1
re-announces it with 65535:0 (``graceful on``). Its next hop must leave the router's multipath
set while the path is still there (no withdrawal sent yet), come back with ``graceful off``, and
go with the withdrawal. BIRD: the kernel ECMP route (import filter + ``merge paths``); FRR: the
paths it flags best/multipath (eBGP: FRR's own handling; iBGP: the route-map, and vipgate's
LOCAL_PREF 0); GoBGP: its best path and the paths tied with it (global import policy, local
preference 1). The control: BIRD without the filter keeps the marked path's local preference
(no built-in RFC 8326 handling), and the path still leaves the ECMP route, by its AS_PATH length:
the drain's re-announcement carries our AS prepended (tests/interop/test_deprefer_routers.py
has every router without a policy).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from lab.netns import Lab
from lab.routers import Router
from lab.speaker import SpeakerProc
from lab.topology import NODE_AS, ROUTER_AS, ROUTER_IP4, VIP4, Topology, build_topology

pytestmark = pytest.mark.lab


@contextmanager
def two_nodes(
    kind: str, ibgp: bool = False
) -> Iterator[tuple[Topology, Router, list[SpeakerProc]]]:
    asn = ROUTER_AS if ibgp else NODE_AS
    with Lab() as lab, ExitStack() as stack:
        topo = build_topology(lab, 2, kind, client=False, neighbor_kwargs={"asn": asn})
        router = topo.router
        assert router is not None
        sps = []
        for n in topo.nodes:
            sp = SpeakerProc(lab, n, [f"{ROUTER_IP4}:{ROUTER_AS}::false"], local_as=asn,
                             announce=[VIP4])  # fmt: skip
            stack.callback(lab.stop, sp.proc, 3.0)
            sps.append(sp)
        yield topo, router, sps


@pytest.mark.parametrize(
    ("kind", "ibgp"),
    [("bird", False), ("frr", False), ("frr", True), ("gobgp", False)],
    ids=["bird", "frr-ebgp", "frr-ibgp", "gobgp"],
)
def test_graceful_shutdown_leaves_multipath_before_withdrawal(kind: str, ibgp: bool) -> None:
    with two_nodes(kind, ibgp) as (topo, router, (sp1, sp2)):
        n1, n2 = (n.ip4 for n in topo.nodes)
        router.wait_multipath(VIP4, {n1, n2}, timeout=20)
        sp1.graceful(True)
        router.wait_multipath(VIP4, {n2})
        # Not withdrawn: node1's path is still in the RIB, with local preference 0 (GoBGP: 1,
        # it ignores a policy setting 0).
        paths = {p.next_hop: p for p in router.rib(VIP4)}
        assert set(paths) == {n1, n2}, paths
        assert paths[n1].local_pref == (1 if kind == "gobgp" else 0), paths
        assert not paths[n1].best, paths
        assert "withdrawn" not in [e.get("ev") for e in list(sp1.events.queue)]
        sp1.graceful(False)
        router.wait_multipath(VIP4, {n1, n2})
        sp1.graceful(True)
        router.wait_multipath(VIP4, {n2})
        sp1.close("planned stop")
        router.wait_rib(VIP4, lambda ps: {p.next_hop for p in ps} == {n2})
        assert router.multipath_next_hops(VIP4) == {n2}
        sp2.close()


def test_bird_without_the_filter_moves_traffic_by_as_path_length() -> None:
    """The control: BIRD has no built-in RFC 8326 handling (the marked path keeps local
    preference 100); the prepended AS_PATH is what moves traffic without the filter."""
    with Lab() as lab, ExitStack() as stack:
        topo = build_topology(lab, 2, "bird", client=False,
                              router_kwargs={"graceful_shutdown": False})  # fmt: skip
        router = topo.router
        assert router is not None
        sps = []
        for n in topo.nodes:
            sp = SpeakerProc(lab, n, [f"{ROUTER_IP4}:{ROUTER_AS}::false"], announce=[VIP4])
            stack.callback(lab.stop, sp.proc, 3.0)
            sps.append(sp)
        both = {n.ip4 for n in topo.nodes}
        router.wait_multipath(VIP4, both, timeout=20)
        sps[0].graceful(True)
        n1, n2 = (n.ip4 for n in topo.nodes)
        router.wait_rib(
            VIP4, lambda ps: len(ps) == 2 and any(len(p.as_path) == 4 for p in ps), timeout=5
        )
        paths = {p.next_hop: p for p in router.rib(VIP4)}
        assert all(p.local_pref == 100 for p in paths.values()), paths
        assert paths[n1].as_path == (NODE_AS,) * 4 and paths[n2].as_path == (NODE_AS,), paths
        router.wait_multipath(VIP4, {n2})
