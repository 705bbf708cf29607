"""The node's link down past the hold time (docs/routers.md, router restarts): link up -> the
VIP back in the router's table.

Run as root from the repository root::

    .venv/bin/python -m bench.bench_link_down                    # 5 trials per router
    .venv/bin/python -m bench.bench_link_down --routers gobgp --idle-hold 1

One node running vipgate's speaker (``lab.speaker_driver``, hold 6 s, keepalive 2 s) and one
router (hold 6 s) with the lab's recovery timers: BIRD ``error wait time 1, 10`` (BIRD's own
60, 300), FRR ``timers connect 1``, GoBGP ``connect-retry 1`` and its
``idle-hold-time-after-reset`` (30 s unless ``--idle-hold``). Each trial: the node's ``eth0``
down (``ip link set``), the VIP gone at the router (its hold timer, or its interface), the
link up again 12 s after it went down; measured from the carrier back (operstate UP, polled
every 10 ms) to the VIP in the router's table with the node's next hop (polled every 20 ms,
dated at the end of the query that saw it). vipgate dials at once when netlink reports the
carrier (``vipgate.bgp.netmon``); what is left is the router's own floor after a hold-timer
expiry: BIRD's error wait, GoBGP's idle hold.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass

from bench.bench_router_restart import mmm
from bench.report import write_json
from lab.netns import Lab
from lab.routers import Router
from lab.speaker import SpeakerProc
from lab.topology import ROUTER_AS, ROUTER_IP4, VIP4, build_topology

DOWN = 12.0  # seconds, past the 6 s hold time


@dataclass
class Trial:
    router: str
    gone: float  # seconds from link down to the VIP gone at the router
    back: float  # seconds from the carrier back to the VIP back


def wait_hops(router: Router, hops: set[str], timeout: float) -> float:
    """When the router's next hops for VIP4 are exactly `hops` (time.monotonic()); a query
    that fails meanwhile (the router starting, the link flapping) is asked again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if router.multipath_next_hops(VIP4) == hops:
                return time.monotonic()
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"next hops not {hops}: {router.describe()}")
        time.sleep(0.02)


def run_router(kind: str, trials: int, idle_hold: int | None) -> list[Trial]:
    out: list[Trial] = []
    nb: dict[str, object] = {"hold_time": 6}
    if kind == "gobgp" and idle_hold is not None:
        nb["idle_hold"] = idle_hold
    with Lab() as lab:
        topo = build_topology(lab, 1, kind, client=False, neighbor_kwargs=nb)
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        sp = SpeakerProc(
            lab, n1, [f"{ROUTER_IP4}:{ROUTER_AS}::false"], announce=[VIP4], hold=6, keepalive=2
        )
        try:
            wait_hops(router, {n1.ip4}, 30.0)
            for _ in range(trials):
                t_down = time.monotonic()
                lab.run(n1.ns, ["ip", "link", "set", "eth0", "down"])
                gone = wait_hops(router, set(), 20.0) - t_down
                time.sleep(max(0.0, DOWN - (time.monotonic() - t_down)))
                lab.run(n1.ns, ["ip", "link", "set", "eth0", "up"])
                lab.wait_carrier([(n1.ns, "eth0")])
                t_up = time.monotonic()
                tr = Trial(kind, gone, wait_hops(router, {n1.ip4}, 120.0) - t_up)
                out.append(tr)
                print(json.dumps(asdict(tr)), flush=True)
                time.sleep(2.0)  # the session settled before the next trial
        finally:
            sp.close()
    return out


def table(results: list[Trial], idle_hold: int | None) -> str:
    rows = [
        "| router | trials | VIP gone after link down | VIP back after carrier up "
        "(min / median / max) |",
        "|---|---|---|---|",
    ]
    for kind in dict.fromkeys(t.router for t in results):
        ts = [t for t in results if t.router == kind]
        name = f"{kind} (idle hold {idle_hold} s)" if kind == "gobgp" and idle_hold else kind
        gone, back = mmm([t.gone for t in ts]), mmm([t.back for t in ts])
        rows.append(f"| {name} | {len(ts)} | {gone} s | {back} s |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--routers", default="bird,frr,gobgp")
    ap.add_argument("--idle-hold", type=int, help="GoBGP idle-hold-time-after-reset (s)")
    ap.add_argument("--json", help="write the trials to this file")
    args = ap.parse_args(argv)
    results: list[Trial] = []
    for kind in args.routers.split(","):
        results += run_router(kind, args.trials, args.idle_hold)
    print(table(results, args.idle_hold))
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
