"""kfn's dashboard and alerts against a real Prometheus: after a scripted scenario, every query of
every panel of the dashboard the chart ships finds series, and exactly the alerts the scenario
calls for fire.

The scenario, in one scratch namespace:

* ``web``, built in the cluster from inline source (a build: its durations), invoked twice
  from zero (cold starts, with their phases) and put under HTTP load (invocations, handler
  durations, concurrency);
* ``narrow``, one pod of concurrency 1 with a queue timeout of 1 s, sent more slow requests at
  once than it can take, three times: the rest are throttled (429);
* ``broken``, whose handler raises: synchronous invocations fail (one a second for 30 s), and
  one Event invocation fails until its retries (Lambda's 60 s and 120 s) are exhausted and it
  is dropped;
* ``unbuildable``, whose dependency does not exist: a failed build;
* ``slow`` behind the Kafka stream Trigger ``orders``, fed a backlog it works off one record at
  a time (lag, iterator age);
* Kafka Triggers ``poisoned`` and ``lost`` on ``broken``: every record fails; ``poisoned``'s
  onFailure destination is a topic (records dead-lettered), ``lost``'s a broker that is not
  there (destination deliveries fail).

The alerts are the chart's, rendered with thresholds and ``for`` this scenario reaches in
minutes (:data:`ALERT_VALUES`), as a PrometheusRule of their own in the scratch namespace (the
release's, with its defaults, stays as it is). They need the metrics of docs/operations.md with
the function's own ``namespace`` label (ServiceMonitors that honour the exported labels), and
counters whose label sets the components create up front (reconcile errors before any error).
Events are spread over several scrapes wherever an alert reads rate() or increase(), since a
series first seen with its first events already counted shows no increase.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kfncluster import config, fnimage, install
from tests.cluster.invoking import (
    deploy,
    invoke,
    invoke_address,
    invoke_event,
    known_to_every_activator,
)
from tests.cluster.kubeutil import (
    NODE,
    apply,
    kubectl_json,
    require_listening,
    scratch_namespace,
    wait_at_zero,
    wait_for,
)
from tests.cluster.test_prometheus import _api as prometheus_api
from tests.cluster.test_stream_triggers import BOOTSTRAP, delete_topics, new_topic, produce, trigger
from tests.unit.chart import chart

pytestmark = pytest.mark.cluster

HELM = config.Paths().bin / "helm"
DASHBOARD = chart.CHART / "files" / "dashboard.json"
BUILD_TIMEOUT = 240
#: Longer than the local Prometheus's scrape interval (15 s).
SCRAPE = 20

HANDLER = """\
import time


def handler(event, context):
    time.sleep(float((event or {}).get("sleep", 0)))
    if (event or {}).get("fail"):
        raise ValueError("this function fails on purpose")
    return {"ok": True}
"""
#: What the Kafka Triggers' functions run: ``slow`` takes its time, ``broken`` raises.
STREAM_HANDLER = """\
import time


def handler(event, context):
    if context.function_name == "broken":
        raise ValueError("this function fails on purpose")
    time.sleep(0.5)
    return None
"""

#: Thresholds and durations the scenario crosses within minutes; the alerts it must not
#: cause keep the chart's defaults.
ALERT_VALUES: dict[str, Any] = {
    "functionErrorRate": {"for": "0s", "ratio": 0.5, "minInvocationsPerSecond": 0.01},
    "functionThrottled": {"for": "0s", "perSecond": 0.001},
    "coldStartP99High": {"for": "0s", "window": "30m", "seconds": 0.001, "minColdStarts": 1},
    "buildFailures": {"for": "0s", "window": "30m"},
    "triggerIteratorAgeHigh": {"for": "0s", "seconds": 5},
    "deadLetterGrowth": {"for": "0s", "window": "30m"},
    "destinationDeliveryFailures": {"for": "0s", "window": "30m"},
}
#: Alerts about kfn itself rather than a namespace's objects: none of these may fire but
#: KfnBuildFailures.
CLUSTER_WIDE = {"KfnBuildFailures", "KfnOperatorReconcileErrors", "KfnComponentDown"}


@pytest.fixture(scope="module")
def helm(cluster: pathlib.Path) -> pathlib.Path:
    assert HELM.is_file(), f"{HELM} is missing; `make cluster` builds it"
    return HELM


@pytest.fixture(scope="module")
def namespace(kfn: str, prometheus: str) -> Iterator[str]:
    require_listening(9092, "kafka")
    with scratch_namespace("observability") as name:
        yield name


def _query(query: str) -> list[dict[str, Any]]:
    return list(prometheus_api("query", query=query)["result"])


def _test_rule(helm: pathlib.Path, namespace: str) -> dict[str, Any]:
    """The chart's PrometheusRule for release kfn, rendered with :data:`ALERT_VALUES`, moved
    to ``namespace`` under a name of its own."""
    defaults = chart.DEFAULTS["metrics"]["prometheusRule"]["alerts"]
    alerts = {name: {**defaults[name], **ALERT_VALUES.get(name, {})} for name in defaults}
    values = {"metrics": {"prometheusRule": {"enabled": True, "alerts": alerts}}}
    assert install.NAMESPACE == chart.NAMESPACE, "the rule's jobs are those of another namespace"
    (rule,) = [o for o in chart.render(helm, values) if o["kind"] == "PrometheusRule"]
    rule["metadata"] = {"name": "kfn-observability-test", "namespace": namespace}
    return rule


def _inline_function(namespace: str, name: str, **spec: Any) -> None:
    apply({
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "runtime": "python3.11",
            "handler": "app.handler",
            "source": {"inline": {"files": [{"name": "app.py", "content": HANDLER}]}},
            **spec,
        },
    })  # fmt: skip


def _condition(namespace: str, name: str, type_: str) -> dict[str, Any]:
    fn = kubectl_json("-n", namespace, "get", "function", name)
    found = [c for c in fn.get("status", {}).get("conditions", []) if c["type"] == type_]
    return dict(found[0]) if found else {}


async def _many(door: tuple[str, int], namespace: str, name: str, event: Any, n: int) -> list[int]:
    answers = await asyncio.gather(*(invoke(door, namespace, name, event) for _ in range(n)))
    return [a.status for a in answers]


@pytest.fixture(scope="module")
def topics() -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    delete_topics(created)


@pytest.fixture(scope="module")
def scenario(
    kfn: str, helm: pathlib.Path, namespace: str, topics: list[str]
) -> dict[str, list[str]]:
    """Runs the scenario; returns the functions and triggers it made, by kind."""
    apply(_test_rule(helm, namespace))
    door = invoke_address(kfn)
    image = fnimage.push_python_function("tests/observability", "v1", {"app.py": STREAM_HANDLER})

    # A build that fails, and one that succeeds and then serves from zero.
    _inline_function(namespace, "unbuildable", dependencies=["kfn-no-such-package-x7q==1.0"])
    _inline_function(namespace, "web", scale={"idleTimeout": "5s"})
    wait_for("web Ready", lambda: _condition(namespace, "web", "Ready").get("status") == "True",
             timeout=BUILD_TIMEOUT, every=1)  # fmt: skip
    wait_for(
        "unbuildable's build to fail",
        lambda: (
            _condition(namespace, "unbuildable", "BuildSucceeded").get("reason") == "BuildFailed"
        ),
        timeout=BUILD_TIMEOUT,
        every=1,
    )
    known_to_every_activator(door, namespace, "web")
    # Two cold starts: a counter or histogram may be made by its first observation, which
    # rate() cannot see; the second one it can.
    for _ in range(2):
        wait_at_zero(namespace, "web", timeout=120)
        assert asyncio.run(invoke(door, namespace, "web")).status == 200
        time.sleep(SCRAPE)
    for _ in range(20):  # load: 20 rounds of 10 concurrent requests
        statuses = asyncio.run(_many(door, namespace, "web", {"sleep": 0.05}, 10))
        assert set(statuses) == {200}, statuses

    # Throttles: one pod of concurrency 1, requests that wait at most 1 s for it.
    deploy(namespace, "narrow", image, concurrency=1, queueTimeout="1s",
           scale={"minReplicas": 1, "maxReplicas": 1})  # fmt: skip
    known_to_every_activator(door, namespace, "narrow")
    for _ in range(3):  # rounds a scrape apart, so that rate() sees the throttles grow
        statuses = asyncio.run(_many(door, namespace, "narrow", {}, 12))
        assert 429 in statuses, statuses
        time.sleep(SCRAPE)

    # Errors: synchronous ones, and an Event invocation that is dropped once its retries end.
    deploy(namespace, "broken", image, scale={"minReplicas": 1})
    deploy(namespace, "slow", image, concurrency=1, scale={"minReplicas": 1, "maxReplicas": 1})
    for name in ("broken", "slow"):
        known_to_every_activator(door, namespace, name)
    for _ in range(30):  # one a second, over several scrapes
        statuses = asyncio.run(_many(door, namespace, "broken", {}, 1))
        assert 429 not in statuses, statuses
        time.sleep(1)
    assert asyncio.run(invoke_event(door, namespace, "broken", {})).status == 202

    # A stream backlog, and failing records with a reachable and an unreachable destination.
    backlog, poison, dead = (new_topic(topics, partitions=1) for _ in range(3))
    trigger(namespace, "orders", "slow", {
        "kafka": {"bootstrapServers": [BOOTSTRAP], "topic": backlog},
        "batchSize": 1, "startingPosition": "Earliest",
    })  # fmt: skip
    trigger(namespace, "poisoned", "broken", {
        "kafka": {"bootstrapServers": [BOOTSTRAP], "topic": poison},
        "batchSize": 1, "startingPosition": "Earliest", "maxRetries": 1,
        "onFailure": {"kafka": {"bootstrapServers": [BOOTSTRAP], "topic": dead}},
    })  # fmt: skip
    trigger(namespace, "lost", "broken", {
        "kafka": {"bootstrapServers": [BOOTSTRAP], "topic": poison},
        "batchSize": 1, "startingPosition": "Earliest", "maxRetries": 0,
        "onFailure": {"kafka": {"bootstrapServers": [f"{NODE}:1"], "topic": "nowhere"}},
    })  # fmt: skip
    produce(backlog, [f"order-{i}" for i in range(300)])
    produce(poison, [f"poison-{i}" for i in range(5)])
    return {
        "function": ["web", "narrow", "broken", "slow"],
        "trigger": ["orders", "poisoned", "lost"],
    }


def _jobs(kfn: str) -> str:
    monitors = kubectl_json("-n", kfn, "get", "servicemonitors")["items"]
    return "|".join(sorted(m["metadata"]["name"] for m in monitors))


def _queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def _substitutions(
    expr: str, namespace: str, scenario: dict[str, list[str]], jobs: str
) -> list[str]:
    """``expr`` with Grafana's variables replaced, once for each function or trigger of the
    scenario the query is about."""
    expr = expr.replace("$__rate_interval", "10m").replace("$namespace", namespace)
    expr = expr.replace("$job", jobs)
    for variable in ("function", "trigger"):
        if f"${variable}" in expr:
            return [expr.replace(f"${variable}", name) for name in scenario[variable]]
    return [expr]


def test_every_query_of_every_dashboard_panel_finds_series_after_the_scenario(
    kfn: str, namespace: str, scenario: dict[str, list[str]]
) -> None:
    jobs = _jobs(kfn)
    assert jobs, "no ServiceMonitors: the dashboard's up panel would find nothing"
    pending = {
        (title, expr): _substitutions(expr, namespace, scenario, jobs) for title, expr in _queries()
    }

    def ours(series: dict[str, Any]) -> bool:
        """A series of the scenario: of its namespace, where the query keeps that label."""
        return series["metric"].get("namespace", namespace) == namespace

    def all_found() -> bool:
        for key, candidates in list(pending.items()):
            if any(any(ours(s) for s in _query(candidate)) for candidate in candidates):
                del pending[key]
        return not pending

    try:
        wait_for("a series for every panel query", all_found, timeout=300, every=10)
    finally:
        for (title, expr), _ in pending.items():
            print(f"no series: {title}: {expr}")


def _firing() -> list[dict[str, str]]:
    return [r["metric"] for r in _query('ALERTS{alertstate="firing"}')]


def _about(alert: dict[str, str]) -> tuple[str, str]:
    return alert["alertname"], alert.get("function") or alert.get("trigger") or ""


def test_the_alerts_the_scenario_calls_for_fire_and_no_others(
    namespace: str, scenario: dict[str, list[str]]
) -> None:
    expected = {
        ("KfnFunctionErrorRate", "broken"),
        ("KfnFunctionThrottled", "narrow"),
        ("KfnColdStartP99High", "web"),
        ("KfnBuildFailures", ""),
        ("KfnTriggerIteratorAgeHigh", "orders"),
        ("KfnDeadLetterGrowth", "poisoned"),
        # The Event invocation, after Lambda's retry delays (60 s, then 120 s).
        ("KfnDeadLetterGrowth", "broken"),
        ("KfnDestinationDeliveryFailures", "lost"),
    }
    # What the scenario may also cause: cold starts of the other functions (a first request
    # may beat the activators' view of a new pod), old records handed to the failing
    # Triggers' function after retries, and events of lost counted as given up too.
    tolerated = {("KfnColdStartP99High", f) for f in scenario["function"]}
    tolerated |= {("KfnTriggerIteratorAgeHigh", t) for t in scenario["trigger"]}
    tolerated |= {("KfnDeadLetterGrowth", "lost")}

    def mine() -> set[tuple[str, str]]:
        return {
            _about(a)
            for a in _firing()
            if a.get("namespace") == namespace or a["alertname"] in CLUSTER_WIDE
        }

    started = time.monotonic()
    try:
        wait_for("the expected alerts to fire", lambda: expected <= mine(), timeout=420, every=15)
    finally:
        print(f"firing after {time.monotonic() - started:.0f}s: {sorted(mine())}")
    assert mine() - expected - tolerated == set()
