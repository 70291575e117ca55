"""A bucket Trigger naming a version or an alias delivers its events to that qualifier: the route
the worker dispatches by carries it to the activator's invoke API (a real HTTP server on
127.0.0.1), and its failure records name it."""

from __future__ import annotations

import datetime
import json
import threading
from typing import Any

from kfn.triggers import delivery, invoke, onfailure
from kfn.triggers.bucket import routes
from tests.unit.triggers.bucket.helpers import notification, trigger
from tests.unit.triggers.conftest import ActivatorStub

T0 = datetime.datetime(2026, 3, 1, 12, tzinfo=datetime.UTC)


def _route(qualifier: str | None, **bucket: Any) -> routes.Route:
    obj = trigger(**bucket)
    if qualifier is not None:
        obj["spec"]["functionRef"]["qualifier"] = qualifier
    route = routes.route_of(obj)
    assert route is not None
    return route


def _deliver(activator: ActivatorStub, route: routes.Route) -> delivery.Result:
    invoker = invoke.Invoker(activator.url)
    deliverer = delivery.AsyncDeliverer(
        invoker,
        onfailure.Destinations(invoker),
        stop=threading.Event(),
        clock=lambda: T0,
        retry_delays=(0.01, 0.01),
    )
    payload = json.dumps(notification()).encode()
    return deliverer.deliver(
        route.target, route.spec.delivery, payload, request_id="e-1", first_seen=T0
    )


def test_a_bucket_trigger_naming_an_alias_delivers_to_the_alias(activator: ActivatorStub) -> None:
    assert _deliver(activator, _route("canary")).delivered
    assert [c.path for c in activator.calls] == ["/_kfn/functions/media/resize%3Acanary/invoke"]


def test_a_bucket_trigger_naming_latest_delivers_to_the_unqualified_function(
    activator: ActivatorStub,
) -> None:
    assert _deliver(activator, _route("$LATEST")).delivered
    assert [c.path for c in activator.calls] == ["/_kfn/functions/media/resize/invoke"]


def test_a_qualified_bucket_event_out_of_retries_is_recorded_against_its_version(
    activator: ActivatorStub,
) -> None:
    for _ in range(3):
        activator.answer(500, b"{}", Kfn_Function_Error="Unhandled")
    route = _route("4", delivery={"onFailure": {"function": {"name": "dead-letters"}}})
    result = _deliver(activator, route)
    assert (result.handled, result.delivered) == (True, False)
    assert [c.path.split("/")[-2] for c in activator.calls] == ["resize%3A4"] * 3 + ["dead-letters"]
    record = json.loads(activator.calls[-1].body)
    assert record["requestContext"]["functionArn"] == "kfn:media:function:resize:4"
