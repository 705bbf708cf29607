"""What the manager calls on the part that announces the VIP: the BGP speaker
(:class:`vipgate.bgp.speaker.Speaker`) or routing-table mode's
(:class:`vipgate.routing.announcer.TableAnnouncer`). The gate and the manager do not know which
one runs; the manager's builder picks it from the configuration (``bgp_enable`` or
``vip_routingtable``)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import Protocol, TypeAlias

__all__ = ["Announcer"]

Prefix: TypeAlias = IPv4Network | IPv6Network


class Announcer(Protocol):
    async def start(self) -> None:
        """Start (sessions come up, or the table is read); returns at once."""

    def announce(self, prefix: Prefix) -> None:
        """Announce `prefix` plainly (or make a de-preferred one plain again)."""

    def deprefer(self, prefix: Prefix) -> None:
        """Announce `prefix` de-preferred (gate rule 12)."""

    def withdraw(self, prefix: Prefix) -> None:
        """Withdraw `prefix`."""

    def graceful_shutdown(self, on: bool = True) -> None:
        """The drain on stop (RFC 8326): mark every announced route (on) or unmark it."""

    def refresh(self) -> None:
        """Called after each health check: put back what was lost (nothing when in place)."""

    async def close(self, message: str, timeout: float = 2.0) -> None:
        """Withdraw everything and stop, within `timeout`."""
