"""The status the operator writes for Triggers."""

from __future__ import annotations

import datetime
from typing import Any

from kfn.api import trigger
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
    options = {"function_exists": True, "conflict": None, "base_url": BASE, "now": NOW, **kwargs}
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


def test_the_newer_of_two_triggers_claiming_one_route_reports_the_conflict() -> None:
    old = triggers.claim_of(body("old", http={"pathPrefix": "/x"}))
    new = triggers.claim_of(body("new", "2024-02-01T00:00:00Z", http={"pathPrefix": "/x/"}))
    other_method = triggers.claim_of(
        body("get", "2023-01-01T00:00:00Z", http={"pathPrefix": "/x", "methods": ["GET"]})
    )
    assert old is not None
    assert new is not None
    assert other_method is not None
    assert triggers.older_conflict(new, [old, new]) == old
    assert triggers.older_conflict(old, [old, new]) is None
    post_only = triggers.claim_of(body("p", http={"pathPrefix": "/x", "methods": ["POST"]}))
    assert post_only is not None
    assert triggers.older_conflict(post_only, [other_method]) is None
    (ready,) = status(body("new", http={"pathPrefix": "/x"}), conflict=old)["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "RouteConflict")


def test_other_kinds_get_only_their_type() -> None:
    assert status(body("tick", cron={"schedule": "@hourly"})) == {"type": "Cron"}
