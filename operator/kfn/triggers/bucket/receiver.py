"""The HTTP endpoint object stores push notifications to.

``POST /events/<namespace>`` routes by bucket name to the Push Triggers of that namespace
(what a store in that namespace should be pointed at); ``POST /events/<namespace>/<trigger>``
only to that Trigger; ``POST /events`` to every Push Trigger on the bucket in any namespace
(for a store shared by the whole cluster); ``GET /healthz`` is the
readiness probe; ``POST /handoff`` takes an event a stopping replica hands over
(:mod:`~kfn.triggers.bucket.handoff`). With :class:`Signing` a notification must carry the
token of its path (:mod:`kfn.authn.webhooks`: the namespace's, the Trigger's or the
cluster's, as a bearer token or a URL's password); one without is answered 401, one with
another path's token 403, both before its JSON is read or anything is routed, and counted
in ``kfn_bucket_notifications_refused_total``. A notification is answered only after every
matching record was handled,
in the request's own thread: a sender that gives up waiting (versitygw's webhook does after
3 s) closes its connection, but nothing cancels the handling, and the answer is then simply
not read.

Concurrency is bounded twice: at most :data:`MAX_REQUESTS` requests are handled at once
(more wait, then get 503 so a store that retries does), and deliveries share the worker's
pool. What one connection may hold, and for how long, is bounded by
:mod:`~kfn.triggers.bucket.limits`: a malformed or negative ``Content-Length`` is refused
(400), a body over the bound too (413), and a head or body that does not arrive in time is
answered 408.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import io
import json
import logging
import re
import socket
import sys
import threading
import time
from typing import Final, Protocol

from kfn.authn import webhooks
from kfn.triggers import metrics
from kfn.triggers.bucket import handoff, limits

logger = logging.getLogger(__name__)

MAX_REQUESTS: Final = 256
#: How long a request waits for a free slot before it is answered 503.
SLOT_WAIT: Final = 30.0
_TRIGGER_PATH: Final = re.compile(r"^/events/([a-z0-9][-a-z0-9]*)(?:/([a-z0-9][-a-z0-9]*))?/?$")


@dataclasses.dataclass(frozen=True)
class Signing:
    """What notifications are signed with: the key their tokens derive from, and the
    cluster's own token (the chart's Secret ``<release>-kfn-bucket``)."""

    key: bytes = dataclasses.field(repr=False)
    cluster_token: str = dataclasses.field(repr=False)


class App(Protocol):
    """What the receiver needs from the worker."""

    def ready(self) -> bool:
        """Whether this replica should get notifications (routes known, not terminating)."""

    def accepting(self) -> bool:
        """Whether a notification may still be taken on (False once the grace is over)."""

    def handle_push(self, payload: object, only: tuple[str, str] | None = None) -> tuple[int, str]:
        """Handles one notification; the status and a short message."""

    def take_over(self, body: bytes, signature: str | None) -> tuple[int, str]:
        """Takes on an event another replica hands over; the status and a short message."""


def route(path: str) -> tuple[str, tuple[str, str] | None] | None:
    """What a request path asks for: ("events", None), ("events", (ns, name)),
    ("events", (ns, "")) for every Trigger of a namespace, ("healthz", None), or None for an
    unknown path."""
    bare = path.split("?", 1)[0]
    if bare in ("/events", "/events/", "/"):
        return "events", None
    if bare == "/healthz":
        return "healthz", None
    if bare == handoff.PATH:
        return "handoff", None
    match = _TRIGGER_PATH.match(bare)
    if match:
        return "events", (match.group(1), match.group(2) or "")
    return None


class Server(http.server.ThreadingHTTPServer):
    """One thread per connection; tracks the requests in hand for a clean shutdown."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        app: App,
        bounds: limits.Limits = limits.DEFAULT,
        signing: Signing | None = None,
    ) -> None:
        self.app = app
        self.limits = bounds
        #: None: any notification is taken (the chart's ``bucket.events.auth: none``).
        self.signing = signing
        self.slots = threading.BoundedSemaphore(MAX_REQUESTS)
        self.in_hand = 0
        self.idle = threading.Condition()
        #: Set when the replica starts to stop: answers then close their connection, so
        #: senders with kept-alive connections dial the Service again and reach a replica
        #: that stays.
        self.closing = threading.Event()
        #: Open connections, for closing those that sit idle between requests.
        self.handlers: set[Handler] = set()
        self.handlers_lock = threading.Lock()
        #: When the last POST arrived (monotonic): a stopping replica closes its listener
        #: once they stop coming.
        self.last_post = time.monotonic()
        super().__init__(address, Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """A sender that hung up is routine (versitygw stops waiting after 3 s); anything
        else is logged with its traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            logger.debug("%s went away: %s", client_address, sys.exc_info()[1])
            return
        logger.exception("serving %s failed", client_address)

    def enter(self) -> None:
        with self.idle:
            self.in_hand += 1

    def leave(self) -> None:
        with self.idle:
            self.in_hand -= 1
            self.idle.notify_all()

    def stop_receiving(self) -> int:
        """Takes no new connection any more and closes the idle ones (see
        :meth:`close_idle_connections`); returns how many it closed.

        The listening socket is closed too: left open, the kernel would go on accepting
        connections that nothing reads, and a sender still routed here would wait out its
        own timeout (versitygw's is 3 s, and it drops the event without a word) instead of
        being refused at once.
        """
        self.shutdown()
        self.socket.close()
        return self.close_idle_connections()

    def close_idle_connections(self) -> int:
        """Closes the kept-alive connections waiting for a next request; returns how many.

        A sender's client sees the close before it picks that connection again (and one that
        has written nothing on it yet sends elsewhere), instead of the replica's exit
        resetting it under a notification. A connection that has not had its first request
        yet stays open and is answered: closing it would lose the notification its sender
        is writing, since no client sends a POST again on a new connection of its own.
        """
        with self.handlers_lock:
            idle = [h for h in self.handlers if h.waiting]
        for handler in idle:
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
        return len(idle)

    def wait_idle(self, timeout: float) -> bool:
        """Waits until no notification is in hand; False if ``timeout`` passed first."""
        with self.idle:
            return self.idle.wait_for(lambda: self.in_hand == 0, timeout)


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    #: True while a kept-alive connection waits for its next request (one was answered,
    #: nothing of the next read yet). A new connection is not waiting: its sender opened
    #: it to send a request, which may already be on its way.
    waiting = False

    #: The request's phase, for the answer to a deadline that passed.
    phase = "idle"

    def setup(self) -> None:
        super().setup()
        self.reader = limits.DeadlineReader(self.connection)
        self.buffered = io.BufferedReader(self.reader, 65536)
        self.rfile = self.buffered
        with self.server.handlers_lock:
            self.server.handlers.add(self)

    def finish(self) -> None:
        with self.server.handlers_lock:
            self.server.handlers.discard(self)
        super().finish()

    def handle_one_request(self) -> None:
        """Waits for a request (at most the idle time-out), then reads and answers it with
        the head and body each under its own deadline."""
        bounds = self.server.limits
        self.phase = "idle"
        self.reader.start(bounds.idle_timeout)
        try:
            if not self.buffered.peek(1):
                self.close_connection = True
                return
        except OSError:  # the idle time-out (TimeoutError) or a reset
            self.close_connection = True
            return
        self.waiting = False
        self.phase = "head"
        self.reader.start(bounds.head_timeout)
        super().handle_one_request()
        if self.reader.expired and self.phase == "head":
            self.close_connection = True
            self._answer_raw(408, "the request head did not arrive in time")
        self.waiting = True

    def parse_request(self) -> bool:
        self.waiting = False
        parsed = super().parse_request()
        if parsed:
            self.phase = "body"
            self.reader.start(self.server.limits.body_timeout)
        self.connection.settimeout(self.server.limits.send_timeout)
        return parsed

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def _answer(self, code: int, message: str) -> None:
        if code >= 300 and self.command == "POST":
            # A store sends a notification once: one it was refused is worth a line.
            logger.warning("%s %s answered %d: %s", self.command, self.path, code, message)
        body = json.dumps({"message": message}).encode()
        try:
            self.connection.settimeout(self.server.limits.send_timeout)
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if code == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="kfn-bucket"')
            if self.server.closing.is_set():
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            # The sender went away; what it sent was handled all the same.
            self.close_connection = True

    def _answer_raw(self, code: int, message: str) -> None:
        """An answer before the request line was parsed (no method or version to go by)."""
        logger.warning("a request from %s answered %d: %s", self.address_string(), code, message)
        body = json.dumps({"message": message}).encode()
        head = (
            f"HTTP/1.1 {code} {self.responses[code][0]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            self.connection.settimeout(self.server.limits.send_timeout)
            self.wfile.write(head.encode() + body)

    def do_GET(self) -> None:
        target = route(self.path)
        if target is None or target[0] != "healthz":
            self._answer(404, "not found")
        elif self.server.app.ready():
            self._answer(200, "ready")
        else:
            self._answer(503, "not ready")

    def do_POST(self) -> None:
        self.server.last_post = time.monotonic()
        target = route(self.path)
        length = limits.body_length(
            self.headers.get_all("Content-Length") or [],
            self.headers.get("Transfer-Encoding"),
            self.server.limits.max_body,
        )
        if isinstance(length, limits.Refusal):
            self.close_connection = True
            self._answer(length.status, length.message)
            return
        body = self._read_body(length)
        if body is None:
            return
        if target is None or target[0] not in ("events", "handoff"):
            self._answer(404, "not found")
            return
        if target[0] == "handoff":
            signature = self.headers.get(handoff.SIGNATURE_HEADER)
            self._answer(*self.server.app.take_over(body, signature))
            return
        refusal = self._unsigned(target[1])
        if refusal is not None:
            metrics.NOTIFICATIONS_REFUSED.labels(refusal.why).inc()
            self._answer(refusal.status, refusal.message)
            return
        try:
            payload = json.loads(body)
        except ValueError:
            self._answer(400, "the body is not JSON")
            return
        self._handle(payload, target[1])

    def _unsigned(self, only: tuple[str, str] | None) -> webhooks.Refusal | None:
        """Why a notification to this path is refused for its signature, or None.

        The body was read first (it is bounded), so the sender reads the refusal rather
        than a connection reset under what it was still writing.
        """
        signing = self.server.signing
        if signing is None:
            return None
        namespace, trigger = only or ("", "")
        return webhooks.check(
            self.headers.get("Authorization"),
            key=signing.key,
            cluster_token=signing.cluster_token,
            namespace=namespace,
            trigger=trigger,
        )

    def _read_body(self, length: int) -> bytes | None:
        """The body, or None when it did not arrive in time (answered 408) or the sender
        closed before sending it all."""
        try:
            body = self.rfile.read(length) if length else b""
        except TimeoutError:
            self.close_connection = True
            self._answer(408, "the notification's body did not arrive in time")
            return None
        except OSError:
            self.close_connection = True
            return None
        if len(body) < length:
            self.close_connection = True
            return None
        return body

    def _handle(self, payload: object, only: tuple[str, str] | None) -> None:
        app = self.server.app
        if not app.accepting():
            self._answer(503, "stopping")
            return
        if not self.server.slots.acquire(timeout=SLOT_WAIT):
            self._answer(503, "busy")
            return
        self.server.enter()
        try:
            code, message = app.handle_push(payload, only)
        except Exception:
            logger.exception("handling a notification failed")
            code, message = 500, "internal error"
        finally:
            self.server.leave()
            self.server.slots.release()
        self._answer(code, message)


def serve(
    address: tuple[str, int],
    app: App,
    bounds: limits.Limits = limits.DEFAULT,
    signing: Signing | None = None,
) -> tuple[Server, threading.Thread]:
    """Starts the receiver in a thread; stop it with ``server.shutdown()``."""
    server = Server(address, app, bounds, signing)
    thread = threading.Thread(target=server.serve_forever, args=(0.2,), name="receiver")
    thread.daemon = True
    thread.start()
    return server, thread
