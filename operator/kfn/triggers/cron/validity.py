"""Whether a cron Trigger's schedule can fire, and if not what to fix (pure, time passed in).

The worker reports what it finds here as the Trigger's ``Ready=False`` with reason
``InvalidSchedule`` and never fires such a Trigger; the others go on. Three things can be
wrong, each with its own message:

* the expression does not parse (``61 * * * *``): the message names the field and its range;
* the time zone is unknown to the worker's IANA database (``Mars/Olympus``);
* the expression parses but names no date that ever occurs (``0 0 31 2 *``): the calendar is
  searched for one full Gregorian cycle (:data:`schedule.CYCLE_YEARS`, 400 years) from
  ``now``, which is exact: a day pattern with no date in 400 years has none at all.

The API server's schema admits only what its patterns and CEL rules catch; this check is the
worker's own, so a Trigger admitted before a rule existed still gets its condition.
"""

from __future__ import annotations

import calendar
import datetime
from typing import Final

from kfn.triggers.cron import schedule

FORMS: Final = (
    "five cron fields (minute hour day-of-month month day-of-week, e.g. '*/5 * * * *'), "
    "'rate(5 minutes)', '@every 10s' or a macro such as '@daily'"
)


def problem(expression: str, time_zone: str, now: datetime.datetime) -> str | None:
    """What keeps ``expression`` in ``time_zone`` from ever firing after ``now``, as a
    message that says what to fix; None when it fires."""
    try:
        parsed = schedule.parse(expression)
    except schedule.ScheduleError as exc:
        return f"schedule '{expression}' is not valid: {exc}; write {FORMS}"
    try:
        schedule.zone_of(time_zone)
    except schedule.ScheduleError:
        return (
            f"timeZone '{time_zone}' is not a known IANA time zone; use a name such as "
            "'UTC' or 'Europe/Berlin'"
        )
    if isinstance(parsed, schedule.Interval):
        return None
    start = now.astimezone(schedule.UTC).date()
    if next(schedule.days_from(parsed, start), None) is not None:
        return None
    return f"schedule '{expression}' never fires: {_why(parsed)}"


def _why(cron: schedule.Cron) -> str:
    """Why no date matches. Only one cause exists: the day-of-month field names only days its
    months lack (day 30 or 31 of February). A weekday field cannot be the cause: in 400 years
    every date, 29 February included, falls on each day of the week."""
    months = [calendar.month_name[m] for m in sorted(cron.months)]
    days = " or ".join(str(d) for d in sorted(cron.days))
    verb = "has" if len(months) == 1 else "have"
    return f"{_join(months)} {verb} no day {days}; change the day-of-month or month field"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
