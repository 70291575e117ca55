"""The activator in front of the real runtimes (a subprocess each, on loopback)."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import AsyncIterator

import pytest

from kfn.activator import server
from tests.unit.runtimes import conftest as runtimes

from .conftest import FN, MakeActivator
from .http import Client


@contextlib.asynccontextmanager
async def _through_activator(
    make_activator: MakeActivator, tmp_path: pathlib.Path, language: str, handler: str
) -> AsyncIterator[tuple[runtimes.RunningRuntime, server.Activator, Client]]:
    """A real runtime serving ``handler``, an activator in front of it and a client of the
    activator: (runtime, activator, client)."""
    runtime = runtimes.start(language, runtimes.make_task_root(language, tmp_path), handler)
    try:
        activator = await make_activator(endpoints=frozenset({f"127.0.0.1:{runtime.port}"}))
        client = await Client.connect(activator.ports[0])
        yield runtime, activator, client
        await client.close()
    finally:
        runtime.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("language", runtimes.LANGUAGES)
async def test_a_handler_returning_429_too_many_requests_is_passed_on_as_its_answer(
    make_activator: MakeActivator, tmp_path: pathlib.Path, language: str
) -> None:
    async with _through_activator(make_activator, tmp_path, language, "app.too_many") as (
        runtime,
        activator,
        client,
    ):
        response = await client.request("GET", "/limited")
        assert response.status == 429
        assert response.json() == {"message": "Too Many Requests"}
        assert "kfn-not-started" not in response.headers
        assert activator.metrics.of(FN).retries == 0
        assert runtime.output().count("START RequestId") == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("language", runtimes.LANGUAGES)
async def test_an_invoke_through_the_activator_carries_one_request_id(
    make_activator: MakeActivator, tmp_path: pathlib.Path, language: str
) -> None:
    async with _through_activator(make_activator, tmp_path, language, "app.echo") as (_, _, client):
        for path in ("/_kfn/functions/default/hello/invoke", "/some/route"):
            response = await client.request("POST", path, b"{}")
            assert response.status == 200
            ids = [v for k, v in response.raw_headers if k == "kfn-request-id"]
            assert len(ids) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("language", runtimes.LANGUAGES)
async def test_the_handlers_own_time_from_the_runtime_is_observed_and_kept_from_the_caller(
    make_activator: MakeActivator, tmp_path: pathlib.Path, language: str
) -> None:
    async with _through_activator(make_activator, tmp_path, language, "app.echo") as (
        _,
        activator,
        client,
    ):
        for path in ("/_kfn/functions/default/hello/invoke", "/some/route"):
            response = await client.request("POST", path, b"{}")
            assert response.status == 200
            assert "kfn-handler-duration" not in response.headers
        handler = activator.metrics.of(FN).handler_durations
        assert sum(handler.counts) == 2
        # The handler's own time is part of what the activator saw.
        assert 0 < handler.total < activator.metrics.of(FN).durations.total
        assert activator.metrics.of(FN).invocations == 2
