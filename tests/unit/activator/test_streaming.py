"""Streamed answers through the proxy: passed on as they come, held only as much as a socket.

A pod here is either a small streaming server in the test's loop (whose pace the test sets:
it waits on an event before its last piece, or writes as fast as its socket takes) or a
real runtime subprocess with a handler waiting on a FIFO the test opens.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pathlib
import socket
import typing
from collections.abc import Callable

import httptools
import pytest

from kfn.activator import proxy, server
from tests.unit.runtimes import conftest as runtimes

from .conftest import FN, MakeActivator, until

INVOKE_PATH = "/_kfn/functions/default/hello/invoke"
PIECE = b"x" * 65536
MIB = 1024 * 1024
_SHAPE = json.dumps({"errorType": "ValueError", "errorMessage": "midway"}).encode()
#: The end of a stream whose function failed midway, as a runtime writes it.
FAILED = (
    b"0\r\nKfn-Function-Error: Unhandled\r\nKfn-Error-Type: ValueError\r\n"
    b"Kfn-Error-Body: %s\r\n\r\n" % base64.b64encode(_SHAPE)
)


class StreamingPod:
    """A pod answering every request with a chunked stream, in the way ``mode`` says.

    ``gated``: a piece, then the rest once ``gate`` is set. ``flood``: ``total`` bytes in
    64 KiB pieces, as fast as its socket takes them (it honours flow control, as the
    runtimes do). ``fails``: a piece, then the runtime's error trailers. ``burst``: ``total``
    bytes with a length, in one write.
    """

    def __init__(self, mode: str, total: int = 0) -> None:
        self.mode = mode
        self.total = total
        self.gate = asyncio.Event()
        self.sent = 0
        self.paused = False
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> StreamingPod:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _PodProtocol(self), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


class _PodProtocol(asyncio.Protocol):
    def __init__(self, pod: StreamingPod) -> None:
        self.pod = pod
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable.set()
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def pause_writing(self) -> None:
        self.pod.paused = True
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def on_message_complete(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.answer())

    async def answer(self) -> None:
        transport = self.transport
        assert transport is not None
        if self.pod.mode == "burst":
            body = b"y" * self.pod.total
            transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            return
        transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        mode = self.pod.mode
        if mode == "gated":
            transport.write(b"5\r\nfirst\r\n")
            await self.pod.gate.wait()
            transport.write(b"4\r\nrest\r\n0\r\n\r\n")
        elif mode == "fails":
            transport.write(b"7\r\npartial\r\n" + FAILED)
        else:
            while self.pod.sent < self.pod.total:
                await self.writable.wait()
                transport.write(b"%x\r\n%s\r\n" % (len(PIECE), PIECE))
                self.pod.sent += len(PIECE)
            transport.write(b"0\r\n\r\n")


class Reader:
    """A client reading one answer as it arrives: head, body so far, whether it ended."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.body = bytearray()
        self.size = 0
        self.keep_body = True
        self.complete = False
        self.eof = False

    @classmethod
    async def request(
        cls, port: int, method: str, path: str, body: bytes = b"", *, small_buffer: bool = False
    ) -> Reader:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if small_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        writer.write(
            b"%s %s HTTP/1.1\r\nHost: fn.example\r\nContent-Length: %d\r\n\r\n%s"
            % (method.encode(), path.encode(), len(body), body)
        )
        await writer.drain()
        return cls(reader, writer)

    async def read_until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(30):
            while not condition() and not self.eof:
                data = await self.reader.read(1 << 20)
                if not data:
                    self.eof = True
                    break
                self.parser.feed_data(data)

    async def read_all(self) -> None:
        await self.read_until(lambda: self.complete)

    async def close(self) -> None:
        self.writer.close()

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.keep_body:
            self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def _client_connection(activator: server.Activator) -> proxy.ClientProtocol:
    (connection,) = typing.cast(set[proxy.ClientProtocol], activator.ctx.connections)
    return connection


def _held(connection: proxy.ClientProtocol) -> int:
    """Response bytes the activator holds for a client: its write buffer and the round's."""
    assert connection.transport is not None
    return connection.transport.get_write_buffer_size() + sum(len(data) for data in connection.out)


# --- passed on as it comes ---------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "path"), [("GET", "/report"), ("POST", INVOKE_PATH)])
async def test_pieces_reach_the_client_before_the_pod_ends_its_answer(
    make_activator: MakeActivator, method: str, path: str
) -> None:
    pod = await StreamingPod("gated").start()
    activator = await make_activator(endpoints=frozenset({pod.address}))
    client = await Reader.request(activator.ports[0], method, path)
    await client.read_until(lambda: client.body == b"first")
    # The pod waits for the gate: its answer cannot have ended, and what it sent is here.
    assert client.status == 200
    assert not client.complete
    pod.gate.set()
    await client.read_until(lambda: client.complete)
    assert client.body == b"firstrest"
    await client.close()
    await pod.stop()


@pytest.mark.asyncio
async def test_a_slow_reader_makes_the_activator_stop_reading_the_pod_not_hold_its_answer(
    make_activator: MakeActivator,
) -> None:
    total = 256 * MIB
    pod = await StreamingPod("flood", total).start()
    activator = await make_activator(timeout_ms=60_000, endpoints=frozenset({pod.address}))
    client = await Reader.request(activator.ports[0], "GET", "/big", small_buffer=True)
    await until(lambda: activator.ctx.connections)
    connection = _client_connection(activator)
    # The client reads nothing: the activator stops reading the pod, which then stops too.
    await until(
        lambda: (
            connection.exchanges
            and connection.exchanges[0].conn is not None
            and not typing.cast(
                asyncio.Transport, connection.exchanges[0].conn.transport
            ).is_reading()
        )
    )
    await until(lambda: pod.paused)
    assert _held(connection) < 2 * MIB
    assert pod.sent < total // 4
    client.keep_body = False
    await client.read_until(lambda: client.complete)
    assert client.size == total
    await client.close()
    await pod.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize(("mode", "size"), [("flood", 4 * MIB), ("burst", 300 * 1024)])
async def test_a_pod_connection_paused_for_a_large_answer_serves_the_next_one_from_the_pool(
    make_activator: MakeActivator, mode: str, size: int
) -> None:
    pod = await StreamingPod(mode, size).start()
    activator = await make_activator(endpoints=frozenset({pod.address}))
    for _ in range(3):
        client = await Reader.request(activator.ports[0], "GET", "/big")
        client.keep_body = False
        await client.read_all()
        assert client.size == size
        pod.sent = 0
        await client.close()
    await pod.stop()


# --- failures midway ---------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "path"), [("GET", "/report"), ("POST", INVOKE_PATH)])
async def test_a_stream_failing_midway_reaches_the_client_cut_short(
    make_activator: MakeActivator, method: str, path: str
) -> None:
    pod = await StreamingPod("fails").start()
    activator = await make_activator(endpoints=frozenset({pod.address}))
    client = await Reader.request(activator.ports[0], method, path)
    await client.read_until(lambda: client.complete)
    # What was sent arrives; then the connection ends without the last chunk.
    assert client.eof
    assert not client.complete
    assert client.body == b"partial"
    await client.close()
    await pod.stop()


# --- real runtimes -----------------------------------------------------------------------


def _open_gate(gate: pathlib.Path) -> None:
    with open(gate, "wb") as writer:
        writer.write(b"go")


@pytest.mark.asyncio
@pytest.mark.parametrize("language", runtimes.LANGUAGES)
@pytest.mark.parametrize(("method", "path"), [("GET", "/report?gate="), ("POST", INVOKE_PATH)])
async def test_a_runtimes_stream_passes_through_before_its_handler_ends(
    make_activator: MakeActivator, tmp_path: pathlib.Path, language: str, method: str, path: str
) -> None:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    runtime = runtimes.start(language, runtimes.make_task_root(language, tmp_path), "streams.gated")
    try:
        activator = await make_activator(endpoints=frozenset({f"127.0.0.1:{runtime.port}"}))
        if method == "GET":
            client = await Reader.request(activator.ports[0], method, path + str(gate))
        else:
            event = json.dumps({"gate": str(gate)}).encode()
            client = await Reader.request(activator.ports[0], method, path, event)
        await client.read_until(lambda: b"first\n" in client.body)
        assert not client.complete
        await asyncio.to_thread(_open_gate, gate)
        await client.read_until(lambda: client.complete)
        assert client.body == b"first\nafter gate: go"
        assert client.status == (201 if method == "GET" else 200)
        await client.close()
        # The handler's own time came in the last chunk's trailer.
        await until(lambda: activator.metrics.of(FN).invocations == 1)
        handler = activator.metrics.of(FN).handler_durations
        assert sum(handler.counts) == 1
        assert handler.total > 0
    finally:
        runtime.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("language", runtimes.LANGUAGES)
async def test_a_runtimes_stream_failing_midway_reaches_the_client_cut_short(
    make_activator: MakeActivator, tmp_path: pathlib.Path, language: str
) -> None:
    runtime = runtimes.start(
        language, runtimes.make_task_root(language, tmp_path), "streams.fails_midway"
    )
    try:
        activator = await make_activator(endpoints=frozenset({f"127.0.0.1:{runtime.port}"}))
        client = await Reader.request(activator.ports[0], "GET", "/report")
        await client.read_until(lambda: client.complete)
        assert client.eof
        assert not client.complete
        assert client.body == b"partial"
        await client.close()
        # The pod's connection is dropped, not reused; the next request gets a new one.
        again = await Reader.request(activator.ports[0], "GET", "/report")
        await again.read_until(lambda: again.complete)
        assert again.body == b"partial"
        await again.close()
        # A stream failing midway is the function's error, each time.
        await until(lambda: activator.metrics.of(FN).errors == {"function": 2})
    finally:
        runtime.stop()
