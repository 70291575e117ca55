"""A route's payload format and stripped prefix reach the pod as the contract's headers."""

from __future__ import annotations

import pytest

from kfn.activator import router

from .conftest import FN, MakeActivator
from .http import Backend, Client


def route(**fields: object) -> router.Route:
    return router.Route(host="*", path_prefix="/api", function=FN, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "lines"),
    [
        ({}, b""),
        ({"payload_format": "1.0"}, b"Kfn-Payload-Format: 1.0\r\n"),
        (
            {"payload_format": "alb", "strip_prefix": True},
            b"Kfn-Payload-Format: alb\r\nKfn-Path-Prefix: /api\r\n",
        ),
        ({"strip_prefix": True}, b"Kfn-Path-Prefix: /api\r\n"),
    ],
)
def test_each_route_computes_its_pod_headers_once(fields: dict[str, object], lines: bytes) -> None:
    match = router.Router([route(**fields)]).match(b"h", b"/api/x", b"GET")
    assert match is not None
    assert match.pod_headers == lines


def test_stripping_the_root_prefix_sends_no_header() -> None:
    root = router.Route(host="*", path_prefix="/", function=FN, strip_prefix=True)
    assert router.pod_headers(root) == b""


@pytest.mark.asyncio
async def test_the_pod_hears_the_routes_format_and_prefix_and_never_the_clients(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    activator.set_routes([route(payload_format="1.0", strip_prefix=True)])
    client = await Client.connect(activator.ports[0])
    response = await client.request(
        "GET",
        "/api/orders",
        headers={"Kfn-Payload-Format": "alb", "Kfn-Path-Prefix": "/elsewhere"},
    )
    seen = response.json()
    assert seen["path"] == "/api/orders"
    assert seen["headers"]["kfn-payload-format"] == "1.0"
    assert seen["headers"]["kfn-path-prefix"] == "/api"
    await client.close()


@pytest.mark.asyncio
async def test_a_client_cannot_choose_the_format_of_a_default_route(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    response = await client.request(
        "GET", "/", headers={"Kfn-Payload-Format": "alb", "Kfn-Path-Prefix": "/x"}
    )
    seen = response.json()["headers"]
    assert "kfn-payload-format" not in seen
    assert "kfn-path-prefix" not in seen
    await client.close()
