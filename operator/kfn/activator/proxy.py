"""The HTTP/1.1 proxy: client connections, one :class:`Exchange` per request.

Built on ``asyncio.Protocol`` and httptools rather than a web framework because
throughput decides the activator's design: each request costs a few callbacks, a
handful of small byte strings and no header dict. Request headers are filtered as
they are parsed into one byte string (hop-by-hop ones dropped, ``X-Forwarded-*``
added), and bodies are streamed both ways with the sockets' flow control
(``pause_reading``/``resume_reading``) so a large body never sits in memory.

An exchange's life::

    head parsed -> route -> throttler slot (at once, or queued) -> pooled connection
      -> request head + body streamed up -> response head + body streamed down
      -> slot released, connection back to the pool -> next request on the connection

Everything on the common path runs in protocol callbacks; only connecting to a new
pod (and retrying a refused connection on another) runs as a task. Every request
has one timer: its function's timeout, covering the time queued as well as served;
it answers 504 in Lambda's error shape.

Requests pipelined by a client are parsed ahead but served in order; reading
pauses while one is pending.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import os
import re
import time
import typing
from typing import Protocol

import httptools

from kfn import stats
from kfn.activator import async_invoke, metrics, router, throttler, upstream
from kfn.activator import config as configs

#: Bytes of request body held while waiting for a pod before reading pauses.
BUFFER_LIMIT = 256 * 1024
#: Lambda's payload limit for asynchronous invocations.
EVENT_PAYLOAD_LIMIT = 256 * 1024
#: Requests up to this size (head and body as sent) are kept until the pod answers, so
#: one the runtime refused without starting it can be sent again (see ``_not_started``).
REPLAY_LIMIT = 64 * 1024
#: Longest body of a runtime refusal that is held back to be recognised.
_REFUSAL_LIMIT = 4096
#: The bodies with which the runtime refuses a request it did not start (the runtime
#: contract, sections 3 and 6): over its concurrency (429) or draining (503).
_REFUSAL_TYPES = (b'"TooManyRequestsException"', b'"ServiceUnavailableException"')
_REFUSAL_BODIES = ({"message": "Too Many Requests"}, {"message": "Service Unavailable"})
HEALTH_PATH = b"/_kfn/health"

# Request headers the proxy handles itself. 0: dropped.
_DROP = 0
_HOST = 1
_CONTENT_LENGTH = 2
_TRANSFER_ENCODING = 3
_EXPECT = 4
_XFF = 5
_XFP = 6
_XFH = 7
_INVOCATION_TYPE = 8
_REQUEST_ID = 9
_SPECIAL = {
    **{name: _DROP for name in upstream.HOP_BY_HOP},
    b"host": _HOST,
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"expect": _EXPECT,
    b"x-forwarded-for": _XFF,
    b"x-forwarded-proto": _XFP,
    b"x-forwarded-host": _XFH,
    b"kfn-invocation-type": _INVOCATION_TYPE,
    b"x-amz-invocation-type": _INVOCATION_TYPE,
    b"kfn-request-id": _REQUEST_ID,
    b"kfn-deadline-ms": _DROP,
    b"kfn-function-name": _DROP,
}

_REASONS = {
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Payload Too Large",
    429: b"Too Many Requests",
    499: b"Client Closed Request",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}

#: A caller's own request id (kept on the invoke API only): what stays one header value.
_GIVEN_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_request_prefix = os.urandom(6).hex().encode()
_request_counter = itertools.count(1)


def new_request_id() -> bytes:
    """Unique per activator process; cheaper than a UUID on the hot path."""
    return b"%s-%x" % (_request_prefix, next(_request_counter))


class FunctionEntry:
    """What the proxy needs of one function, gathered in one object."""

    __slots__ = ("key", "limits", "metrics", "name_bytes", "throttler", "timeout")

    def __init__(
        self,
        key: stats.FunctionKey,
        limits: configs.FunctionLimits,
        throttler: throttler.Throttler,
        metrics: metrics.FunctionMetrics,
    ) -> None:
        self.key = key
        self.limits = limits
        self.throttler = throttler
        self.metrics = metrics
        self.name_bytes = key.name.encode()
        self.timeout = limits.timeout_ms / 1000


class Submitter(Protocol):
    """Accepts an asynchronous invocation (see :mod:`kfn.activator.async_invoke`)."""

    def submit(self, function: stats.FunctionKey, payload: bytes) -> str: ...


class Context:
    """State shared by all client connections of one activator."""

    def __init__(self, routes: router.Router, invoker: Submitter | None = None) -> None:
        self.router = routes
        self.functions: dict[stats.FunctionKey, FunctionEntry] = {}
        self.invoker = invoker
        self.draining = False
        self.connections: set[ClientProtocol] = set()
        #: Set while no client connection is open (graceful shutdown waits on it).
        self.all_closed = asyncio.Event()
        self.all_closed.set()
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coroutine: collections.abc.Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class Exchange:
    """One request and its response, from head parsed to last byte written."""

    __slots__ = (
        "body_buffer",
        "body_done",
        "buffered",
        "chunked_in",
        "chunked_out",
        "conn",
        "content_length",
        "deadline_ms",
        "endpoint",
        "entry",
        "event_body",
        "expect_continue",
        "finished",
        "given_request_id",
        "has_xfh",
        "has_xfp",
        "head_done",
        "headers",
        "held",
        "host",
        "http11",
        "invocation_type",
        "invoke",
        "keep_alive",
        "method",
        "proto",
        "replay",
        "replay_size",
        "request_id",
        "request_sent",
        "response_started",
        "retries",
        "started",
        "status",
        "timer",
        "upstream_paused",
        "url",
        "waiter",
        "xff",
    )

    def __init__(self, proto: ClientProtocol) -> None:
        self.proto = proto
        self.url = b""
        self.method = b""
        self.headers = bytearray()
        self.host = b""
        self.xff = b""
        self.has_xfp = False
        self.has_xfh = False
        self.content_length = -1
        self.chunked_in = False
        self.expect_continue = False
        self.invocation_type = b""
        self.keep_alive = True
        self.http11 = True
        self.head_done = False
        self.body_done = False
        self.body_buffer: list[bytes] | None = []
        self.buffered = 0
        self.event_body: bytearray | None = None
        self.invoke = False
        self.entry: FunctionEntry | None = None
        self.endpoint: upstream.Endpoint | None = None
        self.conn: upstream.UpstreamConnection | None = None
        self.waiter: asyncio.Future[upstream.Endpoint] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.request_id = b""
        self.given_request_id = b""
        self.deadline_ms = 0
        self.started = 0.0
        self.status = 0
        self.request_sent = False
        self.response_started = False
        self.chunked_out = False
        self.upstream_paused = False
        self.finished = False
        #: What was sent to the pod, for sending it again; None once too large.
        self.replay: list[bytes] | None = None
        self.replay_size = 0
        #: A refusal held back (status, reason, headers, body) until it is recognised.
        self.held: tuple[int, bytes, bytes, bytearray] | None = None
        self.retries = 0

    # --- request side ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        code = _SPECIAL.get(name.lower())
        if code is None:
            self.headers += name + b": " + value + b"\r\n"
        elif code == _DROP:
            return
        elif code == _HOST:
            self.host = value
            self.headers += name + b": " + value + b"\r\n"
        elif code == _CONTENT_LENGTH:
            self.content_length = int(value) if value.isdigit() else -1
            self.headers += name + b": " + value + b"\r\n"
        elif code == _TRANSFER_ENCODING:
            self.chunked_in = value.lower().endswith(b"chunked")
        elif code == _EXPECT:
            self.expect_continue = value.lower() == b"100-continue"
        elif code == _XFF:
            self.xff = value if not self.xff else self.xff + b", " + value
        elif code == _XFP:
            self.has_xfp = True
            self.headers += name + b": " + value + b"\r\n"
        elif code == _XFH:
            self.has_xfh = True
            self.headers += name + b": " + value + b"\r\n"
        elif code == _INVOCATION_TYPE:
            self.invocation_type = value
        elif code == _REQUEST_ID and _GIVEN_REQUEST_ID.match(value):
            self.given_request_id = value

    def begin(self) -> None:
        """Route the request and find it a pod (called when it is first in line)."""
        proto = self.proto
        ctx = proto.ctx
        self.started = time.perf_counter()
        if self.url == HEALTH_PATH:
            status = 503 if ctx.draining else 200
            self.respond(status, b"text/plain", b"draining\n" if ctx.draining else b"ok\n")
            return
        match = ctx.router.match(self.host, self.url, self.method)
        entry = ctx.functions.get(match.function) if match is not None else None
        if entry is None:
            self.error(404, "ResourceNotFoundException", "no function serves this request")
            return
        self.entry = entry
        if match is not None and match.invoke:
            self.invoke = True
            if self.method != b"POST":
                self.error(405, "InvalidRequestContentException", "invoke with POST")
                return
            kind = self.invocation_type
            if kind == b"Event":
                self.event_body = bytearray()
                if self.body_done:
                    self.submit_event()
                return
            if kind not in (b"", b"RequestResponse"):
                self.error(400, "InvalidParameterValueException", "unknown invocation type")
                return
        entry.throttler.note_request()
        loop = proto.loop
        self.timer = loop.call_at(loop.time() + entry.timeout, self.on_timeout)
        self.deadline_ms = int((time.time() + entry.timeout) * 1000)
        # An invoke keeps its caller's id, so a trigger worker's retries of one event carry
        # one aws_request_id, as Lambda's asynchronous retries do; HTTP requests get a new one.
        self.request_id = (self.invoke and self.given_request_id) or new_request_id()
        self.acquire(entry)

    def on_endpoint(self, waiter: asyncio.Future[upstream.Endpoint]) -> None:
        self.waiter = None
        if waiter.cancelled():
            return
        endpoint = waiter.result()
        if self.finished:
            assert self.entry is not None
            self.entry.throttler.release(endpoint)
            return
        self.with_endpoint(endpoint)

    def with_endpoint(self, endpoint: upstream.Endpoint) -> None:
        self.endpoint = endpoint
        conn = endpoint.take_idle()
        if conn is not None:
            self.attach(conn)
        else:
            self.proto.ctx.spawn(self.connect(endpoint))

    async def connect(self, endpoint: upstream.Endpoint) -> None:  # noqa: PLR0911
        """Open a connection; a refused one is retried on another endpoint.

        Nothing was written yet, so the retry is safe for any request.
        """
        entry = self.entry
        assert entry is not None
        tried: list[upstream.Endpoint] = []
        while True:
            try:
                conn = await endpoint.connect()
            except (OSError, TimeoutError):
                if self.finished:
                    return
                self.endpoint = None
                entry.throttler.release(endpoint)
                tried.append(endpoint)
                if len(tried) >= 3:
                    self.error(502, "ServiceException", "could not connect to the function")
                    return
                next_endpoint = entry.throttler.try_acquire(exclude=tried)
                if next_endpoint is None:
                    try:
                        waiter = entry.throttler.wait()
                    except throttler.QueueFullError:
                        self.queue_full()
                        return
                    self.waiter = waiter
                    try:
                        next_endpoint = await waiter
                    except asyncio.CancelledError:
                        return
                    self.waiter = None
                    if self.finished:
                        entry.throttler.release(next_endpoint)
                        return
                self.endpoint = endpoint = next_endpoint
                continue
            if self.finished:
                endpoint.put_idle(conn)
                return
            self.attach(conn)
            return

    def attach(self, conn: upstream.UpstreamConnection) -> None:
        """Send the request head, and any body already received, to the pod."""
        entry = self.entry
        assert entry is not None
        self.conn = conn
        proto = self.proto
        if self.retries:
            # Sent before and refused unstarted: the same bytes again, complete.
            replay = self.replay
            assert replay is not None
            conn.send(replay[0], self, head_request=self.method == b"HEAD")
            for data in replay[1:]:
                conn.write(data)
            if proto.write_paused:
                conn.pause_reading(True)
            return
        xff = self.xff + b", " + proto.peer if self.xff else proto.peer
        parts: list[bytes | bytearray] = [
            self.method,
            b" ",
            router.POD_INVOKE_PATH if self.invoke else self.url,
            b" HTTP/1.1\r\n",
            self.headers,
            b"X-Forwarded-For: ",
            xff,
            b"\r\nKfn-Request-Id: ",
            self.request_id,
            b"\r\nKfn-Deadline-Ms: %d\r\n" % self.deadline_ms,
        ]
        if not self.has_xfp:
            parts.append(b"X-Forwarded-Proto: http\r\n")
        if not self.has_xfh and self.host:
            parts += (b"X-Forwarded-Host: ", self.host, b"\r\n")
        if self.invoke:
            parts += (
                b"Kfn-Function-Name: ",
                entry.name_bytes,
                b"\r\nKfn-Invocation-Type: RequestResponse\r\n",
            )
        if self.chunked_in:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        parts.append(b"\r\n")
        head = b"".join(parts)
        self.replay = [head]
        self.replay_size = len(head)
        conn.send(head, self, head_request=self.method == b"HEAD")
        buffered, self.body_buffer = self.body_buffer, None
        if buffered:
            for chunk in buffered:
                self.send_body(chunk)
        self.buffered = 0
        if self.body_done:
            self.end_body()
        elif self.expect_continue and not self.response_started:
            proto.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if proto.write_paused:
            conn.pause_reading(True)
        proto.update_reading()

    def send_body(self, data: bytes) -> None:
        conn = self.conn
        assert conn is not None
        if self.chunked_in:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        conn.write(data)
        self._keep(data)

    def end_body(self) -> None:
        if self.chunked_in and self.conn is not None:
            self.conn.write(b"0\r\n\r\n")
            self._keep(b"0\r\n\r\n")
        self.request_sent = True

    def _keep(self, data: bytes) -> None:
        replay = self.replay
        if replay is None:
            return
        self.replay_size += len(data)
        if self.replay_size > REPLAY_LIMIT:
            self.replay = None
        else:
            replay.append(data)

    def on_request_body(self, data: bytes) -> None:
        if self.finished:
            return
        if self.conn is not None:
            self.send_body(data)
        elif self.event_body is not None:
            if len(self.event_body) + len(data) > EVENT_PAYLOAD_LIMIT:
                self.keep_alive = False
                self.error(413, "RequestEntityTooLargeException", "event payload over 256 KiB")
                return
            self.event_body += data
        elif self.body_buffer is not None:
            self.body_buffer.append(data)
            self.buffered += len(data)
            if self.buffered > BUFFER_LIMIT:
                self.proto.update_reading()

    def on_request_complete(self) -> None:
        self.body_done = True
        if self.finished:
            return
        if self.conn is not None:
            self.end_body()
        elif self.event_body is not None and self.entry is not None:
            self.submit_event()

    def submit_event(self) -> None:
        entry = self.entry
        invoker = self.proto.ctx.invoker
        assert entry is not None
        assert self.event_body is not None
        if invoker is None:
            self.error(400, "InvalidParameterValueException", "asynchronous invocation is off")
            return
        try:
            request_id = invoker.submit(entry.key, bytes(self.event_body))
        except async_invoke.QueueFullError:
            self.error(
                429, "TooManyRequestsException", "the event queue is full", b"Retry-After: 1\r\n"
            )
            return
        body = json.dumps({"requestId": request_id}).encode()
        extra = b"Kfn-Request-Id: %s\r\n" % request_id.encode()
        self.respond(202, b"application/json", body, extra)

    # --- response side (upstream.ResponseSink) ----------------------------------------

    def on_interim(self, status: int, reason: bytes, headers: bytes) -> None:
        if not self.finished and self.http11:
            self.proto.buffer(b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, reason, headers))

    def on_response_head(
        self, status: int, reason: bytes, headers: bytes, length_known: bool
    ) -> None:
        if self.finished:
            return
        if status in (429, 503) and self.replay is not None and self.request_sent:
            lower = headers.lower()
            if b"retry-after:" in lower and b"kfn-function-error:" not in lower:
                # Maybe the runtime refusing without starting: hold it until the body says.
                self.held = (status, reason, headers, bytearray())
                return
        self._forward_head(status, reason, headers, length_known)

    def _forward_head(self, status: int, reason: bytes, headers: bytes, length_known: bool) -> None:
        self.status = status
        self.response_started = True
        parts: list[bytes] = [b"HTTP/1.1 %d %s\r\n" % (status, reason), headers]
        if self.invoke:
            parts += (b"Kfn-Request-Id: ", self.request_id, b"\r\n")
        if not length_known:
            if self.http11:
                parts.append(b"Transfer-Encoding: chunked\r\n")
                self.chunked_out = True
            else:
                self.keep_alive = False
        if not self.keep_alive or self.proto.ctx.draining:
            self.keep_alive = False
            parts.append(b"Connection: close\r\n")
        parts.append(b"\r\n")
        self.proto.buffer(b"".join(parts))

    def on_response_body(self, data: bytes) -> None:
        if self.finished:
            return
        held = self.held
        if held is not None:
            held[3].extend(data)
            if len(held[3]) > _REFUSAL_LIMIT:
                self._release_held(length_known=False)
            return
        if self.chunked_out:
            self.proto.buffer(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.proto.buffer(data)

    def on_response_complete(self, reusable: bool) -> None:
        if self.finished:
            return
        held = self.held
        if held is not None:
            if _not_started(held[3], invoke=self.invoke):
                self._retry_elsewhere(reusable)
                return
            self._release_held(length_known=True)
        if self.chunked_out:
            self.proto.buffer(b"0\r\n\r\n")
        conn, self.conn = self.conn, None
        if conn is not None:
            endpoint = conn.endpoint
            if reusable and self.request_sent:
                endpoint.put_idle(conn)
            else:
                conn.abort()
        self.complete(self.status)

    def on_upstream_lost(self, exc: BaseException | None) -> None:
        if self.finished:
            return
        if self.held is not None:
            self._release_held(length_known=False)
        self.conn = None
        if self.response_started:
            self.proto.abort()
            self.complete(502)
        else:
            self.keep_alive = self.keep_alive and self.body_done
            self.error(502, "ServiceException", "the function's connection closed early")

    def _release_held(self, *, length_known: bool) -> None:
        """Not a refusal after all: pass the held response on."""
        held, self.held = self.held, None
        assert held is not None
        status, reason, headers, body = held
        self._forward_head(
            status, reason, headers, length_known or b"content-length:" in headers.lower()
        )
        if body:
            self.on_response_body(bytes(body))

    def _retry_elsewhere(self, reusable: bool) -> None:
        """The runtime refused without starting the request: send it again, shortly.

        The slot goes back first, so a pod that is busy or draining is chosen only
        when nothing better is free; the short, growing pause keeps two activators
        sharing one busy pod from spinning. The request's own timer still bounds it.
        """
        self.held = None
        entry = self.entry
        assert entry is not None
        conn, self.conn = self.conn, None
        if conn is not None:
            if reusable:
                conn.endpoint.put_idle(conn)
            else:
                conn.abort()
        if self.endpoint is not None:
            entry.throttler.release(self.endpoint)
            self.endpoint = None
        self.retries += 1
        entry.metrics.retried()
        delay = min(0.002 * 2**self.retries, 0.1)
        self.proto.loop.call_later(delay, self._acquire_again)

    def _acquire_again(self) -> None:
        if self.finished:
            return
        entry = self.entry
        assert entry is not None
        self.acquire(entry)

    def queue_full(self) -> None:
        """Past the function's queue bound: refused at once, with a hint when to come back."""
        self.error(
            503,
            "TooManyRequestsException",
            "the function's queue is full",
            b"Retry-After: 1\r\n",
        )

    def acquire(self, entry: FunctionEntry) -> None:
        """A pod with capacity now, or a place in the function's bounded queue."""
        endpoint = entry.throttler.try_acquire()
        if endpoint is not None:
            self.with_endpoint(endpoint)
            return
        try:
            waiter = entry.throttler.wait()
        except throttler.QueueFullError:
            self.queue_full()
            return
        self.waiter = waiter
        waiter.add_done_callback(self.on_endpoint)

    def on_upstream_pause(self, paused: bool) -> None:
        self.upstream_paused = paused
        self.proto.update_reading()

    def flush(self) -> None:
        self.proto.flush()

    # --- ending -------------------------------------------------------------------------

    def on_timeout(self) -> None:
        self.timer = None
        if self.finished:
            return
        entry = self.entry
        assert entry is not None
        if self.conn is not None:
            self.conn.abort()
            self.conn = None
        if self.response_started:
            self.proto.abort()
            self.complete(504)
            return
        self.error(
            504,
            "TimeoutError",
            f"Task timed out after {entry.limits.timeout_ms / 1000:.2f} seconds",
        )

    def client_gone(self) -> None:
        """The client closed its connection: abandon the request."""
        if self.finished:
            return
        if self.conn is not None:
            self.conn.abort()
            self.conn = None
        self.complete(499, notify=False)

    def error(self, status: int, error_type: str, message: str, extra: bytes = b"") -> None:
        """Answer in Lambda's error shape, unless the response has begun (then abort)."""
        if self.response_started:
            self.proto.abort()
            self.complete(status)
            return
        body = json.dumps({"errorType": error_type, "errorMessage": message}).encode()
        self.respond(status, b"application/json", body, extra)

    def respond(self, status: int, content_type: bytes, body: bytes, extra: bytes = b"") -> None:
        """Answer from the activator itself."""
        if self.conn is not None:
            self.conn.abort()
            self.conn = None
        if not self.body_done:
            # The rest of the request body will not be read: the connection must close.
            self.keep_alive = False
        self.response_started = True
        reason = _REASONS.get(status, b"OK")
        connection = (
            b"" if self.keep_alive and not self.proto.ctx.draining else b"Connection: close\r\n"
        )
        if connection:
            self.keep_alive = False
        self.proto.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n%s"
            % (status, reason, content_type, len(body), extra, connection, body)
        )
        self.complete(status)

    def complete(self, status: int, *, notify: bool = True) -> None:
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        entry = self.entry
        if entry is not None:
            if self.waiter is not None:
                if not self.waiter.done():
                    entry.throttler.cancel(self.waiter)
                self.waiter = None
            if self.endpoint is not None:
                entry.throttler.release(self.endpoint)
                self.endpoint = None
            entry.metrics.observe_request(status, time.perf_counter() - self.started)
        if notify:
            self.proto.exchange_done(self)


def _not_started(body: bytearray, *, invoke: bool) -> bool:
    """Whether a held 429/503 is the runtime's refusal of a request it never started."""
    if invoke:
        return any(marker in body for marker in _REFUSAL_TYPES)
    try:
        return json.loads(body) in _REFUSAL_BODIES
    except ValueError:
        return False


class ClientProtocol(asyncio.Protocol):
    """One client connection: parses requests and runs their exchanges in order."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.exchanges: collections.deque[Exchange] = collections.deque()
        self.parsing: Exchange | None = None
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
        exchanges, self.exchanges = self.exchanges, collections.deque()
        for exchange in exchanges:
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
        exchange = Exchange(self)
        self.parsing = exchange
        self.exchanges.append(exchange)

    def on_url(self, url: bytes) -> None:
        assert self.parsing is not None
        self.parsing.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.parsing is not None
        self.parsing.on_header(name, value)

    def on_headers_complete(self) -> None:
        exchange = self.parsing
        assert exchange is not None
        parser = self.parser
        exchange.method = parser.get_method()
        exchange.keep_alive = parser.should_keep_alive()
        exchange.http11 = parser.get_http_version() == "1.1"
        exchange.head_done = True
        if exchange.content_length <= 0 and not exchange.chunked_in:
            exchange.body_done = True
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

    def exchange_done(self, exchange: Exchange) -> None:
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
                current.conn is None and not current.finished and current.buffered > BUFFER_LIMIT
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
        body = json.dumps(
            {"errorType": "InvalidRequestContentException", "errorMessage": message}
        ).encode()
        self.write(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.close()

    def drain(self) -> None:
        """Shutting down: close now if idle, else after the current response."""
        if not self.exchanges:
            self.close()
