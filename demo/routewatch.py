"""Poll the router's kernel route for the VIP and keep every change, with timestamps.

The BIRD router exports the VIP as one multipath kernel route (``merge paths on``), one next hop
per node that announces it, so "which nodes does traffic go to" is exactly the set of gateways
of ``203.0.113.100/32`` in the router namespace's main table.

The watcher runs in a thread of its own that entered the router namespace (see
:mod:`demo.netns_io`) and dumps the IPv4 routes over netlink (pyroute2), about 1 ms a look.
It polls every ``slow`` seconds, and every ``fast`` seconds while someone waits for a change
(:meth:`RouteWatcher.wait_until`), so a change is timed to within a few milliseconds.
Each :class:`Change` records when the change was seen and when the previous look was, which
bounds the true moment. If pyroute2 cannot be used the watcher falls back to ``ip -j route``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from demo.netns_io import enter_netns
from lab.netns import Lab
from lab.routers import kernel_nexthops

RT_TABLE_MAIN = 254


@dataclass(frozen=True)
class Change:
    """The route's next hops became `hops`, seen at `t`; the previous look was at `prev`."""

    t: float
    prev: float
    hops: frozenset[str]


class RouteWatcher:
    """Next hops of `prefix` in namespace `ns`, polled in a background thread."""

    def __init__(
        self,
        lab: Lab,
        ns: str,
        prefix: str,
        *,
        slow: float = 0.025,
        fast: float = 0.002,
    ) -> None:
        net = ipaddress.ip_network(prefix, strict=False)
        if net.version != 4:
            raise ValueError("the demo watches an IPv4 prefix")
        self.lab = lab
        self.ns = ns
        self.prefix = str(net)
        self._dst = str(net.network_address)
        self._dst_len = net.prefixlen
        self.slow = slow
        self.fast = fast
        self.changes: list[Change] = []
        self.looks = 0
        self.backend = "?"
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._waiters = 0
        self._current: frozenset[str] | None = None
        self._last_look = 0.0
        self._thread = threading.Thread(target=self._run, name="routewatch", daemon=True)

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 5.0) -> RouteWatcher:
        self._thread.start()
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._current is not None or self.error is not None, timeout
            )
        if self.error is not None:
            raise RuntimeError(f"route watcher failed: {self.error}") from self.error
        if not ok:
            raise TimeoutError(f"route watcher: no first look within {timeout:g}s")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(2.0)

    def __enter__(self) -> RouteWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ reading
    def current(self) -> frozenset[str]:
        with self._cond:
            return self._current or frozenset()

    def initial(self) -> frozenset[str]:
        with self._cond:
            return self.changes[0].hops if self.changes else frozenset()

    def wait_until(
        self, predicate: Callable[[frozenset[str]], bool], timeout: float
    ) -> Change | None:
        """Poll fast until `predicate(next hops)` holds; the Change that made it so, or None.

        If the predicate already holds, returns the latest change (the state's beginning).
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waiters += 1
            self._wake.set()
            try:
                while True:
                    if self.error is not None:
                        raise RuntimeError(f"route watcher failed: {self.error}")
                    if self._current is not None and predicate(self._current):
                        return self.changes[-1]
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._thread.is_alive():
                        return None
                    self._cond.wait(min(left, 0.1))
            finally:
                self._waiters -= 1

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        close: Callable[[], None] = _nothing
        try:
            look, close = self._open()
            while not self._stop.is_set():
                hops = look()
                now = time.monotonic()
                with self._cond:
                    self.looks += 1
                    if hops != self._current:
                        prev = self._last_look or now
                        self.changes.append(Change(now, prev, hops))
                        self._current = hops
                        self._cond.notify_all()
                    self._last_look = now
                    interval = self.fast if self._waiters else self.slow
                self._wake.wait(interval)
                self._wake.clear()
        except BaseException as exc:
            with self._cond:
                self.error = exc
                self._cond.notify_all()
        finally:
            close()

    def _open(self) -> tuple[Callable[[], frozenset[str]], Callable[[], None]]:
        """(look, close): look returns the current next hops (over netlink if possible)."""
        try:
            enter_netns(self.ns)
            from pyroute2 import IPRoute

            ipr: Any = IPRoute()
        except Exception:
            self.backend = "ip -j route (subprocess)"
            return (
                lambda: frozenset(kernel_nexthops(self.lab, self.ns, self.prefix)),
                lambda: None,
            )
        self.backend = "netlink (pyroute2)"

        def look() -> frozenset[str]:
            hops: set[str] = set()
            for r in ipr.get_routes(family=socket.AF_INET):
                if r.get("dst") != self._dst or r.get("dst_len") != self._dst_len:
                    continue
                table = r.get("table")
                if table is not None and table != RT_TABLE_MAIN:
                    continue
                gw = r.get("gateway")
                if gw:
                    hops.add(str(gw))
                for nh in r.get("multipath") or []:
                    g = nh.get("gateway")
                    if g:
                        hops.add(str(g))
            return frozenset(hops)

        def close() -> None:
            with contextlib.suppress(Exception):
                ipr.close()

        return look, close


def _nothing() -> None:
    return None


def intervals(changes: list[Change], hop: str, end: float) -> list[tuple[float, float]]:
    """[(start, end)] during which `hop` was a next hop, from the list of changes."""
    out: list[tuple[float, float]] = []
    since: float | None = None
    for c in changes:
        present = hop in c.hops
        if present and since is None:
            since = c.t
        elif not present and since is not None:
            out.append((since, c.t))
            since = None
    if since is not None:
        out.append((since, end))
    return out
