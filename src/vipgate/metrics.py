"""Prometheus metrics of one ``vipgate manager``, and the HTTP endpoint that serves them.

Every metric lives in a registry of our own (:class:`Metrics` makes one; the global default
registry is not used), so tests can run several managers in one process. The manager and the
speaker call small methods; :class:`Metrics` also satisfies the speaker's observer protocol
(:class:`vipgate.bgp.peer.SpeakerObserver`: ``session_state(peer, state)``,
``message(peer, direction, msg_type)`` and ``bfd_state(peer, state, diag)``).

The endpoint (:meth:`Metrics.serve`) is an asyncio server with HTTP/1.1 parsed by h11: it costs
nothing while idle (no thread, no poll loop; the daemon's budget is <= 0.3 s CPU per 60 s), keeps
scrape connections alive, and negotiates the text or OpenMetrics format as prometheus_client does.
It answers ``GET /metrics`` (and ``/``); other paths get 404, other methods 405.

Metrics
-------

| name | type | labels | meaning |
|---|---|---|---|
| `vipgate_build_info` | gauge (info) | `version`, `python` | always 1; the running version |
| `vipgate_probe_results_total` | counter | `outcome` | health checks by outcome: `ok`, `refused`, `reset`, `timeout`, `tls_verify`, `tls_hostname`, `tls_other`, `http_status`, `protocol`, `dns`, `other` |
| `vipgate_probe_http_responses_total` | counter | `code` | health checks answered with an HTTP status, by status code (`200`, `401`, `403`, `500`, ...): tells access problems (401/403) from an unhealthy apiserver (500) |
| `vipgate_probe_duration_seconds` | histogram | - | time to the response headers (or to the failure) of each check; buckets 1 ms .. 3 s |
| `vipgate_probe_consecutive_failures` | gauge | - | failed checks in a row (the gate withdraws at `control_plane_health_check_failure_threshold`) |
| `vipgate_probe_consecutive_successes` | gauge | - | succeeded checks in a row (the gate announces again at `control_plane_health_check_success_threshold`) |
| `vipgate_probe_server_closes_total` | counter | - | idle keep-alive connections closed by the apiserver; each one makes a check run at once |
| `vipgate_tls_reloads_total` | counter | - | times the CA file, client certificate or key changed on disk and were loaded again (the next check uses them) |
| `vipgate_tls_reload_errors_total` | counter | - | times they changed on disk but did not load (half-written, a key that does not match, expired): the previous ones stay in use |
| `vipgate_tls_reload_success` | gauge | - | 1 if the last load of the TLS files succeeded (at start: 1), 0 after a change that did not load, until a change that does |
| `vipgate_gate_check_interval_seconds` | gauge | - | seconds to the next check as the gate paces them now: the period, or the fast period (after a refused, reset or closed connection, while rising, while draining, after a failed check while withdrawn or de-preferred for up to 5 minutes) |
| `vipgate_readiness_reads_total` | counter | `outcome` | reads of the apiserver's readiness (`control_plane_health_check_shutdown_address`) by outcome: `shutdown` (`[-]shutdown failed`), `clear` (no shutdown under way), `unknown` (no answer that tells) |
| `vipgate_gate_state` | gauge | `state` | 1 for the gate's current state, 0 for the others: `starting` (no check has succeeded yet; not announced), `up` (announced), `depreferred` (failure threshold reached with `control_plane_health_check_unhealthy_action=deprefer`: announced de-preferred), `down` (failure threshold reached, or rising after a shutdown; withdrawn), `disabled` (no health check configured: announced unconditionally), `apiserver_shutdown` (the apiserver announced its shutdown on its readiness; withdrawn until it no longer does), `draining` (vipgate stopping: announced with GRACEFUL_SHUTDOWN for `bgp_graceful_shutdown_seconds`), `stopped` (vipgate stopping: withdrawn, sessions closing) |
| `vipgate_gate_transitions_total` | counter | `reason` | gate state changes by reason: `healthy` (a check succeeded: announce), `disabled`, the probe outcome that reached the threshold (`refused`, `timeout`, `tls_hostname`, ...: withdraw), `apiserver_shutdown`, `apiserver_shutdown_over`, `stop`, `drained` |
| `vipgate_prefix_announced` | gauge | `prefix` | 1 while the prefix is announced, else 0: in BGP mode it is in the Adj-RIB-Out (sent to every Established peer), in routing-table mode its route is in the kernel table (for the node's BGP daemon); a de-preferred route is announced |
| `vipgate_prefix_route_state` | gauge | `prefix`, `state` | 1 for the route's current state, 0 for the others, in either mode: `announced` (a plain path; routing-table mode: metric 0), `depreferred` (announced with a worse path and GRACEFUL_SHUTDOWN, in routing-table mode a worse route metric: `control_plane_health_check_unhealthy_action=deprefer` with failing checks, or the stop's drain), `withdrawn` (routing-table mode: no route) |
| `vipgate_bgp_session_state` | gauge | `peer` | BGP FSM state as in BGP4-MIB `bgpPeerState`: 1 Idle, 2 Connect, 3 Active, 4 OpenSent, 5 OpenConfirm, 6 Established (0 unknown) |
| `vipgate_bgp_session_established` | gauge | `peer` | 1 while the session is Established, else 0 |
| `vipgate_bgp_messages_total` | counter | `peer`, `direction`, `type` | BGP messages; `direction` is `sent` or `received`; `type` is `open`, `update`, `notification`, `keepalive`, `route_refresh` (`other` for anything else) |
| `vipgate_bgp_connections_refused_total` | counter | - | TCP connections to vipgate's BGP port from an address that is not a configured peer: reset before a byte is read (docs/routers.md) |
| `vipgate_bfd_session_state` | gauge | `peer` | BFD session state (BFD-STD-MIB `bfdSessState`): 1 AdminDown, 2 Down, 3 Init, 4 Up (peers with BFD only) |
| `vipgate_bfd_state_changes_total` | counter | `peer`, `state`, `diag` | BFD state changes by the new state (`admindown`, `down`, `init`, `up`) and our diagnostic (`none`, `control_detection_time_expired`, `neighbor_signaled_session_down`, `administratively_down`, ...) |
| `vipgate_asyncio_tasks` | gauge | - | asyncio tasks alive in the daemon's event loop, counted when scraped (no cost between scrapes); flat over time in a healthy daemon (a growing count is a leak) |

Useful queries: ``vipgate_prefix_announced == 0`` (a node is not carrying the VIP),
``vipgate_prefix_route_state{state="depreferred"} == 1`` (a node carries it only as a fallback),
``rate(vipgate_probe_results_total{outcome!="ok"}[5m])``, ``vipgate_bgp_session_established == 0``.
"""  # noqa: E501

from __future__ import annotations

import asyncio
import contextlib
import enum
import platform
import re
import socket
from dataclasses import dataclass, field

import h11
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder

from vipgate import __version__
from vipgate.health.gate import GateState
from vipgate.health.probe import ErrorKind
from vipgate.transports import release_closed

__all__ = [
    "BFD_STATES",
    "BGP_STATES",
    "GATE_STATES",
    "MESSAGE_TYPES",
    "PROBE_BUCKETS",
    "PROBE_OUTCOMES",
    "READINESS_OUTCOMES",
    "Metrics",
    "MetricsServer",
]

PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0)
"""Histogram buckets (seconds) of the probe latency: 1 ms (a local apiserver) to 3 s (the
default timeout); +Inf is added by prometheus_client."""

PROBE_OUTCOMES = tuple("ok" if k is ErrorKind.NONE else k.value for k in ErrorKind)
"""The outcomes pre-created at 0: ``ok`` and the probe's :class:`ErrorKind` values."""

READINESS_OUTCOMES = ("shutdown", "clear", "unknown")
"""Outcomes of a readiness read (``vipgate.health.gate.readiness_signal``; None is unknown)."""

GATE_STATES = tuple(s.value for s in GateState)
"""The gate's states (:class:`GateState` values)."""
ROUTE_STATES = ("announced", "depreferred", "withdrawn")
"""States of an announced prefix (``vipgate_prefix_route_state``; :attr:`Gate.route_state`)."""

BFD_STATES = {"admindown": 1, "down": 2, "init": 3, "up": 4}
"""BFD-STD-MIB (RFC 7331) bfdSessState numbers by folded state name."""

BGP_STATES = {
    "idle": 1,
    "connect": 2,
    "active": 3,
    "opensent": 4,
    "openconfirm": 5,
    "established": 6,
}
"""BGP4-MIB (RFC 4273) ``bgpPeerState`` numbers, keyed by the state name folded to lower case
without separators (``OpenSent``, ``OPEN_SENT`` and ``open-sent`` are all ``opensent``)."""

MESSAGE_TYPES = ("open", "update", "notification", "keepalive", "route_refresh")
DIRECTIONS = ("sent", "received")

_DIRECTION_ALIASES = {
    "sent": "sent",
    "send": "sent",
    "tx": "sent",
    "out": "sent",
    "outgoing": "sent",
    "received": "received",
    "receive": "received",
    "recv": "received",
    "rx": "received",
    "in": "received",
    "incoming": "received",
}

MAX_CONNECTIONS = 16  # concurrent scrape connections; more are closed at once
IDLE_TIMEOUT = 30.0  # seconds a kept-alive scrape connection may sit idle
_READ_SIZE = 65536


def _word(value: object) -> str:
    """An enum member or string as a lower-case label value."""
    if isinstance(value, enum.Enum):
        value = value.value if isinstance(value.value, str) else value.name
    return str(value).strip().lower()


def _fold(value: object) -> str:
    return re.sub(r"[^a-z0-9]", "", _word(value))


def _message_type(value: object) -> str:
    folded = _fold(value)
    for t in MESSAGE_TYPES:
        if folded == t.replace("_", ""):
            return t
    return "other"


def _count_tasks() -> float:
    """Tasks alive in the running event loop (the scrape runs in it); NaN outside a loop."""
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:
        return float("nan")


class Metrics:
    """The metrics of one manager, in a registry of their own.

    Methods are cheap (a few dict look-ups) and never raise for unexpected label values: an
    unknown message type counts as ``other``, an unknown BGP state as 0.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # No `*_created` series: they double the exposition and no dashboard of ours uses them.
        # (A process-wide switch of prometheus_client; vipgate is the only user in its process.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._register_health(self.registry)
        self._register_gate(self.registry)
        self._register_sessions(self.registry)
        self._peers: set[str] = set()
        self._gate_states: list[str] = list(GATE_STATES)
        self.gate(GateState.STARTING, 0)

    def _register_health(self, r: CollectorRegistry) -> None:
        """The build and the health checks' metrics (registered in exposition order)."""
        self.build_info = Info("vipgate_build", "vipgate version", registry=r)
        self.build_info.info({"version": __version__, "python": platform.python_version()})
        self.probe_results = Counter(
            "vipgate_probe_results",
            "Health checks by outcome (ok, or the probe's error kind).",
            ["outcome"],
            registry=r,
        )
        for outcome in PROBE_OUTCOMES:
            self.probe_results.labels(outcome)
        self.http_responses = Counter(
            "vipgate_probe_http_responses",
            "Health checks answered with an HTTP status, by status code.",
            ["code"],
            registry=r,
        )
        self.probe_duration = Histogram(
            "vipgate_probe_duration_seconds",
            "Time to the response headers (or to the failure) of each health check.",
            buckets=PROBE_BUCKETS,
            registry=r,
        )
        self.consecutive_failures = Gauge(
            "vipgate_probe_consecutive_failures",
            "Failed health checks in a row.",
            registry=r,
        )
        self.consecutive_successes = Gauge(
            "vipgate_probe_consecutive_successes",
            "Succeeded health checks in a row.",
            registry=r,
        )
        self.tls_reloads = Counter(
            "vipgate_tls_reloads",
            "CA file, client certificate or key changed on disk and loaded again.",
            registry=r,
        )
        self.tls_reload_errors = Counter(
            "vipgate_tls_reload_errors",
            "TLS files changed on disk but did not load (the previous ones stay in use).",
            registry=r,
        )
        self.tls_reload_success = Gauge(
            "vipgate_tls_reload_success",
            "1 if the last load of the TLS files succeeded, else 0.",
            registry=r,
        )
        self.tls_reload_success.set(1)
        self.server_closes = Counter(
            "vipgate_probe_server_closes",
            "Idle keep-alive connections closed by the apiserver (each makes a check run).",
            registry=r,
        )
        self.check_interval = Gauge(
            "vipgate_gate_check_interval_seconds",
            "Seconds between checks as the gate paces them now (period or fast period).",
            registry=r,
        )
        self.readiness_reads = Counter(
            "vipgate_readiness_reads",
            "Readiness reads by outcome (shutdown, clear, unknown).",
            ["outcome"],
            registry=r,
        )
        for outcome in READINESS_OUTCOMES:
            self.readiness_reads.labels(outcome)

    def _register_gate(self, r: CollectorRegistry) -> None:
        """The gate's state and decisions, and the announced prefix."""
        self.gate_state = Gauge(
            "vipgate_gate_state",
            "1 for the gate's current state (starting, up, depreferred, down, disabled, "
            "apiserver_shutdown, draining, stopped), else 0.",
            ["state"],
            registry=r,
        )
        self.gate_transitions = Counter(
            "vipgate_gate_transitions",
            "Gate state changes by reason (healthy, disabled, or the failing probe outcome).",
            ["reason"],
            registry=r,
        )
        self.prefix_announced = Gauge(
            "vipgate_prefix_announced",
            "1 while the prefix is announced (BGP mode: to the BGP peers; routing-table mode: "
            "its route in the kernel table), else 0.",
            ["prefix"],
            registry=r,
        )
        self.prefix_route_state = Gauge(
            "vipgate_prefix_route_state",
            "1 for the prefix's route state (announced, depreferred, withdrawn), else 0; "
            "BGP and routing-table mode alike.",
            ["prefix", "state"],
            registry=r,
        )

    def _register_sessions(self, r: CollectorRegistry) -> None:
        """The BGP and BFD sessions, and the event loop."""
        self.bgp_session_state = Gauge(
            "vipgate_bgp_session_state",
            "BGP FSM state (BGP4-MIB bgpPeerState): 1 Idle, 2 Connect, 3 Active, 4 OpenSent, "
            "5 OpenConfirm, 6 Established, 0 unknown.",
            ["peer"],
            registry=r,
        )
        self.bgp_session_established = Gauge(
            "vipgate_bgp_session_established",
            "1 while the BGP session is Established, else 0.",
            ["peer"],
            registry=r,
        )
        self.bgp_messages = Counter(
            "vipgate_bgp_messages",
            "BGP messages sent and received, by type.",
            ["peer", "direction", "type"],
            registry=r,
        )
        self.bgp_connections_refused = Counter(
            "vipgate_bgp_connections_refused",
            "TCP connections to the BGP port from addresses that are not configured peers "
            "(reset before a byte is read).",
            registry=r,
        )
        self.bfd_session_state = Gauge(
            "vipgate_bfd_session_state",
            "BFD session state (BFD-STD-MIB bfdSessState): 1 AdminDown, 2 Down, 3 Init, 4 Up, "
            "0 unknown.",
            ["peer"],
            registry=r,
        )
        self.bfd_state_changes = Counter(
            "vipgate_bfd_state_changes",
            "BFD session state changes by new state and local diagnostic (RFC 5880 4.1).",
            ["peer", "state", "diag"],
            registry=r,
        )
        self.asyncio_tasks = Gauge(
            "vipgate_asyncio_tasks",
            "asyncio tasks alive in the event loop (counted when scraped).",
            registry=r,
        )
        self.asyncio_tasks.set_function(_count_tasks)

    # ------------------------------------------------------------------ health
    def probe(self, outcome: object, latency: float | None = None) -> None:
        """Count one health check. ``outcome``: "ok" or the probe's ErrorKind (or its value)."""
        word = _word(outcome)
        if word in ("none", ""):
            word = "ok"
        self.probe_results.labels(word).inc()
        if latency is not None and latency >= 0:
            self.probe_duration.observe(latency)

    def probe_result(self, result: object) -> None:
        """Count a ``ProbeResult`` (anything with ``ok``, ``error`` and ``latency``)."""
        ok = bool(getattr(result, "ok", False))
        outcome = "ok" if ok else getattr(result, "error", "other")
        latency = getattr(result, "latency", None)
        self.probe(outcome, float(latency) if isinstance(latency, int | float) else None)
        status = getattr(result, "status", None)
        if isinstance(status, int) and 100 <= status <= 599:  # bounded: at most 500 label values
            self.http_responses.labels(str(status)).inc()

    def gate(
        self,
        state: object,
        consecutive_failures: int | None = None,
        consecutive_successes: int | None = None,
        check_interval: float | None = None,
    ) -> None:
        """Set the gate's state (a GateState or its value), its counters and its pace."""
        current = _word(state)
        if current not in self._gate_states:
            self._gate_states.append(current)
        for s in self._gate_states:
            self.gate_state.labels(s).set(1 if s == current else 0)
        if consecutive_failures is not None:
            self.consecutive_failures.set(consecutive_failures)
        if consecutive_successes is not None:
            self.consecutive_successes.set(consecutive_successes)
        if check_interval is not None:
            self.check_interval.set(check_interval)

    def tls_reload(self, ok: bool) -> None:
        """The TLS files changed on disk and were loaded again (`ok`) or did not load."""
        (self.tls_reloads if ok else self.tls_reload_errors).inc()
        self.tls_reload_success.set(1 if ok else 0)

    def server_close(self) -> None:
        """The apiserver closed the probe's idle keep-alive connection."""
        self.server_closes.inc()

    def readiness(self, outcome: str | None) -> None:
        """Count one readiness read: "shutdown", "clear" or None (unknown)."""
        self.readiness_reads.labels(outcome or "unknown").inc()

    def transition(self, reason: object) -> None:
        """Count one gate decision (announce or withdraw) by its reason."""
        self.gate_transitions.labels(_word(reason) or "unspecified").inc()

    def announced(self, prefix: object, announced: bool) -> None:
        """Whether ``prefix`` is announced (in the Adj-RIB-Out) now."""
        self.prefix_announced.labels(str(prefix)).set(1 if announced else 0)

    def route_state(self, prefix: object, state: str) -> None:
        """The route state of ``prefix`` now: one of :data:`ROUTE_STATES`."""
        if state not in ROUTE_STATES:
            raise ValueError(f"unknown route state {state!r}")
        for s in ROUTE_STATES:
            self.prefix_route_state.labels(str(prefix), s).set(1 if s == state else 0)

    # ------------------------------------------------------------------ BGP (speaker observer)
    def session_state(self, peer: str, state: str) -> None:
        """The speaker's observer: the session with ``peer`` entered ``state``."""
        self._known_peer(peer)
        code = BGP_STATES.get(_fold(state), 0)
        self.bgp_session_state.labels(peer).set(code)
        self.bgp_session_established.labels(peer).set(1 if code == 6 else 0)

    def message(self, peer: str, direction: str, msg_type: str) -> None:
        """The speaker's observer: one BGP message of ``msg_type`` sent to / received from peer."""
        self._known_peer(peer)
        d = _DIRECTION_ALIASES.get(_word(direction), "other")
        self.bgp_messages.labels(peer, d, _message_type(msg_type)).inc()

    def connection_refused(self, source: str) -> None:
        """The speaker's observer: a connection from `source`, not a configured peer, reset."""
        self.bgp_connections_refused.inc()

    def bfd_state(self, peer: str, state: str, diag: str) -> None:
        """The speaker's observer: the BFD session with ``peer`` entered ``state`` (AdminDown,
        Down, Init, Up) with diagnostic ``diag`` (e.g. control_detection_time_expired)."""
        code = BFD_STATES.get(_fold(state), 0)
        self.bfd_session_state.labels(peer).set(code)
        self.bfd_state_changes.labels(peer, _fold(state) or "unknown", _word(diag) or "none").inc()

    def _known_peer(self, peer: str) -> None:
        if peer in self._peers:
            return
        self._peers.add(peer)
        for d in DIRECTIONS:
            for t in MESSAGE_TYPES:
                self.bgp_messages.labels(peer, d, t)
        self.bgp_session_state.labels(peer).set(0)
        self.bgp_session_established.labels(peer).set(0)

    # ------------------------------------------------------------------ exposition
    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """(body, content type) for a scrape with this Accept header."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    async def serve(self, host: str, port: int) -> MetricsServer:
        """Start the HTTP endpoint on (host, port); host "" means every address. Port 0 picks one.

        Use with ``config.prometheus_listen`` (None: metrics disabled, do not call).
        """
        server = MetricsServer(self)
        await server.start(host, port)
        return server


def wildcard_addresses(port: int) -> list[str]:
    """Every address, as the IP literals to bind ("0.0.0.0", "::"): the passive getaddrinfo
    asyncio makes for host None, made here. Given None, asyncio resolves it in its default
    executor, which starts a thread that lives as long as the process (and glibc gives a thread
    its own malloc arena); IP literals it binds without resolving. No name is looked up: with
    no host, getaddrinfo only lists the wildcard address of each family (RFC 3493 6.1)."""
    infos = socket.getaddrinfo(None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in infos))


@dataclass
class MetricsServer:
    """The asyncio HTTP endpoint of a :class:`Metrics`. ``await close()`` stops it."""

    metrics: Metrics
    server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    scrapes: int = 0

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(
            self._client, host=host or wildcard_addresses(port), port=port, reuse_address=True
        )

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The (address, port) pairs actually bound (port 0 resolved)."""
        if self.server is None:
            return []
        return [(str(s.getsockname()[0]), int(s.getsockname()[1])) for s in self.server.sockets]

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    async def close(self) -> None:
        """Stop listening and close every scrape connection (bounded to 1 s)."""
        if self.server is not None:
            self.server.close()
        for w in list(self._writers):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        if self.server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.server.wait_closed()
        self.server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._writers) >= MAX_CONNECTIONS or task is None:
            writer.close()
            release_closed(writer.transport)
            return
        self._writers.add(writer)
        self._tasks.add(task)
        try:
            await self._serve_connection(reader, writer)
        except (ConnectionError, TimeoutError, h11.ProtocolError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()
            release_closed(writer.transport)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._respond(conn, writer, 400, b"bad request\n", "text/plain")
                return
            if event is h11.NEED_DATA:
                async with asyncio.timeout(IDLE_TIMEOUT):
                    data = await reader.read(_READ_SIZE)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
                continue
            if isinstance(event, h11.EndOfMessage) and request is not None:
                await self._answer(conn, writer, request)
                request = None
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
            # h11.Data (a request body): ignored

    async def _answer(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, request: h11.Request
    ) -> None:
        path = request.target.split(b"?", 1)[0]
        if request.method not in (b"GET", b"HEAD"):
            await self._respond(conn, writer, 405, b"method not allowed\n", "text/plain")
            return
        if path not in (b"/metrics", b"/"):
            await self._respond(conn, writer, 404, b"not found; try /metrics\n", "text/plain")
            return
        accept = ""
        for name, value in request.headers:
            if name == b"accept":
                accept = value.decode("latin-1")
        body, content_type = self.metrics.exposition(accept)
        self.scrapes += 1
        await self._respond(conn, writer, 200, body, content_type, head=request.method == b"HEAD")

    @staticmethod
    async def _respond(
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        content_type: str,
        *,
        head: bool = False,
    ) -> None:
        headers = [
            (b"Content-Type", content_type.encode("latin-1")),
            (b"Content-Length", str(len(body)).encode()),
        ]
        data = conn.send(h11.Response(status_code=status, headers=headers))
        if not head:
            data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        writer.write(data or b"")
        await writer.drain()
