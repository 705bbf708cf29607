"""Tests for the BGP session state machine (vipgate.bgp.fsm), no sockets."""

from __future__ import annotations

import socket
import typing
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vipgate.bgp import fsm, wire
from vipgate.bgp.fsm import (
    ArmTimer,
    BytesReceived,
    CancelTimer,
    CapabilitiesRefused,
    CloseConnection,
    LocalProtocolError,
    OpenConnection,
    ProtocolWarning,
    ResendAdjRibOut,
    RoutesReceived,
    SendBytes,
    SendUpdates,
    Session,
    SessionConfig,
    SessionDown,
    SessionUp,
    Start,
    State,
    StateChanged,
    Stop,
    TcpClosed,
    TcpConnected,
    Timer,
    TimerFired,
    negotiate_timers,
)
from vipgate.bgp.peer import ACTIONS, PROBE_COUNT, PROBE_IDLE, PROBE_INTERVAL, set_probes
from vipgate.bgp.wire import (
    AS_TRANS,
    FourOctetAsCapability,
    Keepalive,
    MultiprotocolCapability,
    Notification,
    Open,
    RouteRefresh,
    RouteRefreshCapability,
    SessionContext,
    UnknownCapability,
    encode,
)

LOCAL = IPv4Address("192.0.2.11")
REMOTE = IPv4Address("192.0.2.1")
ROUTER_ID = IPv4Address("192.0.2.11")
PEER_ID = IPv4Address("192.0.2.1")
VIP = IPv4Network("203.0.113.100/32")
KA = encode(Keepalive())


def cfg(**kw: object) -> SessionConfig:
    base: dict[str, object] = {
        "local_as": 65000,
        "router_id": ROUTER_ID,
        "peer_as": 65001,
        "hold_time": 30,
        "keepalive": 10,
    }
    base.update(kw)
    return SessionConfig(**base)  # type: ignore[arg-type]


def peer_open(
    asn: int = 65001,
    hold: int = 90,
    bgp_id: IPv4Address = PEER_ID,
    as4: bool = True,
    families: Sequence[tuple[int, int]] = ((1, 1), (2, 1)),
) -> bytes:
    caps: list[wire.Capability] = [MultiprotocolCapability(a, s) for a, s in families]
    caps.append(RouteRefreshCapability())
    if as4:
        caps.append(FourOctetAsCapability(asn))
    my_as = asn if asn <= 0xFFFF else AS_TRANS
    return encode(Open(my_as, hold, bgp_id, tuple(caps)))


def sent_messages(actions: Sequence[fsm.Action], as4: bool = True) -> list[wire.Message]:
    data = b"".join(a.data for a in actions if isinstance(a, SendBytes))
    return wire.Decoder(SessionContext(as4)).feed_all(data)


def of_type(actions: Sequence[fsm.Action], cls: type) -> list[fsm.Action]:
    return [a for a in actions if isinstance(a, cls)]


def timer_armed(actions: Sequence[fsm.Action], timer: Timer) -> ArmTimer | None:
    armed = [a for a in actions if isinstance(a, ArmTimer) and a.timer is timer]
    return armed[-1] if armed else None


class Driver:
    """Keeps the current generation of each timer so tests can fire them."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self.timers: dict[Timer, int] = {}
        self.log: list[fsm.Action] = []

    def __call__(self, event: fsm.Event) -> list[fsm.Action]:
        actions = self.s.handle(event)
        for a in actions:
            if isinstance(a, ArmTimer):
                self.timers[a.timer] = a.generation
            elif isinstance(a, CancelTimer):
                self.timers.pop(a.timer, None)
        self.log.extend(actions)
        return actions

    def state(self) -> State:
        return self.s.state

    def fire(self, timer: Timer) -> list[fsm.Action]:
        gen = self.timers.pop(timer)
        return self(TimerFired(timer, gen))


def established(
    config: SessionConfig | None = None, rng: float = 0.5, **open_kw: object
) -> tuple[Driver, list[fsm.Action]]:
    d = Driver(Session(config or cfg(), rng=lambda: rng))
    assert d(Start()) == [
        StateChanged(State.IDLE, State.CONNECT, "start"),
        OpenConnection(),
        ArmTimer(Timer.CONNECT_RETRY, 5.0, 1),
    ]
    d(TcpConnected(LOCAL, REMOTE))
    assert d.state() is State.OPEN_SENT
    actions = d(BytesReceived(peer_open(**open_kw) + KA))  # type: ignore[arg-type]
    assert d.state() is State.ESTABLISHED, actions
    return d, actions


# ------------------------------------------------------------------------------ happy path


def test_connect_sends_our_open() -> None:
    d = Driver(Session(cfg(local_as=4200000001)))
    d(Start())
    actions = d(TcpConnected(LOCAL, REMOTE))
    (msg,) = sent_messages(actions)
    assert msg == Open(
        AS_TRANS,
        30,
        ROUTER_ID,
        (
            MultiprotocolCapability(1, 1),
            MultiprotocolCapability(2, 1),
            RouteRefreshCapability(),
            FourOctetAsCapability(4200000001),
        ),
    )
    assert CancelTimer(Timer.CONNECT_RETRY) in actions
    hold = timer_armed(actions, Timer.HOLD)
    assert hold is not None and hold.delay == 240.0


def test_tcp_keepalive_never_ends_a_connection_before_the_opensent_hold_timer() -> None:
    """The adapter's probes (vipgate.bgp.peer, TCP keepalive until Established) only find a
    reset: unanswered, they give up after the OpenSent hold timer (Linux allows at most 127)."""
    assert PROBE_IDLE + PROBE_INTERVAL * PROBE_COUNT > fsm.OPEN_SENT_HOLD
    assert PROBE_COUNT <= 127 and PROBE_IDLE + PROBE_INTERVAL <= 5
    with socket.socket() as sock:
        set_probes(sock, True)
        opts = [
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        ]
        assert opts == [1, PROBE_IDLE, PROBE_INTERVAL, PROBE_COUNT]
        set_probes(sock, False)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


def test_establish() -> None:
    d, actions = established()
    assert [type(m) for m in sent_messages(actions)] == [Keepalive]
    (up,) = of_type(actions, SessionUp)
    assert isinstance(up, SessionUp)
    info = up.info
    assert (info.local, info.remote, info.peer_as, info.peer_id) == (LOCAL, REMOTE, 65001, PEER_ID)
    assert info.as4 and info.ebgp and info.route_refresh
    assert info.families == {(1, 1), (2, 1)}
    assert (info.hold_time, info.keepalive) == (30, 10)
    assert info.policy == wire.OutboundPolicy(65000, True, True)
    assert d.s.as4
    ka = timer_armed(d.log, Timer.KEEPALIVE)
    hold = timer_armed(d.log, Timer.HOLD)
    assert ka is not None and ka.delay == 10.0
    assert hold is not None and hold.delay == 30.0
    states = [(a.old, a.new) for a in d.log if isinstance(a, StateChanged)]
    assert states == [
        (State.IDLE, State.CONNECT),
        (State.CONNECT, State.OPEN_SENT),
        (State.OPEN_SENT, State.OPEN_CONFIRM),
        (State.OPEN_CONFIRM, State.ESTABLISHED),
    ]


def test_establish_with_bytes_split_anywhere() -> None:
    stream = peer_open() + KA
    for cut in range(1, len(stream)):
        d = Driver(Session(cfg()))
        d(Start())
        d(TcpConnected(LOCAL, REMOTE))
        d(BytesReceived(stream[:cut]))
        d(BytesReceived(stream[cut:]))
        assert d.state() is State.ESTABLISHED


def test_families_and_as4_from_peer() -> None:
    d, actions = established(as4=False, families=[(1, 1)])
    (up,) = of_type(actions, SessionUp)
    assert isinstance(up, SessionUp)
    assert up.info.families == {(1, 1)} and not up.info.as4 and not d.s.as4


def test_ibgp() -> None:
    _, actions = established(cfg(peer_as=65000), asn=65000)
    (up,) = of_type(actions, SessionUp)
    assert isinstance(up, SessionUp) and not up.info.ebgp


@pytest.mark.parametrize(
    ("ours", "ka", "theirs", "expect"),
    [
        (30, 10, 90, (30, 10)),
        (30, 10, 9, (9, 3)),
        (30, 10, 3, (3, 1)),
        (30, 0, 90, (30, 10)),
        (90, 0, 60, (60, 20)),
        (30, 10, 0, (0, 0)),
        (0, 0, 90, (0, 0)),
    ],
)
def test_negotiate_timers(ours: int, ka: int, theirs: int, expect: tuple[int, int]) -> None:
    assert negotiate_timers(ours, ka, theirs) == expect


def test_hold_zero_means_no_keepalives_no_hold_timer() -> None:
    d, _ = established(hold=0)
    assert (d.s.hold_time, d.s.keepalive) == (0, 0)
    assert Timer.HOLD not in d.timers and Timer.KEEPALIVE not in d.timers
    assert d(BytesReceived(KA)) == [fsm.MessageReceived("KEEPALIVE")]


def test_keepalive_timer_sends_keepalive_and_rearms() -> None:
    d, _ = established()
    actions = d.fire(Timer.KEEPALIVE)
    assert [type(m) for m in sent_messages(actions)] == [Keepalive]
    ka = timer_armed(actions, Timer.KEEPALIVE)
    assert ka is not None and ka.delay == 10.0


def test_received_message_restarts_hold_timer_once_per_read() -> None:
    d, _ = established()
    actions = d(BytesReceived(KA * 5))
    assert len(of_type(actions, ArmTimer)) == 1
    hold = timer_armed(actions, Timer.HOLD)
    assert hold is not None and hold.delay == 30.0


def vip_update(*nets: IPv4Network, as4: bool = True) -> wire.Update:
    attrs = wire.OutboundPolicy(65000, True, as4).attributes()
    return wire.Update(attributes=(*attrs[:2], wire.NextHop(LOCAL), *attrs[2:]), nlri=nets)


def test_send_updates_only_when_established() -> None:
    d = Driver(Session(cfg()))
    d(Start())
    d(TcpConnected(LOCAL, REMOTE))
    assert d(SendUpdates((vip_update(VIP),))) == []
    d(BytesReceived(peer_open() + KA))
    actions = d(SendUpdates((vip_update(VIP),)))
    pol = wire.OutboundPolicy(65000, True, True)
    assert actions[0] == SendBytes(b"".join(wire.announce_ipv4([VIP], LOCAL, pol)))
    assert timer_armed(actions, Timer.KEEPALIVE) is not None
    assert of_type(actions, fsm.MessageSent) == [fsm.MessageSent("UPDATE")]
    assert d(SendUpdates(())) == []


@pytest.mark.parametrize("as4", [True, False])
def test_send_updates_encodes_in_the_session_context_one_message_sent_each(as4: bool) -> None:
    d = Driver(Session(cfg()))
    d(Start())
    d(TcpConnected(LOCAL, REMOTE))
    d(BytesReceived(peer_open(as4=as4) + KA))
    updates = (
        vip_update(IPv4Network("198.51.100.1/32"), as4=as4),
        vip_update(IPv4Network("198.51.100.2/32"), as4=as4),
        wire.Update(withdrawn=(VIP,)),
    )
    actions = d(SendUpdates(updates))
    (sent,) = of_type(actions, SendBytes)
    assert isinstance(sent, SendBytes)
    assert sent.data == b"".join(encode(u, SessionContext(as4)) for u in updates)
    assert sent_messages(actions, as4) == list(updates)
    assert of_type(actions, fsm.MessageSent) == [fsm.MessageSent("UPDATE")] * len(updates)


def test_stale_timer_is_ignored() -> None:
    d, _ = established()
    gen = d.timers[Timer.HOLD]
    d(BytesReceived(KA))  # restarts the hold timer: new generation
    assert d(TimerFired(Timer.HOLD, gen)) == []
    assert d.state() is State.ESTABLISHED


# ---------------------------------------------------------------------- errors and going down


def assert_notified(actions: Sequence[fsm.Action], code: int, subcode: int) -> Notification:
    msgs = sent_messages(actions)
    assert isinstance(msgs[-1], Notification), msgs
    assert (msgs[-1].code, msgs[-1].subcode) == (code, subcode), msgs[-1]
    assert CloseConnection() in actions
    return msgs[-1]


def test_hold_timer_expiry_sends_notification_4() -> None:
    d, _ = established()
    actions = d.fire(Timer.HOLD)
    assert_notified(actions, 4, 0)
    assert d.state() is State.IDLE
    (down,) = of_type(actions, SessionDown)
    assert isinstance(down, SessionDown) and "hold timer expired" in down.reason
    assert down.sent == Notification(4, 0)
    retry = timer_armed(actions, Timer.CONNECT_RETRY)
    assert retry is not None and retry.delay <= 1.0
    assert Timer.KEEPALIVE not in d.timers and Timer.HOLD not in d.timers


def test_hold_timer_expiry_in_open_sent() -> None:
    d = Driver(Session(cfg()))
    d(Start())
    d(TcpConnected(LOCAL, REMOTE))
    assert_notified(d.fire(Timer.HOLD), 4, 0)
    assert d.state() is State.IDLE


def open_sent() -> Driver:
    d = Driver(Session(cfg(), rng=lambda: 0.0))
    d(Start())
    d(TcpConnected(LOCAL, REMOTE))
    return d


@pytest.mark.parametrize(
    ("name", "data", "code", "sub"),
    [
        ("peer AS", peer_open(asn=65002), 2, 2),
        ("4-octet peer AS without capability", peer_open(asn=65001, as4=False), None, None),
        ("eBGP peer with our BGP id (RFC 6286 2.1)", peer_open(bgp_id=ROUTER_ID), None, None),
        ("BGP id 0", peer_open(bgp_id=IPv4Address(0)), 2, 3),
        ("hold time 1", peer_open(hold=1), 2, 6),
        ("hold time 2", peer_open(hold=2), 2, 6),
        ("version 3", b"\xff" * 16 + b"\x00\x1d\x01\x03" + peer_open()[20:29], 2, 1),
        ("unsupported optional parameter", None, 2, 4),
        ("keepalive before open", KA, 5, 1),
        ("bad marker", b"\x00" * 19, 1, 1),
    ],
)
def test_open_sent_errors(name: str, data: bytes | None, code: int | None, sub: int | None) -> None:
    if data is None:
        body = bytes.fromhex("04 fde9 005a c0000201 03 01 01 00")
        data = b"\xff" * 16 + (19 + len(body)).to_bytes(2, "big") + b"\x01" + body
    d = open_sent()
    actions = d(BytesReceived(data))
    if code is None:  # these are fine: AS 65001 fits 2 octets; an eBGP peer may share our id
        assert d.state() is State.OPEN_CONFIRM
        return
    assert sub is not None
    assert_notified(actions, code, sub)
    assert d.state() is State.IDLE
    assert timer_armed(actions, Timer.CONNECT_RETRY) is not None


def test_big_peer_as_needs_four_octet_capability() -> None:
    d = Driver(Session(cfg(peer_as=4200000002)))
    d(Start())
    d(TcpConnected(LOCAL, REMOTE))
    assert_notified(d(BytesReceived(peer_open(asn=4200000002, as4=False))), 2, 2)


def test_unexpected_messages_by_state() -> None:
    d = open_sent()
    d(BytesReceived(peer_open()))
    assert d.state() is State.OPEN_CONFIRM
    upd = b"".join(wire.withdraw_ipv4([VIP]))
    assert_notified(d(BytesReceived(upd)), 5, 2)
    d, _ = established()
    assert_notified(d(BytesReceived(peer_open())), 5, 3)


def test_notification_received_goes_down_without_answering() -> None:
    d, _ = established()
    actions = d(BytesReceived(encode(Notification.shutdown("router maintenance"))))
    assert sent_messages(actions) == []
    (down,) = of_type(actions, SessionDown)
    assert isinstance(down, SessionDown)
    assert down.received == Notification.shutdown("router maintenance")
    assert "Cease/Administrative Shutdown: 'router maintenance'" in down.reason
    assert d.state() is State.IDLE and CloseConnection() in actions


def test_tcp_closed_goes_idle_and_retries() -> None:
    d, _ = established()
    actions = d(TcpClosed("connection reset"))
    assert d.state() is State.IDLE
    assert of_type(actions, SessionDown)
    assert sent_messages(actions) == []
    d.fire(Timer.CONNECT_RETRY)
    assert d.state() is State.CONNECT
    assert OpenConnection() in d.log[-3:]


def test_stop_sends_cease_admin_shutdown() -> None:
    d, _ = established()
    actions = d(Stop("vipgate shutting down"))
    n = assert_notified(actions, 6, 2)
    assert n.shutdown_message == "vipgate shutting down"
    assert d.state() is State.IDLE
    assert Timer.CONNECT_RETRY not in d.timers  # no reconnect after stop
    assert d(TcpClosed()) == []
    # Stop while connecting: just close; stop in Idle: nothing.
    d2 = Driver(Session(cfg()))
    d2(Start())
    assert d2(Stop("x"))[:2] == [CancelTimer(Timer.CONNECT_RETRY), CloseConnection()]
    assert d2(Stop("x")) == []


def test_update_received_counts_routes() -> None:
    d, _ = established()
    pol = wire.OutboundPolicy(65001, True, True)
    upd = b"".join(wire.announce_ipv4([VIP, IPv4Network("198.51.100.0/24")], REMOTE, pol))
    actions = d(BytesReceived(upd))
    (rr,) = of_type(actions, RoutesReceived)
    assert isinstance(rr, RoutesReceived) and rr.announced == (VIP, IPv4Network("198.51.100.0/24"))
    assert len(d.s.adj_rib_in) == 2
    d(BytesReceived(b"".join(wire.withdraw_ipv4([VIP]))))
    assert d.s.adj_rib_in == {IPv4Network("198.51.100.0/24")}
    assert d.s.updates_received == 2


def test_treat_as_withdraw_keeps_session() -> None:
    d, _ = established()
    pol = wire.OutboundPolicy(65001, True, True)
    d(BytesReceived(b"".join(wire.announce_ipv4([VIP], REMOTE, pol))))
    bad = bytearray(b"".join(wire.announce_ipv4([VIP], REMOTE, pol)))
    bad[26] = 7  # ORIGIN value 7 (header 19 + 4 + flags/type/len 3 = offset 26)
    actions = d(BytesReceived(bytes(bad)))
    assert d.state() is State.ESTABLISHED
    assert sent_messages(actions) == []
    (w,) = of_type(actions, ProtocolWarning)
    assert isinstance(w, ProtocolWarning) and w.error is not None
    assert (w.error.code, w.error.subcode) == (3, 6)
    assert d.s.adj_rib_in == set() and d.s.update_errors == 1


def test_ebgp_path_must_start_with_peer_as() -> None:
    d, _ = established()
    wrong = wire.OutboundPolicy(65099, True, True)
    actions = d(BytesReceived(b"".join(wire.announce_ipv4([VIP], REMOTE, wrong))))
    assert d.state() is State.ESTABLISHED
    (w,) = of_type(actions, ProtocolWarning)
    assert isinstance(w, ProtocolWarning) and w.error is not None and w.error.subcode == 11
    assert d.s.adj_rib_in == set()


def test_route_refresh_asks_for_adj_rib_out() -> None:
    d, _ = established(families=[(1, 1)])
    actions = d(BytesReceived(encode(RouteRefresh(1, 1))))
    assert ResendAdjRibOut(1, 1) in actions
    actions = d(BytesReceived(encode(RouteRefresh(2, 1))))
    assert of_type(actions, ProtocolWarning) and not of_type(actions, ResendAdjRibOut)


def test_active_only_never_two_connections() -> None:
    d = Driver(Session(cfg()))
    with pytest.raises(LocalProtocolError):
        d(TcpConnected(LOCAL, REMOTE))  # nobody asked for a connection
    d(Start())
    d(TcpConnected(LOCAL, REMOTE))
    with pytest.raises(LocalProtocolError):
        d(TcpConnected(LOCAL, REMOTE))  # a second connection while one is open
    opens = of_type(d.log, OpenConnection)
    assert len(opens) == 1
    # Late bytes after going down are ignored, not parsed.
    d(TcpClosed())
    assert d(BytesReceived(b"\x00" * 40)) == []


# ---------------------------------------------------------------------------------- backoff


def failure_delays(rng: float, n: int, **kw: object) -> list[float]:
    d = Driver(Session(cfg(**kw), rng=lambda: rng))
    d(Start())
    delays = []
    for _ in range(n):
        actions = d(TcpClosed("connection refused"))
        retry = timer_armed(actions, Timer.CONNECT_RETRY)
        assert retry is not None
        delays.append(retry.delay)
        d.fire(Timer.CONNECT_RETRY)
        assert d.state() is State.CONNECT
    return delays


def test_backoff_bounds() -> None:
    hi = failure_delays(0.999999, 12)
    lo = failure_delays(0.0, 12)
    assert hi[0] <= 1.0 and lo[0] >= 0.5
    assert max(hi) <= 30.0 and hi[-1] > 29.0
    assert hi == sorted(hi)
    assert [round(x, 3) for x in lo[:6]] == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0]
    assert all(0.5 * h <= lo_ + 1e-9 for h, lo_ in zip(hi, lo, strict=True))


def test_backoff_resets_after_established() -> None:
    d, _ = established(rng=0.999999)
    for _ in range(4):
        d(TcpClosed())
        d.fire(Timer.CONNECT_RETRY)
        d(TcpConnected(LOCAL, REMOTE))
    d(BytesReceived(peer_open() + KA))
    assert d.state() is State.ESTABLISHED
    retry = timer_armed(d(TcpClosed()), Timer.CONNECT_RETRY)
    assert retry is not None and retry.delay <= 1.0


def test_connect_timeout() -> None:
    d = Driver(Session(cfg(connect_timeout=3.0), rng=lambda: 0.0))
    d(Start())
    actions = d.fire(Timer.CONNECT_RETRY)
    assert CloseConnection() in actions and d.state() is State.IDLE
    changes = [a for a in actions if isinstance(a, StateChanged)]
    assert "timed out" in changes[0].reason


def test_config_validation() -> None:
    for bad in ({"hold_time": 2}, {"local_as": 0}, {"router_id": IPv4Address(0)}):
        with pytest.raises(ValueError):
            cfg(**bad)


# --------------------------------------------------------------------------- never a traceback


frames = st.builds(
    lambda t, body, marker: (
        (b"\xff" * 16 if marker else b"\xfe" * 16)
        + (19 + len(body)).to_bytes(2, "big")
        + bytes([t])
        + body
    ),
    st.integers(0, 7),
    st.binary(max_size=120),
    st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(frames, min_size=1, max_size=4), st.sampled_from(["open_sent", "established"]))
def test_garbage_from_peer_never_raises(chunks: list[bytes], where: str) -> None:
    d = open_sent() if where == "open_sent" else established()[0]
    for c in chunks:
        actions = d(BytesReceived(c))
        if d.state() is State.IDLE:
            got = sent_messages(actions, d.s.as4)
            down = [a for a in actions if isinstance(a, StateChanged) and a.new is State.IDLE]
            assert down
            received_notification = "received NOTIFICATION" in down[0].reason
            assert received_notification or isinstance(got[-1], Notification)
            assert CloseConnection() in actions
            break


def test_ipv6_session_addresses() -> None:
    d = Driver(Session(cfg()))
    d(Start())
    d(TcpConnected(IPv6Address("2001:db8:0:1::11"), IPv6Address("2001:db8:0:1::1")))
    actions = d(BytesReceived(peer_open() + KA))
    (up,) = of_type(actions, SessionUp)
    assert isinstance(up, SessionUp) and up.info.local == IPv6Address("2001:db8:0:1::11")


def test_ibgp_peer_with_our_bgp_id_is_refused() -> None:
    d = Driver(Session(cfg(peer_as=65000)))
    d(Start())
    d(TcpConnected(LOCAL, REMOTE))
    assert_notified(d(BytesReceived(peer_open(asn=65000, bgp_id=ROUTER_ID))), 2, 3)


# ------------------------------------------------------------------- capability negotiation

MP4, MP6 = MultiprotocolCapability(1, 1), MultiprotocolCapability(2, 1)


def unsupported(*caps: wire.Capability, raw: bytes = b"") -> bytes:
    """NOTIFICATION 2/7 whose data lists `caps` as an OPEN encodes them (RFC 5492 section 3)."""
    data = b"".join(wire._encode_capability(c) for c in caps) + raw
    return encode(Notification(2, 7, data))


def our_open(actions: Sequence[fsm.Action]) -> Open:
    (msg,) = [m for m in sent_messages(actions) if isinstance(m, Open)]
    return msg


def reconnect(d: Driver) -> list[fsm.Action]:
    d.fire(Timer.CONNECT_RETRY)
    return d(TcpConnected(LOCAL, REMOTE))


def test_open_offers_the_configured_families_only() -> None:
    d = Driver(Session(cfg(families=frozenset({(1, 1)}))))
    d(Start())
    msg = our_open(d(TcpConnected(LOCAL, REMOTE)))
    assert msg.capabilities == (MP4, RouteRefreshCapability(), FourOctetAsCapability(65000))


@pytest.mark.parametrize("state", [State.OPEN_SENT, State.OPEN_CONFIRM])
def test_unsupported_capability_is_left_out_of_the_next_open(state: State) -> None:
    # FRR with strict-capability-match and only IPv4 unicast activated answers our OPEN so.
    d = open_sent()
    if state is State.OPEN_CONFIRM:  # the router's OPEN can arrive before its NOTIFICATION
        d(BytesReceived(peer_open(families=[(1, 1)])))
    assert d.state() is state
    actions = d(BytesReceived(unsupported(MP6)))
    (refused,) = of_type(actions, CapabilitiesRefused)
    assert refused == CapabilitiesRefused((MP6,), b"", (MP6,), frozenset({(1, 1)}))
    (down,) = [a for a in actions if isinstance(a, StateChanged)]
    assert down.new is State.IDLE
    assert "Unsupported Capability: Multiprotocol IPv6 unicast" in down.reason
    assert "next OPEN leaves out Multiprotocol IPv6 unicast" in down.reason
    assert sent_messages(actions) == []  # no NOTIFICATION back
    assert timer_armed(actions, Timer.CONNECT_RETRY) is not None
    msg = our_open(reconnect(d))
    assert msg.capabilities == (MP4, RouteRefreshCapability(), FourOctetAsCapability(65000))
    actions = d(BytesReceived(peer_open(families=[(1, 1)]) + KA))
    (up,) = of_type(actions, SessionUp)
    assert isinstance(up, SessionUp) and up.info.families == {(1, 1)}
    # Remembered for the life of the session object: also after it goes down again.
    d(TcpClosed("reset"))
    assert MP6 not in our_open(reconnect(d)).capabilities


def test_unsupported_capability_naming_nothing_we_can_leave_out() -> None:
    for data in (unsupported(), unsupported(UnknownCapability(64, b"\x00\x78"))):
        d = open_sent()
        first = d.s.offered
        actions = d(BytesReceived(data))
        (refused,) = of_type(actions, CapabilitiesRefused)
        assert isinstance(refused, CapabilitiesRefused) and refused.dropped == ()
        (down,) = [a for a in actions if isinstance(a, StateChanged)]
        assert "names nothing our OPEN can leave out" in down.reason
        assert our_open(reconnect(d)).capabilities == first


def test_unsupported_capability_with_undecodable_data() -> None:
    d = open_sent()
    actions = d(BytesReceived(unsupported(MP6, raw=b"\x01\x04\x00")))  # a truncated one
    (refused,) = of_type(actions, CapabilitiesRefused)
    assert refused == CapabilitiesRefused((MP6,), b"\x01\x04\x00", (MP6,), frozenset({(1, 1)}))
    (down,) = [a for a in actions if isinstance(a, StateChanged)]
    assert "Multiprotocol IPv6 unicast, undecodable data 010400" in down.reason


def test_refused_four_octet_as_capability_means_two_octet_session() -> None:
    d = open_sent()
    d(BytesReceived(unsupported(FourOctetAsCapability(1))))  # the value need not be ours
    msg = our_open(reconnect(d))
    assert not msg.four_octet_as and msg.my_as == 65000
    # The peer still sends its own: 4-octet AS numbers need both (RFC 6793 section 3).
    actions = d(BytesReceived(peer_open(as4=True) + KA))
    (up,) = of_type(actions, SessionUp)
    assert isinstance(up, SessionUp) and not up.info.as4 and not d.s.as4


def test_every_refused_family_leaves_ipv4_implied() -> None:
    # With no Multiprotocol capability left, IPv4 unicast is implied on both sides.
    d = Driver(Session(cfg(families=frozenset({(1, 1)})), rng=lambda: 0.0))
    d(Start())
    d(TcpConnected(LOCAL, REMOTE))
    (refused,) = of_type(d(BytesReceived(unsupported(MP4))), CapabilitiesRefused)
    assert isinstance(refused, CapabilitiesRefused) and refused.families == {(1, 1)}
    assert not any(
        isinstance(c, MultiprotocolCapability) for c in our_open(reconnect(d)).capabilities
    )
    actions = d(BytesReceived(peer_open(families=[]) + KA))
    (up,) = of_type(actions, SessionUp)
    assert isinstance(up, SessionUp) and up.info.families == {(1, 1)}


def test_families_are_what_both_offered() -> None:
    d = Driver(Session(cfg(families=frozenset({(2, 1)}))))
    d(Start())
    d(TcpConnected(LOCAL, REMOTE))
    actions = d(BytesReceived(peer_open(families=[]) + KA))  # an RFC 4271-only router
    (up,) = of_type(actions, SessionUp)
    assert isinstance(up, SessionUp) and up.info.families == frozenset()


def test_unsupported_capability_when_established_is_just_a_notification() -> None:
    d, _ = established()
    actions = d(BytesReceived(unsupported(MP6)))
    assert of_type(actions, CapabilitiesRefused) == [] and d.state() is State.IDLE
    assert MP6 in our_open(reconnect(d)).capabilities


def test_a_peer_that_sends_an_extended_open_gets_extended_opens() -> None:
    # FRR 8.4 with extended-optional-parameters sends its OPEN so and misreads a standard one
    # (NOTIFICATION 2/0): the next attempt mirrors the peer's encoding (RFC 9072 section 2).
    d = open_sent()
    assert not our_open(d.log).extended
    theirs = wire.decode_message(1, peer_open()[19:], SessionContext())
    assert isinstance(theirs, Open)
    d(BytesReceived(wire.encode_open_extended(theirs)))
    assert d.state() is State.OPEN_CONFIRM and d.s.extended_open
    d(BytesReceived(encode(Notification(2, 0))))
    msg = our_open(reconnect(d))
    assert msg.extended and msg.capabilities == d.s.capabilities()


# ------------------------------------------- the peer's connections and collisions (RFC 4271 6.8)

ACTIVE, PASSIVE = fsm.Conn.ACTIVE, fsm.Conn.PASSIVE
COLLISION = Notification(6, 7)


def sent_on(actions: Sequence[fsm.Action], conn: fsm.Conn) -> list[wire.Message]:
    data = b"".join(a.data for a in actions if isinstance(a, SendBytes) and a.conn is conn)
    return wire.Decoder(SessionContext(True)).feed_all(data)


def refused_with(actions: Sequence[fsm.Action]) -> list[wire.Message]:
    (refuse,) = of_type(actions, fsm.RefuseConnection)
    assert isinstance(refuse, fsm.RefuseConnection)
    return wire.Decoder(SessionContext(True)).feed_all(refuse.data)


def accepted() -> fsm.TcpAccepted:
    return fsm.TcpAccepted(LOCAL, REMOTE)


def test_the_peers_connection_is_taken_in_idle() -> None:
    d = Driver(Session(cfg(), rng=lambda: 0.0))
    d(Start())
    d(TcpClosed("connection refused"))  # Idle, retry armed
    actions = d(accepted())
    assert actions[:2] == [CancelTimer(Timer.CONNECT_RETRY), fsm.AcceptConnection()]
    assert isinstance(our_open(actions), Open) and sent_on(actions, ACTIVE) == []
    assert d.state() is State.OPEN_SENT and d.s.conn is PASSIVE
    assert Timer.CONNECT_RETRY not in d.timers and Timer.HOLD in d.timers
    actions = d(BytesReceived(peer_open() + KA, PASSIVE))
    assert d.state() is State.ESTABLISHED
    (up,) = of_type(actions, SessionUp)
    assert isinstance(up, SessionUp) and (up.info.local, up.info.remote) == (LOCAL, REMOTE)
    assert sent_on(actions, PASSIVE) == [Keepalive()]
    # Updates and the way down use the peer's connection; bytes for the old role are stale.
    upd = vip_update(VIP)
    assert d(SendUpdates((upd,)))[0] == SendBytes(encode(upd, SessionContext(True)), PASSIVE)
    assert d(BytesReceived(b"\xff" * 19, ACTIVE)) == []
    assert d(TcpClosed("late", ACTIVE)) == []
    actions = d(Stop("bye"))
    assert [type(m) for m in sent_on(actions, PASSIVE)] == [Notification]
    assert CloseConnection(PASSIVE) in actions


def test_a_dial_in_progress_is_dropped_for_the_peers_connection() -> None:
    d = Driver(Session(cfg()))
    d(Start())
    actions = d(accepted())
    assert actions[:3] == [
        CloseConnection(ACTIVE),
        CancelTimer(Timer.CONNECT_RETRY),
        fsm.AcceptConnection(),
    ]
    assert d.state() is State.OPEN_SENT and d.s.conn is PASSIVE
    assert d(TcpClosed("connection refused", ACTIVE)) == []  # the dropped dial's late failure
    with pytest.raises(LocalProtocolError):
        d(TcpConnected(LOCAL, REMOTE))  # the owner must drop a dial it was told to close


def test_refused_while_stopped() -> None:
    d = Driver(Session(cfg()))
    assert d(accepted()) == [fsm.RefuseConnection(b"", "the session is stopped")]
    d(Start())
    d(Stop("maintenance"))
    (refuse,) = d(accepted())
    assert isinstance(refuse, fsm.RefuseConnection) and refuse.data == b""
    assert d.state() is State.IDLE


def test_established_session_wins_over_a_new_connection() -> None:
    for our_id in ("192.0.2.11", "127.0.0.1"):  # whoever has the higher identifier
        d, _ = established(cfg(router_id=IPv4Address(our_id)))
        actions = d(accepted())
        assert refused_with(actions) == [COLLISION]
        assert d.state() is State.ESTABLISHED and d.s.conn is ACTIVE
        assert not of_type(actions, SendBytes) and not of_type(actions, CloseConnection)
        assert not of_type(actions, StateChanged) and not of_type(actions, SessionDown)
        (res,) = of_type(actions, fsm.CollisionResolved)
        assert isinstance(res, fsm.CollisionResolved) and res.kept is ACTIVE


# (our identifier, peer's identifier, our AS, peer AS, we keep our own connection)
DOMINANCE = [
    # Unsigned 32-bit: 192.0.2.11 is 0xc000020b, "negative" as a signed number.
    ("192.0.2.11", "127.0.0.1", 65000, 65001, True),
    ("127.0.0.1", "192.0.2.11", 65000, 65001, False),
    ("255.255.255.254", "255.255.255.253", 65000, 65001, True),
    ("0.0.0.1", "128.0.0.0", 65000, 65001, False),
    # Equal identifiers (eBGP, RFC 6286 2.3): the higher AS number.
    ("192.0.2.1", "192.0.2.1", 65002, 65001, True),
    ("192.0.2.1", "192.0.2.1", 65000, 4200000000, False),
]


def collision_driver(our_id: str, our_as: int, peer_as: int) -> Driver:
    """Our connection in OpenSent, then the peer's connection arrives: the candidate."""
    d = Driver(Session(cfg(router_id=IPv4Address(our_id), local_as=our_as, peer_as=peer_as)))
    d(Start())
    d(TcpConnected(LOCAL, REMOTE))
    actions = d(accepted())
    assert actions[0] == fsm.AcceptConnection()
    assert [type(m) for m in sent_on(actions, PASSIVE)] == [Open]
    assert d.s.candidate is not None and d.s.conn is ACTIVE and d.state() is State.OPEN_SENT
    return d


def check_resolution(d: Driver, actions: Sequence[fsm.Action], keep_ours: bool) -> None:
    loser, winner = (PASSIVE, ACTIVE) if keep_ours else (ACTIVE, PASSIVE)
    assert COLLISION in sent_on(actions, loser) and CloseConnection(loser) in actions
    assert CloseConnection(winner) not in actions
    assert COLLISION not in sent_on(actions, winner)
    assert d.s.candidate is None and d.s.conn is winner
    (res,) = of_type(actions, fsm.CollisionResolved)
    assert isinstance(res, fsm.CollisionResolved) and res.kept is winner
    assert Timer.CONNECT_RETRY not in d.timers  # not a way down: no backoff


@pytest.mark.parametrize(("our_id", "peer_id", "our_as", "peer_as", "keep_ours"), DOMINANCE)
@pytest.mark.parametrize("first", [ACTIVE, PASSIVE])
def test_collision_the_dominant_speakers_connection_survives(
    our_id: str, peer_id: str, our_as: int, peer_as: int, keep_ours: bool, first: fsm.Conn
) -> None:
    d = collision_driver(our_id, our_as, peer_as)
    popen = peer_open(asn=peer_as, bgp_id=IPv4Address(peer_id))
    actions = d(BytesReceived(popen, first))  # the first OPEN, on either connection, decides
    check_resolution(d, actions, keep_ours)
    winner = d.s.conn
    if winner is not first:  # the winner's OPEN is still to come
        assert d.state() is State.OPEN_SENT
        d(BytesReceived(popen, winner))
    assert d.state() is State.OPEN_CONFIRM
    actions = d(BytesReceived(KA, winner))
    assert d.state() is State.ESTABLISHED and of_type(actions, SessionUp)
    assert d(BytesReceived(popen, (PASSIVE if winner is ACTIVE else ACTIVE))) == []


def test_candidate_open_and_keepalive_in_one_read() -> None:
    d = collision_driver("127.0.0.1", 65000, 65001)
    actions = d(BytesReceived(peer_open() + KA, PASSIVE))  # the peer (192.0.2.1) dominates
    check_resolution(d, actions, keep_ours=False)
    assert d.state() is State.ESTABLISHED and of_type(actions, SessionUp)


@pytest.mark.parametrize(("our_id", "peer_id", "our_as", "peer_as", "keep_ours"), DOMINANCE)
def test_collision_in_open_confirm_is_decided_when_the_connection_arrives(
    our_id: str, peer_id: str, our_as: int, peer_as: int, keep_ours: bool
) -> None:
    d = Driver(Session(cfg(router_id=IPv4Address(our_id), local_as=our_as, peer_as=peer_as)))
    d(Start())
    d(TcpConnected(LOCAL, REMOTE))
    d(BytesReceived(peer_open(asn=peer_as, bgp_id=IPv4Address(peer_id))))
    assert d.state() is State.OPEN_CONFIRM and Timer.KEEPALIVE in d.timers
    actions = d(accepted())
    if keep_ours:
        assert refused_with(actions) == [COLLISION] and d.state() is State.OPEN_CONFIRM
        assert not of_type(actions, fsm.AcceptConnection)
        return
    assert COLLISION in sent_on(actions, ACTIVE) and CloseConnection(ACTIVE) in actions
    assert fsm.AcceptConnection() in actions and [type(m) for m in sent_on(actions, PASSIVE)] == [
        Open
    ]
    assert d.state() is State.OPEN_SENT and d.s.conn is PASSIVE
    assert Timer.KEEPALIVE not in d.timers and Timer.CONNECT_RETRY not in d.timers


def test_ours_without_an_open_wins_a_collision_once() -> None:
    """RFC 4271 6.8 examines connections in OpenConfirm: ours, still without the peer's OPEN,
    wins against the first connection of the peer's that brings one; a second such connection
    means the peer does not know ours (half-open: its reset lost while the link was down), so
    ours is closed and the session goes on with the peer's -- not 4 minutes of 6/7s."""
    d = collision_driver("192.0.2.11", 65000, 65001)  # we dominate the peer's 192.0.2.1
    actions = d(BytesReceived(peer_open(), PASSIVE))
    check_resolution(d, actions, keep_ours=True)
    assert d.state() is State.OPEN_SENT
    actions = d(accepted())  # the peer dials again: it never got our connection
    assert fsm.AcceptConnection() in actions and d.s.candidate is not None
    actions = d(BytesReceived(peer_open() + KA, PASSIVE))
    check_resolution(d, actions, keep_ours=False)
    assert d.state() is State.ESTABLISHED and of_type(actions, SessionUp)
    assert d.s.failures == 0 and not of_type(actions, OpenConnection)
    # A new connection of ours wins the first collision again.
    d = collision_driver("192.0.2.11", 65000, 65001)
    d(BytesReceived(peer_open(), PASSIVE))
    d(TcpClosed("reset", ACTIVE))  # ours lost: Idle, then a new dial
    d.fire(Timer.CONNECT_RETRY)
    d(TcpConnected(LOCAL, REMOTE))
    d(accepted())
    actions = d(BytesReceived(peer_open(), PASSIVE))
    check_resolution(d, actions, keep_ours=True)


def test_our_connection_failing_leaves_the_candidate() -> None:
    d = collision_driver("192.0.2.11", 65000, 65001)
    # The peer resolved the collision before us (or just closed our connection).
    actions = d(BytesReceived(encode(COLLISION), ACTIVE))
    assert sent_on(actions, ACTIVE) == [] and CloseConnection(ACTIVE) in actions
    assert d.s.conn is PASSIVE and d.s.candidate is None and d.state() is State.OPEN_SENT
    assert Timer.CONNECT_RETRY not in d.timers and Timer.HOLD in d.timers
    assert not of_type(actions, OpenConnection) and not of_type(actions, SendBytes)
    d(BytesReceived(peer_open() + KA, PASSIVE))
    assert d.state() is State.ESTABLISHED


def test_candidate_failures_leave_our_connection() -> None:
    cases: list[tuple[fsm.Event, Notification | None]] = [
        (TcpClosed("reset", PASSIVE), None),
        (BytesReceived(encode(Notification(6, 7)), PASSIVE), None),
        (BytesReceived(KA, PASSIVE), Notification(5, 1)),
        (BytesReceived(b"\x00" * 19, PASSIVE), Notification(1, 1)),
    ]
    for event, answer in cases:
        d = collision_driver("192.0.2.11", 65000, 65001)
        actions = d(event)
        assert d.s.candidate is None and d.s.conn is ACTIVE and d.state() is State.OPEN_SENT
        assert CloseConnection(PASSIVE) in actions and CloseConnection(ACTIVE) not in actions
        assert sent_on(actions, PASSIVE) == ([answer] if answer else []), event
        d(BytesReceived(peer_open() + KA))
        assert d.state() is State.ESTABLISHED


def test_a_newer_connection_of_the_peers_replaces_an_earlier_one() -> None:
    d = collision_driver("192.0.2.11", 65000, 65001)
    actions = d(accepted())  # a second connection while the candidate waits
    assert actions[:3] == [
        SendBytes(encode(COLLISION), PASSIVE),
        fsm.MessageSent("NOTIFICATION"),
        CloseConnection(PASSIVE),
    ]
    assert fsm.AcceptConnection() in actions and d.s.candidate is not None
    # The session on the peer's connection, not Established: replaced by a newer one.
    d2 = Driver(Session(cfg()))
    d2(Start())
    d2(accepted())
    d2(BytesReceived(peer_open(), PASSIVE))
    assert d2.state() is State.OPEN_CONFIRM
    actions = d2(accepted())
    assert COLLISION in sent_on(actions, PASSIVE)
    assert actions.index(CloseConnection(PASSIVE)) < actions.index(fsm.AcceptConnection())
    assert d2.state() is State.OPEN_SENT and d2.s.conn is PASSIVE and d2.s.peer_open is None


def test_stop_closes_both_connections_with_the_cease() -> None:
    d = collision_driver("192.0.2.11", 65000, 65001)
    actions = d(Stop("node drain"))
    for conn in (ACTIVE, PASSIVE):
        (n,) = sent_on(actions, conn)
        assert isinstance(n, Notification) and n.shutdown_message == "node drain"
        assert CloseConnection(conn) in actions
    assert d.s.candidate is None and d.state() is State.IDLE
    assert Timer.CONNECT_RETRY not in d.timers


def test_hold_expiry_of_ours_goes_on_with_the_candidate() -> None:
    d = collision_driver("192.0.2.11", 65000, 65001)
    actions = d.fire(Timer.HOLD)
    assert sent_on(actions, ACTIVE) == [Notification(4, 0)]
    assert d.s.conn is PASSIVE and d.state() is State.OPEN_SENT and Timer.HOLD in d.timers


@st.composite
def two_connection_events(draw: st.DrawFn) -> list[fsm.Event | Timer]:
    ids = [IPv4Address("127.0.0.1"), IPv4Address("192.0.2.1"), ROUTER_ID]
    payloads = [
        *(peer_open(bgp_id=i) for i in ids),
        KA,
        encode(COLLISION),
        b"\x00" * 19,
        peer_open()[:7],
    ]
    one = st.one_of(
        st.just(accepted()),
        st.builds(TcpClosed, st.just("x"), st.sampled_from([ACTIVE, PASSIVE])),
        st.builds(BytesReceived, st.sampled_from(payloads), st.sampled_from([ACTIVE, PASSIVE])),
        st.sampled_from(list(Timer)),
        st.just(fsm.PeerReachable()),
        st.just(TcpConnected(LOCAL, REMOTE)),
        st.just(Stop("x")),
        st.just(Start()),
    )
    return draw(st.lists(one, max_size=30))


@settings(max_examples=300, deadline=None)
@given(two_connection_events())
def test_two_connections_invariants(events: list[fsm.Event | Timer]) -> None:
    d = Driver(Session(cfg(), rng=lambda: 0.5))
    d(Start())
    open_conns = {ACTIVE}  # what the owner holds (dialing counts)
    for ev in events:
        if isinstance(ev, Timer):
            if ev not in d.timers:
                continue
            actions = d.fire(ev)
        elif isinstance(ev, TcpConnected):
            if d.state() is not State.CONNECT:
                continue  # the owner never reports a dial it was told to drop
            actions = d(ev)
        elif isinstance(ev, Start) and d.state() is not State.IDLE:
            continue
        else:
            actions = d(ev)
        for a in actions:
            if isinstance(a, CloseConnection):
                open_conns.discard(a.conn)
            elif isinstance(a, fsm.AcceptConnection):
                open_conns.add(PASSIVE)
            elif isinstance(a, OpenConnection):
                open_conns.add(ACTIVE)
            elif isinstance(a, SendBytes):
                assert a.conn in open_conns, (a, open_conns)
        s = d.s
        if s.candidate is not None:
            assert s.state is State.OPEN_SENT and s.conn is ACTIVE
            assert open_conns == {ACTIVE, PASSIVE}
        if s.state is not State.IDLE:
            assert s.conn in open_conns
        else:
            assert not open_conns and s.candidate is None
        sent = [
            m
            for a in actions
            if isinstance(a, SendBytes)
            for m in wire.Decoder(SessionContext(True)).feed_all(a.data)
            if isinstance(m, Notification)
        ]
        # Nothing in these events is a protocol error of ours to punish (rule 8), except
        # what the peer got wrong (the garbage header, the unexpected KEEPALIVE) and the
        # hold timer.
        assert all(n.code in (1, 4, 5, 6) for n in sent), sent


# ------------------------------------------------------------------------- retries (rule 9)


def loss_delays(d: Driver, n: int) -> list[float]:
    """Failed attempts after a loss: the delay before each next attempt."""
    delays = []
    for _ in range(n):
        actions = d(TcpClosed("connection refused"))
        retry = timer_armed(actions, Timer.CONNECT_RETRY)
        assert retry is not None
        delays.append(retry.delay)
        d.fire(Timer.CONNECT_RETRY)
    return delays


@pytest.mark.parametrize("rng", [0.0, 0.5, 0.999999])
def test_fast_retries_after_a_session_loss_then_the_backoff(rng: float) -> None:
    d, _ = established(rng=rng)
    actions = d(BytesReceived(encode(Notification.shutdown("restart"))))
    window = timer_armed(actions, Timer.FAST_RETRY)
    assert window is not None and window.delay == 30.0
    first = timer_armed(actions, Timer.CONNECT_RETRY)
    assert first is not None and first.delay == pytest.approx(0.5 + 0.5 * rng)
    d.fire(Timer.CONNECT_RETRY)
    fast = loss_delays(d, 40)  # far more than the exponential backoff would allow in 30 s
    assert fast == [pytest.approx(0.5 + 0.5 * rng)] * 40
    d.fire(Timer.FAST_RETRY)  # the window is over: the backoff from its first step
    slow = loss_delays(d, 7)
    assert [round(x / (0.5 + 0.5 * rng), 6) for x in slow] == [1, 2, 4, 8, 16, 30, 30]


def test_fast_retry_window_ends_on_established_and_stop() -> None:
    d, _ = established(rng=0.0)
    d(TcpClosed())
    assert Timer.FAST_RETRY in d.timers
    d.fire(Timer.CONNECT_RETRY)
    d(TcpConnected(LOCAL, REMOTE))
    actions = d(BytesReceived(peer_open() + KA))
    assert CancelTimer(Timer.FAST_RETRY) in actions and Timer.FAST_RETRY not in d.timers
    d(TcpClosed())
    assert Timer.FAST_RETRY in d.timers  # a new loss, a new window
    assert CancelTimer(Timer.FAST_RETRY) in d(Stop("x"))
    # A first start that fails: the backoff as before, no window.
    d2 = Driver(Session(cfg(), rng=lambda: 0.0))
    d2(Start())
    assert loss_delays(d2, 3) == [0.5, 1.0, 2.0] and Timer.FAST_RETRY not in d2.timers
    # The window can be turned off.
    d3, _ = established(cfg(fast_retry_window=0), rng=0.0)
    d3(TcpClosed())
    assert Timer.FAST_RETRY not in d3.timers


@pytest.mark.parametrize("rng", [0.0, 0.999999])
def test_refused_dials_retry_at_the_fast_cadence_whatever_the_outage(rng: float) -> None:
    """Rule 9: a RST (the host up, its BGP not listening: a router restarting) is retried every
    fast_retry_min..max seconds long after the window; other failures back off from the first
    step again."""
    d, _ = established(rng=rng)
    d(TcpClosed())
    d.fire(Timer.FAST_RETRY)  # the window is over (an outage longer than 30 s)
    fast = 0.5 + 0.5 * rng
    for _ in range(200):
        d.fire(Timer.CONNECT_RETRY)
        retry = timer_armed(d(TcpClosed("connection refused", refused=True)), Timer.CONNECT_RETRY)
        assert retry is not None and retry.delay == pytest.approx(fast)
    d.fire(Timer.CONNECT_RETRY)
    slow = loss_delays(d, 4)  # timeouts, unreachable: the backoff, from its first step
    assert [round(x / fast, 6) for x in slow] == [1, 2, 4, 8]
    # From a first start too (no window): refusals are retried quickly.
    d2 = Driver(Session(cfg(), rng=lambda: rng))
    d2(Start())
    for _ in range(20):
        retry = timer_armed(d2(TcpClosed("refused", refused=True)), Timer.CONNECT_RETRY)
        assert retry is not None and retry.delay == pytest.approx(fast)
        d2.fire(Timer.CONNECT_RETRY)
    assert Timer.FAST_RETRY not in d2.timers


def test_peer_reachable_retries_at_once() -> None:
    d = Driver(Session(cfg(), rng=lambda: 0.0))
    d(Start())
    d(TcpClosed("no route to host"))
    assert d.state() is State.IDLE and Timer.CONNECT_RETRY in d.timers
    actions = d(fsm.PeerReachable("route to 192.0.2.1 back"))
    assert actions[0] == CancelTimer(Timer.CONNECT_RETRY)
    assert OpenConnection() in actions and d.state() is State.CONNECT
    # In Connect: the dial may be stuck in SYN retransmissions: a new one.
    actions = d(fsm.PeerReachable("link up"))
    assert actions.index(CloseConnection(ACTIVE)) < actions.index(OpenConnection())
    assert d.state() is State.CONNECT
    # Stopped, or already in a session: nothing.
    d(Stop("x"))
    assert d(fsm.PeerReachable()) == []
    e, _ = established()
    assert e(fsm.PeerReachable()) == []


# --------------------------------------------------------------- NOTIFICATIONs sent (rule 8)


def test_our_own_reasons_end_sessions_with_a_cease(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop, BFD Down, a collision, a bug in our decoder: Cease only (rule 8)."""
    sent: list[Notification] = []
    d, _ = established()
    sent += sent_on(d(Stop("maintenance")), ACTIVE)  # type: ignore[arg-type]
    d, _ = established()
    sent += sent_on(d(Stop("BFD Down", subcode=10)), ACTIVE)  # type: ignore[arg-type]
    d, _ = established()
    sent += refused_with(d(accepted()))  # type: ignore[arg-type]
    d = collision_driver("192.0.2.11", 65000, 65001)
    sent += sent_on(d(BytesReceived(peer_open(), ACTIVE)), PASSIVE)  # type: ignore[arg-type]
    d, _ = established()

    def broken(self: wire.Decoder) -> None:
        raise RuntimeError("decoder bug")

    with monkeypatch.context() as m:
        m.setattr(wire.Decoder, "next_message", broken)
        actions = d(BytesReceived(KA))
    sent += sent_on(actions, ACTIVE)  # type: ignore[arg-type]
    assert [(n.code, n.subcode) for n in sent] == [(6, 2), (6, 10), (6, 7), (6, 7), (6, 0)]


def test_the_peer_adapter_carries_out_every_action_type() -> None:
    """vipgate.bgp.peer dispatches the core's actions by type: one handler each, none left out."""
    assert set(ACTIONS) == set(typing.get_args(fsm.Action))


# ------------------------------------------------- OPEN held after a 2/0 (rule 7, DelayOpen)


def extended_peer_open(bgp_id: IPv4Address = PEER_ID) -> bytes:
    theirs = wire.decode_message(1, peer_open(bgp_id=bgp_id)[19:], SessionContext())
    assert isinstance(theirs, Open)
    return wire.encode_open_extended(theirs)


def rejected_blind() -> Driver:
    """FRR 8.4 (RFC 9072 extended OPEN) answered our standard OPEN with 2/0 before its own OPEN
    reached us: its encoding is unknown."""
    d = open_sent()
    d(BytesReceived(encode(Notification(2, 0))))
    assert d.state() is State.IDLE and d.s.delay_open and not d.s.extended_open
    return d


def test_after_a_blind_2_0_the_peers_connection_waits_for_its_open() -> None:
    d = rejected_blind()
    actions = d(accepted())
    assert fsm.AcceptConnection() in actions and sent_on(actions, PASSIVE) == []
    assert d.state() is State.OPEN_SENT and d.s.open_held
    held = timer_armed(actions, Timer.DELAY_OPEN)
    assert held is not None and held.delay == fsm.DELAY_OPEN_TIME
    actions = d(BytesReceived(extended_peer_open(), PASSIVE))
    sent = sent_on(actions, PASSIVE)
    assert [type(m) for m in sent] == [Open, Keepalive]  # RFC 4271 8.2.2 (DelayOpen): both
    assert isinstance(sent[0], Open) and sent[0].extended
    assert CancelTimer(Timer.DELAY_OPEN) in actions and not d.s.delay_open
    d(BytesReceived(KA, PASSIVE))
    assert d.state() is State.ESTABLISHED
    # Learnt: every later OPEN is extended and sent at once, dialed or accepted.
    d(TcpClosed("reset", PASSIVE))
    assert our_open(reconnect(d)).extended
    d(TcpClosed("reset"))
    assert our_open(d(accepted())).extended


def test_a_held_open_goes_out_standard_when_the_peer_sends_none() -> None:
    d = rejected_blind()
    actions = reconnect(d)  # our own dial waits for the peer's OPEN too
    assert sent_on(actions, ACTIVE) == [] and Timer.DELAY_OPEN in d.timers
    actions = d.fire(Timer.DELAY_OPEN)
    msg = our_open(actions)
    assert not msg.extended and msg.capabilities == d.s.capabilities()
    assert not d.s.open_held and d.state() is State.OPEN_SENT
    d(BytesReceived(peer_open() + KA))  # a standard peer after all
    assert d.state() is State.ESTABLISHED and not d.s.delay_open


def test_nothing_is_held_without_a_blind_2_0() -> None:
    # A 2/0 after the peer's OPEN (its encoding known), or another NOTIFICATION: sent at once.
    d = open_sent()
    d(BytesReceived(peer_open()))
    d(BytesReceived(encode(Notification(2, 0))))
    assert not d.s.delay_open and isinstance(our_open(reconnect(d)), Open)
    e = open_sent()
    e(BytesReceived(encode(Notification(2, 2))))
    assert not e.s.delay_open and isinstance(our_open(e(accepted())), Open)


@pytest.mark.parametrize("peer_wins", [True, False])
def test_the_encoding_is_learnt_from_a_candidates_open(peer_wins: bool) -> None:
    """The candidate (the peer's connection beside ours) held too; its OPEN teaches the
    encoding whichever connection the collision keeps."""
    d = rejected_blind()
    reconnect(d)
    actions = d(accepted())
    assert sent_on(actions, PASSIVE) == [] and d.s.candidate is not None
    peer_id = IPv4Address("192.0.2.200") if peer_wins else IPv4Address("192.0.2.2")
    actions = d(BytesReceived(extended_peer_open(peer_id), PASSIVE))
    assert d.s.extended_open and not d.s.delay_open
    if peer_wins:  # the candidate goes on: our OPEN (extended) then KEEPALIVE on it
        assert d.s.conn is PASSIVE and d.state() is State.OPEN_CONFIRM
        sent = sent_on(actions, PASSIVE)
        assert [type(m) for m in sent] == [Open, Keepalive]
        assert isinstance(sent[0], Open) and sent[0].extended
        assert sent_on(actions, ACTIVE) == [COLLISION]
    else:  # ours goes on, its OPEN still held until the peer's OPEN on it
        assert sent_on(actions, PASSIVE) == [COLLISION] and d.s.conn is ACTIVE
        actions = d(BytesReceived(extended_peer_open(peer_id)))
        assert [type(m) for m in sent_on(actions, ACTIVE)] == [Open, Keepalive]
        assert our_open(actions).extended
