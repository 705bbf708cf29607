"""Routing-table mode's announcer: the sibling of the BGP speaker that writes the VIP route into
a kernel table for the node's own BGP daemon (adapter over :mod:`vipgate.routing.plan`).

It has the speaker's interface (:class:`vipgate.announcer.Announcer`): the manager calls
``announce`` / ``deprefer`` / ``withdraw`` / ``graceful_shutdown`` as the gate decides, ``refresh``
after each health check, and ``close`` at the stop. Each call records what the gate wants per
VIP prefix, reads the table (only vipgate's table and protocol) and the VIP's interface through
rtnetlink, and makes the changes :func:`vipgate.routing.plan.plan` returns -- none when the
kernel already matches, so a node daemon sees no event and the router no UPDATE. ``refresh``
puts back a route or address someone deleted or changed, within one health-check period.

The netlink calls are blocking and take a millisecond (a dump of one table, one change each);
they run on the event loop, as ``vipgate.vipaddr`` does, so a change is made in the same
event-loop turn as the gate's decision. A netlink error is logged and retried at the next
``refresh``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence

from vipgate import netlink
from vipgate.config import Config
from vipgate.routing import rtnl
from vipgate.routing.plan import (
    AddressChange,
    Change,
    KernelAddress,
    KernelRoute,
    Prefix,
    RouteChange,
    TableSettings,
    Vip,
    Want,
    plan,
)
from vipgate.vip import VIP_PROTO, HostError, default_interface, vip_label
from vipgate.vipaddr import AddressOp, encode_request

__all__ = ["Netlink", "TableAnnouncer", "table_setup"]

log = logging.getLogger("vipgate.routing")


class Netlink:
    """One rtnetlink socket: dumps and acknowledged requests (blocking, bounded by `timeout`)."""

    def __init__(self, timeout: float = 1.0) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, netlink.NETLINK_ROUTE)
        self._sock.settimeout(timeout)
        self._sock.bind((0, 0))
        with contextlib.suppress(OSError):  # the kernel filters dumps (Linux >= 4.20)
            self._sock.setsockopt(netlink.SOL_NETLINK, netlink.NETLINK_GET_STRICT_CHK, 1)
        self._seq = int.from_bytes(os.urandom(3), "little") + 1

    def _next(self) -> int:
        self._seq = (self._seq + 1) & 0x7FFFFFFF or 1
        return self._seq

    def dump(self, make: Callable[[int], bytes]) -> list[tuple[int, bytes]]:
        seq = self._next()
        self._sock.send(make(seq))
        out: list[tuple[int, bytes]] = []
        try:
            while True:
                out += rtnl.messages(self._sock.recv(1 << 16), seq)
        except rtnl.DumpEnd:
            return out

    def request(self, make: Callable[[int], bytes], ok: tuple[int, ...] = ()) -> None:
        """Send one request and wait for its acknowledgement; an error in `ok` is success."""
        seq = self._next()
        self._sock.send(make(seq))
        while True:
            try:
                if any(kind == netlink.NLMSG_ERROR for kind, _ in rtnl.messages(
                        self._sock.recv(1 << 16), seq)):  # fmt: skip
                    return
            except OSError as e:
                if e.errno in ok:
                    return
                raise

    def close(self) -> None:
        self._sock.close()


class TableAnnouncer:
    """Announces each VIP by writing its route into the table while the gate says so."""

    def __init__(
        self,
        settings: TableSettings,
        vips: Sequence[Vip],
        *,
        clean: bool = False,
        netlink: Callable[[], Netlink] = Netlink,
    ) -> None:
        self.settings = settings
        self.vips = tuple(vips)
        self.clean = clean
        self._netlink_factory = netlink
        self._nl: Netlink | None = None
        self._wants: dict[Prefix, Want | None] = {v.prefix: None for v in self.vips}
        self._graceful = False
        self._closed = False
        self.changes = 0  # changes made (for tests and the log)
        self.last_error: str | None = None

    # ---------------------------------------------------------------- the speaker's interface
    async def start(self) -> None:
        """Open the netlink socket; with ``clean``, delete our routes of no configured VIP;
        say which routes were found (adopted) -- they stay until the gate decides."""
        self._nl = self._netlink_factory()
        routes, _ = self._read()
        for r in routes:
            if r.prefix in self._wants:
                log.info(
                    "route %s in table %d (protocol %d) found at start: adopted, kept until "
                    "the health check decides",
                    r.prefix,
                    r.table,
                    r.protocol,
                )
        if self.clean:
            self._sync(clean=True)

    def announce(self, prefix: Prefix) -> None:
        self._want(prefix, Want.ANNOUNCED)

    def deprefer(self, prefix: Prefix) -> None:
        self._want(prefix, Want.DEPREFERRED)

    def withdraw(self, prefix: Prefix) -> None:
        self._want(prefix, Want.ABSENT)

    def graceful_shutdown(self, on: bool = True) -> None:
        """Every route in the table gets the drain metric (on) or its own state's again."""
        if not self._closed and on != self._graceful:
            self._graceful = on
            self._sync()

    @property
    def graceful(self) -> bool:
        return self._graceful

    def refresh(self) -> None:
        """After a health check: put back what differs from what the gate wants (rule 3 of
        the plan: nothing when nothing differs)."""
        if not self._closed:
            self._sync()

    async def close(self, message: str, timeout: float = 2.0) -> None:
        """The stop: every route of ours for the VIPs and their addresses go."""
        if self._closed:
            return
        for prefix in self._wants:
            self._wants[prefix] = Want.ABSENT
        self._graceful = False
        self._sync()
        self._closed = True
        if self._nl is not None:
            self._nl.close()
        log.info("routing table %d: VIP routes removed (%s)", self.settings.table, message)

    def announced(self) -> frozenset[Prefix]:
        return frozenset(p for p, w in self._effective().items() if w not in (None, Want.ABSENT))

    def session_states(self) -> dict[str, str]:
        return {}

    # ---------------------------------------------------------------- internals
    def _want(self, prefix: Prefix, want: Want) -> None:
        if self._closed:
            return
        self._wants[prefix] = want
        self._sync()

    def _effective(self) -> Mapping[Prefix, Want | None]:
        if not self._graceful:
            return self._wants
        present = (Want.ANNOUNCED, Want.DEPREFERRED)
        return {p: Want.GRACEFUL_SHUTDOWN if w in present else w for p, w in self._wants.items()}

    def _read(self) -> tuple[list[KernelRoute], list[KernelAddress]]:
        assert self._nl is not None
        s = self.settings
        routes: list[KernelRoute] = []
        addresses: list[KernelAddress] = []
        for version in (4, 6):  # both: rule 7 cleans either family
            route_dump = functools.partial(rtnl.encode_route_dump, version, s.table, s.protocol)
            for kind, payload in self._nl.dump(route_dump):
                if kind == netlink.RTM_NEWROUTE:
                    routes += rtnl.decode_routes(payload, s.table, s.protocol)
            mark = vip_label(s.interface, version)
            address_dump = functools.partial(rtnl.encode_address_dump, version, s.index)
            for kind, payload in self._nl.dump(address_dump):
                if kind == netlink.RTM_NEWADDR:
                    addresses += rtnl.decode_addresses(payload, s.index, mark)
        return routes, addresses

    def _sync(self, clean: bool = False) -> None:
        if self._nl is None:
            return
        try:
            routes, addresses = self._read()
            changes = plan(
                self.settings, self.vips, self._effective(), routes, addresses, clean=clean
            )
            for change in changes:
                self._make(change)
        except OSError as e:
            self.last_error = str(e)
            log.warning(
                "routing table %d: %s; tried again at the next health check",
                self.settings.table,
                e,
            )
            return
        self.last_error = None

    def _make(self, change: Change) -> None:
        assert self._nl is not None
        s = self.settings
        if isinstance(change, RouteChange):
            r = change.route
            ok = (errno.ESRCH,) if not change.add else ()
            self._nl.request(lambda seq: rtnl.encode_route_change(change.add, r, seq), ok)
            verb = "written to" if change.add else "deleted from"
            log.info(
                "route %s dev %s metric %d %s table %d (protocol %d): %s",
                r.prefix,
                s.interface,
                r.metric,
                verb,
                r.table,
                r.protocol,
                change.why,
            )
        else:
            self._address(change)
        self.changes += 1

    def _address(self, change: AddressChange) -> None:
        assert self._nl is not None
        s, vip = self.settings, change.vip
        v4 = vip.address.version == 4
        op = AddressOp(
            change.add,
            vip.address,
            vip.prefixlen,
            s.interface,
            s.index,
            label=vip_label(s.interface) if v4 else "",
            proto=0 if v4 else VIP_PROTO,
        )
        ok = (errno.EEXIST,) if change.add else (errno.EADDRNOTAVAIL, errno.ENOENT)
        self._nl.request(lambda seq: encode_request(op, seq), ok)
        verb = "added to" if change.add else "removed from"
        log.info("VIP %s/%d %s %s: %s", vip.address, vip.prefixlen, verb, s.interface, change.why)


def table_setup(config: Config) -> TableSettings:
    """Routing-table mode's host facts at start: the interface (``vip_interface``, else the
    default route's) and its index. :class:`HostError` (exit 2) before any route is written
    when the interface does not exist."""
    interface = config.vip_interface or default_interface()
    try:
        index = socket.if_nametoindex(interface)
    except OSError:
        raise HostError(
            f"vip_interface={interface!r}: no such interface on this host; routing-table mode "
            "writes the VIP route through it (and puts the VIP on it while healthy)"
        ) from None
    return TableSettings(
        config.vip_routingtableid,
        config.vip_routingprotocol,
        config.vip_routingtabletype,
        interface,
        index,
    )
