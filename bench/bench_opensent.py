"""A router that only listens forgets vipgate's connection in OpenSent (docs/routers.md, router
restarts): the path back -> the VIP back in the router's table.

Run as root from the repository root::

    .venv/bin/python -m bench.bench_opensent                       # 5 trials per router
    .venv/bin/python -m bench.bench_opensent --routers bird --down 30

One node running vipgate's speaker (``lab.speaker_driver``, hold 30 s, keepalive 10 s) and one
passive router (BIRD ``passive on``, FRR ``neighbor X passive``, GoBGP ``passive-mode``). Each
trial, in a new lab: the router frozen (SIGSTOP), vipgate started: its dial is taken by the
router's kernel with our OPEN, and vipgate waits in OpenSent. Every packet in or out of the
router's bridge to the nodes dropped (nftables; its loopback, where the routers' query sockets
are, untouched), the router killed (its kernel's reset lost) and started again, listening only;
the path restored ``--down`` plus a random 0-2 s (the probe interval: a random phase against
the probes) after vipgate reached OpenSent. Measured from the path back to the VIP in the
router's table with the node's next hop (polled every 20 ms), and the keepalive probes
vipgate's kernel had sent unanswered when the path came back (``ss``). vipgate's TCP keepalive
until Established (``src/vipgate/bgp/peer.py``) draws the restarted router's reset; without it
the connection waited for the 240 s OpenSent hold timer.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, dataclass

from bench.bench_link_down import wait_hops
from bench.bench_router_restart import mmm
from bench.report import write_json
from lab.netns import Lab
from lab.silence import silence, unsilence
from lab.speaker import SpeakerProc, unanswered_probes
from lab.topology import ROUTER_AS, ROUTER_IP4, VIP4, build_topology
from vipgate.bgp.peer import PROBE_INTERVAL


@dataclass
class Trial:
    router: str
    down: float  # seconds from vipgate in OpenSent to the path back
    probes: int  # keepalive probes unanswered when the path came back
    back: float  # seconds from the path back to the VIP back


def wait_opensent(sp: SpeakerProc, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while True:
        e = sp.wait_event("state", max(0.1, deadline - time.monotonic()))
        if e["state"] == "OpenSent":
            return time.monotonic()


def trial(kind: str, down: float, timeout: float) -> Trial:
    with Lab() as lab:
        topo = build_topology(lab, 1, kind, client=False, neighbor_kwargs={"passive": True})
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        router.freeze()
        sp = SpeakerProc(lab, n1, [f"{ROUTER_IP4}:{ROUTER_AS}::false"], announce=[VIP4])
        try:
            t_open = wait_opensent(sp, 10.0)
            silence(lab, router.ns, "br0")  # its loopback (query sockets) stays up
            try:
                router.kill()
                router.start()
                wait = down + random.uniform(0.0, PROBE_INTERVAL)
                time.sleep(max(0.0, wait - (time.monotonic() - t_open)))
                probes = unanswered_probes(lab, n1)
            finally:
                unsilence(lab, router.ns)
            t_back = time.monotonic()
            back = wait_hops(router, {n1.ip4}, timeout) - t_back
            return Trial(kind, t_back - t_open, -1 if probes is None else probes, back)
        finally:
            sp.close()


def table(results: list[Trial]) -> str:
    rows = [
        "| router | trials | path down after OpenSent | probes unanswered | VIP back after the "
        "path (min / median / max) |",
        "|---|---|---|---|---|",
    ]
    for kind in dict.fromkeys(t.router for t in results):
        ts = [t for t in results if t.router == kind]
        probes = sorted({t.probes for t in ts})
        rows.append(
            f"| {kind} | {len(ts)} | {mmm([t.down for t in ts])} s | "
            f"{', '.join(map(str, probes))} | {mmm([t.back for t in ts])} s |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--routers", default="bird,frr,gobgp")
    ap.add_argument("--down", type=float, default=10.0, help="path down after OpenSent (s)")
    ap.add_argument("--timeout", type=float, default=300.0, help="wait for the VIP (s)")
    ap.add_argument("--json", help="write the trials to this file")
    args = ap.parse_args(argv)
    results: list[Trial] = []
    for kind in args.routers.split(","):
        for _ in range(args.trials):
            results.append(trial(kind, args.down, args.timeout))
            print(json.dumps(asdict(results[-1])), flush=True)
    print(table(results))
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
