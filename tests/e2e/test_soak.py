"""The soak benchmark's 2-minute CI version (bench/bench_soak.py): same verdicts, scaled.

One vipgate at a 0.05 s period against the fake apiserver cycling healthy / 500 / slow /
refused / healthy / hung / slow / apiserver shutdown / healthy / 401 / healthy / untrusted
certificate every 4 s, BIRD restarted every 30 s; after a 30 s warm-up RSS grows <= 1 MB
(<= 512 kB over the second half), open fds, asyncio tasks and threads stay flat, nothing
crashes, the route is back at the end.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bench_soak import Settings, run, table, write

pytestmark = pytest.mark.lab


def test_soak_two_minutes(tmp_path: Path) -> None:
    res = run(Settings.ci(out=str(tmp_path / "soak")))
    write(res)
    assert res.ok, "soak verdicts failed:\n" + table(res)
    assert res.mode_switches >= 25 and res.bird_restarts >= 3  # the faults did happen
    assert res.outcomes.get("http_status", 0) > 0 and res.outcomes.get("timeout", 0) > 0
    assert res.outcomes.get("refused", 0) > 0
    assert res.outcomes.get("tls_verify", 0) > 0 and res.trims
