"""A new Trigger's first listing: what changed after the Trigger was created is not taken
for the baseline, so a notification that reached no replica knowing the Trigger yet is
still caught up, and one that did is not delivered twice."""

from __future__ import annotations

import datetime
from typing import Any

from kfn.triggers.bucket import ledger, poll, routes, s3, worker
from tests.unit.triggers.bucket.conftest import Store
from tests.unit.triggers.bucket.helpers import (
    MemorySnapshots,
    Recorder,
    make_worker,
    notification,
    trigger,
)

#: When the Trigger was created.
CREATED = datetime.datetime(2026, 3, 1, 12, tzinfo=datetime.UTC)
SECOND = datetime.timedelta(seconds=1)


def stamp(at: datetime.datetime) -> str:
    """A time as S3 listings write it."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def info(key: str, modified: datetime.datetime | None) -> s3.ObjectInfo:
    return s3.ObjectInfo(key, "e", 1, modified)


# --- pure parts --------------------------------------------------------------------------------


def test_a_listing_reads_when_each_object_was_last_modified() -> None:
    from tests.unit.triggers.bucket.conftest import listing_xml  # noqa: PLC0415

    times = {
        "a": "2026-03-01T12:00:03.250Z",  # S3's spelling
        "b": "2026-03-01T12:00:03.250000001Z",  # Go's RFC 3339 with nanoseconds
        "c": "yesterday",
    }
    keys = [("a", "e1", 1), ("b", "e2", 2), ("c", "e3", 3), ("d", "e4", 4)]
    page = s3.parse_list_page(listing_xml(keys, None, times))
    at = CREATED + 3.25 * SECOND
    assert [o.modified for o in page.objects] == [at, at, None, None]


def test_the_first_baseline_leaves_out_objects_changed_after_the_trigger_was_created() -> None:
    listing = [
        info("before", CREATED - 5 * SECOND),
        info("same-second", CREATED + 0.9 * SECOND),
        info("after", CREATED + SECOND),
        info("no-time", None),
    ]
    now = CREATED + 4 * SECOND
    assert poll.baseline(listing, created=CREATED + 0.2 * SECOND, now=now) == {
        "before": "e",
        "same-second": "e",
        "no-time": "e",
    }
    # Not a new Trigger's first listing (a changed source): every object is the baseline.
    assert len(poll.baseline(listing, created=None, now=now)) == 4


def test_a_trigger_listed_first_long_after_its_creation_takes_everything_as_its_baseline() -> None:
    listing = [info("after", CREATED + 60 * SECOND)]
    late = CREATED + poll.NEW_TRIGGER
    assert poll.baseline(listing, created=CREATED, now=late) == {"after": "e"}
    assert poll.baseline(listing, created=CREATED, now=late - SECOND) == {}


def test_records_wait_for_the_first_listing_only_while_young() -> None:
    now = CREATED + poll.NEW_TRIGGER + 10 * SECOND
    waiting = {"young": ("v1", now - SECOND), "old": ("v2", CREATED)}
    assert ledger.kept_until_listed(waiting, now) == {"young": ("v1", now - SECOND)}


# --- the worker ---------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime.datetime) -> None:
        self.now = now

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, delta: datetime.timedelta) -> None:
        self.now += delta


def new_trigger(store: Store, **bucket: Any) -> dict[str, Any]:
    obj = trigger(endpoint=store.url, **bucket)
    obj["metadata"]["creationTimestamp"] = CREATED.strftime("%Y-%m-%dT%H:%M:%SZ")
    return obj


def upload(store: Store, key: str, at: datetime.datetime, etag: str = "e9") -> None:
    store.objects[key] = (etag, 9)
    store.modified[key] = stamp(at)


def leader(
    store: Store, obj: dict[str, Any], now: datetime.datetime
) -> tuple[worker.Worker, Recorder, MemorySnapshots, routes.Route, Clock]:
    recorder, snapshots, clock = Recorder(), MemorySnapshots(), Clock(now)
    bucket = make_worker(recorder, snapshots, clock=clock)
    bucket.routes.replace([obj])
    [route] = bucket.routes.values()
    return bucket, recorder, snapshots, route, clock


def listings(bucket: worker.Worker, route: routes.Route, clock: Clock, count: int) -> None:
    for _ in range(count):
        clock.advance(poll.PUSH_SETTLE)
        bucket.poller.poll_once(route)


def test_an_upload_whose_notification_reached_a_replica_not_knowing_the_trigger_yet_arrives(
    store: Store,
) -> None:
    """The store pushed the upload to a replica whose watch had not brought the Trigger
    yet (it answered 200, nothing matched), and the leader listed the bucket for the first
    time after the upload: the upload is not part of the baseline, the catch-up brings it."""
    obj = new_trigger(store)
    for key in store.objects:
        store.modified[key] = stamp(CREATED - 60 * SECOND)
    lagging = make_worker(Recorder())
    lagging.routes.replace([])
    upload(store, "in/late.jpg", CREATED + 2 * SECOND)
    assert lagging.handle_push(notification("in/late.jpg", etag="e9")) == (
        200,
        "no Trigger matches",
    )
    bucket, recorder, _, route, clock = leader(store, obj, CREATED + 3 * SECOND)
    bucket.poller.poll_once(route)  # the first listing, after the upload
    assert recorder.delivered == []
    listings(bucket, route, clock, 3)
    assert recorder.keys() == [("ObjectCreated:Put", "in/late.jpg")]


def test_an_upload_pushed_before_the_first_listing_is_not_delivered_again_by_it(
    store: Store,
) -> None:
    obj = new_trigger(store)
    bucket, recorder, snapshots, route, clock = leader(store, obj, CREATED + 2 * SECOND)
    upload(store, "in/early.jpg", CREATED + 2 * SECOND)
    assert bucket.handle_push(notification("in/early.jpg", etag="e9"))[0] == 200
    bucket.records.flush()  # no ConfigMap yet: the record waits for the first listing
    bucket.poller.poll_once(route)
    clock.advance(ledger.UNLISTED_RETRY)
    bucket.records.flush()
    assert len(snapshots.records("media", "thumbs", uid=route.uid)) == 1
    listings(bucket, route, clock, 3)
    assert recorder.keys() == [("ObjectCreated:Put", "in/early.jpg")]
    assert snapshots.records("media", "thumbs", uid=route.uid) == {}


def test_a_write_that_found_no_configmap_is_tried_again_only_after_a_while_or_when_leaving(
    store: Store,
) -> None:
    obj = new_trigger(store)
    bucket, _, snapshots, _, clock = leader(store, obj, CREATED + 2 * SECOND)
    tries: list[int] = []
    real_record = snapshots.record

    def counting(namespace: str, trigger: str, entries: Any) -> None:
        tries.append(len(entries))
        real_record(namespace, trigger, entries)

    snapshots.record = counting  # type: ignore[method-assign]
    assert bucket.handle_push(notification("in/a.jpg", etag="e9"))[0] == 200
    bucket.records.flush()
    bucket.records.flush()
    assert tries == [1]
    clock.advance(ledger.UNLISTED_RETRY)
    bucket.records.flush()
    assert tries == [1, 1]
    bucket.records.flush(last=True)  # the replica leaves: its last flush tries them all
    assert tries == [1, 1, 1]


def test_a_poll_trigger_reports_an_upload_made_between_its_creation_and_its_first_poll(
    store: Store,
) -> None:
    obj = new_trigger(store, mode="Poll", pollInterval="1s")
    for key in store.objects:
        store.modified[key] = stamp(CREATED - 60 * SECOND)
    upload(store, "in/between.jpg", CREATED + 2 * SECOND)
    bucket, recorder, _, route, clock = leader(store, obj, CREATED + 5 * SECOND)
    bucket.poller.poll_once(route)
    clock.advance(SECOND)
    bucket.poller.poll_once(route)
    assert recorder.keys() == [("ObjectCreated:Put", "in/between.jpg")]


def test_a_trigger_whose_source_changed_takes_its_new_baseline_whole(store: Store) -> None:
    obj = new_trigger(store)
    upload(store, "in/after.jpg", CREATED + 2 * SECOND)
    bucket, recorder, snapshots, route, clock = leader(store, obj, CREATED + 3 * SECOND)
    snapshots.save("media", "thumbs", uid=route.uid, source="another bucket", snapshot={})
    bucket.poller.poll_once(route)
    listings(bucket, route, clock, 3)
    assert recorder.delivered == []
