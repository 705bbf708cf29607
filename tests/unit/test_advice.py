"""The gate's advice (health/advice.py): rules 1-5 at its top by table -- above all the
apiserver's start-up (403 while its RBAC rules load, 500 while its post-start hooks run) is not
an access problem, and a persistent 401/403 still is, once per episode."""

from __future__ import annotations

import pytest

from vipgate.health.advice import (
    _SAY,
    STARTUP_ANSWERS,
    STARTUP_SECONDS,
    AdviceKind,
    AdviceLevel,
    Teacher,
)
from vipgate.health.gate import Gate
from vipgate.health.probe import ErrorKind, ProbeResult, ResponseClassifier, failed_checks

URL = "https://192.0.2.11:6443/livez"
HOOKS = (
    "poststarthook/rbac/bootstrap-roles",
    "poststarthook/scheduling/bootstrap-system-priority-classes",
)
BODY_500 = (
    b"[+]ping ok\n[+]log ok\n[+]etcd ok\n"
    b"[+]poststarthook/start-apiserver-admission-initializer ok\n"
    b"[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\n"
    b"[-]poststarthook/scheduling/bootstrap-system-priority-classes failed: reason withheld\n"
    b"[+]poststarthook/apiservice-registration-controller ok\nlivez check failed\n"
)
R: dict[str, ProbeResult] = {
    "ok": ProbeResult(True, 200, ErrorKind.NONE, "", 0.002),
    "refused": ProbeResult(False, None, ErrorKind.REFUSED, "connection refused", 0.001),
    "reset": ProbeResult(False, None, ErrorKind.RESET, "connection reset by the server", 0.001),
    "timeout": ProbeResult(False, None, ErrorKind.TIMEOUT, "no response headers", 1.0),
    "403": ProbeResult(False, 403, ErrorKind.HTTP_STATUS, "HTTP 403 Forbidden", 0.002),
    "401": ProbeResult(False, 401, ErrorKind.HTTP_STATUS, "HTTP 401 Unauthorized", 0.002),
    "500": ProbeResult(
        False, 500, ErrorKind.HTTP_STATUS, "HTTP 500: [+]ping ok", 0.002, failed_checks=HOOKS
    ),
    "etcd": ProbeResult(
        False, 500, ErrorKind.HTTP_STATUS, "HTTP 500", 0.002, failed_checks=("etcd",)
    ),
    "ca": ProbeResult(False, None, ErrorKind.TLS_VERIFY, "certificate verify failed", 0.01),
}
# A real kube-apiserver restarting: refused, 403 x3 over about a second, 500 x2, 200.
RESTART = [(0.0, "refused"), (0.2, "403"), (0.6, "403"), (1.1, "403"), (1.4, "500")]
RESTART += [(2.0, "500"), (2.5, "ok")]


def run(seq: list[tuple[float, str]], teacher: Teacher | None = None) -> list[tuple[str, str]]:
    """(kind, level) of each advice given, "" where none."""
    t = teacher or Teacher(URL)
    if teacher is None:
        t.started(0.0)
    out = []
    for now, name in seq:
        if name == "close":
            t.closed(now)
            continue
        adv = t.feed(R[name], now)
        out.append((adv.kind.value, adv.level.value) if adv else ("", ""))
    return out


def up_at(t0: float) -> Teacher:
    """A teacher whose apiserver has answered 200 (its start-up is over)."""
    t = Teacher(URL)
    t.started(0.0)
    t.feed(R["ok"], t0)
    return t


NONE = ("", "")
ACCESS = ("access_denied", "error")
INFO = ("starting_up", "info")


# ---------------------------------------------------------------------------- rule 3-5: start-up
def test_a_restart_logs_no_error_and_names_the_starting_checks_once_at_info() -> None:
    got = run([(t + 100.0, n) for t, n in RESTART], up_at(50.0))
    assert got == [NONE, NONE, NONE, NONE, INFO, NONE, NONE]


def test_the_start_up_line_names_the_failed_checks() -> None:
    t = Teacher(URL)
    t.started(0.0)
    adv = t.feed(R["500"], 0.1)
    assert adv is not None and adv.level is AdviceLevel.INFO
    assert adv.message == (
        "the apiserver is starting: https://192.0.2.11:6443/livez answers HTTP 500, not passed "
        "yet: poststarthook/rbac/bootstrap-roles, "
        "poststarthook/scheduling/bootstrap-system-priority-classes; "
        "the VIP is announced at its first 200"
    )
    bare = Teacher(URL)
    bare.started(0.0)
    adv = bare.feed(ProbeResult(False, 500, ErrorKind.HTTP_STATUS, "HTTP 500", 0.0), 0.1)
    assert adv is not None and "no failed check named in its body" in adv.message


@pytest.mark.parametrize(
    ("seq", "want"),
    [
        # vipgate starts with the apiserver: its first answers are its start-up
        ([(0.0, "403"), (0.5, "500"), (1.0, "ok")], [NONE, INFO, NONE]),
        # a close of the idle connection (a crash, a restart) begins one too
        ([(0.0, "ok"), (5.0, "close"), (5.01, "403"), (5.3, "500")], [NONE, NONE, INFO]),
        ([(0.0, "ok"), (5.0, "reset"), (5.01, "403"), (5.3, "500")], [NONE, NONE, NONE, INFO]),
        # a 401/403 after a 200 is no start-up: the access advice at once (RBAC changed)
        ([(0.0, "ok"), (5.0, "403"), (10.0, "403")], [NONE, ACCESS, NONE]),
        ([(0.0, "ok"), (5.0, "401")], [NONE, ACCESS]),
        # a 500 of a running apiserver (etcd) is the transition's business: no advice
        ([(0.0, "ok"), (5.0, "etcd"), (10.0, "etcd")], [NONE, NONE, NONE]),
        # the start-up's 500 is named once per start-up; a new start-up names it again
        (
            [(0.0, "500"), (0.2, "500"), (0.4, "refused"), (0.6, "500"), (0.8, "ok")],
            [INFO, NONE, NONE, INFO, NONE],
        ),
        # TLS problems do not come and go with a restart: advised during the start-up too
        ([(0.0, "ca"), (0.2, "ca")], [("tls_verify", "error"), NONE]),
    ],
)
def test_start_up_table(seq: list[tuple[float, str]], want: list[tuple[str, str]]) -> None:
    assert run(seq) == want


# ------------------------------------------------------------ rule 3-4: a persistent 401/403
@pytest.mark.parametrize("status", ["403", "401"])
def test_a_persistent_refusal_is_advised_exactly_once_past_the_start_up(status: str) -> None:
    """After a restart: refused, then the status at the fast period for a minute."""
    seq = [(0.0, "refused")] + [(0.2 + 0.2 * i, status) for i in range(300)]
    got = run(seq, up_at(-10.0))
    given = [i for i, a in enumerate(got) if a != NONE]
    assert [got[i] for i in given] == [ACCESS]
    first_answer, at = 0.2, seq[given[0]][0]
    assert at == pytest.approx(first_answer + STARTUP_SECONDS)  # the first check 10 s after


def test_a_persistent_refusal_from_vipgates_start_on_kube_vips_grid() -> None:
    """Fast period 0, period 5 s: the third answer is 10 s after the first."""
    got = run([(5.0 * i, "401") for i in range(6)])
    assert got == [NONE, NONE, ACCESS, NONE, NONE, NONE]


@pytest.mark.parametrize(
    ("answers", "seconds", "advised"),
    [
        (STARTUP_ANSWERS, STARTUP_SECONDS, True),
        (STARTUP_ANSWERS, STARTUP_SECONDS - 0.01, False),
        (STARTUP_ANSWERS - 1, 60.0, False),  # two answers a minute apart: not yet
        (STARTUP_ANSWERS + 5, STARTUP_SECONDS - 0.01, False),
    ],
)
def test_the_start_up_bound_both_sides(answers: int, seconds: float, advised: bool) -> None:
    """The ``answers``-th answer, ``seconds`` after the first, is a 403."""
    spacing = seconds / (answers - 1)
    seq = [(spacing * i, "403") for i in range(answers)]
    assert run(seq)[-1] == (ACCESS if advised else NONE)


def test_timeouts_neither_count_as_answers_nor_begin_a_start_up() -> None:
    seq = [(0.0, "403"), (4.0, "timeout"), (8.0, "timeout"), (10.0, "403"), (11.0, "403")]
    assert run(seq) == [NONE, NONE, NONE, NONE, ACCESS]


def test_the_episode_rule_still_holds_past_the_start_up() -> None:
    """Advised once per episode: a 200 ends it, the next 403 (no start-up) advises again."""
    t = up_at(0.0)
    got = run([(5.0, "403"), (10.0, "403"), (15.0, "ok"), (20.0, "403")], t)
    assert got == [ACCESS, NONE, NONE, ACCESS]


def test_the_table_has_every_kind_the_teacher_says() -> None:
    for kind in AdviceKind:
        if kind is not AdviceKind.READINESS_UNREADABLE:  # the gate's own, once per gate
            assert (kind, True) in _SAY and (kind, False) in _SAY
    assert _SAY[AdviceKind.ACCESS_DENIED, True] is None
    assert _SAY[AdviceKind.STARTING_UP, True] is AdviceLevel.INFO


# ---------------------------------------------------------------------------- through the gate
def test_the_gate_gives_no_error_on_a_restart_and_one_on_a_persistent_403() -> None:
    gate = Gate(URL, 3, 5.0, fast_period=0.2)
    gate.start(0.0)
    gate.feed(R["ok"], 0.01)
    steps = [gate.feed(R[n], 100.0 + t) for t, n in [(-0.4, "refused"), (-0.2, "refused")]]
    steps += [gate.feed(R[n], 100.0 + t) for t, n in RESTART]
    assert [s.advice.level for s in steps if s.advice] == [AdviceLevel.INFO]
    assert gate.announced
    errors = []
    gate.feed(R["refused"], 200.0)
    for i in range(100):  # restarted with anonymous access refused: 20 s of 403s
        step = gate.feed(R["403"], 200.2 + 0.2 * i)
        if step.advice is not None:
            errors.append((step.advice.kind, step.advice.level))
    assert errors == [(AdviceKind.ACCESS_DENIED, AdviceLevel.ERROR)]


# ---------------------------------------------------------------------------- the probe's part
def test_failed_checks_are_read_from_a_500_body() -> None:
    assert failed_checks(BODY_500) == HOOKS
    assert failed_checks(b"[-]etcd failed: reason withheld\r\nlivez check failed") == ("etcd",)
    assert failed_checks(b"[+]ping ok\n") == ()
    assert failed_checks(b"x[-]etcd failed\n[-]has space failed\n[-]\x1b[31m failed") == ()
    many = b"".join(b"[-]c%d failed\n" % i for i in range(20))
    assert len(failed_checks(many)) == 8


def test_the_classifier_names_a_500s_failed_checks() -> None:
    c = ResponseClassifier()
    c.request(b"/livez", [(b"host", b"192.0.2.11")])
    head = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: %d\r\n\r\n" % len(BODY_500)
    c.receive(head + BODY_500)
    assert c.verdict is not None and c.verdict.failed_checks == HOOKS
    c.request(b"/livez", [(b"host", b"192.0.2.11")])
    c.receive(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\n[-")
    assert c.verdict is not None and not c.verdict.failed_checks
