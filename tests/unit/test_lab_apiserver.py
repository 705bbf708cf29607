"""The fake apiserver in-process on loopback: modes, counters, refuse/reopen, idle timeout."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from pathlib import Path

import pytest

from lab.apiserver import FakeApiserver, check_list, make_ssl_context, parse_listen
from lab.pki import Pki, make_pki


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
    assert check_list(False).endswith(
        b"[+]poststarthook/apiservice-registration-controller ok\nlivez check failed\n"
    )
    assert b"[-]etcd failed: reason withheld" in check_list(False)
    assert b"[-]" not in check_list(True)


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
