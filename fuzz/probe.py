"""Fuzz the probe's HTTP response handling (vipgate.health.probe) with a hostile server's bytes.

The real :class:`~vipgate.health.probe.Probe` runs on a real event loop; only the socket is
replaced by an in-memory transport (:class:`ScriptTransport`) that answers each request with the
next *segment* of the input, cut into chunks, and then does what the input says.

Input: byte 0 -- bits 0-1: what the server does after the last segment (0: EOF, 1: reset,
2: nothing -- the check runs into its timeout --, 3: closes without EOF); bit 3: the second
and third checks read ``/readyz?verbose`` (same origin) instead. Byte 1: chunk size (0: one
chunk). The rest: the segments, split at ``NEXT`` (the connection stays open) or ``CLOSE``
(EOF after that segment) markers. Three checks are made on one probe.

Crash: ``check()`` raising; a result that contradicts itself (``ok`` but not 200, a failure
without an error kind or text, text that is not one printable line -- it goes to the log); a
check outliving its timeout; a kept connection whose HTTP state is not idle.
"""

from __future__ import annotations

import asyncio
import atexit
from typing import Any

import h11

from vipgate.health.probe import ErrorKind, Probe, ProbeResult, _Conn

NEXT = b"\r\n\x00NEXT\x00\r\n"
CLOSE = b"\r\n\x00CLOSE\x00\r\n"
TIMEOUT = 0.02
URL = "http://192.0.2.11:6443/livez"
READYZ = "http://192.0.2.11:6443/readyz?verbose"


class Crash(AssertionError):
    """A property of the probe did not hold."""


class ScriptTransport(asyncio.Transport):
    """Answers each write (a request) with the next scripted segment; asyncio's call order."""

    def __init__(self, script: Script, proto: _Conn) -> None:
        super().__init__()
        self.script = script
        self.proto = proto
        self.closed = False
        self.loop = asyncio.get_running_loop()

    def write(self, data: Any) -> None:
        if self.closed:
            return
        self.script.requests += 1
        segment, then = self.script.next()
        size = self.script.chunk or max(1, len(segment))
        for i in range(0, len(segment), size):
            self.loop.call_soon(self._deliver, segment[i : i + size])
        if then != "open":
            self.loop.call_soon(self._end, then)

    def _deliver(self, data: bytes) -> None:
        if not self.closed:
            self.proto.data_received(data)

    def _end(self, how: str) -> None:
        if self.closed or how == "hang":
            return
        if how == "eof" and self.proto.eof_received():
            return  # the protocol keeps the half-closed connection (ours never does)
        self._lost(
            ConnectionResetError(104, "Connection reset by peer") if how == "reset" else None
        )

    def _lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.loop.call_soon(self.proto.connection_lost, exc)

    def close(self) -> None:
        self._lost(None)

    def abort(self) -> None:
        self._lost(None)

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class Script:
    ENDS = ("eof", "reset", "hang", "lost")

    def __init__(self, data: bytes) -> None:
        self.end = self.ENDS[data[0] & 3]
        self.chunk = data[1]
        self.segments: list[tuple[bytes, str]] = []
        for part in data[2:].split(NEXT):
            pieces = part.split(CLOSE)
            self.segments += [(p, "eof") for p in pieces[:-1]] + [(pieces[-1], "open")]
        last, _ = self.segments[-1]
        self.segments[-1] = (last, self.end)
        self.requests = 0

    def next(self) -> tuple[bytes, str]:
        return self.segments.pop(0) if self.segments else (b"", self.end)


class ScriptedProbe(Probe):
    def __init__(self, script: Script) -> None:
        super().__init__(URL, TIMEOUT)
        self.script = script

    async def _open_tcp(self, loop: asyncio.AbstractEventLoop, conn: _Conn) -> asyncio.Transport:
        self.tcp_connects += 1
        t = ScriptTransport(self.script, conn)
        conn.connection_made(t)
        return t


def _check_result(r: ProbeResult, elapsed: float) -> None:
    if not isinstance(r, ProbeResult):
        raise Crash(f"not a ProbeResult: {r!r}")
    if r.ok != (r.status == 200 and r.error is ErrorKind.NONE):
        raise Crash(f"ok contradicts status/error: {r!r}")
    if not r.ok and (r.error is ErrorKind.NONE or not r.text):
        raise Crash(f"a failure without a kind or text: {r!r}")
    if r.error is ErrorKind.HTTP_STATUS and (r.status is None or r.status == 200):
        raise Crash(f"HTTP_STATUS without a non-200 status: {r!r}")
    if r.status is not None and not 100 <= r.status <= 999:
        raise Crash(f"status {r.status}")
    if not r.text.isprintable():
        raise Crash(f"result text is not one printable line (it is logged): {r.text!r}")
    if elapsed > TIMEOUT * 5 + 0.5:
        raise Crash(f"check took {elapsed:.3f}s with a {TIMEOUT}s timeout: {r!r}")


async def _scenario(data: bytes) -> None:
    script = Script(data)
    probe = ScriptedProbe(script)
    loop = asyncio.get_running_loop()
    try:
        for i in range(3):
            url = READYZ if (i and data[0] & 8) else None
            before = script.requests
            t0 = loop.time()
            try:
                r = await asyncio.wait_for(probe.check(url), TIMEOUT * 5 + 1.0)
            except TimeoutError as e:
                raise Crash("check() hung past its timeout") from e
            _check_result(r, loop.time() - t0)
            if script.requests - before > 2:
                raise Crash(f"{script.requests - before} requests for one check")
            conn = probe._conn
            if probe.connected and conn is not None:
                states = (conn.http.our_state, conn.http.their_state)
                if states != (h11.IDLE, h11.IDLE):
                    raise Crash(f"kept a connection in HTTP state {states}")
    finally:
        await probe.close()


_loop: asyncio.AbstractEventLoop | None = None


def check(data: bytes) -> None:
    global _loop
    if len(data) < 2:
        return
    if _loop is None:
        _loop = asyncio.new_event_loop()
        atexit.register(_loop.close)
    _loop.run_until_complete(_scenario(data))
