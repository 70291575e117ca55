"""The chart's NetworkPolicies: kfn's pods admit only their callers, and the operator is told
whom Functions' pods admit."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from tests.unit.chart import chart

SCRAPERS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def _policy(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    return chart.one(objects, "NetworkPolicy", component)["spec"]


def _ports(rule: dict[str, Any]) -> list[Any]:
    return [p["port"] for p in rule["ports"]]


def test_every_kfn_workload_has_a_policy_selecting_exactly_its_own_pods(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm)
    for component in chart.WORKLOADS:
        selector = chart.one(objects, "Deployment", component)["spec"]["selector"]
        policy = _policy(objects, component)
        assert policy["podSelector"] == selector, component
        assert policy["policyTypes"] == ["Ingress"], component


def test_the_autoscaler_takes_stats_only_from_the_activators_and_scrapes(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm)
    activator_pods = chart.one(objects, "Deployment", "activator")["spec"]["selector"]
    rule, metrics = _policy(objects, "autoscaler")["ingress"]
    assert rule["from"] == [{"podSelector": activator_pods}]
    assert _ports(rule) == ["stats"]
    assert _ports(metrics) == ["metrics"]
    assert "from" not in metrics


def test_the_operator_and_the_workers_admit_nothing_but_scrapes_and_the_bucket_its_stores(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm)
    for component in ("operator", "cron", "stream"):
        (metrics,) = _policy(objects, component)["ingress"]
        assert _ports(metrics) == ["metrics"]
        assert "from" not in metrics
    stores, metrics = _policy(objects, "bucket")["ingress"]
    assert _ports(stores) == ["http"]
    assert "from" not in stores
    assert _ports(metrics) == ["metrics"]


def test_the_activators_doors_are_open_and_its_metrics_only_to_the_scrapers_named(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm, {"networkPolicy": {"metricsFrom": SCRAPERS}})
    doors, metrics = _policy(objects, "activator")["ingress"]
    assert _ports(doors) == ["http", "invoke"]
    assert "from" not in doors
    assert _ports(metrics) == ["metrics"]
    assert metrics["from"] == SCRAPERS
    for component in ("operator", "autoscaler", "cron", "stream", "bucket"):
        assert _policy(objects, component)["ingress"][-1]["from"] == SCRAPERS, component


def test_the_operator_is_told_this_releases_activator_pods_for_functions_policies(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm, release="other")
    env = {e["name"]: e.get("value") for e in chart.container(objects, "operator")["env"]}
    setting = json.loads(env["KFN_NETWORK_POLICY"])
    assert setting["activatorNamespace"] == chart.NAMESPACE
    pod_labels = chart.one(objects, "Deployment", "activator")["spec"]["template"]["metadata"][
        "labels"
    ]
    assert setting["activatorPodLabels"].items() <= pod_labels.items()
    assert setting["activatorPodLabels"]["app.kubernetes.io/instance"] == "other"


def test_turned_off_the_chart_ships_no_policy_and_tells_the_operator_so(
    helm: pathlib.Path,
) -> None:
    objects = chart.render(helm, {"networkPolicy": {"enabled": False}})
    assert [o for o in objects if o["kind"] == "NetworkPolicy"] == []
    env = {e["name"]: e.get("value") for e in chart.container(objects, "operator")["env"]}
    assert env["KFN_NETWORK_POLICY"] == ""
