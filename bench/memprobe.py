"""Run ``vipgate`` with a memory probe inside its event loop (bench_soak's launcher).

``python -m bench.memprobe manager`` runs ``python -m vipgate manager`` unchanged, except that
its event loop also serves a unix socket (path in ``VIPGATE_MEMPROBE``) where one line asks for
one reading and gets one JSON line back::

    sample  -> {"rss": bytes, "blocks": sys.getallocatedblocks(), "arenas": malloc arenas,
                "arena_bytes": [system bytes per arena], "threads": n}
    trim    -> the same, then malloc_trim(0), then {"rss_trimmed": bytes, ...}

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
from typing import Any

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fopen.restype = ctypes.c_void_p
_libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
_libc.fclose.argtypes = [ctypes.c_void_p]
_libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
_libc.malloc_trim.argtypes = [ctypes.c_size_t]


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return -1


def arenas() -> list[int]:
    """System bytes of each malloc arena (glibc's malloc_info: one <heap> per arena)."""
    with tempfile.NamedTemporaryFile("rb", suffix=".xml") as tmp:
        fp = _libc.fopen(tmp.name.encode(), b"w")
        if not fp:
            return []
        _libc.malloc_info(0, fp)
        _libc.fclose(fp)
        xml = tmp.read().decode(errors="replace")
    out: list[int] = []
    for heap in re.findall(r'<heap nr="\d+">(.*?)</heap>', xml, re.S):
        m = re.search(r'<system type="current" size="(\d+)"/>', heap)
        out.append(int(m.group(1)) if m else 0)
    return out


def reading(trim: bool) -> dict[str, Any]:
    a = arenas()
    r: dict[str, Any] = {
        "rss": rss(),
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


class _Probe(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\n" in self.buf:
            cmd = self.buf.split(b"\n", 1)[0].strip()
            assert isinstance(self.transport, asyncio.WriteTransport)
            self.transport.write(json.dumps(reading(cmd == b"trim")).encode() + b"\n")
            self.transport.close()


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
