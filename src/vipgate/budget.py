"""vipgate's stop budget: how long each part of a stop may take, in one place.

After SIGTERM/SIGINT vipgate drains for ``bgp_graceful_shutdown_seconds`` (health/gate.py rule
11), then stops within :attr:`StopBudget.after_drain` seconds, even with a silent peer:

=================  ============  ==============================================================
part               seconds       where
=================  ============  ==============================================================
BGP                ``bgp`` 2.0   ``Speaker.close``: withdraw, wait until the withdrawal left the
                                 socket (``bgp_ack_share`` 0.6 of it: 1.2 s), Cease /
                                 Administrative Shutdown, close; the manager bounds the call by
                                 the same 2.0 s
probes, metrics    ``part`` 0.2  the manager closes the /livez probe, the readiness probe and the
                   each          metrics server, each within it (3 x 0.2 s)
the VIP            0.4 left      the VIP's removal in a forked netlink child (``vip.isolated``)
=================  ============  ==============================================================

``after_drain`` = 2.0 + 3 x 0.2 + 0.4 = 3.0 s. It is docs/deployment.md's "the whole stop takes
at most ``bgp_graceful_shutdown_seconds`` + 3 s", and the manifest generator derives the pod's
``terminationGracePeriodSeconds`` from it (``manifest.termination_grace``: ``ceil(drain +
after_drain) + 2`` s for a busy node, at least 10 s), so the kubelet's SIGKILL never cuts the
withdrawal short.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["STOP_BUDGET", "StopBudget"]


@dataclass(frozen=True, slots=True)
class StopBudget:
    """Seconds each part of a stop may take after the drain (the module's table)."""

    bgp: float
    bgp_ack_share: float
    part: float
    after_drain: float


STOP_BUDGET = StopBudget(bgp=2.0, bgp_ack_share=0.6, part=0.2, after_drain=3.0)
"""The one stop budget, used by the manager, ``Speaker.close`` and the manifest generator."""
