"""Asynchronous (``Event``) invocations: accept once stored, deliver fairly with retries.

As Lambda does: the caller gets 202 and a request id as soon as the event is stored
(:mod:`~kfn.activator.event_store`: in this process's memory, or in NATS JetStream);
delivery goes through the same call path as synchronous requests
(:mod:`~kfn.activator.call`), so an event wakes a function at zero and never exceeds its
concurrency. Failures are retried, then handed to an on-failure :class:`Destination` —
every event ends in success or a named destination, never silently, and each one given up
is counted (``kfn_function_async_events_dropped_total``, by reason). Accepted events,
each attempt's age and failed deliveries to the destination are counted too
(:class:`Counters`).

Retry policy: :mod:`kfn.retry` (Lambda's defaults, configurable), the same rules the
trigger workers apply to cron ticks and bucket notifications. A function the activator
does not know (deleted while its events wait) ends its events as ``ResourceNotFound``
after a short grace (:func:`kfn.activator.event_record.on_missing`).

Fairness: ``workers`` delivery tasks are shared by all functions, and take events from
per-function lanes in turn (:mod:`~kfn.activator.lanes`), at most ``per_function`` of one
function's at once, so a slow or cold function cannot hold every worker.

A worker survives whatever one delivery does: an error, or a cancellation that is not
its own (a function deleted fails its queued deliveries with
:class:`~kfn.activator.throttler.FunctionGoneError`; a stray ``CancelledError`` from a
delivery is treated as a failed attempt). Only cancelling the worker task itself (at
shutdown) ends it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from kfn import retry, stats
from kfn.activator import event_record, event_store, lanes
from kfn.clock import Seconds

logger = logging.getLogger(__name__)

Outcome = retry.Outcome
Event = event_record.Event
QueueFullError = event_store.QueueFullError


class FunctionMissingError(Exception):
    """The activator does not know the event's function (deleted, or not known yet)."""


@dataclasses.dataclass(frozen=True, slots=True)
class FailedEvent:
    """What an on-failure destination receives (Lambda's destination record, in short)."""

    function: stats.FunctionKey
    request_id: str
    payload: bytes
    attempts: int
    condition: str  # "RetriesExhausted" | "EventAgeExceeded" | "Rejected" | "ResourceNotFound"
    status: int
    response: bytes

    @classmethod
    def of(cls, event: Event, condition: str) -> FailedEvent:
        last = event.last or Outcome(status=0)
        return cls(
            function=event.function,
            request_id=event.request_id,
            payload=event.payload,
            attempts=event.attempts + event.throttled + (1 if condition == "Rejected" else 0),
            condition=condition,
            status=last.status,
            response=last.body,
        )


class Destination(Protocol):
    """Where an event goes when it cannot be delivered (wired to a destination later)."""

    async def on_failure(self, record: FailedEvent) -> None: ...


class Counters(Protocol):
    """What the invoker counts (:class:`kfn.activator.metrics.Metrics`)."""

    def event_received(self, function: stats.FunctionKey) -> None: ...

    def event_attempted(self, function: stats.FunctionKey, age: float) -> None:
        """An attempt to hand the event to a pod began, ``age`` seconds after acceptance."""

    def event_dropped(self, function: stats.FunctionKey, reason: str) -> None: ...

    def event_redelivered(self, function: stats.FunctionKey) -> None: ...

    def destination_failed(self, function: stats.FunctionKey) -> None: ...


class _Uncounted:
    def event_received(self, function: stats.FunctionKey) -> None:
        pass

    def event_attempted(self, function: stats.FunctionKey, age: float) -> None:
        pass

    def event_dropped(self, function: stats.FunctionKey, reason: str) -> None:
        pass

    def event_redelivered(self, function: stats.FunctionKey) -> None:
        pass

    def destination_failed(self, function: stats.FunctionKey) -> None:
        pass


#: Delivers one event to the function: (function, request id, payload) -> outcome.
#: Raises :class:`FunctionMissingError` when the function is not known.
Deliver = Callable[[stats.FunctionKey, str, bytes], Awaitable[Outcome]]


class AsyncInvoker:
    """The delivery workers of accepted events, over a store and fair lanes."""

    def __init__(
        self,
        deliver: Deliver,
        destination: Destination,
        store: event_store.Store,
        *,
        workers: int = 64,
        per_function: int = 16,
        window: int = 1024,
        retries: int = 2,
        retry_delays: tuple[float, ...] = retry.LAMBDA_RETRY_DELAYS,
        throttle_backoff: tuple[float, float] = retry.THROTTLE_BACKOFF,
        max_event_age: float = 6 * 3600.0,
        missing_grace: float = event_record.MISSING_GRACE,
        counters: Counters | None = None,
        clock: Seconds = time.time,
    ) -> None:
        self.deliver = deliver
        self.destination = destination
        self.store = store
        self.policy = retry.Policy(retries, max_event_age, retry_delays, throttle_backoff)
        self.missing_grace = missing_grace
        self.counters = counters or _Uncounted()
        self.clock = clock
        #: Events handed over by the store and not ended here, ready or in flight: a
        #: durable store fetches no more than ``window`` ahead.
        self.window = window
        self.lanes: lanes.Lanes[stats.FunctionKey, event_store.Held] = lanes.Lanes(per_function)
        #: When each function not known was first found missing (see ``on_missing``).
        self._missing: dict[stats.FunctionKey, float] = {}
        self._wakeup = asyncio.Event()
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []

    # --- accepting ----------------------------------------------------------------------

    async def submit(self, function: stats.FunctionKey, payload: bytes) -> str:
        """Store an event; returns its request id once stored. Raises the store's
        :class:`~kfn.activator.event_store.QueueFullError` or ``StoreUnavailableError``."""
        now = self.clock()
        event = Event(function, str(uuid.uuid4()), payload, now, due=now)
        await self.store.put(event)
        self.counters.event_received(function)
        return event.request_id

    # --- the feed the store pushes into -------------------------------------------------

    def push(self, held: event_store.Held) -> None:
        self.lanes.push(held.event.function, held)
        self._wakeup.set()

    def room(self) -> int:
        return self.window - self.lanes.waiting - self.lanes.busy

    def redelivered(self, event: Event) -> None:
        logger.info("event %s of %s delivered again by the store", event.request_id, event.function)
        self.counters.event_redelivered(event.function)

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.store.start(self)
        self._tasks = [loop.create_task(self._work()) for _ in range(self._workers)]

    async def wait_idle(self) -> None:
        """Until every event handed out here has ended (a memory store: every accepted one)."""
        await self.store.wait_idle()

    async def drain(self) -> None:
        """A stopping activator: fetch nothing more, give back what a durable store can
        hand to another activator, and wait for the rest (the caller bounds the wait)."""
        await self.store.stop_taking()
        if self.store.durable:
            for _, held in list(self.lanes.drain()):
                await self._safely(self.store.give_back(held), held.event, "giving back")
        await self.store.wait_idle()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.store.close()

    # --- delivering ---------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            taken = self.lanes.take()
            if taken is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            function, held = taken
            try:
                await self._attempt(held)
            except asyncio.CancelledError:
                if _cancelling():
                    raise
                logger.exception("handling event %s was cancelled", held.event.request_id)
            except Exception:
                logger.exception("handling event %s failed unexpectedly", held.event.request_id)
            finally:
                self.lanes.done(function)
                # A lane at its cap may have ready events again.
                self._wakeup.set()

    async def _attempt(self, held: event_store.Held) -> None:
        event = held.event
        now = self.clock()
        self.counters.event_attempted(event.function, now - event.received)
        try:
            outcome: Outcome | None = await self.deliver(
                event.function, event.request_id, event.payload
            )
        except FunctionMissingError:
            outcome = None
        except (OSError, TimeoutError) as exc:
            outcome = Outcome(status=0, body=str(exc).encode())
        except asyncio.CancelledError:
            if _cancelling():
                raise
            # Not this worker's cancellation: something under the delivery was cancelled.
            outcome = Outcome(status=0, body=b"the delivery was cancelled")
        now = self.clock()
        decision: retry.Decision
        if outcome is None:
            first = self._missing.setdefault(event.function, now)
            decision = event_record.on_missing(first, now, self.missing_grace)
            if isinstance(decision, retry.GiveUp):
                event.last = Outcome(404, b"the function does not exist (deleted?)")
        else:
            self._missing.pop(event.function, None)
            event.last = outcome
            kind = outcome.kind
            if kind == "throttled":
                event.throttled += 1
            elif kind == "function-error":
                event.attempts += 1
            decision = retry.decide(
                self.policy,
                kind,
                failures=event.attempts,
                throttles=event.throttled,
                age=now - event.received,
            )
        if isinstance(decision, retry.Done):
            await self._safely(self.store.end(held), event, "ending")
        elif isinstance(decision, retry.GiveUp):
            await self._give_up(held, decision.condition)
        else:
            event.due = now + decision.delay
            await self._safely(self.store.again(held, decision.delay), event, "retrying")

    async def _give_up(self, held: event_store.Held, condition: str) -> None:
        event = held.event
        self.counters.event_dropped(event.function, condition)
        try:
            await self.destination.on_failure(FailedEvent.of(event, condition))
        except Exception:
            self.counters.destination_failed(event.function)
            raise
        finally:
            await self._safely(self.store.end(held), event, "ending")

    async def _safely(self, step: Awaitable[None], event: Event, doing: str) -> None:
        """A store step that fails leaves the event to the store (a durable store hands it
        out again after its ack wait); it never stops the worker."""
        try:
            await step
        except event_store.StoreUnavailableError as exc:
            logger.warning("%s event %s: the store failed: %s", doing, event.request_id, exc)


def _cancelling() -> bool:
    """Whether the running task itself is being cancelled (shutdown), as opposed to a
    ``CancelledError`` raised out of something it awaited."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class LoggingDestination:
    """The destination until one is configured: logs the failed event, loudly."""

    async def on_failure(self, record: FailedEvent) -> None:
        logger.error(
            "event %s for %s failed (%s after %d attempts, last status %d)",
            record.request_id,
            record.function,
            record.condition,
            record.attempts,
            record.status,
        )
