"""The durable event store: ``Event`` invocations in a NATS JetStream stream (nats-py).

The stream and its consumers are decided in :mod:`~kfn.activator.event_stream`; this
module is the store that uses them.

**Putting.** An event is published to its function's subject of one stream (file storage,
work-queue retention: a message is removed once acknowledged) with its request id,
received time and counters in headers (:mod:`~kfn.activator.event_record`). The caller is
answered 202 only after JetStream's PubAck says it is stored. A publish that gets no
answer (the connection to NATS is being re-established, say) is sent again with the same
``Nats-Msg-Id`` for up to :data:`PUT_BUDGET`: the stream's duplicate window stores it once
however many of the tries arrived, so a short outage ends in one event and a 202, not in a
503 whose event was stored after all. Only past the budget is the caller answered 503
(the event may then be stored, and run, as well as the caller's retry); a full stream
(``maxBytes``) is 429 at once, and so is 503 when no connection was ever made.

**Taking, fairly.** Each function has a durable pull consumer of its own, shared by all
activator replicas; any replica delivers any event, and an event whose holder dies is
delivered again by another. A replica pulls from every function that has events stored (it
lists the stream's subjects every :data:`DISCOVER` seconds, and starts pulling at once for
an event it stored itself), each pull under two bounds: the invoker's room (``window``
events ready or in flight over all functions) and :attr:`Settings.lane_window` events of
that function held here. So a backlog of one function stays in the stream, at most a lane
window of it in each replica, and another function's events are fetched as soon as they
are stored, whatever is stored before them; the invoker's lanes then take held events in
turn (:mod:`~kfn.activator.lanes`). A replica stops pulling for a function after
:data:`LANE_IDLE` seconds with nothing to fetch; the server removes a consumer nobody pulled
from for an hour, and the function's next event creates it again.

A message held longer than ``ack_wait`` (30 s) would be handed out again; so every held
message gets an in-progress ack every third of ``ack_wait`` while it waits in a lane or
its delivery runs (up to the function's timeout, 15 minutes). ``ack_wait`` therefore
bounds only how long the events of a replica that was killed stay hidden before another
replica delivers them.

**Retrying.** A failed attempt that :func:`kfn.retry.decide` retries is *published again*
with its counters raised and the time it is due, and then the original is acknowledged.
JetStream's own NAK with a delay would keep the message but not the counters (its
delivery count mixes function errors, throttles and crash redeliveries, which Lambda's
rules count apart), and the counters must survive any replica. A message fetched before
it is due (a retry, or the republished event of a replica that crashed after publishing
and before acknowledging: a duplicate JetStream's ``Nats-Msg-Id`` window usually
catches) is put back with a NAK delayed until it is due. Crash windows duplicate, never
lose: at least once.

**Counting duplicates.** A message handed out more often than kfn asked for (once, or
twice for one put back until due) was held by a replica that stopped acknowledging it:
the function may see that event twice (:func:`~kfn.activator.event_record.redelivered`,
``kfn_activator_events_redelivered_total``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import Any, Final

import nats.errors
import nats.js
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from kfn.activator import event_record, event_store, event_stream
from kfn.activator.event_stream import Settings, describe
from kfn.clock import Seconds

logger = logging.getLogger(__name__)

FETCH_BATCH: Final = 64
#: How long one pull waits at the server for a message.
POLL: Final = 1.0
#: How often a replica lists the subjects with events stored.
DISCOVER: Final = 1.0
#: A replica stops pulling for a function with nothing to fetch for this long.
LANE_IDLE: Final = 30.0
#: How often a replica whose invoker, or a function's lane window, is full looks again.
FULL_PAUSE: Final = 0.05
CONNECT_TIMEOUT: Final = 5.0
RECONNECT_WAIT: Final = 2.0
API_TIMEOUT: Final = 5.0
#: How long a put keeps sending an event the stream has not confirmed (see the module doc).
PUT_BUDGET: Final = 10.0
PUT_PAUSE: Final = 0.25

_ERRORS: Final = (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError)


class JetStreamHeld:
    """A message handed out to this activator, until it is ended, retried or given back."""

    __slots__ = ("event", "msg", "subject")

    def __init__(self, event: event_record.Event, msg: Msg, subject: str) -> None:
        self.event = event
        self.msg = msg
        self.subject = subject


class JetStreamStore:
    """Events in a JetStream stream, shared by every activator (see the module doc)."""

    durable = True

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Seconds = time.time,
        monotonic: Seconds = time.monotonic,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.monotonic = monotonic
        self.client: Client | None = None
        self._js: nats.js.JetStreamContext | None = None
        self._feed: event_store.Feed | None = None
        self._ready = asyncio.Event()
        self._held: set[JetStreamHeld] = set()
        #: Held messages per subject (what a function's lane window bounds).
        self._held_of: dict[str, int] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        #: The subjects the last listing found events on.
        self._stored: set[str] = set()
        #: One pulling task per function's subject.
        self._pulls: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # --- putting ------------------------------------------------------------------------

    async def put(self, event: event_record.Event) -> None:
        subject = await self._publish(event)
        self._pull(subject)

    async def _publish(self, event: event_record.Event) -> str:
        js = self._js
        if js is None or not self._ready.is_set():
            raise event_store.StoreUnavailableError("not connected to the event stream")
        subject = event_record.subject(self.settings.subject_prefix, event.function)
        # Computed once: every try carries the same Nats-Msg-Id.
        headers = event_record.headers(event, stored=self.clock())
        deadline = self.monotonic() + PUT_BUDGET
        while True:
            left = deadline - self.monotonic()
            try:
                await js.publish(
                    subject,
                    event.payload,
                    timeout=max(0.1, min(API_TIMEOUT, left)),
                    headers=headers,
                )
                return subject
            except _ERRORS as exc:
                if event_stream.full(exc):
                    raise event_store.QueueFullError(str(exc)) from None
                if left <= PUT_PAUSE:
                    raise event_store.StoreUnavailableError(
                        f"not confirmed within {PUT_BUDGET:.0f} s: {describe(exc)}"
                    ) from None
            await asyncio.sleep(PUT_PAUSE)

    # --- ending -------------------------------------------------------------------------

    async def again(self, held: event_store.Held, delay: float) -> None:
        assert isinstance(held, JetStreamHeld)
        try:
            await self._publish(held.event)
            await self._settle(held.msg.ack())
        finally:
            self._forget(held)

    async def end(self, held: event_store.Held) -> None:
        assert isinstance(held, JetStreamHeld)
        try:
            await self._settle(held.msg.ack())
        finally:
            self._forget(held)

    async def give_back(self, held: event_store.Held) -> None:
        assert isinstance(held, JetStreamHeld)
        try:
            await self._settle(held.msg.nak())
        finally:
            self._forget(held)

    async def _settle(self, step: Any) -> None:
        try:
            await step
        except _ERRORS as exc:
            raise event_store.StoreUnavailableError(describe(exc)) from None

    def _forget(self, held: JetStreamHeld) -> None:
        if held not in self._held:
            return
        self._held.discard(held)
        left = self._held_of[held.subject] - 1
        if left:
            self._held_of[held.subject] = left
        else:
            del self._held_of[held.subject]
        if not self._held:
            self._idle.set()

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, feed: event_store.Feed) -> None:
        self._feed = feed
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run()), loop.create_task(self._heartbeats())]

    async def stop_taking(self) -> None:
        """Ends every pull after its fetch under way: a fetch cancelled would leave its pull
        request open at the server, which would hand it messages (those given back among
        them) that nobody here reads until their ack wait ends."""
        self._stopping = True
        if self._tasks:
            listing = self._tasks[0]
            listing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listing
        pulls = list(self._pulls.values())
        if pulls:
            # Not connected yet: no pull request is open, nothing to wait for.
            wait = POLL + API_TIMEOUT if self._ready.is_set() else 0
            _, pending = await asyncio.wait(pulls, timeout=wait)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def close(self) -> None:
        self._stopping = True
        tasks = self._tasks + list(self._pulls.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=API_TIMEOUT)
        self._tasks = []
        self._pulls.clear()
        client, self.client = self.client, None
        self._js = None
        self._ready.clear()
        if client is not None and not client.is_closed:
            try:
                async with asyncio.timeout(API_TIMEOUT):
                    if client.is_connected:
                        # The last acks and naks leave before the connection closes.
                        await client.flush(timeout=int(API_TIMEOUT))
                    await client.close()
            # RuntimeError: nats-py writing to a transport uvloop already closed.
            except (*_ERRORS, RuntimeError) as exc:
                logger.info("closing the event stream connection: %s", describe(exc))

    async def wait_ready(self) -> None:
        """Until connected and the stream in place (for tests and start-up)."""
        await self._ready.wait()

    # --- connecting and listing ---------------------------------------------------------

    async def _run(self) -> None:
        """Connects, then lists the subjects with events and pulls for each."""
        while self._js is None:
            try:
                await self._open()
            except _ERRORS as exc:
                logger.warning(
                    "event stream %s at %s: %s; trying again in %.0f s",
                    self.settings.stream,
                    ",".join(self.settings.servers),
                    describe(exc),
                    RECONNECT_WAIT,
                )
                await asyncio.sleep(RECONNECT_WAIT)
        self._ready.set()
        logger.info("storing events in stream %s", self.settings.stream)
        js = self._js
        while not self._stopping:
            try:
                info = await js.stream_info(
                    self.settings.stream, subjects_filter=f"{self.settings.subject_prefix}.>"
                )
            except _ERRORS as exc:
                logger.info("listing the event stream's subjects: %s", describe(exc))
            else:
                self._stored = event_stream.waiting_subjects(info.state.subjects)
                for subject in sorted(self._stored):
                    self._pull(subject)
            await asyncio.sleep(DISCOVER)

    async def _open(self) -> None:
        settings = self.settings
        if self.client is None or self.client.is_closed:
            # Kept before it connects, so that closing can stop a connect under way.
            self.client = Client()
            await self.client.connect(
                servers=list(settings.servers),
                name="kfn-activator-events",
                connect_timeout=round(CONNECT_TIMEOUT),
                reconnect_time_wait=round(RECONNECT_WAIT),
                # Forever: puts are answered 503 meanwhile, and closing cancels it.
                max_reconnect_attempts=-1,
                error_cb=_log_error,
                **dict(settings.options),
            )
        js = self.client.jetstream(timeout=API_TIMEOUT)
        wanted = event_stream.stream_config(settings)
        try:
            info = await js.stream_info(settings.stream)
        except nats.js.errors.NotFoundError:
            await js.add_stream(wanted)
        else:
            changed = event_stream.drift(info.config, wanted, event_stream.STREAM_FIELDS)
            if changed:
                logger.info("updating %s of stream %s", ", ".join(changed), settings.stream)
                update = dataclasses.replace(
                    info.config, **{name: getattr(wanted, name) for name in changed}
                )
                await js.update_stream(update)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(settings.stream, event_stream.SHARED_CONSUMER)
            logger.info(
                "removed the shared consumer %s: each function's events have their own now",
                event_stream.SHARED_CONSUMER,
            )
        self._js = js

    # --- pulling ------------------------------------------------------------------------

    def _pull(self, subject: str) -> None:
        """Pull for ``subject``'s function unless a task already does."""
        if self._stopping or self._js is None or self._feed is None or subject in self._pulls:
            return
        task = asyncio.get_running_loop().create_task(self._pulling(subject, self._js, self._feed))
        self._pulls[subject] = task

    async def _pulling(
        self, subject: str, js: nats.js.JetStreamContext, feed: event_store.Feed
    ) -> None:
        """Fetches one function's events while there is room for them, until it has had
        nothing to fetch for :data:`LANE_IDLE` (or a failure: the next listing starts it
        again, creating the consumer again if it went)."""
        settings = self.settings
        subscription = None
        try:
            config = event_stream.consumer_config(settings, subject)
            await js.add_consumer(settings.stream, config=config)  # create or update
            name = event_stream.consumer_name(settings, subject)
            subscription = await js.pull_subscribe_bind(name, settings.stream)
            last_seen = self.monotonic()
            while not self._stopping:
                room = min(feed.room(), settings.lane_window - self._held_of.get(subject, 0))
                if room <= 0:
                    last_seen = self.monotonic()
                    await asyncio.sleep(FULL_PAUSE)
                    continue
                try:
                    messages = await subscription.fetch(min(room, FETCH_BATCH), timeout=POLL)
                except TimeoutError:
                    idle = self.monotonic() - last_seen
                    if idle >= LANE_IDLE and subject not in self._stored:
                        return
                    continue
                last_seen = self.monotonic()
                for msg in messages:
                    await self._take(msg, subject, feed)
        except _ERRORS as exc:
            logger.warning("fetching events on %s: %s", subject, describe(exc))
            await asyncio.sleep(RECONNECT_WAIT)
        finally:
            if self._pulls.get(subject) is asyncio.current_task():
                del self._pulls[subject]
            if subscription is not None:
                with contextlib.suppress(*_ERRORS, ValueError):
                    await subscription.unsubscribe()

    async def _take(self, msg: Msg, subject: str, feed: event_store.Feed) -> None:
        try:
            stored = event_record.read(msg.headers, msg.data)
        except event_record.InvalidRecordError as exc:
            logger.warning("dropping a message on %s that is no kfn event: %s", msg.subject, exc)
            await self._quietly(msg.term())
            return
        event = stored.event
        now = self.clock()
        if event.due > now:
            await self._quietly(msg.nak(delay=event.due - now))
            return
        if event_record.redelivered(msg.metadata.num_delivered, stored.stored, event.due):
            feed.redelivered(event)
        held = JetStreamHeld(event, msg, subject)
        self._held.add(held)
        self._held_of[subject] = self._held_of.get(subject, 0) + 1
        self._idle.clear()
        feed.push(held)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ack_wait / 3)
            for held in list(self._held):
                await self._quietly(held.msg.in_progress())

    async def _quietly(self, step: Any) -> None:
        try:
            await step
        except _ERRORS as exc:
            logger.info("event stream: %s", describe(exc))


async def _log_error(error: Exception) -> None:
    logger.warning("event stream connection: %s", describe(error))
