"""The vipgate process: config -> VIP -> BGP sessions -> the manager -> signals -> shutdown.

Order of start (docs/design.md, "The manager"):

1. The VIP goes on ``vip_interface`` (left alone if already there), the router id is resolved
   (``vip.host_setup``, in a forked child).
2. :func:`build_parts` (``parts.py``) makes the probe(s), the gate, the speaker, the metrics
   and the VIP's handle from the configuration and the host facts: the one place where they
   are wired.
3. The BGP sessions start at once, so the first healthy check announces without waiting for a
   session to come up (a session that comes up later gets the Adj-RIB-Out).
4. :meth:`Manager.run` (``manager.py``) carries out the gate's steps on the gate's clock until
   the gate is STOPPED.

Order of stop (SIGTERM/SIGINT), as the gate decides (rules 10, 11): with the route announced and
``bgp_graceful_shutdown_seconds`` > 0, re-announce it with GRACEFUL_SHUTDOWN and keep checking
until the drain ends (earlier on a failed check); withdraw; make sure the UPDATE left the socket;
Cease / Administrative Shutdown with the gate's message (why we go); remove the VIP if we added
it; exit 0 -- within ``bgp_graceful_shutdown_seconds`` + ``STOP_BUDGET.after_drain`` seconds
even with a silent peer (``budget.py``).

Exit statuses of :func:`run`: 0 after a stop (also a stop during host setup, which is undone
first); :data:`vipgate.config.EXIT_CONFIG` (2) for a configuration that is not runnable or a
host fact it needs that is missing (``vip.HostError``: interface, address); 1 when the kernel
refuses the host setup (an OSError: vipgate needs CAP_NET_ADMIN). Its log lines go out under the
manager's logger, ``vipgate.manager``: one name for every line of the daemon's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable

from vipgate import __version__
from vipgate.budget import STOP_BUDGET
from vipgate.config import EXIT_CONFIG, Config
from vipgate.manager import Manager
from vipgate.metrics import MetricsServer
from vipgate.parts import build_parts
from vipgate.routing.announcer import TableAnnouncer, table_setup
from vipgate.routing.plan import TableSettings
from vipgate.vip import (
    HostError,
    HostFacts,
    defer_stop_signals,
    host_setup,
    isolated,
    remove_vips,
)

__all__ = ["run"]

log = logging.getLogger("vipgate.manager")


async def _close_parts(manager: Manager, metrics_server: MetricsServer | None) -> None:
    """The route first (every other part of the stop can wait for it), then the probes and the
    metrics server, each within its share of :data:`~vipgate.budget.STOP_BUDGET`."""
    t0 = time.monotonic()
    bgp = STOP_BUDGET.bgp
    try:
        await asyncio.wait_for(manager.speaker.close(manager.gate.cease_message, bgp), bgp)
    except TimeoutError:
        log.warning("BGP sessions not closed within %.1fs: exiting anyway", bgp)
    for probe in (manager.probe, manager.reader):
        if probe is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(probe.close(), STOP_BUDGET.part)
    if metrics_server is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(metrics_server.close(), STOP_BUDGET.part)
    table = isinstance(manager.speaker, TableAnnouncer)
    what = "VIP routes removed" if table else "BGP sessions closed"
    log.info("%s in %.0f ms", what, (time.monotonic() - t0) * 1000)


def _banner(config: Config, host: HostFacts | TableSettings) -> str:
    """The start-up line: what is announced, and how."""
    vips = " and ".join(map(str, config.prefixes))
    if isinstance(host, TableSettings):
        return (
            f"vipgate {__version__}: VIP {vips} on {host.interface}, routing-table mode: "
            f"table {host.table}, protocol {host.protocol}; the node's BGP daemon announces it"
        )
    return (
        f"vipgate {__version__}: VIP {vips} on {host.interface}, AS {config.bgp_as}, "
        f"router id {host.router_id}, {len(config.peers)} peer(s): "
        + ", ".join(str(p) for p in config.peers)
    )


async def _serve(
    config: Config, host: HostFacts | TableSettings, early: list[signal.Signals]
) -> int:
    loop = asyncio.get_running_loop()
    parts = build_parts(config, host)
    metrics = parts.metrics
    metrics_server: MetricsServer | None = None
    manager = Manager(parts)
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
        log.info("%s", _banner(config, host))
        await manager.speaker.start()
        await manager.run()
    finally:
        await _close_parts(manager, metrics_server)
    return 0


def _on_signal(manager: Manager, sig: signal.Signals) -> None:
    manager.request_stop(sig.name)


def _none() -> None:
    return None


def run(config: Config, warn_ignored: Callable[[], None] = _none) -> int:
    """The manager's process (the module's order of start and stop); ``warn_ignored`` warns of
    the environment names vipgate does not read: after the configuration's warnings (the health
    gate's first), as ``vipgate config`` orders them, or before a refusal."""
    refusal = config.not_runnable
    if refusal is not None or not config.addresses:
        warn_ignored()
        log.error("%s", refusal)
        return EXIT_CONFIG
    for w in config.warnings:
        log.warning("%s", w)
    warn_ignored()
    # Host setup and clean-up run in a forked child (vip.isolated): the daemon never carries
    # the netlink library's memory. Both happen outside the event loop, where a stop signal is
    # only remembered (in the child too): setup completes, then is undone, and we exit 0.
    early: list[signal.Signals] = []
    defer_stop_signals(early)
    host: HostFacts | TableSettings
    try:
        if config.vip_routingtable:
            host = isolated(table_setup, config)
        else:
            host = isolated(host_setup, config)
    except HostError as e:
        log.error("cannot start: %s", e)
        return EXIT_CONFIG
    except OSError as e:
        where = config.vip_interface or "the default-route interface"
        log.error("cannot put the VIP on %s: %s (vipgate needs CAP_NET_ADMIN)", where, e)
        return 1
    added = host.vips if isinstance(host, HostFacts) else ()  # the table mode adds none here
    if isinstance(host, HostFacts) and host.warning:
        log.warning("%s", host.warning)
    if early:
        log.info("%s during host setup: undoing it and exiting", early[0].name)
        if added:
            isolated(remove_vips, added)
        return 0
    try:
        return asyncio.run(_serve(config, host, early))
    finally:
        defer_stop_signals(early)  # asyncio.run restored the default actions
        if added:
            isolated(remove_vips, added)
