"""Versions and aliases served: a qualified invoke reaches the version's own pods, and every
answer names the version that ran."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from kfn import stats
from kfn.activator import config, context, lambda_door, lambda_keys, qualifiers, router, server

from .conftest import FN, MakeActivator
from .http import Backend, Client

V2 = FN._replace(version="2")
LIMITS = config.FunctionLimits(concurrency=10, timeout_ms=3000, queue_limit=10)
#: hello has versions 1 and 2; "live" routes to 2, "old" to 1, which has no pods here.
TARGETS = {
    FN: qualifiers.Targets(
        versions=frozenset({"1", "2"}),
        routed=frozenset({"1", "2"}),
        aliases={"live": (("2", 100),), "old": (("1", 100),)},
    )
}


@pytest_asyncio.fixture
async def version_two() -> AsyncIterator[Backend]:
    """The pod of version 2 (the ``backend`` fixture is ``$LATEST``'s)."""
    started = await Backend("v2").start()
    yield started
    await started.stop()


@dataclasses.dataclass
class Hello:
    """hello served by an activator: ``$LATEST`` on ``latest``'s pod, version 2 on ``two``'s,
    its aliases those of :data:`TARGETS`."""

    activator: server.Activator
    latest: Backend
    two: Backend

    async def connect(self, door: int = 1) -> Client:
        """A client of the activator's ``door``: 0 the HTTP door, 1 the invoke API's."""
        return await Client.connect(self.activator.ports[door])

    def seen(self) -> tuple[int, int]:
        """How many requests version 2's pod and ``$LATEST``'s got."""
        return len(self.two.seen), len(self.latest.seen)


@pytest_asyncio.fixture
async def hello(backend: Backend, version_two: Backend, make_activator: MakeActivator) -> Hello:
    activator = await make_activator(endpoints=frozenset({backend.address}), invoke_door=True)
    activator.set_functions({FN: LIMITS, V2: LIMITS, FN._replace(version="1"): LIMITS})
    activator.update_endpoints(V2, frozenset({version_two.address}))
    activator.set_qualifiers(TARGETS)
    return Hello(activator, backend, version_two)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path",
    [
        "/_kfn/functions/default/hello:2/invoke",
        "/_kfn/functions/default/hello%3Alive/invoke",
        "/_kfn/functions/default/hello/invoke?Qualifier=live",
    ],
)
async def test_a_qualified_invoke_runs_on_the_versions_pods_and_names_the_version(
    hello: Hello, path: str
) -> None:
    client = await hello.connect()
    response = await client.request("POST", path, b"{}")
    assert response.status == 200
    assert response.headers["x-amz-executed-version"] == "2"
    assert hello.seen() == (1, 0)
    assert json.loads(response.body)["headers"]["kfn-function-name"] == "hello"


@pytest.mark.asyncio
async def test_an_unqualified_invoke_runs_latest_and_says_so(hello: Hello) -> None:
    client = await hello.connect()
    response = await client.request("POST", "/_kfn/functions/default/hello/invoke", b"{}")
    assert response.status == 200
    assert response.headers["x-amz-executed-version"] == "$LATEST"
    assert hello.seen() == (0, 1)


@pytest.mark.asyncio
async def test_an_invoke_of_a_version_that_does_not_exist_is_resource_not_found(
    hello: Hello,
) -> None:
    client = await hello.connect()
    response = await client.request("POST", "/_kfn/functions/default/hello:7/invoke", b"{}")
    assert response.status == 404
    assert response.json() == {
        "errorType": "ResourceNotFoundException",
        "errorMessage": "Function not found: default/hello:7",
    }
    assert "x-amz-executed-version" not in response.headers
    assert hello.seen() == (0, 0)


@pytest.mark.asyncio
async def test_an_invoke_naming_two_different_qualifiers_is_an_invalid_parameter(
    hello: Hello,
) -> None:
    client = await hello.connect()
    path = "/_kfn/functions/default/hello:2/invoke?Qualifier=live"
    response = await client.request("POST", path, b"{}")
    assert response.status == 400
    assert response.json()["errorType"] == "InvalidParameterValueException"
    assert response.headers["kfn-request-id"]
    assert hello.seen() == (0, 0)


@pytest.mark.asyncio
async def test_the_activators_own_answer_for_a_version_names_it_too(hello: Hello) -> None:
    activator = hello.activator
    activator.set_functions(
        {
            FN: LIMITS,
            V2: LIMITS,
            FN._replace(version="1"): dataclasses.replace(LIMITS, queue_timeout_ms=50),
        }
    )
    client = await hello.connect()
    # Version 1 has no pod: the request waits its queue timeout and is refused.
    response = await client.request("POST", "/_kfn/functions/default/hello:old/invoke", b"{}")
    assert response.status == 429
    assert response.headers["x-amz-executed-version"] == "1"


@pytest.mark.asyncio
async def test_the_lambda_api_invokes_an_alias_and_answers_with_the_executed_version(
    hello: Hello,
) -> None:
    activator = hello.activator
    activator.ctx.lambda_service = lambda_door.LambdaApi(
        keys=lambda_keys.StaticKeys(()), review=None
    )
    client = await hello.connect()
    response = await client.request(
        "POST", "/default/2015-03-31/functions/hello:live/invocations", b"{}"
    )
    assert response.status == 200
    assert response.headers["x-amz-executed-version"] == "2"
    assert len(hello.two.seen) == 1
    missing = await client.request(
        "POST", "/default/2015-03-31/functions/hello/invocations?Qualifier=beta", b"{}"
    )
    assert missing.status == 404
    assert missing.headers["x-amzn-errortype"] == "ResourceNotFoundException"
    assert missing.json()["message"] == (
        "Function not found: arn:aws:lambda:us-east-1:000000000000:function:hello:beta"
    )


def test_every_entry_names_its_version_in_one_header_line_made_once() -> None:
    entry_latest = b"X-Amz-Executed-Version: $LATEST\r\n"
    assert context.executed_version_header(FN) == entry_latest
    assert context.executed_version_header(V2) == b"X-Amz-Executed-Version: 2\r\n"
    assert str(stats.FunctionKey("default", "hello", "2")) == "default/hello:2"


@pytest.mark.asyncio
async def test_a_version_served_is_no_function_of_its_own_in_list_functions(hello: Hello) -> None:
    activator = hello.activator
    activator.ctx.lambda_service = lambda_door.LambdaApi(
        keys=lambda_keys.StaticKeys(()), review=None
    )
    client = await hello.connect()
    listed = await client.request("GET", "/default/2015-03-31/functions/")
    assert listed.status == 200
    assert [f["FunctionName"] for f in listed.json()["Functions"]] == ["hello"]


@pytest.mark.asyncio
async def test_an_http_trigger_naming_an_alias_or_a_version_serves_its_requests_there(
    hello: Hello,
) -> None:
    activator = hello.activator
    activator.set_routes(
        [
            router.Route(host="*", path_prefix="/", function=FN),
            router.Route(host="*", path_prefix="/live", function=FN, qualifier="live"),
            router.Route(host="*", path_prefix="/two", function=FN, qualifier="2"),
            router.Route(host="*", path_prefix="/beta", function=FN, qualifier="beta"),
        ]
    )
    client = await hello.connect(door=0)
    for path in ("/live/cart", "/two"):
        response = await client.request("GET", path)
        assert response.status == 200
    assert hello.seen() == (2, 0)
    latest = await client.request("GET", "/home")
    assert latest.status == 200
    assert hello.seen() == (2, 1)
    missing = await client.request("GET", "/beta")
    assert missing.status == 404
    assert missing.json() == {
        "errorType": "ResourceNotFoundException",
        "errorMessage": "Function not found: default/hello:beta (no such version or alias)",
    }
    assert hello.seen() == (2, 1)
