"""The Python heap of a short soak, from inside vipgate: what a full collection finds.

Run as root from the repository root::

    .venv/bin/python -m bench.bench_heap --minutes 8 --out bench/out/heap

A bench_soak run (``--long``'s settings: 0.008 s period, 15 s phases of all the apiserver's
faults, BIRD restarts) of ``--minutes``, warm-up 60 s, with the memory probe's heap readings
(bench/memprobe.py) beside its samples: every 20 s ``heap`` (objects per GC generation, the
collector's counts, the most common types), and at 2 minutes, half-way and 40 s before the end
``collect``: a full collection, the types of what it found unreachable (reference cycles) and
the Python heap just after it. The heap after each full collection tells growth from garbage
waiting for the collector. Writes ``<out>-heap.jsonl`` (one reading a line) beside the soak's
own ``<out>.json``/``.png`` and prints the collections' findings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import bench_soak
from bench.memprobe import ask
from lab.netns import Lab

ALLOCATOR = ("MALLOC_ARENA_MAX=1", "MALLOC_MMAP_THRESHOLD_=131072")  # the image's settings


def readings(sock: str, seconds: float, out: Path, stop: threading.Event) -> None:
    """The heap readings of one run, into `out` (JSON lines)."""
    while not os.path.exists(sock) and not stop.is_set():
        time.sleep(0.2)
    t0 = time.monotonic()
    collects = sorted({120.0, seconds * 0.5, seconds - 40.0})
    next_heap = 0.0
    with out.open("w") as f:

        def put(what: str, r: dict[str, Any]) -> None:
            f.write(json.dumps({"t": round(time.monotonic() - t0, 1), "what": what, **r}) + "\n")
            f.flush()

        while not stop.is_set() and time.monotonic() - t0 < seconds - 10:
            t = time.monotonic() - t0
            if collects and t >= collects[0]:
                collects.pop(0)
                put("collect", ask(sock, "collect", timeout=30))
            if t >= next_heap:
                put("heap", ask(sock, "heap", timeout=30))
                next_heap += 20.0
            stop.wait(1.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--out", default="bench/out/heap")
    a = ap.parse_args(argv)
    s = bench_soak.Settings.long(out=a.out)
    s = bench_soak.Settings(
        **{**asdict(s), "minutes": a.minutes, "warmup": 60.0, "min_checks": 0, "env": ALLOCATOR}
    )
    heap = Path(a.out + "-heap.jsonl")
    heap.parent.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    with Lab() as lab:
        sock = str(lab.workdir / "memprobe.sock")
        th = threading.Thread(target=readings, args=(sock, a.minutes * 60, heap, stop))
        th.start()
        try:
            res = bench_soak.soak(s, lab)
        finally:
            stop.set()
            th.join(35)
    bench_soak.write(res)
    print(bench_soak.table(res))
    print()
    for line in heap.read_text().splitlines():
        r = json.loads(line)
        if r["what"] == "collect":
            print(
                f"t={r['t']:.0f}s full collection: {r['unreachable']} unreachable "
                f"({', '.join(f'{n} {k}' for n, k in r['garbage'][:8]) or 'none'}); "
                f"heap {r['blocks_before']} -> {r['blocks_after']} blocks"
            )
    print(f"\nwritten: {heap}")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
