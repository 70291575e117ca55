"""The invoke API: synchronous and asynchronous (Event) invocations."""

from __future__ import annotations

import asyncio
import json

import pytest

from kfn.activator import async_invoke, event_jetstream, event_stream

from .conftest import FN, MakeActivator
from .http import Backend, Client

INVOKE = "/_kfn/functions/default/hello/invoke"


class CollectingDestination:
    """An on-failure destination that keeps what it receives."""

    def __init__(self) -> None:
        self.records: list[async_invoke.FailedEvent] = []

    async def on_failure(self, record: async_invoke.FailedEvent) -> None:
        self.records.append(record)


@pytest.mark.asyncio
async def test_sync_invoke_goes_to_the_pod_invoke_path_with_contract_headers(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(timeout_ms=5000, endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    response = await client.request("POST", INVOKE, b'{"n": 1}')
    assert response.status == 200
    seen = response.json()
    assert seen["path"] == "/_kfn/invoke"
    assert seen["headers"]["kfn-function-name"] == "hello"
    assert seen["headers"]["kfn-invocation-type"] == "RequestResponse"
    assert seen["headers"]["kfn-request-id"] == response.headers["kfn-request-id"]
    # The function's timeout as a duration: the runtime starts it with the handler.
    assert seen["headers"]["kfn-timeout-ms"] == "5000"
    assert "kfn-deadline-ms" not in seen["headers"]
    await client.close()


@pytest.mark.asyncio
async def test_an_invoke_keeps_its_callers_request_id_so_retries_of_an_event_share_it(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    given = {"Kfn-Request-Id": "5c1e0d0e-2b7a-5f7e-9d1c-0b8e6f3a2d41"}
    for _ in range(2):
        response = await client.request("POST", INVOKE, b"{}", headers=given)
        assert response.headers["kfn-request-id"] == given["Kfn-Request-Id"]
        assert response.json()["headers"]["kfn-request-id"] == given["Kfn-Request-Id"]
    odd = await client.request("POST", INVOKE, b"{}", headers={"Kfn-Request-Id": "a b"})
    assert odd.headers["kfn-request-id"] not in ("a b", "")
    proxied = await client.request("GET", "/", headers=given)
    assert proxied.json()["headers"]["kfn-request-id"] != given["Kfn-Request-Id"]
    await client.close()


@pytest.mark.asyncio
async def test_invoke_api_needs_post(make_activator: MakeActivator) -> None:
    activator = await make_activator()
    client = await Client.connect(activator.ports[0])
    assert (await client.request("GET", INVOKE)).status == 405
    await client.close()


@pytest.mark.asyncio
async def test_invoke_of_an_unknown_function_answers_404(make_activator: MakeActivator) -> None:
    activator = await make_activator()
    client = await Client.connect(activator.ports[0])
    response = await client.request("POST", "/_kfn/functions/default/nope/invoke", b"{}")
    assert response.status == 404
    await client.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("header", ["Kfn-Invocation-Type", "X-Amz-Invocation-Type"])
async def test_event_invoke_is_accepted_at_once_and_delivered_later(
    header: str, backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator()
    client = await Client.connect(activator.ports[0])
    response = await client.request("POST", INVOKE, b'{"e": 1}', headers={header: "Event"})
    assert response.status == 202
    request_id = response.json()["requestId"]
    assert response.headers["kfn-request-id"] == request_id
    assert backend.seen == []
    activator.update_endpoints(FN, frozenset({backend.address}))
    await asyncio.wait_for(activator.invoker.wait_idle(), 2)
    assert [s.path for s in backend.seen] == ["/_kfn/invoke"]
    assert backend.seen[0].headers["kfn-request-id"] == request_id
    assert backend.seen[0].headers["kfn-invocation-type"] == "Event"
    await client.close()


@pytest.mark.asyncio
async def test_event_function_error_is_retried_twice_then_sent_to_the_destination(
    backend: Backend, make_activator: MakeActivator
) -> None:
    destination = CollectingDestination()
    backend.invoke_failures = 10
    activator = await make_activator(
        endpoints=frozenset({backend.address}),
        destination=destination,
        event_retry_delays=(0.01, 0.02),
    )
    client = await Client.connect(activator.ports[0])
    response = await client.request(
        "POST", INVOKE, b'{"e": 2}', headers={"Kfn-Invocation-Type": "Event"}
    )
    await asyncio.wait_for(activator.invoker.wait_idle(), 2)
    assert len(backend.seen) == 3
    [record] = destination.records
    assert record.request_id == response.json()["requestId"]
    assert record.condition == "RetriesExhausted"
    assert record.attempts == 3
    assert record.payload == b'{"e": 2}'
    assert json.loads(record.response)["errorType"] == "Boom"
    await client.close()


@pytest.mark.asyncio
async def test_event_succeeds_on_a_retry_and_reaches_no_destination(
    backend: Backend, make_activator: MakeActivator
) -> None:
    destination = CollectingDestination()
    backend.invoke_failures = 1
    activator = await make_activator(
        endpoints=frozenset({backend.address}),
        destination=destination,
        event_retry_delays=(0.01, 0.02),
    )
    client = await Client.connect(activator.ports[0])
    await client.request("POST", INVOKE, b"{}", headers={"Kfn-Invocation-Type": "Event"})
    await asyncio.wait_for(activator.invoker.wait_idle(), 2)
    assert len(backend.seen) == 2
    assert destination.records == []
    await client.close()


@pytest.mark.asyncio
async def test_event_queue_full_answers_429(make_activator: MakeActivator) -> None:
    activator = await make_activator(event_capacity=1)
    client = await Client.connect(activator.ports[0])
    headers = {"Kfn-Invocation-Type": "Event"}
    assert (await client.request("POST", INVOKE, b"{}", headers=headers)).status == 202
    refused = await client.request("POST", INVOKE, b"{}", headers=headers)
    assert refused.status == 429
    assert refused.json()["errorType"] == "TooManyRequestsException"
    await client.close()


@pytest.mark.asyncio
async def test_an_event_the_store_cannot_take_is_answered_503_with_retry_after(
    make_activator: MakeActivator, unused_tcp_port: int
) -> None:
    unreachable = event_stream.Settings(servers=(f"nats://127.0.0.1:{unused_tcp_port}",))
    activator = await make_activator(event_store=event_jetstream.JetStreamStore(unreachable))
    client = await Client.connect(activator.ports[0])
    headers = {"Kfn-Invocation-Type": "Event"}
    refused = await client.request("POST", INVOKE, b"{}", headers=headers)
    assert refused.status == 503
    assert refused.json()["errorType"] == "ServiceException"
    assert "retry-after" in refused.headers
    # Synchronous invocations do not depend on the event store.
    assert (await client.request("GET", INVOKE)).status == 405
    await client.close()


@pytest.mark.asyncio
async def test_event_payload_over_256_kib_answers_413(make_activator: MakeActivator) -> None:
    activator = await make_activator()
    client = await Client.connect(activator.ports[0])
    big = b"x" * (256 * 1024 + 1)
    response = await client.request("POST", INVOKE, big, headers={"Kfn-Invocation-Type": "Event"})
    assert response.status == 413
    await client.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [200, 504])
async def test_an_invoke_answer_carries_its_request_id_once_though_the_pod_sends_it_too(
    backend: Backend, make_activator: MakeActivator, status: int
) -> None:
    # The runtime answers every invoke with Kfn-Request-Id, its 504 after the function's
    # timeout included; the activator used to add its own beside it.
    backend.invoke_status = status
    activator = await make_activator(endpoints=frozenset({backend.address}))
    client = await Client.connect(activator.ports[0])
    response = await client.request("POST", INVOKE, b"{}", headers={"Kfn-Request-Id": "r-1"})
    assert response.status == status
    assert [v for k, v in response.raw_headers if k == "kfn-request-id"] == ["r-1"]
    await client.close()


@pytest.mark.asyncio
async def test_the_activators_own_refusal_on_the_invoke_api_carries_the_request_id(
    backend: Backend, make_activator: MakeActivator
) -> None:
    activator = await make_activator(timeout_ms=100, queue_timeout_ms=100)
    client = await Client.connect(activator.ports[0])
    response = await client.request("POST", INVOKE, b"{}", headers={"Kfn-Request-Id": "r-2"})
    assert response.status == 429
    assert response.json()["errorType"] == "TooManyRequestsException"
    assert [v for k, v in response.raw_headers if k == "kfn-request-id"] == ["r-2"]
    await client.close()
