"""Long fuzz runs of every target, with the figures for bench/README.md.

    .venv/bin/python -m fuzz.run --seconds 600 --out bench/out/fuzz [--targets bgp,probe]

Each target runs ``python -m fuzz TARGET`` for ``--seconds`` on a working corpus
(``<out>/<target>/corpus``, grown from ``fuzz/corpus/<target>``), one after the other. Reported:
executions, exec/s, libFuzzer's coverage (``cov``: instrumented code edges reached in the
target's packages; ``ft``: features), corpus size, crashes (``crash-*`` files, kept in
``<out>/<target>/``: copy each to ``fuzz/regressions/<target>/`` with a test once fixed).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from fuzz.__main__ import TARGETS

ROOT = Path(__file__).resolve().parents[1]


def run_target(target: str, seconds: float, out: Path) -> dict[str, object]:
    d = out / target
    work = d / "corpus"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "fuzz", target, f"-max_total_time={int(seconds)}",
        "-print_final_stats=1", f"-artifact_prefix={d}/", str(work),
        str(ROOT / "fuzz" / "corpus" / target),
    ]  # fmt: skip
    t0 = time.monotonic()
    cp = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 300)
    (d / "libfuzzer.log").write_text(cp.stderr)
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", cp.stderr))
    cov = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", cp.stderr)
    crashes = sorted(p.name for p in d.glob("crash-*")) + sorted(
        p.name for p in d.glob("timeout-*")
    )
    return {
        "target": target,
        "seconds": round(time.monotonic() - t0, 1),
        "executions": int(stats.get("number_of_executed_units", 0)),
        "exec_per_s": int(stats.get("average_exec_per_sec", 0)),
        "cov": int(cov[-1][0]) if cov else 0,
        "ft": int(cov[-1][1]) if cov else 0,
        "corpus": int(cov[-1][2]) if cov else 0,
        "crashes": crashes,
        "exit": cp.returncode,
    }


def table(rows: list[dict[str, object]]) -> str:
    out = [
        "| target | time (s) | executions | exec/s | coverage (edges / features) | corpus "
        "| crashes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        crashes = r["crashes"]
        assert isinstance(crashes, list)
        out.append(
            f"| {r['target']} | {r['seconds']} | {r['executions']} | {r['exec_per_s']} | "
            f"{r['cov']} / {r['ft']} | {r['corpus']} | {len(crashes)} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--out", default="bench/out/fuzz")
    ap.add_argument("--targets", default=",".join(TARGETS))
    a = ap.parse_args(argv)
    out = Path(a.out)
    rows = []
    for target in a.targets.split(","):
        print(f"fuzzing {target} for {a.seconds:g} s ...", file=sys.stderr, flush=True)
        rows.append(run_target(target, a.seconds, out))
    (out / "fuzz.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(table(rows))
    return 1 if any(r["crashes"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
