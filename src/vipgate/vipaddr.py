"""Take the VIP off its interface and put it back while vipgate runs (gate rule 13).

The health gate says when (``Address.REMOVE`` after a withdrawal, ``Address.ADD`` before the
next announcement); the manager calls :func:`change` on the event loop. Start-up and exit keep
``vip.ensure_vip`` / ``vip.remove_vip`` (pyroute2, in a forked child): importing pyroute2 costs
hundreds of milliseconds, which the event loop cannot wait for between a check and the
announcement. So this module speaks rtnetlink itself (``linux/if_addr.h``, ``linux/rtnetlink.h``):
one RTM_NEWADDR or RTM_DELADDR with an acknowledgement, a millisecond, blocking.

The address is made exactly as ``ensure_vip`` makes it: host scope on ``lo`` (else universe), the
IPv4 label ``<ifname>:vipgate``, IPv6 with IFA_F_NODAD and IFA_PROTO ``VIP_PROTO``. Only an
address vipgate added (``VipHandle.added``) is ever touched.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from vipgate.netlink import (
    IFA_ADDRESS,
    IFA_F_NODAD,
    IFA_LABEL,
    IFA_LOCAL,
    IFA_PROTO,
    NETLINK_ROUTE,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    RT_SCOPE_HOST,
    RT_SCOPE_UNIVERSE,
    RTM_DELADDR,
    RTM_NEWADDR,
    message,
    walk,
)
from vipgate.netlink import IFADDR as _IFADDR
from vipgate.netlink import attr as _attr

__all__ = ["AddressOp", "change", "encode_request"]


@dataclass(frozen=True)
class AddressOp:
    """One address change: ``add`` (True) or delete, of `address`/`prefixlen` on `index`."""

    add: bool
    address: IPv4Address | IPv6Address
    prefixlen: int
    interface: str
    index: int
    label: str = ""  # IPv4 only
    proto: int = 0  # IPv6 only (IFA_PROTO)


def encode_request(op: AddressOp, seq: int = 1) -> bytes:
    """The rtnetlink request for `op` (pure; exposed for tests)."""
    v4 = op.address.version == 4
    family = socket.AF_INET if v4 else socket.AF_INET6
    scope = RT_SCOPE_HOST if op.interface == "lo" else RT_SCOPE_UNIVERSE
    flags = IFA_F_NODAD if not v4 and op.add else 0
    body = _IFADDR.pack(family, op.prefixlen, flags, scope, op.index)
    packed = op.address.packed
    body += _attr(IFA_LOCAL, packed) + _attr(IFA_ADDRESS, packed)
    if op.add and v4 and op.label:
        body += _attr(IFA_LABEL, op.label.encode() + b"\0")
    if op.add and not v4 and op.proto:
        body += _attr(IFA_PROTO, bytes([op.proto]))
    kind = RTM_NEWADDR if op.add else RTM_DELADDR
    nl_flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE | NLM_F_REPLACE if op.add else 0)
    return message(kind, nl_flags, seq, body)


def _ack_error(reply: bytes, seq: int) -> int | None:
    """The error of the acknowledgement of `seq` in `reply` (0: done), None if not there; a
    truncated error message (never from a kernel) is EPROTO."""
    for kind, rseq, payload in walk(reply):
        if kind == NLMSG_ERROR and rseq == seq:
            if len(payload) < 4:
                return errno.EPROTO
            (err,) = struct.unpack_from("=i", payload)
            return -int(err)
    return None


def change(op: AddressOp, timeout: float = 1.0) -> None:
    """Carry out `op`; OSError on failure. Adding an address that is there already, or
    deleting one that is gone, is not a failure (the state wanted is reached)."""
    seq = int.from_bytes(os.urandom(4), "little") or 1
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as s:
        s.settimeout(timeout)
        s.bind((0, 0))
        s.sendto(encode_request(op, seq), (0, 0))
        while True:
            err = _ack_error(s.recv(65536), seq)
            if err is None:
                continue
            ok = {0, errno.EEXIST} if op.add else {0, errno.EADDRNOTAVAIL, errno.ENOENT}
            if err not in ok:
                raise OSError(err, f"{os.strerror(err)} ({'adding' if op.add else 'removing'} "
                              f"{op.address}/{op.prefixlen} on {op.interface})")  # fmt: skip
            return
