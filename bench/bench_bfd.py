"""BFD benchmarks in the lab (needs root, bird2, frr, nftables): ``python -m bench.bench_bfd``.

1. Detection: two nodes peer with the router (BIRD, then FRR), hold time 9 s, keepalive 3 s;
   node1 with BFD 300 ms x 3 on both sides, node2 without BFD (the reference in the same run).
   Each trial makes both nodes silent at once (every packet dropped in their namespaces by
   nftables, nothing closed) and times, from just before the silence, until each node's next
   hop is gone from the router namespace's kernel route (:class:`lab.routemon.RouteWatch`:
   ``ip monitor`` events stamped with CLOCK_MONOTONIC). Then the nodes speak again and the
   route is waited for with both next hops. min / median / max over N trials.
2. Cost: one speaker process with 3 BGP peers (three BIRD routers) and BFD at 300 ms x 3 on
   each, against the same with BFD off: CPU seconds (utime + stime from /proc, so the kernel's
   work of sending each packet through the lab's veth pairs counts too) over a window of W
   seconds once everything is Up, scaled to a minute, RSS at the end, and the speaker's wake-ups
   per second (voluntary context switches of its threads, /proc/PID/task/*/status: each is a
   sleep in epoll_wait). References in the same run: the three BIRD processes, which run the
   other end of the same three sessions in C; and in the BFD-off lab, a Python asyncio loop that
   wakes up as often as a speaker that wakes once per packet would (3 sessions x (1 send + 1
   receive) per mean jittered interval of 262.5 ms = 22.9 per second) and does nothing: the
   event loop's own share of such a design.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from lab.netns import Lab
from lab.routemon import RouteWatch
from lab.routers import Neighbor, Router, make_router
from lab.silence import silence, unsilence
from lab.speaker import SpeakerProc
from lab.topology import (
    NODE_AS,
    ROUTER_AS,
    ROUTER_IP4,
    VIP4,
    Topology,
    add_peer_router,
    build_topology,
    peer_router_ip4,
)
from lab.wait import wait_for

BFD = (300, 300, 3)
HOLD = 9
KEEPALIVE = 3
FIELD7 = "true;300;300;3"


def stats(xs: list[float]) -> tuple[float, float, float]:
    return min(xs), statistics.median(xs), max(xs)


def peer(address: str, bfd: bool) -> str:
    return f"{address}:{ROUTER_AS}::false:::{FIELD7}" if bfd else f"{address}:{ROUTER_AS}::false"


def _router(topo: Topology, kind: str) -> Router:
    n1, n2 = topo.nodes
    return make_router(
        kind,
        topo.lab,
        topo.router_ns,
        asn=ROUTER_AS,
        router_id=ROUTER_IP4,
        neighbors=[
            Neighbor(n1.ip4, NODE_AS, hold_time=HOLD, keepalive=KEEPALIVE, bfd=BFD),
            Neighbor(n2.ip4, NODE_AS, hold_time=HOLD, keepalive=KEEPALIVE),
        ],
    )


def bench_detection(kind: str, trials: int, log: Callable[[str], None]) -> dict[str, list[float]]:
    """Seconds from silence to next hop gone: {"bfd": [...], "hold": [...]}."""
    out: dict[str, list[float]] = {"bfd": [], "hold": []}
    with Lab() as lab:
        topo = build_topology(lab, 2, None, client=False)
        n1, n2 = topo.nodes
        router = _router(topo, kind)
        router.start()
        both = frozenset({n1.ip4, n2.ip4})
        sps = [
            SpeakerProc(
                lab, n1, [peer(ROUTER_IP4, True)], announce=[VIP4], hold=HOLD, keepalive=KEEPALIVE
            ),
            SpeakerProc(
                lab, n2, [peer(ROUTER_IP4, False)], announce=[VIP4], hold=HOLD, keepalive=KEEPALIVE
            ),
        ]
        with RouteWatch(lab, topo.router_ns, VIP4) as mon:
            mon.wait(lambda h: h == both, 30.0, "both next hops")
            for i in range(trials):
                wait_for(
                    lambda: router.bfd_sessions().get(n1.ip4) == "Up",
                    30.0,
                    0.1,
                    what="BFD Up",
                )
                time.sleep(1.0 + (i % 4) * 0.7)  # vary the phase against the keepalives
                t0 = time.monotonic()
                silence(lab, n1.ns)
                silence(lab, n2.ns)
                t_bfd = mon.first(lambda h: n1.ip4 not in h, t0, HOLD + 5, "node1 gone")
                t_hold = mon.first(lambda h: n2.ip4 not in h, t0, HOLD + 5, "node2 gone")
                out["bfd"].append(t_bfd - t0)
                out["hold"].append(t_hold - t0)
                log(
                    f"  {kind} trial {i + 1}: BFD {t_bfd - t0:.3f} s, "
                    f"hold timer {t_hold - t0:.3f} s"
                )
                unsilence(lab, n1.ns)
                unsilence(lab, n2.ns)
                t1 = time.monotonic()
                mon.first(lambda h: h == both, t1, 60.0, "both back")
        for sp in sps:
            sp.close()
    return out


def _bfd_up(router: Router, address: str) -> Callable[[], bool]:
    return lambda: router.bfd_sessions().get(address) == "Up"


def _wakeups(pid: int) -> int:
    """Voluntary context switches of the process's threads: each is a sleep in epoll_wait (or a
    blocking call), so their rate is the event loop's wake-ups per second."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


WAKEUPS = 3 * 2 / (0.875 * 0.300)  # per second: 3 sessions, a send and a receive each
_FLOOR = """
import asyncio, sys, time
async def main():
    loop = asyncio.get_running_loop()
    def tick():
        loop.call_later(1 / float(sys.argv[1]), tick)
    tick()
    print("ready", flush=True)
    await asyncio.sleep(float(sys.argv[2]))
asyncio.run(main())
"""


def bench_cost(bfd: bool, window: float) -> tuple[float, int, float, float | None, float]:
    """(speaker CPU s per minute, speaker RSS kB, CPU s per minute of the three BIRDs, CPU s per
    minute of the idle asyncio loop at :data:`WAKEUPS` per second (BFD off only), speaker
    wake-ups per second) with one speaker and 3 peers, BFD on or off."""
    with Lab() as lab:
        nb = {"bfd": BFD} if bfd else {}
        topo = build_topology(lab, 1, "bird", client=False, neighbor_kwargs=nb)
        (n1,) = topo.nodes
        routers = [topo.router]
        for i in (1, 2):
            routers.append(add_peer_router(topo, "bird", i, neighbor_kwargs=nb))
        addrs = [ROUTER_IP4, peer_router_ip4(1), peer_router_ip4(2)]
        sp = SpeakerProc(lab, n1, [peer(a, bfd) for a in addrs], announce=[VIP4])
        for r in routers:
            assert r is not None
            r.wait_session(n1.ip4, timeout=30.0)
            if bfd:
                wait_for(_bfd_up(r, n1.ip4), 30.0, 0.1, what="BFD Up")
        time.sleep(3.0)  # past the Poll sequences and the first scrape-free seconds
        floor = None
        if not bfd:
            floor = lab.popen(
                n1.ns,
                [sys.executable, "-c", _FLOOR, str(WAKEUPS), str(window + 30)],
                stdout=subprocess.PIPE,
            )
            assert floor.stdout is not None
            floor.stdout.readline()
            time.sleep(1.0)
        pid = sp.proc.pid
        f0 = _cpu_seconds(floor.pid) if floor is not None else 0.0
        birds = [r.pid for r in routers if r is not None and r.pid is not None]
        b0 = sum(_cpu_seconds(b) for b in birds)
        w0, c0, t0 = _wakeups(pid), _cpu_seconds(pid), time.monotonic()
        time.sleep(window)
        w1, c1, t1 = _wakeups(pid), _cpu_seconds(pid), time.monotonic()
        b1 = sum(_cpu_seconds(b) for b in birds)
        f1 = _cpu_seconds(floor.pid) if floor is not None else 0.0
        if floor is not None:
            lab.stop(floor)
        sp.send("rss")
        rss = int(sp.wait_event("rss")["kb"])
        for r in routers:
            assert r is not None
            assert r.session_state(n1.ip4) == "Established", "a session dropped during the window"
        sp.close()
    scale = 60.0 / (t1 - t0)
    return (
        (c1 - c0) * scale,
        rss,
        (b1 - b0) * scale,
        (f1 - f0) * scale if floor else None,
        (w1 - w0) / (t1 - t0),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--window", type=float, default=60.0, help="CPU window, seconds")
    ap.add_argument("--routers", default="bird,frr")
    ap.add_argument("--skip-cost", action="store_true")
    ap.add_argument("--skip-detection", action="store_true")
    args = ap.parse_args(argv)

    def log(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    rows: list[str] = []
    for kind in [] if args.skip_detection else args.routers.split(","):
        res = bench_detection(kind, args.trials, log)
        for name, label in (("bfd", "BFD 300 ms x 3"), ("hold", f"BFD off, hold {HOLD} s")):
            lo, med, hi = stats(res[name])
            rows.append(
                f"| {kind} | {label} | {len(res[name])} | {lo:.3f} | {med:.3f} | {hi:.3f} |"
            )
    if rows:
        print("next hop gone at the router after the node goes silent (seconds)\n")
        print("| router | node | trials | min | median | max |")
        print("|---|---|---|---|---|---|")
        print("\n".join(rows))
    if not args.skip_cost:
        on_cpu, on_rss, on_bird, _, on_wake = bench_cost(True, args.window)
        off_cpu, off_rss, off_bird, floor, off_wake = bench_cost(False, args.window)
        print(f"\none speaker, 3 BGP peers, {args.window:g} s window (CPU s per minute)\n")
        print(
            "| BFD | vipgate CPU | vipgate RSS MB | vipgate wake-ups/s | 3 x BIRD CPU (reference) |"
        )
        print("|---|---|---|---|---|")
        print(f"| off | {off_cpu:.3f} | {off_rss / 1024:.1f} | {off_wake:.1f} | {off_bird:.3f} |")
        print(
            f"| 300 ms x 3 on each peer | {on_cpu:.3f} | {on_rss / 1024:.1f} | {on_wake:.1f} "
            f"| {on_bird:.3f} |"
        )
        print(
            f"| difference | {on_cpu - off_cpu:+.3f} | {(on_rss - off_rss) / 1024:+.1f} "
            f"| {on_wake - off_wake:+.1f} | {on_bird - off_bird:+.3f} |"
        )
        print(
            f"\nidle asyncio loop waking {WAKEUPS:.1f} times a second (the event loop's share): "
            f"{floor or 0.0:.3f} CPU s per minute"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
