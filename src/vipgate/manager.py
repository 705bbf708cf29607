"""The daemon: config -> VIP -> BGP sessions -> probe loop -> gate -> speaker; signals; shutdown.

Order of start (DESIGN.md sections 1 and 3):

1. The VIP goes on ``vip_interface`` (left alone if already there), the router id is resolved.
2. The BGP sessions start at once, so the first healthy check announces without waiting for a
   session to come up (a session that comes up later gets the Adj-RIB-Out).
3. The probe loop runs what the gate says is due -- a readiness read, a /livez check, the end
   of the drain -- and sleeps until the gate's next time (``health/gate.py`` keeps the cadence:
   grid, fast period, event-driven checks). A close of the probe's idle connection by the
   apiserver and a stop signal reach the gate at once and wake the loop. Each decision reaches
   the speaker in the same event-loop turn.

Order of stop (SIGTERM/SIGINT), as the gate decides (rules 10, 11): with the route announced and
``bgp_graceful_shutdown_seconds`` > 0, re-announce it with GRACEFUL_SHUTDOWN and keep checking
until the drain ends (earlier on a failed check); withdraw; make sure the UPDATE left the socket;
Cease / Administrative Shutdown with the gate's message (why we go); remove the VIP if we added
it; exit 0 -- within ``bgp_graceful_shutdown_seconds +`` :data:`STOP_AFTER_DRAIN` seconds even
with a silent peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from vipgate import __version__
from vipgate.bgp.speaker import Speaker, SpeakerSettings, peer_settings
from vipgate.config import Config, IPNetwork
from vipgate.health.gate import Action, Address, Due, Gate, GateState, Step, readiness_signal
from vipgate.health.probe import Probe
from vipgate.metrics import Metrics, MetricsServer
from vipgate.vip import (
    VIP_PROTO,
    HostError,
    HostFacts,
    VipHandle,
    defer_stop_signals,
    host_setup,
    isolated,
    remove_vip,
    vip_label,
)
from vipgate.vipaddr import AddressOp, change

log = logging.getLogger("vipgate.manager")

SHUTDOWN_BUDGET = 2.0  # seconds for withdraw + NOTIFICATION + close
EXIT_CONFIG = 2


class Manager:
    """Wires probe, gate, speaker and metrics; carries out the gate's steps and timing."""

    def __init__(
        self,
        config: Config,
        speaker: Speaker,
        prefix: IPNetwork,
        metrics: Metrics | None,
        vip: VipHandle | None = None,
    ):
        self.config = config
        self.vip = vip  # the VIP address vipgate put on the interface (gate rule 13)
        self.vip_off = False
        self.speaker = speaker
        self.prefix = prefix
        self.metrics = metrics
        self.readiness_url = config.readiness_url if config.health_enabled else ""
        self.gate = Gate(
            config.health_url,
            config.health_threshold,
            config.health_period,
            fast_period=config.health_fast_period,
            success_threshold=config.health_success_threshold,
            shutdown_period=config.health_shutdown_period if self.readiness_url else 0.0,
            graceful_shutdown=config.bgp_graceful_shutdown,
            readiness_url=self.readiness_url,
            unhealthy_action=config.health_unhealthy_action,
        )
        self.stopping = asyncio.Event()  # a stop signal came
        self.stopped = asyncio.Event()  # the gate reached STOPPED: close the sessions
        self.wake = asyncio.Event()  # the gate's schedule changed outside the loop
        self.probe: Probe | None = None
        self.reader: Probe | None = None  # reads the readiness (the same probe when it can)
        if metrics is not None:  # every series exists from the start, so alerts see a 0
            metrics.announced(prefix, False)
            metrics.route_state(prefix, self.gate.route_state)
            metrics.gate(self.gate.state, 0, 0, self.gate.check_interval)
        if config.health_enabled:
            tls = (config.health_timeout, config.health_ca_path, config.health_server_name)
            cert = (config.health_client_cert_path, config.health_client_key_path)
            self.probe = Probe(config.health_url, *tls, *cert, on_close=self._server_closed)
            if self.readiness_url:
                same = self.probe.same_origin(self.readiness_url)
                self.reader = self.probe if same else Probe(self.readiness_url, *tls, *cert)

    def apply(self, step: Step) -> None:
        """Carry a gate step to the speaker (synchronously: same event-loop turn), then log it.
        The VIP address goes back on before an announcement and off after a withdrawal when
        the gate says so (rule 13)."""
        if step.address is Address.ADD:
            self.vip_address(add=True)
        if step.action is Action.ANNOUNCE:
            self.speaker.announce(self.prefix)
        elif step.action is Action.ANNOUNCE_DEPREFERRED:
            self.speaker.deprefer(self.prefix)
        elif step.action is Action.ANNOUNCE_GRACEFUL_SHUTDOWN:
            self.speaker.graceful_shutdown(True)
        elif step.action is Action.WITHDRAW:
            self.speaker.withdraw(self.prefix)
        if step.address is Address.REMOVE:
            self.vip_address(add=False)
        g = self.gate
        if self.metrics:
            self.metrics.gate(
                g.state, g.consecutive_failures, g.consecutive_successes, g.check_interval
            )
            if step.action is not None:
                self.metrics.announced(self.prefix, g.announced)
                self.metrics.route_state(self.prefix, g.route_state)
        if step.transition is not None:
            warn = step.action in (Action.WITHDRAW, Action.ANNOUNCE_DEPREFERRED)
            level = logging.WARNING if warn else logging.INFO
            log.log(level, "%s", step.transition.message)
            if self.metrics:
                self.metrics.transition(step.transition.reason)
        if step.advice is not None:
            log.error("%s", step.advice.message)
        if g.state is GateState.STOPPED:
            self.stopped.set()

    def vip_address(self, add: bool) -> None:
        """Put the VIP back on its interface (`add`) or take it off -- only an address vipgate
        added itself. A failure is logged; the route decision stands."""
        vip = self.vip
        if vip is None or not vip.added or add != self.vip_off:
            return
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
        self.vip_off = not add
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
        self.stopping.set()
        self.wake.set()

    def _server_closed(self) -> None:
        """The apiserver closed the idle keep-alive connection: the gate says check now."""
        if self.metrics:
            self.metrics.server_close()
        self.apply(self.gate.connection_closed(asyncio.get_running_loop().time()))
        self.wake.set()

    async def probe_loop(self) -> None:
        """Run what the gate says is due (read, check, end of drain); sleep until the next."""
        loop = asyncio.get_running_loop()
        while not self.stopped.is_set():
            self.wake.clear()
            due = self.gate.due(loop.time())
            if due is Due.READ:
                assert self.reader is not None
                result = await self.reader.check(self.readiness_url)
                if self.metrics:
                    self.metrics.readiness(readiness_signal(result))
                self.apply(self.gate.feed_readiness(result, loop.time()))
            elif due is Due.CHECK:
                assert self.probe is not None
                result = await self.probe.check()
                if self.metrics:
                    self.metrics.probe_result(result)
                self.apply(self.gate.feed(result, loop.time()))
            elif due is Due.TICK:
                self.apply(self.gate.tick(loop.time()))
            else:
                wake_at = self.gate.wake_at
                timeout = None if wake_at is None else max(0.0, wake_at - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout)

    async def run(self) -> None:
        """Until the gate is STOPPED: probe; after a stop signal, end the drain on time even
        while a check is still running (the gate's ``drain_until``)."""
        loop = asyncio.get_running_loop()
        c = self.config
        if self.probe is not None:
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
                self.prefix,
            )
        self.apply(self.gate.start(loop.time()))
        loop_task = asyncio.create_task(self.probe_loop(), name="probe-loop")
        try:
            for event in (self.stopping, self.stopped):
                waiter = asyncio.create_task(event.wait())
                until = self.gate.drain_until
                timeout = None if until is None else max(0.0, until - loop.time())
                done, _ = await asyncio.wait(
                    {loop_task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                if loop_task in done:
                    loop_task.result()  # a bug in the loop: let it surface
            if until is not None and not self.stopped.is_set():  # a check outlived the drain
                self.apply(self.gate.tick(max(loop.time(), until)))
        finally:
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task


async def _serve(
    config: Config, prefix: IPNetwork, host: HostFacts, early: list[signal.Signals]
) -> int:
    loop = asyncio.get_running_loop()
    metrics = Metrics() if config.prometheus_listen else None
    metrics_server: MetricsServer | None = None
    speaker = Speaker(
        SpeakerSettings(
            local_as=config.bgp_as,
            router_id=host.router_id,
            hold_time=config.bgp_hold_time,
            keepalive=config.keepalive,
            source_ip=config.bgp_sourceip,
            source_if=config.bgp_sourceif or None,
        ),
        [peer_settings(p, *nh) for p, nh in zip(config.peers, host.next_hops, strict=True)],
        observer=metrics,
    )
    manager = Manager(config, speaker, prefix, metrics, host.vip)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, manager, sig)
    if early:  # arrived after host setup, before the handlers above
        _on_signal(manager, early[0])
    try:
        if metrics is not None and config.prometheus_listen is not None:
            listen_host, port = config.prometheus_listen
            try:
                metrics_server = await metrics.serve(listen_host, port)
            except OSError as e:
                log.error("metrics server on %s not started: %s", config.prometheus_server, e)
        log.info(
            "vipgate %s: VIP %s on %s, AS %d, router id %s, %d peer(s): %s",
            __version__,
            prefix,
            host.interface,
            config.bgp_as,
            host.router_id,
            len(config.peers),
            ", ".join(str(p) for p in config.peers),
        )
        await speaker.start()
        await manager.run()
    finally:
        t0 = time.monotonic()
        # The route first: every other part of the shutdown can wait for it.
        try:
            await asyncio.wait_for(
                speaker.close(manager.gate.cease_message, SHUTDOWN_BUDGET), SHUTDOWN_BUDGET
            )
        except TimeoutError:
            log.warning("BGP sessions not closed within %.1fs: exiting anyway", SHUTDOWN_BUDGET)
        for probe in (manager.probe, manager.reader):
            if probe is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(probe.close(), 0.2)
        if metrics_server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(metrics_server.close(), 0.2)
        log.info("BGP sessions closed in %.0f ms", (time.monotonic() - t0) * 1000)
    return 0


def _on_signal(manager: Manager, sig: signal.Signals) -> None:
    manager.request_stop(sig.name)


def run(config: Config) -> int:
    refusal = config.not_runnable
    if refusal is not None or config.address is None:
        log.error("%s", refusal)
        return EXIT_CONFIG
    for w in config.warnings:
        log.warning("%s", w)
    if config.vip_routingtable:  # the table announcer lands next; refuse rather than do nothing
        log.error("vip_routingtable=true: routing-table mode is not available in this build")
        return EXIT_CONFIG
    prefix = config.prefix
    assert prefix is not None
    # Host setup and clean-up run in a forked child (vip.isolated): the daemon never carries
    # the netlink library's memory. Both happen outside the event loop, where a stop signal is
    # only remembered (in the child too): setup completes, then is undone, and we exit 0.
    early: list[signal.Signals] = []
    defer_stop_signals(early)
    try:
        host = isolated(host_setup, config)
    except HostError as e:
        log.error("cannot start: %s", e)
        return EXIT_CONFIG
    except OSError as e:
        where = config.vip_interface or "the default-route interface"
        log.error("cannot put the VIP on %s: %s (vipgate needs CAP_NET_ADMIN)", where, e)
        return 1
    if host.warning:
        log.warning("%s", host.warning)
    if early:
        log.info("%s during host setup: undoing it and exiting", early[0].name)
        isolated(remove_vip, host.vip)
        return 0
    try:
        return asyncio.run(_serve(config, prefix, host, early))
    finally:
        defer_stop_signals(early)  # asyncio.run restored the default actions
        isolated(remove_vip, host.vip)
