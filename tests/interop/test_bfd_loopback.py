"""BFD across real UDP sockets on loopback: two endpoints, the TTL rules, and the BGP coupling.

Each test takes its own pair of loopback addresses (127.x.y.1 / .2), so the BFD ports (3784)
never collide with another run on the same host.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import socket
import struct
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network

import pytest

from tests.interop.test_bgp_loopback import PEER_AS, TinyPeer
from vipgate.bfd import fsm, wire
from vipgate.bfd.session import (
    PORT_SINGLE_HOP,
    SOURCE_PORTS,
    BfdSession,
    BfdSettings,
    Endpoint,
)
from vipgate.bgp import wire as bgp_wire
from vipgate.bgp.speaker import PeerSettings, Speaker, SpeakerSettings

FAST = BfdSettings(rx_ms=50, tx_ms=50, multiplier=3)  # detection time 150 ms
VIP = IPv4Network("203.0.113.100/32")
IP_RECVTTL = 12  # linux/in.h (not in Python's socket module)


def pair() -> tuple[IPv4Address, IPv4Address]:
    base = IPv4Address(f"127.{random.randint(100, 250)}.{random.randint(0, 255)}.0")
    return base + 1, base + 2


class Changes:
    """Records (loop time, StateChanged) per session."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, fsm.StateChanged]] = []

    def __call__(self, session: BfdSession, change: fsm.StateChanged) -> None:
        self.seen.append((asyncio.get_running_loop().time(), change))


async def until(cond: Callable[[], bool], timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)
    return time.monotonic() - t0


def test_two_endpoints_come_up_detect_silence_and_admin_down() -> None:
    a_ip, b_ip = pair()

    async def main() -> None:
        a, b = Endpoint(a_ip), Endpoint(b_ip)
        ca = Changes()
        sa = a.add("b", b_ip, False, FAST, ca)
        sb = b.add("a", a_ip, False, FAST)
        await a.start()
        await b.start()
        try:
            await until(lambda: sa.up and sb.up, 5.0, "both Up")
            # the 1 s slow rate is gone once Up and the Poll was answered
            await until(lambda: not sa.fsm.polling, 2.0, "Poll sequence done")
            assert sa.fsm.tx_interval_us() == 50_000
            assert sa.fsm.detection_time() == pytest.approx(0.15)
            # b goes silent (sockets closed, nothing sent): a detects it in ~150 ms
            b.close()
            t = await until(lambda: not sa.up, 2.0, "a Down")
            assert t < 1.0
            last = ca.seen[-1][1]
            assert last.new is wire.State.DOWN
            assert last.diag is wire.Diag.CONTROL_DETECTION_TIME_EXPIRED
            # b again, then AdminDown: a goes Down with "neighbor signaled session down"
            b2 = Endpoint(b_ip)
            sb2 = b2.add("a", a_ip, False, FAST)
            await b2.start()
            await until(lambda: sa.up and sb2.up, 5.0, "both Up again")
            await b2.admin_down()
            await until(lambda: not sa.up, 1.0, "a Down after AdminDown")
            last = ca.seen[-1][1]
            assert last.diag is wire.Diag.NEIGHBOR_SIGNALED_SESSION_DOWN
            b2.close()
            assert a.dropped.get("your_discriminator", 0) == 0
        finally:
            a.close()
            b.close()

    asyncio.run(main())


def test_sessions_of_one_endpoint_share_transmit_wake_ups() -> None:
    """Three sessions at 50 ms: their periodic packets go in shared wake-ups (fewer transmit
    timers fire than periodic packets leave), and no session's packets are closer together than
    75 % of its interval (RFC 5880 6.8.7), on the loop's own clock: each packet at the loop time
    its session was handed when it decided to send (a timer fired, a shared wake-up), which is
    what vipgate schedules from. The moment the send call itself runs comes after that by
    whatever the machine adds (a preemption, a garbage collection): a busy machine delayed one
    send by 3 ms and not the next, so send calls 34 ms apart were packets decided 37.5 ms or
    more apart."""
    a_ip, _ = pair()
    peers = [a_ip + i for i in (1, 2, 3)]

    async def main() -> None:
        a = Endpoint(a_ip)
        others = [Endpoint(p) for p in peers]
        ours = [a.add(f"p{i}", p, False, FAST) for i, p in enumerate(peers)]
        for o in others:
            o.add("a", a_ip, False, FAST)
        sends: dict[str, list[float]] = {s.name: [] for s in ours}
        decided_at: dict[str, float] = {}  # the loop time of the event being dispatched
        fired = [0]
        for s in ours:

            def dispatch(
                event: fsm.Event,
                s: BfdSession = s,
                orig: Callable[[fsm.Event], None] = s._dispatch,
            ) -> None:
                decided_at[s.name] = event.now
                orig(event)

            def send(
                data: bytes, s: BfdSession = s, orig: Callable[[bytes], None] = s._send
            ) -> None:
                if not wire.decode(data).final:  # the periodic schedule (Finals go at once)
                    sends[s.name].append(decided_at[s.name])
                orig(data)

            def fire(
                timer: fsm.Timer,
                generation: int,
                orig: Callable[[fsm.Timer, int], None] = s._fire,
            ) -> None:
                fired[0] += timer is fsm.Timer.TX
                orig(timer, generation)

            s._dispatch = dispatch  # type: ignore[method-assign]
            s._send = send  # type: ignore[method-assign]
            s._fire = fire  # type: ignore[method-assign]
        await a.start()
        for o in others:
            await o.start()
        try:
            await until(lambda: all(s.up and not s.fsm.polling for s in ours), 5.0, "all Up")
            await asyncio.sleep(0.3)  # the peers' Poll sequences
            for v in sends.values():
                v.clear()
            fired[0] = 0
            await asyncio.sleep(2.0)
            assert all(s.up for s in ours)
            periodic = sum(len(v) for v in sends.values())
            assert periodic > 3 * 2.0 / 0.05 * 0.5
            assert fired[0] < 0.6 * periodic, (fired[0], periodic)
            for v in sends.values():
                assert min(b - a for a, b in itertools.pairwise(v)) >= 0.75 * 0.05 - 1e-9
        finally:
            a.close()
            for o in others:
                o.close()

    asyncio.run(main())


def test_endpoint_shares_one_session_per_address_and_hop_kind() -> None:
    ep = Endpoint()
    seen = Changes()
    a = ep.add("a", IPv4Address("192.0.2.1"), False, FAST)
    b = ep.add("b", IPv4Address("192.0.2.1"), False, FAST, seen)
    assert a is b and b.callbacks == [seen]
    assert ep.add("m", IPv4Address("192.0.2.1"), True, FAST) is not a  # multihop: its own
    with pytest.raises(ValueError):
        ep.add("c", IPv4Address("192.0.2.1"), False, BfdSettings(300, 300, 3))


def test_packets_leave_with_ttl_255_from_a_high_port_and_ttl_254_is_refused() -> None:
    a_ip, b_ip = pair()

    async def main() -> None:
        # b is a plain socket on the BFD port that reads the TTL of what arrives
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        rx.bind((str(b_ip), PORT_SINGLE_HOP))
        rx.settimeout(3.0)
        a = Endpoint(a_ip)
        sa = a.add("b", b_ip, False, FAST)
        await a.start()
        try:
            data, anc, _, src = await asyncio.to_thread(rx.recvmsg, 64, socket.CMSG_SPACE(4))
            ttl = next(struct.unpack("i", d)[0] for lvl, typ, d in anc if typ == socket.IP_TTL)
            assert ttl == 255
            assert src[0] == str(a_ip) and SOURCE_PORTS[0] <= src[1] <= SOURCE_PORTS[1]
            assert wire.decode(data).state is wire.State.DOWN
            down = wire.encode(wire.ControlPacket(wire.State.DOWN, my_discr=77, detect_mult=3))
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tx.bind((str(b_ip), 0))
            # one hop away (TTL 254): the kernel drops it (IP_MINTTL), the session never sees it
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 254)
            tx.sendto(down, (str(a_ip), PORT_SINGLE_HOP))
            await asyncio.sleep(0.3)
            assert sa.state is wire.State.DOWN and sa.fsm.packets_received == 0
            assert a.dropped["ttl"] == 1
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
            tx.sendto(down, (str(a_ip), PORT_SINGLE_HOP))
            await until(lambda: sa.state is wire.State.INIT, 1.0, "Init")
            # a malformed one (Detect Mult 0) is dropped and counted, not raised
            tx.sendto(down[:2] + b"\x00" + down[3:], (str(a_ip), PORT_SINGLE_HOP))
            await until(lambda: a.dropped["detect_mult"] == 1, 1.0, "discard counted")
            tx.close()
        finally:
            a.close()
            rx.close()

    asyncio.run(main())


class HandPeer:
    """The peer of one session, by hand: a plain socket on the BFD port sends what the test says.
    Every packet the session reads is recorded with its arrival time and the loop's time."""

    def __init__(self, a_ip: IPv4Address, p_ip: IPv4Address) -> None:
        self.loop = asyncio.get_running_loop()
        self.a_ip = a_ip
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
        self.sock.bind((str(p_ip), PORT_SINGLE_HOP))
        self.sock.setblocking(False)
        self.endpoint = Endpoint(a_ip)
        self.session = self.endpoint.add("p", p_ip, False, FAST)
        self.task: asyncio.Task[None] | None = None
        self.seen: list[tuple[float | None, float]] = []
        orig = self.session.packet

        def packet(packet: wire.ControlPacket, at: float | None = None) -> None:
            self.seen.append((at, self.loop.time()))
            orig(packet, at)

        self.session.packet = packet  # type: ignore[method-assign]

    def send(self, state: wire.State, **kw: bool) -> None:
        sa = self.session
        p = wire.ControlPacket(
            state,
            my_discr=0x77,
            your_discr=sa.fsm.config.local_discr if state is not wire.State.DOWN else 0,
            detect_mult=3,
            desired_min_tx=50_000,
            required_min_rx=50_000,
            **kw,
        )
        self.sock.sendto(wire.encode(p), (str(self.a_ip), PORT_SINGLE_HOP))

    async def _keep_up(self) -> None:
        while True:
            self.send(wire.State.UP)
            await asyncio.sleep(0.03)

    def keep_up(self) -> None:
        """Send Up every 30 ms until :meth:`stop`."""
        self.task = asyncio.create_task(self._keep_up())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def close(self) -> None:
        self.stop()
        self.endpoint.close()
        self.sock.close()


async def _up_then_quiet(p: HandPeer) -> None:
    """Up with no Poll: the sockets stop waking the loop; queued packets keep the session Up."""
    a, sa = p.endpoint, p.session
    assert a.watching
    p.send(wire.State.DOWN)
    await until(lambda: sa.state is wire.State.INIT, 1.0, "Init")
    p.keep_up()
    await until(lambda: sa.up, 1.0, "Up")
    p.send(wire.State.UP, final=True)  # ends our Poll sequence
    await until(lambda: not a.watching, 1.0, "quiet")
    n = sa.fsm.packets_received
    await asyncio.sleep(0.5)  # > 3 detection times: Up all along on queued packets
    assert sa.up and sa.fsm.packets_received > n + 5 and not a.watching


async def _queued_packet_counts_from_its_arrival(p: HandPeer) -> None:
    """A packet that waits 100 ms in the queue counts from its arrival."""
    p.stop()
    await asyncio.sleep(0)
    p.seen.clear()
    t_sent = p.loop.time()
    p.send(wire.State.UP)
    time.sleep(0.1)  # the loop is blocked: the packet waits in the socket
    await asyncio.sleep(0.02)
    at, read = p.seen[-1]  # the last one sent (keep_up's last may be queued before it)
    assert at is not None and at == pytest.approx(t_sent, abs=0.02)
    assert read >= t_sent + 0.1
    assert p.session.fsm.detect_deadline == pytest.approx(t_sent + 0.15, abs=0.02)


async def _poll_answered_with_a_final(p: HandPeer) -> None:
    """A Poll is answered with a Final, at the next wake-up at the latest."""
    while True:  # what came before the Poll
        try:
            p.sock.recv(64)
        except BlockingIOError:
            break
    p.send(wire.State.UP, poll=True)
    t0 = p.loop.time()
    final = False
    while not final and p.loop.time() - t0 < 1.0:
        await asyncio.sleep(0.005)
        with contextlib.suppress(BlockingIOError):
            final = wire.decode(p.sock.recv(64)).final
    assert final


def test_quiet_endpoint_reads_at_its_timer_wake_ups_with_arrival_times() -> None:
    """All sessions Up with no Poll: the sockets stop waking the loop, queued packets are read at
    the next timer wake-up at their kernel arrival time (the detection time counts from it), a
    Poll is still answered with a Final, a Down from the peer is still seen, and the sockets are
    watched again once a session is not Up."""
    a_ip, p_ip = pair()

    async def main() -> None:
        p = HandPeer(a_ip, p_ip)
        await p.endpoint.start()
        try:
            await _up_then_quiet(p)
            await _queued_packet_counts_from_its_arrival(p)
            p.keep_up()
            await _poll_answered_with_a_final(p)
            # the peer goes Down: seen, and the sockets are watched again
            p.stop()
            p.send(wire.State.DOWN)
            await until(lambda: not p.session.up, 1.0, "Down")
            assert p.endpoint.watching
        finally:
            p.close()

    asyncio.run(main())


class BoundPeer(TinyPeer):
    """TinyPeer listening on a given loopback address."""

    def __init__(self, address: IPv4Address) -> None:
        super().__init__()
        self.address = address

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((str(self.address), 0))
        self.port = sock.getsockname()[1]
        self.server = await asyncio.start_server(self._serve, sock=sock)

    def notifications(self) -> list[tuple[int, int]]:
        return [(m.code, m.subcode) for m in self.messages if isinstance(m, bgp_wire.Notification)]


def test_bgp_follows_bfd(caplog: pytest.LogCaptureFixture) -> None:
    """RFC 5882: BFD Down tears BGP down at once (Cease/BFD Down) and holds it down until BFD
    is Up again; on close the withdrawal and Cease go first, BFD AdminDown after."""
    router_ip, node_ip = pair()
    caplog.set_level(logging.INFO)

    async def main() -> None:
        peer = BoundPeer(router_ip)
        await peer.start()
        sp = Speaker(
            SpeakerSettings(65000, IPv4Address("192.0.2.11"), 30, 0, node_ip, None),
            [PeerSettings(router_ip, PEER_AS, "", False, peer.port, bfd=FAST)],
            connect_timeout=1.0,
        )
        sp.announce(VIP)
        router_bfd = Endpoint(router_ip)
        seen = Changes()
        rs = router_bfd.add("node", node_ip, False, FAST, seen)
        try:
            await sp.start()  # BGP starts at once (FRR starts multihop BFD only after BGP)
            await peer.wait(lambda: VIP in peer.announced())
            await router_bfd.start()
            await until(lambda: rs.up, 5.0, "BFD Up")
            # the router's BFD goes silent: BGP is torn down at once with Cease/BFD Down
            router_bfd.close()
            await peer.wait(lambda: (6, 10) in peer.notifications(), 2.0)
            assert sp.session_states() == {sp.peers[0].name: "Idle"}
            await asyncio.sleep(0.3)
            assert peer.connections == 1, "BGP must stay down while BFD is Down"
            # BFD back: BGP back, the route with it
            router_bfd = Endpoint(router_ip)
            rs = router_bfd.add("node", node_ip, False, FAST, seen)
            await router_bfd.start()
            await peer.wait(lambda: peer.connections == 2 and peer.announced().count(VIP) == 2)
            caplog.clear()
            await sp.close("maintenance", 1.0)
            await until(lambda: not rs.up, 1.0, "router's BFD Down")
            assert seen.seen[-1][1].diag is wire.Diag.NEIGHBOR_SIGNALED_SESSION_DOWN
            await peer.wait(lambda: (6, 2) in peer.notifications())
            assert VIP in peer.withdrawn()
            order = [
                r.getMessage()
                for r in caplog.records
                if "-> Idle" in r.getMessage() or "-> AdminDown" in r.getMessage()
            ]
            assert len(order) == 2 and "BGP" in order[0] and "BFD" in order[1], order
        finally:
            await sp.close("test over", 1.0)
            router_bfd.close()
            await peer.stop()

    asyncio.run(main())
