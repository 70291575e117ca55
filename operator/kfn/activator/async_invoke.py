"""Asynchronous (``Event``) invocations: accept at once, deliver with retries.

As Lambda does: the caller gets 202 and a request id as soon as the event is
queued; delivery goes through the same throttler as synchronous requests (so an
event wakes a function at zero and never exceeds its concurrency). Failures are
retried, then handed to an on-failure :class:`Destination` — every event ends in
success or a named destination, never silently.

Retry policy: :mod:`kfn.retry` (Lambda's defaults, configurable), the same rules the
trigger workers apply to cron ticks and bucket notifications.

The queue is in memory and bounded (``capacity`` events accepted and not yet
finished, retries waiting included); past it :meth:`AsyncInvoker.submit` raises
:class:`QueueFullError` and the caller answers 429.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from kfn import retry, stats
from kfn.clock import Seconds

logger = logging.getLogger(__name__)


class QueueFullError(Exception):
    """The event queue is at capacity."""


Outcome = retry.Outcome


@dataclasses.dataclass(slots=True)
class Event:
    """An accepted asynchronous invocation."""

    function: stats.FunctionKey
    request_id: str
    payload: bytes
    received: float
    attempts: int = 0
    throttled: int = 0
    last: Outcome | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class FailedEvent:
    """What an on-failure destination receives (Lambda's destination record, in short)."""

    function: stats.FunctionKey
    request_id: str
    payload: bytes
    attempts: int
    condition: str  # "RetriesExhausted" | "EventAgeExceeded" | "Rejected"
    status: int
    response: bytes


class Destination(Protocol):
    """Where an event goes when it cannot be delivered (wired to a destination later)."""

    async def on_failure(self, record: FailedEvent) -> None: ...


#: Delivers one event to the function: (function, request id, payload) -> outcome.
Deliver = Callable[[stats.FunctionKey, str, bytes], Awaitable[Outcome]]


class AsyncInvoker:
    """The bounded in-memory queue of events and its delivery workers."""

    def __init__(
        self,
        deliver: Deliver,
        destination: Destination,
        *,
        capacity: int = 10_000,
        workers: int = 64,
        retries: int = 2,
        retry_delays: tuple[float, ...] = retry.LAMBDA_RETRY_DELAYS,
        throttle_backoff: tuple[float, float] = retry.THROTTLE_BACKOFF,
        max_event_age: float = 6 * 3600.0,
        clock: Seconds = time.monotonic,
    ) -> None:
        self.deliver = deliver
        self.destination = destination
        self.capacity = capacity
        self.policy = retry.Policy(retries, max_event_age, retry_delays, throttle_backoff)
        self.clock = clock
        self.outstanding = 0
        self._ready: collections.deque[Event] = collections.deque()
        self._wakeup = asyncio.Event()
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, function: stats.FunctionKey, payload: bytes) -> str:
        """Accept an event; returns its request id. Raises QueueFullError when full."""
        if self.outstanding >= self.capacity:
            raise QueueFullError(str(function))
        event = Event(function, str(uuid.uuid4()), payload, self.clock())
        self.outstanding += 1
        self._idle.clear()
        self._enqueue(event)
        return event.request_id

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work()) for _ in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    async def wait_idle(self) -> None:
        """Until every accepted event has ended (delivered or handed to the destination)."""
        await self._idle.wait()

    def _enqueue(self, event: Event) -> None:
        self._ready.append(event)
        self._wakeup.set()

    async def _work(self) -> None:
        while True:
            while not self._ready:
                self._wakeup.clear()
                await self._wakeup.wait()
            event = self._ready.popleft()
            try:
                await self._attempt(event)
            except Exception:
                logger.exception("delivering event %s failed unexpectedly", event.request_id)
                self._finish()

    async def _attempt(self, event: Event) -> None:
        try:
            outcome = await self.deliver(event.function, event.request_id, event.payload)
        except (OSError, TimeoutError) as exc:
            outcome = Outcome(status=0, body=str(exc).encode())
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
            age=self.clock() - event.received,
        )
        if isinstance(decision, retry.Done):
            self._finish()
        elif isinstance(decision, retry.GiveUp):
            await self._fail(event, decision.condition)
        else:
            self._later(decision.delay, event)

    def _later(self, delay: float, event: Event) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(timer)
            self._enqueue(event)

        timer = loop.call_later(delay, fire)
        self._timers.add(timer)

    async def _fail(self, event: Event, condition: str) -> None:
        last = event.last or Outcome(status=0)
        record = FailedEvent(
            function=event.function,
            request_id=event.request_id,
            payload=event.payload,
            attempts=event.attempts + event.throttled + (1 if condition == "Rejected" else 0),
            condition=condition,
            status=last.status,
            response=last.body,
        )
        try:
            await self.destination.on_failure(record)
        finally:
            self._finish()

    def _finish(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self._idle.set()


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
