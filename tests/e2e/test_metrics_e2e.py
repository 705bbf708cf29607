"""Metrics scraped over real HTTP while the gate withdraws and re-announces (docs/operations.md)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lab.cluster import Cluster
from lab.netns import Lab
from lab.topology import ROUTER_IP4, VIP4
from lab.wait import wait_for
from vipgate import __version__

pytestmark = pytest.mark.lab

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_metrics_follow_the_gate_and_the_router() -> None:
    with Lab() as lab:
        c = Cluster.create(lab, n_nodes=2, period=0.5, timeout=0.5, threshold=3, metrics=True)
        c.start_all()
        both = {c.ip("node1"), c.ip("node2")}
        c.wait_nexthops(both, timeout=20)
        router = c.topo.router
        assert router is not None

        m = parse(c.scrape("node1"))
        assert value(m, "vipgate_prefix_announced", prefix=VIP4) == 1
        assert value(m, "vipgate_gate_state", state="up") == 1
        assert (value(m, "vipgate_probe_results_total", outcome="ok") or 0) >= 1
        assert value(m, "vipgate_probe_consecutive_failures") == 0
        # The session state vipgate exports matches the router's view of the same session.
        assert router.session_state(c.ip("node1")) == "Established"
        assert value(m, "vipgate_bgp_session_established", peer=ROUTER_IP4) == 1
        assert value(m, "vipgate_bgp_session_state", peer=ROUTER_IP4) == 6
        sent_updates = value(
            m, "vipgate_bgp_messages_total", peer=ROUTER_IP4, direction="sent", type="update"
        )
        assert sent_updates is not None and sent_updates >= 1
        assert any(
            name == "vipgate_build_info" and ("version", __version__) in labels
            for name, labels in m
        )

        c.apiservers["node1"].set_mode("refuse")
        c.wait_nexthops({c.ip("node2")}, timeout=10)
        m = parse(c.scrape("node1"))
        assert value(m, "vipgate_prefix_announced", prefix=VIP4) == 0
        assert value(m, "vipgate_gate_state", state="down") == 1
        assert (value(m, "vipgate_probe_results_total", outcome="refused") or 0) >= 3
        assert (value(m, "vipgate_probe_consecutive_failures") or 0) >= 3
        assert (value(m, "vipgate_gate_transitions_total", reason="refused") or 0) == 1
        # Withdrawn, not disconnected: the session stays up on both sides.
        assert value(m, "vipgate_bgp_session_established", peer=ROUTER_IP4) == 1
        assert router.session_state(c.ip("node1")) == "Established"

        c.apiservers["node1"].set_mode("healthy")
        c.wait_nexthops(both, timeout=10)
        m = parse(c.scrape("node1"))
        assert value(m, "vipgate_prefix_announced", prefix=VIP4) == 1
        assert value(m, "vipgate_probe_consecutive_failures") == 0
        assert (value(m, "vipgate_gate_transitions_total", reason="healthy") or 0) == 2

        # The router drops the session: vipgate's exported state follows.
        router.stop()
        wait_for(
            lambda: (
                value(parse(c.scrape("node1")), "vipgate_bgp_session_established", peer=ROUTER_IP4)
                == 0
            ),
            10,
            0.1,
            what="vipgate_bgp_session_established 0 after the router stopped",
        )
