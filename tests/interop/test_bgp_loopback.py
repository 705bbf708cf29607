"""The asyncio speaker against a tiny in-test BGP peer over loopback (no lab, no routers)."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import socket
import threading
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

import pytest

from vipgate.bgp import peer as peer_module
from vipgate.bgp import wire
from vipgate.bgp.peer import (
    PROBE_COUNT,
    PROBE_IDLE,
    PROBE_INTERVAL,
    TCP_MD5SIG,
    make_socket,
    md5sig,
)
from vipgate.bgp.speaker import PeerSettings, Speaker, SpeakerSettings
from vipgate.bgp.wire import (
    AsPath,
    AsPathSegment,
    FourOctetAsCapability,
    Keepalive,
    MultiprotocolCapability,
    NextHop,
    Notification,
    Open,
    RouteRefresh,
    RouteRefreshCapability,
    SessionContext,
    Update,
)

LO = IPv4Address("127.0.0.1")
VIP = IPv4Network("203.0.113.100/32")
VIP6 = IPv6Network("2001:db8:100::100/128")
VIP2 = IPv4Network("203.0.113.101/32")
PEER_AS = 65001


class TinyPeer:
    """Accepts connections, answers the OPEN, records every message it receives."""

    def __init__(
        self,
        *,
        hold: int = 90,
        password: str = "",
        keepalives: bool = True,
        strict_families: frozenset[tuple[int, int]] | None = None,
    ) -> None:
        # strict_families: answer an OPEN offering any other family with NOTIFICATION 2/7
        # naming those capabilities, as FRR does with strict-capability-match.
        self.strict_families = strict_families
        self.hold = hold
        self.password = password
        self.keepalives = keepalives
        self.messages: list[wire.Message] = []
        self.connections = 0
        self.writer: asyncio.StreamWriter | None = None
        self.changed = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.password:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, md5sig(LO, self.password))
        sock.bind(("127.0.0.1", self.port))  # 0 unless set: any free port
        self.port = sock.getsockname()[1]
        self.server = await asyncio.start_server(self._serve, sock=sock)

    async def stop(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writer = writer
        dec = wire.Decoder()
        try:
            while data := await reader.read(65536):
                dec.feed(data)
                while True:
                    try:
                        m = dec.next_message()
                    except wire.BgpError as e:
                        if e.fatal or e.update is None:
                            raise
                        m = e.update  # e.g. NEXT_HOP 127.0.0.1 (martian): keep it anyway
                    if m is None:
                        break
                    self.messages.append(m)
                    self.changed.set()
                    if isinstance(m, Open) and self.strict_families is not None:
                        extra = [
                            c
                            for c in m.capabilities
                            if isinstance(c, MultiprotocolCapability)
                            and (c.afi, c.safi) not in self.strict_families
                        ]
                        if extra:
                            data = b"".join(wire._encode_capability(c) for c in extra)
                            writer.write(wire.encode(Notification(2, 7, data)))
                            await writer.drain()
                            return
                    if isinstance(m, Open):
                        dec.ctx = SessionContext(as4=m.four_octet_as)
                        caps = (
                            MultiprotocolCapability(1, 1),
                            MultiprotocolCapability(2, 1),
                            RouteRefreshCapability(),
                            FourOctetAsCapability(PEER_AS),
                        )
                        writer.write(
                            wire.encode(Open(PEER_AS, self.hold, IPv4Address("192.0.2.1"), caps))
                        )
                        writer.write(wire.encode(Keepalive()))
                    elif isinstance(m, Keepalive) and self.keepalives:
                        writer.write(wire.encode(Keepalive()))
        except (ConnectionError, wire.BgpError):
            pass
        finally:
            self.changed.set()
            writer.close()

    def send(self, msg: wire.Message) -> None:
        assert self.writer is not None
        self.writer.write(wire.encode(msg, SessionContext(True)))

    def updates(self) -> list[Update]:
        return [m for m in self.messages if isinstance(m, Update)]

    def announced(self) -> list[IPv4Network | IPv6Network]:
        return [p for u in self.updates() for p in u.announced()]

    def withdrawn(self) -> list[IPv4Network | IPv6Network]:
        return [p for u in self.updates() for p in u.withdrawals()]

    async def wait(self, cond: object, timeout: float = 5.0) -> None:
        assert callable(cond)
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; messages: {self.messages}")
            self.changed.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.05))


@asynccontextmanager
async def session(
    peer: TinyPeer,
    *,
    local_as: int = 65000,
    password: str = "",
    hold: int = 30,
    connect_timeout: float = 1.0,
    md5_hint_after: int = 3,
    **peer_kw: Any,
) -> AsyncIterator[Speaker]:
    await peer.start()
    sp = Speaker(
        SpeakerSettings(local_as, IPv4Address("192.0.2.11"), hold, 0, None, None),
        [PeerSettings(LO, PEER_AS, password, False, peer.port, **peer_kw)],
        connect_timeout=connect_timeout,
        md5_hint_after=md5_hint_after,
    )
    try:
        yield sp
    finally:
        await sp.close("test over", 1.0)
        await peer.stop()


def established(sp: Speaker) -> bool:
    return all(s == "Established" for s in sp.session_states().values())


async def until(cond: object, timeout: float = 5.0) -> None:
    assert callable(cond)
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


def test_announce_withdraw_over_loopback() -> None:
    async def main() -> None:
        peer = TinyPeer()
        async with session(peer) as sp:
            sp.announce(VIP)  # before the session is up: sent when it comes up
            await sp.start()
            await peer.wait(lambda: VIP in peer.announced())
            assert established(sp)
            upd = peer.updates()[0]
            assert upd.get(NextHop) == NextHop(LO)
            assert upd.get(AsPath) == AsPath((AsPathSegment(2, (65000,)),))
            sp.withdraw(VIP)
            await peer.wait(lambda: VIP in peer.withdrawn())
            assert sp.announced() == frozenset()

    asyncio.run(main())


NH6 = IPv6Address("2001:db8:0:1::11")


def test_ipv6_route_over_ipv4_session_gets_the_mpbgp_ipv6_next_hop() -> None:
    async def main() -> None:
        peer = TinyPeer()
        async with session(peer, families=frozenset({1, 2}), next_hop_v6=NH6) as sp:
            sp.announce(VIP6)
            await sp.start()
            await peer.wait(lambda: VIP6 in peer.announced())
            (opn,) = [m for m in peer.messages if isinstance(m, Open)]
            assert opn.families == {(1, 1), (2, 1)}
            mp = peer.updates()[-1].get(wire.MpReachNlri)
            # 16 octets, global, never ::ffff:127.0.0.1 (BIRD: "mismatched address family")
            assert mp is not None and mp.next_hops == (NH6,)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("peer_kw", "strict", "why"),
    [
        (
            {},
            False,
            "IPv6 unicast is not offered on this session (set mpbgp_nexthop for this peer)",
        ),
        ({"families": frozenset({1, 2})}, False, "no global IPv6 next hop"),
        (
            {"families": frozenset({1, 2}), "next_hop_v6": NH6},
            True,
            "the router refused IPv6 unicast (NOTIFICATION Unsupported Capability)",
        ),
    ],
    ids=["ipv4-only session", "no ipv6 next hop", "ipv6 refused by the router"],
)
def test_ipv6_route_without_an_ipv6_next_hop_is_not_sent(
    peer_kw: dict[str, Any], strict: bool, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        peer = TinyPeer(strict_families=frozenset({(1, 1)}) if strict else None)
        async with session(peer, **peer_kw) as sp:
            sp.announce(VIP6)
            sp.announce(VIP)
            await sp.start()
            await peer.wait(lambda: VIP in peer.announced())
            sp.withdraw(VIP)
            await peer.wait(lambda: VIP in peer.withdrawn())  # everything sent before is in
            assert VIP6 not in peer.announced()
            assert not any(u.get(wire.MpReachNlri) for u in peer.updates())

    with caplog.at_level(logging.ERROR, logger="vipgate.bgp"):
        asyncio.run(main())
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "IPv6 prefixes NOT announced" in errors[0] and why in errors[0]


@pytest.mark.parametrize("local_as", [65000, PEER_AS], ids=["ebgp", "ibgp"])
def test_graceful_shutdown_reannounces_marked_then_plain(local_as: int) -> None:
    gshut = wire.Communities((wire.GRACEFUL_SHUTDOWN,))

    async def main() -> None:
        peer = TinyPeer()
        async with session(peer, local_as=local_as) as sp:
            await sp.start()
            sp.announce(VIP)
            await peer.wait(lambda: len(peer.announced()) == 1)
            assert peer.updates()[-1].get(wire.Communities) is None
            sp.graceful_shutdown()
            sp.graceful_shutdown()  # no-op: already marked
            await peer.wait(lambda: len(peer.announced()) == 2)
            marked = peer.updates()[-1]
            assert marked.announced() == [VIP] and marked.get(wire.Communities) == gshut
            ibgp = local_as == PEER_AS
            assert marked.get(wire.LocalPref) == (wire.LocalPref(0) if ibgp else None)
            assert sp.graceful and sp.announced() == {VIP}
            # A route announced meanwhile is marked too; off re-announces both plain.
            sp.announce(VIP2)
            await peer.wait(lambda: len(peer.announced()) == 3)
            assert peer.updates()[-1].get(wire.Communities) == gshut
            sp.graceful_shutdown(False)
            await peer.wait(lambda: len(peer.announced()) == 5)
            plain = peer.updates()[-1]
            assert plain.get(wire.Communities) is None
            assert plain.get(wire.LocalPref) == (wire.LocalPref(100) if ibgp else None)
            assert not peer.withdrawn()  # never withdrawn on the way

    asyncio.run(main())


def test_route_refresh_resends_everything() -> None:
    async def main() -> None:
        peer = TinyPeer()
        async with session(peer) as sp:
            await sp.start()
            sp.announce(VIP)
            sp.announce(IPv4Network("203.0.113.101/32"))
            await peer.wait(lambda: len(peer.announced()) == 2)
            peer.send(RouteRefresh(1, 1))
            await peer.wait(lambda: len(peer.announced()) == 4)
            assert set(peer.announced()[2:]) == {VIP, IPv4Network("203.0.113.101/32")}

    asyncio.run(main())


def test_close_withdraws_then_cease_with_message() -> None:
    async def main() -> None:
        peer = TinyPeer()
        async with session(peer) as sp:
            await sp.start()
            sp.announce(VIP)
            await peer.wait(lambda: VIP in peer.announced())
            t0 = time.monotonic()
            await sp.close("node drained", 2.0)
            assert time.monotonic() - t0 < 2.0
            await peer.wait(lambda: isinstance(peer.messages[-1], Notification))
            last = peer.messages[-1]
            assert isinstance(last, Notification)
            assert (last.code, last.subcode) == (6, 2)
            assert last.shutdown_message == "node drained"
            assert VIP in peer.withdrawn()
            # the withdrawal came before the NOTIFICATION
            idx = next(
                i for i, m in enumerate(peer.messages) if isinstance(m, Update) and m.withdrawn
            )
            assert idx < len(peer.messages) - 1
            await asyncio.sleep(0.3)
            assert peer.connections == 1  # no reconnect after close
            assert sp.session_states() == {f"127.0.0.1:{peer.port}": "Idle"}

    asyncio.run(main())


def test_reconnects_fast_after_peer_notification() -> None:
    async def main() -> None:
        peer = TinyPeer()
        async with session(peer) as sp:
            await sp.start()
            sp.announce(VIP)
            await peer.wait(lambda: VIP in peer.announced())
            peer.send(Notification.shutdown("router restart"))
            t0 = time.monotonic()
            await peer.wait(lambda: peer.connections == 2 and len(peer.announced()) == 2)
            assert time.monotonic() - t0 < 1.5  # first retry <= 1 s

    asyncio.run(main())


def test_closed_connections_are_freed_without_the_garbage_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each connection the peer closed (a NOTIFICATION, then a new dial) is freed when it
    closes, with the cyclic garbage collector off: none waits in a reference cycle for a full
    collection (Python 3.11's transport keeps a bound method of itself; vipgate.transports)."""
    made: list[weakref.ref[asyncio.BaseTransport]] = []
    connection_made = peer_module._Proto.connection_made

    def record(proto: peer_module._Proto, transport: asyncio.BaseTransport) -> None:
        made.append(weakref.ref(transport))
        connection_made(proto, transport)

    monkeypatch.setattr(peer_module._Proto, "connection_made", record)

    async def main() -> None:
        peer = TinyPeer()
        async with session(peer) as sp:
            await sp.start()
            sp.announce(VIP)
            gc.collect()
            gc.disable()
            try:
                for n in range(2, 5):
                    await peer.wait(lambda n=n: len(peer.announced()) == n - 1)
                    peer.send(Notification.shutdown("router restart"))
                    await peer.wait(lambda n=n: peer.connections == n)
                await peer.wait(lambda: len(peer.announced()) == 4)
                await asyncio.sleep(0.05)  # the close callbacks
                alive = [t for r in made[:-1] if (t := r()) is not None]
                assert len(made) == 4 and not alive, (len(made), alive)
            finally:
                gc.enable()

    asyncio.run(main())


def test_a_peer_listening_again_is_dialed_within_a_second() -> None:
    """Refused dials (nothing listens: a router restarting) are retried every 0.5-1 s, not with
    the growing backoff (fsm rule 9): 3 s of refusals, then the peer listens and the session is
    up within a second."""

    async def main() -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        peer = TinyPeer()
        sp = Speaker(
            SpeakerSettings(65000, IPv4Address("192.0.2.11"), 30, 0, None, None),
            [PeerSettings(LO, PEER_AS, "", False, port)],
            connect_timeout=1.0,
        )
        try:
            await sp.start()
            await asyncio.sleep(3.0)
            assert not established(sp)
            peer.port = port
            await peer.start()
            t0 = time.monotonic()
            await until(lambda: established(sp), 3.0)
            assert time.monotonic() - t0 <= 1.2
        finally:
            await sp.close("test over", 1.0)
            await peer.stop()

    asyncio.run(main())


def test_hold_timer_expiry_sends_notification() -> None:
    async def main() -> None:
        peer = TinyPeer(hold=3, keepalives=False)
        async with session(peer, hold=3) as sp:
            await sp.start()
            await until(lambda: established(sp))
            t0 = time.monotonic()
            await peer.wait(
                lambda: any(isinstance(m, Notification) and m.code == 4 for m in peer.messages),
                timeout=6.0,
            )
            assert 2.5 < time.monotonic() - t0 < 4.5

    asyncio.run(main())


def test_md5_right_password_comes_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "vipgate")

    async def main() -> None:
        peer = TinyPeer(password="s3cret-md5")
        async with session(peer, password="s3cret-md5") as sp:
            await sp.start()
            await until(lambda: established(sp))

    asyncio.run(main())
    assert "s3cret-md5" not in caplog.text


def test_md5_wrong_password_stays_down_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "vipgate")

    async def main() -> None:
        peer = TinyPeer(password="right-one")
        async with session(peer, password="wrong-one", connect_timeout=0.3, md5_hint_after=2) as sp:
            await sp.start()
            await until(lambda: "may mismatch" in caplog.text, timeout=8.0)
            assert not established(sp)
            assert peer.connections == 0

    asyncio.run(main())
    assert "wrong-one" not in caplog.text and "right-one" not in caplog.text


def test_password_not_in_repr() -> None:
    p = PeerSettings(LO, 65001, "hunter2", False)
    assert "hunter2" not in repr(p)


def test_socket_options() -> None:
    sp = SpeakerSettings(65000, IPv4Address("192.0.2.11"), 30, 10, LO, None)
    single = make_socket(sp, PeerSettings(LO, 65001, "", False), ebgp=True)
    multi = make_socket(sp, PeerSettings(LO, 65001, "", True), ebgp=True)
    ibgp = make_socket(sp, PeerSettings(LO, 65000, "", False), ebgp=False)
    try:
        assert single.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 1
        assert multi.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 50
        assert ibgp.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 64
        assert single.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert probes(single) == (1, PROBE_IDLE, PROBE_INTERVAL, PROBE_COUNT)
        assert single.getsockname()[0] == "127.0.0.1"
    finally:
        for s in (single, multi, ibgp):
            s.close()


def probes(sock: socket.socket | None) -> tuple[int, ...]:
    assert sock is not None
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    )


def test_tcp_keepalive_in_opensent_off_once_established() -> None:
    """vipgate.bgp.peer: TCP keepalive on our connection while it waits for the peer's OPEN
    (a peer that reads ours and says nothing), off once the session is Established."""

    async def main() -> None:
        opened = asyncio.Event()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(65536)  # our OPEN; no answer
            opened.set()
            await reader.read(65536)
            writer.close()

        server = await asyncio.start_server(silent, str(LO), 0)
        port = server.sockets[0].getsockname()[1]
        sp = Speaker(
            SpeakerSettings(65000, IPv4Address("192.0.2.11"), 30, 0, None, None),
            [PeerSettings(LO, PEER_AS, "", False, port)],
            listen=False,
        )
        try:
            await sp.start()
            await asyncio.wait_for(opened.wait(), 5.0)
            (p,) = sp._peers
            assert p.state == "OpenSent"
            assert probes(p._sock) == (1, PROBE_IDLE, PROBE_INTERVAL, PROBE_COUNT)
        finally:
            await sp.close("test over", 1.0)
            server.close()
        peer = TinyPeer()
        async with session(peer) as sp:
            await sp.start()
            await until(lambda: established(sp))
            (p,) = sp._peers
            assert probes(p._sock)[0] == 0

    asyncio.run(main())


def test_unsupported_capability_retry_without_it(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        peer = TinyPeer(strict_families=frozenset({(1, 1)}))
        async with session(peer, families=frozenset({1, 2}), next_hop_v6=NH6) as sp:
            sp.announce(VIP)
            await sp.start()
            await peer.wait(lambda: VIP in peer.announced(), timeout=5.0)
            opens = [m for m in peer.messages if isinstance(m, Open)]
            assert [o.families for o in opens] == [{(1, 1), (2, 1)}, {(1, 1)}]
            assert peer.connections == 2

    with caplog.at_level(logging.INFO, logger="vipgate.bgp"):
        asyncio.run(main())
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "refuses capabilities (NOTIFICATION Unsupported Capability): Multiprotocol IPv6 " in text
    assert "retrying without them (RFC 5492); families offered now: IPv4 unicast" in text
    assert "Established" in text and "010400020001" not in text  # decoded, not hex


@pytest.mark.parametrize("local_as", [65000, PEER_AS], ids=["ebgp", "ibgp"])
def test_deprefer_reannounces_prepended_then_plain(local_as: int) -> None:
    """deprefer: eBGP our AS 3 more times, iBGP LOCAL_PREF 0, 65535:0 on both; announce makes
    it plain again; the drain's re-announcement carries the same de-preference."""
    gshut = wire.Communities((wire.GRACEFUL_SHUTDOWN,))
    ibgp = local_as == PEER_AS

    def path_of(upd: wire.Update) -> list[tuple[int, ...]]:
        ap = upd.get(wire.AsPath)
        assert ap is not None
        return [s.asns for s in ap.segments]

    async def main() -> None:
        peer = TinyPeer()
        async with session(peer, local_as=local_as) as sp:
            await sp.start()
            sp.announce(VIP)
            await peer.wait(lambda: len(peer.announced()) == 1)
            assert path_of(peer.updates()[-1]) == ([] if ibgp else [(local_as,)])
            sp.deprefer(VIP)
            sp.deprefer(VIP)  # no-op: already de-preferred
            await peer.wait(lambda: len(peer.announced()) == 2)
            dep = peer.updates()[-1]
            assert dep.announced() == [VIP] and dep.get(wire.Communities) == gshut
            assert path_of(dep) == ([] if ibgp else [(local_as,) * 4])
            assert dep.get(wire.LocalPref) == (wire.LocalPref(0) if ibgp else None)
            sp.announce(VIP)
            await peer.wait(lambda: len(peer.announced()) == 3)
            plain = peer.updates()[-1]
            assert plain.get(wire.Communities) is None
            assert path_of(plain) == ([] if ibgp else [(local_as,)])
            sp.graceful_shutdown()
            await peer.wait(lambda: len(peer.announced()) == 4)
            drain = peer.updates()[-1]
            assert drain.get(wire.Communities) == gshut
            assert path_of(drain) == ([] if ibgp else [(local_as,) * 4])
            assert not peer.withdrawn()

    asyncio.run(main())


class ThreadPeer:
    """A BGP peer on its own thread with blocking sockets: it dates the speaker's messages as
    they arrive, whatever the speaker's event loop is doing, and sends a KEEPALIVE every `ka` s
    (they wait in the socket while the speaker's loop is blocked)."""

    def __init__(self, hold: int, ka: float) -> None:
        self.hold, self.ka = hold, ka
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.received: list[tuple[float, wire.Message]] = []
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.lsock.settimeout(5.0)
        conn, _ = self.lsock.accept()
        self.connections += 1
        conn.settimeout(0.01)
        dec = wire.Decoder()
        next_ka = float("inf")
        with conn:
            while not self.stop.is_set():
                if time.monotonic() >= next_ka:
                    conn.sendall(wire.encode(Keepalive()))
                    next_ka += self.ka
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                dec.feed(data)
                while (m := dec.next_message()) is not None:
                    self.received.append((time.monotonic(), m))
                    if isinstance(m, Open):
                        dec.ctx = SessionContext(as4=m.four_octet_as)
                        caps = (MultiprotocolCapability(1, 1), FourOctetAsCapability(PEER_AS))
                        ours = Open(PEER_AS, self.hold, IPv4Address("192.0.2.1"), caps)
                        conn.sendall(wire.encode(ours) + wire.encode(Keepalive()))
                        next_ka = time.monotonic() + self.ka

    def keepalives(self) -> list[float]:
        return [t for t, m in self.received if isinstance(m, Keepalive)]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2.0)
        self.lsock.close()


def test_keepalives_after_an_event_loop_stall() -> None:
    """The rule (src/vipgate/bgp/peer.py, timers and a blocked loop): nothing can be sent while
    the event loop is blocked, so a KEEPALIVE that fell due meanwhile goes out as soon as it
    runs again, before anything else is sent; the peer's messages that waited in the socket are
    read before our hold timer is judged, so a stall alone never ends the session on our side.
    A stall shorter than hold - keepalive (here 3 - 1 s) keeps every gap the router sees below
    its hold time; a longer one the router may rightly end the session for."""
    hold, ka = 3, 1.0

    async def main() -> None:
        peer = ThreadPeer(hold, ka)
        sp = Speaker(
            SpeakerSettings(65000, IPv4Address("192.0.2.11"), hold, 0, None, None),
            [PeerSettings(LO, PEER_AS, "", False, peer.port)],
            connect_timeout=1.0,
        )
        try:
            await sp.start()
            await until(lambda: established(sp) and len(peer.keepalives()) >= 2)
            stalls = []
            for stall, watch in ((1.5, 0.5), (hold + 1.0, 0.5)):
                t0 = time.monotonic()
                time.sleep(stall)  # the injected stall: the loop blocked
                stalls.append((t0, time.monotonic()))
                await asyncio.sleep(watch)
            kas = peer.keepalives()
            for t0, t1 in stalls:
                first = min(t for t in kas if t > t0)
                assert t1 <= first <= t1 + 0.3, (t0, t1, kas)
            short_end = stalls[0][1]
            gaps = [b - a for a, b in itertools.pairwise(kas) if b <= short_end + 0.3]
            assert max(gaps) < hold, gaps
            assert established(sp) and peer.connections == 1
            assert not [m for _, m in peer.received if isinstance(m, Notification)]
        finally:
            await sp.close("test over", 1.0)
            peer.close()

    asyncio.run(main())
