"""Which C stack mapped the memory a running process still holds: a gdb tracer and its replay.

malloc serves a request above its mmap threshold (the image's ``MALLOC_MMAP_THRESHOLD_=131072``)
with a mapping of its own, and grows or shrinks one with ``mremap``; RSS steps of separately
mapped memory (``mallinfo2().hblkhd``, the soak's ``mmapped_bytes``) are such blocks. The kernel
merges adjacent anonymous mappings, so ``/proc/PID/maps`` cannot tell them apart; this records
every ``mmap`` of 128 kB or more (with its C stack and the address it returned), every
``munmap`` and every ``mremap`` system call (with its C stack), and the replay lists the blocks
mapped while tracing that are still mapped at its end. It found the long soak's +544 kB step
(bench/README.md, "bench_soak --long, fourth"). Record, as root (gdb stops the process at each
event: expect it slower while traced)::

    MMTRACE_OUT=/tmp/mm.log MMTRACE_SECONDS=120 gdb -p PID -batch \\
        -ex 'source bench/mmaptrace.py' -ex continue -ex detach

and replay::

    .venv/bin/python -m bench.mmaptrace /tmp/mm.log

Linux x86-64 (system call arguments read from the registers of the System V ABI).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

MIN_MMAP = 128 * 1024  # bytes: smaller mappings are not malloc's separately mapped blocks


@dataclass
class Block:
    size: int
    t: float
    how: str  # "mmap" or "mremap (was N)" / "mremap (unseen)": the block's last change
    stack: str


def replay(lines: TextIO) -> dict[int, Block]:
    """The blocks still mapped at the end of a trace, by address (lines as the tracer writes)."""
    live: dict[int, Block] = {}
    for line in lines:
        p = line.rstrip("\n").split(" ")
        if len(p) < 3:
            continue
        t, kind = float(p[0]), p[1]
        if kind == "mmap":  # t mmap SIZE ADDR STACK...
            live[int(p[3], 16)] = Block(int(p[2]), t, "mmap", " ".join(p[4:]))
        elif kind == "munmap":  # t munmap ADDR SIZE
            live.pop(int(p[2], 16), None)
        elif kind == "mremap":  # t mremap OLD OLDSIZE NEWSIZE NEW STACK...
            was = live.pop(int(p[2], 16), None)
            how = f"mremap (was {p[3]})" if was else "mremap (unseen)"
            live[int(p[5], 16)] = Block(int(p[4]), t, how, " ".join(p[6:]))
    return live


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace", help="the file MMTRACE_OUT named")
    a = ap.parse_args(argv)
    with open(a.trace) as f:
        live = replay(f)
    for addr, b in sorted(live.items(), key=lambda x: x[1].t):
        print(f"{b.t:.3f} {addr:#x} {b.size} {b.how}\n    {b.stack[:1200]}\n")
    print(f"still mapped: {sum(b.size for b in live.values())} bytes in {len(live)} blocks")
    return 0


def _install(gdb: Any) -> None:
    """Inside gdb: breakpoints on mmap and munmap, a catchpoint on the mremap system call."""
    out = open(os.environ.get("MMTRACE_OUT", "/tmp/mmaptrace.log"), "a", buffering=1)  # noqa: SIM115
    deadline = time.monotonic() + float(os.environ.get("MMTRACE_SECONDS", "60"))

    def reg(name: str) -> int:
        return int(gdb.parse_and_eval(name))

    def stack(limit: int = 30) -> str:
        f, names = gdb.newest_frame(), list[str]()
        while f is not None and len(names) < limit:
            names.append(f.name() or hex(f.pc()))
            try:
                f = f.older()
            except gdb.error:
                break
        return " < ".join(names)

    class Returned(gdb.FinishBreakpoint):  # type: ignore[misc]
        def __init__(self, what: str) -> None:
            super().__init__(gdb.newest_frame(), internal=True)
            self.silent = True
            self.what, self.stack = what, stack()

        def stop(self) -> bool:
            out.write(f"{time.time():.3f} {self.what} {int(self.return_value):#x} {self.stack}\n")
            return False

        def out_of_scope(self) -> None:
            pass

    class Mmap(gdb.Breakpoint):  # type: ignore[misc]
        def stop(self) -> bool:
            if reg("$rsi") >= MIN_MMAP and reg("$rdi") == 0:  # a new anonymous block
                Returned(f"mmap {reg('$rsi')}")
            return time.monotonic() > deadline

    class Munmap(gdb.Breakpoint):  # type: ignore[misc]
        def stop(self) -> bool:
            out.write(f"{time.time():.3f} munmap {reg('$rdi'):#x} {reg('$rsi')}\n")
            return time.monotonic() > deadline

    entry: list[tuple[int, int, int, str]] = []

    def on_mremap() -> None:  # the catchpoint stops at the call's entry, then at its return
        if not entry:
            entry.append((reg("$rdi"), reg("$rsi"), reg("$rdx"), stack()))
            return
        old, old_size, new_size, st = entry.pop()
        new = reg("$rax")
        out.write(f"{time.time():.3f} mremap {old:#x} {old_size} {new_size} {new:#x} {st}\n")

    for b in (Mmap("mmap64"), Munmap("munmap")):
        b.silent = True
    gdb.on_mremap = on_mremap  # reachable from the catchpoint's commands
    gdb.execute("catch syscall mremap")
    gdb.execute("commands\nsilent\npython gdb.on_mremap()\ncontinue\nend")
    out.write(f"{time.time():.3f} attached\n")


if __name__ == "__main__":
    try:
        _gdb = importlib.import_module("gdb")
    except ImportError:
        sys.exit(main())
    _install(_gdb)
