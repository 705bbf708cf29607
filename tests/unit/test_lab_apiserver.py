"""The fake apiserver in-process on loopback: modes, counters, refuse/reopen, idle timeout."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from pathlib import Path

import pytest

from lab.apiserver import (
    FakeApiserver,
    check_list,
    make_ssl_context,
    parse_listen,
    untrusted_switch,
)
from lab.pki import Pki, make_client_cert, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), [("node1", ["192.0.2.11"])])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client_ctx(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca_cert))


async def get(
    port: int, pki: Pki, path: str = "/livez"
) -> tuple[int, bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    r, w = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_ctx(pki), server_hostname="kubernetes"
    )
    status, body = await request(r, w, path)
    return status, body, r, w


async def request(
    r: asyncio.StreamReader, w: asyncio.StreamWriter, path: str = "/livez"
) -> tuple[int, bytes]:
    w.write(f"GET {path} HTTP/1.1\r\nHost: kubernetes\r\n\r\n".encode())
    head = await r.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(x.split(":")[1]) for x in lines if x.lower().startswith("content-length"))
    return status, await r.readexactly(length)


def test_parse_listen_and_check_list() -> None:
    assert parse_listen("0.0.0.0:6443") == ("0.0.0.0", 6443)
    assert parse_listen("[::]:6443") == ("::", 6443)
    assert parse_listen(":6443") == (None, 6443)
    assert check_list("livez", {"etcd"}).endswith(
        b"[+]poststarthook/apiservice-registration-controller ok\nlivez check failed\n"
    )
    assert b"[-]etcd failed: reason withheld" in check_list("livez", {"etcd"})
    assert b"[-]" not in check_list() and check_list().endswith(b"livez check passed\n")
    ready = check_list("readyz", {"shutdown"}).decode().splitlines()
    assert ready[:6] == [
        "[+]ping ok",
        "[+]log ok",
        "[+]etcd ok",
        "[+]etcd-readiness ok",
        "[+]informer-sync ok",
        "[+]poststarthook/start-apiserver-admission-initializer ok",
    ]
    assert ready[-2:] == ["[-]shutdown failed: reason withheld", "readyz check failed"]
    assert [x for x in ready if x.startswith("[-]")] == ["[-]shutdown failed: reason withheld"]
    assert b"shutdown" not in check_list("livez")


# These tests need an event loop; run them with asyncio.run to avoid a plugin dependency.
def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_modes_counters_keepalive(pki: Pki, tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port()
        nc = pki.node("node1")
        ctl = tmp_path / "ctl.sock"
        srv = FakeApiserver(
            [("127.0.0.1", port)], make_ssl_context(nc.cert, nc.key), ctl, idle_timeout=0.5
        )
        task = asyncio.create_task(srv.run())
        for _ in range(400):
            if ctl.exists() and srv.servers:
                break
            await asyncio.sleep(0.005)
        try:
            status, body, r, w = await get(port, pki)
            assert (status, body) == (200, b"ok")
            assert await request(r, w, "/nope") == (
                404,
                json.dumps(
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": "the server could not find the requested resource",
                        "reason": "NotFound",
                        "code": 404,
                    },
                    indent=2,
                ).encode()
                + b"\n",
            )
            await srv.set_mode("fail")
            s, b = await request(r, w)
            assert s == 500 and b.endswith(b"livez check failed\n")
            await srv.set_mode("unauthorized")
            s, b = await request(r, w)
            assert s == 401 and json.loads(b)["reason"] == "Unauthorized"
            await srv.set_mode("slow", 200)
            t0 = time.monotonic()
            assert await request(r, w) == (200, b"ok")
            assert time.monotonic() - t0 >= 0.2
            st = srv.stats()
            assert (st["handshakes"], st["requests"], st["responses"], st["open"]) == (1, 5, 5, 1)
            # idle keep-alive connection closed by the server after idle_timeout (0.5 s)
            assert await asyncio.wait_for(r.read(), 3) == b""
            w.close()
            # hang: TLS accepted, no answer
            await srv.set_mode("hang")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(get(port, pki), 0.5)
            assert srv.stats()["handshakes"] == 2
            # refuse: not listening; back to healthy: listening again on the same port
            await srv.set_mode("refuse")
            with pytest.raises(ConnectionRefusedError):
                await get(port, pki)
            await srv.set_mode("healthy")
            status, body, r, w = await get(port, pki)
            assert (status, body) == (200, b"ok")
            # refuse aborts open connections too (as if the process died)
            await srv.set_mode("refuse")
            assert await asyncio.wait_for(r.read(), 2) == b""
            w.close()
            with pytest.raises(ValueError):
                await srv.set_mode("bogus")
        finally:
            srv.stopped.set()
            await asyncio.wait_for(task, 5)

    run(main())


def test_control_socket_protocol(pki: Pki, tmp_path: Path) -> None:
    from lab.apiserver import ApiserverControl

    async def main() -> None:
        port = free_port()
        nc = pki.node("node1")
        ctl = tmp_path / "ctl.sock"
        srv = FakeApiserver([("127.0.0.1", port)], make_ssl_context(nc.cert, nc.key), ctl)
        task = asyncio.create_task(srv.run())
        for _ in range(400):
            if ctl.exists():
                break
            await asyncio.sleep(0.005)
        c = ApiserverControl(ctl)
        try:
            before = time.monotonic()
            t = await asyncio.to_thread(c.set_mode, "refuse")
            assert before <= t <= time.monotonic()
            assert srv.mode == "refuse" and not srv.servers
            st = await asyncio.to_thread(c.stats)
            assert st.mode == "refuse" and not st.listening
            await asyncio.to_thread(c.set_mode, "slow", 50)
            assert srv.delay_ms == 50 and srv.servers
            with pytest.raises(RuntimeError, match="unknown mode"):
                await asyncio.to_thread(c.set_mode, "bogus")
            assert await asyncio.to_thread(c.ping)
        finally:
            srv.stopped.set()
            await asyncio.wait_for(task, 5)

    run(main())


class Server:
    """A FakeApiserver on a loopback port, run as a task in the current loop."""

    def __init__(self, pki: Pki, tmp_path: Path, **kw: object) -> None:
        nc = pki.node("node1")
        self.port = free_port()
        self.ctl = tmp_path / "ctl.sock"
        self.srv = FakeApiserver(
            [("127.0.0.1", self.port)],
            make_ssl_context(nc.cert, nc.key),
            self.ctl,
            **kw,  # type: ignore[arg-type]
        )

    async def __aenter__(self) -> FakeApiserver:
        self.task = asyncio.create_task(self.srv.run())
        for _ in range(400):
            if self.ctl.exists() and self.srv.servers:
                break
            await asyncio.sleep(0.005)
        return self.srv

    async def __aexit__(self, *exc: object) -> None:
        self.srv.stopped.set()
        await asyncio.wait_for(self.task, 5)


async def response(
    r: asyncio.StreamReader, w: asyncio.StreamWriter, path: str
) -> tuple[int, dict[str, str], bytes]:
    w.write(f"GET {path} HTTP/1.1\r\nHost: kubernetes\r\n\r\n".encode())
    head = (await r.readuntil(b"\r\n\r\n")).decode().split("\r\n")
    hdrs = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in head[1:] if x)}
    return int(head[0].split()[1]), hdrs, await r.readexactly(int(hdrs["content-length"]))


async def connect(port: int, pki: Pki) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_ctx(pki), server_hostname="kubernetes"
    )


def test_per_check_paths_forbidden_version_and_health_modes(pki: Pki, tmp_path: Path) -> None:
    async def main() -> None:
        s = Server(pki, tmp_path)
        async with s as srv:
            r, w = await connect(s.port, pki)
            for path in ("/readyz/shutdown", "/livez/etcd", "/healthz/ping"):
                code, _, body = await response(r, w, path)
                assert code == 403, path
                assert json.loads(body)["message"] == (
                    f'forbidden: User "system:anonymous" cannot get path "{path}"'
                )
            code, _, body = await response(r, w, "/version")
            assert code == 200 and json.loads(body)["major"] == "1"
            assert (await response(r, w, "/readyz"))[::2] == (200, b"ok")
            await srv.set_mode("etcd", 100)
            t0 = time.monotonic()
            code, _, body = await response(r, w, "/livez")
            assert time.monotonic() - t0 >= 0.1  # the etcd check blocks
            assert code == 500 and body == check_list("livez", {"etcd"})
            assert b"[-]etcd failed: reason withheld" in body
            assert body.endswith(b"livez check failed\n")
            code, _, body = await response(r, w, "/readyz")
            assert code == 500 and body == check_list("readyz", {"etcd", "etcd-readiness"})
            await srv.set_mode("unready")
            assert (await response(r, w, "/livez"))[::2] == (200, b"ok")
            code, _, body = await response(r, w, "/readyz")
            assert code == 500 and b"[-]informer-sync failed" in body and b"shutdown f" not in body
            await srv.set_mode("unauthorized")
            assert (await response(r, w, "/version"))[0] == 401
            st = srv.stats()
            assert st["statuses"] == {"200": 3, "401": 1, "403": 3, "500": 3}
            assert st["paths"] == {
                "/healthz/ping": 1,
                "/livez": 2,
                "/livez/etcd": 1,
                "/readyz": 3,
                "/readyz/shutdown": 1,
                "/version": 2,
            }
            w.close()

    run(main())


def test_shutdown_with_delay_readyz_fails_then_fin_then_refused(pki: Pki, tmp_path: Path) -> None:
    async def main() -> None:
        s = Server(pki, tmp_path)
        async with s as srv:
            r, w = await connect(s.port, pki)  # kept alive across the whole sequence
            assert (await response(r, w, "/readyz"))[::2] == (200, b"ok")
            t0 = time.monotonic()
            await srv.set_mode("shutdown", shutdown_delay_ms=400)
            for rr, ww in ((r, w), await connect(s.port, pki)):  # kept-alive and new alike
                code, _, body = await response(rr, ww, "/readyz")
                assert code == 500 and body == check_list("readyz", {"shutdown"})
                assert (await response(rr, ww, "/livez"))[::2] == (200, b"ok")
                assert (await response(rr, ww, "/healthz"))[::2] == (200, b"ok")
                assert (await response(rr, ww, "/version"))[0] == 200
            assert srv.stats()["shutdown_phase"] == "delay" and srv.servers
            # At D the idle keep-alive connection is closed gracefully (EOF, not a reset)...
            assert await asyncio.wait_for(r.read(), 3) == b""
            waited = time.monotonic() - t0
            assert waited >= 0.4, waited
            st = srv.stats()
            assert st["shutdown_phase"] == "stopped" and st["mode"] == "refuse"
            assert st["stopped_t"] is not None and st["stopped_t"] - t0 >= 0.4
            # ...and new connections are refused.
            with pytest.raises(ConnectionRefusedError):
                await connect(s.port, pki)
            w.close()
            # "healthy" is the restarted apiserver.
            before = time.monotonic()
            await srv.set_mode("healthy")
            assert before <= srv.stats()["listen_t"] <= time.monotonic()
            r, w = await connect(s.port, pki)
            assert (await response(r, w, "/readyz"))[::2] == (200, b"ok")
            w.close()

    run(main())


def test_shutdown_with_retry_after_429_then_refused(pki: Pki, tmp_path: Path) -> None:
    async def main() -> None:
        s = Server(pki, tmp_path)
        async with s as srv:
            r, w = await connect(s.port, pki)
            await srv.set_mode("shutdown", shutdown_delay_ms=100, retry_after=True, drain_ms=600)
            assert (await response(r, w, "/version"))[0] == 200  # still inside the delay
            await asyncio.sleep(0.25)
            assert srv.stats()["shutdown_phase"] == "retry-after"
            # the health paths are exempt: /livez 200, /readyz still reports the shutdown
            assert (await response(r, w, "/livez"))[::2] == (200, b"ok")
            code, _, body = await response(r, w, "/readyz")
            assert code == 500 and b"[-]shutdown failed: reason withheld" in body
            # ordinary requests, on new and kept-alive connections: 429 and the close
            r2, w2 = await connect(s.port, pki)
            for rr, ww in ((r2, w2), (r, w)):
                code, hdrs, body = await response(rr, ww, "/version")
                assert (code, hdrs["retry-after"], hdrs["connection"]) == (429, "5", "close")
                assert body == b"The apiserver is shutting down, please try again later.\n"
                assert await asyncio.wait_for(rr.read(), 2) == b""
                ww.close()
            st = srv.stats()
            assert st["statuses"]["429"] == 2 and st["retry_after_t"] is not None
            await asyncio.sleep(0.6)
            assert srv.stats()["shutdown_phase"] == "stopped"
            with pytest.raises(ConnectionRefusedError):
                await connect(s.port, pki)

    run(main())


def test_shutdown_delay_zero_and_cancel(pki: Pki, tmp_path: Path) -> None:
    async def main() -> None:
        s = Server(pki, tmp_path)
        async with s as srv:
            r, w = await connect(s.port, pki)
            await srv.set_mode("shutdown")  # kubeadm's default: D = 0
            assert await asyncio.wait_for(r.read(), 2) == b""
            w.close()
            with pytest.raises(ConnectionRefusedError):
                await connect(s.port, pki)
            # a mode change during the delay cancels the sequence
            await srv.set_mode("shutdown", shutdown_delay_ms=200)
            await srv.set_mode("healthy")
            await asyncio.sleep(0.4)
            assert srv.mode == "healthy" and srv.servers and srv.stats()["shutdown_phase"] == ""
            with pytest.raises(ValueError, match="shutdown_delay_ms"):
                await srv.set_mode("shutdown", shutdown_delay_ms=-1)

    run(main())


def test_client_ca_requires_a_client_certificate_of_that_ca(pki: Pki, tmp_path: Path) -> None:
    """--client-ca: anonymous auth off with client-certificate auth (RKE2's health paths)."""
    cert, key = make_client_cert(pki, "vipgate-client", "vipgate")
    other_cert, other_key = make_client_cert(pki, "stranger", "stranger", other_ca=True)

    async def get_with(client: tuple[Path, Path] | None) -> int:
        ctx = client_ctx(pki)
        if client is not None:
            ctx.load_cert_chain(*client)
        r, w = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="kubernetes"
        )
        try:
            return (await request(r, w))[0]
        finally:
            w.close()

    async def main() -> None:
        nc = pki.node("node1")
        ssl_ctx = make_ssl_context(nc.cert, nc.key, pki.ca_cert)
        srv = FakeApiserver([("127.0.0.1", port)], ssl_ctx, tmp_path / "c.sock", client_auth=True)
        task = asyncio.create_task(srv.run())
        for _ in range(400):
            if srv.servers:
                break
            await asyncio.sleep(0.005)
        try:
            assert await get_with(None) == 401
            assert await get_with((cert, key)) == 200
            await srv.set_mode("fail")
            assert await get_with((cert, key)) == 500  # authenticated: the mode answers
            assert await get_with(None) == 401
            # Another CA's certificate fails the TLS handshake (the server's alert reaches a
            # TLS 1.3 client on its first read).
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                await get_with((other_cert, other_key))
        finally:
            srv.stopped.set()
            await asyncio.wait_for(task, 5)

    port = free_port()
    run(main())


def test_untrusted_presents_a_certificate_of_another_ca(pki: Pki, tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port()
        nc = pki.node("node1")
        ctl = tmp_path / "ctl.sock"
        srv = FakeApiserver([("127.0.0.1", port)], make_ssl_context(nc.cert, nc.key), ctl)
        untrusted_switch(srv, tmp_path, "node1")
        task = asyncio.create_task(srv.run())
        for _ in range(400):
            if ctl.exists() and srv.servers:
                break
            await asyncio.sleep(0.005)
        try:
            status, _, r, w = await get(port, pki)
            assert status == 200
            await srv.set_mode("untrusted")  # open connections closed: the next check handshakes
            assert await asyncio.wait_for(r.read(), 2) == b""
            w.close()
            with pytest.raises(ssl.SSLCertVerificationError):
                await get(port, pki)
            await srv.set_mode("healthy")
            status, _, r, w = await get(port, pki)
            assert status == 200
            w.close()
        finally:
            srv.stopped.set()
            await asyncio.wait_for(task, 5)

    asyncio.run(main())


def test_startup_lengths_parse_and_draw() -> None:
    import random

    from lab.apiserver import Startup

    s = Startup.from_ms("500-1500", 1000)
    assert s == Startup((0.5, 1.5), (1.0, 1.0))
    assert Startup.from_ms([200, 300], "250") == Startup((0.2, 0.3), (0.25, 0.25))
    assert s.to_msg() == {"forbidden_ms": [500, 1500], "failing_ms": [1000, 1000]}
    assert s.to_args() == [
        "--startup",
        "--startup-forbidden-ms",
        "500-1500",
        "--startup-failing-ms",
        "1000-1000",
    ]
    forb, fail = Startup().draw(random.Random(1))
    assert 0.5 <= forb <= 1.5 and 0.8 <= fail <= 1.2  # the measured lengths are the defaults
    with pytest.raises(ValueError):
        Startup((1.0, 0.5))
    with pytest.raises(ValueError):
        Startup.from_ms({"x": 1}, 1)


def test_startup_forbidden_then_failing_hooks_then_healthy(pki: Pki, tmp_path: Path) -> None:
    from lab.apiserver import STARTUP_HOOKS, Startup

    async def main() -> None:
        s = Server(pki, tmp_path, startup=Startup((0.3, 0.3), (0.3, 0.3)))
        async with s as srv:
            assert srv.mode == "startup" and srv.startup_phase == "forbidden"
            assert srv.startup_lengths == (0.3, 0.3)
            r, w = await connect(s.port, pki)
            for path in ("/livez", "/readyz", "/version"):
                code, hdrs, body = await response(r, w, path)
                assert (code, hdrs["content-type"]) == (403, "application/json"), path
                assert json.loads(body) == {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": f'forbidden: User "system:anonymous" cannot get path "{path}"',
                    "reason": "Forbidden",
                    "code": 403,
                }
            while srv.startup_phase == "forbidden":
                await asyncio.sleep(0.01)
            code, _, body = await response(r, w, "/livez")
            assert code == 500 and body == check_list("livez", STARTUP_HOOKS)
            failed = [x for x in body.decode().splitlines() if x.startswith("[-]")]
            assert failed == [
                "[-]poststarthook/rbac/bootstrap-roles failed: reason withheld",
                "[-]poststarthook/scheduling/bootstrap-system-priority-classes failed: "
                "reason withheld",
            ]
            assert b"[+]etcd ok\n" in body and body.endswith(b"livez check failed\n")
            code, _, body = await response(r, w, "/readyz")
            assert code == 500 and body == check_list("readyz", STARTUP_HOOKS)
            assert (await response(r, w, "/version"))[0] == 200
            assert (await response(r, w, "/readyz/shutdown"))[0] == 403
            assert srv.first_200_t == {}
            while srv.startup_phase:
                await asyncio.sleep(0.01)
            st = srv.stats()
            assert st["mode"] == "healthy" and st["startup_done_t"] is not None
            assert st["startup_t"] < st["startup_failing_t"] < st["startup_done_t"]
            assert st["startup_failing_t"] - st["startup_t"] >= 0.3
            assert st["startup_done_t"] - st["startup_failing_t"] >= 0.3
            before = time.monotonic()
            assert (await response(r, w, "/livez"))[::2] == (200, b"ok")
            first = srv.stats()["first_200_t"]["/livez"]
            assert st["startup_done_t"] <= before <= first <= time.monotonic()
            assert (await response(r, w, "/livez"))[::2] == (200, b"ok")
            assert srv.stats()["first_200_t"]["/livez"] == first  # the first one stays
            w.close()

    run(main())


def test_startup_switch_reopens_refused_listeners_and_a_mode_change_ends_it(
    pki: Pki, tmp_path: Path
) -> None:
    from lab.apiserver import ApiserverControl, Startup

    async def main() -> None:
        s = Server(pki, tmp_path)
        async with s as srv:
            c = ApiserverControl(s.ctl)
            await srv.set_mode("refuse")
            before = time.monotonic()
            t = await asyncio.to_thread(c.startup, Startup((0.1, 0.2), (0.1, 0.1)))
            assert srv.servers and srv.mode == "startup"
            st = await asyncio.to_thread(c.stats)
            assert st.startup_phase == "forbidden" and st.startup_lengths is not None
            assert before <= st.startup_t <= t  # type: ignore[operator]
            forb, fail = st.startup_lengths
            assert 0.1 <= forb <= 0.2 and fail == pytest.approx(0.1)
            r, w = await connect(s.port, pki)
            assert (await response(r, w, "/livez"))[0] == 403
            await srv.set_mode("fail")  # ends the sequence
            await asyncio.sleep(0.4)  # past its end, had it gone on
            assert srv.mode == "fail" and srv.startup_phase == ""
            assert srv.stats()["startup_done_t"] is None
            await srv.set_mode("healthy")
            assert (await response(r, w, "/livez"))[::2] == (200, b"ok")
            assert srv.stats()["first_200_t"].keys() == {"/livez"}
            await asyncio.to_thread(c.reset)
            assert srv.stats()["first_200_t"] == {}
            w.close()

    run(main())


def test_etcd_outage_livez_fails_after_up_to_the_timeout_readyz_unaffected(
    pki: Pki, tmp_path: Path
) -> None:
    from lab.apiserver import ETCD_CHECK_TIMEOUT_MS

    async def main() -> None:
        s = Server(pki, tmp_path)
        async with s as srv:
            r, w = await connect(s.port, pki)
            await srv.set_mode("etcd-outage")
            assert srv.delay_ms == ETCD_CHECK_TIMEOUT_MS == 2000
            await srv.set_mode("etcd-outage", 200)
            took = []
            for _ in range(5):
                t0 = time.monotonic()
                code, _, body = await response(r, w, "/livez")
                took.append(time.monotonic() - t0)
                assert code == 500 and body == check_list("livez", {"etcd"})
                failed = [x for x in body.decode().splitlines() if x.startswith("[-]")]
                assert failed == ["[-]etcd failed: reason withheld"]
            assert max(took) < 0.2 + 0.1, took  # up to delay_ms, drawn each time
            code, _, body = await response(r, w, "/healthz")
            assert code == 500 and body == check_list("healthz", {"etcd"})
            assert (await response(r, w, "/readyz"))[::2] == (200, b"ok")
            assert (await response(r, w, "/version"))[0] == 200
            w.close()

    run(main())
