"""The grammar of a cron Trigger's schedule, checked by the API server (CEL) and here alike.

The cron worker (``kfn.triggers.cron.schedule``) runs four shapes of schedule, and admission
accepts what it runs, spelled on one line with single spaces or more between cron fields:

* five cron fields, ``minute hour day-of-month month day-of-week``, each ``*``, ``?`` or a
  list (``,``) of values and ranges (``-``), each with an optional step (``/N``, N ≥ 1);
  ``5/20`` runs from 5 to the end of the field. Minutes are 0-59, hours 0-23, days of the
  month 1-31, months 1-12 or JAN-DEC, days of the week 0-7 (0 and 7 are Sunday) or SUN-SAT;
  names in any case, numbers with leading zeros. A range never runs backwards.
* the macros ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily``
  (``@midnight``) and ``@hourly``;
* ``@every <duration>`` in Go's spelling (``10s``, ``1m30s``, ``500ms`` parts);
* ``rate(N minute|minutes|hour|hours|day|days)`` as in EventBridge.

Intervals (``@every`` and ``rate()``) run from 1 second to 365 days. The lower bound is the
worker's own: ticks finer than a second would flood the function. The upper bound is ours: an
interval ticks on multiples of itself since the Unix epoch, so a longer one first fires at an
arbitrary instant years ahead (use ``@yearly`` or cron fields for that), and the bound keeps
every interval within what CEL's ``duration()`` (about 292 years) and the worker's date
arithmetic (the year 9999) can hold.

What CEL cannot check is left to the cron worker, which reports ``Ready=False`` with reason
``InvalidSchedule``: whether a time zone exists, and dates that never come (``0 0 31 2 *``).

Each rule below is a CEL expression with its Python twin and the same message. Every regular
expression here is written once and read by both RE2 (CEL's ``matches``) and Python's ``re``,
in the subset the two agree on; the twins use :func:`re.fullmatch` on patterns anchored with
``^`` and ``$``, which is what ``matches`` does with them.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Final

from kfn.api import meta
from kfn.api.meta import Rule

_SECOND_MICROS: Final = 1_000_000
MAX_INTERVAL_SECONDS: Final = 365 * 86400
"""Longest ``@every`` or ``rate()`` interval: 365 days (see the module doc)."""
MAX_EVERY: Final = f"{MAX_INTERVAL_SECONDS // 3600}h"
""":data:`MAX_INTERVAL_SECONDS` as a duration CEL reads (8760h)."""

_WORD: Final = r"[^ ]+"
FIVE_FIELDS: Final = rf"^{_WORD}( +{_WORD}){{4}}$"
"""Five space-separated words: the shape the field rules look into."""

_STEP: Final = r"/0*[1-9][0-9]*"

MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
        start=1,
    )
}
DAYS: Final = {
    name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))
}
_NAMES: Final = {**MONTHS, **DAYS}


@dataclasses.dataclass(frozen=True)
class Field:
    """One of the five cron fields: its place, what it is called and which values it takes."""

    position: int
    name: str
    values: str
    """The values as the message states them, e.g. ``0-59``."""
    value_pattern: str
    """One value: a number in range (leading zeros allowed) or a name, in any case."""

    @property
    def pattern(self) -> str:
        """The whole field: a list of ``*``, ``?``, values and ranges, each with a step."""
        value = self.value_pattern
        part = rf"(\*|\?|{value}(-{value})?)({_STEP})?"
        return rf"{part}(,{part})*"

    @property
    def schedule_pattern(self) -> str:
        """A five-field schedule whose field at :attr:`position` is well formed."""
        before = rf"({_WORD} +){{{self.position - 1}}}" if self.position > 1 else ""
        after = rf"( +{_WORD}){{{5 - self.position}}}" if self.position < 5 else ""
        return rf"^{before}({self.pattern}){after}$"

    @property
    def message(self) -> str:
        return (
            f"cron field {self.position} ({self.name}) takes {self.values}: a value, *, a "
            "range (1-5), a step of 1 or more (*/15, 10-40/10) or a list of these (0,30)"
        )


def _names(names: dict[str, int]) -> str:
    return "(?i:" + "|".join(names) + ")"


FIELDS: Final = (
    Field(1, "minute", "0-59", r"0*[1-5]?[0-9]"),
    Field(2, "hour", "0-23", r"0*(1?[0-9]|2[0-3])"),
    Field(3, "day-of-month", "1-31", r"0*([1-9]|[12][0-9]|3[01])"),
    Field(4, "month", "1-12 or JAN-DEC", rf"(0*([1-9]|1[0-2])|{_names(MONTHS)})"),
    Field(5, "day-of-week", "0-7 (0 and 7 are Sunday) or SUN-SAT", rf"(0*[0-7]|{_names(DAYS)})"),
)

CRON_PATTERN: Final = "^" + " +".join(f"({field.pattern})" for field in FIELDS) + "$"
"""A five-field schedule whose every field is well formed."""

MACROS: Final = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")

_RATE_UNITS: Final = {
    "minute": 60,
    "minutes": 60,
    "hour": 3600,
    "hours": 3600,
    "day": 86400,
    "days": 86400,
}
RATE_PATTERN: Final = r"^rate\([1-9][0-9]{0,8} (minute|minutes|hour|hours|day|days)\)$"
"""At most nine digits, so CEL's ``int()`` never overflows on the way to the bound."""


def _is_cron(schedule: str) -> bool:
    return not schedule.startswith(("@", "rate("))


def has_five_fields(schedule: str) -> bool:
    """Twin of the field-count rule."""
    return not _is_cron(schedule) or re.fullmatch(FIVE_FIELDS, schedule) is not None


def _field_check(field: Field) -> Rule:
    def check(schedule: str) -> bool:
        if not _is_cron(schedule) or re.fullmatch(FIVE_FIELDS, schedule) is None:
            return True
        return re.fullmatch(field.schedule_pattern, schedule) is not None

    return Rule(
        cel=f"self.startsWith('@') || self.startsWith('rate(') || !self.matches(r'{FIVE_FIELDS}')"
        f" || self.matches(r'{field.schedule_pattern}')",
        message=field.message,
        check=check,
    )


def _value(text: str) -> int:
    upper = text.upper()
    return _NAMES[upper] if upper in _NAMES else int(text)


RANGE_PATTERN: Final = r"[0-9A-Za-z]+-[0-9A-Za-z]+"
"""A range inside a well-formed field (``10-20``, ``mon-FRI``): what the range rule looks at."""


def ranges_run_upwards(schedule: str) -> bool:
    """Twin of the range rule: every ``a-b`` in a well-formed cron schedule has ``a <= b``."""
    if re.fullmatch(CRON_PATTERN, schedule) is None:
        return True
    for found in re.findall(RANGE_PATTERN, schedule):
        first, last = found.split("-")
        if _value(first) > _value(last):
            return False
    return True


_CEL_NAMES: Final = "{" + ", ".join(f"'{name}': {number}" for name, number in _NAMES.items()) + "}"


def _cel_value(text: str) -> str:
    """CEL for the number of one value: its name's number, else the digits read as an int."""
    upper = f"{text}.upperAscii()"
    return f"({upper} in {_CEL_NAMES} ? {_CEL_NAMES}[{upper}] : int({text}))"


_CEL_RANGE_START: Final = _cel_value("r.split('-')[0]")
_CEL_RANGE_END: Final = _cel_value("r.split('-')[1]")


def is_macro(schedule: str) -> bool:
    """Twin of the macro rule."""
    return not schedule.startswith("@") or schedule.startswith("@every ") or schedule in MACROS


def every_in_bounds(schedule: str) -> bool:
    """Twin of the ``@every`` rule: a duration from 1s to :data:`MAX_EVERY`."""
    if not schedule.startswith("@every "):
        return True
    duration = schedule.removeprefix("@every ")
    if re.fullmatch(meta.DURATION_PATTERN, duration) is None:
        return False
    micros = meta.duration_micros(duration)
    return _SECOND_MICROS <= micros <= MAX_INTERVAL_SECONDS * _SECOND_MICROS


def rate_in_bounds(schedule: str) -> bool:
    """Twin of the ``rate()`` rule."""
    if not schedule.startswith("rate("):
        return True
    if re.fullmatch(RATE_PATTERN, schedule) is None:
        return False
    count, unit = schedule.removeprefix("rate(").removesuffix(")").split(" ")
    return int(count) * _RATE_UNITS[unit] <= MAX_INTERVAL_SECONDS


RULES: Final[tuple[Rule, ...]] = (
    Rule(
        cel=f"self.startsWith('@') || self.startsWith('rate(') || self.matches(r'{FIVE_FIELDS}')",
        message="a cron schedule has five fields separated by spaces: minute hour day-of-month "
        "month day-of-week (e.g. */5 * * * *)",
        check=has_five_fields,
    ),
    *(_field_check(field) for field in FIELDS),
    Rule(
        cel=f"!self.matches(r'{CRON_PATTERN}') || self.findAll(r'{RANGE_PATTERN}')"
        f".all(r, {_CEL_RANGE_START} <= {_CEL_RANGE_END})",
        message="ranges in a cron schedule run from low to high (10-20, MON-FRI), not backwards",
        check=ranges_run_upwards,
    ),
    Rule(
        cel=f"!self.startsWith('@') || self.startsWith('@every ') || self in {list(MACROS)}",
        message="schedules starting with @ are @yearly (@annually), @monthly, @weekly, @daily "
        "(@midnight), @hourly or @every <duration>",
        check=is_macro,
    ),
    Rule(
        cel="!self.startsWith('@every ')"
        f" || (self.substring(7).matches(r'{meta.DURATION_PATTERN}')"
        " && duration(self.substring(7)) >= duration('1s')"
        f" && duration(self.substring(7)) <= duration('{MAX_EVERY}'))",
        message=f"@every intervals must be at least 1s and at most {MAX_EVERY} (365 days), "
        "written as a duration such as 10s, 5m or 1h30m",
        check=every_in_bounds,
    ),
    Rule(
        cel=f"!self.startsWith('rate(') || (self.matches(r'{RATE_PATTERN}')"
        " && int(self.substring(5).split(' ')[0])"
        " * (self.contains(' minute') ? 60 : self.contains(' hour') ? 3600 : 86400)"
        f" <= {MAX_INTERVAL_SECONDS})",
        message="rate schedules look like rate(5 minutes), rate(1 hour) or rate(2 days), "
        "at most 365 days",
        check=rate_in_bounds,
    ),
)
"""The rules of a schedule, in the order a user reads their messages."""
