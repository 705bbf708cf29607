"""The daemon: config -> VIP -> BGP sessions -> probe loop -> gate -> speaker; signals; shutdown.

Order of start (DESIGN.md sections 1 and 3):

1. The VIP goes on ``vip_interface`` (left alone if already there), the router id is resolved.
2. The BGP sessions start at once, so the first healthy check announces without waiting for a
   session to come up (a session that comes up later gets the Adj-RIB-Out).
3. The probe loop runs checks on the cadence the gate keeps (rule 6 in ``health/gate.py``: tick
   k at ``start + k * period``, no drift, no overlap). Each result goes through the gate, and a
   decision reaches the speaker in the same event-loop turn.

Order of stop (SIGTERM/SIGINT): stop probing, withdraw from every Established peer and make sure
the UPDATE left the socket, Cease / Administrative Shutdown with a message, remove the VIP if we
added it, exit 0 -- bounded to :data:`SHUTDOWN_BUDGET` seconds even with a silent peer.
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
from vipgate.health.gate import Action, Gate, Step
from vipgate.health.probe import Probe
from vipgate.metrics import Metrics, MetricsServer
from vipgate.vip import HostError, HostFacts, host_setup, isolated, remove_vip

log = logging.getLogger("vipgate.manager")

SHUTDOWN_BUDGET = 2.0  # seconds for withdraw + NOTIFICATION + close; the process exits within 3 s
SHUTDOWN_MESSAGE = "vipgate shutting down"
EXIT_CONFIG = 2


class Manager:
    """Wires probe, gate, speaker and metrics; owns the probe loop and the shutdown order."""

    def __init__(
        self, config: Config, speaker: Speaker, prefix: IPNetwork, metrics: Metrics | None
    ):
        self.config = config
        self.speaker = speaker
        self.prefix = prefix
        self.metrics = metrics
        self.gate = Gate(config.health_url, config.health_threshold, config.health_period)
        self.stopping = asyncio.Event()
        self.probe: Probe | None = None
        if metrics is not None:  # every series exists from the start, so alerts see a 0
            metrics.announced(prefix, False)
            metrics.gate(self.gate.state, 0)
        if config.health_enabled:
            self.probe = Probe(
                config.health_url,
                config.health_timeout,
                config.health_ca_path,
                config.health_server_name,
            )

    def apply(self, step: Step) -> None:
        """Carry a gate step to the speaker (synchronously: same event-loop turn), then log it."""
        if step.action is Action.ANNOUNCE:
            self.speaker.announce(self.prefix)
        elif step.action is Action.WITHDRAW:
            self.speaker.withdraw(self.prefix)
        if self.metrics:
            self.metrics.gate(self.gate.state, self.gate.consecutive_failures)
            if step.action is not None:
                self.metrics.announced(self.prefix, step.action is Action.ANNOUNCE)
        if step.transition is not None:
            level = logging.WARNING if step.action is Action.WITHDRAW else logging.INFO
            log.log(level, "%s", step.transition.message)
            if self.metrics:
                self.metrics.transition(step.transition.reason)
        if step.advice is not None:
            log.error("%s", step.advice.message)

    async def probe_loop(self) -> None:
        assert self.probe is not None
        loop = asyncio.get_running_loop()
        while not self.stopping.is_set():
            result = await self.probe.check()
            if self.metrics:
                self.metrics.probe_result(result)
            step = self.gate.feed(result, loop.time())
            self.apply(step)
            # The gate keeps the cadence: tick k at start + k * period, never overlapping.
            due = step.next_check_at if step.next_check_at is not None else loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), max(0.0, due - loop.time()))

    async def run(self) -> None:
        if self.probe is None:
            self.apply(self.gate.start(asyncio.get_running_loop().time()))
            await self.stopping.wait()
            return
        log.info(
            "health check %s every %gs (timeout %gs, withdraw after %d failures); "
            "%s is announced after the first healthy check",
            self.config.health_url,
            self.config.health_period,
            self.config.health_timeout,
            self.config.health_threshold,
            self.prefix,
        )
        self.apply(self.gate.start(asyncio.get_running_loop().time()))
        loop_task = asyncio.create_task(self.probe_loop(), name="probe-loop")
        stop_task = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({loop_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if loop_task.done():
            loop_task.result()  # a bug in the loop: let it surface
        loop_task.cancel()
        stop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task


async def _serve(config: Config, prefix: IPNetwork, host: HostFacts) -> int:
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
    manager = Manager(config, speaker, prefix, metrics)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, manager, sig)
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
                speaker.close(SHUTDOWN_MESSAGE, SHUTDOWN_BUDGET), SHUTDOWN_BUDGET
            )
        except TimeoutError:
            log.warning("BGP sessions not closed within %.1fs: exiting anyway", SHUTDOWN_BUDGET)
        if manager.probe is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(manager.probe.close(), 0.2)
        if metrics_server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(metrics_server.close(), 0.2)
        log.info("BGP sessions closed in %.0f ms", (time.monotonic() - t0) * 1000)
    return 0


def _on_signal(manager: Manager, sig: signal.Signals) -> None:
    if not manager.stopping.is_set():
        log.info("%s: withdrawing and closing the BGP sessions", sig.name)
    manager.stopping.set()


def run(config: Config) -> int:
    if not config.bgp_enable:
        log.error(
            "bgp_enable is not true: vipgate implements BGP mode only (set bgp_enable=true "
            "and bgp_peers)"
        )
        return EXIT_CONFIG
    if config.address is None:
        log.error("no VIP: set address (or vip_address)")
        return EXIT_CONFIG
    for w in config.warnings:
        log.warning("%s", w)
    prefix = config.prefix
    assert prefix is not None
    # Host setup and clean-up run in a forked child (vip.isolated): the daemon never carries
    # the netlink library's memory. Both happen outside the event loop.
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
    try:
        return asyncio.run(_serve(config, prefix, host))
    finally:
        isolated(remove_vip, host.vip)
