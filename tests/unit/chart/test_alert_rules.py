"""kfn's alerts: the chart's PrometheusRule, made of ``charts/kfn/files/alerts.yaml``, is a rule
file promtool accepts; every alert fires on the scenario it is for and stays quiet on a healthy
one (``tests/prometheus/``, promtool's unit tests run against the rules the chart renders); every
alert says what is wrong and links to its runbook, a section of ``docs/operations.md``."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.unit.chart import chart

RULE_API = ("monitoring.coreos.com/v1/PrometheusRule",)
PROMTOOL_TESTS = chart.REPO / "tests" / "prometheus"
OPERATIONS = chart.REPO / "docs" / "operations.md"
#: The name the promtool tests give the rendered rules (their ``rule_files``).
RULES_FILE = "alerts.rules.yaml"


def _rule_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "PrometheusRule"]


def _alerts(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]


def _alert(rule: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [a for a in _alerts(rule) if a["alert"] == name]
    return found


def _rendered_rule(helm: pathlib.Path, values: dict[str, Any] | None = None) -> dict[str, Any]:
    (rule,) = _rule_objects(chart.render(helm, values, api_versions=RULE_API))
    return rule


@pytest.fixture(scope="module")
def default_rule(helm: pathlib.Path) -> dict[str, Any]:
    return _rendered_rule(helm)


@pytest.fixture(scope="module")
def rules_dir(
    default_rule: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> pathlib.Path:
    """The rules the chart renders with its defaults, as a rule file, beside the promtool tests."""
    directory = tmp_path_factory.mktemp("prometheus")
    (directory / RULES_FILE).write_text(yaml.safe_dump(default_rule["spec"], sort_keys=False))
    for test in PROMTOOL_TESTS.glob("*.yaml"):
        shutil.copy(test, directory / test.name)
    return directory


def _promtool(
    promtool: pathlib.Path, cwd: pathlib.Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces as -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(markdown: str) -> set[str]:
    return {_github_anchor(m) for m in re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)}


# The rule file.


def test_promtool_accepts_the_rules_the_chart_renders(
    promtool: pathlib.Path, rules_dir: pathlib.Path
) -> None:
    result = _promtool(promtool, rules_dir, "check", "rules", RULES_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_the_chart_has_the_alerts_the_operations_guide_explains(
    default_rule: dict[str, Any],
) -> None:
    assert sorted(a["alert"] for a in _alerts(default_rule)) == [
        "KfnActivatorQueueSaturated",
        "KfnBuildFailures",
        "KfnColdStartP99High",
        "KfnComponentDown",
        "KfnDeadLetterGrowth",
        "KfnDestinationDeliveryFailures",
        "KfnFunctionErrorRate",
        "KfnFunctionThrottled",
        "KfnOperatorReconcileErrors",
        "KfnTriggerIteratorAgeHigh",
    ]


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook_section(
    default_rule: dict[str, Any],
) -> None:
    anchors = _anchors(OPERATIONS.read_text())
    for alert in _alerts(default_rule):
        name = alert["alert"]
        assert alert["labels"]["severity"] in ("warning", "critical"), name
        annotations = alert["annotations"]
        assert annotations["summary"].strip(), name
        assert annotations["description"].strip(), name
        page, anchor = annotations["runbook_url"].split("#")
        assert page == "docs/operations.md", name
        assert anchor == name.lower(), name
        assert anchor in anchors, f"docs/operations.md has no section #{anchor}"


# The promtool tests.


@pytest.mark.parametrize("test_file", sorted(p.name for p in PROMTOOL_TESTS.glob("*.yaml")))
def test_the_promtool_tests_of_the_alerts_pass(
    promtool: pathlib.Path, rules_dir: pathlib.Path, test_file: str
) -> None:
    result = _promtool(promtool, rules_dir, "test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_promtool_case_where_it_fires_and_one_where_it_does_not(
    default_rule: dict[str, Any],
) -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in PROMTOOL_TESTS.glob("*.yaml"):
        document = yaml.safe_load(path.read_text())
        assert document["rule_files"] == [RULES_FILE], path.name
        for case in document["tests"]:
            for check in case["alert_rule_test"]:
                (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {a["alert"] for a in _alerts(default_rule)}
    assert names - fires == set(), "alerts no promtool case sees firing"
    assert names - quiet == set(), "alerts no promtool case sees quiet"
    assert fires | quiet <= names, "promtool cases of alerts the chart does not have"


# The PrometheusRule and its values.


def test_the_rule_is_made_when_the_cluster_serves_prometheus_rules_or_when_forced(
    helm: pathlib.Path,
) -> None:
    assert _rule_objects(chart.render(helm)) == []
    assert len(_rule_objects(chart.render(helm, api_versions=RULE_API))) == 1
    forced = {"metrics": {"prometheusRule": {"enabled": True}}}
    assert len(_rule_objects(chart.render(helm, forced))) == 1
    off = {"metrics": {"prometheusRule": {"enabled": False}}}
    assert _rule_objects(chart.render(helm, off, api_versions=RULE_API)) == []


def test_the_rule_lives_in_the_release_namespace_with_the_chart_labels_and_the_extra_ones(
    helm: pathlib.Path,
) -> None:
    values = {"metrics": {"prometheusRule": {"labels": {"release": "prom", chart.COMPONENT: "x"}}}}
    rule = _rendered_rule(helm, values)
    assert rule["metadata"]["namespace"] == chart.NAMESPACE
    labels = rule["metadata"]["labels"]
    assert labels["release"] == "prom"
    assert labels[chart.COMPONENT] == "alerts"
    assert labels["app.kubernetes.io/part-of"] == "kfn"


def test_thresholds_durations_and_severities_come_from_the_values(helm: pathlib.Path) -> None:
    values = {
        "metrics": {
            "prometheusRule": {
                "alerts": {
                    "functionErrorRate": {
                        "severity": "critical",
                        "for": "1m",
                        "ratio": 0.25,
                        "minInvocationsPerSecond": 2,
                    },
                    "coldStartP99High": {
                        "severity": "warning",
                        "for": "0s",
                        "window": "7m",
                        "seconds": 3,
                        "minColdStarts": 1,
                    },
                },
                "runbookUrl": "https://docs.example.com/kfn/operations",
            }
        }
    }
    rule = _rendered_rule(helm, values)
    errors = _alert(rule, "KfnFunctionErrorRate")
    assert (errors["for"], errors["labels"]["severity"]) == ("1m", "critical")
    assert ") > 0.25" in errors["expr"]
    assert ">= 2" in errors["expr"]
    cold = _alert(rule, "KfnColdStartP99High")
    assert cold["for"] == "0s"
    for part in ("[7m]", "> 3", ">= 1"):
        assert part in cold["expr"]
    assert errors["annotations"]["runbook_url"] == (
        "https://docs.example.com/kfn/operations#kfnfunctionerrorrate"
    )


def test_extra_alert_labels_are_added_to_every_alert_but_not_over_its_severity(
    helm: pathlib.Path,
) -> None:
    values = {"metrics": {"prometheusRule": {"alertLabels": {"team": "platform", "severity": "x"}}}}
    for alert in _alerts(_rendered_rule(helm, values)):
        assert alert["labels"]["team"] == "platform", alert["alert"]
        assert alert["labels"]["severity"] != "x", alert["alert"]


def test_the_component_down_alert_watches_the_jobs_of_the_service_monitors(
    helm: pathlib.Path,
) -> None:
    api = ("monitoring.coreos.com/v1", *RULE_API)
    objects = chart.render(helm, api_versions=api, release="edge")
    (rule,) = _rule_objects(objects)
    expr = _alert(rule, "KfnComponentDown")["expr"]
    monitors = sorted(o["metadata"]["name"] for o in objects if o["kind"] == "ServiceMonitor")
    assert monitors
    absent = sorted(re.findall(r'absent\(up\{namespace="[^"]+", job="([^"]+)"\}\)', expr))
    assert absent == monitors
    (watched,) = re.findall(r'job=~"([^"]+)"', expr)
    assert sorted(watched.split("|")) == monitors
    assert f'namespace="{chart.NAMESPACE}"' in expr


def test_the_schema_refuses_an_unknown_alert_and_a_duration_prometheus_cannot_read(
    helm: pathlib.Path,
) -> None:
    assert "prometheusRule" in chart.render_error(helm, "metrics.prometheusRule.alerts.typo.for=1m")
    message = chart.render_error(helm, "metrics.prometheusRule.alerts.componentDown.for=soon")
    assert "for" in message
