"""Deadlines of client connections: a request head read in time, an idle connection closed.

A connection is in one of four states as far as its client's pace goes:

* ``fresh`` — open, nothing received yet: its first request head is due within
  ``head_timeout`` of the connection's start; past it the connection is closed.
* ``head`` — a request head is arriving: it must be whole within ``head_timeout`` of
  its first byte (of the connection's start for the first request); past it, 408.
* ``idle`` — a keep-alive connection between requests: closed after ``idle_timeout``.
* ``busy`` — a request is being served: its function's timeout governs, not these.

:func:`verdict` decides (pure, time passed in); :class:`Watchdog` sweeps every open
connection a few times per the shortest timeout and acts. The proxy only notes when
a connection started waiting (one clock read per request), so the hot path carries
no timer per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import Final, Literal, Protocol

from kfn.activator import bounds as limits

State = Literal["fresh", "head", "idle", "busy"]
#: Answer 408 and close.
HEAD_LATE: Final = "head-late"
#: Close without an answer (nothing of a request was received).
CLOSE: Final = "close"


def verdict(
    state: State, since: float, now: float, bounds: limits.Bounds
) -> Literal["head-late", "close"] | None:
    """What is due to a connection in ``state`` since ``since``; None while in time."""
    if state == "busy":
        return None
    if state == "idle":
        return CLOSE if now - since >= bounds.idle_timeout else None
    if now - since < bounds.head_timeout:
        return None
    return HEAD_LATE if state == "head" else CLOSE


def tick(bounds: limits.Bounds) -> float:
    """How often connections are swept: a tenth of the shortest timeout, 10 ms to 1 s."""
    return min(1.0, max(0.01, min(bounds.head_timeout, bounds.idle_timeout) / 10))


class Watched(Protocol):
    """A client connection as the watchdog sees it."""

    #: When the connection started waiting for its client (the event loop's clock).
    since: float

    def waiting(self) -> State: ...

    def head_late(self) -> None:
        """Answer 408 and close."""

    def close_idle(self) -> None:
        """Close a connection with no request in progress."""


class Watchdog:
    """Sweeps client connections and ends the ones past their deadline."""

    def __init__(
        self,
        connections: Callable[[], Collection[Watched]],
        bounds: limits.Bounds,
    ) -> None:
        self.connections = connections
        self.bounds = bounds

    def sweep(self, now: float) -> None:
        bounds = self.bounds
        for conn in list(self.connections()):
            due = verdict(conn.waiting(), conn.since, now, bounds)
            if due == HEAD_LATE:
                conn.head_late()
            elif due == CLOSE:
                conn.close_idle()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = tick(self.bounds)
        while True:
            await asyncio.sleep(interval)
            self.sweep(loop.time())
