"""The HTTP/1.1 proxy's client connection.

Built on ``asyncio.Protocol`` and httptools rather than a web framework because
throughput decides the activator's design: each request costs a few callbacks, a
handful of small byte strings and no header dict. A :class:`ClientProtocol` parses
a client's requests and runs one :class:`~kfn.activator.exchange.Exchange` per
request, in order; bodies are streamed both ways with the sockets' flow control
(``pause_reading``/``resume_reading``) so a large body never sits in memory.

Requests pipelined by a client are parsed ahead but served in order; reading
pauses while one is pending. What the connection writes for an exchange's response
is batched and written once per batch of bytes from the pod; what an exchange sends
its pod while one batch of the client's bytes is parsed (a head and the body that
came with it) is written once too (:meth:`ClientProtocol.cork`). Both leave at the end
of the loop's round, with every other connection's (:mod:`~kfn.activator.outbox`).

What a client can make a connection hold is bounded (:mod:`~kfn.activator.bounds`):
the URL (414) and the whole head (431) while they are parsed, the time to send a
head (408) and to stay idle (:mod:`~kfn.activator.watchdog`), and the connections
open at once (503). An answer that leaves part of a request unread is followed by a
lingering close (:meth:`ClientProtocol.linger`), so the client reads the answer
rather than a reset.
"""

from __future__ import annotations

import asyncio
import collections
import typing

import httptools

from kfn.activator import (
    access,
    answers,
    context,
    deadline,
    forwarding,
    lambda_api,
    request_body,
    upstream,
    watchdog,
)
from kfn.activator import exchange as exchanges

#: How long a connection answered with part of its request unread drops what the
#: client still sends before it closes (nginx's ``lingering_time`` is 30 s, its
#: ``lingering_timeout`` 5 s; an answer this small is read sooner).
LINGER_SECONDS = 2.0


class _RefusedError(Exception):
    """Raised in a parser callback to stop parsing a request already refused."""


class ClientProtocol(asyncio.Protocol):
    """One client connection: parses requests and runs their exchanges in order."""

    def __init__(self, ctx: context.Context, door: context.Door = context.SINGLE) -> None:
        self.ctx = ctx
        self.door = door
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.exchanges: collections.deque[exchanges.Exchange] = collections.deque()
        self.parsing: exchanges.Exchange | None = None
        self.peer = b""
        #: The peer parsed (None: not an IP peer), and whether it is a trusted proxy by the
        #: trusted set last looked at (see :meth:`proxied`).
        self.peer_address: forwarding.Address | None = None
        self.trust_seen: forwarding.Trusted | None = None
        self.peer_trusted = False
        self.reading_paused = False
        self.write_paused = False
        self.closed = False
        self.out: list[bytes] = []
        #: Whether ``out`` waits in the outbox for the end of the loop's round.
        self.out_waiting = False
        #: While a batch of the client's bytes is parsed, and the pod connection whose
        #: writes are held until it is (see :meth:`cork`).
        self.receiving = False
        self.corked: upstream.UpstreamConnection | None = None
        #: When the connection started waiting for its client (see :meth:`waiting`).
        self.since = self.loop.time()
        #: Requests answered on this connection.
        self.served = 0
        #: Bytes received since the head being read began (bounded by max_head_bytes).
        self.head_bytes = 0
        self.linger_timer: asyncio.TimerHandle | None = None
        #: The bound of the request being served (see :mod:`~kfn.activator.deadline`).
        self.deadline = deadline.Deadline(self.loop)
        self.recent = access.Recent()

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport.
        self.transport = typing.cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if peer else b"unknown"
        self.peer_address = forwarding.peer_address(self.peer) if peer else None
        if self.peer_address is not None and str(self.peer_address) != str(peer[0]):
            self.peer = str(self.peer_address).encode()  # an IPv4 peer on a dual-stack socket
        ctx = self.ctx
        if len(ctx.connections) >= ctx.bounds.max_connections:
            self.refuse(answers.TOO_MANY_CONNECTIONS)
            return
        ctx.connections.add(self)
        ctx.all_closed.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.deadline.close()
        if self.linger_timer is not None:
            self.linger_timer.cancel()
            self.linger_timer = None
        self.ctx.connections.discard(self)
        if not self.ctx.connections:
            self.ctx.all_closed.set()
        pending, self.exchanges = self.exchanges, collections.deque()
        for exchange in pending:
            exchange.client_gone()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return  # answered already (lingering): what the client still sends is dropped
        parsing = self.parsing
        if parsing is None or not parsing.head_done:
            self.head_bytes += len(data)
        self.receiving = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.bad_request("protocol upgrades are not supported")
            return
        except httptools.HttpParserError as exc:
            # Also a callback's _RefusedError: then the connection is closed already.
            self.bad_request(str(exc) or "malformed request")
            return
        finally:
            self.receiving = False
            corked = self.corked
            if corked is not None:
                self.corked = None
                self.ctx.outbox.add(corked)  # uncorked when the round ends
        if self.head_bytes > self.ctx.bounds.max_head_bytes:
            # A head still unfinished past the bound (one finished resets the count).
            self.refuse_head()

    def proxied(self) -> forwarding.Trusted | None:
        """The trusted proxies when the peer is one of them, else None: decided once per
        connection, and again only when the trusted set was replaced."""
        trusted = self.ctx.trusted
        if trusted is not self.trust_seen:
            self.trust_seen = trusted
            address = self.peer_address
            self.peer_trusted = address is not None and trusted.holds(address)
        return trusted if self.peer_trusted else None

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
        if not self.exchanges and self.served:
            self.since = self.loop.time()  # idle until now: the head's time starts
        self.parsing = exchange
        self.exchanges.append(exchange)

    def on_url(self, url: bytes) -> None:
        assert self.parsing is not None
        head = self.parsing.head
        head.url += url
        if len(head.url) > self.ctx.bounds.max_url_bytes:
            self.refuse_head()
            raise _RefusedError
        if (
            self.door.invoke
            and head.everything is None
            and self.ctx.lambda_service is not None
            and lambda_api.is_lambda(head.url)
        ):
            head.everything = []  # a Lambda API request: its signature covers every header

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.parsing is not None
        self.parsing.head.on_header(name, value)

    def on_headers_complete(self) -> None:
        exchange = self.parsing
        assert exchange is not None
        self.head_bytes = 0
        head = exchange.head
        # What the head keeps: URL, headers passed on, and the noted ones that may be
        # long (the rest are dropped, or short by their parsing).
        if (
            len(head.url)
            + len(head.headers)
            + len(head.host)
            + len(head.xff)
            + len(head.forwarded)
            + len(head.xfp)
            + len(head.xfh)
            > self.ctx.bounds.max_head_bytes
        ):
            self.refuse_head()
            raise _RefusedError
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

    def cork(self, conn: upstream.UpstreamConnection) -> None:
        """Hold what is sent to ``conn`` until the batch of bytes being parsed is, then
        write it as one: a request's head and its body then leave in one write, not
        two. Outside parsing (a request that waited for a pod) writes go at once."""
        if not self.receiving or self.corked is conn:
            return
        if self.corked is not None:
            self.corked.uncork()
        self.corked = conn if conn.cork() else None

    def buffer(self, data: bytes) -> None:
        """Write at the next :meth:`flush` (the end of the upstream's current batch)."""
        self.out.append(data)

    def flush_soon(self) -> None:
        """Write what is buffered at the end of the loop's round (:mod:`outbox`)."""
        if self.out and not self.out_waiting:
            self.out_waiting = True
            self.ctx.outbox.add(self)

    def write_out(self) -> None:
        self.out_waiting = False
        self.flush()

    def flush(self) -> None:
        """Write what is buffered, now."""
        out = self.out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        transport = self.transport
        if transport is not None and not self.closed:
            transport.write(data)

    def write_backlog(self) -> int:
        """Answer bytes held for the client: buffered here and in the socket's transport (for
        ``kfn_activator_buffered_bytes``, at scrape time)."""
        held = sum(len(piece) for piece in self.out)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            held += transport.get_write_buffer_size()
        return held

    def abort(self) -> None:
        self.closed = True
        self.out.clear()
        if self.transport is not None:
            self.transport.abort()

    def exchange_done(self, exchange: exchanges.Exchange) -> None:
        if self.exchanges and self.exchanges[0] is exchange:
            self.exchanges.popleft()
        self.served += 1
        self.since = self.loop.time()
        if self.closed:
            return
        if not exchange.body_done:
            self.linger()  # the rest of the request will not be read
            return
        if not exchange.keep_alive or self.ctx.draining:
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
        self.refuse(answers.bad_request(message))

    def refuse_head(self) -> None:
        """The head being read is past a bound: 414 for its URL, else 431."""
        bounds = self.ctx.bounds
        parsing = self.parsing
        if parsing is not None and len(parsing.head.url) > bounds.max_url_bytes:
            self.refuse(answers.url_too_long(bounds.max_url_bytes))
        else:
            self.refuse(answers.head_too_large(bounds.max_head_bytes))

    def refuse(self, answer: answers.Answer) -> None:
        """Answer that the proxy takes no more from this client, and close (lingering)."""
        if self.closed:
            return
        exchanges = self.exchanges
        if exchanges and (exchanges[0] is not self.parsing or exchanges[0].response_started):
            # A response is under way or still due: this answer has no place on the wire.
            self.abort()
            return
        self.write(answers.encode(answer, close=True))
        self.linger()

    def linger(self) -> None:
        """Stop serving; send the end of the stream, drop what arrives, close soon.

        Closing a socket with unread bytes resets the connection, and the reset can
        destroy an answer before the client reads it. So the answer is followed by
        the end of the stream, what the client still sends is read and dropped, and
        the connection closes when the client closes it or after LINGER_SECONDS.
        """
        self.flush()
        self.closed = True
        pending, self.exchanges = self.exchanges, collections.deque()
        self.parsing = None
        for exchange in pending:
            exchange.client_gone()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        self.linger_timer = self.loop.call_later(LINGER_SECONDS, transport.abort)

    # --- used by the watchdog -------------------------------------------------------------

    def waiting(self) -> watchdog.State:
        """Whether the connection waits for its client, and for what."""
        exchanges = self.exchanges
        if self.closed:
            return "busy"
        if not exchanges:
            return "idle" if self.served else "fresh"
        return "busy" if exchanges[0].head_done else "head"

    def head_late(self) -> None:
        self.refuse(answers.HEAD_TIMEOUT)

    def close_idle(self) -> None:
        self.close()

    def drain(self) -> None:
        """Shutting down: close now if idle, else after the current response; a request
        still waiting for a pod waits only as long as the drain can serve it."""
        if not self.exchanges:
            self.close()
            return
        for exchange in self.exchanges:
            exchange.stopping()
