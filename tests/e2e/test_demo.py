"""The demo (``python -m demo.run --short``) end to end, plus its pure parts.

The lab tests run the real demo as a subprocess, as an operator would, and check what it
promises: exit 0, the summary table, plausible numbers (node1 withdrawn after its checks failed,
requests failing only until then, recovery, a SIGTERM drain without a failed request), a real
timeline picture, and nothing left behind -- also when it is interrupted with Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from demo.netns_io import parse_metrics
from demo.report import (
    Phase,
    describe_failure,
    format_table,
    near_route_change,
    phase_stats,
    request_expectations,
)
from demo.run import log_message
from lab.netns import MARKER_DIR, list_netns
from lab.routemon import RouteSample, intervals

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def demo_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "demo.run", "--no-color", *args]


def left_behind(tag: str) -> list[str]:
    """Namespaces of the run `tag` that still exist, and its marker file if still there."""
    left = [ns for ns in list_netns() if ns.startswith(f"{tag}-")]
    if (MARKER_DIR / f"{tag}.json").exists():
        left.append(f"marker {MARKER_DIR / tag}.json")
    return left


def table_rows(out: str) -> dict[int, list[str]]:
    """Phase number -> cells of the summary table's row."""
    rows: dict[int, list[str]] = {}
    for line in out.splitlines():
        m = re.match(r"^\| (\d) ", line)
        if m:
            rows[int(m.group(1))] = [c.strip() for c in line.strip().strip("|").split("|")]
    return rows


def check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    from PIL import Image

    with Image.open(path) as img:
        w, h = img.size
        assert 800 <= w <= 4000 and 500 <= h <= 3000, f"odd picture size {w}x{h}"
        px = list(img.convert("L").resize((200, 120)).tobytes())
    mean = sum(px) / len(px)
    var = sum((p - mean) ** 2 for p in px) / len(px)
    assert var > 300, f"picture looks blank (pixel variance {var:.0f})"
    dark = sum(1 for p in px if p < 128)
    assert dark > len(px) * 0.05, "picture has almost no drawn area"


# ---------------------------------------------------------------------------------------------
# The demo, for real
# ---------------------------------------------------------------------------------------------


@pytest.mark.lab
def test_demo_short_runs_to_its_summary(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    t = time.monotonic()
    cp = subprocess.run(
        demo_cmd("--short", "--out-dir", str(tmp_path)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    runtime = time.monotonic() - t
    out = cp.stdout
    assert cp.returncode == 0, f"demo exit {cp.returncode}\n{out[-6000:]}\n{cp.stderr[-3000:]}"
    assert "Traceback" not in cp.stderr, cp.stderr[-3000:]

    # The narration shows each phase and the router's next hops.
    for n in (1, 2, 3, 4):
        assert f"== Phase {n}/4" in out
    assert "nexthop via 192.0.2.11" in out and "nexthop via 192.0.2.13" in out
    # (the fast re-checks come 0.2 s apart: the metrics read may see 1/3 and 2/3 or not)
    assert re.search(r"node1 vipgate: failed health checks 3/3 .*-> withdraw", out)
    assert "[FAIL]" not in out

    # The summary table: header and one row per phase, agreeing with the JSON.
    assert "| phase " in out and "| measured " in out and "| requests ok |" in out
    rows = table_rows(out)
    assert sorted(rows) == [1, 2, 3, 4], out[-3000:]
    summary: dict[str, Any] = json.loads((tmp_path / "demo-summary.json").read_text())
    assert summary["ok"] is True
    assert all(e["ok"] for e in summary["expectations"]), summary["expectations"]
    p1, p2, p3, p4 = summary["phases"]
    for p in (p1, p2, p3, p4):
        row = rows[p["number"]]
        assert row[2] == str(p["requests"]["ok"]) and row[3] == str(p["requests"]["failed"])
        assert row[4] == " ".join(p["nexthops_end"])

    period, threshold = summary["settings"]["period"], summary["settings"]["threshold"]
    fast = summary["settings"]["fast_period"]
    assert (period, summary["settings"]["timeout"], threshold) == (5.0, 3.0, 3)  # kube-vip's
    # Phase 1: 3 next hops, every node answered, nothing failed.
    assert p1["nexthops_end"] == ["node1", "node2", "node3"]
    assert all(p1["requests"]["per_node"].get(f"node{i}", 0) > 0 for i in (1, 2, 3))
    assert p1["requests"]["failed"] == 0
    # Phase 2: withdrawn after `threshold` failed checks at the fast period -- long before the
    # first regular check was even due; requests failed (node1's share) but none that started
    # after the withdrawal; node2 and node3 carried the traffic.
    det = p2["measured_s"]
    assert det is not None, "node1 never withdrawn"
    assert (threshold - 1) * fast - 0.05 <= det < period, det
    assert rows[2][1].startswith("detection ")
    assert p2["requests"]["failed"] > 0, "no request failed while node1 was down but announced"
    assert p2["requests"]["failed_after_route"] == 0
    assert set(p2["requests"]["outcomes"]) <= {"refused", "reset"}, p2["requests"]["outcomes"]
    assert p2["nexthops_end"] == ["node2", "node3"]
    # Phase 3: node1 back within a check period (plus BGP and router time), answering again.
    rec = p3["measured_s"]
    assert rec is not None, "node1's next hop never came back"
    assert -0.1 <= rec <= period + 3.0, rec
    assert rows[3][1].startswith("recovery ")
    assert p3["requests"]["per_node"].get("node1", 0) > 0
    assert p3["nexthops_end"] == ["node1", "node2", "node3"]
    # Phase 4: SIGTERM drains: route gone quickly (the GRACEFUL_SHUTDOWN re-announcement, not
    # the withdrawal after the drain, nor the 9 s hold timer), exit status 0 after the drain,
    # not one failed request -- except a reset of a connection in flight at the
    # instant the router changed its ECMP next-hop set (the router rehashes it to another node;
    # measured: 11 of 6,714 requests over 60 route changes, each within ~30 ms of one).
    gone = p4["measured_s"]
    assert gone is not None and 0 <= gone < 1.0, gone
    assert p4["exit_code"] == 0
    drain = summary["settings"]["graceful_shutdown"]
    assert "node2's vipgate exited with status 0" in out
    assert re.search(r"announcing the VIP with GRACEFUL_SHUTDOWN", out), out[-3000:]
    assert drain == 3.0
    assert re.match(r"route gone \d+ ms, exit 0", rows[4][1]), rows[4]
    assert p4["requests"]["failed"] - p4["requests"]["rehashed"] == 0, p4["requests"]
    assert p4["requests"]["rehashed"] <= 1, p4["requests"]
    assert p4["nexthops_end"] == ["node1", "node3"]

    # The picture.
    png = tmp_path / "demo-timeline.png"
    assert f"timeline picture: {png.resolve()}" in out
    check_png(png)

    # Nothing left: the demo says so, and it is true.
    tag = summary["tag"]
    assert re.fullmatch(r"vg[0-9a-z]{6,}", tag), tag
    assert f"torn down: 0 namespaces of {tag} left, 0 of the" in out
    assert left_behind(tag) == []
    assert "everything expected happened" in out
    print(
        f"demo --short: {runtime:.1f} s\n"
        + "\n".join(ln for ln in out.splitlines() if ln[:1] == "|")
    )


@pytest.mark.lab
def test_demo_interrupted_leaves_nothing_behind(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) in the middle of phase 1: exit 130, lab removed."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    proc = subprocess.Popen(
        demo_cmd("--short", "--out-dir", str(tmp_path)),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    out: list[str] = []
    tag = ""
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            m = re.search(r"\(namespaces (vg[0-9a-z]+)-\*\)", line)
            if m:
                tag = m.group(1)
            if "== Phase 1/4" in line:
                break
        assert tag and any("== Phase 1/4" in ln for ln in out), "".join(out)[-3000:]
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        out.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = "".join(out)
    assert proc.returncode == 130, text[-3000:]
    assert "interrupted: lab torn down (0 namespaces" in text
    assert left_behind(tag) == []


# ---------------------------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    t: float
    outcome: str
    node: str | None
    latency: float = 0.005
    detail: str = ""


def test_requests_count_in_the_phase_in_which_they_ended() -> None:
    p1 = Phase(1, "all healthy", start=0.0, end=10.0)
    p2 = Phase(2, "killed", start=10.0, end=20.0, event_t=10.0, route_t=12.5)
    reqs = [
        Req(9.0, "ok", "node1"),
        Req(9.999, "reset", None, latency=0.01),  # in flight at the kill: phase 2's failure
        Req(11.0, "refused", None),
        Req(12.4, "refused", None),
        Req(12.6, "ok", "node2"),
    ]
    s1, s2 = phase_stats(p1, reqs), phase_stats(p2, reqs)
    assert (s1.ok, s1.failed) == (1, 0)
    assert (s2.ok, s2.failed, s2.failed_after_route) == (1, 3, 0)
    assert s2.outcomes == {"reset": 1, "refused": 2}
    assert s2.per_node == {"node2": 1}
    [e] = request_expectations(p2, s2, ["node1", "node2"])
    assert e.ok and "3 failed before it, 0 after" in e.detail
    late = phase_stats(p2, [*reqs, Req(13.0, "refused", None)])
    [e] = request_expectations(p2, late, ["node1", "node2"])
    assert not e.ok and late.failed_after_route == 1


def test_phase_expectations_fail_when_they_should() -> None:
    p1 = Phase(1, "all healthy", start=0.0, end=10.0)
    st = phase_stats(p1, [Req(1.0, "ok", "node1"), Req(2.0, "ok", "node2")])
    every, none_failed = request_expectations(p1, st, ["node1", "node2", "node3"])
    assert not every.ok and none_failed.ok
    p4 = Phase(4, "sigterm", start=0.0, end=10.0)
    [drain] = request_expectations(p4, phase_stats(p4, [Req(1.0, "timeout", None)]), ["node1"])
    assert not drain.ok and "timeout 1" in drain.detail
    # A reset of a connection in flight at the route change is the router's ECMP rehash:
    # reported, excepted; a reset long after it is not.
    p4r = Phase(4, "sigterm", start=0.0, end=10.0, event_t=5.0, route_t=5.02)
    rehash = Req(4.99, "reset", None, latency=0.016)
    [drain] = request_expectations(p4r, phase_stats(p4r, [rehash]), ["node1"])
    assert drain.ok and "ECMP rehash" in drain.detail
    [drain] = request_expectations(
        p4r, phase_stats(p4r, [rehash, Req(7.0, "reset", None, latency=0.01)]), ["node1"]
    )
    assert not drain.ok
    p2 = Phase(2, "killed", start=0.0, end=10.0, event_t=0.0)  # never withdrawn
    [e] = request_expectations(p2, phase_stats(p2, []), ["node1"])
    assert not e.ok


def test_summary_table_shape() -> None:
    p = Phase(2, "node1's kube-apiserver killed", start=0, end=10, event_t=1.0, route_t=3.53)
    p.measure = "detection"
    p.nexthops_end = ("node2", "node3")
    q = Phase(4, "sigterm", start=10, end=20, event_t=11.0, route_t=11.012, exit_code=0)
    q.measure = "route gone"
    reqs = [Req(2.0, "refused", None), Req(5.0, "ok", "node2")]
    text = format_table([p, q], [phase_stats(p, reqs), phase_stats(q, reqs)])
    lines = text.splitlines()
    assert len({len(ln) for ln in lines}) == 1, "columns not aligned"
    assert "detection 2.53 s" in lines[2] and "route gone 12 ms, exit 0" in lines[3]
    assert lines[2].split("|")[3].strip() == "1" and lines[2].split("|")[4].strip() == "1"
    assert "node2 node3" in lines[2] and "(none)" in lines[3]


def test_route_intervals_from_changes() -> None:
    a, b = "192.0.2.11", "192.0.2.12"
    changes = [
        RouteSample(1.0, frozenset({a, b}), prev=0.99),
        RouteSample(5.0, frozenset({b}), prev=4.99),
        RouteSample(7.0, frozenset({a, b}), prev=6.99),
    ]
    assert intervals(changes, a, 10.0) == [(1.0, 5.0), (7.0, 10.0)]
    assert intervals(changes, b, 10.0) == [(1.0, 10.0)]
    assert intervals(changes, "192.0.2.13", 10.0) == []


def test_metrics_and_log_parsing() -> None:
    text = (
        "# HELP vipgate_probe_consecutive_failures Failed health checks in a row.\n"
        "vipgate_probe_consecutive_failures 2.0\n"
        'vipgate_probe_results_total{outcome="refused"} 2.0\n'
    )
    m = parse_metrics(text)
    assert m["vipgate_probe_consecutive_failures"] == 2.0
    assert m['vipgate_probe_results_total{outcome="refused"}'] == 2.0
    line = "2026-11-26 09:48:52,030 WARNING vipgate.manager: health check failed, 3 consecutive"
    assert log_message(line) == "WARNING health check failed, 3 consecutive"
    assert log_message("something else") == "something else"


def test_failures_are_timed_against_the_route_change() -> None:
    p = Phase(4, "sigterm", start=0.0, end=10.0, event_t=5.0, route_t=5.02)
    hit = Req(4.99, "reset", None, latency=0.016, detail="ConnectionResetError: reset")
    later = Req(7.0, "timeout", None, latency=1.0)
    assert near_route_change(hit, p) and not near_route_change(later, p)
    text = describe_failure(hit, p, "SIGTERM")
    assert text.startswith("reset after 16 ms, started 10 ms before SIGTERM, ended ")
    assert "before the route change was seen" in text and "ConnectionResetError" in text
    assert not near_route_change(hit, Phase(1, "healthy", start=0.0, end=10.0))
