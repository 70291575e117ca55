"""The local Prometheus scrapes kfn: through the chart's ServiceMonitors, past kfn's
NetworkPolicies (whose metrics ports admit only it on this cluster), every pod of every
component that serves metrics is a target that is up, and an activator metric of a function
just invoked can be queried."""

from __future__ import annotations

import asyncio
import json
import pathlib
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import fnimage, monitoring
from tests.cluster.invoking import deploy, invoke, invoke_address, known_to_every_activator
from tests.cluster.kubeutil import kubectl_json, scratch_namespace, wait_for

pytestmark = pytest.mark.cluster

#: The Services the chart's ServiceMonitors select, by component: each is a Prometheus job.
JOBS = {
    "activator": "kfn-activator",
    "cron": "kfn-cron",
    "stream": "kfn-stream",
    "bucket": "kfn-bucket",
}

HANDLER = """\
def handler(event, context):
    return {"ok": True}
"""


def _api(path: str, **params: str) -> Any:
    """GET ``/api/v1/<path>`` of the local Prometheus (its pod's address, which the host
    reaches); the ``data`` of a successful answer."""
    pod = kubectl_json(
        "-n", monitoring.NAMESPACE, "get", "pod", f"prometheus-{monitoring.PROMETHEUS}-0"
    )
    url = f"http://{pod['status']['podIP']}:{monitoring.PROMETHEUS_PORT}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - http:// to a pod
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


def _running_pods(kfn: str, component: str) -> set[str]:
    pods = kubectl_json(
        "-n", kfn, "get", "pods", "-l", f"app.kubernetes.io/component={component}",
        "--field-selector=status.phase=Running",
    )["items"]  # fmt: skip
    return {p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")}


@pytest.fixture(scope="module")
def namespace(kfn: str) -> Iterator[str]:
    with scratch_namespace("prometheus") as name:
        yield name


def test_every_pod_of_every_kfn_component_serving_metrics_is_a_target_that_is_up(
    kfn: str, prometheus: str
) -> None:
    def all_up() -> dict[str, set[str]] | None:
        targets = _api("targets", state="active")["activeTargets"]
        found: dict[str, set[str]] = {}
        for component, job in JOBS.items():
            mine = [t for t in targets if t["labels"].get("job") == job]
            assert mine, f"no target of job {job} yet"
            down = [(t["labels"].get("pod"), t["health"], t["lastError"]) for t in mine
                    if t["health"] != "up"]  # fmt: skip
            assert not down, f"{job}: {down}"
            assert {t["labels"]["namespace"] for t in mine} == {kfn}
            pods = {t["labels"]["pod"] for t in mine}
            assert pods == _running_pods(kfn, component), f"{job}: targets {pods}"
            found[job] = pods
        return found

    found = wait_for("every kfn component's targets up", all_up, timeout=180, every=5)
    assert set(found) == set(JOBS.values())
    # The same pods in the samples of ``up`` (a pod of a rollout still draining may be there
    # too, scraped as down: only these are held to 1).
    up = _api("query", query=f'up{{namespace="{kfn}"}}')["result"]
    values = {(r["metric"]["job"], r["metric"]["pod"]): r["value"][1] for r in up}
    for job, pods in found.items():
        assert {values.get((job, pod)) for pod in pods} == {"1"}, job


def test_an_activator_metric_of_a_function_just_invoked_can_be_queried(
    kfn: str, prometheus: str, namespace: str, cluster: pathlib.Path
) -> None:
    image = fnimage.push_python_function("tests/prometheus", "v1", {"app.py": HANDLER})
    door = invoke_address(kfn)
    deploy(namespace, "scraped", image)
    known_to_every_activator(door, namespace, "scraped")
    response = asyncio.run(invoke(door, namespace, "scraped"))
    assert response.status == 200, response
    selector = f'namespace="{namespace}",function="scraped"'
    query = f'sum(kfn_activator_requests_total{{{selector},code="200"}})'

    def counted() -> float | None:
        result = _api("query", query=query)["result"]
        return float(result[0]["value"][1]) if result else None

    assert wait_for(f"{query} in Prometheus", counted, timeout=120, every=5) >= 1
    series = _api("series", **{"match[]": f"kfn_activator_requests_total{{{selector}}}"})
    assert series
    assert {s["job"] for s in series} == {JOBS["activator"]}
