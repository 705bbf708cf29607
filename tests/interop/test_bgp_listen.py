"""The routers' connections to vipgate: the listener over loopback, then real routers in the lab.

Loopback part: vipgate.bgp.listener alone (which sources it accepts, MD5 on the listening
socket, a port already taken, a flood of connections from other addresses), then the speaker
taking a router's connection and resolving collisions (RFC 4271 6.8). Lab part: BIRD, FRR and
GoBGP restarting, passive routers, both sides dialing at once, a connection from a node that is
not a peer; the recovery floors they show are in docs/routers.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
import logging
import queue
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network, ip_address
from subprocess import PIPE
from typing import Any

import pytest

from lab.netns import Lab
from lab.routers import Router
from lab.silence import silence, unsilence
from lab.speaker import SpeakerProc, unanswered_probes
from lab.topology import ROUTER_AS, ROUTER_IP4, VIP4, Node, build_topology
from lab.wait import wait_for
from vipgate.bgp import fsm, wire
from vipgate.bgp.listener import Listener, source_towards
from vipgate.bgp.peer import PROBE_IDLE, PROBE_INTERVAL, TCP_MD5SIG, md5sig
from vipgate.bgp.speaker import PeerSettings, Speaker, SpeakerSettings
from vipgate.bgp.wire import (
    FourOctetAsCapability,
    Keepalive,
    MultiprotocolCapability,
    Notification,
    Open,
    SessionContext,
)

pytestmark = pytest.mark.lab

LOCAL = IPv4Address("127.0.0.1")
PEER = IPv4Address("127.0.0.3")
STRANGER = IPv4Address("127.0.0.2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((str(LOCAL), 0))
        return int(s.getsockname()[1])


async def dial(
    port: int,
    source: IPv4Address,
    dest: IPv4Address = LOCAL,
    password: str = "",
    timeout: float = 2.0,
) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    sock.bind((str(source), 0))
    if password:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, md5sig(dest, password))
    try:
        await asyncio.wait_for(
            asyncio.get_running_loop().sock_connect(sock, (str(dest), port)), timeout
        )
    except BaseException:
        sock.close()
        raise
    return sock


async def reads(sock: socket.socket, timeout: float = 1.0) -> bytes | OSError:
    """What the other side sends before it closes: bytes, or the error (a reset)."""
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout)
    except OSError as exc:
        return exc


class Accepted:
    def __init__(self) -> None:
        self.socks: list[socket.socket] = []
        self.event = asyncio.Event()

    def __call__(self, sock: socket.socket) -> None:
        self.socks.append(sock)
        self.event.set()

    def close(self) -> None:
        for s in self.socks:
            s.close()


@contextlib.asynccontextmanager
async def listening(
    port: int, password: str = "", **kw: object
) -> AsyncIterator[tuple[Listener, Accepted, list[object]]]:
    refused: list[object] = []
    lst = Listener(port, on_refused=refused.append, **kw)  # type: ignore[arg-type]
    acc = Accepted()
    lst.add(PEER, acc, password, LOCAL)
    lst.start()
    try:
        yield lst, acc, refused
    finally:
        lst.close()
        acc.close()


def run(coro: Callable[[], object]) -> None:
    asyncio.run(coro())  # type: ignore[arg-type]


def test_source_towards_is_the_kernels_choice() -> None:
    assert source_towards(LOCAL) == LOCAL
    assert source_towards(ip_address("::1")) == ip_address("::1")
    assert source_towards(ip_address("192.0.2.200"), "vipgate-no-such-if") is None


def test_a_peers_connection_is_handed_over() -> None:
    async def main() -> None:
        port = free_port()
        async with listening(port) as (lst, acc, refused):
            assert lst.listening == {LOCAL}
            client = await dial(port, PEER)
            await asyncio.wait_for(acc.event.wait(), 2.0)
            (sock,) = acc.socks
            assert ip_address(sock.getpeername()[0]) == PEER
            assert not sock.getblocking()
            client.sendall(b"x")
            await asyncio.sleep(0.05)
            assert sock.recv(10) == b"x"  # the socket is the peer's, untouched
            client.close()
            assert lst.accepted == 1 and lst.refused == 0 and refused == []

    run(main)


def test_only_on_the_local_address() -> None:
    async def main() -> None:
        port = free_port()
        async with listening(port):
            with pytest.raises(ConnectionRefusedError):
                await dial(port, PEER, dest=IPv4Address("127.0.0.5"))

    run(main)


def test_a_stranger_gets_no_byte_and_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "vipgate.bgp")

    async def main() -> None:
        port = free_port()
        async with listening(port) as (lst, acc, refused):
            for _ in range(3):
                try:
                    client = await dial(port, STRANGER)
                except ConnectionResetError:
                    continue  # reset before the connect completed here: no byte either
                with contextlib.suppress(OSError):
                    client.sendall(b"\xff" * 19)  # never read
                got = await reads(client)
                client.close()
                assert isinstance(got, ConnectionResetError), got  # a reset, not a byte
            assert lst.refused == 3 and refused == [STRANGER] * 3 and acc.socks == []
        logged = [r for r in caplog.records if "not a configured peer" in r.getMessage()]
        assert len(logged) == 1 and "127.0.0.2" in logged[0].getMessage()

    run(main)


def test_md5_key_on_the_listening_socket() -> None:
    async def main() -> None:
        port = free_port()
        async with listening(port, password="lab-md5-Secret") as (lst, acc, _):
            with pytest.raises(TimeoutError):  # the kernel drops the unsigned SYN
                await dial(port, PEER, timeout=1.0)
            with pytest.raises(TimeoutError):
                await dial(port, PEER, password="wrong", timeout=1.0)
            assert acc.socks == [] and lst.refused == 0
            client = await dial(port, PEER, password="lab-md5-Secret")
            await asyncio.wait_for(acc.event.wait(), 2.0)
            client.close()

    run(main)


def test_port_taken_is_logged_once_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "vipgate.bgp")

    async def main() -> None:
        port = free_port()
        blocker = socket.socket()
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind((str(LOCAL), port))
        blocker.listen()
        async with listening(port, retry_interval=0.1) as (lst, acc, _):
            assert lst.listening == frozenset()  # started all the same
            await asyncio.sleep(0.5)  # several retries
            taken = [r for r in caplog.records if "cannot listen" in r.getMessage()]
            assert len(taken) == 1, taken
            assert "another BGP daemon" in taken[0].getMessage()
            assert taken[0].levelno == logging.WARNING
            blocker.close()
            await asyncio.sleep(0.3)
            assert lst.listening == {LOCAL}
            client = await dial(port, PEER)
            await asyncio.wait_for(acc.event.wait(), 2.0)
            client.close()

    run(main)


def test_a_flood_of_strangers_leaves_the_loop_on_time() -> None:
    """1,000 connections from another address in about a second: all reset, never read; the
    loop's timers stay on time and the peer's connection still gets through."""

    async def main() -> None:
        port = free_port()
        loop = asyncio.get_running_loop()
        lateness: list[float] = []

        async def ticker() -> None:
            while True:
                t = loop.time()
                await asyncio.sleep(0.01)
                lateness.append(loop.time() - t - 0.01)

        async with listening(port) as (lst, acc, _):
            tick = asyncio.create_task(ticker())
            t0 = time.monotonic()
            socks: list[socket.socket] = []
            for i in range(1000):
                s = socket.socket()
                s.setblocking(False)
                s.bind((str(STRANGER), 0))
                with contextlib.suppress(BlockingIOError):
                    s.connect_ex((str(LOCAL), port))
                socks.append(s)
                if i % 50 == 49:
                    await asyncio.sleep(0.04)
            client = await dial(port, PEER)
            await asyncio.wait_for(acc.event.wait(), 2.0)
            for _ in range(100):
                if lst.refused >= 1000:
                    break
                await asyncio.sleep(0.02)
            elapsed = time.monotonic() - t0
            tick.cancel()
            for s in socks:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                assert err in (0, errno.ECONNRESET), err
                s.close()
            client.close()
            assert lst.refused == 1000 and len(acc.socks) == 1
            assert elapsed < 3.0, elapsed
            assert max(lateness) < 0.1, max(lateness)

    run(main)


# ------------------------------------------------------- the speaker takes the router's connection

VIP = IPv4Network("203.0.113.100/32")


class FakeRouter:
    """One BGP connection of a router: sends its OPEN, answers ours, records what it gets."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.messages: list[wire.Message] = []
        self.decoder = wire.Decoder(SessionContext(True))
        self.opened = False  # our OPEN sent (a KEEPALIVE may follow only after it)
        self.open_received = False
        self.hold_keepalive = False  # True: the answer waits for send_keepalive()

    @classmethod
    async def dial(cls, port: int, router_id: str = "192.0.2.1") -> FakeRouter:
        r, w = await asyncio.open_connection(str(LOCAL), port, local_addr=(str(PEER), 0))
        router = cls(r, w)
        router.send_open(router_id)
        return router

    def send_open(self, router_id: str) -> None:
        caps = (MultiprotocolCapability(1, 1), FourOctetAsCapability(ROUTER_AS))
        self.writer.write(wire.encode(Open(ROUTER_AS, 90, IPv4Address(router_id), caps)))
        self.opened = True
        if self.open_received and not self.hold_keepalive:
            self.writer.write(wire.encode(Keepalive()))

    def send_keepalive(self) -> None:
        self.hold_keepalive = False
        self.writer.write(wire.encode(Keepalive()))

    async def run(self) -> None:
        """Read until the connection ends; answer the OPEN with a KEEPALIVE."""
        while data := await self.reader.read(65536):
            self.decoder.feed(data)
            while True:
                try:
                    m = self.decoder.next_message()
                except wire.BgpError as err:  # NEXT_HOP 127.0.0.1: an UPDATE all the same
                    assert err.update is not None, err
                    m = err.update
                if m is None:
                    break
                self.messages.append(m)
                if isinstance(m, Open):
                    self.open_received = True
                    if self.opened and not self.hold_keepalive:
                        self.writer.write(wire.encode(Keepalive()))

    def got_update(self) -> bool:
        return any(isinstance(m, wire.Update) for m in self.messages)

    def notifications(self) -> list[Notification]:
        return [m for m in self.messages if isinstance(m, Notification)]


async def until(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def speaker_for(port: int, peer_port: int, router_id: str = "192.0.2.11") -> Speaker:
    return Speaker(
        SpeakerSettings(65000, IPv4Address(router_id), source_ip=LOCAL),
        [PeerSettings(PEER, ROUTER_AS, port=peer_port)],
        listen_port=port,
        connect_timeout=1.0,
    )


def test_speaker_session_on_the_routers_connection() -> None:
    async def main() -> None:
        port, closed = free_port(), free_port()  # nothing listens on `closed`: dials fail
        sp = speaker_for(port, closed)
        sp.announce(VIP)
        await sp.start()
        t0 = time.monotonic()
        router = await FakeRouter.dial(port)
        reading = asyncio.create_task(router.run())
        while not router.got_update() and time.monotonic() - t0 < 2.0:
            await asyncio.sleep(0.01)
        assert router.got_update() and sp.peers[0].established
        assert time.monotonic() - t0 < 1.0
        assert sp.peers[0].session.conn is fsm.Conn.PASSIVE
        await sp.close("test done", 1.0)
        await asyncio.wait_for(reading, 2.0)
        (cease,) = router.notifications()
        assert (cease.code, cease.subcode) == (6, 2)

    run(main)


def test_tcp_keepalive_on_the_routers_connection_until_established() -> None:
    """src/vipgate/bgp/peer.py: the router's connection is probed (TCP keepalive) until the
    session on it is Established, then no longer."""

    async def main() -> None:
        port = free_port()
        sp = speaker_for(port, free_port())
        await sp.start()
        router = await FakeRouter.dial(port)
        router.hold_keepalive = True
        reading = asyncio.create_task(router.run())
        p = sp.peers[0]
        await until(lambda: p.state == "OpenConfirm")
        assert p._p_sock is not None
        assert p._p_sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert p._p_sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == PROBE_IDLE
        router.send_keepalive()
        await until(lambda: p.established)
        assert p._p_sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        await sp.close("test done", 1.0)
        await asyncio.wait_for(reading, 2.0)

    run(main)


@pytest.mark.parametrize("open_first", [False, True])
@pytest.mark.parametrize(("router_id", "kept"), [("192.0.2.2", "ours"), ("198.51.100.1", "theirs")])
def test_speaker_both_sides_dialing_one_session(
    router_id: str, kept: str, open_first: bool
) -> None:
    """Our connection reaches the router, and the router dials us before either OPEN arrived
    (or, `open_first`, after its OPEN on ours): one connection is closed with Cease/7, the one
    opened by the higher BGP identifier (ours: 192.0.2.11) stays."""

    async def main() -> None:
        port = free_port()
        accepted: list[FakeRouter] = []
        tasks: list[asyncio.Task[None]] = []

        def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            accepted.append(FakeRouter(r, w))

        server = await asyncio.start_server(on_conn, str(PEER), 0)
        peer_port = server.sockets[0].getsockname()[1]
        sp = speaker_for(port, peer_port)
        sp.announce(VIP)
        await sp.start()
        await until(lambda: bool(accepted) and sp.peers[0].state == "OpenSent")
        (ours,) = accepted
        tasks.append(asyncio.create_task(ours.run()))
        if open_first:
            ours.hold_keepalive = True
            ours.send_open(router_id)
            await until(lambda: sp.peers[0].state == "OpenConfirm")
        dialed = await FakeRouter.dial(port, router_id)
        tasks.append(asyncio.create_task(dialed.run()))
        if open_first:
            await asyncio.sleep(0.1)  # the dialed connection is decided on arrival
            ours.send_keepalive()
        else:
            ours.send_open(router_id)
        conns = (ours, dialed)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:
            await asyncio.sleep(0.02)
            if sum(r.got_update() for r in conns) == 1 and any(r.notifications() for r in conns):
                break
        survivor, loser = (ours, dialed) if kept == "ours" else (dialed, ours)
        assert survivor.got_update() and not survivor.notifications()
        assert [(n.code, n.subcode) for n in loser.notifications()] == [(6, 7)]
        assert sp.peers[0].established
        await asyncio.sleep(0.3)  # and it stays so: no second session, no Cease loop
        assert sp.peers[0].established and not survivor.notifications()
        await sp.close("test done", 1.0)
        server.close()
        for t in tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(t, 2.0)

    run(main)


# ------------------------------------------------------------------ real routers in the lab


@contextlib.contextmanager
def lab_speaker(lab: Lab, node: Node, peers: Sequence[str], **kw: Any) -> Iterator[SpeakerProc]:
    sp = SpeakerProc(lab, node, peers, **kw)
    try:
        yield sp
    finally:
        if sp.proc.poll() is None:
            sp.lab.stop(sp.proc, 3.0)


LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ (.*)$", re.M)


def log_times(sp: SpeakerProc, pattern: str) -> list[float]:
    """Wall-clock times of the speaker's log lines matching `pattern`."""
    return [
        datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for t, text in LOG_LINE.findall(sp.log())
        if re.search(pattern, text)
    ]


def vip_back_at(router: Router, hops: set[str], timeout: float = 30.0) -> float:
    """Wall-clock time at which the router's multipath next hops of the VIP are `hops`."""
    deadline = time.monotonic() + timeout
    while router.multipath_next_hops(VIP4) != hops:
        assert time.monotonic() < deadline, f"VIP not back: {router.describe()}"
        time.sleep(0.02)
    return time.time()


PEER4 = f"{ROUTER_IP4}:{ROUTER_AS}::false"


@pytest.mark.parametrize("kind", ["bird", "frr"])
def test_passive_router_established_within_a_second(kind: str) -> None:
    """BIRD `passive on`, FRR `neighbor X passive`: vipgate's dial brings the session up."""
    with Lab() as lab:
        topo = build_topology(lab, 1, kind, client=False, neighbor_kwargs={"passive": True})
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        with lab_speaker(lab, n1, [PEER4], announce=[VIP4]) as sp:
            router.wait_next_hops(VIP4, {n1.ip4})
            (start,) = log_times(sp, r"Idle -> Connect \(start\)")
            (up,) = log_times(sp, r"-> Established")
            assert up - start <= 1.0, up - start
            sp.close()


@pytest.mark.parametrize("kind", ["bird", "frr"])
def test_passive_router_forgot_our_connection_in_opensent_found_within_seconds(kind: str) -> None:
    """A router that only listens, frozen (SIGSTOP) while vipgate dials: its kernel takes the
    connection and our OPEN, and vipgate waits in OpenSent. The router is killed and started
    again while its namespace drops every packet (nftables), so its reset is lost; the path
    stays down until vipgate's TCP keepalive (src/vipgate/bgp/peer.py) has sent a probe that
    went unanswered. Path back: the router has forgotten our connection and never dials to say
    so, but the next probe draws its reset. The VIP is back within a probe interval, the first
    retry (<= 1 s) and a second, not after the 4-minute OpenSent hold timer (RFC 4271 8.2.2)."""
    with Lab() as lab:
        topo = build_topology(lab, 1, kind, client=False, neighbor_kwargs={"passive": True})
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        router.freeze()
        with lab_speaker(lab, n1, [PEER4], announce=[VIP4]) as sp:

            def opensent(es: list[dict[str, Any]]) -> bool:
                return any(e["ev"] == "state" and e["state"] == "OpenSent" for e in es)

            assert opensent(events_until(sp, opensent, 5.0)), sp.log()
            silence(lab, router.ns)
            try:
                router.kill()
                router.start()
                wait_for(
                    lambda: (unanswered_probes(lab, n1) or 0) >= 1,
                    PROBE_IDLE + PROBE_INTERVAL + 3.0,
                    0.1,
                    what="a keepalive probe unanswered",
                    describe=sp.log,
                )
            finally:
                unsilence(lab, router.ns)
            t_back = time.time()
            back = vip_back_at(router, {n1.ip4}, timeout=15.0)
            assert back - t_back <= PROBE_INTERVAL + 2.0, (back - t_back, sp.log()[-3000:])
            assert log_times(sp, r"TCP connection lost in OpenSent"), sp.log()[-3000:]
            sp.close()


def test_bird_restart_vip_back_once_bird_is_ready() -> None:
    """BIRD stopped for 20 s, started again: the VIP is back in its kernel table within a second
    of BIRD being ready to peer. BIRD 2.0.12 takes connections from its start (1.5 s allowed
    from the process start); its `connect delay time` (2 s here) only delays its own dial."""
    delay = 2
    with Lab() as lab:
        topo = build_topology(
            lab, 1, "bird", client=False, neighbor_kwargs={"connect_delay": delay}
        )
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        with lab_speaker(lab, n1, [PEER4], announce=[VIP4]) as sp:
            router.wait_kernel_nexthops(VIP4, {n1.ip4})
            router.stop()
            time.sleep(20.0)
            t_start = time.time()
            router.start()
            back = vip_back_at(router, {n1.ip4})
            assert back - t_start <= 1.5, back - t_start  # BIRD's own start-up included
            sp.close()


@pytest.mark.parametrize(
    ("kind", "neighbor"),
    [("frr", {"connect_retry": 120}), ("gobgp", {"idle_hold": 3})],
    ids=["frr-connect-timer-120s", "gobgp-idle-hold-3s"],
)
def test_router_restart_vip_back_within_a_second(kind: str, neighbor: dict[str, int]) -> None:
    """The router stopped for 5 s and started again, its own first dial late: FRR 8.4 dials only
    every `timers connect` (120 s by default) but accepts connections while Idle; GoBGP's first
    dial waits (connect-retry, and its idle hold after a reset). vipgate's quick retries have
    the VIP back within a second of the router's start."""
    with Lab() as lab:
        topo = build_topology(lab, 1, kind, client=False, neighbor_kwargs=neighbor)
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        with lab_speaker(lab, n1, [PEER4], announce=[VIP4]) as sp:
            router.wait_next_hops(VIP4, {n1.ip4})
            router.stop()
            time.sleep(5.0)
            t_start = time.time()
            router.start()
            back = vip_back_at(router, {n1.ip4})
            assert back - t_start <= 1.5, (back - t_start, sp.log()[-4000:])
            sp.close()


FLOOD = """
import errno, json, resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
socks, t0 = [], time.monotonic()
for i in range(int(sys.argv[2])):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect((sys.argv[1], 179))
    except BlockingIOError:
        pass
    socks.append(s)
    if i % 50 == 49:
        time.sleep(0.04)
spent, count = time.monotonic() - t0, {"reset": 0, "data": 0, "other": 0}
deadline = time.monotonic() + 5.0
while socks and time.monotonic() < deadline:
    time.sleep(0.1)
    left = []
    for s in socks:
        try:
            count["data" if s.recv(100) else "reset"] += 1
        except ConnectionResetError:
            count["reset"] += 1
        except BlockingIOError:
            left.append(s)
            continue
        except OSError:
            count["other"] += 1
        s.close()
    socks = left
print(json.dumps(dict(count, open=len(socks), spent=spent)))
"""


def events_until(
    sp: SpeakerProc, done: Callable[[list[dict[str, Any]]], bool], timeout: float
) -> list[dict[str, Any]]:
    """The speaker's events as they come, until `done(events)` or the timeout."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not done(got) and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            got.append(sp.events.get(timeout=0.1))
    return got


def test_a_stranger_gets_no_byte_in_the_lab() -> None:
    """node2 is not a peer of node1's vipgate: its connection to port 179 is reset unread.  Then
    1,000 of them in about a second (README, the listener): all reset unread and counted,
    while the session with the router stays up and vipgate's KEEPALIVEs leave on time."""
    code = (
        "import socket,sys\n"
        "try:\n"
        " s=socket.create_connection((sys.argv[1],179),2)\n"
        " s.sendall(b'\\xff'*19)\n"
        " d=s.recv(100); print('got', len(d))\n"
        "except OSError as e: print('error', e.errno)\n"
    )
    with Lab() as lab:
        topo = build_topology(lab, 2, "bird", client=False)
        router = topo.router
        assert router is not None
        n1, n2 = topo.nodes
        with lab_speaker(lab, n1, [PEER4], announce=[VIP4], hold=3, keepalive=1) as sp:
            router.wait_next_hops(VIP4, {n1.ip4})
            for _ in range(3):
                out = lab.run(n2.ns, [sys.executable, "-c", code, n1.ip4], check=False)
                assert out.stdout.strip() in ("error 104", "got 0"), out
                assert sp.wait_event("refused")["source"] == n2.ip4
            flood = lab.popen(n2.ns, [sys.executable, "-c", FLOOD, n1.ip4, "1000"], stdout=PIPE)
            evs = events_until(sp, lambda es: sum(e["ev"] == "refused" for e in es) >= 1000, 10.0)
            seen = sum(e["ev"] == "keepalive" for e in evs)  # during the flood: 0 or more
            evs += events_until(
                sp, lambda es: seen + sum(e["ev"] == "keepalive" for e in es) >= 3, 4.0
            )
            result = json.loads(flood.communicate(timeout=10.0)[0])
            assert result["reset"] == 1000 and result["spent"] < 1.5, result
            refused = [e for e in evs if e["ev"] == "refused"]
            assert len(refused) == 1000 and {e["source"] for e in refused} == {n2.ip4}
            kas = [e["t"] for e in evs if e["ev"] == "keepalive"]
            gaps = [b - a for a, b in itertools.pairwise(kas)]
            assert len(kas) >= 3 and max(gaps) < 1.2, gaps  # keepalive 1 s
            assert not [e for e in evs if e["ev"] == "state"], evs  # never left Established
            assert router.session_state(n1.ip4) == "Established"
            sp.close()


@pytest.mark.parametrize("router_id", ["192.0.2.1", "192.0.2.200"])
def test_both_sides_dialing_at_once_one_session(router_id: str) -> None:
    """BIRD (identifier below or above vipgate's 192.0.2.11) and vipgate started together,
    both dialing: exactly one session comes up and stays, no Cease/7 loop."""
    with Lab() as lab:
        topo = build_topology(
            lab,
            1,
            "bird",
            client=False,
            start_router=False,
            neighbor_kwargs={"connect_delay": 1},
            router_kwargs={"router_id": router_id},
        )
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        for _ in range(2):
            with lab_speaker(lab, n1, [PEER4], announce=[VIP4]) as sp:
                router.start()
                router.wait_kernel_nexthops(VIP4, {n1.ip4})
                time.sleep(8.0)
                assert router.session_state(n1.ip4) == "Established"
                assert len(log_times(sp, r"-> Established")) == 1, sp.log()[-3000:]
                assert not log_times(sp, r"session down")
                sp.close()
            router.stop()


def test_link_down_past_the_hold_time_vip_back_within_a_second() -> None:
    """The node's link down for 12 s, past the hold time (6 s): both hold timers expire. Link up:
    the kernel reports the carrier (netlink) and vipgate dials at once; BIRD takes the node
    after its `error wait time` (1 s in the lab), which it counts from the node being its
    neighbor again. The VIP is back within a second plus that wait, every time."""
    error_wait = 1.0
    with Lab() as lab:
        topo = build_topology(lab, 1, "bird", client=False, neighbor_kwargs={"hold_time": 6})
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        with lab_speaker(lab, n1, [PEER4], announce=[VIP4], hold=6, keepalive=2) as sp:
            router.wait_kernel_nexthops(VIP4, {n1.ip4})
            for _ in range(2):
                t_down = time.monotonic()
                lab.run(n1.ns, ["ip", "link", "set", "eth0", "down"])
                router.wait_kernel_nexthops(VIP4, set(), timeout=15.0)
                time.sleep(max(0.0, 12.0 - (time.monotonic() - t_down)))
                lab.run(n1.ns, ["ip", "link", "set", "eth0", "up"])
                lab.wait_carrier([(n1.ns, "eth0")])
                t_up = time.time()
                back = vip_back_at(router, {n1.ip4})
                assert back - t_up <= 1.0 + error_wait, (back - t_up, sp.log()[-3000:])
            assert log_times(sp, r"kernel reports a route to the peer")
            sp.close()
