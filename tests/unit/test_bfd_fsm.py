"""BFD session state machine (vipgate.bfd.fsm), no sockets: the state table, timer negotiation,
Poll/Final, slow transmission, jitter bounds, detection time."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vipgate.bfd.fsm import (
    RECEIVED,
    SLOW_TX_US,
    Action,
    AdminDown,
    ArmTimer,
    ChangeTimers,
    Discarded,
    PacketReceived,
    Send,
    Session,
    SessionConfig,
    Start,
    StateChanged,
    Timer,
    TimerFired,
    TxOpportunity,
    jitter_factor,
)
from vipgate.bfd.wire import ControlPacket, Diag, State, decode

LOCAL = 0x1000
PEER = 0x2000


def session(rng: float = 1.0, **kw: int) -> Session:
    cfg = SessionConfig(local_discr=LOCAL, **kw)
    return Session(cfg, rng=lambda: rng)


def peer(state: State, **kw: object) -> ControlPacket:
    args: dict[str, object] = {
        "my_discr": PEER,
        "your_discr": LOCAL if state is not State.DOWN else 0,
        "detect_mult": 3,
        "desired_min_tx": 300_000,
        "required_min_rx": 300_000,
    }
    args.update(kw)
    return ControlPacket(state, **args)  # type: ignore[arg-type]


def sent(actions: Sequence[Action]) -> list[ControlPacket]:
    out = [a.packet for a in actions if isinstance(a, Send)]
    for a in actions:  # what goes on the wire is what the packet says
        if isinstance(a, Send):
            assert decode(a.data) == a.packet
    return out


def changes(actions: Sequence[Action]) -> list[tuple[State, State, Diag]]:
    return [(a.old, a.new, a.diag) for a in actions if isinstance(a, StateChanged)]


def armed(actions: Sequence[Action], timer: Timer) -> ArmTimer:
    arms = [a for a in actions if isinstance(a, ArmTimer) and a.timer is timer]
    assert arms, f"no {timer} armed in {actions}"
    return arms[-1]


def bring_up(s: Session, now: float = 0.0) -> list[Action]:
    s.handle(Start(now))
    s.handle(PacketReceived(peer(State.DOWN), now + 0.1))  # -> Init
    return s.handle(PacketReceived(peer(State.UP), now + 0.2))  # -> Up


# ------------------------------------------------------------------------------ state table


def test_start_goes_down_and_sends_slowly() -> None:
    s = session()
    acts = s.handle(Start(10.0))
    assert changes(acts) == [(State.ADMIN_DOWN, State.DOWN, Diag.NONE)]
    (p,) = sent(acts)
    assert (p.state, p.your_discr, p.desired_min_tx, p.required_min_rx) == (
        State.DOWN,
        0,
        SLOW_TX_US,
        300_000,
    )
    # not Up: at least 1 s between packets (rng 1.0 = no jitter reduction)
    assert armed(acts, Timer.TX).at == pytest.approx(11.0)


def test_three_way_handshake_down_init_up() -> None:
    s = session()
    s.handle(Start(0.0))
    acts = s.handle(PacketReceived(peer(State.DOWN), 0.1))
    assert changes(acts) == [(State.DOWN, State.INIT, Diag.NONE)]
    assert s.remote_discr == PEER
    acts = s.handle(PacketReceived(peer(State.UP), 0.2))
    assert changes(acts) == [(State.INIT, State.UP, Diag.NONE)]
    assert s.up


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [
        (State.DOWN, State.DOWN, (State.INIT, Diag.NONE)),
        (State.DOWN, State.INIT, (State.UP, Diag.NONE)),
        (State.DOWN, State.UP, None),
        (State.DOWN, State.ADMIN_DOWN, None),
        (State.INIT, State.DOWN, None),
        (State.INIT, State.INIT, (State.UP, Diag.NONE)),
        (State.INIT, State.UP, (State.UP, Diag.NONE)),
        (State.INIT, State.ADMIN_DOWN, (State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN)),
        (State.UP, State.DOWN, (State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN)),
        (State.UP, State.INIT, None),
        (State.UP, State.UP, None),
        (State.UP, State.ADMIN_DOWN, (State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN)),
    ],
)
def test_received_state_table(
    ours: State, theirs: State, expected: tuple[State, Diag] | None
) -> None:
    """RFC 5880 6.8.6, every pair: the table and the session that uses it agree."""
    assert RECEIVED.get((ours, theirs)) == expected
    s = session()
    s.handle(Start(0.0))
    if ours is not State.DOWN:
        s.handle(PacketReceived(peer(State.DOWN), 0.1))
    if ours is State.UP:
        s.handle(PacketReceived(peer(State.UP), 0.2))
    assert s.state is ours
    acts = s.handle(PacketReceived(peer(theirs, your_discr=LOCAL), 0.3))
    if expected is None:
        assert changes(acts) == []
        assert s.state is ours
    else:
        assert changes(acts) == [(ours, expected[0], expected[1])]
        assert s.local_diag is expected[1]  # the diag our packets carry from now on


def test_admin_down_sends_diag_7_at_once_and_ignores_packets() -> None:
    s = session()
    bring_up(s)
    acts = s.handle(AdminDown(1.0))
    assert changes(acts) == [(State.UP, State.ADMIN_DOWN, Diag.ADMINISTRATIVELY_DOWN)]
    (p,) = sent(acts)
    assert (p.state, p.diag) == (State.ADMIN_DOWN, Diag.ADMINISTRATIVELY_DOWN)
    tx = armed(acts, Timer.TX)
    assert tx.at >= 1.0 + 0.75 * SLOW_TX_US * 1e-6
    acts = s.handle(PacketReceived(peer(State.UP), 1.1))
    assert [a.rule for a in acts if isinstance(a, Discarded)] == ["admin_down"]
    assert s.state is State.ADMIN_DOWN
    # and it goes on saying AdminDown, slowly, while driven
    acts = s.handle(TimerFired(Timer.TX, tx.generation, tx.at))
    assert [(p.state, p.diag) for p in sent(acts)] == [
        (State.ADMIN_DOWN, Diag.ADMINISTRATIVELY_DOWN)
    ]


def test_packet_for_another_discriminator_is_discarded() -> None:
    s = session()
    s.handle(Start(0.0))
    acts = s.handle(PacketReceived(peer(State.DOWN, your_discr=LOCAL + 1), 0.1))
    assert [a.rule for a in acts if isinstance(a, Discarded)] == ["your_discriminator"]
    assert s.state is State.DOWN and s.remote_discr == 0


# ------------------------------------------------------------------------ timers, Poll/Final


def test_going_up_advertises_the_fast_rate_with_a_poll_and_final_ends_it() -> None:
    s = session(desired_min_tx=300_000, required_min_rx=300_000)
    acts = bring_up(s, 0.0)
    polls = [p for p in sent(acts) if p.poll]
    assert polls and polls[0].desired_min_tx == 300_000 and polls[0].state is State.UP
    assert s.polling
    # a decrease takes effect at once: the next packet within 300 ms, not 1 s
    assert armed(acts, Timer.TX).at == pytest.approx(0.2 + 0.3)
    # periodic packets carry P until the Final
    tx = s.handle(TimerFired(Timer.TX, armed(acts, Timer.TX).generation, 0.5))
    assert [p.poll for p in sent(tx)] == [True]
    s.handle(PacketReceived(peer(State.UP, final=True), 0.6))
    assert not s.polling
    tx = s.handle(TimerFired(Timer.TX, s._generation[Timer.TX], 0.8))
    assert [p.poll for p in sent(tx)] == [False]


def test_received_poll_is_answered_at_once_with_final_and_without_poll() -> None:
    s = session()
    bring_up(s)
    acts = s.handle(PacketReceived(peer(State.UP, poll=True), 1.0))
    finals = [p for p in sent(acts) if p.final]
    assert len(finals) == 1 and not finals[0].poll
    assert not any(isinstance(a, ArmTimer) and a.timer is Timer.TX for a in acts)


def test_increase_of_desired_tx_waits_for_the_final() -> None:
    s = session()
    bring_up(s)
    s.handle(PacketReceived(peer(State.UP, final=True), 0.3))
    assert s.tx_in_use == 300_000
    acts = s.handle(ChangeTimers(desired_min_tx=900_000, required_min_rx=300_000, now=1.0))
    assert [(p.poll, p.desired_min_tx) for p in sent(acts)] == [(True, 900_000)]
    assert s.tx_in_use == 300_000  # old rate until the Final
    s.handle(PacketReceived(peer(State.UP, final=True), 1.1))
    assert s.tx_in_use == 900_000 and not s.polling


def test_reduced_required_rx_keeps_old_detection_time_until_final() -> None:
    s = session(required_min_rx=600_000)
    bring_up(s)
    s.handle(PacketReceived(peer(State.UP, final=True, desired_min_tx=100_000), 0.3))
    assert s.detection_time() == pytest.approx(3 * 0.6)
    s.handle(ChangeTimers(desired_min_tx=300_000, required_min_rx=200_000, now=1.0))
    s.handle(PacketReceived(peer(State.UP, desired_min_tx=100_000), 1.1))
    assert s.detection_time() == pytest.approx(3 * 0.6)
    s.handle(PacketReceived(peer(State.UP, final=True, desired_min_tx=100_000), 1.2))
    assert s.detection_time() == pytest.approx(3 * 0.2)


def test_change_during_a_poll_needs_a_final_after_the_change() -> None:
    s = session()
    bring_up(s)  # poll 1 s -> 300 ms in progress
    s.handle(ChangeTimers(desired_min_tx=200_000, required_min_rx=300_000, now=0.3))
    s.handle(PacketReceived(peer(State.UP, final=True), 0.31))  # answers the first Poll
    assert s.polling
    s.handle(PacketReceived(peer(State.UP, final=True), 0.5))
    assert not s.polling and s.tx_in_use == 200_000


@pytest.mark.parametrize(
    ("ours", "their_rx", "expected_us"),
    [
        ((300_000, 300_000), 10_000, 300_000),  # BIRD's 10 ms min rx: our 300 ms wins
        ((300_000, 300_000), 500_000, 500_000),  # the peer wants fewer: its value wins
        ((50_000, 300_000), 50_000, 50_000),
    ],
)
def test_transmit_interval_negotiation(
    ours: tuple[int, int], their_rx: int, expected_us: int
) -> None:
    s = session(desired_min_tx=ours[0], required_min_rx=ours[1])
    bring_up(s)
    s.handle(PacketReceived(peer(State.UP, final=True, required_min_rx=their_rx), 0.3))
    assert s.tx_interval_us() == expected_us


def test_detection_time_from_negotiated_values() -> None:
    s = session(required_min_rx=300_000)
    bring_up(s)
    # BIRD defaults: tx 100 ms, mult 5 -> 5 x max(300 ms, 100 ms)
    s.handle(PacketReceived(peer(State.UP, desired_min_tx=100_000, detect_mult=5), 0.3))
    assert s.detection_time() == pytest.approx(1.5)
    s.handle(PacketReceived(peer(State.UP, desired_min_tx=400_000, detect_mult=2), 0.4))
    assert s.detection_time() == pytest.approx(0.8)


def test_detection_timer_expiry_goes_down_with_diag_1_and_forgets_the_peer() -> None:
    s = session()
    s.handle(Start(0.0))
    det = armed(s.handle(PacketReceived(peer(State.DOWN), 0.1)), Timer.DETECT)
    assert det.at == pytest.approx(0.1 + 3 * 0.3)
    s.handle(PacketReceived(peer(State.UP), 0.2))
    assert s.up
    # every packet moves the deadline; the timer armed before it is stale
    det = armed(s.handle(PacketReceived(peer(State.UP), 0.7)), Timer.DETECT)
    assert det.at == pytest.approx(0.7 + 0.9)
    assert s.handle(TimerFired(Timer.DETECT, det.generation - 1, 1.0)) == []
    assert s.up
    acts = s.handle(TimerFired(Timer.DETECT, det.generation, det.at))
    assert changes(acts) == [(State.UP, State.DOWN, Diag.CONTROL_DETECTION_TIME_EXPIRED)]
    assert s.remote_discr == 0
    # back to the slow rate, the diag in the packets
    tx = s.handle(TimerFired(Timer.TX, s._generation[Timer.TX], det.at + 0.3))
    (p,) = sent(tx)
    assert (p.state, p.diag, p.desired_min_tx, p.your_discr) == (
        State.DOWN,
        Diag.CONTROL_DETECTION_TIME_EXPIRED,
        SLOW_TX_US,
        0,
    )


def test_stale_timer_is_ignored() -> None:
    s = session()
    acts = s.handle(Start(0.0))
    old = armed(acts, Timer.TX)
    s.handle(TimerFired(Timer.TX, old.generation, old.at))
    assert s.handle(TimerFired(Timer.TX, old.generation, old.at + 1)) == []


def test_no_periodic_packets_when_peer_rx_is_zero_or_in_demand_mode() -> None:
    s = session()
    bring_up(s)
    s.handle(PacketReceived(peer(State.UP, final=True, required_min_rx=0), 0.3))
    tx = s.handle(TimerFired(Timer.TX, s._generation[Timer.TX], 1.5))
    assert sent(tx) == []
    s.handle(PacketReceived(peer(State.UP, demand=True), 1.6))
    tx = s.handle(TimerFired(Timer.TX, s._generation[Timer.TX], 3.0))
    assert sent(tx) == []
    # a Poll from the peer is still answered
    assert [p.final for p in sent(s.handle(PacketReceived(peer(State.UP, poll=True), 3.1)))] == [
        True
    ]


# ----------------------------------------------------------------------------------- jitter


@given(st.floats(min_value=0.0, max_value=1.0, exclude_max=True), st.integers(1, 255))
def test_jitter_bounds(u: float, mult: int) -> None:
    f = jitter_factor(u, mult)
    assert 0.75 <= f <= (0.90 if mult == 1 else 1.0)


@pytest.mark.parametrize(("mult", "top"), [(3, 1.0), (1, 0.9)])
def test_tx_interval_jitter_in_the_session(mult: int, top: float) -> None:
    for u, factor in ((0.0, 0.75), (0.999999, top)):
        s = session(rng=u, detect_mult=mult)
        at = armed(s.handle(Start(0.0)), Timer.TX).at
        assert at == pytest.approx(factor * 1.0, abs=1e-5)


# ----------------------------------------- transmit opportunities: shared wake-ups (6.8.7)


def up_and_steady(rng: float = 1.0, mult: int = 3) -> tuple[Session, float]:
    """An Up session, Poll sequence done, whose last periodic packet went at the returned time."""
    s = session(rng=rng, detect_mult=mult)
    bring_up(s, 0.0)
    s.handle(PacketReceived(peer(State.UP, final=True), 0.3))
    assert not s.polling and s.tx_interval_us() == 300_000
    t = 1.0
    acts = s.handle(TimerFired(Timer.TX, s._generation[Timer.TX], t))
    assert len(sent(acts)) == 1
    return s, t


@pytest.mark.parametrize(("mult", "top"), [(3, 1.0), (1, 0.9)])
def test_tx_opportunity_never_before_75_percent_and_timer_never_after_the_top(
    mult: int, top: float
) -> None:
    for rng in (0.0, 0.5, 0.999999):
        s, t = up_and_steady(rng, mult)
        assert s.tx_earliest == pytest.approx(t + 0.75 * 0.3)
        assert s.next_tx_at is not None and s.next_tx_at <= t + top * 0.3 + 1e-9
        # just before the 75 % bound: nothing, and the timer stays where it was
        assert not s.tx_due(t + 0.75 * 0.3 - 1e-6)
        assert s.handle(TxOpportunity(t + 0.75 * 0.3 - 1e-6)) == []
        # at the bound: the periodic packet goes, and the next window starts from it
        t2 = t + 0.75 * 0.3
        acts = s.handle(TxOpportunity(t2))
        assert [p.state for p in sent(acts)] == [State.UP]
        assert armed(acts, Timer.TX).at == pytest.approx(t2 + jitter_factor(rng, mult) * 0.3)
        assert s.tx_earliest == pytest.approx(t2 + 0.75 * 0.3)
        assert s.handle(TxOpportunity(t2 + 0.01)) == []  # one packet per window


def test_tx_opportunities_keep_every_interval_within_the_rfc_bounds() -> None:
    rnd = random.Random(7)
    s = Session(SessionConfig(local_discr=LOCAL), rng=rnd.random)
    bring_up(s, 0.0)
    s.handle(PacketReceived(peer(State.UP, final=True), 0.3))
    sends: list[float] = []
    now = 0.3
    for _ in range(5000):  # opportunities at random times; the timer when it is due
        assert s.next_tx_at is not None
        now = min(now + rnd.uniform(0.0, 0.1), s.next_tx_at)
        if now == s.next_tx_at:
            acts = s.handle(TimerFired(Timer.TX, s._generation[Timer.TX], now))
        else:
            acts = s.handle(TxOpportunity(now))
        sends += [now] * len(sent(acts))
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert len(gaps) > 500
    assert min(gaps) >= 0.75 * 0.3 - 1e-9 and max(gaps) <= 0.3 + 1e-9
    assert min(gaps) < 0.23 and max(gaps) > 0.29  # the jitter is still spread over the range


def test_poll_final_and_admin_down_still_go_at_once_inside_the_window() -> None:
    s, t = up_and_steady()
    # a Poll from the peer right after a periodic packet: the Final goes at once
    acts = s.handle(PacketReceived(peer(State.UP, poll=True), t + 0.01))
    assert [p.final for p in sent(acts)] == [True]
    # new timers while Up: the Poll goes at once
    acts = s.handle(ChangeTimers(200_000, 300_000, t + 0.02))
    assert [p.poll for p in sent(acts)] == [True]
    # AdminDown goes at once; afterwards its periodic packets follow the same window
    acts = s.handle(AdminDown(t + 0.03))
    assert [p.state for p in sent(acts)] == [State.ADMIN_DOWN]
    assert s.handle(TxOpportunity(t + 0.03 + 0.75 * 1.0 - 1e-6)) == []
    acts = s.handle(TxOpportunity(t + 0.03 + 0.75 * 1.0))
    assert [(p.state, p.diag) for p in sent(acts)] == [(State.ADMIN_DOWN, 7)]


def test_no_tx_opportunity_before_start_or_when_the_peer_wants_no_packets() -> None:
    s = session()
    assert not s.tx_due(100.0) and s.handle(TxOpportunity(100.0)) == []
    s, t = up_and_steady()
    s.handle(PacketReceived(peer(State.UP, required_min_rx=0), t + 0.1))
    assert not s.tx_due(t + 0.5) and sent(s.handle(TxOpportunity(t + 0.5))) == []


def test_config_rejects_out_of_range_values() -> None:
    for kw in ({"local_discr": 0}, {"detect_mult": 0}, {"desired_min_tx": 0}, {"slow_tx": 999}):
        args = {"local_discr": 1, **kw}
        with pytest.raises(ValueError):
            SessionConfig(**args)
