"""The runtime's HTTP server: routing, concurrency, time-outs, draining.

One asyncio event loop serves every connection. Sync handlers run in a thread pool sized to the
function's concurrency, so a blocking handler never stalls the loop (health probes keep answering);
``async def`` handlers run as tasks on the loop.

Time-outs: an ``async def`` handler past its deadline is cancelled. A sync handler cannot be killed
in Python, so the runtime answers 504 at the deadline and keeps the handler's concurrency slot taken
until it returns; the pool never runs more than ``KFN_CONCURRENCY`` handlers, and a pod whose every
slot is stuck turns unready and then not live (see :mod:`kfn_runtime.health`). We do not exit the
process on a time-out as Lambda does, because with concurrency above one that would kill other
invocations in flight, and a restart costs a cold start for every request that follows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import inspect
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from kfn_runtime import (
    config,
    context,
    errors,
    events,
    health,
    http11,
    layers,
    loader,
    logs,
    pool,
    streaming,
    timing,
)

READY_PATH = "/_kfn/ready"
STARTED_PATH = "/_kfn/started"
LIVE_PATH = "/_kfn/live"
INVOKE_PATH = "/_kfn/invoke"
SPECIALISE_PATH = "/_kfn/specialise"
RESERVED_PREFIX = "/_kfn/"

_JSON = ("Content-Type", "application/json")
_UNHANDLED = ("Kfn-Function-Error", "Unhandled")
#: Marks a 429/503 for a request whose handler was never called (CONTRACT.md §3).
_BUSY = ("Kfn-Not-Started", "busy")
_DRAINING = ("Kfn-Not-Started", "draining")
#: A pool pod (CONTRACT.md §13) that has no function yet, or never will.
_IDLE = ("Kfn-Not-Started", "idle")
_SPENT = ("Kfn-Not-Started", "spent")
#: The handler's own time in seconds, on every answer of an invocation whose handler ran.
HANDLER_DURATION_HEADER = "Kfn-Handler-Duration"

#: "streamed": the answer was written as the handler produced it (:mod:`kfn_runtime.streaming`).
Kind = Literal[
    "ok", "error", "timeout", "init_error", "busy", "draining", "idle", "spent", "streamed"
]

#: Writes a streaming result as its answer: given the source, the seconds left to the
#: deadline, the time-out's error shape, and the seconds the handler has run so far.
Streamer = Callable[
    [streaming.Source, Callable[[], float], errors.ErrorShape, Callable[[], float]],
    Awaitable[streaming.Ended],
]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How an invocation ended: a result, or an error shape and why; a streamed one carries
    its :class:`streaming.Ended` as ``result`` (and its error, if it failed midway).
    ``duration_s``: the handler's time, when it ran (the REPORT line's Duration)."""

    kind: Kind
    result: Any = None
    error: errors.ErrorShape | None = None
    duration_s: float | None = None


def duration_header(duration_s: float) -> tuple[str, str]:
    """``Kfn-Handler-Duration: <seconds>``, to the microsecond."""
    return (HANDLER_DURATION_HEADER, f"{duration_s:.6f}")


def _ran(outcome: Outcome) -> list[tuple[str, str]]:
    return [] if outcome.duration_s is None else [duration_header(outcome.duration_s)]


def timeout_from(header: str | None, default_ms: int) -> int:
    """The invocation's time budget in ms: ``Kfn-Timeout-Ms`` when the caller sent a positive
    one, never more than the function's ``KFN_TIMEOUT_MS`` (a caller cannot stretch a
    function's time), else ``KFN_TIMEOUT_MS``. It counts from the handler's start (§3)."""
    if header and header.strip().isdigit() and int(header) > 0:
        return min(int(header), default_ms)
    return default_ms


def invoke_response(outcome: Outcome) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body answering ``POST /_kfn/invoke``."""
    if outcome.kind == "ok":
        try:
            body = json.dumps(outcome.result, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            shape = errors.shape(errors.MARSHAL_ERROR, f"Unable to marshal response: {exc}")
            return 500, [_JSON, _UNHANDLED, *_ran(outcome)], _dump(shape)
        if len(body) > config.MAX_PAYLOAD_BYTES:
            return 502, [_JSON, _UNHANDLED, *_ran(outcome)], _dump(_too_large_response(len(body)))
        return 200, [_JSON, *_ran(outcome)], body
    error = outcome.error or errors.shape("Unknown", "unknown error")
    status, extra = {
        "error": (500, [_UNHANDLED]),
        "timeout": (504, [_UNHANDLED]),
        "init_error": (502, [_UNHANDLED]),
        "busy": (429, [("Retry-After", "1"), _BUSY]),
        "draining": (503, [("Retry-After", "1"), _DRAINING]),
        "idle": (503, [("Retry-After", "1"), _IDLE]),
        "spent": (410, [_SPENT]),
    }[outcome.kind]
    return status, [_JSON, *extra, *_ran(outcome)], _dump(error)


def http_response(
    outcome: Outcome, payload_format: str = events.V2
) -> tuple[int, list[tuple[str, str]], bytes, str | None]:
    """Status, headers, body answering an HTTP event, and an error to log if the result was bad.

    Errors are answered as API Gateway does, ``{"message": ...}``, never with a stack trace: HTTP
    callers are end users. The detail goes to the function's log. A failed function's message is
    its payload format's service's (:data:`events.FAILURE_MESSAGES`).
    """
    failed = events.FAILURE_MESSAGES[payload_format]
    if outcome.kind == "ok":
        try:
            response = events.from_result(outcome.result, payload_format)
        except (events.InvalidResultError, TypeError, ValueError, RecursionError) as exc:
            status, headers, body = _gateway(502, failed, function_error=True)
            return status, headers + _ran(outcome), body, f"{errors.INVALID_RESPONSE}: {exc}"
        if len(response.body) > config.MAX_PAYLOAD_BYTES:
            status, headers, body = _gateway(502, failed, function_error=True)
            problem = _too_large_response(len(response.body))["errorMessage"]
            return status, headers + _ran(outcome), body, problem
        return response.status, response.headers + _ran(outcome), response.body, None
    status, headers, body = {
        "error": _gateway(502, failed, function_error=True),
        "init_error": _gateway(502, failed, function_error=True),
        "timeout": _gateway(504, "Endpoint request timed out", function_error=True),
        "busy": _gateway(429, "Too Many Requests", not_started=_BUSY),
        "draining": _gateway(503, "Service Unavailable", not_started=_DRAINING),
        "idle": _gateway(503, "Service Unavailable", not_started=_IDLE),
        "spent": _gateway(410, "Gone", not_started=_SPENT),
    }[outcome.kind]
    return status, headers + _ran(outcome), body, None


def _gateway(
    status: int,
    message: str,
    *,
    function_error: bool = False,
    not_started: tuple[str, str] | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [_JSON]
    if function_error:
        headers.append(_UNHANDLED)
    if not_started is not None:
        headers += [("Retry-After", "1"), not_started]
    return status, headers, _dump({"message": message})


def _too_large_response(size: int) -> errors.ErrorShape:
    return errors.shape(
        errors.RESPONSE_TOO_LARGE,
        f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
        f"({config.MAX_PAYLOAD_BYTES} bytes).",
    )


def _dump(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


#: A pool pod's state until it is a function (then None): waiting for ``/_kfn/specialise``,
#: taking its layers, or refused them (never a function then).
PoolState = Literal["idle", "specialising", "spent"]


class Runtime:
    """One function's server. ``serve`` returns the process exit code.

    With ``pool`` (CONTRACT.md §13) it serves with no function until ``/_kfn/specialise``
    gives it one: ``cfg`` is then the pod's own (where to listen), and the function's is read
    at specialisation, as :func:`configure` reads it at a normal start.
    """

    def __init__(
        self,
        cfg: config.Config,
        out: logs.TaggingStream,
        clock: Callable[[], float] = time.time,
        *,
        pool: bool = False,
    ) -> None:
        self.cfg = cfg
        self._pool_mode = pool
        self._pool_state: PoolState | None = "idle" if pool else None
        self._init_task: asyncio.Task[None] | None = None
        self._out = out
        self._clock = clock
        self._handler: Callable[..., Any] | None = None
        self._is_async = False
        self._init_error: errors.ErrorShape | None = None
        self._init_done = asyncio.Event()
        self._init_duration_ms: float | None = None
        #: ``Kfn-Init-Timing``'s value once loading ended.
        self._init_timing: str | None = None
        self._slots: dict[int, int] = {}
        self._slot_ids = 0
        self._answering = 0
        self._draining = False
        self._drain_requested = asyncio.Event()
        self._drained = asyncio.Event()
        self._connections: set[asyncio.StreamWriter] = set()
        self._threads = _handler_threads(cfg)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # ---- lifecycle -------------------------------------------------------------------------

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        server = await asyncio.start_server(
            self._connection, self.cfg.host, self.cfg.port, limit=http11.STREAM_LIMIT
        )
        port = server.sockets[0].getsockname()[1]
        listening = f"kfn runtime: python listening on {self.cfg.host or '*'}:{port}, "
        if self._pool_mode:
            self._out.raw_write(listening + "a pool pod waiting to be specialised\n")
        else:
            self._out.raw_write(listening + self._function_summary())
            self._init_task = asyncio.create_task(self._initialize())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.drain)
        await self._drain_requested.wait()
        bound_s = (self.cfg.timeout_ms + config.DRAIN_GRACE_MS) / 1000
        try:
            await asyncio.wait_for(self._drained.wait(), bound_s)
        except TimeoutError:
            self._out.raw_write(
                f"kfn runtime: drain bound of {bound_s:.2f} s passed with "
                f"{self._answering} request(s) unanswered\n"
            )
        server.close()
        for writer in list(self._connections):
            writer.close()
        if self._init_task is not None:
            self._init_task.cancel()
        self._out.raw_write("kfn runtime: drained, exiting\n")
        return 0

    def _function_summary(self) -> str:
        return (
            f"handler {self.cfg.handler}, concurrency {self.cfg.concurrency}, "
            f"timeout {self.cfg.timeout_ms} ms\n"
        )

    def drain(self) -> None:
        """Stops taking work: readiness fails at once, in-flight requests finish, then exit."""
        if self._draining:
            return
        self._draining = True
        self._out.raw_write(f"kfn runtime: draining {self._answering} in-flight request(s)\n")
        self._drain_requested.set()
        if self._answering == 0:
            self._drained.set()

    async def _initialize(self) -> None:
        """Imports the handler off the loop so that liveness answers during a slow import.

        The import gets ``KFN_INIT_TIMEOUT_MS``; past it, loading counts as failed with
        ``Runtime.InitTimeout`` (answered at once, like any init error) while the import runs on
        in its daemon thread, unable to be stopped, its result ignored.
        """
        started = self._clock()
        process_start = timing.read_process_start()
        # Kfn-Init-Timing's boot: the runtime is loaded and the handler's import begins.
        boot = time.time()
        budget_s = self.cfg.init_timeout_ms / 1000
        imported: float | None = None
        try:
            handler, imported = await asyncio.wait_for(_load_in_thread(self.cfg.handler), budget_s)
        except TimeoutError:
            shape = errors.init_timeout(self.cfg.init_timeout_ms)
            self._out.raw_write(logs.init_report_line((self._clock() - started) * 1000, "timeout"))
            self._fail_init(shape)
        except loader.InitError as exc:
            self._fail_init(exc.shape)
        else:
            self._handler = handler
            self._is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
                getattr(handler, "__call__", None)  # noqa: B004 - async __call__ of an instance
            )
        ended = self._clock()
        self._init_duration_ms = (ended - started) * 1000
        self._init_timing = timing.header_value(
            process_start, boot, ended if imported is None else imported
        )
        self._init_done.set()

    def _fail_init(self, shape: errors.ErrorShape) -> None:
        self._init_error = shape
        self._out.raw_write(
            logs.error_record(
                None, self._clock(), shape["errorType"], shape["errorMessage"], shape["stackTrace"]
            )
        )
        self._out.raw_write(errors.init_error_line(shape))

    # ---- connections -----------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        peer = writer.get_extra_info("peername")
        peer_ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        try:
            while True:
                try:
                    head = await asyncio.wait_for(http11.read_head(reader), config.IDLE_TIMEOUT_S)
                except TimeoutError:
                    break
                except http11.ProtocolError as exc:
                    await self._send(
                        writer, exc.status, [_JSON], _dump({"message": str(exc)}), False
                    )
                    break
                if head is None or not await self._request(head, reader, writer, peer_ip):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, http11.ProtocolError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        keep_alive: bool,
        *,
        head_only: bool = False,
    ) -> bool:
        keep = keep_alive and not self._draining
        writer.write(http11.render(status, headers, body, keep_alive=keep, head_only=head_only))
        await writer.drain()
        return keep

    async def _request(
        self,
        head: http11.RequestHead,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
    ) -> bool:
        """Answers one request; returns whether the connection stays open."""
        path = head.path
        if not path.startswith(RESERVED_PREFIX):
            return await self._tracked(self._http_event(head, reader, writer, peer))
        if path == INVOKE_PATH and head.method == "POST":
            return await self._tracked(self._invoke(head, reader, writer))
        if path == SPECIALISE_PATH and head.method == "POST":
            return await self._tracked(self._specialise(head, reader, writer))
        try:
            await http11.read_body(reader, writer, head, 64 * 1024)
        except http11.BodyTooLargeError:
            return await self._refuse_body(head, reader, writer, [_JSON], b"{}")
        if path in (READY_PATH, LIVE_PATH, STARTED_PATH) and head.method in ("GET", "HEAD"):
            status, headers, body = self._probe(path)
            return await self._send(
                writer, status, headers, body, head.keep_alive, head_only=head.method == "HEAD"
            )
        known = path in (READY_PATH, LIVE_PATH, STARTED_PATH, INVOKE_PATH, SPECIALISE_PATH)
        status = 405 if known else 404
        shape = errors.shape("ResourceNotFoundException", f"{head.method} {path} is not served")
        return await self._send(writer, status, [_JSON], _dump(shape), head.keep_alive)

    async def _refuse_body(
        self,
        head: http11.RequestHead,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        status: int = 413,
    ) -> bool:
        """Answers ``status`` (413) and closes; the unread body is discarded first so the client
        sees the answer.

        Closing a socket with unread input makes the kernel reset the connection, and a client
        still sending would get that reset instead of the answer. A client that asked
        ``Expect: 100-continue`` has sent nothing, so there is nothing to discard.
        """
        await self._send(writer, status, headers, body, False)
        if (head.header("expect") or "").lower() != "100-continue":
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(_discard(reader, config.MAX_DISCARD_BYTES), 5.0)
        return False

    async def _tracked(self, answer: Awaitable[bool]) -> bool:
        """Counts a request as in flight until its answer is written, for draining."""
        self._answering += 1
        try:
            return await answer
        finally:
            self._answering -= 1
            if self._draining and self._answering == 0:
                self._drained.set()

    def _probe(self, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        if path == STARTED_PATH:
            # For the kubelet's startup probe: the load has ended, loaded or not, and an init
            # error is already in the log. The pod's ``started`` turning true tells the operator
            # to look for it.
            # A pool pod has started once it listens: it loads nothing until specialised.
            started = self._init_done.is_set() or self._pool_mode
            body = _dump({"status": "started" if started else "initializing"})
            return (200 if started else 503), [_JSON, *self._timing()], body
        now = self._now_ms()
        deadlines = list(self._slots.values())
        if path == LIVE_PATH:
            verdict = health.liveness(
                deadlines_ms=deadlines,
                concurrency=self.cfg.concurrency,
                now_ms=now,
                stuck_grace_ms=self.cfg.stuck_grace_ms,
            )
        else:
            verdict = health.readiness(
                initialized=self._init_done.is_set(),
                init_failed=self._init_error is not None,
                draining=self._draining,
                deadlines_ms=deadlines,
                concurrency=self.cfg.concurrency,
                now_ms=now,
                pool_state=self._pool_state,
            )
            if self._pool_state is not None and not self._draining:
                state = (pool.HEADER, self._pool_state)
                return 503, [_JSON, state], _dump({"status": verdict.reason})
            if self._init_error is not None and not self._draining:
                init_error = (errors.INIT_ERROR_HEADER, self._init_error["errorType"])
                return 503, [_JSON, init_error, *self._timing()], _dump(self._init_error)
        return (
            (200 if verdict.ok else 503),
            [_JSON, *self._timing()],
            _dump({"status": verdict.reason}),
        )

    def _timing(self) -> list[tuple[str, str]]:
        """``Kfn-Init-Timing`` once loading ended (the probes of §2 carry it)."""
        return [] if self._init_timing is None else [(timing.HEADER, self._init_timing)]

    # ---- pool mode -------------------------------------------------------------------------

    async def _specialise(
        self, head: http11.RequestHead, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Makes a pool pod its function (CONTRACT.md §13): the layers extracted, the process's
        environment the function's, then its configuration read and its handler loaded as a
        normal start does (:func:`configure`, :meth:`_initialize`). Answers as the ready probe
        does then. A request refused past its checks leaves the pod spent."""
        if self._pool_state is None or self._pool_state == "specialising":
            message = (
                "this pod is specialised already"
                if self._pool_mode
                else "this pod is no pool pod: it runs its function from its start"
            )
            shape = errors.shape(errors.SPECIALISE_CONFLICT, message)
            return await self._refuse_body(head, reader, writer, [_JSON], _dump(shape), status=409)
        if self._pool_state == "spent":
            shape = errors.shape(errors.POOL_POD_SPENT, "this pool pod refused its layers")
            return await self._refuse_body(head, reader, writer, [_JSON], _dump(shape), status=410)
        self._pool_state = "specialising"
        pod_env = dict(os.environ)
        try:
            body = http11.BodyReader(reader, head)
            await body.start(writer)
            request = await pool.read_request(body, pool.max_layer_bytes(pod_env))
            await pool.install(body, request, layers.roots(pod_env))
            pool.replace_environ(os.environ, pool.environment(pod_env, request.env))
            self.cfg, self._out = configure(handler=request.handler)
            self._threads = _handler_threads(self.cfg)
            self._pool_state = None
        except (pool.RefusedError, http11.ProtocolError) as exc:
            return await self._refuse_specialise(head, reader, writer, exc.status, str(exc))
        except SystemExit as exc:  # a setting of the function's environment is malformed
            return await self._refuse_specialise(head, reader, writer, 400, str(exc.code))
        finally:
            if self._pool_state == "specialising":  # the client went away, or a bug
                self._pool_state = "spent"
        self._out.raw_write("kfn runtime: python specialised, " + self._function_summary())
        self._init_task = asyncio.create_task(self._initialize())
        await self._init_task
        status, headers, answer = self._probe(READY_PATH)
        if status == 200:
            answer = _dump({"specialised": True})
        return await self._send(writer, status, headers, answer, head.keep_alive)

    async def _refuse_specialise(
        self,
        head: http11.RequestHead,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        status: int,
        message: str,
    ) -> bool:
        self._pool_state = "spent"
        self._out.raw_write(f"kfn runtime: specialise refused ({status}), pod spent: {message}\n")
        error_type = errors.REQUEST_TOO_LARGE if status == 413 else errors.INVALID_LAYERS
        shape = errors.shape(error_type, message)
        return await self._refuse_body(head, reader, writer, [_JSON], _dump(shape), status=status)

    # ---- invocations -----------------------------------------------------------------------

    async def _invoke(
        self, head: http11.RequestHead, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        rid = head.header("kfn-request-id") or str(uuid.uuid4())
        ids = [("Kfn-Request-Id", rid)]
        try:
            raw = await http11.read_body(reader, writer, head, config.MAX_PAYLOAD_BYTES)
        except http11.BodyTooLargeError:
            shape = errors.shape(
                errors.REQUEST_TOO_LARGE,
                f"Request must be smaller than {config.MAX_PAYLOAD_BYTES} bytes for the "
                "InvokeFunction operation",
            )
            return await self._refuse_body(head, reader, writer, [_JSON, *ids], _dump(shape))
        try:
            event = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            shape = errors.shape(
                errors.INVALID_REQUEST_CONTENT, f"Could not parse request body into json: {exc}"
            )
            return await self._send(writer, 400, [_JSON, *ids], _dump(shape), head.keep_alive)
        tail = head.header("kfn-log-type") == "Tail"
        if tail:
            logs.capture(rid)
        try:
            outcome = await self._call(
                event,
                rid=rid,
                timeout_ms=timeout_from(head.header("kfn-timeout-ms"), self.cfg.timeout_ms),
                invocation_type=head.header("kfn-invocation-type") or "RequestResponse",
                client_context=context.parse_client_context(head.header("kfn-client-context")),
                stream=self._streamer(writer, head, ids, http_event=False),
            )
            if outcome.kind == "streamed":
                # The head went out with the first chunk: a streamed answer has no log tail.
                return bool(outcome.result.keep_alive) and not self._draining
            status, headers, body = invoke_response(outcome)
            if outcome.kind == "ok" and status != 200:
                self._log_error(rid, json.loads(body))
        finally:
            log_result = logs.release(rid) if tail else None
        if log_result is not None:
            headers = [*headers, ("Kfn-Log-Result", log_result)]
        return await self._send(writer, status, [*headers, *ids], body, head.keep_alive)

    async def _http_event(
        self,
        head: http11.RequestHead,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
    ) -> bool:
        received_ms = self._now_ms()
        rid = head.header("kfn-request-id") or str(uuid.uuid4())
        ids = [("Kfn-Request-Id", rid)]
        head_only = head.method == "HEAD"
        try:
            raw = await http11.read_body(reader, writer, head, config.MAX_PAYLOAD_BYTES)
        except http11.BodyTooLargeError:
            _, headers, body = _gateway(413, "Request Entity Too Large")
            return await self._refuse_body(head, reader, writer, [*headers, *ids], body)
        request = events.HttpRequest(
            method=head.method,
            target=head.target,
            protocol=head.protocol,
            headers=head.headers,
            body=raw,
            peer=peer,
        )
        payload_format = events.payload_format(head.header("kfn-payload-format"))
        event = events.to_event(
            request,
            request_id=rid,
            now_ms=received_ms,
            api_id=self.cfg.function_name,
            payload_format=payload_format,
            path_prefix=head.header("kfn-path-prefix") or "",
            target_group_arn=self.cfg.target_group_arn,
        )
        outcome = await self._call(
            event,
            rid=rid,
            timeout_ms=timeout_from(head.header("kfn-timeout-ms"), self.cfg.timeout_ms),
            invocation_type="RequestResponse",
            client_context=None,
            stream=self._streamer(writer, head, ids, http_event=True),
        )
        if outcome.kind == "streamed":
            return bool(outcome.result.keep_alive) and not self._draining
        status, headers, body, problem = http_response(outcome, payload_format)
        if problem is not None:
            self._log_error(rid, errors.shape(errors.INVALID_RESPONSE, problem))
        return await self._send(
            writer, status, [*headers, *ids], body, head.keep_alive, head_only=head_only
        )

    def _streamer(
        self,
        writer: asyncio.StreamWriter,
        head: http11.RequestHead,
        ids: list[tuple[str, str]],
        *,
        http_event: bool,
    ) -> Streamer:
        """How this request's answer is written if its handler's result streams."""

        async def stream(
            source: streaming.Source,
            remaining_s: Callable[[], float],
            timeout_shape: errors.ErrorShape,
            elapsed_s: Callable[[], float],
        ) -> streaming.Ended:
            return await streaming.send(
                source,
                writer,
                http_event=http_event,
                extra_headers=ids,
                keep_alive=head.keep_alive and not self._draining,
                head_only=head.method == "HEAD",
                remaining_s=remaining_s,
                timeout_shape=timeout_shape,
                http10=head.protocol == "HTTP/1.0",
                elapsed_s=elapsed_s,
            )

        return stream

    def _log_error(self, rid: str | None, shape: errors.ErrorShape) -> None:
        self._out.raw_write(
            logs.error_record(
                rid, self._clock(), shape["errorType"], shape["errorMessage"], shape["stackTrace"]
            ),
            rid,
        )

    async def _call(
        self,
        event: Any,
        *,
        rid: str,
        timeout_ms: int,
        invocation_type: str,
        client_context: context.ClientContext | None,
        stream: Streamer | None = None,
    ) -> Outcome:
        """Runs the handler once within its timeout and the concurrency limit.

        The timeout counts from the handler's start: waiting for the load (bounded by the init
        budget) is not the invocation's time, as Lambda's init phase is not. A result that
        streams (:func:`streaming.is_stream`) is written by ``stream`` within the same
        deadline, and holds its concurrency slot until the stream ended.
        """
        timeout_message = errors.timeout_message(timeout_ms)
        timeout = Outcome("timeout", error=errors.shape(errors.TIMEOUT, timeout_message))
        if self._draining:
            return Outcome(
                "draining",
                error=errors.shape(
                    errors.SERVICE_UNAVAILABLE,
                    "The runtime is shutting down; the request was not started.",
                ),
            )
        if self._pool_state == "spent":
            return Outcome(
                "spent",
                error=errors.shape(
                    errors.POOL_POD_SPENT,
                    "This pool pod refused its layers and serves no function; the request was "
                    "not started.",
                ),
            )
        if self._pool_state is not None:
            return Outcome(
                "idle",
                error=errors.shape(
                    errors.SERVICE_UNAVAILABLE,
                    "This pool pod has no function yet; the request was not started.",
                ),
            )
        await self._init_done.wait()
        if self._init_error is not None or self._handler is None:
            return Outcome("init_error", error=self._init_error)
        if len(self._slots) >= self.cfg.concurrency:
            return Outcome(
                "busy",
                error=errors.shape(
                    errors.TOO_MANY_REQUESTS,
                    f"Rate Exceeded: {len(self._slots)} of {self.cfg.concurrency} concurrent "
                    "invocations in flight",
                ),
            )
        deadline_ms = self._now_ms() + timeout_ms
        slot = self._slot_ids = self._slot_ids + 1
        self._slots[slot] = deadline_ms
        started = self._clock()
        self._out.raw_write(logs.start_line(rid, self.cfg.function_version, epoch=started), rid)
        ctx = contextvars.copy_context()
        ctx.run(logs.request_id.set, rid)
        lambda_context = context.LambdaContext(
            aws_request_id=rid,
            deadline_ms=deadline_ms,
            function_name=self.cfg.function_name,
            function_version=self.cfg.function_version,
            invoked_function_arn=self.cfg.function_arn,
            memory_limit_in_mb=self.cfg.memory_mb,
            log_group_name=self.cfg.log_group_name,
            log_stream_name=self.cfg.log_stream_name,
            invocation_type=invocation_type,
            client_context=client_context,
            clock=self._clock,
        )
        running = self._start(ctx, event, lambda_context)
        finished = await self._wait(running, deadline_ms)
        if finished and _awaitable_result(running):
            # A plain function handed back a coroutine (a wrapped async handler): run it too.
            running = asyncio.get_running_loop().create_task(_await(running.result()), context=ctx)
            finished = await self._wait(running, deadline_ms)

        def release() -> None:
            self._slots.pop(slot, None)

        if stream is not None and finished and _streams(running):
            source = streaming.Source(
                running.result(), pool=self._threads, ctx=ctx, release=release
            )
            assert timeout.error is not None
            ended = await stream(
                source,
                lambda: deadline_ms / 1000 - self._clock(),
                timeout.error,
                lambda: self._clock() - started,
            )
            outcome = self._stream_outcome(rid, ended, timeout, timeout_message)
        else:
            running.add_done_callback(lambda _f: release())
            outcome = self._outcome(rid, running, finished, timeout, timeout_message)
        self._out.end_request(rid)
        duration_s = self._clock() - started
        if outcome.kind == "streamed" and outcome.result.duration_s is not None:
            # The figure its trailer carried: the handler's time up to the stream's end.
            duration_s = outcome.result.duration_s
        outcome = dataclasses.replace(outcome, duration_s=duration_s)
        duration_ms = duration_s * 1000
        init_ms, self._init_duration_ms = self._init_duration_ms, None
        status = "timeout" if _timed_out(outcome) else "error" if _failed(outcome) else "success"
        self._out.raw_write(logs.end_line(rid, status=status), rid)
        self._out.raw_write(
            logs.report_line(
                rid,
                duration_ms=duration_ms,
                memory_mb=self.cfg.memory_mb,
                max_memory_used_mb=logs.max_memory_used_mb(),
                init_duration_ms=init_ms,
                status="timeout" if status == "timeout" else None,
                outcome=status,
            ),
            rid,
        )
        return outcome

    def _outcome(
        self,
        rid: str,
        running: asyncio.Future[Any],
        finished: bool,
        timeout: Outcome,
        timeout_message: str,
    ) -> Outcome:
        """How a handler that answered at once (no stream) ended, logged."""
        if not finished:
            if isinstance(running, asyncio.Task):
                running.cancel()  # a thread cannot be stopped: it runs on, holding its slot
            self._out.raw_write(logs.timeout_record(rid, self._clock(), timeout_message), rid)
            return timeout
        if running.cancelled():
            return Outcome("error", error=errors.shape("CancelledError", "handler was cancelled"))
        if (exc := running.exception()) is not None:
            shape = errors.from_exception(exc)
            self._log_error(rid, shape)
            return Outcome("error", error=shape)
        return Outcome("ok", result=running.result())

    def _stream_outcome(
        self, rid: str, ended: streaming.Ended, timeout: Outcome, timeout_message: str
    ) -> Outcome:
        """How a streamed answer ended, logged. Before the head went out, a failure is
        answered as any other; after it, only the stream's trailers can tell."""
        if ended.timed_out:
            self._out.raw_write(logs.timeout_record(rid, self._clock(), timeout_message), rid)
        elif ended.error is not None:
            self._log_error(rid, ended.error)
        if ended.head_sent or ended.broken:
            return Outcome("streamed", result=ended, error=ended.error)
        if ended.timed_out:
            return timeout
        if ended.error is not None:
            return Outcome("error", error=ended.error)
        return Outcome("streamed", result=ended)

    def _start(
        self, ctx: contextvars.Context, event: Any, lambda_context: context.LambdaContext
    ) -> asyncio.Future[Any]:
        assert self._handler is not None
        loop = asyncio.get_running_loop()
        if self._is_async:
            return loop.create_task(_await(self._handler(event, lambda_context)), context=ctx)
        return loop.run_in_executor(self._threads, ctx.run, self._handler, event, lambda_context)

    async def _wait(self, running: asyncio.Future[Any], deadline_ms: int) -> bool:
        remaining_s = max(0.0, deadline_ms / 1000 - self._clock())
        done, _ = await asyncio.wait({running}, timeout=remaining_s)
        return running in done


def _handler_threads(cfg: config.Config) -> concurrent.futures.ThreadPoolExecutor:
    """The threads sync handlers run in, one per concurrency slot."""
    return concurrent.futures.ThreadPoolExecutor(
        max_workers=cfg.concurrency, thread_name_prefix="kfn-handler"
    )


def _load_in_thread(handler: str) -> asyncio.Future[tuple[Callable[..., Any], float]]:
    """Loads the handler in a daemon thread of its own: an import past its budget cannot be
    stopped, and must not keep the process from exiting (as a pool's thread would). Resolves
    with the handler and the unix time its module's import returned."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[tuple[Callable[..., Any], float]] = loop.create_future()

    def settle(result: tuple[Callable[..., Any], float] | None, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            assert result is not None
            future.set_result(result)

    def run() -> None:
        result: tuple[Callable[..., Any], float] | None = None
        error: BaseException | None = None
        try:
            loaded = loader.load_handler(handler)
            result = (loaded, time.time())
        except BaseException as exc:  # handed to the loop, as the executor would
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed while the import ran on
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="kfn-init", daemon=True).start()
    return future


async def _discard(reader: asyncio.StreamReader, limit: int) -> None:
    received = 0
    while received < limit and (chunk := await reader.read(64 * 1024)):
        received += len(chunk)


def _streams(future: asyncio.Future[Any]) -> bool:
    return (
        not future.cancelled()
        and future.exception() is None
        and streaming.is_stream(future.result())
    )


def _timed_out(outcome: Outcome) -> bool:
    if outcome.kind == "streamed":
        return bool(outcome.result.timed_out)
    return outcome.kind == "timeout"


def _failed(outcome: Outcome) -> bool:
    return outcome.kind == "error" or (outcome.kind == "streamed" and outcome.error is not None)


def _awaitable_result(future: asyncio.Future[Any]) -> bool:
    return (
        not future.cancelled()
        and future.exception() is None
        and inspect.isawaitable(future.result())
    )


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def configure(*, handler: str | None = None) -> tuple[config.Config, logs.TaggingStream]:
    """Reads the function's configuration from the environment and readies the process for its
    handler as Lambda would: its variables filled in, the import path, the working directory,
    the log format. Runs at a normal start, or when a pool pod is specialised (then ``handler``
    is the one the request names). Returns the stream the runtime writes its lines to."""
    cfg = config.load()
    if handler is not None:
        cfg = dataclasses.replace(cfg, handler=handler)
    config.export_lambda_environment(cfg, os.environ)
    loader.setup_sys_path(cfg.task_root)
    if os.path.isdir(cfg.task_root):
        os.chdir(cfg.task_root)
    return cfg, logs.install(logs.settings_from(os.environ))


def main() -> None:
    """Configures the process as Lambda would, serves until drained, then exits. A pool pod
    (``KFN_POOL=1``) reads only where to listen now, and the rest when it is specialised.

    The exit is ``os._exit``: a sync handler stuck past its deadline must not hold the process
    open after draining (the pool's threads are joined at interpreter exit otherwise).
    """
    in_pool = pool.enabled(os.environ)
    if in_pool:
        cfg, out = config.load(), logs.install(logs.settings_from(os.environ))
    else:
        cfg, out = configure()

    async def run() -> int:
        return await Runtime(cfg, out, pool=in_pool).serve()

    code = asyncio.run(run())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
