"""Push mode through the real HTTP receiver on 127.0.0.1: routing, acknowledgement, shutdown."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kfn.triggers.bucket import receiver, worker
from tests.unit.triggers.bucket.helpers import Recorder, make_worker, notification, trigger


class Running:
    def __init__(self, bucket: worker.Worker, server: receiver.Server) -> None:
        self.worker = bucket
        self.server = server
        self.port = server.server_address[1]

    def post(self, body: Any, path: str = "/events", timeout: float = 10) -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode()
            connection.request("POST", path, data, {"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            connection.close()

    def healthz(self) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def running(recorder: Recorder) -> Iterator[Running]:
    bucket = make_worker(recorder)
    server, _ = receiver.serve(("127.0.0.1", 0), bucket)
    try:
        yield Running(bucket, server)
    finally:
        recorder.gate.set()
        server.shutdown()
        server.server_close()
        bucket.dispatcher.pool.shutdown(wait=True)


def test_a_replica_is_not_ready_and_refuses_notifications_before_it_knows_the_triggers(
    running: Running,
) -> None:
    assert running.healthz() == 503
    assert running.post(notification())[0] == 503
    running.worker.routes.replace([trigger()])
    assert running.healthz() == 200


def test_a_notification_is_delivered_to_every_matching_push_trigger(
    running: Running, recorder: Recorder
) -> None:
    running.worker.routes.replace(
        [
            trigger("thumbs"),
            trigger("audit", events=["s3:ObjectCreated:Put", "s3:ObjectRemoved:*"]),
            trigger("pngs", filter={"suffix": ".png"}),
            trigger("other", bucket="other-bucket"),
            trigger("polled", mode="Poll"),
        ]
    )
    status, body = running.post(notification())
    assert status == 200, body
    assert sorted(d.target.trigger for d in recorder.delivered) == ["audit", "thumbs"]
    event = recorder.delivered[0].payload
    [record] = event["Records"]
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["object"]["key"] == "in/a.jpg"
    assert record["s3"]["object"]["eTag"] == "e1"
    assert record["s3"]["configurationId"] == recorder.delivered[0].target.trigger


def test_the_per_trigger_url_delivers_only_to_that_trigger(
    running: Running, recorder: Recorder
) -> None:
    running.worker.routes.replace([trigger("thumbs"), trigger("audit")])
    assert running.post(notification(), "/events/media/audit")[0] == 200
    assert [d.target.trigger for d in recorder.delivered] == ["audit"]
    assert running.post(notification(), "/events/media/missing")[0] == 404


def test_the_namespace_url_delivers_only_to_that_namespaces_triggers(
    running: Running, recorder: Recorder
) -> None:
    other = trigger("elsewhere")
    other["metadata"]["namespace"] = "tenant-b"
    running.worker.routes.replace([trigger("thumbs"), other])
    assert running.post(notification(), "/events/media")[0] == 200
    assert [d.target.namespace for d in recorder.delivered] == ["media"]
    assert running.post(notification(), "/events/tenant-c")[0] == 200
    assert len(recorder.delivered) == 1


def test_test_events_are_answered_and_bad_bodies_refused(running: Running) -> None:
    running.worker.routes.replace([trigger()])
    assert running.post({"Service": "S3", "Event": "s3:TestEvent"})[0] == 200
    assert running.post({"Records": 5})[0] == 400
    assert running.post(notification(), "/elsewhere")[0] == 404


def test_non_matching_events_are_acknowledged_without_delivery(
    running: Running, recorder: Recorder
) -> None:
    running.worker.routes.replace([trigger(filter={"prefix": "out/"})])
    assert running.post(notification())[0] == 200
    assert running.post(notification(name="s3:ObjectRemoved:Delete"))[0] == 200
    assert recorder.delivered == []


def test_the_answer_waits_for_the_delivery(running: Running, recorder: Recorder) -> None:
    running.worker.routes.replace([trigger()])
    recorder.gate.clear()
    answers: list[int] = []
    sender = threading.Thread(target=lambda: answers.append(running.post(notification())[0]))
    sender.start()
    sender.join(0.5)
    assert answers == [], "answered before the function got the event"
    recorder.gate.set()
    sender.join(10)
    assert answers == [200]
    assert len(recorder.delivered) == 1


def test_a_sender_that_gives_up_does_not_cancel_the_delivery(
    running: Running, recorder: Recorder
) -> None:
    running.worker.routes.replace([trigger()])
    recorder.gate.clear()
    with socket.create_connection(("127.0.0.1", running.port)) as sock:
        body = json.dumps(notification()).encode()
        sock.sendall(
            b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        time.sleep(0.2)
    recorder.gate.set()
    assert running.server.wait_idle(10)
    assert len(recorder.delivered) == 1


def test_after_sigterm_the_replica_is_unready_but_still_handles_notifications(
    running: Running, recorder: Recorder
) -> None:
    running.worker.routes.replace([trigger()])
    running.worker.terminating.set()
    assert running.healthz() == 503
    assert running.post(notification())[0] == 200
    assert len(recorder.delivered) == 1
    running.worker.abort.set()
    assert running.post(notification(key="in/b.jpg"))[0] == 503
    assert len(recorder.delivered) == 1


def test_an_event_not_ended_when_the_worker_stops_is_not_acknowledged(running: Running) -> None:
    running.worker.routes.replace([trigger()])
    running.worker.dispatcher.deliver_fn = Recorder(handle=lambda _: False)
    assert running.post(notification())[0] == 503


# --- stopping to receive ----------------------------------------------------------------------


def test_a_replica_that_stopped_receiving_refuses_connections_instead_of_leaving_them_unread(
    running: Running,
) -> None:
    running.server.stop_receiving()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", running.port), timeout=2).close()


def request(body: Any) -> bytes:
    data = json.dumps(body).encode()
    head = f"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


def answer(sock: socket.socket) -> int:
    """The status of the next whole answer on a raw connection."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    return response.status


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition()


def test_stopping_to_receive_answers_a_sender_that_connected_but_has_not_sent_yet(
    running: Running, recorder: Recorder
) -> None:
    running.worker.routes.replace([trigger()])
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
        until(lambda: len(running.server.handlers) == 1)
        assert running.server.stop_receiving() == 0
        sock.sendall(request(notification()))
        assert answer(sock) == 200
    assert len(recorder.delivered) == 1


def test_stopping_to_receive_closes_kept_alive_connections_waiting_for_a_next_request(
    running: Running,
) -> None:
    running.worker.routes.replace([trigger()])
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
        sock.sendall(request(notification()))
        assert answer(sock) == 200
        until(lambda: all(handler.waiting for handler in running.server.handlers))
        assert running.server.stop_receiving() == 1
        assert sock.recv(100) == b""


def test_paths_route_to_events_health_or_nothing() -> None:
    assert receiver.route("/events") == ("events", None)
    assert receiver.route("/events/media/thumbs") == ("events", ("media", "thumbs"))
    assert receiver.route("/events/media") == ("events", ("media", ""))
    assert receiver.route("/healthz") == ("healthz", None)
    assert receiver.route("/events/a/b/c") is None
