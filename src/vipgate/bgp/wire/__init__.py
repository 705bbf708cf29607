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

The modules, for a reader:

* :mod:`~vipgate.bgp.wire.notification`: error codes and subcodes (IntEnums), :class:`BgpError`,
  :class:`Handling`, the NOTIFICATION message.
* :mod:`~vipgate.bgp.wire.capabilities`: OPEN capabilities and address families.
* :mod:`~vipgate.bgp.wire.attributes`: path attributes, and the per-type table (flags, length
  rule, decoder, encoder, RFC 7606 handling) that the UPDATE decoder dispatches through.
* :mod:`~vipgate.bgp.wire.messages`: the messages, :func:`encode`, framing and :class:`Decoder`.
* :mod:`~vipgate.bgp.wire.updates`: building our own UPDATEs.

Everything is importable from this package as before (``from vipgate.bgp.wire import X``).
"""

from __future__ import annotations

from vipgate.bgp.wire.attributes import (
    A_AGGREGATOR,
    A_AS4_PATH,
    A_AS_PATH,
    A_ATOMIC_AGGREGATE,
    A_COMMUNITIES,
    A_LOCAL_PREF,
    A_MED,
    A_MP_REACH,
    A_MP_UNREACH,
    A_NEXT_HOP,
    A_ORIGIN,
    AS_TRANS,
    ATTRIBUTES,
    F_EXTENDED,
    F_OPTIONAL,
    F_PARTIAL,
    F_TRANSITIVE,
    GRACEFUL_SHUTDOWN,
    Aggregator,
    As4Path,
    AsPath,
    AsPathSegment,
    AtomicAggregate,
    AttributeType,
    Communities,
    LocalPref,
    Med,
    MpReachNlri,
    MpUnreachNlri,
    NextHop,
    Origin,
    PathAttribute,
    SessionContext,
    UnknownAttribute,
    encode_attribute,
)
from vipgate.bgp.wire.capabilities import (
    AFI_IPV4,
    AFI_IPV6,
    AFI_NAMES,
    C_FOUR_OCTET_AS,
    C_MULTIPROTOCOL,
    C_ROUTE_REFRESH,
    CAPABILITY_NAMES,
    SAFI_NAMES,
    SAFI_UNICAST,
    Capability,
    FourOctetAsCapability,
    MultiprotocolCapability,
    RouteRefreshCapability,
    UnknownCapability,
    capability_code,
    capability_name,
    encode_capability,
    family_name,
    unsupported_capabilities,
)
from vipgate.bgp.wire.messages import (
    BGP_VERSION,
    HEADER_LEN,
    MARKER,
    MAX_MESSAGE_LEN,
    MESSAGE_TYPE_NAMES,
    P_CAPABILITIES,
    P_EXTENDED_LENGTH,
    T_KEEPALIVE,
    T_NOTIFICATION,
    T_OPEN,
    T_ROUTE_REFRESH,
    T_UPDATE,
    Decoder,
    Keepalive,
    Message,
    Open,
    RouteRefresh,
    Update,
    decode_message,
    encode,
    encode_open_extended,
)
from vipgate.bgp.wire.notification import (
    ERROR_NAMES,
    SHUTDOWN_MAX,
    SHUTDOWN_SUBCODES,
    SUBCODE_NAMES,
    BgpError,
    CeaseSubcode,
    ErrorCode,
    FsmError,
    Handling,
    HeaderError,
    Notification,
    OpenError,
    RouteRefreshError,
    UpdateError,
    error_name,
)
from vipgate.bgp.wire.updates import (
    DEPREFER_PREPEND,
    OutboundPolicy,
    announce_ipv4,
    announce_ipv6,
    announce_mp,
    withdraw_ipv4,
    withdraw_ipv6,
    withdraw_mp,
)

# The names the single-module codec had for its encoders (tests build raw capabilities with it).
_encode_capability = encode_capability
_encode_attribute = encode_attribute

__all__ = [
    "AFI_IPV4",
    "AFI_IPV6",
    "AFI_NAMES",
    "AS_TRANS",
    "ATTRIBUTES",
    "A_AGGREGATOR",
    "A_AS4_PATH",
    "A_AS_PATH",
    "A_ATOMIC_AGGREGATE",
    "A_COMMUNITIES",
    "A_LOCAL_PREF",
    "A_MED",
    "A_MP_REACH",
    "A_MP_UNREACH",
    "A_NEXT_HOP",
    "A_ORIGIN",
    "BGP_VERSION",
    "CAPABILITY_NAMES",
    "C_FOUR_OCTET_AS",
    "C_MULTIPROTOCOL",
    "C_ROUTE_REFRESH",
    "DEPREFER_PREPEND",
    "ERROR_NAMES",
    "F_EXTENDED",
    "F_OPTIONAL",
    "F_PARTIAL",
    "F_TRANSITIVE",
    "GRACEFUL_SHUTDOWN",
    "HEADER_LEN",
    "MARKER",
    "MAX_MESSAGE_LEN",
    "MESSAGE_TYPE_NAMES",
    "P_CAPABILITIES",
    "P_EXTENDED_LENGTH",
    "SAFI_NAMES",
    "SAFI_UNICAST",
    "SHUTDOWN_MAX",
    "SHUTDOWN_SUBCODES",
    "SUBCODE_NAMES",
    "T_KEEPALIVE",
    "T_NOTIFICATION",
    "T_OPEN",
    "T_ROUTE_REFRESH",
    "T_UPDATE",
    "Aggregator",
    "As4Path",
    "AsPath",
    "AsPathSegment",
    "AtomicAggregate",
    "AttributeType",
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
    "announce_mp",
    "capability_code",
    "capability_name",
    "decode_message",
    "encode",
    "encode_attribute",
    "encode_capability",
    "encode_open_extended",
    "error_name",
    "family_name",
    "unsupported_capabilities",
    "withdraw_ipv4",
    "withdraw_ipv6",
    "withdraw_mp",
]
