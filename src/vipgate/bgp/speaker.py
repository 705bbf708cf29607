"""The embedded BGP speaker: one Adj-RIB-Out shared by all peers (asyncio adapter).

The Adj-RIB-Out and what each peer is sent are decided by :mod:`vipgate.bgp.outbound` (pure);
this module passes its changes on to every :class:`~vipgate.bgp.peer.Peer`, couples BFD
sessions to BGP sessions, and bounds ``close()`` in time.

``announce(prefix)`` / ``withdraw(prefix)`` change the Adj-RIB-Out and write the UPDATE to every
Established session before they return.  A session that comes up, or sends ROUTE-REFRESH, gets
the whole set.  ``close(message)`` withdraws everything, waits until the peers acknowledged it
(asyncio drain, then the kernel send queue via SIOCOUTQ), sends Cease / Administrative
Shutdown with the RFC 8203 message and closes -- bounded by ``timeout``.
``deprefer(prefix)`` announces it de-preferred (a fallback path: GRACEFUL_SHUTDOWN 65535:0 and,
towards eBGP peers, our AS prepended 3 more times, towards iBGP peers LOCAL_PREF 0);
``announce(prefix)`` announces it plainly again.
``graceful_shutdown(True)`` re-announces the Adj-RIB-Out with the same path attributes (RFC 8326
plus the de-preference) so the routers move traffic to other paths before the withdrawal, with
or without a policy of their own; ``graceful_shutdown(False)`` re-announces each route in its
own state again. Sessions that come up meanwhile get the marked routes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TYPE_CHECKING, TypeAlias

from vipgate.bfd.fsm import StateChanged
from vipgate.bfd.session import BfdSession, BfdSettings, Endpoint
from vipgate.bfd.wire import State as BfdState
from vipgate.bgp import outbound
from vipgate.bgp.listener import BGP_PORT, Listener
from vipgate.bgp.netmon import RouteMonitor
from vipgate.bgp.outbound import RouteState
from vipgate.bgp.peer import Peer, PeerSettings, SpeakerObserver, SpeakerSettings
from vipgate.bgp.wire import AFI_IPV4, AFI_IPV6
from vipgate.budget import STOP_BUDGET

if TYPE_CHECKING:
    from vipgate import config

__all__ = ["PeerSettings", "Speaker", "SpeakerObserver", "SpeakerSettings", "peer_settings"]

Prefix: TypeAlias = IPv4Network | IPv6Network
IPAddress: TypeAlias = IPv4Address | IPv6Address
log = logging.getLogger("vipgate.bgp")


class Speaker:
    def __init__(
        self,
        settings: SpeakerSettings,
        peers: Sequence[PeerSettings],
        observer: SpeakerObserver | None = None,
        *,
        rng: Callable[[], float] = random.random,
        connect_timeout: float = 5.0,
        md5_hint_after: int = 3,
        listen: bool = True,
        listen_port: int = BGP_PORT,
    ) -> None:
        self.settings = settings
        self._rib = outbound.AdjRibOut()
        self._observer = observer
        self._peers = [
            Peer(
                settings,
                p,
                self._rib.routes,
                observer,
                rng=rng,
                connect_timeout=connect_timeout,
                md5_hint_after=md5_hint_after,
            )
            for p in peers
        ]
        self._started = False
        self._closed = False
        # The routers' connections (vipgate.bgp.listener): on each session's local address.
        self.listener: Listener | None = None
        if listen and self._peers:
            self.listener = Listener(
                listen_port, source_if=settings.source_if, on_refused=self._refused
            )
            src = settings.source_ip
            for peer in self._peers:
                addr = peer.settings.address
                local = src if src is not None and src.version == addr.version else None
                self.listener.add(addr, peer.accept, peer.settings.password, local)
        # Routes, addresses, links back: sessions waiting for a retry retry at once.
        self._paths = RouteMonitor(self._paths_changed)
        self.bfd: Endpoint | None = None
        if any(p.bfd is not None for p in peers):
            self.bfd = Endpoint(settings.source_ip, settings.source_if, rng=rng)
            for peer in self._peers:
                b = peer.settings.bfd
                if b is not None:
                    self.bfd.add(
                        peer.name,
                        peer.settings.address,
                        peer.settings.multihop,
                        b,
                        functools.partial(self._bfd_changed, peer),
                    )

    def _bfd_changed(self, peer: Peer, session: BfdSession, change: StateChanged) -> None:
        if change.new is BfdState.UP or change.old is BfdState.UP:
            peer.bfd_changed(change.new is BfdState.UP, f"BFD {change.reason}")
        if self._observer is not None:
            self._observer.bfd_state(peer.name, change.new.label, change.diag.label)

    def _paths_changed(self) -> None:
        if self.listener is not None:
            self.listener.retry_now()
        for p in self._peers:
            p.path_changed()

    def _refused(self, source: IPAddress) -> None:
        if self._observer is not None:
            self._observer.connection_refused(str(source))

    @property
    def peers(self) -> Sequence[Peer]:
        return tuple(self._peers)

    async def start(self) -> None:
        """Start every session; returns at once (sessions come up in the background)."""
        if self._started:
            return
        self._started = True
        if self.bfd is not None:
            try:
                await self.bfd.start()
            except OSError as e:
                log.error("BFD sockets not opened (%s): the BGP sessions with BFD stay down", e)
        if self.listener is not None:
            self.listener.start()
        if self._peers:
            self._paths.start()
        for p in self._peers:
            p.start()

    def announce(self, prefix: Prefix) -> None:
        """Announce `prefix` with a plain path (or make a de-preferred one plain again)."""
        if not self._closed:
            self._routes_changed(self._rib.announce(prefix))

    def deprefer(self, prefix: Prefix) -> None:
        """Announce `prefix` de-preferred: routers use it only while no plain path exists."""
        if not self._closed:
            self._routes_changed(self._rib.announce(prefix, RouteState.DEPREFERRED))

    def withdraw(self, prefix: Prefix) -> None:
        self._routes_changed(self._rib.withdraw(prefix))

    def refresh(self) -> None:
        """After a health check: nothing to do (the sessions keep the Adj-RIB-Out in place)."""

    def _routes_changed(self, changes: outbound.Changes) -> None:
        for p in self._peers:
            p.routes_changed(changes)

    def graceful_shutdown(self, on: bool = True) -> None:
        """Mark (on) or unmark (off) every announced route with GRACEFUL_SHUTDOWN 65535:0
        (RFC 8326 section 4) and the de-preference (our AS prepended on eBGP sessions,
        LOCAL_PREF 0 on iBGP sessions) by announcing it again now.
        No-op if already in that state. ``close()`` still withdraws everything afterwards."""
        if not self._closed:
            mode = RouteState.GRACEFUL_SHUTDOWN if on else RouteState.ANNOUNCED
            self._routes_changed(self._rib.set_mode(mode))

    @property
    def graceful(self) -> bool:
        """True while the routes are announced with GRACEFUL_SHUTDOWN."""
        return self._rib.mode is RouteState.GRACEFUL_SHUTDOWN

    async def close(self, message: str, timeout: float = STOP_BUDGET.bgp) -> None:
        """Withdraw all, drain, Cease/Administrative Shutdown (6/2) with `message`, close; within
        ``timeout``, ``STOP_BUDGET.bgp_ack_share`` of it for the withdrawal to leave the socket
        (``budget.py``)."""
        if self._closed:
            return
        self._closed = True
        if self.listener is not None:
            self.listener.close()
        self._paths.close()
        deadline = time.monotonic() + timeout
        self._routes_changed(self._rib.withdraw_all())
        # Always: a withdrawal made just before close() (the manager's stop) must leave the
        # socket too. Returns at once when nothing is queued.
        ack = timeout * STOP_BUDGET.bgp_ack_share
        drained = await asyncio.gather(*(p.drain(ack) for p in self._peers))
        if not all(drained):
            log.warning("BGP: withdrawals not acknowledged by every peer before closing")
        remaining = max(0.05, deadline - time.monotonic())
        await asyncio.gather(*(p.stop(message, remaining) for p in self._peers))
        if self.bfd is not None:  # RFC 5882: BFD AdminDown only after the withdrawal and Cease
            await self.bfd.admin_down()
            self.bfd.close()

    def announced(self) -> frozenset[Prefix]:
        return frozenset(self._rib.routes)

    def session_states(self) -> dict[str, str]:
        return {p.name: p.state for p in self._peers}


def peer_settings(
    peer: config.Peer,
    next_hop_v4: IPv4Address | None = None,
    next_hop_v6: IPv6Address | None = None,
    vip_versions: frozenset[int] = frozenset(),
) -> PeerSettings:
    """A configured peer as the speaker takes it.  With MP-BGP settings (``mpbgp_nexthop``) the
    session offers IPv4 and IPv6 unicast, as kube-vip's GoBGP peer does; else its own family,
    and a VIP of the other family (``vip_versions``: the IP versions of the VIPs) goes over
    another session (a dual-stack VIP; the configuration made sure one carries it).
    The next hops are those :func:`vipgate.vip.mpbgp_next_hops` found.  BFD only when the
    7th field enables it."""
    families = frozenset({AFI_IPV4, AFI_IPV6}) if peer.mpbgp_nexthop is not None else frozenset()
    own = peer.address.version
    elsewhere: frozenset[int] = frozenset()
    if peer.mpbgp_nexthop is None and own in vip_versions:
        elsewhere = frozenset(v for v in vip_versions if v != own)
    bfd = None
    if peer.bfd is not None and peer.bfd.enabled:
        bfd = BfdSettings(peer.bfd.rx_ms, peer.bfd.tx_ms, peer.bfd.multiplier)
    return PeerSettings(
        peer.address,
        peer.asn,
        peer.password,
        peer.multihop,
        peer.port,
        families=families,
        next_hop_v4=next_hop_v4,
        next_hop_v6=next_hop_v6,
        bfd=bfd,
        elsewhere=elsewhere,
    )
