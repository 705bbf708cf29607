"""Watch one kernel route's next hops in a namespace over time (the router's view of a VIP).

:class:`RouteWatch` is event driven: ``ip -o monitor route`` runs in the namespace, a reader
thread stamps each line with ``time.monotonic()`` the moment it arrives, and a worker thread
re-reads the route after each batch of relevant lines (and every `poll` seconds without one, as a
fallback). What a read shows, and for IPv4 each state a line states (so a state that lasted less
than one read is kept), is recorded as a :class:`RouteSample` per change, and a sample is never
stamped before the kernel change:

* with the time the line arrived, when the line itself states exactly the next hops the read
  found (an IPv4 route arrives whole; the kernel sends the line after making the change) and no
  further line for the prefix arrived during the read; this keeps the ms-level precision of the
  monitor;
* otherwise (IPv6 adds and deletes one next hop at a time, several changes in flight, fallback
  poll) with the time the read completed.

Each sample also carries `prev`, the start of the last read that still showed the previous state:
the change happened in ``(prev, t]``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab.netns import Lab, LabError
from lab.routers import kernel_nexthops
from lab.wait import LabTimeout, wait_for

_ROUTE_TYPES = {"unicast", "blackhole", "unreachable", "prohibit", "local", "broadcast", "throw"}
_PROBE = "203.0.113.255/32"  # documentation range, blackhole, inside the lab only

Pred = Callable[[frozenset[str]], bool]


def parse_monitor_line(line: str) -> tuple[bool, str, str, frozenset[str]] | None:
    """(deleted, route type, prefix, next hops) of one ``ip -o monitor route`` line."""
    toks = line.replace("\\", " ").split()
    if not toks:
        return None
    deleted = toks[0] == "Deleted"
    if deleted:
        toks = toks[1:]
    rtype = "unicast"
    if toks and toks[0] in _ROUTE_TYPES:
        rtype, toks = toks[0], toks[1:]
    if not toks or toks[0] == "default":
        return None
    try:
        prefix = str(ipaddress.ip_network(toks[0], strict=False))
    except ValueError:
        return None
    hops: set[str] = set()
    for i, tok in enumerate(toks[:-1]):
        if tok == "via":
            nxt = toks[i + 1]
            if nxt in ("inet", "inet6") and i + 2 < len(toks):
                nxt = toks[i + 2]
            hops.add(nxt)
    if "table" in toks and toks[toks.index("table") + 1 : toks.index("table") + 2] != ["main"]:
        return None
    return deleted, rtype, prefix, frozenset(hops)


def exactly(hops: set[str] | frozenset[str]) -> Pred:
    """Predicate: the route has exactly `hops` (addresses normalised)."""
    want = frozenset(str(ipaddress.ip_address(h)) for h in hops)
    return lambda h: h == want


@dataclass(frozen=True)
class RouteSample:
    """From monotonic time `t` on, the route had next hops `hops` (empty: no route); the change
    happened after `prev` (the last look at the previous state)."""

    t: float
    hops: frozenset[str]
    prev: float | None = None


def intervals(samples: list[RouteSample], hop: str, end: float) -> list[tuple[float, float]]:
    """[(start, end)] during which `hop` was a next hop, from a list of samples (changes)."""
    out: list[tuple[float, float]] = []
    since: float | None = None
    for c in samples:
        present = hop in c.hops
        if present and since is None:
            since = c.t
        elif not present and since is not None:
            out.append((since, c.t))
            since = None
    if since is not None:
        out.append((since, end))
    return out


def _in_effect(samples: list[RouteSample], t: float) -> int | None:
    """Index of the sample in effect at `t`: the last one, in the order the changes happened,
    stamped at or before `t` (None before the first). Not a bisection: two changes a few
    microseconds apart can carry stamps out of order (each is stamped when its line was read),
    and a bisection over them could land on a sample that was already superseded."""
    return max((k for k, x in enumerate(samples) if x.t <= t), default=None)


class RouteWatch:
    """A timeline of one kernel route's next hops in namespace `ns` (see the module doc).

    ::

        with RouteWatch(lab, topo.router_ns, VIP4) as w:      # or cluster.watch_route()
            t0 = time.monotonic(); speaker.withdraw(...)
            t = w.first(exactly({"192.0.2.12"}), after=t0, timeout=5.0)

    Questions: :meth:`wait` (until the route satisfies a predicate; returns when it began to),
    :meth:`reached` (the same without raising), :meth:`first` (first sample after a time that
    satisfies it), :meth:`hold` (it stays true for a while; fails fast with the timeline),
    :meth:`violations` (samples in a past interval that break it), :meth:`at`, :meth:`current`,
    :attr:`samples`, :meth:`intervals` and :meth:`describe` (the timeline as text). The monitor
    process is tracked by the Lab, so lab cleanup stops it too.
    """

    def __init__(
        self, lab: Lab, ns: str, prefix: str, poll: float = 0.05, ready_timeout: float = 5.0
    ) -> None:
        net = ipaddress.ip_network(prefix, strict=False)
        self.lab = lab
        self.ns = ns
        self.prefix = str(net)
        self._v4 = net.version == 4
        self.poll = poll
        self.ready_timeout = ready_timeout
        self.t0 = time.monotonic()
        self.proc: subprocess.Popen[Any] | None = None
        self.error: BaseException | None = None
        self._samples: list[RouteSample] = []
        self._last_look: float | None = None  # start of the last read showing the current state
        self._cond = threading.Condition()
        self._lines: list[tuple[float, str]] = []  # (arrival, line), for the worker
        self._lines_cond = threading.Condition()
        self._probe_seen = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> RouteWatch:
        self.proc = self.lab.popen(
            self.ns,
            ["ip", "-o", "monitor", "route"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        reader = threading.Thread(target=self._read, daemon=True, name=f"routemon-r-{self.ns}")
        reader.start()
        self._threads.append(reader)
        try:
            # Ready once a change of our own probe route shows up (ip needs a moment to subscribe).
            def probe() -> bool:
                if not self._probe_seen:
                    self.lab.ip(self.ns, "route", "replace", "blackhole", _PROBE)
                    self.lab.ip(self.ns, "route", "del", "blackhole", _PROBE, check=False)
                return self._probe_seen

            wait_for(probe, self.ready_timeout, 0.01, what=f"ip monitor ready in {self.ns}")
            self._look([])
        except BaseException:
            self.stop()
            raise
        worker = threading.Thread(target=self._work, daemon=True, name=f"routemon-w-{self.ns}")
        worker.start()
        self._threads.append(worker)
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lines_cond:
            self._lines_cond.notify_all()
        if self.proc is not None:
            with contextlib.suppress(LabError):
                self.lab.stop(self.proc, 1.0)
        for th in self._threads:
            th.join(2.0)

    close = stop

    def __enter__(self) -> RouteWatch:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the threads -----------------------------------------------------------------------
    def _read(self) -> None:
        """Stamp each monitor line as it arrives and hand the relevant ones to the worker."""
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            t = time.monotonic()
            line = raw.decode(errors="replace").rstrip("\n")
            parsed = parse_monitor_line(line)
            if parsed is not None and parsed[2] == _PROBE:
                self._probe_seen = True
            elif parsed is None or parsed[2] == self.prefix:  # unparsed lines: re-read anyway
                with self._lines_cond:
                    self._lines.append((t, line))
                    self._lines_cond.notify_all()

    def _claim(self, line: str) -> frozenset[str] | None:
        """The next hops a line states the route has now (None: it does not say)."""
        parsed = parse_monitor_line(line)
        if not self._v4 or parsed is None or parsed[2] != self.prefix:
            return None
        deleted, rtype, _prefix, hops = parsed
        return frozenset() if deleted or rtype != "unicast" else hops

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lines_cond:
                    if not self._lines:
                        self._lines_cond.wait(self.poll)
                    batch, self._lines = self._lines, []
                if self._stop.is_set():
                    return
                self._look(batch)
        except Exception as exc:  # namespace gone at lab close, or a query failure
            if not self._stop.is_set():
                self.error = exc
            with self._cond:
                self._cond.notify_all()

    def _look(self, batch: list[tuple[float, str]]) -> None:
        """Record the states the lines of `batch` state (IPv4: each line states the whole route,
        sent after the kernel made the change), then re-read the route and record a change.

        A state that lasted less than one read (two changes back to back) is only in the lines:
        without them, a one-hop state between two equal ECMP sets would go unseen."""
        with self._cond:
            for arrived, line in batch:
                claim = self._claim(line)
                if claim is not None and (not self._samples or self._samples[-1].hops != claim):
                    # the previous state was last known to hold at its own stamp or the last read
                    prev = self._last_look
                    if self._samples and (prev is None or self._samples[-1].t > prev):
                        prev = self._samples[-1].t
                    self._samples.append(
                        RouteSample(arrived, claim, None if prev is None else min(prev, arrived))
                    )
        last = batch[-1] if batch else None
        start = time.monotonic()
        hops = frozenset(kernel_nexthops(self.lab, self.ns, self.prefix))
        t = time.monotonic()
        if last is not None and self._claim(last[1]) == hops:
            with self._lines_cond:
                later = bool(self._lines)
            if not later:
                t = last[0]
        with self._cond:
            if not self._samples or self._samples[-1].hops != hops:
                prev = self._last_look
                self._samples.append(RouteSample(t, hops, None if prev is None else min(prev, t)))
            self._last_look = start
            self._cond.notify_all()

    # -- reading ---------------------------------------------------------------------------
    @property
    def samples(self) -> list[RouteSample]:
        """Every change seen, the first being the state at start."""
        with self._cond:
            return list(self._samples)

    def current(self) -> frozenset[str]:
        with self._cond:
            return self._samples[-1].hops if self._samples else frozenset()

    def at(self, t: float) -> frozenset[str] | None:
        """The next hops in effect at time `t` (None before the first sample)."""
        s = self.samples
        i = _in_effect(s, t)
        return s[i].hops if i is not None else None

    def intervals(self, hop: str, end: float) -> list[tuple[float, float]]:
        """[(start, end)] during which `hop` was a next hop."""
        return intervals(self.samples, hop, end)

    def violations(self, pred: Pred, t_from: float, t_to: float) -> list[RouteSample]:
        """Samples in effect at some moment of [t_from, t_to] whose next hops break `pred`."""
        s = self.samples
        i = _in_effect(s, t_from)
        return [x for x in s[i or 0 :] if x.t <= t_to and not pred(x.hops)]

    def _until(self, found: Callable[[], RouteSample | None], timeout: float) -> RouteSample | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self.error is not None:
                    raise LabError(f"route watch failed: {self.error!r}")
                hit = found()
                if hit is not None:
                    return hit
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.1))

    def reached(self, pred: Pred, timeout: float) -> RouteSample | None:
        """Wait until the route satisfies `pred`; the sample that began the current run of
        samples satisfying it (may be earlier than the call), or None on timeout."""

        def found() -> RouteSample | None:
            s = self._samples
            if not s or not pred(s[-1].hops):
                return None
            i = len(s) - 1
            while i > 0 and pred(s[i - 1].hops):
                i -= 1
            return s[i]

        return self._until(found, timeout)

    def _timeout(self, timeout: float, what: str, t_ref: float | None) -> LabTimeout:
        return LabTimeout(
            f"timed out after {timeout:.2f}s waiting for {what or 'route predicate'}\n"
            + self.describe(t_ref)
        )

    def wait(self, pred: Pred, timeout: float, what: str = "", t_ref: float | None = None) -> float:
        """Like :meth:`reached`, returning the time; LabTimeout (with the timeline) on timeout."""
        hit = self.reached(pred, timeout)
        if hit is None:
            raise self._timeout(timeout, what, t_ref)
        return hit.t

    def first(
        self, pred: Pred, after: float, timeout: float, what: str = "", t_ref: float | None = None
    ) -> float:
        """Wait for the first sample stamped at or after `after` that satisfies `pred`; return
        its time (e.g. the route coming back after a router restart)."""
        hit = self._until(
            lambda: next((x for x in self._samples if x.t >= after and pred(x.hops)), None),
            timeout,
        )
        if hit is None:
            raise self._timeout(timeout, what, t_ref)
        return hit.t

    def hold(self, pred: Pred, duration: float, what: str = "", t_ref: float | None = None) -> None:
        """Watch for `duration` seconds from now: `pred` must hold all the time (fails fast)."""
        t_from = time.monotonic()
        t_to = t_from + duration
        while True:
            now = time.monotonic()
            bad = self.violations(pred, t_from, min(now, t_to))
            if bad:
                raise AssertionError(
                    f"{what or 'route predicate'} broken at "
                    f"+{bad[0].t - (t_ref if t_ref is not None else t_from):.3f}s: "
                    f"{sorted(bad[0].hops)}\n" + self.describe(t_ref)
                )
            if now >= t_to:
                return
            if self.error is not None:
                raise LabError(f"route watch failed: {self.error!r}")
            time.sleep(min(0.02, t_to - now))

    def describe(self, t_ref: float | None = None) -> str:
        """The timeline as text (for failure messages), times relative to `t_ref`."""
        ref = self.t0 if t_ref is None else t_ref
        lines = [f"route {self.prefix} in {self.ns} (times relative to {ref:.3f}):"]
        lines += [f"  {x.t - ref:+9.3f}s  {sorted(x.hops)}" for x in self.samples]
        return "\n".join(lines)
