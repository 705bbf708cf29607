"""The health gate: every rule stated at the top of health/gate.py by table, then long mixed
sequences against a ten-line reference model (hypothesis)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vipgate.health.gate import (
    LOOK_OFTEN_FOR,
    Action,
    Address,
    AdviceKind,
    AdviceLevel,
    Due,
    Effect,
    Gate,
    GateError,
    GateState,
    Level,
    Step,
    Transition,
    UnhealthyAction,
    advice_for,
)
from vipgate.health.probe import ErrorKind, ProbeResult

URL = "https://localhost:6443/livez"
NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "node1",
    "192.0.2.11",
)

OK = ProbeResult(True, 200, ErrorKind.NONE, "", 0.004)
RESULTS: dict[str, ProbeResult] = {
    "ok": OK,
    "refused": ProbeResult(False, None, ErrorKind.REFUSED, "connection refused (::1:6443)", 0.001),
    "reset": ProbeResult(False, None, ErrorKind.RESET, "connection reset by the server", 0.01),
    "timeout": ProbeResult(False, None, ErrorKind.TIMEOUT, "no response headers within 1 s", 1.0),
    "500": ProbeResult(False, 500, ErrorKind.HTTP_STATUS, "HTTP 500: [-]etcd failed", 0.01),
    "301": ProbeResult(False, 301, ErrorKind.HTTP_STATUS, "HTTP 301 -> /x", 0.01),
    "204": ProbeResult(False, 204, ErrorKind.HTTP_STATUS, "HTTP 204 No Content", 0.01),
    "401": ProbeResult(False, 401, ErrorKind.HTTP_STATUS, "HTTP 401 Unauthorized", 0.01),
    "403": ProbeResult(False, 403, ErrorKind.HTTP_STATUS, "HTTP 403 Forbidden", 0.01),
    "hostname": ProbeResult(
        False,
        None,
        ErrorKind.TLS_HOSTNAME,
        "certificate verify failed: Hostname mismatch",
        0.01,
        cert_names=NAMES,
        verified_name="localhost",
        ca_path="/etc/kubernetes/pki/ca.crt",
    ),
    "ca": ProbeResult(
        False,
        None,
        ErrorKind.TLS_VERIFY,
        "certificate verify failed: unable to get local issuer certificate "
        "(verified against CA file /tmp/wrong.crt)",
        0.01,
        ca_path="/tmp/wrong.crt",
    ),
    "tls": ProbeResult(False, None, ErrorKind.TLS_OTHER, "TLS handshake failed", 0.01),
    "protocol": ProbeResult(False, None, ErrorKind.PROTOCOL, "invalid HTTP response", 0.01),
    "dns": ProbeResult(False, None, ErrorKind.DNS, "cannot resolve x", 0.01),
    "other": ProbeResult(False, None, ErrorKind.OTHER, "no route to host", 0.01),
}
A, W = Action.ANNOUNCE, Action.WITHDRAW


def drive(gate: Gate, names: list[str], t0: float = 0.0) -> list[Step]:
    gate.start(t0)
    steps = []
    for i, name in enumerate(names):
        steps.append(gate.feed(RESULTS[name], t0 + i + 0.01))
    return steps


# ---------------------------------------------------------------------------- rule 1
def test_rule1_disabled_announces_at_start_unconditionally() -> None:
    gate = Gate("", threshold=3, period=5.0)
    assert not gate.enabled and not gate.announced
    step = gate.start(10.0)
    assert step.action is Action.ANNOUNCE
    assert step.next_check_at is None  # no checks at all
    assert gate.state is GateState.DISABLED and gate.announced
    t = step.transition
    assert t is not None and t.reason == "disabled" and t.new is GateState.DISABLED
    assert "announcing the VIP unconditionally" in t.message
    assert dict(gate.transition_counts) == {"disabled": 1}
    with pytest.raises(GateError):
        gate.feed(RESULTS["refused"], 11.0)


# ---------------------------------------------------------------------------- rules 2-5 by table
@dataclass(frozen=True)
class Case:
    name: str
    threshold: int
    results: list[str]
    actions: list[Action | None]
    final: GateState
    failures: int


CASES = [
    # rule 2: nothing before a success; the first success announces
    Case("start: first check ok", 3, ["ok"], [A], GateState.UP, 0),
    Case("start: failing never announces", 3, ["refused"] * 5, [None] * 5, GateState.DOWN, 5),
    Case("start: late success", 3, ["500", "500", "ok"], [None, None, A], GateState.UP, 0),
    Case(
        "start: down, then up",
        2,
        ["timeout", "timeout", "timeout", "ok"],
        [None, None, None, A],
        GateState.UP,
        0,
    ),
    # rule 3: every non-200 outcome is a failure (threshold 1 makes each one withdraw)
    *[
        Case(f"rule 3: {k} is a failure", 1, ["ok", k], [A, W], GateState.DOWN, 1)
        for k in RESULTS
        if k != "ok"
    ],
    # rule 4: a success resets the counter; announces only if not announced
    Case(
        "success resets",
        3,
        ["ok", "500", "500", "ok", "500", "500"],
        [A] + [None] * 5,
        GateState.UP,
        2,
    ),
    Case("repeat success: one announce", 3, ["ok"] * 4, [A, None, None, None], GateState.UP, 0),
    # rule 5: withdraw exactly when the counter reaches the threshold, once
    Case(
        "threshold 3",
        3,
        ["ok", "refused", "refused", "refused", "refused"],
        [A, None, None, W, None],
        GateState.DOWN,
        4,
    ),
    Case("threshold 1", 1, ["ok", "timeout", "ok"], [A, W, A], GateState.UP, 0),
    Case(
        "mixed kinds count together",
        3,
        ["ok", "refused", "timeout", "500"],
        [A, None, None, W],
        GateState.DOWN,
        3,
    ),
    Case(
        "recovery on the first 200", 2, ["ok", "500", "500", "ok"], [A, None, W, A], GateState.UP, 0
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rules_2_to_5(case: Case) -> None:
    gate = Gate(URL, case.threshold, 1.0)
    start = gate.start(0.0)
    assert start.action is None and start.transition is None and not gate.announced
    assert start.next_check_at == 0.0  # rule 2: the first check runs immediately
    steps = drive_from_started(gate, case.results)
    assert [s.action for s in steps] == case.actions
    assert gate.state is case.final
    assert gate.consecutive_failures == case.failures
    assert gate.announced == (case.final is GateState.UP)
    # each action comes with exactly one transition record
    for s in steps:
        if s.action is not None:
            assert s.transition is not None and s.transition.action is s.action


def drive_from_started(gate: Gate, names: list[str]) -> list[Step]:
    return [gate.feed(RESULTS[n], i + 0.01) for i, n in enumerate(names)]


def test_transition_records_carry_the_reason() -> None:
    gate = Gate(URL, 3, 1.0)
    steps = drive(gate, ["ok", "500", "timeout", "refused", "refused", "ok"])
    w = steps[3].transition
    assert w is not None
    assert (w.old, w.new, w.action) == (GateState.UP, GateState.DOWN, Action.WITHDRAW)
    assert w.reason == "refused" and w.error is ErrorKind.REFUSED and w.status is None
    assert w.consecutive_failures == 3 and w.threshold == 3
    assert "refused: connection refused (::1:6443)" in w.message
    assert "3 consecutive failed checks (threshold 3)" in w.message
    assert "withdrawing the VIP" in w.message
    assert steps[4].transition is None  # still down: no new line
    a = steps[5].transition
    assert a is not None and a.reason == "healthy" and a.failures_before == 4
    assert a.message == "health check passed (HTTP 200) after 4 failed checks: announcing the VIP"
    first = steps[0].transition
    assert (
        first is not None and first.message == "health check passed (HTTP 200): announcing the VIP"
    )
    assert dict(gate.transition_counts) == {"healthy": 2, "refused": 1}


def test_failing_from_start_is_logged_once_without_action() -> None:
    gate = Gate(URL, 3, 1.0)
    steps = drive(gate, ["ca"] * 6)
    lines = [s.transition for s in steps if s.transition is not None]
    assert len(lines) == 1 and steps[2].transition is lines[0]
    t = lines[0]
    assert t.action is None and (t.old, t.new) == (GateState.STARTING, GateState.DOWN)
    assert "VIP not announced" in t.message and "/tmp/wrong.crt" in t.message
    assert "tls_verify" in t.message
    assert gate.consecutive_failures == 6


def test_500_transition_shows_the_status() -> None:
    gate = Gate(URL, 1, 1.0)
    steps = drive(gate, ["ok", "500"])
    t = steps[1].transition
    assert t is not None and t.status == 500 and t.reason == "http_status"
    assert "HTTP 500: [-]etcd failed" in t.message


# ---------------------------------------------------------------------------- teaching
def test_hostname_advice_names_the_certificate_names_and_the_fix() -> None:
    adv = advice_for(RESULTS["hostname"], URL)
    assert adv is not None and adv.kind is AdviceKind.TLS_HOSTNAME
    assert adv.message.startswith(
        "the apiserver certificate names kubernetes, kubernetes.default, kubernetes.default.svc,"
        " kubernetes.default.svc.cluster.local, node1, 192.0.2.11 but not localhost: "
        "set control_plane_health_check_server_name=kubernetes, or use an address the "
        "certificate names"
    )


def test_hostname_advice_without_names_still_says_what_to_do() -> None:
    r = ProbeResult(False, None, ErrorKind.TLS_HOSTNAME, "mismatch", 0.0, verified_name="127.0.0.1")
    adv = advice_for(r, "https://127.0.0.1:6443/livez")
    assert adv is not None
    assert "does not name 127.0.0.1" in adv.message
    assert "control_plane_health_check_server_name" in adv.message


def test_hostname_advice_suggests_a_dns_name_when_kubernetes_is_absent() -> None:
    r = ProbeResult(
        False, None, ErrorKind.TLS_HOSTNAME, "", 0.0,
        cert_names=("192.0.2.11", "*.example.test", "api.example.test"),
        verified_name="localhost",
    )  # fmt: skip
    adv = advice_for(r, URL)
    assert adv is not None and "server_name=api.example.test" in adv.message


@pytest.mark.parametrize("status", ["401", "403"])
def test_access_advice_for_401_and_403(status: str) -> None:
    adv = advice_for(RESULTS[status], URL)
    assert adv is not None and adv.kind is AdviceKind.ACCESS_DENIED
    assert adv.message.startswith(
        f"the apiserver refuses anonymous access to /livez (HTTP {status}"
    )
    assert "not the apiserver being down" in adv.message
    assert "system:public-info-viewer" in adv.message


def test_ca_advice_names_the_ca_path() -> None:
    adv = advice_for(RESULTS["ca"], URL)
    assert adv is not None and adv.kind is AdviceKind.TLS_VERIFY
    assert "/tmp/wrong.crt" in adv.message and "control_plane_health_check_ca_path" in adv.message


@pytest.mark.parametrize("name", ["refused", "timeout", "500", "reset", "ok"])
def test_no_advice_for_plain_outages(name: str) -> None:
    assert advice_for(RESULTS[name], URL) is None


def test_advice_once_per_episode_not_per_check() -> None:
    """(The 200 first ends the apiserver's start-up, so the 401 is advised at once.)"""
    gate = Gate(URL, 3, 1.0)
    seq = ["ok"] + ["hostname"] * 4 + ["timeout", "hostname", "401", "401"]
    seq += ["ok"] + ["hostname"] * 2
    steps = drive(gate, seq)
    kinds = [s.advice.kind if s.advice else None for s in steps]
    H, D = AdviceKind.TLS_HOSTNAME, AdviceKind.ACCESS_DENIED
    assert kinds == [None, H, None, None, None, None, None, D, None, None, H, None]
    assert {s.advice.level for s in steps if s.advice} == {AdviceLevel.ERROR}


# ---------------------------------------------------------------------------- rule 6: cadence
@pytest.mark.parametrize(
    ("ends", "dues"),
    [
        ([100.02], [101.0]),  # quick check: next tick
        ([101.0], [101.0]),  # ended exactly on the tick: that tick (no overlap, no skip)
        ([101.5], [101.0]),  # ran past a tick (timeout > period, or late): that tick, at once
        ([101.004], [101.0]),  # timed out just past the tick (timeout == period): take it now
        ([102.5], [102.0]),  # ran past two ticks: the latest passed, at once (no burst)
        ([100.1, 103.2, 104.05], [101.0, 103.0, 104.0]),
        ([100.1, 103.2, 103.21], [101.0, 103.0, 104.0]),  # one overdue tick, not three
        ([100.999999], [101.0]),
    ],
)
def test_rule6_fixed_cadence_from_start(ends: list[float], dues: list[float]) -> None:
    gate = Gate(URL, 3, 1.0)
    assert gate.start(100.0).next_check_at == 100.0
    got = [gate.feed(OK, t).next_check_at for t in ends]
    assert got == dues


def test_rule6_no_drift_over_many_checks() -> None:
    gate = Gate(URL, 3, 0.1)
    t0 = 1000.0
    gate.start(t0)
    due = gate.next_check_at
    for k in range(1, 5001):
        assert due is not None
        due = gate.feed(OK, due + 0.03).next_check_at  # each check takes 30 ms
        assert due == t0 + k * 0.1


def test_misuse_is_an_error() -> None:
    gate = Gate(URL, 3, 1.0)
    with pytest.raises(GateError):
        gate.feed(OK, 0.0)
    gate.start(0.0)
    with pytest.raises(GateError):
        gate.start(1.0)
    with pytest.raises(ValueError):
        Gate(URL, 0, 1.0)
    with pytest.raises(ValueError):
        Gate(URL, 3, 0.0)


# ---------------------------------------------------------------------------- property test
def reference(oks: list[bool], threshold: int) -> list[Action | None]:
    """Rules 2, 4 and 5 in ten lines."""
    announced, failures, out = False, 0, []
    for ok in oks:
        failures = 0 if ok else failures + 1
        if ok and not announced:
            announced, action = True, Action.ANNOUNCE
        elif not ok and announced and failures >= threshold:
            announced, action = False, Action.WITHDRAW
        else:
            action = None
        out.append(action)
    return out


FAIL_NAMES = sorted(k for k in RESULTS if k != "ok")
checks = st.lists(
    st.one_of(st.just("ok"), st.sampled_from(FAIL_NAMES)).map(str),
    min_size=0,
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(
    names=checks,
    threshold=st.integers(1, 6),
    okbias=st.booleans(),
    durations=st.lists(st.floats(0.0, 3.5), min_size=200, max_size=200),
    period=st.sampled_from([0.5, 1.0, 5.0]),
)
def test_property_matches_reference_model(
    names: list[str], threshold: int, okbias: bool, durations: list[float], period: float
) -> None:
    if okbias:  # make long healthy runs likely too
        names = ["ok" if i % 3 else n for i, n in enumerate(names)]
    gate = Gate(URL, threshold, period)
    t0 = 50.0
    due = gate.start(t0).next_check_at
    expected = reference([RESULTS[n].ok for n in names], threshold)
    advised: set[AdviceKind] = set()
    starting, first, answers, named = True, None, 0, False  # the apiserver's start-up
    ACCESS = AdviceKind.ACCESS_DENIED
    failures = 0
    last_tick = 0  # the first check used tick 0
    for name, want, dur in zip(names, expected, durations, strict=False):
        assert due is not None
        end = due + dur * period
        step = gate.feed(RESULTS[name], end)
        assert step.action is want
        # one transition per action; transitions without action only STARTING -> DOWN
        if step.action is not None:
            assert step.transition is not None and step.transition.action is step.action
        elif step.transition is not None:
            assert (step.transition.old, step.transition.new) == (
                GateState.STARTING,
                GateState.DOWN,
            )
        # counter
        failures = 0 if RESULTS[name].ok else failures + 1
        assert gate.consecutive_failures == failures
        # advice: first occurrence of its kind in an episode, never again in it; no access
        # advice during the apiserver's start-up (from the start or a refused or reset
        # connection until a 200, or 3 answers and 10 s), a 500 then named once at INFO
        r = RESULTS[name]
        if r.ok:
            advised.clear()
            starting = False
            assert step.advice is None
        else:
            if r.error in (ErrorKind.REFUSED, ErrorKind.RESET):
                starting, first, answers, named = True, None, 0, False
            elif r.status is not None and starting:
                first = end if first is None else first
                answers += 1
                starting = not (answers >= 3 and end - first >= 10.0)
            adv = advice_for(r, URL)
            if adv is None and r.status == 500 and starting and not named:
                named = True
                assert step.advice is not None and step.advice.kind is AdviceKind.STARTING_UP
                assert step.advice.level is AdviceLevel.INFO
            elif adv is None or adv.kind in advised or (adv.kind is ACCESS and starting):
                assert step.advice is None  # nothing new; or no access advice yet (rule 4)
            else:
                assert step.advice == adv
                advised.add(adv.kind)
        # rule 6: next check on a tick of the start grid, later than the last one: the next
        # one, or the latest one that has passed when the check ran past it (at once, never
        # more than one period overdue)
        nxt = step.next_check_at
        assert nxt is not None
        k = round((nxt - t0) / period)
        assert nxt == t0 + k * period
        assert k > last_tick and nxt > end - period - 1e-6
        assert k == max(last_tick + 1, math.floor((end - t0) / period))
        last_tick = k
        due = nxt
    actions = [a for a in expected if a is not None]
    assert gate.announced == (bool(actions) and actions[-1] is Action.ANNOUNCE)


# ---------------------------------------------------------------------------- rule 7: fast period
FAST = 0.2
READYZ_SHUTDOWN = ProbeResult(
    False, 500, ErrorKind.HTTP_STATUS, "HTTP 500: [-]shutdown failed", 0.002, shutdown=True
)
READ: dict[str, ProbeResult] = {
    "shutdown": READYZ_SHUTDOWN,
    "ready": OK,
    "etcd": RESULTS["500"],  # a 500 without the shutdown line
    "refused": RESULTS["refused"],
    "timeout": RESULTS["timeout"],
    "reset": RESULTS["reset"],
    "429": ProbeResult(False, 429, ErrorKind.HTTP_STATUS, "HTTP 429 Too Many Requests", 0.01),
    "403": RESULTS["403"],
}


def fast_gate(**kw: float) -> Gate:
    opts: dict[str, float] = {"fast_period": FAST}
    opts.update(kw)
    gate = Gate(URL, 3, 5.0, **opts)  # type: ignore[arg-type]
    gate.start(0.0)
    return gate


@pytest.mark.parametrize(
    ("results", "fast"),
    [
        # 7a: refused and reset are fast, below and at/after the threshold (kept after withdrawal)
        (["ok", "refused"], True),
        (["ok", "reset"], True),
        (["ok", "refused", "refused", "refused"], True),  # withdrawn: still fast
        (["ok"] + ["refused"] * 6, True),
        # the other side: timeouts and non-200 answers keep the grid (flake tolerance)
        (["ok", "timeout"], False),
        (["ok", "500"], False),
        (["ok", "401"], False),
        (["ok", "tls"], False),
        (["ok", "refused", "refused", "refused", "500"], True),  # withdrawn: rule 7d
        (["ok", "refused", "timeout"], False),
        # a success ends it (R = 1: announced at once, then the grid)
        (["ok", "refused", "ok"], False),
        (["refused"], True),  # from the start: the apiserver is not up yet
        (["refused", "ok"], False),
    ],
)
def test_rule7a_fast_after_refused_or_reset_only(results: list[str], fast: bool) -> None:
    gate = fast_gate()
    t = 0.0
    for name in results:
        t += 0.01
        step = gate.feed(RESULTS[name], t)
        due = step.next_check_at
        assert due is not None
        t = max(t, due) if name != results[-1] else t
    assert due == (pytest.approx(t + FAST) if fast else 5.0 * math.floor(t / 5.0 + 1))
    assert gate.check_interval == (FAST if fast else 5.0)


def test_rule7_fast_period_zero_is_kube_vips_cadence() -> None:
    gate = Gate(URL, 3, 5.0, fast_period=0.0)
    gate.start(0.0)
    dues = [gate.feed(RESULTS["refused"], t).next_check_at for t in (0.001, 5.001, 10.001)]
    assert dues == [5.0, 10.0, 15.0]


def test_rule7a_crash_withdraws_within_threshold_fast_periods() -> None:
    """period 5, threshold 3: refused at t, t+0.2, t+0.4 -> withdrawn at t+0.4, not t+10."""
    gate = fast_gate()
    gate.feed(OK, 0.001)
    t, actions = 3.0, []
    gate.connection_closed(t)  # the kernel closed the keep-alive connection at the crash
    for _ in range(3):
        assert gate.next_check_at == pytest.approx(t)
        step = gate.feed(RESULTS["refused"], t + 0.0005)
        actions.append(step.action)
        t = t + 0.0005 + FAST
    assert actions == [None, None, W]
    # restarted: the first 200 after the restart announces at the next fast check
    step = gate.feed(RESULTS["refused"], t)
    assert step.next_check_at == pytest.approx(t + FAST)
    assert gate.feed(OK, t + FAST).action is A


# ---------------------------------------------------------------------------- rule 7d: look often
START_UP = ["refused", "403", "403", "403", "500", "500"]  # a real apiserver's start, then 200


def withdrawn_gate(at: float = 10.0) -> Gate:
    """Announced, then withdrawn at ``at`` by three 500s (rule 5; the grid while UP)."""
    gate = fast_gate()
    gate.feed(OK, 0.01)
    for t in (at - 10.0, at - 5.0, at):
        if t > 0.01:
            gate.feed(RESULTS["500"], t)
    assert gate.state is GateState.DOWN
    return gate


@pytest.mark.parametrize("name", ["403", "401", "500", "timeout", "tls", "protocol", "other"])
@pytest.mark.parametrize(
    ("since_off", "fast"),
    [(0.0, True), (1.0, True), (LOOK_OFTEN_FOR - 0.01, True), (LOOK_OFTEN_FOR, False)],
)
def test_rule7d_withdrawn_looks_often_whatever_the_failure_until_the_bound(
    name: str, since_off: float, fast: bool
) -> None:
    gate = withdrawn_gate(at=15.0)  # withdrawn at 15 s
    t = 15.0 + since_off
    step = gate.feed(RESULTS[name], t)
    want = pytest.approx(t + FAST) if fast else 5.0 * math.floor(t / 5.0 + 1)
    assert step.next_check_at == want
    assert gate.check_interval == (FAST if fast else 5.0)


@pytest.mark.parametrize(
    ("since_start", "fast"), [(0.21, True), (LOOK_OFTEN_FOR - 0.01, True), (LOOK_OFTEN_FOR, False)]
)
def test_rule7d_starting_looks_often_until_the_bound(since_start: float, fast: bool) -> None:
    gate = fast_gate()  # started at 0, nothing passed yet
    assert gate.feed(RESULTS["403"], 0.01).next_check_at == pytest.approx(0.01 + FAST)
    step = gate.feed(RESULTS["403"], since_start)
    assert gate.state is GateState.STARTING
    want = since_start + FAST if fast else 5.0 * math.floor(since_start / 5.0 + 1)
    assert step.next_check_at == pytest.approx(want)


@pytest.mark.parametrize(
    ("since_read", "fast"), [(1.0, True), (LOOK_OFTEN_FOR - 0.01, True), (LOOK_OFTEN_FOR, False)]
)
def test_rule7d_apiserver_shutdown_looks_often_until_the_bound(
    since_read: float, fast: bool
) -> None:
    gate = fast_gate(shutdown_period=1.0)
    gate.feed_readiness(OK, 0.001)
    gate.feed(OK, 0.01)
    assert gate.feed_readiness(READYZ_SHUTDOWN, 2.0).action is W  # the bound counts from here
    assert gate.feed(RESULTS["500"], 2.1).next_check_at == pytest.approx(2.1 + FAST)
    t = 2.0 + since_read
    step = gate.feed(RESULTS["500"], t)
    assert gate.state is GateState.APISERVER_SHUTDOWN
    want = t + FAST if fast else 5.0 * math.floor(t / 5.0 + 1)
    assert step.next_check_at == pytest.approx(want)


@pytest.mark.parametrize("name", ["403", "500", "timeout", "401"])
def test_rule7d_announced_keeps_the_flake_tolerance(name: str) -> None:
    """UP with failures below the threshold: the grid, as before (rule 5), however long."""
    gate = fast_gate()
    gate.feed(OK, 0.01)
    assert gate.feed(RESULTS[name], 5.01).next_check_at == 10.0
    assert gate.feed(RESULTS[name], 10.01).next_check_at == 15.0
    assert gate.feed(RESULTS[name], 15.01).action is W  # the third: withdrawn, then fast
    assert gate.check_interval == FAST


@pytest.mark.parametrize("rise", [1, 3])
def test_rule7d_a_restart_returns_within_a_fast_period_of_the_first_200(rise: int) -> None:
    """Withdrawn by a crash, then the start-up answers (refused, 403s, 500s): every check
    follows a fast period after the last, so the route returns a fast period after the first
    200 (R = 1) or after the R-th (rule 4)."""
    gate = Gate(URL, 3, 5.0, fast_period=FAST, success_threshold=rise)
    gate.start(0.0)
    for i in range(rise):
        gate.feed(OK, 0.01 + i * FAST)
    t = 7.0
    for _ in range(3):
        t = gate.feed(RESULTS["refused"], t).next_check_at or 0.0
    assert gate.state is GateState.DOWN
    for name in START_UP:
        step = gate.feed(RESULTS[name], t)
        assert step.next_check_at == pytest.approx(t + FAST), name
        t += FAST
    first_200 = t
    for _ in range(rise - 1):
        assert gate.feed(OK, t).action is None
        t += FAST
    assert gate.feed(OK, t).action is A
    assert t - first_200 == pytest.approx((rise - 1) * FAST)


def test_rule7d_off_with_fast_period_zero() -> None:
    gate = Gate(URL, 3, 5.0, fast_period=0.0)
    gate.start(0.0)
    assert [gate.feed(RESULTS["403"], t).next_check_at for t in (0.01, 5.01)] == [5.0, 10.0]


def test_rule7d_the_bound_starts_again_after_an_announcement() -> None:
    gate = withdrawn_gate(at=15.0)
    gate.feed(RESULTS["500"], 400.0)  # past the bound: the grid
    assert gate.check_interval == 5.0
    assert gate.feed(OK, 405.0).action is A
    for t in (410.0, 415.0):
        gate.feed(RESULTS["500"], t)
    assert gate.feed(RESULTS["500"], 420.0).action is W  # off again at 420 s
    assert gate.feed(RESULTS["500"], 420.2).next_check_at == pytest.approx(420.2 + FAST)


def test_rule7d_every_state_outcome_pair_is_in_the_cadence_table() -> None:
    from vipgate.health.gate import _CADENCE, _Outcome

    for state in GateState:
        for outcome in _Outcome:
            if state is not GateState.DISABLED:  # takes no checks
                assert (state, outcome) in _CADENCE, (state, outcome)


# ---------------------------------------------------------------------------- rule 8: event
@pytest.mark.parametrize(
    ("closed_at", "due"),
    [
        (2.5, 2.5),  # before the grid tick: a check at once
        (4.999, 4.999),
        (5.0, 5.0),  # at the tick: the tick (no second check)
    ],
)
def test_rule8_server_close_makes_a_check_due_at_once(closed_at: float, due: float) -> None:
    gate = fast_gate()
    assert gate.feed(OK, 0.01).next_check_at == 5.0
    step = gate.connection_closed(closed_at)
    assert step.action is None and step.transition is None  # the close is not a failure
    assert step.next_check_at == due
    assert gate.consecutive_failures == 0 and gate.state is GateState.UP


def test_rule8_the_check_after_a_close_decides_and_the_grid_resumes() -> None:
    gate = fast_gate()
    gate.feed(OK, 0.01)
    gate.connection_closed(2.5)
    step = gate.feed(OK, 2.51)  # an idle timeout: the apiserver is fine
    assert step.action is None and step.next_check_at == 5.0  # the next grid tick after it


def test_rule8_close_while_stopped_or_disabled() -> None:
    gate = fast_gate()
    gate.feed(OK, 0.01)
    gate.stop(1.0)
    assert gate.connection_closed(1.5).next_check_at is None
    with pytest.raises(GateError):
        Gate("", 3, 5.0).connection_closed(0.0)


# ---------------------------------------------------------------------------- rule 4: rise
@pytest.mark.parametrize(
    ("r", "results", "actions"),
    [
        (1, ["ok"], [A]),
        (2, ["ok"], [None]),  # one below R
        (2, ["ok", "ok"], [None, A]),  # at R
        (3, ["ok", "ok", "500", "ok", "ok", "ok"], [None, None, None, None, None, A]),
        (2, ["ok", "ok", "refused", "refused", "refused", "ok"], [None, A, None, None, W, None]),
        (2, ["ok", "ok", "refused", "ok"], [None, A, None, None]),  # UP: below threshold
        (
            2,
            ["ok", "ok", "refused"] + ["refused"] * 2 + ["ok", "ok"],
            [None, A] + [None] * 2 + [W, None, A],
        ),
    ],
)
def test_rule4_success_threshold(r: int, results: list[str], actions: list[Action | None]) -> None:
    gate = Gate(URL, 3, 5.0, fast_period=FAST, success_threshold=r)
    gate.start(0.0)
    got = [gate.feed(RESULTS[n], 0.01 + i).action for i, n in enumerate(results)]
    assert got == actions


def test_rule7b_rising_checks_at_the_fast_period() -> None:
    gate = Gate(URL, 3, 5.0, fast_period=FAST, success_threshold=3)
    gate.start(0.0)
    s1 = gate.feed(OK, 0.01)
    assert s1.next_check_at == pytest.approx(0.01 + FAST) and gate.state is GateState.STARTING
    s2 = gate.feed(OK, 0.22)
    assert s2.next_check_at == pytest.approx(0.22 + FAST)
    s3 = gate.feed(OK, 0.43)
    assert s3.action is A and s3.next_check_at == 5.0  # announced: the grid
    t = s3.transition
    assert t is not None and "3 in a row" in t.message
    # fast period 0: rising on the grid
    slow = Gate(URL, 3, 5.0, fast_period=0.0, success_threshold=2)
    slow.start(0.0)
    assert slow.feed(OK, 0.01).next_check_at == 5.0


def test_bad_parameters() -> None:
    for kw in (
        {"fast_period": 5.0},  # == period
        {"fast_period": 6.0},
        {"fast_period": -0.1},
        {"success_threshold": 0},
        {"shutdown_period": -1.0},
        {"graceful_shutdown": -1.0},
    ):
        with pytest.raises(ValueError):
            Gate(URL, 3, 5.0, **kw)
    Gate(URL, 3, 5.0, fast_period=4.999, success_threshold=1)  # just below: fine


# ---------------------------------------------------------------------------- rule 9: shutdown
@pytest.mark.parametrize(
    ("name", "signal"),
    [
        ("shutdown", "shutdown"),
        ("ready", "clear"),
        ("etcd", "clear"),  # other /readyz failures do not hold the route
        ("refused", "clear"),  # the process that announced it is gone
        ("timeout", None),
        ("reset", None),
        ("429", None),  # --shutdown-send-retry-after: tells nothing
        ("403", None),
    ],
)
def test_rule9_readiness_reading(name: str, signal: str | None) -> None:
    from vipgate.health.gate import readiness_signal

    assert readiness_signal(READ[name]) == signal


def shutdown_gate(**kw: float) -> Gate:
    return fast_gate(shutdown_period=1.0, **kw)


def test_rule9_reads_have_their_own_grid() -> None:
    gate = shutdown_gate()
    assert gate.next_read_at == 0.0 and gate.due(0.0) is Due.READ  # a read goes first
    assert gate.feed_readiness(OK, 0.002).next_read_at == 1.0
    assert gate.due(0.003) is Due.CHECK
    assert gate.feed(OK, 0.004).next_check_at == 5.0
    assert gate.due(5.0) is Due.CHECK  # both due while announced: the check goes first
    assert gate.feed_readiness(OK, 1.001).next_read_at == 2.0
    assert gate.feed_readiness(OK, 3.5).next_read_at == 4.0  # a late read: the next tick
    assert gate.wake_at == 4.0
    assert Gate(URL, 3, 5.0).next_read_at is None  # off


def test_rule9_no_reads_while_failures_count() -> None:
    # A hung apiserver: reads that each ran into the timeout between the checks would double
    # the time to the threshold.
    gate = Gate(URL, 3, 1.0, fast_period=FAST, shutdown_period=1.0)
    gate.start(0.0)
    gate.feed_readiness(OK, 0.002)
    gate.feed(OK, 0.004)
    assert gate.next_read_at == 1.0
    step = gate.feed(RESULTS["timeout"], 2.0)  # the check due at 1.0 timed out
    assert step.next_read_at is None and gate.next_read_at is None
    assert gate.due(2.0) is Due.CHECK  # the check due at 2.0, not the read due since 1.0
    assert gate.wake_at == 2.0
    gate.feed(RESULTS["timeout"], 3.0)
    assert gate.due(3.0) is Due.CHECK
    assert gate.feed(RESULTS["timeout"], 4.0).action is W  # threshold x timeout after 1.0
    gate.feed(OK, 4.5)  # healthy again: the read due meanwhile is made at once
    assert gate.next_read_at == 1.0 and gate.due(4.5) is Due.READ


def test_rule6_hung_at_defaults_within_the_bound_with_reads() -> None:
    # kube-vip's defaults 5/3/3, reads every 1 s; the apiserver hangs at 0.5 s. Two reads run
    # into the 3 s timeout and hold the connection past the check's tick (5.0): that check runs
    # late and the next takes its overdue tick at once, so the reads cost nothing: withdrawn
    # at 18.3, period + 2 periods + timeout after the tick (bench_detect saw 18-22 s
    # and trials past 30 s when reads went first and late checks lost their tick).
    gate = Gate(URL, 3, 5.0, fast_period=FAST, shutdown_period=1.0)
    gate.start(0.0)
    gate.feed_readiness(OK, 0.002)
    gate.feed(OK, 0.004)
    timeout = RESULTS["timeout"]
    assert gate.due(1.0) is Due.READ
    gate.feed_readiness(READ["timeout"], 4.0)
    assert gate.due(4.0) is Due.READ  # the check is not due before 5.0
    gate.feed_readiness(READ["timeout"], 7.3)  # timeout + a slow reconnect
    assert gate.due(7.3) is Due.CHECK  # announced: the overdue check before the read
    assert gate.feed(timeout, 10.3).next_check_at == 10.0  # its tick passed: at once
    assert gate.due(10.3) is Due.CHECK  # no reads while failures count (rule 9)
    assert gate.feed(timeout, 13.3).next_check_at == 15.0
    assert gate.feed(timeout, 18.3).action is W


@pytest.mark.parametrize("start", ["up", "starting", "down"])
def test_rule9_shutdown_withdraws_at_once_without_threshold(start: str) -> None:
    gate = shutdown_gate()
    prep = {"up": ["ok"], "starting": [], "down": ["ok"] + ["timeout"] * 3}[start]
    for i, n in enumerate(prep):
        gate.feed(RESULTS[n], 0.01 + i)
    step = gate.feed_readiness(READYZ_SHUTDOWN, 9.0)
    assert gate.state is GateState.APISERVER_SHUTDOWN
    assert step.action is (W if start == "up" else None)
    t = step.transition
    assert t is not None and t.reason == "apiserver_shutdown"
    assert "announced its shutdown" in t.message


def test_rule9_livez_200_does_not_return_the_route_during_the_shutdown() -> None:
    gate = shutdown_gate()
    gate.feed(OK, 0.01)
    gate.feed_readiness(READYZ_SHUTDOWN, 1.0)
    for i in range(5):  # /livez stays 200 for the whole shutdown delay
        assert gate.feed(OK, 1.1 + i).action is None
        assert gate.feed_readiness(READ["timeout"], 1.2 + i).action is None  # tells nothing
    assert gate.state is GateState.APISERVER_SHUTDOWN and not gate.announced


@pytest.mark.parametrize("clear", ["ready", "etcd", "refused"])
def test_rule9_route_returns_on_the_first_check_after_a_clear_read(clear: str) -> None:
    gate = shutdown_gate()
    gate.feed(OK, 0.01)
    gate.feed_readiness(READYZ_SHUTDOWN, 1.0)
    gate.feed(OK, 1.5)
    step = gate.feed_readiness(READ[clear], 2.0)
    assert step.action is None and gate.state is GateState.DOWN
    assert step.next_check_at == 2.0  # checked at once
    t = step.transition
    assert t is not None and t.reason == "apiserver_shutdown_over"
    assert gate.feed(OK, 2.01).action is A  # the old process's 200 at 1.5 did not count


def test_rule9_success_threshold_counts_only_after_the_shutdown() -> None:
    gate = shutdown_gate(success_threshold=2)
    gate.feed(OK, 0.01)
    gate.feed(OK, 0.22)
    gate.feed_readiness(READYZ_SHUTDOWN, 1.0)
    gate.feed(OK, 1.5)
    gate.feed_readiness(OK, 2.0)
    assert gate.feed(OK, 2.01).action is None  # 1 of 2
    assert gate.feed(OK, 2.22).action is A


def test_rule9_reads_off_is_an_error_to_feed() -> None:
    gate = fast_gate()
    with pytest.raises(GateError):
        gate.feed_readiness(OK, 0.1)


# ---------------------------------------------------------------------------- rules 10-11: stop
def up_gate(drain: float = 3.0, **kw: float) -> Gate:
    gate = shutdown_gate(graceful_shutdown=drain, **kw)
    gate.feed(OK, 0.01)
    return gate


def test_rule11_stop_drains_with_graceful_shutdown_then_withdraws() -> None:
    gate = up_gate()  # next check due at 5.0
    step = gate.stop(2.0, "SIGTERM")
    assert step.action is Action.ANNOUNCE_GRACEFUL_SHUTDOWN
    assert gate.state is GateState.DRAINING and gate.announced
    assert step.drain_until == 5.0
    assert step.next_check_at == pytest.approx(2.0 + FAST)  # checks at the fast period
    t = step.transition
    assert t is not None and t.reason == "stop" and "GRACEFUL_SHUTDOWN" in t.message
    assert gate.feed(OK, 2.21).next_check_at == pytest.approx(2.41)
    assert gate.tick(4.999).action is None and gate.due(4.999) is not Due.TICK
    assert gate.due(5.0) is Due.TICK  # before a check or read due at the same time
    end = gate.tick(5.0)
    assert end.action is W and not gate.announced
    assert gate.state.value == "stopped"
    assert end.next_check_at is None and end.next_read_at is None and end.drain_until is None
    assert gate.cease_message == (
        "vipgate shutting down: VIP withdrawn after a 3 s GRACEFUL_SHUTDOWN drain"
    )
    assert gate.feed(RESULTS["refused"], 5.1).action is None  # STOPPED takes nothing


@pytest.mark.parametrize(
    ("event", "why"),
    [
        ("refused", "health check failed during the drain (refused)"),
        ("500", "health check failed during the drain (http_status)"),  # no threshold
        ("timeout", "health check failed during the drain (timeout)"),
        ("read-shutdown", "the apiserver announced its shutdown during the drain"),
        ("stop", "SIGTERM again: VIP withdrawn before the drain ended"),
    ],
)
def test_rule11_drain_ends_early(event: str, why: str) -> None:
    gate = up_gate()
    gate.stop(2.0)
    if event == "read-shutdown":
        step = gate.feed_readiness(READYZ_SHUTDOWN, 2.5)
    elif event == "stop":
        step = gate.stop(2.5)
    else:
        step = gate.feed(RESULTS[event], 2.5)
    assert step.action is W and gate.state is GateState.STOPPED
    assert why in gate.cease_message and len(gate.cease_message.encode()) <= 255


@pytest.mark.parametrize(("event", "name"), [("check", "ok"), ("read", "ready"), ("read", "etcd")])
def test_rule11_drain_continues_on_success(event: str, name: str) -> None:
    gate = up_gate()
    gate.stop(2.0)
    step = gate.feed(OK, 2.2) if event == "check" else gate.feed_readiness(READ[name], 2.2)
    assert step.action is None and gate.state is GateState.DRAINING


@pytest.mark.parametrize(
    ("prep", "drain", "action", "cease"),
    [
        (["ok"], 0.0, W, "SIGTERM: VIP withdrawn (no drain: bgp_graceful_shutdown_seconds=0)"),
        ([], 3.0, None, "SIGTERM: VIP was not announced (gate starting)"),
        (["ok", "timeout", "timeout", "timeout"], 3.0, None, "not announced (gate down)"),
    ],
)
def test_rule10_stop_without_drain(
    prep: list[str], drain: float, action: Action | None, cease: str
) -> None:
    gate = shutdown_gate(graceful_shutdown=drain)
    for i, n in enumerate(prep):
        gate.feed(RESULTS[n], 0.01 + i)
    step = gate.stop(10.0)
    assert step.action is action and gate.state is GateState.STOPPED
    assert step.drain_until is None and step.next_check_at is None
    assert cease in gate.cease_message


def test_rule10_stop_in_apiserver_shutdown_does_not_drain() -> None:
    gate = up_gate()
    gate.feed_readiness(READYZ_SHUTDOWN, 1.0)
    assert gate.stop(2.0).action is None and gate.state is GateState.STOPPED


def test_rule11_disabled_gate_drains_without_checks() -> None:
    gate = Gate("", 3, 5.0, graceful_shutdown=2.0)
    gate.start(0.0)
    step = gate.stop(1.0, "SIGINT")
    assert step.action is Action.ANNOUNCE_GRACEFUL_SHUTDOWN and step.next_check_at is None
    assert gate.wake_at == 3.0
    assert gate.tick(3.0).action is W
    nodrain = Gate("", 3, 5.0)
    nodrain.start(0.0)
    assert nodrain.stop(1.0).action is W  # no drain: withdraw at once


def test_every_state_signal_pair_is_in_the_table() -> None:
    from vipgate.health.gate import _TRANSITIONS, _Signal

    for state in GateState:
        for signal in _Signal:
            if state is GateState.DISABLED and signal not in (
                _Signal.STOP,
                _Signal.STOP_NOW,
                _Signal.DRAINED,
            ):
                continue  # the disabled gate takes no checks or reads (GateError)
            assert (state, signal) in _TRANSITIONS, (state, signal)


def reference_rise(oks: list[bool], threshold: int, rise: int) -> list[Action | None]:
    """Rules 2, 4 and 5 with a success threshold, in a dozen lines."""
    announced, failures, successes, out = False, 0, 0, []
    for ok in oks:
        failures, successes = (0, successes + 1) if ok else (failures + 1, 0)
        action: Action | None = None
        if ok and not announced and successes >= rise:
            announced, action = True, Action.ANNOUNCE
        elif not ok and announced and failures >= threshold:
            announced, action = False, Action.WITHDRAW
        out.append(action)
    return out


@settings(max_examples=200, deadline=None)
@given(
    names=checks,
    threshold=st.integers(1, 5),
    rise=st.integers(1, 4),
    durations=st.lists(st.floats(0.0, 1.2), min_size=200, max_size=200),
    closes=st.lists(st.booleans(), min_size=200, max_size=200),
    bound=st.sampled_from([LOOK_OFTEN_FOR, 20.0, 3.0]),
)
def test_property_fast_period_and_rise_match_reference(
    names: list[str],
    threshold: int,
    rise: int,
    durations: list[float],
    closes: list[bool],
    bound: float,
) -> None:
    """Any mix of results, check durations and server closes: the actions are the reference
    model's, and the next check is due at the fast period exactly when rule 7 says so, else on
    the start grid and never before the check's end (rule 6)."""
    period, fast, t0 = 5.0, FAST, 100.0
    gate = Gate(
        URL, threshold, period, fast_period=fast, success_threshold=rise, look_often_for=bound
    )
    due = gate.start(t0).next_check_at
    off_since: float | None = t0  # rule 7d: when the route stopped being announced
    expected = reference_rise([RESULTS[n].ok for n in names], threshold, rise)
    for name, want, dur, close in zip(names, expected, durations, closes, strict=False):
        assert due is not None
        if close and due > t0:  # the server closes the idle connection just before the check
            step0 = gate.connection_closed(due - 0.01)
            assert step0.action is None and step0.transition is None  # not a failure
            assert step0.next_check_at == due - 0.01  # a check at once (rule 8)
            due = step0.next_check_at
        end = due + dur
        result = RESULTS[name]
        step = gate.feed(result, end)
        assert step.action is want
        nxt = step.next_check_at
        assert nxt is not None
        if want is Action.ANNOUNCE:
            off_since = None
        elif want is Action.WITHDRAW:
            off_since = end
        rising = gate.state in (GateState.STARTING, GateState.DOWN) and result.ok
        look_often = off_since is not None and not result.ok and end - off_since < bound
        if result.error in (ErrorKind.REFUSED, ErrorKind.RESET) or rising or look_often:
            assert nxt == pytest.approx(end + fast)
            assert gate.check_interval == fast
        else:
            k = round((nxt - t0) / period)
            assert nxt == pytest.approx(t0 + k * period)
            assert nxt > end - period - 1e-9
            assert gate.check_interval == period
        due = nxt


@pytest.mark.parametrize(
    ("name", "advised"),
    [("403", True), ("401", True), ("404", True), ("429", False), ("timeout", False)],
)
def test_readiness_url_that_can_never_show_a_shutdown_is_taught_once(
    name: str, advised: bool
) -> None:
    gate = Gate(
        URL, 3, 5.0, shutdown_period=1.0, readiness_url="https://localhost:6443/readyz/shutdown"
    )
    gate.start(0.0)
    extra = {
        "401": RESULTS["401"],
        "404": ProbeResult(False, 404, ErrorKind.HTTP_STATUS, "HTTP 404 Not Found", 0.01),
    }
    result = extra.get(name) or READ[name]
    steps = [gate.feed_readiness(result, 0.1 + i) for i in range(3)]
    advice = [s.advice for s in steps if s.advice is not None]
    assert len(advice) == (1 if advised else 0) and steps[0].action is None
    if advised:
        assert advice[0].kind is AdviceKind.READINESS_UNREADABLE
        assert "/readyz/shutdown answers HTTP" in advice[0].message
        assert "control_plane_health_check_shutdown_address" in advice[0].message


@pytest.mark.parametrize("url", [URL, ""])
def test_stop_before_start_never_announces(url: str) -> None:
    """A signal during start-up (before the gate started) must not be undone by start()."""
    gate = Gate(url, 3, 5.0, fast_period=FAST, graceful_shutdown=3.0)
    assert gate.stop(0.0).action is None and gate.state is GateState.STOPPED
    step = gate.start(0.1)
    assert step.action is None and step.next_check_at is None and not gate.announced
    assert gate.wake_at is None


# ---------------------------------------------------------------------------- rule 12: de-prefer
D, G = Action.ANNOUNCE_DEPREFERRED, Action.ANNOUNCE_GRACEFUL_SHUTDOWN
WITHDRAW_, DEPREFER = UnhealthyAction.WITHDRAW, UnhealthyAction.DEPREFER


@dataclass(frozen=True)
class DCase:
    name: str
    threshold: int
    rise: int
    results: list[str]
    withdraw: list[Action | None]  # the actions with unhealthy_action=withdraw
    deprefer: list[Action | None]  # ... and with unhealthy_action=deprefer
    final: GateState  # with deprefer


DCASES = [
    # the failure threshold: one below changes nothing, at it the route changes, above nothing
    DCase(
        "threshold - 1", 3, 1, ["ok", "500", "500"], [A, None, None], [A, None, None], GateState.UP
    ),
    DCase(
        "threshold",
        3,
        1,
        ["ok", "500", "500", "500"],
        [A, None, None, W],
        [A, None, None, D],
        GateState.DEPREFERRED,
    ),
    DCase(
        "threshold + 2",
        3,
        1,
        ["ok"] + ["refused"] * 5,
        [A, None, None, W, None, None],
        [A, None, None, D, None, None],
        GateState.DEPREFERRED,
    ),
    DCase("threshold 1", 1, 1, ["ok", "401"], [A, W], [A, D], GateState.DEPREFERRED),
    DCase(
        "a success below the threshold resets the count",
        2,
        1,
        ["ok", "timeout", "ok", "timeout"],
        [A, None, None, None],
        [A, None, None, None],
        GateState.UP,
    ),
    # recovery: announced plainly again when the gate would announce again (rule 4)
    DCase(
        "recovery on the first 200",
        2,
        1,
        ["ok", "500", "500", "ok"],
        [A, None, W, A],
        [A, None, D, A],
        GateState.UP,
    ),
    DCase(
        "recovery: R - 1 successes keep it de-preferred",
        1,
        3,
        ["ok", "ok", "ok", "500", "ok", "ok"],
        [None, None, A, W, None, None],
        [None, None, A, D, None, None],
        GateState.DEPREFERRED,
    ),
    DCase(
        "recovery: R successes announce plainly",
        1,
        3,
        ["ok", "ok", "ok", "500", "ok", "ok", "ok"],
        [None, None, A, W, None, None, A],
        [None, None, A, D, None, None, A],
        GateState.UP,
    ),
    DCase(
        "recovery: a failure restarts the rise",
        1,
        2,
        ["ok", "ok", "500", "ok", "500", "ok", "ok"],
        [None, A, W, None, None, None, A],
        [None, A, D, None, None, None, A],
        GateState.UP,
    ),
    DCase(
        "de-preferred again after a recovery",
        2,
        1,
        ["ok", "500", "500", "ok", "500", "500"],
        [A, None, W, A, None, W],
        [A, None, D, A, None, D],
        GateState.DEPREFERRED,
    ),
    # start-up: a route never announced stays unannounced (rule 2), on both sides of it
    DCase(
        "start: threshold - 1", 3, 1, ["500", "500"], [None, None], [None, None], GateState.STARTING
    ),
    DCase("start: threshold", 3, 1, ["500"] * 3, [None] * 3, [None] * 3, GateState.DOWN),
    DCase("start: past the threshold", 3, 1, ["401"] * 6, [None] * 6, [None] * 6, GateState.DOWN),
    DCase(
        "start: failing, then healthy, then failing",
        2,
        1,
        ["500", "500", "ok", "500", "500"],
        [None, None, A, None, W],
        [None, None, A, None, D],
        GateState.DEPREFERRED,
    ),
]


@pytest.mark.parametrize("case", DCASES, ids=[c.name for c in DCASES])
@pytest.mark.parametrize("how", [WITHDRAW_, DEPREFER])
def test_rule12_deprefer_instead_of_withdraw(case: DCase, how: UnhealthyAction) -> None:
    gate = Gate(URL, case.threshold, 1.0, success_threshold=case.rise, unhealthy_action=how)
    gate.start(0.0)
    steps = drive_from_started(gate, case.results)
    want = case.deprefer if how is DEPREFER else case.withdraw
    assert [s.action for s in steps] == want
    if how is DEPREFER:
        assert gate.state is case.final
        assert gate.announced == (case.final in (GateState.UP, GateState.DEPREFERRED))
        assert gate.depreferred == (case.final is GateState.DEPREFERRED)
    else:
        assert gate.state is not GateState.DEPREFERRED and not gate.depreferred
    for s in steps:
        if s.action is not None:
            assert s.transition is not None and s.transition.action is s.action


def test_rule12_default_is_withdraw() -> None:
    gate = Gate(URL, 1, 1.0)
    assert gate.unhealthy_action is UnhealthyAction.WITHDRAW
    assert [s.action for s in drive(gate, ["ok", "500"])] == [A, W]


def test_rule12_transition_messages() -> None:
    gate = Gate(URL, 2, 1.0, unhealthy_action=DEPREFER)
    steps = drive(gate, ["ok", "401", "401", "ok"])
    t = steps[2].transition
    assert t is not None and (t.old, t.new) == (GateState.UP, GateState.DEPREFERRED)
    assert t.reason == "http_status" and t.status == 401
    assert "2 consecutive failed checks (threshold 2)" in t.message
    assert "announcing the VIP de-preferred" in t.message
    assert "control_plane_health_check_unhealthy_action=deprefer" in t.message
    back = steps[3].transition
    assert back is not None and back.new is GateState.UP and back.reason == "healthy"
    assert back.message == (
        "health check passed (HTTP 200) after 2 failed checks: "
        "announcing the VIP without de-preference"
    )


@pytest.mark.parametrize(
    ("results", "fast"),
    [
        (["ok", "refused", "refused", "refused"], True),  # de-preferred: refused stays fast
        (["ok", "refused", "refused", "refused", "500"], True),  # a 500 too (rule 7d)
        (["ok", "500", "500", "500"], True),
        (["ok", "500", "500", "500", "timeout"], True),
    ],
)
def test_rule12_fast_period_while_depreferred(results: list[str], fast: bool) -> None:
    gate = Gate(URL, 3, 5.0, fast_period=FAST, unhealthy_action=DEPREFER)
    gate.start(0.0)
    step = None
    for i, n in enumerate(results):
        step = gate.feed(RESULTS[n], 0.01 + i * 0.3)
    assert step is not None and gate.state is GateState.DEPREFERRED
    assert (gate.check_interval == FAST) is fast


@pytest.mark.parametrize(
    ("later", "fast"), [(LOOK_OFTEN_FOR - 0.01, True), (LOOK_OFTEN_FOR, False)]
)
def test_rule7d_depreferred_looks_often_within_the_bound(later: float, fast: bool) -> None:
    """The bound counts from the de-preference, not from the first failure."""
    gate = Gate(URL, 3, 5.0, fast_period=FAST, unhealthy_action=DEPREFER)
    gate.start(0.0)
    gate.feed(OK, 0.01)
    for t in (5.0, 10.0):
        assert gate.feed(RESULTS["500"], t).next_check_at == 5.0 * (t // 5 + 1)  # UP: grid
    assert gate.feed(RESULTS["500"], 15.0).action is D  # de-preferred at 15 s
    step = gate.feed(RESULTS["403"], 15.0 + later)
    due = step.next_check_at
    assert due == (pytest.approx(15.0 + later + FAST) if fast else 320.0)
    assert gate.check_interval == (FAST if fast else 5.0)


def test_rule12_rising_from_depreferred_checks_at_the_fast_period() -> None:
    gate = Gate(URL, 1, 5.0, fast_period=FAST, success_threshold=3, unhealthy_action=DEPREFER)
    gate.start(0.0)
    for i in range(3):
        gate.feed(OK, 0.01 + i * FAST)
    assert gate.feed(RESULTS["500"], 5.0).action is D
    step = gate.feed(OK, 10.0)  # rising: 1 of 3
    assert step.action is None and gate.state is GateState.DEPREFERRED
    assert step.next_check_at == pytest.approx(10.0 + FAST)
    assert gate.feed(OK, 10.2).action is None
    last = gate.feed(OK, 10.4)
    assert last.action is A and gate.state.value == "up"
    assert last.next_check_at == 15.0  # back on the grid


def depreferred_gate(drain: float = 3.0, rise: float = 1) -> Gate:
    gate = Gate(
        URL,
        2,
        5.0,
        fast_period=FAST,
        shutdown_period=1.0,
        graceful_shutdown=drain,
        success_threshold=int(rise),
        unhealthy_action=DEPREFER,
    )
    gate.start(0.0)
    for i in range(int(rise)):
        gate.feed(OK, 0.01 + i * FAST)
    assert gate.state is GateState.UP
    gate.feed(RESULTS["500"], 5.0)
    assert gate.feed(RESULTS["500"], 10.0).action is D
    return gate


def test_rule12_no_reads_while_depreferred_and_failing() -> None:
    gate = depreferred_gate()
    assert gate.next_read_at is None  # rule 9: failures are counting
    assert gate.due(100.0) is Due.CHECK


def test_rule12_apiserver_shutdown_still_withdraws() -> None:
    # announced: the shutdown withdraws under deprefer as under withdraw (rule 9)
    for how in (WITHDRAW_, DEPREFER):
        gate = Gate(URL, 3, 5.0, shutdown_period=1.0, unhealthy_action=how)
        gate.start(0.0)
        gate.feed(OK, 0.01)
        step = gate.feed_readiness(READYZ_SHUTDOWN, 0.5)
        assert step.action is W and gate.state is GateState.APISERVER_SHUTDOWN
        assert step.address is Address.REMOVE
    # de-preferred and rising again (a read is made once no failure counts): withdraws too
    gate = depreferred_gate(rise=2)
    assert gate.feed(OK, 15.0).action is None and gate.state is GateState.DEPREFERRED
    assert gate.next_read_at is not None
    step = gate.feed_readiness(READYZ_SHUTDOWN, 15.1)
    assert step.action is W and gate.state.value == "apiserver_shutdown"
    assert step.address is Address.REMOVE and not gate.announced
    assert step.transition is not None and "withdrawing the VIP" in step.transition.message
    # a CLEAR read and a passing check bring it back plainly, address first
    gate.feed_readiness(OK, 16.0)
    gate.feed(OK, 16.1)
    back = gate.feed(OK, 16.3)
    assert back.action is A and back.address is Address.ADD and gate.state.value == "up"


@pytest.mark.parametrize("drain", [0.0, 3.0])
def test_rule12_stop_while_depreferred_withdraws_at_once(drain: float) -> None:
    gate = depreferred_gate(drain)
    step = gate.stop(11.0, "SIGTERM")
    assert step.action is W and gate.state is GateState.STOPPED
    assert step.drain_until is None and step.address is None  # the manager removes it at exit
    assert gate.cease_message == (
        "vipgate shutting down: SIGTERM: VIP withdrawn (it was de-preferred: health check failing)"
    )


def test_rule12_stop_while_up_still_drains() -> None:
    gate = Gate(URL, 3, 5.0, graceful_shutdown=3.0, unhealthy_action=DEPREFER)
    gate.start(0.0)
    gate.feed(OK, 0.01)
    assert gate.stop(1.0).action is G and gate.state is GateState.DRAINING
    assert gate.feed(RESULTS["500"], 1.5).action is W  # a failed check still ends the drain
    assert gate.state.value == "stopped"


def test_rule12_every_state_signal_pair_is_in_both_tables() -> None:
    from vipgate.health.gate import _DEPREFER_ENTRIES, _TABLES, _TRANSITIONS

    assert _TABLES[WITHDRAW_] is _TRANSITIONS
    deprefer = _TABLES[DEPREFER]
    assert deprefer.keys() == _TRANSITIONS.keys()
    differ = {k for k in _TRANSITIONS if _TRANSITIONS[k] != deprefer[k]}
    assert differ == set(_DEPREFER_ENTRIES) == {(GateState.UP, _signal("threshold"))}
    # DEPREFERRED is entered only through the deprefer table
    entered = [k for k, (new, _) in _TRANSITIONS.items() if new is GateState.DEPREFERRED]
    assert all(state is GateState.DEPREFERRED for state, _ in entered)
    assert any(new is GateState.DEPREFERRED for new, _ in deprefer.values())
    # and nothing in it announces before a first announcement: STARTING never de-prefers
    for (state, _sig), (_new, action) in deprefer.items():
        if state is GateState.STARTING:
            assert action in (None, A)


def _signal(name: str) -> object:
    from vipgate.health.gate import _Signal

    return _Signal(name)


def reference_deprefer(oks: list[bool], threshold: int, rise: int) -> list[Action | None]:
    """Rules 2, 4, 5 and 12 in a dozen lines: 'down' is 'de-preferred' once announced."""
    state, failures, successes, out = "starting", 0, 0, []
    for ok in oks:
        failures, successes = (0, successes + 1) if ok else (failures + 1, 0)
        action: Action | None = None
        if ok and state != "up" and successes >= rise:
            state, action = "up", Action.ANNOUNCE
        elif not ok and state == "up" and failures >= threshold:
            state, action = "depreferred", Action.ANNOUNCE_DEPREFERRED
        out.append(action)
    return out


@settings(max_examples=200, deadline=None)
@given(names=checks, threshold=st.integers(1, 5), rise=st.integers(1, 4))
def test_property_deprefer_matches_reference(names: list[str], threshold: int, rise: int) -> None:
    """Any mix of results: de-prefer's actions are the reference model's; it never withdraws,
    and the withdraw gate fed the same results takes W exactly where deprefer takes D."""
    dg = Gate(
        URL, threshold, 5.0, fast_period=FAST, success_threshold=rise, unhealthy_action=DEPREFER
    )
    wg = Gate(URL, threshold, 5.0, fast_period=FAST, success_threshold=rise)
    dg.start(0.0)
    wg.start(0.0)
    expected = reference_deprefer([RESULTS[n].ok for n in names], threshold, rise)
    for i, (name, want) in enumerate(zip(names, expected, strict=True)):
        ds = dg.feed(RESULTS[name], 0.01 + i)
        ws = wg.feed(RESULTS[name], 0.01 + i)
        assert ds.action is want
        assert ws.action is (W if want is D else want)
        assert ds.address is None  # a failing node keeps its route, and so its address


# ---------------------------------------------------------------------------- rule 13: address
@pytest.mark.parametrize(
    ("results", "addresses"),
    [
        # start-up: the address is on from the start; a first announcement does not add it
        (["ok"], [None]),
        (["500", "500", "500", "ok"], [None, None, None, None]),
        # withdrawn while running: removed after, added back before the next announcement
        (["ok", "500", "500", "500"], [None, None, None, Address.REMOVE]),
        (["ok", "500", "500"], [None, None, None]),  # one below the threshold: stays
        (
            ["ok", "500", "500", "500", "500", "ok"],
            [None] * 3 + [Address.REMOVE, None, Address.ADD],
        ),
        (["ok", "500", "500", "500", "ok", "ok"], [None] * 3 + [Address.REMOVE, Address.ADD, None]),
    ],
)
def test_rule13_address_follows_the_route(
    results: list[str], addresses: list[Address | None]
) -> None:
    gate = Gate(URL, 3, 1.0)
    gate.start(0.0)
    steps = drive_from_started(gate, results)
    assert [s.address for s in steps] == addresses
    for s in steps:  # REMOVE only with a WITHDRAW, ADD only with an ANNOUNCE
        if s.address is Address.REMOVE:
            assert s.action is W
        if s.address is Address.ADD:
            assert s.action is A


def test_rule13_address_after_an_apiserver_shutdown() -> None:
    gate = shutdown_gate()
    gate.feed(OK, 0.01)
    step = gate.feed_readiness(READYZ_SHUTDOWN, 0.5)
    assert step.action is W and step.address is Address.REMOVE
    assert gate.feed(OK, 0.6).address is None  # the /livez checks change nothing there
    assert gate.feed_readiness(OK, 1.0).address is None  # CLEAR: DOWN, nothing announced yet
    back = gate.feed(OK, 1.01)
    assert back.action is A and back.address is Address.ADD


@pytest.mark.parametrize("drain", [0.0, 3.0])
def test_rule13_stop_leaves_the_address_to_the_exit(drain: float) -> None:
    gate = up_gate(drain)
    first = gate.stop(1.0)
    assert first.address is None
    if drain:
        assert gate.tick(4.0).address is None
    assert gate.state is GateState.STOPPED


def test_rule13_stop_after_a_removal_adds_nothing_back() -> None:
    gate = Gate(URL, 1, 1.0, graceful_shutdown=3.0)
    steps = drive(gate, ["ok", "500"])
    assert steps[1].address is Address.REMOVE
    step = gate.stop(5.0)
    assert step.action is None and step.address is None


def test_rule13_disabled_gate_never_moves_the_address() -> None:
    gate = Gate("", 3, 5.0, graceful_shutdown=2.0)
    assert gate.start(0.0).address is None
    assert gate.stop(1.0).address is None
    assert gate.tick(3.0).address is None


# ---------------------------------------------------------------------------- rule 14: one clock
def test_rule14_every_step_carries_the_next_wake_up() -> None:
    """The caller's only "when": each step's wake_at is the earliest of the next check, the
    next read and the drain's end (the gate's own view, after the event)."""
    gate = Gate(URL, 3, 5.0, fast_period=FAST, shutdown_period=1.0, graceful_shutdown=3.0)
    steps = [gate.start(0.0)]
    assert steps[-1].wake_at == 0.0  # the first read and check: at once
    steps.append(gate.feed_readiness(OK, 0.002))
    assert steps[-1].wake_at == 0.0  # the check is still due
    steps.append(gate.feed(OK, 0.004))
    assert steps[-1].action is A and steps[-1].wake_at == 1.0  # the next read, before 5.0
    steps.append(gate.stop(4.5))
    assert steps[-1].wake_at == 1.0  # the overdue read
    steps.append(gate.feed_readiness(OK, 4.6))
    assert steps[-1].wake_at == pytest.approx(4.7)  # the fast period while draining
    steps.append(gate.feed(OK, 4.8))
    assert steps[-1].wake_at == 5.0  # the read's grid tick, then the drain's end at 7.5
    steps.append(gate.feed_readiness(OK, 5.01))
    steps.append(gate.feed(OK, 5.02))
    assert steps[-1].wake_at == pytest.approx(5.22)
    steps.append(gate.tick(7.5))
    assert steps[-1].action is W and steps[-1].wake_at is None  # STOPPED: nothing more
    for s in steps:
        times = [t for t in (s.next_check_at, s.next_read_at, s.drain_until) if t is not None]
        assert s.wake_at == (min(times) if times else None)


@pytest.mark.parametrize(
    ("at", "due"),
    [
        (2.21, None),  # the next check is due (fast period) but one is in flight
        (4.999, None),  # just before the drain's end
        (5.0, Due.TICK),  # at it: the drain ends on time, the check still running
        (5.001, Due.TICK),
    ],
)
def test_rule14_a_check_in_flight_holds_everything_but_the_drains_end(
    at: float, due: Due | None
) -> None:
    gate = Gate(URL, 3, 5.0, fast_period=FAST, graceful_shutdown=3.0)  # no reads
    gate.start(0.0)
    gate.feed(OK, 0.01)
    gate.stop(2.0)  # the drain ends at 5.0; the next check at 2.2
    assert gate.due(2.2) is Due.CHECK
    step = gate.begin(Due.CHECK, 2.2)
    assert step.action is None and step.transition is None and step.advice is None
    assert step.wake_at == 5.0 and gate.wake_at == 5.0  # the only wake-up left
    assert gate.due(at) is due
    if due is Due.TICK:
        end = gate.tick(at)
        assert end.action is W and gate.state is GateState.STOPPED and end.wake_at is None
        assert "after a 3 s GRACEFUL_SHUTDOWN drain" in gate.cease_message
        late = gate.feed(OK, at + 5.0)  # the check that outlived the drain ends: dropped
        assert late.action is None and late.transition is None and late.wake_at is None
    else:
        assert gate.tick(at).action is None
        step = gate.feed(OK, at)  # the result ends the check: the cadence is back
        assert step.wake_at == min(at + FAST, 5.0) == gate.wake_at
        assert gate.due(step.wake_at) is not None and gate.due(step.wake_at - 1e-6) is None


@pytest.mark.parametrize("at", [0.001, 4.999, 5.0, 50.0])
def test_rule14_nothing_is_due_while_a_check_is_in_flight_and_no_drain(at: float) -> None:
    gate = fast_gate()  # period 5: grid ticks at 0, 5, 10...
    assert gate.due(0.0) is Due.CHECK
    assert gate.begin(Due.CHECK, 0.0).wake_at is None  # sleep until the result comes
    assert gate.wake_at is None and gate.due(at) is None
    step = gate.feed(OK, at)
    nxt = step.next_check_at
    assert nxt is not None and step.wake_at == nxt == gate.wake_at
    assert nxt == (5.0 if at < 5.0 else math.floor(at / 5.0) * 5.0)  # rule 6 unchanged
    assert gate.due(nxt) is Due.CHECK
    if nxt > at:
        assert gate.due(nxt - 1e-6) is None


def test_rule14_a_read_in_flight_holds_the_check_due_meanwhile() -> None:
    gate = shutdown_gate()  # a read and a check due at 0.0: the read first (not announced)
    assert gate.due(0.0) is Due.READ
    assert gate.begin(Due.READ, 0.0).wake_at is None
    assert gate.due(0.0) is None and gate.due(0.999) is None
    step = gate.feed_readiness(OK, 0.5)
    assert step.wake_at == 0.0 and gate.due(0.5) is Due.CHECK  # the check waited for the read


@pytest.mark.parametrize(("drain", "wake"), [(0.0, None), (3.0, 5.0)])
def test_rule14_stop_during_a_check(drain: float, wake: float | None) -> None:
    gate = up_gate(drain)
    gate.begin(Due.CHECK, 1.9)
    step = gate.stop(2.0)
    assert step.wake_at == wake and gate.due(2.0) is None
    if wake is None:  # no drain: withdrawn at once, the check's result is dropped
        assert step.action is W and gate.feed(OK, 2.1).action is None
    else:
        assert step.action is Action.ANNOUNCE_GRACEFUL_SHUTDOWN
        assert gate.due(wake - 1e-6) is None and gate.due(wake) is Due.TICK


def test_rule14_begin_misuse() -> None:
    with pytest.raises(GateError):
        Gate(URL, 3, 5.0).begin(Due.CHECK, 0.0)  # before start
    disabled = Gate("", 3, 5.0)
    disabled.start(0.0)
    with pytest.raises(GateError):
        disabled.begin(Due.CHECK, 0.0)  # a disabled gate takes no looks
    with pytest.raises(GateError):
        fast_gate().begin(Due.TICK, 0.0)  # the drain's end is not a look: tick()
    gate = fast_gate()
    gate.begin(Due.CHECK, 0.0)
    with pytest.raises(GateError):
        gate.begin(Due.READ, 0.0)  # one look at a time
    gate.feed(OK, 0.1)
    gate.begin(Due.CHECK, 5.0)  # free again after the result


# ---------------------------------------------------------------------------- the step's effects
E = Effect


def test_effects_order_the_address_around_the_route_and_refresh_after_each_check() -> None:
    """Rule 13's order and the routing table's refresh after each check are the gate's: the
    caller carries out ``Step.effects`` as listed."""
    gate = Gate(URL, 2, 1.0, shutdown_period=1.0)
    assert gate.start(0.0).effects == (E.RECORD,)
    assert gate.feed_readiness(OK, 0.001).effects == (E.RECORD,)  # a read: no refresh
    assert gate.feed(OK, 0.01).effects == (E.ROUTE, E.RECORD, E.LOG, E.REFRESH)  # announced
    assert gate.feed(RESULTS["500"], 1.0).effects == (E.RECORD, E.REFRESH)
    withdraw = gate.feed(RESULTS["500"], 2.0)
    assert withdraw.action is W and withdraw.address is Address.REMOVE
    assert withdraw.effects == (E.ROUTE, E.RECORD, E.LOG, E.ADDRESS_REMOVE, E.REFRESH)
    back = gate.feed(OK, 3.0)
    assert back.action is A and back.address is Address.ADD
    assert back.effects == (E.ADDRESS_ADD, E.ROUTE, E.RECORD, E.LOG, E.REFRESH)
    assert gate.connection_closed(3.5).effects == (E.RECORD,)
    shutdown = gate.feed_readiness(READYZ_SHUTDOWN, 4.0)  # withdrawn by a read: no refresh
    assert shutdown.effects == (E.ROUTE, E.RECORD, E.LOG, E.ADDRESS_REMOVE)
    stop = gate.stop(5.0)
    assert stop.effects == (E.RECORD, E.LOG)  # not announced: nothing to withdraw
    assert gate.feed(OK, 5.1).effects == (E.RECORD, E.REFRESH)  # a late check, after the stop


def test_effects_carry_the_advice_after_the_transition() -> None:
    gate = Gate(URL, 1, 1.0)
    gate.start(0.0)
    step = gate.feed(RESULTS["ca"], 0.01)  # STARTING -> DOWN, and the advice
    assert step.effects == (E.RECORD, E.LOG, E.ADVICE, E.REFRESH)


@pytest.mark.parametrize(
    ("action", "level"),
    [
        (Action.WITHDRAW, Level.WARNING),
        (Action.ANNOUNCE_DEPREFERRED, Level.WARNING),
        (Action.ANNOUNCE, Level.INFO),
        (Action.ANNOUNCE_GRACEFUL_SHUTDOWN, Level.INFO),
        (None, Level.INFO),
    ],
)
def test_a_transition_is_logged_at_warning_when_the_route_leaves(
    action: Action | None, level: Level
) -> None:
    t = Transition(1.0, GateState.UP, GateState.DOWN, action, "x", None, ErrorKind.NONE, "", 0, 3)
    assert t.level is level
