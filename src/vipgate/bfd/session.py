"""asyncio adapter for BFD: UDP sockets and timers around the sans-I/O sessions.

An :class:`Endpoint` owns the receive sockets and every :class:`BfdSession`; the
:class:`~vipgate.bfd.fsm.Session` of each decides everything, this module only carries out its
actions (send, arm/cancel timers) and feeds it events (packet, timer fired) with ``loop.time()``.

Sockets (RFC 5881 single hop, RFC 5883 multihop):

* Receive: one UDP socket per address family and port, 3784 for single-hop peers and 4784 for
  multihop ones, bound to the BGP source address if one is set (else the wildcard) and to the
  source interface (SO_BINDTODEVICE) if one is set (so every datagram came in on it).  Every
  datagram is read with its TTL / hop limit (IP_RECVTTL, IPV6_RECVHOPLIMIT) and its arrival
  time and handed to the pure :class:`~vipgate.bfd.demux.Demux`, which decides (the RFC 5881
  section 5 TTL 255 rule, RFC 5880 6.8.6 demultiplexing); this module carries out its verdict.
* Send: one UDP socket per session, bound to a source port chosen at random in 49152-65535
  (RFC 5881 section 4; the same port for the session's lifetime), to the BGP source address /
  interface as above, with TTL / hop limit 255 (both single hop and multihop), connected to the
  peer (so the kernel picks the source address once, as for the BGP session).

Wake-ups: the event loop's own cost of waking up is most of what BFD costs vipgate, so the
sessions share them.

* Transmit: when one session's transmit timer fires, and after the datagrams of a readable
  socket are read, every other session whose next periodic packet may go now
  (:meth:`vipgate.bfd.fsm.Session.tx_due`, RFC 5880 6.8.7's 75 % bound) is offered a
  :class:`~vipgate.bfd.fsm.TxOpportunity` and sends in the same wake-up.
* Receive: while some session is not Up or has a Poll sequence running, the receive sockets wake
  the loop per datagram.  Once every session is Up with no Poll sequence ("quiet"), the sockets
  are no longer watched: what queued is read at the start of every timer wake-up (transmit or
  detection; a transmit timer fires at least once per transmit interval), each packet at its
  arrival time (the kernel's SO_TIMESTAMPNS stamp, moved onto the loop's clock and kept between
  the previous read and now), so the detection time still counts from the packet's arrival, and
  a detection timer never expires on packets that are queued.  The price: a Poll from the peer is
  answered with its Final, and a Down or AdminDown from the peer is seen, up to one transmit
  interval later (the 6.8.7 "as soon as practicable"); anything that ends quiet (a state change,
  a Poll sequence of ours) watches the sockets again at once.
* The detection timer is moved per packet (a heap push, no wake-up) and fires only when the
  peer goes silent.

Demultiplexing and the TTL rule: :mod:`vipgate.bfd.demux` states them.  A packet it drops is
counted under its rule (:attr:`Endpoint.dropped`), never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final, TypeAlias

from vipgate.bfd import fsm, wire
from vipgate.bfd.demux import Deliver, Demux

IPAddress: TypeAlias = IPv4Address | IPv6Address

log = logging.getLogger("vipgate.bfd")

PORT_SINGLE_HOP: Final = 3784  # RFC 5881 section 4
PORT_MULTIHOP: Final = 4784  # RFC 5883 section 5
SOURCE_PORTS: Final = (49152, 65535)  # RFC 5881 section 4
TTL: Final = 255
IP_RECVTTL: Final = 12  # linux/in.h: IP_TTL ancillary data on every datagram
SO_TIMESTAMPNS: Final = 35  # asm-generic/socket.h (SCM_TIMESTAMPNS has the same value)
_CMSG_SPACE: Final = socket.CMSG_SPACE(4) + socket.CMSG_SPACE(16)
_TTL_CMSG: Final = {(socket.IPPROTO_IP, socket.IP_TTL), (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)}
_LITTLE: Final = sys.byteorder == "little"
_RX_BATCH: Final = 64  # datagrams read per wake-up at most
SO_BINDTODEVICE: Final = 25
_BIND_ATTEMPTS: Final = 64


@dataclass(frozen=True)
class BfdSettings:
    """One peer's BFD parameters, in milliseconds as kube-vip documents them.

    ``rx_ms``: bfd.RequiredMinRxInterval; ``tx_ms``: bfd.DesiredMinTxInterval (while Up; 1 s
    while not Up); ``multiplier``: bfd.DetectMult.
    """

    rx_ms: int = 300
    tx_ms: int = 300
    multiplier: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.tx_ms <= 4_294_967 or not 0 <= self.rx_ms <= 4_294_967:
            raise ValueError("BFD intervals must fit 32 bits of microseconds")
        if not 1 <= self.multiplier <= 255:
            raise ValueError("BFD multiplier is 1..255")


StateCallback: TypeAlias = Callable[["BfdSession", fsm.StateChanged], None]


def _bind_device(sock: socket.socket, source_if: str | None) -> None:
    if source_if:
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, source_if.encode())


def make_rx_socket(
    family: int, port: int, source_ip: IPAddress | None, source_if: str | None
) -> socket.socket:
    """A non-blocking receive socket that delivers each datagram's TTL / hop limit."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        _bind_device(sock, source_if)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        host = "::" if family == socket.AF_INET6 else "0.0.0.0"
        if source_ip is not None and (source_ip.version == 6) == (family == socket.AF_INET6):
            host = str(source_ip)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def make_tx_socket(
    peer: IPAddress,
    source_ip: IPAddress | None,
    source_if: str | None,
    rng: Callable[[], float] = random.random,
) -> socket.socket:
    """A non-blocking send socket: TTL 255, source port in 49152-65535 (tries up to 64)."""
    family = socket.AF_INET6 if peer.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        _bind_device(sock, source_if)
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, TTL)
        host = ""
        if source_ip is not None and source_ip.version == peer.version:
            host = str(source_ip)
        lo, hi = SOURCE_PORTS
        for attempt in range(_BIND_ATTEMPTS):
            port = lo + int(rng() * (hi - lo + 1))
            try:
                sock.bind((host, min(port, hi)))
                break
            except OSError:
                if attempt == _BIND_ATTEMPTS - 1:
                    raise
    except BaseException:
        sock.close()
        raise
    return sock


class BfdSession:
    """One BFD session to one peer, driven by the sans-I/O :class:`~vipgate.bfd.fsm.Session`."""

    def __init__(
        self,
        endpoint: Endpoint,
        name: str,
        peer: IPAddress,
        multihop: bool,
        settings: BfdSettings,
        local_discr: int,
        on_state: StateCallback | None,
    ) -> None:
        self.endpoint = endpoint
        self.name = name
        self.peer = peer
        self.multihop = multihop
        self.port = PORT_MULTIHOP if multihop else PORT_SINGLE_HOP
        self.settings = settings
        self.fsm = fsm.Session(
            fsm.SessionConfig(
                local_discr=local_discr,
                desired_min_tx=settings.tx_ms * 1000,
                required_min_rx=settings.rx_ms * 1000,
                detect_mult=settings.multiplier,
            ),
            rng=endpoint.rng,
        )
        self.callbacks: list[StateCallback] = [on_state] if on_state is not None else []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = False
        self._sock: socket.socket | None = None
        self._timers: dict[fsm.Timer, asyncio.TimerHandle] = {}
        self._send_error_logged = False

    @property
    def state(self) -> wire.State:
        return self.fsm.state

    @property
    def up(self) -> bool:
        return self.fsm.up

    def start(self) -> None:
        """Open the send socket and start the session (Down, slow transmission)."""
        self._loop = asyncio.get_running_loop()
        self._sock = make_tx_socket(
            self.peer, self.endpoint.source_ip, self.endpoint.source_if, self.endpoint.rng
        )
        try:  # a connected socket skips the route lookup on every send
            self._sock.connect((str(self.peer), self.port))
            self._connected = True
        except OSError as e:  # e.g. no route yet: sendto() per packet until there is one
            log.warning("BFD peer %s: %s; sending unconnected", self.name, e.strerror or e)
        log.info(
            "BFD peer %s: %s, source port %d, %d ms x %d (rx %d ms)",
            self.name,
            "multihop" if self.multihop else "single hop",
            self._sock.getsockname()[1],
            self.settings.tx_ms,
            self.settings.multiplier,
            self.settings.rx_ms,
        )
        self._dispatch(fsm.Start(self._now()))

    def admin_down(self) -> None:
        """AdminDown (diag 7) sent at once; the session stays AdminDown until closed."""
        if self._sock is not None:
            self._dispatch(fsm.AdminDown(self._now()))

    def close(self) -> None:
        for h in self._timers.values():
            h.cancel()
        self._timers.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def packet(self, packet: wire.ControlPacket, at: float | None = None) -> None:
        """A packet for this session, received at loop time ``at`` (default: now)."""
        self._dispatch(fsm.PacketReceived(packet, self._now() if at is None else at))

    # ------------------------------------------------------------------------- internals

    def _now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    def _fire(self, timer: fsm.Timer, generation: int) -> None:
        self._timers.pop(timer, None)
        self.endpoint.drain()  # quiet: the packets that came first (they may move this timer)
        now = self._now()
        self._dispatch(fsm.TimerFired(timer, generation, now))
        if timer is fsm.Timer.TX:
            self.endpoint.tx_opportunity(now)
        self.endpoint.watch()

    def tx_opportunity(self, now: float) -> None:
        """Send the next periodic packet now if its window is open (see the module docstring)."""
        if self._sock is not None and self.fsm.tx_due(now):
            self._dispatch(fsm.TxOpportunity(now))

    def _dispatch(self, event: fsm.Event) -> None:
        for a in self.fsm.handle(event):
            if isinstance(a, fsm.Send):
                self._send(a.data)
            elif isinstance(a, fsm.ArmTimer):
                old = self._timers.pop(a.timer, None)
                if old is not None:
                    old.cancel()
                loop = self._loop or asyncio.get_running_loop()
                self._timers[a.timer] = loop.call_at(a.at, self._fire, a.timer, a.generation)
            elif isinstance(a, fsm.CancelTimer):
                h = self._timers.pop(a.timer, None)
                if h is not None:
                    h.cancel()
            elif isinstance(a, fsm.StateChanged):
                level = logging.WARNING if a.old is wire.State.UP else logging.INFO
                log.log(
                    level,
                    "BFD peer %s: %s -> %s (%s; diag %s)",
                    self.name,
                    a.old.label,
                    a.new.label,
                    a.reason,
                    a.diag.label,
                )
                for callback in self.callbacks:
                    callback(self, a)
            elif isinstance(a, fsm.Discarded):
                self.endpoint.dropped[a.rule] += 1
                log.debug("BFD peer %s: packet discarded: %s", self.name, a.reason)

    def _send(self, data: bytes) -> None:
        if self._sock is None:
            return
        try:
            if self._connected:
                self._sock.send(data)
            else:
                self._sock.sendto(data, (str(self.peer), self.port))
            self._send_error_logged = False
        except OSError as e:  # no route yet, ICMP unreachable, full buffer: the next one retries
            if not self._send_error_logged:
                self._send_error_logged = True
                log.warning("BFD peer %s: send failed: %s", self.name, e.strerror or e)


class Endpoint:
    """The BFD sessions of one speaker and their receive sockets (see the module docstring)."""

    def __init__(
        self,
        source_ip: IPAddress | None = None,
        source_if: str | None = None,
        *,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.source_ip = source_ip
        self.source_if = source_if
        self.rng = rng
        self.sessions: list[BfdSession] = []
        self.demux: Demux[BfdSession] = Demux()
        self._rx: list[tuple[socket.socket, bool]] = []
        self.dropped: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.watching = False  # the receive sockets wake the loop (not quiet)
        self._drained_at = 0.0
        self.started = False

    def add(
        self,
        name: str,
        peer: IPAddress,
        multihop: bool,
        settings: BfdSettings,
        on_state: StateCallback | None = None,
    ) -> BfdSession:
        """A new session (started by :meth:`start`), one per peer address and hop kind: a second
        BGP peer at the same address (another port) shares it and adds its callback.  Raises
        ValueError if the shared session's settings differ (``config.load`` refuses that)."""
        existing = self.demux.session_for(peer, multihop)
        if existing is not None:
            if existing.settings != settings:
                raise ValueError(f"two BFD settings for {peer}: {existing.settings}, {settings}")
            if on_state is not None:
                existing.callbacks.append(on_state)
            return existing
        discr = self.demux.new_discriminator(self.rng)
        s = BfdSession(self, name, peer, multihop, settings, discr, on_state)
        self.sessions.append(s)
        self.demux.add(s, discr, peer, multihop)
        return s

    async def start(self) -> None:
        """Open the receive sockets the sessions need, then start every session.

        Raises OSError when a socket cannot be opened (e.g. another BFD daemon holds the port).
        """
        if self.started:
            return
        self.started = True
        self._loop = asyncio.get_running_loop()
        kinds = sorted({(s.peer.version, s.multihop) for s in self.sessions})
        try:
            for version, multihop in kinds:
                fam = socket.AF_INET6 if version == 6 else socket.AF_INET
                port = PORT_MULTIHOP if multihop else PORT_SINGLE_HOP
                sock = make_rx_socket(fam, port, self.source_ip, self.source_if)
                self._rx.append((sock, multihop))
            self.watch()
            for s in self.sessions:
                s.start()
        except BaseException:
            self.close()
            raise

    async def admin_down(self, linger: float = 0.0) -> None:
        """Every session sends AdminDown (RFC 5880 6.8.16) at once; then wait ``linger`` s."""
        for s in self.sessions:
            s.admin_down()
        self.watch()
        if linger > 0:
            await asyncio.sleep(linger)

    def close(self) -> None:
        for s in self.sessions:
            s.close()
        for sock, _ in self._rx:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        self._rx.clear()
        self.watching = False

    def tx_opportunity(self, now: float) -> None:
        """The loop is awake at ``now``: every session whose next packet may go sends it now."""
        for s in self.sessions:
            s.tx_opportunity(now)

    def quiet(self) -> bool:
        """Every session Up with no Poll sequence of ours: the sockets need not wake the loop."""
        return bool(self.sessions) and all(
            s.fsm.state is wire.State.UP and not s.fsm.polling for s in self.sessions
        )

    def watch(self) -> None:
        """Watch the receive sockets unless :meth:`quiet` (see the module docstring)."""
        loop = self._loop
        if loop is None or not self._rx or self.watching != self.quiet():
            return
        if self.watching:
            for sock, _ in self._rx:
                loop.remove_reader(sock.fileno())
            self._drained_at = loop.time()
            self.watching = False
        else:
            for sock, multihop in self._rx:
                loop.add_reader(sock.fileno(), self._readable, sock, multihop)
            self.watching = True

    def drain(self) -> None:
        """Quiet: read what queued since the previous wake-up, each packet at its arrival time."""
        if not self.watching and self._loop is not None and self._rx:
            self.drain_all(self._loop.time())

    def drain_all(self, now: float) -> None:
        offset = now - time.time()  # the kernel stamps CLOCK_REALTIME; the loop has its own
        for sock, multihop in self._rx:
            self._read(sock, multihop, now, offset)
        self._drained_at = now

    def _readable(self, sock: socket.socket, multihop: bool) -> None:
        now = self._loop.time() if self._loop is not None else 0.0
        self._read(sock, multihop, now, None)
        self.tx_opportunity(now)
        self.watch()

    def _read(self, sock: socket.socket, multihop: bool, now: float, offset: float | None) -> None:
        """Read up to :data:`_RX_BATCH` datagrams; with ``offset`` (loop time - real time) each
        packet is handed over at its kernel arrival stamp, kept within [previous read, now]."""
        for _ in range(_RX_BATCH):
            try:
                data, anc, _flags, addr = sock.recvmsg(256, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. an ICMP error queued on the socket
                log.debug("BFD receive error: %s", e)
                continue
            ttl = -1
            at: float | None = None
            for level, kind, value in anc:
                if (level, kind) in _TTL_CMSG and len(value) >= 4:
                    ttl = int.from_bytes(value[:4], "little" if _LITTLE else "big", signed=True)
                elif offset is not None and kind == SO_TIMESTAMPNS and level == socket.SOL_SOCKET:
                    half = len(value) // 2
                    sec = int.from_bytes(value[:half], sys.byteorder, signed=True)
                    nsec = int.from_bytes(value[half:], sys.byteorder, signed=True)
                    at = min(now, max(self._drained_at, sec + nsec * 1e-9 + offset))
            verdict = self.demux.classify(data, str(addr[0]), multihop, ttl, at)
            if isinstance(verdict, Deliver):
                verdict.session.packet(verdict.packet, verdict.at)
            else:
                self.dropped[verdict.rule] += 1
                if verdict.reason:
                    log.debug("%s", verdict.reason)
