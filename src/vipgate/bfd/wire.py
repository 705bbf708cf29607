"""BFD Control packet codec, sans-I/O (RFC 5880 sections 4.1 and 6.8.6).

A :class:`ControlPacket` is a small frozen dataclass; :func:`encode` turns one into the 24 octets
of a Control packet without authentication, :func:`decode` turns a UDP payload into one or raises
:class:`Discard` naming the RFC 5880 section 6.8.6 rule that drops it.  The checks that need only
the packet are made here, in the RFC's order:

1. version is not 1;
2. Length is below 24 (26 with the A bit);
3. Length is above the UDP payload;
4. Detect Mult is 0;
5. the Multipoint (M) bit is set;
6. My Discriminator is 0;
7. Your Discriminator is 0 and State is neither Down nor AdminDown;
8. the A bit is set and no authentication is in use (vipgate never uses it: RFC 5880 6.7 makes
   it optional, and kube-vip/GoBGP offer none), so a packet with the A bit is dropped.

The checks that need a session (Your Discriminator selects none; the A bit *clear* when the
session uses authentication, which never happens here) are in :mod:`vipgate.bfd.fsm` and
:mod:`vipgate.bfd.demux`.  Intervals are in microseconds, as on the wire.
"""

from __future__ import annotations

import enum
import struct
from typing import Final, NamedTuple

__all__ = [
    "BFD_VERSION",
    "PACKET_LEN",
    "ControlPacket",
    "Diag",
    "Discard",
    "State",
    "decode",
    "encode",
]

BFD_VERSION: Final = 1
PACKET_LEN: Final = 24  # mandatory section only (no authentication)
AUTH_MIN_LEN: Final = 26  # with the A bit: the mandatory section plus at least 2 octets of auth
MAX_U32: Final = 0xFFFFFFFF
_FMT: Final = struct.Struct("!BBBBIIIII")

_P, _F, _C, _A, _D, _M = 0x20, 0x10, 0x08, 0x04, 0x02, 0x01


class State(enum.IntEnum):
    """bfd.SessionState values (RFC 5880 4.1 / 6.2)."""

    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3

    @property
    def label(self) -> str:
        return _STATE_LABELS[self]


_STATE_LABELS: Final = {
    State.ADMIN_DOWN: "AdminDown",
    State.DOWN: "Down",
    State.INIT: "Init",
    State.UP: "Up",
}


class Diag(enum.IntEnum):
    """Diagnostic codes (RFC 5880 4.1; 9 from RFC 6428)."""

    NONE = 0
    CONTROL_DETECTION_TIME_EXPIRED = 1
    ECHO_FUNCTION_FAILED = 2
    NEIGHBOR_SIGNALED_SESSION_DOWN = 3
    FORWARDING_PLANE_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMINISTRATIVELY_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8
    MIS_CONNECTIVITY_DEFECT = 9

    @property
    def label(self) -> str:
        """snake_case name for metrics labels, e.g. ``control_detection_time_expired``."""
        return self.name.lower()


def diag_label(code: int) -> str:
    """Label of a diagnostic code; unassigned codes (10..31) are ``unassigned_<n>``."""
    try:
        return Diag(code).label
    except ValueError:
        return f"unassigned_{code}"


class Discard(Exception):
    """The packet is discarded (RFC 5880 6.8.6); ``rule`` names the check, ``str()`` says why."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule


class ControlPacket(NamedTuple):
    """One BFD Control packet.  Intervals in microseconds; discriminators 32-bit.

    ``diag`` is an int (0..31) so that unassigned codes from a peer survive decoding.  A
    NamedTuple rather than a frozen dataclass: one is built for every packet sent and received,
    and a tuple is several times cheaper to build (the budget is CPU per minute per peer).
    """

    state: State
    my_discr: int
    your_discr: int = 0
    detect_mult: int = 3
    desired_min_tx: int = 1_000_000
    required_min_rx: int = 1_000_000
    required_min_echo_rx: int = 0
    diag: int = 0
    poll: bool = False
    final: bool = False
    cpi: bool = False  # Control Plane Independent (C)
    demand: bool = False
    auth: bool = False  # A bit (never set by us)
    multipoint: bool = False  # M bit (always 0)
    version: int = BFD_VERSION

    def describe(self) -> str:
        flags = "".join(f for f, on in (("P", self.poll), ("F", self.final)) if on)
        return (
            f"{self.state.label} diag {diag_label(self.diag)} my {self.my_discr:#x} "
            f"your {self.your_discr:#x} mult {self.detect_mult} tx {self.desired_min_tx} us "
            f"rx {self.required_min_rx} us{' ' + flags if flags else ''}"
        )


def encode(p: ControlPacket) -> bytes:
    """24 octets (RFC 5880 4.1).  Raises ValueError for values that do not fit their field."""
    if not 0 <= p.diag <= 31 or not 0 <= p.version <= 7:
        raise ValueError("diag is 0..31, version 0..7")
    if not 0 <= p.detect_mult <= 255:
        raise ValueError("detect multiplier is 0..255")
    for v in (p.my_discr, p.your_discr, p.desired_min_tx, p.required_min_rx):
        if not 0 <= v <= MAX_U32:
            raise ValueError("discriminators and intervals are 32-bit")
    if not 0 <= p.required_min_echo_rx <= MAX_U32:
        raise ValueError("intervals are 32-bit")
    flags = (
        (_P if p.poll else 0)
        | (_F if p.final else 0)
        | (_C if p.cpi else 0)
        | (_A if p.auth else 0)
        | (_D if p.demand else 0)
        | (_M if p.multipoint else 0)
    )
    return _FMT.pack(
        (p.version << 5) | p.diag,
        (int(p.state) << 6) | flags,
        p.detect_mult,
        PACKET_LEN,
        p.my_discr,
        p.your_discr,
        p.desired_min_tx,
        p.required_min_rx,
        p.required_min_echo_rx,
    )


def decode(data: bytes, *, auth_in_use: bool = False) -> ControlPacket:
    """Parse one UDP payload; raise :class:`Discard` for every RFC 5880 6.8.6 packet check.

    ``auth_in_use`` is bfd.AuthType != 0 for the receiving session (always False in vipgate).
    """
    if len(data) < 4:
        raise Discard("length", f"payload of {len(data)} octets is shorter than a BFD header")
    version = data[0] >> 5
    if version != BFD_VERSION:
        raise Discard("version", f"version {version}, expected {BFD_VERSION}")
    flags = data[1]
    a_bit = bool(flags & _A)
    length = data[3]
    minimum = AUTH_MIN_LEN if a_bit else PACKET_LEN
    if length < minimum:
        raise Discard("length", f"Length {length} below {minimum}")
    if length > len(data):
        raise Discard("length", f"Length {length} above the UDP payload of {len(data)} octets")
    vd, sf, mult, _, my, your, tx, rx, echo = _FMT.unpack_from(data)
    if mult == 0:
        raise Discard("detect_mult", "Detect Mult is 0")
    if flags & _M:
        raise Discard("multipoint", "Multipoint (M) bit set")
    if my == 0:
        raise Discard("my_discriminator", "My Discriminator is 0")
    state = State(sf >> 6)
    if your == 0 and state not in (State.DOWN, State.ADMIN_DOWN):
        raise Discard("your_discriminator", f"Your Discriminator is 0 in state {state.label}")
    if a_bit and not auth_in_use:
        raise Discard("auth", "A bit set but no authentication in use")
    if not a_bit and auth_in_use:
        raise Discard("auth", "A bit clear but authentication in use")
    return ControlPacket(
        state=state,
        my_discr=my,
        your_discr=your,
        detect_mult=mult,
        desired_min_tx=tx,
        required_min_rx=rx,
        required_min_echo_rx=echo,
        diag=vd & 0x1F,
        poll=bool(flags & _P),
        final=bool(flags & _F),
        cpi=bool(flags & _C),
        demand=bool(flags & _D),
        auth=a_bit,
        multipoint=False,
        version=version,
    )
