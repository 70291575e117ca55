"""CORS on routes that ask for it: preflights answered by the activator, answers' headers set.

A route's policy is :class:`kfn.api.web.CorsPolicy` (its decisions are tested with the API);
these tests check where the activator applies it: before any token or pod, and on every answer
to an allowed origin, the function's own ``Access-Control-*`` replaced.
"""

from __future__ import annotations

import asyncio

import pytest

from kfn import stats
from kfn.activator import access, router, server
from kfn.api import web

from .conftest import FN, MakeActivator, until
from .http import Backend, Client
from .test_access import ApiServer

APP = "https://app.example.com"
POLICY = web.CorsPolicy.of(
    web.Cors(
        allow_origins=[APP],
        allow_methods=["GET", "POST"],
        allow_headers=["content-type", "x-trace"],
        expose_headers=["X-Request-Cost"],
        max_age=600,
    )
)
PREFLIGHT = {
    "Origin": APP,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "Content-Type, X-Trace",
}


def with_cors(activator: server.Activator, *, checked: bool = False) -> None:
    activator.set_routes(
        [
            router.Route(host="*", path_prefix="/", function=FN, cors=POLICY, checked=checked),
            router.Route(host="*", path_prefix="/plain", function=FN),
        ]
    )


def access_control(response_headers: list[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in response_headers if k.lower().startswith("access-control-")}


# --- preflights ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_allowed_preflight_is_answered_by_the_activator_with_the_policys_headers(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    with_cors(activator)
    client = await Client.connect(activator.ports[0])
    response = await client.request("OPTIONS", "/orders", headers=PREFLIGHT)
    assert (response.status, response.body) == (200, b"")
    assert response.headers["content-length"] == "0"
    assert "content-type" not in response.headers
    assert access_control(response.raw_headers) == {
        "access-control-allow-origin": APP,
        "access-control-allow-methods": "GET, POST",
        "access-control-allow-headers": "content-type, x-trace",
        "access-control-max-age": "600",
    }
    assert response.headers["vary"] == "Origin"
    assert backend.seen == []
    # The connection stays open for the call the preflight was for.
    assert (await client.request("POST", "/orders", b"{}", headers={"Origin": APP})).status == 200
    await client.close()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({**PREFLIGHT, "Origin": "https://evil.example"}, id="another origin"),
        pytest.param({**PREFLIGHT, "Access-Control-Request-Method": "DELETE"}, id="a method"),
        pytest.param({**PREFLIGHT, "Access-Control-Request-Headers": "x-other"}, id="a header"),
    ],
)
@pytest.mark.asyncio
async def test_a_disallowed_preflight_is_answered_200_without_access_control_headers(
    backend: Backend, make_activator: MakeActivator, headers: dict[str, str]
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    with_cors(activator)
    client = await Client.connect(activator.ports[0])
    response = await client.request("OPTIONS", "/orders", headers=headers)
    assert (response.status, response.body) == (200, b"")
    assert access_control(response.raw_headers) == {}
    assert backend.seen == []
    await client.close()


@pytest.mark.asyncio
async def test_a_preflight_on_a_checked_route_needs_no_token_and_asks_no_review(
    backend: Backend, make_activator: MakeActivator
) -> None:
    api = ApiServer()
    checks = access.Access(
        api.review_token, api.review_access, clock=asyncio.get_running_loop().time
    )
    activator = await make_activator(
        endpoints=frozenset({backend.address}), invoke_door=True, checks=checks
    )
    with_cors(activator, checked=True)
    client = await Client.connect(activator.ports[0])
    response = await client.request("OPTIONS", "/orders", headers=PREFLIGHT)
    assert response.status == 200
    assert response.headers["access-control-allow-origin"] == APP
    assert (api.token_reviews, api.access_reviews) == (0, 0)
    # The call itself still needs one; its refusal carries the policy's headers, so the page
    # can read why.
    refused = await client.request("POST", "/orders", headers={"Origin": APP})
    assert refused.status == 401
    assert refused.headers["access-control-allow-origin"] == APP
    assert backend.seen == []
    await client.close()


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        pytest.param("/orders", {"Origin": APP}, id="an OPTIONS without a requested method"),
        pytest.param("/plain", PREFLIGHT, id="a preflight on a route without cors"),
    ],
)
@pytest.mark.asyncio
async def test_what_is_no_preflight_of_a_cors_route_reaches_the_function(
    backend: Backend, make_activator: MakeActivator, path: str, headers: dict[str, str]
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    with_cors(activator)
    client = await Client.connect(activator.ports[0])
    response = await client.request("OPTIONS", path, headers=headers)
    assert response.status == 200
    assert [seen.method for seen in backend.seen] == ["OPTIONS"]
    await client.close()


@pytest.mark.asyncio
async def test_a_preflight_for_a_function_at_zero_neither_waits_nor_wakes_it(
    make_activator: MakeActivator,
) -> None:
    pokes: list[stats.StatMessage] = []

    class Sink:
        async def send(self, message: stats.StatMessage) -> None:
            pokes.append(message)

    activator = await make_activator(stats_sink=Sink(), queue_timeout_ms=5_000)
    with_cors(activator)
    assert activator.reporter is not None
    throttle = activator.ctx.functions[FN].throttler
    client = await Client.connect(activator.ports[0])
    async with asyncio.timeout(1):  # far below the queue timeout: not waiting for a pod
        response = await client.request("OPTIONS", "/orders", headers=PREFLIGHT)
    assert response.headers["access-control-allow-origin"] == APP
    assert (throttle.queued, throttle.in_flight) == (0, 0)
    assert activator.reporter.build().functions == ()  # nothing counted for the autoscaler
    assert pokes == []

    # The same function's call does wake it: a poke, while the request waits.
    pending = asyncio.ensure_future(client.request("GET", "/orders", headers={"Origin": APP}))
    await until(lambda: pokes)
    assert pokes[0].poke
    pending.cancel()
    await client.close()


# --- answers ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_allowed_origins_answer_carries_the_policys_headers_instead_of_the_functions(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    with_cors(activator)
    client = await Client.connect(activator.ports[0])
    response = await client.request("GET", "/own-cors", headers={"Origin": APP})
    assert response.status == 200
    assert access_control(response.raw_headers) == {
        "access-control-allow-origin": APP,
        "access-control-expose-headers": "X-Request-Cost",
    }
    assert response.headers["vary"] == "Origin"
    assert response.headers["x-kept"] == "yes"
    assert response.body == b"own"
    # The function still sees the Origin.
    echoed = await client.request("GET", "/echo", headers={"Origin": APP})
    assert echoed.json()["headers"]["origin"] == APP
    await client.close()


@pytest.mark.asyncio
async def test_another_origin_gets_no_access_control_headers_not_even_the_functions(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    with_cors(activator)
    client = await Client.connect(activator.ports[0])
    response = await client.request("GET", "/own-cors", headers={"Origin": "https://evil.example"})
    assert response.status == 200
    assert access_control(response.raw_headers) == {}
    assert response.headers["x-kept"] == "yes"
    await client.close()


@pytest.mark.asyncio
async def test_a_request_without_origin_gets_the_functions_answer_as_it_was(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    with_cors(activator)
    client = await Client.connect(activator.ports[0])
    response = await client.request("GET", "/own-cors")
    assert access_control(response.raw_headers) == {
        "access-control-allow-origin": "*",
        "access-control-expose-headers": "x-secret",
    }
    await client.close()
