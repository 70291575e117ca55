"""The activator's memory stays bounded whatever clients send, measured on the real process.

Each test runs the activator as its own process in front of a real upstream and
measures its resident set while the abuse is under way. The numbers a test prints
(``-s``) are the ones reported; ``KFN_ACTIVATOR_SRC`` runs them against another tree.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.unit.activator.http import Backend

from .conftest import StartActivator, one_function, route

MIB = 1024 * 1024


async def _status(reader: asyncio.StreamReader, within: float) -> int | None:
    """The status of the response on ``reader``, or None if none comes in time."""
    try:
        async with asyncio.timeout(within):
            line = await reader.readline()
    except (TimeoutError, ConnectionError):
        return None
    parts = line.split()
    return int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") else None


async def _send(writer: asyncio.StreamWriter, data: bytes, piece: int = 64 * 1024) -> bool:
    """Send in pieces; False once the activator stops taking them (closed or reset)."""
    try:
        for start in range(0, len(data), piece):
            writer.write(data[start : start + piece])
            await writer.drain()
    except ConnectionError:
        return False
    return True


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def _warm(port: int) -> None:
    """A few ordinary requests, so that the baseline includes a served request's memory."""
    for _ in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert await _status(reader, 5) == 200
        await _close(writer)


@pytest.mark.asyncio
async def test_three_hundred_requests_with_256_kib_urls_are_answered_414_and_leave_nothing_held(
    backend: Backend, start_activator: StartActivator
) -> None:
    activator = await start_activator([one_function(backend)], [route()])
    await _warm(activator.port)
    base = activator.rss_mib()
    statuses: list[int | None] = []

    async def one(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", activator.port)
        url = b"/" + b"a" * (256 * 1024) + b"?%d" % i
        await _send(writer, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % url)
        statuses.append(await _status(reader, 5))
        await _close(writer)

    async with activator.peak_rss() as peak:
        for batch in range(30):
            await asyncio.gather(*(one(batch * 10 + i) for i in range(10)))
    after = activator.rss_mib()
    print(f"\nlong URLs: RSS {base:.1f} MiB -> peak {peak[0]:.1f}, after {after:.1f} MiB")
    assert statuses == [414] * 300
    assert after - base < 8
    assert peak[0] - base < 16


@pytest.mark.asyncio
async def test_twenty_connections_with_two_mib_of_unfinished_headers_are_answered_431(
    backend: Backend, start_activator: StartActivator
) -> None:
    activator = await start_activator([one_function(backend)], [route()])
    await _warm(activator.port)
    base = activator.rss_mib()
    connections = [await asyncio.open_connection("127.0.0.1", activator.port) for _ in range(20)]
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * (2 * MIB)  # never finished
    async with activator.peak_rss() as peak:
        await asyncio.gather(*(_send(writer, head) for _, writer in connections))
        statuses = await asyncio.gather(*(_status(reader, 2) for reader, _ in connections))
    for _, writer in connections:
        await _close(writer)
    print(f"\nlong headers: RSS {base:.1f} MiB -> peak {peak[0]:.1f} MiB, 20 connections open")
    assert statuses == [431] * 20
    assert peak[0] - base < 8


@pytest.mark.asyncio
async def test_two_hundred_clients_sending_their_heads_slowly_get_408_at_the_head_deadline(
    backend: Backend, start_activator: StartActivator
) -> None:
    activator = await start_activator([one_function(backend)], [route()], KFN_HEAD_TIMEOUT="1")
    await _warm(activator.port)
    base = activator.rss_mib()
    connections = [await asyncio.open_connection("127.0.0.1", activator.port) for _ in range(200)]
    for _, writer in connections:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (16 * 1024))
    stop = asyncio.Event()

    async def trickle(writer: asyncio.StreamWriter) -> None:
        # One byte every 50 ms: never a whole head, never idle.
        with contextlib.suppress(ConnectionError):
            while not stop.is_set():
                writer.write(b"a")
                await writer.drain()
                await asyncio.sleep(0.05)

    async with activator.peak_rss() as peak:
        tricklers = [asyncio.ensure_future(trickle(writer)) for _, writer in connections]
        statuses = await asyncio.gather(*(_status(reader, 3) for reader, _ in connections))
    stop.set()
    await asyncio.gather(*tricklers)
    for _, writer in connections:
        await _close(writer)
    print(f"\nslow clients: RSS {base:.1f} MiB -> peak {peak[0]:.1f} MiB, 200 slow heads")
    assert statuses == [408] * 200
    assert peak[0] - base < 16


@pytest.mark.asyncio
async def test_bodies_queued_for_functions_at_zero_stop_at_the_total_budget_with_503(
    start_activator: StartActivator,
) -> None:
    activator = await start_activator(
        [one_function(None, "a"), one_function(None, "b")],
        [route("/a", "a"), route("/b", "b")],
        KFN_MAX_BUFFERED_BYTES=str(4 * MIB),
    )
    base = activator.rss_mib()
    body = b"x" * (256 * 1024)
    connections = [await asyncio.open_connection("127.0.0.1", activator.port) for _ in range(100)]
    async with activator.peak_rss() as peak:
        for i, (_, writer) in enumerate(connections):
            path = b"/a" if i % 2 else b"/b"
            head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (path, len(body))
            await _send(writer, head + body)
        # Refusals come at once; requests held wait for their function's 10 s timeout.
        statuses = await asyncio.gather(*(_status(reader, 1.5) for reader, _ in connections))
    for _, writer in connections:
        await _close(writer)
    held = statuses.count(None)
    print(f"\nqueued bodies: RSS {base:.1f} MiB -> peak {peak[0]:.1f} MiB, {held} of 100 held")
    assert held <= 16
    assert statuses.count(503) == 100 - held
    assert peak[0] - base < 12
