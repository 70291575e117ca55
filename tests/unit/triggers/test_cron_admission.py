"""Admission (``kfn.api.cron``) accepts exactly the schedules the cron worker parses.

The two are written apart, since ``kfn.api`` may not import the worker; this table keeps them
in step. Where they differ on purpose, a test below says so.
"""

from __future__ import annotations

import pytest

from kfn.api import cron
from kfn.triggers.cron import schedule


def _admitted(expression: str) -> bool:
    return all(rule.check is None or rule.check(expression) for rule in cron.RULES)


def _parsed(expression: str) -> bool:
    try:
        schedule.parse(expression)
    except schedule.ScheduleError:
        return False
    return True


SCHEDULES = [
    # runs
    "*/5 * * * *",
    "0,30 8-18 1 JAN,JUL ?",
    "059 023 031 012 007",
    "5/20 * * * *",
    "10-40/10 * * * *",
    "*/100 * * * *",
    "* * * jan-Mar,DEC MON-fri,7",
    "0 0 * * FRI-7",
    "0 0 * * SUN-7",
    "0 0 * JAN/3 MON/2",
    "1-1 0-0 1-1 1-1 0-0",
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
    "@every 1000ms",
    "@every 1m30s",
    "@every 30m1h",
    "rate(1 minute)",
    "rate(1 minutes)",
    "rate(24 hours)",
    # does not run
    "* * * *",
    "* * * * * *",
    "60 * * * *",
    "* 24 * * *",
    "* * 0 * *",
    "* * 32 * *",
    "* * * 0 *",
    "* * * 13 *",
    "* * * * 8",
    "*/0 * * * *",
    "1,,2 * * * *",
    ",1 * * * *",
    "5- * * * *",
    "1-2-3 * * * *",
    "*/5/2 * * * *",
    "*-5 * * * *",
    "?-5 * * * *",
    "*/ * * * *",
    "1/-1 * * * *",
    "5-1 * * * *",
    "0 0 * * SAT-SUN",
    "0 0 * DEC-JAN *",
    "0 0 * * 7-0",
    "* * * FOO *",
    "* * * * JAN",
    "* * * MON *",
    "0 0 L * *",
    "0 0 * * MON#1",
    "@sometimes",
    "@Hourly",
    "@every",
    "@every10s",
    "@every 500ms",
    "@every 10x",
    "rate(0 minutes)",
    "rate(5 weeks)",
    "rate(5minutes)",
    "rate(01 minutes)",
]


@pytest.mark.parametrize("expression", SCHEDULES)
def test_admission_and_the_worker_agree_on_the_schedule(expression: str) -> None:
    assert _admitted(expression) == _parsed(expression)


@pytest.mark.parametrize(
    "expression", ["@every 8761h", "@every 99999h", "rate(366 days)", "rate(8761 hours)"]
)
def test_admission_refuses_intervals_over_a_year_that_the_worker_would_run(
    expression: str,
) -> None:
    """An interval ticks on multiples of itself since 1970; see :mod:`kfn.api.cron`."""
    assert _parsed(expression)
    assert not _admitted(expression)


@pytest.mark.parametrize("expression", [" 0 0 * * *", "0 0 * * * ", "0\t0 * * *"])
def test_admission_wants_fields_on_one_line_between_spaces(expression: str) -> None:
    """The worker splits on any whitespace; the stored schedule is spelled one way."""
    assert _parsed(expression)
    assert not _admitted(expression)
