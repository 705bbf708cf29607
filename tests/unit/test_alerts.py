"""The shipped alerting rules and Grafana dashboard (deploy/; docs/operations.md, "Alerting").

``promtool`` (Debian's prometheus package, installed by scripts/setup.sh) checks the rules and
runs their unit tests (tests/unit/alerts/vipgate-alerts.test.yaml: every alert fires when it
should, with its labels and text, and stays quiet otherwise). Every metric the rules and the
dashboard read must be one vipgate exports, so a renamed metric breaks this test, not an alert.
The end-to-end run with a real Prometheus server is tests/e2e/test_alerts_e2e.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from vipgate.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "vipgate-alerts.yaml"
RULE_TESTS = ROOT / "tests" / "unit" / "alerts" / "vipgate-alerts.test.yaml"
DEPREFER_TESTS = ROOT / "tests" / "unit" / "alerts" / "vipgate-deprefer.test.yaml"
TLS_RELOAD_TESTS = ROOT / "tests" / "unit" / "alerts" / "vipgate-tls-reload.test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "vipgate.json"
ALERTS = {
    "VipgateRouteWithdrawn",
    "VipgateFewerAnnouncingNodes",
    "VipgateNoNodeAnnounces",
    "VipgateRouteDepreferred",
    "VipgateEveryNodeDepreferred",
    "VipgateBGPSessionDown",
    "VipgateHealthCheckTLSOrAccessError",
    "VipgateTLSFilesDoNotLoad",
}


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool not found: install Debian's prometheus package (scripts/setup.sh)"
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def exported_series() -> set[str]:
    """Every sample name a vipgate serves (with a label set of each labelled metric)."""
    m = Metrics()
    m.probe_result(_Result())
    m.session_state("192.0.2.1", "Established")
    m.bfd_state("192.0.2.1", "up", "none")
    m.transition("healthy")
    m.announced("203.0.113.100/32", True)
    m.route_state("203.0.113.100/32", "depreferred")
    m.readiness("clear")
    m.message("192.0.2.1", "sent", "keepalive")
    text = generate_latest(m.registry).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


class _Result:
    ok = False
    status = 401
    error = "http_status"
    latency = 0.01


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(vipgate_[a-z0-9_]+)", expr))


def test_promtool_checks_the_rules() -> None:
    cp = promtool("check", "rules", str(RULES))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in cp.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    cp = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "SUCCESS" in cp.stdout


def test_promtool_rule_unit_tests_can_fail(tmp_path: Path) -> None:
    # The same tests against rules whose withdrawal alert waits 5 minutes must fail: the unit
    # tests really pin the alert's timing.
    slow = RULES.read_text().replace("        for: 1m\n", "        for: 5m\n", 1)
    assert slow != RULES.read_text()
    (tmp_path / "rules.yaml").write_text(slow)
    tests = RULE_TESTS.read_text().replace(
        "../../../deploy/prometheus/vipgate-alerts.yaml", "rules.yaml"
    )
    (tmp_path / "t.yaml").write_text(tests)
    cp = promtool("test", "rules", "t.yaml", cwd=tmp_path)
    assert cp.returncode != 0 and "VipgateRouteWithdrawn" in cp.stdout + cp.stderr


def test_promtool_deprefer_alert_tests_pass() -> None:
    cp = promtool("test", "rules", DEPREFER_TESTS.name, cwd=DEPREFER_TESTS.parent)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "SUCCESS" in cp.stdout


@pytest.mark.parametrize(
    ("alert", "slower"),
    [("VipgateRouteDepreferred", "for: 3m"), ("VipgateEveryNodeDepreferred", "for: 2m")],
)
def test_promtool_deprefer_alert_tests_can_fail(tmp_path: Path, alert: str, slower: str) -> None:
    # The same tests against a rule that waits longer must fail: they pin each alert's timing.
    text = RULES.read_text()
    head, rule = text.split(f"- alert: {alert}\n", 1)
    rule = re.sub(r"for: \d+[sm]", slower, rule, count=1)
    (tmp_path / "rules.yaml").write_text(f"{head}- alert: {alert}\n{rule}")
    tests = DEPREFER_TESTS.read_text().replace(
        "../../../deploy/prometheus/vipgate-alerts.yaml", "rules.yaml"
    )
    (tmp_path / "t.yaml").write_text(tests)
    cp = promtool("test", "rules", "t.yaml", cwd=tmp_path)
    assert cp.returncode != 0 and alert in cp.stdout + cp.stderr


def test_promtool_tls_reload_alert_tests_pass_and_pin_the_timing(tmp_path: Path) -> None:
    cp = promtool("test", "rules", TLS_RELOAD_TESTS.name, cwd=TLS_RELOAD_TESTS.parent)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    text = RULES.read_text()
    head, rule = text.split("- alert: VipgateTLSFilesDoNotLoad\n", 1)
    rule = re.sub(r"for: \d+[sm]", "for: 7m", rule, count=1)
    (tmp_path / "rules.yaml").write_text(f"{head}- alert: VipgateTLSFilesDoNotLoad\n{rule}")
    tests = TLS_RELOAD_TESTS.read_text().replace(
        "../../../deploy/prometheus/vipgate-alerts.yaml", "rules.yaml"
    )
    (tmp_path / "t.yaml").write_text(tests)
    cp = promtool("test", "rules", "t.yaml", cwd=tmp_path)
    assert cp.returncode != 0 and "VipgateTLSFilesDoNotLoad" in cp.stdout + cp.stderr


def test_every_rule_is_complete() -> None:
    rs = rules()
    assert {r["alert"] for r in rs} == ALERTS
    for r in rs:
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]
        assert re.fullmatch(r"\d+[sm]", r["for"]), r["alert"]


def test_rules_and_dashboard_read_only_metrics_vipgate_exports() -> None:
    exported = exported_series()
    exprs = [r["expr"] for r in rules()] + [t["expr"] for t in dashboard_targets()]
    used = set().union(*(metric_names(e) for e in exprs))
    assert used, "no vipgate metric used"
    assert used <= exported, sorted(used - exported)
    # And the headline metrics are all used somewhere.
    assert {"vipgate_prefix_announced", "vipgate_bgp_session_established"} <= used


def dashboard() -> dict[str, Any]:
    d: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return d


def dashboard_targets() -> list[dict[str, Any]]:
    return [t for p in dashboard()["panels"] for t in p["targets"]]


def test_dashboard_is_a_grafana_dashboard() -> None:
    d = dashboard()
    assert d["uid"] == "vipgate" and d["title"] == "vipgate"
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["type"] == "query"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert all(isinstance(g[k], int) for k in ("h", "w", "x", "y")), p["title"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]  # Grafana's grid is 24 wide
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"panel {p['title']!r} overlaps another"
        cells |= mine
        assert p["type"] in ("stat", "timeseries", "table"), p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"] == p["datasource"], p["title"]


@pytest.mark.parametrize("path", [RULES, RULE_TESTS, DEPREFER_TESTS, TLS_RELOAD_TESTS])
def test_yaml_files_parse(path: Path) -> None:
    assert yaml.safe_load(path.read_text())
