"""Lambda's asynchronous delivery from trigger workers: retries, failure records sent to
onFailure destinations, and events handed on by a stopping worker.

The activator is a real HTTP server on 127.0.0.1 (the ``activator`` fixture)."""

from __future__ import annotations

import datetime
import json
import threading
import time

from kfn import retry
from kfn.api import trigger as trigger_api
from kfn.triggers import delivery, failure, invoke, onfailure, status
from tests.unit.triggers.conftest import ActivatorStub

T0 = datetime.datetime(2026, 3, 1, 12, tzinfo=datetime.UTC)
TARGET = failure.Target("shop", "thumbnail", "uploads", "bucket")
FUNCTION_ERROR = b'{"errorType":"ValueError","errorMessage":"bad image"}'


def deliverer(
    activator: ActivatorStub, stop: threading.Event | None = None
) -> delivery.AsyncDeliverer:
    invoker = invoke.Invoker(activator.url)
    return delivery.AsyncDeliverer(
        invoker,
        onfailure.Destinations(invoker),
        stop=stop or threading.Event(),
        clock=lambda: T0,
        retry_delays=(0.01, 0.01),
        throttle_backoff=(0.01, 0.02),
    )


def spec(**fields: object) -> trigger_api.AsyncDelivery:
    return trigger_api.AsyncDelivery.model_validate(fields)


def test_an_event_that_succeeds_is_delivered_once(activator: ActivatorStub) -> None:
    result = deliverer(activator).deliver(TARGET, spec(), b"{}", request_id="e-1", first_seen=T0)
    assert (result.handled, result.delivered, result.attempts) == (True, True, 1)
    assert len(activator.calls) == 1


def test_throttling_is_retried_without_using_the_retries(activator: ActivatorStub) -> None:
    for code in (503, 429, 502):
        activator.answer(code)
    activator.answer(500, FUNCTION_ERROR, Kfn_Function_Error="Unhandled")
    result = deliverer(activator).deliver(
        TARGET, spec(maxRetries=1), b"{}", request_id="e-1", first_seen=T0
    )
    assert result.delivered
    assert len(activator.calls) == 5


def test_an_event_out_of_retries_goes_to_its_function_destination_with_its_story(
    activator: ActivatorStub,
) -> None:
    for _ in range(3):
        activator.answer(500, FUNCTION_ERROR, Kfn_Function_Error="Unhandled")
    result = deliverer(activator).deliver(
        TARGET,
        spec(onFailure={"function": {"name": "dead-letters"}}),
        b'{"Records": []}',
        request_id="e-7",
        first_seen=T0,
    )
    assert (result.handled, result.delivered, result.condition) == (True, False, "RetriesExhausted")
    assert [c.path.split("/")[-2] for c in activator.calls] == ["thumbnail"] * 3 + ["dead-letters"]
    record = json.loads(activator.calls[-1].body)
    assert record["requestContext"] == {
        "requestId": "e-7",
        "functionArn": "kfn:shop:function:thumbnail",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    }
    assert record["requestPayload"] == {"Records": []}
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["trigger"] == {"namespace": "shop", "name": "uploads", "kind": "bucket"}


def test_a_refused_event_is_not_retried(activator: ActivatorStub) -> None:
    activator.answer(400, b'{"message":"the event is not JSON"}')
    result = deliverer(activator).deliver(TARGET, spec(), b"{}", request_id="e", first_seen=T0)
    assert (result.handled, result.delivered, result.condition) == (True, False, "Rejected")
    assert len(activator.calls) == 1


def test_a_function_that_does_not_exist_yet_holds_the_event_and_says_so(
    activator: ActivatorStub,
) -> None:
    activator.answer(404, b'{"errorType":"ResourceNotFoundException","errorMessage":"no function"}')
    activator.answer(404, b'{"errorType":"ResourceNotFoundException","errorMessage":"no function"}')
    statuses = status.StatusWriter(clock=lambda: T0)
    statuses.register(("shop", "uploads"), 1, [])
    seen: list[str] = []
    held = deliverer(activator)
    held.statuses = statuses

    def reasons(outcome: retry.Outcome) -> None:
        seen.append(status.verdict_of(outcome).reason)

    result = held.deliver(
        TARGET, spec(maxRetries=0), b"{}", request_id="e", first_seen=T0, on_attempt=reasons
    )
    assert (result.handled, result.delivered, len(activator.calls)) == (True, True, 3)
    assert seen == ["FunctionNotFound", "FunctionNotFound", "Delivering"]


def test_an_unreachable_destination_is_retried_until_it_takes_the_record(
    activator: ActivatorStub,
) -> None:
    activator.answer(400, b"{}")
    activator.answer(503)
    activator.answer(503)
    result = deliverer(activator).deliver(
        TARGET,
        spec(onFailure={"function": {"name": "dead-letters"}}),
        b"{}",
        request_id="e",
        first_seen=T0,
    )
    assert result.handled
    assert [c.path.split("/")[-2] for c in activator.calls] == ["thumbnail"] + ["dead-letters"] * 3


def test_a_worker_stopping_mid_retry_leaves_the_event_unacknowledged(
    activator: ActivatorStub,
) -> None:
    stop = threading.Event()
    stop.set()
    activator.answer(500, FUNCTION_ERROR, Kfn_Function_Error="Unhandled")
    result = deliverer(activator, stop).deliver(
        TARGET, spec(), b"{}", request_id="e", first_seen=T0
    )
    assert (result.handled, result.delivered) == (False, False)
    assert result.progress == delivery.Progress(
        failures=1, throttles=0, not_before=T0 + datetime.timedelta(seconds=0.01)
    )


def test_a_resumed_event_keeps_the_attempts_another_worker_used(activator: ActivatorStub) -> None:
    activator.answer(500, FUNCTION_ERROR, Kfn_Function_Error="Unhandled")
    result = deliverer(activator).deliver(
        TARGET,
        spec(onFailure={"function": {"name": "dead-letters"}}),
        b"{}",
        request_id="e-9",
        first_seen=T0,
        progress=delivery.Progress(failures=2, throttles=1),
    )
    assert (result.condition, result.attempts) == ("RetriesExhausted", 4)
    assert [c.path.split("/")[-2] for c in activator.calls] == ["thumbnail", "dead-letters"]
    record = json.loads(activator.calls[-1].body)
    assert record["requestContext"]["approximateInvokeCount"] == 4


def test_a_resumed_event_waits_until_its_next_attempt_is_due(activator: ActivatorStub) -> None:
    due = delivery.Progress(failures=1, not_before=T0 + datetime.timedelta(seconds=0.3))
    started = time.monotonic()
    result = deliverer(activator).deliver(
        TARGET, spec(), b"{}", request_id="e", first_seen=T0, progress=due
    )
    assert result.delivered
    assert time.monotonic() - started >= 0.3
    stop = threading.Event()
    stop.set()
    stopped = deliverer(activator, stop).deliver(
        TARGET, spec(), b"{}", request_id="e", first_seen=T0, progress=due
    )
    assert (stopped.handled, stopped.progress) == (False, due)
    assert len(activator.calls) == 1


def test_the_events_of_a_deleted_trigger_are_not_retried_for_hours(
    activator: ActivatorStub,
) -> None:
    activator.answer(500, FUNCTION_ERROR, Kfn_Function_Error="Unhandled")
    result = deliverer(activator).deliver(
        TARGET, spec(), b"{}", request_id="e", first_seen=T0, alive=lambda: False
    )
    assert (result.handled, result.delivered, result.condition) == (True, False, "TriggerDeleted")
    assert len(activator.calls) == 1


def test_a_destination_that_never_answers_is_given_up_once_the_trigger_is_gone(
    activator: ActivatorStub,
) -> None:
    answers = iter([True, True, False])
    activator.answer(400, b"{}")
    for _ in range(5):
        activator.answer(404, b"{}")
    result = deliverer(activator).deliver(
        TARGET,
        spec(onFailure={"function": {"name": "gone"}}),
        b"{}",
        request_id="e",
        first_seen=T0,
        alive=lambda: next(answers),
    )
    assert result.handled
    assert [c.path.split("/")[-2] for c in activator.calls] == ["thumbnail"] + ["gone"] * 3
