"""One request and its response, from head parsed to last byte written.

An :class:`Exchange` orchestrates; each step's rules live in their own module::

    head parsed (request_head) -> route (router) -> invoke API gate (invoke_api)
      -> a CORS preflight answered here, on a route with cors (no token, no pod)
      -> the caller's token checked, on the invoke door and checked routes (access)
      -> Event: accepted at once (events)
      -> a slot and a connection (capacity: at once, queued, or retried elsewhere)
      -> head and body sent (request_head, request_body)
      -> response passed on (relay), unless the runtime refused it unstarted
         (refusal: then the slot goes back and the request is sent again)
      -> slot released, connection back to the pool, metrics observed (the answer's
         error kind: metrics.classify; the handler's own time: Kfn-Handler-Duration)

A request that waited while its function had no ready pod takes part in that cold start
(:mod:`~kfn.activator.cold_start`): the first of them to get a pod pays for it, and its
answer carries the phases in ``Server-Timing``; the others carry their own wait.

A request that finds a free slot and an idle connection runs entirely in protocol
callbacks; only waiting for capacity and opening a connection run as a task. Every
request has one bound at a time (:mod:`~kfn.activator.waiting` decides), kept by its
connection's one timer (:mod:`~kfn.activator.deadline`): while it waits
for a pod, the function's queue timeout, counted from its acceptance, past which it is
answered 429 (it never ran); once sent, the function's timeout plus a margin, past which
it is answered Lambda's 504 task timeout. The runtime counts the function's timeout from
its handler's start (``Kfn-Timeout-Ms``). Once the activator is stopping, a waiting request
waits only as long as the drain can still serve it whole (then 429 as well).

Body bytes a request holds before it has a pod (and an ``Event`` payload while it
arrives) are taken from the activator's byte budget (:mod:`~kfn.activator.budget`)
and given back once sent on or dropped; a request that finds the budget spent is
answered 503.

On a route with a CORS policy (``cors`` of its Trigger or Function URL), a request with an
``Origin`` is the policy's: a preflight (:func:`kfn.api.web.is_preflight`) is answered at once
by the activator, before any token is asked for (browsers send none on a preflight) and
without the function being counted, woken or reached, even at zero; any other answer, the
pod's or the activator's own, carries the policy's ``Access-Control-*`` headers for that
origin instead of any the function set (none when the origin is not allowed).
"""

from __future__ import annotations

import asyncio
import time
import typing

from kfn import stats
from kfn.activator import (
    access,
    answers,
    capacity,
    cold_start,
    context,
    deadline,
    events,
    exits,
    forwarding,
    invoke_api,
    lambda_api,
    metrics,
    qualifiers,
    refusal,
    relay,
    request_body,
    request_head,
    throttler,
    upstream,
    waiting,
)
from kfn.api import web

HEALTH_PATH = b"/_kfn/health"


class Client(typing.Protocol):
    """What an exchange needs of its client connection (a ``proxy.ClientProtocol``)."""

    ctx: context.Context
    door: context.Door
    loop: asyncio.AbstractEventLoop
    deadline: deadline.Deadline
    #: The last access decision the connection was given (on a door that checks tokens).
    recent: access.Recent
    peer: bytes
    write_paused: bool

    def proxied(self) -> forwarding.Trusted | None: ...
    def write(self, data: bytes) -> None: ...
    def cork(self, conn: upstream.UpstreamConnection) -> None: ...
    def buffer(self, data: bytes) -> None: ...
    def flush_soon(self) -> None: ...
    def abort(self) -> None: ...
    def update_reading(self) -> None: ...
    def exchange_done(self, exchange: Exchange) -> None: ...


class Exchange:
    """One request's life; the client connection and the response's relay call in."""

    __slots__ = (
        "accepted",
        "authorizing",
        "body_done",
        "budgeted",
        "cold",
        "conn",
        "cors",
        "endpoint",
        "entry",
        "error_kind",
        "event_body",
        "finished",
        "handler_seconds",
        "head",
        "head_done",
        "invoke",
        "keep_alive",
        "lambda_body",
        "pays",
        "phase",
        "proto",
        "qualifier",
        "request_id",
        "response_started",
        "retries",
        "route_headers",
        "sent",
        "started",
        "task",
        "upload",
        "upstream_paused",
    )

    def __init__(self, proto: Client) -> None:
        self.proto = proto
        self.head = request_head.RequestHead(private=proto.door.private)
        self.upload = request_body.Upload()
        self.keep_alive = True
        self.head_done = False
        self.body_done = False
        self.invoke = False
        #: The invoke API's or the route's qualifier (a version or an alias), "" for
        #: ``$LATEST``.
        self.qualifier = ""
        #: The matched route's contract headers for the pod (payload format, stripped prefix).
        self.route_headers = b""
        #: While the invoke door reviews the caller's token (its body is held meanwhile).
        self.authorizing = False
        #: An Event invocation's payload, while it arrives.
        self.event_body: bytearray | None = None
        #: A Lambda API request's body, held whole while it arrives (lambda_door).
        self.lambda_body: bytearray | None = None
        self.entry: context.FunctionEntry | None = None
        #: The endpoint whose slot this request holds, and the connection to it.
        self.endpoint: upstream.Endpoint | None = None
        self.conn: upstream.UpstreamConnection | None = None
        #: Waiting for capacity and connecting, when that could not happen at once.
        self.task: asyncio.Task[None] | None = None
        self.request_id = b""
        #: When the request was accepted (the loop's clock): its wait for a pod counts from here.
        self.accepted = 0.0
        self.phase = waiting.Phase.WAITING
        self.started = 0.0
        self.response_started = False
        self.upstream_paused = False
        self.finished = False
        self.retries = 0
        #: Sent to a pod (and not refused unstarted since): an invocation, whatever answers.
        self.sent = False
        #: The answer's error kind (metrics.classify), and the handler's own time (-1: none).
        self.error_kind: metrics.Kind | None = None
        self.handler_seconds = -1.0
        #: The cold start this request waited for, and whether it pays for it.
        self.cold: cold_start.ColdStart | None = None
        self.pays = False
        #: Bytes this request holds of the activator's byte budget.
        self.budgeted = 0
        #: On a route with CORS, for a request with an Origin: the policy's headers for it,
        #: which replace the function's ``Access-Control-*`` (None: the answer is left alone).
        self.cors: bytes | None = None

    # --- request side -------------------------------------------------------------------

    def on_head_complete(self, method: bytes, keep_alive: bool, http11: bool) -> None:
        head = self.head
        head.method = method
        head.http11 = http11
        self.keep_alive = keep_alive
        self.head_done = True
        self.upload.chunked = head.chunked
        if head.content_length <= 0 and not head.chunked:
            self.body_done = True

    def begin(self) -> None:
        """Route the request and find it a pod (called when it is first in line)."""
        proto = self.proto
        ctx = proto.ctx
        head = self.head
        self.started = time.perf_counter()
        if head.url == HEALTH_PATH:
            self.answer(answers.DRAINING if ctx.draining else answers.HEALTHY)
            return
        door = proto.door
        if head.everything is not None:
            # Kept only for the Lambda API on an invoke door serving it (proxy.on_url).
            self.begin_lambda()
        else:
            self.route(door)

    def route(self, door: context.Door) -> None:
        """A request for a route or the invoke API (not the Lambda API)."""
        ctx = self.proto.ctx
        head = self.head
        match = ctx.router.match(head.host, head.url, head.method)
        if match is not None and match.invoke:
            self.qualifier = match.qualifier
            self.begin_invoke(door, match.function, match.conflict, wake=match.wake)
            return
        if not door.routes:
            self.answer(answers.ROUTES_ELSEWHERE)
            return
        if match is None:
            self.answer(answers.NO_FUNCTION)
            return
        if match.cors is not None and head.origin and self.cross_origin(match.cors):
            return
        self.route_headers = match.pod_headers
        self.qualifier = match.qualifier
        if match.checked:
            self.begin_checked(door, match.function)
            return
        self.serve_route(match.function)

    def begin_lambda(self) -> None:
        """AWS Lambda's API: the body is held whole (a signature covers it), then served by
        :mod:`~kfn.activator.lambda_door`."""
        self.request_id = invoke_api.request_id()
        if self.head.content_length > lambda_api.SYNC_PAYLOAD_LIMIT:
            self.answer(lambda_api.with_ids(lambda_api.REQUEST_TOO_LARGE, self.request_id))
            return
        upload = self.upload
        self.lambda_body = bytearray(b"".join(upload.held or ()))
        upload.held, upload.held_size = None, 0
        if self.body_done:
            self.submit_lambda()

    def submit_lambda(self) -> None:
        service = self.proto.ctx.lambda_service
        assert service is not None
        assert self.lambda_body is not None
        head = self.head
        request = lambda_api.Request(
            head.method, head.url, head.everything or [], bytes(self.lambda_body), self.request_id
        )
        self.lambda_body = None
        self.task = self.proto.ctx.spawn(self.serve_lambda(service, request))

    async def serve_lambda(
        self, service: context.LambdaService, request: lambda_api.Request
    ) -> None:
        answer = await service.serve(self.proto.ctx, self.proto.door.access, request)
        self.task = None
        if not self.finished:
            self.answer(answer)

    def cross_origin(self, policy: web.CorsPolicy) -> bool:
        """A request with an Origin on a route with CORS: answer it if it is a preflight
        (True), else note the headers its answer carries."""
        head = self.head
        origin = head.origin.decode("latin-1")
        asked = head.acr_method.decode("latin-1")
        if web.is_preflight(head.method.decode("latin-1"), origin, asked):
            requested = head.acr_headers.decode("latin-1").split(",") if head.acr_headers else []
            self.answer(answers.preflight(policy.preflight(origin, asked, requested)))
            return True
        self.cors = answers.header_lines(policy.simple(origin))
        return False

    def begin_checked(self, door: context.Door, function: stats.FunctionKey) -> None:
        """A route whose Trigger asks for ``auth: ServiceAccountToken``: its caller's token is
        checked as an invoke's, and kept from the pod, which could replay it to kfn."""
        self.head.hide_authorization()
        if door.access is None:
            self.answer(access.UNCHECKED)
            return
        self.authorize(door.access, function, None)

    def qualified(self, function: stats.FunctionKey) -> stats.FunctionKey | None:
        """The target :attr:`qualifier` names of ``function`` (a ``$LATEST`` key), an alias's
        chosen for this request; None, answered, when it names nothing that runs."""
        ctx = self.proto.ctx
        target = qualifiers.resolve(ctx.qualifiers, function, self.qualifier, qualifiers.draw())
        if isinstance(target, qualifiers.NotFound):
            self.answer(answers.error(404, "ResourceNotFoundException", target.message))
            return None
        return target

    def known(self, function: stats.FunctionKey) -> context.FunctionEntry | None:
        """The entry of the target the request's qualifier names (an alias's chosen per
        request), or None once the caller was answered that it has none."""
        if self.qualifier:
            target = self.qualified(function)
            if target is None:
                return None
            function = target
        entry = self.proto.ctx.functions.get(function)
        if entry is None:
            self.answer(answers.NO_FUNCTION)
        return entry

    def serve_route(self, function: stats.FunctionKey) -> None:
        """A route's request its caller may make: to the target its qualifier names, which
        the activator knows."""
        entry = self.known(function)
        if entry is not None:
            self.start(entry)

    def begin_invoke(
        self,
        door: context.Door,
        function: stats.FunctionKey,
        conflict: str = "",
        *,
        wake: bool = False,
    ) -> None:
        """The invoke API (or with ``wake``, its wake): on its door only, authorised when the
        door checks tokens; ``conflict`` says why its URL names no one qualifier."""
        self.invoke = True
        if not door.invoke:
            self.answer(answers.INVOKE_ELSEWHERE)
            return
        if conflict:
            self.request_id = invoke_api.request_id(self.head.given_request_id)
            self.answer(answers.error(400, "InvalidParameterValueException", conflict))
            return
        kind = invoke_api.gate(self.head.method, self.head.invocation_type, wake=wake)
        if kind == invoke_api.EVENT:
            self.event_body = bytearray()  # the payload is collected from here on
        if door.access is not None:
            # First: a caller without the right to invoke the function learns nothing of
            # it, not even whether it exists.
            self.authorize(door.access, function, kind)
        else:
            self.serve_invoke(function, kind)

    def authorize(
        self, checks: access.Access, function: stats.FunctionKey, kind: invoke_api.Kind | None
    ) -> None:
        """Serve the request if the caller's token may invoke ``function`` (cached: at once;
        else after review); ``kind`` is an invoke's, None for a checked route's request."""
        verdict = checks.cached(self.head.authorization, function, self.proto.recent)
        if verdict is None:
            self.authorizing = True
            self.task = self.proto.ctx.spawn(self.review(checks, function, kind))
        elif not verdict.allowed:
            self.refuse(verdict)
        elif kind is None:
            self.serve_route(function)
        else:
            self.serve_invoke(function, kind)

    async def review(
        self, checks: access.Access, function: stats.FunctionKey, kind: invoke_api.Kind | None
    ) -> None:
        verdict = await checks.decide(self.head.authorization, function)
        self.task = None
        self.authorizing = False
        if self.finished:
            return
        if verdict.allowed:
            self.serve(function, kind)
        else:
            self.refuse(verdict)

    def serve(self, function: stats.FunctionKey, kind: invoke_api.Kind | None) -> None:
        if kind is None:
            self.serve_route(function)
        else:
            self.serve_invoke(function, kind)

    def refuse(self, verdict: access.Verdict) -> None:
        assert verdict.refusal is not None
        self.request_id = invoke_api.request_id(self.head.given_request_id)
        self.answer(verdict.refusal)

    def serve_invoke(self, function: stats.FunctionKey, kind: invoke_api.Kind) -> None:
        """An invoke the caller may make: to a function this activator knows, gated."""
        entry = self.known(function)
        if entry is None:
            return
        if isinstance(kind, answers.Answer):
            self.answer(kind)
            return
        if kind == invoke_api.WAKE:
            # Not a request of the function's (no entry: neither counted nor timed as one).
            entry.throttler.wake()
            self.request_id = invoke_api.request_id(self.head.given_request_id)
            self.answer(invoke_api.WOKEN)
            return
        if kind == invoke_api.EVENT:
            self.entry = entry
            if self.body_done:
                self.submit_event()
            return
        self.start(entry, self.head.given_request_id)

    def start(self, entry: context.FunctionEntry, given_request_id: bytes = b"") -> None:
        """Take the request on for ``entry``: counted, timed from now, given its id, and on
        its way to a pod."""
        self.entry = entry
        entry.throttler.note_request()
        self.accepted = self.proto.loop.time()
        self.request_id = invoke_api.request_id(given_request_id)
        self.acquire(entry)

    def acquire(self, entry: context.FunctionEntry) -> None:
        """Go on at once with a free slot and an idle connection, else start a task for them."""
        endpoint = entry.throttler.try_acquire()
        self.endpoint = endpoint
        if endpoint is not None:
            conn = endpoint.take_idle()
            if conn is not None:
                self.attach(conn)
                return
        self.arm(waiting.Phase.WAITING)
        self.task = self.proto.ctx.spawn(self.obtain(entry.throttler))

    def arm(self, phase: waiting.Phase) -> None:
        """Hold the connection's deadline for the request's current bound (replacing the
        previous one)."""
        entry = self.entry
        assert entry is not None
        self.phase = phase
        proto = self.proto
        now = proto.loop.time()
        if phase is waiting.Phase.SENT:
            delay = entry.served_bound  # every request's once sent: worked out once
        else:
            delay = waiting.timer(
                phase,
                accepted=self.accepted,
                now=now,
                queue_timeout=entry.queue_timeout,
                timeout=entry.timeout,
                stops=proto.ctx.stops,
            )
        proto.deadline.hold(self, now + delay)

    def stopping(self) -> None:
        """The activator began to stop: a request waiting for a pod waits only as long as the
        drain still serves its whole timeout once sent (:func:`waiting.stop_left`)."""
        if (
            self.phase is waiting.Phase.WAITING
            and self.proto.deadline.holds(self)
            and not self.finished
        ):
            self.arm(waiting.Phase.WAITING)

    async def obtain(self, throttle: throttler.Throttler) -> None:
        """Wait for a slot if there was none, then open a connection (retried elsewhere).

        The task owns the slot from its start: cancelled (the request ended), it gives
        the slot back; if it never started, :meth:`complete` does.
        """
        endpoint, self.endpoint = self.endpoint, None
        try:
            if endpoint is None:
                endpoint = await capacity.acquire(throttle)
                cold = throttle.cold
                if self.cold is None and cold is not None and cold.waited_for(self.accepted):
                    self.cold = cold
                    self.pays = cold.claim()
            endpoint, conn = await capacity.connection(throttle, endpoint)
        except throttler.QueueFullError:
            self.task = None
            self.answer(answers.queue_full(throttle.queue_limit))
            return
        except capacity.ConnectError:
            self.task = None
            self.answer(answers.CONNECT_FAILED)
            return
        except throttler.FunctionGoneError:
            self.task = None
            self.answer(answers.NO_FUNCTION)
            return
        self.task = None
        self.endpoint = endpoint
        self.attach(conn)

    def attach(self, conn: upstream.UpstreamConnection) -> None:
        """Send the request head, and any body already received, to the pod."""
        self.conn = conn
        self.sent = True
        self.arm(waiting.Phase.SENT)
        proto = self.proto
        head = self.head
        head_request = head.method == b"HEAD"
        sink = relay.Relay(self, proto)
        if self.retries:
            # Sent before and refused unstarted: the same bytes again, complete.
            self.upload.resend(conn, sink, head_request=head_request)
            if proto.write_paused:
                conn.pause_reading(True)
            return
        entry = self.entry
        assert entry is not None
        upstream_head = head.upstream(
            peer=proto.peer,
            proxied=proto.proxied(),
            request_id=self.request_id,
            timeout_ms=entry.limits.timeout_ms,
            invoked=entry.name_bytes if self.invoke else None,
            route_headers=self.route_headers,
        )
        # Held while the client's bytes are parsed: the body that came with the head leaves
        # with it, when the loop's round ends (outbox).
        proto.cork(conn)
        self.upload.start(
            conn, upstream_head, sink, head_request=head_request, complete=self.body_done
        )
        if self.budgeted:
            self.give_back()
        if not self.body_done and head.expect_continue and not self.response_started:
            proto.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if proto.write_paused:
            conn.pause_reading(True)
        proto.update_reading()

    def on_request_body(self, data: bytes) -> None:
        if self.finished:
            return
        conn = self.conn
        if conn is not None:
            if self.upload.chunked:
                self.proto.cork(conn)  # chunks of one read leave in one write
            self.upload.send(conn, data)
        elif self.lambda_body is not None:
            if len(self.lambda_body) + len(data) > lambda_api.SYNC_PAYLOAD_LIMIT:
                self.keep_alive = False
                self.answer(lambda_api.with_ids(lambda_api.REQUEST_TOO_LARGE, self.request_id))
                return
            if self.take(len(data)):
                self.lambda_body += data
        elif self.event_body is not None:
            if len(self.event_body) + len(data) > events.PAYLOAD_LIMIT:
                self.keep_alive = False
                self.answer(events.TOO_LARGE)
                return
            if self.take(len(data)):
                self.event_body += data
        elif (
            not self.upload.started
            and self.take(len(data))
            and self.upload.hold(data) > request_body.BUFFER_LIMIT
        ):
            self.proto.update_reading()

    def take(self, size: int) -> bool:
        """Take bytes to hold from the byte budget; past it, answer 503."""
        if self.proto.ctx.budget.take(size):
            self.budgeted += size
            return True
        self.answer(answers.BUFFERS_FULL)
        return False

    def give_back(self) -> None:
        """The bytes held were sent on, handed over or dropped."""
        self.proto.ctx.budget.give(self.budgeted)
        self.budgeted = 0

    def on_request_complete(self) -> None:
        self.body_done = True
        if self.finished:
            return
        if self.conn is not None:
            if not self.upload.sent:
                self.upload.end(self.conn)
        elif self.event_body is not None and self.entry is not None and not self.authorizing:
            self.submit_event()
        elif self.lambda_body is not None:
            self.submit_lambda()

    def submit_event(self) -> None:
        entry = self.entry
        assert entry is not None
        assert self.event_body is not None
        payload = bytes(self.event_body)
        self.event_body = None
        self.give_back()
        self.task = self.proto.ctx.spawn(self.store_event(entry.key, payload))

    async def store_event(self, function: stats.FunctionKey, payload: bytes) -> None:
        """Answer once the event is stored (a durable store confirms over the network)."""
        answer = await events.submit(self.proto.ctx.invoker, function, payload)
        self.task = None
        if not self.finished:
            self.answer(answer)

    # --- from the response's relay -------------------------------------------------------

    def cold_timing(self) -> bytes:
        """The ``Server-Timing`` line of an answer whose request waited for a cold start."""
        cold = self.cold
        assert cold is not None
        if self.pays and self.endpoint is not None:
            return cold.answered(self.endpoint.address, time.time())
        return cold_start.waited(self.proto.loop.time() - self.accepted)

    def response_complete(self, status: int, reusable: bool, error_type: str = "") -> None:
        """The pod's response went on to the client in full (``error_type``: its body's,
        when the runtime marked it a function error and it was read)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            self.handler_seconds = conn.handler_seconds
            if conn.function_error and self.error_kind is None:
                self.error_kind = metrics.classify(
                    status, function_error=True, error_type=error_type
                )
            if reusable and self.upload.sent:
                conn.endpoint.put_idle(conn)
            else:
                conn.abort()
        self.complete(status)

    def upstream_lost(self) -> None:
        """The pod's connection ended before its answer did: the function's process died
        mid-request (a connection reused from the pool is never one the runtime was about
        to close idle, :meth:`upstream.Endpoint.take_idle`), so this is a function error.

        Why it died comes from the pod's status a moment later (:mod:`exits`): the answer
        waits for it, within :data:`exits.WAIT` and the function's own timer."""
        self.conn = None
        known = self.proto.ctx.exits
        if known is None or self.endpoint is None or self.response_started:
            self.answer(answers.runtime_exited(self.request_id))
            return
        self.task = self.proto.ctx.spawn(self.answer_exit(known, self.endpoint.address))

    async def answer_exit(self, known: exits.Exits, address: str) -> None:
        ended = await known.next_exit(address)
        self.task = None
        if not self.finished:
            self.answer(answers.runtime_exited(self.request_id, ended))

    def retry_elsewhere(self, reusable: bool) -> None:
        """The runtime refused without starting the request: send it again, shortly.

        The slot goes back first, so a pod that is busy or draining is chosen only
        when nothing better is free.
        """
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
        self.sent = False
        entry.metrics.retried()
        # Not started: it waits again, within what is left of its queue timeout.
        self.arm(waiting.Phase.WAITING)
        self.proto.loop.call_later(refusal.retry_delay(self.retries), self.acquire_again)

    def acquire_again(self) -> None:
        if not self.finished:
            assert self.entry is not None
            self.acquire(self.entry)

    # --- ending -------------------------------------------------------------------------

    def on_timeout(self) -> None:
        if self.finished:
            return
        entry = self.entry
        assert entry is not None
        if self.conn is not None:
            self.conn.abort()
            self.conn = None
        expiry = waiting.on_expiry(
            self.phase,
            accepted=self.accepted,
            queue_timeout=entry.queue_timeout,
            timeout=entry.timeout,
            stops=self.proto.ctx.stops,
        )
        match expiry:
            case "throttled":
                cold = entry.throttler.cold
                if self.cold is None and cold is not None:
                    cold.gave_up()  # a no-op once a pod was ready: then it was no cold wait
                self.answer(answers.no_capacity(entry.limits.queue_timeout_ms))
            case "stopping":
                self.answer(answers.STOPPING_BEFORE_CAPACITY)
            case "timed_out":
                self.answer(answers.timed_out(entry.limits.timeout_ms))

    def client_gone(self) -> None:
        """The client closed its connection: abandon the request."""
        if self.finished:
            return
        if self.conn is not None:
            self.conn.abort()
            self.conn = None
        self.complete(499, notify=False)

    def answer(self, answer: answers.Answer) -> None:
        """Answer from the activator itself; once the pod's response has begun, abort."""
        if answer.status >= 429:
            self.error_kind = metrics.classify(
                answer.status,
                function_error=False,
                error_type=metrics.error_type(answer.body),
                own=True,
            )
        if self.response_started:
            self.proto.abort()
            self.complete(answer.status)
            return
        if self.conn is not None:
            self.conn.abort()
            self.conn = None
        if not self.body_done:
            # The rest of the request body will not be read: the connection must close.
            self.keep_alive = False
        self.response_started = True
        close = not self.keep_alive or self.proto.ctx.draining
        if close:
            self.keep_alive = False
        if self.cors:
            answer = answer._replace(extra=answer.extra + self.cors)
        # On the invoke API the caller reads its request id on every answer, and the version
        # that ran (or would have) on every answer of a function it reached.
        request_id = b""
        if self.invoke:
            request_id = self.request_id
            if self.entry is not None:
                answer = answer._replace(extra=answer.extra + self.entry.executed_version)
        self.proto.write(answers.encode(answer, close=close, request_id=request_id))
        self.complete(answer.status)

    def complete(self, status: int, *, notify: bool = True) -> None:
        self.finished = True
        if self.budgeted:
            self.give_back()
        self.proto.deadline.release(self)
        if self.task is not None:
            self.task.cancel()
            self.task = None
        entry = self.entry
        if entry is not None:
            if self.endpoint is not None:
                entry.throttler.release(self.endpoint)
                self.endpoint = None
            fm = entry.metrics
            fm.observe_request(status, time.perf_counter() - self.started)
            if self.sent and notify:
                fm.invoked(self.handler_seconds, self.error_kind)
            if self.error_kind is not None:
                fm.failed(self.error_kind)
        if notify:
            self.proto.exchange_done(self)
