"""rtnetlink framing shared by the VIP address (:mod:`vipgate.vipaddr`), routing-table mode
(:mod:`vipgate.routing.rtnl`) and the BGP retry monitor (:mod:`vipgate.bgp.netmon`): message
types, flags and attribute numbers from ``linux/netlink.h``, ``linux/rtnetlink.h`` and
``linux/if_addr.h``, the fixed headers, and the attribute and message builders (pure: no socket
here).

vipgate speaks rtnetlink itself while it runs because pyroute2 costs about 13 MB of resident
memory for the life of a process (see :mod:`vipgate.vip`, which uses it in a short-lived child at
start and exit); docs/design.md states the trade-off.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

__all__ = [
    "ATTR",
    "HDR",
    "IFADDR",
    "IFA_ADDRESS",
    "IFA_F_NODAD",
    "IFA_LABEL",
    "IFA_LOCAL",
    "IFA_PROTO",
    "NETLINK_GET_STRICT_CHK",
    "NETLINK_ROUTE",
    "NLMSG_DONE",
    "NLMSG_ERROR",
    "NLM_F_ACK",
    "NLM_F_CREATE",
    "NLM_F_DUMP",
    "NLM_F_REPLACE",
    "NLM_F_REQUEST",
    "RTM_DELADDR",
    "RTM_DELROUTE",
    "RTM_GETADDR",
    "RTM_GETROUTE",
    "RTM_NEWADDR",
    "RTM_NEWLINK",
    "RTM_NEWROUTE",
    "RT_SCOPE_HOST",
    "RT_SCOPE_UNIVERSE",
    "SOL_NETLINK",
    "attr",
    "message",
    "walk",
]

NETLINK_ROUTE = 0
SOL_NETLINK = 270  # linux/socket.h
NETLINK_GET_STRICT_CHK = 12  # linux/netlink.h: the kernel filters dumps (Linux >= 4.20)
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_DUMP = 0x300
NLM_F_CREATE = 0x400
RTM_NEWLINK = 16
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_LABEL = 3
IFA_PROTO = 11
IFA_F_NODAD = 0x02
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_HOST = 254

HDR = struct.Struct("=IHHII")  # struct nlmsghdr: len, type, flags, seq, pid
IFADDR = struct.Struct("=BBBBI")  # struct ifaddrmsg: family, prefixlen, flags, scope, index
ATTR = struct.Struct("=HH")  # struct rtattr: len, type


def attr(kind: int, data: bytes) -> bytes:
    """One rtattr of type `kind` holding `data`, padded to 4 octets (RTA_ALIGN)."""
    raw = ATTR.pack(ATTR.size + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    """One netlink message: the nlmsghdr (pid 0: the kernel fills it in) and `body`."""
    return HDR.pack(HDR.size + len(body), kind, flags, seq, 0) + body


def walk(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(type, seq, payload) of each message in one netlink datagram, in order (NLMSG_ALIGN
    steps); stops at a header whose length is shorter than the header itself. A message
    longer than the datagram gets the payload that is there."""
    offset = 0
    while offset + HDR.size <= len(data):
        length, kind, _flags, seq, _pid = HDR.unpack_from(data, offset)
        if length < HDR.size:
            return
        yield kind, seq, data[offset + HDR.size : offset + length]
        offset += (length + 3) & ~3
