"""The probe against hostile servers on loopback TLS: what the in-process fuzzer (fuzz/probe.py)
cannot do because it needs real time or a real TLS stack. Every check must end in a classified
failure within its deadline -- never an exception, never a wait past the timeout."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable

import pytest

from tests.unit.conftest import ApiserverPki
from vipgate.health.probe import BODY_LIMIT, ErrorKind, Probe, ProbeResult

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HANG_BOUND = 5.0  # a check that is not back by then hangs (the timeouts below are <= 0.5 s)


async def _read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def _serve_and_check(
    ctx: ssl.SSLContext | None, handler: Handler, pki: ApiserverPki, timeout: float = 0.5
) -> tuple[ProbeResult, float, Probe]:
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        t = asyncio.current_task()
        assert t is not None
        tasks.add(t)
        try:
            await handler(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if ctx else "http"
    probe = Probe(f"{scheme}://127.0.0.1:{port}/livez", timeout, str(pki.ca), "kubernetes")
    try:
        t0 = time.monotonic()
        r = await asyncio.wait_for(probe.check(), HANG_BOUND)
        elapsed = time.monotonic() - t0
    finally:
        await probe.close()
        server.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
    return r, elapsed, probe


def run(
    handler: Handler, pki: ApiserverPki, *, tls: bool = True, timeout: float = 0.5
) -> tuple[ProbeResult, float, Probe]:
    ctx = pki.server_context() if tls else None
    return asyncio.run(_serve_and_check(ctx, handler, pki, timeout))


@pytest.mark.parametrize(
    "status_line",
    [
        b"HTTP/1.1 2OO OK",
        b"HTTP/2 200",
        b"ICY 200 OK",
        b"HTTP/1.1 200",  # no reason phrase and no space: h11 accepts it? then it is a 200
        b"HTTP/1.1 99 Too small",
        b"HTTP/1.1 200 OK\x00",
        b"\x16\x03\x01\x02\x00",  # a TLS record where HTTP was expected
        b"",
    ],
)
def test_malformed_status_lines(pki: ApiserverPki, status_line: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(status_line + b"\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(1)

    r, _, _ = run(handler, pki)
    if status_line == b"HTTP/1.1 200":
        assert r.ok  # RFC 9112 4: the reason phrase may be absent (h11 accepts it)
    else:
        assert not r.ok and r.error is ErrorKind.PROTOCOL, r


@pytest.mark.parametrize(
    "header",
    [
        b"Content-Length: 2\r\nContent-Length: 3",
        b"Content-Length: -1",
        b"Transfer-Encoding: gzip",
        b"Bad Header: x",
        b" folded: x",
    ],
)
def test_malformed_headers(pki: ApiserverPki, header: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n" + header + b"\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(1)

    r, _, probe = run(handler, pki)
    assert not r.ok and r.error is ErrorKind.PROTOCOL, r
    assert not probe.connected


def test_huge_headers_are_refused_at_h11s_limit(pki: ApiserverPki) -> None:
    """Headers that never end: refused once they pass h11's 16 KiB bound, before the timeout
    (the probe does not wait for them, nor keep them)."""
    sent = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(1000):  # up to 8 MB of headers, never ended
            if writer.is_closing():  # the probe closed the connection
                break
            line = b"X-Junk: " + b"j" * 8000 + b"\r\n"
            writer.write(line)
            sent += len(line)
            await writer.drain()

    r, _, _ = run(handler, pki, timeout=2.0)
    assert not r.ok and r.error is ErrorKind.PROTOCOL, r
    assert "too long" in r.text, r  # h11: "Receive buffer too long"
    assert r.latency < 2.0


def test_a_header_a_byte_at_a_time_runs_into_the_timeout(pki: ApiserverPki) -> None:
    """Slowloris from the server side: the deadline covers the response headers."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        for b in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
            writer.write(bytes([b]))
            await writer.drain()
            await asyncio.sleep(0.05)

    r, elapsed, _ = run(handler, pki, timeout=0.3)
    assert not r.ok and r.error is ErrorKind.TIMEOUT, r
    assert "response headers" in r.text
    assert elapsed < HANG_BOUND


@pytest.mark.parametrize("status", [200, 500])
def test_a_body_without_end(pki: ApiserverPki, status: int) -> None:
    """Headers decide; the endless body is read up to the limit, then the connection goes."""
    sent = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await _read_request(reader)
        writer.write(b"HTTP/1.1 %d X\r\nTransfer-Encoding: chunked\r\n\r\n" % status)
        for _ in range(10_000):  # at most 160 MB
            if writer.is_closing():
                break
            writer.write(b"4000\r\n" + b"b" * 0x4000 + b"\r\n")
            sent += 0x4000
            await writer.drain()

    r, _, probe = run(handler, pki, timeout=2.0)
    assert r.ok == (status == 200) and r.status == status, r
    assert not probe.connected
    assert sent < 100 * BODY_LIMIT  # bounded by the limit and the kernel buffers


@pytest.mark.parametrize(
    "partial",
    [b"", b"HTTP/1.1 20", b"HTTP/1.1 200 OK\r\nContent-Le"],
    ids=["nothing", "status", "headers"],
)
def test_early_close(pki: ApiserverPki, partial: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(partial)
        await writer.drain()
        writer.close()

    r, _, _ = run(handler, pki)
    assert not r.ok and r.error is ErrorKind.RESET, r


def test_early_close_in_the_body_after_a_200_still_decides_by_the_headers(
    pki: ApiserverPki,
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nok")
        await writer.drain()
        writer.close()

    r, _, probe = run(handler, pki)
    assert r.ok, r
    assert not probe.connected  # a truncated body: not reusable


def test_tls_protocol_version_alert(pki: ApiserverPki) -> None:
    """The server only speaks TLS 1.1 (the client's minimum is 1.2): a handshake alert."""
    ctx = pki.server_context()
    with pytest.warns(DeprecationWarning):
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)

    async def main() -> tuple[ProbeResult, float, Probe]:
        return await _serve_and_check(ctx, handler, pki)

    try:
        r, _, _ = asyncio.run(main())
    except ssl.SSLError:
        pytest.skip("this OpenSSL cannot offer TLS 1.1 even on the server side")
    assert not r.ok and r.error in (ErrorKind.TLS_OTHER, ErrorKind.RESET), r


def test_tls_alert_after_the_handshake(pki: ApiserverPki) -> None:
    """TLS 1.3 with a client certificate required: the client's handshake completes, then the
    server's alert (certificate required) arrives where the response was expected."""
    ctx = pki.server_context()
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(pki.ca)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)

    r, _, probe = asyncio.run(_serve_and_check(ctx, handler, pki))
    assert not r.ok and r.error in (ErrorKind.RESET, ErrorKind.TLS_OTHER), r
    assert not probe.connected


def test_garbage_instead_of_a_tls_record_after_the_handshake(pki: ApiserverPki) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        sock = writer.get_extra_info("socket")
        # bypass TLS: raw bytes on the TCP socket under the TLS session
        sock.send(b"this is not a TLS record\r\n" * 4)
        await asyncio.sleep(1)

    r, _, probe = run(handler, pki)
    assert not r.ok and r.error in (ErrorKind.RESET, ErrorKind.TLS_OTHER), r
    assert not probe.connected
