"""Scaling decisions, with time passed in."""

from __future__ import annotations

import pytest

from kfn import stats
from kfn.autoscaler import scaling

FN = stats.FunctionKey("default", "hello")


def _message(
    concurrency: float, *, queued: int = 0, requests: int | None = None, activator: str = "a"
) -> stats.StatMessage:
    reqs = int(concurrency) if requests is None else requests
    stat = stats.FunctionStat(FN, concurrency, int(concurrency + 0.999), queued, reqs)
    return stats.StatMessage(activator, 0.0, (stat,))


class Run:
    """Feeds one message per second and decides each second, like the Autoscaler does."""

    def __init__(self, spec: scaling.ScaleSpec, current: int = 0, start: float = 1000.0) -> None:
        self.spec = spec
        self.window = scaling.StatsWindow(retention=spec.stable_window)
        self.current = current
        self.now = start
        self.previous: scaling.Decision | None = None

    def second(self, *messages: stats.StatMessage) -> scaling.Decision:
        self.now += 1.0
        for message in messages:
            self.window.record(message, self.now)
        self.window.expire(self.now)
        decision = scaling.decide(
            self.window, FN, self.spec, self.current, self.now, previous=self.previous
        )
        self.previous = decision
        self.current = decision.desired
        return decision


def test_poke_at_zero_gives_one_replica_at_once() -> None:
    run = Run(scaling.ScaleSpec())
    poke = stats.StatMessage("a", 0.0, (stats.FunctionStat(FN, 0.0, 0, 1, 0),), poke=True)
    assert run.second(poke).desired == 1


def test_burst_from_zero_scales_to_demand_at_once() -> None:
    run = Run(scaling.ScaleSpec(target_concurrency=1))
    decision = run.second(_message(0, queued=20))
    assert decision.desired == 20
    assert decision.in_panic


def test_steady_load_settles_on_ceil_of_concurrency_over_target() -> None:
    run = Run(scaling.ScaleSpec(target_concurrency=4), current=3)
    for _ in range(120):
        decision = run.second(_message(10.0))
    assert decision.desired == 3
    assert not decision.in_panic


def test_panic_mode_never_scales_down_until_a_stable_window_passes() -> None:
    spec = scaling.ScaleSpec(target_concurrency=1, stable_window=60, panic_window=6)
    run = Run(spec, current=2)
    for _ in range(60):
        run.second(_message(2.0))
    burst = run.second(_message(30.0))
    assert burst.in_panic
    assert burst.desired >= 5
    peak = burst.desired
    for _ in range(10):
        peak = max(peak, run.second(_message(30.0)).desired)
    quiet = [run.second(_message(1.0)) for _ in range(55)]
    assert all(d.in_panic for d in quiet[:49])
    assert all(d.desired >= peak for d in quiet if d.in_panic)
    later = [run.second(_message(1.0)) for _ in range(20)]
    assert not later[-1].in_panic
    assert later[-1].desired < peak


def test_scale_down_halves_at_most_per_step() -> None:
    run = Run(scaling.ScaleSpec(target_concurrency=1, min_replicas=1), current=16)
    # No load at all: the stable average says 0, the rate limit says halve.
    desired = [run.second().desired for _ in range(5)]
    assert desired == [8, 4, 2, 1, 1]


def test_zero_only_after_idle_timeout_without_requests_or_queue() -> None:
    spec = scaling.ScaleSpec(target_concurrency=1, stable_window=10, idle_timeout=30)
    run = Run(spec, current=1)
    run.second(_message(1.0))
    seconds_at_one = 0
    while run.second().desired == 1:
        seconds_at_one += 1
        assert seconds_at_one < 100
    assert 29 <= seconds_at_one <= 31


def test_queued_request_keeps_a_replica_even_with_no_average() -> None:
    spec = scaling.ScaleSpec(target_concurrency=1, stable_window=10, idle_timeout=1)
    run = Run(spec, current=1)
    run.now += 100
    decision = run.second(_message(0.0, queued=1, requests=0))
    assert decision.desired >= 1


@pytest.mark.parametrize(("load", "expected"), [(0.0, 2), (100.0, 5)])
def test_desired_is_clamped_to_min_and_max(load: float, expected: int) -> None:
    spec = scaling.ScaleSpec(target_concurrency=1, min_replicas=2, max_replicas=5)
    run = Run(spec, current=2)
    for _ in range(70):
        decision = run.second(_message(load) if load else _message(0.0, requests=0))
    assert decision.desired == expected


def test_demand_is_summed_across_activators() -> None:
    run = Run(scaling.ScaleSpec(target_concurrency=1), current=6)
    for _ in range(70):
        decision = run.second(
            _message(2.0, activator="a"), _message(3.0, activator="b"), _message(1.0, activator="c")
        )
    assert decision.desired == 6


def test_stale_activator_data_expires() -> None:
    spec = scaling.ScaleSpec(target_concurrency=1, stable_window=10, panic_window=2)
    run = Run(spec, current=4)
    for _ in range(15):
        run.second(_message(2.0, activator="a"), _message(2.0, queued=2, activator="b"))
    assert run.window.queued_now(FN, run.now) == 2
    # Activator b goes away; a keeps reporting.
    for _ in range(4):
        run.second(_message(2.0, activator="a"))
    assert run.window.queued_now(FN, run.now) == 0
    for _ in range(20):
        decision = run.second(_message(2.0, activator="a"))
    assert decision.stable_demand == pytest.approx(2.0)
    assert decision.desired == 2


def test_fresh_window_does_not_dilute_a_burst_with_unseen_time() -> None:
    window = scaling.StatsWindow()
    window.record(_message(10.0), 500.0)
    assert window.average_demand(FN, 500.0, 60.0) == pytest.approx(10.0)


def test_spec_rejects_impossible_bounds() -> None:
    with pytest.raises(ValueError, match="min_replicas"):
        scaling.ScaleSpec(min_replicas=3, max_replicas=2)


@pytest.mark.parametrize(("min_replicas", "expected"), [(0, 0), (1, 1)])
def test_an_idle_function_drops_to_min_replicas_after_idle_timeout_not_the_stable_window(
    min_replicas: int, expected: int
) -> None:
    spec = scaling.ScaleSpec(target_concurrency=1, min_replicas=min_replicas, idle_timeout=5)
    run = Run(spec, current=1)
    for _ in range(30):
        run.second(_message(4.0))
    assert run.current >= 4
    seconds = 0
    while run.second().desired != expected:
        seconds += 1
        assert seconds < spec.stable_window
    assert 4 <= seconds <= 6


def test_a_restarted_autoscaler_gives_every_function_a_full_idle_timeout() -> None:
    spec = scaling.ScaleSpec(target_concurrency=1, min_replicas=0, idle_timeout=30)
    window = scaling.StatsWindow(retention=spec.stable_window)
    started = 1000.0
    desired = {
        now: scaling.decide(window, FN, spec, 1, now, listening_since=started).desired
        for now in (started + 1, started + 29, started + 31)
    }
    assert desired == {started + 1: 1, started + 29: 1, started + 31: 0}
