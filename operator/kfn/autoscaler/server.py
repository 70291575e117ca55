"""The autoscaler's HTTP endpoint: ``POST /stats`` with a :mod:`kfn.stats` message.

Small by design: a keep-alive HTTP/1.1 server over ``asyncio.Protocol`` and
httptools, answering 204 for an accepted message, 400 for one that does not
decode, 404/405 elsewhere. Bodies are bounded (a message is small).

With a :class:`Gate` (:class:`kfn.autoscaler.callers.Callers` in a cluster) a message is
taken only from a sender the gate lets in: 401 or 403 otherwise, and 503 when the gate could
not tell (the API server did not answer). Every refusal is a JSON ``{"message": ...}`` that
says what to send. A sender whose token's review is kept is answered at once; otherwise the
connection stops reading until the review is in, and answers keep the requests' order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import typing
from collections.abc import Callable, Coroutine
from typing import Any, Final, Protocol

import httptools

from kfn import stats
from kfn.autoscaler import callers, metrics

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
#: A refusal of the same kind is logged at most this often (seconds).
LOG_EVERY: Final = 60.0

Receiver = Callable[[stats.StatMessage], Coroutine[Any, Any, None]]

_REASONS: Final = {
    204: b"No Content",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Content Too Large",
    503: b"Service Unavailable",
}


class Gate(Protocol):
    """Who may send stats, from a request's ``Authorization`` header."""

    def cached(self, authorization: bytes) -> callers.Verdict | None:
        """The verdict without waiting, or None when it must be asked for."""

    async def decide(self, authorization: bytes) -> callers.Verdict: ...


@dataclasses.dataclass(frozen=True, slots=True)
class _Request:
    keep_alive: bool
    too_large: bool
    body: bytes
    authorization: bytes


class _Refusals:
    """Logs refusals, each kind at most once per :data:`LOG_EVERY` (senders retry every
    second; someone trying tokens may retry far more often)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.last: dict[tuple[int, str], float] = {}
        self.quiet = 0

    def note(self, verdict: callers.Verdict, peer: object) -> None:
        now = self.clock()
        kind = (verdict.status, verdict.message)
        if now - self.last.get(kind, float("-inf")) < LOG_EVERY:
            self.quiet += 1
            return
        if len(self.last) > 256:
            self.last.clear()
        self.last[kind] = now
        logger.warning(
            "refused stats from %s: %d %s (%d refusals not logged)",
            peer, verdict.status, verdict.message, self.quiet,
        )  # fmt: skip
        self.quiet = 0


class _StatsProtocol(asyncio.Protocol):
    def __init__(self, receiver: Receiver, gate: Gate | None, refusals: _Refusals) -> None:
        self._receiver = receiver
        self._gate = gate
        self._refusals = refusals
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body = bytearray()
        self._too_large = False
        self._authorization = b""
        self._tasks: set[asyncio.Task[None]] = set()
        #: The request waiting for its gate's verdict; later ones are answered after it.
        self._waiting: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport.
        self._transport = typing.cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiting is not None:
            self._waiting.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._reply(400, "malformed request", close=True)

    def on_url(self, url: bytes) -> None:
        self._url = url

    def on_message_begin(self) -> None:
        self._url = b""
        self._body = bytearray()
        self._too_large = False
        self._authorization = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization":
            self._authorization = value

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
            self._in_order(lambda: self._reply(404, "not found", close=not keep_alive))
            return
        if method != b"POST":
            self._in_order(lambda: self._reply(405, "method not allowed", close=not keep_alive))
            return
        request = _Request(keep_alive, self._too_large, bytes(self._body), self._authorization)
        if self._gate is None:
            self._in_order(lambda: self._take(request, callers.ACCEPTED))
            return
        verdict = self._gate.cached(request.authorization) if self._waiting is None else None
        if verdict is not None:
            self._take(request, verdict)
            return
        self._later(lambda: self._decided(request))

    def _in_order(self, answer: Callable[[], None]) -> None:
        """Answers now, or after the request waiting for its verdict."""
        if self._waiting is None:
            answer()
            return

        async def after() -> None:
            answer()

        self._later(after)

    def _later(self, step: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Runs ``step`` after the request waiting before it; reading stops meanwhile."""
        previous = self._waiting

        async def chained() -> None:
            if previous is not None:
                # Waits for it to end however it ends; this task's own cancellation
                # (the connection closed) still ends this one.
                await asyncio.wait({previous})
            await step()

        task = asyncio.get_running_loop().create_task(chained())
        self._waiting = task
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()
        task.add_done_callback(self._step_done)

    def _step_done(self, task: asyncio.Task[None]) -> None:
        if self._waiting is not task:
            return
        self._waiting = None
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()
        if not task.cancelled() and task.exception() is not None:
            logger.error("answering a stats request failed", exc_info=task.exception())

    async def _decided(self, request: _Request) -> None:
        assert self._gate is not None
        self._take(request, await self._gate.decide(request.authorization))

    def _take(self, request: _Request, verdict: callers.Verdict) -> None:
        """Answers a stats request the gate judged, and hands an accepted message on."""
        close = not request.keep_alive
        if not verdict.accepted:
            metrics.message("rejected")
            peer = self._transport.get_extra_info("peername") if self._transport else None
            self._refusals.note(verdict, peer)
            self._reply(verdict.status, verdict.message, close=close)
            return
        if request.too_large:
            metrics.message("rejected")
            self._reply(413, "message too large", close=True)
            return
        try:
            message = stats.decode(request.body)
        except stats.StatsError as exc:
            metrics.message("rejected")
            self._reply(400, str(exc), close=close)
            return
        metrics.message("accepted")
        task = asyncio.get_running_loop().create_task(self._receiver(message))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        self._reply(204, "", close=close)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("handling a stats message failed", exc_info=task.exception())

    def _reply(self, status: int, message: str, *, close: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        head = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))
        body = b""
        if status != 204:
            body = json.dumps({"message": message}).encode()
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        if status == 401:
            head += b'WWW-Authenticate: Bearer realm="kfn-stats"\r\n'
        if status == 503:
            head += b"Retry-After: 1\r\n"
        if close:
            head += b"Connection: close\r\n"
        transport.write(head + b"\r\n" + body)
        if close:
            transport.close()


async def serve(
    receiver: Receiver, host: str = "127.0.0.1", port: int = 8090, *, gate: Gate | None = None
) -> asyncio.base_events.Server:
    """Start the endpoint; the caller closes the returned server. Without ``gate`` every
    sender is taken (``--stats-auth=none``)."""
    loop = asyncio.get_running_loop()
    refusals = _Refusals()
    return await loop.create_server(lambda: _StatsProtocol(receiver, gate, refusals), host, port)
