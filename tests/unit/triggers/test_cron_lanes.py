"""Each Trigger's fires in threads of their own, at most a few at once per Trigger.

The fires here block on events the test sets, so which fire runs when is explicit; the
clock is the test's.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kfn.triggers.cron import lanes, table

T = datetime.datetime(2026, 1, 1, 10, tzinfo=datetime.UTC)


def s(seconds: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=seconds)


def entry(name: str, uid: str, cron: dict[str, Any] | None = None) -> table.Entry:
    made = table.entry_of(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {
                "name": name,
                "namespace": "shop",
                "uid": uid,
                "creationTimestamp": "2026-01-01T10:00:00Z",
            },
            "spec": {"functionRef": {"name": "report"}, "cron": cron or {"schedule": "@every 1s"}},
        },
        None,
    )
    assert made is not None
    return made


class Fires:
    """The fire function: records each fire and holds it until the test releases it."""

    def __init__(self) -> None:
        self.started: list[tuple[str, datetime.datetime]] = []
        self.release = {"slow": threading.Event(), "fast": threading.Event()}
        self.changed = threading.Condition()
        self.fail: set[str] = set()

    def __call__(self, firing: table.Firing) -> None:
        with self.changed:
            self.started.append((firing.entry.name, firing.tick))
            self.changed.notify_all()
        if firing.entry.name in self.fail:
            raise RuntimeError("boom")
        self.release[firing.entry.name].wait(10)

    def wait_for(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.started) >= count, timeout=5)


@pytest.fixture
def fires() -> Iterator[Fires]:
    made = Fires()
    yield made
    for event in made.release.values():
        event.set()


SLOW, FAST = entry("slow", "uid-slow"), entry("fast", "uid-fast")


def firing(tracked: table.Entry, second: float) -> table.Firing:
    return table.Firing(tracked, T + s(second), T + s(second + 1))


def make(fires: Fires, now: list[datetime.datetime], **kw: Any) -> tuple[lanes.Lanes, list[int]]:
    skipped: list[int] = []
    made = lanes.Lanes(
        fires,
        skipped=lambda _entry, count: skipped.append(count),
        clock=lambda: now[0],
        max_in_flight=2,
        **kw,
    )
    return made, skipped


def test_fires_beyond_a_triggers_slots_wait_in_its_lane_and_start_as_slots_free(
    fires: Fires,
) -> None:
    now = [T + s(2.01)]
    lane, _ = make(fires, now)
    lane.submit([firing(SLOW, 0), firing(SLOW, 1), firing(SLOW, 2)])
    fires.wait_for(2)
    assert fires.started == [("slow", T), ("slow", T + s(1))]
    assert (lane.in_flight("uid-slow"), lane.waiting("uid-slow")) == (2, 1)
    fires.release["slow"].set()
    fires.wait_for(3)
    assert fires.started[2] == ("slow", T + s(2))
    lane.join(5)
    assert (lane.in_flight("uid-slow"), lane.waiting("uid-slow")) == (0, 0)


def test_a_trigger_with_every_slot_taken_does_not_hold_back_another(fires: Fires) -> None:
    now = [T + s(1.01)]
    lane, _ = make(fires, now)
    lane.submit([firing(SLOW, 0), firing(SLOW, 1)])
    fires.wait_for(2)
    lane.submit([firing(SLOW, 1.5), firing(FAST, 1)])
    fires.wait_for(3)
    assert fires.started[2] == ("fast", T + s(1))
    assert lane.waiting("uid-slow") == 1


def test_a_tick_that_waited_past_the_grace_is_skipped_and_counted(fires: Fires) -> None:
    now = [T + s(1.01)]
    lane, skipped = make(fires, now)
    lane.submit([firing(SLOW, 0), firing(SLOW, 0.5), firing(SLOW, 1)])
    fires.wait_for(2)
    now[0] = T + s(11.5)
    lane.refresh()
    assert skipped == [1]
    assert lane.waiting("uid-slow") == 0


def test_a_replica_that_no_longer_leads_drops_waiting_ticks_and_starts_none(
    fires: Fires,
) -> None:
    now, leads = [T + s(1.01)], [True]
    lane, skipped = make(fires, now, leading=lambda: leads[0])
    lane.submit([firing(SLOW, 0), firing(SLOW, 0.5), firing(SLOW, 1)])
    fires.wait_for(2)
    leads[0] = False
    lane.refresh()
    lane.submit([firing(FAST, 1)])
    assert lane.waiting("uid-slow") == 0
    assert skipped == []  # not skipped: left to the next leader's catch-up
    fires.release["slow"].set()
    lane.join(5)
    assert [name for name, _ in fires.started] == ["slow", "slow"]


def test_a_fire_that_raises_frees_its_slot(fires: Fires) -> None:
    now = [T + s(3.01)]
    lane, _ = make(fires, now)
    fires.fail.add("slow")
    lane.submit([firing(SLOW, 0), firing(SLOW, 1), firing(SLOW, 2), firing(SLOW, 3)])
    fires.wait_for(4)
    lane.join(5)
    assert lane.in_flight("uid-slow") == 0
