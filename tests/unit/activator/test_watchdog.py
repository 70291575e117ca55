"""The pure verdict on a connection's pace: in time, 408, or closed."""

from __future__ import annotations

import pytest

from kfn.activator import bounds, watchdog

LIMITS = bounds.Bounds(head_timeout=10, idle_timeout=75)


@pytest.mark.parametrize(
    ("state", "waited", "due"),
    [
        ("fresh", 9.9, None),
        ("fresh", 10, watchdog.CLOSE),
        ("head", 9.9, None),
        ("head", 10, watchdog.HEAD_LATE),
        ("idle", 74.9, None),
        ("idle", 75, watchdog.CLOSE),
        ("busy", 3600, None),
    ],
)
def test_verdict_by_state_and_time_waited(
    state: watchdog.State, waited: float, due: str | None
) -> None:
    assert watchdog.verdict(state, since=100.0, now=100.0 + waited, bounds=LIMITS) == due


@pytest.mark.parametrize(
    ("head", "idle", "tick"), [(10, 75, 1.0), (0.2, 75, 0.02), (0.01, 0.01, 0.01)]
)
def test_connections_are_swept_ten_times_per_shortest_timeout_within_10_ms_and_1_s(
    head: float, idle: float, tick: float
) -> None:
    assert watchdog.tick(bounds.Bounds(head_timeout=head, idle_timeout=idle)) == tick
