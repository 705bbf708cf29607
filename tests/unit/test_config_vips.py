"""The VIP list and vip_subnet: kube-vip's ``Split`` (pkg/vip/util.go) and ``SelectSubnet``
(pkg/vip/address.go), on documentation addresses (RFC 5737, RFC 3849).

kube-vip's vectors are the forms its code and e2e suite use: ``SelectSubnet``'s own list
("32,128" dual stack, "32" and "128" single stack; more than two values and "auto" refused for
the control plane; an invalid address refused) and the dual-stack control-plane VIP its e2e
suite builds (``testing/e2e/ip.go`` ``GenerateDualStackVIP``: "<IPv4>,<IPv6>").
"""

from __future__ import annotations

import ipaddress

import pytest

from vipgate.config import ConfigError, Raw, Source, describe, load
from vipgate.config.vips import parse_addresses, parse_subnet, select_subnet, split

V4 = "203.0.113.100"
V6 = "2001:db8:100::100"
A4 = ipaddress.IPv4Address(V4)
A6 = ipaddress.IPv6Address(V6)
PEERS = "192.0.2.1:65001::false,[2001:db8:0:1::1]:65001::false"


def raw(value: str, name: str = "address") -> Raw:
    return Raw(value, Source.ENV, name)


@pytest.mark.parametrize(
    ("value", "parts"),
    [
        (V4, [V4]),
        (f"{V4},{V6}", [V4, V6]),  # GenerateDualStackVIP
        (f"{V4}, {V6}", [V4, V6]),  # spaces around a comma are trimmed
        (f" {V4} ,  {V6} ", [V4, V6]),
        (f"{V4},", [V4, ""]),  # Split keeps an empty part (vipgate refuses it below)
        ("", [""]),
    ],
)
def test_split_is_kube_vips(value: str, parts: list[str]) -> None:
    assert split(value) == parts


@pytest.mark.parametrize(
    ("address", "masks", "length"),
    [
        (A4, (32,), 32),  # "32": single stack
        (A6, (128,), 128),  # "128": single stack
        (A4, (32, 128), 32),  # "32,128": an IPv4 address takes the first
        (A6, (32, 128), 128),  # ... an IPv6 address the second
        (A6, (64,), 64),  # one value: the IPv6 address takes it too
        (A4, (24, 64), 24),
        (A6, (24, 64), 64),
        (A4, (), 32),  # empty: the host length
        (A6, (), 128),
    ],
)
def test_select_subnet_is_kube_vips(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, masks: tuple[int, ...], length: int
) -> None:
    assert select_subnet(address, masks) == length


@pytest.mark.parametrize(
    ("value", "vips"),
    [
        (V4, (A4,)),
        (V6, (A6,)),
        (f"{V4},{V6}", (A4, A6)),
        (f"{V6}, {V4}", (A6, A4)),  # the order given
        ("", ()),
    ],
)
def test_address_list(value: str, vips: tuple[ipaddress.IPv4Address, ...]) -> None:
    assert parse_addresses(raw(value)) == vips


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (f"{V4},{V4}", "203.0.113.100 is listed twice"),
        (f"{V6},2001:DB8:100:0::100", "2001:db8:100::100 is listed twice"),
        (f"{V4},203.0.113.101", "two IPv4 VIPs (203.0.113.100, 203.0.113.101)"),
        (f"{V6},2001:db8:100::101", "two IPv6 VIPs"),
        (f"{V4},", "entry 2 ('') is empty"),
        (f"{V4},,{V6}", "entry 2 ('') is empty"),
        (f"{V4},vip.example", "entry 2 ('vip.example'): not an IP address"),  # kube-vip: DNS
        (f"{V4},::1", "entry 2 ('::1') is a loopback address"),
        (f"{V4},fe80::1%lo", "entry 2 ('fe80::1%lo'): an IPv6 scope id"),
    ],
)
def test_bad_address_lists_name_the_setting(value: str, says: str) -> None:
    with pytest.raises(ConfigError) as ei:
        load({"address": value})
    assert str(ei.value).startswith(f"address={value!r}: ")
    assert says in str(ei.value)


def test_vip_address_is_the_older_name_of_the_list() -> None:
    c = load({"vip_address": f"{V4}, {V6}"})
    assert c.addresses == (A4, A6)
    with pytest.raises(ConfigError, match=r"^vip_address='203\.0\.113\.100,203\.0\.113\.1'"):
        load({"vip_address": f"{V4},203.0.113.1"})


@pytest.mark.parametrize(
    ("address", "subnet", "prefixes"),
    [
        (f"{V4},{V6}", "32,128", ("203.0.113.100/32", "2001:db8:100::100/128")),
        (f"{V4},{V6}", "", ("203.0.113.100/32", "2001:db8:100::100/128")),
        (V6, "64", ("2001:db8:100::/64",)),
        (f"{V4},{V6}", "24, 64", ("203.0.113.0/24", "2001:db8:100::/64")),
        (V4, "32,128", ("203.0.113.100/32",)),
        (V6, "32,128", ("2001:db8:100::100/128",)),
        (V6, "128", ("2001:db8:100::100/128",)),
    ],
)
def test_interface_prefixes_follow_select_subnet(
    address: str, subnet: str, prefixes: tuple[str]
) -> None:
    c = load({"address": address, "vip_subnet": subnet})
    assert tuple(map(str, c.interface_prefixes)) == prefixes


@pytest.mark.parametrize("subnet", ["", "32,128", "24,64", "0,128", "16,48"])
def test_the_announced_prefixes_are_host_routes_whatever_vip_subnet(subnet: str) -> None:
    """kube-vip's BGP mode announces /32 and /128 whatever vip_subnet says (pkg/bgp/peers.go,
    getPath); vip_subnet is the length on the interface only."""
    c = load({"address": f"{V4},{V6}", "vip_subnet": subnet})
    assert tuple(map(str, c.prefixes)) == ("203.0.113.100/32", "2001:db8:100::100/128")


@pytest.mark.parametrize(
    ("address", "subnet", "says"),
    [
        (f"{V4},{V6}", "128,32", "/128 is longer than the IPv4 address 203.0.113.100"),
        (V4, "128", "/128 is longer than the IPv4 address"),
        (V4, "33", "0-32"),
        (f"{V4},{V6}", "32,128,64", "more than two prefix lengths"),
        (f"{V4},{V6}", "auto", "services only"),
        (f"{V4},{V6}", "32,auto", "services only"),
        (f"{V4},{V6}", "32,", "value 2 ('') not a prefix length"),
        (f"{V4},{V6}", "/32,/128", "value 1 ('/32') not a prefix length"),
        (f"{V4},{V6}", "32,129", "value 2 ('129') out of range"),
        # One value for both families: an IPv4 length would put an IPv6 block on the interface
        (f"{V4},{V6}", "32", f"IPv6 VIP {V6} would be put on the interface as 2001:db8::/32"),
        (f"{V4},{V6}", "24", "one value per address, the IPv4 length then the IPv6 one"),
        (f"{V4},{V6}", " 32 ", "(e.g. vip_subnet=32,128)"),
        (f"{V6},{V4}", "0", f"the IPv6 VIP {V6} would be put on the interface as ::/0"),
        (V6, "32", "64-128 for an IPv6 VIP alone (vip_subnet=128: a host address)"),
        (V6, "63", "on the interface as 2001:db8:100::/63"),
    ],
)
def test_bad_vip_subnet_names_the_setting(address: str, subnet: str, says: str) -> None:
    with pytest.raises(ConfigError) as ei:
        load({"address": address, "vip_subnet": subnet})
    assert str(ei.value).startswith(f"vip_subnet={subnet!r}: ")
    assert says in str(ei.value)


def test_two_values_are_taken_as_given() -> None:
    c = load({"address": f"{V4},{V6}", "vip_subnet": "32,48"})
    assert tuple(map(str, c.interface_prefixes)) == ("203.0.113.100/32", "2001:db8:100::/48")
    assert load({"address": V4, "vip_subnet": "24"}).interface_prefixes[0].prefixlen == 24


def test_parse_subnet_without_a_vip_takes_up_to_128() -> None:
    assert parse_subnet(raw("32,128", "vip_subnet"), ()) == (32, 128)


def test_dual_stack_over_a_session_per_family() -> None:
    c = load({"address": f"{V4},{V6}", "vip_subnet": "32,128", "bgp_peers": PEERS})
    assert c.not_runnable is not None  # bgp_enable not set, but the rest loads
    c = load({"address": f"{V4},{V6}", "bgp_enable": "true", "bgp_peers": PEERS})
    assert c.not_runnable is None
    assert len(c.peers) == 2


def test_dual_stack_over_an_ipv4_session_with_mpbgp() -> None:
    env = {
        "address": f"{V4},{V6}",
        "bgp_enable": "true",
        "bgp_peers": "192.0.2.1:65001::false",
        "mpbgp_nexthop": "fixed",
        "mpbgp_ipv6": "2001:db8:0:1::11",
    }
    assert load(env).prefixes[1] == ipaddress.ip_network(f"{V6}/128")
    with pytest.raises(ConfigError) as ei:
        load({**env, "mpbgp_ipv6": "", "mpbgp_ipv4": "192.0.2.11"})
    assert "mpbgp_nexthop=fixed but no mpbgp_ipv6 for the IPv6 VIP" in str(ei.value)


def test_a_vip_no_session_carries_is_refused() -> None:
    env = {"address": f"{V4},{V6}", "bgp_enable": "true", "bgp_peers": "192.0.2.1:65001::false"}
    with pytest.raises(ConfigError) as ei:
        load(env)
    text = str(ei.value)
    assert text.startswith(f"address={V4 + ',' + V6!r}: no BGP session can carry the IPv6 VIP")
    assert "mpbgp_nexthop" in text


def test_every_vip_is_checked_against_the_peers() -> None:
    base = {"address": f"{V4},{V6}", "vip_subnet": "32,64", "bgp_enable": "true"}
    with pytest.raises(ConfigError, match="inside the VIP's prefix 2001:db8:100::/64"):
        load({**base, "bgp_peers": "192.0.2.1:65001::false,[2001:db8:100::1]:65001::false"})
    with pytest.raises(ConfigError, match="the peer address is the VIP"):
        load({**base, "vip_subnet": "", "bgp_peers": f"192.0.2.1:65001::false,[{V6}]:65001"})
    with pytest.raises(ConfigError, match=r"bgp_sourceip.*inside the VIP's prefix"):
        load({**base, "bgp_peers": "[2001:db8::1]:65001", "bgp_sourceip": "2001:db8:100::7"})


def test_vipgate_config_shows_both() -> None:
    env = {"address": f"{V4}, {V6}", "vip_subnet": "32,128", "bgp_peers": PEERS}
    rows = {k: (v, s) for k, v, s in describe(load(env), env, {})}
    assert rows["address"] == (f"{V4}, {V6}", "env address")
    assert rows["(announced prefixes)"][0] == "203.0.113.100/32,2001:db8:100::100/128"
