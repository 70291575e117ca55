"""The durable event store: ``Event`` invocations in a NATS JetStream stream (nats-py).

**Putting.** An event is published to ``<prefix>.<namespace>.<function>`` of one stream
(``KFN_EVENTS`` by default; file storage, work-queue retention: a message is removed once
acknowledged) with its request id, received time and counters in headers
(:mod:`~kfn.activator.event_record`). The caller is answered 202 only after JetStream's
PubAck says it is stored; no answer in time is 503, a full stream (``maxBytes``) 429.
Every activator creates or updates the stream and the consumer at start, idempotently.

**Taking.** All activator replicas pull from one durable consumer (``kfn-activators``,
explicit acks), so any replica delivers any event, and an event whose holder dies is
delivered again by another. A replica fetches only while its invoker has room
(``window`` events ready or in flight), so events stay in the stream, not in one
replica's memory, while the functions are busy. (Fair turns between functions are taken
among the fetched events; a backlog of one function beyond every replica's window delays
the events stored behind it until it has been fetched.) A message held longer than ``ack_wait``
(30 s) would be handed out again; so every held message gets an in-progress ack every third
of ``ack_wait`` while it waits in a lane or its delivery runs (up to the function's
timeout, 15 minutes). ``ack_wait`` therefore bounds only how long the events of a
replica that was killed stay hidden before another replica delivers them.

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
import pathlib
import time
from collections.abc import Mapping
from typing import Any, Final

import nats
import nats.errors
import nats.js
import nats.js.api
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from kfn.activator import event_record, event_store
from kfn.clock import Seconds

logger = logging.getLogger(__name__)

STREAM: Final = "KFN_EVENTS"
SUBJECT_PREFIX: Final = "kfn.events"
CONSUMER: Final = "kfn-activators"
#: How long the server waits for an ack before handing a message out again.
ACK_WAIT: Final = 30.0
#: Lambda keeps an event up to 6 hours; the stream keeps one an hour longer, so the retry
#: rule (``EventAgeExceeded``, to the on-failure destination) decides its end, not the
#: store. Only an event no activator fetched for 7 hours is dropped by the stream.
MAX_AGE: Final = 7 * 3600.0
MAX_BYTES: Final = 1024**3
#: Messages handed out and not acknowledged, all replicas together (retries waiting to be
#: due included); past it the consumer hands out nothing new until some end.
MAX_ACK_PENDING: Final = 20_000
FETCH_BATCH: Final = 64
POLL: Final = 1.0
#: How often a replica whose invoker is full looks for room again.
FULL_PAUSE: Final = 0.05
CONNECT_TIMEOUT: Final = 5.0
RECONNECT_WAIT: Final = 2.0
API_TIMEOUT: Final = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Where the stream is and how it is bounded."""

    servers: tuple[str, ...]
    stream: str = STREAM
    subject_prefix: str = SUBJECT_PREFIX
    consumer: str = CONSUMER
    max_age: float = MAX_AGE
    max_bytes: int = MAX_BYTES
    max_ack_pending: int = MAX_ACK_PENDING
    ack_wait: float = ACK_WAIT
    #: nats-py ``connect`` credentials (:func:`credentials`).
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


# --- decisions (pure) --------------------------------------------------------------------------


def stream_config(settings: Settings) -> nats.js.api.StreamConfig:
    """The stream every activator wants (see the module doc)."""
    return nats.js.api.StreamConfig(
        name=settings.stream,
        description="kfn: accepted asynchronous (Event) invocations, until delivered",
        subjects=[f"{settings.subject_prefix}.>"],
        retention=nats.js.api.RetentionPolicy.WORK_QUEUE,
        storage=nats.js.api.StorageType.FILE,
        discard=nats.js.api.DiscardPolicy.NEW,
        max_age=settings.max_age,
        max_bytes=settings.max_bytes,
        # Lambda's asynchronous payload limit, and room for the headers.
        max_msg_size=256 * 1024 + 8192,
        duplicate_window=120.0,
    )


def consumer_config(settings: Settings) -> nats.js.api.ConsumerConfig:
    """The durable pull consumer all activators share."""
    return nats.js.api.ConsumerConfig(
        name=settings.consumer,
        durable_name=settings.consumer,
        description="kfn activators delivering Event invocations",
        deliver_policy=nats.js.api.DeliverPolicy.ALL,
        ack_policy=nats.js.api.AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait,
        max_deliver=-1,
        max_ack_pending=settings.max_ack_pending,
        filter_subject=f"{settings.subject_prefix}.>",
    )


def drift(existing: Any, wanted: Any, fields: tuple[str, ...]) -> list[str]:
    """The ``fields`` of an existing stream or consumer config that differ from the wanted."""
    return [name for name in fields if getattr(existing, name) != getattr(wanted, name)]


STREAM_FIELDS: Final = ("subjects", "max_age", "max_bytes", "max_msg_size", "discard")
CONSUMER_FIELDS: Final = ("ack_wait", "max_ack_pending", "filter_subject")


def credentials(files: Mapping[str, bytes]) -> dict[str, Any]:
    """nats-py ``connect`` options from a credentials Secret's keys: ``token``, or
    ``username`` and ``password``; none for an empty Secret."""
    if "token" in files:
        return {"token": files["token"].decode().strip()}
    if "username" in files:
        if "password" not in files:
            raise ValueError("the NATS credentials have a username but no password")
        return {
            "user": files["username"].decode().strip(),
            "password": files["password"].decode().strip(),
        }
    if files:
        raise ValueError(
            f"the NATS credentials have none of token, username/password: {sorted(files)}"
        )
    return {}


def read_credentials(directory: pathlib.Path) -> dict[str, Any]:
    """:func:`credentials` from a mounted Secret (one file per key)."""
    files = {
        path.name: path.read_bytes()
        for path in directory.iterdir()
        if path.is_file() and not path.name.startswith(".")
    }
    return credentials(files)


def full(error: BaseException) -> bool:
    """Whether a publish failed because the stream is at its bounds (then 429)."""
    description = getattr(error, "description", None) or ""
    return isinstance(error, nats.js.errors.APIError) and "maximum" in description


# --- the store ---------------------------------------------------------------------------------


class JetStreamHeld:
    """A message handed out to this activator, until it is ended, retried or given back."""

    __slots__ = ("event", "msg")

    def __init__(self, event: event_record.Event, msg: Msg) -> None:
        self.event = event
        self.msg = msg


class JetStreamStore:
    """Events in a JetStream stream, shared by every activator (see the module doc)."""

    durable = True

    def __init__(self, settings: Settings, *, clock: Seconds = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.client: Client | None = None
        self._js: nats.js.JetStreamContext | None = None
        self._ready = asyncio.Event()
        self._held: set[JetStreamHeld] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    # --- putting ------------------------------------------------------------------------

    async def put(self, event: event_record.Event) -> None:
        await self._publish(event)

    async def _publish(self, event: event_record.Event) -> None:
        js = self._js
        if js is None or not self._ready.is_set():
            raise event_store.StoreUnavailableError("not connected to the event stream")
        subject = event_record.subject(self.settings.subject_prefix, event.function)
        headers = event_record.headers(event, stored=self.clock())
        try:
            await js.publish(subject, event.payload, timeout=API_TIMEOUT, headers=headers)
        except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
            if full(exc):
                raise event_store.QueueFullError(str(exc)) from None
            raise event_store.StoreUnavailableError(describe(exc)) from None

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
        except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
            raise event_store.StoreUnavailableError(describe(exc)) from None

    def _forget(self, held: JetStreamHeld) -> None:
        self._held.discard(held)
        if not self._held:
            self._idle.set()

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, feed: event_store.Feed) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(feed)), loop.create_task(self._heartbeats())]

    async def stop_taking(self) -> None:
        """Ends the fetch loop after its fetch under way: a fetch cancelled would leave its
        pull request open at the server, which would hand it messages (those given back
        among them) that nobody here reads until their ack wait ends."""
        self._stopping = True
        if self._tasks:
            fetching = self._tasks[0]
            # Not connected yet: no pull request is open, nothing to wait for.
            wait = POLL + API_TIMEOUT if self._ready.is_set() else 0
            done, _ = await asyncio.wait([fetching], timeout=wait)
            if not done:
                fetching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fetching

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def close(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=API_TIMEOUT)
        self._tasks = []
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
            except (nats.errors.Error, OSError, TimeoutError, RuntimeError) as exc:
                logger.info("closing the event stream connection: %s", describe(exc))

    async def wait_ready(self) -> None:
        """Until connected, the stream and consumer in place (for tests and start-up)."""
        await self._ready.wait()

    # --- the loops ----------------------------------------------------------------------

    async def _run(self, feed: event_store.Feed) -> None:
        subscription = None
        while subscription is None:
            try:
                subscription = await self._open()
            except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
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
        while not self._stopping:
            room = feed.room()
            if room <= 0:
                await asyncio.sleep(FULL_PAUSE)
                continue
            try:
                messages = await subscription.fetch(min(room, FETCH_BATCH), timeout=POLL)
            except TimeoutError:
                continue
            except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                logger.warning("fetching events: %s", describe(exc))
                await asyncio.sleep(RECONNECT_WAIT)
                continue
            for msg in messages:
                await self._take(msg, feed)

    async def _open(self) -> nats.js.JetStreamContext.PullSubscription:
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
        wanted = stream_config(settings)
        try:
            info = await js.stream_info(settings.stream)
        except nats.js.errors.NotFoundError:
            await js.add_stream(wanted)
        else:
            changed = drift(info.config, wanted, STREAM_FIELDS)
            if changed:
                logger.info("updating %s of stream %s", ", ".join(changed), settings.stream)
                update = dataclasses.replace(
                    info.config, **{name: getattr(wanted, name) for name in changed}
                )
                await js.update_stream(update)
        consumer = consumer_config(settings)
        try:
            existing = await js.consumer_info(settings.stream, settings.consumer)
        except nats.js.errors.NotFoundError:
            await js.add_consumer(settings.stream, config=consumer)
        else:
            changed = drift(existing.config, consumer, CONSUMER_FIELDS)
            if changed:
                logger.info("updating %s of consumer %s", ", ".join(changed), settings.consumer)
                update = dataclasses.replace(
                    existing.config, **{name: getattr(consumer, name) for name in changed}
                )
                await js.add_consumer(settings.stream, config=update)  # create or update
        self._js = js
        return await js.pull_subscribe_bind(durable=settings.consumer, stream=settings.stream)

    async def _take(self, msg: Msg, feed: event_store.Feed) -> None:
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
        held = JetStreamHeld(event, msg)
        self._held.add(held)
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
        except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
            logger.info("event stream: %s", describe(exc))


async def _log_error(error: Exception) -> None:
    logger.warning("event stream connection: %s", describe(error))


def describe(error: BaseException) -> str:
    if isinstance(error, nats.js.errors.APIError) and error.description:
        return error.description
    return str(error) or type(error).__name__
