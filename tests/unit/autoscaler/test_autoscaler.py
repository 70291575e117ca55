"""The Autoscaler loop acting through a Scaler, and its HTTP endpoint."""

from __future__ import annotations

import socket

import pytest

from kfn import stats
from kfn.autoscaler import autoscaler, scaler, scaling, server

from ..activator.http import Client  # a plain HTTP/1.1 client

FN = stats.FunctionKey("default", "hello")


def _message(queued: int, *, poke: bool = False, concurrency: float = 0.0) -> stats.StatMessage:
    stat = stats.FunctionStat(FN, concurrency, int(concurrency), queued, 1)
    return stats.StatMessage("act-1", 0.0, (stat,), poke=poke)


@pytest.mark.asyncio
async def test_poke_scales_from_zero_without_waiting_for_a_tick() -> None:
    replicas = scaler.InMemoryScaler({FN: 0})
    scaling_loop = autoscaler.Autoscaler(replicas)
    scaling_loop.set_spec(FN, scaling.ScaleSpec())
    await scaling_loop.receive(_message(1, poke=True), now=10.0)
    assert replicas.replicas[FN] == 1


@pytest.mark.asyncio
async def test_tick_applies_only_changes() -> None:
    replicas = scaler.InMemoryScaler({FN: 3})
    scaling_loop = autoscaler.Autoscaler(replicas)
    scaling_loop.set_spec(FN, scaling.ScaleSpec(target_concurrency=1, min_replicas=3))
    for second in range(5):
        await scaling_loop.receive(_message(0, concurrency=3.0), now=100.0 + second)
        await scaling_loop.tick(now=100.0 + second)
    assert replicas.history == []


@pytest.mark.asyncio
async def test_functions_without_spec_are_not_scaled() -> None:
    replicas = scaler.InMemoryScaler({FN: 0})
    scaling_loop = autoscaler.Autoscaler(replicas)
    await scaling_loop.receive(_message(5, poke=True), now=1.0)
    await scaling_loop.tick(now=1.0)
    assert replicas.history == []


@pytest.mark.asyncio
async def test_stats_endpoint_accepts_messages_and_rejects_garbage() -> None:
    received: list[stats.StatMessage] = []

    async def receive(message: stats.StatMessage) -> None:
        received.append(message)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = await server.serve(receive, "127.0.0.1", port)
    client = await Client.connect(port)
    ok = await client.request("POST", stats.STATS_PATH, stats.encode(_message(2)))
    bad = await client.request("POST", stats.STATS_PATH, b'{"v": 9}')
    missing = await client.request("POST", "/other", b"{}")
    assert (ok.status, bad.status, missing.status) == (204, 400, 404)
    assert received == [_message(2)]
    await client.close()
    endpoint.close()
