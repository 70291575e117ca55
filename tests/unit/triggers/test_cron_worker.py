"""The worker's bookkeeping of cron Triggers and its delivery to the activator's invoke API.

Delivery is checked against a real HTTP server on 127.0.0.1 that answers as the activator's
invoke API does (the ``activator`` fixture); status writes are off for these tests.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import threading
from typing import Any

import pytest

from kfn.triggers.cron import schedule, table, worker
from tests.unit.triggers.conftest import ActivatorStub

UTC = datetime.UTC
UID = "0b7f8a52-0f0c-4f5c-a7a2-6c1d7a3e9b11"
CREATED = datetime.datetime(2026, 1, 1, 10, tzinfo=UTC)


def s(seconds: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=seconds)


def trigger(cron: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "kfn.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {
            "name": "tick",
            "namespace": "shop",
            "uid": UID,
            "creationTimestamp": "2026-01-01T10:00:00Z",
            "generation": 1,
        },
        "spec": {"functionRef": {"name": "report"}, "cron": cron},
        "status": status or {},
    }


def entry(cron: dict[str, Any], status: dict[str, Any] | None = None) -> table.Entry:
    made = table.entry_of(trigger(cron, status), None)
    assert made is not None
    return made


# --- bookkeeping -----------------------------------------------------------------------------


def test_a_new_trigger_counts_ticks_from_its_creation() -> None:
    assert entry({"schedule": "@every 2s"}).done == CREATED


def test_a_trigger_that_fired_before_continues_after_its_last_fire() -> None:
    fired = entry({"schedule": "@every 2s"}, {"lastFireTime": "2026-01-01T11:00:00Z"})
    assert fired.done == datetime.datetime(2026, 1, 1, 11, tzinfo=UTC)


def test_a_stale_status_does_not_move_the_worker_back() -> None:
    first = entry({"schedule": "@every 2s"})
    first.done = CREATED + s(100)
    again = table.entry_of(
        trigger({"schedule": "@every 2s"}, {"lastFireTime": "2026-01-01T10:00:50Z"}), first
    )
    assert again is not None
    assert again.done == CREATED + s(100)


def test_triggers_of_other_kinds_are_ignored() -> None:
    http_trigger = trigger({"schedule": "@every 2s"})
    http_trigger["spec"] = {"functionRef": {"name": "report"}, "http": {}}
    assert table.entry_of(http_trigger, None) is None


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ({"schedule": "61 * * * *"}, "minute field '61': 61 is outside 0-59"),
        ({"schedule": "0 0 * * *", "timeZone": "Mars/Olympus"}, "timeZone 'Mars/Olympus'"),
        ({"schedule": "0 0 31 2 *"}, "never fires: February has no day 31"),
        # Refused by the model's own rule, as by the API server since: still reported.
        ({"schedule": "@every 500ms"}, "@every intervals must be at least 1s"),
    ],
)
def test_a_schedule_that_cannot_fire_is_tracked_with_what_to_fix(
    cron: dict[str, Any], says: str
) -> None:
    tracked = entry(cron)
    assert tracked.schedule is None
    assert tracked.problem is not None
    assert says in tracked.problem
    assert worker.step([tracked], CREATED + s(3600)) == []
    assert tracked.next is None


def test_a_trigger_invalid_for_another_reason_than_its_schedule_is_ignored() -> None:
    broken = trigger({"schedule": "@every 2s"})
    broken["spec"]["functionRef"] = {}
    assert table.entry_of(broken, None) is None


def test_the_leader_reports_a_schedule_that_cannot_fire_as_not_ready() -> None:
    reporter = worker.Deliverer("http://127.0.0.1:9", "local", clock=lambda: CREATED)
    reporter.watch([entry({"schedule": "0 0 31 2 *"})])
    ((_, written, _),) = reporter.status._due(CREATED)
    conditions = {c["type"]: c for c in written["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["reason"] == "InvalidSchedule"
    assert conditions["Ready"]["message"] == (
        "schedule '0 0 31 2 *' never fires: February has no day 31; change the day-of-month "
        "or month field"
    )
    assert conditions["SourceReachable"]["reason"] == "InvalidSchedule"


def test_a_trigger_whose_ticks_cannot_be_computed_is_skipped_and_the_others_fire() -> None:
    # As the worker tracked "0 0 31 2 *" before it checked schedules: planning it raises.
    impossible = dataclasses.replace(
        entry({"schedule": "@every 2s"}), name="feb31", schedule=schedule.parse("0 0 31 2 *")
    )
    fine = entry({"schedule": "@every 2s"})
    firings = worker.step([impossible, fine], CREATED + s(2.004))
    assert [(f.entry.name, f.tick) for f in firings] == [("tick", CREATED + s(2))]
    assert impossible.schedule is None
    assert impossible.problem is not None
    assert "never fires" in impossible.problem
    assert worker.source_verdict(impossible).reason == "InvalidSchedule"
    assert [(f.entry.name, f.tick) for f in worker.step([impossible, fine], CREATED + s(4))] == [
        ("tick", CREATED + s(4))
    ]


def test_the_store_follows_adds_changes_and_deletes_and_wakes_the_loop_on_each() -> None:
    changed = threading.Event()
    store = table.schedules(changed)
    store.replace([trigger({"schedule": "@every 2s"})])
    assert list(store.snapshot()) == [("shop", "tick")]
    assert changed.is_set()
    changed.clear()
    store.change("MODIFIED", trigger({"schedule": "@every 5s"}))
    tracked = store.get(("shop", "tick"))
    assert tracked is not None
    assert tracked.schedule == schedule.Interval(5_000_000)
    assert changed.is_set()
    changed.clear()
    store.change("DELETED", trigger({"schedule": "@every 5s"}))
    assert store.snapshot() == {}
    assert changed.is_set()


def test_a_changed_trigger_carries_on_from_where_the_loop_left_its_entry() -> None:
    store = table.schedules(threading.Event())
    store.replace([trigger({"schedule": "@every 2s"})])
    with store.lock:
        worker.step(store.values(), CREATED + s(100))
    store.change(
        "MODIFIED", trigger({"schedule": "@every 2s"}, {"lastFireTime": "2026-01-01T10:00:50Z"})
    )
    again = store.get(("shop", "tick"))
    assert again is not None
    assert again.done == CREATED + s(100)


def test_a_step_fires_the_due_tick_and_moves_on() -> None:
    tracked = entry({"schedule": "@every 2s"})
    now = CREATED + s(2.004)
    (firing,) = worker.step([tracked], now)
    assert firing.tick == CREATED + s(2)
    assert firing.next == CREATED + s(4)
    assert tracked.done == now
    assert worker.step([tracked], now + s(0.5)) == []
    assert tracked.next == CREATED + s(4)


def test_a_suspended_trigger_fires_nothing_and_does_not_catch_up_on_resume() -> None:
    tracked = entry(
        {
            "schedule": "@every 2s",
            "suspend": True,
            "missedTicks": {"policy": "CatchUp", "deadline": "1h"},
        }
    )
    assert worker.step([tracked], CREATED + s(60)) == []
    resumed = table.entry_of(
        trigger({"schedule": "@every 2s", "missedTicks": {"policy": "CatchUp", "deadline": "1h"}}),
        tracked,
    )
    assert resumed is not None
    assert [f.tick for f in worker.step([resumed], CREATED + s(62))] == [CREATED + s(62)]


def test_catch_up_after_an_outage_fires_each_missed_tick_within_the_deadline() -> None:
    tracked = entry(
        {"schedule": "@every 2s", "missedTicks": {"policy": "CatchUp", "deadline": "5s"}}
    )
    ticks = [f.tick for f in worker.step([tracked], CREATED + s(31))]
    assert ticks == [CREATED + s(t) for t in (26, 28, 30)]


# --- delivery --------------------------------------------------------------------------------


def deliverer(activator: ActivatorStub) -> worker.Deliverer:
    return worker.Deliverer(
        activator.url,
        "local",
        record=False,
        retry_delays=(0.01, 0.01),
        clock=lambda: CREATED + s(3),
    )


def firing(cron: dict[str, Any]) -> table.Firing:
    return table.Firing(entry(cron), CREATED + s(2), CREATED + s(4))


def test_a_tick_is_invoked_through_the_invoke_api_with_an_eventbridge_event(
    activator: ActivatorStub,
) -> None:
    deliverer(activator).fire(firing({"schedule": "@every 2s"}))
    (call,) = activator.calls
    assert call.path == "/_kfn/functions/shop/report/invoke"
    assert call.headers["Kfn-Invocation-Type"] == "RequestResponse"
    event = json.loads(call.body)
    assert event["detail-type"] == "Scheduled Event"
    assert event["time"] == "2026-01-01T10:00:02Z"
    assert call.headers["Kfn-Request-Id"] == event["id"]


def test_the_users_payload_is_the_body(activator: ActivatorStub) -> None:
    deliverer(activator).fire(firing({"schedule": "@every 2s", "payload": {"job": "report"}}))
    assert json.loads(activator.calls[0].body) == {"job": "report"}


def test_a_failing_tick_is_retried_as_the_trigger_says_then_sent_to_its_destination(
    activator: ActivatorStub,
) -> None:
    for _ in range(2):
        activator.answer(500, b'{"errorType":"Boom","errorMessage":"no"}', Kfn_Function_Error="x")
    cron = {
        "schedule": "@every 2s",
        "delivery": {"maxRetries": 1, "onFailure": {"function": {"name": "failures"}}},
    }
    deliverer(activator).fire(firing(cron))
    paths = [c.path for c in activator.calls]
    assert paths == [
        "/_kfn/functions/shop/report/invoke",
        "/_kfn/functions/shop/report/invoke",
        "/_kfn/functions/shop/failures/invoke",
    ]
    record = json.loads(activator.calls[2].body)
    assert activator.calls[2].headers["Kfn-Invocation-Type"] == "Event"
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestPayload"]["detail-type"] == "Scheduled Event"
    assert record["responsePayload"] == {"errorType": "Boom", "errorMessage": "no"}


def test_a_tick_older_than_the_maximum_event_age_is_not_retried(
    activator: ActivatorStub,
) -> None:
    activator.answer(500, b"{}", Kfn_Function_Error="x")
    late = worker.Deliverer(
        activator.url,
        "local",
        record=False,
        retry_delays=(120.0,),
        clock=lambda: CREATED + s(61),
    )
    cron = {
        "schedule": "@every 2s",
        "delivery": {"maxEventAge": "60s", "onFailure": {"function": {"name": "failures"}}},
    }
    late.fire(firing(cron))
    assert [c.path.split("/")[-2] for c in activator.calls] == ["report", "failures"]
    record = json.loads(activator.calls[1].body)
    assert record["requestContext"]["condition"] == "EventAgeExceeded"


def test_only_http_activator_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="http"):
        worker.Deliverer("file:///etc/passwd", "local")


def test_a_trigger_naming_an_alias_invokes_it_and_its_failure_record_names_it(
    activator: ActivatorStub,
) -> None:
    activator.answer(500, b"{}", Kfn_Function_Error="x")
    cron = {
        "schedule": "@every 2s",
        "delivery": {
            "maxRetries": 0,
            "onFailure": {"function": {"name": "failures", "qualifier": "7"}},
        },
    }
    obj = trigger(cron)
    obj["spec"]["functionRef"]["qualifier"] = "live"
    made = table.entry_of(obj, None)
    assert made is not None
    deliverer(activator).fire(table.Firing(made, CREATED + s(2), CREATED + s(4)))
    assert [c.path for c in activator.calls] == [
        "/_kfn/functions/shop/report%3Alive/invoke",
        "/_kfn/functions/shop/failures%3A7/invoke",
    ]
    record = json.loads(activator.calls[1].body)
    assert record["requestContext"]["functionArn"] == "kfn:shop:function:report:live"


def test_a_trigger_naming_latest_invokes_the_unqualified_function(
    activator: ActivatorStub,
) -> None:
    obj = trigger({"schedule": "@every 2s"})
    obj["spec"]["functionRef"]["qualifier"] = "$LATEST"
    made = table.entry_of(obj, None)
    assert made is not None
    deliverer(activator).fire(table.Firing(made, CREATED + s(2), CREATED + s(4)))
    assert [c.path for c in activator.calls] == ["/_kfn/functions/shop/report/invoke"]
