"""Fair delivery of ``Event`` invocations: one lane per function, taken in turn.

The activator's delivery workers are shared by every function. Taken first come,
first served, one function's burst, or a function that is slow or cold (each
delivery waiting up to its queue timeout for a pod), would hold every worker while
other functions' events wait. So ready events queue per function, and a free worker
takes from the next function in a round over those with ready events, skipping a
function that already has ``per_function`` deliveries in flight. A function at its
cap keeps its place in the round; it is served again as soon as one of its
deliveries ends.

Pure: no I/O and no clock; the order is decided by the calls alone, so tests state
it exactly.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class Lanes(Generic[K, T]):
    """Ready items per key, handed out in a round robin under a per-key cap."""

    def __init__(self, per_function: int) -> None:
        if per_function < 1:
            raise ValueError("per_function must be at least 1")
        self.per_function = per_function
        self._ready: dict[K, collections.deque[T]] = {}
        #: Keys with ready items, in the order the round visits them.
        self._ring: collections.deque[K] = collections.deque()
        self._in_flight: dict[K, int] = {}
        self.waiting = 0

    def push(self, key: K, item: T) -> None:
        """An item is ready; it joins the end of its key's lane."""
        lane = self._ready.get(key)
        if lane is None:
            lane = self._ready[key] = collections.deque()
            self._ring.append(key)
        lane.append(item)
        self.waiting += 1

    def take(self) -> tuple[K, T] | None:
        """The next item in the round, or None when every key with items is at its cap.

        The key taken moves to the end of the round; keys skipped at their cap keep
        their places, so they come first once they have room.
        """
        ring = self._ring
        for position, key in enumerate(ring):
            if self._in_flight.get(key, 0) >= self.per_function:
                continue
            lane = self._ready[key]
            item = lane.popleft()
            del ring[position]
            if lane:
                ring.append(key)
            else:
                del self._ready[key]
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            self.waiting -= 1
            return key, item
        return None

    def done(self, key: K) -> None:
        """An item of ``key`` that was taken has ended."""
        left = self._in_flight[key] - 1
        if left:
            self._in_flight[key] = left
        else:
            del self._in_flight[key]

    def in_flight(self, key: K) -> int:
        return self._in_flight.get(key, 0)

    @property
    def busy(self) -> int:
        """Items taken and not done, over all keys."""
        return sum(self._in_flight.values())

    def drain(self) -> Iterator[tuple[K, T]]:
        """Removes and yields every ready item (a stopping activator gives them back)."""
        while self._ring:
            key = self._ring.popleft()
            for item in self._ready.pop(key):
                self.waiting -= 1
                yield key, item
