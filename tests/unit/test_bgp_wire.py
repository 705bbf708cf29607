"""Tests for the BGP codec (vipgate.bgp.wire).

Golden bytes below are written out by hand from the RFC message formats (RFC 4271 section 4,
RFC 4760, RFC 5492, RFC 6793, RFC 2918, RFC 8203), not produced by the encoder.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vipgate.bgp import wire
from vipgate.bgp.wire import (
    AS_TRANS,
    Aggregator,
    As4Path,
    AsPath,
    AsPathSegment,
    AtomicAggregate,
    BgpError,
    Communities,
    Decoder,
    FourOctetAsCapability,
    Handling,
    Keepalive,
    LocalPref,
    Med,
    MpReachNlri,
    MpUnreachNlri,
    MultiprotocolCapability,
    NextHop,
    Notification,
    Open,
    Origin,
    OutboundPolicy,
    RouteRefresh,
    RouteRefreshCapability,
    SessionContext,
    UnknownAttribute,
    UnknownCapability,
    Update,
    capability_name,
    encode,
    encode_open_extended,
    unsupported_capabilities,
)

M = "ff" * 16  # marker
AS4 = SessionContext(as4=True)
AS2 = SessionContext(as4=False)
VIP = IPv4Network("203.0.113.100/32")
VIP6 = IPv6Network("2001:db8:100::100/128")
NH = IPv4Address("192.0.2.11")
NH6 = IPv6Address("2001:db8:0:1::11")


def h(s: str) -> bytes:
    """Hex with spaces, comments after '#' on each line."""
    return bytes.fromhex("".join(line.split("#")[0] for line in s.splitlines()).replace(" ", ""))


def updates_of(data: bytes, ctx: SessionContext = AS4) -> list[Update]:
    out = Decoder(ctx).feed_all(data)
    assert all(isinstance(u, Update) for u in out)
    return [u for u in out if isinstance(u, Update)]


def decode_one(data: bytes, ctx: SessionContext = AS4) -> wire.Message:
    msgs = Decoder(ctx).feed_all(data)
    assert len(msgs) == 1
    return msgs[0]


# ------------------------------------------------------------------------------ golden bytes

KEEPALIVE = h(M + "0013 04")  # length 19, type 4 (RFC 4271 4.4)

OPEN_65000 = h(
    M
    + """
    0033 01          # length 51, type OPEN
    04               # version 4
    fde8             # My AS 65000
    001e             # hold time 30
    c000020b         # BGP identifier 192.0.2.11
    16               # optional parameters length 22
    02 14            # parameter type 2 (Capabilities), length 20
    01 04 0001 00 01 # multiprotocol: AFI 1 (IPv4), reserved, SAFI 1 (unicast)
    01 04 0002 00 01 # multiprotocol: AFI 2 (IPv6), SAFI 1
    02 00            # route refresh
    41 04 0000fde8   # 4-octet AS: 65000
    """
)
OPEN_65000_MSG = Open(
    65000,
    30,
    IPv4Address("192.0.2.11"),
    (
        MultiprotocolCapability(1, 1),
        MultiprotocolCapability(2, 1),
        RouteRefreshCapability(),
        FourOctetAsCapability(65000),
    ),
)

OPEN_BIG_AS = h(
    M
    + """
    0025 01          # length 37
    04 5ba0          # version 4, My AS = AS_TRANS 23456
    005a             # hold time 90
    c0000201         # 192.0.2.1
    08 02 06         # opt len 8; capabilities, length 6
    41 04 fa56ea01   # 4-octet AS 4200000001
    """
)

NOTIF_SHUTDOWN = h(
    M
    + """
    0019 03          # length 25, NOTIFICATION
    06 02            # Cease / Administrative Shutdown
    03 627965        # RFC 8203: length 3, UTF-8 "bye"
    """
)
NOTIF_HOLD = h(M + "0015 03 04 00")  # Hold Timer Expired, subcode 0
ROUTE_REFRESH_V6 = h(M + "0017 05  0002 00 01")  # AFI 2, reserved, SAFI 1 (RFC 2918)

UPDATE_EBGP_AS4 = h(
    M
    + """
    0030 02          # length 48, UPDATE
    0000             # withdrawn routes length 0
    0014             # total path attribute length 20
    40 01 01 00                # ORIGIN (well-known transitive) IGP
    40 02 06 02 01 0000fde8    # AS_PATH: AS_SEQUENCE of 1: 65000 (4-octet)
    40 03 04 c000020b          # NEXT_HOP 192.0.2.11
    20 cb007164                # NLRI 203.0.113.100/32
    """
)
UPDATE_EBGP_AS2 = h(
    M
    + """
    002e 02 0000 0012
    40 01 01 00
    40 02 04 02 01 fde8        # AS_PATH with 2-octet AS 65000
    40 03 04 c000020b
    20 cb007164
    """
)
UPDATE_AS_TRANS = h(
    M
    + """
    0037 02 0000 001b          # length 55, attributes 27
    40 01 01 00
    40 02 04 02 01 5ba0        # AS_PATH: AS_TRANS (23456)
    40 03 04 c000020b
    c0 11 06 02 01 fa56ea01    # AS4_PATH (optional transitive, 17): 4200000001
    20 cb007164
    """
)
UPDATE_IBGP = h(
    M
    + """
    0031 02 0000 0015          # length 49, attributes 21
    40 01 01 00
    40 02 00                   # empty AS_PATH
    40 03 04 c000020b
    40 05 04 00000064          # LOCAL_PREF 100
    20 cb007164
    """
)
UPDATE_WITHDRAW = h(
    M
    + """
    001c 02                    # length 28
    0005 20 cb007164           # withdrawn routes: 203.0.113.100/32
    0000                       # no attributes, no NLRI
    """
)
UPDATE_V6 = h(
    M
    + """
    004e 02 0000 0037          # length 78, attributes 55
    40 01 01 00
    40 02 06 02 01 0000fde8
    90 0e 0026                 # MP_REACH_NLRI, optional + extended length, 38
      0002 01 10               # AFI 2, SAFI 1, next hop length 16
      20010db8000000010000000000000011   # 2001:db8:0:1::11
      00                       # reserved
      80 20010db8010000000000000000000100  # 2001:db8:100::100/128
    """
)
UPDATE_V6_WITHDRAW = h(
    M
    + """
    002f 02 0000 0018          # length 47, attributes 24
    90 0f 0014 0002 01         # MP_UNREACH_NLRI, length 20, AFI 2 SAFI 1
      80 20010db8010000000000000000000100
    """
)

EBGP_AS4 = OutboundPolicy(local_as=65000, ebgp=True, as4=True)

# RFC 8326: the same routes marked GRACEFUL_SHUTDOWN (COMMUNITIES 65535:0; iBGP: LOCAL_PREF 0).
UPDATE_EBGP_GSHUT = h(
    M
    + """
    0037 02 0000 001b          # length 55, attributes 27
    40 01 01 00
    40 02 06 02 01 0000fde8
    40 03 04 c000020b
    c0 08 04 ffff0000          # COMMUNITIES (optional transitive): 65535:0
    20 cb007164
    """
)
UPDATE_IBGP_GSHUT = h(
    M
    + """
    0038 02 0000 001c          # length 56, attributes 28
    40 01 01 00
    40 02 00
    40 03 04 c000020b
    40 05 04 00000000          # LOCAL_PREF 0
    c0 08 04 ffff0000          # COMMUNITIES 65535:0
    20 cb007164
    """
)
UPDATE_V6_GSHUT = h(
    M
    + """
    0055 02 0000 003e          # length 85, attributes 62
    40 01 01 00
    40 02 06 02 01 0000fde8
    c0 08 04 ffff0000          # COMMUNITIES (type 8) before MP_REACH_NLRI (type 14)
    90 0e 0026
      0002 01 10
      20010db8000000010000000000000011
      00
      80 20010db8010000000000000000000100
    """
)


GOLDEN: list[tuple[str, bytes, wire.Message, SessionContext]] = [
    ("keepalive", KEEPALIVE, Keepalive(), AS4),
    ("open", OPEN_65000, OPEN_65000_MSG, AS4),
    (
        "open-as-trans",
        OPEN_BIG_AS,
        Open(AS_TRANS, 90, IPv4Address("192.0.2.1"), (FourOctetAsCapability(4200000001),)),
        AS4,
    ),
    ("notification-shutdown", NOTIF_SHUTDOWN, Notification(6, 2, b"\x03bye"), AS4),
    ("notification-hold", NOTIF_HOLD, Notification(4, 0), AS4),
    ("route-refresh", ROUTE_REFRESH_V6, RouteRefresh(2, 1), AS4),
    (
        "update-ebgp-as4",
        UPDATE_EBGP_AS4,
        Update((), (Origin(0), AsPath((AsPathSegment(2, (65000,)),)), NextHop(NH)), (VIP,)),
        AS4,
    ),
    (
        "update-ebgp-as2",
        UPDATE_EBGP_AS2,
        Update((), (Origin(0), AsPath((AsPathSegment(2, (65000,)),)), NextHop(NH)), (VIP,)),
        AS2,
    ),
    (
        "update-as-trans",
        UPDATE_AS_TRANS,
        Update(
            (),
            (
                Origin(0),
                AsPath((AsPathSegment(2, (AS_TRANS,)),)),
                NextHop(NH),
                As4Path((AsPathSegment(2, (4200000001,)),)),
            ),
            (VIP,),
        ),
        AS2,
    ),
    (
        "update-ibgp",
        UPDATE_IBGP,
        Update((), (Origin(0), AsPath(()), NextHop(NH), LocalPref(100)), (VIP,)),
        AS4,
    ),
    ("update-withdraw", UPDATE_WITHDRAW, Update((VIP,), (), ()), AS4),
    (
        "update-v6",
        UPDATE_V6,
        Update(
            (),
            (
                Origin(0),
                AsPath((AsPathSegment(2, (65000,)),)),
                MpReachNlri(2, 1, (NH6,), (VIP6,)),
            ),
            (),
        ),
        AS4,
    ),
    (
        "update-v6-withdraw",
        UPDATE_V6_WITHDRAW,
        Update((), (MpUnreachNlri(2, 1, (VIP6,)),), ()),
        AS4,
    ),
]


@pytest.mark.parametrize(("name", "data", "msg", "ctx"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_decode(name: str, data: bytes, msg: wire.Message, ctx: SessionContext) -> None:
    assert decode_one(data, ctx) == msg


@pytest.mark.parametrize(("name", "data", "msg", "ctx"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_encode(name: str, data: bytes, msg: wire.Message, ctx: SessionContext) -> None:
    assert encode(msg, ctx) == data


def test_builders_match_golden() -> None:
    assert wire.announce_ipv4([VIP], NH, EBGP_AS4) == [UPDATE_EBGP_AS4]
    assert wire.announce_ipv4([VIP], NH, OutboundPolicy(65000, True, False)) == [UPDATE_EBGP_AS2]
    assert wire.announce_ipv4([VIP], NH, OutboundPolicy(4200000001, True, False)) == [
        UPDATE_AS_TRANS
    ]
    assert wire.announce_ipv4([VIP], NH, OutboundPolicy(65000, False, True)) == [UPDATE_IBGP]
    assert wire.withdraw_ipv4([VIP]) == [UPDATE_WITHDRAW]
    assert wire.announce_ipv6([VIP6], NH6, EBGP_AS4) == [UPDATE_V6]
    assert wire.withdraw_ipv6([VIP6]) == [UPDATE_V6_WITHDRAW]


def test_graceful_shutdown_builders_match_golden() -> None:
    gs = EBGP_AS4.graceful_shutdown()
    assert wire.GRACEFUL_SHUTDOWN == 65535 << 16
    assert wire.announce_ipv4([VIP], NH, gs) == [UPDATE_EBGP_GSHUT]
    assert wire.announce_ipv6([VIP6], NH6, gs) == [UPDATE_V6_GSHUT]
    ibgp = OutboundPolicy(65000, False, True).graceful_shutdown()
    assert wire.announce_ipv4([VIP], NH, ibgp) == [UPDATE_IBGP_GSHUT]
    upd = decode_one(UPDATE_IBGP_GSHUT)
    assert isinstance(upd, Update)
    assert upd.get(LocalPref) == LocalPref(0)
    assert upd.get(Communities) == Communities((0xFFFF0000,))
    # Appended to communities already there, once; idempotent; the plain policy unchanged.
    tagged = OutboundPolicy(65000, True, True, communities=(0xFDE80001,))
    assert tagged.graceful_shutdown().communities == (0xFDE80001, 0xFFFF0000)
    assert tagged.graceful_shutdown().graceful_shutdown() == tagged.graceful_shutdown()
    assert wire.announce_ipv4([VIP], NH, EBGP_AS4) == [UPDATE_EBGP_AS4]
    # eBGP: no LOCAL_PREF on the wire (RFC 4271 5.1.5), the community alone carries it.
    ebgp = decode_one(UPDATE_EBGP_GSHUT)
    assert isinstance(ebgp, Update) and ebgp.get(LocalPref) is None


def test_as4_peer_gets_real_as_without_as4_path() -> None:
    (msg,) = wire.announce_ipv4([VIP], NH, OutboundPolicy(4200000001, True, True))
    upd = decode_one(msg, AS4)
    assert isinstance(upd, Update)
    assert upd.get(AsPath) == AsPath((AsPathSegment(2, (4200000001,)),))
    assert upd.get(As4Path) is None


def test_ibgp_v6_has_local_pref_and_empty_path() -> None:
    (msg,) = wire.announce_ipv6([VIP6], NH6, OutboundPolicy(65000, False, True))
    upd = decode_one(msg)
    assert isinstance(upd, Update)
    assert upd.get(AsPath) == AsPath(())
    assert upd.get(LocalPref) == LocalPref(100)
    assert upd.announced() == [VIP6]


def test_shutdown_communication() -> None:
    n = Notification.shutdown("maintenance: node drained ✓")
    assert (n.code, n.subcode) == (6, 2)
    assert n.data[0] == len("maintenance: node drained ✓".encode())
    assert n.shutdown_message == "maintenance: node drained ✓"
    assert n.describe() == "Cease/Administrative Shutdown: 'maintenance: node drained ✓'"
    # Up to 255 octets, cut on a character boundary.
    long = Notification.shutdown("é" * 200)
    assert long.data[0] == 254 and long.shutdown_message == "é" * 127
    assert decode_one(encode(long)) == long
    # A length byte pointing past the data is not a message.
    assert Notification(6, 2, b"\x09abc").shutdown_message is None
    assert Notification(6, 2, b"\x02\xff\xfe").shutdown_message == "\ufffd\ufffd"
    assert Notification(4, 0).describe() == "Hold Timer Expired/Unspecific"
    assert Notification(3, 11).name == "UPDATE Message Error/Malformed AS_PATH"


def test_open_properties() -> None:
    m = decode_one(OPEN_BIG_AS)
    assert isinstance(m, Open)
    assert m.asn == 4200000001 and m.four_octet_as and not m.route_refresh
    assert m.families == {(1, 1)}  # no multiprotocol capability: IPv4 unicast implied
    assert OPEN_65000_MSG.families == {(1, 1), (2, 1)}


def test_unknown_capability_and_attribute_kept() -> None:
    data = h(
        M
        + """
        0021 01 04 fde8 001e c000020b
        04 02 02 40 00     # opt len 4; capabilities len 2; graceful restart (64) len 0
        """
    )
    m = decode_one(data)
    assert isinstance(m, Open) and m.capabilities == (UnknownCapability(64, b""),)
    upd = h(
        M
        + """
        002f 02 0000 0013
        40 01 01 00
        40 02 00
        40 03 04 c000020b
        e0 20 02 aabb   # unknown optional transitive (partial bit set) type 32, kept
        20 cb007164
        """
    )
    u = decode_one(upd)
    assert isinstance(u, Update)
    assert UnknownAttribute(0xE0, 32, b"\xaa\xbb") in u.attributes
    assert encode(u) == upd


def test_streaming_decoder_byte_by_byte() -> None:
    stream = OPEN_65000 + KEEPALIVE + UPDATE_EBGP_AS4 + NOTIF_SHUTDOWN
    d = Decoder(AS4)
    out: list[wire.Message] = []
    for i in range(len(stream)):
        d.feed(stream[i : i + 1])
        while (m := d.next_message()) is not None:
            out.append(m)
    assert [type(m) for m in out] == [Open, Keepalive, Update, Notification]
    assert d.buffered == 0


def test_packing_10000_prefixes() -> None:
    nets = [IPv4Network((0x0A000000 + i, 32)) for i in range(10000)]
    msgs = wire.announce_ipv4(nets, NH, EBGP_AS4)
    assert all(len(m) <= 4096 for m in msgs)
    # 5 octets per /32; 4096 - 23 - 20 octets of attributes leave room for 810 per message.
    assert len(msgs) == -(-10000 // 810)
    got = [p for u in updates_of(b"".join(msgs)) for p in u.announced()]
    assert got == nets
    wd = wire.withdraw_ipv4(nets)
    assert len(wd) == -(-10000 // ((4096 - 23) // 5))
    v6 = [IPv6Network((0x20010DB8 << 96 | i, 128)) for i in range(3000)]
    msgs6 = wire.announce_ipv6(v6, NH6, EBGP_AS4)
    assert all(len(m) <= 4096 for m in msgs6) and len(msgs6) > 1
    got6 = [p for u in updates_of(b"".join(msgs6)) for p in u.announced()]
    assert got6 == v6
    wd6 = [p for u in updates_of(b"".join(wire.withdraw_ipv6(v6))) for p in u.withdrawals()]
    assert wd6 == v6


def test_encode_refuses_oversize_and_unencodable() -> None:
    with pytest.raises(ValueError):
        encode(Update(nlri=tuple(IPv4Network((0x0A000000 + i, 32)) for i in range(900))))
    with pytest.raises(ValueError):
        encode(Update(attributes=(AsPath((AsPathSegment(2, (70000,)),)),)), AS2)


# ------------------------------------------------------------------------------ malformed


def upd(attrs: str, nlri: str = "20 cb007164", withdrawn: str = "") -> bytes:
    """An UPDATE framed around hand-written attributes (lengths computed)."""
    a, n, w = h(attrs), h(nlri), h(withdrawn)
    body = len(w).to_bytes(2, "big") + w + len(a).to_bytes(2, "big") + a + n
    return h(M) + (19 + len(body)).to_bytes(2, "big") + b"\x02" + body


def opn(body: str) -> bytes:
    b = h(body)
    return h(M) + (19 + len(b)).to_bytes(2, "big") + b"\x01" + b


ORIGIN = "40 01 01 00 "
PATH = "40 02 06 02 01 0000fde8 "
NHOP = "40 03 04 c000020b "
GOOD = ORIGIN + PATH + NHOP
MP6 = "90 0e 0016 0002 01 10 20010db8000000010000000000000011 00 00 "

EXT = "04 fde8 001e c000020b ff ff "  # an OPEN head in RFC 9072's extended format

R, W, D = Handling.SESSION_RESET, Handling.TREAT_AS_WITHDRAW, Handling.ATTRIBUTE_DISCARD

MALFORMED: list[tuple[str, bytes, int, int, Handling, bytes | None]] = [
    # (name, bytes, code, subcode, handling, expected data or None for "don't care")
    ("bad marker", h("ff" * 15 + "fe 0013 04"), 1, 1, R, b""),
    ("length below 19", h(M + "0012 04"), 1, 2, R, h("0012")),
    ("length above 4096", h(M + "1001 04"), 1, 2, R, h("1001")),
    ("bad type 6", h(M + "0013 06"), 1, 3, R, h("06")),
    ("keepalive of 20", h(M + "0014 04 00"), 1, 2, R, h("0014")),
    ("open too short", h(M + "001c 01") + bytes(9), 1, 2, R, h("001c")),
    ("notification too short", h(M + "0014 03 06"), 1, 2, R, h("0014")),
    ("update too short", h(M + "0016 02 000000"), 1, 2, R, h("0016")),
    ("route-refresh of 24", h(M + "0018 05 0001 00 01 00"), 7, 1, R, None),
    ("open version 3", opn("03 fde8 001e c000020b 00"), 2, 1, R, h("0004")),
    ("open hold time 1", opn("04 fde8 0001 c000020b 00"), 2, 6, R, b""),
    ("open hold time 2", opn("04 fde8 0002 c000020b 00"), 2, 6, R, b""),
    ("open bgp id 0", opn("04 fde8 001e 00000000 00"), 2, 3, R, b""),
    ("open auth parameter", opn("04 fde8 001e c000020b 03 01 01 00"), 2, 4, R, b""),
    ("open opt len mismatch", opn("04 fde8 001e c000020b 05 02 02 02 00"), 2, 0, R, None),
    ("open capability overrun", opn("04 fde8 001e c000020b 04 02 02 41 04"), 2, 0, R, None),
    # RFC 9072 extended optional parameters (Non-Ext OP Len 255, Non-Ext OP Type 255).
    ("open extended length missing", opn(EXT + "00"), 2, 0, R, b""),
    ("open extended length short", opn(EXT + "0004 02 0002 0200"), 2, 0, R, b""),
    ("open extended length long", opn(EXT + "0006 02 0002 0200"), 2, 0, R, b""),
    ("open extended param overrun", opn(EXT + "0005 02 0003 0200"), 2, 0, R, b""),
    ("open extended param header cut", opn(EXT + "0002 02 00"), 2, 0, R, b""),
    ("open extended auth parameter", opn(EXT + "0004 01 0001 00"), 2, 4, R, b""),
    ("open extended capability overrun", opn(EXT + "0005 02 0002 4104"), 2, 0, R, None),
    (
        "open multiprotocol length 3",
        opn("04 fde8 001e c000020b 07 02 05 010300 0100"),
        2,
        0,
        R,
        None,
    ),
    ("withdrawn length overrun", h(M + "0017 02 0009 0000"), 3, 1, R, b""),
    ("attribute length overrun", upd(GOOD)[:21] + h("ffff") + upd(GOOD)[23:], 3, 1, R, b""),
    ("nlri prefix length 33", upd(GOOD, "21 cb00716400"), 3, 10, R, b""),
    ("nlri truncated", upd(GOOD, "18 cb00"), 3, 10, R, b""),
    ("withdrawn prefix length 40", upd("", "", "28 cb007164 00"), 3, 10, R, b""),
    ("unrecognized well-known", upd(GOOD + "40 63 01 00"), 3, 2, R, h("40 63 01 00")),
    ("duplicate MP_REACH", upd(ORIGIN + PATH + MP6 + MP6, ""), 3, 1, R, b""),
    (
        "mp_reach next hop length 5",
        upd(ORIGIN + PATH + "80 0e 0a 0002 01 05 0000000000 00 00", ""),
        3,
        9,
        R,
        None,
    ),
    (
        "mp_reach prefix 129",
        upd(ORIGIN + PATH + "90 0e 0016 0002 01 10 20010db8000000010000000000000011 00 81", ""),
        3,
        9,
        R,
        None,
    ),
    ("origin flagged optional", upd("c0 01 01 00 " + PATH + NHOP), 3, 4, W, h("c0 01 01 00")),
    ("as_path flagged optional", upd(ORIGIN + "c0 02 06 02 01 0000fde8 " + NHOP), 3, 4, W, None),
    ("med flagged transitive", upd(GOOD + "c0 04 04 00000000"), 3, 4, W, h("c0 04 04 00000000")),
    ("origin partial bit", upd("60 01 01 00 " + PATH + NHOP), 3, 4, W, None),
    ("origin length 2", upd("40 01 02 0000 " + PATH + NHOP), 3, 5, W, h("40 01 02 0000")),
    ("origin value 3", upd("40 01 01 03 " + PATH + NHOP), 3, 6, W, h("40 01 01 03")),
    ("missing origin", upd(PATH + NHOP), 3, 3, W, h("01")),
    ("missing as_path", upd(ORIGIN + NHOP), 3, 3, W, h("02")),
    ("missing next_hop", upd(ORIGIN + PATH), 3, 3, W, h("03")),
    ("missing as_path with mp_reach", upd(ORIGIN + MP6, ""), 3, 3, W, h("02")),
    ("next_hop 0.0.0.0", upd(ORIGIN + PATH + "40 03 04 00000000"), 3, 8, W, h("40 03 04 00000000")),
    ("next_hop multicast", upd(ORIGIN + PATH + "40 03 04 e0000001"), 3, 8, W, None),
    ("next_hop length 3", upd(ORIGIN + PATH + "40 03 03 c00002"), 3, 5, W, None),
    ("as_path segment type 5", upd(ORIGIN + "40 02 06 05 01 0000fde8 " + NHOP), 3, 11, W, b""),
    ("as_path count overrun", upd(ORIGIN + "40 02 06 02 02 0000fde8 " + NHOP), 3, 11, W, b""),
    ("as_path empty segment", upd(ORIGIN + "40 02 02 02 00 " + NHOP), 3, 11, W, b""),
    ("attribute overruns list", upd(GOOD + "c0 08 08 0000fde8"), 3, 1, W, b""),
    ("truncated attribute header", upd(GOOD + "c0 08"), 3, 1, W, b""),
    ("med length 2", upd(GOOD + "80 04 02 0000"), 3, 5, W, None),
    ("local_pref length 5", upd(GOOD + "40 05 05 0000000064"), 3, 5, W, None),
    ("communities length 3", upd(GOOD + "c0 08 03 000001"), 3, 5, W, None),
    ("duplicate origin", upd(GOOD + ORIGIN), 3, 1, D, b""),
    ("atomic_aggregate length 1", upd(GOOD + "40 06 01 00"), 3, 5, D, None),
    ("aggregator length 5", upd(GOOD + "c0 07 05 0000000000"), 3, 5, D, None),
    ("as4_path malformed", upd(GOOD + "c0 11 03 02 01 00"), 3, 9, D, None),
]


def test_malformed_table_is_big_enough() -> None:
    assert len(MALFORMED) >= 25
    assert len({m[0] for m in MALFORMED}) == len(MALFORMED)


@pytest.mark.parametrize(
    ("name", "data", "code", "subcode", "handling", "edata"),
    MALFORMED,
    ids=[m[0] for m in MALFORMED],
)
def test_malformed(
    name: str, data: bytes, code: int, subcode: int, handling: Handling, edata: bytes | None
) -> None:
    d = Decoder(AS4)
    d.feed(data)
    with pytest.raises(BgpError) as ei:
        d.next_message()
    err = ei.value
    assert (err.code, err.subcode, err.handling) == (code, subcode, handling), err
    if edata is not None:
        assert err.data == edata
    assert err.notification() == Notification(code, subcode, err.data)
    if handling is R:
        with pytest.raises(BgpError):  # a broken stream stays broken
            d.next_message()
    else:
        # Not fatal: the bytes were consumed, the update is attached, the stream goes on.
        assert err.update is not None
        d.feed(KEEPALIVE)
        assert d.next_message() == Keepalive()


def test_treat_as_withdraw_carries_routes_and_attribute_discard_drops_attribute() -> None:
    with pytest.raises(BgpError) as ei:
        Decoder(AS4).feed_all(upd("40 01 01 03 " + PATH + NHOP))
    assert ei.value.update is not None and ei.value.update.nlri == (VIP,)
    with pytest.raises(BgpError) as ei:
        Decoder(AS4).feed_all(upd(GOOD + "40 01 01 02"))  # duplicate ORIGIN (INCOMPLETE)
    u = ei.value.update
    assert u is not None and u.get(Origin) == Origin(0) and u.nlri == (VIP,)
    # A worse error wins: treat-as-withdraw plus a bad NLRI field is a session reset.
    with pytest.raises(BgpError) as ei:
        Decoder(AS4).feed_all(upd("40 01 01 03 " + PATH + NHOP, "21 cb00716400"))
    assert (ei.value.code, ei.value.subcode, ei.value.handling) == (3, 10, R)


def test_as_path_width_depends_on_context() -> None:
    # The 2-octet AS_PATH bytes are malformed on a 4-octet session: a segment of one AS
    # needs 4 octets there, only 2 remain.
    with pytest.raises(BgpError) as ei:
        Decoder(AS4).feed_all(UPDATE_EBGP_AS2)
    assert (ei.value.code, ei.value.subcode) == (3, 11)
    assert isinstance(decode_one(UPDATE_EBGP_AS2, AS2), Update)


def test_end_of_rib() -> None:
    assert Update().is_end_of_rib
    assert Update(attributes=(MpUnreachNlri(2, 1),)).is_end_of_rib
    assert not Update(withdrawn=(VIP,)).is_end_of_rib


# ------------------------------------------------------------------------------ round trip

prefix_len4 = st.integers(0, 32)
v4net = st.builds(
    lambda a, p: IPv4Network((a & ((0xFFFFFFFF << (32 - p)) & 0xFFFFFFFF), p)),
    st.integers(0, 2**32 - 1),
    prefix_len4,
)
v6net = st.builds(
    lambda a, p: IPv6Network((a & (((1 << 128) - 1) << (128 - p)) & ((1 << 128) - 1), p)),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)
good_nh = st.integers(0x01000000, 0xDFFFFFFF).filter(lambda a: a >> 24 != 127).map(IPv4Address)
v6addr = st.integers(0, 2**128 - 1).map(IPv6Address)


def segments(max_as: int) -> st.SearchStrategy[tuple[AsPathSegment, ...]]:
    seg = st.builds(
        AsPathSegment,
        st.integers(1, 4),
        st.lists(st.integers(0, max_as), min_size=1, max_size=8).map(tuple),
    )
    return st.lists(seg, max_size=3).map(tuple)


@st.composite
def updates(draw: st.DrawFn) -> tuple[Update, SessionContext]:
    as4 = draw(st.booleans())
    max_as = 2**32 - 1 if as4 else 2**16 - 1
    attrs: list[wire.PathAttribute] = [
        Origin(draw(st.integers(0, 2))),
        AsPath(draw(segments(max_as))),
        NextHop(draw(good_nh)),
    ]
    mp_reach_v6 = st.builds(
        MpReachNlri,
        st.just(2),
        st.just(1),
        st.lists(v6addr, min_size=1, max_size=2).map(tuple),
        st.lists(v6net, max_size=10).map(tuple),
    )
    mp_reach_v4 = st.builds(
        MpReachNlri,
        st.just(1),
        st.just(1),
        good_nh.map(lambda a: (a,)),
        st.lists(v4net, max_size=10).map(tuple),
    )
    optional: list[st.SearchStrategy[wire.PathAttribute]] = [
        st.builds(Med, st.integers(0, 2**32 - 1)),
        st.builds(LocalPref, st.integers(0, 2**32 - 1)),
        st.just(AtomicAggregate()),
        st.builds(Aggregator, st.integers(0, max_as), st.integers(0, 2**32 - 1).map(IPv4Address)),
        st.builds(
            Communities, st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=8).map(tuple)
        ),
        st.one_of(mp_reach_v6, mp_reach_v4),  # one MP_REACH_NLRI at most
        st.builds(MpUnreachNlri, st.just(2), st.just(1), st.lists(v6net, max_size=10).map(tuple)),
        st.builds(As4Path, segments(2**32 - 1)),
        st.builds(
            UnknownAttribute,
            st.sampled_from([0x80, 0xC0, 0xE0, 0xA0]),
            st.integers(18, 255).filter(lambda t: t not in (14, 15, 17)),
            st.binary(max_size=300),
        ),
    ]
    for strat in optional:
        if draw(st.booleans()):
            attrs.append(draw(strat))
    uniq = attrs
    order = draw(st.permutations(uniq))
    withdrawn = tuple(draw(st.lists(v4net, max_size=15)))
    nlri = tuple(draw(st.lists(v4net, max_size=15)))
    return Update(withdrawn, tuple(order), nlri), SessionContext(as4)


caps = st.one_of(
    st.builds(MultiprotocolCapability, st.integers(0, 65535), st.integers(0, 255)),
    st.builds(FourOctetAsCapability, st.integers(0, 2**32 - 1)),
    st.just(RouteRefreshCapability()),
    st.builds(
        UnknownCapability,
        st.integers(0, 255).filter(lambda c: c not in (1, 2, 65)),
        st.binary(max_size=20),
    ),
)
messages = st.one_of(
    st.just(Keepalive()),
    st.builds(Notification, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=200)),
    st.builds(RouteRefresh, st.integers(0, 65535), st.integers(0, 255), st.integers(0, 255)),
    st.builds(
        Open,
        st.integers(0, 65535),
        st.one_of(st.just(0), st.integers(3, 65535)),
        st.integers(1, 2**32 - 1).map(IPv4Address),
        st.lists(caps, max_size=8).map(tuple),
    ),
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_roundtrip_simple(msg: wire.Message) -> None:
    assert decode_one(encode(msg)) == msg


@settings(max_examples=300, deadline=None)
@given(updates())
def test_roundtrip_update(pair: tuple[Update, SessionContext]) -> None:
    msg, ctx = pair
    data = encode(msg, ctx)
    assert decode_one(data, ctx) == msg
    assert encode(decode_one(data, ctx), ctx) == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.booleans())
def test_garbage_only_raises_bgp_error(body: bytes, as4: bool) -> None:
    for mtype in (1, 2, 3, 4, 5):
        frame = h(M) + (19 + len(body)).to_bytes(2, "big") + bytes([mtype]) + body
        try:
            Decoder(SessionContext(as4)).feed_all(frame)
        except BgpError as e:
            assert 1 <= e.code <= 7


# ---------------------------------------------------------------- OPEN: what routers may send

OPEN_EXTENDED = h(
    M
    + """
    0031 01          # length 49, type OPEN
    04 fde9 005a     # version 4, AS 65001, hold time 90
    c0000201         # BGP identifier 192.0.2.1
    ff               # Non-Ext OP Len 255 (RFC 9072 section 2)
    ff               # Non-Ext OP Type 255: the extended format is in use
    0011             # Extended Opt. Parm. Length 17
    02 000e          # parameter type 2 (Capabilities), 2-octet length 14
    01 04 0001 00 01 # multiprotocol IPv4 unicast
    02 00            # route refresh
    41 04 0000fde9   # 4-octet AS 65001
    """
)
OPEN_EXTENDED_MSG = Open(
    65001,
    90,
    IPv4Address("192.0.2.1"),
    (MultiprotocolCapability(1, 1), RouteRefreshCapability(), FourOctetAsCapability(65001)),
)


def test_rfc9072_extended_open_golden() -> None:
    got = decode_one(OPEN_EXTENDED)
    assert got == OPEN_EXTENDED_MSG and isinstance(got, Open) and got.extended
    plain = decode_one(OPEN_65000)
    assert isinstance(plain, Open) and not plain.extended and not OPEN_EXTENDED_MSG.extended
    assert encode_open_extended(OPEN_EXTENDED_MSG) == OPEN_EXTENDED
    # Short enough for RFC 4271's encoding: that one is sent (RFC 9072: SHOULD).
    assert encode(OPEN_EXTENDED_MSG)[28] == 16  # Optional Parameters Length 16 (2 + 14)


def test_rfc9072_non_ext_op_len_is_ignored_once_the_type_says_extended() -> None:
    data = bytearray(OPEN_EXTENDED)
    data[28] = 0x10  # RFC 9072: SHOULD be 255, MUST be ignored on receipt
    assert decode_one(bytes(data)) == OPEN_EXTENDED_MSG


def test_rfc9072_open_longer_than_255_octets_of_parameters() -> None:
    fqdn: list[wire.Capability] = [UnknownCapability(73, bytes([i]) * 20) for i in range(15)]
    caps = (MultiprotocolCapability(1, 1), *fqdn)
    msg = Open(65001, 90, IPv4Address("192.0.2.1"), caps)
    data = encode(msg)
    assert data[28:30] == b"\xff\xff" and len(data) == 19 + 10 + 3 + 3 + 6 + 15 * 22
    assert decode_one(data) == msg


OPEN_VARIANTS = [
    (
        "capabilities split over three parameters",
        "04 fde9 005a c0000201 14  02 06 01040001 0001  02 02 0200  02 06 4104 0000fde9",
        (MultiprotocolCapability(1, 1), RouteRefreshCapability(), FourOctetAsCapability(65001)),
    ),
    (
        "the same capability twice",
        "04 fde9 005a c0000201 0e  02 0c 01040001 0001 01040001 0001",
        (MultiprotocolCapability(1, 1), MultiprotocolCapability(1, 1)),
    ),
    (
        "unknown capabilities (FRR 8.4 sends some of these)",
        "04 fde9 005a c0000201 14  02 12 4002 0078 4600 4504 0001 0101 0600 8000 4700",
        (
            UnknownCapability(64, h("0078")),  # graceful restart
            UnknownCapability(70),  # enhanced route refresh
            UnknownCapability(69, h("0001 01 01")),  # ADD-PATH
            UnknownCapability(6),  # extended message
            UnknownCapability(128),  # pre-standard route refresh
            UnknownCapability(71),  # long-lived graceful restart
        ),
    ),
    ("an empty Capabilities parameter", "04 fde9 005a c0000201 02 02 00", ()),
    ("no optional parameters (RFC 4271 only)", "04 fde9 005a c0000201 00", ()),
    ("hold time 0", "04 fde9 0000 c0000201 00", ()),
    (
        "RFC 9072 encoding with two parameters",
        "04 fde9 005a c0000201 ff ff 000c  02 0002 0200  02 0004 4600 0600",
        (RouteRefreshCapability(), UnknownCapability(70), UnknownCapability(6)),
    ),
]


@pytest.mark.parametrize(("name", "body", "caps"), OPEN_VARIANTS, ids=[v[0] for v in OPEN_VARIANTS])
def test_open_variants_a_conforming_router_may_send(
    name: str, body: str, caps: tuple[wire.Capability, ...]
) -> None:
    m = decode_one(opn(body))
    assert isinstance(m, Open) and m.capabilities == caps


def test_unsupported_capabilities_decodes_notification_data() -> None:
    mp6 = h("01 04 0002 00 01")
    assert unsupported_capabilities(mp6) == ((MultiprotocolCapability(2, 1),), b"")
    # A known code with an odd length is kept undecoded; a truncated tail comes back as bytes.
    got = unsupported_capabilities(mp6 + h("41 02 0001") + h("40 05 00"))
    assert got == ((MultiprotocolCapability(2, 1), UnknownCapability(65, h("0001"))), h("400500"))
    assert unsupported_capabilities(b"") == ((), b"")
    assert unsupported_capabilities(b"\x01") == ((), b"\x01")


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ("01 04 0002 00 01", "Multiprotocol IPv6 unicast"),
        ("01 04 0001 00 01  02 00", "Multiprotocol IPv4 unicast, Route Refresh"),
        ("01 04 0019 00 46", "Multiprotocol L2VPN EVPN"),
        ("01 04 0063 00 07", "Multiprotocol AFI 99 SAFI 7"),
        ("41 04 0000fde8", "4-octet AS 65000"),
        ("40 02 0078", "Graceful Restart (code 64)"),
        ("63 00", "capability 99"),
        ("01 04 0002", "undecodable data 01040002"),
    ],
)
def test_unsupported_capability_notification_is_logged_by_name(data: str, text: str) -> None:
    n = decode_one(h(M) + (21 + len(h(data))).to_bytes(2, "big") + h("03 02 07" + data))
    assert isinstance(n, Notification)
    assert n.describe() == f"OPEN Message Error/Unsupported Capability: {text}"
    assert capability_name(MultiprotocolCapability(2, 1)) == "Multiprotocol IPv6 unicast"


# FRR 8.4's OPENs, captured in the lab (a listener on node1 port 179, FRR connecting to it):
# each capability in a parameter of its own; with `extended-optional-parameters` in RFC 9072's
# encoding (Non-Ext OP Len 255, Non-Ext OP Type 255, 99 octets of parameters).
FRR_OPEN_EXTENDED = bytes.fromhex(
    "ffffffffffffffffffffffffffffffff00830104fde900b4c0000201ffff00630200060104000100010200"
    "0601040002000102000280000200020200020002460002000641040000fde9020002060002000a45080001"
    "01010002010102000a490806726f75746572000200044002c078020010470e000101800000000002018000"
    "0000"
)
FRR_OPEN_IPV4_ONLY = bytes.fromhex(
    "ffffffffffffffffffffffffffffffff00620104fde900b4c00002014502060104000100010202800002"
    "02020002024600020641040000fde9020206000206450400010101020a490806726f757465720002044002"
    "c0780209470700010180000000"
)


@pytest.mark.parametrize(
    ("data", "extended", "families"),
    [(FRR_OPEN_EXTENDED, True, {(1, 1), (2, 1)}), (FRR_OPEN_IPV4_ONLY, False, {(1, 1)})],
    ids=["extended-optional-parameters", "ipv4 only"],
)
def test_frr_84_opens_as_captured(
    data: bytes, extended: bool, families: set[tuple[int, int]]
) -> None:
    m = decode_one(data)
    assert isinstance(m, Open) and m.extended is extended
    assert (m.asn, m.hold_time, m.bgp_id) == (65001, 180, IPv4Address("192.0.2.1"))
    assert m.families == families and m.four_octet_as and m.route_refresh
    names = [capability_name(c) for c in m.capabilities]
    assert "FQDN (code 73)" in names and "Long-Lived Graceful Restart (code 71)" in names


def test_notification_codes_are_the_rfc_octets() -> None:
    """The IntEnums are the octets of RFC 4271 4.5 / 6.x, RFC 4486, RFC 9384 and RFC 7313."""
    assert [int(c) for c in wire.ErrorCode] == [1, 2, 3, 4, 5, 6, 7]
    assert int(wire.CeaseSubcode.ADMINISTRATIVE_SHUTDOWN) == 2
    assert int(wire.CeaseSubcode.BFD_DOWN) == 10
    assert int(wire.OpenError.UNSUPPORTED_CAPABILITY) == 7
    assert int(wire.UpdateError.MALFORMED_AS_PATH) == 11
    assert int(wire.RouteRefreshError.INVALID_MESSAGE_LENGTH) == 1
    n = Notification(wire.ErrorCode.CEASE, wire.CeaseSubcode.BFD_DOWN)
    assert encode(n) == h(M + "0015 03 06 0a") and n == Notification(6, 10)
    assert n.name == "Cease/BFD Down"


def test_attribute_table_rfc7606_handling() -> None:
    """RFC 7606 section 7: which attributes are treat-as-withdraw and which attribute-discard;
    only the MP attributes reset the session when repeated (section 3(g))."""
    table = wire.ATTRIBUTES
    discard = {c for c, row in table.items() if row.on_error is Handling.ATTRIBUTE_DISCARD}
    assert discard == {wire.A_ATOMIC_AGGREGATE, wire.A_AGGREGATOR, wire.A_AS4_PATH}
    assert all(
        row.on_error is Handling.TREAT_AS_WITHDRAW for c, row in table.items() if c not in discard
    )
    assert {c for c, row in table.items() if row.duplicate_resets} == {
        wire.A_MP_REACH,
        wire.A_MP_UNREACH,
    }
    assert sorted(table) == [1, 2, 3, 4, 5, 6, 7, 8, 14, 15, 17]


# A de-preferred path (OutboundPolicy.depreferred): eBGP our AS 3 more times + 65535:0; iBGP
# LOCAL_PREF 0 + 65535:0 (RFC 4271 9.1.2.2 a-b: LOCAL_PREF, then AS_PATH length, decide first).
UPDATE_EBGP_DEPREFERRED = h(
    M
    + """
    0043 02 0000 0027          # length 67, attributes 39
    40 01 01 00                # ORIGIN IGP
    40 02 12 02 04             # AS_PATH, length 18: AS_SEQUENCE of 4
      0000fde8 0000fde8 0000fde8 0000fde8   # 65000 65000 65000 65000
    40 03 04 c000020b          # NEXT_HOP 192.0.2.11
    c0 08 04 ffff0000          # COMMUNITIES 65535:0
    20 cb007164                # 203.0.113.100/32
    """
)
UPDATE_IBGP_DEPREFERRED = h(
    M
    + """
    0038 02 0000 001c          # length 56, attributes 28
    40 01 01 00
    40 02 00                   # empty AS_PATH: no prepending inside the AS
    40 03 04 c000020b
    40 05 04 00000000          # LOCAL_PREF 0
    c0 08 04 ffff0000          # COMMUNITIES 65535:0
    20 cb007164
    """
)
UPDATE_AS_TRANS_DEPREFERRED = h(
    M
    + """
    0050 02 0000 0034          # length 80, attributes 52
    40 01 01 00
    40 02 0a 02 04 5ba0 5ba0 5ba0 5ba0     # AS_PATH: AS_TRANS x 4 (2-octet peer)
    40 03 04 c000020b
    c0 08 04 ffff0000
    c0 11 12 02 04 fa56ea01 fa56ea01 fa56ea01 fa56ea01   # AS4_PATH: 4200000001 x 4
    20 cb007164
    """
)
UPDATE_V6_DEPREFERRED = h(
    M
    + """
    0061 02 0000 004a          # length 97, attributes 74
    40 01 01 00
    40 02 12 02 04 0000fde8 0000fde8 0000fde8 0000fde8
    c0 08 04 ffff0000
    90 0e 0026
      0002 01 10
      20010db8000000010000000000000011
      00
      80 20010db8010000000000000000000100
    """
)


def test_depreferred_builders_match_golden() -> None:
    ebgp = EBGP_AS4.depreferred()
    assert wire.DEPREFER_PREPEND == 3 and ebgp.prepend == 3
    assert wire.announce_ipv4([VIP], NH, ebgp) == [UPDATE_EBGP_DEPREFERRED]
    assert wire.announce_ipv6([VIP6], NH6, ebgp) == [UPDATE_V6_DEPREFERRED]
    ibgp = OutboundPolicy(65000, False, True).depreferred()
    assert ibgp.prepend == 0
    assert wire.announce_ipv4([VIP], NH, ibgp) == [UPDATE_IBGP_DEPREFERRED]
    as_trans = OutboundPolicy(4200000001, True, False).depreferred()
    assert wire.announce_ipv4([VIP], NH, as_trans) == [UPDATE_AS_TRANS_DEPREFERRED]
    upd = decode_one(UPDATE_EBGP_DEPREFERRED)
    assert isinstance(upd, Update)
    assert upd.get(AsPath) == AsPath((AsPathSegment(2, (65000,) * 4),))
    assert upd.get(Communities) == Communities((0xFFFF0000,))
    assert upd.get(LocalPref) is None  # eBGP: never on the wire (RFC 4271 5.1.5)
    two = decode_one(UPDATE_AS_TRANS_DEPREFERRED, AS2)
    assert isinstance(two, Update)
    assert two.get(As4Path) == As4Path((AsPathSegment(2, (4200000001,) * 4),))
    ib = decode_one(UPDATE_IBGP_DEPREFERRED)
    assert isinstance(ib, Update) and ib.get(LocalPref) == LocalPref(0)
    assert ib.get(AsPath) == AsPath(())


@pytest.mark.parametrize("prepend", [0, 1, 3, 10])
def test_depreferred_prepend_count(prepend: int) -> None:
    p = EBGP_AS4.depreferred(prepend)
    (seg,) = next(a for a in p.attributes() if isinstance(a, AsPath)).segments
    assert seg.asns == (65000,) * (1 + prepend)
    assert GRACEFUL_SHUTDOWN_COMMUNITY in p.communities
    # idempotent and independent of the graceful-shutdown marking it builds on
    assert p.depreferred(prepend) == p
    assert p.graceful_shutdown() == p


@pytest.mark.parametrize("prepend", [-1, 11])
def test_depreferred_prepend_out_of_range(prepend: int) -> None:
    with pytest.raises(ValueError, match="prepend must be 0-10"):
        EBGP_AS4.depreferred(prepend)


def test_plain_and_graceful_shutdown_policies_are_unchanged_by_prepend() -> None:
    assert EBGP_AS4.prepend == 0
    assert wire.announce_ipv4([VIP], NH, EBGP_AS4) == [UPDATE_EBGP_AS4]
    assert wire.announce_ipv4([VIP], NH, EBGP_AS4.graceful_shutdown()) == [UPDATE_EBGP_GSHUT]


GRACEFUL_SHUTDOWN_COMMUNITY = 0xFFFF0000
