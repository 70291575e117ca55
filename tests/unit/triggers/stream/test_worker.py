"""Which consumers the worker starts, restarts and stops as stream Triggers change."""

from __future__ import annotations

from typing import Any

from kfn.triggers.stream import worker


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
    assert changes == worker.Changes(start=[("ns", "b")], stop=[("ns", "a")])


def test_a_new_generation_or_uid_restarts_the_consumer() -> None:
    running = {("ns", "a"): ("u", 1), ("ns", "b"): ("u", 1)}
    changes = worker.plan({("ns", "a"): ("u", 2), ("ns", "b"): ("v", 1)}, running)
    assert changes == worker.Changes(start=[("ns", "a"), ("ns", "b")],
                                     stop=[("ns", "a"), ("ns", "b")])  # fmt: skip


def test_an_unchanged_trigger_keeps_its_consumer() -> None:
    assert worker.plan({("ns", "a"): ("u", 3)}, {("ns", "a"): ("u", 3)}) == worker.Changes([], [])


def test_the_table_holds_stream_triggers_only_and_forgets_deleted_ones() -> None:
    table = worker.Table()
    cron = trigger("tick")
    cron["spec"] = {"functionRef": {"name": "fn"}, "cron": {"schedule": "@hourly"}}
    table.replace([trigger("a"), cron])
    assert list(table.wanted) == [("ns", "a")]
    table.change("MODIFIED", trigger("a", generation=2))
    assert table.wanted[("ns", "a")].version == ("u1", 2)
    table.change("DELETED", trigger("a", generation=2))
    assert table.wanted == {}


def test_an_invalid_trigger_is_ignored() -> None:
    bad = trigger("a", kafka={"bootstrapServers": ["k:9092"], "topic": "t"}, batchSize=0)
    assert worker.wanted_of(bad) is None
