"""The status the operator writes for Triggers."""

from __future__ import annotations

import datetime
from typing import Any

from kfn.api import routes, trigger
from kfn.operator import triggers

NOW = datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC)
BASE = "http://kfn-activator.kfn-system.svc.cluster.local"


def body(name: str, created: str = "2024-01-01T00:00:00Z", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": "team", "generation": 2,
                     "creationTimestamp": created},
        "spec": {"functionRef": {"name": "hello"}, **spec},
    }  # fmt: skip


def status(b: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    parsed = trigger.Trigger.model_validate(b)
    options = {"function_exists": True, "refusal": None, "base_url": BASE, "now": NOW, **kwargs}
    return triggers.desired_status(parsed, **options)


def test_an_http_trigger_gets_the_activator_url_its_type_and_ready() -> None:
    result = status(body("web", http={"pathPrefix": "/shop"}))
    assert result["type"] == "Http"
    assert result["url"] == f"{BASE}/shop"
    (ready,) = result["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Ready")
    assert result["observedGeneration"] == 2


def test_a_trigger_naming_a_host_gets_that_host_in_its_url() -> None:
    result = status(body("web", http={"host": "shop.example", "pathPrefix": "/"}))
    assert result["url"] == "http://shop.example/"


def test_a_missing_function_makes_the_trigger_not_ready() -> None:
    (ready,) = status(body("web", http={}), function_exists=False)["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "FunctionNotFound")


def test_a_refused_route_makes_the_trigger_not_ready_with_the_refusals_message() -> None:
    refusal = routes.Refusal(("other", "web"), "path prefix /x on the default host belongs to …")
    (ready,) = status(body("new", http={"pathPrefix": "/x"}), refusal=refusal)["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "RouteConflict")
    assert ready["message"] == refusal.message


def test_a_missing_function_is_reported_before_a_refused_route() -> None:
    refusal = routes.Refusal(None, "host assigned elsewhere")
    result = status(body("web", http={}), function_exists=False, refusal=refusal)
    (ready,) = result["conditions"]
    assert ready["reason"] == "FunctionNotFound"


def test_other_kinds_get_only_their_type() -> None:
    assert status(body("tick", cron={"schedule": "@hourly"})) == {"type": "Cron"}
