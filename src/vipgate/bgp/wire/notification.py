"""NOTIFICATION (RFC 4271 sections 4.5 and 6): error codes and subcodes, the error every
decoder raises, and the message itself.

Codes and subcodes are IntEnums (RFC 4271 4.5 and 6.1-6.3, RFC 6608 for the FSM error, RFC 4486
and RFC 9384 for Cease, RFC 7313 5 for ROUTE-REFRESH); they compare equal to the octets on the
wire, and a received NOTIFICATION keeps the plain integers (a peer may send codes we do not know).

:class:`BgpError` carries the NOTIFICATION the RFCs name for a protocol error and a
:class:`Handling` that says what RFC 7606 asks of the receiver (see the package docstring).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from vipgate.bgp.wire.capabilities import capability_name, unsupported_capabilities

if TYPE_CHECKING:
    from vipgate.bgp.wire.messages import Update

__all__ = [
    "ERROR_NAMES",
    "SHUTDOWN_MAX",
    "SHUTDOWN_SUBCODES",
    "SUBCODE_NAMES",
    "BgpError",
    "CeaseSubcode",
    "ErrorCode",
    "FsmError",
    "Handling",
    "HeaderError",
    "Notification",
    "OpenError",
    "RouteRefreshError",
    "UpdateError",
    "error_name",
    "header_error",
    "open_error",
    "update_error",
]


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

    @property
    def severity(self) -> int:
        """A message-level error wins over treat-as-withdraw, which wins over attribute-discard."""
        return _SEVERITY[self]


_SEVERITY: Final = {
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


def header_error(subcode: HeaderError, data: bytes, reason: str) -> BgpError:
    """A Message Header Error (RFC 4271 section 6.1): always a session reset."""
    return BgpError(ErrorCode.MESSAGE_HEADER_ERROR, subcode, data, reason)


def open_error(subcode: OpenError, reason: str, data: bytes = b"") -> BgpError:
    """An OPEN Message Error (RFC 4271 section 6.2): always a session reset."""
    return BgpError(ErrorCode.OPEN_MESSAGE_ERROR, subcode, data, reason)


def update_error(
    subcode: UpdateError,
    data: bytes,
    reason: str,
    handling: Handling = Handling.SESSION_RESET,
) -> BgpError:
    """An UPDATE Message Error (RFC 4271 section 6.3) with the RFC 7606 handling."""
    return BgpError(ErrorCode.UPDATE_MESSAGE_ERROR, subcode, data, reason, handling)


# --------------------------------------------------------------------------------------------
# The message


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
