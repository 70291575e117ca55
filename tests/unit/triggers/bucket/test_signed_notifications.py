"""Notifications signed for their path, through the real receiver on 127.0.0.1: a namespace's
token, a Trigger's, or the cluster's, as a bearer token or a URL's password."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from typing import Any

import prometheus_client
import pytest

from kfn.authn import webhooks
from kfn.triggers.bucket import handoff, receiver, worker
from tests.unit.triggers.bucket.helpers import Recorder, make_worker, notification, trigger

KEY = b"the release's events key"
CLUSTER = "the cluster's token"
SIGNING = receiver.Signing(KEY, CLUSTER)
MEDIA = webhooks.token(KEY, "media")
THUMBS = webhooks.token(KEY, "media", "thumbs")


def _basic(token: str) -> str:
    """What Go's net/http sends for http://kfn:<token>@host/... (versitygw's webhook)."""
    return "Basic " + base64.b64encode(f"kfn:{token}".encode()).decode()


class Running:
    def __init__(self, bucket: worker.Worker, server: receiver.Server) -> None:
        self.worker = bucket
        self.port = server.server_address[1]

    def post(
        self, path: str, authorization: str | None, body: Any = None
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Content-Type": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        try:
            data = json.dumps(notification() if body is None else body).encode()
            connection.request("POST", path, data, headers)
            response = connection.getresponse()
            answer = json.loads(response.read() or b"{}")
            return response.status, dict(response.getheaders()), answer
        finally:
            connection.close()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def running(recorder: Recorder) -> Iterator[Running]:
    bucket = make_worker(recorder, signing=SIGNING)
    server, _ = receiver.serve(("127.0.0.1", 0), bucket, signing=SIGNING)
    bucket.routes.replace([trigger("thumbs"), trigger("audit")])
    try:
        yield Running(bucket, server)
    finally:
        recorder.gate.set()
        server.shutdown()
        server.server_close()
        bucket.dispatcher.pool.shutdown(wait=True)


def _refused(reason: str) -> float:
    value = prometheus_client.REGISTRY.get_sample_value(
        "kfn_bucket_notifications_refused_total", {"reason": reason}
    )
    return value or 0.0


def test_an_unsigned_notification_is_refused_401_unrouted_and_counted(
    running: Running, recorder: Recorder
) -> None:
    before = _refused("unsigned")
    status, headers, body = running.post("/events/media", None)
    assert status == 401
    assert headers["Content-Type"] == "application/json"
    assert headers["WWW-Authenticate"] == 'Bearer realm="kfn-bucket"'
    assert "not signed" in body["message"]
    assert "Secret kfn-bucket-events in namespace media" in body["message"]
    assert _refused("unsigned") == before + 1
    assert recorder.delivered == []


def test_a_notification_signed_for_another_namespace_is_refused_403_and_counted(
    running: Running, recorder: Recorder
) -> None:
    before = _refused("wrong")
    other = webhooks.token(KEY, "tenant-b")
    status, _, body = running.post("/events/media", f"Bearer {other}")
    assert status == 403
    assert "not good for /events/media" in body["message"]
    assert _refused("wrong") == before + 1
    assert recorder.delivered == []


def test_a_body_that_is_no_notification_is_refused_for_its_signature_first(
    running: Running,
) -> None:
    assert running.post("/events/media", None, body={"Records": 5})[0] == 401


@pytest.mark.parametrize(
    ("path", "authorization"),
    [
        ("/events/media", f"Bearer {MEDIA}"),
        ("/events/media", _basic(MEDIA)),
        ("/events/media/thumbs", _basic(THUMBS)),
        ("/events/media/thumbs", f"Bearer {MEDIA}"),
        ("/events", f"Bearer {CLUSTER}"),
        ("/events/media", _basic(CLUSTER)),
    ],
)
def test_a_notification_signed_for_its_path_is_delivered(
    running: Running, recorder: Recorder, path: str, authorization: str
) -> None:
    status, _, body = running.post(path, authorization)
    assert status == 200, body
    assert recorder.delivered


@pytest.mark.parametrize(
    ("path", "authorization"),
    [
        ("/events/media/audit", f"Bearer {THUMBS}"),
        ("/events/media", f"Bearer {THUMBS}"),
        ("/events", f"Bearer {MEDIA}"),
        ("/", _basic(MEDIA)),
    ],
)
def test_a_token_opens_its_own_path_only(
    running: Running, recorder: Recorder, path: str, authorization: str
) -> None:
    assert running.post(path, authorization)[0] == 403
    assert recorder.delivered == []


def test_a_stores_test_event_is_answered_when_signed(running: Running) -> None:
    test_event = {"Service": "S3", "Event": "s3:TestEvent"}
    assert running.post("/events/media", _basic(MEDIA), body=test_event)[0] == 200
    assert running.post("/events/media", None, body=test_event)[0] == 401


def test_hand_offs_keep_their_own_signature_and_health_needs_none(running: Running) -> None:
    status, _, body = running.post(handoff.PATH, None, body={})
    assert (status, body["message"]) == (401, "not signed with the hand-off key")
    connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=5)
    connection.request("GET", "/healthz")
    assert connection.getresponse().status == 200
    connection.close()


def test_without_signing_any_notification_is_taken(recorder: Recorder) -> None:
    bucket = make_worker(recorder)
    server, _ = receiver.serve(("127.0.0.1", 0), bucket)
    bucket.routes.replace([trigger("thumbs")])
    try:
        assert Running(bucket, server).post("/events/media", None)[0] == 200
    finally:
        server.shutdown()
        server.server_close()
        bucket.dispatcher.pool.shutdown(wait=True)
