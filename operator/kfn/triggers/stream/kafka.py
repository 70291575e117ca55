"""One Kafka consumer group member per stream Trigger (confluent-kafka / librdkafka).

Threads: the *poll thread* owns the consumer (consume, pause/resume, rebalance callbacks)
and buffers records per assigned partition; each partition with a ready batch gets a
*partition runner* from a small pool, which invokes batch after batch of that partition
(:func:`~kfn.triggers.stream.runner.run_batch`) and commits synchronously (offset + 1) after
each finished prefix. A partition has at most one runner, so at most one batch in flight,
and partitions run concurrently.

Memory stays bounded: a partition whose buffer holds two batches is paused and resumed
when half of it is gone, so a slow or throttled function stops fetching instead of piling
records up; and every partition pauses while the process's record bytes, buffered or in
flight across all Triggers, are over its budget (:mod:`~kfn.triggers.stream.budget`).

On revocation (a rebalance, or closing at shutdown) the poll thread drops the buffered
records of the revoked partitions and waits for their in-flight batch to finish and commit
before the partition is released; a batch stuck in retries for longer than
:data:`REVOKE_WAIT` is abandoned uncommitted (the next owner redelivers it).

Throughput: all threads share one interpreter lock, and a runner whose answer arrived waits
for it while the poll thread copies records out. So the poll thread takes small chunks
(:data:`FETCH`), copies them before taking the consumer's lock (runners need it between
batches) and does little per record; the event's JSON is written directly
(:func:`~kfn.triggers.stream.events.encode_kafka_event`). bench/stream_throughput.py
measures the path through the activator and a function against a plain consumer.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

import confluent_kafka
from confluent_kafka import admin as kafka_admin

from kfn.api import endpoints
from kfn.api import trigger as trigger_api
from kfn.triggers import credentials, metrics
from kfn.triggers import status as status_
from kfn.triggers.stream import batching, events, runner
from kfn.triggers.stream import source as source_

logger = logging.getLogger(__name__)

KIND: Final = source_.KIND
#: How long a revoked partition's in-flight batch may take to finish before it is abandoned.
REVOKE_WAIT: Final = 20.0
#: How often the lag is computed and an unreachable source checked again.
LAG_INTERVAL: Final = 5.0
METADATA_TIMEOUT: Final = 10.0
INVOKE_TIMEOUT: Final = source_.INVOKE_TIMEOUT
MAX_RUNNERS: Final = 16
#: Most messages taken from the client per poll. Small: copying them out holds the GIL,
#: and the client call in between is where the poll thread lets runners whose answer
#: arrived go on (with 1000 they waited milliseconds for it, slowing every invocation).
FETCH: Final = 100
#: The poll timeout while batches are in flight, so their commits go out promptly.
BUSY_POLL: Final = 0.005
#: Errors that mean the brokers cannot be used at all, as opposed to one dropped connection.
FATAL_CODES: Final = frozenset(
    {
        confluent_kafka.KafkaError._ALL_BROKERS_DOWN,
        confluent_kafka.KafkaError._AUTHENTICATION,
        confluent_kafka.KafkaError._RESOLVE,
        confluent_kafka.KafkaError._SSL,
        confluent_kafka.KafkaError.SASL_AUTHENTICATION_FAILED,
        confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED,
        confluent_kafka.KafkaError.GROUP_AUTHORIZATION_FAILED,
    }
)
#: Errors that mean the brokers turned the credentials down.
REFUSED_CODES: Final = frozenset(
    {
        confluent_kafka.KafkaError._AUTHENTICATION,
        confluent_kafka.KafkaError.SASL_AUTHENTICATION_FAILED,
    }
)
TIMESTAMP_TYPES: Final[dict[int, events.TimestampType]] = {
    confluent_kafka.TIMESTAMP_CREATE_TIME: "CREATE_TIME",
    confluent_kafka.TIMESTAMP_LOG_APPEND_TIME: "LOG_APPEND_TIME",
}

Record = batching.Record[events.KafkaRecord]


def group_of(target: source_.Target) -> str:
    source = target.spec.kafka
    assert source is not None
    return source.consumer_group or f"kfn.{target.namespace}.{target.name}"


#: How long deleting a consumer group waits for members of other replicas to leave.
FORGET_TIMEOUT: Final = 30.0


def forget_group(
    target: source_.Target, read_secret: credentials.SecretReader = credentials.read_secret
) -> None:
    """Deletes the consumer group kfn named for a deleted Trigger (:func:`source_.forget`)."""
    source = target.spec.kafka
    if source is None or source.consumer_group is not None:
        return
    group = group_of(target)

    def delete(secret: credentials.Secret | None) -> bool:
        try:
            admin = kafka_admin.AdminClient(
                credentials.kafka_config(source.bootstrap_servers, secret)
            )
        except confluent_kafka.KafkaException as exc:
            raise source_.ForgetError(str(exc)) from None
        return _delete_group(admin, group)

    to = endpoints.kafka(source.bootstrap_servers)
    source_.forget(target, f"consumer group {group}", delete, read_secret, to)


def _delete_group(admin: kafka_admin.AdminClient, group: str) -> bool:
    """Deletes a consumer group, waiting up to :data:`FORGET_TIMEOUT` for the members of
    other replicas to leave it; False when there is no such group."""
    deadline = time.monotonic() + FORGET_TIMEOUT
    while True:
        future = admin.delete_consumer_groups([group], request_timeout=10)[group]
        try:
            future.result(15)
        except confluent_kafka.KafkaException as exc:
            error = exc.args[0] if exc.args else None
            code = error.code() if isinstance(error, confluent_kafka.KafkaError) else None
            if code == confluent_kafka.KafkaError.GROUP_ID_NOT_FOUND:
                return False
            if code == confluent_kafka.KafkaError.NON_EMPTY_GROUP and time.monotonic() < deadline:
                time.sleep(1.0)  # another replica's consumer is still leaving
                continue
            raise source_.ForgetError(str(exc)) from None
        return True


def record_of(message: confluent_kafka.Message) -> Record:
    """A plain record copied out of a message (which holds librdkafka memory).

    Runs for every record on the poll thread, so it calls each accessor once and skips the
    header work for the usual record without headers.
    """
    kind, timestamp = message.timestamp()
    key = message.key()
    value = message.value()
    raw_headers = message.headers()
    size = (len(value) if value else 0) + (len(key) if key else 0)
    headers: tuple[tuple[str, bytes | None], ...] = ()
    if raw_headers:
        pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
        headers = tuple((str(k), _bytes(v)) for k, v in pairs)
        size += sum(len(v) for _, v in headers if v)
    offset = message.offset() or 0
    raw = events.KafkaRecord(
        message.topic() or "",
        message.partition() or 0,
        offset,
        timestamp,
        TIMESTAMP_TYPES.get(kind, "NO_TIMESTAMP_TYPE"),
        key,
        value,
        headers,
    )
    created = timestamp / 1000 if timestamp > 0 else time.time()
    return batching.Record(offset, created, size, raw)


def _bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode()


@dataclasses.dataclass
class Partition:
    """An assigned partition: its buffer and whether a runner holds it."""

    number: int
    buffer: collections.deque[tuple[float, Record]] = dataclasses.field(
        default_factory=collections.deque
    )
    #: Bytes of the buffered records.
    size: int = 0
    busy: bool = False
    paused: bool = False
    revoked: bool = False
    idle: threading.Event = dataclasses.field(default_factory=threading.Event)
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    #: The next offset to process as committed (for the lag); None until known.
    committed: int | None = None

    def __post_init__(self) -> None:
        self.idle.set()


class Consumer(source_.Consumer):
    """Consumes one Trigger's topic in its group until :meth:`stop` (see the module doc)."""

    def __init__(
        self, target: source_.Target, clients: source_.Clients, *, grace: float = 25.0
    ) -> None:
        source = target.spec.kafka
        if source is None:
            raise ValueError("not a Kafka stream Trigger")
        super().__init__(target, clients, grace=grace)
        self.source = source
        self.partitions: dict[int, Partition] = {}
        #: Offsets finished by runners, committed by the poll thread.
        self.commits: dict[int, int] = {}
        self.commit_wanted = threading.Event()
        self.pool = concurrent.futures.ThreadPoolExecutor(
            MAX_RUNNERS, thread_name_prefix=f"kafka-{target.name}"
        )
        self.consumer: confluent_kafka.Consumer | None = None
        self.thread = threading.Thread(target=self.run, name=f"kafka-{target.label}", daemon=True)
        self.reachable = True
        self.fatal_error: str | None = None
        #: Set while the brokers refuse the credentials, so that the "all brokers are down"
        #: that follows does not replace the reason.
        self.refused = False

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stops fetching; in-flight batches finish (within the grace period) and commit."""
        self.stopping.set()

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    def run(self) -> None:
        try:
            consumer = self._connect()
            if consumer is None:
                return
            self.consumer = consumer
            self._loop(consumer)
            self._drain()
            consumer.close()  # revokes (our callback waits for idle runners) and leaves
        except Exception:
            logger.exception("%s: the Kafka consumer failed", self.target.label)
            raise
        finally:
            self._abandon()
            self.pool.shutdown(wait=True)
            with self.lock:
                self.discharge()

    # --- connecting --------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        secret = credentials.read_secret(
            self.target.namespace,
            self.target.spec.credentials_secret_ref,
            endpoints.kafka(self.source.bootstrap_servers),
        )
        config = credentials.kafka_config(self.source.bootstrap_servers, secret)
        config.update(
            {
                "group.id": group_of(self.target),
                "client.id": f"kfn-stream.{self.target.namespace}.{self.target.name}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": (
                    "earliest" if self.target.spec.starting_position == "Earliest" else "latest"
                ),
                "queued.max.messages.kbytes": 16384,
                "max.poll.interval.ms": 600000,
                "error_cb": self._on_error,
                "logger": logging.getLogger(f"{__name__}.librdkafka"),
            }
        )
        return config

    def _connect(self) -> confluent_kafka.Consumer | None:
        """Creates the consumer and subscribes once the topic's metadata can be read; retries
        (reporting SourceReachable=False) until then or until stopped."""
        while not self.stopping.is_set():
            try:
                consumer = confluent_kafka.Consumer(self.config())
            except credentials.CredentialsError as exc:
                self._reachable(False, credentials.reason_of(exc), str(exc))
                self.stopping.wait(LAG_INTERVAL * 2)
                continue
            problem = self._check(consumer)
            if problem is None:
                self._reachable(True, trigger_api.Reason.CONNECTED, "consuming")
                consumer.subscribe(
                    [self.source.topic],
                    on_assign=self._on_assign,
                    on_revoke=self._on_revoke,
                    on_lost=self._on_lost,
                )
                return consumer
            self._reachable(False, trigger_api.Reason.CONNECTION_FAILED, problem)
            consumer.close()
            self.stopping.wait(LAG_INTERVAL)
        return None

    def _check(self, consumer: confluent_kafka.Consumer) -> str | None:
        """None when the topic's metadata is readable, else why not (no secrets in it)."""
        try:
            metadata = consumer.list_topics(self.source.topic, timeout=METADATA_TIMEOUT)
        except confluent_kafka.KafkaException as exc:
            # Error callbacks run only inside poll: serve them, since one may say why (a
            # refused login shows here only as a transport failure).
            consumer.poll(0)
            return self.fatal_error or f"{self.brokers}: {exc.args[0] if exc.args else exc}"
        topic = metadata.topics.get(self.source.topic)
        if topic is None or topic.error is not None:
            reason = topic.error.str() if topic is not None and topic.error else "not found"
            return f"topic {self.source.topic}: {reason}"
        return None

    @property
    def brokers(self) -> str:
        return f"brokers {','.join(self.source.bootstrap_servers)}"

    def _on_error(self, error: confluent_kafka.KafkaError) -> None:
        if error.code() in REFUSED_CODES:
            self.refused = True
            self.fatal_error = credentials.refusal(
                self.brokers, self.target.namespace, self.target.spec.credentials_secret_ref,
                error.str(), "its username, password and mechanism",
            )  # fmt: skip
            self._reachable(False, trigger_api.Reason.CONNECTION_FAILED, self.fatal_error)
        elif error.code() in FATAL_CODES and not self.refused:
            self.fatal_error = f"{self.brokers}: {error.str()}"
            self._reachable(False, trigger_api.Reason.CONNECTION_FAILED, self.fatal_error)
        else:
            logger.info("%s: kafka: %s", self.target.label, error.str())

    def _reachable(self, ok: bool, reason: str, message: str) -> None:
        if ok != self.reachable or not ok:
            level = logging.INFO if ok else logging.WARNING
            logger.log(level, "%s: %s", self.target.label, message)
        self.reachable = ok
        if ok:
            self.fatal_error = None
            self.refused = False
        self.statuses.set(self.target.key, reachable=status_.Verdict(ok, reason, message))

    # --- rebalancing -------------------------------------------------------------------------

    def _on_assign(
        self, consumer: confluent_kafka.Consumer, assigned: list[confluent_kafka.TopicPartition]
    ) -> None:
        committed = consumer.committed(assigned, timeout=METADATA_TIMEOUT)
        start = self.target.spec.starting_timestamp
        fresh = [tp for tp in committed if tp.offset < 0]
        if start is not None and fresh:
            wanted = [
                confluent_kafka.TopicPartition(
                    tp.topic, tp.partition, int(start.timestamp() * 1000)
                )
                for tp in fresh
            ]
            found = {
                tp.partition: tp.offset
                for tp in consumer.offsets_for_times(wanted, timeout=METADATA_TIMEOUT)
            }
            for tp in assigned:
                if tp.partition in found:
                    offset = found[tp.partition]
                    tp.offset = offset if offset >= 0 else confluent_kafka.OFFSET_END
        with self.lock:
            for tp in committed:
                partition = Partition(tp.partition)
                partition.committed = tp.offset if tp.offset >= 0 else None
                self.partitions[tp.partition] = partition
        consumer.assign(assigned)
        logger.info(
            "%s: assigned partitions %s", self.target.label, sorted(tp.partition for tp in assigned)
        )

    def _on_revoke(
        self, consumer: confluent_kafka.Consumer, revoked: list[confluent_kafka.TopicPartition]
    ) -> None:
        self._release([tp.partition for tp in revoked], wait=REVOKE_WAIT)
        consumer.unassign()

    def _on_lost(
        self, consumer: confluent_kafka.Consumer, lost: list[confluent_kafka.TopicPartition]
    ) -> None:
        # Lost partitions may already be consumed elsewhere: nothing more is committed.
        with self.lock:
            for tp in lost:
                self.commits.pop(tp.partition, None)
                if tp.partition in self.partitions:
                    self.partitions[tp.partition].cancel.set()
        self._release([tp.partition for tp in lost], wait=0.0)
        consumer.unassign()

    def _release(self, numbers: Sequence[int], *, wait: float) -> None:
        with self.lock:
            released = [self.partitions[n] for n in numbers if n in self.partitions]
            for partition in released:
                partition.revoked = True
                partition.buffer.clear()
                self.charge(-partition.size)
                partition.size = 0
        deadline = time.monotonic() + wait
        for partition in released:
            if not partition.idle.wait(max(0.0, deadline - time.monotonic())):
                logger.warning(
                    "%s: partition %d revoked with a batch still in flight; abandoning it "
                    "(it is delivered again)",
                    self.target.label,
                    partition.number,
                )
                partition.cancel.set()
                partition.idle.wait(5.0)
        if self.consumer is not None:
            self._commit(self.consumer)
        with self.lock:
            for partition in released:
                if self.partitions.get(partition.number) is partition:
                    del self.partitions[partition.number]
        if released:
            logger.info(
                "%s: released partitions %s", self.target.label, [p.number for p in released]
            )

    # --- the poll loop -----------------------------------------------------------------------

    def _loop(self, consumer: confluent_kafka.Consumer) -> None:
        next_lag = 0.0
        wait = 0.1
        while not self.stopping.is_set():
            messages = self._fetch(consumer, wait)
            now = time.monotonic()
            if messages:
                self._take(messages, now)
            if self.commit_wanted.is_set():
                self._commit(consumer)
            wait = self._dispatch(consumer, now)
            if now >= next_lag:
                next_lag = now + LAG_INTERVAL
                self._report(consumer)

    @staticmethod
    def _fetch(consumer: confluent_kafka.Consumer, wait: float) -> list[confluent_kafka.Message]:
        """What is there now, else the first message within ``wait`` and what came with it.

        ``consume(n, timeout)`` alone would hold back a smaller number of waiting messages
        until the timeout, starving the partitions in between.
        """
        messages = consumer.consume(num_messages=FETCH, timeout=0)
        if messages:
            return messages
        first = consumer.poll(wait)
        if first is None:
            return []
        return [first, *consumer.consume(num_messages=FETCH - 1, timeout=0)]

    def _take(self, messages: list[confluent_kafka.Message], now: float) -> None:
        # Records are copied out before taking the lock: runners need it between batches.
        taken: list[Record] = []
        for message in messages:
            error = message.error()
            if error is None:
                taken.append(record_of(message))
            elif error.code() != confluent_kafka.KafkaError._PARTITION_EOF:
                logger.warning("%s: fetch error: %s", self.target.label, error.str())
        received = added = 0
        with self.lock:
            partitions = self.partitions
            for record in taken:
                partition = partitions.get(record.raw.partition)
                if partition is None or partition.revoked:
                    continue
                partition.buffer.append((now, record))
                partition.size += record.size
                added += record.size
                if partition.committed is None:
                    partition.committed = record.position
                received += 1
            self.charge(added)
        if received:
            metrics.RECEIVED.labels(self.target.namespace, self.target.name, KIND).inc(received)
            self.pending(received, now)
            if not self.reachable:
                self._reachable(True, trigger_api.Reason.CONNECTED, "consuming")

    def _dispatch(self, consumer: confluent_kafka.Consumer, now: float) -> float:
        """Starts runners for ready partitions, pauses/resumes fetching; the poll timeout."""
        wait = 0.1
        pause: list[int] = []
        resume: list[int] = []
        held, budget = self.budget.held, self.budget.limit
        with self.lock:
            for partition in self.partitions.values():
                buffered = len(partition.buffer)
                size = partition.size
                if not partition.paused and batching.should_pause(
                    buffered, size, self.policy, held=held, budget=budget
                ):
                    partition.paused = True
                    pause.append(partition.number)
                elif partition.paused and batching.should_resume(
                    buffered, size, self.policy, held=held, budget=budget
                ):
                    partition.paused = False
                    resume.append(partition.number)
                if partition.busy:
                    # A runner may finish (and want a commit) any moment.
                    wait = min(wait, BUSY_POLL)
                    continue
                if partition.revoked:
                    continue
                oldest = partition.buffer[0][0] if partition.buffer else None
                due = batching.ready(buffered, oldest, self.policy, now)
                if due is None:
                    continue
                if due > 0:
                    wait = min(wait, due)
                    continue
                partition.busy = True
                partition.idle.clear()
                self.pool.submit(self._run_partition, partition)
        topic = self.source.topic
        if pause:
            consumer.pause([confluent_kafka.TopicPartition(topic, n) for n in pause])
        if resume:
            consumer.resume([confluent_kafka.TopicPartition(topic, n) for n in resume])
        return wait

    def _next_batch(self, partition: Partition) -> list[Record]:
        """Takes the partition's next batch if one is ready, else releases the partition."""
        with self.lock:
            buffered = len(partition.buffer)
            oldest = partition.buffer[0][0] if partition.buffer else None
            due = batching.ready(buffered, oldest, self.policy, time.monotonic())
            if partition.revoked or self.stopping.is_set() or due is None or due > 0:
                partition.busy = False
                partition.idle.set()
                return []
            head = itertools.islice(partition.buffer, self.policy.batch_size)
            count = batching.cut([r.size for _, r in head], self.policy.batch_size)
            batch = [partition.buffer.popleft()[1] for _ in range(count)]
            # Off the partition's buffer, still held of the process's budget until it ends.
            partition.size -= sum(r.size for r in batch)
            return batch

    def _run_partition(self, partition: Partition) -> None:
        try:
            while batch := self._next_batch(partition):
                source = _PartitionSource(self, partition)
                try:
                    finished = runner.run_batch(
                        batch, self.policy, source, cancel=partition.cancel, on_retry=self.retried
                    )
                finally:
                    # The batch's bytes were held while in flight (see _next_batch).
                    with self.lock:
                        self.charge(-sum(r.size for r in batch))
                if not finished:
                    with self.lock:
                        partition.buffer.clear()
                        self.charge(-partition.size)
                        partition.size = 0
                        partition.busy = False
                        partition.idle.set()
                    return
        except Exception:
            logger.exception("%s: partition %d failed", self.target.label, partition.number)
            with self.lock:
                partition.busy = False
                partition.idle.set()

    def request_commit(self, partition: Partition, offset: int) -> None:
        """Asks the poll thread to commit: librdkafka serves a synchronous commit's answer
        through the consumer's queue, so a commit from any other thread than the one
        consuming waits forever."""
        with self.lock:
            if not partition.cancel.is_set():
                self.commits[partition.number] = offset
        self.commit_wanted.set()

    def _commit(self, consumer: confluent_kafka.Consumer) -> None:
        """Commits the offsets runners finished, synchronously (poll thread only)."""
        self.commit_wanted.clear()
        with self.lock:
            offsets, self.commits = self.commits, {}
        if not offsets:
            return
        topic = self.source.topic
        tps = [confluent_kafka.TopicPartition(topic, n, o) for n, o in sorted(offsets.items())]
        try:
            consumer.commit(offsets=tps, asynchronous=False)
        except confluent_kafka.KafkaException as exc:
            logger.warning(
                "%s: committing %s failed (the records are delivered again): %s",
                self.target.label, offsets, exc,
            )  # fmt: skip
            return
        with self.lock:
            for number, offset in offsets.items():
                partition = self.partitions.get(number)
                if partition is not None:
                    partition.committed = offset

    def _drain(self) -> None:
        """At shutdown: lets in-flight batches finish within the grace period."""
        deadline = time.monotonic() + self.grace
        with self.lock:
            partitions = list(self.partitions.values())
        for partition in partitions:
            partition.idle.wait(max(0.0, deadline - time.monotonic()))
        self._abandon()
        for partition in partitions:
            partition.idle.wait(5.0)
        if self.consumer is not None:
            self._commit(self.consumer)

    def _abandon(self) -> None:
        """In-flight batches stop where they are, uncommitted (they are delivered again)."""
        with self.lock:
            for partition in self.partitions.values():
                partition.cancel.set()

    def _report(self, consumer: confluent_kafka.Consumer) -> None:
        with self.lock:
            numbers = {n: p.committed for n, p in self.partitions.items()}
        highs: dict[int, int] = {}
        committed: dict[int, int] = {}
        for number, offset in numbers.items():
            tp = confluent_kafka.TopicPartition(self.source.topic, number)
            try:
                _, high = consumer.get_watermark_offsets(tp, cached=True)
            except confluent_kafka.KafkaException:
                continue
            if high >= 0:
                highs[number] = high
            if offset is not None:
                committed[number] = offset
        self.report_lag(batching.lag(highs, committed))
        if not self.reachable:
            problem = self._check(consumer)
            if problem is None:
                self._reachable(True, trigger_api.Reason.CONNECTED, "consuming")


class _PartitionSource(source_.BatchSource[events.KafkaRecord]):
    """The batch source of one partition of a :class:`Consumer`."""

    def __init__(self, consumer: Consumer, partition: Partition) -> None:
        super().__init__(consumer, partition.number, partition.cancel)
        self.kafka = consumer
        self.partition_state = partition
        self.servers = consumer.source.bootstrap_servers

    def encode(self, records: Sequence[Record]) -> bytes:
        return events.encode_kafka_event(records, self.servers)

    def where(self, records: Sequence[Record]) -> str:
        first, final = records[0].raw, records[-1].raw
        return f"{first.topic}-{first.partition} offsets {first.offset}..{final.offset}"

    def batch_info(self, records: Sequence[Record]) -> dict[str, Any]:
        return {"KafkaBatchInfo": events.kafka_batch_info(records, self.servers)}

    def key(self, records: Sequence[Record]) -> bytes:
        first = records[0].raw
        return f"{first.topic}-{first.partition}-{first.offset}".encode()

    def commit(self, last: Record) -> None:
        self.kafka.request_commit(self.partition_state, last.position + 1)
