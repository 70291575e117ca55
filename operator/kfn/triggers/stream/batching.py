"""Every decision a stream consumer makes, as pure functions of records, outcomes and time.

The consumers (:mod:`~kfn.triggers.stream.kafka`, :mod:`~kfn.triggers.stream.nats`) only
fetch, invoke, send and commit; what to invoke next, when, and what is finished is decided
here, with the time passed in, so the Lambda semantics are tested without a broker or a
clock:

* :func:`cut` and :func:`ready` gather a batch: at most ``batchSize`` records (and at most
  :data:`MAX_PAYLOAD_BYTES` of event), invoked once full or once the oldest buffered record
  waited ``maxBatchingWindow``.
* :class:`Pending` is one batch of one partition on its way through the function. It is a
  queue of :class:`Segment` s processed strictly in order: bisecting a failed segment
  replaces it by its two halves, a partial failure
  (``reportBatchItemFailures``) by the records from the first failed one.
  :func:`next_step` says what to do now (invoke, wait for a backoff, send expired records to
  onFailure, or finished) and :func:`after_invoke` turns an outcome into the next state plus
  the effects (records done, records to send to onFailure), which the consumer performs in
  order before committing.

Retries follow Lambda: a function error retries the segment after a backoff of 1 s doubling
to 30 s, at most ``maxRetries`` times (unlimited with -1, bounded by ``maxRecordAge``); a
bisect split does not count as a retry; throttling and an unavailable function never use up
retries but back off the same way, indefinitely.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Sequence
from typing import Final, Generic, Literal, TypeVar

from kfn import retry
from kfn.api import meta
from kfn.api import trigger as trigger_api

#: Lambda's limit on a synchronous request; a batch is cut before its event would exceed it.
MAX_PAYLOAD_BYTES: Final = 6 * 1024 * 1024
#: Fixed bytes an event adds to its records (envelope, keys, partition names), a safe bound.
ENVELOPE_BYTES: Final = 1024
#: Per record: field names, offset, timestamp, headers' framing.
RECORD_OVERHEAD_BYTES: Final = 256
#: Bytes of records buffered per partition before its fetching pauses.
MAX_BUFFER_BYTES: Final = 16 * 1024 * 1024
FIRST_BACKOFF: Final = 1.0
MAX_BACKOFF: Final = 30.0

Condition = Literal["RetriesExhausted", "RecordAgeExceeded"]
OutcomeKind = retry.Kind

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Record(Generic[T]):
    """One record as the decisions see it: its position in the partition (Kafka offset or
    JetStream sequence), when it was written (epoch seconds), its size and the raw record."""

    position: int
    time: float
    size: int
    raw: T


@dataclasses.dataclass(frozen=True)
class Policy:
    """A stream Trigger's batching and retry settings, parsed once."""

    batch_size: int = 100
    window: float = 0.0
    #: None: retry until the records expire.
    max_retries: int | None = None
    #: None: records never expire.
    max_record_age: float | None = None
    bisect: bool = False
    report_item_failures: bool = False

    @classmethod
    def of(cls, spec: trigger_api.StreamTrigger) -> Policy:
        age = None
        if spec.max_record_age != trigger_api.INFINITE:
            age = meta.parse_duration(spec.max_record_age).total_seconds()
        return cls(
            batch_size=spec.batch_size,
            window=meta.parse_duration(spec.max_batching_window).total_seconds(),
            max_retries=None if spec.max_retries < 0 else spec.max_retries,
            max_record_age=age,
            bisect=spec.bisect_batch_on_error,
            report_item_failures=spec.report_batch_item_failures,
        )

    @property
    def buffer_limit(self) -> int:
        """Records buffered per partition before its fetching pauses: many batches, since a
        pause makes the client drop what it prefetched and fetch it again on resuming, which
        would slow a healthy stream; :data:`MAX_BUFFER_BYTES` bounds the memory."""
        return max(4 * self.batch_size, 20000)


# --- gathering ---------------------------------------------------------------------------------


def encoded_size(size: int) -> int:
    """Bytes a record of ``size`` raw bytes takes in the event (base64 plus framing)."""
    return (size + 2) // 3 * 4 + RECORD_OVERHEAD_BYTES


def cut(sizes: Sequence[int], batch_size: int, max_bytes: int = MAX_PAYLOAD_BYTES) -> int:
    """How many of the buffered records (raw sizes, oldest first) go into the next batch.

    At most ``batch_size`` and at most ``max_bytes`` of event; always at least one, so a
    record too large for any batch is still invoked (alone) and the function's answer decides.
    """
    total = ENVELOPE_BYTES
    count = 0
    for size in sizes[:batch_size]:
        total += encoded_size(size)
        if count and total > max_bytes:
            break
        count += 1
    return count


def ready(buffered: int, oldest_arrival: float | None, policy: Policy, now: float) -> float | None:
    """Seconds until the buffered records should be invoked: 0 when now (a full batch, or
    the window since the oldest arrived has passed), None when nothing is buffered."""
    if buffered == 0 or oldest_arrival is None:
        return None
    if buffered >= policy.batch_size:
        return 0.0
    return max(0.0, oldest_arrival + policy.window - now)


def should_pause(
    buffered: int, size: int, policy: Policy, *, held: int = 0, budget: int | None = None
) -> bool:
    """Whether to stop fetching a partition holding ``buffered`` records of ``size`` bytes:
    its function is slower than the stream (or throttled), so memory stays bounded; or the
    whole process holds ``held`` bytes, at or over its ``budget``
    (:mod:`~kfn.triggers.stream.budget`), so every partition stops until that falls."""
    if budget is not None and held >= budget:
        return True
    return buffered >= policy.buffer_limit or size >= MAX_BUFFER_BYTES


def should_resume(
    buffered: int, size: int, policy: Policy, *, held: int = 0, budget: int | None = None
) -> bool:
    """Whether a paused partition has room again: both below half their bounds, and the
    process at or below half its budget (so it does not pause and resume on every record)."""
    if budget is not None and held > budget // 2:
        return False
    return buffered <= policy.buffer_limit // 2 and size <= MAX_BUFFER_BYTES // 2


def lag(high_watermarks: dict[int, int], committed: dict[int, int]) -> int:
    """Records not yet processed over the partitions: high watermark minus the next offset
    to process (committed), a partition without a committed offset counting from 0 only if
    the high watermark is known (else it is left out)."""
    return sum(max(0, high - committed.get(p, high)) for p, high in high_watermarks.items())


# --- one batch through the function ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Segment(Generic[T]):
    """Consecutive records invoked together; ``retries`` used so far, ``invokes`` the
    invocations these records were part of (Lambda's approximateInvokeCount)."""

    records: tuple[Record[T], ...]
    retries: int = 0
    invokes: int = 0


@dataclasses.dataclass(frozen=True)
class Pending(Generic[T]):
    """What is left of one batch: segments in order, and no invocation before ``not_before``."""

    segments: tuple[Segment[T], ...]
    not_before: float = 0.0
    backoff: float = FIRST_BACKOFF
    #: Consecutive throttled answers, for the consumer to pause fetching while > 0.
    throttled: int = 0

    @property
    def finished(self) -> bool:
        return not self.segments


def begin(records: Sequence[Record[T]]) -> Pending[T]:
    return Pending(segments=(Segment(tuple(records)),) if records else ())


@dataclasses.dataclass(frozen=True)
class Invoke(Generic[T]):
    records: tuple[Record[T], ...]


@dataclasses.dataclass(frozen=True)
class Wait:
    until: float


@dataclasses.dataclass(frozen=True)
class Expire(Generic[T]):
    """Send these records to onFailure unprocessed (too old); the rest stays pending."""

    records: tuple[Record[T], ...]
    invokes: int
    rest: Pending[T]


@dataclasses.dataclass(frozen=True)
class Finished:
    pass


Step = Invoke[T] | Wait | Expire[T] | Finished


def expired(record: Record[T], policy: Policy, now: float) -> bool:
    return policy.max_record_age is not None and now - record.time > policy.max_record_age


def next_step(pending: Pending[T], policy: Policy, now: float) -> Step[T]:
    """What to do with a pending batch at ``now``."""
    if not pending.segments:
        return Finished()
    head, *tail = pending.segments
    old = tuple(r for r in head.records if expired(r, policy, now))
    if old:
        young = tuple(r for r in head.records if not expired(r, policy, now))
        segments = ((dataclasses.replace(head, records=young),) if young else ()) + tuple(tail)
        return Expire(old, head.invokes, dataclasses.replace(pending, segments=segments))
    if now < pending.not_before:
        return Wait(pending.not_before)
    return Invoke(head.records)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What an invocation returned, reduced to what the decisions need."""

    kind: OutcomeKind
    #: With reportBatchItemFailures: the lowest failed position the handler reported; None
    #: when it reported none (all succeeded).
    failed_from: int | None = None


@dataclasses.dataclass(frozen=True)
class Done(Generic[T]):
    """These records are finished (the function succeeded for them)."""

    records: tuple[Record[T], ...]


@dataclasses.dataclass(frozen=True)
class DeadLetter(Generic[T]):
    """These records go to onFailure (or are logged and skipped without one)."""

    records: tuple[Record[T], ...]
    condition: Condition
    invokes: int


Effect = Done[T] | DeadLetter[T]


@dataclasses.dataclass(frozen=True)
class Next(Generic[T]):
    pending: Pending[T]
    effects: tuple[Effect[T], ...] = ()
    #: The function was invoked again (a retry, not a split), for the retried metric.
    retried: bool = False


def after_invoke(pending: Pending[T], outcome: Outcome, policy: Policy, now: float) -> Next[T]:
    """The state after invoking the head segment with ``outcome`` at ``now``."""
    head, *rest = pending.segments
    tail = tuple(rest)
    if outcome.kind == "throttled":
        return Next(
            dataclasses.replace(
                pending,
                not_before=now + pending.backoff,
                backoff=min(MAX_BACKOFF, pending.backoff * 2),
                throttled=pending.throttled + 1,
            )
        )
    head = dataclasses.replace(head, invokes=head.invokes + 1)
    calm = dataclasses.replace(pending, throttled=0)
    if outcome.kind == "success":
        if outcome.failed_from is None or not policy.report_item_failures:
            return Next(_advance(calm, tail), (Done(head.records),))
        done = tuple(r for r in head.records if r.position < outcome.failed_from)
        failing = tuple(r for r in head.records if r.position >= outcome.failed_from)
        effects: tuple[Effect[T], ...] = (Done(done),) if done else ()
        failed = _failed(calm, dataclasses.replace(head, records=failing), tail, policy, now)
        return Next(failed.pending, effects + failed.effects, failed.retried)
    return _failed(calm, head, tail, policy, now)


def _advance(pending: Pending[T], tail: tuple[Segment[T], ...]) -> Pending[T]:
    return dataclasses.replace(pending, segments=tail, not_before=0.0, backoff=FIRST_BACKOFF)


def _failed(
    pending: Pending[T],
    head: Segment[T],
    tail: tuple[Segment[T], ...],
    policy: Policy,
    now: float,
) -> Next[T]:
    if policy.bisect and len(head.records) > 1:
        middle = len(head.records) // 2
        halves = (
            dataclasses.replace(head, records=head.records[:middle]),
            dataclasses.replace(head, records=head.records[middle:]),
        )
        return Next(dataclasses.replace(pending, segments=halves + tail))
    if policy.max_retries is not None and head.retries >= policy.max_retries:
        dead = DeadLetter(head.records, "RetriesExhausted", head.invokes)
        return Next(_advance(pending, tail), (dead,))
    retry = dataclasses.replace(head, retries=head.retries + 1)
    return Next(
        dataclasses.replace(
            pending,
            segments=(retry, *tail),
            not_before=now + pending.backoff,
            backoff=min(MAX_BACKOFF, pending.backoff * 2),
        ),
        retried=True,
    )


# --- the handler's answer ----------------------------------------------------------------------


def failed_from(body: bytes, positions: Sequence[int]) -> int | None:
    """The lowest failed position in a ``batchItemFailures`` answer, None when all succeeded.

    As Lambda: an answer that is not JSON, not an object or has no ``batchItemFailures`` (or
    an empty list) is a success; an item whose ``itemIdentifier`` is missing, empty or not
    one of the batch's positions (offset or sequence, as a string or number) fails the whole
    batch (returned as the first position).
    """
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    items = answer.get("batchItemFailures")
    if not isinstance(items, list) or not items:
        return None
    known = set(positions)
    lowest: int | None = None
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        try:
            position = int(str(identifier))
        except ValueError:
            return positions[0] if positions else None
        if position not in known:
            return positions[0] if positions else None
        lowest = position if lowest is None else min(lowest, position)
    return lowest


def utc(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def stream_kind(kind: OutcomeKind, status: int) -> OutcomeKind:
    """How a stream treats an invocation's answer.

    A missing function holds the partition like throttling (:func:`kfn.retry.trigger_kind`);
    any other refusal (a request the function cannot take) counts as a function error, so
    retries, bisecting and onFailure apply to it.
    """
    kind = retry.trigger_kind(kind, status)
    return "function-error" if kind == "rejected" else kind
