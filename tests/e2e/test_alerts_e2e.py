"""The shipped alerting rules in a real Prometheus server, scraping three vipgates
(docs/operations.md, "Alerting").

Prometheus (Debian's 2.42) runs in the lab's client namespace (198.51.100.10, routed through the
lab router to the nodes) and scrapes the three vipgates' metrics every second, evaluating
deploy/prometheus/vipgate-alerts.yaml every second. The one change to the rules: the `for:` of
VipgateRouteWithdrawn is 3 s instead of 1 m, so the test takes seconds. node1's apiserver stops:
the alert goes pending, then firing, for node1 only; the apiserver returns: the alert resolves.
Every query of the Grafana dashboard then runs against the same server.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from lab.cluster import Cluster
from lab.netns import Lab
from lab.prometheus import Prometheus
from lab.wait import wait_for
from tests.e2e.conftest import FIGURES

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "vipgate-alerts.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "vipgate.json"
ALERT = "VipgateRouteWithdrawn"
FOR = "3s"


def rules_variant(out: Path) -> Path:
    """The shipped rules with VipgateRouteWithdrawn's `for:` shortened to FOR, nothing else."""
    doc = yaml.safe_load(RULES.read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    (rule,) = [r for r in rules if r["alert"] == ALERT]
    rule["for"] = FOR
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def states(prom: Prometheus) -> dict[str, str]:
    """instance -> state of the withdrawal alert (active ones only)."""
    return {a["labels"]["instance"]: a["state"] for a in prom.alerts(ALERT)}


def test_withdrawal_alert_pending_firing_resolved() -> None:
    with Lab() as lab:
        c = Cluster.create(lab, n_nodes=3, metrics=True)
        c.start_all()
        nodes = [n.ip4 for n in c.topo.nodes]
        c.wait_nexthops(set(nodes), timeout=30)
        prom = Prometheus(
            lab,
            c.topo.client_ns,
            [f"{ip}:2112" for ip in nodes],
            [rules_variant(lab.workdir / "vipgate-alerts.yaml")],
        ).start()
        wait_for(
            lambda: [r["value"][1] for r in prom.query("sum(vipgate_prefix_announced)")] == ["3"],
            20,
            0.2,
            what="Prometheus sees three announcing vipgates",
        )
        assert states(prom) == {}
        node1 = f"{nodes[0]}:2112"

        t0 = c.apiservers["node1"].set_mode("refuse")
        seen: dict[str, float] = {}

        def reached(state: str) -> bool:
            now = states(prom)
            for s in set(now.values()):
                seen.setdefault(s, time.monotonic() - t0)
            assert set(now) <= {node1}, now  # node2 and node3 are fine
            return now.get(node1) == state

        wait_for(lambda: reached("pending"), 20, 0.1, what=f"{ALERT} pending for node1")
        c.wait_nexthops(set(nodes[1:]), timeout=5)
        wait_for(lambda: reached("firing"), 20, 0.1, what=f"{ALERT} firing for node1")
        assert seen["pending"] < seen["firing"]
        (alert,) = prom.alerts(ALERT)
        assert alert["labels"]["prefix"] == "203.0.113.100/32"
        assert alert["labels"]["severity"] == "warning"
        assert node1 in alert["annotations"]["summary"]

        t1 = c.apiservers["node1"].set_mode("healthy")
        c.wait_nexthops(set(nodes), timeout=10)
        wait_for(lambda: states(prom) == {}, 20, 0.1, what=f"{ALERT} resolved")
        resolved = time.monotonic() - t1
        FIGURES["alert (scrape and evaluation every 1 s, for: 3s)"] = (
            f"pending {seen['pending']:.1f} s and firing {seen['firing']:.1f} s after node1's "
            f"apiserver stopped; resolved {resolved:.1f} s after it returned"
        )

        # Every dashboard query runs here and, but for the BFD panel (no BFD peer in this lab),
        # returns data.
        dashboard = json.loads(DASHBOARD.read_text())
        empty = []
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$job", ".*").replace("$__rate_interval", "10s")
                if not prom.query(expr):
                    empty.append(panel["title"])
        assert empty == ["BFD session state, per peer"], empty


DEPREFER_ALERTS = ("VipgateRouteDepreferred", "VipgateEveryNodeDepreferred")


def depreferred_rules_variant(out: Path) -> Path:
    """The shipped rules with the de-preference alerts' `for:` shortened to FOR, nothing else."""
    doc = yaml.safe_load(RULES.read_text())
    for r in (r for g in doc["groups"] for r in g["rules"]):
        if r["alert"] in DEPREFER_ALERTS:
            r["for"] = FOR
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def test_deprefer_alerts_this_node_then_every_node_failing_open() -> None:
    """control_plane_health_check_unhealthy_action=deprefer: node1's apiserver answers 401 ->
    VipgateRouteDepreferred fires for node1 only; every apiserver answers 401 -> the fleet alert
    VipgateEveryNodeDepreferred fires (the VIP fails open) while VipgateNoNodeAnnounces stays
    quiet (every node still announces); all healthy -> both resolve."""
    with Lab() as lab:
        c = Cluster.create(
            lab,
            n_nodes=3,
            metrics=True,
            extra_env={"control_plane_health_check_unhealthy_action": "deprefer"},
            router_kwargs={"graceful_shutdown": False},
        )
        c.start_all()
        nodes = [n.ip4 for n in c.topo.nodes]
        c.wait_nexthops(set(nodes), timeout=30)
        prom = Prometheus(
            lab,
            c.topo.client_ns,
            [f"{ip}:2112" for ip in nodes],
            [depreferred_rules_variant(lab.workdir / "vipgate-alerts.yaml")],
        ).start()
        wait_for(
            lambda: [r["value"][1] for r in prom.query("sum(vipgate_prefix_announced)")] == ["3"],
            20,
            0.2,
            what="Prometheus sees three announcing vipgates",
        )

        def firing(alert: str) -> list[dict[str, str]]:
            return [a["labels"] for a in prom.alerts(alert) if a["state"] == "firing"]

        assert not firing(DEPREFER_ALERTS[0]) and not firing(DEPREFER_ALERTS[1])
        node1 = f"{nodes[0]}:2112"
        t0 = c.apiservers["node1"].set_mode("unauthorized")
        c.wait_nexthops(set(nodes[1:]), timeout=10)  # de-preferred: out of the ECMP set
        wait_for(
            lambda: [a["instance"] for a in firing(DEPREFER_ALERTS[0])] == [node1],
            20,
            0.1,
            what="VipgateRouteDepreferred firing for node1",
        )
        one = time.monotonic() - t0
        assert not prom.alerts(DEPREFER_ALERTS[1])
        t1 = time.monotonic()
        for name in ("node2", "node3"):
            c.apiservers[name].set_mode("unauthorized")
        c.wait_nexthops(set(nodes), timeout=10)  # every node de-preferred: all in the set again
        wait_for(lambda: len(firing(DEPREFER_ALERTS[1])) == 1, 20, 0.1, what="failing-open alert")
        every = time.monotonic() - t1
        (fleet,) = firing(DEPREFER_ALERTS[1])
        assert fleet["severity"] == "critical" and fleet["prefix"] == "203.0.113.100/32"
        assert not prom.alerts("VipgateNoNodeAnnounces")
        for api in c.apiservers.values():
            api.set_mode("healthy")
        wait_for(
            lambda: not prom.alerts(DEPREFER_ALERTS[0]) and not prom.alerts(DEPREFER_ALERTS[1]),
            30,
            0.1,
            what="both de-preference alerts resolved",
        )
        FIGURES["de-preference alerts (scrape/evaluation 1 s, for: 3s)"] = (
            f"this node firing {one:.1f} s after its /livez answered 401; every node firing "
            f"{every:.1f} s after all answered 401"
        )
