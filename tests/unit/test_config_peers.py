"""kube-vip v1.2 ``bgp_peers`` entries: the MP-BGP (6th) and BFD (7th) fields, and the globals.

The vectors follow kube-vip's ``pkg/kubevip/config_bgp_test.go``, with documentation addresses.
"""

from __future__ import annotations

import ipaddress

import pytest

from vipgate.config import Bfd, ConfigError, NextHopMode, Peer, load

V6 = ipaddress.IPv6Address
V4 = ipaddress.IPv4Address


def peers(value: str, **env: str) -> tuple[Peer, ...]:
    return load({"bgp_peers": value, **env}).peers


def test_kube_vip_vectors() -> None:
    p = peers(
        "[2001:db8:1111:2222::52]:65501::false::mpbgp_nexthop=auto_sourceif", bgp_sourceif="eth0"
    )
    assert p == (
        Peer(V6("2001:db8:1111:2222::52"), 65501, mpbgp_nexthop=NextHopMode.AUTO_SOURCEIF),
    )
    p = peers("[2001:db8::2]:65501::false:::false;300;300;3")
    assert p == (Peer(V6("2001:db8::2"), 65501, bfd=Bfd(False, 300, 300, 3)),)
    p = peers("[2001:db8::2]:65000:secret:true")
    assert p == (Peer(V6("2001:db8::2"), 65000, "secret", True),)
    p = peers("192.0.2.10:65000::false:180,192.0.2.11:65000::false:190")
    assert [x.port for x in p] == [180, 190]


def test_bfd_field() -> None:
    # Empty parts take kube-vip's defaults; a disabled field is accepted and kept.
    assert peers("192.0.2.1:65001::false:::false;;;")[0].bfd == Bfd(False, 300, 300, 3)
    assert peers("192.0.2.1:65001::false:::0;10;60000;255")[0].bfd == Bfd(False, 10, 60000, 255)
    assert peers("192.0.2.1:65001::false")[0].bfd is None
    assert peers("192.0.2.1:65001::false:::")[0].bfd is None


def test_bfd_enabled_is_accepted() -> None:
    assert peers("192.0.2.1:65001::false:::true;50;100;5")[0].bfd == Bfd(True, 50, 100, 5)


def test_global_mpbgp_applies_to_peers_without_their_own() -> None:
    got = load(
        {
            "bgp_peers": "192.0.2.1:65001::false,"
            "192.0.2.2:65001::false::mpbgp_nexthop=auto_sourceip;mpbgp_ipv6=[2001:db8::12]",
            "bgp_peeraddress": "192.0.2.3",
            "mpbgp_nexthop": "fixed",
            "mpbgp_ipv6": "2001:db8::11",
            "mpbgp_ipv4": "192.0.2.11",
            "bgp_sourceip": "192.0.2.11",
        }
    )
    assert got.mpbgp_nexthop is NextHopMode.FIXED
    assert got.mpbgp_ipv6 == V6("2001:db8::11") and got.mpbgp_ipv4 == V4("192.0.2.11")
    a, b, c = got.peers
    assert (a.mpbgp_nexthop, a.mpbgp_ipv4, a.mpbgp_ipv6) == (
        NextHopMode.FIXED,
        V4("192.0.2.11"),
        V6("2001:db8::11"),
    )
    assert (b.mpbgp_nexthop, b.mpbgp_ipv4, b.mpbgp_ipv6) == (
        NextHopMode.AUTO_SOURCEIP,
        V4("192.0.2.11"),
        V6("2001:db8::12"),
    )
    assert c.mpbgp_nexthop is NextHopMode.FIXED


def test_str_round_trips() -> None:
    text = (
        "192.0.2.1:65001::true:1179:mpbgp_nexthop=fixed;mpbgp_ipv4=192.0.2.11;"
        "mpbgp_ipv6=[2001:db8::11]:false;20;30;4,[2001:db8::1]:65002::false"
    )
    got = peers(text)
    assert ",".join(str(p) for p in got) == text
    assert peers(",".join(str(p) for p in got)) == got


BAD_PEERS: list[tuple[str, str]] = [
    ("unnumbered:eth0", "unnumbered peers (unnumbered:<interface>) are not supported"),
    ("unnumbered:eth1:65000::true::mpbgp_nexthop=auto_sourceif", "not supported"),
    ("192.0.2.1:65000::false::mpbgp_nexthop", "not key=value"),
    ("192.0.2.1:65000::false::unknown=value", "unknown option"),
    ("192.0.2.1:65000::false::mpbgp_nexthop=auto_sourceif;mpbgp_nexthop=fixed", "given twice"),
    ("192.0.2.1:65000::false::mpbgp_nexthop=static", "fixed, auto_sourceip, auto_sourceif"),
    ("192.0.2.1:65000::false::mpbgp_nexthop=Fixed", "not a next-hop mode"),
    ("192.0.2.1:65000::false::mpbgp_ipv4=[2001:db8::11]", "not an IPv4 address"),
    ("192.0.2.1:65000::false::mpbgp_ipv4=0.0.0.0", "not a usable next hop"),
    ("192.0.2.1:65000::false::mpbgp_ipv4=224.0.0.5", "not a usable next hop"),
    ("192.0.2.1:65000::false::mpbgp_ipv4=127.0.0.1", "not a usable next hop"),
    ("192.0.2.1:65000::false::mpbgp_ipv6=192.0.2.11", "not an IPv6 address"),
    ("192.0.2.1:65000::false::mpbgp_ipv6=[fe80::1]", "not link-local"),
    ("192.0.2.1:65000::false::mpbgp_ipv6=[::ffff:192.0.2.11]", "not a usable next hop"),
    ("192.0.2.1:65000::false::mpbgp_ipv6=[2001:db8::11%eth0]", "no %zone"),
    ("192.0.2.1:65000::false::mpbgp_ipv6=2001:db8::11", "without brackets"),
    ("192.0.2.1:65000::false:::true;300;300", "needs 4 parts"),
    ("192.0.2.1:65000::false:::true;300;300;3;1", "needs 4 parts"),
    ("192.0.2.1:65000::false:::yes;300;300;3", "enable is not a boolean"),
    ("192.0.2.1:65000::false:::false;9;300;3", "rx is not 10-60000"),
    ("192.0.2.1:65000::false:::false;300;60001;3", "tx is not 10-60000"),
    ("192.0.2.1:65000::false:::false;300;300;0", "mult is not 1-255"),
    ("192.0.2.1:65000::false:::false;300;300;256", "mult is not 1-255"),
    ("192.0.2.1:65000::false:::false;0.3;300;3", "rx is not 10-60000"),
    ("192.0.2.1:65000::false:::false;300;300;-1", "mult is not 1-255"),
]


@pytest.mark.parametrize(("entry", "fragment"), BAD_PEERS)
def test_bad_peer_fields(entry: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load({"bgp_peers": "192.0.2.9:65009::false," + entry})
    msg = str(exc.value)
    assert msg.startswith("bgp_peers entry 2"), msg
    assert fragment in msg, msg


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"mpbgp_nexthop": "auto"}, "mpbgp_nexthop='auto' is not a next-hop mode"),
        ({"mpbgp_ipv4": "2001:db8::11"}, "mpbgp_ipv4='2001:db8::11' is not an IPv4 address"),
        ({"mpbgp_ipv6": "192.0.2.11"}, "mpbgp_ipv6='192.0.2.11' is not an IPv6 address"),
        ({"mpbgp_ipv6": "fe80::11"}, "mpbgp_ipv6='fe80::11' is not a usable next hop"),
    ],
)
def test_bad_mpbgp_globals(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load(env)


def test_bfd_one_session_per_router_address() -> None:
    # two entries for one router (other ports) share the BFD session: the fields must agree
    same = peers(
        "192.0.2.1:65001::false:179::true;300;300;3,192.0.2.1:65001::false:1179::true;300;300;3"
    )
    assert [p.port for p in same] == [179, 1179]
    with pytest.raises(ConfigError, match=r"entry 2 .*differs from bgp_peers entry 1"):
        peers(
            "192.0.2.1:65001::false:179::true;300;300;3,192.0.2.1:65001::false:1179::true;50;50;3"
        )


# A ':' or ',' in a password, and peers separated by spaces: the errors say what happened, and
# show no field that may hold a piece of the password (the marker's pieces are in none).
MARK = "Zx9Qv"


def _error(value: str) -> str:
    with pytest.raises(ConfigError) as exc:
        load({"bgp_peers": value})
    return str(exc.value)


@pytest.mark.parametrize(
    ("value", "fragments"),
    [
        # kube-vip's format splits at every ':': the password's rest lands in the multihop field
        (f"192.0.2.1:65001:{MARK[:2]}:{MARK[2:]}:false", ["multihop (4th field)", "not shown"]),
        (f"192.0.2.1:65001:{MARK[:2]}:{MARK[2:]}", ["split at every ':'", "cannot hold one"]),
        (f"192.0.2.1:65001::{MARK}", ["multihop (4th field)", "may be part of the password"]),
        (f"192.0.2.1:65001:{MARK[:2]}:true:{MARK[2:]}", ["port (5th field)", "not shown"]),
        (f"192.0.2.1:65001:a:{MARK}:b:c:d:e", ["too many fields: 8, the format has 7"]),
        (f"192.0.2.1:65001:a:b:c:d:e:{MARK}", ["cannot hold one", "separated by ','"]),
        # peers separated by a space run into the next entry's fields
        ("192.0.2.1:65001::false 192.0.2.2:65002::false", ["holds a space", "separated by ','"]),
        (f"192.0.2.1:65001:{MARK}:false 192.0.2.2:65002:x:false", ["holds a space"]),
        (f"192.0.2.1:65001:{MARK}:tr ue", ["holds a space", "not shown"]),
    ],
)
def test_shifted_fields_are_named_not_shown(value: str, fragments: list[str]) -> None:
    msg = _error(value)
    assert msg.startswith("bgp_peers entry 1 (192.0.2.1, AS 65001): "), msg
    for fragment in fragments:
        assert fragment in msg, msg
    for piece in (MARK, MARK[:2], MARK[2:], "tr ue"):
        assert piece not in msg, msg


def test_an_as_that_does_not_parse_is_never_shown() -> None:
    """A password may stand where the AS goes (the AS forgotten, the fields swapped, a ',' in
    an earlier entry's password): an AS that does not parse is described, never shown."""
    msg = _error("192.0.2.1:65001 192.0.2.2:65002")
    assert "the AS is not a number" in msg and "separated by ','" in msg, msg
    assert "65001 192" not in msg, msg
    for value, text in (
        ("192.0.2.1:65001,192.0.2.2:AS65002", "AS65002"),
        ("[2001:db8::1]:65001,192.0.2.2:6500x", "6500x"),
        ("192.0.2.1:2024pw", "2024pw"),
    ):
        msg = _error(value)
        assert "the AS is not a number" in msg and text not in msg, msg
    for value in (
        f"192.0.2.1:65001:a,192.0.2.2:{MARK}",
        f"192.0.2.1:65001:,192.0.2.2:{MARK}",
        f"[2001:db8::1]:65001:a,192.0.2.2:{MARK}",
        f"192.0.2.1:{MARK}",
        f"192.0.2.1:{MARK}:65001",
        f"192.0.2.1:{MARK} x",
    ):
        msg = _error(value)
        assert "the AS is not a number" in msg, msg
        assert MARK[:2] not in msg and MARK[2:] not in msg, msg
    msg = _error("192.0.2.1:65001::false,192.0.2.2:65002 192.0.2.3:65003")
    assert "entry 2 (192.0.2.2): the AS is not a number" in msg, msg  # not shown, but:
    assert "(it holds a space: peers are separated by ',', not by spaces)" in msg, msg
