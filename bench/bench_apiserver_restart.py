"""apiserver restarts with the real start-up: how soon after its first 200 the route is back,
and how often an apiserver that stays unhealthy is checked -- vipgate against references, same
lab, same run.

Run as root from the repository root::

    .venv/bin/python -m bench.bench_apiserver_restart                    # 10 + 10 restarts, 10 min
    .venv/bin/python -m bench.bench_apiserver_restart --unhealthy-minutes 2 --trials 3   # short
    .venv/bin/python -m bench.bench_apiserver_restart --ref 1d2a2f7      # + vipgate at a commit

Settings: kube-vip's defaults, period 5 s, timeout 3 s, threshold 3, rise 1, BGP hold 9 s; 3
nodes with fake apiservers, the BIRD ECMP router, restarts on node1. The columns:

- ``vipgate``: this tree, fast period 0.2 s and readiness reads every 1 s (the defaults);
- ``vipgate@REV`` (``--ref REV``, repeatable): vipgate's ``src/`` at that commit (``git archive``
  into the lab's directory, first on ``PYTHONPATH``), the same settings: e.g. the commit before
  a gate change;
- ``grid``: this tree with ``control_plane_health_check_fast_period_seconds=0``, the 5 s grid of
  kube-vip's cadence (a check at once when the apiserver closes the kept-alive connection
  remains).

Restarts (``--trials`` each, a random 0.05-0.9 period after a ``/livez`` check reached node1's
apiserver, so the phase against the 5 s grid is random):

- ``SIGKILL``: the fake apiserver's process killed (``Apiserver.kill``), node1's next hop gone;
- ``SIGTERM``: the real SIGTERM sequence with ``--shutdown-delay-duration=3s``
  (``Apiserver.shutdown(3)``: ``/readyz`` fails at once, the port refuses after 3 s), the next
  hop gone and the port closed, then the process ends;

then, a random 0-1 s later, the process starts again playing the real start-up
(``lab.apiserver.Startup`` defaults: 403 for 0.5-1.5 s, then 500 naming the bootstrap-roles and
priority-classes post-start hooks for 0.8-1.2 s, then 200). Measured: from ``startup_done_t``
(the instant ``/livez`` answers 200 from; the "first 200") to the first route state with node1
again, seen by :class:`lab.routemon.RouteWatch` (``ip -o monitor route`` in the router
namespace); and the ERROR lines node1's vipgate logged from the restart's start to the route's
return (a routine restart should log none).

Unhealthy load (``--unhealthy-minutes``, 10): one column per node at once (``vipgate`` on node1,
the next column on node2, ...), every apiserver answering ``--unhealthy-mode`` (``fail``: 500
at once, the most checks a failure can draw; ``etcd-outage``: 500 after up to 2 s; ``forbidden``:
403) for that long; the ``/livez`` requests each apiserver received in each minute (the grid's
figure is 60 / 5 = 12), ``/readyz`` (readiness reads) apart.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.bench_health import HOLD, NODE, Bench, VipgateImpl, log, mmm
from bench.report import write_json
from lab.apiserver import Startup
from lab.cluster import Cluster
from lab.netns import Lab
from lab.topology import VIP4
from lab.wait import LabTimeout, wait_for

PERIOD = 5.0
TIMEOUT = 3.0
THRESHOLD = 3
FAST = 0.2
SHUTDOWN_DELAY = 3.0
TARGET = FAST + 0.1  # s: first 200 -> next hop back, max
FAST_ENV = "control_plane_health_check_fast_period_seconds"
KINDS = ("SIGKILL", "SIGTERM")


@dataclass
class RestartResults:
    impl: str
    back: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    errors_logged: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    error_lines: list[str] = field(default_factory=list)
    startup_lengths: list[tuple[float, float]] = field(default_factory=list)
    per_minute: list[float] = field(default_factory=list)  # /livez requests in minute i
    readyz_per_minute: float | None = None
    failures: list[str] = field(default_factory=list)


class Restarts:
    def __init__(self, bench: Bench) -> None:
        self.b = bench
        self.api = bench.api

    def _phase(self) -> None:
        self.b.wait_request(PERIOD + 2.0, path="/livez")
        time.sleep(self.b.rng.uniform(0.05, 0.9) * PERIOD)

    def _stop(self, kind: str, impl: VipgateImpl) -> None:
        """Stop node1's apiserver the `kind` way; return once its next hop is gone."""
        if kind == "SIGKILL":
            t = self.api.kill()
            self.b.gone(t, f"{impl.name}: SIGKILL -> {NODE} gone", THRESHOLD * PERIOD + 10)
            return
        t = self.api.shutdown(SHUTDOWN_DELAY)
        self.b.gone(t, f"{impl.name}: SIGTERM -> {NODE} gone", THRESHOLD * PERIOD + 10)
        wait_for(
            lambda: self.api.stats().shutdown_phase == "stopped",
            SHUTDOWN_DELAY + 5.0,
            0.02,
            what="the port closed after the shutdown delay",
        )
        self.api.stop()

    def restart(self, impl: VipgateImpl, res: RestartResults, kind: str, i: int) -> None:
        self.b.wait_all(impl)
        self._phase()
        mark = len(self.b.c.log(NODE))
        self._stop(kind, impl)
        time.sleep(self.b.rng.uniform(0.0, 1.0))
        self.api.start(startup=Startup())
        st = self.api.wait_started(15.0)
        assert st.startup_t is not None and st.startup_done_t is not None
        assert st.startup_lengths is not None
        done = st.startup_done_t
        ip = self.b.node_ip
        t_back = self.b.mon.first(
            lambda h: ip in h, st.startup_t, 2 * PERIOD + 5, f"{impl.name}: {NODE} back", done
        )
        errors = [x for x in self.b.c.log(NODE)[mark:].splitlines() if " ERROR " in x]
        res.back[kind].append(t_back - done)
        res.errors_logged[kind] += len(errors)
        res.error_lines += errors[:1] if not res.error_lines else []
        res.startup_lengths.append(st.startup_lengths)
        log(
            f"{impl.name} {kind} {i + 1}: 403 {st.startup_lengths[0]:.2f} s, 500 "
            f"{st.startup_lengths[1]:.2f} s; first 200 -> back {t_back - done:.3f} s; "
            f"{len(errors)} ERROR line(s)"
        )

    def run(self, impl: VipgateImpl, trials: int) -> RestartResults:
        res = RestartResults(impl.name)
        log(f"=== {impl.name}: restarts")
        impl.start_all()
        try:
            self.b.wait_all(impl, 60.0)
            for kind in KINDS:
                for i in range(trials):
                    try:
                        self.restart(impl, res, kind, i)
                    except LabTimeout as e:
                        res.failures.append(f"{kind} {i + 1}: {str(e).splitlines()[0]}")
                        log(f"{impl.name} {kind} {i + 1}: TIMEOUT {str(e).splitlines()[0]}")
                        if self.api.pid is None:
                            self.api.start()
                        self.b.heal(impl)
        finally:
            impl.stop_all()
            if self.api.pid is None:
                self.api.start()
        wait_for(lambda: not self.b.c.nexthops(), 30.0, 0.05, what="route gone after the phase")
        return res


def unhealthy(
    cluster: Cluster, impls: list[VipgateImpl], res: list[RestartResults], minutes: float, mode: str
) -> None:
    """One column per node at once; every apiserver unhealthy for `minutes`; /livez per minute."""
    nodes = [n.name for n in cluster.topo.nodes]
    pairs = list(zip(impls, nodes, res, strict=False))
    log(
        f"=== unhealthy load, {minutes:g} min of {mode}: "
        + ", ".join(f"{i.name} on {n}" for i, n, _ in pairs)
    )
    for impl, node, _ in pairs:
        impl.start(node)
    try:
        wait_for(
            lambda: cluster.nexthops() == {cluster.ip(n) for _, n, _ in pairs},
            60.0,
            0.05,
            what="every column announced",
        )
        for _, node, _ in pairs:
            cluster.apiservers[node].set_mode(mode)
            cluster.apiservers[node].control.reset()
        t0 = time.monotonic()
        last = {node: 0 for _, node, _ in pairs}
        for m in range(math.ceil(minutes)):
            end = t0 + min((m + 1) * 60.0, minutes * 60.0)
            time.sleep(max(0.0, end - time.monotonic()))
            for _, node, r in pairs:
                st = cluster.apiservers[node].stats()
                n = st.paths.get("/livez", 0)
                span = min(60.0, minutes * 60.0 - m * 60.0)
                r.per_minute.append((n - last[node]) * 60.0 / span)
                last[node] = n
                if m == math.ceil(minutes) - 1:
                    r.readyz_per_minute = st.paths.get("/readyz", 0) * 60.0 / (st.t - t0)
            log(
                f"minute {m + 1}: "
                + ", ".join(f"{i.name} {r.per_minute[-1]:.0f} /livez" for i, _, r in pairs)
            )
    finally:
        for _, node, _ in pairs:
            cluster.stop(node)
        for a in cluster.apiservers.values():
            a.set_mode("healthy")
    wait_for(lambda: not cluster.nexthops(), 30.0, 0.05, what="route gone after the load phase")


def ref_tree(rev: str, dest: Path) -> tuple[str, Path]:
    """vipgate's src/ at `rev` (git archive) under `dest`; (short hash, its src directory)."""
    short = subprocess.run(
        ["git", "rev-parse", "--short", rev], check=True, capture_output=True, text=True
    ).stdout.strip()
    out = dest / f"vipgate-{short}"
    out.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", rev, "src"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return short, out / "src"


def table(results: list[RestartResults], trials: int, minutes: float, mode: str) -> str:
    head = "| measure | " + " | ".join(r.impl for r in results) + " | target (vipgate) | met |"
    lines = [head, "|---" * (len(results) + 3) + "|"]
    mine = results[0]

    def row(label: str, cells: list[str], target: str = "", met: str = "") -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {target} | {met} |")

    def ok(xs: list[float]) -> str:
        return "n/a" if not xs else ("yes" if max(xs) <= TARGET + 1e-9 else "**no**")

    for kind, label in (
        ("SIGKILL", "SIGKILL, start: first 200 -> next hop back (s), min / median / max"),
        (
            "SIGTERM",
            f"SIGTERM (shutdown delay {SHUTDOWN_DELAY:g} s), start: first 200 -> back (s)",
        ),
    ):
        row(
            label,
            [mmm(r.back[kind]) for r in results],
            f"max <= {TARGET:.1f} s",
            ok(mine.back[kind]),
        )
    row(
        f"ERROR lines logged over {trials} + {trials} restarts",
        [f"{sum(r.errors_logged.values())}" for r in results],
        "0",
        "yes" if sum(mine.errors_logged.values()) == 0 else "**no**",
    )
    row(
        f"`/livez` checks per minute, minute by minute over {minutes:g} min of `{mode}`",
        [", ".join(f"{x:.0f}" for x in r.per_minute) or "n/a" for r in results],
        "report (grid: 12)",
    )
    row(
        f"`/livez` checks per minute, mean over {minutes:g} min",
        [
            f"{sum(r.per_minute) / len(r.per_minute):.1f}" if r.per_minute else "n/a"
            for r in results
        ],
        "report (grid: 12)",
    )
    row(
        "`/readyz` reads per minute meanwhile",
        [
            f"{r.readyz_per_minute:.1f}" if r.readyz_per_minute is not None else "n/a"
            for r in results
        ],
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.bench_apiserver_restart", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--trials", type=int, default=10, help="restarts of each kind (10)")
    ap.add_argument("--unhealthy-minutes", type=float, default=10.0, help="0: skip (10)")
    ap.add_argument(
        "--unhealthy-mode", default="fail", choices=("fail", "etcd-outage", "forbidden")
    )
    ap.add_argument("--ref", action="append", default=[], help="a vipgate commit (repeatable)")
    ap.add_argument("--no-grid", action="store_true", help="skip the fast-period-0 column")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write the raw results to this file")
    ap.add_argument("--keep", action="store_true", help="keep the lab's work directory (logs)")
    ap.add_argument("--table", metavar="JSON", help="print the table of an earlier --json run")
    a = ap.parse_args(argv)
    if a.table:
        saved = [RestartResults(**r) for r in json.loads(Path(a.table).read_text())]
        print(table(saved, a.trials, a.unhealthy_minutes, a.unhealthy_mode))
        return 0
    if not (1 <= a.trials <= 100 and 0 <= a.unhealthy_minutes <= 120):
        ap.error("trials 1..100, unhealthy minutes 0..120")
    if 1 + len(a.ref) + (not a.no_grid) > 3:
        ap.error("at most 3 columns (one node each for the unhealthy load)")
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces)")
    cmd = "python -m bench.bench_apiserver_restart " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    results: list[RestartResults] = []
    t_begin = time.monotonic()
    with Lab(keep_workdir=True if a.keep else None) as lab:
        if a.keep:
            log(f"lab work directory (kept): {lab.workdir}")
        cluster = Cluster.create(
            lab, 3, period=PERIOD, timeout=TIMEOUT, threshold=THRESHOLD, hold=HOLD
        )
        impls = [VipgateImpl(cluster, "vipgate", {FAST_ENV: f"{FAST:g}"})]
        for rev in a.ref:
            short, src = ref_tree(rev, lab.workdir)
            impls.append(
                VipgateImpl(
                    cluster, f"vipgate@{short}", {FAST_ENV: f"{FAST:g}", "PYTHONPATH": str(src)}
                )
            )
        if not a.no_grid:
            impls.append(VipgateImpl(cluster, "grid", {FAST_ENV: "0"}))
        mon = cluster.watch_route(VIP4, poll=1.0)
        bench = Bench(cluster, mon, random.Random(a.seed), a.trials, 0.0, 0.0, PERIOD, THRESHOLD)
        try:
            rs = Restarts(bench)
            for impl in impls:
                results.append(rs.run(impl, a.trials))
            if a.unhealthy_minutes > 0:
                unhealthy(cluster, impls, results, a.unhealthy_minutes, a.unhealthy_mode)
        finally:
            mon.stop()
    elapsed = time.monotonic() - t_begin
    lengths = [x for r in results for x in r.startup_lengths]
    print()
    print(
        f"Settings: period {PERIOD:g} s, timeout {TIMEOUT:g} s, threshold {THRESHOLD} (kube-vip's "
        f"defaults), hold {HOLD} s, vipgate fast period {FAST:g} s (grid: 0), readiness reads "
        f"every 1 s; 3 nodes, BIRD ECMP router; {a.trials} restarts of each kind, start-up "
        f"403 {min(x[0] for x in lengths):.2f}-{max(x[0] for x in lengths):.2f} s then 500 "
        f"{min(x[1] for x in lengths):.2f}-{max(x[1] for x in lengths):.2f} s"
        if lengths
        else "no restart measured"
    )
    print(f"Bench at {head}; took {elapsed / 60:.1f} min. Command: {cmd.strip()}")
    print()
    print(table(results, a.trials, a.unhealthy_minutes, a.unhealthy_mode))
    for r in results:
        for line in r.error_lines:
            print(f"\n{r.impl}, an ERROR line: {line}")
        for f in r.failures:
            print(f"\n{r.impl}: {f}")
    write_json(a.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
