"""The demo (``python -m demo.run --short``) end to end; its pure parts are tested in
tests/unit/test_demo_report.py.

These tests run the real demo as a subprocess, as an operator would, and check what it
promises: exit 0, the summary table, plausible numbers (node1 out of the ECMP route after its
checks failed, requests failing only until then, recovery, a SIGTERM drain without a failed
request on a router without an RFC 8326 policy, every node's /livez answering 401 without a failed
connection: the VIP fails open), a real timeline picture, and nothing left behind -- also when it
is interrupted with Ctrl-C or stopped with SIGTERM.
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
from pathlib import Path
from typing import Any

import pytest

from lab.netns import MARKER_DIR, list_netns

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


def check_phases(summary: dict[str, Any], rows: dict[int, list[str]], out: str) -> None:
    """What each phase of the demo promises, from its summary, table rows and narration."""
    p1, p2, p3, p4, p5 = summary["phases"]
    assert summary["settings"]["unhealthy_action"] == "deprefer"
    period, threshold = summary["settings"]["period"], summary["settings"]["threshold"]
    fast = summary["settings"]["fast_period"]
    assert (period, summary["settings"]["timeout"], threshold) == (5.0, 3.0, 3)  # kube-vip's
    # Phase 1: 3 next hops, every node answered, nothing failed.
    assert p1["nexthops_end"] == ["node1", "node2", "node3"]
    assert all(p1["requests"]["per_node"].get(f"node{i}", 0) > 0 for i in (1, 2, 3))
    assert p1["requests"]["failed"] == 0
    # Phase 2: de-preferred after `threshold` failed checks at the fast period -- long before
    # the first regular check was even due -- so the router dropped node1's next hop; requests
    # failed (node1's share) but none that started after that; node2 and node3 carried the
    # traffic.
    det = p2["measured_s"]
    assert det is not None, "the router never dropped node1's next hop"
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
    assert p4["route_states_end"]["node2"] == "stopped"
    # Phase 5: every /livez answers 401: node1 and node3 (node2's vipgate was stopped) are
    # de-preferred, both stay in the router's ECMP route, and every request reaches an
    # apiserver (401: the client is anonymous); healthy again, both are announced plainly.
    assert p5["fault_states"] == {
        "node1": "depreferred",
        "node2": "stopped",
        "node3": "depreferred",
    }
    assert p5["fault_nexthops"] == ["node1", "node3"]
    # (a reset in flight at a change of BIRD's next-hop set is an ECMP rehash, as in phase 4.
    # The set changes at most four times: a node leaves when de-preferred first, both are in
    # once both are, and the same on the way back to healthy; at most one reset per change.)
    assert p5["requests"]["failed"] - p5["requests"]["rehashed"] == 0, p5["requests"]
    changes = len(p5["route_changes"])
    assert changes <= 4, p5["route_changes"]
    assert p5["requests"]["rehashed"] <= changes, (p5["requests"], p5["route_changes"])
    assert p5["requests"]["answered"].get("http_401", 0) > 0, p5["requests"]
    assert p5["route_states_end"] == {
        "node1": "announced",
        "node2": "stopped",
        "node3": "announced",
    }
    assert p5["nexthops_end"] == ["node1", "node3"]
    assert "node1's vipgate: route depreferred" in out
    assert rows[5][5].endswith("x 401") and "node1:ann" in rows[5][6], rows[5]
    assert "node1:DEPREF" in rows[2][6], rows[2]  # phase 2 ended with node1 de-preferred


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
    for n in (1, 2, 3, 4, 5):
        assert f"== Phase {n}/5" in out
    assert "nexthop via 192.0.2.11" in out and "nexthop via 192.0.2.13" in out
    # (the fast re-checks come 0.2 s apart: the metrics read may see 1/3 and 2/3 or not)
    assert re.search(r"node1 vipgate: failed health checks 3/3 .*-> de-prefer", out)
    assert "[FAIL]" not in out

    # The summary table: header and one row per phase, agreeing with the JSON.
    assert "| phase " in out and "| measured " in out and "| requests ok |" in out
    rows = table_rows(out)
    assert sorted(rows) == [1, 2, 3, 4, 5], out[-3000:]
    summary: dict[str, Any] = json.loads((tmp_path / "demo-summary.json").read_text())
    assert summary["ok"] is True
    assert all(e["ok"] for e in summary["expectations"]), summary["expectations"]
    for p in summary["phases"]:
        row = rows[p["number"]]
        assert row[2] == str(p["requests"]["ok"]) and row[3] == str(p["requests"]["failed"])
        assert row[4] == " ".join(p["nexthops_end"])

    check_phases(summary, rows, out)

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
@pytest.mark.parametrize(
    ("sig", "status", "says"),
    [
        (signal.SIGINT, 130, "interrupted: lab torn down (0 namespaces"),
        (signal.SIGTERM, 143, "stopped by SIGTERM: lab torn down (0 namespaces"),
    ],
    ids=["ctrl-c", "sigterm"],
)
def test_demo_interrupted_leaves_nothing_behind(
    tmp_path: Path, sig: signal.Signals, status: int, says: str
) -> None:
    """Ctrl-C (SIGINT) in the middle of phase 1: exit 130, lab removed; SIGTERM the same, with
    143 (README, "The demo")."""
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
            if "== Phase 1/5" in line:
                break
        assert tag and any("== Phase 1/5" in ln for ln in out), "".join(out)[-3000:]
        time.sleep(1.0)
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=60)
        out.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = "".join(out)
    assert proc.returncode == status, text[-3000:]
    assert says in text, text[-3000:]
    assert left_behind(tag) == []
