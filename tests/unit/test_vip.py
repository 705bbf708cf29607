"""Tests for the pure parts of vipgate.vip: MP-BGP next hops of the VIP's family (no netlink)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from vipgate.bgp.speaker import peer_settings
from vipgate.config import NextHopMode, Peer
from vipgate.vip import HostError, NextHops, check_next_hops, mpbgp_next_hops

VIP4 = IPv4Address("203.0.113.100")
VIP6 = IPv6Address("2001:db8:100::100")
NH4 = IPv4Address("192.0.2.11")
NH6 = IPv6Address("2001:db8:0:1::11")
PEER4 = Peer(IPv4Address("192.0.2.1"), 65001)
PEER6 = Peer(IPv6Address("2001:db8:0:1::1"), 65001)
SRC = IPv4Address("192.0.2.11")


def test_fixed_and_unset_need_no_host() -> None:
    fixed = Peer(PEER4.address, 65001, mpbgp_nexthop=NextHopMode.FIXED, mpbgp_ipv6=NH6)
    assert mpbgp_next_hops(fixed, None, "", (VIP6,)) == NextHops(None, NH6)
    assert mpbgp_next_hops(PEER4, None, "", (VIP6,)) == NextHops()


@pytest.mark.parametrize(
    ("peer", "hops", "vip"),
    [
        (PEER4, NextHops(), VIP4),  # the session's own family: its local address
        (PEER6, NextHops(), VIP6),
        (PEER4, NextHops(None, NH6), VIP6),
        (PEER6, NextHops(NH4, None), VIP4),
    ],
)
def test_a_next_hop_of_the_vips_family_exists(
    peer: Peer, hops: NextHops, vip: IPv4Address | IPv6Address
) -> None:
    check_next_hops((peer,), (hops,), (vip,), None, "")


@pytest.mark.parametrize(
    ("mode", "hops", "vip", "names"),
    [
        (None, NextHops(), VIP6, "no mpbgp_nexthop is set"),
        (NextHopMode.FIXED, NextHops(NH4, None), VIP6, "mpbgp_nexthop=fixed without mpbgp_ipv6"),
        (
            NextHopMode.AUTO_SOURCEIP,
            NextHops(),
            VIP6,
            "the interface holding bgp_sourceip=192.0.2.11 has no global IPv6 address",
        ),
        (NextHopMode.AUTO_SOURCEIF, NextHops(NH4, None), VIP6, "bgp_sourceif=eth0 has no global"),
    ],
)
def test_no_next_hop_of_the_vips_family_names_the_setting(
    mode: NextHopMode | None, hops: NextHops, vip: IPv4Address | IPv6Address, names: str
) -> None:
    peer = Peer(ip_address("192.0.2.1"), 65001, mpbgp_nexthop=mode)
    with pytest.raises(HostError) as ei:
        check_next_hops((PEER6, peer), (NextHops(), hops), (vip,), SRC, "eth0")
    text = str(ei.value)
    assert names in text
    assert "BGP peer 192.0.2.1 (AS 65001) is IPv4 and the VIP 2001:db8:100::100 is IPv6" in text
    assert "set mpbgp_nexthop=fixed with mpbgp_ipv6" in text


def test_dual_stack_over_a_session_per_family_needs_no_mpbgp() -> None:
    """Each peer carries its own family's VIP; the configuration made sure each VIP has one."""
    check_next_hops((PEER4, PEER6), (NextHops(), NextHops()), (VIP4, VIP6), None, "")


def test_dual_stack_over_one_session_needs_the_other_familys_next_hop() -> None:
    fixed = Peer(PEER4.address, 65001, mpbgp_nexthop=NextHopMode.FIXED, mpbgp_ipv6=NH6)
    check_next_hops((fixed,), (NextHops(None, NH6),), (VIP4, VIP6), None, "")
    auto = Peer(PEER4.address, 65001, mpbgp_nexthop=NextHopMode.AUTO_SOURCEIF)
    with pytest.raises(HostError, match="the VIP 2001:db8:100::100 is IPv6"):
        check_next_hops((auto,), (NextHops(),), (VIP4, VIP6), None, "eth0")


def test_peer_settings_send_the_other_family_elsewhere() -> None:
    both = frozenset({4, 6})
    assert peer_settings(PEER4, vip_versions=both).elsewhere == frozenset({6})
    assert peer_settings(PEER6, vip_versions=both).elsewhere == frozenset({4})
    assert peer_settings(PEER4, vip_versions=frozenset({6})).elsewhere == frozenset()
    fixed = Peer(PEER4.address, 65001, mpbgp_nexthop=NextHopMode.FIXED, mpbgp_ipv6=NH6)
    assert peer_settings(fixed, None, NH6, both).elsewhere == frozenset()
