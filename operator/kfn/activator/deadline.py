"""The one timer of a client connection: the bound of the request it serves now.

Every request has a bound at a time (:mod:`~kfn.activator.waiting` decides which): its
wait for a pod, then its run. A connection serves one request at a time, so one timer
per connection is enough, and it is moved rather than made anew: a loop timer made and
cancelled per request cost about a tenth of the activator's work on a warm request
(``bench/README-activator.md``), while moving a deadline later is two stores.

:class:`Deadline` keeps the loop timer set no later than the bound. When it fires
before the bound (the bound moved later since, or its request ended and another
began), it is set again for the bound; when nothing holds it, it stops. So a busy
keep-alive connection costs one timer per bound's length, not one per request. The
timer is cancelled when the connection ends, so closed connections leave none behind.
"""

from __future__ import annotations

import asyncio
import typing

#: A bound due within this much of the timer firing is due now: a loop timer's clock is
#: coarser than the loop's (libuv counts milliseconds).
SLACK = 0.001


class Owner(typing.Protocol):
    """What holds a deadline: a request, told when its bound runs out."""

    def on_timeout(self) -> None: ...


class Deadline:
    """One connection's timer, held by the request it serves (see the module doc)."""

    __slots__ = ("_armed", "_handle", "_loop", "_owner", "_when")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None
        #: When the loop timer fires, and when the owner's bound runs out (never earlier).
        self._armed = 0.0
        self._when = 0.0
        self._owner: Owner | None = None

    def hold(self, owner: Owner, when: float) -> None:
        """``owner``'s bound runs out at ``when`` (the loop's clock), replacing any other."""
        self._owner = owner
        self._when = when
        handle = self._handle
        if handle is None or when < self._armed:
            if handle is not None:
                handle.cancel()
            self._armed = when
            self._handle = self._loop.call_at(when, self._fire)

    def holds(self, owner: Owner) -> bool:
        return self._owner is owner

    def release(self, owner: Owner) -> None:
        """``owner`` has no bound any more (it ended); the timer, if set, fires idle once."""
        if self._owner is owner:
            self._owner = None

    def close(self) -> None:
        """The connection ended: no timer is left behind."""
        self._owner = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        owner = self._owner
        if owner is None:
            return
        when = self._when
        if when > self._loop.time() + SLACK:
            self._armed = when
            self._handle = self._loop.call_at(when, self._fire)
            return
        self._owner = None
        owner.on_timeout()
