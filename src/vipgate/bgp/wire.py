"""BGP-4 message codec, sans-I/O (RFC 4271, 4760, 5492, 6793, 2918, 1997, 7606, 8203/9003).

Messages are small frozen dataclasses.  :func:`encode` turns one into bytes; a :class:`Decoder`
is fed bytes and hands back whole messages one at a time.  Decoding an UPDATE depends on the
session (2- or 4-octet AS numbers), so the decoder carries a :class:`SessionContext` that the
session state machine replaces once the OPEN exchange has settled it.

Every error raises :class:`BgpError`, which carries the NOTIFICATION code, subcode and data
that RFC 4271 section 6 names, and a :class:`Handling` that says what RFC 7606 asks for:

* ``SESSION_RESET``: send the NOTIFICATION and close.  The decoder is unusable afterwards.
* ``TREAT_AS_WITHDRAW``: the UPDATE's routes count as withdrawn; the session stays up.  The
  exception carries the decoded :class:`Update` in ``.update``; the bytes were consumed.
* ``ATTRIBUTE_DISCARD``: the offending attribute was dropped; the rest of the UPDATE stands
  (``.update`` holds it without the attribute); the session stays up.

A message-level error always wins over treat-as-withdraw, which wins over attribute-discard.

Builders for our own UPDATEs (:func:`announce_ipv4` and friends) work on bytes directly and pack
as many prefixes as fit into each 4096-octet message.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import ClassVar, Final, TypeAlias, TypeVar

__all__ = [
    "AFI_IPV4",
    "AFI_IPV6",
    "AS_TRANS",
    "MAX_MESSAGE_LEN",
    "SAFI_UNICAST",
    "Aggregator",
    "As4Path",
    "AsPath",
    "AsPathSegment",
    "AtomicAggregate",
    "BgpError",
    "Capability",
    "CeaseSubcode",
    "Communities",
    "Decoder",
    "ErrorCode",
    "FourOctetAsCapability",
    "FsmError",
    "Handling",
    "HeaderError",
    "Keepalive",
    "LocalPref",
    "Med",
    "Message",
    "MpReachNlri",
    "MpUnreachNlri",
    "MultiprotocolCapability",
    "NextHop",
    "Notification",
    "Open",
    "OpenError",
    "Origin",
    "OutboundPolicy",
    "PathAttribute",
    "RouteRefresh",
    "RouteRefreshCapability",
    "RouteRefreshError",
    "SessionContext",
    "UnknownAttribute",
    "UnknownCapability",
    "Update",
    "UpdateError",
    "announce_ipv4",
    "announce_ipv6",
    "capability_name",
    "decode_message",
    "encode",
    "encode_open_extended",
    "error_name",
    "family_name",
    "unsupported_capabilities",
    "withdraw_ipv4",
    "withdraw_ipv6",
]

_A = TypeVar("_A")

MARKER: Final = b"\xff" * 16
HEADER_LEN: Final = 19
MAX_MESSAGE_LEN: Final = 4096
BGP_VERSION: Final = 4
AS_TRANS: Final = 23456
# RFC 8326 section 4: the well-known GRACEFUL_SHUTDOWN community 65535:0.
GRACEFUL_SHUTDOWN: Final = 0xFFFF0000

AFI_IPV4: Final = 1
AFI_IPV6: Final = 2
SAFI_UNICAST: Final = 1

T_OPEN, T_UPDATE, T_NOTIFICATION, T_KEEPALIVE, T_ROUTE_REFRESH = 1, 2, 3, 4, 5
MESSAGE_TYPE_NAMES: Final = {
    T_OPEN: "OPEN",
    T_UPDATE: "UPDATE",
    T_NOTIFICATION: "NOTIFICATION",
    T_KEEPALIVE: "KEEPALIVE",
    T_ROUTE_REFRESH: "ROUTE-REFRESH",
}

# Path attribute type codes and flags (RFC 4271 4.3).
F_OPTIONAL, F_TRANSITIVE, F_PARTIAL, F_EXTENDED = 0x80, 0x40, 0x20, 0x10
A_ORIGIN, A_AS_PATH, A_NEXT_HOP, A_MED, A_LOCAL_PREF = 1, 2, 3, 4, 5
A_ATOMIC_AGGREGATE, A_AGGREGATOR, A_COMMUNITIES = 6, 7, 8
A_MP_REACH, A_MP_UNREACH, A_AS4_PATH = 14, 15, 17

# Capability codes (RFC 5492 registry).
C_MULTIPROTOCOL, C_ROUTE_REFRESH, C_FOUR_OCTET_AS = 1, 2, 65
# Names of capability codes for logs (IANA "Capability Codes" registry).
CAPABILITY_NAMES: Final[dict[int, str]] = {
    1: "Multiprotocol",
    2: "Route Refresh",
    3: "Outbound Route Filtering",
    5: "Extended Next Hop Encoding",
    6: "Extended Message",
    7: "BGPsec",
    8: "Multiple Labels",
    9: "BGP Role",
    64: "Graceful Restart",
    65: "4-octet AS",
    67: "Dynamic Capability",
    68: "Multisession",
    69: "ADD-PATH",
    70: "Enhanced Route Refresh",
    71: "Long-Lived Graceful Restart",
    73: "FQDN",
    75: "Software Version",
    128: "Route Refresh (pre-standard)",
}
AFI_NAMES: Final[dict[int, str]] = {1: "IPv4", 2: "IPv6", 25: "L2VPN"}
SAFI_NAMES: Final[dict[int, str]] = {
    1: "unicast",
    2: "multicast",
    4: "labeled unicast",
    70: "EVPN",
    128: "VPN",
    133: "flowspec",
}

# Optional parameter types (RFC 4271 4.2, RFC 5492, RFC 9072).
P_CAPABILITIES: Final = 2
P_EXTENDED_LENGTH: Final = 255

# NOTIFICATION error codes and subcodes (RFC 4271 4.5, 6608, 4486, 7313, 9384).


class ErrorCode(enum.IntEnum):
    """NOTIFICATION Error Code (RFC 4271 section 4.5; RFC 7313 section 5)."""

    MESSAGE_HEADER_ERROR = 1
    OPEN_MESSAGE_ERROR = 2
    UPDATE_MESSAGE_ERROR = 3
    HOLD_TIMER_EXPIRED = 4
    FSM_ERROR = 5
    CEASE = 6
    ROUTE_REFRESH_MESSAGE_ERROR = 7


class HeaderError(enum.IntEnum):
    """Message Header Error subcodes (RFC 4271 section 6.1)."""

    UNSPECIFIC = 0
    CONNECTION_NOT_SYNCHRONIZED = 1
    BAD_MESSAGE_LENGTH = 2
    BAD_MESSAGE_TYPE = 3


class OpenError(enum.IntEnum):
    """OPEN Message Error subcodes (RFC 4271 section 6.2; RFC 5492 section 3; RFC 9234)."""

    UNSPECIFIC = 0
    UNSUPPORTED_VERSION_NUMBER = 1
    BAD_PEER_AS = 2
    BAD_BGP_IDENTIFIER = 3
    UNSUPPORTED_OPTIONAL_PARAMETER = 4
    AUTHENTICATION_FAILURE = 5  # deprecated
    UNACCEPTABLE_HOLD_TIME = 6
    UNSUPPORTED_CAPABILITY = 7
    ROLE_MISMATCH = 11


class UpdateError(enum.IntEnum):
    """UPDATE Message Error subcodes (RFC 4271 section 6.3)."""

    UNSPECIFIC = 0
    MALFORMED_ATTRIBUTE_LIST = 1
    UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE = 2
    MISSING_WELL_KNOWN_ATTRIBUTE = 3
    ATTRIBUTE_FLAGS_ERROR = 4
    ATTRIBUTE_LENGTH_ERROR = 5
    INVALID_ORIGIN_ATTRIBUTE = 6
    AS_ROUTING_LOOP = 7  # deprecated
    INVALID_NEXT_HOP_ATTRIBUTE = 8
    OPTIONAL_ATTRIBUTE_ERROR = 9
    INVALID_NETWORK_FIELD = 10
    MALFORMED_AS_PATH = 11


class FsmError(enum.IntEnum):
    """Finite State Machine Error subcodes (RFC 6608 section 3)."""

    UNSPECIFIED = 0
    UNEXPECTED_IN_OPEN_SENT = 1
    UNEXPECTED_IN_OPEN_CONFIRM = 2
    UNEXPECTED_IN_ESTABLISHED = 3


class CeaseSubcode(enum.IntEnum):
    """Cease subcodes (RFC 4486 section 4; RFC 8538 Hard Reset; RFC 9384 BFD Down)."""

    UNSPECIFIC = 0
    MAXIMUM_NUMBER_OF_PREFIXES_REACHED = 1
    ADMINISTRATIVE_SHUTDOWN = 2
    PEER_DE_CONFIGURED = 3
    ADMINISTRATIVE_RESET = 4
    CONNECTION_REJECTED = 5
    OTHER_CONFIGURATION_CHANGE = 6
    CONNECTION_COLLISION_RESOLUTION = 7
    OUT_OF_RESOURCES = 8
    HARD_RESET = 9
    BFD_DOWN = 10


class RouteRefreshError(enum.IntEnum):
    """ROUTE-REFRESH Message Error subcodes (RFC 7313 section 5)."""

    UNSPECIFIC = 0
    INVALID_MESSAGE_LENGTH = 1


_E = ErrorCode
ERROR_NAMES: Final[dict[int, str]] = {
    _E.MESSAGE_HEADER_ERROR: "Message Header Error",
    _E.OPEN_MESSAGE_ERROR: "OPEN Message Error",
    _E.UPDATE_MESSAGE_ERROR: "UPDATE Message Error",
    _E.HOLD_TIMER_EXPIRED: "Hold Timer Expired",
    _E.FSM_ERROR: "Finite State Machine Error",
    _E.CEASE: "Cease",
    _E.ROUTE_REFRESH_MESSAGE_ERROR: "ROUTE-REFRESH Message Error",
}
_H, _O, _U, _F, _C = HeaderError, OpenError, UpdateError, FsmError, CeaseSubcode
SUBCODE_NAMES: Final[dict[tuple[int, int], str]] = {
    (_E.MESSAGE_HEADER_ERROR, _H.CONNECTION_NOT_SYNCHRONIZED): "Connection Not Synchronized",
    (_E.MESSAGE_HEADER_ERROR, _H.BAD_MESSAGE_LENGTH): "Bad Message Length",
    (_E.MESSAGE_HEADER_ERROR, _H.BAD_MESSAGE_TYPE): "Bad Message Type",
    (_E.OPEN_MESSAGE_ERROR, _O.UNSUPPORTED_VERSION_NUMBER): "Unsupported Version Number",
    (_E.OPEN_MESSAGE_ERROR, _O.BAD_PEER_AS): "Bad Peer AS",
    (_E.OPEN_MESSAGE_ERROR, _O.BAD_BGP_IDENTIFIER): "Bad BGP Identifier",
    (_E.OPEN_MESSAGE_ERROR, _O.UNSUPPORTED_OPTIONAL_PARAMETER): "Unsupported Optional Parameter",
    (_E.OPEN_MESSAGE_ERROR, _O.AUTHENTICATION_FAILURE): "Authentication Failure (deprecated)",
    (_E.OPEN_MESSAGE_ERROR, _O.UNACCEPTABLE_HOLD_TIME): "Unacceptable Hold Time",
    (_E.OPEN_MESSAGE_ERROR, _O.UNSUPPORTED_CAPABILITY): "Unsupported Capability",
    (_E.OPEN_MESSAGE_ERROR, _O.ROLE_MISMATCH): "Role Mismatch",
    (_E.UPDATE_MESSAGE_ERROR, _U.MALFORMED_ATTRIBUTE_LIST): "Malformed Attribute List",
    (_E.UPDATE_MESSAGE_ERROR, _U.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE): (
        "Unrecognized Well-known Attribute"
    ),
    (_E.UPDATE_MESSAGE_ERROR, _U.MISSING_WELL_KNOWN_ATTRIBUTE): "Missing Well-known Attribute",
    (_E.UPDATE_MESSAGE_ERROR, _U.ATTRIBUTE_FLAGS_ERROR): "Attribute Flags Error",
    (_E.UPDATE_MESSAGE_ERROR, _U.ATTRIBUTE_LENGTH_ERROR): "Attribute Length Error",
    (_E.UPDATE_MESSAGE_ERROR, _U.INVALID_ORIGIN_ATTRIBUTE): "Invalid ORIGIN Attribute",
    (_E.UPDATE_MESSAGE_ERROR, _U.AS_ROUTING_LOOP): "AS Routing Loop (deprecated)",
    (_E.UPDATE_MESSAGE_ERROR, _U.INVALID_NEXT_HOP_ATTRIBUTE): "Invalid NEXT_HOP Attribute",
    (_E.UPDATE_MESSAGE_ERROR, _U.OPTIONAL_ATTRIBUTE_ERROR): "Optional Attribute Error",
    (_E.UPDATE_MESSAGE_ERROR, _U.INVALID_NETWORK_FIELD): "Invalid Network Field",
    (_E.UPDATE_MESSAGE_ERROR, _U.MALFORMED_AS_PATH): "Malformed AS_PATH",
    (_E.FSM_ERROR, _F.UNEXPECTED_IN_OPEN_SENT): "Receive Unexpected Message in OpenSent State",
    (_E.FSM_ERROR, _F.UNEXPECTED_IN_OPEN_CONFIRM): (
        "Receive Unexpected Message in OpenConfirm State"
    ),
    (_E.FSM_ERROR, _F.UNEXPECTED_IN_ESTABLISHED): (
        "Receive Unexpected Message in Established State"
    ),
    (_E.CEASE, _C.MAXIMUM_NUMBER_OF_PREFIXES_REACHED): "Maximum Number of Prefixes Reached",
    (_E.CEASE, _C.ADMINISTRATIVE_SHUTDOWN): "Administrative Shutdown",
    (_E.CEASE, _C.PEER_DE_CONFIGURED): "Peer De-configured",
    (_E.CEASE, _C.ADMINISTRATIVE_RESET): "Administrative Reset",
    (_E.CEASE, _C.CONNECTION_REJECTED): "Connection Rejected",
    (_E.CEASE, _C.OTHER_CONFIGURATION_CHANGE): "Other Configuration Change",
    (_E.CEASE, _C.CONNECTION_COLLISION_RESOLUTION): "Connection Collision Resolution",
    (_E.CEASE, _C.OUT_OF_RESOURCES): "Out of Resources",
    (_E.CEASE, _C.HARD_RESET): "Hard Reset",
    (_E.CEASE, _C.BFD_DOWN): "BFD Down",
    (_E.ROUTE_REFRESH_MESSAGE_ERROR, RouteRefreshError.INVALID_MESSAGE_LENGTH): (
        "Invalid Message Length"
    ),
}
del _E, _H, _O, _U, _F, _C


def error_name(code: int, subcode: int) -> str:
    """``"Cease/Administrative Shutdown"``, ``"Hold Timer Expired/Unspecific"``, ..."""
    major = ERROR_NAMES.get(code, f"Unknown error code {code}")
    if subcode == 0:
        minor = "Unspecific"
    else:
        minor = SUBCODE_NAMES.get((code, subcode), f"Unknown subcode {subcode}")
    return f"{major}/{minor}"


# --------------------------------------------------------------------------------------------
# Errors


class Handling(enum.Enum):
    """What RFC 7606 (or RFC 4271 for non-UPDATE errors) asks the receiver to do."""

    SESSION_RESET = "session-reset"
    TREAT_AS_WITHDRAW = "treat-as-withdraw"
    ATTRIBUTE_DISCARD = "attribute-discard"


_SEVERITY = {
    Handling.ATTRIBUTE_DISCARD: 0,
    Handling.TREAT_AS_WITHDRAW: 1,
    Handling.SESSION_RESET: 2,
}


class BgpError(Exception):
    """A protocol error, with the NOTIFICATION the RFCs name for it."""

    def __init__(
        self,
        code: int,
        subcode: int,
        data: bytes = b"",
        reason: str = "",
        handling: Handling = Handling.SESSION_RESET,
        update: Update | None = None,
    ) -> None:
        self.code = code
        self.subcode = subcode
        self.data = bytes(data)
        self.reason = reason or error_name(code, subcode)
        self.handling = handling
        self.update = update
        super().__init__(f"{error_name(code, subcode)}: {self.reason} ({handling.value})")

    @property
    def fatal(self) -> bool:
        return self.handling is Handling.SESSION_RESET

    def notification(self) -> Notification:
        return Notification(self.code, self.subcode, self.data)


# --------------------------------------------------------------------------------------------
# Session context


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What decoding and encoding depend on: 4-octet AS numbers in AS_PATH/AGGREGATOR."""

    as4: bool = False


# --------------------------------------------------------------------------------------------
# OPEN and capabilities


@dataclass(frozen=True, slots=True)
class MultiprotocolCapability:
    """RFC 4760 section 8: code 1, AFI (2) reserved (1) SAFI (1)."""

    afi: int
    safi: int


@dataclass(frozen=True, slots=True)
class FourOctetAsCapability:
    """RFC 6793: code 65, the speaker's 4-octet AS number."""

    asn: int


@dataclass(frozen=True, slots=True)
class RouteRefreshCapability:
    """RFC 2918: code 2, no value."""


@dataclass(frozen=True, slots=True)
class UnknownCapability:
    """Any other capability, kept as received."""

    code: int
    value: bytes = b""


Capability: TypeAlias = (
    MultiprotocolCapability | FourOctetAsCapability | RouteRefreshCapability | UnknownCapability
)


def family_name(afi: int, safi: int) -> str:
    """``"IPv6 unicast"``; ``"AFI 25 SAFI 70"`` for unnamed ones."""
    if afi in AFI_NAMES and safi in SAFI_NAMES:
        return f"{AFI_NAMES[afi]} {SAFI_NAMES[safi]}"
    return f"AFI {afi} SAFI {safi}"


def capability_name(cap: Capability) -> str:
    """A capability as a log names it: ``"Multiprotocol IPv6 unicast"``, ``"4-octet AS 65000"``,
    ``"Graceful Restart (code 64)"``, ``"capability 99"``."""
    if isinstance(cap, MultiprotocolCapability):
        return f"Multiprotocol {family_name(cap.afi, cap.safi)}"
    if isinstance(cap, FourOctetAsCapability):
        return f"4-octet AS {cap.asn}"
    if isinstance(cap, RouteRefreshCapability):
        return "Route Refresh"
    name = CAPABILITY_NAMES.get(cap.code)
    return f"{name} (code {cap.code})" if name else f"capability {cap.code}"


def capability_code(cap: Capability) -> int:
    if isinstance(cap, MultiprotocolCapability):
        return C_MULTIPROTOCOL
    if isinstance(cap, FourOctetAsCapability):
        return C_FOUR_OCTET_AS
    if isinstance(cap, RouteRefreshCapability):
        return C_ROUTE_REFRESH
    return cap.code


def unsupported_capabilities(data: bytes) -> tuple[tuple[Capability, ...], bytes]:
    """The capabilities a NOTIFICATION 2/7 (Unsupported Capability) names in its data.

    RFC 5492 section 3: the data lists them "encoded in the same way as [in] the OPEN
    message" (code, length, value).  Never raises: returns the capabilities that decode and the
    bytes that do not (a truncated tail; kept for the log as hex).
    """
    caps: list[Capability] = []
    pos = 0
    while pos + 2 <= len(data):
        code, clen = data[pos], data[pos + 1]
        if pos + 2 + clen > len(data):
            break
        try:
            caps.extend(_decode_capabilities(data[pos : pos + 2 + clen]))
        except BgpError:  # a known code with an odd length: keep it, undecoded
            caps.append(UnknownCapability(code, bytes(data[pos + 2 : pos + 2 + clen])))
        pos += 2 + clen
    return tuple(caps), bytes(data[pos:])


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


SHUTDOWN_MAX = 255  # RFC 9003 (updates RFC 8203's 128)
# The Cease subcodes that carry an RFC 8203 shutdown communication (RFC 9003 section 2).
SHUTDOWN_SUBCODES: Final = frozenset(
    {CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, CeaseSubcode.ADMINISTRATIVE_RESET}
)
_UNSUPPORTED_CAPABILITY: Final = (ErrorCode.OPEN_MESSAGE_ERROR, OpenError.UNSUPPORTED_CAPABILITY)


@dataclass(frozen=True, slots=True)
class Notification:
    code: int
    subcode: int = 0
    data: bytes = b""

    @property
    def type_name(self) -> str:
        return "NOTIFICATION"

    @property
    def name(self) -> str:
        return error_name(self.code, self.subcode)

    @classmethod
    def shutdown(
        cls, message: str, subcode: int = CeaseSubcode.ADMINISTRATIVE_SHUTDOWN
    ) -> Notification:
        """Cease / Administrative Shutdown (or Reset, subcode 4) with an RFC 8203 message.

        The message is truncated to 255 octets of UTF-8 on a character boundary.
        """
        raw = message.encode("utf-8")
        if len(raw) > SHUTDOWN_MAX:
            raw = raw[:SHUTDOWN_MAX].decode("utf-8", "ignore").encode("utf-8")
        return cls(ErrorCode.CEASE, subcode, bytes([len(raw)]) + raw)

    @property
    def shutdown_message(self) -> str | None:
        """The RFC 8203 shutdown communication, if this carries one (else None).

        Invalid UTF-8 is shown with replacement characters (it is only for logs).
        """
        if self.code != ErrorCode.CEASE or self.subcode not in SHUTDOWN_SUBCODES or not self.data:
            return None
        n = self.data[0]
        if n == 0 or n > len(self.data) - 1:
            return None
        return self.data[1 : 1 + n].decode("utf-8", "replace")

    def describe(self) -> str:
        """Human-readable form for logs."""
        text = self.name
        msg = self.shutdown_message
        if msg is not None:
            text += f": {msg!r}"
        elif (self.code, self.subcode) == _UNSUPPORTED_CAPABILITY and self.data:
            caps, rest = unsupported_capabilities(self.data)
            text += ": " + ", ".join(capability_name(c) for c in caps)
            if rest:
                text += f"{', ' if caps else ''}undecodable data {rest[:32].hex()}"
        elif self.data:
            text += f" (data {self.data[:32].hex()}{'...' if len(self.data) > 32 else ''})"
        return text


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


def _prefix_bytes(net: IPv4Network | IPv6Network) -> bytes:
    plen = net.prefixlen
    return bytes([plen]) + net.network_address.packed[: (plen + 7) // 8]


def _encode_prefixes(nets: Iterable[IPv4Network | IPv6Network]) -> bytes:
    return b"".join(_prefix_bytes(n) for n in nets)


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


def _attr(flags: int, type_code: int, value: bytes, extended: bool = False) -> bytes:
    if extended or len(value) > 255:
        return struct.pack("!BBH", flags | F_EXTENDED, type_code, len(value)) + value
    return struct.pack("!BBB", flags & ~F_EXTENDED, type_code, len(value)) + value


def _encode_attribute(a: PathAttribute, ctx: SessionContext) -> bytes:
    if isinstance(a, Origin):
        return _attr(F_TRANSITIVE, A_ORIGIN, bytes([a.value]))
    if isinstance(a, AsPath):
        return _attr(F_TRANSITIVE, A_AS_PATH, _encode_segments(a.segments, ctx.as4))
    if isinstance(a, NextHop):
        return _attr(F_TRANSITIVE, A_NEXT_HOP, a.address.packed)
    if isinstance(a, Med):
        return _attr(F_OPTIONAL, A_MED, struct.pack("!I", a.value))
    if isinstance(a, LocalPref):
        return _attr(F_TRANSITIVE, A_LOCAL_PREF, struct.pack("!I", a.value))
    if isinstance(a, AtomicAggregate):
        return _attr(F_TRANSITIVE, A_ATOMIC_AGGREGATE, b"")
    if isinstance(a, Aggregator):
        asn = struct.pack("!I" if ctx.as4 else "!H", a.asn)
        return _attr(F_OPTIONAL | F_TRANSITIVE, A_AGGREGATOR, asn + a.address.packed)
    if isinstance(a, Communities):
        return _attr(
            F_OPTIONAL | F_TRANSITIVE, A_COMMUNITIES, struct.pack(f"!{len(a.values)}I", *a.values)
        )
    if isinstance(a, MpReachNlri):
        nh = b"".join(x.packed for x in a.next_hops)
        value = (
            struct.pack("!HBB", a.afi, a.safi, len(nh)) + nh + b"\x00" + _encode_prefixes(a.nlri)
        )
        return _attr(F_OPTIONAL, A_MP_REACH, value, extended=True)
    if isinstance(a, MpUnreachNlri):
        value = struct.pack("!HB", a.afi, a.safi) + _encode_prefixes(a.withdrawn)
        return _attr(F_OPTIONAL, A_MP_UNREACH, value, extended=True)
    if isinstance(a, As4Path):
        return _attr(F_OPTIONAL | F_TRANSITIVE, A_AS4_PATH, _encode_segments(a.segments, True))
    return _attr(a.flags, a.type_code, a.value)


def _encode_capability(c: Capability) -> bytes:
    if isinstance(c, MultiprotocolCapability):
        return struct.pack("!BBHBB", C_MULTIPROTOCOL, 4, c.afi, 0, c.safi)
    if isinstance(c, FourOctetAsCapability):
        return struct.pack("!BBI", C_FOUR_OCTET_AS, 4, c.asn)
    if isinstance(c, RouteRefreshCapability):
        return bytes([C_ROUTE_REFRESH, 0])
    return bytes([c.code, len(c.value)]) + c.value


def _encode_open(msg: Open, extended: bool = False) -> bytes:
    """An OPEN body.  The capabilities go into one Capabilities parameter (RFC 5492); when they
    exceed 255 octets, or with ``extended``, RFC 9072's encoding is used (one parameter with a
    2-octet length), otherwise RFC 4271's."""
    caps = b"".join(_encode_capability(c) for c in msg.capabilities)
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


def encode(msg: Message, ctx: SessionContext = SessionContext()) -> bytes:
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
    withdrawn = _encode_prefixes(msg.withdrawn)
    attrs = b"".join(_encode_attribute(a, ctx) for a in msg.attributes)
    body = (
        struct.pack("!H", len(withdrawn))
        + withdrawn
        + struct.pack("!H", len(attrs))
        + attrs
        + _encode_prefixes(msg.nlri)
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
        raise BgpError(
            ErrorCode.MESSAGE_HEADER_ERROR,
            HeaderError.BAD_MESSAGE_LENGTH,
            struct.pack("!H", HEADER_LEN + len(body)),
            "OPEN too short",
        )
    version, my_as, hold = struct.unpack_from("!BHH", body, 0)
    if version != BGP_VERSION:
        raise BgpError(
            ErrorCode.OPEN_MESSAGE_ERROR,
            OpenError.UNSUPPORTED_VERSION_NUMBER,
            struct.pack("!H", BGP_VERSION),
            f"BGP version {version}",
        )
    bgp_id = IPv4Address(body[5:9])
    opt_len = body[9]
    extended = opt_len != 0 and len(body) > 10 and body[10] == P_EXTENDED_LENGTH
    if extended:
        if len(body) < 13:
            raise BgpError(
                ErrorCode.OPEN_MESSAGE_ERROR,
                OpenError.UNSPECIFIC,
                b"",
                "extended optional parameters length truncated (RFC 9072)",
            )
        pos = 13
        if pos + struct.unpack_from("!H", body, 11)[0] != len(body):
            raise BgpError(
                ErrorCode.OPEN_MESSAGE_ERROR,
                OpenError.UNSPECIFIC,
                b"",
                "extended optional parameters length does not match the message",
            )
    else:
        pos = 10
        if pos + opt_len != len(body):
            raise BgpError(
                ErrorCode.OPEN_MESSAGE_ERROR,
                OpenError.UNSPECIFIC,
                b"",
                "optional parameters length does not match the message",
            )
    if hold in (1, 2):
        raise BgpError(
            ErrorCode.OPEN_MESSAGE_ERROR, OpenError.UNACCEPTABLE_HOLD_TIME, b"", f"hold time {hold}"
        )
    if int(bgp_id) == 0:
        raise BgpError(
            ErrorCode.OPEN_MESSAGE_ERROR,
            OpenError.BAD_BGP_IDENTIFIER,
            b"",
            "BGP identifier 0.0.0.0",
        )
    head = 3 if extended else 2
    caps: list[Capability] = []
    end = len(body)
    while pos < end:
        if pos + head > end:
            raise BgpError(
                ErrorCode.OPEN_MESSAGE_ERROR,
                OpenError.UNSPECIFIC,
                b"",
                "truncated optional parameter",
            )
        ptype = body[pos]
        plen = struct.unpack_from("!H", body, pos + 1)[0] if extended else body[pos + 1]
        pos += head
        if pos + plen > end:
            raise BgpError(
                ErrorCode.OPEN_MESSAGE_ERROR,
                OpenError.UNSPECIFIC,
                b"",
                "optional parameter overruns the OPEN",
            )
        if ptype != P_CAPABILITIES:
            raise BgpError(
                ErrorCode.OPEN_MESSAGE_ERROR,
                OpenError.UNSUPPORTED_OPTIONAL_PARAMETER,
                b"",
                f"optional parameter type {ptype}",
            )
        caps.extend(_decode_capabilities(body[pos : pos + plen]))
        pos += plen
    return Open(my_as, hold, bgp_id, tuple(caps), version, extended)


def _decode_capabilities(data: bytes) -> list[Capability]:
    out: list[Capability] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise BgpError(
                ErrorCode.OPEN_MESSAGE_ERROR, OpenError.UNSPECIFIC, b"", "truncated capability"
            )
        code, clen = data[pos], data[pos + 1]
        pos += 2
        value = data[pos : pos + clen]
        if len(value) != clen:
            raise BgpError(
                ErrorCode.OPEN_MESSAGE_ERROR,
                OpenError.UNSPECIFIC,
                b"",
                f"capability {code} overruns its parameter",
            )
        pos += clen
        if code == C_MULTIPROTOCOL:
            if clen != 4:
                raise BgpError(
                    ErrorCode.OPEN_MESSAGE_ERROR,
                    OpenError.UNSPECIFIC,
                    b"",
                    f"multiprotocol capability of length {clen}",
                )
            afi, _res, safi = struct.unpack("!HBB", value)
            out.append(MultiprotocolCapability(afi, safi))
        elif code == C_FOUR_OCTET_AS:
            if clen != 4:
                raise BgpError(
                    ErrorCode.OPEN_MESSAGE_ERROR,
                    OpenError.UNSPECIFIC,
                    b"",
                    f"4-octet AS capability of length {clen}",
                )
            out.append(FourOctetAsCapability(struct.unpack("!I", value)[0]))
        elif code == C_ROUTE_REFRESH and clen == 0:
            out.append(RouteRefreshCapability())
        else:
            out.append(UnknownCapability(code, value))
    return out


def _decode_prefixes_v4(data: bytes, err: BgpError) -> tuple[IPv4Network, ...]:
    out: list[IPv4Network] = []
    pos, end = 0, len(data)
    while pos < end:
        plen = data[pos]
        nbytes = (plen + 7) >> 3
        if plen > 32 or pos + 1 + nbytes > end:
            raise err
        raw = data[pos + 1 : pos + 1 + nbytes] + b"\x00" * (4 - nbytes)
        out.append(IPv4Network((raw, plen), strict=False))
        pos += 1 + nbytes
    return tuple(out)


def _decode_prefixes_v6(data: bytes, err: BgpError) -> tuple[IPv6Network, ...]:
    out: list[IPv6Network] = []
    pos, end = 0, len(data)
    while pos < end:
        plen = data[pos]
        nbytes = (plen + 7) >> 3
        if plen > 128 or pos + 1 + nbytes > end:
            raise err
        raw = data[pos + 1 : pos + 1 + nbytes] + b"\x00" * (16 - nbytes)
        out.append(IPv6Network((raw, plen), strict=False))
        pos += 1 + nbytes
    return tuple(out)


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


# (flags that must be set (optional, transitive) for each attribute we know)
_KNOWN_FLAGS: Final[dict[int, int]] = {
    A_ORIGIN: F_TRANSITIVE,
    A_AS_PATH: F_TRANSITIVE,
    A_NEXT_HOP: F_TRANSITIVE,
    A_MED: F_OPTIONAL,
    A_LOCAL_PREF: F_TRANSITIVE,
    A_ATOMIC_AGGREGATE: F_TRANSITIVE,
    A_AGGREGATOR: F_OPTIONAL | F_TRANSITIVE,
    A_COMMUNITIES: F_OPTIONAL | F_TRANSITIVE,
    A_MP_REACH: F_OPTIONAL,
    A_MP_UNREACH: F_OPTIONAL,
    A_AS4_PATH: F_OPTIONAL | F_TRANSITIVE,
}
# Errors in these attributes only discard the attribute (RFC 7606 7.6, 7.7; RFC 6793 6).
_DISCARD_ON_ERROR: Final = frozenset({A_ATOMIC_AGGREGATE, A_AGGREGATOR, A_AS4_PATH})
_MP_FAMILIES: Final = frozenset({(AFI_IPV4, SAFI_UNICAST), (AFI_IPV6, SAFI_UNICAST)})


def _bad_nexthop_v4(addr: IPv4Address) -> bool:
    return (
        addr.is_unspecified
        or addr.is_multicast
        or addr.is_loopback
        or int(addr) >= 0xF0000000  # class E and broadcast
    )


def _decode_update(body: bytes, ctx: SessionContext) -> Update:
    # Framing: withdrawn length and total attribute length must fit (session reset, 3/1).
    if len(body) < 4:
        raise BgpError(
            ErrorCode.MESSAGE_HEADER_ERROR,
            HeaderError.BAD_MESSAGE_LENGTH,
            struct.pack("!H", HEADER_LEN + len(body)),
            "UPDATE too short",
        )
    wlen = struct.unpack_from("!H", body, 0)[0]
    if 2 + wlen + 2 > len(body):
        raise BgpError(
            ErrorCode.UPDATE_MESSAGE_ERROR,
            UpdateError.MALFORMED_ATTRIBUTE_LIST,
            b"",
            "withdrawn routes length overruns the UPDATE",
        )
    alen = struct.unpack_from("!H", body, 2 + wlen)[0]
    if 4 + wlen + alen > len(body):
        raise BgpError(
            ErrorCode.UPDATE_MESSAGE_ERROR,
            UpdateError.MALFORMED_ATTRIBUTE_LIST,
            b"",
            "total path attribute length overruns the UPDATE",
        )
    withdrawn = _decode_prefixes_v4(
        body[2 : 2 + wlen],
        BgpError(
            ErrorCode.UPDATE_MESSAGE_ERROR,
            UpdateError.INVALID_NETWORK_FIELD,
            b"",
            "malformed withdrawn routes",
        ),
    )
    nlri = _decode_prefixes_v4(
        body[4 + wlen + alen :],
        BgpError(
            ErrorCode.UPDATE_MESSAGE_ERROR,
            UpdateError.INVALID_NETWORK_FIELD,
            b"",
            "malformed NLRI field",
        ),
    )
    attr_data = body[4 + wlen : 4 + wlen + alen]

    worst: BgpError | None = None

    def problem(err: BgpError) -> None:
        nonlocal worst
        if err.handling is Handling.SESSION_RESET:
            raise err
        if worst is None or _SEVERITY[err.handling] > _SEVERITY[worst.handling]:
            worst = err

    attrs: list[PathAttribute] = []
    seen: set[int] = set()
    pos, end = 0, len(attr_data)
    while pos < end:
        # RFC 7606 section 4: an attribute header or value that overruns the attribute list
        # is treat-as-withdraw; the Total Attribute Length locates the NLRI.
        if end - pos < 3 or (attr_data[pos] & F_EXTENDED and end - pos < 4):
            problem(
                BgpError(
                    ErrorCode.UPDATE_MESSAGE_ERROR,
                    UpdateError.MALFORMED_ATTRIBUTE_LIST,
                    b"",
                    "truncated attribute header",
                    Handling.TREAT_AS_WITHDRAW,
                )
            )
            break
        flags, tcode = attr_data[pos], attr_data[pos + 1]
        if flags & F_EXTENDED:
            vlen = struct.unpack_from("!H", attr_data, pos + 2)[0]
            hlen = 4
        else:
            vlen = attr_data[pos + 2]
            hlen = 3
        if pos + hlen + vlen > end:
            problem(
                BgpError(
                    ErrorCode.UPDATE_MESSAGE_ERROR,
                    UpdateError.MALFORMED_ATTRIBUTE_LIST,
                    b"",
                    f"attribute {tcode} overruns the list",
                    Handling.TREAT_AS_WITHDRAW,
                )
            )
            break
        raw = attr_data[pos : pos + hlen + vlen]
        value = attr_data[pos + hlen : pos + hlen + vlen]
        pos += hlen + vlen

        if tcode in seen:
            if tcode in (A_MP_REACH, A_MP_UNREACH):
                raise BgpError(
                    ErrorCode.UPDATE_MESSAGE_ERROR,
                    UpdateError.MALFORMED_ATTRIBUTE_LIST,
                    b"",
                    f"attribute {tcode} appears twice",
                )
            # RFC 7606 3(g): all but the first occurrence are discarded.
            problem(
                BgpError(
                    ErrorCode.UPDATE_MESSAGE_ERROR,
                    UpdateError.MALFORMED_ATTRIBUTE_LIST,
                    b"",
                    f"duplicate attribute {tcode}",
                    Handling.ATTRIBUTE_DISCARD,
                )
            )
            continue
        seen.add(tcode)

        handling = (
            Handling.ATTRIBUTE_DISCARD if tcode in _DISCARD_ON_ERROR else Handling.TREAT_AS_WITHDRAW
        )
        want = _KNOWN_FLAGS.get(tcode)
        if want is None:
            if not flags & F_OPTIONAL:
                raise BgpError(
                    ErrorCode.UPDATE_MESSAGE_ERROR,
                    UpdateError.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                    raw,
                    f"unrecognized well-known attribute {tcode}",
                )
            attrs.append(UnknownAttribute(flags & ~F_EXTENDED, tcode, value))
            continue
        if (flags & (F_OPTIONAL | F_TRANSITIVE)) != want or (
            not want & F_OPTIONAL and flags & F_PARTIAL
        ):
            problem(
                BgpError(
                    ErrorCode.UPDATE_MESSAGE_ERROR,
                    UpdateError.ATTRIBUTE_FLAGS_ERROR,
                    raw,
                    f"flags 0x{flags:02x} on attribute {tcode}",
                    handling,
                )
            )
            if tcode not in (A_MP_REACH, A_MP_UNREACH):
                continue
            # MP attributes are still parsed so their prefixes can be treated as withdrawn.

        def length_error(what: str, _raw: bytes = raw, _h: Handling = handling) -> None:
            problem(
                BgpError(
                    ErrorCode.UPDATE_MESSAGE_ERROR,
                    UpdateError.ATTRIBUTE_LENGTH_ERROR,
                    _raw,
                    what,
                    _h,
                )
            )

        if tcode == A_ORIGIN:
            if vlen != 1:
                length_error(f"ORIGIN of length {vlen}")
            elif value[0] > 2:
                problem(
                    BgpError(
                        ErrorCode.UPDATE_MESSAGE_ERROR,
                        UpdateError.INVALID_ORIGIN_ATTRIBUTE,
                        raw,
                        f"ORIGIN {value[0]}",
                        handling,
                    )
                )
            else:
                attrs.append(Origin(value[0]))
        elif tcode == A_AS_PATH:
            segs = _decode_segments(value, 4 if ctx.as4 else 2)
            if segs is None:
                problem(
                    BgpError(
                        ErrorCode.UPDATE_MESSAGE_ERROR,
                        UpdateError.MALFORMED_AS_PATH,
                        b"",
                        "malformed AS_PATH",
                        handling,
                    )
                )
            else:
                attrs.append(AsPath(segs))
        elif tcode == A_NEXT_HOP:
            if vlen != 4:
                length_error(f"NEXT_HOP of length {vlen}")
            else:
                addr = IPv4Address(value)
                if _bad_nexthop_v4(addr):  # syntactically fine: kept in the attached update
                    problem(
                        BgpError(
                            ErrorCode.UPDATE_MESSAGE_ERROR,
                            UpdateError.INVALID_NEXT_HOP_ATTRIBUTE,
                            raw,
                            f"NEXT_HOP {addr}",
                            handling,
                        )
                    )
                attrs.append(NextHop(addr))
        elif tcode in (A_MED, A_LOCAL_PREF):
            if vlen != 4:
                length_error(f"attribute {tcode} of length {vlen}")
            else:
                v = struct.unpack("!I", value)[0]
                attrs.append(Med(v) if tcode == A_MED else LocalPref(v))
        elif tcode == A_ATOMIC_AGGREGATE:
            if vlen != 0:
                length_error(f"ATOMIC_AGGREGATE of length {vlen}")
            else:
                attrs.append(AtomicAggregate())
        elif tcode == A_AGGREGATOR:
            width = 4 if ctx.as4 else 2
            if vlen != width + 4:
                length_error(f"AGGREGATOR of length {vlen}")
            else:
                asn = int.from_bytes(value[:width], "big")
                attrs.append(Aggregator(asn, IPv4Address(value[width:])))
        elif tcode == A_COMMUNITIES:
            if vlen == 0 or vlen % 4:
                length_error(f"COMMUNITIES of length {vlen}")
            else:
                attrs.append(Communities(struct.unpack(f"!{vlen // 4}I", value)))
        elif tcode == A_AS4_PATH:
            segs = _decode_segments(value, 4)
            if segs is None:
                problem(
                    BgpError(
                        ErrorCode.UPDATE_MESSAGE_ERROR,
                        UpdateError.OPTIONAL_ATTRIBUTE_ERROR,
                        raw,
                        "malformed AS4_PATH",
                        Handling.ATTRIBUTE_DISCARD,
                    )
                )
            else:
                attrs.append(As4Path(segs))
        elif tcode == A_MP_REACH:
            attrs.append(_decode_mp_reach(flags, value, raw))
        elif tcode == A_MP_UNREACH:
            attrs.append(_decode_mp_unreach(flags, value, raw))

    update = Update(withdrawn, tuple(attrs), nlri)
    # Mandatory well-known attributes (RFC 4271 5.1.2; RFC 7606 3(d): treat-as-withdraw).
    has_mp_reach = A_MP_REACH in seen
    if nlri or has_mp_reach:
        needed = [A_ORIGIN, A_AS_PATH] + ([A_NEXT_HOP] if nlri else [])
        for tcode in needed:
            if tcode not in seen:
                problem(
                    BgpError(
                        ErrorCode.UPDATE_MESSAGE_ERROR,
                        UpdateError.MISSING_WELL_KNOWN_ATTRIBUTE,
                        bytes([tcode]),
                        f"missing well-known attribute {tcode}",
                        Handling.TREAT_AS_WITHDRAW,
                    )
                )
                break
    if worst is not None:
        worst.update = update
        raise worst
    return update


def _decode_mp_reach(flags: int, value: bytes, raw: bytes) -> PathAttribute:
    err = BgpError(
        ErrorCode.UPDATE_MESSAGE_ERROR,
        UpdateError.OPTIONAL_ATTRIBUTE_ERROR,
        raw,
        "malformed MP_REACH_NLRI",
    )
    if len(value) < 5:
        raise err
    afi, safi, nhlen = struct.unpack_from("!HBB", value, 0)
    if 4 + nhlen + 1 > len(value):
        raise err
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
        raise BgpError(
            ErrorCode.UPDATE_MESSAGE_ERROR,
            UpdateError.OPTIONAL_ATTRIBUTE_ERROR,
            raw,
            f"MP_REACH_NLRI next hop of length {nhlen}",
        )
    rest = value[4 + nhlen + 1 :]
    nlri: tuple[IPv4Network | IPv6Network, ...]
    nlri = _decode_prefixes_v4(rest, err) if afi == AFI_IPV4 else _decode_prefixes_v6(rest, err)
    return MpReachNlri(afi, safi, hops, nlri)


def _decode_mp_unreach(flags: int, value: bytes, raw: bytes) -> PathAttribute:
    err = BgpError(
        ErrorCode.UPDATE_MESSAGE_ERROR,
        UpdateError.OPTIONAL_ATTRIBUTE_ERROR,
        raw,
        "malformed MP_UNREACH_NLRI",
    )
    if len(value) < 3:
        raise err
    afi, safi = struct.unpack_from("!HB", value, 0)
    if (afi, safi) not in _MP_FAMILIES:
        return UnknownAttribute(flags & ~F_EXTENDED, A_MP_UNREACH, value)
    rest = value[3:]
    wd: tuple[IPv4Network | IPv6Network, ...]
    wd = _decode_prefixes_v4(rest, err) if afi == AFI_IPV4 else _decode_prefixes_v6(rest, err)
    return MpUnreachNlri(afi, safi, wd)


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

    def __init__(self, ctx: SessionContext = SessionContext()) -> None:
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
                raise BgpError(
                    ErrorCode.MESSAGE_HEADER_ERROR,
                    HeaderError.CONNECTION_NOT_SYNCHRONIZED,
                    b"",
                    "marker is not all ones",
                )
            length = (buf[16] << 8) | buf[17]
            mtype = buf[18]
            if length < HEADER_LEN or length > MAX_MESSAGE_LEN:
                raise BgpError(
                    ErrorCode.MESSAGE_HEADER_ERROR,
                    HeaderError.BAD_MESSAGE_LENGTH,
                    bytes(buf[16:18]),
                    f"length {length}",
                )
            if mtype not in _MIN_LEN:
                raise BgpError(
                    ErrorCode.MESSAGE_HEADER_ERROR,
                    HeaderError.BAD_MESSAGE_TYPE,
                    bytes([mtype]),
                    f"message type {mtype}",
                )
            if length < _MIN_LEN[mtype] or (mtype == T_KEEPALIVE and length != HEADER_LEN):
                raise BgpError(
                    ErrorCode.MESSAGE_HEADER_ERROR,
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


# --------------------------------------------------------------------------------------------
# Building our own UPDATEs


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """How we describe our routes to one peer.

    eBGP: AS_PATH = [local_as] (AS_TRANS + AS4_PATH towards a 2-octet peer if local_as > 65535).
    iBGP: empty AS_PATH and LOCAL_PREF 100.  ORIGIN IGP always.
    """

    local_as: int
    ebgp: bool
    as4: bool
    local_pref: int = 100
    med: int | None = None
    communities: tuple[int, ...] = field(default=())

    @property
    def ctx(self) -> SessionContext:
        return SessionContext(as4=self.as4)

    def graceful_shutdown(self) -> OutboundPolicy:
        """This policy while the routes drain before a planned stop (RFC 8326 section 4): the
        GRACEFUL_SHUTDOWN community 65535:0 appended and, towards iBGP peers, LOCAL_PREF 0 (so
        an iBGP router prefers any other path without a policy of its own)."""
        comms = self.communities
        if GRACEFUL_SHUTDOWN not in comms:
            comms = (*comms, GRACEFUL_SHUTDOWN)
        return replace(self, communities=comms, local_pref=0 if not self.ebgp else self.local_pref)

    def attributes(self) -> list[PathAttribute]:
        """Path attributes common to every route (no NEXT_HOP / MP_REACH), by type code."""
        out: list[PathAttribute] = [Origin(Origin.IGP)]
        as4_path: As4Path | None = None
        if self.ebgp:
            if self.as4 or self.local_as <= 0xFFFF:
                out.append(AsPath((AsPathSegment(AsPathSegment.AS_SEQUENCE, (self.local_as,)),)))
            else:
                out.append(AsPath((AsPathSegment(AsPathSegment.AS_SEQUENCE, (AS_TRANS,)),)))
                as4_path = As4Path((AsPathSegment(AsPathSegment.AS_SEQUENCE, (self.local_as,)),))
        else:
            out.append(AsPath(()))
        if self.med is not None:
            out.append(Med(self.med))
        if not self.ebgp:
            out.append(LocalPref(self.local_pref))
        if self.communities:
            out.append(Communities(self.communities))
        if as4_path is not None:
            out.append(as4_path)
        return out

    def encoded_attributes(self, next_hop: IPv4Address | None = None) -> bytes:
        attrs = self.attributes()
        if next_hop is not None:
            attrs.insert(2, NextHop(next_hop))
        return b"".join(_encode_attribute(a, self.ctx) for a in attrs)


def _pack(chunks: Sequence[bytes], budget: int) -> list[bytes]:
    """Group encoded prefixes so each group's total length stays within budget."""
    groups: list[bytes] = []
    cur: list[bytes] = []
    size = 0
    for c in chunks:
        if size + len(c) > budget and cur:
            groups.append(b"".join(cur))
            cur, size = [], 0
        cur.append(c)
        size += len(c)
    if cur:
        groups.append(b"".join(cur))
    return groups


_UPDATE_FIXED = HEADER_LEN + 4  # header + withdrawn length + total attribute length


def _update_bytes(withdrawn: bytes, attrs: bytes, nlri: bytes) -> bytes:
    length = _UPDATE_FIXED + len(withdrawn) + len(attrs) + len(nlri)
    return b"".join(
        (
            MARKER,
            struct.pack("!HBH", length, T_UPDATE, len(withdrawn)),
            withdrawn,
            struct.pack("!H", len(attrs)),
            attrs,
            nlri,
        )
    )


def announce_ipv4(
    prefixes: Iterable[IPv4Network], next_hop: IPv4Address, policy: OutboundPolicy
) -> list[bytes]:
    """UPDATEs announcing IPv4 prefixes in the NLRI field with NEXT_HOP, packed full."""
    attrs = policy.encoded_attributes(next_hop)
    budget = MAX_MESSAGE_LEN - _UPDATE_FIXED - len(attrs)
    return [
        _update_bytes(b"", attrs, g) for g in _pack([_prefix_bytes(p) for p in prefixes], budget)
    ]


def withdraw_ipv4(prefixes: Iterable[IPv4Network]) -> list[bytes]:
    """UPDATEs withdrawing IPv4 prefixes (Withdrawn Routes field), packed full."""
    budget = MAX_MESSAGE_LEN - _UPDATE_FIXED
    return [_update_bytes(g, b"", b"") for g in _pack([_prefix_bytes(p) for p in prefixes], budget)]


def announce_mp(
    prefixes: Iterable[IPv4Network | IPv6Network],
    afi: int,
    next_hops: Sequence[IPv4Address | IPv6Address],
    policy: OutboundPolicy,
) -> list[bytes]:
    """UPDATEs announcing prefixes of one family via MP_REACH_NLRI."""
    common = policy.attributes()
    head = _encode_attribute(common[0], policy.ctx) + _encode_attribute(common[1], policy.ctx)
    tail = b"".join(_encode_attribute(a, policy.ctx) for a in common[2:])
    nh = b"".join(a.packed for a in next_hops)
    mp_fixed = struct.pack("!HBB", afi, SAFI_UNICAST, len(nh)) + nh + b"\x00"
    budget = MAX_MESSAGE_LEN - _UPDATE_FIXED - len(head) - len(tail) - 4 - len(mp_fixed)
    out = []
    for g in _pack([_prefix_bytes(p) for p in prefixes], budget):
        value = mp_fixed + g
        mp = struct.pack("!BBH", F_OPTIONAL | F_EXTENDED, A_MP_REACH, len(value)) + value
        # Attribute order by type code: ORIGIN, AS_PATH, [MED, LOCAL_PREF, COMMUNITIES] MP_REACH
        # (14) comes after those and before AS4_PATH (17).
        pre = [a for a in common[2:] if not isinstance(a, As4Path)]
        post = [a for a in common[2:] if isinstance(a, As4Path)]
        attrs = (
            head
            + b"".join(_encode_attribute(a, policy.ctx) for a in pre)
            + mp
            + b"".join(_encode_attribute(a, policy.ctx) for a in post)
        )
        out.append(_update_bytes(b"", attrs, b""))
    return out


def announce_ipv6(
    prefixes: Iterable[IPv6Network],
    next_hop: IPv6Address,
    policy: OutboundPolicy,
    link_local: IPv6Address | None = None,
) -> list[bytes]:
    """UPDATEs announcing IPv6 prefixes via MP_REACH_NLRI (global [+ link-local] next hop)."""
    hops: list[IPv4Address | IPv6Address] = [next_hop]
    if link_local is not None:
        hops.append(link_local)
    return announce_mp(prefixes, AFI_IPV6, hops, policy)


def withdraw_mp(prefixes: Iterable[IPv4Network | IPv6Network], afi: int) -> list[bytes]:
    fixed = struct.pack("!HB", afi, SAFI_UNICAST)
    budget = MAX_MESSAGE_LEN - _UPDATE_FIXED - 4 - len(fixed)
    out = []
    for g in _pack([_prefix_bytes(p) for p in prefixes], budget):
        value = fixed + g
        attr = struct.pack("!BBH", F_OPTIONAL | F_EXTENDED, A_MP_UNREACH, len(value)) + value
        out.append(_update_bytes(b"", attr, b""))
    return out


def withdraw_ipv6(prefixes: Iterable[IPv6Network]) -> list[bytes]:
    """UPDATEs withdrawing IPv6 prefixes via MP_UNREACH_NLRI."""
    return withdraw_mp(prefixes, AFI_IPV6)
