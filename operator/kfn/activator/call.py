"""An invocation made by the activator itself (for ``Event`` delivery), response buffered.

It takes a slot as a client's request does (:func:`kfn.activator.capacity.acquire`:
queueing, and poking the autoscaler, if the function is at zero), a pooled
connection, and the same two bounds (:mod:`~kfn.activator.waiting`): the queue timeout
while it waits for a pod (then 429, throttling, which the retries hold without using an
attempt) and the function's timeout plus a margin once sent (then 504, a function error).
Nothing started is sent again within the queue timeout, as the proxy does: a refused
connection on another endpoint (:func:`kfn.activator.capacity.connect`), and a runtime's
refusal marked ``Kfn-Not-Started`` (:mod:`~kfn.activator.refusal`: several activators
share a pod's concurrency, so one may find it full) after a short pause. Only when the
queue timeout has passed is it throttling for the retries, whose back-off grows to
minutes. A connection that ends before the answer did is the function's process dying
mid-request, a function error (``Runtime.ExitError``) that uses up a retry, as a client
would read it.
"""

from __future__ import annotations

import asyncio
import time
import typing

from kfn.activator import (
    answers,
    async_invoke,
    capacity,
    cold_start,
    metrics,
    refusal,
    router,
    throttler,
    upstream,
    waiting,
)

#: A response larger than this is not kept (Lambda's synchronous limit is 6 MiB).
RESPONSE_LIMIT = 6 * 1024 * 1024 + 1024


class _BufferedSink:
    """Collects one response into memory, for the activator's own invocations."""

    def __init__(self, request_id: bytes) -> None:
        self.request_id = request_id
        self.done: asyncio.Future[async_invoke.Outcome] = asyncio.get_running_loop().create_future()
        self.status = 0
        self.function_error = False
        #: The runtime refused without starting the handler (kfn.activator.refusal).
        self.not_started = False
        self.body = bytearray()
        self.reusable = False
        #: The runtime's ``Kfn-Log-Result`` (asked for with ``Kfn-Log-Type: Tail``).
        self.log_result = b""
        #: When the answer's head arrived (wall clock; 0 before).
        self.first_byte = 0.0

    def on_interim(self, status: int, reason: bytes, headers: bytes) -> None:
        pass

    def on_response_head(
        self, status: int, reason: bytes, headers: bytes, length_known: bool, not_started: bool
    ) -> None:
        self.first_byte = time.time()
        self.status = status
        self.function_error = b"\r\nkfn-function-error:" in b"\r\n" + headers.lower()
        self.not_started = refusal.not_started(status, not_started)
        at = headers.lower().find(b"kfn-log-result:")
        if at >= 0:
            end = headers.find(b"\r\n", at)
            self.log_result = headers[at + 15 : end if end >= 0 else len(headers)].strip()

    def on_response_body(self, data: bytes) -> None:
        if len(self.body) < RESPONSE_LIMIT:
            self.body += data

    def on_response_complete(self, reusable: bool) -> None:
        self.reusable = reusable
        if not self.done.done():
            self.done.set_result(
                async_invoke.Outcome(self.status, bytes(self.body), self.function_error)
            )

    def on_upstream_lost(self, exc: BaseException | None) -> None:
        if isinstance(exc, upstream.FailedMidwayError) and not self.done.done():
            # A streamed response that failed midway: the function's error, as it reported it.
            self.done.set_result(async_invoke.Outcome(502, exc.body, function_error=True))
            return
        if not self.done.done():
            lost = answers.runtime_exited(self.request_id)
            self.done.set_result(async_invoke.Outcome(lost.status, lost.body, function_error=True))

    def on_upstream_pause(self, paused: bool) -> None:
        pass

    def flush(self) -> None:
        pass


async def invoke(
    throttle: throttler.Throttler,
    function_name: str,
    request_id: str,
    payload: bytes,
    *,
    timeout_s: float,
    queue_timeout_s: float,
    invocation_type: bytes = b"Event",
) -> async_invoke.Outcome:
    """POST the payload to a pod's invoke path; the outcome says how it went.

    No pod within ``queue_timeout_s`` (or a full queue) is throttling, 429. A function
    that does not answer within ``timeout_s`` of being sent (plus the margin) counts as
    a function error with status 504, as a Lambda timeout does.
    """
    reply = await call(
        throttle,
        function_name,
        request_id,
        payload,
        timeout_s=timeout_s,
        queue_timeout_s=queue_timeout_s,
        invocation_type=invocation_type,
    )
    return reply.outcome


class Reply(typing.NamedTuple):
    """An invocation's outcome, and the log lines the runtime handed back if asked."""

    outcome: async_invoke.Outcome
    log_result: bytes = b""
    #: Whether a pod ran it (else the activator answered: throttled, or no pod reached).
    sent: bool = False
    #: The handler's own time (``Kfn-Handler-Duration``), -1 when the runtime gave none.
    handler_seconds: float = -1.0

    def record(self, counted: metrics.FunctionMetrics) -> None:
        """Counts this invocation in its function's metrics: run by a pod or answered by the
        activator, and its error kind if any."""
        outcome = self.outcome
        counted.called(
            outcome.status,
            outcome.body,
            function_error=outcome.function_error,
            sent=self.sent,
            handler_seconds=self.handler_seconds,
        )


async def call(
    throttle: throttler.Throttler,
    function_name: str,
    request_id: str,
    payload: bytes,
    *,
    timeout_s: float,
    queue_timeout_s: float,
    invocation_type: bytes = b"Event",
    extra_headers: bytes = b"",
) -> Reply:
    """:func:`invoke`, with ``extra_headers`` (whole lines of the runtime contract, such as
    ``Kfn-Log-Type`` and ``Kfn-Client-Context``) sent along and the log result kept."""
    throttle.note_request()
    loop = asyncio.get_running_loop()
    accepted = loop.time()
    waits_until = accepted + queue_timeout_s
    refused = 0
    #: The cold start this call waited for, and whether it pays for it.
    cold: cold_start.ColdStart | None = None
    pays = False
    while True:
        try:
            async with asyncio.timeout_at(waits_until):
                endpoint = await capacity.acquire(throttle)
                found = throttle.cold
                if cold is None and found is not None and found.waited_for(accepted):
                    cold, pays = found, found.claim()
                endpoint, conn = await capacity.connection(throttle, endpoint)
        except TimeoutError:
            return Reply(async_invoke.Outcome(429, b"no pod within the queue timeout"))
        except throttler.QueueFullError:
            return Reply(async_invoke.Outcome(429, b"queue full"))
        except capacity.ConnectError:
            return Reply(async_invoke.Outcome(0, b"could not connect to the function"))
        try:
            async with asyncio.timeout(waiting.served_bound(timeout_s)):
                reply, not_started, first_byte = await _exchange(
                    endpoint,
                    conn,
                    function_name=function_name,
                    request_id=request_id,
                    payload=payload,
                    timeout_ms=max(1, round(timeout_s * 1000)),
                    invocation_type=invocation_type,
                    extra_headers=extra_headers,
                )
        except TimeoutError:
            return Reply(async_invoke.Outcome(504, b"timed out", function_error=True), sent=True)
        finally:
            throttle.release(endpoint)
        if not not_started:
            if pays and cold is not None and first_byte:
                pays = False
                cold.answered(endpoint.address, first_byte)
            return reply
        # Not started: wait a moment, then for a slot again, within the queue timeout.
        refused += 1
        pause = refusal.retry_delay(refused)
        if loop.time() + pause >= waits_until:
            return reply
        await asyncio.sleep(pause)


async def _exchange(
    endpoint: upstream.Endpoint,
    conn: upstream.UpstreamConnection,
    *,
    function_name: str,
    request_id: str,
    payload: bytes,
    timeout_ms: int,
    invocation_type: bytes,
    extra_headers: bytes = b"",
) -> tuple[Reply, bool, float]:
    """Sends the invocation on ``conn``; the outcome, whether the runtime refused it
    without starting it, and when its answer's head came (wall clock, 0 if none did)."""
    sink = _BufferedSink(request_id.encode())
    head = (
        b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nKfn-Request-Id: %s\r\nKfn-Timeout-Ms: %d\r\n"
        b"Kfn-Function-Name: %s\r\nKfn-Invocation-Type: %s\r\n%s\r\n"
        % (
            router.POD_INVOKE_PATH,
            endpoint.address.encode(),
            len(payload),
            request_id.encode(),
            timeout_ms,
            function_name.encode(),
            invocation_type,
            extra_headers,
        )
    )
    conn.send(head, sink, head_request=False)
    conn.write(payload)
    try:
        outcome = await sink.done
    except asyncio.CancelledError:
        conn.abort()
        raise
    handler_seconds = conn.handler_seconds
    if sink.reusable:
        endpoint.put_idle(conn)
    else:
        conn.abort()
    reply = Reply(outcome, sink.log_result, not sink.not_started, handler_seconds)
    return reply, sink.not_started, sink.first_byte
