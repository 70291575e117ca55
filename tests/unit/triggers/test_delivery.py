"""Delivery from trigger workers to functions: the invoke client, Lambda's asynchronous
retries, failure records and client settings from credentials Secrets.

The activator is a real HTTP server on 127.0.0.1 (the ``activator`` fixture)."""

from __future__ import annotations

import datetime
import json
import os
import socket
import threading
import time

import pytest

from kfn.api import trigger as trigger_api
from kfn.triggers import delivery, status
from tests.unit.triggers.conftest import ActivatorStub

T0 = datetime.datetime(2026, 3, 1, 12, tzinfo=datetime.UTC)
TARGET = delivery.Target("shop", "thumbnail", "uploads", "bucket")
FUNCTION_ERROR = b'{"errorType":"ValueError","errorMessage":"bad image"}'


def deliverer(
    activator: ActivatorStub, stop: threading.Event | None = None
) -> delivery.AsyncDeliverer:
    invoker = delivery.Invoker(activator.url)
    return delivery.AsyncDeliverer(
        invoker,
        delivery.Destinations(invoker),
        stop=stop or threading.Event(),
        clock=lambda: T0,
        retry_delays=(0.01, 0.01),
        throttle_backoff=(0.01, 0.02),
    )


def spec(**fields: object) -> trigger_api.AsyncDelivery:
    return trigger_api.AsyncDelivery.model_validate(fields)


# --- the invoke client -----------------------------------------------------------------------


def test_a_synchronous_invocation_returns_the_functions_answer(activator: ActivatorStub) -> None:
    activator.answer(200, b'{"width": 64}')
    invoker = delivery.Invoker(activator.url)
    outcome = invoker.invoke("shop", "thumbnail", b'{"a":1}', request_id="r-1")
    assert (outcome.status, outcome.body, outcome.kind) == (200, b'{"width": 64}', "success")
    (call,) = activator.calls
    assert call.path == "/_kfn/functions/shop/thumbnail/invoke"
    assert call.headers["Kfn-Request-Id"] == "r-1"
    assert call.headers["Kfn-Invocation-Type"] == "RequestResponse"


def test_a_function_error_is_told_apart_from_an_unavailable_activator(
    activator: ActivatorStub,
) -> None:
    activator.answer(500, FUNCTION_ERROR, Kfn_Function_Error="Unhandled")
    invoker = delivery.Invoker(activator.url)
    outcome = invoker.invoke("shop", "thumbnail", b"{}", request_id="r")
    assert outcome.kind == "function-error"
    assert outcome.describe() == "status 500: ValueError: bad image"
    closed = delivery.Invoker("http://127.0.0.1:9")
    unreachable = closed.invoke("shop", "thumbnail", b"{}", request_id="r", timeout=2)
    assert (unreachable.status, unreachable.kind) == (0, "throttled")
    assert unreachable.describe().startswith("the activator could not be reached")


def test_invocations_from_one_thread_share_a_keep_alive_connection(
    activator: ActivatorStub,
) -> None:
    invoker = delivery.Invoker(activator.url)
    for n in range(3):
        assert invoker.invoke("shop", "thumbnail", b"{}", request_id=str(n)).status == 200
    connection = invoker._local.connection
    assert connection is not None
    assert connection.sock is not None


# --- asynchronous delivery -------------------------------------------------------------------


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

    def reasons(outcome: delivery.Outcome) -> None:
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


# --- client settings from Secrets ------------------------------------------------------------


def test_kafka_settings_follow_the_credentials_secret() -> None:
    servers = ["kafka-0:9092", "kafka-1:9092"]
    assert delivery.kafka_config(servers, None) == {
        "bootstrap.servers": "kafka-0:9092,kafka-1:9092"
    }
    sasl = delivery.kafka_config(servers, {"username": b"fn", "password": b"s3cret"})
    assert sasl["security.protocol"] == "SASL_PLAINTEXT"
    assert sasl["sasl.mechanism"] == "SCRAM-SHA-512"
    tls = delivery.kafka_config(servers, {"ca.crt": b"PEM"})
    assert (tls["security.protocol"], tls["ssl.ca.pem"]) == ("SSL", "PEM")
    with pytest.raises(delivery.CredentialsError, match="no password"):
        delivery.kafka_config(servers, {"username": b"fn"})


def test_a_nats_creds_file_is_written_private() -> None:
    options = delivery.nats_options({"creds": b"-----BEGIN NATS USER JWT-----"})
    path = options["user_credentials"]
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert delivery.nats_options({"token": b"t"}) == {"token": "t"}
    with pytest.raises(delivery.CredentialsError, match="none of token"):
        delivery.nats_options({"other": b"x"})


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


# --- the HTTP/1.1 client under the invoker ---------------------------------------------------


class RawServer:
    """A socket server on 127.0.0.1 answering each request with the next scripted bytes;
    ``close_after`` closes the connection after that many answers."""

    def __init__(self, answers: list[bytes], close_after: int = 0) -> None:
        self.answers = answers
        self.close_after = close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn, conn.makefile("rb") as reader:
                served = 0
                while self.answers:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = reader.readline()
                        if not line:
                            break
                        head += line
                    if not head:
                        break
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    self.requests.append(head + reader.read(length))
                    conn.sendall(self.answers.pop(0))
                    served += 1
                    if served == self.close_after:
                        break

    def close(self) -> None:
        self.listener.close()


def test_chunked_and_interim_answers_are_read_whole() -> None:
    server = RawServer(
        [
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            b"HTTP/1.1 500 Internal Server Error\r\nKfn-Function-Error: Unhandled\r\n"
            b"Content-Length: 2\r\n\r\n{}",
        ]
    )
    invoker = delivery.Invoker(server.url)
    first = invoker.invoke("shop", "fn", b"{}", request_id="a")
    second = invoker.invoke("shop", "fn", b"{}", request_id="b")
    server.close()
    assert (first.status, first.body) == (200, b"hello world")
    assert (second.status, second.function_error) == (500, True)
    assert server.connections == 1


def test_a_connection_the_activator_closed_while_idle_is_replaced_once() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    server = RawServer([answer, answer], close_after=1)
    invoker = delivery.Invoker(server.url)
    assert invoker.invoke("shop", "fn", b"{}", request_id="a").body == b"ok"
    time.sleep(0.1)  # the server has closed the first connection by now
    assert invoker.invoke("shop", "fn", b"{}", request_id="b").body == b"ok"
    server.close()
    assert server.connections == 2
    assert b"Kfn-Request-Id: b" in server.requests[1]


def test_a_large_body_is_sent_whole() -> None:
    server = RawServer([b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"])
    invoker = delivery.Invoker(server.url)
    body = b"x" * (8 * 1024 * 1024)
    outcome = invoker.invoke("shop", "fn", body, request_id="big", invocation_type="Event")
    server.close()
    assert outcome.status == 202
    assert server.requests[0].endswith(body)
    assert invoker._local.connection is None  # "Connection: close" is honoured
