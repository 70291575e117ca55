"""Functions and routes the activator builds from Function and Trigger objects."""

from __future__ import annotations

from typing import Any

from kfn import stats
from kfn.activator import catalog, router
from kfn.activator import config as configs
from kfn.api import function, trigger


def fn(name: str, **spec: Any) -> function.Function:
    return function.Function.model_validate(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"source": {"image": "registry.example/fn@sha256:" + "a" * 64}, **spec},
        }
    )


def http_trigger(name: str, target: str, **http: Any) -> trigger.Trigger:
    return trigger.Trigger.model_validate(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"functionRef": {"name": target}, "http": http},
        }
    )


def test_every_function_gets_its_concurrency_and_timeout_as_limits() -> None:
    limits = catalog.limits([fn("a", concurrency=4, timeout="90s"), fn("b")], queue_limit=7)
    assert limits[stats.FunctionKey("team", "a")] == configs.FunctionLimits(
        concurrency=4, timeout_ms=90_000, queue_limit=7
    )
    assert limits[stats.FunctionKey("team", "b")].timeout_ms == 30_000


def test_http_triggers_become_routes_and_others_do_not() -> None:
    cron = trigger.Trigger.model_validate(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": "tick", "namespace": "team"},
            "spec": {"functionRef": {"name": "a"}, "cron": {"schedule": "@every 10s"}},
        }
    )
    routes = catalog.routes(
        [http_trigger("web", "a", host="shop.example", pathPrefix="/api", methods=["GET"]), cron],
        {},
    )
    assert routes == (
        router.Route(
            host="shop.example",
            path_prefix="/api",
            methods=frozenset({"GET"}),
            function=stats.FunctionKey("team", "a"),
        ),
    )


def test_the_older_of_two_triggers_for_the_same_route_wins() -> None:
    older, newer = (
        http_trigger("old", "a", pathPrefix="/x"),
        http_trigger("new", "b", pathPrefix="/x"),
    )
    created = {("team", "old"): "2024-01-01T00:00:00Z", ("team", "new"): "2024-02-01T00:00:00Z"}
    table = router.Router(catalog.routes([newer, older], created))
    match = table.match(b"any.host", b"/x/y", b"GET")
    assert match is not None
    assert match.function == stats.FunctionKey("team", "a")
