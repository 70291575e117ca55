"""kfn's Grafana dashboard: the JSON the chart ships is what ``hack/dashboard.py`` generates,
every panel's query is PromQL Prometheus accepts over the metrics kfn exports, and the chart puts
it in a ConfigMap for Grafana's dashboard sidecar when asked."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
from typing import Any

import yaml

from tests.unit.chart import chart

DASHBOARD = chart.CHART / "files" / "dashboard.json"
ALERTS = chart.CHART / "files" / "alerts.yaml"

#: The metrics kfn's components export (docs/operations.md), as the queries name them
#: (histograms by their base name).
EXPORTED = {
    "kfn_function_invocations_total",
    "kfn_function_errors_total",
    "kfn_function_duration_seconds",
    "kfn_function_concurrent_executions",
    "kfn_function_cold_starts_total",
    "kfn_function_cold_start_duration_seconds",
    "kfn_function_cold_start_phase_seconds",
    "kfn_function_ready_endpoints",
    "kfn_function_async_events_received_total",
    "kfn_function_async_event_age_seconds",
    "kfn_function_async_events_dropped_total",
    "kfn_function_destination_delivery_failures_total",
    "kfn_function_dead_letter_errors_total",
    "kfn_activator_requests_total",
    "kfn_activator_request_duration_seconds",
    "kfn_activator_queue_depth",
    "kfn_activator_queue_capacity",
    "kfn_activator_retries_total",
    "kfn_activator_events_redelivered_total",
    "kfn_activator_buffered_bytes",
    "kfn_trigger_events_received_total",
    "kfn_trigger_events_delivered_total",
    "kfn_trigger_events_retried_total",
    "kfn_trigger_events_failed_total",
    "kfn_trigger_events_dead_lettered_total",
    "kfn_trigger_lag_records",
    "kfn_trigger_iterator_age_seconds",
    "kfn_trigger_destination_delivery_failures_total",
    "kfn_operator_reconcile_duration_seconds",
    "kfn_operator_reconcile_errors_total",
    "kfn_operator_queue_depth",
    "kfn_build_duration_seconds",
    "kfn_build_failures_total",
    "kfn_autoscaler_desired_replicas",
    "kfn_autoscaler_actual_replicas",
    "kfn_autoscaler_panic_mode",
}

#: Values for Grafana's variables that make a query plain PromQL.
VARIABLES = {
    "$__rate_interval": "5m",
    "$namespace": "shop",
    "$function": "checkout",
    "$trigger": "orders",
    "$job": "kfn-activator|kfn-cron",
}


def _dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def _targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for p in dashboard["panels"] for t in p.get("targets", [])]


def substituted(expr: str, values: dict[str, str]) -> str:
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    return expr


def _metrics(expr: str) -> set[str]:
    names = set(re.findall(r"\bkfn_[a-z_]+", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def _configmaps(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "ConfigMap" and "grafana_dashboard" in
            o["metadata"]["labels"]]  # fmt: skip


# The generated JSON.


def test_the_shipped_dashboard_is_what_the_generator_makes() -> None:
    result = subprocess.run(
        [sys.executable, str(chart.REPO / "hack" / "dashboard.py"), "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_dashboard_has_the_four_rows_and_every_panel_has_a_query() -> None:
    panels = _dashboard()["panels"]
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert rows == [
        "Overview",
        "Function $namespace/$function",
        "Trigger $namespace/$trigger",
        "Control plane",
    ]
    for panel in panels:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_every_variable_a_query_uses_is_defined_by_the_dashboard() -> None:
    dashboard = _dashboard()
    defined = {v["name"] for v in dashboard["templating"]["list"]} | {"__rate_interval"}
    used = {m for t in _targets(dashboard) for m in re.findall(r"\$(\w+)", t["expr"])}
    assert used <= defined
    assert {"namespace", "function", "trigger", "job"} <= defined


def test_every_panel_query_is_promql_prometheus_accepts(
    promtool: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """promtool has no command for a lone expression: each query becomes a recording rule."""
    targets = _targets(_dashboard())
    rules = [
        {"record": f"kfn:dashboard_query_{i}", "expr": substituted(t["expr"], VARIABLES)}
        for i, t in enumerate(targets)
    ]
    assert not [r["expr"] for r in rules if "$" in r["expr"]], "a variable left unsubstituted"
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [str(promtool), "check", "rules", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_the_dashboard_and_the_alerts_read_only_metrics_kfn_exports() -> None:
    read = {m for t in _targets(_dashboard()) for m in _metrics(t["expr"])}
    assert read - EXPORTED == set()
    assert _metrics(ALERTS.read_text()) - EXPORTED == set()


# The ConfigMap.


def test_the_dashboard_configmap_is_made_unless_turned_off(helm: pathlib.Path) -> None:
    off = {"metrics": {"grafanaDashboard": {"enabled": False}}}
    assert _configmaps(chart.render(helm, off)) == []
    (configmap,) = _configmaps(chart.render(helm))
    assert configmap["metadata"]["namespace"] == chart.NAMESPACE
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["labels"][chart.COMPONENT] == "dashboard"
    (name,) = configmap["data"]
    assert name.endswith(".json")
    assert json.loads(configmap["data"][name]) == _dashboard()


def test_the_dashboard_configmap_takes_extra_labels_and_another_namespace(
    helm: pathlib.Path,
) -> None:
    values = {
        "metrics": {
            "grafanaDashboard": {
                "enabled": True,
                "labels": {"team": "platform"},
                "namespace": "grafana",
            }
        }
    }
    (configmap,) = _configmaps(chart.render(helm, values))
    assert configmap["metadata"]["namespace"] == "grafana"
    assert configmap["metadata"]["labels"]["team"] == "platform"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
