"""Figures over a sliding window: counts, forgetting, bounded memory and p99 precision."""

from __future__ import annotations

import math
import random

import pytest

from kfn import rollout

T0 = 5_000.0


def seeded(seed: int) -> random.Random:
    """Draws that repeat exactly from run to run; no secret depends on them."""
    return random.Random(seed)  # noqa: S311


def nearest_rank_p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


def test_figures_sum_invocations_and_errors_of_one_version_within_the_window() -> None:
    window = rollout.WindowedFigures[int](retention=300.0)
    window.record(T0, 2, invocations=10, errors=1)
    window.record(T0 + 0.5, 2, invocations=5, errors=0)
    window.record(T0 + 100, 2, invocations=7, errors=3)
    window.record(T0 + 100, 3, invocations=4, errors=4)

    assert window.figures(2, T0 + 100, 300.0) == rollout.VersionFigures(22, 4, None)
    assert window.figures(3, T0 + 100, 300.0) == rollout.VersionFigures(4, 4, None)
    # A 60-second window ends at T0 + 100 and begins after T0 + 40.
    assert window.figures(2, T0 + 100, 60.0) == rollout.VersionFigures(7, 3, None)


def test_the_window_covers_the_seconds_after_now_minus_window_up_to_now() -> None:
    window = rollout.WindowedFigures[int](retention=10.0)
    for second in range(20):
        window.record(T0 + second, 1, invocations=1, errors=0)
    # At T0 + 19.5 a 10-second window holds seconds T0 + 10 to T0 + 19.
    assert window.figures(1, T0 + 19.5, 10.0).invocations == 10
    assert window.figures(1, T0 + 19.5, 3.0).invocations == 3


def test_the_window_forgets_samples_older_than_it() -> None:
    window = rollout.WindowedFigures[int](retention=60.0)
    window.record(T0, 2, invocations=100, errors=50, durations=[0.5] * 100)
    assert window.figures(2, T0 + 59, 60.0).invocations == 100
    assert window.figures(2, T0 + 60, 60.0) == rollout.VersionFigures(0, 0, None)


def test_a_version_never_seen_has_no_invocations_and_no_p99() -> None:
    window = rollout.WindowedFigures[int](retention=60.0)
    assert window.figures(9, T0, 60.0) == rollout.VersionFigures(0, 0, None)


def test_memory_stays_bounded_by_the_retention_however_long_records_arrive() -> None:
    window = rollout.WindowedFigures[int](retention=300.0)
    for tick in range(10_000):
        # Four activators report each second, at fractional instants.
        for activator in range(4):
            window.record(T0 + tick + activator / 4, 2, invocations=1, errors=0, durations=[0.1])
        assert window.seconds_kept() <= 300
    assert window.seconds_kept() == 300
    assert window.figures(2, T0 + 9_999.75, 300.0).invocations == 1_200


def test_expire_forgets_a_version_that_stopped_reporting() -> None:
    window = rollout.WindowedFigures[int](retention=60.0)
    window.record(T0, 2, invocations=1, errors=0)
    window.record(T0 + 100, 3, invocations=1, errors=0)
    window.expire(T0 + 100)
    assert window.versions() == [3]
    assert window.seconds_kept() == 1


def test_a_record_at_an_earlier_second_counts_in_the_newest_one() -> None:
    window = rollout.WindowedFigures[int](retention=60.0)
    window.record(T0 + 10, 2, invocations=1, errors=0)
    window.record(T0 + 3, 2, invocations=1, errors=1)
    assert window.seconds_kept() == 1
    assert window.figures(2, T0 + 10, 1.0) == rollout.VersionFigures(2, 1, None)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_p99_is_within_the_documented_precision_of_the_true_p99(seed: int) -> None:
    rng = seeded(seed)
    window = rollout.WindowedFigures[int](retention=300.0)
    samples: list[float] = []
    for second in range(300):
        durations = [rng.lognormvariate(math.log(0.15), 0.8) for _ in range(rng.randint(0, 40))]
        samples += durations
        window.record(T0 + second, 2, len(durations), 0, durations)

    p99 = window.figures(2, T0 + 299, 300.0).p99_duration_seconds
    truth = nearest_rank_p99(samples)

    assert p99 is not None
    assert abs(p99 / truth - 1) <= rollout.DURATION_PRECISION
    assert rollout.DURATION_PRECISION < 0.022


def test_p99_of_a_single_duration_is_that_duration_within_the_precision() -> None:
    for duration in (0.0001, 0.0123, 0.5, 1.0, 42.0, 900.0):
        window = rollout.WindowedFigures[int](retention=1.0)
        window.record(T0, 1, 1, 0, [duration])
        p99 = window.figures(1, T0, 1.0).p99_duration_seconds
        assert p99 is not None
        assert abs(p99 / duration - 1) <= rollout.DURATION_PRECISION


def test_p99_ignores_the_fastest_99_percent_and_follows_the_slowest_percent() -> None:
    window = rollout.WindowedFigures[int](retention=60.0)
    window.record(T0, 1, 1000, 0, [0.01] * 980 + [2.0] * 20)
    p99 = window.figures(1, T0, 60.0).p99_duration_seconds
    assert p99 is not None
    assert p99 == pytest.approx(2.0, rel=rollout.DURATION_PRECISION)
    window.record(T0 + 1, 1, 1000, 0, [0.01] * 1000)
    p99 = window.figures(1, T0 + 1, 60.0).p99_duration_seconds
    assert p99 == pytest.approx(0.01, rel=rollout.DURATION_PRECISION)


def test_durations_outside_the_bins_count_in_the_first_and_last_bins() -> None:
    assert rollout.duration_bin(0.0) == 0
    assert rollout.duration_bin(rollout.LOWEST / 2) == 0
    assert rollout.duration_bin(rollout.HIGHEST * 10) == rollout.BINS - 1
    assert rollout.HIGHEST > 3600


def test_durations_binned_by_the_sender_count_as_the_durations_themselves() -> None:
    durations = [0.003, 0.05, 0.05, 0.7, 1.5]
    raw = rollout.WindowedFigures[str](retention=60.0)
    raw.record(T0, "v2", 5, 0, durations)
    binned = rollout.WindowedFigures[str](retention=60.0)
    counts: dict[int, int] = {}
    for duration in durations:
        counts[rollout.duration_bin(duration)] = counts.get(rollout.duration_bin(duration), 0) + 1
    binned.record(T0, "v2", 5, 0, binned_durations=counts)
    assert binned.figures("v2", T0, 60.0) == raw.figures("v2", T0, 60.0)


def test_a_window_longer_than_the_retention_is_refused() -> None:
    window = rollout.WindowedFigures[int](retention=60.0)
    with pytest.raises(ValueError, match=r"from 0 to the retention \(60 s\), got 61.0"):
        window.figures(1, T0, 61.0)


@pytest.mark.parametrize(
    ("invocations", "errors", "durations", "bins"),
    [
        (1, 2, [], None),
        (-1, 0, [], None),
        (1, 0, [-0.5], None),
        (1, 0, [math.inf], None),
        (1, 0, [], {rollout.BINS: 1}),
        (1, 0, [], {3: -1}),
    ],
)
def test_an_impossible_record_is_refused_and_changes_nothing(
    invocations: int, errors: int, durations: list[float], bins: dict[int, int] | None
) -> None:
    window = rollout.WindowedFigures[int](retention=60.0)
    with pytest.raises(ValueError, match=r"errors <= invocations|a duration"):
        window.record(T0, 1, invocations, errors, durations, binned_durations=bins)
    assert window.seconds_kept() == 0
