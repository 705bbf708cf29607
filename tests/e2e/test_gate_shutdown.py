"""SIGTERM with a silent peer: vipgate exits 0 within 3 s even so (docs/design.md, "The manager").

BIRD is frozen (SIGSTOP: TCP stays open, nothing is answered) when vipgate gets SIGTERM; vipgate
must still exit 0 within 3 s, and once BIRD runs again it finds the withdrawal and the Cease /
Administrative Shutdown that vipgate left in the socket: node1's next hop goes at once, without
waiting for the hold time.
"""

from __future__ import annotations

import re
import signal
import time

import pytest

from lab.cluster import vip_on_lo
from lab.netns import Lab
from lab.routers import BirdRouter
from tests.e2e.conftest import MakeCluster

pytestmark = pytest.mark.lab

N1, N2, N3 = "192.0.2.11", "192.0.2.12", "192.0.2.13"
ALL = frozenset({N1, N2, N3})
SHUTDOWN_BOUND = 3.0  # the bound for the exit after SIGTERM
TOL = 0.5


def test_sigterm_with_frozen_router_exits_within_bound(make_cluster: MakeCluster, lab: Lab) -> None:
    c, w = make_cluster()
    router = c.topo.router
    assert isinstance(router, BirdRouter)
    t = time.monotonic()
    c.start_all()
    w.wait(lambda h: h == ALL, 10.0, "all three announced", t)

    router.freeze()
    try:
        exit1 = c.watch_exit("node1")
        ts = c.signal("node1", signal.SIGTERM)
        code, te = exit1.wait(SHUTDOWN_BOUND + TOL + 2.0)
        assert code == 0, c.log("node1")
        assert te - ts <= SHUTDOWN_BOUND + TOL, f"exit {te - ts:.3f}s after SIGTERM"
        assert not vip_on_lo(lab, c.topo.node("node1"))
        # The router is frozen: its kernel route cannot have changed yet.
        assert N1 in w.current(), w.describe(ts)
    finally:
        t_thaw = time.monotonic()
        router.thaw()
    tg = w.wait(lambda h: h == frozenset({N2, N3}), 5.0, "node1 withdrawn after thaw", t_thaw)
    assert tg - t_thaw < 1.0, w.describe(t_thaw)
    shown = router.birdc("show", "protocols", "all")
    assert re.search(r"Message:\s+vipgate shutting down", shown), shown
