"""Bounded polling helpers shared by the lab, tests and benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


class LabTimeout(AssertionError):
    """A bounded wait ran out. Subclasses AssertionError so pytest shows it as a test failure."""


def wait_for(
    predicate: Callable[[], object],
    timeout: float,
    interval: float = 0.02,
    what: str = "",
    describe: Callable[[], object] | None = None,
) -> float:
    """Poll `predicate` until it returns a truthy value; return the elapsed seconds.

    The predicate is called at least once, then every `interval` seconds until `timeout`
    seconds have passed. Exceptions raised by the predicate are remembered and reported
    if the wait times out (a router that is still starting may refuse its query socket).
    On timeout raises LabTimeout naming `what`, the last value or exception and, when
    given, the output of `describe()` (e.g. the router's session table).
    """
    start = time.monotonic()
    deadline = start + timeout
    last: object = None
    last_exc: BaseException | None = None
    polls = 0
    max_polls = int(timeout / max(interval, 0.001)) + 2
    while True:
        polls += 1
        try:
            last = predicate()
            last_exc = None
            if last:
                return time.monotonic() - start
        except Exception as exc:
            last_exc = exc
        now = time.monotonic()
        if now >= deadline or polls >= max_polls * 4:
            break
        time.sleep(min(interval, max(deadline - now, 0.0)))
    msg = (
        f"timed out after {timeout:.2f}s waiting for {what or getattr(predicate, '__name__', '?')}"
    )
    if last_exc is not None:
        msg += f"; last error: {type(last_exc).__name__}: {last_exc}"
    else:
        msg += f"; last value: {last!r}"
    if describe is not None:
        try:
            msg += f"\n{describe()}"
        except Exception as exc:
            msg += f"\n(describe failed: {exc!r})"
    raise LabTimeout(msg)
