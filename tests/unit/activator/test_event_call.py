"""The activator's own invocations (``Event`` delivery): what was never started is sent
again within the queue timeout, as the proxy does, rather than being throttling at once."""

from __future__ import annotations

import time

import pytest

from kfn import retry
from kfn.activator import call, throttler

from .conftest import FN
from .http import Backend


def throttle_of(*addresses: str, concurrency: int = 4) -> throttler.Throttler:
    throttle = throttler.Throttler(FN, concurrency=concurrency)
    throttle.update_endpoints(frozenset(addresses))
    return throttle


async def deliver(throttle: throttler.Throttler, queue_timeout_s: float = 5.0) -> retry.Outcome:
    return await call.invoke(
        throttle, FN.name, "req-1", b'{"n": 1}', timeout_s=3.0, queue_timeout_s=queue_timeout_s
    )


def invokes(backend: Backend) -> int:
    return sum(1 for seen in backend.seen if seen.path == "/_kfn/invoke")


@pytest.mark.asyncio
async def test_a_runtime_refusing_unstarted_is_asked_again_and_the_event_runs_once(
    backend: Backend,
) -> None:
    # Two activators share the pod's concurrency: this one found it full, then draining.
    backend.refusals = [429, 503]
    outcome = await deliver(throttle_of(backend.address))
    assert (outcome.status, outcome.kind) == (200, "success")
    assert invokes(backend) == 3


@pytest.mark.asyncio
async def test_refusals_past_the_queue_timeout_are_throttling_for_the_retries(
    backend: Backend,
) -> None:
    backend.refusals = [429] * 10_000
    started = time.monotonic()
    outcome = await deliver(throttle_of(backend.address), queue_timeout_s=0.5)
    assert outcome.kind == "throttled"
    assert outcome.status == 429
    assert time.monotonic() - started < 1.5
    assert invokes(backend) > 3
