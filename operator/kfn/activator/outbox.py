"""Writes of one round of the event loop leave together, at the round's end.

Every write on a socket is a system call that also wakes the process on the other end
(the client, or the function's pod). When the proxy wrote as soon as it had something, the
writes of one round of events (a loaded activator handles dozens of reads per round) were
spread over the round's Python work, and the peer, woken by the first, was often asleep
again by the next: on the activator's benchmark those wake-ups were about a seventh of its
CPU time per request. Held until the round's events are handled, the round's writes go
out back to back, and a peer woken by one is still awake for the next
(``bench/README-activator.md``).

A writer (a client connection's response bytes, a pod connection's request bytes) asks
once per round; the first ask of a round schedules the one callback that writes them all,
which the loop runs before it waits for events again. Nothing waits longer than the
round it was produced in, and a writer that ended meanwhile writes nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import typing


class Writer(typing.Protocol):
    """Something holding bytes to write when the round ends."""

    def write_out(self) -> None:
        """Write what is held, now."""


class Outbox:
    """The writers waiting for the end of the current round (see the module doc)."""

    __slots__ = ("_context", "_waiting")

    def __init__(self) -> None:
        self._waiting: list[Writer] = []
        #: The writes read no context variables: given one, the loop does not copy the
        #: caller's for every round (half the cost of scheduling the callback).
        self._context = contextvars.Context()

    def add(self, writer: Writer) -> None:
        """Have ``writer`` write at the end of this round; once per round is enough."""
        waiting = self._waiting
        waiting.append(writer)
        if len(waiting) == 1:
            asyncio.get_running_loop().call_soon(self._write_out, context=self._context)

    def _write_out(self) -> None:
        waiting, self._waiting = self._waiting, []
        for writer in waiting:
            writer.write_out()
