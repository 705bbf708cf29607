"""BFD-to-BGP coupling, sans-I/O: when a BGP session with BFD may run (RFC 5882 section 4.3).

Rules this module keeps
-----------------------
1. It never does I/O and has no clock: the owner tells it that the session is wanted
   (:meth:`BfdCoupling.start` / :meth:`BfdCoupling.stop`) and that BFD went Up or Down
   (:meth:`BfdCoupling.bfd_changed`); it returns the fsm events to feed the BGP session.
2. BFD Down tears a wanted session down at once with Cease / BFD Down (RFC 9384) and holds it
   down; BFD Up again starts it (RFC 5882 section 4.3: BGP follows BFD, and waits for it).
3. The first start does not wait for BFD: BFD is taken as Up until it first goes Down, since
   FRR 8.4 starts a multihop BFD session only once BGP is Established.
4. A session that is not wanted (never started, or stopped) is never started by BFD.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from vipgate.bgp import fsm
from vipgate.bgp.wire import CeaseSubcode

__all__ = ["BfdCoupling"]


class BfdCoupling:
    """One BGP session's coupling to its BFD session.  See the module docstring."""

    def __init__(self) -> None:
        self.wanted = False  # start() called, stop() not
        self.bfd_up = True  # rule 3: Down only after BFD said so

    def start(self) -> list[fsm.Event]:
        """The session is wanted: start it now unless BFD holds it down (rule 2)."""
        self.wanted = True
        return [fsm.Start()] if self.bfd_up else []

    def stop(self) -> None:
        self.wanted = False

    def bfd_changed(self, up: bool, reason: str) -> list[fsm.Event]:
        """BFD went Up (`up`) or Down, because of `reason`."""
        if up == self.bfd_up:
            return []
        self.bfd_up = up
        return _ON_BFD[(self.wanted, up)](reason)


# (session wanted, BFD up now) -> the fsm events for the BGP session (rules 2 and 4)
_ON_BFD: Final[dict[tuple[bool, bool], Callable[[str], list[fsm.Event]]]] = {
    (True, True): lambda _reason: [fsm.Start()],
    (True, False): lambda reason: [fsm.Stop(reason, subcode=CeaseSubcode.BFD_DOWN)],
    (False, True): lambda _reason: [],
    (False, False): lambda _reason: [],
}
