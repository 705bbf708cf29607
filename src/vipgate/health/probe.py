"""The health probe: one HTTP(S) GET per call, on a keep-alive connection the probe owns.

What it does
------------
``Probe.check()`` sends ``GET <path>`` to the configured URL and returns a small frozen
:class:`ProbeResult`: ``ok`` (status exactly 200 within the timeout), the status, an
:class:`ErrorKind` and a one-line text, the latency to the response headers. It makes no
decisions; the gate (``vipgate.health.gate``) does.

Theory of operation
-------------------
* HTTP/1.1 is parsed, written and classified by :class:`ResponseClassifier`, a pure object
  (h11 inside; no sockets, no clock): fed the request's target and then the server's bytes, it
  decides the status, the result text, the shutdown line, the body bound and whether the
  connection may carry the next request. The coroutines only move bytes and keep time. The
  bytes move through a tiny
  ``asyncio.Protocol`` (:class:`_Conn`) owned by the probe, not through streams: asyncio calls
  ``connection_lost`` the moment the server closes the connection, even while no check is
  running, so the probe notices an idle close at once without a reader task. Such a close is not
  a failure: ``on_close`` is called, :attr:`Probe.peer_closed` is set and the next check simply
  reconnects. (kube-apiserver closes idle connections after 90 s.)
* The connection is kept alive across checks: in steady state a check is one write and one read
  on an established TLS session -- no handshake, no SSL context creation, no thread.
* One deadline per check (``timeout``) covers name resolution, TCP connect, TLS handshake and
  the response headers. The body is then read up to ``body_limit`` bytes (64 KiB) and discarded;
  the result is decided by the headers already, the body only decides whether the connection can
  be reused.
* A complete answer that HTTP/1.1 lets be reused (any status: framed body read to its end within
  ``body_limit``, no ``Connection: close``) keeps the connection, so an apiserver answering 500
  is not also handed a TLS handshake per check. Anything else (timeout, truncated or oversized
  body, protocol error, close) drops it and the next check starts fresh. A
  request on a *reused* connection that the server closed before sending a byte is retried once
  on a new connection within the same deadline (the idle-close race every HTTP client has).
* TLS: verified against ``ca_path`` or, when empty, the system trust store (OpenSSL's default
  verify paths). ``server_name``, when set, is the name the certificate must carry and the SNI,
  while the TCP connection goes to the URL's host. On a hostname mismatch the probe makes one
  more short handshake with hostname checking off (the chain is still verified) to read the
  names the certificate does carry, for the gate's teaching message; it caches them for the
  failure episode.
* Redirects are not followed (3xx is a failure); no proxy is consulted; ``http://`` works too.
* Readiness reads: ``check(url)`` GETs another path of the same origin on the same
  kept-alive connection (the manager reads ``/readyz`` between ``/livez`` checks); a 500 body
  is searched (first 16 KiB) for kube-apiserver's ``[-]shutdown failed`` line, reported as
  ``ProbeResult.shutdown``. The gate decides what it means.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import http
import ipaddress
import re
import socket
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import h11

from vipgate.health.tlsfiles import Look, Reload, Stamper
from vipgate.transports import release_closed

__all__ = [
    "BODY_LIMIT",
    "SHUTDOWN_LINE",
    "ErrorKind",
    "PeerCertificate",
    "Probe",
    "ProbeResult",
    "ResponseClassifier",
    "ResponseVerdict",
    "failed_checks",
    "suggest_server_name",
]

BODY_LIMIT = 64 * 1024
"""Bytes of response body read (and discarded) at most; beyond it the connection is dropped."""

_READ_HIGH_WATER = 128 * 1024  # pause the transport when this much is buffered unread
_KEEP_TEXT = 240  # bytes of a non-200 body quoted in the error text
_SCAN = 16 * 1024  # bytes of a 500 body searched for the shutdown line
SHUTDOWN_LINE = b"[-]shutdown failed"
"""kube-apiserver's /readyz line while it shuts down gracefully (``reason withheld`` follows)."""
_USER_AGENT = b"vipgate-health-probe/0.1"

# The keys of getpeercert()'s dict, held for the process's life. CPython's decoder
# (Modules/_ssl.c, _decode_certificate) sets each with PyDict_SetItemString, which interns it;
# a key nothing else holds is freed with the dict and interned again at the next handshake: an
# insertion and a deletion in the interpreter's table of interned strings per handshake. Their
# dummy slots make that table resize now and then, to three times its live strings, and a
# resize that lands while those are above a power-of-two boundary doubles it for good (+544 kB
# at 65,536 slots after ~130,000 checks of the long soak: bench/README.md, "bench_soak --long,
# fourth"). Held, they stay interned: a handshake adds nothing to the table.
_CERT_KEYS = tuple(
    sys.intern(k)
    for k in (
        "subject",
        "issuer",
        "version",
        "serialNumber",
        "notBefore",
        "notAfter",
        "subjectAltName",
        "OCSP",
        "caIssuers",
        "crlDistributionPoints",
    )
)

# OpenSSL X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_EMAIL_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
_NAME_MISMATCH_CODES = frozenset({62, 63, 64})


class ErrorKind(enum.Enum):
    """Why a check failed (``NONE`` when it succeeded)."""

    NONE = "none"
    REFUSED = "refused"  # TCP connection refused (nothing listens)
    RESET = "reset"  # connection reset or closed by the server before the response headers
    TIMEOUT = "timeout"  # no response headers within the timeout
    TLS_VERIFY = "tls_verify"  # certificate chain not trusted (wrong CA, expired, ...)
    TLS_HOSTNAME = "tls_hostname"  # chain fine but the certificate does not name the host
    TLS_OTHER = "tls_other"  # any other TLS failure (handshake, protocol version, CA file)
    HTTP_STATUS = "http_status"  # a response other than 200 (3xx included: not followed)
    PROTOCOL = "protocol"  # not valid HTTP/1.1
    DNS = "dns"  # the URL's host name does not resolve
    OTHER = "other"  # anything else (unreachable network, ...)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one check.

    ``cert_names`` is filled on a ``TLS_HOSTNAME`` failure when the names could be read;
    ``verified_name`` is the name the certificate is checked against (``server_name`` or the
    URL's host; "" for http://); ``ca_path`` is the CA file ("" = system trust store).
    ``shutdown`` is True when the answer was a 500 whose body carries the kube-apiserver's
    ``[-]shutdown failed`` line (its ``/readyz`` during a graceful shutdown; docs/deployment.md,
    "Planned restarts and stops"). ``failed_checks`` are the names of a 500's ``[-]NAME failed``
    lines (kube-apiserver's /livez and /readyz list each check so), in the body's order.
    """

    ok: bool
    status: int | None
    error: ErrorKind
    text: str
    latency: float
    new_connection: bool = False
    cert_names: tuple[str, ...] = ()
    verified_name: str = ""
    ca_path: str = ""
    shutdown: bool = False
    failed_checks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """A summary of the server certificate seen on the last TLS handshake (for `vipgate check`).

    ``verified`` is True when the chain verified against the configured trust; ``name_matches``
    is True when the certificate also names ``verified_name``.
    """

    subject: str
    issuer: str
    names: tuple[str, ...]
    not_before: str
    not_after: str
    verified_name: str
    trust: str
    verified: bool
    name_matches: bool

    def describe(self) -> str:
        """One line for `vipgate check`."""
        names = ", ".join(self.names) or "(no subjectAltName)"
        if not self.verified:
            verdict = f"NOT trusted by {self.trust}"
        elif self.name_matches:
            verdict = f"trusted by {self.trust}, names {self.verified_name}"
        else:
            verdict = f"trusted by {self.trust}, but does NOT name {self.verified_name}"
        return (
            f"certificate {self.subject or '(no subject)'} issued by {self.issuer}, "
            f"valid {self.not_before} .. {self.not_after}, names {names}: {verdict}"
        )


_E = TypeVar("_E", bound=BaseException)


def _check_validity(cert_path: str, now: float) -> None:
    """A reloaded client certificate must be valid now (tlsfiles rule 4): an expired one, or one
    not yet valid, is not put in use."""
    if not cert_path:
        return
    try:
        info = ssl._ssl._test_decode_cert(cert_path)  # type: ignore[attr-defined]
        not_before = ssl.cert_time_to_seconds(info["notBefore"])
        not_after = ssl.cert_time_to_seconds(info["notAfter"])
    except (OSError, ssl.SSLError, KeyError, ValueError) as e:
        raise _Failure(
            ErrorKind.TLS_OTHER, f"cannot read the client certificate {cert_path}: {e}"
        ) from e
    if now > not_after:
        raise _Failure(
            ErrorKind.TLS_OTHER,
            f"the client certificate {cert_path} expired on {info['notAfter']}",
        )
    if now < not_before:
        raise _Failure(
            ErrorKind.TLS_OTHER,
            f"the client certificate {cert_path} is not valid before {info['notBefore']}",
        )


def _untraced(e: _E) -> _E:
    """`e` without its traceback. A failed ``start_tls`` raises the exception its handshake
    future holds, and the traceback's frame holds that future: a reference cycle that keeps the
    SSL protocol (its 256 kB buffer and the OpenSSL state) until the garbage collector runs,
    dozens of handshakes later. Freed at once instead, the allocator reuses the same memory
    (bench/README.md, soak: a failed handshake per check left RSS 10 MB higher). Only the
    message is used; the traceback was never logged."""
    e.__traceback__ = None
    return e


def _untrace_outcome(handshake: asyncio.Task[asyncio.Transport | None]) -> None:
    """Done callback of a handshake its check no longer waits for: its exception (if any)
    retrieved, so that asyncio logs no "exception was never retrieved", and untraced."""
    if not handshake.cancelled() and (e := handshake.exception()) is not None:
        _untraced(e)


async def _start_tls(
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.Transport,
    conn: asyncio.BaseProtocol,
    ctx: ssl.SSLContext,
    server_hostname: str,
    deadline: float,
) -> asyncio.Transport | None:
    """``loop.start_tls`` that the check's deadline never cuts half-way. Raises what
    ``start_tls`` raises; CancelledError when the caller is cancelled (the connection is then
    aborted, which ends the handshake at once).

    Why (Python 3.11's asyncio, ``sslproto.py``): a handshake failure handled in the same loop
    iteration as the deadline's cancellation, the failure first, leaves its exception in the
    handshake's waiter, never raised anywhere, in a reference cycle with the frame that raised
    it (``_on_handshake_complete`` keeps it in a local; fixed upstream by CPython gh-109534,
    not in the tests' 3.11.7 nor the image's Debian 3.11.2). The cycle holds the SSL protocol
    -- a 256 kB read buffer and the OpenSSL state -- until a full garbage collection, minutes
    later under a fast period.
    Shielded, the handshake always ends in its own task, whose outcome
    :func:`_untrace_outcome` releases.
    Its own timeout is what is left until the deadline (asyncio's default, 60 s, kept each
    cancelled timer in the loop's heap for a minute).
    """
    handshake = loop.create_task(
        loop.start_tls(
            transport,
            conn,
            ctx,
            server_hostname=server_hostname,
            ssl_handshake_timeout=max(deadline - loop.time(), 0.001),
        )
    )
    try:
        return await asyncio.shield(handshake)
    except asyncio.CancelledError:
        transport.abort()  # ends the handshake now: start_tls returns None or raises
        handshake.add_done_callback(_untrace_outcome)
        raise


class _Failure(Exception):
    """Internal: a classified failure of the current check."""

    def __init__(
        self, kind: ErrorKind, text: str, *, cert_names: tuple[str, ...] = (), stale: bool = False
    ) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text
        self.cert_names = cert_names
        self.stale = stale  # closed before any response byte (retry-able on a reused connection)


class _Conn(asyncio.Protocol):
    """One TCP (+TLS) connection: buffers received bytes and reports closes. No parsing here
    (``response`` parses and classifies what the probe hands it)."""

    def __init__(self, on_lost: Callable[[_Conn], None], body_limit: int = BODY_LIMIT) -> None:
        self.transport: asyncio.Transport | None = None
        self.raw: asyncio.Transport | None = None  # the TCP transport (under TLS, if any)
        self.response = ResponseClassifier(body_limit)
        self.buffer = bytearray()
        self.eof = False
        self.lost = False
        self.lost_exc: BaseException | None = None
        self.busy = False  # a request is in flight
        self.dropped = False  # closed by us
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._on_lost = on_lost

    # -- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.raw is None:
            self.raw = transport

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            # Nothing was asked: a server must not speak now. Unusable; close it.
            self.eof = True
            if self.transport is not None:
                self.transport.close()
            return
        self.buffer += data
        if len(self.buffer) > _READ_HIGH_WATER and not self._paused and self.transport:
            self.transport.pause_reading()
            self._paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.lost_exc = exc
        release_closed(self.raw)
        self._wake()
        self._on_lost(self)

    # -- used by the probe
    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        if self._paused and self.transport is not None and not self.lost:
            self.transport.resume_reading()
            self._paused = False
        return data

    async def wait(self) -> None:
        if self.buffer or self.eof or self.lost:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def wait_lost(self) -> None:
        while not self.lost:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def drop(self) -> None:
        self.dropped = True
        if self.transport is not None and not self.lost:
            self.transport.abort()
        release_closed(self.raw)  # closed with the TLS layer's abort, or by a failed handshake


class _Progress:
    """Where the current check is (for the timeout text) and what it has seen so far."""

    __slots__ = ("new_connection", "response", "stage", "started", "target")

    def __init__(self, started: float) -> None:
        self.started = started
        self.target = b"/"
        self.stage = "connecting"
        self.response: ResponseClassifier | None = None  # the current request's
        self.new_connection = False


def _fmt_name(rdns: Any) -> str:
    """Render getpeercert()'s subject/issuer tuple as 'CN=x, O=y'."""
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU"}
    parts: list[str] = []
    for rdn in rdns or ():
        for key, value in rdn:
            parts.append(f"{short.get(key, key)}={value}")
    return ", ".join(parts)


def _san_names(cert: dict[str, Any]) -> tuple[str, ...]:
    names: list[str] = []
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "DNS":
            names.append(str(value))
        elif kind == "IP Address":
            text = str(value).strip()
            try:
                names.append(ipaddress.ip_address(text).compressed)
            except ValueError:
                names.append(text)
    return tuple(names)


def _name_in(names: tuple[str, ...], name: str) -> bool:
    """True if ``name`` is among the certificate names (exact or one-label wildcard)."""
    n = name.lower().rstrip(".")
    with contextlib.suppress(ValueError):
        n = ipaddress.ip_address(n).compressed
    for cand in names:
        c = cand.lower()
        if c == n:
            return True
        if c.startswith("*.") and "." in n and n.split(".", 1)[1] == c[2:]:
            return True
    return False


def suggest_server_name(names: tuple[str, ...]) -> str:
    """The server name to recommend from a certificate's names (for `vipgate check` and the
    gate's advice): kubeadm's ``kubernetes``, else the first plain DNS name (no wildcard, not an
    IP address), else the first name."""
    if "kubernetes" in names:
        return "kubernetes"
    for n in names:
        if "*" not in n and not _is_ip(n):
            return n
    return names[0] if names else "kubernetes"


def _one_line(raw: bytes) -> str:
    text = raw[:_KEEP_TEXT].decode("utf-8", "replace")
    return _printable(" ".join(text.split()))


def _printable(text: str) -> str:
    """`text` with control characters escaped (``\\x1b``): what a server sends reaches the log
    as one harmless line (no terminal escape sequences, no NUL)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class ResponseVerdict:
    """What one response (or its absence) means, before the probe adds its time and connection.

    ``status`` is None when no response headers came (then ``error`` says why and ``stale`` is
    True when the server closed before sending a byte: a reused connection may be retried).
    """

    status: int | None
    error: ErrorKind
    text: str
    shutdown: bool = False
    stale: bool = False
    failed_checks: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is ErrorKind.NONE


@functools.lru_cache(maxsize=8)
def _get_request(target: bytes, headers: tuple[tuple[bytes, bytes], ...]) -> h11.Request:
    """The request event, built and validated by h11 once: a probe sends the same one or two
    requests all its life (h11's events are immutable)."""
    return h11.Request(method=b"GET", target=target, headers=list(headers))


_END_OF_MESSAGE = h11.EndOfMessage()


class ResponseClassifier:
    """Sans-I/O: the HTTP/1.1 exchanges on one connection, classified. No asyncio, no sockets.

    One object per connection (h11 inside keeps the connection's HTTP state across requests):
    ``request(target, headers)`` begins an exchange and returns the bytes to send; then
    ``receive(data)`` with the bytes the server sends (``receive(b"")`` first: it parses what an
    earlier response left in the buffer), ``closed(exc)`` when the server closes the connection
    (``exc``: the error it was lost with, None for a clean close). Once :attr:`verdict` is set
    the exchange is over and :attr:`reusable` says whether the connection may carry the next
    request as far as HTTP/1.1 goes (whether the server still holds it open is the caller's
    knowledge). :attr:`status` is set as soon as the response headers are in (the probe times its
    latency then); :meth:`deadline_passed` is the verdict when the time runs out first.

    Rules: the headers decide (200 is the only success; 1xx are skipped, 3xx is a failure, not
    followed). The body is read only to reuse the connection: at most ``body_limit`` bytes, its
    first 240 bytes quoted in a failure's text, the first 16 KiB of a 500 searched for
    :data:`SHUTDOWN_LINE` (docs/deployment.md, "Planned restarts and stops") and for the names
    of its failed checks (:func:`failed_checks`). A close or an
    invalid response before the headers' end is a failure (RESET, PROTOCOL); after them it only
    costs the reuse, as a body over the bound does. Reuse needs a complete answer HTTP/1.1 lets
    be reused (RFC 9112 9.3: framed body read to its end, no ``Connection: close``), whatever
    its status.
    """

    def __init__(self, body_limit: int = BODY_LIMIT) -> None:
        self.body_limit = body_limit
        self._http = h11.Connection(h11.CLIENT)
        self._eof = False  # the server's close was fed to h11 (a connection never reopens)
        self._begin()

    def _begin(self) -> None:
        self.status: int | None = None
        self.verdict: ResponseVerdict | None = None
        self.reusable = False
        self.received = 0  # bytes of this exchange
        self._reason = b""
        self._location = b""
        self._keep = bytearray()  # a non-200's first bytes, for the text
        self._scan = bytearray()  # a 500's first bytes, searched for the shutdown line
        self._body = 0

    def request(self, target: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
        """Begin an exchange: the bytes of ``GET target`` (b"" and a PROTOCOL verdict when
        HTTP/1.1 does not allow a request now)."""
        self._begin()
        try:
            data = self._http.send(_get_request(target, tuple(headers)))
            data += self._http.send(_END_OF_MESSAGE)
        except h11.LocalProtocolError as e:
            self._fail(ErrorKind.PROTOCOL, f"cannot send the request: {e}")
            return b""
        return data

    def receive(self, data: bytes) -> None:
        """Bytes from the server (b"": none new; what is buffered is parsed)."""
        if data:
            self.received += len(data)
            self._http.receive_data(data)
        while self.verdict is None:
            try:
                event = self._http.next_event()
            except h11.RemoteProtocolError as e:
                if self.status is None:
                    self._fail(ErrorKind.PROTOCOL, f"invalid HTTP response: {e}")
                else:
                    self._finish(reusable=False)
                return
            if event is h11.NEED_DATA:
                return
            if self.status is None:
                self._head(event)
            else:
                self._body_event(event)

    def closed(self, exc: BaseException | None = None) -> None:
        """The server closed the connection (nothing more will come). Always gives a verdict."""
        if self.verdict is not None:
            return
        if self.status is None:
            if self.received:
                self._fail(ErrorKind.RESET, "connection closed by the server mid-response")
                return
            why = f"connection {'reset' if exc else 'closed'} by the server before the response"
            if exc is not None:
                why += f" ({exc})"
            self._fail(ErrorKind.RESET, why, stale=True)
            return
        if not self._eof:
            # h11 sees the close once: it ends a close-delimited body, or makes a truncated
            # one an error
            self._eof = True
            self._http.receive_data(b"")
            self.receive(b"")
        if self.verdict is None:
            self._finish(reusable=False)

    def deadline_passed(self) -> ResponseVerdict | None:
        """The verdict when the time runs out before the exchange is over: the headers alone
        decide (text ``HTTP <status>``); None before the headers. The connection is not reused."""
        if self.verdict is None and self.status is not None:
            text = "" if self.status == 200 else f"HTTP {self.status}"
            kind = ErrorKind.NONE if self.status == 200 else ErrorKind.HTTP_STATUS
            self.verdict = ResponseVerdict(self.status, kind, text)
            self.reusable = False
        return self.verdict if self.status is not None else None

    # -- internals
    def _head(self, event: object) -> None:
        if isinstance(event, h11.InformationalResponse):
            return
        if not isinstance(event, h11.Response):
            self._fail(ErrorKind.PROTOCOL, f"unexpected HTTP event {type(event).__name__}")
            return
        self.status = event.status_code
        self._reason = event.reason
        if 300 <= event.status_code < 400:
            for name, value in event.headers:
                if name == b"location":
                    self._location = value

    def _body_event(self, event: object) -> None:
        if isinstance(event, h11.Data):
            self._body += len(event.data)
            if self.status != 200 and len(self._keep) < _KEEP_TEXT:
                self._keep += event.data[: _KEEP_TEXT - len(self._keep)]
            if self.status == 500 and len(self._scan) < _SCAN:
                self._scan += event.data[: _SCAN - len(self._scan)]
            if self._body > self.body_limit:
                self._finish(reusable=False)
            return
        # EndOfMessage; ConnectionClosed or anything odd costs the reuse
        self._finish(reusable=isinstance(event, h11.EndOfMessage))

    def _fail(self, kind: ErrorKind, text: str, *, stale: bool = False) -> None:
        self.verdict = ResponseVerdict(None, kind, _printable(text), stale=stale)
        self.reusable = False

    def _finish(self, *, reusable: bool) -> None:
        hc = self._http
        self.reusable = reusable and hc.our_state is h11.DONE and hc.their_state is h11.DONE
        if self.reusable:
            hc.start_next_cycle()
        status = self.status
        assert status is not None
        if status == 200:
            self.verdict = ResponseVerdict(200, ErrorKind.NONE, "")
            return
        text = _status_text(status, self._reason, bytes(self._keep), self._location)
        shutdown = SHUTDOWN_LINE in self._scan
        if shutdown:
            text = f"HTTP {status}: {SHUTDOWN_LINE.decode()}"
        failed = failed_checks(bytes(self._scan)) if status == 500 else ()
        self.verdict = ResponseVerdict(
            status, ErrorKind.HTTP_STATUS, text, shutdown=shutdown, failed_checks=failed
        )


_FAILED_CHECK = re.compile(rb"^\[-\]([!-~]{1,120}) failed", re.MULTILINE)
_MAX_FAILED_CHECKS = 8


def failed_checks(body: bytes) -> tuple[str, ...]:
    """The names of the ``[-]NAME failed`` lines of a kube-apiserver health answer (e.g.
    ``poststarthook/rbac/bootstrap-roles``), at most 8, printable ASCII without spaces."""
    found = _FAILED_CHECK.findall(body)
    return tuple(m.decode("ascii") for m in found[:_MAX_FAILED_CHECKS])


def _status_text(status: int, reason: bytes, body: bytes, location: bytes) -> str:
    text = f"HTTP {status}"
    if reason:
        text += " " + reason.decode("latin-1")
    else:
        with contextlib.suppress(ValueError):
            text += " " + http.HTTPStatus(status).phrase
    if location:
        text += f" -> {location.decode('latin-1')} (redirects are not followed)"
    quoted = _one_line(body)
    if quoted:
        text += f": {quoted}"
    return _printable(text)


class Probe:
    """A long-lived health probe for one URL. Create once; call :meth:`check` once per tick.

    ``Probe(url, timeout, ca_path, server_name)``; ``await probe.check()`` -> :class:`ProbeResult`;
    ``await probe.close()``. Checks must not overlap (a second concurrent call raises).
    ``on_close`` is called (with no argument) when the server closes the idle keep-alive
    connection; :attr:`peer_closed` is set at the same moment and cleared on the next connect.
    Counters: :attr:`checks`, :attr:`tcp_connects`, :attr:`tls_handshakes` (attempts begun),
    :attr:`peer_closes`. :attr:`peer_certificate` is the last certificate seen (or None).
    ``client_cert``/``client_key`` (PEM paths, validated by vipgate.config): the client
    certificate presented when the server asks for one (apiservers without anonymous access).
    ``reload_interval`` > 0: the CA file, client certificate and key are looked at no more than
    once per interval before a check and loaded again when they changed
    (:mod:`vipgate.health.tlsfiles`); ``on_tls_reload(ok, text)`` is told each load that
    followed a change (``text``: what was loaded, or why it was not). :attr:`tls_reload` holds
    the counts and the last outcome.
    """

    def __init__(
        self,
        url: str,
        timeout: float,
        ca_path: str = "",
        server_name: str = "",
        client_cert: str = "",
        client_key: str = "",
        *,
        on_close: Callable[[], None] | None = None,
        body_limit: int = BODY_LIMIT,
        reload_interval: float = 0.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"health-check URL must be http:// or https://, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"health-check URL has no host: {url!r}")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.url = url
        self.timeout = float(timeout)
        self.ca_path = ca_path
        self.server_name = server_name
        self.client_cert = client_cert
        self.client_key = client_key
        self.body_limit = body_limit
        self.on_close = on_close
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        self._target = target.encode("ascii", "strict")
        authority = parts.netloc.rpartition("@")[2]
        self._headers = [
            (b"Host", authority.encode("idna") if not _is_ip(self._host) else authority.encode()),
            (b"User-Agent", _USER_AGENT),
            (b"Accept", b"*/*"),
        ]
        self.verified_name = (server_name or self._host) if self._tls else ""
        self._trust = f"CA file {ca_path}" if ca_path else "the system trust store"
        self._ctx: ssl.SSLContext | None = None
        self._ctx_names: ssl.SSLContext | None = None  # hostname check off, chain still verified
        self.tls_reload = Reload(reload_interval)
        self.on_tls_reload: Callable[[bool, str], None] | None = None
        self._stamper = Stamper((ca_path, client_cert, client_key))
        self._conn: _Conn | None = None
        self._busy = False
        self._mismatch_names: tuple[str, ...] | None = None
        self.peer_closed = asyncio.Event()
        self.peer_certificate: PeerCertificate | None = None
        self.checks = 0
        self.tcp_connects = 0
        self.tls_handshakes = 0
        self.peer_closes = 0

    # ------------------------------------------------------------------ public API
    @property
    def connected(self) -> bool:
        """True while a kept-alive connection is open and reusable."""
        c = self._conn
        return c is not None and not c.lost and not c.eof

    def same_origin(self, url: str) -> bool:
        """True when ``url`` has this probe's scheme, host and port (shares the connection)."""
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        same_scheme = parts.scheme == ("https" if self._tls else "http")
        return same_scheme and parts.hostname == self._host and port == self._port

    async def check(self, url: str | None = None) -> ProbeResult:
        """One GET of the probe's URL, or of ``url`` on the same connection (same origin:
        :meth:`same_origin`, else ValueError). Never raises for network/HTTP/TLS trouble (that
        is the result)."""
        target = self._target
        if url is not None:
            if not self.same_origin(url):
                raise ValueError(f"{url!r} is not on {self.url!r}'s scheme, host and port")
            parts = urlsplit(url)
            target = ((parts.path or "/") + (f"?{parts.query}" if parts.query else "")).encode(
                "ascii", "strict"
            )
        if self._busy:
            raise RuntimeError("Probe.check() called while a check is running")
        self._busy = True
        self.checks += 1
        loop = asyncio.get_running_loop()
        if self._tls and self.tls_reload.interval > 0:
            self._refresh_tls(loop.time())
        prog = _Progress(loop.time())
        prog.target = target
        try:
            return await self._check(loop, prog)
        except BaseException:
            self._drop()  # cancelled by the caller: the connection state is unknown
            raise
        finally:
            self._busy = False

    async def close(self) -> None:
        """Close the connection (politely, bounded to 1 s; at once if a check is running)."""
        if self._busy:
            self._drop()  # the running check sees the close and returns a failure
            return
        conn, self._conn = self._conn, None
        if conn is None or conn.transport is None or conn.lost:
            return
        conn.dropped = True
        conn.transport.close()
        try:
            async with asyncio.timeout(1.0):
                await conn.wait_lost()
        except TimeoutError:
            conn.transport.abort()

    # ------------------------------------------------------------------ the check
    async def _check(self, loop: asyncio.AbstractEventLoop, prog: _Progress) -> ProbeResult:
        deadline = prog.started + self.timeout
        try:
            async with asyncio.timeout_at(deadline):
                return await self._exchange(loop, prog)
        except TimeoutError:
            self._drop()
            # headers arrived in time, body did not: the headers decide
            verdict = prog.response.deadline_passed() if prog.response is not None else None
            if verdict is not None:
                return self._result(verdict, loop.time() - prog.started, prog)
            return self._fail(
                loop,
                prog,
                ErrorKind.TIMEOUT,
                f"no response headers within {self.timeout:g} s (while {prog.stage})",
            )
        except _Failure as f:
            self._drop()
            return self._fail(loop, prog, f.kind, f.text, f.cert_names)

    async def _exchange(self, loop: asyncio.AbstractEventLoop, prog: _Progress) -> ProbeResult:
        for attempt in (0, 1):
            conn = self._conn
            reused = conn is not None and not conn.lost and not conn.eof
            if conn is None or not reused:
                self._drop()
                conn = await self._connect(loop, prog)
                self._conn = conn
                prog.new_connection = True
            try:
                return await self._request(loop, conn, prog)
            except _Failure as f:
                if not (f.stale and reused and attempt == 0):
                    raise
                self._drop()  # the server closed it under us: one retry on a new connection
        raise AssertionError("unreachable")

    async def _request(
        self, loop: asyncio.AbstractEventLoop, conn: _Conn, prog: _Progress
    ) -> ProbeResult:
        """Send the request and move the response's bytes to the classifier until it decides."""
        assert conn.transport is not None
        response = prog.response = conn.response
        conn.busy = True
        prog.stage = "sending the request"
        data = response.request(prog.target, self._headers)
        if response.verdict is not None:
            raise _Failure(response.verdict.error, response.verdict.text)
        if conn.lost or conn.eof:
            raise _Failure(ErrorKind.RESET, "connection closed by the server", stale=True)
        conn.transport.write(data)
        prog.stage = "waiting for the response headers"
        latency: float | None = None
        data = b""  # first: what an earlier response left in the classifier's buffer
        while True:
            response.receive(data)
            if latency is None and response.status is not None:
                latency = loop.time() - prog.started
                prog.stage = "reading the response body"
            verdict = response.verdict
            if verdict is not None:
                break
            await conn.wait()
            data = conn.take()
            if not data:  # closed (EOF or lost) with nothing buffered
                if conn.dropped and response.status is None:
                    raise _Failure(ErrorKind.OTHER, "the probe was closed during the check")
                response.closed(conn.lost_exc)
        if latency is None:
            raise _Failure(verdict.error, verdict.text, stale=verdict.stale)
        conn.busy = False
        if not response.reusable:
            self._drop()
        if verdict.ok:
            self._mismatch_names = None
        return self._result(verdict, latency, prog)

    # ------------------------------------------------------------------ connecting
    def _context(self, *, check_hostname: bool = True) -> ssl.SSLContext:
        """The SSL context, created once (and only again after a failure to create it, or
        when its files changed: :meth:`_refresh_tls`)."""
        ctx = self._ctx if check_hostname else self._ctx_names
        if ctx is not None:
            return ctx
        stamps = self._stamper.stamps() if self.tls_reload.loaded is None else None
        ctx = self._build_context(check_hostname=check_hostname)
        if stamps is not None and self.tls_reload.interval > 0:
            self.tls_reload.first(stamps)  # taken before the load: a change during it is seen
        if check_hostname:
            self._ctx = ctx
        else:
            ctx.check_hostname = False  # verify_mode stays CERT_REQUIRED: the chain is checked
            self._ctx_names = ctx
        return ctx

    def _refresh_tls(self, now: float) -> None:
        """tlsfiles rules 1-5: at most once per interval, load changed files again; a load
        that fails keeps the material in use."""
        if not self.tls_reload.due(now):
            return
        stamps = self._stamper.stamps()
        look = self.tls_reload.look(now, stamps)
        if look is Look.BACK and self.on_tls_reload is not None:
            self.on_tls_reload(True, f"back to the files in use: {self._material()}")
        if look is not Look.LOAD:
            return
        try:
            ctx = self._build_context(check_hostname=True)
            _check_validity(self.client_cert, time.time())
        except _Failure as f:
            self.tls_reload.failed_load(stamps)
            if self.on_tls_reload is not None:
                self.on_tls_reload(False, f"{f.text}; the previous certificates stay in use")
            return
        self.tls_reload.succeeded(stamps)
        self._ctx, self._ctx_names = ctx, None
        self._drop()  # the next check connects (and authenticates) with the new material
        if self.on_tls_reload is not None:
            self.on_tls_reload(True, f"loaded again: {self._material()}")

    def _material(self) -> str:
        files = [("CA file", self.ca_path), ("client certificate", self.client_cert)]
        return ", ".join(f"{what} {path}" for what, path in files if path) or "(none)"

    def _build_context(self, *, check_hostname: bool) -> ssl.SSLContext:
        try:
            # cafile=None: create_default_context loads OpenSSL's default verify paths.
            ctx = ssl.create_default_context(cafile=self.ca_path or None)
        except (OSError, ssl.SSLError) as e:
            raise _Failure(
                ErrorKind.TLS_OTHER, f"cannot load the CA file {self.ca_path}: {e}"
            ) from e
        if self.client_cert:
            try:
                ctx.load_cert_chain(self.client_cert, self.client_key or None, password=b"")
            except (OSError, ssl.SSLError) as e:
                raise _Failure(
                    ErrorKind.TLS_OTHER,
                    f"cannot load the client certificate {self.client_cert}: {e}",
                ) from e
        return ctx

    async def _addresses(self, loop: asyncio.AbstractEventLoop) -> list[tuple[int, str]]:
        host = self._host
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, host)]
        if host.lower().rstrip(".") == "localhost":
            # RFC 6761: localhost is loopback. Spares the resolver (a thread) on each reconnect.
            return [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
        try:
            infos = await loop.getaddrinfo(host, self._port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise _Failure(ErrorKind.DNS, f"cannot resolve {host}: {e.strerror}") from e
        seen: list[tuple[int, str]] = []
        for family, _t, _p, _c, sockaddr in infos:
            item = (int(family), str(sockaddr[0]))
            if item not in seen:
                seen.append(item)
        return seen

    async def _open_tcp(self, loop: asyncio.AbstractEventLoop, conn: _Conn) -> asyncio.Transport:
        errors: list[tuple[str, OSError]] = []
        for family, addr in await self._addresses(loop):
            self.tcp_connects += 1
            try:
                transport, _ = await loop.create_connection(
                    lambda: conn, addr, self._port, family=family
                )
            except OSError as e:
                errors.append((addr, _untraced(e)))  # a list in this frame: no cycle through it
                continue
            return transport
        where = ", ".join(f"{_hostport(a, self._port)}" for a, _ in errors)
        if errors and all(isinstance(e, ConnectionRefusedError) for _, e in errors):
            raise _Failure(ErrorKind.REFUSED, f"connection refused ({where})")
        first = errors[0][1] if errors else OSError("no address")
        if isinstance(first, TimeoutError):
            raise _Failure(ErrorKind.TIMEOUT, f"connect timed out ({where})")
        raise _Failure(ErrorKind.OTHER, f"cannot connect ({where}): {first.strerror or first}")

    async def _connect(self, loop: asyncio.AbstractEventLoop, prog: _Progress) -> _Conn:
        ctx = self._context() if self._tls else None
        prog.stage = "connecting"
        conn = _Conn(self._conn_lost, self.body_limit)
        transport = await self._open_tcp(loop, conn)
        if ctx is None:
            self.peer_closed.clear()
            return conn
        prog.stage = "the TLS handshake"
        self.tls_handshakes += 1
        try:
            tls = await _start_tls(
                loop, transport, conn, ctx, self.verified_name, prog.started + self.timeout
            )
        except ssl.SSLCertVerificationError as e:
            raise await self._verify_failure(loop, prog, _untraced(e)) from e
        except ssl.SSLError as e:
            raise _Failure(
                ErrorKind.TLS_OTHER, f"TLS handshake failed: {_untraced(e).reason or e}"
            ) from e
        except (ConnectionError, OSError) as e:
            raise _Failure(
                ErrorKind.RESET, f"connection closed during the TLS handshake: {_untraced(e)}"
            ) from e
        finally:
            release_closed(transport)  # closed by a failed handshake; after a good one: nothing
        if tls is None:
            raise _Failure(ErrorKind.TLS_OTHER, "TLS handshake failed: no transport")
        conn.transport = tls
        self._remember_cert(tls, verified=True)
        self.peer_closed.clear()
        return conn

    async def _verify_failure(
        self, loop: asyncio.AbstractEventLoop, prog: _Progress, e: ssl.SSLCertVerificationError
    ) -> _Failure:
        message = str(getattr(e, "verify_message", "") or e.reason or e)
        code = getattr(e, "verify_code", None)
        if code in _NAME_MISMATCH_CODES or "mismatch" in message.lower():
            names = self._mismatch_names
            if names is None:
                # bounded to most of what is left of the deadline, so that a slow second
                # handshake cannot turn a hostname mismatch into a timeout
                bound = loop.time() + max(0.0, prog.started + self.timeout - loop.time()) * 0.8
                try:
                    async with asyncio.timeout_at(bound):
                        names = await self._fetch_names(loop, bound)
                except TimeoutError:
                    names = ()
                self._mismatch_names = names
            listed = ", ".join(names) if names else "(names unavailable)"
            return _Failure(
                ErrorKind.TLS_HOSTNAME,
                f"certificate verify failed: {message.rstrip('.')}; the certificate names {listed}",
                cert_names=names,
            )
        return _Failure(
            ErrorKind.TLS_VERIFY,
            f"certificate verify failed: {message} (verified against {self._trust})",
        )

    async def _fetch_names(
        self, loop: asyncio.AbstractEventLoop, deadline: float
    ) -> tuple[str, ...]:
        """Failure path only: one short handshake, hostname check off, to read the names."""
        conn = _Conn(lambda c: None)
        conn.dropped = True
        try:
            ctx = self._context(check_hostname=False)
            transport = await self._open_tcp(loop, conn)
            self.tls_handshakes += 1
            tls = await _start_tls(loop, transport, conn, ctx, self.verified_name, deadline)
        except (_Failure, OSError, ssl.SSLError) as e:
            _untraced(e)
            conn.drop()
            return ()
        except BaseException:
            conn.drop()  # cancelled (the caller's bound): leave nothing open
            raise
        if tls is None:
            return ()
        conn.transport = tls
        summary = self._remember_cert(tls, verified=True)
        tls.abort()
        return summary.names if summary else ()

    def _remember_cert(
        self, tls: asyncio.BaseTransport, *, verified: bool
    ) -> PeerCertificate | None:
        obj = tls.get_extra_info("ssl_object")
        cert = obj.getpeercert() if obj is not None else None
        if not cert:
            return None
        names = _san_names(cert)
        summary = PeerCertificate(
            subject=_fmt_name(cert.get("subject")),
            issuer=_fmt_name(cert.get("issuer")),
            names=names,
            not_before=str(cert.get("notBefore", "")),
            not_after=str(cert.get("notAfter", "")),
            verified_name=self.verified_name,
            trust=self._trust,
            verified=verified,
            name_matches=_name_in(names, self.verified_name),
        )
        self.peer_certificate = summary
        return summary

    # ------------------------------------------------------------------ bookkeeping
    def _conn_lost(self, conn: _Conn) -> None:
        if conn is not self._conn:
            return
        if conn.dropped or conn.busy:
            return  # our own close, or the running check sees it
        self._conn = None
        self.peer_closes += 1
        self.peer_closed.set()
        if self.on_close is not None:
            self.on_close()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.busy = False
            conn.drop()

    def _fail(
        self,
        loop: asyncio.AbstractEventLoop,
        prog: _Progress,
        kind: ErrorKind,
        text: str,
        cert_names: tuple[str, ...] = (),
    ) -> ProbeResult:
        return ProbeResult(
            ok=False,
            status=None,
            error=kind,
            text=_printable(text),
            latency=loop.time() - prog.started,
            new_connection=prog.new_connection,
            cert_names=cert_names,
            verified_name=self.verified_name,
            ca_path=self.ca_path,
        )

    def _result(self, verdict: ResponseVerdict, latency: float, prog: _Progress) -> ProbeResult:
        return ProbeResult(
            ok=verdict.ok,
            status=verdict.status,
            error=verdict.error,
            text=verdict.text,
            latency=latency,
            new_connection=prog.new_connection,
            verified_name=self.verified_name,
            ca_path=self.ca_path,
            shutdown=verdict.shutdown,
            failed_checks=verdict.failed_checks,
        )


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
