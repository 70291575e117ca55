"""Which consumers the worker starts, restarts and stops as stream Triggers change."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from kfn.triggers import status as status_
from kfn.triggers.stream import kafka as kafka_
from kfn.triggers.stream import nats as nats_
from kfn.triggers.stream import source, worker


def trigger(name: str, *, generation: int = 1, uid: str = "u1", **stream: Any) -> dict[str, Any]:
    spec = stream or {"kafka": {"bootstrapServers": ["k:9092"], "topic": "t"}}
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "generation": generation},
        "spec": {"functionRef": {"name": "fn"}, "stream": spec},
    }


def test_a_new_trigger_is_started_and_a_deleted_one_stopped() -> None:
    changes = worker.plan({("ns", "b"): ("u", 1)}, {("ns", "a"): ("u", 1)})
    assert changes == worker.Changes(start=[("ns", "b")], stop=[("ns", "a")], forget=[("ns", "a")])


def test_a_new_generation_or_uid_restarts_the_consumer() -> None:
    running = {("ns", "a"): ("u", 1), ("ns", "b"): ("u", 1)}
    changes = worker.plan({("ns", "a"): ("u", 2), ("ns", "b"): ("v", 1)}, running)
    both = [("ns", "a"), ("ns", "b")]
    assert changes == worker.Changes(start=both, stop=both, forget=[("ns", "b")])


def test_an_unchanged_trigger_keeps_its_consumer() -> None:
    assert worker.plan({("ns", "a"): ("u", 3)}, {("ns", "a"): ("u", 3)}) == worker.Changes([], [])


def test_the_table_holds_stream_triggers_only_and_forgets_deleted_ones() -> None:
    changed = threading.Event()
    table = worker.table(changed)
    cron = trigger("tick")
    cron["spec"] = {"functionRef": {"name": "fn"}, "cron": {"schedule": "@hourly"}}
    table.replace([trigger("a"), cron])
    assert list(table.snapshot()) == [("ns", "a")]
    table.change("MODIFIED", trigger("a", generation=2))
    wanted = table.get(("ns", "a"))
    assert wanted is not None
    assert wanted.version == ("u1", 2)
    changed.clear()
    table.change("DELETED", trigger("a", generation=2))
    assert table.snapshot() == {}
    assert changed.is_set()


def test_an_invalid_trigger_is_ignored() -> None:
    bad = trigger("a", kafka={"bootstrapServers": ["k:9092"], "topic": "t"}, batchSize=0)
    assert worker.wanted_of(bad) is None


def test_a_deleted_or_replaced_trigger_is_forgotten_at_the_source_but_a_new_generation_not() -> (
    None
):
    running = {("ns", "gone"): ("u", 1), ("ns", "new-uid"): ("u", 1), ("ns", "edited"): ("u", 1)}
    changes = worker.plan({("ns", "new-uid"): ("v", 1), ("ns", "edited"): ("u", 2)}, running)
    assert changes.forget == [("ns", "gone"), ("ns", "new-uid")]


class Recorded:
    """A consumer that writes what happens to it into a shared story."""

    def __init__(self, story: list[str], target: source.Target) -> None:
        self.story = story
        self.name = f"{target.name}@{target.uid}"

    def start(self) -> None:
        self.story.append(f"start {self.name}")

    def stop(self) -> None:
        self.story.append(f"stop {self.name}")

    def join(self, timeout: float | None = None) -> None:
        del timeout
        self.story.append(f"joined {self.name}")


def test_the_old_group_is_forgotten_after_its_consumer_left_and_before_a_replacement_starts() -> (
    None
):
    story: list[str] = []

    def make(target: source.Target) -> Recorded:
        return Recorded(story, target)

    def forget(target: source.Target) -> None:
        story.append(f"forget {target.name}@{target.uid}")

    streams = worker.Worker(make, status_.StatusWriter(), "local", nats_factory=make, forget=forget)
    streams.table.replace([trigger("a"), trigger("b")])
    streams.reconcile()
    streams.table.replace([trigger("a", uid="u2"), trigger("b", generation=2)])
    story.clear()
    streams.reconcile()
    assert story == [
        "stop a@u1", "stop b@u1", "joined a@u1", "forget a@u1", "joined b@u1",
        "start a@u2", "start b@u1",
    ]  # fmt: skip
    story.clear()
    streams.table.replace([])
    streams.reconcile()
    for thread in streams.forgetting:
        thread.join(5)
    assert story[:2] == ["stop a@u2", "stop b@u1"]
    assert sorted(story[2:]) == ["forget a@u2", "forget b@u1", "joined a@u2", "joined b@u1"]
    for name in ("a@u2", "b@u1"):
        assert story.index(f"joined {name}") < story.index(f"forget {name}")


def test_a_group_or_durable_the_trigger_names_itself_is_left_alone() -> None:
    def no_secret_read(namespace: str, ref: object, to: object) -> None:
        raise AssertionError("nothing should be read for a user-named group")

    named_group = worker.wanted_of(
        trigger("k", kafka={"bootstrapServers": ["k:9092"], "topic": "t", "consumerGroup": "mine"})
    )
    named_durable = worker.wanted_of(
        trigger("n", nats={"servers": ["nats://n:4222"], "subject": "s.>", "stream": "S",
                           "durableName": "mine"})
    )  # fmt: skip
    assert named_group is not None
    assert named_durable is not None
    kafka_.forget_group(named_group.target, read_secret=no_secret_read)
    nats_.forget_durable(named_durable.target, read_secret=no_secret_read)


def test_forgetting_at_an_unreachable_server_gives_up_soon_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gone = worker.wanted_of(
        trigger("n", nats={"servers": ["nats://127.0.0.1:9"], "subject": "s.>", "stream": "S"})
    )
    assert gone is not None
    started = time.monotonic()
    nats_.forget_durable(gone.target, read_secret=lambda namespace, ref, to: None)
    assert time.monotonic() - started < nats_.FORGET_TIMEOUT
    assert "cannot delete durable kfn_ns_n" in caplog.text


def test_forgetting_with_unusable_credentials_says_what_was_kept_and_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ref = {"name": "creds"}
    group = worker.wanted_of(
        trigger("k", kafka={"bootstrapServers": ["k:9092"], "topic": "t"}, credentialsSecretRef=ref)
    )
    durable = worker.wanted_of(
        trigger("n", nats={"servers": ["nats://n:4222"], "subject": "s.>", "stream": "S"},
                credentialsSecretRef=ref)
    )  # fmt: skip
    assert group is not None
    assert durable is not None
    kafka_.forget_group(group.target, read_secret=lambda namespace, ref, to: {"username": b"fn"})
    nats_.forget_durable(durable.target, read_secret=lambda namespace, ref, to: {"other": b"x"})
    kept = [r.getMessage() for r in caplog.records]
    assert kept == [
        "ns/k: cannot delete consumer group kfn.ns.k: "
        "the Kafka credentials Secret has a username but no password",
        "ns/n: cannot delete durable kfn_ns_n on stream S: "
        "the NATS credentials Secret has none of token, creds or username",
    ]
