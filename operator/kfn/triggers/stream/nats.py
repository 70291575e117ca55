"""One durable JetStream pull consumer per NATS stream Trigger (nats-py).

Threads: nats-py is asyncio-only, so each consumer runs its own event loop in a *loop
thread* (the connection, fetches, acks, and two background tasks: in-progress acks and the
lag); the *driver thread* gathers records, runs each batch through
:func:`~kfn.triggers.stream.runner.run_batch` (blocking invocations) and hands every client
call to the loop. The stream is consumed strictly in order, one batch at a time.

The durable consumer (``durableName``, default ``kfn_<namespace>_<trigger>``) is created on
the stream if missing: explicit acks, the Trigger's subject as its filter, the deliver
policy from ``startingPosition``, and ``max_ack_pending`` = ``batchSize``, so the server
never hands out more than one batch's worth of records at a time.

Orphans: a consumer that binds while records of the durable are held elsewhere
(``num_ack_pending`` > 0: records of a worker that was killed, or of this one before its
connection broke) must deliver those before anything after them. A pull is served the
server's redeliveries first, so records the last holder NAK'd (a graceful shutdown) come back
at once; those of a killed holder come back only after ``ack_wait``, and the free
``max_ack_pending`` slots would meanwhile hand out later records. So while orphans are
outstanding, a record delivered for the first time (necessarily later in the stream than
every orphan) is put back with a NAK delayed past ``ack_wait``
(:func:`sort_out`), and fetching pauses that long: the server then redelivers the orphans and
the records put back together, in stream order. Order across several replicas sharing a
durable is not kept (one may fetch while another holds less than a batch): the chart runs one
stream worker.

Acknowledgements: the records of a batch that are finished (the function succeeded or they
went to onFailure) are acknowledged, in order, once the batch ends; a prefix acknowledged
earlier would free ``max_ack_pending`` slots and let another replica pull records after the
ones still being retried. Until then every held record (buffered or in flight) gets an
in-progress ack every :data:`HEARTBEAT`, so ``ack_wait`` (:data:`ACK_WAIT`) need not cover
the function's timeout or a batch's retries: it only bounds how long the records of a
worker that died are hidden before the server redelivers them. Failed records are retried
by the runner, never NAK'd, so nothing overtakes them. At shutdown fetching stops, the
in-flight batch finishes (within the grace period), is acknowledged, the records not
processed are NAK'd (redelivered at once to whoever consumes next), and the connection is
drained.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, Final, TypeVar

import nats
import nats.errors
import nats.js
import nats.js.api
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from kfn.api import endpoints
from kfn.api import trigger as trigger_api
from kfn.triggers import credentials, metrics
from kfn.triggers import status as status_
from kfn.triggers.stream import batching, events, runner
from kfn.triggers.stream import source as source_

logger = logging.getLogger(__name__)

KIND: Final = source_.KIND
#: How long the server waits for an ack before redelivering (a dead worker's records).
ACK_WAIT: Final = 30.0
#: How long a record delivered before the orphans is put back (``ack_wait`` and a margin for
#: the server's pending check, which runs on a timer), and how long fetching then pauses.
PUT_BACK: Final = ACK_WAIT + 1.0
#: How often held records get an in-progress ack (well within ``ack_wait``).
HEARTBEAT: Final = ACK_WAIT / 3
#: The longest a fetch waits for the first record of a batch.
POLL: Final = 1.0
#: How long a fetch may wait for the rest of a batch when no window is set.
DRAIN: Final = 0.05
#: How often the lag is read and a missing stream looked up again.
LAG_INTERVAL: Final = 5.0
CONNECT_TIMEOUT: Final = 5.0
RECONNECT_WAIT: Final = 2.0
API_TIMEOUT: Final = 5.0
INVOKE_TIMEOUT: Final = source_.INVOKE_TIMEOUT
DELIVER_POLICIES: Final = {
    "Latest": nats.js.api.DeliverPolicy.NEW,
    "Earliest": nats.js.api.DeliverPolicy.ALL,
    "AtTimestamp": nats.js.api.DeliverPolicy.BY_START_TIME,
}

Record = batching.Record[events.NatsRecord]
T = TypeVar("T")


# --- decisions (pure) --------------------------------------------------------------------------


def durable_of(target: source_.Target) -> str:
    source = target.spec.nats
    assert source is not None
    return source.durable_name or f"kfn_{target.namespace}_{target.name}"


def consumer_config(
    target: source_.Target, ack_wait: float = ACK_WAIT
) -> nats.js.api.ConsumerConfig:
    """The durable pull consumer a Trigger wants (see the module doc)."""
    spec = target.spec
    source = spec.nats
    assert source is not None
    durable = durable_of(target)
    return nats.js.api.ConsumerConfig(
        name=durable,
        durable_name=durable,
        description=f"kfn stream Trigger {target.label}",
        deliver_policy=DELIVER_POLICIES[spec.starting_position],
        opt_start_time=spec.starting_timestamp if spec.starting_position == "AtTimestamp" else None,
        ack_policy=nats.js.api.AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=-1,
        filter_subject=source.subject,
        max_ack_pending=spec.batch_size,
        replay_policy=nats.js.api.ReplayPolicy.INSTANT,
    )


def drift(existing: nats.js.api.ConsumerConfig, wanted: nats.js.api.ConsumerConfig) -> list[str]:
    """Settings of an existing durable that differ from what the Trigger wants and that the
    server lets change (the subject, the batch size, ack_wait); the start position cannot."""
    fields = ("filter_subject", "max_ack_pending", "ack_wait")
    return [name for name in fields if getattr(existing, name) != getattr(wanted, name)]


@dataclasses.dataclass(frozen=True)
class Fetch:
    """Ask the server for up to ``count`` records, waiting at most ``timeout`` seconds."""

    count: int
    timeout: float


def next_fetch(
    buffered: int, oldest: float | None, topped_up: bool, policy: batching.Policy, now: float
) -> Fetch | None:
    """What to fetch before the next batch; None when the buffered records are due now.

    An empty buffer waits for one record (a fetch of one returns as soon as it arrives);
    then the rest of the batch is asked for, waiting until the window closes, or only
    :data:`DRAIN` without a window. ``topped_up`` says the last fetch already asked for the
    rest; ``oldest`` is when the oldest buffered record arrived.
    """
    if buffered == 0:
        return Fetch(1, POLL)
    if buffered >= policy.batch_size:
        return None
    due = batching.ready(buffered, oldest, policy, now)
    if due is None:  # pragma: no cover - buffered > 0
        return Fetch(1, POLL)
    if due > 0:
        return Fetch(policy.batch_size - buffered, max(due, DRAIN))
    if topped_up:
        return None
    return Fetch(policy.batch_size - buffered, DRAIN)


@dataclasses.dataclass(frozen=True)
class Sorted:
    """What to do with the records of one fetch (indexes into it) while orphans remain."""

    take: list[int]
    put_back: list[int]
    orphans: int


def sort_out(deliveries: Sequence[int], orphans: int) -> Sorted:
    """Sorts one fetch, given each record's delivery count and the orphans still expected (see
    the module doc): a redelivered record is an orphan coming back and is taken; a first
    delivery is taken only once no orphan is expected, else put back."""
    take: list[int] = []
    put_back: list[int] = []
    for index, count in enumerate(deliveries):
        if count > 1:
            orphans = max(orphans - 1, 0)
            take.append(index)
        elif orphans > 0:
            put_back.append(index)
        else:
            take.append(index)
    return Sorted(take, put_back, orphans)


def finished_prefix(positions: Sequence[int], through: int | None, complete: bool) -> int:
    """How many records of a batch (positions in order) to acknowledge: all when it
    completed, else those up to ``through``, the last position the runner committed."""
    if complete:
        return len(positions)
    if through is None:
        return 0
    return sum(1 for position in positions if position <= through)


def lag_of(info: nats.js.api.ConsumerInfo) -> int:
    """Records not processed yet: not delivered to the consumer, or delivered and not acked."""
    return (info.num_pending or 0) + (info.num_ack_pending or 0)


def timestamp_ns(reply: str) -> int | None:
    """The exact store time (ns) in a JetStream ack subject: ``$JS.ACK.<stream>.<consumer>.
    <delivered>.<sseq>.<cseq>.<time>.<pending>`` or the longer form with domain and account
    hash; the client's own parsing goes through a float and loses nanoseconds."""
    tokens = reply.split(".")
    index = 7 if len(tokens) == 9 else 9
    if len(tokens) > index and tokens[index].isdigit():
        return int(tokens[index])
    return None


def record_of(msg: Msg) -> Record:
    """A plain record copied out of a JetStream message (sequence and time from its reply
    subject)."""
    metadata = msg.metadata
    nanos = timestamp_ns(msg.reply) or int(metadata.timestamp.timestamp() * 1_000_000_000)
    timestamp = nanos / 1_000_000_000
    headers = tuple(sorted((str(k), str(v)) for k, v in (msg.headers or {}).items()))
    raw = events.NatsRecord(
        subject=msg.subject,
        sequence=metadata.sequence.stream,
        timestamp_ns=nanos,
        data=msg.data,
        headers=headers,
    )
    size = len(msg.data) + sum(len(k) + len(v) for k, v in headers)
    return batching.Record(raw.sequence, timestamp, size, raw)


def describe(error: BaseException) -> str:
    """A short account of a client error, for SourceReachable (no credentials in it)."""
    if isinstance(error, nats.js.errors.APIError) and error.description:
        return str(error.description)
    return str(error) or type(error).__name__


def refused_credentials(error: BaseException) -> bool:
    """Whether the server turned the client's credentials down (it then closes the
    connection, so a reset follows that says nothing of why)."""
    text = str(error).lower()
    return isinstance(error, nats.errors.AuthorizationError) or any(
        marker in text for marker in ("authorization violation", "authentication")
    )


# --- forgetting a deleted Trigger's durable ------------------------------------------------------


#: The longest deleting a deleted Trigger's durable may take.
FORGET_TIMEOUT: Final = 15.0


def forget_durable(
    target: source_.Target, read_secret: credentials.SecretReader = credentials.read_secret
) -> None:
    """Deletes the durable consumer kfn named for a deleted Trigger (:func:`source_.forget`)."""
    source = target.spec.nats
    if source is None or source.durable_name is not None:
        return
    durable = durable_of(target)

    async def quiet(error: Exception) -> None:
        logger.debug("%s: deleting durable %s: %s", target.label, durable, describe(error))

    async def delete_on(options: dict[str, Any]) -> None:
        # One try per server (nats-py's 0 would mean forever), all of it bounded.
        client = await nats.connect(
            servers=list(source.servers),
            connect_timeout=CONNECT_TIMEOUT,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.5,
            error_cb=quiet,
            **options,
        )
        try:
            await client.jetstream(timeout=API_TIMEOUT).delete_consumer(source.stream, durable)
        finally:
            await client.close()

    def delete(secret: credentials.Secret | None) -> bool:
        options = credentials.nats_options(secret)
        try:
            asyncio.run(asyncio.wait_for(delete_on(options), FORGET_TIMEOUT))
        except nats.js.errors.NotFoundError:
            return False
        except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
            raise source_.ForgetError(describe(exc)) from None
        return True

    to = endpoints.nats(source.servers)
    source_.forget(target, f"durable {durable} on stream {source.stream}", delete, read_secret, to)


# --- the consumer --------------------------------------------------------------------------------


class Consumer(source_.Consumer):
    """Consumes one Trigger's stream through its durable until :meth:`stop` (module doc)."""

    def __init__(
        self, target: source_.Target, clients: source_.Clients, *, grace: float = 25.0
    ) -> None:
        source = target.spec.nats
        if source is None:
            raise ValueError("not a NATS stream Trigger")
        super().__init__(target, clients, grace=grace)
        self.source = source
        self.durable = durable_of(target)
        #: Set once the grace period after :meth:`stop` ran out: the batch is abandoned.
        self.cancel = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.loop_thread = threading.Thread(
            target=self.loop.run_forever, name=f"nats-loop-{target.label}", daemon=True
        )
        self.thread = threading.Thread(target=self.run, name=f"nats-{target.label}", daemon=True)
        #: Delivered, not yet acknowledged messages by stream sequence (heartbeats keep them).
        self.held: dict[int, Msg] = {}
        self.buffer: collections.deque[tuple[float, Record, Msg]] = collections.deque()
        self.client: Client | None = None
        self.reachable: bool | None = None
        self.problem = ""
        #: Set while the server refuses the credentials, so a following reset keeps the why.
        self.refused = False
        self.timer: threading.Timer | None = None
        #: Records held elsewhere when this consumer bound, not yet redelivered to it.
        self.orphans = 0
        #: Until when (monotonic) fetching pauses after records were put back.
        self.paused_until = 0.0

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.loop_thread.start()
        self.thread.start()

    def stop(self) -> None:
        """Stops fetching; the in-flight batch finishes (within the grace period) and is
        acknowledged."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.timer = threading.Timer(self.grace, self.cancel.set)
        self.timer.daemon = True
        self.timer.start()

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                subscription = self._open()
                if subscription is None:
                    continue
                try:
                    self._consume(subscription)
                except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
                    self._reachable(
                        False,
                        trigger_api.Reason.CONNECTION_FAILED,
                        f"stream {self.source.stream}: {describe(exc)}",
                    )
                    self._forget_held()
                    self.stopping.wait(LAG_INTERVAL)
                    self._close(drain=False)
                    continue
                break
        except Exception:
            logger.exception("%s: the NATS consumer failed", self.target.label)
            raise
        finally:
            self._settle_held()
            self._close(drain=True)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.loop_thread.join(10.0)
            if not self.loop.is_running():
                self.loop.close()
            if self.timer is not None:
                self.timer.cancel()

    def _call(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        timeout: float | None = None,
        interrupt: threading.Event | None = None,
    ) -> T:
        """Runs a coroutine on the loop and waits for it, at most ``timeout`` (plus
        :data:`API_TIMEOUT`); cancelled once ``interrupt`` is set (raising
        :class:`concurrent.futures.CancelledError`)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        deadline = None if timeout is None else time.monotonic() + timeout + API_TIMEOUT
        while True:
            done, _ = concurrent.futures.wait([future], timeout=0.2)
            if done:
                return future.result()
            late = deadline is not None and time.monotonic() > deadline
            if late or (interrupt is not None and interrupt.is_set()):
                future.cancel()
                return future.result(API_TIMEOUT)

    # --- connecting --------------------------------------------------------------------------

    def _open(self) -> nats.js.JetStreamContext.PullSubscription | None:
        """Connects, finds the stream and binds to the durable (creating it if missing);
        None (SourceReachable=False with the reason) when not possible yet."""
        try:
            options = credentials.nats_options(
                credentials.read_secret(
                    self.target.namespace,
                    self.target.spec.credentials_secret_ref,
                    endpoints.nats(self.source.servers),
                )
            )
        except credentials.CredentialsError as exc:
            self._reachable(False, credentials.reason_of(exc), str(exc))
            self.stopping.wait(LAG_INTERVAL * 2)
            return None
        try:
            if self.client is None or self.client.is_closed:
                self.client = self._call(self._connect(options), interrupt=self.stopping)
            subscription = self._call(
                self._bind(self.client), timeout=API_TIMEOUT * 3, interrupt=self.stopping
            )
        except concurrent.futures.CancelledError:
            return None
        except nats.js.errors.NotFoundError:
            self._reachable(
                False,
                trigger_api.Reason.CONNECTION_FAILED,
                f"stream {self.source.stream} not found",
            )
        except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
            self._failed(f"stream {self.source.stream}" if self.client else self.servers, exc)
        else:
            self._connected()
            self._call(self._start_tasks())
            return subscription
        self.stopping.wait(LAG_INTERVAL)
        return None

    @property
    def servers(self) -> str:
        return f"servers {','.join(self.source.servers)}"

    def _failed(self, where: str, error: BaseException) -> None:
        """Reports a connection error; a refused credential stays the reason until a
        connection succeeds, since the reset that follows it says nothing of why."""
        if refused_credentials(error):
            self.refused = True
            message = credentials.refusal(
                self.servers, self.target.namespace, self.target.spec.credentials_secret_ref,
                describe(error),
                "its token, creds or username and password, and the user's rights on the stream",
            )  # fmt: skip
        elif self.refused:
            return
        else:
            message = f"{where}: {describe(error)}"
        self._reachable(False, trigger_api.Reason.CONNECTION_FAILED, message)

    def _connected(self) -> None:
        self.refused = False
        self._reachable(
            True,
            trigger_api.Reason.CONNECTED,
            f"consuming stream {self.source.stream} as {self.durable}",
        )

    async def _connect(self, options: dict[str, Any]) -> Client:
        async def on_error(error: Exception) -> None:
            self._failed(self.servers, error)

        async def on_disconnected() -> None:
            if not self.stopping.is_set() and not self.refused:
                self._reachable(
                    False, trigger_api.Reason.CONNECTION_FAILED, f"{self.servers}: disconnected"
                )

        async def on_reconnected() -> None:
            self._connected()

        return await nats.connect(
            servers=list(self.source.servers),
            name=f"kfn-stream.{self.target.namespace}.{self.target.name}",
            connect_timeout=CONNECT_TIMEOUT,
            reconnect_time_wait=RECONNECT_WAIT,
            # Forever: the Trigger's status says why meanwhile, and stopping cancels it.
            max_reconnect_attempts=-1,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            **options,
        )

    async def _bind(self, client: Client) -> nats.js.JetStreamContext.PullSubscription:
        js = client.jetstream(timeout=API_TIMEOUT)
        await js.stream_info(self.source.stream)
        wanted = consumer_config(self.target)
        try:
            info = await js.consumer_info(self.source.stream, self.durable)
        except nats.js.errors.NotFoundError:
            logger.info(
                "%s: creating the durable consumer %s on stream %s",
                self.target.label, self.durable, self.source.stream,
            )  # fmt: skip
            await js.add_consumer(self.source.stream, config=wanted)
            self.orphans = 0
        else:
            self.orphans = info.num_ack_pending or 0
            changed = drift(info.config, wanted)
            if changed:
                logger.info(
                    "%s: updating %s of the durable consumer %s",
                    self.target.label, ", ".join(changed), self.durable,
                )  # fmt: skip
                update = dataclasses.replace(
                    info.config, **{name: getattr(wanted, name) for name in changed}
                )
                await js.add_consumer(self.source.stream, config=update)  # create or update
        return await js.pull_subscribe_bind(durable=self.durable, stream=self.source.stream)

    async def _start_tasks(self) -> None:
        self.tasks = [
            asyncio.create_task(self._heartbeats()),
            asyncio.create_task(self._lag()),
        ]

    def _close(self, *, drain: bool) -> None:
        client, self.client = self.client, None

        async def close() -> None:
            for task in getattr(self, "tasks", []):
                task.cancel()
            if client is None or client.is_closed:
                return
            try:
                if drain and client.is_connected:
                    # Everything this consumer sent (acks, naks) leaves before closing;
                    # nats-py's drain() would also wait out lingering pull requests.
                    await client.flush(timeout=int(API_TIMEOUT))
                await client.close()
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                logger.info("%s: closing the connection: %s", self.target.label, describe(exc))

        if not self.loop.is_running():
            return
        future = asyncio.run_coroutine_threadsafe(close(), self.loop)
        try:
            future.result(API_TIMEOUT * 3)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            logger.warning("%s: the connection did not close in time", self.target.label)

    def _reachable(self, ok: bool, reason: str, message: str) -> None:
        if ok != self.reachable or message != self.problem:
            logger.log(
                logging.INFO if ok else logging.WARNING, "%s: %s", self.target.label, message
            )
        self.reachable = ok
        self.problem = message
        self.statuses.set(self.target.key, reachable=status_.Verdict(ok, reason, message))

    # --- background tasks on the loop --------------------------------------------------------

    async def _heartbeats(self) -> None:
        """In-progress acks for every held record, so a long batch is not redelivered."""
        while True:
            await asyncio.sleep(HEARTBEAT)
            with self.lock:
                held = list(self.held.values())
            for msg in held:
                try:
                    await msg.in_progress()
                except (nats.errors.Error, OSError) as exc:
                    logger.debug("%s: in-progress ack failed: %s", self.target.label, exc)
                    break

    async def _lag(self) -> None:
        while True:
            client = self.client
            if client is not None and client.is_connected:
                js = client.jetstream(timeout=API_TIMEOUT)
                try:
                    info = await js.consumer_info(self.source.stream, self.durable)
                except nats.js.errors.NotFoundError:
                    self._reachable(
                        False,
                        trigger_api.Reason.CONNECTION_FAILED,
                        f"stream {self.source.stream} or its consumer {self.durable} not found",
                    )
                except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
                    logger.info("%s: reading the lag failed: %s", self.target.label, exc)
                else:
                    self.report_lag(lag_of(info))
            await asyncio.sleep(LAG_INTERVAL)

    # --- consuming ---------------------------------------------------------------------------

    def _consume(self, subscription: nats.js.JetStreamContext.PullSubscription) -> None:
        topped_up = False
        while not self.stopping.is_set():
            now = time.monotonic()
            if now < self.paused_until:
                if self.stopping.wait(self.paused_until - now):
                    return
                # The orphans and what was put back are redelivered now, in stream order.
                self.orphans = 0
                continue
            oldest = self.buffer[0][0] if self.buffer else None
            fetch = next_fetch(len(self.buffer), oldest, topped_up, self.policy, now)
            if fetch is not None:
                topped_up = fetch.count >= self.policy.batch_size - len(self.buffer)
                try:
                    msgs = self._call(self._fetch(subscription, fetch), timeout=fetch.timeout)
                except concurrent.futures.CancelledError:
                    return
                self._take(msgs)
                continue
            self._run(self._next_batch())
            topped_up = False

    async def _fetch(
        self, subscription: nats.js.JetStreamContext.PullSubscription, fetch: Fetch
    ) -> list[Msg]:
        try:
            return await subscription.fetch(fetch.count, timeout=fetch.timeout)
        except (TimeoutError, nats.errors.TimeoutError):
            return []

    def _take(self, msgs: list[Msg]) -> None:
        if self.orphans > 0 and msgs:
            msgs = self._sort_out(msgs)
        now = time.monotonic()
        taken = 0
        with self.lock:
            for msg in msgs:
                try:
                    record = record_of(msg)
                except nats.errors.Error:  # not a JetStream message (never expected)
                    continue
                if record.position in self.held:  # redelivered while still held: keep one
                    continue
                self.held[record.position] = msg
                self.buffer.append((now, record, msg))
                taken += 1
        if taken:
            metrics.RECEIVED.labels(self.target.namespace, self.target.name, KIND).inc(taken)
            self.pending(taken, now)
            if not self.reachable:
                self._reachable(
                    True,
                    trigger_api.Reason.CONNECTED,
                    f"consuming stream {self.source.stream} as {self.durable}",
                )

    def _sort_out(self, msgs: list[Msg]) -> list[Msg]:
        """Takes the orphans coming back; puts back what came before them (module doc)."""
        sorted_ = sort_out([msg.metadata.num_delivered for msg in msgs], self.orphans)
        self.orphans = sorted_.orphans
        if sorted_.put_back:
            early = [msgs[i] for i in sorted_.put_back]
            logger.info(
                "%s: %d records of %s are held by a consumer that left; putting back %d later "
                "records and fetching again in %.0fs, when the server delivers them in order",
                self.target.label, self.orphans, self.durable, len(early), PUT_BACK,
            )  # fmt: skip

            async def put_back() -> None:
                for msg in early:
                    await msg.nak(delay=PUT_BACK)

            self._call(put_back(), timeout=API_TIMEOUT)
            self.paused_until = time.monotonic() + PUT_BACK
        return [msgs[i] for i in sorted_.take]

    def _next_batch(self) -> list[tuple[Record, Msg]]:
        with self.lock:
            head = [r.size for _, r, _ in list(self.buffer)[: self.policy.batch_size]]
            count = batching.cut(head, self.policy.batch_size)
            taken = [self.buffer.popleft() for _ in range(count)]
        return [(record, msg) for _, record, msg in taken]

    def _run(self, batch: list[tuple[Record, Msg]]) -> None:
        records = [record for record, _ in batch]
        source = _BatchSource(self, records)
        complete = runner.run_batch(
            records, self.policy, source, cancel=self.cancel, on_retry=self.retried
        )
        count = finished_prefix([r.position for r in records], source.through, complete)
        self._ack([msg for _, msg in batch[:count]])

    def _ack(self, msgs: list[Msg]) -> None:
        """Acknowledges finished records and waits for the server to confirm (a lost ack
        means the records are delivered again: at least once)."""
        if not msgs:
            return

        async def ack() -> list[BaseException | Msg]:
            return await asyncio.gather(
                *(m.ack_sync(timeout=API_TIMEOUT) for m in msgs), return_exceptions=True
            )

        try:
            results = self._settle_call(ack())
        except Exception as exc:  # any failure means "delivered again"
            results = [exc]
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            logger.warning(
                "%s: %d acks failed (those records are delivered again): %s",
                self.target.label, len(failed), describe(failed[0]),
            )  # fmt: skip
        with self.lock:
            for msg in msgs:
                self.held.pop(record_of(msg).position, None)

    def _settle_call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Runs an ack or nak even while stopping (no cancellation)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(API_TIMEOUT * 3)

    def _settle_held(self) -> None:
        """At the end: NAKs what was fetched and not finished, so it is redelivered now
        instead of after ``ack_wait``."""
        with self.lock:
            held = [self.held[k] for k in sorted(self.held)]
            self.held.clear()
            self.buffer.clear()
        client = self.client
        if not held or client is None or not client.is_connected or not self.loop.is_running():
            return

        async def nak() -> None:
            await asyncio.gather(*(m.nak() for m in held), return_exceptions=True)
            await client.flush(timeout=int(API_TIMEOUT))

        try:
            self._settle_call(nak())
        except Exception as exc:  # redelivered after ack_wait anyway
            logger.info("%s: releasing %d records failed: %s", self.target.label, len(held), exc)

    def _forget_held(self) -> None:
        """After a connection or consumer error: what was held is redelivered by the server."""
        with self.lock:
            self.held.clear()
            self.buffer.clear()


class _BatchSource(source_.BatchSource[events.NatsRecord]):
    """The batch source of one batch of a :class:`Consumer`."""

    def __init__(self, consumer: Consumer, records: Sequence[Record]) -> None:
        super().__init__(consumer, 0, consumer.cancel)
        self.records = records
        self.servers = consumer.source.servers
        self.stream = consumer.source.stream
        #: The last position committed by the runner (acknowledged when the batch ends).
        self.through: int | None = None

    def encode(self, records: Sequence[Record]) -> bytes:
        return events.encode(events.nats_event(records, self.servers, self.stream))

    def where(self, records: Sequence[Record]) -> str:
        return f"stream {self.stream} sequences {records[0].position}..{records[-1].position}"

    def batch_info(self, records: Sequence[Record]) -> dict[str, Any]:
        return {"NatsBatchInfo": events.nats_batch_info(records, self.servers, self.stream)}

    def key(self, records: Sequence[Record]) -> bytes:
        return f"{self.stream}-{records[0].position}".encode()

    def commit(self, last: Record) -> None:
        self.through = last.position
