"""The cron worker process: watch cron Triggers, lead through a Lease, fire on time.

Three threads share one store of cron Triggers (:func:`table.schedules`):

* the store's reflector (:class:`kfn.kube.cache.Store`) keeps every Trigger with
  ``spec.cron`` in it, as a :class:`table.Entry` (one whose schedule cannot fire too, with
  its problem, which the leader reports as ``InvalidSchedule``);
* the lease keeper renews or takes the Lease every :data:`leader.RETRY`;
* the main loop sleeps until the earliest tick of any Trigger (woken early by changes),
  plans each Trigger with :func:`schedule.plan` (a Trigger whose ticks cannot be computed
  is skipped, never the loop) and hands the due ticks to the Trigger's own lane
  (:mod:`~kfn.triggers.cron.lanes`), so a slow or failing Trigger never delays another's.
  It also wakes each Trigger's function a lead before its next tick
  (:mod:`~kfn.triggers.cron.waking`), in threads of their own, so the tick finds a pod and
  fires no later for it.

Followers keep the table current from the watch (including ``status.lastFireTime`` the
leader writes), so a new leader continues where the old one stopped.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import json
import logging
import threading
from collections.abc import Callable
from typing import Final

import prometheus_client

from kfn import kube, retry
from kfn.api import meta
from kfn.api import trigger as trigger_api
from kfn.clock import Clock, utcnow
from kfn.triggers import (
    delivery,
    failure,
    invoke,
    leader,
    lease,
    metrics,
    onfailure,
    process,
    status,
    warming,
)
from kfn.triggers.cron import lanes, schedule, table, waking

API_VERSION: Final = f"{meta.GROUP}/{meta.VERSION}"
LEASE_NAME: Final = "kfn-cron"
KIND: Final = "cron"

logger = logging.getLogger(__name__)


#: One series each per cron Trigger (see :mod:`kfn.triggers.metrics`), dropped with it.
_BY_TRIGGER: Final = ["namespace", "trigger"]
FIRES = prometheus_client.Counter(
    "kfn_cron_fires", "Ticks handled (delivered or sent to onFailure), by trigger.", _BY_TRIGGER
)
FAILURES = prometheus_client.Counter(
    "kfn_cron_fire_failures",
    "Ticks the function did not handle after all retries, by trigger.",
    _BY_TRIGGER,
)
SKIPPED = prometheus_client.Counter(
    "kfn_cron_skipped_ticks", "Missed ticks not fired under the trigger's policy.", _BY_TRIGGER
)
LATENESS = prometheus_client.Histogram(
    "kfn_cron_fire_lateness_seconds",
    "From a tick's scheduled time to its first invocation.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600),
)
LEADER = prometheus_client.Gauge("kfn_cron_leader", "1 while this replica fires the schedules.")
WAKES = prometheus_client.Counter(
    "kfn_cron_wakes", "Functions woken ahead of a tick, by trigger.", _BY_TRIGGER
)


def forget_metrics(namespace: str, name: str) -> None:
    """Drops a deleted cron Trigger's series, the shared ones and the cron worker's own."""
    metrics.forget_metrics(namespace, name, KIND)
    for metric in (FIRES, FAILURES, SKIPPED, WAKES):
        with contextlib.suppress(KeyError):
            metric.remove(namespace, name)


class Deliverer:
    """Delivers ticks under the Trigger's ``delivery`` policy, then records them.

    A tick is invoked synchronously through the activator and retried as Lambda retries
    asynchronous events (:mod:`kfn.triggers.delivery`); ``lastFireTime`` moves only once the
    tick is handled (delivered, or sent to onFailure), so a tick in hand when the leader
    dies is fired again by the next one (with CatchUp) rather than lost.
    """

    def __init__(
        self,
        activator_url: str,
        region: str,
        *,
        record: bool = True,
        retry_delays: tuple[float, ...] = delivery.DEFAULT_RETRY_DELAYS,
        clock: Clock = utcnow,
        token: Callable[[], str] | None = None,
    ) -> None:
        self.invoker = invoke.Invoker(activator_url, token)
        self.region = region
        self.record = record
        self.clock = clock
        self.stop = threading.Event()
        self.status = status.StatusWriter(clock=clock)
        self.async_delivery = delivery.AsyncDeliverer(
            self.invoker,
            onfailure.Destinations(self.invoker),
            stop=self.stop,
            clock=clock,
            retry_delays=retry_delays,
            statuses=self.status,
        )
        #: Whether a Trigger still exists; the Worker wires it to its table.
        self.alive: Callable[[table.Entry], bool] = lambda entry: True
        self._recorded: dict[str, datetime.datetime] = {}
        self._lock = threading.Lock()
        #: The cold starts of each function, learnt from the answers (the wakes' lead).
        self.cold_starts = warming.ColdStarts()
        #: Each Trigger's (by uid) last wake: the tick it was for and when it was sent.
        self.woken: dict[str, tuple[datetime.datetime, datetime.datetime]] = {}
        #: Each Trigger's last tick handed to its lane.
        self.last_tick: dict[str, datetime.datetime] = {}

    def body(self, firing: table.Firing) -> bytes:
        event = schedule.scheduled_event(
            payload=firing.entry.spec.payload,
            tick=firing.tick,
            trigger_uid=firing.entry.uid,
            namespace=firing.entry.namespace,
            name=firing.entry.name,
            region=self.region,
        )
        return json.dumps(event, separators=(",", ":")).encode()

    def woken_for(self, uid: str) -> datetime.datetime | None:
        """The tick the Trigger ``uid``'s function was last woken for."""
        with self._lock:
            woken = self.woken.get(uid)
        return woken[0] if woken else None

    def mark_woken(self, uid: str, tick: datetime.datetime, at: datetime.datetime) -> None:
        with self._lock:
            self.woken[uid] = (tick, at)

    def keep_only(self, uids: set[str]) -> None:
        """Forgets the wakes and ticks of Triggers gone."""
        with self._lock:
            for uid in set(self.woken) - uids:
                del self.woken[uid]
            for uid in set(self.last_tick) - uids:
                del self.last_tick[uid]

    def wake(self, entry: table.Entry, tick: datetime.datetime) -> None:
        """Wakes the function of ``entry`` for ``tick`` (in a thread of the Worker's)."""
        self.mark_woken(entry.uid, tick, self.clock())
        outcome = self.invoker.wake(entry.namespace, entry.function, qualifier=entry.qualifier)
        WAKES.labels(entry.namespace, entry.name).inc()
        if outcome.status != 202:
            # The tick goes on as without a wake; its own invocation says what is wrong.
            logger.info("%s: waking the function failed: %s", entry.label, outcome.describe())

    def fire(self, firing: table.Firing) -> None:
        entry = firing.entry
        target = failure.Target(entry.namespace, entry.function, entry.name, KIND, entry.qualifier)
        started = self.clock()
        LATENESS.observe(max(0.0, (started - firing.tick).total_seconds()))
        metrics.RECEIVED.labels(entry.namespace, entry.name, KIND).inc()
        with self._lock:
            woken = self.woken.get(entry.uid)
        # Only the first attempt follows the wake; a retry's cold start is its own.
        woken_before = [started - woken[1] if woken and woken[0] == firing.tick else None]
        key = (entry.namespace, entry.function, entry.qualifier)

        def learn(outcome: retry.Outcome) -> None:
            self.cold_starts.observe(key, outcome.cold_start_ms, woken_before=woken_before[0])
            woken_before[0] = None

        result = self.async_delivery.deliver(
            target,
            entry.spec.delivery,
            self.body(firing),
            request_id=schedule.event_id(entry.uid, firing.tick),
            first_seen=firing.tick,
            on_attempt=learn,
            alive=lambda: self.alive(entry),
        )
        if not result.handled:
            logger.info("%s: stopping with tick %s in hand", entry.label, firing.tick.isoformat())
            return
        FIRES.labels(entry.namespace, entry.name).inc()
        if not result.delivered:
            FAILURES.labels(entry.namespace, entry.name).inc()
        if not self.alive(entry):
            # Deleted while its tick was in hand: what this tick counted goes with it.
            forget_metrics(entry.namespace, entry.name)
        if self.record:
            with self._lock:
                last = max(firing.tick, self._recorded.get(entry.uid, firing.tick))
                self._recorded[entry.uid] = last
            record_status(entry, last=last, next_=firing.next)

    def watch(self, entries: list[table.Entry]) -> None:
        """Reports each Trigger's schedule as its source (called by the leader only): when
        it fires, or why it cannot (``InvalidSchedule``, which makes the Trigger not Ready)."""
        for entry in entries:
            key = (entry.namespace, entry.name)
            self.status.register(key, entry.generation, entry.conditions)
            self.status.set(key, reachable=source_verdict(entry))


def source_verdict(entry: table.Entry) -> status.Verdict:
    """The ``SourceReachable`` verdict of a cron Trigger: its schedule fires, or why not."""
    if entry.problem is not None:
        return status.Verdict(False, trigger_api.Reason.INVALID_SCHEDULE, entry.problem)
    return status.Verdict(
        True,
        trigger_api.Reason.SCHEDULED,
        f"fires on '{entry.spec.schedule}' in {entry.spec.time_zone}",
    )


def record_status(
    entry: table.Entry, *, last: datetime.datetime | None, next_: datetime.datetime
) -> None:
    """Merge-patches only ``lastFireTime`` and ``nextFireTime``; the rest of the status
    belongs to the operator."""
    fields = {"nextFireTime": schedule.format_event_time(next_)}
    if last is not None:
        fields["lastFireTime"] = schedule.format_event_time(last)
    try:
        kube.patch_status(API_VERSION, trigger_api.KIND, entry.namespace, entry.name, fields)
    except kube.ApiError as exc:
        if exc.status != 404:
            logger.warning("%s: writing the status failed: %s", entry.label, exc)
    except OSError as exc:
        logger.warning("%s: writing the status failed: %s", entry.label, exc)


def count_skipped(entry: table.Entry, count: int) -> None:
    SKIPPED.labels(entry.namespace, entry.name).inc(count)


def step(entries: list[table.Entry], now: datetime.datetime) -> list[table.Firing]:
    """Plans every Trigger at ``now``: the ticks to fire; advances each Entry's bookkeeping.

    A Trigger whose ticks cannot be computed is marked with its ``problem`` and skipped from
    then on; it never stops the others.
    """
    firings: list[table.Firing] = []
    for entry in entries:
        if entry.schedule is None:
            entry.next = None
            continue
        if entry.spec.suspend:
            # Ticks while suspended are not "missed": resuming does not catch them up.
            entry.done = max(entry.done, now)
            entry.next = None
            continue
        missed = entry.spec.missed_ticks
        deadline = meta.parse_duration(missed.deadline) if missed.deadline else None
        try:
            result = schedule.plan(
                entry.schedule,
                entry.spec.time_zone,
                last_fire=entry.done,
                now=now,
                policy=missed.policy,
                deadline=deadline,
            )
        except (ValueError, OverflowError) as exc:  # ScheduleError is a ValueError
            entry.problem = (
                f"schedule '{entry.spec.schedule}' cannot fire after {now:%Y-%m-%d}: {exc}"
            )
            logger.warning("Trigger %s cannot fire: %s", entry.label, entry.problem)
            entry.schedule, entry.next = None, None
            continue
        if result.skipped:
            SKIPPED.labels(entry.namespace, entry.name).inc(result.skipped)
            logger.info("%s: skipped %d missed ticks", entry.label, result.skipped)
        firings.extend(table.Firing(entry, tick, result.next) for tick in result.fire)
        entry.done = max(entry.done, now)
        entry.next = result.next
    return firings


class Worker:
    """Wires the table, the lease and the delivery together (see the module doc)."""

    def __init__(
        self,
        *,
        namespace: str,
        identity: str,
        deliverer: Deliverer,
        clock: Clock = utcnow,
        lease_api: lease.LeaseApi = kube,
    ) -> None:
        """``lease_api`` reaches the Lease (a parameter for tests)."""
        #: Set by every change of the cron Triggers and on becoming the leader.
        self.changed = threading.Event()
        self.schedules = table.schedules(self.changed, gone=forget_metrics)

        def on_change(leading: bool) -> None:
            LEADER.set(1 if leading else 0)
            if leading:
                self.changed.set()  # fire without waiting for the next poll

        self.lease = lease.LeaseKeeper(
            namespace,
            LEASE_NAME,
            identity,
            clock=clock,
            on_change=on_change,
            owner=process.deployment_name(),
            api=lease_api,
        )
        self.deliverer = deliverer
        self.deliverer.alive = self.holds
        self.clock = clock
        self.stop = deliverer.stop
        #: Each Trigger's fires, bounded per Trigger, in threads of their own.
        self.lanes = lanes.Lanes(
            deliverer.fire, skipped=count_skipped, leading=self.lease.leading, clock=clock
        )
        #: Writes of ``nextFireTime`` alone, apart from the fires so neither waits for the other.
        self.records = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="record")
        #: Wakes ahead of ticks, apart from the fires so a slow wake never delays a tick.
        self.wakes = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="wake")

    def holds(self, entry: table.Entry) -> bool:
        """Whether the Trigger of ``entry`` (the same object, by uid) is still here."""
        current = self.schedules.get((entry.namespace, entry.name))
        return current is not None and current.uid == entry.uid

    def run(self) -> None:
        self.schedules.start()
        threads = [
            threading.Thread(target=self.lease.run, args=(self.stop,), name="lease", daemon=True),
            threading.Thread(
                target=self.deliverer.status.run, args=(self.stop,), name="status", daemon=True
            ),
        ]
        for thread in threads:
            thread.start()
        try:
            self.loop()
        finally:
            self.schedules.stop()
            self.lanes.join()
            self.records.shutdown(wait=True)
            self.wakes.shutdown(wait=True)
            self.lease.release()

    def loop(self) -> None:
        while not self.stop.is_set():
            self.changed.clear()
            wake = self.tick()
            timeout = leader.RETRY.total_seconds()
            if wake is not None:
                timeout = min(timeout, max(0.0, (wake - self.clock()).total_seconds()))
            if timeout > 0:
                self.changed.wait(timeout)

    def tick(self) -> datetime.datetime | None:
        """One pass: fire what is due when leading; the earliest next tick."""
        if not self.lease.leading():
            self.lanes.refresh()  # drops ticks still waiting: the next leader has them
            return None
        return self.fire_due(self.clock())

    def fire_due(self, now: datetime.datetime) -> datetime.datetime | None:
        """Plans every Trigger at ``now``, hands the due ticks to their lanes and reports
        next fire times; returns the earliest next tick."""
        self.lanes.refresh()
        with self.schedules.lock:
            entries = self.schedules.values()
            firings = step(entries, now)
        if self.deliverer.record:
            self.deliverer.watch(entries)
        self.lanes.submit(firings)
        later = self.wake_ahead(entries, firings, now)
        fired = {id(f.entry) for f in firings}
        for entry in entries:
            if id(entry) in fired or entry.next is None or entry.next == entry.reported_next:
                continue
            entry.reported_next = entry.next
            if self.deliverer.record:
                self.records.submit(record_status, entry, last=None, next_=entry.next)
        pending = [e.next for e in entries if e.next is not None] + later
        return min(pending, default=None)

    def wake_ahead(
        self, entries: list[table.Entry], firings: list[table.Firing], now: datetime.datetime
    ) -> list[datetime.datetime]:
        """Sends the wakes due at ``now`` (:func:`waking.plan`); the wake instants ahead."""
        deliverer = self.deliverer
        for firing in firings:
            deliverer.last_tick[firing.entry.uid] = max(
                firing.tick, deliverer.last_tick.get(firing.entry.uid, firing.tick)
            )
        later: list[datetime.datetime] = []
        uids: set[str] = set()
        for entry in entries:
            uids.add(entry.uid)
            if entry.next is None or entry.problem is not None or entry.spec.suspend:
                continue
            plan = waking.plan(
                entry.next,
                now,
                deliverer.cold_starts.lead((entry.namespace, entry.function, entry.qualifier)),
                previous_tick=deliverer.last_tick.get(entry.uid),
                woken_for=deliverer.woken_for(entry.uid),
            )
            if plan.wake_now:
                # Marked before the thread runs, so the next pass does not send it again.
                deliverer.mark_woken(entry.uid, entry.next, now)
                self.wakes.submit(deliverer.wake, entry, entry.next)
            elif plan.later is not None:
                later.append(plan.later)
        deliverer.keep_only(uids)
        return later
