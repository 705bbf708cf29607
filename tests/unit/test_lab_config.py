"""Lab helpers without namespaces: tags, waits, router configs and parsers, PKI shape."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography import x509

from lab.netns import Lab, make_tag, tag_pid
from lab.pki import KUBEADM_DNS_NAMES, make_pki
from lab.routers import BirdRouter, FrrRouter, GobgpRouter, Neighbor
from lab.wait import LabTimeout, wait_for


class FakeLab:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir


def fake_lab(tmp_path: Path) -> Lab:
    return cast(Lab, FakeLab(tmp_path))


def test_tag_carries_pid_and_is_short() -> None:
    tag = make_tag()
    assert tag.startswith("vg") and len(tag) <= 9
    assert tag_pid(tag) == os.getpid()
    assert tag_pid(make_tag(pid=4194304, n=35)) == 4194304
    assert make_tag(pid=1, n=1) != make_tag(pid=1, n=2)
    assert tag_pid("vgfoo") is None and tag_pid("xx00001") is None
    # role suffixes keep namespace names short
    assert len(f"{make_tag(pid=4194304, n=1295)}-client") <= 20


def test_wait_for_returns_elapsed_and_times_out_with_context() -> None:
    calls = iter([0, 0, 1])
    assert wait_for(lambda: next(calls), 1.0, 0.001) >= 0.0
    with pytest.raises(LabTimeout, match=r"waiting for the thing; last value: 0\nstate: x"):
        wait_for(lambda: 0, 0.05, 0.01, what="the thing", describe=lambda: "state: x")

    def boom() -> bool:
        raise ValueError("not yet")

    with pytest.raises(LabTimeout, match="last error: ValueError: not yet"):
        wait_for(boom, 0.05, 0.01)


def test_neighbor_repr_hides_password() -> None:
    n = Neighbor("192.0.2.11", 65000, password="hunter2")
    assert "hunter2" not in repr(n)


def test_bird_config(tmp_path: Path) -> None:
    r = BirdRouter(
        fake_lab(tmp_path),
        "ns",
        asn=65001,
        router_id="192.0.2.1",
        neighbors=[
            Neighbor("192.0.2.11", 65000, password="pw1", passive=True),
            Neighbor("192.0.2.12", 4200000001, as4=False, hold_time=3),
            Neighbor("203.0.113.130", 65000, multihop=2),
            Neighbor("192.0.2.13", 65001),
        ],
        static_routes=[("203.0.113.128/26", "192.0.2.2")],
    )
    conf = r.write_config().read_text()
    assert "merge paths on;" in conf
    assert "export where source = RTS_BGP;" in conf
    assert conf.count("error wait time 1, 10;") == 4
    assert conf.count("connect retry time 1;") == 4
    assert 'password "pw1";' in conf and "passive on;" in conf
    assert "neighbor 192.0.2.12 port 179 external;" in conf and "enable as4 off;" in conf
    assert "hold time 3;" in conf and "multihop 2;" in conf
    assert "route 203.0.113.128/26 via 192.0.2.2 { igp_metric = 0; };" in conf
    # RFC 8212: every channel has an explicit import and export policy; the import policy maps
    # RFC 8326 GRACEFUL_SHUTDOWN to local preference 0 (docs/routers.md)
    assert conf.count("import filter gshut_in;") == 8 and conf.count("export none;") == 8
    assert "if (65535, 0) ~ bgp_community then bgp_local_pref = 0;" in conf
    r.graceful_shutdown = False
    plain = r.write_config().read_text()
    assert plain.count("import all;") == 8 and "gshut" not in plain
    assert "next hop self;" in conf  # iBGP neighbor
    assert oct(r.conf.stat().st_mode & 0o777) == "0o600"


BIRD_SHOW_ROUTE = """BIRD 2.0.12 ready.
Table master4:
203.0.113.100/32     unicast [peer1 09:31:12.738] * (100) [AS65000i]
\tvia 192.0.2.11 on br0
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path: 65000
\tBGP.next_hop: 192.0.2.11
\tBGP.local_pref: 100
                     unicast [peer2 09:31:12.694 from 203.0.113.130] (100) [AS65000i]
\tvia 192.0.2.2 on br0
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path: 4200000001 65000
\tBGP.next_hop: 203.0.113.130
\tBGP.med: 5
\tBGP.local_pref: 100
"""


def test_bird_rib_and_sessions_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = BirdRouter(
        fake_lab(tmp_path),
        "ns",
        asn=65001,
        router_id="192.0.2.1",
        neighbors=[Neighbor("192.0.2.11", 65000), Neighbor("203.0.113.130", 65000, multihop=2)],
    )
    r.write_config()
    out = {"route": BIRD_SHOW_ROUTE}
    monkeypatch.setattr(r, "birdc", lambda *a, **k: out["route"])
    paths = r.rib("203.0.113.100")
    assert [(p.peer, p.next_hop, p.as_path, p.best, p.med) for p in paths] == [
        ("192.0.2.11", "192.0.2.11", (65000,), True, None),
        ("203.0.113.130", "203.0.113.130", (4200000001, 65000), False, 5),
    ]
    out["route"] = (
        "BIRD 2.0.12 ready.\n"
        "Name       Proto      Table      State  Since         Info\n"
        "device1    Device     ---        up     09:31:11.000  \n"
        "peer1      BGP        ---        up     09:31:12.738  Established   \n"
        "peer2      BGP        ---        start  09:31:12.000  Active        Socket: refused\n"
    )
    assert r.sessions() == {"192.0.2.11": "Established", "203.0.113.130": "Active"}


def test_frr_config(tmp_path: Path) -> None:
    r = FrrRouter(
        fake_lab(tmp_path),
        "ns",
        asn=65001,
        router_id="192.0.2.1",
        neighbors=[
            Neighbor("192.0.2.11", 65000, password="pw"),
            Neighbor("2001:db8:0:1::11", 65000, multihop=2, passive=True),
        ],
        originate=["203.0.113.100/32"],
    )
    conf = r.write_config().read_text()
    assert "no bgp ebgp-requires-policy" in conf
    assert " neighbor 192.0.2.11 timers connect 1" in conf
    assert " neighbor 192.0.2.11 password pw" in conf
    assert " neighbor 2001:db8:0:1::11 ebgp-multihop 2" in conf
    assert " neighbor 2001:db8:0:1::11 passive" in conf
    assert "  network 203.0.113.100/32" in conf
    # eBGP only: FRR honours 65535:0 itself, the route-map is defined but not applied
    assert "bgp community-list standard GSHUT seq 5 permit 65535:0" in conf
    assert conf.index("route-map GSHUT-IN permit 10") < conf.index("router bgp 65001")
    assert "route-map GSHUT-IN in" not in conf
    r.neighbors.append(Neighbor("192.0.2.13", 65001))
    ibgp = r.write_config().read_text()
    assert ibgp.count("  neighbor 192.0.2.13 route-map GSHUT-IN in") == 2  # IPv4 and IPv6
    cmd = r._command()
    assert "-Z" in cmd and "--vty_socket" in cmd and "-i" in cmd and "-z" in cmd
    r.neighbors[:] = [
        Neighbor("192.0.2.14", 65000, families=(4,), strict_capabilities=True),
        Neighbor("192.0.2.15", 65000, extended_open=True),
    ]
    opts = r.write_config().read_text()
    assert " neighbor 192.0.2.14 strict-capability-match" in opts
    assert " neighbor 192.0.2.15 extended-optional-parameters" in opts
    assert opts.count("  neighbor 192.0.2.14 activate") == 1  # IPv4 unicast only
    assert opts.count("  neighbor 192.0.2.15 activate") == 2
    with pytest.raises(Exception, match="4-octet"):
        FrrRouter(
            fake_lab(tmp_path), "ns", asn=1, router_id="192.0.2.1",
            neighbors=[Neighbor("192.0.2.11", 2, as4=False)],
        ).write_config()  # fmt: skip


def test_frr_rib_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = FrrRouter(fake_lab(tmp_path), "ns", asn=65001, router_id="192.0.2.1")
    data: dict[str, Any] = {
        "prefix": "203.0.113.100/32",
        "paths": [
            {
                "aspath": {"segments": [{"type": "as-sequence", "list": [65000]}]},
                "nexthops": [{"ip": "192.0.2.11", "afi": "ipv4", "used": True}],
                "bestpath": {"overall": True},
                "peer": {"peerId": "192.0.2.11"},
            }
        ],
    }
    monkeypatch.setattr(r, "vtysh", lambda *a, **k: json.dumps(data))
    (p,) = r.rib("203.0.113.100/32")
    assert (p.next_hop, p.as_path, p.best, p.peer) == ("192.0.2.11", (65000,), True, "192.0.2.11")
    data = {}
    assert r.rib("203.0.113.100/32") == []


def test_gobgp_config_and_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tomllib

    r = GobgpRouter(
        fake_lab(tmp_path),
        "ns",
        asn=65001,
        router_id="192.0.2.1",
        neighbors=[Neighbor("192.0.2.11", 65000, password='p"w', multihop=3, passive=True)],
        api_port=50099,
    )
    conf = tomllib.loads(r.write_config().read_text())
    assert conf["global"]["apply-policy"]["config"]["import-policy-list"] == ["gshut-in"]
    (stmt,) = conf["policy-definitions"][0]["statements"]
    assert stmt["actions"]["bgp-actions"] == {"set-local-pref": 1}
    assert conf["defined-sets"]["bgp-defined-sets"]["community-sets"][0]["community-list"] == [
        "65535:0"
    ]
    nb = conf["neighbors"][0]
    assert nb["config"] == {
        "neighbor-address": "192.0.2.11",
        "peer-as": 65000,
        "auth-password": 'p"w',
    }
    assert nb["timers"]["config"]["connect-retry"] == 1
    assert nb["transport"]["config"]["passive-mode"] is True
    assert nb["ebgp-multihop"]["config"] == {"enabled": True, "multihop-ttl": 3}
    assert [a["config"]["afi-safi-name"] for a in nb["afi-safis"]] == [
        "ipv4-unicast",
        "ipv6-unicast",
    ]
    assert "--pprof-disable" in r._command() and "127.0.0.1:50099" in r._command()
    rib = {
        "203.0.113.100/32": [
            {
                "nlri": {"prefix": "203.0.113.100/32"},
                "attrs": [
                    {"type": 1, "value": 0},
                    {"type": 2, "as_paths": [{"segment_type": 2, "num": 1, "asns": [65000]}]},
                    {"type": 3, "nexthop": "192.0.2.11"},
                ],
                "best": True,
                "neighbor-ip": "192.0.2.11",
            }
        ]
    }
    monkeypatch.setattr(r, "gobgp", lambda *a, **k: json.dumps(rib))
    (p,) = r.rib("203.0.113.100/32")
    assert (p.next_hop, p.as_path, p.best, p.peer) == ("192.0.2.11", (65000,), True, "192.0.2.11")
    neigh = [
        {"conf": {"neighbor_address": "192.0.2.11"}, "state": {"session_state": "established"}}
    ]
    monkeypatch.setattr(r, "gobgp", lambda *a, **k: json.dumps(neigh))
    assert r.sessions() == {"192.0.2.11": "Established"}


def test_pki_is_kubeadm_shaped(tmp_path: Path) -> None:
    pki = make_pki(
        tmp_path,
        [("node1", ["192.0.2.11", "2001:db8:0:1::11"])],
        extra_ips=["203.0.113.100"],
    )
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    assert ca.subject.rfc4514_string() == "CN=kubernetes"
    nc = pki.node("node1")
    cert = x509.load_pem_x509_certificate(nc.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(san.get_values_for_type(x509.DNSName))
    ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    assert dns == {"node1", *KUBEADM_DNS_NAMES}
    assert ips == {"192.0.2.11", "2001:db8:0:1::11", "203.0.113.100"}
    assert "localhost" not in dns and not any(ipaddress.ip_address(i).is_loopback for i in ips)
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    other = x509.load_pem_x509_certificate(pki.other_ca_cert.read_bytes())
    assert other.public_key() != ca.public_key()
    with pytest.raises(ValueError, match="loopback"):
        make_pki(tmp_path / "bad", [("n", ["127.0.0.1"])])


def test_parse_ip_monitor_lines() -> None:
    from lab.routemon import parse_monitor_line

    multi = (
        "203.0.113.100 proto bird metric 32 \\\tnexthop via 192.0.2.11 dev br0 weight 1 "
        "\\\tnexthop via 192.0.2.12 dev br0 weight 1 "
    )
    assert parse_monitor_line(multi) == (
        False,
        "unicast",
        "203.0.113.100/32",
        frozenset({"192.0.2.11", "192.0.2.12"}),
    )
    assert parse_monitor_line("Deleted 203.0.113.100 via 192.0.2.11 dev br0 ") == (
        True,
        "unicast",
        "203.0.113.100/32",
        frozenset({"192.0.2.11"}),
    )
    assert parse_monitor_line("blackhole 203.0.113.255 ") == (
        False,
        "blackhole",
        "203.0.113.255/32",
        frozenset(),
    )
    v6 = "2001:db8:100::100 via inet6 2001:db8:0:1::11 dev br0 metric 1024 pref medium"
    assert parse_monitor_line(v6) == (
        False,
        "unicast",
        "2001:db8:100::100/128",
        frozenset({"2001:db8:0:1::11"}),
    )
    assert parse_monitor_line("local 192.0.2.1 dev br0 table local proto kernel") is None
    assert parse_monitor_line("default via 192.0.2.1 dev eth0") is None
    assert parse_monitor_line("") is None


def _watch(monkeypatch: pytest.MonkeyPatch, reads: list[set[str]]) -> Any:
    """A RouteWatch that is never started; its reads return `reads` in turn."""
    from lab import routemon

    it = iter(reads)
    monkeypatch.setattr(routemon, "kernel_nexthops", lambda lab, ns, p: next(it))
    return routemon.RouteWatch(cast(Lab, None), "vg-none", "203.0.113.100/32")


def test_route_watch_stamps_never_before_the_change(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    a, b = "192.0.2.11", "192.0.2.12"
    w = _watch(monkeypatch, [{a, b}, {b}, {b}, set(), {a}, {a, b}])
    w._look([])  # initial read: stamped after it
    first = w.samples[0]
    assert first.hops == {a, b} and first.prev is None and first.t <= time.monotonic()
    # the line states exactly what the read finds: stamped with the line's arrival
    t_line = time.monotonic()
    w._look([(t_line, "203.0.113.100 via 192.0.2.12 dev br0 proto bird metric 32")])
    assert w.samples[-1].t == t_line and w.samples[-1].prev is not None
    assert w.samples[-1].prev <= t_line
    # same state again: no new sample
    w._look([(time.monotonic(), "203.0.113.100 via 192.0.2.12 dev br0 proto bird metric 32")])
    assert len(w.samples) == 2
    # an IPv4 line states the whole route, sent after the change: its state is kept, stamped
    # with its arrival, also when a further line arrives during the read
    t_del = time.monotonic()
    w._lines.append((time.monotonic(), "203.0.113.100 via 192.0.2.11 dev br0"))
    w._look([(t_del, "Deleted 203.0.113.100 via 192.0.2.12 dev br0")])
    assert w.samples[-1].hops == frozenset() and w.samples[-1].t == t_del
    assert len(w.samples) == 3
    # the read shows a state no line of the batch stated -> stamped with the read's end
    t_add = time.monotonic()
    w._lines.clear()
    w._look([])
    assert w.samples[-1].hops == {a} and w.samples[-1].t > t_add
    # two changes back to back, both lines in one batch: the state between them is kept
    t1, t2 = time.monotonic(), time.monotonic()
    w._look(
        [
            (t1, "203.0.113.100 via 192.0.2.12 dev br0 proto bird metric 32"),
            (t2, "203.0.113.100 nexthop via 192.0.2.11 dev br0 nexthop via 192.0.2.12 dev br0"),
        ]
    )
    assert [(x.t, x.hops) for x in w.samples[-2:]] == [(t1, {b}), (t2, {a, b})]
    assert w.samples[-1].prev == t1 and w.samples[-2].prev is not None
    assert t_add <= w.samples[-2].prev <= t1


def test_route_watch_queries_on_a_timeline(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.routemon import RouteSample, exactly, intervals

    a, b = "192.0.2.11", "192.0.2.12"
    w = _watch(monkeypatch, [])
    w._samples = [
        RouteSample(1.0, frozenset({a, b})),
        RouteSample(5.0, frozenset({b}), prev=4.9),
        RouteSample(6.0, frozenset({b, "192.0.2.13"}), prev=5.9),
        RouteSample(7.0, frozenset({a, b}), prev=6.9),
    ]
    assert w.current() == {a, b}
    assert w.at(0.5) is None and w.at(5.5) == {b} and w.at(7.0) == {a, b}
    lacks_a = lambda h: a not in h  # noqa: E731
    assert w.reached(lacks_a, 0.0) is None
    hit = w.reached(lambda h: b in h, 0.0)
    assert hit is not None and hit.t == 1.0  # the run began at 1.0
    assert w.wait(exactly({a, b}), 0.0) == 7.0
    assert w.first(lacks_a, 2.0, 0.0) == 5.0
    assert w.first(exactly({a, b}), 2.0, 0.0) == 7.0
    with pytest.raises(LabTimeout, match="node1 gone"):
        w.first(lacks_a, 7.5, 0.01, "node1 gone")
    assert [x.t for x in w.violations(lambda h: a in h, 4.0, 6.5)] == [5.0, 6.0]
    assert [x.t for x in w.violations(lambda h: a in h, 2.0, 4.0)] == []
    assert w.intervals(a, 10.0) == intervals(w.samples, a, 10.0) == [(1.0, 5.0), (7.0, 10.0)]
    text = w.describe(1.0)
    assert "+4.000s  ['192.0.2.12']" in text and text.count("\n") == 4


def test_route_watch_stamps_out_of_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # Seen in the lab: three nodes announced within microseconds; the last change's stamp was
    # a few microseconds before the one it superseded, and a bisection then took the
    # superseded samples as in effect after the route was complete.
    from lab.routemon import RouteSample, exactly

    a, b, c = "192.0.2.11", "192.0.2.12", "192.0.2.13"
    w = _watch(monkeypatch, [])
    w._samples = [
        RouteSample(1.0, frozenset()),
        RouteSample(2.0, frozenset({a})),
        RouteSample(2.02, frozenset({a, c})),
        RouteSample(2.01, frozenset({a, b, c})),
    ]
    t_up = w.wait(exactly({a, b, c}), 0.0)
    assert t_up == 2.01
    assert w.violations(lambda h: {b, c} <= h, t_up, 3.0) == []
    assert w.at(2.015) == {a, b, c} and w.at(2.0) == {a}
