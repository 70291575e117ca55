"""The throttler on its own, with a fake clock."""

from __future__ import annotations

import pytest

from kfn import stats
from kfn.activator import throttler

FN = stats.FunctionKey("default", "hello")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_least_loaded_endpoint_is_chosen() -> None:
    throttle = throttler.Throttler(FN, concurrency=3)
    throttle.update_endpoints({"10.0.0.1:8080", "10.0.0.2:8080"})
    picks = [throttle.try_acquire() for _ in range(4)]
    loads = sorted(e.in_flight for e in throttle.endpoints.values())
    assert all(p is not None for p in picks)
    assert loads == [2, 2]


def test_no_slot_beyond_concurrency() -> None:
    throttle = throttler.Throttler(FN, concurrency=2)
    throttle.update_endpoints({"10.0.0.1:8080"})
    assert throttle.try_acquire() is not None
    assert throttle.try_acquire() is not None
    assert throttle.try_acquire() is None


@pytest.mark.asyncio
async def test_the_first_waiter_at_zero_pokes_once_and_begins_a_cold_start() -> None:
    clock = FakeClock()
    pokes: list[stats.FunctionKey] = []
    throttle = throttler.Throttler(FN, concurrency=1, poke=pokes.append, clock=clock)
    first, second = throttle.wait(), throttle.wait()
    assert pokes == [FN]
    cold = throttle.cold
    assert cold is not None
    assert cold.queued_at == clock.now
    clock.now += 2.5
    throttle.update_endpoints({"10.0.0.1:8080"})
    assert first.done()
    assert not second.done()
    assert cold.ready_at == clock.now
    # Both waited for it; the first to claim it pays for it, and a later request did not wait.
    assert cold.waited_for(clock.now - 2.5)
    assert not cold.waited_for(clock.now + 0.1)
    assert cold.claim()
    assert not cold.claim()
    throttle.release(first.result())
    assert second.done()


@pytest.mark.asyncio
async def test_queue_bound_raises_queue_full() -> None:
    throttle = throttler.Throttler(FN, concurrency=1, queue_limit=1)
    throttle.wait()
    with pytest.raises(throttler.QueueFullError):
        throttle.wait()


@pytest.mark.asyncio
async def test_cancelled_waiter_leaves_the_queue_and_a_granted_slot_is_returned() -> None:
    throttle = throttler.Throttler(FN, concurrency=1)
    waiter = throttle.wait()
    throttle.cancel(waiter)
    assert throttle.queued == 0
    granted = throttle.wait()
    throttle.update_endpoints({"10.0.0.1:8080"})
    assert granted.done()
    throttle.cancel(granted)
    assert throttle.in_flight == 0


@pytest.mark.asyncio
async def test_newcomers_queue_behind_earlier_waiters() -> None:
    throttle = throttler.Throttler(FN, concurrency=1)
    throttle.update_endpoints({"10.0.0.1:8080"})
    held = throttle.try_acquire()
    assert held is not None
    waiter = throttle.wait()
    throttle.release(held)
    assert waiter.done()
    assert throttle.try_acquire() is None


@pytest.mark.asyncio
async def test_draining_endpoint_takes_no_new_requests() -> None:
    throttle = throttler.Throttler(FN, concurrency=5)
    throttle.update_endpoints({"10.0.0.1:8080", "10.0.0.2:8080"})
    throttle.set_draining("10.0.0.1:8080")
    picks = {throttle.try_acquire().address for _ in range(3)}  # type: ignore[union-attr]
    assert picks == {"10.0.0.2:8080"}


def test_period_reports_time_weighted_average_and_peak() -> None:
    clock = FakeClock()
    throttle = throttler.Throttler(FN, concurrency=10, clock=clock)
    throttle.update_endpoints({"10.0.0.1:8080"})
    throttle.take_period()
    held = [throttle.try_acquire() for _ in range(4)]
    for _ in range(4):
        throttle.note_request()
    clock.now += 0.5
    for endpoint in held[:2]:
        assert endpoint is not None
        throttle.release(endpoint)
    clock.now += 0.5
    average, peak, queued, requests = throttle.take_period()
    assert average == pytest.approx(3.0)
    assert peak == 4
    assert queued == 0
    assert requests == 4
    clock.now += 1.0
    assert throttle.take_period()[:2] == (pytest.approx(2.0), 2)


@pytest.mark.asyncio
async def test_closing_fails_waiters_with_function_gone_rather_than_cancelling_them() -> None:
    throttle = throttler.Throttler(FN, concurrency=1)
    waiter = throttle.wait()
    throttle.close()
    assert not waiter.cancelled()
    assert isinstance(waiter.exception(), throttler.FunctionGoneError)
