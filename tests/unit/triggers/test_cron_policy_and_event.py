"""Missed ticks after an outage, and the event a tick sends."""

from __future__ import annotations

import datetime
import uuid

from kfn.triggers.cron import schedule

UTC = datetime.UTC
MINUTELY = schedule.parse("* * * * *")


def at(*args: int) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=UTC)  # type: ignore[arg-type,misc]


def s(seconds: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=seconds)


# --- missed ticks ----------------------------------------------------------------------------


def test_a_tick_that_just_came_due_fires_under_either_policy() -> None:
    for policy in ("Skip", "CatchUp"):
        plan = schedule.plan(
            MINUTELY,
            "UTC",
            last_fire=at(2026, 1, 1, 10),
            now=at(2026, 1, 1, 10, 1, 0, 300),
            policy=policy,
        )
        assert plan.fire == (at(2026, 1, 1, 10, 1),)
        assert plan.skipped == 0
        assert plan.next == at(2026, 1, 1, 10, 2)


def test_nothing_fires_before_the_next_tick() -> None:
    plan = schedule.plan(
        MINUTELY, "UTC", last_fire=at(2026, 1, 1, 10), now=at(2026, 1, 1, 10, 0, 59)
    )
    assert plan.fire == ()
    assert plan.next == at(2026, 1, 1, 10, 1)


def test_skip_forgets_ticks_missed_during_an_outage() -> None:
    plan = schedule.plan(
        MINUTELY,
        "UTC",
        last_fire=at(2026, 1, 1, 10),
        now=at(2026, 1, 1, 10, 30, 30),
        policy="Skip",
    )
    assert plan.fire == ()
    assert plan.skipped == 30
    assert plan.next == at(2026, 1, 1, 10, 31)


def test_skip_still_fires_the_latest_tick_when_the_worker_is_only_a_little_late() -> None:
    plan = schedule.plan(
        MINUTELY,
        "UTC",
        last_fire=at(2026, 1, 1, 10),
        now=at(2026, 1, 1, 10, 5, 3),
        policy="Skip",
    )
    assert plan.fire == (at(2026, 1, 1, 10, 5),)
    assert plan.skipped == 4


def test_skip_fires_every_tick_that_is_late_but_within_the_grace() -> None:
    # A leader hand-over of a few seconds delays second-level ticks; it does not drop them.
    plan = schedule.plan(
        schedule.parse("@every 2s"),
        "UTC",
        last_fire=at(2026, 1, 1, 10),
        now=at(2026, 1, 1, 10, 0, 7),
        policy="Skip",
        grace=s(5),
    )
    assert plan.fire == (
        at(2026, 1, 1, 10, 0, 2),
        at(2026, 1, 1, 10, 0, 4),
        at(2026, 1, 1, 10, 0, 6),
    )
    assert plan.skipped == 0


def test_catch_up_fires_missed_ticks_oldest_first_within_the_deadline() -> None:
    plan = schedule.plan(
        MINUTELY,
        "UTC",
        last_fire=at(2026, 1, 1, 10),
        now=at(2026, 1, 1, 10, 10, 30),
        policy="CatchUp",
        deadline=s(180),
    )
    assert plan.fire == tuple(at(2026, 1, 1, 10, m) for m in (8, 9, 10))
    assert plan.skipped == 7


def test_catch_up_defaults_to_a_one_hour_deadline() -> None:
    plan = schedule.plan(
        MINUTELY, "UTC", last_fire=at(2026, 1, 1, 8), now=at(2026, 1, 1, 10), policy="CatchUp"
    )
    assert len(plan.fire) == 61
    assert plan.fire[0] == at(2026, 1, 1, 9)


def test_a_tiny_catch_up_deadline_does_not_drop_a_tick_that_is_on_time() -> None:
    plan = schedule.plan(
        MINUTELY,
        "UTC",
        last_fire=at(2026, 1, 1, 10),
        now=at(2026, 1, 1, 10, 1, 2),
        policy="CatchUp",
        deadline=s(1),
    )
    assert plan.fire == (at(2026, 1, 1, 10, 1),)


def test_ticks_at_or_before_the_last_fire_never_fire_again() -> None:
    plan = schedule.plan(
        MINUTELY,
        "UTC",
        last_fire=at(2026, 1, 1, 10, 1),
        now=at(2026, 1, 1, 10, 1, 5),
        policy="CatchUp",
    )
    assert plan.fire == ()


def test_the_newest_known_point_wins_as_the_base_of_the_plan() -> None:
    created = at(2026, 1, 1)
    assert schedule.first_fire_base([None, None], created) == created
    assert schedule.first_fire_base([at(2026, 1, 2), None, at(2026, 1, 3)], created) == at(
        2026, 1, 3
    )


# --- the event -------------------------------------------------------------------------------

UID = "6f1c2f1e-8b9a-4f4e-9d55-0c1f3f5e2a10"


def test_without_a_payload_the_event_is_an_eventbridge_scheduled_event() -> None:
    tick = at(2026, 5, 1, 12, 30)
    event = schedule.scheduled_event(
        payload=None, tick=tick, trigger_uid=UID, namespace="shop", name="nightly", region="local"
    )
    assert event["version"] == "0"
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["account"] == "shop"
    assert event["region"] == "local"
    assert event["time"] == "2026-05-01T12:30:00Z"
    assert event["resources"] == ["arn:kfn:events:local:shop:rule/nightly"]
    assert event["detail"] == {}
    assert str(uuid.UUID(event["id"])) == event["id"]


def test_the_event_id_names_one_tick_of_one_trigger() -> None:
    tick = at(2026, 5, 1, 12, 30)
    same = schedule.event_id(UID, tick)
    assert same == schedule.event_id(UID, tick.astimezone(datetime.timezone(s(3600))))
    assert same != schedule.event_id(UID, tick + s(60))
    assert same != schedule.event_id(str(uuid.uuid4()), tick)


def test_a_payload_is_sent_as_it_is() -> None:
    payload = {"job": "report", "items": [1, 2]}
    event = schedule.scheduled_event(
        payload=payload,
        tick=at(2026, 5, 1),
        trigger_uid=UID,
        namespace="a",
        name="b",
        region="local",
    )
    assert event == payload
    assert (
        schedule.scheduled_event(
            payload="ping",
            tick=at(2026, 5, 1),
            trigger_uid=UID,
            namespace="a",
            name="b",
            region="local",
        )
        == "ping"
    )


def test_sub_second_ticks_keep_their_milliseconds_in_the_event_time() -> None:
    assert schedule.format_event_time(at(2026, 1, 1) + s(1.5)) == "2026-01-01T00:00:01.500Z"
    assert schedule.parse_time("2026-01-01T00:00:01.500Z") == at(2026, 1, 1) + s(1.5)
    assert schedule.parse_time(None) is None
