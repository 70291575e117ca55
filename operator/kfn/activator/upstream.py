"""Connections to function pods: one keep-alive pool per endpoint.

An :class:`Endpoint` is one ready pod address (``ip:port``) with its in-flight
count (kept by the throttler) and its idle keep-alive connections. Reusing a
connection saves a TCP handshake and a socket per request, the largest single
cost of a naive proxy.

An :class:`UpstreamConnection` sends one request at a time and parses the response
with httptools, handing the pieces to a :class:`ResponseSink` (the proxy's
:class:`~kfn.activator.relay.Relay`, or a buffering sink for async invocations).
Response headers are filtered while parsed into one byte string, so the sink writes
them on without building a header dict: hop-by-hop ones are dropped, and so are the
runtime contract's ``Kfn-Request-Id`` (the relay writes the request's own, once),
``Kfn-Not-Started`` (the runtime's mark on a refusal, which the sink is told of and
no client sees) and ``Kfn-Handler-Duration`` (the handler's own time, kept in
:attr:`UpstreamConnection.handler_seconds` for the metrics, from the head or, on a
streamed answer, its trailers). Whether the answer carries ``Kfn-Function-Error`` is kept
in :attr:`UpstreamConnection.function_error` (the header itself goes on).

A streamed response whose function failed after its head went out ends with the
runtime's error trailers (``Kfn-Function-Error``, runtime contract §12): the sink is
told the response was lost (:class:`FailedMidwayError`), not complete, and the
connection is dropped, so no caller mistakes the truncated body for a whole one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import typing
from typing import Protocol

import httptools

#: Response headers that belong to one connection (RFC 9110 §7.6.1), plus the
#: framing headers the proxy rewrites itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


#: A pooled connection idle longer than this is not reused but closed. The runtime closes
#: idle connections after 65 s (runtime contract §4); reusing one that it is closing would
#: lose a request that never started, which then could not be told from a function whose
#: process died mid-request (a function error, ``Runtime.ExitError``).
MAX_IDLE_REUSE_S = 55.0

#: The runtime's mark on a 429/503 for a request it did not start (runtime contract §3).
NOT_STARTED = b"kfn-not-started"
#: The handler's own time in seconds, measured by the runtime (runtime contract).
HANDLER_DURATION = b"kfn-handler-duration"
#: Response headers that never reach a client as the pod sent them.
_DROPPED = HOP_BY_HOP | {b"kfn-request-id", NOT_STARTED, HANDLER_DURATION}
#: The trailers a runtime ends a failed stream with (runtime contract §12).
_FUNCTION_ERROR = b"kfn-function-error"
#: Headers the parser looks at: the dropped ones, and the function's error mark.
_NOTED = _DROPPED | {_FUNCTION_ERROR}
_ERROR_BODY = b"kfn-error-body"


class FailedMidwayError(Exception):
    """The function failed after its streamed response began; ``body`` is its error shape
    (JSON) from the runtime's ``Kfn-Error-Body`` trailer."""

    def __init__(self, body: bytes) -> None:
        super().__init__("the function failed while streaming its response")
        self.body = body


def _error_body(encoded: bytes) -> bytes:
    try:
        body = base64.b64decode(encoded, validate=True)
        json.loads(body)
    except (binascii.Error, ValueError):
        return b'{"errorType":"Unknown","errorMessage":"the function failed while streaming"}'
    return body


def _seconds(value: bytes) -> float:
    """A ``Kfn-Handler-Duration`` value; -1 when it is not a duration."""
    try:
        seconds = float(value)
    except ValueError:
        return -1.0
    return seconds if 0 <= seconds < 1e6 else -1.0


class ResponseSink(Protocol):
    """Receives one response from an :class:`UpstreamConnection`."""

    def on_interim(self, status: int, reason: bytes, headers: bytes) -> None:
        """A 1xx response (not 101) arrived; a final one follows."""

    def on_response_head(
        self, status: int, reason: bytes, headers: bytes, length_known: bool, not_started: bool
    ) -> None:
        """The final response's head; ``headers`` are filtered, CRLF-terminated lines.

        ``not_started``: the response carried the runtime's ``Kfn-Not-Started``.
        """

    def on_response_body(self, data: bytes) -> None:
        """A piece of the (de-chunked) response body."""

    def on_response_complete(self, reusable: bool) -> None:
        """The response ended; ``reusable``: the upstream connection may carry another."""

    def on_upstream_lost(self, exc: BaseException | None) -> None:
        """The connection failed or closed before the response completed."""

    def on_upstream_pause(self, paused: bool) -> None:
        """The upstream socket's write buffer is full (True) or drained (False)."""

    def flush(self) -> None:
        """A batch of received bytes was handled: write out what it produced together."""


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to a pod, carrying one request at a time."""

    __slots__ = (
        "_chunked",
        "_corked",
        "_failed",
        "_head_request",
        "_headers",
        "_headers_done",
        "_length_known",
        "_not_started",
        "_parser",
        "_reason",
        "_reset_parser",
        "_status",
        "_until_close",
        "closed",
        "endpoint",
        "function_error",
        "handler_seconds",
        "idle_since",
        "sink",
        "transport",
    )

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.sink: ResponseSink | None = None
        self.closed = False
        #: When it last went back to the pool (monotonic seconds).
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._headers = bytearray()
        self._reason = b""
        self._status = 0
        self._length_known = False
        self._not_started = False
        self._chunked = False
        self._head_request = False
        self._reset_parser = False
        self._until_close = False
        #: Past the head: header callbacks are the body's trailers.
        self._headers_done = False
        #: The trailers said the function failed midway; the error shape, once read.
        self._failed: bytes | None = None
        #: The current answer's ``Kfn-Handler-Duration`` (-1: none), and whether it carries
        #: ``Kfn-Function-Error``.
        self.handler_seconds = -1.0
        self.function_error = False
        #: Writes held back while corked (see :meth:`cork`).
        self._corked: list[bytes] | None = None

    # --- used by the sink ---------------------------------------------------------

    def send(self, head: bytes, sink: ResponseSink, *, head_request: bool) -> None:
        """Start a request: write its head; the body follows through :meth:`write`."""
        assert self.transport is not None
        self.sink = sink
        self._head_request = head_request
        self.write(head)

    def write(self, data: bytes) -> None:
        corked = self._corked
        if corked is not None:
            corked.append(data)
            return
        assert self.transport is not None
        self.transport.write(data)

    def cork(self) -> bool:
        """Hold writes back until :meth:`uncork`, which writes them as one; False if
        they are held already (then whoever corked first uncorks).

        A request's head and a body that arrived with it then leave in one segment
        rather than one per piece: each write on a socket costs a system call and, on
        the pod's side, a wake-up, about as much as all the Python a request runs.
        """
        if self._corked is not None:
            return False
        self._corked = []
        return True

    def write_out(self) -> None:
        """The loop's round ended (:mod:`~kfn.activator.outbox`): uncork."""
        self.uncork()

    def uncork(self) -> None:
        """Write what was held back since :meth:`cork`, in one write."""
        corked, self._corked = self._corked, None
        if not corked or self.closed:
            return  # aborted meanwhile: what it held goes nowhere
        assert self.transport is not None
        self.transport.write(corked[0] if len(corked) == 1 else b"".join(corked))

    def pause_reading(self, paused: bool) -> None:
        """Stop (or restart) reading the response while the client cannot keep up."""
        if self.transport is None or self.transport.is_closing():
            return
        if paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def abort(self) -> None:
        """Drop the connection: the request it carries was abandoned."""
        self.sink = None
        self.closed = True
        self._corked = None
        if self.transport is not None:
            self.transport.abort()

    # --- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport.
        self.transport = typing.cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.endpoint.forget(self)
        sink, self.sink = self.sink, None
        if sink is None:
            return
        if self._until_close and exc is None:
            # A response without Content-Length or chunking ends when the pod closes.
            sink.on_response_complete(False)
        else:
            sink.on_upstream_lost(exc)
        sink.flush()

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.on_upstream_pause(True)

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.on_upstream_pause(False)

    def data_received(self, data: bytes) -> None:
        sink = self.sink
        if sink is None:
            # A pod talking out of turn: the connection's state is unknown.
            self.abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            sink, self.sink = self.sink, None
            self.abort()
            if sink is not None:
                sink.on_upstream_lost(exc)
            return
        if self._reset_parser:
            self._reset_parser = False
            self._parser = httptools.HttpResponseParser(self)
        # One write per batch of bytes received: head and body of a small response
        # leave in one segment, not two.
        sink.flush()

    # --- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._headers = bytearray()
        self._reason = b""
        self._length_known = False
        self._not_started = False
        self._chunked = False
        self._until_close = False
        self._headers_done = False
        self._failed = None
        self.handler_seconds = -1.0
        self.function_error = False

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if self._headers_done:
            # A trailer: only the runtime's mark of a failed stream matters.
            if lower == _FUNCTION_ERROR and self._failed is None:
                self._failed = b""
            elif lower == _ERROR_BODY:
                self._failed = _error_body(value)
            elif lower == HANDLER_DURATION:
                self.handler_seconds = _seconds(value)
            return
        if lower in _NOTED:
            if lower == _FUNCTION_ERROR:
                self.function_error = True
            else:
                if lower == b"transfer-encoding":
                    self._chunked = value.lower().endswith(b"chunked")
                elif lower == NOT_STARTED:
                    self._not_started = True
                elif lower == HANDLER_DURATION:
                    self.handler_seconds = _seconds(value)
                return
        if lower == b"content-length":
            self._length_known = True
        # Appended in place: no temporary byte strings per header.
        headers = self._headers
        headers += name
        headers += b": "
        headers += value
        headers += b"\r\n"

    def on_headers_complete(self) -> None:
        sink = self.sink
        if sink is None:
            return
        status = self._parser.get_status_code()
        self._status = status
        self._headers_done = not 100 <= status < 200
        if 100 <= status < 200:
            if status != 101:
                sink.on_interim(status, self._reason, bytes(self._headers))
            return
        no_body = status in (204, 304) or self._head_request
        length_known = self._length_known or no_body
        self._until_close = not (length_known or self._chunked)
        sink.on_response_head(
            status, self._reason, bytes(self._headers), length_known, self._not_started
        )
        if self._head_request:
            # httptools cannot be told that a HEAD response has no body; end it here
            # and give the next response a fresh parser.
            self._reset_parser = True
            self._finish()

    def on_body(self, body: bytes) -> None:
        if self.sink is not None and not self._head_request:
            self.sink.on_response_body(body)

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200 or self._head_request:
            return
        self._finish()

    def _finish(self) -> None:
        sink, self.sink = self.sink, None
        if self._failed is not None:
            failed = FailedMidwayError(self._failed or _error_body(b""))
            self.abort()
            if sink is not None:
                sink.on_upstream_lost(failed)
            return
        if sink is not None:
            reusable = self._parser.should_keep_alive() and not self.closed
            sink.on_response_complete(reusable)


class Endpoint:
    """A ready pod address with its in-flight count and idle connections."""

    __slots__ = (
        "address",
        "closed",
        "connect_timeout",
        "draining",
        "host",
        "idle",
        "in_flight",
        "max_idle",
        "port",
    )

    def __init__(self, address: str, *, max_idle: int = 256, connect_timeout: float = 2.0) -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"endpoint address must be host:port, got {address!r}")
        self.address = address
        self.host = host.strip("[]")
        self.port = int(port)
        self.in_flight = 0
        self.draining = False
        self.closed = False
        self.idle: list[UpstreamConnection] = []
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout

    def __repr__(self) -> str:
        return f"Endpoint({self.address!r}, in_flight={self.in_flight})"

    def take_idle(self, now: float | None = None) -> UpstreamConnection | None:
        """An idle keep-alive connection, or None (most recently used first); ``now``
        (monotonic seconds) is passed by tests only. Connections idle past
        :data:`MAX_IDLE_REUSE_S` are closed instead: the runtime may be closing them."""
        idle = self.idle
        if not idle:
            return None
        oldest_usable = (time.monotonic() if now is None else now) - MAX_IDLE_REUSE_S
        while idle:
            conn = idle.pop()
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                continue
            if conn.idle_since < oldest_usable:
                # The rest went idle earlier still.
                stale = [conn, *idle]
                idle.clear()
                for old in stale:
                    old.abort()
                return None
            return conn
        return None

    async def connect(self) -> UpstreamConnection:
        """Open a new connection; raises OSError (or TimeoutError) when the pod is not there."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout):
            _, protocol = await loop.create_connection(
                lambda: UpstreamConnection(self), self.host, self.port
            )
        return protocol

    def put_idle(self, conn: UpstreamConnection) -> None:
        """Return a connection after a complete exchange, or close it if not wanted."""
        if self.closed or conn.closed or len(self.idle) >= self.max_idle:
            conn.abort()
            return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        """A connection closed; drop it from the idle list if it sits there."""
        if conn in self.idle:
            self.idle.remove(conn)

    def close(self) -> None:
        """The endpoint left: close idle connections now, busy ones when they finish."""
        self.closed = True
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.abort()
