"""The rtnetlink requests that take the VIP off its interface and put it back (gate rule 13):
byte for byte, as ``ip`` (and pyroute2 in ``vip.ensure_vip``) would send them."""

from __future__ import annotations

import errno
import struct
from ipaddress import ip_address

import pytest

from vipgate.vipaddr import AddressOp, _ack_error, encode_request


def h(text: str) -> bytes:
    return bytes.fromhex("".join(line.split("#")[0] for line in text.splitlines()))


ADD_V4_LO = h(
    """
    38000000 1400 0505 07000000 00000000   # len 56, RTM_NEWADDR, REQUEST|ACK|REPLACE|CREATE, seq 7
    02 20 00 fe 01000000                   # AF_INET, /32, flags 0, scope host (lo), index 1
    0800 0200 cb007164                     # IFA_LOCAL 203.0.113.100
    0800 0100 cb007164                     # IFA_ADDRESS 203.0.113.100
    0f00 0300 6c6f3a7669706761746500 00    # IFA_LABEL "lo:vipgate\\0", padded
    """
)
DEL_V4_ETH = h(
    """
    28000000 1500 0500 07000000 00000000   # len 40, RTM_DELADDR, REQUEST|ACK
    02 20 00 00 03000000                   # AF_INET, /32, scope universe, index 3
    0800 0200 cb007164
    0800 0100 cb007164
    """
)
ADD_V6_LO = h(
    """
    48000000 1400 0505 07000000 00000000   # len 72
    0a 80 02 fe 01000000                   # AF_INET6, /128, IFA_F_NODAD, scope host, index 1
    1400 0200 20010db8010000000000000000000100
    1400 0100 20010db8010000000000000000000100
    0500 0b00 76 000000                    # IFA_PROTO 0x76, padded
    """
)


@pytest.mark.parametrize(
    ("op", "golden"),
    [
        (AddressOp(True, ip_address("203.0.113.100"), 32, "lo", 1, label="lo:vipgate"), ADD_V4_LO),
        (AddressOp(False, ip_address("203.0.113.100"), 32, "eth0", 3), DEL_V4_ETH),
        (AddressOp(True, ip_address("2001:db8:100::100"), 128, "lo", 1, proto=0x76), ADD_V6_LO),
    ],
)
def test_requests_match_golden(op: AddressOp, golden: bytes) -> None:
    data = encode_request(op, seq=7)
    assert data == golden
    assert struct.unpack_from("=I", data)[0] == len(data)


def _ack(seq: int, err: int) -> bytes:
    return struct.pack("=IHHII", 36, 2, 0, seq, 0) + struct.pack("=i", -err) + b"\0" * 16


def test_ack_errors() -> None:
    assert _ack_error(_ack(7, 0), 7) == 0
    assert _ack_error(_ack(7, errno.EPERM), 7) == errno.EPERM
    assert _ack_error(_ack(6, 0), 7) is None  # another request's answer
    assert _ack_error(_ack(6, 0) + _ack(7, errno.EEXIST), 7) == errno.EEXIST
    assert _ack_error(b"", 7) is None
    assert _ack_error(struct.pack("=IHHII", 0, 2, 0, 7, 0), 7) is None  # malformed length
    assert _ack_error(struct.pack("=IHHII", 16, 2, 0, 7, 0), 7) == errno.EPROTO  # no error code
