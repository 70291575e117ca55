"""The bytes of records one stream worker process holds, across all its partitions and Triggers.

Each partition's buffer is bounded (:data:`~kfn.triggers.stream.batching.MAX_BUFFER_BYTES`),
but a process consuming many Triggers with many partitions each would still hold their sum.
A :class:`ByteBudget` counts the record bytes (key, value, headers) every consumer of the
process holds, buffered or in a batch in flight; past the budget every consumer pauses
fetching (:func:`~kfn.triggers.stream.batching.should_pause`) until the total fell to half
of it. It is a setting, ``KFN_STREAM_MAX_BUFFERED_MIB`` (chart value
``stream.maxBufferedMiB``), to be set well below the container's memory limit: Python's
objects around the bytes, and librdkafka's own prefetch queue per Trigger, come on top.
"""

from __future__ import annotations

import os
import threading
from typing import Final

#: The default budget: with the chart's 512 MiB limit, room for object overhead and the
#: clients' own queues.
DEFAULT_MIB: Final = 192
ENV: Final = "KFN_STREAM_MAX_BUFFERED_MIB"


class ByteBudget:
    """A process-wide count of held record bytes against a limit; safe to share between
    threads. It only counts: consumers decide from :attr:`held` whether to fetch."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"the stream worker's byte budget must be positive, not {limit}")
        self.limit = limit
        self._held = 0
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        return self._held

    def take(self, size: int) -> None:
        with self._lock:
            self._held += size

    def give(self, size: int) -> None:
        with self._lock:
            self._held -= size


def from_env() -> ByteBudget:
    """The budget ``KFN_STREAM_MAX_BUFFERED_MIB`` sets (MiB), else :data:`DEFAULT_MIB`."""
    text = os.environ.get(ENV, "").strip()
    try:
        mib = int(text) if text else DEFAULT_MIB
    except ValueError:
        raise ValueError(f"{ENV} must be a whole number of MiB, not {text!r}") from None
    return ByteBudget(mib * 1024 * 1024)
