"""vipgate's BGP speaker against real routers (BIRD 2, FRR 8, GoBGP 3) in lab namespaces.

The speaker runs as ``python -m lab.speaker_driver`` inside a node namespace, driven over
stdin; its log (stderr) goes to a file the tests read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from lab.netns import Lab
from lab.routers import Router
from lab.speaker import SpeakerProc
from lab.topology import (
    NODE_AS,
    ROUTER_AS,
    ROUTER_IP4,
    ROUTER_IP6,
    VIP4,
    VIP6,
    Node,
    build_topology,
    make_standard_router,
)
from lab.wait import wait_for

pytestmark = pytest.mark.lab


@contextmanager
def speaker(lab: Lab, node: Node, peers: Sequence[str], **kw: Any) -> Iterator[SpeakerProc]:
    sp = SpeakerProc(lab, node, peers, **kw)
    try:
        yield sp
    finally:
        if sp.proc.poll() is None:
            sp.lab.stop(sp.proc, 3.0)


def peer4(port: int = 179, asn: int = ROUTER_AS, password: str = "", multihop: bool = False) -> str:
    return f"{ROUTER_IP4}:{asn}:{password}:{str(multihop).lower()}:{port}"


def no_paths(paths: list[Any]) -> bool:
    return paths == []


# ------------------------------------------------------------------------------ per router


@pytest.mark.parametrize("kind", ["bird", "frr", "gobgp"])
def test_established_vip_in_rib_and_withdraw(kind: str) -> None:
    with Lab() as lab:
        topo = build_topology(lab, 1, kind, client=False)
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        with speaker(lab, n1, [peer4()], announce=[VIP4]) as sp:
            router.wait_session(n1.ip4)
            router.wait_rib(
                VIP4, lambda ps: [(p.next_hop, p.as_path) for p in ps] == [(n1.ip4, (NODE_AS,))]
            )
            if kind == "bird":  # BIRD exports to the kernel: the route is really there
                router.wait_kernel_nexthops(VIP4, {n1.ip4})
            sp.send(f"withdraw {VIP4}")
            router.wait_rib(VIP4, no_paths)
            assert router.session_state(n1.ip4) == "Established"
            sp.send(f"announce {VIP4}")
            router.wait_next_hops(VIP4, {n1.ip4})
            sp.close("maintenance window")
            router.wait_rib(VIP4, no_paths, timeout=3.0)
            assert router.session_state(n1.ip4) != "Established"
        assert "Established" in sp.log()


# ------------------------------------------------------------------------ one router each


def test_ipv6_vip_over_ipv6_session_bird() -> None:
    with Lab() as lab:
        topo = build_topology(lab, 1, "bird", ipv4_sessions=False, ipv6_sessions=True, client=False)
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        with speaker(lab, n1, [f"[{ROUTER_IP6}]:{ROUTER_AS}::false"], announce=[VIP6]) as sp:
            router.wait_session(n1.ip6)
            router.wait_rib(
                VIP6, lambda ps: [(p.next_hop, p.as_path) for p in ps] == [(n1.ip6, (NODE_AS,))]
            )
            router.wait_kernel_nexthops(VIP6, {n1.ip6})
            sp.send(f"withdraw {VIP6}")
            router.wait_rib(VIP6, no_paths)
            sp.close()


def test_ipv4_vip_over_ipv6_session_bird() -> None:
    # The reverse of an IPv6 VIP over IPv4 (docs/routers.md, next hops): the IPv4 route goes in
    # the NLRI field with an IPv4 NEXT_HOP from mpbgp_ipv4, and BIRD installs it.
    with Lab() as lab:
        topo = build_topology(lab, 1, "bird", ipv4_sessions=False, ipv6_sessions=True, client=False)
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        peer = f"[{ROUTER_IP6}]:{ROUTER_AS}::false::mpbgp_nexthop=fixed;mpbgp_ipv4={n1.ip4}"
        with speaker(lab, n1, [peer], announce=[VIP4]) as sp:
            router.wait_kernel_nexthops(VIP4, {n1.ip4})
            assert router.next_hops(VIP4) == {n1.ip4}
            assert "IPv4 unicast, IPv6 unicast" in sp.log()  # MP-BGP settings: both offered
            sp.close()


def test_md5_right_and_wrong_password_gobgp() -> None:
    secret = "lab-md5-Secret"
    with Lab() as lab:
        topo = build_topology(lab, 2, "gobgp", client=False, neighbor_kwargs={"password": secret})
        router = topo.router
        assert router is not None
        n1, n2 = topo.nodes
        with (
            speaker(lab, n1, [peer4(password=secret)], announce=[VIP4]) as good,
            speaker(
                lab, n2, [peer4(password="not-the-secret")], announce=[VIP4], connect_timeout=1.0
            ) as bad,
        ):
            router.wait_session(n1.ip4)
            router.wait_next_hops(VIP4, {n1.ip4})
            wait_for(
                lambda: "may mismatch" in bad.log(),
                20.0,
                0.2,
                what="MD5 hint in log",
                describe=lambda: bad.log()[-2000:],
            )
            assert router.session_state(n2.ip4) != "Established"
            assert router.next_hops(VIP4) == {n1.ip4}
            for s in (good, bad):
                assert secret not in s.log() and "not-the-secret" not in s.log()
            good.close()
            bad.close()


def test_ebgp_multihop_through_intermediate_router_bird() -> None:
    with Lab() as lab:
        topo = build_topology(lab, 0, "bird", n_multihop=2, client=False)
        router = topo.router
        assert router is not None
        far0, far1 = topo.nodes
        with (
            speaker(lab, far0, [peer4(multihop=True)], announce=[VIP4]) as sp,
            speaker(
                lab, far1, [peer4(multihop=False)], announce=[VIP4], connect_timeout=1.0
            ) as single,
        ):
            router.wait_session(far0.ip4)
            router.wait_rib(
                VIP4, lambda ps: [(p.next_hop, p.as_path) for p in ps] == [(far0.ip4, (NODE_AS,))]
            )
            # TTL 1 from a node two hops away dies at the intermediate router.
            time.sleep(3.0)
            assert router.session_state(far1.ip4) != "Established"
            assert "Established" not in single.log()
            sp.close()
            single.close()


def test_ibgp_bird() -> None:
    with Lab() as lab:
        topo = build_topology(lab, 1, "bird", client=False, neighbor_kwargs={"asn": ROUTER_AS})
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        with speaker(lab, n1, [peer4()], local_as=ROUTER_AS, announce=[VIP4]) as sp:
            router.wait_session(n1.ip4)
            router.wait_rib(
                VIP4,
                lambda ps: (
                    [(p.next_hop, p.as_path, p.local_pref) for p in ps] == [(n1.ip4, (), 100)]
                ),
            )
            assert "iBGP" in sp.log()
            sp.close()


def test_two_octet_peer_with_four_octet_local_as_bird() -> None:
    with Lab() as lab:
        big = 4200000001
        topo = build_topology(
            lab, 1, "bird", client=False, neighbor_kwargs={"asn": big, "as4": False}
        )
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        with speaker(lab, n1, [peer4()], local_as=big, announce=[VIP4]) as sp:
            router.wait_session(n1.ip4)
            router.wait_rib(
                VIP4, lambda ps: [(p.next_hop, p.as_path) for p in ps] == [(n1.ip4, (big,))]
            )
            assert "2-octet AS peer" in sp.log()
            sp.close()


def test_router_restart_session_back_within_backoff_frr() -> None:
    with Lab() as lab:
        topo = build_topology(lab, 1, "frr", client=False)
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        with speaker(lab, n1, [peer4()], announce=[VIP4]) as sp:
            router.wait_next_hops(VIP4, {n1.ip4})
            router.stop()
            time.sleep(1.0)
            router.start()
            # Down for ~1 s plus the restart: at most 3 failed attempts, so the next retry
            # comes within 0.5..4 s (bounded exponential backoff, first retry <= 1 s).
            elapsed = router.wait_next_hops(VIP4, {n1.ip4}, timeout=6.0)
            assert elapsed < 6.0
            sp.close()


def test_router_frozen_hold_timer_expires_bird() -> None:
    with Lab() as lab:
        topo = build_topology(lab, 1, "bird", client=False)
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        with speaker(lab, n1, [peer4()], announce=[VIP4], hold=3, keepalive=1) as sp:
            router.wait_next_hops(VIP4, {n1.ip4})
            router.freeze()
            try:
                t0 = time.monotonic()
                wait_for(
                    lambda: "hold timer expired" in sp.log(),
                    6.0,
                    0.05,
                    what="hold timer expiry",
                    describe=lambda: sp.log()[-2000:],
                )
                assert 2.0 < time.monotonic() - t0 < 5.0
                assert "Hold Timer Expired" in sp.log()
            finally:
                router.thaw()
            router.wait_session(n1.ip4, timeout=20.0)  # and it comes back
            sp.close()


def test_three_routers_at_once() -> None:
    with Lab() as lab:
        topo = build_topology(lab, 1, "bird", client=False)
        assert topo.router is not None
        frr = make_standard_router(topo, "frr", name="frr", listen_port=1179)
        gobgp = make_standard_router(topo, "gobgp", name="gobgp", listen_port=2179)
        frr.start()
        gobgp.start()
        routers: list[Router] = [topo.router, frr, gobgp]
        (n1,) = topo.nodes
        peers = [peer4(179), peer4(1179), peer4(2179)]
        with speaker(lab, n1, peers, announce=[VIP4]) as sp:
            for r in routers:
                r.wait_rib(
                    VIP4, lambda ps: [(p.next_hop, p.as_path) for p in ps] == [(n1.ip4, (NODE_AS,))]
                )
            sp.send("states")
            states = sp.wait_event("states")["states"]
            assert states == {
                ROUTER_IP4: "Established",
                f"{ROUTER_IP4}:1179": "Established",
                f"{ROUTER_IP4}:2179": "Established",
            }
            sp.send(f"withdraw {VIP4}")
            for r in routers:
                r.wait_rib(VIP4, no_paths)
            sp.close()


def test_speaker_sigkill_router_drops_vip_at_once_bird() -> None:
    with Lab() as lab:
        topo = build_topology(lab, 1, "bird", client=False)
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        with speaker(lab, n1, [peer4()], announce=[VIP4], hold=90, keepalive=30) as sp:
            router.wait_kernel_nexthops(VIP4, {n1.ip4})
            sp.kill()
            gone = router.wait_kernel_nexthops(VIP4, set(), timeout=3.0)
            assert gone < 2.0  # far below the 90 s hold time: the kernel closed the TCP session
