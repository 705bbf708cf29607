"""Drains before anything stops (docs/deployment.md, "Planned restarts and stops"), the gate's
part, against BIRD's kernel route.

- The apiserver announces its shutdown (fake apiserver ``shutdown`` mode: ``/readyz`` 500
  ``[-]shutdown failed`` at once, ``/livez`` 200 for the delay, then FIN and refused): the
  readiness read (every 1 s) withdraws node1 *before the apiserver stops serving*, although
  ``/livez`` still answers 200; a restarted apiserver gets the route back.
- vipgate's own SIGTERM with ``bgp_graceful_shutdown_seconds``: the route is re-announced with
  GRACEFUL_SHUTDOWN (the lab's BIRD maps 65535:0 to a low preference, docs/routers.md), so
  node1 leaves the ECMP set while its session and path still exist; vipgate withdraws and exits
  0 after the drain, with a Cease that says why.
- A failed check during the drain ends it at once (gate rule 11).

Bounds are behavioural (before the delay ends, before the drain ends), not speed targets.
"""

from __future__ import annotations

import re
import signal
import time

import pytest

from lab.routers import BirdRouter
from lab.wait import wait_for
from tests.e2e.conftest import MakeCluster

pytestmark = pytest.mark.lab

N1, N2 = "192.0.2.11", "192.0.2.12"
BOTH = frozenset({N1, N2})
DELAY = 3.0  # --shutdown-delay-duration of the fake apiserver
TOL = 0.5


def test_apiserver_shutdown_withdraws_before_it_stops_serving(make_cluster: MakeCluster) -> None:
    c, w = make_cluster(n_nodes=2, period=5.0, timeout=3.0, threshold=3)
    t = time.monotonic()
    c.start_all()
    w.wait(lambda h: h == BOTH, 15.0, "both announced", t)
    api = c.apiservers["node1"]

    ts = api.shutdown(DELAY)  # /readyz fails from ts; /livez 200 until ts + DELAY
    tg = w.wait(lambda h: N1 not in h, DELAY + 5.0, "node1 withdrawn at the announcement", ts)
    assert tg - ts < DELAY - TOL, w.describe(ts)  # while /livez still answered 200
    # The line is written in the same event-loop turn as the withdrawal, after the UPDATE has
    # left: a reader that saw the route go may be a few ms early, so poll (bounded).
    wait_for(
        lambda: "the apiserver announced its shutdown" in c.log("node1"),
        2.0,
        what="node1 logs the announced shutdown",
        describe=lambda: c.log("node1"),
    )
    log = c.log("node1")
    assert "consecutive failed checks" not in log, log  # no failure was needed

    # Stays out through the delay and the refused phase; the restarted apiserver brings it back.
    time.sleep(DELAY + 1.0)
    assert N1 not in w.current(), w.describe(ts)
    tr = api.set_mode("healthy")
    tb = w.wait(lambda h: h == BOTH, 10.0, "node1 back after the restart", tr)
    assert not w.violations(lambda h: N1 not in h, tg + 0.01, tr), w.describe(ts)
    assert tb > tr
    assert "no longer reports a shutdown" in c.log("node1")
    print(f"shutdown announced -> withdrawn {tg - ts:.3f} s (delay {DELAY:g} s)")
    assert (c.metric("node1", "vipgate_readiness_reads_total", outcome="shutdown") or 0) >= 1


def test_sigterm_drains_with_graceful_shutdown_then_withdraws(make_cluster: MakeCluster) -> None:
    drain = 2.0
    c, w = make_cluster(n_nodes=2, graceful_shutdown=drain)
    router = c.topo.router
    assert isinstance(router, BirdRouter)
    t = time.monotonic()
    c.start_all()
    w.wait(lambda h: h == BOTH, 15.0, "both announced", t)

    exit1 = c.watch_exit("node1")
    ts = c.signal("node1", signal.SIGTERM)
    tg = w.wait(lambda h: h == frozenset({N2}), drain + 5.0, "node1 out of the ECMP set", ts)
    code, te = exit1.wait(drain + 3.0 + TOL + 2.0)
    assert code == 0, c.log("node1")
    # The next hop left while vipgate still held its session and path (the GRACEFUL_SHUTDOWN
    # re-announcement), not with the withdrawal at the end of the drain.
    assert tg < te and tg - ts < drain - TOL, w.describe(ts)
    assert drain - TOL <= te - ts <= drain + 3.0 + TOL, f"exit {te - ts:.3f}s after SIGTERM"
    print(f"SIGTERM -> out of the ECMP set {tg - ts:.3f} s, -> exit {te - ts:.3f} s")
    log = c.log("node1")
    assert "announcing the VIP with GRACEFUL_SHUTDOWN (65535:0) for 2 s" in log, log
    shown = router.birdc("show", "protocols", "all")
    assert re.search(
        r"Message:\s+vipgate shutting down: VIP withdrawn after a 2 s GRACEFUL_SHUTDOWN drain",
        shown,
    ), shown


def test_failed_check_during_the_drain_withdraws_at_once(make_cluster: MakeCluster) -> None:
    drain = 20.0  # long: the crash must end it, not the clock
    c, w = make_cluster(n_nodes=2, graceful_shutdown=drain)
    router = c.topo.router
    assert isinstance(router, BirdRouter)
    t = time.monotonic()
    c.start_all()
    w.wait(lambda h: h == BOTH, 15.0, "both announced", t)

    exit1 = c.watch_exit("node1")
    ts = c.signal("node1", signal.SIGTERM)
    w.wait(lambda h: h == frozenset({N2}), 5.0, "node1 out of the ECMP set", ts)
    time.sleep(0.5)
    assert c.running("node1")  # draining
    tk = c.apiservers["node1"].kill()
    code, te = exit1.wait(10.0)
    assert code == 0, c.log("node1")
    assert te - tk < 3.0 + TOL, f"exit {te - tk:.3f}s after the crash (drain {drain:g}s)"
    shown = router.birdc("show", "protocols", "all")
    assert "health check failed during the drain" in shown, shown
    print(f"crash during the drain -> exit {te - tk:.3f} s (drain {drain:g} s)")
