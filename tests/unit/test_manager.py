"""The manager with a fake probe, speaker and host (no socket, no netlink, no network): a gate
step's action reaches the speaker before anything else, the gate's clock drives the checks, the
drain and its races (a result arriving while draining, a check that outlives the drain, a second
signal), and the exit statuses of ``daemon.run``. asyncio with small times: period 0.1 s, fast
period 0.02 s, drain 0.3 s; assertions are about order and bounds, not exact times."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from vipgate import cli, daemon
from vipgate.budget import STOP_BUDGET
from vipgate.config import EXIT_CONFIG, Config, IPNetwork, load
from vipgate.health.gate import GateState, Step
from vipgate.health.probe import ErrorKind, ProbeResult
from vipgate.manager import Manager
from vipgate.parts import Parts, build_parts
from vipgate.vip import HostError, HostFacts, host_setup, remove_vips, stated_facts

OK = ProbeResult(True, 200, ErrorKind.NONE, "", 0.001)
RESULTS = {
    "ok": OK,
    "refused": ProbeResult(False, None, ErrorKind.REFUSED, "connection refused", 0.001),
    "500": ProbeResult(False, 500, ErrorKind.HTTP_STATUS, "HTTP 500: [-]etcd failed", 0.001),
}
PERIOD, FAST, DRAIN = 0.1, 0.02, 0.3
ENV = {
    "address": "203.0.113.100",
    "bgp_enable": "true",
    "bgp_peers": "192.0.2.1:65001::false",
    "control_plane_health_check_address": "https://192.0.2.11:6443/livez",
    "control_plane_health_check_period_seconds": str(PERIOD),
    "control_plane_health_check_fast_period_seconds": str(FAST),
    "control_plane_health_check_timeout_seconds": "0.05",
    "bgp_graceful_shutdown_seconds": str(DRAIN),
}
NO_METRICS = {"prometheus_server": ""}


def config(flags: dict[str, str | None] | None = None, **env: str) -> Config:
    return load({**ENV, **env}, NO_METRICS if flags is None else flags)


class Events:
    """One ordered record of what the speaker was asked and what was logged."""

    def __init__(self) -> None:
        self.items: list[str] = []


class FakeSpeaker:
    def __init__(self, events: Events | None = None) -> None:
        self.events = events or Events()
        self.closed: tuple[str, float] | None = None
        self.on_announce: Callable[[], None] | None = None
        self.refreshes = 0
        self.routes: list[str] = []  # each route call with its prefix

    @property
    def calls(self) -> list[str]:
        return [e for e in self.events.items if not e.startswith("log:")]

    async def start(self) -> None:
        self.events.items.append("start")

    def announce(self, prefix: IPNetwork) -> None:
        self.events.items.append("announce")
        self.routes.append(f"announce {prefix}")
        if self.on_announce is not None:
            self.on_announce()

    def deprefer(self, prefix: IPNetwork) -> None:
        self.events.items.append("deprefer")
        self.routes.append(f"deprefer {prefix}")

    def withdraw(self, prefix: IPNetwork) -> None:
        self.events.items.append("withdraw")
        self.routes.append(f"withdraw {prefix}")

    def graceful_shutdown(self, on: bool = True) -> None:
        self.events.items.append(f"graceful {on}")

    def refresh(self) -> None:
        self.refreshes += 1

    async def close(self, message: str, timeout: float = STOP_BUDGET.bgp) -> None:
        self.events.items.append("close")
        self.closed = (message, timeout)


class FakeProbe:
    """A check takes ``delay`` seconds and returns ``answer`` as it is when the check ends
    (both may change meanwhile); a readiness read answers 200 (no shutdown) at once."""

    def __init__(self, delay: float = 0.0) -> None:
        self.on_close: Callable[[], None] | None = None
        self.delay = delay
        self.answer = OK
        self.started: list[float] = []
        self.in_flight = False
        self.reads = 0
        self.cancelled = 0
        self.closed = False

    async def check(self, url: str | None = None) -> ProbeResult:
        if url is not None:
            self.reads += 1
            return OK
        self.started.append(asyncio.get_running_loop().time())
        self.in_flight = True
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight = False
        return self.answer

    async def close(self) -> None:
        self.closed = True


def make(
    probe: FakeProbe, c: Config | None = None, events: Events | None = None
) -> tuple[Manager, FakeSpeaker]:
    """The real builder's parts, with the fakes in place of the speaker and the probes."""
    c = c or config()
    parts = build_parts(c, stated_facts(c))
    speaker = FakeSpeaker(events)
    reader = probe if parts.reader is not None else None
    return Manager(replace(parts, speaker=speaker, probe=probe, reader=reader)), speaker


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.002)


def drive(m: Manager, scenario: Callable[[Manager], Awaitable[None]]) -> float:
    """Run the manager with ``scenario`` beside it; the seconds from the scenario's end (the
    last stop) to the manager's."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(m.run())
        await scenario(m)
        t0 = loop.time()
        await asyncio.wait_for(task, 5.0)
        return loop.time() - t0

    return asyncio.run(main())


# ---------------------------------------------------------------------------- apply
def test_apply_carries_out_each_step_in_order_the_route_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="vipgate.manager")
    events = Events()

    class Record(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            events.items.append(f"log:{record.levelname}:{record.getMessage()}")

    m, _ = make(FakeProbe(), config(flags={}), events)  # metrics on
    assert m.metrics is not None
    handler = Record()
    logging.getLogger("vipgate.manager").addHandler(handler)
    try:
        g = m.gate
        m.apply(g.start(0.0))
        assert m.wake_at == 0.0 and not events.items
        m.apply(g.feed(OK, 0.01))
        assert m.wake_at == 0.0  # the readiness read, not made yet
        step = g.stop(0.5, "SIGTERM")
        m.apply(step)
        assert m.wake_at == step.wake_at and not m.stopped.is_set()
        m.apply(g.tick(0.5 + DRAIN))
    finally:
        logging.getLogger("vipgate.manager").removeHandler(handler)
    assert m.stopped.is_set() and m.wake_at is None
    kinds = [e.split(":")[0] if e.startswith("log:") else e for e in events.items]
    assert kinds == ["announce", "log", "graceful True", "log", "withdraw", "log"]
    assert events.items[1] == "log:INFO:health check passed (HTTP 200): announcing the VIP"
    assert events.items[3].startswith("log:INFO:stopping (SIGTERM): announcing the VIP with")
    assert events.items[5] == (
        "log:WARNING:stopping: VIP withdrawn after a 0.3 s GRACEFUL_SHUTDOWN drain"
    )
    text = m.metrics.exposition()[0].decode()
    assert 'vipgate_prefix_announced{prefix="203.0.113.100/32"} 0.0' in text
    assert 'vipgate_gate_transitions_total{reason="healthy"} 1.0' in text
    assert 'vipgate_gate_transitions_total{reason="drained"} 1.0' in text


# ---------------------------------------------------------------------------- the gate's clock
def test_checks_run_on_the_gates_clock_and_never_early() -> None:
    """Check k starts at or after the gate's start + k periods (rule 6: the grid is measured from
    the start the gate was given, not from the first check, which the readiness read precedes)."""
    probe = FakeProbe()
    started_at: list[float] = []

    async def scenario(m: Manager) -> None:
        await until(lambda: len(probe.started) >= 5)
        m.request_stop("SIGTERM")

    m, speaker = make(probe)
    gate_start = m.gate.start

    def start(now: float) -> Step:
        started_at.append(now)
        return gate_start(now)

    m.gate.start = start  # type: ignore[method-assign]
    elapsed = drive(m, scenario)
    assert speaker.calls == ["announce", "graceful True", "withdraw"]
    assert len(started_at) == 1
    for k, t in enumerate(probe.started[:5]):  # the grid from the start (rule 6)
        assert t >= started_at[0] + k * PERIOD - 1e-9, (k, t - started_at[0])
    assert probe.reads >= 1  # the readiness read came first
    assert DRAIN - 0.01 <= elapsed < DRAIN + 1.0
    assert "after a 0.3 s GRACEFUL_SHUTDOWN drain" in m.gate.cease_message


def test_a_server_close_makes_a_check_at_once() -> None:
    probe = FakeProbe()

    async def scenario(m: Manager) -> None:
        await until(lambda: m.gate.announced)
        await asyncio.sleep(0.05)
        assert probe.on_close is not None
        t = asyncio.get_running_loop().time()
        probe.on_close()  # the apiserver closed the idle connection; next grid tick at 1.0
        await until(lambda: len(probe.started) == 2)
        assert probe.started[1] - t < 0.5
        m.request_stop("SIGTERM")

    m, _ = make(probe, config(control_plane_health_check_period_seconds="1"))
    drive(m, scenario)


# ---------------------------------------------------------------------------- the drain
@pytest.mark.parametrize(
    ("answer", "early", "why"),
    [
        ("ok", False, "VIP withdrawn after a 0.3 s GRACEFUL_SHUTDOWN drain"),
        ("refused", True, "health check failed during the drain (refused)"),
        ("500", True, "health check failed during the drain (http_status)"),
    ],
)
def test_a_check_result_arriving_while_draining(answer: str, early: bool, why: str) -> None:
    """A check begun before the stop ends during the drain: a failure withdraws at once (no
    threshold), a success lets the drain run to its end."""
    probe = FakeProbe()

    async def scenario(m: Manager) -> None:
        await until(lambda: m.gate.announced)
        probe.delay = 0.1
        await until(lambda: probe.in_flight)
        probe.answer = RESULTS[answer]
        m.request_stop("SIGTERM")
        assert m.gate.state is GateState.DRAINING

    m, speaker = make(probe)
    elapsed = drive(m, scenario)
    assert speaker.calls == ["announce", "graceful True", "withdraw"]
    assert why in m.gate.cease_message
    if early:
        assert elapsed < DRAIN - 0.05
    else:
        assert DRAIN - 0.01 <= elapsed < DRAIN + 1.0
        assert len(probe.started) >= 3  # the drain kept checking (fast period)


@pytest.mark.parametrize("drain", [DRAIN, 0.0])
def test_a_check_that_outlives_the_drain_does_not_hold_it(drain: float) -> None:
    probe = FakeProbe()

    async def scenario(m: Manager) -> None:
        await until(lambda: m.gate.announced)
        probe.delay = 30.0  # hung
        await until(lambda: probe.in_flight)
        m.request_stop("SIGTERM")

    m, speaker = make(probe, config(bgp_graceful_shutdown_seconds=str(drain)))
    elapsed = drive(m, scenario)
    assert drain - 0.01 <= elapsed < drain + 1.0  # the drain ends on time
    assert probe.cancelled == 1 and not probe.in_flight
    if drain:
        assert speaker.calls == ["announce", "graceful True", "withdraw"]
        assert "after a 0.3 s GRACEFUL_SHUTDOWN drain" in m.gate.cease_message
    else:
        assert speaker.calls == ["announce", "withdraw"]
        assert "no drain" in m.gate.cease_message


def test_a_second_signal_during_the_drain_withdraws_at_once() -> None:
    probe = FakeProbe()

    async def scenario(m: Manager) -> None:
        await until(lambda: m.gate.announced)
        m.request_stop("SIGTERM")
        await asyncio.sleep(0.05)
        assert m.gate.state is GateState.DRAINING
        m.request_stop("SIGINT")

    m, speaker = make(probe)
    elapsed = drive(m, scenario)
    assert elapsed < DRAIN - 0.1
    assert speaker.calls == ["announce", "graceful True", "withdraw"]
    assert "SIGINT again: VIP withdrawn before the drain ended" in m.gate.cease_message


def test_a_stop_before_anything_was_announced_withdraws_nothing() -> None:
    probe = FakeProbe()
    probe.answer = RESULTS["refused"]

    async def scenario(m: Manager) -> None:
        await until(lambda: len(probe.started) >= 2)
        m.request_stop("SIGTERM")

    m, speaker = make(probe)
    elapsed = drive(m, scenario)
    assert speaker.calls == [] and elapsed < 0.2
    assert "VIP was not announced (gate starting)" in m.gate.cease_message


# ---------------------------------------------------------------------------- daemon.run
@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


class Host:
    """``vip.isolated`` stand-in: host setup returns the stated facts (or raises), and the
    VIP's removal is recorded."""

    def __init__(self, setup: Callable[[Config], HostFacts]) -> None:
        self.setup = setup
        self.calls: list[str] = []

    def isolated(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.calls.append(fn.__name__)
        if fn is host_setup:
            return self.setup(*args)
        assert fn is remove_vips
        return None


def run_with_fakes(
    monkeypatch: pytest.MonkeyPatch, host: Host, signals: int = 0, c: Config | None = None
) -> tuple[int, FakeSpeaker, FakeProbe]:
    """``daemon.run`` with the fakes; ``signals`` SIGTERMs 0.05 s apart once announced."""
    probe = FakeProbe()
    speaker = FakeSpeaker()

    def kill() -> None:
        loop = asyncio.get_running_loop()
        for k in range(signals):
            loop.call_later(0.05 * (k + 1), os.kill, os.getpid(), signal.SIGTERM)

    speaker.on_announce = kill

    def build(c: Config, facts: HostFacts) -> Parts:
        parts = build_parts(c, facts)
        return replace(parts, speaker=speaker, probe=probe, reader=probe)

    monkeypatch.setattr(daemon, "isolated", host.isolated)
    monkeypatch.setattr(daemon, "build_parts", build)
    return daemon.run(c or config()), speaker, probe


@pytest.mark.usefixtures("restore_signals")
@pytest.mark.parametrize("signals", [1, 2])
def test_run_exits_0_after_a_stop_and_closes_everything(
    monkeypatch: pytest.MonkeyPatch, signals: int
) -> None:
    host = Host(stated_facts)
    rc, speaker, probe = run_with_fakes(monkeypatch, host, signals)
    assert rc == 0
    assert speaker.calls == ["start", "announce", "graceful True", "withdraw", "close"]
    assert speaker.closed is not None
    message, timeout = speaker.closed
    assert timeout == STOP_BUDGET.bgp
    why = "SIGTERM again" if signals == 2 else "after a 0.3 s GRACEFUL_SHUTDOWN drain"
    assert message.startswith("vipgate shutting down: ") and why in message
    assert probe.closed
    assert host.calls == ["host_setup", "remove_vips"]


@pytest.mark.usefixtures("restore_signals")
def test_a_dual_stack_pair_is_announced_drained_and_withdrawn_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/configuration.md, "Dual stack": one gate, both prefixes on each of its steps."""
    c = config(
        address="203.0.113.100, 2001:db8:100::100",
        vip_subnet="32,128",
        bgp_peers="192.0.2.1:65001::false,[2001:db8:0:1::1]:65001::false",
    )
    parts = build_parts(c, stated_facts(c))
    assert [str(p) for p in parts.prefixes] == ["203.0.113.100/32", "2001:db8:100::100/128"]
    assert [str(v.address) for v in parts.vips] == ["203.0.113.100", "2001:db8:100::100"]
    host = Host(stated_facts)
    rc, speaker, _ = run_with_fakes(monkeypatch, host, 1, c)
    assert rc == 0
    assert speaker.calls == [
        "start", "announce", "announce", "graceful True", "withdraw", "withdraw", "close",
    ]  # fmt: skip
    assert host.calls == ["host_setup", "remove_vips"]


@pytest.mark.usefixtures("restore_signals")
def test_the_route_is_the_host_route_whatever_vip_subnet(monkeypatch: pytest.MonkeyPatch) -> None:
    """kube-vip's BGP mode announces a /32 or /128 whatever vip_subnet says (pkg/bgp/peers.go,
    getPath); vip_subnet is the length of the VIP's address on the interface."""
    c = config(vip_subnet="24")
    facts: list[HostFacts] = []

    def setup(c: Config) -> HostFacts:
        facts.append(stated_facts(c))
        return facts[-1]

    rc, speaker, _ = run_with_fakes(monkeypatch, Host(setup), 1, c)
    assert rc == 0
    assert speaker.routes == ["announce 203.0.113.100/32", "withdraw 203.0.113.100/32"]
    (host,) = facts
    assert [(str(v.address), v.prefixlen) for v in host.vips] == [("203.0.113.100", 24)]


@pytest.mark.usefixtures("restore_signals")
def test_the_manager_warns_in_vipgate_configs_order(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``vipgate manager``: the configuration's warnings (health gate OFF first), then the
    names vipgate does not read, as ``vipgate config`` orders them (docs/configuration.md,
    "Settings"): a kube-vip manifest brings a dozen names, which would bury the others."""
    env = {k: v for k, v in ENV.items() if k != "control_plane_health_check_address"}
    env |= {**NO_METRICS, "vip_leaderelection": "true", "vip_arp": "true"}
    speaker = FakeSpeaker()
    speaker.on_announce = lambda: os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(cli, "environment", lambda: env)
    monkeypatch.setattr(daemon, "isolated", Host(stated_facts).isolated)
    monkeypatch.setattr(
        daemon, "build_parts", lambda c, f: replace(build_parts(c, f), speaker=speaker)
    )
    handler = logging.StreamHandler(sys.stderr)  # the pod's log: lines and print()s in order
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger("vipgate.manager").addHandler(handler)
    try:
        assert cli.main(["manager"]) == 0
    finally:
        logging.getLogger("vipgate.manager").removeHandler(handler)
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith(("WARNING", "warn"))]
    assert lines[0].startswith("WARNING vipgate.manager: health gate OFF: "), lines
    assert lines[1].startswith("WARNING vipgate.manager: ") and "leader election" in lines[1]
    assert lines[2].startswith("warning: environment variable vip_arp is a kube-vip setting")
    assert sum("vip_arp" in x for x in lines) == 1, lines


@pytest.mark.usefixtures("restore_signals")
def test_run_exit_statuses_before_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(c: Config) -> HostFacts:
        raise HostError("interface 'eth9' does not exist on this host")

    def no_permission(c: Config) -> HostFacts:
        raise PermissionError(1, "Operation not permitted")

    def signalled(c: Config) -> HostFacts:
        os.kill(os.getpid(), signal.SIGTERM)  # remembered, not acted on (host work under way)
        return stated_facts(c)

    assert daemon.run(config(bgp_enable="false")) == EXIT_CONFIG  # refused before the host
    for setup, rc, calls in [
        (refuse, EXIT_CONFIG, ["host_setup"]),
        (no_permission, 1, ["host_setup"]),
        (signalled, 0, ["host_setup", "remove_vips"]),  # undone, exit 0
    ]:
        host = Host(setup)
        got, speaker, _ = run_with_fakes(monkeypatch, host)
        assert (got, host.calls, speaker.calls) == (rc, calls, []), setup.__name__


def test_the_stop_budget_adds_up() -> None:
    """After the drain: BGP, then the two probes and the metrics server, with time left for
    the VIP's removal; the manifests' grace period is made from ``after_drain``."""
    b = STOP_BUDGET
    assert b.bgp + 3 * b.part < b.after_drain
    assert 0 < b.bgp_ack_share < 1


def test_apply_deprefers_at_the_threshold_when_told_to(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vipgate.manager")
    m, speaker = make(FakeProbe(), config(control_plane_health_check_unhealthy_action="deprefer"))
    g = m.gate
    m.apply(g.start(0.0))
    m.apply(g.feed(OK, 0.01))
    for i in range(3):
        m.apply(g.feed(RESULTS["500"], 1.0 + i))
    m.apply(g.feed(OK, 5.0))
    assert speaker.calls == ["announce", "deprefer", "announce"]
    levels = [r.levelno for r in caplog.records if r.name == "vipgate.manager"]
    assert levels == [logging.INFO, logging.WARNING, logging.INFO]


def test_apply_logs_the_advice_at_the_level_the_gate_gives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A restart's start-up answers (refused, 403 x3, 500 x2, 200): no ERROR, the 500 at INFO;
    a 403 that persists past the start-up: the access advice, once, as an ERROR."""
    caplog.set_level(logging.INFO, logger="vipgate.manager")
    m, _ = make(FakeProbe())
    g = m.gate
    m.apply(g.start(0.0))
    m.apply(g.feed(OK, 0.01))
    forbidden = ProbeResult(False, 403, ErrorKind.HTTP_STATUS, "HTTP 403 Forbidden", 0.001)
    hooks = ("poststarthook/rbac/bootstrap-roles",)
    starting = replace(RESULTS["500"], failed_checks=hooks)
    restart = [RESULTS["refused"]] * 3 + [forbidden] * 3 + [starting] * 2 + [OK]
    for i, result in enumerate(restart):
        m.apply(g.feed(result, 1.0 + 0.3 * i))
    assert g.announced
    records = [r for r in caplog.records if r.name == "vipgate.manager"]
    assert not [r for r in records if r.levelno >= logging.ERROR]
    info = [r.getMessage() for r in records if "the apiserver is starting" in r.getMessage()]
    assert len(info) == 1 and "poststarthook/rbac/bootstrap-roles" in info[0]
    caplog.clear()
    m.apply(g.feed(RESULTS["refused"], 10.0))
    for i in range(80):  # 16 s of 403 after the restart
        m.apply(g.feed(forbidden, 10.2 + 0.2 * i))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "refuses anonymous access to /livez" in errors[0]


def test_apply_follows_the_gates_order_address_route_log_address_refresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The address comes back before the announcement and leaves after the withdrawal and its
    log line; the routing table is refreshed after each check, not after a read (Step.effects)."""
    caplog.set_level(logging.INFO, logger="vipgate.manager")
    events = Events()
    m, speaker = make(FakeProbe(), config(control_plane_health_check_failure_threshold="1"), events)
    m.vip_address = lambda add: events.items.append(f"address {'on' if add else 'off'}")  # type: ignore[method-assign]

    class Record(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            events.items.append(f"log:{record.levelname}")

    handler = Record()
    logging.getLogger("vipgate.manager").addHandler(handler)
    try:
        g = m.gate
        m.apply(g.start(0.0))
        m.apply(g.feed_readiness(OK, 0.001))
        assert speaker.refreshes == 0
        m.apply(g.feed(OK, 0.01))
        m.apply(g.feed(RESULTS["500"], 0.1))
        m.apply(g.feed(OK, 0.2))
    finally:
        logging.getLogger("vipgate.manager").removeHandler(handler)
    assert events.items == [
        "announce",
        "log:INFO",
        "withdraw",
        "log:WARNING",
        "address off",
        "address on",
        "announce",
        "log:INFO",
    ]
    assert speaker.refreshes == 3
