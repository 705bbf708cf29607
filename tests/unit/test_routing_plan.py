"""Routing-table mode's pure core (vipgate.routing.plan, rules 1-9) and its rtnetlink codec:
no sockets."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from ipaddress import ip_address, ip_network
from typing import cast

import pytest

from vipgate import netlink
from vipgate.routing import rtnl
from vipgate.routing.announcer import Netlink, TableAnnouncer
from vipgate.routing.plan import (
    AddressChange,
    KernelAddress,
    KernelRoute,
    RouteChange,
    TableSettings,
    Vip,
    Want,
    plan,
    wanted_route,
)
from vipgate.vipaddr import AddressOp, encode_request

S = TableSettings(table=198, protocol=248, type=1, interface="lo", index=1)
V4 = Vip(ip_address("203.0.113.100"), 32)
V6 = Vip(ip_address("2001:db8:100::100"), 128)
VIPS = (V4, V6)


def route(vip: Vip, want: Want = Want.ANNOUNCED, **kw: int) -> KernelRoute:
    r = wanted_route(S, vip.prefix, want)
    return KernelRoute(
        r.prefix,
        kw.get("table", r.table),
        kw.get("protocol", r.protocol),
        kw.get("type", r.type),
        r.scope,
        kw.get("oif", r.oif),
        kw.get("metric", r.metric),
    )


def addr(vip: Vip, ours: bool = True, index: int = 1) -> KernelAddress:
    return KernelAddress(vip.address, vip.prefix.max_prefixlen, index, ours)


def kinds(changes: list[RouteChange | AddressChange]) -> list[str]:
    out = []
    for c in changes:
        what = "route" if isinstance(c, RouteChange) else "addr"
        obj = c.route.prefix if isinstance(c, RouteChange) else c.vip.prefix
        extra = f"@{c.route.metric}" if isinstance(c, RouteChange) else ""
        out.append(f"{'+' if c.add else '-'}{what} {obj}{extra}")
    return out


P4, P6 = "203.0.113.100/32", "2001:db8:100::100/128"

# (wants, routes in the kernel, addresses, clean) -> changes, in order
CASES = [
    # rule 3: in place -> nothing (both families)
    ({V4: Want.ANNOUNCED, V6: Want.ANNOUNCED}, [route(V4), route(V6)], [addr(V4), addr(V6)],
     False, []),
    # rules 8, 9: address before route
    ({V4: Want.ANNOUNCED}, [], [], False, [f"+addr {P4}", f"+route {P4}@0"]),
    # IPv6 announced: the kernel's metric 1024 for 0
    ({V6: Want.ANNOUNCED}, [], [addr(V6)], False, [f"+route {P6}@1024"]),
    # rule 4: make before break on a metric change
    ({V4: Want.DEPREFERRED}, [route(V4)], [addr(V4)], False,
     [f"+route {P4}@1000", f"-route {P4}@0"]),
    ({V4: Want.GRACEFUL_SHUTDOWN}, [route(V4, Want.DEPREFERRED)], [addr(V4)], False,
     [f"+route {P4}@65535", f"-route {P4}@1000"]),
    # same metric, another interface or type: replaced in place, nothing deleted
    ({V4: Want.ANNOUNCED}, [route(V4, oif=7)], [addr(V4)], False, [f"+route {P4}@0"]),
    ({V4: Want.ANNOUNCED}, [route(V4, type=2)], [addr(V4)], False, [f"+route {P4}@0"]),
    # rules 6, 8, 9: route then address
    ({V4: Want.ABSENT}, [route(V4)], [addr(V4)], False, [f"-route {P4}@0", f"-addr {P4}"]),
    ({V4: Want.ABSENT, V6: Want.ABSENT}, [], [], False, []),
    # rule 8: a foreign address is never deleted, and not added twice
    ({V4: Want.ABSENT}, [route(V4)], [addr(V4, ours=False)], False, [f"-route {P4}@0"]),
    ({V4: Want.ANNOUNCED}, [], [addr(V4, ours=False)], False, [f"+route {P4}@0"]),
    # an address on another interface is not ours to count
    ({V4: Want.ANNOUNCED}, [route(V4)], [addr(V4, index=2)], False, [f"+addr {P4}"]),
    # rule 5: undecided -> an adopted route stays
    ({V4: None, V6: None}, [route(V4), route(V6)], [addr(V4)], False, []),
    # rule 1: another table or protocol is never touched, not even withdrawn or cleaned
    ({V4: Want.ABSENT}, [route(V4, table=254), route(V4, protocol=186)], [], True, []),
    ({V4: Want.ANNOUNCED}, [route(V4, table=199)], [addr(V4)], False, [f"+route {P4}@0"]),
    # rule 7: clean removes ours of no configured VIP, both families, keeps the VIPs'
    ({V4: None, V6: None},
     [route(V4), route(V6),
      KernelRoute(ip_network("203.0.113.7/32"), 198, 248, 1, 0, 1, 0),
      KernelRoute(ip_network("2001:db8:100::7/128"), 198, 248, 1, 0, 1, 1024),
      KernelRoute(ip_network("203.0.113.8/32"), 198, 4, 1, 0, 1, 0)],
     [], True, ["-route 203.0.113.7/32@0", "-route 2001:db8:100::7/128@1024"]),
    # ... and without clean leaves them
    ({V4: Want.ANNOUNCED},
     [route(V4), KernelRoute(ip_network("203.0.113.7/32"), 198, 248, 1, 0, 1, 0)],
     [addr(V4)], False, []),
]  # fmt: skip


@pytest.mark.parametrize(("wants", "routes", "addresses", "clean", "expected"), CASES)
def test_plan(
    wants: dict[Vip, Want | None],
    routes: list[KernelRoute],
    addresses: list[KernelAddress],
    clean: bool,
    expected: list[str],
) -> None:
    vips = tuple(wants)
    by_prefix = {v.prefix: w for v, w in wants.items()}
    assert kinds(plan(S, vips, by_prefix, routes, addresses, clean=clean)) == expected


def test_plan_then_kernel_converges_without_churn() -> None:
    """Applying the plan's changes to a model kernel reaches a state whose plan is empty."""
    routes: list[KernelRoute] = [route(V4, Want.DEPREFERRED), route(V6, oif=9)]
    addresses: list[KernelAddress] = []
    for wants in (
        {V4.prefix: Want.ANNOUNCED, V6.prefix: Want.ANNOUNCED},
        {V4.prefix: Want.GRACEFUL_SHUTDOWN, V6.prefix: Want.DEPREFERRED},
        {V4.prefix: Want.ABSENT, V6.prefix: Want.GRACEFUL_SHUTDOWN},
    ):
        for c in plan(S, VIPS, wants, routes, addresses):
            if isinstance(c, RouteChange):
                key = (c.route.prefix, c.route.metric)
                routes = [r for r in routes if (r.prefix, r.metric) != key]
                routes += [c.route] if c.add else []
            else:
                a = addr(c.vip)
                addresses = [x for x in addresses if x != a] + ([a] if c.add else [])
        assert plan(S, VIPS, wants, routes, addresses) == []
        present = {r.prefix for r in routes}
        assert {a.address for a in addresses} == {v.address for v in VIPS if v.prefix in present}


def test_local_type_has_link_scope() -> None:
    local = TableSettings(198, 248, 2, "lo", 1)
    assert wanted_route(local, V4.prefix, Want.ANNOUNCED).scope == 253
    assert wanted_route(S, V4.prefix, Want.ANNOUNCED).scope == 0


# -------------------------------------------------------------------------- rtnetlink codec


def _as_reply(request: bytes, kind: int) -> bytes:
    """A request's body under a reply header: the kernel reports routes in the same shape."""
    length, _, _, seq, pid = struct.unpack_from("=IHHII", request)
    return struct.pack("=IHHII", length, kind, 2, seq, pid) + request[16:]


@pytest.mark.parametrize("vip", VIPS)
@pytest.mark.parametrize("want", [Want.ANNOUNCED, Want.DEPREFERRED, Want.GRACEFUL_SHUTDOWN])
def test_route_round_trip(vip: Vip, want: Want) -> None:
    r = wanted_route(S, vip.prefix, want)
    reply = _as_reply(rtnl.encode_route_change(True, r, 7), netlink.RTM_NEWROUTE)
    ((kind, payload),) = list(rtnl.messages(reply, 7))
    assert kind == netlink.RTM_NEWROUTE
    assert rtnl.decode_routes(payload, 198, 248) == [r]
    assert rtnl.decode_routes(payload, 199, 248) == []  # rule 1, again in the decoder
    assert rtnl.decode_routes(payload, 198, 186) == []
    assert list(rtnl.messages(reply, 8)) == []  # another request's reply


def test_route_change_flags() -> None:
    r = wanted_route(S, V4.prefix, Want.ANNOUNCED)
    _, kind, flags, _, _ = struct.unpack_from("=IHHII", rtnl.encode_route_change(True, r, 1))
    assert kind == netlink.RTM_NEWROUTE and flags == 0x1 | 0x4 | 0x400 | 0x100
    _, kind, flags, _, _ = struct.unpack_from("=IHHII", rtnl.encode_route_change(False, r, 1))
    assert kind == netlink.RTM_DELROUTE and flags == 0x1 | 0x4


@pytest.mark.parametrize(("vip", "mark"), [(V4, "lo:vipgate"), (V6, "proto:118")])
def test_address_round_trip(vip: Vip, mark: str) -> None:
    op = AddressOp(
        True, vip.address, vip.prefixlen, "lo", 1,
        label="lo:vipgate" if vip.address.version == 4 else "",
        proto=118 if vip.address.version == 6 else 0,
    )  # fmt: skip
    payload = _as_reply(encode_request(op, 3), netlink.RTM_NEWADDR)[16:]
    assert rtnl.decode_addresses(payload, 1, mark) == [addr(vip)]
    assert rtnl.decode_addresses(payload, 1, "other") == [addr(vip, ours=False)]
    assert rtnl.decode_addresses(payload, 2, mark) == []


def test_messages_end_and_errors() -> None:
    done = struct.pack("=IHHII", 20, netlink.NLMSG_DONE, 2, 5, 0) + b"\0" * 4
    with pytest.raises(rtnl.DumpEnd):
        list(rtnl.messages(done, 5))
    err = (
        struct.pack("=IHHII", 36, netlink.NLMSG_ERROR, 0, 5, 0) + struct.pack("=i", -3) + b"\0" * 16
    )
    with pytest.raises(OSError) as exc:
        list(rtnl.messages(err, 5))
    assert exc.value.errno == 3
    ack = struct.pack("=IHHII", 36, netlink.NLMSG_ERROR, 0, 5, 0) + b"\0" * 20
    assert list(rtnl.messages(ack, 5)) == [(netlink.NLMSG_ERROR, b"")]
    assert rtnl.decode_routes(b"\0" * 4, 198, 248) == []
    assert rtnl.decode_addresses(b"\0" * 4, 1, "") == []


def test_replies_no_kernel_sends_are_not_routes_and_not_crashes() -> None:
    """Found by fuzzing (fuzz/rtnl.py; inputs in fuzz/regressions/rtnl/): a prefix length
    beyond the family's, and an error message too short to hold its error number."""
    r = wanted_route(S, V4.prefix, Want.ANNOUNCED)
    payload = bytearray(_as_reply(rtnl.encode_route_change(True, r, 7), netlink.RTM_NEWROUTE)[16:])
    payload[1] = 96  # rtm_dst_len of an IPv4 route
    assert rtnl.decode_routes(bytes(payload), 198, 248) == []
    short = struct.pack("=IHHII", 18, netlink.NLMSG_ERROR, 0, 5, 0) + b"\1\2"
    with pytest.raises(OSError):
        list(rtnl.messages(short, 5))


class FakeNetlink:
    """The kernel's side of :class:`vipgate.routing.announcer.Netlink` for one table: route
    dumps answered from `routes`, route deletions applied to them (no socket)."""

    def __init__(self, routes: list[KernelRoute]) -> None:
        self.routes = list(routes)

    def dump(self, make: Callable[[int], bytes]) -> list[tuple[int, bytes]]:
        msg = make(1)
        if netlink.HDR.unpack_from(msg)[1] != netlink.RTM_GETROUTE:
            return []  # no addresses on the interface
        version = 4 if msg[netlink.HDR.size] == socket.AF_INET else 6
        return [
            (netlink.RTM_NEWROUTE, rtnl.encode_route_change(True, r, 0)[netlink.HDR.size :])
            for r in self.routes
            if r.prefix.version == version
        ]

    def request(self, make: Callable[[int], bytes], ok: tuple[int, ...] = ()) -> None:
        msg = make(1)
        (gone,) = rtnl.decode_routes(msg[netlink.HDR.size :], S.table, S.protocol)
        assert netlink.HDR.unpack_from(msg)[1] == netlink.RTM_DELROUTE, msg
        self.routes.remove(gone)

    def close(self) -> None:
        return None


@pytest.mark.parametrize("clean", [True, False])
def test_clean_routing_table_runs_at_start(clean: bool) -> None:
    """vip_cleanroutingtable at start, before the gate decides (docs/configuration.md,
    "Routing-table mode": kube-vip's 10 s wait is for its Service routes): a stale route of
    vipgate's table and protocol goes, both routes of the dual-stack list stay (adopted)."""
    stale = KernelRoute(ip_network("203.0.113.99/32"), 198, 248, 1, 0, 1, 0)
    kept = [route(V4), route(V6)]
    kernel = FakeNetlink([stale, *kept])
    announcer = TableAnnouncer(S, VIPS, clean=clean, netlink=lambda: cast(Netlink, kernel))
    asyncio.run(announcer.start())
    assert kernel.routes == (kept if clean else [stale, *kept])
    assert announcer.announced() == frozenset()  # adopted, not decided
