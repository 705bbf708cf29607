"""De-prefer against withdraw (docs/configuration.md, "Unhealthy: withdraw or de-prefer"): failed
new connections when every node fails at once, when one apiserver dies, and while vipgate stops,
on routers without a GRACEFUL_SHUTDOWN policy; same lab, same run.

Run as root from the repository root::

    .venv/bin/python -m bench.bench_deprefer            # 3 trials where there are trials
    .venv/bin/python -m bench.bench_deprefer --quick    # 1 trial, 10 s fleet faults
    .venv/bin/python -m bench.bench_deprefer --skip kill --skip bird --skip gobgp \
        --fleet-mode etcd-outage                        # one fleet fault only

Settings: kube-vip's defaults (period 5 s, timeout 3 s, threshold 3; vipgate's own fast period
0.2 s and readiness reads), hold 9 s; 3 nodes; a client opening 50 new TLS connections/s to the
VIP (``GET /version``, which the fake apiserver answers while it answers at all) through BIRD
in its default configuration (``merge paths on``, no RFC 8326 import filter).

1. Fleet failure: every node's ``/livez`` fails for ``--fault`` seconds (30), then healthy
   again: 401 (anonymous access removed, RKE2); 500 ``[-]etcd failed`` at once with ``/readyz``
   failing too (the fake's ``etcd`` with no delay); and etcd down as kube-apiserver 1.36.2 shows
   it (the fake's ``etcd-outage``, docs/design.md "The lab": ``/livez`` 500 ``[-]etcd failed:
   reason withheld`` after a random 0-2 s, the apiserver's etcd check timeout, while ``/readyz``
   and ``/version`` answer 200). Failed requests from the fault until every next hop is back,
   and the seconds the VIP had no next hop at all, under ``withdraw`` and ``deprefer``.
2. One apiserver dies (the fake's ``refuse``: listener closed, connections aborted, as after a
   SIGKILL): time from the kill to node1's next hop leaving the kernel ECMP route, and failed
   requests until it is back, under ``withdraw`` and ``deprefer``. At each kill node1 itself
   sends 20 requests to the VIP (20/s, a kubelet pointed at the control-plane endpoint): under
   ``withdraw`` the VIP leaves node1's interface with the withdrawal and the requests go through
   the router to node2 and node3.
3. vipgate SIGTERM on node1 (drain 3 s, no router policy): time until node1 leaves the
   multipath set -- BIRD's kernel route, and GoBGP's best path and the paths tied with it
   (polled through the gobgp CLI: ~10-30 ms resolution; GoBGP forwards nothing in the lab, so no
   client there) -- the exit status and, on BIRD, failed requests.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.bench_drain import client, in_flight_at_change
from bench.bench_health import HOLD, NODE, Bench, VipgateImpl, log, mmm
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
ACTION_ENV = "control_plane_health_check_unhealthy_action"
GSHUT_ENV = "bgp_graceful_shutdown_seconds"
ACTIONS = ("withdraw", "deprefer")
# (label, the fake's mode, its delay_ms): every node's /livez fails this way at once
FLEET_FAULTS = (
    ("401 (anonymous auth off)", "unauthorized", 0),
    ("500 [-]etcd failed", "etcd", 0),  # at once, /readyz failing too
    ("etcd outage, 1.36.2 (500 in 0-2 s, /readyz 200)", "etcd-outage", 2000),
)
NO_POLICY = {"graceful_shutdown": False}


@dataclass
class Row:
    part: str
    case: str
    action: str
    trials: int = 0
    requests: int = 0
    failed: int = 0
    in_flight: int = 0  # of `failed`: in flight when the kernel ECMP route changed
    dark: list[float] = field(default_factory=list)  # seconds without any next hop
    out: list[float] = field(default_factory=list)  # event -> node1 out of the set (s)
    exit_codes: list[int | None] = field(default_factory=list)
    local: list[str] = field(default_factory=list)  # node-local requests after each kill
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def dark_seconds(mon: RouteWatch, t0: float, t1: float) -> float:
    """Seconds in [t0, t1] during which the kernel route had no next hop."""
    total, empty_since = 0.0, None
    for s in [x for x in mon.samples if x.t <= t1]:
        if s.t < t0:
            empty_since = t0 if not s.hops else None
            continue
        if not s.hops and empty_since is None:
            empty_since = s.t
        elif s.hops and empty_since is not None:
            total += s.t - empty_since
            empty_since = None
    if empty_since is not None:
        total += t1 - empty_since
    return total


def count(row: Row, reqs: list[Request], mon: RouteWatch, connections: bool = False) -> None:
    """Add `reqs` to `row`. With `connections`, a request that got any HTTP answer counts as
    reached (the fleet faults: a 401 or 500 comes from an apiserver), else only a 200."""
    oc = Counter(r.outcome for r in reqs)
    row.requests += len(reqs)
    if connections:
        row.failed += sum(v for k, v in oc.items() if k != "ok" and not k.startswith("http_"))
    else:
        row.failed += len(reqs) - oc.get("ok", 0)
    row.in_flight += len(in_flight_at_change(reqs, mon))
    for k, v in oc.items():
        row.outcomes[k] = row.outcomes.get(k, 0) + v


def settled(c: Cluster) -> None:
    """Until no vipgate counts a failed check (a fault shorter than the threshold leaves a count
    that the next trial's first failure would complete)."""
    wait_for(
        lambda: all(c.metric(n, "vipgate_probe_consecutive_failures") == 0 for n in c.vipgates),
        3 * PERIOD,
        0.2,
        what="every gate without a failure count",
    )
    time.sleep(1.0)


def fleet(
    b: Bench, impl: VipgateImpl, action: str, fault: tuple[str, str, int], secs: float
) -> Row:
    label, mode, delay_ms = fault
    row = Row("fleet", label, action)
    c = b.c
    b.wait_all(impl, 60.0)
    lc = client(c, f"client-fleet-{action}-{mode}", secs + 60.0)
    lc.start()
    try:
        time.sleep(2.0)
        t0 = time.monotonic()
        for a in c.apiservers.values():
            a.set_mode(mode, delay_ms)
        time.sleep(secs)
        t1 = time.monotonic()
        for a in c.apiservers.values():
            a.set_mode("healthy")
        b.wait_all(impl, 60.0)
        settled(c)
        t2 = time.monotonic()
    finally:
        lc.stop()
    count(row, lc.window(t0, t2), b.mon, connections=True)
    row.trials = 1
    row.dark.append(dark_seconds(b.mon, t0, t2))
    log(
        f"fleet {label} {action}: {row.failed} of {row.requests} failed, no next hop for "
        f"{row.dark[-1]:.1f} s (fault {t1 - t0:.1f} s)"
    )
    return row


def local_summary(reqs: list[Request], t0: float, detection: float) -> str:
    """20 requests from node1 itself to the VIP, started at the kill: how many were answered,
    by which nodes, and when the last one failed (against the detection time)."""
    ok = [r for r in reqs if r.ok]
    bad = [r for r in reqs if not r.ok]
    by = Counter(r.node for r in ok)
    last = f", last failure at {max(r.t for r in bad) - t0:.2f} s" if bad else ""
    who = " ".join(f"{k}:{v}" for k, v in sorted(by.items(), key=lambda kv: str(kv[0])))
    return f"{len(ok)}/{len(reqs)} answered ({who}){last}; detection {detection:.2f} s"


def kill(b: Bench, impl: VipgateImpl, action: str, trials: int) -> Row:
    row = Row("kill", "node1's apiserver dies", action)
    c = b.c
    settled(c)
    lc = client(c, f"client-kill-{action}", trials * 40.0 + 30.0)
    lc.start()
    t_begin = time.monotonic()
    try:
        for i in range(trials):
            try:
                b.wait_all(impl, 60.0)
                time.sleep(b.rng.uniform(0.0, PERIOD))
                local = LoadClient(
                    c.lab, c.topo.node(NODE).ns, c.pki.ca_cert, path="/version", rate=20,
                    duration=3.0, max_requests=20, name=f"local-{action}-{i}",
                )  # fmt: skip
                t0 = b.api.set_mode("refuse")
                local.start()
                row.out.append(b.gone(t0, f"{action}: kill -> {NODE} out of the ECMP route"))
                assert local.proc is not None
                local.proc.wait(10.0)
                row.local.append(local_summary(local.records(), t0, row.out[-1]))
                log(f"kill {action} {i + 1}/{trials}: node-local requests {row.local[-1]}")
                time.sleep(2.0)
                b.api.set_mode("healthy")
                b.wait_all(impl, 30.0)
                settled(c)
                row.trials += 1
                log(f"kill {action} {i + 1}/{trials}: out in {row.out[-1] * 1000:.0f} ms")
            except LabTimeout as e:
                row.errors.append(f"trial {i}: {str(e).splitlines()[0]}")
                b.api.set_mode("healthy")
        time.sleep(1.0)
        t_end = time.monotonic()
    finally:
        lc.stop()
    count(row, lc.window(t_begin, t_end), b.mon)
    log(f"kill {action}: {row.failed} failed of {row.requests}")
    return row


def sigterm_bird(b: Bench, impl: VipgateImpl, trials: int) -> Row:
    row = Row("sigterm", "BIRD, no import filter", "drain 3 s")
    c = b.c
    lc = client(c, "client-sigterm", trials * 30.0 + 30.0)
    lc.start()
    t_begin = time.monotonic()
    try:
        for i in range(trials):
            b.wait_all(impl, 60.0)
            time.sleep(b.rng.uniform(0.0, PERIOD))
            ew = c.watch_exit(NODE)
            t = c.signal(NODE)
            try:
                row.out.append(b.gone(t, f"SIGTERM -> {NODE} out of the ECMP route"))
                code, _ = ew.wait(15.0)
            except (LabTimeout, AssertionError) as e:
                row.errors.append(f"SIGTERM {i}: {str(e).splitlines()[0]}")
                c.stop(NODE)
                impl.start(NODE)
                continue
            row.exit_codes.append(code)
            row.trials += 1
            log(f"BIRD SIGTERM {i + 1}/{trials}: out in {row.out[-1] * 1000:.1f} ms rc={code}")
            impl.start(NODE)
        b.wait_all(impl, 60.0)
        time.sleep(1.0)
        t_end = time.monotonic()
    finally:
        lc.stop()
    count(row, lc.window(t_begin, t_end), b.mon)
    return row


def sigterm_gobgp(trials: int, rng: random.Random, keep: bool) -> Row:
    row = Row("sigterm", "GoBGP, no import policy", "drain 3 s")
    with Lab(keep_workdir=True if keep else None) as lab:
        c = Cluster.create(
            lab, 3, router_kind="gobgp", period=PERIOD, timeout=TIMEOUT, threshold=THRESHOLD,
            hold=HOLD, extra_env={GSHUT_ENV: "3"}, router_kwargs=NO_POLICY,
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
                t_out = None
                while time.monotonic() < t + 10.0:
                    if ip not in router.multipath_next_hops(VIP4):
                        t_out = time.monotonic()
                        break
                try:
                    code, _ = ew.wait(15.0)
                except AssertionError as e:
                    row.errors.append(f"SIGTERM {i}: {e}")
                    c.stop(NODE)
                    c.start(NODE)
                    continue
                if t_out is None:
                    row.errors.append(f"SIGTERM {i}: never left GoBGP's multipath set")
                else:
                    row.out.append(t_out - t)
                row.exit_codes.append(code)
                row.trials += 1
                log(f"GoBGP SIGTERM {i + 1}/{trials}: out {row.out[-1:]} rc={code}")
                c.start(NODE)
        finally:
            for n in list(c.vipgates):
                c.stop(n)
    return row


def table(rows: list[Row]) -> str:
    out = [
        "| part | case | action | trials | failed (fleet: connections; else requests) "
        "| no next hop (s) "
        "| out of the set (ms) min / median / max | exit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        failed = "n/a" if not r.requests else f"{r.failed} of {r.requests} ({r.in_flight} rehash)"
        dark = mmm(r.dark, 1.0, "{:.1f}") if r.dark else "-"
        out_ms = mmm(r.out, 1000, "{:.0f}") if r.out else "-"
        codes = ",".join(sorted({str(x) for x in r.exit_codes})) or "-"
        out.append(
            f"| {r.part} | {r.case} | {r.action} | {r.trials} | {failed} | {dark} | {out_ms} "
            f"| {codes} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.bench_deprefer", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help="1 trial, 10 s fleet faults")
    ap.add_argument("--trials", type=int, help="trials for parts 2 and 3 (default 3)")
    ap.add_argument("--fault", type=float, help="seconds of the fleet faults (default 30)")
    ap.add_argument("--skip", action="append", choices=("fleet", "kill", "bird", "gobgp"))
    ap.add_argument(
        "--fleet-mode", action="append", choices=[f[1] for f in FLEET_FAULTS],
        help="only these fleet faults (the fake apiserver's mode; default all)",
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write the raw results to this file")
    ap.add_argument("--keep", action="store_true", help="keep the labs' work directories (logs)")
    a = ap.parse_args(argv)
    skip = set(a.skip or ())
    faults = [f for f in FLEET_FAULTS if not a.fleet_mode or f[1] in a.fleet_mode]
    n = a.trials or (1 if a.quick else 3)
    secs = a.fault or (10.0 if a.quick else 30.0)
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces)")
    cmd = "python -m bench.bench_deprefer " + " ".join(argv if argv is not None else sys.argv[1:])
    rng = random.Random(a.seed)
    rows: list[Row] = []
    t_begin = time.monotonic()
    if not {"fleet", "kill", "bird"} <= skip:
        with Lab(keep_workdir=True if a.keep else None) as lab:
            c = Cluster.create(
                lab, 3, period=PERIOD, timeout=TIMEOUT, threshold=THRESHOLD, hold=HOLD,
                router_kwargs=NO_POLICY, metrics=True,
            )  # fmt: skip
            mon = c.watch_route(VIP4, poll=1.0)
            b = Bench(c, mon, rng, n, 0.0, 0.0, PERIOD, THRESHOLD)
            try:
                for action in ACTIONS:
                    impl = VipgateImpl(c, action, {ACTION_ENV: action, GSHUT_ENV: "3"})
                    impl.start_all()
                    try:
                        if "fleet" not in skip:
                            for fault in faults:
                                rows.append(fleet(b, impl, action, fault, secs))
                        if "kill" not in skip:
                            rows.append(kill(b, impl, action, n))
                        if "bird" not in skip and action == "deprefer":
                            rows.append(sigterm_bird(b, impl, n))
                    finally:
                        impl.stop_all()
                        for api in c.apiservers.values():
                            api.set_mode("healthy")
                    wait_for(lambda: not c.nexthops(), 30.0, 0.05, what="route gone")
            finally:
                mon.stop()
    if "gobgp" not in skip:
        rows.append(sigterm_gobgp(n, rng, a.keep))
    elapsed = time.monotonic() - t_begin
    print()
    print(
        f"Settings: period {PERIOD:g} s, timeout {TIMEOUT:g} s, threshold {THRESHOLD} (kube-vip's "
        f"defaults), hold {HOLD} s, drain 3 s; 3 nodes; routers without an RFC 8326 policy; "
        f"client 50 new TLS connections/s (GET /version); fleet faults {secs:g} s. "
        f"Took {elapsed / 60:.1f} min."
    )
    print(f"Command: {cmd.strip()}")
    print()
    print(table(rows))
    for r in rows:
        if r.errors or r.failed:
            print(f"\n{r.part} {r.case} {r.action}: outcomes {r.outcomes} {r.errors}")
        for i, text in enumerate(r.local, 1):
            print(f"\n{r.action}, kill {i}: 20 requests from {NODE} to the VIP: {text}")
    write_json(a.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
