"""asyncio adapter for one BGP peer: sockets, timers and logging around the sans-I/O cores.

Nothing is decided here.  :class:`~vipgate.bgp.fsm.Session` runs the session (OPEN, timers,
NOTIFICATIONs, encoding), :class:`~vipgate.bgp.outbound.OutboundSession` decides what the peer
is sent from the shared Adj-RIB-Out (families, next hops, path attributes, UPDATE packing),
:class:`~vipgate.bgp.coupling.BfdCoupling` when BFD lets the session run (RFC 5882 section
4.3).  This module carries out their actions (connect, write, arm/cancel timers, close, log)
and feeds them events (connected, bytes, closed, timer fired, session up/down, ROUTE-REFRESH,
BFD Up/Down).  Events are processed synchronously and never re-entrantly: an event raised
while actions are being carried out is queued and handled right after, so
``routes_changed()`` writes its UPDATEs to the socket before it returns.

Timers and a blocked loop: nothing runs while the event loop is blocked (nothing in vipgate
should block it: TLS handshakes, reads and probes are asynchronous), so a KEEPALIVE that fell
due during a stall goes out as soon as the loop runs again, and the peer's messages that
waited in the socket meanwhile are read before the hold timer is judged (asyncio runs the I/O
callbacks of an iteration before the timers due in it; a restarted timer's stale expiry is
ignored, :mod:`vipgate.bgp.fsm` rule 4): a stall alone never ends a session on our side.  A
stall shorter than hold time - keepalive interval keeps every gap the router sees below its
hold time (``test_keepalives_after_an_event_loop_stall``).

Socket options, all set before ``connect()``: SO_BINDTODEVICE (source interface), bind to the
source address, TCP_MD5SIG (RFC 2385), TTL 1 for single-hop eBGP and 50 for eBGP multihop
(kube-vip's GoBGP ``MultihopTtl``), TCP_NODELAY, TCP keepalive.  Passwords are never logged.

TCP keepalive until Established: every connection, ours or the peer's, is probed
(SO_KEEPALIVE; TCP_KEEPIDLE ``PROBE_IDLE``, TCP_KEEPINTVL ``PROBE_INTERVAL``, TCP_KEEPCNT
``PROBE_COUNT``; RFC 1122 4.2.3.6) until the session on it is Established, then no longer.  In
OpenSent we have nothing to send (RFC 4271 allows no KEEPALIVE before the peer's OPEN), so a
connection the peer's host has forgotten -- its reset lost while the link was down, or a dial
into the accept queue of a router stopped and restarted since -- would draw no reset and wait
for the 4-minute OpenSent hold timer (RFC 4271 8.2.2, ``fsm.OPEN_SENT_HOLD``; BIRD's ``startup
hold time`` and GoBGP's OpenSent hold time are 240 s too), the VIP unannounced to a router that
only listens.  A probe draws that reset within ``PROBE_INTERVAL`` of the path being back: the
session is down (``TcpClosed``) and dialed again after the retry delay (fsm rule 9).  (While
our OPEN is itself unacknowledged the kernel retransmits it instead of probing, and the
retransmission draws the reset, at the retransmission timer's backoff.)  A peer alive but
slow to send its OPEN answers the probes from its kernel and keeps the connection; unanswered
probes alone never end one before the OpenSent hold timer would (``PROBE_IDLE +
PROBE_INTERVAL * PROBE_COUNT`` > ``OPEN_SENT_HOLD``).  From OpenConfirm on our KEEPALIVEs
draw such a reset themselves, so an Established session is exactly as without probes on the
wire (FRR offers the same as ``bgp tcp-keepalive IDLE INTERVAL PROBES``, off by default).

A session offers the peer address's own family, and both IPv4 and IPv6 unicast when it has
MP-BGP settings (:attr:`PeerSettings.families`), as kube-vip with GoBGP does;
:attr:`PeerSettings.next_hop_v4` / ``next_hop_v6`` (resolved at start from kube-vip's
``mpbgp_nexthop`` modes) are the next hops :mod:`vipgate.bgp.outbound` uses for routes of the
other family than the session's.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import random
import socket
import struct
import termios
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Final, Protocol, TypeAlias

from vipgate.bfd.session import BfdSettings
from vipgate.bgp import fsm, outbound, wire
from vipgate.bgp.coupling import BfdCoupling
from vipgate.bgp.netmon import source_towards
from vipgate.bgp.wire import AFI_IPV4, AFI_IPV6, SAFI_UNICAST
from vipgate.transports import release_closed

IPAddress: TypeAlias = IPv4Address | IPv6Address
Prefix: TypeAlias = IPv4Network | IPv6Network

log = logging.getLogger("vipgate.bgp")

TCP_MD5SIG: Final = 14
TCP_MD5SIG_MAXKEYLEN: Final = 80
SO_BINDTODEVICE: Final = 25
SIOCOUTQ: Final = termios.TIOCOUTQ  # same ioctl number on Linux
TTL_SINGLE_HOP: Final = 1
TTL_MULTIHOP: Final = 50  # kube-vip: EbgpMultihop{Enabled: true, MultihopTtl: 50}
MD5_HINT_AFTER: Final = 3
# TCP keepalive until Established (module docstring): 2 + 2 * 120 s > fsm.OPEN_SENT_HOLD.
PROBE_IDLE: Final = 2  # seconds without a segment from the peer before the first probe
PROBE_INTERVAL: Final = 2  # seconds between probes
PROBE_COUNT: Final = 120  # unanswered probes before the kernel ends the connection
PATH_RETRY_AFTER: Final = 0.5  # a dial younger than this is not restarted on a path change


@dataclass(frozen=True)
class PeerSettings:
    """One peer.  ``families``: the AFIs offered (1 IPv4, 2 IPv6; empty: the address's own).
    ``next_hop_v4`` / ``next_hop_v6``: the next hop of routes of the other family than the
    session (MP-BGP; kube-vip ``FindMpbgpAddresses``); None: such routes are not announced.
    ``elsewhere``: IP versions (4, 6) whose routes another session carries (a dual-stack VIP
    over one session per family): not sent here, without a NOT-announced error."""

    address: IPv4Address | IPv6Address
    remote_as: int
    password: str = field(default="", repr=False)
    multihop: bool = False
    port: int = 179
    families: frozenset[int] = frozenset()
    next_hop_v4: IPv4Address | None = None
    next_hop_v6: IPv6Address | None = None
    bfd: BfdSettings | None = None  # BFD gates the session (RFC 5882); None: no BFD
    elsewhere: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if len(self.password.encode()) > TCP_MD5SIG_MAXKEYLEN:
            raise ValueError(f"BGP password longer than {TCP_MD5SIG_MAXKEYLEN} octets")
        if not 1 <= self.port <= 65535:
            raise ValueError("port must be 1..65535")
        if not self.families <= {AFI_IPV4, AFI_IPV6}:
            raise ValueError("families: AFI 1 (IPv4) and/or 2 (IPv6)")
        nh6 = self.next_hop_v6
        if nh6 is not None and (nh6.is_link_local or nh6.ipv4_mapped is not None):
            raise ValueError("the IPv6 next hop must be a global address")

    @property
    def offered(self) -> frozenset[tuple[int, int]]:
        """(AFI, SAFI) pairs the OPEN offers."""
        own = AFI_IPV4 if self.address.version == 4 else AFI_IPV6
        return frozenset((afi, SAFI_UNICAST) for afi in self.families or {own})

    @property
    def name(self) -> str:
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return str(self.address) if self.port == 179 else f"{host}:{self.port}"


@dataclass(frozen=True)
class SpeakerSettings:
    local_as: int
    router_id: IPv4Address
    hold_time: int = 30
    keepalive: int = 10
    source_ip: IPv4Address | IPv6Address | None = None
    source_if: str | None = None


class SpeakerObserver(Protocol):
    def session_state(self, peer: str, state: str) -> None: ...

    def message(self, peer: str, direction: str, msg_type: str) -> None: ...

    def bfd_state(self, peer: str, state: str, diag: str) -> None: ...

    def connection_refused(self, source: str) -> None: ...


def md5sig(address: IPAddress, password: str) -> bytes:
    """struct tcp_md5sig for setsockopt(IPPROTO_TCP, TCP_MD5SIG) (linux/tcp.h)."""
    key = password.encode()
    if address.version == 4:
        sa = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 0) + address.packed
    else:
        sa = (
            struct.pack("=H", socket.AF_INET6)
            + struct.pack("!HI", 0, 0)
            + address.packed
            + struct.pack("=I", 0)
        )
    # sockaddr_storage (128), flags u8, prefixlen u8, keylen u16, ifindex u32, key[80]
    return struct.pack("=128sBBHI80s", sa, 0, 0, len(key), 0, key)


def make_socket(speaker: SpeakerSettings, peer: PeerSettings, ebgp: bool) -> socket.socket:
    """A non-blocking TCP socket with every option set, ready for connect()."""
    fam = socket.AF_INET6 if peer.address.version == 6 else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if speaker.source_if:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, speaker.source_if.encode())
        if speaker.source_ip is not None and speaker.source_ip.version == peer.address.version:
            sock.bind((str(speaker.source_ip), 0))
        if peer.password:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, md5sig(peer.address, peer.password))
        set_ttl(sock, peer, ebgp)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        set_probes(sock, True)
    except BaseException:
        sock.close()
        raise
    return sock


def set_probes(sock: socket.socket, on: bool) -> None:
    """TCP keepalive on (``PROBE_IDLE``, ``PROBE_INTERVAL``, ``PROBE_COUNT``) or off."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(on))
    if on:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, PROBE_IDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, PROBE_INTERVAL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, PROBE_COUNT)


def unsent_bytes(sock: socket.socket) -> int:
    """Bytes in the kernel send queue not yet acknowledged by the peer (SIOCOUTQ)."""
    buf = fcntl.ioctl(sock.fileno(), SIOCOUTQ, struct.pack("i", 0))
    return int(struct.unpack("i", buf)[0])


def set_ttl(sock: socket.socket, peer: PeerSettings, ebgp: bool) -> None:
    """TTL 1 for single-hop eBGP and 50 for eBGP multihop (kube-vip's GoBGP); iBGP: default."""
    if ebgp:
        ttl = TTL_MULTIHOP if peer.multihop else TTL_SINGLE_HOP
        if peer.address.version == 4:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)


class _Proto(asyncio.Protocol):
    def __init__(self, peer: Peer, conn_id: int, role: fsm.Conn = fsm.Conn.ACTIVE) -> None:
        self.peer = peer
        self.conn_id = conn_id
        self.role = role
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.role is fsm.Conn.ACTIVE:
            self.peer._connection_made(self.conn_id, transport)
        else:
            self.peer._accepted_made(self.conn_id, transport)

    def data_received(self, data: bytes) -> None:
        self.peer._event(self.conn_id, fsm.BytesReceived(data, self.role), self.role)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.peer._connection_lost(self.conn_id, exc, self.role)
        release_closed(self.transport)  # freed now, not by a later full collection
        self.transport = None


class Peer:
    """One BGP session to one peer, driven by the sans-I/O cores (see the module docstring).

    ``rib`` is the speaker's Adj-RIB-Out (:attr:`vipgate.bgp.outbound.AdjRibOut.routes`, shared
    by all peers, read only here); :meth:`routes_changed` passes on each change of it.
    """

    def __init__(
        self,
        speaker: SpeakerSettings,
        peer: PeerSettings,
        rib: Mapping[Prefix, outbound.RouteState],
        observer: SpeakerObserver | None = None,
        *,
        rng: Callable[[], float] = random.random,
        connect_timeout: float = 5.0,
        md5_hint_after: int = MD5_HINT_AFTER,
    ) -> None:
        self.speaker = speaker
        self.settings = peer
        self.name = peer.name
        self.outbound = outbound.OutboundSession(
            outbound.OutboundSettings(
                peer.offered, peer.next_hop_v4, peer.next_hop_v6, peer.elsewhere
            ),
            rib,
        )
        self.coupling = BfdCoupling()
        self._observer = observer
        self.session = fsm.Session(
            fsm.SessionConfig(
                local_as=speaker.local_as,
                router_id=speaker.router_id,
                peer_as=peer.remote_as,
                hold_time=speaker.hold_time,
                keepalive=speaker.keepalive,
                families=peer.offered,
                connect_timeout=connect_timeout,
            ),
            rng=rng,
        )
        self.ebgp = speaker.local_as != peer.remote_as
        self._md5_hint_after = md5_hint_after
        self._md5_hint_logged = False
        self._conn_id = 0
        self._transport: asyncio.Transport | None = None
        self._sock: socket.socket | None = None
        self._connect_task: asyncio.Task[None] | None = None
        # The peer's connection (fsm.Conn.PASSIVE), and one the session has not decided on.
        self._p_id = 0
        self._p_seq = 0
        self._p_transport: asyncio.Transport | None = None
        self._p_sock: socket.socket | None = None
        self._offered: tuple[int, asyncio.Transport] | None = None
        self._accepting: set[asyncio.Task[object]] = set()
        self._dial_started = 0.0  # loop time of the last OpenConnection
        self._timers: dict[fsm.Timer, asyncio.TimerHandle] = {}
        self._pending: deque[fsm.Event] = deque()
        self._busy = False
        self._lost = asyncio.Event()
        self._lost.set()
        self.routes_received = 0

    # ------------------------------------------------------------------------ public API

    @property
    def state(self) -> str:
        return self.session.state.value

    @property
    def established(self) -> bool:
        return self.session.state is fsm.State.ESTABLISHED

    def start(self) -> None:
        """Start the session now (or, after a BFD Down, as soon as BFD is Up again)."""
        for ev in self.coupling.start():
            self._dispatch(ev)

    def bfd_changed(self, up: bool, reason: str) -> None:
        """BFD went Up or Down: :class:`~vipgate.bgp.coupling.BfdCoupling` decides."""
        for ev in self.coupling.bfd_changed(up, reason):
            if isinstance(ev, fsm.Start):
                log.info("BGP peer %s: BFD Up: starting the session", self.name)
            else:
                log.warning("BGP peer %s: BFD Down (%s): session torn down", self.name, reason)
            self._dispatch(ev)

    def path_changed(self) -> None:
        """The kernel reports a new route, address or link: if the session waits for a retry,
        or has been dialing for a while (SYNs sent while the path was down are retransmitted
        1, 3, 7 s later), and the peer has a route now, retry at once (fsm rule 9)."""
        s = self.session
        if s.stopped or s.state not in (fsm.State.IDLE, fsm.State.CONNECT):
            return
        now = asyncio.get_running_loop().time()
        if s.state is fsm.State.CONNECT and now - self._dial_started < PATH_RETRY_AFTER:
            return
        if source_towards(self.settings.address, self.speaker.source_if) is not None:
            self._dispatch(fsm.PeerReachable("the kernel reports a route to the peer"))

    def routes_changed(self, changes: outbound.Changes) -> None:
        """Send what `changes` of the Adj-RIB-Out mean for this peer now (if Established)."""
        if changes:
            self._outbound(outbound.RoutesChanged(changes))

    def _session_link(self) -> tuple[asyncio.Transport | None, socket.socket | None]:
        """The transport and socket of the connection the session runs on (ours or the peer's)."""
        if self.session.conn is fsm.Conn.PASSIVE:
            return self._p_transport, self._p_sock
        return self._transport, self._sock

    async def drain(self, timeout: float) -> bool:
        """Wait until everything written has been acknowledged by the peer (or timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t, s = self._session_link()
            if t is None or s is None or s.fileno() < 0:
                return True
            try:
                if t.get_write_buffer_size() == 0 and unsent_bytes(s) == 0:
                    return True
            except OSError:
                return True
            await asyncio.sleep(0.001)
        return False

    async def stop(self, message: str, timeout: float) -> None:
        """Cease/Administrative Shutdown with `message`, close, wait for the close (bounded)."""
        self.coupling.stop()
        self._dispatch(fsm.Stop(message))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._lost.wait(), max(0.0, timeout))
        self._abort()

    # ------------------------------------------------------------------ event dispatching

    def _event(self, conn_id: int, event: fsm.Event, role: fsm.Conn = fsm.Conn.ACTIVE) -> None:
        if conn_id == (self._conn_id if role is fsm.Conn.ACTIVE else self._p_id):
            self._dispatch(event)

    def _dispatch(self, event: fsm.Event) -> None:
        self._pending.append(event)
        if self._busy:
            return
        self._busy = True
        try:
            while self._pending:
                ev = self._pending.popleft()
                for action in self.session.handle(ev):
                    self._do(action)
        finally:
            self._busy = False

    def _outbound(self, event: outbound.OutboundEvent) -> None:
        for a in self.outbound.handle(event):
            if isinstance(a, fsm.SendUpdates):
                self._dispatch(a)
            else:
                log.error(
                    "BGP peer %s: IPv%d prefixes NOT announced: %s", self.name, a.version, a.why
                )

    def _fire(self, timer: fsm.Timer, generation: int) -> None:
        self._timers.pop(timer, None)
        self._dispatch(fsm.TimerFired(timer, generation))

    def _do(self, a: fsm.Action) -> None:
        ACTIONS[type(a)](self, a)

    # One handler per fsm action type (the table ACTIONS below the class).

    def _on_send_bytes(self, a: object) -> None:
        assert isinstance(a, fsm.SendBytes)
        t = self._transport if a.conn is fsm.Conn.ACTIVE else self._p_transport
        if t is not None and not t.is_closing():
            t.write(a.data)

    def _on_arm_timer(self, a: object) -> None:
        assert isinstance(a, fsm.ArmTimer)
        old = self._timers.pop(a.timer, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[a.timer] = loop.call_later(a.delay, self._fire, a.timer, a.generation)

    def _on_cancel_timer(self, a: object) -> None:
        assert isinstance(a, fsm.CancelTimer)
        h = self._timers.pop(a.timer, None)
        if h is not None:
            h.cancel()

    def _on_open_connection(self, _a: object) -> None:
        self._dial_started = asyncio.get_running_loop().time()
        self._conn_id += 1
        self._lost.clear()
        self._connect_task = asyncio.get_running_loop().create_task(
            self._connect(self._conn_id), name=f"bgp-connect-{self.name}"
        )

    def _on_close_connection(self, a: object) -> None:
        assert isinstance(a, fsm.CloseConnection)
        if a.conn is fsm.Conn.ACTIVE:
            self._close()
        else:
            self._close_passive()

    def _on_session_up(self, a: object) -> None:
        assert isinstance(a, fsm.SessionUp)
        self._session_up(a.info)

    def _on_session_down(self, a: object) -> None:
        assert isinstance(a, fsm.SessionDown)
        if a.received is not None:
            log.warning("BGP peer %s: NOTIFICATION received: %s", self.name, a.received.describe())
        log.warning("BGP peer %s: session down: %s", self.name, a.reason)
        self._outbound(outbound.SessionDown())

    def _on_message_received(self, a: object) -> None:
        assert isinstance(a, fsm.MessageReceived)
        if self._observer is not None:
            self._observer.message(self.name, "in", a.type_name)

    def _on_message_sent(self, a: object) -> None:
        assert isinstance(a, fsm.MessageSent)
        if self._observer is not None:
            self._observer.message(self.name, "out", a.type_name)

    def _on_routes_received(self, a: object) -> None:
        assert isinstance(a, fsm.RoutesReceived)
        self.routes_received = len(self.session.adj_rib_in)
        log.debug(
            "BGP peer %s: %d announced, %d withdrawn (%d held, not installed)",
            self.name,
            len(a.announced),
            len(a.withdrawn),
            self.routes_received,
        )

    def _on_resend_adj_rib_out(self, a: object) -> None:
        assert isinstance(a, fsm.ResendAdjRibOut)
        log.info("BGP peer %s: ROUTE-REFRESH: re-sending the Adj-RIB-Out", self.name)
        self._outbound(outbound.RouteRefresh(a.afi, a.safi))

    def _on_protocol_warning(self, a: object) -> None:
        assert isinstance(a, fsm.ProtocolWarning)
        log.warning("BGP peer %s: %s", self.name, a.text)

    def _state_changed(self, a: object) -> None:
        assert isinstance(a, fsm.StateChanged)
        level = logging.INFO
        if a.new is fsm.State.IDLE and a.old is not fsm.State.CONNECT:
            level = logging.WARNING
        log.log(level, "BGP peer %s: %s -> %s (%s)", self.name, a.old.value, a.new.value, a.reason)
        if (
            a.new is fsm.State.IDLE
            and self.settings.password
            and not self._md5_hint_logged
            and self.session.failures >= self._md5_hint_after
        ):
            self._md5_hint_logged = True
            log.warning(
                "BGP peer %s: no session after %d attempts and a TCP MD5 password is set: "
                "the passwords may mismatch (the kernel drops segments with a wrong MD5 "
                "signature silently; check nstat TcpExtTCPMD5NotFound/TCPMD5Unexpected)",
                self.name,
                self.session.failures,
            )
        if self._observer is not None:
            self._observer.session_state(self.name, a.new.value)

    def _capabilities_refused(self, a: object) -> None:
        assert isinstance(a, fsm.CapabilitiesRefused)
        self._outbound(outbound.CapabilitiesRefused(a.dropped))
        named = ", ".join(map(wire.capability_name, a.named)) or "none named"
        if a.dropped:
            log.warning(
                "BGP peer %s: the router refuses capabilities (NOTIFICATION Unsupported "
                "Capability): %s; retrying without them (RFC 5492); families offered now: %s",
                self.name,
                named,
                ", ".join(wire.family_name(*f) for f in sorted(a.families)),
            )
            lost = [f for f in self.settings.offered if f not in a.families]
            for afi, safi in lost:  # an error follows if a route of that family is to be sent
                log.warning(
                    "BGP peer %s: the router refuses %s: no %s route can be announced to it",
                    self.name,
                    wire.family_name(afi, safi),
                    "IPv4" if afi == AFI_IPV4 else "IPv6",
                )
        else:
            log.error(
                "BGP peer %s: the router refuses our OPEN with Unsupported Capability (%s) but "
                "names nothing we can leave out: it may require a capability we do not offer "
                "(strict capability matching?); retrying with backoff",
                self.name,
                named if not a.undecodable else f"{named}; data {a.undecodable[:32].hex()}",
            )

    def _session_up(self, info: fsm.SessionInfo) -> None:
        self._md5_hint_logged = False
        _, sock = self._session_link()
        if sock is not None:
            with contextlib.suppress(OSError):
                set_probes(sock, False)  # Established: no probes (module docstring)
        log.info(
            "BGP peer %s: Established (%s -> %s, AS %d, hold %d s, keepalive %d s, %s%s, %s)",
            self.name,
            info.local,
            info.remote,
            info.peer_as,
            info.hold_time,
            info.keepalive,
            "eBGP" if info.ebgp else "iBGP",
            ", 4-octet AS" if info.as4 else ", 2-octet AS peer",
            ", ".join(wire.family_name(*f) for f in sorted(info.families)) or "no family",
        )
        self._outbound(outbound.SessionUp(info))

    # ------------------------------------------------------------------------ connection

    async def _connect(self, conn_id: int) -> None:
        loop = asyncio.get_running_loop()
        addr = (str(self.settings.address), self.settings.port)
        sock: socket.socket | None = None
        try:
            sock = make_socket(self.speaker, self.settings, self.ebgp)
            await loop.sock_connect(sock, addr)
            if conn_id != self._conn_id:
                sock.close()
                return
            self._sock = sock
            await loop.create_connection(lambda: _Proto(self, conn_id), sock=sock)
        except asyncio.CancelledError:
            if sock is not None and self._sock is not sock:
                sock.close()
            raise
        except OSError as exc:
            if sock is not None:
                sock.close()
            if self._sock is sock:
                self._sock = None
            self._maybe_lost()
            refused = isinstance(exc, ConnectionRefusedError)
            self._event(conn_id, fsm.TcpClosed(exc.strerror or str(exc), refused=refused))

    def _connection_made(self, conn_id: int, transport: asyncio.Transport) -> None:
        if conn_id != self._conn_id:
            transport.abort()
            return
        self._transport = transport
        sock = transport.get_extra_info("socket")
        local = ip_address(sock.getsockname()[0])
        remote = ip_address(sock.getpeername()[0])
        self._dispatch(fsm.TcpConnected(local, remote))

    def _connection_lost(
        self, conn_id: int, exc: Exception | None, role: fsm.Conn = fsm.Conn.ACTIVE
    ) -> None:
        reason = "closed by peer" if exc is None else (getattr(exc, "strerror", None) or str(exc))
        if role is fsm.Conn.PASSIVE:
            if conn_id == self._p_id:
                self._p_transport = self._p_sock = None
                self._dispatch(fsm.TcpClosed(reason, role))
            self._maybe_lost()
            return
        if conn_id != self._conn_id:
            self._maybe_lost()  # the connection we closed ourselves is gone now
            return
        self._transport = None
        self._sock = None
        self._maybe_lost()
        self._dispatch(fsm.TcpClosed(reason))

    def _close(self) -> None:
        """Close the connection gracefully: buffered data is still sent, then FIN."""
        task, self._connect_task = self._connect_task, None
        if task is not None and not task.done():
            task.cancel()
        t, self._transport = self._transport, None
        self._sock = None
        self._conn_id += 1  # later callbacks from this connection are ignored
        if t is not None:
            t.close()  # flushes the write buffer, then closes; connection_lost follows
        else:
            self._maybe_lost()

    def _maybe_lost(self) -> None:
        if self._transport is None and self._p_transport is None:
            self._lost.set()

    # ------------------------------------------------------------- the peer's connections

    def accept(self, sock: socket.socket) -> None:
        """A connection from this peer's address (:mod:`vipgate.bgp.listener`): once it is a
        transport, the session takes it, refuses it or resolves a collision (RFC 4271 6.8)."""
        self._p_seq += 1
        cid = self._p_seq
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            set_ttl(sock, self.settings, self.ebgp)
            set_probes(sock, True)
        except OSError as exc:
            log.warning("BGP peer %s: accepted connection unusable: %s", self.name, exc)
            sock.close()
            return
        loop = asyncio.get_running_loop()
        task: asyncio.Task[object] = loop.create_task(
            loop.connect_accepted_socket(lambda: _Proto(self, cid, fsm.Conn.PASSIVE), sock),
            name=f"bgp-accept-{self.name}",
        )
        self._accepting.add(task)
        task.add_done_callback(self._accepting.discard)

    def _accepted_made(self, conn_id: int, transport: asyncio.Transport) -> None:
        sock = transport.get_extra_info("socket")
        try:
            local, remote = ip_address(sock.getsockname()[0]), ip_address(sock.getpeername()[0])
        except OSError:
            transport.abort()
            return
        self._offered = (conn_id, transport)
        self._dispatch(fsm.TcpAccepted(local, remote))
        if self._offered is not None:  # the session neither took nor refused it
            self._offered = None
            transport.abort()

    def _passive_action(self, a: object) -> None:
        assert isinstance(a, fsm.AcceptConnection | fsm.RefuseConnection | fsm.CollisionResolved)
        if isinstance(a, fsm.CollisionResolved):
            log.info(
                "BGP peer %s: two connections (RFC 4271 6.8): keeping the %s one: %s",
                self.name,
                "peer's" if a.kept is fsm.Conn.PASSIVE else "our",
                a.reason,
            )
            return
        assert self._offered is not None
        (cid, t), self._offered = self._offered, None
        if isinstance(a, fsm.AcceptConnection):
            self._p_id, self._p_transport = cid, t
            self._p_sock = t.get_extra_info("socket")
            self._lost.clear()
            return
        log.info("BGP peer %s: the peer's connection refused: %s", self.name, a.reason)
        if a.data:
            t.write(a.data)
        t.close()

    def _close_passive(self) -> None:
        t, self._p_transport = self._p_transport, None
        self._p_sock = None
        self._p_id = 0  # later callbacks from this connection are ignored
        if t is not None:
            t.close()
        else:
            self._maybe_lost()

    def _abort(self) -> None:
        for h in self._timers.values():
            h.cancel()
        self._timers.clear()
        task = self._connect_task
        if task is not None and not task.done():
            task.cancel()


_Handler: TypeAlias = Callable[[Peer, object], None]

# What each action of the session core is carried out by (every type of fsm.Action).
ACTIONS: Final[dict[type, _Handler]] = {
    fsm.SendBytes: Peer._on_send_bytes,
    fsm.ArmTimer: Peer._on_arm_timer,
    fsm.CancelTimer: Peer._on_cancel_timer,
    fsm.OpenConnection: Peer._on_open_connection,
    fsm.CloseConnection: Peer._on_close_connection,
    fsm.AcceptConnection: Peer._passive_action,
    fsm.RefuseConnection: Peer._passive_action,
    fsm.CollisionResolved: Peer._passive_action,
    fsm.StateChanged: Peer._state_changed,
    fsm.SessionUp: Peer._on_session_up,
    fsm.SessionDown: Peer._on_session_down,
    fsm.MessageReceived: Peer._on_message_received,
    fsm.MessageSent: Peer._on_message_sent,
    fsm.RoutesReceived: Peer._on_routes_received,
    fsm.ResendAdjRibOut: Peer._on_resend_adj_rib_out,
    fsm.CapabilitiesRefused: Peer._capabilities_refused,
    fsm.ProtocolWarning: Peer._on_protocol_warning,
}
