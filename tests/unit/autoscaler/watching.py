"""The autoscaler's watch of Functions (:class:`kfn.autoscaler.cluster.FunctionSpecs`) run
against a loopback API server (:class:`tests.unit.apiserver.ApiServer`), feeding an autoscaler
that scales in memory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kfn.autoscaler import autoscaler, cluster, scaler
from tests.unit.apiserver import ApiServer


@contextlib.asynccontextmanager
async def function_specs(**options: Any) -> AsyncIterator[tuple[ApiServer, autoscaler.Autoscaler]]:
    """The server a test sends Functions to, and the autoscaler the watch sets specs on;
    ``options`` are :class:`cluster.FunctionSpecs`'. On leaving, the watch must end by being
    cancelled, and the server hangs up."""
    server = ApiServer()
    target = autoscaler.Autoscaler(scaler.InMemoryScaler())
    specs = cluster.FunctionSpecs(target, reflect=server.reflect, **options)
    running = asyncio.create_task(specs.run())
    yield server, target
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    server.hang_up()
