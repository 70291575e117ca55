"""Holding, balancing and limiting requests through the proxy."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
import tracemalloc

import pytest

from kfn import stats
from kfn.activator import server, upstream

from .conftest import FN, MakeActivator, until
from .http import Backend, Client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.asyncio
async def test_request_waits_in_queue_until_an_endpoint_is_ready(
    backend: Backend, make_activator: MakeActivator
) -> None:
    pokes: list[stats.FunctionKey] = []
    activator = await make_activator()
    throttle = activator.ctx.functions[FN].throttler
    throttle.poke = pokes.append
    client = await Client.connect(activator.ports[0])
    pending = asyncio.ensure_future(client.request("GET", "/cold"))
    await until(lambda: throttle.queued == 1)
    assert not pending.done()
    assert pokes == [FN]
    activator.update_endpoints(FN, frozenset({backend.address}))
    response = await asyncio.wait_for(pending, 2)
    assert response.json()["path"] == "/cold"
    assert activator.metrics.functions[FN].cold_starts == 1
    # No pod watch here: no source saw the phases, so the whole cold start is other's.
    timing = dict(part.split(";dur=") for part in response.headers["server-timing"].split(", "))
    assert float(timing["other"]) == float(timing["cold-start"]) > 0
    await client.close()


@pytest.mark.asyncio
async def test_never_more_than_concurrency_requests_per_endpoint(
    make_activator: MakeActivator,
) -> None:
    first, second = await Backend("a").start(), await Backend("b").start()
    activator = await make_activator(
        concurrency=2, endpoints=frozenset({first.address, second.address})
    )
    clients = [await Client.connect(activator.ports[0]) for _ in range(12)]
    responses = await asyncio.gather(*(c.request("GET", "/slow?ms=30") for c in clients))
    assert all(r.status == 200 for r in responses)
    assert first.peak <= 2
    assert second.peak <= 2
    assert {r.json()["backend"] for r in responses} == {"a", "b"}
    for client in clients:
        await client.close()
    await first.stop()
    await second.stop()


@pytest.mark.asyncio
async def test_a_full_queue_answers_429_too_many_requests_with_retry_after(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(queue_limit=2)
    clients = [await Client.connect(activator.ports[0]) for _ in range(3)]
    waiting = [asyncio.ensure_future(c.request("GET", "/")) for c in clients[:2]]
    await until(lambda: activator.ctx.functions[FN].throttler.queued == 2)
    refused = await clients[2].request("GET", "/")
    assert refused.status == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["errorType"] == "TooManyRequestsException"
    assert refused.json()["errorMessage"].startswith(
        "Rate Exceeded: 2 requests are already waiting for a pod of this function."
    )
    activator.update_endpoints(FN, frozenset({backend.address}))
    assert [r.status for r in await asyncio.gather(*waiting)] == [200, 200]
    for client in clients:
        await client.close()


@pytest.mark.asyncio
async def test_waiting_past_the_queue_timeout_answers_429_and_never_claims_a_timeout(
    make_activator: MakeActivator,
) -> None:
    activator = await make_activator(timeout_ms=60_000, queue_timeout_ms=100)
    client = await Client.connect(activator.ports[0])
    began = time.perf_counter()
    response = await client.request("GET", "/")
    assert time.perf_counter() - began < 1.0
    assert response.status == 429
    assert response.headers["retry-after"] == "1"
    assert response.json() == {
        "errorType": "TooManyRequestsException",
        "errorMessage": "Rate Exceeded: no pod of this function was free within its queueTimeout "
        "(0.10 s); all the pods scale.maxReplicas allows are busy or still starting. Retry "
        "after Retry-After, or raise the Function's scale.maxReplicas, concurrency or "
        "queueTimeout",
    }
    assert activator.ctx.functions[FN].throttler.queued == 0
    # The connection stays usable after the refusal with the request fully read.
    assert (await client.request("GET", "/")).status == 429
    await client.close()


@pytest.mark.asyncio
async def test_a_cold_start_its_waiters_gave_up_on_is_counted_once_and_its_phases_when_answered(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(timeout_ms=60_000, queue_timeout_ms=200)
    fm = activator.metrics.of(FN)
    first, second = (
        await Client.connect(activator.ports[0]),
        await Client.connect(activator.ports[0]),
    )
    # Two requests wait for the same start and give up before any pod is ready: one start,
    # counted at once, though no answer will ever report it.
    refused = await asyncio.gather(first.request("GET", "/"), second.request("GET", "/"))
    assert [r.status for r in refused] == [429, 429]
    assert (fm.cold_starts, fm.cold_start_timeouts) == (1, 1)
    assert fm.cold_start_durations.total == 0
    # A request that still waits for that start when the pod comes is answered with its
    # phases; the start is not counted a second time.
    pending = asyncio.ensure_future(first.request("GET", "/later"))
    await until(lambda: activator.ctx.functions[FN].throttler.queued == 1)
    activator.update_endpoints(FN, frozenset({backend.address}))
    assert (await asyncio.wait_for(pending, 2)).status == 200
    assert (fm.cold_starts, fm.cold_start_timeouts) == (1, 1)
    assert sum(fm.cold_start_durations.counts) == 1
    # At the next start from zero, a request answered in time counts it as usual.
    activator.update_endpoints(FN, frozenset())
    pending = asyncio.ensure_future(second.request("GET", "/again"))
    await until(lambda: activator.ctx.functions[FN].throttler.queued == 1)
    activator.update_endpoints(FN, frozenset({backend.address}))
    assert (await asyncio.wait_for(pending, 2)).status == 200
    assert (fm.cold_starts, fm.cold_start_timeouts) == (2, 1)
    await first.close()
    await second.close()


@pytest.mark.asyncio
async def test_a_request_may_wait_longer_than_the_function_timeout_within_its_queue_timeout(
    backend: Backend, make_activator: MakeActivator
) -> None:
    """The function's timeout is the function's run, not the wait for a pod (a cold start)."""
    activator = await make_activator(timeout_ms=100, queue_timeout_ms=5000)
    client = await Client.connect(activator.ports[0])
    pending = asyncio.ensure_future(client.request("GET", "/"))
    await asyncio.sleep(0.4)
    activator.update_endpoints(FN, frozenset({backend.address}))
    assert (await pending).status == 200
    await client.close()


@pytest.mark.asyncio
async def test_slow_function_times_out_with_504_and_frees_its_slot(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(
        timeout_ms=100, concurrency=1, endpoints=frozenset({backend.address})
    )
    client = await Client.connect(activator.ports[0])
    # The runtime answers its own 504 at the timeout; this backend does not, so the
    # activator's timer (the timeout plus its margin) does.
    response = await client.request("GET", "/slow?ms=3000")
    assert response.status == 504
    assert response.json()["errorMessage"] == "Task timed out after 0.10 seconds"
    assert activator.ctx.functions[FN].throttler.in_flight == 0
    assert (await client.request("GET", "/fast")).status == 200
    await client.close()


@pytest.mark.asyncio
async def test_refused_connection_is_retried_on_another_endpoint(
    backend: Backend, make_activator: MakeActivator, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[str] = []
    connect = upstream.Endpoint.connect

    async def recorded(endpoint: upstream.Endpoint) -> upstream.UpstreamConnection:
        attempts.append(endpoint.address)
        return await connect(endpoint)

    monkeypatch.setattr(upstream.Endpoint, "connect", recorded)
    dead = f"127.0.0.1:{_free_port()}"
    # Of two idle endpoints the one known first is chosen: the dead one.
    activator = await make_activator(concurrency=1, endpoints=frozenset({dead}))
    activator.update_endpoints(FN, frozenset({dead, backend.address}))
    for _ in range(4):
        client = await Client.connect(activator.ports[0])
        response = await client.request("GET", "/")
        assert response.status == 200
        await client.close()
    assert attempts.count(dead) == 4
    assert len(backend.seen) == 4


@pytest.mark.asyncio
async def test_only_dead_endpoints_answer_502(make_activator: MakeActivator) -> None:
    activator = await make_activator(endpoints=frozenset({f"127.0.0.1:{_free_port()}"}))
    client = await Client.connect(activator.ports[0])
    response = await client.request("GET", "/")
    assert response.status == 502
    await client.close()


@pytest.mark.asyncio
async def test_removed_endpoint_finishes_in_flight_requests_and_gets_no_new_ones(
    make_activator: MakeActivator,
) -> None:
    old, new = await Backend("old").start(), await Backend("new").start()
    activator = await make_activator(endpoints=frozenset({old.address}))
    first = await Client.connect(activator.ports[0])
    slow = asyncio.ensure_future(first.request("GET", "/slow?ms=100"))
    await until(lambda: old.in_flight == 1)
    activator.update_endpoints(FN, frozenset({new.address}))
    second = await Client.connect(activator.ports[0])
    assert (await second.request("GET", "/")).json()["backend"] == "new"
    assert (await slow).json()["backend"] == "old"
    assert len(old.seen) == 1
    for client in (first, second):
        await client.close()
    await old.stop()
    await new.stop()


@pytest.mark.asyncio
async def test_unknown_route_answers_404(make_activator: MakeActivator) -> None:
    activator = await make_activator()
    activator.set_routes([])
    client = await Client.connect(activator.ports[0])
    response = await client.request("GET", "/nothing")
    assert response.status == 404
    assert response.json()["errorType"] == "ResourceNotFoundException"
    await client.close()


@pytest.mark.asyncio
async def test_fifty_mebibyte_body_streams_both_ways_without_buffering(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(timeout_ms=60_000, endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    size = 50 * 1024 * 1024
    chunk = bytes(range(256)) * 4096  # 1 MiB
    digest = hashlib.sha256()
    tracemalloc.start()
    await client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    for _ in range(size // len(chunk)):
        digest.update(chunk)
        await client.send(chunk)
    response = await client.read_response()
    download = await client.request("GET", "/stream?mib=50")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert response.json()["body_size"] == size
    assert response.json()["body_sha256"] == digest.hexdigest()
    assert len(download.body) == size
    # The client keeps the 50 MiB download (plus parsing copies); the proxy adds
    # little on top: an activator that buffered both bodies would add 100 MiB.
    assert peak < 3 * size


@pytest.mark.asyncio
async def test_graceful_shutdown_finishes_in_flight_requests_and_closes(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator: server.Activator = await make_activator(endpoints=frozenset({backend.address}))
    port = activator.ports[0]
    busy = await Client.connect(port)
    idle = await Client.connect(port)
    assert (await idle.request("GET", "/")).status == 200
    pending = asyncio.ensure_future(busy.request("GET", "/slow?ms=200"))
    await until(lambda: backend.in_flight == 1)
    shutdown = asyncio.ensure_future(activator.shutdown(drain_timeout=5))
    await until(lambda: activator.ctx.draining)
    assert await idle.closed()
    response = await pending
    assert response.status == 200
    assert response.headers["connection"] == "close"
    await shutdown
    with pytest.raises(ConnectionRefusedError):
        await Client.connect(port)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("drain_timeout", "queued_status"),
    [
        # 8 s leaves the queued request 8 - (3 + 1) = 4 s to get a pod: the running one frees
        # it after 2 s, and the drain serves it whole.
        (8.0, 200),
        # 4.5 s leaves it 0.5 s, before the pod is free: refused then with 429, unstarted,
        # rather than sent to be cut when the drain ends.
        (4.5, 429),
    ],
)
async def test_a_stopping_activator_sends_a_queued_request_only_while_its_drain_can_serve_it(
    backend: Backend, make_activator: MakeActivator, drain_timeout: float, queued_status: int
) -> None:
    # A queue timeout of a minute, longer than any drain here: only the stop bounds the wait.
    activator = await make_activator(
        concurrency=1,
        timeout_ms=3000,
        queue_timeout_ms=60_000,
        endpoints=frozenset({backend.address}),
    )
    port = activator.ports[0]
    running = asyncio.ensure_future((await Client.connect(port)).request("GET", "/slow?ms=2000"))
    await until(lambda: backend.in_flight == 1)
    queued = asyncio.ensure_future((await Client.connect(port)).request("GET", "/slow?ms=10"))
    await until(lambda: activator.ctx.functions[FN].throttler.queued == 1)
    stopped = time.perf_counter()
    shutdown = asyncio.ensure_future(activator.shutdown(drain_timeout=drain_timeout))
    answer = await queued
    took = time.perf_counter() - stopped
    assert answer.status == queued_status
    assert answer.headers["connection"] == "close"
    if queued_status == 429:
        assert answer.json()["errorType"] == "TooManyRequestsException"
        assert "stopping" in answer.json()["errorMessage"]
        assert answer.headers["retry-after"] == "1"
        assert 0.4 <= took < 1.5
        assert len(backend.seen) == 1  # never sent
    else:
        assert 1.5 <= took < 4.0
    # The request that was running is served to its end either way.
    assert (await running).status == 200
    await shutdown


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/echo", "/_kfn/functions/default/hello/invoke"])
async def test_a_request_the_runtime_refused_unstarted_is_sent_again(
    backend: Backend, make_activator: MakeActivator, path: str
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    backend.refusals = [429, 503]
    client = await Client.connect(activator.ports[0])
    response = await client.request("POST", path, b'{"n": 1}')
    assert response.status == 200
    assert len(backend.seen) == 3
    assert len({(seen.body_size, seen.body_sha256) for seen in backend.seen}) == 1
    assert activator.metrics.of(FN).retries == 2
    await client.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/limited", "/own503"])
async def test_a_functions_own_429_or_503_is_passed_on_not_retried(
    backend: Backend, make_activator: MakeActivator, path: str
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    response = await client.request("GET", path)
    assert response.status in (429, 503)
    assert b"message" in response.body
    assert len(backend.seen) == 1
    await client.close()


@pytest.mark.asyncio
async def test_a_handlers_own_429_shaped_like_a_refusal_is_passed_on_not_retried(
    backend: Backend, make_activator: MakeActivator
) -> None:
    # Same status, Retry-After and body as the runtime's refusal; only the runtime's
    # Kfn-Not-Started header tells a refusal apart.
    activator = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    response = await client.request("GET", "/handler429")
    assert response.status == 429
    assert response.json() == {"message": "Too Many Requests"}
    assert len(backend.seen) == 1
    assert activator.metrics.of(FN).retries == 0
    await client.close()


@pytest.mark.asyncio
async def test_a_refusal_too_large_to_send_again_reaches_the_client_without_the_runtimes_marker(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    backend.refusals = [429]
    client = await Client.connect(activator.ports[0])
    response = await client.request("POST", "/echo", b"x" * (256 * 1024))
    assert response.status == 429
    assert "kfn-not-started" not in response.headers
    assert len(backend.seen) == 1
    await client.close()
