"""asyncio adapter: the routers' BGP connections to us (TCP 179 on each session's local address).

A router that restarts is ready to peer long before a dialing speaker's next attempt, and some
routers only listen or dial rarely (BIRD ``passive on``, FRR ``neighbor X passive`` or its
120 s ``timers connect``): accepting the router's connection brings the session up as soon as
the router opens it.  The state machine decides what to do with an accepted connection
(:class:`~vipgate.bgp.fsm.TcpAccepted`: take it, or resolve a collision, RFC 4271 6.8); this
module only listens, accepts and hands the socket over.

Rules this module keeps
-----------------------
1. One listening socket per local address of a session, bound to that address only (never the
   wildcard address): the session's source address when one is configured, else the address
   the kernel picks towards the peer (:func:`source_towards`), on the source interface when
   one is configured (SO_BINDTODEVICE).  IPv6 sockets are IPv6-only.
2. Only configured peers: a connection from any other source address is closed with a reset
   (SO_LINGER 0) right after accept(), before a byte is read or written, and counted
   (:attr:`Listener.refused`, ``on_refused``).  A peer's connection is handed to that peer's
   callback, which owns the socket from then on.
3. Each peer's TCP MD5 key (RFC 2385) is set on the listening socket for that peer's address
   (TCP_MD5SIG), so the kernel checks the SYN and the accepted socket inherits the key; a
   segment without the right signature never reaches us.
4. A port that cannot be bound (EADDRINUSE: another BGP daemon on the node; EADDRNOTAVAIL:
   the address is not there yet) never fails the start: it is logged once per address and
   error, dialing goes on, and the bind is retried every ``retry_interval`` seconds.
5. At most ``ACCEPT_BURST`` accept() calls per wake-up, so a flood of connections cannot hold
   the event loop (keepalives and health checks go on between the bursts).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Final, TypeAlias

from vipgate.bgp.netmon import source_towards
from vipgate.bgp.peer import SO_BINDTODEVICE, TCP_MD5SIG, md5sig

IPAddress: TypeAlias = IPv4Address | IPv6Address
AcceptHandler: TypeAlias = Callable[[socket.socket], None]

log = logging.getLogger("vipgate.bgp")

BGP_PORT: Final = 179
ACCEPT_BURST: Final = 64
BACKLOG: Final = 64
ACCEPT_ERROR_PAUSE: Final = 1.0  # after accept() fails (EMFILE...): listen again this much later
REFUSED_LOGGED_MAX: Final = 64  # source addresses whose first refusal is logged
RESET_ON_CLOSE: Final = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a RST

__all__ = ["BGP_PORT", "Listener", "source_towards"]


@dataclass
class _Bound:
    """One local address: its peers and, once bound, its listening socket."""

    local: IPAddress
    peers: dict[IPAddress, AcceptHandler] = field(default_factory=dict)
    passwords: dict[IPAddress, str] = field(default_factory=dict, repr=False)
    sock: socket.socket | None = None


class Listener:
    """Listening sockets for the configured peers (see the module docstring)."""

    def __init__(
        self,
        port: int = BGP_PORT,
        *,
        source_if: str | None = None,
        on_refused: Callable[[IPAddress], None] | None = None,
        retry_interval: float = 10.0,
    ) -> None:
        self.port = port
        self.source_if = source_if
        self.on_refused = on_refused
        self.retry_interval = retry_interval
        self.refused = 0  # connections from addresses that are not configured peers
        self.accepted = 0
        self._bound: dict[IPAddress, _Bound] = {}
        # Peers whose local address is still to be found: (handler, password, fixed local).
        self._unresolved: dict[IPAddress, tuple[AcceptHandler, str, IPAddress | None]] = {}
        self._logged: set[tuple[IPAddress, int]] = set()  # (address, errno) logged once
        self._refused_logged: set[IPAddress] = set()
        self._retry: asyncio.TimerHandle | None = None
        self._started = False

    def add(
        self,
        peer: IPAddress,
        accept: AcceptHandler,
        password: str = "",
        local: IPAddress | None = None,
    ) -> None:
        """Accept `peer`'s connections on `local` (None: the address the kernel picks towards
        the peer, found again at each retry until there is a route) and hand them to
        `accept`.  One handler per peer address: the first added keeps it."""
        if peer in self._unresolved or any(peer in b.peers for b in self._bound.values()):
            return
        self._unresolved[peer] = (accept, password, local)
        if self._started:
            self._bind_missing()

    def _resolve(self) -> bool:
        """Place the peers whose local address is known now; True if all are placed."""
        for peer, (accept, password, local) in list(self._unresolved.items()):
            if local is None:
                local = source_towards(peer, self.source_if)
            if local is None or local.version != peer.version:
                if (peer, -1) not in self._logged:
                    self._logged.add((peer, -1))
                    log.warning(
                        "BGP: no route to %s yet: its connections are accepted once there is "
                        "one (vipgate dials it meanwhile)",
                        peer,
                    )
                continue
            del self._unresolved[peer]
            b = self._bound.setdefault(local, _Bound(local))
            b.peers[peer] = accept
            b.passwords[peer] = password
            if b.sock is not None and password:
                try:
                    b.sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, md5sig(peer, password))
                except OSError as exc:
                    log.error("BGP: TCP MD5 key for %s not set on %s: %s", peer, local, exc)
        return not self._unresolved

    @property
    def listening(self) -> frozenset[IPAddress]:
        """The local addresses with a bound listening socket."""
        return frozenset(a for a, b in self._bound.items() if b.sock is not None)

    def start(self) -> None:
        """Bind what can be bound now (never raises for a bind); retry the rest later."""
        self._started = True
        self._bind_missing()

    def retry_now(self) -> None:
        """A route or address appeared: place and bind what is still missing now."""
        if self._started and self._retry is not None:
            self._retry.cancel()
            self._bind_missing()

    def close(self) -> None:
        self._started = False
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        loop = asyncio.get_running_loop()
        for b in self._bound.values():
            if b.sock is not None:
                loop.remove_reader(b.sock.fileno())
                b.sock.close()
                b.sock = None

    # ---------------------------------------------------------------------------- binding

    def _bind_missing(self) -> None:
        self._retry = None
        missing = not self._resolve()
        for b in self._bound.values():
            if b.sock is None:
                b.sock = self._open(b)
                if b.sock is None:
                    missing = True
                else:
                    asyncio.get_running_loop().add_reader(b.sock.fileno(), self._ready, b)
        if missing and self._started and self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(
                self.retry_interval, self._bind_missing
            )

    def _open(self, b: _Bound) -> socket.socket | None:
        fam = socket.AF_INET6 if b.local.version == 6 else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if self.source_if:
                sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, self.source_if.encode())
            for peer, password in b.passwords.items():
                if password and peer.version == b.local.version:
                    sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, md5sig(peer, password))
            sock.bind((str(b.local), self.port))
            sock.listen(BACKLOG)
        except OSError as exc:
            sock.close()
            self._bind_failed(b, exc)
            return None
        log.info(
            "BGP: accepting the connections of %s on %s port %d",
            ", ".join(sorted(map(str, b.peers))),
            b.local,
            self.port,
        )
        return sock

    def _bind_failed(self, b: _Bound, exc: OSError) -> None:
        code = exc.errno or 0
        if (b.local, code) in self._logged:
            return
        self._logged.add((b.local, code))
        why = os.strerror(code) if code else str(exc)
        hint = ""
        if code == errno.EADDRINUSE:
            hint = " (another BGP daemon on this node?)"
        log.warning(
            "BGP: cannot listen on %s port %d: %s%s; vipgate keeps dialing the peers, and "
            "retries every %g s",
            b.local,
            self.port,
            why,
            hint,
            self.retry_interval,
        )

    # --------------------------------------------------------------------------- accepting

    def _ready(self, b: _Bound) -> None:
        sock = b.sock
        if sock is None:
            return
        for _ in range(ACCEPT_BURST):
            try:
                conn, addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE, ENOBUFS...: pause, or the loop would spin
                self._accept_failed(b, sock, exc)
                return
            peer = _address(addr[0])
            handler = b.peers.get(peer) if peer is not None else None
            if handler is None:
                self._refuse(conn, peer)
                continue
            self.accepted += 1
            conn.setblocking(False)
            try:
                handler(conn)
            except Exception:
                log.exception("BGP: handing over the connection of %s failed", peer)
                conn.close()

    def _accept_failed(self, b: _Bound, sock: socket.socket, exc: OSError) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(sock.fileno())
        loop.call_later(ACCEPT_ERROR_PAUSE, self._resume, b, sock)
        if (b.local, -(exc.errno or 0)) not in self._logged:
            self._logged.add((b.local, -(exc.errno or 0)))
            log.warning("BGP: accept() on %s port %d failed: %s", b.local, self.port, exc)

    def _resume(self, b: _Bound, sock: socket.socket) -> None:
        if b.sock is sock and self._started:
            asyncio.get_running_loop().add_reader(sock.fileno(), self._ready, b)

    def _refuse(self, conn: socket.socket, peer: IPAddress | None) -> None:
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        conn.close()
        self.refused += 1
        if peer is None:
            return
        if peer not in self._refused_logged and len(self._refused_logged) < REFUSED_LOGGED_MAX:
            self._refused_logged.add(peer)
            log.warning(
                "BGP: connection from %s refused: not a configured peer (logged once per "
                "address; vipgate_bgp_connections_refused_total counts them all)",
                peer,
            )
        if self.on_refused is not None:
            self.on_refused(peer)


def _address(text: str) -> IPAddress | None:
    try:
        return ip_address(text.split("%")[0])
    except ValueError:
        return None
