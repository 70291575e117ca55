"""A pushed event that a stopping replica recorded for the catch-up and then could neither
deliver nor hand over has its record taken back, so the catch-up listing delivers it."""

from __future__ import annotations

import datetime
import json
import threading
import time
from typing import Any

import pytest

from kfn.triggers import delivery
from kfn.triggers.bucket import events, handoff, holding, poll, routes, s3, worker
from tests.unit.triggers.bucket.conftest import Store
from tests.unit.triggers.bucket.helpers import (
    MemorySnapshots,
    Recorder,
    make_worker,
    notification,
    trigger,
)

NOW = datetime.datetime(2026, 3, 1, 12, tzinfo=datetime.UTC)
KEY = b"a key both replicas share"
#: Where no replica answers.
NOBODY = "http://127.0.0.1:9"


def pushed(key: str, name: str = events.CREATED_PUT, etag: str = "e") -> events.ObjectEvent:
    return events.ObjectEvent(bucket="bkt", key=key, name=name, time=NOW, etag=etag)


def info(key: str, etag: str = "e") -> s3.ObjectInfo:
    return s3.ObjectInfo(key, etag, 1)


# --- pure parts --------------------------------------------------------------------------------


def test_a_lost_creation_is_taken_out_of_the_snapshot_whenever_its_record_was_folded() -> None:
    created = pushed("a")
    listing = {"a": "e"}
    records = dict([poll.record_entry(created), poll.lost_entry(created)])
    assert poll.fold({}, records, listing) == {}
    # Its record folded by an earlier listing, the loss comes later.
    folded = poll.fold({}, dict([poll.record_entry(created)]), listing)
    assert folded == {"a": "e"}
    assert poll.fold(folded, dict([poll.lost_entry(created)]), listing) == {}
    assert [(c.key, c.name) for c in poll.diff({}, [info("a")])] == [("a", events.CREATED_PUT)]


def test_a_lost_change_superseded_by_a_newer_one_changes_nothing() -> None:
    older = pushed("a", etag="old")
    assert poll.fold({"a": "new"}, dict([poll.lost_entry(older)]), {"a": "new"}) == {"a": "new"}


def test_a_lost_removal_puts_the_key_back_so_the_diff_reports_it() -> None:
    removed = pushed("a", events.REMOVED_DELETE, etag="")
    folded = poll.fold({"a": "e"}, dict([poll.record_entry(removed)]), {})
    assert folded == {}
    back = poll.fold(folded, dict([poll.lost_entry(removed)]), {})
    assert [(c.key, c.name) for c in poll.diff(back, [])] == [("a", events.REMOVED_DELETE)]


def test_a_lost_record_is_read_and_dropped_with_the_others() -> None:
    obj = poll.configmap(namespace="n", trigger="t", uid="u", source="s", snapshot={})
    lost_key, lost_value = poll.lost_entry(pushed("a"))
    obj["data"] = {lost_key: lost_value, "other": "x"}
    assert poll.records_of(obj, uid="u") == {lost_key: lost_value}


@pytest.mark.parametrize(
    ("key", "name", "etag"),
    [("in/cat 1+2.jpg", events.CREATED_PUT, "e1"), ("a/ü%20x", events.REMOVED_DELETE, "")],
)
def test_the_change_a_held_event_carries_reads_back_as_the_one_recorded(
    key: str, name: str, etag: str
) -> None:
    """What a replica takes back is found from the event it holds (or took over), so the
    event's payload must name the very record that was written."""
    route = routes.route_of(trigger())
    assert route is not None
    change = pushed(key, name, etag)
    [back] = events.parse_notification(json.loads(routes.payload_of(route, change)), NOW)
    assert poll.lost_entry(back) == poll.lost_entry(change)


# --- the worker ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def short_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(holding, "HANDOFF_PATIENCE", 1.0)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime.datetime:
        return self.now


def leader(
    store: Store, snapshots: MemorySnapshots
) -> tuple[worker.Worker, Recorder, routes.Route, Clock]:
    """The replica that lists the bucket, its baseline taken before any upload."""
    recorder, clock = Recorder(), Clock()
    bucket = make_worker(recorder, snapshots, clock=clock)
    bucket.routes.replace([trigger(endpoint=store.url)])
    [route] = routes.pushed(bucket.routes)
    bucket.poller.poll_once(route)
    return bucket, recorder, route, clock


def stopping(store: Store, snapshots: MemorySnapshots, deliver: Recorder) -> worker.Worker:
    """A replica that stops before its event ended, and finds no other one to take it."""
    bucket = make_worker(deliver, snapshots, peer_url=NOBODY, handoff_key=KEY)
    bucket.routes.replace([trigger(endpoint=store.url)])
    return bucket


def stopped() -> Recorder:
    return Recorder(handle=lambda _: False, stopped_at=delivery.Progress(failures=1))


def listings(bucket: worker.Worker, route: routes.Route, clock: Clock, count: int) -> None:
    for _ in range(count):
        clock.now += poll.PUSH_SETTLE
        bucket.poller.poll_once(route)


def test_an_event_recorded_then_lost_by_a_stopping_replica_is_delivered_by_the_catch_up(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    snapshots = MemorySnapshots()
    lister, recorder, route, clock = leader(store, snapshots)
    deliver = stopped()
    deliver.gate.clear()  # the event is in hand (its first attempt under way) ...
    replica = stopping(store, snapshots, deliver)
    store.objects["in/k0010"] = ("e9", 9)
    answers: list[tuple[int, str]] = []
    sender = threading.Thread(
        target=lambda: answers.append(replica.handle_push(notification("in/k0010", etag="e9")))
    )
    sender.start()
    try:
        deadline = time.monotonic() + 10
        while not snapshots.records("media", "thumbs", uid=route.uid):
            assert time.monotonic() < deadline, "the change was never recorded"
            replica.records.flush()  # ... and recorded, when the replica is told to stop
            time.sleep(0.01)
        listings(lister, route, clock, 1)  # the record is folded: the change is explained
    finally:
        deliver.gate.set()
        sender.join(10)
    assert answers[0][0] == 503
    assert "no other replica took event" in caplog.text
    replica.records.flush()
    listings(lister, route, clock, 3)
    assert recorder.keys() == [("ObjectCreated:Put", "in/k0010")]


def test_an_event_lost_before_its_record_was_written_is_never_recorded(store: Store) -> None:
    snapshots = MemorySnapshots()
    lister, recorder, route, clock = leader(store, snapshots)
    replica = stopping(store, snapshots, stopped())
    store.objects["in/k0011"] = ("e9", 9)
    assert replica.handle_push(notification("in/k0011", etag="e9"))[0] == 503
    replica.records.flush()
    assert snapshots.records("media", "thumbs", uid=route.uid) == {}
    listings(lister, route, clock, 3)
    assert recorder.keys() == [("ObjectCreated:Put", "in/k0011")]


def test_a_notification_taken_as_the_pool_shuts_down_is_left_to_the_catch_up(
    store: Store,
) -> None:
    snapshots = MemorySnapshots()
    lister, recorder, route, clock = leader(store, snapshots)
    replica = stopping(store, snapshots, Recorder())
    replica.dispatcher.pool.shutdown()
    store.objects["in/k0012"] = ("e9", 9)
    assert replica.handle_push(notification("in/k0012", etag="e9")) == (503, "stopping")
    replica.records.flush()
    listings(lister, route, clock, 3)
    assert recorder.keys() == [("ObjectCreated:Put", "in/k0012")]


def test_an_event_whose_delivery_failed_unexpectedly_is_left_to_the_catch_up(
    store: Store,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> delivery.Result:
        raise RuntimeError("a bug in delivery")

    snapshots = MemorySnapshots()
    lister, recorder, route, clock = leader(store, snapshots)
    replica = make_worker(broken, snapshots)
    replica.routes.replace([trigger(endpoint=store.url)])
    store.objects["in/k0013"] = ("e9", 9)
    with pytest.raises(RuntimeError, match="a bug in delivery"):
        replica.handle_push(notification("in/k0013", etag="e9"))
    replica.records.flush()
    listings(lister, route, clock, 3)
    assert recorder.keys() == [("ObjectCreated:Put", "in/k0013")]


def test_a_stopping_replica_waits_for_hand_offs_under_way_but_not_for_invocations() -> None:
    release = threading.Event()

    def slow_send(url: str, key: bytes, item: Any) -> int:
        del url, key, item
        release.wait(10)
        return 202

    held = holding.HeldEvents(peer_url=NOBODY, key=KEY, send=slow_send)
    route = routes.route_of(trigger())
    assert route is not None
    _, running = held.hold(route, b"{}", "r-1", NOW)
    token, handing = held.hold(route, b"{}", "r-2", NOW)
    assert held.wait_handed(0.05)  # an invocation still running is not waited for
    handing_off = threading.Thread(target=held.hand_off, args=(handing, delivery.Progress()))
    handing_off.start()
    time.sleep(0.05)
    assert not held.wait_handed(0.05)
    release.set()
    handing_off.join(10)
    assert held.wait_handed(1)
    assert handing.handed
    assert not running.handed
    held.release(token)


def test_a_replica_handing_over_what_it_holds_takes_nothing_more_in_hand(store: Store) -> None:
    """Notifications and hand-offs that passed their checks just before the replica set out
    to hand over its events are refused, not queued behind the hand-over and dropped."""
    snapshots = MemorySnapshots()
    lister, recorder, route, clock = leader(store, snapshots)
    replica = stopping(store, snapshots, Recorder())
    replica.held.close()
    assert replica.accepting(), "the abort is not set yet: the race this closes"
    store.objects["in/k0014"] = ("e9", 9)
    assert replica.handle_push(notification("in/k0014", etag="e9")) == (503, "stopping")
    body = handoff.encode(
        handoff.Handoff("media", "thumbs", route.uid, "r-1", NOW, b"{}", delivery.Progress()),
        expires=datetime.datetime.now(datetime.UTC) + handoff.VALIDITY,
        nonce="n-1",
    )
    assert replica.take_over(body, handoff.sign(KEY, body)) == (503, "stopping")
    assert replica.held.wait_settled(0)
    replica.records.flush()
    listings(lister, route, clock, 3)
    assert recorder.keys() == [("ObjectCreated:Put", "in/k0014")]
