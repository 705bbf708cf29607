"""Every limit the kernel or the wire puts on a setting is checked by config.load.

A value that `vipgate config` accepts must not fail later because of its value: each row is a
value that used to pass the configuration and then failed in the manager (a traceback after the
VIP was on the interface, a session that retried forever, a probe that crashed), now an exit 2
naming the variable. ``OK`` holds the boundary values that must still pass.
"""

from __future__ import annotations

import pytest

from vipgate import config
from vipgate.bgp import peer as bgp_peer
from vipgate.config import ConfigError, load

P = "192.0.2.1:65001"
V4 = {"address": "203.0.113.100"}
V6 = {"address": "2001:db8:100::100"}
HC = "control_plane_health_check_"

# (env, the variable the error must name, a fragment of what is wrong or accepted)
LIMITS: list[tuple[dict[str, str], str, str]] = [
    # Interface names: Linux IFNAMSIZ (16 with the NUL) and dev_valid_name().
    ({"vip_interface": "a" * 16}, "vip_interface", "1-15 bytes"),
    ({"vip_interface": "é" * 8}, "vip_interface", "1-15 bytes"),  # 16 bytes in UTF-8
    ({"vip_interface": "eth0:1"}, "vip_interface", "without '/', ':'"),
    ({"vip_interface": "a/b"}, "vip_interface", "without '/', ':'"),
    ({"vip_interface": ".."}, "vip_interface", "not '.' or '..'"),
    ({"vip_interface": "\udcffeth"}, "vip_interface", "interface name"),  # not UTF-8
    ({"bgp_sourceif": "b" * 16}, "bgp_sourceif", "IFNAMSIZ"),
    ({"bgp_routerinterface": "c" * 16}, "bgp_routerinterface", "IFNAMSIZ"),
    # TCP MD5 passwords: TCP_MD5SIG_MAXKEYLEN, bytes the kernel and a router can both hold.
    ({"bgp_peers": f"{P}:{'x' * 81}:false"}, "bgp_peers entry 1", "longer than 80 bytes"),
    ({"bgp_peers": f"{P}:{'é' * 41}:false"}, "bgp_peers entry 1", "longer than 80 bytes"),
    ({"bgp_peers": f"{P}:pw\udcff:false"}, "bgp_peers entry 1", "not valid UTF-8"),
    ({"bgp_peers": f"{P}:pw\t:false"}, "bgp_peers entry 1", "control character"),
    ({"bgp_peers": f"{P}:pw\u00a0:false"}, "bgp_peers entry 1", "non-printing"),
    ({"bgp_peeraddress": "192.0.2.2", "bgp_peerpass": "y" * 81}, "bgp_peerpass", "80 bytes"),
    ({"bgp_peeraddress": "192.0.2.2", "bgp_peerpass": "pw\n"}, "bgp_peerpass", "newline"),
    ({"bgp_peerpass": "z" * 81}, "bgp_peerpass", "80 bytes"),  # checked even without a peer
    # IPv6 scope ids: the kernel calls (inet_pton, bind) do not take them.
    ({"address": "fe80::1%lo"}, "address", "scope id"),
    ({"bgp_sourceip": "2001:db8::11%eth0"}, "bgp_sourceip", "scope id"),
    ({"bgp_peeraddress": "fe80::1%eth0"}, "bgp_peeraddress", "scope id"),
    ({"bgp_peers": "[fe80::1%eth0]:65001::false"}, "bgp_peers entry 1", "scope id"),
    ({"prometheus_server": "[fe80::1%eth0]:2112"}, "prometheus_server", "no %zone"),
    ({HC + "address": "https://[fe80::1%25eth0]:6443/livez"}, HC + "address", "scope id"),
    # VIP addresses a router can carry.
    ({"address": "0.0.0.0"}, "address", "unspecified"),
    ({"address": "::"}, "address", "unspecified"),
    ({"address": "224.0.0.9"}, "address", "multicast"),
    ({"address": "ff02::1"}, "address", "multicast"),
    ({"address": "255.255.255.255"}, "address", "broadcast"),
    ({"address": "127.0.0.5"}, "address", "loopback"),
    ({"address": "::1"}, "address", "loopback"),
    ({"address": "169.254.0.1"}, "address", "link-local"),
    ({"address": "fe80::100"}, "address", "link-local"),
    ({"address": "::ffff:203.0.113.100"}, "address", "IPv4-mapped"),
    # Peer addresses a TCP connection can reach (and that are not this node).
    ({"bgp_peers": "0.0.0.0:65001::false"}, "bgp_peers entry 1", "unspecified"),
    ({"bgp_peers": "224.0.0.1:65001::false"}, "bgp_peers entry 1", "multicast"),
    ({"bgp_peers": "255.255.255.255:65001::false"}, "bgp_peers entry 1", "broadcast"),
    ({"bgp_peers": "[ff02::2]:65001::false"}, "bgp_peers entry 1", "multicast"),
    ({"bgp_peers": "[fe80::1]:65001::false"}, "bgp_peers entry 1", "link-local"),
    ({"bgp_peers": "[::ffff:192.0.2.1]:65001::false"}, "bgp_peers entry 1", "IPv4-mapped"),
    ({"bgp_peeraddress": "0.0.0.0"}, "bgp_peeraddress", "unspecified"),
    ({**V4, "bgp_peers": "203.0.113.100:65001::false"}, "bgp_peers entry 1", "is the VIP"),
    (
        {"bgp_sourceip": "192.0.2.11", "bgp_peers": "192.0.2.11:65001::false"},
        "bgp_peers entry 1",
        "bgp_sourceip",
    ),
    (
        {"bgp_peers": f"{P}::false,192.0.2.2:65001::false,{P}:pw:true"},
        "bgp_peers entry 3",
        "same peer address and port as bgp_peers entry 1",
    ),
    (
        {"bgp_peers": f"{P}::false", "bgp_peeraddress": "192.0.2.1"},
        "bgp_peeraddress",
        "same peer address and port",
    ),
    # The VIP's prefix on the interface must not cover the router, the source or a fixed next hop.
    (
        {**V4, "vip_subnet": "24", "bgp_peers": "203.0.113.1:65001::false"},
        "bgp_peers entry 1",
        "inside the VIP's prefix 203.0.113.0/24",
    ),
    ({**V4, "vip_subnet": "0", "bgp_peers": f"{P}::false"}, "bgp_peers entry 1", "0.0.0.0/0"),
    ({**V4, "bgp_sourceip": "203.0.113.100"}, "bgp_sourceip", "inside the VIP's prefix"),
    (
        {**V6, "bgp_peers": f"{P}::false::mpbgp_nexthop=fixed;mpbgp_ipv6=[2001:db8:100::100]"},
        "bgp_peers entry 1",
        "mpbgp_ipv6=2001:db8:100::100 is inside the VIP's prefix",
    ),
    # AS_TRANS (RFC 6793) on the wire as our AS or the peer's.
    ({"bgp_as": "23456"}, "bgp_as", "AS_TRANS"),
    ({"bgp_peers": "192.0.2.1:23456::false"}, "bgp_peers entry 1", "AS_TRANS"),
    ({"bgp_peeraddress": "192.0.2.1", "bgp_peeras": "23456"}, "bgp_peeras", "AS_TRANS"),
    # Source address: a unicast address of the sessions' family.
    ({"bgp_sourceip": "0.0.0.0"}, "bgp_sourceip", "unspecified"),
    ({"bgp_sourceip": "2001:db8::11", "bgp_peers": f"{P}::false"}, "bgp_sourceip", "IPv6"),
    (
        {"bgp_sourceip": "192.0.2.11", "bgp_peers": "[2001:db8::1]:65001::false"},
        "bgp_sourceip",
        "other family",
    ),
    # Health URL: what the probe's connection, Host header and TLS SNI can carry.
    ({HC + "address": f"https://{'a' * 64}.example:6443/livez"}, HC + "address", "1-63"),
    ({HC + "address": "https://a..b:6443/livez"}, HC + "address", "DNS name"),
    ({HC + "address": f"https://{'a.' * 127}ab:6443/"}, HC + "address", "253"),
    ({HC + "address": "https://k8s!:6443/livez"}, HC + "address", "DNS name"),
    ({HC + "address": "https://localhost:6443/lïvez"}, HC + "address", "non-ASCII"),
    ({HC + "address": "https://localhost:6443/livez?\x7f"}, HC + "address", "control"),
    ({HC + "server_name": "b" * 64}, HC + "server_name", "host name"),
    ({HC + "server_name": "a..b"}, HC + "server_name", "host name"),
    # Metrics listener: a host name may not resolve on the node.
    ({"prometheus_server": "metrics.example:2112"}, "prometheus_server", "localhost"),
    # Next hop of the VIP's family (item 4, the configuration side).
    ({**V6, "bgp_peers": f"{P}::false"}, "bgp_peers entry 1", "mpbgp_ipv6="),
    ({**V4, "bgp_peers": "[2001:db8::1]:65001::false"}, "bgp_peers entry 1", "mpbgp_ipv4="),
    (
        {**V6, "bgp_peers": f"{P}::false", "mpbgp_nexthop": "fixed", "mpbgp_ipv4": "192.0.2.11"},
        "bgp_peers entry 1",
        "no mpbgp_ipv6 for the IPv6 VIP",
    ),
    ({"bgp_peers": f"{P}::false", "mpbgp_nexthop": "fixed"}, "mpbgp_nexthop=fixed", "without"),
    (
        {**V6, "bgp_peers": f"{P}::false::mpbgp_nexthop=auto_sourceip"},
        "bgp_peers entry 1",
        "set bgp_sourceip",
    ),
    (
        {**V6, "bgp_peers": f"{P}::false", "mpbgp_nexthop": "auto_sourceif"},
        "bgp_peers entry 1",
        "set bgp_sourceif",
    ),
]

# Values at the limits that must pass.
OK: list[dict[str, str]] = [
    {"vip_interface": "a" * 15, "bgp_sourceif": "é" * 7, "bgp_routerinterface": "lo"},
    {"bgp_peers": f"{P}:{'x' * 80}:false", "bgp_peeraddress": "192.0.2.2"},
    {"bgp_peers": f"{P}:pässwörd with spaces:false", "bgp_peerpass": "é" * 40},
    {"bgp_peers": "127.0.0.1:65001::false,169.254.0.1:65001::false,192.0.2.1:65001::false:180"},
    {"bgp_peers": f"{P}::false,192.0.2.1:65001::false:1179", "bgp_sourceip": "192.0.2.11"},
    {HC + "address": f"https://{'a' * 63}.example:6443/livez?x=%C3%A9"},
    {HC + "address": "https://bücher.example:6443/livez", HC + "server_name": "kube_rnetes"},
    {"prometheus_server": "localhost:2112"},
    {**V4, "vip_subnet": "25", "bgp_peers": "203.0.113.129:65001::false"},
    {"prometheus_server": "[::]:2112"},
    {**V6, "bgp_peers": f"{P}::false", "mpbgp_nexthop": "fixed", "mpbgp_ipv6": "2001:db8::11"},
    {**V6, "bgp_peers": f"{P}::false::mpbgp_nexthop=fixed;mpbgp_ipv6=[2001:db8::11]"},
    {
        **V6,
        "bgp_peers": f"{P}::false",
        "mpbgp_nexthop": "auto_sourceip",
        "bgp_sourceip": "192.0.2.11",
    },
    {
        **V4,
        "bgp_peers": "[2001:db8::1]:65001::false",
        "mpbgp_nexthop": "auto_sourceif",
        "bgp_sourceif": "eth0",
    },
    {
        **V4,
        "bgp_peers": f"{P}::false,"
        "[2001:db8::1]:65001::false::mpbgp_nexthop=fixed;mpbgp_ipv4=192.0.2.11",
    },
    # fixed with only the other family's address: a session of the VIP's own family uses its
    # local address (the README's example; a new user's trial found it refused)
    {
        **V4,
        "bgp_peers": f"{P}::false::mpbgp_nexthop=fixed;mpbgp_ipv6=[2001:db8::11]:false;300;300;3",
    },
    {**V4, "bgp_peers": f"{P}::false", "mpbgp_nexthop": "fixed", "mpbgp_ipv6": "2001:db8::11"},
]


@pytest.mark.parametrize(
    ("env", "name", "fragment"), LIMITS, ids=[str(e)[:60] for e, _, _ in LIMITS]
)
def test_limit_is_checked_at_load(env: dict[str, str], name: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load(env, {})
    msg = str(exc.value)
    assert name in msg, msg
    assert fragment in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize("env", OK, ids=[str(e)[:60] for e in OK])
def test_value_at_the_limit_passes(env: dict[str, str]) -> None:
    load(env, {})


def test_limits_are_the_kernels() -> None:
    assert config.TCP_MD5SIG_MAXKEYLEN == bgp_peer.TCP_MD5SIG_MAXKEYLEN == 80
    assert config.IFNAMSIZ == 16
