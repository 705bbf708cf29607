"""The fuzz harnesses (fuzz/): every seed and every past finding replayed through each target's
``check``, then a short atheris run of each (fixed seed and count: the same inputs every time).

A long run: ``python -m fuzz.run --seconds 600`` (figures in bench/README.md)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.__main__ import TARGETS

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"
RUNS = {"bgp": 4000, "probe": 300, "config": 4000, "rtnl": 4000}


def _inputs(target: str) -> list[Path]:
    files: list[Path] = []
    for kind in ("corpus", "regressions"):
        d = FUZZ / kind / target
        files += sorted(d.iterdir()) if d.is_dir() else []
    return files


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_seeds_and_findings_replay(target: str) -> None:
    mod = importlib.import_module(f"fuzz.{target}")
    files = _inputs(target)
    assert len(files) >= 10, f"the {target} corpus is missing (python -m fuzz.seeds)"
    for f in files:
        mod.check(f.read_bytes())  # raises on a crash; the file name says which input


def test_the_oracles_can_fail() -> None:
    """A NOTIFICATION code the RFC does not give for a received message, and a result text
    that is not one printable line, are reported as crashes."""
    from fuzz import bgp, probe
    from vipgate.bgp.wire import BgpError
    from vipgate.health.probe import ErrorKind, ProbeResult

    with pytest.raises(bgp.Crash):
        bgp._check_error(BgpError(4, 0))  # Hold Timer Expired is not about a message
    with pytest.raises(probe.Crash):
        probe._check_result(ProbeResult(False, 500, ErrorKind.HTTP_STATUS, "a\x1bb", 0.0), 0.0)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_short_atheris_run(target: str, tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    work = tmp_path / "corpus"
    work.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "fuzz",
        target,
        f"-runs={RUNS[target]}",
        "-seed=1",
        "-max_total_time=60",
        "-print_final_stats=1",
        f"-artifact_prefix={tmp_path}/",
        str(work),
        str(FUZZ / "corpus" / target),
    ]
    cp = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    crashes = list(tmp_path.glob("crash-*")) + list(tmp_path.glob("timeout-*"))
    assert cp.returncode == 0 and not crashes, cp.stderr[-3000:]
    assert f"stat::number_of_executed_units: {RUNS[target]}" in cp.stderr, cp.stderr[-2000:]
