"""The pod's response on its way to the client: the proxy's streaming response sink.

A :class:`Relay` receives one response from an
:class:`~kfn.activator.upstream.UpstreamConnection` (whose parser has already
dropped the hop-by-hop headers and the pod's ``Kfn-Request-Id``) and writes it on
to the client under a new status line: with the request's ``Kfn-Request-Id``, once;
chunked when the pod's response has no length and the client speaks HTTP/1.1 (an
HTTP/1.0 client reads to the connection's end instead); and with ``Connection:
close`` when the client connection ends after it; on the invoke API with
``X-Amz-Executed-Version`` naming the version that ran; on a route with CORS, with the policy's
``Access-Control-*`` headers instead of the pod's. Bodies pass through in the pieces the
pod sent, each written at the end of the loop's round it came in: nothing waits for the
rest of the response. While the client does not read, its socket's buffer fills and the
proxy stops reading the pod (``pause_writing`` of the client connection). A round can
read the pod's socket many times before its writes go out (uvloop reads up to 32 times
per wake-up, megabytes on a fast pod), so every :data:`ROUND_LIMIT` bytes the relay
itself pauses the pod's connection until they were written, and a streamed response of
any length holds at most that and a socket buffer here.

A streamed response whose function failed midway (its runtime's error trailers,
:class:`~kfn.activator.upstream.FailedMidwayError`) ends as Lambda's does: the bytes
sent so far reach the client, then the connection closes without the last chunk, so
the client reads an incomplete response rather than a whole one.

A response the runtime marked as a refusal of a request it did not start
(:mod:`~kfn.activator.refusal`) is not passed on when the request can be sent
again: its body is dropped and the exchange sends the request again.
"""

from __future__ import annotations

import re
import typing

from kfn.activator import (
    cold_start,
    context,
    metrics,
    refusal,
    request_body,
    request_head,
    upstream,
)


class Owner(typing.Protocol):
    """What a relay needs of the exchange whose response it carries."""

    head: request_head.RequestHead
    upload: request_body.Upload
    request_id: bytes
    invoke: bool
    #: The function (version) the request was taken on for.
    entry: context.FunctionEntry | None
    #: The CORS policy's headers replacing the pod's ``Access-Control-*`` (None: none do).
    cors: bytes | None
    finished: bool
    keep_alive: bool
    response_started: bool
    upstream_paused: bool
    #: The pod connection carrying the request (None once it ended).
    conn: upstream.UpstreamConnection | None
    #: The cold start the request waited for, if it did (its answer says so).
    cold: cold_start.ColdStart | None
    error_kind: metrics.Kind | None

    def cold_timing(self) -> bytes: ...
    def retry_elsewhere(self, reusable: bool) -> None: ...
    def response_complete(self, status: int, reusable: bool, error_type: str = "") -> None: ...
    def upstream_lost(self) -> None: ...


class Client(typing.Protocol):
    """What a relay needs of the client connection it writes to."""

    ctx: context.Context
    #: The client's socket buffer is full: the pod's connection is not read meanwhile.
    write_paused: bool

    def buffer(self, data: bytes) -> None: ...
    def flush_soon(self) -> None: ...
    def update_reading(self) -> None: ...


_LAST_CHUNK = b"0\r\n\r\n"
#: How much of a function error's body is read for its errorType.
_PEEK = 512
#: Response bytes passed on before the pod's connection waits for them to be written.
ROUND_LIMIT = 256 * 1024
#: The function's own CORS headers, dropped where a route's CORS policy sets them.
_ACCESS_CONTROL = re.compile(rb"(?im)^access-control-[^\r\n]*\r\n")


class Relay:
    """Streams one response from a pod to the client (an ``upstream.ResponseSink``)."""

    __slots__ = (
        "chunked",
        "exchange",
        "held",
        "http11",
        "passed",
        "peek",
        "proto",
        "refused",
        "status",
    )

    def __init__(self, exchange: Owner, proto: Client) -> None:
        self.exchange = exchange
        self.proto = proto
        self.http11 = exchange.head.http11
        self.status = 0
        self.chunked = False
        #: The runtime refused the request unstarted: the response is dropped.
        self.refused = False
        #: Body bytes passed on since the pod's connection last waited for them to be written.
        self.passed = 0
        #: The pod's connection is paused until the round's writes went out.
        self.held = False
        #: The beginning of a function error's body, read for its errorType (else None).
        self.peek: bytes | None = None

    def on_interim(self, status: int, reason: bytes, headers: bytes) -> None:
        if not self.exchange.finished and self.http11:
            self.proto.buffer(b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, reason, headers))

    def on_response_head(
        self, status: int, reason: bytes, headers: bytes, length_known: bool, not_started: bool
    ) -> None:
        ex = self.exchange
        if ex.finished:
            return
        if not_started and refusal.not_started(status, not_started) and ex.upload.replayable:
            self.refused = True
            return
        self._forward_head(status, reason, headers, length_known)

    def on_response_body(self, data: bytes) -> None:
        if self.exchange.finished or self.refused:
            return
        self.proto.buffer(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
        if self.peek is not None and len(self.peek) < _PEEK:
            self.peek += data[:_PEEK]
        self.passed += len(data)
        if self.passed >= ROUND_LIMIT and not self.held:
            conn = self.exchange.conn
            if conn is not None:
                self.held = True
                conn.pause_reading(True)
                proto = self.proto
                proto.flush_soon()  # first: the client's bytes leave before write_out below
                proto.ctx.outbox.add(self)

    def write_out(self) -> None:
        """The round's writes went out: read the pod again, unless the client's socket is
        full (its ``resume_writing`` then does)."""
        self.held = False
        self.passed = 0
        conn = self.exchange.conn
        if conn is not None and not self.exchange.finished and not self.proto.write_paused:
            conn.pause_reading(False)

    def on_response_complete(self, reusable: bool) -> None:
        ex = self.exchange
        if ex.finished:
            return
        if self.refused:
            ex.retry_elsewhere(reusable)
            return
        if self.chunked:
            self.proto.buffer(_LAST_CHUNK)
        if self.held and ex.conn is not None:
            # The connection goes back to the pool: reading, for its next response.
            self.held = False
            ex.conn.pause_reading(False)
        ex.response_complete(
            self.status, reusable, metrics.error_type(self.peek) if self.peek else ""
        )

    def on_upstream_lost(self, exc: BaseException | None) -> None:
        if self.exchange.finished:
            return
        if self.refused:
            # Not started either way: the refusal's connection just closed under it.
            self.exchange.retry_elsewhere(False)
            return
        if isinstance(exc, upstream.FailedMidwayError) and self.exchange.response_started:
            # What was sent stays sent; the connection then closes without the last chunk.
            self.exchange.keep_alive = False
            kind = metrics.error_type(exc.body)
            self.exchange.error_kind = metrics.classify(
                504 if kind == "TimeoutError" else 500, function_error=True, error_type=kind
            )
            self.exchange.response_complete(502, False)
            return
        self.exchange.upstream_lost()

    def on_upstream_pause(self, paused: bool) -> None:
        self.exchange.upstream_paused = paused
        self.proto.update_reading()

    def flush(self) -> None:
        self.proto.flush_soon()

    def _forward_head(self, status: int, reason: bytes, headers: bytes, length_known: bool) -> None:
        ex = self.exchange
        self.status = status
        ex.response_started = True
        entry = ex.entry
        executed = entry.executed_version if ex.invoke and entry is not None else b""
        extra = b"Kfn-Request-Id: %s\r\n%s" % (ex.request_id, executed)
        if ex.cold is not None:
            extra += ex.cold_timing()
        conn = ex.conn
        if conn is not None and conn.function_error and status == 502:
            self.peek = b""
        if ex.cors is not None:
            headers = _ACCESS_CONTROL.sub(b"", headers) + ex.cors
        if not length_known:
            if self.http11:
                extra += b"Transfer-Encoding: chunked\r\n"
                self.chunked = True
            else:
                ex.keep_alive = False
        if not ex.keep_alive or self.proto.ctx.draining:
            ex.keep_alive = False
            extra += b"Connection: close\r\n"
        # One format, not a list joined: the head of every response goes through here.
        self.proto.buffer(b"HTTP/1.1 %d %s\r\n%s%s\r\n" % (status, reason, headers, extra))
