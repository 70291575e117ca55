"""The chart's metrics: every component that serves them exposes them on a Service, and the
chart tells Prometheus where they are with ServiceMonitors when the Prometheus Operator is
there, with the prometheus.io annotations otherwise."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

from kfncluster import install, monitoring
from tests.unit.chart import chart

MONITORING = ("monitoring.coreos.com/v1",)
ANNOTATIONS = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": "9090",
    "prometheus.io/path": "/metrics",
}


def _serving(objects: list[dict[str, Any]]) -> list[str]:
    """The components whose container has a port named metrics."""
    return sorted(
        component
        for component in chart.WORKLOADS
        if any(p["name"] == "metrics" for p in chart.container(objects, component).get("ports", []))
    )


def _monitors(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "ServiceMonitor"]


def _pod_annotations(objects: list[dict[str, Any]], component: str) -> dict[str, str]:
    template = chart.one(objects, "Deployment", component)["spec"]["template"]
    return dict(template["metadata"].get("annotations", {}))


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_every_kfn_component_serves_metrics(helm: pathlib.Path) -> None:
    assert _serving(chart.render(helm)) == sorted(chart.WORKLOADS)
    assert sorted(chart.WORKLOADS) == [
        "activator", "autoscaler", "bucket", "cron", "operator", "stream",
    ]  # fmt: skip


def test_every_component_that_serves_metrics_exposes_them_on_a_service_port_named_metrics(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm)
    for component in _serving(objects):
        pods = chart.one(objects, "Deployment", component)["spec"]["template"]["metadata"]
        services = [
            o
            for o in objects
            if o["kind"] == "Service" and _selects(o["spec"]["selector"], pods["labels"])
            and any(p["name"] == "metrics" for p in o["spec"]["ports"])
        ]  # fmt: skip
        assert len(services) == 1, component
        (port,) = [p for p in services[0]["spec"]["ports"] if p["name"] == "metrics"]
        assert port["targetPort"] == "metrics", component
        assert port["port"] == 9090, component


def test_the_operator_cron_and_stream_metrics_services_are_headless_and_serve_nothing_else(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm)
    for component in ("operator", "cron", "stream"):
        service = chart.one(objects, "Service", component)
        assert service["spec"]["clusterIP"] == "None"
        assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]


def test_without_the_prometheus_operator_the_pods_carry_the_scrape_annotations(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm)
    assert _monitors(objects) == []
    for component in _serving(objects):
        assert _pod_annotations(objects, component) == ANNOTATIONS, component


def test_with_the_prometheus_operator_each_metrics_service_has_a_service_monitor_instead(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm, api_versions=MONITORING)
    monitors = _monitors(objects)
    assert sorted(m["metadata"]["labels"][chart.COMPONENT] for m in monitors) == _serving(objects)
    services = [o for o in objects if o["kind"] == "Service"]
    for monitor in monitors:
        component = monitor["metadata"]["labels"][chart.COMPONENT]
        spec = monitor["spec"]
        assert spec["namespaceSelector"] == {"matchNames": [chart.NAMESPACE]}
        (selected,) = [
            s
            for s in services
            if _selects(spec["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        assert selected["metadata"]["name"] == monitor["metadata"]["name"]
        assert "metrics" in [p["name"] for p in selected["spec"]["ports"]]
        assert spec["endpoints"] == [
            {"port": "metrics", "path": "/metrics", "scheme": "http", "honorLabels": True}
        ]
        assert _pod_annotations(objects, component) == {}, component


def test_service_monitors_can_be_forced_on_or_off_whatever_the_cluster_serves(
    helm: pathlib.Path,
) -> None:
    forced = chart.render(helm, {"metrics": {"serviceMonitors": {"enabled": True}}})
    assert len(_monitors(forced)) == len(_serving(forced))
    off = chart.render(
        helm, {"metrics": {"serviceMonitors": {"enabled": False}}}, api_versions=MONITORING
    )
    assert _monitors(off) == []
    assert _pod_annotations(off, "activator") == ANNOTATIONS


def test_service_monitor_labels_and_intervals_come_from_the_values_but_not_over_the_chart_labels(
    helm: pathlib.Path,
) -> None:
    values = {
        "metrics": {
            "serviceMonitors": {
                "labels": {"release": "prometheus", chart.COMPONENT: "mine"},
                "interval": "30s",
                "scrapeTimeout": "5s",
            }
        }
    }
    for monitor in _monitors(chart.render(helm, values, api_versions=MONITORING)):
        labels = monitor["metadata"]["labels"]
        assert labels["release"] == "prometheus"
        assert labels[chart.COMPONENT] != "mine"
        (endpoint,) = monitor["spec"]["endpoints"]
        assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("30s", "5s")


def test_the_annotations_can_be_turned_off_and_a_components_own_win(helm: pathlib.Path) -> None:
    off = chart.render(helm, {"metrics": {"annotations": False}})
    assert _pod_annotations(off, "cron") == {}
    own = chart.render(
        helm, {"stream": {"podAnnotations": {"prometheus.io/scrape": "false", "team": "data"}}}
    )
    assert _pod_annotations(own, "stream") == {
        **ANNOTATIONS,
        "prometheus.io/scrape": "false",
        "team": "data",
    }


def test_the_schema_refuses_a_service_monitor_mode_it_does_not_know(helm: pathlib.Path) -> None:
    message = chart.render_error(helm, "metrics.serviceMonitors.enabled=sometimes")
    assert "serviceMonitors" in message


def test_the_local_cluster_admits_its_prometheus_and_only_it_to_the_metrics_ports(
    helm: pathlib.Path,
) -> None:
    local = yaml.safe_load(install.VALUES_LOCAL.read_text())
    objects = chart.render(helm, local, api_versions=MONITORING)
    expected = [
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": monitoring.NAMESPACE}
            },
            "podSelector": {"matchLabels": monitoring.PROMETHEUS_POD_LABELS},
        }
    ]
    for component in _serving(objects):
        rules = chart.one(objects, "NetworkPolicy", component)["spec"]["ingress"]
        (metrics,) = [r for r in rules if [p["port"] for p in r["ports"]] == ["metrics"]]
        assert metrics["from"] == expected, component
