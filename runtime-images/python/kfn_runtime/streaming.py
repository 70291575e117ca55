"""Streamed responses: a handler whose result is a generator or another iterator.

A handler streams when what it returns is an iterator: a generator function (``def`` or
``async def`` with ``yield``), or a plain handler returning an iterator or an async iterator.
Its items are the body, each written as one HTTP/1.1 chunk as soon as it is produced; the
first item may be a dict, the *prelude* (``statusCode``, ``headers``, ``cookies``), which
sets the status and headers of an HTTP event's answer. Anything that is not an iterator is
answered as before (CONTRACT.md §12).

Flow control: the next item is asked for only once the previous one was handed to the
socket and the socket's buffer drained below its high-water mark, so a slow reader slows the
handler and the runtime holds at most one item beyond the socket's buffer. A sync iterator
is advanced in the handler thread pool (its items may block); an async one on the loop.

The handler's deadline covers the whole stream. An error or the deadline after the head went
out cannot change the status any more: the stream ends with trailers carrying the error
(``Kfn-Function-Error``, ``Kfn-Error-Type``, ``Kfn-Error-Body``: the error shape as base64
JSON), as Lambda's runtime API reports a streamed response's failure. Every chunked stream's
last chunk also carries ``Kfn-Handler-Duration``, the handler's time up to the stream's end.
"""

from __future__ import annotations

import asyncio
import base64
import collections.abc
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import json
from collections.abc import Callable
from typing import Any

from kfn_runtime import errors, events, http11

#: A streamed answer's default content type, as Lambda's.
DEFAULT_CONTENT_TYPE = "application/octet-stream"
#: The trailers that end a stream whose handler failed after the head went out.
ERROR_TRAILERS = ("Kfn-Function-Error", "Kfn-Error-Type", "Kfn-Error-Body")
#: The trailer every chunked stream ends with: the handler's time in seconds.
DURATION_TRAILER = "Kfn-Handler-Duration"
#: What the head's ``Trailer`` announces.
TRAILERS = (*ERROR_TRAILERS, DURATION_TRAILER)
INVALID_ITEM = "Runtime.InvalidStreamItem"

_END = object()


def is_stream(result: object) -> bool:
    """Whether a handler's result is streamed: an iterator or an async iterator.

    Strings, bytes, lists and dicts are iterable but not iterators, so they keep their
    meaning; a generator, a file object or ``iter(...)`` streams.
    """
    return isinstance(result, collections.abc.Iterator | collections.abc.AsyncIterator)


def to_bytes(item: object) -> bytes:
    """One body item as bytes: bytes-like as they are, ``str`` as UTF-8."""
    if isinstance(item, bytes):
        return item
    if isinstance(item, bytearray | memoryview):
        return bytes(item)
    if isinstance(item, str):
        return item.encode("utf-8")
    raise TypeError(f"a streamed item is bytes or str, got {type(item).__name__}")


@dataclasses.dataclass(frozen=True)
class Head:
    status: int
    headers: list[tuple[str, str]]


def head_from(prelude: dict[Any, Any] | None, http_event: bool) -> Head:
    """The head of a streamed answer: an HTTP event's from its prelude (status 200 and
    ``application/octet-stream`` by default); the invoke path's is always 200, with the
    prelude's content type if it names one (the prelude itself is never part of the body).
    Raises :class:`events.InvalidResultError` for a malformed prelude."""
    if prelude is None:
        return Head(200, [("Content-Type", DEFAULT_CONTENT_TYPE)])
    response = events.stream_head(prelude, DEFAULT_CONTENT_TYPE)
    if http_event:
        return Head(response.status, response.headers)
    content_type = next(
        (value for name, value in response.headers if name.lower() == "content-type"),
        DEFAULT_CONTENT_TYPE,
    )
    return Head(200, [("Content-Type", content_type)])


class Source:
    """Pulls a streaming result's items within the deadline, one at a time.

    ``release`` is called once no pull is running any more: at once when the stream ended
    normally, or when a sync pull stuck past the deadline finally returns (its thread cannot
    be stopped, so the invocation's concurrency slot stays taken until then).
    """

    def __init__(
        self,
        result: Any,
        *,
        pool: concurrent.futures.Executor,
        ctx: contextvars.Context,
        release: Callable[[], None],
    ) -> None:
        self._iterator = result
        self._async = isinstance(result, collections.abc.AsyncIterator)
        self._pool = pool
        self._ctx = ctx
        self._release = release
        self._pending: asyncio.Future[Any] | None = None

    async def pull(self, timeout_s: float) -> Any:
        """The next item, :data:`_END` at the end; raises what the iterator raised, or
        :class:`TimeoutError` past ``timeout_s``."""
        loop = asyncio.get_running_loop()
        if self._async:
            pending: asyncio.Future[Any] = loop.create_task(
                _anext(self._iterator), context=self._ctx
            )
        else:
            pending = loop.run_in_executor(self._pool, self._ctx.run, _next, self._iterator)
        self._pending = pending
        done, _ = await asyncio.wait({pending}, timeout=max(0.0, timeout_s))
        if pending not in done:
            raise TimeoutError
        self._pending = None
        return pending.result()

    def close(self) -> None:
        """Stop the iterator (its ``finally`` blocks run), then release; a pull still
        running is cancelled (async) or left to finish in its thread (sync)."""
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.cancel()  # an async pull stops; a thread's runs on
            if not self._async:
                pending.add_done_callback(lambda _f: self._finish_sync())
                return
        if self._async:
            closing = getattr(self._iterator, "aclose", None)
            if closing is not None:
                task = asyncio.get_running_loop().create_task(
                    _quietly(closing()), context=self._ctx
                )
                task.add_done_callback(lambda _f: self._release())
                return
            self._release()
            return
        self._finish_sync()

    def _finish_sync(self) -> None:
        closing = getattr(self._iterator, "close", None)
        if closing is not None:
            with contextlib.suppress(Exception):
                self._ctx.run(closing)
        self._release()


def _next(iterator: collections.abc.Iterator[Any]) -> Any:
    # StopIteration cannot leave a future: it turns into the end marker here.
    return next(iterator, _END)


async def _anext(iterator: collections.abc.AsyncIterator[Any]) -> Any:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return _END


async def _quietly(awaitable: collections.abc.Awaitable[Any]) -> None:
    with contextlib.suppress(Exception):
        await awaitable


@dataclasses.dataclass
class Ended:
    """How a stream ended. ``error`` with ``head_sent`` False is answered as a normal error."""

    head_sent: bool = False
    error: errors.ErrorShape | None = None
    timed_out: bool = False
    #: The client went away (or the connection broke): the connection cannot be reused.
    broken: bool = False
    keep_alive: bool = True
    #: The handler's time as the last chunk's trailer said it (None: no trailer was sent).
    duration_s: float | None = None


async def send(
    source: Source,
    writer: asyncio.StreamWriter,
    *,
    http_event: bool,
    extra_headers: list[tuple[str, str]],
    keep_alive: bool,
    head_only: bool,
    remaining_s: Callable[[], float],
    timeout_shape: errors.ErrorShape,
    http10: bool = False,
    elapsed_s: Callable[[], float] | None = None,
) -> Ended:
    """Writes the stream: the head at the first body item (or at the end), then each item as a
    chunk, then the last chunk, or error trailers after a failure. Every pull and every wait
    for the socket to drain is bounded by what is left of the deadline. An HTTP/1.0 client
    gets the pieces as they are and the connection's end; a failure resets the connection.
    ``elapsed_s``: the handler's time so far, sent as the last chunk's ``Kfn-Handler-Duration``
    trailer."""
    answer = _Answer(writer, http_event, extra_headers, keep_alive and not http10, head_only)
    answer.chunked = not http10
    ended = answer.ended
    try:
        await _pump(source, answer, remaining_s, timeout_shape)
        if ended.error is None and not ended.head_sent:
            answer.write_head()
        if ended.head_sent and not head_only and answer.chunked:
            trailers = _trailers(ended.error)
            if elapsed_s is not None:
                ended.duration_s = elapsed_s()
                trailers.append((DURATION_TRAILER, f"{ended.duration_s:.6f}"))
            writer.write(http11.last_chunk(trailers))
            await _drained(writer, remaining_s() + 1.0)
        elif ended.head_sent and ended.error is not None and not head_only:
            writer.transport.abort()  # HTTP/1.0: a reset is the only way to tell
            ended.broken = True
    except TimeoutError:
        # The reader did not take the bytes within the deadline: the connection is cut.
        ended.timed_out = ended.broken = True
        ended.error = ended.error or timeout_shape
        ended.keep_alive = False
    except ConnectionError:
        ended.broken = True
        ended.keep_alive = False
    finally:
        source.close()
    return ended


class _Answer:
    """The answer being written: its prelude until the head goes out, then the head."""

    def __init__(
        self,
        writer: asyncio.StreamWriter,
        http_event: bool,
        extra_headers: list[tuple[str, str]],
        keep_alive: bool,
        head_only: bool,
    ) -> None:
        self.writer = writer
        self.http_event = http_event
        self.extra_headers = extra_headers
        self.head_only = head_only
        self.prelude: dict[Any, Any] | None = None
        self.ended = Ended(keep_alive=keep_alive)
        #: Chunked (HTTP/1.1), or the body as it is up to the connection's end (HTTP/1.0).
        self.chunked = True

    def write_head(self) -> bool:
        """Writes the head from the prelude; False (and the error noted) if it is malformed."""
        try:
            head = head_from(self.prelude, self.http_event)
        except events.InvalidResultError as exc:
            self.ended.error = errors.shape(errors.INVALID_RESPONSE, str(exc))
            return False
        headers = [*head.headers, *self.extra_headers]
        if self.chunked and not self.head_only:
            headers.append(("Trailer", ", ".join(TRAILERS)))
        self.writer.write(
            http11.render_stream_head(
                head.status, headers, keep_alive=self.ended.keep_alive, chunked=self.chunked
            )
        )
        self.ended.head_sent = True
        return True


async def _pump(
    source: Source,
    answer: _Answer,
    remaining_s: Callable[[], float],
    timeout_shape: errors.ErrorShape,
) -> None:
    """Moves items from the source to the socket until the end, an error or the deadline
    (noted on ``answer.ended``). HEAD: only the head, once the first item came."""
    ended = answer.ended
    first = True
    while True:
        try:
            item = await source.pull(remaining_s())
        except TimeoutError:
            ended.timed_out = True
            ended.error = timeout_shape
            return
        except Exception as exc:
            ended.error = errors.from_exception(exc)
            return
        if item is _END:
            return
        if first and isinstance(item, dict):
            first = False
            answer.prelude = item
            continue
        first = False
        try:
            data = to_bytes(item)
        except TypeError as exc:
            ended.error = errors.shape(INVALID_ITEM, str(exc))
            return
        if not ended.head_sent and (not answer.write_head() or answer.head_only):
            return
        if data:
            answer.writer.write(http11.chunk(data) if answer.chunked else data)
        await _drained(answer.writer, remaining_s())


def _trailers(error: errors.ErrorShape | None) -> list[tuple[str, str]]:
    if error is None:
        return []
    body = base64.b64encode(json.dumps(error).encode("utf-8")).decode("ascii")
    return [
        ("Kfn-Function-Error", "Unhandled"),
        ("Kfn-Error-Type", error["errorType"]),
        ("Kfn-Error-Body", body),
    ]


async def _drained(writer: asyncio.StreamWriter, timeout_s: float) -> None:
    """Waits until the socket's buffer is below its high-water mark: the backpressure."""
    if writer.transport.is_closing():
        raise ConnectionResetError("the client closed the connection")
    async with asyncio.timeout(max(0.0, timeout_s)):
        await writer.drain()
