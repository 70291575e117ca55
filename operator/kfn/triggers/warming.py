"""How long a function's cold starts take, as a trigger worker sees them: pure, no I/O.

The activator tells every answer that waited for a pod how long it waited
(``Server-Timing: cold-start;dur=<ms>``, :mod:`kfn.activator.cold_start`). A worker that
knows when its next event comes (the cron worker: the next tick) wakes the function that long
ahead (:meth:`kfn.triggers.invoke.Invoker.wake`), so the event finds a pod.

The lead rule (:func:`lead_of`): the longest of the last :data:`SAMPLES` cold starts seen for
the function, plus a margin of a quarter of it (at least :data:`MIN_MARGIN`), never below
:data:`FLOOR` (also the lead before anything was measured) nor above :data:`CEILING`. The
longest rather than an average: waking early costs a few seconds of an idle pod, waking late
costs the event the rest of the cold start. A cold start that went away (a lighter image, a
warm node) leaves the estimate after :data:`SAMPLES` newer ones.

An event that waited for a cold start although its function was woken was woken too late: its
sample is the whole cold start, the time from the wake to the event's invocation plus the
wait the answer reports (:meth:`ColdStarts.observe`'s ``woken_before``), not the remainder
alone, or every wake that helped a little would shrink the lead it needed. An event that found
a pod tells nothing (no header) and changes nothing.
"""

from __future__ import annotations

import collections
import datetime
import threading
from collections.abc import Hashable, Iterable
from typing import Final

#: Cold starts remembered per function.
SAMPLES: Final = 8
#: The shortest lead, and the lead of a function never seen cold: a pod's start (about 2 s).
FLOOR: Final = datetime.timedelta(seconds=2)
#: The longest lead: past it a function's pods would idle longer than most of its waits.
CEILING: Final = datetime.timedelta(minutes=2)
#: The margin added to the longest cold start: a quarter of it, at least this.
MIN_MARGIN: Final = datetime.timedelta(milliseconds=500)

_METRIC: Final = b"cold-start"


def cold_start_ms(server_timing: bytes) -> float | None:
    """The ``cold-start`` duration (ms) of a ``Server-Timing`` header value, or None."""
    for metric in server_timing.split(b","):
        name, _, params = metric.partition(b";")
        if name.strip() != _METRIC:
            continue
        for param in params.split(b";"):
            key, _, value = param.partition(b"=")
            if key.strip() == b"dur":
                try:
                    duration = float(value.strip().strip(b'"'))
                except ValueError:
                    return None
                return duration if 0.0 <= duration < float("inf") else None
    return None


def lead_of(samples_ms: Iterable[float]) -> datetime.timedelta:
    """How long before an event to wake its function, from its recent cold starts (ms)."""
    longest = max(samples_ms, default=0.0)
    measured = datetime.timedelta(milliseconds=longest)
    lead = measured + max(measured / 4, MIN_MARGIN) if longest > 0 else FLOOR
    return min(CEILING, max(FLOOR, lead))


class ColdStarts:
    """The recent cold starts of each function (any hashable key), shared by a worker's
    threads."""

    def __init__(self, samples: int = SAMPLES) -> None:
        self._samples: dict[Hashable, collections.deque[float]] = {}
        self._size = samples
        self._lock = threading.Lock()

    def observe(
        self,
        key: Hashable,
        cold_start_ms: float | None,
        *,
        woken_before: datetime.timedelta | None = None,
    ) -> None:
        """An answer for ``key``'s function: its ``cold_start_ms`` (None: it found a pod);
        ``woken_before``, how long before the invocation the function was woken, if it was."""
        if cold_start_ms is None:
            return
        sample = cold_start_ms
        if woken_before is not None and woken_before > datetime.timedelta(0):
            sample += woken_before.total_seconds() * 1000
        with self._lock:
            self._samples.setdefault(key, collections.deque(maxlen=self._size)).append(sample)

    def lead(self, key: Hashable) -> datetime.timedelta:
        """How long before an event to wake ``key``'s function (:func:`lead_of`)."""
        with self._lock:
            return lead_of(self._samples.get(key, ()))

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._samples.pop(key, None)
