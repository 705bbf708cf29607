"""Soak benchmark: one vipgate for an hour at a 0.05 s period under cycling apiserver faults.

Run as root from the repository root::

    .venv/bin/python -m bench.bench_soak                  # 60 min at 0.05 s
    .venv/bin/python -m bench.bench_soak --long           # 55 min at 0.008 s, >= 300,000 checks
    .venv/bin/python -m bench.bench_soak --ci             # 2 min, the CI version (tests/e2e)
    .venv/bin/python -m bench.bench_soak --minutes 10 --out bench/out/soak10

Setup: one lab node (fake kube-apiserver, kubeadm-shaped PKI) and the BIRD 2 router; one
``python -m vipgate manager`` with period 0.05 s, timeout 0.04 s, threshold 3, hold 9 s,
keepalive 3 s, metrics on ``:2112``. The apiserver cycles through its modes, one phase each
(``--phase`` s) in the order healthy, fail (500), slow (200 after 25 ms, inside the timeout),
refuse, healthy, hang, slow, shutdown (the real apiserver's SIGTERM sequence: ``/livez`` 200
through a delay of 30 % of the phase and 20 % more of 429s on the other paths, then the
keep-alive connections closed with a FIN and the port refused), healthy, unauthorized (401),
healthy, untrusted (a certificate of another CA: every check a failed TLS handshake) -- each
fault after a healthy phase, so each withdraws the route itself. BIRD is restarted every
``--bird-every`` seconds (SIGTERM, then a fresh start: the session is re-established each time).

Every ``--sample`` seconds (absolute schedule, no drift): vipgate's RSS (``VmRSS``) and open
file descriptors (``/proc/PID/fd``), read before the scrape; the memory probe in its event loop
(bench/memprobe.py: ``sys.getallocatedblocks()``, malloc arenas and their bytes, OS threads, the
objects the cyclic garbage collector has freed); then from its metrics the asyncio tasks alive
in the event loop (``vipgate_asyncio_tasks``, counted at scrape time), the checks by outcome,
the readiness reads, the BGP session (``vipgate_bgp_session_established``) and, from BIRD, the
session state. Every ``--trim-every`` seconds of the second half, at a moment of its own
between two samples, RSS just before and just after ``malloc_trim(0)`` (what the allocator
holds free); none before the second half's first sample, since the pages a trim gives back
are faulted in again over the following minutes and a baseline taken after a trim would count
that as growth.

Verdicts (after the warm-up, ``--warmup`` s; 5 min for the hour, 30 s for CI):

- RSS growth <= 512 kB (CI: 1 MB): the highest sample after the warm-up minus the first one
  after it; and <= 128 kB (CI: 512 kB) over the second half (a plateau, not a slope);
- fds, tasks and threads flat: the maximum over the last third of the post-warm-up samples is
  not above the maximum over its first third (samples fall on the same phase positions);
- vipgate ran throughout (no exit, no ``Traceback`` in its log) and exits 0 on SIGTERM;
- the BGP session is Established at the end and the route is announced after the last
  (healthy) phase.

Writes ``<out>.json`` (settings, samples, verdicts), ``<out>.png`` (the samples, phases
shaded) and prints a Markdown table for bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.bench_health import rss_bytes
from bench.memprobe import ask
from lab.cluster import Cluster
from lab.netns import Lab
from lab.wait import LabTimeout

NODE = "node1"
MB = 1024 * 1024
KB = 1024


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Settings:
    minutes: float = 60.0
    period: float = 0.05
    timeout: float = 0.04
    slow_ms: int = 25  # the slow phases' answer delay (inside the timeout)
    threshold: int = 3
    hold: int = 9
    keepalive: int = 3
    phase: float = 20.0  # seconds per apiserver mode
    bird_every: float = 180.0  # BIRD restart period
    sample: float = 10.0
    warmup: float = 300.0
    trim_every: float = 300.0  # malloc_trim(0) readings, between the samples (0: none)
    rss_growth_kb: float = 512.0  # limit: max after the warm-up - first after it
    rss_half_growth_kb: float = 128.0  # limit: the same over the second half
    min_checks: int = 0
    env: tuple[str, ...] = ()  # NAME=VALUE added to vipgate's environment
    out: str = "bench/out/soak"

    @classmethod
    def ci(cls, out: str = "bench/out/soak-ci") -> Settings:
        """The CI version: 2 minutes, everything scaled (phases 4 s, BIRD every 30 s)."""
        return cls(
            minutes=2,
            phase=4,
            bird_every=30,
            sample=4,
            warmup=30,
            trim_every=20,
            rss_growth_kb=1024,
            rss_half_growth_kb=512,
            out=out,
        )

    @classmethod
    def long(cls, out: str = "bench/out/soak-long") -> Settings:
        """>= 300,000 checks: a 0.008 s period for 55 minutes, phases 15 s."""
        return cls(
            minutes=55,
            period=0.008,
            timeout=0.02,
            slow_ms=10,
            phase=15,
            min_checks=300_000,
            out=out,
        )

    @property
    def modes(self) -> tuple[str, ...]:
        # every fault follows a healthy phase, so each one withdraws the route by itself
        return (
            "healthy",
            "fail",
            "slow",
            "refuse",
            "healthy",
            "hang",
            "slow",
            "shutdown",
            "healthy",
            "unauthorized",
            "healthy",
            "untrusted",
        )


@dataclass
class Sample:
    t: float  # seconds since the start of the soak
    mode: str
    rss: int  # bytes
    fds: int
    tasks: float
    checks: float  # cumulative, all outcomes
    session_vipgate: float  # 1 Established, 0 not
    session_bird: str
    blocks: int = -1  # sys.getallocatedblocks(): the Python heap
    arenas: int = -1  # malloc arenas (glibc malloc_info)
    arena_bytes: int = -1  # their system bytes in all
    threads: int = -1  # OS threads of the process
    readiness: float = float("nan")  # readiness reads, cumulative
    gc_collected: int = -1  # objects the cyclic GC freed so far (garbage in reference cycles)
    rss_anon: int = -1  # RSS's anonymous part (heap, arenas, mapped blocks, stacks), bytes
    rss_file: int = -1  # its file-backed part (the interpreter's and libraries' pages)
    mmapped_bytes: int = -1  # malloc's blocks over the mmap threshold, mapped one by one
    pymalloc_arenas: int = -1  # Python's small-object arenas (1 MiB each, mapped one by one)


@dataclass
class Trim:
    t: float
    rss: int  # just before malloc_trim(0)
    rss_trimmed: int  # just after
    blocks: int
    arenas: int


@dataclass
class SoakResult:
    settings: Settings
    samples: list[Sample] = field(default_factory=list)
    trims: list[Trim] = field(default_factory=list)
    outcomes: dict[str, float] = field(default_factory=dict)
    transitions: dict[str, float] = field(default_factory=dict)
    mode_switches: int = 0
    bird_restarts: int = 0
    bgp_opens_sent: float = 0.0
    exit_code: int | None = None
    traceback: bool = False
    died: str = ""
    end_session: str = ""
    end_announced: bool = False
    verdicts: dict[str, bool] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.verdicts) and all(self.verdicts.values())


def _metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels: list[tuple[str, str]] = []
        for part in rest.rstrip("}").split(","):
            if "=" in part:
                k, _, v = part.partition("=")
                labels.append((k.strip(), v.strip().strip('"')))
        try:
            out[(name, tuple(sorted(labels)))] = float(value)
        except ValueError:
            continue
    return out


def _sum(m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(v for (n, _), v in m.items() if n == name)


def _by(
    m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, label: str
) -> dict[str, float]:
    return {dict(lab)[label]: v for (n, lab), v in m.items() if n == name and label in dict(lab)}


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def schedule(s: Settings, duration: float) -> list[tuple[float, int, str]]:
    """The soak's events in time order: (seconds from the start, order, "mode"|"bird"|"sample")."""
    # One absolute schedule: (time, order, action); ties: mode switch, BIRD, sample.
    events: list[tuple[float, int, str]] = []
    n_phases = int(duration // s.phase)
    events += [(k * s.phase, 0, "mode") for k in range(1, n_phases + 1)]
    t = s.bird_every + s.phase * 0.35  # mid-phase, away from the samples
    while t < duration - s.phase:
        events.append((t, 1, "bird"))
        t += s.bird_every
    k = 1
    while k * s.sample <= duration:
        events.append((k * s.sample - s.sample * 0.5, 2, "sample"))
        k += 1
    # malloc_trim(0) readings only in the second half, after both baselines of the growth
    # verdicts: pages a trim gives back are faulted in again over the next minutes, so a trim
    # before a baseline sample lowers the baseline and reads that regrowth as growth; after
    # it, a trim can only lower the samples that follow (between two samples).
    k, half = 1, (s.warmup + duration) / 2
    while s.trim_every > 0 and half + k * s.trim_every <= duration:
        events.append((half + k * s.trim_every - s.sample * 0.25, 3, "trim"))
        k += 1
    events.sort()
    return events


def finish(res: SoakResult, c: Cluster, ip: str) -> None:
    """End: healthy, wait for the session and the route, read the totals, stop with SIGTERM."""
    s = res.settings
    router = c.topo.router
    assert router is not None
    api = c.apiservers[NODE]
    api.set_mode("healthy")
    try:
        router.wait_session(ip, timeout=max(30.0, 3.0 * s.hold))
        c.wait_nexthops({ip}, timeout=30)
        res.end_announced = True
    except (LabTimeout, AssertionError) as e:
        log(f"not back at the end: {e}")
    res.end_session = router.sessions().get(ip, "Unknown")
    m = _metrics(c.scrape(NODE))
    res.outcomes = _by(m, "vipgate_probe_results_total", "outcome")
    res.transitions = _by(m, "vipgate_gate_transitions_total", "reason")
    res.bgp_opens_sent = sum(
        v
        for (n, lab_), v in m.items()
        if n == "vipgate_bgp_messages_total"
        and dict(lab_).get("type") == "open"
        and dict(lab_).get("direction") == "sent"
    )
    c.signal(NODE, signal.SIGTERM)
    try:
        res.exit_code = c.wait_exit(NODE, 5.0)
    except AssertionError as e:
        res.died = str(e)


class Sampler:
    """The readings of one soak: a sample (RSS, fds, the probe's heap and arenas, the metrics,
    BIRD's session) or a ``malloc_trim(0)`` reading, each at its own moment."""

    def __init__(self, res: SoakResult, c: Cluster, pid: int, probe: str) -> None:
        self.res, self.c, self.pid, self.probe = res, c, pid, probe
        self.mode = res.settings.modes[0]

    def _ask(self, cmd: str) -> dict[str, Any]:
        try:
            return ask(self.probe, cmd)
        except Exception as e:  # a probe that fails is a finding, recorded, not a crash
            log(f"memory probe failed: {e}")
            return {}

    def _bird(self) -> str:
        router = self.c.topo.router
        assert router is not None
        try:
            return router.sessions().get(self.c.ip(NODE), "Unknown")
        except Exception:
            return "down"  # BIRD between stop and start

    def sample(self, at: float) -> None:
        rss, fds = rss_bytes(self.pid), fd_count(self.pid)  # before the scrape's connection
        mem = self._ask("sample")
        try:
            m = _metrics(self.c.scrape(NODE, timeout=3))
        except Exception as e:  # a scrape that fails is a finding, recorded, not a crash
            log(f"scrape failed: {e}")
            m = {}
        nan = float("nan")
        x = Sample(
            t=round(at, 2),
            mode=self.mode,
            rss=rss,
            fds=fds,
            tasks=_sum(m, "vipgate_asyncio_tasks") if m else nan,
            checks=_sum(m, "vipgate_probe_results_total") if m else nan,
            session_vipgate=_sum(m, "vipgate_bgp_session_established") if m else nan,
            session_bird=self._bird(),
            blocks=int(mem.get("blocks", -1)),
            arenas=int(mem.get("arenas", -1)),
            arena_bytes=sum(mem.get("arena_bytes", [])) if mem else -1,
            threads=int(mem.get("os_threads", -1)),
            gc_collected=int(mem.get("gc_collected", -1)),
            rss_anon=int(mem.get("rss_anon", -1)),
            rss_file=int(mem.get("rss_file", -1)),
            mmapped_bytes=int(mem.get("mmapped", (-1, -1))[1]),
            pymalloc_arenas=int(mem.get("pymalloc_arenas", -1)),
            readiness=_sum(m, "vipgate_readiness_reads_total") if m else nan,
        )
        self.res.samples.append(x)
        if len(self.res.samples) % max(1, int(60 / self.res.settings.sample)) == 0:
            log(
                f"t={at:6.0f}s {x.mode:8s} rss={rss / MB:.2f} MB fds={fds} tasks={x.tasks:g} "
                f"checks={x.checks:.0f} bgp={x.session_vipgate:g}/{x.session_bird} "
                f"blocks={x.blocks} arenas={x.arenas} threads={x.threads}"
            )

    def trim(self, at: float) -> None:
        r = self._ask("trim")
        if r:
            t = Trim(round(at, 2), r["rss"], r["rss_trimmed"], r["blocks"], r["arenas"])
            self.res.trims.append(t)
            log(f"t={at:6.0f}s trim: rss {t.rss / MB:.2f} -> {t.rss_trimmed / MB:.2f} MB")


def soak(s: Settings, lab: Lab) -> SoakResult:
    res = SoakResult(s)
    c = Cluster.create(
        lab,
        n_nodes=1,
        period=s.period,
        timeout=s.timeout,
        threshold=s.threshold,
        hold=s.hold,
        keepalive=s.keepalive,
        metrics=True,
    )
    router = c.topo.router
    assert router is not None
    api = c.apiservers[NODE]
    ip = c.ip(NODE)
    probe = str(lab.workdir / "memprobe.sock")
    env = dict(e.partition("=")[::2] for e in s.env)
    vp = c.start(NODE, {**env, "VIPGATE_MEMPROBE": probe}, module="bench.memprobe")
    assert vp.proc is not None
    c.wait_nexthops({ip}, timeout=30)
    log(f"vipgate pid {vp.proc.pid} announced; soak {s.minutes:g} min, modes {', '.join(s.modes)}")
    sampler = Sampler(res, c, vp.proc.pid, probe)
    t0 = time.monotonic()
    mode_index = 0
    for at, _, what in schedule(s, s.minutes * 60):
        now = time.monotonic() - t0
        if at > now:
            time.sleep(at - now)
        if vp.proc.poll() is not None:
            res.died = f"vipgate exited with {vp.proc.returncode} at t={at:.0f}s"
            break
        if what == "mode":
            mode_index += 1
            mode = sampler.mode = s.modes[mode_index % len(s.modes)]
            if mode == "shutdown":  # /livez 200 for 30 % + 20 % (429s) of the phase, then gone
                api.shutdown(0.3 * s.phase, retry_after=True, drain=0.2 * s.phase)
            else:
                api.set_mode(mode, s.slow_ms if mode == "slow" else None)
            res.mode_switches += 1
        elif what == "bird":
            router.restart()
            res.bird_restarts += 1
        elif what == "trim":
            sampler.trim(time.monotonic() - t0)
        else:
            sampler.sample(time.monotonic() - t0)
    res.duration = time.monotonic() - t0

    if not res.died:
        finish(res, c, ip)
    text = c.log(NODE)
    res.traceback = "Traceback" in text
    logfile = Path(s.out + "-vipgate.log")
    logfile.parent.mkdir(parents=True, exist_ok=True)
    logfile.write_text(text)
    judge(res)
    return res


def judge(res: SoakResult) -> None:
    s = res.settings
    after = [x for x in res.samples if x.t >= s.warmup and x.rss > 0]
    f = res.figures
    v = res.verdicts
    checks = sum(res.outcomes.values())
    f["checks"] = checks
    f["checks_expected"] = s.minutes * 60 / s.period
    if res.samples:
        f["rss_start"] = res.samples[0].rss
    if len(after) >= 3:
        third = max(1, len(after) // 3)
        first, last = after[:third], after[-third:]
        f["rss_after_warmup"] = after[0].rss
        f["rss_max_after_warmup"] = max(x.rss for x in after)
        f["rss_end"] = after[-1].rss
        f["rss_growth"] = f["rss_max_after_warmup"] - f["rss_after_warmup"]
        half = [x for x in after if x.t >= (s.warmup + res.duration) / 2]
        f["rss_half_start"] = half[0].rss if half else after[0].rss
        f["rss_half_growth"] = max(x.rss for x in half) - half[0].rss if half else 0.0
        f["blocks_after_warmup"] = after[0].blocks
        f["blocks_end"] = after[-1].blocks
        f["arenas_max"] = max(x.arenas for x in after)
        getters: tuple[tuple[str, Callable[[Sample], float]], ...] = (
            ("fds", lambda x: float(x.fds)),
            ("tasks", lambda x: float(x.tasks)),
            ("threads", lambda x: float(x.threads)),
        )
        for name, get_ in getters:
            f[f"{name}_min"] = min(get_(x) for x in after)
            f[f"{name}_max"] = max(get_(x) for x in after)
            f[f"{name}_max_first_third"] = max(get_(x) for x in first)
            f[f"{name}_max_last_third"] = max(get_(x) for x in last)
            v[f"{name} flat (last third max <= first third max)"] = (
                f[f"{name}_max_last_third"] <= f[f"{name}_max_first_third"]
            )
        v[f"RSS growth after warm-up <= {s.rss_growth_kb:g} kB"] = (
            f["rss_growth"] <= s.rss_growth_kb * KB
        )
        v[f"RSS growth over the second half <= {s.rss_half_growth_kb:g} kB"] = (
            f["rss_half_growth"] <= s.rss_half_growth_kb * KB
        )
    else:
        v["enough samples after the warm-up"] = False
    v["vipgate ran throughout, exit 0 on SIGTERM"] = not res.died and res.exit_code == 0
    v["no Traceback in vipgate's log"] = not res.traceback
    v["session Established and route announced at the end"] = (
        res.end_session == "Established" and res.end_announced
    )
    # Not a speed assertion: half the ticks is far below what any machine does; a stuck
    # probe loop (the failure this catches) makes a handful.
    v["probe loop kept its cadence (> 50 % of the ticks checked)"] = (
        checks > 0.5 * f["checks_expected"]
    )
    if s.min_checks:
        v[f">= {s.min_checks:,} checks"] = checks >= s.min_checks
    if res.trims:
        f["rss_trimmed_first"] = res.trims[0].rss_trimmed
        f["rss_trimmed_last"] = res.trims[-1].rss_trimmed


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def mb(b: float) -> str:
    return f"{b / MB:.2f}"


def table(res: SoakResult) -> str:
    s, f = res.settings, res.figures
    out = [
        "| measure | value | target |",
        "|---|---|---|",
        f"| duration | {res.duration / 60:.1f} min | >= {s.minutes:g} min |",
        f"| checks (period {s.period:g} s) | {f['checks']:.0f} | "
        + (f">= {s.min_checks:,} |" if s.min_checks else f"~{f['checks_expected']:.0f} ticks |"),
        "| checks by outcome | "
        + ", ".join(f"{k} {v:.0f}" for k, v in sorted(res.outcomes.items()) if v)
        + " | |",
        f"| apiserver mode switches / BIRD restarts | {res.mode_switches} / "
        f"{res.bird_restarts} | |",
        f"| BGP OPENs sent (sessions established) | {res.bgp_opens_sent:.0f} | |",
        "| gate transitions | "
        + ", ".join(f"{k} {v:.0f}" for k, v in sorted(res.transitions.items()) if v)
        + " | |",
    ]
    if "rss_growth" in f:
        out += [
            f"| RSS at start / after warm-up ({s.warmup:g} s) / max after / end (MB) | "
            f"{mb(f['rss_start'])} / {mb(f['rss_after_warmup'])} / "
            f"{mb(f['rss_max_after_warmup'])} / {mb(f['rss_end'])} | |",
            f"| RSS growth after warm-up (max - first) | {f['rss_growth'] / 1024:.0f} kB | "
            f"<= {s.rss_growth_kb:g} kB |",
            f"| RSS growth over the second half (max - first) | "
            f"{f['rss_half_growth'] / 1024:.0f} kB | <= {s.rss_half_growth_kb:g} kB |",
            "| RSS before / after malloc_trim(0), first and last reading (MB) | "
            + " ; ".join(
                f"t={t.t / 60:.0f} min {mb(t.rss)} / {mb(t.rss_trimmed)}"
                for t in (res.trims[:1] + res.trims[-1:] if res.trims else [])
            )
            + " | |",
            f"| Python heap (allocated blocks) after warm-up / end | "
            f"{f['blocks_after_warmup']:.0f} / {f['blocks_end']:.0f} | |",
            f"| malloc arenas (max) | {f['arenas_max']:.0f} | |",
            f"| OS threads after warm-up min / max | {f['threads_min']:.0f} / "
            f"{f['threads_max']:.0f} | flat |",
            f"| open fds after warm-up min / max; max first third / last third | "
            f"{f['fds_min']:.0f} / {f['fds_max']:.0f}; {f['fds_max_first_third']:.0f} / "
            f"{f['fds_max_last_third']:.0f} | flat |",
            f"| asyncio tasks after warm-up min / max; max first third / last third | "
            f"{f['tasks_min']:.0f} / {f['tasks_max']:.0f}; {f['tasks_max_first_third']:.0f} / "
            f"{f['tasks_max_last_third']:.0f} | flat |",
        ]
    out.append(
        f"| exit on SIGTERM / Traceback in log | {res.exit_code} / {res.traceback} | 0 / no |"
    )
    out.append("")
    out.append("| verdict | |")
    out.append("|---|---|")
    out += [f"| {k} | {'yes' if ok else 'NO'} |" for k, ok in res.verdicts.items()]
    return "\n".join(out)


def samples_table(res: SoakResult, every: float = 300.0) -> str:
    """One row per `every` seconds of samples (the README's time series)."""
    rows = ["| t (s) | mode | RSS (MB) | fds | tasks | checks | session (vipgate / BIRD) |"]
    rows.append("|---|---|---|---|---|---|---|")
    next_t = 0.0
    for x in res.samples:
        if x.t + 1e-6 < next_t:
            continue
        next_t = x.t + every
        rows.append(
            f"| {x.t:.0f} | {x.mode} | {x.rss / MB:.2f} | {x.fds} | {x.tasks:g} | "
            f"{x.checks:.0f} | {x.session_vipgate:g} / {x.session_bird} |"
        )
    return "\n".join(rows)


def plot(res: SoakResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = res.settings
    xs = [x.t / 60 for x in res.samples]
    fig, axes = plt.subplots(5, 1, figsize=(11, 11), sharex=True)
    series: list[tuple[str, Callable[[Sample], float]]] = [
        ("RSS (MB)", lambda x: x.rss / MB),
        ("Python heap\n(allocated blocks, k)", lambda x: x.blocks / 1000),
        ("malloc arenas'\nsystem bytes (MB)", lambda x: x.arena_bytes / MB),
        ("open fds / tasks /\nthreads", lambda x: float(x.fds)),
        ("BGP session up (vipgate)", lambda x: float(x.session_vipgate)),
    ]
    for ax, (label, get) in zip(axes, series, strict=True):
        ax.plot(xs, [get(x) for x in res.samples], ".-", markersize=2, linewidth=0.8, label=label)
        ax.set_ylabel(label, fontsize=8)
        ax.axvspan(0, s.warmup / 60, color="0.9", zorder=0)
        ax.grid(alpha=0.3)
    axes[3].lines[0].set_label("fds")
    axes[3].plot(xs, [x.tasks for x in res.samples], ".-", markersize=2, lw=0.8, label="tasks")
    axes[3].plot(xs, [x.threads for x in res.samples], ".-", markersize=2, lw=0.8, label="threads")
    axes[3].legend(fontsize=7, loc="center right")
    if res.trims:
        tt = [t.t / 60 for t in res.trims]
        trims = res.trims
        axes[0].plot(tt, [t.rss / MB for t in trims], "^", color="C1", label="before malloc_trim")
        axes[0].plot(tt, [t.rss_trimmed / MB for t in trims], "v", color="C2", label="after")
        axes[0].legend(fontsize=7, loc="lower right")
    env = f"; {' '.join(s.env)}" if s.env else ""
    axes[0].set_title(
        f"vipgate soak: {res.duration / 60:.0f} min, period {s.period:g} s, "
        f"{res.figures.get('checks', 0):.0f} checks, BIRD restarted every {s.bird_every:g} s{env}\n"
        f"apiserver {'/'.join(s.modes)}, {s.phase:g} s each (grey: warm-up)",
        fontsize=9,
    )
    axes[-1].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def load(js: Path) -> SoakResult:
    """A soak's result back from its JSON (to plot or tabulate it again)."""
    d = json.loads(js.read_text())
    st = d["settings"]
    st["env"] = tuple(st.get("env", ()))
    res = SoakResult(Settings(**st))
    res.samples = [Sample(**x) for x in d["samples"]]
    res.trims = [Trim(**x) for x in d.get("trims", [])]
    for k in (
        "outcomes", "transitions", "mode_switches", "bird_restarts", "bgp_opens_sent",
        "exit_code", "traceback", "died", "end_session", "end_announced", "duration",
    ):  # fmt: skip
        setattr(res, k, d[k])
    judge(res)
    return res


def write(res: SoakResult) -> tuple[Path, Path]:
    out = Path(res.settings.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    js, png = out.with_suffix(".json"), out.with_suffix(".png")
    data: dict[str, Any] = asdict(res)
    data["ok"] = res.ok
    js.write_text(json.dumps(data, indent=1) + "\n")
    plot(res, png)
    return js, png


def run(s: Settings, *, keep: bool = False) -> SoakResult:
    with Lab(keep_workdir=keep or None) as lab:
        try:
            res = soak(s, lab)
        finally:
            if keep:
                log(f"lab logs kept in {lab.workdir}")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ci", action="store_true", help="the 2-minute CI version")
    ap.add_argument("--long", action="store_true", help=">= 300,000 checks (55 min)")
    ap.add_argument("--period", type=float)
    ap.add_argument("--trim-every", type=float)
    ap.add_argument("--env", action="append", help="NAME=VALUE for vipgate (repeatable)")
    ap.add_argument("--minutes", type=float)
    ap.add_argument("--phase", type=float)
    ap.add_argument("--bird-every", type=float)
    ap.add_argument("--sample", type=float)
    ap.add_argument("--warmup", type=float)
    ap.add_argument("--out")
    ap.add_argument("--keep", action="store_true", help="keep the lab's logs")
    ap.add_argument("--replot", metavar="JSON", help="judge, plot and tabulate a run again")
    a = ap.parse_args(argv)
    if a.replot:
        res = load(Path(a.replot))
        res.settings = Settings(**{**asdict(res.settings), "out": a.out or res.settings.out})
        js, png = write(res)
        print(table(res))
        print(f"\nwritten: {js} {png}")
        return 0 if res.ok else 1
    s = Settings.ci() if a.ci else Settings.long() if a.long else Settings()
    over = {
        k: getattr(a, k)
        for k in (
            "minutes",
            "period",
            "phase",
            "bird_every",
            "sample",
            "warmup",
            "trim_every",
            "out",
        )
        if getattr(a, k) is not None
    }
    if a.env:
        over["env"] = tuple(a.env)
    s = Settings(**{**asdict(s), **over})
    res = run(s, keep=a.keep)
    js, png = write(res)
    print(table(res))
    print()
    print(samples_table(res, every=300.0 if s.minutes >= 30 else 20.0))
    print(f"\nwritten: {js} {png}")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
