"""The autoscaler's HTTP endpoint: ``POST /stats`` with a :mod:`kfn.stats` message.

Small by design: a keep-alive HTTP/1.1 server over ``asyncio.Protocol`` and
httptools, answering 204 for an accepted message, 400 for one that does not
decode, 404/405 elsewhere. Bodies are bounded (a message is small).
"""

from __future__ import annotations

import asyncio
import logging
import typing
from collections.abc import Callable, Coroutine
from typing import Any

import httptools

from kfn import stats

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024

Receiver = Callable[[stats.StatMessage], Coroutine[Any, Any, None]]


class _StatsProtocol(asyncio.Protocol):
    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body = bytearray()
        self._too_large = False
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport.
        self._transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._reply(400, b"malformed request", close=True)

    def on_url(self, url: bytes) -> None:
        self._url = url

    def on_message_begin(self) -> None:
        self._url = b""
        self._body = bytearray()
        self._too_large = False

    def on_body(self, body: bytes) -> None:
        if len(self._body) + len(body) > MAX_BODY:
            self._too_large = True
        else:
            self._body += body

    def on_message_complete(self) -> None:
        method = self._parser.get_method()
        keep_alive = self._parser.should_keep_alive()
        path = self._url.split(b"?", 1)[0]
        if path != stats.STATS_PATH.encode():
            self._reply(404, b"not found", close=not keep_alive)
            return
        if method != b"POST":
            self._reply(405, b"method not allowed", close=not keep_alive)
            return
        if self._too_large:
            self._reply(413, b"message too large", close=True)
            return
        try:
            message = stats.decode(bytes(self._body))
        except stats.StatsError as exc:
            self._reply(400, str(exc).encode(), close=not keep_alive)
            return
        task = asyncio.get_running_loop().create_task(self._receiver(message))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        self._reply(204, b"", close=not keep_alive)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("handling a stats message failed", exc_info=task.exception())

    def _reply(self, status: int, body: bytes, *, close: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        reason = {204: b"No Content", 400: b"Bad Request", 404: b"Not Found"}.get(status, b"")
        head = b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\n" % (status, reason, len(body))
        if status == 204:
            head = b"HTTP/1.1 204 No Content\r\n"
        if close:
            head += b"Connection: close\r\n"
        transport.write(head + b"\r\n" + body)
        if close:
            transport.close()


async def serve(
    receiver: Receiver, host: str = "127.0.0.1", port: int = 8090
) -> asyncio.base_events.Server:
    """Start the endpoint; the caller closes the returned server."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _StatsProtocol(receiver), host, port)
