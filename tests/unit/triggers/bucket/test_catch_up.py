"""Push Triggers catch up by listing: a change no notification brought still arrives, once."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import pytest

from kfn import kube
from kfn.triggers import metrics
from kfn.triggers.bucket import events, poll, routes, worker
from tests.unit.triggers.bucket.conftest import Store
from tests.unit.triggers.bucket.helpers import (
    MemorySnapshots,
    Recorder,
    make_worker,
    notification,
    trigger,
)

NOW = datetime.datetime(2026, 3, 1, 12, tzinfo=datetime.UTC)
SETTLE = poll.PUSH_SETTLE


def change(key: str, name: str = events.CREATED_PUT, etag: str = "e") -> poll.Change:
    return poll.Change(key, name, etag)


def pushed(key: str, name: str = events.CREATED_PUT, etag: str = "e") -> events.ObjectEvent:
    return events.ObjectEvent(bucket="bkt", key=key, name=name, time=NOW, etag=etag)


def records(*changes: events.ObjectEvent) -> dict[str, str]:
    return dict(poll.record_entry(c) for c in changes)


# --- pure parts --------------------------------------------------------------------------------


def test_each_pushed_version_and_removal_of_a_key_has_its_own_record() -> None:
    keys = {
        poll.record_entry(pushed("a", etag="1"))[0],
        poll.record_entry(pushed("a", etag="2"))[0],
        poll.record_entry(pushed("a", events.REMOVED_DELETE))[0],
        poll.record_entry(pushed("b", etag="1"))[0],
    }
    assert len(keys) == 4
    assert all(k.startswith(poll.RECORD_PREFIX) and len(k) <= 253 for k in keys)
    assert poll.record_entry(pushed("a", etag="1")) == poll.record_entry(pushed("a", etag="1"))


def test_folding_takes_in_what_records_explain_and_leaves_the_rest_to_the_diff() -> None:
    snapshot = {"kept": "1", "removed": "2", "overwritten": "3", "gone-unpushed": "4"}
    listing = {"kept": "1", "overwritten": "3b", "new": "5", "new-no-etag": "6", "late": "7"}
    folded = poll.fold(
        snapshot,
        records(
            pushed("removed", events.REMOVED_DELETE),
            pushed("overwritten", etag="3b"),
            pushed("new", etag="5"),
            pushed("new-no-etag", etag=""),
            pushed("late", etag="an older version"),
            pushed("created-then-deleted", etag="8"),
        )
        | {poll.RECORD_PREFIX + "garbage": "{not json"},
        listing,
    )
    assert folded == {
        "kept": "1",
        "overwritten": "3b",
        "new": "5",
        "new-no-etag": "6",
        "gone-unpushed": "4",
    }
    assert [(c.key, c.name) for c in poll.diff(folded, [poll_info(k, v) for k, v in
                                                         listing.items()])] == [
        ("late", events.CREATED_PUT),
        ("gone-unpushed", events.REMOVED_DELETE),
    ]  # fmt: skip


def poll_info(key: str, etag: str) -> Any:
    from kfn.triggers.bucket import s3  # noqa: PLC0415

    return s3.ObjectInfo(key, etag, 1)


def test_a_change_is_due_only_once_listings_showed_it_for_the_settle_time() -> None:
    first, second = change("a"), change("b")
    due, seen = poll.settled([first], {}, NOW)
    assert due == []
    due, seen = poll.settled([first, second], seen, NOW + SETTLE - datetime.timedelta(seconds=1))
    assert due == []
    due, seen = poll.settled([first, second], seen, NOW + SETTLE)
    assert due == [first]
    # A change no longer shown (a late record explained it) is forgotten.
    due, seen = poll.settled([first], seen, NOW + 2 * SETTLE)
    assert due == [first]
    assert set(seen) == {("a", events.CREATED_PUT, "e")}


# --- the worker ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, delta: datetime.timedelta) -> None:
        self.now += delta


def push_worker(
    store: Store, **fields: Any
) -> tuple[worker.Worker, Recorder, MemorySnapshots, routes.Route, Clock]:
    recorder, snapshots, clock = Recorder(), MemorySnapshots(), Clock()
    bucket = make_worker(recorder, snapshots, clock=clock)
    bucket.routes.replace([trigger(endpoint=store.url, **fields)])
    [route] = routes.pushed(bucket.routes)
    return bucket, recorder, snapshots, route, clock


def listings(bucket: worker.Worker, route: routes.Route, clock: Clock, count: int) -> None:
    """``count`` catch-up listings, one settle time apart."""
    for _ in range(count):
        clock.advance(SETTLE)
        bucket.poller.poll_once(route)


def test_a_change_whose_notification_never_came_is_delivered_once_after_it_settled(
    store: Store,
) -> None:
    bucket, recorder, _, route, clock = push_worker(store)
    assert bucket.poller.due(clock.now) == [route], "a Push Trigger is listed too"
    bucket.poller.poll_once(route)  # the baseline: what existed before reports nothing
    store.objects["in/lost.jpg"] = ("e9", 9)
    caught = metrics.CAUGHT_UP.labels(route.namespace, route.name, routes.KIND)
    before = caught._value.get()
    bucket.poller.poll_once(route)
    assert recorder.delivered == [], "delivered before a late notification could arrive"
    listings(bucket, route, clock, 3)
    assert recorder.keys() == [("ObjectCreated:Put", "in/lost.jpg")]
    record = recorder.delivered[0].payload["Records"][0]
    assert (record["s3"]["object"]["eTag"], record["s3"]["object"]["size"]) == ("e9", 9)
    assert caught._value.get() == before + 1


def test_changes_a_notification_brought_are_not_delivered_again_by_the_listing(
    store: Store,
) -> None:
    bucket, recorder, snapshots, route, clock = push_worker(
        store, events=["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
    )
    bucket.poller.poll_once(route)
    store.objects["in/new.jpg"] = ("e9", 9)
    assert bucket.handle_push(notification("in/new.jpg", etag="e9"))[0] == 200
    del store.objects["in/a"]
    assert bucket.handle_push(notification("in/a", "s3:ObjectRemoved:Delete", etag=""))[0] == 200
    bucket.records.flush()
    assert len(snapshots.records("media", "thumbs", uid=route.uid)) == 2
    listings(bucket, route, clock, 4)
    assert recorder.keys() == [
        ("ObjectCreated:Put", "in/new.jpg"),
        ("ObjectRemoved:Delete", "in/a"),
    ]
    assert snapshots.records("media", "thumbs", uid=route.uid) == {}, "folded records stayed"


def test_a_notification_recorded_late_still_stops_the_listing_from_doubling_it(
    store: Store,
) -> None:
    bucket, recorder, _, route, clock = push_worker(store)
    bucket.poller.poll_once(route)
    store.objects["in/slow.jpg"] = ("e5", 5)
    listings(bucket, route, clock, 1)  # seen once, not yet due
    assert bucket.handle_push(notification("in/slow.jpg", etag="e5"))[0] == 200
    bucket.records.flush()
    listings(bucket, route, clock, 3)
    assert recorder.keys() == [("ObjectCreated:Put", "in/slow.jpg")]


def test_changes_pushed_before_the_first_listing_are_left_to_the_baseline(store: Store) -> None:
    bucket, recorder, snapshots, route, clock = push_worker(store)
    store.objects["in/early.jpg"] = ("e7", 7)
    assert bucket.handle_push(notification("in/early.jpg", etag="e7"))[0] == 200
    bucket.records.flush()  # no ConfigMap yet: nothing to record into, nothing kept
    bucket.poller.poll_once(route)
    listings(bucket, route, clock, 3)
    assert recorder.keys() == [("ObjectCreated:Put", "in/early.jpg")]
    assert snapshots.records("media", "thumbs", uid=route.uid) == {}


def test_a_push_trigger_whose_bucket_cannot_be_listed_keeps_its_status_and_warns_once(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    bucket, recorder, _, route, clock = push_worker(store)
    store.refuse = True
    with caplog.at_level(logging.WARNING):
        listings(bucket, route, clock, 3)
    warnings = [r for r in caplog.records if "catching up by listing failed" in r.getMessage()]
    assert len(warnings) == 1
    assert "InvalidAccessKeyId" in warnings[0].getMessage()
    assert recorder.delivered == []
    store.refuse = False
    listings(bucket, route, clock, 1)
    assert bucket.poller.polls[route.key].problem == ""


def test_records_that_cannot_be_written_are_kept_for_the_next_flush_with_one_warning(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    bucket, recorder, snapshots, route, clock = push_worker(store)
    bucket.poller.poll_once(route)
    store.objects["in/kept.jpg"] = ("e3", 3)
    writes: list[int] = []
    real_record = snapshots.record

    def refusing(namespace: str, trigger: str, entries: Any) -> None:
        writes.append(len(entries))
        if len(writes) < 3:
            raise kube.ApiError(500, "InternalError", "etcd is away")
        real_record(namespace, trigger, entries)

    snapshots.record = refusing  # type: ignore[method-assign]
    assert bucket.handle_push(notification("in/kept.jpg", etag="e3"))[0] == 200
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            bucket.records.flush()
    assert writes == [1, 1, 1]
    assert len([r for r in caplog.records if "recording pushed changes" in r.getMessage()]) == 1
    listings(bucket, route, clock, 3)
    assert recorder.keys() == [("ObjectCreated:Put", "in/kept.jpg")]
