"""A stream Trigger naming a version or an alias invokes that qualifier, its batches reaching the
activator's invoke API as ``name:qualifier`` (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import datetime

from kfn.triggers import failure, invoke, onfailure
from kfn.triggers import status as status_
from kfn.triggers.stream import batching, source, worker
from tests.unit.triggers.conftest import ActivatorStub
from tests.unit.triggers.stream import helpers
from tests.unit.triggers.stream.test_worker import trigger


def _invoked_path(activator: ActivatorStub, function_ref: dict[str, str]) -> str:
    obj = trigger("orders")
    obj["spec"]["functionRef"] = function_ref
    wanted = worker.wanted_of(obj)
    assert wanted is not None
    invoker = invoke.Invoker(activator.url)
    clients = source.Clients(invoker, onfailure.Destinations(invoker), status_.StatusWriter())
    consumer = source.Consumer(wanted.target, clients)
    batch = helpers.BytesSource(consumer, 0, consumer.stopping)
    outcome = batch.invoke([batching.Record(1, 0.0, 2, b"{}")], 0)
    assert outcome.status == 200
    (call,) = activator.calls
    return call.path


def test_a_stream_trigger_naming_an_alias_invokes_the_alias(activator: ActivatorStub) -> None:
    path = _invoked_path(activator, {"name": "fn", "qualifier": "live"})
    assert path == "/_kfn/functions/ns/fn%3Alive/invoke"


def test_a_stream_trigger_naming_a_version_invokes_the_version(activator: ActivatorStub) -> None:
    path = _invoked_path(activator, {"name": "fn", "qualifier": "12"})
    assert path == "/_kfn/functions/ns/fn%3A12/invoke"


def test_a_stream_trigger_without_a_qualifier_invokes_latest(activator: ActivatorStub) -> None:
    assert _invoked_path(activator, {"name": "fn"}) == "/_kfn/functions/ns/fn/invoke"


def test_the_failure_records_of_a_qualified_stream_trigger_name_the_qualifier() -> None:
    obj = trigger("orders")
    obj["spec"]["functionRef"] = {"name": "fn", "qualifier": "live"}
    wanted = worker.wanted_of(obj)
    assert wanted is not None
    record = failure.failure_record(
        wanted.target.delivery_target,
        request_id="r-1",
        payload=b"{}",
        condition="RetryAttemptsExhausted",
        attempts=3,
        outcome=None,
        now=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    )
    assert record["requestContext"]["functionArn"] == "kfn:ns:function:fn:live"
