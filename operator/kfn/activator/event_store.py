"""Where accepted ``Event`` invocations wait: the store interface, and the in-memory store.

The asynchronous invoker (:mod:`~kfn.activator.async_invoke`) delivers events; a store
keeps them between being accepted and being ended, and hands them to the invoker's lanes
when they are due. Two stores:

* :class:`MemoryStore` (``--events-store=memory``): a bounded count of events in this
  process. **At most once**: an activator that is killed, runs out of memory or loses its
  node loses the events it holds, retries waiting included. For development, or where a
  lost event costs nothing.
* :class:`~kfn.activator.event_jetstream.JetStreamStore` (``--events-store=jetstream``):
  events in a NATS JetStream stream, acknowledged to the caller only once stored, shared by
  every activator replica. **At least once**: an event whose holder dies is delivered
  again by another activator (so, rarely, twice).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Protocol

from kfn.activator import event_record


class QueueFullError(Exception):
    """The store holds as many events as it may; the caller is answered 429."""


class StoreUnavailableError(Exception):
    """The store cannot take the event now (not connected, or it did not confirm in time);
    the caller is answered 503 and sends it again."""


class Held(Protocol):
    """An event the store handed out, until it is ended, put back or retried."""

    @property
    def event(self) -> event_record.Event: ...


class Feed(Protocol):
    """What a store hands due events to (the invoker's lanes)."""

    def push(self, held: Held) -> None: ...

    def room(self) -> int:
        """How many more events the feed takes now (a durable store fetches no more)."""
        ...

    def redelivered(self, event: event_record.Event) -> None:
        """The store handed out ``event`` again after a holder lost it: it may run twice."""
        ...


class Store(Protocol):
    """Keeps events from acceptance to their end. See the module doc for the two kinds."""

    #: Whether events not started can be given back at shutdown (another activator
    #: delivers them) instead of being delivered before the process stops.
    durable: bool

    async def put(self, event: event_record.Event) -> None:
        """Store a new event; when this returns, the caller may be told it is accepted.
        Raises :class:`QueueFullError` or :class:`StoreUnavailableError`."""
        ...

    async def again(self, held: Held, delay: float) -> None:
        """The held event (its counters updated) is due again in ``delay`` seconds."""
        ...

    async def end(self, held: Held) -> None:
        """The held event ended (delivered, or handed to the on-failure destination)."""
        ...

    async def give_back(self, held: Held) -> None:
        """A held event not started goes back to be delivered (by any activator, for a
        durable store; the invoker gives back only to a durable one at shutdown)."""
        ...

    def start(self, feed: Feed) -> None:
        """Begin handing due events to ``feed``."""
        ...

    async def stop_taking(self) -> None:
        """Hand out no more events (the activator is stopping)."""
        ...

    async def wait_idle(self) -> None:
        """Until no event this store handed out, or holds in this process, is left."""
        ...

    async def close(self) -> None: ...


@dataclasses.dataclass(slots=True)
class MemoryHeld:
    event: event_record.Event


class MemoryStore:
    """Events in this process's memory, bounded in count (see the module doc)."""

    durable = False

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        #: Events accepted and not ended, retries waiting included.
        self.outstanding = 0
        self._feed: Feed | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    async def put(self, event: event_record.Event) -> None:
        if self._feed is None:
            raise StoreUnavailableError("the event store is not started")
        if self.outstanding >= self.capacity:
            raise QueueFullError(str(event.function))
        self.outstanding += 1
        self._idle.clear()
        self._feed.push(MemoryHeld(event))

    async def again(self, held: Held, delay: float) -> None:
        feed = self._feed
        assert feed is not None
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(timer)
            feed.push(held)

        timer = loop.call_later(delay, fire)
        self._timers.add(timer)

    async def end(self, held: Held) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self._idle.set()

    async def give_back(self, held: Held) -> None:
        """No other activator can take it: the event goes back to this one's lanes."""
        assert self._feed is not None
        self._feed.push(held)

    def start(self, feed: Feed) -> None:
        self._feed = feed

    async def stop_taking(self) -> None:
        """Nothing to stop: events in memory are delivered until the drain ends."""

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
