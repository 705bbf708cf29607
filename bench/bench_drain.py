"""Planned restarts and stops (docs/deployment.md): failed new connections while the apiserver
restarts and while vipgate stops, same lab, same run.

Run as root from the repository root::

    .venv/bin/python -m bench.bench_drain             # 10 restarts per case, 10 SIGTERMs
    .venv/bin/python -m bench.bench_drain --quick     # 3 and 3

Settings: kube-vip's defaults (period 5 s, timeout 3 s, threshold 3), hold 9 s; 3 nodes; a client
opening 50 new TLS connections/s to the VIP (``GET /version``: not a health path, so the
apiserver's retry-after 429s reach it) through the router. Part 1 and 2 use the BIRD router
(ECMP kernel route, the RFC 8326 import filter of docs/routers.md), part 3 FRR 8.4.

1. Planned apiserver restarts on node1, each: a random 0-5 s pause, then the fake apiserver's
   SIGTERM sequence (``--shutdown-delay-duration`` 5 s, 5 s with ``--shutdown-send-retry-after``
   (429s for 2 s after the delay), or 0), the listener closed for 3 s (the restart), ``/readyz``
   failing with ``informer-sync`` for 1 s after it listens again, then healthy. Implementations:
   ``vipgate`` (readiness reads on: the apiserver's announced shutdown), ``vipgate-nodrain``
   (``control_plane_health_check_shutdown_address=off``), ``kube-vip-cadence`` (that and fast
   period 0). Counted over all restarts: failed requests (anything but 200 and 429; of them,
   those in flight at the instant the kernel route changed, which stateless ECMP may rehash to
   another node) and 429s; per restart the time from the route's withdrawal to the listener's
   close (positive when the route went first).
2. vipgate SIGTERM on node1 (BIRD): time to node1's next hop leaving the kernel ECMP route, time
   to exit and its status, failed requests over all trials. ``bgp_graceful_shutdown_seconds``
   3 (default) against 0.
3. The same SIGTERM with FRR (eBGP, no configuration needed): time until node1's path is neither
   best nor multipath in FRR's RIB (polled through vtysh, ~20-50 ms resolution), time to exit.
   FRR runs without zebra in the lab, so it forwards nothing: no client there.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.bench_health import HOLD, NODE, Bench, Impl, VipgateImpl, log, mmm
from bench.report import write_json
from lab.client import LoadClient, Request
from lab.cluster import Cluster
from lab.netns import Lab
from lab.routemon import RouteWatch
from lab.topology import VIP4
from lab.wait import LabTimeout, wait_for

PERIOD = 5.0
TIMEOUT = 3.0
THRESHOLD = 3
DELAY = 5.0
RETRY_AFTER_FOR = 2.0
DOWN = 3.0
UNREADY = 1.0
FAST_ENV = "control_plane_health_check_fast_period_seconds"
SHUTDOWN_ENV = "control_plane_health_check_shutdown_address"
GSHUT_ENV = "bgp_graceful_shutdown_seconds"

CASES = (
    ("delay 5 s", DELAY, False),
    ("delay 5 s + retry-after", DELAY, True),
    ("delay 0", 0, False),
)
RESTART_IMPLS: tuple[tuple[str, dict[str, str]], ...] = (
    ("vipgate", {}),
    ("vipgate-nodrain", {SHUTDOWN_ENV: "off"}),
    ("kube-vip-cadence", {SHUTDOWN_ENV: "off", FAST_ENV: "0"}),
)


@dataclass
class RestartResult:
    impl: str
    case: str
    restarts: int = 0
    requests: int = 0
    failed: int = 0
    in_flight: int = 0  # of `failed`: in flight when the router's ECMP route changed
    http_429: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    lead: list[float] = field(default_factory=list)  # listener closed - route gone (s)
    errors: list[str] = field(default_factory=list)


@dataclass
class StopResult:
    router: str
    impl: str
    left: list[float] = field(default_factory=list)  # SIGTERM -> out of the multipath set
    exit: list[float] = field(default_factory=list)
    codes: list[int | None] = field(default_factory=list)
    requests: int | None = None
    failed: int | None = None
    in_flight: int | None = None  # of `failed`: in flight when the ECMP route changed
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def in_flight_at_change(reqs: list[Request], mon: RouteWatch) -> list[Request]:
    """Failed requests that were in flight at the instant the kernel ECMP route changed: a
    stateless ECMP router may hash such a flow to another node, which resets it (README, the
    demo's note) -- the router's doing, whatever changed the route."""
    changes = [x.t for x in mon.samples[1:]]
    return [
        r
        for r in reqs
        if r.failed and r.outcome != "http_429"
        and any(r.t <= t <= r.t + r.latency + 0.005 for t in changes)
    ]  # fmt: skip


def client(c: Cluster, name: str, duration: float) -> LoadClient:
    return LoadClient(
        c.lab,
        c.topo.client_ns,
        c.pki.ca_cert,
        path="/version",
        rate=50,
        duration=min(duration, 3000.0),
        timeout=1.0,
        name=name,
    )


def restarts(b: Bench, impl: Impl, case: tuple[str, float, bool], n: int) -> RestartResult:
    label, delay, retry_after = case
    res = RestartResult(impl.name, label)
    api = b.api
    b.wait_all(impl, 40.0)
    lc = client(b.c, f"client-{impl.name}-{label.replace(' ', '')}", n * 40.0 + 30.0)
    lc.start()
    time.sleep(1.0)
    t_begin = time.monotonic()
    try:
        for i in range(n):
            try:
                b.wait_all(impl, 40.0)
                time.sleep(b.rng.uniform(0.0, PERIOD))
                t0 = api.shutdown(delay, retry_after, RETRY_AFTER_FOR)
                wait_for(
                    lambda: api.stats().shutdown_phase == "stopped",
                    delay + RETRY_AFTER_FOR + 5.0,
                    0.01,
                    what="apiserver shutdown sequence",
                )
                t_closed = api.stats().stopped_t
                assert t_closed is not None
                time.sleep(DOWN)
                api.set_mode("unready")
                time.sleep(UNREADY)
                api.set_mode("healthy")
                ip = b.node_ip
                t_gone = None
                gone = [s for s in b.mon.samples if s.t >= t0 and ip not in s.hops]
                if gone:
                    t_gone = gone[0].t
                    res.lead.append(t_closed - t_gone)
                res.restarts += 1
                lead = "never withdrawn" if t_gone is None else f"{t_closed - t_gone:+.3f} s"
                log(f"{impl.name} {label} restart {i + 1}/{n}: route gone -> closed {lead}")
            except LabTimeout as e:
                res.errors.append(f"restart {i}: {str(e).splitlines()[0]}")
                log(f"{impl.name} {label} restart {i}: TIMEOUT {str(e).splitlines()[0]}")
                api.set_mode("healthy")
        b.wait_all(impl, 40.0)
        time.sleep(1.0)
        t_end = time.monotonic()
    finally:
        lc.stop()
    reqs = lc.window(t_begin, t_end)
    oc = Counter(r.outcome for r in reqs)
    res.requests = len(reqs)
    res.http_429 = oc.get("http_429", 0)
    res.failed = res.requests - oc.get("ok", 0) - res.http_429
    res.in_flight = len(in_flight_at_change(reqs, b.mon))
    res.outcomes = dict(oc)
    log(
        f"{impl.name} {label}: {res.failed} failed ({res.in_flight} in flight at a route "
        f"change), {res.http_429} x 429 of {res.requests}"
    )
    return res


def sigterms_bird(b: Bench, impl: VipgateImpl, n: int) -> StopResult:
    res = StopResult("bird", impl.name)
    c = b.c
    impl.start_all()
    try:
        b.wait_all(impl, 60.0)
        lc = client(c, f"client-stop-{impl.name}", n * 30.0 + 30.0)
        lc.start()
        time.sleep(1.0)
        t_begin = time.monotonic()
        try:
            for i in range(n):
                b.wait_all(impl, 40.0)
                time.sleep(b.rng.uniform(0.0, PERIOD))
                ew = c.watch_exit(NODE)
                t = c.signal(NODE)
                try:
                    left = b.gone(t, f"{impl.name}: SIGTERM -> {NODE} out of the ECMP route")
                    code, t_exit = ew.wait(15.0)
                except (LabTimeout, AssertionError) as e:
                    res.errors.append(f"SIGTERM {i}: {str(e).splitlines()[0]}")
                    c.stop(NODE)
                    impl.start(NODE)
                    continue
                res.left.append(left)
                res.exit.append(t_exit - t)
                res.codes.append(code)
                log(
                    f"{impl.name} SIGTERM {i + 1}/{n}: out of ECMP {left * 1000:.1f} ms, "
                    f"exit {t_exit - t:.3f} s rc={code}"
                )
                impl.start(NODE)
            b.wait_all(impl, 40.0)
            time.sleep(1.0)
            t_end = time.monotonic()
        finally:
            lc.stop()
        reqs = lc.window(t_begin, t_end)
        oc = Counter(r.outcome for r in reqs)
        res.requests, res.failed, res.outcomes = len(reqs), len(reqs) - oc.get("ok", 0), dict(oc)
        res.in_flight = len(in_flight_at_change(reqs, b.mon))
        log(
            f"{impl.name} SIGTERMs: {res.failed} failed ({res.in_flight} in flight at a route "
            f"change) of {res.requests} ({dict(oc)})"
        )
    finally:
        impl.stop_all()
    return res


def sigterms_frr(trials: int, rng: random.Random, keep: bool) -> StopResult:
    res = StopResult("frr", "vipgate")
    with Lab(keep_workdir=True if keep else None) as lab:
        c = Cluster.create(
            lab, 3, router_kind="frr", period=PERIOD, timeout=TIMEOUT, threshold=THRESHOLD,
            extra_env={GSHUT_ENV: "3"},
        )  # fmt: skip
        router = c.topo.router
        assert router is not None
        everyone = {n.ip4 for n in c.topo.nodes}
        ip = c.topo.node(NODE).ip4
        c.start_all()
        try:
            router.wait_multipath(VIP4, everyone, timeout=60.0)
            for i in range(trials):
                router.wait_multipath(VIP4, everyone, timeout=40.0)
                time.sleep(rng.uniform(0.0, PERIOD))
                ew = c.watch_exit(NODE)
                t = c.signal(NODE)
                t_left = None
                deadline = t + 10.0
                while time.monotonic() < deadline:
                    if ip not in router.multipath_next_hops(VIP4):
                        t_left = time.monotonic()
                        break
                try:
                    code, t_exit = ew.wait(15.0)
                except AssertionError as e:
                    res.errors.append(f"SIGTERM {i}: {e}")
                    c.stop(NODE)
                    c.start(NODE)
                    continue
                if t_left is None:
                    res.errors.append(f"SIGTERM {i}: {NODE} never left FRR's multipath set")
                else:
                    res.left.append(t_left - t)
                res.exit.append(t_exit - t)
                res.codes.append(code)
                log(f"frr SIGTERM {i + 1}/{trials}: left {res.left[-1:]} exit {t_exit - t:.3f}")
                c.start(NODE)
        finally:
            for n in list(c.vipgates):
                c.stop(n)
    return res


def tables(rs: list[RestartResult], ss: list[StopResult]) -> str:
    impls = list(dict.fromkeys(r.impl for r in rs))
    out = [
        "Planned apiserver restarts on node1 (failed requests / 429s, all restarts):",
        "",
        "| case | " + " | ".join(impls) + " |",
        "|---" * (len(impls) + 1) + "|",
    ]
    for label, _, _ in CASES:
        cells = []
        for im in impls:
            r = next((x for x in rs if x.impl == im and x.case == label), None)
            if r is None:
                cells.append("-")
                continue
            lead = mmm(r.lead) if r.lead else "never withdrawn"
            cells.append(
                f"{r.failed} failed ({r.in_flight} in flight at a route change), {r.http_429} x "
                f"429 of {r.requests} in {r.restarts} restarts; withdrawn before the listener "
                f"closed by {lead} s"
            )
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += [
        "",
        "vipgate SIGTERM on node1:",
        "",
        "| router, setting | SIGTERM -> out of the multipath set (ms) min / median / max "
        "| SIGTERM -> exit (s) | exit status | failed requests |",
        "|---|---|---|---|---|",
    ]
    for s in ss:
        codes = ",".join(sorted({str(c) for c in s.codes})) or "-"
        failed = (
            "n/a (no forwarding)"
            if s.requests is None
            else f"{s.failed} of {s.requests} ({s.in_flight} in flight at a route change)"
        )
        out.append(
            f"| {s.router}, {s.impl} | {mmm(s.left, 1000, '{:.1f}')} | {mmm(s.exit)} | {codes} "
            f"| {failed} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.bench_drain", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help="3 restarts per case, 3 SIGTERMs")
    ap.add_argument("--trials", type=int, help="restarts per case and SIGTERMs (default 10)")
    ap.add_argument("--skip", action="append", choices=("restarts", "bird", "frr"), default=[])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write the raw results to this file")
    ap.add_argument("--keep", action="store_true", help="keep the labs' work directories (logs)")
    a = ap.parse_args(argv)
    n = a.trials or (3 if a.quick else 10)
    if not 1 <= n <= 100:
        ap.error("trials 1..100")
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces)")
    cmd = "python -m bench.bench_drain " + " ".join(argv if argv is not None else sys.argv[1:])
    rng = random.Random(a.seed)
    rs: list[RestartResult] = []
    ss: list[StopResult] = []
    t_begin = time.monotonic()
    if "restarts" not in a.skip or "bird" not in a.skip:
        with Lab(keep_workdir=True if a.keep else None) as lab:
            c = Cluster.create(
                lab, 3, period=PERIOD, timeout=TIMEOUT, threshold=THRESHOLD, hold=HOLD
            )
            mon = c.watch_route(VIP4, poll=1.0)
            b = Bench(c, mon, rng, n, 0.0, 0.0, PERIOD, THRESHOLD)
            try:
                if "restarts" not in a.skip:
                    for name, env in RESTART_IMPLS:
                        impl = VipgateImpl(c, name, env)
                        impl.start_all()
                        try:
                            for case in CASES:
                                rs.append(restarts(b, impl, case, n))
                        finally:
                            impl.stop_all()
                            c.apiservers[NODE].set_mode("healthy")
                        wait_for(lambda: not c.nexthops(), 30.0, 0.05, what="route gone")
                if "bird" not in a.skip:
                    for name, env in (
                        ("gshut 3 s", {GSHUT_ENV: "3"}),
                        ("gshut 0", {GSHUT_ENV: "0"}),
                    ):
                        ss.append(sigterms_bird(b, VipgateImpl(c, name, env), n))
                        wait_for(lambda: not c.nexthops(), 30.0, 0.05, what="route gone")
            finally:
                mon.stop()
    if "frr" not in a.skip:
        ss.append(sigterms_frr(n, rng, a.keep))
    elapsed = time.monotonic() - t_begin
    print()
    print(
        f"Settings: period {PERIOD:g} s, timeout {TIMEOUT:g} s, threshold {THRESHOLD} (kube-vip's "
        f"defaults), readiness reads every 1 s (vipgate), hold {HOLD} s; 3 nodes; restarts: "
        f"random 0-{PERIOD:g} s pause, shutdown sequence, {DOWN:g} s down, {UNREADY:g} s "
        f"unready; client 50 new TLS connections/s (GET /version). Took {elapsed / 60:.1f} min."
    )
    print(f"Command: {cmd.strip()}")
    print()
    print(tables(rs, ss))
    for r in rs:
        if r.errors or r.failed:
            print(f"\n{r.impl} {r.case}: outcomes {r.outcomes} {r.errors}")
    for s in ss:
        if s.errors or s.failed:
            print(f"\n{s.router} {s.impl}: outcomes {s.outcomes} {s.errors}")
    write_json(a.json, {"restarts": rs, "stops": ss})
    return 0


if __name__ == "__main__":
    sys.exit(main())
