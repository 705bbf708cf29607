"""The demo's timeline picture (matplotlib, Agg backend: no display needed).

Top: requests per node over time (stacked bars per bin, by start time), failed requests in red.
Bottom: one band per node, coloured while the router has a next hop to it, grey hatched while it
has none (withdrawn, de-preferred behind the other nodes' better paths, or stopped), white-hatched
while its vipgate announces the route de-preferred (from its metrics: ``route_log``). Phase
boundaries are dashed lines across both, the fault injections dotted, and the measured times
written where the route changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from demo.report import Phase, RequestLike, fmt_seconds
from lab.routemon import RouteSample, intervals

NODE_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
FAILED_COLOR = "#d62728"
OTHER_COLOR = "#ff7f0e"  # an HTTP answer other than 200 (it reached an apiserver)
NO_HOP_COLOR = "#d9d9d9"  # not a next hop of the router


def state_intervals(
    log: Sequence[tuple[float, str, str]], node: str, state: str, end: float
) -> list[tuple[float, float]]:
    """(start, end) times during which `node` was in route `state`, from (t, node, state)
    changes in time order."""
    out: list[tuple[float, float]] = []
    since: float | None = None
    for t, name, st in log:
        if name != node:
            continue
        if st == state and since is None:
            since = t
        elif st != state and since is not None:
            out.append((since, t))
            since = None
    if since is not None:
        out.append((since, end))
    return out


@dataclass(frozen=True)
class _Bins:
    """The bars' time axis: `count` full bins of `width` seconds from `x0` (seconds since t0)."""

    t0: float
    x0: float
    width: float
    count: int

    @property
    def edges(self) -> list[float]:
        return [self.x0 + i * self.width for i in range(self.count + 1)]

    def of(self, t: float) -> int | None:
        i = int((t - self.t0 - self.x0) / self.width)
        return i if 0 <= i < self.count else None


def _bins(
    t0: float,
    end: float,
    requests: Sequence[RequestLike],
    phases: Sequence[Phase],
    bin_s: float | None,
) -> _Bins:
    start = min([p.start for p in phases] + [r.t for r in requests[:1]], default=t0)
    if requests:  # the client stops a moment before the run ends: no half-empty last bar
        end = min(end, max(r.t for r in requests) + 0.01)
    if bin_s is None:
        bin_s = 0.5 if end - start <= 30.0 else 1.0
    nbins = max(1, int((end - start) / bin_s))  # full bins only: no half-empty last bar
    return _Bins(t0, start - t0, bin_s, nbins)


@dataclass(frozen=True)
class _Counts:
    """Requests per bin by start time: answered 200 per node, answered otherwise, failed."""

    ok: dict[str, list[int]]
    other: list[int]
    failed: list[int]


def _counts(bins: _Bins, names: Sequence[str], requests: Sequence[RequestLike]) -> _Counts:
    c = _Counts({n: [0] * bins.count for n in names}, [0] * bins.count, [0] * bins.count)
    for r in requests:
        i = bins.of(r.t)
        if i is None:
            continue
        if r.outcome == "ok" and r.node in c.ok:
            c.ok[r.node][i] += 1
        elif r.outcome.startswith("http_"):  # an answer other than 200: reached an apiserver
            c.other[i] += 1
        elif r.outcome != "ok":
            c.failed[i] += 1
    return c


def _stack_answered(ax: Axes, bins: _Bins, counts: _Counts) -> list[int]:
    """The answered requests' bars, one colour per node, then the non-200 answers on top; returns
    the bars' tops."""
    left = bins.edges[:-1]
    bottom = [0] * bins.count
    for k, (n, ok) in enumerate(counts.ok.items()):
        ax.bar(
            left,
            ok,
            width=bins.width,
            bottom=bottom,
            align="edge",
            color=NODE_COLORS[k % len(NODE_COLORS)],
            label=f"answered by {n}",
            linewidth=0,
        )
        bottom = [b + c for b, c in zip(bottom, ok, strict=True)]
    if any(counts.other):
        ax.bar(
            left,
            counts.other,
            width=bins.width,
            bottom=bottom,
            align="edge",
            color=OTHER_COLOR,
            linewidth=0,
            label="answered, not 200",
        )
        bottom = [b + c for b, c in zip(bottom, counts.other, strict=True)]
    return bottom


def _draw_requests(ax: Axes, bins: _Bins, counts: _Counts, title: str) -> None:
    """The top panel: the answered requests' stacked bars, the failed ones on top in red."""
    left = bins.edges[:-1]
    bottom = _stack_answered(ax, bins, counts)
    failed = counts.failed
    ax.bar(
        left,
        failed,
        width=bins.width,
        bottom=bottom,
        align="edge",
        color=FAILED_COLOR,
        hatch="xx",
        edgecolor="white",
        linewidth=0,
        label="failed",
    )
    for i, f in enumerate(failed):
        if f and bins.count <= 80:
            ax.text(
                left[i] + bins.width / 2,
                bottom[i] + f + 0.3,
                str(f),
                ha="center",
                va="bottom",
                fontsize=7,
                color=FAILED_COLOR,
            )
    ax.set_ylabel(f"requests per {bins.width:g} s\n(by start time)")
    ymax = max((b + f for b, f in zip(bottom, failed, strict=True)), default=1)
    ax.set_ylim(0, max(ymax * 1.35, 5))
    ax.legend(loc="upper right", ncol=len(counts.ok) + 2, fontsize=8, framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=11, pad=34)


def _draw_bands(
    band: Axes,
    bins: _Bins,
    nodes: Mapping[str, str],
    changes: Sequence[RouteSample],
    route_log: Sequence[tuple[float, str, str]],
) -> None:
    """The bottom panel: one route state band per node (the first node on top)."""
    names = list(nodes)
    t0, x0, x1 = bins.t0, bins.x0, bins.edges[-1]
    for k, n in enumerate(names):
        y = len(names) - 1 - k
        on = [(a - t0, b - a) for a, b in intervals(list(changes), nodes[n], t0 + x1)]
        band.broken_barh(
            [(x0, x1 - x0)],
            (y - 0.35, 0.7),
            facecolors=NO_HOP_COLOR,
            hatch="//",
            edgecolor="#9e9e9e",
            linewidth=0,
        )
        band.broken_barh(on, (y - 0.35, 0.7), facecolors=NODE_COLORS[k % len(NODE_COLORS)])
        dep = [(a - t0, b - a) for a, b in state_intervals(route_log, n, "depreferred", t0 + x1)]
        if dep:
            band.broken_barh(
                dep,
                (y - 0.35, 0.7),
                facecolors="none",
                hatch="\\\\",
                edgecolor="white",
                linewidth=0,
            )
    band.set_yticks(range(len(names)))
    band.set_yticklabels(list(reversed(names)))
    band.set_ylim(-0.6, len(names) - 0.4)
    band.set_xlabel("seconds since the demo started")
    band.set_ylabel("router's next hop")
    band.legend(
        handles=[
            Patch(facecolor=NODE_COLORS[0], label="a next hop"),
            Patch(facecolor=NO_HOP_COLOR, hatch="//", edgecolor="#9e9e9e", label="not a next hop"),
            Patch(facecolor=NODE_COLORS[0], hatch="\\\\", edgecolor="white", label="de-preferred"),
        ],
        loc="lower right",
        fontsize=8,
        ncol=3,
        framealpha=0.9,
    )


def _draw_phase(ax: Axes, band: Axes, p: Phase, t0: float, rows: int) -> None:
    """One phase across both panels: its start (dashed, titled), its fault injection (dotted)
    and the route change it caused (solid, with the measured time)."""
    xs = p.start - t0
    for a in (ax, band):
        a.axvline(xs, color="black", linestyle="--", linewidth=0.9, alpha=0.7)
    ax.text(
        xs + 0.15,
        1.01 if p.number % 2 else 1.055,  # alternate rows: short phases' titles overlap
        f"{p.number} {p.title}",
        transform=ax.get_xaxis_transform(),
        fontsize=8,
        va="bottom",
        ha="left",
    )
    if p.event_t is not None and abs(p.event_t - p.start) > 0.05:
        for a in (ax, band):
            a.axvline(p.event_t - t0, color="black", linestyle=":", linewidth=0.9)
    if p.route_t is not None and p.measured is not None:
        xr = p.route_t - t0
        for a in (ax, band):
            a.axvline(xr, color="black", linewidth=1.2)
        band.annotate(
            f"{p.measure} {fmt_seconds(p.measured)}",
            xy=(xr, rows - 0.45),
            xytext=(4, 2),
            textcoords="offset points",
            fontsize=8,
            fontweight="bold",
            va="bottom",
        )


def plot_timeline(
    path: Path,
    *,
    t0: float,
    end: float,
    nodes: Mapping[str, str],  # node name -> next-hop address
    requests: Sequence[RequestLike],
    changes: Sequence[RouteSample],
    phases: Sequence[Phase],
    bin_s: float | None = None,
    title: str = "",
    route_log: Sequence[tuple[float, str, str]] = (),
) -> Path:
    """Draw the picture to `path` (PNG); return the path.

    `bin_s`: width of a bar in seconds (default: 0.5 s for up to 30 s of run, else 1 s).
    """
    bins = _bins(t0, end, requests, phases, bin_s)
    counts = _counts(bins, list(nodes), requests)
    fig, (ax, band) = plt.subplots(
        2,
        1,
        sharex=True,
        figsize=(12, 6.8),
        gridspec_kw={"height_ratios": [3.2, 1.4], "hspace": 0.08},
    )
    _draw_requests(ax, bins, counts, title)
    _draw_bands(band, bins, nodes, changes, route_log)
    for p in phases:  # phases, fault injections and measured times
        _draw_phase(ax, band, p, t0, len(nodes))
    band.set_xlim(bins.x0, bins.edges[-1])
    total_fail = sum(counts.failed)
    if total_fail:
        ax.text(
            0.01,
            0.97,
            f"{total_fail} failed requests in all",
            transform=ax.transAxes,
            fontsize=8,
            color=FAILED_COLOR,
            va="top",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
