"""A fake kube-apiserver for the lab: HTTPS /livez with behaviour a test can switch at runtime.

Run inside a node namespace::

    python -m lab.apiserver --cert apiserver.crt --key apiserver.key --control /tmp/x.ctl \
        [--listen 0.0.0.0:6443 --listen [::]:6443] [--mode healthy] [--idle-timeout 90] \
        [--client-ca ca.crt] [--startup [--startup-forbidden-ms 500-1500] \
        [--startup-failing-ms 800-1200]]

``--client-ca`` is kube-apiserver's ``--client-ca-file`` with ``--anonymous-auth=false`` (RKE2's
health paths): the server asks for a client certificate, a certificate not signed by that CA fails
the TLS handshake, and a request without one gets 401 whatever the mode (but ``hang``/``refuse``).

Paths: ``/livez``, ``/readyz`` and ``/healthz`` follow the mode; ``/version`` answers 200 (JSON)
while the server answers at all; a per-check path (``/readyz/shutdown``, ``/livez/etcd``) answers
403 as it does to the real apiserver's anonymous clients; anything else 404. Modes:

- ``healthy``       200 ``ok`` (``?verbose`` lists the checks, like the real one)
- ``fail``          500 with a kube-style check list ending in ``livez check failed``
- ``etcd``          an etcd outage: ``/livez`` and ``/healthz`` 500 ``[-]etcd failed: reason
                    withheld ... livez check failed``, ``/readyz`` also ``[-]etcd-readiness
                    failed``; answers after ``delay_ms`` (the real checks block up to 2 s)
- ``etcd-outage``   the etcd outage of kube-apiserver 1.36.2 (docs/design.md, "The lab"):
                    ``/livez`` and ``/healthz`` 500 with ``[-]etcd failed: reason withheld`` as
                    the only failed line, each answer after a random 0..``delay_ms`` (2000 when
                    the switch gives none: the apiserver's etcd check timeout); ``/readyz`` of
                    that build has no etcd check and answers 200, ``/version`` too
- ``startup``       the real apiserver's start-up, see below; ``healthy`` when it is over
- ``unready``       ``/livez`` 200, ``/readyz`` 500 ``[-]informer-sync failed`` (not a shutdown:
                    a restarted apiserver before its informers synced)
- ``shutdown``      the real apiserver's SIGTERM sequence (docs/design.md, "The lab"), see below
- ``unauthorized``  401 with a JSON ``Status`` (anonymous auth disabled)
- ``forbidden``     403 with a JSON ``Status`` (anonymous allowed, RBAC denies)
- ``slow``          200 ``ok`` after ``delay_ms``
- ``hang``          accepts TCP and TLS, reads the request, never answers
- ``untrusted``     the TLS handshake presents a self-signed certificate no client trusts (a
                    certificate replaced by one of another CA); open connections are closed
- ``refuse``        listening sockets closed (connections refused) and open connections aborted,
                    as if the process were gone; switching to any other mode listens again

``shutdown`` (``--shutdown-delay-duration`` D = ``shutdown_delay_ms``, optionally
``--shutdown-send-retry-after`` = ``retry_after``):

1. at once: ``/readyz`` answers 500 with ``[-]shutdown failed: reason withheld`` (every other
   check ``[+]``), on kept-alive and new connections alike; ``/livez``, ``/healthz`` and
   ``/version`` keep answering 200;
2. with ``retry_after``, from D on: every request but the health paths gets ``429 The apiserver
   is shutting down, please try again later.`` with ``Retry-After: 5`` and ``Connection: close``,
   while ``/livez`` still answers 200, for ``drain_ms`` (the real one: until in-flight requests
   drained);
3. then (at D without ``retry_after``): idle keep-alive connections are closed with a FIN (TLS
   close_notify first), the listeners close (connections refused) and the mode becomes
   ``refuse``. Any mode change before that cancels the sequence; ``healthy`` afterwards is the
   restarted apiserver.

``startup`` (``--startup`` plays it when the process starts, so a restart is kill + start; a
switch to ``startup`` plays it again in the running process, listening again if it refused):

1. ``forbidden`` for ``forbidden_ms`` (default a random 500-1500 ms): every request gets 403
   ``forbidden: User "system:anonymous" cannot get path "<path>"`` (a JSON ``Status``; the
   authorizer has no RBAC rules loaded yet, ``/version`` included);
2. ``failing`` for ``failing_ms`` (default a random 800-1200 ms): ``/livez``, ``/readyz`` and
   ``/healthz`` answer 500 with the check list, ``[-]poststarthook/rbac/bootstrap-roles failed:
   reason withheld`` and ``[-]poststarthook/scheduling/bootstrap-system-priority-classes failed:
   reason withheld`` among the ``[+]`` lines (``STARTUP_HOOKS``); ``/version`` answers 200;
3. then the mode is ``healthy``: 200. ``startup_done_t`` is that instant; ``first_200_t`` holds,
   per path, when the first 200 was sent since the process started, the last start-up or reset.

Any mode change during the sequence ends it. A length is ``[lo, hi]`` (drawn uniformly at each
start-up) or one number; the drawn lengths are in ``startup_lengths`` (seconds).

Control channel: a unix stream socket (``--control``), one JSON object per line each way::

    {"cmd": "mode", "mode": "slow", "delay_ms": 1500}  -> {"ok": true, "mode": "slow", "t": <mono>}
    {"cmd": "mode", "mode": "shutdown", "shutdown_delay_ms": 3000, "retry_after": true,
     "drain_ms": 2000}
    {"cmd": "mode", "mode": "startup", "forbidden_ms": [500, 1500], "failing_ms": 1000}
    {"cmd": "stats"}   -> {"ok": true, "handshakes": n, "requests": n, "open": n, "t": ...,
                           "statuses": {"200": n, "429": n, ...}, "shutdown_phase": "delay",
                           "retry_after_t": <mono>|null, "stopped_t": <mono>|null,
                           "paths": {"/livez": n, ...}, "listen_t": <mono>,
                           "clients": {"<client certificate serial, hex>": n, ...},
                           "startup_phase": "forbidden"|"failing"|"", "startup_t": <mono>|null,
                           "startup_failing_t": ..., "startup_done_t": ...,
                           "startup_lengths": [s, s]|null, "first_200_t": {"/livez": <mono>}}
    {"cmd": "reset"}   -> counters to zero
    {"cmd": "ping"}

``t`` is ``time.monotonic()`` (CLOCK_MONOTONIC, the same clock in every process on the machine)
read after the change took effect, so a test knows exactly when the fault began (for
``shutdown``: when ``/readyz`` began to fail; ``stopped_t``: when the listeners closed; for
``startup``: ``startup_t``, when the listeners opened, ``startup_done_t``, when ``/livez``
began to answer 200).
Idle keep-alive connections stay open until ``--idle-timeout`` seconds without a request (the
real apiserver closes them after 90 s).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import email.utils
import json
import os
import random
import signal
import socket
import ssl
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.netns import Lab
    from lab.pki import Pki
    from lab.topology import Topology

MODES = (
    "healthy",
    "fail",
    "etcd",
    "etcd-outage",
    "unready",
    "shutdown",
    "startup",
    "unauthorized",
    "forbidden",
    "slow",
    "hang",
    "untrusted",
    "refuse",
)
HEALTH_PATHS = ("livez", "readyz", "healthz")
SHUTDOWN_MESSAGE = b"The apiserver is shutting down, please try again later.\n"
VERSION = {
    "major": "1",
    "minor": "36",
    "gitVersion": "v1.36.0",
    "goVersion": "go1.25.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

CHECKS = (
    "ping",
    "log",
    "etcd",
    "poststarthook/start-apiserver-admission-initializer",
    "poststarthook/generic-apiserver-start-informers",
    "poststarthook/priority-and-fairness-config-consumer",
    "poststarthook/start-apiextensions-informers",
    "poststarthook/start-apiextensions-controllers",
    "poststarthook/crd-informer-synced",
    "poststarthook/bootstrap-controller",
    "poststarthook/rbac/bootstrap-roles",
    "poststarthook/scheduling/bootstrap-system-priority-classes",
    "poststarthook/start-cluster-authentication-info-controller",
    "poststarthook/aggregator-reload-proxy-client-cert",
    "poststarthook/apiservice-registration-controller",
)
MAX_HEAD = 16 * 1024
# The post-start hooks a real apiserver's /livez lists as failed in the second second of its
# start-up (RBAC rules loaded, the bootstrap roles and priority classes not yet ensured).
STARTUP_HOOKS = (
    "poststarthook/rbac/bootstrap-roles",
    "poststarthook/scheduling/bootstrap-system-priority-classes",
)
ETCD_CHECK_TIMEOUT_MS = 2000  # the apiserver's etcd health check gives up after 2 s


@dataclass(frozen=True)
class Startup:
    """The lengths of the real apiserver's start-up phases as anonymous ``/livez`` sees them:
    403 for `forbidden` seconds, then 500 (``STARTUP_HOOKS`` failed) for `failing` seconds, then
    200. Each is a (low, high) range drawn uniformly at every start-up; the defaults are the
    lengths measured on kube-apiserver 1.36.2 (docs/design.md, "The lab")."""

    forbidden: tuple[float, float] = (0.5, 1.5)
    failing: tuple[float, float] = (0.8, 1.2)

    def __post_init__(self) -> None:
        for lo, hi in (self.forbidden, self.failing):
            if not 0.0 <= lo <= hi <= 600.0:
                raise ValueError(f"start-up phase length ({lo}, {hi}): 0 <= low <= high <= 600 s")

    def draw(self, rng: random.Random) -> tuple[float, float]:
        """(403 seconds, 500 seconds) for one start-up."""
        return rng.uniform(*self.forbidden), rng.uniform(*self.failing)

    def to_msg(self) -> dict[str, list[int]]:
        """The control message's ``forbidden_ms`` / ``failing_ms``."""
        return {
            "forbidden_ms": [round(x * 1000) for x in self.forbidden],
            "failing_ms": [round(x * 1000) for x in self.failing],
        }

    @classmethod
    def from_ms(cls, forbidden: object, failing: object) -> Startup:
        """From ``forbidden_ms`` / ``failing_ms``: a number, ``[lo, hi]`` or ``"lo-hi"``."""
        return cls(_ms_range(forbidden), _ms_range(failing))

    def to_args(self) -> list[str]:
        """The command line that plays it at the process's start."""
        m = self.to_msg()
        return [
            "--startup",
            "--startup-forbidden-ms",
            "-".join(map(str, m["forbidden_ms"])),
            "--startup-failing-ms",
            "-".join(map(str, m["failing_ms"])),
        ]


def _ms_range(v: object) -> tuple[float, float]:
    """Milliseconds as ``1000``, ``[500, 1500]`` or ``"500-1500"`` -> (low, high) seconds."""
    if isinstance(v, str):
        lo, _, hi = v.partition("-")
        parts = [float(lo), float(hi or lo)]
    elif isinstance(v, (int, float)):
        parts = [float(v), float(v)]
    elif isinstance(v, (list, tuple)) and len(v) == 2:
        parts = [float(v[0]), float(v[1])]
    else:
        raise ValueError(f"a length in ms, [lo, hi] or 'lo-hi', not {v!r}")
    return parts[0] / 1000.0, parts[1] / 1000.0


def _status_json(code: int, reason: str, message: str) -> bytes:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return json.dumps(body, indent=2).encode() + b"\n"


READYZ_EXTRA = ("etcd-readiness", "informer-sync")  # after "etcd"; "shutdown" comes last


def checks(endpoint: str) -> tuple[str, ...]:
    """The check names the endpoint lists, in the real apiserver's order."""
    if endpoint != "readyz":
        return CHECKS
    i = CHECKS.index("etcd") + 1
    return (*CHECKS[:i], *READYZ_EXTRA, *CHECKS[i:], "shutdown")


def check_list(endpoint: str = "livez", failed: Collection[str] = ()) -> bytes:
    """The body the real apiserver writes: one ``[+]name ok`` / ``[-]name failed: reason
    withheld`` line per check, then ``<endpoint> check passed|failed``."""
    lines = [
        f"[-]{c} failed: reason withheld" if c in failed else f"[+]{c} ok" for c in checks(endpoint)
    ]
    lines.append(f"{endpoint} check {'failed' if failed else 'passed'}")
    return ("\n".join(lines) + "\n").encode()


class FakeApiserver:
    """The asyncio server (runs in the ``python -m lab.apiserver`` process)."""

    def __init__(
        self,
        listen: Sequence[tuple[str | None, int]],
        ssl_ctx: ssl.SSLContext,
        control_path: Path,
        mode: str = "healthy",
        delay_ms: int = 0,
        idle_timeout: float = 90.0,
        client_auth: bool = False,
        startup: Startup | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.listen = list(listen)
        self.startup = startup  # played when run() starts (the process's --startup)
        self.rng = rng or random.Random()
        self.client_auth = client_auth
        self.ssl_ctx = ssl_ctx
        self.control_path = control_path
        self.mode = mode
        self.delay_ms = delay_ms
        self.idle_timeout = idle_timeout
        self.handshakes = 0
        self.requests = 0
        self.responses = 0
        self.statuses: collections.Counter[int] = collections.Counter()
        self.paths: collections.Counter[str] = collections.Counter()  # requests per path
        self.clients: collections.Counter[str] = collections.Counter()  # per client cert serial
        self.listen_t: float | None = None  # monotonic: the listeners last opened
        self.servers: list[asyncio.Server] = []
        self.conns: set[asyncio.StreamWriter] = set()
        self.stopped = asyncio.Event()
        # shutdown sequence: "delay" -> "retry-after" -> "stopped" ("" when not shutting down)
        self.shutdown_phase = ""
        self.retry_after_t: float | None = None
        self.stopped_t: float | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        # start-up sequence: "forbidden" -> "failing" -> "" (healthy)
        self.startup_phase = ""
        self.startup_t: float | None = None  # its listeners opened (403 from then on)
        self.startup_failing_t: float | None = None  # 500 from then on
        self.startup_done_t: float | None = None  # 200 from then on
        self.startup_lengths: tuple[float, float] | None = None  # drawn (403 s, 500 s)
        self.first_200_t: dict[str, float] = {}  # path -> first 200 sent (start/start-up/reset)
        self._startup_task: asyncio.Task[None] | None = None

    # -- listening -------------------------------------------------------------------------
    async def open_listeners(self) -> None:
        if self.servers:
            return
        for host, port in self.listen:
            fam = socket.AF_UNSPEC
            if host is not None:
                fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            srv = await asyncio.start_server(
                self._client,
                host=host,
                port=port,
                family=fam,
                ssl=self.ssl_ctx,
                reuse_address=True,
                backlog=512,
                ssl_handshake_timeout=10.0,
            )
            self.servers.append(srv)
        self.listen_t = time.monotonic()

    def close_listeners(self) -> None:
        for srv in self.servers:
            srv.close()
        self.servers = []

    def abort_connections(self) -> None:
        """RST every open connection (the process is gone)."""
        for w in list(self.conns):
            w.transport.abort()
        self.conns.clear()

    def close_connections(self) -> None:
        """Close every open connection gracefully: TLS close_notify, then FIN."""
        for w in list(self.conns):
            w.close()
        self.conns.clear()

    async def set_mode(
        self,
        mode: str,
        delay_ms: int | None = None,
        *,
        shutdown_delay_ms: int = 0,
        retry_after: bool = False,
        drain_ms: int = 1000,
        startup: Startup | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
        if not (0 <= shutdown_delay_ms <= 600_000 and 0 <= drain_ms <= 600_000):
            raise ValueError("shutdown_delay_ms and drain_ms: 0..600000")
        if delay_ms is not None:
            self.delay_ms = int(delay_ms)
        elif mode == "etcd-outage":
            self.delay_ms = ETCD_CHECK_TIMEOUT_MS
        for task in (self._shutdown_task, self._startup_task):
            if task is not None:
                task.cancel()
        self._shutdown_task = self._startup_task = None
        self.shutdown_phase = self.startup_phase = ""
        self.mode = mode
        if mode == "refuse":
            self.close_listeners()
            self.abort_connections()
            return
        if mode == "untrusted":  # the next check must handshake again
            self.close_connections()
        await self.open_listeners()
        if mode == "shutdown":
            self.shutdown_phase = "delay"
            self.retry_after_t = self.stopped_t = None
            self._shutdown_task = asyncio.create_task(
                self._shutdown(shutdown_delay_ms / 1000.0, retry_after, drain_ms / 1000.0)
            )
        if mode == "startup":
            self._begin_startup(startup or Startup())

    def _begin_startup(self, startup: Startup) -> None:
        self.startup_lengths = startup.draw(self.rng)
        self.startup_phase = "forbidden"
        self.startup_t = time.monotonic()
        self.startup_failing_t = self.startup_done_t = None
        self.first_200_t.clear()
        self._startup_task = asyncio.create_task(self._startup(*self.startup_lengths))

    async def _startup(self, forbidden: float, failing: float) -> None:
        await asyncio.sleep(forbidden)
        self.startup_phase = "failing"
        self.startup_failing_t = time.monotonic()
        await asyncio.sleep(failing)
        self.startup_phase = ""
        self.mode = "healthy"
        self.startup_done_t = time.monotonic()
        self._startup_task = None

    async def _shutdown(self, delay: float, retry_after: bool, drain: float) -> None:
        await asyncio.sleep(delay)
        if retry_after:
            self.shutdown_phase = "retry-after"
            self.retry_after_t = time.monotonic()
            await asyncio.sleep(drain)
        self.close_listeners()
        self.close_connections()
        self.stopped_t = time.monotonic()
        self.shutdown_phase = "stopped"
        self.mode = "refuse"
        self._shutdown_task = None

    # -- HTTPS -----------------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1  # called once the TLS handshake completed
        if self.mode == "refuse":  # accepted in the instant before the listener closed
            writer.transport.abort()
            return
        self.conns.add(writer)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(
                        reader.readuntil(b"\r\n\r\n"), timeout=self.idle_timeout
                    )
                except (
                    TimeoutError,
                    asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError,
                    ConnectionError,
                    ssl.SSLError,
                ):
                    return
                self.requests += 1
                keep = await self._request(head, reader, writer)
                if not keep:
                    return
        except (ConnectionError, ssl.SSLError, OSError):
            return
        finally:
            self.conns.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _request(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            await self._send(writer, 400, b"bad request\n", "text/plain; charset=utf-8", False)
            return False
        _method, target, version = parts
        headers: dict[str, str] = {}
        for h in lines[1:]:
            if ":" in h:
                k, v = h.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        clen = int(headers.get("content-length", "0") or "0")
        if clen:
            await reader.readexactly(min(clen, 1 << 20))
        conn_hdr = headers.get("connection", "").lower()
        keep = version == "HTTP/1.1" and "close" not in conn_hdr
        path, _, query = target.partition("?")
        self.paths[path] += 1
        mode = self.mode
        if mode == "hang":
            # Never answer; drain until the client gives up and closes.
            with contextlib.suppress(Exception):
                while await reader.read(65536):
                    pass
            return False
        if mode == "refuse":
            writer.transport.abort()
            return False
        if mode == "slow":
            await asyncio.sleep(self.delay_ms / 1000.0)
            if self.mode == "refuse":
                return False
        return await self._respond(writer, mode, path, query, keep)

    async def _respond(
        self, writer: asyncio.StreamWriter, mode: str, path: str, query: str, keep: bool
    ) -> bool:
        """Answer a request for `path` in `mode`; True if the connection stays open."""
        endpoint, _, check = path.strip("/").partition("/")
        text = "text/plain; charset=utf-8"
        if (
            mode == "shutdown"
            and self.shutdown_phase == "retry-after"
            and not (endpoint in HEALTH_PATHS and not check)
        ):
            # k8s.io/apiserver WithRetryAfter: only the health paths are exempt.
            await self._send(writer, 429, SHUTDOWN_MESSAGE, text, False, ["Retry-After: 5"])
            return False
        peer = writer.get_extra_info("peercert")
        if peer:  # which client certificate authenticated the request (its serial number)
            self.clients[str(peer.get("serialNumber", "?"))] += 1
        if self.client_auth and not peer:
            # --anonymous-auth=false with --client-ca-file: a request without a client
            # certificate signed by that CA is not authenticated (the kube-apiserver answers 401).
            body = _status_json(401, "Unauthorized", "Unauthorized")
            await self._send(writer, 401, body, "application/json", keep)
            return keep
        if mode == "unauthorized":
            body = _status_json(401, "Unauthorized", "Unauthorized")
            await self._send(writer, 401, body, "application/json", keep)
            return keep
        if mode == "startup" and self.startup_phase == "forbidden":
            # No RBAC rule loaded yet: the authorizer denies every path, /version included.
            msg = 'forbidden: User "system:anonymous" cannot get path "' + path + '"'
            await self._send(
                writer, 403, _status_json(403, "Forbidden", msg), "application/json", keep
            )
            return keep
        if endpoint == "version" and not check:
            body = json.dumps(VERSION, indent=2).encode()
            await self._send(writer, 200, body, "application/json", keep)
            return keep
        if endpoint not in HEALTH_PATHS:
            body = _status_json(404, "NotFound", "the server could not find the requested resource")
            await self._send(writer, 404, body, "application/json", keep)
            return keep
        if mode == "forbidden" or check:
            # Anonymous clients (system:public-info-viewer) may read only the health endpoints
            # themselves, never a single check such as /readyz/shutdown.
            msg = 'forbidden: User "system:anonymous" cannot get path "' + path + '"'
            await self._send(
                writer, 403, _status_json(403, "Forbidden", msg), "application/json", keep
            )
            return keep
        failed = await self._failed_checks(mode, endpoint)
        if failed:
            await self._send(writer, 500, check_list(endpoint, failed), text, keep)
        else:
            body = check_list(endpoint) if "verbose" in query else b"ok"
            await self._send(writer, 200, body, text, keep)
            self.first_200_t.setdefault(path, time.monotonic())
        return keep

    async def _failed_checks(self, mode: str, endpoint: str) -> tuple[str, ...]:
        """The checks `endpoint` lists as failed in `mode` (none: it answers 200)."""
        if mode == "fail":
            return ("etcd",)
        if mode == "etcd":
            await asyncio.sleep(self.delay_ms / 1000.0)
            return ("etcd", "etcd-readiness") if endpoint == "readyz" else ("etcd",)
        if mode == "etcd-outage" and endpoint != "readyz":
            await asyncio.sleep(self.rng.uniform(0.0, self.delay_ms / 1000.0))
            return ("etcd",)
        if mode == "startup":
            return STARTUP_HOOKS
        if mode == "unready" and endpoint == "readyz":
            return ("informer-sync",)
        if mode == "shutdown" and endpoint == "readyz":
            return ("shutdown",)
        return ()

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        code: int,
        body: bytes,
        ctype: str,
        keep: bool,
        extra: Sequence[str] = (),
    ) -> None:
        reason = {
            200: "OK",
            400: "Bad Request",
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not Found",
            429: "Too Many Requests",
            500: "Internal Server Error",
        }[code]
        hdrs = [
            f"HTTP/1.1 {code} {reason}",
            "Audit-Id: 00000000-0000-0000-0000-000000000000",
            "Cache-Control: no-cache, private",
            f"Content-Type: {ctype}",
            "X-Content-Type-Options: nosniff",
            *extra,
            f"Date: {email.utils.formatdate(usegmt=True)}",
            f"Content-Length: {len(body)}",
        ]
        if not keep:
            hdrs.append("Connection: close")
        writer.write(("\r\n".join(hdrs) + "\r\n\r\n").encode() + body)
        await writer.drain()
        self.responses += 1
        self.statuses[code] += 1

    # -- control ---------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {
            "ok": True,
            "mode": self.mode,
            "delay_ms": self.delay_ms,
            "handshakes": self.handshakes,
            "requests": self.requests,
            "responses": self.responses,
            "open": len(self.conns),
            "listening": bool(self.servers),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "paths": dict(sorted(self.paths.items())),
            "clients": dict(self.clients),
            "listen_t": self.listen_t,
            "shutdown_phase": self.shutdown_phase,
            "retry_after_t": self.retry_after_t,
            "stopped_t": self.stopped_t,
            "startup_phase": self.startup_phase,
            "startup_t": self.startup_t,
            "startup_failing_t": self.startup_failing_t,
            "startup_done_t": self.startup_done_t,
            "startup_lengths": self.startup_lengths,
            "first_200_t": dict(self.first_200_t),
            "pid": os.getpid(),
            "t": time.monotonic(),
        }

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    msg = json.loads(line)
                    cmd = msg.get("cmd")
                    if cmd == "mode":
                        await self.set_mode(
                            str(msg["mode"]),
                            msg.get("delay_ms"),
                            shutdown_delay_ms=int(msg.get("shutdown_delay_ms", 0)),
                            retry_after=bool(msg.get("retry_after", False)),
                            drain_ms=int(msg.get("drain_ms", 1000)),
                            startup=Startup.from_ms(
                                msg.get("forbidden_ms", [500, 1500]),
                                msg.get("failing_ms", [800, 1200]),
                            ),
                        )
                        reply: dict[str, Any] = {
                            "ok": True,
                            "mode": self.mode,
                            "t": time.monotonic(),
                        }
                    elif cmd == "stats":
                        reply = self.stats()
                    elif cmd == "reset":
                        self.handshakes = self.requests = self.responses = 0
                        self.statuses.clear()
                        self.paths.clear()
                        self.clients.clear()
                        self.first_200_t.clear()
                        reply = self.stats()
                    elif cmd == "ping":
                        reply = self.stats()
                    elif cmd == "stop":
                        reply = {"ok": True, "t": time.monotonic()}
                        self.stopped.set()
                    else:
                        reply = {"ok": False, "error": f"unknown cmd {cmd!r}"}
                except Exception as exc:
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def run(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.control_path.unlink()
        if self.startup is not None:
            await self.set_mode("startup", startup=self.startup)
        elif self.mode != "refuse":
            await self.open_listeners()
        # listening before the control socket answers: ready means listening
        ctl = await asyncio.start_unix_server(self._control, path=str(self.control_path))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopped.set)
        # Ready: the control socket answers (tests wait for "ping").
        await self.stopped.wait()
        ctl.close()
        self.close_listeners()
        self.abort_connections()
        with contextlib.suppress(FileNotFoundError):
            self.control_path.unlink()


def make_ssl_context(
    cert: str | Path, key: str | Path, client_ca: str | Path | None = None
) -> ssl.SSLContext:
    """The serving context; with ``client_ca`` it asks for a client certificate and verifies
    one that is given against that CA (Go's VerifyClientCertIfGiven, as kube-apiserver's
    ``--client-ca-file``: a certificate of another CA fails the handshake)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cafile=str(client_ca))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def untrusted_switch(srv: FakeApiserver, workdir: Path, name: str) -> None:
    """In mode ``untrusted`` the handshake presents a self-signed certificate (SNI callback).

    The key pair is written under `name` (each fake apiserver of a lab its own files: they
    share the lab's directory and start at the same time)."""
    from cryptography.hazmat.primitives import serialization

    from lab.pki import _make_ca

    key, cert = _make_ca("untrusted kube-apiserver")
    crt, pem = workdir / f"{name}-untrusted.crt", workdir / f"{name}-untrusted.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    other = make_ssl_context(crt, pem)

    def pick(sslobj: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
        if srv.mode == "untrusted":
            sslobj.context = other

    srv.ssl_ctx.sni_callback = pick


def parse_listen(s: str) -> tuple[str | None, int]:
    """``0.0.0.0:6443``, ``[::]:6443``, ``:6443`` (all addresses) -> (host, port)."""
    if s.startswith("["):
        host, _, port = s[1:].partition("]:")
        return host, int(port)
    host, _, port = s.rpartition(":")
    return (host or None), int(port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.apiserver", description=__doc__.split("\n")[0])
    ap.add_argument("--listen", action="append", default=[], help="ADDR:PORT (repeatable)")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--control", required=True, help="unix socket path for the control channel")
    ap.add_argument("--mode", default="healthy", choices=MODES)
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--idle-timeout", type=float, default=90.0)
    ap.add_argument(
        "--client-ca",
        help="CA file: require a client certificate it signed (401 without; anonymous auth off)",
    )
    ap.add_argument(
        "--startup",
        action="store_true",
        help="play the real apiserver's start-up (403, then 500, then 200) at the start",
    )
    ap.add_argument("--startup-forbidden-ms", default="500-1500", help="MS or LO-HI (403 phase)")
    ap.add_argument("--startup-failing-ms", default="800-1200", help="MS or LO-HI (500 phase)")
    a = ap.parse_args(argv)
    listen = [parse_listen(x) for x in (a.listen or ["0.0.0.0:6443", "[::]:6443"])]
    startup = None
    if a.startup:
        startup = Startup.from_ms(a.startup_forbidden_ms, a.startup_failing_ms)
    srv = FakeApiserver(
        listen,
        make_ssl_context(a.cert, a.key, a.client_ca),
        Path(a.control),
        mode=a.mode,
        delay_ms=a.delay_ms,
        idle_timeout=a.idle_timeout,
        client_auth=a.client_ca is not None,
        startup=startup,
    )
    untrusted_switch(srv, Path(a.control).parent, Path(a.control).stem)
    asyncio.run(srv.run())
    return 0


# ---------------------------------------------------------------------------------------------
# Test side: control client and process handle
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiserverStats:
    mode: str
    handshakes: int  # TLS handshakes completed since start/reset
    requests: int  # HTTP requests received
    responses: int  # HTTP responses sent
    open: int  # connections open now
    listening: bool
    t: float  # monotonic time of the reading
    statuses: dict[int, int] = field(default_factory=dict)  # HTTP status -> responses sent
    shutdown_phase: str = ""  # "", "delay", "retry-after", "stopped"
    retry_after_t: float | None = None  # monotonic: 429s began (shutdown with retry_after)
    stopped_t: float | None = None  # monotonic: the shutdown closed the listeners
    paths: dict[str, int] = field(default_factory=dict)  # requests per path (no query)
    clients: dict[str, int] = field(default_factory=dict)  # requests per client cert serial
    listen_t: float | None = None  # monotonic: the listeners last opened (after start/refuse)
    startup_phase: str = ""  # "", "forbidden", "failing"
    startup_t: float | None = None  # monotonic: the last start-up began (403 from then on)
    startup_failing_t: float | None = None  # monotonic: its 500s began
    startup_done_t: float | None = None  # monotonic: it ended, /livez answers 200 from then on
    startup_lengths: tuple[float, float] | None = None  # its (403, 500) lengths, s
    first_200_t: dict[str, float] = field(default_factory=dict)  # path -> first 200 sent


class ApiserverControl:
    """Synchronous client for the control socket (a few hundred microseconds per call)."""

    def __init__(self, path: str | Path, timeout: float = 5.0) -> None:
        self.path = str(path)
        self.timeout = timeout

    def request(self, **msg: Any) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(self.timeout)
            s.connect(self.path)
            s.sendall(json.dumps(msg).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        reply: dict[str, Any] = json.loads(buf)
        if not reply.get("ok"):
            raise RuntimeError(f"apiserver control: {reply.get('error')}")
        return reply

    def set_mode(self, mode: str, delay_ms: int | None = None) -> float:
        """Switch mode; returns the monotonic time at which the new mode took effect."""
        msg: dict[str, Any] = {"cmd": "mode", "mode": mode}
        if delay_ms is not None:
            msg["delay_ms"] = delay_ms
        return float(self.request(**msg)["t"])

    def shutdown(self, delay: float, retry_after: bool = False, drain: float = 1.0) -> float:
        """Start the SIGTERM sequence (``--shutdown-delay-duration=delay`` s, optionally
        ``--shutdown-send-retry-after`` with 429s for `drain` s); returns the monotonic time
        at which ``/readyz`` began to fail."""
        return float(
            self.request(
                cmd="mode",
                mode="shutdown",
                shutdown_delay_ms=round(delay * 1000),
                retry_after=retry_after,
                drain_ms=round(drain * 1000),
            )["t"]
        )

    def stats(self) -> ApiserverStats:
        r = self.request(cmd="stats")
        return ApiserverStats(
            mode=r["mode"],
            handshakes=r["handshakes"],
            requests=r["requests"],
            responses=r["responses"],
            open=r["open"],
            listening=r["listening"],
            t=r["t"],
            statuses={int(k): v for k, v in r.get("statuses", {}).items()},
            shutdown_phase=r.get("shutdown_phase", ""),
            retry_after_t=r.get("retry_after_t"),
            stopped_t=r.get("stopped_t"),
            paths=r.get("paths", {}),
            clients=r.get("clients", {}),
            listen_t=r.get("listen_t"),
            startup_phase=r.get("startup_phase", ""),
            startup_t=r.get("startup_t"),
            startup_failing_t=r.get("startup_failing_t"),
            startup_done_t=r.get("startup_done_t"),
            startup_lengths=tuple(r["startup_lengths"]) if r.get("startup_lengths") else None,
            first_200_t=r.get("first_200_t", {}),
        )

    def startup(self, startup: Startup | None = None) -> float:
        """Play the start-up in the running process (listening again if it refused); returns
        the monotonic time at which its 403s began."""
        msg = (startup or Startup()).to_msg()
        return float(self.request(cmd="mode", mode="startup", **msg)["t"])

    def reset(self) -> None:
        self.request(cmd="reset")

    def ping(self) -> bool:
        return bool(self.request(cmd="ping")["ok"])


class Apiserver:
    """A fake apiserver process in a lab namespace, with its control client."""

    def __init__(
        self,
        lab: Lab,
        ns: str,
        cert: str | Path,
        key: str | Path,
        *,
        name: str = "apiserver",
        listen: Sequence[str] = ("0.0.0.0:6443", "[::]:6443"),
        mode: str = "healthy",
        delay_ms: int = 0,
        idle_timeout: float = 90.0,
        client_ca: str | Path | None = None,
    ) -> None:
        self.lab = lab
        self.client_ca = client_ca
        self.ns = ns
        self.cert = Path(cert)
        self.key = Path(key)
        self.name = name
        self.listen = list(listen)
        self.initial_mode = mode
        self.delay_ms = delay_ms
        self.idle_timeout = idle_timeout
        self.control_path = lab.workdir / f"{name}.ctl"
        self.control = ApiserverControl(self.control_path)
        self.proc: Any = None

    def __repr__(self) -> str:
        return f"Apiserver(name={self.name!r}, ns={self.ns!r})"

    def launch(self, startup: Startup | None = None) -> None:
        """Start the process without waiting (see wait_ready); with `startup` it plays the real
        apiserver's start-up first (see :meth:`wait_started`)."""
        from lab.netns import python_cmd

        args = ["--cert", str(self.cert), "--key", str(self.key)]
        args += startup.to_args() if startup is not None else []
        args += ["--control", str(self.control_path), "--mode", self.initial_mode]
        args += ["--delay-ms", str(self.delay_ms), "--idle-timeout", str(self.idle_timeout)]
        for lst in self.listen:
            args += ["--listen", lst]
        if self.client_ca is not None:
            args += ["--client-ca", str(self.client_ca)]
        self.proc = self.lab.popen(self.ns, python_cmd("lab.apiserver", *args), log_name=self.name)

    def wait_ready(self, timeout: float = 10.0) -> float:
        from lab.netns import LabError
        from lab.wait import wait_for

        def ready() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise LabError(f"apiserver {self.name} exited:\n{self.lab.read_log(self.name)}")
            return self.control_path.exists() and self.control.ping()

        return wait_for(ready, timeout, 0.02, what=f"fake apiserver {self.name}")

    def start(self, timeout: float = 10.0, startup: Startup | None = None) -> float:
        """Start the process and wait until its control socket answers; return seconds. With
        `startup` the process plays the real apiserver's start-up (403, 500, then 200)."""
        t0 = time.monotonic()
        self.launch(startup)
        self.wait_ready(timeout)
        return time.monotonic() - t0

    def wait_started(self, timeout: float = 10.0) -> ApiserverStats:
        """Wait until the start-up is over (``/livez`` answers 200 since ``startup_done_t``)."""
        from lab.wait import wait_for

        found: list[ApiserverStats] = []

        def done() -> bool:
            st = self.stats()
            if st.startup_done_t is None:
                return False
            found.append(st)
            return True

        wait_for(done, timeout, 0.02, what=f"{self.name}: start-up over")
        return found[-1]

    def stop(self) -> None:
        if self.proc is not None:
            self.lab.stop(self.proc)
            self.proc = None

    def kill(self) -> float:
        """SIGKILL the process (a crash): the kernel closes its sockets, so kept-alive clients
        see the connection closed and new ones are refused. Returns the monotonic time just
        before the signal; ``start()`` runs it again (healthy) on the same ports."""
        from lab.netns import LabError

        if self.proc is None or self.proc.poll() is not None:
            raise LabError(f"apiserver {self.name} is not running")
        t = time.monotonic()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        self.lab.stop(self.proc)
        self.proc = None
        with contextlib.suppress(FileNotFoundError):
            self.control_path.unlink()  # stale: the process could not remove it
        return t

    def freeze(self) -> float:
        """SIGSTOP: a hung apiserver (the kernel still accepts TCP, nothing answers; the control
        socket neither). Returns the monotonic time just before the signal."""
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} not running"
        t = time.monotonic()
        os.kill(self.proc.pid, signal.SIGSTOP)
        return t

    def thaw(self) -> float:
        """SIGCONT after :meth:`freeze`; returns the monotonic time just before the signal."""
        assert self.proc is not None, f"{self.name} not running"
        t = time.monotonic()
        os.kill(self.proc.pid, signal.SIGCONT)
        return t

    @property
    def pid(self) -> int | None:
        return int(self.proc.pid) if self.proc is not None and self.proc.poll() is None else None

    def set_mode(self, mode: str, delay_ms: int | None = None) -> float:
        return self.control.set_mode(mode, delay_ms)

    def shutdown(self, delay: float, retry_after: bool = False, drain: float = 1.0) -> float:
        """See :meth:`ApiserverControl.shutdown`."""
        return self.control.shutdown(delay, retry_after, drain)

    def stats(self) -> ApiserverStats:
        return self.control.stats()


def start_apiservers(
    topo: Topology,
    pki: Pki | None = None,
    *,
    extra_ips: Sequence[str] = ("203.0.113.100", "2001:db8:100::100"),
    client_auth: bool = False,
    **kwargs: Any,
) -> tuple[Pki, dict[str, Apiserver]]:
    """Make a kubeadm-shaped PKI (unless given) and start one fake apiserver per node.

    Returns (pki, {node name: Apiserver}). The serving certificates name the node, the node's
    IPs and `extra_ips` (the VIP, as kubeadm's controlPlaneEndpoint would), never localhost.
    ``client_auth``: the apiservers require a client certificate signed by the cluster CA
    (``--client-ca``; anonymous requests get 401).
    """
    from lab.pki import make_pki

    if pki is None:
        pki = make_pki(
            topo.lab.workdir / "pki",
            [(n.name, [n.ip4, n.ip6]) for n in topo.nodes],
            extra_ips=extra_ips,
        )
    servers: dict[str, Apiserver] = {}
    for n in topo.nodes:
        nc = pki.node(n.name)
        if client_auth:
            kwargs["client_ca"] = pki.ca_cert
        a = Apiserver(topo.lab, n.ns, nc.cert, nc.key, name=f"apiserver-{n.name}", **kwargs)
        servers[n.name] = a
    for a in servers.values():  # start all, then wait: parallel startup
        a.launch()
    for a in servers.values():
        a.wait_ready()
    return pki, servers


if __name__ == "__main__":
    sys.exit(main())
