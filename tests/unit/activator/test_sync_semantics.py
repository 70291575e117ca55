"""Lambda's synchronous semantics through the real activator and a real runtime (loopback):
a request over capacity is refused with 429 within the queue bound, never reported as a task
timeout; the function's timeout starts with its handler, after a slow cold start; and a load
slower than the init budget is answered with the init timeout at once.

A pod "starts" as discovery sees it start: the activator learns the runtime's address once
its own readiness probe (``pod_probe``) says it loaded, or that it failed to."""

from __future__ import annotations

import asyncio
import collections
import pathlib
import time

import pytest

from kfn.activator import pod_probe, server
from tests.unit.runtimes import conftest as runtimes

from .conftest import FN, MakeActivator
from .http import Client

INVOKE = "/_kfn/functions/default/hello/invoke"


async def discovered(activator: server.Activator, runtime: runtimes.RunningRuntime) -> None:
    """Probe the runtime every 20 ms as discovery does; hand it to the activator when it
    answers (ready, or with an init error)."""
    while (await pod_probe.probe("127.0.0.1", runtime.port)).answer is pod_probe.Answer.NOT_READY:  # noqa: ASYNC110 - polling is what discovery does
        await asyncio.sleep(0.02)
    activator.update_endpoints(FN, frozenset({f"127.0.0.1:{runtime.port}"}))


async def timed_invoke(port: int, body: bytes) -> tuple[int, dict[str, object], float]:
    client = await Client.connect(port)
    began = time.perf_counter()
    response = await client.request("POST", INVOKE, body)
    took = time.perf_counter() - began
    await client.close()
    return response.status, response.json(), took


@pytest.mark.asyncio
async def test_requests_over_capacity_get_429_within_the_queue_bound_and_none_claims_a_timeout(
    make_activator: MakeActivator, tmp_path: pathlib.Path
) -> None:
    # One pod, concurrency 1, a 0.5 s handler, a 60 s timeout: 30 callers at once. With a
    # 1 s queue timeout about three run; the others must hear 429 after ~1 s, not 504 after 60.
    runtime = runtimes.start(
        "python",
        runtimes.make_task_root("python", tmp_path),
        "app.slow",
        KFN_CONCURRENCY="1",
        KFN_TIMEOUT_MS="60000",
    )
    try:
        runtime.wait_ready()
        activator = await make_activator(
            concurrency=1,
            timeout_ms=60_000,
            queue_timeout_ms=1000,
            endpoints=frozenset({f"127.0.0.1:{runtime.port}"}),
        )
        began = time.perf_counter()
        results = await asyncio.gather(
            *(timed_invoke(activator.ports[0], b'{"ms": 500}') for _ in range(30))
        )
        wall = time.perf_counter() - began
        statuses = collections.Counter(status for status, _, _ in results)
        refused = [(body, took) for status, body, took in results if status == 429]
        print(
            f"\nover capacity: {dict(statuses)} in {wall:.2f} s; 429 after "
            f"{min(t for _, t in refused):.2f}-{max(t for _, t in refused):.2f} s"
        )
        assert set(statuses) == {200, 429}
        assert 2 <= statuses[200] <= 4
        assert all(body["errorType"] == "TooManyRequestsException" for body, _ in refused)
        assert all("Task timed out" not in str(body) for _, body, _ in results)
        # Within the queue bound plus one run of the handler in flight, with slack.
        assert max(took for _, took in refused) < 1.0 + 0.5 + 0.5
        assert runtime.output().count("START RequestId") == statuses[200]
    finally:
        runtime.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("language", runtimes.LANGUAGES)
async def test_after_a_slow_cold_start_the_handler_starts_with_its_whole_timeout(
    make_activator: MakeActivator, tmp_path: pathlib.Path, language: str
) -> None:
    # A function with a 3 s timeout whose module takes 2 s to import, invoked at zero: it
    # waits ~2 s for its pod, then has all of its 3 s (it used to start with ~1 s left).
    activator = await make_activator(concurrency=1, timeout_ms=3000, queue_timeout_ms=15_000)
    began = time.perf_counter()
    pending = asyncio.ensure_future(timed_invoke(activator.ports[0], b'{"ms": 2500}'))
    runtime = runtimes.start(
        language,
        runtimes.make_task_root(language, tmp_path),
        "slow_import.timed",
        SLOW_IMPORT_MS="2000",
        KFN_TIMEOUT_MS="3000",
    )
    try:
        await discovered(activator, runtime)
        cold = time.perf_counter() - began
        status, body, took = await pending
        print(
            f"\n{language}: cold start {cold:.2f} s; remaining at handler start "
            f"{body.get('remaining_at_start')} ms of 3000; answered after {took:.2f} s"
        )
        assert status == 200, body
        assert cold > 2.0
        assert 2900 <= int(str(body["remaining_at_start"])) <= 3000
        # The 2 s import, then the 2.5 s the handler worked, nothing cut short.
        assert took > 4.4
    finally:
        runtime.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("language", runtimes.LANGUAGES)
async def test_an_import_slower_than_the_init_budget_answers_the_init_timeout_at_once(
    make_activator: MakeActivator, tmp_path: pathlib.Path, language: str
) -> None:
    activator = await make_activator(concurrency=1, timeout_ms=3000, queue_timeout_ms=15_000)
    began = time.perf_counter()
    pending = asyncio.ensure_future(timed_invoke(activator.ports[0], b"{}"))
    runtime = runtimes.start(
        language,
        runtimes.make_task_root(language, tmp_path),
        "slow_import.timed",
        SLOW_IMPORT_MS="20000",
        KFN_INIT_TIMEOUT_MS="1000",
    )
    try:
        await discovered(activator, runtime)
        status, body, took = await pending
        print(
            f"\n{language}: init timeout answered after {took:.2f} s "
            f"(budget 1.00 s, import 20 s): {status} {body.get('errorType')}"
        )
        assert status == 502
        assert body["errorType"] == "Runtime.InitTimeout"
        assert took < 2.5
        # Later callers are answered at once.
        status, body, took = await timed_invoke(activator.ports[0], b"{}")
        assert status == 502
        assert took < 0.5
        assert time.perf_counter() - began < 5
    finally:
        runtime.stop()
