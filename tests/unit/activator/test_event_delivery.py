"""The asynchronous invoker: fair, surviving deletions and stray cancellations, counted.

Deliveries go to a function given by the test (the call path's boundary), over the real
in-memory store; the deletion tests run a real activator and backend.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from kfn import retry, stats
from kfn.activator import async_invoke, config, event_store, metrics, router, server

from .conftest import until
from .http import Backend, Client

SLOW = stats.FunctionKey("tenant-a", "slow")
QUICK = stats.FunctionKey("tenant-b", "quick")


class Recorder:
    """A delivery target: records each call; a function's calls wait while it is held."""

    def __init__(self) -> None:
        self.calls: list[tuple[stats.FunctionKey, str]] = []
        self.running: collections.Counter[stats.FunctionKey] = collections.Counter()
        self.held: dict[stats.FunctionKey, asyncio.Event] = {}
        self.answers: dict[stats.FunctionKey, list[retry.Outcome | BaseException]] = {}

    def hold(self, function: stats.FunctionKey) -> asyncio.Event:
        gate = self.held[function] = asyncio.Event()
        return gate

    async def deliver(
        self, function: stats.FunctionKey, request_id: str, payload: bytes
    ) -> retry.Outcome:
        self.calls.append((function, request_id))
        self.running[function] += 1
        try:
            gate = self.held.get(function)
            if gate is not None:
                await gate.wait()
            planned = self.answers.get(function)
            if planned:
                answer = planned.pop(0)
                if isinstance(answer, BaseException):
                    raise answer
                return answer
            return retry.Outcome(200, b"{}")
        finally:
            self.running[function] -= 1


class Collecting:
    def __init__(self) -> None:
        self.records: list[async_invoke.FailedEvent] = []

    async def on_failure(self, record: async_invoke.FailedEvent) -> None:
        self.records.append(record)


@pytest_asyncio.fixture
async def recorder() -> Recorder:
    return Recorder()


InvokerParts = tuple[async_invoke.AsyncInvoker, Recorder, Collecting, metrics.Metrics]


@pytest_asyncio.fixture
async def invoker(recorder: Recorder) -> AsyncIterator[InvokerParts]:
    destination = Collecting()
    counted = metrics.Metrics(dict)
    started = async_invoke.AsyncInvoker(
        recorder.deliver,
        destination,
        event_store.MemoryStore(capacity=1000),
        workers=4,
        per_function=2,
        retry_delays=(0.01, 0.01),
        throttle_backoff=(0.01, 0.05),
        counters=counted,
    )
    started.start()
    yield started, recorder, destination, counted
    for gate in recorder.held.values():
        gate.set()
    await started.stop()


# --- fairness --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_slow_function_holds_at_most_its_cap_of_workers_and_others_flow_past_it(
    invoker: InvokerParts,
) -> None:
    events, recorder, _, _ = invoker
    gate = recorder.hold(SLOW)
    for _ in range(20):
        await events.submit(SLOW, b"{}")
    await until(lambda: recorder.running[SLOW] == 2)
    quick = [await events.submit(QUICK, b"{}") for _ in range(10)]
    await until(lambda: sum(1 for f, _ in recorder.calls if f == QUICK) == 10)
    assert recorder.running[SLOW] == 2  # never more than its cap of the 4 workers
    assert [r for f, r in recorder.calls if f == QUICK] == quick
    gate.set()
    await asyncio.wait_for(events.wait_idle(), 5)
    assert sum(1 for f, _ in recorder.calls if f == SLOW) == 20


# --- surviving what a delivery does ----------------------------------------------------------


@pytest.mark.asyncio
async def test_a_cancellation_out_of_a_delivery_is_a_failed_attempt_not_the_end_of_a_worker(
    invoker: InvokerParts,
) -> None:
    events, recorder, destination, _ = invoker
    recorder.answers[SLOW] = [asyncio.CancelledError() for _ in range(4)]
    for _ in range(4):
        await events.submit(SLOW, b"{}")
    await until(lambda: len(recorder.calls) >= 8)  # each retried as throttling
    later = [await events.submit(QUICK, b"{}") for _ in range(8)]
    await asyncio.wait_for(events.wait_idle(), 5)
    assert [r for f, r in recorder.calls if f == QUICK] == later
    assert destination.records == []
    assert all(not task.done() for task in events._tasks)


@pytest.mark.asyncio
async def test_an_unexpected_error_in_a_delivery_leaves_the_workers_running(
    invoker: InvokerParts,
) -> None:
    events, recorder, _, _ = invoker
    recorder.answers[SLOW] = [RuntimeError("a bug") for _ in range(4)]
    for _ in range(4):
        await events.submit(SLOW, b"{}")
    await until(lambda: len(recorder.calls) == 4)
    assert all(not task.done() for task in events._tasks)
    await events.submit(QUICK, b"{}")
    await until(lambda: recorder.calls[-1][0] == QUICK)


@pytest.mark.asyncio
async def test_stopping_cancels_the_workers_even_in_the_middle_of_a_delivery(
    invoker: InvokerParts,
) -> None:
    events, recorder, _, _ = invoker
    recorder.hold(SLOW)
    await events.submit(SLOW, b"{}")
    await until(lambda: recorder.running[SLOW] == 1)
    tasks = list(events._tasks)
    await asyncio.wait_for(events.stop(), 2)
    assert all(task.cancelled() for task in tasks)


@pytest.mark.asyncio
async def test_an_event_given_back_to_the_memory_store_is_delivered_here_again(
    invoker: InvokerParts,
) -> None:
    events, recorder, _, _ = invoker
    gate = recorder.hold(SLOW)
    for _ in range(3):
        await events.submit(SLOW, b"{}")
    await until(lambda: recorder.running[SLOW] == 2 and events.lanes.waiting == 1)
    [(_, held)] = list(events.lanes.drain())
    await events.store.give_back(held)
    gate.set()
    await asyncio.wait_for(events.wait_idle(), 5)
    assert len(recorder.calls) == 3
    assert held.event.request_id in [r for _, r in recorder.calls]


# --- ends counted ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_event_given_up_is_counted_by_function_and_condition(
    invoker: InvokerParts,
) -> None:
    events, recorder, destination, counted = invoker
    recorder.answers[SLOW] = [retry.Outcome(500, b"boom", function_error=True)] * 3
    recorder.answers[QUICK] = [retry.Outcome(400, b"bad")]
    await events.submit(SLOW, b"{}")
    await events.submit(QUICK, b"{}")
    await asyncio.wait_for(events.wait_idle(), 5)
    assert sorted(r.condition for r in destination.records) == ["Rejected", "RetriesExhausted"]
    page = counted.render().decode()
    assert (
        'kfn_function_async_events_dropped_total{function="slow",namespace="tenant-a",'
        'reason="RetriesExhausted",version="$LATEST"} 1.0' in page
    )
    assert (
        'kfn_function_async_events_dropped_total{function="quick",namespace="tenant-b",'
        'reason="Rejected",version="$LATEST"} 1.0' in page
    )
    assert (
        'kfn_function_async_events_received_total{function="slow",namespace="tenant-a",'
        'version="$LATEST"} 1.0' in page
    )
    # Each attempt's age: three attempts of the slow function's event, one of the quick one's.
    assert (
        'kfn_function_async_event_age_seconds_count{function="slow",namespace="tenant-a",'
        'version="$LATEST"} 3.0' in page
    )
    assert (
        'kfn_function_async_event_age_seconds_count{function="quick",namespace="tenant-b",'
        'version="$LATEST"} 1.0' in page
    )


# --- a function deleted ----------------------------------------------------------------------


def _activator(functions: list[stats.FunctionKey], destination: Collecting) -> server.Activator:
    return server.Activator(
        routes=[router.Route(host="*", path_prefix=f"/{f.name}", function=f) for f in functions],
        functions={f: config.FunctionLimits(concurrency=1) for f in functions},
        destination=destination,
        event_missing_grace=0.05,
    )


@pytest.mark.asyncio
async def test_a_deleted_functions_waiting_events_end_as_resource_not_found_and_others_flow(
    backend: Backend,
) -> None:
    destination = Collecting()
    activator = _activator([SLOW, QUICK], destination)
    await activator.start("127.0.0.1", 0)
    try:
        activator.update_endpoints(QUICK, frozenset({backend.address}))
        # SLOW has no pod: its events wait in its throttler's queue, in workers.
        waiting = [await activator.invoker.submit(SLOW, b"{}") for _ in range(5)]
        await until(lambda: activator.throttlers[SLOW].queued == 5)
        activator.set_functions({QUICK: config.FunctionLimits(concurrency=1)})
        await until(lambda: len(destination.records) == 5)
        assert sorted(r.request_id for r in destination.records) == sorted(waiting)
        assert {r.condition for r in destination.records} == {"ResourceNotFound"}
        after = [await activator.invoker.submit(QUICK, b"{}") for _ in range(20)]
        await asyncio.wait_for(activator.invoker.wait_idle(), 5)
        delivered = [s.headers["kfn-request-id"] for s in backend.seen]
        assert delivered == after
        # The deleted function's series went with it, but for its events dropped after it.
        page = activator.metrics.render().decode()
        assert [line for line in page.splitlines() if 'namespace="tenant-a"' in line] == [
            'kfn_function_async_events_dropped_total{function="slow",namespace="tenant-a",'
            'reason="ResourceNotFound",version="$LATEST"} 5.0'
        ]
        assert (
            'kfn_function_async_events_received_total{function="quick",namespace="tenant-b",'
            'version="$LATEST"} 20.0' in page
        )
    finally:
        await activator.shutdown(drain_timeout=1)


@pytest.mark.asyncio
async def test_a_request_waiting_for_a_deleted_function_is_answered_404_at_once(
    backend: Backend,
) -> None:
    activator = _activator([SLOW], Collecting())
    await activator.start("127.0.0.1", 0)
    try:
        client = await Client.connect(activator.ports[0])
        pending = asyncio.create_task(client.request("GET", "/slow"))
        await until(lambda: activator.throttlers[SLOW].queued == 1)
        activator.set_functions({})
        response = await asyncio.wait_for(pending, 2)
        assert response.status == 404
        await client.close()
    finally:
        await activator.shutdown(drain_timeout=1)
