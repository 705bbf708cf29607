"""Fuzz the probe's HTTP response handling (vipgate.health.probe) with a hostile server's bytes.

Everything the probe decides about a response is decided by the pure
:class:`~vipgate.health.probe.ResponseClassifier` (the probe's coroutines only move bytes and
keep time), so the harness feeds it the bytes directly: no event loop, no socket, no clock. It
plays the probe's part with the classifier's public API only: one classifier per connection,
a new connection when the last answer may not be reused or the server closed, one retry on a
new connection when a reused one was closed before the first byte (what ``Probe.check`` does).

Input: byte 0 -- bits 0-1: what the server does after the last segment (0: EOF, 1: reset,
2: nothing -- the check runs into its deadline --, 3: closes without EOF); bit 3: the second
and third checks read ``/readyz?verbose`` (same origin) instead. Byte 1: chunk size (0: one
chunk). The rest: the segments, split at ``NEXT`` (the connection stays open) or ``CLOSE``
(EOF after that segment) markers. Three checks are made on one connection.

Crash: an exception; a verdict that contradicts itself (``ok`` but not 200, a failure without an
error kind or text, text that is not one printable line -- it goes to the log --, a shutdown
that is not a 500, a retry-able failure that is not a close before the response); a connection
declared reusable that refuses the next request; a check that takes the classifier more than a
second of CPU.
"""

from __future__ import annotations

import time

from vipgate.health.probe import ErrorKind, ProbeResult, ResponseClassifier, ResponseVerdict

NEXT = b"\r\n\x00NEXT\x00\r\n"
CLOSE = b"\r\n\x00CLOSE\x00\r\n"
CPU_BOUND = 1.0  # seconds of CPU per check (a probe's timeout is about that)
LIVEZ = b"/livez"
READYZ = b"/readyz?verbose"
HEADERS = [(b"Host", b"192.0.2.11:6443"), (b"User-Agent", b"fuzz"), (b"Accept", b"*/*")]


class Crash(AssertionError):
    """A property of the probe did not hold."""


class Script:
    """The server: each request is answered with the next segment, then what the input says."""

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
        self.requests += 1
        return self.segments.pop(0) if self.segments else (b"", self.end)

    def chunks(self, segment: bytes) -> list[bytes]:
        size = self.chunk or max(1, len(segment))
        return [segment[i : i + size] for i in range(0, len(segment), size)]


class Connection:
    """The probe's side of one connection: the classifier and whether the server still has it."""

    def __init__(self) -> None:
        self.response = ResponseClassifier()
        self.open = True
        self.requests = 0


def _check_result(r: ResponseVerdict | ProbeResult, elapsed: float) -> None:
    """The properties of one outcome (``elapsed``: seconds of CPU it took)."""
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
    if r.shutdown and (r.status != 500 or "[-]shutdown failed" not in r.text):
        raise Crash(f"a shutdown that is not a 500 with the shutdown line: {r!r}")
    if (
        isinstance(r, ResponseVerdict)
        and r.stale
        and (r.status is not None or r.error is not ErrorKind.RESET)
    ):
        raise Crash(f"a retry-able failure that is not a close before the response: {r!r}")
    if elapsed > CPU_BOUND:
        raise Crash(f"one check took {elapsed:.3f} s of CPU: {r!r}")


def _exchange(conn: Connection, target: bytes, script: Script) -> ResponseVerdict | None:
    """One request and its answer; None: the deadline passed before the headers."""
    response = conn.response
    response.request(target, HEADERS)
    if response.verdict is not None:
        if conn.requests:
            raise Crash(f"a connection kept for reuse refused the next request: {response.verdict}")
        raise Crash(f"a new connection refused a request: {response.verdict}")
    conn.requests += 1
    segment, then = script.next()
    response.receive(b"")  # what the previous answer left buffered
    for chunk in script.chunks(segment):
        if response.verdict is not None:
            conn.open = False  # the server spoke out of turn: the probe closes the connection
            break
        response.receive(chunk)
    if then in ("open", "hang"):
        if response.verdict is None:
            return response.deadline_passed()
    else:
        conn.open = False
        response.closed(
            ConnectionResetError(104, "Connection reset by peer") if then == "reset" else None
        )
    if response.verdict is None:
        raise Crash("no verdict after the server closed")
    return response.verdict


def _one_check(conn: Connection | None, target: bytes, script: Script) -> Connection | None:
    """One check as ``Probe.check`` makes it; returns the connection it keeps (or None)."""
    t0 = time.process_time()
    for attempt in (0, 1):
        reused = conn is not None and conn.open
        if conn is None or not reused:
            conn = Connection()
        verdict = _exchange(conn, target, script)
        if verdict is not None and verdict.stale and reused and attempt == 0:
            conn = None  # the idle-close race: once more on a new connection
            continue
        break
    assert conn is not None
    if verdict is not None:
        _check_result(verdict, time.process_time() - t0)
    if conn.response.reusable:
        if verdict is None or verdict.status is None:
            raise Crash(f"a connection declared reusable without an answer: {verdict}")
        return conn if conn.open else None
    return None


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    script = Script(data)
    conn: Connection | None = None
    for i in range(3):
        target = READYZ if (i and data[0] & 8) else LIVEZ
        conn = _one_check(conn, target, script)
