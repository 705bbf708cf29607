"""UPDATE path attributes (RFC 4271 sections 4.3 and 5; RFC 4760, 1997, 6793): the dataclasses,
and one table that says how each type is checked, decoded and encoded.

Rules (RFC 4271 section 6.3 as revised by RFC 7606):

1. Each known type code has one :class:`AttributeType` row in :data:`ATTRIBUTES`: its name, the
   Optional and Transitive flag bits it must carry, its length rule, its decoder and encoder, and
   what an error in it costs (RFC 7606 section 7: ``TREAT_AS_WITHDRAW`` for ORIGIN, AS_PATH,
   NEXT_HOP, MED, LOCAL_PREF, COMMUNITIES and MP_(UN)REACH_NLRI with wrong flags;
   ``ATTRIBUTE_DISCARD`` for ATOMIC_AGGREGATE, AGGREGATOR and AS4_PATH, RFC 6793 section 6).
2. :func:`decode_attributes` is the dispatcher.  It walks the attribute list and, per attribute,
   in this order: a header or value that overruns the list is treat-as-withdraw and ends the
   walk (RFC 7606 section 4); a repeated type is attribute-discard, but a repeated
   MP_REACH_NLRI or MP_UNREACH_NLRI resets the session (RFC 7606 section 3(g)); an unknown
   well-known type resets the session (Unrecognized Well-known Attribute), an unknown optional
   one is kept as :class:`UnknownAttribute`; wrong flags are an Attribute Flags Error (the MP
   attributes are still parsed, so that their prefixes can be treated as withdrawn); a length
   the row's rule refuses is an Attribute Length Error; then the row's decoder runs.
3. A decoder raises :class:`Malformed` for a value that does not parse (the row's handling
   applies) or :class:`~vipgate.bgp.wire.notification.BgpError` with a session reset for a
   malformed MP_REACH_NLRI / MP_UNREACH_NLRI (their NLRI cannot be located otherwise).  A row's
   ``check`` reports a semantic error while the attribute is kept (a NEXT_HOP that cannot be a
   next hop).
4. Of several errors the worst counts: session reset over treat-as-withdraw over
   attribute-discard, the first of equal severity (:attr:`Handling.severity`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, ClassVar, Final, TypeAlias

from vipgate.bgp.wire.capabilities import AFI_IPV4, AFI_IPV6, SAFI_UNICAST
from vipgate.bgp.wire.notification import BgpError, Handling, UpdateError, update_error

__all__ = [
    "AS_TRANS",
    "ATTRIBUTES",
    "GRACEFUL_SHUTDOWN",
    "Aggregator",
    "As4Path",
    "AsPath",
    "AsPathSegment",
    "AtomicAggregate",
    "AttributeType",
    "Communities",
    "LocalPref",
    "Malformed",
    "Med",
    "MpReachNlri",
    "MpUnreachNlri",
    "NextHop",
    "Origin",
    "PathAttribute",
    "SessionContext",
    "UnknownAttribute",
    "decode_attributes",
    "decode_prefixes_v4",
    "decode_prefixes_v6",
    "encode_attribute",
    "encode_prefixes",
    "prefix_bytes",
    "worse",
]

AS_TRANS: Final = 23456
# RFC 8326 section 4: the well-known GRACEFUL_SHUTDOWN community 65535:0.
GRACEFUL_SHUTDOWN: Final = 0xFFFF0000

# Path attribute type codes and flags (RFC 4271 4.3).
F_OPTIONAL, F_TRANSITIVE, F_PARTIAL, F_EXTENDED = 0x80, 0x40, 0x20, 0x10
A_ORIGIN, A_AS_PATH, A_NEXT_HOP, A_MED, A_LOCAL_PREF = 1, 2, 3, 4, 5
A_ATOMIC_AGGREGATE, A_AGGREGATOR, A_COMMUNITIES = 6, 7, 8
A_MP_REACH, A_MP_UNREACH, A_AS4_PATH = 14, 15, 17
_MP_FAMILIES: Final = frozenset({(AFI_IPV4, SAFI_UNICAST), (AFI_IPV6, SAFI_UNICAST)})


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What decoding and encoding depend on: 4-octet AS numbers in AS_PATH/AGGREGATOR."""

    as4: bool = False


# --------------------------------------------------------------------------------------------
# Path attributes


@dataclass(frozen=True, slots=True)
class Origin:
    IGP: ClassVar[int] = 0
    EGP: ClassVar[int] = 1
    INCOMPLETE: ClassVar[int] = 2
    value: int = 0


@dataclass(frozen=True, slots=True)
class AsPathSegment:
    AS_SET: ClassVar[int] = 1
    AS_SEQUENCE: ClassVar[int] = 2
    AS_CONFED_SEQUENCE: ClassVar[int] = 3
    AS_CONFED_SET: ClassVar[int] = 4
    type: int = 2
    asns: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class AsPath:
    """AS_PATH; the octet width of each AS number depends on the session (SessionContext)."""

    segments: tuple[AsPathSegment, ...] = ()

    def asns(self) -> list[int]:
        return [a for s in self.segments for a in s.asns]


@dataclass(frozen=True, slots=True)
class As4Path:
    """AS4_PATH (RFC 6793): always 4-octet AS numbers; optional transitive."""

    segments: tuple[AsPathSegment, ...] = ()


@dataclass(frozen=True, slots=True)
class NextHop:
    address: IPv4Address


@dataclass(frozen=True, slots=True)
class Med:
    value: int


@dataclass(frozen=True, slots=True)
class LocalPref:
    value: int


@dataclass(frozen=True, slots=True)
class AtomicAggregate:
    pass


@dataclass(frozen=True, slots=True)
class Aggregator:
    asn: int
    address: IPv4Address


@dataclass(frozen=True, slots=True)
class Communities:
    values: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MpReachNlri:
    """MP_REACH_NLRI (RFC 4760) for IPv4/IPv6 unicast.

    ``next_hops``: one address (global) or two (IPv6 global + link-local).
    """

    afi: int
    safi: int
    next_hops: tuple[IPv4Address | IPv6Address, ...]
    nlri: tuple[IPv4Network | IPv6Network, ...] = ()


@dataclass(frozen=True, slots=True)
class MpUnreachNlri:
    afi: int
    safi: int
    withdrawn: tuple[IPv4Network | IPv6Network, ...] = ()


@dataclass(frozen=True, slots=True)
class UnknownAttribute:
    """Any attribute we do not interpret (also MP attributes of other families), kept as is.

    ``flags`` never carries the Extended Length bit: the encoder sets it when needed.
    """

    flags: int
    type_code: int
    value: bytes


PathAttribute: TypeAlias = (
    Origin
    | AsPath
    | NextHop
    | Med
    | LocalPref
    | AtomicAggregate
    | Aggregator
    | Communities
    | MpReachNlri
    | MpUnreachNlri
    | As4Path
    | UnknownAttribute
)


# --------------------------------------------------------------------------------------------
# Field codecs


def prefix_bytes(net: IPv4Network | IPv6Network) -> bytes:
    plen = net.prefixlen
    return bytes([plen]) + net.network_address.packed[: (plen + 7) // 8]


def encode_prefixes(nets: Iterable[IPv4Network | IPv6Network]) -> bytes:
    return b"".join(prefix_bytes(n) for n in nets)


def decode_prefixes_v4(data: bytes) -> tuple[IPv4Network, ...] | None:
    """The IPv4 prefixes of an NLRI-encoded field (RFC 4271 4.3); None if malformed."""
    out: list[IPv4Network] = []
    pos, end = 0, len(data)
    while pos < end:
        plen = data[pos]
        nbytes = (plen + 7) >> 3
        if plen > 32 or pos + 1 + nbytes > end:
            return None
        raw = data[pos + 1 : pos + 1 + nbytes] + b"\x00" * (4 - nbytes)
        out.append(IPv4Network((raw, plen), strict=False))
        pos += 1 + nbytes
    return tuple(out)


def decode_prefixes_v6(data: bytes) -> tuple[IPv6Network, ...] | None:
    """The IPv6 prefixes of an NLRI-encoded field (RFC 4760 section 5); None if malformed."""
    out: list[IPv6Network] = []
    pos, end = 0, len(data)
    while pos < end:
        plen = data[pos]
        nbytes = (plen + 7) >> 3
        if plen > 128 or pos + 1 + nbytes > end:
            return None
        raw = data[pos + 1 : pos + 1 + nbytes] + b"\x00" * (16 - nbytes)
        out.append(IPv6Network((raw, plen), strict=False))
        pos += 1 + nbytes
    return tuple(out)


def _encode_segments(segments: Sequence[AsPathSegment], as4: bool) -> bytes:
    out = bytearray()
    fmt = "!I" if as4 else "!H"
    limit = 0xFFFFFFFF if as4 else 0xFFFF
    for seg in segments:
        if not 0 < len(seg.asns) <= 255:
            raise ValueError("an AS_PATH segment holds 1 to 255 AS numbers")
        out += bytes([seg.type, len(seg.asns)])
        for asn in seg.asns:
            if not 0 <= asn <= limit:
                raise ValueError(f"AS {asn} does not fit this AS_PATH encoding")
            out += struct.pack(fmt, asn)
    return bytes(out)


def _decode_segments(data: bytes, width: int) -> tuple[AsPathSegment, ...] | None:
    """None when malformed (RFC 7606 7.2: unknown type, zero length, overrun)."""
    segs: list[AsPathSegment] = []
    pos, end = 0, len(data)
    fmt = "!I" if width == 4 else "!H"
    while pos < end:
        if pos + 2 > end:
            return None
        stype, count = data[pos], data[pos + 1]
        pos += 2
        if stype not in (1, 2, 3, 4) or count == 0 or pos + count * width > end:
            return None
        asns = struct.unpack_from(f"!{count}{fmt[1]}", data, pos)
        pos += count * width
        segs.append(AsPathSegment(stype, tuple(asns)))
    return tuple(segs)


def _attr(flags: int, type_code: int, value: bytes, extended: bool = False) -> bytes:
    if extended or len(value) > 255:
        return struct.pack("!BBH", flags | F_EXTENDED, type_code, len(value)) + value
    return struct.pack("!BBB", flags & ~F_EXTENDED, type_code, len(value)) + value


def _bad_nexthop_v4(addr: IPv4Address) -> bool:
    return (
        addr.is_unspecified
        or addr.is_multicast
        or addr.is_loopback
        or int(addr) >= 0xF0000000  # class E and broadcast
    )


def _mp_error(raw: bytes, reason: str) -> BgpError:
    """A malformed MP_(UN)REACH_NLRI: its NLRI cannot be located, so the session is reset (RFC
    7606 section 7.11 allows AFI/SAFI disable instead; vipgate has no per-family disable)."""
    return update_error(UpdateError.OPTIONAL_ATTRIBUTE_ERROR, raw, reason)


def _decode_prefixes(afi: int, data: bytes) -> tuple[IPv4Network | IPv6Network, ...] | None:
    return decode_prefixes_v4(data) if afi == AFI_IPV4 else decode_prefixes_v6(data)


def _decode_mp_reach(value: bytes, raw: bytes, flags: int, _ctx: SessionContext) -> PathAttribute:
    if len(value) < 5:
        raise _mp_error(raw, "malformed MP_REACH_NLRI")
    afi, safi, nhlen = struct.unpack_from("!HBB", value, 0)
    if 4 + nhlen + 1 > len(value):
        raise _mp_error(raw, "malformed MP_REACH_NLRI")
    if (afi, safi) not in _MP_FAMILIES:
        return UnknownAttribute(flags & ~F_EXTENDED, A_MP_REACH, value)
    nh = value[4 : 4 + nhlen]
    hops: tuple[IPv4Address | IPv6Address, ...]
    if nhlen == 4:
        hops = (IPv4Address(nh),)
    elif nhlen == 16:
        hops = (IPv6Address(nh),)
    elif nhlen == 32:
        hops = (IPv6Address(nh[:16]), IPv6Address(nh[16:]))
    else:
        raise _mp_error(raw, f"MP_REACH_NLRI next hop of length {nhlen}")
    nlri = _decode_prefixes(afi, value[4 + nhlen + 1 :])
    if nlri is None:
        raise _mp_error(raw, "malformed MP_REACH_NLRI")
    return MpReachNlri(afi, safi, hops, nlri)


def _decode_mp_unreach(value: bytes, raw: bytes, flags: int, _ctx: SessionContext) -> PathAttribute:
    if len(value) < 3:
        raise _mp_error(raw, "malformed MP_UNREACH_NLRI")
    afi, safi = struct.unpack_from("!HB", value, 0)
    if (afi, safi) not in _MP_FAMILIES:
        return UnknownAttribute(flags & ~F_EXTENDED, A_MP_UNREACH, value)
    wd = _decode_prefixes(afi, value[3:])
    if wd is None:
        raise _mp_error(raw, "malformed MP_UNREACH_NLRI")
    return MpUnreachNlri(afi, safi, wd)


# --------------------------------------------------------------------------------------------
# The table


class Malformed(Exception):
    """A value that does not parse; the dispatcher adds code 3 and the row's handling."""

    def __init__(self, subcode: UpdateError, reason: str, data: bytes) -> None:
        super().__init__(reason)
        self.subcode = subcode
        self.reason = reason
        self.data = data


# decode(value, raw, flags, ctx): ``raw`` is the whole attribute (header included), the data of
# most NOTIFICATIONs about it (RFC 4271 section 6.3).
Decode: TypeAlias = Callable[[bytes, bytes, int, SessionContext], PathAttribute]
LengthRule: TypeAlias = Callable[[int, SessionContext], bool]


@dataclass(frozen=True, slots=True)
class AttributeType:
    """One known path attribute type: the row of :data:`ATTRIBUTES` (see the module rules)."""

    code: int
    name: str  # as the length error names it
    flags: int  # the Optional and Transitive bits it must carry (RFC 4271 section 5)
    on_error: Handling  # RFC 7606 section 7
    decode: Decode
    cls: type[Any]
    encode: Callable[[Any, SessionContext], bytes]  # the value, for an instance of cls
    length: LengthRule | None = None  # None: any length (the decoder checks)
    check: Callable[[Any, bytes], Malformed | None] | None = None  # the attribute stays
    extended: bool = False  # encoded with a 2-octet length (MP attributes)
    parse_despite_flags: bool = False
    duplicate_resets: bool = False


_OT: Final = F_OPTIONAL | F_TRANSITIVE


def _origin(value: bytes, raw: bytes, _flags: int, _ctx: SessionContext) -> PathAttribute:
    if value[0] > Origin.INCOMPLETE:
        raise Malformed(UpdateError.INVALID_ORIGIN_ATTRIBUTE, f"ORIGIN {value[0]}", raw)
    return Origin(value[0])


def _as_path(value: bytes, _raw: bytes, _flags: int, ctx: SessionContext) -> PathAttribute:
    segs = _decode_segments(value, 4 if ctx.as4 else 2)
    if segs is None:
        raise Malformed(UpdateError.MALFORMED_AS_PATH, "malformed AS_PATH", b"")
    return AsPath(segs)


def _as4_path(value: bytes, raw: bytes, _flags: int, _ctx: SessionContext) -> PathAttribute:
    segs = _decode_segments(value, 4)
    if segs is None:
        raise Malformed(UpdateError.OPTIONAL_ATTRIBUTE_ERROR, "malformed AS4_PATH", raw)
    return As4Path(segs)


def _aggregator(value: bytes, _raw: bytes, _flags: int, ctx: SessionContext) -> PathAttribute:
    width = 4 if ctx.as4 else 2
    return Aggregator(int.from_bytes(value[:width], "big"), IPv4Address(value[width:]))


def _u32(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _next_hop_check(a: NextHop, raw: bytes) -> Malformed | None:
    """Syntactically fine but no next hop (RFC 4271 section 6.3): kept in the attached UPDATE."""
    if not _bad_nexthop_v4(a.address):
        return None
    return Malformed(UpdateError.INVALID_NEXT_HOP_ATTRIBUTE, f"NEXT_HOP {a.address}", raw)


def _encode_aggregator(a: Aggregator, ctx: SessionContext) -> bytes:
    return struct.pack("!I" if ctx.as4 else "!H", a.asn) + a.address.packed


def _encode_mp_reach(a: MpReachNlri, _ctx: SessionContext) -> bytes:
    nh = b"".join(x.packed for x in a.next_hops)
    return struct.pack("!HBB", a.afi, a.safi, len(nh)) + nh + b"\x00" + encode_prefixes(a.nlri)


def _encode_mp_unreach(a: MpUnreachNlri, _ctx: SessionContext) -> bytes:
    return struct.pack("!HB", a.afi, a.safi) + encode_prefixes(a.withdrawn)


_O, _T = F_OPTIONAL, F_TRANSITIVE
_TAW, _DISCARD = Handling.TREAT_AS_WITHDRAW, Handling.ATTRIBUTE_DISCARD

# One row per known type code, in type-code order: code, name, flags, RFC 7606 handling, decoder,
# class, encoder (of the value), then the optional fields.
# fmt: off
ATTRIBUTES: Final[dict[int, AttributeType]] = {
    row.code: row
    for row in (
        AttributeType(
            A_ORIGIN, "ORIGIN", _T, _TAW, _origin, Origin,
            lambda a, _c: bytes([a.value]),
            length=lambda n, _c: n == 1,
        ),
        AttributeType(
            A_AS_PATH, "AS_PATH", _T, _TAW, _as_path, AsPath,
            lambda a, c: _encode_segments(a.segments, c.as4),
        ),
        AttributeType(
            A_NEXT_HOP, "NEXT_HOP", _T, _TAW,
            lambda v, _r, _f, _c: NextHop(IPv4Address(v)), NextHop,
            lambda a, _c: a.address.packed,
            length=lambda n, _c: n == 4,
            check=_next_hop_check,
        ),
        AttributeType(
            A_MED, f"attribute {A_MED}", _O, _TAW,
            lambda v, _r, _f, _c: Med(_u32(v)), Med,
            lambda a, _c: struct.pack("!I", a.value),
            length=lambda n, _c: n == 4,
        ),
        AttributeType(
            A_LOCAL_PREF, f"attribute {A_LOCAL_PREF}", _T, _TAW,
            lambda v, _r, _f, _c: LocalPref(_u32(v)), LocalPref,
            lambda a, _c: struct.pack("!I", a.value),
            length=lambda n, _c: n == 4,
        ),
        AttributeType(
            A_ATOMIC_AGGREGATE, "ATOMIC_AGGREGATE", _T, _DISCARD,
            lambda _v, _r, _f, _c: AtomicAggregate(), AtomicAggregate,
            lambda _a, _c: b"",
            length=lambda n, _c: n == 0,
        ),
        AttributeType(
            A_AGGREGATOR, "AGGREGATOR", _O | _T, _DISCARD, _aggregator, Aggregator,
            _encode_aggregator,
            length=lambda n, c: n == (8 if c.as4 else 6),
        ),
        AttributeType(
            A_COMMUNITIES, "COMMUNITIES", _O | _T, _TAW,
            lambda v, _r, _f, _c: Communities(struct.unpack(f"!{len(v) // 4}I", v)), Communities,
            lambda a, _c: struct.pack(f"!{len(a.values)}I", *a.values),
            length=lambda n, _c: n > 0 and n % 4 == 0,
        ),
        AttributeType(
            A_MP_REACH, "MP_REACH_NLRI", _O, _TAW, _decode_mp_reach, MpReachNlri,
            _encode_mp_reach,
            extended=True, parse_despite_flags=True, duplicate_resets=True,
        ),
        AttributeType(
            A_MP_UNREACH, "MP_UNREACH_NLRI", _O, _TAW, _decode_mp_unreach, MpUnreachNlri,
            _encode_mp_unreach,
            extended=True, parse_despite_flags=True, duplicate_resets=True,
        ),
        AttributeType(
            A_AS4_PATH, "AS4_PATH", _O | _T, _DISCARD, _as4_path, As4Path,
            lambda a, _c: _encode_segments(a.segments, True),
        ),
    )
}
# fmt: on
_BY_CLASS: Final[dict[type[Any], AttributeType]] = {row.cls: row for row in ATTRIBUTES.values()}
del _O, _T, _TAW, _DISCARD


def encode_attribute(a: PathAttribute, ctx: SessionContext) -> bytes:
    """One attribute with its header; the Extended Length bit only where the value needs it
    (and always on the MP attributes)."""
    row = _BY_CLASS.get(type(a))
    if row is None:
        assert isinstance(a, UnknownAttribute)
        return _attr(a.flags, a.type_code, a.value)
    return _attr(row.flags, row.code, row.encode(a, ctx), extended=row.extended)


# --------------------------------------------------------------------------------------------
# The dispatcher


def worse(worst: BgpError | None, err: BgpError) -> BgpError:
    """Rule 4: a session reset is raised at once; otherwise the worse of the two (first wins)."""
    if err.handling is Handling.SESSION_RESET:
        raise err
    if worst is None or err.handling.severity > worst.handling.severity:
        return err
    return worst


def _decode_known(
    row: AttributeType, flags: int, value: bytes, raw: bytes, ctx: SessionContext
) -> tuple[PathAttribute | None, BgpError | None]:
    """Rules 2 and 3 for a type in the table: the attribute (or None) and its error (or None)."""
    # The Optional and Transitive bits as the row says; Partial only on optional ones.
    if flags & _OT != row.flags or (flags & F_PARTIAL and not row.flags & F_OPTIONAL):
        err = update_error(
            UpdateError.ATTRIBUTE_FLAGS_ERROR,
            raw,
            f"flags 0x{flags:02x} on attribute {row.code}",
            row.on_error,
        )
        return (row.decode(value, raw, flags, ctx) if row.parse_despite_flags else None), err
    if row.length is not None and not row.length(len(value), ctx):
        reason = f"{row.name} of length {len(value)}"
        return None, update_error(UpdateError.ATTRIBUTE_LENGTH_ERROR, raw, reason, row.on_error)
    try:
        attr = row.decode(value, raw, flags, ctx)
    except Malformed as m:
        return None, update_error(m.subcode, m.data, m.reason, row.on_error)
    bad = row.check(attr, raw) if row.check is not None else None
    if bad is not None:
        return attr, update_error(bad.subcode, bad.data, bad.reason, row.on_error)
    return attr, None


_LIST: Final = UpdateError.MALFORMED_ATTRIBUTE_LIST


def decode_attributes(
    data: bytes, ctx: SessionContext
) -> tuple[list[PathAttribute], set[int], BgpError | None]:
    """The path attribute list of an UPDATE: the attributes that stand, the type codes seen and
    the worst error that leaves the session up (one that does not is raised).  Rule 2."""
    attrs: list[PathAttribute] = []
    seen: set[int] = set()
    worst: BgpError | None = None
    pos, end = 0, len(data)
    while pos < end:
        flags = data[pos]
        hlen = 4 if flags & F_EXTENDED else 3
        if end - pos < hlen:  # RFC 7606 section 4: overruns are treat-as-withdraw
            reason = "truncated attribute header"
            worst = worse(worst, update_error(_LIST, b"", reason, Handling.TREAT_AS_WITHDRAW))
            break
        tcode = data[pos + 1]
        vlen = (data[pos + 2] << 8) | data[pos + 3] if hlen == 4 else data[pos + 2]
        nxt = pos + hlen + vlen
        if nxt > end:
            reason = f"attribute {tcode} overruns the list"
            worst = worse(worst, update_error(_LIST, b"", reason, Handling.TREAT_AS_WITHDRAW))
            break
        raw, value = data[pos:nxt], data[pos + hlen : nxt]
        pos = nxt
        row = ATTRIBUTES.get(tcode)
        if tcode in seen:  # RFC 7606 section 3(g)
            if row is not None and row.duplicate_resets:
                raise update_error(_LIST, b"", f"attribute {tcode} appears twice")
            dup = f"duplicate attribute {tcode}"
            worst = worse(worst, update_error(_LIST, b"", dup, Handling.ATTRIBUTE_DISCARD))
            continue
        seen.add(tcode)
        if row is None:
            attrs.append(_unknown(flags, tcode, value, raw))
            continue
        attr, err = _decode_known(row, flags, value, raw, ctx)
        if attr is not None:
            attrs.append(attr)
        if err is not None:
            worst = worse(worst, err)
    return attrs, seen, worst


def _unknown(flags: int, tcode: int, value: bytes, raw: bytes) -> UnknownAttribute:
    """A type not in the table: kept if optional, a session reset if well-known."""
    if not flags & F_OPTIONAL:
        raise update_error(
            UpdateError.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
            raw,
            f"unrecognized well-known attribute {tcode}",
        )
    return UnknownAttribute(flags & ~F_EXTENDED, tcode, value)
