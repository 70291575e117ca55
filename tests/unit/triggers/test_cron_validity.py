"""What the cron worker finds wrong with a schedule, in the words the user reads."""

from __future__ import annotations

import datetime

import pytest

from kfn.triggers.cron import schedule, validity

NOW = datetime.datetime(2026, 5, 1, 12, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("expression", "time_zone", "message"),
    [
        (
            "61 * * * *",
            "UTC",
            "schedule '61 * * * *' is not valid: minute field '61': 61 is outside 0-59; "
            f"write {validity.FORMS}",
        ),
        (
            "0 9 * * MON-FRY",
            "UTC",
            "schedule '0 9 * * MON-FRY' is not valid: day-of-week field 'MON-FRY': 'FRY' is "
            f"not a number or a name; write {validity.FORMS}",
        ),
        (
            "@fortnightly",
            "UTC",
            f"schedule '@fortnightly' is not valid: unknown macro '@fortnightly'; write "
            f"{validity.FORMS}",
        ),
        (
            "0 0 * * *",
            "Mars/Olympus",
            "timeZone 'Mars/Olympus' is not a known IANA time zone; use a name such as 'UTC' "
            "or 'Europe/Berlin'",
        ),
        (
            "0 0 31 2 *",
            "UTC",
            "schedule '0 0 31 2 *' never fires: February has no day 31; change the "
            "day-of-month or month field",
        ),
        (
            "0 0 30,31 2 MON",
            "UTC",
            None,  # both day fields restricted: any Monday of February fires
        ),
        (
            "0 0 31 2,4,6 *",
            "Europe/Berlin",
            "schedule '0 0 31 2,4,6 *' never fires: February, April and June have no day 31; "
            "change the day-of-month or month field",
        ),
        (
            "0 0 30 FEB */7",
            "UTC",
            "schedule '0 0 30 FEB */7' never fires: February has no day 30; change the "
            "day-of-month or month field",
        ),
        ("0 0 29 2 *", "UTC", None),
        ("0 0 29 2 */7", "UTC", None),  # 29 February that is a Sunday: 2032, ... 2088, 2128
        ("@every 1s", "UTC", None),
        ("rate(5 minutes)", "America/New_York", None),
    ],
)
def test_a_schedule_that_cannot_fire_says_what_to_fix(
    expression: str, time_zone: str, message: str | None
) -> None:
    assert validity.problem(expression, time_zone, NOW) == message


def test_an_interval_schedule_with_an_unknown_time_zone_is_refused_as_well() -> None:
    # The zone does not change an interval's ticks, but a typo in it is still a mistake.
    assert validity.problem("@every 10s", "Europe/Berln", NOW) is not None


def test_a_29th_of_february_forty_years_away_is_found_not_declared_impossible() -> None:
    # After 2088 the next 29 February on a Sunday is in 2128 (2100 is not a leap year);
    # a search of 28 years would call this schedule impossible.
    later = datetime.datetime(2088, 3, 1, tzinfo=datetime.UTC)
    assert validity.problem("0 12 29 2 */7", "UTC", later) is None
    assert schedule.next_fire("0 12 29 2 */7", "UTC", later) == datetime.datetime(
        2128, 2, 29, 12, tzinfo=datetime.UTC
    )


def test_the_search_for_a_date_covers_one_calendar_cycle_and_no_more() -> None:
    cron = schedule.parse("0 0 31 2 *")
    assert isinstance(cron, schedule.Cron)
    assert list(schedule.days_from(cron, NOW.date())) == []
    every_day = schedule.parse("0 0 * * *")
    assert isinstance(every_day, schedule.Cron)
    days = list(schedule.days_from(every_day, datetime.date(2000, 1, 1)))
    assert days[0] == datetime.date(2000, 1, 1)
    assert days[-1] == datetime.date(2000 + schedule.CYCLE_YEARS, 12, 31)
