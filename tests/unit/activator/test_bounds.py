"""What a client may make the activator hold: URL, head, time, connections, bytes."""

from __future__ import annotations

import asyncio

import pytest

from kfn import stats
from kfn.activator import bounds, config, router, server

from .conftest import MakeActivator, until
from .http import Backend, Client, build_request

OTHER = stats.FunctionKey("default", "other")


@pytest.mark.asyncio
async def test_a_url_past_the_bound_is_answered_414_in_lambda_shape_and_closed(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(
        endpoints=frozenset({backend.address}), bounds=bounds.Bounds(max_url_bytes=1024)
    )
    client = await Client.connect(activator.ports[0])
    assert (await client.request("GET", "/" + "a" * 1000)).status == 200
    response = await client.request("GET", "/" + "a" * 1024)
    assert response.status == 414
    assert response.json() == {
        "errorType": "InvalidRequestContentException",
        "errorMessage": "the URL is longer than 1024 bytes",
    }
    assert response.headers["connection"] == "close"
    assert await client.closed()
    assert len(backend.seen) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("pieces", [1, 64], ids=["at-once", "in-pieces"])
async def test_a_head_past_the_bound_is_answered_431_whether_it_arrives_at_once_or_in_pieces(
    backend: Backend, make_activator: MakeActivator, pieces: int
) -> None:
    activator = await make_activator(
        endpoints=frozenset({backend.address}), bounds=bounds.Bounds(max_head_bytes=8192)
    )
    client = await Client.connect(activator.ports[0])
    raw = build_request("GET", "/", headers={f"X-H{i}": "v" * 100 for i in range(100)})
    step = len(raw) // pieces + 1
    for start in range(0, len(raw), step):
        await client.send(raw[start : start + step])
    response = await client.read_response()
    assert response.status == 431
    assert response.json()["errorMessage"] == (
        "the request line and headers are larger than 8192 bytes"
    )
    assert await client.closed()
    assert backend.seen == []


@pytest.mark.asyncio
async def test_a_head_sent_too_slowly_is_answered_408_and_closed(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(
        endpoints=frozenset({backend.address}), bounds=bounds.Bounds(head_timeout=0.2)
    )
    client = await Client.connect(activator.ports[0])
    await client.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
    response = await client.read_response()
    assert response.status == 408
    assert response.json()["errorType"] == "RequestTimeoutException"
    assert await client.closed()
    assert backend.seen == []


@pytest.mark.asyncio
async def test_a_connection_that_sends_nothing_is_closed_after_the_head_timeout(
    make_activator: MakeActivator,
) -> None:
    activator = await make_activator(bounds=bounds.Bounds(head_timeout=0.2, idle_timeout=60))
    client = await Client.connect(activator.ports[0])
    await until(lambda: not activator.ctx.connections)
    assert await client.reader.read() == b""


@pytest.mark.asyncio
async def test_an_idle_connection_is_closed_after_the_idle_timeout_from_its_last_answer(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(
        endpoints=frozenset({backend.address}),
        bounds=bounds.Bounds(head_timeout=5, idle_timeout=0.3),
    )
    client = await Client.connect(activator.ports[0])
    # Requests closer together than the idle timeout keep the connection, however long.
    for _ in range(3):
        assert (await client.request("GET", "/slow?ms=200")).status == 200
        await asyncio.sleep(0.1)
    assert backend.connections == 1
    assert activator.ctx.connections
    await until(lambda: not activator.ctx.connections)
    assert await client.reader.read() == b""


@pytest.mark.asyncio
async def test_a_connection_past_the_cap_is_answered_503_with_retry_after_in_lambda_shape(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(
        endpoints=frozenset({backend.address}), bounds=bounds.Bounds(max_connections=2)
    )
    port = activator.ports[0]
    held = [await Client.connect(port) for _ in range(2)]
    for client in held:
        assert (await client.request("GET", "/")).status == 200
    refused = await Client.connect(port)
    response = await refused.request("GET", "/")
    assert response.status == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["errorType"] == "TooManyRequestsException"
    assert "too many open connections" in response.json()["errorMessage"]
    assert await refused.closed()
    await held.pop().close()
    await until(lambda: len(activator.ctx.connections) == 1)
    again = await Client.connect(port)
    assert (await again.request("GET", "/")).status == 200
    for client in (*held, again):
        await client.close()


@pytest.mark.asyncio
async def test_bodies_held_for_functions_at_zero_share_one_budget_across_functions() -> None:
    activator = server.Activator(
        routes=[
            router.Route(host="*", path_prefix="/a", function=stats.FunctionKey("default", "a")),
            router.Route(host="*", path_prefix="/b", function=OTHER),
        ],
        functions={
            stats.FunctionKey("default", "a"): config.FunctionLimits(timeout_ms=10_000),
            OTHER: config.FunctionLimits(timeout_ms=10_000),
        },
        bounds=bounds.Bounds(max_buffered_bytes=300_000),
    )
    await activator.start("127.0.0.1", 0)
    budget = activator.ctx.budget
    body = b"x" * 100_000
    port = activator.ports[0]
    waiting = [await Client.connect(port) for _ in range(3)]
    pending = [
        asyncio.ensure_future(c.request("POST", path, body))
        for c, path in zip(waiting, ["/a", "/b", "/a"], strict=True)
    ]
    await until(lambda: budget.used == 300_000)
    refused = await Client.connect(port)
    response = await refused.request("POST", "/b", body)
    assert response.status == 503
    assert response.headers["retry-after"] == "1"
    assert "too many request bytes" in response.json()["errorMessage"]
    # A function comes up: its requests are sent on and give their bytes back.
    upstream = await Backend("b").start()
    activator.update_endpoints(OTHER, frozenset({upstream.address}))
    assert (await pending[1]).status == 200
    assert budget.used == 200_000
    await activator.shutdown(drain_timeout=0.1)
    await upstream.stop()
    assert budget.used == 0
    for client in (*waiting, refused):
        await client.close()


@pytest.mark.asyncio
async def test_an_event_payload_arriving_counts_against_the_budget(
    make_activator: MakeActivator,
) -> None:
    activator = await make_activator(bounds=bounds.Bounds(max_buffered_bytes=1000))
    client = await Client.connect(activator.ports[0])
    response = await client.request(
        "POST",
        "/_kfn/functions/default/hello/invoke",
        b"x" * 2000,
        headers={"Kfn-Invocation-Type": "Event"},
    )
    assert response.status == 503
    assert activator.ctx.budget.used == 0
    await client.close()


def test_the_url_limit_cannot_exceed_the_head_limit_that_includes_it() -> None:
    with pytest.raises(ValueError, match="URL limit"):
        bounds.Bounds(max_url_bytes=64 * 1024, max_head_bytes=32 * 1024)
