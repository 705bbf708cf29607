"""The rtnetlink messages of routing-table mode: route and address dumps, route changes (pure).

Encoders build requests (``linux/rtnetlink.h``: ``struct rtmsg`` and RTA_* attributes;
``linux/if_addr.h`` for the address dump); decoders turn the kernel's replies into
:class:`~vipgate.routing.plan.KernelRoute` / :class:`~vipgate.routing.plan.KernelAddress`.
No socket here: :mod:`vipgate.routing.announcer` sends and receives. Address changes use
:func:`vipgate.vipaddr.encode_request`, which makes the VIP address exactly as the BGP mode does.

A dump request asks the kernel to filter by table and protocol (``NETLINK_GET_STRICT_CHK``,
Linux >= 4.20); the decoders filter again, so an older kernel that sends every route gives the
same result.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from ipaddress import ip_address, ip_network

from vipgate.netlink import ATTR as _ATTR
from vipgate.netlink import (
    IFA_ADDRESS,
    IFA_LABEL,
    IFA_LOCAL,
    IFA_PROTO,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    RTM_DELROUTE,
    RTM_GETADDR,
    RTM_GETROUTE,
    RTM_NEWROUTE,
    walk,
)
from vipgate.netlink import IFADDR as _IFADDR
from vipgate.netlink import attr as _attr
from vipgate.netlink import message as _message
from vipgate.routing.plan import KernelAddress, KernelRoute

__all__ = [
    "DumpEnd",
    "decode_addresses",
    "decode_routes",
    "encode_address_dump",
    "encode_route_change",
    "encode_route_dump",
    "messages",
]

RTA_DST = 1
RTA_OIF = 4
RTA_PRIORITY = 6
RTA_TABLE = 15

_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope,
# type, flags


class DumpEnd(Exception):
    """Raised by :func:`messages` at NLMSG_DONE (the dump is complete)."""


def _family(version: int) -> int:
    return socket.AF_INET if version == 4 else socket.AF_INET6


def encode_route_dump(version: int, table: int, protocol: int, seq: int) -> bytes:
    """RTM_GETROUTE dump of one family, asking for one table and protocol."""
    body = _RTMSG.pack(_family(version), 0, 0, 0, table, protocol, 0, 0, 0)
    body += _attr(RTA_TABLE, struct.pack("=I", table))
    return _message(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, body)


def encode_address_dump(version: int, index: int, seq: int) -> bytes:
    """RTM_GETADDR dump of one family on one interface."""
    body = _IFADDR.pack(_family(version), 0, 0, 0, index)
    return _message(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, body)


def encode_route_change(add: bool, route: KernelRoute, seq: int) -> bytes:
    """RTM_NEWROUTE (create or replace) or RTM_DELROUTE of `route`, acknowledged."""
    p = route.prefix
    table = route.table if route.table < 256 else 0
    body = _RTMSG.pack(
        _family(p.version),
        p.prefixlen,
        0,
        0,
        table,
        route.protocol,
        route.scope,
        route.type,
        0,
    )
    body += _attr(RTA_DST, p.network_address.packed)
    body += _attr(RTA_TABLE, struct.pack("=I", route.table))
    body += _attr(RTA_OIF, struct.pack("=I", route.oif))
    body += _attr(RTA_PRIORITY, struct.pack("=I", route.metric))
    if add:
        return _message(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
                        seq, body)  # fmt: skip
    return _message(RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, seq, body)


def messages(data: bytes, seq: int) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each message of `seq` in `data`. Raises :class:`DumpEnd` at
    NLMSG_DONE, OSError for an NLMSG_ERROR with an error; an acknowledgement (error 0) is
    yielded as (NLMSG_ERROR, b"")."""
    for kind, rseq, payload in walk(data):
        if rseq != seq:
            continue
        if kind == NLMSG_DONE:
            raise DumpEnd
        if kind == NLMSG_ERROR:
            if len(payload) < 4:  # (never from a kernel) not an acknowledgement either
                raise OSError(errno.EPROTO, "netlink: truncated error message")
            (err,) = struct.unpack_from("=i", payload)
            if err:
                raise OSError(-err, f"netlink: {errno.errorcode.get(-err, -err)}")
            yield NLMSG_ERROR, b""
            continue
        yield kind, payload


def _attrs(data: bytes, offset: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            break
        out[kind & 0x3FFF] = data[offset + _ATTR.size : offset + length]
        offset += (length + 3) & ~3
    return out


def _u32(attrs: dict[int, bytes], kind: int, default: int) -> int:
    raw = attrs.get(kind)
    return int(struct.unpack("=I", raw[:4])[0]) if raw and len(raw) >= 4 else default


def decode_routes(payload: bytes, table: int, protocol: int) -> list[KernelRoute]:
    """The route in one RTM_NEWROUTE payload, if it is of `table` and `protocol` ([] else)."""
    if len(payload) < _RTMSG.size:
        return []
    family, dst_len, _, _, tbl, proto, scope, rtype, _ = _RTMSG.unpack_from(payload)
    if family not in (socket.AF_INET, socket.AF_INET6) or proto != protocol:
        return []
    attrs = _attrs(payload, _RTMSG.size)
    if _u32(attrs, RTA_TABLE, tbl) != table:
        return []
    size = 4 if family == socket.AF_INET else 16
    dst = attrs.get(RTA_DST, b"\0" * size)[:size]
    if len(dst) != size or dst_len > size * 8:
        return []  # (never from a kernel) not a route of that family
    prefix = ip_network((ip_address(dst), dst_len), strict=False)
    oif = _u32(attrs, RTA_OIF, 0)
    return [KernelRoute(prefix, table, proto, rtype, scope, oif, _u32(attrs, RTA_PRIORITY, 0))]


def decode_addresses(payload: bytes, index: int, mark: str) -> list[KernelAddress]:
    """The address in one RTM_NEWADDR payload, if it is on `index` ([] else). ``ours`` when
    its mark is `mark` (IPv4: the label; IPv6: ``proto:<IFA_PROTO>``, as vipgate.vip reads)."""
    if len(payload) < _IFADDR.size:
        return []
    family, plen, _, _, idx = _IFADDR.unpack_from(payload)
    if idx != index or family not in (socket.AF_INET, socket.AF_INET6):
        return []
    attrs = _attrs(payload, _IFADDR.size)
    raw = attrs.get(IFA_LOCAL if family == socket.AF_INET else IFA_ADDRESS)
    if raw is None or len(raw) != (4 if family == socket.AF_INET else 16):
        return []
    if family == socket.AF_INET:
        label = attrs.get(IFA_LABEL, b"").split(b"\0", 1)[0].decode(errors="replace")
    else:
        proto = attrs.get(IFA_PROTO, b"")
        label = f"proto:{proto[0]}" if proto and proto[0] else ""
    return [KernelAddress(ip_address(raw), plen, idx, label == mark)]
