"""``kubectl kfn describe``: one page from the Function and what is around it."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

from prometheus_client import core, exposition, registry

from kfn.cli import describing, output

NOW = datetime.datetime(2026, 12, 4, 10, 0, 0, tzinfo=datetime.UTC)

FUNCTION: dict[str, Any] = {
    "apiVersion": "kfn.dev/v1alpha1",
    "kind": "Function",
    "metadata": {
        "name": "hello",
        "namespace": "team-a",
        "generation": 2,
        "annotations": {"kfn.dev/source-hash": "0123456789abcdef0123"},
    },
    "spec": {
        "runtime": "python3.13",
        "handler": "app.handler",
        "timeout": "30s",
        "concurrency": 1,
        "resources": {"limits": {"memory": "128Mi"}},
        "scale": {"minReplicas": 0, "maxReplicas": 10, "idleTimeout": "60s"},
        "source": {"inline": {"files": [{"name": "app.py", "content": "..."}]}},
    },
    "status": {
        "observedGeneration": 2,
        "image": "registry.kfn/fn/team-a/hello@sha256:aa",
        "url": "http://kfn-invoke.kfn-system.svc.cluster.local/_kfn/functions/team-a/hello/invoke",
        "replicas": 0,
        "readyReplicas": 0,
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "CodeCheckFailed",
             "message": "app.py:3:\n  SyntaxError", "lastTransitionTime": "2026-12-04T09:58:00Z"},
            {"type": "BuildSucceeded", "status": "False", "reason": "CodeCheckFailed",
             "message": "app.py:3: SyntaxError", "lastTransitionTime": "2026-12-04T09:59:15Z"},
        ],
    },
}  # fmt: skip


def _trigger(name: str, ref: str, kind: str, ready: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"functionRef": {"name": ref}, kind: {}},
        "status": {
            "conditions": [{"type": "Ready", "status": ready, "reason": "R", "message": ""}]
        },
    }


def test_the_page_shows_spec_conditions_triggers_build_events_and_what_was_skipped() -> None:
    triggers = describing.related_triggers(
        [
            _trigger("nightly", "hello", "cron", "True"),
            _trigger("other", "bye", "http", "True"),
            _trigger("api", "hello:live", "http", "False"),
        ],
        "hello",
    )
    view = describing.View(
        function=FUNCTION,
        triggers=triggers,
        events=[
            {"type": "Warning", "reason": "BuildFailed", "message": "code check failed",
             "count": 2, "lastTimestamp": "2026-12-04T09:59:00Z"},
            {"type": "Normal", "reason": "Building", "message": "started",
             "lastTimestamp": "2026-12-04T09:50:00Z"},
        ],
        deployment={"spec": {"replicas": 0}},
        build_job="hello-build-0123456789ab",
        build_log="[build/check] app.py:3: SyntaxError\n",
        notes=["Invocations: not shown (no metrics)"],
    )  # fmt: skip

    page = describing.render(view, NOW)

    assert page.splitlines()[:5] == [
        "Name:         hello",
        "Namespace:    team-a",
        "Runtime:      python3.13",
        "Handler:      app.handler",
        "Source:       inline, 1 file(s), source hash 0123456789ab",
    ]
    assert "Memory:       128Mi" in page
    assert "Scale:        0 to 10 pods, idle after 60s" in page
    assert "Replicas:  0 desired, 0 running, 0 ready" in page
    assert "  Ready            False    CodeCheckFailed   2m    app.py:3: SyntaxError" in page
    assert "  BuildSucceeded   False    CodeCheckFailed   45s   app.py:3: SyntaxError" in page
    assert "  api       http   False   R" in page
    assert "  nightly   cron   True    R" in page
    assert "other" not in page
    assert (
        "Build:  CodeCheckFailed (Job hello-build-0123456789ab)\n  [build/check] app.py:3" in page
    )
    events = page.split("Events:\n", 1)[1].splitlines()
    assert events[1].startswith("  10m ")  # the older first
    assert events[2].startswith("  60s (x2)    Warning   BuildFailed")
    assert page.endswith("Invocations: not shown (no metrics)\n")


def test_a_function_just_created_shows_none_where_nothing_is_known_yet() -> None:
    fresh = {"metadata": {"name": "new", "namespace": "a", "generation": 1}, "spec": {}}

    page = describing.render(describing.View(function=fresh), NOW)

    assert "Image:        <none>" in page
    assert "Conditions:  <none>" in page
    assert "Triggers:  <none>" in page
    assert "Versions:  <none>" in page
    assert "Aliases:  <none>" in page
    assert "Replicas:  no Deployment yet" in page
    assert "Events:  <none>" in page


def test_versions_and_aliases_show_what_routes_where_and_how_a_rollout_went() -> None:
    fn = {
        "metadata": {"name": "hello", "namespace": "a", "generation": 4},
        "spec": {
            "aliases": [
                {"name": "beta", "version": 1, "additionalVersion": {"version": 2, "weight": 10}},
                {"name": "live", "version": 3, "rollout": {}},
            ]
        },
        "status": {
            "latestVersion": 3,
            "versions": [
                {"version": 3, "image": "r/fn@sha256:" + "3" * 64,
                 "published": "2026-12-04T09:59:00Z"},
                {"version": 2, "image": "r/fn@sha256:" + "2" * 64,
                 "published": "2026-12-04T09:00:00Z"},
            ],
            "aliases": [
                {"name": "live", "routes": [{"version": 2, "weight": 100}],
                 "rollout": {"from": 2, "to": 3, "step": 0, "stepStarted": "2026-12-04T09:59:30Z",
                             "outcome": "RolledBack", "message": "version 3 failed 30 %"}},
            ],
        },
    }  # fmt: skip

    lines = describing.render(describing.View(function=fn), NOW).splitlines()

    assert "Versions:  latest 3" in lines
    assert any(line.split()[:2] == ["3", "60s"] for line in lines), lines
    beta = next(line for line in lines if line.strip().startswith("beta"))
    assert "1 (90 %), 2 (10 %)" in beta
    live = next(line for line in lines if line.strip().startswith("live"))
    assert "2 (100 %)" in live
    assert "RolledBack 2 -> 3: version 3 failed 30 %" in live


def test_output_prints_the_objects_themselves() -> None:
    view = describing.View(function=FUNCTION, build_job="j", build_log="tail")

    printed = output.render(view.objects(), "json")

    assert '"name": "hello"' in printed
    assert view.objects()["build"] == {"job": "j", "logTail": "tail"}
    assert view.objects()["deployment"] is None


def test_ages_read_as_kubectls() -> None:
    def ago(seconds: int) -> str:
        then = NOW - datetime.timedelta(seconds=seconds)
        return describing.age(then.isoformat().replace("+00:00", "Z"), NOW)

    assert [ago(5), ago(119), ago(3599), ago(7300), ago(3 * 86400)] == [
        "5s", "119s", "59m", "2h", "3d",
    ]  # fmt: skip
    assert describing.age(None, NOW) == describing.age("yesterday", NOW) == "<unknown>"


def _activator_page(invocations: float, errors: float, duration_sum: float) -> str:
    """A /metrics page as an activator's collector exposes one (prometheus_client's own text)."""

    class Collector(registry.Collector):
        def collect(self) -> Iterator[core.Metric]:
            fn = ["namespace", "function"]
            counted = core.CounterMetricFamily("kfn_function_invocations", "", labels=fn)
            counted.add_metric(["team-a", "hello"], invocations)
            counted.add_metric(["team-a", "other"], 1000)
            counted.add_metric(["team-b", "hello"], 1000)
            failed = core.CounterMetricFamily("kfn_function_errors", "", labels=[*fn, "kind"])
            failed.add_metric(["team-a", "hello", "Unhandled"], errors)
            cold = core.CounterMetricFamily("kfn_function_cold_starts", "", labels=fn)
            cold.add_metric(["team-a", "hello"], 1)
            took = core.HistogramMetricFamily("kfn_function_duration_seconds", "", labels=fn)
            took.add_metric(["team-a", "hello"], [("0.01", invocations), ("+Inf", invocations)],
                            sum_value=duration_sum)  # fmt: skip
            in_flight = core.GaugeMetricFamily("kfn_function_concurrent_executions", "", labels=fn)
            in_flight.add_metric(["team-a", "hello"], 0)
            yield from (counted, failed, cold, took, in_flight)

    metrics = registry.CollectorRegistry()
    metrics.register(Collector())
    return exposition.generate_latest(metrics).decode()


def test_invocation_figures_are_summed_over_the_activators_for_this_function_only() -> None:
    pages = [_activator_page(6, 1, 0.012), _activator_page(4, 0, 0.008)]

    found = describing.figures(pages, "team-a", "hello")

    assert (found.activators, found.invocations, found.cold_starts) == (2, 10, 2)
    assert found.errors == {"Unhandled": 1}
    assert found.line() == (
        "Invocations:  10, 1 errors (1 Unhandled), 2 cold starts, handler mean 2.0 ms, "
        "0 in flight (counted by 2 activator(s) since each started)"
    )
    page = describing.render(describing.View(function=FUNCTION, figures=found), NOW)
    assert found.line() in page
