"""Static checks of the dashboards, the alert rules and the Prometheus configuration.

Whether each expression returns data from a real run is tests/integration/test_monitoring.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from prometheus_client import CollectorRegistry

from flitfeed.monitoring.metrics import Metrics
from tests.promql import DASHBOARDS, REPO, dashboard_exprs, metric_names, operands, rule_exprs

#: `make test` sets it (the set-up installs Prometheus): then a missing promtool fails instead of skipping.
REQUIRE_PROMETHEUS = os.environ.get("FLITFEED_REQUIRE_PROMETHEUS") == "1"


def _exported_names() -> set[str]:
    names = set()
    for family in Metrics("x", CollectorRegistry()).registry.collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
        names.update(f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_sum", "_count", "_info"))
    return names


def test_dashboard_files_are_what_the_generator_writes() -> None:
    rc = subprocess.run([sys.executable, str(REPO / "deploy" / "grafana" / "build_dashboards.py"), "--check"],
                        capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr


def test_the_four_dashboards_exist_with_templating_by_service_and_instance() -> None:
    titles = set()
    for path in DASHBOARDS.glob("*.json"):
        d = json.loads(path.read_text())
        titles.add(d["title"])
        assert [v["name"] for v in d["templating"]["list"]] == ["service", "instance"]
        assert len({p["id"] for p in d["panels"]}) == len(d["panels"])
    assert titles == {"flitfeed — overview", "flitfeed — latency and freshness", "flitfeed — drift and quality",
                      "flitfeed — Kafka and consumer health"}


def test_every_panel_has_title_unit_description_and_filters_by_the_templates() -> None:
    for path in DASHBOARDS.glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            where = f"{path.name}: {panel.get('title')}"
            assert panel["title"] and panel["description"], where
            assert panel["fieldConfig"]["defaults"]["unit"], where
            assert panel["datasource"]["uid"] == "flitfeed-prometheus", where
            for target in panel["targets"]:
                assert 'service=~"$service"' in target["expr"] and 'instance=~"$instance"' in target["expr"], where


def test_every_expression_names_only_metrics_the_services_export() -> None:
    exported = _exported_names()
    exprs = dashboard_exprs() + rule_exprs()
    assert len(exprs) > 40
    for where, expr in exprs:
        unknown = metric_names(expr) - exported
        assert not unknown, f"{where}: {sorted(unknown)} is not defined in monitoring/metrics.py"


def test_alert_rules_cover_what_the_issue_lists() -> None:
    alerts = {where.split(": ")[1]: expr for where, expr in rule_exprs()}
    assert set(alerts) == {"FlitfeedFeedLatencyP99High", "FlitfeedFreshnessP99High", "FlitfeedDriftOverThreshold",
                           "FlitfeedDeadLetterRateHigh", "FlitfeedConsumerLagHigh", "FlitfeedServiceDown"}
    assert all(operands(expr) != [expr] for expr in alerts.values()), "every alert is <signal> <op> <threshold>"


def test_grafana_provisioning_names_the_datasource_the_dashboards_use() -> None:
    prov = REPO / "deploy" / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert (ds["uid"], ds["type"]) == ("flitfeed-prometheus", "prometheus")
    provider = yaml.safe_load((prov / "dashboards" / "flitfeed.yml").read_text())["providers"][0]
    assert provider["type"] == "file"


@pytest.mark.skipif(shutil.which("promtool") is None and not REQUIRE_PROMETHEUS,
                    reason="promtool not installed (deploy/prometheus/prometheus.sh install)")
def test_promtool_checks_config_and_rules(tmp_path) -> None:
    env = dict(os.environ, FLITFEED_PROMETHEUS_DATA=str(tmp_path), FLITFEED_METRICS_TARGETS_DIR=str(tmp_path / "t"))
    result = subprocess.run(["bash", str(REPO / "deploy" / "prometheus" / "prometheus.sh"), "check"], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout
    assert "is valid prometheus config file syntax" in result.stdout
