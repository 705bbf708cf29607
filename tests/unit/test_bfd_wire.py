"""BFD Control packet codec (vipgate.bfd.wire): golden bytes and every RFC 5880 6.8.6 check."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vipgate.bfd.wire import ControlPacket, Diag, Discard, State, decode, diag_label, encode

UP_POLL = ControlPacket(
    state=State.UP,
    my_discr=0x11223344,
    your_discr=0x55667788,
    detect_mult=3,
    desired_min_tx=300_000,
    required_min_rx=300_000,
    poll=True,
)
# RFC 5880 4.1 laid out by hand: vers 1 diag 0 | Up, P | mult 3 | len 24 | discrs | intervals
UP_POLL_BYTES = bytes.fromhex("20e00318 11223344 55667788 000493e0 000493e0 00000000")
DOWN_EXPIRED = ControlPacket(
    state=State.DOWN,
    my_discr=1,
    detect_mult=5,
    desired_min_tx=1_000_000,
    required_min_rx=10_000,
    diag=Diag.CONTROL_DETECTION_TIME_EXPIRED,
    final=True,
)
DOWN_EXPIRED_BYTES = bytes.fromhex("21500518 00000001 00000000 000f4240 00002710 00000000")


@pytest.mark.parametrize(
    ("packet", "data"), [(UP_POLL, UP_POLL_BYTES), (DOWN_EXPIRED, DOWN_EXPIRED_BYTES)]
)
def test_golden_bytes_both_ways(packet: ControlPacket, data: bytes) -> None:
    assert encode(packet) == data
    assert decode(data) == packet


def test_trailing_octets_beyond_length_are_ignored() -> None:
    assert decode(UP_POLL_BYTES + b"\x00\x00") == UP_POLL


def patched(offset: int, value: int, data: bytes = UP_POLL_BYTES) -> bytes:
    b = bytearray(data)
    b[offset] = value
    return bytes(b)


def with_u32(offset: int, value: int, data: bytes = UP_POLL_BYTES) -> bytes:
    b = bytearray(data)
    struct.pack_into("!I", b, offset, value)
    return bytes(b)


MALFORMED = [
    ("short header", UP_POLL_BYTES[:3], "length"),
    ("version 0", patched(0, 0x00), "version"),
    ("version 2", patched(0, 0x40), "version"),
    ("Length 23", patched(3, 23), "length"),
    ("Length above payload", patched(3, 28), "length"),
    ("payload shorter than Length", UP_POLL_BYTES[:20], "length"),
    ("A bit with Length 24", patched(1, 0xE4), "length"),
    ("Detect Mult 0", patched(2, 0), "detect_mult"),
    ("M bit", patched(1, 0xE1), "multipoint"),
    ("My Discriminator 0", with_u32(4, 0), "my_discriminator"),
    ("Your Discriminator 0 while Up", with_u32(8, 0), "your_discriminator"),
    ("Your Discriminator 0 while Init", with_u32(8, 0, patched(1, 0x80)), "your_discriminator"),
    (
        "A bit, no authentication in use",
        patched(3, 26, patched(1, 0xE4, UP_POLL_BYTES + b"\x01\x02")),
        "auth",
    ),
]


@pytest.mark.parametrize(("name", "data", "rule"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_packets_are_discarded_with_the_rule(name: str, data: bytes, rule: str) -> None:
    with pytest.raises(Discard) as exc:
        decode(data)
    assert exc.value.rule == rule, str(exc.value)


def test_your_discriminator_zero_is_fine_in_down_and_admin_down() -> None:
    for state_bits in (0x40, 0x00):  # Down, AdminDown
        p = decode(with_u32(8, 0, patched(1, state_bits)))
        assert p.your_discr == 0


def test_a_bit_clear_when_authentication_is_in_use_is_discarded() -> None:
    with pytest.raises(Discard) as exc:
        decode(UP_POLL_BYTES, auth_in_use=True)
    assert exc.value.rule == "auth"


def test_unassigned_diag_survives_and_has_a_label() -> None:
    p = decode(patched(0, 0x20 | 17))
    assert p.diag == 17
    assert diag_label(p.diag) == "unassigned_17"
    assert diag_label(1) == "control_detection_time_expired"


def test_encode_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(ValueError):
        encode(ControlPacket(State.UP, my_discr=1, detect_mult=256))
    with pytest.raises(ValueError):
        encode(ControlPacket(State.UP, my_discr=2**32))


@given(
    st.one_of(
        st.binary(max_size=64),
        st.binary(min_size=24, max_size=40).map(lambda b: bytes([0x20 | b[0] & 0x1F]) + b[1:]),
    )
)
def test_decode_never_raises_anything_but_discard(data: bytes) -> None:
    try:
        p = decode(data)
    except Discard:
        return
    out = encode(p)
    assert out[:3] + out[4:] == data[:3] + data[4:24]
