"""What Kafka and JetStream consumers share: the Trigger they serve, the state they hold
and report, how a batch of records is invoked, given up to onFailure and reported, and how
a deleted Trigger is forgotten at the source.

:class:`Consumer` is the base of both consumers: the worker's :class:`Clients`, the
batching policy, the stop signal, and the lag and retries they report.

:class:`BatchSource` is the :class:`~kfn.triggers.stream.runner.Source` of one batch; a
consumer subclasses it with how its records are encoded, where they sit in the source, and
how finished records are committed (a Kafka offset, JetStream acks).

:func:`forget` deletes what kfn named at the source for a deleted Trigger (a consumer
group, a durable), given the broker's own deleting step.
"""

from __future__ import annotations

import abc
import concurrent.futures
import dataclasses
import datetime
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, Generic, TypeVar

from kfn import clock as clock_
from kfn import retry
from kfn.api import endpoints
from kfn.api import trigger as trigger_api
from kfn.triggers import credentials, failure, invoke, metrics, onfailure
from kfn.triggers import status as status_
from kfn.triggers.stream import batching, events, waking
from kfn.triggers.stream import budget as budget_

logger = logging.getLogger(__name__)

KIND: Final = "stream"
#: How long one invocation may take at most: the longest function timeout (15 min) and a
#: margin for a cold start.
INVOKE_TIMEOUT: Final = 930.0

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Target:
    """The Trigger a consumer serves, as far as the consumer needs it."""

    namespace: str
    name: str
    uid: str
    function: str
    spec: trigger_api.StreamTrigger
    region: str = "local"
    #: The function's version or alias it invokes; "" for ``$LATEST``.
    qualifier: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def delivery_target(self) -> failure.Target:
        return failure.Target(self.namespace, self.function, self.name, KIND, self.qualifier)


class ForgetError(Exception):
    """The source did not delete what kfn named for a Trigger; the message says why."""


def forget(
    target: Target,
    what: str,
    delete: Callable[[credentials.Secret | None], bool],
    read_secret: credentials.SecretReader,
    to: Sequence[endpoints.Endpoint],
) -> None:
    """Deletes ``what`` kfn named at the source for a deleted Trigger through the broker's
    ``delete`` step, given the Trigger's credentials Secret (read for the source's endpoints
    ``to``, so one its owner does not allow there is not sent). The broker's module passes
    only what kfn named: a group or durable the Trigger names itself is the user's and stays.

    ``delete`` returns False when there was nothing to delete, and raises
    :class:`ForgetError` (or :class:`~kfn.triggers.credentials.CredentialsError`) when it
    could not; failures are logged, since the Trigger is gone either way.
    """
    try:
        secret = read_secret(target.namespace, target.spec.credentials_secret_ref, to)
        deleted = delete(secret)
    except (credentials.CredentialsError, ForgetError) as exc:
        logger.warning("%s: cannot delete %s: %s", target.label, what, exc)
        return
    if deleted:
        logger.info("%s: deleted %s", target.label, what)


@dataclasses.dataclass(frozen=True)
class Clients:
    """What every consumer of a worker uses: the activator's invoke client, the onFailure
    destinations, the status writer, the process's byte budget and the threads that wake
    functions (:mod:`~kfn.triggers.stream.waking`)."""

    invoker: invoke.Invoker
    destinations: onfailure.Destinations
    statuses: status_.StatusWriter
    budget: budget_.ByteBudget = dataclasses.field(
        default_factory=lambda: budget_.ByteBudget(budget_.DEFAULT_MIB * 1024 * 1024)
    )
    wakes: concurrent.futures.Executor = dataclasses.field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="wake")
    )


class Consumer:
    """What Kafka's and JetStream's consumers hold and report alike; each extends it with
    how it reads its source. ``grace`` bounds how long the in-flight batches may take to
    finish once :attr:`stopping` is set."""

    def __init__(self, target: Target, clients: Clients, *, grace: float = 25.0) -> None:
        self.target = target
        self.policy = batching.Policy.of(target.spec)
        self.invoker = clients.invoker
        self.destinations = clients.destinations
        self.statuses = clients.statuses
        self.budget = clients.budget
        self.wakes = clients.wakes
        #: When the function was last invoked and last woken (monotonic; None: never).
        self.last_invoked: float | None = None
        self.last_woken: float | None = None
        self._waking = threading.Lock()
        #: Bytes this consumer holds of the budget, all given back when it ends.
        self.charged = 0
        self.grace = grace
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        #: When the function last succeeded (the status's ``lastEventTime``).
        self.last_event: datetime.datetime | None = None
        #: The wall clock records' times are compared with (a parameter for tests).
        self.wall: clock_.Seconds = time.time

    def charge(self, size: int) -> None:
        """Records of ``size`` bytes were taken in (``size`` < 0: let go of); called under
        :attr:`lock`."""
        self.charged += size
        self.budget.take(size)

    def discharge(self) -> None:
        """The consumer ended: whatever it still held goes back to the budget."""
        self.budget.give(self.charged)
        self.charged = 0

    def pending(self, records: int, now: float) -> None:
        """``records`` wait for the function (taken in, or the broker's lag) at ``now``
        (monotonic): wakes it when it may have gone idle (:func:`waking.should_wake`)."""
        with self._waking:
            wake = waking.should_wake(
                records, now, last_invoked=self.last_invoked, last_woken=self.last_woken
            )
            if wake:
                self.last_woken = now
        if wake:
            self.wakes.submit(self._wake)

    def invoked(self, now: float) -> None:
        """The function is invoked at ``now`` (monotonic): it is awake."""
        with self._waking:
            self.last_invoked = now

    def _wake(self) -> None:
        target = self.target
        outcome = self.invoker.wake(target.namespace, target.function, qualifier=target.qualifier)
        if outcome.status != 202:
            # The batch goes on as without a wake; its own invocation says what is wrong.
            logger.info("%s: waking the function failed: %s", target.label, outcome.describe())

    def report_lag(self, lag: int) -> None:
        """Exports the lag and writes it, with the last event's time, to the status; a lag
        may wake the function (:meth:`pending`)."""
        self.pending(lag, time.monotonic())
        metrics.LAG.labels(self.target.namespace, self.target.name, KIND).set(lag)
        extra: dict[str, Any] = {"lag": lag}
        if self.last_event is not None:
            extra["lastEventTime"] = self.last_event
        self.statuses.set(self.target.key, **extra)

    def retried(self, records: int) -> None:
        """Counts records invoked again (the ``on_retry`` of
        :func:`~kfn.triggers.stream.runner.run_batch`)."""
        metrics.RETRIED.labels(self.target.namespace, self.target.name, KIND).inc(records)


class BatchSource(abc.ABC, Generic[T]):
    """Invokes, gives up and reports one batch's records for a :class:`Consumer`."""

    def __init__(self, consumer: Consumer, partition: int, cancel: threading.Event) -> None:
        self.consumer = consumer
        self.target = consumer.target
        self.partition = partition
        self.cancel = cancel

    @abc.abstractmethod
    def encode(self, records: Sequence[batching.Record[T]]) -> bytes:
        """The event the function gets for ``records``."""

    @abc.abstractmethod
    def where(self, records: Sequence[batching.Record[T]]) -> str:
        """Where the records are, for logs (topic and offsets, stream and sequences)."""

    @abc.abstractmethod
    def batch_info(self, records: Sequence[batching.Record[T]]) -> dict[str, Any]:
        """The source's batch description in the failure record (``KafkaBatchInfo``...)."""

    @abc.abstractmethod
    def key(self, records: Sequence[batching.Record[T]]) -> bytes:
        """The key the failure record is produced with (keeps a partition's order)."""

    @abc.abstractmethod
    def commit(self, last: batching.Record[T]) -> None:
        """Records up to ``last`` are finished."""

    def request_id(self, records: Sequence[batching.Record[T]], attempt: int) -> str:
        return events.request_id(
            self.target.uid, self.partition, records[0].position, records[-1].position, attempt
        )

    def invoke(self, records: Sequence[batching.Record[T]], attempt: int) -> retry.Outcome:
        metrics.iterator_age(
            self.target.namespace, self.target.name, KIND,
            now=self.consumer.wall(), written=records[-1].time,
        )  # fmt: skip
        self.consumer.invoked(time.monotonic())
        return self.consumer.invoker.invoke(
            self.target.namespace,
            self.target.function,
            self.encode(records),
            request_id=self.request_id(records, attempt),
            timeout=INVOKE_TIMEOUT,
            qualifier=self.target.qualifier,
        )

    def give_up(self, dead: batching.DeadLetter[T], last: retry.Outcome | None) -> bool:
        records, condition, invokes = dead.records, dead.condition, dead.invokes
        label = self.target.label
        metrics.FAILED.labels(self.target.namespace, self.target.name, KIND).inc(len(records))
        where = self.where(records)
        destination = self.target.spec.on_failure
        if destination is None:
            logger.error(
                "%s: %d records at %s failed (%s after %d invocations: %s) and the Trigger has "
                "no onFailure destination; they are skipped",
                label, len(records), where, condition, invokes,
                last.describe() if last else "never invoked",
            )  # fmt: skip
            return True
        record = failure.failure_record(
            self.target.delivery_target,
            request_id=self.request_id(records, invokes),
            payload=self.encode(records),
            condition=condition,
            attempts=invokes,
            outcome=last,
            now=clock_.utcnow(),
            extra=self.batch_info(records),
        )
        logger.warning(
            "%s: %d records at %s go to onFailure (%s)", label, len(records), where, condition
        )
        return onfailure.send_until_stopped(
            self.consumer.destinations,
            self.target.delivery_target,
            destination,
            record,
            stop=self.cancel,
            key=self.key(records),
            statuses=self.consumer.statuses,
        )

    def observe(self, outcome: retry.Outcome, records: int) -> None:
        del records
        if outcome.kind == "success":
            self.consumer.last_event = clock_.utcnow()
        self.consumer.statuses.set(self.target.key, delivering=status_.verdict_of(outcome))

    def delivered(self, records: int) -> None:
        metrics.DELIVERED.labels(self.target.namespace, self.target.name, KIND).inc(records)
