"""Taking a slot (at once or queued) and connecting, with refused connections retried."""

from __future__ import annotations

import asyncio
import socket

import pytest

from kfn.activator import capacity, throttler, upstream

from .conftest import FN, until
from .http import Backend


def _dead_address() -> str:
    """An address where nothing listens: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


async def _queued(throttle: throttler.Throttler) -> asyncio.Task[upstream.Endpoint]:
    """An acquire that has joined the function's queue."""
    task = asyncio.ensure_future(capacity.acquire(throttle))
    await until(lambda: throttle.queued == 1)
    return task


async def _cancelled(task: asyncio.Task[upstream.Endpoint]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.asyncio
async def test_a_free_slot_is_taken_without_queueing() -> None:
    throttle = throttler.Throttler(FN, concurrency=1)
    throttle.update_endpoints({"10.0.0.1:8080"})
    endpoint = await capacity.acquire(throttle)
    assert endpoint.address == "10.0.0.1:8080"
    assert endpoint.in_flight == 1
    assert throttle.queued == 0


@pytest.mark.asyncio
async def test_a_queued_acquire_gets_the_slot_released_first() -> None:
    throttle = throttler.Throttler(FN, concurrency=1)
    throttle.update_endpoints({"10.0.0.1:8080"})
    first = await capacity.acquire(throttle)
    waiting = await _queued(throttle)
    throttle.release(first)
    assert await waiting is first
    assert first.in_flight == 1


@pytest.mark.asyncio
async def test_a_cancelled_acquire_leaves_the_queue_at_once() -> None:
    throttle = throttler.Throttler(FN, concurrency=1)
    await _cancelled(await _queued(throttle))
    assert throttle.queued == 0


@pytest.mark.asyncio
async def test_an_acquire_cancelled_after_it_was_handed_a_slot_gives_it_back() -> None:
    throttle = throttler.Throttler(FN, concurrency=1)
    waiting = await _queued(throttle)
    throttle.update_endpoints({"10.0.0.1:8080"})  # hands the slot to the waiter
    await _cancelled(waiting)
    assert throttle.in_flight == 0
    assert throttle.endpoints["10.0.0.1:8080"].in_flight == 0


@pytest.mark.asyncio
async def test_past_the_queue_bound_acquire_raises_at_once() -> None:
    throttle = throttler.Throttler(FN, concurrency=1, queue_limit=0)
    with pytest.raises(throttler.QueueFullError):
        await capacity.acquire(throttle)


@pytest.mark.asyncio
async def test_a_refused_connection_moves_the_slot_to_another_endpoint(
    backend: Backend,
) -> None:
    dead = _dead_address()
    throttle = throttler.Throttler(FN, concurrency=1)
    # Endpoints are tried in the order they became known: the dead one first.
    throttle.update_endpoints({dead})
    throttle.update_endpoints({dead, backend.address})
    first = await capacity.acquire(throttle)
    assert first.address == dead
    endpoint, conn = await capacity.connect(throttle, first)
    assert endpoint.address == backend.address
    assert (first.in_flight, endpoint.in_flight) == (0, 1)
    conn.abort()


@pytest.mark.asyncio
async def test_connecting_gives_up_after_three_refusals_holding_no_slot() -> None:
    throttle = throttler.Throttler(FN, concurrency=1)
    throttle.update_endpoints({_dead_address() for _ in range(4)})
    with pytest.raises(capacity.ConnectError):
        await capacity.connect(throttle, await capacity.acquire(throttle))
    assert throttle.in_flight == 0
