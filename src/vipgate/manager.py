"""The manager: carries out the gate's steps on the speaker, the VIP address and the metrics,
on the gate's clock (docs/design.md, "The manager"). The process around it -- host setup,
signals, the parts' close, exit statuses -- is ``daemon.py``.

:meth:`Manager.run` keeps no clock of its own: it sleeps until the wake-up the gate's last step
named (``Step.wake_at``) or an event -- a check or read ended, the apiserver closed the probe's
idle connection, a stop signal -- feeds the gate what happened and does what :meth:`Gate.due`
says: start a readiness read or a /livez check (as a task, told to the gate with
:meth:`Gate.begin`), or end the drain. The gate decides every "when" (``health/gate.py`` rules
6-8, 11, 14): the grid, the fast period, event-driven checks and the drain's end, also when a
check outlives the drain. Each decision reaches the speaker in the event-loop turn of its event
(:meth:`Manager.apply`, the effects in ``Step.effects``' order).

A stop signal (:meth:`Manager.request_stop`) goes to the gate, which decides between the drain
and the withdrawal (rules 10, 11); :meth:`Manager.run` returns when the gate is STOPPED, and
``daemon.py`` closes the sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from vipgate.health.gate import Action, Due, Effect, GateState, Level, Step, readiness_signal
from vipgate.health.probe import Probe
from vipgate.parts import Parts, ProbePart, SpeakerPart, build_announcer, build_parts
from vipgate.vip import VIP_PROTO, VipHandle, vip_label
from vipgate.vipaddr import AddressOp, change

__all__ = [
    "Manager",
    "Parts",
    "ProbePart",
    "SpeakerPart",
    "build_announcer",
    "build_parts",
]

log = logging.getLogger("vipgate.manager")

_LEVELS = {Level.ERROR: logging.ERROR, Level.WARNING: logging.WARNING, Level.INFO: logging.INFO}


class Manager:
    """Carries out the gate's steps on the speaker and the metrics, on the gate's clock."""

    def __init__(self, parts: Parts):
        self.config = parts.config
        self.vips = parts.vips  # the VIP addresses on the interface (gate rule 13)
        self.vip_off = False
        self.speaker = parts.speaker
        self.prefixes = parts.prefixes
        self.metrics = parts.metrics
        self.gate = parts.gate
        self.probe = parts.probe
        self.reader = parts.reader
        self.readiness_url = parts.readiness_url
        self.stopped = asyncio.Event()  # the gate reached STOPPED: close the sessions
        self.wake = asyncio.Event()  # an event came: a look ended, a close, a stop signal
        self.wake_at: float | None = None  # the last step's wake-up (rule 12)
        self._look: asyncio.Task[None] | None = None  # the check or read in flight
        self._carry_out: dict[Effect, Callable[[Step], None]] = {
            Effect.ADDRESS_ADD: lambda _: self.vip_address(add=True),
            Effect.ROUTE: self._route,
            Effect.RECORD: self._record,
            Effect.LOG: self._log,
            Effect.ADVICE: self._advise,
            Effect.ADDRESS_REMOVE: lambda _: self.vip_address(add=False),
            Effect.REFRESH: lambda _: self.speaker.refresh(),
        }
        if self.probe is not None:
            self.probe.on_close = self._server_closed
            if isinstance(self.probe, Probe):  # (the tests' fake probes have no TLS files)
                self.probe.on_tls_reload = self._tls_reloaded
        if self.metrics is not None:  # every series exists from the start, so alerts see a 0
            for prefix in self.prefixes:
                self.metrics.announced(prefix, False)
                self.metrics.route_state(prefix, self.gate.route_state)
            self.metrics.gate(self.gate.state, 0, 0, self.gate.check_interval)

    def apply(self, step: Step) -> None:
        """Carry out a gate step's effects, in the gate's order (``Step.effects``: the VIP
        address back on before an announcement, the route, the metrics, the log lines, the
        address off after a withdrawal, the routing table's refresh after a check), all
        synchronously: in the event-loop turn of the step's event."""
        self.wake_at = step.wake_at
        for effect in step.effects:
            self._carry_out[effect](step)
        if self.gate.state is GateState.STOPPED:
            self.stopped.set()

    def _record(self, step: Step) -> None:
        g = self.gate
        if self.metrics:
            self.metrics.gate(
                g.state, g.consecutive_failures, g.consecutive_successes, g.check_interval
            )

    def _route(self, step: Step) -> None:
        self.route(step.action)
        if self.metrics:
            for prefix in self.prefixes:
                self.metrics.announced(prefix, self.gate.announced)
                self.metrics.route_state(prefix, self.gate.route_state)

    def _log(self, step: Step) -> None:
        t = step.transition
        assert t is not None
        log.log(_LEVELS[t.level], "%s", t.message)
        if self.metrics:
            self.metrics.transition(t.reason)

    def _advise(self, step: Step) -> None:
        assert step.advice is not None
        log.log(_LEVELS[step.advice.level], "%s", step.advice.message)

    def route(self, action: Action | None) -> None:
        """The gate's route action on every prefix (a dual-stack pair: both, in one turn)."""
        per_prefix = {
            Action.ANNOUNCE: self.speaker.announce,
            Action.ANNOUNCE_DEPREFERRED: self.speaker.deprefer,
            Action.WITHDRAW: self.speaker.withdraw,
        }.get(action)  # type: ignore[arg-type]
        if per_prefix is not None:
            for prefix in self.prefixes:
                per_prefix(prefix)
        elif action is Action.ANNOUNCE_GRACEFUL_SHUTDOWN:
            self.speaker.graceful_shutdown(True)

    def vip_address(self, add: bool) -> None:
        """Put the VIPs back on their interface (`add`) or take them off -- only addresses
        vipgate added itself. A failure is logged; the route decision stands."""
        if add != self.vip_off:
            return
        for vip in self.vips:
            if vip.added:
                self._vip_address(vip, add)
        self.vip_off = not add

    def _vip_address(self, vip: VipHandle, add: bool) -> None:
        v4 = vip.address.version == 4
        op = AddressOp(
            add,
            vip.address,
            vip.prefixlen,
            vip.interface,
            vip.index,
            label=vip_label(vip.interface) if v4 else "",
            proto=0 if v4 else VIP_PROTO,
        )
        try:
            change(op)
        except OSError as e:
            log.warning("VIP %s on %s: %s", vip.address, vip.interface, e)
            return
        if add:
            log.info("VIP %s/%d back on %s", vip.address, vip.prefixlen, vip.interface)
        else:
            log.info(
                "VIP %s/%d removed from %s while the route is withdrawn: the node's own "
                "clients of the VIP go through the router to a healthy node",
                vip.address,
                vip.prefixlen,
                vip.interface,
            )

    def request_stop(self, cause: str) -> None:
        """SIGTERM/SIGINT: the gate decides between drain and withdrawal (rules 10, 11)."""
        self.apply(self.gate.stop(asyncio.get_running_loop().time(), cause))
        self.wake.set()

    def _tls_reloaded(self, ok: bool, text: str) -> None:
        """The probe's TLS files changed on disk: loaded again, or kept (once per change)."""
        if self.metrics:
            self.metrics.tls_reload(ok)
        if ok:
            log.info("TLS files changed on disk, %s; the next check uses them", text)
        else:
            log.warning("TLS files changed on disk but do not load: %s", text)

    def _server_closed(self) -> None:
        """The apiserver closed the idle keep-alive connection: the gate says check now."""
        if self.metrics:
            self.metrics.server_close()
        self.apply(self.gate.connection_closed(asyncio.get_running_loop().time()))
        self.wake.set()

    async def _run_look(self, due: Due) -> None:
        """One readiness read or /livez check; its result goes to the gate when it ends."""
        loop = asyncio.get_running_loop()
        if due is Due.READ:
            assert self.reader is not None
            result = await self.reader.check(self.readiness_url)
            if self.metrics:
                self.metrics.readiness(readiness_signal(result))
            self.apply(self.gate.feed_readiness(result, loop.time()))
        else:
            assert self.probe is not None
            result = await self.probe.check()
            if self.metrics:
                self.metrics.probe_result(result)
            self.apply(self.gate.feed(result, loop.time()))  # then the refresh (Effect.REFRESH)

    def _act(self, now: float) -> bool:
        """Do what is due at ``now``; False when nothing is (sleep until the next wake-up)."""
        look = self._look
        if look is not None and look.done():
            self._look = None
            look.result()  # its result is in the gate; a bug in it surfaces here
            return True
        due = self.gate.due(now)
        if due is Due.TICK:
            self.apply(self.gate.tick(now))
        elif due is not None:
            self._look = asyncio.create_task(self._run_look(due), name=f"gate-{due.value}")
            self._look.add_done_callback(lambda _: self.wake.set())
            self.apply(self.gate.begin(due, now))
        return due is not None

    def _log_settings(self) -> None:
        c = self.config
        log.info(
            "health check %s every %gs (timeout %gs, withdraw after %d failures, announce "
            "after %d healthy in a row, fast period %gs); readiness read %s; %s is "
            "announced after a healthy check",
            c.health_url,
            c.health_period,
            c.health_timeout,
            c.health_threshold,
            c.health_success_threshold,
            c.health_fast_period,
            f"{self.readiness_url} every {c.health_shutdown_period:g}s"
            if self.readiness_url
            else "off",
            " and ".join(map(str, self.prefixes)),
        )

    async def run(self) -> None:
        """Until the gate is STOPPED: sleep until the gate's wake-up or an event, then do what
        is due. A check still in flight when the gate stops is cancelled."""
        loop = asyncio.get_running_loop()
        if self.probe is not None:
            self._log_settings()
        self.apply(self.gate.start(loop.time()))
        try:
            while not self.stopped.is_set():
                self.wake.clear()
                if self._act(loop.time()):
                    continue
                wake_at = self.wake_at
                timeout = None if wake_at is None else max(0.0, wake_at - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout)
        finally:
            look, self._look = self._look, None
            if look is not None:
                look.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await look
