"""Router restarts (docs/routers.md, router restarts): the router's process stopped for a while
and started again -> the VIP back in the router's table, vipgate listening against dialing only.

Run as root from the repository root::

    .venv/bin/python -m bench.bench_router_restart              # 3 trials per case
    .venv/bin/python -m bench.bench_router_restart --trials 10

One node running vipgate's speaker (``lab.speaker_driver``, hold 9 s) and one router with its
own default recovery timers (BIRD 2.0.12: ``connect delay time 5``, ``connect retry time 120``;
FRR 8.4: ``timers connect 120``; GoBGP 3: ``connect-retry 120``). Each trial: the router's
process stopped (SIGTERM: it says Cease to vipgate), ``--outages`` seconds later started again;
measured, polled every 20 ms: the time from the router's process start to the VIP in its table
(the three take connections from their start, so that is also the time from the router being
ready to peer, its own start-up included). ``listen`` is vipgate's default; ``dial-only`` is
``--no-listen`` (``bgp_listen=false``, kube-vip's behaviour). After an outage shorter than 30 s
vipgate is still in its quick retries (0.5-1 s); after a longer one only its backoff (up to
30 s) or the router's own dial (BIRD: ``connect delay time``) brings the session back.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass

from lab.netns import Lab
from lab.routers import Router
from lab.speaker import SpeakerProc
from lab.topology import ROUTER_AS, ROUTER_IP4, VIP4, build_topology

# The routers' own defaults (docs/routers.md), not the lab's lowered ones.
DEFAULTS: dict[str, dict[str, object]] = {
    "bird": {"connect_delay": 5, "connect_retry": 120},
    "frr": {"connect_retry": 120},
    "gobgp": {"connect_retry": 120},
}


@dataclass
class Trial:
    router: str
    outage: float
    mode: str
    from_start: float


def vip_back(router: Router, hop: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while router.multipath_next_hops(VIP4) != {hop}:
        if time.monotonic() > deadline:
            raise TimeoutError(f"VIP not back: {router.describe()}")
        time.sleep(0.02)
    return time.monotonic()


def run_case(kind: str, outage: float, mode: str, trials: int) -> list[Trial]:
    out: list[Trial] = []
    with Lab() as lab:
        topo = build_topology(lab, 1, kind, client=False, neighbor_kwargs=DEFAULTS[kind])
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        extra = ["--no-listen"] if mode == "dial-only" else []
        sp = SpeakerProc(
            lab,
            n1,
            [f"{ROUTER_IP4}:{ROUTER_AS}::false"],
            announce=[VIP4],
            hold=9,
            keepalive=3,
            extra=extra,
        )
        try:
            vip_back(router, n1.ip4, 30.0)
            for _ in range(trials):
                router.stop()
                time.sleep(outage)
                t0 = time.monotonic()
                router.start()
                t_back = vip_back(router, n1.ip4, 200.0)
                tr = Trial(kind, outage, mode, t_back - t0)
                out.append(tr)
                print(json.dumps(asdict(tr)), flush=True)
        finally:
            sp.close()
    return out


def table(results: list[Trial]) -> str:
    rows = [
        "| router | outage | vipgate | trials | VIP back after the router's start "
        "(min / median / max) |",
        "|---|---|---|---|---|",
    ]
    keys = sorted({(t.router, t.outage, t.mode) for t in results})
    for kind, outage, mode in keys:
        ts = [t for t in results if (t.router, t.outage, t.mode) == (kind, outage, mode)]
        s = [t.from_start for t in ts]
        rows.append(
            f"| {kind} | {outage:g} s | {mode} | {len(s)} | {min(s):.2f} / "
            f"{statistics.median(s):.2f} / {max(s):.2f} s |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--routers", default="bird,frr,gobgp")
    ap.add_argument(
        "--outages", default="20,60", help="seconds the router is down, comma-separated"
    )
    ap.add_argument("--modes", default="listen,dial-only")
    ap.add_argument("--json", help="write the trials to this file")
    args = ap.parse_args(argv)
    results: list[Trial] = []
    for kind in args.routers.split(","):
        for outage in (float(x) for x in args.outages.split(",")):
            for mode in args.modes.split(","):
                results += run_case(kind, outage, mode, args.trials)
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(t) for t in results], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
