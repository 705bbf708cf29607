"""Run ``vipgate`` with a memory probe inside its event loop (bench_soak's launcher).

``python -m bench.memprobe manager`` runs ``python -m vipgate manager`` unchanged, except that
its event loop also serves a unix socket (path in ``VIPGATE_MEMPROBE``) where one line asks for
one reading and gets one JSON line back::

    sample  -> {"rss": bytes, "rss_anon" / "rss_file": its anonymous and file-backed parts,
                "mmapped": [count, bytes] of malloc's separately mapped blocks,
                "pymalloc_arenas": Python's 1 MiB small-object arenas allocated,
                "blocks": sys.getallocatedblocks(), "arenas": malloc arenas,
                "arena_bytes": [system bytes per arena], "threads": n}
    trim    -> the same, then malloc_trim(0), then {"rss_trimmed": bytes, ...}
    heap    -> the garbage collector's view: objects per generation, its counts and
               thresholds, the 40 most common types of the tracked objects
    collect -> a full collection, gc.collect(2): what it found and the heap before and after
    threads -> each thread's name and the stack that started it
    snapshot PATH -> a tracemalloc snapshot dumped to PATH (run with PYTHONTRACEMALLOC=N)

The probe runs in the loop's own thread (a protocol, no task, no thread: it adds neither to the
tasks counted nor a malloc arena of its own) and costs nothing between readings.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import json
import os
import re
import runpy
import sys
import tempfile
import threading
import traceback
import tracemalloc
import types
from collections import Counter
from typing import Any

from vipgate.transports import release_closed

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fopen.restype = ctypes.c_void_p
_libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
_libc.fclose.argtypes = [ctypes.c_void_p]
_libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
_libc.malloc_trim.argtypes = [ctypes.c_size_t]


def status(*fields: str) -> dict[str, int]:
    """Sizes from one read of /proc/self/status in bytes (VmRSS, RssAnon, RssFile); -1 for a
    field that is absent."""
    out = dict.fromkeys(fields, -1)
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in out:
                out[name] = int(value.split()[0]) * 1024
    return out


def rss() -> int:
    return status("VmRSS")["VmRSS"]


def mmapped(xml: str) -> tuple[int, int]:
    """malloc's separately mapped blocks (count, bytes): those over the mmap threshold, from
    :func:`_malloc_info`'s text."""
    m = re.search(r'<total type="mmap" count="(\d+)" size="(\d+)"/>', xml)
    return (int(m.group(1)), int(m.group(2))) if m else (-1, -1)


def _malloc_info() -> str:
    with tempfile.NamedTemporaryFile("rb", suffix=".xml") as tmp:
        fp = _libc.fopen(tmp.name.encode(), b"w")
        if not fp:
            return ""
        _libc.malloc_info(0, fp)
        _libc.fclose(fp)
        return tmp.read().decode(errors="replace")


def arenas(xml: str) -> list[int]:
    """System bytes of each malloc arena (glibc's malloc_info: one <heap> per arena)."""
    out: list[int] = []
    for heap in re.findall(r'<heap nr="\d+">(.*?)</heap>', xml, re.S):
        m = re.search(r'<system type="current" size="(\d+)"/>', heap)
        out.append(int(m.group(1)) if m else 0)
    return out


def pymalloc_arenas() -> int:
    """Python's small-object arenas now allocated (``sys._debugmallocstats``, which writes to
    the C stderr: caught there for the call; the loop's thread is the only one writing)."""
    with tempfile.TemporaryFile("w+b") as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        m = re.search(rb"# arenas allocated current\s*=\s*(\d+)", tmp.read())
    return int(m.group(1)) if m else -1


def reading(trim: bool) -> dict[str, Any]:
    xml = _malloc_info()  # once per reading: it writes the allocator's state to a file
    a = arenas(xml)
    mem = status("VmRSS", "RssAnon", "RssFile")
    r: dict[str, Any] = {
        "rss": mem["VmRSS"],
        "rss_anon": mem["RssAnon"],  # the heap, arenas, mapped blocks, stacks
        "rss_file": mem["RssFile"],  # the interpreter and libraries' pages
        "mmapped": mmapped(xml),  # malloc's blocks over the mmap threshold: (count, bytes)
        "pymalloc_arenas": pymalloc_arenas(),  # Python's 1 MiB small-object arenas
        "blocks": sys.getallocatedblocks(),
        "arenas": len(a),
        "arena_bytes": a,
        "threads": threading.active_count(),
        "os_threads": len(os.listdir("/proc/self/task")),
        # objects the cyclic garbage collector found unreachable so far (reference cycles)
        "gc_collected": sum(g["collected"] for g in gc.get_stats()),
    }
    if trim:
        _libc.malloc_trim(0)
        r["rss_trimmed"] = rss()
    return r


def heap() -> dict[str, Any]:
    types = Counter(type(o).__qualname__ for o in gc.get_objects())
    return {
        "blocks": sys.getallocatedblocks(),
        "generations": [len(gc.get_objects(g)) for g in range(3)],
        "count": gc.get_count(),
        "threshold": gc.get_threshold(),
        "stats": gc.get_stats(),
        "types": types.most_common(40),
    }


def collect() -> dict[str, Any]:
    """A full collection; the types of what it found unreachable (kept aside with
    DEBUG_SAVEALL for the count, then released)."""
    before, gens = sys.getallocatedblocks(), [len(gc.get_objects(g)) for g in range(3)]
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        found = gc.collect(2)
        garbage = Counter(type(o).__qualname__ for o in gc.garbage).most_common(40)
        frames = Counter(
            f"{o.f_code.co_filename.rsplit('/', 2)[-1]}:{o.f_code.co_qualname}"
            for o in gc.garbage
            if isinstance(o, types.FrameType)
        ).most_common(20)  # where the cycles through frames (exceptions' tracebacks) come from
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    gc.collect(2)
    return {"blocks_before": before, "generations_before": gens, "unreachable": found,
            "garbage": garbage, "frames": frames, "blocks_after": sys.getallocatedblocks(),
            "rss_after": rss()}  # fmt: skip


_started: dict[int, list[str]] = {}  # id(thread) -> the stack that started it


def _record_starts() -> None:
    start = threading.Thread.start

    def recorded(self: threading.Thread) -> None:
        _started[id(self)] = traceback.format_stack()[:-1]
        start(self)

    threading.Thread.start = recorded  # type: ignore[method-assign]


def threads() -> list[dict[str, Any]]:
    return [{"name": t.name, "daemon": t.daemon, "started_by": _started.get(id(t), [])}
            for t in threading.enumerate()]  # fmt: skip


def command(line: str) -> Any:
    cmd, _, arg = line.partition(" ")
    if cmd == "heap":
        return heap()
    if cmd == "collect":
        return collect()
    if cmd == "threads":
        return threads()
    if cmd == "snapshot":
        if not tracemalloc.is_tracing():
            return {"error": "tracemalloc is off (PYTHONTRACEMALLOC)"}
        tracemalloc.take_snapshot().dump(arg)
        return {"path": arg, "blocks": sys.getallocatedblocks()}
    return reading(cmd == "trim")


class _Probe(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\n" in self.buf:
            cmd = self.buf.split(b"\n", 1)[0].strip().decode()
            assert isinstance(self.transport, asyncio.WriteTransport)
            self.transport.write(json.dumps(command(cmd)).encode() + b"\n")
            self.transport.close()
            release_closed(self.transport)  # no garbage of the probe's own in its readings


class _Policy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = super().new_event_loop()
        path = os.environ.get("VIPGATE_MEMPROBE", "")
        if path:

            def serve() -> None:
                loop.create_task(loop.create_unix_server(_Probe, path))

            loop.call_soon(serve)
        return loop


def main() -> None:
    _record_starts()
    asyncio.set_event_loop_policy(_Policy())
    sys.argv = ["vipgate", *sys.argv[1:]]
    runpy.run_module("vipgate", run_name="__main__", alter_sys=True)


def ask(path: str, cmd: str, timeout: float = 3.0) -> dict[str, Any]:
    """The bench's side: one reading from the probe at `path`."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(cmd.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    out: dict[str, Any] = json.loads(buf)
    return out


if __name__ == "__main__":
    main()
