"""Health-gated failover benchmark: vipgate vs ExaBGP 5.0.15's healthcheck, same lab, same run.

Run as root from the repository root::

    .venv/bin/python -m bench.bench_health            # 10 trials, 30 s windows, 60 s footprint
    .venv/bin/python -m bench.bench_health --quick    # sanity run (3 trials, 10 s, 15 s)
    .venv/bin/python -m bench.bench_health --only vipgate

One lab (docs/design.md, "The lab"): 3 nodes with fake kube-apiservers, the BIRD ECMP router,
a client namespace. Settings: period 1 s, timeout 1 s, threshold (fall) 3, rise 1, hold 9 s. First
vipgate runs on the three nodes (``python -m vipgate manager``, metrics server on ``:2112``),
then ExaBGP with its healthcheck (curl with the lab CA; from ``.venv-bench``, created if
missing). Faults are always injected on node1.

What is measured (all times from CLOCK_MONOTONIC, shared by every process):

- refused -> gone: ``set_mode("refuse")`` returns the instant the listener closed; the router's
  kernel route is watched by :class:`lab.routemon.RouteWatch` (``ip -o monitor route`` in the
  router namespace, each change stamped with the arrival of the monitor line stating the whole
  route) and the first route state after the fault without node1's next hop gives the end
  time. The fault is injected a random 0.05-0.9 s after a check reached the apiserver (its
  request counter, polled every 1 ms), so the check phase is random and the semantic bound is
  known: the third failing check is due three periods after that request, and ``excess`` is
  what the implementation adds after it.
- hung -> gone: the same with ``set_mode("hang")`` (TCP and TLS accepted, no answer).
- back: after each refused trial, a random 0-1 s later, ``set_mode("healthy")`` -> next hop back.
- SIGTERM -> gone: signal to the speaker (vipgate / exabgp) -> next hop gone; then restarted.
- failed requests: the lab load client (``lab.client``) opens 50 new TLS connections per second
  through the router to the VIP; node1's apiserver refuses (or hangs) for a window; every
  request that started in the window and did not get a 200 counts.
- footprint over a window with everything healthy: RSS of the speaker's processes (vipgate: one;
  ExaBGP: the server and its healthcheck), CPU seconds (utime+stime, reaped children included,
  so ExaBGP's curl counts), TLS handshakes node1's apiserver accepted.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bench.exabgp import EXABGP_VERSION, ExabgpSpeaker, descendants, ensure_exabgp
from bench.report import write_json
from lab.apiserver import Apiserver
from lab.client import LoadClient, summarize
from lab.cluster import Cluster
from lab.netns import Lab
from lab.routemon import RouteWatch, exactly
from lab.topology import VIP4
from lab.wait import LabTimeout, wait_for

PERIOD = 1.0
TIMEOUT = 1.0
THRESHOLD = 3
HOLD = 9
NODE = "node1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# /proc
# ---------------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of `pid` (reaped children included), seconds."""
    f = _stat_fields(pid)
    if f is None:
        return math.nan
    # after the comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return sum(int(x) for x in f[11:15]) / CLK_TCK


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


TRANSIENT = {"curl", "sh", "dash", "bash"}  # ExaBGP's per-check command (counted via cutime)


def age(pid: int) -> float:
    """Seconds since `pid` started (0 if it is gone)."""
    f = _stat_fields(pid)
    if f is None:
        return 0.0
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - int(f[19]) / CLK_TCK  # starttime: field 22 of stat, 19 after the comm


def long_lived_tree(pid: int) -> list[int]:
    """`pid` and its descendants, without the per-check ones (curl, its shell, a fork not yet
    exec'd): those are named like a shell or curl, or younger than 2 s."""
    return [pid] + [p for p in descendants(pid) if comm(p) not in TRANSIENT and age(p) >= 2.0]


# ---------------------------------------------------------------------------------------------
# The two implementations behind one interface
# ---------------------------------------------------------------------------------------------


class Impl(Protocol):
    name: str

    def start(self, node: str) -> None: ...
    def start_all(self) -> None: ...
    def sigterm(self, node: str) -> float: ...
    def wait_exit(self, node: str, timeout: float) -> int | None: ...
    def stop_all(self) -> None: ...
    def pid(self, node: str) -> int: ...
    def describe(self) -> str: ...


class VipgateImpl:
    """vipgate on every node; `overrides` are environment settings on top of the cluster's."""

    def __init__(
        self, cluster: Cluster, name: str = "vipgate", overrides: dict[str, str] | None = None
    ) -> None:
        self.c = cluster
        self.name = name
        self.overrides = dict(overrides or {})

    def start(self, node: str) -> None:
        self.c.start(node, self.overrides)

    def start_all(self) -> None:
        self.c.start_all(self.overrides)

    def sigterm(self, node: str) -> float:
        return self.c.signal(node, signal.SIGTERM)

    def wait_exit(self, node: str, timeout: float) -> int | None:
        try:
            return self.c.wait_exit(node, timeout)
        except AssertionError:
            return None

    def stop_all(self) -> None:
        for n in list(self.c.vipgates):
            self.c.stop(n)

    def pid(self, node: str) -> int:
        p = self.c.vipgates[node].proc
        assert p is not None
        return p.pid

    def describe(self) -> str:
        return "\n".join(f"--- {n}\n{self.c.log(n)[-1500:]}" for n in self.c.vipgates)


class ExabgpImpl:
    """ExaBGP + healthcheck on every node (healthcheck interval, timeout, fast interval)."""

    def __init__(
        self,
        cluster: Cluster,
        python: Path,
        name: str = "exabgp",
        *,
        period: int = 1,
        timeout: int = 1,
        fast_interval: int | None = None,
    ) -> None:
        self.c = cluster
        self.name = name
        self.speakers = {
            n.name: ExabgpSpeaker(
                cluster.lab,
                n,
                python,
                cluster.pki.ca_cert,
                hold=HOLD,
                period=period,
                timeout=timeout,
                fast_interval=fast_interval,
            )
            for n in cluster.topo.nodes
        }

    def start(self, node: str) -> None:
        self.c.topo.add_vip(self.c.topo.node(node))  # --no-ip-setup: the VIP is ours to place
        self.speakers[node].start()

    def start_all(self) -> None:
        for n in self.speakers:
            self.start(n)

    def sigterm(self, node: str) -> float:
        t = time.monotonic()
        self.speakers[node].signal(signal.SIGTERM)
        return t

    def wait_exit(self, node: str, timeout: float) -> int | None:
        return self.speakers[node].wait_exit(timeout)

    def stop_all(self) -> None:
        for s in self.speakers.values():
            s.stop()

    def pid(self, node: str) -> int:
        pid = self.speakers[node].pid
        assert pid is not None
        return pid

    def describe(self) -> str:
        return "\n".join(f"--- {n}\n{s.log()[-4000:]}" for n, s in self.speakers.items())


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------


@dataclass
class Results:
    impl: str
    refused_gone: list[float] = field(default_factory=list)
    refused_excess: list[float] = field(default_factory=list)
    hung_gone: list[float] = field(default_factory=list)
    back: list[float] = field(default_factory=list)
    back_after_hang: list[float] = field(default_factory=list)
    sigterm_gone: list[float] = field(default_factory=list)
    sigterm_exit: list[float] = field(default_factory=list)
    exit_codes: list[int | None] = field(default_factory=list)
    failed_refused: int | None = None
    total_refused: int | None = None
    outcomes_refused: dict[str, int] = field(default_factory=dict)
    failed_hung: int | None = None
    total_hung: int | None = None
    outcomes_hung: dict[str, int] = field(default_factory=dict)
    rss_mb: float | None = None  # max over the window (sampled every second)
    rss_first_mb: float | None = None
    rss_last_mb: float | None = None
    processes: int | None = None
    cpu_s: float | None = None
    cpu_window: float | None = None
    handshakes: int | None = None
    requests: int | None = None
    errors: list[str] = field(default_factory=list)


class Bench:
    def __init__(
        self,
        cluster: Cluster,
        monitor: RouteWatch,
        rng: random.Random,
        trials: int,
        window: float,
        footprint: float,
        period: float = PERIOD,
        threshold: int = THRESHOLD,
    ) -> None:
        self.period = period
        self.threshold = threshold
        self.c = cluster
        self.mon = monitor
        self.rng = rng
        self.trials = trials
        self.window = window
        self.footprint_window = footprint
        self.all = {n.ip4 for n in cluster.topo.nodes}
        self.node_ip = cluster.topo.node(NODE).ip4
        self.api: Apiserver = cluster.apiservers[NODE]

    # -- helpers ---------------------------------------------------------------------------
    def wait_all(self, impl: Impl, timeout: float = 30.0) -> None:
        def ok() -> bool:
            return self.mon.current() == self.all and self.c.nexthops() == self.all

        wait_for(
            ok,
            timeout,
            0.01,
            what=f"{impl.name}: all next hops",
            describe=lambda: f"now {sorted(self.c.nexthops())}\n{impl.describe()}",
        )

    def heal(self, impl: Impl) -> None:
        for a in self.c.apiservers.values():
            a.set_mode("healthy")
        self.wait_all(impl, 40.0)

    def wait_request(self, timeout: float = 3.0, path: str | None = None) -> float:
        """Poll node1's apiserver (1 ms) until a request (for `path`, if given) arrives;
        return its monotonic time."""

        def count() -> tuple[int, float]:
            s = self.api.stats()
            return (s.requests if path is None else s.paths.get(path, 0)), s.t

        r0, _ = count()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n, t = count()
            if n > r0:
                return t
            time.sleep(0.001)
        raise LabTimeout(f"no health check reached {NODE}'s apiserver within {timeout}s")

    def gone(self, after: float, what: str, timeout: float = 15.0) -> float:
        """Seconds from `after` to the first route state after it without node1."""
        ip = self.node_ip
        return self.mon.first(lambda h: ip not in h, after, timeout, what, t_ref=after) - after

    def back(self, after: float, what: str, timeout: float = 15.0) -> float:
        """Seconds from `after` to the first route state after it with all nodes (node1 back)."""
        return self.mon.first(exactly(self.all), after, timeout, what, t_ref=after) - after

    def router_log(self) -> str:
        router = self.c.topo.router
        if router is None:
            return ""
        try:
            return (router.dir / "bird.log").read_text(errors="replace")
        except OSError:
            return router.log()

    # -- scenarios -------------------------------------------------------------------------
    def fault_trials(self, impl: Impl, mode: str, res: Results) -> None:
        for i in range(self.trials):
            try:
                self.wait_all(impl)
                t_req = self.wait_request()
                time.sleep(self.rng.uniform(0.05, 0.9) * self.period)
                t_f = self.api.set_mode(mode)
                g = self.gone(t_f, f"{impl.name}: {mode} -> {NODE} gone")
                time.sleep(self.rng.uniform(0.0, self.period))
                t_h = self.api.set_mode("healthy")
                b = self.back(t_h, f"{impl.name}: healthy -> {NODE} back")
            except LabTimeout as e:
                res.errors.append(f"{mode} trial {i}: {e}".splitlines()[0])
                log(f"{impl.name} {mode} trial {i}: TIMEOUT {str(e).splitlines()[0]}")
                self.heal(impl)
                continue
            if mode == "refuse":
                res.refused_gone.append(g)
                res.refused_excess.append(t_f + g - (t_req + self.threshold * self.period))
                res.back.append(b)
            else:
                res.hung_gone.append(g)
                res.back_after_hang.append(b)
            log(f"{impl.name} {mode} trial {i + 1}/{self.trials}: gone {g:.3f} s, back {b:.3f} s")

    def sigterm_trials(self, impl: Impl, res: Results) -> None:
        for i in range(self.trials):
            try:
                self.wait_all(impl)
                time.sleep(self.rng.uniform(0.0, self.period))
                t = impl.sigterm(NODE)
                g = self.gone(t, f"{impl.name}: SIGTERM -> {NODE} gone")
                rc = impl.wait_exit(NODE, 5.0)
                t_exit = time.monotonic() - t
            except LabTimeout as e:
                res.errors.append(f"SIGTERM trial {i}: {e}".splitlines()[0])
                log(f"{impl.name} SIGTERM trial {i}: TIMEOUT {str(e).splitlines()[0]}")
                rc, g, t_exit = None, math.nan, math.nan
            res.exit_codes.append(rc)
            if not math.isnan(g):
                res.sigterm_gone.append(g)
                res.sigterm_exit.append(t_exit)
            log(f"{impl.name} SIGTERM trial {i + 1}/{self.trials}: gone {g * 1000:.1f} ms, rc={rc}")
            if rc is None:
                impl.stop_all()
                impl.start_all()
            else:
                impl.start(NODE)
            self.wait_all(impl, 60.0)

    def client_window(self, impl: Impl, mode: str, res: Results) -> None:
        self.wait_all(impl)
        time.sleep(2.0)  # let the route settle (BIRD, conntrack-free forwarding)
        lc = LoadClient(
            self.c.lab,
            self.c.topo.client_ns,
            self.c.pki.ca_cert,
            rate=50,
            duration=self.window + 3.0,
            timeout=1.0,
            name=f"client-{impl.name}-{mode}",
        )
        # Same phase for both implementations: half a period after a check reached node1's
        # apiserver (the number of failures depends on where in the period the fault lands).
        # The check is seen before the client runs (the client's requests count there too);
        # the fault goes at that check's time + n periods + 0.5 s, n the first that leaves the
        # client 0.3 s to start. Exact for vipgate's fixed cadence; ExaBGP's checks drift by
        # the check's duration (tens of ms) per period.
        t_req = self.wait_request()
        t_start = lc.start()
        try:
            n = max(1, math.ceil((t_start + 0.3 - t_req - 0.5 * self.period) / self.period))
            time.sleep(max(0.0, t_req + (n + 0.5) * self.period - time.monotonic()))
            t_f = self.api.set_mode(mode)
            lc.wait(self.window + 15.0)
        finally:
            lc.stop()
            self.api.set_mode("healthy")
        reqs = lc.window(t_f, t_f + self.window)
        s = summarize(reqs)
        if mode == "refuse":
            res.failed_refused, res.total_refused, res.outcomes_refused = (
                s.failed,
                s.total,
                s.outcomes,
            )
        else:
            res.failed_hung, res.total_hung, res.outcomes_hung = s.failed, s.total, s.outcomes
        log(f"{impl.name} client during {mode}: {s}")
        self.wait_all(impl, 40.0)

    def footprint(self, impl: Impl, res: Results) -> None:
        self.wait_all(impl)
        time.sleep(3.0)
        pid = impl.pid(NODE)
        tree0 = long_lived_tree(pid)
        self.api.control.reset()
        s0 = self.api.stats()
        cpu0 = {p: cpu_seconds(p) for p in tree0}
        t0 = time.monotonic()
        rss: list[int] = []
        nproc = len(tree0)
        while time.monotonic() - t0 < self.footprint_window:
            tree = long_lived_tree(pid)
            nproc = max(nproc, len(tree))
            rss.append(sum(rss_bytes(p) for p in tree))
            time.sleep(min(1.0, max(0.0, self.footprint_window - (time.monotonic() - t0))))
        cpu1 = {p: cpu_seconds(p) for p in tree0}
        s1 = self.api.stats()
        elapsed = time.monotonic() - t0
        res.rss_mb = max(rss) / 1e6
        res.rss_first_mb, res.rss_last_mb = rss[0] / 1e6, rss[-1] / 1e6
        res.processes = nproc
        res.cpu_s = sum(cpu1[p] - cpu0[p] for p in tree0) * 60.0 / elapsed
        res.cpu_window = elapsed
        res.handshakes = s1.handshakes - s0.handshakes
        res.requests = s1.requests - s0.requests
        log(
            f"{impl.name} footprint over {elapsed:.1f} s: RSS {res.rss_mb:.1f} MB max "
            f"({res.rss_first_mb:.1f} first, {res.rss_last_mb:.1f} last) in {nproc} "
            f"process(es), CPU {res.cpu_s:.2f} s/60 s, {res.handshakes} handshakes, "
            f"{res.requests} requests"
        )

    def run(self, impl: Impl) -> Results:
        res = Results(impl.name)
        log(f"=== {impl.name}: starting on {len(self.all)} nodes")
        impl.start_all()
        try:
            try:
                self.wait_all(impl, 60.0)
            except LabTimeout as e:  # seen once with ExaBGP: sessions flapping at the start
                log(f"{impl.name}: not all next hops after 60 s; restarting once\n{e}")
                log(f"router log:\n{self.router_log()[-4000:]}")
                res.errors.append(f"start: {str(e).splitlines()[0]} (restarted once)")
                impl.stop_all()
                time.sleep(12.0)  # BIRD's error wait (at most 10 s in the lab)
                impl.start_all()
                self.wait_all(impl, 60.0)
            self.fault_trials(impl, "refuse", res)
            self.fault_trials(impl, "hang", res)
            self.sigterm_trials(impl, res)
            self.client_window(impl, "refuse", res)
            self.client_window(impl, "hang", res)
            self.footprint(impl, res)
        finally:
            impl.stop_all()
            for a in self.c.apiservers.values():
                a.set_mode("healthy")
        # Next phase starts from an empty ECMP set.
        wait_for(lambda: not self.c.nexthops(), 30.0, 0.05, what="route gone after the phase")
        return res


# ---------------------------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------------------------


def mmm(xs: Iterable[float], scale: float = 1.0, fmt: str = "{:.3f}") -> str:
    v = [x * scale for x in xs if not math.isnan(x)]
    if not v:
        return "n/a"
    return " / ".join(fmt.format(x) for x in (min(v), statistics.median(v), max(v)))


def med(xs: Iterable[float]) -> float | None:
    v = [x for x in xs if not math.isnan(x)]
    return statistics.median(v) if v else None


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def table(v: Results | None, e: Results | None) -> str:
    def col(r: Results | None, get: Callable[[Results], str]) -> str:
        return get(r) if r is not None else "-"

    rows: list[tuple[str, str, str, str, str, str]] = []

    def series(
        label: str,
        attr: str,
        scale: float,
        fmt: str,
        target: str,
        check: Callable[[list[float]], bool] | None,
        show_ratio: bool = True,
    ) -> None:
        vs: list[float] = getattr(v, attr) if v else []
        es: list[float] = getattr(e, attr) if e else []
        ok = check(vs) if (check is not None and vs) else None
        rows.append(
            (
                label,
                col(v, lambda r: mmm(getattr(r, attr), scale, fmt)),
                col(e, lambda r: mmm(getattr(r, attr), scale, fmt)),
                ratio(med(vs), med(es)) if show_ratio else "",
                target,
                verdict(ok),
            )
        )

    def single(
        label: str, vv: float | None, ev: float | None, fmt: str, target: str, ok: bool | None
    ) -> None:
        rows.append(
            (
                label,
                "-" if vv is None else fmt.format(vv),
                "-" if ev is None else fmt.format(ev),
                ratio(vv, ev),
                target,
                verdict(ok),
            )
        )

    series(
        "refused apiserver -> next hop gone (s)",
        "refused_gone",
        1,
        "{:.3f}",
        "2-3 s + <= 20 ms",
        lambda xs: min(xs) >= 2.0 and max(xs) <= 3.020,
    )
    series(
        "  excess over the 3rd failing check's due time (ms)",
        "refused_excess",
        1000,
        "{:.1f}",
        "<= 20 ms",
        lambda xs: max(xs) <= 0.020,
        show_ratio=False,
    )
    series(
        "hung apiserver -> next hop gone (s)",
        "hung_gone",
        1,
        "{:.3f}",
        "max <= 4.0 s",
        lambda xs: max(xs) <= 4.0,
    )
    series(
        "apiserver healthy again -> next hop back (s)",
        "back",
        1,
        "{:.3f}",
        f"<= {PERIOD + 0.05:.2f} s",
        lambda xs: max(xs) <= PERIOD + 0.05,
    )
    series("  (after a hung fault) -> back (s)", "back_after_hang", 1, "{:.3f}", "-", None)
    series(
        "speaker SIGTERM -> next hop gone (ms)",
        "sigterm_gone",
        1000,
        "{:.1f}",
        "median <= 20 ms",
        lambda xs: statistics.median(xs) <= 0.020,
    )
    series(
        "  SIGTERM -> process exited (s)",
        "sigterm_exit",
        1,
        "{:.3f}",
        "< 3 s, exit 0",
        lambda xs: max(xs) < 3.0 and v is not None and all(c == 0 for c in v.exit_codes),
    )

    def failed(r: Results | None, kind: str) -> str:
        if r is None:
            return "-"
        f, t = getattr(r, f"failed_{kind}"), getattr(r, f"total_{kind}")
        return "n/a" if f is None else f"{f} of {t}"

    for kind, label in (("refused", "refused"), ("hung", "hung")):
        vf = getattr(v, f"failed_{kind}") if v else None
        ef = getattr(e, f"failed_{kind}") if e else None
        rows.append(
            (
                f"failed requests at 50 TLS conn/s, {label} fault",
                failed(v, kind),
                failed(e, kind),
                ratio(vf, ef),
                "report (reference: ExaBGP ~49 / ~94 of 1500)",
                "",
            )
        )
    single(
        "RSS (MB), all processes of the speaker",
        v.rss_mb if v else None,
        e.rss_mb if e else None,
        "{:.1f}",
        "<= 40 MB, 1 process",
        None if v is None or v.rss_mb is None else v.rss_mb <= 40.0 and v.processes == 1,
    )
    rows.append(
        (
            "  processes",
            str(v.processes) if v else "-",
            str(e.processes) if e else "-",
            "",
            "1",
            "",
        )
    )
    single(
        "CPU (s per 60 s), children included",
        v.cpu_s if v else None,
        e.cpu_s if e else None,
        "{:.2f}",
        "<= 0.3 s",
        None if v is None or v.cpu_s is None else v.cpu_s <= 0.3,
    )
    single(
        "TLS handshakes accepted by the apiserver in the window",
        float(v.handshakes) if v and v.handshakes is not None else None,
        float(e.handshakes) if e and e.handshakes is not None else None,
        "{:.0f}",
        "<= 1",
        None if v is None or v.handshakes is None else v.handshakes <= 1,
    )
    head = (
        "| measure | vipgate min / median / max | ExaBGP 5.0.15 min / median / max "
        "| ratio (median, vipgate/ExaBGP) | target (vipgate) | vipgate meets |"
    )
    lines = [head, "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.bench_health", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help="3 trials, 10 s windows, 15 s footprint")
    ap.add_argument("--only", choices=("vipgate", "exabgp"), help="run one implementation only")
    ap.add_argument("--trials", type=int, help="trials per latency measure (default 10)")
    ap.add_argument("--window", type=float, help="client fault window, s (default 30)")
    ap.add_argument("--footprint", type=float, help="footprint window, s (default 60)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write the raw results to this file")
    ap.add_argument("--keep", action="store_true", help="keep the lab's work directory (logs)")
    a = ap.parse_args(argv)
    trials = a.trials or (3 if a.quick else 10)
    window = a.window or (10.0 if a.quick else 30.0)
    footprint = a.footprint or (15.0 if a.quick else 60.0)
    if not (1 <= trials <= 100 and 1 <= window <= 300 and 5 <= footprint <= 600):
        ap.error("trials 1..100, window 1..300 s, footprint 5..600 s")
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces)")
    exa_python = ensure_exabgp() if a.only != "vipgate" else None
    cmd = "python -m bench.bench_health " + " ".join(argv if argv is not None else sys.argv[1:])
    results: dict[str, Results] = {}
    t_begin = time.monotonic()
    with Lab(keep_workdir=True if a.keep else None) as lab:
        if a.keep:
            log(f"lab work directory (kept): {lab.workdir}")
        cluster = Cluster.create(
            lab, 3, period=PERIOD, timeout=TIMEOUT, threshold=THRESHOLD, hold=HOLD, metrics=True
        )
        # Each route change arrives as one whole-route monitor line (BIRD replaces the ECMP
        # route in place) and is stamped with that line's arrival. The fallback re-read is only
        # a safety net: a change it catches first is stamped when the read completes (a few ms
        # late), so it runs rarely (1 s instead of the default 50 ms).
        mon = cluster.watch_route(VIP4, poll=1.0)
        bench = Bench(cluster, mon, random.Random(a.seed), trials, window, footprint)
        try:
            impls: list[Impl] = []
            if a.only in (None, "vipgate"):
                impls.append(VipgateImpl(cluster))
            if a.only in (None, "exabgp"):
                assert exa_python is not None
                impls.append(ExabgpImpl(cluster, exa_python))
            for impl in impls:
                results[impl.name] = bench.run(impl)
        finally:
            mon.stop()
    elapsed = time.monotonic() - t_begin
    v, e = results.get("vipgate"), results.get("exabgp")
    print()
    print(
        f"Settings: period {PERIOD:g} s, timeout {TIMEOUT:g} s, threshold {THRESHOLD}, "
        f"hold {HOLD} s; "
        f"3 nodes, BIRD ECMP router; {trials} trials per latency, client windows {window:g} s "
        f"at 50 new TLS connections/s, footprint over {footprint:g} s with the metrics server on; "
        f"reference: ExaBGP {EXABGP_VERSION} healthcheck (interval 1, fall 3, rise 1, timeout 1, "
        f"withdraw-on-down, curl). Took {elapsed / 60:.1f} min."
    )
    print(f"Command: {cmd.strip()}")
    print()
    print(table(v, e))
    for r in results.values():
        if r.errors:
            print(f"\n{r.impl}: {len(r.errors)} trial(s) timed out:")
            for err in r.errors:
                print(f"  {err}")
        print(
            f"\n{r.impl} failed-request outcomes: refused fault {r.outcomes_refused}; "
            f"hung fault {r.outcomes_hung}"
        )
    write_json(a.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
