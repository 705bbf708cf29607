"""asyncio adapter: the kernel's route, address and link changes (rtnetlink), for quick retries.

:func:`source_towards` asks the kernel which source address a connection to a peer would get.

A session lost to a link or route outage waits for its next retry once the path is back; this
module tells the speaker when the kernel reports a new route, a new address or a link with
carrier, so it can retry at once (:class:`~vipgate.bgp.fsm.PeerReachable`).

Rules this module keeps
-----------------------
1. One non-blocking NETLINK_ROUTE socket bound to the link, IPv4/IPv6 route and address
   multicast groups; only message types and the link flags are read (:func:`news`), nothing
   is asked of the kernel.
2. Changes are coalesced: ``changed()`` runs ``settle`` seconds after the first change it has
   not reported yet, and at most once per ``settle``; a burst of messages is one call.
3. It never fails the speaker: a socket that cannot be opened (no netlink in a sandbox) is
   logged once and the retries simply keep their timers.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Final, TypeAlias

from vipgate.netlink import RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE, walk

IPAddress: TypeAlias = IPv4Address | IPv6Address

log = logging.getLogger("vipgate.bgp")

RTMGRP_LINK: Final = 0x1
RTMGRP_IPV4_IFADDR: Final = 0x10
RTMGRP_IPV4_ROUTE: Final = 0x40
RTMGRP_IPV6_IFADDR: Final = 0x100
RTMGRP_IPV6_ROUTE: Final = 0x400
GROUPS: Final = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE
)
IFF_UP: Final = 0x1
IFF_LOWER_UP: Final = 0x10000
IFINFO_FLAGS_AT: Final = 8  # in the payload: ifinfomsg's family, pad, type, index, flags
SO_BINDTODEVICE: Final = 25
BGP_PORT: Final = 179


def source_towards(peer: IPAddress, source_if: str | None = None) -> IPAddress | None:
    """The source address the kernel picks for a connection to `peer` (a UDP connect() sends
    nothing), on `source_if` if given; None if there is no route."""
    fam = socket.AF_INET6 if peer.version == 6 else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        try:
            if source_if:
                s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, source_if.encode())
            s.connect((str(peer), BGP_PORT))
            return ip_address(s.getsockname()[0].split("%")[0])
        except OSError:
            return None


def news(data: bytes) -> bool:
    """Does this netlink datagram report something new towards a peer: a route, an address,
    or a link that is up with carrier?"""
    for mtype, _seq, payload in walk(data):
        if mtype in (RTM_NEWROUTE, RTM_NEWADDR):
            return True
        if mtype == RTM_NEWLINK and len(payload) >= IFINFO_FLAGS_AT + 4:
            (flags,) = struct.unpack_from("=I", payload, IFINFO_FLAGS_AT)
            if flags & IFF_UP and flags & IFF_LOWER_UP:
                return True
    return False


class RouteMonitor:
    """Calls ``changed()`` when the kernel reports new routes, addresses or links (see the
    module docstring)."""

    def __init__(self, changed: Callable[[], None], settle: float = 0.05) -> None:
        self.changed = changed
        self.settle = settle
        self._sock: socket.socket | None = None
        self._pending: asyncio.TimerHandle | None = None

    def start(self) -> None:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            sock.setblocking(False)
            sock.bind((0, GROUPS))
        except OSError as exc:
            log.warning("BGP: no netlink monitor (%s): retries keep their timers", exc)
            return
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._read)

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _read(self) -> None:
        sock = self._sock
        if sock is None:
            return
        new = False
        for _ in range(256):
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ENOBUFS: messages lost, so something changed
                new = True
                continue
            new = new or news(data)
        if new and self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(self.settle, self._report)

    def _report(self) -> None:
        self._pending = None
        self.changed()
