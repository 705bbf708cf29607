"""BFD demultiplexing and the single-hop TTL rule (vipgate.bfd.demux), without sockets:
RFC 5880 section 6.8.6 (Your Discriminator, source address) and RFC 5881 section 5 (TTL 255)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from vipgate.bfd.demux import REQUIRED_TTL, Deliver, Demux, Drop, parse_source
from vipgate.bfd.wire import ControlPacket, State, encode

PEER4 = IPv4Address("192.0.2.1")
PEER6 = IPv6Address("2001:db8::1")
OTHER = "192.0.2.9"


def packet(your_discr: int = 0, state: State = State.DOWN, my_discr: int = 77) -> bytes:
    return encode(
        ControlPacket(
            state=state,
            my_discr=my_discr,
            your_discr=your_discr,
            detect_mult=3,
            desired_min_tx=300_000,
            required_min_rx=300_000,
        )
    )


@pytest.fixture
def demux() -> Demux[str]:
    d: Demux[str] = Demux()
    d.add("single4", 1001, PEER4, False)
    d.add("multi4", 1002, PEER4, True)
    d.add("single6", 1003, PEER6, False)
    return d


@pytest.mark.parametrize(
    ("multihop", "ttl", "accepted"),
    [
        (False, 255, True),
        (False, 254, False),  # one router crossed
        (False, 1, False),
        (False, -1, False),  # the kernel gave no TTL: not known to be 255
        (True, 255, True),
        (True, 254, True),  # multihop: any TTL (RFC 5883 section 5, no configured minimum)
        (True, 1, True),
    ],
)
def test_ttl_rule(demux: Demux[str], multihop: bool, ttl: int, accepted: bool) -> None:
    v = demux.classify(packet(), str(PEER4), multihop, ttl, 5.0)
    if accepted:
        assert isinstance(v, Deliver) and v.at == 5.0
        assert v.session == ("multi4" if multihop else "single4") and v.packet.my_discr == 77
    else:
        assert v == Drop("ttl", f"BFD packet from {PEER4} discarded: TTL {ttl}, not 255")
    assert REQUIRED_TTL == {False: 255, True: None}


def test_ttl_is_checked_before_the_packet(demux: Demux[str]) -> None:
    """A malformed packet with a bad TTL counts as a TTL drop (rule 1 before rule 2)."""
    v = demux.classify(b"\x00" * 3, str(PEER4), False, 64)
    assert isinstance(v, Drop) and v.rule == "ttl"


def test_packet_checks_name_their_rule(demux: Demux[str]) -> None:
    bad = bytearray(packet())
    bad[2] = 0  # Detect Mult 0 (RFC 5880 6.8.6)
    v = demux.classify(bytes(bad), str(PEER4), False, 255)
    assert isinstance(v, Drop) and v.rule == "detect_mult"
    assert v.reason.startswith(f"BFD packet from {PEER4} discarded: ")


@pytest.mark.parametrize(
    ("your_discr", "source", "multihop", "expected"),
    [
        (1001, str(PEER4), False, "single4"),
        (1002, str(PEER4), True, "multi4"),
        (1003, str(PEER6), False, "single6"),
        (1001, OTHER, False, Drop("your_discriminator")),  # not that session's peer
        (1001, str(PEER4), True, Drop("your_discriminator")),  # not that session's hop kind
        (4242, str(PEER4), False, Drop("your_discriminator")),  # no such session
        (0, str(PEER4), False, "single4"),
        (0, str(PEER4), True, "multi4"),
        (0, str(PEER6), False, "single6"),
        (0, str(PEER6), True, Drop("no_session")),
        (0, OTHER, False, Drop("no_session")),
        (0, "not-an-address", False, Drop("source")),
        (1001, "not-an-address", False, Drop("source")),
    ],
)
def test_demultiplexing(
    demux: Demux[str], your_discr: int, source: str, multihop: bool, expected: object
) -> None:
    state = State.UP if your_discr else State.DOWN
    v = demux.classify(packet(your_discr, state), source, multihop, 255, 1.5)
    if isinstance(expected, Drop):
        assert v == expected
    else:
        assert isinstance(v, Deliver) and v.session == expected and v.at == 1.5
        assert v.packet.your_discr == your_discr and v.packet.my_discr == 77


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),  # a dual-stack socket's view of an IPv4 peer
        ("fe80::1%veth0", "fe80::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("", None),
        ("192.0.2.256", None),
    ],
)
def test_parse_source(text: str, address: str | None) -> None:
    assert parse_source(text) == (ip_address(address) if address else None)


def test_v4_mapped_source_finds_the_ipv4_session(demux: Demux[str]) -> None:
    v = demux.classify(packet(), "::ffff:192.0.2.1", False, 255)
    assert isinstance(v, Deliver) and v.session == "single4" and v.at is None


def test_registration() -> None:
    d: Demux[str] = Demux()
    values = iter([0.0, 0.5, 0.5, 0.25])
    first = d.new_discriminator(lambda: next(values))  # 0 is never a discriminator
    assert first == int(0.5 * 0xFFFFFFFF)
    d.add("a", first, PEER4, False)
    assert d.new_discriminator(lambda: next(values)) == int(0.25 * 0xFFFFFFFF)  # taken: again
    assert d.session_for(PEER4, False) == "a" and d.session_for(PEER4, True) is None
    with pytest.raises(ValueError):
        d.add("b", first, PEER6, False)
    with pytest.raises(ValueError):
        d.add("b", 5, PEER4, False)
    with pytest.raises(ValueError):
        d.add("b", 0, PEER6, False)
