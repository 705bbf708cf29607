"""Watch a namespace's kernel routing table with timestamps (``ip -o monitor route``).

Polling ``ip route show`` costs a few milliseconds per look; the monitor reports each change as
the kernel makes it, so latencies (withdraw -> next hop gone) are measured to well under a
millisecond. Timestamps are ``time.monotonic()`` at the moment the line was read.

IPv4 multipath routes arrive whole (replace) and a deletion removes the whole route. IPv6 adds
and deletes one next hop at a time, so for IPv6 the monitor re-reads the route after each event
(the event's timestamp stays that of the monitor line).
"""

from __future__ import annotations

import ipaddress
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lab.netns import Lab
from lab.routers import kernel_nexthops
from lab.wait import LabTimeout, wait_for

_ROUTE_TYPES = {"unicast", "blackhole", "unreachable", "prohibit", "local", "broadcast", "throw"}


@dataclass(frozen=True)
class RouteEvent:
    t: float  # time.monotonic() when the monitor line was read
    prefix: str  # normalised, e.g. "203.0.113.100/32"
    nexthops: frozenset[str]  # next hops of the route after this event (empty: gone)
    deleted: bool
    line: str


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


class RouteMonitor:
    """Timestamped next-hop changes of some prefixes in one namespace's main table.

    ::

        with RouteMonitor(lab, topo.router_ns, [VIP4]) as mon:
            t0 = time.monotonic(); speaker.withdraw(...)
            t = mon.wait_nexthops(VIP4, {"192.0.2.12", "192.0.2.13"}, after=t0)
            print("gone after", t - t0)
    """

    def __init__(self, lab: Lab, ns: str, prefixes: Iterable[str], ready_timeout: float = 5.0):
        self.lab = lab
        self.ns = ns
        self.prefixes = {str(ipaddress.ip_network(p, strict=False)) for p in prefixes}
        self.events: list[RouteEvent] = []
        self._cond = threading.Condition()
        self._current: dict[str, frozenset[str]] = {
            p: frozenset(kernel_nexthops(lab, ns, p)) for p in self.prefixes
        }
        self._probe = "203.0.113.255/32"  # documentation range, blackhole, inside the lab only
        self._probe_seen = False
        self.proc: subprocess.Popen[Any] = lab.popen(
            ns,
            ["ip", "-o", "monitor", "route"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._thread = threading.Thread(target=self._read, daemon=True, name=f"routemon-{ns}")
        self._thread.start()

        # Ready once a change of our own probe route shows up (ip needs a moment to subscribe).
        def probe() -> bool:
            if not self._probe_seen:
                lab.ip(ns, "route", "replace", "blackhole", self._probe)
                lab.ip(ns, "route", "del", "blackhole", self._probe, check=False)
            return self._probe_seen

        try:
            wait_for(probe, ready_timeout, 0.01, what="ip monitor ready")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> RouteMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.lab.stop(self.proc, 1.0)
        self._thread.join(2.0)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            t = time.monotonic()
            line = raw.decode(errors="replace").rstrip("\n")
            parsed = parse_monitor_line(line)
            if parsed is None:
                continue
            deleted, _rtype, prefix, hops = parsed
            if prefix == self._probe:
                self._probe_seen = True
                continue
            if prefix not in self.prefixes:
                continue
            if ":" in prefix:
                try:
                    hops = frozenset(kernel_nexthops(self.lab, self.ns, prefix))
                except Exception:
                    hops = frozenset() if deleted else hops
            elif deleted:
                hops = frozenset()
            with self._cond:
                self._current[prefix] = hops
                self.events.append(RouteEvent(t, prefix, hops, deleted, line))
                self._cond.notify_all()

    def current(self, prefix: str) -> frozenset[str]:
        key = str(ipaddress.ip_network(prefix, strict=False))
        with self._cond:
            return self._current.get(key, frozenset())

    def wait_nexthops(
        self,
        prefix: str,
        expected: Iterable[str],
        after: float | None = None,
        timeout: float = 10.0,
    ) -> float:
        """Monotonic time of the first change at/after `after` leaving exactly `expected`.

        With `after` None, returns at once (time now) if the route already matches.
        """
        key = str(ipaddress.ip_network(prefix, strict=False))
        exp = frozenset(str(ipaddress.ip_address(a)) for a in expected)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if after is None and self._current.get(key, frozenset()) == exp:
                    return time.monotonic()
                for ev in self.events:
                    if ev.prefix == key and ev.nexthops == exp and (after is None or ev.t >= after):
                        return ev.t
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(round(e.t, 4), sorted(e.nexthops)) for e in self.events[-10:]]
                    raise LabTimeout(
                        f"kernel route {key} in {self.ns} never had next hops {sorted(exp)} "
                        f"within {timeout}s; now {sorted(self._current.get(key, frozenset()))}; "
                        f"last events {seen}"
                    )
                self._cond.wait(min(left, 0.5))
