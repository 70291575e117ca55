"""The activator as an HTTP/1.1 proxy: framing, keep-alive, headers, errors."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from .conftest import MakeActivator
from .http import Backend, Client, build_request


@pytest.mark.asyncio
async def test_request_is_proxied_with_path_unchanged_and_forwarded_headers(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    response = await client.request("GET", "/some/path?x=1", host="fn.example.com")
    assert response.status == 200
    seen = response.json()
    assert seen["path"] == "/some/path"
    assert seen["headers"]["host"] == "fn.example.com"
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert seen["headers"]["x-forwarded-host"] == "fn.example.com"
    assert seen["headers"]["kfn-request-id"]
    await client.close()


@pytest.mark.asyncio
async def test_hop_by_hop_headers_are_dropped_and_a_clients_forwarded_for_is_replaced(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    response = await client.request(
        "GET",
        "/",
        headers={
            "Keep-Alive": "timeout=5",
            "Proxy-Connection": "keep-alive",
            "TE": "trailers",
            "X-Forwarded-For": "10.0.0.1",
            "X-Custom": "kept",
        },
    )
    seen = response.json()["headers"]
    assert "keep-alive" not in seen
    assert "proxy-connection" not in seen
    assert "te" not in seen
    assert seen["x-custom"] == "kept"
    # The peer is no trusted proxy: it is the client, whatever it says (test_client_address).
    assert seen["x-forwarded-for"] == "127.0.0.1"
    # The pod's own hop-by-hop response header does not reach the client.
    assert "keep-alive" not in response.headers
    await client.close()


@pytest.mark.asyncio
async def test_keep_alive_reuses_both_client_and_upstream_connections(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    for _ in range(20):
        response = await client.request("GET", "/echo")
        assert response.status == 200
    assert backend.connections == 1
    assert len(backend.seen) == 20
    await client.close()


@pytest.mark.asyncio
async def test_connection_close_from_client_is_honoured(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    response = await client.request("GET", "/", headers={"Connection": "close"})
    assert response.status == 200
    assert response.headers["connection"] == "close"
    assert await client.closed()


@pytest.mark.asyncio
async def test_response_delimited_by_close_is_rechunked_for_the_client(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    response = await client.request("GET", "/close")
    assert response.body == b"bye"
    assert response.headers["transfer-encoding"] == "chunked"
    # The client connection stays usable.
    assert (await client.request("GET", "/echo")).status == 200
    await client.close()


@pytest.mark.asyncio
async def test_chunked_request_body_is_streamed_chunked_to_the_pod(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    await client.send(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    response = await client.read_response()
    assert response.status == 200, response.body
    seen = response.json()
    assert seen["chunked"] is True
    assert seen["body_size"] == 11
    assert seen["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
    await client.close()


@pytest.mark.asyncio
async def test_chunked_response_is_streamed_to_the_client(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    response = await client.request("GET", "/stream?mib=2")
    assert response.headers["transfer-encoding"] == "chunked"
    assert len(response.body) == 2 * 1024 * 1024
    assert (await client.request("GET", "/echo")).status == 200
    await client.close()


@pytest.mark.asyncio
async def test_head_response_has_headers_and_no_body_and_keeps_the_connection(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    response = await client.request("HEAD", "/echo")
    assert response.status == 200
    assert int(response.headers["content-length"]) > 0
    assert response.body == b""
    follow = await client.request("GET", "/echo")
    assert follow.json()["method"] == "GET"
    assert backend.connections == 1
    await client.close()


@pytest.mark.asyncio
async def test_expect_100_continue_gets_interim_response_before_the_body(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    await client.send(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    )
    interim = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 2)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    await client.send(b"data")
    response = await client.read_response()
    assert response.json()["body_size"] == 4
    assert "expect" not in response.json()["headers"]
    await client.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "raw",
    [
        b"NOT A REQUEST\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    ],
)
async def test_malformed_request_is_answered_400_and_closed(
    raw: bytes, backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    await client.send(raw)
    response = await client.read_response()
    assert response.status == 400
    assert response.json()["errorType"] == "InvalidRequestContentException"
    assert await client.closed()
    assert backend.seen == []


@pytest.mark.asyncio
async def test_pipelined_requests_are_answered_in_order(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    await client.send(
        build_request("GET", "/slow?ms=50")
        + build_request("GET", "/first")
        + build_request("GET", "/second")
    )
    paths = [(await client.read_response()).json()["path"] for _ in range(3)]
    assert paths == ["/slow", "/first", "/second"]
    await client.close()


@pytest.mark.asyncio
async def test_health_path_answers_without_a_function(make_activator: MakeActivator) -> None:
    activator = await make_activator()
    client = await Client.connect(activator.ports[0])
    assert (await client.request("GET", "/_kfn/health")).status == 200
    await client.close()
