"""Lambda's asynchronous delivery from trigger workers: retries, failure records sent to
onFailure destinations (with a Secret only where its owner allows), and events handed on by a
stopping worker.

The activator is a real HTTP server on 127.0.0.1 (the ``activator`` fixture)."""

from __future__ import annotations

import datetime
import json
import threading
import time
from typing import Any

import pytest

from kfn import kube, retry
from kfn.api import endpoints
from kfn.api import trigger as trigger_api
from kfn.triggers import delivery, failure, invoke, onfailure, status
from tests.unit.triggers.conftest import NATS_INFO, ActivatorStub, Listener

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


# --- a destination's Secret follows its owner ---------------------------------------------------


class Delivering(status.StatusWriter):
    """Every Delivering verdict set, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.verdicts: list[status.Verdict] = []

    def set(self, key: Any, *, delivering: Any = None, **extra: Any) -> None:
        assert key == ("shop", "uploads")
        del extra
        if delivering is not None:
            self.verdicts.append(delivering)


def aimed_at(listener: Listener, allowed: str, monkeypatch: pytest.MonkeyPatch) -> Delivering:
    """Sends a failure record once to a NATS destination on ``listener`` whose Secret allows
    ``allowed``; the Delivering verdicts it left."""
    stored = kube.Secret({"token": b"shop-token-4711"}, {endpoints.ANNOTATION: allowed})
    monkeypatch.setattr(kube, "get_secret", lambda namespace, name: stored)
    listener.greeting = NATS_INFO
    destination = trigger_api.Destination.model_validate(
        {"nats": {"servers": [f"nats://{listener.address}"], "subject": "failed",
                  "credentialsSecretRef": {"name": "nats-creds"}}}
    )  # fmt: skip
    stop = threading.Event()
    stop.set()  # one try, then the worker stops
    invoker = invoke.Invoker("http://127.0.0.1:9")
    statuses = Delivering()
    sent = onfailure.send_until_stopped(
        onfailure.Destinations(invoker), TARGET, destination, {"failed": True},
        stop=stop, statuses=statuses,
    )  # fmt: skip
    assert sent is False
    return statuses


def test_a_failure_record_is_not_sent_with_a_secret_its_owner_did_not_allow_there(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    statuses = aimed_at(listener, "nats://nats.shop.svc:4222", monkeypatch)
    assert listener.seen() == (0, b"")
    [verdict] = statuses.verdicts
    assert (verdict.ok, verdict.reason) == (False, "SecretNotAllowed")
    assert verdict.message == (
        f"the onFailure destination's Secret shop/nats-creds does not allow "
        f"nats://{listener.address}; add it to the annotation kfn.dev/allowed-endpoints if the "
        "Secret's owner agrees (it allows nats://nats.shop.svc:4222); failure records wait "
        "until it is allowed"
    )


def test_a_failure_record_goes_with_the_secret_where_its_owner_allows(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control of the test above: the listener hears the token when it is allowed."""
    statuses = aimed_at(listener, f"nats://{listener.address}", monkeypatch)
    assert b"shop-token-4711" in listener.seen()[1]
    assert statuses.verdicts == []


def test_a_kafka_destination_is_not_contacted_with_a_secret_its_owner_did_not_allow(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = kube.Secret({"username": b"fn", "password": b"pw-4711"}, {})
    monkeypatch.setattr(kube, "get_secret", lambda namespace, name: stored)
    destination = trigger_api.KafkaDestination.model_validate(
        {"bootstrapServers": [listener.address], "topic": "failed",
         "credentialsSecretRef": {"name": "kafka-creds"}}
    )  # fmt: skip
    destinations = onfailure.Destinations(invoke.Invoker("http://127.0.0.1:9"))
    with pytest.raises(onfailure.DestinationRefusedError, match="it has no annotation"):
        destinations.send("shop", trigger_api.Destination(kafka=destination), {"failed": True})
    assert listener.seen() == (0, b"")


def test_a_nats_destination_that_turns_the_credentials_down_fails_the_send_at_once(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One try per send: the server's refusal ends it, and send_until_stopped tries again
    later, instead of the client reconnecting forever inside one send."""
    stored = kube.Secret({"token": b"wrong"}, {endpoints.ANNOTATION: listener.address})
    monkeypatch.setattr(kube, "get_secret", lambda namespace, name: stored)
    listener.greeting = NATS_INFO
    destination = trigger_api.Destination.model_validate(
        {"nats": {"servers": [f"nats://{listener.address}"], "subject": "failed",
                  "credentialsSecretRef": {"name": "nats-creds"}}}
    )  # fmt: skip
    destinations = onfailure.Destinations(invoke.Invoker("http://127.0.0.1:9"))
    failed: list[BaseException] = []

    def send() -> None:
        try:
            destinations.send("shop", destination, {"failed": True})
        except onfailure.DestinationError as exc:
            failed.append(exc)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sender.join(10)
    assert not sender.is_alive(), "the send is still reconnecting"
    [error] = failed
    assert "Authorization Violation" in str(error)
    assert listener.seen()[0] == 1
