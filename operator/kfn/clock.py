"""The clock every part of kfn reads, and the types of a clock passed in.

Decisions in kfn take the time as an argument, so they are tested without waiting; only the
code that acts reads the clock, and it takes that clock as a parameter defaulting to the one
here, so a test hands in its own. Two kinds exist:

* :data:`Clock`, wall time as an aware UTC ``datetime`` (:func:`utcnow`): what is written into
  objects (condition transition times, fire times, Lease renewals) and compared with times
  read from them.
* :data:`Seconds`, a float of seconds (``time.monotonic`` for intervals, ``time.time`` where a
  time crosses process boundaries): what rates, windows and deadlines count in.

A leaf of the standard library: it imports nothing else of kfn and does no I/O.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import TypeAlias

Clock: TypeAlias = Callable[[], datetime.datetime]
"""Returns the current time as an aware UTC ``datetime``; :func:`utcnow` is the real one."""

Seconds: TypeAlias = Callable[[], float]
"""Returns the current time in seconds: ``time.monotonic`` or ``time.time``."""


def utcnow() -> datetime.datetime:
    """The current time, aware and in UTC (``datetime.UTC``), as Kubernetes writes times."""
    return datetime.datetime.now(datetime.UTC)
