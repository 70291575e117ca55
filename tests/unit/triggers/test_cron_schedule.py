"""Cron expressions, time zones and daylight saving, interval schedules."""

from __future__ import annotations

import datetime

import pytest

from kfn.triggers.cron import schedule

UTC = datetime.UTC


def at(*args: int) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=UTC)  # type: ignore[arg-type,misc]


def fires(expression: str, after: datetime.datetime, count: int, tz: str = "UTC") -> list[str]:
    result, tick = [], after
    for _ in range(count):
        tick = schedule.next_fire(expression, tz, tick)
        result.append(tick.strftime("%Y-%m-%d %H:%M %a"))
    return result


# --- parsing ---------------------------------------------------------------------------------


def test_lists_ranges_and_steps_expand_to_the_values_they_name() -> None:
    parsed = schedule.parse("0,30 9-17/4 */10 1-3 *")
    assert isinstance(parsed, schedule.Cron)
    assert parsed.minutes == {0, 30}
    assert parsed.hours == {9, 13, 17}
    assert parsed.days == {1, 11, 21, 31}
    assert parsed.months == {1, 2, 3}


def test_month_and_weekday_names_are_case_insensitive_and_seven_is_sunday() -> None:
    parsed = schedule.parse("0 0 * jan-Mar,DEC MON-fri,7")
    assert isinstance(parsed, schedule.Cron)
    assert parsed.months == {1, 2, 3, 12}
    assert parsed.weekdays == {0, 1, 2, 3, 4, 5}


def test_a_start_with_a_step_runs_to_the_end_of_the_field() -> None:
    parsed = schedule.parse("5/20 * * * *")
    assert isinstance(parsed, schedule.Cron)
    assert parsed.minutes == {5, 25, 45}


@pytest.mark.parametrize(
    "expression",
    [
        "* * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "5-1 * * * *",
        "* * * FOO *",
        "@sometimes",
        "@every 500ms",
        "@every 10x",
    ],
)
def test_invalid_expressions_are_refused(expression: str) -> None:
    with pytest.raises(schedule.ScheduleError):
        schedule.parse(expression)


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(schedule.ScheduleError):
        schedule.next_fire("* * * * *", "Mars/Olympus_Mons", at(2026, 1, 1))


def test_macros_mean_their_five_field_forms() -> None:
    after = at(2026, 5, 13, 10, 17)
    assert fires("@hourly", after, 1) == fires("0 * * * *", after, 1)
    assert fires("@daily", after, 1) == ["2026-05-14 00:00 Thu"]
    assert fires("@weekly", after, 1) == ["2026-05-17 00:00 Sun"]
    assert fires("@monthly", after, 1) == ["2026-06-01 00:00 Mon"]
    assert fires("@yearly", after, 1) == fires("@annually", after, 1) == ["2027-01-01 00:00 Fri"]


# --- next fire in UTC ------------------------------------------------------------------------


def test_the_next_fire_is_strictly_after_the_given_time() -> None:
    assert schedule.next_fire("*/15 * * * *", "UTC", at(2026, 1, 1, 10, 15)) == at(
        2026, 1, 1, 10, 30
    )
    assert schedule.next_fire("*/15 * * * *", "UTC", at(2026, 1, 1, 10, 14, 59)) == at(
        2026, 1, 1, 10, 15
    )


def test_weekdays_only_skip_the_weekend() -> None:
    assert fires("0 9 * * MON-FRI", at(2026, 5, 15, 12), 2) == [
        "2026-05-18 09:00 Mon",
        "2026-05-19 09:00 Tue",
    ]


def test_day_of_month_or_day_of_week_fires_when_both_are_restricted() -> None:
    # Vixie cron: the 13th of the month OR any Friday.
    assert fires("0 0 13 * FRI", at(2026, 3, 1), 4) == [
        "2026-03-06 00:00 Fri",
        "2026-03-13 00:00 Fri",
        "2026-03-20 00:00 Fri",
        "2026-03-27 00:00 Fri",
    ]
    assert fires("0 0 13 * MON", at(2026, 4, 1), 3) == [
        "2026-04-06 00:00 Mon",
        "2026-04-13 00:00 Mon",
        "2026-04-20 00:00 Mon",
    ]


def test_a_star_day_field_leaves_the_other_day_field_in_charge() -> None:
    assert fires("0 0 */1 * FRI", at(2026, 3, 1), 2) == [
        "2026-03-06 00:00 Fri",
        "2026-03-13 00:00 Fri",
    ]


def test_february_the_29th_fires_only_in_leap_years() -> None:
    assert fires("0 12 29 2 *", at(2026, 1, 1), 2) == [
        "2028-02-29 12:00 Tue",
        "2032-02-29 12:00 Sun",
    ]


def test_a_day_that_never_comes_is_an_error() -> None:
    with pytest.raises(schedule.ScheduleError):
        schedule.next_fire("0 0 31 2 *", "UTC", at(2026, 1, 1))


# --- time zones and daylight saving ----------------------------------------------------------


def test_cron_fields_are_read_in_the_time_zone() -> None:
    # 09:00 in New York in winter is 14:00 UTC, in summer 13:00 UTC.
    assert schedule.next_fire("0 9 * * *", "America/New_York", at(2026, 1, 10)) == at(
        2026, 1, 10, 14
    )
    assert schedule.next_fire("0 9 * * *", "America/New_York", at(2026, 7, 10)) == at(
        2026, 7, 10, 13
    )


@pytest.mark.parametrize(
    ("tz", "day", "change_utc"),
    [
        # Berlin: 2026-03-29 02:00 CET becomes 03:00 CEST (01:00 UTC).
        ("Europe/Berlin", (2026, 3, 29), at(2026, 3, 29, 1)),
        # New York: 2026-03-08 02:00 EST becomes 03:00 EDT (07:00 UTC).
        ("America/New_York", (2026, 3, 8), at(2026, 3, 8, 7)),
    ],
)
def test_a_time_skipped_by_spring_forward_fires_once_at_the_change(
    tz: str, day: tuple[int, int, int], change_utc: datetime.datetime
) -> None:
    day_before = datetime.datetime(*day, tzinfo=UTC)  # before 02:00 local on the day
    assert schedule.next_fire("30 2 * * *", tz, day_before) == change_utc
    # Every skipped quarter hour collapses into the one fire at the change.
    assert schedule.next_fire("*/15 2 * * *", tz, day_before) == change_utc
    assert schedule.next_fire("*/15 2 * * *", tz, change_utc) > change_utc + datetime.timedelta(
        hours=20
    )
    # The next day is normal again: 02:30 local in summer time.
    after = schedule.next_fire("30 2 * * *", tz, change_utc)
    assert after.astimezone(schedule.zone_of(tz)).strftime("%H:%M") == "02:30"


def test_hourly_jobs_lose_no_hour_but_the_missing_one_across_spring_forward() -> None:
    ticks = [
        schedule.next_fire("0 * * * *", "Europe/Berlin", at(2026, 3, 28, 22)),
    ]
    for _ in range(4):
        ticks.append(schedule.next_fire("0 * * * *", "Europe/Berlin", ticks[-1]))
    # 00:00, 01:00, (02:00 does not exist) 03:00, 04:00, 05:00 local: one hour apart in UTC.
    assert [t.hour for t in ticks] == [23, 0, 1, 2, 3]


@pytest.mark.parametrize(
    ("tz", "first_utc", "after_repeat_utc"),
    [
        # Berlin: 2026-10-25 03:00 CEST falls back to 02:00 CET; 02:30 happens at 00:30 and
        # 01:30 UTC.
        ("Europe/Berlin", at(2026, 10, 25, 0, 30), at(2026, 10, 26, 1, 30)),
        # New York: 2026-11-01 02:00 EDT falls back to 01:00 EST; 01:30 happens at 05:30
        # and 06:30 UTC.
        ("America/New_York", at(2026, 11, 1, 5, 30), at(2026, 11, 2, 6, 30)),
    ],
)
def test_a_time_repeated_by_fall_back_fires_once_at_its_first_occurrence(
    tz: str, first_utc: datetime.datetime, after_repeat_utc: datetime.datetime
) -> None:
    local = first_utc.astimezone(schedule.zone_of(tz))
    expression = f"{local.minute} {local.hour} * * *"
    day_before = first_utc - datetime.timedelta(hours=20)
    assert schedule.next_fire(expression, tz, day_before) == first_utc
    # Not again an hour later when the wall clock shows the same time: the next day.
    assert schedule.next_fire(expression, tz, first_utc) == after_repeat_utc


def test_the_repeated_hour_does_not_fire_a_second_time_for_minute_schedules() -> None:
    # Berlin: 02:00-02:59 local runs twice on 2026-10-25 (00:00-00:59 and 01:00-01:59 UTC).
    after = at(2026, 10, 25, 0, 45)
    assert schedule.next_fire("*/30 * * * *", "Europe/Berlin", after) == at(2026, 10, 25, 2)
    # A worker that wakes up during the repetition waits for 03:00 local too.
    assert schedule.next_fire("*/30 * * * *", "Europe/Berlin", at(2026, 10, 25, 1, 10)) == at(
        2026, 10, 25, 2
    )


# --- interval schedules ----------------------------------------------------------------------


def test_every_ticks_on_multiples_of_the_interval_since_the_epoch() -> None:
    assert schedule.next_fire("@every 2s", "UTC", at(2026, 1, 1, 0, 0, 1)) == at(
        2026, 1, 1, 0, 0, 2
    )
    assert schedule.next_fire("@every 2s", "UTC", at(2026, 1, 1, 0, 0, 2)) == at(
        2026, 1, 1, 0, 0, 4
    )
    assert schedule.next_fire("@every 1m30s", "UTC", at(2026, 1, 1)) == at(2026, 1, 1, 0, 1, 30)


def test_every_with_fractions_keeps_exact_ticks() -> None:
    tick = schedule.next_fire("@every 1.5s", "UTC", at(2026, 1, 1))
    assert tick == at(2026, 1, 1) + datetime.timedelta(seconds=1.5)
    assert schedule.next_fire("@every 1500ms", "UTC", at(2026, 1, 1)) == tick


def test_rate_expressions_are_fixed_intervals_whatever_the_time_zone() -> None:
    after = at(2026, 3, 29, 0, 30)
    assert schedule.next_fire("rate(1 hour)", "Europe/Berlin", after) == at(2026, 3, 29, 1)
    assert schedule.next_fire("rate(5 minutes)", "UTC", after) == at(2026, 3, 29, 0, 35)
    assert schedule.next_fire("rate(2 days)", "UTC", after) - after <= datetime.timedelta(days=2)


def test_ticks_between_lists_each_tick_once_oldest_first() -> None:
    ticks = schedule.ticks_between(
        schedule.parse("@every 10s"), "UTC", at(2026, 1, 1), at(2026, 1, 1, 0, 0, 35)
    )
    assert ticks == [at(2026, 1, 1, 0, 0, s) for s in (10, 20, 30)]


def test_ticks_between_keeps_only_the_newest_after_a_long_outage() -> None:
    ticks = schedule.ticks_between(
        schedule.parse("@every 1s"), "UTC", at(2026, 1, 1), at(2026, 1, 2), limit=5
    )
    assert ticks == [at(2026, 1, 2) - datetime.timedelta(seconds=s) for s in (4, 3, 2, 1, 0)]
