"""What the readiness read (docs/deployment.md) costs both sides, at kube-vip's default cadence.

Run as root from the repository root::

    .venv/bin/python -m bench.bench_readiness              # 60 s per variant
    .venv/bin/python -m bench.bench_readiness --window 20  # shorter

One lab node (BIRD router, fake apiserver, vipgate with period 5 s, timeout 3 s, threshold 3),
healthy all the time. Two variants in the same run, one after the other:
``control_plane_health_check_shutdown_address=off`` and the default (``/readyz`` every 1 s).
Printed per variant: vipgate's CPU seconds per 60 s (utime+stime of the daemon, children
included, measured over the window after a 5 s settle), the apiserver's requests per minute by
path, and its TLS handshakes in the window (0: every read rides the kept-alive connection).
"""

from __future__ import annotations

import argparse
import time

from bench.bench_health import cpu_seconds
from lab.cluster import Cluster
from lab.netns import Lab

VARIANTS = (("readiness off", "off"), ("readiness every 1 s", ""))


def measure(window: float, shutdown_address: str) -> tuple[float, dict[str, float], int]:
    with Lab() as lab:
        c = Cluster.create(
            lab,
            n_nodes=1,
            period=5.0,
            timeout=3.0,
            threshold=3,
            extra_env={"control_plane_health_check_shutdown_address": shutdown_address},
        )
        c.start_all()
        c.wait_nexthops({c.ip("node1")}, timeout=20)
        time.sleep(5.0)  # settle: start-up work is not the steady state
        vp = c.vipgates["node1"]
        assert vp.proc is not None
        api = c.apiservers["node1"]
        api.control.reset()
        cpu0, t0 = cpu_seconds(vp.proc.pid), time.monotonic()
        time.sleep(window)
        cpu1, t1 = cpu_seconds(vp.proc.pid), time.monotonic()
        stats = api.stats()
        elapsed = t1 - t0
        per_min = {p: n * 60.0 / elapsed for p, n in sorted(stats.paths.items())}
        return (cpu1 - cpu0) * 60.0 / elapsed, per_min, stats.handshakes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--window", type=float, default=60.0, help="seconds measured per variant")
    args = ap.parse_args()
    head = "| variant | vipgate CPU s/60 s | requests/min by path | TLS handshakes in"
    print(f"{head} {args.window:g} s |")
    print("|---|---|---|---|")
    for name, setting in VARIANTS:
        cpu, per_min, handshakes = measure(args.window, setting)
        paths = ", ".join(f"`{p}` {n:.1f}" for p, n in per_min.items()) or "none"
        print(f"| {name} | {cpu:.3f} | {paths} | {handshakes} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
