"""Tests for vipgate.bgp.netmon: which rtnetlink messages mean a path may be back."""

from __future__ import annotations

import asyncio
import socket
import struct

from vipgate.bgp.netmon import IFF_LOWER_UP, IFF_UP, RouteMonitor, news
from vipgate.netlink import RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE

RTM_DELROUTE = 25
RTM_DELLINK = 17


def nlmsg(mtype: int, body: bytes) -> bytes:
    length = 16 + len(body)
    pad = b"\x00" * ((-length) % 4)
    return struct.pack("=IHHII", length, mtype, 0, 0, 0) + body + pad


def link(flags: int) -> bytes:
    return nlmsg(RTM_NEWLINK, struct.pack("=BBHiII", 0, 0, 1, 2, flags, 0))


def test_new_routes_addresses_and_links_with_carrier() -> None:
    assert news(nlmsg(RTM_NEWROUTE, b"\x00" * 12))
    assert news(nlmsg(RTM_NEWADDR, b"\x00" * 8))
    assert news(link(IFF_UP | IFF_LOWER_UP))
    assert not news(link(IFF_UP))  # up without carrier (a veth whose peer is down)
    assert not news(link(IFF_LOWER_UP))
    assert not news(nlmsg(RTM_DELROUTE, b"\x00" * 12))
    assert not news(nlmsg(RTM_DELLINK, b"\x00" * 16))
    # Several messages in one datagram: any one counts.
    assert news(nlmsg(RTM_DELROUTE, b"\x00" * 12) + link(IFF_UP | IFF_LOWER_UP))


def test_malformed_datagrams_are_not_news() -> None:
    assert not news(b"")
    assert not news(b"\x00" * 15)
    assert not news(struct.pack("=IHHII", 3, RTM_NEWROUTE, 0, 0, 0))  # length below a header
    assert not news(nlmsg(RTM_NEWLINK, b"\x00\x00"))  # truncated ifinfomsg


def test_a_burst_is_one_call() -> None:
    """Datagrams fed through the read path (a socket pair stands in for netlink)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        calls: list[float] = []
        mon = RouteMonitor(lambda: calls.append(loop.time()), settle=0.05)
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        a.setblocking(False)
        mon._sock = a
        loop.add_reader(a.fileno(), mon._read)
        try:
            for _ in range(5):
                b.send(nlmsg(RTM_NEWROUTE, b"\x00" * 12))
            await asyncio.sleep(0.2)
            assert len(calls) == 1
            b.send(nlmsg(RTM_DELROUTE, b"\x00" * 12))
            await asyncio.sleep(0.1)
            assert len(calls) == 1  # a removal is not news
            b.send(link(IFF_UP | IFF_LOWER_UP))
            await asyncio.sleep(0.1)
            assert len(calls) == 2
        finally:
            mon.close()
            b.close()

    asyncio.run(main())


def test_start_never_fails() -> None:
    async def main() -> None:
        mon = RouteMonitor(lambda: None)
        mon.start()  # opens the netlink socket here; would only log where it cannot
        mon.close()
        mon.close()

    asyncio.run(main())
