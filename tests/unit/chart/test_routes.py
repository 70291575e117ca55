"""Routes belong to namespaces: the admin's host policy reaches the operator and the activator
alike, so both judge HTTP Triggers by the same rule (kfn.api.routes)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from kfn.api import routes, trigger
from tests.unit.chart import chart


def _policies(objects: list[dict[str, Any]]) -> tuple[str, str]:
    """The host policy as the operator's environment and the activator's flag give it."""
    env = {e["name"]: e.get("value") for e in chart.operator_container(objects)["env"]}
    flags = dict(
        a.removeprefix("--").split("=", 1) for a in chart.container(objects, "activator")["args"]
    )
    return env["KFN_HOST_POLICY"], flags["host-policy"]


def test_by_default_no_host_is_assigned_and_the_activators_own_names_are_default_hosts(
    helm: pathlib.Path,
) -> None:
    operator, activator = _policies(chart.render(helm, release="faas"))
    assert operator == activator
    policy = routes.policy_from_json(operator)
    assert policy.assignments == ()
    assert policy.default_hosts == {
        "faas-kfn-activator",
        "faas-kfn-activator.kfn-system",
        "faas-kfn-activator.kfn-system.svc",
        "faas-kfn-activator.kfn-system.svc.cluster.local",
    }


def test_assigned_hosts_and_default_hosts_reach_the_operator_and_the_activator_alike(
    helm: pathlib.Path,
) -> None:
    values = {
        "clusterDomain": "corp.internal",
        "routes": {
            "hostAssignments": {
                "team-a": ["*.team-a.example.com", "team-a.example.com"],
                "team-b": ["shop.example.com"],
                "team-c": ["shop.example.com"],
            },
            "defaultHosts": ["fn.example.com"],
        },
    }
    operator, activator = _policies(chart.render(helm, values))
    assert operator == activator
    assert json.loads(operator)["hostAssignments"] == values["routes"]["hostAssignments"]
    policy = routes.policy_from_json(operator)
    assert policy.allows("x.y.team-a.example.com") == {"team-a"}
    assert policy.allows("shop.example.com") == {"team-b", "team-c"}
    assert "fn.example.com" in policy.default_hosts
    assert "kfn-activator.kfn-system.svc.corp.internal" in policy.default_hosts


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        pytest.param("routes.hostAssignments.Team-A[0]=a.example.com", "'Team-A'",
                     id="a key that is no namespace name is refused"),
        pytest.param("routes.hostAssignments.team-a[0]=*.*.example.com",
                     "/routes/hostAssignments/team-a/0", id="a wildcard in the middle is refused"),
        pytest.param("routes.hostAssignments.team-a[0]=Shop.example.com",
                     "/routes/hostAssignments/team-a/0", id="an upper-case host is refused"),
        pytest.param("routes.hostAssignments.team-a=shop.example.com",
                     "/routes/hostAssignments/team-a", id="a pattern outside a list is refused"),
        pytest.param("routes.defaultHosts[0]=*.example.com", "/routes/defaultHosts/0",
                     id="a wildcard default host is refused"),
        pytest.param("routes.hosts=x", "'hosts' not allowed", id="an unknown key is refused"),
    ],
)  # fmt: skip
def test_the_schema_refuses_a_malformed_host_policy_saying_where(
    helm: pathlib.Path, setting: str, expected: str
) -> None:
    assert expected in chart.render_error(helm, setting)


def test_the_schema_checks_hosts_with_the_patterns_the_components_check_them_with() -> None:
    schema = json.loads((chart.CHART / "values.schema.json").read_text())
    properties = schema["properties"]["routes"]["properties"]
    assigned = properties["hostAssignments"]["additionalProperties"]["items"]["pattern"]
    assert assigned == routes.HOST_PATTERN_PATTERN
    assert properties["defaultHosts"]["items"]["pattern"] == trigger.HOST_PATTERN
