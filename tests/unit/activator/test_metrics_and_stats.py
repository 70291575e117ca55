"""Metrics on their own port, and the stats messages sent to the autoscaler."""

from __future__ import annotations

import asyncio
import socket

import pytest

from kfn import rollout, stats
from kfn.activator import metrics, stats_reporter, throttler
from kfn.autoscaler import server as stats_server

from .conftest import FN, MakeActivator, until
from .http import Backend, Client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Collecting:
    def __init__(self) -> None:
        self.messages: list[stats.StatMessage] = []

    async def send(self, message: stats.StatMessage) -> None:
        self.messages.append(message)


@pytest.mark.asyncio
async def test_metrics_are_served_with_conventional_names(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(
        metrics_port=_free_port(), endpoints=frozenset({backend.address})
    )
    client = await Client.connect(activator.ports[0])
    for _ in range(3):
        await client.request("GET", "/")
    await client.close()
    scraper = await Client.connect(activator.ports[1])
    page = (await scraper.request("GET", "/metrics")).body.decode()
    fn = 'function="hello",namespace="default",version="$LATEST"'
    for line in (
        f'kfn_activator_requests_total{{code="200",{fn}}} 3.0',
        f"kfn_activator_request_duration_seconds_count{{{fn}}} 3.0",
        f"kfn_function_invocations_total{{{fn}}} 3.0",
        f'kfn_function_errors_total{{function="hello",kind="function",{fn[17:]}}} 0.0',
        f'kfn_function_errors_total{{function="hello",kind="throttled",{fn[17:]}}} 0.0',
        f"kfn_function_cold_starts_total{{{fn}}} 0.0",
        f"kfn_function_cold_start_timeouts_total{{{fn}}} 0.0",
        f"kfn_activator_queue_depth{{{fn}}} 0.0",
        f"kfn_activator_queue_capacity{{{fn}}} 1000.0",
        f"kfn_function_concurrent_executions{{{fn}}} 0.0",
        f"kfn_function_ready_endpoints{{{fn}}} 1.0",
        "kfn_activator_buffered_bytes 0.0",
    ):
        assert line + "\n" in page, line
    assert "kfn_function_cold_start_duration_seconds_bucket" in page
    # The backend sends no Kfn-Handler-Duration: no handler time is observed.
    assert f"kfn_function_duration_seconds_count{{{fn}}} 0.0" in page
    assert "default/hello" not in page


@pytest.mark.asyncio
async def test_reporter_lists_functions_with_activity(
    backend: Backend, make_activator: MakeActivator
) -> None:
    sink = Collecting()
    activator = await make_activator(endpoints=frozenset({backend.address}), stats_sink=sink)
    assert activator.reporter is not None
    assert activator.reporter.build().functions == ()
    client = await Client.connect(activator.ports[0])
    await client.request("GET", "/")
    message = activator.reporter.build()
    [stat] = message.functions
    assert stat.function == FN
    assert stat.requests == 1
    assert stat.peak_concurrency == 1
    await client.close()


@pytest.mark.asyncio
async def test_cold_request_pokes_the_autoscaler_over_http_at_once(
    make_activator: MakeActivator,
) -> None:
    received: list[stats.StatMessage] = []

    async def receive(message: stats.StatMessage) -> None:
        received.append(message)

    port = _free_port()
    endpoint = await stats_server.serve(receive, "127.0.0.1", port)
    sink = stats_reporter.HttpStatsSink(f"http://127.0.0.1:{port}/stats")
    activator = await make_activator(stats_sink=sink, queue_timeout_ms=300, activator_id="act-1")
    client = await Client.connect(activator.ports[0])
    pending = asyncio.ensure_future(client.request("GET", "/"))
    await until(lambda: received)
    [poke] = received
    assert poke.poke
    assert poke.activator == "act-1"
    assert poke.functions[0].function == FN
    assert poke.functions[0].queued == 1
    assert (await pending).status == 429
    await client.close()
    endpoint.close()


@pytest.mark.asyncio
async def test_the_report_counts_invocations_failures_and_handler_durations_of_the_period(
    backend: Backend, make_activator: MakeActivator
) -> None:
    sink = Collecting()
    activator = await make_activator(endpoints=frozenset({backend.address}), stats_sink=sink)
    assert activator.reporter is not None
    client = await Client.connect(activator.ports[0])
    # A handler's own 5xx is no failure; a function error, an init error and a timeout are.
    for path in ("/timed", "/own503", "/limited", "/init-error", "/task-timeout"):
        await client.request("GET", path)
    [stat] = activator.reporter.build().functions
    assert (stat.requests, stat.invocations, stat.errors) == (5, 5, 3)
    # Each handler duration a runtime told, in its bin, as the histogram observed them.
    assert stat.durations[rollout.duration_bin(0.003712)] == 1
    observed = activator.metrics.of(FN).handler_durations.counts
    assert sum(stat.durations.values()) == sum(observed) >= 1
    # The next period starts from nothing.
    assert activator.reporter.build().functions == ()
    await client.close()


@pytest.mark.asyncio
async def test_a_poke_sent_once_a_pool_pod_took_the_request_asks_for_it_once() -> None:
    throttle = throttler.Throttler(FN, concurrency=1)
    waiting = throttle.wait()
    reporter = stats_reporter.StatsReporter("act-1", lambda: {FN: throttle}, Collecting())
    (queued,) = reporter.build_poke(FN).functions
    assert (queued.peak_concurrency, queued.queued) == (0, 1)
    # A specialised pool pod became its endpoint and took it: in flight now, not queued.
    throttle.update_endpoints({"10.0.0.9:8080"})
    assert waiting.done()
    (taken,) = reporter.build_poke(FN).functions
    assert (taken.peak_concurrency, taken.queued) == (1, 0)


def test_the_warm_pools_offers_are_counted_by_outcome() -> None:
    outcomes = {"specialised": 3, "no_idle_pod": 1}
    page = metrics.Metrics(dict, pool_outcomes=lambda: outcomes).render().decode()
    assert 'kfn_activator_warm_pool_specialisations_total{outcome="specialised"} 3.0' in page
    assert 'kfn_activator_warm_pool_specialisations_total{outcome="no_idle_pod"} 1.0' in page
