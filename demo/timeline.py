"""The demo's timeline picture (matplotlib, Agg backend: no display needed).

Top: requests per node over time (stacked bars per bin, by start time), failed requests in red.
Bottom: one band per node, coloured while the router has a next hop to it (announced), grey
hatched while it has none (withdrawn), white-hatched while its vipgate announces the route
de-preferred (from its metrics: ``route_log``). Phase boundaries are dashed lines across both,
the fault injections dotted, and the measured times written where the route changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.patches import Patch

from demo.report import Phase, RequestLike, fmt_seconds
from lab.routemon import RouteSample, intervals

NODE_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
FAILED_COLOR = "#d62728"
OTHER_COLOR = "#ff7f0e"  # an HTTP answer other than 200 (it reached an apiserver)
WITHDRAWN_COLOR = "#d9d9d9"


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
    names = list(nodes)
    start = min([p.start for p in phases] + [r.t for r in requests[:1]], default=t0)
    if requests:  # the client stops a moment before the run ends: no half-empty last bar
        end = min(end, max(r.t for r in requests) + 0.01)
    if bin_s is None:
        bin_s = 0.5 if end - start <= 30.0 else 1.0
    x0 = start - t0
    nbins = max(1, int((end - start) / bin_s))  # full bins only: no half-empty last bar
    edges = [x0 + i * bin_s for i in range(nbins + 1)]
    x1 = edges[-1]

    def bin_of(t: float) -> int | None:
        i = int((t - t0 - x0) / bin_s)
        return i if 0 <= i < nbins else None

    ok_counts = {n: [0] * nbins for n in names}
    failed = [0] * nbins
    other = [0] * nbins
    for r in requests:
        i = bin_of(r.t)
        if i is None:
            continue
        if r.outcome == "ok" and r.node in ok_counts:
            ok_counts[r.node][i] += 1
        elif r.outcome.startswith("http_"):  # an answer other than 200: reached an apiserver
            other[i] += 1
        elif r.outcome != "ok":
            failed[i] += 1

    fig, (ax, band) = plt.subplots(
        2,
        1,
        sharex=True,
        figsize=(12, 6.8),
        gridspec_kw={"height_ratios": [3.2, 1.4], "hspace": 0.08},
    )
    left = edges[:-1]
    bottom = [0] * nbins
    for k, n in enumerate(names):
        ax.bar(
            left,
            ok_counts[n],
            width=bin_s,
            bottom=bottom,
            align="edge",
            color=NODE_COLORS[k % len(NODE_COLORS)],
            label=f"answered by {n}",
            linewidth=0,
        )
        bottom = [b + c for b, c in zip(bottom, ok_counts[n], strict=True)]
    if any(other):
        ax.bar(
            left,
            other,
            width=bin_s,
            bottom=bottom,
            align="edge",
            color=OTHER_COLOR,
            linewidth=0,
            label="answered, not 200",
        )
        bottom = [b + c for b, c in zip(bottom, other, strict=True)]
    ax.bar(
        left,
        failed,
        width=bin_s,
        bottom=bottom,
        align="edge",
        color=FAILED_COLOR,
        hatch="xx",
        edgecolor="white",
        linewidth=0,
        label="failed",
    )
    total_fail = sum(failed)
    for i, f in enumerate(failed):
        if f and nbins <= 80:
            ax.text(
                left[i] + bin_s / 2,
                bottom[i] + f + 0.3,
                str(f),
                ha="center",
                va="bottom",
                fontsize=7,
                color=FAILED_COLOR,
            )
    ax.set_ylabel(f"requests per {bin_s:g} s\n(by start time)")
    ymax = max((b + f for b, f in zip(bottom, failed, strict=True)), default=1)
    ax.set_ylim(0, max(ymax * 1.35, 5))
    ax.legend(loc="upper right", ncol=len(names) + 2, fontsize=8, framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=11, pad=34)

    # Route state bands, one row per node (node1 on top).
    for k, n in enumerate(names):
        y = len(names) - 1 - k
        hop = nodes[n]
        on = [(a - t0, b - a) for a, b in intervals(list(changes), hop, t0 + x1)]
        band.broken_barh(
            [(x0, x1 - x0)],
            (y - 0.35, 0.7),
            facecolors=WITHDRAWN_COLOR,
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
            Patch(facecolor=NODE_COLORS[0], label="announced (next hop present)"),
            Patch(facecolor=WITHDRAWN_COLOR, hatch="//", edgecolor="#9e9e9e", label="withdrawn"),
            Patch(facecolor=NODE_COLORS[0], hatch="\\\\", edgecolor="white", label="de-preferred"),
        ],
        loc="lower right",
        fontsize=8,
        ncol=3,
        framealpha=0.9,
    )

    # Phases, fault injections and measured times.
    for p in phases:
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
                xy=(xr, len(names) - 0.45),
                xytext=(4, 2),
                textcoords="offset points",
                fontsize=8,
                fontweight="bold",
                va="bottom",
            )
    band.set_xlim(x0, x1)
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
