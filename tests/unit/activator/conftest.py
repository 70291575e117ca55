from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
import uvloop

from kfn import stats
from kfn.activator import access, config, router, server

from .http import Backend

FN = stats.FunctionKey("default", "hello")

MakeActivator = Callable[..., Awaitable[server.Activator]]


#: How long :func:`until` waits before the test fails.
UNTIL_TIMEOUT = 5.0


async def until(condition: Callable[[], object]) -> None:
    """Wait until ``condition()`` is true: tests wait for what they assert on, not for time.

    The condition is checked every millisecond, for :data:`UNTIL_TIMEOUT` at most.
    """
    async with asyncio.timeout(UNTIL_TIMEOUT):
        # Polled: the conditions are plain state of the code under test (queue lengths,
        # a backend's counters), which has no event to wait on.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run every test on the standard loop and on uvloop (what the activator runs on)."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest_asyncio.fixture
async def backend() -> AsyncIterator[Backend]:
    started = await Backend("a").start()
    yield started
    await started.stop()


@pytest_asyncio.fixture
async def make_activator() -> AsyncIterator[MakeActivator]:
    """Start activators on free ports; each serves FN for any host under '/'."""
    started: list[server.Activator] = []

    async def make(
        *,
        concurrency: int = 10,
        timeout_ms: int = 3000,
        queue_limit: int = 1000,
        queue_timeout_ms: int = config.DEFAULT_QUEUE_TIMEOUT_MS,
        endpoints: frozenset[str] = frozenset(),
        metrics_port: int | None = None,
        invoke_door: bool = False,
        checks: access.Access | None = None,
        **kwargs: Any,
    ) -> server.Activator:
        activator = server.Activator(
            routes=[router.Route(host="*", path_prefix="/", function=FN)],
            functions={
                FN: config.FunctionLimits(
                    concurrency=concurrency,
                    timeout_ms=timeout_ms,
                    queue_limit=queue_limit,
                    queue_timeout_ms=queue_timeout_ms,
                )
            },
            **kwargs,
        )
        await activator.start(
            "127.0.0.1",
            0,
            invoke_port=0 if invoke_door else None,
            checks=checks,
            metrics_port=metrics_port,
        )
        activator.update_endpoints(FN, endpoints)
        started.append(activator)
        return activator

    yield make
    for activator in started:
        await activator.shutdown(drain_timeout=1)
