"""Poll mode: diffs against the snapshot, the baseline, persistence, and no loss on restart."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kfn import kube
from kfn.api import endpoints
from kfn.triggers import credentials, status
from kfn.triggers.bucket import poll, poller, routes, s3, worker
from tests.unit.triggers.bucket.conftest import Store
from tests.unit.triggers.bucket.helpers import (
    MemorySnapshots,
    Recorder,
    make_worker,
    trigger,
)

NOW = datetime.datetime(2026, 3, 1, 12, tzinfo=datetime.UTC)


def info(key: str, etag: str, size: int = 1) -> s3.ObjectInfo:
    return s3.ObjectInfo(key, etag, size)


# --- pure parts --------------------------------------------------------------------------------


def test_new_and_changed_keys_are_puts_and_missing_keys_are_deletes() -> None:
    snapshot = {"a": "1", "b": "2", "c": "3"}
    changes = poll.diff(snapshot, [info("d", "4"), info("b", "2x"), info("a", "1")])
    assert [(c.name, c.key, c.etag) for c in changes] == [
        ("ObjectCreated:Put", "b", "2x"),
        ("ObjectCreated:Put", "d", "4"),
        ("ObjectRemoved:Delete", "c", "3"),
    ]
    assert poll.diff(snapshot, [info("a", "1"), info("b", "2"), info("c", "3")]) == []


def test_the_snapshot_advances_only_by_the_changes_given() -> None:
    changes = poll.diff({"a": "1", "c": "3"}, [info("a", "2"), info("b", "1")])
    assert poll.advance({"a": "1", "c": "3"}, changes[:1]) == {"a": "2", "c": "3"}
    assert poll.advance({"a": "1", "c": "3"}, changes) == {"a": "2", "b": "1"}


def test_the_persisted_snapshot_reads_back_and_garbage_reads_as_none() -> None:
    snapshot = {f"photos/{i:05d}.jpg": f"{i:032x}" for i in range(2000)}
    assert poll.decode(poll.encode(snapshot)) == snapshot
    assert len(poll.encode(snapshot)) < 60_000
    assert poll.decode("not base64 gzip") is None


def test_a_snapshot_of_another_trigger_or_source_is_not_used() -> None:
    obj = poll.configmap(namespace="n", trigger="t", uid="u1", source="s1", snapshot={"a": "1"})
    assert poll.snapshot_of(obj, uid="u1", source="s1") == {"a": "1"}
    assert poll.snapshot_of(obj, uid="u2", source="s1") is None
    assert poll.snapshot_of(obj, uid="u1", source="s2") is None
    assert obj["metadata"]["name"] == "kfn-bucket-t"
    assert obj["metadata"]["ownerReferences"][0]["uid"] == "u1"


def test_the_source_changes_with_bucket_endpoint_and_filter_but_not_with_events() -> None:
    def source(**fields: Any) -> str:
        route = routes.route_of(trigger(**fields))
        assert route is not None
        return poll.source_of(route.spec)

    assert source() == source(events=["s3:ObjectRemoved:*"], pollInterval="1m")
    assert source() != source(bucket="other")
    assert source() != source(filter={"prefix": "in/"})
    assert source(filter={"prefix": "in/"}) != source(filter={"prefix": "in/", "suffix": ".a"})


# --- the poller --------------------------------------------------------------------------------


def poll_route(
    store: Store, **fields: Any
) -> tuple[worker.Worker, Recorder, MemorySnapshots, routes.Route]:
    recorder, snapshots = Recorder(), MemorySnapshots()
    bucket = make_worker(recorder, snapshots)
    bucket.routes.replace([trigger(endpoint=store.url, mode="Poll", **fields)])
    [route] = routes.polled(bucket.routes)
    return bucket, recorder, snapshots, route


def test_the_first_poll_takes_a_baseline_and_later_polls_report_creates(store: Store) -> None:
    bucket, recorder, snapshots, route = poll_route(store, filter={"prefix": "in/"})
    assert bucket.poller.due(NOW) == [route]
    bucket.poller.poll_once(route)
    assert recorder.delivered == []
    assert snapshots.writes == 1
    store.objects["in/new file.jpg"] = ("e9", 99)
    store.objects["in/a"] = ("e1-changed", 5)
    store.objects["out/ignored"] = ("e0", 1)
    bucket.poller.poll_once(route)
    assert recorder.keys() == [
        ("ObjectCreated:Put", "in/a"),
        ("ObjectCreated:Put", "in/new+file.jpg"),
    ]
    record = recorder.delivered[1].payload["Records"][0]
    assert record["s3"]["object"]["size"] == 99
    assert record["s3"]["object"]["eTag"] == "e9"
    assert record["s3"]["bucket"]["name"] == "bkt"
    assert record["s3"]["configurationId"] == "thumbs"
    bucket.poller.poll_once(route)
    assert len(recorder.delivered) == 2, "an unchanged listing reported something"


def test_deletes_are_reported_only_when_selected(store: Store) -> None:
    bucket, recorder, _, route = poll_route(store)
    bucket.poller.poll_once(route)
    del store.objects["in/b"]
    bucket.poller.poll_once(route)
    assert recorder.delivered == []

    bucket, recorder, _, route = poll_route(
        store, events=["s3:ObjectCreated:*", "s3:ObjectRemoved:Delete"]
    )
    bucket.poller.poll_once(route)
    del store.objects["in/c"]
    bucket.poller.poll_once(route)
    assert recorder.keys() == [("ObjectRemoved:Delete", "in/c")]


def test_suffix_filters_hold_in_poll_mode(store: Store) -> None:
    bucket, recorder, _, route = poll_route(store, filter={"suffix": ".jpg"})
    bucket.poller.poll_once(route)
    store.objects["in/z.png"] = ("p", 1)
    store.objects["in/z.jpg"] = ("j", 1)
    bucket.poller.poll_once(route)
    assert recorder.keys() == [("ObjectCreated:Put", "in/z.jpg")]


def test_a_poller_stopped_mid_burst_leaves_the_rest_to_its_successor(store: Store) -> None:
    bucket, _, snapshots, route = poll_route(store)
    bucket.poller.poll_once(route)
    burst = {f"burst/{i:03d}": (f"e{i}", i) for i in range(100)}
    store.objects.update(burst)
    # The first replica handles 40 events, then stops: the rest end unhandled.
    stopping = Recorder(handle=lambda index: index < 40)
    first = make_worker(stopping, snapshots)
    first.routes.replace([route.obj])
    first.poller.poll_once(routes.polled(first.routes)[0])
    assert 32 <= len(stopping.delivered) <= 40
    successor = Recorder()
    second = make_worker(successor, snapshots)
    second.routes.replace([route.obj])
    second.poller.poll_once(routes.polled(second.routes)[0])
    got = {d.payload["Records"][0]["s3"]["object"]["key"] for d in stopping.delivered}
    got |= {d.payload["Records"][0]["s3"]["object"]["key"] for d in successor.delivered}
    assert got == set(burst), "an event was lost across the hand-over"
    resent = len(stopping.delivered) + len(successor.delivered) - len(burst)
    assert 0 <= resent <= poller.POLL_BATCH
    ids = [d.request_id for d in stopping.delivered + successor.delivered]
    assert len(set(ids)) == len(burst), "a resent change got a new request id"


def test_a_poll_is_due_again_after_its_interval(store: Store) -> None:
    clock = [NOW]
    recorder = Recorder()
    bucket = make_worker(recorder, clock=lambda: clock[0])
    bucket.routes.replace([trigger(endpoint=store.url, mode="Poll", pollInterval="30s")])
    [route] = routes.polled(bucket.routes)
    bucket.poller.poll_once(route)
    clock[0] = NOW + datetime.timedelta(seconds=29)
    assert bucket.poller.due(clock[0]) == []
    clock[0] = NOW + datetime.timedelta(seconds=30)
    assert bucket.poller.due(clock[0]) == [route]


def reachable_after_a_poll(store: Store, secret: dict[str, bytes]) -> status.Verdict:
    """SourceReachable after polling ``store`` with ``secret`` as the Trigger's Secret."""
    statuses = Statuses()
    bucket = make_worker(Recorder(), read_secret=lambda ns, ref, to: secret, statuses=statuses)
    bucket.routes.replace(
        [trigger(endpoint=store.url, mode="Poll", credentialsSecretRef={"name": "s3-creds"})]
    )
    bucket.poller.sync_leadership(True)
    bucket.poller.poll_once(routes.polled(bucket.routes)[0])
    return statuses.reachable[("media", "thumbs")]


def test_refused_credentials_set_source_reachable_false_without_the_secret(store: Store) -> None:
    store.refuse = True
    secret = {"AWS_ACCESS_KEY_ID": b"AKIDBAD", "AWS_SECRET_ACCESS_KEY": b"hunter2-secret"}
    verdict = reachable_after_a_poll(store, secret)
    assert verdict.ok is False
    assert verdict.reason == "ConnectionFailed"
    assert "media/s3-creds" in verdict.message
    assert "InvalidAccessKeyId" in verdict.message
    assert "hunter2" not in verdict.message


def test_a_secret_without_the_keys_is_credentials_not_found(store: Store) -> None:
    verdict = reachable_after_a_poll(store, {"other": b"x"})
    assert (verdict.ok, verdict.reason) == (False, "CredentialsNotFound")
    assert "AWS_ACCESS_KEY_ID" in verdict.message


def polled_with_a_secret_annotated(
    store: Store, monkeypatch: pytest.MonkeyPatch, allowed: str
) -> status.Verdict:
    """SourceReachable after polling ``store`` with a Secret whose owner allows ``allowed``,
    read as the worker reads it."""
    stored = kube.Secret(
        {"AWS_ACCESS_KEY_ID": b"AKIDTEAMA", "AWS_SECRET_ACCESS_KEY": b"team-a-secret-key"},
        {endpoints.ANNOTATION: allowed},
    )
    monkeypatch.setattr(kube, "get_secret", lambda namespace, name: stored)
    statuses = Statuses()
    bucket = make_worker(Recorder(), read_secret=credentials.read_secret, statuses=statuses)
    bucket.routes.replace(
        [trigger(endpoint=store.url, mode="Poll", credentialsSecretRef={"name": "s3-creds"})]
    )
    bucket.poller.sync_leadership(True)
    bucket.poller.poll_once(routes.polled(bucket.routes)[0])
    return statuses.reachable[("media", "thumbs")]


def test_a_store_the_secrets_owner_did_not_list_is_never_sent_a_request_signed_with_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    verdict = polled_with_a_secret_annotated(store, monkeypatch, "https://s3.media.example")
    assert store.seen == []
    assert (verdict.ok, verdict.reason) == (False, "SecretNotAllowed")
    assert verdict.message == (
        f"Secret media/s3-creds does not allow {store.url}; add it to the annotation "
        "kfn.dev/allowed-endpoints if the Secret's owner agrees (it allows "
        "https://s3.media.example:443)"
    )


def test_a_store_the_secrets_owner_listed_is_listed_with_its_keys(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed = f"s3.media.example:443 {store.url}"
    verdict = polled_with_a_secret_annotated(store, monkeypatch, allowed)
    assert (verdict.ok, verdict.reason) == (True, "Connected")
    assert store.seen
    signed = [headers.get("authorization", "") for _, _, headers in store.seen]
    assert all("Credential=AKIDTEAMA/" in authorization for authorization in signed)


def test_a_trigger_gone_from_a_relist_is_forgotten_by_the_poller_and_the_status_writer(
    store: Store,
) -> None:
    statuses = Statuses()
    bucket = make_worker(Recorder(), statuses=statuses)
    audit = trigger("audit", endpoint=store.url, mode="Poll")
    bucket.routes.replace([trigger("thumbs"), audit])
    bucket.poller.sync_leadership(True)
    bucket.poller.poll_once(routes.polled(bucket.routes)[0])
    assert statuses.tracked == {("media", "thumbs"), ("media", "audit")}
    assert ("media", "audit") in bucket.poller.polls
    bucket.routes.replace([trigger("thumbs")])
    assert statuses.tracked == {("media", "thumbs")}
    assert ("media", "audit") not in bucket.poller.polls


class Statuses:
    """Records the verdicts the worker sets, as the status writer would receive them."""

    def __init__(self) -> None:
        self.reachable: dict[tuple[str, str], status.Verdict] = {}
        self.delivering: dict[tuple[str, str], Any] = {}
        self.tracked: set[tuple[str, str]] = set()

    def track(self, obj: dict[str, Any]) -> None:
        self.tracked.add((obj["metadata"]["namespace"], obj["metadata"]["name"]))

    def forget(self, key: tuple[str, str]) -> None:
        self.tracked.discard(key)

    def set(self, key: tuple[str, str], *, reachable: Any = None, delivering: Any = None,
            **extra: Any) -> None:  # fmt: skip
        if key not in self.tracked:
            return
        if reachable is not None:
            self.reachable[key] = reachable
        if delivering is not None:
            self.delivering[key] = delivering
