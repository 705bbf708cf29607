"""BGP speaker benchmarks in the lab (needs root, bird2, gobgpd): ``python -m bench.bench_bgp``.

1. Withdraw latency: ``withdraw()`` -> prefix gone from the BIRD router's kernel table (ECMP
   merge paths), N trials, min/median/max; the same with gobgpd + ``gobgp global rib del`` as
   the speaker; ratio of the medians.  Deletions are seen through ``ip monitor route`` in the
   router namespace (:class:`lab.routemon.RouteWatch`: event driven, timestamped with
   CLOCK_MONOTONIC, which the speaker process shares).
2. Scale: 10,000 host routes over one session -> time until BIRD holds them all, speaker RSS.
   The lab may only use documentation ranges, which hold 768 IPv4 /32s, so this uses 10,000
   IPv6 /128s from 2001:db8:1000::/64 over an IPv6 session (same UPDATE packing, 17 octets per
   prefix instead of 5: a harder case).
3. 32 BIRD peers (one protocol each) x 1 prefix: time until all are Established and BIRD has
   the 32 paths, speaker RSS.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from lab.netns import Lab
from lab.routemon import RouteWatch, exactly
from lab.routers import BirdRouter, GobgpRouter, Neighbor
from lab.speaker import SpeakerProc
from lab.topology import NODE_AS, ROUTER_AS, ROUTER_IP4, ROUTER_IP6, VIP4, build_topology
from lab.wait import wait_for


def stats(xs: list[float]) -> tuple[float, float, float]:
    return min(xs), statistics.median(xs), max(xs)


def ms(x: float) -> str:
    return f"{x * 1000:.2f}"


def bench_withdraw(trials: int) -> dict[str, tuple[float, float, float]]:
    out: dict[str, tuple[float, float, float]] = {}
    with Lab() as lab:
        topo = build_topology(lab, 1, "bird", client=False)
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        mon = RouteWatch(lab, topo.router_ns, VIP4).start()
        gone = exactly(set())
        up = exactly({n1.ip4})
        try:
            # vipgate
            sp = SpeakerProc(lab, n1, [f"{ROUTER_IP4}:{ROUTER_AS}::false"], announce=[VIP4])
            lat: list[float] = []
            mon.wait(up, 15.0, "route up")
            for _ in range(trials):
                sp.send(f"withdraw {VIP4}")
                t0 = float(sp.wait_event("withdrawn")["t0"])
                lat.append(mon.first(gone, t0, 5.0, "kernel route deleted") - t0)
                sp.send(f"announce {VIP4}")
                mon.wait(up, 15.0, "route up")
            out["vipgate"] = stats(lat)
            sp.close()
            router.wait_kernel_nexthops(VIP4, set())
            # GoBGP as the speaker (reference)
            gobgp = GobgpRouter(
                lab,
                n1.ns,
                asn=NODE_AS,
                router_id=n1.ip4,
                neighbors=[Neighbor(ROUTER_IP4, ROUTER_AS)],
                name="gobgp-speaker",
                api_port=50052,
            )
            gobgp.start()
            try:
                lat = []
                gobgp.announce(VIP4, n1.ip4)
                mon.wait(up, 20.0, "route up")
                for _ in range(trials):
                    t0 = time.monotonic()
                    gobgp.withdraw(VIP4)
                    lat.append(mon.first(gone, t0, 5.0, "kernel route deleted") - t0)
                    gobgp.announce(VIP4, n1.ip4)
                    mon.wait(up, 15.0, "route up")
                out["gobgp"] = stats(lat)
            finally:
                gobgp.stop()
        finally:
            mon.close()
    return out


def bird_count(router: BirdRouter, table: str) -> int:
    txt = router.birdc("show", "route", "table", table, "count")
    for line in txt.splitlines():
        parts = line.split()
        if "of" in parts and parts[0].isdigit():
            return int(parts[0])
    return 0


def bench_scale(count: int) -> tuple[float, float, int]:
    with Lab() as lab:
        topo = build_topology(lab, 1, "bird", client=False, ipv4_sessions=False, ipv6_sessions=True)
        router = topo.router
        assert isinstance(router, BirdRouter)
        (n1,) = topo.nodes
        t_spawn = time.monotonic()
        sp = SpeakerProc(
            lab,
            n1,
            [f"[{ROUTER_IP6}]:{ROUTER_AS}::false"],
            announce_range=f"2001:db8:1000::+{count}",
            extra=["--log-level", "INFO"],
        )
        est = sp.wait_event("state", 10.0)
        while est.get("state") != "Established":
            est = sp.wait_event("state", 10.0)
        t_est = float(est["t"])
        wait_for(lambda: bird_count(router, "master6") >= count, 30.0, 0.02, what="all routes")
        t_all = time.monotonic()
        sp.send("rss")
        rss = int(sp.wait_event("rss")["kb"])
        sp.close()
        return t_all - t_spawn, t_all - t_est, rss


def bench_many_peers(n: int) -> tuple[float, int]:
    with Lab() as lab:
        topo = build_topology(lab, 1, None, client=False)
        (n1,) = topo.nodes
        # BIRD tells incoming sessions apart by the remote address only, so each session
        # comes from its own node address: router side 192.0.2.200+i, node side 192.0.2.150+i
        # (a /32 route with a source hint per router address).
        locals_ = [f"192.0.2.{200 + i}" for i in range(n)]
        remotes = [f"192.0.2.{150 + i}" for i in range(n)]
        for a, b in zip(locals_, remotes, strict=True):
            lab.addr(topo.router_ns, "br0", f"{a}/24")
            lab.addr(n1.ns, "eth0", f"{b}/24")
            lab.route(n1.ns, f"{a}/32", "dev", "eth0", "src", b)
        router = BirdRouter(
            lab,
            topo.router_ns,
            asn=ROUTER_AS,
            router_id=ROUTER_IP4,
            neighbors=[
                Neighbor(b, NODE_AS, local_address=a) for a, b in zip(locals_, remotes, strict=True)
            ],
            kernel_export=False,
        )
        router.start()
        t_spawn = time.monotonic()
        sp = SpeakerProc(
            lab,
            n1,
            [f"{a}:{ROUTER_AS}::false" for a in locals_],
            announce=[VIP4],
            extra=["--log-level", "WARNING"],
        )
        wait_for(lambda: len(router.rib(VIP4)) == n, 30.0, 0.02, what=f"{n} paths")
        t_all = time.monotonic()
        states = router.sessions()
        assert all(s == "Established" for s in states.values()), states
        sp.send("rss")
        rss = int(sp.wait_event("rss")["kb"])
        sp.close()
        return t_all - t_spawn, rss


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--prefixes", type=int, default=10000)
    ap.add_argument("--peers", type=int, default=32)
    args = ap.parse_args()
    w = bench_withdraw(args.trials)
    s_spawn, s_est, s_rss = bench_scale(args.prefixes)
    p_spawn, p_rss = bench_many_peers(args.peers)
    v, g = w["vipgate"], w["gobgp"]
    print()
    print(f"{'benchmark':58} {'min':>9} {'median':>9} {'max':>9}")
    print(
        f"{'withdraw -> gone from BIRD kernel table, vipgate (ms)':58} "
        f"{ms(v[0]):>9} {ms(v[1]):>9} {ms(v[2]):>9}"
    )
    print(
        f"{'withdraw -> gone, gobgpd + gobgp global rib del (ms)':58} "
        f"{ms(g[0]):>9} {ms(g[1]):>9} {ms(g[2]):>9}"
    )
    print(f"{'median ratio gobgp / vipgate':58} {g[1] / v[1]:>29.1f}x")
    print(
        f"{args.prefixes} /128s over one session: BIRD holds all, from spawn: {s_spawn:.3f} s,"
        f" from Established: {s_est:.3f} s; speaker RSS {s_rss / 1024:.1f} MB"
    )
    print(
        f"{args.peers} BIRD peers x 1 prefix: all Established + announced {p_spawn:.3f} s "
        f"from process spawn; speaker RSS {p_rss / 1024:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
