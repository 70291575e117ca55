"""The HTTP/1.1 proxy's client connection.

Built on ``asyncio.Protocol`` and httptools rather than a web framework because
throughput decides the activator's design: each request costs a few callbacks, a
handful of small byte strings and no header dict. A :class:`ClientProtocol` parses
a client's requests and runs one :class:`~kfn.activator.exchange.Exchange` per
request, in order; bodies are streamed both ways with the sockets' flow control
(``pause_reading``/``resume_reading``) so a large body never sits in memory.

Requests pipelined by a client are parsed ahead but served in order; reading
pauses while one is pending. What the connection writes for an exchange's response
is batched and written once per batch of bytes from the pod.
"""

from __future__ import annotations

import asyncio
import collections
import typing

import httptools

from kfn.activator import answers, context, request_body
from kfn.activator import exchange as exchanges


class ClientProtocol(asyncio.Protocol):
    """One client connection: parses requests and runs their exchanges in order."""

    def __init__(self, ctx: context.Context) -> None:
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.exchanges: collections.deque[exchanges.Exchange] = collections.deque()
        self.parsing: exchanges.Exchange | None = None
        self.peer = b""
        self.reading_paused = False
        self.write_paused = False
        self.closed = False
        self.out: list[bytes] = []

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport.
        self.transport = typing.cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if peer else b"unknown"
        self.ctx.connections.add(self)
        self.ctx.all_closed.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.ctx.connections.discard(self)
        if not self.ctx.connections:
            self.ctx.all_closed.set()
        pending, self.exchanges = self.exchanges, collections.deque()
        for exchange in pending:
            exchange.client_gone()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.bad_request("protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self.bad_request(str(exc) or "malformed request")

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.exchanges and self.exchanges[0].conn is not None:
            self.exchanges[0].conn.pause_reading(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.exchanges and self.exchanges[0].conn is not None:
            self.exchanges[0].conn.pause_reading(False)

    # --- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        exchange = exchanges.Exchange(self)
        self.parsing = exchange
        self.exchanges.append(exchange)

    def on_url(self, url: bytes) -> None:
        assert self.parsing is not None
        self.parsing.head.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.parsing is not None
        self.parsing.head.on_header(name, value)

    def on_headers_complete(self) -> None:
        exchange = self.parsing
        assert exchange is not None
        parser = self.parser
        exchange.on_head_complete(
            parser.get_method(), parser.should_keep_alive(), parser.get_http_version() == "1.1"
        )
        if self.exchanges and self.exchanges[0] is exchange:
            exchange.begin()
        else:
            self.update_reading()

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None:
            self.parsing.on_request_body(body)

    def on_message_complete(self) -> None:
        exchange, self.parsing = self.parsing, None
        if exchange is not None:
            exchange.on_request_complete()

    # --- used by exchanges ------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Write now, after anything buffered."""
        if self.out:
            self.out.append(data)
            self.flush()
            return
        transport = self.transport
        if transport is not None and not self.closed:
            transport.write(data)

    def buffer(self, data: bytes) -> None:
        """Write at the next :meth:`flush` (the end of the upstream's current batch)."""
        self.out.append(data)

    def flush(self) -> None:
        out = self.out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        transport = self.transport
        if transport is not None and not self.closed:
            transport.write(data)

    def abort(self) -> None:
        self.closed = True
        self.out.clear()
        if self.transport is not None:
            self.transport.abort()

    def exchange_done(self, exchange: exchanges.Exchange) -> None:
        if self.exchanges and self.exchanges[0] is exchange:
            self.exchanges.popleft()
        if self.closed:
            return
        if not exchange.keep_alive or not exchange.body_done or self.ctx.draining:
            self.close()
            return
        if self.exchanges:
            following = self.exchanges[0]
            if following.head_done:
                following.begin()
        self.update_reading()

    def close(self) -> None:
        """Close after writing what is buffered; pending pipelined requests are dropped."""
        self.flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        for exchange in list(self.exchanges):
            exchange.client_gone()
        self.exchanges.clear()

    def update_reading(self) -> None:
        """Pause reading the client while its bytes could not go anywhere."""
        transport = self.transport
        if transport is None or self.closed:
            return
        pause = False
        exchanges = self.exchanges
        if len(exchanges) > 1:
            pause = True
        elif exchanges:
            current = exchanges[0]
            if current.upstream_paused or (
                current.conn is None
                and not current.finished
                and current.upload.held_size > request_body.BUFFER_LIMIT
            ):
                pause = True
        if pause != self.reading_paused:
            self.reading_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def bad_request(self, message: str) -> None:
        if self.closed:
            return
        current = self.exchanges[0] if self.exchanges else None
        if current is not None and current.response_started:
            self.abort()
            return
        self.write(answers.encode(answers.bad_request(message), close=True))
        self.close()

    def drain(self) -> None:
        """Shutting down: close now if idle, else after the current response."""
        if not self.exchanges:
            self.close()
