"""A stopping replica hands its held pushed events to another one: the body, its signature,
and two real workers with real receivers on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import datetime
import http.client
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kfn.clock import utcnow
from kfn.triggers import delivery
from kfn.triggers.bucket import handoff, holding, receiver, worker
from tests.unit.triggers.bucket.helpers import Recorder, make_worker, notification, trigger

T0 = datetime.datetime(2026, 3, 1, 12, tzinfo=datetime.UTC)
KEY = b"a key both replicas share"
STOPPED_AT = delivery.Progress(failures=1, throttles=2, not_before=T0)


def item(**changes: Any) -> handoff.Handoff:
    fields: dict[str, Any] = {
        "namespace": "media",
        "trigger": "thumbs",
        "uid": "u-1",
        "request_id": "r-1",
        "first_seen": T0,
        "payload": b'{"Records": [{"eventName": "ObjectCreated:Put"}]}',
        "progress": STOPPED_AT,
    }
    return handoff.Handoff(**(fields | changes))


# --- the body --------------------------------------------------------------------------------


def test_a_handoff_keeps_the_event_its_request_id_first_sight_and_progress() -> None:
    sealed = handoff.decode(handoff.encode(item(), expires=T0, nonce="n-1"))
    back = sealed.item
    assert back == dataclasses.replace(item(), payload=back.payload)
    assert json.loads(back.payload) == json.loads(item().payload)
    assert (sealed.expires, sealed.nonce) == (T0, "n-1")


# --- good once, for a minute -----------------------------------------------------------------


def sealed(expires: datetime.datetime | None, nonce: str | None = "n-1") -> handoff.Sealed:
    return handoff.Sealed(item(), expires, nonce if expires is not None else None)


def test_a_handoff_is_taken_once_within_its_minute() -> None:
    replays = handoff.Replays(started=T0)
    now = T0 + datetime.timedelta(hours=1)
    fresh = sealed(now + handoff.VALIDITY)
    assert replays.admit(fresh, now) is None
    assert replays.admit(fresh, now + datetime.timedelta(seconds=5)) == (
        "the hand-off was taken before"
    )
    assert replays.admit(sealed(now + handoff.VALIDITY, "n-2"), now) is None


@pytest.mark.parametrize(
    ("expires_in", "refusal"),
    [
        (datetime.timedelta(seconds=0), "expired"),
        (datetime.timedelta(seconds=-30), "expired"),
        (handoff.VALIDITY + handoff.SKEW + datetime.timedelta(seconds=1), "too far ahead"),
    ],
)
def test_a_handoff_past_its_expiry_or_dated_too_far_ahead_is_refused(
    expires_in: datetime.timedelta, refusal: str
) -> None:
    now = T0 + datetime.timedelta(hours=1)
    verdict = handoff.Replays(started=T0).admit(sealed(now + expires_in), now)
    assert verdict is not None
    assert refusal in verdict


def test_the_nonces_are_forgotten_once_expired_and_bounded_in_number() -> None:
    replays = handoff.Replays(started=T0, limit=3)
    for n in range(5):
        assert replays.admit(sealed(T0 + handoff.VALIDITY, f"n-{n}"), T0) is None
    assert len(replays) == 3
    later = T0 + handoff.VALIDITY + datetime.timedelta(seconds=1)
    assert replays.admit(sealed(later + handoff.VALIDITY, "n-9"), later) is None
    assert len(replays) == 1


def test_a_body_of_an_earlier_kfn_is_taken_only_while_the_update_to_this_one_runs() -> None:
    replays = handoff.Replays(started=T0)
    legacy = sealed(None)
    assert replays.admit(legacy, T0 + handoff.LEGACY_GRACE) is None
    refused = replays.admit(legacy, T0 + handoff.LEGACY_GRACE + datetime.timedelta(seconds=1))
    assert refused is not None
    assert "without expiry" in refused


def test_a_handoff_without_its_nonce_or_with_an_odd_expiry_is_malformed() -> None:
    body = json.loads(handoff.encode(item(), expires=T0, nonce="n-1"))
    del body["nonce"]
    with pytest.raises(handoff.HandoffError, match="come together"):
        handoff.decode(json.dumps(body).encode())
    body["nonce"], body["expires"] = "n", "soon"
    with pytest.raises(handoff.HandoffError, match="expires is not a time"):
        handoff.decode(json.dumps(body).encode())


def test_only_a_body_signed_with_the_shared_key_is_trusted() -> None:
    body = handoff.encode(item())
    assert handoff.verify(KEY, body, handoff.sign(KEY, body))
    assert not handoff.verify(KEY, body, handoff.sign(b"another key", body))
    assert not handoff.verify(KEY, body + b" ", handoff.sign(KEY, body))
    assert not handoff.verify(KEY, body, None)
    assert not handoff.verify(b"", body, handoff.sign(b"", body))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "not a hand-off"),
        (b'{"version": 2}', "unknown hand-off version 2"),
        (json.dumps({**json.loads(handoff.encode(item())), "firstSeen": "noon"}).encode(),
         "firstSeen is not a time"),
        (json.dumps({**json.loads(handoff.encode(item())), "firstSeen": "2026-03-01T12:00:00"})
         .encode(), "firstSeen has no time zone"),
    ],
)  # fmt: skip
def test_a_malformed_handoff_is_refused_naming_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(handoff.HandoffError, match=message):
        handoff.decode(body)


# --- between two replicas --------------------------------------------------------------------


def stopped() -> Recorder:
    """A deliverer whose worker stops before the event ended, ``STOPPED_AT`` in its retries."""
    return Recorder(handle=lambda _: False, stopped_at=STOPPED_AT)


class Replica:
    def __init__(self, deliver: Recorder, *, peer: str = "", key: bytes = KEY) -> None:
        self.deliverer = deliver
        self.worker = make_worker(deliver, peer_url=peer or None, handoff_key=key)
        self.worker.routes.replace([trigger()])
        self.server, _ = receiver.serve(("127.0.0.1", 0), self.worker)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def post(self, body: Any) -> int:
        connection = http.client.HTTPConnection(*self.server.server_address, timeout=15)
        try:
            connection.request("POST", "/events", json.dumps(body).encode())
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def close(self) -> None:
        self.deliverer.gate.set()
        self.server.shutdown()
        self.server.server_close()
        self.worker.dispatcher.pool.shutdown(wait=True)


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    made: list[Replica] = []
    yield made
    for replica in made:
        replica.close()


@pytest.fixture(autouse=True)
def short_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(holding, "HANDOFF_PATIENCE", 1.0)


def test_an_event_held_by_a_stopping_replica_is_finished_by_another_from_where_it_stood(
    replicas: list[Replica],
) -> None:
    staying = Replica(Recorder())
    stopping = Replica(stopped(), peer=staying.url)
    replicas += [staying, stopping]
    assert stopping.post(notification()) == 200
    assert staying.deliverer.done.wait(10)
    (first,) = stopping.deliverer.calls
    (resumed,) = staying.deliverer.calls
    assert (resumed.request_id, resumed.first_seen) == (first.request_id, first.first_seen)
    assert resumed.progress == STOPPED_AT
    assert resumed.payload == first.payload
    assert stopping.worker.held.wait_settled(5)
    assert staying.worker.held.wait_settled(5)


def test_a_replica_without_the_key_gets_nothing_and_the_stopping_one_says_it_lost_the_event(
    replicas: list[Replica], caplog: pytest.LogCaptureFixture
) -> None:
    other = Replica(Recorder(), key=b"not the same key")
    stopping = Replica(stopped(), peer=other.url)
    replicas += [other, stopping]
    assert stopping.post(notification()) == 503
    assert other.deliverer.calls == []
    assert "no other replica took event" in caplog.text


def test_with_no_replica_left_the_handoff_is_retried_then_reported_lost(
    replicas: list[Replica], caplog: pytest.LogCaptureFixture
) -> None:
    stopping = Replica(stopped(), peer="http://127.0.0.1:9")
    replicas.append(stopping)
    assert stopping.post(notification()) == 503
    assert "(last answer none)" in caplog.text


def test_a_handoff_for_a_trigger_deleted_or_replaced_meanwhile_is_dropped(
    replicas: list[Replica],
) -> None:
    staying = Replica(Recorder())
    stopping = Replica(stopped(), peer=staying.url)
    replicas += [staying, stopping]
    replaced = trigger()
    replaced["metadata"]["uid"] = "a-new-uid"
    staying.worker.routes.replace([replaced])
    assert stopping.post(notification()) == 200
    assert staying.deliverer.calls == []
    code, message = staying.worker.take_over(*_signed(item(trigger="gone")))
    assert (code, message) == (404, "no bucket Trigger media/gone")


def test_a_stopping_replica_takes_no_handoff_so_the_sender_tries_another(
    replicas: list[Replica],
) -> None:
    other = Replica(Recorder())
    replicas.append(other)
    other.worker.abort.set()
    route = other.worker.routes.get(("media", "thumbs"))
    assert route is not None
    assert other.worker.take_over(*_signed(item(uid=route.uid))) == (503, "stopping")
    assert other.worker.take_over(b"{}", None)[0] == 401


def test_an_invocation_still_running_at_the_end_of_the_grace_is_handed_over_too(
    replicas: list[Replica],
) -> None:
    staying = Replica(Recorder())
    slow = Recorder()
    slow.gate.clear()
    stopping = Replica(slow, peer=staying.url)
    replicas += [staying, stopping]
    answer: list[int] = []
    sender = threading.Thread(target=lambda: answer.append(stopping.post(notification())))
    sender.start()
    deadline = time.monotonic() + 10
    while stopping.server.in_hand == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not stopping.worker.held.wait_settled(0.2)
    assert stopping.worker.held.hand_off_all() == 0
    assert staying.deliverer.done.wait(10)
    assert staying.deliverer.calls[0].progress == delivery.Progress()
    slow.gate.set()
    sender.join(10)
    assert answer == [200]
    # At least once: it ran on both replicas.
    assert len(slow.calls) == 1


def _signed(handed: handoff.Handoff) -> tuple[bytes, str]:
    body = handoff.encode(handed, expires=utcnow() + handoff.VALIDITY, nonce=uuid.uuid4().hex)
    return body, handoff.sign(KEY, body)


def test_a_signed_handoff_sent_again_is_refused_by_the_replica_that_took_it(
    replicas: list[Replica],
) -> None:
    staying = Replica(Recorder())
    replicas.append(staying)
    route = staying.worker.routes.get(("media", "thumbs"))
    assert route is not None
    signed = _signed(item(uid=route.uid))
    assert staying.worker.take_over(*signed) == (202, "taken over")
    assert staying.worker.take_over(*signed) == (401, "the hand-off was taken before")


# --- leaving ---------------------------------------------------------------------------------


def test_a_stopping_replica_receives_until_notifications_stop_coming_within_bounds() -> None:
    rules = worker.Shutdown(drain=5, quiet=2, drain_max=15)

    def drained(since_stop: float, since_post: float) -> bool:
        return worker.drained(rules, stopped_at=100, last_post=100 + since_stop - since_post,
                              now=100 + since_stop)  # fmt: skip

    assert not drained(since_stop=3, since_post=3)
    assert not drained(since_stop=6, since_post=1)
    assert drained(since_stop=6, since_post=2)
    assert drained(since_stop=5, since_post=30)
    assert drained(since_stop=15, since_post=0)
