"""The request bytes all of an activator's waiting requests hold, bounded together.

A request that arrives before it has a pod keeps the body bytes received so far
(:mod:`~kfn.activator.request_body`, at most 256 KiB each before reading pauses), and
an ``Event`` invoke keeps its payload while it arrives. Each function's queue bounds
how many requests wait; this bounds what they hold across all functions, so a burst
against functions at zero cannot take the activator past its memory. A request
that would go past it is refused (503 with ``Retry-After``).
"""

from __future__ import annotations


class ByteBudget:
    """Bytes taken and given back; :meth:`take` refuses past the limit."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        """Take ``size`` bytes, or nothing (False) if that would go past the limit."""
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size
