"""Schedules: when a cron Trigger fires, decided without I/O (time is always passed in).

Three forms of expression are understood:

* Five cron fields, ``minute hour day-of-month month day-of-week``, with ``*``, lists,
  ranges, steps (``*/5``, ``10-40/10``), month and weekday names (``JAN``, ``mon-fri``),
  ``?`` as a synonym of ``*`` and ``7`` as Sunday; and the macros ``@yearly``
  (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``), ``@hourly``.
  As in Vixie cron, when both day fields are restricted (neither starts with ``*``) a day
  matches if *either* matches; otherwise both must.
* ``rate(N minutes|hours|days)`` as in EventBridge and ``@every <duration>`` (``10s``,
  ``1m30s``, ``500ms``). Interval schedules tick on multiples of the interval since the
  Unix epoch, so every replica and every restart agrees on the ticks; their time zone
  does not matter.

Cron fields are read as wall-clock time in the Trigger's IANA time zone. Daylight saving
is handled as cron does, and documented here because users notice it twice a year:

* A local time that does not exist (skipped by a spring-forward change, such as 02:30 in
  Europe/Berlin on the last Sunday of March) fires once, at the first valid instant after
  it: the moment of the change (03:00 local). Several skipped times fire once together.
* A local time that happens twice (the hour repeated by an autumn change) fires once, at
  its first occurrence; the repeated hour does not fire again.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime
import re
import uuid
import zoneinfo
from collections.abc import Iterator, Sequence
from typing import Any, Final, Literal

from kfn.api import cron

UTC: Final = datetime.UTC
_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=UTC)

_MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_RATE: Final = re.compile(r"rate\(([1-9][0-9]*) (minute|minutes|hour|hours|day|days)\)")
_RATE_UNITS: Final = {"minute": 60, "hour": 3600, "day": 86400}
_EVERY_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_EVERY_UNITS_US: Final = {"ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000}
#: How far ahead a cron expression's days are searched. The Gregorian calendar repeats every
#: 400 years (146,097 days, exactly 20,871 weeks), so a day pattern that matches no date in 400
#: consecutive years matches none ever, and one that matches is found within them. Fewer years
#: are not enough: 29 February falls on a given weekday every 28 years at best but 40 years
#: apart across a century that is not a leap year (a Sunday in 2088, then in 2128).
CYCLE_YEARS: Final = 400


class ScheduleError(ValueError):
    """An expression that is not a valid schedule."""


@dataclasses.dataclass(frozen=True)
class Cron:
    """A parsed five-field expression: the allowed values of each field."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    def day_matches(self, day: datetime.date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_month or in_week
        return in_month and in_week


@dataclasses.dataclass(frozen=True)
class Interval:
    """A fixed interval (``rate()``, ``@every``), in microseconds."""

    micros: int


Schedule = Cron | Interval


def _value(text: str, names: dict[str, int], low: int, high: int) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit():
        raise ScheduleError(f"{text!r} is not a number or a name")
    number = int(text)
    if not low <= number <= high:
        raise ScheduleError(f"{number} is outside {low}-{high}")
    return number


def _field(text: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"bad step in {part!r}")
            step = int(step_text)
        if base in ("*", "?"):
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _value(first, names, low, high), _value(last, names, low, high)
            if start > end:
                raise ScheduleError(f"range {base!r} runs backwards")
        else:
            start = _value(base, names, low, high)
            # "5/15" means from 5 to the end in steps of 15, as in Vixie cron.
            end = high if slash else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _named_field(
    name: str, text: str, low: int, high: int, names: dict[str, int]
) -> frozenset[int]:
    """A field's values; its errors name the field, so the user knows which one to fix."""
    try:
        return _field(text, low, high, names)
    except ScheduleError as exc:
        raise ScheduleError(f"{name} field {text!r}: {exc}") from None


def _parse_cron(text: str) -> Cron:
    fields = text.split()
    if len(fields) != 5:
        raise ScheduleError(f"{text!r} does not have five fields")
    minute, hour, day, month, weekday = fields
    weekdays = _named_field("day-of-week", weekday, 0, 7, cron.DAYS)
    if 7 in weekdays:
        weekdays = (weekdays - {7}) | {0}
    return Cron(
        minutes=_named_field("minute", minute, 0, 59, {}),
        hours=_named_field("hour", hour, 0, 23, {}),
        days=_named_field("day-of-month", day, 1, 31, {}),
        months=_named_field("month", month, 1, 12, cron.MONTHS),
        weekdays=weekdays,
        days_restricted=not day.startswith(("*", "?")),
        weekdays_restricted=not weekday.startswith(("*", "?")),
    )


def parse(expression: str) -> Schedule:
    """Parses a schedule; raises :class:`ScheduleError` when it is not one."""
    text = expression.strip()
    if text in _MACROS:
        return _parse_cron(_MACROS[text])
    if match := _RATE.fullmatch(text):
        unit = match.group(2).removesuffix("s")
        return Interval(int(match.group(1)) * _RATE_UNITS[unit] * 1_000_000)
    if text.startswith("@every "):
        spec = text.removeprefix("@every ")
        parts = _EVERY_PART.findall(spec)
        if not parts or "".join(n + u for n, u in parts) != spec:
            raise ScheduleError(f"{spec!r} is not a duration such as 10s or 1m30s")
        micros = sum(round(float(n) * _EVERY_UNITS_US[u]) for n, u in parts)
        if micros < 1_000_000:
            raise ScheduleError("@every intervals must be at least 1s")
        return Interval(micros)
    if text.startswith("@"):
        raise ScheduleError(f"unknown macro {text!r}")
    return _parse_cron(text)


def _instant(local: datetime.datetime, zone: zoneinfo.ZoneInfo) -> datetime.datetime:
    """The UTC instant a wall-clock time fires at, with the DST rules of the module doc."""
    first = local.replace(tzinfo=zone, fold=0)
    utc = first.astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) == local:
        return utc  # exists; fold=0 is its first occurrence when it is repeated
    # Skipped by a spring-forward change: fire at the change itself, which lies between
    # the readings of the time with the offset after (earlier) and before (later) it.
    low = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = utc
    if low > high:
        low, high = high, low
    low_offset = low.astimezone(zone).utcoffset()
    lo, hi = 0, int((high - low).total_seconds())
    while lo < hi:
        mid = (lo + hi) // 2
        if (low + datetime.timedelta(seconds=mid)).astimezone(zone).utcoffset() == low_offset:
            lo = mid + 1
        else:
            hi = mid
    return low + datetime.timedelta(seconds=lo)


def zone_of(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone; raises :class:`ScheduleError` for an unknown name."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown time zone {name!r}") from exc


def next_fire(
    schedule: Schedule | str, time_zone: str, after: datetime.datetime
) -> datetime.datetime:
    """The first tick strictly after ``after`` (aware), as an aware UTC datetime."""
    if isinstance(schedule, str):
        schedule = parse(schedule)
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    if isinstance(schedule, Interval):
        elapsed = (after.astimezone(UTC) - _EPOCH) // datetime.timedelta(microseconds=1)
        ticks = elapsed // schedule.micros + 1
        return _EPOCH + datetime.timedelta(microseconds=ticks * schedule.micros)
    zone = zone_of(time_zone)
    # Start a day early: the first occurrence of a repeated local time can lie before
    # ``after``'s own wall-clock reading.
    start = after.astimezone(zone).date() - datetime.timedelta(days=1)
    hours, minutes = sorted(schedule.hours), sorted(schedule.minutes)
    for day in days_from(schedule, start):
        for hour in hours:
            for minute in minutes:
                local = datetime.datetime(day.year, day.month, day.day, hour, minute)
                instant = _instant(local, zone)
                if instant > after:
                    return instant
    raise ScheduleError("the schedule never fires")


def days_from(cron: Cron, start: datetime.date) -> Iterator[datetime.date]:
    """The days ``cron`` fires on, from ``start`` on, oldest first, for one calendar cycle
    (:data:`CYCLE_YEARS`): when this yields nothing, the schedule never fires.

    Only the days a month can match are looked at (day 31 of February is not a date, and
    with a day-of-month field alone only its days are candidates), so even a schedule that
    never fires is searched in a few thousand steps.
    """
    months, days = sorted(cron.months), sorted(cron.days)
    either = cron.days_restricted and cron.weekdays_restricted
    last_year = min(start.year + CYCLE_YEARS, datetime.MAXYEAR)
    for year in range(start.year, last_year + 1):
        for month in months:
            if (year, month) < (start.year, start.month):
                continue
            length = calendar.monthrange(year, month)[1]
            candidates = range(1, length + 1) if either else days
            for number in candidates:
                if number > length:
                    break
                day = datetime.date(year, month, number)
                if day >= start and cron.day_matches(day):
                    yield day


def ticks_between(
    schedule: Schedule,
    time_zone: str,
    after: datetime.datetime,
    until: datetime.datetime,
    *,
    limit: int = 1000,
) -> list[datetime.datetime]:
    """Ticks in ``(after, until]``, oldest first, at most ``limit`` (the newest kept)."""
    ticks: list[datetime.datetime] = []
    if isinstance(schedule, Interval) and until > after:
        # Jump close to ``until`` instead of walking a long outage tick by tick.
        span = datetime.timedelta(microseconds=schedule.micros * (limit + 1))
        after = max(after, until - span)
    tick = next_fire(schedule, time_zone, after)
    while tick <= until:
        ticks.append(tick)
        if len(ticks) > limit:
            ticks.pop(0)
        tick = next_fire(schedule, time_zone, tick)
    return ticks


Policy = Literal["Skip", "CatchUp"]

#: How late a tick may be and still count as on time under the Skip policy: it absorbs
#: the worker's own wake-up delay and a leader hand-over, not an outage.
ON_TIME_GRACE: Final = datetime.timedelta(seconds=10)
#: The CatchUp deadline when the Trigger sets none.
DEFAULT_DEADLINE: Final = datetime.timedelta(hours=1)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to do now: the ticks to fire (oldest first) and the next tick after ``now``."""

    fire: tuple[datetime.datetime, ...]
    skipped: int
    next: datetime.datetime


def plan(
    schedule: Schedule,
    time_zone: str,
    *,
    last_fire: datetime.datetime,
    now: datetime.datetime,
    policy: Policy = "Skip",
    deadline: datetime.timedelta | None = None,
    grace: datetime.timedelta = ON_TIME_GRACE,
) -> Plan:
    """Which ticks after ``last_fire`` (the last tick fired, or the Trigger's creation) fire.

    * ``Skip``: only ticks younger than ``grace`` fire (late, say after a leader hand-over,
      but not missed); older ticks were missed during an outage and are forgotten.
    * ``CatchUp``: every due tick younger than ``deadline`` (default one hour), oldest first;
      the newest tick still fires within ``grace`` when the deadline is shorter.
    """
    due = ticks_between(schedule, time_zone, last_fire, now)
    if policy == "CatchUp":
        limit = deadline if deadline is not None else DEFAULT_DEADLINE
        fire = tuple(t for t in due if now - t <= limit)
        if due and not fire and now - due[-1] <= grace:
            fire = (due[-1],)  # a deadline shorter than the grace never drops an on-time tick
    else:
        fire = tuple(t for t in due if now - t <= grace)
    return Plan(fire=fire, skipped=len(due) - len(fire), next=next_fire(schedule, time_zone, now))


# --- the event ---------------------------------------------------------------------------


def event_id(trigger_uid: str, tick: datetime.datetime) -> str:
    """A UUID naming one tick of one Trigger: the same on every replica and every retry."""
    base = uuid.UUID(trigger_uid) if _is_uuid(trigger_uid) else uuid.NAMESPACE_URL
    return str(uuid.uuid5(base, f"{trigger_uid}/{tick.astimezone(UTC).isoformat()}"))


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def resource_name(region: str, namespace: str, name: str) -> str:
    """The Trigger as an ARN-shaped string, where EventBridge puts the rule's ARN."""
    return f"arn:kfn:events:{region}:{namespace}:rule/{name}"


def format_event_time(tick: datetime.datetime) -> str:
    """EventBridge's ``time``: RFC 3339 in UTC, with milliseconds only when not whole."""
    utc = tick.astimezone(UTC)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduled_event(
    *,
    payload: Any,
    tick: datetime.datetime,
    trigger_uid: str,
    namespace: str,
    name: str,
    region: str,
) -> Any:
    """The event a tick sends: the user's payload, or an EventBridge scheduled event."""
    if payload is not None:
        return payload
    return {
        "version": "0",
        "id": event_id(trigger_uid, tick),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": namespace,
        "time": format_event_time(tick),
        "region": region,
        "resources": [resource_name(region, namespace, name)],
        "detail": {},
    }


def parse_time(text: str | None) -> datetime.datetime | None:
    """An RFC 3339 time from an object's status, or None."""
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def first_fire_base(
    candidates: Sequence[datetime.datetime | None], fallback: datetime.datetime
) -> datetime.datetime:
    """The newest known point up to which ticks are done (the fallback when none is known)."""
    known = [c for c in candidates if c is not None]
    return max(known) if known else fallback
