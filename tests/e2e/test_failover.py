"""End-to-end failover: 3 nodes, BIRD ECMP router, one vipgate per node.

Every test builds its own lab (``make_cluster``: namespaces, BIRD with ``merge paths on``, a fake
kube-apiserver per node with kubeadm-shaped PKI), starts ``python -m vipgate manager`` in the node
namespaces with kube-vip's environment, and asserts on the router's *kernel* route for the VIP
(one next hop per announcing node), recorded event by event by a :class:`lab.routemon.RouteWatch`.

Bounds come from the configured timing (conftest: period 1 s, timeout 1 s, threshold 3, hold 9 s)
plus ``TOL`` for this shared, noisy machine. A fault begins at the monotonic time the fake
apiserver reports for the mode switch; route times are when the kernel change was seen.
"""

from __future__ import annotations

import math
import re
import signal
import time
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest

from lab.cluster import Cluster, vip_on_lo
from lab.netns import Lab
from lab.routemon import RouteWatch
from lab.routers import BirdRouter
from lab.wait import wait_for
from tests.e2e.conftest import HOLD, PERIOD, THRESHOLD, TIMEOUT, MakeCluster
from vipgate.bgp.fsm import SessionConfig

pytestmark = pytest.mark.lab

N1, N2, N3 = "192.0.2.11", "192.0.2.12", "192.0.2.13"
ALL = frozenset({N1, N2, N3})
OTHERS = frozenset({N2, N3})

TOL = 0.5  # scheduling noise on a shared 2-core machine
# A check already in flight when a fault is switched on may fail a few ms before the switch
# is reported (the apiserver aborts it): the lower bounds allow that much.
EPS = 0.05
FAST = 0.2  # control_plane_health_check_fast_period_seconds' default
FAST_ENV = "control_plane_health_check_fast_period_seconds"
STARTUP = 10.0  # process start (Python imports) + BGP session + first check, on a busy machine
WATCH = (THRESHOLD + 1) * PERIOD  # long enough for the gate to have reached its threshold

# vipgate's reconnect backoff: the first retry after a session drop comes at most this late.
BACKOFF_FIRST = SessionConfig(65000, IPv4Address(N1), 65001).backoff_first

Pred = Callable[[frozenset[str]], bool]


def has(*hops: str) -> Pred:
    return lambda h: set(hops) <= h


def lacks(hop: str) -> Pred:
    return lambda h: hop not in h


def exactly(hops: frozenset[str]) -> Pred:
    return lambda h: h == hops


def start_all_up(c: Cluster, w: RouteWatch) -> float:
    """Start the three vipgates; wait until all three next hops are in the route."""
    t = time.monotonic()
    c.start_all()
    return w.wait(exactly(ALL), STARTUP, "all three nodes announced", t)


def probe_count(c: Cluster, name: str, outcome: str) -> float:
    v = c.metric(name, "vipgate_probe_results_total", outcome=outcome)
    assert v is not None, f"no vipgate_probe_results_total{{outcome={outcome!r}}} on {name}"
    return v


def assert_no_violation(w: RouteWatch, pred: Pred, t_from: float, what: str) -> None:
    bad = w.violations(pred, t_from, time.monotonic())
    assert not bad, f"{what}: broken at {bad[0]}\n{w.describe(t_from)}"


def assert_withdrawn_at_threshold(
    w: RouteWatch, t0: float, lower: float, upper: float, what: str
) -> float:
    """node1's next hop leaves the route in [t0+lower, t0+upper] and not before; returns when."""
    tg = w.wait(lacks(N1), upper + 5.0, f"{what}: node1 withdrawn", t0)
    assert not w.violations(has(N1), t0, tg - 1e-6), f"{what}: node1 left early\n{w.describe(t0)}"
    gone = tg - t0
    assert gone >= lower, f"{what}: node1 gone after {gone:.3f}s < {lower:.3f}s\n{w.describe(t0)}"
    assert gone <= upper, f"{what}: node1 gone after {gone:.3f}s > {upper:.3f}s\n{w.describe(t0)}"
    return tg


def assert_back_on_first_200(c: Cluster, w: RouteWatch, what: str) -> float:
    """Switch node1's apiserver to healthy: back within one period, on the first 200."""
    ok_before = probe_count(c, "node1", "ok")
    t1 = c.apiservers["node1"].set_mode("healthy")
    tb = w.wait(has(N1), PERIOD + TOL + 5.0, f"{what}: node1 back", t1)
    back = tb - t1
    assert back >= 0, f"{what}: node1 back before the apiserver was\n{w.describe(t1)}"
    assert back <= PERIOD + TOL, f"{what}: node1 back after {back:.3f}s\n{w.describe(t1)}"
    # Read before the next check is due (one period later): exactly one 200 so far.
    assert probe_count(c, "node1", "ok") == ok_before + 1, "announced on the first 200"
    return tb


def log_having(c: Cluster, name: str, text: str, offset: int = 0) -> str:
    """Node `name`'s vipgate log (from `offset`) once it holds `text`, waiting up to TOL: vipgate
    hands a route change to BGP before it logs it (the manager's order), so the router's kernel
    may have the change a moment before the line is in the log."""
    wait_for(
        lambda: text in c.log(name)[offset:],
        TOL,
        0.02,
        what=f"{text!r} in {name}'s vipgate log",
        describe=lambda: c.log(name)[offset:],
    )
    return c.log(name)[offset:]


def bird(c: Cluster) -> BirdRouter:
    r = c.topo.router
    assert isinstance(r, BirdRouter)
    return r


def bird_protocol(router: BirdRouter, neighbor: str) -> str:
    """The name of BIRD's BGP protocol for `neighbor` (from ``show protocols all``)."""
    name = ""
    for line in router.birdc("show", "protocols", "all").splitlines():
        parts = line.split()
        if line and not line[0].isspace() and len(parts) > 1 and parts[1] == "BGP":
            name = parts[0]
        elif line.strip().startswith("Neighbor address:") and parts[-1] == neighbor:
            return name
    raise AssertionError(f"no BIRD protocol for {neighbor}")


# ------------------------------------------------------------------------------------ 1


def test_refusing_at_start_never_announced_then_announced_on_first_200(
    make_cluster: MakeCluster,
) -> None:
    c, w = make_cluster()
    c.apiservers["node1"].set_mode("refuse")
    t_start = time.monotonic()
    c.start_all()
    t_others = w.wait(has(N2, N3), STARTUP, "node2 and node3 announced", t_start)
    w.hold(exactly(OTHERS), WATCH, "only node2 and node3 announced", t_start)
    assert_no_violation(w, lacks(N1), t_start, "node1 never announced while refusing")
    assert probe_count(c, "node1", "refused") >= THRESHOLD
    log = c.log("node1")
    assert "health check failing since start" in log and "VIP not announced" in log, log

    assert_back_on_first_200(c, w, "healthy after refusing at start")
    assert_no_violation(w, has(N2, N3), t_others, "node2 and node3 stay")


# ------------------------------------------------------------------------------------ 2, 4, 5


@pytest.mark.parametrize(
    ("mode", "reason", "fast"),
    [
        ("refuse", "last refused: connection refused", FAST),
        ("refuse", "last refused: connection refused", 0.0),
        ("fail", "last http_status: HTTP 500", FAST),
    ],
    ids=["refused", "refused-kube-vip-cadence", "http500"],
)
def test_fault_withdraws_after_threshold_and_returns_on_first_200(
    make_cluster: MakeCluster, mode: str, reason: str, fast: float
) -> None:
    c, w = make_cluster(extra_env={FAST_ENV: f"{fast:g}"})
    t_up = start_all_up(c, w)
    t0 = c.apiservers["node1"].set_mode(mode)
    # A refusing apiserver closes the kept-alive connection, so the first failing check runs at
    # once (the event-driven check, gate rule 8) and the threshold-th one (threshold - 2) spacings
    # after the next; the spacing is the fast period after a refused check and the period with
    # the fast period off (kube-vip's cadence). An HTTP 500 keeps the connection and the period:
    # the first failing check is at the first tick after t0, the threshold-th one
    # (threshold - 1) periods later.
    if mode == "refuse":
        spacing = fast or PERIOD
        lower, upper = (THRESHOLD - 2) * spacing, PERIOD + (THRESHOLD - 1) * spacing
    else:
        lower, upper = (THRESHOLD - 1) * PERIOD, THRESHOLD * PERIOD
    assert_withdrawn_at_threshold(w, t0, lower - EPS, upper + TOL, mode)
    w.hold(lacks(N1), PERIOD, "node1 stays withdrawn while failing", t0)
    log = c.log("node1")
    assert f"{THRESHOLD} consecutive failed checks (threshold {THRESHOLD})" in log, log
    assert reason in log, log
    assert "withdrawing the VIP" in log, log

    assert_back_on_first_200(c, w, f"recovery from {mode}")
    log_having(c, "node1", "health check passed (HTTP 200) after")
    assert_no_violation(w, has(N2, N3), t_up, "node2 and node3 stay throughout")


# ------------------------------------------------------------------------------------ 401/403


@pytest.mark.parametrize(("mode", "status"), [("unauthorized", 401), ("forbidden", 403)])
def test_access_denied_is_an_access_problem_once_per_episode(
    make_cluster: MakeCluster, mode: str, status: int
) -> None:
    advice = "refuses anonymous access to /livez"
    c, w = make_cluster()
    t_up = start_all_up(c, w)
    t0 = c.apiservers["node1"].set_mode(mode)
    assert_withdrawn_at_threshold(
        w, t0, (THRESHOLD - 1) * PERIOD - EPS, THRESHOLD * PERIOD + TOL, str(status)
    )
    w.hold(lacks(N1), 2 * PERIOD, f"node1 stays withdrawn on {status}", t0)
    # The checks go on after the withdrawal: two more within two periods of it. The second is
    # due two periods after the check that withdrew, so the hold ends just as it runs (only the
    # route's way to the router's kernel and the watch lie between): its count may take up to
    # TOL longer to show.
    wait_for(
        lambda: probe_count(c, "node1", "http_status") >= THRESHOLD + 2,
        TOL,
        0.05,
        what=f"{THRESHOLD + 2} failed checks on {status}",
        describe=lambda: probe_count(c, "node1", "http_status"),
    )
    log = c.log("node1")
    lines = [ln for ln in log.splitlines() if advice in ln]
    assert len(lines) == 1, f"advice once per episode, not once per check:\n{log}"
    assert "access problem" in lines[0] and f"HTTP {status}" in lines[0], lines[0]
    assert f"last http_status: HTTP {status}" in log, log
    assert not re.search(r"apiserver (is )?down", log, re.IGNORECASE), log

    # A new episode teaches again.
    assert_back_on_first_200(c, w, f"recovery from {status}")
    c.apiservers["node1"].set_mode(mode)
    wait_for(
        lambda: c.log("node1").count(advice) == 2,
        PERIOD + TOL,
        0.02,
        what=f"the advice again in the second {status} episode",
        describe=lambda: c.log("node1"),
    )
    assert_no_violation(w, has(N2, N3), t_up, "node2 and node3 stay throughout")


# ------------------------------------------------------------------------------------ 3


def test_hang_withdraws_after_threshold_timeouts(make_cluster: MakeCluster) -> None:
    c, w = make_cluster()
    t_up = start_all_up(c, w)
    # Checks are on ticks one period apart; one that runs into its timeout starts the next at
    # the next tick, so consecutive hung checks are `spacing` apart (back to back when
    # timeout == period), and the threshold-th one ends (threshold-1)*spacing + timeout after
    # the first began -- which is within one period of the fault.
    spacing = max(1, math.ceil(TIMEOUT / PERIOD - 1e-9)) * PERIOD
    lower = (THRESHOLD - 1) * spacing + TIMEOUT - EPS
    upper = PERIOD + (THRESHOLD - 1) * spacing + TIMEOUT + TOL
    t0 = c.apiservers["node1"].set_mode("hang")
    assert_withdrawn_at_threshold(w, t0, lower, upper, "hang")
    log = log_having(c, "node1", f"{THRESHOLD} consecutive failed checks (threshold {THRESHOLD})")
    assert "last timeout" in log, log
    assert_no_violation(w, has(N2, N3), t_up, "node2 and node3 stay throughout")


# ------------------------------------------------------------------------------------ 6


def test_sigterm_withdraws_before_exit_and_removes_only_its_own_vip(
    make_cluster: MakeCluster, lab: Lab
) -> None:
    c, w = make_cluster()
    node1, node2 = c.topo.node("node1"), c.topo.node("node2")
    c.topo.add_vip(node2)  # present before vipgate starts: must be left there at exit
    t_up = start_all_up(c, w)
    assert vip_on_lo(lab, node1) and vip_on_lo(lab, node2)

    exit1 = c.watch_exit("node1")
    ts = c.signal("node1", signal.SIGTERM)
    code, te = exit1.wait(3.0 + TOL)  # the issue: exit 0 within 3 s
    assert code == 0, c.log("node1")
    tg = w.wait(lacks(N1), 1.0, "node1 withdrawn", ts)
    assert ts <= tg <= te, (
        f"route gone at +{tg - ts:.3f}s, exit seen at +{te - ts:.3f}s\n{w.describe(ts)}"
    )
    assert not vip_on_lo(lab, node1), "the VIP vipgate added is removed at exit"
    log1 = c.log("node1")
    assert "sent NOTIFICATION Cease/Administrative Shutdown" in log1, log1

    # The router saw Cease / Administrative Shutdown with the RFC 8203 message.
    router = bird(c)
    proto = bird_protocol(router, N1)
    shown = router.birdc("show", "protocols", "all", proto)
    assert "Received: Administrative shutdown" in shown, shown
    assert re.search(r"Message:\s+vipgate shutting down", shown), shown
    bird_log = (router.dir / "bird.log").read_text()
    assert (
        f'{proto}: Received: Administrative shutdown: "vipgate shutting down: SIGTERM' in bird_log
    )

    # node2's VIP was there before vipgate: withdrawn from BGP, but left on lo.
    exit2 = c.watch_exit("node2")
    ts2 = c.signal("node2", signal.SIGTERM)
    code2, te2 = exit2.wait(3.0 + TOL)
    assert code2 == 0, c.log("node2")
    tg2 = w.wait(lacks(N2), 1.0, "node2 withdrawn", ts2)
    assert ts2 <= tg2 <= te2, w.describe(ts2)
    assert vip_on_lo(lab, node2), "a VIP present before start is left on lo"
    assert "already on lo: left alone" in c.log("node2")
    assert_no_violation(w, has(N3), t_up, "node3 stays throughout")


# ------------------------------------------------------------------------------------ 7


def test_health_check_disabled_announces_at_once(make_cluster: MakeCluster) -> None:
    c, w = make_cluster()
    api1 = c.apiservers["node1"]
    api1.set_mode("fail")  # a probe would see 500 and withdraw
    api1.control.reset()
    t_start = time.monotonic()
    c.start("node1", {"control_plane_health_check_address": ""})
    ta = w.wait(has(N1), STARTUP, "node1 announced without a health check", t_start)
    c.start("node2")
    c.start("node3")
    w.wait(exactly(ALL), STARTUP, "all three announced", t_start)
    w.hold(has(N1), WATCH, "node1 stays announced (no health check)", t_start)
    assert_no_violation(w, has(N1), ta, "node1 stays announced")
    st = api1.stats()
    assert st.handshakes == 0 and st.requests == 0, f"node1's apiserver was probed: {st}"
    log = c.log("node1")
    assert "announcing the VIP unconditionally" in log, log


# ------------------------------------------------------------------------------------ 8


def test_wrong_ca_never_announced_and_names_the_ca(make_cluster: MakeCluster) -> None:
    c, w = make_cluster()
    other_ca = str(c.pki.other_ca_cert)
    t_start = time.monotonic()
    c.start("node1", {"control_plane_health_check_ca_path": other_ca})
    c.start("node2")
    c.start("node3")
    w.wait(has(N2, N3), STARTUP, "node2 and node3 announced", t_start)
    w.hold(exactly(OTHERS), WATCH, "node1 not announced with the wrong CA", t_start)
    assert_no_violation(w, lacks(N1), t_start, "node1 never announced")
    assert c.running("node1")
    assert probe_count(c, "node1", "tls_verify") >= THRESHOLD + 1
    log = c.log("node1")
    assert "certificate verify failed" in log, log
    assert other_ca in log, log
    taught = [ln for ln in log.splitlines() if "is not trusted by" in ln]
    assert len(taught) == 1, f"advice once per episode:\n{log}"
    assert other_ca in taught[0], taught[0]


# ------------------------------------------------------------------------------------ 9


def test_localhost_teaches_server_name_and_kubernetes_announces(
    make_cluster: MakeCluster,
) -> None:
    c, w = make_cluster()
    assert c.base_env["control_plane_health_check_address"] == "https://localhost:6443/livez"
    t_start = time.monotonic()
    c.start("node1", {"control_plane_health_check_server_name": ""})
    c.start("node2")
    c.start("node3")
    w.wait(has(N2, N3), STARTUP, "node2 and node3 announced", t_start)
    w.hold(exactly(OTHERS), WATCH, "node1 not announced (hostname mismatch)", t_start)
    assert_no_violation(w, lacks(N1), t_start, "node1 never announced")
    assert probe_count(c, "node1", "tls_hostname") >= THRESHOLD + 1
    log = c.log("node1")
    taught = [ln for ln in log.splitlines() if "but not localhost" in ln]
    assert len(taught) == 1, f"teaching line once per episode, not once per check:\n{log}"
    line = taught[0]
    assert "certificate names" in line, line
    assert "kubernetes, kubernetes.default, kubernetes.default.svc" in line, line
    assert "control_plane_health_check_server_name=kubernetes" in line, line

    # The fix the line suggests: server name kubernetes -> announced.
    offset = len(log)
    assert c.stop("node1") == 0
    t_restart = time.monotonic()
    c.start("node1", {"control_plane_health_check_server_name": "kubernetes"})
    w.wait(has(N1), STARTUP, "node1 announced with server name kubernetes", t_restart)
    new_log = log_having(c, "node1", "health check passed (HTTP 200)", offset)
    assert "but not localhost" not in new_log, new_log


# ------------------------------------------------------------------------------------ 10


def test_bird_restart_keeps_unhealthy_node_withdrawn(make_cluster: MakeCluster) -> None:
    c, w = make_cluster()
    router = bird(c)
    start_all_up(c, w)
    t0 = c.apiservers["node1"].set_mode("refuse")
    w.wait(lacks(N1), THRESHOLD * PERIOD + TOL + 5.0, "node1 withdrawn", t0)

    t_restart = time.monotonic()
    router.restart()
    t_ready = time.monotonic()
    # BIRD's stop flushes its kernel routes; the sessions come back when vipgate retries: the
    # first retry is at most backoff_first after the session dropped, a second (if BIRD was not
    # ready yet) at most 2 * backoff_first later.
    bound = 2 * BACKOFF_FIRST + TOL
    tb = w.first(exactly(OTHERS), t_restart, bound + 10.0, "node2 and node3 back", t_restart)
    flushed = [x for x in w.samples if t_restart <= x.t <= tb and not x.hops]
    assert flushed, f"BIRD's restart flushed the route\n{w.describe(t_restart)}"
    assert tb - t_ready <= bound, f"back {tb - t_ready:.3f}s after BIRD was ready\n" + (
        w.describe(t_restart)
    )
    router.wait_session(N1, "Established", timeout=bound + 5.0)
    w.hold(exactly(OTHERS), WATCH, "node1 not re-announced while unhealthy", t_restart)
    assert router.session_state(N1) == "Established", router.describe()
    assert_no_violation(w, lacks(N1), t_restart, "node1 never re-announced after the restart")
    assert c.running("node1")
    # Control: the session is usable; node1 comes back as soon as its apiserver does.
    assert_back_on_first_200(c, w, "healthy after BIRD restart")


# ------------------------------------------------------------------------------------ 11


def test_sigkill_withdrawn_without_waiting_for_hold_time(make_cluster: MakeCluster) -> None:
    c, w = make_cluster()
    t_up = start_all_up(c, w)
    tk = c.signal("node1", signal.SIGKILL)
    tg = w.wait(lacks(N1), HOLD + 5.0, "node1 withdrawn after SIGKILL", tk)
    # The kernel closes the TCP session at once; the hold time (9 s, BIRD may shorten it by
    # up to 25%) is not what removes the route.
    assert tg - tk < 1.0, f"gone after {tg - tk:.3f}s (hold {HOLD}s)\n{w.describe(tk)}"
    assert_no_violation(w, has(N2, N3), t_up, "node2 and node3 stay throughout")
