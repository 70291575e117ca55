"""The activator's two doors: public routes, and the invoke API behind RBAC.

The API server's reviews are answered from a table (``test_access.ApiServer``); the
cluster test ``tests/cluster/test_tenancy.py`` runs the same checks against a real one.
"""

from __future__ import annotations

import asyncio

import pytest

from kfn.activator import access, request_head, router, server

from .conftest import FN, MakeActivator
from .http import Backend, Client
from .test_access import ALICE, ApiServer

INVOKE = "/_kfn/functions/default/hello/invoke"
MISSING = "/_kfn/functions/default/nobody/invoke"


async def two_doors(
    make_activator: MakeActivator, backend: Backend, api: ApiServer | None = None
) -> tuple[server.Activator, int, int]:
    api = api or ApiServer()
    api.allowed.add((ALICE.username, FN))
    checks = access.Access(
        api.review_token, api.review_access, clock=asyncio.get_running_loop().time
    )
    activator = await make_activator(
        endpoints=frozenset({backend.address}), invoke_door=True, checks=checks
    )
    public, invoke = activator.ports[:2]
    return activator, public, invoke


@pytest.mark.asyncio
async def test_the_public_door_serves_routes_and_refuses_the_invoke_api(
    backend: Backend, make_activator: MakeActivator
) -> None:
    _, public, _ = await two_doors(make_activator, backend)
    client = await Client.connect(public)
    routed = await client.request("GET", "/echo", headers={"Authorization": "Bearer app-own"})
    assert routed.status == 200
    # A route's Authorization is the application's own: it reaches the pod.
    assert routed.json()["headers"]["authorization"] == "Bearer app-own"
    refused = await client.request("POST", INVOKE, b"{}", headers={"Authorization": "Bearer good"})
    assert refused.status == 404
    assert "kfn-invoke" in refused.json()["errorMessage"]
    await client.close()


@pytest.mark.asyncio
async def test_the_invoke_door_serves_no_routes(
    backend: Backend, make_activator: MakeActivator
) -> None:
    _, _, invoke = await two_doors(make_activator, backend)
    client = await Client.connect(invoke)
    response = await client.request("GET", "/echo")
    assert response.status == 404
    assert "only the invoke API" in response.json()["errorMessage"]
    await client.close()


@pytest.mark.asyncio
async def test_an_invoke_without_a_token_is_401_and_reaches_no_pod(
    backend: Backend, make_activator: MakeActivator
) -> None:
    _, _, invoke = await two_doors(make_activator, backend)
    client = await Client.connect(invoke)
    response = await client.request("POST", INVOKE, b"{}")
    assert response.status == 401
    assert response.json()["errorType"] == "UnrecognizedClientException"
    assert response.headers["www-authenticate"] == 'Bearer realm="kfn"'
    assert response.headers["kfn-request-id"]
    assert backend.seen == []
    await client.close()


@pytest.mark.asyncio
async def test_an_invoke_with_a_token_rbac_allows_reaches_the_pod_without_the_token(
    backend: Backend, make_activator: MakeActivator
) -> None:
    api = ApiServer()
    _, _, invoke = await two_doors(make_activator, backend, api)
    client = await Client.connect(invoke)
    for _ in range(3):
        response = await client.request(
            "POST", INVOKE, b'{"n": 1}', headers={"Authorization": "Bearer good"}
        )
        assert response.status == 200
        seen = response.json()
        assert seen["path"] == "/_kfn/invoke"
        # The caller's token is kfn's to read: a function could replay it.
        assert "authorization" not in seen["headers"]
    assert (api.token_reviews, api.access_reviews) == (1, 1)
    await client.close()


@pytest.mark.asyncio
async def test_an_invoke_rbac_denies_is_403_whether_or_not_the_function_exists(
    backend: Backend, make_activator: MakeActivator
) -> None:
    api = ApiServer()
    api.identities["other"] = access.Identity("system:serviceaccount:team-c:eve")
    _, _, invoke = await two_doors(make_activator, backend, api)
    client = await Client.connect(invoke)
    for path in (INVOKE, MISSING):
        response = await client.request(
            "POST", path, b"{}", headers={"Authorization": "Bearer other"}
        )
        assert response.status == 403
        assert response.json()["errorType"] == "AccessDeniedException"
        assert "system:serviceaccount:team-c:eve" in response.json()["errorMessage"]
    assert backend.seen == []
    await client.close()


@pytest.mark.asyncio
async def test_an_event_sent_while_its_token_is_reviewed_is_accepted_whole(
    backend: Backend, make_activator: MakeActivator
) -> None:
    api = ApiServer()
    api.gate.clear()  # the review waits until the whole body has arrived
    _, _, invoke = await two_doors(make_activator, backend, api)
    client = await Client.connect(invoke)
    payload = b'{"data": "' + b"x" * 200_000 + b'"}'
    head = (
        f"POST {INVOKE} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer good\r\n"
        f"Kfn-Invocation-Type: Event\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    await client.send(head + payload[:1000])
    await asyncio.sleep(0.05)
    await client.send(payload[1000:])
    await asyncio.sleep(0.05)
    api.gate.set()
    response = await client.read_response()
    assert response.status == 202
    for _ in range(200):
        if backend.seen:
            break
        await asyncio.sleep(0.01)
    assert backend.seen[0].body_size == len(payload)
    await client.close()


async def body_arriving_while_reviewed(api: ApiServer, port: int, method: str, path: str) -> None:
    """Sends a 300 KB body in two parts, the second only after the token's review (held by
    ``api.gate``) was let go; the pod must get it whole."""
    client = await Client.connect(port)
    payload = b"y" * 300_000
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer good\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    await client.send(head + payload[:5000])
    await asyncio.sleep(0.05)
    api.gate.set()
    await client.send(payload[5000:])
    response = await client.read_response()
    assert response.status == 200
    assert response.json()["body_size"] == len(payload)
    await client.close()


@pytest.mark.asyncio
async def test_a_synchronous_invoke_sent_while_its_token_is_reviewed_reaches_the_pod_whole(
    backend: Backend, make_activator: MakeActivator
) -> None:
    api = ApiServer()
    api.gate.clear()
    _, _, invoke = await two_doors(make_activator, backend, api)
    await body_arriving_while_reviewed(api, invoke, "POST", INVOKE)


@pytest.mark.asyncio
async def test_only_an_authorised_caller_learns_whether_a_function_exists(
    backend: Backend, make_activator: MakeActivator
) -> None:
    api = ApiServer()
    api.allowed.add((ALICE.username, FN.__class__("default", "nobody")))
    _, _, invoke = await two_doors(make_activator, backend, api)
    client = await Client.connect(invoke)
    statuses = [
        (await client.request("GET", path, headers=headers)).status
        for path, headers in [
            (INVOKE, {}),
            (MISSING, {}),
            (INVOKE, {"Authorization": "Bearer good"}),
            (MISSING, {"Authorization": "Bearer good"}),
        ]
    ]
    # Unauthenticated: 401 for both. Allowed: a GET is refused (405) by a function that
    # exists, and one that does not is 404.
    assert statuses == [401, 401, 405, 404]
    await client.close()


# --- HTTP Triggers with auth: ServiceAccountToken ------------------------------------------

PRIVATE = "/private"


def with_checked_route(activator: server.Activator) -> None:
    """Route /private to FN for callers RBAC lets invoke it, and the rest to FN for anyone."""
    activator.set_routes(
        [
            router.Route(host="*", path_prefix="/", function=FN),
            router.Route(host="*", path_prefix=PRIVATE, function=FN, checked=True),
        ]
    )


@pytest.mark.asyncio
async def test_a_checked_route_without_a_token_is_401_and_reaches_no_pod(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator, public, _ = await two_doors(make_activator, backend)
    with_checked_route(activator)
    client = await Client.connect(public)
    response = await client.request("GET", PRIVATE + "/report")
    assert response.status == 401
    assert response.json()["errorType"] == "UnrecognizedClientException"
    assert "Authorization: Bearer" in response.json()["errorMessage"]
    assert response.headers["www-authenticate"] == 'Bearer realm="kfn"'
    assert backend.seen == []
    await client.close()


@pytest.mark.asyncio
async def test_a_checked_route_rbac_denies_is_403_naming_the_caller_and_the_function(
    backend: Backend, make_activator: MakeActivator
) -> None:
    api = ApiServer()
    api.identities["other"] = access.Identity("system:serviceaccount:team-c:eve")
    activator, public, _ = await two_doors(make_activator, backend, api)
    with_checked_route(activator)
    client = await Client.connect(public)
    response = await client.request("GET", PRIVATE, headers={"Authorization": "Bearer other"})
    assert response.status == 403
    assert response.json()["errorType"] == "AccessDeniedException"
    message = response.json()["errorMessage"]
    assert "system:serviceaccount:team-c:eve" in message
    assert f"functions.kfn.dev {FN.namespace}/{FN.name}" in message
    assert backend.seen == []
    await client.close()


@pytest.mark.asyncio
async def test_a_checked_route_rbac_allows_reaches_the_pod_as_sent_but_for_the_token(
    backend: Backend, make_activator: MakeActivator
) -> None:
    api = ApiServer()
    activator, public, _ = await two_doors(make_activator, backend, api)
    with_checked_route(activator)
    client = await Client.connect(public)
    for _ in range(3):
        response = await client.request(
            "POST",
            PRIVATE + "/orders?x=1",
            b'{"n": 1}',
            headers={"Authorization": "Bearer good", "X-Custom": "kept"},
        )
        assert response.status == 200
        seen = response.json()
        assert (seen["method"], seen["path"]) == ("POST", "/private/orders")
        assert seen["headers"]["x-custom"] == "kept"
        # A token kfn accepts must not reach the function: it could replay it to kfn.
        assert "authorization" not in seen["headers"]
    assert (api.token_reviews, api.access_reviews) == (1, 1)
    # Beside it, a public route's Authorization is still the application's own.
    routed = await client.request("GET", "/echo", headers={"Authorization": "Bearer app-own"})
    assert routed.json()["headers"]["authorization"] == "Bearer app-own"
    await client.close()


@pytest.mark.asyncio
async def test_a_checked_route_whose_token_is_reviewed_while_its_body_arrives_gets_it_whole(
    backend: Backend, make_activator: MakeActivator
) -> None:
    api = ApiServer()
    api.gate.clear()
    activator, public, _ = await two_doors(make_activator, backend, api)
    with_checked_route(activator)
    await body_arriving_while_reviewed(api, public, "PUT", PRIVATE)


@pytest.mark.asyncio
async def test_a_checked_route_on_an_activator_that_checks_no_tokens_is_served_to_nobody(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    with_checked_route(activator)
    client = await Client.connect(activator.ports[0])
    response = await client.request("GET", PRIVATE, headers={"Authorization": "Bearer good"})
    assert response.status == 500
    assert response.json()["errorType"] == "ServiceException"
    assert "auth: ServiceAccountToken" in response.json()["errorMessage"]
    assert backend.seen == []
    await client.close()


def test_a_checked_routes_request_drops_every_authorization_line_and_keeps_the_rest() -> None:
    head = request_head.RequestHead()
    for name, value in [
        (b"Authorization", b"Bearer one"),
        (b"X-A", b"1"),
        (b"authorization", b"Bearer two"),
        (b"X-B", b"2"),
    ]:
        head.on_header(name, value)
    assert bytes(head.headers).count(b"uthorization") == 2
    head.hide_authorization()
    assert bytes(head.headers) == b"X-A: 1\r\nX-B: 2\r\n"
    assert head.authorization == b"Bearer two"
    head.on_header(b"Authorization", b"Bearer late")
    assert bytes(head.headers) == b"X-A: 1\r\nX-B: 2\r\n"
