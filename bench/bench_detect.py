"""Failure detection at kube-vip's default settings: vipgate with its fast period,
vipgate at kube-vip's cadence and ExaBGP's healthcheck, same lab, same run.

Run as root from the repository root::

    .venv/bin/python -m bench.bench_detect            # 10 trials each, 20 s client window
    .venv/bin/python -m bench.bench_detect --quick    # 3 trials, 15 s window, 20 s footprint

Settings: period 5 s, timeout 3 s, threshold (fall) 3 -- kube-vip's defaults -- rise 1, BGP
hold 9 s; 3 nodes, the BIRD ECMP router, faults on node1. The three implementations:

- ``vipgate``: fast period 0.2 s (the default), readiness reads every 1 s (the default);
- ``vipgate-fast0``: ``control_plane_health_check_fast_period_seconds=0`` (the gate still runs
  a check at once when the apiserver closes the kept-alive connection, so this is kube-vip's
  period and threshold, not quite its cadence after a crash);
- ``exabgp``: ExaBGP 5.0.15's healthcheck, ``--interval 5 --fast-interval 1 --fall 3 --rise 1
  --timeout 3`` (curl per check), from ``.venv-bench``.

Measures (machinery and clocks of :mod:`bench.bench_health`; the route is the router's kernel
ECMP route seen by :class:`lab.routemon.RouteWatch`):

- crash: node1's apiserver process SIGKILLed a random 0.05-0.9 period after a ``/livez`` check
  reached it -> node1's next hop gone; then (0-1 s later) the apiserver starts again ->
  listening (its ``listen_t``) -> next hop back.
- hung: the apiserver SIGSTOPped (the kernel accepts TCP, nothing answers) -> gone; SIGCONT ->
  back. The semantic bound is threshold x timeout + period (14 s).
- burst: ``/livez`` (and ``/readyz``) answer 500 for 2 s, then 200 again: was node1 ever
  withdrawn (watched until two periods after the burst)?
- failed new connections: ``lab.client`` at 50 new TLS connections/s through the router; the
  crash half a period after a check; requests that started in the window after it and did not
  get a 200.
- requests per minute to a healthy apiserver, by path (``/livez``: the health checks;
  ``/readyz``: vipgate's readiness reads), and TLS handshakes.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field

from bench.bench_health import (
    HOLD,
    NODE,
    Bench,
    ExabgpImpl,
    Impl,
    VipgateImpl,
    log,
    mmm,
)
from bench.exabgp import EXABGP_VERSION, ensure_exabgp
from bench.report import write_json
from lab.client import LoadClient, summarize
from lab.cluster import Cluster
from lab.netns import Lab
from lab.topology import VIP4
from lab.wait import LabTimeout, wait_for

PERIOD = 5.0
TIMEOUT = 3.0
THRESHOLD = 3
FAST = 0.2
BURST = 2.0
FAST_ENV = "control_plane_health_check_fast_period_seconds"


@dataclass
class DetectResults:
    impl: str
    crash_gone: list[float] = field(default_factory=list)
    crash_back: list[float] = field(default_factory=list)
    hung_gone: list[float] = field(default_factory=list)
    hung_back: list[float] = field(default_factory=list)
    hung_over: int = 0  # hung trials not withdrawn within the wait (threshold x period + 15 s)
    burst_withdrawn: int = 0
    burst_trials: int = 0
    failed: int | None = None
    total: int | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    per_minute: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class Detect:
    def __init__(self, bench: Bench, window: float, footprint: float) -> None:
        self.b = bench
        self.api = bench.api
        self.window = window
        self.footprint = footprint

    def _trial(self, impl: Impl, res: DetectResults, what: str, i: int, fn: object) -> None:
        assert callable(fn)
        try:
            fn()
        except LabTimeout as e:
            res.errors.append(f"{what} trial {i}: {str(e).splitlines()[0]}")
            res.hung_over += what == "hung" and "hung -> " in str(e)
            log(f"{impl.name} {what} trial {i}: TIMEOUT {str(e).splitlines()[0]}")
            if self.api.pid is None:
                self.api.start()
            self.api.thaw()
            self.b.heal(impl)

    def _phase(self) -> None:
        self.b.wait_request(PERIOD + 2.0, path="/livez")
        time.sleep(self.b.rng.uniform(0.05, 0.9) * PERIOD)

    def crash(self, impl: Impl, res: DetectResults, i: int) -> None:
        self.b.wait_all(impl)
        self._phase()
        t_f = self.api.kill()
        g = self.b.gone(t_f, f"{impl.name}: crash -> {NODE} gone", THRESHOLD * PERIOD + 10)
        time.sleep(self.b.rng.uniform(0.0, 1.0))
        self.api.start()
        t_l = self.api.stats().listen_t
        assert t_l is not None
        back = self.b.back(t_l, f"{impl.name}: listening -> {NODE} back", 2 * PERIOD + 5)
        res.crash_gone.append(g)
        res.crash_back.append(back)
        log(f"{impl.name} crash {i + 1}: gone {g:.3f} s, back {back:.3f} s")

    def hung(self, impl: Impl, res: DetectResults, i: int) -> None:
        self.b.wait_all(impl)
        self._phase()
        t_f = self.api.freeze()
        try:
            g = self.b.gone(t_f, f"{impl.name}: hung -> {NODE} gone", THRESHOLD * PERIOD + 15)
            time.sleep(self.b.rng.uniform(0.0, 1.0))
        finally:
            t_h = self.api.thaw()
        back = self.b.back(t_h, f"{impl.name}: thawed -> {NODE} back", 2 * PERIOD + 5)
        res.hung_gone.append(g)
        res.hung_back.append(back)
        log(f"{impl.name} hung {i + 1}: gone {g:.3f} s, back {back:.3f} s")

    def burst(self, impl: Impl, res: DetectResults, i: int) -> None:
        self.b.wait_all(impl)
        self._phase()
        t_f = self.api.set_mode("fail")
        time.sleep(BURST)
        t_h = self.api.set_mode("healthy")
        time.sleep(max(0.0, t_h + 2 * PERIOD - time.monotonic()))
        ip = self.b.node_ip
        bad = self.b.mon.violations(lambda h: ip in h, t_f, time.monotonic())
        res.burst_trials += 1
        res.burst_withdrawn += bool(bad)
        log(f"{impl.name} burst {i + 1}: {'WITHDRAWN' if bad else 'kept'}")

    def client_window(self, impl: Impl, res: DetectResults) -> None:
        self.b.wait_all(impl)
        time.sleep(2.0)
        lc = LoadClient(
            self.b.c.lab,
            self.b.c.topo.client_ns,
            self.b.c.pki.ca_cert,
            rate=50,
            duration=self.window + PERIOD + 5.0,  # the crash comes up to 1.5 periods in
            timeout=1.0,
            name=f"client-{impl.name}-crash",
        )
        t_req = self.b.wait_request(PERIOD + 2.0, path="/livez")
        t_start = lc.start()
        try:
            n = max(1, math.ceil((t_start + 0.3 - t_req - 0.5 * PERIOD) / PERIOD))
            time.sleep(max(0.0, t_req + (n + 0.5) * PERIOD - time.monotonic()))
            t_f = self.api.kill()
            lc.wait(self.window + PERIOD + 15.0)
        finally:
            lc.stop()
            if self.api.pid is None:
                self.api.start()
        s = summarize(lc.window(t_f, t_f + self.window))
        res.failed, res.total, res.outcomes = s.failed, s.total, s.outcomes
        log(f"{impl.name} client over a crash: {s}")
        self.b.wait_all(impl, 40.0)

    def requests_per_minute(self, impl: Impl, res: DetectResults) -> None:
        self.b.wait_all(impl)
        time.sleep(2 * PERIOD)
        self.api.control.reset()
        t0 = time.monotonic()
        time.sleep(self.footprint)
        st = self.api.stats()
        scale = 60.0 / (st.t - t0)
        res.per_minute = {p: n * scale for p, n in st.paths.items()}
        res.per_minute["TLS handshakes"] = st.handshakes * scale
        log(f"{impl.name} per minute: {res.per_minute}")

    def run(self, impl: Impl, trials: int) -> DetectResults:
        res = DetectResults(impl.name)
        log(f"=== {impl.name}: starting on {len(self.b.all)} nodes")
        impl.start_all()
        try:
            self.b.wait_all(impl, 60.0)
            for i in range(trials):
                self._trial(impl, res, "crash", i, lambda i=i: self.crash(impl, res, i))
            for i in range(trials):
                self._trial(impl, res, "hung", i, lambda i=i: self.hung(impl, res, i))
            for i in range(trials):
                self._trial(impl, res, "burst", i, lambda i=i: self.burst(impl, res, i))
            self.client_window(impl, res)
            self.requests_per_minute(impl, res)
        finally:
            impl.stop_all()
            if self.api.pid is None:
                self.api.start()
            self.api.thaw()
            for a in self.b.c.apiservers.values():
                a.set_mode("healthy")
        wait_for(lambda: not self.b.c.nexthops(), 30.0, 0.05, what="route gone after the phase")
        return res


def table(results: list[DetectResults]) -> str:
    head = "| measure | " + " | ".join(f"{r.impl} min / median / max" for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("apiserver SIGKILL -> next hop gone (s)", [mmm(r.crash_gone) for r in results])
    row("apiserver listening again -> next hop back (s)", [mmm(r.crash_back) for r in results])
    wait = THRESHOLD * PERIOD + 15
    row(
        f"apiserver hung (SIGSTOP) -> gone (s; bound {PERIOD:g} + {THRESHOLD - 1} x "
        f"{max(PERIOD, TIMEOUT):g} + {TIMEOUT:g})",
        [
            mmm(r.hung_gone) + (f" (+ {r.hung_over} trial(s) > {wait:g} s)" if r.hung_over else "")
            for r in results
        ],
    )
    row("SIGCONT -> next hop back (s)", [mmm(r.hung_back) for r in results])
    row(
        f"{BURST:g} s burst of 500: trials withdrawn",
        [f"{r.burst_withdrawn} of {r.burst_trials}" for r in results],
    )
    row(
        "failed new connections at 50/s over a crash",
        ["n/a" if r.failed is None else f"{r.failed} of {r.total}" for r in results],
    )
    for key, label in (
        ("/livez", "`/livez` requests per minute (health checks)"),
        ("/readyz", "`/readyz` requests per minute (readiness reads)"),
        ("TLS handshakes", "TLS handshakes per minute"),
    ):
        row(label, [f"{r.per_minute.get(key, 0.0):.1f}" for r in results])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.bench_detect", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help="3 trials, 15 s window, 20 s footprint")
    ap.add_argument(
        "--only", action="append", choices=("vipgate", "vipgate-fast0", "exabgp"), default=[]
    )
    ap.add_argument("--trials", type=int)
    ap.add_argument("--window", type=float)
    ap.add_argument("--footprint", type=float)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write the raw results to this file")
    ap.add_argument("--keep", action="store_true", help="keep the lab's work directory (logs)")
    a = ap.parse_args(argv)
    trials = a.trials or (3 if a.quick else 10)
    window = a.window or (15.0 if a.quick else 20.0)
    footprint = a.footprint or (20.0 if a.quick else 60.0)
    if not (1 <= trials <= 100 and 5 <= window <= 300 and 5 <= footprint <= 600):
        ap.error("trials 1..100, window 5..300 s, footprint 5..600 s")
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces)")
    only = a.only or ["vipgate", "vipgate-fast0", "exabgp"]
    exa_python = ensure_exabgp() if "exabgp" in only else None
    cmd = "python -m bench.bench_detect " + " ".join(argv if argv is not None else sys.argv[1:])
    results: list[DetectResults] = []
    t_begin = time.monotonic()
    with Lab(keep_workdir=True if a.keep else None) as lab:
        if a.keep:
            log(f"lab work directory (kept): {lab.workdir}")
        cluster = Cluster.create(
            lab, 3, period=PERIOD, timeout=TIMEOUT, threshold=THRESHOLD, hold=HOLD
        )
        mon = cluster.watch_route(VIP4, poll=1.0)
        bench = Bench(
            cluster, mon, random.Random(a.seed), trials, window, footprint, PERIOD, THRESHOLD
        )
        det = Detect(bench, window, footprint)
        try:
            for name in only:
                impl: Impl
                if name == "exabgp":
                    assert exa_python is not None
                    impl = ExabgpImpl(
                        cluster, exa_python, "exabgp", period=5, timeout=3, fast_interval=1
                    )
                else:
                    fast = "0" if name == "vipgate-fast0" else f"{FAST:g}"
                    impl = VipgateImpl(cluster, name, {FAST_ENV: fast})
                results.append(det.run(impl, trials))
        finally:
            mon.stop()
    elapsed = time.monotonic() - t_begin
    print()
    print(
        f"Settings: period {PERIOD:g} s, timeout {TIMEOUT:g} s, threshold {THRESHOLD} (kube-vip's "
        f"defaults), hold {HOLD} s; vipgate fast period {FAST:g} s (vipgate-fast0: 0), "
        f"readiness reads every 1 s; ExaBGP {EXABGP_VERSION} healthcheck interval 5, "
        f"fast-interval 1, fall 3, rise 1, timeout 3; 3 nodes, BIRD ECMP router; {trials} trials, "
        f"client window {window:g} s at 50 new TLS connections/s, requests counted over "
        f"{footprint:g} s. Took {elapsed / 60:.1f} min."
    )
    print(f"Command: {cmd.strip()}")
    print()
    print(table(results))
    for r in results:
        print(f"\n{r.impl}: failed-connection outcomes {r.outcomes}")
        for err in r.errors:
            print(f"  {err}")
    write_json(a.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
