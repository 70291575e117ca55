"""Scaling from zero to ``activationScale``, wakes that scale a function before its requests,
and the pods a new Deployment starts with kept for an idle timeout: decisions with time passed
in, and the Autoscaler loop acting through an in-memory Scaler."""

from __future__ import annotations

import pytest

from kfn import stats
from kfn.autoscaler import autoscaler, scaler, scaling

FN = stats.FunctionKey("default", "hello")


def _wake(*, poke: bool = True) -> stats.StatMessage:
    stat = stats.FunctionStat(FN, 0.0, 0, 0, 0, wakes=1)
    return stats.StatMessage("act-1", 0.0, (stat,), poke=poke)


def _queued(*, poke: bool = True) -> stats.StatMessage:
    return stats.StatMessage("act-1", 0.0, (stats.FunctionStat(FN, 0.0, 0, 1, 1),), poke=poke)


def _decide(
    window: scaling.StatsWindow, spec: scaling.ScaleSpec, current: int, now: float
) -> scaling.Decision:
    return scaling.decide(window, FN, spec, current, now, listening_since=0.0)


def test_a_queued_request_at_zero_scales_to_the_activation_scale() -> None:
    window = scaling.StatsWindow()
    window.record(_queued(), 100.0)
    decision = _decide(window, scaling.ScaleSpec(activation_scale=3), 0, 100.0)
    assert decision.desired == 3
    assert decision.reason.endswith("+activation")


def test_a_wake_at_zero_scales_to_the_activation_scale_with_nothing_queued() -> None:
    window = scaling.StatsWindow()
    window.record(_wake(), 100.0)
    decision = _decide(window, scaling.ScaleSpec(activation_scale=2), 0, 100.0)
    assert (decision.desired, decision.reason) == (2, "wake+activation")


def test_a_wake_asks_for_pods_only_as_long_as_a_queued_report_would_count() -> None:
    window = scaling.StatsWindow(stale_after=3.0)
    window.record(_wake(), 100.0)
    spec = scaling.ScaleSpec()
    assert _decide(window, spec, 0, 103.0).desired == 1
    assert _decide(window, spec, 0, 103.5).desired == 0


def test_a_woken_function_keeps_its_pods_for_the_idle_timeout_counted_from_the_wake() -> None:
    spec = scaling.ScaleSpec(activation_scale=2, idle_timeout=30.0)
    window = scaling.StatsWindow(retention=spec.stable_window)
    window.record(_wake(), 100.0)
    current = _decide(window, spec, 0, 100.0).desired
    kept = []
    for now in range(101, 140):
        window.expire(float(now))
        current = _decide(window, spec, current, float(now)).desired
        kept.append((now, current))
    assert next(now for now, replicas in kept if replicas == 0) == 130
    assert all(replicas == 2 for now, replicas in kept if now < 130)


def test_the_activation_scale_is_a_floor_above_zero_not_a_target_under_load() -> None:
    window = scaling.StatsWindow()
    stat = stats.FunctionStat(FN, 5.0, 5, 0, 5)
    window.record(stats.StatMessage("act-1", 0.0, (stat,)), 100.0)
    spec = scaling.ScaleSpec(activation_scale=2, target_concurrency=1.0, max_replicas=10)
    assert _decide(window, spec, 5, 100.0).desired == 5


def test_a_wake_is_activity_that_restarts_the_idle_clock() -> None:
    window = scaling.StatsWindow()
    window.record(_wake(poke=False), 100.0)
    assert window.idle_for(FN, 110.0) == 10.0


def test_an_activation_scale_above_max_replicas_is_refused() -> None:
    with pytest.raises(ValueError, match="activation_scale"):
        scaling.ScaleSpec(activation_scale=4, max_replicas=3)


@pytest.mark.asyncio
async def test_a_wake_poke_scales_from_zero_without_waiting_for_a_tick() -> None:
    replicas = scaler.InMemoryScaler({FN: 0})
    loop = autoscaler.Autoscaler(replicas)
    loop.set_spec(FN, scaling.ScaleSpec(activation_scale=3))
    await loop.tick(now=1.0)
    await loop.receive(_wake(), now=10.0)
    assert replicas.history == [(FN, 3)]


@pytest.mark.asyncio
async def test_a_function_created_while_the_autoscaler_runs_keeps_its_initial_pods_until_idle() -> (
    None
):
    replicas = scaler.InMemoryScaler()
    loop = autoscaler.Autoscaler(replicas)
    await loop.tick(now=0.0)  # listening long before the function comes
    spec = scaling.ScaleSpec(idle_timeout=30.0, activation_scale=2)
    loop.set_spec(FN, spec)
    replicas.replicas[FN] = 2  # its Deployment was created with initialScale 2
    for now in range(1000, 1029):
        await loop.tick(now=float(now))
    assert replicas.replicas[FN] == 2
    await loop.tick(now=1030.0)
    assert replicas.replicas[FN] == 0
