"""The stream worker process: one consumer per stream Trigger, kept in step with the API.

A store (:class:`kfn.kube.cache.Store`, see :func:`table`) keeps the wanted Triggers,
watched in its own thread; the main loop compares them with the running consumers and
starts a consumer for a new Trigger, stops the consumer of a deleted one, and restarts a
consumer whose Trigger changed (a new ``metadata.generation`` or uid). Stopping lets
in-flight batches finish and commit, so a restart redelivers nothing that was handled.

When a Trigger is deleted (or replaced by a new one of the same name) the worker also
removes what kfn named for it at the source: the default Kafka consumer group
``kfn.<namespace>.<trigger>`` or JetStream durable ``kfn_<namespace>_<trigger>``, so a
Trigger created again starts at its ``startingPosition``, as a new Lambda event source
mapping does, and the broker keeps no state for it. A group or durable the Trigger names
itself is the user's and stays.

Every replica runs a consumer for every Trigger: Kafka's consumer group shares the
partitions between them; a JetStream durable hands out one batch at a time
(``max_ack_pending`` = ``batchSize``), so replicas take turns on it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Final, Protocol

from kfn import kube, triggers
from kfn.api import meta
from kfn.api import trigger as trigger_api
from kfn.kube import cache
from kfn.triggers import metrics
from kfn.triggers import status as status_
from kfn.triggers.stream import source

API_VERSION: Final = f"{meta.GROUP}/{meta.VERSION}"
RECONCILE_INTERVAL: Final = 5.0

logger = logging.getLogger(__name__)

Key = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class Wanted:
    """A stream Trigger as the worker wants it consumed: the consumer is restarted when
    ``version`` changes."""

    target: source.Target
    version: tuple[str, int]
    obj: kube.Object


def wanted_of(obj: kube.Object, region: str = "local") -> Wanted | None:
    """The wanted consumer of a Trigger object; None unless it is a valid stream Trigger."""
    trigger = triggers.valid_trigger(obj)
    if trigger is None:
        return None
    stream = trigger.spec.stream
    if stream is None:
        return None
    metadata = trigger.metadata
    target = source.Target(
        namespace=metadata.namespace or "",
        name=metadata.name,
        uid=metadata.uid or "",
        function=trigger.spec.function_ref.name,
        spec=stream,
        region=region,
        qualifier=trigger.spec.function_ref.target_qualifier,
    )
    return Wanted(target, (target.uid, int(metadata.generation or 0)), obj)


def table(changed: threading.Event, region: str = "local") -> cache.Store[Wanted]:
    """The store of wanted stream Triggers; each change sets ``changed``, which wakes the
    main loop."""
    return cache.Store(
        API_VERSION,
        trigger_api.KIND,
        lambda obj, _: wanted_of(obj, region),
        listener=lambda _: changed.set(),
    )


class Running(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...


class Idle:
    """Holds the place of a Trigger this worker cannot serve, so it is reported once."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        del timeout


Factory = Callable[[source.Target], Running]


Forget = Callable[[source.Target], None]


@dataclasses.dataclass(frozen=True)
class Changes:
    start: list[Key]
    stop: list[Key]
    #: Stopped for good: the Trigger was deleted or replaced (a new uid).
    forget: list[Key] = dataclasses.field(default_factory=list)


def plan(wanted: dict[Key, tuple[str, int]], running: dict[Key, tuple[str, int]]) -> Changes:
    """Which consumers to stop (gone or changed), start (new or changed) and forget at the
    source (gone or replaced); pure. Versions are (uid, generation)."""
    stop = sorted(k for k, version in running.items() if wanted.get(k) != version)
    start = sorted(k for k, version in wanted.items() if running.get(k) != version)
    forget = [k for k in stop if k not in wanted or wanted[k][0] != running[k][0]]
    return Changes(start=start, stop=stop, forget=forget)


class Worker:
    """Keeps one consumer per stream Trigger running (see the module doc).

    ``factory`` builds Kafka consumers and ``nats_factory`` JetStream ones; ``forget``
    removes a deleted Trigger's kfn-named group or durable (see the module doc).
    """

    def __init__(
        self,
        factory: Factory,
        statuses: status_.StatusWriter,
        region: str,
        *,
        nats_factory: Factory,
        forget: Forget | None = None,
    ) -> None:
        self.factory = factory
        self.nats_factory = nats_factory
        self.forget = forget
        self.statuses = statuses
        #: Set by every change of the stream Triggers.
        self.changed = threading.Event()
        self.table = table(self.changed, region)
        self.running: dict[Key, tuple[tuple[str, int], Running, source.Target]] = {}
        #: Threads forgetting deleted Triggers at the source (finished ones are dropped).
        self.forgetting: list[threading.Thread] = []
        self.stop = threading.Event()

    def run(self) -> None:
        self.table.start()
        status = threading.Thread(
            target=self.statuses.run, args=(self.stop,), name="status", daemon=True
        )
        status.start()
        try:
            while not self.stop.is_set():
                self.changed.clear()
                self.reconcile()
                self.changed.wait(RECONCILE_INTERVAL)
        finally:
            self.table.stop()
            self.shutdown()
            status.join(5.0)

    def reconcile(self) -> None:
        wanted = self.table.snapshot()
        changes = plan(
            {k: w.version for k, w in wanted.items()},
            {k: version for k, (version, _, _) in self.running.items()},
        )
        self.forgetting = [thread for thread in self.forgetting if thread.is_alive()]
        stopping = [(key, *self.running.pop(key)[1:]) for key in changes.stop]
        for key, consumer, _ in stopping:
            logger.info("stopping the consumer of %s/%s", *key)
            consumer.stop()
        for key, consumer, target in stopping:
            consumer.join()
            if key not in wanted:
                self.statuses.forget(key)
                metrics.forget_metrics(key[0], key[1], source.KIND)
            if key in changes.forget and self.forget is not None:
                if key in wanted:
                    # Replaced: before the new consumer starts, so it does not join the old
                    # group or durable.
                    self.forget(target)
                else:
                    # Deleted: aside, so an unreachable broker holds up no other Trigger.
                    thread = threading.Thread(
                        target=self.forget, args=(target,), name="forget", daemon=True
                    )
                    thread.start()
                    self.forgetting.append(thread)
        for key in changes.start:
            item = wanted[key]
            self.statuses.track(item.obj)
            logger.info("starting the consumer of %s/%s", *key)
            consumer = self.consumer_of(item.target)
            consumer.start()
            self.running[key] = (item.version, consumer, item.target)
        for item in wanted.values():
            self.statuses.track(item.obj)

    def consumer_of(self, target: source.Target) -> Running:
        if target.spec.nats is None:
            return self.factory(target)
        return self.nats_factory(target)

    def shutdown(self) -> None:
        """Stops every consumer: no more fetching, in-flight batches finish and commit."""
        consumers = [c for _, c, _ in self.running.values()]
        for consumer in consumers:
            consumer.stop()
        for consumer in consumers:
            consumer.join()
        self.running.clear()
