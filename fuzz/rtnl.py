"""Fuzz routing-table mode's rtnetlink decoders (vipgate.routing.rtnl): the kernel's replies.

Input: bytes 0-3 are the query -- the table (byte 0; 0 means 254, main), the protocol (byte 1),
the interface index (byte 2) -- and byte 3 the sequence number asked for; the rest is a reply
stream of netlink messages fed to :func:`~vipgate.routing.rtnl.messages`, each payload then to
both :func:`~vipgate.routing.rtnl.decode_routes` and :func:`~vipgate.routing.rtnl.decode_addresses`.

Crash: an exception other than :class:`~vipgate.routing.rtnl.DumpEnd` or an ``OSError`` from
an error message; a decoded route of another table, protocol or family, or one that does not
survive encode (:func:`~vipgate.routing.rtnl.encode_route_change`) -> decode unchanged; a
decoded address on another interface.
"""

from __future__ import annotations

from vipgate.routing.rtnl import (
    DumpEnd,
    decode_addresses,
    decode_routes,
    encode_route_change,
    messages,
)

MARK = "vipgate"


class Crash(AssertionError):
    """A property of the decoders did not hold (the fuzzer reports it as a crash)."""


def _payloads(stream: bytes, seq: int) -> list[bytes]:
    out: list[bytes] = []
    try:
        for _, payload in messages(stream, seq):
            out.append(payload)
    except (DumpEnd, OSError):
        pass  # the end of a dump, or the kernel's error: what the announcer expects
    return out


def check(data: bytes) -> None:
    if len(data) < 4:
        return
    table, protocol, index, seq = data[0] or 254, data[1], data[2], data[3]
    for payload in _payloads(data[4:], seq):
        for r in decode_routes(payload, table, protocol):
            if (r.table, r.protocol) != (table, protocol):
                raise Crash(f"route of table {r.table} protocol {r.protocol} decoded: {r}")
            again = [
                x
                for p in _payloads(encode_route_change(True, r, seq), seq)
                for x in decode_routes(p, table, protocol)
            ]
            if again != [r]:
                raise Crash(f"route {r} encoded and decoded again is {again}")
        for a in decode_addresses(payload, index, MARK):
            if a.index != index:
                raise Crash(f"address on interface {a.index} decoded for {index}: {a}")
