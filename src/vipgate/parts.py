"""The manager's parts, made from the configuration and the host facts: the one place where the
probe(s), the gate, the speaker (or routing-table mode's announcer), the metrics and the VIP's
handle are wired (docs/design.md, "The manager"). No socket opens here; the daemon
(``daemon.py``), the config fuzzer and the tests build their parts with :func:`build_parts`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from vipgate.announcer import Announcer
from vipgate.bgp.speaker import Speaker, SpeakerSettings, peer_settings
from vipgate.config import Config, IPNetwork
from vipgate.health.gate import Gate
from vipgate.health.probe import Probe, ProbeResult
from vipgate.metrics import Metrics
from vipgate.routing.announcer import TableAnnouncer
from vipgate.routing.plan import TableSettings, Vip
from vipgate.vip import HostFacts, VipHandle

__all__ = ["Parts", "ProbePart", "SpeakerPart", "build_announcer", "build_parts"]


SpeakerPart = Announcer
"""What the manager asks of the part that announces the VIP: the BGP speaker
(``bgp.speaker.Speaker``) or routing-table mode's ``routing.announcer.TableAnnouncer``."""


class ProbePart(Protocol):
    """What the manager asks of a probe (``health.probe.Probe``)."""

    on_close: Callable[[], None] | None

    async def check(self, url: str | None = None) -> ProbeResult: ...
    async def close(self) -> None: ...


@dataclass(frozen=True)
class Parts:
    """The manager's parts: made from the configuration by :func:`build_parts` (the tests give
    fakes). ``reader`` reads the readiness (the probe itself when it shares the origin);
    ``readiness_url`` is "" when reads are off; ``vips`` are the VIP addresses on the
    interface, one per prefix (gate rule 13 moves them only when vipgate added them)."""

    config: Config
    prefixes: tuple[IPNetwork, ...]  # one per VIP (a dual-stack pair: both), gated together
    gate: Gate
    speaker: SpeakerPart
    probe: ProbePart | None
    reader: ProbePart | None
    metrics: Metrics | None
    readiness_url: str
    vips: tuple[VipHandle, ...] = ()


def build_announcer(
    config: Config, host: HostFacts | TableSettings, metrics: Metrics | None
) -> Announcer:
    """The part that announces the VIPs, picked by the configuration: the BGP speaker
    (``bgp_enable``; ``host`` from ``vip.host_setup``) or the routing table
    (``vip_routingtable``; ``host`` from ``routing.announcer.table_setup``)."""
    if isinstance(host, TableSettings):
        on_interface = zip(config.addresses, config.interface_prefixes, strict=True)
        vips = [Vip(a, p.prefixlen) for a, p in on_interface]
        return TableAnnouncer(host, vips, clean=config.vip_cleanroutingtable)
    return Speaker(
        SpeakerSettings(
            local_as=config.bgp_as,
            router_id=host.router_id,
            hold_time=config.bgp_hold_time,
            keepalive=config.keepalive,
            source_ip=config.bgp_sourceip,
            source_if=config.bgp_sourceif or None,
        ),
        [
            peer_settings(p, *nh, frozenset(a.version for a in config.addresses))
            for p, nh in zip(config.peers, host.next_hops, strict=True)
        ],
        observer=metrics,
        listen=config.bgp_listen,
    )


def build_parts(config: Config, host: HostFacts | TableSettings) -> Parts:
    """Everything the manager runs, from the configuration and the host facts ``vip.host_setup``
    (or, in routing-table mode, ``routing.announcer.table_setup``) resolved
    (``vip.stated_facts`` stands in where the host is not asked). No socket opens here. The
    configuration must be runnable (``Config.not_runnable`` is None)."""
    assert config.addresses
    readiness_url = config.readiness_url if config.health_enabled else ""
    gate = Gate(
        config.health_url,
        config.health_threshold,
        config.health_period,
        fast_period=config.health_fast_period,
        success_threshold=config.health_success_threshold,
        shutdown_period=config.health_shutdown_period if readiness_url else 0.0,
        graceful_shutdown=config.bgp_graceful_shutdown,
        readiness_url=readiness_url,
        unhealthy_action=config.health_unhealthy_action,
    )
    metrics = Metrics() if config.prometheus_listen else None
    speaker = build_announcer(config, host, metrics)
    probe: Probe | None = None
    reader: Probe | None = None
    if config.health_enabled:
        tls = (config.health_timeout, config.health_ca_path, config.health_server_name)
        cert = (config.health_client_cert_path, config.health_client_key_path)
        reload = config.health_period  # the TLS files looked at once a period at most
        probe = Probe(config.health_url, *tls, *cert, reload_interval=reload)
        if readiness_url:
            same = probe.same_origin(readiness_url)
            reader = probe if same else Probe(readiness_url, *tls, *cert, reload_interval=reload)
    vips = host.vips if isinstance(host, HostFacts) else ()  # the table mode moves its own
    return Parts(
        config, config.prefixes, gate, speaker, probe, reader, metrics, readiness_url, vips
    )
