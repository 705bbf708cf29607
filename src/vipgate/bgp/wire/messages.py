"""BGP messages (RFC 4271 section 4; RFC 2918 / 7313 ROUTE-REFRESH): the dataclasses, the
encoder, the message framing and the streaming :class:`Decoder`.

The header (RFC 4271 4.1 and 6.1) and the OPEN (4.2, with RFC 9072's extended optional
parameters) are checked here; an UPDATE's fields are framed here and its path attributes go
through the table in :mod:`vipgate.bgp.wire.attributes`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import Final, TypeAlias, TypeVar

from vipgate.bgp.wire.attributes import (
    A_AS_PATH,
    A_MP_REACH,
    A_NEXT_HOP,
    A_ORIGIN,
    MpReachNlri,
    MpUnreachNlri,
    PathAttribute,
    SessionContext,
    decode_attributes,
    decode_prefixes_v4,
    encode_attribute,
    encode_prefixes,
    worse,
)
from vipgate.bgp.wire.capabilities import (
    AFI_IPV4,
    SAFI_UNICAST,
    Capability,
    CapabilityError,
    FourOctetAsCapability,
    MultiprotocolCapability,
    RouteRefreshCapability,
    decode_capabilities,
    encode_capability,
)
from vipgate.bgp.wire.notification import (
    BgpError,
    ErrorCode,
    Handling,
    HeaderError,
    Notification,
    OpenError,
    RouteRefreshError,
    UpdateError,
    header_error,
    open_error,
    update_error,
)

__all__ = [
    "BGP_VERSION",
    "HEADER_LEN",
    "MARKER",
    "MAX_MESSAGE_LEN",
    "MESSAGE_TYPE_NAMES",
    "Decoder",
    "Keepalive",
    "Message",
    "Open",
    "RouteRefresh",
    "Update",
    "decode_message",
    "encode",
    "encode_open_extended",
]

_A = TypeVar("_A")

MARKER: Final = b"\xff" * 16
HEADER_LEN: Final = 19
MAX_MESSAGE_LEN: Final = 4096
BGP_VERSION: Final = 4

T_OPEN, T_UPDATE, T_NOTIFICATION, T_KEEPALIVE, T_ROUTE_REFRESH = 1, 2, 3, 4, 5
MESSAGE_TYPE_NAMES: Final = {
    T_OPEN: "OPEN",
    T_UPDATE: "UPDATE",
    T_NOTIFICATION: "NOTIFICATION",
    T_KEEPALIVE: "KEEPALIVE",
    T_ROUTE_REFRESH: "ROUTE-REFRESH",
}

# The context before the OPEN exchange has settled it (2-octet AS numbers).
NO_AS4: Final = SessionContext()

# Optional parameter types (RFC 4271 4.2, RFC 5492, RFC 9072).
P_CAPABILITIES: Final = 2
P_EXTENDED_LENGTH: Final = 255


# --------------------------------------------------------------------------------------------
# Messages


@dataclass(frozen=True, slots=True)
class Open:
    """OPEN (RFC 4271 4.2).  ``my_as`` is the 2-octet header field (AS_TRANS for big ASNs).

    ``extended``: it came in RFC 9072's extended optional parameters encoding (for logs; not
    part of equality; :func:`encode` picks the encoding by length).
    """

    my_as: int
    hold_time: int
    bgp_id: IPv4Address
    capabilities: tuple[Capability, ...] = ()
    version: int = BGP_VERSION
    extended: bool = field(default=False, compare=False)

    @property
    def asn(self) -> int:
        """The real AS number: from the 4-octet AS capability if present."""
        for cap in self.capabilities:
            if isinstance(cap, FourOctetAsCapability):
                return cap.asn
        return self.my_as

    @property
    def four_octet_as(self) -> bool:
        return any(isinstance(c, FourOctetAsCapability) for c in self.capabilities)

    @property
    def route_refresh(self) -> bool:
        return any(isinstance(c, RouteRefreshCapability) for c in self.capabilities)

    @property
    def families(self) -> frozenset[tuple[int, int]]:
        """Announced (AFI, SAFI); without any multiprotocol capability, IPv4 unicast implied."""
        fams = frozenset(
            (c.afi, c.safi) for c in self.capabilities if isinstance(c, MultiprotocolCapability)
        )
        return fams or frozenset({(AFI_IPV4, SAFI_UNICAST)})

    @property
    def type_name(self) -> str:
        return "OPEN"


@dataclass(frozen=True, slots=True)
class Keepalive:
    @property
    def type_name(self) -> str:
        return "KEEPALIVE"


@dataclass(frozen=True, slots=True)
class RouteRefresh:
    """RFC 2918 / RFC 7313 (``subtype`` is the former reserved octet)."""

    afi: int
    safi: int
    subtype: int = 0

    @property
    def type_name(self) -> str:
        return "ROUTE-REFRESH"


@dataclass(frozen=True, slots=True)
class Update:
    """UPDATE (RFC 4271 4.3).  ``withdrawn`` and ``nlri`` are the IPv4 fields of the message."""

    withdrawn: tuple[IPv4Network, ...] = ()
    attributes: tuple[PathAttribute, ...] = ()
    nlri: tuple[IPv4Network, ...] = ()

    @property
    def type_name(self) -> str:
        return "UPDATE"

    def get(self, cls: type[_A]) -> _A | None:
        for a in self.attributes:
            if isinstance(a, cls):
                return a
        return None

    def announced(self) -> list[IPv4Network | IPv6Network]:
        """Every prefix this UPDATE announces (NLRI field plus MP_REACH_NLRI)."""
        out: list[IPv4Network | IPv6Network] = list(self.nlri)
        for a in self.attributes:
            if isinstance(a, MpReachNlri):
                out.extend(a.nlri)
        return out

    def withdrawals(self) -> list[IPv4Network | IPv6Network]:
        """Every prefix this UPDATE withdraws (Withdrawn Routes plus MP_UNREACH_NLRI)."""
        out: list[IPv4Network | IPv6Network] = list(self.withdrawn)
        for a in self.attributes:
            if isinstance(a, MpUnreachNlri):
                out.extend(a.withdrawn)
        return out

    @property
    def is_end_of_rib(self) -> bool:
        """RFC 4724 End-of-RIB marker (empty UPDATE, or only an empty MP_UNREACH_NLRI)."""
        if self.withdrawn or self.nlri:
            return False
        if not self.attributes:
            return True
        return (
            len(self.attributes) == 1
            and isinstance(self.attributes[0], MpUnreachNlri)
            and not self.attributes[0].withdrawn
        )


Message: TypeAlias = Open | Update | Notification | Keepalive | RouteRefresh


# --------------------------------------------------------------------------------------------
# Encoding


def _encode_open(msg: Open, extended: bool = False) -> bytes:
    """An OPEN body.  The capabilities go into one Capabilities parameter (RFC 5492); when they
    exceed 255 octets, or with ``extended``, RFC 9072's encoding is used (one parameter with a
    2-octet length), otherwise RFC 4271's."""
    caps = b"".join(encode_capability(c) for c in msg.capabilities)
    head = struct.pack("!BHH", msg.version, msg.my_as, msg.hold_time) + msg.bgp_id.packed
    if not extended and len(caps) <= 255 - 2:
        params = bytes([P_CAPABILITIES, len(caps)]) + caps if caps else b""
        return head + bytes([len(params)]) + params
    params = struct.pack("!BH", P_CAPABILITIES, len(caps)) + caps
    return head + struct.pack("!BBH", 255, P_EXTENDED_LENGTH, len(params)) + params


def encode_open_extended(msg: Open) -> bytes:
    """The OPEN in RFC 9072's extended encoding even if it is short (RFC 9072 section 2 lets
    configuration force it "to test that a peer supports this specification")."""
    return _frame(T_OPEN, _encode_open(msg, extended=True))


def _frame(msg_type: int, body: bytes) -> bytes:
    length = HEADER_LEN + len(body)
    if length > MAX_MESSAGE_LEN:
        raise ValueError(f"message of {length} octets exceeds {MAX_MESSAGE_LEN}")
    return MARKER + struct.pack("!HB", length, msg_type) + body


def encode(msg: Message, ctx: SessionContext = NO_AS4) -> bytes:
    """The wire form of one message (header included)."""
    if isinstance(msg, Keepalive):
        return _frame(T_KEEPALIVE, b"")
    if isinstance(msg, Notification):
        return _frame(T_NOTIFICATION, bytes([msg.code, msg.subcode]) + msg.data)
    if isinstance(msg, RouteRefresh):
        return _frame(T_ROUTE_REFRESH, struct.pack("!HBB", msg.afi, msg.subtype, msg.safi))
    if isinstance(msg, Open):
        return _frame(T_OPEN, _encode_open(msg))
    # Update
    withdrawn = encode_prefixes(msg.withdrawn)
    attrs = b"".join(encode_attribute(a, ctx) for a in msg.attributes)
    body = (
        struct.pack("!H", len(withdrawn))
        + withdrawn
        + struct.pack("!H", len(attrs))
        + attrs
        + encode_prefixes(msg.nlri)
    )
    return _frame(T_UPDATE, body)


# --------------------------------------------------------------------------------------------
# Decoding


def _decode_open(body: bytes) -> Open:
    """An OPEN body: RFC 4271 4.2, with RFC 9072's extended optional parameters encoding.

    RFC 9072 section 2: a Non-Ext OP Type of 255 where the first parameter type would be
    announces the extended format (whatever the Non-Ext OP Len, which must then be ignored):
    a 2-octet total length follows, and every parameter has a 2-octet length.
    """
    if len(body) < 10:
        raise header_error(
            HeaderError.BAD_MESSAGE_LENGTH,
            struct.pack("!H", HEADER_LEN + len(body)),
            "OPEN too short",
        )
    version, my_as, hold = struct.unpack_from("!BHH", body, 0)
    if version != BGP_VERSION:
        raise open_error(
            OpenError.UNSUPPORTED_VERSION_NUMBER,
            f"BGP version {version}",
            struct.pack("!H", BGP_VERSION),
        )
    bgp_id = IPv4Address(body[5:9])
    opt_len = body[9]
    extended = opt_len != 0 and len(body) > 10 and body[10] == P_EXTENDED_LENGTH
    if extended:
        if len(body) < 13:
            raise open_error(
                OpenError.UNSPECIFIC, "extended optional parameters length truncated (RFC 9072)"
            )
        pos = 13
        if pos + struct.unpack_from("!H", body, 11)[0] != len(body):
            raise open_error(
                OpenError.UNSPECIFIC,
                "extended optional parameters length does not match the message",
            )
    else:
        pos = 10
        if pos + opt_len != len(body):
            raise open_error(
                OpenError.UNSPECIFIC, "optional parameters length does not match the message"
            )
    if hold in (1, 2):
        raise open_error(OpenError.UNACCEPTABLE_HOLD_TIME, f"hold time {hold}")
    if int(bgp_id) == 0:
        raise open_error(OpenError.BAD_BGP_IDENTIFIER, "BGP identifier 0.0.0.0")
    caps = _decode_optional_parameters(body, pos, extended)
    return Open(my_as, hold, bgp_id, caps, version, extended)


def _decode_optional_parameters(body: bytes, pos: int, extended: bool) -> tuple[Capability, ...]:
    """The OPEN's optional parameters from `pos` to the end of `body` (RFC 4271 4.2; with
    RFC 9072's 2-octet lengths when `extended`): Capabilities (RFC 5492 4), nothing else."""
    head = 3 if extended else 2
    caps: list[Capability] = []
    end = len(body)
    while pos < end:
        if pos + head > end:
            raise open_error(OpenError.UNSPECIFIC, "truncated optional parameter")
        ptype = body[pos]
        plen = struct.unpack_from("!H", body, pos + 1)[0] if extended else body[pos + 1]
        pos += head
        if pos + plen > end:
            raise open_error(OpenError.UNSPECIFIC, "optional parameter overruns the OPEN")
        if ptype != P_CAPABILITIES:
            raise open_error(
                OpenError.UNSUPPORTED_OPTIONAL_PARAMETER, f"optional parameter type {ptype}"
            )
        try:
            caps.extend(decode_capabilities(body[pos : pos + plen]))
        except CapabilityError as e:
            raise open_error(OpenError.UNSPECIFIC, str(e)) from None
        pos += plen
    return tuple(caps)


def _decode_update(body: bytes, ctx: SessionContext) -> Update:
    """An UPDATE body (RFC 4271 4.3): the framing, the path attributes (by their table), then
    the mandatory well-known attributes."""
    # Framing: withdrawn length and total attribute length must fit (session reset, 3/1).
    if len(body) < 4:
        too_short = struct.pack("!H", HEADER_LEN + len(body))
        raise header_error(HeaderError.BAD_MESSAGE_LENGTH, too_short, "UPDATE too short")
    wlen = struct.unpack_from("!H", body, 0)[0]
    if 2 + wlen + 2 > len(body):
        raise update_error(
            UpdateError.MALFORMED_ATTRIBUTE_LIST, b"", "withdrawn routes length overruns the UPDATE"
        )
    alen = struct.unpack_from("!H", body, 2 + wlen)[0]
    if 4 + wlen + alen > len(body):
        raise update_error(
            UpdateError.MALFORMED_ATTRIBUTE_LIST,
            b"",
            "total path attribute length overruns the UPDATE",
        )
    withdrawn = decode_prefixes_v4(body[2 : 2 + wlen])
    if withdrawn is None:
        raise update_error(UpdateError.INVALID_NETWORK_FIELD, b"", "malformed withdrawn routes")
    nlri = decode_prefixes_v4(body[4 + wlen + alen :])
    if nlri is None:
        raise update_error(UpdateError.INVALID_NETWORK_FIELD, b"", "malformed NLRI field")
    attrs, seen, worst = decode_attributes(body[4 + wlen : 4 + wlen + alen], ctx)
    update = Update(withdrawn, tuple(attrs), nlri)
    missing = _missing_well_known(seen, bool(nlri))
    if missing is not None:
        worst = worse(worst, missing)
    if worst is not None:
        worst.update = update
        raise worst
    return update


def _missing_well_known(seen: set[int], nlri: bool) -> BgpError | None:
    """ORIGIN and AS_PATH (and NEXT_HOP for NLRI-field routes) when the UPDATE announces
    anything (RFC 4271 5.1.2; RFC 7606 section 3(d): treat-as-withdraw)."""
    if not nlri and A_MP_REACH not in seen:
        return None
    for tcode in (A_ORIGIN, A_AS_PATH, A_NEXT_HOP) if nlri else (A_ORIGIN, A_AS_PATH):
        if tcode not in seen:
            return update_error(
                UpdateError.MISSING_WELL_KNOWN_ATTRIBUTE,
                bytes([tcode]),
                f"missing well-known attribute {tcode}",
                Handling.TREAT_AS_WITHDRAW,
            )
    return None


def decode_message(msg_type: int, body: bytes, ctx: SessionContext) -> Message:
    """Decode one message body (header already checked) of the given type."""
    if msg_type == T_UPDATE:
        return _decode_update(body, ctx)
    if msg_type == T_KEEPALIVE:
        return Keepalive()
    if msg_type == T_NOTIFICATION:
        return Notification(body[0], body[1], bytes(body[2:]))
    if msg_type == T_OPEN:
        return _decode_open(body)
    afi, subtype, safi = struct.unpack("!HBB", body)
    return RouteRefresh(afi, safi, subtype)


# Minimum (and for KEEPALIVE exact) message lengths per type, RFC 4271 6.1.
_MIN_LEN: Final = {
    T_OPEN: 29,
    T_UPDATE: 23,
    T_NOTIFICATION: 21,
    T_KEEPALIVE: 19,
    T_ROUTE_REFRESH: 19,
}


class Decoder:
    """Streaming decoder: ``feed()`` bytes, then call ``next_message()`` until it returns None.

    ``ctx`` may be replaced between messages (the FSM does so after the OPEN exchange).
    A session-reset error leaves the decoder broken: every later call raises it again.
    """

    def __init__(self, ctx: SessionContext = NO_AS4) -> None:
        self.ctx = ctx
        self._buf = bytearray()
        self._broken: BgpError | None = None

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_message(self) -> Message | None:
        if self._broken is not None:
            raise self._broken
        buf = self._buf
        if len(buf) < HEADER_LEN:
            return None
        try:
            if buf[:16] != MARKER:
                raise header_error(
                    HeaderError.CONNECTION_NOT_SYNCHRONIZED, b"", "marker is not all ones"
                )
            length = (buf[16] << 8) | buf[17]
            mtype = buf[18]
            if length < HEADER_LEN or length > MAX_MESSAGE_LEN:
                raise header_error(
                    HeaderError.BAD_MESSAGE_LENGTH, bytes(buf[16:18]), f"length {length}"
                )
            if mtype not in _MIN_LEN:
                raise header_error(
                    HeaderError.BAD_MESSAGE_TYPE, bytes([mtype]), f"message type {mtype}"
                )
            if length < _MIN_LEN[mtype] or (mtype == T_KEEPALIVE and length != HEADER_LEN):
                raise header_error(
                    HeaderError.BAD_MESSAGE_LENGTH,
                    bytes(buf[16:18]),
                    f"{MESSAGE_TYPE_NAMES[mtype]} of {length}",
                )
            if mtype == T_ROUTE_REFRESH and length != 23:
                # RFC 7313 5: ROUTE-REFRESH Message Error / Invalid Message Length.
                if len(buf) < length:
                    return None
                raise BgpError(
                    ErrorCode.ROUTE_REFRESH_MESSAGE_ERROR,
                    RouteRefreshError.INVALID_MESSAGE_LENGTH,
                    bytes(buf[HEADER_LEN:length]),
                    f"ROUTE-REFRESH of {length}",
                )
        except BgpError as e:
            self._broken = e
            raise
        if len(buf) < length:
            return None
        body = bytes(buf[HEADER_LEN:length])
        del buf[:length]
        try:
            return decode_message(mtype, body, self.ctx)
        except BgpError as e:
            if e.fatal:
                self._broken = e
            raise

    def feed_all(self, data: bytes) -> list[Message]:
        """Feed and decode every whole message (for a fixed context; raises on any error)."""
        self.feed(data)
        out: list[Message] = []
        while (m := self.next_message()) is not None:
            out.append(m)
        return out
