"""Tests for the outbound core (vipgate.bgp.outbound) and the BFD coupling, no sockets."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from tests.unit.test_bgp_wire import (
    UPDATE_EBGP_DEPREFERRED,
    UPDATE_IBGP_DEPREFERRED,
    UPDATE_IBGP_GSHUT,
    UPDATE_V6_DEPREFERRED,
)
from vipgate.bgp import fsm, wire
from vipgate.bgp.coupling import BfdCoupling
from vipgate.bgp.outbound import (
    STATE_POLICY,
    AdjRibOut,
    CapabilitiesRefused,
    NotAnnounced,
    OutboundAction,
    OutboundSession,
    OutboundSettings,
    RouteRefresh,
    RoutesChanged,
    RouteState,
    SessionDown,
    SessionUp,
)
from vipgate.bgp.wire import GRACEFUL_SHUTDOWN, SessionContext

LOCAL4 = IPv4Address("192.0.2.11")
LOCAL6 = IPv6Address("2001:db8:0:1::11")
MP4 = IPv4Address("198.51.100.11")  # MP-BGP next hops (mpbgp_nexthop)
MP6 = IPv6Address("2001:db8:0:2::11")
VIP4 = IPv4Network("203.0.113.100/32")
VIP6 = IPv6Network("2001:db8:100::100/128")
LOCAL_AS = 65000
V4 = (wire.AFI_IPV4, wire.SAFI_UNICAST)
V6 = (wire.AFI_IPV6, wire.SAFI_UNICAST)
S = RouteState


def info(
    local: IPv4Address | IPv6Address = LOCAL4,
    *,
    ebgp: bool = True,
    as4: bool = True,
    families: frozenset[tuple[int, int]] = frozenset({V4, V6}),
) -> fsm.SessionInfo:
    return fsm.SessionInfo(
        local=local,
        remote=local,
        local_as=LOCAL_AS,
        peer_as=65001 if ebgp else LOCAL_AS,
        peer_id=IPv4Address("192.0.2.1"),
        as4=as4,
        families=families,
        route_refresh=True,
        hold_time=30,
        keepalive=10,
    )


def updates(actions: Sequence[OutboundAction]) -> list[wire.Update]:
    return [u for a in actions if isinstance(a, fsm.SendUpdates) for u in a.updates]


def warnings(actions: Sequence[OutboundAction]) -> list[str]:
    return [a.text for a in actions if isinstance(a, NotAnnounced)]


def encoded(actions: Sequence[OutboundAction], as4: bool = True) -> list[bytes]:
    return [wire.encode(u, SessionContext(as4)) for u in updates(actions)]


def up_session(
    rib: dict[IPv4Network | IPv6Network, RouteState],
    settings: OutboundSettings | None = None,
    **info_kw: object,
) -> tuple[OutboundSession, list[OutboundAction]]:
    out = OutboundSession(settings or OutboundSettings(frozenset({V4, V6}), MP4, MP6), rib)
    actions = out.handle(SessionUp(info(**info_kw)))  # type: ignore[arg-type]
    return out, actions


# --------------------------------------------------------------------------- the Adj-RIB-Out


def test_adj_rib_out_changes() -> None:
    rib = AdjRibOut()
    assert rib.announce(VIP4) == ((VIP4, S.ANNOUNCED),)
    assert rib.announce(VIP4) == ()
    assert rib.set_mode(S.GRACEFUL_SHUTDOWN) == ((VIP4, S.GRACEFUL_SHUTDOWN),)
    assert rib.set_mode(S.GRACEFUL_SHUTDOWN) == ()
    assert rib.announce(VIP6) == ((VIP6, S.GRACEFUL_SHUTDOWN),)  # announced while draining
    assert rib.routes == {VIP4: S.GRACEFUL_SHUTDOWN, VIP6: S.GRACEFUL_SHUTDOWN}
    assert rib.set_mode(S.ANNOUNCED) == ((VIP4, S.ANNOUNCED), (VIP6, S.ANNOUNCED))
    assert rib.withdraw(VIP4) == ((VIP4, S.WITHDRAWN),)
    assert rib.withdraw(VIP4) == ()
    assert rib.withdraw_all() == ((VIP6, S.WITHDRAWN),)
    assert rib.routes == {}
    assert rib.set_mode(S.GRACEFUL_SHUTDOWN) == ()  # nothing to re-announce
    with pytest.raises(ValueError):
        rib.set_mode(S.WITHDRAWN)
    with pytest.raises(ValueError):
        rib.set_mode(S.DEPREFERRED)  # a route's own state, not a mode


def test_adj_rib_out_depreferred_routes() -> None:
    rib = AdjRibOut()
    assert rib.announce(VIP4, S.DEPREFERRED) == ((VIP4, S.DEPREFERRED),)
    assert rib.announce(VIP4, S.DEPREFERRED) == ()
    assert rib.announce(VIP6) == ((VIP6, S.ANNOUNCED),)
    assert rib.announce(VIP4) == ((VIP4, S.ANNOUNCED),)  # healthy again: plain
    assert rib.announce(VIP4, S.DEPREFERRED) == ((VIP4, S.DEPREFERRED),)
    # the drain marks every route; after it each returns to its own state
    assert rib.set_mode(S.GRACEFUL_SHUTDOWN) == (
        (VIP4, S.GRACEFUL_SHUTDOWN),
        (VIP6, S.GRACEFUL_SHUTDOWN),
    )
    assert rib.announce(VIP4) == ()  # draining: still GRACEFUL_SHUTDOWN on the wire
    assert rib.announce(VIP4, S.DEPREFERRED) == ()
    assert rib.set_mode(S.ANNOUNCED) == ((VIP4, S.DEPREFERRED), (VIP6, S.ANNOUNCED))
    assert rib.routes == {VIP4: S.DEPREFERRED, VIP6: S.ANNOUNCED}
    assert rib.withdraw(VIP4) == ((VIP4, S.WITHDRAWN),)
    assert rib.announce(VIP4) == ((VIP4, S.ANNOUNCED),)  # a withdrawal forgets the state
    assert rib.withdraw_all() == ((VIP6, S.WITHDRAWN), (VIP4, S.WITHDRAWN))
    for state in (S.WITHDRAWN, S.GRACEFUL_SHUTDOWN):
        with pytest.raises(ValueError):
            rib.announce(VIP4, state)


def test_every_state_has_a_policy_entry() -> None:
    assert set(STATE_POLICY) == set(RouteState)


# ---------------------------------------------------- the decision table, every combination


@dataclass(frozen=True)
class Case:
    state: RouteState
    ebgp: bool
    session: int  # IP version of the session (its local address)
    route: int  # IP version of the route
    mpbgp: str  # "none": no MP-BGP settings; "both": both next hops; "own": only the session's
    refused: bool  # the router refused the route's family (NOTIFICATION 2/7)


def _cases() -> list[Case]:
    out = []
    for state, ebgp, session, route, mpbgp, refused in itertools.product(
        RouteState, (True, False), (4, 6), (4, 6), ("none", "both", "own"), (False, True)
    ):
        if refused and (mpbgp == "none" or route == session):
            continue  # only a family offered beside the session's own can be refused
        out.append(Case(state, ebgp, session, route, mpbgp, refused))
    return out


NOT_OFFERED = "{} unicast is not offered on this session (set mpbgp_nexthop for this peer)"
REFUSED = "the router refused {} unicast (NOTIFICATION Unsupported Capability)"
NO_NEXT_HOP = {
    4: "no IPv4 next hop (set mpbgp_nexthop for this IPv6 peer)",
    6: "no global IPv6 next hop (set mpbgp_nexthop for this peer)",
}


def expected(c: Case) -> tuple[IPv4Address | IPv6Address | None, str | None]:
    """(next hop the route is sent with, warning): the rules of the module docstring."""
    name = f"IPv{c.route}"
    if c.route != c.session and c.mpbgp == "none":
        why: str | None = NOT_OFFERED.format(name)
    elif c.refused:
        why = REFUSED.format(name)
    elif c.route == c.session:
        return (LOCAL4 if c.route == 4 else LOCAL6), None
    elif c.mpbgp == "own":
        why = NO_NEXT_HOP[c.route]
    else:
        return (MP4 if c.route == 4 else MP6), None
    return None, why


@pytest.mark.parametrize("case", _cases(), ids=repr)
def test_outbound_decision_table(case: Case) -> None:
    own = wire.AFI_IPV4 if case.session == 4 else wire.AFI_IPV6
    offered = frozenset({V4, V6}) if case.mpbgp != "none" else frozenset({(own, 1)})
    nh4 = MP4 if case.mpbgp == "both" or (case.mpbgp == "own" and case.session == 4) else None
    nh6 = MP6 if case.mpbgp == "both" or (case.mpbgp == "own" and case.session == 6) else None
    route_afi = wire.AFI_IPV4 if case.route == 4 else wire.AFI_IPV6
    families = offered - {(route_afi, 1)} if case.refused else offered
    out = OutboundSession(OutboundSettings(offered, nh4, nh6), {})
    if case.refused:
        out.handle(CapabilitiesRefused((wire.MultiprotocolCapability(route_afi, 1),)))
    local = LOCAL4 if case.session == 4 else LOCAL6
    assert out.handle(SessionUp(info(local, ebgp=case.ebgp, families=families))) == []
    prefix = VIP4 if case.route == 4 else VIP6
    actions = out.handle(RoutesChanged(((prefix, case.state),)))
    next_hop, why = expected(case)

    if case.state is S.WITHDRAWN:
        assert warnings(actions) == []
        negotiated = (route_afi, 1) in families
        assert [u.withdrawals() for u in updates(actions)] == ([[prefix]] if negotiated else [])
        return
    assert warnings(actions) == ([f"IPv{case.route} prefixes NOT announced: {why}"] if why else [])
    if next_hop is None:
        assert updates(actions) == []
        return
    (data,) = encoded(actions)
    (upd,) = wire.Decoder(SessionContext(True)).feed_all(data)
    assert isinstance(upd, wire.Update)
    assert upd.announced() == [prefix] and upd.withdrawals() == []
    if case.route == 4:
        assert upd.get(wire.NextHop) == wire.NextHop(next_hop)  # type: ignore[arg-type]
        assert upd.get(wire.MpReachNlri) is None
    else:
        mp = upd.get(wire.MpReachNlri)
        assert mp is not None and mp.next_hops == (next_hop,) and upd.get(wire.NextHop) is None
    path = upd.get(wire.AsPath)
    assert path is not None
    # DEPREFERRED and the drain's GRACEFUL_SHUTDOWN: our AS 3 more times on eBGP (rule 3)
    gshut = case.state in (S.GRACEFUL_SHUTDOWN, S.DEPREFERRED)
    length = 4 if gshut else 1
    assert [s.asns for s in path.segments] == ([(LOCAL_AS,) * length] if case.ebgp else [])
    comms = upd.get(wire.Communities)
    assert (comms is not None and GRACEFUL_SHUTDOWN in comms.values) == gshut
    local_pref = upd.get(wire.LocalPref)
    if case.ebgp:
        assert local_pref is None
    else:
        assert local_pref == wire.LocalPref(0 if gshut else 100)


# ------------------------------------------------------------------------------ golden bytes


@pytest.mark.parametrize("state", [S.GRACEFUL_SHUTDOWN, S.DEPREFERRED])
@pytest.mark.parametrize(
    ("local", "ebgp", "prefix", "golden"),
    [
        (LOCAL4, True, VIP4, UPDATE_EBGP_DEPREFERRED),
        (LOCAL4, False, VIP4, UPDATE_IBGP_DEPREFERRED),
        (LOCAL6, True, VIP6, UPDATE_V6_DEPREFERRED),
    ],
)
def test_graceful_shutdown_and_depreferred_golden_bytes(
    local: IPv4Address | IPv6Address,
    ebgp: bool,
    prefix: IPv4Network | IPv6Network,
    golden: bytes,
    state: RouteState,
) -> None:
    # The drain's re-announcement carries the de-preference too, so it leaves the multipath
    # set on routers without an RFC 8326 policy (iBGP: the bytes RFC 8326 alone gives).
    _, actions = up_session({prefix: state}, local=local, ebgp=ebgp)
    assert encoded(actions) == [golden]
    assert UPDATE_IBGP_DEPREFERRED == UPDATE_IBGP_GSHUT


@pytest.mark.parametrize("as4", [True, False])
@pytest.mark.parametrize("ebgp", [True, False])
@pytest.mark.parametrize("state", list(RouteState))
def test_same_bytes_as_the_wire_builders_packed_full(
    as4: bool, ebgp: bool, state: RouteState
) -> None:
    v4 = [IPv4Network(f"203.0.113.{i}/32") for i in range(256)] + [
        IPv4Network(f"198.51.100.{i}/32") for i in range(256)
    ]
    v6 = [IPv6Network(f"2001:db8:1000::{i:x}/128") for i in range(1000)]
    nets: list[IPv4Network | IPv6Network] = [*v6[:10], *v4, *v6[10:]]
    changes = tuple((p, state) for p in nets)
    out, _ = up_session({}, as4=as4, ebgp=ebgp)
    actions = out.handle(RoutesChanged(changes))
    policy = wire.OutboundPolicy(LOCAL_AS, ebgp, as4)
    if state is S.WITHDRAWN:
        want = wire.withdraw_ipv4(v4) + wire.withdraw_ipv6(v6)
    else:
        if state in (S.GRACEFUL_SHUTDOWN, S.DEPREFERRED):
            policy = policy.depreferred()
        want = wire.announce_ipv4(v4, LOCAL4, policy) + wire.announce_ipv6(v6, MP6, policy)
    got = encoded(actions, as4)
    assert got == want
    assert len(got) > 4 and all(len(m) <= wire.MAX_MESSAGE_LEN for m in got)
    assert len(actions) == 1  # one SendUpdates: the fsm writes them at once


# ------------------------------------------------------------------------------- the session


def test_session_up_sends_the_whole_adj_rib_out_in_family_then_state_order() -> None:
    rib: dict[IPv4Network | IPv6Network, RouteState] = {
        VIP6: S.ANNOUNCED,
        VIP4: S.GRACEFUL_SHUTDOWN,
        IPv4Network("203.0.113.7/32"): S.ANNOUNCED,
    }
    _, actions = up_session(rib)
    ups = updates(actions)
    assert [u.announced() for u in ups] == [[IPv4Network("203.0.113.7/32")], [VIP4], [VIP6]]


def test_nothing_is_sent_while_the_session_is_down() -> None:
    rib: dict[IPv4Network | IPv6Network, RouteState] = {}
    out = OutboundSession(OutboundSettings(frozenset({V4})), rib)
    assert out.handle(RoutesChanged(((VIP4, S.ANNOUNCED),))) == []
    rib[VIP4] = S.ANNOUNCED
    assert updates(out.handle(SessionUp(info())))[0].announced() == [VIP4]
    assert out.handle(SessionDown()) == []
    assert out.handle(RoutesChanged(((VIP4, S.WITHDRAWN),))) == []
    assert out.handle(RouteRefresh(wire.AFI_IPV4)) == []


def test_route_refresh_resends_that_family() -> None:
    out, _ = up_session({VIP4: S.ANNOUNCED, VIP6: S.GRACEFUL_SHUTDOWN})
    assert [u.announced() for u in updates(out.handle(RouteRefresh(wire.AFI_IPV6)))] == [[VIP6]]
    assert [u.announced() for u in updates(out.handle(RouteRefresh(wire.AFI_IPV4)))] == [[VIP4]]


def test_warning_once_per_family_and_session() -> None:
    settings = OutboundSettings(frozenset({V4}))
    out = OutboundSession(settings, {})
    out.handle(SessionUp(info(families=frozenset({V4}))))
    text = "IPv6 prefixes NOT announced: " + NOT_OFFERED.format("IPv6")
    other = IPv6Network("2001:db8:100::200/128")
    assert warnings(out.handle(RoutesChanged(((VIP6, S.ANNOUNCED),)))) == [text]
    assert out.handle(RoutesChanged(((other, S.GRACEFUL_SHUTDOWN),))) == []
    assert out.handle(RoutesChanged(((other, S.WITHDRAWN),))) == []
    out.handle(SessionDown())
    assert warnings(out.handle(SessionUp(info(families=frozenset({V4}))))) == []  # empty RIB
    assert warnings(out.handle(RoutesChanged(((VIP6, S.ANNOUNCED),)))) == [text]


def test_a_family_carried_elsewhere_is_not_sent_and_not_warned() -> None:
    """A dual-stack VIP over one session per family: the IPv4 session sends the IPv4 route
    only, and the IPv6 route (carried by the IPv6 session) is no error here."""
    settings = OutboundSettings(frozenset({V4}), elsewhere=frozenset({6}))
    rib: dict[IPv4Network | IPv6Network, RouteState] = {VIP4: S.ANNOUNCED, VIP6: S.ANNOUNCED}
    out, actions = up_session(rib, settings, families=frozenset({V4}))
    assert warnings(actions) == []
    assert [u.announced() for u in updates(actions)] == [[VIP4]]
    actions = out.handle(RoutesChanged(((VIP4, S.WITHDRAWN), (VIP6, S.WITHDRAWN))))
    assert warnings(actions) == []
    assert [u.withdrawn for u in updates(actions)] == [(VIP4,)]


def test_the_router_did_not_offer_the_family() -> None:
    _, actions = up_session({VIP6: S.ANNOUNCED}, families=frozenset({V4}))
    assert warnings(actions) == [
        "IPv6 prefixes NOT announced: the router did not offer IPv6 unicast "
        "(activate it for this neighbor)"
    ]


@pytest.mark.parametrize(
    "local", [IPv6Address("fe80::11"), IPv6Address("::ffff:192.0.2.11")], ids=str
)
def test_link_local_or_mapped_session_address_is_never_an_ipv6_next_hop(
    local: IPv6Address,
) -> None:
    _, actions = up_session({VIP6: S.ANNOUNCED}, local=local)
    (upd,) = updates(actions)
    mp = upd.get(wire.MpReachNlri)
    assert mp is not None and mp.next_hops == (MP6,)
    _, actions = up_session({VIP6: S.ANNOUNCED}, OutboundSettings(frozenset({V4, V6})), local=local)
    assert warnings(actions) == ["IPv6 prefixes NOT announced: " + NO_NEXT_HOP[6]]


# ----------------------------------------------------------------------------- BFD coupling


def test_bfd_coupling_first_start_does_not_wait_for_bfd() -> None:
    c = BfdCoupling()
    assert c.bfd_changed(True, "BFD up") == []  # Up while not wanted: nothing
    assert c.start() == [fsm.Start()]
    assert c.bfd_changed(True, "again") == []


def test_bfd_coupling_down_tears_down_and_holds_until_up() -> None:
    c = BfdCoupling()
    assert c.start() == [fsm.Start()]
    assert c.bfd_changed(False, "BFD timeout") == [
        fsm.Stop("BFD timeout", subcode=wire.CeaseSubcode.BFD_DOWN)
    ]
    assert c.bfd_changed(False, "again") == []
    assert c.start() == []  # held down
    assert c.bfd_changed(True, "BFD up") == [fsm.Start()]


def test_bfd_coupling_never_starts_a_stopped_session() -> None:
    c = BfdCoupling()
    c.start()
    c.stop()
    assert c.bfd_changed(False, "down") == []
    assert c.bfd_changed(True, "up") == []
    c2 = BfdCoupling()
    assert c2.bfd_changed(False, "down") == []
    assert c2.start() == []
    assert c2.bfd_changed(True, "up") == [fsm.Start()]
