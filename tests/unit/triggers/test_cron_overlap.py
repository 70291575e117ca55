"""A Trigger's ticks while its earlier ticks are in hand: start, wait or skip."""

from __future__ import annotations

import datetime

import pytest

from kfn.triggers.cron import overlap, schedule

T = datetime.datetime(2026, 1, 1, 10, tzinfo=datetime.UTC)


def s(seconds: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=seconds)


def ticks(*seconds: float) -> tuple[datetime.datetime, ...]:
    return tuple(T + s(x) for x in seconds)


@pytest.mark.parametrize(
    ("waiting", "running", "now", "policy", "deadline", "start", "wait", "skip"),
    [
        pytest.param((0, 1), 0, 1.1, "Skip", None, (0, 1), (), (), id="free slots start all"),
        pytest.param((2, 0, 1), 3, 2.1, "Skip", None, (0,), (1, 2), (), id="oldest first"),
        pytest.param((5,), 4, 6, "Skip", None, (), (5,), (), id="a full lane keeps a tick"),
        pytest.param((5,), 4, 15, "Skip", None, (), (5,), (), id="for the grace under Skip (10 s)"),
        pytest.param((5,), 4, 15.1, "Skip", None, (), (), (5,), id="then skips it"),
        pytest.param((0,), 0, 10.1, "Skip", None, (), (), (0,), id="even with a free slot"),
        pytest.param(
            (0,), 4, 1800, "CatchUp", None, (), (0,), (), id="CatchUp waits for its deadline"
        ),
        pytest.param((0,), 4, 3600.1, "CatchUp", None, (), (), (0,), id="default one hour"),
        pytest.param(
            (0,), 4, 9, "CatchUp", s(1), (), (0,), (), id="a deadline under the grace waits it"
        ),
        pytest.param((0,), 1, 120, "CatchUp", s(300), (0,), (), (), id="starts late if in time"),
        pytest.param((1, 1, 1), 0, 2, "Skip", None, (1,), (), (), id="a tick counts once"),
    ],
)
def test_a_lane_starts_keeps_or_skips_its_ticks(  # noqa: PLR0917 -- one table row
    waiting: tuple[float, ...],
    running: int,
    now: float,
    policy: schedule.Policy,
    deadline: datetime.timedelta | None,
    start: tuple[float, ...],
    wait: tuple[float, ...],
    skip: tuple[float, ...],
) -> None:
    decision = overlap.admit(
        ticks(*waiting), running=running, now=T + s(now), policy=policy, deadline=deadline
    )
    assert decision == overlap.Admission(ticks(*start), ticks(*wait), ticks(*skip))


def test_past_its_bound_a_lane_skips_its_oldest_waiting_ticks() -> None:
    waiting = ticks(*range(20))
    decision = overlap.admit(
        waiting, running=overlap.MAX_IN_FLIGHT, now=T + s(20), policy="CatchUp"
    )
    assert decision.start == ()
    assert decision.wait == waiting[-overlap.MAX_WAITING :]
    assert decision.skip == waiting[: 20 - overlap.MAX_WAITING]


def test_running_past_the_limit_starts_nothing() -> None:
    decision = overlap.admit(ticks(0), running=overlap.MAX_IN_FLIGHT + 2, now=T + s(1))
    assert decision.start == ()
    assert decision.wait == ticks(0)
