"""Property: whatever config.load() accepts, the manager can build every object it needs from it
("nothing that passes `vipgate config` may fail later because of its value", README "Commands").

Settings are drawn from pools of edge values found in the audit (lengths, families, scope ids,
encodings, prefixes) and random text; when load() accepts them, the manager's own builder
(``parts.build_parts``: gate, probes, speaker and its peers, metrics) and the Manager are made
from them with the host facts the configuration states, and the TCP MD5 socket option, the
source interface's SO_BINDTODEVICE bytes and the VIP's address label are made as the daemon
makes them, without touching the host.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vipgate import config
from vipgate.bgp.peer import md5sig
from vipgate.bgp.speaker import peer_settings
from vipgate.config import ConfigError, load
from vipgate.manager import Manager, build_parts
from vipgate.vip import stated_facts, vip_label

POOLS: dict[str, list[str]] = {
    "address": [
        "203.0.113.100",
        "2001:db8:100::100",
        "2001:db8:100::100%lo",
        "fe80::1%lo",
        "::ffff:203.0.113.1",
        "",
    ],
    "vip_subnet": ["", "0", "24", "32", "64", "128"],
    "vip_interface": ["", "lo", "a" * 15, "a" * 16, "é" * 7, "eth0:1", "\udcff"],
    "bgp_as": ["65000", "23456", "4294967295", "0"],
    "bgp_routerid": ["", "192.0.2.11", "0.0.0.0"],
    "bgp_peers": [
        "192.0.2.1:65001::false",
        "192.0.2.1:65001:" + "x" * 80 + ":false",
        "192.0.2.1:65001:" + "x" * 81 + ":false",
        "192.0.2.1:65001:pw\udcff:false",
        "192.0.2.1:65001:pässwörd:true:1179",
        "[2001:db8::1]:65001::false",
        "[2001:db8::1]:65001::false::mpbgp_nexthop=fixed;mpbgp_ipv4=192.0.2.11",
        "192.0.2.1:65001::false::mpbgp_nexthop=fixed;mpbgp_ipv6=[2001:db8::11]",
        "192.0.2.1:65001::false::mpbgp_nexthop=auto_sourceif",
        "192.0.2.1:65001::false::mpbgp_nexthop=auto_sourceip",
        "192.0.2.1:65001::false:::true;10;60000;255",
        "192.0.2.1:65001::false:::false;;;",
        "203.0.113.1:65001::false",
        "[fe80::1]:65001::false",
    ],
    "bgp_peeraddress": ["", "192.0.2.2", "2001:db8::2", "192.0.2.2%eth0"],
    "bgp_peerpass": ["", "s3cret", "y" * 81, "pw\n"],
    "bgp_sourceip": ["", "192.0.2.11", "2001:db8::11", "192.0.2.11%eth0", "203.0.113.100"],
    "bgp_sourceif": ["", "eth0", "b" * 15, "b" * 16],
    "mpbgp_nexthop": ["", "fixed", "auto_sourceip", "auto_sourceif"],
    "mpbgp_ipv4": ["", "192.0.2.11", "203.0.113.100"],
    "mpbgp_ipv6": ["", "2001:db8::11", "fe80::11", "2001:db8:100::100"],
    "bgp_hold_time": ["30", "0", "3", "65535"],
    "bgp_keepalive_interval": ["10", "0", "1"],
    "control_plane_health_check_address": [
        "",
        "https://localhost:6443/livez",
        "https://[2001:db8::1]:6443/livez",
        "http://192.0.2.5/healthz?verbose",
        f"https://{'a' * 63}.example:6443/livez",
        f"https://{'a' * 64}.example:6443/livez",
        "https://bücher.example/livez",
        "https://localhost:6443/lïvez",
        "https://user:pw@localhost:6443/livez",
    ],
    "control_plane_health_check_server_name": ["", "kubernetes", "b" * 64, "192.0.2.5"],
    "control_plane_health_check_period_seconds": ["5", "0.001", "86400"],
    "control_plane_health_check_timeout_seconds": ["3", "0.001"],
    "prometheus_server": ["", ":2112", "localhost:2112", "[::1]:2112", "metrics.example:2112"],
}


BASE = {
    "address": "203.0.113.100",
    "bgp_enable": "true",
    "bgp_peers": "192.0.2.1:65001:pw:false",
    "control_plane_health_check_address": "https://localhost:6443/livez",
    "control_plane_health_check_server_name": "kubernetes",
}
BASE6 = {**BASE, "address": "2001:db8:100::100", "bgp_peers": "[2001:db8::1]:65001:pw:false"}


@st.composite
def environments(draw: st.DrawFn) -> dict[str, str]:
    """A valid base with one to three settings taken from the edge pools (or random text)."""
    env = dict(draw(st.sampled_from([BASE, BASE6])))
    keys = draw(st.lists(st.sampled_from(sorted(POOLS)), min_size=1, max_size=3, unique=True))
    for key in keys:
        env[key] = draw(st.sampled_from(POOLS[key]) | st.text(max_size=6))
    return env


def build_everything(c: config.Config) -> None:
    """What daemon.run/_serve build from the configuration (no host, no sockets): the
    manager's own builder and the Manager, then what the kernel is given later."""
    assert all(p.prefixlen <= p.max_prefixlen for p in (*c.prefixes, *c.interface_prefixes))
    if c.not_runnable is None:  # else the manager exits 2 before it builds anything
        parts = build_parts(c, stated_facts(c))
        Manager(parts)
        assert (parts.probe is not None) == c.health_enabled
        assert (parts.reader is not None) == bool(c.health_enabled and c.readiness_url)
    # Addresses go to the kernel as text (netlink for the VIP, bind, connect): inet_pton.
    for a in (*c.addresses, c.bgp_sourceip, *(p.address for p in c.peers)):
        if a is not None:
            socket.inet_pton(socket.AF_INET if a.version == 4 else socket.AF_INET6, str(a))
    for p in c.peers:
        peer_settings(p, p.mpbgp_ipv4, p.mpbgp_ipv6)
        if p.password:
            md5sig(p.address, p.password)
    for name in (c.vip_interface, c.bgp_sourceif, c.bgp_routerinterface):
        if name:
            assert len(name.encode()) < 16  # SO_BINDTODEVICE / netlink IFLA_IFNAME
            vip_label(name).encode()
    listen = c.prometheus_listen
    if listen is not None:
        assert listen[0] == "" or listen[0] == "localhost" or ipaddress.ip_address(listen[0])


SINGLE = [(k, v) for k, pool in POOLS.items() for v in pool]


@pytest.mark.parametrize("base", [BASE, BASE6], ids=["ipv4", "ipv6"])
def test_every_edge_value_alone(base: dict[str, str]) -> None:
    """Each pool value on a valid base: refused by load(), or buildable. Exhaustive."""
    accepted = 0
    for key, value in SINGLE:
        try:
            c = load({**base, key: value})
        except ConfigError:
            continue
        accepted += 1
        build_everything(c)
    assert 0 < accepted < len(SINGLE)  # the pools hold values of both kinds


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env=environments())
def test_what_load_accepts_the_manager_can_build(env: dict[str, str]) -> None:
    try:
        c = load(env)
    except ConfigError:
        return
    build_everything(c)


def test_bfd_values_load_accepts_fit_the_bfd_session() -> None:
    for field in ("true;10;10;1", "true;60000;60000;255", "true;;;"):
        c = load({"bgp_peers": f"192.0.2.1:65001::false:::{field}"})
        s = peer_settings(c.peers[0])
        assert s.bfd is not None
