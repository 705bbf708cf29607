"""Metrics: exposition after the manager's and speaker's calls, and the HTTP endpoint."""

from __future__ import annotations

import asyncio
import gc
import http.client
import ipaddress
import re
import socket
import threading
import urllib.error
import urllib.request
import weakref
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from vipgate import __version__
from vipgate.health.gate import GateState
from vipgate.health.probe import ErrorKind, ProbeResult
from vipgate.metrics import PROBE_BUCKETS, PROBE_OUTCOMES, Metrics, MetricsServer


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition text, keyed by (name, sorted labels)."""
    text = generate_latest(m.registry).decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: Metrics, name: str, **labels: str) -> float:
    return samples(m)[(name, tuple(sorted(labels.items())))]


def test_all_metric_names_are_vipgate_and_documented() -> None:
    import vipgate.metrics as mod

    m = Metrics()
    names = {f.name for f in text_string_to_metric_families(generate_latest(m.registry).decode())}
    assert names, "no metrics"
    doc = mod.__doc__ or ""
    for name in names:
        assert name.startswith("vipgate_")
        # prometheus_client strips _total from counter family names; the doc names the series.
        assert f"`{name}" in doc, name


def _table_names(text: str) -> set[str]:
    """The first column of a markdown metrics table: the series names."""
    return set(re.findall(r"^\| `(vipgate_\w+)` \|", text, flags=re.M))


def test_operations_md_lists_every_metric() -> None:
    import vipgate.metrics as mod

    ops = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    listed = _table_names(ops)
    assert listed == _table_names(mod.__doc__ or "")
    m = Metrics()
    for f in text_string_to_metric_families(generate_latest(m.registry).decode()):
        # a counter's family is named without its _total; a prefix match passed any family
        # whose name begins a listed one (vipgate_probe, vipgate_bgp_session)
        assert {f.name, f"{f.name}_total"} & listed, f.name


def test_build_info() -> None:
    m = Metrics()
    s = samples(m)
    [(key, v)] = [(k, v) for k, v in s.items() if k[0] == "vipgate_build_info"]
    assert v == 1
    assert ("version", __version__) in key[1]


def test_registries_are_independent() -> None:
    a, b = Metrics(), Metrics()
    a.probe("ok", 0.01)
    assert value(a, "vipgate_probe_results_total", outcome="ok") == 1
    assert value(b, "vipgate_probe_results_total", outcome="ok") == 0


def test_initial_state() -> None:
    m = Metrics()
    assert set(PROBE_OUTCOMES) == {"ok"} | {k.value for k in ErrorKind if k is not ErrorKind.NONE}
    for outcome in PROBE_OUTCOMES:
        assert value(m, "vipgate_probe_results_total", outcome=outcome) == 0
    assert value(m, "vipgate_gate_state", state="starting") == 1
    for state in ("up", "down", "disabled"):
        assert value(m, "vipgate_gate_state", state=state) == 0
    assert value(m, "vipgate_probe_consecutive_failures") == 0


def test_outcomes_are_documented() -> None:
    import vipgate.metrics as mod

    for outcome in PROBE_OUTCOMES:
        assert f"`{outcome}`" in (mod.__doc__ or ""), outcome
    for state in GateState:
        assert f"`{state.value}`" in (mod.__doc__ or ""), state


def test_probe_outcomes_and_latency_histogram() -> None:
    m = Metrics()
    m.probe("ok", 0.0008)
    m.probe("ok", 0.004)
    m.probe(ErrorKind.REFUSED, 0.0002)
    m.probe(ErrorKind.TIMEOUT, 3.0)
    m.probe("http_status", 0.02)
    m.probe(ErrorKind.NONE, 0.002)  # the probe's "no error" is ok
    assert value(m, "vipgate_probe_results_total", outcome="ok") == 3
    assert value(m, "vipgate_probe_results_total", outcome="refused") == 1
    assert value(m, "vipgate_probe_results_total", outcome="timeout") == 1
    assert value(m, "vipgate_probe_results_total", outcome="http_status") == 1
    assert value(m, "vipgate_probe_results_total", outcome="tls_hostname") == 0
    h = "vipgate_probe_duration_seconds"
    assert value(m, h + "_count") == 6
    assert value(m, h + "_sum") == pytest.approx(0.0008 + 0.004 + 0.0002 + 3.0 + 0.02 + 0.002)
    assert value(m, h + "_bucket", le="0.001") == 2
    assert value(m, h + "_bucket", le="0.005") == 4
    assert value(m, h + "_bucket", le="0.025") == 5
    assert value(m, h + "_bucket", le="3.0") == 6
    assert value(m, h + "_bucket", le="+Inf") == 6
    assert PROBE_BUCKETS[0] == 0.001
    assert PROBE_BUCKETS[-1] == 3.0


def test_probe_result_object() -> None:
    m = Metrics()
    m.probe_result(ProbeResult(True, 200, ErrorKind.NONE, "", 0.003))
    m.probe_result(ProbeResult(False, None, ErrorKind.TLS_HOSTNAME, "mismatch", 0.01))
    assert value(m, "vipgate_probe_results_total", outcome="ok") == 1
    assert value(m, "vipgate_probe_results_total", outcome="tls_hostname") == 1
    assert value(m, "vipgate_probe_duration_seconds_count") == 2
    assert value(m, "vipgate_probe_http_responses_total", code="200") == 1


def test_http_responses_by_status_code() -> None:
    # 401/403 (access) must be told from 500 (unhealthy): the TLS/access alert reads the code.
    m = Metrics()
    for status in (401, 401, 403, 500):
        m.probe_result(ProbeResult(False, status, ErrorKind.HTTP_STATUS, f"HTTP {status}", 0.01))
    m.probe_result(ProbeResult(False, None, ErrorKind.REFUSED, "refused", 0.001))
    assert value(m, "vipgate_probe_results_total", outcome="http_status") == 4
    codes = {k[1][0][1]: v for k, v in samples(m).items() if k[0].endswith("http_responses_total")}
    assert codes == {"401": 2, "403": 1, "500": 1}


def test_gate_state_is_one_hot_and_follows_the_gate() -> None:
    m = Metrics()
    m.gate(GateState.UP, 0)
    m.gate(GateState.DOWN, 3)
    assert value(m, "vipgate_gate_state", state="down") == 1
    assert value(m, "vipgate_gate_state", state="up") == 0
    assert value(m, "vipgate_gate_state", state="starting") == 0
    assert value(m, "vipgate_probe_consecutive_failures") == 3
    m.gate("up", 0)
    assert value(m, "vipgate_gate_state", state="up") == 1
    assert value(m, "vipgate_gate_state", state="down") == 0
    assert value(m, "vipgate_probe_consecutive_failures") == 0
    m.gate("down", 1)  # a state's value works as well as the state
    assert value(m, "vipgate_gate_state", state="down") == 1
    m.gate(GateState.DISABLED)
    on = [k[1] for k, v in samples(m).items() if k[0] == "vipgate_gate_state" and v == 1]
    assert on == [(("state", "disabled"),)]
    assert value(m, "vipgate_probe_consecutive_failures") == 1  # None leaves it alone


def test_gate_pace_successes_server_closes_and_readiness_reads() -> None:
    m = Metrics()
    for state in ("apiserver_shutdown", "draining", "stopped"):
        assert value(m, "vipgate_gate_state", state=state) == 0  # exist from the start
    for outcome in ("shutdown", "clear", "unknown"):
        assert value(m, "vipgate_readiness_reads_total", outcome=outcome) == 0
    assert value(m, "vipgate_probe_server_closes_total") == 0
    m.gate(GateState.DOWN, 0, 2, 0.2)
    assert value(m, "vipgate_probe_consecutive_successes") == 2
    assert value(m, "vipgate_gate_check_interval_seconds") == 0.2
    m.gate(GateState.APISERVER_SHUTDOWN, 0)  # None leaves the pace and successes alone
    assert value(m, "vipgate_gate_state", state="apiserver_shutdown") == 1
    assert value(m, "vipgate_gate_check_interval_seconds") == 0.2
    assert value(m, "vipgate_probe_consecutive_successes") == 2
    m.server_close()
    m.readiness("shutdown")
    m.readiness(None)
    assert value(m, "vipgate_probe_server_closes_total") == 1
    assert value(m, "vipgate_readiness_reads_total", outcome="shutdown") == 1
    assert value(m, "vipgate_readiness_reads_total", outcome="unknown") == 1


def test_transitions_and_announced_prefix() -> None:
    m = Metrics()
    prefix = ipaddress.ip_network("203.0.113.100/32")
    m.announced(prefix, True)
    assert value(m, "vipgate_prefix_announced", prefix="203.0.113.100/32") == 1
    m.transition("threshold_reached")
    m.announced(prefix, False)
    assert value(m, "vipgate_prefix_announced", prefix="203.0.113.100/32") == 0
    m.transition("check_succeeded")
    m.transition("check_succeeded")
    m.announced("2001:db8:100::100/128", True)
    assert value(m, "vipgate_prefix_announced", prefix="2001:db8:100::100/128") == 1
    assert value(m, "vipgate_gate_transitions_total", reason="threshold_reached") == 1
    assert value(m, "vipgate_gate_transitions_total", reason="check_succeeded") == 2


def test_bgp_session_state_and_established() -> None:
    m = Metrics()
    peer = "192.0.2.1"
    m.session_state(peer, "Connect")
    assert value(m, "vipgate_bgp_session_state", peer=peer) == 2
    assert value(m, "vipgate_bgp_session_established", peer=peer) == 0
    for state, code in [("OpenSent", 4), ("OPEN_CONFIRM", 5), ("established", 6)]:
        m.session_state(peer, state)
        assert value(m, "vipgate_bgp_session_state", peer=peer) == code
    assert value(m, "vipgate_bgp_session_established", peer=peer) == 1
    m.session_state(peer, "Idle")
    assert value(m, "vipgate_bgp_session_state", peer=peer) == 1
    assert value(m, "vipgate_bgp_session_established", peer=peer) == 0
    m.session_state("2001:db8:0:1::1", "Active")
    assert value(m, "vipgate_bgp_session_state", peer="2001:db8:0:1::1") == 3
    m.session_state(peer, "weird")
    assert value(m, "vipgate_bgp_session_state", peer=peer) == 0


def test_bgp_messages_by_peer_direction_type() -> None:
    m = Metrics()
    peer = "192.0.2.1"
    m.message(peer, "sent", "OPEN")
    m.message(peer, "received", "open")
    for _ in range(3):
        m.message(peer, "received", "KEEPALIVE")
    m.message(peer, "sent", "UPDATE")
    m.message(peer, "sent", "ROUTE-REFRESH")
    m.message(peer, "sent", "bogus")
    labels = {"peer": peer}
    name = "vipgate_bgp_messages_total"
    assert value(m, name, **labels, direction="sent", type="open") == 1
    assert value(m, name, **labels, direction="received", type="open") == 1
    assert value(m, name, **labels, direction="received", type="keepalive") == 3
    assert value(m, name, **labels, direction="sent", type="keepalive") == 0
    assert value(m, name, **labels, direction="sent", type="update") == 1
    assert value(m, name, **labels, direction="received", type="update") == 0
    assert value(m, name, **labels, direction="sent", type="route_refresh") == 1
    assert value(m, name, **labels, direction="sent", type="other") == 1
    assert value(m, name, **labels, direction="received", type="notification") == 0


def test_satisfies_speaker_observer_protocol() -> None:
    from vipgate.bgp.peer import SpeakerObserver

    m = Metrics()
    obs: SpeakerObserver = m  # mypy checks the speaker's own protocol here
    obs.session_state("192.0.2.1", "Established")
    obs.message("192.0.2.1", "sent", "UPDATE")
    obs.bfd_state("192.0.2.1", "Up", "none")
    assert value(m, "vipgate_bgp_session_established", peer="192.0.2.1") == 1
    assert value(m, "vipgate_bfd_session_state", peer="192.0.2.1") == 4


# --------------------------------------------------------------------------------------------
# The HTTP endpoint, over real HTTP on loopback
# --------------------------------------------------------------------------------------------


def _get(url: str, accept: str = "") -> tuple[int, str, str]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def test_every_address_is_served_without_a_resolver_thread() -> None:
    """host "" binds the wildcard address of each family, as asyncio's own resolution of None
    does, without starting asyncio's default executor (a thread for the life of the process)."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        passive = await loop.getaddrinfo(
            None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )  # asyncio's resolution of None, in a loop of its own below
        expected = {str(sockaddr[0]) for *_, sockaddr in passive}
        assert expected <= {"0.0.0.0", "::"}

        async def serve() -> set[str]:
            threads = threading.active_count()
            server = await Metrics().serve("", 0)
            try:
                assert threading.active_count() == threads
                assert asyncio.get_running_loop()._default_executor is None  # type: ignore[attr-defined]
                return {a for a, _ in server.addresses}
            finally:
                await server.close()

        assert await asyncio.to_thread(asyncio.run, serve()) == expected

    asyncio.run(scenario())


def test_scrape_connections_are_freed_without_the_garbage_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A scrape connection's transport is freed when the connection closes, with the cyclic
    garbage collector off (vipgate.transports: Python 3.11's transport cycle)."""
    served: list[weakref.ref[asyncio.BaseTransport]] = []
    serve_connection = MetricsServer._serve_connection

    async def record(
        self: MetricsServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        served.append(weakref.ref(writer.transport))
        await serve_connection(self, reader, writer)

    monkeypatch.setattr(MetricsServer, "_serve_connection", record)

    async def scenario() -> None:
        server = await Metrics().serve("127.0.0.1", 0)
        gc.collect()
        gc.disable()
        try:
            for _ in range(3):  # a connection each (urllib closes after the answer)
                status, _, _ = await asyncio.to_thread(
                    _get, f"http://127.0.0.1:{server.port}/metrics"
                )
                assert status == 200
            await server.close()
            await asyncio.sleep(0.05)  # the transports' close callbacks
            alive = [t for r in served if (t := r()) is not None]
            assert len(served) == 3 and not alive, alive
        finally:
            gc.enable()

    asyncio.run(scenario())


def test_http_endpoint_scrape_keepalive_and_stop() -> None:
    async def scenario() -> None:
        m = Metrics()
        m.probe("ok", 0.002)
        m.announced("203.0.113.100/32", True)
        m.session_state("192.0.2.1", "Established")
        threads = threading.active_count()
        server = await m.serve("127.0.0.1", 0)
        assert threading.active_count() == threads  # no thread, no poll loop: idle is free
        port = server.port
        base = f"http://127.0.0.1:{port}"
        try:
            status, ctype, body = await asyncio.to_thread(_get, base + "/metrics")
            assert status == 200
            assert ctype.startswith("text/plain")
            assert 'vipgate_probe_results_total{outcome="ok"} 1.0' in body
            assert 'vipgate_prefix_announced{prefix="203.0.113.100/32"} 1.0' in body
            assert 'vipgate_bgp_session_established{peer="192.0.2.1"} 1.0' in body

            # The values follow the calls between scrapes.
            m.announced("203.0.113.100/32", False)
            _, _, body = await asyncio.to_thread(_get, base + "/metrics")
            assert 'vipgate_prefix_announced{prefix="203.0.113.100/32"} 0.0' in body

            # OpenMetrics when asked for.
            status, ctype, body = await asyncio.to_thread(
                _get, base + "/metrics", "application/openmetrics-text; version=1.0.0"
            )
            assert status == 200
            assert ctype.startswith("application/openmetrics-text")
            assert body.rstrip().endswith("# EOF")

            assert (await asyncio.to_thread(_get, base + "/nope"))[0] == 404

            def keepalive() -> list[tuple[int, int]]:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                out = []
                try:
                    for method in ("GET", "HEAD", "GET", "POST"):
                        c.request(method, "/metrics")
                        r = c.getresponse()
                        out.append((r.status, len(r.read())))
                finally:
                    c.close()
                return out

            results = await asyncio.to_thread(keepalive)
            assert [s for s, _ in results] == [200, 200, 200, 405]
            assert results[0][1] > 0
            assert results[1][1] == 0  # HEAD: no body
            assert server.scrapes == 6
        finally:
            await server.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)

    asyncio.run(scenario())


def test_http_endpoint_answers_garbage_with_400_and_survives() -> None:
    async def scenario() -> None:
        m = Metrics()
        server = await m.serve("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(5):
                data = await reader.read()
            assert data.startswith(b"HTTP/1.1 400")
            writer.close()
            status, _, _ = await asyncio.to_thread(_get, f"http://127.0.0.1:{server.port}/metrics")
            assert status == 200
        finally:
            await server.close()

    asyncio.run(scenario())


def test_close_ends_idle_keepalive_connections() -> None:
    async def scenario() -> None:
        m = Metrics()
        server = await m.serve("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        async with asyncio.timeout(5):
            await server.close()
            # The server closed our idle connection: we read the rest of the body, then EOF.
            rest = await reader.read()
            while rest:
                rest = await reader.read()
        writer.close()

    asyncio.run(scenario())


def test_speaker_vocabulary() -> None:
    """The names the speaker actually passes: fsm.State values, "in"/"out", wire type names."""
    from vipgate.bgp import fsm

    m = Metrics()
    peer = "192.0.2.1"
    codes = {"Idle": 1, "Connect": 2, "Active": 3, "OpenSent": 4, "OpenConfirm": 5}
    codes["Established"] = 6
    for state in fsm.State:
        m.session_state(peer, state.value)
        assert value(m, "vipgate_bgp_session_state", peer=peer) == codes[state.value], state
    m.message(peer, "out", "OPEN")
    m.message(peer, "in", "UPDATE")
    m.message(peer, "in", "NOTIFICATION")
    m.message(peer, "out", "ROUTE-REFRESH")
    name = "vipgate_bgp_messages_total"
    assert value(m, name, peer=peer, direction="sent", type="open") == 1
    assert value(m, name, peer=peer, direction="received", type="update") == 1
    assert value(m, name, peer=peer, direction="received", type="notification") == 1
    assert value(m, name, peer=peer, direction="sent", type="route_refresh") == 1


def test_asyncio_tasks_are_counted_at_scrape_time() -> None:
    """The task gauge is the event loop's task count when scraped (soak: flat over hours)."""

    async def scenario() -> None:
        m = Metrics()
        server = await m.serve("127.0.0.1", 0)
        try:
            _, _, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{server.port}/metrics")
            base = _tasks_in(body)
            idle = [asyncio.create_task(asyncio.sleep(30)) for _ in range(7)]
            _, _, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{server.port}/metrics")
            assert _tasks_in(body) == base + 7
            for t in idle:
                t.cancel()
            await asyncio.gather(*idle, return_exceptions=True)
            _, _, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{server.port}/metrics")
            assert _tasks_in(body) == base
        finally:
            await server.close()

    asyncio.run(scenario())


def _tasks_in(body: str) -> float:
    [line] = [ln for ln in body.splitlines() if ln.startswith("vipgate_asyncio_tasks ")]
    return float(line.split()[1])


def test_bfd_session_state_and_changes_by_diag() -> None:
    from vipgate.bfd.wire import Diag, State

    m = Metrics()
    peer = "192.0.2.1"
    for state, diag, code in [
        (State.DOWN, Diag.NONE, 2),
        (State.INIT, Diag.NONE, 3),
        (State.UP, Diag.NONE, 4),
        (State.DOWN, Diag.CONTROL_DETECTION_TIME_EXPIRED, 2),
        (State.ADMIN_DOWN, Diag.ADMINISTRATIVELY_DOWN, 1),
    ]:
        m.bfd_state(peer, state.label, diag.label)
        assert value(m, "vipgate_bfd_session_state", peer=peer) == code
    changes = "vipgate_bfd_state_changes_total"
    assert value(m, changes, peer=peer, state="down", diag="none") == 1
    assert value(m, changes, peer=peer, state="down", diag="control_detection_time_expired") == 1
    assert value(m, changes, peer=peer, state="admindown", diag="administratively_down") == 1
    m.bfd_state(peer, "bogus", "none")
    assert value(m, "vipgate_bfd_session_state", peer=peer) == 0


def test_route_state_per_prefix_is_one_hot() -> None:
    from vipgate.metrics import ROUTE_STATES

    m = Metrics()
    p4, p6 = "203.0.113.100/32", "2001:db8:100::100/128"
    for state in ROUTE_STATES:
        m.route_state(p4, state)
        for s in ROUTE_STATES:
            want = 1 if s == state else 0
            assert value(m, "vipgate_prefix_route_state", prefix=p4, state=s) == want
    m.route_state(ipaddress.ip_network(p6), "depreferred")
    assert value(m, "vipgate_prefix_route_state", prefix=p6, state="depreferred") == 1
    assert value(m, "vipgate_prefix_route_state", prefix=p4, state="withdrawn") == 1
    with pytest.raises(ValueError, match="unknown route state"):
        m.route_state(p4, "up")


def test_route_state_follows_the_gate() -> None:
    from vipgate.health.gate import Gate, UnhealthyAction
    from vipgate.metrics import ROUTE_STATES

    fail = ProbeResult(False, 500, ErrorKind.HTTP_STATUS, "HTTP 500", 0.01)
    ok = ProbeResult(True, 200, ErrorKind.NONE, "", 0.01)
    gate = Gate(
        "https://localhost:6443/livez",
        1,
        5.0,
        graceful_shutdown=3.0,
        unhealthy_action=UnhealthyAction.DEPREFER,
    )
    gate.start(0.0)
    seen = [gate.route_state]
    for i, r in enumerate((ok, fail, ok)):
        gate.feed(r, 1.0 + i)
        seen.append(gate.route_state)
    gate.stop(5.0)
    seen.append(gate.route_state)  # the drain's path is de-preferred too
    gate.tick(8.0)
    seen.append(gate.route_state)
    assert seen == [
        "withdrawn",
        "announced",
        "depreferred",
        "announced",
        "depreferred",
        "withdrawn",
    ]
    assert set(seen) == set(ROUTE_STATES)
