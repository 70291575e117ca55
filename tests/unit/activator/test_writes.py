"""What a warm request costs in writes: one to the pod and one to the client, at the end of
the loop's round.

Each write on a socket is a system call and, on the other side, a wake-up: on the activator's
benchmark each costs about as much as all the Python a request runs. These tests drive a
client connection and a pod connection over recording transports, so they count the writes
themselves rather than what TCP made of them, and let the loop's round end
(:func:`round_ends`) where the proxy would.
"""

from __future__ import annotations

import asyncio

import pytest

from kfn import stats
from kfn.activator import config, context, proxy, router, server, upstream

FN = stats.FunctionKey("default", "hello")
POD = "127.0.0.1:9"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"


class Transport:
    """A transport that keeps what is written to it, one entry a write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...
    def can_write_eof(self) -> bool:
        return False


async def round_ends() -> None:
    """Let the loop finish its round: the writes held for its end go out."""
    await asyncio.sleep(0)


class Wired:
    """An activator's client connection and one pooled connection to its pod."""

    def __init__(self, door: context.Door = context.SINGLE) -> None:
        self.activator = server.Activator(
            routes=[router.Route(host="*", path_prefix="/", function=FN)],
            functions={FN: config.FunctionLimits(concurrency=10)},
        )
        self.activator.update_endpoints(FN, frozenset({POD}))
        endpoint = self.activator.ctx.functions[FN].throttler.endpoints[POD]
        self.pod = Transport()
        self.conn = upstream.UpstreamConnection(endpoint)
        self.conn.connection_made(self.pod)  # type: ignore[arg-type]
        endpoint.put_idle(self.conn)
        self.client = Transport()
        self.proto = proxy.ClientProtocol(self.activator.ctx, door)
        self.proto.connection_made(self.client)  # type: ignore[arg-type]

    def answer(self) -> None:
        self.conn.data_received(RESPONSE)


INVOKE = (
    b"POST /_kfn/functions/default/hello/invoke HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n\r\n"
)


@pytest.mark.asyncio
async def test_a_routed_get_is_one_write_to_the_pod_and_one_to_the_client() -> None:
    wired = Wired()
    for _ in range(3):
        wired.proto.data_received(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        await round_ends()
        wired.answer()
        await round_ends()
    assert len(wired.pod.writes) == 3
    assert len(wired.client.writes) == 3
    assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") for w in wired.client.writes)


@pytest.mark.asyncio
async def test_an_invoke_and_the_body_that_came_with_it_reach_the_pod_in_one_write() -> None:
    wired = Wired()
    wired.proto.data_received(INVOKE + b'{"a":1}')
    await round_ends()
    assert len(wired.pod.writes) == 1
    sent = wired.pod.writes[0]
    assert sent.startswith(b"POST /_kfn/invoke HTTP/1.1\r\n")
    assert sent.endswith(b'\r\n\r\n{"a":1}')
    wired.answer()
    await round_ends()
    assert len(wired.client.writes) == 1


@pytest.mark.asyncio
async def test_the_writes_of_one_round_leave_together_at_its_end() -> None:
    wired = Wired()
    endpoint = wired.activator.ctx.functions[FN].throttler.endpoints[POD]
    other_pod = Transport()
    other_conn = upstream.UpstreamConnection(endpoint)
    other_conn.connection_made(other_pod)  # type: ignore[arg-type]
    endpoint.put_idle(other_conn)
    other_client = Transport()
    second = proxy.ClientProtocol(wired.activator.ctx, context.SINGLE)
    second.connection_made(other_client)  # type: ignore[arg-type]
    wired.proto.data_received(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    second.data_received(INVOKE + b'{"a":1}')
    assert (wired.pod.writes, other_pod.writes) == ([], [])
    await round_ends()
    assert (len(wired.pod.writes), len(other_pod.writes)) == (1, 1)
    wired.conn.data_received(RESPONSE)
    other_conn.data_received(RESPONSE)
    assert (wired.client.writes, other_client.writes) == ([], [])
    await round_ends()
    assert (len(wired.client.writes), len(other_client.writes)) == (1, 1)


@pytest.mark.asyncio
async def test_a_body_that_comes_later_is_written_as_it_arrives() -> None:
    wired = Wired()
    wired.proto.data_received(INVOKE + b'{"a"')
    await round_ends()
    assert len(wired.pod.writes) == 1
    wired.proto.data_received(b":1}")
    await round_ends()
    assert wired.pod.writes[1:] == [b":1}"]
    wired.answer()
    await round_ends()
    assert wired.client.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.asyncio
async def test_a_request_whose_body_turns_out_malformed_sends_the_pod_nothing() -> None:
    wired = Wired()
    head = b"POST /_kfn/functions/default/hello/invoke HTTP/1.1\r\nHost: a\r\n"
    wired.proto.data_received(head + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\nzz\r\n")
    await round_ends()
    assert wired.pod.writes == []
    assert wired.conn.closed
    assert wired.client.writes[0].startswith(b"HTTP/1.1 400 Bad Request\r\n")


@pytest.mark.asyncio
async def test_a_request_that_waited_for_a_slot_is_sent_in_one_write_when_it_gets_one() -> None:
    wired = Wired()
    throttle = wired.activator.ctx.functions[FN].throttler
    throttle.concurrency = 1
    wired.proto.data_received(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
    second = Transport()
    other = proxy.ClientProtocol(wired.activator.ctx, context.SINGLE)
    other.connection_made(second)  # type: ignore[arg-type]
    other.data_received(INVOKE + b'{"a":1}')
    await round_ends()
    assert len(wired.pod.writes) == 1  # the second waits for the first's slot
    wired.answer()
    for _ in range(5):
        await round_ends()
    assert len(wired.pod.writes) == 2
    assert wired.pod.writes[1].endswith(b'{"a":1}')
