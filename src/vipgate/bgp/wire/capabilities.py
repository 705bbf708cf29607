"""Capabilities in the OPEN message (RFC 5492), and the address families they name.

Known capabilities (Multiprotocol, RFC 4760 section 8; Route Refresh, RFC 2918; 4-octet AS,
RFC 6793) decode to their own dataclasses, any other to :class:`UnknownCapability` kept as
received.  The same encoding lists the capabilities a NOTIFICATION OPEN Message Error /
Unsupported Capability names (RFC 5492 section 3).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, TypeAlias

__all__ = [
    "AFI_IPV4",
    "AFI_IPV6",
    "SAFI_UNICAST",
    "Capability",
    "CapabilityError",
    "FourOctetAsCapability",
    "MultiprotocolCapability",
    "RouteRefreshCapability",
    "UnknownCapability",
    "capability_code",
    "capability_name",
    "decode_capabilities",
    "encode_capability",
    "family_name",
    "unsupported_capabilities",
]

AFI_IPV4: Final = 1
AFI_IPV6: Final = 2
SAFI_UNICAST: Final = 1

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
            caps.extend(decode_capabilities(data[pos : pos + 2 + clen]))
        except CapabilityError:  # a known code with an odd length: keep it, undecoded
            caps.append(UnknownCapability(code, bytes(data[pos + 2 : pos + 2 + clen])))
        pos += 2 + clen
    return tuple(caps), bytes(data[pos:])


def encode_capability(c: Capability) -> bytes:
    if isinstance(c, MultiprotocolCapability):
        return struct.pack("!BBHBB", C_MULTIPROTOCOL, 4, c.afi, 0, c.safi)
    if isinstance(c, FourOctetAsCapability):
        return struct.pack("!BBI", C_FOUR_OCTET_AS, 4, c.asn)
    if isinstance(c, RouteRefreshCapability):
        return bytes([C_ROUTE_REFRESH, 0])
    return bytes([c.code, len(c.value)]) + c.value


class CapabilityError(ValueError):
    """A capability that does not decode (the OPEN decoder answers OPEN Message Error /
    Unspecific: RFC 5492 section 3 names no subcode for it)."""


def decode_capabilities(data: bytes) -> list[Capability]:
    """The capabilities in one Capabilities optional parameter's value (RFC 5492 section 4)."""
    out: list[Capability] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise CapabilityError("truncated capability")
        code, clen = data[pos], data[pos + 1]
        pos += 2
        value = data[pos : pos + clen]
        if len(value) != clen:
            raise CapabilityError(f"capability {code} overruns its parameter")
        pos += clen
        if code == C_MULTIPROTOCOL:
            if clen != 4:
                raise CapabilityError(f"multiprotocol capability of length {clen}")
            afi, _res, safi = struct.unpack("!HBB", value)
            out.append(MultiprotocolCapability(afi, safi))
        elif code == C_FOUR_OCTET_AS:
            if clen != 4:
                raise CapabilityError(f"4-octet AS capability of length {clen}")
            out.append(FourOctetAsCapability(struct.unpack("!I", value)[0]))
        elif code == C_ROUTE_REFRESH and clen == 0:
            out.append(RouteRefreshCapability())
        else:
            out.append(UnknownCapability(code, value))
    return out
