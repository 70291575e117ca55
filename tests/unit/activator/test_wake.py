"""The invoke API's wake: ``POST /_kfn/functions/{ns}/{name}/wake`` asks for a function's pods
before its requests come, under the invoke's authorisation, and runs nothing.

The activator runs with its invoke door and real token checks (the API server's reviews
answered from a table, ``test_access.ApiServer``); its stats go over HTTP to the autoscaler's
real stats endpoint.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from kfn import stats
from kfn.activator import access, router, server, stats_reporter, throttler
from kfn.autoscaler import autoscaler as autoscalers
from kfn.autoscaler import scaler, scaling
from kfn.autoscaler import server as stats_server

from .conftest import FN, MakeActivator, until
from .http import Backend, Client
from .test_access import ALICE, ApiServer

WAKE = "/_kfn/functions/default/hello/wake"
GONE = stats.FunctionKey("default", "nobody")
TOKEN = {"Authorization": "Bearer good"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Autoscaler:
    """The autoscaler's real stats endpoint, keeping what it received."""

    def __init__(self) -> None:
        self.received: list[stats.StatMessage] = []
        self.port = _free_port()
        self.endpoint: asyncio.Server | None = None

    async def start(self) -> Autoscaler:
        async def receive(message: stats.StatMessage) -> None:
            self.received.append(message)

        self.endpoint = await stats_server.serve(receive, "127.0.0.1", self.port)
        return self

    def sink(self) -> stats_reporter.HttpStatsSink:
        return stats_reporter.HttpStatsSink(f"http://127.0.0.1:{self.port}/stats")


@pytest_asyncio.fixture
async def autoscaler() -> AsyncIterator[Autoscaler]:
    started = await Autoscaler().start()
    yield started
    assert started.endpoint is not None
    started.endpoint.close()


async def _activator(
    make_activator: MakeActivator,
    autoscaler: Autoscaler,
    endpoints: frozenset[str] = frozenset(),
) -> tuple[server.Activator, Client]:
    api = ApiServer()
    api.allowed.add((ALICE.username, FN))
    api.identities["other"] = access.Identity("system:serviceaccount:team-c:eve")
    api.allowed.add((ALICE.username, GONE))
    checks = access.Access(
        api.review_token, api.review_access, clock=asyncio.get_running_loop().time
    )
    activator = await make_activator(
        endpoints=endpoints, invoke_door=True, checks=checks, stats_sink=autoscaler.sink()
    )
    return activator, await Client.connect(activator.ports[1])


@pytest.mark.asyncio
async def test_a_wake_at_zero_is_answered_202_at_once_and_pokes_the_autoscaler_with_a_wake(
    backend: Backend, make_activator: MakeActivator, autoscaler: Autoscaler
) -> None:
    activator, client = await _activator(make_activator, autoscaler)
    response = await client.request("POST", WAKE, headers=TOKEN)
    assert response.status == 202
    assert response.body == b""
    assert response.headers["kfn-request-id"]
    await until(lambda: autoscaler.received)
    [poke] = autoscaler.received
    assert poke.poke
    [stat] = poke.functions
    assert (stat.function, stat.wakes, stat.queued, stat.requests) == (FN, 1, 0, 0)
    # Nothing waits for the pods it asked for, and no request was counted.
    throttle = activator.ctx.functions[FN].throttler
    assert (throttle.queued, throttle.requests) == (0, 0)
    await client.close()


@pytest.mark.asyncio
async def test_a_wake_of_a_warm_function_runs_nothing_and_is_reported_with_the_period(
    backend: Backend, make_activator: MakeActivator, autoscaler: Autoscaler
) -> None:
    activator, client = await _activator(
        make_activator, autoscaler, endpoints=frozenset({backend.address})
    )
    assert (await client.request("POST", WAKE, b"ignored", headers=TOKEN)).status == 202
    assert backend.seen == []
    assert autoscaler.received == []  # no poke: its pods are there
    assert activator.reporter is not None
    [stat] = activator.reporter.build().functions
    assert (stat.wakes, stat.requests) == (1, 0)
    await client.close()


REFUSED = [
    ("POST", {}, 401, "UnrecognizedClientException"),
    ("POST", {"Authorization": "Bearer other"}, 403, "AccessDeniedException"),
    ("GET", TOKEN, 405, "InvalidRequestContentException"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("case", REFUSED, ids=["no-token", "rbac-denies", "not-post"])
async def test_a_wake_the_caller_may_not_make_wakes_nothing(
    make_activator: MakeActivator,
    autoscaler: Autoscaler,
    case: tuple[str, dict[str, str], int, str],
) -> None:
    method, headers, status, error_type = case
    activator, client = await _activator(make_activator, autoscaler)
    response = await client.request(method, WAKE, headers=headers)
    assert response.status == status
    assert response.json()["errorType"] == error_type
    assert activator.ctx.functions[FN].throttler.wakes == 0
    await client.close()


@pytest.mark.asyncio
async def test_a_wake_of_a_function_the_activator_does_not_know_is_404(
    make_activator: MakeActivator, autoscaler: Autoscaler
) -> None:
    _, client = await _activator(make_activator, autoscaler)
    response = await client.request("POST", "/_kfn/functions/default/nobody/wake", headers=TOKEN)
    assert response.status == 404
    assert response.json()["errorType"] == "ResourceNotFoundException"
    await client.close()


@pytest.mark.asyncio
async def test_a_wake_scales_a_function_at_zero_to_its_activation_scale_through_the_autoscaler(
    make_activator: MakeActivator,
) -> None:
    replicas = scaler.InMemoryScaler({FN: 0})
    loop = autoscalers.Autoscaler(replicas)
    loop.set_spec(FN, scaling.ScaleSpec(activation_scale=3))

    async def receive(message: stats.StatMessage) -> None:
        await loop.receive(message, now=loop.clock())

    port = _free_port()
    endpoint = await stats_server.serve(receive, "127.0.0.1", port)
    sink = stats_reporter.HttpStatsSink(f"http://127.0.0.1:{port}/stats")
    api = ApiServer()
    api.allowed.add((ALICE.username, FN))
    checks = access.Access(
        api.review_token, api.review_access, clock=asyncio.get_running_loop().time
    )
    activator = await make_activator(invoke_door=True, checks=checks, stats_sink=sink)
    client = await Client.connect(activator.ports[1])
    assert (await client.request("POST", WAKE, headers=TOKEN)).status == 202
    await until(lambda: replicas.history)
    assert replicas.history == [(FN, 3)]
    await client.close()
    endpoint.close()


def test_the_router_matches_the_wake_beside_the_invoke_with_its_qualifier() -> None:
    table = router.Router()
    wake = table.match(b"any", b"/_kfn/functions/team/fn%3Alive/wake", b"POST")
    assert wake == router.Match(
        stats.FunctionKey("team", "fn"), invoke=True, qualifier="live", wake=True
    )
    invoke = table.match(b"any", b"/_kfn/functions/team/fn/invoke", b"POST")
    assert invoke is not None
    assert not invoke.wake
    assert table.match(b"any", b"/_kfn/functions/team/fn/wakes", b"POST") is None


def test_a_throttler_pokes_for_a_wake_only_while_it_has_no_ready_endpoint() -> None:
    woken: list[stats.FunctionKey] = []
    throttle = throttler.Throttler(FN, concurrency=1, on_wake=woken.append)
    assert throttle.wake()
    throttle.update_endpoints(["10.0.0.1:8080"])
    assert not throttle.wake()
    assert woken == [FN]
    assert throttle.take_wakes() == 2
    assert throttle.take_wakes() == 0
