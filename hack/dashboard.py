"""Generate kfn's Grafana dashboard (``charts/kfn/files/dashboard.json``) from the panels below.

``python hack/dashboard.py`` writes the file; ``--check`` only says whether it is current (a chart
test runs it, so the shipped JSON cannot drift from this program). The panels are data
(:data:`ROWS`): a title, a unit, and PromQL queries over the metrics of docs/operations.md, with
Grafana's variables ``$namespace``, ``$function``, ``$trigger``, ``$job`` and
``$__rate_interval``. The chart ships the file in a ConfigMap for Grafana's dashboard sidecar
(``metrics.grafanaDashboard``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
from typing import Any, Literal

REPO = pathlib.Path(__file__).resolve().parents[1]
OUTPUT = REPO / "charts" / "kfn" / "files" / "dashboard.json"

#: The Prometheus data source every panel and variable asks, chosen in the dashboard.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: The Prometheus jobs of kfn's components: their Services' names, "<fullname>-<component>".
JOB_REGEX = "/.*kfn.*-(activator|operator|autoscaler|cron|stream|bucket)$/"

FN = 'namespace="$namespace", function="$function"'
TR = 'namespace="$namespace", trigger="$trigger"'
RATE = "[$__rate_interval]"


@dataclasses.dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclasses.dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: tuple[Query, ...]
    description: str = ""
    #: bars draws stacked bars (the cold-start phases); lines draws lines.
    style: Literal["lines", "bars"] = "lines"


@dataclasses.dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


def _quantiles(
    metric: str, selector: str, by: str, quantiles: tuple[float, ...]
) -> tuple[Query, ...]:
    group = f"{by}, le" if by else "le"
    matchers = f"{{{selector}}}" if selector else ""
    prefix = "{{" + by + "}} " if by else ""
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{matchers}{RATE})))",
            f"{prefix}p{round(q * 100)}",
        )
        for q in quantiles
    )


OVERVIEW = Row(
    "Overview",
    (
        Panel(
            "Invocations by namespace",
            "reqps",
            (
                Query(
                    f"sum by (namespace) (rate(kfn_function_invocations_total{RATE}))",
                    "{{namespace}}",
                ),
            ),
            "Invocations answered by a function's pods (Lambda's Invocations), per second.",
        ),
        Panel(
            "Errors by namespace and kind",
            "reqps",
            (
                Query(
                    "sum by (namespace, kind) "
                    f'(rate(kfn_function_errors_total{{kind!="throttled"}}{RATE}))',
                    "{{namespace}} {{kind}}",
                ),
            ),
            "Errors per second: function, timeout, init, out_of_memory, exit, unavailable.",
        ),
        Panel(
            "Throttles by namespace",
            "reqps",
            (
                Query(
                    "sum by (namespace) "
                    f'(rate(kfn_function_errors_total{{kind="throttled"}}{RATE}))',
                    "{{namespace}}",
                ),
            ),
            "Requests kfn answered 429 TooManyRequests, per second.",
        ),
        Panel(
            "Cold starts by namespace",
            "short",
            (
                Query(
                    f"sum by (namespace) (increase(kfn_function_cold_starts_total{RATE}))",
                    "{{namespace}}",
                ),
            ),
            "Requests that waited for a function at zero ready pods.",
        ),
        Panel(
            "Handler duration by namespace",
            "s",
            _quantiles("kfn_function_duration_seconds", "", "namespace", (0.5, 0.99)),
            "The handlers' own time (Kfn-Handler-Duration), p50 and p99.",
        ),
    ),
)

FUNCTION = Row(
    "Function $namespace/$function",
    (
        Panel(
            "Invocations",
            "reqps",
            (Query(f"sum(rate(kfn_function_invocations_total{{{FN}}}{RATE}))", "invocations"),),
        ),
        Panel(
            "Errors by kind",
            "reqps",
            (Query(f"sum by (kind) (rate(kfn_function_errors_total{{{FN}}}{RATE}))", "{{kind}}"),),
            "throttled is kfn's 429; the others are Lambda's Errors.",
        ),
        Panel(
            "Handler duration",
            "s",
            _quantiles("kfn_function_duration_seconds", FN, "", (0.5, 0.9, 0.99)),
        ),
        Panel(
            "Concurrent executions",
            "short",
            (Query(f"sum(kfn_function_concurrent_executions{{{FN}}})", "in pods now"),),
        ),
        Panel(
            "Cold starts",
            "short",
            (Query(f"sum(increase(kfn_function_cold_starts_total{{{FN}}}{RATE}))", "cold starts"),),
        ),
        Panel(
            "Cold start duration",
            "s",
            _quantiles("kfn_function_cold_start_duration_seconds", FN, "", (0.5, 0.99)),
            "First request queued at zero → first byte of its answer.",
        ),
        Panel(
            "Cold start phases (mean)",
            "s",
            (
                Query(
                    "sum by (phase) "
                    f"(increase(kfn_function_cold_start_phase_seconds_sum{{{FN}}}{RATE}))"
                    " / sum by (phase) "
                    f"(increase(kfn_function_cold_start_phase_seconds_count{{{FN}}}{RATE}))",
                    "{{phase}}",
                ),
            ),
            "Where a cold start's time goes: scale, schedule, container_start, runtime_init, "
            "handler_import, ready, first_byte, other.",
            style="bars",
        ),
        Panel(
            "Ready endpoints and replicas",
            "short",
            (
                Query(f"max(kfn_function_ready_endpoints{{{FN}}})", "ready endpoints"),
                Query(f"max(kfn_autoscaler_desired_replicas{{{FN}}})", "desired replicas"),
                Query(f"max(kfn_autoscaler_actual_replicas{{{FN}}})", "actual replicas"),
            ),
        ),
    ),
)

TRIGGER = Row(
    "Trigger $namespace/$trigger",
    (
        Panel(
            "Events",
            "short",
            tuple(
                Query(
                    f"sum(rate(kfn_trigger_events_{what}_total{{{TR}}}{RATE}))",
                    what.replace("_", "-"),
                )
                for what in ("received", "delivered", "retried", "dead_lettered")
            ),
            "Events per second.",
        ),
        Panel(
            "Lag",
            "short",
            (Query(f"sum(kfn_trigger_lag_records{{{TR}}})", "records behind"),),
        ),
        Panel(
            "Iterator age",
            "s",
            (Query(f"max(kfn_trigger_iterator_age_seconds{{{TR}}})", "iterator age"),),
            "Age of the last record handed to the function (Lambda's IteratorAge).",
        ),
    ),
)

CONTROL_PLANE = Row(
    "Control plane",
    (
        Panel(
            "Operator reconcile duration",
            "s",
            _quantiles("kfn_operator_reconcile_duration_seconds", "", "kind", (0.5, 0.99)),
        ),
        Panel(
            "Operator reconcile errors",
            "short",
            (
                Query(
                    f"sum by (kind, handler) (increase(kfn_operator_reconcile_errors_total{RATE}))",
                    "{{kind}} {{handler}}",
                ),
            ),
        ),
        Panel(
            "Operator queue depth",
            "short",
            (Query("sum by (kind) (kfn_operator_queue_depth)", "{{kind}}"),),
        ),
        Panel(
            "Build duration by phase",
            "s",
            _quantiles("kfn_build_duration_seconds", "", "phase", (0.9,)),
        ),
        Panel(
            "Build failures by phase",
            "short",
            (Query(f"sum by (phase) (increase(kfn_build_failures_total{RATE}))", "{{phase}}"),),
        ),
        Panel(
            "Functions in panic mode",
            "short",
            (Query("sum by (namespace) (kfn_autoscaler_panic_mode)", "{{namespace}}"),),
        ),
        Panel(
            "Activator queue depth",
            "short",
            (
                Query(
                    "sum by (namespace, function) (kfn_activator_queue_depth)",
                    "{{namespace}}/{{function}}",
                ),
            ),
        ),
        Panel(
            "Activator buffered bytes",
            "bytes",
            (Query("sum by (pod) (kfn_activator_buffered_bytes)", "{{pod}}"),),
        ),
        Panel(
            "Targets up by job",
            "short",
            (
                Query('sum by (job) (up{job=~"$job"})', "{{job}} up"),
                Query('count by (job) (up{job=~"$job"})', "{{job}} targets"),
            ),
        ),
    ),
)

ROWS = (OVERVIEW, FUNCTION, TRIGGER, CONTROL_PLANE)


def _variable(name: str, query: str, regex: str = "", multi: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "label": name,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-variable"},
        "definition": query,
        "regex": regex,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "current": {},
        "options": [],
        "hide": 0,
    }


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    bars = panel.style == "bars"
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 8, "x": x, "y": y},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": q.expr,
                "legendFormat": q.legend,
            }
            for i, q in enumerate(panel.queries)
        ],
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "custom": {
                    "drawStyle": "bars" if bars else "line",
                    "fillOpacity": 80 if bars else 10,
                    "stacking": {"mode": "normal" if bars else "none", "group": "A"},
                },
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def dashboard() -> dict[str, Any]:
    """The dashboard's JSON model: one row per :data:`ROWS` entry, three panels a line."""
    panels: list[dict[str, Any]] = []
    y = 0
    for row in ROWS:
        panels.append({
            "id": len(panels) + 1,
            "type": "row",
            "title": row.title,
            "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            "panels": [],
        })  # fmt: skip
        y += 1
        for i, panel in enumerate(row.panels):
            panels.append(_panel(panel, len(panels) + 1, (i % 3) * 8, y + (i // 3) * 8))
        y += ((len(row.panels) + 2) // 3) * 8
    return {
        "uid": "kfn-overview",
        "title": "kfn",
        "description": "kfn's functions, triggers and control plane (docs/operations.md).",
        "tags": ["kfn"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                _variable("namespace", "label_values(kfn_function_invocations_total, namespace)"),
                _variable(
                    "function",
                    "label_values("
                    'kfn_function_invocations_total{namespace="$namespace"}, function)',
                ),
                _variable(
                    "trigger",
                    "label_values("
                    'kfn_trigger_events_received_total{namespace="$namespace"}, trigger)',
                ),
                _variable("job", "label_values(up, job)", regex=JOB_REGEX, multi=True),
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether the file is current")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is out of date: run `python hack/dashboard.py`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
