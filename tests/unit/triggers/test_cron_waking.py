"""The cron leader wakes a Trigger's function a lead before its next tick, and learns the lead.

The decisions are pure (:mod:`kfn.triggers.cron.waking`, time passed in); the worker's part
runs the real Worker, lanes and Deliverer against the stand-in activator on 127.0.0.1, on a
clock the test sets, with the Lease held in memory (:class:`LeaseEndpoint`).
"""

from __future__ import annotations

import datetime
import json
import threading
from typing import Any

from kfn.triggers import warming
from kfn.triggers.cron import waking, worker
from tests.unit.triggers.conftest import ActivatorStub
from tests.unit.triggers.test_lease_keeper import LeaseEndpoint

UTC = datetime.UTC
T = datetime.datetime(2026, 1, 1, 10, 1, tzinfo=UTC)  # a tick
CREATED = datetime.datetime(2026, 1, 1, 10, tzinfo=UTC)
KEY = ("shop", "report", "")
WAKE_PATH = "/_kfn/functions/shop/report/wake"
INVOKE_PATH = "/_kfn/functions/shop/report/invoke"


def s(seconds: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=seconds)


# --- the decision ----------------------------------------------------------------------------


def test_a_tick_is_woken_for_its_lead_ahead() -> None:
    assert waking.wake_at(T, s(5), previous_tick=T - s(60)) == T - s(5)
    assert waking.wake_at(T, s(5), previous_tick=None) == T - s(5)


def test_ticks_closer_than_the_lead_need_no_wake_the_previous_invocation_is_later() -> None:
    assert waking.wake_at(T, s(5), previous_tick=T - s(5)) is None
    assert waking.wake_at(T, s(5), previous_tick=T - s(4)) is None


def test_a_known_idle_timeout_longer_than_the_interval_means_the_function_is_still_up() -> None:
    assert waking.wake_at(T, s(5), previous_tick=T - s(30), idle_timeout=s(60)) is None
    assert waking.wake_at(T, s(5), previous_tick=T - s(90), idle_timeout=s(60)) == T - s(5)


def test_before_its_instant_the_plan_says_when_to_look_again() -> None:
    plan = waking.plan(T, T - s(30), s(5), previous_tick=None, woken_for=None)
    assert plan == waking.Plan(later=T - s(5))


def test_at_or_past_its_instant_the_wake_goes_at_once_and_only_once_per_tick() -> None:
    assert waking.plan(T, T - s(5), s(5), previous_tick=None, woken_for=None).wake_now
    # A leader that took over after the instant still wakes while the tick is ahead.
    assert waking.plan(T, T - s(1), s(5), previous_tick=None, woken_for=None).wake_now
    assert waking.plan(T, T - s(1), s(5), previous_tick=None, woken_for=T) == waking.Plan()
    assert waking.plan(T, T, s(5), previous_tick=None, woken_for=None) == waking.Plan()


# --- the worker ------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime.datetime) -> None:
        self.now = now
        self.lock = threading.Lock()

    def __call__(self) -> datetime.datetime:
        with self.lock:
            return self.now


def _trigger(schedule: str) -> dict[str, Any]:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {
            "name": "tick",
            "namespace": "shop",
            "uid": "uid-tick",
            "creationTimestamp": "2026-01-01T10:00:00Z",
            "generation": 1,
        },
        "spec": {"functionRef": {"name": "report"}, "cron": {"schedule": schedule}},
    }


def _leader(activator: ActivatorStub, clock: Clock, schedule: str) -> worker.Worker:
    deliverer = worker.Deliverer(activator.url, "local", record=False, clock=clock)
    cron = worker.Worker(
        namespace="kfn-system",
        identity="a",
        deliverer=deliverer,
        clock=clock,
        lease_api=LeaseEndpoint(),
    )
    cron.schedules.replace([_trigger(schedule)])
    cron.lease.try_once()
    assert cron.lease.leading()
    return cron


def _settle(cron: worker.Worker) -> None:
    """Waits for the wakes sent and the fires handed to lanes."""
    cron.wakes.shutdown(wait=True)
    cron.lanes.join(10)


def test_the_leader_wakes_the_function_a_lead_before_the_tick_and_fires_the_tick_on_time(
    activator: ActivatorStub,
) -> None:
    clock = Clock(CREATED + s(30))
    cron = _leader(activator, clock, "@every 60s")
    tick = CREATED + s(60)
    # Between ticks the loop sleeps until the wake's instant, before the tick's.
    assert cron.fire_due(clock()) == tick - warming.FLOOR
    assert activator.calls == []
    clock.now = tick - warming.FLOOR
    assert cron.fire_due(clock()) == tick
    assert cron.fire_due(clock()) == tick  # one wake per tick
    clock.now = tick
    cron.fire_due(clock())
    _settle(cron)
    assert [call.path for call in activator.calls] == [WAKE_PATH, INVOKE_PATH]
    assert json.loads(activator.calls[1].body)["time"] == "2026-01-01T10:01:00Z"


def test_a_tick_that_still_waited_after_its_wake_lengthens_the_next_lead_by_the_whole_wait(
    activator: ActivatorStub,
) -> None:
    clock = Clock(CREATED + s(58))
    cron = _leader(activator, clock, "@every 60s")
    tick = CREATED + s(60)
    activator.answer(202, b"")
    cron.fire_due(clock())  # the wake, 2 s ahead
    cron.wakes.shutdown(wait=True)
    # The tick's invocation waited 1.5 s more for its pod: the cold start took 3.5 s.
    activator.answer(200, b"{}", Server_Timing="cold-start;dur=1500.00")
    clock.now = tick
    cron.fire_due(clock())
    cron.lanes.join(10)
    lead = cron.deliverer.cold_starts.lead(KEY)
    assert lead == s(3.5) + s(3.5) / 4
    assert cron.fire_due(clock()) == tick + s(60) - lead


def test_ticks_closer_than_the_lead_are_not_woken_after_the_first(
    activator: ActivatorStub,
) -> None:
    clock = Clock(CREATED + s(0.5))
    cron = _leader(activator, clock, "@every 1s")
    cron.fire_due(clock())  # nothing fired yet: the first tick is woken
    clock.now = CREATED + s(1)
    cron.fire_due(clock())
    clock.now = CREATED + s(2)
    cron.fire_due(clock())
    _settle(cron)
    paths = [call.path for call in activator.calls]
    assert paths.count(WAKE_PATH) == 1
    assert paths.count(INVOKE_PATH) == 2
