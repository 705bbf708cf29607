"""The health probe against real servers on loopback (127.0.0.1 / ::1) started by each test.

The certificates (tests/unit/conftest.py, made by lab.pki) are shaped like kubeadm's apiserver
certificate: they name the node name, kubernetes, kubernetes.default, kubernetes.default.svc,
kubernetes.default.svc.cluster.local and the node IP 192.0.2.11 -- and not localhost or 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import datetime
import gc
import socket
import ssl
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path

import h11
import pytest

from tests.unit.conftest import SERVING_NAMES, ApiserverPki, free_port, next_request
from vipgate.health import probe as probe_module
from vipgate.health.gate import Gate
from vipgate.health.probe import BODY_LIMIT, ErrorKind, Probe, ProbeResult


# ---------------------------------------------------------------------------- fake apiserver
class FakeApiserver:
    """A tiny HTTP/1.1 server (h11) with switchable behaviour; TLS when given a context."""

    def __init__(self, ssl_ctx: ssl.SSLContext | None, host: str = "127.0.0.1") -> None:
        self.ssl_ctx = ssl_ctx
        self.host = host
        self.port = 0
        self.mode = "ok"  # ok | status | hang | slow | stream | drop_second
        self.status = 200
        self.body = b"ok"
        self.headers: list[tuple[str, str]] = []
        self.delay = 0.0
        self.idle_close: float | None = None  # close the connection this long after a response
        self.idle_abort = False  # ... with a TCP RST instead of a TLS close_notify + FIN
        self.connections = 0  # TLS handshakes completed (handler calls)
        self.requests = 0
        self.streamed = 0  # body bytes written in stream mode
        self.paths: dict[str, tuple[int, bytes]] = {}  # answers by path, whatever the mode
        self.targets: list[bytes] = []  # request targets, in order
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopping = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> FakeApiserver:
        self._server = await asyncio.start_server(
            self._handle, self.host, 0, ssl=self.ssl_ctx, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._stopping.set()
        for w in list(self._writers):
            w.transport.abort()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self._server.wait_closed()

    def url(self, host: str | None = None, path: str = "/livez") -> str:
        h = host or self.host
        if ":" in h:
            h = f"[{h}]"
        scheme = "https" if self.ssl_ctx else "http"
        return f"{scheme}://{h}:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        served = 0
        try:
            while await next_request(conn, reader, lambda r: self.targets.append(r.target)):
                self.requests += 1
                served += 1
                if self.mode == "hang":
                    await self._stopping.wait()
                    return
                if self.mode == "drop_second" and served == 2:
                    return  # close without answering, as if the idle close raced the request
                if self.mode == "slow":
                    await asyncio.sleep(self.delay)
                if self.mode == "stream":
                    await self._stream(conn, writer)
                    return
                status = self.status if self.mode == "status" else 200
                body = self.body if self.mode == "status" else b"ok"
                status, body = self.paths.get(self.targets[-1].decode(), (status, body))
                headers = [("Content-Length", str(len(body))), *self.headers]
                writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
                writer.write(conn.send(h11.Data(data=body)) or b"")
                writer.write(conn.send(h11.EndOfMessage()) or b"")
                await writer.drain()
                if self.idle_close is not None:
                    await asyncio.sleep(self.idle_close)  # (the probe must not be reading)
                    if self.idle_abort:
                        writer.transport.abort()
                    return
                if conn.our_state is h11.MUST_CLOSE:
                    return  # "Connection: close"
                conn.start_next_cycle()
        except (ConnectionError, h11.RemoteProtocolError, ssl.SSLError):
            return
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _stream(self, conn: h11.Connection, writer: asyncio.StreamWriter) -> None:
        headers = [("Transfer-Encoding", "chunked")]
        writer.write(conn.send(h11.Response(status_code=200, headers=headers)) or b"")
        chunk = b"x" * 16384
        for _ in range(4096):  # at most 64 MiB: bounded even if the client reads everything
            writer.write(conn.send(h11.Data(data=chunk)) or b"")
            await writer.drain()
            self.streamed += len(chunk)


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 20))


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


async def _check_with(
    srv: FakeApiserver, pki: ApiserverPki, *, timeout: float = 2.0, server_name: str = "kubernetes"
) -> ProbeResult:
    probe = Probe(srv.url(), timeout, str(pki.ca), server_name)
    try:
        return await probe.check()
    finally:
        await probe.close()


# ---------------------------------------------------------------------------- tests
def test_200_ok_with_server_name(pki: ApiserverPki) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            probe = Probe(srv.url(), 2.0, str(pki.ca), "kubernetes")
            r = await probe.check()
            assert r.ok and r.status == 200 and r.error is ErrorKind.NONE and r.text == ""
            assert 0 <= r.latency < 2.0
            assert r.new_connection and r.verified_name == "kubernetes"
            cert = probe.peer_certificate
            assert cert is not None
            assert cert.issuer == "CN=kubernetes" and cert.subject == "CN=kube-apiserver"
            assert cert.names == SERVING_NAMES
            assert cert.verified and cert.name_matches and cert.verified_name == "kubernetes"
            assert cert.trust == f"CA file {pki.ca}"
            line = cert.describe()
            assert "issued by CN=kubernetes" in line
            assert f"names {', '.join(SERVING_NAMES)}: trusted" in line
            assert line.endswith(f"trusted by CA file {pki.ca}, names kubernetes")
            await probe.close()

    run(main)


@pytest.mark.parametrize(
    ("status", "body", "needle"),
    [
        (500, b"[+]ping ok\n[-]etcd failed: reason withheld\nlivez check failed", "[-]etcd"),
        (401, b'{"kind":"Status","code":401}', "HTTP 401 Unauthorized"),
        (403, b'{"kind":"Status","code":403}', "HTTP 403 Forbidden"),
        (201, b"created", "201"),
    ],
)
def test_non_200_status_is_a_failure(
    pki: ApiserverPki, status: int, body: bytes, needle: str
) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            srv.mode, srv.status, srv.body = "status", status, body
            probe = Probe(srv.url(), 2.0, str(pki.ca), "kubernetes")
            r = await probe.check()
            assert not r.ok and r.status == status and r.error is ErrorKind.HTTP_STATUS
            assert needle in r.text
            # a complete answer HTTP lets be reused keeps the connection (no new handshake)
            assert probe.connected
            srv.mode = "ok"
            r2 = await probe.check()
            assert r2.ok and not r2.new_connection and srv.connections == 1
            await probe.close()

    run(main)


def test_500_answers_keep_one_connection(pki: ApiserverPki) -> None:
    """500 complete 500 answers on a keep-alive connection: one TLS handshake, not 500."""

    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            srv.mode, srv.status, srv.body = "status", 500, b"[-]etcd failed\nlivez check failed"
            probe = Probe(srv.url(), 2.0, str(pki.ca), "kubernetes")
            results = [await probe.check() for _ in range(500)]
            assert all(r.status == 500 and r.error is ErrorKind.HTTP_STATUS for r in results)
            assert [r.new_connection for r in results] == [True] + [False] * 499
            assert probe.tls_handshakes == 1 and probe.tcp_connects == 1
            assert srv.connections == 1 and srv.requests == 500
            await probe.close()

    run(main)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ([("Connection", "close")], b"down"),  # the server says it closes
        ([], b"x" * (BODY_LIMIT + 1)),  # body over the limit: not read to its end
    ],
    ids=["connection-close", "oversized-body"],
)
def test_500_that_http_does_not_let_be_reused_reconnects(
    pki: ApiserverPki, headers: list[tuple[str, str]], body: bytes
) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            srv.mode, srv.status, srv.body, srv.headers = "status", 500, body, headers
            probe = Probe(srv.url(), 2.0, str(pki.ca), "kubernetes")
            rs = [await probe.check() for _ in range(3)]
            assert all(r.status == 500 and r.new_connection for r in rs)
            assert probe.tls_handshakes == 3 and srv.connections == 3
            await probe.close()

    run(main)


def test_redirect_is_not_followed(pki: ApiserverPki) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            srv.mode, srv.status, srv.body = "status", 301, b""
            srv.headers = [("Location", "https://kubernetes:6443/elsewhere")]
            r = await _check_with(srv, pki)
            assert not r.ok and r.status == 301 and r.error is ErrorKind.HTTP_STATUS
            assert "redirects are not followed" in r.text and "/elsewhere" in r.text
            assert srv.requests == 1

    run(main)


def test_refused(pki: ApiserverPki) -> None:
    async def main() -> None:
        port = free_port()
        probe = Probe(f"https://127.0.0.1:{port}/livez", 2.0, str(pki.ca), "kubernetes")
        r = await probe.check()
        assert not r.ok and r.status is None and r.error is ErrorKind.REFUSED
        assert f"127.0.0.1:{port}" in r.text
        assert probe.tls_handshakes == 0
        await probe.close()

    run(main)


def test_hang_after_handshake_times_out(pki: ApiserverPki) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            srv.mode = "hang"
            probe = Probe(srv.url(), 0.3, str(pki.ca), "kubernetes")
            r = await probe.check()
            assert not r.ok and r.status is None and r.error is ErrorKind.TIMEOUT
            assert "response headers" in r.text
            assert 0.3 <= r.latency < 0.3 + 0.5
            assert not probe.connected  # a timed-out connection is closed
            await probe.close()

    run(main)


def test_hang_in_tls_handshake_times_out(pki: ApiserverPki) -> None:
    """A listener that never answers the TLS ClientHello: the deadline covers the handshake."""

    async def main() -> None:
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen(8)  # the kernel completes TCP handshakes; nobody ever reads
            port = lsock.getsockname()[1]
            probe = Probe(f"https://127.0.0.1:{port}/livez", 0.3, str(pki.ca), "kubernetes")
            r = await probe.check()
            assert r.error is ErrorKind.TIMEOUT and "TLS handshake" in r.text
            assert 0.3 <= r.latency < 0.3 + 0.5
            await probe.close()

    run(main)


def test_slow_under_the_timeout_succeeds(pki: ApiserverPki) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            srv.mode, srv.delay = "slow", 0.15
            r = await _check_with(srv, pki, timeout=2.0)
            assert r.ok and r.latency >= 0.15

    run(main)


def test_wrong_ca_names_the_ca_path(pki: ApiserverPki) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            probe = Probe(srv.url(), 2.0, str(pki.other_ca), "kubernetes")
            r = await probe.check()
            assert not r.ok and r.error is ErrorKind.TLS_VERIFY
            assert "certificate verify failed" in r.text and str(pki.other_ca) in r.text
            assert r.ca_path == str(pki.other_ca)
            await probe.close()

    run(main)


def _client_tls_protocols() -> int:
    return sum(
        1
        for o in gc.get_objects()
        if isinstance(o, asyncio.sslproto.SSLProtocol) and not o._server_side
    )


def test_failed_handshakes_leave_no_tls_state_to_the_garbage_collector(pki: ApiserverPki) -> None:
    """A failed handshake's SSL protocol (a 256 kB buffer and the OpenSSL state) is freed when
    the check ends, not by a later garbage collection (bench/README.md, soak findings)."""

    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            probe = Probe(srv.url(), 2.0, str(pki.other_ca), "kubernetes")
            gc.collect()
            gc.disable()
            try:
                for _ in range(10):
                    assert (await probe.check()).error is ErrorKind.TLS_VERIFY
                await asyncio.sleep(0.05)  # the transports' close callbacks
                assert _client_tls_protocols() == 0
            finally:
                gc.enable()
                await probe.close()

    run(main)


def test_a_handshake_failure_racing_the_deadline_leaves_no_tls_state(
    pki: ApiserverPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handshake's failure and the check's cancellation (its deadline) in the same loop
    iteration, the failure first: the failed handshake's SSL protocol is still freed at once,
    not left in a reference cycle with the frame that raised its exception (Python 3.11
    sslproto; bench/README.md, soak findings), and asyncio logs no "never retrieved". The
    cancellation is made to land right after the failure, as the deadline's does under load."""
    checks: list[asyncio.Future[ProbeResult]] = []
    complete = asyncio.sslproto.SSLProtocol._on_handshake_complete

    def then_cancel(proto: asyncio.sslproto.SSLProtocol, exc: BaseException | None) -> None:
        complete(proto, exc)
        if exc is not None and not proto._server_side:
            checks[-1].cancel()

    monkeypatch.setattr(asyncio.sslproto.SSLProtocol, "_on_handshake_complete", then_cancel)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        logged: list[str] = []
        loop.set_exception_handler(lambda _l, ctx: logged.append(str(ctx.get("message"))))
        async with FakeApiserver(pki.server_context()) as srv:
            probe = Probe(srv.url(), 2.0, str(pki.other_ca), "kubernetes")
            gc.collect()
            gc.disable()
            try:
                for _ in range(3):
                    checks.append(asyncio.ensure_future(probe.check()))
                    with pytest.raises(asyncio.CancelledError):
                        await checks[-1]
                await asyncio.sleep(0.05)  # the transports' close callbacks
                assert _client_tls_protocols() == 0
                gc.enable()
                gc.collect()
                assert not logged, logged
            finally:
                gc.enable()
                await probe.close()

    run(main)


def test_closed_connections_are_freed_without_the_garbage_collector(
    pki: ApiserverPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every TCP transport the probe made is freed once its connection has closed -- closed by
    the server after an answer, by a failed handshake, after a timeout or a 500, by the probe --
    with the cyclic garbage collector off: none is left in a reference cycle (Python 3.11's
    transport keeps a bound method of itself; bench/README.md, soak findings)."""
    made: list[weakref.ref[asyncio.BaseTransport]] = []
    connection_made = probe_module._Conn.connection_made

    def record(conn: probe_module._Conn, transport: asyncio.BaseTransport) -> None:
        made.append(weakref.ref(transport))  # the TCP transports (TLS calls it for none)
        connection_made(conn, transport)

    monkeypatch.setattr(probe_module._Conn, "connection_made", record)

    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            probe = Probe(srv.url(), 0.3, str(pki.ca), "kubernetes")
            untrusted = Probe(srv.url(), 0.3, str(pki.other_ca), "kubernetes")
            gc.collect()
            gc.disable()
            try:
                srv.idle_close = 0.0  # closed after each answer: a connection per check
                for _ in range(3):
                    assert (await probe.check()).ok
                    await asyncio.sleep(0.05)
                srv.idle_close = None
                for _ in range(3):
                    assert (await untrusted.check()).error is ErrorKind.TLS_VERIFY
                srv.mode = "hang"
                for _ in range(2):
                    assert (await probe.check()).error is ErrorKind.TIMEOUT
                srv.mode, srv.status = "status", 500
                assert (await probe.check()).error is ErrorKind.HTTP_STATUS
                srv.mode = "ok"
                assert (await probe.check()).ok
                await probe.close()
                await untrusted.close()
                await asyncio.sleep(0.05)  # the transports' close callbacks
                alive = [t for r in made if (t := r()) is not None]
                assert len(made) >= 9 and not alive, (len(made), alive)
            finally:
                gc.enable()

    run(main)


def test_system_trust_store_does_not_trust_a_private_ca(pki: ApiserverPki) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            probe = Probe(srv.url(), 2.0, "", "kubernetes")
            r = await probe.check()
            assert r.error is ErrorKind.TLS_VERIFY and "system trust store" in r.text
            await probe.close()

    run(main)


def test_missing_ca_file_is_a_tls_failure_not_a_crash(tmp_path: Path) -> None:
    async def main() -> None:
        missing = tmp_path / "nope.crt"
        probe = Probe("https://127.0.0.1:1/livez", 1.0, str(missing), "kubernetes")
        r = await probe.check()
        assert r.error is ErrorKind.TLS_OTHER and str(missing) in r.text
        await probe.close()

    run(main)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_hostname_mismatch_lists_the_certificate_names(pki: ApiserverPki, host: str) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            probe = Probe(srv.url(host), 2.0, str(pki.ca))
            r = await probe.check()
            assert not r.ok and r.error is ErrorKind.TLS_HOSTNAME
            assert r.verified_name == host
            assert r.cert_names == SERVING_NAMES
            assert "kubernetes.default.svc" in r.text and host in r.text
            cert = probe.peer_certificate
            assert cert is not None and cert.verified and not cert.name_matches
            assert cert.describe().endswith(f"but does NOT name {host}")
            # the names are cached for the episode: the second failure makes one handshake
            hs = probe.tls_handshakes
            r2 = await probe.check()
            assert r2.error is ErrorKind.TLS_HOSTNAME and r2.cert_names == r.cert_names
            assert probe.tls_handshakes == hs + 1
            await probe.close()

    run(main)


def test_server_name_kubernetes_with_localhost_url_succeeds(pki: ApiserverPki) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            probe = Probe(srv.url("localhost"), 2.0, str(pki.ca), "kubernetes")
            r = await probe.check()
            assert r.ok, r.text
            await probe.close()

    run(main)


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_loopback(pki: ApiserverPki) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context(), host="::1") as srv:
            assert srv.url().startswith("https://[::1]:")
            r = await _check_with(srv, pki)
            assert r.ok, r.text

    run(main)


def test_keep_alive_one_handshake_for_five_checks(pki: ApiserverPki) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            probe = Probe(srv.url(), 2.0, str(pki.ca), "kubernetes")
            results = [await probe.check() for _ in range(5)]
            assert all(r.ok for r in results)
            assert [r.new_connection for r in results] == [True, False, False, False, False]
            assert probe.tls_handshakes == 1 and probe.tcp_connects == 1
            assert srv.connections == 1 and srv.requests == 5
            assert probe.connected
            await probe.close()

    run(main)


@pytest.mark.parametrize("abort", [False, True], ids=["close", "reset"])
def test_idle_close_is_noticed_without_a_check_and_next_check_reconnects(
    pki: ApiserverPki, abort: bool
) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            srv.idle_close, srv.idle_abort = 0.05, abort
            closes: list[str] = []
            probe = Probe(
                srv.url(), 2.0, str(pki.ca), "kubernetes", on_close=lambda: closes.append("x")
            )
            r = await probe.check()
            assert r.ok and probe.connected and not probe.peer_closed.is_set()
            await asyncio.wait_for(probe.peer_closed.wait(), 5.0)  # no check running
            assert closes == ["x"] and probe.peer_closes == 1 and not probe.connected
            srv.idle_close = None
            r2 = await probe.check()
            assert r2.ok and r2.new_connection  # a close is not a failure; it reconnects
            assert not probe.peer_closed.is_set()
            assert srv.connections == 2
            await probe.close()
            assert closes == ["x"]  # our own close does not call on_close

    run(main)


def test_connection_close_header_reconnects_without_failure_or_on_close(pki: ApiserverPki) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            srv.headers = [("Connection", "close")]
            closes: list[int] = []
            probe = Probe(
                srv.url(), 2.0, str(pki.ca), "kubernetes", on_close=lambda: closes.append(1)
            )
            rs = [await probe.check() for _ in range(3)]
            assert all(r.ok and r.new_connection for r in rs)
            assert srv.connections == 3 and closes == []
            await probe.close()

    run(main)


def test_hostname_mismatch_through_the_gate_teaches_once(pki: ApiserverPki) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            url = srv.url("localhost")
            probe = Probe(url, 2.0, str(pki.ca))
            gate = Gate(url, threshold=3, period=1.0)
            gate.start(0.0)
            steps = [gate.feed(await probe.check(), float(i)) for i in range(4)]
            advice = [s.advice for s in steps if s.advice is not None]
            assert len(advice) == 1
            assert advice[0].message.startswith(
                "the apiserver certificate names node1, kubernetes, kubernetes.default, "
                "kubernetes.default.svc, kubernetes.default.svc.cluster.local, "
                "192.0.2.11 but not localhost: set control_plane_health_check_server_name="
                "kubernetes, or use an address the certificate names"
            )
            assert not gate.announced and [s.action for s in steps] == [None] * 4
            await probe.close()

    run(main)


def test_close_racing_a_request_on_a_reused_connection_is_retried(pki: ApiserverPki) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            srv.mode = "drop_second"
            probe = Probe(srv.url(), 2.0, str(pki.ca), "kubernetes")
            assert (await probe.check()).ok
            r = await probe.check()  # server closes the reused connection without answering
            assert r.ok and r.new_connection, r.text
            assert srv.connections == 2
            await probe.close()

    run(main)


def test_close_without_answer_on_a_fresh_connection_is_reset() -> None:
    async def main() -> None:
        async def read_then_close(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await r.read(1)
            w.close()

        server = await asyncio.start_server(read_then_close, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        probe = Probe(f"http://127.0.0.1:{port}/livez", 2.0)
        r = await probe.check()
        assert not r.ok and r.error is ErrorKind.RESET and r.status is None
        assert "before the response" in r.text
        assert probe.tcp_connects == 1  # a fresh connection is not retried
        await probe.close()
        server.close()
        await server.wait_closed()

    run(main)


def test_body_larger_than_limit_is_bounded(pki: ApiserverPki) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            srv.mode = "stream"  # 200 with an endless chunked body
            probe = Probe(srv.url(), 5.0, str(pki.ca), "kubernetes")
            r = await probe.check()
            assert r.ok and r.status == 200  # the headers decide
            assert not probe.connected  # the rest is not read: the connection is dropped
            await asyncio.sleep(0.1)
            # the server was stopped by the close long before its 64 MiB
            assert srv.streamed < 16 * 1024 * 1024
            srv.mode = "ok"
            r2 = await probe.check()
            assert r2.ok and r2.new_connection
            await probe.close()

    run(main)


def test_big_error_body_is_quoted_briefly(pki: ApiserverPki) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            srv.mode, srv.status, srv.body = "status", 500, b"e" * (BODY_LIMIT * 2)
            r = await _check_with(srv, pki)
            assert r.status == 500 and len(r.text) < 400

    run(main)


def test_plain_http(pki: ApiserverPki) -> None:
    async def main() -> None:
        async with FakeApiserver(None) as srv:
            probe = Probe(srv.url(), 2.0)
            assert probe.verified_name == ""
            rs = [await probe.check() for _ in range(3)]
            assert all(r.ok for r in rs) and srv.connections == 1
            assert probe.tls_handshakes == 0 and probe.peer_certificate is None
            await probe.close()

    run(main)


def test_overlapping_checks_are_refused(pki: ApiserverPki) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            srv.mode, srv.delay = "slow", 0.2
            probe = Probe(srv.url(), 2.0, str(pki.ca), "kubernetes")
            first = asyncio.create_task(probe.check())
            await asyncio.sleep(0.05)
            with pytest.raises(RuntimeError):
                await probe.check()
            assert (await first).ok
            await probe.close()

    run(main)


def test_close_during_a_check_ends_it_at_once(pki: ApiserverPki) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            srv.mode = "hang"
            probe = Probe(srv.url(), 10.0, str(pki.ca), "kubernetes")
            task = asyncio.create_task(probe.check())
            await asyncio.sleep(0.1)
            await probe.close()
            r = await asyncio.wait_for(task, 2.0)  # well before the 10 s timeout
            assert not r.ok and r.error is ErrorKind.OTHER and "closed" in r.text

    run(main)


def test_cancelled_check_drops_the_connection(pki: ApiserverPki) -> None:
    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            probe = Probe(srv.url(), 2.0, str(pki.ca), "kubernetes")
            assert (await probe.check()).ok
            srv.mode = "hang"
            task = asyncio.create_task(probe.check())
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not probe.connected
            srv.mode = "ok"
            assert (await probe.check()).ok
            await probe.close()

    run(main)


@pytest.mark.parametrize("url", ["ftp://x/livez", "https:///livez", "localhost:6443/livez"])
def test_bad_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValueError):
        Probe(url, 1.0)


# ---------------------------------------------------------------------------- readiness reads
READYZ_SHUTDOWN = (
    b"".join(b"[+]poststarthook/check-number-%d ok\n" % i for i in range(40))
    + b"[-]shutdown failed: reason withheld\nreadyz check failed\n"
)  # the line well past the 240 bytes quoted in the text


@pytest.mark.parametrize(
    ("status", "body", "shutdown"),
    [
        (500, READYZ_SHUTDOWN, True),
        (
            500,
            b"[+]ping ok\n[-]informer-sync failed: reason withheld\nreadyz check failed\n",
            False,
        ),
        (429, b"[-]shutdown failed: reason withheld\n", False),  # only a 500 reports it
        (200, b"ok", False),
    ],
    ids=["shutdown", "informer-sync", "429", "ready"],
)
def test_readiness_read_on_the_same_keep_alive_connection(
    pki: ApiserverPki, status: int, body: bytes, shutdown: bool
) -> None:
    """check(url) reads /readyz between /livez checks on one connection; the shutdown line is
    found anywhere in a 500 body (docs/deployment.md, "Planned restarts and stops")."""

    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            srv.paths["/readyz"] = (status, body)
            probe = Probe(srv.url(), 2.0, str(pki.ca), "kubernetes")
            readyz = srv.url(path="/readyz")
            assert probe.same_origin(readyz)
            live1 = await probe.check()
            read = await probe.check(readyz)
            live2 = await probe.check()
            assert live1.ok and live2.ok
            assert read.status == status and read.ok is (status == 200)
            assert read.shutdown is shutdown
            if shutdown:
                assert read.text == "HTTP 500: [-]shutdown failed"
            assert srv.targets == [b"/livez", b"/readyz", b"/livez"]
            assert probe.tcp_connects == 1 and srv.connections == 1
            await probe.close()

    run(main)


def test_readiness_read_of_another_origin_is_refused(pki: ApiserverPki) -> None:
    async def main() -> None:
        probe = Probe("https://localhost:6443/livez", 2.0, str(pki.ca), "kubernetes")
        assert probe.same_origin("https://localhost/readyz") is False  # port 443
        assert probe.same_origin("http://localhost:6443/readyz") is False
        assert probe.same_origin("https://127.0.0.1:6443/readyz") is False
        assert probe.same_origin("https://localhost:6443/readyz?verbose") is True
        with pytest.raises(ValueError, match="scheme, host and port"):
            await probe.check("https://127.0.0.1:6443/readyz")

    run(main)


def test_server_text_reaches_the_result_as_one_printable_line(pki: ApiserverPki) -> None:
    """Fuzz finding (fuzz/regressions/probe/df1d8f66...): a 500 body's control characters went
    verbatim into the result text, which is logged -- a server could write terminal escape
    sequences or NULs into vipgate's log. They are escaped now."""

    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            srv.mode, srv.status = "status", 500
            srv.body = b"[-]etcd failed\x1b[31m red\x00\x01\x7f\xc2\x85 end"
            r = await _check_with(srv, pki)
            assert r.status == 500 and r.text.isprintable(), r.text
            assert "[-]etcd failed\\x1b[31m red\\x00\\x01\\x7f" in r.text, r.text
            assert r.text.endswith("end")

    run(main)


def test_a_decoded_certificate_interns_no_string_of_its_own(tmp_path: Path) -> None:
    """Every key of getpeercert()'s dict is a string the probe holds (_CERT_KEYS), so a handshake
    adds and removes nothing in the interpreter's table of interned strings (whose resizes,
    driven by such churn, doubled it in the long soak). The certificate carries every
    extension the decoder names: authority information access (OCSP, caIssuers), CRL
    distribution points, subject alternative names."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    now = datetime.datetime.now(datetime.UTC)
    uri = x509.UniformResourceIdentifier
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("kubernetes")]), False)
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP, uri("http://192.0.2.1/ocsp")
                    ),
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS, uri("http://192.0.2.1/ca")
                    ),
                ]
            ),
            False,
        )
        .add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([uri("http://192.0.2.1/crl")], None, None, None)]
            ),
            False,
        )
        .sign(key, hashes.SHA256())
    )
    pem = tmp_path / "cert.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    decoded = ssl._ssl._test_decode_cert(str(pem))  # type: ignore[attr-defined]  # getpeercert's decoder
    assert set(decoded) == set(probe_module._CERT_KEYS)  # every key the decoder has
    held = {id(k) for k in probe_module._CERT_KEYS}
    assert all(id(k) in held for k in decoded)
