"""A load client for the lab: N new TLS connections per second to the VIP, one GET each.

Runs inside the client namespace (198.51.100.10), so every connection goes through the router
and its ECMP route::

    python -m lab.client --ca ca.crt --out requests.jsonl [--host 203.0.113.100 --port 6443]
        [--server-name kubernetes --path /livez --rate 50 --duration 60 --timeout 1
         --max-requests N --concurrency 500]

Each request is a fresh TCP connection and a full TLS handshake (no session resumption),
verified against the lab CA with server name ``kubernetes``, then ``GET /livez`` with
``Connection: close``. Requests start on a fixed schedule (request i at ``t0 + i / rate``), one
asyncio task each, so requests that hang do not slow the rate; at most ``--concurrency`` are in
flight (a request that would exceed it is recorded as ``skipped``, not delayed).

Output: JSON lines (``--out`` file, or stdout), flushed per line::

    {"kind": "start", "t": <mono>, "rate": 50, ...}
    {"kind": "req", "i": 0, "t": <mono start>, "outcome": "ok", "latency": 0.004,
     "node": "node2", "status": 200, "detail": ""}
    ...
    {"kind": "end", "t": <mono>, "sent": n, "skipped": k}

``t`` is ``time.monotonic()`` (CLOCK_MONOTONIC, shared by every process on the machine), so it
compares directly with the ``t`` the fake apiserver's ``set_mode`` returns. ``node`` is the
first DNS name of the serving certificate (the lab's PKI puts the node name first).

Outcomes: ``ok`` (HTTP 200), ``http_<code>``, ``refused``, ``reset`` (connection reset or closed
before a response), ``timeout`` (no complete response head within ``--timeout`` seconds),
``tls`` (handshake or verification failure), ``unreachable`` (no route / host unreachable),
``error`` (anything else), ``skipped`` (client concurrency bound reached).

SIGTERM/SIGINT stop the schedule; requests in flight finish (each is bounded by the timeout),
then the ``end`` line is written. Bounded by ``--duration`` and ``--max-requests`` in any case.

The :class:`LoadClient` class starts this as a subprocess in a lab namespace and reads the
records back.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import errno
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.netns import Lab

DEFAULT_HOST = "203.0.113.100"
DEFAULT_PORT = 6443
DEFAULT_SERVER_NAME = "kubernetes"
MAX_DURATION = 3600.0
MAX_RATE = 2000.0
MAX_HEAD = 16 * 1024

OUTCOMES = (
    "ok",
    "refused",
    "reset",
    "timeout",
    "tls",
    "unreachable",
    "error",
    "skipped",
)  # plus "http_<code>"


# ---------------------------------------------------------------------------------------------
# The client process
# ---------------------------------------------------------------------------------------------


def _first_dns_name(cert: dict[str, Any] | None) -> str | None:
    if not cert:
        return None
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "DNS":
            return str(value)
    return None


def classify_exception(exc: BaseException) -> tuple[str, str]:
    """(outcome, detail) for an exception raised while connecting or reading."""
    detail = f"{type(exc).__name__}: {exc}".strip()
    if isinstance(exc, TimeoutError):
        return "timeout", "no response head within the timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused", detail
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls", detail
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return "reset", detail  # the peer went away during the handshake
    if isinstance(exc, ssl.SSLError):
        return "tls", detail
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset", detail
    if isinstance(exc, asyncio.IncompleteReadError):
        return "reset", "connection closed before a complete response head"
    if isinstance(exc, OSError) and exc.errno in (
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
    ):
        return "unreachable", detail
    return "error", detail


def parse_status(head: bytes) -> int | None:
    """Status code of an HTTP/1.x response head, None if it is not one."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        return None
    return int(parts[1])


class ClientRun:
    """The asyncio side: schedule, one task per request, records out."""

    def __init__(
        self,
        host: str,
        port: int,
        ssl_ctx: ssl.SSLContext,
        server_name: str,
        path: str,
        rate: float,
        duration: float,
        timeout: float,
        max_requests: int,
        concurrency: int,
        out: IO[str],
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_ctx = ssl_ctx
        self.server_name = server_name
        self.request_bytes = (
            f"GET {path} HTTP/1.1\r\nHost: {server_name}:{port}\r\n"
            "User-Agent: vipgate-lab-client\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        ).encode()
        self.rate = rate
        self.duration = duration
        self.timeout = timeout
        self.max_requests = max_requests
        self.concurrency = concurrency
        self.out = out
        self.stop = asyncio.Event()
        self.in_flight = 0
        self.sent = 0
        self.skipped = 0
        self.counts: collections.Counter[str] = collections.Counter()

    def emit(self, rec: dict[str, Any]) -> None:
        self.out.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.out.flush()

    async def one(self, i: int, t: float) -> dict[str, Any]:
        node: str | None = None
        status: int | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self.ssl_ctx,
                    server_hostname=self.server_name,
                    ssl_handshake_timeout=self.timeout,
                )
                sslobj = writer.get_extra_info("ssl_object")
                if sslobj is not None:
                    node = _first_dns_name(sslobj.getpeercert())
                writer.write(self.request_bytes)
                head = await reader.readuntil(b"\r\n\r\n")
            status = parse_status(head[:MAX_HEAD])
            if status is None:
                outcome, detail = "error", "not an HTTP/1.x response"
            elif status == 200:
                outcome, detail = "ok", ""
            else:
                outcome, detail = f"http_{status}", ""
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError):
                outcome, detail = "error", "cancelled at client stop"
            else:
                outcome, detail = classify_exception(exc)
        finally:
            if writer is not None:
                writer.transport.abort()
        return {
            "kind": "req",
            "i": i,
            "t": t,
            "outcome": outcome,
            "latency": time.monotonic() - t,
            "node": node,
            "status": status,
            "detail": detail,
        }

    async def _task(self, i: int, t: float) -> None:
        try:
            rec = await self.one(i, t)
        finally:
            self.in_flight -= 1
        self.counts[rec["outcome"]] += 1
        self.emit(rec)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        t0 = time.monotonic()
        self.emit(
            {
                "kind": "start",
                "t": t0,
                "rate": self.rate,
                "duration": self.duration,
                "timeout": self.timeout,
                "host": self.host,
                "port": self.port,
                "pid": os.getpid(),
            }
        )
        tasks: set[asyncio.Task[None]] = set()
        end = t0 + self.duration
        i = 0
        while i < self.max_requests and not self.stop.is_set():
            due = t0 + i / self.rate
            if due >= end:
                break
            delay = due - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
                if self.stop.is_set():
                    break
            t = time.monotonic()
            if self.in_flight >= self.concurrency:
                self.skipped += 1
                self.counts["skipped"] += 1
                self.emit(
                    {
                        "kind": "req",
                        "i": i,
                        "t": t,
                        "outcome": "skipped",
                        "latency": 0.0,
                        "node": None,
                        "status": None,
                        "detail": f"{self.in_flight} requests in flight",
                    }
                )
            else:
                self.in_flight += 1
                task = asyncio.create_task(self._task(i, t))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            self.sent += 1
            i += 1
        if tasks:  # every request is bounded by its own timeout; add a margin
            _done, pending = await asyncio.wait(set(tasks), timeout=self.timeout + 2.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        self.emit(
            {
                "kind": "end",
                "t": time.monotonic(),
                "sent": self.sent,
                "skipped": self.skipped,
                "counts": dict(self.counts),
            }
        )


def make_client_context(ca: str | Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.client", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default=DEFAULT_HOST)
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--ca", required=True, help="CA certificate to verify the server against")
    ap.add_argument("--server-name", default=DEFAULT_SERVER_NAME)
    ap.add_argument("--path", default="/livez")
    ap.add_argument("--rate", type=float, default=50.0, help="new connections per second")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of schedule")
    ap.add_argument("--timeout", type=float, default=1.0, help="per-request timeout, seconds")
    ap.add_argument("--max-requests", type=int, default=0, help="0: rate * duration")
    ap.add_argument("--concurrency", type=int, default=500, help="requests in flight at most")
    ap.add_argument("--out", default="-", help="JSON lines file ('-' for stdout)")
    a = ap.parse_args(argv)
    if not 0 < a.rate <= MAX_RATE:
        ap.error(f"--rate must be in (0, {MAX_RATE:g}]")
    if not 0 < a.duration <= MAX_DURATION:
        ap.error(f"--duration must be in (0, {MAX_DURATION:g}]")
    if not 0 < a.timeout <= 60:
        ap.error("--timeout must be in (0, 60]")
    max_requests = a.max_requests or int(a.rate * a.duration) + 1
    ctx = make_client_context(a.ca)
    out: IO[str] = sys.stdout if a.out == "-" else open(a.out, "a", buffering=1)  # noqa: SIM115
    try:
        run = ClientRun(
            a.host,
            a.port,
            ctx,
            a.server_name,
            a.path,
            a.rate,
            a.duration,
            a.timeout,
            max_requests,
            max(1, a.concurrency),
            out,
        )
        asyncio.run(run.run())
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


# ---------------------------------------------------------------------------------------------
# Test / bench side
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    i: int
    t: float  # CLOCK_MONOTONIC at the start of the request
    outcome: str
    latency: float
    node: str | None
    status: int | None
    detail: str

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def failed(self) -> bool:
        """Every outcome but ok (skipped counts: the client could not even try)."""
        return self.outcome != "ok"


@dataclass(frozen=True)
class Summary:
    total: int
    ok: int
    failed: int
    outcomes: dict[str, int]
    nodes: dict[str, int]  # ok requests per answering node

    def __str__(self) -> str:
        oc = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        nd = ", ".join(f"{k} {v}" for k, v in sorted(self.nodes.items()))
        return f"{self.total} requests: {self.failed} failed ({oc}); ok per node: {nd}"


def summarize(records: Iterable[Request]) -> Summary:
    recs = list(records)
    outcomes = collections.Counter(r.outcome for r in recs)
    nodes = collections.Counter(r.node for r in recs if r.ok and r.node is not None)
    ok = outcomes.get("ok", 0)
    return Summary(len(recs), ok, len(recs) - ok, dict(outcomes), dict(nodes))


def parse_records(
    lines: Iterable[str],
) -> tuple[dict[str, Any] | None, list[Request], dict[str, Any] | None]:
    """(start line, requests sorted by start time, end line) from the client's JSON lines."""
    start: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    reqs: list[Request] = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        kind = rec.get("kind")
        if kind == "req":
            reqs.append(
                Request(
                    i=int(rec["i"]),
                    t=float(rec["t"]),
                    outcome=str(rec["outcome"]),
                    latency=float(rec["latency"]),
                    node=rec.get("node"),
                    status=rec.get("status"),
                    detail=str(rec.get("detail", "")),
                )
            )
        elif kind == "start":
            start = rec
        elif kind == "end":
            end = rec
    reqs.sort(key=lambda r: r.t)
    return start, reqs, end


class LoadClient:
    """``python -m lab.client`` in a lab namespace, started and stopped by PID::

    client = LoadClient(lab, topo.client_ns, pki.ca_cert, rate=50, duration=60)
    client.start()                  # returns once the client runs (its "start" line)
    ...
    client.stop()                   # stop the schedule, in-flight requests finish
    reqs = client.window(t0, t0 + 30)
    print(summarize(reqs))
    """

    def __init__(
        self,
        lab: Lab,
        ns: str,
        ca: str | Path,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        server_name: str = DEFAULT_SERVER_NAME,
        path: str = "/livez",
        rate: float = 50.0,
        duration: float = 60.0,
        timeout: float = 1.0,
        max_requests: int = 0,
        concurrency: int = 500,
        name: str = "client",
    ) -> None:
        self.lab = lab
        self.ns = ns
        self.ca = Path(ca)
        self.host = host
        self.port = port
        self.server_name = server_name
        self.path = path
        self.rate = rate
        self.duration = duration
        self.timeout = timeout
        self.max_requests = max_requests
        self.concurrency = concurrency
        self.name = name
        self.out = lab.workdir / f"{name}.jsonl"
        self.proc: subprocess.Popen[Any] | None = None
        self.t_start: float | None = None

    def __repr__(self) -> str:
        return f"LoadClient(name={self.name!r}, ns={self.ns!r}, rate={self.rate:g})"

    def argv(self) -> list[str]:
        from lab.netns import python_cmd

        args = ["--host", self.host, "--port", str(self.port), "--ca", str(self.ca)]
        args += ["--server-name", self.server_name, "--path", self.path]
        args += ["--rate", f"{self.rate:g}", "--duration", f"{self.duration:g}"]
        args += ["--timeout", f"{self.timeout:g}", "--max-requests", str(self.max_requests)]
        args += ["--concurrency", str(self.concurrency), "--out", str(self.out)]
        return python_cmd("lab.client", *args)

    def start(self, timeout: float = 10.0) -> float:
        """Start the client; return the monotonic time of its first scheduled request."""
        from lab.wait import wait_for

        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self!r} is already running")
        with contextlib.suppress(FileNotFoundError):
            self.out.unlink()
        self.t_start = None
        self.proc = self.lab.popen(self.ns, self.argv(), log_name=self.name)

        def started() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"load client exited ({self.proc.returncode}):\n{self.lab.read_log(self.name)}"
                )
            start, _, _ = self.read()
            if start is not None:
                self.t_start = float(start["t"])
                return True
            return False

        wait_for(started, timeout, 0.02, what="load client start")
        assert self.t_start is not None
        return self.t_start

    def read(self) -> tuple[dict[str, Any] | None, list[Request], dict[str, Any] | None]:
        try:
            text = self.out.read_text()
        except FileNotFoundError:
            return None, [], None
        return parse_records(text.splitlines())

    def records(self) -> list[Request]:
        """Completed requests so far, sorted by start time."""
        return self.read()[1]

    def window(self, t0: float, t1: float) -> list[Request]:
        """Requests that started in [t0, t1)."""
        return [r for r in self.records() if t0 <= r.t < t1]

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the client to finish its schedule (bounded)."""
        if self.proc is None:
            return None
        bound = timeout if timeout is not None else self.duration + self.timeout + 10.0
        try:
            return self.proc.wait(bound)
        except subprocess.TimeoutExpired:
            self.lab.stop(self.proc)
            return None

    def stop(self, grace: float | None = None) -> int | None:
        """SIGTERM the client (by PID): no new requests; the ones in flight finish."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
        bound = grace if grace is not None else self.timeout + 5.0
        return self.lab.stop(self.proc, bound)


if __name__ == "__main__":
    sys.exit(main())
