"""Carries one batch through the function: the loop both Kafka and JetStream consumers run.

:func:`run_batch` follows :mod:`~kfn.triggers.stream.batching`'s decisions and performs
them through a :class:`Source` (what to send, where failed records go, how progress is
committed). Progress is committed in position order only: after each step the longest
prefix of the batch that is finished (delivered or given up) is committed, so a crash at
any point redelivers exactly the unfinished records and those after them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from kfn import retry
from kfn.clock import Seconds
from kfn.triggers.stream import batching

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Source(Protocol[T]):
    """What a consumer provides to :func:`run_batch`; every method may block."""

    def invoke(self, records: Sequence[batching.Record[T]], attempt: int) -> retry.Outcome:
        """Invokes the function with an event of these records."""

    def give_up(self, dead: batching.DeadLetter[T], last: retry.Outcome | None) -> bool:
        """Sends given-up records to onFailure (or logs them), with the function's last
        answer in the batch; False when stopped first."""

    def commit(self, last: batching.Record[T]) -> None:
        """Everything up to and including ``last`` is finished."""

    def observe(self, outcome: retry.Outcome, records: int) -> None:
        """Hears each answer (for status and metrics)."""

    def delivered(self, records: int) -> None:
        """The function succeeded for this many more records."""


@dataclasses.dataclass
class Progress(Generic[T]):
    """Which records of a batch are finished, and up to where that was committed."""

    batch: Sequence[batching.Record[T]]
    finished: set[int] = dataclasses.field(default_factory=set)
    committed: int = 0

    def finish(self, records: Sequence[batching.Record[T]]) -> batching.Record[T] | None:
        """Marks records finished; the last record of the newly finished prefix, if any."""
        self.finished.update(r.position for r in records)
        start = self.committed
        while (
            self.committed < len(self.batch)
            and self.batch[self.committed].position in self.finished
        ):
            self.committed += 1
        return self.batch[self.committed - 1] if self.committed > start else None


def run_batch(
    batch: Sequence[batching.Record[T]],
    policy: batching.Policy,
    source: Source[T],
    *,
    cancel: threading.Event,
    clock: Seconds = time.time,
    on_retry: Callable[[int], None] | None = None,
) -> bool:
    """Runs a batch until it is finished and committed (True) or ``cancel`` is set (False,
    nothing more committed: the rest is delivered again by whoever consumes next)."""
    pending = batching.begin(batch)
    progress = Progress(batch)
    last: retry.Outcome | None = None
    attempt = 0
    while True:
        now = clock()
        step = batching.next_step(pending, policy, now)
        if isinstance(step, batching.Finished):
            return True
        if isinstance(step, batching.Wait):
            if cancel.wait(max(0.0, step.until - now)):
                return False
            continue
        if isinstance(step, batching.Expire):
            expired = batching.DeadLetter(step.records, "RecordAgeExceeded", step.invokes)
            if not source.give_up(expired, last):
                return False
            _commit(source, progress, step.records)
            pending = step.rest
            continue
        if cancel.is_set():
            return False
        attempt += 1
        outcome = source.invoke(step.records, attempt)
        last = outcome
        source.observe(outcome, len(step.records))
        kind = batching.stream_kind(outcome.kind, outcome.status)
        failed = None
        if kind == "success" and policy.report_item_failures:
            failed = batching.failed_from(outcome.body, [r.position for r in step.records])
        following = batching.after_invoke(pending, batching.Outcome(kind, failed), policy, now)
        if following.retried and on_retry is not None:
            on_retry(len(following.pending.segments[0].records))
        for effect in following.effects:
            if isinstance(effect, batching.Done):
                source.delivered(len(effect.records))
            if isinstance(effect, batching.DeadLetter) and not source.give_up(effect, outcome):
                return False
            _commit(source, progress, effect.records)
        pending = following.pending


def _commit(
    source: Source[T], progress: Progress[T], records: Sequence[batching.Record[T]]
) -> None:
    last = progress.finish(records)
    if last is not None:
        source.commit(last)
