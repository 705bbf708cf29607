"""Routing-table mode at kube-vip's default settings: the node's own BGP daemon (BIRD 2, FRR 8.4)
exporting the route vipgate writes into table 198, against vipgate's BGP mode, same lab, same run.

Run as root from the repository root::

    .venv/bin/python -m bench.bench_routing_table            # 10 trials each, about 15 minutes
    .venv/bin/python -m bench.bench_routing_table --quick    # 3 trials, 15 s client window
    .venv/bin/python -m bench.bench_routing_table --only table-bird   # one column (repeatable)

Settings: period 5 s, timeout 3 s, threshold 3 -- kube-vip's defaults -- with vipgate's own
defaults for the rest (fast period 0.2 s, readiness reads every 1 s, a 3 s drain on SIGTERM);
BGP hold 9 s; 3 nodes, the BIRD ECMP router with the RFC 8326 filter, faults on node1. Three
columns, one after the other in the same lab:

- ``bgp``: vipgate's own BGP speaker on each node (the reference);
- ``table-bird``: vipgate in routing-table mode (``vip_routingtable=true``, table 198, protocol
  248) and BIRD 2 on each node peering with the router, learning table 198 and exporting it
  through the metric filter of docs/routers.md ("Node daemon"): the drain's metric 65535 becomes
  AS-path prepend and GRACEFUL_SHUTDOWN;
- ``table-frr``: the same with FRR 8.4 (zebra's ``ip import-table 198``, bgpd's ``redistribute
  table 198`` and the VIP's connected route; the metric does not reach BGP, so the drain is a
  plain path until the withdrawal).

Measures (machinery and clocks of :mod:`bench.bench_health`; the route is the router's kernel
ECMP route seen by :class:`lab.routemon.RouteWatch`):

- crash: node1's apiserver SIGKILLed a random 0.05-0.9 period after a ``/livez`` check reached
  it -> node1's next hop gone at the router; in table mode also -> the route gone from node1's
  table 198 (``ip -o monitor route`` in node1, stamped on arrival): the detection, and the node
  daemon's propagation (table -> router) apart; then (0-1 s later) the apiserver starts again ->
  listening -> back at the router;
- failed new connections over a crash: 50 new TLS connections/s to the VIP (``GET /livez``), the
  crash half a period after a check, every request that started in the window after it and got
  no 200 (:meth:`bench.bench_detect.Detect.client_window`);
- SIGTERM of node1's vipgate -> node1 out of the router's multipath set, -> exit, exit status;
  50 new TLS connections/s (``GET /version``) through all the stops, failed ones counted and
  those in flight at a route change named (:func:`bench.bench_drain.sigterms_bird`).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.bench_detect import Detect, DetectResults
from bench.bench_drain import StopResult, sigterms_bird
from bench.bench_health import HOLD, NODE, Bench, VipgateImpl, log, mmm
from bench.report import write_json
from lab.cluster import Cluster
from lab.netns import Lab
from lab.routers import Router
from lab.topology import VIP4, VIP4_ADDR, node_daemon
from lab.wait import LabTimeout, wait_for

PERIOD = 5.0
TIMEOUT = 3.0
THRESHOLD = 3
DRAIN = 3.0  # bgp_graceful_shutdown_seconds: vipgate's default
TABLE = 198
TABLE_ENV = {"bgp_enable": "false", "bgp_peers": "", "vip_routingtable": "true"}
COLUMNS: dict[str, str | None] = {"bgp": None, "table-bird": "bird", "table-frr": "frr"}


@dataclass
class TableResults:
    column: str
    crash_gone: list[float] = field(default_factory=list)  # crash -> gone at the router
    crash_table: list[float] = field(default_factory=list)  # crash -> gone from node1's table
    propagation: list[float] = field(default_factory=list)  # table -> router
    crash_back: list[float] = field(default_factory=list)
    crash_failed: int | None = None
    crash_total: int | None = None
    crash_outcomes: dict[str, int] = field(default_factory=dict)
    stop: dict[str, Any] = field(default_factory=dict)  # StopResult as a dict
    errors: list[str] = field(default_factory=list)


class TableWatch:
    """When the VIP's route left a node's table: ``ip -o monitor route`` in the node, each
    ``Deleted`` line of the VIP in `table` stamped with ``time.monotonic()`` on arrival."""

    def __init__(self, lab: Lab, ns: str, address: str, table: int) -> None:
        self.key = (address, f"table {table} ")
        self.deleted: list[float] = []
        self._lock = threading.Lock()
        self.proc = lab.popen(
            ns, ["ip", "-o", "monitor", "route"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self._lab = lab
        threading.Thread(target=self._read, daemon=True, name=f"tablewatch-{ns}").start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            t = time.monotonic()
            toks = raw.decode(errors="replace").replace("\\", " ").split()
            if toks[:2] == ["Deleted", self.key[0]] and self.key[1] in " ".join(toks) + " ":
                with self._lock:
                    self.deleted.append(t)

    def deleted_after(self, t0: float, timeout: float = 10.0) -> float:
        """The first deletion at or after `t0` (waits up to `timeout` for it)."""

        def first() -> float | None:
            with self._lock:
                return next((t for t in self.deleted if t >= t0), None)

        wait_for(lambda: first() is not None, timeout, 0.01, what="route gone from the table")
        found = first()
        assert found is not None
        return found

    def stop(self) -> None:
        self._lab.stop(self.proc, 1.0)


class Column:
    """One column: vipgate in one mode, with the node daemons it needs."""

    def __init__(self, b: Bench, name: str, trials: int, window: float) -> None:
        self.b = b
        self.name = name
        self.kind = COLUMNS[name]
        self.trials = trials
        self.detect = Detect(b, window, 5.0)
        env = dict(TABLE_ENV) if self.kind else {}
        self.impl = VipgateImpl(b.c, name, env)
        self.daemons: list[Router] = []
        self.res = TableResults(name)

    def _guard(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except (LabTimeout, AssertionError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            self.res.errors.append(f"{what}: {first}")
            log(f"{self.name} {what}: FAILED {first}")
            api = self.b.api
            if api.pid is None:
                api.start()
            self.b.heal(self.impl)

    def crash(self, i: int, watch: TableWatch | None) -> None:
        b, api = self.b, self.b.api
        b.wait_all(self.impl)
        self.detect._phase()
        t_f = api.kill()
        g = b.gone(t_f, f"{self.name}: crash -> {NODE} gone", THRESHOLD * PERIOD + 10)
        line = f"{self.name} crash {i + 1}: gone at the router {g:.3f} s"
        if watch is not None:
            t_tab = watch.deleted_after(t_f) - t_f
            self.res.crash_table.append(t_tab)
            self.res.propagation.append(g - t_tab)
            line += f" (out of the table {t_tab:.3f} s, propagation {g - t_tab:.3f} s)"
        time.sleep(b.rng.uniform(0.0, 1.0))
        api.start()
        t_l = api.stats().listen_t
        assert t_l is not None
        back = b.back(t_l, f"{self.name}: listening -> {NODE} back", 2 * PERIOD + 5)
        self.res.crash_gone.append(g)
        self.res.crash_back.append(back)
        log(f"{line}, back {back:.3f} s")

    def run(self) -> TableResults:
        c = self.b.c
        log(f"=== {self.name}")
        watch = None
        try:
            if self.kind is not None:
                self.daemons = [node_daemon(c.topo, n, self.kind, TABLE) for n in c.topo.nodes]
                watch = TableWatch(c.lab, c.topo.node(NODE).ns, VIP4_ADDR, TABLE)
            self.impl.start_all()
            self.b.wait_all(self.impl, 60.0)
            for i in range(self.trials):
                self._guard(f"crash {i}", lambda i=i: self.crash(i, watch))  # type: ignore[misc]
            dres = DetectResults(self.name)
            self._guard("client over a crash", lambda: self.detect.client_window(self.impl, dres))
            self.res.crash_failed, self.res.crash_total = dres.failed, dres.total
            self.res.crash_outcomes = dres.outcomes
            self.impl.stop_all()
            stop: StopResult = sigterms_bird(self.b, self.impl, self.trials)
            self.res.stop = asdict(stop)
            self.res.errors += stop.errors
        finally:
            self.impl.stop_all()
            if watch is not None:
                watch.stop()
            for d in self.daemons:
                d.stop()
        wait_for(lambda: not c.nexthops(), 30.0, 0.05, what="route gone after the column")
        return self.res


def table(results: list[TableResults]) -> str:
    head = "| measure | " + " | ".join(r.column for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def na(xs: list[float], scale: float = 1.0, fmt: str = "{:.3f}") -> str:
        return mmm(xs, scale, fmt) if xs else "n/a"

    row("apiserver SIGKILL -> gone at the router (s)", [na(r.crash_gone) for r in results])
    row("  of it: SIGKILL -> out of node1's table 198 (s)", [na(r.crash_table) for r in results])
    row("  of it: table -> router, the node daemon (s)", [na(r.propagation) for r in results])
    row("apiserver listening again -> back (s)", [na(r.crash_back) for r in results])
    row(
        "failed new connections at 50/s over a crash",
        ["n/a" if r.crash_failed is None else f"{r.crash_failed} of {r.crash_total}"
         for r in results],
    )  # fmt: skip
    row(
        "vipgate SIGTERM -> out of the multipath set (ms)",
        [na(r.stop.get("left", []), 1000.0, "{:.1f}") for r in results],
    )
    row("vipgate SIGTERM -> exit (s)", [na(r.stop.get("exit", [])) for r in results])
    row(
        "exit status",
        [", ".join(sorted({str(x) for x in r.stop.get("codes", [])})) or "n/a" for r in results],
    )
    row(
        "failed new connections at 50/s over the SIGTERMs (in flight at a route change)",
        [
            "n/a"
            if r.stop.get("failed") is None
            else f"{r.stop['failed']} of {r.stop['requests']} ({r.stop['in_flight']})"
            for r in results
        ],
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.bench_routing_table", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help="3 trials, 15 s client window")
    ap.add_argument("--only", action="append", choices=tuple(COLUMNS), default=[])
    ap.add_argument("--trials", type=int)
    ap.add_argument("--window", type=float)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write the raw results to this file")
    ap.add_argument("--keep", action="store_true", help="keep the lab's work directory (logs)")
    a = ap.parse_args(argv)
    trials = a.trials or (3 if a.quick else 10)
    window = a.window or (15.0 if a.quick else 20.0)
    if not (1 <= trials <= 100 and 5 <= window <= 300):
        ap.error("trials 1..100, window 5..300 s")
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces)")
    only = a.only or list(COLUMNS)
    cmd = "python -m bench.bench_routing_table " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    results: list[TableResults] = []
    t_begin = time.monotonic()
    with Lab(keep_workdir=True if a.keep else None) as lab:
        if a.keep:
            log(f"lab work directory (kept): {lab.workdir}")
        cluster = Cluster.create(
            lab, 3, period=PERIOD, timeout=TIMEOUT, threshold=THRESHOLD, hold=HOLD,
            graceful_shutdown=DRAIN,
        )  # fmt: skip
        mon = cluster.watch_route(VIP4, poll=1.0)
        bench = Bench(cluster, mon, random.Random(a.seed), trials, window, 5.0, PERIOD, THRESHOLD)
        try:
            for name in only:
                results.append(Column(bench, name, trials, window).run())
        finally:
            mon.stop()
    elapsed = time.monotonic() - t_begin
    print()
    print(
        f"Settings: period {PERIOD:g} s, timeout {TIMEOUT:g} s, threshold {THRESHOLD} (kube-vip's "
        f"defaults), vipgate's fast period 0.2 s, readiness reads every 1 s, drain {DRAIN:g} s; "
        f"hold {HOLD} s; 3 nodes, BIRD ECMP router with the RFC 8326 filter; node daemons BIRD "
        f"2 (metric filter) and FRR 8.4 (import-table + connected); {trials} trials, client "
        f"window {window:g} s at 50 new TLS connections/s. Took {elapsed / 60:.1f} min."
    )
    print(f"Command: {cmd.strip()}")
    print()
    print(table(results))
    for r in results:
        print(f"\n{r.column}: outcomes over a crash {r.crash_outcomes}, "
              f"over the SIGTERMs {r.stop.get('outcomes')}")  # fmt: skip
        for err in r.errors:
            print(f"  {err}")
    write_json(a.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
