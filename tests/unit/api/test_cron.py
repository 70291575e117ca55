"""A schedule is refused offline with the message the API server gives, naming what is wrong."""

from __future__ import annotations

import re

import pydantic
import pytest

from kfn.api import cron, trigger

FIVE = "a cron schedule has five fields"
MINUTE = "cron field 1 (minute) takes 0-59"
HOUR = "cron field 2 (hour) takes 0-23"
DAY = "cron field 3 (day-of-month) takes 1-31"
MONTH = "cron field 4 (month) takes 1-12 or JAN-DEC"
WEEKDAY = "cron field 5 (day-of-week) takes 0-7 (0 and 7 are Sunday) or SUN-SAT"
BACKWARDS = "ranges in a cron schedule run from low to high"
MACRO = "schedules starting with @ are"
EVERY = "@every intervals must be at least 1s and at most 8760h"
RATE = "rate schedules look like rate(5 minutes)"


def _refusals(schedule: str) -> list[str]:
    """The messages of the rules a schedule breaks, in the order of :data:`cron.RULES`."""
    return [
        rule.message for rule in cron.RULES if rule.check is not None and not rule.check(schedule)
    ]


def _cron_trigger(schedule: str) -> trigger.Trigger:
    return trigger.Trigger.model_validate(
        {
            "metadata": {"name": "t"},
            "spec": {"functionRef": {"name": "f"}, "cron": {"schedule": schedule}},
        }
    )


@pytest.mark.parametrize(
    "schedule",
    [
        "*/5 * * * *",
        "0 9 * * MON-FRI",
        "0,30 8-18 1 JAN,JUL ?",
        "59 23 31 12 7",
        "0 0 1 1 0",
        "059 023 031 012 007",
        "5/20 * * * *",
        "10-40/10 * * * *",
        "*/100 * * * *",
        "*/0005 * * * *",
        "* * * jan-Mar,DEC MON-fri,7",
        "0 0 * * sun-sat",
        "0 0 * * FRI-7",
        "0 0 * * MON/2",
        "1-1 * * * *",
        "? ? ? ? ?",
        "0  0  *  *  *",
        "0 0 31 2 *",
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
        "@every 1s",
        "@every 1m30s",
        "@every 1.5h",
        "@every 30m1h",
        "@every 8760h",
        "rate(1 minute)",
        "rate(1 minutes)",
        "rate(12 hours)",
        "rate(365 days)",
        "rate(525600 minutes)",
    ],
)
def test_schedules_the_cron_worker_runs_break_no_rule(schedule: str) -> None:
    assert _refusals(schedule) == []


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("* * * *", FIVE),
        ("0 0 12 * * ?", FIVE),
        ("every five minutes", FIVE),
        (" 0 0 * * *", FIVE),
        ("60 * * * *", MINUTE),
        ("61 * * * *", MINUTE),
        ("*/0 * * * *", MINUTE),
        ("*/00 * * * *", MINUTE),
        ("0,,30 * * * *", MINUTE),
        ("1, * * * *", MINUTE),
        ("-5 * * * *", MINUTE),
        ("1-2-3 * * * *", MINUTE),
        ("*/5/2 * * * *", MINUTE),
        ("*-5 * * * *", MINUTE),
        ("/5 * * * *", MINUTE),
        ("JAN * * * *", MINUTE),
        ("0 24 * * *", HOUR),
        ("0 0-24 * * *", HOUR),
        ("0 0 0 * *", DAY),
        ("0 0 32 * *", DAY),
        ("0 0 L * *", DAY),
        ("0 0 15W * *", DAY),
        ("0 0 1 13 *", MONTH),
        ("0 0 1 0 *", MONTH),
        ("0 0 1 JUNE *", MONTH),
        ("0 0 1 MON *", MONTH),
        ("0 9 * * 8", WEEKDAY),
        ("0 9 * * JAN", WEEKDAY),
        ("0 9 * * MON#1", WEEKDAY),
        ("30-10 * * * *", BACKWARDS),
        ("0 9 * * FRI-MON", BACKWARDS),
        ("0 9 * * 7-SUN", BACKWARDS),
        ("0 9 * DEC-JAN *", BACKWARDS),
        ("0 9 1,20-10 * *", BACKWARDS),
        ("@reboot", MACRO),
        ("@Hourly", MACRO),
        ("@every10s", MACRO),
        ("@every", MACRO),
        ("@every 999ms", EVERY),
        ("@every 0s", EVERY),
        ("@every 10", EVERY),
        ("@every 10x", EVERY),
        ("@every 8760h1s", EVERY),
        ("@every 99999999999999h", EVERY),
        ("rate(0 minutes)", RATE),
        ("rate(5 weeks)", RATE),
        ("rate(5minutes)", RATE),
        ("rate(01 minutes)", RATE),
        ("rate(366 days)", RATE),
        ("rate(8761 hours)", RATE),
        ("rate(9999999999 days)", RATE),
    ],
)
def test_each_broken_schedule_is_refused_by_the_rule_that_names_its_fault(
    schedule: str, message: str
) -> None:
    refusals = _refusals(schedule)
    assert len(refusals) == 1, refusals
    assert refusals[0].startswith(message)


def test_the_field_rules_look_only_at_five_field_schedules() -> None:
    assert _refusals("0 0 * *") == [
        next(r.message for r in cron.RULES if r.message.startswith(FIVE))
    ]


def test_a_refused_schedule_fails_the_trigger_with_the_rules_message() -> None:
    with pytest.raises(pydantic.ValidationError, match=re.escape(MINUTE)):
        _cron_trigger("61 * * * *")


def test_every_field_rule_is_anchored_at_its_own_position() -> None:
    """The same bad value is blamed on the field it stands in, and only on that one."""
    for position, message in enumerate((MINUTE, HOUR, DAY, MONTH, WEEKDAY)):
        fields = ["1"] * 5
        fields[position] = "99"
        assert [m[: len(message)] for m in _refusals(" ".join(fields))] == [message]


@pytest.mark.parametrize(
    ("field", "bounds"),
    [
        (field, (low, high))
        for field, low, high in zip(cron.FIELDS, (0, 0, 1, 1, 0), (59, 23, 31, 12, 7), strict=True)
    ],
)
def test_field_values_are_exactly_their_range(field: cron.Field, bounds: tuple[int, int]) -> None:
    low, high = bounds
    accepted = {n for n in range(0, 100) if re.fullmatch(field.value_pattern, str(n))}
    assert accepted == set(range(low, high + 1))
